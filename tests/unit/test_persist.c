/*
 * Unit tests: the membership store's group commit, staging and recovery
 * (src/membership/persist.c), driven through the request handlers
 * (dispatch.c) without the event loop's commit hook: each test calls
 * dispatch_handle() and persist_commit() itself, so "before the commit"
 * is a point in the test, not a race.
 *
 * A client is an ipc_conn over a socketpair; the test reads the other end
 * and unpacks the Ps__Reply frames the client would get. The loop only
 * flushes those sockets (EVRUN_NOWAIT): no commit happens inside it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/tmpdir.h"
#include "../../src/membership/internal.h"

/* The log itself, for its fdatasync seam (a static pointer). Defining
 * every wal_* symbol here keeps the archive's wal.o out of the link. */
#include "../../src/membership/wal.c"

/* Clients one test uses at most. */
#define PEERS_MAX 4
/* Reply bytes a test reads from one client at once: a few listings. */
#define PEER_BUF (256 * 1024)
/* Frames one drain may return. */
#define REPLIES_MAX 16
/* Loop passes that flush the membership side of every socketpair: one
 * is enough for these small frames, the rest are margin. */
#define FLUSH_PASSES 4

struct peer {
	struct client *c; /* the membership side */
	int fd;		  /* the test's side */
	uint8_t buf[PEER_BUF];
	size_t len;
};

struct fixture {
	char dir[TMPDIR_NAME_MAX];
	struct config cfg;
	struct ev_loop *loop;
	struct membership *m;
	struct peer peers[PEERS_MAX];
	size_t npeers;
};

static int fdatasync_eio(int fd)
{
	(void)fd;
	errno = EIO;
	return -1;
}

/* ---- the membership struct, as membership_main builds it ---------------- */

static struct membership *m_open(struct fixture *f)
{
	struct membership *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	m->cfg = &f->cfg;
	m->loop = f->loop;
	m->serving = true;
	m->replica_at = -1;
	m->start_ms = m->changed_ms = time_wall_ms();
	registry_init(&m->reg, f->cfg.metadata_max);
	buf_init(&m->held_frames, COMMIT_PENDING_MAX * (size_t)64 * 1024);
	buf_init(&m->staged_bytes, COMMIT_PENDING_MAX * (size_t)64 * 1024);
	buf_init(&m->waiting_bytes, READS_WAITING_MAX * (size_t)1024);
	snprintf(m->store_path, sizeof(m->store_path), "%s/registry.snap",
		 f->cfg.data_dir);
	snprintf(m->wal_path, sizeof(m->wal_path), "%s/registry.wal",
		 f->cfg.data_dir);
	assert_int_equal(persist_load(m), 0);
	assert_int_equal(persist_open_log(m), 0);
	m->n_over_limit = registry_count_over_limit(&m->reg);
	if (!m->self_id[0]) {
		/* A new node: its identity on disk first, as at start-up. */
		dispatch_make_uuid(m->self_id);
		assert_int_equal(persist_snapshot(m), 0);
	}
	return m;
}

/* Ends m as a crash would: no commit, no snapshot. */
static void m_close(struct membership *m)
{
	while (m->clients)
		ipc_conn_close(m->clients->conn, 0);
	wal_close(m->wal);
	registry_fini(&m->reg);
	buf_fini(&m->held_frames);
	buf_fini(&m->staged_bytes);
	buf_fini(&m->waiting_bytes);
	free(m);
}

/* ---- clients ------------------------------------------------------------ */

static void on_frame_unused(struct ipc_conn *conn, const uint8_t *data,
			    size_t len, void *ud)
{
	(void)conn;
	(void)data;
	(void)len;
	(void)ud;
	fail_msg("the test sends no frames to membership");
}

