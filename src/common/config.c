/* config — `key = value` files plus flag overrides; see
 * include/proxystone/config.h. */
#include "proxystone/config.h"
#include "proxystone/http.h"
#include "proxystone/log.h"
#include "proxystone/swim.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* Ports start at 1; 0 would mean "any port", which we accept only for tests. */
#define PORT_MAX 65535
/* Bounds on request sizes an operator may configure: generous, never unbounded.
 */
#define BODY_MAX_LIMIT (16 * 1024 * 1024)
#define CONN_MAX_LIMIT 65536

/*
 * The product's gossip tuning: memberlist's LAN configuration
 * (swim_config_defaults()) with the values below in its place. The one
 * source of them: config_defaults() copies them into struct config, the
 * simulator tests (tests/lib/sim.c) and the benchmarks (sim_scale
 * --print-defaults) call this.
 *
 * Faster than memberlist's LAN defaults (1 s, 0.5 s, 3, 4), which take
 * 5-10 s to declare a crash: a probe every 0.3 s with a timeout still
 * ~1000x a LAN round trip. A failed direct ping is retried alongside the
 * indirect probes (swim.c), and 5 of those instead of 3: at 10% loss a
 * live member then fails a probe with p ~ 0.19 * 0.19 * 0.34^5 = 1.7e-4
 * instead of 0.19 * 0.34^3 = 7.7e-3 (simulator, 1,000 members, an hour:
 * 1.7e-4 measured, no false death). That buys a shorter suspicion
 * (multiplier 3, memberlist 4): a crash is inactive in a median 2.1 s at
 * 50 real nodes. Figures: BENCHMARKS.md.
 *
 * Only fields struct config carries (probe_interval, probe_timeout,
 * indirect_checks, suspicion_mult, mtu) may differ from
 * swim_config_defaults(): membership.c builds its swim_config from
 * swim_config_defaults() and those fields.
 */
void config_gossip_defaults(struct swim_config *out)
{
	swim_config_defaults(out);
	out->probe_interval = 0.3;
	out->probe_timeout = 0.15;
	out->indirect_checks = 5;
	out->suspicion_mult = 3;
	/* Ethernet's 1500 less IP/UDP headers and tunnel headroom. */
	out->mtu = 1400;
}

/* struct config's gossip tunables from config_gossip_defaults(). */
static void config_gossip_apply(struct config *c)
{
	struct swim_config sc;

	config_gossip_defaults(&sc);
	c->probe_interval = sc.probe_interval;
	c->probe_timeout = sc.probe_timeout;
	c->indirect_checks = (int)sc.indirect_checks;
	c->suspicion_mult = sc.suspicion_mult;
	c->gossip_mtu = (int)sc.mtu;
}

void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->role = ROLE_COORDINATOR;
	strcpy(c->cluster_id, "default-cluster");
	strcpy(c->api_host, "127.0.0.1");
	c->api_port = 4401;
	c->gossip_host[0] = '\0'; /* derived: api_host */
	c->gossip_port = -1;	  /* derived: api_port + 1000; 0 = off */
	config_gossip_apply(c);
	c->gossip_register_after = CONFIG_GOSSIP_REGISTER_AFTER_DEFAULT;
	c->gossip_register_rate = CONFIG_GOSSIP_REGISTER_RATE_DEFAULT;
	c->ui_port = 0;
	/* The spec's UI: "Scans ports 4401-4405 for available backends". */
	strcpy(c->ui_backends, "127.0.0.1:4401-4405");
	strcpy(c->data_dir, "var/proxystone");
	/* The original project's defaults (spec's /cluster/status example). */
	c->heartbeat_interval = 30;
	c->node_timeout = 60;
	c->cluster_enabled = true;
	c->body_max = 64 * 1024;
	c->metadata_max = 16 * 1024;
	c->conn_max = HTTP_CONN_MAX_DEFAULT;
	c->client_conn_max = HTTP_CLIENT_CONN_MAX_DEFAULT;
	c->idle_timeout = 30;
	/* Membership answers in microseconds; 2 s means it is stuck, not slow.
	 */
	c->ipc_timeout = 2;
	c->log_level = LOG_INFO;
}

