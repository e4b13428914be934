/* liveness — registry status from gossip and heartbeats; see
 * include/proxystone/liveness.h. */
#include "proxystone/liveness.h"

static Ps__NodeStatus rule_gossip(const struct liveness_view *v)
{
	switch (v->swim) {
	case SWIM_ALIVE:
		return v->serving ? PS__NODE_STATUS__NODE_ACTIVE
				  : PS__NODE_STATUS__NODE_DISABLED;
	case SWIM_SUSPECT:
		return PS__NODE_STATUS__NODE_SUSPECT;
	case SWIM_LEFT:
		return PS__NODE_STATUS__NODE_LEFT;
	case SWIM_DEAD:
		return v->heard_ago >= 0 && v->heard_ago < LIVENESS_DOUBT_WINDOW
			   ? PS__NODE_STATUS__NODE_SUSPECT
			   : PS__NODE_STATUS__NODE_INACTIVE;
	default:
		return v->current;
	}
}

static Ps__NodeStatus rule_http(const struct liveness_view *v,
				double node_timeout)
{
	switch (v->current) {
	case PS__NODE_STATUS__NODE_ACTIVE:
	case PS__NODE_STATUS__NODE_SUSPECT:
	case PS__NODE_STATUS__NODE_DISABLED:
		return v->beat_ago > node_timeout
			   ? PS__NODE_STATUS__NODE_INACTIVE
			   : v->current;
	default:
		return v->current;
	}
}

Ps__NodeStatus liveness_status(const struct liveness_view *v,
			       double node_timeout)
{
	return v->in_gossip ? rule_gossip(v) : rule_http(v, node_timeout);
}
