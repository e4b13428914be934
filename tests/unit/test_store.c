/* Unit tests: snapshot files (src/membership/store.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/tmpdir.h"
#include "proxystone/bytes.h"
#include "proxystone/store.h"

/* Room for store messages, which quote the path. */
#define TEST_ERR_MAX (PATH_MAX + 256)
#define SNAP_NODES 3

/* One temp directory per test; teardown removes it and everything in it. */
struct fixture {
	char dir[TMPDIR_NAME_MAX];
	char path[128]; /* <dir>/registry.snap */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	if (tmpdir_make(f->dir, "store")) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/registry.snap", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc = tmpdir_remove(f->dir);
	free(f);
	return rc;
}

/* A snapshot with every field set, built on storage the caller owns. */
struct snap_store {
	Ps__Snapshot snap;
	Ps__Node nodes[SNAP_NODES];
	Ps__Node *np[SNAP_NODES];
	Ps__Capability caps[2];
	Ps__Capability *cp[2];
	char *tags[2];
	char ids[SNAP_NODES][32];
};

static void snap_build(struct snap_store *s, const char *self_id,
		       uint64_t version)
{
	memset(s, 0, sizeof(*s));
	ps__snapshot__init(&s->snap);
	s->snap.self_id = (char *)self_id;
	s->snap.registry_version = version;
	s->snap.serving = 1;
	s->snap.changed_at_ms = 1700000000123LL;
	s->tags[0] = "gpu";
	s->tags[1] = "zone:eu-1";
	for (int i = 0; i < 2; i++) {
		ps__capability__init(&s->caps[i]);
		s->caps[i].name = i ? "avx" : "cuda";
		s->caps[i].value = !i;
		s->cp[i] = &s->caps[i];
	}
	for (int i = 0; i < SNAP_NODES; i++) {
		Ps__Node *n = &s->nodes[i];
		ps__node__init(n);
		snprintf(s->ids[i], sizeof(s->ids[i]), "node-%d", i);
		n->id = s->ids[i];
		n->url = "http://10.0.0.1:4401";
		n->cluster_id = "c1";
		n->status = (Ps__NodeStatus)(i % 5);
		n->role = i ? "worker" : "coordinator";
		n->last_seen_ms = 1700000000000LL + i;
		n->created_at_ms = 1600000000000LL - i;
		n->n_tags = (size_t)i < 2 ? 2 : 0;
		n->tags = s->tags;
		n->n_capabilities = i == 1 ? 2 : 0;
		n->capabilities = s->cp;
		n->metadata_json =
		    i == 2 ? NULL : "{\"rack\":\"r1\",\"n\":[1,2]}";
		n->has_gossip = i == 2;
		n->gossip = i == 2;
		s->np[i] = n;
	}
	s->snap.n_nodes = SNAP_NODES;
	s->snap.nodes = s->np;
}

static void assert_node_equal(const Ps__Node *a, const Ps__Node *b)
{
	assert_string_equal(a->id, b->id);
	assert_string_equal(a->url, b->url);
	assert_string_equal(a->cluster_id, b->cluster_id);
	assert_int_equal(a->status, b->status);
	assert_string_equal(a->role, b->role);
	assert_int_equal(a->last_seen_ms, b->last_seen_ms);
	assert_int_equal(a->created_at_ms, b->created_at_ms);
	assert_int_equal(a->n_tags, b->n_tags);
	for (size_t i = 0; i < a->n_tags; i++)
		assert_string_equal(a->tags[i], b->tags[i]);
	assert_int_equal(a->n_capabilities, b->n_capabilities);
	for (size_t i = 0; i < a->n_capabilities; i++) {
		assert_string_equal(a->capabilities[i]->name,
				    b->capabilities[i]->name);
		assert_int_equal(!!a->capabilities[i]->value,
				 !!b->capabilities[i]->value);
	}
	if (a->metadata_json || b->metadata_json) {
		assert_non_null(a->metadata_json);
		assert_non_null(b->metadata_json);
		assert_string_equal(a->metadata_json, b->metadata_json);
	}
	assert_int_equal(!!a->has_gossip, !!b->has_gossip);
	assert_int_equal(!!a->gossip, !!b->gossip);
}

