/*
 * test_swim — the gossip layer: wire format (swim_proto) and protocol
 * (swim), the latter in the deterministic simulator (tests/lib/sim.c).
 *
 * Everything runs the product's gossip configuration,
 * config_gossip_defaults() (src/common/config.c), as the simulator's
 * defaults do; swim_config_defaults() is memberlist's, for comparison only.
 *
 * Every simulated test prints its seed when an assertion fails; set
 * SWIM_SEED=<n> to rerun with that seed, which replays the run exactly, and
 * SWIM_TEST=<glob> to run only the tests whose names match (SWIM_SKIP=<glob>
 * to skip some).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "proxystone/config.h"
#include "proxystone/swim.h"
#include "proxystone/swim_proto.h"
#include "../lib/sim.h"

/* Seed of the running test, printed when an assertion fails. */
static uint64_t cur_seed;

#define SIM_ASSERT(cond)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			fail_msg("%s (seed %" PRIu64                           \
				 ", rerun with SWIM_SEED=%" PRIu64 ")",        \
				 #cond, cur_seed, cur_seed);                   \
	} while (0)

static uint64_t test_seed(uint64_t dflt)
{
	const char *env = getenv("SWIM_SEED");

	cur_seed = env && *env ? strtoull(env, NULL, 0) : dflt;
	return cur_seed;
}

static double cpu_seconds(void)
{
	return (double)clock() / CLOCKS_PER_SEC;
}

static struct sim *make_sim(uint64_t seed, size_t n, double loss)
{
	struct sim_config cfg;
	struct sim *sim = NULL;

	sim_config_defaults(&cfg, test_seed(seed), n);
	cfg.loss = loss;
	assert_int_equal(sim_new(&cfg, &sim), 0);
	return sim;
}

static double cfg_sync_interval(void)
{
	struct swim_config c;

	config_gossip_defaults(&c);
	return c.sync_interval;
}

static bool cond_converged(struct sim *sim, void *ctx)
{
	(void)ctx;
	return sim_converged(sim);
}

struct see {
	size_t subject;
	enum swim_status st;
};

static bool cond_all_see(struct sim *sim, void *ctx)
{
	const struct see *w = ctx;

	return sim_all_see(sim, w->subject, w->st);
}

/* Forms a cluster of n and waits until everyone sees everyone alive. */
static void form(struct sim *sim, size_t n, double window, double limit)
{
	SIM_ASSERT(sim_start_cluster(sim, n, window) == 0);
	SIM_ASSERT(sim_run_until_cond(sim, sim_now(sim) + limit, 0.5,
				      cond_converged, NULL));
}

/* ------------------------------------------------------------------ */
/* Wire format. */

static const char *const CLUSTER = "test-cluster";

static void fill_id(struct swim_id *id, uint8_t v)
{
	for (int i = 0; i < SWIM_ID_LEN; i++)
		id->b[i] = (uint8_t)(v + i * 7);
}

static size_t build_packet(uint8_t *buf, size_t cap, size_t mtu,
			   struct swim_header *h, struct swim_record *r,
			   size_t *n_rec)
{
	static const uint8_t meta[] = "{\"status\":\"active\",\"load\":0.25}";
	struct swim_encoder *e = malloc(sizeof(*e));
	int len;

	memset(h, 0, sizeof(*h));
	h->type = SWIM_MSG_PING_REQ;
	h->seq = 0x123456789aULL;
	fill_id(&h->sender, 1);
	h->sender_addr.ip = 0x0a000001;
	h->sender_addr.port = 7946;
	h->sender_incarnation = 42;
	h->has_target = true;
	fill_id(&h->target, 2);
	h->target_addr.ip = 0x0a000002;
	h->target_addr.port = 7947;
	h->want_nack = true;
	assert_int_equal(swim_encoder_begin(e, CLUSTER, h, mtu), 0);

	memset(r, 0, 4 * sizeof(*r));
	fill_id(&r[0].id, 3);
	r[0].addr.ip = 0xc0a80001;
	r[0].addr.port = 1;
	r[0].incarnation = 7;
	r[0].status = SWIM_ALIVE;
	r[0].meta = meta;
	r[0].meta_len = sizeof(meta) - 1;
	fill_id(&r[1].id, 4);
	r[1].status = SWIM_SUSPECT;
	r[1].incarnation = UINT64_MAX;
	r[1].has_from = true;
	fill_id(&r[1].from, 5);
	fill_id(&r[2].id, 6);
	r[2].status = SWIM_DEAD;
	r[2].addr.port = 65535;
	fill_id(&r[3].id, 7);
	r[3].status = SWIM_LEFT;
	r[3].incarnation = 1;
	for (int i = 0; i < 4; i++)
		assert_int_equal(swim_encoder_add(e, &r[i]), 0);
	*n_rec = 4;
	assert_true(swim_encoder_size(e) <= mtu);
	len = swim_encoder_finish(e, buf, cap);
	assert_true(len > 0);
	free(e);
	return (size_t)len;
}

static void test_proto_roundtrip(void **state)
{
	uint8_t buf[SWIM_MTU_MIN];
	struct swim_header h;
	struct swim_record r[4];
	size_t n, len = build_packet(buf, sizeof(buf), 1400, &h, r, &n);
	struct swim_decoder *d = malloc(sizeof(*d));
	struct swim_packet *p = malloc(sizeof(*p));

	(void)state;
	swim_decoder_init(d);
	assert_int_equal(swim_decode(d, CLUSTER, buf, len, p), 0);
	assert_int_equal(p->hdr.type, SWIM_MSG_PING_REQ);
	assert_true(p->hdr.seq == h.seq);
	assert_true(swim_id_eq(&p->hdr.sender, &h.sender));
	assert_true(swim_addr_eq(&p->hdr.sender_addr, &h.sender_addr));
	assert_true(p->hdr.sender_incarnation == 42);
	assert_true(p->hdr.has_target);
	assert_true(swim_id_eq(&p->hdr.target, &h.target));
	assert_true(swim_addr_eq(&p->hdr.target_addr, &h.target_addr));
	assert_true(p->hdr.want_nack);
	assert_int_equal(p->n_records, n);
	for (size_t i = 0; i < n; i++) {
		const struct swim_record *a = &r[i], *b = &p->records[i];

		assert_true(swim_id_eq(&a->id, &b->id));
		assert_true(swim_addr_eq(&a->addr, &b->addr));
		assert_true(a->incarnation == b->incarnation);
		assert_int_equal(a->status, b->status);
		assert_int_equal(a->has_from, b->has_from);
		if (a->has_from)
			assert_true(swim_id_eq(&a->from, &b->from));
		assert_int_equal(a->meta_len, b->meta_len);
		if (a->meta_len)
			assert_memory_equal(a->meta, b->meta, a->meta_len);
	}
	swim_decoder_release(d);

	/* Text ids round-trip; junk is refused. */
	{
		struct swim_id id, back;
		char str[SWIM_ID_STR_LEN];

		fill_id(&id, 9);
		swim_id_format(&id, str);
		assert_int_equal(swim_id_parse(str, &back), 0);
		assert_true(swim_id_eq(&id, &back));
		assert_int_equal(swim_id_parse("not-a-uuid", &back), -EINVAL);
	}
	free(d);
	free(p);
}

static void test_proto_truncated_and_corrupt(void **state)
{
	uint8_t buf[SWIM_MTU_MIN], bad[SWIM_MTU_MIN + 1];
	struct swim_header h;
	struct swim_record r[4];
	size_t n, len = build_packet(buf, sizeof(buf), 1400, &h, r, &n);
	struct swim_decoder *d = malloc(sizeof(*d));
	struct swim_packet *p = malloc(sizeof(*p));
	uint64_t x = 12345;

	(void)state;
	swim_decoder_init(d);
	/* Every proper prefix, including those ending on a field edge. */
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(swim_decode(d, CLUSTER, buf, cut, p),
				 -EBADMSG);
	/* Trailing bytes. */
	memcpy(bad, buf, len);
	bad[len] = 0;
	assert_int_equal(swim_decode(d, CLUSTER, bad, len + 1, p), -EBADMSG);
	/* Longer than any UDP datagram: refused before parsing. */
	assert_int_equal(swim_decode(d, CLUSTER, buf, SWIM_MTU_MAX + 1, p),
			 -EBADMSG);
	/* Random corruption never crashes (ASan/UBSan watch the rest). */
	for (int round = 0; round < 20000; round++) {
		memcpy(bad, buf, len);
		for (int k = 0; k < 1 + round % 4; k++) {
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			bad[(x >> 33) % len] = (uint8_t)(x >> 56);
		}
		if (swim_decode(d, CLUSTER, bad, len, p) == 0)
			assert_true(p->n_records <= SWIM_PACKET_RECORDS_MAX);
		swim_decoder_release(d);
	}
	free(d);
	free(p);
}

