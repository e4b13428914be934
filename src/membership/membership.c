/*
 * membership — the process that owns the registry, identity, serving mode
 * and their persistence; serves ipc.proto requests on a Unix socket.
 *
 * Durability: a request that changes what must survive a crash
 * (register, delete, serving mode) is applied in memory, appended to the
 * write-ahead log (wal.c) and its reply is held. Before the loop next
 * blocks (ev_prepare), one fdatasync covers every change made in this loop
 * iteration — a group commit — and only then are the held replies sent. A
 * reply that says "success" therefore always describes state on disk, and
 * a commit costs O(changes), not O(registry). Status changes go to the log
 * too but are synced lazily (STORE_LAZY_FLUSH); heartbeat data (lastSeen,
 * load) only reaches the periodic snapshot, since losing some costs
 * nothing. The log is compacted into a snapshot (store.c) once it passes
 * WAL_COMPACT_BYTES, and at shutdown.
 */
#include "proxystone/membership.h"
#include "proxystone/admit.h"
#include "proxystone/config.h"
#include "proxystone/fetch.h"
#include "proxystone/gossip.h"
#include "proxystone/node_meta.h"
#include "proxystone/ipc.h"
#include "proxystone/json.h"
#include "proxystone/liveness.h"
#include "proxystone/log.h"
#include "proxystone/registry.h"
#include "proxystone/store.h"
#include "proxystone/wal.h"
#include "proxystone/supervisor.h"
#include "proxystone/timeutil.h"

#include <assert.h>
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
/* Lazily logged changes (status) are synced within this. */
#define STORE_LAZY_FLUSH 1.0
/* Heartbeat data (lastSeen, metadata) reaches a snapshot within this. */
#define SNAPSHOT_LAZY_INTERVAL 5.0
/* Compact the log into a snapshot past this many bytes: replay at start-up
 * stays well under a second, and a snapshot of 10,000 nodes (~5 MB) is
 * written at most once per this much logged change. */
#define WAL_COMPACT_BYTES (8u * 1024 * 1024)
/* After a failed snapshot, retry this often; writes answer 503 meanwhile. */
#define STORE_RETRY_INTERVAL 1.0
/* Expiry scan period bound: a few scans per node_timeout, at most 1 s apart. */
#define EXPIRE_SCAN_MAX 1.0
/* A graceful leave gets this long to reach the others before we exit;
 * dissemination takes a few gossip intervals (0.2 s each). */
#define LEAVE_GRACE 1.0
/* Coordinator: registry-version updates in our member record at most this
 * often, so a burst of registrations costs one gossip update, not many. */
#define META_VERSION_MIN_INTERVAL 0.5
/* Worker: fetch the registry at most this often, and at least this often
 * (anti-entropy even when no version news arrives). */
#define REPLICA_FETCH_MIN_INTERVAL 0.5
#define REPLICA_SYNC_INTERVAL 10.0
/* A fetch that takes longer has failed: the coordinator answers in ms. */
#define REPLICA_FETCH_TIMEOUT 5.0
/* Registry versions a coordinator can plausibly add per second: one per
 * write, and writes run at ~80,000/s on this hardware (BENCHMARKS.md). A
 * gossip record announcing more than this above what the coordinator last
 * served us over HTTP, for the time since, is a lie: dropped and counted. */
#define REGISTRY_VERSION_RATE_MAX 1e6
/* Lines that hostile gossip can trigger: at most one per this interval per
 * kind, with the count held back. */
#define GOSSIP_REJECT_LOG_INTERVAL 10.0
/* Output a follower may have queued before we skip events for it: a
 * reader that falls this far behind loses events (and is told how many)
 * instead of slowing the membership process down. */
#define FOLLOW_BACKLOG_MAX (256 * 1024)
/* Records of one datagram shown to followers (a datagram has at most
 * SWIM_PACKET_RECORDS_MAX). */
#define TRACE_UPDATES_MAX SWIM_PACKET_RECORDS_MAX
/* An error message we put in a reply. */
#define ERR_MSG_MAX 512

struct membership;

struct client {
	struct membership *m;
	struct ipc_conn *conn;
	uint64_t serial; /* stays unique; held replies refer to it */
	bool follower;     /* receives every gossip datagram (tools/dump) */
	bool subscriber;   /* receives registry/service events (api SSE) */
	uint64_t subscribe_id;
	uint64_t follow_id;
	uint64_t dropped;  /* trace events this follower missed */
	struct client *next;
};

/*
 * A client's write applied to the registry but not yet durable (staged):
 * how to take it back if the group commit fails, and the event observers
 * get once it holds. One per write, so at most COMMIT_PENDING_MAX.
 */
struct staged {
	char id[NODE_ID_MAX + 1]; /* node changed; "" for our serving mode */
	bool existed;             /* the node was there before */
	size_t off, len;          /* its packed Ps__Node before, in staged_bytes */
	bool prev_serving;        /* serving change: the mode before */
	int64_t prev_changed_ms;
	const char *event;        /* node event type, NULL: a serving change */
};

/* Reads that arrive while writes are staged wait for the commit, so no
 * reader sees what a crash could still lose. Past this many they force
 * the commit early. */
#define READS_WAITING_MAX 4096

struct waiting_read {
	uint64_t client;  /* serial of the client that asked */
	size_t off, len;  /* its packed request, in waiting_bytes */
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
	size_t nfollowers, nsubscribers;
	uint64_t event_version;        /* registry version last announced */
	uint64_t next_serial;
	/* Group commit state. */
	struct wal *wal;
	char wal_path[PATH_MAX + 8];
	bool dirty_lazy;      /* the next periodic snapshot has news */
	bool must_snapshot;   /* a held reply waits on a snapshot (log refused a record) */
	bool store_failed;
	bool used_prev_snapshot; /* replay the previous log too */
	double store_failed_at, snapshot_at;
	uint64_t n_wal_syncs, n_wal_damaged, n_wal_replayed;
	struct held_reply held[COMMIT_PENDING_MAX];
	size_t nheld;
	struct buf held_frames;
	struct staged staged[COMMIT_PENDING_MAX];
	size_t nstaged;
	struct buf staged_bytes;
	struct waiting_read waiting[READS_WAITING_MAX];
	size_t nwaiting;
	struct buf waiting_bytes;
	uint64_t n_undone, n_reads_waited;
	/* Gossip (NULL when gossip_port = 0). */
	struct gossip *gossip;
	bool leaving;
	double leave_started;
	ev_timer leave_timer, meta_timer;
	uint32_t http_connections;     /* reported by the api process */
	uint64_t meta_version_sent;    /* registry version in our record */
	double meta_sent_at;
	/* Worker: the coordinator and our replica. coord_id is learned only
	 * from the coordinator's own HTTP answer at cluster_ip (the replica's
	 * `self`), never from gossip: a gossip record claiming the role for
	 * another id is rejected. */
	char coord_id[NODE_ID_MAX + 1];
	uint64_t coord_version;        /* version the coordinator announced */
	uint64_t replica_version;      /* version our registry copy holds */
	double replica_at;             /* when we got it (mono), < 0: never */
	struct fetch *fetch;
	double fetch_at;
	ev_timer replica_timer;
	/* Coordinator: gossip members on their way into the registry. */
	struct admit admit;
	bool admit_on;
	ev_timer admit_timer;
	/* Gossip input refused, and the log lines about it. */
	uint64_t n_reject_role, n_reject_version;
	struct log_limit lim_inc, lim_role, lim_version, lim_admit;
	/* Counters for /metrics. */
	uint64_t n_replica_fetches, n_replica_failures, n_gossip_registered;
	uint64_t n_requests, n_bad_frames, n_clients_rejected, n_overloaded;
	uint64_t n_saves, n_save_failures, n_expired, n_snapshot_damaged;
	size_t n_over_limit; /* nodes loaded over max_metadata_bytes */
	double save_seconds;
};

static bool is_coordinator(const struct membership *m)
{
	return m->cfg->role == ROLE_COORDINATOR;
}

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

static void store_failure(struct membership *m, const char *what, int rc);

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
	m->dirty_lazy = m->must_snapshot = false;
	m->snapshot_at = time_mono();
	/* The snapshot holds everything the log did (and anything buffered).
	 * The old log is kept beside the previous snapshot, so falling back
	 * to that snapshot (if this one is ever damaged) loses nothing. */
	if (m->wal) {
		char prev[sizeof(m->wal_path) + 8];
		snprintf(prev, sizeof(prev), "%s.prev", m->wal_path);
		wal_close(m->wal);
		m->wal = NULL;
		if (rename(m->wal_path, prev) < 0)
			log_warn("write-ahead log not rotated: %s",
				 strerror(errno));
		if (wal_open(m->wal_path, &m->wal, err, sizeof(err))) {
			log_error("write-ahead log: %s", err);
			store_failure(m, "write-ahead log open", -EIO);
		}
	}
	return 0;
}

/* ---- write-ahead log ------------------------------------------------------ */

static void store_failure(struct membership *m, const char *what, int rc)
{
	if (!m->store_failed)
		log_error("%s failed: %s; changes are refused until the data directory recovers",
			  what, strerror(-rc));
	m->store_failed = true;
	m->store_failed_at = time_mono();
}

