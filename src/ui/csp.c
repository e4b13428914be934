/*
 * csp — the dashboard's Content-Security-Policy; see
 * include/proxystone/csp.h.
 *
 * Everything that goes into the header is checked character by character
 * against a grammar narrower than CSP's own host-source (no '*', no quote,
 * no ';', no ',' and no blank can get through), so a Host header or cookie
 * can neither add a directive nor a wildcard.
 */
#include "proxystone/csp.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Longest DNS name (RFC 1035). */
#define CSP_DNS_MAX 253
/* "[" + the longest IPv6 text (45, with an embedded IPv4) + "]". */
#define CSP_IPV6_MAX 47

/* Everything but connect-src, which goes between the two halves. */
#define CSP_HEAD                                                               \
	"Content-Security-Policy: default-src 'none'; script-src 'self'; "     \
	"style-src 'self'; img-src 'self' data:; connect-src 'self'"
#define CSP_TAIL                                                               \
	"; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"

/* A DNS name or IPv4 address ([A-Za-z0-9.-], not starting with '.' or
 * '-'), or a bracketed IPv6 address. */
static bool host_ok(struct strview h)
{
	if (h.len == 0)
		return false;
	if (h.base[0] == '[') {
		if (h.len < 3 || h.len > CSP_IPV6_MAX ||
		    h.base[h.len - 1] != ']')
			return false;
		for (size_t i = 1; i + 1 < h.len; i++)
			if (!isxdigit((unsigned char)h.base[i]) &&
			    h.base[i] != ':' && h.base[i] != '.')
				return false;
		return true;
	}
	if (h.len > CSP_DNS_MAX || h.base[0] == '.' || h.base[0] == '-')
		return false;
	for (size_t i = 0; i < h.len; i++)
		if (!isalnum((unsigned char)h.base[i]) && h.base[i] != '.' &&
		    h.base[i] != '-')
			return false;
	return true;
}

/* 1 to 5 digits, 1-65535. */
static bool port_ok(struct strview p, long *out)
{
	long v = 0;
	if (p.len == 0 || p.len > 5)
		return false;
	for (size_t i = 0; i < p.len; i++) {
		if (!isdigit((unsigned char)p.base[i]))
			return false;
		v = v * 10 + (p.base[i] - '0');
	}
	*out = v;
	return v >= 1 && v <= 65535;
}

/* The same test as the page's isLoopback(). */
static bool host_loopback(struct strview h)
{
	return strview_eq(h, "localhost") || strview_eq(h, "[::1]") ||
	       (h.len > 4 && !memcmp(h.base, "127.", 4));
}

static bool host_same(struct strview a, struct strview b)
{
	return a.len == b.len && !strncasecmp(a.base, b.base, a.len);
}

/* " scheme://host:port", the host lower-cased (as the browser writes an
 * origin). */
static int put_origin(struct buf *out, const char *scheme, struct strview host,
		      long port)
{
	int rc = buf_printf(out, " %s://", scheme);
	for (size_t i = 0; !rc && i < host.len; i++)
		rc = buf_putc(out, (char)tolower((unsigned char)host.base[i]));
	return rc ? rc : buf_printf(out, ":%ld", port);
}

/* The host part of a Host header ("name", "name:port", "[v6]:port"); an
 * empty view if it is not well formed. */
static struct strview page_host(struct strview hdr)
{
	struct strview none = strview_make("", 0);
	size_t n = hdr.len;
	if (n && hdr.base[0] == '[') {
		const char *close = memchr(hdr.base, ']', n);
		if (!close)
			return none;
		n = (size_t)(close - hdr.base) + 1;
		if (n != hdr.len && hdr.base[n] != ':')
			return none;
	} else {
		const char *colon = memchr(hdr.base, ':', n);
		if (colon)
			n = (size_t)(colon - hdr.base);
	}
	struct strview h = strview_make(hdr.base, n);
	return host_ok(h) ? h : none;
}

/* Every origin ui_backends names ("h:p" or "h:p1-p2", comma-separated,
 * blanks around tokens; config.c has checked the syntax and the bound). */
