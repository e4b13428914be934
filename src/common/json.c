/*
 * json — strict parsing, typed access, rendering and a streaming writer;
 * see include/proxystone/json.h.
 *
 * Parsing runs in two passes. jsmn (even in strict mode) accepts missing or
 * extra commas and colons, several top-level values, raw control characters
 * and invalid UTF-8, and cannot parse a bare top-level number; so a
 * validating scanner (scan_document) first checks the full RFC 8259 grammar,
 * counts the tokens and measures the depth, reporting the first problem with
 * its byte offset. Only then does jsmn tokenize the now known-good text into
 * an exactly sized array, which is converted to our own token records with
 * the subtree end ("next") precomputed so that navigation is O(1).
 */
#include "proxystone/json.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#define JSMN_STATIC
#include <jsmn.h>

/*
 * Number literals up to this many bytes are converted from a stack copy. A
 * double needs at most 17 significant digits plus sign, point and exponent,
 * so longer literals are rare and take the heap path instead.
 */
#define JSON_NUMBER_STACK_MAX 64
/* Room for "%.17g" of any double: "-1.2345678901234567e-308" is 24 bytes. */
#define JW_NUMBER_MAX 32
/* Room for a nested parse message in json_merge_objects; ours are < 80. */
#define JSON_MERGE_ERR_MAX 128
/* int64 has 19 decimal digits: 9223372036854775807. */
#define INT64_DIGITS_MAX 19
/*
 * Exponents are clamped here while reading them: any larger magnitude
 * already makes an int64 overflow or a fraction, and the clamp keeps the
 * arithmetic on the clamped value far from long long overflow.
 */
#define EXPONENT_CLAMP 1000000000LL

/* Writer level flags, stored in json_writer.first[depth]. */
#define JW_FIRST 0x1  /* no value written at this level yet */
#define JW_OBJECT 0x2 /* this level is an object (else array / top level) */

/* UTF-8 for U+FFFD REPLACEMENT CHARACTER. */
#define UTF8_REPLACEMENT "\xef\xbf\xbd"

struct json_tok {
	int start;	    /* first byte (strings: just after the quote) */
	int end;	    /* one past the last byte (strings: the quote) */
	int count;	    /* containers: members or elements */
	int parent;	    /* enclosing container, -1 for the root */
	int next;	    /* index just past this token's subtree */
	unsigned char type; /* enum json_type */
	bool key;	    /* this token is an object member's key */
};

/* ---- UTF-8 ------------------------------------------------------------ */

/*
 * Length of the well-formed UTF-8 sequence at p[0..n) (Unicode table 3-7:
 * no overlongs, no surrogates, nothing above U+10FFFF), or 0 with *bad set
 * to the length of the maximal invalid subpart to replace (>= 1).
 */
