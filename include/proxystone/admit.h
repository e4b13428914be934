/*
 * admit — which members met by gossip the coordinator registers, and when.
 *
 * A gossip record naming a member is no proof that the member exists: with
 * plaintext gossip anyone on the LAN can announce thousands, and even under
 * a keyring a member that holds the key can. So the coordinator registers a
 * member met by gossip only when all of these hold:
 *
 *   1. Settled: it has been ALIVE (or SUSPECT, never DEAD or LEFT) in our
 *      gossip view without a break for `settle` seconds
 *      (gossip_register_after).
 *   2. Answered: a datagram whose header names it as the sender reached us
 *      after we pinged it at its gossip address. A record relayed by a third
 *      party does not count; the member itself has to answer where it says
 *      it lives. Silent members are pinged again every ADMIT_PING_INTERVAL,
 *      at most ADMIT_PINGS_PER_PASS per pass (we never flood addresses a
 *      forger chose).
 *   3. Paced: a token bucket of `rate` registrations per second with a
 *      burst of max(rate, 1) (gossip_register_rate).
 *
 * Members waiting are "pending". Nothing is dropped silently: the number
 * pending is a gauge, members held back by the bucket are counted
 * (deferred) and the caller logs it; a member that stops being alive while
 * pending is forgotten and counted (expired); a table full
 * (ADMIT_PENDING_MAX) is counted (dropped) and the member is offered again
 * by its next gossip event.
 *
 * Pure: no clock, no I/O, no allocation after admit_init(). Time comes in as
 * `now` (monotonic seconds); the caller tells each member's state through
 * admit_pass()'s `look` callback and acts on what the pass returns.
 */
#ifndef PROXYSTONE_ADMIT_H
#define PROXYSTONE_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxystone/swim.h"

/* Pending members: at most what the gossip table can hold. */
#define ADMIT_PENDING_MAX SWIM_MEMBERS_MAX
/* A pending member that has not answered is pinged again this often. */
#define ADMIT_PING_INTERVAL 1.0
/* Pings one pass may ask for: with passes every ADMIT_PASS_INTERVAL, 200
 * verification pings a second at most, whatever a forger announces. */
#define ADMIT_PINGS_PER_PASS 50
/* Registrations one pass may return (the bucket bounds it further). */
#define ADMIT_BATCH_MAX 256
/* How often the caller runs admit_pass(). */
#define ADMIT_PASS_INTERVAL 0.25

/* What the caller knows of a pending member. */
struct admit_look {
	bool alive;	   /* ALIVE or SUSPECT in the gossip view */
	bool registered;   /* already in the registry (by HTTP, say) */
	double last_heard; /* `now` of its last own datagram, < 0: never */
};
typedef void (*admit_look_fn)(void *ctx, const struct swim_id *id,
			      struct admit_look *out);

struct admit_stats {
	size_t pending;	   /* members waiting now */
	uint64_t admitted; /* returned for registration */
	uint64_t deferred; /* passes x members held back by the rate */
	uint64_t expired;  /* stopped being alive while pending */
	uint64_t dropped;  /* offered while the table was full */
	uint64_t pings;	   /* verification pings asked for */
};

struct admit_entry {
	struct swim_id id;
	double alive_since; /* first offer of this unbroken life */
	double pinged_at;   /* last ping asked for, < 0: none yet */
};

struct admit {
	double settle, rate;
	double tokens, refilled_at;
	struct admit_entry *e; /* ADMIT_PENDING_MAX slots */
	bool *gone;	       /* ADMIT_PENDING_MAX: admit_pass()'s scratch */
	size_t n;
	size_t cursor; /* where the next pass starts its pings */
	struct admit_stats st;
};

/* What one pass decided: ping these, register those. */
struct admit_out {
	struct swim_id ping[ADMIT_PINGS_PER_PASS];
	size_t n_ping;
	struct swim_id reg[ADMIT_BATCH_MAX];
	size_t n_reg;
	size_t deferred; /* ready but held back by the rate in this pass */
};

/* settle >= 0 seconds, rate > 0 per second. 0, -EINVAL or -ENOMEM. */
int admit_init(struct admit *a, double settle, double rate, double now);
void admit_fini(struct admit *a);
/* Member `id` is alive in gossip and not registered: start its wait (no-op
 * if it already waits). */
void admit_offer(struct admit *a, const struct swim_id *id, double now);
/* Forget `id` (registered some other way, or gone). No-op if unknown. */
void admit_forget(struct admit *a, const struct swim_id *id);
/* One pass over the pending members at `now`. */
void admit_pass(struct admit *a, double now, admit_look_fn look, void *ctx,
		struct admit_out *out);
void admit_stats_get(const struct admit *a, struct admit_stats *out);

#endif
