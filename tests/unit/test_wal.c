/* Unit tests: the write-ahead log (src/membership/wal.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/tmpdir.h"
#include "proxystone/http.h"

/* The module itself, to reach its fdatasync seam and its struct, with its
 * reallocations watched: a length field must be bounded before any. */
static size_t realloc_largest;
static void *watched_realloc(void *p, size_t n)
{
	if (n > realloc_largest)
		realloc_largest = n;
	return realloc(p, n);
}
#define realloc watched_realloc
#include "../../src/membership/wal.c"
#undef realloc

/* Room for wal messages, which quote the path. */
#define TEST_ERR_MAX (PATH_MAX + 256)
/* Records in the mixed logs most tests build. */
#define MIX_RECORDS 300
/* Records in the performance check (the size the design targets). */
#define PERF_NODES 10000

_Static_assert(WAL_RECORD_MAX > HTTP_BODY_MAX_LIMIT,
	       "a node registered through the largest body must fit a record");
_Static_assert(WAL_BUFFER_MAX >= WAL_RECORD_HDR + WAL_RECORD_MAX,
	       "a record at its bound must fit one batch");

/* ---- fixture: one temp directory per test ------------------------------- */

struct fixture {
	char dir[TMPDIR_NAME_MAX];
	char path[128];	 /* <dir>/registry.wal */
	char other[128]; /* <dir>/copy.wal */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	if (tmpdir_make(f->dir, "wal")) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/registry.wal", f->dir);
	snprintf(f->other, sizeof(f->other), "%s/copy.wal", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	wal_fdatasync = fdatasync;
	int rc = tmpdir_remove(f->dir);
	free(f);
	return rc;
}

/* ---- nodes and the events expected from / seen by a replay -------------- */

struct node_buf {
	Ps__Node n;
	Ps__Capability cap;
	Ps__Capability *capp[1];
	char *tags[2];
	char id[32];
	char url[64];
	char meta[64];
};

/* Node i, with every kind of field, on storage the caller owns. A
 * metadata string, when given, replaces the generated one. */
static void node_make(struct node_buf *b, int i, const char *metadata)
{
	memset(b, 0, sizeof(*b));
	ps__node__init(&b->n);
	ps__capability__init(&b->cap);
	snprintf(b->id, sizeof(b->id), "node-%d", i);
	snprintf(b->url, sizeof(b->url), "http://10.0.%d.%d:4401", i / 250,
		 i % 250);
	snprintf(b->meta, sizeof(b->meta), "{\"rack\":\"r%d\"}", i % 7);
	b->n.id = b->id;
	b->n.url = b->url;
	b->n.cluster_id = "c1";
	b->n.status = (Ps__NodeStatus)(i % 5);
	b->n.role = i % 3 ? "worker" : "coordinator";
	b->n.last_seen_ms = 1700000000000LL + i;
	b->n.created_at_ms = 1600000000000LL - i;
	b->tags[0] = "gpu";
	b->tags[1] = "zone:eu-1";
	b->n.n_tags = (size_t)(i % 3);
	b->n.tags = b->tags;
	b->cap.name = "cuda";
	b->cap.value = i & 1;
	b->capp[0] = &b->cap;
	b->n.n_capabilities = (size_t)(i % 2);
	b->n.capabilities = b->capp;
	b->n.metadata_json = metadata ? (char *)metadata : b->meta;
	b->n.has_response_time_ms = i % 4 == 0;
	b->n.response_time_ms = i * 0.25;
	b->n.has_gossip = i % 6 == 0;
	b->n.gossip = true;
}

struct ev {
	int kind;
	uint64_t version;
	char id[NODE_ID_MAX + 1];
	bool serving;
	int64_t changed_at_ms;
	uint8_t *packed; /* upsert: the node, packed */
	size_t plen;
};

struct evlog {
	struct ev *v;
	size_t n, cap;
	size_t fail_at; /* 1-based call that returns -ECANCELED; 0 never */
};

static struct ev *ev_add(struct evlog *l, int kind, uint64_t version)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		assert_non_null(l->v);
	}
	struct ev *e = &l->v[l->n++];
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->version = version;
	return e;
}

static void ev_node(struct ev *e, const Ps__Node *n)
{
	e->plen = ps__node__get_packed_size(n);
	e->packed = malloc(e->plen ? e->plen : 1);
	assert_non_null(e->packed);
	ps__node__pack(n, e->packed);
	snprintf(e->id, sizeof(e->id), "%s", n->id);
}

static void evlog_free(struct evlog *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].packed);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int cb_result(struct evlog *l)
{
	return l->fail_at && l->n == l->fail_at ? -ECANCELED : 0;
}

static int on_upsert(void *ud, const Ps__Node *n, uint64_t v)
{
	struct evlog *l = ud;
	ev_node(ev_add(l, WAL_UPSERT, v), n);
	return cb_result(l);
}

