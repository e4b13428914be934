/*
 * gen_seeds — writes the generated part of the fuzz corpus:
 *
 *   corpus/fuzz_gossip/gen-*   real datagrams made by swim_proto's encoder
 *                              (one per input), the same sealed with the
 *                              fixture's keys, and recorded conversations:
 *                              the fixture instance (gossip_fixture.h) and
 *                              real swim peers gossiping on a virtual clock,
 *                              every datagram the fixture received saved in
 *                              the order and at the time it arrived, so the
 *                              fuzzer replays them into an identical state;
 *   corpus/fuzz_ipc/gen-*      real IPC frames (every Request kind, framed
 *                              by ipc_frame_append) and Reply payloads.
 *
 * Usage: gen_seeds CORPUS_DIR (run by `tests/fuzz/run --seeds`). The output
 * is deterministic (same sources, same files) except for the random nonces
 * of the sealed datagrams.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip_fixture.h"
#include "proto/ipc.pb-c.h"
#include "proxystone/buf.h"
#include "proxystone/gossip_crypto.h"
#include "proxystone/ipc.h"
#include "proxystone/swim.h"
#include "proxystone/swim_proto.h"

/* Largest seed written: the runner's -max_len for fuzz_gossip is 8192. */
#define SEED_MAX 8000

static const char *dir;

static void die(const char *what)
{
	fprintf(stderr, "gen_seeds: %s\n", what);
	exit(1);
}

static void write_seed(const char *target, const char *name, const void *data,
		       size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s/gen-%s", dir, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f))
		die(path);
	printf("%s (%zu bytes)\n", path, len);
}

/* ---- gossip: single datagrams ------------------------------------------ */

static struct swim_id id_of(const char *text)
{
	struct swim_id id;
	if (swim_id_parse(text, &id))
		die("bad id");
	return id;
}

static size_t node_meta(uint8_t *out, size_t cap, const char *role,
			const char *url)
{
	Ps__NodeMeta m;
	ps__node_meta__init(&m);
	m.role = (char *)role;
	m.url = (char *)url;
	m.has_serving = m.serving = true;
	m.has_load = true;
	m.load = 0.45;
	m.has_memory = true;
	m.memory = 0.68;
	m.has_connections = true;
	m.connections = 3;
	m.version = "0.1.0";
	m.platform = "linux";
	m.has_start_time_ms = true;
	m.start_time_ms = 1705314600000LL;
	m.cluster_id = "default-cluster";
	size_t n = ps__node_meta__get_packed_size(&m);
	if (n > cap)
		die("meta too big");
	return ps__node_meta__pack(&m, out);
}

static struct swim_encoder enc;

/* One datagram from peer 0 (mode byte 0: "from peer 0"), plain and
 * sealed with each key of the ring. */
static void datagram_seed(const char *name, const struct swim_header *h,
			  const struct swim_record *recs, size_t n, bool cursor)
{
	uint8_t buf[1 + SWIM_MTU_MAX];
	if (swim_encoder_begin(&enc, FIXTURE_CLUSTER, h, 1400))
		die("encoder_begin");
	for (size_t i = 0; i < n; i++)
		if (swim_encoder_add(&enc, &recs[i]))
			die("encoder_add");
	if (cursor && swim_encoder_set_cursor(&enc, h->cursor))
		die("set_cursor");
	int len = swim_encoder_finish(&enc, buf + 1, sizeof(buf) - 1);
	if (len < 0)
		die("encoder_finish");
	buf[0] = 0; /* one datagram, from peer 0 */
	write_seed("fuzz_gossip", name, buf, (size_t)len + 1);
}

