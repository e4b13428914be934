/*
 * swim_proto — the gossip wire format: one protobuf-c `gossip.Packet`
 * (proto/gossip.proto) per UDP datagram, never larger than the sender's MTU.
 *
 * +--------------------------- one UDP datagram (<= mtu) ----------------+
 * | Packet {                                                             |
 * |   1  version             uint32  SWIM_PROTO_VERSION, else dropped     |
 * |   2  cluster             bytes   <= SWIM_CLUSTER_ID_MAX, must match   |
 * |   3  type                enum    PING ACK PING_REQ NACK GOSSIP        |
 * |                                  SYNC_REQ SYNC_RSP                    |
 * |   4  seq                 uint64  sender's counter; ACK/NACK echo it   |
 * |   5  sender_id           bytes   16-byte UUID                         |
 * |   6  sender_ip           fixed32 sender's advertised IPv4 address     |
 * |   7  sender_port         uint32  <= 65535                             |
 * |   8  sender_incarnation  uint64                                       |
 * |   9  target_id           bytes   PING: who must answer (empty: join)  |
 * |                                  PING_REQ: whom to probe              |
 * |  10  target_ip           fixed32 PING_REQ                             |
 * |  11  target_port         uint32  PING_REQ                             |
 * |  12  want_nack           bool    PING_REQ                             |
 * |  13  cursor              uint32  SYNC_REQ: first slot wanted          |
 * |                                  SYNC_RSP: next slot, 0 = end         |
 * |  14  length              fixed32 datagram length: a truncated prefix   |
 * |                                  never matches, even at a field edge  |
 * |  15  updates[]           Member, <= SWIM_PACKET_RECORDS_MAX:          |
 * |      { 1 id  2 ip  3 port  4 incarnation  5 status                   |
 * |        6 meta (ALIVE, <= SWIM_META_MAX)  7 suspect_from (SUSPECT) }   |
 * |  16  digest              bytes   SYNC_REQ: SWIM_DIGEST_RANGES x u32le |
 * | }                                                                    |
 * +----------------------------------------------------------------------+
 *
 * Every message type carries updates: they are piggybacked on probes and
 * acks (SWIM's dissemination), fill GOSSIP datagrams, and are the table
 * slices of SYNC_REQ/SYNC_RSP (anti-entropy).
 *
 * Encoding is incremental: swim_encoder_begin() fixes the header, each
 * swim_encoder_add() appends one record if it still fits the MTU (the exact
 * packed size is tracked, no trial packing), swim_encoder_finish() packs.
 *
 * Decoding never trusts the input: the datagram length is checked against
 * SWIM_MTU_MAX before protobuf-c sees it, protobuf-c allocates from a bounded
 * arena (a hostile datagram cannot make it allocate more than
 * SWIM_DECODE_ALLOC_MAX), and every length and enum of the result is checked
 * against its bound before a field is used.
 */
#ifndef PROXYSTONE_SWIM_PROTO_H
#define PROXYSTONE_SWIM_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/gossip.pb-c.h"

/* Wire version. Bump on any change of meaning; peers drop other versions. */
#define SWIM_PROTO_VERSION 1
/* Member ids are binary UUIDs (RFC 4122): 16 bytes on the wire instead of
 * the 36 of the text form, which matters with ~40 records per datagram. */
#define SWIM_ID_LEN 16
/* Text form "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" plus NUL. */
#define SWIM_ID_STR_LEN 37
/* Application payload per member (heartbeat: status, serving mode, load,
 * memory, connections, role, api url). 256 bytes keeps an ALIVE record a
 * fifth of a 1400-byte datagram so updates still share it with others. */
#define SWIM_META_MAX 256
/* Same bound as the node configuration's cluster_id (CONFIG_CLUSTER_ID_MAX):
 * the id travels in every datagram, so it is kept short. */
#define SWIM_CLUSTER_ID_MAX 64
/* Smallest MTU accepted: 576 bytes every IPv4 host must reassemble
 * (RFC 791) less 28 bytes of IP and UDP headers. A full-size header plus
 * one ALIVE record with SWIM_META_MAX bytes of meta fits in it. */
#define SWIM_MTU_MIN 548
/* Largest UDP payload over IPv4 (65535 - 20 - 8). Datagrams longer than
 * this cannot exist; the decoder rejects them before parsing. */
