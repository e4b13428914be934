/* test_liveness — the registry status rule (liveness.c) as a pure function
 * of a node's view and of time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "proxystone/liveness.h"

#define TIMEOUT 10.0
#define ACTIVE PS__NODE_STATUS__NODE_ACTIVE
#define SUSPECT PS__NODE_STATUS__NODE_SUSPECT
#define INACTIVE PS__NODE_STATUS__NODE_INACTIVE
#define DISABLED PS__NODE_STATUS__NODE_DISABLED
#define LEFT PS__NODE_STATUS__NODE_LEFT

static Ps__NodeStatus gossip(enum swim_status st, bool serving,
			     double heard_ago, Ps__NodeStatus current)
{
	struct liveness_view v = {
	    .in_gossip = true,
	    .swim = st,
	    .serving = serving,
	    .heard_ago = heard_ago,
	    .current = current,
	};
	return liveness_status(&v, TIMEOUT);
}

static Ps__NodeStatus http(double beat_ago, Ps__NodeStatus current)
{
	struct liveness_view v = {
	    .in_gossip = false,
	    .beat_ago = beat_ago,
	    .current = current,
	};
	return liveness_status(&v, TIMEOUT);
}

static void test_gossip_verdicts(void **state)
{
	(void)state;
	assert_int_equal(gossip(SWIM_ALIVE, true, 0.1, INACTIVE), ACTIVE);
	assert_int_equal(gossip(SWIM_ALIVE, false, 0.1, ACTIVE), DISABLED);
	assert_int_equal(gossip(SWIM_SUSPECT, true, 5, ACTIVE), SUSPECT);
	assert_int_equal(gossip(SWIM_LEFT, true, 5, ACTIVE), LEFT);
	/* Heartbeats play no part for gossip members: silent for ages but
	 * ALIVE in the detector's view is active. */
	assert_int_equal(gossip(SWIM_ALIVE, true, 1000, ACTIVE), ACTIVE);
}

/* A death declared right after hearing from the member is doubted for
 * LIVENESS_DOUBT_WINDOW, then stands: the verdict as a function of time. */
static void test_doubted_death_over_time(void **state)
{
	(void)state;
	Ps__NodeStatus st = ACTIVE;
	double heard_at = 100.0;
	for (double now = 100.0; now < 103.0; now += 0.05) {
		st = gossip(SWIM_DEAD, true, now - heard_at, st);
		if (now - heard_at < LIVENESS_DOUBT_WINDOW)
			assert_int_equal(st, SUSPECT);
		else
			assert_int_equal(st, INACTIVE);
	}
	/* Never heard from at all: no doubt. */
	assert_int_equal(gossip(SWIM_DEAD, true, -1, ACTIVE), INACTIVE);
	/* Refuted: ALIVE again is active again. */
	assert_int_equal(gossip(SWIM_ALIVE, true, 0.01, INACTIVE), ACTIVE);
}

/* HTTP-only nodes: silent longer than node_timeout goes inactive from
 * active, suspect and disabled; inactive and left stay; a heartbeat (a
 * fresh beat) keeps the status its sender set. */
static void test_http_only_over_time(void **state)
{
	(void)state;
	assert_int_equal(http(TIMEOUT, ACTIVE), ACTIVE); /* exactly: not yet */
	assert_int_equal(http(TIMEOUT + 0.5, ACTIVE), INACTIVE);
	assert_int_equal(http(TIMEOUT + 0.5, SUSPECT), INACTIVE);
	assert_int_equal(http(TIMEOUT + 0.5, DISABLED), INACTIVE);
	assert_int_equal(http(TIMEOUT + 0.5, INACTIVE), INACTIVE);
	assert_int_equal(http(TIMEOUT + 0.5, LEFT), LEFT);
	assert_int_equal(http(0.1, DISABLED), DISABLED);
	assert_int_equal(http(0.1, INACTIVE), INACTIVE);
	/* A run over time: beats every 3 s, then silence from t = 30. */
	Ps__NodeStatus st = ACTIVE;
	double last = 0;
	for (double t = 0; t < 60; t += 0.5) {
		if (t < 30 && t - last >= 3)
			last = t;
		st = http(t - last, st);
		assert_int_equal(st, t - last > TIMEOUT ? INACTIVE : ACTIVE);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gossip_verdicts),
	    cmocka_unit_test(test_doubted_death_over_time),
	    cmocka_unit_test(test_http_only_over_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
