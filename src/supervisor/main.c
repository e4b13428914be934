/*
 * proxystone — program entry: flags, configuration, data directory, then
 * the supervisor (include/proxystone/supervisor.h).
 *
 * Flags override the file: the command line is parsed first, then the
 * defaults, the --config file and the flags are applied in that order.
 */
#include "proxystone/config.h"
#include "proxystone/gossip_crypto.h"
#include "proxystone/log.h"
#include "proxystone/supervisor.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Exit status for a bad flag or configuration (as BSD's EX_USAGE is to
 * sysexits, 2 is to getopt-style tools). */
#define EXIT_USAGE 2
/* Longest error message: a config error names file, line, key and value. */
#define MAIN_ERR_MAX (CONFIG_PATH_MAX + CONFIG_LINE_MAX)
/* The data directory holds the node's identity and registry: owner only. */
#define DATA_DIR_MODE 0700
/* getopt_long values for long-only flags start past every char. */
#define FLAG_VAL_BASE 256

enum flag_id {
	F_CONFIG,
	F_PORT,
	F_CLUSTER_IP,
	F_DATA_DIR,
	F_ROLE,
	F_LOG_LEVEL,
	F_HELP,
	F_VERSION,
	F_GEN_KEY,
	F_COUNT
};

/* Every flag, in the order --help lists them. `key` is the config key the
 * flag overrides; NULL for flags that are not settings. */
static const struct flag {
	const char *name;
	const char *key;
	const char *arg;
	const char *help;
} flags[F_COUNT] = {
    [F_CONFIG] = {"config", NULL, "FILE",
		  "read `key = value` settings from FILE"},
    [F_PORT] = {"port", "api_port", "N", "HTTP API port (default 4401)"},
    [F_CLUSTER_IP] = {"cluster-ip", "cluster_ip", "HOST:PORT",
		      "the coordinator's API address (workers)"},
    [F_DATA_DIR] = {"data-dir", "data_dir", "DIR",
		    "node identity and registry (default var/proxystone)"},
    [F_ROLE] = {"role", "role", "coordinator|worker",
		"this node's role (default coordinator)"},
    [F_LOG_LEVEL] = {"log-level", "log_level", "LEVEL",
		     "debug, info, warn or error (default info)"},
    [F_HELP] = {"help", NULL, NULL, "print this help and exit"},
    [F_VERSION] = {"version", NULL, NULL, "print the version and exit"},
    [F_GEN_KEY] = {"gen-key", NULL, NULL,
		   "print a new random gossip key (64 hex digits) and exit"},
};

struct args {
	const char *value[F_COUNT]; /* last value given per flag, or NULL */
	bool help, version, gen_key;
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: proxystone [--config FILE] [FLAG]...\n"
		     "Runs one Proxy Stone node: a supervisor and its "
		     "membership and api processes.\n"
		     "Flags override the settings in FILE.\n\n");
	for (int i = 0; i < F_COUNT; i++) {
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", flags[i].name,
			 flags[i].arg ? " " : "",
			 flags[i].arg ? flags[i].arg : "");
		fprintf(out, "  %-30s %s\n", left, flags[i].help);
	}
	fprintf(out, "\nSIGTERM or SIGINT stops the node (api first, then "
		     "membership); SIGHUP is ignored.\n");
}

