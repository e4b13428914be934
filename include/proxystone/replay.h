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
 * The window alone is not enough: a sender has one counter for all its
 * receivers, so what it sent to OTHER members carries numbers this
 * receiver never saw, and an eavesdropper who replays those after the
 * sender died would keep it alive here for as long as its stock lasts.
 * So each datagram also carries the sender's elapsed monotonic time since
 * it drew its boot value (sent_ms), and per life the receiver learns the
 * relation of the two clocks:
 *
 *   offset = now_ms - sent_ms, the minimum seen (the fastest delivery)
 *   age    = (now_ms - sent_ms) - offset
 *
 * A datagram that passes the window but whose age exceeds REPLAY_MAX_AGE
 * is late, and refused: whatever was captured more than REPLAY_MAX_AGE
 * before it is replayed is worthless. Clocks drift apart (a slower sender
 * clock makes every datagram look a little later), so on each accepted
 * datagram the offset follows upward by age / REPLAY_FOLLOW_DIV, but by no
 * more than REPLAY_DRIFT_MAX_PPM of the sender time since the last
 * accepted datagram: a true drift is followed, while an attacker who
 * delays datagrams gains at most that rate (0.2 %) of the time he holds
 * every datagram of the sender to us, never a jump. A faster sender clock
 * lowers the minimum, which is taken at once.
 *
 * Only monotonic clocks are compared (the caller passes CLOCK_MONOTONIC
 * milliseconds; sent_ms is the sender's): wall-clock jumps change
 * nothing. The first datagram of a life (a restart, or a sender the table
 * had forgotten) is taken as the clock reference; a replayed one is
 * believed once, as before.
 *
 * Pure: no system calls, no clock (now_ms is an argument); the table's
 * recency order is the order of replay_check() calls. O(1) expected per
 * datagram (a hash table keyed by SipHash of the sender id under a
 * caller-supplied random key, so nobody can choose ids that collide).
 * Not thread-safe.
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
/* Largest age of an accepted datagram, in ms, past the fastest delivery
 * seen from its sender's life. LAN delays are below a millisecond; what
 * can hold a datagram is a stalled process (ours, or the sender's between
 * sealing and sendto): a C process without a garbage collector stalls for
 * tens of ms in page faults or CPU contention, seconds only when its host
 * is swapping, and then a datagram that old is worth little (SWIM probes
 * again). It is also the bound on the attack: a captured datagram passes
 * for at most REPLAY_MAX_AGE after it was sent, so replays make a dead
 * member look alive at most 3 s past its death (the window alone: as long
 * as the captured stock lasted, minutes at 1,000 members). */
#define REPLAY_MAX_AGE 3000
/* The offset follows a drifting clock by age / REPLAY_FOLLOW_DIV per
 * accepted datagram: an exponential follow over 16 datagrams, slow enough
 * that one delayed datagram barely moves it. */
#define REPLAY_FOLLOW_DIV 16
/* Fastest upward follow, parts per million of sender time. Crystal
 * oscillators are within ~100 ppm and the kernel slews CLOCK_MONOTONIC by
 * at most 500 ppm (NTP's MAXFREQ), so two hosts drift apart by at most
 * ~1200 ppm; 2000 leaves margin, and bounds what an attacker can gain by
 * delaying datagrams to 2 ms per second he controls all of them. */
#define REPLAY_DRIFT_MAX_PPM 2000
/* Hash key length (crypto_shorthash, SipHash-2-4). */
#define REPLAY_HASH_KEY_LEN 16

enum replay_verdict {
	REPLAY_FRESH,	  /* accept: new sequence number of a known life */
	REPLAY_NEW_LIFE,  /* accept: a sender or a boot value not seen before */
	REPLAY_DUPLICATE, /* refuse: this sequence number arrived already */
	REPLAY_STALE,	  /* refuse: older than the window */
	REPLAY_LATE,	  /* refuse: in the window, but sent more than
			   * REPLAY_MAX_AGE before now (a replay) */
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

/* Checks (id, boot, seq, sent_ms) and, if it is accepted, records it.
 * sent_ms: the sender's monotonic milliseconds since it drew boot; now_ms:
 * ours (any fixed origin). The window is checked first: a datagram both
 * seen before and late is a duplicate. */
enum replay_verdict replay_check(struct replay *r,
				 const uint8_t id[REPLAY_ID_LEN], uint64_t boot,
				 uint64_t seq, uint64_t sent_ms,
				 uint64_t now_ms);

/* Senders in the table. */
size_t replay_senders(const struct replay *r);
/* Senders forgotten because the table was full. */
uint64_t replay_evictions(const struct replay *r);

#endif
