/* Unit tests: HTTP GET client (src/membership/fetch.c), against a scripted
 * fake HTTP server on 127.0.0.1 driven by the same libev loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxystone/fetch.h"

#define REPLICA_PATH "/api/cluster/replica"
/* Generous deadline for fetches that are expected to finish. */
#define TEST_TIMEOUT 5.0
/* Deadline for fetches that are expected to time out (the brief's 0.2 s). */
#define TEST_SHORT_TIMEOUT 0.2
/* Request head the fake server keeps; ours are ~120 bytes. */
#define SRV_REQ_MAX 4096

/* ---- the fake server: one connection at a time, scripted answer ---- */

struct srv {
	struct ev_loop *loop;
	int lfd;
	int port;
	ev_io accept_w;
	/* script */
	const char *resp;
	size_t limit; /* bytes of resp to send */
	size_t piece; /* bytes per write; 0: as many as the socket takes */
	size_t split; /* nonzero: the first write stops at this offset */
	bool silent;  /* read the request, never answer */
	bool stall;   /* after limit bytes keep the connection open */
	/* connection */
	int cfd;
	bool answering;
	ev_io conn_w;
	ev_idle idle_w;
	char req[SRV_REQ_MAX + 1];
	size_t req_len;
	size_t off;
	int accepted;
	int closed_by_peer; /* EOF seen from the client */
};

static void srv_close_conn(struct srv *s)
{
	ev_io_stop(s->loop, &s->conn_w);
	ev_idle_stop(s->loop, &s->idle_w);
	if (s->cfd >= 0)
		close(s->cfd);
	s->cfd = -1;
}

static void srv_watch(struct srv *s, int events)
{
	ev_io_stop(s->loop, &s->conn_w);
	ev_io_set(&s->conn_w, s->cfd, events);
	ev_io_start(s->loop, &s->conn_w);
}

static void srv_on_read(struct srv *s)
{
	char tmp[512];
	ssize_t n = recv(s->cfd, tmp, sizeof(tmp), 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (n == 0)
			s->closed_by_peer++;
		srv_close_conn(s);
		return;
	}
	if (s->answering)
		return; /* stalled: drain until the client goes away */
	size_t take = (size_t)n;
	if (take > SRV_REQ_MAX - s->req_len)
		take = SRV_REQ_MAX - s->req_len;
	memcpy(s->req + s->req_len, tmp, take);
	s->req_len += take;
	s->req[s->req_len] = '\0';
	if (!strstr(s->req, "\r\n\r\n") || s->silent)
		return;
	s->answering = true;
	srv_watch(s, EV_WRITE);
}

static void srv_on_write(struct srv *s)
{
	size_t n = s->limit - s->off;
	if (s->piece && n > s->piece)
		n = s->piece;
	if (s->split && s->off < s->split && n > s->split - s->off)
		n = s->split - s->off;
	if (n) {
		ssize_t w = send(s->cfd, s->resp + s->off, n, MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (w < 0) {
			srv_close_conn(s);
			return;
		}
		s->off += (size_t)w;
	}
	ev_io_stop(s->loop, &s->conn_w);
	if (s->off < s->limit) {
		/* Idle watchers run only when nothing else is pending, i.e.
		 * after the client has read this piece: one read per write. */
		ev_idle_start(s->loop, &s->idle_w);
	} else if (s->stall) {
		srv_watch(s, EV_READ);
	} else {
		srv_close_conn(s);
	}
}

static void srv_conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct srv *s = w->data;
	(void)loop;
	if (revents & EV_READ)
		srv_on_read(s);
	else if (revents & EV_WRITE)
		srv_on_write(s);
}

static void srv_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct srv *s = w->data;
	(void)revents;
	ev_idle_stop(loop, w);
	srv_watch(s, EV_WRITE);
}

static void srv_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct srv *s = w->data;
	(void)loop;
	(void)revents;
	int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	srv_close_conn(s);
	s->cfd = fd;
	s->accepted++;
	s->answering = false;
	s->req_len = 0;
	s->req[0] = '\0';
	s->off = 0;
	srv_watch(s, EV_READ);
}