static void test_proto_mtu_bound(void **state)
{
	static uint8_t meta[SWIM_META_MAX];
	struct swim_encoder *e = malloc(sizeof(*e));
	uint8_t *buf = malloc(SWIM_MTU_MAX);
	struct swim_decoder *d = malloc(sizeof(*d));
	struct swim_packet *p = malloc(sizeof(*p));
	struct swim_header h;
	const size_t mtus[] = {SWIM_MTU_MIN, 1400, 9000};

	(void)state;
	memset(meta, 'm', sizeof(meta));
	memset(&h, 0, sizeof(h));
	h.type = SWIM_MSG_GOSSIP;
	fill_id(&h.sender, 1);
	/* Bad arguments. */
	assert_int_equal(swim_encoder_begin(e, CLUSTER, &h, SWIM_MTU_MIN - 1),
			 -EINVAL);
	h.type = SWIM_MSG_PING_REQ; /* needs a target */
	assert_int_equal(swim_encoder_begin(e, CLUSTER, &h, 1400), -EINVAL);
	h.type = SWIM_MSG_GOSSIP;
	for (size_t k = 0; k < sizeof(mtus) / sizeof(mtus[0]); k++) {
		size_t added = 0;
		int rc, len;

		assert_int_equal(swim_encoder_begin(e, CLUSTER, &h, mtus[k]),
				 0);
		for (uint32_t i = 0;; i++) {
			struct swim_record r;

			memset(&r, 0, sizeof(r));
			fill_id(&r.id, (uint8_t)i);
			r.addr.ip = 0x0a000000 + i;
			r.addr.port = 7946;
			r.incarnation = i;
			r.status = SWIM_ALIVE;
			r.meta = meta;
			r.meta_len = i % 3 ? 0 : 40 + i % SWIM_META_MAX / 2;
			rc = swim_encoder_add(e, &r);
			if (rc != 0)
				break;
			added++;
			assert_true(swim_encoder_size(e) <= mtus[k]);
		}
		assert_true(rc == -EMSGSIZE || rc == -ENOSPC);
		len = swim_encoder_finish(e, buf, SWIM_MTU_MAX);
		assert_true(len > 0 && (size_t)len <= mtus[k]);
		swim_decoder_init(d);
		assert_int_equal(swim_decode(d, CLUSTER, buf, (size_t)len, p),
				 0);
		assert_int_equal(p->n_records, added);
		swim_decoder_release(d);
	}
	/* A record that breaks a bound is refused by the encoder too. */
	{
		struct swim_record r;

		assert_int_equal(swim_encoder_begin(e, CLUSTER, &h, 1400), 0);
		memset(&r, 0, sizeof(r));
		r.status = SWIM_DEAD;
		r.meta = meta;
		r.meta_len = 1; /* meta only on ALIVE */
		assert_int_equal(swim_encoder_add(e, &r), -EINVAL);
		r.status = SWIM_ALIVE;
		r.meta_len = SWIM_META_MAX + 1;
		assert_int_equal(swim_encoder_add(e, &r), -EINVAL);
	}
	free(e);
	free(buf);
	free(d);
	free(p);
}

/* Hand-packs a Packet so that fields the encoder never writes can be set. */
static size_t raw_packet(uint8_t *buf, uint32_t version, const char *cluster,
			 const struct swim_id *sender)
{
	Gossip__Packet pk = GOSSIP__PACKET__INIT;

	pk.version = version;
	pk.cluster.data = (uint8_t *)cluster;
	pk.cluster.len = strlen(cluster);
	pk.type = GOSSIP__MSG_TYPE__MSG_PING;
	pk.seq = 1;
	pk.sender_id.data = (uint8_t *)sender->b;
	pk.sender_id.len = SWIM_ID_LEN;
	pk.sender_ip = 0x0a000063;
	pk.sender_port = 7946;
	pk.length = 0;
	pk.length = (uint32_t)gossip__packet__get_packed_size(&pk) + 5;
	return gossip__packet__pack(&pk, buf);
}

/* One instance alone, at 10.0.0.1:7946, fed datagrams by hand. */
static const char *const LONE_ID = "8d0e4a8e-0b4e-4c1e-9a53-1f2b3c4d5e6f";

static void lone_config(struct swim_config *cfg)
{
	config_gossip_defaults(cfg);
	snprintf(cfg->cluster_id, sizeof(cfg->cluster_id), "%s", CLUSTER);
}

static struct swim *lone_new(const struct swim_config *cfg)
{
	struct swim_addr self = {0x0a000001, 7946};
	struct swim *s;

	assert_int_equal(swim_new(cfg, LONE_ID, &self, 1, 0.0, &s), 0);
	return s;
}

static void test_foreign_datagrams_dropped(void **state)
{
	struct swim_config cfg;
	struct swim *s;
	struct swim_addr from = {0x0a000063, 7946};
	struct swim_stats st;
	struct swim_id other;
	uint8_t buf[512], out[1400];
	size_t len;
	struct swim_addr to;

	(void)state;
	lone_config(&cfg);
	s = lone_new(&cfg);
	fill_id(&other, 77);
	while (len = sizeof(out), swim_pop_packet(s, &to, out, &len))
		;

	len = raw_packet(buf, SWIM_PROTO_VERSION + 1, CLUSTER, &other);
	swim_recv(s, &from, buf, len, 0.1);
	len = raw_packet(buf, SWIM_PROTO_VERSION, "other-cluster", &other);
	swim_recv(s, &from, buf, len, 0.2);
	swim_recv(s, &from, (const uint8_t *)"\xff\xff\xff garbage", 12, 0.3);
	swim_recv(s, &from, buf, 0, 0.4);
	swim_stats_get(s, &st);
	assert_int_equal(st.dropped_bad_version, 1);
	assert_int_equal(st.dropped_bad_cluster, 1);
	assert_int_equal(st.dropped_malformed, 2);
	assert_int_equal(st.packets_received, 4);
	/* Nothing was learned, nothing answered. */
	assert_int_equal(swim_member_count(s), 1);
	len = sizeof(out);
	assert_false(swim_pop_packet(s, &to, out, &len));

	/* The same ping from our own cluster is answered and its sender
	 * learned. */
	len = raw_packet(buf, SWIM_PROTO_VERSION, CLUSTER, &other);
	swim_recv(s, &from, buf, len, 0.5);
	assert_int_equal(swim_member_count(s), 2);
	assert_int_equal(swim_member_status(s, &other), SWIM_ALIVE);
	len = sizeof(out);
	assert_true(swim_pop_packet(s, &to, out, &len));
	assert_true(swim_addr_eq(&to, &from));
	assert_true(len <= cfg.mtu);
	swim_free(s);
}

/* ------------------------------------------------------------------ */
/* Impossible incarnations. */

/* A GOSSIP datagram from `sender` (incarnation sender_inc) carrying `r`. */
static size_t forge(uint8_t *buf, size_t cap, const struct swim_id *sender,
		    uint64_t sender_inc, const struct swim_record *r)
{
	struct swim_encoder *e = malloc(sizeof(*e));
	struct swim_header h;
	int len;

	memset(&h, 0, sizeof(h));
	h.type = SWIM_MSG_GOSSIP;
	h.seq = 9;
	h.sender = *sender;
	h.sender_addr.ip = 0x0a000063;
	h.sender_addr.port = 7946;
	h.sender_incarnation = sender_inc;
	assert_int_equal(swim_encoder_begin(e, CLUSTER, &h, 1400), 0);
	assert_int_equal(swim_encoder_add(e, r), 0);
	len = swim_encoder_finish(e, buf, cap);
	assert_true(len > 0);
	free(e);
	return (size_t)len;
}

/* Delivers forge()'s datagram to s, from 10.0.0.99:7946. */
static void inject(struct swim *s, const struct swim_id *sender,
		   uint64_t sender_inc, const struct swim_record *r, double now)
{
	struct swim_addr from = {0x0a000063, 7946};
	uint8_t buf[1400];
	size_t len = forge(buf, sizeof(buf), sender, sender_inc, r);

	swim_recv(s, &from, buf, len, now);
}

struct rejects {
	size_t n;
	struct swim_reject last;
};

static void on_reject(void *ctx, const struct swim_reject *r)
{
	struct rejects *rj = ctx;

	rj->n++;
	rj->last = *r;
}

