/* gossip_crypto — sealed gossip datagrams; see include/proxystone/gossip_crypto.h. */
#include "proxystone/gossip_crypto.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES

_Static_assert(GOSSIP_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
	       "key length");
_Static_assert(GOSSIP_SEAL_OVERHEAD == 1 + NONCE_LEN + TAG_LEN, "overhead");

static int ready(void)
{
	/* sodium_init() is idempotent and thread-safe; < 0 means unusable. */
	return sodium_init() < 0 ? -EIO : 0;
}

int gossip_keyring_parse(struct gossip_keyring *ring, const char *text,
			 char *err, size_t errlen)
{
	memset(ring, 0, sizeof(*ring));
	const char *p = text;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		if (!*p)
			break;
		size_t n = strcspn(p, ", ");
		if (ring->n == GOSSIP_KEYS_MAX) {
			snprintf(err, errlen, "more than %d keys",
				 GOSSIP_KEYS_MAX);
			return -EINVAL;
		}
		size_t got = 0;
		if (n != 2 * GOSSIP_KEY_LEN ||
		    sodium_hex2bin(ring->keys[ring->n], GOSSIP_KEY_LEN, p, n,
				   NULL, &got, NULL) != 0 ||
		    got != GOSSIP_KEY_LEN) {
			snprintf(err, errlen,
				 "key %zu is not %d hex digits (32 bytes; make one with: head -c32 /dev/urandom | xxd -p -c64)",
				 ring->n + 1, 2 * GOSSIP_KEY_LEN);
			sodium_memzero(ring, sizeof(*ring));
			return -EINVAL;
		}
		ring->n++;
		p += n;
	}
	/* Text that names no key must not turn encryption off silently. */
	if (ring->n == 0 && *text) {
		snprintf(err, errlen, "no key in the keyring");
		return -EINVAL;
	}
	return 0;
}

int gossip_seal(const struct gossip_keyring *ring, const uint8_t *pt,
		size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	if (ready())
		return -EIO;
	if (ring->n == 0 || cap < GOSSIP_SEAL_OVERHEAD ||
	    len > cap - GOSSIP_SEAL_OVERHEAD)
		return -EMSGSIZE;
	out[0] = GOSSIP_SEAL_VERSION;
	randombytes_buf(out + 1, NONCE_LEN);
	unsigned long long clen;
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + NONCE_LEN, &clen,
						   pt, len, out, 1, NULL,
						   out + 1, ring->keys[0]);
	*out_len = 1 + NONCE_LEN + (size_t)clen;
	return 0;
}

int gossip_open(const struct gossip_keyring *ring, const uint8_t *in,
		size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	if (ready())
		return -EIO;
	if (len < GOSSIP_SEAL_OVERHEAD || in[0] != GOSSIP_SEAL_VERSION ||
	    cap < len - GOSSIP_SEAL_OVERHEAD)
		return -EBADMSG;
	/* The version byte is authenticated too (additional data). */
	for (size_t k = 0; k < ring->n; k++) {
		unsigned long long mlen;
		if (crypto_aead_xchacha20poly1305_ietf_decrypt(
			    out, &mlen, NULL, in + 1 + NONCE_LEN,
			    len - 1 - NONCE_LEN, in, 1, in + 1,
			    ring->keys[k]) == 0) {
			*out_len = (size_t)mlen;
			return 0;
		}
	}
	return -EBADMSG;
}
