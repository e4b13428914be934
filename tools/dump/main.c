/*
 * proxystone-dump — the operator's window into the gossip layer.
 *
 * Asks a node's membership process, over its Unix socket, for its member
 * table (get_members) or for a live stream of every datagram it sends and
 * receives (follow); or decodes a raw datagram from a file. See --help.
 *
 * The node never waits for this tool: a follower that reads too slowly
 * loses events and is told how many (Reply.dropped).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"
#include "filter.h"
#include "proto/ipc.pb-c.h"
#include "proxystone/config.h"
#include "proxystone/swim_proto.h"
#include "render.h"
#include "wire.h"

/* Exit statuses (documented in --help). */
#define EXIT_OK 0
#define EXIT_REFUSED 1 /* malformed datagram, error reply, lost node */
#define EXIT_USAGE 2   /* bad arguments, config, socket, file */

/* The membership process answers in milliseconds; a reply that takes
 * this long means it is stalled (same order as config's ipc_timeout). */
#define REPLY_TIMEOUT 5.0
/* Output of one reply: a member table of IPC_FRAME_MAX bytes renders to
 * less than twice that. */
#define OUT_MAX (16u * 1024 * 1024)
/* Error sentences. */
#define ERR_MAX 512

static const char *prog = "proxystone-dump";

struct options {
	const char *config;
	const char *socket;
	const char *decode;
	const char *cluster;
	bool follow;
	bool json;
	bool filtered;
	struct filter filter;
	char socket_path[CONFIG_PATH_MAX + 32];
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [--config FILE | --socket PATH] [--json]\n"
		"       %s [--config FILE | --socket PATH] --follow [--type "
		"TYPE]... [--peer ADDR] [--json]\n"
		"       %s --decode FILE [--config FILE | --cluster ID] "
		"[--json]\n"
		"\n"
		"Shows what a node's gossip layer (SWIM) knows and does.\n"
		"\n"
		"  -c, --config FILE   the node's config; its socket_path "
		"(default\n"
		"                      <data_dir>/membership.sock) and "
		"cluster_id\n"
		"  -s, --socket PATH   the membership socket, directly\n"
		"                      (neither: the default config's "
		"socket)\n"
		"  -f, --follow        stream every datagram the node sends "
		"(\u2192) or\n"
		"                      receives (\u2190), decoded, one per "
		"line\n"
		"  -t, --type TYPE     only these message types (repeat or "
		"comma list):\n"
		"                      ping ack ping-req nack gossip sync-req "
		"sync-rsp,\n"
		"                      error (datagrams the node dropped)\n"
		"  -p, --peer ADDR     only datagrams to/from ip:port, ip, "
		"or :port\n"
		"  -d, --decode FILE   decode one raw datagram ('-': stdin) "
		"and say\n"
		"                      precisely what is malformed, if "
		"anything\n"
		"      --cluster ID    with --decode: the cluster id to "
		"expect\n"
		"  -j, --json          one JSON object per line (for jq)\n"
		"  -h, --help          this text\n"
		"  -V, --version       the version\n"
		"\n"
		"Without --follow or --decode: the member table (id, "
		"address, role,\n"
		"status, incarnation, last heard, probe RTT) under the "
		"node's own\n"
		"identity, gossip address, incarnation, local health and "
		"registry\n"
		"version.\n"
		"\n"
		"Exit status: 0 success (a valid datagram); 1 a malformed "
		"datagram,\n"
		"an error reply, or the node went away; 2 bad usage, config, "
		"file,\n"
		"or no node listening.\n",
		prog, prog, prog);
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", prog);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(try %s --help)\n", prog);
	return EXIT_USAGE;
}

/* Writes out's contents; on a closed stdout, exits quietly (0): the
 * reader (head, less, jq) got all it wanted. */
static int emit(struct buf *out)
{
	int rc = out_write(out->base, out->len);

	buf_reset(out);
	if (rc == -EPIPE)
		exit(EXIT_OK);
	if (rc) {
		fprintf(stderr, "%s: writing output: %s\n", prog,
			strerror(-rc));
		return EXIT_REFUSED;
	}
	return EXIT_OK;
}

