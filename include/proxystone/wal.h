/*
 * wal — a write-ahead log of registry changes, so a durable change costs
 * O(change) bytes and one fdatasync per group commit instead of a whole
 * snapshot. The snapshot (store.h) stays the base; the log holds the
 * changes made since, and is reset whenever a new snapshot covers them.
 *
 * File layout (all integers big-endian):
 *
 *   header  +------+--------+
 *           | PWAL | format |                        once, 8 bytes
 *           |  4 B |  4 B   |
 *           +------+--------+
 *   batch   +--------+--------+--------+-----------------------------+
 *           | length | crc32  | offset | records (`length` bytes)    |
 *           |  4 B   |  4 B   |  8 B   |                             |
 *           +--------+--------+--------+-----------------------------+
 *   record  +--------+------+---------+------------------------------+
 *           | length | kind | version | body (`length` - 9 bytes)    |
 *           |  4 B   | 1 B  |  8 B    |                              |
 *           +--------+------+---------+------------------------------+
 *
 * One batch is what one wal_sync wrote: a single pwrite then fdatasync.
 * crc32 (store_crc32) covers `offset` and the records; `offset` is the
 * batch's own position in the file, so a batch that is not where it was
 * written (stale bytes, a misdirected write) does not verify. Bodies:
 *
 *   WAL_UPSERT   a packed Ps__Node: the whole entry after the change
 *   WAL_REMOVE   the node id, 1..NODE_ID_MAX bytes, no NUL
 *   WAL_SERVING  1 byte serving (0/1), 8 bytes changed_at_ms (int64)
 *
 * `version` is the registry version after the change.
 *
 * Why a checksum per batch rather than per record: after a crash the
 * pages of the last, unsynced write may reach the disk in any order, so
 * its middle can be zeros while its end is intact. Records framed one by
 * one would then look like "a bad record followed by good ones", which is
 * also what real damage looks like. A batch is all-or-nothing, and a bad
 * batch followed by a good one is damage, never a crash.
 *
 * Reading (wal_open, wal_replay), the first batch that does not verify
 * ends the log. Its bytes to the end of the file are a torn tail — the
 * write a crash interrupted, never acknowledged — unless one of these
 * shows they are damage (-EBADMSG):
 *   - a valid batch starts somewhere after it;
 *   - the bad batch is complete (its length fits in the file) and more
 *     bytes follow it: the last write always ends the file;
 *   - the bytes from it to the end exceed one batch (WAL_FRAME_HDR +
 *     WAL_BUFFER_MAX), more than a single write can tear;
 *   - its checksum verifies but a record inside does not decode: no crash
 *     does that, a bug or a newer format does.
 * Damage confined to the last batch cannot be told from a torn write:
 * that batch is ignored like one (and reported in ignored_tail).
 *
 * Errors: 0 or a negative errno; functions that take err write a message
 * there. Nothing here logs.
 */
#ifndef PROXYSTONE_WAL_H
#define PROXYSTONE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/ipc.pb-c.h"

#define WAL_MAGIC "PWAL"
/* A new record kind or layout needs a new format: an old reader must
 * refuse the file, not take unknown records for a torn tail. */
#define WAL_FORMAT 1
#define WAL_HEADER_LEN 8
#define WAL_FRAME_HDR 16
/* length + kind + version. */
#define WAL_RECORD_HDR 13

enum wal_kind {
	WAL_UPSERT = 1,
	WAL_REMOVE = 2,
	WAL_SERVING = 3,
};

/*
 * A record's length (kind + version + body), checked before anything is
 * allocated for it. The largest node is bounded by the request body that
 * registered it (HTTP_BODY_MAX_LIMIT, 16 MiB, mostly metadata JSON); the
 * 64 KiB on top covers the fields the server adds. A node at the default
 * bounds is about 30 KiB.
 */
#define WAL_RECORD_MAX (16u * 1024 * 1024 + 64 * 1024)
/*
 * Record bytes buffered between two wal_sync calls, hence the largest
 * batch. A record at WAL_RECORD_MAX fits, and so do ~100,000 typical
 * nodes (~300 B): many group commits' worth (COMMIT_PENDING_MAX = 4096
 * changes). Past it an append returns -ENOBUFS: sync, then append.
 */
