/*
 * membership — the process that owns the registry, identity, serving mode
 * and their persistence; serves ipc.proto requests on a Unix socket.
 *
 * Durability: a request that changes what must survive a crash
 * (register, delete, serving mode) is applied in memory and its reply is
 * held. Before the loop next blocks (ev_prepare), one snapshot is written
 * for every change made in this loop iteration — a group commit — and only
 * then are the held replies sent. A reply that says "success" therefore
 * always describes state on disk. Heartbeats only refresh liveness; they
 * are flushed lazily (STORE_LAZY_FLUSH) since losing one costs nothing.
 */
#include "proxystone/membership.h"
#include "proxystone/config.h"
#include "proxystone/ipc.h"
#include "proxystone/log.h"
#include "proxystone/registry.h"
#include "proxystone/store.h"
#include "proxystone/supervisor.h"
#include "proxystone/timeutil.h"

#include <errno.h>
#include <ev.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <uuid/uuid.h>

/* Clients at once: the api process, a few tools/dump readers. */
#define MEMBERSHIP_CLIENTS_MAX 32
/* Held replies awaiting one group commit; past this we commit at once. */
#define COMMIT_PENDING_MAX 4096
/* Liveness-only changes (heartbeats, expiry) reach disk within this. */
#define STORE_LAZY_FLUSH 1.0
/* After a failed snapshot, retry this often; writes answer 503 meanwhile. */
#define STORE_RETRY_INTERVAL 1.0
/* Expiry scan period bound: a few scans per node_timeout, at most 1 s apart. */
#define EXPIRE_SCAN_MAX 1.0
/* An error message we put in a reply. */
#define ERR_MSG_MAX 512

struct membership;

struct client {
	struct membership *m;
	struct ipc_conn *conn;
	uint64_t serial; /* stays unique; held replies refer to it */
	struct client *next;
};

struct held_reply {
	uint64_t client;    /* serial of the client it goes to */
	uint64_t request;   /* request id, for an error reply instead */
	size_t off, len;    /* frame bytes in held_frames */
};

struct membership {
	const struct config *cfg;
	struct ev_loop *loop;
	struct registry reg;
	char self_id[NODE_ID_MAX + 1];
	char store_path[PATH_MAX];
	bool serving;
	int64_t start_ms, changed_ms;
	int listen_fd;
	ev_io accept_io;
	ev_timer expire_timer, flush_timer;
	ev_prepare commit_prep;
	ev_signal sigterm, sigint;
	struct client *clients;
	size_t nclients;
	uint64_t next_serial;
	/* Group commit state. */
	bool dirty_sync, dirty_lazy, store_failed;
	double store_failed_at;
	struct held_reply held[COMMIT_PENDING_MAX];
	size_t nheld;
	struct buf held_frames;
	/* Counters for /metrics. */
	uint64_t n_requests, n_bad_frames, n_clients_rejected;
	uint64_t n_saves, n_save_failures, n_expired, n_snapshot_damaged;
	double save_seconds;
};

static void self_refresh(struct membership *m)
{
	struct reg_node *self = registry_find(&m->reg, m->self_id);
	if (!self)
		return;
	self->pb.last_seen_ms = time_wall_ms();
	self->last_heard = time_mono();
	registry_set_status(&m->reg, self,
			    m->serving ? PS__NODE_STATUS__NODE_ACTIVE
				       : PS__NODE_STATUS__NODE_DISABLED);
}

/* ---- persistence -------------------------------------------------------- */

static int save_now(struct membership *m)
{
	Ps__Snapshot snap = PS__SNAPSHOT__INIT;
	snap.self_id = m->self_id;
	snap.registry_version = m->reg.version;
	snap.serving = m->serving;
	snap.changed_at_ms = m->changed_ms;
	Ps__Node **nodes = malloc((m->reg.n ? m->reg.n : 1) * sizeof(*nodes));
	if (!nodes)
		return -ENOMEM;
	for (size_t i = 0; i < m->reg.n; i++)
		nodes[i] = &m->reg.nodes[i]->pb;
	snap.nodes = nodes;
	snap.n_nodes = m->reg.n;
	char err[ERR_MSG_MAX];
	double t0 = time_mono();
	int rc = store_save(m->store_path, &snap, err, sizeof(err));
	m->save_seconds += time_mono() - t0;
	free(nodes);
	if (rc) {
		m->n_save_failures++;
		if (!m->store_failed)
			log_error("snapshot not saved: %s", err);
		m->store_failed = true;
		m->store_failed_at = time_mono();
		return rc;
	}
	if (m->store_failed)
		log_info("snapshot saved again; storage recovered");
	m->n_saves++;
	m->store_failed = false;
	m->dirty_sync = m->dirty_lazy = false;
	return 0;
}

