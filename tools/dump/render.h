/*
 * render — what proxystone-dump prints: the member table, one line per
 * traced datagram, a decoded datagram; each as text for people or as one
 * JSON object per line (json.h's writer, so always valid JSON).
 *
 * Every function appends to `out` and ends what it appends with '\n'.
 * Returns 0, or -ENOSPC / -ENOMEM from the buf (out may then hold part of
 * the output). Strings that came from the network are shown with control
 * characters replaced by '?' in text (they could drive the terminal);
 * JSON escapes them. Pure apart from reading the local time zone.
 */
#ifndef PROXYSTONE_DUMP_RENDER_H
#define PROXYSTONE_DUMP_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "proto/ipc.pb-c.h"
#include "proxystone/buf.h"
#include "proxystone/swim_proto.h"
#include "wire.h"

/* A get_members reply: header with the node's own identity, then the
 * table (self first, then by address). */
int render_members_text(const Ps__Reply *r, struct buf *out);
/* One object: {"self_id", "registry_version", "gossip", "members": [...]} */
int render_members_json(const Ps__Reply *r, struct buf *out);

/* "12:00:01.234 → 127.0.0.1:5402  ping  seq 17  61 B  3f2a1b2c alive 1" */
int render_trace_text(const Ps__Trace *t, struct buf *out);
int render_trace_json(const Ps__Trace *t, struct buf *out);
/* "(dropped N events: reader too slow)" / {"dropped": N} */
int render_dropped_text(uint64_t n, struct buf *out);
int render_dropped_json(uint64_t n, struct buf *out);

/* A datagram of `len` bytes that wire_check() and swim_decode() accepted. */
int render_packet_text(const struct swim_packet *p, const struct wire_info *wi,
		       size_t len, struct buf *out);
int render_packet_json(const struct swim_packet *p, const struct wire_info *wi,
		       size_t len, struct buf *out);
/* {"valid": false, "size", "error", "reason", "offset"} for a datagram
 * that wire_check() (code rc, sentence msg) rejected. */
int render_malformed_json(size_t len, const struct wire_info *wi, int rc,
			  const char *msg, struct buf *out);

#endif
