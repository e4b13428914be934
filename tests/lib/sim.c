/*
 * sim — deterministic gossip simulator (see sim.h).
 */
#include "proxystone/config.h"
#include "proxystone/rng.h"
#include "sim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Initial event heap capacity; grows by doubling. */
#define HEAP_INIT 1024
/* Ticks of one instance at one virtual instant before the simulator calls
 * it a livelock (a deadline that its tick does not move): a real run needs
 * a handful. */
#define STALL_TICKS 10000

struct pkt {
	struct pkt *next; /* in a paused node's inbox */
	struct swim_addr from;
	size_t len;
	uint8_t data[];
};

struct ev {
	double t;
	uint64_t order; /* insertion counter: ties replay in the same order */
	uint32_t node;
	uint32_t gen;	 /* timers: the node's timer generation */
	struct pkt *pkt; /* NULL: a timer */
};

struct node {
	struct swim *swim;
	enum sim_node_state state;
	struct swim_id id;
	int group;
	bool in_blocked, out_blocked;
	bool paused;
	struct pkt *in_head, *in_tail; /* waiting while paused, oldest first */
	size_t in_n;
	bool timer_pending;
	uint32_t timer_gen;
	double timer_at;
	double last_tick;
	unsigned ticks_at_last;
	unsigned starts;
	uint64_t pkts_sent, bytes_sent;
	uint64_t false_dead_by, false_dead_of;
};

struct link {
	uint32_t from, to;
};

struct sim {
	struct sim_config cfg;
	struct rng rng;
	double now;
	uint64_t order;
	struct node *nodes;
	size_t n_nodes;
	long *idmap; /* open addressing: node index or -1 */
	size_t idmap_cap;
	struct ev *heap;
	size_t heap_n, heap_cap;
	struct link blocks[SIM_BLOCKS_MAX];
	size_t n_blocks;
	sim_event_fn hook;
	void *hook_ctx;
	struct sim_counters c;
	double mark_time; /* sim_traffic_mark() */
	uint64_t mark_bytes, mark_packets;
	uint8_t *buf; /* one datagram, cfg.swim.mtu bytes */
};

/* ------------------------------------------------------------------ */
/* Event heap. */

static bool ev_before(const struct ev *a, const struct ev *b)
{
	return a->t < b->t || (a->t == b->t && a->order < b->order);
}

static int heap_push(struct sim *sim, struct ev e)
{
	size_t i;

	if (sim->heap_n == sim->heap_cap) {
		size_t cap = sim->heap_cap * 2;
		struct ev *h = realloc(sim->heap, cap * sizeof(*h));

		if (h == NULL)
			return -ENOMEM;
		sim->heap = h;
		sim->heap_cap = cap;
	}
	e.order = sim->order++;
	i = sim->heap_n++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!ev_before(&e, &sim->heap[parent]))
			break;
		sim->heap[i] = sim->heap[parent];
		i = parent;
	}
	sim->heap[i] = e;
	return 0;
}

static struct ev heap_pop(struct sim *sim)
{
	struct ev top = sim->heap[0], last = sim->heap[--sim->heap_n];
	size_t i = 0, n = sim->heap_n;

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct ev *best = &last;

		if (l < n && ev_before(&sim->heap[l], best)) {
			m = l;
			best = &sim->heap[l];
		}
		if (r < n && ev_before(&sim->heap[r], best))
			m = r;
		if (m == i)
			break;
		sim->heap[i] = sim->heap[m];
		i = m;
	}
	if (n > 0)
		sim->heap[i] = last;
	return top;
}

/* ------------------------------------------------------------------ */
/* Ids. */

static size_t id_hash(const struct swim_id *id)
{
	uint64_t a;

	memcpy(&a, id->b, 8);
	a ^= a >> 33;
	a *= 0xff51afd7ed558ccdULL;
	a ^= a >> 33;
	return (size_t)a;
}

long sim_index_of(const struct sim *sim, const struct swim_id *id)
{
	size_t mask = sim->idmap_cap - 1;

	for (size_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
		long v = sim->idmap[i];

		if (v < 0 || swim_id_eq(&sim->nodes[v].id, id))
			return v;
	}
}

