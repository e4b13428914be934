/*
 * test_dump — the pure parts of tools/dump: the datagram walk (wire.c),
 * the --type/--peer filters (filter.c) and the JSON output (render.c).
 *
 * The walk must agree with the node's decoder: for every truncated prefix,
 * for random mutations of real datagrams and for random bytes, wire_check()
 * and swim_decode() return the same code. Mutation tests print their seed
 * on failure; DUMP_SEED=<n> reruns one.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxystone/json.h"
#include "proxystone/swim_proto.h"

/* The tool's modules are not in libproxystone.a: build them in. */
#include "../../tools/dump/filter.c"
#include "../../tools/dump/render.c"
#include "../../tools/dump/wire.c"

#define CLUSTER "test-cluster"
/* Mutations per sample datagram; random buffers in all. */
#define MUTATIONS 4000
#define RANDOM_BUFFERS 20000

static struct swim_encoder enc;
static struct swim_decoder dec;
static struct swim_packet pkt;

/* xorshift64*: deterministic from a seed. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t seed_from_env(uint64_t dflt)
{
	const char *s = getenv("DUMP_SEED");

	return s ? strtoull(s, NULL, 10) : dflt;
}

static void make_id(struct swim_id *id, uint8_t b)
{
	for (int i = 0; i < SWIM_ID_LEN; i++)
		id->b[i] = (uint8_t)(b + i);
}

/* Sample datagrams of every shape the node sends. */
static size_t sample(int which, uint8_t *out, size_t cap)
{
	static uint8_t meta[64];
	struct swim_header h = {0};
	struct swim_record r = {0};
	size_t mlen = 0;
	int rc;

	{
		Ps__NodeMeta m = PS__NODE_META__INIT;
		m.role = "worker";
		m.url = "http://127.0.0.1:4402";
		m.has_serving = true;
		m.serving = true;
		mlen = ps__node_meta__pack(&m, meta);
	}
	make_id(&h.sender, 0x10);
	h.sender_addr.ip = 0x7f000001;
	h.sender_addr.port = 5401;
	h.sender_incarnation = 3;
	h.seq = 1234567;
	switch (which) {
	case 0: /* join ping, no records */
		h.type = SWIM_MSG_PING;
		break;
	case 1: /* ack with piggybacked records */
		h.type = SWIM_MSG_ACK;
		break;
	case 2: /* ping-req */
		h.type = SWIM_MSG_PING_REQ;
		h.has_target = true;
		make_id(&h.target, 0x30);
		h.target_addr.ip = 0x7f000001;
		h.target_addr.port = 5403;
		h.want_nack = true;
		break;
	default: /* sync-req with digest */
		h.type = SWIM_MSG_SYNC_REQ;
		h.cursor = 7;
		h.has_digest = true;
		for (int i = 0; i < SWIM_DIGEST_RANGES; i++)
			h.digest[i] = (uint32_t)(i * 0x01010101u);
		break;
	}
	rc = swim_encoder_begin(&enc, CLUSTER, &h, 1400);
	assert_int_equal(rc, 0);
	for (int i = 0; which != 0 && i < 3; i++) {
		memset(&r, 0, sizeof(r));
		make_id(&r.id, (uint8_t)(0x40 + 0x10 * i));
		r.addr.ip = 0x7f000001;
		r.addr.port = (uint16_t)(5402 + i);
		r.incarnation = (uint64_t)i + 1;
		r.status = i == 1 ? SWIM_SUSPECT : SWIM_ALIVE;
		if (i == 1) {
			r.has_from = true;
			make_id(&r.from, 0x10);
		} else {
			r.meta = meta;
			r.meta_len = mlen;
		}
		assert_int_equal(swim_encoder_add(&enc, &r), 0);
	}
	rc = swim_encoder_finish(&enc, out, cap);
	assert_true(rc > 0);
	return (size_t)rc;
}

/* Both verdicts, which must agree; returns the code. */
static int verdicts(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	struct wire_info wi;
	int a = wire_check(buf, len, CLUSTER, &wi, err, errlen);
	int b = swim_decode(&dec, CLUSTER, buf, len, &pkt);

	swim_decoder_release(&dec);
	if (a != b)
		fail_msg("wire_check says %d (%s), swim_decode says %d", a, err,
			 b);
	if (a != 0 && err[0] == '\0')
		fail_msg("rejected without a message");
	return a;
}