static size_t utf8_valid(const unsigned char *p, size_t n, size_t *bad)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t need;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		if (c == 0xe0)
			lo = 0xa0; /* below is overlong */
		else if (c == 0xed)
			hi = 0x9f; /* above is a surrogate */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		if (c == 0xf0)
			lo = 0x90; /* below is overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* above is > U+10FFFF */
	} else {
		*bad = 1;
		return 0;
	}
	for (size_t k = 1; k <= need; k++) {
		if (k >= n || p[k] < lo || p[k] > hi) {
			*bad = k;
			return 0;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return need + 1;
}

static size_t utf8_encode(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Value of 4 hex digits at p[0..n), or -1. */
static long hex4(const unsigned char *p, size_t n)
{
	long v = 0;

	if (n < 4)
		return -1;
	for (int k = 0; k < 4; k++) {
		unsigned char c = p[k];
		int d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + d;
	}
	return v;
}

static bool is_high_surrogate(long cp)
{
	return cp >= 0xd800 && cp <= 0xdbff;
}

static bool is_low_surrogate(long cp)
{
	return cp >= 0xdc00 && cp <= 0xdfff;
}

/* ---- validating scanner ----------------------------------------------- */

struct scan {
	const unsigned char *s;
	size_t len;
	size_t pos;
	int ntok;	 /* tokens seen (values and keys) */
	int tok_limit;	 /* reject more tokens than this */
	int depth_limit; /* reject deeper nesting than this */
	int depth_max;	 /* deepest nesting seen */
	size_t vstart;	 /* the top-level value, whitespace excluded */
	size_t vend;
	char *err;
	size_t errlen;
};

static int scan_fail(struct scan *sc, int rc, size_t at, const char *what)
{
	if (sc->err && sc->errlen)
		snprintf(sc->err, sc->errlen, "%s at offset %zu", what, at);
	return rc;
}

static void scan_ws(struct scan *sc)
{
	while (sc->pos < sc->len) {
		unsigned char c = sc->s[sc->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return;
		sc->pos++;
	}
}

static int scan_token(struct scan *sc)
{
	if (sc->ntok >= sc->tok_limit)
		return scan_fail(sc, -E2BIG, sc->pos, "too many tokens");
	sc->ntok++;
	return 0;
}

static int scan_string(struct scan *sc)
{
	const unsigned char *s = sc->s;
	size_t start = sc->pos, pos = sc->pos + 1, len = sc->len;

	for (;;) {
		unsigned char c;

		if (pos >= len)
			return scan_fail(sc, -EINVAL, start,
					 "unterminated string");
		c = s[pos];
		if (c == '"') {
			sc->pos = pos + 1;
			return 0;
		}
		if (c < 0x20)
			return scan_fail(sc, -EINVAL, pos,
					 "control character in string");
		if (c >= 0x80) {
			size_t bad, n = utf8_valid(s + pos, len - pos, &bad);

			if (!n)
				return scan_fail(sc, -EINVAL, pos,
						 "invalid UTF-8 in string");
			pos += n;
			continue;
		}
		if (c != '\\') {
			pos++;
			continue;
		}
		if (pos + 1 >= len)
			return scan_fail(sc, -EINVAL, start,
					 "unterminated string");
		switch (s[pos + 1]) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't':
			pos += 2;
			continue;
		case 'u':
			break;
		default:
			return scan_fail(sc, -EINVAL, pos, "invalid escape");
		}
		long cp = hex4(s + pos + 2, len - pos - 2);
		if (cp < 0)
			return scan_fail(sc, -EINVAL, pos,
					 "invalid \\u escape");
		if (is_low_surrogate(cp))
			return scan_fail(sc, -EINVAL, pos,
					 "unpaired low surrogate");
		if (is_high_surrogate(cp)) {
			long lo = -1;

			if (len - pos >= 12 && s[pos + 6] == '\\' &&
			    s[pos + 7] == 'u')
				lo = hex4(s + pos + 8, 4);
			if (!is_low_surrogate(lo))
				return scan_fail(sc, -EINVAL, pos,
						 "unpaired high surrogate");
			pos += 12;
			continue;
		}
		pos += 6;
	}
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* A byte that may not directly follow a number or literal. */
static bool is_word_byte(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z') || c == '.' || c == '+' || c == '-' ||
	       c == '_' || c >= 0x80;
}

/* -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int scan_number(struct scan *sc)
{
	const unsigned char *s = sc->s;
	size_t start = sc->pos, pos = sc->pos, len = sc->len;

	if (s[pos] == '-')
		pos++;
	if (pos >= len || !is_digit(s[pos]))
		goto bad;
	if (s[pos] == '0') {
		pos++;
	} else {
		while (pos < len && is_digit(s[pos]))
			pos++;
	}
	if (pos < len && s[pos] == '.') {
		pos++;
		if (pos >= len || !is_digit(s[pos]))
			goto bad;
		while (pos < len && is_digit(s[pos]))
			pos++;
	}
	if (pos < len && (s[pos] == 'e' || s[pos] == 'E')) {
		pos++;
		if (pos < len && (s[pos] == '+' || s[pos] == '-'))
			pos++;
		if (pos >= len || !is_digit(s[pos]))
			goto bad;
		while (pos < len && is_digit(s[pos]))
			pos++;
	}
	/* "01", "1.2.3", "1x": the grammar stopped inside a word. */
	if (pos < len && is_word_byte(s[pos]))
		goto bad;
	sc->pos = pos;
	return 0;
bad:
	return scan_fail(sc, -EINVAL, start, "invalid number");
}

static int scan_literal(struct scan *sc)
{
	static const char *const words[] = {"true", "false", "null"};
	const unsigned char *s = sc->s + sc->pos;
	size_t avail = sc->len - sc->pos;

	for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++) {
		size_t n = strlen(words[k]);

		if (avail >= n && memcmp(s, words[k], n) == 0 &&
		    (avail == n || !is_word_byte(s[n]))) {
			sc->pos += n;
			return 0;
		}
	}
	return scan_fail(sc, -EINVAL, sc->pos, "invalid literal");
}

/*
 * Check that s[0..len) is exactly one JSON value with optional whitespace
 * around it. An explicit stack (one entry per open container) replaces
 * recursion, so hostile nesting costs nothing before it hits depth_limit.
 */
static int scan_document(struct scan *sc)
{
	bool is_obj[JSON_DEPTH_MAX + 1];
	int depth = 0, rc;
	unsigned char c;

	scan_ws(sc);
	if (sc->pos >= sc->len)
		return scan_fail(sc, -EINVAL, sc->pos, "empty document");
	sc->vstart = sc->pos;
value:
	if (sc->pos >= sc->len)
		return scan_fail(sc, -EINVAL, sc->pos,
				 "unexpected end of input, expected a value");
	c = sc->s[sc->pos];
	rc = scan_token(sc);
	if (rc)
		return rc;
	if (c == '{' || c == '[') {
		if (depth >= sc->depth_limit || depth >= JSON_DEPTH_MAX)
			return scan_fail(sc, -E2BIG, sc->pos,
					 "nesting too deep");
		is_obj[depth++] = c == '{';
		if (depth > sc->depth_max)
			sc->depth_max = depth;
		sc->pos++;
		scan_ws(sc);
		if (sc->pos < sc->len &&
		    sc->s[sc->pos] == (c == '{' ? '}' : ']')) {
			sc->pos++;
			depth--;
			goto after_value;
		}
		if (c == '{')
			goto key;
		goto value;
	}
	if (c == '"')
		rc = scan_string(sc);
	else if (c == '-' || is_digit(c))
		rc = scan_number(sc);
	else if (c == 't' || c == 'f' || c == 'n')
		rc = scan_literal(sc);
	else
		rc = scan_fail(sc, -EINVAL, sc->pos, "unexpected character");
	if (rc)
		return rc;
	goto after_value;
key:
	if (sc->pos >= sc->len)
		return scan_fail(sc, -EINVAL, sc->pos,
				 "unexpected end of input, expected a key");
	if (sc->s[sc->pos] != '"')
		return scan_fail(sc, -EINVAL, sc->pos, "expected a string key");
	rc = scan_token(sc);
	if (rc)
		return rc;
	rc = scan_string(sc);
	if (rc)
		return rc;
	scan_ws(sc);
	if (sc->pos >= sc->len || sc->s[sc->pos] != ':')
		return scan_fail(sc, -EINVAL, sc->pos, "expected ':'");
	sc->pos++;
	scan_ws(sc);
	goto value;
after_value:
	if (depth == 0) {
		sc->vend = sc->pos;
		scan_ws(sc);
		if (sc->pos != sc->len)
			return scan_fail(sc, -EINVAL, sc->pos,
					 "trailing characters after value");
		return 0;
	}
	scan_ws(sc);
	if (sc->pos >= sc->len)
		return scan_fail(sc, -EINVAL, sc->pos,
				 is_obj[depth - 1] ? "unterminated object"
						   : "unterminated array");
	c = sc->s[sc->pos];
	if (c == ',') {
		sc->pos++;
		scan_ws(sc);
		if (is_obj[depth - 1])
			goto key;
		goto value;
	}
	if (c == (is_obj[depth - 1] ? '}' : ']')) {
		sc->pos++;
		depth--;
		goto after_value;
	}
	return scan_fail(sc, -EINVAL, sc->pos,
			 is_obj[depth - 1] ? "expected ',' or '}'"
					   : "expected ',' or ']'");
}

/* ---- document --------------------------------------------------------- */

static const struct json_tok *tok_at(const struct json_doc *d, int i)
{
	if (!d || !d->tok || i < 0 || i >= d->ntok)
		return NULL;
	return (const struct json_tok *)d->tok + i;
}

/* Convert jsmn's tokens and precompute parent containers and subtree ends. */
static int tokens_build(struct json_doc *d, const jsmntok_t *jt, int n)
{
	struct json_tok *t = calloc((size_t)n, sizeof(*t));

	if (!t)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		int p = jt[i].parent;

		t[i].start = jt[i].start;
		t[i].end = jt[i].end;
		switch (jt[i].type) {
		case JSMN_OBJECT:
			t[i].type = JSON_OBJECT;
			t[i].count = jt[i].size;
			break;
		case JSMN_ARRAY:
			t[i].type = JSON_ARRAY;
			t[i].count = jt[i].size;
			break;
		case JSMN_STRING:
			t[i].type = JSON_STRING;
			break;
		default:
			if (d->text[jt[i].start] == 't' ||
			    d->text[jt[i].start] == 'f')
				t[i].type = JSON_BOOL;
			else if (d->text[jt[i].start] == 'n')
				t[i].type = JSON_NULL;
			else
				t[i].type = JSON_NUMBER;
			break;
		}
		/* jsmn parents an object member's value to its key. */
		if (p >= 0 && jt[p].type == JSMN_STRING)
			p = jt[p].parent;
		else if (p >= 0 && jt[p].type == JSMN_OBJECT)
			t[i].key = true;
		t[i].parent = p;
	}
	/* A subtree's tokens all follow its root: fill from the back. */
	for (int i = n - 1; i >= 0; i--) {
		int j = i + 1;

		for (int c = 0; c < t[i].count && j < n; c++) {
			if (t[i].type == JSON_OBJECT)
				j = t[j].next;
			if (j < n)
				j = t[j].next;
		}
		t[i].next = j;
	}
	if (t[0].next != n) {
		free(t);
		return -EINVAL;
	}
	d->tok = t;
	d->ntok = n;
	return 0;
}

