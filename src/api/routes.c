/* routes — HTTP ⇄ ipc.proto translation; see include/proxystone/routes.h. */
#include "proxystone/routes.h"
#include "proxystone/config.h"
#include "proxystone/gossip_crypto.h"
#include "proxystone/json.h"
#include "proxystone/timeutil.h"

#include <errno.h>
#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A query string value we look at (status, role, clusterId). */
#define QUERY_VALUE_MAX 128

static const struct {
	const char *name;  /* metric label */
	const char *allow; /* Allow header */
} routes[ROUTE_MAX] = {
	[ROUTE_NODES] = { "/api/cluster/nodes", "GET, OPTIONS" },
	[ROUTE_NODE] = { "/api/cluster/nodes/{id}", "GET, DELETE, OPTIONS" },
	[ROUTE_REGISTER] = { "/api/cluster/register", "POST, OPTIONS" },
	[ROUTE_HEARTBEAT] = { "/api/cluster/heartbeat/{nodeId}", "POST, OPTIONS" },
	[ROUTE_STATUS] = { "/api/cluster/status", "GET, OPTIONS" },
	[ROUTE_HEALTH] = { "/api/cluster/health", "GET, OPTIONS" },
	[ROUTE_ENABLE_SERVING] = { "/api/cluster/enable-serving", "POST, OPTIONS" },
	[ROUTE_DISABLE_SERVING] = { "/api/cluster/disable-serving", "POST, OPTIONS" },
	[ROUTE_SERVICE_STATUS] = { "/api/cluster/service-status", "GET, OPTIONS" },
	[ROUTE_METRICS] = { "/metrics", "GET, OPTIONS" },
	[ROUTE_EVENTS] = { "/api/cluster/events", "GET, OPTIONS" },
	[ROUTE_REPLICA] = { "/api/cluster/replica", "GET, OPTIONS" },
	[ROUTE_UNKNOWN] = { "unknown", "" },
};

const char *route_name(enum route_id r)
{
	return r < ROUTE_MAX ? routes[r].name : "unknown";
}

const char *route_error_title(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Error";
	}
}

