/*
 * sim — a deterministic simulator for the gossip layer: many swim instances
 * in one process, a virtual clock, a seeded PRNG and a network model.
 *
 * Time is virtual: an event queue (a binary heap ordered by time, ties by
 * insertion order) holds datagram deliveries and instance timers; running
 * the simulation pops them in order and feeds the instances. Nothing reads
 * a real clock, so the same seed replays the same run exactly.
 *
 * Nodes are slots 0..max_nodes-1. Node i has a fixed random UUID and the
 * address 10.0.0.0 + i + 1, port SIM_PORT, across restarts. The network:
 *  - loss: each datagram is dropped with probability `loss`;
 *  - delay: base + uniform jitter per datagram (jitter reorders);
 *  - partitions: nodes carry a group number; datagrams cross no groups;
 *  - blocks: a one-way link i -> j, or everything into / out of a node;
 *  - crash: the instance is freed, datagrams to it vanish;
 *  - restart: a fresh instance with the same id and address;
 *  - pause: the node's process stalls (its timers wait, datagrams to it
 *    wait in its socket buffer); on resume it reads them `batch` at a
 *    time, handing out what swim queued only after each batch, as the
 *    driver (gossip.c, on_readable) does. Processing takes no virtual
 *    time, so datagrams wait for a node only while it is paused.
 * Blocks, partitions and loss apply when a datagram is sent.
 *
 * The simulator watches every instance's events: a member declared DEAD
 * while it is running (not crashed, not leaving) is a false positive,
 * counted per observer and per subject.
 *
 * Errors: 0 or negative errno. Not thread-safe; one sim per thread.
 */
#ifndef PROXYSTONE_TESTS_SIM_H
#define PROXYSTONE_TESTS_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxystone/swim.h"

/* Gossip port of every simulated node. */
#define SIM_PORT 7946
/* Address of node 0 is SIM_IP_BASE + 1 (10.0.0.1). */
#define SIM_IP_BASE 0x0a000000u
/* Nodes one simulation may hold: the design asks for clusters of up to
 * 10,000 members in one process; 2^16 leaves room and fits the addresses
 * in 10.0.0.0/16. */
#define SIM_NODES_MAX 65536
/* One-way link blocks at once (checked per datagram by a linear scan). */
#define SIM_BLOCKS_MAX 64
/* Datagrams waiting for a paused node: the driver's 1 MB socket buffer
 * (gossip.c, GOSSIP_SOCKBUF) holds about this many small datagrams (the
 * kernel charges ~1 KB of overhead each). Excess is dropped, counted
 * (dropped_overflow), as the kernel would. */
#define SIM_INBOX_MAX 1024

struct sim;

struct sim_config {
	uint64_t seed;
	size_t max_nodes; /* <= SIM_NODES_MAX */
	double loss;	  /* 0..1 */
	double delay;	  /* seconds, one way */
	double jitter;	  /* seconds, uniform extra delay */
	/* Datagrams a node reads before handing out what swim queued, when
	 * several wait (after a pause); 0 or 1: after each one. The product's
	 * driver reads up to 64 (gossip.c, GOSSIP_RECV_BATCH). */
	unsigned batch;
	struct swim_config swim; /* every instance's config */
};

enum sim_node_state {
	SIM_OFF = 0, /* never started */
	SIM_RUNNING = 1,
	SIM_LEAVING = 2, /* swim_leave() called, instance still runs */
	SIM_CRASHED = 3, /* instance gone */
};

/* Observer hook: every event of every instance. */
typedef void (*sim_event_fn)(void *ctx, struct sim *sim, size_t observer,
			     const struct swim_event *ev);

/* Defaults: 0 loss, 1 ms delay, 1 ms jitter, the product's gossip
 * configuration (config_gossip_defaults(); swim_config_defaults() is
 * memberlist's LAN one, for comparisons). */
void sim_config_defaults(struct sim_config *cfg, uint64_t seed,
			 size_t max_nodes);
/* 0 and *out, or -EINVAL, -ENOMEM. */
int sim_new(const struct sim_config *cfg, struct sim **out);
void sim_free(struct sim *sim);

uint64_t sim_seed(const struct sim *sim);
double sim_now(const struct sim *sim);
size_t sim_size(const struct sim *sim);
void sim_set_event_hook(struct sim *sim, sim_event_fn fn, void *ctx);

/* Starts (or restarts, after a crash) node i with a fresh instance.
 * 0, -EINVAL (bad index), -EBUSY (already running), -ENOMEM. */