static void test_samples_valid(void **state)
{
	uint8_t buf[1500];
	char err[WIRE_ERR_MAX];
	struct wire_info wi;

	(void)state;
	for (int w = 0; w < 4; w++) {
		size_t len = sample(w, buf, sizeof(buf));

		assert_int_equal(verdicts(buf, len, err, sizeof(err)), 0);
		assert_int_equal(
		    wire_check(buf, len, NULL, &wi, err, sizeof(err)), 0);
		assert_int_equal(wi.version, SWIM_PROTO_VERSION);
		assert_int_equal(wi.cluster_len, strlen(CLUSTER));
		assert_memory_equal(wi.cluster, CLUSTER, strlen(CLUSTER));
		assert_int_equal(wi.length, len);
		assert_int_equal(wi.n_updates, w == 0 ? 0 : 3);
		assert_int_equal(wi.n_unknown, 0);
	}
}

static void test_every_prefix_is_truncated(void **state)
{
	uint8_t buf[1500];
	char err[WIRE_ERR_MAX];

	(void)state;
	for (int w = 0; w < 4; w++) {
		size_t len = sample(w, buf, sizeof(buf));

		for (size_t n = 0; n < len; n++) {
			int rc = verdicts(buf, n, err, sizeof(err));

			assert_int_equal(rc, -EBADMSG);
			if (n == 0)
				assert_non_null(strstr(err, "empty"));
			else if (!strstr(err, "truncated"))
				fail_msg("prefix %zu of sample %d: '%s'", n, w,
					 err);
		}
	}
}

static void test_mutations_agree(void **state)
{
	uint8_t orig[1500], buf[1600];
	char err[WIRE_ERR_MAX];
	uint64_t seed = seed_from_env(20240115);
	size_t outcome[4] = {0}; /* valid, malformed, version, cluster */

	(void)state;
	for (int w = 0; w < 4; w++) {
		size_t olen = sample(w, orig, sizeof(orig));

		for (int k = 0; k < MUTATIONS; k++) {
			size_t len = olen;
			int edits;

			rng_state = seed + (uint64_t)w * 1000003 + (uint64_t)k;
			if (rng_state == 0)
				rng_state = 1;
			edits = 1 + (int)(rnd() % 3);
			memcpy(buf, orig, olen);
			for (int e = 0; e < edits; e++) {
				size_t at = rnd() % len;

				switch (rnd() % 4) {
				case 0:
					buf[at] ^= (uint8_t)(1u << (rnd() % 8));
					break;
				case 1:
					buf[at] = (uint8_t)rnd();
					break;
				case 2: /* delete a byte */
					memmove(buf + at, buf + at + 1,
						len - at - 1);
					len--;
					break;
				default: /* insert a byte */
					memmove(buf + at + 1, buf + at,
						len - at);
					buf[at] = (uint8_t)rnd();
					len++;
					break;
				}
			}
			switch (verdicts(buf, len, err, sizeof(err))) {
			case 0:
				outcome[0]++;
				break;
			case -EBADMSG:
				outcome[1]++;
				break;
			case -EPROTONOSUPPORT:
				outcome[2]++;
				break;
			default:
				outcome[3]++;
				break;
			}
		}
	}
	/* The mutations reach every verdict, or they test little. */
	for (int i = 0; i < 4; i++)
		if (outcome[i] == 0)
			fail_msg(
			    "no mutation gave verdict %d (%zu %zu %zu %zu)", i,
			    outcome[0], outcome[1], outcome[2], outcome[3]);
}

static void test_random_bytes_agree(void **state)
{
	uint8_t buf[2048];
	char err[WIRE_ERR_MAX];

	(void)state;
	rng_state = seed_from_env(77);
	for (int k = 0; k < RANDOM_BUFFERS; k++) {
		size_t len = rnd() % sizeof(buf);

		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rnd();
		/* Bias toward tags the decoder knows so the walk gets far. */
		if (len > 0 && k % 2)
			buf[0] = 0x08;
		assert_int_not_equal(verdicts(buf, len, err, sizeof(err)), 0);
	}
}

