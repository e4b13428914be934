/*
 * stats — the membership process's counters and gauges, as the api renders
 * them on /metrics (Prometheus text). One row per series: name, labels,
 * help, value.
 */
#include "internal.h"

/* Fills r->counters (freed by stats_free). 0 or -ENOMEM. */
int stats_fill(struct membership *m, Ps__Reply *r)
{
	struct swim_stats gs;
	memset(&gs, 0, sizeof(gs));
	if (m->gossip)
		swim_stats_get(gossip_swim(m->gossip), &gs);
	struct admit_stats as;
	memset(&as, 0, sizeof(as));
	if (m->admit_on)
		admit_stats_get(&m->admit, &as);
	/* One series a line: clang-format would spread each over four. */
	/* clang-format off */
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
		{ "proxystone_writes_undone_total", NULL, "Client writes undone because their group commit failed (answered 503)", (double)m->n_undone },
		{ "proxystone_reads_waited_total", NULL, "Registry reads that waited for a group commit", (double)m->n_reads_waited },
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
	/* clang-format on */
	size_t k = sizeof(cs) / sizeof(cs[0]);
	Ps__Counter *counters = calloc(k, sizeof(*counters));
	Ps__Counter **counterp = calloc(k, sizeof(*counterp));
	if (!counters || !counterp) {
		free(counters);
		free(counterp);
		return -ENOMEM;
	}
	for (size_t i = 0; i < k; i++) {
		ps__counter__init(&counters[i]);
		counters[i].name = (char *)cs[i].name;
		counters[i].labels = (char *)cs[i].labels;
		counters[i].help = (char *)cs[i].help;
		counters[i].value = cs[i].v;
		counterp[i] = &counters[i];
	}
	r->counters = counterp;
	r->n_counters = k;
	return 0;
}

void stats_free(Ps__Reply *r)
{
	if (!r->n_counters)
		return;
	free(
	    r->counters[0]); /* the array of counters the pointers point into */
	free(r->counters);
	r->counters = NULL;
	r->n_counters = 0;
}