const char *config_role_name(enum node_role role)
{
	return role == ROLE_WORKER ? "worker" : "coordinator";
}

static int fail(char *err, size_t errlen, const char *where, const char *key,
		const char *fmt, const char *value)
{
	char what[160];
	snprintf(what, sizeof(what), fmt, value);
	snprintf(err, errlen, "%s: %s: %s", where, key, what);
	return -EINVAL;
}

static int parse_long(const char *v, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi)
		return -EINVAL;
	*out = n;
	return 0;
}

static int parse_seconds(const char *v, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(d) || d < lo || d > hi)
		return -EINVAL;
	*out = d;
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1") ||
	    !strcmp(v, "on")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0") ||
	    !strcmp(v, "off")) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

static int copy_str(char *dst, size_t cap, const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n >= cap)
		return -EINVAL;
	memcpy(dst, v, n + 1);
	return 0;
}

/* "host:port" with a non-empty host and a valid port. */
static int check_hostport(const char *v)
{
	const char *colon = strrchr(v, ':');
	long port;
	if (!colon || colon == v || parse_long(colon + 1, 1, PORT_MAX, &port))
		return -EINVAL;
	return 0;
}

static bool cluster_id_ok(const char *v)
{
	if (!*v)
		return false;
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
			return false;
	return true;
}

/* "h:p" or "h:p1-p2", comma-separated, at most UI_BACKEND_PORTS_MAX ports. */
#define UI_BACKEND_PORTS_MAX 64
static bool ui_backends_ok(const char *v)
{
	char copy[CONFIG_STR_MAX];
	snprintf(copy, sizeof(copy), "%s", v);
	long total = 0;
	for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		char *colon = strrchr(tok, ':');
		if (!colon || colon == tok)
			return false;
		for (char *p = tok; p < colon; p++)
			if (!isalnum((unsigned char)*p) && !strchr(".-[]", *p))
				return false;
		char *dash = strchr(colon + 1, '-');
		long lo, hi;
		if (dash) {
			*dash = '\0';
			if (parse_long(colon + 1, 1, PORT_MAX, &lo) ||
			    parse_long(dash + 1, 1, PORT_MAX, &hi) || hi < lo)
				return false;
		} else {
			if (parse_long(colon + 1, 1, PORT_MAX, &lo))
				return false;
			hi = lo;
		}
		total += hi - lo + 1;
	}
	return total > 0 && total <= UI_BACKEND_PORTS_MAX;
}

