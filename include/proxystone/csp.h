/*
 * csp — the dashboard's Content-Security-Policy header, built per request.
 *
 * The page calls node APIs on other origins, with the operator's bearer
 * token. Which origins it may reach is the security boundary (issue 12:
 * a link with #backend=http://evil:port must not make the page talk to
 * evil), so the policy's connect-src names exact origins only, never a
 * scheme or a wildcard:
 *   - 'self' (the page's /config.json);
 *   - every origin ui_backends expands to ("h:p1-p2" -> http://h:p1 ...
 *     http://h:p2). A loopback host ("localhost", "[::1]", 127.x) is also
 *     listed under the name the page was loaded from (the request's Host,
 *     when it is a well-formed name and not loopback itself): the page
 *     reaches "this machine" by that name (app.js, localizeHost);
 *   - the origins the operator approved in the page, which the page lists
 *     in the CSP_COOKIE cookie ("http://h:p|https://h:p"). Each must be
 *     exactly scheme://host:port (http or https, a DNS name or a bracketed
 *     IPv6 address, a port 1-65535); anything else is dropped, and so is
 *     everything past CSP_APPROVED_MAX.
 * A cookie can widen the policy only: the page itself still refuses to
 * contact any origin that is neither configured nor in its own approval
 * list (localStorage, which another port of the same host cannot write,
 * unlike a cookie). The policy is the browser-enforced second wall.
 */
#ifndef PROXYSTONE_CSP_H
#define PROXYSTONE_CSP_H

#include "proxystone/buf.h"

/* Name of the cookie the page keeps its approved extra origins in. */
#define CSP_COOKIE "ps_connect"
/* Operator-approved origins reflected into one policy. An operator adds a
 * handful of hosts by hand; 16 keeps the header small (16 x CSP_ORIGIN_MAX
 * is about 4 KB) and bounds what a planted cookie can add. */
#define CSP_APPROVED_MAX 16
/* Longest origin written: "https://" + a 253-byte DNS name + ":65535". */
#define CSP_ORIGIN_MAX 272
/* Bound for the whole header line: ui_backends expands to at most 64 ports
 * (UI_BACKEND_PORTS_MAX in config.c), each listed at most twice (as
 * configured, and under the page's host name), plus CSP_APPROVED_MAX,
 * each at most CSP_ORIGIN_MAX, plus the fixed directives. */
#define CSP_HEADER_MAX                                                         \
	((64 * 2 + CSP_APPROVED_MAX) * (CSP_ORIGIN_MAX + 1) + 512)

/* Appends the line "Content-Security-Policy: ...\r\n" to out (whose bound
 * should be at least CSP_HEADER_MAX). backends is a ui_backends value as
 * config.c accepts it; host and cookie are the request's Host and Cookie
 * headers (either may be empty). *dropped (if not NULL) gets the number of
 * cookie entries left out (malformed or past CSP_APPROVED_MAX).
 * Returns 0 or -ENOSPC / -ENOMEM from out; on error out holds a partial
 * line and must not be sent. */
int csp_header(struct buf *out, const char *backends, struct strview host,
	       struct strview cookie, int *dropped);

#endif
