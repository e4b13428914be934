/* Unit tests: the anti-replay windows of sealed gossip (replay.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "proxystone/replay.h"

static const uint8_t KEY[REPLAY_HASH_KEY_LEN] = {1, 2, 3};

static void id_of(uint8_t id[REPLAY_ID_LEN], unsigned n)
{
	memset(id, 0, REPLAY_ID_LEN);
	memcpy(id, &n, sizeof(n));
}

static struct replay *table(size_t max)
{
	struct replay *r = NULL;
	assert_int_equal(replay_new(max, KEY, &r), 0);
	return r;
}

static void test_in_order(void **state)
{
	(void)state;
	struct replay *r = table(4);
	uint8_t a[REPLAY_ID_LEN];
	id_of(a, 1);
	assert_int_equal(replay_check(r, a, 7, 1), REPLAY_NEW_LIFE);
	for (uint64_t s = 2; s < 1000; s++)
		assert_int_equal(replay_check(r, a, 7, s), REPLAY_FRESH);
	/* Gaps (datagrams the sender addressed to others) are fine. */
	assert_int_equal(replay_check(r, a, 7, 5000), REPLAY_FRESH);
	assert_int_equal(replay_check(r, a, 7, UINT64_MAX - 1), REPLAY_FRESH);
	assert_int_equal(replay_check(r, a, 7, UINT64_MAX), REPLAY_FRESH);
	assert_int_equal(replay_senders(r), 1);
	replay_free(r);
}

static void test_reordered_within_window(void **state)
{
	(void)state;
	struct replay *r = table(4);
	uint8_t a[REPLAY_ID_LEN];
	id_of(a, 1);
	assert_int_equal(replay_check(r, a, 7, 100), REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, a, 7, 110), REPLAY_FRESH);
	/* Everything below 110 in the window, in any order, once. */
	for (uint64_t s = 109; s > 110 - REPLAY_WINDOW; s--)
		if (s != 100)
			assert_int_equal(replay_check(r, a, 7, s),
					 REPLAY_FRESH);
	assert_int_equal(replay_check(r, a, 7, 105), REPLAY_DUPLICATE);
	/* The window slides: a jump of exactly 64 forgets everything. */
	assert_int_equal(replay_check(r, a, 7, 110 + REPLAY_WINDOW),
			 REPLAY_FRESH);
	assert_int_equal(replay_check(r, a, 7, 111), REPLAY_FRESH);
	assert_int_equal(replay_check(r, a, 7, 111), REPLAY_DUPLICATE);
	replay_free(r);
}

static void test_duplicate(void **state)
{
	(void)state;
	struct replay *r = table(4);
	uint8_t a[REPLAY_ID_LEN], b[REPLAY_ID_LEN];
	id_of(a, 1);
	id_of(b, 2);
	assert_int_equal(replay_check(r, a, 7, 1), REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, a, 7, 2), REPLAY_FRESH);
	/* The attack: the same datagram over and over. */
	for (int i = 0; i < 200; i++) {
		assert_int_equal(replay_check(r, a, 7, 2), REPLAY_DUPLICATE);
		assert_int_equal(replay_check(r, a, 7, 1), REPLAY_DUPLICATE);
	}
	/* Windows are per sender id: another sender's numbers are its own. */
	assert_int_equal(replay_check(r, b, 7, 2), REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, b, 7, 1), REPLAY_FRESH);
	replay_free(r);
}

static void test_too_old(void **state)
{
	(void)state;
	struct replay *r = table(4);
	uint8_t a[REPLAY_ID_LEN];
	id_of(a, 1);
	assert_int_equal(replay_check(r, a, 7, 1000), REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, a, 7, 1000 - REPLAY_WINDOW + 1),
			 REPLAY_FRESH);
	assert_int_equal(replay_check(r, a, 7, 1000 - REPLAY_WINDOW),
			 REPLAY_STALE);
	assert_int_equal(replay_check(r, a, 7, 0), REPLAY_STALE);
	replay_free(r);
}

