/*
 * liveness — the one rule that turns what the coordinator knows of a node
 * into its registry status. Pure: a function of a view of the node and of
 * time, no state, no clock.
 *
 * Nodes in our gossip table (rule G). The failure detector (swim.c) judges
 * them; its verdict is the status, with one correction:
 *   ALIVE    active, or disabled when its record says it stopped serving
 *   SUSPECT  suspect
 *   LEFT     left
 *   DEAD     suspect while a datagram from the member itself arrived less
 *            than LIVENESS_DOUBT_WINDOW ago, else inactive. A detector
 *            that declared a member dead a moment after hearing from it
 *            (one side of a healing partition, a late refutation) is
 *            doubted, for that window only: the member refutes, or the
 *            window passes and the verdict stands.
 *
 * Nodes not in our gossip table (rule H): HTTP-only nodes (the original
 * Proxy Stone's workers), nodes registered by hand, gossip members long
 * forgotten. Their heartbeats set their status; one that shows no sign of
 * life for node_timeout becomes inactive (from active, suspect or
 * disabled). inactive and left stay as they are until a heartbeat or a
 * registration changes them.
 *
 * Callers: the coordinator evaluates rule G on every gossip event about a
 * registered member and, for DEAD members (the only verdict that time alone
 * changes), on every scan; rule H on every scan (membership.c).
 */
#ifndef PROXYSTONE_LIVENESS_H
#define PROXYSTONE_LIVENESS_H

#include <stdbool.h>

#include "proxystone/swim.h"
#include "proto/ipc.pb-c.h"

/* A death declared within this long of a datagram from the member itself
 * is doubted (rule G). One second: several probe periods at the product
 * defaults, far less than any real failure takes to be detected. */
#define LIVENESS_DOUBT_WINDOW 1.0

struct liveness_view {
	bool in_gossip;	       /* rule G if true, rule H if false */
	enum swim_status swim; /* G: its status in our gossip table */
	bool serving;	       /* G: its record's serving flag */
	double
	    heard_ago; /* G: seconds since its own last datagram, < 0: never */
	double
	    beat_ago; /* H: seconds since its last heartbeat or registration */
	Ps__NodeStatus current; /* its registry status now */
};

Ps__NodeStatus liveness_status(const struct liveness_view *v,
			       double node_timeout);

#endif