#define WAL_BUFFER_MAX (32u * 1024 * 1024)

struct wal;

/*
 * Opens the log at path for appending, creating it (0600, O_CLOEXEC) with
 * its header if missing; the directory is fsynced so the file survives a
 * crash. Takes an exclusive flock: -EBUSY if another process has the log.
 * Reads the log through once: a torn tail is cut off (ftruncate +
 * fdatasync) so new batches follow the last valid one. Call wal_replay
 * first to apply the records; it reports the same tail.
 * Returns 0 (*out set; free with wal_close), -EBADMSG damaged or not a
 * log (the file is left as it is), other -errno on I/O; err says which.
 */
int wal_open(const char *path, struct wal **out, char *err, size_t errlen);

/* Closes the file. Records still buffered are dropped: wal_sync first. */
void wal_close(struct wal *w);

/*
 * Buffer one record; nothing is written until wal_sync. Records replay in
 * the order they were appended. Returns 0, -ENOBUFS (WAL_BUFFER_MAX
 * reached: wal_sync first; nothing was added), -EMSGSIZE (record over
 * WAL_RECORD_MAX), -EINVAL (n lacks a required field; id empty or longer
 * than NODE_ID_MAX), -ENOMEM.
 *
 * `version` is the registry version after the change. Replay skips records
 * with version <= the snapshot's, so every record appended after a
 * snapshot must carry a greater version than that snapshot — in
 * particular a serving change that does not bump the registry version must
 * not follow a snapshot at the same version without a wal_reset between.
 */
int wal_append_upsert(struct wal *w, const Ps__Node *n, uint64_t version);
int wal_append_remove(struct wal *w, const char *id, uint64_t version);
int wal_append_serving(struct wal *w, bool serving, int64_t changed_at_ms,
		       uint64_t version);

/*
 * Writes the buffered records as one batch and fdatasyncs. When it returns
 * 0 they survive a crash (0 at once when nothing is buffered). On failure
 * (-ENOSPC, -EIO, -EFBIG...) the file is cut back to its last synced
 * length, or the cut is retried by the next call, and the records stay
 * buffered: call again later to write them. A crash after a failed call
 * may keep or lose them, never half of a batch.
 */
int wal_sync(struct wal *w);

/* Record bytes in the log as of the last wal_sync (0 after a reset): the
 * figure to compare with a compaction threshold. */
size_t wal_size(const struct wal *w);

/* Record bytes buffered, not yet synced. */
size_t wal_pending(const struct wal *w);

/* Drops the buffered records: after a failed wal_sync, for changes that
 * were refused and undone, so that no later sync writes them. Bytes a
 * failed sync may have left past the synced length are still cut by the
 * next wal_sync. */
void wal_discard(struct wal *w);

/*
 * After a snapshot that covers every change so far: empties the log (to
 * its header) and fdatasyncs. Buffered records are dropped too — the
 * snapshot covers them. On failure the old records may remain; they are
 * all covered by that snapshot, and replay skips them by version.
 */
int wal_reset(struct wal *w);

/*
 * Callbacks for wal_replay. A NULL callback skips that kind. The node and
 * id are valid only during the call (copy what you keep). A non-zero
 * return stops the replay and is returned by wal_replay.
 */
struct wal_replay_ops {
	int (*upsert)(void *ud, const Ps__Node *n, uint64_t version);
	int (*remove)(void *ud, const char *id, uint64_t version);
	int (*serving)(void *ud, bool serving, int64_t changed_at_ms,
		       uint64_t version);
};

/*
 * Reads the log at path (without changing it) and calls ops for each
 * record with version > since_version, in order. The whole file is
 * verified first: on -EBADMSG no callback has been called. *ignored_tail
 * gets the bytes of a torn tail that were not replayed (0 normally).
 * ops may be NULL: verify only.
 * Returns 0, -ENOENT no log, -EBADMSG damaged or not a log (err says
 * where), a callback's non-zero return, other -errno on I/O.
 */
int wal_replay(const char *path, uint64_t since_version,
	       const struct wal_replay_ops *ops, void *ud, size_t *ignored_tail,
	       char *err, size_t errlen);

#endif
