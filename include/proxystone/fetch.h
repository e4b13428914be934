/*
 * fetch — a small non-blocking HTTP/1.1 GET client on a libev loop.
 *
 * The membership process of a worker uses it to pull the registry replica
 * from the coordinator's API (GET /api/cluster/replica, protobuf body). One
 * fetch is one TCP connection and one request:
 *
 *   GET <path> HTTP/1.1
 *   Host: <host>:<port>
 *   Accept: application/x-protobuf, * / *   (written without the spaces)
 *   Connection: close
 *
 * The response is parsed with http_parser (HTTP_RESPONSE mode); bodies
 * framed by Content-Length, by chunked transfer coding, or by the end of
 * the connection are all accepted. Interim 1xx responses (other than 101)
 * are skipped. Only the status and the body are reported; headers are not.
 *
 * Nothing here blocks the loop, with one exception: a host that is not a
 * numeric IPv4/IPv6 address (e.g. "localhost") is resolved with a plain
 * getaddrinfo() inside fetch_get(), which may block briefly (on /etc/hosts
 * or DNS). Give numeric addresses where that matters. When a name yields
 * several addresses they are tried in order until one connects.
 *
 * Bounds: the body is checked against body_max as bytes arrive (a
 * Content-Length above it is refused before any body byte is read); the
 * response head against FETCH_HEAD_MAX; the wire bytes against body_max
 * times a framing factor, so a server cannot stream chunk framing forever.
 * One deadline covers the whole operation: connect, send and receive.
 */
#ifndef PROXYSTONE_FETCH_H
#define PROXYSTONE_FETCH_H

#include <stddef.h>

#include <ev.h>

/* Default body bound: a registry replica of ~10,000 nodes packs to a few
 * MiB; 8 MiB leaves room without letting a broken server pin much memory. */
#define FETCH_BODY_MAX_DEFAULT (8u * 1024 * 1024)

struct fetch;

/*
 * Called exactly once per fetch that fetch_get() returned, unless it was
 * cancelled. status is either the HTTP status code (> 0; any code, 404 and
 * 500 included, is passed through) with the body, or a negative errno with
 * body NULL and len 0:
 *   -ETIMEDOUT     the deadline passed first;
 *   -ECONNREFUSED, -EHOSTUNREACH, -ECONNRESET, ...   from the socket;
 *   -EMSGSIZE      body over body_max, or framing over the wire bound;
 *   -EPROTO        malformed, truncated or oversized-head response, or
 *                  the connection ended before the response was complete;
 *   -ENOMEM        out of memory.
 * On success body points to len bytes followed by a NUL that is not
 * counted (never NULL, even when len is 0). body is valid only during the
 * call. The fetch is freed right after the callback returns: do not call
 * fetch_cancel() on it from inside the callback. The callback may start
 * new fetches and may stop or break the loop.
 */
typedef void (*fetch_done_fn)(void *ud, int status, const char *body,
			      size_t len);

/*
 * Starts GET http://host:port/path on loop. host is a numeric IPv4 or IPv6
 * address (brackets optional: "::1" or "[::1]") or a name (resolved
 * synchronously, see above); port is 1..65535; path starts with '/' and
 * holds no spaces or control characters; timeout (seconds, > 0) bounds the
 * whole operation; body_max bounds the body in bytes (0 means
 * FETCH_BODY_MAX_DEFAULT).
 *
 * Returns the fetch, or NULL with errno set on immediate failure: EINVAL
 * (bad argument), ENOENT (host did not resolve), EAGAIN (resolver
 * temporarily failed), ENOMEM. cb is then NOT called. Every failure after a
 * fetch was returned — including a connect refused at once — is reported
 * through cb from the loop, never from inside fetch_get().
 */
struct fetch *fetch_get(struct ev_loop *loop, const char *host, int port,
			const char *path, double timeout, size_t body_max,
			fetch_done_fn cb, void *ud);

/* The same, sending `Authorization: Bearer <bearer>` when bearer is not
 * NULL (no spaces or control characters allowed in it). */
struct fetch *fetch_get_auth(struct ev_loop *loop, const char *host, int port,
			     const char *path, const char *bearer,
			     double timeout, size_t body_max, fetch_done_fn cb,
			     void *ud);

/*
 * Cancels a fetch whose callback has not run: closes the connection and
 * frees everything; cb is not called. f must be a live fetch (not yet
 * completed or cancelled). NULL is ignored.
 */
void fetch_cancel(struct fetch *f);

#endif
