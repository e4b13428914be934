/*
 * Unit tests: a worker's registry replica (src/membership/replica.c).
 * The coordinator's answer is built by hand, packed as the HTTP body
 * fetch.c delivers, and handed to the fetch callback (on_replica_fetched,
 * reached by including replica.c): which registry the worker then holds,
 * which versions it records, whom it takes for the coordinator. The
 * process state comes from tests/lib/mproc.h; no fetch is started.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../lib/mproc.h"

/* The part under test, for its statics. Defining every replica_* symbol
 * here keeps the archive's replica.o out of the link. */
#include "../../src/membership/replica.c"

#define COORD "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
/* Replies one test builds at most. */
#define NODES_MAX 8

/* A worker's state, and the coordinator's side: the nodes it serves. */
struct fix {
	struct mproc *f;
	struct registry theirs;
};

static int setup(void **state)
{
	struct fix *x = calloc(1, sizeof(*x));
	if (!x)
		return -1;
	x->f = mproc_new("replica");
	if (!x->f) {
		free(x);
		return -1;
	}
	x->f->cfg.role = ROLE_WORKER;
	snprintf(x->f->cfg.cluster_ip, sizeof(x->f->cfg.cluster_ip),
		 "127.0.0.1:1");
	registry_init(&x->theirs, x->f->cfg.metadata_max);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fix *x = *state;
	if (x->f->m)
		ev_timer_stop(x->f->loop, &x->f->m->replica_timer);
	registry_fini(&x->theirs);
	mproc_free(x->f);
	free(x);
	return 0;
}

/* The worker, registered itself, its replica timer set up as
 * membership_main() does (not started). */
static struct membership *worker(struct fix *x)
{
	struct membership *m = x->f->m = mproc_open(x->f);
	mproc_self(m);
	ev_timer_init(&m->replica_timer, replica_on_timer,
		      REPLICA_SYNC_INTERVAL, REPLICA_SYNC_INTERVAL);
	m->replica_timer.data = m;
	return m;
}

/* Node id with that role and metadata, in reg. */
static Ps__Node *node(struct registry *reg, const char *id, const char *role,
		      const char *meta)
{
	Ps__RegisterReq req = PS__REGISTER_REQ__INIT;
	req.url = "http://10.0.0.1:8080";
	req.role = (char *)role;
	req.metadata_json = (char *)meta;
	struct reg_node *n;
	bool created;
	char err[ERR_MSG_MAX];
	assert_int_equal(registry_register(reg, &req, id, "default",
					   time_wall_ms(), time_mono(), &n,
					   &created, err, sizeof(err)),
			 0);
	return &n->pb;
}

/* The coordinator's answer: every node of theirs, at version, served by
 * `self` (NULL: no self); handed to the fetch callback. */
static void fetched(struct membership *m, struct registry *theirs,
		    uint64_t version, Ps__Node *self)
{
	Ps__Node *nodes[NODES_MAX];
	assert_true(theirs->n <= NODES_MAX);
	for (size_t i = 0; i < theirs->n; i++)
		nodes[i] = &theirs->nodes[i]->pb;
	Ps__Reply r = PS__REPLY__INIT;
	r.n_nodes = theirs->n;
	r.nodes = nodes;
	r.has_registry_version = true;
	r.registry_version = version;
	r.self = self;
	size_t len = ps__reply__get_packed_size(&r);
	uint8_t *body = malloc(len + 1);
	assert_non_null(body);
	ps__reply__pack(&r, body);
	on_replica_fetched(m, 200, (const char *)body, len);
	free(body);
}

static void test_install_replaces_registry_and_pins_coordinator(void **state)
{
	struct fix *x = *state;
	struct membership *m = worker(x);
	node(&m->reg, "stale", "worker", NULL);
	Ps__Node *coord = node(&x->theirs, COORD, "coordinator", NULL);
	node(&x->theirs, "node-a", "worker", "{\"zone\":\"a\"}");
	/* Gossip announced 50; the answer says 42 at this moment. */
	m->coord_version = 50;
	m->dirty_lazy = false;
	double before = time_mono();

	fetched(m, &x->theirs, 42, coord);
	assert_null(registry_find(&m->reg, "stale"));
	assert_non_null(registry_find(&m->reg, COORD));
	struct reg_node *a = registry_find(&m->reg, "node-a");
	assert_non_null(a);
	assert_string_equal(a->pb.metadata_json, "{\"zone\":\"a\"}");
	struct reg_node *self = registry_find(&m->reg, m->self_id);
	assert_non_null(self);
	assert_int_equal(self->pb.status, PS__NODE_STATUS__NODE_ACTIVE);
	assert_int_equal(m->reg.n, 3);
	assert_int_equal(m->replica_version, 42);
	assert_int_equal(m->coord_version, 42);
	assert_true(m->replica_at >= before);
	assert_string_equal(m->coord_id, COORD);
	assert_int_equal(m->n_replica_fetches, 1);
	assert_int_equal(m->n_replica_failures, 0);
	assert_true(m->dirty_lazy);
	/* Up to date: no retry is scheduled. */
	assert_false(ev_is_active(&m->replica_timer));
}