static void test_impossible_incarnations(void **state)
{
	struct swim_config cfg;
	struct swim *s;
	struct swim_addr self = {0x0a000001, 7946}, from = {0x0a000063, 7946};
	struct swim_stats st;
	struct swim_id me, attacker, other;
	struct swim_record r;
	struct swim_member_info mi;
	struct rejects rj = {0};
	uint8_t out[1400];
	size_t len;
	struct swim_addr to;

	(void)state;
	lone_config(&cfg);
	cfg.reject = on_reject;
	cfg.reject_ctx = &rj;
	s = lone_new(&cfg);
	assert_int_equal(swim_id_parse(LONE_ID, &me), 0);
	fill_id(&attacker, 90);
	fill_id(&other, 91);
	memset(&r, 0, sizeof(r));

	/* "We are dead" at 2^64 - 1: refuting it would wrap the counter
	 * and lose forever. Dropped, reported, our incarnation untouched. */
	r.id = me;
	r.addr = self;
	r.status = SWIM_DEAD;
	r.incarnation = UINT64_MAX;
	inject(s, &attacker, 1, &r, 0.1);
	swim_stats_get(s, &st);
	assert_int_equal(st.dropped_inc_jump, 1);
	assert_int_equal(st.refutes, 0);
	assert_int_equal(swim_self_incarnation(s), 0);
	assert_int_equal(rj.n, 1);
	assert_true(rj.last.self);
	assert_true(swim_id_eq(&rj.last.sender, &attacker));
	assert_true(swim_addr_eq(&rj.last.from, &from));
	assert_true(rj.last.claimed == UINT64_MAX);

	/* Just past the jump bound: dropped too; at the bound: refuted,
	 * one above what was heard. */
	r.incarnation = SWIM_INC_JUMP_MAX + 1;
	inject(s, &attacker, 1, &r, 0.2);
	assert_int_equal(swim_self_incarnation(s), 0);
	r.incarnation = SWIM_INC_JUMP_MAX;
	inject(s, &attacker, 1, &r, 0.3);
	swim_stats_get(s, &st);
	assert_int_equal(st.dropped_inc_jump, 2);
	assert_int_equal(st.refutes, 1);
	assert_true(swim_self_incarnation(s) == SWIM_INC_JUMP_MAX + 1);

	/* Another member: learned at 5, then a DEAD more than twice the
	 * jump above it is dropped and it stays alive. */
	r.id = other;
	r.addr = from;
	r.status = SWIM_ALIVE;
	r.incarnation = 5;
	inject(s, &attacker, 1, &r, 0.4);
	assert_int_equal(swim_member_status(s, &other), SWIM_ALIVE);
	r.status = SWIM_DEAD;
	r.incarnation = 5 + 2 * SWIM_INC_JUMP_MAX + 1;
	inject(s, &attacker, 1, &r, 0.5);
	assert_int_equal(swim_member_status(s, &other), SWIM_ALIVE);
	/* A stranger above SWIM_INC_LIMIT is not even learned. */
	fill_id(&r.id, 92);
	r.status = SWIM_ALIVE;
	r.incarnation = SWIM_INC_LIMIT + 1;
	inject(s, &attacker, 1, &r, 0.6);
	assert_int_equal(swim_member_status(s, &r.id), SWIM_NONE);
	/* A sender misstating its own incarnation: nothing it says counts. */
	r.id = other;
	r.status = SWIM_DEAD;
	r.incarnation = 6;
	inject(s, &attacker, UINT64_MAX, &r, 0.7);
	assert_int_equal(swim_member_status(s, &other), SWIM_ALIVE);
	assert_int_equal(swim_member_find(s, &other, &mi), 0);
	assert_true(mi.incarnation == 5);
	swim_stats_get(s, &st);
	assert_int_equal(st.dropped_inc_jump, 5);
	assert_int_equal(rj.n, 5);
	/* The last one was within bounds: applied. */
	inject(s, &attacker, 1, &r, 0.8);
	assert_int_equal(swim_member_status(s, &other), SWIM_DEAD);
	while (len = sizeof(out), swim_pop_packet(s, &to, out, &len))
		;
	swim_free(s);
}

/* ------------------------------------------------------------------ */
/* A probe's second direct ping. */

/* A's datagrams: to B if deliver, else lost. */
static void relay_all(struct swim *a, struct swim *b,
		      const struct swim_addr *a_addr, bool deliver, double now)
{
	uint8_t out[1400];
	struct swim_addr to;
	size_t len;

	while (len = sizeof(out), swim_pop_packet(a, &to, out, &len)) {
		if (deliver)
			swim_recv(b, a_addr, out, len, now);
	}
}

struct pair {
	struct swim *a, *b;
	struct swim_addr aa, ba;
	double t;
};

/* One millisecond; A's datagrams lost unless a_delivered, B's delivered.
 * Returns A's stats after it. */
static struct swim_stats pair_step(struct pair *p, bool a_delivered)
{
	struct swim_stats st;

	p->t += 0.001;
	swim_tick(p->a, p->t);
	swim_tick(p->b, p->t);
	relay_all(p->a, p->b, &p->aa, a_delivered, p->t);
	relay_all(p->b, p->a, &p->ba, true, p->t);
	swim_stats_get(p->a, &st);
	return st;
}

/*
 * Two members, so no intermediaries: A's first ping to B is lost. With the
 * second ping delivered, B's ack ends the probe and B stays ALIVE; with
 * both lost, B becomes SUSPECT.
 */
static void second_ping_case(bool second_delivered)
{
	struct swim_config cfg;
	struct pair p = {.aa = {0x0a000001, 7946}, .ba = {0x0a000002, 7946}};
	struct swim_id bid;
	struct swim_stats st;

	config_gossip_defaults(&cfg);
	snprintf(cfg.cluster_id, sizeof(cfg.cluster_id), "%s", CLUSTER);
	assert_int_equal(swim_new(&cfg, "8d0e4a8e-0b4e-4c1e-9a53-1f2b3c4d5e6f",
				  &p.aa, 1, p.t, &p.a),
			 0);
	assert_int_equal(swim_new(&cfg, "9d0e4a8e-0b4e-4c1e-9a53-1f2b3c4d5e6f",
				  &p.ba, 2, p.t, &p.b),
			 0);
	bid = *swim_self_id(p.b);
	assert_int_equal(swim_add_member(p.a, &bid, &p.ba, 0, p.t), 0);
	assert_int_equal(swim_add_member(p.b, swim_self_id(p.a), &p.aa, 0, p.t),
			 0);
	/* Until A's probe starts, nothing of A's reaches B. */
	do
		st = pair_step(&p, false);
	while (st.probes == 0 && p.t < 10);
	assert_int_equal(st.probes, 1);
	/* Past the probe timeout: the second ping goes out. */
	do
		st = pair_step(&p, second_delivered);
	while (st.direct_retries == 0 && p.t < 10);
	assert_int_equal(st.direct_retries, 1);
	assert_int_equal(st.indirect_probes, 0); /* nobody to ask */
	/* To the end of the period, everything delivered again. */
	for (double end = p.t + cfg.probe_interval; p.t < end;)
		st = pair_step(&p, true);
	if (second_delivered) {
		assert_int_equal(st.probe_failures, 0);
		assert_int_equal(swim_member_status(p.a, &bid), SWIM_ALIVE);
	} else {
		assert_int_equal(st.probe_failures, 1);
		assert_int_equal(st.suspects, 1);
	}
	swim_free(p.a);
	swim_free(p.b);
}

static void test_second_direct_ping(void **state)
{
	(void)state;
	second_ping_case(true);
	second_ping_case(false);
}

/* ------------------------------------------------------------------ */
/* Trace hook and sequence numbers. */

/* Nodes traced: the trace test's cluster size. */
#define TRACE_NODES 30

struct trace_log {
	size_t sent, received, dropped;
	struct swim_id sender[TRACE_NODES];
	uint64_t last_ping_seq[TRACE_NODES];
	size_t n_senders;
	bool seq_increasing;
	size_t max_size;
};

/* Pings a sender starts carry increasing sequence numbers. */
static void on_trace(void *ctx, const struct swim_trace *t)
{
	struct trace_log *l = ctx;
	size_t i;

	if (t->size > l->max_size)
		l->max_size = t->size;
	if (!t->sent) {
		l->received++;
		l->dropped += t->error != 0;
		return;
	}
	l->sent++;
	if (t->hdr->type != SWIM_MSG_PING)
		return;
	for (i = 0; i < l->n_senders; i++) {
		if (swim_id_eq(&l->sender[i], &t->hdr->sender))
			break;
	}
	if (i == l->n_senders) {
		if (i == TRACE_NODES)
			return;
		l->sender[l->n_senders++] = t->hdr->sender;
	} else if (t->hdr->seq <= l->last_ping_seq[i]) {
		l->seq_increasing = false;
	}
	l->last_ping_seq[i] = t->hdr->seq;
}

static void test_trace_and_determinism(void **state)
{
	struct sim_counters c1, c2;
	struct trace_log log = {.seq_increasing = true};
	uint64_t seed = test_seed(7);

	(void)state;
	for (int run = 0; run < 2; run++) {
		struct sim_config cfg;
		struct sim *sim;

		sim_config_defaults(&cfg, seed, TRACE_NODES);
		cfg.loss = 0.05;
		cfg.jitter = 0.01;
		if (run == 0) {
			cfg.swim.trace = on_trace;
			cfg.swim.trace_ctx = &log;
		}
		SIM_ASSERT(sim_new(&cfg, &sim) == 0);
		form(sim, TRACE_NODES, 3, 30);
		sim_crash(sim, 4);
		sim_run_for(sim, 20);
		sim_counters(sim, run == 0 ? &c1 : &c2);
		sim_free(sim);
	}
	/* Same seed, same run, to the datagram. */
	SIM_ASSERT(c1.packets_sent == c2.packets_sent);
	SIM_ASSERT(c1.bytes_sent == c2.bytes_sent);
	SIM_ASSERT(c1.events == c2.events);
	SIM_ASSERT(log.sent > 0 && log.received > 0 && log.dropped == 0);
	SIM_ASSERT(log.n_senders == TRACE_NODES);
	SIM_ASSERT(log.seq_increasing);
	SIM_ASSERT(log.max_size <= 1400);
}

