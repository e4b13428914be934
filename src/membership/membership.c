/*
 * membership — the process that owns the registry, identity, serving mode
 * and their persistence; serves ipc.proto requests on a Unix socket. This
 * file wires the parts (internal.h lists them) to the event loop: clients,
 * signals, timers, the gossip layer and our own gossip record.
 */
#include "internal.h"

bool membership_is_coordinator(const struct membership *m)
{
	return m->cfg->role == ROLE_COORDINATOR;
}

void membership_self_refresh(struct membership *m)
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

static void on_commit_prepare(struct ev_loop *loop, ev_prepare *w, int rev)
{
	(void)loop;
	(void)rev;
	struct membership *m = w->data;
	persist_commit(m);
	events_registry_if_changed(m);
	/* Announce a new registry version, at a bounded rate (the expire
	 * timer comes back within a second for one held back here). */
	if (m->gossip && membership_is_coordinator(m) &&
	    m->reg.version != m->meta_version_sent &&
	    time_mono() - m->meta_sent_at >= META_VERSION_MIN_INTERVAL)
		membership_publish_meta(m);
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
	persist_flush(m);
	if ((m->dirty_lazy && now - m->snapshot_at >= SNAPSHOT_LAZY_INTERVAL) ||
	    m->must_snapshot || m->store_failed)
		persist_snapshot(m);
}

static void on_expire_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct membership *m = w->data;
	membership_self_refresh(m);
	policy_refresh(m);
	/* Workers hold the coordinator's verdicts; only it expires nodes. */
	if (membership_is_coordinator(m))
		policy_expire(m);
}

/* ---- gossip ------------------------------------------------------------- */

static const char *advertise_host(const struct config *cfg)
{
	const char *h =
	    cfg->advertise_host[0] ? cfg->advertise_host : cfg->api_host;
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
void membership_publish_meta(struct membership *m)
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
	if (membership_is_coordinator(m)) {
		meta.has_registry_version = true;
		meta.registry_version = m->reg.version;
	}
	uint8_t buf[SWIM_META_MAX];
	size_t len;
	if (node_meta_pack(&meta, buf, sizeof(buf), &len)) {
		log_error(
		    "our gossip record does not fit %d bytes (url too long?)",
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
	membership_publish_meta(w->data);
}

static void on_gossip_event(void *ud, const struct swim_event *ev)
{
	struct membership *m = ud;
	char id[SWIM_ID_STR_LEN];
	swim_id_format(&ev->id, id);
	Ps__NodeMeta *meta =
	    ev->meta_len ? ps__node_meta__unpack(NULL, ev->meta_len, ev->meta)
			 : NULL;
	if (ev->what & SWIM_EV_NEW)
		log_debug("gossip: met %s (%s)", id,
			  swim_status_name(ev->status));
	if (meta && meta->role && !strcmp(meta->role, "coordinator") &&
	    !policy_claim(m, id, ev, meta)) {
		ps__node_meta__free_unpacked(meta, NULL);
		return;
	}
	if (membership_is_coordinator(m))
		policy_apply(m, id, ev, meta, false);
	else if (m->coord_version > m->replica_version)
		replica_fetch(m);
	if (meta)
		ps__node_meta__free_unpacked(meta, NULL);
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
	sc.trace = inspect_on_trace;
	sc.trace_ctx = m;
	sc.reject = policy_on_reject;
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
	membership_publish_meta(m);
	if (cfg->coordinator_gossip[0] && !membership_is_coordinator(m)) {
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
	if (!membership_is_coordinator(m)) {
		ev_timer_init(&m->replica_timer, replica_on_timer, 0,
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
		ev_timer_init(&m->admit_timer, policy_on_admit_timer,
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
	dispatch_handle(c->m, c, req);
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
	assert(m->nclients > 0);
	assert(!c->follower || m->nfollowers > 0);
	assert(!c->subscriber || m->nsubscribers > 0);
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
	snprintf(
	    meta, sizeof(meta),
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
	membership_self_refresh(m);
	return 0;
}

struct membership *membership_new(const struct config *cfg)
{
	struct membership *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
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
	return m;
}

void membership_free(struct membership *m)
{
	admit_fini(&m->admit);
	wal_close(m->wal);
	registry_fini(&m->reg);
	buf_fini(&m->held_frames);
	buf_fini(&m->staged_bytes);
	buf_fini(&m->waiting_bytes);
	free(m);
}

int membership_main(const struct config *cfg, int sup_fd)
{
	struct membership *m = membership_new(cfg);
	if (!m)
		return 1;
	signal(SIGPIPE, SIG_IGN);

	int rc = persist_load(m);
	if (!rc)
		rc = persist_open_log(m);
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
		dispatch_make_uuid(m->self_id);
	m->start_ms = time_wall_ms();
	if (ensure_self(m))
		goto fail;
	/* Identity must be on disk before we serve anything. */
	if (persist_snapshot(m) && fresh) {
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

	persist_commit(m);
	/* Compact at shutdown: the next start loads one snapshot. */
	if (persist_snapshot(m))
		persist_flush(m);
	if (m->fetch)
		fetch_cancel(m->fetch);
	gossip_free(m->gossip);
	while (m->clients)
		ipc_conn_close(m->clients->conn, 0);
	close(m->listen_fd);
	unlink(cfg->socket_path);
	ev_loop_destroy(m->loop);
	membership_free(m);
	return 0;
fail:
	membership_free(m);
	return 1;
}