/* Makes buffered log records durable. 0 or -errno. */
static int wal_flush(struct membership *m)
{
	if (!m->wal || !wal_pending(m->wal))
		return 0;
	int rc = wal_sync(m->wal);
	if (rc) {
		m->n_save_failures++;
		store_failure(m, "write-ahead log sync", rc);
		return rc;
	}
	m->n_wal_syncs++;
	if (m->store_failed)
		log_info("write-ahead log synced again; storage recovered");
	m->store_failed = false;
	return 0;
}

/* A record the log could not take goes to disk by snapshot instead. */
static void wal_logged(struct membership *m, int rc, bool sync)
{
	if (rc == 0)
		return;
	m->dirty_lazy = true;
	if (sync)
		m->must_snapshot = true;
}

static void wal_log_node(struct membership *m, const struct reg_node *n,
			 bool sync)
{
	if (!m->wal) {
		wal_logged(m, -EBADF, sync);
		return;
	}
	int rc = wal_append_upsert(m->wal, &n->pb, m->reg.version);
	if (rc == -ENOBUFS && wal_flush(m) == 0)
		rc = wal_append_upsert(m->wal, &n->pb, m->reg.version);
	wal_logged(m, rc, sync);
}

static void wal_log_remove(struct membership *m, const char *id)
{
	int rc = m->wal ? wal_append_remove(m->wal, id, m->reg.version)
			: -EBADF;
	if (rc == -ENOBUFS && wal_flush(m) == 0)
		rc = wal_append_remove(m->wal, id, m->reg.version);
	wal_logged(m, rc, true);
}

static void wal_log_serving(struct membership *m)
{
	int rc = m->wal ? wal_append_serving(m->wal, m->serving, m->changed_ms,
					     m->reg.version)
			: -EBADF;
	if (rc == -ENOBUFS && wal_flush(m) == 0)
		rc = wal_append_serving(m->wal, m->serving, m->changed_ms,
					m->reg.version);
	wal_logged(m, rc, true);
}

static int replay_upsert(void *ud, const Ps__Node *n, uint64_t v)
{
	struct membership *m = ud;
	registry_remove(&m->reg, n->id);
	int rc = registry_load_node(&m->reg, n, time_mono());
	m->reg.version = v;
	m->n_wal_replayed++;
	return rc == -ENOMEM ? rc : 0;
}

static int replay_remove(void *ud, const char *id, uint64_t v)
{
	struct membership *m = ud;
	registry_remove(&m->reg, id);
	m->reg.version = v;
	m->n_wal_replayed++;
	return 0;
}

static int replay_serving(void *ud, bool serving, int64_t changed_at_ms,
			  uint64_t v)
{
	struct membership *m = ud;
	m->serving = serving;
	m->changed_ms = changed_at_ms;
	m->reg.version = v;
	m->n_wal_replayed++;
	return 0;
}

/* Applies the log on top of the snapshot, then opens it for appending. */
static int wal_start(struct membership *m)
{
	static const struct wal_replay_ops ops = {
		.upsert = replay_upsert,
		.remove = replay_remove,
		.serving = replay_serving,
	};
	char err[ERR_MSG_MAX];
	size_t tail = 0;
	int rc = 0;
	if (m->used_prev_snapshot) {
		char prev[sizeof(m->wal_path) + 8];
		snprintf(prev, sizeof(prev), "%s.prev", m->wal_path);
		rc = wal_replay(prev, m->reg.version, &ops, m, &tail, err,
				sizeof(err));
		if (rc && rc != -ENOENT)
			log_error("previous write-ahead log: %s", err);
	}
	rc = wal_replay(m->wal_path, m->reg.version, &ops, m, &tail, err,
			sizeof(err));
	if (rc == -EBADMSG) {
		m->n_wal_damaged++;
		char aside[PATH_MAX + 64];
		snprintf(aside, sizeof(aside), "%s.damaged-%lld", m->wal_path,
			 (long long)time_wall_ms());
		rename(m->wal_path, aside);
		log_error("damaged write-ahead log, not applied (%s); moved to %s",
			  err, aside);
	} else if (rc && rc != -ENOENT) {
		log_error("write-ahead log: %s", err);
		return rc;
	}
	if (m->n_wal_replayed)
		log_info("replayed %llu logged changes; registry version %llu",
			 (unsigned long long)m->n_wal_replayed,
			 (unsigned long long)m->reg.version);
	if (tail)
		log_warn("write-ahead log: ignored a torn tail of %zu bytes (a crash mid-write)",
			 tail);
	rc = wal_open(m->wal_path, &m->wal, err, sizeof(err));
	if (rc == -EROFS || rc == -EACCES || rc == -EPERM || rc == -ENOSPC ||
	    rc == -EDQUOT) {
		/* Readable but not writable: serve reads, refuse writes (503)
		 * and retry from the flush timer until the disk is back. */
		m->wal = NULL;
		store_failure(m, "write-ahead log open", rc);
		return 0;
	}
	if (rc) {
		log_error("write-ahead log: %s", err);
		return rc;
	}
	return 0;
}

static bool file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/*
 * Loads the newest usable snapshot: registry.snap, else registry.snap.prev
 * (with the log kept beside it). A data directory that holds state but no
 * usable snapshot is refused (-EBADMSG): serving the log's changes on an
 * empty base, under a new identity, would be a half-loaded registry.
 */
static int load_state(struct membership *m)
{
	char err[ERR_MSG_MAX];
	char prev[PATH_MAX + 8];
	Ps__Snapshot *snap = NULL;
	snprintf(prev, sizeof(prev), "%s.prev", m->store_path);
	int rc = store_load(m->store_path, &snap, err, sizeof(err));
	if (rc == -EBADMSG) {
		m->n_snapshot_damaged++;
		log_error("damaged snapshot, not loaded: %s", err);
		char aside[PATH_MAX + 32];
		snprintf(aside, sizeof(aside), "%s.damaged-%lld",
			 m->store_path, (long long)time_wall_ms());
		rename(m->store_path, aside);
		log_error("moved it aside to %s", aside);
	}
	if (rc == -EBADMSG || (rc == -ENOENT && file_exists(prev))) {
		rc = store_load(prev, &snap, err, sizeof(err));
		if (rc == 0) {
			log_warn("loaded the previous snapshot %s instead",
				 prev);
			m->used_prev_snapshot = true;
		} else if (rc == -EBADMSG) {
			m->n_snapshot_damaged++;
		}
	}
	if (rc == -ENOENT && !file_exists(m->wal_path) && !m->n_snapshot_damaged)
		return 0; /* a new node */
	if (rc) {
		log_error("no usable snapshot in %s (%s); refusing to serve a partial registry. "
			  "Restore a snapshot, or move registry.* aside to start empty",
			  m->cfg->data_dir, rc == -ENOENT ? "missing" : err);
		return rc == -ENOENT ? -EBADMSG : rc;
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

static void staged_settle(struct membership *m, bool durable);
static void reads_release(struct membership *m);

/*
 * Makes this iteration's changes durable, then releases what waited on
 * them: held replies, the staged writes' events, waiting reads. If the
 * changes cannot be made durable, the staged writes are undone first, so
 * the 503 their clients get leaves no trace for anyone.
 */
static void commit(struct membership *m)
{
	if (m->nheld == 0 && !m->must_snapshot) {
		assert(m->nstaged == 0 && m->nwaiting == 0);
		return;
	}
	int rc = wal_flush(m);
	if (!rc && m->must_snapshot)
		rc = save_now(m);
	if (!rc && m->wal && wal_size(m->wal) > WAL_COMPACT_BYTES)
		save_now(m); /* compaction: the log already holds the changes */
	staged_settle(m, rc == 0);
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
	reads_release(m);
}

static void publish_meta(struct membership *m);
static void gossip_refresh(struct membership *m);
static void emit_registry_if_changed(struct membership *m);

static void on_commit_prepare(struct ev_loop *loop, ev_prepare *w, int rev)
{
	(void)loop;
	(void)rev;
	struct membership *m = w->data;
	commit(m);
	emit_registry_if_changed(m);
	/* Announce a new registry version, at a bounded rate (the expire
	 * timer comes back within a second for one held back here). */
	if (m->gossip && is_coordinator(m) &&
	    m->reg.version != m->meta_version_sent &&
	    time_mono() - m->meta_sent_at >= META_VERSION_MIN_INTERVAL)
		publish_meta(m);
}

static void on_flush_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct membership *m = w->data;
	double now = time_mono();
	if (m->store_failed && now - m->store_failed_at < STORE_RETRY_INTERVAL)
		return;
	if (!m->wal) {
		char err[ERR_MSG_MAX];
		if (wal_open(m->wal_path, &m->wal, err, sizeof(err))) {
			m->wal = NULL;
			m->store_failed_at = now;
			return;
		}
		log_info("write-ahead log open again");
	}
	wal_flush(m);
	if ((m->dirty_lazy && now - m->snapshot_at >= SNAPSHOT_LAZY_INTERVAL) ||
	    m->must_snapshot || m->store_failed)
		save_now(m);
}

/* Rule H of liveness.h for every node not in our gossip table. */
static void expire_silent(struct membership *m)
{
	double now = time_mono();
	size_t k = 0;
	for (size_t i = 0; i < m->reg.n; i++) {
		struct reg_node *n = m->reg.nodes[i];
		struct swim_id sid;
		if (!strcmp(n->pb.id, m->self_id) ||
		    (m->gossip && !swim_id_parse(n->pb.id, &sid) &&
		     swim_member_status(gossip_swim(m->gossip), &sid) !=
			     SWIM_NONE))
			continue;
		struct liveness_view lv = {
			.in_gossip = false,
			.beat_ago = now - n->last_heard,
			.current = n->pb.status,
		};
		Ps__NodeStatus next = liveness_status(&lv, m->cfg->node_timeout);
		if (next == n->pb.status)
			continue;
		registry_set_status(&m->reg, n, next);
		k++;
	}
	if (k) {
		m->n_expired += k;
		m->dirty_lazy = true;
		log_info("%zu node(s) inactive: no heartbeat within %.1f s", k,
			 m->cfg->node_timeout);
	}
}

static void on_expire_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct membership *m = w->data;
	self_refresh(m);
	gossip_refresh(m);
	/* Workers hold the coordinator's verdicts; only it expires nodes. */
	if (is_coordinator(m))
		expire_silent(m);
}


