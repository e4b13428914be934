/* routes — HTTP ⇄ ipc.proto translation; see include/proxystone/routes.h. */
#include "proxystone/routes.h"
#include "proxystone/config.h"
#include "proxystone/gossip_crypto.h"
#include "proxystone/http.h"
#include "proxystone/json.h"
#include "proxystone/timeutil.h"

#include <errno.h>
#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct route_input;
struct route_ctx;
struct json_writer;

/* One method of a route. */
struct route_method {
	int method;	/* enum http_method */
	unsigned flags; /* enum route_flag */
	/* Fills the IPC request; NULL for ROUTE_ANSWER_STREAM. 0, -EINVAL
	 * (err set) or -ENOMEM; what it allocated is freed by
	 * route_request_fini() either way. */
	int (*build)(const struct route_match *m, const struct route_input *in,
		     Ps__Request *out, struct api_error *err);
	/* Writes the members after "success":true; for ROUTE_ANSWER_JSON. */
	void (*render)(struct json_writer *w, const struct route_match *m,
		       const Ps__Reply *r, const struct route_ctx *ctx);
};

/* One row per route: everything the api knows about it. */
struct route {
	const char *path; /* pattern ("{id}" takes one segment), metric label */
	const char *allow; /* Allow header of a 405: the methods, OPTIONS */
	unsigned flags;	   /* enum route_flag, for every method */
	enum route_answer answer;
	size_t nmethods;
	struct route_method methods[ROUTE_METHODS_MAX];
};

static const struct route route_table[ROUTE_MAX];

/* A query string value we look at (status, role, clusterId). */
#define QUERY_VALUE_MAX 128
/* details {"field":...} of a validation error: the field name and quoting. */
#define ROUTE_FIELD_DETAILS_MAX 128

