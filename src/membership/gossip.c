/* gossip — libev + UDP driver for swim.c; see include/proxystone/gossip.h. */
#include "proxystone/gossip.h"
#include "proxystone/timeutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <ev.h>
#include <sodium.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Datagrams read per readiness event before yielding to other watchers. */
#define GOSSIP_RECV_BATCH 64
/* Receive buffer: the largest UDP payload, so an oversized datagram is
 * seen whole and rejected by the decoder, not silently cut. */
#define GOSSIP_RECV_MAX 65536
/* Kernel socket buffers: a burst of a few hundred datagrams. */
#define GOSSIP_SOCKBUF (1024 * 1024)

struct gossip {
	struct ev_loop *loop;
	struct swim *swim;
	int fd;
	ev_io io;
	ev_timer timer;
	gossip_event_fn on_event;
	void *ud;
	size_t mtu;
	uint64_t send_errors, auth_failures;
	struct gossip_keyring ring;
	uint8_t rbuf[GOSSIP_RECV_MAX];
	uint8_t pbuf[GOSSIP_RECV_MAX]; /* opened (decrypted) datagram */
};

int gossip_parse_ipv4(const char *host, uint32_t *out)
{
	struct in_addr a;
	if (!strcmp(host, "localhost"))
		host = "127.0.0.1";
	if (inet_pton(AF_INET, host, &a) != 1)
		return -EINVAL;
	*out = ntohl(a.s_addr);
	return 0;
}

static void to_sockaddr(const struct swim_addr *a, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(a->ip);
	sa->sin_port = htons(a->port);
}

/* Sends what swim queued, hands out its events, re-arms the timer. */
static void drain(struct gossip *g)
{
	uint8_t out[SWIM_MTU_MAX];
	struct swim_addr to;
	size_t len = sizeof(out);
	uint8_t sealed[SWIM_MTU_MAX + GOSSIP_SEAL_OVERHEAD];
	while (swim_pop_packet(g->swim, &to, out, &len)) {
		struct sockaddr_in sa;
		to_sockaddr(&to, &sa);
		const uint8_t *wire = out;
		size_t wlen = len;
		if (g->ring.n) {
			if (gossip_seal(&g->ring, out, len, sealed,
					sizeof(sealed), &wlen)) {
				g->send_errors++;
				len = sizeof(out);
				continue;
			}
			wire = sealed;
		}
		if (sendto(g->fd, wire, wlen, MSG_DONTWAIT | MSG_NOSIGNAL,
			   (struct sockaddr *)&sa, sizeof(sa)) < 0)
			g->send_errors++;
		len = sizeof(out);
	}
	struct swim_event ev;
	while (swim_pop_event(g->swim, &ev))
		g->on_event(g->ud, &ev);
	ev_timer_stop(g->loop, &g->timer);
	double wait = swim_next_deadline(g->swim) - time_mono();
	if (!isfinite(wait))
		return; /* nothing scheduled (after a leave): no timer */
	if (wait < 0)
		wait = 0;
	ev_timer_set(&g->timer, wait, 0);
	ev_timer_start(g->loop, &g->timer);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct gossip *g = w->data;
	swim_tick(g->swim, time_mono());
	drain(g);
}

static void on_readable(struct ev_loop *loop, ev_io *w, int rev)
{
	(void)loop;
	(void)rev;
	struct gossip *g = w->data;
	for (int i = 0; i < GOSSIP_RECV_BATCH; i++) {
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);
		ssize_t n = recvfrom(g->fd, g->rbuf, sizeof(g->rbuf),
				     MSG_DONTWAIT, (struct sockaddr *)&sa, &sl);
		if (n < 0)
			break;
		if (sa.sin_family != AF_INET)
			continue;
		struct swim_addr from = { ntohl(sa.sin_addr.s_addr),
					  ntohs(sa.sin_port) };
		const uint8_t *pkt = g->rbuf;
		size_t plen = (size_t)n;
		if (g->ring.n) {
			if (gossip_open(&g->ring, g->rbuf, (size_t)n, g->pbuf,
					sizeof(g->pbuf), &plen)) {
				g->auth_failures++;
				continue;
			}
			pkt = g->pbuf;
		}
		swim_recv(g->swim, &from, pkt, plen, time_mono());
	}
	drain(g);
}