static int load_state(struct membership *m)
{
	char err[ERR_MSG_MAX];
	char prev[PATH_MAX + 8];
	Ps__Snapshot *snap = NULL;
	int rc = store_load(m->store_path, &snap, err, sizeof(err));
	if (rc == -EBADMSG) {
		m->n_snapshot_damaged++;
		log_error("damaged snapshot, not loaded: %s", err);
		char aside[PATH_MAX + 32];
		snprintf(aside, sizeof(aside), "%s.damaged-%lld",
			 m->store_path, (long long)time_wall_ms());
		rename(m->store_path, aside);
		log_error("moved it aside to %s", aside);
		snprintf(prev, sizeof(prev), "%s.prev", m->store_path);
		rc = store_load(prev, &snap, err, sizeof(err));
		if (rc == 0)
			log_warn("loaded the previous snapshot %s instead",
				 prev);
	}
	if (rc == -ENOENT)
		return 0;
	if (rc) {
		log_error("no usable snapshot: %s", err);
		return rc == -EBADMSG ? 0 : rc;
	}
	double now = time_mono();
	if (registry_id_valid(snap->self_id))
		snprintf(m->self_id, sizeof(m->self_id), "%s", snap->self_id);
	m->serving = snap->serving;
	m->changed_ms = snap->changed_at_ms;
	size_t bad = 0;
	for (size_t i = 0; i < snap->n_nodes; i++)
		if (registry_load_node(&m->reg, snap->nodes[i], now))
			bad++;
	m->reg.version = snap->registry_version;
	if (bad)
		log_warn("snapshot: skipped %zu invalid entries", bad);
	log_info("loaded snapshot: %zu nodes, registry version %llu",
		 m->reg.n, (unsigned long long)m->reg.version);
	ps__snapshot__free_unpacked(snap, NULL);
	return 0;
}

static struct client *client_by_serial(struct membership *m, uint64_t serial)
{
	for (struct client *c = m->clients; c; c = c->next)
		if (c->serial == serial)
			return c;
	return NULL;
}

static void send_reply(struct membership *m, struct client *c,
		       const Ps__Reply *reply);

static void error_reply(Ps__Reply *r, Ps__Error *e, unsigned status,
			const char *code, const char *msg)
{
	e->http_status = status;
	e->code = (char *)code;
	e->message = (char *)msg;
	r->error = e;
}

/* Writes the snapshot if anything needs it and releases held replies. */
static void commit(struct membership *m)
{
	if (!m->dirty_sync && m->nheld == 0)
		return;
	int rc = m->dirty_sync ? save_now(m) : 0;
	for (size_t i = 0; i < m->nheld; i++) {
		struct held_reply *h = &m->held[i];
		struct client *c = client_by_serial(m, h->client);
		if (!c)
			continue;
		if (rc == 0) {
			if (ipc_conn_send_frames(c->conn,
						 m->held_frames.base + h->off,
						 h->len))
				ipc_conn_close(c->conn, -ENOBUFS);
			continue;
		}
		Ps__Reply r = PS__REPLY__INIT;
		Ps__Error e = PS__ERROR__INIT;
		r.id = h->request;
		error_reply(&r, &e, 503, "STORAGE_UNAVAILABLE",
			    "The change could not be written to disk; retry later");
		send_reply(m, c, &r);
	}
	m->nheld = 0;
	buf_reset(&m->held_frames);
}

static void on_commit_prepare(struct ev_loop *loop, ev_prepare *w, int rev)
{
	(void)loop;
	(void)rev;
	commit(w->data);
}

static void on_flush_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct membership *m = w->data;
	if (m->dirty_lazy || m->dirty_sync ||
	    (m->store_failed &&
	     time_mono() - m->store_failed_at >= STORE_RETRY_INTERVAL))
		save_now(m);
}

static void on_expire_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct membership *m = w->data;
	self_refresh(m);
	size_t n = registry_expire(&m->reg, time_mono(), m->cfg->node_timeout,
				   m->self_id);
	if (n) {
		m->n_expired += n;
		m->dirty_lazy = true;
		log_info("%zu node(s) inactive: no heartbeat within %.1f s", n,
			 m->cfg->node_timeout);
	}
}

