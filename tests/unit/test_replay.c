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

/* The window's semantics alone: every datagram sent and received at the
 * same instant (age 0). */
static enum replay_verdict check(struct replay *r, const uint8_t *id,
				 uint64_t boot, uint64_t seq)
{
	return replay_check(r, id, boot, seq, 0, 0);
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
	assert_int_equal(check(r, a, 7, 1), REPLAY_NEW_LIFE);
	for (uint64_t s = 2; s < 1000; s++)
		assert_int_equal(check(r, a, 7, s), REPLAY_FRESH);
	/* Gaps (datagrams the sender addressed to others) are fine. */
	assert_int_equal(check(r, a, 7, 5000), REPLAY_FRESH);
	assert_int_equal(check(r, a, 7, UINT64_MAX - 1), REPLAY_FRESH);
	assert_int_equal(check(r, a, 7, UINT64_MAX), REPLAY_FRESH);
	assert_int_equal(replay_senders(r), 1);
	replay_free(r);
}

static void test_reordered_within_window(void **state)
{
	(void)state;
	struct replay *r = table(4);
	uint8_t a[REPLAY_ID_LEN];
	id_of(a, 1);
	assert_int_equal(check(r, a, 7, 100), REPLAY_NEW_LIFE);
	assert_int_equal(check(r, a, 7, 110), REPLAY_FRESH);
	/* Everything below 110 in the window, in any order, once. */
	for (uint64_t s = 109; s > 110 - REPLAY_WINDOW; s--)
		if (s != 100)
			assert_int_equal(check(r, a, 7, s), REPLAY_FRESH);
	assert_int_equal(check(r, a, 7, 105), REPLAY_DUPLICATE);
	/* The window slides: a jump of exactly 64 forgets everything. */
	assert_int_equal(check(r, a, 7, 110 + REPLAY_WINDOW), REPLAY_FRESH);
	assert_int_equal(check(r, a, 7, 111), REPLAY_FRESH);
	assert_int_equal(check(r, a, 7, 111), REPLAY_DUPLICATE);
	replay_free(r);
}

static void test_duplicate(void **state)
{
	(void)state;
	struct replay *r = table(4);
	uint8_t a[REPLAY_ID_LEN], b[REPLAY_ID_LEN];
	id_of(a, 1);
	id_of(b, 2);
	assert_int_equal(check(r, a, 7, 1), REPLAY_NEW_LIFE);
	assert_int_equal(check(r, a, 7, 2), REPLAY_FRESH);
	/* The attack: the same datagram over and over. */
	for (int i = 0; i < 200; i++) {
		assert_int_equal(check(r, a, 7, 2), REPLAY_DUPLICATE);
		assert_int_equal(check(r, a, 7, 1), REPLAY_DUPLICATE);
	}
	/* Windows are per sender id: another sender's numbers are its own. */
	assert_int_equal(check(r, b, 7, 2), REPLAY_NEW_LIFE);
	assert_int_equal(check(r, b, 7, 1), REPLAY_FRESH);
	replay_free(r);
}

static void test_too_old(void **state)
{
	(void)state;
	struct replay *r = table(4);
	uint8_t a[REPLAY_ID_LEN];
	id_of(a, 1);
	assert_int_equal(check(r, a, 7, 1000), REPLAY_NEW_LIFE);
	assert_int_equal(check(r, a, 7, 1000 - REPLAY_WINDOW + 1),
			 REPLAY_FRESH);
	assert_int_equal(check(r, a, 7, 1000 - REPLAY_WINDOW), REPLAY_STALE);
	assert_int_equal(check(r, a, 7, 0), REPLAY_STALE);
	replay_free(r);
}

