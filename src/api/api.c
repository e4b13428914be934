/*
 * api — the HTTP API process. Owns no state: each request is matched to a
 * route, translated into an ipc.proto Request for the membership process,
 * and the Reply rendered as the spec's JSON.
 *
 * Requests in flight live in a fixed slot table (API_PENDING_MAX). A
 * request id carries its slot in the low bits and a generation above them,
 * so a late reply for a slot that has since been reused is recognised and
 * dropped. A request whose reply does not come within ipc_timeout, or that
 * is in flight when membership goes away, is answered 503 at once: a
 * client is never left hanging.
 */
#include "proxystone/api.h"
#include "proxystone/config.h"
#include "proxystone/http.h"
#include "proxystone/ipc.h"
#include "proxystone/json.h"
#include "proxystone/log.h"
#include "proxystone/routes.h"
#include "proxystone/supervisor.h"
#include "proxystone/timeutil.h"

#include <assert.h>
#include <errno.h>
#include <ev.h>
#include <http_parser.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

/* In-flight requests: each HTTP connection has at most one (requests on a
 * connection are handled in order), so this covers conn_max up to 4096. */
#define API_PENDING_BITS 12
#define API_PENDING_MAX (1u << API_PENDING_BITS)
/* Response body bound: a listing of 10,000 nodes is ~5 MB of JSON. */
#define API_RESPONSE_MAX (32u * 1024 * 1024)
/* Reconnect period while membership is down: the first retries come fast
 * (membership starts in a few ms beside us), then back off to a period
 * that costs nothing yet keeps a restart under a second of 503s. */
#define API_RECONNECT_FIRST 0.002
#define API_RECONNECT_INTERVAL 0.1
/* Sweep period for timed-out requests. */
#define API_TIMEOUT_SWEEP 0.05
/* How often the api tells membership its connection count (gossiped as
 * heartbeat data). */
#define API_REPORT_INTERVAL 2.0
/* Descriptors the api process needs besides its HTTP connections (the
 * listener, the membership socket, the loop's, stdio), with headroom. */
#define API_FD_RESERVE 64
/* Open event streams (dashboards) per node; more get 503. */
#define API_SSE_MAX 256
/* SSE comment line period: keeps proxies and browsers from timing out. */
#define API_SSE_PING_INTERVAL 15.0
/* Request id of our event subscription; pending ids are >= API_PENDING_MAX. */
#define API_SUBSCRIBE_ID 1
/* One rendered event; a node at its size bounds fits. */
#define API_EVENT_MAX (256 * 1024)
/* Read responses kept for repeated GETs. A cached body is served only
 * while membership is connected, no registry/service event arrived since
 * it was rendered (events invalidate the whole cache at once), and it is
 * younger than API_CACHE_STALE_MAX: so a status change is never hidden,
 * and timestamps like lastSeen are at most this stale. Under load this
 * turns thousands of identical renders per second into a handful.
 * Past API_CACHE_TTL the entry is still served while one request renders
 * its successor (stale-while-revalidate): no client waits on membership
 * for a cached read, which halved p99 under load (make bench). */
#define API_CACHE_SLOTS 16
#define API_CACHE_TTL 0.1
#define API_CACHE_STALE_MAX 0.5
/* Key: route, path id and query string; longer queries are not cached. */
#define API_CACHE_KEY_MAX 256
/* A response larger than this is not cached; a 10,000-node listing
 * (~4 MB) still is: re-rendering it costs ~30 ms of CPU. */
#define API_CACHE_BODY_MAX (8u * 1024 * 1024)
/* Distinct (route, status) pairs we count; more than the API can produce. */
#define API_STATUS_SLOTS 24

struct pending {
	uint64_t req_id; /* 0: slot free */
	uint64_t conn_id;
	struct route_match match;
	double sent_at;			   /* monotonic */
	char cache_key[API_CACHE_KEY_MAX]; /* "" = not cacheable */
	uint64_t cache_gen;		   /* cache generation when sent */
	/* Identical reads in flight share one IPC request: a follower sends
	 * nothing and is answered with its leader's response. */
	uint64_t leader; /* leader's req_id; 0 = leads */
};

struct cache_entry {
	char key[API_CACHE_KEY_MAX]; /* "" = empty slot */
	enum route_id route;
	struct buf body;
	double at;	     /* monotonic, its request was sent */
	double refresh_sent; /* monotonic, last background refresh */
	uint64_t gen;	     /* cache generation it belongs to */
};

