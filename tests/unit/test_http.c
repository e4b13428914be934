/*
 * Tests for src/api/http.c over real loopback sockets. The server's loop and
 * the client sockets run in this one thread: every wait spins
 * ev_run(EVRUN_NOWAIT) and reads the client side until a condition holds or
 * TEST_DEADLINE passes. Responses are parsed with http_parser in response
 * mode, so framing (Content-Length, close-delimited, 1xx, HEAD) is checked
 * by an independent parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxystone/http.h"
#include "proxystone/log.h"

/* Longest any single wait may take before the test fails; generous for
 * loaded CI machines and valgrind. */
#define TEST_DEADLINE 10.0
/* Responses remembered per client connection. */
#define RESP_MAX 8
/* Headers remembered per response. */
#define RESP_HDR_MAX 32
#define RESP_NAME_MAX 64
#define RESP_VALUE_MAX 512
/* Pending async requests remembered by the fixture. */
#define PENDING_MAX 8
/* Closed connection ids remembered by the fixture. */
#define CLOSED_MAX 256
/* A response big enough to be sent at once rather than at the end of the
 * loop turn (http.c's HTTP_DEFER_MAX is 16 KB). */
#define BIG_RESPONSE (20 * 1024)
/* Saved copies of request fields. */
#define SAVED_MAX (HTTP_BODY_MAX_DEFAULT + 1)

enum mode { MODE_ECHO, MODE_ASYNC, MODE_STREAM };

struct saved_req {
	int method;
	char path[HTTP_URL_MAX + 1];
	size_t path_len;
	char query[HTTP_URL_MAX + 1];
	char *body;
	size_t body_len;
	char auth[256], ctype[256], origin[256];
	bool keep_alive;
	uint64_t conn_id;
};

struct fx {
	struct ev_loop *loop;
	struct http_server *srv;
	int port;
	enum mode mode;
	int nreq;
	struct saved_req last;
	uint64_t pending[PENDING_MAX];
	int npending;
	uint64_t closed[CLOSED_MAX];
	int nclosed;
	ev_timer async_timer;
	double async_delay;
};

struct resp {
	int status;
	int nhdr;
	char name[RESP_HDR_MAX][RESP_NAME_MAX];
	char value[RESP_HDR_MAX][RESP_VALUE_MAX];
	char *body;
	size_t body_len;
};

struct client {
	int fd;
	http_parser p;
	bool head; /* the requests are HEAD: responses have no body */
	struct resp r[RESP_MAX];
	int n; /* complete responses */
	bool in_value;
	bool eof;
	bool parse_error;
};

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void copy_view(char *dst, size_t dstlen, struct strview v)
{
	size_t n = v.len < dstlen - 1 ? v.len : dstlen - 1;
	memcpy(dst, v.base, n);
	dst[n] = '\0';
}

/* ---- server side ------------------------------------------------------ */

static void save_req(struct fx *f, const struct http_request *req)
{
	struct saved_req *s = &f->last;
	s->method = req->method;
	copy_view(s->path, sizeof(s->path), req->path);
	s->path_len = req->path.len;
	copy_view(s->query, sizeof(s->query), req->query);
	assert_true(req->body.len < SAVED_MAX);
	memcpy(s->body, req->body.base, req->body.len);
	s->body[req->body.len] = '\0';
	s->body_len = req->body.len;
	copy_view(s->auth, sizeof(s->auth), req->authorization);
	copy_view(s->ctype, sizeof(s->ctype), req->content_type);
	copy_view(s->origin, sizeof(s->origin), req->origin);
	s->keep_alive = req->keep_alive;
	s->conn_id = req->conn_id;
}

/* "<path>?<query>|<body>" lets tests check what the handler saw. */
static void echo(struct http_conn *c, const struct http_request *req)
{
	size_t cap = req->path.len + req->query.len + req->body.len + 8;
	char *out = malloc(cap);
	assert_non_null(out);
	int n = snprintf(out, cap, "%.*s?%.*s|%.*s", (int)req->path.len,
			 req->path.base, (int)req->query.len, req->query.base,
			 (int)req->body.len, req->body.base);
	http_respond(c, 200, "text/plain", "X-Test: 1\r\n", out, (size_t)n);
	free(out);
}

static void handler(struct http_server *s, struct http_conn *c,
		    const struct http_request *req, void *ud)
{
	struct fx *f = ud;
	assert_ptr_equal(s, f->srv);
	assert_ptr_equal(http_server_conn(s, req->conn_id), c);
	assert_int_equal(http_conn_id(c), req->conn_id);
	assert_non_null(req->path.base);
	assert_non_null(req->query.base);
	assert_non_null(req->body.base);
	f->nreq++;
	save_req(f, req);
	if (strview_eq(req->path, "/err")) {
		http_respond_error(c, 404, "NOT_FOUND", "Node \"x\" not found",
				   "{\"id\":\"x\"}");
		return;
	}
	if (strview_eq(req->path, "/big")) {
		/* Sent and the connection idle before we return: the
		 * request's views must still be readable (ASan checks). */
		static char big[BIG_RESPONSE];
		memset(big, 'x', sizeof(big));
		http_respond(c, 200, "text/plain", NULL, big, sizeof(big));
		save_req(f, req);
		return;
	}
	switch (f->mode) {
	case MODE_ECHO:
		echo(c, req);
		break;
	case MODE_ASYNC:
		assert_true(f->npending < PENDING_MAX);
		f->pending[f->npending++] = req->conn_id;
		if (f->async_delay > 0 && !ev_is_active(&f->async_timer)) {
			ev_timer_set(&f->async_timer, f->async_delay, 0.);
			ev_timer_start(f->loop, &f->async_timer);
		}
		break;
	case MODE_STREAM:
		assert_int_equal(
		    http_stream_begin(c, 200, "text/event-stream",
				      "Cache-Control: no-cache\r\n"),
		    0);
		assert_int_equal(http_stream_write(c, "data: 1\n\n", 9), 0);
		assert_true(f->npending < PENDING_MAX);
		f->pending[f->npending++] = req->conn_id;
		break;
	}
}

/* Answers every pending async request that still has a connection. */
static void async_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fx *f = w->data;
	(void)loop;
	(void)revents;
	for (int i = 0; i < f->npending; i++) {
		struct http_conn *c = http_server_conn(f->srv, f->pending[i]);
		if (c)
			http_respond(c, 202, "text/plain", NULL, "later", 5);
	}
	f->npending = 0;
}

static void on_close(struct http_server *s, uint64_t id, void *ud)
{
	struct fx *f = ud;
	assert_ptr_equal(s, f->srv);
	assert_null(http_server_conn(s, id));
	if (f->nclosed < CLOSED_MAX)
		f->closed[f->nclosed++] = id;
}

