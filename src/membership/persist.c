/*
 * persist — the membership process's store: snapshot (store.c) and
 * write-ahead log (wal.c) behind one set of calls, recovery at start-up,
 * the group commit, and staging.
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
#include "internal.h"

static void store_failure(struct membership *m, const char *what, int rc);
static void staged_settle(struct membership *m, bool durable);
static void reads_release(struct membership *m);

int persist_snapshot(struct membership *m)
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

/* ---- write-ahead log ------------------------------------------------------
 */

static void store_failure(struct membership *m, const char *what, int rc)
{
	if (!m->store_failed)
		log_error(
		    "%s failed: %s; changes are refused until the data directory recovers",
		    what, strerror(-rc));
	m->store_failed = true;
	m->store_failed_at = time_mono();
}

/* Makes buffered log records durable. 0 or -errno. */
int persist_flush(struct membership *m)
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

/* A record the log could not take goes to disk by snapshot instead. A
 * sync record is the staged write's: it is made, at this version. */
static void wal_logged(struct membership *m, int rc, bool sync)
{
	if (sync && m->nstaged)
		m->staged[m->nstaged - 1].version_after = m->reg.version;
	if (rc == 0)
		return;
	m->dirty_lazy = true;
	if (sync)
		m->must_snapshot = true;
}

void persist_log_node(struct membership *m, const struct reg_node *n, bool sync)
{
	if (!m->wal) {
		wal_logged(m, -EBADF, sync);
		return;
	}
	int rc = wal_append_upsert(m->wal, &n->pb, m->reg.version);
	if (rc == -ENOBUFS && persist_flush(m) == 0)
		rc = wal_append_upsert(m->wal, &n->pb, m->reg.version);
	wal_logged(m, rc, sync);
}

void persist_log_remove(struct membership *m, const char *id)
{
	int rc =
	    m->wal ? wal_append_remove(m->wal, id, m->reg.version) : -EBADF;
	if (rc == -ENOBUFS && persist_flush(m) == 0)
		rc = wal_append_remove(m->wal, id, m->reg.version);
	wal_logged(m, rc, true);
}