static void assert_snap_equal(const Ps__Snapshot *a, const Ps__Snapshot *b)
{
	assert_string_equal(a->self_id, b->self_id);
	assert_int_equal(a->registry_version, b->registry_version);
	assert_int_equal(!!a->serving, !!b->serving);
	assert_int_equal(a->changed_at_ms, b->changed_at_ms);
	assert_int_equal(a->n_nodes, b->n_nodes);
	for (size_t i = 0; i < a->n_nodes; i++)
		assert_node_equal(a->nodes[i], b->nodes[i]);
}

static void save_ok(const char *path, const Ps__Snapshot *snap)
{
	char err[TEST_ERR_MAX] = "";
	int rc = store_save(path, snap, err, sizeof(err));
	if (rc)
		fail_msg("store_save %s: %d %s", path, rc, err);
}

/* Loads path, which must succeed; the caller frees the result. */
static Ps__Snapshot *load_ok(const char *path)
{
	char err[TEST_ERR_MAX] = "";
	Ps__Snapshot *out = NULL;
	int rc = store_load(path, &out, err, sizeof(err));
	if (rc)
		fail_msg("store_load %s: %d %s", path, rc, err);
	assert_non_null(out);
	return out;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	uint8_t *data = malloc((size_t)st.st_size + 1);
	assert_non_null(data);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, data, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return data;
}

static void spit(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* Writes bytes to path and expects a clean -EBADMSG: no snapshot, and a
 * message naming the file. */
static void expect_damaged(const char *path, const uint8_t *data, size_t len,
			   const char *what)
{
	char err[TEST_ERR_MAX] = "";
	static Ps__Snapshot sentinel;
	Ps__Snapshot *out = &sentinel;
	spit(path, data, len);
	int rc = store_load(path, &out, err, sizeof(err));
	if (rc == 0 && out && out != &sentinel)
		ps__snapshot__free_unpacked(out, NULL);
	if (rc != -EBADMSG)
		fail_msg("%s (%zu bytes): got %d, want -EBADMSG (%s)", what,
			 len, rc, err);
	if (out)
		fail_msg("%s: *out not NULL after a failed load", what);
	if (!strstr(err, path))
		fail_msg("%s: error '%s' does not name the file", what, err);
}

/* Saves a full snapshot to path and returns its bytes (caller frees). */
static uint8_t *good_file(const char *path, size_t *len)
{
	struct snap_store s;
	snap_build(&s, "self-1", 42);
	save_ok(path, &s.snap);
	return slurp(path, len);
}

/* ---- tests --------------------------------------------------------------- */

static void test_crc32(void **state)
{
	(void)state;
	assert_int_equal(store_crc32("123456789", 9), 0xCBF43926u);
	assert_int_equal(store_crc32("", 0), 0);
	assert_int_equal(store_crc32("a", 1), 0xE8B7BE43u);
	assert_int_equal(
	    store_crc32("The quick brown fox jumps over the lazy dog", 43),
	    0x414FA339u);
}

static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	struct snap_store s;
	snap_build(&s, "self-1", 0xFEEDFACE12345ull);
	save_ok(f->path, &s.snap);
	Ps__Snapshot *got = load_ok(f->path);
	assert_snap_equal(got, &s.snap);
	assert_int_equal(got->registry_version, 0xFEEDFACE12345ull);
	assert_int_equal(got->nodes[1]->n_capabilities, 2);
	assert_string_equal(got->nodes[0]->tags[1], "zone:eu-1");
	ps__snapshot__free_unpacked(got, NULL);

	/* Not serving, no nodes. */
	s.snap.serving = 0;
	s.snap.n_nodes = 0;
	s.snap.changed_at_ms = -1;
	save_ok(f->path, &s.snap);
	got = load_ok(f->path);
	assert_snap_equal(got, &s.snap);
	assert_false(got->serving);
	ps__snapshot__free_unpacked(got, NULL);
}

