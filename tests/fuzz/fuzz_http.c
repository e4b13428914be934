/*
 * fuzz_http — the HTTP request path of src/api/http.c, driven for real: a
 * server on 127.0.0.1:<any> on a private libev loop (made once), and per
 * input one TCP client that writes the input, half-closes, and reads
 * whatever comes back until the server has closed the connection.
 *
 * Input: one control byte, then the bytes the client sends.
 *   control & 0x0f, control >> 4: two cut points, in sixteenths of the
 *   payload; the payload goes out in up to three writes with the loop run
 *   between them, so the parser sees requests split at arbitrary places.
 *
 * The handler answers every request, the way its path asks:
 *   /async...   later, from the driver, after the handler returned (the
 *               layer must then parse the pipelined requests behind it);
 *   /stream...  as a stream (http_stream_begin/write/end); /stream/big
 *               also writes more than HTTP_STREAM_WBUF_MAX (-ENOBUFS);
 *   /error...   http_respond_error with the raw query as the message;
 *   /big, /huge an 80 KB answer (output backpressure), one over
 *               HTTP_WBUF_MAX (replaced by a 500);
 *   /bad-status, /twice  API misuse the layer must absorb (status 99 ->
 *               500; a second answer is dropped);
 *   otherwise   at once, echoing the body (HEAD: headers only).
 *
 * Checks beyond the sanitizers:
 *   - the http_request contract (path absolute, no NUL, non-NULL views);
 *   - everything the server sends parses as HTTP/1.1 responses, and every
 *     application/json body among them parses as JSON;
 *   - the connection always ends (a hostile input cannot park it), within
 *     HTTP_FUZZ_WALL seconds, and the server is left with no connection
 *     open; nothing leaks from one input to the next (LeakSanitizer).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <http_parser.h>

#include "fuzz.h"
#include "proxystone/http.h"
#include "proxystone/json.h"
#include "proxystone/log.h"

/* Body bound of the server under test: small, so 413 is reachable with
 * inputs of a few KB (the runner's -max_len). */
#define HTTP_FUZZ_BODY_MAX 1024
/* Wall-clock bound on one input: every exchange is loopback-local and
 * takes well under a millisecond; a connection still open after this long
 * is a hang in the layer, reported as a crash. */
#define HTTP_FUZZ_WALL 5.0
/* Bytes the client keeps of the server's output, for the response check;
 * more is read and dropped. */
#define HTTP_FUZZ_RESP_MAX (1024 * 1024)
/* "/big" answers: past the socket buffers (the client's receive buffer is
 * HTTP_FUZZ_CLIENT_RCVBUF), so the layer queues output and waits for
 * writability, and one alone is past HTTP_WBUF_PAUSE (64 KB), so the next
 * pipelined request waits. */
#define HTTP_FUZZ_BIG (80 * 1024)
#define HTTP_FUZZ_CLIENT_RCVBUF 4096
/* Requests answered later, per input. */
#define HTTP_FUZZ_ASYNC_MAX 64
/* Extra header on answers to HEAD: the response checker then expects no
 * body after the head (http_parser cannot know the request's method). */
#define HEAD_MARK "X-Fuzz-Head: 1\r\n"

static struct ev_loop *loop;
static struct http_server *srv;
static int port;

static char *big;	/* HTTP_WBUF_MAX + 1 bytes of filler */
static uint64_t closes; /* close callbacks seen */
static struct {
	uint64_t conn_id;
	bool head;
} async_reqs[HTTP_FUZZ_ASYNC_MAX]; /* requests owed an answer */
static size_t n_async;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_http: %s (errno: %s)\n", what, strerror(errno));
	abort();
}

static void check_view(struct strview v, const char *what)
{
	if (!v.base)
		die(what);
	/* touch every byte: ASan checks the view lies inside live memory */
	volatile unsigned char sink = 0;
	for (size_t i = 0; i < v.len; i++)
		sink ^= (unsigned char)v.base[i];
	(void)sink;
}

static bool has_prefix(struct strview v, const char *p)
{
	size_t n = strlen(p);
	return v.len >= n && !memcmp(v.base, p, n);
}