/* ------------------------------------------------------------------ */
/* Cluster behaviour. */

static void test_small_cluster_forms(void **state)
{
	struct sim *sim = make_sim(1, 5, 0);
	static const uint8_t meta[] = "role=worker;load=0.5";
	struct swim_member_info info;

	(void)state;
	form(sim, 5, 1, 10);
	/* Meta set on one node reaches every other. */
	SIM_ASSERT(swim_set_meta(sim_swim(sim, 2), meta, sizeof(meta),
				 sim_now(sim)) == 0);
	/* Two probe rounds: every member has probed every other (RTT). Two
	 * anti-entropy intervals: a member the epidemic missed (it happens,
	 * ~e^-retransmits) has been repaired. */
	sim_run_for(sim, 2 * cfg_sync_interval() + 1);
	for (size_t i = 0; i < 5; i++) {
		SIM_ASSERT(swim_member_count(sim_swim(sim, i)) == 5);
		SIM_ASSERT(swim_member_find(sim_swim(sim, i), sim_id(sim, 2),
					    &info) == 0);
		SIM_ASSERT(info.meta_len == sizeof(meta));
		SIM_ASSERT(memcmp(info.meta, meta, sizeof(meta)) == 0);
		if (i != 2)
			SIM_ASSERT(info.rtt_ms >= 0 || info.is_self);
	}
	SIM_ASSERT(sim_converged(sim));
	sim_free(sim);
}

struct detect {
	size_t subject;
	double first_dead; /* first DEAD event about subject, or -1 */
};

static void on_detect(void *ctx, struct sim *sim, size_t observer,
		      const struct swim_event *ev)
{
	struct detect *d = ctx;

	(void)observer;
	if (d->first_dead < 0 && (ev->what & SWIM_EV_STATUS) &&
	    ev->status == SWIM_DEAD &&
	    swim_id_eq(&ev->id, sim_id(sim, d->subject)))
		d->first_dead = sim_now(sim);
}

/* Virtual seconds of steady state over which traffic is measured: one
 * anti-entropy interval, so that its share is counted. */
#define STEADY_WINDOW 30.0

/*
 * Probe periods within which some member starts a probe of a crashed one.
 * Each of the n - 1 others probes one member per period, walking its own
 * shuffled list from its own random phase: in a given period it picks the
 * crashed member with probability ~1/(n - 1), independently of the others
 * (walking without replacement only makes a miss rarer within a round). No
 * probe in k periods: ~(1 - 1/(n - 1))^(k (n - 1)) ~ e^-k. k = 10: a crash
 * misses the bound this way with p ~ 4.5e-5.
 */
#define DETECT_PROBE_PERIODS 10.0
/* Margin on the dissemination estimate below (a factor). */
#define DETECT_SPREAD_MARGIN 2.0

/*
 * The protocol's bound on crash detection for configuration `cfg` and n
 * members, in virtual seconds after the crash: *first_dead, by when some
 * member has declared it DEAD; *all_dead, by when every member holds it
 * DEAD.
 *  - DETECT_PROBE_PERIODS probe periods until some member probes it;
 *  - one more period: the probe ends, with its timeout, indirect probes
 *    and second ping, at the end of its period: SUSPECT;
 *  - the suspicion timeout at its longest, suspicion_max_mult * min with
 *    min = suspicion_mult * log10(n) * probe_interval, floored at one
 *    interval (independent confirmations only shorten it): DEAD;
 *  - dissemination: every gossip_interval each informed member tells
 *    gossip_nodes random ones (besides piggybacking on its probes); push
 *    gossip with fan-out g informs n members in ~log_{1+g}(n) + ln(n)/g
 *    rounds (Pittel), times DETECT_SPREAD_MARGIN;
 *  - a network delay (delay + jitter) per probe, suspicion and gossip hop.
 */
static void detect_bound(const struct sim_config *cfg, size_t n,
			 double *first_dead, double *all_dead)
{
	const struct swim_config *c = &cfg->swim;
	double hop = cfg->delay + cfg->jitter;
	double g = c->gossip_nodes > 0 ? c->gossip_nodes : 1;
	double susp_min =
	    c->suspicion_mult * log10((double)n) * c->probe_interval;
	double rounds = log((double)n) / log(1.0 + g) + log((double)n) / g;

	if (susp_min < c->probe_interval)
		susp_min = c->probe_interval;
	*first_dead = (DETECT_PROBE_PERIODS + 1.0) * c->probe_interval +
		      c->suspicion_max_mult * susp_min + 4 * hop;
	*all_dead = *first_dead +
		    DETECT_SPREAD_MARGIN * rounds * (c->gossip_interval + hop);
}

static void crash_detected(size_t n, uint64_t seed, bool report)
{
	struct sim *sim = make_sim(seed, n, 0);
	struct sim_config cfg;
	struct detect d = {.subject = n / 2, .first_dead = -1};
	struct see w = {.subject = n / 2, .st = SWIM_DEAD};
	double cpu0 = cpu_seconds(), cpu1, cpu2, t_crash, t_all, t_formed;
	double t_drained, bps, pps, bound_first, bound_all;

	sim_config_defaults(&cfg, seed, n);
	detect_bound(&cfg, n, &bound_first, &bound_all);
	form(sim, n, n >= 1000 ? 10 : 2, 60);
	t_formed = sim_now(sim);
	/* Let the join storm's updates finish their retransmissions. */
	SIM_ASSERT(
	    sim_run_until_cond(sim, t_formed + 120, 1, sim_drained, NULL));
	t_drained = sim_now(sim);
	cpu1 = cpu_seconds();
	sim_traffic_mark(sim);
	sim_run_for(sim, STEADY_WINDOW);
	cpu2 = cpu_seconds();
	sim_traffic_rate(sim, &bps, &pps);
	sim_set_event_hook(sim, on_detect, &d);
	t_crash = sim_now(sim);
	sim_crash(sim, d.subject);
	/* In simulated time, the product's configuration: the bound is the
	 * protocol's, not a timeout of the test. */
	SIM_ASSERT(sim_run_until_cond(sim, t_crash + bound_all, 0.05,
				      cond_all_see, &w));
	t_all = sim_now(sim);
	SIM_ASSERT(d.first_dead >= t_crash);
	SIM_ASSERT(d.first_dead - t_crash <= bound_first);
	SIM_ASSERT(t_all - t_crash <= bound_all);
	{
		struct sim_counters c;

		sim_counters(sim, &c);
		SIM_ASSERT(c.false_dead == 0);
	}
	if (report)
		printf("    n=%zu: all alive everywhere at %.1f s, updates "
		       "drained at %.1f s (cpu %.2f s); steady state %.0f B/s "
		       "and %.1f datagrams/s per member, cpu %.2f s per 60 "
		       "virtual s; crash detected after %.2f s (bound %.2f), "
		       "known to all %.2f s later (all by %.2f, bound %.2f)\n",
		       n, t_formed, t_drained, cpu1 - cpu0, bps, pps,
		       (cpu2 - cpu1) * 60.0 / STEADY_WINDOW,
		       d.first_dead - t_crash, bound_first,
		       t_all - d.first_dead, t_all - t_crash, bound_all);
	sim_free(sim);
}

static void test_crash_detected_20(void **state)
{
	(void)state;
	crash_detected(20, 20, true);
}

static void test_crash_detected_100(void **state)
{
	(void)state;
	crash_detected(100, 100, true);
}

static void test_crash_detected_1000(void **state)
{
	(void)state;
	crash_detected(1000, 1000, true);
}

static void test_loss_no_false_positive(void **state)
{
	struct sim *sim = make_sim(10, 100, 0);
	struct sim_counters c;

	(void)state;
	form(sim, 100, 2, 30);
	sim_set_loss(sim, 0.10);
	sim_run_for(sim, 300);
	sim_counters(sim, &c);
	printf("    10%% loss, 100 members, 300 s: %" PRIu64
	       " datagrams lost, %" PRIu64 " false DEAD\n",
	       c.dropped_loss, c.false_dead);
	SIM_ASSERT(c.false_dead == 0);
	sim_set_loss(sim, 0);
	SIM_ASSERT(sim_run_until_cond(sim, sim_now(sim) + 30, 0.5,
				      cond_converged, NULL));
	sim_free(sim);
}

