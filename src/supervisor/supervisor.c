/*
 * supervisor — forks, watches, restarts and stops the host's children; see
 * include/proxystone/supervisor.h.
 *
 * No event library here: libev is for the children, and each creates its
 * loop after fork in a process whose signal state is untouched. Signals
 * arrive on a signalfd; the signalfd and the children's pipes are polled;
 * timers are deadlines folded into poll's timeout.
 *
 * Each child is a small machine driven by an explicit state × event table
 * (as in s6-supervise): an event picks a next state and one action, and an
 * action may answer with a follow-up event (a failed fork). "Spawned"
 * (S_STARTING) and "ready" (S_READY) are distinct states.
 */
#include "proxystone/supervisor.h"
#include "proxystone/api.h"
#include "proxystone/config.h"
#include "proxystone/log.h"
#include "proxystone/membership.h"
#include "proxystone/timeutil.h"
#include "proxystone/ui.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* Restart policy. The first restart is immediate (one crash is usually a
 * one-off); then BACKOFF_FIRST doubling up to BACKOFF_MAX, so a child that
 * cannot start costs a few forks a minute, never a spinning CPU. */
#define BACKOFF_FIRST 0.25
#define BACKOFF_MAX 30.0
/* A run this long proves the child healthy again: its backoff starts over. */
#define BACKOFF_RESET_UPTIME 60.0
/* More than CRASH_LOOP_RESTARTS restarts within CRASH_LOOP_WINDOW is a crash
 * loop: reported once, then retried only every BACKOFF_MAX until a run
 * lasts BACKOFF_RESET_UPTIME. With the schedule above backoff alone allows
 * at most 8 restarts a minute, so this is the safety net that holds if the
 * backoff constants are ever tuned down. */
#define CRASH_LOOP_RESTARTS 10
#define CRASH_LOOP_WINDOW 60.0

/* Bytes read from a child's pipe per read(); a keepalive is one byte. */
#define SUP_READ_CHUNK 64
/* Signals taken from the signalfd per read(). */
#define SUP_SIGNAL_BATCH 8
/* Descriptors polled: the signalfd plus one pipe per role. */
#define SUP_POLL_MAX (1 + SUP_ROLE_MAX)
/* Longest `ps` title, "proxystone: membership (coordinator :65535)" fits. */
#define SUP_TITLE_MAX 96
/* Kernel limit on a thread name (TASK_COMM_LEN), NUL included. */
#define SUP_COMM_MAX 16
/* Exit status of a child whose supervisor died before PR_SET_PDEATHSIG
 * took hold; nobody is left to read it. */
#define CHILD_EXIT_ORPHAN 1
/* Exit status used when an entry point returns something outside 0-255. */
#define CHILD_EXIT_BAD_STATUS 1
/* Highest fd the close-all fallback scans when RLIMIT_NOFILE is unlimited. */
#define CHILD_FD_SCAN_MAX (1 << 20)

struct role_def {
	const char *name; /* log role, `ps` name, metrics label */
	int (*main)(const struct config *cfg, int sup_fd); /* NULL: not built */
	bool (*wanted)(const struct config *cfg);	   /* NULL: always */
};

static bool ui_wanted(const struct config *cfg)
{
	return cfg->ui_port > 0;
}

/* Start order is table order; stop order is the reverse: membership comes
 * up first so the api's first connect finds its socket, and goes down last
 * so requests in flight at the api are answered before the node leaves. */
static const struct role_def roles[SUP_ROLE_MAX] = {
    [SUP_ROLE_MEMBERSHIP] = {"membership", membership_main, NULL},
    [SUP_ROLE_API] = {"api", api_main, NULL},
    [SUP_ROLE_UI] = {"ui", ui_main, ui_wanted},
};

/* ---- Backoff (pure) ---------------------------------------------------- */

