/*
 * internal.h — what the parts of the membership process share: its state
 * (struct membership), the bounds that size it, and each part's entry
 * points. Not a public header: only src/membership/ includes it.
 *
 *   membership.c  the process: loop, clients, signals, timers, gossip start,
 *                 our own gossip record
 *   persist.c     the store: snapshot + write-ahead log + recovery, the
 *                 group commit, and staging (nothing visible before durable)
 *   dispatch.c    requests from the api and tools/dump, and their replies
 *   events.c      the event stream for observers (SSE)
 *   policy.c      the coordinator: gossip and heartbeats into registry
 *                 decisions (liveness.c decides statuses, admit.c admission)
 *   replica.c     a worker's copy of the coordinator's registry
 *   inspect.c     gossip inspection for tools/dump
 *   stats.c       counters and gauges for /metrics
 */
#ifndef PROXYSTONE_MEMBERSHIP_INTERNAL_H
#define PROXYSTONE_MEMBERSHIP_INTERNAL_H

#include "proxystone/membership.h"
#include "proxystone/admit.h"
#include "proxystone/config.h"
#include "proxystone/fetch.h"
#include "proxystone/gossip.h"
#include "proxystone/node_meta.h"
#include "proxystone/ipc.h"
#include "proxystone/json.h"
#include "proxystone/liveness.h"
#include "proxystone/log.h"
#include "proxystone/registry.h"
#include "proxystone/store.h"
#include "proxystone/wal.h"
#include "proxystone/supervisor.h"
#include "proxystone/timeutil.h"

#include <assert.h>
#include <errno.h>
#include <ev.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <uuid/uuid.h>

/* Clients at once: the api process, a few tools/dump readers. */
#define MEMBERSHIP_CLIENTS_MAX 32
/* Held replies awaiting one group commit; past this we commit at once. */
#define COMMIT_PENDING_MAX 4096
/* Lazily logged changes (status) are synced within this. */
#define STORE_LAZY_FLUSH 1.0
/* Heartbeat data (lastSeen, metadata) reaches a snapshot within this. */
#define SNAPSHOT_LAZY_INTERVAL 5.0
/* Compact the log into a snapshot past this many bytes: replay at start-up
 * stays well under a second, and a snapshot of 10,000 nodes (~5 MB) is
 * written at most once per this much logged change. */
#define WAL_COMPACT_BYTES (8u * 1024 * 1024)
/* After a failed snapshot, retry this often; writes answer 503 meanwhile. */
#define STORE_RETRY_INTERVAL 1.0
/* Expiry scan period bound: a few scans per node_timeout, at most 1 s apart. */
#define EXPIRE_SCAN_MAX 1.0
/* A graceful leave gets this long to reach the others before we exit;
 * dissemination takes a few gossip intervals (0.2 s each). */
#define LEAVE_GRACE 1.0
/* Coordinator: registry-version updates in our member record at most this
 * often, so a burst of registrations costs one gossip update, not many. */
#define META_VERSION_MIN_INTERVAL 0.5
/* Worker: fetch the registry at most this often, and at least this often
 * (anti-entropy even when no version news arrives). */
#define REPLICA_FETCH_MIN_INTERVAL 0.5
#define REPLICA_SYNC_INTERVAL 10.0
/* A fetch that takes longer has failed: the coordinator answers in ms. */
#define REPLICA_FETCH_TIMEOUT 5.0
/* Registry versions a coordinator can plausibly add per second: one per
 * write, and writes run at ~80,000/s on this hardware (BENCHMARKS.md). A
 * gossip record announcing more than this above what the coordinator last
 * served us over HTTP, for the time since, is a lie: dropped and counted. */
#define REGISTRY_VERSION_RATE_MAX 1e6
/* Lines that hostile gossip can trigger: at most one per this interval per
 * kind, with the count held back. */
#define GOSSIP_REJECT_LOG_INTERVAL 10.0
/* Output a follower may have queued before we skip events for it: a
 * reader that falls this far behind loses events (and is told how many)
 * instead of slowing the membership process down. */
#define FOLLOW_BACKLOG_MAX (256 * 1024)
/* Records of one datagram shown to followers (a datagram has at most
 * SWIM_PACKET_RECORDS_MAX). */
#define TRACE_UPDATES_MAX SWIM_PACKET_RECORDS_MAX
/* An error message we put in a reply. */
#define ERR_MSG_MAX 512