static void sealed_seed(const char *name, const uint8_t *pt, size_t len,
			int key)
{
	struct gossip_keyring all, one;
	char err[128];
	uint8_t out[1 + SWIM_MTU_MAX + GOSSIP_SEAL_OVERHEAD];
	size_t olen;
	if (gossip_keyring_parse(&all, fixture_keys, err, sizeof(err)))
		die(err);
	memset(&one, 0, sizeof(one));
	memcpy(one.keys[0], all.keys[key], GOSSIP_KEY_LEN);
	one.n = 1;
	/* The fixture's peer 0 as sender, first datagram of its life,
	 * sealed 5 ms after it started. */
	struct gossip_seal_hdr hdr = {.boot = 1, .seq = 1, .sent_ms = 5};
	struct swim_id p0 = id_of(fixture_peer_ids[0]);
	memcpy(hdr.sender, p0.b, sizeof(hdr.sender));
	if (gossip_seal(&one, &hdr, pt, len, out + 1, sizeof(out) - 1, &olen))
		die("seal");
	out[0] = 0;
	write_seed("fuzz_gossip", name, out, olen + 1);
}

static void gossip_datagrams(void)
{
	struct swim_id self = id_of(FIXTURE_SELF_ID);
	struct swim_id p0 = id_of(fixture_peer_ids[0]);
	struct swim_id p1 = id_of(fixture_peer_ids[1]);
	struct swim_id p2 = id_of(fixture_peer_ids[2]);
	uint8_t meta[SWIM_META_MAX];
	size_t mlen = node_meta(meta, sizeof(meta), "coordinator",
				"http://10.0.0.2:4401");

	struct swim_header h;
	memset(&h, 0, sizeof(h));
	h.sender = p0;
	h.sender_addr = fixture_peers[0];
	h.sender_incarnation = 3;
	h.seq = 77;

	struct swim_record alive = {.id = p0,
				    .addr = fixture_peers[0],
				    .incarnation = 3,
				    .status = SWIM_ALIVE,
				    .meta = meta,
				    .meta_len = mlen};
	struct swim_record suspect_self = {
	    .id = self,
	    .addr = {FIXTURE_SELF_IP, FIXTURE_PORT},
	    .incarnation = 0,
	    .status = SWIM_SUSPECT,
	    .has_from = true,
	    .from = p0};
	struct swim_record suspect_p1 = {.id = p1,
					 .addr = fixture_peers[1],
					 .incarnation = 1,
					 .status = SWIM_SUSPECT,
					 .has_from = true,
					 .from = p0};
	struct swim_record dead_p2 = {.id = p2,
				      .addr = fixture_peers[2],
				      .incarnation = 2,
				      .status = SWIM_DEAD};
	struct swim_record left_p1 = {.id = p1,
				      .addr = fixture_peers[1],
				      .incarnation = 4,
				      .status = SWIM_LEFT};
	struct swim_record alive_p1 = {.id = p1,
				       .addr = fixture_peers[1],
				       .incarnation = 1,
				       .status = SWIM_ALIVE};
	struct swim_record dead_self = {.id = self,
					.addr = {FIXTURE_SELF_IP, FIXTURE_PORT},
					.incarnation = 5,
					.status = SWIM_DEAD};

	h.type = SWIM_MSG_PING; /* a join ping: anyone answers */
	datagram_seed("ping-join", &h, &alive, 1, false);
	h.has_target = true;
	h.target = self;
	struct swim_record buddy[] = {alive, suspect_self};
	datagram_seed("ping-buddy-suspect", &h, buddy, 2, false);
	h.has_target = false;

	h.type = SWIM_MSG_ACK;
	struct swim_record ack_recs[] = {alive, alive_p1};
	datagram_seed("ack", &h, ack_recs, 2, false);

	h.type = SWIM_MSG_PING_REQ;
	h.has_target = true;
	h.target = p1;
	h.target_addr = fixture_peers[1];
	h.want_nack = true;
	datagram_seed("ping-req", &h, &alive_p1, 1, false);
	h.want_nack = false;
	h.has_target = false;
	memset(&h.target_addr, 0, sizeof(h.target_addr));

	h.type = SWIM_MSG_NACK;
	datagram_seed("nack", &h, NULL, 0, false);

	h.type = SWIM_MSG_GOSSIP;
	struct swim_record gossip[] = {alive, suspect_p1, dead_p2, left_p1};
	datagram_seed("gossip-all-statuses", &h, gossip, 4, false);
	datagram_seed("gossip-dead-self", &h, &dead_self, 1, false);

	h.type = SWIM_MSG_SYNC_REQ;
	h.has_digest = true;
	for (int i = 0; i < SWIM_DIGEST_RANGES; i++)
		h.digest[i] = (uint32_t)i * 0x9e3779b9u;
	h.cursor = 0;
	datagram_seed("sync-req-digest", &h, &alive, 1, false);
	h.has_digest = false;

	h.type = SWIM_MSG_SYNC_RSP;
	h.cursor = UINT32_MAX;
	if (swim_encoder_begin(&enc, FIXTURE_CLUSTER, &h, 1400))
		die("encoder_begin");
	h.cursor = 3;
	struct swim_record table[] = {alive, alive_p1, dead_p2};
	datagram_seed("sync-rsp", &h, table, 3, true);

	/* the same ping, sealed with the primary and the retired key */
	h.type = SWIM_MSG_PING;
	h.cursor = 0;
	uint8_t pt[SWIM_MTU_MAX];
	if (swim_encoder_begin(&enc, FIXTURE_CLUSTER, &h, 1400) ||
	    swim_encoder_add(&enc, &alive))
		die("encoder");
	int len = swim_encoder_finish(&enc, pt, sizeof(pt));
	if (len < 0)
		die("finish");
	sealed_seed("sealed-ping-primary", pt, (size_t)len, 0);
	sealed_seed("sealed-ping-retired", pt, (size_t)len, 1);

	/* wrong cluster and wrong version: dropped and counted */
	if (swim_encoder_begin(&enc, "other-cluster", &h, 1400))
		die("encoder");
	len = swim_encoder_finish(&enc, pt + 1, sizeof(pt) - 1);
	pt[0] = 0;
	write_seed("fuzz_gossip", "other-cluster", pt, (size_t)len + 1);
	Gossip__Packet *p = gossip__packet__unpack(NULL, (size_t)len, pt + 1);
	if (!p)
		die("unpack");
	p->version = 2;
	size_t n = gossip__packet__pack(p, pt + 1);
	gossip__packet__free_unpacked(p, NULL);
	write_seed("fuzz_gossip", "other-version", pt, n + 1);
}