struct api {
	const struct config *cfg;
	struct ev_loop *loop;
	struct http_server *http;
	struct ipc_conn *ipc;
	ev_timer reconnect, sweep, report, sse_ping;
	/* Server-Sent Events: open streams and what hello tells them. */
	uint64_t sse[API_SSE_MAX];
	size_t nsse;
	char self_id[NODE_ID_MAX + 1];
	uint64_t registry_version;
	uint64_t sse_dropped;
	ev_signal sigterm, sigint;
	struct pending slots[API_PENDING_MAX];
	uint32_t free_slots[API_PENDING_MAX];
	size_t nfree;
	uint64_t generation;
	bool logged_down;
	int sup_fd;	 /* supervision pipe, -1 standalone */
	bool told_ready; /* readiness is sent once, on the first connect */
	/* Counters for /metrics. */
	struct {
		int status;
		uint64_t count;
	} counts[ROUTE_MAX][API_STATUS_SLOTS];
	uint64_t ipc_unavailable, ipc_timeouts, ipc_bad_replies, ipc_reconnects;
	uint64_t unauthorized;
	struct cache_entry cache[API_CACHE_SLOTS];
	uint64_t cache_gen; /* bumped by every event: all entries stale */
	size_t cache_next;  /* round-robin replacement */
	uint64_t cache_hits, cache_misses, cache_refreshes, collapsed;
};

static void count(struct api *a, enum route_id r, int status)
{
	for (int i = 0; i < API_STATUS_SLOTS; i++) {
		if (a->counts[r][i].status == status ||
		    a->counts[r][i].status == 0) {
			a->counts[r][i].status = status;
			a->counts[r][i].count++;
			return;
		}
	}
}

static void respond_json(struct api *a, struct http_conn *c, enum route_id r,
			 int status, const char *extra, struct buf *body)
{
	count(a, r, status);
	http_respond(c, status, "application/json", extra, body->base,
		     body->len);
}

static void respond_error(struct api *a, struct http_conn *c, enum route_id r,
			  const struct api_error *e, const char *extra)
{
	struct buf body;
	buf_init(&body, API_RESPONSE_MAX);
	route_render_error(e, &body);
	respond_json(a, c, r, e->status, extra, &body);
	buf_fini(&body);
}

static void respond_unavailable(struct api *a, struct http_conn *c,
				enum route_id r, bool timeout)
{
	struct api_error e;
	if (timeout)
		api_error_set(
		    &e, 503, "MEMBERSHIP_UNAVAILABLE",
		    "The membership process did not answer within %.1f s",
		    a->cfg->ipc_timeout);
	else
		api_error_set(
		    &e, 503, "MEMBERSHIP_UNAVAILABLE",
		    "The membership process is not running; retry shortly");
	respond_error(a, c, r, &e, "Retry-After: 1\r\n");
}

/* ---- /metrics ----------------------------------------------------------- */

static void metric_head(struct buf *b, const char *name, const char *type,
			const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Raises the soft RLIMIT_NOFILE, within the hard one, so conn_max
 * connections fit: the usual soft limit, 1024, is exactly the default
 * conn_max with nothing left for the process's other descriptors. */
static void api_raise_fd_limit(int conn_max)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)conn_max + API_FD_RESERVE;
	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= want)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
		rl.rlim_cur = rl.rlim_max;
	else
		rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < want)
		log_warn("api: open-file limit %llu is below max_connections "
			 "%d + %d; when descriptors run out, idle connections "
			 "are closed for new ones",
			 (unsigned long long)rl.rlim_cur, conn_max,
			 API_FD_RESERVE);
}