struct swim_addr sim_addr(size_t i)
{
	struct swim_addr a = {SIM_IP_BASE + (uint32_t)i + 1, SIM_PORT};

	return a;
}

static long addr_index(const struct sim *sim, const struct swim_addr *a)
{
	uint32_t i = a->ip - SIM_IP_BASE - 1;

	if (a->port != SIM_PORT || a->ip <= SIM_IP_BASE || i >= sim->n_nodes)
		return -1;
	return (long)i;
}

/* ------------------------------------------------------------------ */

void sim_config_defaults(struct sim_config *cfg, uint64_t seed,
			 size_t max_nodes)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->seed = seed;
	cfg->max_nodes = max_nodes;
	cfg->delay = 0.001;
	cfg->jitter = 0.001;
	config_gossip_defaults(&cfg->swim);
	snprintf(cfg->swim.cluster_id, sizeof(cfg->swim.cluster_id), "sim");
}

int sim_new(const struct sim_config *cfg, struct sim **out)
{
	struct sim *sim;
	uint64_t x = cfg->seed;

	if (cfg->max_nodes == 0 || cfg->max_nodes > SIM_NODES_MAX ||
	    swim_config_check(&cfg->swim, NULL, 0) != 0)
		return -EINVAL;
	sim = calloc(1, sizeof(*sim));
	if (sim == NULL)
		return -ENOMEM;
	sim->cfg = *cfg;
	rng_seed(&sim->rng, x);
	sim->n_nodes = cfg->max_nodes;
	sim->nodes = calloc(sim->n_nodes, sizeof(*sim->nodes));
	sim->idmap_cap = 16;
	while (sim->idmap_cap < 2 * sim->n_nodes)
		sim->idmap_cap *= 2;
	sim->idmap = malloc(sim->idmap_cap * sizeof(*sim->idmap));
	sim->heap_cap = HEAP_INIT;
	sim->heap = malloc(sim->heap_cap * sizeof(*sim->heap));
	sim->buf = malloc(cfg->swim.mtu);
	if (sim->nodes == NULL || sim->idmap == NULL || sim->heap == NULL ||
	    sim->buf == NULL) {
		sim_free(sim);
		return -ENOMEM;
	}
	for (size_t i = 0; i < sim->idmap_cap; i++)
		sim->idmap[i] = -1;
	for (size_t i = 0; i < sim->n_nodes; i++) {
		struct node *n = &sim->nodes[i];
		uint64_t a = rng_next(&sim->rng), b = rng_next(&sim->rng);
		size_t mask = sim->idmap_cap - 1, h;

		memcpy(n->id.b, &a, 8);
		memcpy(n->id.b + 8, &b, 8);
		n->id.b[6] = (uint8_t)((n->id.b[6] & 0x0f) | 0x40); /* v4 */
		n->id.b[8] = (uint8_t)((n->id.b[8] & 0x3f) | 0x80);
		for (h = id_hash(&n->id) & mask; sim->idmap[h] >= 0;
		     h = (h + 1) & mask)
			;
		sim->idmap[h] = (long)i;
	}
	*out = sim;
	return 0;
}

static void inbox_clear(struct node *n)
{
	while (n->in_head != NULL) {
		struct pkt *p = n->in_head;

		n->in_head = p->next;
		free(p);
	}
	n->in_tail = NULL;
	n->in_n = 0;
}

void sim_free(struct sim *sim)
{
	if (sim == NULL)
		return;
	for (size_t i = 0; sim->nodes != NULL && i < sim->n_nodes; i++) {
		swim_free(sim->nodes[i].swim);
		inbox_clear(&sim->nodes[i]);
	}
	for (size_t i = 0; sim->heap != NULL && i < sim->heap_n; i++)
		free(sim->heap[i].pkt);
	free(sim->nodes);
	free(sim->idmap);
	free(sim->heap);
	free(sim->buf);
	free(sim);
}