static void fx_start(struct fx *f, const struct http_server_config *cfg)
{
	char err[256] = "";
	struct http_server_config dflt = {.host = "127.0.0.1"};
	if (f->srv)
		http_server_free(f->srv);
	f->srv = http_server_new(f->loop, cfg ? cfg : &dflt, handler, f, err,
				 sizeof(err));
	if (!f->srv)
		fail_msg("http_server_new: %s", err);
	http_server_set_close_cb(f->srv, on_close);
	f->port = http_server_port(f->srv);
	assert_true(f->port > 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->last.body = malloc(SAVED_MAX);
	assert_non_null(f->last.body);
	f->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(f->loop);
	ev_init(&f->async_timer, async_timer_cb);
	f->async_timer.data = f;
	fx_start(f, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	ev_timer_stop(f->loop, &f->async_timer);
	http_server_free(f->srv);
	ev_loop_destroy(f->loop);
	free(f->last.body);
	free(f);
	return 0;
}

/* ---- client side ------------------------------------------------------ */

static int rc_begin(http_parser *p)
{
	struct client *cl = p->data;
	if (cl->n >= RESP_MAX)
		return -1;
	memset(&cl->r[cl->n], 0, sizeof(cl->r[cl->n]));
	cl->in_value = false;
	return 0;
}

static void append_str(char *dst, size_t dstlen, const char *at, size_t len)
{
	size_t have = strlen(dst);
	size_t n = len < dstlen - 1 - have ? len : dstlen - 1 - have;
	memcpy(dst + have, at, n);
	dst[have + n] = '\0';
}

static int rc_field(http_parser *p, const char *at, size_t len)
{
	struct client *cl = p->data;
	struct resp *r = &cl->r[cl->n];
	if (cl->in_value || r->nhdr == 0) {
		if (r->nhdr == RESP_HDR_MAX)
			return -1;
		r->nhdr++;
		cl->in_value = false;
	}
	append_str(r->name[r->nhdr - 1], RESP_NAME_MAX, at, len);
	return 0;
}

static int rc_value(http_parser *p, const char *at, size_t len)
{
	struct client *cl = p->data;
	struct resp *r = &cl->r[cl->n];
	cl->in_value = true;
	append_str(r->value[r->nhdr - 1], RESP_VALUE_MAX, at, len);
	return 0;
}

static int rc_headers_complete(http_parser *p)
{
	struct client *cl = p->data;
	cl->r[cl->n].status = (int)p->status_code;
	/* 1 = no body (answer to HEAD) */
	return cl->head && p->status_code >= 200 ? 1 : 0;
}

static int rc_body(http_parser *p, const char *at, size_t len)
{
	struct client *cl = p->data;
	struct resp *r = &cl->r[cl->n];
	char *nb = realloc(r->body, r->body_len + len + 1);
	if (!nb)
		return -1;
	memcpy(nb + r->body_len, at, len);
	r->body = nb;
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return 0;
}

static int rc_complete(http_parser *p)
{
	struct client *cl = p->data;
	cl->n++;
	return 0;
}

static const http_parser_settings client_settings = {
    .on_message_begin = rc_begin,
    .on_header_field = rc_field,
    .on_header_value = rc_value,
    .on_headers_complete = rc_headers_complete,
    .on_body = rc_body,
    .on_message_complete = rc_complete,
};

/* Connects from source address `src` (any 127/8 address is loopback on
 * Linux, so tests can be several clients). */
static void client_open_from(struct fx *f, struct client *cl, const char *src)
{
	struct sockaddr_in sa;
	memset(cl, 0, sizeof(*cl));
	cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(cl->fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, src, &sa.sin_addr), 1);
	assert_int_equal(bind(cl->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)f->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(cl->fd, (struct sockaddr *)&sa, sizeof(sa)),
			 0);
	http_parser_init(&cl->p, HTTP_RESPONSE);
	cl->p.data = cl;
}

static void client_open(struct fx *f, struct client *cl)
{
	client_open_from(f, cl, "127.0.0.1");
}

static void client_close(struct client *cl)
{
	if (cl->fd >= 0)
		close(cl->fd);
	cl->fd = -1;
	for (int i = 0; i < RESP_MAX; i++) {
		free(cl->r[i].body);
		cl->r[i].body = NULL;
	}
}

/* Reads what is there and feeds the response parser. */
static void client_pump(struct client *cl)
{
	char buf[65536];
	while (cl->fd >= 0 && !cl->eof && !cl->parse_error) {
		ssize_t n = recv(cl->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			/* EOF, or a reset after the server closed */
			cl->eof = true;
			http_parser_execute(&cl->p, &client_settings, buf, 0);
			return;
		}
		size_t m = http_parser_execute(&cl->p, &client_settings, buf,
					       (size_t)n);
		if (m != (size_t)n || HTTP_PARSER_ERRNO(&cl->p) != HPE_OK) {
			cl->parse_error = true;
			fail_msg(
			    "client parser: %s",
			    http_errno_description(HTTP_PARSER_ERRNO(&cl->p)));
		}
	}
}

/* One turn of the server loop plus the client's reads. */
static void spin(struct fx *f, struct client *cl)
{
	struct pollfd pfd = {.fd = cl ? cl->fd : -1, .events = POLLIN};
	ev_run(f->loop, EVRUN_NOWAIT);
	poll(&pfd, 1, 1);
	ev_run(f->loop, EVRUN_NOWAIT);
	if (cl)
		client_pump(cl);
}

static void client_send(struct fx *f, struct client *cl, const char *data,
			size_t len)
{
	double deadline = mono() + TEST_DEADLINE;
	while (len) {
		ssize_t n =
		    send(cl->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			spin(f, cl);
			if (mono() > deadline)
				fail_msg("send: timed out");
			continue;
		}
		return; /* the server closed early (e.g. after a 431) */
	}
}

static void client_sends(struct fx *f, struct client *cl, const char *s)
{
	client_send(f, cl, s, strlen(s));
}

static void wait_responses(struct fx *f, struct client *cl, int n)
{
	double deadline = mono() + TEST_DEADLINE;
	while (cl->n < n) {
		if (cl->eof)
			fail_msg("EOF after %d of %d responses", cl->n, n);
		if (mono() > deadline)
			fail_msg("timed out with %d of %d responses", cl->n, n);
		spin(f, cl);
	}
}

static void wait_eof(struct fx *f, struct client *cl)
{
	double deadline = mono() + TEST_DEADLINE;
	while (!cl->eof) {
		if (mono() > deadline)
			fail_msg("timed out waiting for EOF");
		spin(f, cl);
	}
}

static void run_for(struct fx *f, struct client *cl, double secs)
{
	double end = mono() + secs;
	while (mono() < end)
		spin(f, cl);
}

static void wait_active(struct fx *f, uint64_t n)
{
	double deadline = mono() + TEST_DEADLINE;
	while (http_server_counters(f->srv)->active != n) {
		if (mono() > deadline)
			fail_msg("timed out waiting for %llu connections",
				 (unsigned long long)n);
		spin(f, NULL);
	}
}

static void wait_pending(struct fx *f, int n)
{
	double deadline = mono() + TEST_DEADLINE;
	while (f->npending != n) {
		if (mono() > deadline)
			fail_msg("timed out waiting for %d pending requests",
				 n);
		spin(f, NULL);
	}
}

static const char *hdr(const struct resp *r, const char *name)
{
	for (int i = 0; i < r->nhdr; i++)
		if (!strcasecmp(r->name[i], name))
			return r->value[i];
	return NULL;
}

static void assert_hdr(const struct resp *r, const char *name,
		       const char *value)
{
	const char *v = hdr(r, name);
	if (!v)
		fail_msg("header %s missing", name);
	assert_string_equal(v, value);
}

static const char *body(const struct resp *r)
{
	return r->body ? r->body : "";
}

/* One request on a fresh connection; returns the client for inspection. */
static void one_shot(struct fx *f, struct client *cl, const char *req)
{
	client_open(f, cl);
	client_sends(f, cl, req);
	wait_responses(f, cl, 1);
}

static void assert_layer_error(struct fx *f, const char *req, int status,
			       const char *code)
{
	struct client cl;
	one_shot(f, &cl, req);
	assert_int_equal(cl.r[0].status, status);
	assert_hdr(&cl.r[0], "Content-Type", "application/json");
	assert_hdr(&cl.r[0], "Connection", "close");
	assert_hdr(&cl.r[0], "Access-Control-Allow-Origin", "*");
	char want[64];
	snprintf(want, sizeof(want), "\"code\":\"%s\"", code);
	if (!strstr(body(&cl.r[0]), want))
		fail_msg("body %s lacks %s", body(&cl.r[0]), want);
	assert_non_null(strstr(body(&cl.r[0]), "{\"success\":false,"));
	wait_eof(f, &cl);
	client_close(&cl);
}

/* A new connection from 127.0.0.1 is refused at accept: 503 with `want`
 * as the body (NULL: any), then closed. */
static void assert_refused(struct fx *f, const char *want)
{
	struct client cl;
	client_open(f, &cl);
	wait_responses(f, &cl, 1);
	assert_int_equal(cl.r[0].status, 503);
	if (want)
		assert_string_equal(body(&cl.r[0]), want);
	assert_hdr(&cl.r[0], "Connection", "close");
	assert_hdr(&cl.r[0], "Access-Control-Allow-Origin", "*");
	wait_eof(f, &cl);
	client_close(&cl);
}

/* ---- tests ------------------------------------------------------------ */

static void test_simple_get(void **state)
{
	struct fx *f = *state;
	struct client cl;
	one_shot(f, &cl, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_int_equal(cl.r[0].status, 200);
	assert_string_equal(body(&cl.r[0]), "/hello?|");
	assert_hdr(&cl.r[0], "Content-Length", "8");
	assert_hdr(&cl.r[0], "Content-Type", "text/plain");
	assert_hdr(&cl.r[0], "Connection", "keep-alive");
	assert_hdr(&cl.r[0], "Access-Control-Allow-Origin", "*");
	assert_hdr(&cl.r[0], "X-Test", "1");
	const char *date = hdr(&cl.r[0], "Date");
	assert_non_null(date);
	assert_int_equal(strlen(date), 29);
	assert_non_null(strstr(date, " GMT"));
	assert_int_equal(f->nreq, 1);
	assert_int_equal(f->last.method, HTTP_GET);
	assert_false(cl.eof);
	const struct http_counters *k = http_server_counters(f->srv);
	assert_int_equal(k->accepted, 1);
	assert_int_equal(k->active, 1);
	assert_int_equal(k->requests, 1);
	assert_int_equal(k->responses, 1);
	client_close(&cl);
	wait_active(f, 0);
}

static void test_request_fields(void **state)
{
	struct fx *f = *state;
	struct client cl;
	one_shot(f, &cl,
		 "POST /api/cluster/register?a=1&b=%20x HTTP/1.1\r\n"
		 "Host: x\r\n"
		 "content-type: application/json  \r\n"
		 "AUTHORIZATION: Bearer tok\r\n"
		 "Origin: http://localhost:4400\r\n"
		 "Content-Length: 13\r\n"
		 "\r\n"
		 "{\"id\":\"abc\"}\n");
	assert_int_equal(cl.r[0].status, 200);
	assert_int_equal(f->last.method, HTTP_POST);
	assert_string_equal(f->last.path, "/api/cluster/register");
	assert_string_equal(f->last.query, "a=1&b=%20x");
	assert_string_equal(f->last.body, "{\"id\":\"abc\"}\n");
	assert_string_equal(f->last.ctype, "application/json");
	assert_string_equal(f->last.auth, "Bearer tok");
	assert_string_equal(f->last.origin, "http://localhost:4400");
	assert_true(f->last.keep_alive);
	assert_true(f->last.conn_id != 0);
	client_close(&cl);

	/* absent headers are empty, absolute-form targets give their path */
	one_shot(f, &cl, "GET http://example.com/x/y?q HTTP/1.1\r\n\r\n");
	assert_int_equal(cl.r[0].status, 200);
	assert_string_equal(f->last.path, "/x/y");
	assert_string_equal(f->last.query, "q");
	assert_string_equal(f->last.auth, "");
	assert_string_equal(f->last.ctype, "");
	assert_int_equal(f->last.body_len, 0);
	client_close(&cl);
}

static void test_percent_decoding(void **state)
{
	struct fx *f = *state;
	struct client cl;
	one_shot(f, &cl, "GET /a%20b/%41%2f+c?x=%20 HTTP/1.1\r\n\r\n");
	assert_int_equal(cl.r[0].status, 200);
	assert_string_equal(f->last.path, "/a b/A/+c");
	assert_string_equal(f->last.query, "x=%20");
	client_close(&cl);

	assert_layer_error(f, "GET /a%zz HTTP/1.1\r\n\r\n", 400, "BAD_REQUEST");
	assert_layer_error(f, "GET /a%4 HTTP/1.1\r\n\r\n", 400, "BAD_REQUEST");
	assert_layer_error(f, "GET /a%00b HTTP/1.1\r\n\r\n", 400,
			   "BAD_REQUEST");
	assert_layer_error(f, "GET * HTTP/1.1\r\n\r\n", 400, "BAD_REQUEST");
	assert_int_equal(f->nreq, 1);
	assert_int_equal(http_server_counters(f->srv)->parse_errors, 4);

	char out[32];
	size_t n;
	assert_int_equal(http_url_decode(out, "a+b%3D%3d", 9, &n, true), 0);
	assert_int_equal(n, 5);
	assert_memory_equal(out, "a b==", 5);
	assert_int_equal(http_url_decode(out, "%", 1, &n, false), -EINVAL);
	assert_int_equal(http_url_decode(out, "%g0", 3, &n, false), -EINVAL);
}

static void test_keep_alive(void **state)
{
	struct fx *f = *state;
	struct client cl;
	client_open(f, &cl);
	client_sends(f, &cl, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
	wait_responses(f, &cl, 1);
	client_sends(f, &cl, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n");
	wait_responses(f, &cl, 2);
	assert_string_equal(body(&cl.r[0]), "/one?|");
	assert_string_equal(body(&cl.r[1]), "/two?|");
	assert_hdr(&cl.r[1], "Connection", "keep-alive");
	assert_int_equal(http_server_counters(f->srv)->accepted, 1);
	/* "Connection: close" ends it */
	client_sends(f, &cl,
		     "GET /three HTTP/1.1\r\nConnection: close\r\n\r\n");
	wait_responses(f, &cl, 3);
	assert_hdr(&cl.r[2], "Connection", "close");
	assert_false(f->last.keep_alive);
	wait_eof(f, &cl);
	client_close(&cl);

	/* HTTP/1.0 closes by default ... */
	one_shot(f, &cl, "GET /old HTTP/1.0\r\n\r\n");
	assert_hdr(&cl.r[0], "Connection", "close");
	wait_eof(f, &cl);
	client_close(&cl);
	/* ... and stays with "Connection: keep-alive" */
	client_open(f, &cl);
	client_sends(f, &cl,
		     "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	wait_responses(f, &cl, 1);
	assert_hdr(&cl.r[0], "Connection", "keep-alive");
	client_sends(f, &cl,
		     "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	wait_responses(f, &cl, 2);
	assert_string_equal(body(&cl.r[1]), "/b?|");
	client_close(&cl);
}

static void test_pipelining(void **state)
{
	struct fx *f = *state;
	struct client cl;
	client_open(f, &cl);
	client_sends(f, &cl,
		     "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
		     "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"
		     "abcd"
		     "GET /3?z HTTP/1.1\r\nHost: x\r\n\r\n");
	wait_responses(f, &cl, 3);
	assert_string_equal(body(&cl.r[0]), "/1?|");
	assert_string_equal(body(&cl.r[1]), "/2?|abcd");
	assert_string_equal(body(&cl.r[2]), "/3?z|");
	assert_int_equal(f->nreq, 3);
	assert_false(cl.eof);
	client_close(&cl);
}

static void test_async_response(void **state)
{
	struct fx *f = *state;
	struct client cl;
	f->mode = MODE_ASYNC;
	f->async_delay = 0.05;
	client_open(f, &cl);
	/* two pipelined: the second must wait for the first's answer */
	client_sends(f, &cl,
		     "GET /first HTTP/1.1\r\n\r\nGET /second HTTP/1.1\r\n\r\n");
	double deadline = mono() + TEST_DEADLINE;
	while (f->nreq < 1 && mono() < deadline)
		spin(f, &cl);
	assert_int_equal(f->nreq, 1);
	assert_string_equal(f->last.path, "/first");
	assert_int_equal(cl.n, 0);
	wait_responses(f, &cl, 1);
	assert_int_equal(cl.r[0].status, 202);
	assert_string_equal(body(&cl.r[0]), "later");
	wait_responses(f, &cl, 2);
	assert_int_equal(f->nreq, 2);
	assert_string_equal(f->last.path, "/second");
	assert_int_equal(cl.r[1].status, 202);
	assert_false(cl.eof);

	/* a handler that answers later, from outside any http callback */
	f->async_delay = 0;
	client_sends(f, &cl, "GET /third HTTP/1.1\r\n\r\n");
	while (f->npending < 1 && mono() < deadline)
		spin(f, &cl);
	assert_int_equal(f->npending, 1);
	struct http_conn *c = http_server_conn(f->srv, f->pending[0]);
	assert_non_null(c);
	http_respond(c, 200, NULL, NULL, "ok", 2);
	/* a second answer to the same request is dropped */
	http_respond(c, 200, NULL, NULL, "twice", 5);
	f->npending = 0;
	wait_responses(f, &cl, 3);
	assert_string_equal(body(&cl.r[2]), "ok");
	run_for(f, &cl, 0.05);
	assert_int_equal(cl.n, 3);
	client_close(&cl);
}

/* Responses are sent just before the loop polls; one given after the
 * loop's last run (the api's 503s at shutdown) still goes out when the
 * server is freed, before its connection closes. */
static void test_response_flushed_at_free(void **state)
{
	struct fx *f = *state;
	struct client cl;
	f->mode = MODE_ASYNC;
	f->async_delay = 0;
	client_open(f, &cl);
	client_sends(f, &cl, "GET /last HTTP/1.1\r\n\r\n");
	double deadline = mono() + TEST_DEADLINE;
	while (f->npending < 1 && mono() < deadline)
		spin(f, &cl);
	assert_int_equal(f->npending, 1);
	http_respond(http_server_conn(f->srv, f->pending[0]), 503, NULL, NULL,
		     "bye", 3);
	f->npending = 0;
	http_server_free(f->srv);
	f->srv = NULL;
	while (!cl.eof && mono() < deadline)
		client_pump(&cl);
	assert_int_equal(cl.n, 1);
	assert_int_equal(cl.r[0].status, 503);
	assert_string_equal(body(&cl.r[0]), "bye");
	client_close(&cl);
}

static void test_conn_lookup_after_close(void **state)
{
	struct fx *f = *state;
	struct client cl;
	f->mode = MODE_ASYNC;
	client_open(f, &cl);
	client_sends(f, &cl, "GET /wait HTTP/1.1\r\n\r\n");
	double deadline = mono() + TEST_DEADLINE;
	while (f->npending < 1 && mono() < deadline)
		spin(f, &cl);
	uint64_t id = f->pending[0];
	assert_non_null(http_server_conn(f->srv, id));
	client_close(&cl);
	while (http_server_conn(f->srv, id) && mono() < deadline)
		spin(f, NULL);
	assert_null(http_server_conn(f->srv, id));
	wait_active(f, 0);
	assert_int_equal(f->nclosed, 1);
	assert_true(f->closed[0] == id);
	assert_null(http_server_conn(f->srv, 0));
	assert_null(http_server_conn(f->srv, id + 1000));
	/* the async timer finds nothing to answer */
	async_timer_cb(f->loop, &f->async_timer, 0);
}

static void test_body_too_large(void **state)
{
	struct fx *f = *state;
	struct client cl;
	/* refused from the head alone: the body is never sent */
	one_shot(f, &cl,
		 "POST /big HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n");
	assert_int_equal(cl.r[0].status, 413);
	assert_string_equal(
	    body(&cl.r[0]),
	    "{\"success\":false,\"error\":\"Payload Too Large\","
	    "\"message\":\"Request body exceeds 65536 bytes\","
	    "\"code\":\"PAYLOAD_TOO_LARGE\",\"details\":{\"limit\":65536}}");
	assert_hdr(&cl.r[0], "Connection", "close");
	wait_eof(f, &cl);
	client_close(&cl);
	assert_int_equal(f->nreq, 0);
	assert_int_equal(http_server_counters(f->srv)->too_large, 1);

	/* exactly body_max is fine */
	size_t n = HTTP_BODY_MAX_DEFAULT;
	char *req = malloc(n + 128);
	assert_non_null(req);
	int h = sprintf(req,
			"POST /max HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n);
	memset(req + h, 'b', n);
	client_open(f, &cl);
	client_send(f, &cl, req, (size_t)h + n);
	wait_responses(f, &cl, 1);
	assert_int_equal(cl.r[0].status, 200);
	assert_int_equal(f->last.body_len, n);
	client_close(&cl);
	free(req);

	/* chunked bodies are counted as they arrive */
	struct http_server_config cfg = {.host = "127.0.0.1", .body_max = 100};
	fx_start(f, &cfg);
	client_open(f, &cl);
	client_sends(f, &cl,
		     "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "40\r\n");
	for (int i = 0; i < 0x40; i++)
		client_sends(f, &cl, "x");
	client_sends(f, &cl, "\r\n40\r\n");
	for (int i = 0; i < 0x40; i++)
		client_sends(f, &cl, "y");
	client_sends(f, &cl, "\r\n0\r\n\r\n");
	wait_responses(f, &cl, 1);
	assert_int_equal(cl.r[0].status, 413);
	assert_non_null(strstr(body(&cl.r[0]), "\"details\":{\"limit\":100}"));
	wait_eof(f, &cl);
	client_close(&cl);
	assert_int_equal(http_server_counters(f->srv)->too_large, 1);
}

static void test_headers_too_large(void **state)
{
	struct fx *f = *state;
	size_t big = HTTP_HEADER_MAX + 100;
	char *req = malloc(big + 256);
	assert_non_null(req);
	int h = sprintf(req, "GET / HTTP/1.1\r\nX-Big: ");
	memset(req + h, 'a', big);
	strcpy(req + h + big, "\r\n\r\n");
	assert_layer_error(f, req, 431, "HEADERS_TOO_LARGE");

	/* many small headers count too; and a head that never ends */
	char *p = req + sprintf(req, "GET / HTTP/1.1\r\n");
	while ((size_t)(p - req) < HTTP_HEADER_MAX + 200)
		p += sprintf(p, "X-H: 0123456789\r\n");
	struct client cl;
	client_open(f, &cl);
	client_send(f, &cl, req, (size_t)(p - req));
	wait_responses(f, &cl, 1);
	assert_int_equal(cl.r[0].status, 431);
	assert_non_null(
	    strstr(body(&cl.r[0]), "\"code\":\"HEADERS_TOO_LARGE\""));
	assert_non_null(strstr(body(&cl.r[0]), "\"details\":{\"limit\":8192}"));
	wait_eof(f, &cl);
	client_close(&cl);
	assert_int_equal(http_server_counters(f->srv)->header_too_large, 2);
	assert_int_equal(f->nreq, 0);
	free(req);

	/* just under the bound passes */
	req = malloc(HTTP_HEADER_MAX + 64);
	assert_non_null(req);
	h = sprintf(req, "GET /ok HTTP/1.1\r\nX-Big: ");
	size_t fill = HTTP_HEADER_MAX - (size_t)h - 4;
	memset(req + h, 'a', fill);
	strcpy(req + h + fill, "\r\n\r\n");
	assert_int_equal(strlen(req), HTTP_HEADER_MAX);
	one_shot(f, &cl, req);
	assert_int_equal(cl.r[0].status, 200);
	client_close(&cl);
	/* one byte more does not */
	memset(req + h, 'a', fill + 1);
	strcpy(req + h + fill + 1, "\r\n\r\n");
	assert_int_equal(strlen(req), HTTP_HEADER_MAX + 1);
	assert_layer_error(f, req, 431, "HEADERS_TOO_LARGE");
	free(req);
}

/* An Upgrade is served as a plain request, then the connection closes (the
 * parser would treat what follows as another protocol); CONNECT has no
 * path. */
static void test_upgrade_and_connect(void **state)
{
	struct fx *f = *state;
	struct client cl;
	one_shot(f, &cl,
		 "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\n"
		 "Upgrade: websocket\r\n\r\n");
	assert_int_equal(cl.r[0].status, 200);
	assert_hdr(&cl.r[0], "Connection", "close");
	assert_false(f->last.keep_alive);
	wait_eof(f, &cl);
	client_close(&cl);
	assert_layer_error(f, "CONNECT example.com:443 HTTP/1.1\r\n\r\n", 400,
			   "BAD_REQUEST");
	/* a HEAD that fails gets no body either */
	client_open(f, &cl);
	cl.head = true;
	client_sends(f, &cl, "HEAD /%zz HTTP/1.1\r\n\r\n");
	wait_responses(f, &cl, 1);
	assert_int_equal(cl.r[0].status, 400);
	assert_int_equal(cl.r[0].body_len, 0);
	wait_eof(f, &cl);
	client_close(&cl);
}

static void test_uri_too_long(void **state)
{
	struct fx *f = *state;
	char *req = malloc(HTTP_URL_MAX + 128);
	assert_non_null(req);
	char *p = req + sprintf(req, "GET /");
	memset(p, 'u', HTTP_URL_MAX + 10);
	strcpy(p + HTTP_URL_MAX + 10, " HTTP/1.1\r\n\r\n");
	assert_layer_error(f, req, 414, "URI_TOO_LONG");
	assert_int_equal(http_server_counters(f->srv)->uri_too_long, 1);
	assert_int_equal(f->nreq, 0);
	free(req);
}

static void test_bad_requests(void **state)
{
	struct fx *f = *state;
	assert_layer_error(f, "garbage\r\n\r\n", 400, "BAD_REQUEST");
	assert_layer_error(f, "GET / HTTP/1.1\r\nHost x\r\n\r\n", 400,
			   "BAD_REQUEST");
	assert_layer_error(f,
			   "POST / HTTP/1.1\r\nContent-Length: 5\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			   400, "BAD_REQUEST");
	assert_layer_error(f,
			   "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
			   "Content-Length: 5\r\n\r\n0\r\n\r\n",
			   400, "BAD_REQUEST");
	assert_layer_error(f, "POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n",
			   400, "BAD_REQUEST");
	assert_layer_error(f,
			   "POST / HTTP/1.1\r\nContent-Length: 1\r\n"
			   "Content-Length: 2\r\n\r\nab",
			   400, "BAD_REQUEST");
	assert_layer_error(f,
			   "GET / HTTP/1.1\r\nAuthorization: a\r\n"
			   "Authorization: b\r\n\r\n",
			   400, "BAD_REQUEST");
	assert_layer_error(f,
			   "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
			   400, "BAD_REQUEST");
	assert_layer_error(
	    f,
	    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "zz\r\n",
	    400, "BAD_REQUEST");
	assert_int_equal(f->nreq, 0);
	assert_int_equal(http_server_counters(f->srv)->parse_errors, 9);

	/* the error follows earlier answers on the same connection */
	struct client cl;
	client_open(f, &cl);
	client_sends(f, &cl, "GET /fine HTTP/1.1\r\n\r\nBAD STUFF\r\n\r\n");
	wait_responses(f, &cl, 2);
	assert_int_equal(cl.r[0].status, 200);
	assert_int_equal(cl.r[1].status, 400);
	assert_string_equal(
	    body(&cl.r[1]),
	    "{\"success\":false,\"error\":\"Bad Request\",\"message\":"
	    "\"Malformed request: invalid HTTP method\",\"code\":"
	    "\"BAD_REQUEST\",\"details\":{}}");
	wait_eof(f, &cl);
	client_close(&cl);
}

static void test_chunked_body(void **state)
{
	struct fx *f = *state;
	struct client cl;
	client_open(f, &cl);
	client_sends(f, &cl,
		     "POST /chunks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
		     "\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n"
		     "X-Trailer: t\r\n\r\n"
		     "POST /again HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
		     "\r\n3\r\nabc\r\n0\r\n\r\n");
	wait_responses(f, &cl, 2);
	assert_string_equal(body(&cl.r[0]), "/chunks?|hello world");
	assert_string_equal(body(&cl.r[1]), "/again?|abc");
	client_close(&cl);
}

static void test_options_preflight(void **state)
{
	struct fx *f = *state;
	struct client cl;
	client_open(f, &cl);
	client_sends(f, &cl,
		     "OPTIONS /api/cluster/nodes HTTP/1.1\r\n"
		     "Origin: http://localhost:4400\r\n"
		     "Access-Control-Request-Method: POST\r\n\r\n");
	wait_responses(f, &cl, 1);
	struct resp *r = &cl.r[0];
	assert_int_equal(r->status, 204);
	assert_hdr(r, "Access-Control-Allow-Origin", "*");
	assert_hdr(r, "Access-Control-Allow-Methods",
		   "GET, POST, DELETE, OPTIONS");
	assert_hdr(r, "Access-Control-Allow-Headers",
		   "Content-Type, Authorization");
	assert_hdr(r, "Access-Control-Max-Age", "600");
	assert_null(hdr(r, "Content-Length"));
	assert_int_equal(r->body_len, 0);
	assert_int_equal(f->nreq, 0);
	/* the connection stays usable */
	client_sends(f, &cl, "GET /after HTTP/1.1\r\n\r\n");
	wait_responses(f, &cl, 2);
	assert_string_equal(body(&cl.r[1]), "/after?|");
	client_close(&cl);
}

static void test_conn_limit(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.host = "127.0.0.1", .conn_max = 2};
	struct client a, b, c;
	fx_start(f, &cfg);
	/* both connections busy: none idle to make room */
	f->mode = MODE_ASYNC;
	client_open(f, &a);
	client_open(f, &b);
	client_sends(f, &a, "GET /a HTTP/1.1\r\n\r\n");
	client_sends(f, &b, "GET /b HTTP/1.1\r\n\r\n");
	wait_pending(f, 2);
	assert_refused(
	    f, "{\"success\":false,\"error\":\"Service Unavailable\","
	       "\"message\":\"Too many connections (limit 2)\","
	       "\"code\":\"TOO_MANY_CONNECTIONS\",\"details\":{\"limit\":2}}");
	const struct http_counters *k = http_server_counters(f->srv);
	assert_int_equal(k->rejected_conn_limit, 1);
	assert_int_equal(k->rejected_client_limit, 0);
	assert_int_equal(k->evicted_idle, 0);
	assert_int_equal(k->accepted, 3);
	assert_int_equal(k->active, 2);
	/* the first two still get their answers, and a slot frees on close */
	async_timer_cb(f->loop, &f->async_timer, 0);
	wait_responses(f, &a, 1);
	assert_int_equal(a.r[0].status, 202);
	wait_responses(f, &b, 1);
	f->mode = MODE_ECHO;
	client_close(&b);
	wait_active(f, 1);
	one_shot(f, &c, "GET /c HTTP/1.1\r\n\r\n");
	assert_int_equal(c.r[0].status, 200);
	client_close(&c);
	client_close(&a);
}

static void test_conn_limit_evicts_idle(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.host = "127.0.0.1", .conn_max = 2};
	struct client a, b, c, d;
	fx_start(f, &cfg);
	f->mode = MODE_ASYNC;
	client_open(f, &a); /* idle: nothing sent */
	wait_active(f, 1);
	client_open(f, &b);
	client_sends(f, &b, "GET /busy HTTP/1.1\r\n\r\n");
	wait_pending(f, 1);
	/* full: the idle one makes room, the busy one is kept */
	client_open(f, &c);
	wait_eof(f, &a);
	assert_int_equal(a.n, 0);
	client_close(&a);
	const struct http_counters *k = http_server_counters(f->srv);
	assert_int_equal(k->evicted_idle, 1);
	assert_int_equal(k->rejected_conn_limit, 0);
	assert_int_equal(k->active, 2);
	async_timer_cb(f->loop, &f->async_timer, 0);
	wait_responses(f, &b, 1);
	assert_int_equal(b.r[0].status, 202);
	/* c has been idle longer than b (idle since its response): c goes */
	client_open(f, &d);
	wait_eof(f, &c);
	client_close(&c);
	assert_int_equal(k->evicted_idle, 2);
	f->mode = MODE_ECHO;
	client_sends(f, &b, "GET /b2 HTTP/1.1\r\n\r\n");
	wait_responses(f, &b, 2);
	assert_int_equal(b.r[1].status, 200);
	client_sends(f, &d, "GET /d HTTP/1.1\r\n\r\n");
	wait_responses(f, &d, 1);
	assert_int_equal(d.r[0].status, 200);
	/* a half-sent request is in progress, not idle */
	client_sends(f, &b, "GET /b3 HTTP/1.1\r\n");
	client_sends(f, &d, "GET /d2 HTTP/1.1\r\n");
	run_for(f, NULL, 0.05);
	assert_refused(f, NULL);
	assert_int_equal(k->evicted_idle, 2);
	assert_int_equal(k->rejected_conn_limit, 1);
	client_close(&b);
	client_close(&d);

	/* an open stream is not idle */
	cfg.conn_max = 1;
	fx_start(f, &cfg);
	f->mode = MODE_STREAM;
	f->npending = 0;
	client_open(f, &a);
	client_sends(f, &a, "GET /events HTTP/1.1\r\n\r\n");
	wait_pending(f, 1);
	assert_refused(f, NULL);
	k = http_server_counters(f->srv);
	assert_int_equal(k->evicted_idle, 0);
	assert_int_equal(k->active, 1);
	client_close(&a);
}

static void test_client_limit(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.host = "127.0.0.1",
					 .client_conn_max = 2};
	struct client a, b, c, d;
	fx_start(f, &cfg);
	client_open(f, &a);
	client_open(f, &b);
	wait_active(f, 2);
	/* the third from 127.0.0.1 is refused */
	assert_refused(
	    f, "{\"success\":false,\"error\":\"Service Unavailable\","
	       "\"message\":\"Too many connections from this client (limit "
	       "2)\",\"code\":\"TOO_MANY_CONNECTIONS\","
	       "\"details\":{\"limit\":2,\"scope\":\"client\"}}");
	/* ... another address is not */
	client_open_from(f, &d, "127.0.0.2");
	client_sends(f, &d, "GET /d HTTP/1.1\r\n\r\n");
	wait_responses(f, &d, 1);
	assert_int_equal(d.r[0].status, 200);
	const struct http_counters *k = http_server_counters(f->srv);
	assert_int_equal(k->rejected_client_limit, 1);
	assert_int_equal(k->rejected_conn_limit, 0);
	assert_int_equal(k->evicted_idle, 0);
	assert_int_equal(k->accepted, 4);
	assert_int_equal(k->active, 3);
	/* a closed connection gives the client its slot back */
	client_close(&a);
	wait_active(f, 2);
	one_shot(f, &c, "GET /c HTTP/1.1\r\n\r\n");
	assert_int_equal(c.r[0].status, 200);
	assert_int_equal(k->rejected_client_limit, 1);
	client_close(&c);
	client_close(&b);
	client_close(&d);
	wait_active(f, 0);
}

static void test_request_readable_after_immediate_answer(void **state)
{
	struct fx *f = *state;
	struct client cl;
	one_shot(f, &cl, "GET /big?q=1 HTTP/1.1\r\nOrigin: o\r\n\r\n");
	assert_int_equal(cl.r[0].status, 200);
	assert_int_equal(cl.r[0].body_len, BIG_RESPONSE);
	assert_string_equal(f->last.path, "/big");
	assert_string_equal(f->last.query, "q=1");
	assert_string_equal(f->last.origin, "o");
	/* and the idle connection serves the next request */
	client_sends(f, &cl, "GET /next HTTP/1.1\r\n\r\n");
	wait_responses(f, &cl, 2);
	assert_string_equal(body(&cl.r[1]), "/next?|");
	client_close(&cl);
}

static void test_idle_timeout(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.host = "127.0.0.1",
					 .idle_timeout = 0.2};
	struct client cl;
	fx_start(f, &cfg);

	/* a slow client trickling its head is closed at the timeout */
	client_open(f, &cl);
	double t0 = mono();
	const char *slow = "GET /slow HTTP/1.1\r\nX-Drip: aaaaaaaaaaaaaaaaaaaa";
	for (const char *p = slow; *p && !cl.eof; p++) {
		client_send(f, &cl, p, 1);
		run_for(f, &cl, 0.03);
	}
	wait_eof(f, &cl);
	double took = mono() - t0;
	assert_true(took >= 0.15);
	assert_true(took < 1.0);
	assert_int_equal(cl.n, 0);
	client_close(&cl);
	assert_int_equal(http_server_counters(f->srv)->timeouts, 1);

	/* an idle keep-alive connection after a response, too */
	client_open(f, &cl);
	client_sends(f, &cl, "GET /x HTTP/1.1\r\n\r\n");
	wait_responses(f, &cl, 1);
	t0 = mono();
	wait_eof(f, &cl);
	assert_true(mono() - t0 < 1.0);
	client_close(&cl);
	wait_active(f, 0);
	assert_int_equal(http_server_counters(f->srv)->timeouts, 2);
}

static void test_streaming(void **state)
{
	struct fx *f = *state;
	struct http_server_config cfg = {.host = "127.0.0.1",
					 .idle_timeout = 0.2};
	struct client cl;
	fx_start(f, &cfg);
	f->mode = MODE_STREAM;
	client_open(f, &cl);
	client_sends(f, &cl, "GET /events HTTP/1.1\r\n\r\n");
	double deadline = mono() + TEST_DEADLINE;
	while (f->npending < 1 && mono() < deadline)
		spin(f, &cl);
	assert_int_equal(f->npending, 1);
	/* longer than the idle timeout: streams are exempt */
	run_for(f, &cl, 0.5);
	assert_false(cl.eof);
	struct http_conn *c = http_server_conn(f->srv, f->pending[0]);
	assert_non_null(c);
	assert_int_equal(http_stream_write(c, "data: 2\n\n", 9), 0);
	/* not a plain response any more */
	http_respond(c, 200, NULL, NULL, "x", 1);
	http_stream_end(c);
	assert_int_equal(http_stream_write(c, "late", 4), -EINVAL);
	wait_eof(f, &cl);
	assert_int_equal(cl.n, 1);
	struct resp *r = &cl.r[0];
	assert_int_equal(r->status, 200);
	assert_hdr(r, "Content-Type", "text/event-stream");
	assert_hdr(r, "Cache-Control", "no-cache");
	assert_hdr(r, "Connection", "close");
	assert_hdr(r, "Access-Control-Allow-Origin", "*");
	assert_null(hdr(r, "Content-Length"));
	assert_string_equal(body(r), "data: 1\n\ndata: 2\n\n");
	client_close(&cl);
	wait_active(f, 0);
	assert_int_equal(http_server_counters(f->srv)->timeouts, 0);
}

static void test_stream_slow_peer(void **state)
{
	struct fx *f = *state;
	struct client cl;
	f->mode = MODE_STREAM;
	client_open(f, &cl);
	int small = 4096;
	setsockopt(cl.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	client_sends(f, &cl, "GET /events HTTP/1.1\r\n\r\n");
	double deadline = mono() + TEST_DEADLINE;
	while (f->npending < 1 && mono() < deadline)
		ev_run(f->loop, EVRUN_NOWAIT);
	struct http_conn *c = http_server_conn(f->srv, f->pending[0]);
	assert_non_null(c);
	/* the client never reads: the bound is hit, not memory */
	static char chunk[16 * 1024];
	memset(chunk, 'e', sizeof(chunk));
	int rc = 0;
	for (int i = 0; i < 4096 && rc == 0; i++) {
		rc = http_stream_write(c, chunk, sizeof(chunk));
		ev_run(f->loop, EVRUN_NOWAIT);
	}
	assert_int_equal(rc, -ENOBUFS);
	assert_true(http_server_counters(f->srv)->write_overflows >= 1);
	/* the peer vanishing turns writes into -EPIPE, then NULL lookups */
	uint64_t id = f->pending[0];
	client_close(&cl);
	while (http_server_conn(f->srv, id) && mono() < deadline) {
		rc = http_stream_write(c, "x", 1);
		assert_true(rc == 0 || rc == -ENOBUFS || rc == -EPIPE);
		spin(f, NULL);
	}
	assert_null(http_server_conn(f->srv, id));
	wait_active(f, 0);
}

static void test_head(void **state)
{
	struct fx *f = *state;
	struct client cl;
	client_open(f, &cl);
	cl.head = true;
	client_sends(f, &cl, "HEAD /h HTTP/1.1\r\n\r\n");
	wait_responses(f, &cl, 1);
	assert_int_equal(f->last.method, HTTP_HEAD);
	assert_int_equal(cl.r[0].status, 200);
	assert_hdr(&cl.r[0], "Content-Length", "4");
	/* no body bytes were sent: the next response parses cleanly */
	cl.head = false;
	client_sends(f, &cl, "GET /g HTTP/1.1\r\n\r\n");
	wait_responses(f, &cl, 2);
	assert_string_equal(body(&cl.r[1]), "/g?|");
	client_close(&cl);
}

static void test_expect_continue(void **state)
{
	struct fx *f = *state;
	struct client cl;
	client_open(f, &cl);
	client_sends(f, &cl,
		     "POST /e HTTP/1.1\r\nExpect: 100-continue\r\n"
		     "Content-Length: 5\r\n\r\n");
	wait_responses(f, &cl, 1);
	assert_int_equal(cl.r[0].status, 100);
	assert_int_equal(f->nreq, 0);
	client_sends(f, &cl, "12345");
	wait_responses(f, &cl, 2);
	assert_int_equal(cl.r[1].status, 200);
	assert_string_equal(body(&cl.r[1]), "/e?|12345");
	client_close(&cl);
}

static void test_handler_error_format(void **state)
{
	struct fx *f = *state;
	struct client cl;
	one_shot(f, &cl, "GET /err HTTP/1.1\r\n\r\n");
	assert_int_equal(cl.r[0].status, 404);
	assert_hdr(&cl.r[0], "Content-Type", "application/json");
	assert_hdr(&cl.r[0], "Connection", "keep-alive");
	assert_string_equal(
	    body(&cl.r[0]),
	    "{\"success\":false,\"error\":\"Not Found\","
	    "\"message\":\"Node \\\"x\\\" not found\","
	    "\"code\":\"NOT_FOUND\",\"details\":{\"id\":\"x\"}}");
	client_close(&cl);
}

static void test_half_close(void **state)
{
	struct fx *f = *state;
	struct client cl;
	client_open(f, &cl);
	client_sends(f, &cl, "GET /hc HTTP/1.1\r\n\r\n");
	shutdown(cl.fd, SHUT_WR);
	wait_responses(f, &cl, 1);
	assert_int_equal(cl.r[0].status, 200);
	wait_eof(f, &cl);
	client_close(&cl);
	wait_active(f, 0);
}

/* Delivered a byte at a time, a request still parses. */
static void test_byte_at_a_time(void **state)
{
	struct fx *f = *state;
	const char *req = "POST /slow?q=1 HTTP/1.1\r\nContent-Type: text/x\r\n"
			  "Transfer-Encoding: chunked\r\n\r\n"
			  "3\r\nabc\r\n0\r\n\r\n";
	struct client cl;
	client_open(f, &cl);
	for (const char *p = req; *p; p++) {
		client_send(f, &cl, p, 1);
		spin(f, &cl);
	}
	wait_responses(f, &cl, 1);
	assert_string_equal(body(&cl.r[0]), "/slow?q=1|abc");
	assert_string_equal(f->last.ctype, "text/x");
	client_close(&cl);
}

/* Every truncated prefix of a request, then EOF: no answer, no crash, no
 * connection left behind. */
static void test_truncated_prefixes(void **state)
{
	struct fx *f = *state;
	const char *req = "POST /p?x=%41 HTTP/1.1\r\nHost: h\r\n"
			  "Authorization: Bearer t\r\nContent-Length: 4\r\n"
			  "\r\nbody";
	size_t len = strlen(req);
	for (size_t k = 0; k < len; k++) {
		struct client cl;
		client_open(f, &cl);
		client_send(f, &cl, req, k);
		shutdown(cl.fd, SHUT_WR);
		wait_eof(f, &cl);
		assert_int_equal(cl.n, 0);
		client_close(&cl);
	}
	wait_active(f, 0);
	assert_int_equal(f->nreq, 0);
	assert_int_equal(http_server_counters(f->srv)->parse_errors, 0);
}

/* Random bytes, and random mutations of a valid request: any answer is a
 * well-formed response, and the server survives. */
static void test_garbage(void **state)
{
	struct fx *f = *state;
	const char *base = "POST /a/b?c=d HTTP/1.1\r\nContent-Length: 3\r\n"
			   "Transfer-Encoding: chunked\r\n\r\nabc";
	uint32_t seed = 12345;
	char buf[512];
	for (int round = 0; round < 200; round++) {
		size_t len;
		if (round % 2) {
			len = strlen(base);
			memcpy(buf, base, len);
			for (int m = 0; m < 3; m++) {
				seed = seed * 1103515245 + 12345;
				size_t at = (seed >> 8) % len;
				seed = seed * 1103515245 + 12345;
				buf[at] = (char)(seed >> 16);
			}
		} else {
			seed = seed * 1103515245 + 12345;
			len = 1 + (seed >> 8) % sizeof(buf);
			for (size_t i = 0; i < len; i++) {
				seed = seed * 1103515245 + 12345;
				buf[i] = (char)(seed >> 16);
			}
		}
		struct client cl;
		client_open(f, &cl);
		client_send(f, &cl, buf, len);
		shutdown(cl.fd, SHUT_WR);
		wait_eof(f, &cl);
		for (int i = 0; i < cl.n; i++)
			assert_true(cl.r[i].status >= 200 &&
				    cl.r[i].status < 600);
		client_close(&cl);
	}
	wait_active(f, 0);
}

static void test_server_new_errors(void **state)
{
	struct fx *f = *state;
	char err[256] = "";
	struct http_server_config cfg = {.host = "127.0.0.1", .port = f->port};
	assert_null(
	    http_server_new(f->loop, &cfg, handler, f, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot listen"));
	cfg.port = 70000;
	assert_null(
	    http_server_new(f->loop, &cfg, handler, f, err, sizeof(err)));
	assert_non_null(strstr(err, "port"));
	cfg.port = 0;
	cfg.host = "not an address";
	assert_null(
	    http_server_new(f->loop, &cfg, handler, f, err, sizeof(err)));
	cfg.host = "127.0.0.1";
	cfg.body_max = (size_t)HTTP_BODY_MAX_LIMIT + 1;
	assert_null(
	    http_server_new(f->loop, &cfg, handler, f, err, sizeof(err)));
	cfg.body_max = 0;
	assert_null(http_server_new(f->loop, &cfg, NULL, f, err, sizeof(err)));
	/* the server still serves */
	struct client cl;
	one_shot(f, &cl, "GET / HTTP/1.1\r\n\r\n");
	assert_int_equal(cl.r[0].status, 200);
	client_close(&cl);
}

/* Freeing the server with connections in every state leaks nothing
 * (checked under valgrind / ASan). */
static void test_free_with_open_conns(void **state)
{
	struct fx *f = *state;
	struct client a, b, c;
	f->mode = MODE_ASYNC;
	client_open(f, &a);
	client_sends(f, &a,
		     "GET /busy HTTP/1.1\r\n\r\nGET /queued HTTP/1.1\r\n\r\n");
	client_open(f, &b);
	client_sends(f, &b, "GET /partial HTTP/1.1\r\nHo");
	client_open(f, &c);
	double deadline = mono() + TEST_DEADLINE;
	while ((f->npending < 1 || http_server_counters(f->srv)->active < 3) &&
	       mono() < deadline)
		spin(f, NULL);
	assert_int_equal(f->npending, 1);
	client_close(&c);
	ev_run(f->loop, EVRUN_NOWAIT);
	http_server_free(f->srv);
	f->srv = NULL;
	client_close(&a);
	client_close(&b);
}

static void test_status_text(void **state)
{
	(void)state;
	assert_string_equal(http_status_text(200), "OK");
	assert_string_equal(http_status_text(404), "Not Found");
	assert_string_equal(http_status_text(413), "Payload Too Large");
	assert_string_equal(http_status_text(414), "URI Too Long");
	assert_string_equal(http_status_text(431),
			    "Request Header Fields Too Large");
	assert_string_equal(http_status_text(503), "Service Unavailable");
	assert_string_equal(http_status_text(799), "Unknown");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	log_set_level(LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    T(test_simple_get),
	    T(test_request_fields),
	    T(test_percent_decoding),
	    T(test_keep_alive),
	    T(test_pipelining),
	    T(test_async_response),
	    T(test_response_flushed_at_free),
	    T(test_conn_lookup_after_close),
	    T(test_body_too_large),
	    T(test_headers_too_large),
	    T(test_upgrade_and_connect),
	    T(test_uri_too_long),
	    T(test_bad_requests),
	    T(test_chunked_body),
	    T(test_options_preflight),
	    T(test_conn_limit),
	    T(test_conn_limit_evicts_idle),
	    T(test_client_limit),
	    T(test_request_readable_after_immediate_answer),
	    T(test_idle_timeout),
	    T(test_streaming),
	    T(test_stream_slow_peer),
	    T(test_head),
	    T(test_expect_continue),
	    T(test_handler_error_format),
	    T(test_half_close),
	    T(test_byte_at_a_time),
	    T(test_truncated_prefixes),
	    T(test_garbage),
	    T(test_server_new_errors),
	    T(test_free_with_open_conns),
	    T(test_status_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