int json_parse(struct json_doc *d, const char *text, size_t len, char *err,
	       size_t errlen)
{
	struct scan sc = {
	    .s = (const unsigned char *)text,
	    .len = len,
	    .tok_limit = JSON_TOKENS_MAX,
	    .depth_limit = JSON_DEPTH_MAX,
	    .err = err,
	    .errlen = errlen,
	};
	jsmntok_t *jt;
	int rc;

	memset(d, 0, sizeof(*d));
	if (err && errlen)
		err[0] = '\0';
	if (!text && len)
		return scan_fail(&sc, -EINVAL, 0, "NULL text");
	if (len > JSON_TEXT_MAX)
		return scan_fail(&sc, -E2BIG, 0, "document too long");
	rc = scan_document(&sc);
	if (rc)
		return rc;

	d->text = text;
	d->len = len;
	jt = calloc((size_t)sc.ntok, sizeof(*jt));
	if (!jt) {
		memset(d, 0, sizeof(*d));
		return -ENOMEM;
	}
	if (text[sc.vstart] == '{' || text[sc.vstart] == '[') {
		jsmn_parser p;

		jsmn_init(&p);
		rc = jsmn_parse(&p, text, len, jt, (unsigned)sc.ntok);
		rc = rc == sc.ntok ? 0 : -EINVAL;
	} else {
		/* jsmn strict cannot end a document on a bare primitive. */
		bool str = text[sc.vstart] == '"';

		jt[0].type = str ? JSMN_STRING : JSMN_PRIMITIVE;
		jt[0].start = (int)sc.vstart + str;
		jt[0].end = (int)sc.vend - str;
		jt[0].size = 0;
		jt[0].parent = -1;
	}
	if (!rc)
		rc = tokens_build(d, jt, sc.ntok);
	free(jt);
	if (rc) {
		if (rc == -EINVAL)
			scan_fail(&sc, rc, 0, "internal: tokenizer mismatch");
		memset(d, 0, sizeof(*d));
	}
	return rc;
}

