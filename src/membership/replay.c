/* replay — per-sender anti-replay windows; see include/proxystone/replay.h. */
#include "proxystone/replay.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(REPLAY_WINDOW == 64, "the window is one uint64_t bitmap");
_Static_assert(REPLAY_HASH_KEY_LEN == crypto_shorthash_KEYBYTES, "hash key");

/* Largest table: indexes are uint32_t with 0 meaning "none". */
#define REPLAY_SENDERS_LIMIT (1u << 30)
/* Clock gaps are clamped to +-2^52 ms (142,000 years) so that in
 * microseconds, and as differences of two, they never overflow int64_t:
 * sent_ms is authenticated, but comes from another process. */
#define GAP_LIMIT_MS ((int64_t)1 << 52)
/* Sender time counted towards one drift follow: more than enough for the
 * largest follow (REPLAY_MAX_AGE / REPLAY_FOLLOW_DIV), small enough that
 * times REPLAY_DRIFT_MAX_PPM it cannot overflow. */
#define FOLLOW_SPAN_MAX_MS ((uint64_t)1 << 32)

struct life {
	uint64_t boot;
	uint64_t top;  /* highest sequence number accepted */
	uint64_t seen; /* bit i: top - i accepted */
	uint64_t used; /* tick of the last accepted datagram; 0: empty slot */
	int64_t offset_us;  /* now - sent of the fastest delivery, followed up
			     * for drift; microseconds, so that a follow of a
			     * fraction of a millisecond is not rounded away */
	uint64_t last_sent; /* largest sent_ms accepted */
};

struct sender {
	uint8_t id[REPLAY_ID_LEN];
	uint32_t hnext;	       /* next in the bucket chain (index + 1) */
	uint32_t newer, older; /* recency list (index + 1) */
	struct life lives[REPLAY_LIVES];
};

struct replay {
	struct sender *s;
	size_t max, n;
	uint32_t *buckets; /* index + 1 of the first sender in each chain */
	size_t nbuckets;   /* a power of two, >= 2 * max */
	uint32_t newest, oldest;
	uint64_t tick, evictions;
	uint8_t key[REPLAY_HASH_KEY_LEN];
};

int replay_new(size_t max_senders, const uint8_t hash_key[REPLAY_HASH_KEY_LEN],
	       struct replay **out)
{
	if (max_senders == 0 || max_senders > REPLAY_SENDERS_LIMIT)
		return -EINVAL;
	struct replay *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->max = max_senders;
	r->nbuckets = 2;
	while (r->nbuckets < 2 * max_senders)
		r->nbuckets *= 2;
	r->s = calloc(max_senders, sizeof(*r->s));
	r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
	if (!r->s || !r->buckets) {
		replay_free(r);
		return -ENOMEM;
	}
	memcpy(r->key, hash_key, sizeof(r->key));
	*out = r;
	return 0;
}

void replay_free(struct replay *r)
{
	if (!r)
		return;
	free(r->s);
	free(r->buckets);
	free(r);
}

static size_t bucket_of(const struct replay *r, const uint8_t *id)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;
	crypto_shorthash(h, id, REPLAY_ID_LEN, r->key);
	memcpy(&v, h, sizeof(v));
	return (size_t)(v & (r->nbuckets - 1));
}

static void list_unlink(struct replay *r, uint32_t i)
{
	struct sender *e = &r->s[i - 1];
	if (e->newer)
		r->s[e->newer - 1].older = e->older;
	else
		r->newest = e->older;
	if (e->older)
		r->s[e->older - 1].newer = e->newer;
	else
		r->oldest = e->newer;
	e->newer = e->older = 0;
}

static void list_push_newest(struct replay *r, uint32_t i)
{
	struct sender *e = &r->s[i - 1];
	e->newer = 0;
	e->older = r->newest;
	if (r->newest)
		r->s[r->newest - 1].newer = i;
	r->newest = i;
	if (!r->oldest)
		r->oldest = i;
}

static void hash_unlink(struct replay *r, uint32_t i)
{
	uint32_t *p = &r->buckets[bucket_of(r, r->s[i - 1].id)];
	while (*p && *p != i)
		p = &r->s[*p - 1].hnext;
	if (*p)
		*p = r->s[i - 1].hnext;
}

/* The sender's entry, or a new one (evicting the least recently heard
 * sender when the table is full). Never fails. */
