/*
 * replica — a worker's copy of the coordinator's registry, fetched over
 * HTTP when the coordinator's gossip record announces a newer version and
 * every REPLICA_SYNC_INTERVAL as anti-entropy.
 */
#include "internal.h"

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
	membership_self_refresh(m);
	policy_refresh(m);
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
	Ps__Reply *r = status == 200
			   ? ps__reply__unpack(NULL, len, (const uint8_t *)body)
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

void replica_fetch(struct membership *m)
{
	if (membership_is_coordinator(m) || m->fetch || m->leaving)
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
	snprintf(host, sizeof(host), "%.*s", (int)(colon - m->cfg->cluster_ip),
		 m->cfg->cluster_ip);
	m->fetch_at = now;
	m->fetch = fetch_get_auth(
	    m->loop, host, atoi(colon + 1), "/api/cluster/replica",
	    m->cfg->api_token[0] ? m->cfg->api_token : NULL,
	    REPLICA_FETCH_TIMEOUT, IPC_FRAME_MAX, on_replica_fetched, m);
	if (!m->fetch)
		m->n_replica_failures++;
}

void replica_on_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct membership *m = w->data;
	ev_timer_set(w, REPLICA_SYNC_INTERVAL, REPLICA_SYNC_INTERVAL);
	ev_timer_again(m->loop, w);
	replica_fetch(m);
}