static int put_backends(struct buf *out, const char *backends,
			struct strview here)
{
	bool rename = here.len && !host_loopback(here);
	const char *p = backends;
	while (*p) {
		const char *end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		while (p < end && *p == ' ')
			p++;
		const char *tend = end;
		while (tend > p && tend[-1] == ' ')
			tend--;
		const char *colon = NULL;
		for (const char *q = p; q < tend; q++)
			if (*q == ':')
				colon = q;
		const char *dash =
		    colon ? memchr(colon, '-', (size_t)(tend - colon)) : NULL;
		struct strview host =
		    strview_make(p, colon ? (size_t)(colon - p) : 0);
		const char *lo_end = dash ? dash : tend;
		long lo = 0, hi = 0;
		bool ok = colon && host_ok(host) &&
			  port_ok(strview_make(colon + 1,
					       (size_t)(lo_end - colon - 1)),
				  &lo);
		if (ok && dash)
			ok = port_ok(strview_make(dash + 1,
						  (size_t)(tend - dash - 1)),
				     &hi) &&
			     lo <= hi;
		else
			hi = lo;
		for (long port = lo; ok && port <= hi; port++) {
			int rc = put_origin(out, "http", host, port);
			if (!rc && rename && host_loopback(host) &&
			    !host_same(host, here))
				rc = put_origin(out, "http", here, port);
			if (rc)
				return rc;
		}
		p = *end ? end + 1 : end;
	}
	return 0;
}

/* One cookie entry "http://h:p" or "https://h:p"; 0 and its parts, or -1. */
static int origin_parse(struct strview o, const char **scheme,
			struct strview *host, long *port)
{
	size_t skip;
	if (o.len > 7 && !memcmp(o.base, "http://", 7)) {
		*scheme = "http";
		skip = 7;
	} else if (o.len > 8 && !memcmp(o.base, "https://", 8)) {
		*scheme = "https";
		skip = 8;
	} else {
		return -1;
	}
	const char *hb = o.base + skip, *end = o.base + o.len;
	const char *colon = NULL;
	for (const char *q = hb; q < end; q++)
		if (*q == ':')
			colon = q;
	if (!colon)
		return -1;
	*host = strview_make(hb, (size_t)(colon - hb));
	if (!host_ok(*host))
		return -1;
	return port_ok(strview_make(colon + 1, (size_t)(end - colon - 1)), port)
		   ? 0
		   : -1;
}

/* The value of cookie `name` in a Cookie header ("a=1; b=2"), or an empty
 * view. */
static struct strview cookie_value(struct strview hdr, const char *name)
{
	size_t nlen = strlen(name);
	const char *p = hdr.base, *end = hdr.base + hdr.len;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == ';'))
			p++;
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *stop = semi ? semi : end;
		if ((size_t)(stop - p) > nlen && !memcmp(p, name, nlen) &&
		    p[nlen] == '=')
			return strview_make(p + nlen + 1,
					    (size_t)(stop - p - nlen - 1));
		p = stop;
	}
	return strview_make("", 0);
}

/* The approved origins from the cookie, '|'-separated. */
static int put_approved(struct buf *out, struct strview list, int *dropped)
{
	int kept = 0;
	const char *p = list.base, *end = list.base + list.len;
	while (p < end) {
		const char *bar = memchr(p, '|', (size_t)(end - p));
		const char *stop = bar ? bar : end;
		const char *scheme;
		struct strview host;
		long port;
		if (stop > p) {
			if (kept < CSP_APPROVED_MAX &&
			    !origin_parse(strview_make(p, (size_t)(stop - p)),
					  &scheme, &host, &port)) {
				int rc = put_origin(out, scheme, host, port);
				if (rc)
					return rc;
				kept++;
			} else {
				(*dropped)++;
			}
		}
		p = bar ? bar + 1 : end;
	}
	return 0;
}

int csp_header(struct buf *out, const char *backends, struct strview host,
	       struct strview cookie, int *dropped)
{
	int ignored = 0;
	if (!dropped)
		dropped = &ignored;
	*dropped = 0;
	int rc = buf_puts(out, CSP_HEAD);
	if (!rc)
		rc = put_backends(out, backends, page_host(host));
	if (!rc)
		rc = put_approved(out, cookie_value(cookie, CSP_COOKIE),
				  dropped);
	return rc ? rc : buf_puts(out, CSP_TAIL);
}
