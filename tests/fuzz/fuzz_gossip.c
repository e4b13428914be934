/*
 * fuzz_gossip — gossip datagrams: the decoder (swim_proto), the SWIM state
 * machine fed hostile datagrams (swim), and the sealed-datagram opener
 * (gossip_crypto).
 *
 * Input: one mode byte, then
 *   mode bit 0 clear: one datagram. It is decoded on its own, opened with
 *     the fixture's keyring (and, when that succeeds, the plaintext is what
 *     the node goes on with, as src/membership/gossip.c does), sealed and
 *     opened again (must round-trip), and received by a fresh instance from
 *     peer (mode >> 2);
 *   mode bit 0 set: a conversation (see gossip_fixture.h) replayed into a
 *     fresh instance; each datagram is also decoded on its own.
 * Then the instance runs its timers for FUZZ_TAIL_SECONDS (mode bit 1: after
 * a graceful swim_leave), and once more past dead_reap_time, so whatever
 * the datagrams planted is probed, suspected, refuted, synced and reaped.
 *
 * Every instance starts from the same state (gossip_fixture.h), so a crash
 * reproduces from its input alone.
 *
 * Checks beyond the sanitizers: every datagram the instance sends decodes
 * with our own cluster id and fits the MTU; every event and member record
 * is in range; the status counters add up to the member count; the trace
 * hook only sees records that decoded.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "gossip_fixture.h"
#include "proxystone/gossip_crypto.h"
#include "proxystone/swim.h"
#include "proxystone/swim_proto.h"

/* Seconds of timers run after the last datagram: past a probe period, a
 * probe timeout and a suspicion at this cluster size, so a hostile record
 * gets to act on the instance (suspect, refute, sync, reap). Each second
 * is ticked in FUZZ_TAIL_STEP slices. */
#define FUZZ_TAIL_SECONDS 30
#define FUZZ_TAIL_STEP 0.25

static struct gossip_keyring ring;
static struct swim_decoder *dec;
static uint8_t pkt_buf[SWIM_MTU_MAX];
static uint8_t open_buf[SWIM_MTU_MAX + GOSSIP_SEAL_OVERHEAD];
static uint8_t seal_buf[SWIM_MTU_MAX + GOSSIP_SEAL_OVERHEAD];

static void die(const char *what)
{
	fprintf(stderr, "fuzz_gossip: %s\n", what);
	abort();
}

static void touch(const void *p, size_t n)
{
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < n; i++)
		sink ^= ((const uint8_t *)p)[i];
	(void)sink;
}

static void check_record(const struct swim_record *r)
{
	if ((unsigned)r->status > SWIM_LEFT || r->meta_len > SWIM_META_MAX ||
	    (r->meta_len && !r->meta) ||
	    (r->meta_len && r->status != SWIM_ALIVE))
		die("decoded record out of its bounds");
	touch(r->meta, r->meta_len);
}

static void check_packet(const struct swim_packet *p)
{
	if (p->hdr.type < SWIM_MSG_PING || p->hdr.type > SWIM_MSG_TYPE_MAX)
		die("decoded packet type out of range");
	if (p->hdr.type == SWIM_MSG_PING_REQ && !p->hdr.has_target)
		die("ping-req without a target decoded");
	if (p->n_records > SWIM_PACKET_RECORDS_MAX)
		die("too many records decoded");
	for (size_t i = 0; i < p->n_records; i++)
		check_record(&p->records[i]);
	char idtext[SWIM_ID_STR_LEN];
	swim_id_format(&p->hdr.sender, idtext);
	if (strlen(idtext) != SWIM_ID_STR_LEN - 1)
		die("swim_id_format");
}

/* swim_decode on its own: a result is either an error or in bounds. */
static void decode_alone(const uint8_t *b, size_t n)
{
	static struct swim_packet p;
	int rc = swim_decode(dec, FIXTURE_CLUSTER, b, n, &p);
	if (rc == 0)
		check_packet(&p);
	else if (rc != -EBADMSG && rc != -EPROTONOSUPPORT && rc != -EACCES)
		die("swim_decode: unexpected error");
	swim_decoder_release(dec);
	/* another cluster's view of the same bytes */
	rc = swim_decode(dec, "", b, n, &p);
	if (rc == 0)
		check_packet(&p);
	swim_decoder_release(dec);
}

