/* registry — the authoritative node table; see include/proxystone/registry.h.
 */
#include "proxystone/registry.h"
#include "proxystone/buf.h"
#include "proxystone/json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Initial hash size; doubled when the load factor passes 1. */
#define REGISTRY_BUCKETS_MIN 64

/* FNV-1a: short keys, good spread, no dependencies. */
static size_t hash_id(const char *id)
{
	uint64_t h = 1469598103934665603ull;
	for (; *id; id++)
		h = (h ^ (uint8_t)*id) * 1099511628211ull;
	return (size_t)h;
}

size_t registry_count_over_limit(const struct registry *r)
{
	size_t k = 0;
	for (size_t i = 0; i < r->n; i++) {
		const char *md = r->nodes[i]->pb.metadata_json;
		if (md && strlen(md) > r->metadata_max)
			k++;
	}
	return k;
}

void registry_init(struct registry *r, size_t metadata_max)
{
	memset(r, 0, sizeof(*r));
	r->metadata_max = metadata_max;
}

static void node_free(struct reg_node *n)
{
	Ps__Node *pb = &n->pb;
	free(pb->id);
	free(pb->url);
	free(pb->cluster_id);
	free(pb->role);
	for (size_t i = 0; i < pb->n_tags; i++)
		free(pb->tags[i]);
	free(pb->tags);
	for (size_t i = 0; i < pb->n_capabilities; i++) {
		free(pb->capabilities[i]->name);
		free(pb->capabilities[i]);
	}
	free(pb->capabilities);
	free(pb->metadata_json);
	free(pb->gossip_addr);
	free(n);
}

void registry_fini(struct registry *r)
{
	for (size_t i = 0; i < r->n; i++)
		node_free(r->nodes[i]);
	free(r->nodes);
	free(r->buckets);
	memset(r, 0, sizeof(*r));
}

struct reg_node *registry_find(const struct registry *r, const char *id)
{
	if (!r->nbuckets)
		return NULL;
	struct reg_node *n = r->buckets[hash_id(id) & (r->nbuckets - 1)];
	for (; n; n = n->hnext)
		if (!strcmp(n->pb.id, id))
			return n;
	return NULL;
}

static int rehash(struct registry *r, size_t nb)
{
	struct reg_node **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < r->n; i++) {
		struct reg_node *n = r->nodes[i];
		size_t h = hash_id(n->pb.id) & (nb - 1);
		n->hnext = b[h];
		b[h] = n;
	}
	free(r->buckets);
	r->buckets = b;
	r->nbuckets = nb;
	return 0;
}

static int insert(struct registry *r, struct reg_node *n)
{
	if (r->n >= REGISTRY_NODES_MAX)
		return -ENOSPC;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct reg_node **v = realloc(r->nodes, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		r->nodes = v;
		r->cap = cap;
	}
	if (r->n + 1 > r->nbuckets) {
		size_t nb =
		    r->nbuckets ? r->nbuckets * 2 : REGISTRY_BUCKETS_MIN;
		int rc = rehash(r, nb);
		if (rc)
			return rc;
	}
	r->nodes[r->n++] = n;
	size_t h = hash_id(n->pb.id) & (r->nbuckets - 1);
	n->hnext = r->buckets[h];
	r->buckets[h] = n;
	return 0;
}

static int fail(char *err, size_t errlen, const char *field, const char *why)
{
	snprintf(err, errlen, "%s: %s", field, why);
	return -EINVAL;
}

bool registry_error_field(const char *err, char field[REGISTRY_FIELD_MAX])
{
	size_t n = strcspn(err, ":");
	if (err[n] != ':' || n == 0 || n >= REGISTRY_FIELD_MAX ||
	    strspn(err,
		   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != n)
		return false;
	memcpy(field, err, n);
	field[n] = '\0';
	return true;
}

static bool url_valid(const char *url)
{
	size_t n = strlen(url);
	const char *rest;
	if (!strncmp(url, "http://", 7))
		rest = url + 7;
	else if (!strncmp(url, "https://", 8))
		rest = url + 8;
	else
		return false;
	if (n > NODE_URL_MAX)
		return false;
	/* The authority (up to the first '/', '?' or '#') must hold a host:
	 * no userinfo, and a name or address before any port. */
	size_t alen = strcspn(rest, "/?#");
	if (alen == 0 || memchr(rest, '@', alen))
		return false;
	char c0 = rest[0];
	if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') ||
	      (c0 >= '0' && c0 <= '9') || c0 == '['))
		return false;
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '"' ||
		    *p == '<' || *p == '>' || *p == '\\')
			return false;
	return true;
}

