/*
 * http — the HTTP/1.1 server layer of the api process.
 *
 * Accepts TCP connections on a libev loop the caller owns, parses requests
 * with http_parser and hands each complete request to one callback. It knows
 * nothing about routes: the callback answers with http_respond(), now or
 * later (e.g. when the membership process replies).
 *
 * What the layer does by itself:
 *   - keep-alive (HTTP/1.1 default; HTTP/1.0 with "Connection: keep-alive")
 *     and pipelining: one request at a time per connection, in order; the
 *     parser is paused while a request is outstanding, later bytes stay
 *     buffered, so responses always leave in request order;
 *   - bounds (below): header bytes -> 431, URL -> 414, body -> 413 (a
 *     Content-Length above body_max is refused before any body is read;
 *     chunked bodies are counted as they arrive), connections -> see
 *     below, idle timeout -> close, queued output -> see HTTP_WBUF_MAX;
 *   - malformed input (any http_parser error, Content-Length together with
 *     Transfer-Encoding, an invalid Content-Length, a bad percent-escape, a
 *     path that is not absolute or decodes to a NUL) -> 400;
 *   - OPTIONS (CORS preflight) -> 204 with the Access-Control-* headers; the
 *     handler never sees OPTIONS;
 *   - HEAD is passed to the handler with method HTTP_HEAD; the handler may
 *     answer it like GET: http_respond() then sends the headers (with the
 *     Content-Length of the body given) and no body;
 *   - "Expect: 100-continue" gets an interim "100 Continue" once the headers
 *     passed the bounds.
 * Errors the layer generates use the spec's format
 *   {"success":false,"error":...,"message":...,"code":...,"details":{...}}
 * with codes BAD_REQUEST, PAYLOAD_TOO_LARGE, HEADERS_TOO_LARGE,
 * URI_TOO_LONG, TOO_MANY_CONNECTIONS, and the connection is closed after
 * them. Every response carries "Access-Control-Allow-Origin: *".
 *
 * Timeouts: a connection waiting for a request must deliver the complete
 * request head within idle_timeout of becoming idle (bytes trickling in do
 * not extend it, so a slow client that never finishes its headers is closed
 * at idle_timeout), then the body within idle_timeout of the head. While the
 * handler owns a request there is no timeout (the handler answers exactly
 * once). Queued output must make progress at least every idle_timeout.
 * Streams have no idle timeout.
 *
 * Connection limits, checked at accept():
 *   - per client: a client already holding client_conn_max connections is
 *     refused (503 TOO_MANY_CONNECTIONS, details {"limit":N,"scope":
 *     "client"}). A client is an IPv4 address (an IPv4-mapped IPv6 address
 *     counts as its IPv4 address) or an IPv6 /64: one host is normally
 *     given a whole /64 (SLAAC, RFC 7421) and can use any address in it, so
 *     counting single IPv6 addresses would bound nothing. Loopback is not
 *     exempt. Clients behind one NAT share one limit.
 *   - server: at conn_max open connections, the connection that has been
 *     idle longest is closed to make room (counted in evicted_idle). Idle
 *     means nothing of a request received, no request with the handler, no
 *     output queued and no stream open: such a connection costs the client
 *     nothing to reopen, as HTTP/1.1 lets either side close an idle
 *     keep-alive connection (RFC 9112 9.8). Only when no connection is idle
 *     is the newcomer refused (503 TOO_MANY_CONNECTIONS, {"limit":N}).
 *     Streams are never evicted; the handler bounds them itself.
 * A refused connection gets its 503 only if it fits the socket buffer at
 * once; either way it is closed without a connection object. An idle
 * connection holds no request or output buffers: about 1 KB of memory
 * (measured: RSS of the api process grows 987 bytes per idle connection).
 *
 * Peer EOF: complete requests already received are still answered (then
 * the connection closes); an EOF while a request is with the handler or a
 * stream is open means the client went away (curl and browsers never
 * half-close), so the connection closes at once, as nginx does.
 *
 * Connections are never freed inside their own callback chain: a closed
 * connection is unlinked at once (http_server_conn() returns NULL for it)
 * and freed from a libev event fed to the loop, after the current callback.
 *
 * Threading: everything runs on the loop's thread.
 */
#ifndef PROXYSTONE_HTTP_H
#define PROXYSTONE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <http_parser.h>

#include "proxystone/buf.h"

/* Request line plus headers. Browsers and curl send well under 2 KB; 8 KB is
 * nginx's large_client_header_buffers size and Node's default
 * --max-http-header-size. More -> 431. */
#define HTTP_HEADER_MAX (8 * 1024)
/* Request target. The API's longest path plus a query is under 200 bytes;
 * 2048 is the de facto browser and CDN URL limit. More -> 414. */