static void trace(void *ctx, const struct swim_trace *t)
{
	(void)ctx;
	if (!t->sent && t->error && t->hdr)
		die("trace: a dropped datagram with a header");
	if (t->hdr) {
		if (t->n_records > SWIM_PACKET_RECORDS_MAX ||
		    (t->n_records && !t->records))
			die("trace: records out of bounds");
		for (size_t i = 0; i < t->n_records; i++)
			check_record(&t->records[i]);
	}
}

/* Empties both queues; every datagram we send must be one we accept. */
static void drain(struct swim *s, const struct swim_config *cfg)
{
	struct swim_addr to;
	size_t len = sizeof(pkt_buf);
	while (swim_pop_packet(s, &to, pkt_buf, &len)) {
		static struct swim_packet p;
		if (len == 0 || len > cfg->mtu)
			die("sent a datagram larger than the MTU");
		int rc = swim_decode(dec, cfg->cluster_id, pkt_buf, len, &p);
		if (rc) {
			fprintf(stderr, "swim_decode of our own datagram: %d\n",
				rc);
			die("sent a datagram that does not decode");
		}
		check_packet(&p);
		swim_decoder_release(dec);
		len = sizeof(pkt_buf);
	}
	struct swim_event ev;
	while (swim_pop_event(s, &ev)) {
		if ((unsigned)ev.status > SWIM_LEFT ||
		    (unsigned)ev.prev_status > SWIM_NONE ||
		    ev.meta_len > SWIM_META_MAX || !ev.what)
			die("event out of range");
		if (swim_id_eq(&ev.id, swim_self_id(s)))
			die("event about ourselves");
	}
}

/* `left`: swim_leave() was called, so we are LEFT in our own table. */
static void check_state(struct swim *s, bool left)
{
	struct swim_stats st;
	swim_stats_get(s, &st);
	if (st.members != swim_member_count(s) ||
	    st.alive + st.suspect + st.dead + st.left != st.members)
		die("status counts do not add up to the member count");
	if (st.members < 1 || st.members > SWIM_MEMBERS_MAX)
		die("member count out of range");
	size_t selves = 0;
	for (size_t i = 0; i < st.members; i++) {
		struct swim_member_info mi;
		if (swim_member_get(s, i, &mi))
			die("swim_member_get failed inside the count");
		if ((unsigned)mi.status > SWIM_LEFT ||
		    mi.meta_len > SWIM_META_MAX)
			die("member out of range");
		if (swim_member_status(s, &mi.id) != mi.status)
			die("swim_member_status disagrees with the table");
		selves += mi.is_self;
	}
	if (selves != 1)
		die("not exactly one self in the table");
	if (swim_member_status(s, swim_self_id(s)) !=
	    (left ? SWIM_LEFT : SWIM_ALIVE))
		die(left ? "we are not LEFT in our own table after leaving"
			 : "we are not alive in our own table");
}

static void run_tail(struct swim *s, const struct swim_config *cfg, double now,
		     bool leave)
{
	if (leave) {
		swim_leave(s, now);
		drain(s, cfg);
	}
	for (double t = 0; t < FUZZ_TAIL_SECONDS; t += FUZZ_TAIL_STEP) {
		now += FUZZ_TAIL_STEP;
		fixture_tick(s, now);
		drain(s, cfg);
	}
	check_state(s, leave);
	/* a late tick catches up: DEAD and LEFT members are forgotten */
	now += cfg->dead_reap_time + 1;
	fixture_tick(s, now);
	drain(s, cfg);
	now += FUZZ_TAIL_STEP;
	fixture_tick(s, now);
	drain(s, cfg);
}