const char *route_name(enum route_id r)
{
	return r < ROUTE_MAX ? route_table[r].path : "unknown";
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

static const struct {
	const char *code;
	int status;
} error_statuses[] = {
    {"BAD_REQUEST", 400},	  {"VALIDATION_ERROR", 400},
    {"NODE_NOT_FOUND", 404},	  {"CONFLICT", 409},
    {"NOT_COORDINATOR", 409},	  {"INTERNAL_ERROR", 500},
    {"REPLY_TOO_LARGE", 500},	  {"GOSSIP_OFF", 503},
    {"OVERLOADED", 503},	  {"REGISTRY_FULL", 503},
    {"STORAGE_UNAVAILABLE", 503},
};

int route_error_status(const char *code)
{
	for (size_t i = 0;
	     i < sizeof(error_statuses) / sizeof(error_statuses[0]); i++)
		if (!strcmp(error_statuses[i].code, code))
			return error_statuses[i].status;
	return 500;
}

int route_render_error(const struct api_error *e, struct buf *out)
{
	const char *details = NULL;
	struct buf fd;
	buf_init(&fd, ROUTE_FIELD_DETAILS_MAX);
	if (e->details[0]) {
		details = e->details;
	} else if (e->field[0]) {
		struct json_writer w;
		jw_init(&w, &fd);
		jw_object_begin(&w);
		jw_key(&w, "field");
		jw_string(&w, e->field);
		jw_object_end(&w);
		details = jw_finish(&w) ? NULL : fd.base;
	}
	int rc = http_error_render(out, e->status, e->code, e->message,
				   strlen(e->message), details);
	buf_fini(&fd);
	return rc;
}

/* "/api/cluster/nodes/" + tail: copies a single-segment id. */
static bool take_id(const char *tail, size_t n, struct route_match *out)
{
	if (n == 0 || n > NODE_ID_MAX || memchr(tail, '/', n))
		return false;
	memcpy(out->id, tail, n);
	out->id[n] = '\0';
	out->id_ok = node_id_valid(out->id);
	return true;
}

/* A path pattern ending in "{...}" takes one id segment there. */
static bool path_match(const char *pattern, const char *path, size_t len,
		       struct route_match *out)
{
	const char *brace = strchr(pattern, '{');
	if (!brace)
		return strlen(pattern) == len && !memcmp(path, pattern, len);
	size_t plen = (size_t)(brace - pattern);
	return len > plen && !memcmp(path, pattern, plen) &&
	       take_id(path + plen, len - plen, out);
}

static const struct route_method *method_find(enum route_id r, int method)
{
	if (r >= ROUTE_MAX)
		return NULL;
	for (size_t i = 0; i < route_table[r].nmethods; i++)
		if (route_table[r].methods[i].method == method)
			return &route_table[r].methods[i];
	return NULL;
}

void route_match(int method, const char *path, size_t len,
		 struct route_match *out)
{
	enum route_id r = 0;
	memset(out, 0, sizeof(*out));
	out->method = method;
	if (len > 1 && path[len - 1] == '/')
		len--; /* tolerate one trailing slash */
	while (r < ROUTE_UNKNOWN &&
	       !path_match(route_table[r].path, path, len, out))
		r++;
	out->route = r;
	const struct route *rt = &route_table[r];
	const struct route_method *rm = method_find(r, method);
	out->allow = rt->allow;
	out->answer = rt->answer;
	out->method_ok = rm || out->route == ROUTE_UNKNOWN;
	out->flags = rt->flags | (rm ? rm->flags : 0);
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

static int bad_field(struct api_error *err, const char *field, const char *fmt)
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
	    (rc = opt_object(d, 0, "metadata", metadata_max, &r->metadata_json,
			     err)))
		return rc;
	if (r->id && !node_id_valid(r->id))
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
		rc = node_status_parse(status, &h->status);
		free(status);
		if (rc)
			return bad_field(
			    err, "status",
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
	if (rc < 0 || (rc == 1 && node_status_parse(v, &f->status)))
		return bad_field(
		    err, "status",
		    "%s must be one of active, suspect, inactive, disabled, left");
	f->has_status = rc == 1;
	static const struct {
		const char *key;
		size_t off;
	} strs[] = {
	    {"role", offsetof(Ps__ListNodesReq, role)},
	    {"clusterId", offsetof(Ps__ListNodesReq, cluster_id)},
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

/* ---- one builder per request kind ---------------------------------------- */

/* What a builder reads besides the match. */
struct route_input {
	const char *query, *body;
	size_t qlen, blen;
	size_t metadata_max;
};

static int build_list(const struct route_match *m, const struct route_input *in,
		      Ps__Request *out, struct api_error *err)
{
	Ps__ListNodesReq *f = malloc(sizeof(*f));
	if (!f)
		return -ENOMEM;
	ps__list_nodes_req__init(f);
	out->body_case = PS__REQUEST__BODY_LIST_NODES;
	out->list_nodes = f;
	if (m->route == ROUTE_NODES)
		return build_filters(in->query, in->qlen, f, err);
	return 0; /* the replica: everything */
}

static int build_node_id(const struct route_match *m,
			 const struct route_input *in, Ps__Request *out,
			 struct api_error *err)
{
	(void)in;
	(void)err;
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
	return r->id ? 0 : -ENOMEM;
}

static int build_register_req(const struct route_match *m,
			      const struct route_input *in, Ps__Request *out,
			      struct api_error *err)
{
	(void)m;
	struct json_doc d;
	Ps__RegisterReq *r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	ps__register_req__init(r);
	out->body_case = PS__REQUEST__BODY_REGISTER;
	out->register_ = r;
	int rc = parse_body(in->body, in->blen, true, &d, err);
	if (!rc)
		rc = build_register(&d, in->metadata_max, r, err);
	json_doc_fini(&d);
	return rc;
}

static int build_heartbeat_req(const struct route_match *m,
			       const struct route_input *in, Ps__Request *out,
			       struct api_error *err)
{
	struct json_doc d;
	Ps__HeartbeatReq *h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	ps__heartbeat_req__init(h);
	out->body_case = PS__REQUEST__BODY_HEARTBEAT;
	out->heartbeat = h;
	h->id = strdup(m->id);
	if (!h->id)
		return -ENOMEM;
	int rc = parse_body(in->body, in->blen, false, &d, err);
	if (rc >= 0)
		rc = build_heartbeat(&d, rc == 0, in->metadata_max, h, err);
	json_doc_fini(&d);
	return rc;
}

static int build_serving(const struct route_match *m,
			 const struct route_input *in, Ps__Request *out,
			 struct api_error *err)
{
	(void)in;
	(void)err;
	Ps__SetServingReq *s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	ps__set_serving_req__init(s);
	s->serving = m->route == ROUTE_ENABLE_SERVING;
	out->body_case = PS__REQUEST__BODY_SET_SERVING;
	out->set_serving = s;
	return 0;
}

/* The requests without arguments: status, health, stats. */
static int build_empty(const struct route_match *m,
		       const struct route_input *in, Ps__Request *out,
		       struct api_error *err)
{
	(void)in;
	(void)err;
	Ps__Empty *e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	ps__empty__init(e);
	out->body_case = m->route == ROUTE_HEALTH ? PS__REQUEST__BODY_GET_HEALTH
			 : m->route == ROUTE_METRICS
			     ? PS__REQUEST__BODY_GET_STATS
			     : PS__REQUEST__BODY_GET_STATUS;
	out->get_status = e; /* oneof: same storage for every Empty */
	return 0;
}

int route_build_request(const struct route_match *m, const char *query,
			size_t qlen, const char *body, size_t blen,
			size_t metadata_max, Ps__Request *out,
			struct api_error *err)
{
	const struct route_method *rm = method_find(m->route, m->method);
	const struct route_input in = {
	    .query = query,
	    .qlen = qlen,
	    .body = body,
	    .blen = blen,
	    .metadata_max = metadata_max,
	};
	ps__request__init(out);
	if (!rm || !rm->build) {
		api_error_set(err, 404, "NOT_FOUND", "No such route");
		return -EINVAL;
	}
	if (strchr(route_table[m->route].path, '{') && !m->id_ok) {
		api_error_set(err, 400, "VALIDATION_ERROR",
			      "Node id must be 1-64 of [A-Za-z0-9._:-]");
		snprintf(err->field, sizeof(err->field), "id");
		return -EINVAL;
	}
	int rc = rm->build(m, &in, out, err);
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
	jw_string(w, node_status_name(n->status));
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
		     : keys		   ? "keyring"
					   : "unauthenticated");
	jw_key(w, "gossipKeys");
	jw_int(w, (long long)keys);
}

static void write_health(struct json_writer *w, const Ps__Reply *r,
			 double rtt_ms, int64_t now_ms)
{
	size_t counts[5] = {0};
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
		jw_string(w, node_status_name(n->status));
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

/* ---- one renderer per answer: what follows "success":true --------------- */

/* What a renderer reads besides the match and the reply. */
struct route_ctx {
	const struct config *cfg;
	double rtt_ms;
	int64_t now_ms;
};

static void render_nodes(struct json_writer *w, const struct route_match *m,
			 const Ps__Reply *r, const struct route_ctx *ctx)
{
	(void)m;
	(void)ctx;
	jw_key(w, "nodes");
	jw_array_begin(w);
	for (size_t i = 0; i < r->n_nodes; i++)
		route_write_node(w, r->nodes[i], true);
	jw_array_end(w);
	jw_key(w, "total");
	jw_int(w, (long long)r->n_nodes);
	jw_key(w, "registryVersion");
	jw_int(w, (long long)r->registry_version);
}

/* GET /nodes/{id} and POST /register: the node. */
static void render_node(struct json_writer *w, const struct route_match *m,
			const Ps__Reply *r, const struct route_ctx *ctx)
{
	(void)m;
	(void)ctx;
	if (r->node) {
		jw_key(w, "node");
		route_write_node(w, r->node, true);
	}
}

static void render_removed(struct json_writer *w, const struct route_match *m,
			   const Ps__Reply *r, const struct route_ctx *ctx)
{
	(void)r;
	(void)ctx;
	char msg[NODE_ID_MAX + 32];
	snprintf(msg, sizeof(msg), "Node %s removed", m->id);
	jw_key(w, "message");
	jw_string(w, msg);
	jw_key(w, "id");
	jw_string(w, m->id);
}

static void render_heartbeat(struct json_writer *w, const struct route_match *m,
			     const Ps__Reply *r, const struct route_ctx *ctx)
{
	(void)m;
	(void)ctx;
	jw_key(w, "acknowledged");
	jw_bool(w, true);
	write_time(w, "timestamp", r->timestamp_ms);
}

static void render_status(struct json_writer *w, const struct route_match *m,
			  const Ps__Reply *r, const struct route_ctx *ctx)
{
	(void)m;
	const struct config *cfg = ctx->cfg;
	jw_key(w, "status");
	if (r->self)
		route_write_node(w, r->self, false);
	else
		jw_null(w);
	jw_key(w, "config");
	jw_object_begin(w);
	jw_key(w, "enabled");
	jw_bool(w, cfg->cluster_enabled);
	jw_key(w, "clusterId");
	jw_string(w, cfg->cluster_id);
	jw_key(w, "coordinatorUrl");
	jw_string(w, cfg->coordinator_url[0] ? cfg->coordinator_url : NULL);
	jw_key(w, "heartbeatInterval");
	jw_double(w, cfg->heartbeat_interval);
	jw_key(w, "nodeTimeout");
	jw_double(w, cfg->node_timeout);
	jw_object_end(w);
	if (r->service) {
		jw_key(w, "serviceStatus");
		write_service(w, r->service, "startTime");
	}
	write_gossip_security(w, cfg);
}

static void render_health(struct json_writer *w, const struct route_match *m,
			  const Ps__Reply *r, const struct route_ctx *ctx)
{
	(void)m;
	write_health(w, r, ctx->rtt_ms, ctx->now_ms);
}

static void render_serving(struct json_writer *w, const struct route_match *m,
			   const Ps__Reply *r, const struct route_ctx *ctx)
{
	(void)m;
	(void)ctx;
	jw_key(w, "message");
	jw_string(w, r->service && r->service->serving
			 ? "Cluster serving enabled"
			 : "Cluster serving disabled (maintenance mode)");
	if (r->service) {
		jw_key(w, "status");
		write_service(w, r->service, "changedAt");
	}
}

static void render_service_status(struct json_writer *w,
				  const struct route_match *m,
				  const Ps__Reply *r,
				  const struct route_ctx *ctx)
{
	(void)m;
	(void)ctx;
	if (r->service) {
		jw_key(w, "status");
		write_service(w, r->service, "startTime");
	}
	jw_key(w, "nodeStatus");
	if (!r->self) {
		jw_null(w);
		return;
	}
	jw_object_begin(w);
	jw_key(w, "id");
	jw_string(w, r->self->id);
	jw_key(w, "status");
	jw_string(w, node_status_name(r->self->status));
	jw_key(w, "role");
	jw_string(w, r->self->role);
	write_time(w, "lastSeen", r->self->last_seen_ms);
	jw_object_end(w);
}

int route_render_reply(const struct route_match *m, const Ps__Reply *r,
		       const struct config *cfg, double rtt_ms, int64_t now_ms,
		       struct buf *out)
{
	const struct route_method *rm = method_find(m->route, m->method);
	const struct route_ctx ctx = {
	    .cfg = cfg,
	    .rtt_ms = rtt_ms,
	    .now_ms = now_ms,
	};
	struct json_writer w;
	jw_init(&w, out);
	jw_object_begin(&w);
	jw_key(&w, "success");
	jw_bool(&w, true);
	if (rm && rm->render)
		rm->render(&w, m, r, &ctx);
	jw_object_end(&w);
	return jw_finish(&w) ? 500 : 200;
}

/* ---- the table ----------------------------------------------------------- */

/* One row per route, laid out by hand. */
/* clang-format off */
#define READ(f, b, r) { HTTP_GET, ROUTE_AUTH_READS | (f), (b), (r) }
#define WRITE(m, f, b, r) { (m), ROUTE_WRITE | (f), (b), (r) }

static const struct route route_table[ROUTE_MAX] = {
	[ROUTE_NODES] = { "/api/cluster/nodes", "GET, OPTIONS",
		ROUTE_CLUSTER, ROUTE_ANSWER_JSON, 1, {
		READ(ROUTE_CACHEABLE, build_list, render_nodes) } },
	[ROUTE_NODE] = { "/api/cluster/nodes/{id}", "GET, DELETE, OPTIONS",
		ROUTE_CLUSTER, ROUTE_ANSWER_JSON, 2, {
		READ(ROUTE_CACHEABLE, build_node_id, render_node),
		WRITE(HTTP_DELETE, 0,
		      build_node_id, render_removed) } },
	[ROUTE_REGISTER] = { "/api/cluster/register", "POST, OPTIONS",
		ROUTE_CLUSTER, ROUTE_ANSWER_JSON, 1, {
		WRITE(HTTP_POST, 0,
		      build_register_req, render_node) } },
	/* Heartbeats are not waited on: a lost one is the next one. */
	[ROUTE_HEARTBEAT] = { "/api/cluster/heartbeat/{nodeId}", "POST, OPTIONS",
		ROUTE_CLUSTER, ROUTE_ANSWER_JSON, 1, {
		WRITE(HTTP_POST, 0, build_heartbeat_req,
		      render_heartbeat) } },
	/* Status pages answer with clustering off: they say that it is. */
	[ROUTE_STATUS] = { "/api/cluster/status", "GET, OPTIONS",
		0, ROUTE_ANSWER_JSON, 1, {
		READ(ROUTE_CACHEABLE, build_empty, render_status) } },
	[ROUTE_HEALTH] = { "/api/cluster/health", "GET, OPTIONS",
		ROUTE_CLUSTER, ROUTE_ANSWER_JSON, 1, {
		READ(ROUTE_CACHEABLE, build_empty, render_health) } },
	[ROUTE_ENABLE_SERVING] = { "/api/cluster/enable-serving",
		"POST, OPTIONS", ROUTE_CLUSTER, ROUTE_ANSWER_JSON, 1, {
		WRITE(HTTP_POST, 0, build_serving,
		      render_serving) } },
	[ROUTE_DISABLE_SERVING] = { "/api/cluster/disable-serving",
		"POST, OPTIONS", ROUTE_CLUSTER, ROUTE_ANSWER_JSON, 1, {
		WRITE(HTTP_POST, 0, build_serving,
		      render_serving) } },
	[ROUTE_SERVICE_STATUS] = { "/api/cluster/service-status",
		"GET, OPTIONS", 0, ROUTE_ANSWER_JSON, 1, {
		READ(ROUTE_CACHEABLE, build_empty, render_service_status) } },
	[ROUTE_METRICS] = { "/metrics", "GET, OPTIONS",
		0, ROUTE_ANSWER_METRICS, 1, {
		READ(0, build_empty, NULL) } },
	[ROUTE_EVENTS] = { "/api/cluster/events", "GET, OPTIONS",
		ROUTE_CLUSTER, ROUTE_ANSWER_STREAM, 1, {
		READ(0, NULL, NULL) } },
	[ROUTE_REPLICA] = { "/api/cluster/replica", "GET, OPTIONS",
		ROUTE_CLUSTER, ROUTE_ANSWER_PROTOBUF, 1, {
		READ(0, build_list, NULL) } },
	/* Not a route: what an unmatched path counts under. */
	[ROUTE_UNKNOWN] = { "unknown", "", 0, ROUTE_ANSWER_JSON, 0, { { 0 } } },
};

#undef READ
#undef WRITE
/* clang-format on */

static int check_fail(char *msg, size_t msglen, enum route_id r,
		      const char *what)
{
	snprintf(msg, msglen, "route %s: %s", route_table[r].path, what);
	return -EINVAL;
}

int route_table_check(char *msg, size_t msglen)
{
	for (int r = 0; r < ROUTE_MAX; r++) {
		const struct route *rt = &route_table[r];
		if (!rt->path || !rt->allow || rt->nmethods > ROUTE_METHODS_MAX)
			return check_fail(msg, msglen, r, "incomplete row");
		if (r == ROUTE_UNKNOWN)
			continue;
		if (rt->path[0] != '/' || rt->nmethods == 0)
			return check_fail(msg, msglen, r, "no path or method");
		for (int o = 0; o < r; o++)
			if (!strcmp(route_table[o].path, rt->path))
				return check_fail(msg, msglen, r,
						  "path not unique");
		/* Allow: the methods in table order, then OPTIONS (http.c
		 * answers OPTIONS itself). */
		char allow[64] = "";
		for (size_t i = 0; i < rt->nmethods; i++) {
			const struct route_method *rm = &rt->methods[i];
			size_t n = strlen(allow);
			snprintf(allow + n, sizeof(allow) - n, "%s, ",
				 http_method_str(rm->method));
			if (method_find((enum route_id)r, rm->method) != rm)
				return check_fail(msg, msglen, r,
						  "method listed twice");
			bool write = rm->flags & ROUTE_WRITE;
			if (write != (rm->method != HTTP_GET))
				return check_fail(
				    msg, msglen, r,
				    "ROUTE_WRITE is not the method's");
			if (write &&
			    (rm->flags & (ROUTE_CACHEABLE | ROUTE_AUTH_READS)))
				return check_fail(
				    msg, msglen, r,
				    "a write is cacheable or a read");
			if ((rm->build == NULL) !=
			    (rt->answer == ROUTE_ANSWER_STREAM))
				return check_fail(
				    msg, msglen, r,
				    "builder missing (or on a stream)");
			if ((rm->render != NULL) !=
			    (rt->answer == ROUTE_ANSWER_JSON))
				return check_fail(
				    msg, msglen, r,
				    "JSON renderer missing (or not JSON)");
		}
		size_t n = strlen(allow);
		snprintf(allow + n, sizeof(allow) - n, "OPTIONS");
		if (strcmp(allow, rt->allow))
			return check_fail(msg, msglen, r,
					  "Allow does not list its methods");
	}
	return 0;
}
