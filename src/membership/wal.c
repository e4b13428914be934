/* wal — write-ahead log of registry changes; see include/proxystone/wal.h. */
#include "proxystone/wal.h"
#include "proxystone/bytes.h"
#include "proxystone/registry.h"
#include "proxystone/store.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* First allocation of the append buffer; it doubles up to the bound. */
#define WAL_BUFFER_INIT (64 * 1024)
/* A buffer a burst grew past this is freed after its sync rather than
 * held for the life of the process. */
#define WAL_BUFFER_KEEP (1024 * 1024)
/* A record's length field counts kind + version + body. */
#define WAL_RECORD_FIXED (WAL_RECORD_HDR - 4)
/* The smallest batch: one record with an empty body. */
#define WAL_BATCH_MIN WAL_RECORD_HDR
/* Serving body: flag + changed_at_ms. */
#define WAL_SERVING_LEN 9

/* fdatasync, behind a pointer so tests can make it fail. */
static int (*wal_fdatasync)(int fd) = fdatasync;

struct wal {
	int fd;
	uint64_t synced; /* file length known durable: header + whole batches */
	bool unclean; /* bytes past `synced` may be on file: cut them first */
	uint8_t *buf; /* WAL_FRAME_HDR bytes for the batch header, records */
	size_t len;   /* record bytes buffered */
	size_t cap;   /* bytes allocated at buf */
};

