/*
 * Unit tests: the coordinator's decisions from gossip
 * (src/membership/policy.c) and the event stream they feed
 * (src/membership/events.c). Gossip input is built by hand: a struct
 * swim_event carrying a packed NodeMeta, handed to membership.c's own
 * gossip hook (on_gossip_event, reached by including membership.c), or to
 * policy_claim()/policy_apply() directly. The process state comes from
 * tests/lib/mproc.h with gossip off (m->gossip NULL): what needs the
 * gossip table (heard_ago, policy_refresh, admission passes) is checked
 * only for how it behaves without one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../lib/mproc.h"

/* The process glue, for its static gossip hook. Defining every
 * membership_* symbol here keeps the archive's membership.o out of the
 * link. */
#include "../../src/membership/membership.c"

#define PEER_A "11111111-1111-4111-8111-111111111111"
#define PEER_B "22222222-2222-4222-8222-222222222222"
#define URL_A "http://10.0.0.5:8080"
/* 10.0.0.5:7946, as membership_fmt_addr() writes it. */
#define ADDR_IP ((10u << 24) | 5u)
#define ADDR_PORT 7946

static int setup(void **state)
{
	*state = mproc_new("policy");
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	struct mproc *f = *state;
	if (f->m && f->m->admit_on)
		admit_fini(&f->m->admit);
	mproc_free(f);
	return 0;
}

/* What a member's record says about it; NULL strings are left out. */
struct rec {
	const char *role, *url;
	bool serving;
	bool has_version;
	uint64_t version;
	double load;
};

/* A gossip event about member id, its record packed as swim.c hands it
 * over. */
static void gossip_event(struct swim_event *ev, const char *id, unsigned what,
			 enum swim_status st, const struct rec *rec)
{
	memset(ev, 0, sizeof(*ev));
	ev->what = what;
	assert_int_equal(swim_id_parse(id, &ev->id), 0);
	ev->addr.ip = ADDR_IP;
	ev->addr.port = ADDR_PORT;
	ev->incarnation = 1;
	ev->status = st;
	ev->prev_status = SWIM_NONE;
	ev->rtt_ms = -1;
	if (!rec)
		return;
	Ps__NodeMeta meta = PS__NODE_META__INIT;
	meta.role = (char *)rec->role;
	meta.url = (char *)rec->url;
	meta.has_serving = true;
	meta.serving = rec->serving;
	meta.has_load = true;
	meta.load = rec->load;
	meta.has_registry_version = rec->has_version;
	meta.registry_version = rec->version;
	assert_int_equal(
	    node_meta_pack(&meta, ev->meta, sizeof(ev->meta), &ev->meta_len),
	    0);
}

static Ps__NodeMeta *unpacked(const struct swim_event *ev)
{
	Ps__NodeMeta *meta =
	    ps__node_meta__unpack(NULL, ev->meta_len, ev->meta);
	assert_non_null(meta);
	return meta;
}

/* policy_apply() with ev's record, as admit_tick() or the hook call it. */
static void apply(struct membership *m, const char *id,
		  const struct swim_event *ev, bool admitted)
{
	Ps__NodeMeta *meta = ev->meta_len ? unpacked(ev) : NULL;
	policy_apply(m, id, ev, meta, admitted);
	if (meta)
		ps__node_meta__free_unpacked(meta, NULL);
}

static bool claim(struct membership *m, const char *id,
		  const struct swim_event *ev)
{
	Ps__NodeMeta *meta = unpacked(ev);
	bool ok = policy_claim(m, id, ev, meta);
	ps__node_meta__free_unpacked(meta, NULL);
	return ok;
}

static const struct rec worker_rec = {
    .role = "worker", .url = URL_A, .serving = true};

/* Member PEER_A registered as admission does it. */
static struct reg_node *admitted(struct membership *m)
{
	struct swim_event ev;
	gossip_event(&ev, PEER_A, SWIM_EV_NEW, SWIM_ALIVE, &worker_rec);
	apply(m, PEER_A, &ev, true);
	struct reg_node *n = registry_find(&m->reg, PEER_A);
	assert_non_null(n);
	return n;
}

/* The frames that reached subscriber p; asserts there are `want` and
 * returns them in r. */
