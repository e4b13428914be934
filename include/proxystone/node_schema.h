/*
 * node_schema — what a node record may hold, for every process that reads
 * or writes one: the size bounds, the id alphabet and the status names.
 * The api validates requests against it before they cross the socket; the
 * registry (registry.h) validates again as the authority. Pure functions.
 */
#ifndef PROXYSTONE_NODE_SCHEMA_H
#define PROXYSTONE_NODE_SCHEMA_H

#include <stdbool.h>

#include "proto/ipc.pb-c.h"

/* Client-chosen ids: UUIDs are 36 bytes; leave room for readable names. */
#define NODE_ID_MAX 64
/* A URL a human would type; longer is a mistake or an attack. */
#define NODE_URL_MAX 512
#define NODE_ROLE_MAX 32
/* Tags and capabilities are labels, not data stores. */
#define NODE_TAGS_MAX 64
#define NODE_TAG_LEN_MAX 128
#define NODE_CAPS_MAX 64

/* "active", "suspect", ...; "unknown" for a value outside the enum. */
const char *node_status_name(Ps__NodeStatus s);
/* 0 and *out set, or -EINVAL for an unknown name. */
int node_status_parse(const char *name, Ps__NodeStatus *out);
/* Ids: 1..NODE_ID_MAX of [A-Za-z0-9._:-]. */
bool node_id_valid(const char *id);

#endif
