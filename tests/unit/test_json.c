/* Unit tests for src/common/json.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxystone/json.h"

/* Output bound for tests that do not probe the bound itself. */
#define TEST_BUF_MAX (1 << 20)
/* Room for parse error messages. */
#define TEST_ERR_MAX 256
/* A string literal and its length, embedded NULs included. */
#define S(lit) lit, sizeof(lit) - 1

/* Parse s (strlen) from an exact-size heap copy so ASan sees overreads. */
static int parse_exact(struct json_doc *d, char **copy, const char *s, size_t n,
		       char *err, size_t errlen)
{
	*copy = malloc(n ? n : 1);
	assert_non_null(*copy);
	memcpy(*copy, s, n);
	return json_parse(d, *copy, n, err, errlen);
}

static int parse_rc_n(const char *s, size_t n)
{
	struct json_doc d;
	char err[TEST_ERR_MAX];
	char *copy;
	int rc = parse_exact(&d, &copy, s, n, err, sizeof(err));

	if (rc) {
		/* failure: reported with an offset, nothing held */
		assert_non_null(strstr(err, "offset"));
		assert_null(d.tok);
		assert_int_equal(d.ntok, 0);
		assert_int_equal(json_type(&d, 0), JSON_NONE);
	}
	json_doc_fini(&d);
	free(copy);
	return rc;
}

static int parse_rc(const char *s)
{
	return parse_rc_n(s, strlen(s));
}

static void parse_ok(struct json_doc *d, const char *s)
{
	char err[TEST_ERR_MAX] = "";
	int rc = json_parse(d, s, strlen(s), err, sizeof(err));

	if (rc)
		fail_msg("parse of '%s' failed: %d %s", s, rc, err);
}

/* Render token i of d; returns a heap string. */
static char *render(const struct json_doc *d, int i)
{
	struct buf b;
	char *s;

	buf_init(&b, TEST_BUF_MAX);
	assert_int_equal(json_render(d, i, &b), 0);
	s = strdup(b.base ? b.base : "");
	buf_fini(&b);
	return s;
}

static char *get_str(const struct json_doc *d, int i, size_t *len)
{
	struct buf b;
	char *s;

	buf_init(&b, TEST_BUF_MAX);
	assert_int_equal(json_get_string(d, i, &b), 0);
	*len = b.len;
	s = malloc(b.len + 1);
	memcpy(s, b.base ? b.base : "", b.len + 1);
	buf_fini(&b);
	return s;
}

/* ---- parsing valid documents ------------------------------------------ */

static void test_parse_scalars(void **state)
{
	static const struct {
		const char *text;
		enum json_type type;
	} cases[] = {
	    {"true", JSON_BOOL},
	    {"false", JSON_BOOL},
	    {"null", JSON_NULL},
	    {"0", JSON_NUMBER},
	    {"-0", JSON_NUMBER},
	    {"-1.5e+3", JSON_NUMBER},
	    {"1E-2", JSON_NUMBER},
	    {"0.0e0", JSON_NUMBER},
	    {"123456789012345678901234567890", JSON_NUMBER},
	    {" \t\r\n42 \t\r\n", JSON_NUMBER},
	    {"\"hi\"", JSON_STRING},
	    {"\"\"", JSON_STRING},
	    {"  \"x\"  ", JSON_STRING},
	    {"{}", JSON_OBJECT},
	    {"[]", JSON_ARRAY},
	    {" { } ", JSON_OBJECT},
	    {"[ ]", JSON_ARRAY},
	};
	(void)state;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct json_doc d;
		char *copy;

		assert_int_equal(parse_exact(&d, &copy, cases[k].text,
					     strlen(cases[k].text), NULL, 0),
				 0);
		assert_int_equal(d.ntok, 1);
		assert_int_equal(json_type(&d, 0), cases[k].type);
		assert_int_equal(json_next(&d, 0), 1);
		assert_int_equal(json_first_child(&d, 0), -1);
		assert_int_equal(json_next_sibling(&d, 0), -1);
		if (cases[k].type == JSON_OBJECT || cases[k].type == JSON_ARRAY)
			assert_int_equal(json_count(&d, 0), 0);
		else
			assert_int_equal(json_count(&d, 0), -EINVAL);
		json_doc_fini(&d);
		free(copy);
	}
}

static void test_parse_scalar_values(void **state)
{
	struct json_doc d;
	bool b;
	double v;
	long long ll;
	size_t n;
	char *s;

	(void)state;
	parse_ok(&d, " true ");
	assert_int_equal(json_get_bool(&d, 0, &b), 0);
	assert_true(b);
	assert_int_equal(json_get_number(&d, 0, &v), -EINVAL);
	json_doc_fini(&d);

	parse_ok(&d, "false");
	assert_int_equal(json_get_bool(&d, 0, &b), 0);
	assert_false(b);
	json_doc_fini(&d);

	parse_ok(&d, "null");
	assert_int_equal(json_get_bool(&d, 0, &b), -EINVAL);
	assert_int_equal(json_get_int64(&d, 0, &ll), -EINVAL);
	json_doc_fini(&d);

	parse_ok(&d, "-12.5e1");
	assert_int_equal(json_get_number(&d, 0, &v), 0);
	assert_true(v == -125.0);
	assert_int_equal(json_get_int64(&d, 0, &ll), 0);
	assert_int_equal(ll, -125);
	assert_int_equal(json_get_bool(&d, 0, &b), -EINVAL);
	json_doc_fini(&d);

	parse_ok(&d, "\"top\"");
	s = get_str(&d, 0, &n);
	assert_string_equal(s, "top");
	free(s);
	json_doc_fini(&d);
}

static void test_parse_nested(void **state)
{
	const char *text = "{\"s\":\"v\",\"n\":-1.25,\"t\":true,\"f\":false,"
			   "\"z\":null,\"a\":[1,[2,3],{}],\"o\":{\"k\":[]}}";
	struct json_doc d;
	int a, o, k;

	(void)state;
	parse_ok(&d, text);
	assert_int_equal(json_type(&d, 0), JSON_OBJECT);
	assert_int_equal(json_count(&d, 0), 7);
	assert_int_equal(json_next(&d, 0), d.ntok);
	assert_int_equal(json_type(&d, json_obj_get(&d, 0, "s")), JSON_STRING);
	assert_int_equal(json_type(&d, json_obj_get(&d, 0, "n")), JSON_NUMBER);
	assert_int_equal(json_type(&d, json_obj_get(&d, 0, "t")), JSON_BOOL);
	assert_int_equal(json_type(&d, json_obj_get(&d, 0, "f")), JSON_BOOL);
	assert_int_equal(json_type(&d, json_obj_get(&d, 0, "z")), JSON_NULL);
	a = json_obj_get(&d, 0, "a");
	assert_int_equal(json_type(&d, a), JSON_ARRAY);
	assert_int_equal(json_count(&d, a), 3);
	/* a = [1,[2,3],{}]: 1 elem, inner array with 2, empty object */
	assert_int_equal(json_next(&d, a), a + 6);
	assert_int_equal(json_type(&d, a + 2), JSON_ARRAY);
	assert_int_equal(json_next(&d, a + 2), a + 5);
	o = json_obj_get(&d, 0, "o");
	assert_int_equal(o, a + 7);
	assert_int_equal(json_type(&d, o), JSON_OBJECT);
	k = json_obj_get(&d, o, "k");
	assert_int_equal(json_type(&d, k), JSON_ARRAY);
	assert_int_equal(json_count(&d, k), 0);
	assert_int_equal(json_obj_get(&d, o, "s"), -1);
	assert_int_equal(json_next(&d, o), d.ntok);
	/* bad indices */
	assert_int_equal(json_type(&d, -1), JSON_NONE);
	assert_int_equal(json_type(&d, d.ntok), JSON_NONE);
	assert_int_equal(json_next(&d, d.ntok), -1);
	assert_int_equal(json_count(&d, 999), -EINVAL);
	json_doc_fini(&d);
}

