/*
 * swim — SWIM + Lifeguard as a pure state machine (see swim.h).
 *
 * Layout of the state:
 *  - members[]: every known member (ourselves included), in probe order.
 *    Probing walks it from probe_idx; at the end it is reshuffled
 *    (randomized round-robin). New members go to a random slot of the part
 *    not yet probed this round.
 *  - idmap: open-addressing hash of members by id (O(1) lookups per record).
 *  - bq[t]: the dissemination queue, one list per transmit count t, newest
 *    first. A member is queued at most once: its current record is what
 *    goes out, so a newer update replaces an older one for free.
 *  - suspects: members under suspicion (scanned for expired timers).
 *  - gone: DEAD and LEFT members, oldest first (reaping).
 *  - evq: members with an event for the application pending, oldest
 *    first. A member is queued at most once: what changed accumulates in
 *    its ev_what, the status the application last saw in ev_prev, and
 *    the event is built from its current state when popped. So the queue
 *    cannot overflow and never loses a state change, however late the
 *    driver drains. A member reaped while queued leaves the table but
 *    stays allocated in evq (`reaped`) until its FORGOTTEN event is
 *    popped; one reaped before the application ever heard of it (NEW
 *    still pending) is simply dropped with its event.
 *  - digest[]: per id-hash range, the XOR of the members' (id,
 *    incarnation, status) hashes, kept current on every change, compared
 *    by periodic anti-entropy.
 */
#include "proxystone/rng.h"
#include "proxystone/swim.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Smallest wire size of a record (16-byte id with its framing): once less
 * room than this is left, no further record can fit. */
#define RECORD_WIRE_MIN 20
/* Records too large for the room left that the piggyback fill steps over
 * before giving up: bounds the work per datagram. */
#define PIGGYBACK_SKIP_MAX 8
/* Random draws per member wanted when sampling (memberlist's kRandomNodes
 * draws 3n); few live members among many dead ones just yield fewer. */
#define SAMPLE_TRIES_PER_PICK 4
#define SAMPLE_TRIES_EXTRA 8
/* Times one full-sync request is resent when its answer is lost. */
#define SYNC_RETRIES 2
/* Gain of the smoothed probe RTT, TCP's SRTT alpha (RFC 6298). */
#define RTT_ALPHA 0.125
/* Initial capacity of the member array and id hash (grow by doubling). */
#define MEMBERS_INIT 16
/* A cursor value that takes the most bytes on the wire (5-byte varint):
 * reserved when a slice starts, the real one is smaller. */
#define CURSOR_PLACEHOLDER UINT32_MAX

enum pick_mode {
	PICK_ALIVE,  /* ALIVE only: intermediaries, sync peers */
	PICK_GOSSIP, /* ALIVE, SUSPECT, and DEAD for gossip_to_dead seconds */
};

struct member;

struct mlink {
	struct member *prev, *next;
};

struct mlist {
	struct member *head, *tail;
	size_t n;
};

struct suspicion {
	double start, min, max, deadline;
	unsigned k;	 /* confirmations that drive the timeout to min */
	unsigned n;	 /* confirmations so far */
	unsigned n_from; /* ids in from[] */
	struct swim_id
	    from[SWIM_INDIRECT_MAX + 1]; /* originator + confirmers */
	struct swim_id last_from;	 /* suspecter named in our broadcast */
};

struct member {
	struct swim_id id;
	struct swim_addr addr;
	uint64_t inc;
	uint8_t status; /* enum swim_status */
	bool partial;	/* learned from a header: meta unknown, not spread */
	bool tell;	/* its claims about itself are stale: send it ours */
	bool quiet;	/* learned from a table slice, not disseminated yet */
	int16_t bq_t;	/* transmits so far, -1: not queued */
	uint16_t meta_len;
	uint32_t index; /* slot in members[] */
	float rtt;	/* smoothed probe RTT, seconds, < 0: unknown */
	double status_time;
	double last_heard;
	uint8_t *meta;
	struct suspicion *susp; /* while SUSPECT */
	bool ev_queued;		/* in evq */
	bool reaped;	 /* out of the table, kept for its pending event */
	uint8_t ev_what; /* enum swim_event_what bits pending */
	uint8_t ev_prev; /* status the application last saw (NONE: new) */
	struct mlink bq; /* dissemination bucket */
	struct mlink ev; /* evq */
	struct mlink l;	 /* suspects while SUSPECT, gone while DEAD/LEFT */
};

#define BQ_LINK offsetof(struct member, bq)
#define L_LINK offsetof(struct member, l)
#define EV_LINK offsetof(struct member, ev)

struct probe {
	bool active, indirect;
	struct member *target;
	uint64_t seq, retry_seq; /* first ping; second direct ping, 0: none */
	double sent, ack_deadline, end;
	unsigned expected_nacks, nacks;
};

struct relay {
	bool used, want_nack, nacked;
	uint64_t seq;	  /* our ping to the target */
	uint64_t req_seq; /* the requester's probe */
	struct swim_addr req_addr;
	double nack_at, expire;
};

struct sync_session {
	bool active;
	bool push; /* periodic exchange: also push a slice of our table */
	struct swim_addr peer;
	uint64_t seq;
	uint32_t cursor;
	unsigned slices_left, retries;
	double deadline;
};

struct outpkt {
	struct swim_addr to;
	size_t off, len;
};

struct swim {
	struct swim_config cfg;
	struct member *self;
	struct rng rng;
	uint64_t seq;
	double now;
	bool left, joined;
	unsigned health;

	struct member **members;
	size_t n_members, cap_members, probe_idx;
	struct member **idmap; /* capacity idmap_cap, a power of two */
	size_t idmap_cap;
	size_t n_status[SWIM_NONE];
	uint32_t digest[SWIM_DIGEST_RANGES]; /* see digest_flip() */

	struct mlist bq[SWIM_TRANSMIT_MAX + 1];
	size_t bq_count;
	unsigned bq_limit;
	struct mlist suspects;
	double susp_deadline;
	struct mlist gone;

	struct probe probe;
	double next_probe;
	struct relay relays[SWIM_RELAYS_MAX];
	size_t n_relays;
	double next_gossip, next_seed, next_sync, next_reconnect;
	struct swim_addr seeds[SWIM_SEEDS_MAX];
	size_t n_seeds;
	struct sync_session sync;
	size_t leave_cursor; /* members[] told of our leave so far */
	double deadline;

	/* packet under construction */
	const struct member *pkt_has[2]; /* already in it, skip in the fill */
	bool pkt_digest;		 /* pkt_begin: carry our digest */

	struct outpkt outq[SWIM_OUTQ_MAX];
	size_t out_head, out_n;
	uint8_t *outbuf;
	size_t outbuf_len, outbuf_cap;

	struct mlist evq;
	size_t n_reaped; /* members in evq that left the table */

	struct swim_stats st;
	struct swim_encoder enc;
};

/* ------------------------------------------------------------------ */
/* Intrusive lists. */

static struct mlink *lk(struct member *m, size_t off)
{
	return (struct mlink *)((char *)m + off);
}

static void list_push_head(struct mlist *L, struct member *m, size_t off)
{
	struct mlink *l = lk(m, off);

	l->prev = NULL;
	l->next = L->head;
	if (L->head)
		lk(L->head, off)->prev = m;
	else
		L->tail = m;
	L->head = m;
	L->n++;
}

static void list_push_tail(struct mlist *L, struct member *m, size_t off)
{
	struct mlink *l = lk(m, off);

	l->next = NULL;
	l->prev = L->tail;
	if (L->tail)
		lk(L->tail, off)->next = m;
	else
		L->head = m;
	L->tail = m;
	L->n++;
}

static void list_del(struct mlist *L, struct member *m, size_t off)
{
	struct mlink *l = lk(m, off);

	/* m is on L: its neighbours (or L's ends) point at it. */
	assert(L->n > 0);
	assert(l->prev ? lk(l->prev, off)->next == m : L->head == m);
	assert(l->next ? lk(l->next, off)->prev == m : L->tail == m);
	if (l->prev)
		lk(l->prev, off)->next = l->next;
	else
		L->head = l->next;
	if (l->next)
		lk(l->next, off)->prev = l->prev;
	else
		L->tail = l->prev;
	l->prev = l->next = NULL;
	L->n--;
}

/* ------------------------------------------------------------------ */
/* Member lookup by id. Linear probing, backward-shift deletion. */

static uint64_t id_hash(const struct swim_id *id)
{
	uint64_t a, b;

	memcpy(&a, id->b, 8);
	memcpy(&b, id->b + 8, 8);
	a ^= b * 0x9e3779b97f4a7c15ULL;
	a ^= a >> 33;
	a *= 0xff51afd7ed558ccdULL;
	a ^= a >> 33;
	return a;
}

static struct member *find(const struct swim *s, const struct swim_id *id)
{
	size_t mask = s->idmap_cap - 1;

	for (size_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
		struct member *m = s->idmap[i];

		if (m == NULL || swim_id_eq(&m->id, id))
			return m;
	}
}

static void idmap_put(struct member **map, size_t cap, struct member *m)
{
	size_t mask = cap - 1, i = id_hash(&m->id) & mask;

	while (map[i] != NULL)
		i = (i + 1) & mask;
	map[i] = m;
}

