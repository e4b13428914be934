/*
 * swim — cluster membership and failure detection: SWIM with the Lifeguard
 * refinements, as a pure state machine.
 *
 * The instance makes no system calls, reads no clock, keeps no global state
 * and draws randomness only from a PRNG seeded at creation. Time comes in
 * as `now` (monotonic seconds, never decreasing across calls), datagrams
 * come in through swim_recv(), timers through swim_tick(). What it wants
 * sent and what it wants the application to know comes out through two
 * queues the driver drains after every input. The packet queue holds
 * SWIM_OUTQ_MAX datagrams, plenty for one input; the event queue keeps
 * one pending event per member, merging its changes, so it loses no
 * state change even if the driver drains only after a batch of inputs:
 *
 *     for (;;) {
 *         wait for a datagram or swim_next_deadline(s);
 *         swim_recv(s, &from, pkt, len, now)  or  swim_tick(s, now);
 *         while (swim_pop_packet(s, &to, buf, &len)) sendto(to, buf, len);
 *         while (swim_pop_event(s, &ev)) handle(ev);
 *     }
 *
 * Production drives it with libev and a UDP socket; tests with a virtual
 * clock and a simulated network (tests/lib/sim.c). Given the same seed and
 * the same inputs, an instance produces the same outputs.
 *
 * Protocol (the paper's names in brackets):
 *  - Failure detection. Every protocol period (probe_interval) one member is
 *    probed, in randomized round-robin order over a shuffled member list.
 *    If no ack arrives within probe_timeout, indirect probes (ping-req) go
 *    through indirect_checks random members. No ack by the end of the
 *    period: the member becomes SUSPECT.
 *  - Suspicion [Lifeguard: dynamic suspicion timeout]. A suspect becomes
 *    DEAD when its suspicion timer expires. The timer starts at
 *    max = suspicion_max_mult * min, with
 *    min = suspicion_mult * log10(N) * probe_interval (N = live members,
 *    floored at one probe_interval), and shrinks logarithmically towards min
 *    as independent confirmations arrive (indirect_checks of them reach min).
 *  - Refutation. Only a member raises its own incarnation. A member that
 *    hears itself suspected, declared dead or left, or described with stale
 *    data, raises its incarnation above what it heard and disseminates
 *    ALIVE. Precedence for one member: higher incarnation wins; at equal
 *    incarnation DEAD/LEFT > SUSPECT > ALIVE.
 *  - [Lifeguard: buddy system] A ping to a member we hold as suspect (or
 *    dead, or whose claims are stale) carries that record first, so the
 *    member can refute at once.
 *  - [Lifeguard: local health awareness] A score in [0, health_max - 1]
 *    rises on failed probes (by the nacks that did not come back, or by 1
 *    without intermediaries) and on each refutation, falls by 1 on each
 *    successful probe. Probe interval and probe timeout are multiplied by
 *    (score + 1): a node that cannot hear its peers slows down instead of
 *    accusing them.
 *  - [Lifeguard: nack] The intermediary of a ping-req answers NACK when the
 *    target stays silent for nack_ratio * probe_timeout, so the requester
 *    can tell its own trouble (no nacks either) from the target's.
 *  - Dissemination [infection style]. Every state change is queued once per
 *    member and piggybacked on every datagram (pings, acks, ping-reqs,
 *    nacks, syncs), least-transmitted and newest first, filling the MTU.
 *    Each update is sent retransmit_mult * ceil(log10(N + 1)) times. While
 *    updates are queued, gossip_nodes random members also get a GOSSIP
 *    datagram every gossip_interval.
 *  - Join. swim_add_seed() remembers an address. Until a first peer answers,
 *    every seed gets a join ping each protocol period; the first peer to
 *    answer is asked for a full sync of its table (SYNC_REQ/SYNC_RSP, one
 *    MTU-sized slice per round trip). Seeds whose address no live member
 *    holds are pinged again every reconnect_interval, so a node rejoins
 *    after a long partition or a restart of the seed.
 *  - Anti-entropy. Every sync_interval a random live member is sent a
 *    digest of our table (SWIM_DIGEST_RANGES range hashes, ~300 bytes) and
 *    answers, only where its table differs, with one datagram of records
 *    from the differing ranges: an update the epidemic missed is repaired
 *    within a few intervals, at a cost per member independent of the
 *    cluster size. Every reconnect_interval one random DEAD member is
 *    pinged, so the two sides of a healed partition find each other; a
 *    member heard from again after we had declared it DEAD or LEFT is asked
 *    for its whole table, which holds what we missed while apart.
 *  - Restart. A member that comes back with its old id and a fresh state
 *    learns its old incarnation from the first peer that holds it (the
 *    peer sends its record back) and refutes it.
 *  - Leave. swim_leave() raises the incarnation and disseminates LEFT; it
 *    also tells every live member directly, SWIM_GOSSIP_NODES_MAX of them
 *    per gossip_interval (an epidemic misses a member now and then; a
 *    datagram each is cheap once per lifetime). The instance stops probing
 *    but keeps answering; the driver should keep it running for about
 *    gossip_interval * members / SWIM_GOSSIP_NODES_MAX (at least a
 *    second), then free it.
 *  - DEAD and LEFT members are forgotten dead_reap_time after their status
 *    changed: long after stale gossip about them has died out, so it cannot
 *    resurrect them.
 *
 * Every datagram carries the cluster id and SWIM_PROTO_VERSION; other
 * clusters' and versions' datagrams, and malformed ones, are dropped and
 * counted (swim_stats). Every datagram fits cfg->mtu.
 *
 * Errors: 0 or a negative errno. Nothing here logs; counters tell.
 */
