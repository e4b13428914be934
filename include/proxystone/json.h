/*
 * json — strict JSON parsing (over jsmn), typed access, and a streaming
 * writer that can only produce valid JSON.
 *
 * Parsing: json_parse() validates the whole text against RFC 8259 (grammar,
 * escapes, UTF-8, number syntax) before tokenizing, so every accessor below
 * may assume well-formed input. Tokens are numbered in document order; token
 * 0 is the root. An object's members appear as a KEY token immediately
 * followed by its value subtree, so for a key k the value is k + 1.
 *
 * Ownership: struct json_doc works on storage the caller owns (init by
 * json_parse, release by json_doc_fini). The token array is heap memory owned
 * by the doc; `text` is NOT copied and must outlive the doc.
 *
 * Output: functions that append to a struct buf leave it exactly as it was
 * when they fail (json_get_string, json_render, json_merge_objects). The
 * writer is the exception: after an error its buf holds a truncated prefix
 * that the caller must discard.
 *
 * Numbers are converted with strtod/printf, which assume the C numeric
 * locale: the process must not setlocale(LC_NUMERIC, ...) to anything else.
 */
#ifndef PROXYSTONE_JSON_H
#define PROXYSTONE_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "proxystone/buf.h"

/*
 * Bound on tokens (values + object keys) per document. Our API payloads
 * (config objects, node records, status replies) hold at most a few hundred
 * values; 4096 leaves ample headroom while capping a parsed document at a
 * fixed worst case (24 bytes per token: 96 KiB). Bigger inputs are a client
 * error or an attack and get -E2BIG.
 */
#define JSON_TOKENS_MAX 4096
/*
 * Bound on container nesting depth (the root container is depth 1). Our
 * schemas nest at most ~5 levels; 32 leaves room while keeping the recursive
 * renderer's stack use trivially small.
 */
#define JSON_DEPTH_MAX 32
/*
 * Bound on document size in bytes: jsmn stores token offsets as int, so a
 * longer text could not be addressed.
 */
#define JSON_TEXT_MAX 0x7fffffff

enum json_type {
	JSON_NONE = 0, /* bad index / no such token */
	JSON_OBJECT,
	JSON_ARRAY,
	JSON_STRING, /* object keys are JSON_STRING too */
	JSON_NUMBER,
	JSON_BOOL,
	JSON_NULL,
};

struct json_doc {
	const char *text; /* borrowed, not NUL-terminated necessarily */
	size_t len;
	void *tok; /* heap, owned; private token array */
	int ntok;
};

/*
 * Parse text[0..len). Strict: exactly one top-level value of any type with
 * only whitespace around it; strings have valid escapes (\uXXXX surrogates
 * properly paired), no raw control characters < 0x20, valid UTF-8 (no
 * overlongs, surrogates, or code points > U+10FFFF); primitives are exactly
 * true/false/null or a JSON-grammar number; nesting <= JSON_DEPTH_MAX;
 * tokens <= JSON_TOKENS_MAX. Duplicate keys are allowed (json_obj_get finds
 * the first).
 *
 * Returns 0; -EINVAL if malformed (err, if non-NULL, gets what and at which
 * byte offset); -E2BIG if too many tokens, too deep or longer than
 * JSON_TEXT_MAX; -ENOMEM. d is overwritten (fini a previous doc first). On
 * error nothing is held and d is safe to json_doc_fini.
 */
int json_parse(struct json_doc *d, const char *text, size_t len, char *err,
	       size_t errlen);
void json_doc_fini(struct json_doc *d);

/* All accessors accept any index: out-of-range ones give NONE / -1 / -EINVAL.
 */
enum json_type json_type(const struct json_doc *d, int i);
/*
 * Index just past the subtree rooted at i (may equal d->ntok), or -1. A key
 * counts as a leaf: json_next(d, k) == k + 1, its value.
 */
int json_next(const struct json_doc *d, int i);
/*
 * Value token of the first member of object obj whose key, after
 * unescaping, equals key byte for byte; -1 if none or obj is not an object.
 */
int json_obj_get(const struct json_doc *d, int obj, const char *key);
/* Members of an object or elements of an array; -EINVAL for anything else. */
int json_count(const struct json_doc *d, int i);
/*
 * Iteration. json_first_child: first element of an array or first KEY of an
 * object, or -1 if empty / not a container. json_next_sibling: next element
 * or next KEY (skipping a key's value), -1 after the last. Called on an
 * object member's value it returns the next key.
 */
int json_first_child(const struct json_doc *d, int i);
int json_next_sibling(const struct json_doc *d, int i);