static void test_parse_valid_edges(void **state)
{
	static const char *const ok[] = {
	    "\"\\u0000\"",
	    "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
	    "\"\\ud83d\\ude00\"",
	    "\"\\uD83D\\uDE00\"",
	    "\"\xf0\x9f\x98\x80\"",
	    "\"\xc3\xa9\xe2\x82\xac\xf4\x8f\xbf\xbf\"",
	    "\"\x7f\"",
	    "\"\\uffff\\ue000\\u00e9\"",
	    "[[],{},[{}],[[[]]]]",
	    "{\"\":\"\"}",
	    "{\"a\":1,\"a\":2}",
	    "1e400",
	    "-0.0E+00",
	    "[0,-0,0.5,10,1e5,1E5,1e+5,1e-5]",
	    "\r\n\t [ \r\n\t 1 \r\n\t , \r\n\t 2 \r\n\t ] \r\n\t ",
	};

	(void)state;
	for (size_t k = 0; k < sizeof(ok) / sizeof(ok[0]); k++)
		assert_int_equal(parse_rc(ok[k]), 0);
}

static void test_parse_null_and_fini(void **state)
{
	struct json_doc d;
	char err[TEST_ERR_MAX];

	(void)state;
	memset(&d, 0, sizeof(d));
	json_doc_fini(&d); /* zeroed doc */
	assert_int_equal(json_parse(&d, NULL, 0, err, sizeof(err)), -EINVAL);
	json_doc_fini(&d);
	assert_int_equal(json_parse(&d, NULL, 5, err, sizeof(err)), -EINVAL);
	json_doc_fini(&d);
	/* err may be NULL */
	assert_int_equal(json_parse(&d, "[", 1, NULL, 0), -EINVAL);
	json_doc_fini(&d);
	json_doc_fini(&d); /* twice is fine */
	/* tiny err buffer is truncated, not overrun */
	assert_int_equal(json_parse(&d, "[", 1, err, 4), -EINVAL);
	assert_int_equal(strlen(err), 3);
	json_doc_fini(&d);
	/* length is honoured: text beyond len is not read */
	assert_int_equal(json_parse(&d, "[1]garbage", 3, err, sizeof(err)), 0);
	assert_int_equal(json_count(&d, 0), 1);
	json_doc_fini(&d);
}

/* ---- bounds ----------------------------------------------------------- */

static char *nest(int depth, bool objects)
{
	size_t cap = (size_t)depth * 8 + 8;
	char *s = malloc(cap);
	size_t n = 0;

	for (int k = 0; k < depth; k++)
		n += (size_t)sprintf(s + n, "%s", objects ? "{\"a\":" : "[");
	n += (size_t)sprintf(s + n, "1");
	for (int k = 0; k < depth; k++)
		s[n++] = objects ? '}' : ']';
	s[n] = '\0';
	return s;
}

static void test_depth_bound(void **state)
{
	char *s;
	struct json_doc d;
	char err[TEST_ERR_MAX];

	(void)state;
	for (int obj = 0; obj <= 1; obj++) {
		s = nest(JSON_DEPTH_MAX, obj);
		parse_ok(&d, s);
		assert_int_equal(json_next(&d, 0), d.ntok);
		json_doc_fini(&d);
		free(s);

		s = nest(JSON_DEPTH_MAX + 1, obj);
		assert_int_equal(json_parse(&d, s, strlen(s), err, sizeof(err)),
				 -E2BIG);
		assert_null(d.tok);
		json_doc_fini(&d);
		free(s);
	}
	/* very deep hostile input is rejected early, not recursed into */
	s = malloc(100001);
	memset(s, '[', 100000);
	s[100000] = '\0';
	assert_int_equal(parse_rc(s), -E2BIG);
	free(s);
}

static char *array_of(int n)
{
	char *s = malloc((size_t)n * 2 + 3);
	size_t len = 0;

	s[len++] = '[';
	for (int k = 0; k < n; k++) {
		if (k)
			s[len++] = ',';
		s[len++] = '0';
	}
	s[len++] = ']';
	s[len] = '\0';
	return s;
}

static char *object_of(int n)
{
	char *s = malloc((size_t)n * 16 + 3);
	size_t len = 0;

	s[len++] = '{';
	for (int k = 0; k < n; k++)
		len += (size_t)sprintf(s + len, "%s\"k%d\":%d", k ? "," : "", k,
				       k);
	s[len++] = '}';
	s[len] = '\0';
	return s;
}

static void test_token_bound(void **state)
{
	struct json_doc d;
	char *s;
	int n, c;

	(void)state;
	/* the array itself is one token */
	s = array_of(JSON_TOKENS_MAX - 1);
	parse_ok(&d, s);
	assert_int_equal(d.ntok, JSON_TOKENS_MAX);
	assert_int_equal(json_count(&d, 0), JSON_TOKENS_MAX - 1);
	n = 0;
	for (c = json_first_child(&d, 0); c >= 0; c = json_next_sibling(&d, c))
		n++;
	assert_int_equal(n, JSON_TOKENS_MAX - 1);
	json_doc_fini(&d);
	free(s);
	s = array_of(JSON_TOKENS_MAX);
	assert_int_equal(parse_rc(s), -E2BIG);
	free(s);

	/* keys count: 1 + 2 * members */
	s = object_of((JSON_TOKENS_MAX - 1) / 2);
	parse_ok(&d, s);
	assert_int_equal(json_count(&d, 0), (JSON_TOKENS_MAX - 1) / 2);
	assert_int_equal(json_type(&d, json_obj_get(&d, 0, "k2046")),
			 JSON_NUMBER);
	json_doc_fini(&d);
	free(s);
	s = object_of((JSON_TOKENS_MAX - 1) / 2 + 1);
	assert_int_equal(parse_rc(s), -E2BIG);
	free(s);
}

/* ---- malformed input -------------------------------------------------- */