int gossip_new(struct ev_loop *loop, const struct swim_config *cfg,
	       const struct gossip_params *p, gossip_event_fn on_event,
	       void *ud, struct gossip **out, char *err, size_t errlen)
{
	uint32_t bind_ip, adv_ip;
	if (gossip_parse_ipv4(p->bind_host, &bind_ip) ||
	    gossip_parse_ipv4(p->advertise_host, &adv_ip)) {
		snprintf(err, errlen,
			 "gossip needs numeric IPv4 addresses (bind %s, advertise %s)",
			 p->bind_host, p->advertise_host);
		return -EINVAL;
	}
	struct gossip *g = calloc(1, sizeof(*g));
	if (!g) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	g->loop = loop;
	g->on_event = on_event;
	g->ud = ud;
	struct swim_config sc = *cfg;
	if (p->keyring && p->keyring->n) {
		g->ring = *p->keyring;
		/* Sealing adds bytes: SWIM fills what is left of the MTU. */
		if (sc.mtu < SWIM_MTU_MIN + GOSSIP_SEAL_OVERHEAD) {
			snprintf(err, errlen,
				 "gossip_mtu %zu is too small with a gossip_key (needs %d)",
				 sc.mtu, SWIM_MTU_MIN + GOSSIP_SEAL_OVERHEAD);
			free(g);
			return -EINVAL;
		}
		sc.mtu -= GOSSIP_SEAL_OVERHEAD;
	}
	g->mtu = sc.mtu;
	g->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (g->fd < 0) {
		int e = errno;
		snprintf(err, errlen, "socket: %s", strerror(e));
		free(g);
		return -e;
	}
	int sz = GOSSIP_SOCKBUF;
	setsockopt(g->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	setsockopt(g->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	struct swim_addr bind_addr = { bind_ip, (uint16_t)p->port };
	struct sockaddr_in sa;
	to_sockaddr(&bind_addr, &sa);
	if (bind(g->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		snprintf(err, errlen, "bind UDP %s:%d: %s", p->bind_host,
			 p->port, strerror(e));
		close(g->fd);
		free(g);
		return -e;
	}
	struct swim_addr self = { adv_ip, (uint16_t)p->port };
	int rc = swim_new(&sc, p->self_id, &self, p->seed, time_mono(),
			  &g->swim);
	if (rc) {
		snprintf(err, errlen, "swim: %s", strerror(-rc));
		close(g->fd);
		free(g);
		return rc;
	}
	ev_io_init(&g->io, on_readable, g->fd, EV_READ);
	g->io.data = g;
	ev_io_start(loop, &g->io);
	ev_timer_init(&g->timer, on_timer, 0, 0);
	g->timer.data = g;
	drain(g);
	*out = g;
	return 0;
}

void gossip_free(struct gossip *g)
{
	if (!g)
		return;
	sodium_memzero(&g->ring, sizeof(g->ring));
	ev_io_stop(g->loop, &g->io);
	ev_timer_stop(g->loop, &g->timer);
	close(g->fd);
	swim_free(g->swim);
	free(g);
}

int gossip_add_seed(struct gossip *g, const char *host, int port)
{
	struct swim_addr a;
	if (gossip_parse_ipv4(host, &a.ip) || port <= 0 || port > 65535)
		return -EINVAL;
	a.port = (uint16_t)port;
	int rc = swim_add_seed(g->swim, &a, time_mono());
	drain(g);
	return rc;
}

int gossip_set_meta(struct gossip *g, const void *meta, size_t len)
{
	int rc = swim_set_meta(g->swim, meta, len, time_mono());
	drain(g);
	return rc;
}

int gossip_ping(struct gossip *g, const struct swim_id *id)
{
	int rc = swim_ping(g->swim, id, time_mono());
	drain(g);
	return rc;
}

void gossip_leave(struct gossip *g)
{
	swim_leave(g->swim, time_mono());
	drain(g);
}

bool gossip_leave_done(struct gossip *g)
{
	struct swim_stats st;
	swim_stats_get(g->swim, &st);
	/* After the leave we count as left ourselves: alive + suspect are
	 * the others, and with none there is nobody to tell. */
	return st.broadcasts == 0 || st.alive + st.suspect == 0;
}

struct swim *gossip_swim(struct gossip *g)
{
	return g->swim;
}

uint64_t gossip_send_errors(const struct gossip *g)
{
	return g->send_errors;
}

uint64_t gossip_auth_failures(const struct gossip *g)
{
	return g->auth_failures;
}