static void test_file_layout(void **state)
{
	struct fixture *f = *state;
	struct snap_store s;
	snap_build(&s, "self-1", 7);
	save_ok(f->path, &s.snap);
	size_t len;
	uint8_t *data = slurp(f->path, &len);
	size_t n = ps__snapshot__get_packed_size(&s.snap);
	assert_int_equal(len, STORE_HEADER_LEN + n);
	assert_memory_equal(data, STORE_MAGIC, 4);
	assert_int_equal(get_be32(data + 4), STORE_FORMAT);
	assert_int_equal(get_be32(data + 8), n);
	assert_int_equal(get_be32(data + 12),
			 store_crc32(data + STORE_HEADER_LEN, n));
	Ps__Snapshot *p =
	    ps__snapshot__unpack(NULL, n, data + STORE_HEADER_LEN);
	assert_non_null(p);
	assert_snap_equal(p, &s.snap);
	ps__snapshot__free_unpacked(p, NULL);
	free(data);
	/* Only the snapshot is left: no temporaries, no .prev yet. */
	char other[256];
	snprintf(other, sizeof(other), "%s.tmp", f->path);
	assert_int_equal(access(other, F_OK), -1);
	snprintf(other, sizeof(other), "%s.prev", f->path);
	assert_int_equal(access(other, F_OK), -1);
}

static void test_missing_file(void **state)
{
	struct fixture *f = *state;
	char err[TEST_ERR_MAX] = "";
	static Ps__Snapshot sentinel;
	Ps__Snapshot *out = &sentinel;
	assert_int_equal(store_load(f->path, &out, err, sizeof(err)), -ENOENT);
	assert_null(out);
	assert_non_null(strstr(err, f->path));
}

static void test_header_bit_flips(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *good = good_file(f->path, &len);
	uint8_t *bad = malloc(len);
	assert_non_null(bad);
	char what[64];
	for (size_t i = 0; i < STORE_HEADER_LEN; i++) {
		for (int bit = 0; bit <= 8; bit++) {
			memcpy(bad, good, len);
			/* Every single bit, then the whole byte. */
			bad[i] ^= bit < 8 ? (uint8_t)(1u << bit) : 0xFF;
			snprintf(what, sizeof(what), "header byte %zu bit %d",
				 i, bit);
			expect_damaged(f->path, bad, len, what);
		}
	}
	/* The untouched bytes still load: the flips above were the cause. */
	spit(f->path, good, len);
	ps__snapshot__free_unpacked(load_ok(f->path), NULL);
	free(bad);
	free(good);
}

static void test_payload_bit_flips(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *good = good_file(f->path, &len);
	uint8_t *bad = malloc(len);
	assert_non_null(bad);
	char what[64];
	assert_true(len > STORE_HEADER_LEN + 100);
	for (size_t i = STORE_HEADER_LEN; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(bad, good, len);
			bad[i] ^= (uint8_t)(1u << bit);
			snprintf(what, sizeof(what), "payload byte %zu bit %d",
				 i, bit);
			expect_damaged(f->path, bad, len, what);
		}
	}
	free(bad);
	free(good);
}

static void test_truncated(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *good = good_file(f->path, &len);
	char what[64];
	for (size_t n = 0; n < len; n++) {
		snprintf(what, sizeof(what), "truncated to %zu", n);
		expect_damaged(f->path, good, n, what);
	}
	spit(f->path, good, len);
	ps__snapshot__free_unpacked(load_ok(f->path), NULL);
	free(good);
}

static void test_trailing_bytes(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *good = good_file(f->path, &len);
	static const size_t extra[] = {1, 4, STORE_HEADER_LEN, 4096};
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		uint8_t *big = calloc(1, len + extra[i]);
		assert_non_null(big);
		memcpy(big, good, len);
		expect_damaged(f->path, big, len + extra[i], "zero tail");
		/* A tail that is a whole second copy of the file. */
		if (extra[i] >= len)
			memcpy(big + len, good, len);
		else
			memset(big + len, 0xA5, extra[i]);
		expect_damaged(f->path, big, len + extra[i], "junk tail");
		free(big);
	}
	free(good);
}

/* Rewrites one header field, keeping everything else (crc included) valid. */
static void expect_field_damaged(const char *path, const uint8_t *good,
				 size_t len, size_t off, uint32_t v,
				 const char *what)
{
	uint8_t *bad = malloc(len);
	assert_non_null(bad);
	memcpy(bad, good, len);
	put_be32(bad + off, v);
	expect_damaged(path, bad, len, what);
	free(bad);
}