static void render_metrics(struct api *a, const Ps__Reply *r, struct buf *b)
{
	metric_head(b, "proxystone_http_requests_total", "counter",
		    "HTTP requests by route and status");
	for (int rt = 0; rt < ROUTE_MAX; rt++)
		for (int i = 0; i < API_STATUS_SLOTS && a->counts[rt][i].status;
		     i++)
			buf_printf(
			    b,
			    "proxystone_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
			    route_name(rt), a->counts[rt][i].status,
			    (unsigned long long)a->counts[rt][i].count);
	const struct http_counters *hc = http_server_counters(a->http);
	metric_head(b, "proxystone_http_connections", "gauge",
		    "Open HTTP connections");
	buf_printf(b, "proxystone_http_connections %llu\n",
		   (unsigned long long)hc->active);
	metric_head(b, "proxystone_http_rejected_total", "counter",
		    "HTTP requests or connections refused by a bound");
	buf_printf(
	    b,
	    "proxystone_http_rejected_total{reason=\"connection_limit\"} %llu\n"
	    "proxystone_http_rejected_total{reason=\"client_limit\"} %llu\n"
	    "proxystone_http_rejected_total{reason=\"evicted_idle\"} %llu\n"
	    "proxystone_http_rejected_total{reason=\"parse_error\"} %llu\n"
	    "proxystone_http_rejected_total{reason=\"body_too_large\"} %llu\n"
	    "proxystone_http_rejected_total{reason=\"header_too_large\"} %llu\n"
	    "proxystone_http_rejected_total{reason=\"idle_timeout\"} %llu\n",
	    (unsigned long long)hc->rejected_conn_limit,
	    (unsigned long long)hc->rejected_client_limit,
	    (unsigned long long)hc->evicted_idle,
	    (unsigned long long)hc->parse_errors,
	    (unsigned long long)hc->too_large,
	    (unsigned long long)hc->header_too_large,
	    (unsigned long long)hc->timeouts);
	metric_head(b, "proxystone_ipc_errors_total", "counter",
		    "api-side IPC failures talking to membership");
	buf_printf(b,
		   "proxystone_ipc_errors_total{reason=\"unavailable\"} %llu\n"
		   "proxystone_ipc_errors_total{reason=\"timeout\"} %llu\n"
		   "proxystone_ipc_errors_total{reason=\"bad_reply\"} %llu\n"
		   "proxystone_ipc_errors_total{reason=\"reconnect\"} %llu\n",
		   (unsigned long long)a->ipc_unavailable,
		   (unsigned long long)a->ipc_timeouts,
		   (unsigned long long)a->ipc_bad_replies,
		   (unsigned long long)a->ipc_reconnects);
	metric_head(b, "proxystone_http_unauthorized_total", "counter",
		    "Requests refused for a missing or wrong bearer token");
	buf_printf(b, "proxystone_http_unauthorized_total %llu\n",
		   (unsigned long long)a->unauthorized);
	metric_head(b, "proxystone_http_cache_total", "counter",
		    "Read responses served from the cache, or rendered");
	buf_printf(b,
		   "proxystone_http_cache_total{result=\"hit\"} %llu\n"
		   "proxystone_http_cache_total{result=\"miss\"} %llu\n"
		   "proxystone_http_cache_total{result=\"shared\"} %llu\n",
		   (unsigned long long)a->cache_hits,
		   (unsigned long long)a->cache_misses,
		   (unsigned long long)a->collapsed);
	metric_head(b, "proxystone_http_cache_refreshes_total", "counter",
		    "Cached reads re-rendered in the background while the "
		    "previous copy was served");
	buf_printf(b, "proxystone_http_cache_refreshes_total %llu\n",
		   (unsigned long long)a->cache_refreshes);
	metric_head(b, "proxystone_sse_streams", "gauge",
		    "Open Server-Sent Event streams");
	buf_printf(b, "proxystone_sse_streams %zu\n", a->nsse);
	metric_head(b, "proxystone_sse_dropped_total", "counter",
		    "Event streams ended because the reader fell behind");
	buf_printf(b, "proxystone_sse_dropped_total %llu\n",
		   (unsigned long long)a->sse_dropped);
	const struct sup_stats *ss = sup_stats_get();
	metric_head(b, "proxystone_child_restarts_total", "counter",
		    "Child processes restarted by the supervisor");
	for (int i = 0; i < SUP_ROLE_MAX; i++)
		if (ss->enabled[i] || ss->restarts[i])
			buf_printf(
			    b,
			    "proxystone_child_restarts_total{role=\"%s\"} %llu\n",
			    sup_role_name(i),
			    (unsigned long long)ss->restarts[i]);
	metric_head(b, "proxystone_child_hangs_total", "counter",
		    "Child processes killed for missing keepalives");
	for (int i = 0; i < SUP_ROLE_MAX; i++)
		if (ss->enabled[i] || ss->hangs[i])
			buf_printf(
			    b,
			    "proxystone_child_hangs_total{role=\"%s\"} %llu\n",
			    sup_role_name(i), (unsigned long long)ss->hangs[i]);
	metric_head(b, "proxystone_membership_up", "gauge",
		    "1 if the membership process answered this scrape");
	buf_printf(b, "proxystone_membership_up %d\n", r ? 1 : 0);
	if (!r)
		return;
	const char *last = "";
	for (size_t i = 0; i < r->n_counters; i++) {
		const Ps__Counter *c = r->counters[i];
		if (strcmp(c->name, last)) {
			bool total =
			    strlen(c->name) > 6 &&
			    !strcmp(c->name + strlen(c->name) - 6, "_total");
			metric_head(b, c->name, total ? "counter" : "gauge",
				    c->help ? c->help : c->name);
			last = c->name;
		}
		if (c->labels)
			buf_printf(b, "%s{%s} %.17g\n", c->name, c->labels,
				   c->value);
		else
			buf_printf(b, "%s %.17g\n", c->name, c->value);
	}
}

static void respond_metrics(struct api *a, struct http_conn *c,
			    const Ps__Reply *r)
{
	struct buf b;
	buf_init(&b, API_RESPONSE_MAX);
	render_metrics(a, r, &b);
	count(a, ROUTE_METRICS, 200);
	http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL,
		     b.base, b.len);
	buf_fini(&b);
}

/* ---- read cache --------------------------------------------------------- */

static bool cache_key(const struct route_match *m,
		      const struct http_request *req, char *key)
{
	if (!(m->flags & ROUTE_CACHEABLE)) /* only ever set on GET */
		return false;
	int n = snprintf(key, API_CACHE_KEY_MAX, "%d/%s?%.*s", (int)m->route,
			 m->id, (int)req->query.len, req->query.base);
	return n > 0 && n < API_CACHE_KEY_MAX;
}

