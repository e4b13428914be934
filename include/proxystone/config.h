/*
 * config — the node's configuration: `key = value` lines from a file, then
 * command-line flags on top. Every key is documented in README.md.
 *
 * An unknown key or a bad value is a start-up error whose message names
 * the file, the line and the key ("etc/x.conf:12: api_port: ...").
 */
#ifndef PROXYSTONE_CONFIG_H
#define PROXYSTONE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* Longest path we accept for data_dir, socket_path, config path. The Unix
 * socket path is further bounded by sun_path (108 bytes). */
#define CONFIG_PATH_MAX 256
/* Longest host name / address / URL value. */
#define CONFIG_STR_MAX 256
/* Longest cluster id: ids travel in every gossip datagram, keep them short. */
#define CONFIG_CLUSTER_ID_MAX 64
/* Longest line in a config file. */
#define CONFIG_LINE_MAX 1024

enum node_role { ROLE_COORDINATOR = 0, ROLE_WORKER = 1 };

/* Members met by gossip (admit.h): registered once alive this long and
 * answering at their address, at most this many a second. A real worker
 * answers its first ping within a round trip, so 1 s adds about a second
 * to its first appearance; 50/s lets 1,000 workers in within 20 s while a
 * forger who can answer gets 750 in 15 s at most, each named in the log. */
#define CONFIG_GOSSIP_REGISTER_AFTER_DEFAULT 1.0
#define CONFIG_GOSSIP_REGISTER_RATE_DEFAULT 50.0

struct config {
	char path[CONFIG_PATH_MAX];		/* file loaded, "" if none */
	enum node_role role;			/* role */
	char cluster_id[CONFIG_CLUSTER_ID_MAX]; /* cluster_id */
	char api_host[CONFIG_STR_MAX]; /* api_host: address the API binds */
	int api_port;		       /* api_port */
	char advertise_host[CONFIG_STR_MAX]; /* advertise_host: host in our url
					      */
	char node_url[CONFIG_STR_MAX +
		      16]; /* derived: http://advertise_host:api_port */
	char cluster_ip[CONFIG_STR_MAX]; /* cluster_ip: coordinator host:port
					    ("" on the coordinator) */
	char coordinator_url[CONFIG_STR_MAX + 16]; /* derived from cluster_ip,
						      "" on the coordinator */
	char gossip_host[CONFIG_STR_MAX]; /* gossip_host: UDP bind address,
					     default api_host */
	int gossip_port; /* gossip_port: UDP port, default api_port + 1000, 0 =
			    off */
	char coordinator_gossip
	    [CONFIG_STR_MAX];	      /* coordinator_gossip: host:port, default
					 cluster_ip's host, port + 1000 */
	double probe_interval;	      /* probe_interval, seconds */
	double probe_timeout;	      /* probe_timeout, seconds */
	int indirect_checks;	      /* indirect_checks */
	double suspicion_mult;	      /* suspicion_mult */
	int gossip_mtu;		      /* gossip_mtu, bytes */
	double gossip_register_after; /* gossip_register_after, seconds */
	double gossip_register_rate;  /* gossip_register_rate, per second */
	int ui_port;		      /* ui_port: 0 = no dashboard */
	char ui_backends[CONFIG_STR_MAX]; /* ui_backends: hosts and port ranges
					     the page scans */
	char data_dir[CONFIG_PATH_MAX];	  /* data_dir */
	char socket_path[CONFIG_PATH_MAX + 32]; /* socket_path, default
						   <data_dir>/membership.sock */
	double heartbeat_interval; /* heartbeat_interval, seconds */
	double node_timeout;	   /* node_timeout, seconds */
	bool cluster_enabled;	   /* cluster_enabled */
	size_t body_max;	   /* max_body_bytes */
	size_t metadata_max;	   /* max_metadata_bytes */
	int conn_max;		   /* max_connections */
	int client_conn_max; /* max_connections_per_client: per IPv4 address /
				IPv6 /64 */
	double idle_timeout; /* idle_timeout, seconds */
	double ipc_timeout;  /* ipc_timeout, seconds */
	int log_level;	     /* log_level: enum log_level */
	char api_token[CONFIG_STR_MAX]; /* api_token: "" = no authentication */
	char gossip_keys[8 * 65 +
			 1]; /* gossip_key: keyring, hex keys comma-separated,
			      * primary first (or, once main() loaded it,
			      * gossip_keyring_file's keys) */
	char gossip_keyring_file[CONFIG_PATH_MAX]; /* gossip_keyring_file: path;
						      created at first start */
	bool api_token_reads; /* api_token_reads: reads need it too */
};

/* Fills every field with its default; the gossip tunables come from
 * config_gossip_defaults(). */
void config_defaults(struct config *c);
struct swim_config;
/* The product's gossip defaults as a whole swim_config (swim.h): what the
 * product runs with unless the configuration overrides it, and what the
 * simulator tests and the benchmarks run. swim_config_defaults() is
 * memberlist's LAN configuration, kept for comparison. cluster_id is
 * empty; the callbacks are NULL. */
void config_gossip_defaults(struct swim_config *out);
/*
 * Applies one key. `where` prefixes error messages ("file:line" or
 * "--flag"). Returns 0 or -EINVAL with a message in err.
 */
int config_set(struct config *c, const char *key, const char *value,
	       const char *where, char *err, size_t errlen);
/* Reads a file of `key = value` lines ('#' starts a comment). */
int config_load_file(struct config *c, const char *path, char *err,
		     size_t errlen);
/* Derives node_url, coordinator_url, socket_path; checks cross-field rules. */
int config_finish(struct config *c, char *err, size_t errlen);

const char *config_role_name(enum node_role role);

#endif
