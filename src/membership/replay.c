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

struct life {
	uint64_t boot;
	uint64_t top;  /* highest sequence number accepted */
	uint64_t seen; /* bit i: top - i accepted */
	uint64_t used; /* tick of the last accepted datagram; 0: empty slot */
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

enum replay_verdict replay_check(struct replay *r,
				 const uint8_t id[REPLAY_ID_LEN], uint64_t boot,
				 uint64_t seq)
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
	if (!l) {
		/* A restart (or a sender we do not know): its life replaces
		 * the one heard from least recently. */
		*lru = (struct life){boot, seq, 1, now};
		return REPLAY_NEW_LIFE;
	}
	if (seq > l->top) {
		uint64_t shift = seq - l->top;
		l->seen = shift >= REPLAY_WINDOW ? 1 : (l->seen << shift) | 1;
		l->top = seq;
	} else {
		uint64_t back = l->top - seq;
		if (back >= REPLAY_WINDOW)
			return REPLAY_STALE;
		uint64_t bit = (uint64_t)1 << back;
		if (l->seen & bit)
			return REPLAY_DUPLICATE;
		l->seen |= bit;
	}
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