static int render_failed(int rc)
{
	fprintf(stderr, "%s: formatting output: %s\n", prog, strerror(-rc));
	return EXIT_REFUSED;
}

/* ---- --decode ---------------------------------------------------------- */

/* Reads at most SWIM_MTU_MAX + 1 bytes (enough to tell "too long"). */
static int read_datagram(const char *path, uint8_t *buf, size_t cap,
			 size_t *len, size_t *total)
{
	int fd = strcmp(path, "-") == 0 ? STDIN_FILENO
					: open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	int rc = 0;

	if (fd < 0)
		return -errno;
	*len = 0;
	while (*len < cap) {
		ssize_t n = read(fd, buf + *len, cap - *len);

		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		*len += (size_t)n;
	}
	*total = *len;
	if (rc == 0 && *len == cap && fstat(fd, &st) == 0 &&
	    S_ISREG(st.st_mode) && (size_t)st.st_size > *total)
		*total = (size_t)st.st_size;
	if (fd != STDIN_FILENO)
		close(fd);
	return rc;
}

static int do_decode(const struct options *o, const char *cluster)
{
	static uint8_t data[SWIM_MTU_MAX + 1];
	static struct swim_decoder dec;
	static struct swim_packet pkt;
	struct wire_info wi;
	char err[WIRE_ERR_MAX];
	struct buf out;
	size_t len = 0, total = 0;
	int rc, status = EXIT_OK;

	rc = read_datagram(o->decode, data, sizeof(data), &len, &total);
	if (rc) {
		fprintf(stderr, "%s: cannot read %s: %s\n", prog, o->decode,
			strerror(-rc));
		return EXIT_USAGE;
	}
	rc = wire_check(data, len, cluster, &wi, err, sizeof(err));
	if (rc == -EBADMSG && len > SWIM_MTU_MAX)
		snprintf(err, sizeof(err),
			 "%zu bytes: longer than any UDP datagram "
			 "(SWIM_MTU_MAX %d)",
			 total, SWIM_MTU_MAX);
	swim_decoder_init(&dec);
	if (rc == 0) {
		char cl[SWIM_CLUSTER_ID_MAX + 1];

		/* The walk accepted it; the node's own decoder must agree. */
		memcpy(cl, wi.cluster, wi.cluster_len);
		cl[wi.cluster_len] = '\0';
		rc = swim_decode(&dec, cl, data, len, &pkt);
		if (rc)
			snprintf(
			    err, sizeof(err),
			    "the node's decoder refuses it (%s) although "
			    "every field is within bounds: it would need "
			    "more than SWIM_DECODE_ALLOC_MAX (%d) bytes to "
			    "unpack%s",
			    strerror(-rc), SWIM_DECODE_ALLOC_MAX,
			    wi.n_unknown ? ", e.g. for its unknown fields"
					 : "");
	}
	buf_init(&out, OUT_MAX);
	if (rc == 0) {
		rc = o->json ? render_packet_json(&pkt, &wi, len, &out)
			     : render_packet_text(&pkt, &wi, len, &out);
		if (rc)
			status = render_failed(rc);
		else
			status = emit(&out);
	} else {
		if (o->json &&
		    render_malformed_json(len, &wi, rc, err, &out) == 0)
			emit(&out);
		fprintf(stderr, "%s: %s: %s\n", prog, o->decode, err);
		status = EXIT_REFUSED;
	}
	swim_decoder_release(&dec);
	buf_fini(&out);
	return status;
}

/* ---- the node ---------------------------------------------------------- */

static int connect_node(struct conn *c, const char *path)
{
	int rc = conn_open(c, path);

	if (rc == 0)
		return EXIT_OK;
	if (rc == -ENOENT || rc == -ECONNREFUSED)
		fprintf(stderr,
			"%s: cannot connect to %s: %s (is the node running?)\n",
			prog, path, strerror(-rc));
	else
		fprintf(stderr, "%s: cannot connect to %s: %s\n", prog, path,
			strerror(-rc));
	return EXIT_USAGE;
}