void api_error_set(struct api_error *e, int status, const char *code,
		   const char *fmt, ...)
{
	e->status = status;
	e->code = code;
	e->field[0] = '\0';
	e->details[0] = '\0';
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

int route_render_error(const struct api_error *e, struct buf *out)
{
	struct json_writer w;
	jw_init(&w, out);
	jw_object_begin(&w);
	jw_key(&w, "success");
	jw_bool(&w, false);
	jw_key(&w, "error");
	jw_string(&w, route_error_title(e->status));
	jw_key(&w, "message");
	jw_string(&w, e->message);
	jw_key(&w, "code");
	jw_string(&w, e->code);
	jw_key(&w, "details");
	if (e->details[0]) {
		jw_raw(&w, e->details, strlen(e->details));
		jw_object_end(&w);
		return jw_finish(&w);
	}
	jw_object_begin(&w);
	if (e->field[0]) {
		jw_key(&w, "field");
		jw_string(&w, e->field);
	}
	jw_object_end(&w);
	jw_object_end(&w);
	return jw_finish(&w);
}

/* "/api/cluster/nodes/" + tail: copies a single-segment id. */
static bool take_id(const char *tail, size_t n, struct route_match *out)
{
	if (n == 0 || n > NODE_ID_MAX || memchr(tail, '/', n))
		return false;
	memcpy(out->id, tail, n);
	out->id[n] = '\0';
	out->id_ok = registry_id_valid(out->id);
	return true;
}

void route_match(int method, const char *path, size_t len,
		 struct route_match *out)
{
	static const char prefix[] = "/api/cluster/";
	const size_t plen = sizeof(prefix) - 1;
	memset(out, 0, sizeof(*out));
	out->route = ROUTE_UNKNOWN;
	out->method = method;
	if (len > 1 && path[len - 1] == '/')
		len--; /* tolerate one trailing slash */

	if (len == 8 && !memcmp(path, "/metrics", 8)) {
		out->route = ROUTE_METRICS;
	} else if (len > plen && !memcmp(path, prefix, plen)) {
		const char *rest = path + plen;
		size_t n = len - plen;
		static const struct {
			const char *name;
			enum route_id id;
		} fixed[] = {
			{ "nodes", ROUTE_NODES },
			{ "register", ROUTE_REGISTER },
			{ "status", ROUTE_STATUS },
			{ "health", ROUTE_HEALTH },
			{ "enable-serving", ROUTE_ENABLE_SERVING },
			{ "disable-serving", ROUTE_DISABLE_SERVING },
			{ "service-status", ROUTE_SERVICE_STATUS },
			{ "events", ROUTE_EVENTS },
			{ "replica", ROUTE_REPLICA },
		};
		for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
			if (strlen(fixed[i].name) == n &&
			    !memcmp(rest, fixed[i].name, n))
				out->route = fixed[i].id;
		if (out->route == ROUTE_UNKNOWN) {
			if (n > 6 && !memcmp(rest, "nodes/", 6) &&
			    take_id(rest + 6, n - 6, out))
				out->route = ROUTE_NODE;
			else if (n > 10 && !memcmp(rest, "heartbeat/", 10) &&
				 take_id(rest + 10, n - 10, out))
				out->route = ROUTE_HEARTBEAT;
		}
	}
	out->allow = routes[out->route].allow;
	switch (out->route) {
	case ROUTE_NODE:
		out->method_ok = method == HTTP_GET || method == HTTP_DELETE;
		break;
	case ROUTE_REGISTER:
	case ROUTE_HEARTBEAT:
	case ROUTE_ENABLE_SERVING:
	case ROUTE_DISABLE_SERVING:
		out->method_ok = method == HTTP_POST;
		break;
	case ROUTE_UNKNOWN:
		out->method_ok = true;
		break;
	default:
		out->method_ok = method == HTTP_GET;
		break;
	}
}

/* ---- request building --------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Finds `key` in an application/x-www-form-urlencoded query and decodes
 * its value into out. 1 found, 0 absent, -EINVAL malformed or too long.
 */
static int query_get(const char *q, size_t qlen, const char *key, char *out,
		     size_t cap)
{
	size_t klen = strlen(key);
	const char *end = q + qlen;
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *pe = amp ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(pe - q));
		if (eq && (size_t)(eq - q) == klen && !memcmp(q, key, klen)) {
			size_t o = 0;
			for (const char *p = eq + 1; p < pe; p++) {
				char ch = *p;
				if (ch == '+') {
					ch = ' ';
				} else if (ch == '%') {
					int hi, lo;
					if (pe - p < 3 ||
					    (hi = hexval(p[1])) < 0 ||
					    (lo = hexval(p[2])) < 0)
						return -EINVAL;
					ch = (char)(hi * 16 + lo);
					p += 2;
				}
				if (ch == '\0' || o + 1 >= cap)
					return -EINVAL;
				out[o++] = ch;
			}
			out[o] = '\0';
			return 1;
		}
		q = pe + 1;
	}
	return 0;
}

/* The string at token i, unescaped; NULL with *why set on failure. */
static char *dup_string(const struct json_doc *d, int i, size_t max,
			const char **why)
{
	struct buf b;
	buf_init(&b, max);
	int rc = json_get_string(d, i, &b);
	if (rc) {
		buf_fini(&b);
		*why = rc == -ENOSPC ? "%s is too long"
				     : "%s must not contain NUL characters";
		return NULL;
	}
	if (!b.base && buf_puts(&b, "")) {
		buf_fini(&b);
		return NULL;
	}
	return b.base;
}

static int bad_field(struct api_error *err, const char *field,
		     const char *fmt)
{
	api_error_set(err, 400, "VALIDATION_ERROR", fmt, field);
	snprintf(err->field, sizeof(err->field), "%s", field);
	return -EINVAL;
}

/* Optional string member; NULL/absent leaves *out NULL. */
static int opt_string(const struct json_doc *d, int obj, const char *key,
		      size_t max, char **out, struct api_error *err)
{
	int v = json_obj_get(d, obj, key);
	*out = NULL;
	if (v < 0 || json_type(d, v) == JSON_NULL)
		return 0;
	if (json_type(d, v) != JSON_STRING)
		return bad_field(err, key, "%s must be a string");
	const char *why;
	*out = dup_string(d, v, max, &why);
	if (!*out)
		return bad_field(err, key, why);
	return 0;
}