/* ---- requests ----------------------------------------------------------- */

static void send_reply(struct membership *m, struct client *c,
		       const Ps__Reply *reply)
{
	int rc = ipc_conn_send(c->conn, &reply->base);
	if (rc == -EMSGSIZE) {
		Ps__Reply r = PS__REPLY__INIT;
		Ps__Error e = PS__ERROR__INIT;
		r.id = reply->id;
		error_reply(&r, &e, 500, "REPLY_TOO_LARGE",
			    "The answer exceeds the IPC frame limit; use filters");
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
static void hold_reply(struct membership *m, struct client *c,
		       const Ps__Reply *reply)
{
	if (m->nheld == COMMIT_PENDING_MAX)
		commit(m);
	size_t off = m->held_frames.len;
	int rc = ipc_frame_append(&m->held_frames, &reply->base);
	if (rc) {
		commit(m);
		off = m->held_frames.len;
		rc = ipc_frame_append(&m->held_frames, &reply->base);
	}
	if (rc) {
		send_reply(m, c, reply); /* cannot happen for node-sized replies */
		return;
	}
	m->held[m->nheld++] = (struct held_reply){
		.client = c->serial,
		.request = reply->id,
		.off = off,
		.len = m->held_frames.len - off,
	};
}

static void make_uuid(char out[37])
{
	uuid_t u;
	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

/* Registry messages read "field: reason"; the field goes to details. */
static void validation_error(Ps__Reply *r, Ps__Error *e, const char *msg,
			     char details[96])
{
	error_reply(r, e, 400, "VALIDATION_ERROR", msg);
	size_t n = strcspn(msg, ":");
	if (msg[n] == ':' && n < 32 && strspn(msg, "abcdefghijklmnopqrstuvwxyz"
						    "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == n) {
		snprintf(details, 96, "{\"field\":\"%.*s\"}", (int)n, msg);
		e->details_json = details;
	}
}

static bool writes_refused(struct membership *m, Ps__Reply *r, Ps__Error *e)
{
	if (!m->store_failed)
		return false;
	error_reply(r, e, 503, "STORAGE_UNAVAILABLE",
		    "The data directory cannot be written; changes are refused until it recovers");
	return true;
}

static bool is_coordinator(const struct membership *m)
{
	return m->cfg->role == ROLE_COORDINATOR;
}

static bool not_coordinator(struct membership *m, Ps__Reply *r, Ps__Error *e,
			    char *msg, size_t msglen)
{
	if (is_coordinator(m))
		return false;
	snprintf(msg, msglen,
		 "Only the coordinator (%.200s) changes the registry; send this request there",
		 m->cfg->coordinator_url);
	error_reply(r, e, 409, "NOT_COORDINATOR", msg);
	r->coordinator_url = (char *)m->cfg->coordinator_url;
	return true;
}

static void handle(struct membership *m, struct client *c, Ps__Request *req)
{
	Ps__Reply r = PS__REPLY__INIT;
	Ps__Error e = PS__ERROR__INIT;
	char msg[ERR_MSG_MAX];
	char details[96];
	char idbuf[37];
	struct reg_node *n = NULL;
	Ps__Node **list = NULL;
	Ps__Counter *counters = NULL, **counterp = NULL;
	Ps__ServiceStatus svc = PS__SERVICE_STATUS__INIT;
	bool durable = false;
	int rc;

	r.id = req->id;
	r.has_registry_version = true;
	m->n_requests++;
	switch (req->body_case) {
	case PS__REQUEST__BODY_REGISTER: {
		if (not_coordinator(m, &r, &e, msg, sizeof(msg)) ||
		    writes_refused(m, &r, &e))
			break;
		const char *id = req->register_->id;
		if (!id) {
			make_uuid(idbuf);
			id = idbuf;
		}
		if (!strcmp(id, m->self_id)) {
			error_reply(&r, &e, 409, "CONFLICT",
				    "That id belongs to this coordinator");
			break;
		}
		bool created;
		rc = registry_register(&m->reg, req->register_, id,
				       m->cfg->cluster_id, time_wall_ms(),
				       time_mono(), &n, &created, msg,
				       sizeof(msg));
		if (rc == -EINVAL) {
			validation_error(&r, &e, msg, details);
			break;
		}
		if (rc) {
			error_reply(&r, &e, 503, "REGISTRY_FULL",
				    rc == -ENOSPC ? msg : "Out of memory");
			break;
		}
		r.node = &n->pb;
		r.has_created = true;
		r.created = created;
		m->dirty_sync = durable = true;
		if (created)
			log_info("registered %s at %s", n->pb.id, n->pb.url);
		break;
	}
	case PS__REQUEST__BODY_HEARTBEAT: {
		if (not_coordinator(m, &r, &e, msg, sizeof(msg)))
			break;
		const Ps__HeartbeatReq *hb = req->heartbeat;
		if (!strcmp(hb->id, m->self_id)) {
			self_refresh(m);
			n = registry_find(&m->reg, m->self_id);
		} else {
			rc = registry_heartbeat(&m->reg, hb->id, hb->has_status,
						hb->status, hb->metadata_json,
						time_wall_ms(), time_mono(), &n,
						msg, sizeof(msg));
			if (rc == -ENOENT) {
				snprintf(msg, sizeof(msg),
					 "Node %.64s is not registered",
					 hb->id);
				error_reply(&r, &e, 404, "NODE_NOT_FOUND", msg);
				break;
			}
			if (rc) {
				validation_error(&r, &e, msg, details);
				break;
			}
			m->dirty_lazy = true;
		}
		r.node = n ? &n->pb : NULL;
		r.has_timestamp_ms = true;
		r.timestamp_ms = time_wall_ms();
		break;
	}
	case PS__REQUEST__BODY_LIST_NODES:
	case PS__REQUEST__BODY_GET_HEALTH: {
		const Ps__ListNodesReq *f = req->body_case ==
						    PS__REQUEST__BODY_LIST_NODES
					    ? req->list_nodes
					    : NULL;
		self_refresh(m);
		list = malloc((m->reg.n ? m->reg.n : 1) * sizeof(*list));
		if (!list) {
			error_reply(&r, &e, 500, "INTERNAL_ERROR",
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
		/* We are the coordinator; workers learn this from gossip. */
		r.coordinator_healthy = is_coordinator(m);
		break;
	}
	case PS__REQUEST__BODY_GET_NODE:
		n = registry_find(&m->reg, req->get_node->id);
		if (!n) {
			snprintf(msg, sizeof(msg), "Node %.64s not found",
				 req->get_node->id);
			error_reply(&r, &e, 404, "NODE_NOT_FOUND", msg);
			break;
		}
		r.node = &n->pb;
		break;
	case PS__REQUEST__BODY_DELETE_NODE:
		if (not_coordinator(m, &r, &e, msg, sizeof(msg)) ||
		    writes_refused(m, &r, &e))
			break;
		if (!strcmp(req->delete_node->id, m->self_id)) {
			error_reply(&r, &e, 409, "CONFLICT",
				    "The coordinator cannot remove itself");
			break;
		}
		if (registry_remove(&m->reg, req->delete_node->id)) {
			snprintf(msg, sizeof(msg), "Node %.64s not found",
				 req->delete_node->id);
			error_reply(&r, &e, 404, "NODE_NOT_FOUND", msg);
			break;
		}
		log_info("removed %s", req->delete_node->id);
		m->dirty_sync = durable = true;
		break;
	case PS__REQUEST__BODY_SET_SERVING:
		if (writes_refused(m, &r, &e))
			break;
		if (m->serving != req->set_serving->serving) {
			m->serving = req->set_serving->serving;
			m->changed_ms = time_wall_ms();
			log_info("serving %s", m->serving ? "enabled"
							  : "disabled (maintenance)");
		}
		m->dirty_sync = durable = true;
		/* The reply carries the new status. */
		__attribute__((fallthrough));
	case PS__REQUEST__BODY_GET_STATUS:
		self_refresh(m);
		n = registry_find(&m->reg, m->self_id);
		r.self = n ? &n->pb : NULL;
		svc.serving = m->serving;
		svc.start_time_ms = m->start_ms;
		svc.changed_at_ms = m->changed_ms;
		r.service = &svc;
		break;
	case PS__REQUEST__BODY_GET_STATS: {
		struct {
			const char *name, *labels, *help;
			double v;
		} cs[] = {
			{ "proxystone_registry_nodes", NULL, "Nodes in the registry", (double)m->reg.n },
			{ "proxystone_registry_version", NULL, "Registry version", (double)m->reg.version },
			{ "proxystone_ipc_requests_total", NULL, "Requests served by membership", (double)m->n_requests },
			{ "proxystone_membership_ipc_errors_total", "reason=\"bad_frame\"", "IPC errors", (double)m->n_bad_frames },
			{ "proxystone_membership_ipc_errors_total", "reason=\"too_many_clients\"", "IPC errors", (double)m->n_clients_rejected },
			{ "proxystone_snapshot_saves_total", NULL, "Snapshots written", (double)m->n_saves },
			{ "proxystone_snapshot_failures_total", NULL, "Snapshot writes that failed", (double)m->n_save_failures },
			{ "proxystone_snapshot_seconds_total", NULL, "Time spent writing snapshots", m->save_seconds },
			{ "proxystone_snapshot_damaged_total", NULL, "Damaged snapshots found at start-up", (double)m->n_snapshot_damaged },
			{ "proxystone_storage_available", NULL, "1 if the data directory accepts writes", m->store_failed ? 0.0 : 1.0 },
			{ "proxystone_nodes_expired_total", NULL, "Nodes marked inactive for missing heartbeats", (double)m->n_expired },
		};
		size_t k = sizeof(cs) / sizeof(cs[0]);
		counters = calloc(k, sizeof(*counters));
		counterp = calloc(k, sizeof(*counterp));
		if (!counters || !counterp) {
			error_reply(&r, &e, 500, "INTERNAL_ERROR",
				    "Out of memory");
			break;
		}
		for (size_t i = 0; i < k; i++) {
			ps__counter__init(&counters[i]);
			counters[i].name = (char *)cs[i].name;
			counters[i].labels = (char *)cs[i].labels;
			counters[i].help = (char *)cs[i].help;
			counters[i].value = cs[i].v;
			counterp[i] = &counters[i];
		}
		r.counters = counterp;
		r.n_counters = k;
		break;
	}
	default:
		error_reply(&r, &e, 400, "BAD_REQUEST", "Unknown request");
		break;
	}
	r.registry_version = m->reg.version;
	if (durable && !r.error)
		hold_reply(m, c, &r);
	else
		send_reply(m, c, &r);
	free(list);
	free(counters);
	free(counterp);
}

static void on_frame(struct ipc_conn *conn, const uint8_t *data, size_t len,
		     void *ud)
{
	struct client *c = ud;
	Ps__Request *req = ps__request__unpack(NULL, len, data);
	if (!req) {
		c->m->n_bad_frames++;
		log_warn("undecodable request (%zu bytes); closing the client",
			 len);
		ipc_conn_close(conn, -EBADMSG);
		return;
	}
	handle(c->m, c, req);
	ps__request__free_unpacked(req, NULL);
}

static void on_client_close(struct ipc_conn *conn, int reason, void *ud)
{
	(void)conn;
	struct client *c = ud;
	struct membership *m = c->m;
	for (struct client **pp = &m->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	m->nclients--;
	if (reason && reason != -ECONNRESET)
		log_debug("client closed: %s", strerror(-reason));
	free(c);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int rev)
{
	(void)rev;
	struct membership *m = w->data;
	for (;;) {
		int fd = accept4(m->listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		if (m->nclients >= MEMBERSHIP_CLIENTS_MAX) {
			m->n_clients_rejected++;
			log_warn("more than %d clients; refusing one",
				 MEMBERSHIP_CLIENTS_MAX);
			close(fd);
			continue;
		}
		struct client *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->m = m;
		c->serial = ++m->next_serial;
		c->conn = ipc_conn_new(loop, fd, on_frame, on_client_close, c);
		if (!c->conn) {
			free(c);
			continue;
		}
		c->next = m->clients;
		m->clients = c;
		m->nclients++;
	}
}

static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int rev)
{
	(void)rev;
	log_info("stopping on %s", strsignal(w->signum));
	ev_break(loop, EVBREAK_ALL);
}

/* Makes sure this node's own entry exists and says who we are. */
static int ensure_self(struct membership *m)
{
	char meta[512];
	struct utsname u;
	char started[ISO8601_LEN];
	if (uname(&u) < 0)
		snprintf(u.sysname, sizeof(u.sysname), "unknown");
	time_iso8601(m->start_ms, started);
	for (char *p = u.sysname; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	snprintf(meta, sizeof(meta),
		 "{\"autoRegistered\":true,\"nodeVersion\":\"%s\",\"platform\":\"%s\",\"startTime\":\"%s\"}",
		 PS_VERSION, u.sysname, started);
	Ps__RegisterReq req = PS__REGISTER_REQ__INIT;
	req.url = (char *)m->cfg->node_url;
	req.cluster_id = (char *)m->cfg->cluster_id;
	req.role = (char *)config_role_name(m->cfg->role);
	req.metadata_json = meta;
	struct reg_node *n;
	bool created;
	char err[ERR_MSG_MAX];
	int rc = registry_register(&m->reg, &req, m->self_id,
				   m->cfg->cluster_id, time_wall_ms(),
				   time_mono(), &n, &created, err, sizeof(err));
	if (rc) {
		log_error("cannot register this node: %s", err);
		return rc;
	}
	self_refresh(m);
	return 0;
}

int membership_main(const struct config *cfg, int sup_fd)
{
	struct membership *m = calloc(1, sizeof(*m));
	if (!m)
		return 1;
	m->cfg = cfg;
	m->serving = true;
	m->start_ms = m->changed_ms = time_wall_ms();
	registry_init(&m->reg, cfg->metadata_max);
	buf_init(&m->held_frames, COMMIT_PENDING_MAX * (size_t)64 * 1024);
	snprintf(m->store_path, sizeof(m->store_path), "%s/registry.snap",
		 cfg->data_dir);
	signal(SIGPIPE, SIG_IGN);

	int rc = load_state(m);
	if (rc) {
		log_error("cannot start: state in %s is unreadable",
			  cfg->data_dir);
		return 1;
	}
	bool fresh = !m->self_id[0];
	if (fresh)
		make_uuid(m->self_id);
	m->start_ms = time_wall_ms();
	if (ensure_self(m))
		return 1;
	/* Identity must be on disk before we serve anything. */
	if (save_now(m) && fresh) {
		log_error("cannot persist this node's identity in %s",
			  cfg->data_dir);
		return 1;
	}
	log_info("node %s (%s) %s, %zu nodes in the registry", m->self_id,
		 config_role_name(cfg->role), fresh ? "created" : "restored",
		 m->reg.n);

	m->listen_fd = ipc_listen(cfg->socket_path);
	if (m->listen_fd < 0) {
		log_error("cannot listen on %s: %s", cfg->socket_path,
			  strerror(-m->listen_fd));
		return 1;
	}
	m->loop = ev_loop_new(EVFLAG_AUTO);
	if (!m->loop)
		return 1;
	ev_io_init(&m->accept_io, on_accept, m->listen_fd, EV_READ);
	m->accept_io.data = m;
	ev_io_start(m->loop, &m->accept_io);
	double scan = cfg->node_timeout / 4;
	if (scan > EXPIRE_SCAN_MAX)
		scan = EXPIRE_SCAN_MAX;
	ev_timer_init(&m->expire_timer, on_expire_timer, scan, scan);
	m->expire_timer.data = m;
	ev_timer_start(m->loop, &m->expire_timer);
	ev_timer_init(&m->flush_timer, on_flush_timer, STORE_LAZY_FLUSH,
		      STORE_LAZY_FLUSH);
	m->flush_timer.data = m;
	ev_timer_start(m->loop, &m->flush_timer);
	ev_prepare_init(&m->commit_prep, on_commit_prepare);
	m->commit_prep.data = m;
	ev_prepare_start(m->loop, &m->commit_prep);
	ev_signal_init(&m->sigterm, on_stop_signal, SIGTERM);
	ev_signal_init(&m->sigint, on_stop_signal, SIGINT);
	ev_signal_start(m->loop, &m->sigterm);
	ev_signal_start(m->loop, &m->sigint);
	if (sup_fd >= 0) {
		child_keepalive_start(m->loop, sup_fd);
		child_notify_ready(sup_fd);
	}
	log_info("serving on %s", cfg->socket_path);

	ev_run(m->loop, 0);

	commit(m);
	if (m->dirty_lazy || m->dirty_sync)
		save_now(m);
	while (m->clients)
		ipc_conn_close(m->clients->conn, 0);
	close(m->listen_fd);
	unlink(cfg->socket_path);
	ev_loop_destroy(m->loop);
	registry_fini(&m->reg);
	buf_fini(&m->held_frames);
	free(m);
	return 0;
}