static int on_remove(void *ud, const char *id, uint64_t v)
{
	struct evlog *l = ud;
	snprintf(ev_add(l, WAL_REMOVE, v)->id, NODE_ID_MAX + 1, "%s", id);
	return cb_result(l);
}

static int on_serving(void *ud, bool serving, int64_t changed_at_ms, uint64_t v)
{
	struct evlog *l = ud;
	struct ev *e = ev_add(l, WAL_SERVING, v);
	e->serving = serving;
	e->changed_at_ms = changed_at_ms;
	return cb_result(l);
}

static const struct wal_replay_ops record_ops = {
    .upsert = on_upsert,
    .remove = on_remove,
    .serving = on_serving,
};

static void event_check(const struct ev *a, const struct ev *b)
{
	assert_int_equal(a->kind, b->kind);
	assert_int_equal(a->version, b->version);
	assert_string_equal(a->id, b->id);
	assert_int_equal(a->serving, b->serving);
	assert_int_equal(a->changed_at_ms, b->changed_at_ms);
	assert_int_equal(a->plen, b->plen);
	if (a->plen)
		assert_memory_equal(a->packed, b->packed, a->plen);
}

/* got must be exactly want's events [from, from + count). */
static void evlog_check(const struct evlog *got, const struct evlog *want,
			size_t from, size_t count)
{
	assert_int_equal(got->n, count);
	for (size_t i = 0; i < count; i++)
		event_check(&got->v[i], &want->v[from + i]);
}

/* ---- building and reading logs ------------------------------------------ */

static struct wal *open_ok(const char *path)
{
	char err[TEST_ERR_MAX] = "";
	struct wal *w = NULL;
	int rc = wal_open(path, &w, err, sizeof(err));
	if (rc)
		fail_msg("wal_open %s: %d %s", path, rc, err);
	assert_non_null(w);
	return w;
}

static void sync_ok(struct wal *w)
{
	int rc = wal_sync(w);
	if (rc)
		fail_msg("wal_sync: %d %s", rc, strerror(-rc));
	assert_int_equal(wal_pending(w), 0);
}

/* Record i of a mixed log: upserts, removals of earlier nodes and serving
 * changes, version i + 1. Appended to w and to want. */
static void append_mix(struct wal *w, struct evlog *want, int i)
{
	uint64_t v = (uint64_t)i + 1;
	struct node_buf b;
	char id[32];
	switch (i % 5) {
	case 3:
		snprintf(id, sizeof(id), "node-%d", i - 3);
		assert_int_equal(wal_append_remove(w, id, v), 0);
		snprintf(ev_add(want, WAL_REMOVE, v)->id, NODE_ID_MAX + 1, "%s",
			 id);
		break;
	case 4: {
		bool serving = (i / 5) % 2;
		int64_t at = 1700000000000LL + i;
		assert_int_equal(wal_append_serving(w, serving, at, v), 0);
		struct ev *e = ev_add(want, WAL_SERVING, v);
		e->serving = serving;
		e->changed_at_ms = at;
		break;
	}
	default:
		node_make(&b, i, NULL);
		assert_int_equal(wal_append_upsert(w, &b.n, v), 0);
		ev_node(ev_add(want, WAL_UPSERT, v), &b.n);
	}
}

/* Records [from, to) of the mix, synced every `every` records and at the
 * end. */
static void write_mix(struct wal *w, struct evlog *want, int from, int to,
		      int every)
{
	for (int i = from; i < to; i++) {
		append_mix(w, want, i);
		if ((i - from + 1) % every == 0)
			sync_ok(w);
	}
	sync_ok(w);
}

static int replay(const char *path, uint64_t since, struct evlog *got,
		  size_t *ignored, char *err, size_t errlen)
{
	evlog_free(got);
	*ignored = (size_t)-1;
	return wal_replay(path, since, &record_ops, got, ignored, err, errlen);
}

/* Replays path, which must succeed with `ignored` tail bytes. */
static void replay_ok(const char *path, uint64_t since, struct evlog *got,
		      size_t ignored)
{
	char err[TEST_ERR_MAX] = "";
	size_t tail;
	int rc = replay(path, since, got, &tail, err, sizeof(err));
	if (rc)
		fail_msg("wal_replay %s: %d %s", path, rc, err);
	assert_int_equal(tail, ignored);
}

/* Replays path, which must be found damaged before any callback. */
static void replay_damaged(const char *path, struct evlog *got)
{
	char err[TEST_ERR_MAX] = "";
	size_t tail;
	int rc = replay(path, 0, got, &tail, err, sizeof(err));
	if (rc != -EBADMSG)
		fail_msg("wal_replay %s: %d, want -EBADMSG (%s)", path, rc,
			 err);
	assert_int_equal(got->n, 0);
	assert_true(err[0]);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	uint8_t *data = malloc((size_t)st.st_size + 1);
	assert_non_null(data);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread_all(fd, data, (size_t)st.st_size, 0), 0);
	close(fd);
	*len = (size_t)st.st_size;
	return data;
}