#define HTTP_URL_MAX 2048
/* Request body. A registration is about 1 KB of JSON; 64 KB leaves room for
 * metadata while bounding memory at conn_max * 64 KB. More -> 413. */
#define HTTP_BODY_MAX_DEFAULT (64 * 1024)
/* Largest body_max a configuration may ask for: the API has no bulk upload,
 * so anything bigger is a configuration mistake. */
#define HTTP_BODY_MAX_LIMIT (16 * 1024 * 1024)
/* Concurrent connections. Matches the default `ulimit -n` of 1024 (the
 * dashboard polls with a handful; operators' tools with one each). More ->
 * accept, 503, close. */
#define HTTP_CONN_MAX_DEFAULT 1024
/* Largest conn_max a configuration may ask for: the per-connection lookup
 * table is sized from it. */
#define HTTP_CONN_MAX_LIMIT 65536
/* Concurrent connections from one client (an IPv4 address, or an IPv6 /64,
 * see below). A dashboard uses a handful (browsers open at most 6 per
 * origin); the heaviest client we know is our own benchmark, `wrk -c64`
 * plus a metrics poller from one address, so twice that. An eighth of
 * HTTP_CONN_MAX_DEFAULT: one address cannot hold more than 1/8 of the
 * server. More -> 503. */
#define HTTP_CLIENT_CONN_MAX_DEFAULT 128
/* Seconds a connection may sit idle or take to send one request head;
 * Apache's Timeout is 60 s, nginx's client_header_timeout 60 s; API clients
 * are local tools and a dashboard, so 30 s is generous. */
#define HTTP_IDLE_TIMEOUT_DEFAULT 30.0
/* Queued output per connection: the largest response the API builds is
 * GET /cluster/nodes, about 300 bytes per node, so 4 MB covers a 10,000-node
 * registry with headroom. A response that does not fit is replaced by a 500
 * and counted (write_overflows). The next pipelined request is not read
 * while more than HTTP_WBUF_PAUSE bytes (in http.c) are unsent, so a client
 * that does not read cannot make the layer queue more than that. */
#define HTTP_WBUF_MAX (4 * 1024 * 1024)
/* Queued output per stream: an event stream sends small messages; 256 KB is
 * minutes of backlog. Past it http_stream_write() fails with -ENOBUFS. */
#define HTTP_STREAM_WBUF_MAX (256 * 1024)

struct http_server_config {
	const char *host;    /* numeric address to bind; NULL or "" = 0.0.0.0 */
	int port;	     /* 0 = any free port, see http_server_port() */
	size_t body_max;     /* 0 = HTTP_BODY_MAX_DEFAULT */
	int conn_max;	     /* 0 = HTTP_CONN_MAX_DEFAULT */
	int client_conn_max; /* per client; 0 = HTTP_CLIENT_CONN_MAX_DEFAULT */
	double idle_timeout; /* seconds; 0 = HTTP_IDLE_TIMEOUT_DEFAULT */
};

/*
 * One request. Every strview has a non-NULL base (an empty one points at "")
 * and points into the connection's buffers: valid until the request is
 * answered (http_respond / http_stream_begin) or the connection closes,
 * whichever comes first. Copy what must outlive that.
 */
struct http_request {
	int method;	      /* enum http_method from <http_parser.h> */
	struct strview path;  /* percent-decoded, no query; starts with '/',
				 contains no NUL */
	struct strview query; /* raw, without '?'; may be empty */
	struct strview body;  /* de-chunked */
	/* Selected headers, trailing blanks trimmed; empty if absent. */
	struct strview authorization, content_type, origin, host, cookie;
	bool keep_alive;  /* the connection stays open after the response */
	uint64_t conn_id; /* never reused; see http_server_conn() */
};

struct http_server;
struct http_conn;

/* Called once per request (never for OPTIONS). The handler must answer it
 * exactly once, with http_respond() or http_stream_begin(), now or later. */
typedef void (*http_handler_fn)(struct http_server *s, struct http_conn *c,
				const struct http_request *req, void *ud);
/* Called once per connection, after it closed, from a libev callback of its
 * own (not from within any other http_* call). conn_id no longer resolves. */
typedef void (*http_close_fn)(struct http_server *s, uint64_t conn_id,
			      void *ud);

/*
 * Binds (SO_REUSEADDR) and listens on cfg->host:cfg->port, and starts
 * accepting on `loop`. Returns NULL on error with a message in err.
 * The config is copied; `ud` is passed to the callbacks.
 */
struct http_server *http_server_new(struct ev_loop *loop,
				    const struct http_server_config *cfg,
				    http_handler_fn on_request, void *ud,
				    char *err, size_t errlen);
