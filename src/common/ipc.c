/* ipc — framed protobuf over Unix stream sockets; see include/proxystone/ipc.h.
 */
#include "proxystone/ipc.h"
#include "proxystone/bytes.h"

#include <errno.h>
#include <stdbool.h>
#include <ev.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Pending connections on the membership socket: api + a few dump tools. */
#define IPC_LISTEN_BACKLOG 64

int ipc_frame_peek(const uint8_t *data, size_t avail, size_t max,
		   const uint8_t **payload, size_t *plen, size_t *frame_len)
{
	if (avail < IPC_HEADER_LEN)
		return 0;
	uint32_t n = get_be32(data);
	if (n > max)
		return -EMSGSIZE;
	if (avail - IPC_HEADER_LEN < n)
		return 0;
	*payload = data + IPC_HEADER_LEN;
	*plen = n;
	*frame_len = IPC_HEADER_LEN + (size_t)n;
	return 1;
}

int ipc_frame_append(struct buf *out, const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	if (n > IPC_FRAME_MAX)
		return -EMSGSIZE;
	char *at;
	int rc = buf_extend(out, IPC_HEADER_LEN + n, &at);
	if (rc)
		return rc;
	uint8_t *p = (uint8_t *)at;
	put_be32(p, (uint32_t)n);
	protobuf_c_message_pack(msg, p + IPC_HEADER_LEN);
	return 0;
}

static int set_nonblock_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

static int make_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

int ipc_listen(const char *path)
{
	struct sockaddr_un sa;
	int rc = make_addr(path, &sa);
	if (rc)
		return rc;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	/* Create the socket already private: no window where it is 0777. */
	mode_t old = umask(0077);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, IPC_LISTEN_BACKLOG) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int ipc_connect(const char *path)
{
	struct sockaddr_un sa;
	int rc = make_addr(path, &sa);
	if (rc)
		return rc;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    set_nonblock_cloexec(fd) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

struct ipc_conn {
	struct ev_loop *loop;
	ev_io rio, wio;
	int fd;
	struct buf rbuf, wbuf;
	size_t wpos; /* bytes of wbuf already sent: compacted lazily, so a
		      * large reply drained in many partial sends is O(n) */
	ipc_frame_fn on_frame;
	ipc_close_fn on_close;
	void *ud;
	int in_callback; /* > 0 while user callbacks run: defer the free */
	bool closed;
	int close_reason;
};

static void conn_finish(struct ipc_conn *c)
{
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	close(c->fd);
	c->in_callback++;
	c->on_close(c, c->close_reason, c->ud);
	buf_fini(&c->rbuf);
	buf_fini(&c->wbuf);
	free(c);
}

void ipc_conn_close(struct ipc_conn *c, int reason)
{
	if (c->closed)
		return;
	c->closed = true;
	c->close_reason = reason;
	if (c->in_callback == 0)
		conn_finish(c);
}

static void conn_flush(struct ipc_conn *c)
{
	while (c->wpos < c->wbuf.len) {
		ssize_t n = send(c->fd, c->wbuf.base + c->wpos,
				 c->wbuf.len - c->wpos, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			ipc_conn_close(c, -errno);
			return;
		}
		c->wpos += (size_t)n;
	}
	if (c->wpos == c->wbuf.len) {
		buf_reset(&c->wbuf);
		c->wpos = 0;
		ev_io_stop(c->loop, &c->wio);
		return;
	}
	/* Compact only when the sent part dominates: amortized O(1) a byte. */
	if (c->wpos > c->wbuf.len / 2) {
		buf_consume(&c->wbuf, c->wpos);
		c->wpos = 0;
	}
	ev_io_start(c->loop, &c->wio);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	struct ipc_conn *c = w->data;
	conn_flush(c);
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	struct ipc_conn *c = w->data;
	char chunk[IPC_READ_CHUNK];
	ssize_t n = read(c->fd, chunk, sizeof(chunk));
	if (n == 0) {
		ipc_conn_close(c, 0);
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			ipc_conn_close(c, -errno);
		return;
	}
	if (buf_append(&c->rbuf, chunk, (size_t)n)) {
		ipc_conn_close(c, -EMSGSIZE);
		return;
	}
	size_t off = 0;
	c->in_callback++;
	while (!c->closed) {
		const uint8_t *payload;
		size_t plen, flen;
		int rc = ipc_frame_peek((const uint8_t *)c->rbuf.base + off,
					c->rbuf.len - off, IPC_FRAME_MAX,
					&payload, &plen, &flen);
		if (rc < 0) {
			ipc_conn_close(c, rc);
			break;
		}
		if (rc == 0)
			break;
		c->on_frame(c, payload, plen, c->ud);
		off += flen;
	}
	c->in_callback--;
	if (c->closed) {
		if (c->in_callback == 0)
			conn_finish(c);
		return;
	}
	if (off)
		buf_consume(&c->rbuf, off);
}

struct ipc_conn *ipc_conn_new(struct ev_loop *loop, int fd,
			      ipc_frame_fn on_frame, ipc_close_fn on_close,
			      void *ud)
{
	struct ipc_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return NULL;
	}
	c->loop = loop;
	c->fd = fd;
	c->on_frame = on_frame;
	c->on_close = on_close;
	c->ud = ud;
	/* One frame plus a partial one can be buffered. */
	buf_init(&c->rbuf, IPC_FRAME_MAX + IPC_HEADER_LEN + IPC_READ_CHUNK);
	buf_init(&c->wbuf, IPC_WBUF_MAX);
	ev_io_init(&c->rio, on_readable, fd, EV_READ);
	ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
	c->rio.data = c->wio.data = c;
	ev_io_start(loop, &c->rio);
	return c;
}

int ipc_conn_send(struct ipc_conn *c, const ProtobufCMessage *msg)
{
	if (c->closed)
		return -EPIPE;
	int rc = ipc_frame_append(&c->wbuf, msg);
	if (rc == -ENOSPC && c->wpos) {
		/* Room taken by bytes already sent: reclaim it, then retry. */
		buf_consume(&c->wbuf, c->wpos);
		c->wpos = 0;
		rc = ipc_frame_append(&c->wbuf, msg);
	}
	if (rc == -ENOSPC)
		return -ENOBUFS;
	if (rc)
		return rc;
	/* Written from the loop, never from inside the caller: a failed write
	 * then closes the connection where no caller holds a pointer to it. */
	ev_io_start(c->loop, &c->wio);
	return 0;
}

int ipc_conn_send_frames(struct ipc_conn *c, const void *frames, size_t len)
{
	if (c->closed)
		return -EPIPE;
	if (buf_append(&c->wbuf, frames, len)) {
		if (!c->wpos)
			return -ENOBUFS;
		buf_consume(&c->wbuf, c->wpos);
		c->wpos = 0;
		if (buf_append(&c->wbuf, frames, len))
			return -ENOBUFS;
	}
	ev_io_start(c->loop, &c->wio);
	return 0;
}

size_t ipc_conn_pending(const struct ipc_conn *c)
{
	return c->wbuf.len - c->wpos;
}

void ipc_conn_set_ud(struct ipc_conn *c, void *ud)
{
	c->ud = ud;
}