/* Reports a failed conn_next. */
static int lost(const char *path, int rc, bool first)
{
	if (rc == -EPIPE)
		exit(EXIT_OK);
	if (rc == -ETIMEDOUT)
		fprintf(stderr,
			"%s: %s: no reply within %.0f s (is the membership "
			"process stalled?)\n",
			prog, path, REPLY_TIMEOUT);
	else if (rc == -ECONNRESET)
		fprintf(stderr, "%s: %s: the node closed the connection%s\n",
			prog, path,
			first ? " without answering (too old for this "
				"request?)"
			      : "");
	else if (rc == -EBADMSG || rc == -EMSGSIZE)
		fprintf(stderr,
			"%s: %s: the node sent a frame that is not a "
			"Reply (%s)\n",
			prog, path, strerror(-rc));
	else
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(-rc));
	return EXIT_REFUSED;
}

static int refused(const char *path, const Ps__Error *e)
{
	fprintf(stderr, "%s: %s: the node refused: %s: %s\n", prog, path,
		e->code ? e->code : "?", e->message ? e->message : "");
	return EXIT_REFUSED;
}

static int ask(struct conn *c, const char *path, Ps__Request *req)
{
	int rc = conn_send(c, req);

	if (rc == -EPIPE || rc == -ECONNRESET)
		return lost(path, -ECONNRESET, true);
	if (rc) {
		fprintf(stderr, "%s: %s: sending the request: %s\n", prog, path,
			strerror(-rc));
		return EXIT_REFUSED;
	}
	return EXIT_OK;
}

static int do_table(const struct options *o)
{
	Ps__Request req = PS__REQUEST__INIT;
	Ps__Empty empty = PS__EMPTY__INIT;
	Ps__Reply *r = NULL;
	struct conn c;
	struct buf out;
	int rc, status;

	status = connect_node(&c, o->socket_path);
	if (status)
		return status;
	req.id = 1;
	req.body_case = PS__REQUEST__BODY_GET_MEMBERS;
	req.get_members = &empty;
	status = ask(&c, o->socket_path, &req);
	if (status == EXIT_OK) {
		rc = conn_next(&c, REPLY_TIMEOUT, &r);
		if (rc)
			status = lost(o->socket_path, rc, true);
	}
	conn_close(&c);
	if (status)
		return status;
	if (r->error) {
		status = refused(o->socket_path, r->error);
		ps__reply__free_unpacked(r, NULL);
		return status;
	}
	buf_init(&out, OUT_MAX);
	rc = o->json ? render_members_json(r, &out)
		     : render_members_text(r, &out);
	status = rc ? render_failed(rc) : emit(&out);
	buf_fini(&out);
	ps__reply__free_unpacked(r, NULL);
	return status;
}

static int do_follow(const struct options *o)
{
	Ps__Request req = PS__REQUEST__INIT;
	Ps__Empty empty = PS__EMPTY__INIT;
	struct conn c;
	struct buf out;
	bool first = true;
	int status;

	status = connect_node(&c, o->socket_path);
	if (status)
		return status;
	req.id = 1;
	req.body_case = PS__REQUEST__BODY_FOLLOW;
	req.follow = &empty;
	status = ask(&c, o->socket_path, &req);
	buf_init(&out, OUT_MAX);
	while (status == EXIT_OK) {
		Ps__Reply *r = NULL;
		int rc = conn_next(&c, first ? REPLY_TIMEOUT : -1, &r);

		if (rc) {
			status = lost(o->socket_path, rc, first);
			break;
		}
		first = false;
		if (r->error) {
			status = refused(o->socket_path, r->error);
			ps__reply__free_unpacked(r, NULL);
			break;
		}
		if (r->has_dropped && r->dropped > 0)
			rc = o->json ? render_dropped_json(r->dropped, &out)
				     : render_dropped_text(r->dropped, &out);
		if (rc == 0 && r->trace && filter_match(&o->filter, r->trace))
			rc = o->json ? render_trace_json(r->trace, &out)
				     : render_trace_text(r->trace, &out);
		ps__reply__free_unpacked(r, NULL);
		if (rc)
			status = render_failed(rc);
		else if (out.len)
			status = emit(&out);
	}
	buf_fini(&out);
	conn_close(&c);
	return status;
}