struct membership;

struct client {
	struct membership *m;
	struct ipc_conn *conn;
	uint64_t serial; /* stays unique; held replies refer to it */
	bool follower;	 /* receives every gossip datagram (tools/dump) */
	bool subscriber; /* receives registry/service events (api SSE) */
	uint64_t subscribe_id;
	uint64_t follow_id;
	uint64_t dropped; /* trace events this follower missed */
	struct client *next;
};

/*
 * A client's write applied to the registry but not yet durable (staged):
 * how to take it back if the group commit fails, and the event observers
 * get once it holds. One per write, so at most COMMIT_PENDING_MAX.
 */
struct staged {
	char id[NODE_ID_MAX + 1]; /* node changed; "" for our serving mode */
	bool existed;		  /* the node was there before */
	size_t off, len;   /* its packed Ps__Node before, in staged_bytes */
	bool prev_serving; /* serving change: the mode before */
	int64_t prev_changed_ms;
	const char *event; /* node event type, NULL: a serving change */
	/* Registry version before the write and once it was made (logged):
	 * an undo takes back the versions it added, so the version stays the
	 * one on disk for the state it names. */
	uint64_t version_before, version_after;
};

/* Reads that arrive while writes are staged wait for the commit, so no
 * reader sees what a crash could still lose. Past this many they force
 * the commit early. */
#define READS_WAITING_MAX 4096

struct waiting_read {
	uint64_t client; /* serial of the client that asked */
	size_t off, len; /* its packed request, in waiting_bytes */
};

struct held_reply {
	uint64_t client;  /* serial of the client it goes to */
	uint64_t request; /* request id, for an error reply instead */
	size_t off, len;  /* frame bytes in held_frames */
};

struct membership {
	const struct config *cfg;
	struct ev_loop *loop;
	struct registry reg;
	char self_id[NODE_ID_MAX + 1];
	char store_path[PATH_MAX];
	bool serving;
	int64_t start_ms, changed_ms;
	int listen_fd;
	ev_io accept_io;
	ev_timer expire_timer, flush_timer;
	ev_prepare commit_prep;
	ev_signal sigterm, sigint;
	struct client *clients;
	size_t nclients;
	size_t nfollowers, nsubscribers;
	uint64_t event_version; /* registry version last announced */
	/* Highest registry version any client was told (events, replies): an
	 * undo never takes the version below it, so no observer sees the
	 * version go back. */
	uint64_t version_shown;
	uint64_t next_serial;
	/* Group commit state. */
	struct wal *wal;
	char wal_path[PATH_MAX + 8];
	bool dirty_lazy;    /* the next periodic snapshot has news */
	bool must_snapshot; /* a held reply waits on a snapshot (log refused a
			       record) */
	bool store_failed;
	bool used_prev_snapshot; /* replay the previous log too */
	double store_failed_at, snapshot_at;
	uint64_t n_wal_syncs, n_wal_damaged, n_wal_replayed;
	struct held_reply held[COMMIT_PENDING_MAX];
	size_t nheld;
	struct buf held_frames;
	struct staged staged[COMMIT_PENDING_MAX];
	size_t nstaged;
	struct buf staged_bytes;
	struct waiting_read waiting[READS_WAITING_MAX];
	size_t nwaiting;
	struct buf waiting_bytes;
	uint64_t n_undone, n_reads_waited;
	/* Gossip (NULL when gossip_port = 0). */
	struct gossip *gossip;
	bool leaving;
	double leave_started;
	ev_timer leave_timer, meta_timer;
	uint32_t http_connections;  /* reported by the api process */
	uint64_t meta_version_sent; /* registry version in our record */
	double meta_sent_at;
	/* Worker: the coordinator and our replica. coord_id is learned only
	 * from the coordinator's own HTTP answer at cluster_ip (the replica's
	 * `self`), never from gossip: a gossip record claiming the role for
	 * another id is rejected. */
	char coord_id[NODE_ID_MAX + 1];
	uint64_t coord_version;	  /* version the coordinator announced */
	uint64_t replica_version; /* version our registry copy holds */
	double replica_at;	  /* when we got it (mono), < 0: never */
	struct fetch *fetch;
	double fetch_at;
	ev_timer replica_timer;
	/* Coordinator: gossip members on their way into the registry. */
	struct admit admit;
	bool admit_on;
	ev_timer admit_timer;
	/* Gossip input refused, and the log lines about it. */
	uint64_t n_reject_role, n_reject_version;
	struct log_limit lim_inc, lim_role, lim_version, lim_admit;
	/* Counters for /metrics. */
	uint64_t n_replica_fetches, n_replica_failures, n_gossip_registered;
	uint64_t n_requests, n_bad_frames, n_clients_rejected, n_overloaded;
	uint64_t n_saves, n_save_failures, n_expired, n_snapshot_damaged;
	size_t n_over_limit; /* nodes loaded over max_metadata_bytes */
	double save_seconds;
};

