/*
 * gossip_crypto — authenticated encryption of gossip datagrams with a
 * shared cluster key (libsodium's XChaCha20-Poly1305 AEAD), and a keyring
 * for rotation without downtime, as memberlist's keyring does: one primary
 * key encrypts what we send; every key in the ring is tried on what we
 * receive. Rotating: add the new key to every node's ring, make it primary
 * everywhere, then drop the old one — each step a rolling restart.
 *
 * Sealed datagram:
 *
 *   +---------+------------------+-------------------------------------+
 *   | 0x01 1B | nonce 24 B       | ciphertext of the SWIM datagram     |
 *   | version | random per datagram | + 16 B Poly1305 tag              |
 *   +---------+------------------+-------------------------------------+
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
#define GOSSIP_SEAL_VERSION 1
/* Bytes a sealed datagram adds: version, nonce, tag. */
#define GOSSIP_SEAL_OVERHEAD (1 + 24 + 16)

struct gossip_keyring {
	uint8_t keys[GOSSIP_KEYS_MAX][GOSSIP_KEY_LEN]; /* keys[0] is primary */
	size_t n;                                        /* 0: no encryption */
};

/*
 * Parses "hex64[,hex64...]" (64 hex digits per key, the first is the
 * primary) into the ring. 0, or -EINVAL with a reason in err (the keys
 * themselves are never echoed).
 */
int gossip_keyring_parse(struct gossip_keyring *ring, const char *text,
			 char *err, size_t errlen);
/* Seals pt into out (cap >= len + GOSSIP_SEAL_OVERHEAD) with the primary
 * key. 0 and *out_len, -EMSGSIZE, or -EIO if libsodium is unusable. */
int gossip_seal(const struct gossip_keyring *ring, const uint8_t *pt,
		size_t len, uint8_t *out, size_t cap, size_t *out_len);
/* Opens a sealed datagram with any key of the ring. 0 and *out_len;
 * -EBADMSG (not sealed, wrong version, too short, or no key
 * authenticates it). */
int gossip_open(const struct gossip_keyring *ring, const uint8_t *in,
		size_t len, uint8_t *out, size_t cap, size_t *out_len);

#endif