uint64_t sim_seed(const struct sim *sim)
{
	return sim->cfg.seed;
}

double sim_now(const struct sim *sim)
{
	return sim->now;
}

size_t sim_size(const struct sim *sim)
{
	return sim->n_nodes;
}

void sim_set_event_hook(struct sim *sim, sim_event_fn fn, void *ctx)
{
	sim->hook = fn;
	sim->hook_ctx = ctx;
}

/* ------------------------------------------------------------------ */
/* Network. */

static bool blocked(const struct sim *sim, size_t from, size_t to)
{
	const struct node *a = &sim->nodes[from], *b = &sim->nodes[to];

	if (a->out_blocked || b->in_blocked || a->group != b->group)
		return true;
	for (size_t i = 0; i < sim->n_blocks; i++) {
		if (sim->blocks[i].from == from && sim->blocks[i].to == to)
			return true;
	}
	return false;
}

static void net_send(struct sim *sim, size_t from, const struct swim_addr *to,
		     const uint8_t *data, size_t len)
{
	long dst = addr_index(sim, to);
	struct pkt *p;
	struct ev e;

	sim->c.packets_sent++;
	sim->c.bytes_sent += len;
	sim->nodes[from].pkts_sent++;
	sim->nodes[from].bytes_sent += len;
	if (dst < 0) {
		sim->c.dropped_crashed++;
		return;
	}
	/* Draw for loss and jitter on every datagram, blocked or not, so a
	 * block does not shift the random sequence of the rest. */
	bool lost = rng_unit(&sim->rng) < sim->cfg.loss;
	double delay = sim->cfg.delay + rng_unit(&sim->rng) * sim->cfg.jitter;

	if (blocked(sim, from, (size_t)dst)) {
		sim->c.dropped_blocked++;
		return;
	}
	if (lost) {
		sim->c.dropped_loss++;
		return;
	}
	p = malloc(sizeof(*p) + len);
	if (p == NULL)
		return;
	p->from = sim_addr(from);
	p->len = len;
	memcpy(p->data, data, len);
	e.t = sim->now + delay;
	e.node = (uint32_t)dst;
	e.gen = 0;
	e.pkt = p;
	if (heap_push(sim, e) != 0)
		free(p);
}

static void schedule(struct sim *sim, size_t i)
{
	struct node *n = &sim->nodes[i];
	double d;
	struct ev e;

	if (n->swim == NULL)
		return;
	d = swim_next_deadline(n->swim);
	if (isinf(d))
		return;
	if (d < sim->now)
		d = sim->now;
	if (n->timer_pending && n->timer_at <= d)
		return;
	e.t = d;
	e.node = (uint32_t)i;
	e.gen = ++n->timer_gen;
	e.pkt = NULL;
	if (heap_push(sim, e) == 0) {
		n->timer_pending = true;
		n->timer_at = d;
	}
}

static void note_event(struct sim *sim, size_t observer,
		       const struct swim_event *ev)
{
	sim->c.events++;
	if ((ev->what & SWIM_EV_STATUS) && ev->status == SWIM_DEAD) {
		long subj = sim_index_of(sim, &ev->id);

		if (subj >= 0 && sim->nodes[subj].state == SIM_RUNNING) {
			sim->c.false_dead++;
			sim->nodes[observer].false_dead_by++;
			sim->nodes[subj].false_dead_of++;
		}
	}
	if (sim->hook)
		sim->hook(sim->hook_ctx, sim, observer, ev);
}

/* Moves what node i produced into the network and the observers. */
static void drain(struct sim *sim, size_t i)
{
	struct node *n = &sim->nodes[i];
	struct swim_addr to;
	struct swim_event ev;
	size_t len = sim->cfg.swim.mtu;

	if (n->swim == NULL)
		return;
	while (swim_pop_packet(n->swim, &to, sim->buf, &len)) {
		net_send(sim, i, &to, sim->buf, len);
		len = sim->cfg.swim.mtu;
	}
	while (swim_pop_event(n->swim, &ev))
		note_event(sim, i, &ev);
	schedule(sim, i);
}

