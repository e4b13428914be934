/*
 * Unit tests for the supervisor's pure parts: backoff, the state × event
 * table, exit-status wording, $NOTIFY_SOCKET parsing, the process title,
 * and the command line (src/supervisor/main.c). Forking, signals and
 * shutdown order are exercised by the system tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/supervisor/supervisor.c"

/* main.c's main() becomes a plain function here; cmocka owns main(). */
#define main proxystone_main
int proxystone_main(int argc, char **argv);
#include "../../src/supervisor/main.c"
#undef main

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* The real entry points win when they are linked; until then these keep
 * the test linkable. Neither runs here. */
__attribute__((weak)) int api_main(const struct config *cfg, int sup_fd)
{
	(void)cfg;
	(void)sup_fd;
	return 0;
}

__attribute__((weak)) int membership_main(const struct config *cfg, int sup_fd)
{
	(void)cfg;
	(void)sup_fd;
	return 0;
}

/* ---- backoff ---- */

static void test_backoff_schedule(void **state)
{
	(void)state;
	struct backoff b = {0};
	const double want[] = {0, 0.25, 0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30};
	double now = 1000;
	bool entered;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		double d = backoff_next(&b, now, 0.1, &entered);
		assert_true(d == want[i]);
		assert_false(entered);
		now += d + 0.1; /* the child ran 0.1 s after each start */
	}
}

static void test_backoff_reset_after_long_run(void **state)
{
	(void)state;
	struct backoff b = {0};
	bool entered;
	double now = 0;
	for (int i = 0; i < 6; i++)
		now += backoff_next(&b, now, 1, &entered) + 1;
	assert_true(backoff_next(&b, now, 59.9, &entered) == 8);
	/* A run of BACKOFF_RESET_UPTIME proves the child healthy. */
	now += 8 + BACKOFF_RESET_UPTIME;
	assert_true(backoff_next(&b, now, BACKOFF_RESET_UPTIME, &entered) == 0);
	assert_true(backoff_next(&b, now + 1, 1, &entered) == BACKOFF_FIRST);
}

static void test_backoff_crash_loop(void **state)
{
	(void)state;
	struct backoff b = {0};
	bool entered;
	double now = 500;
	/* Ten restarts within a few seconds are still ordinary backoff. */
	for (int i = 0; i < CRASH_LOOP_RESTARTS; i++) {
		backoff_next(&b, now, 0, &entered);
		assert_false(entered);
		now += 0.5;
	}
	/* The eleventh inside the window is a crash loop, reported once. */
	assert_true(backoff_next(&b, now, 0, &entered) == BACKOFF_MAX);
	assert_true(entered);
	assert_true(backoff_next(&b, now + 30, 0, &entered) == BACKOFF_MAX);
	assert_false(entered);
	/* Leaving it takes one healthy run. */
	assert_true(
	    backoff_next(&b, now + 200, BACKOFF_RESET_UPTIME, &entered) == 0);
	assert_false(b.crash_loop);
}

static void test_backoff_slow_restarts_are_no_loop(void **state)
{
	(void)state;
	struct backoff b = {0};
	bool entered;
	/* Eleven restarts spread over more than the window. */
	for (int i = 0; i <= CRASH_LOOP_RESTARTS; i++) {
		backoff_next(&b, i * (CRASH_LOOP_WINDOW / 10 + 0.1), 0,
			     &entered);
		assert_false(entered);
	}
	assert_false(b.crash_loop);
}

/* ---- state × event table ---- */

static const struct transition *tr(enum sup_state s, enum sup_event e)
{
	return &table[s][e];
}

static void test_table_stopped_is_final(void **state)
{
	(void)state;
	for (int e = 0; e < E_COUNT; e++) {
		assert_int_equal(tr(S_STOPPED, e)->next, S_STOPPED);
		assert_int_equal(tr(S_STOPPED, e)->action, A_NONE);
	}
}

static void test_table_only_down_spawns(void **state)
{
	(void)state;
	for (int s = 0; s < S_COUNT; s++)
		for (int e = 0; e < E_COUNT; e++) {
			bool spawn = tr(s, e)->action == A_SPAWN;
			assert_int_equal(spawn, s == S_DOWN && e == E_DUE);
		}
	assert_int_equal(tr(S_DOWN, E_DUE)->next, S_STARTING);
}