void json_doc_fini(struct json_doc *d)
{
	free(d->tok);
	memset(d, 0, sizeof(*d));
}

enum json_type json_type(const struct json_doc *d, int i)
{
	const struct json_tok *t = tok_at(d, i);

	return t ? (enum json_type)t->type : JSON_NONE;
}

int json_next(const struct json_doc *d, int i)
{
	const struct json_tok *t = tok_at(d, i);

	return t ? t->next : -1;
}

int json_count(const struct json_doc *d, int i)
{
	const struct json_tok *t = tok_at(d, i);

	if (!t || (t->type != JSON_OBJECT && t->type != JSON_ARRAY))
		return -EINVAL;
	return t->count;
}

int json_first_child(const struct json_doc *d, int i)
{
	const struct json_tok *t = tok_at(d, i);

	if (!t || (t->type != JSON_OBJECT && t->type != JSON_ARRAY) ||
	    t->count == 0)
		return -1;
	return i + 1;
}

int json_next_sibling(const struct json_doc *d, int i)
{
	const struct json_tok *t = tok_at(d, i), *p;
	int n;

	if (!t || t->parent < 0)
		return -1;
	p = tok_at(d, t->parent);
	n = t->next;
	if (t->key)
		n = ((const struct json_tok *)d->tok)[n].next;
	return n < p->next ? n : -1;
}

/* ---- string decoding (input already validated) ------------------------ */

/* Decode the escape at p (p[0] == '\\'); *adv gets the bytes it spans. */
static uint32_t escape_decode(const char *p, size_t *adv)
{
	const unsigned char *u = (const unsigned char *)p;
	long hi, lo;

	*adv = 2;
	switch (p[1]) {
	case 'b':
		return '\b';
	case 'f':
		return '\f';
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	case 'u':
		break;
	default: /* '"', '\\', '/' stand for themselves */
		return (unsigned char)p[1];
	}
	hi = hex4(u + 2, 4);
	*adv = 6;
	if (!is_high_surrogate(hi))
		return (uint32_t)hi;
	lo = hex4(u + 8, 4);
	*adv = 12;
	return 0x10000 + (((uint32_t)hi - 0xd800) << 10) +
	       ((uint32_t)lo - 0xdc00);
}

/*
 * Next unit of the decoded string at *pp: a raw byte, or an escape encoded
 * as UTF-8. Comparing unit streams compares the decoded byte strings.
 */
static size_t str_unit(const char **pp, char u8[4])
{
	const char *p = *pp;
	size_t adv;

	if (*p != '\\') {
		u8[0] = *p;
		*pp = p + 1;
		return 1;
	}
	size_t n = utf8_encode(escape_decode(p, &adv), u8);
	*pp = p + adv;
	return n;
}

