/* buf — bounded growable byte buffer; see include/proxystone/buf.h. */
#include "proxystone/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* First allocation; small enough for the many short buffers we keep. */
#define BUF_INITIAL_CAP 256

void buf_init(struct buf *b, size_t cap_max)
{
	b->base = NULL;
	b->len = 0;
	b->cap = 0;
	b->cap_max = cap_max;
}

void buf_fini(struct buf *b)
{
	free(b->base);
	b->base = NULL;
	b->len = b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->base)
		b->base[0] = '\0';
}

/* Make room for `extra` more bytes plus the NUL terminator. */
static int buf_reserve(struct buf *b, size_t extra)
{
	if (extra > b->cap_max || b->len > b->cap_max - extra)
		return -ENOSPC;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : BUF_INITIAL_CAP;
	while (cap < need)
		cap *= 2;
	if (cap > b->cap_max + 1)
		cap = b->cap_max + 1;
	char *p = realloc(b->base, cap);
	if (!p)
		return -ENOMEM;
	b->base = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	int rc = buf_reserve(b, len);
	if (rc)
		return rc;
	if (len)
		memcpy(b->base + b->len, data, len);
	b->len += len;
	b->base[b->len] = '\0';
	return 0;
}

int buf_extend(struct buf *b, size_t n, char **at)
{
	int rc = buf_reserve(b, n);
	if (rc)
		return rc;
	*at = b->base + b->len;
	b->len += n;
	b->base[b->len] = '\0';
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_putc(struct buf *b, char c)
{
	return buf_append(b, &c, 1);
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -EINVAL;
	int rc = buf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_reset(b);
		return;
	}
	memmove(b->base, b->base + n, b->len - n);
	b->len -= n;
	b->base[b->len] = '\0';
}

int strview_eq(struct strview v, const char *s)
{
	size_t n = strlen(s);
	return v.len == n && memcmp(v.base, s, n) == 0;
}