static void srv_start(struct srv *s, struct ev_loop *loop)
{
	memset(s, 0, sizeof(*s));
	s->loop = loop;
	s->cfd = -1;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->lfd, 16), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
	s->port = ntohs(sa.sin_port);
	ev_io_init(&s->accept_w, srv_accept_cb, s->lfd, EV_READ);
	s->accept_w.data = s;
	ev_io_start(loop, &s->accept_w);
	ev_init(&s->conn_w, srv_conn_cb);
	s->conn_w.data = s;
	ev_idle_init(&s->idle_w, srv_idle_cb);
	s->idle_w.data = s;
}

static void srv_stop(struct srv *s)
{
	srv_close_conn(s);
	ev_io_stop(s->loop, &s->accept_w);
	close(s->lfd);
}

static void srv_script(struct srv *s, const char *resp, size_t len)
{
	s->resp = resp;
	s->limit = len;
	s->piece = 0;
	s->split = 0;
	s->silent = false;
	s->stall = false;
}

#define SCRIPT(s, lit) srv_script((s), (lit), sizeof(lit) - 1)

/* ---- the client side ---- */

struct result {
	int calls;
	int status;
	char *body; /* copy; NULL when the callback got NULL */
	size_t len;
};

static void result_reset(struct result *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static void done_cb(void *ud, int status, const char *body, size_t len)
{
	struct result *r = ud;
	r->calls++;
	r->status = status;
	r->len = len;
	free(r->body);
	r->body = NULL;
	if (status > 0) {
		assert_non_null(body);
		assert_int_equal(body[len], '\0');
		r->body = malloc(len + 1);
		assert_non_null(r->body);
		memcpy(r->body, body, len + 1);
	} else {
		assert_null(body);
		assert_int_equal(len, 0);
	}
}

struct fx {
	struct ev_loop *loop;
	struct srv srv;
	struct result res;
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	fx->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(fx->loop);
	srv_start(&fx->srv, fx->loop);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	srv_stop(&fx->srv);
	result_reset(&fx->res);
	ev_loop_destroy(fx->loop);
	free(fx);
	return 0;
}

static void run_until_done(struct fx *fx)
{
	while (!fx->res.calls)
		ev_run(fx->loop, EVRUN_ONCE);
}

static void flag_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	*(bool *)w->data = true;
}

/* Runs the loop for secs of loop time. */
static void run_for(struct ev_loop *loop, double secs)
{
	bool fired = false;
	ev_timer t;
	ev_timer_init(&t, flag_cb, secs, 0.);
	t.data = &fired;
	ev_timer_start(loop, &t);
	while (!fired)
		ev_run(loop, EVRUN_ONCE);
}

/* One fetch of REPLICA_PATH from the fake server, run to completion. */
static void get(struct fx *fx, size_t body_max, double timeout)
{
	result_reset(&fx->res);
	struct fetch *f =
	    fetch_get(fx->loop, "127.0.0.1", fx->srv.port, REPLICA_PATH,
		      timeout, body_max, done_cb, &fx->res);
	assert_non_null(f);
	/* Never called from inside fetch_get(). */
	assert_int_equal(fx->res.calls, 0);
	run_until_done(fx);
	assert_int_equal(fx->res.calls, 1);
}

static void assert_body(const struct result *r, int status, const char *body,
			size_t len)
{
	assert_int_equal(r->status, status);
	assert_int_equal(r->len, len);
	assert_memory_equal(r->body, body, len);
}

/* ---- responses ---- */

/* A protobuf-like body with a NUL in it. */
static const char pb_body[] = "\x0a\x03"
			      "abc"
			      "\x10\x00\x18\x01";
static const char resp_cl[] = "HTTP/1.1 200 OK\r\n"
			      "Content-Type: application/x-protobuf\r\n"
			      "Content-Length: 9\r\n"
			      "\r\n"
			      "\x0a\x03"
			      "abc"
			      "\x10\x00\x18\x01";
static const char resp_chunked[] = "HTTP/1.1 200 OK\r\n"
				   "Transfer-Encoding: chunked\r\n"
				   "\r\n"
				   "5\r\nhello\r\n"
				   "6;ext=1\r\n world\r\n"
				   "0\r\n"
				   "X-Trailer: t\r\n"
				   "\r\n";

/* ---- tests ---- */