/* Optional object member rendered compactly into *out. */
static int opt_object(const struct json_doc *d, int obj, const char *key,
		      size_t max, char **out, struct api_error *err)
{
	int v = json_obj_get(d, obj, key);
	*out = NULL;
	if (v < 0 || json_type(d, v) == JSON_NULL)
		return 0;
	if (json_type(d, v) != JSON_OBJECT)
		return bad_field(err, key, "%s must be an object");
	struct buf b;
	buf_init(&b, max);
	if (json_render(d, v, &b)) {
		buf_fini(&b);
		api_error_set(err, 400, "VALIDATION_ERROR",
			      "%s exceeds %zu bytes", key, max);
		snprintf(err->field, sizeof(err->field), "%s", key);
		return -EINVAL;
	}
	*out = b.base;
	return 0;
}

static int parse_body(const char *body, size_t blen, bool required,
		      struct json_doc *d, struct api_error *err)
{
	char msg[160];
	memset(d, 0, sizeof(*d));
	if (blen == 0) {
		if (!required)
			return 1; /* no body: nothing to read */
		api_error_set(err, 400, "VALIDATION_ERROR",
			      "A JSON object body is required");
		return -EINVAL;
	}
	int rc = json_parse(d, body, blen, msg, sizeof(msg));
	if (rc) {
		api_error_set(err, 400, "INVALID_JSON",
			      "Request body is not valid JSON: %s", msg);
		json_doc_fini(d);
		return -EINVAL;
	}
	if (json_type(d, 0) != JSON_OBJECT) {
		api_error_set(err, 400, "VALIDATION_ERROR",
			      "Request body must be a JSON object");
		json_doc_fini(d);
		return -EINVAL;
	}
	return 0;
}

static int build_register(const struct json_doc *d, size_t metadata_max,
			  Ps__RegisterReq *r, struct api_error *err)
{
	int rc;
	if ((rc = opt_string(d, 0, "url", NODE_URL_MAX, &r->url, err)))
		return rc;
	if (!r->url)
		return bad_field(err, "url", "%s is required");
	if ((rc = opt_string(d, 0, "id", NODE_ID_MAX, &r->id, err)) ||
	    (rc = opt_string(d, 0, "clusterId", NODE_ID_MAX, &r->cluster_id,
			     err)) ||
	    (rc = opt_string(d, 0, "role", NODE_ROLE_MAX, &r->role, err)) ||
	    (rc = opt_object(d, 0, "metadata", metadata_max,
			     &r->metadata_json, err)))
		return rc;
	if (r->id && !registry_id_valid(r->id))
		return bad_field(err, "id",
				 "%s must be 1-64 of [A-Za-z0-9._:-]");

	int t = json_obj_get(d, 0, "tags");
	if (t >= 0 && json_type(d, t) != JSON_NULL) {
		if (json_type(d, t) != JSON_ARRAY)
			return bad_field(err, "tags",
					 "%s must be an array of strings");
		int cnt = json_count(d, t);
		if (cnt > NODE_TAGS_MAX)
			return bad_field(err, "tags", "%s: more than 64 tags");
		r->tags = calloc((size_t)cnt + 1, sizeof(char *));
		if (!r->tags)
			return -ENOMEM;
		for (int i = json_first_child(d, t); i >= 0;
		     i = json_next_sibling(d, i)) {
			if (json_type(d, i) != JSON_STRING)
				return bad_field(
					err, "tags",
					"%s must be an array of strings");
			const char *why;
			char *s = dup_string(d, i, NODE_TAG_LEN_MAX, &why);
			if (!s)
				return bad_field(err, "tags", why);
			r->tags[r->n_tags++] = s;
		}
	}
	int c = json_obj_get(d, 0, "capabilities");
	if (c >= 0 && json_type(d, c) != JSON_NULL) {
		if (json_type(d, c) != JSON_OBJECT)
			return bad_field(err, "capabilities",
					 "%s must be an object of booleans");
		int cnt = json_count(d, c);
		if (cnt > NODE_CAPS_MAX)
			return bad_field(err, "capabilities",
					 "%s: more than 64 entries");
		r->capabilities = calloc((size_t)cnt + 1, sizeof(void *));
		if (!r->capabilities)
			return -ENOMEM;
		for (int k = json_first_child(d, c); k >= 0;
		     k = json_next_sibling(d, k)) {
			bool v;
			if (json_get_bool(d, k + 1, &v))
				return bad_field(
					err, "capabilities",
					"%s must be an object of booleans");
			Ps__Capability *cap = malloc(sizeof(*cap));
			if (!cap)
				return -ENOMEM;
			ps__capability__init(cap);
			r->capabilities[r->n_capabilities++] = cap;
			cap->value = v;
			const char *why;
			cap->name = dup_string(d, k, NODE_TAG_LEN_MAX, &why);
			if (!cap->name)
				return bad_field(err, "capabilities", why);
		}
	}
	return 0;
}

