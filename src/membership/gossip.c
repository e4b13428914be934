/* gossip — libev + UDP driver for swim.c; see include/proxystone/gossip.h. */
#include "proxystone/gossip.h"
#include "proxystone/log.h"
#include "proxystone/replay.h"
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
#include <uuid/uuid.h>

/* Datagrams read per readiness event before yielding to other watchers. */
#define GOSSIP_RECV_BATCH 64
/* Receive buffer: the largest UDP payload, so an oversized datagram is
 * seen whole and rejected by the decoder, not silently cut. */
#define GOSSIP_RECV_MAX 65536
/* Kernel socket buffers: a burst of a few hundred datagrams. */
#define GOSSIP_SOCKBUF (1024 * 1024)
/* Senders whose replay windows we keep: as many as SWIM has members; past
 * that the one heard from least recently is forgotten. */
#define GOSSIP_REPLAY_SENDERS SWIM_MEMBERS_MAX
/* Peers whose authentication trouble we remember, to rate-limit log lines
 * and notices: enough for every peer of a misconfigured rollout; a spray
 * of spoofed sources beyond it gets no log line and no notice (bounded
 * log rate, bounded notice rate). */
#define GOSSIP_NOTE_SLOTS 64
/* At most one log line per peer and kind per minute (operators need one
 * line, not one per datagram); at most one notice per peer per second. */
#define GOSSIP_NOTE_LOG_INTERVAL 60.0
#define GOSSIP_NOTE_SEND_INTERVAL 1.0
/* Without a keyring, the warning repeats hourly so it is seen in any log
 * window someone reads. */
#define GOSSIP_PLAINTEXT_WARN_INTERVAL 3600.0

/* Kinds of rate-limited notes, one timestamp per peer each. */
enum note_kind {
	NOTE_AUTH_FAILED,  /* log: a sealed datagram no key of ours opens */
	NOTE_PLAIN_IN,	   /* log: plaintext while we hold a ring */
	NOTE_SEALED_IN,	   /* log: sealed while we hold no ring */
	NOTE_PEER_REFUSES, /* log: the peer sent us the notice */
	NOTE_SEND,	   /* send: the notice */
	NOTE_KINDS
};

struct note_slot {
	struct swim_addr addr;
	double at[NOTE_KINDS]; /* monotonic time of the last note; 0: never */
};