/* Packs p with a correct length field; returns the size. */
static size_t pack_with_length(Gossip__Packet *p, uint8_t *out)
{
	p->length = 1; /* a non-zero fixed32 always takes 5 bytes */
	p->length = (uint32_t)gossip__packet__get_packed_size(p);
	return gossip__packet__pack(p, out);
}

static void expect(const uint8_t *buf, size_t len, int code, const char *word)
{
	char err[WIRE_ERR_MAX];
	int rc = verdicts(buf, len, err, sizeof(err));

	if (rc != code || strstr(err, word) == NULL)
		fail_msg("expected %d with '%s', got %d: '%s'", code, word, rc,
			 err);
}

static void test_precise_messages(void **state)
{
	static uint8_t buf[SWIM_MTU_MAX + 16];
	static Gossip__Member ms[SWIM_PACKET_RECORDS_MAX + 1];
	static Gossip__Member *mp[SWIM_PACKET_RECORDS_MAX + 1];
	uint8_t sid[SWIM_ID_LEN] = {1, 2,  3,  4,  5,  6,  7,  8,
				    9, 10, 11, 12, 13, 14, 15, 16};
	Gossip__Packet p = GOSSIP__PACKET__INIT;
	size_t len;

	(void)state;
	p.version = SWIM_PROTO_VERSION;
	p.cluster.data = (uint8_t *)CLUSTER;
	p.cluster.len = strlen(CLUSTER);
	p.type = GOSSIP__MSG_TYPE__MSG_PING;
	p.sender_id.data = sid;
	p.sender_id.len = SWIM_ID_LEN;
	p.sender_port = 5401;
	len = pack_with_length(&p, buf);
	expect(buf, len, 0, "");

	/* The length field says one thing, the datagram another. */
	buf[len] = 0;
	expect(buf, len + 1, -EBADMSG, "field number 0");
	p.length = (uint32_t)len + 10;
	len = gossip__packet__pack(&p, buf);
	expect(buf, len, -EBADMSG, "10 missing");
	p.length = (uint32_t)len - 2;
	len = gossip__packet__pack(&p, buf);
	expect(buf, len, -EBADMSG, "2 trailing bytes");

	p.version = 2;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EPROTONOSUPPORT, "protocol version 2");
	p.version = SWIM_PROTO_VERSION;

	p.cluster.data = (uint8_t *)"other";
	p.cluster.len = 5;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EACCES, "\"other\", expected \"" CLUSTER "\"");
	p.cluster.data = (uint8_t *)CLUSTER;
	p.cluster.len = strlen(CLUSTER);

	p.type = 9;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EBADMSG, "message type 9");
	p.type = GOSSIP__MSG_TYPE__MSG_PING_REQ;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EBADMSG, "ping-req without target_id");
	p.type = GOSSIP__MSG_TYPE__MSG_PING;

	p.sender_id.len = 3;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EBADMSG, "sender_id is 3 bytes");
	p.sender_id.len = SWIM_ID_LEN;
	p.sender_port = 70000;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EBADMSG, "sender_port 70000");
	p.sender_port = 5401;

	p.digest.data = sid;
	p.digest.len = 8;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EBADMSG, "digest is 8 bytes");
	p.digest.len = 0;

	for (int i = 0; i <= SWIM_PACKET_RECORDS_MAX; i++) {
		gossip__member__init(&ms[i]);
		ms[i].id.data = sid;
		ms[i].id.len = SWIM_ID_LEN;
		ms[i].port = 1;
		mp[i] = &ms[i];
	}
	p.updates = mp;
	p.n_updates = SWIM_PACKET_RECORDS_MAX + 1;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EBADMSG, "too many records: 65 updates");

	p.n_updates = 2;
	ms[1].status = GOSSIP__STATUS__STATUS_DEAD;
	ms[1].meta.data = sid;
	ms[1].meta.len = 4;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EBADMSG, "updates[1]");
	expect(buf, len, -EBADMSG, "dead record carries 4 bytes of meta");
	ms[1].meta.len = 0;
	ms[1].status = 7;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EBADMSG, "status 7");
	ms[1].status = GOSSIP__STATUS__STATUS_SUSPECT;
	ms[1].suspect_from.data = sid;
	ms[1].suspect_from.len = 5;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EBADMSG, "suspect_from is 5 bytes");
	ms[1].suspect_from.len = 0;
	ms[0].id.len = 0;
	len = pack_with_length(&p, buf);
	expect(buf, len, -EBADMSG, "updates[0] at offset");
	expect(buf, len, -EBADMSG, "id missing");
	ms[0].id.len = SWIM_ID_LEN;
	len = pack_with_length(&p, buf);
	expect(buf, len, 0, "");

	/* Structure: a group wire type, and a known field's wrong type. */
	buf[0] = 0x0b; /* field 1, wire type 3 */
	expect(buf, len, -EBADMSG, "wire type 3");
	buf[0] = 0x0d; /* field 1 (version) as fixed32 */
	expect(buf, len, -EBADMSG, "expected 0 (varint)");

	/* Larger than any datagram. */
	memset(buf, 0, sizeof(buf));
	expect(buf, SWIM_MTU_MAX + 1, -EBADMSG, "longer than any UDP");
}