struct backoff {
	/* Restarts since the last run of BACKOFF_RESET_UPTIME. */
	unsigned streak;
	bool crash_loop;  /* retrying at BACKOFF_MAX only */
	unsigned n, head; /* ring of the last restart times */
	double recent[CRASH_LOOP_RESTARTS];
};

/*
 * The delay before the next start of a child whose last run lasted
 * `uptime` seconds and ended at `now`. Sets *entered_loop when this restart
 * is the one that makes it a crash loop.
 */
static double backoff_next(struct backoff *b, double now, double uptime,
			   bool *entered_loop)
{
	*entered_loop = false;
	if (uptime >= BACKOFF_RESET_UPTIME) {
		b->streak = 0;
		b->crash_loop = false;
	}
	/* With the ring full, recent[head] is the oldest of the last
	 * CRASH_LOOP_RESTARTS: inside the window, this restart is one more. */
	if (!b->crash_loop && b->n == CRASH_LOOP_RESTARTS &&
	    now - b->recent[b->head] < CRASH_LOOP_WINDOW) {
		b->crash_loop = true;
		*entered_loop = true;
	}
	b->recent[b->head] = now;
	b->head = (b->head + 1) % CRASH_LOOP_RESTARTS;
	if (b->n < CRASH_LOOP_RESTARTS)
		b->n++;

	double delay = 0;
	if (b->crash_loop) {
		delay = BACKOFF_MAX;
	} else if (b->streak > 0) {
		delay = BACKOFF_FIRST;
		for (unsigned i = 1; i < b->streak && delay < BACKOFF_MAX; i++)
			delay *= 2;
		if (delay > BACKOFF_MAX)
			delay = BACKOFF_MAX;
	}
	if (b->streak < UINT_MAX)
		b->streak++;
	return delay;
}

/* ---- State × event table (pure) ---------------------------------------- */

enum sup_state {
	S_DOWN,	    /* not running; next start at `due` */
	S_STARTING, /* forked, no readiness line yet */
	S_READY,    /* serving */
	S_HUNG,	    /* silent too long; SIGKILL sent, waiting to reap */
	S_STOPPING, /* shutting down; SIGTERM sent, SIGKILL at `due` */
	S_STOPPED,  /* shut down, or not run on this host; final */
	S_COUNT
};

enum sup_event {
	E_DUE,		/* S_DOWN's restart time has come */
	E_FAILED,	/* the fork did not happen */
	E_READY_LINE,	/* "\n" read from the child */
	E_SILENT,	/* nothing read for CHILD_HANG_TIMEOUT */
	E_EXIT,		/* reaped */
	E_STOP,		/* shutdown reached this child */
	E_STOP_TIMEOUT, /* CHILD_STOP_TIMEOUT passed after SIGTERM */
	E_KILL,		/* a second SIGTERM: no more waiting */
	E_COUNT
};

enum sup_action {
	A_NONE,
	A_SPAWN,    /* fork; E_FAILED if that fails */
	A_READY,    /* record and log readiness */
	A_HANG,	    /* log, count, SIGKILL */
	A_EXITED,   /* log the status, schedule the restart */
	A_SCHEDULE, /* schedule the restart of a child that never started */
	A_TERM,	    /* SIGTERM, arm the stop timeout */
	A_KILL,	    /* SIGKILL */
	A_REAPED,   /* log the status; no restart */
};

struct transition {
	unsigned char next;   /* enum sup_state */
	unsigned char action; /* enum sup_action */
};

#define T(next, action)                                                        \
	{                                                                      \
		S_##next, A_##action                                           \
	}
#define KEEP(state) T(state, NONE)

/* Columns: DUE, FAILED, READY_LINE, SILENT, EXIT, STOP, STOP_TIMEOUT, KILL.
 * While stopping, E_DUE is never raised: a child that ends then waits in
 * S_DOWN until E_STOP reaches it. */
