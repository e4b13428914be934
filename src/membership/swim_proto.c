/*
 * swim_proto — gossip datagrams to and from protobuf-c (see swim_proto.h).
 */
#include "proxystone/swim_proto.h"
#include "proxystone/bytes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

/* Wire size of a fixed32 field with a one-byte tag (fields 1..15). */
#define FIXED32_FIELD_SIZE 5
/* Largest UDP port. */
#define PORT_MAX 65535u

static const char *const status_names[] = {"alive", "suspect", "dead", "left",
					   "none"};
static const char *const msg_names[] = {
    "?", "ping", "ack", "ping-req", "nack", "gossip", "sync-req", "sync-rsp"};

const char *swim_status_name(enum swim_status st)
{
	if ((unsigned)st > SWIM_NONE)
		return "?";
	return status_names[st];
}

const char *swim_msg_type_name(enum swim_msg_type t)
{
	if ((unsigned)t > SWIM_MSG_TYPE_MAX)
		return "?";
	return msg_names[t];
}

int swim_id_parse(const char *str, struct swim_id *out)
{
	uuid_t u;

	if (str == NULL || strlen(str) != SWIM_ID_STR_LEN - 1 ||
	    uuid_parse(str, u) != 0)
		return -EINVAL;
	memcpy(out->b, u, SWIM_ID_LEN);
	return 0;
}

void swim_id_format(const struct swim_id *id, char out[SWIM_ID_STR_LEN])
{
	uuid_unparse_lower(id->b, out);
}

void swim_addr_format(const struct swim_addr *a, char out[SWIM_ADDR_STR_LEN])
{
	snprintf(out, SWIM_ADDR_STR_LEN, "%u.%u.%u.%u:%u", a->ip >> 24,
		 (a->ip >> 16) & 255, (a->ip >> 8) & 255, a->ip & 255, a->port);
}