static void events(struct mproc *f, struct mproc_peer *p, size_t want,
		   Ps__Reply *r[MPROC_REPLIES_MAX])
{
	size_t n = mproc_drain(f, p, r);
	if (n != want)
		mproc_free_replies(r, n);
	assert_int_equal(n, want);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(r[i]->id, MPROC_SUBSCRIBE_ID);
		assert_non_null(r[i]->event);
	}
}

static void expect_node_event(struct mproc *f, struct mproc_peer *p,
			      const char *type, const char *id,
			      Ps__NodeStatus status)
{
	Ps__Reply *r[MPROC_REPLIES_MAX];
	events(f, p, 1, r);
	assert_string_equal(r[0]->event->kind, "node");
	assert_string_equal(r[0]->event->type, type);
	assert_string_equal(r[0]->event->id, id);
	assert_non_null(r[0]->event->node);
	assert_int_equal(r[0]->event->node->status, status);
	mproc_free_replies(r, 1);
}

/* ---- policy_apply: admission ------------------------------------------- */

static void test_apply_unadmitted_member_stays_unregistered(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *sub = mproc_client(f, m);
	mproc_subscribe(f, m, sub);
	uint64_t v = m->reg.version;

	struct swim_event ev;
	gossip_event(&ev, PEER_A, SWIM_EV_NEW, SWIM_ALIVE, &worker_rec);
	apply(m, PEER_A, &ev, false);
	assert_null(registry_find(&m->reg, PEER_A));
	assert_int_equal(m->reg.version, v);
	assert_int_equal(m->n_gossip_registered, 0);
	mproc_expect_nothing(f, sub);
}

static void test_apply_unadmitted_member_waits_in_admit(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	assert_int_equal(admit_init(&m->admit, 1.0, 10.0, time_mono()), 0);
	m->admit_on = true;

	struct swim_event ev;
	/* Dead, or a record without a url: nothing to admit. */
	gossip_event(&ev, PEER_B, SWIM_EV_NEW, SWIM_DEAD, &worker_rec);
	apply(m, PEER_B, &ev, false);
	const struct rec no_url = {.role = "worker", .serving = true};
	gossip_event(&ev, PEER_B, SWIM_EV_NEW, SWIM_ALIVE, &no_url);
	apply(m, PEER_B, &ev, false);
	assert_int_equal(m->admit.n, 0);

	gossip_event(&ev, PEER_A, SWIM_EV_NEW, SWIM_ALIVE, &worker_rec);
	apply(m, PEER_A, &ev, false);
	gossip_event(&ev, PEER_A, SWIM_EV_STATUS, SWIM_SUSPECT, &worker_rec);
	apply(m, PEER_A, &ev, false);
	assert_int_equal(m->admit.n, 1);
	struct swim_id want;
	assert_int_equal(swim_id_parse(PEER_A, &want), 0);
	assert_memory_equal(&m->admit.e[0].id, &want, sizeof(want));
	assert_null(registry_find(&m->reg, PEER_A));

	/* Without a gossip table an admission pass does nothing. */
	m->admit_timer.data = m;
	policy_on_admit_timer(m->loop, &m->admit_timer, 0);
	assert_int_equal(m->admit.n, 1);
	assert_null(registry_find(&m->reg, PEER_A));
}

static void test_apply_admitted_member_is_registered(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *sub = mproc_client(f, m);
	mproc_subscribe(f, m, sub);
	uint64_t v = m->reg.version;

	struct reg_node *n = admitted(m);
	assert_string_equal(n->pb.url, URL_A);
	assert_string_equal(n->pb.role, "worker");
	assert_true(n->pb.has_gossip && n->pb.gossip);
	assert_string_equal(n->pb.gossip_addr, "10.0.0.5:7946");
	assert_int_equal(n->pb.status, PS__NODE_STATUS__NODE_ACTIVE);
	assert_non_null(n->pb.metadata_json);
	assert_non_null(strstr(n->pb.metadata_json, "autoRegistered"));
	assert_true(m->reg.version > v);
	assert_int_equal(m->n_gossip_registered, 1);
	expect_node_event(f, sub, "registered", PEER_A,
			  PS__NODE_STATUS__NODE_ACTIVE);

	/* Once registered, later records need no admission. */
	struct swim_event ev;
	const struct rec moved = {
	    .role = "worker", .url = "http://10.0.0.6:8080", .serving = true};
	gossip_event(&ev, PEER_A, SWIM_EV_META, SWIM_ALIVE, &moved);
	apply(m, PEER_A, &ev, false);
	assert_string_equal(registry_find(&m->reg, PEER_A)->pb.url,
			    "http://10.0.0.6:8080");
	assert_int_equal(m->n_gossip_registered, 1);
	expect_node_event(f, sub, "updated", PEER_A,
			  PS__NODE_STATUS__NODE_ACTIVE);
}

