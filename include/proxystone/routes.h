/*
 * routes — the Cluster API's HTTP surface: matching method + path to a
 * route, turning a request's JSON into an ipc.proto Request, and turning
 * the membership process's Reply into the spec's JSON.
 *
 * Every route is one row of the table in routes.c: its path, the methods
 * it takes, and per method the flags below, the request builder and the
 * renderer. Adding an endpoint means adding an enum value and a row (and,
 * today, a case in membership's handle()); api.c reads the flags, never
 * the route id, to decide on auth, caching and the cluster switch.
 * route_table_check() states the table's invariants; the api asserts them
 * at start-up and tests/unit/test_routes.c walks the table.
 *
 * Pure translation: no sockets, no clock reads except for timestamps the
 * caller passes in. The api process (api.c) moves the bytes.
 */
#ifndef PROXYSTONE_ROUTES_H
#define PROXYSTONE_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/ipc.pb-c.h"
#include "proxystone/buf.h"
#include "proxystone/node_schema.h"

struct config;

enum route_id {
	ROUTE_NODES,
	ROUTE_NODE,
	ROUTE_REGISTER,
	ROUTE_HEARTBEAT,
	ROUTE_STATUS,
	ROUTE_HEALTH,
	ROUTE_ENABLE_SERVING,
	ROUTE_DISABLE_SERVING,
	ROUTE_SERVICE_STATUS,
	ROUTE_METRICS,
	ROUTE_EVENTS,
	ROUTE_REPLICA, /* workers pull the registry here (protobuf) */
	ROUTE_UNKNOWN,
	ROUTE_MAX
};

/*
 * What a route (and method) is, as the checks in api.c's on_request() see
 * it, in the order they run: WRITE (the token), CLUSTER, AUTH_READS and
 * CACHEABLE. Coordinator-only and durable are membership's request table's
 * (dispatch.c), checked where the request is answered.
 */
enum route_flag {
	ROUTE_WRITE = 1u << 0,	    /* changes state: always needs api_token */
	ROUTE_AUTH_READS = 1u << 1, /* a read that needs api_token when
				       api_token_reads is on */
	ROUTE_CLUSTER = 1u << 2,    /* 503 CLUSTER_DISABLED when clustering is
				       off */
	ROUTE_CACHEABLE = 1u << 3,  /* a GET served from the read cache */
	/* Which requests only the coordinator takes, and which are held for
	 * the disk, is membership's to say: its request table (dispatch.c). */
};

/* How the answer is made. */
enum route_answer {
	ROUTE_ANSWER_JSON,     /* the row's renderer, in the spec's JSON */
	ROUTE_ANSWER_METRICS,  /* Prometheus text: api.c adds its counters */
	ROUTE_ANSWER_PROTOBUF, /* membership's Reply bytes as they came */
	ROUTE_ANSWER_STREAM,   /* Server-Sent Events from api.c; no request */
};

/* Methods of one route: GET, POST, DELETE at most. */
#define ROUTE_METHODS_MAX 3
/* Longest detail message we return. */
#define API_ERROR_MSG_MAX 320

struct route_match {
	enum route_id route;
	int method;	   /* enum http_method of the request */
	bool method_ok;	   /* false: answer 405 with `allow` */
	const char *allow; /* methods the path accepts */
	unsigned flags;	   /* enum route_flag of route + method */
	enum route_answer answer;
	char id[NODE_ID_MAX + 1]; /* {id} / {nodeId}, percent-decoded */
	bool id_ok;		  /* false: the path's id is malformed */
};

/* A failure, in the spec's error format. */
struct api_error {
	int status;
	const char *code;
	char message[API_ERROR_MSG_MAX];
	char field[64];	   /* details.field when set */
	char details[256]; /* or a whole details object (JSON), when set */
};

/* Metric label of a route, e.g. "/api/cluster/nodes/{id}". */
const char *route_name(enum route_id r);
/* Fills *out for a request; an unknown path is ROUTE_UNKNOWN, method_ok. */
void route_match(int method, const char *path, size_t len,
		 struct route_match *out);
/*
 * Checks the table's invariants: every route has a path, an Allow list
 * naming exactly its methods (plus OPTIONS), a builder for every method
 * membership answers and a renderer for every JSON answer; paths are
 * unique; writes are never cacheable. Returns 0, or -EINVAL with the first
 * broken one described in msg.
 */
int route_table_check(char *msg, size_t msglen);

void api_error_set(struct api_error *e, int status, const char *code,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Renders e through http_error_render(): details is e->details when set,
 * else {"field":e->field} when set, else {}. 0 or a jw_finish() error. */
int route_render_error(const struct api_error *e, struct buf *out);
/*
 * The HTTP status for an error code membership sends: membership says what
 * failed, the api alone says how HTTP puts it (one table in routes.c). An
 * unknown code is 500.
 */
int route_error_status(const char *code);

/*
 * Builds the IPC request for a matched route from the query string and
 * body. On success the caller sends `out` and then calls
 * route_request_fini(out). Returns 0 or -EINVAL with *err filled.
 */
int route_build_request(const struct route_match *m, const char *query,
			size_t qlen, const char *body, size_t blen,
			size_t metadata_max, Ps__Request *out,
			struct api_error *err);
void route_request_fini(Ps__Request *req);

/*
 * Renders a successful Reply as the route's JSON. rtt_ms is the IPC round
 * trip of this request (the node's own responseTime); now_ms stamps
 * lastUpdate. Returns the HTTP status.
 */
int route_render_reply(const struct route_match *m, const Ps__Reply *reply,
		       const struct config *cfg, double rtt_ms, int64_t now_ms,
		       struct buf *out);

/* Renders one node the way every endpoint shows it. */
struct json_writer;
void route_write_node(struct json_writer *w, const Ps__Node *n, bool full);

#endif