#ifndef PROXYSTONE_SWIM_H
#define PROXYSTONE_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxystone/swim_proto.h"

/* Members remembered (alive or not). The design's largest cluster is 10,000
 * members; the rest is room for dead members not yet forgotten. */
#define SWIM_MEMBERS_MAX 16384
/* Seed addresses. A handful of coordinators is the expected use. */
#define SWIM_SEEDS_MAX 16
/* Bound on cfg.indirect_checks: beyond ~8 intermediaries the Lifeguard paper
 * measures no further gain, only traffic. */
#define SWIM_INDIRECT_MAX 8
/* Bound on cfg.gossip_nodes: fan-out beyond 16 buys no speed at these sizes
 * and makes each update burst a flood. */
#define SWIM_GOSSIP_NODES_MAX 16
/* Bound on cfg.health_max: memberlist's AwarenessMaxMultiplier is 8. */
#define SWIM_HEALTH_MAX 16
/* Bound on cfg.retransmit_mult; with log10(N+1) <= 5 this bounds how many
 * times one update may be sent (SWIM_TRANSMIT_MAX). */
#define SWIM_RETRANSMIT_MULT_MAX 12
#define SWIM_TRANSMIT_MAX (SWIM_RETRANSMIT_MULT_MAX * 5)
/* Ping-reqs served at once. Each one is a probe another member delegated;
 * with k = 3 intermediaries and one probe per second per member, even many
 * simultaneous failures keep this well below 64. Excess ping-reqs are
 * dropped and counted. */
#define SWIM_RELAYS_MAX 64
/* Datagrams waiting in the output queue. One input produces at most a probe,
 * SWIM_INDIRECT_MAX ping-reqs, SWIM_GOSSIP_NODES_MAX gossips, the nacks of
 * SWIM_RELAYS_MAX relays and SWIM_SEEDS_MAX join pings; excess is dropped
 * and counted. */
#define SWIM_OUTQ_MAX 128
/* The event queue has no limit of its own and cannot overflow: it holds
 * at most one pending event per member (its changes merge, the event
 * carries the member's latest state), so at most the members in the
 * table plus those reaped since the application last drained, each
 * bounded by SWIM_MEMBERS_MAX. A driver may read any number of
 * datagrams before it drains (gossip.c reads 64); none of the state
 * changes they cause is lost. */
