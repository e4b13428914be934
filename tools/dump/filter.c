/*
 * filter — --type and --peer of proxystone-dump --follow (see filter.h).
 */
#include "filter.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxystone/swim_proto.h"

/* Longest --type list we take apart; far more than all names together. */
#define TYPE_LIST_MAX 256

void filter_init(struct filter *f)
{
	memset(f, 0, sizeof(*f));
	f->peer_port = -1;
}

/* Bit of a type name, or -1. */
static int type_bit(const char *name)
{
	if (strcmp(name, "error") == 0)
		return (int)FILTER_ERROR_BIT;
	for (int t = SWIM_MSG_PING; t <= SWIM_MSG_TYPE_MAX; t++)
		if (strcmp(name, swim_msg_type_name((enum swim_msg_type)t)) ==
		    0)
			return t;
	return -1;
}

int filter_add_types(struct filter *f, const char *list, char *err,
		     size_t errlen)
{
	char copy[TYPE_LIST_MAX], *save = NULL, *tok;

	if (strlen(list) >= sizeof(copy)) {
		snprintf(err, errlen, "--type: list longer than %d bytes",
			 TYPE_LIST_MAX - 1);
		return -EINVAL;
	}
	strcpy(copy, list);
	for (char *p = copy; *p; p++)
		*p = *p == '_' ? '-' : (char)tolower((unsigned char)*p);
	if (copy[0] == '\0' || copy[strlen(copy) - 1] == ',' ||
	    copy[0] == ',' || strstr(copy, ",,")) {
		snprintf(err, errlen, "--type '%s': empty entry", list);
		return -EINVAL;
	}
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		int bit;

		while (*tok == ' ')
			tok++;
		for (size_t n = strlen(tok); n && tok[n - 1] == ' '; n--)
			tok[n - 1] = '\0';
		bit = type_bit(tok);
		if (bit < 0) {
			snprintf(err, errlen,
				 "--type: unknown message type '%s' (known: "
				 "ping, ack, ping-req, nack, gossip, sync-req, "
				 "sync-rsp, error)",
				 tok);
			return -EINVAL;
		}
		f->types |= 1u << bit;
	}
	return 0;
}

static int parse_port(const char *s, int *port)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > 65535)
		return -EINVAL;
	*port = (int)v;
	return 0;
}

static int resolve_host(const char *host, char out[FILTER_HOST_MAX])
{
	struct in_addr a;
	struct addrinfo hints = {.ai_family = AF_INET}, *res = NULL;

	if (inet_pton(AF_INET, host, &a) == 1) {
		inet_ntop(AF_INET, &a, out, FILTER_HOST_MAX);
		return 0;
	}
	if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
		return -EINVAL;
	inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, out,
		  FILTER_HOST_MAX);
	freeaddrinfo(res);
	return 0;
}

int filter_set_peer(struct filter *f, const char *addr, char *err,
		    size_t errlen)
{
	char host[FILTER_HOST_MAX];
	const char *colon = strrchr(addr, ':');
	size_t hlen = colon ? (size_t)(colon - addr) : strlen(addr);

	if (hlen >= sizeof(host)) {
		snprintf(err, errlen, "--peer '%s': host part too long", addr);
		return -EINVAL;
	}
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	f->peer_port = -1;
	f->peer_host[0] = '\0';
	if (colon && parse_port(colon + 1, &f->peer_port) != 0) {
		snprintf(err, errlen,
			 "--peer '%s': the port must be a number in 1..65535",
			 addr);
		return -EINVAL;
	}
	if (hlen == 0 && !colon) {
		snprintf(err, errlen,
			 "--peer: give ip:port, ip, or :port (got nothing)");
		return -EINVAL;
	}
	if (hlen && resolve_host(host, f->peer_host) != 0) {
		snprintf(err, errlen,
			 "--peer '%s': '%s' is neither an IPv4 address nor a "
			 "host name that resolves to one",
			 addr, host);
		return -EINVAL;
	}
	f->has_peer = true;
	return 0;
}

static bool peer_match(const struct filter *f, const char *peer)
{
	const char *colon;
	int port;

	if (peer == NULL)
		return false;
	colon = strrchr(peer, ':');
	if (f->peer_host[0]) {
		size_t hlen = colon ? (size_t)(colon - peer) : strlen(peer);

		if (hlen != strlen(f->peer_host) ||
		    memcmp(peer, f->peer_host, hlen) != 0)
			return false;
	}
	if (f->peer_port >= 0) {
		if (!colon || parse_port(colon + 1, &port) != 0 ||
		    port != f->peer_port)
			return false;
	}
	return true;
}

bool filter_match(const struct filter *f, const Ps__Trace *t)
{
	if (f->types) {
		unsigned bits = 0;
		int bit = t->type ? type_bit(t->type) : -1;

		if (bit > 0)
			bits |= 1u << bit;
		if (t->has_error || t->error_text)
			bits |= 1u << FILTER_ERROR_BIT;
		if ((bits & f->types) == 0)
			return false;
	}
	return !f->has_peer || peer_match(f, t->peer);
}