static void spit(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(pwrite_all(fd, data, len, 0), 0);
	close(fd);
}

static size_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (size_t)st.st_size;
}

/* Offsets of the batches in a log image, and its end. */
#define BATCHES_MAX 64
struct batches {
	size_t off[BATCHES_MAX + 1];
	size_t n;
};

static void batches_find(const uint8_t *data, size_t len, struct batches *b)
{
	b->n = 0;
	size_t off = WAL_HEADER_LEN;
	while (off < len) {
		assert_true(b->n < BATCHES_MAX);
		b->off[b->n++] = off;
		off += WAL_FRAME_HDR + get_be32(data + off);
	}
	assert_int_equal(off, len);
	b->off[b->n] = len;
}

/* ---- tests -------------------------------------------------------------- */

/* Many records of every kind, in many batches, replay in order. */
static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct wal *w = open_ok(f->path);
	assert_int_equal(wal_size(w), 0);
	write_mix(w, &want, 0, MIX_RECORDS, 7);
	assert_int_equal(wal_size(w), file_size(f->path) - WAL_HEADER_LEN);
	wal_close(w);
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, MIX_RECORDS);

	/* Callbacks left NULL skip their kind. */
	struct wal_replay_ops only_serving = {.serving = on_serving};
	size_t tail;
	char err[TEST_ERR_MAX];
	evlog_free(&got);
	assert_int_equal(wal_replay(f->path, 0, &only_serving, &got, &tail, err,
				    sizeof(err)),
			 0);
	assert_int_equal(got.n, MIX_RECORDS / 5);
	for (size_t i = 0; i < got.n; i++)
		assert_int_equal(got.v[i].kind, WAL_SERVING);
	evlog_free(&got);
	evlog_free(&want);
}

/* Records at or below the snapshot's version are not replayed. */
static void test_since_version(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct wal *w = open_ok(f->path);
	write_mix(w, &want, 0, MIX_RECORDS, 11);
	wal_close(w);
	const uint64_t since[] = {
	    0, 1, 2, 50, 151, MIX_RECORDS - 1, MIX_RECORDS, MIX_RECORDS + 1000};
	for (size_t k = 0; k < sizeof(since) / sizeof(since[0]); k++) {
		size_t skip = since[k] < MIX_RECORDS ? since[k] : MIX_RECORDS;
		replay_ok(f->path, since[k], &got, 0);
		evlog_check(&got, &want, skip, MIX_RECORDS - skip);
	}
	evlog_free(&got);
	evlog_free(&want);
}

/* A crash during the last write: the file ends anywhere inside the last
 * batch. Earlier batches replay, the rest is counted; wal_open cuts it off
 * so appending continues cleanly. */
static void test_torn_tail_every_offset(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct wal *w = open_ok(f->path);
	write_mix(w, &want, 0, 40, 10);
	size_t start = WAL_HEADER_LEN + wal_size(w);
	append_mix(w, &want, 40); /* the last batch: one upsert */
	sync_ok(w);
	wal_close(w);
	size_t len;
	uint8_t *data = slurp(f->path, &len);
	assert_true(len > start + WAL_FRAME_HDR + WAL_RECORD_HDR);
	for (size_t cut = start; cut < len; cut++) {
		spit(f->other, data, cut);
		replay_ok(f->other, 0, &got, cut - start);
		evlog_check(&got, &want, 0, 40);
	}
	/* wal_open repairs, then appends after the last valid batch. */
	const size_t cuts[] = {start + 1, start + 15, start + 16, start + 17,
			       len - 1};
	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		struct evlog more = {0};
		spit(f->other, data, cuts[k]);
		w = open_ok(f->other);
		assert_int_equal(file_size(f->other), start);
		assert_int_equal(wal_size(w), start - WAL_HEADER_LEN);
		append_mix(w, &more, 41);
		sync_ok(w);
		wal_close(w);
		replay_ok(f->other, 0, &got, 0);
		assert_int_equal(got.n, 41);
		for (size_t i = 0; i < 40; i++)
			event_check(&got.v[i], &want.v[i]);
		event_check(&got.v[40], &more.v[0]);
		evlog_free(&more);
	}
	free(data);
	evlog_free(&got);
	evlog_free(&want);
}

/* Pages of the last, unsynced write may reach the disk in any order: zeros
 * in the middle of the last batch, its end intact. That is a torn tail,
 * not damage — the reason batches, not records, carry the checksum. */