static const struct transition table[S_COUNT][E_COUNT] = {
    [S_DOWN] = {T(STARTING, SPAWN), KEEP(DOWN), KEEP(DOWN), KEEP(DOWN),
		KEEP(DOWN), KEEP(STOPPED), KEEP(DOWN), KEEP(STOPPED)},
    [S_STARTING] = {KEEP(STARTING), T(DOWN, SCHEDULE), T(READY, READY),
		    T(HUNG, HANG), T(DOWN, EXITED), T(STOPPING, TERM),
		    KEEP(STARTING), T(STOPPING, KILL)},
    [S_READY] = {KEEP(READY), KEEP(READY), KEEP(READY), T(HUNG, HANG),
		 T(DOWN, EXITED), T(STOPPING, TERM), KEEP(READY),
		 T(STOPPING, KILL)},
    [S_HUNG] = {KEEP(HUNG), KEEP(HUNG), KEEP(HUNG), KEEP(HUNG), T(DOWN, EXITED),
		T(STOPPING, TERM), KEEP(HUNG), T(STOPPING, KILL)},
    [S_STOPPING] = {KEEP(STOPPING), KEEP(STOPPING), KEEP(STOPPING),
		    KEEP(STOPPING), T(STOPPED, REAPED), KEEP(STOPPING),
		    T(STOPPING, KILL), T(STOPPING, KILL)},
    [S_STOPPED] = {KEEP(STOPPED), KEEP(STOPPED), KEEP(STOPPED), KEEP(STOPPED),
		   KEEP(STOPPED), KEEP(STOPPED), KEEP(STOPPED), KEEP(STOPPED)},
};

#undef KEEP
#undef T

/* The event a state's deadline raises; -1 if the state has none. */
static int state_timer_event(enum sup_state s)
{
	switch (s) {
	case S_DOWN:
		return E_DUE;
	case S_STARTING:
	case S_READY:
		return E_SILENT;
	case S_STOPPING:
		return E_STOP_TIMEOUT;
	default:
		return -1;
	}
}

/* "exited with status 1", "killed by signal 9 (SIGKILL)". */
static void describe_status(int wstatus, char *out, size_t len)
{
	if (wstatus < 0) {
		snprintf(out, len, "vanished (no status)");
	} else if (WIFEXITED(wstatus)) {
		snprintf(out, len, "exited with status %d",
			 WEXITSTATUS(wstatus));
	} else if (WIFSIGNALED(wstatus)) {
		int sig = WTERMSIG(wstatus);
		const char *abbrev = sigabbrev_np(sig);
		snprintf(out, len, "killed by signal %d (SIG%s)%s", sig,
			 abbrev ? abbrev : "?",
			 WCOREDUMP(wstatus) ? ", core dumped" : "");
	} else {
		snprintf(out, len, "ended with wait status 0x%x", wstatus);
	}
}

/* ---- Process title (pure memory work, done in the child) --------------- */

/*
 * Overwrites the argv strings (and, when the title needs the room, the
 * environment strings right after them, once the environment is copied
 * elsewhere) so /proc/<pid>/cmdline, and so `ps -ef`, shows `title`.
 */