struct gossip {
	struct ev_loop *loop;
	struct swim *swim;
	int fd;
	ev_io io;
	ev_timer timer;
	gossip_event_fn on_event;
	void *ud;
	size_t mtu;
	uint64_t send_errors, auth_failures, replayed, stale, late;
	struct gossip_keyring ring;
	/* Sealing: who we are, this process life, datagrams sealed. */
	struct gossip_seal_hdr self;
	double boot_at;	       /* time_mono() when self.boot was drawn */
	struct replay *replay; /* freshness of what we open; NULL: plaintext */
	struct note_slot notes[GOSSIP_NOTE_SLOTS];
	ev_timer warn_timer; /* plaintext gossip: the hourly warning */
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

/* CLOCK_MONOTONIC (time_mono) in whole milliseconds: what the replay
 * check compares; never the wall clock, whose jumps must not matter. */
static uint64_t mono_ms(double t)
{
	return t > 0 ? (uint64_t)(t * 1000) : 0;
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
			g->self.seq++;
			g->self.sent_ms = mono_ms(time_mono() - g->boot_at);
			if (gossip_seal(&g->ring, &g->self, out, len, sealed,
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

static double slot_last(const struct note_slot *n)
{
	double last = 0;
	for (int k = 0; k < NOTE_KINDS; k++)
		last = fmax(last, n->at[k]);
	return last;
}

/* True (and the slot stamped) if a note of this kind to or about `from`
 * is due: at most one per interval per peer, GOSSIP_NOTE_SLOTS peers. */
static bool note_due(struct gossip *g, const struct swim_addr *from,
		     enum note_kind kind, double interval, double now)
{
	struct note_slot *slot = NULL, *oldest = &g->notes[0];
	for (size_t i = 0; i < GOSSIP_NOTE_SLOTS && !slot; i++) {
		struct note_slot *n = &g->notes[i];
		if (n->addr.ip == from->ip && n->addr.port == from->port &&
		    slot_last(n) > 0)
			slot = n;
		else if (slot_last(n) < slot_last(oldest))
			oldest = n;
	}
	if (!slot) {
		double olast = slot_last(oldest);
		/* Full of peers noted within the log interval: stay quiet
		 * rather than let a spray of sources flood the log. */
		if (olast > 0 && now - olast < GOSSIP_NOTE_LOG_INTERVAL)
			return false;
		slot = oldest;
		memset(slot, 0, sizeof(*slot));
		slot->addr = *from;
	}
	if (slot->at[kind] > 0 && now - slot->at[kind] < interval)
		return false;
	slot->at[kind] = now;
	return true;
}

/* Tells `from` we could not authenticate what it sent: a short plaintext
 * datagram, only in answer to a longer one, at most once a second. */
static void send_notice(struct gossip *g, const struct sockaddr_in *sa,
			const struct swim_addr *from, size_t answered,
			double now)
{
	if (answered <= GOSSIP_AUTH_NOTICE_LEN ||
	    !note_due(g, from, NOTE_SEND, GOSSIP_NOTE_SEND_INTERVAL, now))
		return;
	if (sendto(g->fd, GOSSIP_AUTH_NOTICE, GOSSIP_AUTH_NOTICE_LEN,
		   MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)sa,
		   sizeof(*sa)) < 0)
		g->send_errors++;
}

static bool is_notice(const uint8_t *buf, size_t len)
{
	return len == GOSSIP_AUTH_NOTICE_LEN &&
	       !memcmp(buf, GOSSIP_AUTH_NOTICE, GOSSIP_AUTH_NOTICE_LEN);
}

/*
 * A datagram that is not fresh, authenticated gossip for us: count it,
 * explain it in the log (rate-limited) and, where the peer can learn from
 * it, answer with the notice.
 */
static void refuse(struct gossip *g, const struct sockaddr_in *sa,
		   const struct swim_addr *from, const uint8_t *buf, size_t len,
		   double now)
{
	char who[32];
	swim_addr_format(from, who);
	if (is_notice(buf, len)) {
		if (note_due(g, from, NOTE_PEER_REFUSES,
			     GOSSIP_NOTE_LOG_INTERVAL, now))
			log_warn(
			    g->ring.n
				? "gossip peer %s cannot authenticate our datagrams: keyrings differ (or it has none); check gossip_key / gossip_keyring_file on both (unauthenticated notice)"
				: "gossip peer %s cannot authenticate our datagrams: it requires a gossip keyring and we have none; set gossip_keyring_file (unauthenticated notice)",
			    who);
		return;
	}
	g->auth_failures++;
	if (g->ring.n && gossip_looks_sealed(buf, len)) {
		bool due = note_due(g, from, NOTE_AUTH_FAILED,
				    GOSSIP_NOTE_LOG_INTERVAL, now);
		if (due && buf[0] == GOSSIP_SEAL_VERSION)
			log_warn(
			    "gossip from %s failed authentication: no key in our ring opens it (different gossip key?)",
			    who);
		else if (due)
			log_warn(
			    "gossip from %s failed authentication: sealed in an older format (version %u, no complete replay protection); upgrade that node",
			    who, buf[0]);
	} else if (g->ring.n) {
		if (note_due(g, from, NOTE_PLAIN_IN, GOSSIP_NOTE_LOG_INTERVAL,
			     now))
			log_warn(
			    "gossip from %s is plaintext but this node requires authenticated gossip: dropped (give that node our keyring)",
			    who);
	} else {
		if (note_due(g, from, NOTE_SEALED_IN, GOSSIP_NOTE_LOG_INTERVAL,
			     now))
			log_warn(
			    "gossip from %s is sealed with a gossip key but this node has no keyring: dropped (set gossip_keyring_file)",
			    who);
	}
	send_notice(g, sa, from, len, now);
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
		struct swim_addr from = {ntohl(sa.sin_addr.s_addr),
					 ntohs(sa.sin_port)};
		const uint8_t *pkt = g->rbuf;
		size_t plen = (size_t)n;
		double now = time_mono();
		if (g->ring.n) {
			struct gossip_seal_hdr h;
			if (gossip_open(&g->ring, g->rbuf, (size_t)n, &h,
					g->pbuf, sizeof(g->pbuf), &plen)) {
				refuse(g, &sa, &from, g->rbuf, (size_t)n, now);
				continue;
			}
			/* Authenticated; now fresh? A replayed datagram is
			 * no evidence of anything: swim never sees it. */
			switch (replay_check(g->replay, h.sender, h.boot, h.seq,
					     h.sent_ms, mono_ms(now))) {
			case REPLAY_DUPLICATE:
				g->replayed++;
				continue;
			case REPLAY_STALE:
				g->stale++;
				continue;
			case REPLAY_LATE:
				g->late++;
				continue;
			case REPLAY_FRESH:
			case REPLAY_NEW_LIFE:
				break;
			}
			pkt = g->pbuf;
		} else if (is_notice(g->rbuf, plen) ||
			   gossip_looks_sealed(g->rbuf, plen)) {
			refuse(g, &sa, &from, g->rbuf, plen, now);
			continue;
		}
		swim_recv(g->swim, &from, pkt, plen, now);
		/* swim.h's contract: its output queue (SWIM_OUTQ_MAX) is
		 * sized for one input, so drain after each datagram. */
		drain(g);
	}
}

static void on_warn_timer(struct ev_loop *loop, ev_timer *w, int rev)
{
	(void)loop;
	(void)rev;
	struct gossip *g = w->data;
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int port = getsockname(g->fd, (struct sockaddr *)&sa, &sl) == 0
		       ? ntohs(sa.sin_port)
		       : 0;
	log_warn(
	    "gossip is UNAUTHENTICATED: anyone who can reach udp/%d can forge membership; set gossip_keyring_file",
	    port);
}

int gossip_new(struct ev_loop *loop, const struct swim_config *cfg,
	       const struct gossip_params *p, gossip_event_fn on_event,
	       void *ud, struct gossip **out, char *err, size_t errlen)
{
	uint32_t bind_ip, adv_ip;
	if (gossip_parse_ipv4(p->bind_host, &bind_ip) ||
	    gossip_parse_ipv4(p->advertise_host, &adv_ip)) {
		snprintf(
		    err, errlen,
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
			snprintf(
			    err, errlen,
			    "gossip_mtu %zu is too small with a gossip_key (needs %d)",
			    sc.mtu, SWIM_MTU_MIN + GOSSIP_SEAL_OVERHEAD);
			free(g);
			return -EINVAL;
		}
		sc.mtu -= GOSSIP_SEAL_OVERHEAD;
	}
	g->mtu = sc.mtu;
	if (g->ring.n) {
		uint8_t hk[REPLAY_HASH_KEY_LEN];
		randombytes_buf(hk, sizeof(hk));
		randombytes_buf(&g->self.boot, sizeof(g->self.boot));
		g->boot_at = time_mono();
		/* The sender id is our member UUID; an id that is not one
		 * (tests) is hashed to the same width. */
		uuid_t u;
		if (uuid_parse(p->self_id, u) == 0)
			memcpy(g->self.sender, u, GOSSIP_SENDER_LEN);
		else
			crypto_generichash(g->self.sender, GOSSIP_SENDER_LEN,
					   (const uint8_t *)p->self_id,
					   strlen(p->self_id), NULL, 0);
		int rc = replay_new(GOSSIP_REPLAY_SENDERS, hk, &g->replay);
		if (rc) {
			snprintf(err, errlen, "replay window: %s",
				 strerror(-rc));
			free(g);
			return rc;
		}
	}
	g->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (g->fd < 0) {
		int e = errno;
		snprintf(err, errlen, "socket: %s", strerror(e));
		replay_free(g->replay);
		free(g);
		return -e;
	}
	int sz = GOSSIP_SOCKBUF;
	setsockopt(g->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	setsockopt(g->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	struct swim_addr bind_addr = {bind_ip, (uint16_t)p->port};
	struct sockaddr_in sa;
	to_sockaddr(&bind_addr, &sa);
	if (bind(g->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		snprintf(err, errlen, "bind UDP %s:%d: %s", p->bind_host,
			 p->port, strerror(e));
		close(g->fd);
		replay_free(g->replay);
		free(g);
		return -e;
	}
	struct swim_addr self = {adv_ip, (uint16_t)p->port};
	int rc =
	    swim_new(&sc, p->self_id, &self, p->seed, time_mono(), &g->swim);
	if (rc) {
		snprintf(err, errlen, "swim: %s", strerror(-rc));
		close(g->fd);
		replay_free(g->replay);
		free(g);
		return rc;
	}
	ev_io_init(&g->io, on_readable, g->fd, EV_READ);
	g->io.data = g;
	ev_io_start(loop, &g->io);
	ev_timer_init(&g->timer, on_timer, 0, 0);
	g->timer.data = g;
	ev_timer_init(&g->warn_timer, on_warn_timer, 0,
		      GOSSIP_PLAINTEXT_WARN_INTERVAL);
	g->warn_timer.data = g;
	if (!g->ring.n)
		ev_timer_start(loop, &g->warn_timer);
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
	ev_timer_stop(g->loop, &g->warn_timer);
	close(g->fd);
	swim_free(g->swim);
	replay_free(g->replay);
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

uint64_t gossip_replayed(const struct gossip *g)
{
	return g->replayed;
}

uint64_t gossip_stale(const struct gossip *g)
{
	return g->stale;
}

uint64_t gossip_late(const struct gossip *g)
{
	return g->late;
}