static void idmap_del(struct swim *s, const struct member *m)
{
	size_t mask = s->idmap_cap - 1, i = id_hash(&m->id) & mask;

	while (s->idmap[i] != m) {
		assert(s->idmap[i] != NULL); /* m is in the map */
		i = (i + 1) & mask;
	}
	for (size_t j = (i + 1) & mask; s->idmap[j] != NULL;
	     j = (j + 1) & mask) {
		size_t home = id_hash(&s->idmap[j]->id) & mask;

		/* Move j back into the hole at i unless its home lies
		 * cyclically in (i, j]. */
		if ((j > i && (home <= i || home > j)) ||
		    (j < i && home <= i && home > j)) {
			s->idmap[i] = s->idmap[j];
			i = j;
		}
	}
	s->idmap[i] = NULL;
}

/* Keeps the load factor at most 1/2 and members[] large enough for one
 * more member. */
static int reserve_member(struct swim *s)
{
	if (s->n_members + 1 > s->cap_members) {
		size_t cap = s->cap_members * 2;
		struct member **a = realloc(s->members, cap * sizeof(*a));

		if (a == NULL)
			return -ENOMEM;
		s->members = a;
		s->cap_members = cap;
	}
	if ((s->n_members + 1) * 2 > s->idmap_cap) {
		size_t cap = s->idmap_cap * 2;
		struct member **map = calloc(cap, sizeof(*map));

		if (map == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < s->n_members; i++)
			idmap_put(map, cap, s->members[i]);
		free(s->idmap);
		s->idmap = map;
		s->idmap_cap = cap;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Queues out: events. */

/* Records a change of `m` for the application: queues it, or adds to its
 * pending event. `prev`: its status before this change. */
static void emit(struct swim *s, struct member *m, unsigned what,
		 enum swim_status prev)
{
	if (m == s->self || what == 0)
		return;
	if (m->ev_queued) {
		m->ev_what |= (uint8_t)what;
		return;
	}
	m->ev_queued = true;
	m->ev_what = (uint8_t)what;
	m->ev_prev = (uint8_t)((what & SWIM_EV_NEW) ? SWIM_NONE : prev);
	list_push_tail(&s->evq, m, EV_LINK);
	/* One entry per member in the table, plus reaped ones the
	 * application knew (see evq in the layout comment). */
	assert(s->evq.n <= s->n_members + s->n_reaped);
}

static void member_free(struct member *m)
{
	free(m->meta);
	free(m->susp);
	free(m);
}

/* Takes m off evq; frees it if it had left the table. */
static void ev_unqueue(struct swim *s, struct member *m)
{
	list_del(&s->evq, m, EV_LINK);
	m->ev_queued = false;
	if (m->reaped) {
		assert(s->n_reaped > 0);
		s->n_reaped--;
		member_free(m);
	}
}

bool swim_pop_event(struct swim *s, struct swim_event *ev)
{
	struct member *m;

	while ((m = s->evq.head) != NULL) {
		unsigned what = m->ev_what;

		/* Back where the application last saw it (ALIVE -> SUSPECT
		 * -> ALIVE between two drains): no status change to report. */
		if (m->status == m->ev_prev)
			what &= ~(unsigned)SWIM_EV_STATUS;
		if (what != 0) {
			ev->what = what;
			ev->id = m->id;
			ev->addr = m->addr;
			ev->incarnation = m->inc;
			ev->status = (enum swim_status)m->status;
			ev->prev_status = (enum swim_status)m->ev_prev;
			ev->rtt_ms = m->rtt < 0 ? -1.0 : m->rtt * 1000.0;
			ev->meta_len = m->meta_len;
			if (m->meta_len > 0)
				memcpy(ev->meta, m->meta, m->meta_len);
		}
		ev_unqueue(s, m);
		if (what != 0)
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Member state. */

static size_t live_count(const struct swim *s)
{
	return s->n_status[SWIM_ALIVE] + s->n_status[SWIM_SUSPECT];
}

static void set_status(struct swim *s, struct member *m, enum swim_status st,
		       double now)
{
	enum swim_status old = (enum swim_status)m->status;

	if (old == st)
		return;
	assert(s->n_status[old] > 0);
	if (m != s->self) {
		if (old == SWIM_SUSPECT) {
			list_del(&s->suspects, m, L_LINK);
			free(m->susp);
			m->susp = NULL;
		} else if (old == SWIM_DEAD || old == SWIM_LEFT) {
			list_del(&s->gone, m, L_LINK);
		}
		if (st == SWIM_SUSPECT)
			list_push_tail(&s->suspects, m, L_LINK);
		else if (st == SWIM_DEAD || st == SWIM_LEFT)
			list_push_tail(&s->gone, m, L_LINK);
	}
	s->n_status[old]--;
	s->n_status[st]++;
	m->status = (uint8_t)st;
	m->status_time = now;
}

/*
 * The anti-entropy digest: range r holds the XOR of member_digest() over
 * the members whose id hash falls in r. XOR makes every change O(1): take
 * the old state out, put the new one in. Two tables that agree on every
 * member's (id, incarnation, status) have equal digests.
 */
static unsigned digest_range(const struct member *m)
{
	return (unsigned)(id_hash(&m->id) >> 58); /* top 6 bits: 64 ranges */
}

static uint32_t member_digest(const struct member *m)
{
	uint64_t x;

	/* A record learned from a header lacks its meta: leave it out, so
	 * that our digest differs from that of members who hold it whole and
	 * anti-entropy fetches it. */
	if (m->partial)
		return 0;
	x = id_hash(&m->id) ^ (m->inc * 0x9e3779b97f4a7c15ULL) ^
	    ((uint64_t)m->status << 59);

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	return (uint32_t)(x >> 32);
}

static void digest_flip(struct swim *s, const struct member *m)
{
	s->digest[digest_range(m)] ^= member_digest(m);
}

static void set_partial(struct swim *s, struct member *m, bool partial)
{
	digest_flip(s, m);
	m->partial = partial;
	digest_flip(s, m);
}

/* Every change of a member's incarnation or status goes through here (and
 * of `partial`, through set_partial), so the digest follows. */
static void touch(struct swim *s, struct member *m, uint64_t inc,
		  enum swim_status st, double now)
{
	digest_flip(s, m);
	m->inc = inc;
	set_status(s, m, st, now);
	digest_flip(s, m);
}

static int set_meta(struct member *m, const uint8_t *meta, size_t len)
{
	if (len == 0) {
		free(m->meta);
		m->meta = NULL;
	} else {
		uint8_t *p = realloc(m->meta, len);

		if (p == NULL)
			return -ENOMEM;
		memcpy(p, meta, len);
		m->meta = p;
	}
	m->meta_len = (uint16_t)len;
	return 0;
}

static bool meta_eq(const struct member *m, const uint8_t *meta, size_t len)
{
	return m->meta_len == len &&
	       (len == 0 || memcmp(m->meta, meta, len) == 0);
}

static void bq_push(struct swim *s, struct member *m)
{
	if (m->bq_t >= 0)
		list_del(&s->bq[m->bq_t], m, BQ_LINK);
	else
		s->bq_count++;
	m->bq_t = 0;
	list_push_head(&s->bq[0], m, BQ_LINK);
}

static void bq_drop(struct swim *s, struct member *m)
{
	if (m->bq_t < 0)
		return;
	list_del(&s->bq[m->bq_t], m, BQ_LINK);
	m->bq_t = -1;
	s->bq_count--;
}

static void swap_slots(struct swim *s, size_t a, size_t b)
{
	assert(a < s->n_members && b < s->n_members);
	struct member *t = s->members[a];

	s->members[a] = s->members[b];
	s->members[b] = t;
	s->members[a]->index = (uint32_t)a;
	s->members[b]->index = (uint32_t)b;
}

static struct member *member_add(struct swim *s, const struct swim_id *id,
				 const struct swim_addr *addr, uint64_t inc,
				 double now)
{
	struct member *m;
	size_t slot;

	if (s->n_members >= SWIM_MEMBERS_MAX || reserve_member(s) != 0) {
		s->st.dropped_members++;
		return NULL;
	}
	assert(find(s, id) == NULL); /* one entry per id */
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		s->st.dropped_members++;
		return NULL;
	}
	m->id = *id;
	m->addr = *addr;
	m->inc = inc;
	m->status = SWIM_ALIVE;
	m->bq_t = -1;
	m->rtt = -1;
	m->status_time = now;
	m->last_heard = -1;
	s->n_status[SWIM_ALIVE]++;
	digest_flip(s, m);
	idmap_put(s->idmap, s->idmap_cap, m);
	/* A random slot among those not yet probed this round. */
	slot =
	    s->probe_idx + rng_below(&s->rng, s->n_members - s->probe_idx + 1);
	s->members[s->n_members] = m;
	m->index = (uint32_t)s->n_members;
	s->n_members++;
	swap_slots(s, slot, m->index);
	return m;
}

static void member_remove(struct swim *s, struct member *m)
{
	size_t i = m->index;

	/* Keep the probed / not-yet-probed split of members[] intact. */
	if (i < s->probe_idx) {
		swap_slots(s, i, s->probe_idx - 1);
		i = --s->probe_idx;
	}
	swap_slots(s, i, s->n_members - 1);
	s->n_members--;
	digest_flip(s, m);
	idmap_del(s, m);
	bq_drop(s, m);
	if (m->status == SWIM_SUSPECT)
		list_del(&s->suspects, m, L_LINK);
	else if (m->status == SWIM_DEAD || m->status == SWIM_LEFT)
		list_del(&s->gone, m, L_LINK);
	s->n_status[m->status]--;
	if (s->probe.target == m)
		s->probe.target = NULL;
	free(m->susp);
	m->susp = NULL;
	if (m->ev_queued && (m->ev_what & SWIM_EV_NEW)) {
		/* The application never heard of it: nothing to tell. */
		list_del(&s->evq, m, EV_LINK);
		m->ev_queued = false;
	}
	if (m->ev_queued) {
		m->reaped = true; /* freed when its event is popped */
		s->n_reaped++;
		return;
	}
	member_free(m);
}

static void member_record(const struct member *m, struct swim_record *r)
{
	r->id = m->id;
	r->addr = m->addr;
	r->incarnation = m->inc;
	r->status = (enum swim_status)m->status;
	r->has_from = m->status == SWIM_SUSPECT && m->susp != NULL;
	if (r->has_from)
		r->from = m->susp->last_from;
	if (m->status == SWIM_ALIVE && m->meta_len > 0) {
		r->meta = m->meta;
		r->meta_len = m->meta_len;
	} else {
		r->meta = NULL;
		r->meta_len = 0;
	}
}

static void health_add(struct swim *s, int delta)
{
	int h = (int)s->health + delta;

	if (h < 0)
		h = 0;
	if (h > (int)s->cfg.health_max - 1)
		h = (int)s->cfg.health_max - 1;
	s->health = (unsigned)h;
}

static double scaled(const struct swim *s, double t)
{
	return t * (double)(s->health + 1);
}

/* ------------------------------------------------------------------ */
/* Suspicion (Lifeguard's dynamic timeout, as memberlist's suspicion.go). */

static double suspicion_timeout(const struct suspicion *p)
{
	double frac, t;

	if (p->k == 0)
		return p->min;
	frac = log((double)p->n + 1.0) / log((double)p->k + 1.0);
	t = p->max - frac * (p->max - p->min);
	return t < p->min ? p->min : t;
}

static struct suspicion *suspicion_new(struct swim *s,
				       const struct swim_id *from, double now)
{
	struct suspicion *p = calloc(1, sizeof(*p));
	size_t n = live_count(s);

	if (p == NULL)
		return NULL;
	p->min = s->cfg.suspicion_mult * log10(n > 1 ? (double)n : 1.0) *
		 s->cfg.probe_interval;
	if (p->min < s->cfg.probe_interval)
		p->min = s->cfg.probe_interval;
	p->max = s->cfg.suspicion_max_mult * p->min;
	/* Expect indirect_checks independent confirmations, unless the
	 * cluster is too small to have that many other observers. */
	p->k = s->cfg.indirect_checks;
	if (n < (size_t)p->k + 2)
		p->k = 0;
	p->start = now;
	p->from[0] = *from;
	p->n_from = 1;
	p->last_from = *from;
	p->deadline = now + suspicion_timeout(p);
	if (p->deadline < s->susp_deadline)
		s->susp_deadline = p->deadline;
	return p;
}

/* true if `from` is a new independent confirmation. */
static bool suspicion_confirm(struct swim *s, struct suspicion *p,
			      const struct swim_id *from)
{
	if (p->n >= p->k)
		return false;
	for (unsigned i = 0; i < p->n_from; i++) {
		if (swim_id_eq(&p->from[i], from))
			return false;
	}
	p->from[p->n_from++] = *from;
	p->n++;
	p->last_from = *from;
	p->deadline = p->start + suspicion_timeout(p);
	if (p->deadline < s->susp_deadline)
		s->susp_deadline = p->deadline;
	return true;
}

static void suspect_member(struct swim *s, struct member *m, uint64_t inc,
			   const struct swim_id *from, double now)
{
	enum swim_status prev = (enum swim_status)m->status;
	struct suspicion *p;
	unsigned what = SWIM_EV_STATUS;

	if (prev == SWIM_SUSPECT && m->inc == inc) {
		if (suspicion_confirm(s, m->susp, from))
			bq_push(s, m);
		return;
	}
	p = suspicion_new(s, from, now);
	if (p == NULL)
		return;
	if (m->inc != inc)
		what |= SWIM_EV_INCARNATION;
	if (prev == SWIM_SUSPECT) {
		free(m->susp); /* a new suspicion at a higher incarnation */
		what &= ~(unsigned)SWIM_EV_STATUS;
	}
	touch(s, m, inc, SWIM_SUSPECT, now);
	m->susp = p;
	bq_push(s, m);
	emit(s, m, what, prev);
}

static void mark_gone(struct swim *s, struct member *m, enum swim_status st,
		      uint64_t inc, double now)
{
	enum swim_status prev = (enum swim_status)m->status;
	unsigned what = SWIM_EV_STATUS;

	if (m->inc != inc)
		what |= SWIM_EV_INCARNATION;
	touch(s, m, inc, st, now);
	bq_push(s, m);
	emit(s, m, what, prev);
}

/* One step up, saturating: an incarnation never wraps to a value every
 * other claim would beat. */
static uint64_t inc_next(uint64_t inc)
{
	return inc == UINT64_MAX ? inc : inc + 1;
}

static void refute(struct swim *s, uint64_t heard)
{
	struct member *me = s->self;

	touch(s, me, inc_next(heard > me->inc ? heard : me->inc),
	      (enum swim_status)me->status, s->now);
	bq_push(s, me);
	health_add(s, 1);
	s->st.refutes++;
}

/* A record about ourselves. */
static void apply_self(struct swim *s, const struct swim_record *r)
{
	struct member *me = s->self;

	if (s->left || r->incarnation < me->inc)
		return;
	if (r->status == SWIM_ALIVE && r->incarnation == me->inc &&
	    meta_eq(me, r->meta, r->meta_len))
		return;
	/* Suspected, declared dead or left, or described with an incarnation
	 * or meta we never had (a previous life): outbid it. */
	refute(s, r->incarnation);
}

static void apply_alive(struct swim *s, struct member *m,
			const struct swim_record *r, bool spread, double now)
{
	enum swim_status prev = (enum swim_status)m->status;
	unsigned what = 0;

	if (m->inc != r->incarnation)
		what |= SWIM_EV_INCARNATION;
	if (!swim_addr_eq(&m->addr, &r->addr))
		what |= SWIM_EV_ADDR;
	if (!meta_eq(m, r->meta, r->meta_len)) {
		if (set_meta(m, r->meta, r->meta_len) != 0)
			return;
		what |= SWIM_EV_META;
	}
	m->addr = r->addr;
	set_partial(s, m, false);
	m->quiet = !spread;
	touch(s, m, r->incarnation, SWIM_ALIVE, now);
	if (prev != SWIM_ALIVE)
		what |= SWIM_EV_STATUS;
	if (spread)
		bq_push(s, m);
	emit(s, m, what, prev);
}

/*
 * False if `claimed` is an incarnation `id` cannot have said: above
 * SWIM_INC_LIMIT, or further above what we hold than SWIM_INC_JUMP_MAX
 * (twice that for others than us; see swim.h). Counted and reported.
 */
static bool inc_plausible(struct swim *s, const struct swim_addr *from,
			  const struct swim_id *sender,
			  const struct swim_id *id, uint64_t claimed)
{
	bool self = swim_id_eq(id, &s->self->id);
	const struct member *m = self ? s->self : find(s, id);
	uint64_t known = m ? m->inc : 0;
	uint64_t jump = self ? SWIM_INC_JUMP_MAX : 2 * SWIM_INC_JUMP_MAX;

	if (claimed <= SWIM_INC_LIMIT &&
	    (m == NULL || claimed <= known || claimed - known <= jump))
		return true;
	s->st.dropped_inc_jump++;
	if (s->cfg.reject) {
		struct swim_reject r = {
		    .from = *from,
		    .sender = *sender,
		    .member = *id,
		    .claimed = claimed,
		    .known = known,
		    .self = self,
		};

		s->cfg.reject(s->cfg.reject_ctx, &r);
	}
	return false;
}

/*
 * One record from a datagram. `sender` sent it; `sync` marks anti-entropy
 * records: members new to us from a table slice are not re-disseminated
 * (they announced themselves when they joined; a joiner must not flood
 * the cluster with the table it downloaded).
 */
static void apply_record(struct swim *s, const struct swim_record *r,
			 const struct swim_id *sender, bool sync, double now)
{
	struct member *m;
	const struct swim_id *from;

	if (swim_id_eq(&r->id, &s->self->id)) {
		apply_self(s, r);
		return;
	}
	m = find(s, &r->id);
	if (m == NULL) {
		/* Only ALIVE introduces a member: news of the death of a
		 * stranger, or of one we forgot, is no news. */
		if (r->status != SWIM_ALIVE || s->left)
			return;
		m = member_add(s, &r->id, &r->addr, r->incarnation, now);
		if (m == NULL || set_meta(m, r->meta, r->meta_len) != 0)
			return;
		if (sync)
			m->quiet = true;
		else
			bq_push(s, m);
		emit(s, m, SWIM_EV_NEW, SWIM_NONE);
		return;
	}
	switch (r->status) {
	case SWIM_ALIVE:
		if (r->incarnation > m->inc ||
		    (r->incarnation == m->inc && m->partial &&
		     m->status == SWIM_ALIVE)) {
			apply_alive(s, m, r, true, now);
		} else if (m->quiet && !sync && r->incarnation == m->inc &&
			   m->status == SWIM_ALIVE) {
			/* Gossip about a member we only know from a table
			 * slice: we are one of the infected now, pass it on
			 * (or the slice would make us a dead end). */
			m->quiet = false;
			bq_push(s, m);
		} else if (swim_id_eq(sender, &r->id) && !m->partial &&
			   (r->incarnation < m->inc ||
			    !meta_eq(m, r->meta, r->meta_len))) {
			/* Its own record, older than ours: a restart. */
			m->tell = true;
		}
		break;
	case SWIM_SUSPECT:
		if (r->incarnation < m->inc)
			break;
		if ((m->status == SWIM_DEAD || m->status == SWIM_LEFT) &&
		    r->incarnation == m->inc)
			break;
		from = r->has_from ? &r->from : sender;
		suspect_member(s, m, r->incarnation, from, now);
		break;
	case SWIM_DEAD:
	case SWIM_LEFT:
		if (r->incarnation < m->inc)
			break;
		if ((m->status == SWIM_DEAD || m->status == SWIM_LEFT) &&
		    (r->incarnation == m->inc || m->status == r->status)) {
			touch(s, m, r->incarnation, (enum swim_status)m->status,
			      now);
			break;
		}
		mark_gone(s, m, r->status, r->incarnation, now);
		break;
	default:
		break;
	}
}

/* The header names its sender: learn it, or notice its stale claims. */
static void note_sender(struct swim *s, const struct swim_header *h, double now)
{
	struct member *m = find(s, &h->sender);

	s->joined = true;
	if (m == NULL) {
		if (s->left)
			return;
		m = member_add(s, &h->sender, &h->sender_addr,
			       h->sender_incarnation, now);
		if (m == NULL)
			return;
		set_partial(s, m, true);
		m->last_heard = now;
		emit(s, m, SWIM_EV_NEW, SWIM_NONE);
		return;
	}
	m->last_heard = now;
	if (h->sender_incarnation > m->inc) {
		/* Direct evidence of a newer life whose full record has not
		 * reached us: alive, meta to be learned. */
		struct swim_record r;

		member_record(m, &r);
		r.incarnation = h->sender_incarnation;
		r.addr = h->sender_addr;
		r.status = SWIM_ALIVE;
		apply_alive(s, m, &r, false, now);
		set_partial(s, m, true);
	} else if (!m->partial && (h->sender_incarnation < m->inc ||
				   m->status != SWIM_ALIVE)) {
		m->tell = true;
	}
}

/* ------------------------------------------------------------------ */
/* Sending. */

static void trace_sent(struct swim *s, const struct swim_addr *to, size_t len)
{
	struct swim_trace t = {
	    .sent = true,
	    .now = s->now,
	    .peer = *to,
	    .size = len,
	    .hdr = &s->enc.hdr,
	    .records = s->enc.recs,
	    .n_records = s->enc.n,
	};

	s->cfg.trace(s->cfg.trace_ctx, &t);
}

static unsigned transmit_limit(const struct swim *s)
{
	double n = (double)live_count(s);
	unsigned lim = s->cfg.retransmit_mult * (unsigned)ceil(log10(n + 1.0));

	return lim > SWIM_TRANSMIT_MAX ? SWIM_TRANSMIT_MAX : lim;
}

static bool pkt_has(const struct swim *s, const struct member *m)
{
	return s->pkt_has[0] == m || s->pkt_has[1] == m;
}

/* Starts a datagram to `to` (NULL: an address we know no member at). The
 * buddy system: a member we do not hold ALIVE, or whose claims are stale,
 * gets its record first. */
static int pkt_begin(struct swim *s, enum swim_msg_type type, uint64_t seq,
		     struct member *to, const struct swim_id *target,
		     const struct swim_addr *target_addr)
{
	struct swim_header h;
	int rc;

	memset(&h, 0, sizeof(h));
	h.type = type;
	h.seq = seq;
	h.sender = s->self->id;
	h.sender_addr = s->self->addr;
	h.sender_incarnation = s->self->inc;
	if (target != NULL) {
		h.has_target = true;
		h.target = *target;
		if (target_addr != NULL)
			h.target_addr = *target_addr;
	}
	h.want_nack = type == SWIM_MSG_PING_REQ;
	if (type == SWIM_MSG_SYNC_REQ || type == SWIM_MSG_SYNC_RSP)
		h.cursor = CURSOR_PLACEHOLDER;
	if (s->pkt_digest) {
		h.has_digest = true;
		memcpy(h.digest, s->digest, sizeof(h.digest));
	}
	rc = swim_encoder_begin(&s->enc, s->cfg.cluster_id, &h, s->cfg.mtu);
	if (rc != 0)
		return rc;
	s->pkt_has[0] = s->pkt_has[1] = NULL;
	if (to != NULL && !to->partial &&
	    (to->status != SWIM_ALIVE || to->tell)) {
		struct swim_record r;

		member_record(to, &r);
		if (swim_encoder_add(&s->enc, &r) == 0) {
			s->pkt_has[0] = to;
			to->tell = false;
		}
	}
	return 0;
}

static void pkt_add_self(struct swim *s)
{
	struct swim_record r;

	member_record(s->self, &r);
	if (!pkt_has(s, s->self) && swim_encoder_add(&s->enc, &r) == 0)
		s->pkt_has[1] = s->self;
}

/* Fills the rest of the datagram from the dissemination queue: fewest
 * transmissions first, newest first within a count. */
static void piggyback(struct swim *s)
{
	struct member *picked[SWIM_PACKET_RECORDS_MAX];
	size_t np = 0;
	unsigned limit = transmit_limit(s), skipped = 0;
	struct swim_record r;

	/* The cluster shrank: updates already sent often enough go. */
	for (unsigned t = limit; t < s->bq_limit && t <= SWIM_TRANSMIT_MAX;
	     t++) {
		while (s->bq[t].head != NULL)
			bq_drop(s, s->bq[t].head);
	}
	s->bq_limit = limit;
	for (unsigned t = 0; t < limit; t++) {
		for (struct member *m = s->bq[t].head; m != NULL;
		     m = m->bq.next) {
			int rc;

			if (swim_encoder_room(&s->enc) < RECORD_WIRE_MIN)
				goto done;
			if (pkt_has(s, m))
				continue;
			member_record(m, &r);
			rc = swim_encoder_add(&s->enc, &r);
			if (rc == -EMSGSIZE) {
				if (++skipped > PIGGYBACK_SKIP_MAX)
					goto done;
				continue;
			}
			if (rc != 0)
				goto done;
			picked[np++] = m;
		}
	}
done:
	for (size_t i = 0; i < np; i++) {
		struct member *m = picked[i];
		int t = m->bq_t + 1;

		list_del(&s->bq[m->bq_t], m, BQ_LINK);
		if ((unsigned)t >= limit) {
			m->bq_t = -1;
			s->bq_count--;
		} else {
			m->bq_t = (int16_t)t;
			list_push_head(&s->bq[t], m, BQ_LINK);
		}
	}
	s->st.updates_sent += np;
}

/* Finishes the datagram and queues it for `to`. A GOSSIP with nothing in
 * it is not sent. */
static void pkt_end(struct swim *s, const struct swim_addr *to)
{
	struct outpkt *o;
	int len;

	piggyback(s);
	if (s->enc.hdr.type == SWIM_MSG_GOSSIP && s->enc.n == 0)
		return;
	if (s->out_n >= SWIM_OUTQ_MAX) {
		s->st.dropped_outq++;
		return;
	}
	if (s->outbuf_cap - s->outbuf_len < s->cfg.mtu) {
		size_t cap = s->outbuf_len + s->cfg.mtu;
		uint8_t *b;

		if (cap < 2 * s->outbuf_cap)
			cap = 2 * s->outbuf_cap;
		b = realloc(s->outbuf, cap);
		if (b == NULL) {
			s->st.dropped_outq++;
			return;
		}
		s->outbuf = b;
		s->outbuf_cap = cap;
	}
	len = swim_encoder_finish(&s->enc, s->outbuf + s->outbuf_len,
				  s->outbuf_cap - s->outbuf_len);
	if (len < 0) {
		s->st.dropped_outq++;
		return;
	}
	o = &s->outq[s->out_n++];
	o->to = *to;
	o->off = s->outbuf_len;
	o->len = (size_t)len;
	s->outbuf_len += (size_t)len;
	s->st.packets_sent++;
	s->st.bytes_sent += (uint64_t)len;
	if (s->cfg.trace)
		trace_sent(s, to, (size_t)len);
}

bool swim_pop_packet(struct swim *s, struct swim_addr *to, uint8_t *buf,
		     size_t *len)
{
	while (s->out_head < s->out_n) {
		struct outpkt *o = &s->outq[s->out_head++];

		if (o->len > *len) {
			s->st.dropped_outq++;
			continue;
		}
		*to = o->to;
		memcpy(buf, s->outbuf + o->off, o->len);
		*len = o->len;
		if (s->out_head == s->out_n)
			s->out_head = s->out_n = s->outbuf_len = 0;
		return true;
	}
	s->out_head = s->out_n = s->outbuf_len = 0;
	return false;
}

static void send_simple(struct swim *s, enum swim_msg_type type, uint64_t seq,
			struct member *to, const struct swim_addr *addr)
{
	if (pkt_begin(s, type, seq, to, NULL, NULL) == 0)
		pkt_end(s, addr);
}

static void send_ping(struct swim *s, uint64_t seq, struct member *to)
{
	if (pkt_begin(s, SWIM_MSG_PING, seq, to, &to->id, NULL) == 0)
		pkt_end(s, &to->addr);
}

/* A ping with no target: whoever listens at `addr` answers. Carries our
 * record so the seed learns us from the first datagram, and, if we know a
 * member at that address, the buddy record as any datagram to it would. */
static void send_join(struct swim *s, struct member *to,
		      const struct swim_addr *addr)
{
	if (pkt_begin(s, SWIM_MSG_PING, ++s->seq, to, NULL, NULL) != 0)
		return;
	pkt_add_self(s);
	pkt_end(s, addr);
}

/* ------------------------------------------------------------------ */
/* Picking members. */

static bool pick_ok(const struct swim *s, const struct member *m,
		    enum pick_mode mode, double now)
{
	switch (m->status) {
	case SWIM_ALIVE:
		return true;
	case SWIM_SUSPECT:
		return mode == PICK_GOSSIP;
	case SWIM_DEAD:
		return mode == PICK_GOSSIP &&
		       now - m->status_time < s->cfg.gossip_to_dead;
	default:
		return false;
	}
}

static size_t pick_members(struct swim *s, struct member **out, size_t want,
			   const struct member *exclude, enum pick_mode mode,
			   double now)
{
	size_t got = 0,
	       tries = want * SAMPLE_TRIES_PER_PICK + SAMPLE_TRIES_EXTRA;

	while (got < want && tries-- > 0 && s->n_members > 1) {
		struct member *m = s->members[rng_below(&s->rng, s->n_members)];
		bool dup = false;

		if (m == s->self || m == exclude || !pick_ok(s, m, mode, now))
			continue;
		for (size_t i = 0; i < got && !dup; i++)
			dup = out[i] == m;
		if (!dup)
			out[got++] = m;
	}
	return got;
}

/* ------------------------------------------------------------------ */
/* Failure detection. */

static void shuffle(struct swim *s)
{
	for (size_t i = s->n_members; i > 1; i--)
		swap_slots(s, i - 1, rng_below(&s->rng, i));
}

static struct member *next_probe_target(struct swim *s)
{
	for (size_t tries = 0; tries <= s->n_members; tries++) {
		struct member *m;

		if (s->probe_idx >= s->n_members) {
			shuffle(s);
			s->probe_idx = 0;
		}
		m = s->members[s->probe_idx++];
		if (m != s->self &&
		    (m->status == SWIM_ALIVE || m->status == SWIM_SUSPECT))
			return m;
	}
	return NULL;
}

static void probe_start(struct swim *s, double now)
{
	struct probe *p = &s->probe;
	double period = scaled(s, s->cfg.probe_interval);
	double base = s->next_probe;
	struct member *t;

	if (now - base > period)
		base = now; /* we were not called for a while: no catch-up */
	s->next_probe = base + period;
	t = next_probe_target(s);
	if (t == NULL)
		return;
	memset(p, 0, sizeof(*p));
	p->active = true;
	p->target = t;
	p->seq = ++s->seq;
	p->sent = now;
	p->ack_deadline = now + scaled(s, s->cfg.probe_timeout);
	p->end = s->next_probe;
	s->st.probes++;
	send_ping(s, p->seq, t);
}

static void probe_indirect(struct swim *s, double now)
{
	struct probe *p = &s->probe;
	struct member *via[SWIM_INDIRECT_MAX];
	size_t n;

	p->indirect = true;
	if (p->target == NULL)
		return;
	n = pick_members(s, via, s->cfg.indirect_checks, p->target, PICK_ALIVE,
			 now);
	for (size_t i = 0; i < n; i++) {
		if (pkt_begin(s, SWIM_MSG_PING_REQ, p->seq, via[i],
			      &p->target->id, &p->target->addr) != 0)
			continue;
		pkt_end(s, &via[i]->addr);
		p->expected_nacks++;
		s->st.indirect_probes++;
	}
	/* And a second direct ping, as memberlist's TCP fallback ping: a
	 * probe now fails only if this one is lost too, which at 10% loss
	 * each way makes false suspicions about 5 times rarer for one more
	 * datagram per failed direct ping. Either ping's ack ends the probe. */
	p->retry_seq = ++s->seq;
	send_ping(s, p->retry_seq, p->target);
	s->st.direct_retries++;
}

static void probe_failed(struct swim *s, double now)
{
	struct probe *p = &s->probe;
	struct member *t = p->target;

	p->active = false;
	s->st.probe_failures++;
	/* Lifeguard: nacks that did not come back say the trouble may be
	 * ours; without intermediaries any failure counts against us. */
	if (p->expected_nacks > 0)
		health_add(s, (int)p->expected_nacks -
				  (int)(p->nacks < p->expected_nacks
					    ? p->nacks
					    : p->expected_nacks));
	else
		health_add(s, 1);
	if (t == NULL || (t->status != SWIM_ALIVE && t->status != SWIM_SUSPECT))
		return;
	if (t->status == SWIM_ALIVE)
		s->st.suspects++;
	suspect_member(s, t, t->inc, &s->self->id, now);
}

static void probe_tick(struct swim *s, double now)
{
	struct probe *p = &s->probe;

	if (p->active && !p->indirect && now >= p->ack_deadline)
		probe_indirect(s, now);
	if (p->active && now >= p->end)
		probe_failed(s, now);
	if (!s->left && now >= s->next_probe)
		probe_start(s, now);
}

static void on_ack(struct swim *s, const struct swim_header *h, double now)
{
	struct probe *p = &s->probe;

	if (p->active &&
	    (h->seq == p->seq || (p->retry_seq && h->seq == p->retry_seq))) {
		struct member *t = p->target;

		/* An RTT only from the first ping's timely ack. */
		if (t != NULL && !p->indirect &&
		    swim_id_eq(&h->sender, &t->id)) {
			float rtt = (float)(now - p->sent);

			t->rtt = t->rtt < 0 ? rtt
					    : t->rtt + (float)RTT_ALPHA *
							   (rtt - t->rtt);
		}
		p->active = false;
		health_add(s, -1);
		return;
	}
	for (size_t i = 0; s->n_relays > 0 && i < SWIM_RELAYS_MAX; i++) {
		struct relay *r = &s->relays[i];

		if (!r->used || r->seq != h->seq)
			continue;
		send_simple(s, SWIM_MSG_ACK, r->req_seq, NULL, &r->req_addr);
		r->used = false;
		s->n_relays--;
		return;
	}
}

static void on_ping_req(struct swim *s, const struct swim_addr *from,
			const struct swim_header *h, double now)
{
	struct relay *r = NULL;
	struct member *t;

	for (size_t i = 0; i < SWIM_RELAYS_MAX && r == NULL; i++) {
		if (!s->relays[i].used)
			r = &s->relays[i];
	}
	if (r == NULL) {
		s->st.dropped_relays++;
		return;
	}
	memset(r, 0, sizeof(*r));
	r->used = true;
	r->seq = ++s->seq;
	r->req_seq = h->seq;
	r->req_addr = *from;
	r->want_nack = h->want_nack;
	r->nack_at = now + s->cfg.nack_ratio * s->cfg.probe_timeout;
	r->expire = now + s->cfg.probe_interval;
	s->n_relays++;
	s->st.relays++;
	t = find(s, &h->target);
	if (pkt_begin(s, SWIM_MSG_PING, r->seq, t, &h->target, NULL) == 0)
		pkt_end(s, &h->target_addr);
}

static void relays_tick(struct swim *s, double now)
{
	for (size_t i = 0; s->n_relays > 0 && i < SWIM_RELAYS_MAX; i++) {
		struct relay *r = &s->relays[i];

		if (!r->used)
			continue;
		if (r->want_nack && !r->nacked && now >= r->nack_at) {
			r->nacked = true;
			send_simple(s, SWIM_MSG_NACK, r->req_seq, NULL,
				    &r->req_addr);
			s->st.nacks_sent++;
		}
		if (now >= r->expire) {
			r->used = false;
			s->n_relays--;
		}
	}
}

static void suspicion_tick(struct swim *s, double now)
{
	double next = INFINITY;
	struct member *m, *nx;

	if (now < s->susp_deadline)
		return;
	for (m = s->suspects.head; m != NULL; m = nx) {
		nx = m->l.next;
		if (m->susp->deadline <= now) {
			s->st.deaths++;
			mark_gone(s, m, SWIM_DEAD, m->inc, now);
		} else if (m->susp->deadline < next) {
			next = m->susp->deadline;
		}
	}
	s->susp_deadline = next;
}

/* ------------------------------------------------------------------ */
/* Dissemination, join, anti-entropy, reaping. */

/*
 * After swim_leave(): besides the epidemic, tell every live member
 * directly, SWIM_GOSSIP_NODES_MAX per gossip tick. An epidemic leaves a
 * member uninformed with probability ~e^-(retransmits); a leave happens
 * once per process lifetime, so a datagram per member is worth certainty.
 */
static void leave_tick(struct swim *s)
{
	size_t sent = 0;

	while (sent < SWIM_GOSSIP_NODES_MAX && s->leave_cursor < s->n_members) {
		struct member *m = s->members[s->leave_cursor++];

		if (m == s->self ||
		    (m->status != SWIM_ALIVE && m->status != SWIM_SUSPECT))
			continue;
		if (pkt_begin(s, SWIM_MSG_GOSSIP, ++s->seq, m, NULL, NULL) != 0)
			continue;
		pkt_add_self(s);
		pkt_end(s, &m->addr);
		sent++;
	}
}

static void gossip_tick(struct swim *s, double now)
{
	struct member *to[SWIM_GOSSIP_NODES_MAX];
	size_t n;

	if (now < s->next_gossip)
		return;
	s->next_gossip += s->cfg.gossip_interval;
	if (s->next_gossip <= now)
		s->next_gossip = now + s->cfg.gossip_interval;
	if (s->left)
		leave_tick(s);
	if (s->bq_count == 0)
		return;
	n = pick_members(s, to, s->cfg.gossip_nodes, NULL, PICK_GOSSIP, now);
	for (size_t i = 0; i < n && s->bq_count > 0; i++) {
		if (pkt_begin(s, SWIM_MSG_GOSSIP, ++s->seq, to[i], NULL,
			      NULL) == 0)
			pkt_end(s, &to[i]->addr);
	}
}

/* The member at an address, live ones first; NULL if none. A scan: it
 * runs once per seed per reconnect_interval. */
static struct member *member_at(const struct swim *s, const struct swim_addr *a)
{
	struct member *found = NULL;

	for (size_t i = 0; i < s->n_members; i++) {
		struct member *m = s->members[i];

		if (m == s->self || !swim_addr_eq(&m->addr, a))
			continue;
		if (m->status == SWIM_ALIVE || m->status == SWIM_SUSPECT)
			return m;
		found = m;
	}
	return found;
}

static void seeds_tick(struct swim *s, double now)
{
	if (s->n_seeds == 0 || now < s->next_seed || s->left)
		return;
	for (size_t i = 0; i < s->n_seeds; i++) {
		struct member *m = member_at(s, &s->seeds[i]);

		if (!s->joined || m == NULL ||
		    (m->status != SWIM_ALIVE && m->status != SWIM_SUSPECT))
			send_join(s, m, &s->seeds[i]);
	}
	s->next_seed = now + (s->joined ? s->cfg.reconnect_interval
					: s->cfg.probe_interval);
}

/*
 * Adds the records of a table slice, starting at slot `cursor` of the id
 * hash; returns the slot to continue from, 0 at the end. Hash order, unlike
 * the probe order, does not change as members come and go (only when the
 * table doubles), so consecutive slices of one sync neither skip nor repeat
 * members.
 */
static uint32_t add_slice(struct swim *s, uint32_t cursor)
{
	size_t i;

	for (i = cursor; i < s->idmap_cap; i++) {
		struct member *m = s->idmap[i];
		struct swim_record r;

		if (m == NULL || m == s->self || m->partial)
			continue;
		member_record(m, &r);
		if (swim_encoder_add(&s->enc, &r) != 0)
			break;
	}
	return i >= s->idmap_cap ? 0 : (uint32_t)i;
}

/* Full table pull (join, healed partition): one slice per round trip,
 * each request naming the slot to continue from. */
static void sync_send(struct swim *s, double now)
{
	struct sync_session *q = &s->sync;

	q->seq = ++s->seq;
	q->deadline = now + s->cfg.probe_interval;
	if (pkt_begin(s, SWIM_MSG_SYNC_REQ, q->seq, NULL, NULL, NULL) != 0)
		return;
	swim_encoder_set_cursor(&s->enc, q->cursor);
	pkt_add_self(s);
	pkt_end(s, &q->peer);
}

static void sync_start(struct swim *s, const struct swim_addr *peer, double now)
{
	struct sync_session *q = &s->sync;

	memset(q, 0, sizeof(*q));
	q->active = true;
	q->peer = *peer;
	/* Bounds a session even if the peer's cursors never reach the end. */
	q->slices_left = SWIM_MEMBERS_MAX;
	s->st.syncs++;
	sync_send(s, now);
}

/* Periodic anti-entropy: our digest to `to`, which answers with the
 * records of the ranges where its table differs from ours. */
static void digest_send(struct swim *s, struct member *to)
{
	s->pkt_digest = true;
	if (pkt_begin(s, SWIM_MSG_SYNC_REQ, ++s->seq, to, NULL, NULL) == 0) {
		swim_encoder_set_cursor(&s->enc, 0);
		pkt_add_self(s);
		pkt_end(s, &to->addr);
		s->st.syncs++;
	}
	s->pkt_digest = false;
}

static void digest_answer(struct swim *s, const struct swim_addr *from,
			  const struct swim_header *h)
{
	uint64_t diff = 0;
	size_t start;

	for (unsigned r = 0; r < SWIM_DIGEST_RANGES; r++) {
		if (h->digest[r] != s->digest[r])
			diff |= 1ULL << r;
	}
	if (diff == 0)
		return; /* same table: nothing to say */
	if (pkt_begin(s, SWIM_MSG_SYNC_RSP, h->seq, find(s, &h->sender), NULL,
		      NULL) != 0)
		return;
	swim_encoder_set_cursor(&s->enc, 0);
	pkt_add_self(s);
	/* From a random member on, so that when the differing ranges hold
	 * more than a datagram, successive exchanges cover all of them. */
	start = rng_below(&s->rng, s->n_members);
	for (size_t k = 0; k < s->n_members; k++) {
		struct member *m = s->members[(start + k) % s->n_members];
		struct swim_record r;
		int rc;

		if (m == s->self || m->partial ||
		    !((diff >> digest_range(m)) & 1))
			continue;
		member_record(m, &r);
		rc = swim_encoder_add(&s->enc, &r);
		if (rc == -ENOSPC ||
		    (rc == -EMSGSIZE &&
		     swim_encoder_room(&s->enc) < RECORD_WIRE_MIN))
			break;
	}
	pkt_end(s, from);
}

static void on_sync_req(struct swim *s, const struct swim_addr *from,
			const struct swim_header *h)
{
	uint32_t cursor = h->cursor;

	if (h->has_digest) {
		digest_answer(s, from, h);
		return;
	}
	if (pkt_begin(s, SWIM_MSG_SYNC_RSP, h->seq, find(s, &h->sender), NULL,
		      NULL) != 0)
		return;
	pkt_add_self(s);
	if (cursor < s->idmap_cap)
		cursor = add_slice(s, cursor);
	else
		cursor = 0;
	swim_encoder_set_cursor(&s->enc, cursor);
	pkt_end(s, from);
}

static void on_sync_rsp(struct swim *s, const struct swim_addr *from,
			const struct swim_header *h, double now)
{
	struct sync_session *q = &s->sync;

	/* Records were merged already; only a full sync continues. */
	if (!q->active || h->seq != q->seq || !swim_addr_eq(from, &q->peer))
		return;
	if (h->cursor == 0 || --q->slices_left == 0) {
		q->active = false;
		return;
	}
	q->cursor = h->cursor;
	q->retries = 0;
	sync_send(s, now);
}

static void sync_tick(struct swim *s, double now)
{
	struct sync_session *q = &s->sync;

	if (q->active && now >= q->deadline) {
		if (q->retries++ < SYNC_RETRIES)
			sync_send(s, now);
		else
			q->active = false;
	}
	if (now >= s->next_sync) {
		struct member *m;

		s->next_sync = now + s->cfg.sync_interval;
		if (!s->left &&
		    pick_members(s, &m, 1, NULL, PICK_ALIVE, now) == 1)
			digest_send(s, m);
	}
}

/* One random DEAD member gets a ping: if it is alive after all (a healed
 * partition), it learns it was declared dead from the record the ping
 * carries, and refutes. */
static void reconnect_tick(struct swim *s, double now)
{
	size_t n_dead = s->n_status[SWIM_DEAD], k;

	if (now < s->next_reconnect)
		return;
	s->next_reconnect = now + s->cfg.reconnect_interval;
	if (s->left || n_dead == 0)
		return;
	k = rng_below(&s->rng, n_dead);
	for (struct member *m = s->gone.head; m != NULL; m = m->l.next) {
		if (m->status != SWIM_DEAD || k-- > 0)
			continue;
		send_ping(s, ++s->seq, m);
		return;
	}
}

static void reap_tick(struct swim *s, double now)
{
	struct member *m;

	/* Same expression as in update_deadline(): a tick at exactly that
	 * deadline must reap, whatever the rounding. */
	while ((m = s->gone.head) != NULL &&
	       now >= m->status_time + s->cfg.dead_reap_time) {
		emit(s, m, SWIM_EV_FORGOTTEN, (enum swim_status)m->status);
		member_remove(s, m);
	}
}

static double min2(double a, double b)
{
	return a < b ? a : b;
}

/*
 * The invariants the layout comment states, checked after every entry
 * point (O(transmit limit)): every member counted under one status and
 * on the list its status puts it on (ourselves on none), the broadcast
 * count matching its lists, the id map at most half full, one pending
 * event per member at most.
 */
static void check_invariants(const struct swim *s)
{
	size_t n = 0, bq = 0;

	for (int st = 0; st < SWIM_NONE; st++)
		n += s->n_status[st];
	assert(n == s->n_members);
	assert(s->members[s->self->index] == s->self);
	assert(s->probe_idx <= s->n_members);
	assert(2 * s->n_members <= s->idmap_cap);
	assert(s->suspects.n == s->n_status[SWIM_SUSPECT]);
	assert(s->gone.n + (s->self->status == SWIM_LEFT) ==
	       s->n_status[SWIM_DEAD] + s->n_status[SWIM_LEFT]);
	/* Queued updates sit below bq_limit (piggyback() drops the rest
	 * when the limit shrinks, before lowering it). */
	for (size_t t = 0; t < s->bq_limit; t++)
		bq += s->bq[t].n;
	assert(bq == s->bq_count && bq <= s->n_members);
	assert(s->evq.n <= s->n_members + s->n_reaped);
	assert(s->n_reaped <= SWIM_MEMBERS_MAX);
	assert(s->n_relays <= SWIM_RELAYS_MAX);
	assert(s->out_head <= s->out_n && s->out_n <= SWIM_OUTQ_MAX);
	(void)n;
	(void)bq;
}

static void update_deadline(struct swim *s)
{
	const struct probe *p = &s->probe;
	double d = s->susp_deadline;

	if (p->active)
		d = min2(d,
			 p->indirect ? p->end : min2(p->ack_deadline, p->end));
	if (!s->left)
		d = min2(d, min2(s->next_probe, s->next_sync));
	if (s->bq_count > 0 || (s->left && s->leave_cursor < s->n_members))
		d = min2(d, s->next_gossip);
	if (s->n_seeds > 0 && !s->left)
		d = min2(d, s->next_seed);
	if (s->n_status[SWIM_DEAD] > 0 && !s->left)
		d = min2(d, s->next_reconnect);
	if (s->sync.active)
		d = min2(d, s->sync.deadline);
	if (s->gone.head != NULL)
		d = min2(d, s->gone.head->status_time + s->cfg.dead_reap_time);
	for (size_t i = 0; s->n_relays > 0 && i < SWIM_RELAYS_MAX; i++) {
		const struct relay *r = &s->relays[i];

		if (!r->used)
			continue;
		d = min2(d, r->expire);
		if (r->want_nack && !r->nacked)
			d = min2(d, r->nack_at);
	}
	s->deadline = d;
	check_invariants(s);
}

/* ------------------------------------------------------------------ */
/* Public entry points. */

void swim_config_defaults(struct swim_config *c)
{
	memset(c, 0, sizeof(*c));
	c->mtu = 1400;
	c->probe_interval = 1.0;
	c->probe_timeout = 0.5;
	c->indirect_checks = 3;
	c->nack_ratio = 0.8;
	c->suspicion_mult = 4;
	c->suspicion_max_mult = 6;
	c->retransmit_mult = 4;
	c->gossip_interval = 0.2;
	c->gossip_nodes = 3;
	c->gossip_to_dead = 30;
	c->sync_interval = 10;
	c->reconnect_interval = 5;
	c->dead_reap_time = 120;
	c->health_max = 8;
}

int swim_config_check(const struct swim_config *c, char *err, size_t errlen)
{
	const char *bad = NULL;

	if (memchr(c->cluster_id, 0, sizeof(c->cluster_id)) == NULL)
		bad = "cluster_id";
	else if (c->mtu < SWIM_MTU_MIN || c->mtu > SWIM_MTU_MAX)
		bad = "mtu";
	else if (!(c->probe_interval > 0))
		bad = "probe_interval";
	else if (!(c->probe_timeout > 0) ||
		 c->probe_timeout > c->probe_interval)
		bad = "probe_timeout";
	else if (c->indirect_checks > SWIM_INDIRECT_MAX)
		bad = "indirect_checks";
	else if (!(c->nack_ratio > 0) || c->nack_ratio > 1)
		bad = "nack_ratio";
	else if (!(c->suspicion_mult > 0))
		bad = "suspicion_mult";
	else if (!(c->suspicion_max_mult >= 1))
		bad = "suspicion_max_mult";
	else if (c->retransmit_mult < 1 ||
		 c->retransmit_mult > SWIM_RETRANSMIT_MULT_MAX)
		bad = "retransmit_mult";
	else if (!(c->gossip_interval > 0))
		bad = "gossip_interval";
	else if (c->gossip_nodes > SWIM_GOSSIP_NODES_MAX)
		bad = "gossip_nodes";
	else if (!(c->gossip_to_dead >= 0))
		bad = "gossip_to_dead";
	else if (!(c->sync_interval > 0))
		bad = "sync_interval";
	else if (!(c->reconnect_interval > 0))
		bad = "reconnect_interval";
	else if (!(c->dead_reap_time > 0))
		bad = "dead_reap_time";
	else if (c->health_max < 1 || c->health_max > SWIM_HEALTH_MAX)
		bad = "health_max";
	if (bad == NULL)
		return 0;
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "swim: %s out of range", bad);
	return -EINVAL;
}

int swim_new(const struct swim_config *cfg, const char *self_id,
	     const struct swim_addr *self_addr, uint64_t seed, double now,
	     struct swim **out)
{
	struct swim *s;
	struct swim_id id;
	uint64_t x = seed;

	if (swim_config_check(cfg, NULL, 0) != 0 ||
	    swim_id_parse(self_id, &id) != 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->cfg = *cfg;
	rng_seed(&s->rng, x);
	s->members = calloc(MEMBERS_INIT, sizeof(*s->members));
	s->idmap = calloc(2 * MEMBERS_INIT, sizeof(*s->idmap));
	if (s->members == NULL || s->idmap == NULL) {
		swim_free(s);
		return -ENOMEM;
	}
	s->cap_members = MEMBERS_INIT;
	s->idmap_cap = 2 * MEMBERS_INIT;
	s->self = member_add(s, &id, self_addr, 0, now);
	if (s->self == NULL) {
		swim_free(s);
		return -ENOMEM;
	}
	/* Sequence numbers start at random so that the acks for a previous
	 * life's probes do not match this one's. */
	s->seq = rng_next(&s->rng) >> 32;
	s->now = now;
	s->susp_deadline = INFINITY;
	s->bq_limit = SWIM_TRANSMIT_MAX;
	/* Random phases, so that members started together do not probe,
	 * gossip and sync in lockstep. */
	s->next_probe = now + rng_unit(&s->rng) * cfg->probe_interval;
	s->next_gossip = now + rng_unit(&s->rng) * cfg->gossip_interval;
	s->next_sync = now + (0.5 + rng_unit(&s->rng)) * cfg->sync_interval;
	s->next_reconnect =
	    now + (0.5 + rng_unit(&s->rng)) * cfg->reconnect_interval;
	s->next_seed = now;
	bq_push(s, s->self);
	update_deadline(s);
	*out = s;
	return 0;
}

void swim_free(struct swim *s)
{
	if (s == NULL)
		return;
	for (struct member *m = s->evq.head, *nx; m != NULL; m = nx) {
		nx = m->ev.next;
		if (m->reaped)
			member_free(m); /* in no table any more */
	}
	for (size_t i = 0; i < s->n_members; i++)
		member_free(s->members[i]);
	free(s->members);
	free(s->idmap);
	free(s->outbuf);
	free(s);
}

int swim_add_seed(struct swim *s, const struct swim_addr *addr, double now)
{
	s->now = now;
	if (swim_addr_eq(addr, &s->self->addr))
		return 0; /* a coordinator listing itself */
	for (size_t i = 0; i < s->n_seeds; i++) {
		if (swim_addr_eq(&s->seeds[i], addr))
			return -EEXIST;
	}
	if (s->n_seeds >= SWIM_SEEDS_MAX)
		return -ENOSPC;
	s->seeds[s->n_seeds++] = *addr;
	if (!s->left)
		send_join(s, member_at(s, addr), addr);
	if (s->next_seed < now + s->cfg.probe_interval && !s->joined)
		s->next_seed = now + s->cfg.probe_interval;
	update_deadline(s);
	return 0;
}

/*
 * Tests and benchmarks only (tests/lib/sim.c, sim_bootstrap()): puts a
 * member in the table as if the epidemic had already spread it, so a
 * simulated cluster of 10,000 forms without a join storm. No event, no
 * dissemination; counts as joined (no table pull on first contact).
 */
int swim_add_member(struct swim *s, const struct swim_id *id,
		    const struct swim_addr *addr, uint64_t inc, double now)
{
	struct member *m;

	if (s->left)
		return -EPERM;
	if (find(s, id) != NULL)
		return -EEXIST;
	if (s->n_members >= SWIM_MEMBERS_MAX)
		return -ENOSPC;
	s->now = now;
	m = member_add(s, id, addr, inc, now);
	if (m == NULL)
		return -ENOMEM;
	s->joined = true;
	update_deadline(s);
	return 0;
}

static void trace_recv(struct swim *s, const struct swim_addr *from, size_t len,
		       int error, const struct swim_packet *p)
{
	struct swim_trace t = {
	    .sent = false,
	    .now = s->now,
	    .peer = *from,
	    .size = len,
	    .error = error,
	    .hdr = p ? &p->hdr : NULL,
	    .records = p ? p->records : NULL,
	    .n_records = p ? p->n_records : 0,
	};

	s->cfg.trace(s->cfg.trace_ctx, &t);
}

/*
 * A datagram's records are looked up one after the other, each lookup two
 * dependent cache misses (hash slot, then member) in a large cluster. Asking
 * for all the slots, then all the members, up front lets the misses
 * overlap; it changes nothing but speed.
 */
static void prefetch_records(const struct swim *s, const struct swim_packet *p)
{
	size_t mask = s->idmap_cap - 1;

	for (size_t i = 0; i < p->n_records; i++)
		__builtin_prefetch(
		    &s->idmap[id_hash(&p->records[i].id) & mask]);
	for (size_t i = 0; i < p->n_records; i++) {
		const struct member *m =
		    s->idmap[id_hash(&p->records[i].id) & mask];

		if (m != NULL)
			__builtin_prefetch(m);
	}
}

static void process(struct swim *s, const struct swim_addr *from,
		    const struct swim_packet *p, double now)
{
	const struct swim_header *h = &p->hdr;
	bool sync =
	    h->type == SWIM_MSG_SYNC_REQ || h->type == SWIM_MSG_SYNC_RSP;
	bool was_joined = s->joined;
	struct member *sm = find(s, &h->sender);
	bool was_gone =
	    sm != NULL && (sm->status == SWIM_DEAD || sm->status == SWIM_LEFT);

	/* A sender that misstates its own incarnation is not believed on
	 * anything else either. */
	if (!inc_plausible(s, from, &h->sender, &h->sender,
			   h->sender_incarnation))
		return;
	prefetch_records(s, p);
	for (size_t i = 0; i < p->n_records; i++) {
		const struct swim_record *r = &p->records[i];

		if (inc_plausible(s, from, &h->sender, &r->id, r->incarnation))
			apply_record(s, r, &h->sender, sync, now);
	}
	note_sender(s, h, now);

	switch (h->type) {
	case SWIM_MSG_PING:
		if (h->has_target && !swim_id_eq(&h->target, &s->self->id)) {
			/* Meant for an earlier owner of our address: stay
			 * silent so that it is found dead. */
			s->st.dropped_misdirected++;
			break;
		}
		send_simple(s, SWIM_MSG_ACK, h->seq, find(s, &h->sender), from);
		break;
	case SWIM_MSG_ACK:
		on_ack(s, h, now);
		break;
	case SWIM_MSG_PING_REQ:
		on_ping_req(s, from, h, now);
		break;
	case SWIM_MSG_NACK:
		if (s->probe.active && h->seq == s->probe.seq) {
			s->probe.nacks++;
			s->st.nacks_received++;
		}
		break;
	case SWIM_MSG_SYNC_REQ:
		on_sync_req(s, from, h);
		break;
	case SWIM_MSG_SYNC_RSP:
		on_sync_rsp(s, from, h, now);
		break;
	case SWIM_MSG_GOSSIP:
	default:
		break;
	}
	/* First contact, or contact again with a member we had given up
	 * (a healed partition): download the peer's table, which holds what
	 * we missed while apart. */
	if ((!was_joined || (was_gone && sm->status == SWIM_ALIVE)) &&
	    !s->left && !s->sync.active)
		sync_start(s, from, now);
}

void swim_recv(struct swim *s, const struct swim_addr *from, const uint8_t *pkt,
	       size_t len, double now)
{
	struct swim_decoder dec;
	struct swim_packet p;
	int rc;

	s->now = now;
	s->st.packets_received++;
	s->st.bytes_received += len;
	swim_decoder_init(&dec);
	rc = swim_decode(&dec, s->cfg.cluster_id, pkt, len, &p);
	if (s->cfg.trace)
		trace_recv(s, from, len, rc, rc == 0 ? &p : NULL);
	switch (rc) {
	case 0:
		break;
	case -EPROTONOSUPPORT:
		s->st.dropped_bad_version++;
		return;
	case -EACCES:
		s->st.dropped_bad_cluster++;
		return;
	default:
		s->st.dropped_malformed++;
		return;
	}
	if (swim_id_eq(&p.hdr.sender, &s->self->id)) {
		s->st.dropped_misdirected++;
	} else {
		process(s, from, &p, now);
	}
	swim_decoder_release(&dec);
	update_deadline(s);
}

void swim_tick(struct swim *s, double now)
{
	s->now = now;
	probe_tick(s, now);
	relays_tick(s, now);
	suspicion_tick(s, now);
	gossip_tick(s, now);
	seeds_tick(s, now);
	sync_tick(s, now);
	reconnect_tick(s, now);
	reap_tick(s, now);
	update_deadline(s);
}

double swim_next_deadline(const struct swim *s)
{
	return s->deadline;
}

void swim_leave(struct swim *s, double now)
{
	struct member *to[SWIM_GOSSIP_NODES_MAX];
	size_t n;

	if (s->left)
		return;
	s->now = now;
	s->left = true;
	s->probe.active = false;
	s->sync.active = false;
	touch(s, s->self, inc_next(s->self->inc), SWIM_LEFT, now);
	bq_push(s, s->self);
	/* Tell a few members at once rather than at the next gossip tick. */
	n = pick_members(s, to, s->cfg.gossip_nodes, NULL, PICK_GOSSIP, now);
	for (size_t i = 0; i < n; i++) {
		if (pkt_begin(s, SWIM_MSG_GOSSIP, ++s->seq, to[i], NULL,
			      NULL) == 0)
			pkt_end(s, &to[i]->addr);
	}
	update_deadline(s);
}

int swim_ping(struct swim *s, const struct swim_id *id, double now)
{
	struct member *m = find(s, id);

	if (s->left)
		return -EPERM;
	if (m == NULL || m == s->self ||
	    (m->status != SWIM_ALIVE && m->status != SWIM_SUSPECT))
		return -ENOENT;
	s->now = now;
	send_ping(s, ++s->seq, m);
	update_deadline(s);
	return 0;
}

int swim_set_meta(struct swim *s, const uint8_t *meta, size_t len, double now)
{
	int rc;

	s->now = now;
	if (len > SWIM_META_MAX)
		return -EMSGSIZE;
	if (s->left)
		return -EPERM;
	if (meta_eq(s->self, meta, len))
		return 0;
	rc = set_meta(s->self, meta, len);
	if (rc != 0)
		return rc;
	touch(s, s->self, inc_next(s->self->inc), SWIM_ALIVE, now);
	bq_push(s, s->self);
	update_deadline(s);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Introspection. */

static void member_info(const struct member *m, bool self,
			struct swim_member_info *out)
{
	out->id = m->id;
	out->addr = m->addr;
	out->status = (enum swim_status)m->status;
	out->incarnation = m->inc;
	out->is_self = self;
	out->status_since = m->status_time;
	out->last_heard = m->last_heard;
	out->rtt_ms = m->rtt < 0 ? -1.0 : m->rtt * 1000.0;
	out->meta_len = m->meta_len;
	if (m->meta_len > 0)
		memcpy(out->meta, m->meta, m->meta_len);
}

size_t swim_member_count(const struct swim *s)
{
	return s->n_members;
}

int swim_member_get(const struct swim *s, size_t i,
		    struct swim_member_info *out)
{
	if (i >= s->n_members)
		return -ENOENT;
	member_info(s->members[i], s->members[i] == s->self, out);
	return 0;
}

int swim_member_find(const struct swim *s, const struct swim_id *id,
		     struct swim_member_info *out)
{
	const struct member *m = find(s, id);

	if (m == NULL)
		return -ENOENT;
	member_info(m, m == s->self, out);
	return 0;
}

enum swim_status swim_member_status(const struct swim *s,
				    const struct swim_id *id)
{
	const struct member *m = find(s, id);

	return m == NULL ? SWIM_NONE : (enum swim_status)m->status;
}

const struct swim_id *swim_self_id(const struct swim *s)
{
	return &s->self->id;
}

uint64_t swim_self_incarnation(const struct swim *s)
{
	return s->self->inc;
}

void swim_stats_get(const struct swim *s, struct swim_stats *out)
{
	*out = s->st;
	out->local_health = s->health;
	out->members = s->n_members;
	out->alive = s->n_status[SWIM_ALIVE];
	out->suspect = s->n_status[SWIM_SUSPECT];
	out->dead = s->n_status[SWIM_DEAD];
	out->left = s->n_status[SWIM_LEFT];
	out->broadcasts = s->bq_count;
	out->incarnation = s->self->inc;
}
