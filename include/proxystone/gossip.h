/*
 * gossip — drives the pure SWIM state machine (swim.h) with a UDP socket
 * and a libev loop: datagrams and timer expiries in, datagrams and member
 * events out. Everything protocol-related lives in swim.c; this file only
 * moves bytes and time.
 *
 * With a keyring, every datagram is sealed (gossip_crypto.h) with our
 * member id, a random boot value and a sequence number; what arrives must
 * authenticate and pass the replay window (replay.h) before swim sees it.
 * Authentication trouble is logged (at most a line per peer and minute)
 * and answered with GOSSIP_AUTH_NOTICE so the peer logs it too. Without a
 * keyring, a warning says so at start and every hour.
 */
#ifndef PROXYSTONE_GOSSIP_H
#define PROXYSTONE_GOSSIP_H

#include <stddef.h>
#include <stdint.h>

#include "proxystone/gossip_crypto.h"
#include "proxystone/swim.h"

struct ev_loop;
struct gossip;

/* Called for each member change; ev is valid only during the call. */
typedef void (*gossip_event_fn)(void *ud, const struct swim_event *ev);

struct gossip_params {
	const char *bind_host; /* numeric IPv4 */
	int port;
	const char *advertise_host; /* numeric IPv4 peers reach us at */
	const char *self_id;	    /* UUID text */
	uint64_t seed;		    /* PRNG seed */
	const struct gossip_keyring *keyring; /* NULL or empty: plaintext */
};

/* 0 and *out, or -errno with a message in err. */
int gossip_new(struct ev_loop *loop, const struct swim_config *cfg,
	       const struct gossip_params *p, gossip_event_fn on_event,
	       void *ud, struct gossip **out, char *err, size_t errlen);
void gossip_free(struct gossip *g);

/* Numeric IPv4 host (or "localhost") and port. 0, -EINVAL, -EEXIST, -ENOSPC. */
int gossip_add_seed(struct gossip *g, const char *host, int port);
int gossip_set_meta(struct gossip *g, const void *meta, size_t len);
/* swim_ping() now, its datagram sent at once. */
int gossip_ping(struct gossip *g, const struct swim_id *id);
/* Starts a graceful leave; keep the loop running briefly to send it. */
void gossip_leave(struct gossip *g);
/* True when a leave has nothing left to disseminate. */
bool gossip_leave_done(struct gossip *g);

struct swim *gossip_swim(struct gossip *g);
/* Datagrams the socket failed to send (full buffer, unreachable). */
uint64_t gossip_send_errors(const struct gossip *g);
/* Datagrams dropped because no key of the ring authenticated them (or,
 * without a ring, because they were sealed). */
uint64_t gossip_auth_failures(const struct gossip *g);
/* Authenticated datagrams dropped by the replay check (replay.h): seen
 * before (replayed), older than the window (stale), or new to the window
 * but sent more than REPLAY_MAX_AGE ago (late: a replay of what the
 * sender addressed to others). */
uint64_t gossip_replayed(const struct gossip *g);
uint64_t gossip_stale(const struct gossip *g);
uint64_t gossip_late(const struct gossip *g);

/* Parses "a.b.c.d" or "localhost" into host-order IPv4. 0 or -EINVAL. */
int gossip_parse_ipv4(const char *host, uint32_t *out);

#endif