static void test_partition_heals(void **state)
{
	const size_t n = 40;
	struct sim *sim = make_sim(11, n, 0);
	double t;

	(void)state;
	form(sim, n, 2, 20);
	for (size_t i = n / 2; i < n; i++)
		sim_set_group(sim, i, 1);
	sim_run_for(sim, 60);
	/* Each side has declared the other dead. */
	SIM_ASSERT(sim_view(sim, 0, n - 1) == SWIM_DEAD);
	SIM_ASSERT(sim_view(sim, n - 1, 0) == SWIM_DEAD);
	sim_heal(sim);
	t = sim_now(sim);
	SIM_ASSERT(sim_run_until_cond(sim, t + 90, 0.5, cond_converged, NULL));
	printf("    40 members, 60 s partition: reconverged %.1f s after "
	       "healing\n",
	       sim_now(sim) - t);
	sim_free(sim);
}

static void test_restart_rejoins(void **state)
{
	const size_t n = 20, x = 5;
	struct sim *sim = make_sim(12, n, 0);
	struct see dead = {.subject = x, .st = SWIM_DEAD};
	struct see alive = {.subject = x, .st = SWIM_ALIVE};
	struct swim_member_info info;
	uint64_t old_inc;

	(void)state;
	form(sim, n, 2, 20);
	/* Raise its incarnation so that the new life starts below it. */
	SIM_ASSERT(swim_set_meta(sim_swim(sim, x), (const uint8_t *)"v1", 2,
				 sim_now(sim)) == 0);
	sim_run_for(sim, 3);
	old_inc = swim_self_incarnation(sim_swim(sim, x));
	SIM_ASSERT(old_inc > 0);

	/* Crash, detected, then restart with the same id and address. */
	sim_crash(sim, x);
	SIM_ASSERT(sim_run_until_cond(sim, sim_now(sim) + 60, 0.5, cond_all_see,
				      &dead));
	SIM_ASSERT(sim_start(sim, x) == 0);
	SIM_ASSERT(sim_join(sim, x, 0) == 0);
	SIM_ASSERT(sim_run_until_cond(sim, sim_now(sim) + 30, 0.2, cond_all_see,
				      &alive));
	SIM_ASSERT(swim_self_incarnation(sim_swim(sim, x)) > old_inc);
	SIM_ASSERT(sim_run_until_cond(sim, sim_now(sim) + 30, 0.5,
				      cond_converged, NULL));
	/* One entry per id: no duplicate of the restarted member. */
	for (size_t i = 0; i < n; i++)
		SIM_ASSERT(swim_member_count(sim_swim(sim, i)) == n);

	/* A restart faster than detection: it comes back with a new meta,
	 * which must win over the old record everywhere. */
	sim_crash(sim, x);
	sim_run_for(sim, 0.3);
	SIM_ASSERT(sim_start(sim, x) == 0);
	SIM_ASSERT(swim_set_meta(sim_swim(sim, x), (const uint8_t *)"v2", 2,
				 sim_now(sim)) == 0);
	SIM_ASSERT(sim_join(sim, x, 0) == 0);
	sim_run_for(sim, 10);
	SIM_ASSERT(sim_converged(sim));
	for (size_t i = 0; i < n; i++) {
		SIM_ASSERT(swim_member_find(sim_swim(sim, i), sim_id(sim, x),
					    &info) == 0);
		SIM_ASSERT(info.meta_len == 2 &&
			   memcmp(info.meta, "v2", 2) == 0);
	}
	sim_free(sim);
}

static void test_dead_forgotten(void **state)
{
	const size_t n = 10, x = 4;
	struct sim *sim = make_sim(15, n, 0);
	struct see dead = {.subject = x, .st = SWIM_DEAD};
	struct see gone = {.subject = x, .st = SWIM_NONE};
	struct swim_config c;
	double t;

	(void)state;
	config_gossip_defaults(&c);
	form(sim, n, 1, 20);
	sim_crash(sim, x);
	SIM_ASSERT(sim_run_until_cond(sim, sim_now(sim) + 60, 0.5, cond_all_see,
				      &dead));
	/* Remembered as DEAD until dead_reap_time has passed... */
	t = sim_now(sim);
	sim_run_until(sim, t + c.dead_reap_time - 15);
	SIM_ASSERT(sim_all_see(sim, x, SWIM_DEAD));
	/* ...then forgotten everywhere, and nothing brings it back. */
	SIM_ASSERT(sim_run_until_cond(sim, t + c.dead_reap_time + 5, 0.5,
				      cond_all_see, &gone));
	sim_run_for(sim, 30);
	SIM_ASSERT(sim_all_see(sim, x, SWIM_NONE));
	for (size_t i = 0; i < n; i++) {
		if (i != x)
			SIM_ASSERT(swim_member_count(sim_swim(sim, i)) ==
				   n - 1);
	}
	sim_free(sim);
}

static void test_graceful_leave(void **state)
{
	const size_t n = 50, x = 7;
	struct sim *sim = make_sim(13, n, 0);
	struct see left = {.subject = x, .st = SWIM_LEFT};
	struct sim_counters c;
	double t;

	(void)state;
	form(sim, n, 2, 20);
	t = sim_now(sim);
	sim_leave(sim, x);
	/* The process lingers a second to spread the news, then exits:
	 * everyone must know by then. */
	SIM_ASSERT(sim_run_until_cond(sim, t + 1.0, 0.01, cond_all_see, &left));
	printf("    50 members: LEFT known to all %.2f s after leaving\n",
	       sim_now(sim) - t);
	sim_run_until(sim, t + 1.0);
	sim_crash(sim, x);
	/* Stays LEFT (not DEAD) afterwards. */
	sim_run_for(sim, 30);
	SIM_ASSERT(sim_all_see(sim, x, SWIM_LEFT));
	sim_counters(sim, &c);
	SIM_ASSERT(c.false_dead == 0);
	sim_free(sim);
}

struct healthy_fp {
	size_t broken;
	uint64_t fp; /* healthy observer declared a healthy member dead */
};

static void on_healthy_fp(void *ctx, struct sim *sim, size_t observer,
			  const struct swim_event *ev)
{
	struct healthy_fp *h = ctx;
	long subj;

	if (!(ev->what & SWIM_EV_STATUS) || ev->status != SWIM_DEAD ||
	    observer == h->broken)
		return;
	subj = sim_index_of(sim, &ev->id);
	if (subj >= 0 && (size_t)subj != h->broken &&
	    sim_state(sim, (size_t)subj) == SIM_RUNNING)
		h->fp++;
}

static void test_local_health(void **state)
{
	const size_t n = 30, x = 3;
	struct sim *sim = make_sim(14, n, 0);
	struct healthy_fp h = {.broken = x, .fp = 0};
	struct swim_stats st;
	uint64_t p0, p1, q0, q1;

	(void)state;
	form(sim, n, 2, 20);
	sim_set_event_hook(sim, on_healthy_fp, &h);
	/* Node x hears nothing any more but can still send. */
	sim_block_inbound(sim, x, true);
	sim_run_for(sim, 20);
	swim_stats_get(sim_swim(sim, x), &st);
	SIM_ASSERT(st.local_health > 0);
	/* It asked intermediaries and heard neither acks nor nacks: that
	 * counts against itself, not its peers. */
	SIM_ASSERT(st.probe_failures > 0 && st.indirect_probes > 0);
	SIM_ASSERT(st.nacks_received == 0);
	/* It slowed down: fewer probes than a healthy member. */
	p0 = st.probes;
	swim_stats_get(sim_swim(sim, 0), &st);
	q0 = st.probes;
	sim_run_for(sim, 60);
	swim_stats_get(sim_swim(sim, x), &st);
	p1 = st.probes;
	printf("    broken inbound link: local health %u, %" PRIu64
	       " probes in 60 s (healthy member: ",
	       st.local_health, p1 - p0);
	swim_stats_get(sim_swim(sim, 0), &st);
	q1 = st.probes;
	printf("%" PRIu64 ")\n", q1 - q0);
	SIM_ASSERT((p1 - p0) * 2 < q1 - q0);
	/* Its accusations did not get a healthy member declared dead by a
	 * healthy one. */
	SIM_ASSERT(h.fp == 0);
	/* Restore it: it comes back. */
	sim_block_inbound(sim, x, false);
	SIM_ASSERT(sim_run_until_cond(sim, sim_now(sim) + 60, 0.5,
				      cond_converged, NULL));
	sim_free(sim);
}

/* ------------------------------------------------------------------ */
/* One scenario per mechanism. */

struct any_see {
	size_t subject;
	enum swim_status st;
};

/* Some running member other than the subject holds it as `st`. */
static bool cond_any_sees(struct sim *sim, void *ctx)
{
	const struct any_see *w = ctx;

	for (size_t i = 0; i < sim_size(sim); i++) {
		if (i != w->subject && sim_state(sim, i) == SIM_RUNNING &&
		    sim_view(sim, i, w->subject) == w->st)
			return true;
	}
	return false;
}

/* Running members other than `subject` whose record of it fails ok(), or
 * who have none. */
