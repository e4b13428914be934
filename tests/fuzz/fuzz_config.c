/*
 * fuzz_config — src/common/config.c: config_load_file + config_finish on a
 * file holding the input, and the gossip keyring parser on what it accepted
 * as gossip_key (the node builds its keyring from that string at start-up).
 *
 * config_load_file takes a path, so the input goes into a memfd made once
 * and is read back through /proc/self/fd/N: no file system writes, no
 * temporary files left behind by a crash.
 *
 * Errors are fine; crashes, hangs and leaks are not. Beyond the
 * sanitizers: an error comes with a message; after success every string
 * field is NUL-terminated inside its array and the cross-field rules hold.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "proxystone/config.h"
#include "proxystone/gossip_crypto.h"
#include "proxystone/log.h"

static int memfd = -1;
static char path[64];

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_config: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
	abort();
}

#define CHECK_STR(c, field)                                                    \
	do {                                                                   \
		if (!memchr((c)->field, '\0', sizeof((c)->field)))             \
			die("unterminated field", #field);                     \
	} while (0)

static void check_config(const struct config *c)
{
	CHECK_STR(c, path);
	CHECK_STR(c, cluster_id);
	CHECK_STR(c, api_host);
	CHECK_STR(c, advertise_host);
	CHECK_STR(c, node_url);
	CHECK_STR(c, cluster_ip);
	CHECK_STR(c, coordinator_url);
	CHECK_STR(c, gossip_host);
	CHECK_STR(c, coordinator_gossip);
	CHECK_STR(c, ui_backends);
	CHECK_STR(c, data_dir);
	CHECK_STR(c, socket_path);
	CHECK_STR(c, api_token);
	CHECK_STR(c, gossip_keys);
	CHECK_STR(c, gossip_keyring_file);
	if (strlen(c->socket_path) >=
	    sizeof(((struct sockaddr_un *)0)->sun_path))
		die("socket_path does not fit sun_path", c->socket_path);
	if (c->role == ROLE_WORKER && !c->cluster_ip[0])
		die("a worker without cluster_ip passed config_finish", NULL);
	if (c->probe_timeout >= c->probe_interval)
		die("probe_timeout >= probe_interval passed config_finish",
		    NULL);
	if (c->gossip_port < 0 || c->gossip_port > 65535)
		die("gossip_port out of range after config_finish", NULL);
	if (c->api_port < 0 || c->api_port > 65535)
		die("api_port out of range", NULL);
	if (!c->gossip_host[0])
		die("gossip_host not derived", NULL);
	if (strncmp(c->node_url, "http://", 7))
		die("node_url not derived", c->node_url);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memfd < 0) {
		log_set_level(LOG_ERROR);
		memfd = memfd_create("fuzz_config", MFD_CLOEXEC);
		if (memfd < 0)
			die("memfd_create", strerror(errno));
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	if (ftruncate(memfd, 0) ||
	    pwrite(memfd, data, size, 0) != (ssize_t)size)
		die("cannot write the memfd", strerror(errno));

	struct config c;
	char err[512];
	config_defaults(&c);
	err[0] = '\0';
	int rc = config_load_file(&c, path, err, sizeof(err));
	if (rc) {
		if (!err[0])
			die("config_load_file failed without a message", NULL);
		if (rc > 0)
			die("config_load_file returned > 0", NULL);
		return 0;
	}
	err[0] = '\0';
	rc = config_finish(&c, err, sizeof(err));
	if (rc) {
		if (!err[0])
			die("config_finish failed without a message", NULL);
		return 0;
	}
	check_config(&c);

	if (c.gossip_keys[0]) {
		struct gossip_keyring ring;
		err[0] = '\0';
		rc = gossip_keyring_parse(&ring, c.gossip_keys, err,
					  sizeof(err));
		if (rc && !err[0])
			die("gossip_keyring_parse failed without a message",
			    NULL);
		/* a gossip_key that yields no key would leave gossip in the
		 * clear while the operator believes it sealed */
		if (!rc && ring.n == 0)
			die("gossip_key accepted, but the keyring it gives is "
			    "empty: encryption would be silently off",
			    NULL);
		if (!rc && ring.n > GOSSIP_KEYS_MAX)
			die("keyring size out of range", NULL);
	}
	return 0;
}
