/*
 * dispatch — requests from the api process (and tools/dump) on the
 * membership socket: one handler per request kind, the reply, and replies
 * held behind the group commit (persist.c).
 */
#include "internal.h"

struct client *dispatch_client(struct membership *m, uint64_t serial)
{
	for (struct client *c = m->clients; c; c = c->next)
		if (c->serial == serial)
			return c;
	return NULL;
}

void dispatch_error(Ps__Reply *r, Ps__Error *e, const char *code,
		    const char *msg)
{
	e->code = (char *)code;
	e->message = (char *)msg;
	r->error = e;
}

/* ---- requests ----------------------------------------------------------- */

void dispatch_send_reply(struct membership *m, struct client *c,
			 const Ps__Reply *reply)
{
	if (reply->registry_version > m->version_shown)
		m->version_shown = reply->registry_version;
	int rc = ipc_conn_send(c->conn, &reply->base);
	if (rc == -EMSGSIZE || rc == -ENOBUFS) {
		/* Too big, or the client has not read what it asked for
		 * before: answer this one with a small error instead of
		 * dropping the connection (and every request on it). */
		Ps__Reply r = PS__REPLY__INIT;
		Ps__Error e = PS__ERROR__INIT;
		r.id = reply->id;
		if (rc == -EMSGSIZE)
			dispatch_error(
			    &r, &e, "REPLY_TOO_LARGE",
			    "The answer exceeds the IPC frame limit; use filters");
		else
			dispatch_error(
			    &r, &e, "OVERLOADED",
			    "Too many large answers are queued; retry shortly");
		m->n_overloaded += rc == -ENOBUFS;
		rc = ipc_conn_send(c->conn, &r.base);
	}
	if (rc) {
		log_warn("client too slow or gone (%s); disconnecting",
			 strerror(-rc));
		ipc_conn_close(c->conn, rc);
	}
	(void)m;
}

/* Queues a reply behind the next group commit. */
void dispatch_refused(struct membership *m, struct client *c, uint64_t id)
{
	Ps__Reply r = PS__REPLY__INIT;
	Ps__Error e = PS__ERROR__INIT;
	r.id = id;
	dispatch_error(&r, &e, "STORAGE_UNAVAILABLE",
		       "The change could not be written to disk; retry later");
	dispatch_send_reply(m, c, &r);
}

/* Queues a reply behind the next group commit. Without room to hold it,
 * commits now (which covers this write too) and answers at once: the
 * reply, or 503 if the commit failed and undid the write. */
static void hold_reply(struct membership *m, struct client *c,
		       const Ps__Reply *reply)
{
	size_t off = m->held_frames.len;
	if (m->nheld < COMMIT_PENDING_MAX &&
	    ipc_frame_append(&m->held_frames, &reply->base) == 0) {
		m->held[m->nheld++] = (struct held_reply){
		    .client = c->serial,
		    .request = reply->id,
		    .off = off,
		    .len = m->held_frames.len - off,
		};
		return;
	}
	if (persist_commit(m) == 0)
		dispatch_send_reply(m, c, reply);
	else
		dispatch_refused(m, c, reply->id);
}

