/*
 * replay — the freshness check for sealed gossip datagrams: a per-sender
 * sliding window over the sender's datagram sequence numbers, as IPsec's
 * anti-replay window (RFC 4303 §3.4.3) and WireGuard's counter check do.
 *
 * Each sealed datagram carries, inside the authenticated plaintext, the
 * sender's member id, a random 64-bit "boot" value drawn when the sending
 * process started, and a sequence number the sender increments for every
 * datagram (gossip_crypto.h). The receiver calls replay_check() with those
 * three values, after the AEAD has authenticated them and before anything
 * in the datagram is believed; a datagram it refuses is dropped whole.
 *
 * Per sender, the table remembers REPLAY_LIVES process lives (boot values):
 * for each, the highest sequence number seen and a 64-bit bitmap of which
 * of the REPLAY_WINDOW numbers below it arrived. A sequence number seen
 * before is a duplicate; one older than the window is stale. A boot value
 * not remembered is a restart: it is accepted and takes the slot of the
 * life heard from least recently, so datagrams of a previous life replayed
 * later still meet that life's window and are refused.
 *
 * Sequence numbers are counters, not clocks: a jump of any clock never
 * makes a live sender's datagrams stale.
 *
 * Pure: no system calls, no clock; the table's recency order is the order
 * of replay_check() calls. O(1) expected per datagram (a hash table keyed
 * by SipHash of the sender id under a caller-supplied random key, so
 * nobody can choose ids that collide). Not thread-safe.
 */
#ifndef PROXYSTONE_REPLAY_H
#define PROXYSTONE_REPLAY_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of a sender id: a member's UUID. */
#define REPLAY_ID_LEN 16
/* Width of the sliding window: one uint64_t bitmap, WireGuard's and
 * IPsec's default. A datagram overtaken by more than 63 later ones from
 * the same sender is refused; on a LAN, reordering is far below that. */
#define REPLAY_WINDOW 64
/* Process lives remembered per sender: the current one and 4 retired, so
 * datagrams from the last 4 restarts replayed later are still refused. */
#define REPLAY_LIVES 5
/* Hash key length (crypto_shorthash, SipHash-2-4). */
#define REPLAY_HASH_KEY_LEN 16

enum replay_verdict {
	REPLAY_FRESH,	  /* accept: new sequence number of a known life */
	REPLAY_NEW_LIFE,  /* accept: a sender or a boot value not seen before */
	REPLAY_DUPLICATE, /* refuse: this sequence number arrived already */
	REPLAY_STALE,	  /* refuse: older than the window */
};

struct replay;

/*
 * Allocates a table for at most max_senders senders (>= 1); past that,
 * the sender heard from least recently is forgotten. hash_key: random
 * bytes. 0 and *out, -EINVAL, or -ENOMEM.
 */
int replay_new(size_t max_senders, const uint8_t hash_key[REPLAY_HASH_KEY_LEN],
	       struct replay **out);
void replay_free(struct replay *r);

/* Checks (id, boot, seq) and, if it is accepted, records it. */
enum replay_verdict replay_check(struct replay *r,
				 const uint8_t id[REPLAY_ID_LEN], uint64_t boot,
				 uint64_t seq);

/* Senders in the table. */
size_t replay_senders(const struct replay *r);
/* Senders forgotten because the table was full. */
uint64_t replay_evictions(const struct replay *r);

#endif