static void test_content_length_and_request(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, resp_cl);
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 200, pb_body, sizeof(pb_body) - 1);

	const char *req = fx->srv.req;
	char host[64];
	snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n",
		 fx->srv.port);
	assert_true(strncmp(req, "GET " REPLICA_PATH " HTTP/1.1\r\n",
			    strlen("GET " REPLICA_PATH " HTTP/1.1\r\n")) == 0);
	assert_non_null(strstr(req, host));
	assert_non_null(strstr(req, "\r\nConnection: close\r\n"));
	assert_non_null(
	    strstr(req, "\r\nAccept: application/x-protobuf, */*\r\n"));
	assert_int_equal(fx->srv.accepted, 1);
}

static void test_body_exactly_at_max(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, resp_cl);
	get(fx, sizeof(pb_body) - 1, TEST_TIMEOUT);
	assert_body(&fx->res, 200, pb_body, sizeof(pb_body) - 1);
}

static void test_chunked(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, resp_chunked);
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 200, "hello world", 11);
}

static void test_body_until_close(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, "HTTP/1.1 200 OK\r\n"
			 "Content-Type: application/x-protobuf\r\n"
			 "\r\n"
			 "read until the server closes");
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 200, "read until the server closes", 28);

	SCRIPT(&fx->srv, "HTTP/1.0 200 OK\r\n\r\nold");
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 200, "old", 3);
}

static void test_empty_bodies(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, "HTTP/1.1 204 No Content\r\n\r\n");
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 204, "", 0);

	SCRIPT(&fx->srv, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 200, "", 0);
}

static void test_error_status_passed_through(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, "HTTP/1.1 404 Not Found\r\n"
			 "Content-Type: application/json\r\n"
			 "Content-Length: 17\r\n"
			 "\r\n"
			 "{\"success\":false}");
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 404, "{\"success\":false}", 17);

	SCRIPT(&fx->srv, "HTTP/1.1 503 Service Unavailable\r\n\r\nbusy");
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 503, "busy", 4);
}

static void test_interim_response_skipped(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, "HTTP/1.1 100 Continue\r\n\r\n"
			 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 200, "ok", 2);

	SCRIPT(&fx->srv, "HTTP/1.1 101 Switching Protocols\r\n"
			 "Connection: upgrade\r\nUpgrade: h2c\r\n\r\n");
	get(fx, 0, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EPROTO);
}

static void test_body_over_max(void **state)
{
	struct fx *fx = *state;
	/* Declared length: refused from the head. */
	SCRIPT(&fx->srv, resp_cl);
	get(fx, sizeof(pb_body) - 2, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EMSGSIZE);

	/* A huge declared length never reaches an allocation. */
	SCRIPT(&fx->srv, "HTTP/1.1 200 OK\r\n"
			 "Content-Length: 1000000000000\r\n\r\nx");
	get(fx, 0, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EMSGSIZE);

	/* One that overflows 64 bits is malformed. */
	SCRIPT(&fx->srv, "HTTP/1.1 200 OK\r\n"
			 "Content-Length: 18446744073709551616\r\n\r\nx");
	get(fx, 0, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EPROTO);

	/* Chunked: counted as chunks arrive. */
	SCRIPT(&fx->srv, resp_chunked);
	get(fx, 10, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EMSGSIZE);

	/* Until close: counted as bytes arrive. */
	SCRIPT(&fx->srv, "HTTP/1.1 200 OK\r\n\r\n0123456789ab");
	get(fx, 10, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EMSGSIZE);
}

static void test_large_body(void **state)
{
	struct fx *fx = *state;
	/* Many reads, several readiness events, buffer growth. */
	const size_t body_len = 3 * 1024 * 1024 + 7;
	char head[128];
	int hl = snprintf(head, sizeof(head),
			  "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
			  body_len);
	char *resp = malloc((size_t)hl + body_len);
	assert_non_null(resp);
	memcpy(resp, head, (size_t)hl);
	for (size_t i = 0; i < body_len; i++)
		resp[(size_t)hl + i] = (char)(i * 31 + 7);
	srv_script(&fx->srv, resp, (size_t)hl + body_len);
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 200, resp + hl, body_len);
	free(resp);
}

static void test_head_over_bound(void **state)
{
	struct fx *fx = *state;
	const size_t val = 20 * 1024;
	const char *pre = "HTTP/1.1 200 OK\r\nX-Big: ";
	const char *post = "\r\nContent-Length: 0\r\n\r\n";
	size_t len = strlen(pre) + val + strlen(post);
	char *resp = malloc(len);
	assert_non_null(resp);
	memcpy(resp, pre, strlen(pre));
	memset(resp + strlen(pre), 'v', val);
	memcpy(resp + strlen(pre) + val, post, strlen(post));
	srv_script(&fx->srv, resp, len);
	get(fx, 0, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EPROTO);
	free(resp);
}