static void test_wrong_magic_and_format(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *good = good_file(f->path, &len);
	static const char *const magics[] = {"PSNQ", "psnp", "SNPS", "XXXX",
					     "PSN\0"};
	for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++) {
		uint8_t *bad = malloc(len);
		assert_non_null(bad);
		memcpy(bad, good, len);
		memcpy(bad, magics[i], 4);
		expect_damaged(f->path, bad, len, "magic");
		free(bad);
	}
	static const uint32_t formats[] = {0, STORE_FORMAT + 1, 0x01000000u,
					   0xFFFFFFFFu};
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		expect_field_damaged(f->path, good, len, 4, formats[i],
				     "format");
	free(good);
}

static void test_length_field(void **state)
{
	struct fixture *f = *state;
	size_t len;
	uint8_t *good = good_file(f->path, &len);
	uint32_t payload = (uint32_t)(len - STORE_HEADER_LEN);
	static const uint32_t deltas[] = {1, 2, 64};
	for (size_t i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
		expect_field_damaged(f->path, good, len, 8, payload + deltas[i],
				     "length > file");
		expect_field_damaged(f->path, good, len, 8, payload - deltas[i],
				     "length < file");
	}
	expect_field_damaged(f->path, good, len, 8, STORE_FILE_MAX,
			     "length = STORE_FILE_MAX");
	expect_field_damaged(f->path, good, len, 8, 0xFFFFFFFFu,
			     "length = 2^32-1");
	expect_field_damaged(f->path, good, len, 8, 0, "length = 0");
	free(good);
}

static void test_empty_and_short_files(void **state)
{
	struct fixture *f = *state;
	expect_damaged(f->path, (const uint8_t *)"", 0, "empty file");
	expect_damaged(f->path, (const uint8_t *)"PSNP", 4, "magic only");
}

/* Header, length and crc all consistent, but the payload is not a snapshot:
 * the decoder is the last line of defence and must not half-load. */
static void test_crc_valid_but_undecodable(void **state)
{
	struct fixture *f = *state;
	uint8_t file[STORE_HEADER_LEN + 64];
	memcpy(file, STORE_MAGIC, 4);
	put_be32(file + 4, STORE_FORMAT);

	/* Empty payload: required fields missing. */
	put_be32(file + 8, 0);
	put_be32(file + 12, store_crc32("", 0));
	expect_damaged(f->path, file, STORE_HEADER_LEN, "empty payload");

	/* Garbage: an unterminated varint. */
	memset(file + STORE_HEADER_LEN, 0xFF, 64);
	put_be32(file + 8, 64);
	put_be32(file + 12, store_crc32(file + STORE_HEADER_LEN, 64));
	expect_damaged(f->path, file, sizeof(file), "garbage payload");

	/* A valid snapshot missing a required field (self_id): pack a
	 * snapshot and drop its first field, which is self_id (tag 1). */
	struct snap_store s;
	snap_build(&s, "x", 1);
	s.snap.n_nodes = 0;
	size_t n = ps__snapshot__get_packed_size(&s.snap);
	assert_true(n <= 64);
	uint8_t packed[64];
	ps__snapshot__pack(&s.snap, packed);
	assert_int_equal(packed[0], 0x0A); /* field 1, length-delimited */
	size_t skip = 2 + packed[1];
	memcpy(file + STORE_HEADER_LEN, packed + skip, n - skip);
	put_be32(file + 8, (uint32_t)(n - skip));
	put_be32(file + 12, store_crc32(file + STORE_HEADER_LEN, n - skip));
	expect_damaged(f->path, file, STORE_HEADER_LEN + n - skip,
		       "no self_id");

	/* The same bytes with the field kept load fine. */
	memcpy(file + STORE_HEADER_LEN, packed, n);
	put_be32(file + 8, (uint32_t)n);
	put_be32(file + 12, store_crc32(file + STORE_HEADER_LEN, n));
	spit(f->path, file, STORE_HEADER_LEN + n);
	Ps__Snapshot *got = load_ok(f->path);
	assert_string_equal(got->self_id, "x");
	ps__snapshot__free_unpacked(got, NULL);
}

