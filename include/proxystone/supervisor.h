/*
 * supervisor — the parent process: forks one child per role, restarts the
 * one that dies or hangs, stops them in order, and reaps every one.
 *
 * Supervision protocol (s6 style). Each child inherits one end of a pipe,
 * `sup_fd` (non-blocking, write-only; the supervisor reads the other end):
 *   "\n"  once, when the child serves (child_notify_ready);
 *   "."   every CHILD_KEEPALIVE_INTERVAL from the child's own event loop
 *         (child_keepalive_start).
 * Any byte proves the child alive. A child silent for CHILD_HANG_TIMEOUT,
 * counted from its fork, is killed with SIGKILL and restarted.
 *
 * What a child entry point (`int <role>_main(cfg, sup_fd)`) gets and owes:
 *   - default signal dispositions and an empty signal mask; its own
 *     process group (a terminal's Ctrl-C reaches only the supervisor, which
 *     then stops the children in order); PR_SET_PDEATHSIG = SIGKILL;
 *     only fds 0, 1, 2 and sup_fd open; log role and `ps` name set.
 *   - it must start the keepalive within CHILD_HANG_TIMEOUT of its start,
 *     call child_notify_ready() once it serves, ignore SIGPIPE if it
 *     writes to sockets, and never close sup_fd.
 *   - on SIGTERM it stops its loop and returns 0, within CHILD_STOP_TIMEOUT.
 *   - its return value is its exit status (0-255; anything else exits 1).
 */
#ifndef PROXYSTONE_SUPERVISOR_H
#define PROXYSTONE_SUPERVISOR_H

#include <stdint.h>

struct config;
struct ev_loop;

/* Roles, in start order; they are stopped in the reverse order. Adding a
 * role is one value here and one row in supervisor.c's role table. */
enum sup_role {
	SUP_ROLE_MEMBERSHIP = 0, /* gossip + all cluster state */
	SUP_ROLE_API = 1,	 /* HTTP API */
	SUP_ROLE_UI = 2,	 /* dashboard, when ui_port > 0 */
	SUP_ROLE_MAX		 /* number of roles */
};

/* Keepalive period: short enough that CHILD_HANG_TIMEOUT spans many of
 * them, long enough to cost nothing (one byte per second per child). */
#define CHILD_KEEPALIVE_INTERVAL 1.0
/* Silence after which a child counts as hung: ten missed keepalives. A
 * busy but healthy child (an fsync on a slow disk, a large snapshot, a host
 * swapping) can stall its loop for a few seconds; a deadlocked or looping
 * one stays silent forever. Ten seconds is still well inside node_timeout
 * (60 s by default), so peers never see a hung node as alive for long. */
#define CHILD_HANG_TIMEOUT 10.0
/* Time a child gets to exit after SIGTERM before SIGKILL. Two roles stop
 * one after the other, so the whole stop fits systemd's TimeoutStopSec=15. */
#define CHILD_STOP_TIMEOUT 5.0

/*
 * Counters shared with the children: one MAP_SHARED page mapped before the
 * first fork, written only by the supervisor, read by any child (the api
 * serves them on /metrics). Every field is naturally aligned, so a reader
 * never sees a torn value; it may see a just-stale one.
 */
struct sup_stats {
	double started_at; /* supervisor start, wall s since the epoch */
	uint64_t restarts[SUP_ROLE_MAX];      /* starts after the first one */
	uint64_t hangs[SUP_ROLE_MAX];	      /* kills for silence */
	uint64_t crash_loops[SUP_ROLE_MAX];   /* entries into crash-loop mode */
	double role_started_at[SUP_ROLE_MAX]; /* current process's start, wall
						 s; 0 = down */
	int32_t pid[SUP_ROLE_MAX];	      /* current pid, 0 = down */
	uint8_t enabled[SUP_ROLE_MAX];	      /* 1 if this host runs the role */
	uint8_t ready[SUP_ROLE_MAX]; /* 1 while the current process is ready */
};

/*
 * Runs the supervisor until SIGTERM/SIGINT has stopped every child.
 * `argc`/`argv` are main()'s: each child overwrites that memory so `ps -ef`
 * shows its role. Call once, from a single-threaded process, with no
 * signal handlers installed. Returns 0 after an orderly stop, or a negative
 * errno if set-up failed (nothing was forked then).
 */
int sup_run(const struct config *cfg, int argc, char **argv);

/* The shared counters. Never NULL: outside a supervised process (tests,
 * tools) it points at an all-zero struct. */
const struct sup_stats *sup_stats_get(void);
/* "membership", "api", "ui"; NULL for a value outside 0..SUP_ROLE_MAX-1. */
const char *sup_role_name(int role);

/* Child side (src/supervisor/child.c). */

/* Writes the readiness newline. Call once, when the child accepts work. */
void child_notify_ready(int sup_fd);
/* Starts an ev_timer on `loop` writing a keepalive byte every
 * CHILD_KEEPALIVE_INTERVAL, and writes one at once. The timer is not
 * counted as an active watcher (ev_unref), so it never keeps ev_run alive by
 * itself; call ev_break as usual to stop. Call once per process. */
void child_keepalive_start(struct ev_loop *loop, int sup_fd);

#endif
