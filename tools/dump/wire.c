/*
 * wire — a byte-by-byte walk of a gossip datagram (see wire.h).
 *
 * The walk follows protobuf-c 1.4's unpacker (protobuf-c.c:
 * parse_tag_and_wiretype, the scan loop of protobuf_c_message_unpack,
 * scan_length_prefixed_data, parse_required_member) so that its verdict
 * matches the node's; then the checks of swim_proto.c check_packet and
 * check_member run in their order. tests/unit/test_dump.c holds the two
 * verdicts equal over every truncated prefix and many mutations.
 */
#include "proxystone/bytes.h"
#include "wire.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Wire types of the protobuf encoding. */
enum {
	WT_VARINT = 0,
	WT_I64 = 1,
	WT_LEN = 2,
	WT_GROUP_START = 3,
	WT_GROUP_END = 4,
	WT_I32 = 5,
	WT_ANY = -1, /* protobuf-c reads a bool from any wire type */
};

/* protobuf-c 1.4 bounds: a tag takes at most 5 bytes, a varint at most
 * 10, a length prefix at most 5 bytes announcing at most INT_MAX. */
#define TAG_BYTES_MAX 5
#define VARINT_BYTES_MAX 10
#define LEN_PREFIX_BYTES_MAX 5
#define LEN_VALUE_MAX ((size_t)INT_MAX)
/* Largest UDP port. */
#define PORT_MAX 65535u

struct field_def {
	uint32_t num;
	const char *name;
	int wt;
};

/* gossip.Packet, proto/gossip.proto */
enum {
	P_VERSION = 1,
	P_CLUSTER = 2,
	P_TYPE = 3,
	P_SENDER_ID = 5,
	P_SENDER_PORT = 7,
	P_TARGET_ID = 9,
	P_TARGET_PORT = 11,
	P_LENGTH = 14,
	P_UPDATES = 15,
	P_DIGEST = 16,
};
static const struct field_def packet_defs[] = {
    {1, "version", WT_VARINT},	    {2, "cluster", WT_LEN},
    {3, "type", WT_VARINT},	    {4, "seq", WT_VARINT},
    {5, "sender_id", WT_LEN},	    {6, "sender_ip", WT_I32},
    {7, "sender_port", WT_VARINT},  {8, "sender_incarnation", WT_VARINT},
    {9, "target_id", WT_LEN},	    {10, "target_ip", WT_I32},
    {11, "target_port", WT_VARINT}, {12, "want_nack", WT_ANY},
    {13, "cursor", WT_VARINT},	    {14, "length", WT_I32},
    {15, "updates", WT_LEN},	    {16, "digest", WT_LEN},
};

/* gossip.Member */
enum {
	M_ID = 1,
	M_PORT = 3,
	M_STATUS = 5,
	M_META = 6,
	M_SUSPECT_FROM = 7,
};
static const struct field_def member_defs[] = {
    {1, "id", WT_LEN},		 {2, "ip", WT_I32},
    {3, "port", WT_VARINT},	 {4, "incarnation", WT_VARINT},
    {5, "status", WT_VARINT},	 {6, "meta", WT_LEN},
    {7, "suspect_from", WT_LEN},
};

#define N_DEFS(a) (sizeof(a) / sizeof((a)[0]))

static const char *const wt_names[] = {
    "varint",	 "64-bit", "length-delimited", "group start",
    "group end", "32-bit", "invalid",	       "invalid"};

/* What is being walked: the datagram, or one record inside it. */
struct scope {
	const uint8_t *buf;
	size_t len; /* of the whole datagram */
	size_t start, end;
	const struct field_def *defs;
	size_t n_defs;
	bool record;   /* an updates[] record */
	size_t index;  /* record number */
	size_t rec_at; /* offset of the record's tag */
	struct wire_info *info;
	char *err;
	size_t errlen;
};