int sim_start(struct sim *sim, size_t i);
/* Node i joins through node `seed`'s address. */
int sim_join(struct sim *sim, size_t i, size_t seed);
/* Starts nodes [0, n): node 0 at once, the others at random times within
 * `window` seconds, each joining through node 0 and one random earlier
 * node. Runs the simulation to the end of the window. */
int sim_start_cluster(struct sim *sim, size_t n, double window);
/* Starts nodes [0, n) at once, each told of every other directly
 * (swim_add_member(): ALIVE, incarnation 0, nothing disseminated): a formed
 * cluster without a join storm, for large-N benchmarks. Each node still
 * spreads its own record once, as any new instance does; wait for that to
 * drain before measuring a steady state. 0, -EINVAL, -ENOMEM. */
int sim_bootstrap(struct sim *sim, size_t n);
void sim_crash(struct sim *sim, size_t i);
void sim_leave(struct sim *sim, size_t i);
/* Stalls node i (see the top of this file); a no-op unless running. */
void sim_pause(struct sim *sim, size_t i);
/* Node i reads what waits for it, cfg.batch datagrams between drains,
 * then runs its timers. A no-op unless paused. */
void sim_resume(struct sim *sim, size_t i);
/* Sends `pkt` to node i as if from `from` (a forged or hand-made
 * datagram), after the usual delay; loss and blocks do not apply.
 * 0, -EINVAL (bad index), -ENOMEM. */
int sim_inject(struct sim *sim, size_t i, const struct swim_addr *from,
	       const uint8_t *pkt, size_t len);

void sim_run_until(struct sim *sim, double t);
void sim_run_for(struct sim *sim, double dt);
/* Runs until cond() holds (checked every `step` seconds) or until
 * `deadline`. Returns whether it held; the clock stops where it did. */
bool sim_run_until_cond(struct sim *sim, double deadline, double step,
			bool (*cond)(struct sim *sim, void *ctx), void *ctx);

/* Network model. */
void sim_set_loss(struct sim *sim, double loss);
void sim_set_group(struct sim *sim, size_t i, int group);
void sim_heal(struct sim *sim); /* every node back to group 0 */
/* -ENOSPC past SIM_BLOCKS_MAX. */
int sim_block(struct sim *sim, size_t from, size_t to, bool blocked);
void sim_block_inbound(struct sim *sim, size_t i, bool blocked);
void sim_block_outbound(struct sim *sim, size_t i, bool blocked);

/* Nodes and views. */
enum sim_node_state sim_state(const struct sim *sim, size_t i);
struct swim *sim_swim(struct sim *sim, size_t i); /* NULL unless running */
const struct swim_id *sim_id(const struct sim *sim, size_t i);
struct swim_addr sim_addr(size_t i);
/* Node index of an id, or -1. */
long sim_index_of(const struct sim *sim, const struct swim_id *id);
/* How `observer` sees `subject` (SWIM_NONE if not running or unknown). */
enum swim_status sim_view(const struct sim *sim, size_t observer,
			  size_t subject);
/* Every running node but the subject sees it exactly as `st`. */
bool sim_all_see(const struct sim *sim, size_t subject, enum swim_status st);
/* Every running node sees every running node ALIVE. */
bool sim_converged(const struct sim *sim);
/* Running nodes. */
size_t sim_running(const struct sim *sim);
/* No running node has an update left to spread (a sim_run_until_cond()
 * condition; ctx unused). */
bool sim_drained(struct sim *sim, void *ctx);

struct sim_counters {
	uint64_t packets_sent, bytes_sent;
	uint64_t packets_delivered;
	uint64_t dropped_loss, dropped_blocked, dropped_crashed;
	uint64_t dropped_overflow; /* paused node's inbox full */
	uint64_t events;
	uint64_t false_dead; /* DEAD declared about a running member */
};

void sim_counters(const struct sim *sim, struct sim_counters *out);
/* False DEAD declarations made by node i, and about node i. */
uint64_t sim_false_dead_by(const struct sim *sim, size_t i);
uint64_t sim_false_dead_of(const struct sim *sim, size_t i);
/* Bytes and datagrams node i sent since start. */
uint64_t sim_node_bytes_sent(const struct sim *sim, size_t i);
uint64_t sim_node_packets_sent(const struct sim *sim, size_t i);
/* Traffic rates: sim_traffic_mark() starts a window; sim_traffic_rate()
 * gives bytes and datagrams sent per running member per virtual second
 * since the mark. */
void sim_traffic_mark(struct sim *sim);
void sim_traffic_rate(const struct sim *sim, double *bytes, double *packets);

#endif