static void test_apply_heartbeat_data_takes_no_version(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	admitted(m);
	struct mproc_peer *sub = mproc_client(f, m);
	mproc_subscribe(f, m, sub);
	uint64_t v = m->reg.version;
	m->dirty_lazy = false;

	struct swim_event ev;
	struct rec busy = worker_rec;
	busy.load = 3.5;
	gossip_event(&ev, PEER_A, SWIM_EV_META, SWIM_ALIVE, &busy);
	apply(m, PEER_A, &ev, false);
	struct reg_node *n = registry_find(&m->reg, PEER_A);
	assert_non_null(strstr(n->pb.metadata_json, "3.5"));
	assert_int_equal(m->reg.version, v);
	assert_true(m->dirty_lazy);
	mproc_expect_nothing(f, sub);
}

/* ---- policy_apply: statuses (liveness.h rule G) ------------------------ */

static void test_apply_gossip_status_moves_registry_status(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	admitted(m);
	struct mproc_peer *sub = mproc_client(f, m);
	mproc_subscribe(f, m, sub);
	struct swim_event ev;

	uint64_t v = m->reg.version;
	gossip_event(&ev, PEER_A, SWIM_EV_STATUS, SWIM_SUSPECT, &worker_rec);
	apply(m, PEER_A, &ev, false);
	assert_int_equal(m->reg.version, v + 1);
	expect_node_event(f, sub, "status", PEER_A,
			  PS__NODE_STATUS__NODE_SUSPECT);

	struct rec off = worker_rec;
	off.serving = false;
	gossip_event(&ev, PEER_A, SWIM_EV_STATUS | SWIM_EV_META, SWIM_ALIVE,
		     &off);
	apply(m, PEER_A, &ev, false);
	expect_node_event(f, sub, "status", PEER_A,
			  PS__NODE_STATUS__NODE_DISABLED);

	/* Dead, never heard from directly (no gossip table here): the
	 * verdict is not doubted. */
	gossip_event(&ev, PEER_A, SWIM_EV_STATUS, SWIM_DEAD, &off);
	apply(m, PEER_A, &ev, false);
	expect_node_event(f, sub, "status", PEER_A,
			  PS__NODE_STATUS__NODE_INACTIVE);

	/* The same verdict again is no change and no event. */
	v = m->reg.version;
	apply(m, PEER_A, &ev, false);
	assert_int_equal(m->reg.version, v);
	mproc_expect_nothing(f, sub);

	gossip_event(&ev, PEER_A, SWIM_EV_STATUS, SWIM_LEFT, &off);
	apply(m, PEER_A, &ev, false);
	expect_node_event(f, sub, "status", PEER_A, PS__NODE_STATUS__NODE_LEFT);
}

static void test_apply_alive_record_refreshes_last_heard(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct reg_node *n = admitted(m);
	n->last_heard = time_mono() - 1000;
	struct swim_event ev;
	gossip_event(&ev, PEER_A, SWIM_EV_STATUS, SWIM_DEAD, &worker_rec);
	apply(m, PEER_A, &ev, false);
	assert_true(time_mono() - n->last_heard > 999);
	gossip_event(&ev, PEER_A, SWIM_EV_STATUS, SWIM_ALIVE, &worker_rec);
	apply(m, PEER_A, &ev, false);
	assert_true(time_mono() - n->last_heard < 10);
}

/* ---- policy_claim and the gossip hook ---------------------------------- */

static const struct rec coord_rec = {
    .role = "coordinator", .url = URL_A, .serving = true};