#define SWIM_MTU_MAX 65507
/* Records per datagram. A real record (id, address, incarnation) takes
 * about 30 bytes on the wire, so a 1400-byte datagram holds ~45; 64 bounds
 * the per-datagram work of both sides whatever the MTU. */
#define SWIM_PACKET_RECORDS_MAX 64
/* Anti-entropy digest: the member table is cut into 64 ranges by id hash,
 * each summarized by the XOR of a 32-bit hash of its members' (id,
 * incarnation, status). 64 x 4 bytes plus a header fit SWIM_MTU_MIN; with
 * ~16 members per range at 1,000 members, a differing range costs a
 * fraction of a datagram to repair. */
#define SWIM_DIGEST_RANGES 64
#define SWIM_DIGEST_BYTES (SWIM_DIGEST_RANGES * 4)
/* Decoder arena, on the caller's stack: a full 1400-byte datagram of
 * records unpacks into well under 16 KiB of protobuf-c structures. */
#define SWIM_DECODE_ARENA 32768
/* Total bytes protobuf-c may allocate for one datagram (arena + heap). A
 * valid datagram of SWIM_PACKET_RECORDS_MAX records with full meta needs
 * about 40 KiB; a 64 KiB datagram of empty records would need ~3 MiB, and
 * is refused here instead. */
#define SWIM_DECODE_ALLOC_MAX (256 * 1024)

struct swim_id {
	uint8_t b[SWIM_ID_LEN];
};

/* An IPv4 UDP endpoint, both fields in host byte order. */
struct swim_addr {
	uint32_t ip;
	uint16_t port;
};

/* Values equal the wire enum gossip.Status. */
enum swim_status {
	SWIM_ALIVE = 0,
	SWIM_SUSPECT = 1,
	SWIM_DEAD = 2,
	SWIM_LEFT = 3,
	SWIM_NONE = 4, /* not (or no longer) in the member table */
};

/* Values equal the wire enum gossip.MsgType. */
enum swim_msg_type {
	SWIM_MSG_PING = 1,
	SWIM_MSG_ACK = 2,
	SWIM_MSG_PING_REQ = 3,
	SWIM_MSG_NACK = 4,
	SWIM_MSG_GOSSIP = 5,
	SWIM_MSG_SYNC_REQ = 6,
	SWIM_MSG_SYNC_RSP = 7,
};
#define SWIM_MSG_TYPE_MAX SWIM_MSG_SYNC_RSP

/* One member record. `meta` is borrowed: on encode it must stay valid until
 * swim_encoder_finish(); on decode it points into the decoder. */
struct swim_record {
	struct swim_id id;
	struct swim_addr addr;
	uint64_t incarnation;
	enum swim_status status; /* never SWIM_NONE */
	bool has_from;		 /* SUSPECT: `from` suspects the member */
	struct swim_id from;
	const uint8_t *meta; /* ALIVE only; NULL when meta_len is 0 */
	size_t meta_len;     /* <= SWIM_META_MAX */
};

struct swim_header {
	enum swim_msg_type type;
	uint64_t seq;
	struct swim_id sender;
	struct swim_addr sender_addr;
	uint64_t sender_incarnation;
	bool has_target; /* PING (optional), PING_REQ (required) */
	struct swim_id target;
	struct swim_addr target_addr; /* PING_REQ */
	bool want_nack;		      /* PING_REQ */
	uint32_t cursor;	      /* SYNC_REQ, SYNC_RSP */
	bool has_digest;	      /* SYNC_REQ (periodic anti-entropy) */
	uint32_t digest[SWIM_DIGEST_RANGES];
};

/* A decoded datagram. */
struct swim_packet {
	struct swim_header hdr;
	size_t n_records;
	struct swim_record records[SWIM_PACKET_RECORDS_MAX];
};

const char *swim_status_name(enum swim_status st);
/* "ping", "ack", ...; "?" for an unknown value. */
const char *swim_msg_type_name(enum swim_msg_type t);

/* 0, or -EINVAL if `str` is not a UUID in text form. */
int swim_id_parse(const char *str, struct swim_id *out);
/* Lower-case text form. */
void swim_id_format(const struct swim_id *id, char out[SWIM_ID_STR_LEN]);
/* "a.b.c.d:port" plus NUL: at most 21 bytes. */
#define SWIM_ADDR_STR_LEN 22
void swim_addr_format(const struct swim_addr *a, char out[SWIM_ADDR_STR_LEN]);
static inline bool swim_id_eq(const struct swim_id *a, const struct swim_id *b)
{
	return memcmp(a->b, b->b, SWIM_ID_LEN) == 0;
}