static bool str_eq_bytes(const char *p, const char *end, const char *key,
			 size_t klen)
{
	size_t k = 0;

	if (!memchr(p, '\\', (size_t)(end - p)))
		return (size_t)(end - p) == klen && memcmp(p, key, klen) == 0;
	while (p < end) {
		char u8[4];
		size_t n = str_unit(&p, u8);

		if (n > klen - k || memcmp(u8, key + k, n) != 0)
			return false;
		k += n;
	}
	return k == klen;
}

static bool str_eq_str(const char *a, const char *aend, const char *b,
		       const char *bend)
{
	char ua[4], ub[4];
	size_t na = 0, ia = 0, nb = 0, ib = 0;

	for (;;) {
		if (ia == na) {
			if (a == aend)
				break;
			na = str_unit(&a, ua);
			ia = 0;
		}
		if (ib == nb) {
			if (b == bend)
				return false;
			nb = str_unit(&b, ub);
			ib = 0;
		}
		if (ua[ia++] != ub[ib++])
			return false;
	}
	return ib == nb && b == bend;
}

/* Undo a failed append sequence: out goes back to len bytes. */
static void out_rollback(struct buf *out, size_t len)
{
	out->len = len;
	if (out->base)
		out->base[len] = '\0';
}

/* Append the decoded string token t; NUL escapes allowed only if allow_nul. */
static int str_decode(const struct json_doc *d, const struct json_tok *t,
		      struct buf *out, bool allow_nul)
{
	const char *p = d->text + t->start, *end = d->text + t->end;
	size_t old = out->len;
	int rc = 0;

	while (p < end && !rc) {
		const char *q = memchr(p, '\\', (size_t)(end - p));
		char u8[4];
		uint32_t cp;
		size_t adv;

		if (!q)
			q = end;
		if (q > p)
			rc = buf_append(out, p, (size_t)(q - p));
		p = q;
		if (p == end || rc)
			break;
		cp = escape_decode(p, &adv);
		if (cp == 0 && !allow_nul) {
			rc = -EINVAL;
			break;
		}
		rc = buf_append(out, u8, utf8_encode(cp, u8));
		p += adv;
	}
	if (rc)
		out_rollback(out, old);
	return rc;
}

int json_obj_get(const struct json_doc *d, int obj, const char *key)
{
	size_t klen;

	if (json_type(d, obj) != JSON_OBJECT || !key)
		return -1;
	klen = strlen(key);
	for (int k = json_first_child(d, obj); k >= 0;
	     k = json_next_sibling(d, k)) {
		const struct json_tok *t = tok_at(d, k);

		if (str_eq_bytes(d->text + t->start, d->text + t->end, key,
				 klen))
			return k + 1;
	}
	return -1;
}

int json_get_string(const struct json_doc *d, int i, struct buf *out)
{
	const struct json_tok *t = tok_at(d, i);

	if (!t || t->type != JSON_STRING)
		return -EINVAL;
	return str_decode(d, t, out, false);
}

/* ---- numbers ---------------------------------------------------------- */

int json_get_number(const struct json_doc *d, int i, double *out)
{
	const struct json_tok *t = tok_at(d, i);
	char stack[JSON_NUMBER_STACK_MAX], *s = stack;
	size_t n;
	double v;

	if (!t || t->type != JSON_NUMBER)
		return -EINVAL;
	n = (size_t)(t->end - t->start);
	if (n >= sizeof(stack)) {
		s = malloc(n + 1);
		if (!s)
			return -ENOMEM;
	}
	memcpy(s, d->text + t->start, n);
	s[n] = '\0';
	v = strtod(s, NULL);
	if (s != stack)
		free(s);
	if (!isfinite(v))
		return -ERANGE;
	*out = v;
	return 0;
}

/*
 * Exact decimal: the literal is sign, digits D (integer then fraction part)
 * and exponent E, worth D * 10^(E - fraction digits). Leading and trailing
 * zeros of D are dropped (trailing ones raise the scale); what is left must
 * have a non-negative scale and fit in int64.
 */
