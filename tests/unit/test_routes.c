/* Unit tests: the api's route table and error envelope (src/api/routes.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <http_parser.h>
#include <stdio.h>
#include <string.h>

/* The module itself, to walk its table. */
#include "../../src/api/routes.c"

/* A request path for a route: its pattern with "{...}" replaced by n1. */
static void concrete_path(const char *pattern, char *out, size_t cap)
{
	const char *brace = strchr(pattern, '{');
	if (!brace) {
		snprintf(out, cap, "%s", pattern);
		return;
	}
	snprintf(out, cap, "%.*sn1", (int)(brace - pattern), pattern);
}

static void test_table_check(void **state)
{
	(void)state;
	char msg[160] = "";
	int rc = route_table_check(msg, sizeof(msg));
	if (rc)
		fail_msg("%s", msg);
}

/* The invariants again, spelled out row by row, so a table edit that
 * route_table_check() missed still fails here. */
static void test_table_walk(void **state)
{
	(void)state;
	for (int r = 0; r < ROUTE_UNKNOWN; r++) {
		const struct route *rt = &route_table[r];
		assert_non_null(rt->path);
		assert_int_equal(rt->path[0], '/');
		assert_string_equal(route_name((enum route_id)r), rt->path);
		assert_in_range(rt->nmethods, 1, ROUTE_METHODS_MAX);
		for (int o = r + 1; o < ROUTE_UNKNOWN; o++)
			assert_string_not_equal(rt->path, route_table[o].path);
		for (size_t i = 0; i < rt->nmethods; i++) {
			const struct route_method *rm = &rt->methods[i];
			/* the Allow header names it */
			assert_non_null(
			    strstr(rt->allow, http_method_str(rm->method)));
			if (rt->answer == ROUTE_ANSWER_JSON)
				assert_non_null(rm->render);
			if (rt->answer != ROUTE_ANSWER_STREAM)
				assert_non_null(rm->build);
			if (rm->flags & ROUTE_WRITE) {
				assert_int_not_equal(rm->method, HTTP_GET);
				assert_false(rm->flags & ROUTE_CACHEABLE);
				assert_false(rt->flags & ROUTE_CACHEABLE);
			} else {
				assert_int_equal(rm->method, HTTP_GET);
			}
		}
		/* GET, POST, DELETE, OPTIONS: every method Allow names other
		 * than OPTIONS has a handler. */
		size_t commas = 0;
		for (const char *p = rt->allow; *p; p++)
			commas += *p == ',';
		assert_int_equal(commas, rt->nmethods);
		assert_non_null(strstr(rt->allow, "OPTIONS"));
	}
	assert_string_equal(route_name(ROUTE_UNKNOWN), "unknown");
	assert_string_equal(route_name(ROUTE_MAX), "unknown");
}

/* Every route's path matches it with each of its methods, with the row's
 * flags; a method it does not take is a 405 with its Allow list. */
static void test_match_every_route(void **state)
{
	(void)state;
	for (int r = 0; r < ROUTE_UNKNOWN; r++) {
		const struct route *rt = &route_table[r];
		char path[128];
		struct route_match m;
		concrete_path(rt->path, path, sizeof(path));
		for (size_t i = 0; i < rt->nmethods; i++) {
			const struct route_method *rm = &rt->methods[i];
			route_match(rm->method, path, strlen(path), &m);
			assert_int_equal(m.route, r);
			assert_true(m.method_ok);
			assert_int_equal(m.flags, rt->flags | rm->flags);
			assert_int_equal(m.answer, rt->answer);
			assert_string_equal(m.allow, rt->allow);
			if (strchr(rt->path, '{')) {
				assert_string_equal(m.id, "n1");
				assert_true(m.id_ok);
			}
			/* one trailing slash is the same route */
			strcat(path, "/");
			route_match(rm->method, path, strlen(path), &m);
			assert_int_equal(m.route, r);
			path[strlen(path) - 1] = '\0';
		}
		route_match(HTTP_PUT, path, strlen(path), &m);
		assert_int_equal(m.route, r);
		assert_false(m.method_ok);
		assert_string_equal(m.allow, rt->allow);
	}
}

static void test_match_unknown(void **state)
{
	(void)state;
	static const char *const paths[] = {
	    "/",
	    "/api",
	    "/api/cluster/",
	    "/api/cluster/nodesx",
	    "/api/cluster/nodes/a/b",
	    "/api/cluster/heartbeat/",
	    "/metricsx",
	    "//api/cluster/nodes",
	};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct route_match m;
		route_match(HTTP_GET, paths[i], strlen(paths[i]), &m);
		assert_int_equal(m.route, ROUTE_UNKNOWN);
		assert_true(m.method_ok);
		assert_int_equal(m.flags, 0);
		assert_string_equal(m.allow, "");
	}
	/* an id over NODE_ID_MAX is no route; a bad alphabet is a 400 */
	char longid[128];
	snprintf(longid, sizeof(longid), "/api/cluster/nodes/%0*d",
		 NODE_ID_MAX + 1, 0);
	struct route_match m;
	route_match(HTTP_GET, longid, strlen(longid), &m);
	assert_int_equal(m.route, ROUTE_UNKNOWN);
	route_match(HTTP_GET, "/api/cluster/nodes/a%20b", 24, &m);
	assert_int_equal(m.route, ROUTE_NODE);
	assert_false(m.id_ok);
}