static void one_datagram(const uint8_t *b, size_t n, size_t from, bool leave)
{
	struct swim_config cfg;
	fixture_config(&cfg);
	decode_alone(b, n);

	/* sealed? the node opens it first and goes on with the plaintext */
	size_t olen = 0;
	struct gossip_seal_hdr hdr, back_hdr;
	int orc =
	    gossip_open(&ring, b, n, &hdr, open_buf, sizeof(open_buf), &olen);
	if (orc == 0) {
		if (olen + GOSSIP_SEAL_OVERHEAD != n)
			die("gossip_open: plaintext length");
		b = open_buf;
		n = olen;
		decode_alone(b, n);
	} else if (orc != -EBADMSG) {
		die("gossip_open: unexpected error");
	}
	/* seal + open round trip of whatever it is */
	size_t slen = 0;
	if (n <= SWIM_MTU_MAX) {
		struct gossip_seal_hdr mine = {
		    .boot = n, .seq = n * 7, .sent_ms = n * 300};
		memset(mine.sender, 0x5a, sizeof(mine.sender));
		if (gossip_seal(&ring, &mine, b, n, seal_buf, sizeof(seal_buf),
				&slen))
			die("gossip_seal refused a datagram");
		static uint8_t back[SWIM_MTU_MAX + GOSSIP_SEAL_HDR_LEN];
		size_t blen = 0;
		if (gossip_open(&ring, seal_buf, slen, &back_hdr, back,
				sizeof(back), &blen) ||
		    blen != n || memcmp(back, b, n) ||
		    memcmp(&back_hdr, &mine, sizeof(mine)))
			die("seal + open does not round-trip");
		seal_buf[slen / 2] ^= 0x20;
		if (gossip_open(&ring, seal_buf, slen, &back_hdr, back,
				sizeof(back), &blen) != -EBADMSG)
			die("a tampered datagram opened");
	}

	struct swim *s = fixture_new(trace, NULL);
	if (!s)
		die("fixture_new");
	double now = FIXTURE_T0;
	drain(s, &cfg);
	now += FIXTURE_DT;
	fixture_tick(s, now);
	drain(s, &cfg);
	swim_recv(s, &fixture_peers[from % FIXTURE_NPEERS], b, n, now);
	drain(s, &cfg);
	check_state(s, false);
	run_tail(s, &cfg, now, leave);
	check_state(s, leave);
	swim_free(s);
}

static void conversation(const uint8_t *b, size_t n, bool leave)
{
	struct swim_config cfg;
	fixture_config(&cfg);
	struct swim *s = fixture_new(trace, NULL);
	if (!s)
		die("fixture_new");
	double now = FIXTURE_T0;
	drain(s, &cfg);
	while (n >= FIXTURE_RECORD_HDR) {
		unsigned dt = b[0], from = b[1];
		size_t len = (size_t)b[2] << 8 | b[3];
		b += FIXTURE_RECORD_HDR;
		n -= FIXTURE_RECORD_HDR;
		if (len > n)
			len = n;
		now += dt * FIXTURE_DT;
		fixture_tick(s, now);
		drain(s, &cfg);
		if (len) {
			decode_alone(b, len);
			swim_recv(s, &fixture_peers[from % FIXTURE_NPEERS], b,
				  len, now);
			drain(s, &cfg);
		}
		b += len;
		n -= len;
	}
	check_state(s, false);
	if (getenv("FUZZ_GOSSIP_SHOW")) {
		/* to check a recorded conversation replays as recorded */
		struct swim_stats st;
		swim_stats_get(s, &st);
		fprintf(stderr,
			"fuzz_gossip: %zu members (%zu alive, %zu suspect, "
			"%zu dead, %zu left) at t=%.2f\n",
			st.members, st.alive, st.suspect, st.dead, st.left,
			now - FIXTURE_T0);
	}
	run_tail(s, &cfg, now, leave);
	check_state(s, leave);
	swim_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		char err[256];
		if (gossip_keyring_parse(&ring, fixture_keys, err, sizeof(err)))
			die(err);
		dec = malloc(sizeof(*dec));
		if (!dec)
			die("out of memory");
		swim_decoder_init(dec);
		ready = true;
	}
	if (size < 1)
		return 0;
	bool leave = data[0] & 2;
	if (data[0] & 1)
		conversation(data + 1, size - 1, leave);
	else
		one_datagram(data + 1, size - 1, data[0] >> 2, leave);
	return 0;
}