static void on_close(struct ipc_conn *conn, int reason, void *ud)
{
	(void)conn;
	(void)reason;
	struct client *c = ud;
	struct membership *m = c->m;
	for (struct client **p = &m->clients; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	m->nclients--;
	if (c->subscriber)
		m->nsubscribers--;
	c->conn = NULL;
}

static struct peer *client_add(struct fixture *f, struct membership *m)
{
	assert_true(f->npeers < PEERS_MAX);
	struct peer *p = &f->peers[f->npeers++];
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX,
				    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
				    0, sv),
			 0);
	struct client *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->m = m;
	c->serial = ++m->next_serial;
	c->conn = ipc_conn_new(f->loop, sv[0], on_frame_unused, on_close, c);
	assert_non_null(c->conn);
	c->next = m->clients;
	m->clients = c;
	m->nclients++;
	p->c = c;
	p->fd = sv[1];
	p->len = 0;
	return p;
}

/* Lets the loop write what membership queued, then returns the replies
 * that reached p (caller frees them with free_replies). */
static size_t drain(struct fixture *f, struct peer *p, Ps__Reply **out)
{
	for (int i = 0; i < FLUSH_PASSES; i++)
		ev_run(f->loop, EVRUN_NOWAIT);
	for (;;) {
		ssize_t n =
		    read(p->fd, p->buf + p->len, sizeof(p->buf) - p->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		p->len += (size_t)n;
		assert_true(p->len < sizeof(p->buf));
	}
	size_t k = 0, off = 0;
	for (;;) {
		const uint8_t *payload;
		size_t plen, flen;
		int rc = ipc_frame_peek(p->buf + off, p->len - off,
					IPC_FRAME_MAX, &payload, &plen, &flen);
		assert_true(rc >= 0);
		if (rc == 0)
			break;
		assert_true(k < REPLIES_MAX);
		out[k] = ps__reply__unpack(NULL, plen, payload);
		assert_non_null(out[k]);
		k++;
		off += flen;
	}
	memmove(p->buf, p->buf + off, p->len - off);
	p->len -= off;
	return k;
}

static void free_replies(Ps__Reply **r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ps__reply__free_unpacked(r[i], NULL);
}

/* Asserts that nothing reached p. */
static void expect_nothing(struct fixture *f, struct peer *p)
{
	Ps__Reply *r[REPLIES_MAX];
	size_t n = drain(f, p, r);
	free_replies(r, n);
	assert_int_equal(n, 0);
}

/* Asserts that exactly one frame reached p, for request id; returns it
 * (free with ps__reply__free_unpacked). */
static Ps__Reply *expect_one(struct fixture *f, struct peer *p, uint64_t id)
{
	Ps__Reply *r[REPLIES_MAX];
	size_t n = drain(f, p, r);
	if (n != 1)
		free_replies(r, n);
	assert_int_equal(n, 1);
	assert_int_equal(r[0]->id, id);
	return r[0];
}

/* ---- requests ----------------------------------------------------------- */

static void send_register(struct membership *m, struct peer *p, uint64_t rid,
			  const char *id, const char *url, const char *meta)
{
	Ps__RegisterReq rr = PS__REGISTER_REQ__INIT;
	rr.id = (char *)id;
	rr.url = (char *)url;
	rr.metadata_json = (char *)meta;
	Ps__Request req = PS__REQUEST__INIT;
	req.id = rid;
	req.body_case = PS__REQUEST__BODY_REGISTER;
	req.register_ = &rr;
	dispatch_handle(m, p->c, &req);
}

/* A request whose body is a node id (GET_NODE, DELETE_NODE) or empty. */
static void send_simple(struct membership *m, struct peer *p, uint64_t rid,
			Ps__Request__BodyCase kind, const char *id)
{
	Ps__NodeIdReq nid = PS__NODE_ID_REQ__INIT;
	Ps__ListNodesReq list = PS__LIST_NODES_REQ__INIT;
	Ps__Empty empty = PS__EMPTY__INIT;
	Ps__Request req = PS__REQUEST__INIT;
	req.id = rid;
	req.body_case = kind;
	nid.id = (char *)id;
	switch (kind) {
	case PS__REQUEST__BODY_GET_NODE:
		req.get_node = &nid;
		break;
	case PS__REQUEST__BODY_DELETE_NODE:
		req.delete_node = &nid;
		break;
	case PS__REQUEST__BODY_LIST_NODES:
		req.list_nodes = &list;
		break;
	case PS__REQUEST__BODY_SUBSCRIBE:
		req.subscribe = &empty;
		break;
	default:
		fail_msg("send_simple: kind %d not handled", kind);
	}
	dispatch_handle(m, p->c, &req);
}

/* Subscribes p and consumes the subscription's first reply. */
static void subscribe(struct fixture *f, struct membership *m, struct peer *p)
{
	send_simple(m, p, 900, PS__REQUEST__BODY_SUBSCRIBE, NULL);
	Ps__Reply *r = expect_one(f, p, 900);
	assert_null(r->error);
	assert_null(r->event);
	ps__reply__free_unpacked(r, NULL);
}

static bool reply_lists(const Ps__Reply *r, const char *id)
{
	for (size_t i = 0; i < r->n_nodes; i++)
		if (!strcmp(r->nodes[i]->id, id))
			return true;
	return false;
}

/* ---- the log, read back ------------------------------------------------- */

#define LOGGED_MAX 16
struct logged {
	char ids[LOGGED_MAX][NODE_ID_MAX + 1];
	bool removed[LOGGED_MAX];
	uint64_t versions[LOGGED_MAX];
	size_t n;
};

static int logged_upsert(void *ud, const Ps__Node *n, uint64_t v)
{
	struct logged *l = ud;
	assert_true(l->n < LOGGED_MAX);
	snprintf(l->ids[l->n], sizeof(l->ids[0]), "%s", n->id);
	l->removed[l->n] = false;
	l->versions[l->n++] = v;
	return 0;
}

static int logged_remove(void *ud, const char *id, uint64_t v)
{
	struct logged *l = ud;
	assert_true(l->n < LOGGED_MAX);
	snprintf(l->ids[l->n], sizeof(l->ids[0]), "%s", id);
	l->removed[l->n] = true;
	l->versions[l->n++] = v;
	return 0;
}

static void read_log(const struct membership *m, struct logged *l)
{
	static const struct wal_replay_ops ops = {
	    .upsert = logged_upsert,
	    .remove = logged_remove,
	};
	char err[256];
	size_t tail = 0;
	memset(l, 0, sizeof(*l));
	assert_int_equal(
	    wal_replay(m->wal_path, 0, &ops, l, &tail, err, sizeof(err)), 0);
	assert_int_equal(tail, 0);
}

/* ---- fixture ------------------------------------------------------------ */

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	if (tmpdir_make(f->dir, "persist")) {
		free(f);
		return -1;
	}
	config_defaults(&f->cfg);
	snprintf(f->cfg.data_dir, sizeof(f->cfg.data_dir), "%s", f->dir);
	f->loop = ev_loop_new(EVFLAG_AUTO);
	if (!f->loop)
		return -1;
	log_set_level(LOG_ERROR);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	wal_fdatasync = fdatasync;
	if (f->m)
		m_close(f->m);
	for (size_t i = 0; i < f->npeers; i++) {
		close(f->peers[i].fd);
		free(f->peers[i].c);
	}
	ev_loop_destroy(f->loop);
	int rc = tmpdir_remove(f->dir);
	free(f);
	return rc;
}

