/* http — HTTP/1.1 server layer of the api process; see
 * include/proxystone/http.h. */
#include "proxystone/http.h"
#include "proxystone/json.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "proxystone/log.h"

/* One read(). Redis's PROTO_IOBUF_LEN; larger than HTTP_HEADER_MAX so one
 * maximal request head fits. Unparsed bytes of pipelined requests wait here;
 * when it is full the connection is not read until the parser catches up. */
#define HTTP_RBUF_SIZE (16 * 1024)
/* Stop taking the next pipelined request while this much output is unsent:
 * keeps a client that sends but never reads from growing our queue. */
#define HTTP_WBUF_PAUSE (64 * 1024)
/* Request-body and output buffers larger than this are released once done
 * with, so a single big request does not pin memory for the connection. */
#define HTTP_BUF_KEEP (16 * 1024)
/* Output held for the end of the loop turn (see struct http_server's
 * flusher) only up to this: a larger response goes out at once, as
 * copying many of them first costs more than the wakeups saved (a
 * 1,000-node listing is 360 KB). */
#define HTTP_DEFER_MAX HTTP_BUF_KEEP
/* Accepts per readiness event, so a connection storm cannot starve the
 * loop's other watchers (Redis MAX_ACCEPTS_PER_CALL is 1000; our clients
 * are few). */
#define HTTP_ACCEPT_PER_EVENT 64
/* Pause before accepting again after EMFILE/ENFILE: the listening socket
 * stays readable and would otherwise spin the loop (libev manual, "special
 * problem of accept()ing when you can't"). */
#define HTTP_ACCEPT_BACKOFF 0.1
/* listen() backlog: nginx's and Redis's default. */
#define HTTP_LISTEN_BACKLOG 511
/* After we finish a connection (shutdown(SHUT_WR)) we keep reading and
 * discarding for up to this long, so unread request bytes do not turn our
 * close into a RST that destroys the response before the client reads it
 * (nginx lingering_close; its lingering_time is 30 s, ours only covers a
 * client that is still sending a refused body). */
#define HTTP_LINGER_TIMEOUT 2.0
/* ... and at most this many discarded bytes: a refused 413 body of the
 * default size plus headroom. */
#define HTTP_LINGER_MAX (256 * 1024)
/* Bytes read and discarded before closing a connection refused at the
 * connection limit (same RST reason as lingering, without a connection
 * object; one request head's worth). */
#define HTTP_REJECT_DRAIN HTTP_RBUF_SIZE
/* Wire bytes a body may take relative to its content: chunk framing of
 * 1-byte chunks costs about 6 bytes per byte; anything beyond 8x (endless
 * chunk extensions, empty chunks) is abuse and answered with 413. */
#define HTTP_BODY_WIRE_FACTOR 8
/* Longest header name we need to recognise ("transfer-encoding" is 17). */
#define HTTP_HDR_NAME_MAX 32
/* Bytes of offending input quoted in a protocol-error log line. */
#define HTTP_LOG_SAMPLE 48
/* "[ipv6-address]:port" plus NUL. */
#define HTTP_PEER_LEN 64
/* A layer-generated error body: fixed texts plus one short message. */
#define HTTP_ERROR_BODY_MAX 512
/* IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT" is 29 bytes plus NUL. */
#define HTTP_DATE_LEN 32
/* A client's key: its IPv4 address in IPv4-mapped IPv6 form, or its IPv6
 * /64 with the interface bits zero (see http.h, "Connection limits"). */
#define HTTP_CLIENT_KEY_LEN 16
/* Entries of the per-client table: a client is in it only while it has an
 * open connection, so there are never more clients than conn_max. */
#define HTTP_CLIENTS_MAX(conn_max) ((uint32_t)(conn_max))
/* End of a chain in the per-client table. */
#define HTTP_CLIENT_NONE UINT32_MAX

/* Headers the layer looks at. */
enum http_hdr {
	HDR_AUTHORIZATION,
	HDR_CONTENT_TYPE,
	HDR_ORIGIN,
	HDR_HOST,
	HDR_COOKIE,
	HDR_EXPECT,
	HDR_CONTENT_LENGTH,
	HDR_TRANSFER_ENCODING,
	HDR_COUNT,
	HDR_OTHER = HDR_COUNT,
};

static const char *const hdr_names[HDR_COUNT] = {
    [HDR_AUTHORIZATION] = "authorization",
    [HDR_CONTENT_TYPE] = "content-type",
    [HDR_ORIGIN] = "origin",
    [HDR_HOST] = "host",
    [HDR_COOKIE] = "cookie",
    [HDR_EXPECT] = "expect",
    [HDR_CONTENT_LENGTH] = "content-length",
    [HDR_TRANSFER_ENCODING] = "transfer-encoding",
};

/* A repeat of these is ambiguous (which one did a proxy check?) -> 400. */
static const bool hdr_single[HDR_COUNT] = {
    [HDR_AUTHORIZATION] = true,
    [HDR_CONTENT_TYPE] = true,
    [HDR_ORIGIN] = true,
    [HDR_HOST] = true,
    /* Browsers send one Cookie header over HTTP/1.1; two would be
     * concatenated here without a separator. */
    [HDR_COOKIE] = true,
};

struct hdr_val {
	size_t off, len; /* in c->hdrs */
	bool seen;
};

/* Why a parser callback stopped the parser. */
enum http_fail {
	FAIL_NONE,
	FAIL_URL_TOO_LONG,
	FAIL_HEADERS_TOO_LARGE,
	FAIL_BODY_TOO_LARGE,
	FAIL_DUP_HEADER,
	FAIL_NOMEM,
};

/* What a parser callback paused the parser for. */
enum http_pause { PAUSE_NONE, PAUSE_HEADERS, PAUSE_MESSAGE };

enum http_phase { PHASE_HEAD, PHASE_BODY };

/* One client of the per-client connection count. */
struct http_client {
	uint8_t key[HTTP_CLIENT_KEY_LEN];
	uint32_t conns;	 /* open connections; >= 1 while in a chain */
	uint32_t bucket; /* its chain, while in one */
	uint32_t next;	 /* next in the chain, or in the free list */
};

struct http_conn {
	struct http_server *srv;
	uint64_t id;
	int fd;
	uint32_t client; /* index in srv->clients */
	char peer[HTTP_PEER_LEN];
	ev_io rio, wio;
	ev_timer timer;
	/* Never started: fed to the loop to parse buffered requests after an
	 * asynchronous response, outside the responder's call stack. */
	ev_idle kick;
	struct http_conn *hnext; /* id hash chain, then the closing list */
	struct http_conn *fnext; /* the flush queue, while flush_queued */
	bool flush_queued;
	/* The server's idle list, oldest first, while idle (conn_is_idle). */
	struct http_conn *idle_prev, *idle_next;
	bool idle;

	http_parser parser;
	/* Chunk data must end with CRLF; Debian's lenient http_parser takes
	 * any two bytes there. Bytes of that CRLF not yet checked because
	 * they had not arrived: the next parse checks them first. */
	const char *crlf_due; /* "\r\n" or "\n" pending, NULL when none */
	enum http_phase phase;
	enum http_pause paused_for;
	enum http_fail fail;
	size_t hdr_bytes;     /* wire bytes of the current request head */
	size_t body_wire;     /* wire bytes of the current body */
	size_t trailer_bytes; /* chunked trailers, bounded like headers */
	struct buf url, hdrs, body;
	char name[HTTP_HDR_NAME_MAX];
	size_t name_len;
	bool name_long, in_value;
	enum http_hdr cur_hdr;
	struct hdr_val hv[HDR_COUNT];
	bool msg_keep_alive, msg_upgrade;
	int msg_method;
	struct http_request req;

	struct buf wbuf;
	size_t wpos; /* bytes of wbuf already sent */
	size_t linger_bytes;

	bool busy;		/* a request is with the handler */
	bool head;		/* ... and it is a HEAD request */
	bool keep_alive;	/* ... and the connection may stay open */
	bool streaming;		/* a stream response is open */
	bool close_after_write; /* no more requests; close once flushed */
	bool lingering;		/* shut down for writing, draining input */
	bool peer_eof;
	bool closing; /* unlinked, waiting to be freed */
	bool in_process;

	size_t rpos, rlen; /* unparsed input is rbuf[rpos, rlen) */
	char *rbuf; /* HTTP_RBUF_SIZE bytes; NULL until read into, and freed
		       while the connection is idle */
};