static void test_torn_tail_zeros(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct wal *w = open_ok(f->path);
	write_mix(w, &want, 0, 20, 20);
	size_t start = WAL_HEADER_LEN + wal_size(w);
	write_mix(w, &want, 20, 200, 1000); /* one batch of 180 records */
	wal_close(w);
	size_t len;
	uint8_t *data = slurp(f->path, &len);
	assert_true(len - start > 3 * 4096);

	/* A middle page lost. */
	memset(data + 4096, 0, 4096);
	spit(f->other, data, len);
	replay_ok(f->other, 0, &got, len - start);
	evlog_check(&got, &want, 0, 20);

	/* The first page of the batch lost, zeros from there to the end. */
	memset(data + start, 0, len - start);
	spit(f->other, data, len);
	replay_ok(f->other, 0, &got, len - start);
	evlog_check(&got, &want, 0, 20);
	w = open_ok(f->other);
	assert_int_equal(file_size(f->other), start);
	wal_close(w);

	/* Zeros past the end, as a file system may leave after a crash. */
	spit(f->other, data, start);
	int fd = open(f->other, O_WRONLY);
	assert_int_equal(ftruncate(fd, (off_t)(start + 8192)), 0);
	close(fd);
	replay_ok(f->other, 0, &got, 8192);
	evlog_check(&got, &want, 0, 20);
	free(data);
	evlog_free(&got);
	evlog_free(&want);
}

/* A changed byte anywhere in a batch that is not the last is damage: no
 * callback is called, and wal_open refuses the file and leaves it alone.
 * In the last batch it cannot be told from a torn write. */
static void test_flipped_byte(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct wal *w = open_ok(f->path);
	write_mix(w, &want, 0, 12, 3); /* four batches of three records */
	wal_close(w);
	size_t len;
	uint8_t *data = slurp(f->path, &len);
	struct batches b;
	batches_find(data, len, &b);
	assert_int_equal(b.n, 4);
	const uint8_t masks[] = {0x01, 0x80, 0xff};
	for (size_t m = 0; m < sizeof(masks); m++) {
		for (size_t i = b.off[0]; i < b.off[3]; i++) {
			data[i] ^= masks[m];
			spit(f->other, data, len);
			replay_damaged(f->other, &got);
			char err[TEST_ERR_MAX] = "";
			struct wal *bad = NULL;
			assert_int_equal(
			    wal_open(f->other, &bad, err, sizeof(err)),
			    -EBADMSG);
			assert_null(bad);
			size_t len2;
			uint8_t *after = slurp(f->other, &len2);
			assert_int_equal(len2, len);
			assert_memory_equal(after, data, len);
			free(after);
			data[i] ^= masks[m];
		}
	}
	/* In the last batch it is ignored like a torn write — or, when a
	 * shorter length leaves bytes after the batch, called damage. */
	for (size_t i = b.off[3]; i < len; i++) {
		data[i] ^= 0x01;
		spit(f->other, data, len);
		char err[TEST_ERR_MAX] = "";
		size_t tail;
		int rc = replay(f->other, 0, &got, &tail, err, sizeof(err));
		if (i >= b.off[3] + 4 || rc == 0) {
			assert_int_equal(rc, 0);
			assert_int_equal(tail, len - b.off[3]);
			evlog_check(&got, &want, 0, 9);
		} else {
			assert_int_equal(rc, -EBADMSG);
			assert_int_equal(got.n, 0);
		}
		data[i] ^= 0x01;
	}
	free(data);
	evlog_free(&got);
	evlog_free(&want);
}

/* A huge length is refused before anything is allocated for it. */
static void test_huge_length(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct wal *w = open_ok(f->path);
	write_mix(w, &want, 0, 9, 3);
	wal_close(w);
	size_t len;
	uint8_t *data = slurp(f->path, &len);
	struct batches b;
	batches_find(data, len, &b);
	const uint32_t huge[] = {0xffffffffu, WAL_BUFFER_MAX + 1, 0x80000000u};
	for (size_t k = 0; k < sizeof(huge) / sizeof(huge[0]); k++) {
		/* In the middle: damage, and the message says why. */
		put_be32(data + b.off[1], huge[k]);
		spit(f->other, data, len);
		realloc_largest = 0;
		char err[TEST_ERR_MAX] = "";
		size_t tail;
		assert_int_equal(
		    replay(f->other, 0, &got, &tail, err, sizeof(err)),
		    -EBADMSG);
		assert_int_equal(got.n, 0);
		assert_non_null(strstr(err, "impossible batch length"));
		assert_true(realloc_largest <= len);
		put_be32(data + b.off[1],
			 (uint32_t)(b.off[2] - b.off[1] - WAL_FRAME_HDR));
		/* At the end: a torn tail. */
		put_be32(data + b.off[2], huge[k]);
		spit(f->other, data, len);
		realloc_largest = 0;
		replay_ok(f->other, 0, &got, len - b.off[2]);
		evlog_check(&got, &want, 0, 6);
		assert_true(realloc_largest <= len);
		put_be32(data + b.off[2],
			 (uint32_t)(len - b.off[2] - WAL_FRAME_HDR));
	}
	/* A record's own length, inside a batch whose checksum holds. */
	put_be32(data + b.off[2] + WAL_FRAME_HDR, 0xfffffff0u);
	put_be32(data + b.off[2] + 4,
		 store_crc32(data + b.off[2] + 8, len - b.off[2] - 8));
	spit(f->other, data, len);
	replay_damaged(f->other, &got);
	free(data);
	evlog_free(&got);
	evlog_free(&want);
}