/* ---- 1. group commit ---------------------------------------------------- */

/* Registrations from two clients are held until one commit, which makes
 * them durable with a single fdatasync; then every reply goes out. */
static void test_group_commit_holds_replies(void **state)
{
	struct fixture *f = *state;
	struct membership *m = f->m = m_open(f);
	struct peer *a = client_add(f, m), *b = client_add(f, m);
	uint64_t v0 = m->reg.version, syncs = m->n_wal_syncs;

	send_register(m, a, 1, "node-a", "http://10.0.0.1:8080", NULL);
	send_register(m, b, 2, "node-b", "http://10.0.0.2:8080", NULL);
	send_register(m, a, 3, "node-c", "http://10.0.0.3:8080", NULL);
	assert_int_equal(m->nheld, 3);
	assert_int_equal(m->nstaged, 3);
	expect_nothing(f, a);
	expect_nothing(f, b);
	/* Nothing synced yet: the log on disk holds no record. */
	struct logged l;
	read_log(m, &l);
	assert_int_equal(l.n, 0);

	assert_int_equal(persist_commit(m), 0);
	assert_int_equal(m->n_wal_syncs, syncs + 1); /* one for all three */
	assert_int_equal(m->nheld, 0);
	assert_int_equal(m->nstaged, 0);

	Ps__Reply *r[REPLIES_MAX];
	size_t n = drain(f, a, r);
	assert_int_equal(n, 2);
	assert_int_equal(r[0]->id, 1);
	assert_int_equal(r[1]->id, 3);
	for (size_t i = 0; i < n; i++) {
		assert_null(r[i]->error);
		assert_true(r[i]->has_created && r[i]->created);
		assert_non_null(r[i]->node);
	}
	assert_string_equal(r[0]->node->id, "node-a");
	assert_string_equal(r[1]->node->id, "node-c");
	assert_int_equal(r[1]->registry_version, v0 + 3);
	free_replies(r, n);
	Ps__Reply *rb = expect_one(f, b, 2);
	assert_null(rb->error);
	assert_string_equal(rb->node->id, "node-b");
	ps__reply__free_unpacked(rb, NULL);

	read_log(m, &l);
	assert_int_equal(l.n, 3);
	const char *want[] = {"node-a", "node-b", "node-c"};
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(l.ids[i], want[i]);
		assert_false(l.removed[i]);
		assert_int_equal(l.versions[i], v0 + 1 + i);
	}
}

