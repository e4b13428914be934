/*
 * conn — the membership socket and stdout of proxystone-dump (see conn.h).
 */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <unistd.h>

#include "proxystone/ipc.h"
#include "proxystone/timeutil.h"

/* Read buffer: one whole frame plus the chunk that completed it, as in
 * src/common/ipc.c. */
#define CONN_RBUF_MAX (IPC_FRAME_MAX + IPC_HEADER_LEN + IPC_READ_CHUNK)
/* A request is a few bytes; this bounds the one we build. */
#define CONN_REQ_MAX 4096

int conn_open(struct conn *c, const char *path)
{
	int fd = ipc_connect(path);

	c->fd = -1;
	if (fd < 0)
		return fd;
	c->fd = fd;
	buf_init(&c->rbuf, CONN_RBUF_MAX);
	return 0;
}

void conn_close(struct conn *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		buf_fini(&c->rbuf);
	}
	c->fd = -1;
}

/* Waits for `events` on fd until the monotonic `deadline` (< 0: no
 * deadline). 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, double deadline)
{
	struct pollfd p = {.fd = fd, .events = events};

	for (;;) {
		double left = deadline - time_mono();
		int ms = deadline < 0 ? -1
			 : left <= 0  ? 0
				      : (int)(left * 1000) + 1;
		int n = poll(&p, 1, ms);

		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

int conn_send(struct conn *c, const Ps__Request *req)
{
	struct buf b;
	size_t off = 0;
	int rc;

	buf_init(&b, CONN_REQ_MAX);
	rc = ipc_frame_append(&b, &req->base);
	while (rc == 0 && off < b.len) {
		ssize_t n =
		    send(c->fd, b.base + off, b.len - off, MSG_NOSIGNAL);

		if (n >= 0) {
			off += (size_t)n;
		} else if (errno == EAGAIN) {
			rc = wait_fd(c->fd, POLLOUT, -1);
		} else if (errno != EINTR) {
			rc = -errno;
		}
	}
	buf_fini(&b);
	return rc;
}

/* A whole frame at the start of rbuf: 1 and *out, 0 if none yet. */
static int take_frame(struct conn *c, Ps__Reply **out)
{
	const uint8_t *payload;
	size_t plen, flen;
	int rc = ipc_frame_peek((const uint8_t *)c->rbuf.base, c->rbuf.len,
				IPC_FRAME_MAX, &payload, &plen, &flen);

	if (rc <= 0)
		return rc;
	*out = ps__reply__unpack(NULL, plen, payload);
	buf_consume(&c->rbuf, flen);
	return *out ? 1 : -EBADMSG;
}

int conn_next(struct conn *c, double timeout, Ps__Reply **out)
{
	double deadline = timeout < 0 ? -1 : time_mono() + timeout;
	/* events = 0: only POLLERR/POLLHUP, which a pipe's write end reports
	 * once its reader is gone; NVAL (stdout closed) stops the watch. */
	struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN},
			      {.fd = STDOUT_FILENO, .events = 0}};
	char chunk[IPC_READ_CHUNK];
	int rc;

	for (;;) {
		rc = take_frame(c, out);
		if (rc)
			return rc < 0 ? rc : 0;
		double left = deadline - time_mono();
		int ms = deadline < 0 ? -1
			 : left <= 0  ? 0
				      : (int)(left * 1000) + 1;
		int n = poll(p, 2, ms);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ETIMEDOUT;
		if (p[1].revents & POLLNVAL)
			p[1].fd = -1;
		else if (p[1].revents & (POLLERR | POLLHUP))
			return -EPIPE;
		if (p[0].revents == 0)
			continue;
		ssize_t got = read(c->fd, chunk, sizeof(chunk));

		if (got == 0)
			return -ECONNRESET;
		if (got < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (buf_append(&c->rbuf, chunk, (size_t)got))
			return -EMSGSIZE;
	}
}

int out_write(const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = write(STDOUT_FILENO, p, len);

		if (n >= 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			/* stdout shared with a non-blocking writer */
			int rc = wait_fd(STDOUT_FILENO, POLLOUT, -1);

			if (rc)
				return rc;
			continue;
		}
		return -errno;
	}
	return 0;
}