/* ---- gossip: recorded conversations -------------------------------------- */

#define PEERS_MAX 3

struct peer {
	struct swim *s;
	bool up;
};

struct convo {
	struct swim *a; /* the fixture instance */
	double now; /* the fixture's clock, accumulated as the fuzzer does */
	struct peer peers[PEERS_MAX];
	size_t npeers;
	uint8_t out[SEED_MAX];
	size_t len;
	bool full;
	/* datagrams on their way to the fixture */
	struct {
		size_t from;
		size_t len;
		uint8_t b[1500];
	} pending[256];
	size_t npending;
};

static int peer_index(const struct swim_addr *a)
{
	for (size_t i = 0; i < FIXTURE_NPEERS; i++)
		if (swim_addr_eq(a, &fixture_peers[i]))
			return (int)i;
	return -1;
}

static void deliver_from_peers(struct convo *c);

/* Everything the fixture sent goes to the peers at once. */
static void drain_fixture(struct convo *c)
{
	struct swim_addr to;
	uint8_t b[1500];
	size_t len = sizeof(b);
	while (swim_pop_packet(c->a, &to, b, &len)) {
		int i = peer_index(&to);
		if (i >= 0 && (size_t)i < c->npeers && c->peers[i].up) {
			struct swim_addr from = {FIXTURE_SELF_IP, FIXTURE_PORT};
			swim_recv(c->peers[i].s, &from, b, len, c->now);
		}
		len = sizeof(b);
	}
	struct swim_event ev;
	while (swim_pop_event(c->a, &ev))
		;
	deliver_from_peers(c);
}

/* Peers' datagrams: to the fixture they queue, between peers they arrive
 * at once. */