void dispatch_make_uuid(char out[37])
{
	uuid_t u;
	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

/* A registry refusal: the field at fault travels apart from the message. */
static void validation_error(Ps__Reply *r, Ps__Error *e, const char *msg,
			     char field[REGISTRY_FIELD_MAX])
{
	dispatch_error(r, e, "VALIDATION_ERROR", msg);
	if (registry_error_field(msg, field))
		e->field = field;
}

static bool writes_refused(struct membership *m, Ps__Reply *r, Ps__Error *e)
{
	if (!m->store_failed)
		return false;
	dispatch_error(
	    r, e, "STORAGE_UNAVAILABLE",
	    "The data directory cannot be written; changes are refused until it recovers");
	return true;
}

static bool not_coordinator(struct membership *m, Ps__Reply *r, Ps__Error *e,
			    char *msg, size_t msglen)
{
	if (membership_is_coordinator(m))
		return false;
	snprintf(
	    msg, msglen,
	    "Only the coordinator (%.200s) changes the registry; send this request there",
	    m->cfg->coordinator_url);
	dispatch_error(r, e, "NOT_COORDINATOR", msg);
	r->coordinator_url = (char *)m->cfg->coordinator_url;
	static char details[CONFIG_STR_MAX + 64];
	snprintf(details, sizeof(details), "{\"coordinatorUrl\":\"%.200s\"}",
		 m->cfg->coordinator_url);
	e->details_json = details;
	return true;
}

/* What answering one request needs; handlers fill `r` (and `e` on error). */
struct answer {
	Ps__Reply r;
	Ps__Error e;
	char msg[ERR_MSG_MAX];
	char field[REGISTRY_FIELD_MAX];
	Ps__Node **list;
	Ps__ServiceStatus svc;
	Ps__Gossip gossip_info;
	char self_addr[32];
	bool durable; /* the handler changed what must survive: reply held */
};

typedef void (*kind_fn)(struct membership *m, struct client *c,
			const Ps__Request *req, struct answer *a);

static void refuse(struct answer *a, const char *code, const char *msg)
{
	dispatch_error(&a->r, &a->e, code, msg);
}

static void on_register(struct membership *m, struct client *c,
			const Ps__Request *req, struct answer *a)
{
	(void)c;
	char idbuf[37];
	const char *id = req->register_->id;
	if (!id) {
		dispatch_make_uuid(idbuf);
		id = idbuf;
	}
	if (!strcmp(id, m->self_id)) {
		refuse(a, "CONFLICT", "That id belongs to this coordinator");
		return;
	}
	if (!persist_stage_node(m, id, NULL)) {
		refuse(a, "OVERLOADED",
		       "Too many changes wait for the disk; retry shortly");
		return;
	}
	bool created;
	struct reg_node *n;
	int rc = registry_register(
	    &m->reg, req->register_, id, m->cfg->cluster_id, time_wall_ms(),
	    time_mono(), &n, &created, a->msg, sizeof(a->msg));
	if (rc)
		persist_stage_drop(m);
	if (rc == -EINVAL) {
		validation_error(&a->r, &a->e, a->msg, a->field);
		return;
	}
	if (rc) {
		refuse(a, "REGISTRY_FULL",
		       rc == -ENOSPC ? a->msg : "Out of memory");
		return;
	}
	m->staged[m->nstaged - 1].event = created ? "registered" : "updated";
	a->r.node = &n->pb;
	a->r.has_created = true;
	a->r.created = created;
	persist_log_node(m, n, true);
	a->durable = true;
	if (created)
		log_info("registered %s at %s", n->pb.id, n->pb.url);
}

static void on_heartbeat(struct membership *m, struct client *c,
			 const Ps__Request *req, struct answer *a)
{
	(void)c;
	const Ps__HeartbeatReq *hb = req->heartbeat;
	struct reg_node *n;
	if (!strcmp(hb->id, m->self_id)) {
		membership_self_refresh(m);
		n = registry_find(&m->reg, m->self_id);
	} else {
		struct reg_node *before = registry_find(&m->reg, hb->id);
		Ps__NodeStatus was =
		    before ? before->pb.status : PS__NODE_STATUS__NODE_ACTIVE;
		/* A status the client sets is acknowledged only once
		 * durable; load and metadata are refreshed lazily. */
		bool staged = before && hb->has_status && hb->status != was &&
			      persist_stage_node(m, hb->id, "status");
		int rc = registry_heartbeat(&m->reg, hb->id, hb->has_status,
					    hb->status, hb->metadata_json,
					    time_wall_ms(), time_mono(), &n,
					    a->msg, sizeof(a->msg));
		if (staged && (rc || n->pb.status == was))
			persist_stage_drop(m);
		if (rc == -ENOENT) {
			snprintf(a->msg, sizeof(a->msg),
				 "Node %.64s is not registered", hb->id);
			refuse(a, "NODE_NOT_FOUND", a->msg);
			return;
		}
		if (rc) {
			validation_error(&a->r, &a->e, a->msg, a->field);
			return;
		}
		m->dirty_lazy = true;
		if (n->pb.status != was && staged) {
			persist_log_node(m, n, true);
			a->durable = true;
		} else if (n->pb.status != was) {
			/* Status moved without a staged before-image (staging
			 * full): logged, announced as before. */
			persist_log_node(m, n, false);
			events_node(m, "status", n->pb.id, n);
		}
	}
	a->r.node = n ? &n->pb : NULL;
	a->r.has_timestamp_ms = true;
	a->r.timestamp_ms = time_wall_ms();
}

static void on_list(struct membership *m, struct client *c,
		    const Ps__Request *req, struct answer *a)
{
	(void)c;
	const Ps__ListNodesReq *f =
	    req->body_case == PS__REQUEST__BODY_LIST_NODES ? req->list_nodes
							   : NULL;
	membership_self_refresh(m);
	a->list = malloc((m->reg.n ? m->reg.n : 1) * sizeof(*a->list));
	if (!a->list) {
		refuse(a, "INTERNAL_ERROR", "Out of memory");
		return;
	}
	size_t k = 0;
	for (size_t i = 0; i < m->reg.n; i++) {
		Ps__Node *pb = &m->reg.nodes[i]->pb;
		if (f && f->has_status && pb->status != f->status)
			continue;
		if (f && f->role && strcmp(pb->role, f->role))
			continue;
		if (f && f->cluster_id && strcmp(pb->cluster_id, f->cluster_id))
			continue;
		a->list[k++] = pb;
	}
	a->r.nodes = a->list;
	a->r.n_nodes = k;
	struct reg_node *self = registry_find(&m->reg, m->self_id);
	a->r.self = self ? &self->pb : NULL;
	a->r.has_coordinator_healthy = true;
	a->r.coordinator_healthy = policy_coordinator_alive(m);
}

static void on_get_node(struct membership *m, struct client *c,
			const Ps__Request *req, struct answer *a)
{
	(void)c;
	struct reg_node *n = registry_find(&m->reg, req->get_node->id);
	if (!n) {
		snprintf(a->msg, sizeof(a->msg), "Node %.64s not found",
			 req->get_node->id);
		refuse(a, "NODE_NOT_FOUND", a->msg);
		return;
	}
	a->r.node = &n->pb;
}

static void on_delete(struct membership *m, struct client *c,
		      const Ps__Request *req, struct answer *a)
{
	(void)c;
	const char *id = req->delete_node->id;
	if (!strcmp(id, m->self_id)) {
		refuse(a, "CONFLICT", "The coordinator cannot remove itself");
		return;
	}
	if (!persist_stage_node(m, id, "removed")) {
		refuse(a, "OVERLOADED",
		       "Too many changes wait for the disk; retry shortly");
		return;
	}
	if (registry_remove(&m->reg, id)) {
		persist_stage_drop(m);
		snprintf(a->msg, sizeof(a->msg), "Node %.64s not found", id);
		refuse(a, "NODE_NOT_FOUND", a->msg);
		return;
	}
	log_info("removed %s", id);
	persist_log_remove(m, id);
	a->durable = true;
}

static void on_get_status(struct membership *m, struct client *c,
			  const Ps__Request *req, struct answer *a)
{
	(void)c;
	(void)req;
	membership_self_refresh(m);
	struct reg_node *self = registry_find(&m->reg, m->self_id);
	a->r.self = self ? &self->pb : NULL;
	a->svc.serving = m->serving;
	a->svc.start_time_ms = m->start_ms;
	a->svc.changed_at_ms = m->changed_ms;
	a->r.service = &a->svc;
}

static void on_set_serving(struct membership *m, struct client *c,
			   const Ps__Request *req, struct answer *a)
{
	if (m->serving != req->set_serving->serving) {
		/* Announced (event, gossip) once durable. */
		persist_stage_serving(m);
		m->serving = req->set_serving->serving;
		m->changed_ms = time_wall_ms();
		log_info("serving %s",
			 m->serving ? "enabled" : "disabled (maintenance)");
		membership_self_refresh(m);
		persist_log_serving(m);
	}
	a->durable = true;
	on_get_status(m, c, req, a); /* the reply carries the new status */
}

static void on_stats(struct membership *m, struct client *c,
		     const Ps__Request *req, struct answer *a)
{
	(void)c;
	(void)req;
	if (stats_fill(m, &a->r))
		refuse(a, "INTERNAL_ERROR", "Out of memory");
}

static bool gossip_off(struct membership *m, struct answer *a)
{
	if (m->gossip)
		return false;
	refuse(a, "GOSSIP_OFF", "Gossip is off on this node (gossip_port = 0)");
	return true;
}

static void on_members(struct membership *m, struct client *c,
		       const Ps__Request *req, struct answer *a)
{
	(void)c;
	(void)req;
	if (gossip_off(m, a))
		return;
	a->r.self_id = m->self_id;
	if (inspect_members_fill(m, &a->r, &a->gossip_info, a->self_addr))
		refuse(a, "INTERNAL_ERROR", "Out of memory");
}

static void on_subscribe(struct membership *m, struct client *c,
			 const Ps__Request *req, struct answer *a)
{
	if (!c->subscriber) {
		c->subscriber = true;
		c->subscribe_id = req->id;
		m->nsubscribers++;
	}
	a->r.self_id = m->self_id;
}

static void on_follow(struct membership *m, struct client *c,
		      const Ps__Request *req, struct answer *a)
{
	if (gossip_off(m, a))
		return;
	if (!c->follower) {
		c->follower = true;
		c->follow_id = req->id;
		m->nfollowers++;
	}
	a->r.self_id = m->self_id;
}

/* One-way: the api's numbers for our gossip record; no reply. */
static void on_report(struct membership *m, struct client *c,
		      const Ps__Request *req, struct answer *a)
{
	(void)c;
	(void)a;
	m->http_connections = req->report->http_connections;
}

/*
 * Every request kind, one row each: its handler and what the dispatcher
 * checks before and after it, in one place (dispatch_handle), the way
 * Redis's processCommand reads its command table.
 */
enum {
	KIND_COORDINATOR = 1 << 0, /* only the coordinator: 409 elsewhere */
	KIND_WRITE = 1 << 1,	   /* refused (503) while storage is failing */
	KIND_DURABLE = 1 << 2, /* a change it makes is held for the commit */
	KIND_READ = 1 << 3,    /* reads the registry: waits for staged writes */
	KIND_ONEWAY = 1 << 4,  /* no reply */
};

/* clang-format off */
static const struct kind {
	const char *name;
	unsigned flags;
	kind_fn fn;
} kinds[] = {
	[PS__REQUEST__BODY_REGISTER] = {"register", KIND_COORDINATOR | KIND_WRITE | KIND_DURABLE, on_register},
	[PS__REQUEST__BODY_HEARTBEAT] = {"heartbeat", KIND_COORDINATOR | KIND_DURABLE, on_heartbeat},
	[PS__REQUEST__BODY_LIST_NODES] = {"list_nodes", KIND_READ, on_list},
	[PS__REQUEST__BODY_GET_NODE] = {"get_node", KIND_READ, on_get_node},
	[PS__REQUEST__BODY_DELETE_NODE] = {"delete_node", KIND_COORDINATOR | KIND_WRITE | KIND_DURABLE, on_delete},
	[PS__REQUEST__BODY_GET_STATUS] = {"get_status", KIND_READ, on_get_status},
	[PS__REQUEST__BODY_GET_HEALTH] = {"get_health", KIND_READ, on_list},
	[PS__REQUEST__BODY_SET_SERVING] = {"set_serving", KIND_WRITE | KIND_DURABLE, on_set_serving},
	[PS__REQUEST__BODY_GET_STATS] = {"get_stats", 0, on_stats},
	[PS__REQUEST__BODY_REPORT] = {"report", KIND_ONEWAY, on_report},
	[PS__REQUEST__BODY_GET_MEMBERS] = {"get_members", 0, on_members},
	[PS__REQUEST__BODY_FOLLOW] = {"follow", 0, on_follow},
	[PS__REQUEST__BODY_SUBSCRIBE] = {"subscribe", 0, on_subscribe},
};
/* clang-format on */
#define KINDS_N (sizeof(kinds) / sizeof(kinds[0]))

static const struct kind *kind_of(const Ps__Request *req)
{
	size_t i = (size_t)req->body_case;
	return i < KINDS_N && kinds[i].fn ? &kinds[i] : NULL;
}

bool dispatch_is_read(const Ps__Request *req)
{
	const struct kind *k = kind_of(req);
	return k && (k->flags & KIND_READ);
}

void dispatch_handle(struct membership *m, struct client *c, Ps__Request *req)
{
	const struct kind *k = kind_of(req);
	if (persist_read_waits(m, c, req))
		return; /* answered by persist_commit() */
	m->n_requests++;
	struct answer a = {
	    .r = PS__REPLY__INIT,
	    .e = PS__ERROR__INIT,
	    .svc = PS__SERVICE_STATUS__INIT,
	    .gossip_info = PS__GOSSIP__INIT,
	};
	a.r.id = req->id;
	a.r.has_registry_version = true;
	if (!k)
		refuse(&a, "BAD_REQUEST", "Unknown request");
	else if ((k->flags & KIND_COORDINATOR) &&
		 not_coordinator(m, &a.r, &a.e, a.msg, sizeof(a.msg)))
		;
	else if ((k->flags & KIND_WRITE) && writes_refused(m, &a.r, &a.e))
		;
	else
		k->fn(m, c, req, &a);
	if (k && (k->flags & KIND_ONEWAY))
		return;
	assert(!a.durable || (k->flags & KIND_DURABLE));
	a.r.registry_version =
	    membership_is_coordinator(m) ? m->reg.version : m->replica_version;
	if (a.durable && !a.r.error)
		hold_reply(m, c, &a.r);
	else
		dispatch_send_reply(m, c, &a.r);
	inspect_members_free(&a.r);
	free(a.list);
	stats_free(&a.r);
}