/* Every method with a builder builds a request from a minimal valid
 * input; the stream has none and is refused as no route. */
static void test_build_every_route(void **state)
{
	(void)state;
	static const char body[] = "{\"url\":\"http://127.0.0.1:4402\"}";
	for (int r = 0; r < ROUTE_MAX; r++) {
		const struct route *rt = &route_table[r];
		char path[128];
		concrete_path(rt->path, path, sizeof(path));
		size_t n = rt->nmethods ? rt->nmethods : 1;
		for (size_t i = 0; i < n; i++) {
			int method =
			    rt->nmethods ? rt->methods[i].method : HTTP_GET;
			struct route_match m;
			route_match(method, path, strlen(path), &m);
			Ps__Request req;
			struct api_error e;
			int rc = route_build_request(
			    &m, "", 0, body, strlen(body), 4096, &req, &e);
			if (r == ROUTE_UNKNOWN ||
			    rt->answer == ROUTE_ANSWER_STREAM) {
				assert_int_equal(rc, -EINVAL);
				assert_int_equal(e.status, 404);
			} else {
				assert_int_equal(rc, 0);
				assert_int_not_equal(
				    req.body_case, PS__REQUEST__BODY__NOT_SET);
			}
			route_request_fini(&req);
		}
	}
}

/* The envelope, byte for byte as tests/system expect it. */
static void test_error_envelope(void **state)
{
	(void)state;
	struct api_error e;
	struct buf b;
	buf_init(&b, 4096);

	api_error_set(&e, 400, "VALIDATION_ERROR", "%s is required", "url");
	snprintf(e.field, sizeof(e.field), "url");
	assert_int_equal(route_render_error(&e, &b), 0);
	assert_string_equal(b.base,
			    "{\"success\":false,\"error\":\"Bad Request\","
			    "\"message\":\"url is required\","
			    "\"code\":\"VALIDATION_ERROR\","
			    "\"details\":{\"field\":\"url\"}}");

	buf_reset(&b);
	api_error_set(&e, 409, "NOT_COORDINATOR", "go \"there\"");
	strcpy(e.details, "{\"coordinatorUrl\":\"http://c:1\"}");
	assert_int_equal(route_render_error(&e, &b), 0);
	assert_string_equal(b.base,
			    "{\"success\":false,\"error\":\"Conflict\","
			    "\"message\":\"go \\\"there\\\"\","
			    "\"code\":\"NOT_COORDINATOR\","
			    "\"details\":{\"coordinatorUrl\":\"http://c:1\"}}");

	buf_reset(&b);
	api_error_set(&e, 503, "MEMBERSHIP_UNAVAILABLE", "down");
	assert_int_equal(route_render_error(&e, &b), 0);
	assert_string_equal(b.base, "{\"success\":false,\"error\":\"Service "
				    "Unavailable\",\"message\":\"down\","
				    "\"code\":\"MEMBERSHIP_UNAVAILABLE\","
				    "\"details\":{}}");

	/* the same renderer as the HTTP layer's own errors */
	buf_reset(&b);
	assert_int_equal(http_error_render(&b, 413, "PAYLOAD_TOO_LARGE", "big",
					   3, "{\"limit\":1}"),
			 0);
	assert_string_equal(b.base,
			    "{\"success\":false,\"error\":\"Payload Too "
			    "Large\",\"message\":\"big\","
			    "\"code\":\"PAYLOAD_TOO_LARGE\","
			    "\"details\":{\"limit\":1}}");
	buf_fini(&b);
}

/* Membership sends codes; the api alone turns them into HTTP statuses. */
static void test_error_statuses(void **state)
{
	(void)state;
	assert_int_equal(route_error_status("VALIDATION_ERROR"), 400);
	assert_int_equal(route_error_status("NODE_NOT_FOUND"), 404);
	assert_int_equal(route_error_status("NOT_COORDINATOR"), 409);
	assert_int_equal(route_error_status("CONFLICT"), 409);
	assert_int_equal(route_error_status("STORAGE_UNAVAILABLE"), 503);
	assert_int_equal(route_error_status("REGISTRY_FULL"), 503);
	assert_int_equal(route_error_status("OVERLOADED"), 503);
	assert_int_equal(route_error_status("REPLY_TOO_LARGE"), 500);
	assert_int_equal(route_error_status("NO_SUCH_CODE"), 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table_check),
	    cmocka_unit_test(test_table_walk),
	    cmocka_unit_test(test_match_every_route),
	    cmocka_unit_test(test_match_unknown),
	    cmocka_unit_test(test_build_every_route),
	    cmocka_unit_test(test_error_envelope),
	    cmocka_unit_test(test_error_statuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