/* ---- events for observers (SSE) ----------------------------------------- */

static uint64_t visible_version(const struct membership *m)
{
	return is_coordinator(m) ? m->reg.version : m->replica_version;
}

static void emit(struct membership *m, Ps__Event *ev)
{
	if (m->nsubscribers == 0)
		return;
	ev->has_registry_version = true;
	ev->registry_version = visible_version(m);
	for (struct client *c = m->clients; c; c = c->next) {
		if (!c->subscriber)
			continue;
		Ps__Reply r = PS__REPLY__INIT;
		r.id = c->subscribe_id;
		r.event = ev;
		/* The api drains its socket promptly; a failure here means it
		 * is gone or stuck, and it resubscribes when it reconnects. */
		if (ipc_conn_send(c->conn, &r.base))
			ipc_conn_close(c->conn, -ENOBUFS);
	}
}

static void emit_node(struct membership *m, const char *type, const char *id,
		      struct reg_node *n)
{
	Ps__Event ev = PS__EVENT__INIT;
	ev.kind = "node";
	ev.type = (char *)type;
	ev.id = (char *)id;
	ev.node = n ? &n->pb : NULL;
	emit(m, &ev);
}

static void emit_service(struct membership *m)
{
	Ps__Event ev = PS__EVENT__INIT;
	Ps__ServiceStatus svc = PS__SERVICE_STATUS__INIT;
	svc.serving = m->serving;
	svc.start_time_ms = m->start_ms;
	svc.changed_at_ms = m->changed_ms;
	ev.kind = "service";
	ev.service = &svc;
	emit(m, &ev);
}

/* One "registry" event per loop iteration in which the version moved. */
static void emit_registry_if_changed(struct membership *m)
{
	uint64_t v = visible_version(m);
	if (v == m->event_version)
		return;
	m->event_version = v;
	Ps__Event ev = PS__EVENT__INIT;
	ev.kind = "registry";
	emit(m, &ev);
}

/* ---- staging: nothing visible before it is durable -------------------- */

/*
 * A client write changes the registry at once (the next request of the
 * same pass must see it), but until the group commit's fdatasync nobody
 * else may: its event waits in `staged`, and reads wait in `waiting`
 * (both released by commit()). A commit that fails undoes every staged
 * write, newest first, so a write answered 503 is never seen and never
 * comes back after a restart.
 */

/* Before a write to node `id`: remembers it as it is. false if the
 * staging area is full (the caller refuses the write). */
static bool stage_node(struct membership *m, const char *id,
		       const char *event)
{
	if (m->nstaged == COMMIT_PENDING_MAX)
		commit(m);
	const struct reg_node *n = registry_find(&m->reg, id);
	size_t off = m->staged_bytes.len, len = 0;
	if (n) {
		char *at;
		len = ps__node__get_packed_size(&n->pb);
		if (buf_extend(&m->staged_bytes, len, &at)) {
			/* Full: settle what is staged, then start afresh. */
			commit(m);
			off = 0;
			if (buf_extend(&m->staged_bytes, len, &at))
				return false;
		}
		size_t packed = ps__node__pack(&n->pb, (uint8_t *)at);
		assert(packed == len);
		(void)packed;
	}
	struct staged *st = &m->staged[m->nstaged++];
	memset(st, 0, sizeof(*st));
	snprintf(st->id, sizeof(st->id), "%s", id);
	st->event = event;
	st->existed = n != NULL;
	st->off = off;
	st->len = len;
	return true;
}

/* The write staged last did not happen (refused before any change). */
static void stage_drop(struct membership *m)
{
	assert(m->nstaged > 0);
	m->staged_bytes.len = m->staged[--m->nstaged].off;
}

static void stage_serving(struct membership *m)
{
	if (m->nstaged == COMMIT_PENDING_MAX)
		commit(m);
	struct staged *st = &m->staged[m->nstaged++];
	memset(st, 0, sizeof(*st));
	st->prev_serving = m->serving;
	st->prev_changed_ms = m->changed_ms;
	st->off = m->staged_bytes.len;
}

static void staged_undo(struct membership *m, const struct staged *st)
{
	if (!st->event) {
		m->serving = st->prev_serving;
		m->changed_ms = st->prev_changed_ms;
		self_refresh(m);
		return;
	}
	registry_remove(&m->reg, st->id);
	if (!st->existed)
		return;
	Ps__Node *before = ps__node__unpack(
		NULL, st->len, (const uint8_t *)m->staged_bytes.base + st->off);
	if (!before || registry_load_node(&m->reg, before, time_mono()))
		log_error("undo of %s failed; restart to reload it from disk",
			  st->id);
	if (before)
		ps__node__free_unpacked(before, NULL);
}

/* After the commit: announce the staged writes, or undo them all. */
static void staged_settle(struct membership *m, bool durable)
{
	bool serving_changed = false;
	if (!durable && m->nstaged) {
		/* No later sync may write what was refused. Other changes
		 * of this pass that were in the log's buffer (gossip
		 * statuses) stay in memory: the next snapshot covers them. */
		if (m->wal)
			wal_discard(m->wal);
		m->dirty_lazy = true;
		for (size_t i = m->nstaged; i-- > 0;)
			staged_undo(m, &m->staged[i]);
		m->n_undone += m->nstaged;
		log_warn("%zu change(s) undone: not durable", m->nstaged);
	}
	for (size_t i = 0; durable && i < m->nstaged; i++) {
		const struct staged *st = &m->staged[i];
		if (!st->event) {
			serving_changed = true;
			continue;
		}
		emit_node(m, st->event, st->id, registry_find(&m->reg, st->id));
	}
	if (serving_changed) {
		emit_service(m);
		publish_meta(m);
	}
	m->nstaged = 0;
	buf_reset(&m->staged_bytes);
}

static void handle(struct membership *m, struct client *c, Ps__Request *req);

static bool is_registry_read(const Ps__Request *req)
{
	switch (req->body_case) {
	case PS__REQUEST__BODY_LIST_NODES:
	case PS__REQUEST__BODY_GET_HEALTH:
	case PS__REQUEST__BODY_GET_NODE:
	case PS__REQUEST__BODY_GET_STATUS:
		return true;
	default:
		return false;
	}
}

/* True if `req` must wait for the commit; it is then kept. */
static bool read_waits(struct membership *m, struct client *c,
		       const Ps__Request *req)
{
	if (m->nstaged == 0 || !is_registry_read(req))
		return false;
	if (m->nwaiting == READS_WAITING_MAX) {
		commit(m); /* answers the waiting ones; this one goes now */
		return false;
	}
	char *at;
	size_t len = ps__request__get_packed_size(req);
	size_t off = m->waiting_bytes.len;
	if (buf_extend(&m->waiting_bytes, len, &at)) {
		commit(m);
		return false;
	}
	struct waiting_read *w = &m->waiting[m->nwaiting++];
	w->client = c->serial;
	w->off = off;
	w->len = ps__request__pack(req, (uint8_t *)at);
	assert(w->len == len);
	m->n_reads_waited++;
	return true;
}

/* Answers the reads that waited for the commit. */
static void reads_release(struct membership *m)
{
	assert(m->nstaged == 0);
	size_t n = m->nwaiting;
	m->nwaiting = 0; /* nothing is staged: none of these waits again */
	for (size_t i = 0; i < n; i++) {
		const struct waiting_read *w = &m->waiting[i];
		struct client *c = client_by_serial(m, w->client);
		if (!c)
			continue;
		Ps__Request *req = ps__request__unpack(
			NULL, w->len, (const uint8_t *)m->waiting_bytes.base + w->off);
		if (req) {
			handle(m, c, req);
			ps__request__free_unpacked(req, NULL);
		}
	}
	buf_reset(&m->waiting_bytes);
}

/* ---- gossip ------------------------------------------------------------- */

static const char *advertise_host(const struct config *cfg)
{
	const char *h = cfg->advertise_host[0] ? cfg->advertise_host
					       : cfg->api_host;
	return strcmp(h, "0.0.0.0") ? h : "127.0.0.1";
}