/* Writes one batch holding `body` as a record of `kind`, with a valid
 * checksum, at the end of path. */
static void append_raw(const char *path, uint8_t kind, const void *body,
		       size_t blen)
{
	size_t off = file_size(path);
	size_t n = WAL_RECORD_HDR + blen;
	uint8_t *p = calloc(1, WAL_FRAME_HDR + n);
	assert_non_null(p);
	put_be32(p, (uint32_t)n);
	put_be64(p + 8, off);
	put_be32(p + WAL_FRAME_HDR, (uint32_t)(WAL_RECORD_FIXED + blen));
	p[WAL_FRAME_HDR + 4] = kind;
	put_be64(p + WAL_FRAME_HDR + 5, 99);
	memcpy(p + WAL_FRAME_HDR + WAL_RECORD_HDR, body, blen);
	put_be32(p + 4, store_crc32(p + 8, 8 + n));
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite_all(fd, p, WAL_FRAME_HDR + n, off), 0);
	close(fd);
	free(p);
}

/* A batch whose checksum holds but whose records do not decode is no
 * crash: damage even as the last batch (an old reader, a newer format). */
static void test_bad_record_valid_checksum(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct {
		uint8_t kind;
		const char *body;
		size_t len;
	} bad[] = {
	    {9, "x", 1},		     /* unknown kind */
	    {WAL_UPSERT, "\xff\xff\xff", 3}, /* not a node */
	    {WAL_UPSERT, "", 0},	     /* a node without its fields */
	    {WAL_REMOVE, "", 0},	     /* empty id */
	    {WAL_REMOVE, "a\0b", 3},	     /* NUL in the id */
	    {WAL_SERVING, "\x01", 1},	     /* too short */
	    {WAL_SERVING, "\x02\0\0\0\0\0\0\0\0", 9}, /* not a bool */
	};
	char longid[NODE_ID_MAX + 2];
	memset(longid, 'a', sizeof(longid));
	for (size_t k = 0; k <= sizeof(bad) / sizeof(bad[0]); k++) {
		unlink(f->path);
		struct wal *w = open_ok(f->path);
		evlog_free(&want);
		write_mix(w, &want, 0, 5, 5);
		wal_close(w);
		if (k < sizeof(bad) / sizeof(bad[0]))
			append_raw(f->path, bad[k].kind, bad[k].body,
				   bad[k].len);
		else
			append_raw(f->path, WAL_REMOVE, longid, sizeof(longid));
		replay_damaged(f->path, &got);
	}
	evlog_free(&got);
	evlog_free(&want);
}

/* Reset empties the log, drops what is buffered; appending goes on. */
static void test_reset(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0}, dropped = {0};
	struct wal *w = open_ok(f->path);
	write_mix(w, &dropped, 0, 50, 10);
	append_mix(w, &dropped, 50);
	assert_true(wal_pending(w) > 0);
	assert_int_equal(wal_reset(w), 0);
	assert_int_equal(wal_size(w), 0);
	assert_int_equal(wal_pending(w), 0);
	assert_int_equal(file_size(f->path), WAL_HEADER_LEN);
	replay_ok(f->path, 0, &got, 0);
	assert_int_equal(got.n, 0);
	sync_ok(w); /* nothing left to write */
	assert_int_equal(file_size(f->path), WAL_HEADER_LEN);

	/* The next batches start right after the header again. */
	for (int i = 60; i < 70; i++)
		append_mix(w, &want, i);
	sync_ok(w);
	wal_close(w);
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, 10);
	evlog_free(&got);
	evlog_free(&want);
	evlog_free(&dropped);
}

/* Reopening appends after what is there; the header is written once. */
static void test_reopen_appends(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	size_t size = 0;
	for (int round = 0; round < 4; round++) {
		struct wal *w = open_ok(f->path);
		assert_int_equal(wal_size(w), size);
		write_mix(w, &want, round * 25, round * 25 + 25, 4);
		size = wal_size(w);
		wal_close(w);
	}
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, 100);

	/* Closing drops what was not synced. */
	struct wal *w = open_ok(f->path);
	append_mix(w, &got, 100);
	wal_close(w);
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, 100);

	/* One process at a time. */
	w = open_ok(f->path);
	struct wal *second = NULL;
	char err[TEST_ERR_MAX] = "";
	assert_int_equal(wal_open(f->path, &second, err, sizeof(err)), -EBUSY);
	assert_null(second);
	assert_non_null(strstr(err, "locked"));
	wal_close(w);
	w = open_ok(f->path);
	wal_close(w);
	evlog_free(&got);
	evlog_free(&want);
}