/* The entry for `key` that may be served, or NULL. *refresh: it is past
 * its TTL and no refresh was sent for it within the TTL: the caller sends
 * one (and sets refresh_sent). */
static struct cache_entry *cache_find(struct api *a, const char *key,
				      bool *refresh)
{
	double now = time_mono();
	for (size_t i = 0; i < API_CACHE_SLOTS; i++) {
		struct cache_entry *e = &a->cache[i];
		if (!e->key[0] || e->gen != a->cache_gen ||
		    now - e->at >= API_CACHE_STALE_MAX || strcmp(e->key, key))
			continue;
		*refresh = now - e->at >= API_CACHE_TTL &&
			   now - e->refresh_sent >= API_CACHE_TTL;
		return e;
	}
	return NULL;
}

static void cache_store(struct api *a, const struct pending *p,
			const struct buf *body)
{
	if (!p->cache_key[0] || p->cache_gen != a->cache_gen ||
	    body->len > API_CACHE_BODY_MAX)
		return;
	struct cache_entry *e = NULL;
	for (size_t i = 0; i < API_CACHE_SLOTS && !e; i++)
		if (!strcmp(a->cache[i].key, p->cache_key))
			e = &a->cache[i];
	if (!e) {
		e = &a->cache[a->cache_next];
		a->cache_next = (a->cache_next + 1) % API_CACHE_SLOTS;
	}
	buf_reset(&e->body);
	if (buf_append(&e->body, body->base, body->len)) {
		e->key[0] = '\0';
		return;
	}
	strcpy(e->key, p->cache_key);
	e->route = p->match.route;
	e->at = p->sent_at; /* the data is younger than the request */
	e->refresh_sent = 0;
	e->gen = a->cache_gen;
}

static void cache_invalidate(struct api *a)
{
	a->cache_gen++;
}

static void cache_fini(struct api *a)
{
	for (size_t i = 0; i < API_CACHE_SLOTS; i++)
		buf_fini(&a->cache[i].body);
}

/* ---- Server-Sent Events -------------------------------------------------- */

static void sse_remove(struct api *a, size_t i)
{
	a->sse[i] = a->sse[--a->nsse];
}

/* Writes one event to every stream; a stream that cannot keep up ends. */
static void sse_broadcast(struct api *a, const char *text, size_t len)
{
	for (size_t i = 0; i < a->nsse;) {
		struct http_conn *c = http_server_conn(a->http, a->sse[i]);
		if (!c) {
			sse_remove(a, i);
			continue;
		}
		if (http_stream_write(c, text, len)) {
			a->sse_dropped++;
			http_stream_end(c);
			sse_remove(a, i);
			continue;
		}
		i++;
	}
}

static void sse_hello(struct api *a, struct buf *b)
{
	struct json_writer w;
	buf_puts(b, "event: hello\ndata: ");
	jw_init(&w, b);
	jw_object_begin(&w);
	jw_key(&w, "nodeId");
	jw_string(&w, a->self_id[0] ? a->self_id : NULL);
	jw_key(&w, "role");
	jw_string(&w, config_role_name(a->cfg->role));
	jw_key(&w, "registryVersion");
	jw_int(&w, (long long)a->registry_version);
	jw_object_end(&w);
	jw_finish(&w);
	buf_puts(b, "\n\n");
}

static void sse_event(struct api *a, const Ps__Event *ev)
{
	if (ev->has_registry_version)
		a->registry_version = ev->registry_version;
	if (a->nsse == 0)
		return;
	struct buf b;
	buf_init(&b, API_EVENT_MAX);
	buf_printf(&b, "event: %s\ndata: ", ev->kind);
	struct json_writer w;
	jw_init(&w, &b);
	jw_object_begin(&w);
	if (ev->type) {
		jw_key(&w, "type");
		jw_string(&w, ev->type);
	}
	if (ev->id) {
		jw_key(&w, "id");
		jw_string(&w, ev->id);
	}
	if (ev->node) {
		jw_key(&w, "status");
		jw_string(&w, node_status_name(ev->node->status));
		jw_key(&w, "node");
		route_write_node(&w, ev->node, true);
	}
	if (ev->service) {
		char ts[ISO8601_LEN];
		time_iso8601(ev->service->changed_at_ms, ts);
		jw_key(&w, "mode");
		jw_string(&w, ev->service->serving ? "serving" : "maintenance");
		jw_key(&w, "enabled");
		jw_bool(&w, ev->service->serving);
		jw_key(&w, "changedAt");
		jw_string(&w, ts);
	}
	jw_key(&w, "registryVersion");
	jw_int(&w, (long long)ev->registry_version);
	jw_object_end(&w);
	if (jw_finish(&w) == 0 && buf_puts(&b, "\n\n") == 0)
		sse_broadcast(a, b.base, b.len);
	buf_fini(&b);
}