static void test_claim_on_coordinator_by_another_is_refused(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	assert_int_equal(admit_init(&m->admit, 0, 10.0, time_mono()), 0);
	m->admit_on = true;
	struct mproc_peer *sub = mproc_client(f, m);
	mproc_subscribe(f, m, sub);
	uint64_t v = m->reg.version;

	struct swim_event ev;
	gossip_event(&ev, PEER_A, SWIM_EV_NEW, SWIM_ALIVE, &coord_rec);
	assert_false(claim(m, PEER_A, &ev));
	assert_int_equal(m->n_reject_role, 1);

	/* Through the hook: refused, counted, neither registered nor
	 * offered for admission. */
	on_gossip_event(m, &ev);
	assert_int_equal(m->n_reject_role, 2);
	assert_null(registry_find(&m->reg, PEER_A));
	assert_int_equal(m->admit.n, 0);
	assert_int_equal(m->reg.version, v);
	mproc_expect_nothing(f, sub);

	/* A worker's record goes on to admission. */
	gossip_event(&ev, PEER_A, SWIM_EV_NEW, SWIM_ALIVE, &worker_rec);
	on_gossip_event(m, &ev);
	assert_int_equal(m->n_reject_role, 2);
	assert_int_equal(m->admit.n, 1);

	/* Our own id holding the role is believed. */
	gossip_event(&ev, m->self_id, SWIM_EV_META, SWIM_ALIVE, &coord_rec);
	assert_true(claim(m, m->self_id, &ev));
	assert_int_equal(m->n_reject_role, 2);
}

static void test_claim_on_worker_needs_the_pinned_coordinator(void **state)
{
	struct mproc *f = *state;
	f->cfg.role = ROLE_WORKER;
	struct membership *m = f->m = mproc_open(f);
	struct swim_event ev;
	struct rec rec = coord_rec;
	rec.has_version = true;
	rec.version = 7;

	/* Nobody pinned yet: no claim counts, none is held against anyone. */
	gossip_event(&ev, PEER_A, SWIM_EV_NEW, SWIM_ALIVE, &rec);
	assert_false(claim(m, PEER_A, &ev));
	assert_int_equal(m->n_reject_role, 0);
	assert_int_equal(m->coord_version, 0);

	snprintf(m->coord_id, sizeof(m->coord_id), "%s", PEER_B);
	assert_false(claim(m, PEER_A, &ev));
	assert_int_equal(m->n_reject_role, 1);
	assert_int_equal(m->coord_version, 0);

	gossip_event(&ev, PEER_B, SWIM_EV_META, SWIM_ALIVE, &rec);
	assert_true(claim(m, PEER_B, &ev));
	assert_int_equal(m->n_reject_role, 1);
	assert_int_equal(m->coord_version, 7);

	/* A record without a version is believed and changes nothing. */
	gossip_event(&ev, PEER_B, SWIM_EV_META, SWIM_ALIVE, &coord_rec);
	assert_true(claim(m, PEER_B, &ev));
	assert_int_equal(m->coord_version, 7);
}

/* The version a claim by the pinned coordinator announces, replica_version
 * 1000 fetched `ago` seconds back (< 0: never fetched): believed? */
static bool version_believed(struct membership *m, double ago, uint64_t v)
{
	m->replica_version = 1000;
	m->replica_at = ago < 0 ? -1 : time_mono() - ago;
	struct swim_event ev;
	struct rec rec = coord_rec;
	rec.has_version = true;
	rec.version = v;
	gossip_event(&ev, PEER_B, SWIM_EV_META, SWIM_ALIVE, &rec);
	return claim(m, PEER_B, &ev);
}