/*
 * Incarnations. Only a member raises its own, one step per refutation, meta
 * change or leave: changing twice a second for 68 years reaches 2^32. So a
 * record (or a datagram header) that puts a member's incarnation more than
 * SWIM_INC_JUMP_MAX above what we hold for it is forged or corrupt, and so
 * is any incarnation above SWIM_INC_LIMIT (2^63) whoever it names: such
 * input is dropped and counted (dropped_inc_jump) and never applied. About
 * ourselves we know the exact value; about others we allow twice the jump,
 * room for one refutation of a record we never saw. Together they keep
 * max(heard, own) + 1 far from wrapping; it saturates anyway.
 */
#define SWIM_INC_JUMP_MAX ((uint64_t)1 << 32)
#define SWIM_INC_LIMIT ((uint64_t)1 << 63)

/* Called for every datagram sent and every datagram received (even dropped
 * ones), when set in the config: the hook for tools/dump. Runs inside the
 * swim_* call that caused it; must not call back into the instance. */
struct swim_trace {
	bool sent; /* true: we sent it; false: we received it */
	double now;
	struct swim_addr peer;	       /* destination or source */
	size_t size;		       /* datagram bytes */
	int error;		       /* received: 0, or why it was dropped */
	const struct swim_header *hdr; /* NULL if it did not decode */
	const struct swim_record *records;
	size_t n_records;
};
typedef void (*swim_trace_fn)(void *ctx, const struct swim_trace *t);

/* Called for every record or datagram dropped because it claims an
 * impossible incarnation, when set in the config: the driver logs it
 * (rate-limited) with the sender's address. Same rules as swim_trace_fn. */
struct swim_reject {
	struct swim_addr from; /* datagram source */
	struct swim_id sender; /* the header's sender id */
	struct swim_id member; /* whom the claim is about */
	uint64_t claimed;      /* incarnation claimed */
	uint64_t known;	       /* what we hold for it (0: a stranger) */
	bool self;	       /* the claim is about us */
};
typedef void (*swim_reject_fn)(void *ctx, const struct swim_reject *r);

/*
 * Tunables. swim_config_defaults() gives memberlist's LAN configuration
 * (its names in brackets); the last four have no memberlist equivalent.
 */
struct swim_config {
	/* Carried by every datagram; others' datagrams are dropped. */
	char cluster_id[SWIM_CLUSTER_ID_MAX + 1];
	/* 1400: Ethernet's 1500 less room for IP, UDP and tunnel headers.
	 * A driver that wraps datagrams (sealing) must subtract its
	 * overhead. */
	size_t mtu;
	double probe_interval;	   /* 1 s [ProbeInterval] */
	double probe_timeout;	   /* 0.5 s [ProbeTimeout] */
	unsigned indirect_checks;  /* 3 [IndirectChecks] */
	double suspicion_mult;	   /* 4 [SuspicionMult] */
	double suspicion_max_mult; /* 6 [SuspicionMaxTimeoutMult] */
	unsigned retransmit_mult;  /* 4 [RetransmitMult] */
	double gossip_interval;	   /* 0.2 s [GossipInterval] */
	unsigned gossip_nodes;	   /* 3 [GossipNodes] */
	/* 30 s [GossipToTheDeadTime]: dead members still get gossip for a
	 * while, so that one wrongly declared dead hears it and refutes. */
	double gossip_to_dead;
	unsigned health_max; /* 8 [AwarenessMaxMultiplier] */
	/* 0.8: an intermediary nacks at 80% of the probe timeout, early
	 * enough for the nack to reach the requester within its period. */
	double nack_ratio;
	/* 10 s: digest anti-entropy. A digest costs ~300 bytes, so it can
	 * run more often than memberlist's 30 s full push-pull, and bounds
	 * how long an update the epidemic missed stays missing. */
	double sync_interval;
	/* 5 s: seeds no live member holds, and one random DEAD member, are
	 * pinged this often (rejoin after a partition or a seed restart). */
	double reconnect_interval;
	/* 120 s: DEAD and LEFT members are forgotten this long after their
	 * status changed; stale gossip has died out by then (retransmits
	 * last seconds), so it cannot resurrect them. */
	double dead_reap_time;
	swim_trace_fn trace; /* NULL: no tracing, no cost */
	void *trace_ctx;
	swim_reject_fn reject; /* NULL: rejections are only counted */
	void *reject_ctx;
};