static size_t varint_size(size_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static void fill_member(Gossip__Member *m, const struct swim_record *r)
{
	gossip__member__init(m);
	m->id.len = SWIM_ID_LEN;
	m->id.data = (uint8_t *)r->id.b;
	m->ip = r->addr.ip;
	m->port = r->addr.port;
	m->incarnation = r->incarnation;
	m->status = (Gossip__Status)r->status;
	if (r->meta_len > 0) {
		m->meta.len = r->meta_len;
		m->meta.data = (uint8_t *)r->meta;
	}
	if (r->has_from) {
		m->suspect_from.len = SWIM_ID_LEN;
		m->suspect_from.data = (uint8_t *)r->from.b;
	}
}

static bool record_ok(const struct swim_record *r)
{
	if ((unsigned)r->status > SWIM_LEFT || r->meta_len > SWIM_META_MAX)
		return false;
	if (r->meta_len > 0 && (r->meta == NULL || r->status != SWIM_ALIVE))
		return false;
	return true;
}

size_t swim_record_wire_size(const struct swim_record *r)
{
	Gossip__Member m;
	size_t body;

	fill_member(&m, r);
	body = gossip__member__get_packed_size(&m);
	/* Field 15, wire type 2: a one-byte tag, then the length varint. */
	return 1 + varint_size(body) + body;
}

int swim_encoder_begin(struct swim_encoder *e, const char *cluster,
		       const struct swim_header *h, size_t mtu)
{
	size_t clen = cluster ? strlen(cluster) : 0;
	Gossip__Packet *p = &e->pkt;

	if (clen > SWIM_CLUSTER_ID_MAX || mtu < SWIM_MTU_MIN ||
	    mtu > SWIM_MTU_MAX || h->type < SWIM_MSG_PING ||
	    h->type > SWIM_MSG_TYPE_MAX ||
	    (h->type == SWIM_MSG_PING_REQ && !h->has_target))
		return -EINVAL;
	e->hdr = *h;
	e->n = 0;
	e->mtu = mtu;
	gossip__packet__init(p);
	p->version = SWIM_PROTO_VERSION;
	p->cluster.len = clen;
	p->cluster.data = (uint8_t *)cluster;
	p->type = (Gossip__MsgType)h->type;
	p->seq = h->seq;
	p->sender_id.len = SWIM_ID_LEN;
	p->sender_id.data = e->hdr.sender.b;
	p->sender_ip = h->sender_addr.ip;
	p->sender_port = h->sender_addr.port;
	p->sender_incarnation = h->sender_incarnation;
	if (h->has_target) {
		p->target_id.len = SWIM_ID_LEN;
		p->target_id.data = e->hdr.target.b;
		p->target_ip = h->target_addr.ip;
		p->target_port = h->target_addr.port;
	}
	p->want_nack = h->want_nack;
	p->cursor = h->cursor;
	if (h->has_digest) {
		for (size_t i = 0; i < SWIM_DIGEST_RANGES; i++)
			put_le32(e->digest + 4 * i, h->digest[i]);
		p->digest.len = SWIM_DIGEST_BYTES;
		p->digest.data = e->digest;
	}
	p->n_updates = 0;
	p->updates = e->ptrs;
	/* `length` is filled in by finish; being a non-zero fixed32 it then
	 * always takes exactly FIXED32_FIELD_SIZE bytes. */
	p->length = 0;
	e->size = gossip__packet__get_packed_size(p) + FIXED32_FIELD_SIZE;
	if (e->size > mtu)
		return -EMSGSIZE;
	return 0;
}

int swim_encoder_add(struct swim_encoder *e, const struct swim_record *r)
{
	Gossip__Member *m;
	size_t body, framed;

	if (!record_ok(r))
		return -EINVAL;
	if (e->n >= SWIM_PACKET_RECORDS_MAX)
		return -ENOSPC;
	e->recs[e->n] = *r;
	m = &e->msgs[e->n];
	fill_member(m, &e->recs[e->n]);
	body = gossip__member__get_packed_size(m);
	framed = 1 + varint_size(body) + body;
	if (e->size + framed > e->mtu)
		return -EMSGSIZE;
	e->ptrs[e->n++] = m;
	e->pkt.n_updates = e->n;
	e->size += framed;
	return 0;
}

static size_t cursor_field_size(uint32_t v)
{
	return v == 0 ? 0 : 1 + varint_size(v); /* proto3 omits zero */
}

int swim_encoder_set_cursor(struct swim_encoder *e, uint32_t cursor)
{
	size_t size = e->size - cursor_field_size(e->pkt.cursor) +
		      cursor_field_size(cursor);

	if (size > e->mtu)
		return -EMSGSIZE;
	e->size = size;
	e->pkt.cursor = cursor;
	e->hdr.cursor = cursor;
	return 0;
}

int swim_encoder_finish(struct swim_encoder *e, uint8_t *buf, size_t cap)
{
	size_t len;

	if (cap < e->size)
		return -EMSGSIZE;
	e->pkt.length = (uint32_t)e->size;
	len = gossip__packet__pack(&e->pkt, buf);
	if (len != e->size)
		return -EPROTO; /* size bookkeeping out of step: a bug */
	return (int)len;
}

/* protobuf-c allocator over the decoder's arena, then the heap, both
 * within SWIM_DECODE_ALLOC_MAX. */
static void *arena_alloc(void *data, size_t size)
{
	struct swim_decoder *d = data;
	size_t need = (size + 15) & ~(size_t)15;
	void *p;

	if (need < size || need > SWIM_DECODE_ALLOC_MAX - d->total)
		return NULL;
	if (need <= SWIM_DECODE_ARENA - d->arena_used) {
		p = d->arena + d->arena_used;
		d->arena_used += need;
	} else {
		p = malloc(size);
		if (p == NULL)
			return NULL;
	}
	d->total += need;
	return p;
}

static void arena_free(void *data, void *ptr)
{
	struct swim_decoder *d = data;
	uintptr_t p = (uintptr_t)ptr, lo = (uintptr_t)d->arena;

	if (p >= lo && p < lo + SWIM_DECODE_ARENA)
		return; /* arena memory goes back all at once on release */
	free(ptr);
}

void swim_decoder_init(struct swim_decoder *d)
{
	d->msg = NULL;
	d->arena_used = 0;
	d->total = 0;
}

void swim_decoder_release(struct swim_decoder *d)
{
	ProtobufCAllocator a = {arena_alloc, arena_free, d};

	if (d->msg != NULL)
		gossip__packet__free_unpacked(d->msg, &a);
	d->msg = NULL;
	d->arena_used = 0;
	d->total = 0;
}

static bool id_ok(const ProtobufCBinaryData *b)
{
	return b->len == SWIM_ID_LEN && b->data != NULL;
}

static int check_member(const Gossip__Member *m, struct swim_record *r)
{
	if (!id_ok(&m->id) || m->port > PORT_MAX ||
	    (unsigned)m->status > SWIM_LEFT || m->meta.len > SWIM_META_MAX)
		return -EBADMSG;
	if (m->meta.len > 0 && m->status != GOSSIP__STATUS__STATUS_ALIVE)
		return -EBADMSG;
	if (m->suspect_from.len != 0 && !id_ok(&m->suspect_from))
		return -EBADMSG;
	memcpy(r->id.b, m->id.data, SWIM_ID_LEN);
	r->addr.ip = m->ip;
	r->addr.port = (uint16_t)m->port;
	r->incarnation = m->incarnation;
	r->status = (enum swim_status)m->status;
	r->meta_len = m->meta.len;
	r->meta = m->meta.len > 0 ? m->meta.data : NULL;
	r->has_from = m->suspect_from.len != 0;
	if (r->has_from)
		memcpy(r->from.b, m->suspect_from.data, SWIM_ID_LEN);
	return 0;
}

static int check_packet(const Gossip__Packet *p, const char *cluster,
			size_t len, struct swim_packet *out)
{
	struct swim_header *h = &out->hdr;
	size_t clen = strlen(cluster);

	/* Length first: a truncated datagram is malformed whatever the
	 * fields that survived say. Then the version: another version may
	 * give the other fields another meaning. */
	if (p->length != len)
		return -EBADMSG;
	if (p->version != SWIM_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	if (p->cluster.len > SWIM_CLUSTER_ID_MAX)
		return -EBADMSG;
	if (p->cluster.len != clen ||
	    (clen > 0 && memcmp(p->cluster.data, cluster, clen) != 0))
		return -EACCES;
	if (p->type < GOSSIP__MSG_TYPE__MSG_PING ||
	    (unsigned)p->type > SWIM_MSG_TYPE_MAX)
		return -EBADMSG;
	if (!id_ok(&p->sender_id) || p->sender_port > PORT_MAX)
		return -EBADMSG;
	if (p->target_id.len != 0 && !id_ok(&p->target_id))
		return -EBADMSG;
	if (p->type == GOSSIP__MSG_TYPE__MSG_PING_REQ &&
	    (p->target_id.len == 0 || p->target_port > PORT_MAX))
		return -EBADMSG;
	if (p->n_updates > SWIM_PACKET_RECORDS_MAX)
		return -EBADMSG;
	if (p->digest.len != 0 && p->digest.len != SWIM_DIGEST_BYTES)
		return -EBADMSG;

	memset(h, 0, sizeof(*h));
	h->type = (enum swim_msg_type)p->type;
	h->seq = p->seq;
	memcpy(h->sender.b, p->sender_id.data, SWIM_ID_LEN);
	h->sender_addr.ip = p->sender_ip;
	h->sender_addr.port = (uint16_t)p->sender_port;
	h->sender_incarnation = p->sender_incarnation;
	h->has_target = p->target_id.len != 0;
	if (h->has_target) {
		memcpy(h->target.b, p->target_id.data, SWIM_ID_LEN);
		h->target_addr.ip = p->target_ip;
		h->target_addr.port = (uint16_t)(p->target_port & PORT_MAX);
	}
	h->want_nack = p->want_nack;
	h->cursor = p->cursor;
	h->has_digest = p->digest.len != 0;
	for (size_t i = 0; h->has_digest && i < SWIM_DIGEST_RANGES; i++) {
		h->digest[i] = get_le32(p->digest.data + 4 * i);
	}
	out->n_records = p->n_updates;
	for (size_t i = 0; i < p->n_updates; i++) {
		if (p->updates[i] == NULL ||
		    check_member(p->updates[i], &out->records[i]) != 0)
			return -EBADMSG;
	}
	return 0;
}

int swim_decode(struct swim_decoder *d, const char *cluster, const uint8_t *buf,
		size_t len, struct swim_packet *out)
{
	ProtobufCAllocator a = {arena_alloc, arena_free, d};
	int rc;

	swim_decoder_release(d);
	if (buf == NULL || len == 0 || len > SWIM_MTU_MAX)
		return -EBADMSG;
	d->msg = gossip__packet__unpack(&a, len, buf);
	if (d->msg == NULL) {
		d->arena_used = 0;
		d->total = 0;
		return -EBADMSG;
	}
	rc = check_packet(d->msg, cluster, len, out);
	if (rc != 0)
		swim_decoder_release(d);
	return rc;
}