static void title_set(int argc, char **argv, const char *title)
{
	if (argc < 1 || !argv || !argv[0])
		return;
	/* The kernel lays the argv strings out back to back; getopt_long
	 * may have permuted the pointers, so take the span they cover and
	 * check that nothing foreign lies inside it. */
	char *lo = argv[0], *hi = argv[0];
	size_t total = 0;
	for (int i = 0; i < argc && argv[i]; i++) {
		size_t n = strlen(argv[i]) + 1;
		if (argv[i] < lo)
			lo = argv[i];
		if (argv[i] + n > hi)
			hi = argv[i] + n;
		total += n;
	}
	if ((size_t)(hi - lo) != total) {
		lo = argv[0];
		hi = argv[0] + strlen(argv[0]) + 1;
	}
	size_t need = strlen(title) + 1;
	if ((size_t)(hi - lo) < need && environ && environ[0] == hi) {
		size_t n = 0;
		char *end = hi;
		while (environ[n] && environ[n] == end) {
			end += strlen(environ[n]) + 1;
			n++;
		}
		size_t count = n;
		while (environ[count])
			count++;
		char **copy = calloc(count + 1, sizeof(*copy));
		bool ok = copy != NULL;
		for (size_t i = 0; ok && i < count; i++)
			ok = (copy[i] = strdup(environ[i])) != NULL;
		if (ok) {
			environ = copy;
			hi = end;
		}
	}
	/* glibc's err()/error() print these; keep them pointing at the name. */
	char *name = strdup(lo);
	if (name) {
		program_invocation_name = name;
		char *slash = strrchr(name, '/');
		program_invocation_short_name = slash ? slash + 1 : name;
	}
	size_t room = (size_t)(hi - lo);
	memset(lo, 0, room);
	memcpy(lo, title, need <= room ? need - 1 : room - 1);
	argv[0] = lo;
	for (int i = 1; i < argc; i++)
		argv[i] = NULL;
}

/* ---- The supervisor ---------------------------------------------------- */

struct child {
	enum sup_role role;
	enum sup_state state;
	pid_t pid;	     /* 0 when not running */
	int fd;		     /* our end of its pipe, -1 when closed */
	double started;	     /* monotonic time of the fork */
	double last_seen;    /* monotonic time of the last byte read */
	double due;	     /* S_DOWN: next start; S_STOPPING: SIGKILL time */
	int wstatus;	     /* from waitpid, for A_EXITED/A_REAPED */
	bool spawned_before; /* the next start is a restart */
	struct backoff backoff;
};

static struct sup {
	const struct config *cfg;
	int argc;
	char **argv;
	pid_t pid;
	int sigfd;
	struct child children[SUP_ROLE_MAX];
	bool stopping;	 /* SIGTERM/SIGINT seen */
	bool killing;	 /* a second one seen */
	bool all_ready;	 /* every enabled child is S_READY */
	bool told_ready; /* READY=1 sent */
	struct sockaddr_un notify_addr;
	socklen_t notify_len;	  /* 0: no $NOTIFY_SOCKET */
	double watchdog_interval; /* 0: no $WATCHDOG_USEC */
	double watchdog_next;
} sup = {.sigfd = -1};

static struct sup_stats stats_none;
static struct sup_stats *stats = &stats_none;

const struct sup_stats *sup_stats_get(void)
{
	return stats;
}

const char *sup_role_name(int role)
{
	if (role < 0 || role >= SUP_ROLE_MAX)
		return NULL;
	return roles[role].name;
}

static const char *cname(const struct child *c)
{
	return roles[c->role].name;
}

/* -- systemd notify protocol, by hand (sd_notify(3)) -- */

/* "@name" is the abstract namespace, "/path" a file; nothing else is
 * supported. Returns 0 and fills addr/len, or -EAFNOSUPPORT/-ENAMETOOLONG. */
static int notify_addr_parse(const char *s, struct sockaddr_un *addr,
			     socklen_t *len)
{
	size_t n = strlen(s);
	if (n < 2 || (s[0] != '@' && s[0] != '/'))
		return -EAFNOSUPPORT;
	if (n > sizeof(addr->sun_path) - (s[0] == '/'))
		return -ENAMETOOLONG;
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	memcpy(addr->sun_path, s, n);
	if (s[0] == '@')
		addr->sun_path[0] = '\0';
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
			   (s[0] == '/'));
	return 0;
}

