/*
 * store — atomic, checked snapshots of the membership process's state.
 *
 * File layout (all integers big-endian):
 *
 *   +------+--------+--------+--------+---------------------------+
 *   | PSNP | format | length | crc32  | Ps__Snapshot (protobuf)   |
 *   |  4 B |  4 B   |  4 B   |  4 B   | `length` bytes            |
 *   +------+--------+--------+--------+---------------------------+
 *
 * Save: write <file>.tmp, fsync it, keep the current file as <file>.prev
 * (hard link, so <file> itself always exists), rename the temporary over
 * <file>, fsync the directory. A crash at any point leaves a complete old
 * or new snapshot.
 *
 * Load: every field is checked (magic, format, length bound, crc) before
 * unpacking; a damaged file is never half-loaded.
 */
#ifndef PROXYSTONE_STORE_H
#define PROXYSTONE_STORE_H

#include <stddef.h>

#include "proto/ipc.pb-c.h"

#define STORE_MAGIC "PSNP"
#define STORE_FORMAT 1
#define STORE_HEADER_LEN 16
/* 100,000 nodes at their bounds is far below this; a bigger file is damage. */
#define STORE_FILE_MAX (512u * 1024 * 1024)

uint32_t store_crc32(const void *data, size_t len);

/* 0, or -errno with a message in err. */
int store_save(const char *path, const Ps__Snapshot *snap, char *err,
	       size_t errlen);
/*
 * Loads and unpacks; the caller frees *out with ps__snapshot__free_unpacked.
 * -ENOENT no file; -EBADMSG damaged (err says how); other -errno on I/O.
 */
int store_load(const char *path, Ps__Snapshot **out, char *err, size_t errlen);

#endif
