/*
 * ipc — length-prefixed protobuf frames over a Unix stream socket.
 *
 * Wire: 4-byte big-endian payload length, then the payload (one packed
 * protobuf message). The length is checked against IPC_FRAME_MAX before
 * anything is allocated. Used by the api process (client), the membership
 * process (server) and tools/dump (client).
 */
#ifndef PROXYSTONE_IPC_H
#define PROXYSTONE_IPC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "proxystone/buf.h"

struct ev_loop;

#define IPC_HEADER_LEN 4
/* Largest frame: a listing of REGISTRY_NODES_MAX nodes at their size bounds
 * does not fit, so listings are bounded by this and say so; 8 MiB holds
 * 10,000 typical nodes (~500 bytes each) with a wide margin. */
#define IPC_FRAME_MAX (8u * 1024 * 1024)
/* Queued output per connection: a few full frames. A reader further behind
 * than this is too slow and is disconnected (replies) or skipped (events). */
#define IPC_WBUF_MAX (4 * IPC_FRAME_MAX)
/* Bytes read per read() call. */
#define IPC_READ_CHUNK (64 * 1024)

/*
 * Looks for a whole frame at the start of data[0..avail).
 * Returns 1 and sets *payload, *plen and *frame_len (header + payload) when
 * one is there; 0 when more bytes are needed; -EMSGSIZE when the announced
 * length exceeds `max`.
 */
int ipc_frame_peek(const uint8_t *data, size_t avail, size_t max,
		   const uint8_t **payload, size_t *plen, size_t *frame_len);
/* Appends header + packed msg to out. -EMSGSIZE past IPC_FRAME_MAX,
 * -ENOSPC past out's bound. */
int ipc_frame_append(struct buf *out, const ProtobufCMessage *msg);

/* Socket set-up. Both return a non-blocking, close-on-exec fd or -errno. */
int ipc_listen(const char *path); /* unlinks a stale socket, mode 0600 */
int ipc_connect(
    const char *path); /* connection completes synchronously for AF_UNIX */

struct ipc_conn;
/* Called for each complete frame; data is valid only during the call. */
typedef void (*ipc_frame_fn)(struct ipc_conn *c, const uint8_t *data,
			     size_t len, void *ud);
/* Called exactly once when the connection ends (peer closed, error, bad
 * frame, or ipc_conn_close); the conn is freed right after it returns. */
typedef void (*ipc_close_fn)(struct ipc_conn *c, int reason, void *ud);

/* Takes ownership of fd. NULL on allocation failure (fd is closed). */
struct ipc_conn *ipc_conn_new(struct ev_loop *loop, int fd,
			      ipc_frame_fn on_frame, ipc_close_fn on_close,
			      void *ud);
/* Queues a frame. 0, -EMSGSIZE (message too big), -ENOBUFS (peer too far
 * behind: output bound reached; the frame is not queued). */
int ipc_conn_send(struct ipc_conn *c, const ProtobufCMessage *msg);
/* Queues bytes that already hold whole frames (from ipc_frame_append). */
int ipc_conn_send_frames(struct ipc_conn *c, const void *frames, size_t len);
/* Bytes queued and not yet written. */
size_t ipc_conn_pending(const struct ipc_conn *c);
/* Ends the connection; safe inside its own callbacks (the free is deferred
 * until the callback returns). */
void ipc_conn_close(struct ipc_conn *c, int reason);
void ipc_conn_set_ud(struct ipc_conn *c, void *ud);

#endif
