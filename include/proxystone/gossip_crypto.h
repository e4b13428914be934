/*
 * gossip_crypto — authenticated encryption of gossip datagrams with a
 * shared cluster key (libsodium's XChaCha20-Poly1305 AEAD), and a keyring
 * for rotation without downtime, as memberlist's keyring does: one primary
 * key encrypts what we send; every key in the ring is tried on what we
 * receive. Rotating: add the new key to every node's ring, make it primary
 * everywhere, then drop the old one — each step a rolling restart.
 *
 * Sealed datagram (version 3):
 *
 *   +---------+---------------------+---------------------------------+
 *   | 0x03 1B | nonce 24 B          | ciphertext                      |
 *   | version | random per datagram | + 16 B Poly1305 tag             |
 *   +---------+---------------------+---------------------------------+
 *
 * The version byte is authenticated as additional data. The plaintext:
 *
 *   +-------------+------------+------------+------------+-------------+
 *   | sender 16 B | boot 8 B   | seq 8 B    | sent_ms 8 B| the SWIM    |
 *   | member UUID | big-endian | big-endian | big-endian | datagram    |
 *   +-------------+------------+------------+------------+-------------+
 *
 * sender, boot (random, drawn once per process life), seq (+1 per
 * datagram, from 1) and sent_ms (the sender's CLOCK_MONOTONIC
 * milliseconds since it drew boot, at sealing) feed the receiver's replay
 * check (replay.h): a datagram that authenticates but was seen before, is
 * older than the window, or was sent too long ago, is dropped. The nonce
 * stays random: a counter-derived nonce would repeat after a restart under
 * the same key. Version 1 (no sender/boot/seq) and version 2 (no sent_ms:
 * what a sender addressed to others could be replayed to us later) are
 * refused.
 *
 * A receiver that cannot open a datagram that looks sealed, or that gets
 * plaintext while it holds a ring (and a keyless receiver that gets a
 * sealed datagram), may answer with GOSSIP_AUTH_NOTICE: a short plaintext
 * datagram, never longer than what it answers, so it cannot amplify. It is
 * unauthenticated; it only makes the peer log why it is not heard.
 */
#ifndef PROXYSTONE_GOSSIP_CRYPTO_H
#define PROXYSTONE_GOSSIP_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GOSSIP_KEY_LEN 32
/* Keys in one ring: a primary, the one being rotated out, and room for a
 * staged rotation; memberlist rings are this small in practice. */
#define GOSSIP_KEYS_MAX 8
#define GOSSIP_SEAL_VERSION 3
/* Bytes of the authenticated header inside: sender, boot, seq, sent_ms. */
#define GOSSIP_SENDER_LEN 16
#define GOSSIP_SEAL_HDR_LEN (GOSSIP_SENDER_LEN + 8 + 8 + 8)
/* Bytes a sealed datagram adds: version, nonce, header, tag. */
#define GOSSIP_SEAL_OVERHEAD (1 + 24 + GOSSIP_SEAL_HDR_LEN + 16)
/* The plaintext "cannot authenticate you" notice. It starts with 0xff: no
 * sealed version, and no protobuf message (field 31, wire type 7, does
 * not exist), so it is never mistaken for gossip. */
#define GOSSIP_AUTH_NOTICE "\xffps-auth-failed"
#define GOSSIP_AUTH_NOTICE_LEN (sizeof(GOSSIP_AUTH_NOTICE) - 1)
/* Largest keyring file we read: 8 keys with comments fit in far less. */
#define GOSSIP_KEYFILE_MAX 4096
/* Text form of a full ring: 8 keys of 64 hex digits, 7 commas, NUL. */
#define GOSSIP_RING_TEXT_MAX (GOSSIP_KEYS_MAX * (2 * GOSSIP_KEY_LEN + 1) + 1)

/* Who sent a sealed datagram, where it is in the sender's sequence and
 * when, on the sender's clock, it was sealed; authenticated with it. */
struct gossip_seal_hdr {
	uint8_t sender[GOSSIP_SENDER_LEN];
	uint64_t boot;
	uint64_t seq;
	uint64_t sent_ms; /* monotonic ms since boot was drawn */
};

struct gossip_keyring {
	uint8_t keys[GOSSIP_KEYS_MAX][GOSSIP_KEY_LEN]; /* keys[0] is primary */
	size_t n;				       /* 0: no encryption */
};

/*
 * Parses "hex64[,hex64...]" (64 hex digits per key, the first is the
 * primary) into the ring. 0, or -EINVAL with a reason in err (the keys
 * themselves are never echoed).
 */
int gossip_keyring_parse(struct gossip_keyring *ring, const char *text,
			 char *err, size_t errlen);
/* Keys named in keyring text (as gossip_keyring_parse counts them, for
 * text it accepts), without decoding them. */
size_t gossip_keyring_count(const char *text);
/* Seals hdr and pt into out (cap >= len + GOSSIP_SEAL_OVERHEAD) with the
 * primary key. 0 and *out_len, -EMSGSIZE, or -EIO if libsodium is
 * unusable. */
int gossip_seal(const struct gossip_keyring *ring,
		const struct gossip_seal_hdr *hdr, const uint8_t *pt,
		size_t len, uint8_t *out, size_t cap, size_t *out_len);
/* Opens a sealed datagram with any key of the ring: the header into *hdr,
 * the SWIM datagram into out (cap >= len - GOSSIP_SEAL_OVERHEAD +
 * GOSSIP_SEAL_HDR_LEN: out is also the scratch space for the header).
 * 0 and *out_len; -EBADMSG (not sealed, wrong version, too short, or no
 * key authenticates it). Freshness is the caller's (replay.h). */
int gossip_open(const struct gossip_keyring *ring, const uint8_t *in,
		size_t len, struct gossip_seal_hdr *hdr, uint8_t *out,
		size_t cap, size_t *out_len);
/* True if buf starts like a sealed datagram of any version (0x01 to 0x03:
 * never the first byte of a protobuf message) and is long enough. */
bool gossip_looks_sealed(const uint8_t *buf, size_t len);

/* A fresh random key as 64 hex digits and a NUL (for --gen-key). */
void gossip_key_generate(char hex[2 * GOSSIP_KEY_LEN + 1]);

/*
 * Loads the keyring file at path into text (the "hex,hex" form
 * gossip_keyring_parse takes; cap >= GOSSIP_RING_TEXT_MAX). The file holds
 * keys as gossip_key does: comma- or newline-separated, '#' comments.
 * If the file does not exist it is created with one random key, mode
 * 0600, atomically: written to a unique temporary file in the same
 * directory, fsynced, then link()ed to path, so of several nodes starting
 * at once exactly one creates it and all read the same key. *created says
 * whether we did. Refuses a file that is not a regular file, is
 * accessible to group or others, or holds no valid keyring. 0, or a
 * negative errno with a message naming the file in err (never a key).
 */
int gossip_keyring_file_load(const char *path, char *text, size_t cap,
			     bool *created, char *err, size_t errlen);

#endif
