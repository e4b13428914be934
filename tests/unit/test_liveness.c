/* test_liveness — the registry status rule (liveness.c) as a pure function
 * of a node's view and of time. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "proxystone/liveness.h"
#include "../lib/sim.h"

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

/* ---- the rule driven by the SWIM core, in the simulator ------------------ */

#define SIM_N 30
#define COORD 0

static bool converged(struct sim *sim, void *ctx)
{
	(void)ctx;
	return sim_converged(sim);
}

/* The coordinator's verdict on `subject`: liveness over what member
 * COORD's gossip table says of it, as policy.c evaluates it. */
static Ps__NodeStatus verdict(struct sim *sim, size_t subject,
			      Ps__NodeStatus current)
{
	struct swim_member_info mi;
	if (swim_member_find(sim_swim(sim, COORD), sim_id(sim, subject), &mi))
		return current;
	struct liveness_view v = {
	    .in_gossip = true,
	    .swim = mi.status,
	    .serving = true,
	    .heard_ago = mi.last_heard < 0 ? -1 : sim_now(sim) - mi.last_heard,
	    .current = current,
	};
	return liveness_status(&v, TIMEOUT);
}

/* 30 members at 5% loss for two simulated minutes: no live member is ever
 * inactive at the coordinator. Then one crashes: inactive within the
 * protocol's bound for the product configuration (a probe period for
 * someone to probe it, with 10 periods of margin; the longest suspicion;
 * the doubt window). */
static void test_in_the_simulator(void **state)
{
	(void)state;
	struct sim_config cfg;
	struct sim *sim;
	Ps__NodeStatus st[SIM_N];
	sim_config_defaults(&cfg, 7, SIM_N);
	cfg.loss = 0.05;
	assert_int_equal(sim_new(&cfg, &sim), 0);
	assert_int_equal(sim_start_cluster(sim, SIM_N, 2), 0);
	assert_true(
	    sim_run_until_cond(sim, sim_now(sim) + 60, 0.5, converged, NULL));
	for (size_t i = 0; i < SIM_N; i++)
		st[i] = ACTIVE;
	double end = sim_now(sim) + 120;
	while (sim_now(sim) < end) {
		sim_run_for(sim, 0.1);
		for (size_t i = 1; i < SIM_N; i++) {
			st[i] = verdict(sim, i, st[i]);
			assert_int_not_equal(st[i], INACTIVE);
		}
	}
	const struct swim_config *c = &cfg.swim;
	double bound = 11 * c->probe_interval +
		       c->suspicion_max_mult * c->suspicion_mult *
			   log10((double)SIM_N) * c->probe_interval +
		       LIVENESS_DOUBT_WINDOW + 4 * (cfg.delay + cfg.jitter);
	size_t x = SIM_N / 2;
	double crashed = sim_now(sim);
	sim_crash(sim, x);
	while (st[x] != INACTIVE && sim_now(sim) - crashed < 10 * bound) {
		sim_run_for(sim, 0.05);
		st[x] = verdict(sim, x, st[x]);
	}
	print_message("crash -> inactive at the coordinator: %.2f s (bound "
		      "%.2f s)\n",
		      sim_now(sim) - crashed, bound);
	assert_int_equal(st[x], INACTIVE);
	assert_true(sim_now(sim) - crashed <= bound);
	sim_free(sim);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gossip_verdicts),
	    cmocka_unit_test(test_doubted_death_over_time),
	    cmocka_unit_test(test_http_only_over_time),
	    cmocka_unit_test(test_in_the_simulator),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
