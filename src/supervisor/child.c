/* child — the child's half of the supervision protocol; see
 * include/proxystone/supervisor.h. */
#include "proxystone/supervisor.h"

#include <errno.h>
#include <ev.h>
#include <unistd.h>

/* Supervision bytes: the readiness line and the keepalive tick. */
#define CHILD_READY_BYTE '\n'
#define CHILD_KEEPALIVE_BYTE '.'

static ev_timer keepalive_timer;
static int keepalive_fd = -1;

/*
 * sup_fd is non-blocking: a full pipe (the supervisor is stopped, e.g. in a
 * debugger) drops the byte instead of stalling the child's loop; the
 * supervisor only needs some byte now and then. EPIPE means the supervisor
 * is gone, and PR_SET_PDEATHSIG is about to end this process anyway.
 */
static void put(int fd, char byte)
{
	ssize_t n;
	do
		n = write(fd, &byte, 1);
	while (n < 0 && errno == EINTR);
}

void child_notify_ready(int sup_fd)
{
	if (sup_fd >= 0)
		put(sup_fd, CHILD_READY_BYTE);
}

static void keepalive_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	put(keepalive_fd, CHILD_KEEPALIVE_BYTE);
}

void child_keepalive_start(struct ev_loop *loop, int sup_fd)
{
	if (sup_fd < 0 || keepalive_fd >= 0)
		return;
	keepalive_fd = sup_fd;
	put(sup_fd, CHILD_KEEPALIVE_BYTE);
	ev_timer_init(&keepalive_timer, keepalive_cb, CHILD_KEEPALIVE_INTERVAL,
		      CHILD_KEEPALIVE_INTERVAL);
	ev_timer_start(loop, &keepalive_timer);
	/* A background watcher: the child's loop ends when its real work does.
	 */
	ev_unref(loop);
}