/* Parses argv into `a`. Returns 0, or -EINVAL with a message in err. */
static int args_parse(int argc, char **argv, struct args *a, char *err,
		      size_t errlen)
{
	struct option opts[F_COUNT + 1];
	for (int i = 0; i < F_COUNT; i++)
		opts[i] = (struct option){flags[i].name,
					  flags[i].arg ? required_argument
						       : no_argument,
					  NULL, FLAG_VAL_BASE + i};
	opts[F_COUNT] = (struct option){0};

	memset(a, 0, sizeof(*a));
	opterr = 0; /* our messages, not getopt's */
	optind = 0; /* full re-initialisation, for tests that parse twice */
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'h') {
			a->help = true;
		} else if (c >= FLAG_VAL_BASE && c < FLAG_VAL_BASE + F_COUNT) {
			int id = c - FLAG_VAL_BASE;
			if (id == F_HELP)
				a->help = true;
			else if (id == F_VERSION)
				a->version = true;
			else if (id == F_GEN_KEY)
				a->gen_key = true;
			else
				a->value[id] = optarg;
		} else if (c == ':') {
			snprintf(err, errlen, "%s: missing value",
				 argv[optind - 1]);
			return -EINVAL;
		} else if (optopt >= FLAG_VAL_BASE) {
			snprintf(err, errlen, "--%s takes no value",
				 flags[optopt - FLAG_VAL_BASE].name);
			return -EINVAL;
		} else if (optopt) {
			snprintf(err, errlen, "-%c: unknown flag", optopt);
			return -EINVAL;
		} else {
			snprintf(err, errlen, "%s: unknown flag",
				 argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/* Defaults, then the file, then the flags, then derived values. */
static int config_build(const struct args *a, struct config *cfg, char *err,
			size_t errlen)
{
	config_defaults(cfg);
	int rc;
	if (a->value[F_CONFIG]) {
		rc = config_load_file(cfg, a->value[F_CONFIG], err, errlen);
		if (rc)
			return rc;
	}
	for (int i = 0; i < F_COUNT; i++) {
		if (!flags[i].key || !a->value[i])
			continue;
		char where[64];
		snprintf(where, sizeof(where), "--%s", flags[i].name);
		rc = config_set(cfg, flags[i].key, a->value[i], where, err,
				errlen);
		if (rc)
			return rc;
	}
	return config_finish(cfg, err, errlen);
}

/* mkdir -p; new directories get `mode`. Existing ones are left as they are. */
static int mkdir_p(const char *path, mode_t mode, char *err, size_t errlen)
{
	char buf[CONFIG_PATH_MAX];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(buf)) {
		snprintf(err, errlen, "data_dir: bad path '%s'", path);
		return -ENAMETOOLONG;
	}
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST) {
			int e = errno;
			snprintf(err, errlen,
				 "data_dir: cannot create '%s': %s", buf,
				 strerror(e));
			return -e;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "data_dir: '%s' is not a directory",
			 path);
		return -ENOTDIR;
	}
	return 0;
}

/* Reads (or, at first start, creates) gossip_keyring_file into the
 * config's keyring text, before the children fork and inherit it. The
 * keys are never logged. */
static int keyring_load(struct config *cfg, char *err, size_t errlen)
{
	if (!cfg->gossip_keyring_file[0])
		return 0;
	bool created;
	int rc = gossip_keyring_file_load(
	    cfg->gossip_keyring_file, cfg->gossip_keys,
	    sizeof(cfg->gossip_keys), &created, err, errlen);
	if (rc)
		return rc;
	size_t keys = gossip_keyring_count(cfg->gossip_keys);
	log_info("gossip keyring: %s %s (%zu key%s)",
		 created ? "created" : "loaded", cfg->gossip_keyring_file, keys,
		 keys == 1 ? "" : "s");
	return 0;
}

int main(int argc, char **argv)
{
	struct args a;
	char err[MAIN_ERR_MAX];
	if (args_parse(argc, argv, &a, err, sizeof(err))) {
		fprintf(stderr, "proxystone: %s\nTry 'proxystone --help'.\n",
			err);
		return EXIT_USAGE;
	}
	if (a.help) {
		usage(stdout);
		return EXIT_SUCCESS;
	}
	if (a.version) {
		printf("proxystone %s\n", PS_VERSION);
		return EXIT_SUCCESS;
	}

	if (a.gen_key) {
		char key[2 * GOSSIP_KEY_LEN + 1];
		gossip_key_generate(key);
		if (!key[0]) {
			fprintf(stderr, "proxystone: libsodium is unusable\n");
			return EXIT_FAILURE;
		}
		printf("%s\n", key);
		return EXIT_SUCCESS;
	}

	static struct config cfg;
	if (config_build(&a, &cfg, err, sizeof(err))) {
		fprintf(stderr, "proxystone: %s\n", err);
		return EXIT_USAGE;
	}
	log_set_level((enum log_level)cfg.log_level);
	if (mkdir_p(cfg.data_dir, DATA_DIR_MODE, err, sizeof(err))) {
		fprintf(stderr, "proxystone: %s\n", err);
		return EXIT_FAILURE;
	}
	if (keyring_load(&cfg, err, sizeof(err))) {
		fprintf(stderr, "proxystone: gossip_keyring_file: %s\n", err);
		return EXIT_FAILURE;
	}
	return sup_run(&cfg, argc, argv) ? EXIT_FAILURE : EXIT_SUCCESS;
}
