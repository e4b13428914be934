/*
 * gossip_fixture — the swim instance fuzz_gossip attacks, and the exact
 * way it is driven, shared with the seed generator (gen_seeds.c) so that a
 * recorded conversation replays identically inside the fuzzer: same id,
 * address, PRNG seed, config, start time and tick schedule.
 *
 * A "conversation" input (mode byte with bit 0 set) is a sequence of
 *     u8 dt  (centiseconds since the previous record)
 *     u8 from (index into fixture_peers[], modulo its size)
 *     u16 len (big-endian), then len bytes of datagram (0: a bare tick)
 * and each record is applied by fixture_step().
 */
#ifndef PROXYSTONE_FUZZ_GOSSIP_FIXTURE_H
#define PROXYSTONE_FUZZ_GOSSIP_FIXTURE_H

#include <stdint.h>
#include <string.h>

#include "proxystone/gossip_crypto.h"
#include "proxystone/swim.h"

#define FIXTURE_CLUSTER "fuzz"
#define FIXTURE_SELF_ID "8d0e4a8e-0b4e-4c1e-9a53-1f2b3c4d5e6f"
#define FIXTURE_SELF_IP 0x0a000001u /* 10.0.0.1 */
#define FIXTURE_PORT 7946
#define FIXTURE_SEED 42
/* Start of virtual time: far from 0 so "time since" arithmetic is real. */
#define FIXTURE_T0 1000.0
/* Seconds per unit of a record's dt. */
#define FIXTURE_DT 0.01
#define FIXTURE_RECORD_HDR 4

/* Who datagrams come from: peer 0 is the instance's seed (a coordinator),
 * the others are members it may learn about, and one stranger. */
static const struct swim_addr fixture_peers[] = {
    {0x0a000002u, FIXTURE_PORT}, /* 10.0.0.2, the seed */
    {0x0a000003u, FIXTURE_PORT},
    {0x0a000004u, FIXTURE_PORT},
    {0xc0a80101u, 1234}, /* 192.168.1.1:1234, not in the cluster */
};
#define FIXTURE_NPEERS (sizeof(fixture_peers) / sizeof(fixture_peers[0]))

/* Ids the generator gives its peers (index = fixture_peers index). */
static const char *const fixture_peer_ids[] = {
    "11111111-2222-4333-8444-555555555555",
    "22222222-3333-4444-8555-666666666666",
    "33333333-4444-4555-8666-777777777777",
    "44444444-5555-4666-8777-888888888888",
};

/* The cluster key ring: primary first, then a retired key still accepted. */
static const char fixture_keys[] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f,"
    "f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff";

static inline void fixture_config(struct swim_config *cfg)
{
	swim_config_defaults(cfg);
	strcpy(cfg->cluster_id, FIXTURE_CLUSTER);
}

/* A fresh instance that has just started joining through peer 0. */
static inline struct swim *fixture_new(swim_trace_fn trace, void *trace_ctx)
{
	struct swim_config cfg;
	struct swim *s = NULL;
	struct swim_addr self = {FIXTURE_SELF_IP, FIXTURE_PORT};
	fixture_config(&cfg);
	cfg.trace = trace;
	cfg.trace_ctx = trace_ctx;
	if (swim_new(&cfg, FIXTURE_SELF_ID, &self, FIXTURE_SEED, FIXTURE_T0,
		     &s))
		return NULL;
	swim_add_seed(s, &fixture_peers[0], FIXTURE_T0);
	return s;
}

/* One record: advance to now, run due timers, then take the datagram. The
 * caller drains the instance's queues after each call. */
static inline void fixture_tick(struct swim *s, double now)
{
	if (now >= swim_next_deadline(s))
		swim_tick(s, now);
}

#endif
