/*
 * Unit tests: the membership store's group commit, staging and recovery
 * (src/membership/persist.c), driven through the request handlers
 * (dispatch.c) without the event loop's commit hook: each test calls
 * dispatch_handle() and persist_commit() itself, so "before the commit"
 * is a point in the test, not a race.
 *
 * The process state and its clients come from tests/lib/mproc.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../lib/mproc.h"

/* The log itself, for its fdatasync seam (a static pointer). Defining
 * every wal_* symbol here keeps the archive's wal.o out of the link. */
#include "../../src/membership/wal.c"

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
	*state = mproc_new("persist");
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	wal_fdatasync = fdatasync;
	mproc_free(*state);
	return 0;
}

/* ---- 1. group commit ---------------------------------------------------- */

/* Registrations from two clients are held until one commit, which makes
 * them durable with a single fdatasync; then every reply goes out. */
static void test_group_commit_holds_replies(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *a = mproc_client(f, m), *b = mproc_client(f, m);
	uint64_t v0 = m->reg.version, syncs = m->n_wal_syncs;

	mproc_register(m, a, 1, "node-a", "http://10.0.0.1:8080", NULL);
	mproc_register(m, b, 2, "node-b", "http://10.0.0.2:8080", NULL);
	mproc_register(m, a, 3, "node-c", "http://10.0.0.3:8080", NULL);
	assert_int_equal(m->nheld, 3);
	assert_int_equal(m->nstaged, 3);
	mproc_expect_nothing(f, a);
	mproc_expect_nothing(f, b);
	/* Nothing synced yet: the log on disk holds no record. */
	struct logged l;
	read_log(m, &l);
	assert_int_equal(l.n, 0);

	assert_int_equal(persist_commit(m), 0);
	assert_int_equal(m->n_wal_syncs, syncs + 1); /* one for all three */
	assert_int_equal(m->nheld, 0);
	assert_int_equal(m->nstaged, 0);

	Ps__Reply *r[MPROC_REPLIES_MAX];
	size_t n = mproc_drain(f, a, r);
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
	mproc_free_replies(r, n);
	Ps__Reply *rb = mproc_expect_one(f, b, 2);
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
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *a = mproc_client(f, m);
	mproc_register(m, a, 7, "node-a", "not a url", NULL);
	assert_int_equal(m->nheld, 0);
	assert_int_equal(m->nstaged, 0);
	mproc_expect_error(f, a, 7, "VALIDATION_ERROR");
	assert_null(registry_find(&m->reg, "node-a"));
}

/* ---- 2. staging: reads and events wait for the commit ------------------- */

static void test_read_waits_for_commit(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *sub = mproc_client(f, m),
			  *writer = mproc_client(f, m),
			  *reader = mproc_client(f, m);
	mproc_subscribe(f, m, sub);

	mproc_register(m, writer, 1, "node-a", "http://10.0.0.1:8080", NULL);
	mproc_request(m, reader, 2, PS__REQUEST__BODY_LIST_NODES, NULL);
	mproc_request(m, reader, 3, PS__REQUEST__BODY_GET_NODE, "node-a");
	assert_int_equal(m->nwaiting, 2);
	mproc_expect_nothing(f, writer);
	mproc_expect_nothing(f, reader);
	mproc_expect_nothing(f, sub);

	assert_int_equal(persist_commit(m), 0);
	assert_int_equal(m->nwaiting, 0);
	assert_int_equal(m->n_reads_waited, 2);

	Ps__Reply *w = mproc_expect_one(f, writer, 1);
	assert_null(w->error);
	ps__reply__free_unpacked(w, NULL);

	Ps__Reply *r[MPROC_REPLIES_MAX];
	size_t n = mproc_drain(f, reader, r);
	assert_int_equal(n, 2);
	assert_int_equal(r[0]->id, 2);
	assert_null(r[0]->error);
	assert_true(mproc_lists(r[0], "node-a"));
	assert_int_equal(r[0]->registry_version, m->reg.version);
	assert_int_equal(r[1]->id, 3);
	assert_null(r[1]->error);
	assert_string_equal(r[1]->node->id, "node-a");
	mproc_free_replies(r, n);

	Ps__Reply *ev = mproc_expect_one(f, sub, MPROC_SUBSCRIBE_ID);
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
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *reader = mproc_client(f, m);
	mproc_request(m, reader, 5, PS__REQUEST__BODY_LIST_NODES, NULL);
	assert_int_equal(m->nwaiting, 0);
	ps__reply__free_unpacked(mproc_expect_one(f, reader, 5), NULL);
}