int json_get_int64(const struct json_doc *d, int i, long long *out)
{
	const struct json_tok *t = tok_at(d, i);
	const char *p, *end, *ip, *fp = NULL;
	size_t ilen, flen = 0, total, first, last;
	long long exp = 0, scale;
	unsigned long long v = 0, limit;
	bool neg, exp_neg = false;

	if (!t || t->type != JSON_NUMBER)
		return -EINVAL;
	p = d->text + t->start;
	end = d->text + t->end;
	neg = *p == '-';
	if (neg)
		p++;
	ip = p;
	while (p < end && is_digit((unsigned char)*p))
		p++;
	ilen = (size_t)(p - ip);
	if (p < end && *p == '.') {
		fp = ++p;
		while (p < end && is_digit((unsigned char)*p))
			p++;
		flen = (size_t)(p - fp);
	}
	if (p < end) { /* 'e' or 'E' */
		p++;
		if (*p == '+' || *p == '-')
			exp_neg = *p++ == '-';
		while (p < end) {
			if (exp < EXPONENT_CLAMP)
				exp = exp * 10 + (*p - '0');
			p++;
		}
		if (exp_neg)
			exp = -exp;
	}

	/* Digit k of D, 0 <= k < ilen + flen. */
#define DIGIT(k) ((k) < ilen ? ip[(k)] : fp[(k)-ilen])
	total = ilen + flen;
	for (first = 0; first < total && DIGIT(first) == '0'; first++)
		;
	if (first == total) {
		*out = 0;
		return 0;
	}
	for (last = total - 1; DIGIT(last) == '0'; last--)
		;
	scale = exp - (long long)flen + (long long)(total - 1 - last);
	if (scale < 0 || last - first + 1 > INT64_DIGITS_MAX ||
	    (long long)(last - first + 1) + scale > INT64_DIGITS_MAX)
		return -EINVAL;
	for (size_t k = first; k <= last; k++)
		v = v * 10 + (unsigned long long)(DIGIT(k) - '0');
#undef DIGIT
	limit = neg ? (unsigned long long)LLONG_MAX + 1 : LLONG_MAX;
	/* At most INT64_DIGITS_MAX digits: < 10^19, cannot wrap a u64. */
	for (long long k = 0; k < scale; k++)
		v *= 10;
	if (v > limit)
		return -EINVAL;
	if (neg)
		*out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN
							      : -(long long)v;
	else
		*out = (long long)v;
	return 0;
}

int json_get_bool(const struct json_doc *d, int i, bool *out)
{
	const struct json_tok *t = tok_at(d, i);

	if (!t || t->type != JSON_BOOL)
		return -EINVAL;
	*out = d->text[t->start] == 't';
	return 0;
}

/* ---- writer ----------------------------------------------------------- */

static void jw_fail(struct json_writer *w, int rc)
{
	if (!w->err)
		w->err = rc;
}

static void jw_put(struct json_writer *w, const char *s, size_t n)
{
	int rc;

	if (w->err)
		return;
	rc = buf_append(w->out, s, n);
	if (rc)
		w->err = rc;
}

/*
 * Account for a value (scalar or container) about to be written: check it
 * is allowed here and emit the separating comma. False if it must not be
 * written (the writer has failed).
 */
static bool jw_value_begin(struct json_writer *w)
{
	unsigned char *lvl;

	if (w->err)
		return false;
	lvl = &w->first[w->depth];
	if (w->depth == 0) {
		if (!(*lvl & JW_FIRST)) { /* a second top-level value */
			jw_fail(w, -EINVAL);
			return false;
		}
	} else if (*lvl & JW_OBJECT) {
		if (!w->after_key) { /* object member without a key */
			jw_fail(w, -EINVAL);
			return false;
		}
		w->after_key = false;
	} else if (!(*lvl & JW_FIRST)) {
		jw_put(w, ",", 1);
	}
	*lvl &= (unsigned char)~JW_FIRST;
	return !w->err;
}

/* Write s[0..n) as a quoted, escaped string of valid UTF-8. */
static void jw_escaped(struct json_writer *w, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	const unsigned char *run = p;

	jw_put(w, "\"", 1);
	while (p < end && !w->err) {
		unsigned char c = *p;
		char e[8];
		size_t bad, k;

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			p++;
			continue;
		}
		if (c >= 0x80) {
			k = utf8_valid(p, (size_t)(end - p), &bad);
			if (k) {
				p += k;
				continue;
			}
			jw_put(w, (const char *)run, (size_t)(p - run));
			jw_put(w, UTF8_REPLACEMENT, strlen(UTF8_REPLACEMENT));
			p += bad;
			run = p;
			continue;
		}
		jw_put(w, (const char *)run, (size_t)(p - run));
		switch (c) {
		case '"':
			strcpy(e, "\\\"");
			break;
		case '\\':
			strcpy(e, "\\\\");
			break;
		case '\b':
			strcpy(e, "\\b");
			break;
		case '\f':
			strcpy(e, "\\f");
			break;
		case '\n':
			strcpy(e, "\\n");
			break;
		case '\r':
			strcpy(e, "\\r");
			break;
		case '\t':
			strcpy(e, "\\t");
			break;
		default:
			snprintf(e, sizeof(e), "\\u%04x", c);
			break;
		}
		jw_put(w, e, strlen(e));
		p++;
		run = p;
	}
	jw_put(w, (const char *)run, (size_t)(p - run));
	jw_put(w, "\"", 1);
}

void jw_init(struct json_writer *w, struct buf *out)
{
	memset(w, 0, sizeof(*w));
	w->out = out;
	w->first[0] = JW_FIRST;
	if (!out)
		w->err = -EINVAL;
}