static void deliver_from_peers(struct convo *c)
{
	bool moved = true;
	while (moved) {
		moved = false;
		for (size_t i = 0; i < c->npeers; i++) {
			struct peer *p = &c->peers[i];
			if (!p->up)
				continue;
			struct swim_addr to;
			uint8_t b[1500];
			size_t len = sizeof(b);
			while (swim_pop_packet(p->s, &to, b, &len)) {
				int j = peer_index(&to);
				if (to.ip == FIXTURE_SELF_IP &&
				    c->npending < 256) {
					c->pending[c->npending].from = i;
					c->pending[c->npending].len = len;
					memcpy(c->pending[c->npending].b, b,
					       len);
					c->npending++;
				} else if (j >= 0 && (size_t)j < c->npeers &&
					   c->peers[j].up) {
					swim_recv(c->peers[j].s,
						  &fixture_peers[i], b, len,
						  c->now);
					moved = true;
				}
				len = sizeof(b);
			}
			struct swim_event ev;
			while (swim_pop_event(p->s, &ev))
				;
		}
	}
}

static bool record(struct convo *c, unsigned dt, size_t from, const uint8_t *b,
		   size_t len)
{
	if (c->full || c->len + FIXTURE_RECORD_HDR + len > sizeof(c->out)) {
		c->full = true;
		return false;
	}
	uint8_t *o = c->out + c->len;
	o[0] = (uint8_t)dt;
	o[1] = (uint8_t)from;
	o[2] = (uint8_t)(len >> 8);
	o[3] = (uint8_t)len;
	if (len)
		memcpy(o + FIXTURE_RECORD_HDR, b, len);
	c->len += FIXTURE_RECORD_HDR + len;
	return true;
}

static void convo_start(struct convo *c, size_t npeers)
{
	memset(c, 0, sizeof(*c));
	c->out[0] = 1; /* mode: conversation */
	c->len = 1;
	c->now = FIXTURE_T0;
	c->npeers = npeers;
	struct swim_config cfg;
	fixture_config(&cfg);
	for (size_t i = 0; i < npeers; i++) {
		if (swim_new(&cfg, fixture_peer_ids[i], &fixture_peers[i],
			     100 + i, c->now, &c->peers[i].s))
			die("swim_new peer");
		c->peers[i].up = true;
		uint8_t meta[SWIM_META_MAX];
		char url[64];
		snprintf(url, sizeof(url), "http://10.0.0.%zu:%zu", i + 2,
			 4401 + i);
		size_t mlen = node_meta(meta, sizeof(meta),
					i ? "worker" : "coordinator", url);
		swim_set_meta(c->peers[i].s, meta, mlen, c->now);
		if (i)
			swim_add_seed(c->peers[i].s, &fixture_peers[0], c->now);
	}
	c->a = fixture_new(NULL, NULL);
	if (!c->a)
		die("fixture_new");
	drain_fixture(c);
}

/* One step of the shared clock, as the fuzzer will replay it. */
static void convo_step(struct convo *c)
{
	double next = c->now + 0.25;
	if (swim_next_deadline(c->a) < next)
		next = swim_next_deadline(c->a);
	for (size_t i = 0; i < c->npeers; i++)
		if (c->peers[i].up && swim_next_deadline(c->peers[i].s) < next)
			next = swim_next_deadline(c->peers[i].s);
	double d = ceil((next - c->now) / FIXTURE_DT - 1e-9);
	unsigned dt = d < 1 ? 1 : d > 255 ? 255 : (unsigned)d;

	c->now += dt * FIXTURE_DT;
	for (size_t i = 0; i < c->npeers; i++)
		if (c->peers[i].up &&
		    c->now >= swim_next_deadline(c->peers[i].s))
			swim_tick(c->peers[i].s, c->now);
	deliver_from_peers(c);

	if (!c->npending) {
		/* a bare tick */
		if (!record(c, dt, 0, NULL, 0))
			return;
		fixture_tick(c->a, c->now);
		drain_fixture(c);
		dt = 0;
	}
	while (c->npending && !c->full) {
		size_t from = c->pending[0].from, len = c->pending[0].len;
		uint8_t b[1500];
		memcpy(b, c->pending[0].b, len);
		memmove(&c->pending[0], &c->pending[1],
			--c->npending * sizeof(c->pending[0]));
		if (!record(c, dt, from, b, len))
			return;
		/* what the fuzzer does with a record */
		fixture_tick(c->a, c->now);
		drain_fixture(c);
		swim_recv(c->a, &fixture_peers[from], b, len, c->now);
		drain_fixture(c);
		dt = 0;
	}
}