static int build_heartbeat(const struct json_doc *d, bool have_body,
			   size_t metadata_max, Ps__HeartbeatReq *h,
			   struct api_error *err)
{
	if (!have_body)
		return 0;
	char *status = NULL;
	int rc = opt_string(d, 0, "status", 16, &status, err);
	if (rc)
		return rc;
	if (status) {
		rc = registry_status_parse(status, &h->status);
		free(status);
		if (rc)
			return bad_field(err, "status",
					 "%s must be one of active, suspect, inactive, disabled, left");
		h->has_status = true;
	}
	return opt_object(d, 0, "metadata", metadata_max, &h->metadata_json,
			  err);
}

static int build_filters(const char *q, size_t qlen, Ps__ListNodesReq *f,
			 struct api_error *err)
{
	char v[QUERY_VALUE_MAX];
	int rc = query_get(q, qlen, "status", v, sizeof(v));
	if (rc < 0 || (rc == 1 && registry_status_parse(v, &f->status)))
		return bad_field(err, "status",
				 "%s must be one of active, suspect, inactive, disabled, left");
	f->has_status = rc == 1;
	static const struct {
		const char *key;
		size_t off;
	} strs[] = {
		{ "role", offsetof(Ps__ListNodesReq, role) },
		{ "clusterId", offsetof(Ps__ListNodesReq, cluster_id) },
	};
	for (size_t i = 0; i < 2; i++) {
		rc = query_get(q, qlen, strs[i].key, v, sizeof(v));
		if (rc < 0)
			return bad_field(err, strs[i].key,
					 "%s: malformed or too long");
		if (rc == 1) {
			char *s = strdup(v);
			if (!s)
				return -ENOMEM;
			*(char **)((char *)f + strs[i].off) = s;
		}
	}
	return 0;
}