static void jw_open(struct json_writer *w, bool obj)
{
	if (w->err)
		return;
	if (w->depth >= JSON_DEPTH_MAX) {
		jw_fail(w, -E2BIG);
		return;
	}
	if (!jw_value_begin(w))
		return;
	jw_put(w, obj ? "{" : "[", 1);
	w->depth++;
	w->first[w->depth] = JW_FIRST | (obj ? JW_OBJECT : 0);
}

static void jw_close(struct json_writer *w, bool obj)
{
	if (w->err)
		return;
	if (w->depth == 0 || w->after_key ||
	    !(w->first[w->depth] & JW_OBJECT) != !obj) {
		jw_fail(w, -EINVAL);
		return;
	}
	jw_put(w, obj ? "}" : "]", 1);
	w->depth--;
}

void jw_object_begin(struct json_writer *w)
{
	jw_open(w, true);
}

void jw_object_end(struct json_writer *w)
{
	jw_close(w, true);
}

void jw_array_begin(struct json_writer *w)
{
	jw_open(w, false);
}

void jw_array_end(struct json_writer *w)
{
	jw_close(w, false);
}

void jw_key_n(struct json_writer *w, const char *key, size_t n)
{
	unsigned char *lvl;

	if (w->err)
		return;
	lvl = &w->first[w->depth];
	if (w->depth == 0 || !(*lvl & JW_OBJECT) || w->after_key ||
	    (!key && n)) {
		jw_fail(w, -EINVAL);
		return;
	}
	if (!(*lvl & JW_FIRST))
		jw_put(w, ",", 1);
	*lvl &= (unsigned char)~JW_FIRST;
	jw_escaped(w, key ? key : "", n);
	jw_put(w, ":", 1);
	w->after_key = true;
}

void jw_key(struct json_writer *w, const char *key)
{
	if (!key) {
		jw_fail(w, -EINVAL);
		return;
	}
	jw_key_n(w, key, strlen(key));
}

void jw_string_n(struct json_writer *w, const char *s, size_t n)
{
	if (!s) {
		jw_null(w);
		return;
	}
	if (jw_value_begin(w))
		jw_escaped(w, s, n);
}

void jw_string(struct json_writer *w, const char *s)
{
	jw_string_n(w, s, s ? strlen(s) : 0);
}

void jw_int(struct json_writer *w, long long v)
{
	int rc;

	if (!jw_value_begin(w))
		return;
	rc = buf_printf(w->out, "%lld", v);
	if (rc)
		jw_fail(w, rc);
}

void jw_double(struct json_writer *w, double v)
{
	char s[JW_NUMBER_MAX];

	if (!isfinite(v)) {
		jw_null(w);
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(s, sizeof(s), "%.*g", prec, v);
		if (strtod(s, NULL) == v)
			break;
	}
	if (jw_value_begin(w))
		jw_put(w, s, strlen(s));
}

void jw_bool(struct json_writer *w, bool v)
{
	if (jw_value_begin(w))
		jw_put(w, v ? "true" : "false", v ? 4 : 5);
}

void jw_null(struct json_writer *w)
{
	if (jw_value_begin(w))
		jw_put(w, "null", 4);
}

void jw_raw(struct json_writer *w, const char *json, size_t n)
{
	struct scan sc = {
	    .s = (const unsigned char *)json,
	    .len = n,
	    .tok_limit = INT_MAX,
	    .depth_limit = JSON_DEPTH_MAX - w->depth,
	};
	int rc;

	if (w->err)
		return;
	rc = json || !n ? scan_document(&sc) : -EINVAL;
	if (rc) {
		jw_fail(w, rc);
		return;
	}
	if (jw_value_begin(w))
		jw_put(w, json + sc.vstart, sc.vend - sc.vstart);
}

void jw_raw_trusted(struct json_writer *w, const char *json, size_t n)
{
	if (w->err)
		return;
	if (!json || !n) {
		jw_fail(w, -EINVAL);
		return;
	}
	if (jw_value_begin(w))
		jw_put(w, json, n);
}

int jw_finish(struct json_writer *w)
{
	if (!w->err && (w->depth != 0 || (w->first[0] & JW_FIRST)))
		w->err = -EINVAL;
	return w->err;
}

/* ---- rendering and merging -------------------------------------------- */

/* Write token i's subtree to w; scratch holds decoded strings. */
static int render_tok(const struct json_doc *d, int i, struct json_writer *w,
		      struct buf *scratch)
{
	const struct json_tok *t = tok_at(d, i);
	int rc;