static void test_unknown_fields_are_counted(void **state)
{
	uint8_t buf[1600];
	char err[WIRE_ERR_MAX];
	struct wire_info wi;
	size_t len = sample(1, buf, sizeof(buf));
	uint8_t extra[] = {0xa8, 0x06, 0x05}; /* field 101, varint 5 */
	uint32_t nlen = (uint32_t)(len + sizeof(extra));

	(void)state;
	memcpy(buf + len, extra, sizeof(extra));
	/* Patch the length field: find tag 0x75 (field 14, fixed32). */
	for (size_t i = 0; i + 5 <= len; i++) {
		if (buf[i] == 0x75 && buf[i + 1] == (uint8_t)len &&
		    buf[i + 2] == (uint8_t)(len >> 8)) {
			buf[i + 1] = (uint8_t)nlen;
			buf[i + 2] = (uint8_t)(nlen >> 8);
			break;
		}
	}
	assert_int_equal(verdicts(buf, nlen, err, sizeof(err)), 0);
	assert_int_equal(wire_check(buf, nlen, CLUSTER, &wi, err, sizeof(err)),
			 0);
	assert_int_equal(wi.n_unknown, 1);
}

static void test_filters(void **state)
{
	struct filter f;
	char err[256];
	Ps__Trace t = PS__TRACE__INIT;

	(void)state;
	filter_init(&f);
	assert_int_equal(filter_add_types(&f, "ping,ACK", err, sizeof(err)), 0);
	assert_int_equal(filter_add_types(&f, "ping_req", err, sizeof(err)), 0);
	assert_int_equal(filter_add_types(&f, "pong", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "'pong'"));
	assert_int_equal(filter_add_types(&f, "ping,,ack", err, sizeof(err)),
			 -EINVAL);
	t.peer = "127.0.0.1:5402";
	t.type = "ack";
	assert_true(filter_match(&f, &t));
	t.type = "ping-req";
	assert_true(filter_match(&f, &t));
	t.type = "gossip";
	assert_false(filter_match(&f, &t));
	t.has_error = true;
	t.error = -EBADMSG;
	assert_false(filter_match(&f, &t));
	assert_int_equal(filter_add_types(&f, "error", err, sizeof(err)), 0);
	assert_true(filter_match(&f, &t));
	t.has_error = false;

	filter_init(&f);
	assert_int_equal(
	    filter_set_peer(&f, "127.0.0.1:5402", err, sizeof(err)), 0);
	assert_true(filter_match(&f, &t));
	t.peer = "127.0.0.1:5403";
	assert_false(filter_match(&f, &t));
	assert_int_equal(filter_set_peer(&f, ":5403", err, sizeof(err)), 0);
	assert_true(filter_match(&f, &t));
	assert_int_equal(filter_set_peer(&f, "127.0.0.1", err, sizeof(err)), 0);
	assert_true(filter_match(&f, &t));
	assert_int_equal(filter_set_peer(&f, "10.0.0.1", err, sizeof(err)), 0);
	assert_false(filter_match(&f, &t));
	assert_int_equal(
	    filter_set_peer(&f, "127.0.0.1:99999", err, sizeof(err)), -EINVAL);
	assert_int_equal(filter_set_peer(&f, "", err, sizeof(err)), -EINVAL);
}