/* A write refused before any change (validation) is answered at once and
 * leaves nothing staged or held. */
static void test_refused_write_answers_at_once(void **state)
{
	struct fixture *f = *state;
	struct membership *m = f->m = m_open(f);
	struct peer *a = client_add(f, m);
	send_register(m, a, 7, "node-a", "not a url", NULL);
	assert_int_equal(m->nheld, 0);
	assert_int_equal(m->nstaged, 0);
	Ps__Reply *r = expect_one(f, a, 7);
	assert_non_null(r->error);
	assert_string_equal(r->error->code, "VALIDATION_ERROR");
	ps__reply__free_unpacked(r, NULL);
	assert_null(registry_find(&m->reg, "node-a"));
}

/* ---- 2. staging: reads and events wait for the commit ------------------- */

static void test_read_waits_for_commit(void **state)
{
	struct fixture *f = *state;
	struct membership *m = f->m = m_open(f);
	struct peer *sub = client_add(f, m), *writer = client_add(f, m),
		    *reader = client_add(f, m);
	subscribe(f, m, sub);

	send_register(m, writer, 1, "node-a", "http://10.0.0.1:8080", NULL);
	send_simple(m, reader, 2, PS__REQUEST__BODY_LIST_NODES, NULL);
	send_simple(m, reader, 3, PS__REQUEST__BODY_GET_NODE, "node-a");
	assert_int_equal(m->nwaiting, 2);
	expect_nothing(f, writer);
	expect_nothing(f, reader);
	expect_nothing(f, sub);

	assert_int_equal(persist_commit(m), 0);
	assert_int_equal(m->nwaiting, 0);
	assert_int_equal(m->n_reads_waited, 2);

	Ps__Reply *w = expect_one(f, writer, 1);
	assert_null(w->error);
	ps__reply__free_unpacked(w, NULL);

	Ps__Reply *r[REPLIES_MAX];
	size_t n = drain(f, reader, r);
	assert_int_equal(n, 2);
	assert_int_equal(r[0]->id, 2);
	assert_null(r[0]->error);
	assert_true(reply_lists(r[0], "node-a"));
	assert_int_equal(r[0]->registry_version, m->reg.version);
	assert_int_equal(r[1]->id, 3);
	assert_null(r[1]->error);
	assert_string_equal(r[1]->node->id, "node-a");
	free_replies(r, n);

	Ps__Reply *ev = expect_one(f, sub, 900);
	assert_non_null(ev->event);
	assert_string_equal(ev->event->kind, "node");
	assert_string_equal(ev->event->type, "registered");
	assert_string_equal(ev->event->id, "node-a");
	assert_non_null(ev->event->node);
	ps__reply__free_unpacked(ev, NULL);
}