static inline bool swim_addr_eq(const struct swim_addr *a,
				const struct swim_addr *b)
{
	return a->ip == b->ip && a->port == b->port;
}

/*
 * Encoder. Storage owned by the caller (a few tens of KiB: keep one per
 * instance, not on a small stack). Between begin and finish, the cluster
 * string and every added record's meta must stay valid.
 */
struct swim_encoder {
	Gossip__Packet pkt;
	Gossip__Member msgs[SWIM_PACKET_RECORDS_MAX];
	Gossip__Member *ptrs[SWIM_PACKET_RECORDS_MAX];
	struct swim_header hdr;
	struct swim_record recs[SWIM_PACKET_RECORDS_MAX];
	uint8_t digest[SWIM_DIGEST_BYTES];
	size_t n;    /* records added */
	size_t size; /* exact packed size of what was added so far */
	size_t mtu;  /* bound on size */
};

/* Starts a datagram. 0, or -EINVAL (bad header, cluster id longer than
 * SWIM_CLUSTER_ID_MAX, mtu out of [SWIM_MTU_MIN, SWIM_MTU_MAX]), or
 * -EMSGSIZE if the header alone does not fit `mtu`. */
int swim_encoder_begin(struct swim_encoder *e, const char *cluster,
		       const struct swim_header *h, size_t mtu);
/* Appends a record. 0; -EMSGSIZE if it would pass the MTU (the encoder is
 * unchanged, a smaller record may still fit); -ENOSPC once
 * SWIM_PACKET_RECORDS_MAX records are in; -EINVAL for a bad record. */
int swim_encoder_add(struct swim_encoder *e, const struct swim_record *r);
/* Sets the header's cursor once the records are in (a table slice knows
 * where it ends only then). Begin with cursor UINT32_MAX to reserve the
 * most room; a smaller value then always fits. 0 or -EMSGSIZE. */
int swim_encoder_set_cursor(struct swim_encoder *e, uint32_t cursor);
/* Bytes the datagram would take now. */
static inline size_t swim_encoder_size(const struct swim_encoder *e)
{
	return e->size;
}
/* Bytes still free under the MTU. */
static inline size_t swim_encoder_room(const struct swim_encoder *e)
{
	return e->mtu - e->size;
}
/* Packs into buf (cap >= swim_encoder_size()). Returns the datagram length,
 * or -EMSGSIZE if cap is too small. The encoder may then be begun again. */
int swim_encoder_finish(struct swim_encoder *e, uint8_t *buf, size_t cap);
/* Bytes a record adds to a datagram (tag, length prefix and body). */
size_t swim_record_wire_size(const struct swim_record *r);

/*
 * Decoder. Storage owned by the caller (about SWIM_DECODE_ARENA bytes, fine
 * on the stack of the receive path). One datagram at a time: the records'
 * meta pointers of a decoded packet stay valid until swim_decoder_release()
 * or the next swim_decode().
 */
struct swim_decoder {
	Gossip__Packet *msg; /* the unpacked datagram, NULL if none */
	size_t arena_used;   /* bytes handed out from arena */
	size_t total;	     /* bytes handed out in all, <= DECODE_ALLOC_MAX */
	_Alignas(16) uint8_t arena[SWIM_DECODE_ARENA];
};

void swim_decoder_init(struct swim_decoder *d);
/*
 * Decodes one datagram of `len` bytes into `out`.
 * Returns 0;
 *   -EBADMSG         malformed: truncated, bad protobuf, a length or enum
 *                    outside its bound, a missing required field;
 *   -EPROTONOSUPPORT another protocol version;
 *   -EACCES          another cluster (cluster id differs from `cluster`).
 * On error `out` is unspecified and nothing needs releasing.
 */
int swim_decode(struct swim_decoder *d, const char *cluster, const uint8_t *buf,
		size_t len, struct swim_packet *out);
/* Frees the last decoded datagram. Safe to call when there is none. */
void swim_decoder_release(struct swim_decoder *d);

#endif
