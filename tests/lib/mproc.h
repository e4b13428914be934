/*
 * mproc — a membership process's state without its event loop, for the
 * unit tests of its parts (persist.c, dispatch.c). A test builds the
 * struct membership as membership_main() does, over a temporary data
 * directory, adds clients (an ipc_conn over a socketpair: membership
 * holds one end, the test reads the other), calls the parts directly and
 * reads what each client got as unpacked Ps__Reply frames.
 *
 * The loop only flushes the clients' sockets (EVRUN_NOWAIT); no commit
 * happens inside it, so "before the commit" is a point in the test.
 * Failed checks fail the running cmocka test.
 */
#ifndef PROXYSTONE_TEST_MPROC_H
#define PROXYSTONE_TEST_MPROC_H

#include "../../src/membership/internal.h"
#include "tmpdir.h"

/* Clients one test uses at most. */
#define MPROC_PEERS_MAX 4
/* Reply bytes read from one client at once: a few small listings. */
#define MPROC_PEER_BUF (256 * 1024)
/* Frames one mproc_drain may return. */
#define MPROC_REPLIES_MAX 16
/* Request id of the subscription mproc_subscribe makes. */
#define MPROC_SUBSCRIBE_ID 900

struct mproc_peer {
	struct client *c; /* the membership side */
	int fd;		  /* the test's side */
	uint8_t buf[MPROC_PEER_BUF];
	size_t len;
};

struct mproc {
	char dir[TMPDIR_NAME_MAX];
	struct config cfg; /* config_defaults(), data_dir = dir */
	struct ev_loop *loop;
	struct membership *m; /* closed by mproc_fini when set */
	struct mproc_peer peers[MPROC_PEERS_MAX];
	size_t npeers;
};

/* A fresh directory and loop; the membership is opened by mproc_open.
 * Returns NULL on failure. Free with mproc_free. */
struct mproc *mproc_new(const char *tag);
void mproc_free(struct mproc *f);

/* Loads the data directory (snapshot, then log) into a new struct
 * membership, as at start-up: a new node gets an identity and a first
 * snapshot. Returns it (the caller usually stores it in f->m). */
struct membership *mproc_open(struct mproc *f);
/* Registers this node's own entry and snapshots, as start-up does after
 * loading (ensure_self in membership.c); mproc_open leaves it out so that
 * a test sees the registry exactly as loaded. */
void mproc_self(struct membership *m);
/* Ends m as a crash would: no commit, no snapshot; closes its clients. */
void mproc_close(struct membership *m);

/* A client of m. */
struct mproc_peer *mproc_client(struct mproc *f, struct membership *m);
/* A client of m that the test does not keep: close_fn owns it (and, like
 * membership.c's hook, unlinks and frees it). The test's end of the
 * socket is returned in *fd; the test closes it. */
struct client *mproc_client_new(struct membership *m, ipc_close_fn close_fn,
				int *fd);
/* Lets the loop write what membership queued, then returns in out the
 * replies that reached p (free them with mproc_free_replies). */
size_t mproc_drain(struct mproc *f, struct mproc_peer *p,
		   Ps__Reply *out[MPROC_REPLIES_MAX]);
void mproc_free_replies(Ps__Reply **r, size_t n);
/* Asserts that nothing reached p. */
void mproc_expect_nothing(struct mproc *f, struct mproc_peer *p);
/* Asserts that exactly one frame reached p, for request id; returns it
 * (free with ps__reply__free_unpacked). */
Ps__Reply *mproc_expect_one(struct mproc *f, struct mproc_peer *p, uint64_t id);
/* Asserts that exactly one frame reached p, the error `code` for request
 * id. */
void mproc_expect_error(struct mproc *f, struct mproc_peer *p, uint64_t id,
			const char *code);

/* An fdatasync that fails with EIO, for a test to put behind wal.c's
 * seam (wal_fdatasync) to make commits fail. */
int mproc_fdatasync_eio(int fd);

/* Requests, handed to dispatch_handle() as the client p sent them. */
void mproc_register(struct membership *m, struct mproc_peer *p, uint64_t rid,
		    const char *id, const char *url, const char *meta);
/* A request whose body is a node id (GET_NODE, DELETE_NODE) or empty
 * (LIST_NODES, GET_HEALTH, GET_STATUS, GET_STATS, GET_MEMBERS, FOLLOW,
 * SUBSCRIBE); id is ignored for the empty ones. */
void mproc_request(struct membership *m, struct mproc_peer *p, uint64_t rid,
		   Ps__Request__BodyCase kind, const char *id);
/* Registers id (url http://10.0.0.1:8080) for client p, commits and
 * consumes the reply, which must be a success; returns the entry. */
struct reg_node *mproc_registered(struct mproc *f, struct membership *m,
				  struct mproc_peer *p, const char *id);
/* Subscribes p (MPROC_SUBSCRIBE_ID) and consumes the first reply. */
void mproc_subscribe(struct mproc *f, struct membership *m,
		     struct mproc_peer *p);
/* True if r's node list holds id. */
bool mproc_lists(const Ps__Reply *r, const char *id);

#endif