static void notify_init(void)
{
	const char *s = getenv("NOTIFY_SOCKET");
	if (s) {
		int rc =
		    notify_addr_parse(s, &sup.notify_addr, &sup.notify_len);
		if (rc)
			log_warn(
			    "NOTIFY_SOCKET '%s': %s; not notifying systemd", s,
			    strerror(-rc));
	}
	const char *usec = getenv("WATCHDOG_USEC");
	const char *wpid = getenv("WATCHDOG_PID");
	if (usec && sup.notify_len && (!wpid || atol(wpid) == (long)sup.pid)) {
		double us = strtod(usec, NULL);
		/* Ping at half the period, as sd_watchdog_enabled(3) advises.
		 */
		if (us > 0)
			sup.watchdog_interval = us / 2e6;
	}
	/* The children must not talk to systemd: the main pid speaks for all.
	 */
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

static void notify_send(const char *msg)
{
	if (!sup.notify_len)
		return;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, msg, strlen(msg), MSG_NOSIGNAL,
			     (const struct sockaddr *)&sup.notify_addr,
			     sup.notify_len) < 0)
		log_warn("sd_notify %s: %s", msg, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* -- The child side of fork -- */

static void child_close_fds(int keep)
{
	/* close_range (Linux 5.9) closes each gap in one call. */
	if ((keep <= 3 || close_range(3, (unsigned)keep - 1, 0) == 0) &&
	    close_range((unsigned)keep + 1, ~0U, 0) == 0)
		return;
	struct rlimit rl;
	long max = CHILD_FD_SCAN_MAX;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max)
		max = (long)rl.rlim_cur;
	for (long fd = 3; fd < max; fd++)
		if (fd != keep)
			close((int)fd);
}

static void child_set_names(const struct child *c)
{
	char comm[SUP_COMM_MAX];
	snprintf(comm, sizeof(comm), "ps-%s", cname(c));
	prctl(PR_SET_NAME, comm, 0, 0, 0);
	char title[SUP_TITLE_MAX];
	snprintf(title, sizeof(title), "proxystone: %s (%s :%d)", cname(c),
		 config_role_name(sup.cfg->role), sup.cfg->api_port);
	title_set(sup.argc, sup.argv, title);
	log_set_role(cname(c));
}

/* Runs in the new child with every signal blocked; never returns. */
__attribute__((noreturn)) static void child_run(struct child *c, int sup_fd)
{
	/* First, so a supervisor that dies from now on takes us with it; the
	 * getppid check covers a death between fork and this prctl. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != sup.pid)
		_exit(CHILD_EXIT_ORPHAN);
	/* Its own process group: a terminal's Ctrl-C reaches the supervisor
	 * only, which then stops the children in order. */
	setpgid(0, 0);

	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL); /* EINVAL for glibc's own */

	child_close_fds(sup_fd);
	fcntl(sup_fd, F_SETFD, 0); /* inherited on purpose */
	child_set_names(c);

	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	int rc = roles[c->role].main(sup.cfg, sup_fd);
	if (rc < 0 || rc > 255) {
		log_error("entry point returned %d, not an exit status", rc);
		rc = CHILD_EXIT_BAD_STATUS;
	}
	exit(rc);
}

/* -- Actions -- */

static int child_fork(struct child *c)
{
	int p[2];
	/* Non-blocking both ends: we never wait on a child, and a child never
	 * stalls its loop on a full pipe. */
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	/* Everything blocked across fork, so the child runs nothing of ours
	 * before it resets its signal state (libuv does the same). */
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	fflush(NULL); /* or the child would write our buffered output again */
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		child_run(c, p[1]);
	}
	int err = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return -err;
	}
	c->pid = pid;
	c->fd = p[0];
	return 0;
}

/* The child is gone (reaped): forget its process. */
static void child_gone(struct child *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->pid = 0;
	stats->pid[c->role] = 0;
	stats->ready[c->role] = 0;
	stats->role_started_at[c->role] = 0;
}