static void platform_name(char out[65])
{
	struct utsname u;
	if (uname(&u) < 0)
		snprintf(u.sysname, sizeof(u.sysname), "unknown");
	snprintf(out, 65, "%s", u.sysname);
	for (char *p = out; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
}

/* Publishes our member record's payload: the heartbeat data. */
static void publish_meta(struct membership *m)
{
	if (!m->gossip || m->leaving)
		return;
	char platform[65];
	platform_name(platform);
	Ps__NodeMeta meta = PS__NODE_META__INIT;
	meta.role = (char *)config_role_name(m->cfg->role);
	meta.url = (char *)m->cfg->node_url;
	meta.cluster_id = (char *)m->cfg->cluster_id;
	meta.has_serving = true;
	meta.serving = m->serving;
	double load, mem;
	node_meta_sample(&load, &mem);
	meta.has_load = load >= 0;
	meta.load = (double)(long long)(load * 100) / 100;
	meta.has_memory = mem >= 0;
	meta.memory = (double)(long long)(mem * 100) / 100;
	meta.has_connections = true;
	meta.connections = m->http_connections;
	meta.version = PS_VERSION;
	meta.platform = platform;
	meta.has_start_time_ms = true;
	meta.start_time_ms = m->start_ms;
	if (is_coordinator(m)) {
		meta.has_registry_version = true;
		meta.registry_version = m->reg.version;
	}
	uint8_t buf[SWIM_META_MAX];
	size_t len;
	if (node_meta_pack(&meta, buf, sizeof(buf), &len)) {
		log_error("our gossip record does not fit %d bytes (url too long?)",
			  SWIM_META_MAX);
		return;
	}
	gossip_set_meta(m->gossip, buf, len);
	m->meta_version_sent = m->reg.version;
	m->meta_sent_at = time_mono();
}

static void on_meta_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	publish_meta(w->data);
}

static void fmt_addr(const struct swim_addr *a, char out[32])
{
	snprintf(out, 32, "%u.%u.%u.%u:%u", a->ip >> 24, (a->ip >> 16) & 255,
		 (a->ip >> 8) & 255, a->ip & 255, a->port);
}

/* Seconds since a datagram from member `id` itself reached us; < 0: never
 * (or not a member). */
static double heard_ago(struct membership *m, const struct swim_id *id)
{
	struct swim_member_info mi;
	if (!m->gossip || swim_member_find(gossip_swim(m->gossip), id, &mi) ||
	    mi.last_heard < 0)
		return -1;
	return time_mono() - mi.last_heard;
}

/* Applies a status liveness decided (or kept). */
static void set_status(struct membership *m, struct reg_node *n,
		       Ps__NodeStatus next, const char *why)
{
	if (n->pb.status == next)
		return;
	log_info("%s: %s -> %s (%s)", n->pb.id,
		 registry_status_name(n->pb.status), registry_status_name(next),
		 why);
	registry_set_status(&m->reg, n, next);
	wal_log_node(m, n, false);
	emit_node(m, "status", n->pb.id, n);
}

/*
 * Coordinator: turns what gossip says about a member into its registry
 * entry. A member not yet registered waits in admit (admit.h) until it is
 * settled, has answered a ping and the rate allows; admit_tick() then calls
 * this with `admitted`. Later records update its metadata and status.
 */
static void coordinator_apply(struct membership *m, const char *id,
			      const struct swim_event *ev,
			      const Ps__NodeMeta *meta, bool admitted)
{
	struct reg_node *n = registry_find(&m->reg, id);
	bool serving = !meta || !meta->has_serving || meta->serving;
	if (!n && !admitted) {
		/* Met by gossip, not yet proven: it waits in admit. */
		if (m->admit_on && meta && meta->url && meta->role &&
		    (ev->status == SWIM_ALIVE || ev->status == SWIM_SUSPECT))
			admit_offer(&m->admit, &ev->id, time_mono());
		return;
	}
	if (meta && meta->url && meta->role &&
	    (!n || strcmp(n->pb.url, meta->url) ||
	     strcmp(n->pb.role, meta->role))) {
		struct buf json;
		buf_init(&json, m->cfg->metadata_max);
		node_meta_to_json(meta, &json);
		Ps__RegisterReq req = PS__REGISTER_REQ__INIT;
		req.url = meta->url;
		req.role = meta->role;
		req.cluster_id = meta->cluster_id;
		req.metadata_json = json.base;
		char err[ERR_MSG_MAX];
		bool created;
		int rc = registry_register(&m->reg, &req, id,
					   m->cfg->cluster_id, time_wall_ms(),
					   time_mono(), &n, &created, err,
					   sizeof(err));
		buf_fini(&json);
		if (rc) {
			log_warn("gossip member %s not registered: %s", id,
				 err);
			return;
		}
		n->pb.has_gossip = true;
		n->pb.gossip = true;
		wal_log_node(m, n, false);
		if (created) {
			m->n_gossip_registered++;
			log_info("registered %s (%s) at %s via gossip", id,
				 meta->role, meta->url);
		}
		emit_node(m, created ? "registered" : "updated", id, n);
	} else if (n && meta && (ev->what & SWIM_EV_META)) {
		/* Heartbeat data only: refresh it without a new registry
		 * version; it reaches disk with the next lazy flush. */
		struct buf json;
		buf_init(&json, m->cfg->metadata_max);
		if (node_meta_to_json(meta, &json) == 0 && json.base) {
			free(n->pb.metadata_json);
			n->pb.metadata_json = json.base;
			m->dirty_lazy = true;
		} else {
			buf_fini(&json);
		}
	}
	if (!n)
		return;
	char addr[32];
	fmt_addr(&ev->addr, addr);
	if (!n->pb.gossip_addr || strcmp(n->pb.gossip_addr, addr)) {
		char *a = strdup(addr);
		if (a) {
			free(n->pb.gossip_addr);
			n->pb.gossip_addr = a;
		}
	}
	n->pb.has_gossip = n->pb.gossip = true;
	struct liveness_view lv = {
		.in_gossip = true,
		.swim = ev->status,
		.serving = serving,
		.heard_ago = heard_ago(m, &ev->id),
		.current = n->pb.status,
	};
	set_status(m, n, liveness_status(&lv, m->cfg->node_timeout), "gossip");
	if (ev->status == SWIM_ALIVE || ev->status == SWIM_SUSPECT) {
		n->last_heard = time_mono();
		n->pb.last_seen_ms = time_wall_ms();
	}
}

static void replica_fetch(struct membership *m);
static void on_trace(void *ctx, const struct swim_trace *t);

/*
 * A gossip record says member `id` is the coordinator. True if we believe
 * it (and, on a worker, take its registry version); false if it is refused,
 * counted and logged. There is one coordinator: on the coordinator, nobody
 * else; on a worker, the id the coordinator at cluster_ip gave us over
 * HTTP (until we know it, no claim counts and none is held against anyone).
 */
static bool coordinator_claim(struct membership *m, const char *id,
			      const struct swim_event *ev,
			      const Ps__NodeMeta *meta)
{
	char addr[32];
	uint64_t held;
	double now = time_mono();
	fmt_addr(&ev->addr, addr);
	if (is_coordinator(m) ? strcmp(id, m->self_id) != 0
			      : strcmp(id, m->coord_id) != 0) {
		if (!m->coord_id[0] && !is_coordinator(m))
			return false;
		m->n_reject_role++;
		if (log_limited(&m->lim_role, now, GOSSIP_REJECT_LOG_INTERVAL,
				&held))
			log_warn("gossip: member %s at %s claims to be the "
				 "coordinator, which is %s: ignored (%llu more "
				 "held back)", id, addr,
				 is_coordinator(m) ? "us" : m->coord_id,
				 (unsigned long long)held);
		return false;
	}
	if (is_coordinator(m) || !meta->has_registry_version)
		return true;
	/* The registry cannot have grown faster than writes can happen
	 * since the coordinator last served us over HTTP. */
	double since = m->replica_at < 0 ? 0 : now - m->replica_at;
	double room = (since + 1) * REGISTRY_VERSION_RATE_MAX;
	uint64_t v = meta->registry_version;
	if (v > m->replica_version && (double)(v - m->replica_version) > room) {
		m->n_reject_version++;
		if (log_limited(&m->lim_version, now,
				GOSSIP_REJECT_LOG_INTERVAL, &held))
			log_warn("gossip: coordinator record from %s announces "
				 "registry version %llu, impossible %.0f s "
				 "after version %llu: ignored (%llu more held "
				 "back)", addr, (unsigned long long)v, since,
				 (unsigned long long)m->replica_version,
				 (unsigned long long)held);
		return false;
	}
	m->coord_version = v;
	return true;
}

/* swim's hook: a datagram or record with an impossible incarnation. */
static void on_gossip_reject(void *ctx, const struct swim_reject *r)
{
	struct membership *m = ctx;
	uint64_t held;
	if (!log_limited(&m->lim_inc, time_mono(), GOSSIP_REJECT_LOG_INTERVAL,
			 &held))
		return;
	char from[32], sender[SWIM_ID_STR_LEN], member[SWIM_ID_STR_LEN];
	fmt_addr(&r->from, from);
	swim_id_format(&r->sender, sender);
	swim_id_format(&r->member, member);
	log_warn("gossip: dropped a claim from %s (sender %s): %s at "
		 "incarnation %llu, we hold %llu: impossible (%llu more held "
		 "back)", from, sender, r->self ? "we are" : member,
		 (unsigned long long)r->claimed, (unsigned long long)r->known,
		 (unsigned long long)held);
}