static void test_malformed(void **state)
{
	static const char *const bad[] = {
	    /* empty / trailing / multiple top-level values */
	    "",
	    " ",
	    "\n\t",
	    "{} x",
	    "1 2",
	    "{}{}",
	    "[] []",
	    "\"a\" \"b\"",
	    "1,",
	    "{},",
	    "true false",
	    "null]",
	    "{}}",
	    "[]]",
	    /* structure */
	    "[1,]",
	    "[,1]",
	    "[1 2]",
	    "[1,,2]",
	    "[",
	    "]",
	    "{",
	    "}",
	    "{]",
	    "[}",
	    "[1}",
	    "{\"a\":1]",
	    "{\"a\" 1}",
	    "{\"a\":1,}",
	    "{,}",
	    "{1:2}",
	    "{\"a\"}",
	    "{\"a\":}",
	    "{\"a\"::1}",
	    "{a:1}",
	    "{'a':1}",
	    "{\"a\":1 \"b\":2}",
	    "{\"a\",1}",
	    "[\"a\":1]",
	    ":",
	    ",",
	    "[:]",
	    "{\"a\":1}:",
	    "/*c*/1",
	    "1//c",
	    "'a'",
	    "\xef\xbb\xbf{}",
	    /* escapes */
	    "\"\\x\"",
	    "\"\\a\"",
	    "\"\\U0041\"",
	    "\"\\u12\"",
	    "\"\\u12G4\"",
	    "\"\\u12g4\"",
	    "\"\\uzzzz\"",
	    "\"\\u-123\"",
	    "\"\\u\"",
	    "\"\\\"",
	    "\"\\",
	    /* surrogates */
	    "\"\\ud800\"",
	    "\"\\udc00\"",
	    "\"\\udfff\\ud800\"",
	    "\"\\ud800\\u0041\"",
	    "\"\\ud800x\"",
	    "\"\\ud800\\ud800\"",
	    "\"\\ud800\\n\"",
	    "\"\\ud83d\\ude0\"",
	    "\"a\\ud83d",
	    /* raw control characters */
	    "\"a\001b\"",
	    "\"a\nb\"",
	    "\"\t\"",
	    "\"\x1f\"",
	    "[\"\r\"]",
	    /* invalid UTF-8 */
	    "\"\xff\"",
	    "\"\xfe\"",
	    "\"\x80\"",
	    "\"\xbf\"",
	    "\"\xc3\"",
	    "\"\xc3x\"",
	    "\"\xc0\xaf\"",
	    "\"\xc1\xbf\"",
	    "\"\xe0\x80\xaf\"",
	    "\"\xe0\x9f\xbf\"",
	    "\"\xed\xa0\x80\"",
	    "\"\xed\xbf\xbf\"",
	    "\"\xe2\x82\"",
	    "\"\xf0\x80\x80\x80\"",
	    "\"\xf0\x8f\xbf\xbf\"",
	    "\"\xf4\x90\x80\x80\"",
	    "\"\xf5\x80\x80\x80\"",
	    "\"\xf8\x88\x80\x80\x80\"",
	    "\"\xf0\x9f\x98\"",
	    "{\"\xff\":1}",
	    "\xc3\xa9",
	    /* numbers */
	    "01",
	    "-01",
	    "00",
	    "1.",
	    "-1.",
	    ".5",
	    "-.5",
	    "-",
	    "--1",
	    "- 1",
	    "1e",
	    "1e+",
	    "1E-",
	    "1e1.5",
	    "+1",
	    "1.2.3",
	    "0x10",
	    "1a",
	    "1_0",
	    "NaN",
	    "-NaN",
	    "Infinity",
	    "-Infinity",
	    "inf",
	    "1e5e5",
	    "[01]",
	    "[1.]",
	    "{\"a\":-}",
	    "2.e3",
	    /* literals */
	    "tru",
	    "nul",
	    "fals",
	    "True",
	    "NULL",
	    "nulll",
	    "truex",
	    "t",
	    "[tru]",
	    "{\"a\":nul}",
	    "undefined",
	    "none",
	};

	(void)state;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		int rc = parse_rc(bad[k]);

		if (rc != -EINVAL)
			fail_msg("case %zu '%s': expected -EINVAL, got %d", k,
				 bad[k], rc);
	}
}

static void test_malformed_nul_bytes(void **state)
{
	(void)state;
	assert_int_equal(parse_rc_n("1\0", 2), -EINVAL);
	assert_int_equal(parse_rc_n("\0", 1), -EINVAL);
	assert_int_equal(parse_rc_n("[1,\0 2]", 7), -EINVAL);
	assert_int_equal(parse_rc_n("\"a\0b\"", 5), -EINVAL);
	assert_int_equal(parse_rc_n("{\"a\0\":1}", 8), -EINVAL);
}

static void test_error_messages(void **state)
{
	static const struct {
		const char *text;
		const char *msg;
	} cases[] = {
	    {"[1,]", "unexpected character at offset 3"},
	    {"{\"a\":1} x", "trailing characters after value at offset 8"},
	    {"\"ab\\q\"", "invalid escape at offset 3"},
	    {"[\"\\ud800\"]", "unpaired high surrogate at offset 2"},
	    {"[01]", "invalid number at offset 1"},
	    {"\"a\x01\"", "control character in string at offset 2"},
	    {"[\"\xc0\xaf\"]", "invalid UTF-8 in string at offset 2"},
	    {"[1 2]", "expected ',' or ']' at offset 3"},
	    {"{\"a\" 1}", "expected ':' at offset 5"},
	    {"[nul]", "invalid literal at offset 1"},
	    {"", "empty document at offset 0"},
	    {"  \"abc", "unterminated string at offset 2"},
	};
	char err[TEST_ERR_MAX];
	struct json_doc d;

	(void)state;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		assert_int_equal(json_parse(&d, cases[k].text,
					    strlen(cases[k].text), err,
					    sizeof(err)),
				 -EINVAL);
		assert_string_equal(err, cases[k].msg);
		json_doc_fini(&d);
	}
	assert_int_equal(json_parse(&d, "[1", 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unterminated array"));
}

static void test_truncated_prefixes(void **state)
{
	static const char *const docs[] = {
	    ("{\"name\":\"n\\u00e9\\ud83d\\ude00\",\"v\":[1,-2.5e+3,true,"
	     "false,null,{\"x\":{}},[]],\"e\":\"\xe2\x82\xac\\\"\"}"),
	    "[\"\xf0\x9f\x98\x80\",0,{\"\":[\"\\\\\"]}]",
	    "\"\\ud83d\\ude00 caf\xc3\xa9\"",
	    "true",
	    "false",
	    "null",
	    "{\"a\":{\"b\":{\"c\":[[[-0.5E-7]]]}}}",
	};

	(void)state;
	for (size_t k = 0; k < sizeof(docs) / sizeof(docs[0]); k++) {
		size_t len = strlen(docs[k]);

		assert_int_equal(parse_rc_n(docs[k], len), 0);
		for (size_t n = 0; n < len; n++) {
			int rc = parse_rc_n(docs[k], n);

			if (rc != -EINVAL)
				fail_msg("doc %zu prefix %zu: rc %d", k, n, rc);
		}
	}
}

/* ---- access ----------------------------------------------------------- */

static void test_obj_get_escaped_keys(void **state)
{
	const char *text =
	    "{\"a\\\"b\":1,\"\\u0041\":2,\"caf\\u00e9\":3,"
	    "\"\\ud83d\\ude00\":4,\"x\":5,\"x\":6,\"a\\u0000b\":7,"
	    "\"tab\\t\":8,\"\\/\":9,\"plain\xc3\xa9\":10,\"\":11}";
	static const struct {
		const char *key;
		long long v;
	} cases[] = {
	    {"a\"b", 1},	{"A", 2},
	    {"caf\xc3\xa9", 3}, {"\xf0\x9f\x98\x80", 4},
	    {"x", 5},		{"tab\t", 8},
	    {"/", 9},		{"plain\xc3\xa9", 10},
	    {"", 11},
	};
	struct json_doc d;
	long long v;

	(void)state;
	parse_ok(&d, text);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		int i = json_obj_get(&d, 0, cases[k].key);

		assert_true(i > 0);
		assert_int_equal(json_get_int64(&d, i, &v), 0);
		assert_int_equal(v, cases[k].v);
	}
	assert_int_equal(json_obj_get(&d, 0, "a"), -1);
	assert_int_equal(json_obj_get(&d, 0, "a\\\"b"), -1);
	assert_int_equal(json_obj_get(&d, 0, "\\u0041"), -1);
	assert_int_equal(json_obj_get(&d, 0, "caf"), -1);
	assert_int_equal(json_obj_get(&d, 0, "caf\xc3\xa9!"), -1);
	assert_int_equal(json_obj_get(&d, 0, "xx"), -1);
	assert_int_equal(json_obj_get(&d, 0, "tab"), -1);
	assert_int_equal(json_obj_get(&d, 0, NULL), -1);
	/* not an object */
	assert_int_equal(json_obj_get(&d, 2, "A"), -1);
	assert_int_equal(json_obj_get(&d, -1, "A"), -1);
	json_doc_fini(&d);

	parse_ok(&d, "[{\"a\":1}]");
	assert_int_equal(json_obj_get(&d, 0, "a"), -1);
	assert_int_equal(json_obj_get(&d, 1, "a"), 3);
	json_doc_fini(&d);
	/* a key is never matched against values */
	parse_ok(&d, "{\"k\":\"a\",\"a\":\"k\"}");
	assert_int_equal(json_obj_get(&d, 0, "a"), 4);
	json_doc_fini(&d);
}

