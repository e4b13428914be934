/*
 * fuzz_json — src/common/json.c: the strict parser, the accessors, the
 * canonical renderer, the object merge and the writer.
 *
 * Input: a JSON text (request bodies are the production source).
 *
 * Checks beyond the sanitizers:
 *   - render is canonical: r = render(parse(input)) parses, and
 *     render(parse(r)) == r; so does every subtree's rendering;
 *   - accessors agree with each other (an int64 is also a double; counts
 *     match iteration; json_obj_get finds a key that iteration saw);
 *   - json_merge_objects with a fixed object, both ways: either a clean
 *     error or an object that parses;
 *   - the writer never emits invalid JSON: jw_string_n / jw_key_n of the raw
 *     bytes parse back, and give the bytes back when they are valid UTF-8
 *     without NUL; jw_raw of the input succeeds exactly when it parses
 *     (token bound aside).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxystone/buf.h"
#include "proxystone/json.h"

/* Output bound for renderings: a rendering is never longer than a few
 * times its input (escapes grow a byte to six), and inputs are capped by
 * the runner's -max_len. */
#define FUZZ_JSON_OUT_MAX (1024 * 1024)

static const char fixed_obj[] =
    "{\"url\":\"http://127.0.0.1:4402\",\"tags\":[\"eu\"],\"metadata\":"
    "{\"load\":0.45},\"role\":\"worker\",\"url\":\"dup\"}";

static void die(const char *what, const char *a, size_t alen)
{
	fprintf(stderr, "fuzz_json: %s\n", what);
	if (a)
		fprintf(stderr, "--- text ---\n%.*s\n--- end ---\n", (int)alen,
			a);
	abort();
}

/* Strict RFC 3629 UTF-8 (no overlongs, surrogates, > U+10FFFF). */
static bool utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t k;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			k = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/* Parses text, which must be valid; returns the doc. */
static void must_parse(struct json_doc *d, const char *text, size_t len,
		       const char *what)
{
	char err[160];
	int rc = json_parse(d, text, len, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "fuzz_json: %s does not parse: %d %s\n", what,
			rc, err);
		die("invalid output", text, len);
	}
}

/* The writer's output for one string of raw bytes, as a value or a key. */
static void check_writer_string(const uint8_t *data, size_t size, bool as_key)
{
	struct buf out;
	struct json_writer w;
	buf_init(&out, FUZZ_JSON_OUT_MAX);
	jw_init(&w, &out);
	if (as_key) {
		jw_object_begin(&w);
		jw_key_n(&w, (const char *)data, size);
		jw_null(&w);
		jw_object_end(&w);
	} else {
		jw_string_n(&w, (const char *)data, size);
	}
	int rc = jw_finish(&w);
	if (rc) {
		if (rc == -ENOSPC)
			goto out;
		die("writer refused a string", (const char *)data, size);
	}
	struct json_doc d;
	must_parse(&d, out.base, out.len, "jw_string_n output");
	int s = as_key ? 1 : 0;
	if (json_type(&d, s) != JSON_STRING)
		die("jw_string_n did not write a string", out.base, out.len);
	bool roundtrips = utf8_valid(data, size) && !memchr(data, 0, size);
	struct buf back;
	buf_init(&back, FUZZ_JSON_OUT_MAX);
	int grc = json_get_string(&d, s, &back);
	if (roundtrips) {
		if (grc || back.len != size ||
		    (size && memcmp(back.base, data, size)))
			die("valid UTF-8 did not survive jw_string_n + "
			    "json_get_string",
			    out.base, out.len);
	} else if (grc && grc != -EINVAL) {
		die("json_get_string failed on writer output", out.base,
		    out.len);
	}
	buf_fini(&back);
	json_doc_fini(&d);
out:
	buf_fini(&out);
}

static void check_raw(const uint8_t *data, size_t size, int parse_rc)
{
	struct buf out;
	struct json_writer w;
	buf_init(&out, FUZZ_JSON_OUT_MAX);
	jw_init(&w, &out);
	jw_raw(&w, (const char *)data, size);
	int rc = jw_finish(&w);
	if (parse_rc == 0 && rc != 0)
		die("jw_raw refused a document json_parse accepts",
		    (const char *)data, size);
	if (rc == 0) {
		/* jw_raw does not bound tokens; json_parse does */
		if (parse_rc != 0 && parse_rc != -E2BIG)
			die("jw_raw accepted a document json_parse refuses",
			    (const char *)data, size);
		struct json_doc d;
		char err[160];
		int prc = json_parse(&d, out.base, out.len, err, sizeof(err));
		if (prc && prc != -E2BIG)
			die("jw_raw output does not parse", out.base, out.len);
		json_doc_fini(&d);
	}
	buf_fini(&out);
}