static void convo_run(struct convo *c, double until)
{
	while (!c->full && c->now < until)
		convo_step(c);
}

static void convo_end(struct convo *c, const char *name)
{
	struct swim_stats st;
	swim_stats_get(c->a, &st);
	printf("  %s: fixture sees %zu members (%zu alive, %zu suspect, %zu "
	       "dead, %zu left) at t=%.2f\n",
	       name, st.members, st.alive, st.suspect, st.dead, st.left,
	       c->now - FIXTURE_T0);
	write_seed("fuzz_gossip", name, c->out, c->len);
	swim_free(c->a);
	for (size_t i = 0; i < c->npeers; i++)
		swim_free(c->peers[i].s);
}

static void gossip_conversations(void)
{
	static struct convo c;

	/* join through the seed, sync the table, gossip */
	convo_start(&c, 2);
	convo_run(&c, FIXTURE_T0 + 4);
	convo_end(&c, "convo-join");

	/* a member crashes: probes fail, ping-reqs, suspicion, death */
	convo_start(&c, 3);
	convo_run(&c, FIXTURE_T0 + 3);
	c.peers[2].up = false;
	convo_run(&c, FIXTURE_T0 + 60);
	convo_end(&c, "convo-crash");

	/* a member leaves gracefully */
	convo_start(&c, 3);
	convo_run(&c, FIXTURE_T0 + 3);
	swim_leave(c.peers[1].s, c.now);
	convo_run(&c, FIXTURE_T0 + 8);
	convo_end(&c, "convo-leave");

	/* the seed is silent for a while (a partition), then heals */
	convo_start(&c, 2);
	convo_run(&c, FIXTURE_T0 + 2);
	c.peers[0].up = false;
	convo_run(&c, FIXTURE_T0 + 9);
	c.peers[0].up = true;
	convo_run(&c, FIXTURE_T0 + 30);
	convo_end(&c, "convo-partition");
}

/* ---- IPC frames ------------------------------------------------------------
 */

static void frame(struct buf *b, const ProtobufCMessage *m)
{
	if (ipc_frame_append(b, m))
		die("ipc_frame_append");
}

