/*
 * bytes — fixed-width integers in byte buffers, and the filesystem helper
 * every durable file needs. One copy each: the snapshot, the write-ahead
 * log, IPC frames, sealed gossip headers and the gossip digest all use
 * these.
 *
 * Big-endian (network order) for our own file and frame headers;
 * little-endian for the gossip digest, whose wire format says so.
 */
#ifndef PROXYSTONE_BYTES_H
#define PROXYSTONE_BYTES_H

#include <stdint.h>

static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static inline uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* fsyncs the directory holding `path`, so that a file created or renamed
 * there survives a crash. 0, -ENAMETOOLONG or -errno. */
int fsync_dir(const char *path);

#endif