static void on_request(struct http_server *s, struct http_conn *c,
		       const struct http_request *req, void *ud)
{
	(void)s;
	(void)ud;
	check_view(req->path, "path view");
	check_view(req->query, "query view");
	check_view(req->body, "body view");
	check_view(req->authorization, "authorization view");
	check_view(req->content_type, "content-type view");
	check_view(req->origin, "origin view");
	if (req->path.len == 0 || req->path.base[0] != '/')
		die("path is not absolute");
	if (memchr(req->path.base, '\0', req->path.len))
		die("path contains NUL");
	if (req->method == HTTP_OPTIONS)
		die("handler saw OPTIONS");

	bool head = req->method == HTTP_HEAD;
	if (has_prefix(req->path, "/async") && n_async < HTTP_FUZZ_ASYNC_MAX) {
		async_reqs[n_async].conn_id = req->conn_id;
		async_reqs[n_async].head = head;
		n_async++;
		return;
	}
	if (has_prefix(req->path, "/stream")) {
		if (http_stream_begin(c, 200, "text/event-stream", NULL))
			die("stream begin failed");
		http_stream_write(c, "data: a\n\n", 9);
		http_stream_write(c, req->body.base, req->body.len);
		if (has_prefix(req->path, "/stream/big") && !head &&
		    http_stream_write(c, big, HTTP_STREAM_WBUF_MAX + 1) !=
			-ENOBUFS)
			die("stream write past HTTP_STREAM_WBUF_MAX accepted");
		http_stream_end(c);
		return;
	}
	if (has_prefix(req->path, "/error") && !head) {
		/* the message is hostile text: it must come out as valid JSON
		 */
		char msg[1024];
		size_t n = req->query.len < sizeof(msg) - 1 ? req->query.len
							    : sizeof(msg) - 1;
		memcpy(msg, req->query.base, n);
		msg[n] = '\0';
		http_respond_error(c, 404, "NOT_FOUND", msg, NULL);
		return;
	}
	const char *mark = head ? HEAD_MARK : NULL;
	if (has_prefix(req->path, "/big")) {
		http_respond(c, 200, "text/plain", mark, big, HTTP_FUZZ_BIG);
		return;
	}
	if (has_prefix(req->path, "/huge")) {
		http_respond(c, 200, "text/plain", mark, big,
			     HTTP_WBUF_MAX + 1);
		return;
	}
	if (has_prefix(req->path, "/bad-status")) {
		http_respond(c, 99, "text/plain", mark, "x", 1);
		return;
	}
	if (has_prefix(req->path, "/twice")) {
		http_respond(c, 200, "text/plain", mark, "1", 1);
		http_respond(c, 200, "text/plain", mark, "2", 1);
		return;
	}
	/* HEAD: the layer sends the Content-Length of this body and no body;
	 * the header tells the response checker to expect none. */
	http_respond(c, 200, "application/octet-stream",
		     head ? HEAD_MARK : NULL, req->body.base, req->body.len);
}

static void on_close(struct http_server *s, uint64_t id, void *ud)
{
	(void)s;
	(void)id;
	(void)ud;
	closes++;
}

static int setup(void)
{
	char err[256];
	struct http_server_config cfg = {
	    .host = "127.0.0.1",
	    .port = 0,
	    .body_max = HTTP_FUZZ_BODY_MAX,
	    .conn_max = 4,
	    .idle_timeout = 30,
	};
	signal(SIGPIPE, SIG_IGN);
	big = malloc(HTTP_WBUF_MAX + 1);
	if (!big)
		die("out of memory");
	memset(big, 'x', HTTP_WBUF_MAX + 1);
	log_set_level(LOG_ERROR); /* the layer logs bad requests at info */
	loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
	if (!loop)
		die("ev_loop_new");
	srv = http_server_new(loop, &cfg, on_request, NULL, err, sizeof(err));
	if (!srv)
		die(err);
	http_server_set_close_cb(srv, on_close);
	port = http_server_port(srv);
	return 0;
}

/* ---- response checker -----------------------------------------------------
 */

struct resp_check {
	http_parser p;
	enum { HN_OTHER, HN_HEAD_MARK, HN_CTYPE } hdr; /* current header */
	bool skip_body; /* X-Fuzz-Head was present */
	bool json;	/* Content-Type: application/json */
	struct buf body;
	int responses;
};

static int rc_begin(http_parser *p)
{
	struct resp_check *r = p->data;
	r->skip_body = r->json = false;
	r->hdr = HN_OTHER;
	buf_reset(&r->body);
	return 0;
}

