/*
 * Unit tests: the membership process's request handlers
 * (src/membership/dispatch.c), one request kind at a time: the reply a
 * client gets, whether it is held behind the group commit (persist.c) or
 * sent at once, and the events subscribers get. The process state and
 * its clients come from tests/lib/mproc.h; the tests call
 * persist_commit() themselves.
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

static int setup(void **state)
{
	*state = mproc_new("dispatch");
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	wal_fdatasync = fdatasync;
	mproc_free(*state);
	return 0;
}

static void heartbeat(struct membership *m, struct mproc_peer *p, uint64_t rid,
		      const char *id, bool has_status, Ps__NodeStatus status)
{
	Ps__HeartbeatReq hb = PS__HEARTBEAT_REQ__INIT;
	hb.id = (char *)id;
	hb.has_status = has_status;
	hb.status = status;
	Ps__Request req = PS__REQUEST__INIT;
	req.id = rid;
	req.body_case = PS__REQUEST__BODY_HEARTBEAT;
	req.heartbeat = &hb;
	dispatch_handle(m, p->c, &req);
}

static void set_serving(struct membership *m, struct mproc_peer *p,
			uint64_t rid, bool serving)
{
	Ps__SetServingReq ss = PS__SET_SERVING_REQ__INIT;
	ss.serving = serving;
	Ps__Request req = PS__REQUEST__INIT;
	req.id = rid;
	req.body_case = PS__REQUEST__BODY_SET_SERVING;
	req.set_serving = &ss;
	dispatch_handle(m, p->c, &req);
}

/* A write just handled for w: held, as is its event for sub, until the
 * commit; returns w's reply after it (free with
 * ps__reply__free_unpacked). */
static Ps__Reply *held_until_commit(struct mproc *f, struct membership *m,
				    struct mproc_peer *w,
				    struct mproc_peer *sub, uint64_t id)
{
	assert_int_equal(m->nheld, 1);
	mproc_expect_nothing(f, w);
	mproc_expect_nothing(f, sub);
	assert_int_equal(persist_commit(m), 0);
	Ps__Reply *r = mproc_expect_one(f, w, id);
	assert_null(r->error);
	return r;
}

/* The one event that reached subscriber p: kind "node", type, id. */
static void expect_node_event(struct mproc *f, struct mproc_peer *p,
			      const char *type, const char *id)
{
	Ps__Reply *r = mproc_expect_one(f, p, MPROC_SUBSCRIBE_ID);
	assert_non_null(r->event);
	assert_string_equal(r->event->kind, "node");
	assert_string_equal(r->event->type, type);
	assert_string_equal(r->event->id, id);
	ps__reply__free_unpacked(r, NULL);
}

/* ---- register ----------------------------------------------------------- */

static void test_register_update_is_held_and_announced(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *sub = mproc_client(f, m), *w = mproc_client(f, m);
	mproc_registered(f, m, w, "node-a");
	mproc_subscribe(f, m, sub);

	mproc_register(m, w, 2, "node-a", "http://10.0.0.2:8080", NULL);
	Ps__Reply *r = held_until_commit(f, m, w, sub, 2);
	assert_true(r->has_created);
	assert_false(r->created);
	assert_string_equal(r->node->url, "http://10.0.0.2:8080");
	ps__reply__free_unpacked(r, NULL);
	expect_node_event(f, sub, "updated", "node-a");
}

static void test_register_without_id_gets_one(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	mproc_register(m, w, 1, NULL, "http://10.0.0.1:8080", NULL);
	assert_int_equal(persist_commit(m), 0);
	Ps__Reply *r = mproc_expect_one(f, w, 1);
	assert_null(r->error);
	assert_true(r->created);
	assert_true(node_id_valid(r->node->id));
	assert_non_null(registry_find(&m->reg, r->node->id));
	ps__reply__free_unpacked(r, NULL);
}