static void on_gossip_event(void *ud, const struct swim_event *ev)
{
	struct membership *m = ud;
	char id[SWIM_ID_STR_LEN];
	swim_id_format(&ev->id, id);
	Ps__NodeMeta *meta = ev->meta_len
				     ? ps__node_meta__unpack(NULL, ev->meta_len,
							     ev->meta)
				     : NULL;
	if (ev->what & SWIM_EV_NEW)
		log_debug("gossip: met %s (%s)", id,
			  swim_status_name(ev->status));
	if (meta && meta->role && !strcmp(meta->role, "coordinator") &&
	    !coordinator_claim(m, id, ev, meta)) {
		ps__node_meta__free_unpacked(meta, NULL);
		return;
	}
	if (is_coordinator(m))
		coordinator_apply(m, id, ev, meta, false);
	else if (m->coord_version > m->replica_version)
		replica_fetch(m);
	if (meta)
		ps__node_meta__free_unpacked(meta, NULL);
}

/* Copies gossip's view (liveness, round-trip times) into the registry. */
static void gossip_refresh(struct membership *m)
{
	if (!m->gossip)
		return;
	struct swim *s = gossip_swim(m->gossip);
	size_t count = swim_member_count(s);
	double now = time_mono();
	int64_t wall = time_wall_ms();
	for (size_t i = 0; i < count; i++) {
		struct swim_member_info mi;
		if (swim_member_get(s, i, &mi) || mi.is_self)
			continue;
		char id[SWIM_ID_STR_LEN];
		swim_id_format(&mi.id, id);
		struct reg_node *n = registry_find(&m->reg, id);
		if (!n)
			continue;
		if (mi.rtt_ms >= 0) {
			n->pb.has_response_time_ms = true;
			n->pb.response_time_ms =
				(double)(long long)(mi.rtt_ms * 1000) / 1000;
		}
		/* Time alone moves one verdict of rule G: a doubted death
		 * stands once the doubt window has passed. */
		if (is_coordinator(m) && mi.status == SWIM_DEAD) {
			struct liveness_view lv = {
				.in_gossip = true,
				.swim = SWIM_DEAD,
				.heard_ago = mi.last_heard < 0 ? -1
							       : now - mi.last_heard,
				.current = n->pb.status,
			};
			set_status(m, n,
				   liveness_status(&lv, m->cfg->node_timeout),
				   "gossip");
		}
		if (is_coordinator(m) &&
		    (mi.status == SWIM_ALIVE || mi.status == SWIM_SUSPECT)) {
			n->last_heard = now;
			if (mi.last_heard >= 0)
				n->pb.last_seen_ms =
					wall - (int64_t)((now - mi.last_heard) *
							 1000);
		}
	}
}

static bool coordinator_alive(struct membership *m)
{
	if (is_coordinator(m))
		return true;
	if (!m->gossip || !m->coord_id[0])
		return false;
	struct swim_id id;
	if (swim_id_parse(m->coord_id, &id))
		return false;
	return swim_member_status(gossip_swim(m->gossip), &id) == SWIM_ALIVE;
}

/* ---- worker: the registry replica -------------------------------------- */

/* Replaces our registry with the coordinator's (keeping our own entry). */
static void replica_install(struct membership *m, const Ps__Reply *r)
{
	struct registry next;
	registry_init(&next, m->cfg->metadata_max);
	double now = time_mono();
	size_t bad = 0;
	for (size_t i = 0; i < r->n_nodes; i++) {
		/* Metadata is rendered verbatim later: it must be JSON. */
		const char *md = r->nodes[i]->metadata_json;
		struct json_doc d;
		char jerr[64];
		if (md && (json_parse(&d, md, strlen(md), jerr, sizeof(jerr)) ||
			   json_type(&d, 0) != JSON_OBJECT)) {
			json_doc_fini(&d);
			bad++;
			continue;
		}
		if (md)
			json_doc_fini(&d);
		if (registry_load_node(&next, r->nodes[i], now))
			bad++;
	}
	struct reg_node *self = registry_find(&m->reg, m->self_id);
	if (self && !registry_find(&next, m->self_id))
		registry_load_node(&next, &self->pb, now);
	registry_fini(&m->reg);
	m->reg = next;
	m->replica_version = r->registry_version;
	m->replica_at = time_mono();
	/* What the coordinator served is the truth at that moment: any
	 * version gossip announced before it is no newer. */
	m->coord_version = r->registry_version;
	if (r->self && r->self->role && !strcmp(r->self->role, "coordinator") &&
	    strcmp(m->coord_id, r->self->id)) {
		log_info("replica: the coordinator at %s is %s",
			 m->cfg->cluster_ip, r->self->id);
		snprintf(m->coord_id, sizeof(m->coord_id), "%s", r->self->id);
	}
	self_refresh(m);
	gossip_refresh(m);
	m->dirty_lazy = true;
	if (bad)
		log_warn("replica: skipped %zu invalid entries", bad);
	log_debug("replica: version %llu, %zu nodes",
		  (unsigned long long)m->replica_version, m->reg.n);
}

static void on_replica_fetched(void *ud, int status, const char *body,
			       size_t len)
{
	struct membership *m = ud;
	m->fetch = NULL;
	Ps__Reply *r = status == 200 ? ps__reply__unpack(NULL, len,
							 (const uint8_t *)body)
				     : NULL;
	if (!r || r->error) {
		m->n_replica_failures++;
		log_debug("replica fetch failed (%d)", status);
	} else {
		m->n_replica_fetches++;
		replica_install(m, r);
	}
	if (r)
		ps__reply__free_unpacked(r, NULL);
	if (m->coord_version > m->replica_version)
		ev_timer_start(m->loop, &m->replica_timer);
}

static void replica_fetch(struct membership *m)
{
	if (is_coordinator(m) || m->fetch || m->leaving)
		return;
	double now = time_mono();
	if (now - m->fetch_at < REPLICA_FETCH_MIN_INTERVAL) {
		/* Too soon: the replica timer retries shortly. */
		ev_timer_stop(m->loop, &m->replica_timer);
		ev_timer_set(&m->replica_timer,
			     REPLICA_FETCH_MIN_INTERVAL - (now - m->fetch_at),
			     REPLICA_SYNC_INTERVAL);
		ev_timer_start(m->loop, &m->replica_timer);
		return;
	}
	char host[CONFIG_STR_MAX];
	const char *colon = strrchr(m->cfg->cluster_ip, ':');
	snprintf(host, sizeof(host), "%.*s",
		 (int)(colon - m->cfg->cluster_ip), m->cfg->cluster_ip);
	m->fetch_at = now;
	m->fetch = fetch_get_auth(m->loop, host, atoi(colon + 1),
				  "/api/cluster/replica",
				  m->cfg->api_token[0] ? m->cfg->api_token
						       : NULL,
				  REPLICA_FETCH_TIMEOUT, IPC_FRAME_MAX,
				  on_replica_fetched, m);
	if (!m->fetch)
		m->n_replica_failures++;
}

static void on_replica_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct membership *m = w->data;
	ev_timer_set(w, REPLICA_SYNC_INTERVAL, REPLICA_SYNC_INTERVAL);
	ev_timer_again(m->loop, w);
	replica_fetch(m);
}

static void admit_look(void *ctx, const struct swim_id *id,
		       struct admit_look *out)
{
	struct membership *m = ctx;
	struct swim_member_info mi;
	char sid[SWIM_ID_STR_LEN];
	swim_id_format(id, sid);
	out->registered = registry_find(&m->reg, sid) != NULL;
	if (swim_member_find(gossip_swim(m->gossip), id, &mi)) {
		out->alive = false;
		return;
	}
	out->alive = mi.status == SWIM_ALIVE || mi.status == SWIM_SUSPECT;
	out->last_heard = mi.last_heard;
}

/* Coordinator: one admission pass (admit.h). */
static void on_admit_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct membership *m = w->data;
	static struct admit_out out; /* ~5 KB, one pass at a time */
	if (!m->gossip || m->leaving)
		return;
	admit_pass(&m->admit, time_mono(), admit_look, m, &out);
	for (size_t i = 0; i < out.n_ping; i++)
		gossip_ping(m->gossip, &out.ping[i]);
	for (size_t i = 0; i < out.n_reg; i++) {
		struct swim_member_info mi;
		if (swim_member_find(gossip_swim(m->gossip), &out.reg[i], &mi))
			continue;
		Ps__NodeMeta *meta = mi.meta_len
			? ps__node_meta__unpack(NULL, mi.meta_len, mi.meta)
			: NULL;
		struct swim_event ev = {
			.what = SWIM_EV_NEW,
			.id = mi.id,
			.addr = mi.addr,
			.status = mi.status,
			.incarnation = mi.incarnation,
		};
		char id[SWIM_ID_STR_LEN];
		swim_id_format(&mi.id, id);
		coordinator_apply(m, id, &ev, meta, true);
		if (meta)
			ps__node_meta__free_unpacked(meta, NULL);
	}
	uint64_t held;
	if (out.deferred &&
	    log_limited(&m->lim_admit, time_mono(), GOSSIP_REJECT_LOG_INTERVAL,
			&held))
		log_warn("gossip: %zu members met by gossip are ready but wait "
			 "for registration (gossip_register_rate %g/s); %zu "
			 "pending in all", out.deferred,
			 m->cfg->gossip_register_rate, m->admit.n);
}