static void test_iteration(void **state)
{
	const char *text = "{\"a\":[1,{\"x\":[2,3]},4],\"b\":{},\"c\":\"s\","
			   "\"d\":{\"e\":null}}";
	static const char *const keys[] = {"a", "b", "c", "d"};
	struct json_doc d;
	struct buf b;
	int k, n, a, e;
	long long v;
	long long elems[3];

	(void)state;
	parse_ok(&d, text);
	buf_init(&b, TEST_BUF_MAX);
	n = 0;
	for (k = json_first_child(&d, 0); k >= 0;
	     k = json_next_sibling(&d, k)) {
		assert_true(n < 4);
		buf_reset(&b);
		assert_int_equal(json_get_string(&d, k, &b), 0);
		assert_string_equal(b.base, keys[n]);
		assert_int_equal(json_next(&d, k), k + 1);
		assert_int_equal(json_obj_get(&d, 0, keys[n]), k + 1);
		/* from a value, the next sibling is the next key */
		assert_int_equal(json_next_sibling(&d, k + 1),
				 json_next_sibling(&d, k));
		n++;
	}
	assert_int_equal(n, 4);
	assert_int_equal(json_count(&d, 0), 4);

	a = json_obj_get(&d, 0, "a");
	n = 0;
	for (k = json_first_child(&d, a); k >= 0;
	     k = json_next_sibling(&d, k)) {
		if (json_type(&d, k) == JSON_NUMBER) {
			assert_int_equal(json_get_int64(&d, k, &v), 0);
			elems[n] = v;
		} else {
			assert_int_equal(json_type(&d, k), JSON_OBJECT);
			elems[n] = -1;
		}
		n++;
	}
	assert_int_equal(n, 3);
	assert_int_equal(elems[0], 1);
	assert_int_equal(elems[1], -1);
	assert_int_equal(elems[2], 4);
	/* empty containers and scalars have no children */
	assert_int_equal(json_first_child(&d, json_obj_get(&d, 0, "b")), -1);
	assert_int_equal(json_first_child(&d, json_obj_get(&d, 0, "c")), -1);
	e = json_obj_get(&d, json_obj_get(&d, 0, "d"), "e");
	assert_int_equal(json_type(&d, e), JSON_NULL);
	assert_int_equal(json_next_sibling(&d, e), -1);
	assert_int_equal(json_next_sibling(&d, e - 1), -1);
	assert_int_equal(json_next_sibling(&d, 0), -1);
	assert_int_equal(json_next_sibling(&d, -3), -1);
	assert_int_equal(json_first_child(&d, d.ntok), -1);
	buf_fini(&b);
	json_doc_fini(&d);
}