static void test_restart_and_retired_boots(void **state)
{
	(void)state;
	struct replay *r = table(4);
	uint8_t a[REPLAY_ID_LEN];
	id_of(a, 1);
	assert_int_equal(check(r, a, 111, 1), REPLAY_NEW_LIFE);
	for (uint64_t s = 2; s <= 200; s++)
		assert_int_equal(check(r, a, 111, s), REPLAY_FRESH);
	/* A restart: a new boot value, its counter from 1 again. */
	assert_int_equal(check(r, a, 222, 1), REPLAY_NEW_LIFE);
	assert_int_equal(check(r, a, 222, 2), REPLAY_FRESH);
	/* Datagrams of the previous life replayed now: refused. */
	for (uint64_t s = 1; s <= 200; s++)
		assert_int_not_equal(check(r, a, 111, s), REPLAY_FRESH);
	assert_int_equal(check(r, a, 111, 200), REPLAY_DUPLICATE);
	assert_int_equal(check(r, a, 111, 2), REPLAY_STALE);
	/* Replaying an old life does not lock the live one out. */
	assert_int_equal(check(r, a, 222, 3), REPLAY_FRESH);
	/* Four more restarts: the first life is still remembered while it
	 * is one of the REPLAY_LIVES most recent. */
	for (uint64_t boot = 300; boot < 300 + REPLAY_LIVES - 2; boot++)
		assert_int_equal(check(r, a, boot, 1), REPLAY_NEW_LIFE);
	assert_int_equal(check(r, a, 111, 200), REPLAY_DUPLICATE);
	/* One restart past the bound forgets the life heard from least
	 * recently, the first one (bounded memory; documented); the live
	 * one stays. */
	assert_int_equal(check(r, a, 999, 1), REPLAY_NEW_LIFE);
	assert_int_equal(check(r, a, 222, 4), REPLAY_FRESH);
	assert_int_equal(check(r, a, 111, 200), REPLAY_NEW_LIFE);
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
	assert_int_equal(check(r, a, 1, 10), REPLAY_NEW_LIFE);
	assert_int_equal(check(r, b, 1, 10), REPLAY_NEW_LIFE);
	assert_int_equal(check(r, c, 1, 10), REPLAY_NEW_LIFE);
	assert_int_equal(check(r, a, 1, 11), REPLAY_FRESH);    /* a: newest */
	assert_int_equal(check(r, d, 1, 10), REPLAY_NEW_LIFE); /* evicts b */
	assert_int_equal(replay_senders(r), 3);
	assert_int_equal(replay_evictions(r), 1);
	assert_int_equal(check(r, a, 1, 11), REPLAY_DUPLICATE);
	assert_int_equal(check(r, c, 1, 10), REPLAY_DUPLICATE);
	assert_int_equal(check(r, d, 1, 10), REPLAY_DUPLICATE);
	/* b was forgotten: it comes back as a new sender (evicting a now). */
	assert_int_equal(check(r, b, 1, 10), REPLAY_NEW_LIFE);
	assert_int_equal(replay_evictions(r), 2);
	assert_int_equal(check(r, c, 1, 10), REPLAY_DUPLICATE);
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
			assert_int_equal(check(r, id, 9, round),
					 round == 1 ? REPLAY_NEW_LIFE
						    : REPLAY_FRESH);
			assert_int_equal(check(r, id, 9, round),
					 REPLAY_DUPLICATE);
		}
	assert_int_equal(replay_senders(r), N);
	assert_int_equal(replay_evictions(r), 0);
	/* Past the bound: every new sender evicts one, the table stays
	 * consistent (the oldest, sender 0, goes first). */
	for (unsigned i = N; i < 2 * N; i++) {
		id_of(id, i);
		assert_int_equal(check(r, id, 9, 1), REPLAY_NEW_LIFE);
	}
	assert_int_equal(replay_evictions(r), N);
	id_of(id, 2 * N - 1);
	assert_int_equal(check(r, id, 9, 1), REPLAY_DUPLICATE);
	replay_free(r);
}

/* Deterministic jitter (xorshift), so a failure replays exactly. */
static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A synthetic pair of monotonic clocks: true time t (seconds); the
 * sender's clock reads sender_t0 + t * (1 + ppm / 1e6) ms, ours reads
 * local_t0 + t ms. */
struct clocks {
	double ppm;
	double sender_t0, local_t0;
};

static uint64_t sender_ms(const struct clocks *c, double t)
{
	return (uint64_t)(c->sender_t0 + t * 1000 * (1 + c->ppm / 1e6));
}

static uint64_t local_ms(const struct clocks *c, double t)
{
	return (uint64_t)(c->local_t0 + t * 1000);
}

/* Network delay: mostly under a millisecond, sometimes a scheduling
 * stall of up to 300 ms (the datagram sat in a socket buffer). */