static void test_table_exit(void **state)
{
	(void)state;
	/* A process that ends while wanted is restarted... */
	const enum sup_state running[] = {S_STARTING, S_READY, S_HUNG};
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(tr(running[i], E_EXIT)->next, S_DOWN);
		assert_int_equal(tr(running[i], E_EXIT)->action, A_EXITED);
	}
	/* ...one that ends while stopping is not. */
	assert_int_equal(tr(S_STOPPING, E_EXIT)->next, S_STOPPED);
	assert_int_equal(tr(S_STOPPING, E_EXIT)->action, A_REAPED);
	/* No process, no exit. */
	assert_int_equal(tr(S_DOWN, E_EXIT)->action, A_NONE);
}

static void test_table_spawned_is_not_ready(void **state)
{
	(void)state;
	assert_int_equal(tr(S_STARTING, E_READY_LINE)->next, S_READY);
	assert_int_equal(tr(S_STARTING, E_READY_LINE)->action, A_READY);
	/* A second newline changes nothing. */
	assert_int_equal(tr(S_READY, E_READY_LINE)->next, S_READY);
	assert_int_equal(tr(S_READY, E_READY_LINE)->action, A_NONE);
	assert_int_equal(tr(S_STARTING, E_FAILED)->next, S_DOWN);
	assert_int_equal(tr(S_STARTING, E_FAILED)->action, A_SCHEDULE);
}

static void test_table_hang(void **state)
{
	(void)state;
	assert_int_equal(tr(S_STARTING, E_SILENT)->action, A_HANG);
	assert_int_equal(tr(S_READY, E_SILENT)->action, A_HANG);
	assert_int_equal(tr(S_READY, E_SILENT)->next, S_HUNG);
	/* Already killed, or already on its stop timer: nothing more. */
	assert_int_equal(tr(S_HUNG, E_SILENT)->action, A_NONE);
	assert_int_equal(tr(S_STOPPING, E_SILENT)->action, A_NONE);
}

/* Whatever the state, E_STOP and then the exit of the process end in
 * S_STOPPED: shutdown always finishes. */
static void test_table_stop_always_finishes(void **state)
{
	(void)state;
	for (int s = 0; s < S_COUNT; s++) {
		enum sup_state cur = tr(s, E_STOP)->next;
		assert_true(cur == S_STOPPING || cur == S_STOPPED);
		if (cur == S_STOPPING) {
			assert_int_equal(tr(cur, E_STOP_TIMEOUT)->action,
					 A_KILL);
			cur = tr(cur, E_EXIT)->next;
		}
		assert_int_equal(cur, S_STOPPED);
	}
	/* A running child gets SIGTERM first, not SIGKILL. */
	assert_int_equal(tr(S_READY, E_STOP)->action, A_TERM);
	assert_int_equal(tr(S_STARTING, E_STOP)->action, A_TERM);
}

static void test_table_second_signal_kills(void **state)
{
	(void)state;
	const enum sup_state alive[] = {S_STARTING, S_READY, S_HUNG,
					S_STOPPING};
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(tr(alive[i], E_KILL)->next, S_STOPPING);
		assert_int_equal(tr(alive[i], E_KILL)->action, A_KILL);
	}
	assert_int_equal(tr(S_DOWN, E_KILL)->next, S_STOPPED);
}

static void test_timer_events(void **state)
{
	(void)state;
	assert_int_equal(state_timer_event(S_DOWN), E_DUE);
	assert_int_equal(state_timer_event(S_STARTING), E_SILENT);
	assert_int_equal(state_timer_event(S_READY), E_SILENT);
	assert_int_equal(state_timer_event(S_STOPPING), E_STOP_TIMEOUT);
	assert_int_equal(state_timer_event(S_HUNG), -1);
	assert_int_equal(state_timer_event(S_STOPPED), -1);
}

/* Shutdown order: api before membership; nobody touched while the api is
 * still on its way out. */
static void test_stop_order(void **state)
{
	(void)state;
	memset(&sup, 0, sizeof(sup));
	for (int i = 0; i < SUP_ROLE_MAX; i++) {
		sup.children[i].role = (enum sup_role)i;
		sup.children[i].fd = -1;
		sup.children[i].state = S_STOPPED;
	}
	sup.stopping = true;
	sup.children[SUP_ROLE_MEMBERSHIP].state = S_READY;
	sup.children[SUP_ROLE_API].state = S_STOPPING;
	assert_false(stop_next());
	assert_int_equal(sup.children[SUP_ROLE_MEMBERSHIP].state, S_READY);

	/* Children waiting for a restart are simply not restarted. */
	sup.children[SUP_ROLE_MEMBERSHIP].state = S_DOWN;
	sup.children[SUP_ROLE_API].state = S_DOWN;
	assert_true(isinf(child_deadline(&sup.children[SUP_ROLE_API])));
	assert_true(stop_next());
	assert_int_equal(sup.children[SUP_ROLE_MEMBERSHIP].state, S_STOPPED);
	assert_int_equal(sup.children[SUP_ROLE_API].state, S_STOPPED);
	memset(&sup, 0, sizeof(sup));
	sup.sigfd = -1;
}