static void test_register_validation_names_the_field(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	mproc_register(m, w, 1, "node-a", "ftp://nowhere", NULL);
	assert_int_equal(m->nstaged, 0);
	Ps__Reply *r = mproc_expect_one(f, w, 1);
	assert_non_null(r->error);
	assert_string_equal(r->error->code, "VALIDATION_ERROR");
	assert_non_null(r->error->field);
	assert_string_equal(r->error->field, "url");
	ps__reply__free_unpacked(r, NULL);
}

static void test_register_self_conflicts(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	mproc_register(m, w, 1, m->self_id, "http://10.0.0.1:8080", NULL);
	assert_int_equal(m->nstaged, 0);
	mproc_expect_error(f, w, 1, "CONFLICT");
}

static void test_worker_refuses_writes(void **state)
{
	struct mproc *f = *state;
	f->cfg.role = ROLE_WORKER;
	snprintf(f->cfg.coordinator_url, sizeof(f->cfg.coordinator_url),
		 "http://10.0.0.9:8080");
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	mproc_register(m, w, 1, "node-a", "http://10.0.0.1:8080", NULL);
	mproc_request(m, w, 2, PS__REQUEST__BODY_DELETE_NODE, "node-a");
	heartbeat(m, w, 3, "node-a", false, 0);
	assert_int_equal(m->nstaged, 0);
	assert_int_equal(m->nheld, 0);
	Ps__Reply *r[MPROC_REPLIES_MAX];
	size_t n = mproc_drain(f, w, r);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(r[i]->id, i + 1);
		assert_non_null(r[i]->error);
		assert_string_equal(r[i]->error->code, "NOT_COORDINATOR");
		assert_string_equal(r[i]->coordinator_url,
				    "http://10.0.0.9:8080");
		assert_non_null(
		    strstr(r[i]->error->details_json, "http://10.0.0.9:8080"));
	}
	mproc_free_replies(r, n);
}

/* While the store is failed, writes are refused at once with nothing
 * staged; reads still work. */
static void test_writes_refused_while_store_failed(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	mproc_registered(f, m, w, "node-a");
	m->store_failed = true;
	mproc_register(m, w, 1, "node-b", "http://10.0.0.2:8080", NULL);
	mproc_request(m, w, 2, PS__REQUEST__BODY_DELETE_NODE, "node-a");
	set_serving(m, w, 3, false);
	assert_int_equal(m->nstaged, 0);
	assert_int_equal(m->nheld, 0);
	Ps__Reply *r[MPROC_REPLIES_MAX];
	size_t n = mproc_drain(f, w, r);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		assert_non_null(r[i]->error);
		assert_string_equal(r[i]->error->code, "STORAGE_UNAVAILABLE");
	}
	mproc_free_replies(r, n);
	assert_true(m->serving);
	assert_null(registry_find(&m->reg, "node-b"));
	mproc_request(m, w, 4, PS__REQUEST__BODY_GET_NODE, "node-a");
	Ps__Reply *g = mproc_expect_one(f, w, 4);
	assert_null(g->error);
	ps__reply__free_unpacked(g, NULL);
}

/* ---- heartbeat ---------------------------------------------------------- */

static void test_heartbeat_unknown_node(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	heartbeat(m, w, 1, "node-x", true, PS__NODE_STATUS__NODE_DISABLED);
	assert_int_equal(m->nstaged, 0);
	mproc_expect_error(f, w, 1, "NODE_NOT_FOUND");
}

/* A status the client sets is held until durable, then announced; a
 * heartbeat that changes no status is answered at once. */
static void test_heartbeat_status_is_held(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *sub = mproc_client(f, m), *w = mproc_client(f, m);
	mproc_registered(f, m, w, "node-a");
	mproc_subscribe(f, m, sub);

	heartbeat(m, w, 1, "node-a", false, 0);
	assert_int_equal(m->nheld, 0);
	Ps__Reply *r = mproc_expect_one(f, w, 1);
	assert_null(r->error);
	assert_true(r->has_timestamp_ms);
	ps__reply__free_unpacked(r, NULL);

	heartbeat(m, w, 2, "node-a", true, PS__NODE_STATUS__NODE_DISABLED);
	assert_int_equal(m->nstaged, 1);
	r = held_until_commit(f, m, w, sub, 2);
	assert_int_equal(r->node->status, PS__NODE_STATUS__NODE_DISABLED);
	ps__reply__free_unpacked(r, NULL);
	expect_node_event(f, sub, "status", "node-a");
}