	switch (t->type) {
	case JSON_OBJECT:
	case JSON_ARRAY:
		if (t->type == JSON_OBJECT)
			jw_object_begin(w);
		else
			jw_array_begin(w);
		for (int c = json_first_child(d, i); c >= 0;
		     c = json_next_sibling(d, c)) {
			if (t->type == JSON_OBJECT) {
				buf_reset(scratch);
				rc = str_decode(d, tok_at(d, c), scratch, true);
				if (rc)
					return rc;
				jw_key_n(w, scratch->base, scratch->len);
				rc = render_tok(d, c + 1, w, scratch);
			} else {
				rc = render_tok(d, c, w, scratch);
			}
			if (rc)
				return rc;
		}
		if (t->type == JSON_OBJECT)
			jw_object_end(w);
		else
			jw_array_end(w);
		break;
	case JSON_STRING:
		buf_reset(scratch);
		rc = str_decode(d, t, scratch, true);
		if (rc)
			return rc;
		jw_string_n(w, scratch->base ? scratch->base : "",
			    scratch->len);
		break;
	default: /* numbers verbatim; literals are already canonical */
		if (jw_value_begin(w))
			jw_put(w, d->text + t->start,
			       (size_t)(t->end - t->start));
		break;
	}
	return w->err;
}

int json_render(const struct json_doc *d, int i, struct buf *out)
{
	struct json_writer w;
	struct buf scratch;
	size_t old = out->len;
	int rc;

	if (!tok_at(d, i))
		return -EINVAL;
	/* A decoded string is never longer than its escaped source. */
	buf_init(&scratch, d->len);
	jw_init(&w, out);
	rc = render_tok(d, i, &w, &scratch);
	if (!rc)
		rc = jw_finish(&w);
	buf_fini(&scratch);
	if (rc)
		out_rollback(out, old);
	return rc;
}

/*
 * First key of object obj in d, before index stop (-1: no limit), equal to
 * key token k of kd after unescaping; -1 if none.
 */
static int obj_find_key(const struct json_doc *d, int obj, int stop,
			const struct json_doc *kd, int k)
{
	const struct json_tok *kt = tok_at(kd, k);

	for (int c = json_first_child(d, obj); c >= 0 && (stop < 0 || c < stop);
	     c = json_next_sibling(d, c)) {
		const struct json_tok *t = tok_at(d, c);

		if (str_eq_str(d->text + t->start, d->text + t->end,
			       kd->text + kt->start, kd->text + kt->end))
			return c;
	}
	return -1;
}

static int merge_parse(struct json_doc *d, const char *what, const char *text,
		       size_t len, char *err, size_t errlen)
{
	char sub[JSON_MERGE_ERR_MAX];
	int rc = json_parse(d, text, len, sub, sizeof(sub));

	if (!rc && json_type(d, 0) != JSON_OBJECT) {
		json_doc_fini(d);
		snprintf(sub, sizeof(sub), "not an object");
		rc = -EINVAL;
	}
	if (rc && err && errlen)
		snprintf(err, errlen, "%s: %s", what, sub);
	return rc;
}

/* Emit member key k of d (decoded) with value token v of vd. */
static int merge_member(struct json_writer *w, const struct json_doc *d, int k,
			const struct json_doc *vd, int v, struct buf *scratch)
{
	int rc;

	buf_reset(scratch);
	rc = str_decode(d, tok_at(d, k), scratch, true);
	if (rc)
		return rc;
	jw_key_n(w, scratch->base, scratch->len);
	return render_tok(vd, v, w, scratch);
}

int json_merge_objects(const char *base, size_t blen, const char *overlay,
		       size_t olen, struct buf *out, char *err, size_t errlen)
{
	struct json_doc b, o;
	struct json_writer w;
	struct buf scratch;
	size_t old = out->len;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	rc = merge_parse(&b, "base", base, blen, err, errlen);
	if (rc)
		return rc;
	rc = merge_parse(&o, "overlay", overlay, olen, err, errlen);
	if (rc) {
		json_doc_fini(&b);
		return rc;
	}
	buf_init(&scratch, blen > olen ? blen : olen);
	jw_init(&w, out);
	jw_object_begin(&w);
	for (int k = json_first_child(&b, 0); k >= 0 && !rc;
	     k = json_next_sibling(&b, k)) {
		int ok;

		if (obj_find_key(&b, 0, k, &b, k) >= 0)
			continue; /* duplicate: first occurrence wins */
		ok = obj_find_key(&o, 0, -1, &b, k);
		if (ok >= 0)
			rc = merge_member(&w, &b, k, &o, ok + 1, &scratch);
		else
			rc = merge_member(&w, &b, k, &b, k + 1, &scratch);
	}
	for (int k = json_first_child(&o, 0); k >= 0 && !rc;
	     k = json_next_sibling(&o, k)) {
		if (obj_find_key(&b, 0, -1, &o, k) >= 0 ||
		    obj_find_key(&o, 0, k, &o, k) >= 0)
			continue;
		rc = merge_member(&w, &o, k, &o, k + 1, &scratch);
	}
	jw_object_end(&w);
	if (!rc)
		rc = jw_finish(&w);
	buf_fini(&scratch);
	json_doc_fini(&b);
	json_doc_fini(&o);
	if (rc)
		out_rollback(out, old);
	return rc;
}
