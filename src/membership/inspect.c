/*
 * inspect — what tools/dump sees of the gossip layer: the member table and
 * a trace of every datagram, streamed to followers.
 */
#include "internal.h"

/* ---- gossip inspection (tools/dump) -------------------------------------- */

/* Streams one datagram to every follower, skipping those too far behind. */
void inspect_on_trace(void *ctx, const struct swim_trace *t)
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
	swim_addr_format(&t->peer, peer);
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
	size_t n =
	    t->n_records < TRACE_UPDATES_MAX ? t->n_records : TRACE_UPDATES_MAX;
	for (size_t i = 0; i < n; i++) {
		const struct swim_record *r = &t->records[i];
		ps__trace_update__init(&ups[i]);
		swim_id_format(&r->id, ids[i]);
		swim_addr_format(&r->addr, addrs[i]);
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

/* Fills r->members with the gossip table; frees with inspect_members_free(). */
int inspect_members_fill(struct membership *m, Ps__Reply *r, Ps__Gossip *g,
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
		swim_addr_format(&mi.addr, addr);
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
			pm->meta =
			    ps__node_meta__unpack(NULL, mi.meta_len, mi.meta);
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

void inspect_members_free(Ps__Reply *r)
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