int config_set(struct config *c, const char *key, const char *v,
	       const char *where, char *err, size_t errlen)
{
	long n;
	double d;
	bool b;

	if (!strcmp(key, "role")) {
		if (!strcmp(v, "coordinator"))
			c->role = ROLE_COORDINATOR;
		else if (!strcmp(v, "worker"))
			c->role = ROLE_WORKER;
		else
			return fail(err, errlen, where, key,
				    "'%s' is not coordinator or worker", v);
	} else if (!strcmp(key, "cluster_id")) {
		if (strlen(v) >= sizeof(c->cluster_id) || !cluster_id_ok(v))
			return fail(err, errlen, where, key,
				    "'%s' must be 1-63 of [A-Za-z0-9._-]", v);
		strcpy(c->cluster_id, v);
	} else if (!strcmp(key, "api_host")) {
		if (copy_str(c->api_host, sizeof(c->api_host), v))
			return fail(err, errlen, where, key, "bad host '%s'",
				    v);
	} else if (!strcmp(key, "api_port") || !strcmp(key, "port")) {
		if (parse_long(v, 0, PORT_MAX, &n))
			return fail(err, errlen, where, key,
				    "'%s' is not a port (0-65535)", v);
		c->api_port = (int)n;
	} else if (!strcmp(key, "advertise_host")) {
		if (copy_str(c->advertise_host, sizeof(c->advertise_host), v))
			return fail(err, errlen, where, key, "bad host '%s'",
				    v);
	} else if (!strcmp(key, "cluster_ip")) {
		if (!strcmp(v, "none") || !strcmp(v, "")) {
			c->cluster_ip[0] = '\0';
		} else if (strlen(v) >= sizeof(c->cluster_ip) ||
			   check_hostport(v)) {
			return fail(err, errlen, where, key,
				    "'%s' is not host:port", v);
		} else {
			strcpy(c->cluster_ip, v);
		}
	} else if (!strcmp(key, "gossip_host")) {
		if (copy_str(c->gossip_host, sizeof(c->gossip_host), v))
			return fail(err, errlen, where, key, "bad host '%s'",
				    v);
	} else if (!strcmp(key, "gossip_port")) {
		if (parse_long(v, 0, PORT_MAX, &n))
			return fail(err, errlen, where, key,
				    "'%s' is not a port (0-65535)", v);
		c->gossip_port = (int)n;
	} else if (!strcmp(key, "coordinator_gossip")) {
		if (strlen(v) >= sizeof(c->coordinator_gossip) ||
		    check_hostport(v))
			return fail(err, errlen, where, key,
				    "'%s' is not host:port", v);
		strcpy(c->coordinator_gossip, v);
	} else if (!strcmp(key, "probe_interval")) {
		if (parse_seconds(v, 0.01, 60, &d))
			return fail(err, errlen, where, key,
				    "'%s' is not seconds in 0.01-60", v);
		c->probe_interval = d;
	} else if (!strcmp(key, "probe_timeout")) {
		if (parse_seconds(v, 0.005, 60, &d))
			return fail(err, errlen, where, key,
				    "'%s' is not seconds in 0.005-60", v);
		c->probe_timeout = d;
	} else if (!strcmp(key, "indirect_checks")) {
		if (parse_long(v, 0, 8, &n))
			return fail(err, errlen, where, key,
				    "'%s' is not a count in 0-8", v);
		c->indirect_checks = (int)n;
	} else if (!strcmp(key, "suspicion_mult")) {
		if (parse_seconds(v, 1, 100, &d))
			return fail(err, errlen, where, key,
				    "'%s' is not a number in 1-100", v);
		c->suspicion_mult = d;
	} else if (!strcmp(key, "gossip_mtu")) {
		if (parse_long(v, 548, 65507, &n))
			return fail(err, errlen, where, key,
				    "'%s' is not bytes in 548-65507", v);
		c->gossip_mtu = (int)n;
	} else if (!strcmp(key, "gossip_register_after")) {
		if (parse_seconds(v, 0, 3600, &d))
			return fail(err, errlen, where, key,
				    "'%s' is not seconds in 0-3600", v);
		c->gossip_register_after = d;
	} else if (!strcmp(key, "gossip_register_rate")) {
		if (parse_seconds(v, 0.01, 100000, &d))
			return fail(
			    err, errlen, where, key,
			    "'%s' is not a rate in 0.01-100000 per second", v);
		c->gossip_register_rate = d;
	} else if (!strcmp(key, "ui_port")) {
		if (parse_long(v, 0, PORT_MAX, &n))
			return fail(err, errlen, where, key,
				    "'%s' is not a port (0 = off)", v);
		c->ui_port = (int)n;
	} else if (!strcmp(key, "ui_backends")) {
		if (strlen(v) >= sizeof(c->ui_backends) || !ui_backends_ok(v))
			return fail(
			    err, errlen, where, key,
			    "'%s' is not a list of host:port or host:port-port",
			    v);
		strcpy(c->ui_backends, v);
	} else if (!strcmp(key, "data_dir")) {
		if (copy_str(c->data_dir, sizeof(c->data_dir), v))
			return fail(err, errlen, where, key,
				    "bad or too long path '%s'", v);
	} else if (!strcmp(key, "socket_path")) {
		if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path) ||
		    copy_str(c->socket_path, sizeof(c->socket_path), v))
			return fail(err, errlen, where, key,
				    "'%s' is empty or longer than 107 bytes",
				    v);
	} else if (!strcmp(key, "heartbeat_interval")) {
		if (parse_seconds(v, 0.1, 86400, &d))
			return fail(err, errlen, where, key,
				    "'%s' is not seconds in 0.1-86400", v);
		c->heartbeat_interval = d;
	} else if (!strcmp(key, "node_timeout")) {
		if (parse_seconds(v, 0.1, 86400 * 30, &d))
			return fail(err, errlen, where, key,
				    "'%s' is not seconds in 0.1-2592000", v);
		c->node_timeout = d;
	} else if (!strcmp(key, "cluster_enabled")) {
		if (parse_bool(v, &b))
			return fail(err, errlen, where, key,
				    "'%s' is not true or false", v);
		c->cluster_enabled = b;
	} else if (!strcmp(key, "max_body_bytes")) {
		if (parse_long(v, 1024, BODY_MAX_LIMIT, &n))
			return fail(err, errlen, where, key,
				    "'%s' is not bytes in 1024-16777216", v);
		c->body_max = (size_t)n;
	} else if (!strcmp(key, "max_metadata_bytes")) {
		if (parse_long(v, 64, BODY_MAX_LIMIT, &n))
			return fail(err, errlen, where, key,
				    "'%s' is not bytes in 64-16777216", v);
		c->metadata_max = (size_t)n;
	} else if (!strcmp(key, "max_connections")) {
		if (parse_long(v, 1, CONN_MAX_LIMIT, &n))
			return fail(err, errlen, where, key,
				    "'%s' is not a count in 1-65536", v);
		c->conn_max = (int)n;
	} else if (!strcmp(key, "max_connections_per_client")) {
		if (parse_long(v, 1, CONN_MAX_LIMIT, &n))
			return fail(err, errlen, where, key,
				    "'%s' is not a count in 1-65536", v);
		c->client_conn_max = (int)n;
	} else if (!strcmp(key, "idle_timeout")) {
		if (parse_seconds(v, 0.05, 86400, &d))
			return fail(err, errlen, where, key,
				    "'%s' is not seconds in 0.05-86400", v);
		c->idle_timeout = d;
	} else if (!strcmp(key, "ipc_timeout")) {
		if (parse_seconds(v, 0.05, 60, &d))
			return fail(err, errlen, where, key,
				    "'%s' is not seconds in 0.05-60", v);
		c->ipc_timeout = d;
	} else if (!strcmp(key, "api_token")) {
		size_t tlen = strlen(v);
		bool ok = tlen >= 16 && tlen < sizeof(c->api_token);
		for (size_t i = 0; ok && i < tlen; i++)
			ok = v[i] > 0x20 && v[i] < 0x7f;
		if (!ok)
			/* The value is a secret: never echo it. */
			return fail(
			    err, errlen, where, key,
			    "must be 16-255 printable characters without spaces%s",
			    "");
		strcpy(c->api_token, v);
	} else if (!strcmp(key, "gossip_key")) {
		/* Up to 8 keys of 64 hex digits, comma-separated; checked
		 * fully when the keyring is built, never echoed. */
		size_t klen = strlen(v);
		bool ok = klen >= 64 && klen < sizeof(c->gossip_keys);
		for (size_t i = 0; ok && i < klen; i++)
			ok = isxdigit((unsigned char)v[i]) || v[i] == ',';
		if (!ok)
			return fail(
			    err, errlen, where, key,
			    "must be 64 hex digits, or several comma-separated%s",
			    "");
		strcpy(c->gossip_keys, v);
	} else if (!strcmp(key, "gossip_keyring_file")) {
		if (!*v || strlen(v) >= sizeof(c->gossip_keyring_file))
			return fail(err, errlen, where, key,
				    "'%s' is not a path (1-255 bytes)", v);
		strcpy(c->gossip_keyring_file, v);
	} else if (!strcmp(key, "api_token_reads")) {
		if (parse_bool(v, &b))
			return fail(err, errlen, where, key,
				    "'%s' is not true or false", v);
		c->api_token_reads = b;
	} else if (!strcmp(key, "log_level")) {
		int lv = log_level_parse(v);
		if (lv < 0)
			return fail(err, errlen, where, key,
				    "'%s' is not debug, info, warn or error",
				    v);
		c->log_level = lv;
	} else {
		snprintf(err, errlen, "%s: %s: unknown key", where, key);
		return -EINVAL;
	}
	return 0;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int config_load_file(struct config *c, const char *path, char *err,
		     size_t errlen)
{
	if (strlen(path) >= sizeof(c->path)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	strcpy(c->path, path);
	char line[CONFIG_LINE_MAX + 2];
	char where[CONFIG_PATH_MAX + 16];
	int lineno = 0, rc = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		size_t len = strlen(line);
		if (len > CONFIG_LINE_MAX && line[len - 1] != '\n') {
			snprintf(err, errlen, "%s: line longer than %d bytes",
				 where, CONFIG_LINE_MAX);
			rc = -EINVAL;
			break;
		}
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *s = trim(line);
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen,
				 "%s: expected 'key = value', got '%.60s'",
				 where, s);
			rc = -EINVAL;
			break;
		}
		*eq = '\0';
		char *key = trim(s);
		char *value = trim(eq + 1);
		if (!*key) {
			snprintf(err, errlen, "%s: missing key before '='",
				 where);
			rc = -EINVAL;
			break;
		}
		rc = config_set(c, key, value, where, err, errlen);
		if (rc)
			break;
	}
	fclose(f);
	return rc;
}

