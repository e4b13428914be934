/* Unit tests: sealed gossip datagrams and the keyring (gossip_crypto.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "proxystone/gossip_crypto.h"

#define K1 "1111111111111111111111111111111111111111111111111111111111111111"
#define K2 "2222222222222222222222222222222222222222222222222222222222222222"

static void ring(struct gossip_keyring *r, const char *text)
{
	char err[128];
	assert_int_equal(gossip_keyring_parse(r, text, err, sizeof(err)), 0);
}

static void test_parse(void **state)
{
	(void)state;
	struct gossip_keyring r;
	char err[256];
	ring(&r, "");
	assert_int_equal(r.n, 0);
	ring(&r, K1 "," K2);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.keys[0][0], 0x11);
	assert_int_equal(r.keys[1][31], 0x22);
	assert_int_equal(gossip_keyring_parse(&r, "abc", err, sizeof(err)),
			 -EINVAL);
	assert_null(strstr(err, "abc")); /* keys are never echoed */
	assert_int_equal(gossip_keyring_parse(&r, K1 "0", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(gossip_keyring_parse(&r, K1 "," K2 "x", err,
					      sizeof(err)),
			 -EINVAL);
	char many[9 * 65 + 1] = "";
	for (int i = 0; i < 9; i++) {
		strcat(many, K1);
		strcat(many, ",");
	}
	assert_int_equal(gossip_keyring_parse(&r, many, err, sizeof(err)),
			 -EINVAL);
}

static void test_roundtrip_and_tamper(void **state)
{
	(void)state;
	struct gossip_keyring r;
	ring(&r, K1);
	uint8_t pt[300], sealed[400], out[400];
	for (size_t i = 0; i < sizeof(pt); i++)
		pt[i] = (uint8_t)(i * 7);
	size_t slen, olen;
	assert_int_equal(gossip_seal(&r, pt, sizeof(pt), sealed,
				     sizeof(sealed), &slen),
			 0);
	assert_int_equal(slen, sizeof(pt) + GOSSIP_SEAL_OVERHEAD);
	assert_int_equal(gossip_open(&r, sealed, slen, out, sizeof(out), &olen),
			 0);
	assert_int_equal(olen, sizeof(pt));
	assert_memory_equal(out, pt, sizeof(pt));
	/* Every single flipped bit, anywhere, is caught. */
	for (size_t i = 0; i < slen; i++) {
		sealed[i] ^= 0x01;
		assert_int_equal(gossip_open(&r, sealed, slen, out,
					     sizeof(out), &olen),
				 -EBADMSG);
		sealed[i] ^= 0x01;
	}
	/* Every truncation too. */
	for (size_t n = 0; n < slen; n++)
		assert_int_equal(gossip_open(&r, sealed, n, out, sizeof(out),
					     &olen),
				 -EBADMSG);
	/* Two seals of the same text differ (random nonces). */
	uint8_t again[400];
	size_t alen;
	assert_int_equal(gossip_seal(&r, pt, sizeof(pt), again, sizeof(again),
				     &alen),
			 0);
	assert_memory_not_equal(again, sealed, slen);
}

static void test_keyring_rotation(void **state)
{
	(void)state;
	struct gossip_keyring old, next, other;
	ring(&old, K1);
	ring(&next, K2 "," K1); /* sends with K2, still accepts K1 */
	ring(&other, K2);
	uint8_t pt[] = "hello", s1[64], s2[64], out[64];
	size_t l1, l2, ol;
	assert_int_equal(gossip_seal(&old, pt, sizeof(pt), s1, sizeof(s1), &l1),
			 0);
	assert_int_equal(gossip_seal(&next, pt, sizeof(pt), s2, sizeof(s2),
				     &l2),
			 0);
	assert_int_equal(gossip_open(&next, s1, l1, out, sizeof(out), &ol), 0);
	assert_int_equal(gossip_open(&other, s1, l1, out, sizeof(out), &ol),
			 -EBADMSG);
	assert_int_equal(gossip_open(&old, s2, l2, out, sizeof(out), &ol),
			 -EBADMSG);
	assert_int_equal(gossip_open(&other, s2, l2, out, sizeof(out), &ol), 0);
}

static void test_bounds(void **state)
{
	(void)state;
	struct gossip_keyring r, empty;
	ring(&r, K1);
	ring(&empty, "");
	uint8_t pt[100], out[200];
	size_t n;
	assert_int_equal(gossip_seal(&r, pt, sizeof(pt), out,
				     sizeof(pt) + GOSSIP_SEAL_OVERHEAD - 1, &n),
			 -EMSGSIZE);
	assert_int_equal(gossip_seal(&empty, pt, sizeof(pt), out, sizeof(out),
				     &n),
			 -EMSGSIZE);
	assert_int_equal(gossip_seal(&r, pt, sizeof(pt), out, sizeof(out), &n),
			 0);
	uint8_t small[10];
	assert_int_equal(gossip_open(&r, out, n, small, sizeof(small), &n),
			 -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_roundtrip_and_tamper),
		cmocka_unit_test(test_keyring_rotation),
		cmocka_unit_test(test_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