static void on_sse_ping(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	static const char ping[] = ": ping\n\n";
	sse_broadcast(w->data, ping, sizeof(ping) - 1);
}

static void sse_open(struct api *a, struct http_conn *c)
{
	struct api_error e;
	if (a->nsse >= API_SSE_MAX) {
		api_error_set(&e, 503, "TOO_MANY_STREAMS",
			      "More than %d event streams are open",
			      API_SSE_MAX);
		respond_error(a, c, ROUTE_EVENTS, &e, "Retry-After: 5\r\n");
		return;
	}
	count(a, ROUTE_EVENTS, 200);
	if (http_stream_begin(c, 200, "text/event-stream",
			      "Cache-Control: no-cache\r\n"))
		return;
	struct buf b;
	buf_init(&b, API_EVENT_MAX);
	sse_hello(a, &b);
	/* Tell the browser how soon to reconnect after a drop. */
	buf_puts(&b, "retry: 1000\n\n");
	if (http_stream_write(c, b.base, b.len) == 0)
		a->sse[a->nsse++] = http_conn_id(c);
	else
		http_stream_end(c);
	buf_fini(&b);
}

static void on_http_close(struct http_server *s, uint64_t conn_id, void *ud)
{
	(void)s;
	struct api *a = ud;
	for (size_t i = 0; i < a->nsse; i++) {
		if (a->sse[i] == conn_id) {
			sse_remove(a, i);
			return;
		}
	}
}

static void subscribe(struct api *a)
{
	Ps__Request req = PS__REQUEST__INIT;
	Ps__Empty empty = PS__EMPTY__INIT;
	req.id = API_SUBSCRIBE_ID;
	req.body_case = PS__REQUEST__BODY_SUBSCRIBE;
	req.subscribe = &empty;
	ipc_conn_send(a->ipc, &req.base);
}

/* ---- IPC client --------------------------------------------------------- */

static struct pending *slot_take(struct api *a)
{
	if (a->nfree == 0)
		return NULL;
	uint32_t i = a->free_slots[--a->nfree];
	struct pending *p = &a->slots[i];
	p->req_id = (++a->generation << API_PENDING_BITS) | i;
	p->cache_key[0] = '\0';
	p->leader = 0;
	return p;
}

static void slot_release(struct api *a, struct pending *p)
{
	uint32_t i = (uint32_t)(p - a->slots);
	p->req_id = 0;
	a->free_slots[a->nfree++] = i;
}

static struct pending *slot_find(struct api *a, uint64_t req_id)
{
	struct pending *p = &a->slots[req_id & (API_PENDING_MAX - 1)];
	return p->req_id == req_id && req_id ? p : NULL;
}

/* Answers the requests that waited on leader p with its response (status
 * 0: it has none, they get 503). */
static void answer_followers(struct api *a, struct pending *p, int status,
			     const char *extra, const struct buf *body)
{
	if (!p->cache_key[0])
		return;
	for (uint32_t i = 0; i < API_PENDING_MAX; i++) {
		struct pending *f = &a->slots[i];
		if (!f->req_id || f->leader != p->req_id)
			continue;
		struct http_conn *c = http_server_conn(a->http, f->conn_id);
		if (c && status) {
			respond_json(a, c, f->match.route, status, extra,
				     (struct buf *)body);
		} else if (c) {
			respond_unavailable(a, c, f->match.route, false);
		}
		slot_release(a, f);
	}
}

/* A leader for `key` still in flight, to share its answer; NULL if none. */
static struct pending *find_leader(struct api *a, const char *key)
{
	for (uint32_t i = 0; i < API_PENDING_MAX; i++) {
		struct pending *p = &a->slots[i];
		if (p->req_id && !p->leader && p->cache_gen == a->cache_gen &&
		    p->cache_key[0] && !strcmp(p->cache_key, key))
			return p;
	}
	return NULL;
}

/* Gives up on request p without membership's answer: /metrics still
 * answers with the api's own counters, everything else gets 503. */
static void abandon(struct api *a, struct pending *p, bool timeout)
{
	struct http_conn *c = http_server_conn(a->http, p->conn_id);
	if (c) {
		if (p->match.answer == ROUTE_ANSWER_METRICS)
			respond_metrics(a, c, NULL);
		else
			respond_unavailable(a, c, p->match.route, timeout);
	}
	slot_release(a, p);
}

/* Answers every request in flight with 503 (membership went away). */
static void fail_all_pending(struct api *a)
{
	for (uint32_t i = 0; i < API_PENDING_MAX; i++) {
		if (!a->slots[i].req_id)
			continue;
		a->ipc_unavailable++;
		abandon(a, &a->slots[i], false);
	}
}