void persist_log_serving(struct membership *m)
{
	int rc = m->wal ? wal_append_serving(m->wal, m->serving, m->changed_ms,
					     m->reg.version)
			: -EBADF;
	if (rc == -ENOBUFS && persist_flush(m) == 0)
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
int persist_open_log(struct membership *m)
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
		log_error(
		    "damaged write-ahead log, not applied (%s); moved to %s",
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
		log_warn(
		    "write-ahead log: ignored a torn tail of %zu bytes (a crash mid-write)",
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
int persist_load(struct membership *m)
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
		snprintf(aside, sizeof(aside), "%s.damaged-%lld", m->store_path,
			 (long long)time_wall_ms());
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
	if (rc == -ENOENT && !file_exists(m->wal_path) &&
	    !m->n_snapshot_damaged)
		return 0; /* a new node */
	if (rc) {
		log_error(
		    "no usable snapshot in %s (%s); refusing to serve a partial registry. "
		    "Restore a snapshot, or move registry.* aside to start empty",
		    m->cfg->data_dir, rc == -ENOENT ? "missing" : err);
		return rc == -ENOENT ? -EBADMSG : rc;
	}
	double now = time_mono();
	if (node_id_valid(snap->self_id))
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

	log_info("loaded snapshot: %zu nodes, registry version %llu", m->reg.n,
		 (unsigned long long)m->reg.version);
	ps__snapshot__free_unpacked(snap, NULL);
	return 0;
}

/*
 * Makes this iteration's changes durable, then releases what waited on
 * them: held replies, the staged writes' events, waiting reads. If the
 * changes cannot be made durable, the staged writes are undone first, so
 * the 503 their clients get leaves no trace for anyone.
 */
int persist_commit(struct membership *m)
{
	if (m->nheld == 0 && !m->must_snapshot) {
		assert(m->nstaged == 0 && m->nwaiting == 0);
		return 0;
	}
	int rc = persist_flush(m);
	if (!rc && m->must_snapshot)
		rc = persist_snapshot(m);
	if (!rc && m->wal && wal_size(m->wal) > WAL_COMPACT_BYTES)
		persist_snapshot(
		    m); /* compaction: the log already holds the changes */
	staged_settle(m, rc == 0);
	for (size_t i = 0; i < m->nheld; i++) {
		struct held_reply *h = &m->held[i];
		struct client *c = dispatch_client(m, h->client);
		if (!c)
			continue;
		if (rc == 0) {
			if (ipc_conn_send_frames(
				c->conn, m->held_frames.base + h->off, h->len))
				ipc_conn_close(c->conn, -ENOBUFS);
			continue;
		}
		dispatch_refused(m, c, h->request);
	}
	m->nheld = 0;
	buf_reset(&m->held_frames);
	reads_release(m);
	assert(m->nheld == 0 && m->nstaged == 0 && m->nwaiting == 0);
	return rc;
}

/* ---- staging: nothing visible before it is durable -------------------- */

/*
 * A client write changes the registry at once (the next request of the
 * same pass must see it), but until the group commit's fdatasync nobody
 * else may: its event waits in `staged`, and reads wait in `waiting`
 * (both released by persist_commit()). A commit that fails undoes every staged
 * write, newest first, so a write answered 503 is never seen and never
 * comes back after a restart.
 */

/* Before a write to node `id`: remembers it as it is. false if the
 * staging area is full (the caller refuses the write). */
bool persist_stage_node(struct membership *m, const char *id, const char *event)
{
	if (m->nstaged == COMMIT_PENDING_MAX)
		persist_commit(m);
	const struct reg_node *n = registry_find(&m->reg, id);
	size_t off = m->staged_bytes.len, len = 0;
	if (n) {
		char *at;
		len = ps__node__get_packed_size(&n->pb);
		if (buf_extend(&m->staged_bytes, len, &at)) {
			/* Full: settle what is staged, then start afresh. */
			persist_commit(m);
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
	st->version_before = st->version_after = m->reg.version;
	return true;
}

/* The write staged last did not happen (refused before any change). */
void persist_stage_drop(struct membership *m)
{
	assert(m->nstaged > 0);
	m->staged_bytes.len = m->staged[--m->nstaged].off;
}

void persist_stage_serving(struct membership *m)
{
	if (m->nstaged == COMMIT_PENDING_MAX)
		persist_commit(m);
	struct staged *st = &m->staged[m->nstaged++];
	memset(st, 0, sizeof(*st));
	st->prev_serving = m->serving;
	st->prev_changed_ms = m->changed_ms;
	st->off = m->staged_bytes.len;
	st->version_before = st->version_after = m->reg.version;
}

static void staged_undo(struct membership *m, const struct staged *st)
{
	if (!st->event) {
		m->serving = st->prev_serving;
		m->changed_ms = st->prev_changed_ms;
		membership_self_refresh(m);
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
		/* The versions the writes added go with them (undoing moves
		 * the version too); other changes of the pass keep theirs. */
		uint64_t version = m->reg.version;
		for (size_t i = m->nstaged; i-- > 0;) {
			const struct staged *st = &m->staged[i];
			version -= st->version_after - st->version_before;
			staged_undo(m, st);
		}
		/* ...but never below what a client was already told (a
		 * gossip status of this pass may have been announced). */
		m->reg.version =
		    version > m->version_shown ? version : m->version_shown;
		m->n_undone += m->nstaged;
		log_warn("%zu change(s) undone: not durable", m->nstaged);
	}
	for (size_t i = 0; durable && i < m->nstaged; i++) {
		const struct staged *st = &m->staged[i];
		if (!st->event) {
			serving_changed = true;
			continue;
		}
		events_node(m, st->event, st->id,
			    registry_find(&m->reg, st->id));
	}
	if (serving_changed) {
		events_service(m);
		membership_publish_meta(m);
	}
	m->nstaged = 0;
	buf_reset(&m->staged_bytes);
}

/* True if `req` must wait for the persist_commit; it is then kept. */
bool persist_read_waits(struct membership *m, struct client *c,
			const Ps__Request *req)
{
	if (m->nstaged == 0 || !dispatch_is_read(req))
		return false;
	if (m->nwaiting == READS_WAITING_MAX) {
		persist_commit(
		    m); /* answers the waiting ones; this one goes now */
		return false;
	}
	char *at;
	size_t len = ps__request__get_packed_size(req);
	size_t off = m->waiting_bytes.len;
	if (buf_extend(&m->waiting_bytes, len, &at)) {
		persist_commit(m);
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
		struct client *c = dispatch_client(m, w->client);
		if (!c)
			continue;
		Ps__Request *req = ps__request__unpack(
		    NULL, w->len,
		    (const uint8_t *)m->waiting_bytes.base + w->off);
		if (req) {
			dispatch_handle(m, c, req);
			ps__request__free_unpacked(req, NULL);
		}
	}
	buf_reset(&m->waiting_bytes);
}
