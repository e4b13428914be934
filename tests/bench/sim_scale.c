/*
 * sim_scale — gossip at scale in the deterministic simulator (tests/lib/sim.c),
 * for tests/bench/50_gossip_scale.py.
 *
 *   sim_scale --n N --config product|lan [--seed S] [--crashes K]
 *             [--batch B] [--window SECONDS] [--losses 0,0.05,0.1]
 *             [--time-limit SECONDS] [--out FILE]
 *
 * One cluster of N members, formed by sim_bootstrap() (every member told of
 * every other: no join storm), in virtual time:
 *  1. settle until no member has an update left to disseminate;
 *  2. per loss rate 0 in the list, `window` virtual seconds (see 4);
 *  3. K crashes of random members at random phases, at 0% loss, in rounds
 *     of B members crashed at the same instant (B = 1: one at a time), each
 *     round once the previous one's updates are no longer being spread
 *     (with B > 1 they spread at the same time, which slows them: a member
 *     busy spreading one update passes the next on at its next gossip
 *     round rather than at once): per crash, the first
 *     SUSPECT and first DEAD anywhere, and when every running member holds
 *     it SUSPECT (or DEAD) and DEAD;
 *  4. per other loss rate, `window` virtual seconds: false positives (DEAD
 *     declared about a running member), false suspicions, refutations,
 *     bytes and datagrams sent per member per second.
 * A loss window stops early once `time-limit` seconds (wall clock) have
 * passed since the start (the simulated length is reported), and so do the
 * crashes after the third.
 *
 * Output: one JSON object on stdout (or FILE). Progress on stderr.
 *
 * `product` is the configuration the product ships, config_gossip_defaults()
 * (src/common/config.c), unless overridden by the --probe-* flags; `lan` is
 * swim_config_defaults() as is (memberlist's LAN configuration).
 *
 *   sim_scale --print-defaults
 *
 * prints both as one JSON object ({"product": {...}, "lan": {...}}) and
 * exits: the benchmark scripts read the tunings from here, never from the
 * source.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxystone/config.h"
#include "proxystone/rng.h"
#include "proxystone/swim.h"
#include "sim.h"

#define LOSSES_MAX 8
#define CRASHES_MAX 64
/* Crashes done even past the time limit. */
#define CRASHES_MIN 3
/* Virtual seconds a loss window is simulated per step (between checks of
 * the CPU limit). */