static void on_reply(struct ipc_conn *conn, const uint8_t *data, size_t len,
		     void *ud)
{
	(void)conn;
	struct api *a = ud;
	Ps__Reply *r = ps__reply__unpack(NULL, len, data);
	if (!r) {
		a->ipc_bad_replies++;
		log_warn("undecodable reply from membership (%zu bytes)", len);
		return;
	}
	if (r->id == API_SUBSCRIBE_ID) {
		cache_invalidate(a);
		if (r->event)
			sse_event(a, r->event);
		else if (r->self_id)
			snprintf(a->self_id, sizeof(a->self_id), "%s",
				 r->self_id);
		if (!r->event && r->has_registry_version)
			a->registry_version = r->registry_version;
		ps__reply__free_unpacked(r, NULL);
		return;
	}
	struct pending *p = slot_find(a, r->id);
	if (!p) {
		/* Timed out earlier and already answered. */
		ps__reply__free_unpacked(r, NULL);
		return;
	}
	struct http_conn *c = http_server_conn(a->http, p->conn_id);
	double rtt = (time_mono() - p->sent_at) * 1000.0;
	if (p->match.answer == ROUTE_ANSWER_METRICS && !r->error) {
		if (c)
			respond_metrics(a, c, r);
	} else if (p->match.answer == ROUTE_ANSWER_PROTOBUF && !r->error) {
		/* The membership reply as is: nodes + registry version. */
		count(a, p->match.route, 200);
		if (c)
			http_respond(c, 200, "application/x-protobuf", NULL,
				     (const char *)data, len);
	} else {
		/* Rendered even if the client left: followers may wait on it.
		 */
		struct buf body;
		buf_init(&body, API_RESPONSE_MAX);
		char extra[CONFIG_STR_MAX + 64] = "";
		struct api_error e;
		int status;
		if (r->error) {
			api_error_set(&e, route_error_status(r->error->code),
				      r->error->code, "%s", r->error->message);
			/* A field name, when membership names one, is the
			 * whole of details; else its details_json as is. */
			if (r->error->field)
				snprintf(e.field, sizeof(e.field), "%s",
					 r->error->field);
			else if (r->error->details_json &&
				 strlen(r->error->details_json) <
				     sizeof(e.details))
				strcpy(e.details, r->error->details_json);
			if (r->coordinator_url)
				snprintf(extra, sizeof(extra),
					 "X-Coordinator: %.200s\r\n",
					 r->coordinator_url);
			route_render_error(&e, &body);
			status = e.status;
		} else {
			status = route_render_reply(&p->match, r, a->cfg, rtt,
						    time_wall_ms(), &body);
			if (status == 200) {
				cache_store(a, p, &body);
			} else {
				api_error_set(&e, 500, "INTERNAL_ERROR",
					      "The response exceeds %u bytes",
					      API_RESPONSE_MAX);
				buf_reset(&body);
				route_render_error(&e, &body);
				status = 500;
			}
		}
		if (c)
			respond_json(a, c, p->match.route, status,
				     extra[0] ? extra : NULL, &body);
		answer_followers(a, p, status, extra[0] ? extra : NULL, &body);
		buf_fini(&body);
	}
	slot_release(a, p);
	ps__reply__free_unpacked(r, NULL);
}

static void on_ipc_close(struct ipc_conn *conn, int reason, void *ud)
{
	(void)conn;
	struct api *a = ud;
	a->ipc = NULL;
	cache_invalidate(a);
	log_warn("membership connection lost (%s); reconnecting",
		 reason ? strerror(-reason) : "closed");
	a->logged_down = true;
	fail_all_pending(a);
	a->reconnect.repeat = API_RECONNECT_FIRST;
	ev_timer_again(a->loop, &a->reconnect);
}

static void try_connect(struct api *a)
{
	if (a->ipc)
		return;
	int fd = ipc_connect(a->cfg->socket_path);
	if (fd < 0) {
		if (!a->logged_down)
			log_info("membership not reachable yet at %s (%s)",
				 a->cfg->socket_path, strerror(-fd));
		a->logged_down = true;
		return;
	}
	a->ipc = ipc_conn_new(a->loop, fd, on_reply, on_ipc_close, a);
	if (a->ipc) {
		a->ipc_reconnects++;
		log_info("connected to membership");
		a->logged_down = false;
		subscribe(a);
		/* Ready means able to answer, which needs membership. */
		if (!a->told_ready && a->sup_fd >= 0)
			child_notify_ready(a->sup_fd);
		a->told_ready = true;
	}
}

static void on_reconnect(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct api *a = w->data;
	try_connect(a);
	if (a->ipc) {
		ev_timer_stop(a->loop, &a->reconnect);
		w->repeat = API_RECONNECT_FIRST;
		return;
	}
	w->repeat = w->repeat * 2 < API_RECONNECT_INTERVAL
			? w->repeat * 2
			: API_RECONNECT_INTERVAL;
	ev_timer_again(a->loop, w);
}