static void schedule_restart(struct child *c, double now, double uptime)
{
	bool entered;
	double delay = backoff_next(&c->backoff, now, uptime, &entered);
	c->due = now + delay;
	if (entered) {
		stats->crash_loops[c->role]++;
		log_error("%s: crash loop: more than %d restarts in %.0f s; "
			  "retrying every %.0f s until a run lasts %.0f s",
			  cname(c), CRASH_LOOP_RESTARTS, CRASH_LOOP_WINDOW,
			  BACKOFF_MAX, BACKOFF_RESET_UPTIME);
	}
	if (sup.stopping)
		return;
	if (delay == 0)
		log_info("restarting %s now", cname(c));
	else
		log_info("restarting %s in %.2f s", cname(c), delay);
}

/* Returns a follow-up event, or -1. */
static int run_action(struct child *c, enum sup_action a)
{
	double now = time_mono();
	char what[64];
	int rc;

	switch (a) {
	case A_NONE:
		break;
	case A_SPAWN:
		if (c->spawned_before)
			stats->restarts[c->role]++;
		c->spawned_before = true;
		c->started = now;
		rc = child_fork(c);
		if (rc) {
			log_error("cannot start %s: %s", cname(c),
				  strerror(-rc));
			return E_FAILED;
		}
		c->last_seen = now;
		stats->pid[c->role] = c->pid;
		stats->role_started_at[c->role] = (double)time_wall_ms() / 1000;
		log_info("started %s (pid %d)", cname(c), (int)c->pid);
		break;
	case A_READY:
		stats->ready[c->role] = 1;
		log_info("%s ready (pid %d)", cname(c), (int)c->pid);
		break;
	case A_HANG:
		stats->hangs[c->role]++;
		stats->ready[c->role] = 0;
		log_error("%s (pid %d) silent for %.0f s: hung; killing it",
			  cname(c), (int)c->pid, CHILD_HANG_TIMEOUT);
		kill(c->pid, SIGKILL);
		break;
	case A_EXITED:
		describe_status(c->wstatus, what, sizeof(what));
		if (sup.stopping)
			log_info("%s %s", cname(c), what);
		else
			log_warn("%s %s", cname(c), what);
		child_gone(c);
		schedule_restart(c, now, now - c->started);
		break;
	case A_SCHEDULE:
		schedule_restart(c, now, 0);
		break;
	case A_TERM:
		log_info("stopping %s (pid %d)", cname(c), (int)c->pid);
		kill(c->pid, SIGTERM);
		c->due = now + CHILD_STOP_TIMEOUT;
		break;
	case A_KILL:
		log_warn("killing %s (pid %d)%s", cname(c), (int)c->pid,
			 sup.killing ? "" : ": no exit after SIGTERM");
		kill(c->pid, SIGKILL);
		c->due = INFINITY;
		break;
	case A_REAPED:
		describe_status(c->wstatus, what, sizeof(what));
		log_info("%s %s", cname(c), what);
		child_gone(c);
		break;
	}
	return -1;
}

static void update_readiness(void)
{
	bool all = true;
	for (int i = 0; i < SUP_ROLE_MAX; i++)
		if (stats->enabled[i] && sup.children[i].state != S_READY)
			all = false;
	if (all && !sup.all_ready && !sup.stopping) {
		log_info("ready: every child serves");
		if (!sup.told_ready) {
			notify_send("READY=1");
			sup.told_ready = true;
		}
	}
	sup.all_ready = all;
}

static void dispatch(struct child *c, enum sup_event ev)
{
	for (int e = (int)ev; e >= 0;) {
		const struct transition *t = &table[c->state][e];
		c->state = (enum sup_state)t->next;
		e = run_action(c, (enum sup_action)t->action);
	}
	update_readiness();
}

/* -- Events from the outside world -- */

static double child_deadline(const struct child *c)
{
	switch (c->state) {
	case S_DOWN:
		return sup.stopping ? INFINITY : c->due;
	case S_STARTING:
	case S_READY:
		return c->last_seen + CHILD_HANG_TIMEOUT;
	case S_STOPPING:
		return c->due;
	default:
		return INFINITY;
	}
}

