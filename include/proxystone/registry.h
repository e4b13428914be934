/*
 * registry — the node table the coordinator is the authority for.
 *
 * Pure data structure: no I/O, no clock reads (time comes in as
 * arguments). Entries keep insertion order (createdAt) for listings and a
 * hash index by id for O(1) lookups under heartbeat load. Each entry holds
 * its protobuf form (Ps__Node) so listings and snapshots pack it without
 * copying; all strings inside are owned by the registry.
 *
 * Every change to membership, status or content bumps `version`.
 */
#ifndef PROXYSTONE_REGISTRY_H
#define PROXYSTONE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/ipc.pb-c.h"
#include "proxystone/node_schema.h"

/* Entries in one registry: 10x the largest cluster we test (10,000). */
#define REGISTRY_NODES_MAX 100000
struct reg_node {
	Ps__Node pb;
	double last_heard;	/* monotonic seconds of the last sign of life */
	struct reg_node *hnext; /* hash chain */
};

struct registry {
	struct reg_node **nodes; /* insertion order */
	size_t n, cap;
	struct reg_node **buckets;
	size_t nbuckets;
	uint64_t version;
	size_t metadata_max; /* bound on a node's metadata JSON text */
};

/* Refusals (-EINVAL) write "field: reason" into err, field being the
 * request's JSON name (url, metadata, ...). registry_error_field() gives
 * the field back: true and `field` set, or false for another message. */
#define REGISTRY_FIELD_MAX 32
bool registry_error_field(const char *err, char field[REGISTRY_FIELD_MAX]);

void registry_init(struct registry *r, size_t metadata_max);
/* Nodes holding more metadata than metadata_max. O(n): for start-up. */
size_t registry_count_over_limit(const struct registry *r);
void registry_fini(struct registry *r);
struct reg_node *registry_find(const struct registry *r, const char *id);

/*
 * Validates and applies a registration. A known id is updated in place
 * (createdAt kept), an unknown one is added. `id` must not be NULL: when
 * the client gave none (req->id NULL) the caller makes one, so this stays
 * free of libuuid and deterministic.
 * Returns 0 (*out, *created set), -EINVAL (err: "field: reason"),
 * -ENOSPC (table full).
 */
int registry_register(struct registry *r, const Ps__RegisterReq *req,
		      const char *id, const char *default_cluster,
		      int64_t now_ms, double now_mono, struct reg_node **out,
		      bool *created, char *err, size_t errlen);
/* -ENOENT unknown id; -EINVAL bad metadata (err says why). */
int registry_heartbeat(struct registry *r, const char *id, bool has_status,
		       Ps__NodeStatus status, const char *metadata_json,
		       int64_t now_ms, double now_mono, struct reg_node **out,
		       char *err, size_t errlen);
/* Removes and frees. -ENOENT unknown id. */
int registry_remove(struct registry *r, const char *id);
/* Sets a status; bumps the version only if it changed. */
void registry_set_status(struct registry *r, struct reg_node *n,
			 Ps__NodeStatus status);
/* Adds a copy of a node from a snapshot, log or replica: validated as a
 * registration, except that metadata over today's metadata_max (stored
 * when the bound was larger) is kept, never dropped (see
 * registry_count_over_limit()). -EINVAL duplicate or bad entry. */
int registry_load_node(struct registry *r, const Ps__Node *pb, double now_mono);

#endif