static void ipc_requests(void)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	Ps__Request rq;
	uint64_t id = 1;

	Ps__Capability gpu = PS__CAPABILITY__INIT, ssd = PS__CAPABILITY__INIT;
	gpu.name = "gpu";
	gpu.value = true;
	ssd.name = "ssd";
	Ps__Capability *caps[] = {&gpu, &ssd};
	char *tags[] = {"eu", "ssd"};
	Ps__RegisterReq reg = PS__REGISTER_REQ__INIT;
	reg.id = "a51c132e-4b71-409c-bf6d-98b5bbc2d2a9";
	reg.url = "http://127.0.0.1:4402";
	reg.cluster_id = "default-cluster";
	reg.role = "worker";
	reg.n_tags = 2;
	reg.tags = tags;
	reg.n_capabilities = 2;
	reg.capabilities = caps;
	reg.metadata_json = "{\"autoRegistered\":true,\"platform\":\"linux\"}";
	ps__request__init(&rq);
	rq.id = id++;
	rq.body_case = PS__REQUEST__BODY_REGISTER;
	rq.register_ = &reg;
	frame(&b, &rq.base);

	Ps__HeartbeatReq hb = PS__HEARTBEAT_REQ__INIT;
	hb.id = "a51c132e-4b71-409c-bf6d-98b5bbc2d2a9";
	hb.has_status = true;
	hb.status = PS__NODE_STATUS__NODE_ACTIVE;
	hb.metadata_json = "{\"load\":0.45,\"memory\":0.68}";
	ps__request__init(&rq);
	rq.id = id++;
	rq.body_case = PS__REQUEST__BODY_HEARTBEAT;
	rq.heartbeat = &hb;
	frame(&b, &rq.base);

	Ps__ListNodesReq ln = PS__LIST_NODES_REQ__INIT;
	ln.has_status = true;
	ln.status = PS__NODE_STATUS__NODE_SUSPECT;
	ln.role = "worker";
	ln.cluster_id = "default-cluster";
	ps__request__init(&rq);
	rq.id = id++;
	rq.body_case = PS__REQUEST__BODY_LIST_NODES;
	rq.list_nodes = &ln;
	frame(&b, &rq.base);

	Ps__NodeIdReq nid = PS__NODE_ID_REQ__INIT;
	nid.id = "node-1";
	ps__request__init(&rq);
	rq.id = id++;
	rq.body_case = PS__REQUEST__BODY_GET_NODE;
	rq.get_node = &nid;
	frame(&b, &rq.base);
	rq.id = id++;
	rq.body_case = PS__REQUEST__BODY_DELETE_NODE;
	rq.delete_node = &nid;
	frame(&b, &rq.base);

	Ps__SetServingReq ss = PS__SET_SERVING_REQ__INIT;
	ps__request__init(&rq);
	rq.id = id++;
	rq.body_case = PS__REQUEST__BODY_SET_SERVING;
	rq.set_serving = &ss;
	frame(&b, &rq.base);

	Ps__ReportReq rep = PS__REPORT_REQ__INIT;
	rep.http_connections = 12;
	ps__request__init(&rq);
	rq.id = id++;
	rq.body_case = PS__REQUEST__BODY_REPORT;
	rq.report = &rep;
	frame(&b, &rq.base);

	Ps__Empty e = PS__EMPTY__INIT;
	static const Ps__Request__BodyCase empties[] = {
	    PS__REQUEST__BODY_GET_STATUS, PS__REQUEST__BODY_GET_HEALTH,
	    PS__REQUEST__BODY_GET_STATS,  PS__REQUEST__BODY_GET_MEMBERS,
	    PS__REQUEST__BODY_FOLLOW,	  PS__REQUEST__BODY_SUBSCRIBE,
	};
	for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
		ps__request__init(&rq);
		rq.id = id++;
		rq.body_case = empties[i];
		rq.get_status = &e; /* a oneof: one pointer for all */
		frame(&b, &rq.base);
	}
	write_seed("fuzz_ipc", "frames-requests", b.base, b.len);
	/* the register request alone, unframed */
	ps__request__init(&rq);
	rq.id = 1;
	rq.body_case = PS__REQUEST__BODY_REGISTER;
	rq.register_ = &reg;
	size_t n = ps__request__get_packed_size(&rq);
	buf_reset(&b);
	char *at;
	if (buf_extend(&b, n, &at))
		die("buf");
	ps__request__pack(&rq, (uint8_t *)at);
	write_seed("fuzz_ipc", "payload-register", b.base, b.len);
	buf_fini(&b);
}

static void write_reply(struct buf *frames, const char *name,
			const Ps__Reply *r)
{
	size_t n = ps__reply__get_packed_size(r);
	uint8_t *p = malloc(n);
	if (!p)
		die("oom");
	ps__reply__pack(r, p);
	write_seed("fuzz_ipc", name, p, n);
	free(p);
	frame(frames, &r->base);
}