static size_t views_not(struct sim *sim, size_t subject,
			bool (*ok)(const struct swim_member_info *mi,
				   const void *ctx),
			const void *ctx)
{
	size_t n = 0;

	for (size_t i = 0; i < sim_size(sim); i++) {
		struct swim_member_info mi;

		if (i == subject || sim_state(sim, i) != SIM_RUNNING)
			continue;
		if (swim_member_find(sim_swim(sim, i), sim_id(sim, subject),
				     &mi) != 0 ||
		    !ok(&mi, ctx))
			n++;
	}
	return n;
}

struct refuted {
	size_t subject;
	uint64_t above; /* incarnation to beat */
};

static bool alive_at(const struct swim_member_info *mi, const void *ctx)
{
	return mi->status == SWIM_ALIVE &&
	       mi->incarnation == *(const uint64_t *)ctx;
}

/* Everyone holds the subject ALIVE at its own, raised, incarnation. */
static bool cond_refuted(struct sim *sim, void *ctx)
{
	const struct refuted *w = ctx;
	uint64_t inc = swim_self_incarnation(sim_swim(sim, w->subject));

	return inc > w->above &&
	       views_not(sim, w->subject, alive_at, &inc) == 0;
}

/*
 * Refutation: a live member cut off long enough to be suspected hears of
 * it once reachable, raises its incarnation, and is ALIVE everywhere at
 * the new one before any suspicion can expire. Nobody declares it DEAD.
 */
static void test_refutation(void **state)
{
	const size_t n = 10, x = 3;
	struct sim *sim = make_sim(21, n, 0);
	struct any_see suspected = {.subject = x, .st = SWIM_SUSPECT};
	struct refuted r = {.subject = x};
	struct swim_stats st;
	struct sim_counters c;
	struct swim_config cfg;
	double t, susp_min;

	(void)state;
	config_gossip_defaults(&cfg);
	/* The shortest a suspicion can last here. */
	susp_min = cfg.suspicion_mult * log10((double)n) * cfg.probe_interval;
	form(sim, n, 1, 20);
	SIM_ASSERT(
	    sim_run_until_cond(sim, sim_now(sim) + 30, 0.5, sim_drained, NULL));
	r.above = swim_self_incarnation(sim_swim(sim, x));
	/* Cut off both ways until someone suspects it. */
	sim_block_inbound(sim, x, true);
	sim_block_outbound(sim, x, true);
	SIM_ASSERT(sim_run_until_cond(sim, sim_now(sim) + 10, 0.01,
				      cond_any_sees, &suspected));
	sim_block_inbound(sim, x, false);
	sim_block_outbound(sim, x, false);
	t = sim_now(sim);
	SIM_ASSERT(
	    sim_run_until_cond(sim, t + susp_min, 0.01, cond_refuted, &r));
	printf("    suspected member ALIVE everywhere at incarnation %" PRIu64
	       " %.2f s after it was reachable again\n",
	       swim_self_incarnation(sim_swim(sim, x)), sim_now(sim) - t);
	swim_stats_get(sim_swim(sim, x), &st);
	SIM_ASSERT(st.refutes >= 1);
	sim_run_for(sim, 10);
	SIM_ASSERT(sim_converged(sim));
	sim_counters(sim, &c);
	SIM_ASSERT(c.false_dead == 0);
	sim_free(sim);
}

/*
 * Lifeguard nacks: when a crashed member is probed, the intermediaries
 * nack the requester, which so knows the silence is not its own fault:
 * nacks are counted on both sides and no healthy member's local health
 * score rises (compare test_local_health, where nothing comes back).
 */
static void test_nacks(void **state)
{
	const size_t n = 20, x = 7;
	struct sim *sim = make_sim(22, n, 0);
	struct see dead = {.subject = x, .st = SWIM_DEAD};
	uint64_t sent = 0, received = 0, failures = 0;
	unsigned health = 0;

	(void)state;
	form(sim, n, 2, 20);
	SIM_ASSERT(
	    sim_run_until_cond(sim, sim_now(sim) + 30, 0.5, sim_drained, NULL));
	sim_crash(sim, x);
	SIM_ASSERT(sim_run_until_cond(sim, sim_now(sim) + 30, 0.05,
				      cond_all_see, &dead));
	for (size_t i = 0; i < n; i++) {
		struct swim_stats st;

		if (i == x)
			continue;
		swim_stats_get(sim_swim(sim, i), &st);
		sent += st.nacks_sent;
		received += st.nacks_received;
		failures += st.probe_failures;
		if (st.local_health > health)
			health = st.local_health;
	}
	printf("    crash: %" PRIu64 " failed probes, %" PRIu64
	       " nacks sent, %" PRIu64 " received, highest local health %u\n",
	       failures, sent, received, health);
	SIM_ASSERT(failures > 0);
	SIM_ASSERT(received > 0 && received <= sent);
	SIM_ASSERT(health == 0);
	sim_free(sim);
}

struct susp_times {
	size_t subject;
	double *suspect, *dead; /* per observer, < 0: not yet */
};

static void on_susp_times(void *ctx, struct sim *sim, size_t observer,
			  const struct swim_event *ev)
{
	struct susp_times *w = ctx;

	if (!(ev->what & SWIM_EV_STATUS) ||
	    !swim_id_eq(&ev->id, sim_id(sim, w->subject)))
		return;
	if (ev->status == SWIM_SUSPECT && w->suspect[observer] < 0)
		w->suspect[observer] = sim_now(sim);
	if (ev->status == SWIM_DEAD && w->dead[observer] < 0)
		w->dead[observer] = sim_now(sim);
}

/*
 * Lifeguard's dynamic suspicion: the timeout starts at
 * suspicion_max_mult * min and shrinks towards min as independent
 * confirmations arrive. After a crash, every member that declared it DEAD
 * itself (its own timer expired) did so within [min, max] of suspecting
 * it, and the first of them well before max: others' suspicions confirmed
 * its own.
 */
static void test_suspicion_confirmations(void **state)
{
	const size_t n = 20, x = 11;
	struct sim *sim = make_sim(23, n, 0);
	struct see dead = {.subject = x, .st = SWIM_DEAD};
	struct susp_times w = {.subject = x};
	struct swim_config cfg;
	double lo, hi, shortest = INFINITY;
	size_t declarers = 0;

	(void)state;
	config_gossip_defaults(&cfg);
	lo = cfg.suspicion_mult * log10((double)n) * cfg.probe_interval;
	hi = cfg.suspicion_max_mult * lo;
	w.suspect = malloc(n * sizeof(double));
	w.dead = malloc(n * sizeof(double));
	for (size_t i = 0; i < n; i++)
		w.suspect[i] = w.dead[i] = -1;
	form(sim, n, 2, 20);
	SIM_ASSERT(
	    sim_run_until_cond(sim, sim_now(sim) + 30, 0.5, sim_drained, NULL));
	sim_set_event_hook(sim, on_susp_times, &w);
	sim_crash(sim, x);
	SIM_ASSERT(sim_run_until_cond(sim, sim_now(sim) + 30, 0.05,
				      cond_all_see, &dead));
	for (size_t i = 0; i < n; i++) {
		struct swim_stats st;
		double took;

		if (i == x)
			continue;
		swim_stats_get(sim_swim(sim, i), &st);
		if (st.deaths == 0)
			continue; /* learned the death from others */
		declarers++;
		took = w.dead[i] - w.suspect[i];
		SIM_ASSERT(w.suspect[i] >= 0 && w.dead[i] >= 0);
		SIM_ASSERT(took >= lo - 1e-9 && took <= hi + 1e-9);
		if (took < shortest)
			shortest = took;
	}
	printf("    %zu members declared it themselves; shortest suspicion "
	       "%.2f s (min %.2f s, max %.2f s)\n",
	       declarers, shortest, lo, hi);
	SIM_ASSERT(declarers >= 1);
	/* At least one confirmation: max - log(2)/log(k+1) (max - min). */
	SIM_ASSERT(shortest <=
		   hi - log(2.0) / log(cfg.indirect_checks + 1.0) * (hi - lo) +
		       1e-9);
	free(w.suspect);
	free(w.dead);
	sim_free(sim);
}

/* A's datagrams: kept in *ping if it is a ping to `target`, else lost.
 * Returns true if one was kept. */
static bool take_ping(struct swim *a, const struct swim_id *target,
		      uint8_t *ping, size_t *ping_len)
{
	uint8_t out[1400];
	struct swim_addr to;
	size_t len;
	bool got = false;
	struct swim_decoder *d = malloc(sizeof(*d));
	struct swim_packet *p = malloc(sizeof(*p));

	while (len = sizeof(out), swim_pop_packet(a, &to, out, &len)) {
		swim_decoder_init(d);
		if (swim_decode(d, CLUSTER, out, len, p) == 0 &&
		    p->hdr.type == SWIM_MSG_PING && p->hdr.has_target &&
		    swim_id_eq(&p->hdr.target, target) && !got) {
			memcpy(ping, out, len);
			*ping_len = len;
			got = true;
		}
		swim_decoder_release(d);
	}
	free(d);
	free(p);
	return got;
}

