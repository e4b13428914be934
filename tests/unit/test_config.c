/* Unit tests: config parsing (src/common/config.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxystone/config.h"
#include "proxystone/http.h"

static char path[64];

static void write_file(const char *text)
{
	strcpy(path, "/tmp/ps-config-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_defaults(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	config_defaults(&c);
	assert_int_equal(config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.api_port, 4401);
	assert_int_equal(c.gossip_port, 5401);
	assert_string_equal(c.cluster_id, "default-cluster");
	assert_string_equal(c.node_url, "http://127.0.0.1:4401");
	assert_string_equal(c.coordinator_url, "");
	assert_string_equal(c.socket_path, "var/proxystone/membership.sock");
	assert_true(c.heartbeat_interval == 30 && c.node_timeout == 60);
	assert_int_equal(c.conn_max, HTTP_CONN_MAX_DEFAULT);
	assert_int_equal(c.client_conn_max, HTTP_CLIENT_CONN_MAX_DEFAULT);
	assert_true(c.client_conn_max < c.conn_max);
}

static void test_file(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	config_defaults(&c);
	write_file("# a comment\n\nrole = worker   # trailing comment\n"
		   "  api_port=4402\ncluster_ip = 127.0.0.1:4401\n"
		   "node_timeout = 1.5\ncluster_enabled = false\n"
		   "data_dir = /tmp/x\nmax_connections_per_client = 8\n");
	assert_int_equal(config_load_file(&c, path, err, sizeof(err)), 0);
	assert_int_equal(config_finish(&c, err, sizeof(err)), 0);
	assert_int_equal(c.role, ROLE_WORKER);
	assert_int_equal(c.api_port, 4402);
	assert_string_equal(c.coordinator_url, "http://127.0.0.1:4401");
	assert_true(c.node_timeout == 1.5);
	assert_false(c.cluster_enabled);
	assert_string_equal(c.socket_path, "/tmp/x/membership.sock");
	assert_int_equal(c.client_conn_max, 8);
	unlink(path);
}

static void expect_error(const char *text, const char *needle)
{
	struct config c;
	char err[256] = "";
	config_defaults(&c);
	write_file(text);
	assert_int_equal(config_load_file(&c, path, err, sizeof(err)), -EINVAL);
	char want[128];
	snprintf(want, sizeof(want), "%s:%s", path, needle);
	if (!strstr(err, want))
		fail_msg("error '%s' does not contain '%s'", err, want);
	unlink(path);
}

static void test_errors_name_file_line_key(void **state)
{
	(void)state;
	expect_error("api_port = 4401\nbogus = 1\n", "2: bogus: unknown key");
	expect_error("\n\napi_port = 70000\n", "3: api_port");
	expect_error("api_port = 12ab\n", "1: api_port");
	expect_error("role = king\n", "1: role");
	expect_error("node_timeout = -1\n", "1: node_timeout");
	expect_error("node_timeout = nan\n", "1: node_timeout");
	expect_error("cluster_enabled = maybe\n", "1: cluster_enabled");
	expect_error("cluster_ip = nohostport\n", "1: cluster_ip");
	expect_error("cluster_id = has space\n", "1: cluster_id");
	expect_error("just words\n", "1: expected 'key = value'");
	expect_error("= 3\n", "1: missing key");
	expect_error("log_level = loud\n", "1: log_level");
	expect_error("max_connections_per_client = 0\n",
		     "1: max_connections_per_client");
	expect_error("max_connections_per_client = 65537\n",
		     "1: max_connections_per_client");
}

static void test_worker_needs_coordinator(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	config_defaults(&c);
	assert_int_equal(
	    config_set(&c, "role", "worker", "--role", err, sizeof(err)), 0);
	assert_int_equal(config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cluster_ip"));
}

static void test_flag_where(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	config_defaults(&c);
	assert_int_equal(
	    config_set(&c, "api_port", "x", "--port", err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "--port: api_port"));
}

static void test_long_line_and_missing_file(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	config_defaults(&c);
	char *big = malloc(CONFIG_LINE_MAX + 100);
	memset(big, 'a', CONFIG_LINE_MAX + 50);
	strcpy(big + CONFIG_LINE_MAX + 50, " = 1\n");
	write_file(big);
	free(big);
	assert_int_equal(config_load_file(&c, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "longer than"));
	unlink(path);
	assert_int_equal(
	    config_load_file(&c, "/nonexistent/x.conf", err, sizeof(err)),
	    -ENOENT);
}

static void test_socket_path_bound(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	char dir[200];
	memset(dir, 'd', sizeof(dir) - 1);
	dir[sizeof(dir) - 1] = '\0';
	dir[0] = '/';
	config_defaults(&c);
	assert_int_equal(
	    config_set(&c, "data_dir", dir, "f:1", err, sizeof(err)), 0);
	assert_int_equal(config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "socket_path"));
}

static void test_gossip_key_or_keyring_file(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	config_defaults(&c);
	assert_int_equal(config_set(&c, "gossip_keyring_file",
				    "var/gossip.keyring", "f:1", err,
				    sizeof(err)),
			 0);
	assert_int_equal(config_finish(&c, err, sizeof(err)), 0);
	assert_string_equal(c.gossip_keyring_file, "var/gossip.keyring");
	assert_int_equal(
	    config_set(
		&c, "gossip_key",
		"1111111111111111111111111111111111111111111111111111111111111111",
		"f:2", err, sizeof(err)),
	    0);
	assert_int_equal(config_finish(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "gossip_keyring_file"));
	assert_int_equal(
	    config_set(&c, "gossip_keyring_file", "", "f:3", err, sizeof(err)),
	    -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_file),
	    cmocka_unit_test(test_errors_name_file_line_key),
	    cmocka_unit_test(test_worker_needs_coordinator),
	    cmocka_unit_test(test_flag_where),
	    cmocka_unit_test(test_long_line_and_missing_file),
	    cmocka_unit_test(test_socket_path_bound),
	    cmocka_unit_test(test_gossip_key_or_keyring_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