struct http_server {
	struct ev_loop *loop;
	struct http_server_config cfg;
	int port;
	int lfd;
	ev_io lio;
	ev_timer accept_backoff;
	/* Never started: fed to the loop to free closed connections after the
	 * current callback (Redis freeClientAsync). */
	ev_idle reap;
	/* Responses are sent in one burst per loop iteration, just before
	 * the loop polls: a client on the same core is woken once per burst,
	 * not once per response, so both sides batch (nginx gets the same
	 * from serving a whole batch of ready events before writing). */
	ev_prepare flusher;
	struct http_conn
	    *flushq; /* bounded: a connection is in it at most once */
	http_handler_fn on_request;
	http_close_fn on_close;
	void *ud;
	struct http_conn **buckets; /* by id; a power of two of them */
	size_t nbuckets;
	struct http_conn *closing;
	/* Idle connections, longest idle first: the first is closed when a
	 * new connection arrives at conn_max. */
	struct http_conn *idle_oldest, *idle_newest;
	size_t n_idle; /* connections on the idle list */
	/* Open connections per client: chained hash over a pool of
	 * HTTP_CLIENTS_MAX(conn_max) entries, nbuckets chains. The hash is
	 * keyed SipHash (random key per server), so a client cannot choose
	 * addresses that all land in one chain. */
	struct http_client *clients;
	uint32_t *client_heads;
	uint32_t client_free;  /* free-list head */
	uint64_t client_conns; /* sum of clients[].conns: == ctr.active */
	unsigned char client_hkey[crypto_shorthash_KEYBYTES];
	uint64_t next_id;
	struct http_counters ctr;
	double last_reject_log;
	time_t date_sec;
	char date[HTTP_DATE_LEN];
};

static const char cors_preflight_headers[] =
    "Access-Control-Allow-Methods: GET, POST, DELETE, OPTIONS\r\n"
    "Access-Control-Allow-Headers: Content-Type, Authorization\r\n"
    "Access-Control-Max-Age: 600\r\n";

static void conn_process(struct http_conn *c);
static int conn_flush(struct http_conn *c);

/* ---- small helpers ---------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static const struct {
	int status;
	const char *text;
} status_texts[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Entity"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *http_status_text(int status)
{
	for (size_t i = 0; i < sizeof(status_texts) / sizeof(status_texts[0]);
	     i++)
		if (status_texts[i].status == status)
			return status_texts[i].text;
	return "Unknown";
}

static int hexval(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int http_url_decode(char *dst, const char *src, size_t len, size_t *out_len,
		    bool plus_is_space)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)src[i];
		if (ch == '%') {
			if (len - i < 3)
				return -EINVAL;
			int hi = hexval((unsigned char)src[i + 1]);
			int lo = hexval((unsigned char)src[i + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			dst[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (ch == '+' && plus_is_space) {
			dst[o++] = ' ';
		} else {
			dst[o++] = (char)ch;
		}
	}
	*out_len = o;
	return 0;
}

/* Printable sample of bad input for a log line. */
static void log_sample(char *dst, size_t dstlen, const char *p, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 5 < dstlen; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '"') {
			dst[o++] = (char)ch;
		} else {
			o += (size_t)snprintf(dst + o, dstlen - o, "\\x%02x",
					      ch);
		}
	}
	dst[o] = '\0';
}

static struct strview view_or_empty(const char *base, size_t len)
{
	return strview_make(len ? base : "", len);
}

/* RFC 7231 IMF-fixdate, cached per second of loop time. */
static const char *server_date(struct http_server *s)
{
	static const char *const wday[] = {"Sun", "Mon", "Tue", "Wed",
					   "Thu", "Fri", "Sat"};
	static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr",
					  "May", "Jun", "Jul", "Aug",
					  "Sep", "Oct", "Nov", "Dec"};
	time_t now = (time_t)ev_now(s->loop);
	if (now != s->date_sec || !s->date[0]) {
		struct tm tm;
		gmtime_r(&now, &tm);
		snprintf(s->date, sizeof(s->date),
			 "%s, %02d %s %04d %02d:%02d:%02d GMT",
			 wday[tm.tm_wday % 7], tm.tm_mday % 100,
			 mon[tm.tm_mon % 12], (tm.tm_year + 1900) % 10000,
			 tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100);
		s->date_sec = now;
	}
	return s->date;
}

/* ---- connection table and lifetime ------------------------------------ */

static struct http_conn **bucket_of(struct http_server *s, uint64_t id)
{
	return &s->buckets[id & (s->nbuckets - 1)];
}

struct http_conn *http_server_conn(struct http_server *s, uint64_t conn_id)
{
	if (!s || !conn_id)
		return NULL;
	for (struct http_conn *c = *bucket_of(s, conn_id); c; c = c->hnext)
		if (c->id == conn_id)
			return c;
	return NULL;
}

uint64_t http_conn_id(const struct http_conn *c)
{
	return c->id;
}

const char *http_conn_peer(const struct http_conn *c)
{
	return c->peer;
}

/* ---- per-client counts ------------------------------------------------ */

static void client_key(const struct sockaddr_storage *ss,
		       uint8_t key[HTTP_CLIENT_KEY_LEN])
{
	memset(key, 0, HTTP_CLIENT_KEY_LEN);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		key[10] = key[11] = 0xff; /* ::ffff:a.b.c.d */
		memcpy(key + 12, &sin->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)ss;
		bool mapped = IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr);
		memcpy(key, sin6->sin6_addr.s6_addr,
		       mapped ? HTTP_CLIENT_KEY_LEN : 8);
	}
	/* Other families (the listener is TCP) share the all-zero key. */
}

static uint32_t client_bucket(const struct http_server *s,
			      const uint8_t key[HTTP_CLIENT_KEY_LEN])
{
	uint64_t h;
	crypto_shorthash((unsigned char *)&h, key, HTTP_CLIENT_KEY_LEN,
			 s->client_hkey);
	return (uint32_t)(h & (s->nbuckets - 1));
}

/* The client's entry, or HTTP_CLIENT_NONE if it has no open connection. */
static uint32_t client_find(const struct http_server *s,
			    const uint8_t key[HTTP_CLIENT_KEY_LEN])
{
	uint32_t i = s->client_heads[client_bucket(s, key)];
	while (i != HTTP_CLIENT_NONE &&
	       memcmp(s->clients[i].key, key, HTTP_CLIENT_KEY_LEN))
		i = s->clients[i].next;
	return i;
}

static uint32_t client_conns(const struct http_server *s,
			     const uint8_t key[HTTP_CLIENT_KEY_LEN])
{
	uint32_t i = client_find(s, key);
	return i == HTTP_CLIENT_NONE ? 0 : s->clients[i].conns;
}

/* Counts a new connection of the client. The pool cannot run out: the
 * caller admits a connection only below conn_max. */
static uint32_t client_attach(struct http_server *s,
			      const uint8_t key[HTTP_CLIENT_KEY_LEN])
{
	uint32_t i = client_find(s, key);
	if (i == HTTP_CLIENT_NONE) {
		i = s->client_free;
		assert(i != HTTP_CLIENT_NONE);
		struct http_client *e = &s->clients[i];
		s->client_free = e->next;
		memcpy(e->key, key, HTTP_CLIENT_KEY_LEN);
		e->conns = 0;
		e->bucket = client_bucket(s, key);
		e->next = s->client_heads[e->bucket];
		s->client_heads[e->bucket] = i;
	}
	s->clients[i].conns++;
	s->client_conns++;
	return i;
}

static void client_detach(struct http_server *s, uint32_t i)
{
	struct http_client *e = &s->clients[i];
	assert(e->conns > 0 && s->client_conns > 0);
	s->client_conns--;
	if (--e->conns)
		return;
	uint32_t *pp = &s->client_heads[e->bucket];
	while (*pp != i)
		pp = &s->clients[*pp].next;
	*pp = e->next;
	e->next = s->client_free;
	s->client_free = i;
}

/* Full walk of the table: every entry is in one chain or the free list,
 * and the chains' counts add up to the open connections. O(conn_max), so
 * only when there is nothing to count or at free. */