static void test_install_takes_their_copy_of_us_and_refreshes_it(void **state)
{
	struct fix *x = *state;
	struct membership *m = worker(x);
	Ps__Node *coord = node(&x->theirs, COORD, "coordinator", NULL);
	Ps__Node *us = node(&x->theirs, m->self_id, "worker", "{\"k\":1}");
	us->status = PS__NODE_STATUS__NODE_INACTIVE;

	fetched(m, &x->theirs, 7, coord);
	struct reg_node *self = registry_find(&m->reg, m->self_id);
	assert_non_null(self);
	assert_string_equal(self->pb.metadata_json, "{\"k\":1}");
	/* What we know of ourselves beats their view of our liveness. */
	assert_int_equal(self->pb.status, PS__NODE_STATUS__NODE_ACTIVE);
	assert_int_equal(m->reg.n, 2);
}

static void test_install_pins_only_a_coordinator(void **state)
{
	struct fix *x = *state;
	struct membership *m = worker(x);
	Ps__Node *other = node(&x->theirs, "node-b", "worker", NULL);
	fetched(m, &x->theirs, 3, other);
	assert_string_equal(m->coord_id, "");
	assert_int_equal(m->replica_version, 3);

	fetched(m, &x->theirs, 4, NULL);
	assert_string_equal(m->coord_id, "");
	assert_int_equal(m->replica_version, 4);

	Ps__Node *coord = node(&x->theirs, COORD, "coordinator", NULL);
	fetched(m, &x->theirs, 5, coord);
	assert_string_equal(m->coord_id, COORD);
	/* Once pinned, a self that is not the coordinator moves nothing. */
	fetched(m, &x->theirs, 6, other);
	assert_string_equal(m->coord_id, COORD);
}

static void test_install_skips_invalid_entries(void **state)
{
	struct fix *x = *state;
	struct membership *m = worker(x);
	Ps__Node *coord = node(&x->theirs, COORD, "coordinator", NULL);
	node(&x->theirs, "good", "worker", "{\"ok\":true}");
	/* Metadata the registry would refuse, put past it (and taken back
	 * before theirs is freed). */
	Ps__Node *bad = node(&x->theirs, "not-object", "worker", NULL);
	Ps__Node *worse = node(&x->theirs, "not-json", "worker", NULL);
	char *bad_md = bad->metadata_json, *worse_md = worse->metadata_json;
	bad->metadata_json = "[1,2]";
	worse->metadata_json = "{oops";

	fetched(m, &x->theirs, 9, coord);
	bad->metadata_json = bad_md;
	worse->metadata_json = worse_md;
	assert_non_null(registry_find(&m->reg, "good"));
	assert_null(registry_find(&m->reg, "not-object"));
	assert_null(registry_find(&m->reg, "not-json"));
	assert_non_null(registry_find(&m->reg, m->self_id));
	assert_int_equal(m->replica_version, 9);
}

static void test_failed_fetch_keeps_the_replica(void **state)
{
	struct fix *x = *state;
	struct membership *m = worker(x);
	Ps__Node *coord = node(&x->theirs, COORD, "coordinator", NULL);
	node(&x->theirs, "node-a", "worker", NULL);
	fetched(m, &x->theirs, 10, coord);
	double at = m->replica_at;
	uint64_t v = m->reg.version;

	/* Gossip since announced a newer version. */
	m->coord_version = 12;
	on_replica_fetched(m, 503, "", 0);
	assert_int_equal(m->n_replica_failures, 1);
	on_replica_fetched(m, 200, "\xff\xff\xff", 3);
	assert_int_equal(m->n_replica_failures, 2);
	Ps__Error e = PS__ERROR__INIT;
	e.code = "INTERNAL";
	e.message = "no";
	Ps__Reply r = PS__REPLY__INIT;
	r.error = &e;
	uint8_t body[256];
	assert_true(ps__reply__get_packed_size(&r) <= sizeof(body));
	size_t len = ps__reply__pack(&r, body);
	on_replica_fetched(m, 200, (const char *)body, len);
	assert_int_equal(m->n_replica_failures, 3);

	assert_int_equal(m->n_replica_fetches, 1);
	assert_int_equal(m->replica_version, 10);
	assert_int_equal(m->coord_version, 12);
	assert_true(m->replica_at == at);
	assert_int_equal(m->reg.version, v);
	assert_int_equal(m->reg.n, 3);
	assert_non_null(registry_find(&m->reg, "node-a"));
	/* Still behind: the replica timer retries. */
	assert_true(ev_is_active(&m->replica_timer));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_install_replaces_registry_and_pins_coordinator, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_install_takes_their_copy_of_us_and_refreshes_it, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_install_pins_only_a_coordinator, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_install_skips_invalid_entries,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_fetch_keeps_the_replica,
					    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