/* ---- 3. a failed commit undoes the staged writes ------------------------ */

static void expect_refused(struct mproc *f, struct mproc_peer *p,
			   const uint64_t *ids, size_t nids)
{
	Ps__Reply *r[MPROC_REPLIES_MAX];
	size_t n = mproc_drain(f, p, r);
	assert_int_equal(n, nids);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(r[i]->id, ids[i]);
		assert_non_null(r[i]->error);
		assert_string_equal(r[i]->error->code, "STORAGE_UNAVAILABLE");
		assert_null(r[i]->node);
	}
	mproc_free_replies(r, n);
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
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *sub = mproc_client(f, m),
			  *writer = mproc_client(f, m),
			  *reader = mproc_client(f, m);
	mproc_register(m, writer, 1, "node-old", "http://10.0.0.1:8080",
		       "{\"v\":1}");
	mproc_register(m, writer, 2, "node-del", "http://10.0.0.2:8080", NULL);
	assert_int_equal(persist_commit(m), 0);
	Ps__Reply *r[MPROC_REPLIES_MAX];
	mproc_free_replies(r, mproc_drain(f, writer, r));
	events_registry_if_changed(m); /* as the loop does after a commit */
	mproc_subscribe(f, m, sub);
	uint64_t undone = m->n_undone, version = m->reg.version;

	wal_fdatasync = mproc_fdatasync_eio;
	mproc_register(m, writer, 10, "node-new", "http://10.0.0.3:8080", NULL);
	mproc_register(m, writer, 11, "node-old", "http://10.0.0.9:8080",
		       "{\"v\":2}");
	mproc_request(m, writer, 12, PS__REQUEST__BODY_DELETE_NODE, "node-del");
	mproc_request(m, reader, 13, PS__REQUEST__BODY_LIST_NODES, NULL);
	assert_int_equal(m->nstaged, 3);
	assert_null(registry_find(&m->reg, "node-del"));

	assert_int_equal(persist_commit(m), -EIO);
	events_registry_if_changed(m);
	wal_fdatasync = fdatasync;
	assert_int_equal(m->n_undone, undone + 3);
	assert_true(m->store_failed);
	/* The version is the state's: the one on disk, which a restart
	 * brings back. Left past it, the next writes would reuse versions
	 * readers had already seen for other content. */
	assert_int_equal(m->reg.version, version);

	const uint64_t ids[] = {10, 11, 12};
	expect_refused(f, writer, ids, 3);
	expect_state_before(m);
	mproc_expect_nothing(f, sub);
	/* The read that waited sees the state before, not the refused one. */
	Ps__Reply *list = mproc_expect_one(f, reader, 13);
	assert_null(list->error);
	assert_int_equal(list->n_nodes, 2);
	assert_false(mproc_lists(list, "node-new"));
	assert_true(mproc_lists(list, "node-del"));
	assert_int_equal(list->registry_version, version);
	ps__reply__free_unpacked(list, NULL);

	/* A restart (after a crash: no snapshot) finds the state before. */
	mproc_close(m);
	m = f->m = mproc_open(f);
	expect_state_before(m);
	assert_int_equal(m->reg.version, version);
}