/* Closes the listener and every connection at once, without calling the
 * close callback. Must not be called from an http callback. NULL is a no-op. */
void http_server_free(struct http_server *s);
/* The bound port (useful when cfg->port was 0). */
int http_server_port(const struct http_server *s);
void http_server_set_close_cb(struct http_server *s, http_close_fn on_close);
/* The open connection with that id, or NULL if it has closed since. */
struct http_conn *http_server_conn(struct http_server *s, uint64_t conn_id);
uint64_t http_conn_id(const struct http_conn *c);
/* "address:port" of the peer, for logs. */
const char *http_conn_peer(const struct http_conn *c);

/*
 * Answers the connection's current request. Adds the status line, Date,
 * Content-Length (not for 204/304), Connection and
 * "Access-Control-Allow-Origin: *". content_type may be NULL (no header);
 * extra_headers is NULL or complete "Name: value\r\n" lines. body may be
 * NULL when len is 0; it is copied. For HEAD the body is not sent.
 * Status must be 200..999, else a 500 is sent. Calling it on a connection
 * that is closing, or without a request outstanding, does nothing (the
 * latter is logged). Never frees c.
 */
void http_respond(struct http_conn *c, int status, const char *content_type,
		  const char *extra_headers, const char *body, size_t len);
/*
 * Answers with the spec's error format: {"success":false,"error":<status
 * text>,"message":<message, JSON-escaped>,"code":<code>,"details":<details>}
 * with Content-Type application/json. details_json is raw JSON or NULL for
 * {}. The connection stays open (unlike the layer's own errors).
 */
void http_respond_error(struct http_conn *c, int status, const char *code,
			const char *message, const char *details_json);

/*
 * Streaming responses (Server-Sent Events). http_stream_begin() answers the
 * current request with headers only: no Content-Length, "Connection: close"
 * (the end of the stream is the end of the connection); the idle timeout is
 * off while the stream is open and any further request bytes are discarded.
 * http_stream_write() queues data: -ENOBUFS if more than
 * HTTP_STREAM_WBUF_MAX would be unsent (the peer is too slow: drop the data
 * or end the stream), -EPIPE if the connection is closing, -EINVAL if no
 * stream is open. http_stream_end() closes after the queued data is sent.
 * For HEAD, begin sends the headers and writes are discarded.
 * Begin returns 0, -EINVAL without a request outstanding, -EPIPE if closing.
 */
int http_stream_begin(struct http_conn *c, int status, const char *content_type,
		      const char *extra_headers);
int http_stream_write(struct http_conn *c, const char *data, size_t len);
void http_stream_end(struct http_conn *c);

struct http_counters {
	uint64_t accepted;		/* every accept(), rejected ones too */
	uint64_t active;		/* open connections now */
	uint64_t rejected_conn_limit;	/* 503 at accept: conn_max, none idle */
	uint64_t rejected_client_limit; /* 503 at accept: client_conn_max */
	uint64_t evicted_idle;		/* idle connections closed at conn_max
					   to admit a new one */
	uint64_t parse_errors;		/* 400 */
	uint64_t too_large;		/* 413 */
	uint64_t header_too_large;	/* 431 */
	uint64_t uri_too_long;		/* 414 */
	uint64_t timeouts;		/* closed by the idle timer */
	uint64_t requests;		/* complete requests parsed */
	uint64_t responses;		/* responses and streams begun */
	uint64_t write_overflows;	/* responses over HTTP_WBUF_MAX, and
					   stream writes refused with -ENOBUFS */
};
const struct http_counters *http_server_counters(const struct http_server *s);

/* Reason phrase: 404 -> "Not Found"; "Unknown" for codes it does not know.
 * The one table: status lines and every error body's "error" use it. */
const char *http_status_text(int status);
/*
 * The spec's error envelope, the only place it is written (the layer's own
 * errors and the api's route errors both come here):
 *   {"success":false,"error":<http_status_text(status)>,"message":<mlen
 *   bytes of message>,"code":<code>,"details":<details_json, or {}>}
 * appended to out. details_json is validated (jw_raw). Returns 0, or
 * jw_finish()'s error (-ENOSPC when out's bound is reached, -EINVAL for
 * invalid details_json).
 */
int http_error_render(struct buf *out, int status, const char *code,
		      const char *message, size_t mlen,
		      const char *details_json);

/*
 * Percent-decodes len bytes of src into dst (dst may equal src; it needs
 * len bytes). With plus_is_space, '+' becomes ' ' (query strings).
 * Returns 0 with *out_len set, or -EINVAL for a truncated or non-hex escape.
 */
int http_url_decode(char *dst, const char *src, size_t len, size_t *out_len,
		    bool plus_is_space);

#endif
