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

void dispatch_handle(struct membership *m, struct client *c, Ps__Request *req)
{
	Ps__Reply r = PS__REPLY__INIT;
	Ps__Error e = PS__ERROR__INIT;
	char msg[ERR_MSG_MAX];
	char field[REGISTRY_FIELD_MAX];
	char idbuf[37];
	struct reg_node *n = NULL;
	Ps__Node **list = NULL;
	Ps__ServiceStatus svc = PS__SERVICE_STATUS__INIT;
	Ps__Gossip gossip_info = PS__GOSSIP__INIT;
	char self_addr[32] = "";
	bool durable = false;
	int rc;

	if (persist_read_waits(m, c, req))
		return; /* answered by persist_commit() */
	r.id = req->id;
	r.has_registry_version = true;
	m->n_requests++;
	if (req->body_case == PS__REQUEST__BODY_REPORT) {
		/* One-way: the api's numbers for our gossip record. */
		m->http_connections = req->report->http_connections;
		return;
	}
	switch (req->body_case) {
	case PS__REQUEST__BODY_REGISTER: {
		if (not_coordinator(m, &r, &e, msg, sizeof(msg)) ||
		    writes_refused(m, &r, &e))
			break;
		const char *id = req->register_->id;
		if (!id) {
			dispatch_make_uuid(idbuf);
			id = idbuf;
		}
		if (!strcmp(id, m->self_id)) {
			dispatch_error(&r, &e, "CONFLICT",
				       "That id belongs to this coordinator");
			break;
		}
		bool created;
		if (!persist_stage_node(m, id, NULL)) {
			dispatch_error(
			    &r, &e, "OVERLOADED",
			    "Too many changes wait for the disk; retry shortly");
			break;
		}
		rc = registry_register(&m->reg, req->register_, id,
				       m->cfg->cluster_id, time_wall_ms(),
				       time_mono(), &n, &created, msg,
				       sizeof(msg));
		if (rc)
			persist_stage_drop(m);
		if (rc == -EINVAL) {
			validation_error(&r, &e, msg, field);
			break;
		}
		if (rc) {
			dispatch_error(&r, &e, "REGISTRY_FULL",
				       rc == -ENOSPC ? msg : "Out of memory");
			break;
		}
		m->staged[m->nstaged - 1].event =
		    created ? "registered" : "updated";
		r.node = &n->pb;
		r.has_created = true;
		r.created = created;
		persist_log_node(m, n, true);
		durable = true;
		if (created)
			log_info("registered %s at %s", n->pb.id, n->pb.url);
		break;
	}
	case PS__REQUEST__BODY_HEARTBEAT: {
		if (not_coordinator(m, &r, &e, msg, sizeof(msg)))
			break;
		const Ps__HeartbeatReq *hb = req->heartbeat;
		if (!strcmp(hb->id, m->self_id)) {
			membership_self_refresh(m);
			n = registry_find(&m->reg, m->self_id);
		} else {
			struct reg_node *before =
			    registry_find(&m->reg, hb->id);
			Ps__NodeStatus was = before
						 ? before->pb.status
						 : PS__NODE_STATUS__NODE_ACTIVE;
			/* A status the client sets is acknowledged only once
			 * durable; load and metadata are refreshed lazily. */
			bool staged = before && hb->has_status &&
				      hb->status != was &&
				      persist_stage_node(m, hb->id, "status");
			rc = registry_heartbeat(&m->reg, hb->id, hb->has_status,
						hb->status, hb->metadata_json,
						time_wall_ms(), time_mono(), &n,
						msg, sizeof(msg));
			if (staged && (rc || n->pb.status == was))
				persist_stage_drop(m);
			if (rc == -ENOENT) {
				snprintf(msg, sizeof(msg),
					 "Node %.64s is not registered",
					 hb->id);
				dispatch_error(&r, &e, "NODE_NOT_FOUND", msg);
				break;
			}
			if (rc) {
				validation_error(&r, &e, msg, field);
				break;
			}
			m->dirty_lazy = true;
			if (n->pb.status != was && staged) {
				persist_log_node(m, n, true);
				durable = true;
			} else if (n->pb.status != was) {
				/* Status moved without a staged before-image
				 * (staging full): logged, announced as before.
				 */
				persist_log_node(m, n, false);
				events_node(m, "status", n->pb.id, n);
			}
		}
		r.node = n ? &n->pb : NULL;
		r.has_timestamp_ms = true;
		r.timestamp_ms = time_wall_ms();
		break;
	}
	case PS__REQUEST__BODY_LIST_NODES:
	case PS__REQUEST__BODY_GET_HEALTH: {
		const Ps__ListNodesReq *f =
		    req->body_case == PS__REQUEST__BODY_LIST_NODES
			? req->list_nodes
			: NULL;
		membership_self_refresh(m);
		list = malloc((m->reg.n ? m->reg.n : 1) * sizeof(*list));
		if (!list) {
			dispatch_error(&r, &e, "INTERNAL_ERROR",
				       "Out of memory");
			break;
		}
		size_t k = 0;
		for (size_t i = 0; i < m->reg.n; i++) {
			Ps__Node *pb = &m->reg.nodes[i]->pb;
			if (f && f->has_status && pb->status != f->status)
				continue;
			if (f && f->role && strcmp(pb->role, f->role))
				continue;
			if (f && f->cluster_id &&
			    strcmp(pb->cluster_id, f->cluster_id))
				continue;
			list[k++] = pb;
		}
		r.nodes = list;
		r.n_nodes = k;
		n = registry_find(&m->reg, m->self_id);
		r.self = n ? &n->pb : NULL;
		r.has_coordinator_healthy = true;
		r.coordinator_healthy = policy_coordinator_alive(m);
		break;
	}
	case PS__REQUEST__BODY_GET_NODE:
		n = registry_find(&m->reg, req->get_node->id);
		if (!n) {
			snprintf(msg, sizeof(msg), "Node %.64s not found",
				 req->get_node->id);
			dispatch_error(&r, &e, "NODE_NOT_FOUND", msg);
			break;
		}
		r.node = &n->pb;
		break;
	case PS__REQUEST__BODY_DELETE_NODE:
		if (not_coordinator(m, &r, &e, msg, sizeof(msg)) ||
		    writes_refused(m, &r, &e))
			break;
		if (!strcmp(req->delete_node->id, m->self_id)) {
			dispatch_error(&r, &e, "CONFLICT",
				       "The coordinator cannot remove itself");
			break;
		}
		if (!persist_stage_node(m, req->delete_node->id, "removed")) {
			dispatch_error(
			    &r, &e, "OVERLOADED",
			    "Too many changes wait for the disk; retry shortly");
			break;
		}
		if (registry_remove(&m->reg, req->delete_node->id)) {
			persist_stage_drop(m);
			snprintf(msg, sizeof(msg), "Node %.64s not found",
				 req->delete_node->id);
			dispatch_error(&r, &e, "NODE_NOT_FOUND", msg);
			break;
		}
		log_info("removed %s", req->delete_node->id);
		persist_log_remove(m, req->delete_node->id);
		durable = true;
		break;
	case PS__REQUEST__BODY_SET_SERVING:
		if (writes_refused(m, &r, &e))
			break;
		if (m->serving != req->set_serving->serving) {
			/* Announced (event, gossip) once durable. */
			persist_stage_serving(m);
			m->serving = req->set_serving->serving;
			m->changed_ms = time_wall_ms();
			log_info("serving %s", m->serving
						   ? "enabled"
						   : "disabled (maintenance)");
			membership_self_refresh(m);
			persist_log_serving(m);
		}
		durable = true;
		/* The reply carries the new status. */
		__attribute__((fallthrough));
	case PS__REQUEST__BODY_GET_STATUS:
		membership_self_refresh(m);
		n = registry_find(&m->reg, m->self_id);
		r.self = n ? &n->pb : NULL;
		svc.serving = m->serving;
		svc.start_time_ms = m->start_ms;
		svc.changed_at_ms = m->changed_ms;
		r.service = &svc;
		break;
	case PS__REQUEST__BODY_GET_STATS:
		if (stats_fill(m, &r))
			dispatch_error(&r, &e, "INTERNAL_ERROR",
				       "Out of memory");
		break;
	case PS__REQUEST__BODY_GET_MEMBERS:
		if (!m->gossip) {
			dispatch_error(
			    &r, &e, "GOSSIP_OFF",
			    "Gossip is off on this node (gossip_port = 0)");
			break;
		}
		r.self_id = m->self_id;
		if (inspect_members_fill(m, &r, &gossip_info, self_addr))
			dispatch_error(&r, &e, "INTERNAL_ERROR",
				       "Out of memory");
		break;
	case PS__REQUEST__BODY_SUBSCRIBE:
		if (!c->subscriber) {
			c->subscriber = true;
			c->subscribe_id = req->id;
			m->nsubscribers++;
		}
		r.self_id = m->self_id;
		break;
	case PS__REQUEST__BODY_FOLLOW:
		if (!m->gossip) {
			dispatch_error(
			    &r, &e, "GOSSIP_OFF",
			    "Gossip is off on this node (gossip_port = 0)");
			break;
		}
		if (!c->follower) {
			c->follower = true;
			c->follow_id = req->id;
			m->nfollowers++;
		}
		r.self_id = m->self_id;
		break;
	default:
		dispatch_error(&r, &e, "BAD_REQUEST", "Unknown request");
		break;
	}
	r.registry_version =
	    membership_is_coordinator(m) ? m->reg.version : m->replica_version;
	if (durable && !r.error)
		hold_reply(m, c, &r);
	else
		dispatch_send_reply(m, c, &r);
	inspect_members_free(&r);
	free(list);
	stats_free(&r);
}