static void header_make(uint8_t *p)
{
	memcpy(p, WAL_MAGIC, 4);
	put_be32(p + 4, WAL_FORMAT);
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* -EIO when the file ends early: the caller checked its size. */
static int pread_all(int fd, uint8_t *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* ---- appending ---------------------------------------------------------- */

/* Adds a record header to the buffer; *body gets room for `body` bytes. */
static int reserve(struct wal *w, uint8_t kind, uint64_t version, size_t body,
		   uint8_t **out)
{
	if (body > WAL_RECORD_MAX - WAL_RECORD_FIXED)
		return -EMSGSIZE;
	size_t need = WAL_RECORD_HDR + body;
	if (need > WAL_BUFFER_MAX - w->len)
		return -ENOBUFS;
	size_t want = WAL_FRAME_HDR + w->len + need;
	if (want > w->cap) {
		size_t cap = w->cap ? w->cap : WAL_BUFFER_INIT;
		while (cap < want)
			cap *= 2;
		if (cap > WAL_FRAME_HDR + WAL_BUFFER_MAX)
			cap = WAL_FRAME_HDR + WAL_BUFFER_MAX;
		uint8_t *p = realloc(w->buf, cap);
		if (!p)
			return -ENOMEM;
		w->buf = p;
		w->cap = cap;
	}
	uint8_t *r = w->buf + WAL_FRAME_HDR + w->len;
	put_be32(r, (uint32_t)(WAL_RECORD_FIXED + body));
	r[4] = kind;
	put_be64(r + 5, version);
	*out = r + WAL_RECORD_HDR;
	w->len += need;
	return 0;
}

int wal_append_upsert(struct wal *w, const Ps__Node *n, uint64_t version)
{
	/* A record replay cannot decode would make the whole log damaged:
	 * refuse it here instead. */
	if (!n || !protobuf_c_message_check(&n->base))
		return -EINVAL;
	size_t len = ps__node__get_packed_size(n);
	uint8_t *p;
	int rc = reserve(w, WAL_UPSERT, version, len, &p);
	if (rc)
		return rc;
	ps__node__pack(n, p);
	return 0;
}

int wal_append_remove(struct wal *w, const char *id, uint64_t version)
{
	size_t len = id ? strnlen(id, NODE_ID_MAX + 1) : 0;
	if (!len || len > NODE_ID_MAX)
		return -EINVAL;
	uint8_t *p;
	int rc = reserve(w, WAL_REMOVE, version, len, &p);
	if (rc)
		return rc;
	memcpy(p, id, len);
	return 0;
}

int wal_append_serving(struct wal *w, bool serving, int64_t changed_at_ms,
		       uint64_t version)
{
	uint8_t *p;
	int rc = reserve(w, WAL_SERVING, version, WAL_SERVING_LEN, &p);
	if (rc)
		return rc;
	p[0] = serving ? 1 : 0;
	put_be64(p + 1, (uint64_t)changed_at_ms);
	return 0;
}

int wal_sync(struct wal *w)
{
	if (w->unclean) {
		if (ftruncate(w->fd, (off_t)w->synced) < 0)
			return -errno;
		w->unclean = false;
	}
	if (!w->len)
		return 0;
	put_be32(w->buf, (uint32_t)w->len);
	put_be64(w->buf + 8, w->synced);
	put_be32(w->buf + 4, store_crc32(w->buf + 8, 8 + w->len));
	size_t n = WAL_FRAME_HDR + w->len;
	int rc = pwrite_all(w->fd, w->buf, n, w->synced);
	if (!rc && wal_fdatasync(w->fd) < 0)
		rc = -errno;
	if (rc) {
		/* Part of the batch may be on file, or all of it without
		 * being durable (after a failed fdatasync the kernel may
		 * have dropped the pages). Cut it off so the retry writes it
		 * whole at the same offset; if the cut fails too, the next
		 * call tries it again before writing anything. */
		w->unclean = ftruncate(w->fd, (off_t)w->synced) < 0;
		return rc;
	}
	w->synced += n;
	w->len = 0;
	if (w->cap > WAL_BUFFER_KEEP) {
		free(w->buf);
		w->buf = NULL;
		w->cap = 0;
	}
	return 0;
}

size_t wal_size(const struct wal *w)
{
	return (size_t)(w->synced - WAL_HEADER_LEN);
}

size_t wal_pending(const struct wal *w)
{
	return w->len;
}

void wal_discard(struct wal *w)
{
	w->len = 0;
}

int wal_reset(struct wal *w)
{
	w->len = 0;
	if (ftruncate(w->fd, WAL_HEADER_LEN) < 0)
		return -errno;
	w->synced = WAL_HEADER_LEN;
	w->unclean = false;
	return wal_fdatasync(w->fd) < 0 ? -errno : 0;
}

void wal_close(struct wal *w)
{
	if (!w)
		return;
	close(w->fd);
	free(w->buf);
	free(w);
}

/* ---- reading ------------------------------------------------------------ */

struct reader {
	int fd;
	uint64_t size;
	uint8_t *buf; /* one batch, or the tail being examined */
	size_t cap;
};

static int reader_room(struct reader *r, size_t n)
{
	if (n <= r->cap)
		return 0;
	uint8_t *p = realloc(r->buf, n);
	if (!p)
		return -ENOMEM;
	r->buf = p;
	r->cap = n;
	return 0;
}

/* Reads and checks the header; *empty when the file is shorter than one
 * but a prefix of it (created, then a crash before the header was
 * durable). */
static int header_check(struct reader *r, bool *empty, const char **why)
{
	uint8_t want[WAL_HEADER_LEN], got[WAL_HEADER_LEN];
	header_make(want);
	size_t n = r->size < WAL_HEADER_LEN ? (size_t)r->size : WAL_HEADER_LEN;
	int rc = pread_all(r->fd, got, n, 0);
	if (rc)
		return rc;
	*empty = n < WAL_HEADER_LEN;
	if (memcmp(got, want, n < 4 ? n : 4)) {
		*why = "not a write-ahead log (bad magic)";
		return -EBADMSG;
	}
	if (n == WAL_HEADER_LEN && get_be32(got + 4) != WAL_FORMAT) {
		*why = "unknown write-ahead log format";
		return -EBADMSG;
	}
	if (n < WAL_HEADER_LEN && memcmp(got, want, n)) {
		*why = "header cut short and damaged";
		return -EBADMSG;
	}
	return 0;
}

enum frame_state {
	FRAME_OK,
	FRAME_TORN, /* header cut short, length impossible or past the end */
	FRAME_BAD,  /* complete, but its offset or checksum is wrong */
};

/*
 * Reads the batch at off. FRAME_OK: its records are at r->buf +
 * WAL_FRAME_HDR, *len bytes. FRAME_BAD: *len is its record bytes too.
 * Otherwise *why says what is wrong. Negative errno on I/O.
 */
static int frame_read(struct reader *r, uint64_t off, size_t *len,
		      const char **why)
{
	uint64_t left = r->size - off;
	uint8_t hdr[WAL_FRAME_HDR];
	if (left < WAL_FRAME_HDR) {
		*why = "batch header cut short";
		return FRAME_TORN;
	}
	int rc = pread_all(r->fd, hdr, sizeof(hdr), off);
	if (rc)
		return rc;
	uint32_t n = get_be32(hdr);
	/* The bound comes before any allocation. */
	if (n < WAL_BATCH_MIN || n > WAL_BUFFER_MAX) {
		*why = "impossible batch length";
		return FRAME_TORN;
	}
	if (n > left - WAL_FRAME_HDR) {
		*why = "batch cut short";
		return FRAME_TORN;
	}
	*len = n;
	if (get_be64(hdr + 8) != off) {
		*why = "batch offset mismatch";
		return FRAME_BAD;
	}
	rc = reader_room(r, WAL_FRAME_HDR + (size_t)n);
	if (!rc)
		rc = pread_all(r->fd, r->buf + WAL_FRAME_HDR, n,
			       off + WAL_FRAME_HDR);
	if (rc)
		return rc;
	memcpy(r->buf, hdr, sizeof(hdr));
	if (get_be32(hdr + 4) != store_crc32(r->buf + 8, 8 + (size_t)n)) {
		*why = "checksum mismatch";
		return FRAME_BAD;
	}
	return FRAME_OK;
}

/* Checking (ops NULL) or applying the records of verified batches. */
struct walk {
	const struct wal_replay_ops *ops;
	void *ud;
	uint64_t since;
	const char *why; /* set with -EBADMSG; NULL: a callback failed */
	uint64_t at;	 /* file offset of the record being handled */
};

static int record_do(struct walk *wk, uint8_t kind, uint64_t version,
		     const uint8_t *body, size_t len)
{
	bool apply = wk->ops && version > wk->since;
	switch (kind) {
	case WAL_UPSERT: {
		apply = apply && wk->ops->upsert;
		if (wk->ops && !apply)
			return 0; /* verified by the first pass */
		Ps__Node *n = ps__node__unpack(NULL, len, body);
		if (!n) {
			wk->why = "undecodable node";
			return -EBADMSG;
		}
		int rc = apply ? wk->ops->upsert(wk->ud, n, version) : 0;
		ps__node__free_unpacked(n, NULL);
		return rc;
	}
	case WAL_REMOVE: {
		char id[NODE_ID_MAX + 1];
		if (!len || len > NODE_ID_MAX || memchr(body, 0, len)) {
			wk->why = "bad node id";
			return -EBADMSG;
		}
		if (!apply || !wk->ops->remove)
			return 0;
		memcpy(id, body, len);
		id[len] = 0;
		return wk->ops->remove(wk->ud, id, version);
	}
	case WAL_SERVING:
		if (len != WAL_SERVING_LEN || body[0] > 1) {
			wk->why = "bad serving record";
			return -EBADMSG;
		}
		if (!apply || !wk->ops->serving)
			return 0;
		return wk->ops->serving(wk->ud, body[0],
					(int64_t)get_be64(body + 1), version);
	default:
		wk->why = "unknown record kind";
		return -EBADMSG;
	}
}

static int records_walk(struct walk *wk, const uint8_t *p, size_t n,
			uint64_t off)
{
	size_t i = 0;
	while (i < n) {
		wk->at = off + i;
		wk->why = NULL;
		if (n - i < WAL_RECORD_HDR) {
			wk->why = "record header cut short";
			return -EBADMSG;
		}
		uint32_t rlen = get_be32(p + i);
		if (rlen < WAL_RECORD_FIXED || rlen > WAL_RECORD_MAX ||
		    rlen > n - i - 4) {
			wk->why = "impossible record length";
			return -EBADMSG;
		}
		int rc =
		    record_do(wk, p[i + 4], get_be64(p + i + 5),
			      p + i + WAL_RECORD_HDR, rlen - WAL_RECORD_FIXED);
		if (rc)
			return rc;
		i += 4 + (size_t)rlen;
	}
	return 0;
}

/*
 * The batch at off is bad (why). 0 if it and everything after it are a
 * torn tail, -EBADMSG if damage (see the header for the rules).
 * bad_end: where the bad batch ends if it is complete, else 0.
 */
static int tail_check(struct reader *r, uint64_t off, uint64_t bad_end,
		      const char *why, const char *path, char *err,
		      size_t errlen)
{
	uint64_t left = r->size - off;
	if (bad_end && bad_end < r->size) {
		snprintf(err, errlen,
			 "%s: batch at %llu: %s, and %llu bytes follow it",
			 path, (unsigned long long)off, why,
			 (unsigned long long)(r->size - bad_end));
		return -EBADMSG;
	}
	if (left > WAL_FRAME_HDR + WAL_BUFFER_MAX) {
		snprintf(err, errlen,
			 "%s: batch at %llu: %s, with %llu bytes after it, "
			 "more than one write",
			 path, (unsigned long long)off, why,
			 (unsigned long long)left);
		return -EBADMSG;
	}
	int rc = reader_room(r, (size_t)left);
	if (!rc)
		rc = pread_all(r->fd, r->buf, (size_t)left, off);
	if (rc) {
		snprintf(err, errlen, "%s: read: %s", path, strerror(-rc));
		return rc;
	}
	/* A valid batch after the bad one means the bad one was once
	 * synced: damage. Candidates must name their own offset, so the
	 * checksum is only computed where that matches. */
	for (size_t p = 1; p + WAL_FRAME_HDR <= left; p++) {
		const uint8_t *f = r->buf + p;
		if (get_be64(f + 8) != off + p)
			continue;
		uint32_t n = get_be32(f);
		if (n < WAL_BATCH_MIN || n > WAL_BUFFER_MAX ||
		    n > left - p - WAL_FRAME_HDR)
			continue;
		if (get_be32(f + 4) != store_crc32(f + 8, 8 + (size_t)n))
			continue;
		snprintf(
		    err, errlen,
		    "%s: batch at %llu: %s, but a valid batch follows at %llu",
		    path, (unsigned long long)off, why,
		    (unsigned long long)(off + p));
		return -EBADMSG;
	}
	return 0;
}

/* First pass: verifies every batch and record after the header; *end gets
 * the offset just past the last valid batch. */
static int log_verify(struct reader *r, uint64_t *end, const char *path,
		      char *err, size_t errlen)
{
	struct walk wk = {0};
	uint64_t off = WAL_HEADER_LEN;
	while (off < r->size) {
		size_t n = 0;
		const char *why = NULL;
		int st = frame_read(r, off, &n, &why);
		if (st < 0) {
			snprintf(err, errlen, "%s: read: %s", path,
				 strerror(-st));
			return st;
		}
		if (st != FRAME_OK) {
			uint64_t bad_end =
			    st == FRAME_BAD ? off + WAL_FRAME_HDR + n : 0;
			int rc =
			    tail_check(r, off, bad_end, why, path, err, errlen);
			if (rc)
				return rc;
			break;
		}
		/* The checksum holds, so no crash made this: a bad record
		 * is a bug or a newer format, never a torn tail. */
		int rc = records_walk(&wk, r->buf + WAL_FRAME_HDR, n,
				      off + WAL_FRAME_HDR);
		if (rc) {
			snprintf(err, errlen, "%s: record at %llu: %s", path,
				 (unsigned long long)wk.at, wk.why);
			return rc;
		}
		off += WAL_FRAME_HDR + n;
	}
	*end = off;
	return 0;
}

/* Second pass: calls ops for the records of [header, end). */
static int log_apply(struct reader *r, uint64_t end, struct walk *wk,
		     const char *path, char *err, size_t errlen)
{
	uint64_t off = WAL_HEADER_LEN;
	while (off < end) {
		size_t n = 0;
		const char *why = NULL;
		int st = frame_read(r, off, &n, &why);
		if (st < 0) {
			snprintf(err, errlen, "%s: read: %s", path,
				 strerror(-st));
			return st;
		}
		if (st != FRAME_OK) {
			snprintf(err, errlen,
				 "%s: batch at %llu changed while being read",
				 path, (unsigned long long)off);
			return -EIO;
		}
		int rc = records_walk(wk, r->buf + WAL_FRAME_HDR, n,
				      off + WAL_FRAME_HDR);
		if (rc && wk->why) {
			snprintf(err, errlen,
				 "%s: record at %llu changed while being read",
				 path, (unsigned long long)wk->at);
			return -EIO;
		}
		if (rc) {
			snprintf(
			    err, errlen,
			    "%s: record at %llu: replay callback failed (%d)",
			    path, (unsigned long long)wk->at, rc);
			return rc;
		}
		off += WAL_FRAME_HDR + n;
	}
	return 0;
}

/* Opens path, checks it is a regular file, fills r. */
static int reader_open(struct reader *r, const char *path, int flags, char *err,
		       size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->fd = open(path, flags | O_CLOEXEC, 0600);
	if (r->fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	int rc = 0;
	if (fstat(r->fd, &st) < 0)
		rc = -errno;
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	if (rc) {
		snprintf(err, errlen, "%s: %s", path,
			 rc == -EINVAL ? "not a regular file" : strerror(-rc));
		close(r->fd);
		r->fd = -1;
		return rc;
	}
	r->size = (uint64_t)st.st_size;
	return 0;
}

int wal_replay(const char *path, uint64_t since_version,
	       const struct wal_replay_ops *ops, void *ud, size_t *ignored_tail,
	       char *err, size_t errlen)
{
	struct walk wk = {.ops = ops, .ud = ud, .since = since_version};
	struct reader r;
	bool empty = false;
	const char *why = NULL;
	uint64_t end = WAL_HEADER_LEN;
	*ignored_tail = 0;
	int rc = reader_open(&r, path, O_RDONLY, err, errlen);
	if (rc)
		return rc;
	rc = header_check(&r, &empty, &why);
	if (rc) {
		snprintf(err, errlen, "%s: %s", path,
			 why ? why : strerror(-rc));
		goto out;
	}
	if (empty) {
		*ignored_tail = (size_t)r.size;
		goto out;
	}
	rc = log_verify(&r, &end, path, err, errlen);
	if (rc || !ops)
		goto out;
	rc = log_apply(&r, end, &wk, path, err, errlen);
out:
	if (!rc && !empty)
		*ignored_tail = (size_t)(r.size - end);
	close(r.fd);
	free(r.buf);
	return rc;
}

int wal_open(const char *path, struct wal **out, char *err, size_t errlen)
{
	struct reader r;
	struct wal *w = NULL;
	const char *step = "lock", *why = NULL;
	bool empty = false;
	uint64_t end = WAL_HEADER_LEN;
	*out = NULL;
	int rc = reader_open(&r, path, O_RDWR | O_CREAT, err, errlen);
	if (rc)
		return rc;
	if (flock(r.fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (rc == -EBUSY)
			step = "locked by another process";
		goto fail;
	}
	step = "read";
	rc = header_check(&r, &empty, &why);
	if (rc) {
		step = why ? why : step;
		goto fail;
	}
	if (empty) {
		/* New, or a crash came before its header was durable. */
		uint8_t hdr[WAL_HEADER_LEN];
		header_make(hdr);
		step = "write header";
		rc = ftruncate(r.fd, 0) < 0 ? -errno : 0;
		if (!rc)
			rc = pwrite_all(r.fd, hdr, sizeof(hdr), 0);
		if (!rc)
			rc = wal_fdatasync(r.fd) < 0 ? -errno : 0;
		if (!rc) {
			step = "fsync directory";
			rc = fsync_dir(path);
		}
		if (rc)
			goto fail;
	} else {
		rc = log_verify(&r, &end, path, err, errlen);
		if (rc) {
			step = NULL; /* err is set */
			goto fail;
		}
		if (end < r.size) {
			/* New batches must follow the last valid one, not a
			 * torn tail, or the next replay calls it damage. */
			step = "cut torn tail";
			rc = ftruncate(r.fd, (off_t)end) < 0 ? -errno : 0;
			if (!rc)
				rc = wal_fdatasync(r.fd) < 0 ? -errno : 0;
			if (rc)
				goto fail;
		}
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		rc = -ENOMEM;
		step = "allocate";
		goto fail;
	}
	free(r.buf);
	w->fd = r.fd;
	w->synced = end;
	*out = w;
	return 0;
fail:
	if (step && rc == -EBADMSG)
		snprintf(err, errlen, "%s: %s", path, step);
	else if (step)
		snprintf(err, errlen, "%s: %s: %s", path, step, strerror(-rc));
	close(r.fd);
	free(r.buf);
	return rc;
}