/* One field as the unpacker sees it. */
struct field {
	uint32_t num;
	int wt;
	const struct field_def *def; /* NULL: unknown to this version */
	size_t at;		     /* offset of the tag */
	size_t val;		     /* offset of the value (payload) */
	size_t vlen;		     /* bytes of the value (payload) */
};

/* A record's fields as check_member reads them (the last occurrence of a
 * field wins, as in protobuf-c). */
struct record_view {
	size_t at;
	size_t id_len;
	uint32_t port;
	uint32_t status;
	size_t meta_len;
	size_t from_len;
};

struct packet_view {
	uint32_t type;
	size_t sender_id_len;
	uint32_t sender_port;
	size_t target_id_len;
	uint32_t target_port;
	size_t digest_len;
	size_t cluster_off;
	struct record_view recs[SWIM_PACKET_RECORDS_MAX];
};

static int say(struct scope *s, size_t off, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int say(struct scope *s, size_t off, int rc, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	s->info->bad_offset = off;
	if (s->errlen == 0)
		return rc;
	if (s->record)
		n = snprintf(s->err, s->errlen,
			     "record updates[%zu] at offset %zu: ", s->index,
			     s->rec_at);
	if (n < 0 || (size_t)n >= s->errlen)
		return rc;
	va_start(ap, fmt);
	vsnprintf(s->err + n, s->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return rc;
}

static const struct field_def *find_def(const struct scope *s, uint32_t num)
{
	for (size_t i = 0; i < s->n_defs; i++)
		if (s->defs[i].num == num)
			return &s->defs[i];
	return NULL;
}

static const char *field_name(const struct field *f)
{
	return f->def ? f->def->name : "unknown";
}

/* The bytes ran out inside field f: the datagram is cut short (or, inside
 * a record, the record's own fields disagree with its length). */
static int ran_out(struct scope *s, const struct field *f, const char *what)
{
	if (s->record)
		return say(s, f->at, -EBADMSG,
			   "field %u (%s) at offset %zu overruns the record: "
			   "%s",
			   f->num, field_name(f), f->at, what);
	if (s->info->has_length && s->info->length > s->len)
		return say(s, f->at, -EBADMSG,
			   "truncated: the datagram ends inside field %u (%s) "
			   "at offset %zu: %s; its length field says %u bytes, "
			   "%zu are present",
			   f->num, field_name(f), f->at, what, s->info->length,
			   s->len);
	return say(s, f->at, -EBADMSG,
		   "truncated: the datagram ends inside field %u (%s) at "
		   "offset %zu: %s",
		   f->num, field_name(f), f->at, what);
}

/* protobuf-c's parse_uint32: the low 32 bits of the first 5 bytes. */
static uint32_t pc_uint32(const uint8_t *d, size_t n)
{
	uint32_t v = d[0] & 0x7f;

	if (n > 1)
		v |= (uint32_t)(d[1] & 0x7f) << 7;
	if (n > 2)
		v |= (uint32_t)(d[2] & 0x7f) << 14;
	if (n > 3)
		v |= (uint32_t)(d[3] & 0x7f) << 21;
	if (n > 4)
		v |= (uint32_t)d[4] << 28;
	return v;
}

/* Tag at *pos: 0 and f->num, f->wt, f->at, or an error. */
static int read_tag(struct scope *s, size_t pos, struct field *f, size_t *n)
{
	const uint8_t *b = s->buf + pos;
	size_t rem = s->end - pos;
	size_t max = rem < TAG_BYTES_MAX ? rem : TAG_BYTES_MAX;
	uint32_t tag = (uint32_t)(b[0] & 0x7f) >> 3;
	unsigned shift = 4;

	f->at = pos;
	if ((b[0] & 0xf8) == 0)
		return say(s, pos, -EBADMSG,
			   "byte 0x%02x at offset %zu is not a field tag "
			   "(field number 0)",
			   b[0], pos);
	f->wt = b[0] & 7;
	if ((b[0] & 0x80) == 0) {
		f->num = tag;
		*n = 1;
		return 0;
	}
	for (size_t i = 1; i < max; i++) {
		if (b[i] & 0x80) {
			tag |= (uint32_t)(b[i] & 0x7f) << shift;
			shift += 7;
			continue;
		}
		tag |= (uint32_t)b[i] << shift;
		f->num = tag;
		*n = i + 1;
		return 0;
	}
	if (max < TAG_BYTES_MAX) {
		if (s->record)
			return say(s, pos, -EBADMSG,
				   "the field tag at offset %zu overruns the "
				   "record",
				   pos);
		return say(s, pos, -EBADMSG,
			   "truncated: the datagram ends inside the field tag "
			   "at offset %zu",
			   pos);
	}
	return say(s, pos, -EBADMSG,
		   "the field tag at offset %zu is longer than %d bytes", pos,
		   TAG_BYTES_MAX);
}

/* Field at *pos, tag and value; advances *pos past it. */
static int read_field(struct scope *s, size_t *pos, struct field *f)
{
	size_t n = 0, rem, i, max;
	int rc = read_tag(s, *pos, f, &n);
	const uint8_t *b;

	if (rc)
		return rc;
	f->def = find_def(s, f->num);
	b = s->buf + *pos + n;
	rem = s->end - (*pos + n);
	f->val = *pos + n;
	switch (f->wt) {
	case WT_VARINT:
		max = rem < VARINT_BYTES_MAX ? rem : VARINT_BYTES_MAX;
		for (i = 0; i < max; i++)
			if ((b[i] & 0x80) == 0)
				break;
		if (i == max) {
			if (max < VARINT_BYTES_MAX)
				return ran_out(s, f,
					       rem ? "unterminated varint value"
						   : "no value after the tag");
			return say(s, f->at, -EBADMSG,
				   "field %u (%s) at offset %zu: varint value "
				   "longer than %d bytes",
				   f->num, field_name(f), f->at,
				   VARINT_BYTES_MAX);
		}
		f->vlen = i + 1;
		break;
	case WT_I64:
	case WT_I32:
		f->vlen = f->wt == WT_I64 ? 8 : 4;
		if (rem < f->vlen) {
			char what[64];

			snprintf(what, sizeof(what),
				 "a %zu-byte value, %zu byte%s present",
				 f->vlen, rem, rem == 1 ? "" : "s");
			return ran_out(s, f, what);
		}
		break;
	case WT_LEN: {
		size_t val = 0;
		unsigned shift = 0;

		max = rem < LEN_PREFIX_BYTES_MAX ? rem : LEN_PREFIX_BYTES_MAX;
		for (i = 0; i < max; i++) {
			val |= (size_t)(b[i] & 0x7f) << shift;
			shift += 7;
			if ((b[i] & 0x80) == 0)
				break;
		}
		if (i == max) {
			if (max < LEN_PREFIX_BYTES_MAX)
				return ran_out(
				    s, f,
				    rem ? "unterminated length prefix"
					: "no length after the tag");
			return say(s, f->at, -EBADMSG,
				   "field %u (%s) at offset %zu: length prefix "
				   "longer than %d bytes",
				   f->num, field_name(f), f->at,
				   LEN_PREFIX_BYTES_MAX);
		}
		if (val > LEN_VALUE_MAX)
			return say(s, f->at, -EBADMSG,
				   "field %u (%s) at offset %zu announces %zu "
				   "bytes, more than any message may hold",
				   f->num, field_name(f), f->at, val);
		if (i + 1 + val > rem) {
			char what[96];

			snprintf(what, sizeof(what),
				 "it announces %zu bytes, %zu present", val,
				 rem - (i + 1));
			return ran_out(s, f, what);
		}
		f->val += i + 1;
		f->vlen = val;
		break;
	}
	case WT_GROUP_START:
	case WT_GROUP_END:
		return say(
		    s, f->at, -EBADMSG,
		    "field %u (%s) at offset %zu uses wire type %d (%s), "
		    "which protobuf-c does not support",
		    f->num, field_name(f), f->at, f->wt, wt_names[f->wt]);
	default:
		return say(s, f->at, -EBADMSG,
			   "field %u (%s) at offset %zu has invalid wire type "
			   "%d",
			   f->num, field_name(f), f->at, f->wt);
	}
	if (f->def && f->def->wt != WT_ANY && f->def->wt != f->wt)
		return say(s, f->at, -EBADMSG,
			   "field %u (%s) at offset %zu has wire type %d (%s), "
			   "expected %d (%s)",
			   f->num, field_name(f), f->at, f->wt, wt_names[f->wt],
			   f->def->wt, wt_names[f->def->wt]);
	if (!f->def)
		s->info->n_unknown++;
	*pos = f->val + f->vlen;
	return 0;
}

static uint32_t varint32(const struct scope *s, const struct field *f)
{
	return pc_uint32(s->buf + f->val, f->vlen);
}

static int walk_record(struct scope *parent, const struct field *rf,
		       struct record_view *rv)
{
	struct scope s = *parent;
	size_t pos = rf->val;
	struct field f;
	int rc;

	s.start = rf->val;
	s.end = rf->val + rf->vlen;
	s.defs = member_defs;
	s.n_defs = N_DEFS(member_defs);
	s.record = true;
	s.index = parent->info->n_updates;
	s.rec_at = rf->at;
	memset(rv, 0, sizeof(*rv));
	rv->at = rf->at;
	while (pos < s.end) {
		rc = read_field(&s, &pos, &f);
		if (rc)
			return rc;
		switch (f.num) {
		case M_ID:
			rv->id_len = f.vlen;
			break;
		case M_PORT:
			rv->port = varint32(&s, &f);
			break;
		case M_STATUS:
			rv->status = varint32(&s, &f);
			break;
		case M_META:
			rv->meta_len = f.vlen;
			break;
		case M_SUSPECT_FROM:
			rv->from_len = f.vlen;
			break;
		}
	}
	return 0;
}

static int walk_packet(struct scope *s, struct packet_view *pv)
{
	struct wire_info *info = s->info;
	size_t pos = 0;
	struct field f;
	struct record_view scratch, *rv;
	int rc;

	while (pos < s->end) {
		rc = read_field(s, &pos, &f);
		if (rc)
			return rc;
		switch (f.num) {
		case P_VERSION:
			info->version = varint32(s, &f);
			break;
		case P_CLUSTER:
			info->cluster_len = f.vlen;
			pv->cluster_off = f.val;
			memcpy(info->cluster, s->buf + f.val,
			       f.vlen < SWIM_CLUSTER_ID_MAX
				   ? f.vlen
				   : SWIM_CLUSTER_ID_MAX);
			break;
		case P_TYPE:
			pv->type = varint32(s, &f);
			break;
		case P_SENDER_ID:
			pv->sender_id_len = f.vlen;
			break;
		case P_SENDER_PORT:
			pv->sender_port = varint32(s, &f);
			break;
		case P_TARGET_ID:
			pv->target_id_len = f.vlen;
			break;
		case P_TARGET_PORT:
			pv->target_port = varint32(s, &f);
			break;
		case P_LENGTH:
			info->has_length = true;
			info->length = get_le32(s->buf + f.val);
			break;
		case P_DIGEST:
			pv->digest_len = f.vlen;
			break;
		case P_UPDATES:
			/* Past the bound: walked (protobuf-c unpacks it), not
			 * kept; check_fields then refuses the count. */
			rv = info->n_updates < SWIM_PACKET_RECORDS_MAX
				 ? &pv->recs[info->n_updates]
				 : &scratch;
			rc = walk_record(s, &f, rv);
			if (rc)
				return rc;
			info->n_updates++;
			break;
		}
	}
	return 0;
}

static int check_record(struct scope *s, size_t i, const struct record_view *r)
{
	s->record = true;
	s->index = i;
	s->rec_at = r->at;
	if (r->id_len == 0)
		return say(s, r->at, -EBADMSG,
			   "id missing (a UUID takes %d bytes)", SWIM_ID_LEN);
	if (r->id_len != SWIM_ID_LEN)
		return say(s, r->at, -EBADMSG,
			   "id is %zu bytes, a UUID takes %d", r->id_len,
			   SWIM_ID_LEN);
	if (r->port > PORT_MAX)
		return say(s, r->at, -EBADMSG, "port %u is above %u", r->port,
			   PORT_MAX);
	if (r->status > SWIM_LEFT)
		return say(s, r->at, -EBADMSG,
			   "status %u is not alive (0), suspect (1), dead (2) "
			   "or left (3)",
			   r->status);
	if (r->meta_len > SWIM_META_MAX)
		return say(s, r->at, -EBADMSG,
			   "meta is %zu bytes, more than SWIM_META_MAX (%d)",
			   r->meta_len, SWIM_META_MAX);
	if (r->meta_len > 0 && r->status != SWIM_ALIVE)
		return say(s, r->at, -EBADMSG,
			   "a %s record carries %zu bytes of meta (only alive "
			   "records may)",
			   swim_status_name((enum swim_status)r->status),
			   r->meta_len);
	if (r->from_len != 0 && r->from_len != SWIM_ID_LEN)
		return say(s, r->at, -EBADMSG,
			   "suspect_from is %zu bytes, a UUID takes %d",
			   r->from_len, SWIM_ID_LEN);
	s->record = false;
	return 0;
}

/* check_packet's checks, in its order. */
static int check_fields(struct scope *s, const struct packet_view *pv,
			const char *cluster)
{
	const struct wire_info *info = s->info;
	size_t len = s->len;

	if (!info->has_length)
		return say(s, len, -EBADMSG,
			   "truncated: the length field (14) is missing, so "
			   "the datagram was cut after %zu bytes (or was not "
			   "sent by a proxystone node)",
			   len);
	if (info->length > len)
		return say(s, len, -EBADMSG,
			   "truncated: the length field says %u bytes, the "
			   "datagram has %zu (%zu missing)",
			   info->length, len, (size_t)info->length - len);
	if (info->length < len)
		return say(s, info->length, -EBADMSG,
			   "%zu trailing bytes: the length field says %u "
			   "bytes, the datagram has %zu",
			   len - info->length, info->length, len);
	if (info->version != SWIM_PROTO_VERSION)
		return say(s, 0, -EPROTONOSUPPORT,
			   "protocol version %u, but nodes speak version %d%s",
			   info->version, SWIM_PROTO_VERSION,
			   info->version == 0 ? " (version field missing)"
					      : "");
	if (info->cluster_len > SWIM_CLUSTER_ID_MAX)
		return say(s, pv->cluster_off, -EBADMSG,
			   "the cluster id is %zu bytes, more than "
			   "SWIM_CLUSTER_ID_MAX (%d)",
			   info->cluster_len, SWIM_CLUSTER_ID_MAX);
	if (cluster == NULL) {
		const void *nul = memchr(info->cluster, 0, info->cluster_len);

		if (nul)
			return say(
			    s, pv->cluster_off, -EACCES,
			    "the cluster id holds a NUL byte at "
			    "position %zu: no node's cluster id can "
			    "match it",
			    (size_t)((const uint8_t *)nul - info->cluster));
	} else if (info->cluster_len != strlen(cluster) ||
		   memcmp(info->cluster, cluster, info->cluster_len) != 0) {
		return say(s, pv->cluster_off, -EACCES,
			   "another cluster: the datagram is for \"%.*s\", "
			   "expected \"%s\"",
			   (int)info->cluster_len, (const char *)info->cluster,
			   cluster);
	}
	if (pv->type < SWIM_MSG_PING || pv->type > SWIM_MSG_TYPE_MAX)
		return say(s, 0, -EBADMSG,
			   "message type %u is unknown (valid: 1 ping .. %d "
			   "sync-rsp)%s",
			   pv->type, SWIM_MSG_TYPE_MAX,
			   pv->type == 0 ? "; the type field is missing" : "");
	if (pv->sender_id_len == 0)
		return say(s, 0, -EBADMSG,
			   "sender_id missing (a UUID takes %d bytes)",
			   SWIM_ID_LEN);
	if (pv->sender_id_len != SWIM_ID_LEN)
		return say(s, 0, -EBADMSG,
			   "sender_id is %zu bytes, a UUID takes %d",
			   pv->sender_id_len, SWIM_ID_LEN);
	if (pv->sender_port > PORT_MAX)
		return say(s, 0, -EBADMSG, "sender_port %u is above %u",
			   pv->sender_port, PORT_MAX);
	if (pv->target_id_len != 0 && pv->target_id_len != SWIM_ID_LEN)
		return say(s, 0, -EBADMSG,
			   "target_id is %zu bytes, a UUID takes %d",
			   pv->target_id_len, SWIM_ID_LEN);
	if (pv->type == SWIM_MSG_PING_REQ && pv->target_id_len == 0)
		return say(s, 0, -EBADMSG,
			   "a ping-req without target_id (whom to probe?)");
	if (pv->type == SWIM_MSG_PING_REQ && pv->target_port > PORT_MAX)
		return say(s, 0, -EBADMSG, "target_port %u is above %u",
			   pv->target_port, PORT_MAX);
	if (info->n_updates > SWIM_PACKET_RECORDS_MAX)
		return say(s, 0, -EBADMSG,
			   "too many records: %zu updates, at most "
			   "SWIM_PACKET_RECORDS_MAX (%d)",
			   info->n_updates, SWIM_PACKET_RECORDS_MAX);
	if (pv->digest_len != 0 && pv->digest_len != SWIM_DIGEST_BYTES)
		return say(s, 0, -EBADMSG,
			   "digest is %zu bytes, expected %d (%d ranges x 4)",
			   pv->digest_len, SWIM_DIGEST_BYTES,
			   SWIM_DIGEST_RANGES);
	for (size_t i = 0; i < info->n_updates; i++) {
		int rc = check_record(s, i, &pv->recs[i]);

		if (rc)
			return rc;
	}
	return 0;
}

int wire_check(const uint8_t *buf, size_t len, const char *cluster,
	       struct wire_info *info, char *err, size_t errlen)
{
	/* A packet_view holds SWIM_PACKET_RECORDS_MAX records: ~3 KiB. */
	struct packet_view pv;
	struct scope s = {
	    .buf = buf,
	    .len = len,
	    .start = 0,
	    .end = len,
	    .defs = packet_defs,
	    .n_defs = N_DEFS(packet_defs),
	    .info = info,
	    .err = err,
	    .errlen = errlen,
	};
	int rc;

	memset(info, 0, sizeof(*info));
	memset(&pv, 0, sizeof(pv));
	info->bad_offset = SIZE_MAX;
	if (errlen)
		err[0] = '\0';
	if (len == 0 || buf == NULL)
		return say(&s, 0, -EBADMSG, "empty datagram (0 bytes)");
	if (len > SWIM_MTU_MAX)
		return say(&s, SWIM_MTU_MAX, -EBADMSG,
			   "%zu bytes: longer than any UDP datagram "
			   "(SWIM_MTU_MAX %d)",
			   len, SWIM_MTU_MAX);
	rc = walk_packet(&s, &pv);
	if (rc)
		return rc;
	return check_fields(&s, &pv, cluster);
}