static int rc_field(http_parser *p, const char *at, size_t len)
{
	struct resp_check *r = p->data;
	/* names arrive whole: the output is read before it is parsed */
	if (len == 11 && !strncasecmp(at, "X-Fuzz-Head", 11))
		r->hdr = HN_HEAD_MARK;
	else if (len == 12 && !strncasecmp(at, "Content-Type", 12))
		r->hdr = HN_CTYPE;
	else
		r->hdr = HN_OTHER;
	return 0;
}

static int rc_value(http_parser *p, const char *at, size_t len)
{
	struct resp_check *r = p->data;
	if (r->hdr == HN_HEAD_MARK)
		r->skip_body = true;
	else if (r->hdr == HN_CTYPE)
		r->json = len >= 16 && !strncmp(at, "application/json", 16);
	return 0;
}

static int rc_headers_complete(http_parser *p)
{
	struct resp_check *r = p->data;
	return r->skip_body ? 1 : 0;
}

static int rc_body(http_parser *p, const char *at, size_t len)
{
	struct resp_check *r = p->data;
	return buf_append(&r->body, at, len) ? -1 : 0;
}

/* Every JSON body the layer sends (its own errors, http_respond_error)
 * must be valid JSON, whatever text the client put in the request. */
static int rc_complete(http_parser *p)
{
	struct resp_check *r = p->data;
	r->responses++;
	if (r->json && !r->skip_body) {
		struct json_doc d;
		char err[128];
		if (json_parse(&d, r->body.base ? r->body.base : "",
			       r->body.len, err, sizeof(err))) {
			fprintf(stderr,
				"fuzz_http: JSON response body does not "
				"parse (%s):\n%.*s\n",
				err, (int)r->body.len, r->body.base);
			abort();
		}
		json_doc_fini(&d);
	}
	return 0;
}

static const http_parser_settings rc_settings = {
    .on_message_begin = rc_begin,
    .on_header_field = rc_field,
    .on_header_value = rc_value,
    .on_headers_complete = rc_headers_complete,
    .on_body = rc_body,
    .on_message_complete = rc_complete,
};

/* A response to a HEAD request the layer refused carries a Content-Length
 * and no body; it is the last one (the connection closes), so a body cut
 * short by EOF is accepted, and only errors inside the stream count. */
static void check_responses(const char *out, size_t len, bool truncated)
{
	struct resp_check r;
	memset(&r, 0, sizeof(r));
	buf_init(&r.body, HTTP_FUZZ_RESP_MAX);
	http_parser_init(&r.p, HTTP_RESPONSE);
	r.p.data = &r;
	size_t n = http_parser_execute(&r.p, &rc_settings, out, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&r.p);
	buf_fini(&r.body);
	if (truncated)
		return;
	if (e != HPE_OK || n != len) {
		fprintf(stderr,
			"fuzz_http: response stream does not parse at byte "
			"%zu of %zu: %s\n--- output ---\n%.*s\n--- end ---\n",
			n, len, http_errno_name(e), (int)len, out);
		abort();
	}
}

/* ---- one exchange -----------------------------------------------------------
 */

static double wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void answer_async(void)
{
	/* one per turn, like a membership reply arriving */
	if (!n_async)
		return;
	uint64_t id = async_reqs[0].conn_id;
	bool head = async_reqs[0].head;
	memmove(async_reqs, async_reqs + 1, --n_async * sizeof(async_reqs[0]));
	struct http_conn *c = http_server_conn(srv, id);
	if (c)
		http_respond(c, 202, "text/plain", head ? HEAD_MARK : NULL,
			     "later", 5);
}

struct client {
	int fd;
	bool eof;
	char *out;
	size_t out_len;
	bool out_cut;
};

