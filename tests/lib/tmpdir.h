/* tmpdir — a fresh directory per test, removed with everything in it. */
#ifndef PROXYSTONE_TEST_TMPDIR_H
#define PROXYSTONE_TEST_TMPDIR_H

/* Bytes a directory name needs: "/tmp/ps-<tag>-XXXXXX" with a short tag. */
#define TMPDIR_NAME_MAX 64

/* Creates /tmp/ps-<tag>-XXXXXX into dir. 0 or -1. */
int tmpdir_make(char dir[TMPDIR_NAME_MAX], const char *tag);
/* Removes dir and all below it. 0 or -1. */
int tmpdir_remove(const char *dir);

#endif
