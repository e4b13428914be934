/*
 * filter — which traced datagrams `proxystone-dump --follow` shows:
 * --type (message types, repeatable or comma-separated) and --peer.
 */
#ifndef PROXYSTONE_DUMP_FILTER_H
#define PROXYSTONE_DUMP_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/ipc.pb-c.h"

/* Bit for datagrams the node received and dropped (--type error). */
#define FILTER_ERROR_BIT 0u
/* Longest --peer host part ("255.255.255.255" and then some). */
#define FILTER_HOST_MAX 64

struct filter {
	unsigned types; /* bit (1u << swim_msg_type) per type, 0 = all */
	bool has_peer;
	char peer_host[FILTER_HOST_MAX]; /* "" = any host */
	int peer_port;			 /* -1 = any port */
};

void filter_init(struct filter *f);
/*
 * Adds the types of a comma-separated list ("ping,ack", "ping-req", "error"
 * for dropped datagrams; '_' may stand for '-'). 0, or -EINVAL with err
 * naming the bad entry and the valid ones.
 */
int filter_add_types(struct filter *f, const char *list, char *err,
		     size_t errlen);
/*
 * Sets the peer: "ip:port", "ip" (any port) or ":port" (any host); a host
 * name is resolved to its first IPv4 address. 0 or -EINVAL with err.
 */
int filter_set_peer(struct filter *f, const char *addr, char *err,
		    size_t errlen);
/* Whether the trace passes every filter set. */
bool filter_match(const struct filter *f, const Ps__Trace *t);

#endif