/* ---- options ----------------------------------------------------------- */

enum { OPT_CLUSTER = 256 };

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"socket", required_argument, NULL, 's'},
	    {"follow", no_argument, NULL, 'f'},
	    {"type", required_argument, NULL, 't'},
	    {"peer", required_argument, NULL, 'p'},
	    {"decode", required_argument, NULL, 'd'},
	    {"cluster", required_argument, NULL, OPT_CLUSTER},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	char err[ERR_MAX];
	int ch;

	memset(o, 0, sizeof(*o));
	filter_init(&o->filter);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:s:ft:p:d:jhV", longopts,
				 NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
			break;
		case 's':
			o->socket = optarg;
			break;
		case 'f':
			o->follow = true;
			break;
		case 't':
			if (filter_add_types(&o->filter, optarg, err,
					     sizeof(err)))
				return usage_error("%s", err);
			o->filtered = true;
			break;
		case 'p':
			if (filter_set_peer(&o->filter, optarg, err,
					    sizeof(err)))
				return usage_error("%s", err);
			o->filtered = true;
			break;
		case 'd':
			o->decode = optarg;
			break;
		case OPT_CLUSTER:
			o->cluster = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			usage(stdout);
			exit(fflush(stdout) == 0 ? EXIT_OK : EXIT_REFUSED);
		case 'V':
			printf("%s %s\n", prog, PS_VERSION);
			exit(fflush(stdout) == 0 ? EXIT_OK : EXIT_REFUSED);
		case ':':
			return usage_error("%s needs an argument",
					   argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'",
					   argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (o->config && o->socket)
		return usage_error("%s", "give --config or --socket, not both");
	if (o->decode && o->follow)
		return usage_error("%s", "--decode reads a file; it does not "
					 "go with --follow");
	if (o->decode && o->socket)
		return usage_error("%s", "--decode reads a file; --socket "
					 "is for the node");
	if (o->filtered && !o->follow)
		return usage_error("%s", "--type and --peer filter --follow");
	if (o->cluster && !o->decode)
		return usage_error("%s", "--cluster goes with --decode");
	if (o->cluster && o->config)
		return usage_error("%s",
				   "give --cluster or --config, not both");
	return EXIT_OK;
}

/* Socket path and cluster id from --config (or the defaults). */
static int load_config(struct options *o, char *cluster, size_t clen)
{
	struct config cfg;
	char err[ERR_MAX];

	config_defaults(&cfg);
	if (o->config && config_load_file(&cfg, o->config, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return EXIT_USAGE;
	}
	if (config_finish(&cfg, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return EXIT_USAGE;
	}
	snprintf(o->socket_path, sizeof(o->socket_path), "%s",
		 o->socket ? o->socket : cfg.socket_path);
	snprintf(cluster, clen, "%s", cfg.cluster_id);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct options o;
	char cluster[CONFIG_CLUSTER_ID_MAX + 1];
	int status;

	/* A closed stdout shows up as EPIPE from write(), handled where we
	 * write, instead of killing us mid-line. */
	signal(SIGPIPE, SIG_IGN);
	status = parse_options(argc, argv, &o);
	if (status)
		return status;
	if (o.decode) {
		/* The cluster check needs an expectation: --cluster, or the
		 * config's cluster_id; without either any cluster passes. */
		if (o.config &&
		    (status = load_config(&o, cluster, sizeof(cluster))))
			return status;
		return do_decode(&o, o.cluster	? o.cluster
				     : o.config ? cluster
						: NULL);
	}
	if (o.socket)
		snprintf(o.socket_path, sizeof(o.socket_path), "%s", o.socket);
	else if ((status = load_config(&o, cluster, sizeof(cluster))))
		return status;
	return o.follow ? do_follow(&o) : do_table(&o);
}