static void assert_json_line(const struct buf *b)
{
	struct json_doc d;
	char err[128];

	assert_true(b->len > 0);
	assert_int_equal(b->base[b->len - 1], '\n');
	assert_null(memchr(b->base, '\n', b->len - 1));
	if (json_parse(&d, b->base, b->len - 1, err, sizeof(err)) != 0)
		fail_msg("not JSON (%s): %s", err, b->base);
	json_doc_fini(&d);
}

static void test_render_is_valid_json(void **state)
{
	Ps__Trace t = PS__TRACE__INIT;
	Ps__TraceUpdate u = PS__TRACE_UPDATE__INIT, *up = &u;
	Ps__Reply r = PS__REPLY__INIT;
	Ps__Member m = PS__MEMBER__INIT, *mp = &m;
	Ps__NodeMeta meta = PS__NODE_META__INIT;
	Ps__Gossip g = PS__GOSSIP__INIT;
	uint8_t dgram[1500];
	struct wire_info wi;
	char err[WIRE_ERR_MAX];
	struct buf b;

	(void)state;
	buf_init(&b, 1 << 20);
	t.time_ms = 1700000000123;
	t.peer = "127.0.0.1:5402";
	t.type = "ping\n\x01\xff";
	t.has_seq = true;
	t.seq = UINT64_MAX;
	t.size = 61;
	u.id = "0123456789abcdef";
	u.addr = "127.0.0.1:5403";
	u.status = "alive";
	u.incarnation = 2;
	t.updates = &up;
	t.n_updates = 1;
	assert_int_equal(render_trace_json(&t, &b), 0);
	assert_json_line(&b);
	buf_reset(&b);
	assert_int_equal(render_trace_text(&t, &b), 0);
	assert_null(strchr(b.base, '\x01'));
	assert_non_null(strstr(b.base, "01234567 alive 2"));
	assert_non_null(strstr(b.base, "seq 18446744073709551615"));
	buf_reset(&b);
	assert_int_equal(render_dropped_json(5, &b), 0);
	assert_json_line(&b);
	buf_reset(&b);

	meta.role = "coordinator";
	m.id = "id-self";
	m.addr = "127.0.0.1:5401";
	m.status = "alive";
	m.meta = &meta;
	m.has_is_self = true;
	m.is_self = true;
	r.members = &mp;
	r.n_members = 1;
	r.self_id = "id-self";
	g.addr = "127.0.0.1:5401";
	g.cluster_id = "c\"x";
	r.gossip = &g;
	assert_int_equal(render_members_json(&r, &b), 0);
	assert_json_line(&b);
	buf_reset(&b);
	assert_int_equal(render_members_text(&r, &b), 0);
	assert_non_null(strstr(b.base, "coordinator"));
	buf_reset(&b);
	r.gossip = NULL;
	m.meta = NULL;
	assert_int_equal(render_members_text(&r, &b), 0);
	buf_reset(&b);

	for (int w = 0; w < 4; w++) {
		size_t len = sample(w, dgram, sizeof(dgram));

		assert_int_equal(
		    wire_check(dgram, len, NULL, &wi, err, sizeof(err)), 0);
		assert_int_equal(swim_decode(&dec, CLUSTER, dgram, len, &pkt),
				 0);
		assert_int_equal(render_packet_json(&pkt, &wi, len, &b), 0);
		assert_json_line(&b);
		buf_reset(&b);
		assert_int_equal(render_packet_text(&pkt, &wi, len, &b), 0);
		buf_reset(&b);
		swim_decoder_release(&dec);
		assert_int_not_equal(
		    wire_check(dgram, len - 1, NULL, &wi, err, sizeof(err)), 0);
		assert_int_equal(
		    render_malformed_json(len - 1, &wi, -EBADMSG, err, &b), 0);
		assert_json_line(&b);
		buf_reset(&b);
	}
	buf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_samples_valid),
	    cmocka_unit_test(test_every_prefix_is_truncated),
	    cmocka_unit_test(test_mutations_agree),
	    cmocka_unit_test(test_random_bytes_agree),
	    cmocka_unit_test(test_precise_messages),
	    cmocka_unit_test(test_unknown_fields_are_counted),
	    cmocka_unit_test(test_filters),
	    cmocka_unit_test(test_render_is_valid_json),
	};

	swim_decoder_init(&dec);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