int route_build_request(const struct route_match *m, const char *query,
			size_t qlen, const char *body, size_t blen,
			size_t metadata_max, Ps__Request *out,
			struct api_error *err)
{
	struct json_doc d;
	int rc = 0;
	ps__request__init(out);
	memset(&d, 0, sizeof(d));
	if (m->route == ROUTE_NODE || m->route == ROUTE_HEARTBEAT) {
		if (!m->id_ok) {
			api_error_set(err, 400, "VALIDATION_ERROR",
				      "Node id must be 1-64 of [A-Za-z0-9._:-]");
			snprintf(err->field, sizeof(err->field), "id");
			return -EINVAL;
		}
	}
	switch (m->route) {
	case ROUTE_NODES:
	case ROUTE_REPLICA: {
		Ps__ListNodesReq *f = malloc(sizeof(*f));
		if (!f)
			return -ENOMEM;
		ps__list_nodes_req__init(f);
		out->body_case = PS__REQUEST__BODY_LIST_NODES;
		out->list_nodes = f;
		if (m->route == ROUTE_NODES)
			rc = build_filters(query, qlen, f, err);
		break;
	}
	case ROUTE_NODE: {
		Ps__NodeIdReq *r = malloc(sizeof(*r));
		if (!r)
			return -ENOMEM;
		ps__node_id_req__init(r);
		r->id = strdup(m->id);
		if (m->method == HTTP_DELETE) {
			out->body_case = PS__REQUEST__BODY_DELETE_NODE;
			out->delete_node = r;
		} else {
			out->body_case = PS__REQUEST__BODY_GET_NODE;
			out->get_node = r;
		}
		if (!r->id)
			rc = -ENOMEM;
		break;
	}
	case ROUTE_REGISTER: {
		Ps__RegisterReq *r = malloc(sizeof(*r));
		if (!r)
			return -ENOMEM;
		ps__register_req__init(r);
		out->body_case = PS__REQUEST__BODY_REGISTER;
		out->register_ = r;
		rc = parse_body(body, blen, true, &d, err);
		if (!rc)
			rc = build_register(&d, metadata_max, r, err);
		break;
	}
	case ROUTE_HEARTBEAT: {
		Ps__HeartbeatReq *h = malloc(sizeof(*h));
		if (!h)
			return -ENOMEM;
		ps__heartbeat_req__init(h);
		out->body_case = PS__REQUEST__BODY_HEARTBEAT;
		out->heartbeat = h;
		h->id = strdup(m->id);
		if (!h->id)
			return -ENOMEM;
		rc = parse_body(body, blen, false, &d, err);
		if (rc >= 0) {
			rc = build_heartbeat(&d, rc == 0, metadata_max, h,
					     err);
		}
		break;
	}
	case ROUTE_ENABLE_SERVING:
	case ROUTE_DISABLE_SERVING: {
		Ps__SetServingReq *s = malloc(sizeof(*s));
		if (!s)
			return -ENOMEM;
		ps__set_serving_req__init(s);
		s->serving = m->route == ROUTE_ENABLE_SERVING;
		out->body_case = PS__REQUEST__BODY_SET_SERVING;
		out->set_serving = s;
		break;
	}
	case ROUTE_STATUS:
	case ROUTE_SERVICE_STATUS:
	case ROUTE_HEALTH:
	case ROUTE_METRICS: {
		Ps__Empty *e = malloc(sizeof(*e));
		if (!e)
			return -ENOMEM;
		ps__empty__init(e);
		out->body_case = m->route == ROUTE_HEALTH
					 ? PS__REQUEST__BODY_GET_HEALTH
				 : m->route == ROUTE_METRICS
					 ? PS__REQUEST__BODY_GET_STATS
					 : PS__REQUEST__BODY_GET_STATUS;
		out->get_status = e; /* oneof: same storage for every Empty */
		break;
	}
	default:
		api_error_set(err, 404, "NOT_FOUND", "No such route");
		rc = -EINVAL;
		break;
	}
	json_doc_fini(&d);
	if (rc == -ENOMEM)
		api_error_set(err, 500, "INTERNAL_ERROR", "Out of memory");
	return rc < 0 ? -EINVAL : 0;
}

void route_request_fini(Ps__Request *req)
{
	/* Every pointer in a built request is ours and heap-allocated, which
	 * is exactly what protobuf-c's free_unpacked releases. */
	if (req->body_case != PS__REQUEST__BODY__NOT_SET) {
		Ps__Request *copy = malloc(sizeof(*copy));
		if (copy) {
			*copy = *req;
			ps__request__free_unpacked(copy, NULL);
		}
	}
	ps__request__init(req);
}

/* ---- reply rendering ---------------------------------------------------- */

static void write_time(struct json_writer *w, const char *key, int64_t ms)
{
	char ts[ISO8601_LEN];
	time_iso8601(ms, ts);
	jw_key(w, key);
	jw_string(w, ts);
}