static void test_get_string(void **state)
{
	const char *text =
	    "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\",\"\\u00e9\\u20AC\\ud83d\\ude00\","
	    "\"raw \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",\"a\\u0000b\",1,"
	    "\"\\u0001\\u001f\\u007f\\uffff\",\"\\uDBFF\\uDFFF\"]";
	struct json_doc d;
	struct buf b;
	size_t n;
	char *s;

	(void)state;
	parse_ok(&d, text);
	s = get_str(&d, 1, &n);
	assert_int_equal(n, 8);
	assert_memory_equal(s, "\"\\/\b\f\n\r\t", 8);
	free(s);
	s = get_str(&d, 2, &n);
	assert_string_equal(s, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	free(s);
	s = get_str(&d, 3, &n);
	assert_string_equal(s, "raw \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	free(s);
	s = get_str(&d, 6, &n);
	assert_string_equal(s, "\x01\x1f\x7f\xef\xbf\xbf");
	free(s);
	s = get_str(&d, 7, &n);
	assert_string_equal(s, "\xf4\x8f\xbf\xbf");
	free(s);

	/* appends; NUL escape, non-string and bound leave out unchanged */
	buf_init(&b, 6);
	assert_int_equal(buf_puts(&b, "<"), 0);
	assert_int_equal(json_get_string(&d, 4, &b), -EINVAL);
	assert_string_equal(b.base, "<");
	assert_int_equal(json_get_string(&d, 5, &b), -EINVAL);
	assert_int_equal(json_get_string(&d, 0, &b), -EINVAL);
	assert_int_equal(json_get_string(&d, 99, &b), -EINVAL);
	assert_int_equal(json_get_string(&d, 2, &b), -ENOSPC);
	assert_string_equal(b.base, "<");
	assert_int_equal(b.len, 1);
	buf_fini(&b);
	buf_init(&b, 9);
	assert_int_equal(buf_puts(&b, "<"), 0);
	assert_int_equal(json_get_string(&d, 2, &b), -ENOSPC);
	assert_string_equal(b.base, "<");
	buf_fini(&b);
	buf_init(&b, 10);
	assert_int_equal(buf_puts(&b, "<"), 0);
	assert_int_equal(json_get_string(&d, 2, &b), 0);
	assert_string_equal(b.base, "<\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	buf_fini(&b);
	json_doc_fini(&d);
}

static void test_get_number(void **state)
{
	static const struct {
		const char *text;
		int rc;
		double v;
	} cases[] = {
	    {"5.2", 0, 5.2},
	    {"-0", 0, -0.0},
	    {"1e308", 0, 1e308},
	    {"1e-400", 0, 0.0},
	    {"1e309", -ERANGE, 0},
	    {"-1e400", -ERANGE, 0},
	    {"123456789012345678901234567890", 0,
	     123456789012345678901234567890.0},
	    /* longer than the stack copy */
	    {"1.0000000000000000000000000000000000000000000000000000000000"
	     "000000000000000000005",
	     0, 1.0},
	    {"0.1000000000000000000000000000000000000000000000000000000000"
	     "0000000000000000000000e0",
	     0, 0.1},
	    {"true", -EINVAL, 0},
	    {"\"1\"", -EINVAL, 0},
	    {"null", -EINVAL, 0},
	};
	struct json_doc d;
	double v;

	(void)state;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		v = 42.0;
		parse_ok(&d, cases[k].text);
		assert_int_equal(json_get_number(&d, 0, &v), cases[k].rc);
		if (cases[k].rc == 0)
			assert_true(v == cases[k].v);
		else
			assert_true(v == 42.0); /* untouched */
		json_doc_fini(&d);
	}
	parse_ok(&d, "[1]");
	assert_int_equal(json_get_number(&d, 0, &v), -EINVAL);
	assert_int_equal(json_get_number(&d, 2, &v), -EINVAL);
	json_doc_fini(&d);
}

static void test_get_int64(void **state)
{
	static const struct {
		const char *text;
		int rc;
		long long v;
	} cases[] = {
	    {"0", 0, 0},
	    {"-0", 0, 0},
	    {"123", 0, 123},
	    {"-123", 0, -123},
	    {"9223372036854775807", 0, LLONG_MAX},
	    {"-9223372036854775808", 0, LLONG_MIN},
	    {"9223372036854775808", -EINVAL, 0},
	    {"-9223372036854775809", -EINVAL, 0},
	    {"18446744073709551616", -EINVAL, 0},
	    {"99999999999999999999999", -EINVAL, 0},
	    {"1e3", 0, 1000},
	    {"1E+3", 0, 1000},
	    {"2.50e1", 0, 25},
	    {"100e-2", 0, 1},
	    {"-4.0", 0, -4},
	    {"0.0000", 0, 0},
	    {"0e999999999999999999999", 0, 0},
	    {"9.223372036854775807e18", 0, LLONG_MAX},
	    {"9.223372036854775808e18", -EINVAL, 0},
	    {"9.3e18", -EINVAL, 0},
	    {"99e17", -EINVAL, 0},
	    {"-9.3e18", -EINVAL, 0},
	    {"9999999999999999999", -EINVAL, 0},
	    {"-9.223372036854775808e18", 0, LLONG_MIN},
	    {"12345678901234567890e-1", 0, 1234567890123456789LL},
	    {"10000000000000000000000e-4", 0, 1000000000000000000LL},
	    {"1e18", 0, 1000000000000000000LL},
	    {"1e19", -EINVAL, 0},
	    {"1e999999999999999999999", -EINVAL, 0},
	    {"1.5", -EINVAL, 0},
	    {"1e-1", -EINVAL, 0},
	    {"0.1", -EINVAL, 0},
	    {"1.0000000000000000001", -EINVAL, 0},
	    {"true", -EINVAL, 0},
	    {"\"1\"", -EINVAL, 0},
	    {"[1]", -EINVAL, 0},
	};
	struct json_doc d;
	long long v;

	(void)state;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		v = 42;
		parse_ok(&d, cases[k].text);
		if (json_get_int64(&d, 0, &v) != cases[k].rc)
			fail_msg("'%s': expected %d", cases[k].text,
				 cases[k].rc);
		assert_int_equal(v, cases[k].rc ? 42 : cases[k].v);
		json_doc_fini(&d);
	}
}

/* ---- render ----------------------------------------------------------- */

static void test_render(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
	    {" { \"a\" : [ 1 , 2.50 , true , null , false ] , "
	     "\"b\\u0041\" : \"\\u00e9\\/\" } ",
	     "{\"a\":[1,2.50,true,null,false],\"bA\":\"\xc3\xa9/\"}"},
	    {"\"\\u0000\\u001F\\u007f\\b\\f\\n\\r\\t\\\"\\\\\"",
	     "\"\\u0000\\u001f\\u007f\\b\\f\\n\\r\\t\\\"\\\\\""},
	    {"\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\""},
	    {"[ ]", "[]"},
	    {"{ }", "{}"},
	    {"[[ ],{ \"\" : { } }]", "[[],{\"\":{}}]"},
	    {" -1.5E+3 ", "-1.5E+3"},
	    {"{\"a\\u0000\":1}", "{\"a\\u0000\":1}"},
	    {"\"\x7f\"", "\"\\u007f\""},
	};
	struct json_doc d, d2;
	char *r, *r2;

	(void)state;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		parse_ok(&d, cases[k].in);
		r = render(&d, 0);
		assert_string_equal(r, cases[k].out);
		/* fixpoint: parse(render(x)) renders identically */
		parse_ok(&d2, r);
		r2 = render(&d2, 0);
		assert_string_equal(r, r2);
		free(r);
		free(r2);
		json_doc_fini(&d2);
		json_doc_fini(&d);
	}
}

static void test_render_subtree(void **state)
{
	struct json_doc d;
	struct buf b;
	char *r;
	int a;

	(void)state;
	parse_ok(&d, "{ \"k\\n\" : [ 1, { \"x\" : \"y\" } ], \"z\": 2 }");
	a = json_obj_get(&d, 0, "k\n");
	r = render(&d, a);
	assert_string_equal(r, "[1,{\"x\":\"y\"}]");
	free(r);
	r = render(&d, a - 1); /* a key renders as its string */
	assert_string_equal(r, "\"k\\n\"");
	free(r);
	r = render(&d, a + 2);
	assert_string_equal(r, "{\"x\":\"y\"}");
	free(r);

	buf_init(&b, 10);
	assert_int_equal(buf_puts(&b, "pre"), 0);
	assert_int_equal(json_render(&d, 0, &b), -ENOSPC);
	assert_string_equal(b.base, "pre");
	assert_int_equal(json_render(&d, -1, &b), -EINVAL);
	assert_int_equal(json_render(&d, d.ntok, &b), -EINVAL);
	assert_int_equal(json_render(&d, a, &b), -ENOSPC);
	assert_int_equal(b.len, 3);
	assert_int_equal(json_render(&d, a + 3, &b), 0); /* "x" key */
	assert_string_equal(b.base, "pre\"x\"");
	buf_fini(&b);
	json_doc_fini(&d);
}

/* Deterministic PRNG for the property tests (xorshift64). */
static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/*
 * Mutated valid documents: whatever the parser accepts must render to a
 * canonical form that re-parses to the same rendering.
 */
static void test_mutation_roundtrip(void **state)
{
	static const char *const seeds[] = {
	    "{\"a\":[1,-2.5e3,true,false,null],\"b\":{\"c\":\"\\u00e9\"}}",
	    "[\"\\ud83d\\ude00\",\"x\\\"y\",{},[],0]",
	    "{\"k\":{\"k\":{\"k\":[[\"\xc3\xa9\"]]}}}",
	};
	static const char alphabet[] = "{}[],:\"\\u0123456789abcdefe.-+ tnrl"
				       "\x01\x7f\xc3\xa9\xed\xff";
	char doc[256];
	int accepted = 0;

	(void)state;
	rng_state = 0x9e3779b97f4a7c15ULL;
	for (int iter = 0; iter < 20000; iter++) {
		const char *seed = seeds[rng() % 3];
		size_t len = strlen(seed);
		struct json_doc d, d2;
		char *copy, *r, *r2;
		int edits = 1 + (int)(rng() % 3);

		memcpy(doc, seed, len);
		for (int e = 0; e < edits; e++) {
			size_t at = len ? rng() % len : 0;
			char c = alphabet[rng() % (sizeof(alphabet) - 1)];

			switch (rng() % 3) {
			case 0: /* replace */
				if (len)
					doc[at] = c;
				break;
			case 1: /* insert */
				if (len + 1 < sizeof(doc)) {
					memmove(doc + at + 1, doc + at,
						len - at);
					doc[at] = c;
					len++;
				}
				break;
			default: /* delete */
				if (len) {
					memmove(doc + at, doc + at + 1,
						len - at - 1);
					len--;
				}
				break;
			}
		}
		if (parse_exact(&d, &copy, doc, len, NULL, 0) == 0) {
			accepted++;
			r = render(&d, 0);
			parse_ok(&d2, r);
			r2 = render(&d2, 0);
			assert_string_equal(r, r2);
			free(r);
			free(r2);
			json_doc_fini(&d2);
		}
		json_doc_fini(&d);
		free(copy);
	}
	/* the test must exercise both outcomes */
	assert_true(accepted > 100);
	assert_true(accepted < 19900);
}