int config_finish(struct config *c, char *err, size_t errlen)
{
	const char *adv =
	    c->advertise_host[0] ? c->advertise_host : c->api_host;
	if (!strcmp(adv, "0.0.0.0") || !strcmp(adv, "::"))
		adv = "127.0.0.1";
	snprintf(c->node_url, sizeof(c->node_url), "http://%s:%d", adv,
		 c->api_port);
	if (c->gossip_port < 0)
		/* Derived so the seed's three nodes never collide: 5401-5403.
		 */
		c->gossip_port =
		    c->api_port != 0 && c->api_port + 1000 <= PORT_MAX
			? c->api_port + 1000
			: 0;
	if (!c->gossip_host[0])
		strcpy(c->gossip_host, c->api_host);
	if (c->probe_timeout >= c->probe_interval) {
		snprintf(
		    err, errlen,
		    "%s: probe_timeout: must be shorter than probe_interval",
		    c->path[0] ? c->path : "config");
		return -EINVAL;
	}
	if (c->cluster_ip[0] && !c->coordinator_gossip[0]) {
		/* The seed's convention: gossip port = API port + 1000. */
		const char *colon = strrchr(c->cluster_ip, ':');
		int port = atoi(colon + 1) + 1000;
		if (port > PORT_MAX) {
			snprintf(
			    err, errlen,
			    "%s: coordinator_gossip: cannot derive it from cluster_ip; set it",
			    c->path[0] ? c->path : "config");
			return -EINVAL;
		}
		snprintf(c->coordinator_gossip, sizeof(c->coordinator_gossip),
			 "%.*s:%d", (int)(colon - c->cluster_ip), c->cluster_ip,
			 port);
	}
	if (c->gossip_keys[0] && c->gossip_keyring_file[0]) {
		snprintf(
		    err, errlen,
		    "%s: gossip_key and gossip_keyring_file are both set; keep one",
		    c->path[0] ? c->path : "config");
		return -EINVAL;
	}
	if (c->role == ROLE_WORKER && !c->cluster_ip[0]) {
		snprintf(
		    err, errlen,
		    "%s: cluster_ip: a worker needs the coordinator's host:port",
		    c->path[0] ? c->path : "config");
		return -EINVAL;
	}
	if (c->cluster_ip[0])
		snprintf(c->coordinator_url, sizeof(c->coordinator_url),
			 "http://%s", c->cluster_ip);
	else
		c->coordinator_url[0] = '\0';
	if (!c->socket_path[0]) {
		int n = snprintf(c->socket_path, sizeof(c->socket_path),
				 "%s/membership.sock", c->data_dir);
		if (n < 0 ||
		    (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			snprintf(
			    err, errlen,
			    "%s: data_dir: the socket path under it exceeds 107 bytes; set socket_path ('%s')",
			    c->path[0] ? c->path : "config", c->data_dir);
			return -EINVAL;
		}
	}
	return 0;
}