void swim_config_defaults(struct swim_config *cfg);
/* 0, or -EINVAL with the offending key in err. */
int swim_config_check(const struct swim_config *cfg, char *err, size_t errlen);

struct swim;

/*
 * Creates an instance for member `self_id` (UUID text form) gossiping at
 * `self_addr`. `seed` seeds the instance's PRNG. The config is copied.
 * Returns 0 and *out, or -EINVAL (bad config or id), -ENOMEM.
 */
int swim_new(const struct swim_config *cfg, const char *self_id,
	     const struct swim_addr *self_addr, uint64_t seed, double now,
	     struct swim **out);
void swim_free(struct swim *s);

/* --- Inputs. Each may queue packets and events. --- */

/* Adds a join address (a coordinator). A join ping goes out at once.
 * 0, -EEXIST (already a seed), -ENOSPC (SWIM_SEEDS_MAX). */
int swim_add_seed(struct swim *s, const struct swim_addr *addr, double now);
/* For tests and benchmarks only (the simulator's sim_bootstrap()): adds
 * member `id` at `addr` with incarnation `inc`, ALIVE, as if the epidemic
 * had already spread it, so a large simulated cluster forms without a
 * join storm. Emits no event, disseminates nothing, and marks the instance
 * joined (no table pull on first contact). Production code joins through
 * swim_add_seed(). 0, -EEXIST (known, or ourselves), -ENOSPC
 * (SWIM_MEMBERS_MAX), -ENOMEM, -EPERM after swim_leave(). */
int swim_add_member(struct swim *s, const struct swim_id *id,
		    const struct swim_addr *addr, uint64_t inc, double now);
/* A datagram from `from`. Never fails: bad datagrams are counted. */
void swim_recv(struct swim *s, const struct swim_addr *from, const uint8_t *pkt,
	       size_t len, double now);
/* Runs every timer due at `now`. Call it at swim_next_deadline() (earlier
 * or later is harmless: early does nothing, late catches up). */
void swim_tick(struct swim *s, double now);
/* When swim_tick() next has work, as a `now` value. Always finite until
 * swim_leave(); after it, INFINITY once nothing is left to do. */
double swim_next_deadline(const struct swim *s);
/* Graceful leave: disseminates LEFT, stops probing. Not undoable. */
void swim_leave(struct swim *s, double now);
/* Sets our application payload (<= SWIM_META_MAX bytes) and raises our
 * incarnation so it disseminates. Same bytes again: no-op. Each change is
 * an update every member hears: keep changes to significant ones. 0,
 * -EMSGSIZE, -EPERM after swim_leave(). */
int swim_set_meta(struct swim *s, const uint8_t *meta, size_t len, double now);

/* Sends one ping to member `id` (ALIVE or SUSPECT) outside the probe
 * schedule. Its answer, like any datagram from it, shows in
 * swim_member_info.last_heard: proof that the member answers at the
 * address it announced (admit.h). 0, -ENOENT (unknown, DEAD or LEFT),
 * -EPERM after swim_leave(). */
int swim_ping(struct swim *s, const struct swim_id *id, double now);

/* --- Outputs. --- */

/* Next datagram to send: to *to, copied into buf. On entry *len is buf's
 * capacity (give at least cfg->mtu); on return the datagram's length.
 * false when the queue is empty. */
bool swim_pop_packet(struct swim *s, struct swim_addr *to, uint8_t *buf,
		     size_t *len);