/* With nothing staged a read is answered at once (it never waits behind
 * an empty commit). */
static void test_read_without_staged_write_is_immediate(void **state)
{
	struct fixture *f = *state;
	struct membership *m = f->m = m_open(f);
	struct peer *reader = client_add(f, m);
	send_simple(m, reader, 5, PS__REQUEST__BODY_LIST_NODES, NULL);
	assert_int_equal(m->nwaiting, 0);
	ps__reply__free_unpacked(expect_one(f, reader, 5), NULL);
}

/* ---- 3. a failed commit undoes the staged writes ------------------------ */

static void expect_refused(struct fixture *f, struct peer *p,
			   const uint64_t *ids, size_t nids)
{
	Ps__Reply *r[REPLIES_MAX];
	size_t n = drain(f, p, r);
	assert_int_equal(n, nids);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(r[i]->id, ids[i]);
		assert_non_null(r[i]->error);
		assert_string_equal(r[i]->error->code, "STORAGE_UNAVAILABLE");
		assert_null(r[i]->node);
	}
	free_replies(r, n);
}

static void expect_state_before(struct membership *m)
{
	assert_null(registry_find(&m->reg, "node-new"));
	const struct reg_node *old = registry_find(&m->reg, "node-old");
	assert_non_null(old);
	assert_string_equal(old->pb.url, "http://10.0.0.1:8080");
	assert_string_equal(old->pb.metadata_json, "{\"v\":1}");
	assert_non_null(registry_find(&m->reg, "node-del"));
	assert_int_equal(m->reg.n, 2);
}

static void test_failed_commit_undoes(void **state)
{
	struct fixture *f = *state;
	struct membership *m = f->m = m_open(f);
	struct peer *sub = client_add(f, m), *writer = client_add(f, m),
		    *reader = client_add(f, m);
	send_register(m, writer, 1, "node-old", "http://10.0.0.1:8080",
		      "{\"v\":1}");
	send_register(m, writer, 2, "node-del", "http://10.0.0.2:8080", NULL);
	assert_int_equal(persist_commit(m), 0);
	Ps__Reply *r[REPLIES_MAX];
	free_replies(r, drain(f, writer, r));
	subscribe(f, m, sub);
	uint64_t undone = m->n_undone;

	wal_fdatasync = fdatasync_eio;
	send_register(m, writer, 10, "node-new", "http://10.0.0.3:8080", NULL);
	send_register(m, writer, 11, "node-old", "http://10.0.0.9:8080",
		      "{\"v\":2}");
	send_simple(m, writer, 12, PS__REQUEST__BODY_DELETE_NODE, "node-del");
	send_simple(m, reader, 13, PS__REQUEST__BODY_LIST_NODES, NULL);
	assert_int_equal(m->nstaged, 3);
	assert_null(registry_find(&m->reg, "node-del"));

	assert_int_equal(persist_commit(m), -EIO);
	wal_fdatasync = fdatasync;
	assert_int_equal(m->n_undone, undone + 3);
	assert_true(m->store_failed);

	const uint64_t ids[] = {10, 11, 12};
	expect_refused(f, writer, ids, 3);
	expect_state_before(m);
	expect_nothing(f, sub);
	/* The read that waited sees the state before, not the refused one. */
	Ps__Reply *list = expect_one(f, reader, 13);
	assert_null(list->error);
	assert_int_equal(list->n_nodes, 2);
	assert_false(reply_lists(list, "node-new"));
	assert_true(reply_lists(list, "node-del"));
	ps__reply__free_unpacked(list, NULL);

	/* A restart (after a crash: no snapshot) finds the state before. */
	m_close(m);
	m = f->m = m_open(f);
	expect_state_before(m);
}