/*
 * The buddy system: a ping to a member we hold as SUSPECT carries that
 * record first, so the member refutes on the ping itself, even once the
 * suspicion is no longer being disseminated. A holds B suspect (told by a
 * third member); every datagram from A to B is lost until A has sent the
 * update as often as it will (retransmit_mult 1: once); then one ping from
 * A reaches B. B refutes on it and A holds B ALIVE from B's ack.
 */
static void test_buddy_system(void **state)
{
	struct swim_config cfg;
	struct pair p = {.aa = {0x0a000001, 7946}, .ba = {0x0a000002, 7946}};
	struct swim_addr ca = {0x0a000003, 7946};
	struct swim_id bid, cid;
	struct swim_record r;
	struct swim_stats st;
	struct swim_member_info mi;
	struct swim_decoder *d = malloc(sizeof(*d));
	struct swim_packet *pk = malloc(sizeof(*pk));
	uint8_t ping[1400];
	size_t ping_len = 0;

	(void)state;
	config_gossip_defaults(&cfg);
	snprintf(cfg.cluster_id, sizeof(cfg.cluster_id), "%s", CLUSTER);
	cfg.retransmit_mult = 1;
	/* A suspicion long enough to outlast the dissemination. */
	cfg.suspicion_mult = 10;
	assert_int_equal(swim_new(&cfg, "8d0e4a8e-0b4e-4c1e-9a53-1f2b3c4d5e6f",
				  &p.aa, 1, p.t, &p.a),
			 0);
	assert_int_equal(swim_new(&cfg, "9d0e4a8e-0b4e-4c1e-9a53-1f2b3c4d5e6f",
				  &p.ba, 2, p.t, &p.b),
			 0);
	bid = *swim_self_id(p.b);
	fill_id(&cid, 40);
	assert_int_equal(swim_add_member(p.a, &bid, &p.ba, 0, p.t), 0);
	assert_int_equal(swim_add_member(p.a, &cid, &ca, 0, p.t), 0);
	assert_int_equal(swim_add_member(p.b, swim_self_id(p.a), &p.aa, 0, p.t),
			 0);
	memset(&r, 0, sizeof(r));
	r.id = bid;
	r.addr = p.ba;
	r.status = SWIM_SUSPECT;
	r.incarnation = 0;
	inject(p.a, &cid, 0, &r, p.t);
	assert_int_equal(swim_member_status(p.a, &bid), SWIM_SUSPECT);
	/* A spreads it (to nobody who hears it) until it stops. */
	do
		st = pair_step(&p, false);
	while (st.broadcasts > 0 && p.t < 1.0);
	assert_int_equal(st.broadcasts, 0);
	assert_int_equal(swim_member_status(p.a, &bid), SWIM_SUSPECT);
	assert_true(swim_self_incarnation(p.b) == 0);
	/* One ping, delivered: the suspicion rides on it, first. */
	assert_int_equal(swim_ping(p.a, &bid, p.t), 0);
	assert_true(take_ping(p.a, &bid, ping, &ping_len));
	swim_decoder_init(d);
	assert_int_equal(swim_decode(d, CLUSTER, ping, ping_len, pk), 0);
	assert_true(pk->n_records >= 1);
	assert_true(swim_id_eq(&pk->records[0].id, &bid));
	assert_int_equal(pk->records[0].status, SWIM_SUSPECT);
	swim_decoder_release(d);
	swim_recv(p.b, &p.aa, ping, ping_len, p.t);
	swim_stats_get(p.b, &st);
	assert_int_equal(st.refutes, 1);
	assert_true(swim_self_incarnation(p.b) == 1);
	/* B's ack tells A. */
	relay_all(p.b, p.a, &p.ba, true, p.t);
	assert_int_equal(swim_member_find(p.a, &bid, &mi), 0);
	assert_int_equal(mi.status, SWIM_ALIVE);
	assert_true(mi.incarnation == 1);
	free(d);
	free(pk);
	swim_free(p.a);
	swim_free(p.b);
}

struct meta_want {
	size_t subject;
	const uint8_t *meta;
	size_t len;
};

static bool has_meta(const struct swim_member_info *mi, const void *ctx)
{
	const struct meta_want *w = ctx;

	return mi->meta_len == w->len && memcmp(mi->meta, w->meta, w->len) == 0;
}

/* Running members (subject aside) whose record of it lacks the meta. */
static size_t missing_meta(struct sim *sim, const struct meta_want *w)
{
	return views_not(sim, w->subject, has_meta, w);
}

static bool cond_meta_everywhere(struct sim *sim, void *ctx)
{
	return missing_meta(sim, ctx) == 0;
}

/*
 * Digest anti-entropy: an update the epidemic missed is repaired within a
 * few sync_intervals. With retransmit_mult 1 each member passes an update
 * on only ceil(log10(N + 1)) = 2 times, so the epidemic reaches only ~80%
 * of the members (z = 1 - e^-2z); once nobody spreads it any more, only
 * the digest exchange can bring it to the rest. A missed member's own
 * digest goes to a random live member every sync_interval, one that holds
 * the update with p ~ 0.8: all are repaired within 5 intervals but with
 * p ~ missed * 0.2^5.
 */
static void test_anti_entropy_repair(void **state)
{
	const size_t n = 30, x = 4;
	static const uint8_t meta[] = "v2";
	struct sim_config cfg;
	struct sim *sim = NULL;
	struct meta_want w = {.subject = x, .meta = meta, .len = sizeof(meta)};
	size_t missed;
	double t;

	(void)state;
	sim_config_defaults(&cfg, test_seed(24), n);
	cfg.swim.retransmit_mult = 1;
	SIM_ASSERT(sim_new(&cfg, &sim) == 0);
	SIM_ASSERT(sim_bootstrap(sim, n) == 0);
	SIM_ASSERT(
	    sim_run_until_cond(sim, sim_now(sim) + 30, 0.5, sim_drained, NULL));
	SIM_ASSERT(swim_set_meta(sim_swim(sim, x), meta, sizeof(meta),
				 sim_now(sim)) == 0);
	SIM_ASSERT(sim_run_until_cond(sim, sim_now(sim) + 30, 0.05, sim_drained,
				      NULL));
	t = sim_now(sim);
	missed = missing_meta(sim, &w);
	SIM_ASSERT(missed > 0); /* the scenario's premise */
	SIM_ASSERT(sim_run_until_cond(sim, t + 5 * cfg.swim.sync_interval, 0.1,
				      cond_meta_everywhere, &w));
	printf("    epidemic missed %zu of %zu members; anti-entropy "
	       "repaired them %.1f s later (sync_interval %.0f s)\n",
	       missed, n - 1, sim_now(sim) - t, cfg.swim.sync_interval);
	sim_free(sim);
}

/* ------------------------------------------------------------------ */
/* The core/driver contract: no state change lost in a burst. */

/* Fake members the burst introduces: ids no simulated node has. */
static void burst_id(struct swim_id *id, uint32_t k)
{
	memset(id, 0, sizeof(*id));
	id->b[0] = 0xb5;
	memcpy(id->b + 1, &k, sizeof(k));
	id->b[6] = 0x40;
	id->b[8] = 0x80;
}

static bool is_burst_id(const struct swim_id *id)
{
	struct swim_id want;
	uint32_t k;

	memcpy(&k, id->b + 1, sizeof(k));
	burst_id(&want, k);
	return swim_id_eq(id, &want);
}

struct burst_count {
	size_t observer;
	size_t news, deaths;
};

static void on_burst(void *ctx, struct sim *sim, size_t observer,
		     const struct swim_event *ev)
{
	struct burst_count *b = ctx;

	(void)sim;
	if (observer != b->observer || !is_burst_id(&ev->id))
		return;
	b->news += (ev->what & SWIM_EV_NEW) != 0;
	b->deaths += (ev->what & SWIM_EV_STATUS) && ev->status == SWIM_DEAD;
}

/* Datagrams in the burst: what the driver reads before draining
 * (gossip.c, GOSSIP_RECV_BATCH). */
#define BURST_DATAGRAMS 64

/* Sends node `obs` BURST_DATAGRAMS gossip datagrams from node `from`,
 * filled with records of burst members 0, 1, ... at status `st`;
 * returns how many members they name. */