static void reap(void)
{
	for (int i = 0; i < SUP_ROLE_MAX; i++) {
		struct child *c = &sup.children[i];
		if (c->pid <= 0)
			continue;
		int st;
		pid_t r;
		do
			r = waitpid(c->pid, &st, WNOHANG);
		while (r < 0 && errno == EINTR);
		if (r == 0)
			continue;
		if (r < 0) {
			/* ECHILD: not ours any more; never wait for it. */
			log_error("waitpid %s (pid %d): %s", cname(c),
				  (int)c->pid, strerror(errno));
			st = -1;
		}
		c->wstatus = st;
		dispatch(c, E_EXIT);
	}
}

static void read_child(struct child *c)
{
	char buf[SUP_READ_CHUNK];
	for (;;) {
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n > 0) {
			c->last_seen = time_mono();
			if (memchr(buf, '\n', (size_t)n))
				dispatch(c, E_READY_LINE);
			if ((size_t)n < sizeof(buf) || c->fd < 0)
				return;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		/* EOF: the child closed it or is exiting. Its exit comes by
		 * SIGCHLD; if it lives on, silence marks it hung. */
		if (n < 0)
			log_error("reading %s's pipe: %s", cname(c),
				  strerror(errno));
		close(c->fd);
		c->fd = -1;
		return;
	}
}

static void on_stop_signal(int sig)
{
	const char *abbrev = sigabbrev_np(sig);
	if (!sup.stopping) {
		sup.stopping = true;
		log_info("SIG%s: stopping the children, api first", abbrev);
		notify_send("STOPPING=1");
		return;
	}
	if (sup.killing)
		return;
	sup.killing = true;
	log_warn("SIG%s again: killing every child now", abbrev);
	for (int i = 0; i < SUP_ROLE_MAX; i++)
		dispatch(&sup.children[i], E_KILL);
}

static void read_signals(void)
{
	struct signalfd_siginfo si[SUP_SIGNAL_BATCH];
	for (;;) {
		ssize_t n = read(sup.sigfd, si, sizeof(si));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		size_t count = (size_t)n / sizeof(si[0]);
		bool child = false;
		/* Stop requests first: a child killed by the same Ctrl-C must
		 * not be restarted. */
		for (size_t i = 0; i < count; i++) {
			int sig = (int)si[i].ssi_signo;
			if (sig == SIGTERM || sig == SIGINT)
				on_stop_signal(sig);
			else if (sig == SIGHUP)
				log_info("SIGHUP ignored: restart the service "
					 "to apply a new configuration");
			else if (sig == SIGCHLD)
				child = true;
		}
		if (child)
			reap();
		if (count < SUP_SIGNAL_BATCH)
			return;
	}
}

/* Stops the children in reverse table order, one at a time. Returns true
 * once every child is S_STOPPED. */
static bool stop_next(void)
{
	for (int i = SUP_ROLE_MAX - 1; i >= 0; i--) {
		struct child *c = &sup.children[i];
		if (c->state == S_STOPPED)
			continue;
		if (c->state == S_DOWN) {
			dispatch(c, E_STOP);
			continue;
		}
		if (c->state != S_STOPPING)
			dispatch(c, E_STOP);
		return false;
	}
	return true;
}

static void fire_timers(double now)
{
	for (int i = 0; i < SUP_ROLE_MAX; i++) {
		struct child *c = &sup.children[i];
		int ev = state_timer_event(c->state);
		if (ev >= 0 && child_deadline(c) <= now)
			dispatch(c, (enum sup_event)ev);
	}
	if (sup.watchdog_interval > 0 && now >= sup.watchdog_next) {
		notify_send("WATCHDOG=1");
		sup.watchdog_next = now + sup.watchdog_interval;
	}
}