static double delay(void)
{
	uint64_t x = rnd();
	if (x % 1000 == 0)
		return (double)(x >> 20 & 0xffff) / 65535 * 0.3;
	return 0.0001 + (double)(x >> 20 & 0xffff) / 65535 * 0.002;
}

/* Days of datagrams every 0.3 s from a sender whose clock runs ppm faster
 * (> 0) or slower (< 0) than ours, with jitter, and gaps in the sequence
 * numbers (datagrams to others): never one refused. Returns the last
 * sequence number; *t_out the true time of the last datagram. */
static uint64_t run_drift(struct replay *r, const uint8_t *id,
			  const struct clocks *c, double days, double *t_out)
{
	uint64_t seq = 1, n = 0, refused = 0;
	double t = 0;
	assert_int_equal(replay_check(r, id, 42, seq, sender_ms(c, t),
				      local_ms(c, t + delay())),
			 REPLAY_NEW_LIFE);
	while (t < days * 86400) {
		t += 0.3;
		seq += 1 + rnd() % 8; /* the sender also talks to others */
		enum replay_verdict v = replay_check(
		    r, id, 42, seq, sender_ms(c, t), local_ms(c, t + delay()));
		refused += v != REPLAY_FRESH;
		n++;
	}
	assert_int_equal(refused, 0);
	assert_true(n > days * 86400 / 0.3 - 2);
	*t_out = t;
	return seq;
}

static void test_drift_never_drops(void **state)
{
	(void)state;
	/* 500 ppm both ways (a slower sender clock makes every datagram
	 * look 1.8 s later per hour: unfollowed, drops after 100 min), and
	 * 1500 ppm, past what two hosts under NTP can reach. Clock origins
	 * far apart both ways (gaps negative and positive). */
	const struct clocks cs[] = {
	    {+500, 5, 1e9},  {-500, 5, 1e9}, {+500, 9e11, 7},
	    {-500, 9e11, 7}, {+1500, 0, 0},  {-1500, 3e8, 2},
	};
	for (size_t k = 0; k < sizeof(cs) / sizeof(cs[0]); k++) {
		struct replay *r = table(4);
		uint8_t a[REPLAY_ID_LEN];
		id_of(a, 1);
		double t;
		uint64_t seq = run_drift(r, a, &cs[k], 3, &t);
		/* After three days of drift, the attack still fails: a
		 * number skipped (sent to someone else) 5 s ago, inside the
		 * window, replayed now. */
		double t_hold = t + 0.3;
		uint64_t held = seq + 1, held_sent = sender_ms(&cs[k], t_hold);
		seq += 2;
		for (t = t_hold + 0.3; t < t_hold + 5; t += 0.3, seq++)
			assert_int_equal(replay_check(r, a, 42, seq,
						      sender_ms(&cs[k], t),
						      local_ms(&cs[k], t)),
					 REPLAY_FRESH);
		assert_true(seq - held < REPLAY_WINDOW);
		assert_int_equal(replay_check(r, a, 42, held, held_sent,
					      local_ms(&cs[k], t)),
				 REPLAY_LATE);
		/* Refused, not recorded: still late (not a duplicate). */
		assert_int_equal(replay_check(r, a, 42, held, held_sent,
					      local_ms(&cs[k], t)),
				 REPLAY_LATE);
		replay_free(r);
	}
}

/* The attack: W talks to us and to others with one counter; we hear every
 * third of its datagrams. W dies; an eavesdropper replays what W sent to
 * the others, one every 0.3 s. */