static void clients_check(const struct http_server *s)
{
	uint64_t conns = 0;
	uint32_t entries = 0;
	for (size_t b = 0; b < s->nbuckets; b++) {
		for (uint32_t i = s->client_heads[b]; i != HTTP_CLIENT_NONE;
		     i = s->clients[i].next) {
			assert(s->clients[i].conns > 0);
			assert(s->clients[i].bucket == b);
			conns += s->clients[i].conns;
			entries++;
		}
	}
	for (uint32_t i = s->client_free; i != HTTP_CLIENT_NONE;
	     i = s->clients[i].next)
		entries++;
	assert(entries == HTTP_CLIENTS_MAX(s->cfg.conn_max));
	assert(conns == s->client_conns && conns == s->ctr.active);
	(void)conns;
	(void)entries;
}

/* ---- idle list -------------------------------------------------------- */

static size_t conn_unsent(const struct http_conn *c);

/* Nothing of a request received, none with the handler, no output queued,
 * no stream: closing it loses the client nothing. */
static bool conn_is_idle(const struct http_conn *c)
{
	return !c->closing && !c->busy && !c->streaming &&
	       !c->close_after_write && !c->lingering && !c->peer_eof &&
	       c->phase == PHASE_HEAD && !c->hdr_bytes && c->rpos == c->rlen &&
	       !conn_unsent(c);
}

/* Buffers are reallocated by the next request; an idle connection keeps
 * only its struct. */
static void conn_release_buffers(struct http_conn *c)
{
	free(c->rbuf);
	c->rbuf = NULL;
	c->rpos = c->rlen = 0;
	buf_fini(&c->url);
	buf_fini(&c->hdrs);
	buf_fini(&c->body);
	buf_fini(&c->wbuf);
	c->wpos = 0;
}

/* Idle connections that keep their buffers. A keep-alive client between
 * two requests is idle too: freeing and reallocating ~20 KB of buffers
 * around every request cost a tenth of the heartbeat rate. Past this many
 * idle connections (a crowd of idle clients, not a busy one) each newly
 * idle one gives its buffers back and costs only its struct (~1 KB). */
#define HTTP_IDLE_WARM_MAX 64

/* Puts c on or takes it off the idle list to match conn_is_idle(); a
 * connection that stays idle keeps its place. */
static void conn_idle_update(struct http_conn *c)
{
	struct http_server *s = c->srv;
	bool idle = conn_is_idle(c);
	/* Not while a handler that answered at once may still read its
	 * request's views: conn_process comes back here after it returns. */
	if (idle && !c->in_process && s->n_idle >= HTTP_IDLE_WARM_MAX)
		conn_release_buffers(c);
	if (idle == c->idle)
		return;
	c->idle = idle;
	if (idle) {
		s->n_idle++;
		c->idle_next = NULL;
		c->idle_prev = s->idle_newest;
		if (s->idle_newest)
			s->idle_newest->idle_next = c;
		else
			s->idle_oldest = c;
		s->idle_newest = c;
		return;
	}
	assert(s->n_idle > 0);
	s->n_idle--;
	if (c->idle_prev)
		c->idle_prev->idle_next = c->idle_next;
	else
		s->idle_oldest = c->idle_next;
	if (c->idle_next)
		c->idle_next->idle_prev = c->idle_prev;
	else
		s->idle_newest = c->idle_prev;
	c->idle_prev = c->idle_next = NULL;
}

/* ---- connection lifetime ---------------------------------------------- */

static void conn_timer(struct http_conn *c, double after)
{
	ev_timer_stop(c->srv->loop, &c->timer);
	ev_timer_set(&c->timer, after, 0.);
	ev_timer_start(c->srv->loop, &c->timer);
}

static void conn_timer_stop(struct http_conn *c)
{
	ev_timer_stop(c->srv->loop, &c->timer);
}

/* Stops every watcher (which also drops events already pending for them)
 * and releases the connection. Only from the reaper or http_server_free. */
static void conn_destroy(struct http_conn *c)
{
	struct ev_loop *loop = c->srv->loop;
	ev_io_stop(loop, &c->rio);
	ev_io_stop(loop, &c->wio);
	ev_timer_stop(loop, &c->timer);
	ev_idle_stop(loop, &c->kick);
	if (c->fd >= 0)
		close(c->fd);
	conn_release_buffers(c);
	free(c);
}

static void flushq_remove(struct http_conn *c)
{
	struct http_server *s = c->srv;
	if (!c->flush_queued)
		return;
	for (struct http_conn **pp = &s->flushq; *pp; pp = &(*pp)->fnext) {
		if (*pp == c) {
			*pp = c->fnext;
			break;
		}
	}
	c->flush_queued = false;
}

/* Redis freeClientAsync: unlink now, free after the current callback. */
static void conn_close(struct http_conn *c, const char *why)
{
	struct http_server *s = c->srv;
	if (c->closing)
		return;
	flushq_remove(c);
	log_debug("http: conn %llu (%s) closed: %s", (unsigned long long)c->id,
		  c->peer, why);
	c->closing = true;
	conn_idle_update(c);
	ev_io_stop(s->loop, &c->rio);
	ev_io_stop(s->loop, &c->wio);
	ev_timer_stop(s->loop, &c->timer);
	ev_idle_stop(s->loop, &c->kick);
	for (struct http_conn **pp = bucket_of(s, c->id); *pp;
	     pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	}
	c->hnext = s->closing;
	s->closing = c;
	s->ctr.active--;
	client_detach(s, c->client);
	assert(s->client_conns == s->ctr.active);
	if (!s->ctr.active)
		clients_check(s);
	ev_feed_event(s->loop, &s->reap, EV_CUSTOM);
}

static void reap_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct http_server *s = w->data;
	(void)loop;
	(void)revents;
	/* on_close may close other connections; they join the list. */
	while (s->closing) {
		struct http_conn *c = s->closing;
		s->closing = c->hnext;
		uint64_t id = c->id;
		conn_destroy(c);
		if (s->on_close)
			s->on_close(s, id, s->ud);
	}
}

static void conn_update_read(struct http_conn *c)
{
	struct ev_loop *loop = c->srv->loop;
	bool want = !c->closing && !c->peer_eof &&
		    (c->lingering || c->streaming ||
		     c->rlen - c->rpos < HTTP_RBUF_SIZE);
	if (want && !ev_is_active(&c->rio))
		ev_io_start(loop, &c->rio);
	else if (!want && ev_is_active(&c->rio))
		ev_io_stop(loop, &c->rio);
}

/* Output is flushed and nothing more will be sent: half-close and drain
 * until the peer closes too, so our close is a FIN and not a RST. */
static void conn_linger(struct http_conn *c)
{
	if (c->closing || c->lingering)
		return;
	if (c->peer_eof) {
		conn_close(c, "done");
		return;
	}
	shutdown(c->fd, SHUT_WR);
	c->lingering = true;
	c->rpos = c->rlen = 0;
	conn_timer(c, HTTP_LINGER_TIMEOUT);
	conn_update_read(c);
}

static size_t conn_unsent(const struct http_conn *c)
{
	return c->wbuf.len - c->wpos;
}

/* Drops sent bytes so appends go after the unsent ones. */
static void conn_wbuf_compact(struct http_conn *c)
{
	if (c->wpos) {
		buf_consume(&c->wbuf, c->wpos);
		c->wpos = 0;
	}
}

static void conn_wbuf_truncate(struct http_conn *c, size_t len)
{
	c->wbuf.len = len;
	if (c->wbuf.base)
		c->wbuf.base[len] = '\0';
}

/* Sends what it can. Returns 0, or -EPIPE after closing the connection on
 * a write error (the peer reset or went away). */