#define CHUNK 2.0

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = strtol(line + 6, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

/* One crashed member under observation. */
struct crash {
	size_t node;
	double t_crash;
	double first_suspect, first_dead; /* < 0: not yet */
	double all_suspect, all_dead;	  /* < 0: not yet */
	size_t n_suspect, n_dead;	  /* observers so far */
	uint8_t *seen;			  /* per observer: 1 suspect, 2 dead */
};

/* What the event hook tracks. */
struct watch {
	struct crash crash[CRASHES_MAX]; /* this round's */
	size_t n_crash;
	short *slot; /* per node: index in crash[], or -1 */
	size_t need; /* observers: running members */
	/* For the loss windows. */
	uint64_t false_suspect; /* SUSPECT events about running members */
	uint8_t *fp;		/* per node: declared DEAD while running */
	uint64_t fp_subjects;	/* distinct such members */
};

static void on_event(void *ctx, struct sim *sim, size_t obs,
		     const struct swim_event *ev)
{
	struct watch *w = ctx;
	struct crash *c;
	double now;
	long subj;

	if (!(ev->what & SWIM_EV_STATUS) ||
	    (ev->status != SWIM_SUSPECT && ev->status != SWIM_DEAD))
		return;
	subj = sim_index_of(sim, &ev->id);
	if (subj < 0)
		return;
	if (sim_state(sim, (size_t)subj) == SIM_RUNNING) {
		if (ev->status == SWIM_SUSPECT)
			w->false_suspect++;
		else if (!w->fp[subj]) {
			w->fp[subj] = 1;
			w->fp_subjects++;
		}
	}
	if (w->slot[subj] < 0)
		return;
	c = &w->crash[w->slot[subj]];
	now = sim_now(sim);
	if (c->first_suspect < 0)
		c->first_suspect = now;
	if (c->seen[obs] == 0) {
		c->seen[obs] = 1;
		if (++c->n_suspect == w->need)
			c->all_suspect = now;
	}
	if (ev->status == SWIM_DEAD) {
		if (c->first_dead < 0)
			c->first_dead = now;
		if (c->seen[obs] < 2) {
			c->seen[obs] = 2;
			if (++c->n_dead == w->need)
				c->all_dead = now;
		}
	}
}

static bool cond_all_dead(struct sim *sim, void *ctx)
{
	const struct watch *w = ctx;

	(void)sim;
	for (size_t i = 0; i < w->n_crash; i++) {
		if (w->crash[i].all_dead < 0)
			return false;
	}
	return true;
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double since(double t, double t0)
{
	return t < 0 ? -1 : t - t0;
}

/* Sum over running members of their own stats. */
static void sum_stats(struct sim *sim, uint64_t *suspects, uint64_t *refutes,
		      uint64_t *deaths, unsigned *max_health)
{
	*suspects = *refutes = *deaths = 0;
	*max_health = 0;
	for (size_t i = 0; i < sim_size(sim); i++) {
		struct swim_stats st;

		if (sim_swim(sim, i) == NULL)
			continue;
		swim_stats_get(sim_swim(sim, i), &st);
		*suspects += st.suspects;
		*refutes += st.refutes;
		*deaths += st.deaths;
		if (st.local_health > *max_health)
			*max_health = st.local_health;
	}
}

/* One window of `window` virtual seconds at `loss`, printed as a JSON
 * object; cut short once `time_limit` wall seconds have passed since
 * wall0. Then back to 0% loss, and if `more` follows, a quiet spell of 5 s
 * (suspicions in flight settle). */
static void run_window(struct sim *sim, struct watch *w, double loss,
		       double window, double wall0, double time_limit,
		       bool first, bool more)
{
	size_t n = sim_size(sim);
	struct sim_counters c0, c1;
	uint64_t su0, re0, de0, su1, re1, de1;
	unsigned h0, h1;
	uint64_t fs0 = w->false_suspect;
	double start = sim_now(sim), c_start = cpu_now(), bps, pps, dur;
	bool cut = false;

	memset(w->fp, 0, n);
	w->fp_subjects = 0;
	sim_set_loss(sim, loss);
	sim_counters(sim, &c0);
	sum_stats(sim, &su0, &re0, &de0, &h0);
	sim_traffic_mark(sim);
	while (sim_now(sim) < start + window) {
		if (mono_now() - wall0 > time_limit) {
			cut = true;
			break;
		}
		sim_run_until(sim, fmin(sim_now(sim) + CHUNK, start + window));
	}
	sim_traffic_rate(sim, &bps, &pps);
	sim_counters(sim, &c1);
	sum_stats(sim, &su1, &re1, &de1, &h1);
	dur = sim_now(sim) - start;
	printf("%s\n  {\"loss\": %g, \"seconds\": %.1f, \"cut\": %s, "
	       "\"members\": %zu, \"false_dead\": %" PRIu64
	       ", \"fp_members\": %" PRIu64 ", \"false_suspect\": %" PRIu64
	       ", \"refutes\": %" PRIu64 ", \"suspicions_raised\": %" PRIu64
	       ", \"deaths_declared\": %" PRIu64 ", \"max_health\": %u, "
	       "\"bytes_per_s\": %.1f, \"packets_per_s\": %.3f, "
	       "\"dropped_loss\": %" PRIu64 ", \"cpu\": %.2f}",
	       first ? "" : ",", loss, dur, cut ? "true" : "false",
	       sim_running(sim), c1.false_dead - c0.false_dead, w->fp_subjects,
	       w->false_suspect - fs0, re1 - re0, su1 - su0, de1 - de0, h1, bps,
	       pps, c1.dropped_loss - c0.dropped_loss, cpu_now() - c_start);
	fprintf(stderr,
		"sim_scale n=%zu: loss %.0f%%: %.0f s simulated%s, %" PRIu64
		" members falsely DEAD, %.0f B/s, %.2f pkt/s per member, "
		"%.1f s cpu\n",
		sim_running(sim), loss * 100, dur,
		cut ? " (cut by the time limit)" : "", w->fp_subjects, bps, pps,
		cpu_now() - c_start);
	fflush(stdout);
	sim_set_loss(sim, 0);
	if (more)
		sim_run_for(sim, 5.0);
}

static void print_tuning(const char *name, const struct swim_config *c,
			 const char *sep)
{
	printf("\"%s\": {\"probe_interval\": %g, \"probe_timeout\": %g, "
	       "\"indirect_checks\": %u, \"suspicion_mult\": %g, "
	       "\"suspicion_max_mult\": %g, \"retransmit_mult\": %u, "
	       "\"gossip_interval\": %g, \"gossip_nodes\": %u, "
	       "\"gossip_to_dead\": %g, \"health_max\": %u, "
	       "\"nack_ratio\": %g, \"sync_interval\": %g, "
	       "\"reconnect_interval\": %g, \"dead_reap_time\": %g, "
	       "\"mtu\": %zu}%s",
	       name, c->probe_interval, c->probe_timeout, c->indirect_checks,
	       c->suspicion_mult, c->suspicion_max_mult, c->retransmit_mult,
	       c->gossip_interval, c->gossip_nodes, c->gossip_to_dead,
	       c->health_max, c->nack_ratio, c->sync_interval,
	       c->reconnect_interval, c->dead_reap_time, c->mtu, sep);
}

/* --print-defaults: the product's tuning and memberlist's, as JSON. */
static int print_defaults(void)
{
	struct swim_config prod, lan;

	config_gossip_defaults(&prod);
	swim_config_defaults(&lan);
	printf("{");
	print_tuning("product", &prod, ", ");
	print_tuning("lan", &lan, "}\n");
	return fflush(stdout) == 0 ? 0 : 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: sim_scale --print-defaults\n"
			"       sim_scale --n N --config product|lan "
			"[--seed S] [--crashes K] [--batch B] [--window S] "
			"[--losses 0,0.05,0.1] [--time-limit S] [--out FILE]\n"
			"  product overrides: [--probe-interval S] "
			"[--probe-timeout S] [--indirect-checks K] "
			"[--suspicion-mult M]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	size_t n = 0;
	const char *config = "product";
	uint64_t seed = 1;
	unsigned crashes = 5, batch = 1;
	double window = 3600, time_limit = 1e9;
	double losses[LOSSES_MAX] = {0, 0.05, 0.10};
	size_t n_losses = 3;
	/* Overrides of the product's values (< 0: keep). */
	double o_interval = -1, o_timeout = -1, o_mult = -1;
	long o_indirect = -1;
	struct sim_config cfg;
	struct sim *sim = NULL;
	struct watch w;
	struct rng rng;
	double cpu0, wall0, t;
	int rc;

	if (argc == 2 && !strcmp(argv[1], "--print-defaults"))
		return print_defaults();
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			usage();
		i++;
		if (!strcmp(a, "--n"))
			n = strtoul(v, NULL, 10);
		else if (!strcmp(a, "--config"))
			config = v;
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--crashes"))
			crashes = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--batch"))
			batch = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--window"))
			window = strtod(v, NULL);
		else if (!strcmp(a, "--time-limit"))
			time_limit = strtod(v, NULL);
		else if (!strcmp(a, "--probe-interval"))
			o_interval = strtod(v, NULL);
		else if (!strcmp(a, "--probe-timeout"))
			o_timeout = strtod(v, NULL);
		else if (!strcmp(a, "--suspicion-mult"))
			o_mult = strtod(v, NULL);
		else if (!strcmp(a, "--indirect-checks"))
			o_indirect = strtol(v, NULL, 10);
		else if (!strcmp(a, "--out")) {
			if (freopen(v, "w", stdout) == NULL) {
				perror(v);
				return 1;
			}
		} else if (!strcmp(a, "--losses")) {
			char *str = strdup(v), *tok, *save = NULL;

			n_losses = 0;
			for (tok = strtok_r(str, ",", &save);
			     tok && n_losses < LOSSES_MAX;
			     tok = strtok_r(NULL, ",", &save))
				losses[n_losses++] = strtod(tok, NULL);
			free(str);
		} else
			usage();
	}
	if (n < 2 || n > SIM_NODES_MAX || crashes > CRASHES_MAX ||
	    crashes + 1 >= n || batch < 1 || batch > crashes + !crashes)
		usage();

	sim_config_defaults(&cfg, seed, n);
	if (!strcmp(config, "product")) {
		config_gossip_defaults(&cfg.swim);
		if (o_interval > 0)
			cfg.swim.probe_interval = o_interval;
		if (o_timeout > 0)
			cfg.swim.probe_timeout = o_timeout;
		if (o_mult > 0)
			cfg.swim.suspicion_mult = o_mult;
		if (o_indirect >= 0)
			cfg.swim.indirect_checks = (unsigned)o_indirect;
	} else if (!strcmp(config, "lan")) {
		swim_config_defaults(&cfg.swim);
	} else {
		usage();
	}
	snprintf(cfg.swim.cluster_id, sizeof(cfg.swim.cluster_id), "sim");
	rc = sim_new(&cfg, &sim);
	if (rc != 0) {
		fprintf(stderr, "sim_new: %s\n", strerror(-rc));
		return 1;
	}
	rng_seed(&rng, seed ^ 0x5ca1ab1eULL);
	memset(&w, 0, sizeof(w));
	w.slot = malloc(n * sizeof(*w.slot));
	w.fp = calloc(n, 1);
	if (w.slot == NULL || w.fp == NULL)
		return 1;
	for (size_t i = 0; i < n; i++)
		w.slot[i] = -1;
	for (unsigned i = 0; i < batch; i++) {
		w.crash[i].seen = calloc(n, 1);
		if (w.crash[i].seen == NULL)
			return 1;
	}

	wall0 = mono_now();
	cpu0 = cpu_now();
	rc = sim_bootstrap(sim, n);
	if (rc != 0) {
		fprintf(stderr, "sim_bootstrap: %s\n", strerror(-rc));
		return 1;
	}
	double cpu_boot = cpu_now() - cpu0, wall_boot = mono_now() - wall0;
	long rss_boot = rss_kb();

	fprintf(stderr,
		"sim_scale %s n=%zu: bootstrapped in %.1f s (%.1f s "
		"cpu), rss %ld MB\n",
		config, n, wall_boot, cpu_boot, rss_boot / 1024);

	/* 1. Settle: every member's own record has been spread. */
	t = sim_now(sim);
	bool drained = sim_run_until_cond(sim, t + 120, 0.5, sim_drained, NULL);
	double settle = sim_now(sim) - t;
	double cpu_settle = cpu_now() - cpu0 - cpu_boot;

	sim_set_event_hook(sim, on_event, &w);
	printf("{\"n\": %zu, \"config\": \"%s\", \"seed\": %" PRIu64
	       ", \"probe_interval\": %g, \"probe_timeout\": %g, "
	       "\"suspicion_mult\": %g, \"suspicion_max_mult\": %g, "
	       "\"indirect_checks\": %u, \"gossip_interval\": %g, "
	       "\"gossip_nodes\": %u, \"retransmit_mult\": %u, "
	       "\"sync_interval\": %g, \"delay\": %g, \"jitter\": %g,\n",
	       n, config, seed, cfg.swim.probe_interval, cfg.swim.probe_timeout,
	       cfg.swim.suspicion_mult, cfg.swim.suspicion_max_mult,
	       cfg.swim.indirect_checks, cfg.swim.gossip_interval,
	       cfg.swim.gossip_nodes, cfg.swim.retransmit_mult,
	       cfg.swim.sync_interval, cfg.delay, cfg.jitter);
	printf(" \"wall_bootstrap\": %.2f, \"cpu_bootstrap\": %.2f, "
	       "\"rss_mb\": %.0f, \"settle_s\": %.1f, \"settled\": %s, "
	       "\"cpu_settle\": %.2f, \"batch\": %u,\n",
	       wall_boot, cpu_boot, (double)rss_boot / 1024, settle,
	       drained ? "true" : "false", cpu_settle, batch);

	/* 2. The windows at 0% loss, before the crashes: a steady state
	 * without dead members (each member pings a random DEAD member every
	 * reconnect_interval until it is forgotten). */
	size_t n_lossy = 0;

	for (size_t li = 0; li < n_losses; li++)
		n_lossy += losses[li] > 0;
	printf(" \"windows\": [");
	for (size_t li = 0, k = 0; li < n_losses; li++) {
		if (losses[li] == 0)
			run_window(sim, &w, 0, window, wall0, time_limit,
				   k++ == 0, false);
	}
	printf("],\n");

	/* 3. Crashes at 0% loss: rounds of `batch` members crashed at the
	 * same instant, each round once the previous one is known to all. */
	printf(" \"crashes\": [");
	for (unsigned done = 0; done < crashes;) {
		unsigned b = crashes - done < batch ? crashes - done : batch;

		if (done >= CRASHES_MIN && mono_now() - wall0 > time_limit) {
			fprintf(stderr, "sim_scale: time limit: %u crashes\n",
				done);
			break;
		}
		double c0 = cpu_now(), tc;
		bool ok;

		/* After a crash, until its updates are no longer spread (a
		 * member busy spreading one update passes the next on at its
		 * next gossip round, not at once); then a random phase
		 * against everyone's probe schedule. */
		if (done)
			sim_run_until_cond(sim, sim_now(sim) + 60, 0.25,
					   sim_drained, NULL);
		sim_run_for(sim, rng_unit(&rng) * 2.0);
		tc = sim_now(sim);
		w.n_crash = b;
		w.need = sim_running(sim) - b;
		for (unsigned k = 0; k < b; k++) {
			struct crash *c = &w.crash[k];
			size_t victim;

			do {
				victim = rng_below(&rng, n);
			} while (sim_state(sim, victim) != SIM_RUNNING);
			memset(c->seen, 0, n);
			c->node = victim;
			c->t_crash = tc;
			c->first_suspect = c->first_dead = -1;
			c->all_suspect = c->all_dead = -1;
			c->n_suspect = c->n_dead = 0;
			w.slot[victim] = (short)k;
			sim_crash(sim, victim);
		}
		ok = sim_run_until_cond(sim, tc + 600, 0.05, cond_all_dead, &w);
		for (unsigned k = 0; k < b; k++) {
			struct crash *c = &w.crash[k];

			printf("%s\n  {\"node\": %zu, \"round\": %u, "
			       "\"complete\": %s, "
			       "\"first_suspect\": %.3f, \"first_dead\": %.3f, "
			       "\"all_suspect\": %.3f, \"all_dead\": %.3f, "
			       "\"cpu\": %.2f}",
			       done + k ? "," : "", c->node, done / batch,
			       c->all_dead >= 0 ? "true" : "false",
			       since(c->first_suspect, tc),
			       since(c->first_dead, tc),
			       since(c->all_suspect, tc),
			       since(c->all_dead, tc), (cpu_now() - c0) / b);
			fprintf(stderr,
				"sim_scale %s n=%zu: crash %u: suspect %.2f s, "
				"dead %.2f s, all dead %.2f s\n",
				config, n, done + k + 1,
				since(c->first_suspect, tc),
				since(c->first_dead, tc),
				since(c->all_dead, tc));
			w.slot[c->node] = -1;
		}
		(void)ok;
		w.n_crash = 0;
		done += b;
	}
	printf("],\n");
	/* Let the last crash's updates drain before the windows. */
	if (crashes > 0 && n_lossy > 0)
		sim_run_for(sim, 10.0);

	/* 4. The lossy windows. */
	printf(" \"windows_after\": [");
	for (size_t li = 0, k = 0; li < n_losses; li++) {
		if (losses[li] > 0) {
			run_window(sim, &w, losses[li], window, wall0,
				   time_limit, k == 0, k + 1 < n_lossy);
			k++;
		}
	}
	printf("],\n \"cpu_total\": %.2f, \"wall_total\": %.2f, "
	       "\"rss_mb_end\": %.0f}\n",
	       cpu_now() - cpu0, mono_now() - wall0, (double)rss_kb() / 1024);
	fflush(stdout);
	/* No sim_free(): at 10,000 members freeing 10^8 table entries one by
	 * one takes seconds; exit() hands the memory back at once. */
	return 0;
}