/* The buffer is bounded; -ENOBUFS says sync first, and nothing was added.
 * Bad arguments and over-large records are refused the same way. */
static void test_bounds(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	/* Metadata of 1 MiB per node: about 32 records fill the buffer. */
	size_t mlen = 1024 * 1024;
	char *meta = malloc(WAL_RECORD_MAX + 1);
	assert_non_null(meta);
	memset(meta, 'm', WAL_RECORD_MAX);
	meta[mlen] = 0;
	struct wal *w = open_ok(f->path);
	struct node_buf b;
	node_make(&b, 1, meta);
	size_t rec = WAL_RECORD_HDR + ps__node__get_packed_size(&b.n);
	int i = 0, rc;
	while ((rc = wal_append_upsert(w, &b.n, (uint64_t)i + 1)) == 0) {
		ev_node(ev_add(&want, WAL_UPSERT, (uint64_t)i + 1), &b.n);
		i++;
	}
	assert_int_equal(rc, -ENOBUFS);
	assert_int_equal(i, WAL_BUFFER_MAX / rec);
	assert_int_equal(wal_pending(w), (size_t)i * rec);
	/* The bound is in bytes: a small record still fits. */
	assert_true(WAL_BUFFER_MAX - wal_pending(w) < rec);
	assert_int_equal(wal_append_remove(w, "x", (uint64_t)i + 1), 0);
	strcpy(ev_add(&want, WAL_REMOVE, (uint64_t)i + 1)->id, "x");
	sync_ok(w);
	assert_int_equal(wal_append_upsert(w, &b.n, (uint64_t)i + 1), 0);
	ev_node(ev_add(&want, WAL_UPSERT, (uint64_t)i + 1), &b.n);
	sync_ok(w);

	/* A record over WAL_RECORD_MAX, and one right at it. */
	meta[mlen] = 'm';
	meta[WAL_RECORD_MAX] = 0;
	assert_int_equal(wal_append_upsert(w, &b.n, 1), -EMSGSIZE);
	size_t other = ps__node__get_packed_size(&b.n) - WAL_RECORD_MAX;
	meta[WAL_RECORD_MAX - other - WAL_RECORD_FIXED] = 0;
	assert_int_equal(ps__node__get_packed_size(&b.n) + WAL_RECORD_FIXED,
			 WAL_RECORD_MAX);
	assert_int_equal(wal_append_upsert(w, &b.n, (uint64_t)i + 2), 0);
	ev_node(ev_add(&want, WAL_UPSERT, (uint64_t)i + 2), &b.n);
	sync_ok(w);
	assert_int_equal(wal_pending(w), 0);

	/* Arguments. */
	char longid[NODE_ID_MAX + 2];
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = 0;
	assert_int_equal(wal_append_remove(w, "", 1), -EINVAL);
	assert_int_equal(wal_append_remove(w, NULL, 1), -EINVAL);
	assert_int_equal(wal_append_remove(w, longid, 1), -EINVAL);
	longid[NODE_ID_MAX] = 0;
	assert_int_equal(wal_append_remove(w, longid, (uint64_t)i + 3), 0);
	memcpy(ev_add(&want, WAL_REMOVE, (uint64_t)i + 3)->id, longid,
	       NODE_ID_MAX + 1);
	node_make(&b, 2, NULL);
	b.n.url = NULL; /* a required field */
	assert_int_equal(wal_append_upsert(w, &b.n, 1), -EINVAL);
	assert_int_equal(wal_append_upsert(w, NULL, 1), -EINVAL);
	sync_ok(w);
	wal_close(w);
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, want.n);
	free(meta);
	evlog_free(&got);
	evlog_free(&want);
}

/* The disk is full: the write fails and the file cannot even be cut back
 * (the fd points at /dev/full). The next sync cuts first, then writes the
 * batch whole; every record is replayed exactly once. */
static void test_write_fails_dev_full(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct wal *w = open_ok(f->path);
	write_mix(w, &want, 0, 10, 10);
	size_t synced = file_size(f->path);
	for (int i = 10; i < 20; i++)
		append_mix(w, &want, i);
	int real = dup(w->fd);
	int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
	assert_true(real >= 0 && full >= 0);
	assert_int_equal(dup2(full, w->fd), w->fd);
	close(full);
	int rc = wal_sync(w);
	assert_true(rc == -ENOSPC);
	assert_true(w->unclean); /* ftruncate cannot work on /dev/full */
	assert_true(wal_pending(w) > 0);
	assert_int_equal(wal_sync(w), -EINVAL); /* still cannot cut */

	/* Meanwhile the file holds the synced batches only. */
	assert_int_equal(file_size(f->path), synced);
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, 10);

	/* Simulate bytes a failed write left behind, then recover. */
	assert_int_equal(dup2(real, w->fd), w->fd);
	close(real);
	assert_int_equal(
	    pwrite_all(w->fd, (const uint8_t *)"garbage!", 8, synced), 0);
	sync_ok(w);
	assert_false(w->unclean);
	wal_close(w);
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, 20);
	evlog_free(&got);
	evlog_free(&want);
}

