/* fetch — non-blocking HTTP/1.1 GET client on libev; see
 * include/proxystone/fetch.h. */
#include "proxystone/fetch.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <http_parser.h>

#include "proxystone/buf.h"
#include "proxystone/log.h"

/* Longest host we accept: a DNS name is at most 253 bytes (RFC 1035); an
 * IPv6 literal, even with a zone id, is far shorter. */
#define FETCH_HOST_MAX 256
/* Longest request path: ours are short API paths; 2 KiB is the URL length
 * every server and proxy is known to accept. */
#define FETCH_PATH_MAX 2048
/* "65535" plus NUL. */
#define FETCH_PORT_LEN 8
/* The request: path, Host header and the fixed lines (under 128 bytes). */
#define FETCH_REQ_MAX (FETCH_PATH_MAX + FETCH_HOST_MAX + 256)
/* Response head bytes we count (status reason, header names and values,
 * trailers, interim 1xx heads together): ample for any API response, and
 * well under http_parser's own HTTP_MAX_HEADER_SIZE (80 KiB) backstop. */
#define FETCH_HEAD_MAX (16 * 1024)
/* Wire bytes allowed per body byte: chunked framing of 1-byte chunks costs
 * about 6 ("1\r\nX\r\n"); more than 8x is a server streaming framing or
 * chunk extensions instead of data (same factor as the api's http layer). */
#define FETCH_WIRE_FACTOR 8
/* Wire bytes allowed for heads on top of the body allowance: framing the
 * head count does not see (status line, ": ", CRLFs, blanks) costs at most a
 * few bytes per counted byte in any sane response. */
#define FETCH_WIRE_HEAD (4 * FETCH_HEAD_MAX)
/* One recv(): Redis's PROTO_IOBUF_LEN. */
#define FETCH_READ_CHUNK (16 * 1024)
/* recv() calls per readiness event, so one large fast response cannot
 * starve the loop's other watchers (the fd is level-triggered; the rest is
 * read on the next iteration). */
#define FETCH_READS_PER_EVENT 16
/* Bytes of offending input quoted in a debug line on a protocol error. */
#define FETCH_LOG_SAMPLE 48

enum fetch_state {
	FETCH_CONNECTING, /* waiting for EV_WRITE, then SO_ERROR */
	FETCH_SENDING,	  /* request partly sent */
	FETCH_RECEIVING,  /* parsing the response */
	FETCH_DONE,	  /* callback running; only freeing remains */
};

struct fetch {
	struct ev_loop *loop;
	fetch_done_fn cb;
	void *ud;
	enum fetch_state state;
	int fd;
	ev_io io;
	ev_timer timer;
	/* Failure found inside fetch_get(), reported by the timer fired at
	 * once, so cb never runs inside fetch_get(). */
	int deferred_err;
	/* Addresses not yet tried; released once connected. */
	struct addrinfo *addrs;
	struct addrinfo *next_addr;
	struct buf req;
	size_t req_off;
	http_parser parser;
	struct buf body; /* cap_max is body_max */
	size_t head_bytes;
	size_t wire_bytes;
	size_t wire_max;
	int parse_err; /* why a parser callback stopped the parser */
	bool complete;
	int status;
	char authority[FETCH_HOST_MAX + FETCH_PORT_LEN + 3]; /* "[h]:p" */
};

static void fetch_finish(struct fetch *f, int status);

/* ---- response parsing ---- */

