/* Unit tests: sealed gossip datagrams and the keyring (gossip_crypto.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proxystone/gossip_crypto.h"
#include "../lib/tmpdir.h"

static const struct gossip_seal_hdr HDR = {
    .sender = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
    .boot = 0x0102030405060708ull,
    .seq = 42,
    .sent_ms = 0x1122334455667788ull,
};

#define K1 "1111111111111111111111111111111111111111111111111111111111111111"
#define K2 "2222222222222222222222222222222222222222222222222222222222222222"

static void ring(struct gossip_keyring *r, const char *text)
{
	char err[128];
	assert_int_equal(gossip_keyring_parse(r, text, err, sizeof(err)), 0);
}

static void test_parse(void **state)
{
	(void)state;
	struct gossip_keyring r;
	char err[256];
	ring(&r, "");
	assert_int_equal(r.n, 0);
	ring(&r, K1 "," K2);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.keys[0][0], 0x11);
	assert_int_equal(r.keys[1][31], 0x22);
	assert_int_equal(gossip_keyring_parse(&r, "abc", err, sizeof(err)),
			 -EINVAL);
	assert_null(strstr(err, "abc")); /* keys are never echoed */
	assert_int_equal(gossip_keyring_parse(&r, K1 "0", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(
	    gossip_keyring_parse(&r, K1 "," K2 "x", err, sizeof(err)), -EINVAL);
	char many[9 * 65 + 1] = "";
	for (int i = 0; i < 9; i++) {
		strcat(many, K1);
		strcat(many, ",");
	}
	assert_int_equal(gossip_keyring_parse(&r, many, err, sizeof(err)),
			 -EINVAL);
}

static void test_roundtrip_and_tamper(void **state)
{
	(void)state;
	struct gossip_keyring r;
	ring(&r, K1);
	uint8_t pt[300], sealed[400], out[400];
	for (size_t i = 0; i < sizeof(pt); i++)
		pt[i] = (uint8_t)(i * 7);
	size_t slen, olen;
	struct gossip_seal_hdr h;
	assert_int_equal(gossip_seal(&r, &HDR, pt, sizeof(pt), sealed,
				     sizeof(sealed), &slen),
			 0);
	assert_int_equal(slen, sizeof(pt) + GOSSIP_SEAL_OVERHEAD);
	assert_int_equal(sealed[0], GOSSIP_SEAL_VERSION);
	assert_true(gossip_looks_sealed(sealed, slen));
	assert_false(gossip_looks_sealed(pt, sizeof(pt)));
	assert_int_equal(
	    gossip_open(&r, sealed, slen, &h, out, sizeof(out), &olen), 0);
	assert_int_equal(olen, sizeof(pt));
	assert_memory_equal(out, pt, sizeof(pt));
	/* The header comes back authenticated, and it is not in the clear. */
	assert_memory_equal(h.sender, HDR.sender, GOSSIP_SENDER_LEN);
	assert_true(h.boot == HDR.boot && h.seq == HDR.seq &&
		    h.sent_ms == HDR.sent_ms);
	assert_null(memmem(sealed, slen, HDR.sender, 4));
	/* Every single flipped bit, anywhere, is caught. */
	for (size_t i = 0; i < slen; i++) {
		sealed[i] ^= 0x01;
		assert_int_equal(
		    gossip_open(&r, sealed, slen, &h, out, sizeof(out), &olen),
		    -EBADMSG);
		sealed[i] ^= 0x01;
	}
	/* Every truncation too. */
	for (size_t n = 0; n < slen; n++)
		assert_int_equal(
		    gossip_open(&r, sealed, n, &h, out, sizeof(out), &olen),
		    -EBADMSG);
	/* Two seals of the same text differ (random nonces). */
	uint8_t again[400];
	size_t alen;
	assert_int_equal(
	    gossip_seal(&r, &HDR, pt, sizeof(pt), again, sizeof(again), &alen),
	    0);
	assert_memory_not_equal(again, sealed, slen);
}

static void test_keyring_rotation(void **state)
{
	(void)state;
	struct gossip_keyring old, next, other;
	ring(&old, K1);
	ring(&next, K2 "," K1); /* sends with K2, still accepts K1 */
	ring(&other, K2);
	uint8_t pt[] = "hello", s1[128], s2[128], out[128];
	size_t l1, l2, ol;
	struct gossip_seal_hdr h;
	assert_int_equal(
	    gossip_seal(&old, &HDR, pt, sizeof(pt), s1, sizeof(s1), &l1), 0);
	assert_int_equal(
	    gossip_seal(&next, &HDR, pt, sizeof(pt), s2, sizeof(s2), &l2), 0);
	assert_int_equal(gossip_open(&next, s1, l1, &h, out, sizeof(out), &ol),
			 0);
	assert_int_equal(gossip_open(&other, s1, l1, &h, out, sizeof(out), &ol),
			 -EBADMSG);
	assert_int_equal(gossip_open(&old, s2, l2, &h, out, sizeof(out), &ol),
			 -EBADMSG);
	assert_int_equal(gossip_open(&other, s2, l2, &h, out, sizeof(out), &ol),
			 0);
}

static void test_bounds(void **state)
{
	(void)state;
	struct gossip_keyring r, empty;
	ring(&r, K1);
	ring(&empty, "");
	uint8_t pt[100] = {0}, out[200], big[200];
	size_t n;
	struct gossip_seal_hdr h;
	assert_int_equal(gossip_seal(&r, &HDR, pt, sizeof(pt), out,
				     sizeof(pt) + GOSSIP_SEAL_OVERHEAD - 1, &n),
			 -EMSGSIZE);
	assert_int_equal(
	    gossip_seal(&empty, &HDR, pt, sizeof(pt), out, sizeof(out), &n),
	    -EMSGSIZE);
	assert_int_equal(
	    gossip_seal(&r, &HDR, pt, sizeof(pt), out, sizeof(out), &n), 0);
	uint8_t small[10];
	assert_int_equal(gossip_open(&r, out, n, &h, small, sizeof(small), &n),
			 -EBADMSG);
	/* Version 1 (no freshness) and version 2 (no send time: replays
	 * of what a sender addressed to others) are refused, but still
	 * recognized as sealed, so the log can say "older format". */
	size_t sealed_len = n;
	for (uint8_t v = 1; v < GOSSIP_SEAL_VERSION; v++) {
		out[0] = v;
		assert_true(gossip_looks_sealed(out, sealed_len));
		assert_int_equal(
		    gossip_open(&r, out, sealed_len, &h, big, sizeof(big), &n),
		    -EBADMSG);
	}
	out[0] = GOSSIP_SEAL_VERSION + 1;
	assert_false(gossip_looks_sealed(out, sealed_len));
	/* The notice is shorter than any sealed datagram. */
	assert_true(GOSSIP_AUTH_NOTICE_LEN < GOSSIP_SEAL_OVERHEAD);
	assert_false(gossip_looks_sealed((const uint8_t *)GOSSIP_AUTH_NOTICE,
					 GOSSIP_AUTH_NOTICE_LEN));
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_keyring_file(void **state)
{
	(void)state;
	char dir[TMPDIR_NAME_MAX], path[TMPDIR_NAME_MAX + 64];
	char text[GOSSIP_RING_TEXT_MAX], again[GOSSIP_RING_TEXT_MAX];
	char err[512];
	bool created;
	assert_int_equal(tmpdir_make(dir, "keyring"), 0);
	snprintf(path, sizeof(path), "%s/gossip.keyring", dir);
	/* Absent: created with one key, 0600, then read back the same. */
	assert_int_equal(gossip_keyring_file_load(path, text, sizeof(text),
						  &created, err, sizeof(err)),
			 0);
	assert_true(created);
	assert_int_equal(strlen(text), 2 * GOSSIP_KEY_LEN);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(gossip_keyring_file_load(path, again, sizeof(again),
						  &created, err, sizeof(err)),
			 0);
	assert_false(created);
	assert_string_equal(text, again);
	/* Comments, newlines, spaces; primary first. */
	write_file(path, "# ring\n" K2 "  # new primary\n\n" K1 ",\n", 0600);
	assert_int_equal(gossip_keyring_file_load(path, text, sizeof(text),
						  &created, err, sizeof(err)),
			 0);
	assert_string_equal(text, K2 "," K1);
	assert_int_equal(gossip_keyring_count(text), 2);
	assert_int_equal(gossip_keyring_count(K1 ",," K2 ","), 2);
	assert_int_equal(gossip_keyring_count(""), 0);
	/* Readable by others: refused, naming the file, no key echoed. */
	write_file(path, K1 "\n", 0644);
	assert_int_equal(gossip_keyring_file_load(path, text, sizeof(text),
						  &created, err, sizeof(err)),
			 -EPERM);
	assert_non_null(strstr(err, path));
	write_file(path, K1 "\n", 0640);
	assert_int_equal(gossip_keyring_file_load(path, text, sizeof(text),
						  &created, err, sizeof(err)),
			 -EPERM);
	/* Malformed: refused, the bad text not echoed. */
	write_file(path, K1 "zz\n", 0600);
	assert_int_equal(gossip_keyring_file_load(path, text, sizeof(text),
						  &created, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "malformed"));
	assert_null(strstr(err, "1111"));
	write_file(path, "# only a comment\n", 0600);
	assert_int_equal(gossip_keyring_file_load(path, text, sizeof(text),
						  &created, err, sizeof(err)),
			 -EINVAL);
	/* A directory that does not exist: a clear error. */
	snprintf(path, sizeof(path), "%s/none/gossip.keyring", dir);
	assert_true(gossip_keyring_file_load(path, text, sizeof(text), &created,
					     err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "none"));
	tmpdir_remove(dir);
}

/* Several processes create the same absent file at once: one wins, all
 * end with the same key, and no temporary file is left behind. */
static void test_keyring_file_race(void **state)
{
	(void)state;
	enum { RACERS = 8 };
	char dir[TMPDIR_NAME_MAX], path[TMPDIR_NAME_MAX + 64];
	assert_int_equal(tmpdir_make(dir, "keyring"), 0);
	snprintf(path, sizeof(path), "%s/gossip.keyring", dir);
	int fds[RACERS][2];
	pid_t pids[RACERS];
	for (int i = 0; i < RACERS; i++) {
		assert_int_equal(pipe(fds[i]), 0);
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			char text[GOSSIP_RING_TEXT_MAX], err[512];
			bool created;
			if (gossip_keyring_file_load(path, text, sizeof(text),
						     &created, err,
						     sizeof(err)))
				_exit(2);
			dprintf(fds[i][1], "%d %s", created ? 1 : 0, text);
			_exit(0);
		}
		close(fds[i][1]);
	}
	char first[GOSSIP_RING_TEXT_MAX + 4] = "";
	int creators = 0;
	for (int i = 0; i < RACERS; i++) {
		int status;
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		char got[GOSSIP_RING_TEXT_MAX + 4] = "";
		ssize_t n = read(fds[i][0], got, sizeof(got) - 1);
		close(fds[i][0]);
		assert_true(n > 2);
		creators += got[0] == '1';
		if (!first[0])
			snprintf(first, sizeof(first), "%s", got + 2);
		assert_string_equal(first, got + 2);
	}
	assert_int_equal(creators, 1);
	char cmd[TMPDIR_NAME_MAX + 64];
	snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1", dir);
	assert_int_equal(system(cmd), 0);
	tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_roundtrip_and_tamper),
	    cmocka_unit_test(test_keyring_rotation),
	    cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_keyring_file),
	    cmocka_unit_test(test_keyring_file_race),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