/* ---- get, delete -------------------------------------------------------- */

static void test_get_node(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	mproc_registered(f, m, w, "node-a");
	mproc_request(m, w, 1, PS__REQUEST__BODY_GET_NODE, "node-a");
	Ps__Reply *r = mproc_expect_one(f, w, 1);
	assert_null(r->error);
	assert_string_equal(r->node->id, "node-a");
	assert_true(r->has_registry_version);
	assert_int_equal(r->registry_version, m->reg.version);
	ps__reply__free_unpacked(r, NULL);
	mproc_request(m, w, 2, PS__REQUEST__BODY_GET_NODE, "node-x");
	mproc_expect_error(f, w, 2, "NODE_NOT_FOUND");
}

static void test_delete(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *sub = mproc_client(f, m), *w = mproc_client(f, m);
	mproc_registered(f, m, w, "node-a");
	mproc_subscribe(f, m, sub);

	/* Refusals: nothing stays staged, nothing is held. */
	mproc_request(m, w, 1, PS__REQUEST__BODY_DELETE_NODE, "node-x");
	mproc_expect_error(f, w, 1, "NODE_NOT_FOUND");
	mproc_request(m, w, 2, PS__REQUEST__BODY_DELETE_NODE, m->self_id);
	mproc_expect_error(f, w, 2, "CONFLICT");
	assert_int_equal(m->nstaged, 0);
	assert_int_equal(m->nheld, 0);

	mproc_request(m, w, 3, PS__REQUEST__BODY_DELETE_NODE, "node-a");
	ps__reply__free_unpacked(held_until_commit(f, m, w, sub, 3), NULL);
	expect_node_event(f, sub, "removed", "node-a");
	assert_null(registry_find(&m->reg, "node-a"));
}

/* ---- serving mode ------------------------------------------------------- */

static void test_set_serving_is_held_and_announced(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	mproc_self(m);
	struct mproc_peer *sub = mproc_client(f, m), *w = mproc_client(f, m);
	mproc_subscribe(f, m, sub);

	set_serving(m, w, 1, false);
	assert_false(m->serving);
	assert_int_equal(m->nstaged, 1);
	Ps__Reply *r = held_until_commit(f, m, w, sub, 1);
	assert_non_null(r->service);
	assert_false(r->service->serving);
	ps__reply__free_unpacked(r, NULL);
	r = mproc_expect_one(f, sub, MPROC_SUBSCRIBE_ID);
	assert_non_null(r->event);
	assert_string_equal(r->event->kind, "service");
	assert_false(r->event->service->serving);
	ps__reply__free_unpacked(r, NULL);

	/* The same mode again: nothing staged, no event, still held (its
	 * answer says what is on disk). */
	set_serving(m, w, 2, false);
	assert_int_equal(m->nstaged, 0);
	assert_int_equal(persist_commit(m), 0);
	r = mproc_expect_one(f, w, 2);
	assert_false(r->service->serving);
	ps__reply__free_unpacked(r, NULL);
	mproc_expect_nothing(f, sub);

	/* It survives a restart (the log's serving record), and start-up
	 * sets our own entry's status from it. */
	mproc_close(m);
	m = f->m = mproc_open(f);
	assert_false(m->serving);
	mproc_self(m);
	assert_int_equal(registry_find(&m->reg, m->self_id)->pb.status,
			 PS__NODE_STATUS__NODE_DISABLED);
}

/* A commit that fails undoes a client's status and serving changes: 503
 * for both, the status, the mode and the registry version as before, no
 * event. */