enum swim_event_what {
	SWIM_EV_NEW = 1 << 0,	 /* first time in our table */
	SWIM_EV_STATUS = 1 << 1, /* status changed: prev_status -> status */
	SWIM_EV_META = 1 << 2,	 /* meta changed */
	SWIM_EV_ADDR = 1 << 3,	 /* address changed */
	SWIM_EV_INCARNATION = 1 << 4, /* incarnation changed */
	SWIM_EV_FORGOTTEN = 1 << 5,   /* removed from the table (reaped) */
};

/* A change to another member (never ourselves). */
struct swim_event {
	unsigned what; /* enum swim_event_what bits */
	struct swim_id id;
	struct swim_addr addr;
	uint64_t incarnation;
	enum swim_status status;
	enum swim_status prev_status; /* SWIM_NONE with SWIM_EV_NEW */
	double rtt_ms;		      /* smoothed probe RTT, < 0: unknown */
	size_t meta_len;
	uint8_t meta[SWIM_META_MAX];
};

/* Next event, copied into *ev; false when none. */
bool swim_pop_event(struct swim *s, struct swim_event *ev);

/* --- Introspection (/health, /metrics, tools/dump). --- */

struct swim_member_info {
	struct swim_id id;
	struct swim_addr addr;
	enum swim_status status;
	uint64_t incarnation;
	bool is_self;
	double status_since; /* `now` of the last status change */
	double last_heard; /* `now` of the last datagram from it, < 0: never */
	double rtt_ms;	   /* smoothed probe round trip, < 0: unknown */
	size_t meta_len;
	uint8_t meta[SWIM_META_MAX];
};

/* Members in the table, ourselves included. */
size_t swim_member_count(const struct swim *s);
/* The i-th member (0 <= i < count; order changes between calls that
 * change state). 0 or -ENOENT. */
int swim_member_get(const struct swim *s, size_t i,
		    struct swim_member_info *out);
/* Member by id. 0 or -ENOENT. */
int swim_member_find(const struct swim *s, const struct swim_id *id,
		     struct swim_member_info *out);
/* Status of member `id` in our view; SWIM_NONE if unknown. O(1). */
enum swim_status swim_member_status(const struct swim *s,
				    const struct swim_id *id);
const struct swim_id *swim_self_id(const struct swim *s);
uint64_t swim_self_incarnation(const struct swim *s);

struct swim_stats {
	uint64_t packets_sent, bytes_sent;
	uint64_t packets_received, bytes_received;
	uint64_t dropped_bad_cluster; /* another cluster id */
	uint64_t dropped_bad_version; /* another protocol version */
	uint64_t dropped_malformed;   /* did not decode or failed a bound */
	uint64_t dropped_misdirected; /* ping for another id, or from our id */
	uint64_t dropped_outq;	      /* output queue full (SWIM_OUTQ_MAX) */
	uint64_t
	    dropped_events; /* events lost: 0, the queue merges per member */
	uint64_t dropped_relays;  /* ping-req while SWIM_RELAYS_MAX busy */
	uint64_t dropped_members; /* table full (SWIM_MEMBERS_MAX) */
	uint64_t
	    dropped_inc_jump; /* impossible incarnation (SWIM_INC_JUMP_MAX) */
	uint64_t probes;      /* direct probes started */
	uint64_t probe_failures;  /* probes that ended without an ack */
	uint64_t indirect_probes; /* ping-reqs sent */
	uint64_t direct_retries;  /* second pings sent with them */
	uint64_t relays;	  /* ping-reqs served for others */
	uint64_t nacks_sent, nacks_received;
	uint64_t suspects;     /* members we suspected ourselves */
	uint64_t deaths;       /* suspicions that expired here */
	uint64_t refutes;      /* times we refuted (false suspicions) */
	uint64_t updates_sent; /* records piggybacked */
	uint64_t syncs;	       /* anti-entropy exchanges started */
	unsigned local_health; /* Lifeguard score, 0 = healthy */
	size_t members, alive, suspect, dead, left;
	size_t broadcasts;    /* updates still to disseminate */
	uint64_t incarnation; /* ours */
};

void swim_stats_get(const struct swim *s, struct swim_stats *out);

#endif