/* ------------------------------------------------------------------ */
/* Nodes. */

int sim_start(struct sim *sim, size_t i)
{
	struct node *n;
	char id[SWIM_ID_STR_LEN];
	struct swim_addr a = sim_addr(i);
	uint64_t x;
	int rc;

	if (i >= sim->n_nodes)
		return -EINVAL;
	n = &sim->nodes[i];
	if (n->swim != NULL)
		return -EBUSY;
	swim_id_format(&n->id, id);
	x = sim->cfg.seed ^ ((uint64_t)i << 20) ^ n->starts;
	struct rng per_node;
	rng_seed(&per_node, x);
	rc = swim_new(&sim->cfg.swim, id, &a, rng_next(&per_node), sim->now,
		      &n->swim);
	if (rc != 0)
		return rc;
	n->starts++;
	n->state = SIM_RUNNING;
	n->timer_pending = false;
	n->timer_gen++;
	drain(sim, i);
	return 0;
}

int sim_join(struct sim *sim, size_t i, size_t seed)
{
	struct swim_addr a = sim_addr(seed);
	int rc;

	if (i >= sim->n_nodes || sim->nodes[i].swim == NULL)
		return -EINVAL;
	rc = swim_add_seed(sim->nodes[i].swim, &a, sim->now);
	drain(sim, i);
	return rc == -EEXIST ? 0 : rc;
}

void sim_crash(struct sim *sim, size_t i)
{
	struct node *n = &sim->nodes[i];

	swim_free(n->swim);
	n->swim = NULL;
	inbox_clear(n);
	n->paused = false;
	n->state = SIM_CRASHED;
	n->timer_pending = false;
	n->timer_gen++;
}

void sim_leave(struct sim *sim, size_t i)
{
	struct node *n = &sim->nodes[i];

	if (n->swim == NULL)
		return;
	n->state = SIM_LEAVING;
	swim_leave(n->swim, sim->now);
	drain(sim, i);
}

void sim_pause(struct sim *sim, size_t i)
{
	if (i < sim->n_nodes && sim->nodes[i].swim != NULL)
		sim->nodes[i].paused = true;
}

void sim_resume(struct sim *sim, size_t i)
{
	struct node *n;
	unsigned batch = sim->cfg.batch > 1 ? sim->cfg.batch : 1, k = 0;

	if (i >= sim->n_nodes || !sim->nodes[i].paused)
		return;
	n = &sim->nodes[i];
	n->paused = false;
	while (n->in_head != NULL) {
		struct pkt *p = n->in_head;

		n->in_head = p->next;
		n->in_n--;
		sim->c.packets_delivered++;
		swim_recv(n->swim, &p->from, p->data, p->len, sim->now);
		free(p);
		if (++k == batch || n->in_head == NULL) {
			drain(sim, i);
			k = 0;
		}
	}
	n->in_tail = NULL;
	swim_tick(n->swim, sim->now);
	drain(sim, i);
}

int sim_inject(struct sim *sim, size_t i, const struct swim_addr *from,
	       const uint8_t *pkt, size_t len)
{
	struct pkt *p;
	struct ev e;

	if (i >= sim->n_nodes)
		return -EINVAL;
	p = malloc(sizeof(*p) + len);
	if (p == NULL)
		return -ENOMEM;
	p->from = *from;
	p->len = len;
	memcpy(p->data, pkt, len);
	e.t = sim->now + sim->cfg.delay;
	e.node = (uint32_t)i;
	e.gen = 0;
	e.pkt = p;
	if (heap_push(sim, e) != 0) {
		free(p);
		return -ENOMEM;
	}
	return 0;
}