void route_write_node(struct json_writer *w, const Ps__Node *n, bool full)
{
	jw_object_begin(w);
	jw_key(w, "id");
	jw_string(w, n->id);
	jw_key(w, "url");
	jw_string(w, n->url);
	jw_key(w, "clusterId");
	jw_string(w, n->cluster_id);
	jw_key(w, "status");
	jw_string(w, registry_status_name(n->status));
	jw_key(w, "role");
	jw_string(w, n->role);
	write_time(w, "lastSeen", n->last_seen_ms);
	if (full) {
		write_time(w, "createdAt", n->created_at_ms);
		jw_key(w, "tags");
		jw_array_begin(w);
		for (size_t i = 0; i < n->n_tags; i++)
			jw_string(w, n->tags[i]);
		jw_array_end(w);
		jw_key(w, "capabilities");
		jw_object_begin(w);
		for (size_t i = 0; i < n->n_capabilities; i++) {
			jw_key(w, n->capabilities[i]->name);
			jw_bool(w, n->capabilities[i]->value);
		}
		jw_object_end(w);
		jw_key(w, "metadata");
		/* Stored metadata was rendered by json_render or node_meta at
		 * ingest; re-validating it on every listing is pure cost. */
		if (n->metadata_json && n->metadata_json[0])
			jw_raw_trusted(w, n->metadata_json,
				       strlen(n->metadata_json));
		else
			jw_raw_trusted(w, "{}", 2);
	}
	jw_object_end(w);
}

static void write_service(struct json_writer *w, const Ps__ServiceStatus *s,
			  const char *time_key)
{
	jw_object_begin(w);
	jw_key(w, "mode");
	jw_string(w, s->serving ? "serving" : "maintenance");
	jw_key(w, "enabled");
	jw_bool(w, s->serving);
	write_time(w, time_key,
		   strcmp(time_key, "changedAt") ? s->start_time_ms
						  : s->changed_at_ms);
	jw_object_end(w);
}

/* How gossip is protected, from the configuration this node started with
 * (the keyring file, if any, was loaded into it before the fork):
 * "keyring" (sealed and replay-checked), "unauthenticated" (plaintext:
 * anyone who reaches the UDP port can forge membership) or "off". */
static void write_gossip_security(struct json_writer *w,
				  const struct config *cfg)
{
	size_t keys = gossip_keyring_count(cfg->gossip_keys);
	jw_key(w, "gossipSecurity");
	jw_string(w, cfg->gossip_port == 0 ? "off"
		     : keys		    ? "keyring"
					    : "unauthenticated");
	jw_key(w, "gossipKeys");
	jw_int(w, (long long)keys);
}

static void write_health(struct json_writer *w, const Ps__Reply *r,
			 double rtt_ms, int64_t now_ms)
{
	size_t counts[5] = { 0 };
	for (size_t i = 0; i < r->n_nodes; i++)
		if ((unsigned)r->nodes[i]->status < 5)
			counts[r->nodes[i]->status]++;
	jw_key(w, "health");
	jw_object_begin(w);
	jw_key(w, "totalNodes");
	jw_int(w, (long long)r->n_nodes);
	jw_key(w, "activeNodes");
	jw_int(w, (long long)counts[PS__NODE_STATUS__NODE_ACTIVE]);
	jw_key(w, "inactiveNodes");
	jw_int(w, (long long)counts[PS__NODE_STATUS__NODE_INACTIVE]);
	jw_key(w, "suspectNodes");
	jw_int(w, (long long)counts[PS__NODE_STATUS__NODE_SUSPECT]);
	jw_key(w, "disabledNodes");
	jw_int(w, (long long)counts[PS__NODE_STATUS__NODE_DISABLED]);
	jw_key(w, "leftNodes");
	jw_int(w, (long long)counts[PS__NODE_STATUS__NODE_LEFT]);
	jw_key(w, "coordinatorHealthy");
	jw_bool(w, r->coordinator_healthy);
	write_time(w, "lastUpdate", now_ms);
	jw_key(w, "registryVersion");
	jw_int(w, (long long)r->registry_version);
	jw_key(w, "nodes");
	jw_array_begin(w);
	for (size_t i = 0; i < r->n_nodes; i++) {
		const Ps__Node *n = r->nodes[i];
		jw_object_begin(w);
		jw_key(w, "id");
		jw_string(w, n->id);
		jw_key(w, "status");
		jw_string(w, registry_status_name(n->status));
		jw_key(w, "role");
		jw_string(w, n->role);
		jw_key(w, "responseTime");
		/* Our own: this request's round trip. Others: gossip probe RTT,
		 * null until one has been measured. */
		if (r->self && !strcmp(n->id, r->self->id))
			jw_double(w, (double)(long long)(rtt_ms * 1000) / 1000);
		else if (n->has_response_time_ms)
			jw_double(w, n->response_time_ms);
		else
			jw_null(w);
		jw_object_end(w);
	}
	jw_array_end(w);
	jw_object_end(w);
}