static int validate(const struct registry *r, const Ps__RegisterReq *req,
		    char *err, size_t errlen)
{
	if (!req->url || !url_valid(req->url))
		return fail(err, errlen, "url",
			    "must be an http:// or https:// URL with a host");
	if (req->role && strcmp(req->role, "worker") &&
	    strcmp(req->role, "coordinator"))
		return fail(err, errlen, "role",
			    "must be 'worker' or 'coordinator'");
	if (req->cluster_id &&
	    (!req->cluster_id[0] || strlen(req->cluster_id) > NODE_ID_MAX ||
	     !node_id_valid(req->cluster_id)))
		return fail(err, errlen, "clusterId",
			    "must be 1-64 of [A-Za-z0-9._:-]");
	if (req->n_tags > NODE_TAGS_MAX)
		return fail(err, errlen, "tags", "more than 64 tags");
	for (size_t i = 0; i < req->n_tags; i++)
		if (strlen(req->tags[i]) > NODE_TAG_LEN_MAX)
			return fail(err, errlen, "tags",
				    "a tag is longer than 128 bytes");
	if (req->n_capabilities > NODE_CAPS_MAX)
		return fail(err, errlen, "capabilities",
			    "more than 64 capabilities");
	for (size_t i = 0; i < req->n_capabilities; i++)
		if (strlen(req->capabilities[i]->name) > NODE_TAG_LEN_MAX)
			return fail(err, errlen, "capabilities",
				    "a name is longer than 128 bytes");
	if (req->metadata_json && strlen(req->metadata_json) > r->metadata_max)
		return fail(err, errlen, "metadata", "too large");
	return 0;
}

/* Replaces tags and capabilities with copies of the request's. */
static int set_lists(Ps__Node *pb, const Ps__RegisterReq *req)
{
	char **tags = calloc(req->n_tags ? req->n_tags : 1, sizeof(*tags));
	Ps__Capability **caps = calloc(
	    req->n_capabilities ? req->n_capabilities : 1, sizeof(*caps));
	if (!tags || !caps)
		goto nomem;
	for (size_t i = 0; i < req->n_tags; i++)
		if (!(tags[i] = strdup(req->tags[i])))
			goto nomem;
	for (size_t i = 0; i < req->n_capabilities; i++) {
		caps[i] = malloc(sizeof(**caps));
		if (!caps[i])
			goto nomem;
		ps__capability__init(caps[i]);
		caps[i]->value = req->capabilities[i]->value;
		if (!(caps[i]->name = strdup(req->capabilities[i]->name)))
			goto nomem;
	}
	for (size_t i = 0; i < pb->n_tags; i++)
		free(pb->tags[i]);
	free(pb->tags);
	for (size_t i = 0; i < pb->n_capabilities; i++) {
		free(pb->capabilities[i]->name);
		free(pb->capabilities[i]);
	}
	free(pb->capabilities);
	pb->tags = tags;
	pb->n_tags = req->n_tags;
	pb->capabilities = caps;
	pb->n_capabilities = req->n_capabilities;
	return 0;
nomem:
	if (tags)
		for (size_t i = 0; i < req->n_tags; i++)
			free(tags[i]);
	if (caps)
		for (size_t i = 0; i < req->n_capabilities; i++) {
			if (caps[i])
				free(caps[i]->name);
			free(caps[i]);
		}
	free(tags);
	free(caps);
	return -ENOMEM;
}

static struct reg_node *node_new(const char *id)
{
	struct reg_node *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	ps__node__init(&n->pb);
	n->pb.id = strdup(id);
	if (!n->pb.id) {
		free(n);
		return NULL;
	}
	return n;
}

int registry_register(struct registry *r, const Ps__RegisterReq *req,
		      const char *id, const char *default_cluster,
		      int64_t now_ms, double now_mono, struct reg_node **out,
		      bool *created, char *err, size_t errlen)
{
	if (!node_id_valid(id))
		return fail(err, errlen, "id",
			    "must be 1-64 of [A-Za-z0-9._:-]");
	int rc = validate(r, req, err, errlen);
	if (rc)
		return rc;
	struct reg_node *n = registry_find(r, id);
	*created = n == NULL;
	if (!n) {
		if (r->n >= REGISTRY_NODES_MAX) {
			snprintf(err, errlen, "registry is full (%d nodes)",
				 REGISTRY_NODES_MAX);
			return -ENOSPC;
		}
		n = node_new(id);
		if (!n)
			return -ENOMEM;
		n->pb.created_at_ms = now_ms;
	}
	Ps__Node *pb = &n->pb;
	/* Build every new field first so a failure leaves the entry intact. */
	char *url = strdup(req->url);
	char *cluster =
	    strdup(req->cluster_id ? req->cluster_id : default_cluster);
	char *role = strdup(req->role ? req->role : "worker");
	char *meta = strdup(req->metadata_json ? req->metadata_json : "{}");
	if (!url || !cluster || !role || !meta || set_lists(pb, req)) {
		free(url);
		free(cluster);
		free(role);
		free(meta);
		if (*created)
			node_free(n);
		return -ENOMEM;
	}
	free(pb->url);
	free(pb->cluster_id);
	free(pb->role);
	free(pb->metadata_json);
	pb->url = url;
	pb->cluster_id = cluster;
	pb->role = role;
	pb->metadata_json = meta;
	pb->status = PS__NODE_STATUS__NODE_ACTIVE;
	pb->last_seen_ms = now_ms;
	n->last_heard = now_mono;
	if (*created) {
		rc = insert(r, n);
		if (rc) {
			node_free(n);
			return rc;
		}
	}
	r->version++;
	*out = n;
	return 0;
}