/* A failed commit must not let a later successful sync write the refused
 * records: they were discarded from the log's buffer. Then the store
 * recovers (snapshot) and takes writes again. */
static void test_failed_commit_then_recovery(void **state)
{
	struct fixture *f = *state;
	struct membership *m = f->m = m_open(f);
	struct peer *writer = client_add(f, m);
	wal_fdatasync = fdatasync_eio;
	send_register(m, writer, 1, "node-lost", "http://10.0.0.1:8080", NULL);
	assert_int_equal(persist_commit(m), -EIO);
	wal_fdatasync = fdatasync;
	const uint64_t ids[] = {1};
	expect_refused(f, writer, ids, 1);

	/* While the store is failed, writes are refused at once. */
	send_register(m, writer, 2, "node-x", "http://10.0.0.2:8080", NULL);
	assert_int_equal(m->nheld, 0);
	expect_refused(f, writer, (const uint64_t[]){2}, 1);

	/* The disk is back: the flush timer syncs the log first, and the
	 * refused record must not be in what it writes. */
	assert_int_equal(persist_flush(m), 0);
	struct logged l;
	read_log(m, &l);
	assert_int_equal(l.n, 0);
	assert_int_equal(persist_snapshot(m), 0);
	assert_false(m->store_failed);
	send_register(m, writer, 3, "node-ok", "http://10.0.0.3:8080", NULL);
	assert_int_equal(persist_commit(m), 0);
	Ps__Reply *r = expect_one(f, writer, 3);
	assert_null(r->error);
	ps__reply__free_unpacked(r, NULL);

	m_close(m);
	m = f->m = m_open(f);
	assert_null(registry_find(&m->reg, "node-lost"));
	assert_null(registry_find(&m->reg, "node-x"));
	assert_non_null(registry_find(&m->reg, "node-ok"));
}

/* ---- 4. recovery -------------------------------------------------------- */

static void test_recovery_from_log(void **state)
{
	struct fixture *f = *state;
	struct membership *m = f->m = m_open(f);
	struct peer *w = client_add(f, m);
	char self[NODE_ID_MAX + 1];
	snprintf(self, sizeof(self), "%s", m->self_id);
	send_register(m, w, 1, "node-a", "http://10.0.0.1:8080", NULL);
	send_register(m, w, 2, "node-b", "http://10.0.0.2:8080", "{\"k\":1}");
	assert_int_equal(persist_commit(m), 0);
	send_register(m, w, 3, "node-c", "http://10.0.0.3:8080", NULL);
	send_simple(m, w, 4, PS__REQUEST__BODY_DELETE_NODE, "node-a");
	assert_int_equal(persist_commit(m), 0);
	uint64_t v = m->reg.version;

	m_close(m);
	m = f->m = m_open(f);
	assert_string_equal(m->self_id, self);
	assert_int_equal(m->reg.version, v);
	assert_int_equal(m->n_wal_replayed, 4);
	assert_int_equal(m->reg.n, 2);
	assert_null(registry_find(&m->reg, "node-a"));
	const struct reg_node *b = registry_find(&m->reg, "node-b");
	assert_non_null(b);
	assert_string_equal(b->pb.url, "http://10.0.0.2:8080");
	assert_string_equal(b->pb.metadata_json, "{\"k\":1}");
	assert_non_null(registry_find(&m->reg, "node-c"));
}