/* ---- merge ------------------------------------------------------------ */

static int merge(const char *base, const char *overlay, struct buf *out,
		 char *err)
{
	return json_merge_objects(base, strlen(base), overlay, strlen(overlay),
				  out, err, TEST_ERR_MAX);
}

static void test_merge(void **state)
{
	static const struct {
		const char *base, *overlay, *out;
	} cases[] = {
	    /* replace keeps base position, add appends in overlay order */
	    {"{\"a\":1,\"b\":2,\"c\":3}", "{\"b\":20,\"d\":4,\"e\":5}",
	     "{\"a\":1,\"b\":20,\"c\":3,\"d\":4,\"e\":5}"},
	    {"{}", "{\"x\":[1,{\"y\":null}]}", "{\"x\":[1,{\"y\":null}]}"},
	    {"{\"x\":1}", "{}", "{\"x\":1}"},
	    {"{}", "{}", "{}"},
	    /* shallow: nested objects are replaced wholesale */
	    {"{\"o\":{\"a\":1,\"b\":2}}", "{\"o\":{\"c\":3}}",
	     "{\"o\":{\"c\":3}}"},
	    /* type changes allowed */
	    {"{\"v\":\"s\"}", "{\"v\":[true]}", "{\"v\":[true]}"},
	    /* keys compared after unescaping, both sides */
	    {"{\"\\u0061\":1,\"caf\xc3\xa9\":2}",
	     "{\"a\":10,\"caf\\u00e9\":20}", "{\"a\":10,\"caf\xc3\xa9\":20}"},
	    /* a key that is a prefix of another is a different key */
	    {"{\"ab\":1,\"a\":2}", "{\"a\":3}", "{\"ab\":1,\"a\":3}"},
	    {"{\"a\":1}", "{\"ab\":2}", "{\"a\":1,\"ab\":2}"},
	    {"{\"a\\u00e9\":1}", "{\"a\":2}", "{\"a\xc3\xa9\":1,\"a\":2}"},
	    /* duplicates collapse to the first occurrence */
	    {"{\"a\":1,\"a\":2,\"b\":3}", "{\"c\":4,\"c\":5,\"a\":6,\"a\":7}",
	     "{\"a\":6,\"b\":3,\"c\":4}"},
	    /* whitespace and escapes normalised */
	    {" { \"s\" : \"\\/\\u0041\" } ", " { \"t\" : \"\\n\" } ",
	     "{\"s\":\"/A\",\"t\":\"\\n\"}"},
	};
	char err[TEST_ERR_MAX];
	struct buf b;

	(void)state;
	buf_init(&b, TEST_BUF_MAX);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		buf_reset(&b);
		assert_int_equal(
		    merge(cases[k].base, cases[k].overlay, &b, err), 0);
		assert_string_equal(b.base, cases[k].out);
		assert_int_equal(parse_rc(b.base), 0);
	}
	buf_fini(&b);
}

static void test_merge_errors(void **state)
{
	static const struct {
		const char *base, *overlay, *err_prefix;
		int rc;
	} cases[] = {
	    {"[]", "{}", "base: not an object", -EINVAL},
	    {"{}", "1", "overlay: not an object", -EINVAL},
	    {"\"{}\"", "{}", "base: not an object", -EINVAL},
	    {"{}", "null", "overlay: not an object", -EINVAL},
	    {"{", "{}", "base: unexpected end of input", -EINVAL},
	    {"{\"a\":1", "{}", "base: unterminated object", -EINVAL},
	    {"{}", "{\"a\":}", "overlay: unexpected character", -EINVAL},
	    {"{}", "", "overlay: empty document", -EINVAL},
	};
	char err[TEST_ERR_MAX];
	struct buf b;
	char *deep;

	(void)state;
	buf_init(&b, TEST_BUF_MAX);
	assert_int_equal(buf_puts(&b, "keep"), 0);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		assert_int_equal(
		    merge(cases[k].base, cases[k].overlay, &b, err),
		    cases[k].rc);
		assert_memory_equal(err, cases[k].err_prefix,
				    strlen(cases[k].err_prefix));
		assert_string_equal(b.base, "keep");
	}
	deep = nest(JSON_DEPTH_MAX + 1, true);
	assert_int_equal(merge("{}", deep, &b, err), -E2BIG);
	free(deep);
	buf_fini(&b);

	/* output bound: out unchanged */
	buf_init(&b, 16);
	assert_int_equal(buf_puts(&b, "keep"), 0);
	assert_int_equal(merge("{\"a\":1}", "{\"b\":2}", &b, err), -ENOSPC);
	assert_string_equal(b.base, "keep");
	buf_reset(&b);
	assert_int_equal(merge("{\"a\":1}", "{\"b\":2}", &b, err), 0);
	assert_string_equal(b.base, "{\"a\":1,\"b\":2}");
	buf_fini(&b);
}

/* ---- writer ----------------------------------------------------------- */

static void test_writer_basic(void **state)
{
	const char *raw = " [1, {\"r\": true}] ";
	struct json_writer w;
	struct buf b;
	struct json_doc d;

	(void)state;
	buf_init(&b, TEST_BUF_MAX);
	jw_init(&w, &b);
	jw_object_begin(&w);
	jw_key(&w, "name");
	jw_string(&w, "node-1");
	jw_key(&w, "port");
	jw_int(&w, 7946);
	jw_key(&w, "neg");
	jw_int(&w, LLONG_MIN);
	jw_key(&w, "load");
	jw_double(&w, 0.25);
	jw_key(&w, "up");
	jw_bool(&w, true);
	jw_key(&w, "down");
	jw_bool(&w, false);
	jw_key(&w, "none");
	jw_null(&w);
	jw_key(&w, "nil");
	jw_string(&w, NULL);
	jw_key(&w, "tags");
	jw_array_begin(&w);
	jw_string(&w, "a");
	jw_array_begin(&w);
	jw_array_end(&w);
	jw_object_begin(&w);
	jw_object_end(&w);
	jw_int(&w, 1);
	jw_array_end(&w);
	jw_key_n(&w, "k\0z", 3);
	jw_raw(&w, raw, strlen(raw));
	jw_object_end(&w);
	assert_int_equal(jw_finish(&w), 0);
	assert_string_equal(
	    b.base,
	    "{\"name\":\"node-1\",\"port\":7946,"
	    "\"neg\":-9223372036854775808,\"load\":0.25,\"up\":true,"
	    "\"down\":false,\"none\":null,\"nil\":null,"
	    "\"tags\":[\"a\",[],{},1],\"k\\u0000z\":[1, {\"r\": true}]}");
	parse_ok(&d, b.base);
	json_doc_fini(&d);

	/* scalar top-level values */
	buf_reset(&b);
	jw_init(&w, &b);
	jw_int(&w, -5);
	assert_int_equal(jw_finish(&w), 0);
	assert_string_equal(b.base, "-5");
	buf_fini(&b);
}