static int conn_flush(struct http_conn *c)
{
	struct http_server *s = c->srv;
	bool progress = false;

	if (c->closing)
		return -EPIPE;
	while (c->wpos < c->wbuf.len) {
		ssize_t n = send(c->fd, c->wbuf.base + c->wpos,
				 c->wbuf.len - c->wpos, MSG_NOSIGNAL);
		if (n > 0) {
			c->wpos += (size_t)n;
			progress = true;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		conn_close(c, n < 0 ? strerror(errno) : "send returned 0");
		return -EPIPE;
	}
	if (c->wpos < c->wbuf.len) {
		ev_io_start(s->loop, &c->wio);
		/* Output must keep moving, except on an open stream whose
		 * writer sees -ENOBUFS instead. */
		bool open_stream = c->streaming && !c->close_after_write;
		if (!open_stream && (progress || !ev_is_active(&c->timer)))
			conn_timer(c, s->cfg.idle_timeout);
		return 0;
	}
	ev_io_stop(s->loop, &c->wio);
	c->wpos = 0;
	if (c->wbuf.cap > HTTP_BUF_KEEP)
		buf_fini(&c->wbuf);
	else
		buf_reset(&c->wbuf);
	if (c->close_after_write)
		conn_linger(c);
	else if (!c->busy && !c->streaming && progress)
		conn_timer(c, s->cfg.idle_timeout);
	conn_idle_update(c);
	return 0;
}

/* ---- responses -------------------------------------------------------- */

static int put_head(struct http_conn *c, int status, const char *ctype,
		    const char *extra, bool with_length, size_t len,
		    bool keep_alive)
{
	struct buf *b = &c->wbuf;
	int rc = buf_printf(b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
			    http_status_text(status), server_date(c->srv));
	if (!rc && ctype)
		rc = buf_printf(b, "Content-Type: %s\r\n", ctype);
	if (!rc && with_length)
		rc = buf_printf(b, "Content-Length: %zu\r\n", len);
	if (!rc)
		rc = buf_printf(b,
				"Connection: %s\r\n"
				"Access-Control-Allow-Origin: *\r\n",
				keep_alive ? "keep-alive" : "close");
	if (!rc && extra)
		rc = buf_puts(b, extra);
	if (!rc)
		rc = buf_puts(b, "\r\n");
	return rc;
}

static bool header_text_ok(const char *s)
{
	return !s || !strpbrk(s, "\r\n");
}

static bool extra_headers_ok(const char *s)
{
	size_t n;
	if (!s)
		return true;
	n = strlen(s);
	return n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n' &&
	       !strstr(s, "\r\n\r\n");
}

int http_error_render(struct buf *out, int status, const char *code,
		      const char *message, size_t mlen,
		      const char *details_json)
{
	struct json_writer w;
	jw_init(&w, out);
	jw_object_begin(&w);
	jw_key(&w, "success");
	jw_bool(&w, false);
	jw_key(&w, "error");
	jw_string(&w, http_status_text(status));
	jw_key(&w, "message");
	jw_string_n(&w, message, mlen);
	jw_key(&w, "code");
	jw_string(&w, code);
	jw_key(&w, "details");
	if (details_json)
		jw_raw(&w, details_json, strlen(details_json));
	else
		jw_raw_trusted(&w, "{}", 2);
	jw_object_end(&w);
	return jw_finish(&w);
}

/* Renders the error; 0 and *n, or -ENOSPC if it does not fit outlen. */
static int render_error_body(char *out, size_t outlen, int status,
			     const char *code, const char *message, size_t mlen,
			     const char *details_json, int *n)
{
	struct buf b;
	buf_init(&b, outlen - 1);
	int rc =
	    http_error_render(&b, status, code, message, mlen, details_json);
	if (!rc) {
		memcpy(out, b.base, b.len + 1);
		*n = (int)b.len;
	}
	buf_fini(&b);
	return rc;
}

/*
 * The spec's error body. The JSON writer escapes and replaces invalid
 * UTF-8, so the body is valid JSON whatever the message holds; a message
 * too long once escaped is cut, at a character boundary, until it fits.
 * Returns the length, or -ENOSPC (only if details_json itself is too big).
 */
static int build_error_body(char *out, size_t outlen, int status,
			    const char *code, const char *message,
			    const char *details_json)
{
	size_t mlen = strlen(message);
	for (;;) {
		int n;
		if (render_error_body(out, outlen, status, code, message, mlen,
				      details_json, &n) == 0)
			return n;
		if (mlen == 0)
			return -ENOSPC;
		mlen /= 2;
		while (mlen > 0 &&
		       ((unsigned char)message[mlen] & 0xC0) == 0x80)
			mlen--;
	}
}

void http_respond(struct http_conn *c, int status, const char *content_type,
		  const char *extra_headers, const char *body, size_t len)
{
	struct http_server *s;
	if (!c || c->closing)
		return;
	s = c->srv;
	if (!c->busy) {
		log_warn("http: conn %llu: response %d without a request "
			 "outstanding dropped",
			 (unsigned long long)c->id, status);
		return;
	}
	if (status < 200 || status > 999 || !header_text_ok(content_type) ||
	    !extra_headers_ok(extra_headers) || (len && !body)) {
		log_warn("http: conn %llu: invalid response (status %d) "
			 "replaced by 500",
			 (unsigned long long)c->id, status);
		status = 500;
		content_type = "text/plain";
		extra_headers = NULL;
		body = "Internal Server Error";
		len = strlen(body);
	}

	bool no_body = status == 204 || status == 304;
	bool keep = c->keep_alive && !c->peer_eof;
	conn_wbuf_compact(c);
	size_t mark = c->wbuf.len;
	int rc = put_head(c, status, content_type, extra_headers, !no_body, len,
			  keep);
	if (!rc && !no_body && !c->head && len)
		rc = buf_append(&c->wbuf, body, len);
	if (rc) {
		char eb[HTTP_ERROR_BODY_MAX];
		char msg[HTTP_ERROR_BODY_MAX / 2];
		conn_wbuf_truncate(c, mark);
		s->ctr.write_overflows++;
		log_warn("http: conn %llu: %zu-byte response %d does not fit "
			 "the %d-byte output bound; sent 500 instead",
			 (unsigned long long)c->id, len, status, HTTP_WBUF_MAX);
		snprintf(msg, sizeof(msg), "Response exceeds %d bytes",
			 HTTP_WBUF_MAX);
		int n = build_error_body(eb, sizeof(eb), 500, "INTERNAL_ERROR",
					 msg, NULL);
		keep = false;
		rc = n < 0 ? n
			   : put_head(c, 500, "application/json", NULL, true,
				      (size_t)n, false);
		if (!rc && !c->head)
			rc = buf_append(&c->wbuf, eb, (size_t)n);
		if (rc) {
			conn_close(c, "out of memory for a response");
			return;
		}
	}
	c->busy = false;
	c->close_after_write = !keep;
	s->ctr.responses++;
	/* http_parser asserts when unpausing a parser in an error state */
	if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED)
		http_parser_pause(&c->parser, 0);
	if (c->body.cap > HTTP_BUF_KEEP)
		buf_fini(&c->body);
	if (c->close_after_write || conn_unsent(c) > HTTP_DEFER_MAX) {
		if (conn_flush(c) || c->close_after_write)
			return;
	} else if (!c->flush_queued) {
		c->flush_queued = true;
		c->fnext = s->flushq;
		s->flushq = c;
	}
	/* Requests may already wait in rbuf; parse them after this call. */
	if (!c->in_process && (c->rpos < c->rlen || c->peer_eof))
		ev_feed_event(s->loop, &c->kick, EV_CUSTOM);
}

/* Sends the queued responses; then, as after a write event, parses what
 * output held back (unless the server is going away). */
static void flushq_run(struct http_server *s, bool process)
{
	while (s->flushq) {
		struct http_conn *c = s->flushq;
		s->flushq = c->fnext;
		c->flush_queued = false;
		if (!conn_flush(c) && process)
			conn_process(c);
	}
}

static void flusher_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)revents;
	flushq_run(w->data, true);
}

void http_respond_error(struct http_conn *c, int status, const char *code,
			const char *message, const char *details_json)
{
	char body[HTTP_ERROR_BODY_MAX];
	int n = build_error_body(body, sizeof(body), status, code,
				 message ? message : "", details_json);
	if (n < 0) {
		/* details too long for the fixed buffer: keep the format */
		n = build_error_body(body, sizeof(body), status, code,
				     message ? message : "", NULL);
		if (n < 0)
			n = 0;
	}
	http_respond(c, status, "application/json", NULL, body, (size_t)n);
}

/* An error the layer itself answers; the connection closes after it. */
static void conn_fail(struct http_conn *c, int status, const char *code,
		      const char *message, long long limit)
{
	char details[64];
	if (c->closing)
		return;
	if (limit >= 0)
		snprintf(details, sizeof(details), "{\"limit\":%lld}", limit);
	c->busy = true;
	/* parser.method is the failing request's (as far as it got) */
	c->head = c->parser.method == HTTP_HEAD;
	c->keep_alive = false;
	http_respond_error(c, status, code, message,
			   limit >= 0 ? details : NULL);
}

