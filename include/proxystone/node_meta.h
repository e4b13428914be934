/*
 * node_meta — what a node tells the cluster about itself in its SWIM member
 * record (ipc.proto NodeMeta): role, url, serving mode, load, memory,
 * connections, version. Pure functions except node_meta_sample().
 */
#ifndef PROXYSTONE_NODE_META_H
#define PROXYSTONE_NODE_META_H

#include <stddef.h>
#include <stdint.h>

#include "proto/ipc.pb-c.h"
#include "proxystone/buf.h"

/*
 * Packs m into out (cap bytes, at most SWIM_META_MAX used). If it does not
 * fit, drops the optional descriptive fields (platform, version, start
 * time) before giving up. 0 and *len, or -EMSGSIZE.
 */
int node_meta_pack(Ps__NodeMeta *m, uint8_t *out, size_t cap, size_t *len);
/* The registry's metadata object for a gossiping node, like the spec's
 * register example: autoRegistered, nodeVersion, platform, startTime,
 * load, memory, connections. */
int node_meta_to_json(const Ps__NodeMeta *m, struct buf *out);
/* 1-minute load average and fraction of memory in use (0..1); -1 when the
 * system does not tell. */
void node_meta_sample(double *load, double *memory);

#endif