static void test_wire_bound(void **state)
{
	struct fx *fx = *state;
	/* A server streaming one endless chunk extension: no body byte ever
	 * arrives, only framing; the wire bound ends it. */
	const char *pre = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
			  "\r\n1;ext=";
	const size_t ext = 256 * 1024;
	size_t len = strlen(pre) + ext;
	char *resp = malloc(len);
	assert_non_null(resp);
	memcpy(resp, pre, strlen(pre));
	memset(resp + strlen(pre), 'e', ext);
	srv_script(&fx->srv, resp, len);
	fx->srv.stall = true;
	get(fx, 10, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EMSGSIZE);
	free(resp);
}

static void test_silent_server_times_out(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, resp_cl);
	fx->srv.silent = true;
	ev_now_update(fx->loop);
	double t0 = ev_now(fx->loop);
	get(fx, 0, TEST_SHORT_TIMEOUT);
	ev_now_update(fx->loop);
	double took = ev_now(fx->loop) - t0;
	assert_int_equal(fx->res.status, -ETIMEDOUT);
	assert_true(took >= TEST_SHORT_TIMEOUT - 0.01);
	assert_true(took < TEST_SHORT_TIMEOUT + 1.0);
	/* The client closed its end; exactly one callback. */
	run_for(fx->loop, 0.05);
	assert_int_equal(fx->srv.closed_by_peer, 1);
	assert_int_equal(fx->res.calls, 1);
}

static void test_deadline_covers_whole_fetch(void **state)
{
	struct fx *fx = *state;
	/* Head and part of the body, then nothing: progress does not extend
	 * the deadline. */
	SCRIPT(&fx->srv, resp_cl);
	fx->srv.limit = sizeof(resp_cl) - 1 - 3;
	fx->srv.piece = 4;
	fx->srv.stall = true;
	get(fx, 0, TEST_SHORT_TIMEOUT);
	assert_int_equal(fx->res.status, -ETIMEDOUT);
}

static void test_connection_refused(void **state)
{
	struct fx *fx = *state;
	/* A port that was just free: bind it, then close it. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);

	result_reset(&fx->res);
	struct fetch *f =
	    fetch_get(fx->loop, "127.0.0.1", ntohs(sa.sin_port), REPLICA_PATH,
		      TEST_TIMEOUT, 0, done_cb, &fx->res);
	assert_non_null(f);
	assert_int_equal(fx->res.calls, 0);
	run_until_done(fx);
	assert_int_equal(fx->res.status, -ECONNREFUSED);
}

static void test_garbage_response(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, "hello, this is not HTTP\r\n\r\n");
	get(fx, 0, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EPROTO);

	SCRIPT(&fx->srv, "HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok");
	get(fx, 0, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EPROTO);

	SCRIPT(&fx->srv, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
			 "\r\nzz\r\n");
	get(fx, 0, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EPROTO);

	/* Closed without a byte of response. */
	srv_script(&fx->srv, "", 0);
	get(fx, 0, TEST_TIMEOUT);
	assert_int_equal(fx->res.status, -EPROTO);
}

static void test_one_byte_writes(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, resp_chunked);
	fx->srv.piece = 1;
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 200, "hello world", 11);

	SCRIPT(&fx->srv, resp_cl);
	fx->srv.piece = 1;
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 200, pb_body, sizeof(pb_body) - 1);
}

static void test_every_split_point(void **state)
{
	struct fx *fx = *state;
	for (size_t k = 1; k < sizeof(resp_chunked) - 1; k++) {
		SCRIPT(&fx->srv, resp_chunked);
		fx->srv.split = k;
		get(fx, 0, TEST_TIMEOUT);
		assert_body(&fx->res, 200, "hello world", 11);
	}
}

static void test_every_truncation_fails(void **state)
{
	struct fx *fx = *state;
	const char *resps[] = {resp_cl, resp_chunked};
	const size_t lens[] = {sizeof(resp_cl) - 1, sizeof(resp_chunked) - 1};
	for (size_t r = 0; r < 2; r++) {
		for (size_t k = 0; k < lens[r]; k++) {
			srv_script(&fx->srv, resps[r], k);
			get(fx, 0, TEST_TIMEOUT);
			assert_int_equal(fx->res.status, -EPROTO);
		}
		srv_script(&fx->srv, resps[r], lens[r]);
		get(fx, 0, TEST_TIMEOUT);
		assert_int_equal(fx->res.status, 200);
	}
}