/* membership.c: the process: loop and clients */
bool membership_is_coordinator(const struct membership *m);
void membership_self_refresh(struct membership *m);
void membership_publish_meta(struct membership *m);

/* The state with every bound set and nothing loaded or started (the
 * process, and tests of the parts, start from it); NULL without memory.
 * membership_free releases what it and the store hold (not the loop,
 * clients, gossip or sockets: their owner closes those first). */
struct membership *membership_new(const struct config *cfg);
void membership_free(struct membership *m);

/* persist.c: the store */
int persist_snapshot(struct membership *m);
int persist_flush(struct membership *m);
/* sync: n was changed by the client write staged last (persist_stage_*),
 * whose reply waits for the commit; false: synced lazily. */
void persist_log_node(struct membership *m, const struct reg_node *n,
		      bool sync);
/* Both log the client write staged last. */
void persist_log_remove(struct membership *m, const char *id);
void persist_log_serving(struct membership *m);
int persist_open_log(struct membership *m);
int persist_load(struct membership *m);
/* Makes this loop pass's changes durable, then answers what waited on
 * them. 0, or the storage error (the staged writes were undone). */
int persist_commit(struct membership *m);
bool persist_stage_node(struct membership *m, const char *id,
			const char *event);
void persist_stage_drop(struct membership *m);
void persist_stage_serving(struct membership *m);
bool persist_read_waits(struct membership *m, struct client *c,
			const Ps__Request *req);

/* dispatch.c: requests */
struct client *dispatch_client(struct membership *m, uint64_t serial);
/* Sets r's error: a code (the api maps it to HTTP) and a message. */
void dispatch_error(Ps__Reply *r, Ps__Error *e, const char *code,
		    const char *msg);
void dispatch_send_reply(struct membership *m, struct client *c,
			 const Ps__Reply *reply);
void dispatch_make_uuid(char out[37]);
/* Answers request `id` of client c: 503 STORAGE_UNAVAILABLE, the write
 * was not made durable (and was undone). */
void dispatch_refused(struct membership *m, struct client *c, uint64_t id);
void dispatch_handle(struct membership *m, struct client *c, Ps__Request *req);
/* True for request kinds that read the registry (they wait for a commit
 * of staged writes: persist_read_waits). */
bool dispatch_is_read(const Ps__Request *req);

/* events.c: events for observers */
void events_node(struct membership *m, const char *type, const char *id,
		 struct reg_node *n);
void events_service(struct membership *m);
void events_registry_if_changed(struct membership *m);

/* policy.c: the coordinator policy */
void policy_expire(struct membership *m);
void policy_apply(struct membership *m, const char *id,
		  const struct swim_event *ev, const Ps__NodeMeta *meta,
		  bool admitted);
bool policy_claim(struct membership *m, const char *id,
		  const struct swim_event *ev, const Ps__NodeMeta *meta);
void policy_on_reject(void *ctx, const struct swim_reject *r);
void policy_refresh(struct membership *m);
bool policy_coordinator_alive(struct membership *m);
void policy_on_admit_timer(struct ev_loop *loop, ev_timer *w, int rev);

/* replica.c: a worker's replica */
void replica_fetch(struct membership *m);
void replica_on_timer(struct ev_loop *loop, ev_timer *w, int rev);

/* stats.c: counters for /metrics */
int stats_fill(struct membership *m, Ps__Reply *r);
void stats_free(Ps__Reply *r);

/* inspect.c: gossip inspection */
void inspect_on_trace(void *ctx, const struct swim_trace *t);
int inspect_members_fill(struct membership *m, Ps__Reply *r, Ps__Gossip *g,
			 char *self_addr);
void inspect_members_free(Ps__Reply *r);

#endif