/* render(subtree) parses and is a fixed point of parse + render. */
static void check_render(const struct json_doc *d, int i)
{
	struct buf r1, r2;
	struct json_doc d1;
	buf_init(&r1, FUZZ_JSON_OUT_MAX);
	buf_init(&r2, FUZZ_JSON_OUT_MAX);
	int rc = json_render(d, i, &r1);
	if (rc == -ENOSPC)
		goto out;
	if (rc)
		die("json_render failed on a parsed document", d->text, d->len);
	must_parse(&d1, r1.base, r1.len, "json_render output");
	if (json_render(&d1, 0, &r2))
		die("re-render failed", r1.base, r1.len);
	if (r1.len != r2.len || memcmp(r1.base, r2.base, r1.len)) {
		fprintf(stderr, "--- render 2 ---\n%.*s\n", (int)r2.len,
			r2.base);
		die("render is not canonical: render(parse(r)) != r", r1.base,
		    r1.len);
	}
	json_doc_fini(&d1);
out:
	buf_fini(&r1);
	buf_fini(&r2);
}

static void check_accessors(const struct json_doc *d)
{
	for (int i = 0; i < d->ntok; i++) {
		enum json_type t = json_type(d, i);
		if (t == JSON_NONE)
			die("token without a type", d->text, d->len);
		int nx = json_next(d, i);
		if (nx <= i || nx > d->ntok)
			die("json_next out of range", d->text, d->len);
		double dv;
		long long iv;
		bool bv;
		int nrc = json_get_number(d, i, &dv);
		int irc = json_get_int64(d, i, &iv);
		if (t == JSON_NUMBER) {
			if (irc == 0 && nrc != 0)
				die("an int64 that is not a double", d->text,
				    d->len);
		} else if (nrc != -EINVAL || irc != -EINVAL) {
			die("number accessor accepted a non-number", d->text,
			    d->len);
		}
		if ((json_get_bool(d, i, &bv) == 0) != (t == JSON_BOOL))
			die("bool accessor disagrees with type", d->text,
			    d->len);
		if (t == JSON_STRING) {
			struct buf s;
			buf_init(&s, FUZZ_JSON_OUT_MAX);
			int src = json_get_string(d, i, &s);
			if (src && src != -EINVAL)
				die("json_get_string failed", d->text, d->len);
			buf_fini(&s);
		}
		int cnt = json_count(d, i);
		if (t == JSON_OBJECT || t == JSON_ARRAY) {
			int seen = 0;
			for (int c = json_first_child(d, i); c >= 0;
			     c = json_next_sibling(d, c)) {
				if (c <= i || c >= nx)
					die("child outside its parent", d->text,
					    d->len);
				if (++seen > cnt)
					break;
				if (t != JSON_OBJECT)
					continue;
				/* keys without \u0000 are found again (the
				 * first of duplicates: a value, never -1) */
				struct buf k;
				buf_init(&k, FUZZ_JSON_OUT_MAX);
				if (!json_get_string(d, c, &k) &&
				    strlen(k.base ? k.base : "") == k.len &&
				    json_obj_get(d, i, k.base ? k.base : "") <
					0)
					die("json_obj_get misses a key",
					    d->text, d->len);
				buf_fini(&k);
			}
			if (seen != cnt)
				die("json_count disagrees with iteration",
				    d->text, d->len);
		} else if (cnt != -EINVAL) {
			die("json_count of a scalar", d->text, d->len);
		}
	}
	/* out-of-range indexes are harmless */
	if (json_type(d, -1) != JSON_NONE ||
	    json_type(d, d->ntok) != JSON_NONE || json_next(d, d->ntok) != -1)
		die("out-of-range index accepted", d->text, d->len);
}

static void check_merge(const uint8_t *data, size_t size)
{
	for (int way = 0; way < 2; way++) {
		struct buf out;
		char err[160];
		buf_init(&out, FUZZ_JSON_OUT_MAX);
		int rc = way ? json_merge_objects((const char *)data, size,
						  fixed_obj, strlen(fixed_obj),
						  &out, err, sizeof(err))
			     : json_merge_objects(fixed_obj, strlen(fixed_obj),
						  (const char *)data, size,
						  &out, err, sizeof(err));
		if (rc == 0) {
			struct json_doc d;
			must_parse(&d, out.base, out.len, "merge output");
			if (json_type(&d, 0) != JSON_OBJECT)
				die("merge output is not an object", out.base,
				    out.len);
			json_doc_fini(&d);
		} else if (out.len != 0) {
			die("failed merge changed its output", out.base,
			    out.len);
		}
		buf_fini(&out);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_doc d;
	char err[160];
	int rc = json_parse(&d, (const char *)data, size, err, sizeof(err));
	if (rc == 0) {
		if (d.ntok < 1)
			die("parsed document without tokens",
			    (const char *)data, size);
		check_accessors(&d);
		for (int i = 0; i < d.ntok; i++)
			check_render(&d, i);
	} else if (rc != -EINVAL && rc != -E2BIG) {
		die("json_parse: unexpected error", (const char *)data, size);
	}
	json_doc_fini(&d);

	check_merge(data, size);
	check_raw(data, size, rc);
	check_writer_string(data, size, false);
	check_writer_string(data, size, true);
	return 0;
}
