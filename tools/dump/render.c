/*
 * render — text and JSON output of proxystone-dump (see render.h).
 */
#include "render.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxystone/json.h"
#include "proxystone/timeutil.h"

/* Widest "ip:port" (255.255.255.255:65535): trace lines line up. */
#define ADDR_COLUMN 21
/* Widest message type name ("ping-req", "sync-req", "sync-rsp"). */
#define TYPE_COLUMN 8
/* Characters of an id shown in trace lines: the UUID's first group,
 * unique enough to tell a few hundred members apart at a glance. */
#define ID_SHORT 8
/* Scratch for one formatted number or time. */
#define FIELD_MAX 48

/* ---- small helpers ----------------------------------------------------- */

/* Appends s (n bytes) with control characters replaced by '?'. */
static int put_safe_n(struct buf *out, const char *s, size_t n)
{
	char *at;
	int rc = buf_extend(out, n, &at);

	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		at[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	return 0;
}

static int put_safe(struct buf *out, const char *s)
{
	if (s == NULL || s[0] == '\0')
		return buf_putc(out, '-');
	return put_safe_n(out, s, strlen(s));
}

/* s, then spaces up to `width` columns (s counted in bytes). */
static int put_pad(struct buf *out, const char *s, size_t width)
{
	size_t n = (s && s[0]) ? strlen(s) : 1;
	int rc = put_safe(out, s);

	while (rc == 0 && n++ < width)
		rc = buf_putc(out, ' ');
	return rc;
}

static void short_id(const char *id, char out[ID_SHORT + 1])
{
	size_t n = 0;

	if (id)
		while (n < ID_SHORT && id[n])
			n++;
	if (n == 0) {
		strcpy(out, "-");
		return;
	}
	memcpy(out, id, n);
	out[n] = '\0';
}

/* "12:00:01.234" in local time. */
static void fmt_clock(int64_t ms, char out[FIELD_MAX])
{
	time_t sec = (time_t)(ms / 1000);
	struct tm tm;

	if (localtime_r(&sec, &tm) == NULL) {
		snprintf(out, FIELD_MAX, "%" PRId64, ms);
		return;
	}
	snprintf(out, FIELD_MAX, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min,
		 tm.tm_sec, (int)(ms % 1000));
}

static void fmt_ago(double s, char out[FIELD_MAX])
{
	if (s < 0)
		s = 0;
	if (s < 10)
		snprintf(out, FIELD_MAX, "%.1fs ago", s);
	else if (s < 60)
		snprintf(out, FIELD_MAX, "%.0fs ago", s);
	else if (s < 3600)
		snprintf(out, FIELD_MAX, "%dm%02ds ago", (int)(s / 60),
			 (int)s % 60);
	else if (s < 1e7)
		snprintf(out, FIELD_MAX, "%dh%02dm ago", (int)(s / 3600),
			 ((int)s % 3600) / 60);
	else
		snprintf(out, FIELD_MAX, "long ago");
}

static void fmt_rtt(double ms, char out[FIELD_MAX])
{
	if (ms < 10)
		snprintf(out, FIELD_MAX, "%.2f ms", ms);
	else if (ms < 100)
		snprintf(out, FIELD_MAX, "%.1f ms", ms);
	else
		snprintf(out, FIELD_MAX, "%.0f ms", ms);
}

/* Unsigned 64-bit values may pass LLONG_MAX: written as raw numbers. */
static void jw_u64(struct json_writer *w, uint64_t v)
{
	char num[FIELD_MAX];
	int n = snprintf(num, sizeof(num), "%" PRIu64, v);

	jw_raw(w, num, (size_t)n);
}

static int finish_line(struct json_writer *w, struct buf *out)
{
	int rc = jw_finish(w);

	return rc ? rc : buf_putc(out, '\n');
}

/* ---- member table ------------------------------------------------------ */

enum {
	COL_ID,
	COL_ADDR,
	COL_ROLE,
	COL_STATUS,
	COL_INC,
	COL_HEARD,
	COL_RTT,
	COLS
};

static const char *const col_titles[COLS] = {
    "ID",	   "ADDRESS",	 "ROLE",     "STATUS",
    "INCARNATION", "LAST HEARD", "PROBE RTT"};

struct row {
	const Ps__Member *m;
	char inc[FIELD_MAX];
	char heard[FIELD_MAX];
	char rtt[FIELD_MAX];
	const char *cell[COLS];
};

/* "a.b.c.d:port" as one number for sorting; false if not of that form. */
static bool addr_key(const char *s, uint64_t *key)
{
	unsigned a, b, c, d, port;
	char end;

	if (s == NULL ||
	    sscanf(s, "%u.%u.%u.%u:%u%c", &a, &b, &c, &d, &port, &end) != 5)
		return false;
	*key = ((uint64_t)a << 40) | ((uint64_t)b << 32) | ((uint64_t)c << 24) |
	       ((uint64_t)d << 16) | (port & 0xffff);
	return true;
}

static int row_cmp(const void *pa, const void *pb)
{
	const Ps__Member *a = ((const struct row *)pa)->m;
	const Ps__Member *b = ((const struct row *)pb)->m;
	bool sa = a->has_is_self && a->is_self,
	     sb = b->has_is_self && b->is_self;
	uint64_t ka, kb;

	if (sa != sb)
		return sa ? -1 : 1;
	if (addr_key(a->addr, &ka) && addr_key(b->addr, &kb) && ka != kb)
		return ka < kb ? -1 : 1;
	return strcmp(a->addr ? a->addr : "", b->addr ? b->addr : "");
}

static const char *member_role(const Ps__Member *m)
{
	return m->meta && m->meta->role && m->meta->role[0] ? m->meta->role
							    : NULL;
}

static const Ps__Member *self_member(const Ps__Reply *r)
{
	for (size_t i = 0; i < r->n_members; i++) {
		const Ps__Member *m = r->members[i];

		if ((m->has_is_self && m->is_self) ||
		    (r->self_id && m->id && strcmp(m->id, r->self_id) == 0))
			return m;
	}
	return NULL;
}

static int render_header(const Ps__Reply *r, struct buf *out)
{
	const Ps__Member *self = self_member(r);
	const Ps__Gossip *g = r->gossip;
	static const char *const order[] = {"alive", "suspect", "dead", "left"};
	size_t counted = 0;
	int rc;

	rc = buf_puts(out, "node       ");
	rc = rc ? rc : put_safe(out, r->self_id);
	if (rc == 0 && self && self->meta) {
		rc = buf_puts(out, "  ");
		rc = rc ? rc : put_safe(out, member_role(self));
		if (rc == 0 && self->meta->url && self->meta->url[0]) {
			rc = buf_puts(out, "  ");
			rc = rc ? rc : put_safe(out, self->meta->url);
		}
	}
	rc = rc ? rc : buf_puts(out, "\ngossip     ");
	if (rc == 0 && g) {
		rc = put_safe(out, g->addr);
		rc = rc ? rc : buf_puts(out, "  cluster ");
		rc = rc ? rc : put_safe(out, g->cluster_id);
		rc = rc ? rc
			: buf_printf(out,
				     "  incarnation %" PRIu64
				     "  local health %u (%s)",
				     g->incarnation, g->local_health,
				     g->local_health ? "degraded: probes "
						       "slowed down"
						     : "healthy");
	} else if (rc == 0) {
		rc = buf_putc(out, '-');
	}
	if (rc == 0 && r->has_registry_version)
		rc = buf_printf(out, "\nregistry   version %" PRIu64,
				r->registry_version);
	else if (rc == 0)
		rc = buf_puts(out, "\nregistry   version -");
	rc = rc ? rc : buf_printf(out, "\nmembers    %zu", r->n_members);
	for (size_t k = 0; rc == 0 && k < sizeof(order) / sizeof(order[0]);
	     k++) {
		size_t n = 0;

		for (size_t i = 0; i < r->n_members; i++)
			if (r->members[i]->status &&
			    strcmp(r->members[i]->status, order[k]) == 0)
				n++;
		if (n)
			rc = buf_printf(out, "%s %zu %s", counted ? "," : ":",
					n, order[k]);
		counted += n;
	}
	if (rc == 0 && counted < r->n_members)
		rc = buf_printf(out, "%s %zu other", counted ? "," : ":",
				r->n_members - counted);
	return rc ? rc : buf_puts(out, "\n\n");
}

int render_members_text(const Ps__Reply *r, struct buf *out)
{
	size_t width[COLS];
	struct row *rows = NULL;
	int rc = render_header(r, out);

	if (rc)
		return rc;
	if (r->n_members) {
		rows = calloc(r->n_members, sizeof(*rows));
		if (rows == NULL)
			return -ENOMEM;
	}
	for (int c = 0; c < COLS; c++)
		width[c] = strlen(col_titles[c]);
	for (size_t i = 0; i < r->n_members; i++) {
		struct row *w = &rows[i];
		const Ps__Member *m = r->members[i];

		w->m = m;
		snprintf(w->inc, sizeof(w->inc), "%" PRIu64, m->incarnation);
		if (m->has_is_self && m->is_self)
			strcpy(w->heard, "self");
		else if (m->has_last_heard_ago)
			fmt_ago(m->last_heard_ago, w->heard);
		else
			strcpy(w->heard, "never");
		if (m->has_rtt_ms)
			fmt_rtt(m->rtt_ms, w->rtt);
		else
			strcpy(w->rtt, "-");
	}
	if (r->n_members)
		qsort(rows, r->n_members, sizeof(*rows), row_cmp);
	for (size_t i = 0; i < r->n_members; i++) {
		struct row *w = &rows[i];

		w->cell[COL_ID] = w->m->id;
		w->cell[COL_ADDR] = w->m->addr;
		w->cell[COL_ROLE] = member_role(w->m);
		w->cell[COL_STATUS] = w->m->status;
		w->cell[COL_INC] = w->inc;
		w->cell[COL_HEARD] = w->heard;
		w->cell[COL_RTT] = w->rtt;
		for (int c = 0; c < COLS; c++) {
			size_t n = w->cell[c] && w->cell[c][0]
				       ? strlen(w->cell[c])
				       : 1;

			if (n > width[c])
				width[c] = n;
		}
	}
	for (int c = 0; rc == 0 && c < COLS; c++) {
		if (c == COLS - 1)
			rc = buf_printf(out, "%s\n", col_titles[c]);
		else
			rc = buf_printf(out, "%-*s  ", (int)width[c],
					col_titles[c]);
	}
	for (size_t i = 0; rc == 0 && i < r->n_members; i++) {
		for (int c = 0; rc == 0 && c < COLS; c++) {
			if (c == COLS - 1) {
				rc = put_safe(out, rows[i].cell[c]);
				rc = rc ? rc : buf_putc(out, '\n');
			} else {
				rc = put_pad(out, rows[i].cell[c], width[c]);
				rc = rc ? rc : buf_puts(out, "  ");
			}
		}
	}
	free(rows);
	return rc;
}

static void json_meta(struct json_writer *w, const Ps__NodeMeta *m)
{
	if (m == NULL) {
		jw_null(w);
		return;
	}
	jw_object_begin(w);
	if (m->role) {
		jw_key(w, "role");
		jw_string(w, m->role);
	}
	if (m->url) {
		jw_key(w, "url");
		jw_string(w, m->url);
	}
	if (m->has_serving) {
		jw_key(w, "serving");
		jw_bool(w, m->serving);
	}
	if (m->has_load) {
		jw_key(w, "load");
		jw_double(w, m->load);
	}
	if (m->has_memory) {
		jw_key(w, "memory");
		jw_double(w, m->memory);
	}
	if (m->has_connections) {
		jw_key(w, "connections");
		jw_int(w, m->connections);
	}
	if (m->version) {
		jw_key(w, "version");
		jw_string(w, m->version);
	}
	if (m->platform) {
		jw_key(w, "platform");
		jw_string(w, m->platform);
	}
	if (m->has_start_time_ms) {
		jw_key(w, "start_time_ms");
		jw_int(w, m->start_time_ms);
	}
	if (m->has_registry_version) {
		jw_key(w, "registry_version");
		jw_u64(w, m->registry_version);
	}
	if (m->cluster_id) {
		jw_key(w, "cluster_id");
		jw_string(w, m->cluster_id);
	}
	jw_object_end(w);
}

int render_members_json(const Ps__Reply *r, struct buf *out)
{
	struct json_writer w;

	jw_init(&w, out);
	jw_object_begin(&w);
	jw_key(&w, "self_id");
	jw_string(&w, r->self_id);
	jw_key(&w, "registry_version");
	if (r->has_registry_version)
		jw_u64(&w, r->registry_version);
	else
		jw_null(&w);
	jw_key(&w, "gossip");
	if (r->gossip) {
		jw_object_begin(&w);
		jw_key(&w, "addr");
		jw_string(&w, r->gossip->addr);
		jw_key(&w, "cluster_id");
		jw_string(&w, r->gossip->cluster_id);
		jw_key(&w, "incarnation");
		jw_u64(&w, r->gossip->incarnation);
		jw_key(&w, "local_health");
		jw_int(&w, r->gossip->local_health);
		jw_object_end(&w);
	} else {
		jw_null(&w);
	}
	jw_key(&w, "members");
	jw_array_begin(&w);
	for (size_t i = 0; i < r->n_members; i++) {
		const Ps__Member *m = r->members[i];

		jw_object_begin(&w);
		jw_key(&w, "id");
		jw_string(&w, m->id);
		jw_key(&w, "addr");
		jw_string(&w, m->addr);
		jw_key(&w, "role");
		jw_string(&w, member_role(m));
		jw_key(&w, "status");
		jw_string(&w, m->status);
		jw_key(&w, "incarnation");
		jw_u64(&w, m->incarnation);
		jw_key(&w, "last_heard_ago");
		if (m->has_last_heard_ago)
			jw_double(&w, m->last_heard_ago);
		else
			jw_null(&w);
		jw_key(&w, "rtt_ms");
		if (m->has_rtt_ms)
			jw_double(&w, m->rtt_ms);
		else
			jw_null(&w);
		jw_key(&w, "is_self");
		jw_bool(&w, m->has_is_self && m->is_self);
		jw_key(&w, "meta");
		json_meta(&w, m->meta);
		jw_object_end(&w);
	}
	jw_array_end(&w);
	jw_object_end(&w);
	return finish_line(&w, out);
}

/* ---- trace lines ------------------------------------------------------- */

int render_trace_text(const Ps__Trace *t, struct buf *out)
{
	char clock[FIELD_MAX], seq[FIELD_MAX], id[ID_SHORT + 1];
	int rc;

	fmt_clock(t->time_ms, clock);
	if (t->has_seq)
		snprintf(seq, sizeof(seq), "seq %" PRIu64, t->seq);
	else
		strcpy(seq, "seq -");
	rc = buf_printf(out, "%s %s ", clock, t->sent ? "\u2192" : "\u2190");
	rc = rc ? rc : put_pad(out, t->peer, ADDR_COLUMN);
	rc = rc ? rc : buf_puts(out, "  ");
	rc = rc ? rc : put_pad(out, t->type, TYPE_COLUMN);
	rc = rc ? rc : buf_printf(out, "  %-14s %5u B", seq, t->size);
	if (rc == 0 && t->type && strcmp(t->type, "ping-req") == 0 &&
	    t->target_id) {
		short_id(t->target_id, id);
		rc = buf_printf(out, "  for %s", id);
	}
	for (size_t i = 0; rc == 0 && i < t->n_updates; i++) {
		const Ps__TraceUpdate *u = t->updates[i];

		short_id(u->id, id);
		rc = buf_puts(out, i ? ", " : "  ");
		rc = rc ? rc : put_safe(out, id);
		rc = rc ? rc : buf_putc(out, ' ');
		rc = rc ? rc : put_safe(out, u->status);
		rc = rc ? rc : buf_printf(out, " %" PRIu64, u->incarnation);
	}
	if (rc == 0 && (t->has_error || t->error_text)) {
		rc = buf_puts(out, "  DROPPED: ");
		if (rc == 0 && t->error_text && t->error_text[0])
			rc = put_safe(out, t->error_text);
		else if (rc == 0)
			rc = buf_puts(out, strerror(-t->error));
	}
	return rc ? rc : buf_putc(out, '\n');
}

int render_trace_json(const Ps__Trace *t, struct buf *out)
{
	struct json_writer w;
	char iso[ISO8601_LEN];

	time_iso8601(t->time_ms, iso);
	jw_init(&w, out);
	jw_object_begin(&w);
	jw_key(&w, "time_ms");
	jw_int(&w, t->time_ms);
	jw_key(&w, "time");
	jw_string(&w, iso);
	jw_key(&w, "dir");
	jw_string(&w, t->sent ? "sent" : "received");
	jw_key(&w, "peer");
	jw_string(&w, t->peer);
	jw_key(&w, "type");
	jw_string(&w, t->type);
	jw_key(&w, "seq");
	if (t->has_seq)
		jw_u64(&w, t->seq);
	else
		jw_null(&w);
	jw_key(&w, "size");
	jw_int(&w, t->size);
	jw_key(&w, "sender_id");
	jw_string(&w, t->sender_id);
	jw_key(&w, "target_id");
	jw_string(&w, t->target_id);
	if (t->has_error || t->error_text) {
		jw_key(&w, "error");
		jw_int(&w, t->has_error ? t->error : 0);
		jw_key(&w, "error_text");
		jw_string(&w, t->error_text);
	}
	jw_key(&w, "updates");
	jw_array_begin(&w);
	for (size_t i = 0; i < t->n_updates; i++) {
		const Ps__TraceUpdate *u = t->updates[i];

		jw_object_begin(&w);
		jw_key(&w, "id");
		jw_string(&w, u->id);
		jw_key(&w, "addr");
		jw_string(&w, u->addr);
		jw_key(&w, "status");
		jw_string(&w, u->status);
		jw_key(&w, "incarnation");
		jw_u64(&w, u->incarnation);
		if (u->suspect_from) {
			jw_key(&w, "suspect_from");
			jw_string(&w, u->suspect_from);
		}
		jw_object_end(&w);
	}
	jw_array_end(&w);
	jw_object_end(&w);
	return finish_line(&w, out);
}

int render_dropped_text(uint64_t n, struct buf *out)
{
	return buf_printf(out,
			  "(dropped %" PRIu64 " event%s: reader too slow)\n", n,
			  n == 1 ? "" : "s");
}

int render_dropped_json(uint64_t n, struct buf *out)
{
	struct json_writer w;

	jw_init(&w, out);
	jw_object_begin(&w);
	jw_key(&w, "dropped");
	jw_u64(&w, n);
	jw_key(&w, "reason");
	jw_string(&w, "reader too slow");
	jw_object_end(&w);
	return finish_line(&w, out);
}

/* ---- decoded datagrams ------------------------------------------------- */

static Ps__NodeMeta *meta_unpack(const struct swim_record *r)
{
	if (r->meta_len == 0)
		return NULL;
	return ps__node_meta__unpack(NULL, r->meta_len, r->meta);
}

static int text_meta(const struct swim_record *r, struct buf *out)
{
	Ps__NodeMeta *m = meta_unpack(r);
	int rc = 0;

	if (r->meta_len == 0)
		return 0;
	if (m == NULL)
		return buf_printf(out, "  meta: %zu bytes, not a NodeMeta",
				  r->meta_len);
	rc = buf_puts(out, "  role ");
	rc = rc ? rc : put_safe(out, m->role);
	if (rc == 0 && m->url) {
		rc = buf_puts(out, "  url ");
		rc = rc ? rc : put_safe(out, m->url);
	}
	if (rc == 0 && m->has_serving)
		rc = buf_puts(out, m->serving ? "  serving" : "  not serving");
	if (rc == 0 && m->has_registry_version)
		rc = buf_printf(out, "  registry version %" PRIu64,
				m->registry_version);
	ps__node_meta__free_unpacked(m, NULL);
	return rc;
}

int render_packet_text(const struct swim_packet *p, const struct wire_info *wi,
		       size_t len, struct buf *out)
{
	const struct swim_header *h = &p->hdr;
	char id[SWIM_ID_STR_LEN], addr[FIELD_MAX];
	int rc;

	rc = buf_printf(out,
			"valid %s datagram, %zu bytes, protocol %u, "
			"cluster \"",
			swim_msg_type_name(h->type), len, wi->version);
	rc = rc ? rc
		: put_safe_n(out, (const char *)wi->cluster, wi->cluster_len);
	rc =
	    rc ? rc : buf_printf(out, "\"\nseq          %" PRIu64 "\n", h->seq);
	swim_id_format(&h->sender, id);
	swim_addr_format(&h->sender_addr, addr);
	rc = rc ? rc
		: buf_printf(out,
			     "sender       %s  %s  incarnation %" PRIu64 "\n",
			     id, addr, h->sender_incarnation);
	if (rc == 0 && h->has_target) {
		swim_id_format(&h->target, id);
		rc = buf_printf(out, "target       %s", id);
		if (rc == 0 && h->type == SWIM_MSG_PING_REQ) {
			swim_addr_format(&h->target_addr, addr);
			rc = buf_printf(out, "  %s%s", addr,
					h->want_nack ? "  wants a nack" : "");
		}
		rc = rc ? rc : buf_putc(out, '\n');
	} else if (rc == 0 && h->type == SWIM_MSG_PING) {
		rc = buf_puts(out,
			      "target       none (a join: anyone answers)\n");
	}
	if (rc == 0 &&
	    (h->type == SWIM_MSG_SYNC_REQ || h->type == SWIM_MSG_SYNC_RSP))
		rc = buf_printf(out, "cursor       %u\n", h->cursor);
	if (rc == 0 && h->has_digest) {
		rc = buf_printf(out,
				"digest       %d ranges:", SWIM_DIGEST_RANGES);
		for (size_t i = 0; rc == 0 && i < SWIM_DIGEST_RANGES; i++)
			rc = buf_printf(out, "%s%08x", i % 8 ? " " : "\n  ",
					h->digest[i]);
		rc = rc ? rc : buf_putc(out, '\n');
	}
	rc = rc ? rc : buf_printf(out, "updates      %zu\n", p->n_records);
	for (size_t i = 0; rc == 0 && i < p->n_records; i++) {
		const struct swim_record *r = &p->records[i];

		swim_id_format(&r->id, id);
		swim_addr_format(&r->addr, addr);
		rc = buf_printf(out, "  %s  %-21s  %-7s  incarnation %" PRIu64,
				id, addr, swim_status_name(r->status),
				r->incarnation);
		if (rc == 0 && r->has_from) {
			swim_id_format(&r->from, id);
			rc = buf_printf(out, "  suspected by %s", id);
		}
		rc = rc ? rc : text_meta(r, out);
		rc = rc ? rc : buf_putc(out, '\n');
	}
	if (rc == 0 && wi->n_unknown)
		rc = buf_printf(out,
				"note         %zu unknown field%s skipped (a "
				"newer sender?)\n",
				wi->n_unknown, wi->n_unknown == 1 ? "" : "s");
	return rc;
}

int render_packet_json(const struct swim_packet *p, const struct wire_info *wi,
		       size_t len, struct buf *out)
{
	const struct swim_header *h = &p->hdr;
	char id[SWIM_ID_STR_LEN], addr[FIELD_MAX];
	struct json_writer w;

	jw_init(&w, out);
	jw_object_begin(&w);
	jw_key(&w, "valid");
	jw_bool(&w, true);
	jw_key(&w, "size");
	jw_int(&w, (long long)len);
	jw_key(&w, "version");
	jw_int(&w, wi->version);
	jw_key(&w, "cluster");
	jw_string_n(&w, (const char *)wi->cluster, wi->cluster_len);
	jw_key(&w, "type");
	jw_string(&w, swim_msg_type_name(h->type));
	jw_key(&w, "seq");
	jw_u64(&w, h->seq);
	swim_id_format(&h->sender, id);
	swim_addr_format(&h->sender_addr, addr);
	jw_key(&w, "sender");
	jw_object_begin(&w);
	jw_key(&w, "id");
	jw_string(&w, id);
	jw_key(&w, "addr");
	jw_string(&w, addr);
	jw_key(&w, "incarnation");
	jw_u64(&w, h->sender_incarnation);
	jw_object_end(&w);
	jw_key(&w, "target");
	if (h->has_target) {
		swim_id_format(&h->target, id);
		jw_object_begin(&w);
		jw_key(&w, "id");
		jw_string(&w, id);
		if (h->type == SWIM_MSG_PING_REQ) {
			swim_addr_format(&h->target_addr, addr);
			jw_key(&w, "addr");
			jw_string(&w, addr);
			jw_key(&w, "want_nack");
			jw_bool(&w, h->want_nack);
		}
		jw_object_end(&w);
	} else {
		jw_null(&w);
	}
	jw_key(&w, "cursor");
	jw_int(&w, h->cursor);
	jw_key(&w, "digest");
	if (h->has_digest) {
		jw_array_begin(&w);
		for (size_t i = 0; i < SWIM_DIGEST_RANGES; i++)
			jw_int(&w, h->digest[i]);
		jw_array_end(&w);
	} else {
		jw_null(&w);
	}
	jw_key(&w, "unknown_fields");
	jw_int(&w, (long long)wi->n_unknown);
	jw_key(&w, "updates");
	jw_array_begin(&w);
	for (size_t i = 0; i < p->n_records; i++) {
		const struct swim_record *r = &p->records[i];
		Ps__NodeMeta *m;

		jw_object_begin(&w);
		swim_id_format(&r->id, id);
		swim_addr_format(&r->addr, addr);
		jw_key(&w, "id");
		jw_string(&w, id);
		jw_key(&w, "addr");
		jw_string(&w, addr);
		jw_key(&w, "status");
		jw_string(&w, swim_status_name(r->status));
		jw_key(&w, "incarnation");
		jw_u64(&w, r->incarnation);
		if (r->has_from) {
			swim_id_format(&r->from, id);
			jw_key(&w, "suspect_from");
			jw_string(&w, id);
		}
		jw_key(&w, "meta_bytes");
		jw_int(&w, (long long)r->meta_len);
		jw_key(&w, "meta");
		m = meta_unpack(r);
		json_meta(&w, m);
		if (m)
			ps__node_meta__free_unpacked(m, NULL);
		jw_object_end(&w);
	}
	jw_array_end(&w);
	jw_object_end(&w);
	return finish_line(&w, out);
}

int render_malformed_json(size_t len, const struct wire_info *wi, int rc,
			  const char *msg, struct buf *out)
{
	struct json_writer w;

	jw_init(&w, out);
	jw_object_begin(&w);
	jw_key(&w, "valid");
	jw_bool(&w, false);
	jw_key(&w, "size");
	jw_int(&w, (long long)len);
	jw_key(&w, "reason");
	jw_string(&w, rc == -EPROTONOSUPPORT ? "version"
		      : rc == -EACCES	     ? "cluster"
					     : "malformed");
	jw_key(&w, "error");
	jw_string(&w, msg);
	jw_key(&w, "offset");
	if (wi->bad_offset != SIZE_MAX)
		jw_int(&w, (long long)wi->bad_offset);
	else
		jw_null(&w);
	jw_object_end(&w);
	return finish_line(&w, out);
}
