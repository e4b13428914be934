/* tmpdir — per-test temporary directories; see tmpdir.h. */
#include "tmpdir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int tmpdir_make(char dir[TMPDIR_NAME_MAX], const char *tag)
{
	int n = snprintf(dir, TMPDIR_NAME_MAX, "/tmp/ps-%s-XXXXXX", tag);
	if (n < 0 || n >= TMPDIR_NAME_MAX)
		return -1;
	return mkdtemp(dir) ? 0 : -1;
}

static int rm_entry(const char *p, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(p) : unlink(p);
}

int tmpdir_remove(const char *dir)
{
	return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
