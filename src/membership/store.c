/* store — atomic checked snapshots; see include/proxystone/store.h. */
#include "proxystone/store.h"
#include "proxystone/bytes.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint32_t store_crc32(const void *data, size_t len)
{
	/* CRC-32 (IEEE 802.3, reflected 0xEDB88320), table built on first use.
	 */
	static uint32_t table[256];
	static int ready;
	if (!ready) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
		ready = 1;
	}
	const uint8_t *p = data;
	uint32_t c = 0xFFFFFFFFu;
	while (len--)
		c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int store_save(const char *path, const Ps__Snapshot *snap, char *err,
	       size_t errlen)
{
	size_t n = ps__snapshot__get_packed_size(snap);
	if (n > STORE_FILE_MAX - STORE_HEADER_LEN) {
		snprintf(err, errlen, "%s: snapshot of %zu bytes is too large",
			 path, n);
		return -EFBIG;
	}
	uint8_t *data = malloc(STORE_HEADER_LEN + n);
	if (!data) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	ps__snapshot__pack(snap, data + STORE_HEADER_LEN);
	memcpy(data, STORE_MAGIC, 4);
	put_be32(data + 4, STORE_FORMAT);
	put_be32(data + 8, (uint32_t)n);
	put_be32(data + 12, store_crc32(data + STORE_HEADER_LEN, n));

	char tmp[PATH_MAX], prev[PATH_MAX], prevtmp[PATH_MAX];
	if ((size_t)snprintf(prevtmp, sizeof(prevtmp), "%s.prev.tmp", path) >=
	    sizeof(prevtmp)) {
		snprintf(err, errlen, "snapshot path too long");
		free(data);
		return -ENAMETOOLONG;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	snprintf(prev, sizeof(prev), "%s.prev", path);
	const char *step = "open";
	int rc = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	step = "write";
	rc = write_all(fd, data, STORE_HEADER_LEN + n);
	if (!rc) {
		step = "fsync";
		rc = fsync(fd) < 0 ? -errno : 0;
	}
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		goto out;
	/* Keep the last good snapshot as a fallback; best effort. */
	unlink(prevtmp);
	if (link(path, prevtmp) == 0)
		rename(prevtmp, prev);
	step = "rename";
	if (rename(tmp, path) < 0) {
		rc = -errno;
		goto out;
	}
	step = "fsync directory";
	rc = fsync_dir(path);
out:
	if (rc) {
		snprintf(err, errlen, "%s: %s: %s", path, step, strerror(-rc));
		unlink(tmp);
	}
	free(data);
	return rc;
}

int store_load(const char *path, Ps__Snapshot **out, char *err, size_t errlen)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	if (st.st_size < STORE_HEADER_LEN || st.st_size > STORE_FILE_MAX) {
		close(fd);
		snprintf(err, errlen, "%s: size %lld is not a snapshot", path,
			 (long long)st.st_size);
		return -EBADMSG;
	}
	size_t size = (size_t)st.st_size;
	uint8_t *data = malloc(size);
	if (!data) {
		close(fd);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t r = read(fd, data + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	int rc = -EBADMSG;
	if (got != size) {
		snprintf(err, errlen, "%s: short read", path);
		rc = -EIO;
	} else if (memcmp(data, STORE_MAGIC, 4)) {
		snprintf(err, errlen, "%s: bad magic", path);
	} else if (get_be32(data + 4) != STORE_FORMAT) {
		snprintf(err, errlen, "%s: unknown format %u", path,
			 get_be32(data + 4));
	} else if (get_be32(data + 8) != size - STORE_HEADER_LEN) {
		snprintf(err, errlen, "%s: length %u but %zu payload bytes",
			 path, get_be32(data + 8), size - STORE_HEADER_LEN);
	} else if (get_be32(data + 12) !=
		   store_crc32(data + STORE_HEADER_LEN,
			       size - STORE_HEADER_LEN)) {
		snprintf(err, errlen, "%s: checksum mismatch", path);
	} else {
		*out = ps__snapshot__unpack(NULL, size - STORE_HEADER_LEN,
					    data + STORE_HEADER_LEN);
		if (*out)
			rc = 0;
		else
			snprintf(err, errlen, "%s: undecodable payload", path);
	}
	free(data);
	return rc;
}