static void test_failed_commit_undoes_status_and_serving(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	mproc_self(m);
	struct mproc_peer *sub = mproc_client(f, m), *w = mproc_client(f, m);
	mproc_registered(f, m, w, "node-a");
	mproc_subscribe(f, m, sub);
	uint64_t version = m->reg.version;

	wal_fdatasync = mproc_fdatasync_eio;
	heartbeat(m, w, 1, "node-a", true, PS__NODE_STATUS__NODE_DISABLED);
	set_serving(m, w, 2, false);
	assert_int_equal(m->nstaged, 2);
	assert_int_equal(persist_commit(m), -EIO);
	wal_fdatasync = fdatasync;

	Ps__Reply *r[MPROC_REPLIES_MAX];
	size_t n = mproc_drain(f, w, r);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(r[i]->id, i + 1);
		assert_string_equal(r[i]->error->code, "STORAGE_UNAVAILABLE");
	}
	mproc_free_replies(r, n);
	mproc_expect_nothing(f, sub);
	assert_int_equal(registry_find(&m->reg, "node-a")->pb.status,
			 PS__NODE_STATUS__NODE_ACTIVE);
	assert_true(m->serving);
	assert_int_equal(registry_find(&m->reg, m->self_id)->pb.status,
			 PS__NODE_STATUS__NODE_ACTIVE);
	assert_int_equal(m->reg.version, version);
}

/* ---- the rest ----------------------------------------------------------- */

static void test_report_gets_no_reply(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	Ps__ReportReq rep = PS__REPORT_REQ__INIT;
	rep.http_connections = 17;
	Ps__Request req = PS__REQUEST__INIT;
	req.id = 1;
	req.body_case = PS__REQUEST__BODY_REPORT;
	req.report = &rep;
	dispatch_handle(m, w->c, &req);
	assert_int_equal(m->http_connections, 17);
	mproc_expect_nothing(f, w);
}

static void test_unknown_request(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	Ps__Request req = PS__REQUEST__INIT;
	req.id = 5;
	dispatch_handle(m, w->c, &req);
	mproc_expect_error(f, w, 5, "BAD_REQUEST");
}

static void test_gossip_off(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	mproc_request(m, w, 1, PS__REQUEST__BODY_GET_MEMBERS, NULL);
	mproc_expect_error(f, w, 1, "GOSSIP_OFF");
	mproc_request(m, w, 2, PS__REQUEST__BODY_FOLLOW, NULL);
	mproc_expect_error(f, w, 2, "GOSSIP_OFF");
	assert_false(w->c->follower);
}

static void test_list_and_health(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *w = mproc_client(f, m);
	mproc_registered(f, m, w, "node-a");
	mproc_request(m, w, 1, PS__REQUEST__BODY_LIST_NODES, NULL);
	Ps__Reply *r = mproc_expect_one(f, w, 1);
	assert_null(r->error);
	assert_true(mproc_lists(r, "node-a"));
	assert_true(r->has_coordinator_healthy && r->coordinator_healthy);
	ps__reply__free_unpacked(r, NULL);
	mproc_request(m, w, 2, PS__REQUEST__BODY_GET_HEALTH, NULL);
	r = mproc_expect_one(f, w, 2);
	assert_true(mproc_lists(r, "node-a"));
	ps__reply__free_unpacked(r, NULL);
	mproc_request(m, w, 3, PS__REQUEST__BODY_GET_STATS, NULL);
	r = mproc_expect_one(f, w, 3);
	assert_null(r->error);
	assert_true(r->n_counters > 0);
	ps__reply__free_unpacked(r, NULL);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_register_update_is_held_and_announced),
	    T(test_register_without_id_gets_one),
	    T(test_register_validation_names_the_field),
	    T(test_register_self_conflicts),
	    T(test_worker_refuses_writes),
	    T(test_writes_refused_while_store_failed),
	    T(test_heartbeat_unknown_node),
	    T(test_heartbeat_status_is_held),
	    T(test_get_node),
	    T(test_delete),
	    T(test_set_serving_is_held_and_announced),
	    T(test_failed_commit_undoes_status_and_serving),
	    T(test_report_gets_no_reply),
	    T(test_unknown_request),
	    T(test_gossip_off),
	    T(test_list_and_health),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