/* A write that stops halfway (the file size limit): the half batch is cut
 * off at once, and the retry writes it whole. */
static void test_partial_write(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct wal *w = open_ok(f->path);
	write_mix(w, &want, 0, 10, 10);
	size_t synced = file_size(f->path);
	for (int i = 10; i < 60; i++)
		append_mix(w, &want, i);
	assert_true(wal_pending(w) > 2000);

	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = synced + 1000;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	int rc = wal_sync(w);
	size_t after = file_size(f->path);
	bool unclean = w->unclean;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
	assert_int_equal(rc, -EFBIG);
	assert_false(unclean);
	assert_int_equal(after, synced);
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, 10);

	sync_ok(w);
	wal_close(w);
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, 60);
	evlog_free(&got);
	evlog_free(&want);
}

static int fdatasync_eio(int fd)
{
	(void)fd;
	errno = EIO;
	return -1;
}

/* fdatasync fails after the write went through: the kernel may have
 * dropped the pages, so the batch is not trusted, cut off, and written
 * again by the next sync. */
static void test_fdatasync_fails(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct wal *w = open_ok(f->path);
	write_mix(w, &want, 0, 10, 10);
	size_t synced = file_size(f->path);
	for (int i = 10; i < 30; i++)
		append_mix(w, &want, i);
	wal_fdatasync = fdatasync_eio;
	assert_int_equal(wal_sync(w), -EIO);
	assert_int_equal(file_size(f->path), synced);
	assert_int_equal(wal_size(w), synced - WAL_HEADER_LEN);
	assert_int_equal(wal_reset(w), -EIO); /* truncated, not durable */
	wal_fdatasync = fdatasync;
	/* The reset dropped the buffer; a new batch follows the header. */
	evlog_free(&want);
	for (int i = 30; i < 40; i++)
		append_mix(w, &want, i);
	sync_ok(w);
	wal_close(w);
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, 10);

	/* Without the reset: the retry writes the same records once. */
	unlink(f->path);
	evlog_free(&want);
	w = open_ok(f->path);
	write_mix(w, &want, 0, 10, 10);
	for (int i = 10; i < 30; i++)
		append_mix(w, &want, i);
	wal_fdatasync = fdatasync_eio;
	assert_int_equal(wal_sync(w), -EIO);
	assert_int_equal(wal_sync(w), -EIO);
	wal_fdatasync = fdatasync;
	sync_ok(w);
	wal_close(w);
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, 30);
	evlog_free(&got);
	evlog_free(&want);

	/* Refused and discarded: the next sync writes only what follows,
	 * never the refused records (a write answered 503 must not come
	 * back after a restart). */
	unlink(f->path);
	w = open_ok(f->path);
	write_mix(w, &want, 0, 10, 10);
	struct evlog refused = {0};
	for (int i = 10; i < 30; i++)
		append_mix(w, &refused, i);
	wal_fdatasync = fdatasync_eio;
	assert_int_equal(wal_sync(w), -EIO);
	wal_fdatasync = fdatasync;
	wal_discard(w);
	assert_int_equal(wal_pending(w), 0);
	for (int i = 30; i < 40; i++)
		append_mix(w, &want, i);
	sync_ok(w);
	wal_close(w);
	replay_ok(f->path, 0, &got, 0);
	evlog_check(&got, &want, 0, 20);
	evlog_free(&got);
	evlog_free(&want);
	evlog_free(&refused);
}

/* Headers: a missing log, a file that is not one, a header a crash cut
 * short, a newer format. */