static void test_cancel_before_connect(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, resp_cl);
	result_reset(&fx->res);
	struct fetch *f =
	    fetch_get(fx->loop, "127.0.0.1", fx->srv.port, REPLICA_PATH,
		      TEST_SHORT_TIMEOUT, 0, done_cb, &fx->res);
	assert_non_null(f);
	fetch_cancel(f);
	run_for(fx->loop, TEST_SHORT_TIMEOUT + 0.1);
	assert_int_equal(fx->res.calls, 0);
	fetch_cancel(NULL);
}

static void test_cancel_while_waiting(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, resp_cl);
	fx->srv.silent = true;
	result_reset(&fx->res);
	struct fetch *f =
	    fetch_get(fx->loop, "127.0.0.1", fx->srv.port, REPLICA_PATH,
		      TEST_SHORT_TIMEOUT, 0, done_cb, &fx->res);
	assert_non_null(f);
	while (!strstr(fx->srv.req, "\r\n\r\n"))
		ev_run(fx->loop, EVRUN_ONCE);
	fetch_cancel(f);
	/* Past the deadline: the timer is gone with the fetch. */
	run_for(fx->loop, TEST_SHORT_TIMEOUT + 0.1);
	assert_int_equal(fx->res.calls, 0);
	assert_int_equal(fx->srv.closed_by_peer, 1);
}

static void test_cancel_mid_body(void **state)
{
	struct fx *fx = *state;
	SCRIPT(&fx->srv, resp_chunked);
	fx->srv.split = sizeof(resp_chunked) - 1 - 10;
	fx->srv.stall = true;
	fx->srv.limit = fx->srv.split;
	result_reset(&fx->res);
	struct fetch *f =
	    fetch_get(fx->loop, "127.0.0.1", fx->srv.port, REPLICA_PATH,
		      TEST_SHORT_TIMEOUT, 0, done_cb, &fx->res);
	assert_non_null(f);
	while (fx->srv.off < fx->srv.limit)
		ev_run(fx->loop, EVRUN_ONCE);
	run_for(fx->loop, 0.02); /* let the client read the partial body */
	fetch_cancel(f);
	run_for(fx->loop, TEST_SHORT_TIMEOUT + 0.1);
	assert_int_equal(fx->res.calls, 0);
}

static void test_cancel_pending_refusal(void **state)
{
	struct fx *fx = *state;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	result_reset(&fx->res);
	struct fetch *f =
	    fetch_get(fx->loop, "127.0.0.1", ntohs(sa.sin_port), REPLICA_PATH,
		      TEST_SHORT_TIMEOUT, 0, done_cb, &fx->res);
	assert_non_null(f);
	fetch_cancel(f);
	run_for(fx->loop, 0.05);
	assert_int_equal(fx->res.calls, 0);
}

static void test_concurrent_fetches(void **state)
{
	struct fx *fx = *state;
	/* Two fetches on one loop: one finishes while the other still waits
	 * for its deadline; each has its own callback data. */
	SCRIPT(&fx->srv, resp_cl);
	fx->srv.silent = true;
	struct result slow = {0};
	struct fetch *f1 =
	    fetch_get(fx->loop, "127.0.0.1", fx->srv.port, REPLICA_PATH,
		      TEST_SHORT_TIMEOUT, 0, done_cb, &slow);
	assert_non_null(f1);
	while (!strstr(fx->srv.req, "\r\n\r\n"))
		ev_run(fx->loop, EVRUN_ONCE);
	/* The next connection gets an answer (the server drops the first). */
	fx->srv.silent = false;
	get(fx, 0, TEST_TIMEOUT);
	assert_body(&fx->res, 200, pb_body, sizeof(pb_body) - 1);
	while (!slow.calls)
		ev_run(fx->loop, EVRUN_ONCE);
	assert_int_equal(slow.calls, 1);
	assert_true(slow.status < 0);
	result_reset(&slow);
}