/* ---- wording, names, addresses ---- */

static void test_describe_status(void **state)
{
	(void)state;
	char s[64];
	describe_status(1 << 8, s, sizeof(s));
	assert_string_equal(s, "exited with status 1");
	describe_status(SIGKILL, s, sizeof(s));
	assert_string_equal(s, "killed by signal 9 (SIGKILL)");
	describe_status(SIGSEGV | 0x80, s, sizeof(s));
	assert_string_equal(s, "killed by signal 11 (SIGSEGV), core dumped");
	describe_status(-1, s, sizeof(s));
	assert_string_equal(s, "vanished (no status)");
}

static void test_role_names(void **state)
{
	(void)state;
	assert_string_equal(sup_role_name(SUP_ROLE_MEMBERSHIP), "membership");
	assert_string_equal(sup_role_name(SUP_ROLE_API), "api");
	assert_string_equal(sup_role_name(SUP_ROLE_UI), "ui");
	assert_null(sup_role_name(-1));
	assert_null(sup_role_name(SUP_ROLE_MAX));
	for (int i = 0; i < SUP_ROLE_MAX; i++)
		assert_non_null(roles[i].name);
	/* Outside a supervisor: zeros, never NULL. */
	assert_non_null(sup_stats_get());
	assert_int_equal(sup_stats_get()->restarts[SUP_ROLE_API], 0);
}

static void test_notify_addr(void **state)
{
	(void)state;
	struct sockaddr_un a;
	socklen_t len;
	assert_int_equal(notify_addr_parse("@sd/notify", &a, &len), 0);
	assert_int_equal(a.sun_path[0], '\0');
	assert_memory_equal(a.sun_path + 1, "sd/notify", 9);
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 10);

	assert_int_equal(notify_addr_parse("/run/systemd/notify", &a, &len), 0);
	assert_string_equal(a.sun_path, "/run/systemd/notify");
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 20);

	assert_int_equal(notify_addr_parse("vsock:2:999", &a, &len),
			 -EAFNOSUPPORT);
	assert_int_equal(notify_addr_parse("@", &a, &len), -EAFNOSUPPORT);
	char longp[sizeof(a.sun_path) + 2];
	memset(longp, 'x', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(notify_addr_parse(longp, &a, &len), -ENAMETOOLONG);
}

/* ---- process title ---- */

static void test_title_in_argv_area(void **state)
{
	(void)state;
	char area[] = "bin/proxystone\0--port\0004401\0--config\0etc/a.conf";
	char *argv[] = {area, area + 15, area + 22, area + 27, area + 36, NULL};
	/* getopt_long permutes pointers; the span is still found. */
	char *tmp = argv[1];
	argv[1] = argv[3];
	argv[3] = tmp;
	char *saved_name = program_invocation_name;
	char *saved_short = program_invocation_short_name;
	title_set(5, argv, "proxystone: api (coordinator :4401)");
	assert_string_equal(area, "proxystone: api (coordinator :4401)");
	for (size_t i = strlen(area); i < sizeof(area); i++)
		assert_int_equal(area[i], '\0');
	assert_ptr_equal(argv[0], area);
	assert_null(argv[1]);
	assert_string_equal(program_invocation_name, "bin/proxystone");
	assert_string_equal(program_invocation_short_name, "proxystone");
	free(program_invocation_name);
	program_invocation_name = saved_name;
	program_invocation_short_name = saved_short;
}

static void test_title_truncated(void **state)
{
	(void)state;
	char area[] = "ps\0-x";
	char *argv[] = {area, area + 3, NULL};
	char *saved_name = program_invocation_name;
	char *saved_short = program_invocation_short_name;
	title_set(2, argv, "proxystone: membership");
	assert_string_equal(area, "proxy");
	free(program_invocation_name);
	program_invocation_name = saved_name;
	program_invocation_short_name = saved_short;
}

/* ---- command line ---- */

