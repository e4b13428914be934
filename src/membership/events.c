/*
 * events — the stream observers subscribe to (the api turns it into
 * GET /api/cluster/events): registry, node and service changes, sent to
 * every subscribed client once they are durable (persist.c stages them).
 */
#include "internal.h"

/* ---- events for observers (SSE) ----------------------------------------- */

static uint64_t visible_version(const struct membership *m)
{
	return membership_is_coordinator(m) ? m->reg.version
					    : m->replica_version;
}

static void emit(struct membership *m, Ps__Event *ev)
{
	if (m->nsubscribers == 0)
		return;
	ev->has_registry_version = true;
	ev->registry_version = visible_version(m);
	if (ev->registry_version > m->version_shown)
		m->version_shown = ev->registry_version;
	/* Closing a client frees it (membership.c's close hook): take its
	 * successor first. */
	for (struct client *c = m->clients, *next; c; c = next) {
		next = c->next;
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

void events_node(struct membership *m, const char *type, const char *id,
		 struct reg_node *n)
{
	Ps__Event ev = PS__EVENT__INIT;
	ev.kind = "node";
	ev.type = (char *)type;
	ev.id = (char *)id;
	ev.node = n ? &n->pb : NULL;
	emit(m, &ev);
}

void events_service(struct membership *m)
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
void events_registry_if_changed(struct membership *m)
{
	uint64_t v = visible_version(m);
	if (v == m->event_version)
		return;
	m->event_version = v;
	Ps__Event ev = PS__EVENT__INIT;
	ev.kind = "registry";
	emit(m, &ev);
}
