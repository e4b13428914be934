/*
 * buf — a growable byte buffer with a hard upper bound.
 *
 * Every buffer in Proxy Stone has a named limit (STYLE.md habit 4). A buf
 * grows on demand up to `cap_max`; an append that would pass the bound
 * fails with -ENOSPC and leaves the buffer unchanged, so callers can turn
 * "too big" into a clean, counted error instead of a crash or a silent
 * truncation.
 *
 * Ownership: buf_init/buf_fini work on storage the caller owns; the byte
 * array is heap memory owned by the buf.
 */
#ifndef PROXYSTONE_BUF_H
#define PROXYSTONE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *base;	/* NUL-terminated after every successful append */
	size_t len;	/* bytes in use, not counting the NUL */
	size_t cap;	/* bytes allocated */
	size_t cap_max; /* bound: len may never exceed cap_max */
};

/* Non-owning view of bytes, as in h2o's {base,len}. */
struct strview {
	const char *base;
	size_t len;
};

void buf_init(struct buf *b, size_t cap_max);
void buf_fini(struct buf *b);
/* Forget the contents, keep the allocation. */
void buf_reset(struct buf *b);
/* 0, or -ENOSPC past cap_max, or -ENOMEM. */
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Appends n uninitialized bytes and points *at to them, for callers that
 * fill a region in place. 0, -ENOSPC or -ENOMEM (then nothing changes). */
int buf_extend(struct buf *b, size_t n, char **at);
/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);

static inline struct strview strview_make(const char *base, size_t len)
{
	struct strview v = {base, len};
	return v;
}

/* 1 if v equals the NUL-terminated string s. */
int strview_eq(struct strview v, const char *s);

#endif