static void conn_fail_body_too_large(struct http_conn *c)
{
	char msg[96];
	size_t max = c->srv->cfg.body_max;
	c->srv->ctr.too_large++;
	log_info("http: conn %llu (%s): request body over %zu bytes refused",
		 (unsigned long long)c->id, c->peer, max);
	snprintf(msg, sizeof(msg), "Request body exceeds %zu bytes", max);
	conn_fail(c, 413, "PAYLOAD_TOO_LARGE", msg, (long long)max);
}

static void conn_fail_headers_too_large(struct http_conn *c)
{
	char msg[96];
	c->srv->ctr.header_too_large++;
	log_info("http: conn %llu (%s): request head over %d bytes refused",
		 (unsigned long long)c->id, c->peer, HTTP_HEADER_MAX);
	snprintf(msg, sizeof(msg), "Request headers exceed %d bytes",
		 HTTP_HEADER_MAX);
	conn_fail(c, 431, "HEADERS_TOO_LARGE", msg, HTTP_HEADER_MAX);
}

static void conn_fail_url_too_long(struct http_conn *c)
{
	char msg[96];
	c->srv->ctr.uri_too_long++;
	log_info("http: conn %llu (%s): request URL over %d bytes refused",
		 (unsigned long long)c->id, c->peer, HTTP_URL_MAX);
	snprintf(msg, sizeof(msg), "Request URL exceeds %d bytes",
		 HTTP_URL_MAX);
	conn_fail(c, 414, "URI_TOO_LONG", msg, HTTP_URL_MAX);
}

/* `at` is where the parser stopped, for the log sample. */
static void conn_fail_bad_request(struct http_conn *c, const char *why,
				  const char *at, size_t avail)
{
	char sample[HTTP_LOG_SAMPLE * 4 + 1];
	char msg[160];
	c->srv->ctr.parse_errors++;
	log_sample(sample, sizeof(sample), at,
		   avail < HTTP_LOG_SAMPLE ? avail : HTTP_LOG_SAMPLE);
	log_info("http: conn %llu (%s): bad request: %s; input: \"%s\"",
		 (unsigned long long)c->id, c->peer, why, sample);
	snprintf(msg, sizeof(msg), "Malformed request: %s", why);
	conn_fail(c, 400, "BAD_REQUEST", msg, -1);
}

/* ---- streams ---------------------------------------------------------- */

int http_stream_begin(struct http_conn *c, int status, const char *content_type,
		      const char *extra_headers)
{
	if (!c)
		return -EINVAL;
	if (c->closing)
		return -EPIPE;
	if (!c->busy || status < 200 || status > 999 ||
	    !header_text_ok(content_type) || !extra_headers_ok(extra_headers))
		return -EINVAL;
	conn_wbuf_compact(c);
	size_t mark = c->wbuf.len;
	int rc =
	    put_head(c, status, content_type, extra_headers, false, 0, false);
	if (rc) {
		conn_wbuf_truncate(c, mark);
		return rc;
	}
	c->busy = false;
	c->streaming = true;
	c->srv->ctr.responses++;
	/* The connection ends with the stream: later requests are dropped. */
	c->rpos = c->rlen = 0;
	conn_timer_stop(c);
	if (conn_flush(c))
		return -EPIPE;
	conn_update_read(c);
	return 0;
}

int http_stream_write(struct http_conn *c, const char *data, size_t len)
{
	if (!c)
		return -EINVAL;
	if (c->closing)
		return -EPIPE;
	if (!c->streaming || c->close_after_write)
		return -EINVAL;
	if (c->head || !len)
		return 0;
	if (len > HTTP_STREAM_WBUF_MAX - conn_unsent(c)) {
		c->srv->ctr.write_overflows++;
		return -ENOBUFS;
	}
	conn_wbuf_compact(c);
	int rc = buf_append(&c->wbuf, data, len);
	if (rc)
		return rc == -ENOSPC ? -ENOBUFS : rc;
	return conn_flush(c);
}

void http_stream_end(struct http_conn *c)
{
	if (!c || c->closing || !c->streaming || c->close_after_write)
		return;
	c->close_after_write = true;
	if (conn_unsent(c) == 0)
		conn_linger(c);
	else
		conn_timer(c, c->srv->cfg.idle_timeout);
}

/* ---- parsing ---------------------------------------------------------- */

static int on_message_begin(http_parser *p)
{
	struct http_conn *c = p->data;
	buf_reset(&c->url);
	buf_reset(&c->hdrs);
	buf_reset(&c->body);
	memset(c->hv, 0, sizeof(c->hv));
	c->name_len = 0;
	c->name_long = false;
	c->in_value = false;
	c->cur_hdr = HDR_OTHER;
	c->trailer_bytes = 0;
	return 0;
}

static int fail_from_rc(struct http_conn *c, int rc, enum http_fail bound)
{
	c->fail = rc == -ENOSPC ? bound : FAIL_NOMEM;
	return -1;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	int rc = buf_append(&c->url, at, len);
	return rc ? fail_from_rc(c, rc, FAIL_URL_TOO_LONG) : 0;
}