static void test_restart_and_retired_boots(void **state)
{
	(void)state;
	struct replay *r = table(4);
	uint8_t a[REPLAY_ID_LEN];
	id_of(a, 1);
	assert_int_equal(replay_check(r, a, 111, 1), REPLAY_NEW_LIFE);
	for (uint64_t s = 2; s <= 200; s++)
		assert_int_equal(replay_check(r, a, 111, s), REPLAY_FRESH);
	/* A restart: a new boot value, its counter from 1 again. */
	assert_int_equal(replay_check(r, a, 222, 1), REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, a, 222, 2), REPLAY_FRESH);
	/* Datagrams of the previous life replayed now: refused. */
	for (uint64_t s = 1; s <= 200; s++)
		assert_int_not_equal(replay_check(r, a, 111, s), REPLAY_FRESH);
	assert_int_equal(replay_check(r, a, 111, 200), REPLAY_DUPLICATE);
	assert_int_equal(replay_check(r, a, 111, 2), REPLAY_STALE);
	/* Replaying an old life does not lock the live one out. */
	assert_int_equal(replay_check(r, a, 222, 3), REPLAY_FRESH);
	/* Four more restarts: the first life is still remembered while it
	 * is one of the REPLAY_LIVES most recent. */
	for (uint64_t boot = 300; boot < 300 + REPLAY_LIVES - 2; boot++)
		assert_int_equal(replay_check(r, a, boot, 1), REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, a, 111, 200), REPLAY_DUPLICATE);
	/* One restart past the bound forgets the life heard from least
	 * recently, the first one (bounded memory; documented); the live
	 * one stays. */
	assert_int_equal(replay_check(r, a, 999, 1), REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, a, 222, 4), REPLAY_FRESH);
	assert_int_equal(replay_check(r, a, 111, 200), REPLAY_NEW_LIFE);
	replay_free(r);
}

static void test_table_full_evicts_least_recently_heard(void **state)
{
	(void)state;
	struct replay *r = table(3);
	uint8_t a[REPLAY_ID_LEN], b[REPLAY_ID_LEN], c[REPLAY_ID_LEN],
	    d[REPLAY_ID_LEN];
	id_of(a, 1);
	id_of(b, 2);
	id_of(c, 3);
	id_of(d, 4);
	assert_int_equal(replay_check(r, a, 1, 10), REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, b, 1, 10), REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, c, 1, 10), REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, a, 1, 11),
			 REPLAY_FRESH); /* a: newest */
	assert_int_equal(replay_check(r, d, 1, 10),
			 REPLAY_NEW_LIFE); /* evicts b */
	assert_int_equal(replay_senders(r), 3);
	assert_int_equal(replay_evictions(r), 1);
	assert_int_equal(replay_check(r, a, 1, 11), REPLAY_DUPLICATE);
	assert_int_equal(replay_check(r, c, 1, 10), REPLAY_DUPLICATE);
	assert_int_equal(replay_check(r, d, 1, 10), REPLAY_DUPLICATE);
	/* b was forgotten: it comes back as a new sender (evicting a now). */
	assert_int_equal(replay_check(r, b, 1, 10), REPLAY_NEW_LIFE);
	assert_int_equal(replay_evictions(r), 2);
	assert_int_equal(replay_check(r, c, 1, 10), REPLAY_DUPLICATE);
	replay_free(r);
}

static void test_many_senders(void **state)
{
	(void)state;
	enum { N = 5000 };
	struct replay *r = table(N);
	uint8_t id[REPLAY_ID_LEN];
	for (unsigned round = 1; round <= 3; round++)
		for (unsigned i = 0; i < N; i++) {
			id_of(id, i);
			assert_int_equal(replay_check(r, id, 9, round),
					 round == 1 ? REPLAY_NEW_LIFE
						    : REPLAY_FRESH);
			assert_int_equal(replay_check(r, id, 9, round),
					 REPLAY_DUPLICATE);
		}
	assert_int_equal(replay_senders(r), N);
	assert_int_equal(replay_evictions(r), 0);
	/* Past the bound: every new sender evicts one, the table stays
	 * consistent (the oldest, sender 0, goes first). */
	for (unsigned i = N; i < 2 * N; i++) {
		id_of(id, i);
		assert_int_equal(replay_check(r, id, 9, 1), REPLAY_NEW_LIFE);
	}
	assert_int_equal(replay_evictions(r), N);
	id_of(id, 2 * N - 1);
	assert_int_equal(replay_check(r, id, 9, 1), REPLAY_DUPLICATE);
	replay_free(r);
}

static void test_bounds(void **state)
{
	(void)state;
	struct replay *r = NULL;
	assert_int_equal(replay_new(0, KEY, &r), -EINVAL);
	assert_null(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_in_order),
	    cmocka_unit_test(test_reordered_within_window),
	    cmocka_unit_test(test_duplicate),
	    cmocka_unit_test(test_too_old),
	    cmocka_unit_test(test_restart_and_retired_boots),
	    cmocka_unit_test(test_table_full_evicts_least_recently_heard),
	    cmocka_unit_test(test_many_senders),
	    cmocka_unit_test(test_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