static void client_read(struct client *cl)
{
	char tmp[16384];
	while (!cl->eof) {
		ssize_t n = recv(cl->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
		if (n > 0) {
			size_t keep = (size_t)n;
			if (keep > HTTP_FUZZ_RESP_MAX - cl->out_len) {
				keep = HTTP_FUZZ_RESP_MAX - cl->out_len;
				cl->out_cut = true;
			}
			memcpy(cl->out + cl->out_len, tmp, keep);
			cl->out_len += keep;
			continue;
		}
		if (n == 0) {
			cl->eof = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET) {
			/* the server closed with input unread: allowed, the
			 * output may then be cut short */
			cl->eof = true;
			cl->out_cut = true;
			break;
		}
		break; /* EAGAIN */
	}
}

/* One loop turn: the server, late answers, the client's reads. */
static void turn(struct client *cl)
{
	ev_run(loop, EVRUN_NOWAIT);
	answer_async();
	client_read(cl);
}

static void client_send(struct client *cl, const uint8_t *p, size_t len,
			double deadline)
{
	while (len) {
		ssize_t n = send(cl->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			turn(cl);
			if (wall() > deadline)
				die("client cannot send: server stopped "
				    "reading");
			continue;
		}
		return; /* EPIPE / ECONNRESET: the server closed early */
	}
}

/* Non-blocking, so libFuzzer's timer signals cannot interrupt it. */
static void client_connect(int fd, const struct sockaddr_in *sa)
{
	if (!connect(fd, (const struct sockaddr *)sa, sizeof(*sa)))
		return;
	if (errno != EINPROGRESS && errno != EINTR)
		die("connect");
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	int err = 0;
	socklen_t len = sizeof(err);
	int n;
	while ((n = poll(&pfd, 1, 5000)) < 0)
		if (errno != EINTR)
			die("poll");
	if (n == 0)
		die("connect timed out");
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
		errno = err;
		die("connect");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready, show;
	if (!ready) {
		ready = !setup();
		/* FUZZ_HTTP_SHOW=1: print what the server sent, to read a seed
		 */
		show = getenv("FUZZ_HTTP_SHOW") != NULL;
	}
	if (size < 1)
		return 0;

	uint8_t ctl = data[0];
	const uint8_t *msg = data + 1;
	size_t len = size - 1;
	size_t cut1 = len * (ctl & 0x0f) / 16, cut2 = len * (ctl >> 4) / 16;
	if (cut1 > cut2) {
		size_t t = cut1;
		cut1 = cut2;
		cut2 = t;
	}

	struct client cl = {.fd = -1};
	static char out[HTTP_FUZZ_RESP_MAX];
	cl.out = out;
	cl.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (cl.fd < 0)
		die("socket");
	/* A new source address per input: the client closes first, so each
	 * connection leaves a TIME_WAIT behind, and thousands a second would
	 * exhaust one address's ephemeral ports. All of 127/8 is loopback. */
	static uint32_t src_n;
	src_n = (src_n + 1) % (254 * 256);
	struct sockaddr_in src = {
	    .sin_family = AF_INET,
	    .sin_addr.s_addr =
		htonl(0x7f010000u | (src_n / 254) << 8 | (src_n % 254 + 1))};
	int one = 1, rcvbuf = HTTP_FUZZ_CLIENT_RCVBUF;
	setsockopt(cl.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		   sizeof(one));
	setsockopt(cl.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (bind(cl.fd, (struct sockaddr *)&src, sizeof(src)))
		die("bind");
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	client_connect(cl.fd, &sa);

	uint64_t closes_before = closes;
	double deadline = wall() + HTTP_FUZZ_WALL;
	n_async = 0;

	client_send(&cl, msg, cut1, deadline);
	turn(&cl);
	client_send(&cl, msg + cut1, cut2 - cut1, deadline);
	turn(&cl);
	client_send(&cl, msg + cut2, len - cut2, deadline);
	shutdown(cl.fd, SHUT_WR);

	while (closes == closes_before || !cl.eof) {
		turn(&cl);
		if (wall() > deadline) {
			fprintf(stderr,
				"fuzz_http: connection still open after %.0f s "
				"(server closed: %d, client eof: %d, "
				"active: %llu)\n",
				HTTP_FUZZ_WALL, closes != closes_before, cl.eof,
				(unsigned long long)http_server_counters(srv)
				    ->active);
			abort();
		}
	}
	close(cl.fd);
	if (http_server_counters(srv)->active != 0)
		die("a connection outlived its close");
	if (show)
		fprintf(stderr, "--- server output (%zu bytes) ---\n%.*s\n",
			cl.out_len, (int)cl.out_len, cl.out);
	check_responses(cl.out, cl.out_len, cl.out_cut);
	return 0;
}