static void test_claim_bounds_the_registry_version(void **state)
{
	struct mproc *f = *state;
	f->cfg.role = ROLE_WORKER;
	struct membership *m = f->m = mproc_open(f);
	snprintf(m->coord_id, sizeof(m->coord_id), "%s", PEER_B);
	const uint64_t rate = (uint64_t)REGISTRY_VERSION_RATE_MAX;

	/* Just fetched: one second's worth of writes at most. */
	assert_true(version_believed(m, 0, 1000 + rate / 2));
	assert_int_equal(m->coord_version, 1000 + rate / 2);
	assert_false(version_believed(m, 0, 1000 + 2 * rate));
	assert_int_equal(m->n_reject_version, 1);
	assert_int_equal(m->coord_version, 1000 + rate / 2);
	assert_int_equal(m->n_reject_role, 0);

	/* Never fetched: measured from version 1000 as if just now. */
	assert_false(version_believed(m, -1, 1000 + 2 * rate));
	assert_int_equal(m->n_reject_version, 2);

	/* Ten seconds on, eleven seconds' worth is plausible. */
	assert_true(version_believed(m, 10, 1000 + 10 * rate));
	assert_int_equal(m->coord_version, 1000 + 10 * rate);
	assert_false(version_believed(m, 10, 1000 + 12 * rate));
	assert_int_equal(m->n_reject_version, 3);

	/* Older than our replica: no growth to bound. */
	assert_true(version_believed(m, 0, 3));
	assert_int_equal(m->coord_version, 3);
	assert_int_equal(m->n_reject_version, 3);
}

/* ---- policy_expire: HTTP-only nodes (liveness.h rule H) ---------------- */

static void test_expire_silent_http_nodes(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	mproc_self(m);
	struct mproc_peer *w = mproc_client(f, m), *sub = mproc_client(f, m);
	double timeout = f->cfg.node_timeout;
	struct reg_node *quiet = mproc_registered(f, m, w, "quiet");
	struct reg_node *fresh = mproc_registered(f, m, w, "fresh");
	struct reg_node *gone = mproc_registered(f, m, w, "gone");
	struct reg_node *self = registry_find(&m->reg, m->self_id);
	registry_set_status(&m->reg, gone, PS__NODE_STATUS__NODE_LEFT);
	mproc_subscribe(f, m, sub);
	events_registry_if_changed(m);
	Ps__Reply *r[MPROC_REPLIES_MAX];
	events(f, sub, 1, r);
	mproc_free_replies(r, 1);

	double now = time_mono();
	quiet->last_heard = now - timeout - 1;
	fresh->last_heard = now - timeout / 2;
	gone->last_heard = now - timeout - 1;
	self->last_heard = now - timeout - 1;
	uint64_t v = m->reg.version;
	m->dirty_lazy = false;

	policy_expire(m);
	assert_int_equal(quiet->pb.status, PS__NODE_STATUS__NODE_INACTIVE);
	assert_int_equal(fresh->pb.status, PS__NODE_STATUS__NODE_ACTIVE);
	assert_int_equal(gone->pb.status, PS__NODE_STATUS__NODE_LEFT);
	assert_int_equal(self->pb.status, PS__NODE_STATUS__NODE_ACTIVE);
	assert_int_equal(m->n_expired, 1);
	assert_int_equal(m->reg.version, v + 1);
	assert_true(m->dirty_lazy);

	/* Subscribers learn of it with the loop pass's registry event. */
	events_registry_if_changed(m);
	events(f, sub, 1, r);
	assert_string_equal(r[0]->event->kind, "registry");
	assert_true(r[0]->event->has_registry_version);
	assert_int_equal(r[0]->event->registry_version, v + 1);
	mproc_free_replies(r, 1);

	/* Inactive stays inactive; nothing more to count. */
	policy_expire(m);
	assert_int_equal(m->n_expired, 1);
	assert_int_equal(m->reg.version, v + 1);
	events_registry_if_changed(m);
	mproc_expect_nothing(f, sub);

	/* A disabled or suspect node expires too. */
	registry_set_status(&m->reg, fresh, PS__NODE_STATUS__NODE_DISABLED);
	fresh->last_heard = now - timeout - 1;
	policy_expire(m);
	assert_int_equal(fresh->pb.status, PS__NODE_STATUS__NODE_INACTIVE);
	assert_int_equal(m->n_expired, 2);
}

/* ---- without a gossip table -------------------------------------------- */

static void test_gossip_off(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct reg_node *n = admitted(m);
	n->last_heard = time_mono() - 1000;
	uint64_t v = m->reg.version;
	policy_refresh(m);
	assert_int_equal(m->reg.version, v);
	assert_false(n->pb.has_response_time_ms);
	assert_true(time_mono() - n->last_heard > 999);
	assert_true(policy_coordinator_alive(m));
	f->cfg.role = ROLE_WORKER;
	snprintf(m->coord_id, sizeof(m->coord_id), "%s", PEER_B);
	assert_false(policy_coordinator_alive(m));
}