static struct sender *lookup(struct replay *r, const uint8_t *id)
{
	size_t b = bucket_of(r, id);
	for (uint32_t i = r->buckets[b]; i; i = r->s[i - 1].hnext) {
		if (!memcmp(r->s[i - 1].id, id, REPLAY_ID_LEN)) {
			list_unlink(r, i);
			list_push_newest(r, i);
			return &r->s[i - 1];
		}
	}
	uint32_t i;
	if (r->n < r->max) {
		i = (uint32_t)++r->n;
	} else {
		i = r->oldest;
		hash_unlink(r, i);
		list_unlink(r, i);
		r->evictions++;
	}
	struct sender *e = &r->s[i - 1];
	memset(e, 0, sizeof(*e));
	memcpy(e->id, id, REPLAY_ID_LEN);
	e->hnext = r->buckets[b];
	r->buckets[b] = i;
	list_push_newest(r, i);
	return e;
}

/* now_ms - sent_ms in microseconds, clamped (GAP_LIMIT_MS). */
static int64_t gap_us(uint64_t now_ms, uint64_t sent_ms)
{
	int64_t d;
	if (now_ms >= sent_ms)
		d = now_ms - sent_ms > (uint64_t)GAP_LIMIT_MS
			? GAP_LIMIT_MS
			: (int64_t)(now_ms - sent_ms);
	else
		d = sent_ms - now_ms > (uint64_t)GAP_LIMIT_MS
			? -GAP_LIMIT_MS
			: -(int64_t)(sent_ms - now_ms);
	return d * 1000;
}

/* Learns from an accepted datagram of life l: a faster delivery is the new
 * reference at once; a slower one moves it up by a fraction of its age,
 * at most REPLAY_DRIFT_MAX_PPM of the sender time since the last one. */
static void follow(struct life *l, int64_t gap, uint64_t sent_ms)
{
	int64_t age = gap - l->offset_us;
	if (age < 0) {
		l->offset_us = gap;
	} else if (sent_ms > l->last_sent) {
		uint64_t span = sent_ms - l->last_sent;
		if (span > FOLLOW_SPAN_MAX_MS)
			span = FOLLOW_SPAN_MAX_MS;
		/* ms * ppm / 1000 = us */
		int64_t budget = (int64_t)(span * REPLAY_DRIFT_MAX_PPM / 1000);
		int64_t rise = age / REPLAY_FOLLOW_DIV;
		l->offset_us += rise < budget ? rise : budget;
	}
	if (sent_ms > l->last_sent)
		l->last_sent = sent_ms;
}

enum replay_verdict replay_check(struct replay *r,
				 const uint8_t id[REPLAY_ID_LEN], uint64_t boot,
				 uint64_t seq, uint64_t sent_ms,
				 uint64_t now_ms)
{
	struct sender *e = lookup(r, id);
	uint64_t now = ++r->tick;
	struct life *l = NULL, *lru = &e->lives[0];
	for (size_t k = 0; k < REPLAY_LIVES; k++) {
		struct life *c = &e->lives[k];
		if (c->used && c->boot == boot) {
			l = c;
			break;
		}
		if (c->used < lru->used)
			lru = c; /* an empty slot (used 0) wins */
	}
	int64_t gap = gap_us(now_ms, sent_ms);
	if (!l) {
		/* A restart (or a sender we do not know): its life replaces
		 * the one heard from least recently, and this datagram is its
		 * clock reference until a faster one comes. */
		*lru = (struct life){boot, seq, 1, now, gap, sent_ms};
		return REPLAY_NEW_LIFE;
	}
	uint64_t bit = 0;
	if (seq <= l->top) {
		uint64_t back = l->top - seq;
		if (back >= REPLAY_WINDOW)
			return REPLAY_STALE;
		bit = (uint64_t)1 << back;
		if (l->seen & bit)
			return REPLAY_DUPLICATE;
	}
	/* New to the window; but sent too long ago? */
	if (gap - l->offset_us > (int64_t)REPLAY_MAX_AGE * 1000)
		return REPLAY_LATE;
	if (seq > l->top) {
		uint64_t shift = seq - l->top;
		l->seen = shift >= REPLAY_WINDOW ? 1 : (l->seen << shift) | 1;
		l->top = seq;
	} else {
		l->seen |= bit;
	}
	follow(l, gap, sent_ms);
	l->used = now;
	return REPLAY_FRESH;
}

size_t replay_senders(const struct replay *r)
{
	return r->n;
}

uint64_t replay_evictions(const struct replay *r)
{
	return r->evictions;
}