static void test_recovery_from_snapshot_and_log(void **state)
{
	struct fixture *f = *state;
	struct membership *m = f->m = m_open(f);
	struct peer *w = client_add(f, m);
	send_register(m, w, 1, "node-a", "http://10.0.0.1:8080", NULL);
	send_register(m, w, 2, "node-b", "http://10.0.0.2:8080", NULL);
	assert_int_equal(persist_commit(m), 0);
	assert_int_equal(persist_snapshot(m), 0);
	/* The snapshot rotated the log: the changes after it are logged. */
	send_register(m, w, 3, "node-b", "http://10.0.0.22:8080", NULL);
	send_register(m, w, 4, "node-c", "http://10.0.0.3:8080", NULL);
	send_simple(m, w, 5, PS__REQUEST__BODY_DELETE_NODE, "node-a");
	assert_int_equal(persist_commit(m), 0);
	struct logged l;
	read_log(m, &l);
	assert_int_equal(l.n, 3);
	uint64_t v = m->reg.version;

	m_close(m);
	m = f->m = m_open(f);
	assert_int_equal(m->reg.version, v);
	assert_int_equal(m->n_wal_replayed, 3);
	assert_int_equal(m->reg.n, 2);
	assert_null(registry_find(&m->reg, "node-a"));
	assert_string_equal(registry_find(&m->reg, "node-b")->pb.url,
			    "http://10.0.0.22:8080");
	assert_non_null(registry_find(&m->reg, "node-c"));
}

/* ---- 5. metadata stored under a larger limit ---------------------------- */

/* Metadata of about `len` bytes: {"blob":"xxx..."}. */
static char *big_metadata(size_t len)
{
	char *s = malloc(len + 1);
	assert_non_null(s);
	memset(s, 'x', len);
	memcpy(s, "{\"blob\":\"", 9);
	memcpy(s + len - 2, "\"}", 2);
	s[len] = '\0';
	return s;
}

static void metadata_over_limit(struct fixture *f, bool snapshot)
{
	struct membership *m = f->m = m_open(f);
	struct peer *w = client_add(f, m);
	char *meta = big_metadata(2000);
	send_register(m, w, 1, "node-big", "http://10.0.0.1:8080", meta);
	send_register(m, w, 2, "node-small", "http://10.0.0.2:8080", NULL);
	assert_int_equal(persist_commit(m), 0);
	Ps__Reply *r[REPLIES_MAX];
	size_t n = drain(f, w, r);
	assert_int_equal(n, 2);
	assert_null(r[0]->error);
	free_replies(r, n);
	if (snapshot)
		assert_int_equal(persist_snapshot(m), 0);
	uint64_t v = m->reg.version;
	m_close(m);

	f->cfg.metadata_max = 100;
	m = f->m = m_open(f);
	assert_int_equal(m->reg.version, v);
	assert_int_equal(m->n_wal_replayed, snapshot ? 0 : 2);
	const struct reg_node *big = registry_find(&m->reg, "node-big");
	assert_non_null(big);
	assert_string_equal(big->pb.metadata_json, meta);
	assert_non_null(registry_find(&m->reg, "node-small"));
	assert_int_equal(registry_count_over_limit(&m->reg), 1);
	assert_int_equal(m->n_over_limit, 1);
	free(meta);
}

static void test_metadata_over_limit_from_log(void **state)
{
	metadata_over_limit(*state, false);
}

static void test_metadata_over_limit_from_snapshot(void **state)
{
	metadata_over_limit(*state, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_group_commit_holds_replies,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_write_answers_at_once,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_waits_for_commit, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_read_without_staged_write_is_immediate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_commit_undoes, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_failed_commit_then_recovery,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_recovery_from_log, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_recovery_from_snapshot_and_log,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metadata_over_limit_from_log,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_metadata_over_limit_from_snapshot, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