static void test_writer_hostile_strings(void **state)
{
	static const struct {
		const char *in;
		size_t n;
		const char *out;
	} cases[] = {
	    {S("\"quoted\" \\back\\"), "\"\\\"quoted\\\" \\\\back\\\\\""},
	    {S("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\""},
	    {S("\x01\x1f\x7f"), "\"\\u0001\\u001f\\u007f\""},
	    {S("a\0b"), "\"a\\u0000b\""},
	    {S("\0"), "\"\\u0000\""},
	    {S(""), "\"\""},
	    {S("</script>/"), "\"</script>/\""},
	    /* valid multibyte passes through */
	    {S("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"),
	     "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\""},
	    /* invalid UTF-8 -> U+FFFD per maximal subpart */
	    {S("\xff"), "\"\xef\xbf\xbd\""},
	    {S("a\x80"
	       "b"),
	     "\"a\xef\xbf\xbd"
	     "b\""},
	    {S("\xc3"), "\"\xef\xbf\xbd\""},
	    {S("\xe2\x82"), "\"\xef\xbf\xbd\""},
	    {S("\xe2\x82x"), "\"\xef\xbf\xbdx\""},
	    {S("\xf0\x9f\x98"), "\"\xef\xbf\xbd\""},
	    {S("\xc0\xaf"), "\"\xef\xbf\xbd\xef\xbf\xbd\""},
	    {S("\xed\xa0\x80"), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    {S("\xf4\x90\x80\x80"),
	     "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
	    {S("\xc3\""), "\"\xef\xbf\xbd\\\"\""},
	    {S("\xe2\x82\n"), "\"\xef\xbf\xbd\\n\""},
	};
	struct json_writer w;
	struct buf b;
	struct json_doc d;
	size_t n;
	char *s;

	(void)state;
	buf_init(&b, TEST_BUF_MAX);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		buf_reset(&b);
		jw_init(&w, &b);
		jw_string_n(&w, cases[k].in, cases[k].n);
		assert_int_equal(jw_finish(&w), 0);
		if (strcmp(b.base, cases[k].out) != 0)
			fail_msg("case %zu: got '%s'", k, b.base);
		parse_ok(&d, b.base);
		assert_int_equal(json_type(&d, 0), JSON_STRING);
		json_doc_fini(&d);
	}
	/* the same string as a key */
	buf_reset(&b);
	jw_init(&w, &b);
	jw_object_begin(&w);
	jw_key_n(&w, "\"\0\xff", 3);
	jw_int(&w, 1);
	jw_object_end(&w);
	assert_int_equal(jw_finish(&w), 0);
	assert_string_equal(b.base, "{\"\\\"\\u0000\xef\xbf\xbd\":1}");
	parse_ok(&d, b.base);
	json_doc_fini(&d);

	/* valid UTF-8 without NUL round-trips exactly through get_string */
	buf_reset(&b);
	jw_init(&w, &b);
	jw_string(&w, "tab\there \"q\" \\ \x01 caf\xc3\xa9 \xf0\x9f\x98\x80");
	assert_int_equal(jw_finish(&w), 0);
	parse_ok(&d, b.base);
	s = get_str(&d, 0, &n);
	assert_string_equal(
	    s, "tab\there \"q\" \\ \x01 caf\xc3\xa9 \xf0\x9f\x98\x80");
	free(s);
	json_doc_fini(&d);
	buf_fini(&b);
}

/* Random byte strings: output always parses and is already canonical. */
static void test_writer_random_strings(void **state)
{
	unsigned char in[64];
	struct json_writer w;
	struct buf b;
	struct json_doc d;
	char *r;

	(void)state;
	rng_state = 0x243f6a8885a308d3ULL;
	buf_init(&b, TEST_BUF_MAX);
	for (int iter = 0; iter < 20000; iter++) {
		size_t n = rng() % sizeof(in);

		for (size_t k = 0; k < n; k++) {
			uint64_t r64 = rng();

			/* bias towards UTF-8 lead/continuation bytes */
			in[k] =
			    (r64 & 3)
				? (unsigned char)(r64 >> 8)
				: (unsigned char)(0x80 | ((r64 >> 8) & 0x7f));
		}
		buf_reset(&b);
		jw_init(&w, &b);
		jw_array_begin(&w);
		jw_string_n(&w, (const char *)in, n);
		jw_array_end(&w);
		assert_int_equal(jw_finish(&w), 0);
		if (json_parse(&d, b.base, b.len, NULL, 0) != 0)
			fail_msg("writer output does not parse: '%s'", b.base);
		r = render(&d, 0);
		assert_string_equal(r, b.base);
		free(r);
		json_doc_fini(&d);
	}
	buf_fini(&b);
}

static void test_writer_misuse(void **state)
{
	struct json_writer w;
	struct buf b;
	size_t len;

	(void)state;
	buf_init(&b, TEST_BUF_MAX);
#define EXPECT_MISUSE(rc, ...)                                                 \
	do {                                                                   \
		buf_reset(&b);                                                 \
		jw_init(&w, &b);                                               \
		__VA_ARGS__;                                                   \
		assert_int_equal(jw_finish(&w), (rc));                         \
	} while (0)

	EXPECT_MISUSE(-EINVAL, jw_int(&w, 1); jw_int(&w, 2));
	EXPECT_MISUSE(-EINVAL, jw_object_begin(&w); jw_object_end(&w);
		      jw_array_begin(&w));
	EXPECT_MISUSE(-EINVAL, jw_key(&w, "top"));
	EXPECT_MISUSE(-EINVAL, jw_array_begin(&w); jw_key(&w, "k"));
	EXPECT_MISUSE(-EINVAL, jw_object_begin(&w); jw_int(&w, 1));
	EXPECT_MISUSE(-EINVAL, jw_object_begin(&w); jw_key(&w, "a");
		      jw_key(&w, "b"));
	EXPECT_MISUSE(-EINVAL, jw_object_begin(&w); jw_key(&w, "a");
		      jw_object_end(&w));
	EXPECT_MISUSE(-EINVAL, jw_object_begin(&w); jw_array_end(&w));
	EXPECT_MISUSE(-EINVAL, jw_array_begin(&w); jw_object_end(&w));
	EXPECT_MISUSE(-EINVAL, jw_array_end(&w));
	EXPECT_MISUSE(-EINVAL, jw_object_end(&w));
	EXPECT_MISUSE(-EINVAL, jw_array_begin(&w));
	EXPECT_MISUSE(-EINVAL, jw_object_begin(&w); jw_key(&w, "a"));
	EXPECT_MISUSE(-EINVAL, (void)0);
	EXPECT_MISUSE(-EINVAL, jw_object_begin(&w); jw_key(&w, NULL));
	EXPECT_MISUSE(-EINVAL, jw_object_begin(&w); jw_key_n(&w, NULL, 1));
	EXPECT_MISUSE(-EINVAL, jw_raw(&w, "[1,]", 4));
	EXPECT_MISUSE(-EINVAL, jw_raw(&w, "1 2", 3));
	EXPECT_MISUSE(-EINVAL, jw_raw(&w, "", 0));
	EXPECT_MISUSE(-EINVAL, jw_raw(&w, NULL, 3));
	EXPECT_MISUSE(-EINVAL, jw_raw(&w, "\"\xff\"", 3));
	EXPECT_MISUSE(0, jw_raw(&w, "  {\"a\" : [ ] }\n", 15));
	assert_string_equal(b.base, "{\"a\" : [ ] }");

	/* depth: JSON_DEPTH_MAX ok, one more is -E2BIG; raw counts too */
	EXPECT_MISUSE(
	    0, for (int k = 0; k < JSON_DEPTH_MAX; k++) jw_array_begin(&w);
	    for (int k = 0; k < JSON_DEPTH_MAX; k++) jw_array_end(&w));
	EXPECT_MISUSE(-E2BIG, for (int k = 0; k <= JSON_DEPTH_MAX; k++)
				  jw_array_begin(&w));
	EXPECT_MISUSE(
	    0, for (int k = 0; k < JSON_DEPTH_MAX - 1; k++) jw_array_begin(&w);
	    jw_raw(&w, "[1]", 3);
	    for (int k = 0; k < JSON_DEPTH_MAX - 1; k++) jw_array_end(&w));
	EXPECT_MISUSE(-E2BIG, for (int k = 0; k < JSON_DEPTH_MAX - 1; k++)
				  jw_array_begin(&w);
		      jw_raw(&w, "[[1]]", 5));

	/* errors stick: nothing more is written, the first error is kept */
	buf_reset(&b);
	jw_init(&w, &b);
	jw_array_begin(&w);
	jw_object_end(&w);
	len = b.len;
	jw_int(&w, 1);
	jw_string(&w, "x");
	jw_array_end(&w);
	for (int k = 0; k <= JSON_DEPTH_MAX; k++)
		jw_array_begin(&w);
	assert_int_equal(b.len, len);
	assert_int_equal(jw_finish(&w), -EINVAL);
	assert_int_equal(jw_finish(&w), -EINVAL);

	jw_init(&w, NULL);
	jw_int(&w, 1);
	assert_int_equal(jw_finish(&w), -EINVAL);
#undef EXPECT_MISUSE
	buf_fini(&b);
}

static void test_writer_bound(void **state)
{
	struct json_writer w;
	struct buf b;
	size_t len;

	(void)state;
	buf_init(&b, 16);
	jw_init(&w, &b);
	jw_array_begin(&w);
	jw_string(&w, "0123456789");
	assert_int_equal(w.err, 0);
	jw_string(&w, "abcdef");
	len = b.len;
	assert_true(len <= 16);
	jw_int(&w, 1);
	jw_array_end(&w);
	assert_int_equal(b.len, len);
	assert_int_equal(jw_finish(&w), -ENOSPC);
	buf_fini(&b);

	/* every numeric writer hits the bound too */
	buf_init(&b, 3);
	jw_init(&w, &b);
	jw_int(&w, 12345);
	assert_int_equal(jw_finish(&w), -ENOSPC);
	buf_reset(&b);
	jw_init(&w, &b);
	jw_double(&w, 0.125);
	assert_int_equal(jw_finish(&w), -ENOSPC);
	buf_reset(&b);
	jw_init(&w, &b);
	jw_raw(&w, "true", 4);
	assert_int_equal(jw_finish(&w), -ENOSPC);
	buf_reset(&b);
	jw_init(&w, &b);
	jw_string(&w, "\x01");
	assert_int_equal(jw_finish(&w), -ENOSPC);
	buf_reset(&b);
	jw_init(&w, &b);
	jw_bool(&w, true);
	assert_int_equal(jw_finish(&w), -ENOSPC);
	buf_reset(&b);
	jw_init(&w, &b);
	jw_int(&w, 123);
	assert_int_equal(jw_finish(&w), 0);
	assert_string_equal(b.base, "123");
	buf_fini(&b);
}

static void test_jw_double(void **state)
{
	static const struct {
		double v;
		const char *out;
	} cases[] = {
	    {5.2, "5.2"},
	    {30, "30"},
	    {0.1, "0.1"},
	    {1e300, "1e+300"},
	    {-2.5, "-2.5"},
	    {0, "0"},
	    {-0.0, "-0"},
	    {0.1 + 0.2, "0.30000000000000004"},
	    {1.0 / 3.0, "0.3333333333333333"},
	    {123456789012345678.0, "1.2345678901234568e+17"},
	    {5e-324, "4.94065645841247e-324"},
	    {1.7976931348623157e308, "1.7976931348623157e+308"},
	    {1e21, "1e+21"},
	    {9007199254740993.0, "9007199254740992"},
	};
	const double nonfinite[] = {NAN, -NAN, INFINITY, -INFINITY};
	struct json_writer w;
	struct buf b;
	struct json_doc d;
	double v;

	(void)state;
	buf_init(&b, TEST_BUF_MAX);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		buf_reset(&b);
		jw_init(&w, &b);
		jw_double(&w, cases[k].v);
		assert_int_equal(jw_finish(&w), 0);
		assert_string_equal(b.base, cases[k].out);
		/* and it reads back bit-exactly */
		parse_ok(&d, b.base);
		assert_int_equal(json_get_number(&d, 0, &v), 0);
		assert_memory_equal(&v, &cases[k].v, sizeof(v));
		json_doc_fini(&d);
	}
	for (size_t k = 0; k < sizeof(nonfinite) / sizeof(nonfinite[0]); k++) {
		buf_reset(&b);
		jw_init(&w, &b);
		jw_double(&w, nonfinite[k]);
		assert_int_equal(jw_finish(&w), 0);
		assert_string_equal(b.base, "null");
	}
	/* random doubles round-trip through text */
	rng_state = 0x13198a2e03707344ULL;
	for (int iter = 0; iter < 10000; iter++) {
		uint64_t bits = rng();
		double x;

		memcpy(&x, &bits, sizeof(x));
		if (!isfinite(x))
			continue;
		buf_reset(&b);
		jw_init(&w, &b);
		jw_double(&w, x);
		assert_int_equal(jw_finish(&w), 0);
		parse_ok(&d, b.base);
		assert_int_equal(json_get_number(&d, 0, &v), 0);
		assert_memory_equal(&v, &x, sizeof(v));
		json_doc_fini(&d);
	}
	buf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_scalars),
	    cmocka_unit_test(test_parse_scalar_values),
	    cmocka_unit_test(test_parse_nested),
	    cmocka_unit_test(test_parse_valid_edges),
	    cmocka_unit_test(test_parse_null_and_fini),
	    cmocka_unit_test(test_depth_bound),
	    cmocka_unit_test(test_token_bound),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_malformed_nul_bytes),
	    cmocka_unit_test(test_error_messages),
	    cmocka_unit_test(test_truncated_prefixes),
	    cmocka_unit_test(test_obj_get_escaped_keys),
	    cmocka_unit_test(test_iteration),
	    cmocka_unit_test(test_get_string),
	    cmocka_unit_test(test_get_number),
	    cmocka_unit_test(test_get_int64),
	    cmocka_unit_test(test_render),
	    cmocka_unit_test(test_render_subtree),
	    cmocka_unit_test(test_mutation_roundtrip),
	    cmocka_unit_test(test_merge),
	    cmocka_unit_test(test_merge_errors),
	    cmocka_unit_test(test_writer_basic),
	    cmocka_unit_test(test_writer_hostile_strings),
	    cmocka_unit_test(test_writer_random_strings),
	    cmocka_unit_test(test_writer_misuse),
	    cmocka_unit_test(test_writer_bound),
	    cmocka_unit_test(test_jw_double),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