static void ipc_replies(void)
{
	struct buf frames;
	buf_init(&frames, 1 << 20);

	Ps__Capability gpu = PS__CAPABILITY__INIT;
	gpu.name = "gpu";
	gpu.value = true;
	Ps__Capability *caps[] = {&gpu};
	char *tags[] = {"eu", "ssd"};
	Ps__Node coord = PS__NODE__INIT, worker = PS__NODE__INIT;
	coord.id = "9b59c458-coordinator-id";
	coord.url = "http://127.0.0.1:4401";
	coord.cluster_id = "default-cluster";
	coord.status = PS__NODE_STATUS__NODE_ACTIVE;
	coord.role = "coordinator";
	coord.last_seen_ms = 1705314660000LL;
	coord.created_at_ms = 1705314600000LL;
	coord.has_gossip = coord.gossip = true;
	coord.gossip_addr = "127.0.0.1:5401";
	worker = coord;
	worker.id = "a51c132e-4b71-409c-bf6d-98b5bbc2d2a9";
	worker.url = "http://127.0.0.1:4402";
	worker.role = "worker";
	worker.status = PS__NODE_STATUS__NODE_SUSPECT;
	worker.n_tags = 2;
	worker.tags = tags;
	worker.n_capabilities = 1;
	worker.capabilities = caps;
	worker.metadata_json = "{\"load\":0.45,\"memory\":0.68}";
	worker.has_response_time_ms = true;
	worker.response_time_ms = 3.8;
	Ps__Node *nodes[] = {&coord, &worker};
	Ps__ServiceStatus svc = PS__SERVICE_STATUS__INIT;
	svc.serving = true;
	svc.start_time_ms = 1705314600000LL;
	svc.changed_at_ms = 1705314720000LL;

	Ps__Reply r = PS__REPLY__INIT;
	r.id = 3;
	r.n_nodes = 2;
	r.nodes = nodes;
	r.self = &coord;
	r.service = &svc;
	r.has_registry_version = true;
	r.registry_version = 42;
	r.has_coordinator_healthy = r.coordinator_healthy = true;
	write_reply(&frames, "reply-nodes-health", &r);

	Ps__Reply one = PS__REPLY__INIT;
	one.id = 1;
	one.node = &worker;
	one.has_created = one.created = true;
	one.has_timestamp_ms = true;
	one.timestamp_ms = 1705314660000LL;
	write_reply(&frames, "reply-node", &one);

	Ps__Error err = PS__ERROR__INIT;
	err.code = "NODE_NOT_FOUND";
	err.message = "Node x not found";
	err.details_json = "{\"id\":\"x\"}";
	Ps__Reply er = PS__REPLY__INIT;
	er.id = 4;
	er.error = &err;
	write_reply(&frames, "reply-error", &er);

	Ps__Counter c1 = PS__COUNTER__INIT;
	c1.name = "proxystone_gossip_dropped_total";
	c1.labels = "reason=\"bad_cluster\"";
	c1.value = 2;
	c1.help = "Datagrams dropped";
	Ps__Counter *ctrs[] = {&c1};
	Ps__Member m = PS__MEMBER__INIT;
	m.id = "11111111-2222-4333-8444-555555555555";
	m.addr = "10.0.0.2:7946";
	m.status = "alive";
	m.incarnation = 3;
	m.has_rtt_ms = true;
	m.rtt_ms = 0.4;
	Ps__Member *members[] = {&m};
	Ps__Gossip g = PS__GOSSIP__INIT;
	g.addr = "10.0.0.1:7946";
	g.incarnation = 1;
	g.cluster_id = "default-cluster";
	Ps__Reply st = PS__REPLY__INIT;
	st.id = 5;
	st.n_counters = 1;
	st.counters = ctrs;
	st.n_members = 1;
	st.members = members;
	st.self_id = "8d0e4a8e-0b4e-4c1e-9a53-1f2b3c4d5e6f";
	st.gossip = &g;
	st.coordinator_url = "http://127.0.0.1:4401";
	write_reply(&frames, "reply-stats-members", &st);

	Ps__Event ev = PS__EVENT__INIT;
	ev.kind = "node";
	ev.type = "status";
	ev.id = worker.id;
	ev.node = &worker;
	ev.has_registry_version = true;
	ev.registry_version = 43;
	Ps__Reply evr = PS__REPLY__INIT;
	evr.id = 6;
	evr.event = &ev;
	write_reply(&frames, "reply-event", &evr);

	write_seed("fuzz_ipc", "frames-replies", frames.base, frames.len);
	buf_fini(&frames);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_seeds CORPUS_DIR\n");
		return 2;
	}
	dir = argv[1];
	gossip_datagrams();
	gossip_conversations();
	ipc_requests();
	ipc_replies();
	return 0;
}