static void test_header(void **state)
{
	struct fixture *f = *state;
	struct evlog got = {0};
	char err[TEST_ERR_MAX] = "";
	size_t tail;
	assert_int_equal(replay(f->path, 0, &got, &tail, err, sizeof(err)),
			 -ENOENT);

	/* A snapshot given as the log: refused and left as it is. */
	Ps__Snapshot snap = PS__SNAPSHOT__INIT;
	snap.self_id = "self";
	assert_int_equal(store_save(f->path, &snap, err, sizeof(err)), 0);
	size_t len;
	uint8_t *before = slurp(f->path, &len);
	replay_damaged(f->path, &got);
	struct wal *w = NULL;
	assert_int_equal(wal_open(f->path, &w, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "not a write-ahead log"));
	size_t len2;
	uint8_t *after = slurp(f->path, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(before, after, len);
	free(before);
	free(after);

	/* Created, then a crash: a prefix of the header is an empty log. */
	for (size_t n = 0; n < WAL_HEADER_LEN; n++) {
		uint8_t hdr[WAL_HEADER_LEN];
		header_make(hdr);
		spit(f->path, hdr, n);
		replay_ok(f->path, 0, &got, n);
		assert_int_equal(got.n, 0);
		w = open_ok(f->path);
		assert_int_equal(file_size(f->path), WAL_HEADER_LEN);
		wal_close(w);
		replay_ok(f->path, 0, &got, 0);
	}
	spit(f->path, "PWxL", 4);
	replay_damaged(f->path, &got);

	/* A format this build does not know. */
	uint8_t hdr[WAL_HEADER_LEN];
	header_make(hdr);
	put_be32(hdr + 4, WAL_FORMAT + 1);
	spit(f->path, hdr, sizeof(hdr));
	replay_damaged(f->path, &got);
	assert_int_equal(wal_open(f->path, &w, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "format"));

	/* Not a regular file. */
	assert_int_equal(wal_open(f->dir, &w, err, sizeof(err)), -EISDIR);
	evlog_free(&got);
}

/* Bad bytes after the last valid batch, more than one write could leave:
 * damage, not a torn tail. */
static void test_tail_larger_than_a_write(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct wal *w = open_ok(f->path);
	write_mix(w, &want, 0, 10, 10);
	wal_close(w);
	size_t len = file_size(f->path);
	int fd = open(f->path, O_WRONLY);
	size_t bound = WAL_FRAME_HDR + WAL_BUFFER_MAX;
	assert_int_equal(ftruncate(fd, (off_t)(len + bound)), 0);
	close(fd);
	replay_ok(f->path, 0, &got, bound); /* exactly one write: torn */
	evlog_check(&got, &want, 0, 10);
	fd = open(f->path, O_WRONLY);
	assert_int_equal(ftruncate(fd, (off_t)(len + bound + 1)), 0);
	close(fd);
	replay_damaged(f->path, &got);
	evlog_free(&got);
	evlog_free(&want);
}

/* A callback's error stops the replay and comes back. */
static void test_callback_error(void **state)
{
	struct fixture *f = *state;
	struct evlog want = {0}, got = {0};
	struct wal *w = open_ok(f->path);
	write_mix(w, &want, 0, 20, 20);
	wal_close(w);
	got.fail_at = 7;
	size_t tail;
	char err[TEST_ERR_MAX] = "";
	assert_int_equal(
	    wal_replay(f->path, 0, &record_ops, &got, &tail, err, sizeof(err)),
	    -ECANCELED);
	assert_int_equal(got.n, 7);
	assert_non_null(strstr(err, "callback"));
	/* No ops: verification only. */
	assert_int_equal(
	    wal_replay(f->path, 0, NULL, NULL, &tail, err, sizeof(err)), 0);
	got.fail_at = 0;
	evlog_free(&got);
	evlog_free(&want);
}

static double elapsed(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static int count_upsert(void *ud, const Ps__Node *n, uint64_t v)
{
	(void)n;
	(void)v;
	(*(size_t *)ud)++;
	return 0;
}

/* The case the log exists for: 10,000 registrations, one commit. Times
 * are printed, not asserted (machines differ). */
static void test_perf(void **state)
{
	struct fixture *f = *state;
	struct node_buf *b = malloc(sizeof(*b));
	assert_non_null(b);
	struct wal *w = open_ok(f->path);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < PERF_NODES; i++) {
		node_make(b, i, NULL);
		assert_int_equal(wal_append_upsert(w, &b->n, (uint64_t)i + 1),
				 0);
	}
	double t_append = elapsed(&t0);
	size_t bytes = wal_pending(w);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	sync_ok(w);
	double t_sync = elapsed(&t0);
	wal_close(w);
	size_t n = 0, tail;
	char err[TEST_ERR_MAX] = "";
	struct wal_replay_ops ops = {.upsert = count_upsert};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(
	    wal_replay(f->path, 0, &ops, &n, &tail, err, sizeof(err)), 0);
	double t_replay = elapsed(&t0);
	assert_int_equal(n, PERF_NODES);
	print_message("wal: %d upserts (%zu bytes): append %.1f ms, "
		      "sync %.1f ms, replay %.1f ms\n",
		      PERF_NODES, bytes, t_append * 1e3, t_sync * 1e3,
		      t_replay * 1e3);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_since_version, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_torn_tail_zeros, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_flipped_byte, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_huge_length, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_record_valid_checksum,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_appends, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_fails_dev_full, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_partial_write, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_fdatasync_fails, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_header, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tail_larger_than_a_write,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_callback_error, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_perf, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