static void on_report(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct api *a = w->data;
	if (!a->ipc)
		return;
	Ps__Request req = PS__REQUEST__INIT;
	Ps__ReportReq rep = PS__REPORT_REQ__INIT;
	rep.http_connections = (uint32_t)http_server_counters(a->http)->active;
	req.id = 0; /* one-way: membership sends no reply */
	req.body_case = PS__REQUEST__BODY_REPORT;
	req.report = &rep;
	ipc_conn_send(a->ipc, &req.base);
}

static void on_sweep(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct api *a = w->data;
	double now = time_mono();
	for (uint32_t i = 0; i < API_PENDING_MAX; i++) {
		struct pending *p = &a->slots[i];
		if (!p->req_id || now - p->sent_at < a->cfg->ipc_timeout)
			continue;
		a->ipc_timeouts++;
		abandon(a, p, true);
	}
}

/* ---- HTTP --------------------------------------------------------------- */

/* Compares in time that depends only on the expected token's length. */
static bool token_equal(const char *got, size_t glen, const char *want)
{
	size_t wlen = strlen(want);
	unsigned diff = (unsigned)(glen != wlen);
	for (size_t i = 0; i < wlen; i++)
		diff |= (unsigned char)(i < glen ? got[i] : 0) ^
			(unsigned char)want[i];
	return diff == 0;
}

/* True if the request may proceed; answers 401 otherwise. */
static bool authorized(struct api *a, struct http_conn *c,
		       const struct http_request *req, enum route_id r,
		       unsigned flags)
{
	const char *token = a->cfg->api_token;
	if (!token[0])
		return true;
	if (!(flags & ROUTE_WRITE) &&
	    !((flags & ROUTE_AUTH_READS) && a->cfg->api_token_reads))
		return true;
	static const char scheme[] = "Bearer ";
	struct strview h = req->authorization;
	if (h.len > sizeof(scheme) - 1 &&
	    !strncasecmp(h.base, scheme, sizeof(scheme) - 1) &&
	    token_equal(h.base + sizeof(scheme) - 1,
			h.len - (sizeof(scheme) - 1), token))
		return true;
	a->unauthorized++;
	struct api_error e;
	api_error_set(
	    &e, 401, "UNAUTHORIZED",
	    h.len ? "The bearer token is not valid"
		  : "This endpoint needs Authorization: Bearer <api_token>");
	respond_error(a, c, r, &e,
		      "WWW-Authenticate: Bearer realm=\"proxystone\"\r\n");
	return false;
}

static void on_request(struct http_server *s, struct http_conn *c,
		       const struct http_request *req, void *ud)
{
	(void)s;
	struct api *a = ud;
	struct route_match m;
	struct api_error e;
	route_match(req->method, req->path.base, req->path.len, &m);

	if (m.route == ROUTE_UNKNOWN) {
		api_error_set(&e, 404, "NOT_FOUND", "No route for %s %.200s",
			      http_method_str(req->method), req->path.base);
		respond_error(a, c, m.route, &e, NULL);
		return;
	}
	if (!m.method_ok) {
		char allow[96];
		snprintf(allow, sizeof(allow), "Allow: %s\r\n", m.allow);
		api_error_set(&e, 405, "METHOD_NOT_ALLOWED",
			      "%s is not allowed on %s (allowed: %s)",
			      http_method_str(req->method), route_name(m.route),
			      m.allow);
		respond_error(a, c, m.route, &e, allow);
		return;
	}
	if (!authorized(a, c, req, m.route, m.flags))
		return;
	if (!a->cfg->cluster_enabled && (m.flags & ROUTE_CLUSTER)) {
		api_error_set(&e, 503, "CLUSTER_DISABLED",
			      "Cluster service is not enabled on this node");
		respond_error(a, c, m.route, &e, NULL);
		return;
	}
	if (m.answer == ROUTE_ANSWER_STREAM) {
		sse_open(a, c);
		return;
	}

	char key[API_CACHE_KEY_MAX];
	bool cacheable = a->ipc && cache_key(&m, req, key);
	if (cacheable) {
		bool refresh = false;
		struct cache_entry *hit = cache_find(a, key, &refresh);
		if (hit) {
			a->cache_hits++;
			respond_json(a, c, m.route, 200, NULL, &hit->body);
			/* hit->body may be replaced below: not used again. */
			if (!refresh || find_leader(a, key))
				return;
			/* Render the successor; no client waits on it. */
			hit->refresh_sent = time_mono();
			a->cache_refreshes++;
			c = NULL;
		} else {
			a->cache_misses++;
		}
	}

	Ps__Request ipc_req;
	if (route_build_request(&m, req->query.base, req->query.len,
				req->body.base, req->body.len,
				a->cfg->metadata_max, &ipc_req, &e)) {
		route_request_fini(&ipc_req);
		if (c)
			respond_error(a, c, m.route, &e, NULL);
		return;
	}
	if (!a->ipc) {
		route_request_fini(&ipc_req);
		a->ipc_unavailable++;
		if (m.answer == ROUTE_ANSWER_METRICS)
			respond_metrics(a, c, NULL);
		else
			respond_unavailable(a, c, m.route, false);
		return;
	}
	struct pending *p = slot_take(a);
	if (!p) {
		route_request_fini(&ipc_req);
		api_error_set(&e, 503, "OVERLOADED",
			      "More than %u requests in flight",
			      API_PENDING_MAX);
		if (c)
			respond_error(a, c, m.route, &e, "Retry-After: 1\r\n");
		return;
	}
	struct pending *leader = cacheable ? find_leader(a, key) : NULL;
	p->conn_id = c ? req->conn_id : 0;
	p->match = m;
	p->sent_at = time_mono();
	if (cacheable)
		strcpy(p->cache_key, key);
	else
		p->cache_key[0] = '\0';
	p->cache_gen = a->cache_gen;
	p->leader = leader ? leader->req_id : 0;
	if (leader) {
		a->collapsed++;
		route_request_fini(&ipc_req);
		return;
	}
	ipc_req.id = p->req_id;
	int rc = ipc_conn_send(a->ipc, &ipc_req.base);
	route_request_fini(&ipc_req);
	if (rc) {
		slot_release(a, p);
		a->ipc_unavailable++;
		if (c)
			respond_unavailable(a, c, m.route, false);
	}
}