static void test_bad_arguments(void **state)
{
	struct fx *fx = *state;
	struct ev_loop *l = fx->loop;
	int p = fx->srv.port;
	const char *rp = REPLICA_PATH;
	struct result *r = &fx->res;
	double t = TEST_TIMEOUT;
	result_reset(r);

#define BAD(call)                                                              \
	do {                                                                   \
		errno = 0;                                                     \
		assert_null(call);                                             \
		assert_int_equal(errno, EINVAL);                               \
	} while (0)
	BAD(fetch_get(NULL, "127.0.0.1", p, rp, t, 0, done_cb, r));
	BAD(fetch_get(l, NULL, p, rp, t, 0, done_cb, r));
	BAD(fetch_get(l, "", p, rp, t, 0, done_cb, r));
	BAD(fetch_get(l, "[]", p, rp, t, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1\r\nX: y", p, rp, t, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1", 0, rp, t, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1", 65536, rp, t, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1", p, NULL, t, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1", p, "api", t, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1", p, "/a b", t, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1", p, "/a\r\nX: y", t, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1", p, rp, 0, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1", p, rp, -1, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1", p, rp, NAN, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1", p, rp, INFINITY, 0, done_cb, r));
	BAD(fetch_get(l, "127.0.0.1", p, rp, t, 0, NULL, r));
#undef BAD
	run_for(l, 0.01);
	assert_int_equal(r->calls, 0);
	assert_int_equal(fx->srv.accepted, 0);
}

static void test_host_name_fallback(void **state)
{
	struct fx *fx = *state;
	/* "localhost" is not numeric: resolved by the system resolver, and
	 * if it yields ::1 first (nobody listens there) the next address is
	 * tried. */
	struct addrinfo hints, *ai = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_INET;
	if (getaddrinfo("localhost", NULL, &hints, &ai) != 0) {
		skip();
		return;
	}
	freeaddrinfo(ai);
	SCRIPT(&fx->srv, resp_cl);
	result_reset(&fx->res);
	struct fetch *f =
	    fetch_get(fx->loop, "localhost", fx->srv.port, REPLICA_PATH,
		      TEST_TIMEOUT, 0, done_cb, &fx->res);
	assert_non_null(f);
	run_until_done(fx);
	assert_body(&fx->res, 200, pb_body, sizeof(pb_body) - 1);
	char host[64];
	snprintf(host, sizeof(host), "\r\nHost: localhost:%d\r\n",
		 fx->srv.port);
	assert_non_null(strstr(fx->srv.req, host));
}

static void test_ipv6_literal(void **state)
{
	struct fx *fx = *state;
	/* A second server on [::1]; skipped where IPv6 is off. */
	int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in6 sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	sa.sin6_addr = in6addr_loopback;
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (lfd >= 0)
			close(lfd);
		skip();
		return;
	}
	/* Move the fixture's server onto the IPv6 socket. */
	ev_io_stop(fx->loop, &fx->srv.accept_w);
	close(fx->srv.lfd);
	fx->srv.lfd = lfd;
	assert_int_equal(listen(lfd, 16), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	fx->srv.port = ntohs(sa.sin6_port);
	ev_io_set(&fx->srv.accept_w, lfd, EV_READ);
	ev_io_start(fx->loop, &fx->srv.accept_w);

	const char *hosts[] = {"::1", "[::1]"};
	for (size_t i = 0; i < 2; i++) {
		SCRIPT(&fx->srv, resp_chunked);
		result_reset(&fx->res);
		struct fetch *f =
		    fetch_get(fx->loop, hosts[i], fx->srv.port, REPLICA_PATH,
			      TEST_TIMEOUT, 0, done_cb, &fx->res);
		assert_non_null(f);
		run_until_done(fx);
		assert_body(&fx->res, 200, "hello world", 11);
		char host[64];
		snprintf(host, sizeof(host), "\r\nHost: [::1]:%d\r\n",
			 fx->srv.port);
		assert_non_null(strstr(fx->srv.req, host));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_content_length_and_request,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_body_exactly_at_max, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_chunked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_body_until_close, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_empty_bodies, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_status_passed_through,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_interim_response_skipped,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_body_over_max, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_large_body, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_head_over_bound, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_wire_bound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_silent_server_times_out, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_deadline_covers_whole_fetch,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_connection_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_garbage_response, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_one_byte_writes, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_every_split_point, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_every_truncation_fails, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_before_connect, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_while_waiting, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_mid_body, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_pending_refusal, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_fetches, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bad_arguments, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_host_name_fallback, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_ipv6_literal, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