static int on_head_bytes(http_parser *p, const char *at, size_t len)
{
	struct fetch *f = p->data;
	(void)at;
	f->head_bytes += len;
	if (f->head_bytes > FETCH_HEAD_MAX) {
		f->parse_err = -EPROTO;
		return -1;
	}
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct fetch *f = p->data;
	/* Refuse a declared length before reading (or allocating) any of it;
	 * content_length is all ones (ULLONG_MAX) when the header is absent. */
	if (!(p->flags & F_CHUNKED) && p->content_length != UINT64_MAX &&
	    p->content_length > f->body.cap_max) {
		f->parse_err = -EMSGSIZE;
		return -1;
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct fetch *f = p->data;
	int rc = buf_append(&f->body, at, len);
	if (rc) {
		f->parse_err = rc == -ENOSPC ? -EMSGSIZE : rc;
		return -1;
	}
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct fetch *f = p->data;
	if (p->status_code == 101) {
		/* We never ask to switch protocols. */
		f->parse_err = -EPROTO;
		return -1;
	}
	if (p->status_code / 100 == 1) {
		/* Interim response (100, 103): the final one follows. */
		buf_reset(&f->body);
		return 0;
	}
	f->complete = true;
	f->status = p->status_code;
	/* Ignore anything after the response. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings fetch_parser_settings = {
    .on_status = on_head_bytes,
    .on_header_field = on_head_bytes,
    .on_header_value = on_head_bytes,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void fetch_log_bad_input(const struct fetch *f, const char *data,
				size_t len, size_t at)
{
	char sample[FETCH_LOG_SAMPLE + 1];
	size_t n = 0;
	for (size_t i = at; i < len && n < FETCH_LOG_SAMPLE; i++) {
		unsigned char c = (unsigned char)data[i];
		sample[n++] = c >= 0x20 && c < 0x7f ? (char)c : '.';
	}
	sample[n] = '\0';
	log_debug("fetch %s: bad response (%s) at \"%s\"", f->authority,
		  http_errno_name(HTTP_PARSER_ERRNO(&f->parser)), sample);
}

/* Feeds received bytes to the parser; len 0 tells it the peer closed.
 * 1: the response is complete; 0: more is needed; or a negative errno. */
static int fetch_parse(struct fetch *f, const char *data, size_t len)
{
	size_t n =
	    http_parser_execute(&f->parser, &fetch_parser_settings, data, len);
	if (f->complete)
		return 1;
	if (f->parse_err)
		return f->parse_err;
	if (HTTP_PARSER_ERRNO(&f->parser) != HPE_OK || f->parser.upgrade ||
	    n != len) {
		fetch_log_bad_input(f, data, len, n);
		return -EPROTO;
	}
	if (len == 0)
		return -EPROTO; /* closed before the response was complete */
	return 0;
}

/* ---- socket I/O ---- */

static void fetch_watch(struct fetch *f, int events)
{
	ev_io_stop(f->loop, &f->io);
	ev_io_set(&f->io, f->fd, events);
	ev_io_start(f->loop, &f->io);
}

static void fetch_close_fd(struct fetch *f)
{
	ev_io_stop(f->loop, &f->io);
	if (f->fd >= 0) {
		close(f->fd);
		f->fd = -1;
	}
}

/* Starts a non-blocking connect to the next untried address. 0 when one
 * is under way; else the error of the last address tried (err if none
 * was left). */
static int fetch_connect_next(struct fetch *f, int err)
{
	while (f->next_addr) {
		struct addrinfo *ai = f->next_addr;
		f->next_addr = ai->ai_next;
		int fd = socket(ai->ai_family,
				ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		/* A non-blocking connect interrupted by a signal goes on in
		 * the background, like EINPROGRESS; success at once (rare,
		 * loopback) is confirmed by SO_ERROR the same way. */
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
		    errno == EINPROGRESS || errno == EINTR) {
			f->fd = fd;
			f->state = FETCH_CONNECTING;
			fetch_watch(f, EV_WRITE);
			return 0;
		}
		err = -errno;
		close(fd);
	}
	return err;
}

static void fetch_on_writable(struct fetch *f)
{
	while (f->req_off < f->req.len) {
		ssize_t n = send(f->fd, f->req.base + f->req_off,
				 f->req.len - f->req_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			fetch_finish(f, -errno);
			return;
		}
		f->req_off += (size_t)n;
	}
	f->state = FETCH_RECEIVING;
	fetch_watch(f, EV_READ);
}

static void fetch_on_connected(struct fetch *f)
{
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	if (getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr) {
		fetch_close_fd(f);
		int rc = fetch_connect_next(f, -soerr);
		if (rc)
			fetch_finish(f, rc);
		return;
	}
	freeaddrinfo(f->addrs);
	f->addrs = f->next_addr = NULL;
	f->state = FETCH_SENDING;
	fetch_on_writable(f);
}

static void fetch_on_readable(struct fetch *f)
{
	char rbuf[FETCH_READ_CHUNK];
	for (int i = 0; i < FETCH_READS_PER_EVENT; i++) {
		ssize_t n = recv(f->fd, rbuf, sizeof(rbuf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			fetch_finish(f, -errno);
			return;
		}
		if ((size_t)n > f->wire_max - f->wire_bytes) {
			fetch_finish(f, -EMSGSIZE);
			return;
		}
		f->wire_bytes += (size_t)n;
		/* n == 0 (EOF) always ends the fetch: complete or -EPROTO. */
		int rc = fetch_parse(f, rbuf, (size_t)n);
		if (rc) {
			fetch_finish(f, rc > 0 ? f->status : rc);
			return;
		}
	}
}

static void fetch_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct fetch *f = w->data;
	(void)loop;
	(void)revents;
	switch (f->state) {
	case FETCH_CONNECTING:
		fetch_on_connected(f);
		break;
	case FETCH_SENDING:
		fetch_on_writable(f);
		break;
	case FETCH_RECEIVING:
		fetch_on_readable(f);
		break;
	case FETCH_DONE:
		break;
	}
}

static void fetch_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fetch *f = w->data;
	(void)loop;
	(void)revents;
	fetch_finish(f, f->deferred_err ? f->deferred_err : -ETIMEDOUT);
}

/* ---- lifetime ---- */

static void fetch_free(struct fetch *f)
{
	ev_timer_stop(f->loop, &f->timer);
	fetch_close_fd(f);
	if (f->addrs)
		freeaddrinfo(f->addrs);
	buf_fini(&f->req);
	buf_fini(&f->body);
	free(f);
}

static void fetch_finish(struct fetch *f, int status)
{
	ev_timer_stop(f->loop, &f->timer);
	fetch_close_fd(f);
	f->state = FETCH_DONE;
	if (status > 0)
		f->cb(f->ud, status, f->body.base ? f->body.base : "",
		      f->body.len);
	else
		f->cb(f->ud, status, NULL, 0);
	fetch_free(f);
}

void fetch_cancel(struct fetch *f)
{
	/* FETCH_DONE: a (forbidden) call from inside the callback; the fetch
	 * is freed when the callback returns, so leave it alone. */
	if (!f || f->state == FETCH_DONE)
		return;
	fetch_free(f);
}

/* ---- starting ---- */

/* Numeric addresses never block; a name falls back to the system resolver
 * (blocking, see the header). */
static int fetch_resolve(const char *host, int port, struct addrinfo **out)
{
	char portstr[FETCH_PORT_LEN];
	snprintf(portstr, sizeof(portstr), "%d", port);
	struct addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	int rc = getaddrinfo(host, portstr, &hints, out);
	if (rc == EAI_NONAME) {
		hints.ai_flags = AI_NUMERICSERV;
		rc = getaddrinfo(host, portstr, &hints, out);
	}
	switch (rc) {
	case 0:
		return 0;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_SYSTEM:
		return errno ? -errno : -ENOENT;
	default:
		return -ENOENT;
	}
}

/* Printable, no blanks: nothing that could end the request line or a
 * header early. */
static bool fetch_token_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f)
			return false;
	}
	return true;
}

