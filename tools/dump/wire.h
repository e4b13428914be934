/*
 * wire — says precisely what is wrong with a raw gossip datagram.
 *
 * swim_decode() (include/proxystone/swim_proto.h) answers "valid or not"
 * with one of three codes; an operator holding a captured packet or a
 * fuzzer finding wants to know *where* and *why*. wire_check() walks the
 * protobuf encoding of gossip.Packet byte by byte with exactly the rules of
 * protobuf-c 1.4 (tag, varint and length-prefix bounds, wire type per
 * field), then applies the checks of swim_decode in the same order, and
 * puts the first problem it finds into a sentence that names the byte
 * offset, the field and the bound.
 *
 * Pure: no allocation, no system calls; (buf, len) in, verdict out.
 */
#ifndef PROXYSTONE_DUMP_WIRE_H
#define PROXYSTONE_DUMP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxystone/swim_proto.h"

/* Longest sentence wire_check() writes; callers size err with it. */
#define WIRE_ERR_MAX 320

/* What the walk saw, valid or not (fields not reached stay zero). */
struct wire_info {
	uint32_t version;
	uint8_t cluster[SWIM_CLUSTER_ID_MAX]; /* first cluster_len bytes */
	size_t cluster_len;		      /* as on the wire, may exceed
						 SWIM_CLUSTER_ID_MAX */
	bool has_length;
	uint32_t length; /* the datagram's own length field */
	size_t n_updates;
	size_t n_unknown;  /* fields no decoder knows (skipped, counted) */
	size_t bad_offset; /* where the problem is; SIZE_MAX if nowhere */
};

/*
 * Checks one datagram of `len` bytes. `cluster` is the cluster id the
 * reader expects, or NULL to accept any.
 *
 * Returns what swim_decode() would: 0 (valid); -EBADMSG (malformed,
 * including truncated); -EPROTONOSUPPORT (another protocol version);
 * -EACCES (another cluster). On error, err (errlen bytes, WIRE_ERR_MAX is
 * enough) holds one sentence saying what and where. `info` is filled as
 * far as the walk got.
 */
int wire_check(const uint8_t *buf, size_t len, const char *cluster,
	       struct wire_info *info, char *err, size_t errlen);

#endif