/* Trailers of a chunked body: not kept, bounded like a head. */
static int on_trailer(struct http_conn *c, size_t len)
{
	c->trailer_bytes += len;
	if (c->trailer_bytes > HTTP_HEADER_MAX) {
		c->fail = FAIL_HEADERS_TOO_LARGE;
		return -1;
	}
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	if (c->phase == PHASE_BODY)
		return on_trailer(c, len);
	if (c->in_value) {
		c->in_value = false;
		c->name_len = 0;
		c->name_long = false;
	}
	for (size_t i = 0; i < len; i++) {
		/* A field name is an RFC 9110 token. Debian's http_parser is
		 * built lenient and lets "Content-Length : 5" through, a
		 * request-smuggling classic: refuse it here. */
		unsigned char t = (unsigned char)at[i];
		if (!(isalnum(t) || strchr("!#$%&'*+-.^_`|~", t)) || !t)
			return 1;
	}
	for (size_t i = 0; i < len; i++) {
		if (c->name_len == sizeof(c->name)) {
			c->name_long = true;
			break;
		}
		char ch = at[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		c->name[c->name_len++] = ch;
	}
	return 0;
}

static enum http_hdr classify_header(const struct http_conn *c)
{
	if (c->name_long)
		return HDR_OTHER;
	for (int i = 0; i < HDR_COUNT; i++)
		if (strlen(hdr_names[i]) == c->name_len &&
		    memcmp(hdr_names[i], c->name, c->name_len) == 0)
			return (enum http_hdr)i;
	return HDR_OTHER;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	if (c->phase == PHASE_BODY)
		return on_trailer(c, len);
	if (!c->in_value) {
		c->in_value = true;
		c->cur_hdr = classify_header(c);
		if (c->cur_hdr != HDR_OTHER) {
			struct hdr_val *hv = &c->hv[c->cur_hdr];
			if (hv->seen && hdr_single[c->cur_hdr]) {
				c->fail = FAIL_DUP_HEADER;
				return -1;
			}
			hv->seen = true;
			hv->off = c->hdrs.len;
			hv->len = 0;
		}
	}
	if (c->cur_hdr == HDR_OTHER)
		return 0;
	int rc = buf_append(&c->hdrs, at, len);
	if (rc)
		return fail_from_rc(c, rc, FAIL_HEADERS_TOO_LARGE);
	c->hv[c->cur_hdr].len += len;
	return 0;
}

/* Pauses so the caller can check the head's size and Content-Length before
 * a single body byte is parsed. */
static int on_headers_complete(http_parser *p)
{
	struct http_conn *c = p->data;
	c->paused_for = PAUSE_HEADERS;
	http_parser_pause(p, 1);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	int rc = buf_append(&c->body, at, len);
	if (rc)
		return fail_from_rc(c, rc, FAIL_BODY_TOO_LARGE);
	if ((p->flags & F_CHUNKED) && p->content_length == 0) {
		/* The chunk's data ended here: check its CRLF, as far as
		 * it has arrived; the rest waits for the next parse. */
		const char *end = c->rbuf + c->rlen, *q = at + len;
		const char *want = "\r\n";
		while (*want && q < end) {
			if (*q++ != *want++)
				return 1; /* HPE_CB_body: answered 400 */
		}
		c->crlf_due = *want ? want : NULL;
	}
	return 0;
}

/* Checks the CRLF owed by a chunk that ended at the previous buffer's
 * end. 0, or -EPROTO if the bytes are something else. */
static int check_crlf_due(struct http_conn *c, const char *data, size_t avail)
{
	size_t i = 0;
	while (c->crlf_due && *c->crlf_due && i < avail) {
		if (data[i++] != *c->crlf_due++)
			return -EPROTO;
	}
	if (c->crlf_due && !*c->crlf_due)
		c->crlf_due = NULL;
	return 0;
}

/* Pauses so later pipelined requests wait until this one is answered. */
static int on_message_complete(http_parser *p)
{
	struct http_conn *c = p->data;
	c->msg_keep_alive = http_should_keep_alive(p) != 0;
	c->msg_upgrade = p->upgrade != 0;
	c->msg_method = (int)p->method;
	c->paused_for = PAUSE_MESSAGE;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static struct strview hdr_view(const struct http_conn *c, enum http_hdr h)
{
	const struct hdr_val *hv = &c->hv[h];
	if (!hv->seen || !hv->len)
		return strview_make("", 0);
	const char *base = c->hdrs.base + hv->off;
	size_t len = hv->len;
	while (len && (base[len - 1] == ' ' || base[len - 1] == '\t'))
		len--;
	return view_or_empty(base, len);
}

/* Parses the Content-Length value (http_parser has checked its syntax). */
static int content_length(const struct http_conn *c, uint64_t *out)
{
	struct strview v = hdr_view(c, HDR_CONTENT_LENGTH);
	uint64_t n = 0;
	if (!v.len)
		return -EINVAL;
	for (size_t i = 0; i < v.len; i++) {
		unsigned char ch = (unsigned char)v.base[i];
		if (ch < '0' || ch > '9' || n > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		n = n * 10 + (uint64_t)(ch - '0');
	}
	*out = n;
	return 0;
}

/* The head is complete and within HTTP_HEADER_MAX. Returns 0 to go on
 * parsing the body, or -1 after answering with an error. */
static int conn_headers_done(struct http_conn *c)
{
	struct http_server *s = c->srv;
	bool has_cl = c->hv[HDR_CONTENT_LENGTH].seen;
	bool has_te = c->hv[HDR_TRANSFER_ENCODING].seen;
	uint64_t cl = 0;

	c->phase = PHASE_BODY;
	c->body_wire = 0;
	if (has_cl && has_te) {
		conn_fail_bad_request(
		    c, "Content-Length with Transfer-Encoding", "", 0);
		return -1;
	}
	if (has_cl && content_length(c, &cl)) {
		conn_fail_bad_request(c, "invalid Content-Length", "", 0);
		return -1;
	}
	if (has_cl && cl > s->cfg.body_max) {
		conn_fail_body_too_large(c);
		return -1;
	}
	/* The body gets its own window; a stalled upload is closed. */
	conn_timer(c, s->cfg.idle_timeout);

	struct strview expect = hdr_view(c, HDR_EXPECT);
	if (expect.len == 12 && !strncasecmp(expect.base, "100-continue", 12) &&
	    c->parser.http_major == 1 && c->parser.http_minor >= 1 &&
	    (has_te || cl > 0)) {
		conn_wbuf_compact(c);
		if (!buf_puts(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n"))
			conn_flush(c);
	}
	return c->closing ? -1 : 0;
}

/* Fills c->req from the parsed request. Returns 0, or -1 after answering
 * with 400. */
static int conn_build_request(struct http_conn *c)
{
	struct http_request *r = &c->req;
	struct http_parser_url u;
	char *url = c->url.base;

	memset(r, 0, sizeof(*r));
	http_parser_url_init(&u);
	if (!c->url.len || http_parser_parse_url(url, c->url.len, 0, &u)) {
		conn_fail_bad_request(c, "invalid request target", url,
				      c->url.len);
		return -1;
	}
	if (u.field_set & (1 << UF_PATH)) {
		char *path = url + u.field_data[UF_PATH].off;
		size_t plen = u.field_data[UF_PATH].len, dlen;
		if (path[0] != '/') {
			conn_fail_bad_request(c, "request path is not absolute",
					      url, c->url.len);
			return -1;
		}
		if (http_url_decode(path, path, plen, &dlen, false)) {
			conn_fail_bad_request(c, "bad percent-escape in path",
					      url, c->url.len);
			return -1;
		}
		if (memchr(path, '\0', dlen)) {
			conn_fail_bad_request(c, "path contains NUL", url,
					      c->url.len);
			return -1;
		}
		r->path = strview_make(path, dlen);
	} else if (u.field_set & (1 << UF_SCHEMA)) {
		r->path = strview_make("/", 1); /* "http://host" */
	} else {
		conn_fail_bad_request(c, "request target has no path", url,
				      c->url.len);
		return -1;
	}
	if (u.field_set & (1 << UF_QUERY))
		r->query = view_or_empty(url + u.field_data[UF_QUERY].off,
					 u.field_data[UF_QUERY].len);
	else
		r->query = strview_make("", 0);
	r->method = c->msg_method;
	r->body = view_or_empty(c->body.base, c->body.len);
	r->authorization = hdr_view(c, HDR_AUTHORIZATION);
	r->content_type = hdr_view(c, HDR_CONTENT_TYPE);
	r->origin = hdr_view(c, HDR_ORIGIN);
	r->host = hdr_view(c, HDR_HOST);
	r->cookie = hdr_view(c, HDR_COOKIE);
	r->keep_alive = c->keep_alive;
	r->conn_id = c->id;
	return 0;
}

/* A complete request: the parser stays paused until it is answered. */
static void conn_dispatch(struct http_conn *c)
{
	struct http_server *s = c->srv;

	c->busy = true;
	conn_timer_stop(c);
	c->phase = PHASE_HEAD;
	c->hdr_bytes = 0;
	s->ctr.requests++;
	/* After an Upgrade the parser treats the rest as another protocol. */
	c->keep_alive = c->msg_keep_alive && !c->msg_upgrade && !c->peer_eof;
	c->head = c->msg_method == HTTP_HEAD;
	if (c->msg_method == HTTP_OPTIONS) {
		http_respond(c, 204, NULL, cors_preflight_headers, NULL, 0);
		return;
	}
	if (conn_build_request(c))
		return;
	s->on_request(s, c, &c->req, s->ud);
}

/* One http_parser_execute() over buffered input, and what follows. */
static void conn_parse(struct http_conn *c)
{
	struct http_server *s = c->srv;
	bool was_head = c->phase == PHASE_HEAD;
	const char *data = c->rbuf + c->rpos;
	size_t avail = c->rlen - c->rpos;
	if (check_crlf_due(c, data, avail)) {
		conn_fail_bad_request(c, "chunk data not followed by CRLF",
				      data, avail);
		return;
	}
	size_t n =
	    http_parser_execute(&c->parser, &parser_settings, data, avail);
	enum http_errno herr = HTTP_PARSER_ERRNO(&c->parser);

	c->rpos += n;
	/* The parser pauses at the end of the head, so everything it took in
	 * a call that began in the head belongs to the head. */
	if (was_head)
		c->hdr_bytes += n;
	else
		c->body_wire += n;
	/* Paused at the end of the head, the parser has not yet consumed the
	 * blank line's LF; it is part of the head. */
	if (was_head && c->paused_for == PAUSE_HEADERS)
		c->hdr_bytes++;

	switch (c->fail) {
	case FAIL_NONE:
		break;
	case FAIL_URL_TOO_LONG:
		conn_fail_url_too_long(c);
		return;
	case FAIL_HEADERS_TOO_LARGE:
		conn_fail_headers_too_large(c);
		return;
	case FAIL_BODY_TOO_LARGE:
		conn_fail_body_too_large(c);
		return;
	case FAIL_DUP_HEADER:
		conn_fail_bad_request(c, "repeated header", data, avail);
		return;
	case FAIL_NOMEM:
		log_warn("http: conn %llu (%s): out of memory",
			 (unsigned long long)c->id, c->peer);
		conn_close(c, "out of memory");
		return;
	}
	if (herr == HPE_HEADER_OVERFLOW) {
		conn_fail_headers_too_large(c);
		return;
	}
	if (herr != HPE_OK && herr != HPE_PAUSED) {
		conn_fail_bad_request(c, http_errno_description(herr), data + n,
				      avail - n);
		return;
	}
	if (was_head && c->hdr_bytes > HTTP_HEADER_MAX) {
		conn_fail_headers_too_large(c);
		return;
	}
	if (!was_head &&
	    c->body_wire >
		HTTP_BODY_WIRE_FACTOR * s->cfg.body_max + HTTP_HEADER_MAX) {
		conn_fail_body_too_large(c);
		return;
	}
	if (herr != HPE_PAUSED)
		return;
	enum http_pause why = c->paused_for;
	c->paused_for = PAUSE_NONE;
	if (why == PAUSE_HEADERS) {
		http_parser_pause(&c->parser, 0);
		conn_headers_done(c);
	} else if (why == PAUSE_MESSAGE) {
		conn_dispatch(c);
	}
}

static bool conn_can_parse(const struct http_conn *c)
{
	return !c->closing && !c->busy && !c->streaming &&
	       !c->close_after_write && !c->lingering &&
	       conn_unsent(c) <= HTTP_WBUF_PAUSE;
}

/* Parses and dispatches buffered requests until one is outstanding or the
 * input runs out. Safe against re-entry from a handler's http_respond. */
static void conn_process(struct http_conn *c)
{
	if (c->in_process || c->closing)
		return;
	c->in_process = true;
	while (conn_can_parse(c)) {
		if (c->rpos == c->rlen) {
			if (c->peer_eof) {
				/* A partial request dies with the peer. */
				c->close_after_write = true;
				if (!conn_unsent(c))
					conn_close(c, "peer closed");
			}
			break;
		}
		conn_parse(c);
	}
	c->in_process = false;
	if (!c->closing) {
		conn_update_read(c);
		conn_idle_update(c);
	}
}

/* ---- I/O callbacks ---------------------------------------------------- */

static void conn_read(struct http_conn *c)
{
	bool discard = c->lingering || c->streaming;
	if (!c->rbuf) {
		c->rbuf = malloc(HTTP_RBUF_SIZE);
		if (!c->rbuf) {
			log_warn("http: conn %llu (%s): out of memory",
				 (unsigned long long)c->id, c->peer);
			conn_close(c, "out of memory");
			return;
		}
	}
	if (discard)
		c->rpos = c->rlen = 0;
	if (c->rpos) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	size_t room = HTTP_RBUF_SIZE - c->rlen;
	if (!room)
		return;
	for (;;) {
		ssize_t n = recv(c->fd, c->rbuf + c->rlen, room, 0);
		if (n > 0) {
			if (!discard) {
				c->rlen += (size_t)n;
			} else if (c->lingering) {
				c->linger_bytes += (size_t)n;
				if (c->linger_bytes > HTTP_LINGER_MAX)
					conn_close(c, "lingering input");
			}
			return;
		}
		if (n == 0) {
			c->peer_eof = true;
			ev_io_stop(c->srv->loop, &c->rio);
			/* A peer that stops sending while its request is
			 * outstanding or its stream open has gone away (curl
			 * and browsers never half-close): close now so the
			 * handler's later lookup finds nothing. Buffered
			 * complete requests are still answered. */
			if (discard || c->busy)
				conn_close(c, "peer closed");
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		conn_close(c, strerror(errno));
		return;
	}
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_conn *c = w->data;
	(void)loop;
	(void)revents;
	conn_read(c);
	conn_process(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_conn *c = w->data;
	(void)loop;
	(void)revents;
	if (!conn_flush(c))
		conn_process(c);
}

static void conn_kick_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct http_conn *c = w->data;
	(void)loop;
	(void)revents;
	conn_process(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct http_conn *c = w->data;
	(void)loop;
	(void)revents;
	if (c->lingering) {
		conn_close(c, "linger time over");
		return;
	}
	c->srv->ctr.timeouts++;
	log_debug("http: conn %llu (%s): idle timeout",
		  (unsigned long long)c->id, c->peer);
	conn_close(c, "idle timeout");
}

static void peer_name(const struct sockaddr_storage *ss, socklen_t sl,
		      char *out, size_t outlen)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	if (getnameinfo((const struct sockaddr *)ss, sl, host, sizeof(host),
			serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(out, outlen, "?");
		return;
	}
	if (ss->ss_family == AF_INET6)
		snprintf(out, outlen, "[%.46s]:%.8s", host, serv);
	else
		snprintf(out, outlen, "%.46s:%.8s", host, serv);
}

/* Over a connection limit (the client's if per_client, else the server's
 * with no idle connection to close): best-effort 503, then close without
 * ever creating a connection object. */
static void accept_reject(struct http_server *s, int fd,
			  const struct sockaddr_storage *ss, socklen_t sl,
			  bool per_client)
{
	char body[HTTP_ERROR_BODY_MAX], msg[96], details[64];
	char resp[HTTP_ERROR_BODY_MAX * 2];
	char drain[512];
	int limit = per_client ? s->cfg.client_conn_max : s->cfg.conn_max;

	if (per_client)
		s->ctr.rejected_client_limit++;
	else
		s->ctr.rejected_conn_limit++;
	if (ev_now(s->loop) - s->last_reject_log >= 1.0) {
		/* at most one line a second during a storm */
		char peer[HTTP_PEER_LEN];
		peer_name(ss, sl, peer, sizeof(peer));
		log_warn("http: %s connection limit %d reached (latest: %s); "
			 "%llu refused at the server's, %llu at a client's "
			 "so far",
			 per_client ? "per-client" : "server", limit, peer,
			 (unsigned long long)s->ctr.rejected_conn_limit,
			 (unsigned long long)s->ctr.rejected_client_limit);
		s->last_reject_log = ev_now(s->loop);
	}
	if (per_client) {
		snprintf(msg, sizeof(msg),
			 "Too many connections from this client (limit %d)",
			 limit);
		snprintf(details, sizeof(details),
			 "{\"limit\":%d,\"scope\":\"client\"}", limit);
	} else {
		snprintf(msg, sizeof(msg), "Too many connections (limit %d)",
			 limit);
		snprintf(details, sizeof(details), "{\"limit\":%d}", limit);
	}
	int n = build_error_body(body, sizeof(body), 503,
				 "TOO_MANY_CONNECTIONS", msg, details);
	int m = n < 0 ? -1
		      : snprintf(resp, sizeof(resp),
				 "HTTP/1.1 503 Service Unavailable\r\n"
				 "Date: %s\r\n"
				 "Content-Type: application/json\r\n"
				 "Content-Length: %d\r\n"
				 "Connection: close\r\n"
				 "Access-Control-Allow-Origin: *\r\n"
				 "Retry-After: 1\r\n"
				 "\r\n%s",
				 server_date(s), n, body);
	if (m > 0 && (size_t)m < sizeof(resp)) {
		ssize_t w;
		do
			w = send(fd, resp, (size_t)m,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		while (w < 0 && errno == EINTR);
	}
	shutdown(fd, SHUT_WR);
	/* Whatever already arrived is read so close() sends a FIN, not a RST
	 * that could destroy the 503 before the client reads it. */
	for (size_t total = 0; total < HTTP_REJECT_DRAIN;) {
		ssize_t r = recv(fd, drain, sizeof(drain), MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		total += (size_t)r;
	}
	close(fd);
}

static void conn_new(struct http_server *s, int fd,
		     const struct sockaddr_storage *ss, socklen_t sl,
		     const uint8_t key[HTTP_CLIENT_KEY_LEN])
{
	struct http_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		log_warn("http: out of memory for a connection");
		close(fd);
		return;
	}
	int one = 1;
	if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->srv = s;
	c->fd = fd;
	c->id = ++s->next_id;
	peer_name(ss, sl, c->peer, sizeof(c->peer));
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	c->cur_hdr = HDR_OTHER;
	buf_init(&c->url, HTTP_URL_MAX);
	/* values kept are a subset of the head */
	buf_init(&c->hdrs, HTTP_HEADER_MAX);
	buf_init(&c->body, s->cfg.body_max);
	buf_init(&c->wbuf, HTTP_WBUF_MAX);
	ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
	ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
	ev_init(&c->timer, conn_timer_cb);
	ev_idle_init(&c->kick, conn_kick_cb);
	c->rio.data = c->wio.data = c->timer.data = c->kick.data = c;

	struct http_conn **b = bucket_of(s, c->id);
	c->hnext = *b;
	*b = c;
	s->ctr.active++;
	c->client = client_attach(s, key);
	/* The first request head must arrive within the idle window. */
	conn_timer(c, s->cfg.idle_timeout);
	ev_io_start(s->loop, &c->rio);
	conn_idle_update(c);
}

/* Closes the connection idle longest; false if none is idle. */
static bool evict_idle(struct http_server *s, const char *why)
{
	struct http_conn *c = s->idle_oldest;
	if (!c)
		return false;
	s->ctr.evicted_idle++;
	conn_close(c, why);
	return true;
}

static void accept_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct http_server *s = w->data;
	(void)revents;
	ev_io_start(loop, &s->lio);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_server *s = w->data;
	(void)revents;
	for (int i = 0; i < HTTP_ACCEPT_PER_EVENT; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED ||
			    errno == EPROTO)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			log_warn("http: accept: %s; pausing accepts for %.1f s",
				 strerror(errno), HTTP_ACCEPT_BACKOFF);
			/* Out of descriptors below conn_max (a low
			 * RLIMIT_NOFILE): an idle connection's goes back
			 * when it is reaped, before the pause ends. */
			if (errno == EMFILE || errno == ENFILE)
				evict_idle(s, "evicted: out of descriptors");
			ev_io_stop(loop, &s->lio);
			ev_timer_stop(loop, &s->accept_backoff);
			ev_timer_set(&s->accept_backoff, HTTP_ACCEPT_BACKOFF,
				     0.);
			ev_timer_start(loop, &s->accept_backoff);
			return;
		}
		s->ctr.accepted++;
		uint8_t key[HTTP_CLIENT_KEY_LEN];
		client_key(&ss, key);
		if (client_conns(s, key) >= (uint32_t)s->cfg.client_conn_max) {
			accept_reject(s, fd, &ss, sl, true);
			continue;
		}
		if (s->ctr.active >= (uint64_t)s->cfg.conn_max &&
		    !evict_idle(s, "evicted: server full")) {
			accept_reject(s, fd, &ss, sl, false);
			continue;
		}
		conn_new(s, fd, &ss, sl, key);
	}
}

/* ---- server ----------------------------------------------------------- */

static int listen_on(const char *host, int port, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char portstr[16];
	int fd = -1, saved = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", port);
	int rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc) {
		set_err(err, errlen, "http: cannot resolve %s: %s", host,
			gai_strerror(rc));
		return -EINVAL;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int one = 1;
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
			       sizeof(one)) == 0 &&
		    bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, HTTP_LISTEN_BACKLOG) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		set_err(err, errlen, "http: cannot listen on %s:%d: %s", host,
			port, strerror(saved ? saved : EADDRNOTAVAIL));
		return -(saved ? saved : EADDRNOTAVAIL);
	}
	return fd;
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}

/* Frees the server struct and its tables (not its connections). */
static void server_free_tables(struct http_server *s)
{
	free(s->buckets);
	free(s->clients);
	free(s->client_heads);
	free(s);
}

struct http_server *http_server_new(struct ev_loop *loop,
				    const struct http_server_config *cfg,
				    http_handler_fn on_request, void *ud,
				    char *err, size_t errlen)
{
	if (!loop || !cfg || !on_request) {
		set_err(err, errlen, "http: missing loop, config or handler");
		return NULL;
	}
	if (cfg->port < 0 || cfg->port > 65535) {
		set_err(err, errlen, "http: port %d out of range 0..65535",
			cfg->port);
		return NULL;
	}
	if (cfg->body_max > HTTP_BODY_MAX_LIMIT) {
		set_err(err, errlen, "http: body_max %zu above the limit %d",
			cfg->body_max, HTTP_BODY_MAX_LIMIT);
		return NULL;
	}
	if (cfg->conn_max < 0 || cfg->conn_max > HTTP_CONN_MAX_LIMIT) {
		set_err(err, errlen, "http: conn_max %d out of range 0..%d",
			cfg->conn_max, HTTP_CONN_MAX_LIMIT);
		return NULL;
	}
	if (cfg->client_conn_max < 0 ||
	    cfg->client_conn_max > HTTP_CONN_MAX_LIMIT) {
		set_err(err, errlen,
			"http: client_conn_max %d out of range 0..%d",
			cfg->client_conn_max, HTTP_CONN_MAX_LIMIT);
		return NULL;
	}
	if (!isfinite(cfg->idle_timeout) || cfg->idle_timeout < 0) {
		set_err(err, errlen, "http: idle_timeout must be >= 0");
		return NULL;
	}

	struct http_server *s = calloc(1, sizeof(*s));
	if (!s) {
		set_err(err, errlen, "http: out of memory");
		return NULL;
	}
	s->loop = loop;
	s->cfg = *cfg;
	s->cfg.host = NULL; /* not kept */
	if (!s->cfg.body_max)
		s->cfg.body_max = HTTP_BODY_MAX_DEFAULT;
	if (!s->cfg.conn_max)
		s->cfg.conn_max = HTTP_CONN_MAX_DEFAULT;
	if (!s->cfg.client_conn_max)
		s->cfg.client_conn_max = HTTP_CLIENT_CONN_MAX_DEFAULT;
	if (s->cfg.idle_timeout <= 0)
		s->cfg.idle_timeout = HTTP_IDLE_TIMEOUT_DEFAULT;
	s->on_request = on_request;
	s->ud = ud;
	s->last_reject_log = -1e9;
	s->nbuckets = 16;
	while (s->nbuckets < (size_t)s->cfg.conn_max)
		s->nbuckets <<= 1;
	uint32_t nclients = HTTP_CLIENTS_MAX(s->cfg.conn_max);
	s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
	s->clients = calloc(nclients, sizeof(*s->clients));
	s->client_heads = malloc(s->nbuckets * sizeof(*s->client_heads));
	if (!s->buckets || !s->clients || !s->client_heads) {
		set_err(err, errlen, "http: out of memory");
		server_free_tables(s);
		return NULL;
	}
	for (size_t i = 0; i < s->nbuckets; i++)
		s->client_heads[i] = HTTP_CLIENT_NONE;
	for (uint32_t i = 0; i < nclients; i++)
		s->clients[i].next =
		    i + 1 < nclients ? i + 1 : HTTP_CLIENT_NONE;
	s->client_free = 0;
	randombytes_buf(s->client_hkey, sizeof(s->client_hkey));

	const char *host = cfg->host && *cfg->host ? cfg->host : "0.0.0.0";
	s->lfd = listen_on(host, cfg->port, err, errlen);
	if (s->lfd < 0) {
		server_free_tables(s);
		return NULL;
	}
	s->port = bound_port(s->lfd);
	if (s->port < 0) {
		set_err(err, errlen, "http: getsockname: %s",
			strerror(-s->port));
		close(s->lfd);
		server_free_tables(s);
		return NULL;
	}
	ev_io_init(&s->lio, accept_cb, s->lfd, EV_READ);
	ev_init(&s->accept_backoff, accept_backoff_cb);
	ev_idle_init(&s->reap, reap_cb);
	ev_prepare_init(&s->flusher, flusher_cb);
	s->lio.data = s->accept_backoff.data = s->reap.data = s;
	s->flusher.data = s;
	ev_io_start(loop, &s->lio);
	ev_prepare_start(loop, &s->flusher);
	return s;
}

void http_server_free(struct http_server *s)
{
	if (!s)
		return;
	ev_io_stop(s->loop, &s->lio);
	ev_timer_stop(s->loop, &s->accept_backoff);
	ev_idle_stop(s->loop, &s->reap);
	ev_prepare_stop(s->loop, &s->flusher);
	/* Responses given since the loop last ran (the 503s for requests
	 * still in flight at shutdown) go out before the connections close. */
	flushq_run(s, false);
	close(s->lfd);
	clients_check(s);
	for (size_t i = 0; i < s->nbuckets; i++) {
		while (s->buckets[i]) {
			struct http_conn *c = s->buckets[i];
			s->buckets[i] = c->hnext;
			conn_destroy(c);
		}
	}
	while (s->closing) {
		struct http_conn *c = s->closing;
		s->closing = c->hnext;
		conn_destroy(c);
	}
	server_free_tables(s);
}

int http_server_port(const struct http_server *s)
{
	return s->port;
}

void http_server_set_close_cb(struct http_server *s, http_close_fn on_close)
{
	s->on_close = on_close;
}

const struct http_counters *http_server_counters(const struct http_server *s)
{
	return &s->ctr;
}