int route_render_reply(const struct route_match *m, const Ps__Reply *r,
		       const struct config *cfg, double rtt_ms, int64_t now_ms,
		       struct buf *out)
{
	struct json_writer w;
	jw_init(&w, out);
	jw_object_begin(&w);
	jw_key(&w, "success");
	jw_bool(&w, true);
	switch (m->route) {
	case ROUTE_NODES:
		jw_key(&w, "nodes");
		jw_array_begin(&w);
		for (size_t i = 0; i < r->n_nodes; i++)
			route_write_node(&w, r->nodes[i], true);
		jw_array_end(&w);
		jw_key(&w, "total");
		jw_int(&w, (long long)r->n_nodes);
		jw_key(&w, "registryVersion");
		jw_int(&w, (long long)r->registry_version);
		break;
	case ROUTE_NODE:
		if (m->method == HTTP_DELETE) {
			char msg[NODE_ID_MAX + 32];
			snprintf(msg, sizeof(msg), "Node %s removed", m->id);
			jw_key(&w, "message");
			jw_string(&w, msg);
			jw_key(&w, "id");
			jw_string(&w, m->id);
			break;
		}
		/* fall through */
		__attribute__((fallthrough));
	case ROUTE_REGISTER:
		if (r->node) {
			jw_key(&w, "node");
			route_write_node(&w, r->node, true);
		}
		break;
	case ROUTE_HEARTBEAT:
		jw_key(&w, "acknowledged");
		jw_bool(&w, true);
		write_time(&w, "timestamp", r->timestamp_ms);
		break;
	case ROUTE_STATUS:
		jw_key(&w, "status");
		if (r->self)
			route_write_node(&w, r->self, false);
		else
			jw_null(&w);
		jw_key(&w, "config");
		jw_object_begin(&w);
		jw_key(&w, "enabled");
		jw_bool(&w, cfg->cluster_enabled);
		jw_key(&w, "clusterId");
		jw_string(&w, cfg->cluster_id);
		jw_key(&w, "coordinatorUrl");
		jw_string(&w, cfg->coordinator_url[0] ? cfg->coordinator_url
						      : NULL);
		jw_key(&w, "heartbeatInterval");
		jw_double(&w, cfg->heartbeat_interval);
		jw_key(&w, "nodeTimeout");
		jw_double(&w, cfg->node_timeout);
		jw_object_end(&w);
		if (r->service) {
			jw_key(&w, "serviceStatus");
			write_service(&w, r->service, "startTime");
		}
		write_gossip_security(&w, cfg);
		break;
	case ROUTE_HEALTH:
		write_health(&w, r, rtt_ms, now_ms);
		break;
	case ROUTE_ENABLE_SERVING:
	case ROUTE_DISABLE_SERVING:
		jw_key(&w, "message");
		jw_string(&w, r->service && r->service->serving
				      ? "Cluster serving enabled"
				      : "Cluster serving disabled (maintenance mode)");
		if (r->service) {
			jw_key(&w, "status");
			write_service(&w, r->service, "changedAt");
		}
		break;
	case ROUTE_SERVICE_STATUS:
		if (r->service) {
			jw_key(&w, "status");
			write_service(&w, r->service, "startTime");
		}
		jw_key(&w, "nodeStatus");
		if (r->self) {
			jw_object_begin(&w);
			jw_key(&w, "id");
			jw_string(&w, r->self->id);
			jw_key(&w, "status");
			jw_string(&w, registry_status_name(r->self->status));
			jw_key(&w, "role");
			jw_string(&w, r->self->role);
			write_time(&w, "lastSeen", r->self->last_seen_ms);
			jw_object_end(&w);
		} else {
			jw_null(&w);
		}
		break;
	default:
		break;
	}
	jw_object_end(&w);
	return jw_finish(&w) ? 500 : 200;
}