static int poll_timeout_ms(double now)
{
	double next = INFINITY;
	for (int i = 0; i < SUP_ROLE_MAX; i++) {
		double d = child_deadline(&sup.children[i]);
		if (d < next)
			next = d;
	}
	if (sup.watchdog_interval > 0 && sup.watchdog_next < next)
		next = sup.watchdog_next;
	if (isinf(next))
		return -1;
	double ms = ceil((next - now) * 1000);
	if (ms < 0)
		return 0;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void run_loop(void)
{
	for (;;) {
		if (sup.stopping && stop_next())
			return;
		double now = time_mono();
		fire_timers(now);

		struct pollfd pfd[SUP_POLL_MAX];
		struct child *owner[SUP_POLL_MAX];
		int n = 0;
		pfd[n] = (struct pollfd){.fd = sup.sigfd, .events = POLLIN};
		owner[n++] = NULL;
		for (int i = 0; i < SUP_ROLE_MAX; i++) {
			struct child *c = &sup.children[i];
			if (c->fd < 0)
				continue;
			pfd[n] = (struct pollfd){.fd = c->fd, .events = POLLIN};
			owner[n++] = c;
		}
		int rc = poll(pfd, (nfds_t)n, poll_timeout_ms(time_mono()));
		if (rc < 0) {
			if (errno != EINTR)
				log_error("poll: %s", strerror(errno));
			continue;
		}
		if (pfd[0].revents)
			read_signals();
		for (int i = 1; i < n; i++)
			/* The fd may have been closed by a reap just above. */
			if (pfd[i].revents && owner[i]->fd == pfd[i].fd)
				read_child(owner[i]);
	}
}

/* Daemon hygiene: a pipe must never land on fd 0-2. */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0) {
			int null = open("/dev/null", O_RDWR);
			if (null >= 0 && null != fd)
				close(null);
		}
}

int sup_run(const struct config *cfg, int argc, char **argv)
{
	sup.cfg = cfg;
	sup.argc = argc;
	sup.argv = argv;
	sup.pid = getpid();
	log_set_role("supervisor");
	ensure_std_fds();

	void *map = mmap(NULL, sizeof(struct sup_stats), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		int err = errno;
		log_error("mmap of shared counters: %s", strerror(err));
		return -err;
	}
	stats = map;
	memset(stats, 0, sizeof(*stats));
	stats->started_at = (double)time_wall_ms() / 1000;

	/* Our signals arrive as reads on sigfd; blocked, they never interrupt.
	 * SIGPIPE is ignored so a vanished stderr reader cannot kill us. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ||
	    (sup.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		int err = errno;
		log_error("signalfd: %s", strerror(err));
		return -err;
	}
	/* Inherited dispositions must not matter: an ignored SIGCHLD would
	 * make the kernel reap the children before we see their status. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(&set, sig) == 1)
			signal(sig, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	notify_init();

	double now = time_mono();
	char names[SUP_TITLE_MAX] = "";
	for (int i = 0; i < SUP_ROLE_MAX; i++) {
		struct child *c = &sup.children[i];
		const struct role_def *r = &roles[i];
		c->role = (enum sup_role)i;
		c->fd = -1;
		bool wanted = !r->wanted || r->wanted(cfg);
		if (wanted && !r->main)
			log_warn("%s is configured but not part of this build; "
				 "not started",
				 r->name);
		if (wanted && r->main) {
			c->state = S_DOWN;
			c->due = now; /* first start: at once, in table order */
			stats->enabled[i] = 1;
			size_t len = strlen(names);
			snprintf(names + len, sizeof(names) - len, "%s%s",
				 len ? ", " : "", r->name);
		} else {
			c->state = S_STOPPED;
		}
	}
	sup.watchdog_next = now;
	log_info("proxystone %s: %s on :%d; children: %s", PS_VERSION,
		 config_role_name(cfg->role), cfg->api_port, names);

	run_loop();

	close(sup.sigfd);
	sup.sigfd = -1;
	log_info("stopped");
	return 0;
}