static void test_prev_kept(void **state)
{
	struct fixture *f = *state;
	char prev[256];
	char err[TEST_ERR_MAX] = "";
	Ps__Snapshot *out = NULL;
	struct snap_store s;
	snprintf(prev, sizeof(prev), "%s.prev", f->path);

	snap_build(&s, "self-1", 1);
	save_ok(f->path, &s.snap);
	assert_int_equal(store_load(prev, &out, err, sizeof(err)), -ENOENT);

	snap_build(&s, "self-2", 2);
	s.snap.n_nodes = 1;
	save_ok(f->path, &s.snap);
	Ps__Snapshot *cur = load_ok(f->path);
	Ps__Snapshot *old = load_ok(prev);
	assert_string_equal(cur->self_id, "self-2");
	assert_int_equal(cur->registry_version, 2);
	assert_int_equal(cur->n_nodes, 1);
	assert_string_equal(old->self_id, "self-1");
	assert_int_equal(old->registry_version, 1);
	assert_int_equal(old->n_nodes, SNAP_NODES);
	ps__snapshot__free_unpacked(cur, NULL);
	ps__snapshot__free_unpacked(old, NULL);

	/* A third save moves the window: .prev now holds the second. */
	snap_build(&s, "self-3", 3);
	save_ok(f->path, &s.snap);
	cur = load_ok(f->path);
	old = load_ok(prev);
	assert_int_equal(cur->registry_version, 3);
	assert_int_equal(old->registry_version, 2);
	assert_string_equal(old->self_id, "self-2");
	ps__snapshot__free_unpacked(cur, NULL);
	ps__snapshot__free_unpacked(old, NULL);

	/* .prev is a separate file: damaging it leaves the current intact. */
	spit(prev, "junk", 4);
	cur = load_ok(f->path);
	assert_int_equal(cur->registry_version, 3);
	ps__snapshot__free_unpacked(cur, NULL);
}

/* Fails the test if dir holds any name but `keep` (NULL: nothing). */
static void assert_only(const char *dir, const char *keep)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    (keep && !strcmp(e->d_name, keep)))
			continue;
		closedir(d);
		fail_msg("stray file '%s' left in %s", e->d_name, dir);
	}
	closedir(d);
}

static void test_save_into_missing_dir(void **state)
{
	struct fixture *f = *state;
	char path[256];
	char err[TEST_ERR_MAX] = "";
	struct snap_store s;
	snap_build(&s, "self-1", 1);
	snprintf(path, sizeof(path), "%s/no/such/dir/registry.snap", f->dir);
	int rc = store_save(path, &s.snap, err, sizeof(err));
	assert_int_equal(rc, -ENOENT);
	if (!strstr(err, path))
		fail_msg("error '%s' does not name '%s'", err, path);
	assert_only(f->dir, NULL);
}

static void test_failed_save_leaves_no_tmp(void **state)
{
	struct fixture *f = *state;
	char err[TEST_ERR_MAX] = "";
	struct snap_store s;
	snap_build(&s, "self-1", 1);
	/* The target is a directory: the temporary is written, rename fails. */
	assert_int_equal(mkdir(f->path, 0700), 0);
	int rc = store_save(f->path, &s.snap, err, sizeof(err));
	assert_true(rc < 0);
	if (!strstr(err, f->path))
		fail_msg("error '%s' does not name '%s'", err, f->path);
	assert_only(f->dir, "registry.snap");
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_only(f->path, NULL);

	/* Once the obstacle is gone, saving works again. */
	assert_int_equal(rmdir(f->path), 0);
	save_ok(f->path, &s.snap);
	Ps__Snapshot *got = load_ok(f->path);
	assert_snap_equal(got, &s.snap);
	ps__snapshot__free_unpacked(got, NULL);
	assert_only(f->dir, "registry.snap");
}

/* ---- regressions: bugs found by these tests, since fixed ------------------
 */

/*
 * Fills out[] with a path of exactly len bytes under dir, creating the
 * directories on the way (a name is at most NAME_MAX bytes).
 */
static void make_long_path(const char *dir, size_t len, char *out)
{
	snprintf(out, PATH_MAX, "%s", dir);
	while (len - strlen(out) > 200) {
		size_t at = strlen(out);
		out[at] = '/';
		memset(out + at + 1, 'd', 150);
		out[at + 151] = '\0';
		assert_int_equal(mkdir(out, 0700), 0);
	}
	size_t at = strlen(out);
	out[at] = '/';
	memset(out + at + 1, 'f', len - at - 1);
	out[len] = '\0';
	assert_int_equal(strlen(out), len);
}