/* A failed commit must not let a later successful sync write the refused
 * records: they were discarded from the log's buffer. Then the store
 * recovers (snapshot) and takes writes again. */
static void test_failed_commit_then_recovery(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *writer = mproc_client(f, m);
	wal_fdatasync = mproc_fdatasync_eio;
	mproc_register(m, writer, 1, "node-lost", "http://10.0.0.1:8080", NULL);
	assert_int_equal(persist_commit(m), -EIO);
	wal_fdatasync = fdatasync;
	const uint64_t ids[] = {1};
	expect_refused(f, writer, ids, 1);

	/* While the store is failed, writes are refused at once. */
	mproc_register(m, writer, 2, "node-x", "http://10.0.0.2:8080", NULL);
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
	mproc_register(m, writer, 3, "node-ok", "http://10.0.0.3:8080", NULL);
	assert_int_equal(persist_commit(m), 0);
	Ps__Reply *r = mproc_expect_one(f, writer, 3);
	assert_null(r->error);
	ps__reply__free_unpacked(r, NULL);

	mproc_close(m);
	m = f->m = mproc_open(f);
	assert_null(registry_find(&m->reg, "node-lost"));
	assert_null(registry_find(&m->reg, "node-x"));
	assert_non_null(registry_find(&m->reg, "node-ok"));
}

/* ---- 4. recovery -------------------------------------------------------- */

static void test_recovery_from_log(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	char self[NODE_ID_MAX + 1];
	snprintf(self, sizeof(self), "%s", m->self_id);
	mproc_register(m, w, 1, "node-a", "http://10.0.0.1:8080", NULL);
	mproc_register(m, w, 2, "node-b", "http://10.0.0.2:8080", "{\"k\":1}");
	assert_int_equal(persist_commit(m), 0);
	mproc_register(m, w, 3, "node-c", "http://10.0.0.3:8080", NULL);
	mproc_request(m, w, 4, PS__REQUEST__BODY_DELETE_NODE, "node-a");
	assert_int_equal(persist_commit(m), 0);
	uint64_t v = m->reg.version;

	mproc_close(m);
	m = f->m = mproc_open(f);
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
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	mproc_register(m, w, 1, "node-a", "http://10.0.0.1:8080", NULL);
	mproc_register(m, w, 2, "node-b", "http://10.0.0.2:8080", NULL);
	assert_int_equal(persist_commit(m), 0);
	assert_int_equal(persist_snapshot(m), 0);
	/* The snapshot rotated the log: the changes after it are logged. */
	mproc_register(m, w, 3, "node-b", "http://10.0.0.22:8080", NULL);
	mproc_register(m, w, 4, "node-c", "http://10.0.0.3:8080", NULL);
	mproc_request(m, w, 5, PS__REQUEST__BODY_DELETE_NODE, "node-a");
	assert_int_equal(persist_commit(m), 0);
	struct logged l;
	read_log(m, &l);
	assert_int_equal(l.n, 3);
	uint64_t v = m->reg.version;

	mproc_close(m);
	m = f->m = mproc_open(f);
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

static void metadata_over_limit(struct mproc *f, bool snapshot)
{
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	char *meta = big_metadata(2000);
	mproc_register(m, w, 1, "node-big", "http://10.0.0.1:8080", meta);
	mproc_register(m, w, 2, "node-small", "http://10.0.0.2:8080", NULL);
	assert_int_equal(persist_commit(m), 0);
	Ps__Reply *r[MPROC_REPLIES_MAX];
	size_t n = mproc_drain(f, w, r);
	assert_int_equal(n, 2);
	assert_null(r[0]->error);
	mproc_free_replies(r, n);
	if (snapshot)
		assert_int_equal(persist_snapshot(m), 0);
	uint64_t v = m->reg.version;
	mproc_close(m);

	f->cfg.metadata_max = 100;
	m = f->m = mproc_open(f);
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