/* Copies host without IPv6 brackets into out. 0 or -EINVAL. */
static int fetch_host_parse(const char *host, char out[FETCH_HOST_MAX + 1])
{
	size_t len = strlen(host);
	if (len > 2 && host[0] == '[' && host[len - 1] == ']') {
		host++;
		len -= 2;
	}
	if (len == 0 || len > FETCH_HOST_MAX || !fetch_token_ok(host, len) ||
	    memchr(host, '[', len) || memchr(host, ']', len))
		return -EINVAL;
	memcpy(out, host, len);
	out[len] = '\0';
	return 0;
}

static size_t fetch_wire_max(size_t body_max)
{
	if (body_max > (SIZE_MAX - FETCH_WIRE_HEAD) / FETCH_WIRE_FACTOR)
		return SIZE_MAX;
	return body_max * FETCH_WIRE_FACTOR + FETCH_WIRE_HEAD;
}

struct fetch *fetch_get(struct ev_loop *loop, const char *host, int port,
			const char *path, double timeout, size_t body_max,
			fetch_done_fn cb, void *ud)
{
	return fetch_get_auth(loop, host, port, path, NULL, timeout, body_max,
			      cb, ud);
}

struct fetch *fetch_get_auth(struct ev_loop *loop, const char *host, int port,
			     const char *path, const char *bearer,
			     double timeout, size_t body_max, fetch_done_fn cb,
			     void *ud)
{
	char hostname[FETCH_HOST_MAX + 1];
	if (bearer && (strlen(bearer) > FETCH_PATH_MAX ||
		       !fetch_token_ok(bearer, strlen(bearer)))) {
		errno = EINVAL;
		return NULL;
	}
	if (!loop || !host || !path || !cb || port < 1 || port > 65535 ||
	    !(timeout > 0) || !isfinite(timeout) || path[0] != '/' ||
	    strlen(path) > FETCH_PATH_MAX ||
	    !fetch_token_ok(path, strlen(path)) ||
	    fetch_host_parse(host, hostname)) {
		errno = EINVAL;
		return NULL;
	}
	if (body_max == 0)
		body_max = FETCH_BODY_MAX_DEFAULT;

	struct fetch *f = calloc(1, sizeof(*f));
	if (!f) {
		errno = ENOMEM;
		return NULL;
	}
	f->loop = loop;
	f->cb = cb;
	f->ud = ud;
	f->fd = -1;
	f->state = FETCH_CONNECTING;
	ev_init(&f->io, fetch_io_cb);
	f->io.data = f;
	ev_init(&f->timer, fetch_timer_cb);
	f->timer.data = f;
	buf_init(&f->req, FETCH_REQ_MAX);
	buf_init(&f->body, body_max);
	f->wire_max = fetch_wire_max(body_max);
	http_parser_init(&f->parser, HTTP_RESPONSE);
	f->parser.data = f;
	snprintf(f->authority, sizeof(f->authority),
		 strchr(hostname, ':') ? "[%s]:%d" : "%s:%d", hostname, port);

	int rc = buf_printf(&f->req,
			    "GET %s HTTP/1.1\r\n"
			    "Host: %s\r\n"
			    "Accept: application/x-protobuf, */*\r\n"
			    "Connection: close\r\n"
			    "%s%s%s"
			    "\r\n",
			    path, f->authority,
			    bearer ? "Authorization: Bearer " : "",
			    bearer ? bearer : "", bearer ? "\r\n" : "");
	if (!rc)
		rc = fetch_resolve(hostname, port, &f->addrs);
	if (rc) {
		fetch_free(f);
		errno = -rc;
		return NULL;
	}
	f->next_addr = f->addrs;

	/* Resolution may have blocked: start the deadline from now, not from
	 * the loop's cached time. */
	ev_now_update(loop);
	rc = fetch_connect_next(f, -ECONNREFUSED);
	if (rc)
		f->deferred_err = rc;
	ev_timer_set(&f->timer, rc ? 0. : timeout, 0.);
	ev_timer_start(loop, &f->timer);
	return f;
}