static uint32_t send_burst(struct sim *sim, const struct sim_config *cfg,
			   size_t obs, size_t from, enum swim_status st)
{
	struct swim_encoder *e = malloc(sizeof(*e));
	struct swim_addr src = sim_addr(from);
	uint8_t buf[1400];
	uint32_t k = 0;

	for (int dg = 0; dg < BURST_DATAGRAMS; dg++) {
		struct swim_header h;
		int len, rc;

		memset(&h, 0, sizeof(h));
		h.type = SWIM_MSG_GOSSIP;
		h.seq = 1000 + (uint64_t)dg;
		h.sender = *sim_id(sim, from);
		h.sender_addr = src;
		h.sender_incarnation =
		    swim_self_incarnation(sim_swim(sim, from));
		SIM_ASSERT(swim_encoder_begin(e, cfg->swim.cluster_id, &h,
					      cfg->swim.mtu) == 0);
		do {
			struct swim_record r;

			memset(&r, 0, sizeof(r));
			burst_id(&r.id, k);
			r.addr.ip = 0x0b000000 + k;
			r.addr.port = SIM_PORT;
			r.status = st;
			rc = swim_encoder_add(e, &r);
			k += rc == 0;
		} while (rc == 0);
		len = swim_encoder_finish(e, buf, sizeof(buf));
		SIM_ASSERT(len > 0);
		SIM_ASSERT(sim_inject(sim, obs, &src, buf, (size_t)len) == 0);
	}
	free(e);
	return k;
}

/*
 * A node stalls while BURST_DATAGRAMS full gossip datagrams wait for it,
 * each introducing as many new members as fit; it then reads them as the
 * driver does, `batch` before each drain. Then the same again, declaring
 * them all DEAD. Every change must come out as an event: the old queue
 * (1,024 events at most) dropped two thirds of each wave with batch 64.
 */
static void burst_case(unsigned batch)
{
	const size_t n = 2, obs = 0, from = 1;
	struct sim_config cfg;
	struct sim *sim = NULL;
	struct burst_count b = {.observer = obs};
	struct swim_stats st;
	uint32_t k = 0, k2 = 0;

	sim_config_defaults(&cfg, test_seed(25), n);
	cfg.batch = batch;
	SIM_ASSERT(sim_new(&cfg, &sim) == 0);
	SIM_ASSERT(sim_bootstrap(sim, n) == 0);
	SIM_ASSERT(
	    sim_run_until_cond(sim, sim_now(sim) + 10, 0.1, sim_drained, NULL));
	sim_set_event_hook(sim, on_burst, &b);
	for (int wave = 0; wave < 2; wave++) {
		sim_pause(sim, obs);
		if (wave == 0)
			k = send_burst(sim, &cfg, obs, from, SWIM_ALIVE);
		else
			k2 = send_burst(sim, &cfg, obs, from, SWIM_DEAD);
		sim_run_for(sim, 0.01); /* they arrive and wait */
		sim_resume(sim, obs);
	}
	swim_stats_get(sim_swim(sim, obs), &st);
	printf("    batch %u: %u new members in %d datagrams: %zu NEW "
	       "events; %u of them declared DEAD: %zu DEAD events; %" PRIu64
	       " dropped\n",
	       batch, k, BURST_DATAGRAMS, b.news, k2, b.deaths,
	       st.dropped_events);
	SIM_ASSERT(k > 1024 && k2 > 1024 && k2 <= k);
	SIM_ASSERT(b.news == k);
	SIM_ASSERT(b.deaths == k2);
	SIM_ASSERT(st.dropped_events == 0);
	sim_free(sim);
}

/* Pops every event of s; returns how many were about `id`, the last of
 * them in *last. */
static size_t pop_about(struct swim *s, const struct swim_id *id,
			struct swim_event *last)
{
	struct swim_event ev;
	size_t n = 0;

	while (swim_pop_event(s, &ev)) {
		if (swim_id_eq(&ev.id, id)) {
			*last = ev;
			n++;
		}
	}
	return n;
}

/*
 * The event queue merges a member's changes until the application pops
 * them: one event, the latest state, the status the application last saw
 * as prev_status. A member reaped before the application heard of it
 * yields nothing; one it knew yields FORGOTTEN even after it left the
 * table (and swim_free() frees what is still queued: ASan checks).
 */
static void test_event_merge(void **state)
{
	struct swim_config cfg;
	struct swim *s;
	struct swim_id sender, a, b;
	struct swim_record r;
	struct swim_event ev;
	struct swim_stats st;
	double t;

	(void)state;
	lone_config(&cfg);
	s = lone_new(&cfg);
	fill_id(&sender, 60);
	fill_id(&a, 61);
	fill_id(&b, 62);
	memset(&r, 0, sizeof(r));
	r.addr.ip = 0x0a000042;
	r.addr.port = 7946;
	r.id = a;
	r.incarnation = 5;
	r.status = SWIM_ALIVE;
	inject(s, &sender, 1, &r, 0.1);
	r.status = SWIM_SUSPECT;
	inject(s, &sender, 1, &r, 0.2);
	/* New and suspect: one event. */
	assert_int_equal(pop_about(s, &a, &ev), 1);
	assert_true(ev.what & SWIM_EV_NEW);
	assert_int_equal(ev.status, SWIM_SUSPECT);
	assert_int_equal(ev.prev_status, SWIM_NONE);
	/* Dead, then reaped while its event waits: swim_free() releases
	 * the reaped member still queued (ASan checks). */
	r.status = SWIM_DEAD;
	inject(s, &sender, 1, &r, 0.3);
	for (t = 0.3; t < 0.3 + cfg.dead_reap_time + 1; t += 0.5)
		swim_tick(s, t);
	assert_int_equal(swim_member_status(s, &a), SWIM_NONE);
	swim_free(s);

	/* Known ALIVE, then dead and reaped before the next pop: one
	 * event, from the status last seen. b, new and dead and reaped
	 * without a pop in between: none. */
	s = lone_new(&cfg);
	r.status = SWIM_ALIVE;
	inject(s, &sender, 1, &r, 0.1);
	assert_int_equal(pop_about(s, &a, &ev), 1);
	r.status = SWIM_DEAD;
	inject(s, &sender, 1, &r, 0.2);
	r.id = b;
	r.status = SWIM_ALIVE;
	inject(s, &sender, 1, &r, 0.2);
	r.status = SWIM_DEAD;
	inject(s, &sender, 1, &r, 0.2);
	for (t = 0.2; t < 0.2 + cfg.dead_reap_time + 1; t += 0.5)
		swim_tick(s, t);
	assert_int_equal(swim_member_status(s, &b), SWIM_NONE);
	r.id = a; /* learned again once forgotten: a new member */
	r.incarnation = 6;
	r.status = SWIM_ALIVE;
	inject(s, &sender, 1, &r, t);
	{
		struct swim_event evs[2];
		size_t na = 0;

		while (swim_pop_event(s, &ev)) {
			assert_false(swim_id_eq(&ev.id, &b));
			if (swim_id_eq(&ev.id, &a) && na < 2)
				evs[na++] = ev;
		}
		assert_int_equal(na, 2);
		ev = evs[1];
		assert_true(ev.what & SWIM_EV_NEW);
		assert_true(ev.incarnation == 6);
		ev = evs[0];
	}
	swim_stats_get(s, &st);
	assert_int_equal(st.dropped_events, 0);
	assert_int_equal(ev.what, SWIM_EV_STATUS | SWIM_EV_FORGOTTEN);
	assert_int_equal(ev.prev_status, SWIM_ALIVE);
	assert_int_equal(ev.status, SWIM_DEAD);
	swim_free(s);
}

static void test_event_burst(void **state)
{
	(void)state;
	burst_case(1);
	burst_case(BURST_DATAGRAMS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_proto_roundtrip),
	    cmocka_unit_test(test_proto_truncated_and_corrupt),
	    cmocka_unit_test(test_proto_mtu_bound),
	    cmocka_unit_test(test_foreign_datagrams_dropped),
	    cmocka_unit_test(test_impossible_incarnations),
	    cmocka_unit_test(test_second_direct_ping),
	    cmocka_unit_test(test_trace_and_determinism),
	    cmocka_unit_test(test_small_cluster_forms),
	    cmocka_unit_test(test_crash_detected_20),
	    cmocka_unit_test(test_crash_detected_100),
	    cmocka_unit_test(test_crash_detected_1000),
	    cmocka_unit_test(test_loss_no_false_positive),
	    cmocka_unit_test(test_partition_heals),
	    cmocka_unit_test(test_restart_rejoins),
	    cmocka_unit_test(test_graceful_leave),
	    cmocka_unit_test(test_dead_forgotten),
	    cmocka_unit_test(test_local_health),
	    cmocka_unit_test(test_refutation),
	    cmocka_unit_test(test_nacks),
	    cmocka_unit_test(test_suspicion_confirmations),
	    cmocka_unit_test(test_buddy_system),
	    cmocka_unit_test(test_anti_entropy_repair),
	    cmocka_unit_test(test_event_merge),
	    cmocka_unit_test(test_event_burst),
	};

	/* SWIM_TEST=<glob> runs only matching tests (with SWIM_SEED, to
	 * replay one failure); SWIM_SKIP=<glob> skips matching ones (seed
	 * sweeps without the 1,000-member run). */
	if (getenv("SWIM_TEST") != NULL)
		cmocka_set_test_filter(getenv("SWIM_TEST"));
	if (getenv("SWIM_SKIP") != NULL)
		cmocka_set_skip_filter(getenv("SWIM_SKIP"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
