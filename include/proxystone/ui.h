/*
 * ui — the dashboard process. Serves the static page (index.html, app.js,
 * style.css, favicon.svg) and GET /config.json on api_host:ui_port. It owns
 * no state and talks to no other process: the page itself calls every
 * node's HTTP API directly from the browser (the API sends CORS headers).
 *
 * The page's files are read once at start-up into memory from the first of
 * these directories that holds an index.html:
 *   1. UI_DIR_DEV ("src/ui/static", relative to the working directory: a
 *      checkout, `make run`, the tests);
 *   2. <directory of the running binary>/../share/proxystone/ui (an
 *      installed tree under any PREFIX, DESTDIR staging included);
 *   3. PS_UI_DIR, a compile-time default ("$(PREFIX)/share/proxystone/ui",
 *      /usr/local/share/proxystone/ui unless the build defines it).
 * Only the fixed list of files is ever served, so no request path can
 * reach the file system. Editing the files needs a restart of the ui child
 * (kill it; the supervisor starts it again). If no directory has all the
 * files, the child logs which it tried and answers page requests with a
 * 503 page saying so: it still runs, so a missing dashboard never stops the
 * node from starting (or systemd from getting READY=1).
 *
 * GET /config.json answers {"backends": ui_backends, "clusterId": ...,
 * "version": ...}: what the page scans for nodes.
 *
 * Every page file is sent with the Content-Security-Policy csp.h builds
 * for that request: connect-src is the exact origins of ui_backends plus
 * those the operator approved in the page (its ps_connect cookie), so the
 * browser itself keeps the page, and the API token it holds, away from
 * any other origin.
 */
#ifndef PROXYSTONE_UI_H
#define PROXYSTONE_UI_H

struct config;

#ifndef PS_UI_DIR
#define PS_UI_DIR "/usr/local/share/proxystone/ui"
#endif
#define UI_DIR_DEV "src/ui/static"

/* Child entry point (supervisor.h): runs until SIGTERM, then returns 0;
 * returns 1 if it cannot listen on api_host:ui_port.
 * sup_fd is the supervision pipe, -1 when run standalone. */
int ui_main(const struct config *cfg, int sup_fd);

#endif