int sim_start_cluster(struct sim *sim, size_t n, double window)
{
	double t0 = sim->now;
	double *at;
	int rc;

	if (n == 0 || n > sim->n_nodes)
		return -EINVAL;
	rc = sim_start(sim, 0);
	if (rc != 0)
		return rc;
	at = malloc(n * sizeof(*at));
	if (at == NULL)
		return -ENOMEM;
	/* Join times, increasing: node i starts at at[i]. */
	for (size_t i = 1; i < n; i++)
		at[i] = t0 + window * (double)i / (double)n +
			rng_unit(&sim->rng) * window / (double)n;
	for (size_t i = 1; i < n && rc == 0; i++) {
		sim_run_until(sim, at[i]);
		rc = sim_start(sim, i);
		if (rc == 0)
			rc = sim_join(sim, i, 0);
		if (rc == 0 && i > 1)
			rc = sim_join(sim, i, 1 + rng_below(&sim->rng, i - 1));
	}
	free(at);
	if (rc == 0)
		sim_run_until(sim, t0 + window);
	return rc;
}

int sim_bootstrap(struct sim *sim, size_t n)
{
	int rc = 0;

	if (n == 0 || n > sim->n_nodes)
		return -EINVAL;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct node *nd = &sim->nodes[i];

		rc = sim_start(sim, i);
		for (size_t j = 0; j < n && rc == 0; j++) {
			struct swim_addr a = sim_addr(j);

			if (j != i)
				rc =
				    swim_add_member(nd->swim, &sim->nodes[j].id,
						    &a, 0, sim->now);
		}
		if (rc == 0)
			drain(sim, i);
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Running. */

void sim_run_until(struct sim *sim, double t)
{
	while (sim->heap_n > 0 && sim->heap[0].t <= t) {
		struct ev e = heap_pop(sim);
		struct node *n = &sim->nodes[e.node];

		sim->now = e.t;
		if (e.pkt != NULL) {
			if (n->swim == NULL) {
				sim->c.dropped_crashed++;
			} else if (n->paused) {
				if (n->in_n >= SIM_INBOX_MAX) {
					sim->c.dropped_overflow++;
					free(e.pkt);
					continue;
				}
				e.pkt->next = NULL;
				if (n->in_tail != NULL)
					n->in_tail->next = e.pkt;
				else
					n->in_head = e.pkt;
				n->in_tail = e.pkt;
				n->in_n++;
				continue; /* kept: sim_resume() reads it */
			} else {
				sim->c.packets_delivered++;
				swim_recv(n->swim, &e.pkt->from, e.pkt->data,
					  e.pkt->len, sim->now);
				drain(sim, e.node);
			}
			free(e.pkt);
			continue;
		}
		if (n->swim == NULL || e.gen != n->timer_gen)
			continue; /* stale timer */
		n->timer_pending = false;
		if (n->paused)
			continue; /* sim_resume() runs the timers */
		if (sim->now != n->last_tick) {
			n->last_tick = sim->now;
			n->ticks_at_last = 0;
		} else if (++n->ticks_at_last > STALL_TICKS) {
			fprintf(stderr,
				"sim: node %u ticks forever at %.9f "
				"(seed %llu)\n",
				e.node, sim->now,
				(unsigned long long)sim->cfg.seed);
			abort();
		}
		swim_tick(n->swim, sim->now);
		drain(sim, e.node);
	}
	if (t > sim->now)
		sim->now = t;
}

void sim_run_for(struct sim *sim, double dt)
{
	sim_run_until(sim, sim->now + dt);
}

bool sim_run_until_cond(struct sim *sim, double deadline, double step,
			bool (*cond)(struct sim *sim, void *ctx), void *ctx)
{
	while (!cond(sim, ctx)) {
		if (sim->now >= deadline)
			return false;
		sim_run_until(sim, fmin(sim->now + step, deadline));
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Network model knobs. */

void sim_set_loss(struct sim *sim, double loss)
{
	sim->cfg.loss = loss;
}

void sim_set_group(struct sim *sim, size_t i, int group)
{
	sim->nodes[i].group = group;
}

void sim_heal(struct sim *sim)
{
	for (size_t i = 0; i < sim->n_nodes; i++)
		sim->nodes[i].group = 0;
}

int sim_block(struct sim *sim, size_t from, size_t to, bool on)
{
	for (size_t i = 0; i < sim->n_blocks; i++) {
		if (sim->blocks[i].from == from && sim->blocks[i].to == to) {
			if (!on)
				sim->blocks[i] = sim->blocks[--sim->n_blocks];
			return 0;
		}
	}
	if (!on)
		return 0;
	if (sim->n_blocks >= SIM_BLOCKS_MAX)
		return -ENOSPC;
	sim->blocks[sim->n_blocks].from = (uint32_t)from;
	sim->blocks[sim->n_blocks].to = (uint32_t)to;
	sim->n_blocks++;
	return 0;
}

void sim_block_inbound(struct sim *sim, size_t i, bool on)
{
	sim->nodes[i].in_blocked = on;
}

void sim_block_outbound(struct sim *sim, size_t i, bool on)
{
	sim->nodes[i].out_blocked = on;
}

/* ------------------------------------------------------------------ */
/* Views and counters. */

enum sim_node_state sim_state(const struct sim *sim, size_t i)
{
	return sim->nodes[i].state;
}

struct swim *sim_swim(struct sim *sim, size_t i)
{
	return sim->nodes[i].swim;
}

const struct swim_id *sim_id(const struct sim *sim, size_t i)
{
	return &sim->nodes[i].id;
}

enum swim_status sim_view(const struct sim *sim, size_t observer,
			  size_t subject)
{
	const struct swim *s = sim->nodes[observer].swim;

	if (s == NULL)
		return SWIM_NONE;
	return swim_member_status(s, &sim->nodes[subject].id);
}

bool sim_all_see(const struct sim *sim, size_t subject, enum swim_status st)
{
	for (size_t i = 0; i < sim->n_nodes; i++) {
		if (i == subject || sim->nodes[i].state != SIM_RUNNING)
			continue;
		if (sim_view(sim, i, subject) != st)
			return false;
	}
	return true;
}

bool sim_converged(const struct sim *sim)
{
	for (size_t j = 0; j < sim->n_nodes; j++) {
		if (sim->nodes[j].state != SIM_RUNNING)
			continue;
		if (!sim_all_see(sim, j, SWIM_ALIVE))
			return false;
	}
	return true;
}

size_t sim_running(const struct sim *sim)
{
	size_t n = 0;

	for (size_t i = 0; i < sim->n_nodes; i++)
		n += sim->nodes[i].state == SIM_RUNNING;
	return n;
}

bool sim_drained(struct sim *sim, void *ctx)
{
	(void)ctx;
	for (size_t i = 0; i < sim->n_nodes; i++) {
		struct swim_stats st;

		if (sim_swim(sim, i) == NULL)
			continue;
		swim_stats_get(sim_swim(sim, i), &st);
		if (st.broadcasts > 0)
			return false;
	}
	return true;
}

void sim_counters(const struct sim *sim, struct sim_counters *out)
{
	*out = sim->c;
}

uint64_t sim_false_dead_by(const struct sim *sim, size_t i)
{
	return sim->nodes[i].false_dead_by;
}

uint64_t sim_false_dead_of(const struct sim *sim, size_t i)
{
	return sim->nodes[i].false_dead_of;
}

uint64_t sim_node_bytes_sent(const struct sim *sim, size_t i)
{
	return sim->nodes[i].bytes_sent;
}

uint64_t sim_node_packets_sent(const struct sim *sim, size_t i)
{
	return sim->nodes[i].pkts_sent;
}

void sim_traffic_mark(struct sim *sim)
{
	sim->mark_time = sim->now;
	sim->mark_bytes = sim->c.bytes_sent;
	sim->mark_packets = sim->c.packets_sent;
}

void sim_traffic_rate(const struct sim *sim, double *bytes, double *packets)
{
	double dt = sim->now - sim->mark_time;
	double n = (double)sim_running(sim);

	if (dt <= 0 || n == 0) {
		*bytes = *packets = 0;
		return;
	}
	*bytes = (double)(sim->c.bytes_sent - sim->mark_bytes) / dt / n;
	*packets = (double)(sim->c.packets_sent - sim->mark_packets) / dt / n;
}