/* Puts a valid snapshot with registry_version 1 at path, without store_save
 * (which cannot write there, see below). */
static void plant_v1(const struct fixture *f, const char *path)
{
	struct snap_store s;
	size_t len;
	snap_build(&s, "self-1", 1);
	save_ok(f->path, &s.snap);
	uint8_t *data = slurp(f->path, &len);
	spit(path, data, len);
	free(data);
	assert_int_equal(unlink(f->path), 0);
}

/*
 * store_save builds "<path>.tmp", "<path>.prev" and "<path>.prev.tmp" with
 * snprintf into char[PATH_MAX] and ignores truncation. With
 * strlen(path) == PATH_MAX - 2 all three become "<path>.": the new bytes
 * are written there, unlink(prevtmp) deletes them, link() makes "<path>."
 * a second name of the OLD file, and rename("<path>.", path) is a no-op on
 * two links to one inode. store_save returns 0; the file is unchanged.
 */
static void test_bug_long_path_save_lost(void **state)
{
	struct fixture *f = *state;
	char *path = malloc(PATH_MAX);
	char err[TEST_ERR_MAX] = "";
	assert_non_null(path);
	make_long_path(f->dir, PATH_MAX - 2, path);
	plant_v1(f, path);
	struct snap_store s;
	snap_build(&s, "self-2", 2);
	int rc = store_save(path, &s.snap, err, sizeof(err));
	Ps__Snapshot *got = NULL;
	int lrc = store_load(path, &got, err, sizeof(err));
	uint64_t v = got ? got->registry_version : 0;
	if (got)
		ps__snapshot__free_unpacked(got, NULL);
	free(path);
	assert_int_equal(lrc, 0);
	if (rc == 0 && v != 2)
		fail_msg("store_save returned 0 but the file holds version "
			 "%llu, not 2",
			 (unsigned long long)v);
}

/*
 * With strlen(path) == PATH_MAX - 1 the three names equal path itself:
 * open(O_TRUNC) overwrites the live snapshot in place (no atomicity), then
 * unlink(prevtmp) deletes it. store_save fails with -ENOENT and the
 * previous snapshot is gone.
 */
static void test_bug_long_path_failed_save_deletes_old(void **state)
{
	struct fixture *f = *state;
	char *path = malloc(PATH_MAX);
	char err[TEST_ERR_MAX] = "";
	assert_non_null(path);
	make_long_path(f->dir, PATH_MAX - 1, path);
	plant_v1(f, path);
	struct snap_store s;
	snap_build(&s, "self-2", 2);
	int rc = store_save(path, &s.snap, err, sizeof(err));
	Ps__Snapshot *got = NULL;
	int lrc = store_load(path, &got, err, sizeof(err));
	uint64_t v = got ? got->registry_version : 0;
	if (got)
		ps__snapshot__free_unpacked(got, NULL);
	free(path);
	if (lrc != 0)
		fail_msg("after store_save -> %d the old snapshot is gone (%d)",
			 rc, lrc);
	assert_int_equal(v, rc == 0 ? 2 : 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc32),
	    T(test_round_trip),
	    T(test_file_layout),
	    T(test_missing_file),
	    T(test_header_bit_flips),
	    T(test_payload_bit_flips),
	    T(test_truncated),
	    T(test_trailing_bytes),
	    T(test_wrong_magic_and_format),
	    T(test_length_field),
	    T(test_empty_and_short_files),
	    T(test_crc_valid_but_undecodable),
	    T(test_prev_kept),
	    T(test_save_into_missing_dir),
	    T(test_failed_save_leaves_no_tmp),
	};
	const struct CMUnitTest known_bugs[] = {
	    T(test_bug_long_path_save_lost),
	    T(test_bug_long_path_failed_save_deletes_old),
	};
	int failed = cmocka_run_group_tests_name("store", tests, NULL, NULL);
	/* Regression tests for bugs found and fixed. */
	failed += cmocka_run_group_tests_name("store known bugs", known_bugs,
					      NULL, NULL);
	return failed;
}