static void test_stock_replayed_after_death(void **state)
{
	(void)state;
	enum { N = 3000 };
	static uint64_t sent[N + 1];
	const struct clocks c = {0, 123456, 789};
	for (int late_start = 0; late_start < 2; late_start++) {
		struct replay *r = table(4);
		uint8_t w[REPLAY_ID_LEN];
		id_of(w, 7);
		double t = 0;
		for (uint64_t seq = 1; seq <= N; seq++, t += 0.01) {
			sent[seq] = sender_ms(&c, t);
			if (seq % 3 == 1)
				assert_int_not_equal(
				    replay_check(r, w, 9, seq, sent[seq],
						 local_ms(&c, t + 0.0005)),
				    REPLAY_LATE);
		}
		/* W died at t. Its unseen numbers inside our window: */
		double death = t, at = death + (late_start ? 5.0 : 0.0);
		int accepted = 0;
		double last_accepted = -1;
		for (uint64_t seq = N - REPLAY_WINDOW + 1; seq <= N; seq++) {
			if (seq % 3 == 1)
				continue;
			at += 0.3;
			enum replay_verdict v = replay_check(
			    r, w, 9, seq, sent[seq], local_ms(&c, at));
			if (v == REPLAY_FRESH) {
				accepted++;
				last_accepted = at;
			} else {
				assert_int_equal(v, REPLAY_LATE);
			}
		}
		if (late_start) {
			/* Captured more than REPLAY_MAX_AGE ago: all refused.
			 */
			assert_int_equal(accepted, 0);
		} else {
			/* Replayed at once: while the captured datagrams
			 * are younger than REPLAY_MAX_AGE they pass (the
			 * bound), never later. Without the time bound all 43
			 * would: 12.9 s of false life. */
			assert_true(accepted > 0 && accepted < 11);
			assert_true(last_accepted - death <=
				    REPLAY_MAX_AGE / 1000.0 + 0.01);
		}
		replay_free(r);
	}
}

/* An attacker who holds every datagram of the sender and delivers each
 * later and later, to drag the offset along: he gains at most
 * REPLAY_DRIFT_MAX_PPM of the time, then everything he holds is late.
 * The same schedule at a lower rate is what a drifting clock looks like,
 * and passes. */
static void test_delaying_attacker_gains_little(void **state)
{
	(void)state;
	const double rates_ppm[] = {2500, 1500};
	for (size_t k = 0; k < 2; k++) {
		struct replay *r = table(4);
		uint8_t a[REPLAY_ID_LEN];
		id_of(a, 3);
		const struct clocks c = {0, 0, 0};
		assert_int_equal(replay_check(r, a, 5, 1, 0, 0),
				 REPLAY_NEW_LIFE);
		uint64_t seq = 1;
		double first_late = -1;
		for (double t = 0.3; t < 3600; t += 0.3) {
			/* held 2.9 s, and longer as time goes on */
			double held = 2.9 + t * rates_ppm[k] / 1e6;
			enum replay_verdict v =
			    replay_check(r, a, 5, ++seq, sender_ms(&c, t),
					 local_ms(&c, t + held));
			if (v == REPLAY_LATE && first_late < 0)
				first_late = t;
			if (v != REPLAY_LATE)
				assert_int_equal(v, REPLAY_FRESH);
		}
		if (k == 0)
			/* 0.1 s of margin at 500 ppm of excess: 200 s. */
			assert_true(first_late > 0 && first_late < 250);
		else
			assert_true(first_late < 0);
		replay_free(r);
	}
}

/* Clock values from the far ends of uint64_t: clamped, no overflow (the
 * suite also runs under UBSan). */
static void test_extreme_clocks(void **state)
{
	(void)state;
	struct replay *r = table(4);
	uint8_t a[REPLAY_ID_LEN];
	id_of(a, 1);
	assert_int_equal(replay_check(r, a, 1, 1, UINT64_MAX, 0),
			 REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, a, 1, 2, UINT64_MAX, 0), REPLAY_FRESH);
	assert_int_equal(replay_check(r, a, 1, 3, 0, UINT64_MAX), REPLAY_LATE);
	assert_int_equal(replay_check(r, a, 1, 3, UINT64_MAX, UINT64_MAX),
			 REPLAY_LATE);
	assert_int_equal(replay_check(r, a, 2, 1, 0, UINT64_MAX),
			 REPLAY_NEW_LIFE);
	assert_int_equal(replay_check(r, a, 2, 2, UINT64_MAX, 0), REPLAY_FRESH);
	assert_int_equal(replay_check(r, a, 2, 3, UINT64_MAX, UINT64_MAX),
			 REPLAY_LATE);
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
	    cmocka_unit_test(test_drift_never_drops),
	    cmocka_unit_test(test_stock_replayed_after_death),
	    cmocka_unit_test(test_delaying_attacker_gains_little),
	    cmocka_unit_test(test_extreme_clocks),
	    cmocka_unit_test(test_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