/* ---- events.c ---------------------------------------------------------- */

static void test_events_registry_once_per_version(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *sub = mproc_client(f, m),
			  *other = mproc_client(f, m);
	mproc_subscribe(f, m, sub);
	events_registry_if_changed(m);
	Ps__Reply *r[MPROC_REPLIES_MAX];
	size_t k = mproc_drain(f, sub, r);
	mproc_free_replies(r, k);

	admitted(m);
	events(f, sub, 1, r); /* its "registered" */
	mproc_free_replies(r, 1);
	events_registry_if_changed(m);
	events_registry_if_changed(m);
	events(f, sub, 1, r);
	assert_string_equal(r[0]->event->kind, "registry");
	assert_int_equal(r[0]->event->registry_version, m->reg.version);
	mproc_free_replies(r, 1);
	assert_int_equal(m->version_shown, m->reg.version);
	mproc_expect_nothing(f, other);

	m->serving = false;
	events_service(m);
	events(f, sub, 1, r);
	assert_string_equal(r[0]->event->kind, "service");
	assert_non_null(r[0]->event->service);
	assert_false(r[0]->event->service->serving);
	mproc_free_replies(r, 1);
	mproc_expect_nothing(f, other);
}

static void test_events_worker_shows_replica_version(void **state)
{
	struct mproc *f = *state;
	f->cfg.role = ROLE_WORKER;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *sub = mproc_client(f, m);
	mproc_subscribe(f, m, sub);
	m->event_version = m->replica_version = 5;
	events_registry_if_changed(m);
	mproc_expect_nothing(f, sub);
	m->replica_version = 9;
	events_registry_if_changed(m);
	Ps__Reply *r[MPROC_REPLIES_MAX];
	events(f, sub, 1, r);
	assert_string_equal(r[0]->event->kind, "registry");
	assert_int_equal(r[0]->event->registry_version, 9);
	mproc_free_replies(r, 1);
	assert_int_equal(m->version_shown, 9);
}

/* A subscriber as membership.c keeps one (its close hook frees the
 * client), whose reader is stuck: its output buffer is full. The test's
 * end of the socket is returned in *fd. */
static struct client *stuck_subscriber(struct membership *m, int *fd)
{
	struct client *c = mproc_client_new(m, on_client_close, fd);
	c->subscriber = true;
	c->subscribe_id = MPROC_SUBSCRIBE_ID;
	m->nsubscribers++;
	static uint8_t junk[1024 * 1024];
	size_t queued = 0;
	while (ipc_conn_send_frames(c->conn, junk, sizeof(junk)) == 0)
		queued += sizeof(junk);
	assert_true(queued + sizeof(junk) > IPC_WBUF_MAX);
	return c;
}

/* An event a stuck subscriber cannot take closes it, and the others
 * still get it: the close hook frees the client while emit() walks the
 * list (a use after free under AddressSanitizer before the fix). */
static void test_events_stuck_subscriber_is_closed(void **state)
{
	struct mproc *f = *state;
	struct membership *m = f->m = mproc_open(f);
	struct mproc_peer *sub = mproc_client(f, m);
	mproc_subscribe(f, m, sub);
	int fd;
	stuck_subscriber(m, &fd);
	assert_int_equal(m->nsubscribers, 2);

	admitted(m); /* its "registered" event */
	assert_int_equal(m->nsubscribers, 1);
	assert_int_equal(m->nclients, 1);
	assert_ptr_equal(m->clients, sub->c);
	expect_node_event(f, sub, "registered", PEER_A,
			  PS__NODE_STATUS__NODE_ACTIVE);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_apply_unadmitted_member_stays_unregistered, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_apply_unadmitted_member_waits_in_admit, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_apply_admitted_member_is_registered, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_apply_heartbeat_data_takes_no_version, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_apply_gossip_status_moves_registry_status, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_apply_alive_record_refreshes_last_heard, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_claim_on_coordinator_by_another_is_refused, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_claim_on_worker_needs_the_pinned_coordinator, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_claim_bounds_the_registry_version, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expire_silent_http_nodes,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gossip_off, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_events_registry_once_per_version, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_events_worker_shows_replica_version, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_events_stuck_subscriber_is_closed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