/*
 * Append the unescaped UTF-8 string to out (no NUL added beyond buf's own).
 * -EINVAL if i is not a string or contains \u0000 (callers treat strings as C
 * strings); -ENOSPC if out's bound is hit; out unchanged on error.
 */
int json_get_string(const struct json_doc *d, int i, struct buf *out);
/* -EINVAL if not a number; -ERANGE if it overflows a double. */
int json_get_number(const struct json_doc *d, int i, double *out);
/*
 * Exact: -EINVAL unless i is a number whose decimal value is an integer in
 * [LLONG_MIN, LLONG_MAX]. "1e3" and "2.50e1" are accepted, "1.5" is not.
 */
int json_get_int64(const struct json_doc *d, int i, long long *out);
/* -EINVAL if not true/false. */
int json_get_bool(const struct json_doc *d, int i, bool *out);

/*
 * Compact canonical rendering of the subtree at i: no whitespace, strings
 * re-escaped by the writer rules, numbers copied verbatim. A key renders as
 * its string. 0, -EINVAL (bad index), -ENOSPC, -ENOMEM; out unchanged on
 * error.
 */
int json_render(const struct json_doc *d, int i, struct buf *out);
/*
 * Shallow merge of two object texts: base's members in base order, each
 * key's value replaced by overlay's if overlay has that key; then overlay's
 * keys absent from base, in overlay order. Duplicate keys collapse to their
 * first occurrence. Rendered compactly into out. -EINVAL (err says which
 * input and why) if either is malformed or not an object; -E2BIG, -ENOSPC,
 * -ENOMEM; out unchanged on error.
 */
int json_merge_objects(const char *base, size_t blen, const char *overlay,
		       size_t olen, struct buf *out, char *err, size_t errlen);

/*
 * Streaming writer that only ever produces valid JSON: exactly one top-level
 * value, keys only directly inside objects and each followed by one value,
 * balanced nesting no deeper than JSON_DEPTH_MAX, strings escaped (see
 * jw_string). The first error sticks: every later call is a no-op and
 * jw_finish reports it.
 *
 *   struct json_writer w;
 *   jw_init(&w, &out);
 *   jw_object_begin(&w); jw_key(&w, "n"); jw_int(&w, 1); jw_object_end(&w);
 *   rc = jw_finish(&w);
 */
struct json_writer {
	struct buf *out;
	int depth;
	/* per level: JW_* flags (first value pending, level is an object) */
	unsigned char first[JSON_DEPTH_MAX + 2];
	bool after_key; /* a key was written; its value is due */
	int err;
};

void jw_init(struct json_writer *w, struct buf *out);
void jw_object_begin(struct json_writer *w);
void jw_object_end(struct json_writer *w);
void jw_array_begin(struct json_writer *w);
void jw_array_end(struct json_writer *w);
void jw_key(struct json_writer *w, const char *key);
/* Key of n bytes that may contain NUL. */
void jw_key_n(struct json_writer *w, const char *key, size_t n);
/*
 * Strings: '"' and '\' escaped; \b \f \n \r \t short forms; other bytes
 * < 0x20 and 0x7f as \u00XX; invalid UTF-8 (including truncated sequences,
 * overlongs, surrogates) replaced by U+FFFD per maximal invalid subpart.
 * jw_string(w, NULL) writes null.
 */
void jw_string(struct json_writer *w, const char *s);
void jw_string_n(struct json_writer *w, const char *s, size_t n);
void jw_int(struct json_writer *w, long long v);
/* Shortest of %.15g/%.16g/%.17g that round-trips; 30 -> 30; NaN/inf -> null. */
void jw_double(struct json_writer *w, double v);
void jw_bool(struct json_writer *w, bool v);
void jw_null(struct json_writer *w);
/*
 * Insert one already-serialized value. It is validated (as json_parse would,
 * token bound aside) and its nesting counted against JSON_DEPTH_MAX; the
 * surrounding whitespace is dropped. -EINVAL / -E2BIG if it would not keep
 * the output valid.
 */
void jw_raw(struct json_writer *w, const char *json, size_t n);
/*
 * 0 if the output is one complete value; else the first error recorded:
 * -ENOSPC / -ENOMEM from the buf, -EINVAL for misuse (unbalanced nesting,
 * key/value out of place, nothing written), -E2BIG for too deep.
 */
/* Like jw_raw without the validation, for JSON this program rendered
 * itself (stored node metadata): the caller vouches that it is one valid,
 * compact value. */
void jw_raw_trusted(struct json_writer *w, const char *json, size_t n);
int jw_finish(struct json_writer *w);

#endif