int registry_heartbeat(struct registry *r, const char *id, bool has_status,
		       Ps__NodeStatus status, const char *metadata_json,
		       int64_t now_ms, double now_mono, struct reg_node **out,
		       char *err, size_t errlen)
{
	struct reg_node *n = registry_find(r, id);
	if (!n)
		return -ENOENT;
	if (metadata_json) {
		struct buf merged;
		buf_init(&merged, r->metadata_max);
		const char *base =
		    n->pb.metadata_json ? n->pb.metadata_json : "{}";
		int rc = json_merge_objects(base, strlen(base), metadata_json,
					    strlen(metadata_json), &merged, err,
					    errlen);
		if (rc == -ENOSPC)
			snprintf(err, errlen,
				 "metadata: merged object exceeds %zu bytes",
				 r->metadata_max);
		if (rc) {
			buf_fini(&merged);
			return -EINVAL;
		}
		if (!n->pb.metadata_json ||
		    strcmp(n->pb.metadata_json, merged.base)) {
			free(n->pb.metadata_json);
			n->pb.metadata_json = merged.base; /* take the bytes */
			r->version++;
		} else {
			buf_fini(&merged);
		}
	}
	Ps__NodeStatus next =
	    has_status ? status : PS__NODE_STATUS__NODE_ACTIVE;
	registry_set_status(r, n, next);
	n->pb.last_seen_ms = now_ms;
	n->last_heard = now_mono;
	*out = n;
	return 0;
}

int registry_remove(struct registry *r, const char *id)
{
	struct reg_node *n = registry_find(r, id);
	if (!n)
		return -ENOENT;
	struct reg_node **pp = &r->buckets[hash_id(id) & (r->nbuckets - 1)];
	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	for (size_t i = 0; i < r->n; i++) {
		if (r->nodes[i] == n) {
			memmove(&r->nodes[i], &r->nodes[i + 1],
				(r->n - i - 1) * sizeof(*r->nodes));
			r->n--;
			break;
		}
	}
	node_free(n);
	r->version++;
	return 0;
}

void registry_set_status(struct registry *r, struct reg_node *n,
			 Ps__NodeStatus status)
{
	if (n->pb.status != status) {
		n->pb.status = status;
		r->version++;
	}
}

int registry_load_node(struct registry *r, const Ps__Node *pb, double now_mono)
{
	if (!pb->id || !node_id_valid(pb->id) || registry_find(r, pb->id))
		return -EINVAL;
	Ps__RegisterReq req = PS__REGISTER_REQ__INIT;
	req.url = pb->url;
	req.cluster_id = pb->cluster_id;
	req.role = pb->role;
	req.n_tags = pb->n_tags;
	req.tags = pb->tags;
	req.n_capabilities = pb->n_capabilities;
	req.capabilities = pb->capabilities;
	req.metadata_json = pb->metadata_json;
	char err[128];
	bool created;
	struct reg_node *n;
	uint64_t v = r->version;
	/* The same validation as a live registration: a snapshot is input
	 * too. Except the configurable metadata bound: limits apply to new
	 * writes, and what was acknowledged under a larger
	 * max_metadata_bytes loads as it was stored, counted. */
	size_t limit = r->metadata_max;
	size_t md_len = pb->metadata_json ? strlen(pb->metadata_json) : 0;
	if (md_len > limit)
		r->metadata_max = md_len;
	int rc =
	    registry_register(r, &req, pb->id, pb->cluster_id, pb->last_seen_ms,
			      now_mono, &n, &created, err, sizeof(err));
	r->metadata_max = limit;
	if (rc)
		return rc;
	n->pb.created_at_ms = pb->created_at_ms;
	n->pb.status = pb->status;
	n->pb.has_gossip = pb->has_gossip;
	n->pb.gossip = pb->gossip;
	n->pb.has_response_time_ms = pb->has_response_time_ms;
	n->pb.response_time_ms = pb->response_time_ms;
	if (pb->gossip_addr && !(n->pb.gossip_addr = strdup(pb->gossip_addr))) {
		registry_remove(r, pb->id);
		r->version = v;
		return -ENOMEM;
	}
	r->version = v;
	return 0;
}
