/*
 * conn — proxystone-dump's two channels: the node's membership socket
 * (framed ipc.proto messages, include/proxystone/ipc.h) and its own stdout.
 *
 * Blocking and single-threaded: the tool asks one thing and then reads.
 * While it waits for the node it also watches stdout, so that
 * `proxystone-dump --follow | head -3` ends as soon as head does, not at
 * the next datagram.
 */
#ifndef PROXYSTONE_DUMP_CONN_H
#define PROXYSTONE_DUMP_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "proto/ipc.pb-c.h"
#include "proxystone/buf.h"

struct conn {
	int fd;
	struct buf rbuf; /* bytes read, not yet a whole frame */
};

/* Connects to the Unix socket at path. 0 or -errno (-ENOENT: no socket,
 * -ECONNREFUSED: nobody listening, -EACCES, -ENAMETOOLONG). */
int conn_open(struct conn *c, const char *path);
void conn_close(struct conn *c);
/* Sends one request. 0 or -errno. */
int conn_send(struct conn *c, const Ps__Request *req);
/*
 * Waits up to `timeout` seconds (< 0: forever) for the next reply.
 * 0 and *out, which the caller frees with ps__reply__free_unpacked(*out,
 * NULL); -ETIMEDOUT; -ECONNRESET (the node closed the connection);
 * -EMSGSIZE or -EBADMSG (a frame that is not a Reply); -EPIPE (stdout's
 * reader has gone: stop quietly); other -errno.
 */
int conn_next(struct conn *c, double timeout, Ps__Reply **out);

/* Writes all of data to stdout. 0, -EPIPE (reader gone), or -errno. */
int out_write(const void *data, size_t len);

#endif
