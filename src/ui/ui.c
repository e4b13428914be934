/*
 * ui — serves the dashboard's static files and /config.json; see
 * include/proxystone/ui.h.
 *
 * The files are a fixed table loaded into memory at start-up: a request
 * path is only ever compared with the table's names, never joined to a
 * directory, so there is no path to traverse and nothing is read after
 * start-up.
 */
#include "proxystone/ui.h"
#include "proxystone/buf.h"
#include "proxystone/config.h"
#include "proxystone/csp.h"
#include "proxystone/http.h"
#include "proxystone/json.h"
#include "proxystone/log.h"
#include "proxystone/supervisor.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <http_parser.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest file of the page we load. The page is about 100 KB in all; 1 MB
 * only stops a wrong directory (a log, a core file) from being slurped. */
#define UI_FILE_MAX (1024 * 1024)
/* Request body bound: the dashboard serves GET only, so any body is a
 * mistake; 4 KB is plenty for what a browser might still send. */
#define UI_BODY_MAX 4096
/* Concurrent connections: one browser opens at most six per origin; 256
 * leaves room for a room full of people and their tabs. */
#define UI_CONN_MAX 256
/* /config.json: ui_backends and the cluster id are each under 256 bytes. */
#define UI_CONFIG_JSON_MAX 1024
/* Longest candidate directory path (PATH_MAX would do, but every path we
 * build is a short one; a longer one is reported and skipped). */
#define UI_DIR_MAX 512

struct ui_file {
	const char *name;  /* file name in the directory */
	const char *ctype; /* Content-Type */
	char *body;	   /* loaded contents, owned */
	size_t len;
};

/* Every file the page consists of; all must be present. */
static struct ui_file ui_files[] = {
    {"index.html", "text/html; charset=utf-8", NULL, 0},
    {"app.js", "text/javascript; charset=utf-8", NULL, 0},
    {"style.css", "text/css; charset=utf-8", NULL, 0},
    {"favicon.svg", "image/svg+xml", NULL, 0},
};
#define UI_NFILES (sizeof(ui_files) / sizeof(ui_files[0]))

/* Sent with every file. no-cache: the browser revalidates, so a restarted
 * ui with new files is picked up by a reload. Then the page's policy (csp.h:
 * scripts and styles from this origin only, no inline script, so text that
 * nodes report can never run; API calls to the configured and the approved
 * backends' exact origins only), built per request. */
#define UI_HEADERS                                                             \
	"Cache-Control: no-cache\r\n"                                          \
	"X-Content-Type-Options: nosniff\r\n"                                  \
	"Referrer-Policy: no-referrer\r\n"                                     \
	"X-Frame-Options: DENY\r\n"
/* Response headers with the policy: the fixed ones and csp.h's bound. */
#define UI_HEADERS_MAX (sizeof(UI_HEADERS) + CSP_HEADER_MAX)

struct ui {
	const struct config *cfg;
	struct ev_loop *loop;
	struct http_server *http;
	ev_signal sigterm, sigint;
	struct buf config_json;
	struct buf headers; /* this response's headers, see page_headers() */
	char dir[UI_DIR_MAX];
	/* Set when the page's files could not be loaded: the node still
	 * starts (a missing dashboard must not keep the API from serving or
	 * systemd from seeing READY=1) and every page request gets a 503
	 * page saying what is missing. */
	bool missing;
	char missing_why[UI_DIR_MAX * 3 + 128];
};

/* ---- Loading the page -------------------------------------------------- */

/* Reads dir/name whole into *out. 0 or a negative errno; -EFBIG past
 * UI_FILE_MAX, -EINVAL if it is not a regular file. */
static int read_file(const char *dir, const char *name, char **out,
		     size_t *outlen)
{
	char path[UI_DIR_MAX + 64];
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	char *data = NULL;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out;
	}
	if (st.st_size > UI_FILE_MAX) {
		rc = -EFBIG;
		goto out;
	}
	size_t want = (size_t)st.st_size, got = 0;
	data = malloc(want ? want : 1);
	if (!data) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < want) {
		ssize_t n = read(fd, data + got, want - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break; /* shrank under us: serve what is there */
		got += (size_t)n;
	}
	*out = data;
	*outlen = got;
	data = NULL;
out:
	free(data);
	close(fd);
	return rc;
}

static bool has_index(const char *dir)
{
	char path[UI_DIR_MAX + 16];
	if ((size_t)snprintf(path, sizeof(path), "%s/index.html", dir) >=
	    sizeof(path))
		return false;
	return access(path, R_OK) == 0;
}