static int gossip_start(struct membership *m)
{
	const struct config *cfg = m->cfg;
	if (cfg->gossip_port == 0) {
		log_info("gossip off (gossip_port = 0)");
		return 0;
	}
	struct swim_config sc;
	/* The product's tuning, then what this node's configuration says. */
	config_gossip_defaults(&sc);
	snprintf(sc.cluster_id, sizeof(sc.cluster_id), "%s", cfg->cluster_id);
	sc.mtu = (size_t)cfg->gossip_mtu;
	sc.probe_interval = cfg->probe_interval;
	sc.probe_timeout = cfg->probe_timeout;
	sc.indirect_checks = (unsigned)cfg->indirect_checks;
	sc.suspicion_mult = cfg->suspicion_mult;
	sc.trace = on_trace;
	sc.trace_ctx = m;
	sc.reject = on_gossip_reject;
	sc.reject_ctx = m;
	char err[ERR_MSG_MAX];
	if (swim_config_check(&sc, err, sizeof(err))) {
		log_error("gossip configuration: %s", err);
		return -EINVAL;
	}
	uint64_t seed;
	uuid_t u;
	uuid_generate_random(u);
	memcpy(&seed, u, sizeof(seed));
	struct gossip_keyring ring;
	if (gossip_keyring_parse(&ring, cfg->gossip_keys, err, sizeof(err))) {
		log_error("gossip_key: %s", err);
		return -EINVAL;
	}
	struct gossip_params gp = {
		.bind_host = cfg->gossip_host,
		.port = cfg->gossip_port,
		.advertise_host = advertise_host(cfg),
		.self_id = m->self_id,
		.seed = seed,
		.keyring = &ring,
	};
	int rc = gossip_new(m->loop, &sc, &gp, on_gossip_event, m, &m->gossip,
			    err, sizeof(err));
	if (rc) {
		log_error("gossip: %s", err);
		return rc;
	}
	struct reg_node *self = registry_find(&m->reg, m->self_id);
	char addr[48];
	snprintf(addr, sizeof(addr), "%s:%d", gp.advertise_host, gp.port);
	if (self) {
		free(self->pb.gossip_addr);
		self->pb.gossip_addr = strdup(addr);
	}
	publish_meta(m);
	if (cfg->coordinator_gossip[0] && !is_coordinator(m)) {
		char host[CONFIG_STR_MAX];
		const char *colon = strrchr(cfg->coordinator_gossip, ':');
		snprintf(host, sizeof(host), "%.*s",
			 (int)(colon - cfg->coordinator_gossip),
			 cfg->coordinator_gossip);
		rc = gossip_add_seed(m->gossip, host, atoi(colon + 1));
		if (rc && rc != -EEXIST)
			log_error("coordinator_gossip %s: %s",
				  cfg->coordinator_gossip, strerror(-rc));
	}
	/* After a restart, ping the gossiping nodes we knew: the cluster
	 * reforms without waiting for them to find us. */
	size_t seeds = 0;
	for (size_t i = 0; i < m->reg.n && seeds < SWIM_SEEDS_MAX; i++) {
		Ps__Node *pb = &m->reg.nodes[i]->pb;
		if (!pb->gossip_addr || !strcmp(pb->id, m->self_id) ||
		    pb->status == PS__NODE_STATUS__NODE_LEFT)
			continue;
		char host[64];
		const char *colon = strrchr(pb->gossip_addr, ':');
		if (!colon || colon - pb->gossip_addr >= (long)sizeof(host))
			continue;
		snprintf(host, sizeof(host), "%.*s",
			 (int)(colon - pb->gossip_addr), pb->gossip_addr);
		if (gossip_add_seed(m->gossip, host, atoi(colon + 1)) == 0)
			seeds++;
	}
	log_info("gossip on udp %s:%d as %s (cluster %s, %s)", cfg->gossip_host,
		 cfg->gossip_port, addr, cfg->cluster_id,
		 ring.n ? "encrypted" : "plaintext");
	ev_timer_init(&m->meta_timer, on_meta_timer, cfg->heartbeat_interval,
		      cfg->heartbeat_interval);
	m->meta_timer.data = m;
	ev_timer_start(m->loop, &m->meta_timer);
	if (!is_coordinator(m)) {
		ev_timer_init(&m->replica_timer, on_replica_timer, 0,
			      REPLICA_SYNC_INTERVAL);
		m->replica_timer.data = m;
		ev_timer_start(m->loop, &m->replica_timer);
	} else {
		rc = admit_init(&m->admit, cfg->gossip_register_after,
				cfg->gossip_register_rate, time_mono());
		if (rc) {
			log_error("gossip admission: %s", strerror(-rc));
			return rc;
		}
		m->admit_on = true;
		ev_timer_init(&m->admit_timer, on_admit_timer,
			      ADMIT_PASS_INTERVAL, ADMIT_PASS_INTERVAL);
		m->admit_timer.data = m;
		ev_timer_start(m->loop, &m->admit_timer);
	}
	return 0;
}

static void on_leave_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)rev;
	struct membership *m = w->data;
	if (gossip_leave_done(m->gossip) ||
	    time_mono() - m->leave_started >= LEAVE_GRACE)
		ev_break(loop, EVBREAK_ALL);
}


/* ---- gossip inspection (tools/dump) -------------------------------------- */

/* Streams one datagram to every follower, skipping those too far behind. */
static void on_trace(void *ctx, const struct swim_trace *t)
{
	struct membership *m = ctx;
	if (m->nfollowers == 0)
		return;
	char peer[32], sender[SWIM_ID_STR_LEN], target[SWIM_ID_STR_LEN];
	char ids[TRACE_UPDATES_MAX][SWIM_ID_STR_LEN];
	char addrs[TRACE_UPDATES_MAX][32];
	char froms[TRACE_UPDATES_MAX][SWIM_ID_STR_LEN];
	Ps__TraceUpdate ups[TRACE_UPDATES_MAX], *upp[TRACE_UPDATES_MAX];
	Ps__Trace tr = PS__TRACE__INIT;
	fmt_addr(&t->peer, peer);
	tr.time_ms = time_wall_ms();
	tr.sent = t->sent;
	tr.peer = peer;
	tr.size = (uint32_t)t->size;
	if (t->error) {
		tr.has_error = true;
		tr.error = t->error;
		tr.error_text = (char *)strerror(-t->error);
	}
	if (t->hdr) {
		tr.type = (char *)swim_msg_type_name(t->hdr->type);
		tr.has_seq = true;
		tr.seq = t->hdr->seq;
		swim_id_format(&t->hdr->sender, sender);
		tr.sender_id = sender;
		if (t->hdr->has_target) {
			swim_id_format(&t->hdr->target, target);
			tr.target_id = target;
		}
	}
	size_t n = t->n_records < TRACE_UPDATES_MAX ? t->n_records
						   : TRACE_UPDATES_MAX;
	for (size_t i = 0; i < n; i++) {
		const struct swim_record *r = &t->records[i];
		ps__trace_update__init(&ups[i]);
		swim_id_format(&r->id, ids[i]);
		fmt_addr(&r->addr, addrs[i]);
		ups[i].id = ids[i];
		ups[i].addr = addrs[i];
		ups[i].status = (char *)swim_status_name(r->status);
		ups[i].incarnation = r->incarnation;
		if (r->has_from) {
			swim_id_format(&r->from, froms[i]);
			ups[i].suspect_from = froms[i];
		}
		upp[i] = &ups[i];
	}
	tr.updates = upp;
	tr.n_updates = n;
	for (struct client *c = m->clients; c; c = c->next) {
		if (!c->follower)
			continue;
		if (ipc_conn_pending(c->conn) > FOLLOW_BACKLOG_MAX) {
			c->dropped++;
			continue;
		}
		Ps__Reply r = PS__REPLY__INIT;
		r.id = c->follow_id;
		r.trace = &tr;
		if (c->dropped) {
			r.has_dropped = true;
			r.dropped = c->dropped;
		}
		if (ipc_conn_send(c->conn, &r.base) == 0)
			c->dropped = 0;
		else
			c->dropped++;
	}
}

/* Fills r->members with the gossip table; frees with members_free(). */
static int members_fill(struct membership *m, Ps__Reply *r, Ps__Gossip *g,
			char *self_addr)
{
	if (!m->gossip)
		return 0;
	struct swim *s = gossip_swim(m->gossip);
	size_t count = swim_member_count(s);
	r->members = calloc(count ? count : 1, sizeof(*r->members));
	if (!r->members)
		return -ENOMEM;
	double now = time_mono();
	for (size_t i = 0; i < count; i++) {
		struct swim_member_info mi;
		if (swim_member_get(s, i, &mi))
			continue;
		Ps__Member *pm = calloc(1, sizeof(*pm));
		char *id = malloc(SWIM_ID_STR_LEN), *addr = malloc(32);
		if (!pm || !id || !addr) {
			free(pm);
			free(id);
			free(addr);
			return -ENOMEM;
		}
		ps__member__init(pm);
		swim_id_format(&mi.id, id);
		fmt_addr(&mi.addr, addr);
		pm->id = id;
		pm->addr = addr;
		pm->status = (char *)swim_status_name(mi.status);
		pm->incarnation = mi.incarnation;
		pm->has_is_self = true;
		pm->is_self = mi.is_self;
		if (mi.is_self)
			snprintf(self_addr, 32, "%s", addr);
		if (mi.last_heard >= 0 && !mi.is_self) {
			pm->has_last_heard_ago = true;
			pm->last_heard_ago = now - mi.last_heard;
		}
		if (mi.rtt_ms >= 0) {
			pm->has_rtt_ms = true;
			pm->rtt_ms = mi.rtt_ms;
		}
		if (mi.meta_len)
			pm->meta = ps__node_meta__unpack(NULL, mi.meta_len,
							 mi.meta);
		r->members[r->n_members++] = pm;
	}
	struct swim_stats st;
	swim_stats_get(s, &st);
	g->addr = self_addr;
	g->incarnation = st.incarnation;
	g->local_health = st.local_health;
	g->cluster_id = (char *)m->cfg->cluster_id;
	r->gossip = g;
	return 0;
}

