/*
 * routes — the Cluster API's HTTP surface: matching method + path to a
 * route, turning a request's JSON into an ipc.proto Request, and turning
 * the membership process's Reply into the spec's JSON.
 *
 * Pure translation: no sockets, no clock reads except for timestamps the
 * caller passes in. The api process (api.c) moves the bytes.
 */
#ifndef PROXYSTONE_ROUTES_H
#define PROXYSTONE_ROUTES_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/ipc.pb-c.h"
#include "proxystone/buf.h"
#include "proxystone/registry.h"

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
	ROUTE_REPLICA,   /* workers pull the registry here (protobuf) */
	ROUTE_UNKNOWN,
	ROUTE_MAX
};

/* Longest detail message we return. */
#define API_ERROR_MSG_MAX 320

struct route_match {
	enum route_id route;
	int method;              /* enum http_method of the request */
	bool method_ok;          /* false: answer 405 with `allow` */
	const char *allow;       /* methods the path accepts */
	char id[NODE_ID_MAX + 1];/* {id} / {nodeId}, percent-decoded */
	bool id_ok;              /* false: the path's id is malformed */
};

/* A failure, in the spec's error format. */
struct api_error {
	int status;
	const char *code;
	char message[API_ERROR_MSG_MAX];
	char field[64];          /* details.field when set */
	char details[256];       /* or a whole details object (JSON), when set */
};

/* Metric label of a route, e.g. "/api/cluster/nodes/{id}". */
const char *route_name(enum route_id r);
void route_match(int method, const char *path, size_t len,
		 struct route_match *out);
/* The HTTP reason phrase used as the error's "error" field. */
const char *route_error_title(int status);

void api_error_set(struct api_error *e, int status, const char *code,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Renders {success:false,error,message,code,details}. */
int route_render_error(const struct api_error *e, struct buf *out);

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