/* <dir of /proc/self/exe>/../share/proxystone/ui, or "" if unknown. */
static void exe_relative_dir(char *out, size_t outlen)
{
	char exe[UI_DIR_MAX];
	out[0] = '\0';
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0 || (size_t)n >= sizeof(exe) - 1)
		return;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (!slash)
		return;
	*slash = '\0';
	if ((size_t)snprintf(out, outlen, "%s/../share/proxystone/ui", exe) >=
	    outlen)
		out[0] = '\0';
}

/* Picks the directory (see ui.h) and loads every file of the page. On
 * error writes a message naming the directories tried or the bad file. */
static int ui_load(struct ui *u, char *err, size_t errlen)
{
	char exe_dir[UI_DIR_MAX];
	exe_relative_dir(exe_dir, sizeof(exe_dir));
	const char *candidates[] = {UI_DIR_DEV, exe_dir, PS_UI_DIR};
	u->dir[0] = '\0';
	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]);
	     i++) {
		if (candidates[i][0] && has_index(candidates[i])) {
			snprintf(u->dir, sizeof(u->dir), "%s", candidates[i]);
			break;
		}
	}
	if (!u->dir[0]) {
		snprintf(err, errlen,
			 "no index.html in %s, %s or %s (install the page "
			 "into %s)",
			 UI_DIR_DEV, exe_dir[0] ? exe_dir : "<binary>/../share",
			 PS_UI_DIR, PS_UI_DIR);
		return -ENOENT;
	}
	for (size_t i = 0; i < UI_NFILES; i++) {
		struct ui_file *f = &ui_files[i];
		int rc = read_file(u->dir, f->name, &f->body, &f->len);
		if (rc) {
			snprintf(err, errlen, "%s/%s: %s", u->dir, f->name,
				 rc == -EFBIG ? "larger than 1 MB"
					      : strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static void ui_unload(void)
{
	for (size_t i = 0; i < UI_NFILES; i++) {
		free(ui_files[i].body);
		ui_files[i].body = NULL;
		ui_files[i].len = 0;
	}
}

static int build_config_json(struct ui *u)
{
	struct json_writer w;
	jw_init(&w, &u->config_json);
	jw_object_begin(&w);
	jw_key(&w, "backends");
	jw_string(&w, u->cfg->ui_backends);
	jw_key(&w, "clusterId");
	jw_string(&w, u->cfg->cluster_id);
	jw_key(&w, "version");
	jw_string(&w, PS_VERSION);
	jw_object_end(&w);
	return jw_finish(&w);
}

/* ---- HTTP --------------------------------------------------------------- */

static const struct ui_file *file_for(struct strview path)
{
	if (strview_eq(path, "/"))
		return &ui_files[0];
	if (path.len < 2)
		return NULL;
	for (size_t i = 0; i < UI_NFILES; i++)
		if (strlen(ui_files[i].name) == path.len - 1 &&
		    !memcmp(ui_files[i].name, path.base + 1, path.len - 1))
			return &ui_files[i];
	return NULL;
}

/* The spec's error format, plus the Allow header a 405 must carry. */
static void respond_405(struct http_conn *c)
{
	static const char body[] =
	    "{\"success\":false,\"error\":\"Method Not Allowed\","
	    "\"message\":\"The dashboard serves GET and HEAD only\","
	    "\"code\":\"METHOD_NOT_ALLOWED\",\"details\":{}}";
	http_respond(c, 405, "application/json", "Allow: GET, HEAD\r\n", body,
		     sizeof(body) - 1);
}

/* UI_HEADERS and the policy for this request into u->headers. The
 * policy depends on the request (its Host and the approved-origins cookie),
 * so it is built each time; it is a few hundred bytes in the usual case. */
static const char *page_headers(struct ui *u, const struct http_request *req)
{
	int dropped = 0;
	buf_reset(&u->headers);
	int rc = buf_puts(&u->headers, UI_HEADERS);
	if (!rc)
		rc = csp_header(&u->headers, u->cfg->ui_backends, req->host,
				req->cookie, &dropped);
	if (rc) {
		/* Cannot happen within the bound; if it does, the page
		 * may talk to nobody rather than to anybody. */
		log_warn("dashboard policy: %s; serving connect-src 'self'",
			 strerror(-rc));
		buf_reset(&u->headers);
		buf_puts(&u->headers,
			 UI_HEADERS "Content-Security-Policy: default-src "
				    "'none'; connect-src 'self'\r\n");
	}
	if (dropped)
		log_debug("dashboard policy: %d entr%s of the %s cookie left "
			  "out (malformed, or past %d)",
			  dropped, dropped == 1 ? "y" : "ies", CSP_COOKIE,
			  CSP_APPROVED_MAX);
	return u->headers.base;
}

static void respond_missing(struct ui *u, struct http_conn *c,
			    const struct http_request *req)
{
	struct buf b;
	buf_init(&b, sizeof(u->missing_why) * 2 + 512);
	buf_puts(&b, "<!doctype html><meta charset=utf-8>"
		     "<title>Proxy Stone: dashboard not installed</title>"
		     "<h1>The dashboard's files are missing</h1><p>");
	/* The reason names paths from the build and the binary's location
	 * only, but escape it anyway: it is HTML. */
	for (const char *p = u->missing_why; *p; p++) {
		if (*p == '<')
			buf_puts(&b, "&lt;");
		else if (*p == '>')
			buf_puts(&b, "&gt;");
		else if (*p == '&')
			buf_puts(&b, "&amp;");
		else
			buf_putc(&b, *p);
	}
	buf_puts(&b, "</p><p>The node's API is not affected. Install the files "
		     "(<code>make install</code>) and restart the node.</p>");
	http_respond(c, 503, "text/html; charset=utf-8", page_headers(u, req),
		     b.base, b.len);
	buf_fini(&b);
}

static void on_request(struct http_server *s, struct http_conn *c,
		       const struct http_request *req, void *ud)
{
	(void)s;
	struct ui *u = ud;
	if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
		respond_405(c);
		return;
	}
	if (strview_eq(req->path, "/config.json")) {
		http_respond(c, 200, "application/json",
			     "Cache-Control: no-cache\r\n", u->config_json.base,
			     u->config_json.len);
		return;
	}
	const struct ui_file *f = file_for(req->path);
	if (f && u->missing) {
		respond_missing(u, c, req);
		return;
	}
	if (!f) {
		http_respond_error(c, 404, "NOT_FOUND",
				   "No such page; the dashboard is at /", NULL);
		return;
	}
	http_respond(c, 200, f->ctype, page_headers(u, req), f->body, f->len);
}

static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int rev)
{
	(void)rev;
	log_info("stopping on %s", strsignal(w->signum));
	ev_break(loop, EVBREAK_ALL);
}

int ui_main(const struct config *cfg, int sup_fd)
{
	struct ui u = {.cfg = cfg};
	char err[256];
	int status = 1;

	signal(SIGPIPE, SIG_IGN);
	buf_init(&u.config_json, UI_CONFIG_JSON_MAX);
	buf_init(&u.headers, UI_HEADERS_MAX);
	u.loop = ev_loop_new(EVFLAG_AUTO);
	if (!u.loop) {
		log_error("cannot create the event loop");
		goto out;
	}
	/* Signals and keepalives before any I/O: a SIGTERM while loading
	 * still ends in an orderly return, and a slow disk does not look like
	 * a hang. */
	ev_signal_init(&u.sigterm, on_stop_signal, SIGTERM);
	ev_signal_init(&u.sigint, on_stop_signal, SIGINT);
	ev_signal_start(u.loop, &u.sigterm);
	ev_signal_start(u.loop, &u.sigint);
	if (sup_fd >= 0)
		child_keepalive_start(u.loop, sup_fd);
	if (ui_load(&u, u.missing_why, sizeof(u.missing_why))) {
		log_error("dashboard files: %s; serving an error page instead",
			  u.missing_why);
		ui_unload();
		u.missing = true;
	}
	if (build_config_json(&u)) {
		log_error("cannot build /config.json");
		goto out;
	}
	struct http_server_config hc = {
	    .host = cfg->api_host,
	    .port = cfg->ui_port,
	    .body_max = UI_BODY_MAX,
	    .conn_max = UI_CONN_MAX,
	    .idle_timeout = cfg->idle_timeout,
	};
	u.http = http_server_new(u.loop, &hc, on_request, &u, err, sizeof(err));
	if (!u.http) {
		log_error("cannot serve the dashboard on %s:%d: %s",
			  cfg->api_host, cfg->ui_port, err);
		goto out;
	}
	log_info("dashboard on http://%s:%d/ (files from %s; scanning %s)",
		 cfg->api_host, http_server_port(u.http),
		 u.missing ? "nowhere" : u.dir, cfg->ui_backends);
	if (sup_fd >= 0)
		child_notify_ready(sup_fd);

	ev_run(u.loop, 0);
	status = 0;
out:
	http_server_free(u.http);
	if (u.loop)
		ev_loop_destroy(u.loop);
	buf_fini(&u.config_json);
	buf_fini(&u.headers);
	ui_unload();
	return status;
}