static void test_args(void **state)
{
	(void)state;
	struct args a;
	char err[MAIN_ERR_MAX];
	char *ok[] = {
	    "proxystone",   "--config",	  "x.conf", "--port", "4402",
	    "--cluster-ip", "h:4401",	  "--role", "worker", "--log-level",
	    "debug",	    "--data-dir", "/d",	    NULL};
	assert_int_equal(args_parse(13, ok, &a, err, sizeof(err)), 0);
	assert_string_equal(a.value[F_CONFIG], "x.conf");
	assert_string_equal(a.value[F_PORT], "4402");
	assert_string_equal(a.value[F_CLUSTER_IP], "h:4401");
	assert_string_equal(a.value[F_ROLE], "worker");
	assert_string_equal(a.value[F_LOG_LEVEL], "debug");
	assert_string_equal(a.value[F_DATA_DIR], "/d");
	assert_false(a.help || a.version);

	char *eq[] = {"proxystone", "--port=4403", "--version", NULL};
	assert_int_equal(args_parse(3, eq, &a, err, sizeof(err)), 0);
	assert_string_equal(a.value[F_PORT], "4403");
	assert_true(a.version);

	char *help[] = {"proxystone", "-h", NULL};
	assert_int_equal(args_parse(2, help, &a, err, sizeof(err)), 0);
	assert_true(a.help);

	char *unknown[] = {"proxystone", "--bogus", NULL};
	assert_int_equal(args_parse(2, unknown, &a, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "--bogus: unknown flag");

	char *missing[] = {"proxystone", "--port", NULL};
	assert_int_equal(args_parse(2, missing, &a, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "--port: missing value");

	char *extra[] = {"proxystone", "--help=yes", NULL};
	assert_int_equal(args_parse(2, extra, &a, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "--help takes no value");

	char *stray[] = {"proxystone", "stray", NULL};
	assert_int_equal(args_parse(2, stray, &a, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "unexpected argument 'stray'");
}

static void test_flags_override_file(void **state)
{
	(void)state;
	char path[] = "/tmp/ps-test-supervisor-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char text[] = "api_port = 4405\ndata_dir = /from/file\n";
	assert_int_equal(write(fd, text, sizeof(text) - 1),
			 (ssize_t)sizeof(text) - 1);
	close(fd);

	struct args a;
	char err[MAIN_ERR_MAX];
	char *argv[] = {"proxystone", "--config", path, "--port", "4409", NULL};
	assert_int_equal(args_parse(5, argv, &a, err, sizeof(err)), 0);
	struct config cfg;
	assert_int_equal(config_build(&a, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.api_port, 4409);
	assert_string_equal(cfg.data_dir, "/from/file");

	char *bad[] = {"proxystone", "--config", path, "--port", "nope", NULL};
	assert_int_equal(args_parse(5, bad, &a, err, sizeof(err)), 0);
	assert_int_equal(config_build(&a, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--port"));
	assert_non_null(strstr(err, "api_port"));
	unlink(path);
}

static void test_mkdir_p(void **state)
{
	(void)state;
	char base[] = "/tmp/ps-test-mkdir-XXXXXX";
	assert_non_null(mkdtemp(base));
	char path[CONFIG_PATH_MAX];
	char err[MAIN_ERR_MAX];
	snprintf(path, sizeof(path), "%s/a/b/c/", base);
	assert_int_equal(mkdir_p(path, DATA_DIR_MODE, err, sizeof(err)), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, DATA_DIR_MODE);
	/* Already there: fine. */
	assert_int_equal(mkdir_p(path, DATA_DIR_MODE, err, sizeof(err)), 0);

	char file[CONFIG_PATH_MAX];
	snprintf(file, sizeof(file), "%s/a/file", base);
	int fd = open(file, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(mkdir_p(file, DATA_DIR_MODE, err, sizeof(err)),
			 -ENOTDIR);

	char cmd[CONFIG_PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backoff_schedule),
	    cmocka_unit_test(test_backoff_reset_after_long_run),
	    cmocka_unit_test(test_backoff_crash_loop),
	    cmocka_unit_test(test_backoff_slow_restarts_are_no_loop),
	    cmocka_unit_test(test_table_stopped_is_final),
	    cmocka_unit_test(test_table_only_down_spawns),
	    cmocka_unit_test(test_table_exit),
	    cmocka_unit_test(test_table_spawned_is_not_ready),
	    cmocka_unit_test(test_table_hang),
	    cmocka_unit_test(test_table_stop_always_finishes),
	    cmocka_unit_test(test_table_second_signal_kills),
	    cmocka_unit_test(test_timer_events),
	    cmocka_unit_test(test_stop_order),
	    cmocka_unit_test(test_describe_status),
	    cmocka_unit_test(test_role_names),
	    cmocka_unit_test(test_notify_addr),
	    cmocka_unit_test(test_title_in_argv_area),
	    cmocka_unit_test(test_title_truncated),
	    cmocka_unit_test(test_args),
	    cmocka_unit_test(test_flags_override_file),
	    cmocka_unit_test(test_mkdir_p),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