static void members_free(Ps__Reply *r)
{
	for (size_t i = 0; i < r->n_members; i++) {
		Ps__Member *pm = r->members[i];
		free(pm->id);
		free(pm->addr);
		if (pm->meta)
			ps__node_meta__free_unpacked(pm->meta, NULL);
		free(pm);
	}
	free(r->members);
}

/* ---- requests ----------------------------------------------------------- */

static void send_reply(struct membership *m, struct client *c,
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
			error_reply(&r, &e, 500, "REPLY_TOO_LARGE",
				    "The answer exceeds the IPC frame limit; use filters");
		else
			error_reply(&r, &e, 503, "OVERLOADED",
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
	static char details[CONFIG_STR_MAX + 64];
	snprintf(details, sizeof(details), "{\"coordinatorUrl\":\"%.200s\"}",
		 m->cfg->coordinator_url);
	e->details_json = details;
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
	Ps__Gossip gossip_info = PS__GOSSIP__INIT;
	char self_addr[32] = "";
	bool durable = false;
	int rc;

	if (read_waits(m, c, req))
		return; /* answered by commit() */
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
			make_uuid(idbuf);
			id = idbuf;
		}
		if (!strcmp(id, m->self_id)) {
			error_reply(&r, &e, 409, "CONFLICT",
				    "That id belongs to this coordinator");
			break;
		}
		bool created;
		if (!stage_node(m, id, NULL)) {
			error_reply(&r, &e, 503, "OVERLOADED",
				    "Too many changes wait for the disk; retry shortly");
			break;
		}
		rc = registry_register(&m->reg, req->register_, id,
				       m->cfg->cluster_id, time_wall_ms(),
				       time_mono(), &n, &created, msg,
				       sizeof(msg));
		if (rc)
			stage_drop(m);
		if (rc == -EINVAL) {
			validation_error(&r, &e, msg, details);
			break;
		}
		if (rc) {
			error_reply(&r, &e, 503, "REGISTRY_FULL",
				    rc == -ENOSPC ? msg : "Out of memory");
			break;
		}
		m->staged[m->nstaged - 1].event =
			created ? "registered" : "updated";
		r.node = &n->pb;
		r.has_created = true;
		r.created = created;
		wal_log_node(m, n, true);
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
			self_refresh(m);
			n = registry_find(&m->reg, m->self_id);
		} else {
			struct reg_node *before = registry_find(&m->reg, hb->id);
			Ps__NodeStatus was = before ? before->pb.status
						    : PS__NODE_STATUS__NODE_ACTIVE;
			/* A status the client sets is acknowledged only once
			 * durable; load and metadata are refreshed lazily. */
			bool staged = before && hb->has_status &&
				      hb->status != was &&
				      stage_node(m, hb->id, "status");
			rc = registry_heartbeat(&m->reg, hb->id, hb->has_status,
						hb->status, hb->metadata_json,
						time_wall_ms(), time_mono(), &n,
						msg, sizeof(msg));
			if (staged && (rc || n->pb.status == was))
				stage_drop(m);
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
			if (n->pb.status != was && staged) {
				wal_log_node(m, n, true);
				durable = true;
			} else if (n->pb.status != was) {
				/* Status moved without a staged before-image
				 * (staging full): logged, announced as before. */
				wal_log_node(m, n, false);
				emit_node(m, "status", n->pb.id, n);
			}
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
		r.coordinator_healthy = coordinator_alive(m);
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
		if (!stage_node(m, req->delete_node->id, "removed")) {
			error_reply(&r, &e, 503, "OVERLOADED",
				    "Too many changes wait for the disk; retry shortly");
			break;
		}
		if (registry_remove(&m->reg, req->delete_node->id)) {
			stage_drop(m);
			snprintf(msg, sizeof(msg), "Node %.64s not found",
				 req->delete_node->id);
			error_reply(&r, &e, 404, "NODE_NOT_FOUND", msg);
			break;
		}
		log_info("removed %s", req->delete_node->id);
		wal_log_remove(m, req->delete_node->id);
		durable = true;
		break;
	case PS__REQUEST__BODY_SET_SERVING:
		if (writes_refused(m, &r, &e))
			break;
		if (m->serving != req->set_serving->serving) {
			/* Announced (event, gossip) once durable. */
			stage_serving(m);
			m->serving = req->set_serving->serving;
			m->changed_ms = time_wall_ms();
			log_info("serving %s", m->serving ? "enabled"
							  : "disabled (maintenance)");
			self_refresh(m);
			wal_log_serving(m);
		}
		durable = true;
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
		struct swim_stats gs;
		memset(&gs, 0, sizeof(gs));
		if (m->gossip)
			swim_stats_get(gossip_swim(m->gossip), &gs);
		struct admit_stats as;
		memset(&as, 0, sizeof(as));
		if (m->admit_on)
			admit_stats_get(&m->admit, &as);
		struct {
			const char *name, *labels, *help;
			double v;
		} cs[] = {
			{ "proxystone_registry_nodes", NULL, "Nodes in the registry", (double)m->reg.n },
			{ "proxystone_registry_version", NULL, "Registry version", (double)m->reg.version },
			{ "proxystone_registry_nodes_over_limit", NULL, "Nodes loaded with more metadata than max_metadata_bytes (kept as stored)", (double)m->n_over_limit },
			{ "proxystone_ipc_requests_total", NULL, "Requests served by membership", (double)m->n_requests },
			{ "proxystone_membership_ipc_errors_total", "reason=\"bad_frame\"", "IPC errors", (double)m->n_bad_frames },
			{ "proxystone_membership_ipc_errors_total", "reason=\"overloaded\"", "IPC errors", (double)m->n_overloaded },
			{ "proxystone_membership_ipc_errors_total", "reason=\"too_many_clients\"", "IPC errors", (double)m->n_clients_rejected },
			{ "proxystone_snapshot_saves_total", NULL, "Snapshots written", (double)m->n_saves },
			{ "proxystone_snapshot_failures_total", NULL, "Snapshot writes that failed", (double)m->n_save_failures },
			{ "proxystone_snapshot_seconds_total", NULL, "Time spent writing snapshots", m->save_seconds },
			{ "proxystone_wal_syncs_total", NULL, "Write-ahead log syncs (group commits)", (double)m->n_wal_syncs },
			{ "proxystone_wal_bytes", NULL, "Write-ahead log size since the last snapshot", m->wal ? (double)wal_size(m->wal) : 0.0 },
			{ "proxystone_wal_damaged_total", NULL, "Damaged write-ahead logs found at start-up", (double)m->n_wal_damaged },
			{ "proxystone_snapshot_damaged_total", NULL, "Damaged snapshots found at start-up", (double)m->n_snapshot_damaged },
			{ "proxystone_storage_available", NULL, "1 if the data directory accepts writes", m->store_failed ? 0.0 : 1.0 },
			{ "proxystone_nodes_expired_total", NULL, "Nodes marked inactive for missing heartbeats", (double)m->n_expired },
			{ "proxystone_gossip_packets_total", "dir=\"sent\"", "Gossip datagrams", (double)gs.packets_sent },
			{ "proxystone_gossip_packets_total", "dir=\"received\"", "Gossip datagrams", (double)gs.packets_received },
			{ "proxystone_gossip_bytes_total", "dir=\"sent\"", "Gossip bytes", (double)gs.bytes_sent },
			{ "proxystone_gossip_bytes_total", "dir=\"received\"", "Gossip bytes", (double)gs.bytes_received },
			{ "proxystone_gossip_dropped_total", "reason=\"bad_cluster\"", "Gossip datagrams dropped", (double)gs.dropped_bad_cluster },
			{ "proxystone_gossip_dropped_total", "reason=\"bad_version\"", "Gossip datagrams dropped", (double)gs.dropped_bad_version },
			{ "proxystone_gossip_dropped_total", "reason=\"malformed\"", "Gossip datagrams dropped", (double)gs.dropped_malformed },
			{ "proxystone_gossip_dropped_total", "reason=\"misdirected\"", "Gossip datagrams dropped", (double)gs.dropped_misdirected },
			{ "proxystone_gossip_dropped_total", "reason=\"queue_full\"", "Gossip datagrams dropped", (double)(gs.dropped_outq + gs.dropped_events + gs.dropped_relays) },
			{ "proxystone_gossip_dropped_total", "reason=\"auth\"", "Gossip datagrams dropped", m->gossip ? (double)gossip_auth_failures(m->gossip) : 0.0 },
			{ "proxystone_gossip_dropped_total", "reason=\"replay\"", "Gossip datagrams dropped", m->gossip ? (double)gossip_replayed(m->gossip) : 0.0 },
			{ "proxystone_gossip_dropped_total", "reason=\"stale\"", "Gossip datagrams dropped", m->gossip ? (double)gossip_stale(m->gossip) : 0.0 },
			{ "proxystone_gossip_dropped_total", "reason=\"late\"", "Gossip datagrams dropped", m->gossip ? (double)gossip_late(m->gossip) : 0.0 },
			{ "proxystone_gossip_rejected_total", "reason=\"incarnation\"", "Gossip claims refused", (double)gs.dropped_inc_jump },
			{ "proxystone_gossip_rejected_total", "reason=\"coordinator_claim\"", "Gossip claims refused", (double)m->n_reject_role },
			{ "proxystone_gossip_rejected_total", "reason=\"registry_version\"", "Gossip claims refused", (double)m->n_reject_version },
			{ "proxystone_gossip_pending_registrations", NULL, "Members met by gossip waiting to be registered", (double)as.pending },
			{ "proxystone_gossip_admissions_total", "result=\"registered\"", "Members met by gossip, by outcome", (double)as.admitted },
			{ "proxystone_gossip_admissions_total", "result=\"deferred\"", "Members met by gossip, by outcome", (double)as.deferred },
			{ "proxystone_gossip_admissions_total", "result=\"expired\"", "Members met by gossip, by outcome", (double)as.expired },
			{ "proxystone_gossip_admissions_total", "result=\"dropped\"", "Members met by gossip, by outcome", (double)as.dropped },
			{ "proxystone_gossip_admissions_total", "result=\"pinged\"", "Members met by gossip, by outcome", (double)as.pings },
			{ "proxystone_gossip_send_errors_total", NULL, "Gossip datagrams the socket refused", m->gossip ? (double)gossip_send_errors(m->gossip) : 0.0 },
			{ "proxystone_gossip_members", "status=\"alive\"", "Members in the gossip table", (double)gs.alive },
			{ "proxystone_gossip_members", "status=\"suspect\"", "Members in the gossip table", (double)gs.suspect },
			{ "proxystone_gossip_members", "status=\"dead\"", "Members in the gossip table", (double)gs.dead },
			{ "proxystone_gossip_members", "status=\"left\"", "Members in the gossip table", (double)gs.left },
			{ "proxystone_gossip_probes_total", NULL, "Direct probes", (double)gs.probes },
			{ "proxystone_gossip_probe_failures_total", NULL, "Probes without an ack", (double)gs.probe_failures },
			{ "proxystone_gossip_indirect_probes_total", NULL, "Ping-reqs sent", (double)gs.indirect_probes },
			{ "proxystone_gossip_direct_retries_total", NULL, "Second direct pings sent with the ping-reqs", (double)gs.direct_retries },
			{ "proxystone_gossip_nacks_total", "dir=\"sent\"", "Lifeguard nacks", (double)gs.nacks_sent },
			{ "proxystone_gossip_nacks_total", "dir=\"received\"", "Lifeguard nacks", (double)gs.nacks_received },
			{ "proxystone_gossip_suspicions_total", NULL, "Members we suspected", (double)gs.suspects },
			{ "proxystone_gossip_refutations_total", NULL, "Suspicions of us we refuted", (double)gs.refutes },
			{ "proxystone_gossip_local_health", NULL, "Lifeguard local health score (0 = healthy)", (double)gs.local_health },
			{ "proxystone_gossip_incarnation", NULL, "Our incarnation number", (double)gs.incarnation },
			{ "proxystone_replica_fetches_total", "result=\"ok\"", "Registry replica fetches (workers)", (double)m->n_replica_fetches },
			{ "proxystone_replica_fetches_total", "result=\"failed\"", "Registry replica fetches (workers)", (double)m->n_replica_failures },
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
	case PS__REQUEST__BODY_GET_MEMBERS:
		if (!m->gossip) {
			error_reply(&r, &e, 503, "GOSSIP_OFF",
				    "Gossip is off on this node (gossip_port = 0)");
			break;
		}
		r.self_id = m->self_id;
		if (members_fill(m, &r, &gossip_info, self_addr))
			error_reply(&r, &e, 500, "INTERNAL_ERROR",
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
			error_reply(&r, &e, 503, "GOSSIP_OFF",
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
		error_reply(&r, &e, 400, "BAD_REQUEST", "Unknown request");
		break;
	}
	r.registry_version = is_coordinator(m) ? m->reg.version
					       : m->replica_version;
	if (durable && !r.error)
		hold_reply(m, c, &r);
	else
		send_reply(m, c, &r);
	members_free(&r);
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
	if (c->follower)
		m->nfollowers--;
	if (c->subscriber)
		m->nsubscribers--;
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
	struct membership *m = w->data;
	if (m->leaving || !m->gossip) {
		log_info("stopping on %s", strsignal(w->signum));
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	/* Graceful leave: peers mark us `left` at once instead of waiting
	 * for a failure detector to notice. */
	log_info("stopping on %s: leaving the cluster", strsignal(w->signum));
	m->leaving = true;
	m->leave_started = time_mono();
	gossip_leave(m->gossip);
	ev_timer_init(&m->leave_timer, on_leave_timer, 0.05, 0.05);
	m->leave_timer.data = m;
	ev_timer_start(loop, &m->leave_timer);
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
	m->replica_at = -1;
	m->start_ms = m->changed_ms = time_wall_ms();
	registry_init(&m->reg, cfg->metadata_max);
	buf_init(&m->held_frames, COMMIT_PENDING_MAX * (size_t)64 * 1024);
	/* Before-images of staged nodes, as much as the held replies (a node
	 * is at most WAL_RECORD_MAX: past the bound the commit comes early);
	 * the reads that wait are small requests. */
	buf_init(&m->staged_bytes, COMMIT_PENDING_MAX * (size_t)64 * 1024);
	buf_init(&m->waiting_bytes, READS_WAITING_MAX * (size_t)1024);
	snprintf(m->store_path, sizeof(m->store_path), "%s/registry.snap",
		 cfg->data_dir);
	snprintf(m->wal_path, sizeof(m->wal_path), "%s/registry.wal",
		 cfg->data_dir);
	signal(SIGPIPE, SIG_IGN);

	int rc = load_state(m);
	if (!rc)
		rc = wal_start(m);
	if (!rc && (m->n_over_limit = registry_count_over_limit(&m->reg)))
		log_warn("%zu nodes hold more metadata than max_metadata_bytes "
			 "(%zu): kept as stored; new writes to them must fit",
			 m->n_over_limit, cfg->metadata_max);
	if (rc) {
		log_error("cannot start: the state in %s cannot be used",
			  cfg->data_dir);
		goto fail;
	}
	bool fresh = !m->self_id[0];
	if (fresh)
		make_uuid(m->self_id);
	m->start_ms = time_wall_ms();
	if (ensure_self(m))
		goto fail;
	/* Identity must be on disk before we serve anything. */
	if (save_now(m) && fresh) {
		log_error("cannot persist this node's identity in %s",
			  cfg->data_dir);
		goto fail;
	}
	log_info("node %s (%s) %s, %zu nodes in the registry", m->self_id,
		 config_role_name(cfg->role), fresh ? "created" : "restored",
		 m->reg.n);

	m->listen_fd = ipc_listen(cfg->socket_path);
	if (m->listen_fd < 0) {
		log_error("cannot listen on %s: %s", cfg->socket_path,
			  strerror(-m->listen_fd));
		goto fail;
	}
	m->loop = ev_loop_new(EVFLAG_AUTO);
	if (!m->loop) {
		close(m->listen_fd);
		goto fail;
	}
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
	m->sigterm.data = m->sigint.data = m;
	ev_signal_start(m->loop, &m->sigterm);
	ev_signal_start(m->loop, &m->sigint);
	if (gossip_start(m)) {
		close(m->listen_fd);
		ev_loop_destroy(m->loop);
		goto fail;
	}
	if (sup_fd >= 0) {
		child_keepalive_start(m->loop, sup_fd);
		child_notify_ready(sup_fd);
	}
	log_info("serving on %s", cfg->socket_path);

	ev_run(m->loop, 0);

	commit(m);
	/* Compact at shutdown: the next start loads one snapshot. */
	if (save_now(m))
		wal_flush(m);
	wal_close(m->wal);
	if (m->fetch)
		fetch_cancel(m->fetch);
	gossip_free(m->gossip);
	admit_fini(&m->admit);
	while (m->clients)
		ipc_conn_close(m->clients->conn, 0);
	close(m->listen_fd);
	unlink(cfg->socket_path);
	ev_loop_destroy(m->loop);
	registry_fini(&m->reg);
	buf_fini(&m->held_frames);
	buf_fini(&m->staged_bytes);
	buf_fini(&m->waiting_bytes);
	free(m);
	return 0;
fail:
	admit_fini(&m->admit);
	wal_close(m->wal);
	registry_fini(&m->reg);
	buf_fini(&m->held_frames);
	buf_fini(&m->staged_bytes);
	buf_fini(&m->waiting_bytes);
	free(m);
	return 1;
}