static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int rev)
{
	(void)rev;
	log_info("stopping on %s", strsignal(w->signum));
	ev_break(loop, EVBREAK_ALL);
}

int api_main(const struct config *cfg, int sup_fd)
{
	/* A broken route table is a programming error: stop before serving. */
	char bad[160];
	int rc = route_table_check(bad, sizeof(bad));
	if (rc)
		log_error("api: %s", bad);
	assert(rc == 0);
	struct api *a = calloc(1, sizeof(*a));
	if (!a)
		return 1;
	a->cfg = cfg;
	a->sup_fd = sup_fd;
	for (size_t i = 0; i < API_CACHE_SLOTS; i++)
		buf_init(&a->cache[i].body, API_CACHE_BODY_MAX);
	for (uint32_t i = 0; i < API_PENDING_MAX; i++)
		a->free_slots[i] = API_PENDING_MAX - 1 - i;
	a->nfree = API_PENDING_MAX;
	signal(SIGPIPE, SIG_IGN);
	a->loop = ev_loop_new(EVFLAG_AUTO);
	if (!a->loop)
		return 1;

	api_raise_fd_limit(cfg->conn_max);
	struct http_server_config hc = {
	    .host = cfg->api_host,
	    .port = cfg->api_port,
	    .body_max = cfg->body_max,
	    .conn_max = cfg->conn_max,
	    .client_conn_max = cfg->client_conn_max,
	    .idle_timeout = cfg->idle_timeout,
	};
	char err[256];
	a->http =
	    http_server_new(a->loop, &hc, on_request, a, err, sizeof(err));
	if (!a->http) {
		log_error("cannot serve HTTP on %s:%d: %s", cfg->api_host,
			  cfg->api_port, err);
		return 1;
	}
	ev_timer_init(&a->reconnect, on_reconnect, 0, API_RECONNECT_FIRST);
	a->reconnect.data = a;
	ev_timer_init(&a->sweep, on_sweep, API_TIMEOUT_SWEEP,
		      API_TIMEOUT_SWEEP);
	a->sweep.data = a;
	ev_timer_start(a->loop, &a->sweep);
	http_server_set_close_cb(a->http, on_http_close);
	ev_timer_init(&a->sse_ping, on_sse_ping, API_SSE_PING_INTERVAL,
		      API_SSE_PING_INTERVAL);
	a->sse_ping.data = a;
	ev_timer_start(a->loop, &a->sse_ping);
	ev_timer_init(&a->report, on_report, API_REPORT_INTERVAL,
		      API_REPORT_INTERVAL);
	a->report.data = a;
	ev_timer_start(a->loop, &a->report);
	ev_signal_init(&a->sigterm, on_stop_signal, SIGTERM);
	ev_signal_init(&a->sigint, on_stop_signal, SIGINT);
	ev_signal_start(a->loop, &a->sigterm);
	ev_signal_start(a->loop, &a->sigint);
	if (sup_fd >= 0)
		child_keepalive_start(a->loop, sup_fd);
	try_connect(a);
	if (!a->ipc)
		ev_timer_again(a->loop, &a->reconnect);
	log_info("HTTP API on http://%s:%d/api", cfg->api_host,
		 http_server_port(a->http));

	ev_run(a->loop, 0);

	fail_all_pending(a);
	if (a->ipc)
		ipc_conn_close(a->ipc, 0);
	http_server_free(a->http);
	cache_fini(a);
	ev_loop_destroy(a->loop);
	free(a);
	return 0;
}
