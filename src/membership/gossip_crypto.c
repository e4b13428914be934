/* gossip_crypto — sealed gossip datagrams; see
 * include/proxystone/gossip_crypto.h. */
#include "proxystone/gossip_crypto.h"
#include "proxystone/bytes.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES

_Static_assert(GOSSIP_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
	       "key length");
_Static_assert(GOSSIP_SEAL_OVERHEAD ==
		   1 + NONCE_LEN + GOSSIP_SEAL_HDR_LEN + TAG_LEN,
	       "overhead");
/* A sealed datagram is always longer than the notice answering it. */
_Static_assert(GOSSIP_AUTH_NOTICE_LEN < GOSSIP_SEAL_OVERHEAD, "notice size");
/* Keyring files are private: owner read/write only. */
#define KEYFILE_MODE 0600

static int ready(void)
{
	/* sodium_init() is idempotent and thread-safe; < 0 means unusable. */
	return sodium_init() < 0 ? -EIO : 0;
}

int gossip_keyring_parse(struct gossip_keyring *ring, const char *text,
			 char *err, size_t errlen)
{
	memset(ring, 0, sizeof(*ring));
	const char *p = text;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		if (!*p)
			break;
		size_t n = strcspn(p, ", ");
		if (ring->n == GOSSIP_KEYS_MAX) {
			snprintf(err, errlen, "more than %d keys",
				 GOSSIP_KEYS_MAX);
			return -EINVAL;
		}
		size_t got = 0;
		if (n != 2 * GOSSIP_KEY_LEN ||
		    sodium_hex2bin(ring->keys[ring->n], GOSSIP_KEY_LEN, p, n,
				   NULL, &got, NULL) != 0 ||
		    got != GOSSIP_KEY_LEN) {
			snprintf(
			    err, errlen,
			    "key %zu is not %d hex digits (32 bytes; make one with: head -c32 /dev/urandom | xxd -p -c64)",
			    ring->n + 1, 2 * GOSSIP_KEY_LEN);
			sodium_memzero(ring, sizeof(*ring));
			return -EINVAL;
		}
		ring->n++;
		p += n;
	}
	/* Text that names no key must not turn encryption off silently. */
	if (ring->n == 0 && *text) {
		snprintf(err, errlen, "no key in the keyring");
		return -EINVAL;
	}
	return 0;
}

size_t gossip_keyring_count(const char *text)
{
	size_t n = 0;
	for (const char *p = text; *p; p++)
		n += *p != ',' && *p != ' ' &&
		     (p == text || p[-1] == ',' || p[-1] == ' ');
	return n;
}

int gossip_seal(const struct gossip_keyring *ring,
		const struct gossip_seal_hdr *hdr, const uint8_t *pt,
		size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	if (ready())
		return -EIO;
	if (ring->n == 0 || cap < GOSSIP_SEAL_OVERHEAD ||
	    len > cap - GOSSIP_SEAL_OVERHEAD)
		return -EMSGSIZE;
	out[0] = GOSSIP_SEAL_VERSION;
	randombytes_buf(out + 1, NONCE_LEN);
	/* Header and datagram are laid out where the ciphertext goes and
	 * encrypted in place (libsodium allows c == m). */
	uint8_t *m = out + 1 + NONCE_LEN;
	memcpy(m, hdr->sender, GOSSIP_SENDER_LEN);
	put_be64(m + GOSSIP_SENDER_LEN, hdr->boot);
	put_be64(m + GOSSIP_SENDER_LEN + 8, hdr->seq);
	put_be64(m + GOSSIP_SENDER_LEN + 16, hdr->sent_ms);
	memcpy(m + GOSSIP_SEAL_HDR_LEN, pt, len);
	unsigned long long clen;
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	    m, &clen, m, GOSSIP_SEAL_HDR_LEN + len, out, 1, NULL, out + 1,
	    ring->keys[0]);
	*out_len = 1 + NONCE_LEN + (size_t)clen;
	return 0;
}

int gossip_open(const struct gossip_keyring *ring, const uint8_t *in,
		size_t len, struct gossip_seal_hdr *hdr, uint8_t *out,
		size_t cap, size_t *out_len)
{
	if (ready())
		return -EIO;
	if (len < GOSSIP_SEAL_OVERHEAD || in[0] != GOSSIP_SEAL_VERSION ||
	    cap < len - 1 - NONCE_LEN - TAG_LEN)
		return -EBADMSG;
	/* The version byte is authenticated too (additional data). */
	for (size_t k = 0; k < ring->n; k++) {
		unsigned long long mlen;
		if (crypto_aead_xchacha20poly1305_ietf_decrypt(
			out, &mlen, NULL, in + 1 + NONCE_LEN,
			len - 1 - NONCE_LEN, in, 1, in + 1,
			ring->keys[k]) == 0) {
			memcpy(hdr->sender, out, GOSSIP_SENDER_LEN);
			hdr->boot = get_be64(out + GOSSIP_SENDER_LEN);
			hdr->seq = get_be64(out + GOSSIP_SENDER_LEN + 8);
			hdr->sent_ms = get_be64(out + GOSSIP_SENDER_LEN + 16);
			*out_len = (size_t)mlen - GOSSIP_SEAL_HDR_LEN;
			memmove(out, out + GOSSIP_SEAL_HDR_LEN, *out_len);
			return 0;
		}
	}
	return -EBADMSG;
}

bool gossip_looks_sealed(const uint8_t *buf, size_t len)
{
	/* Version 1 was 41 bytes of overhead; anything shorter is noise. */
	return len >= 1 + NONCE_LEN + TAG_LEN && buf[0] >= 1 &&
	       buf[0] <= GOSSIP_SEAL_VERSION;
}

void gossip_key_generate(char hex[2 * GOSSIP_KEY_LEN + 1])
{
	uint8_t k[GOSSIP_KEY_LEN];
	if (ready()) {
		/* libsodium unusable: no key rather than a weak one. */
		hex[0] = '\0';
		return;
	}
	randombytes_buf(k, sizeof(k));
	sodium_bin2hex(hex, 2 * GOSSIP_KEY_LEN + 1, k, sizeof(k));
	sodium_memzero(k, sizeof(k));
}

/* Writes a new keyring file to a unique temporary name next to path and
 * links it into place. 0 (created), -EEXIST (someone else's is there) or
 * another -errno. */
static int keyfile_create(const char *path, char *err, size_t errlen)
{
	char dir_buf[GOSSIP_KEYFILE_MAX], tmp[GOSSIP_KEYFILE_MAX];
	char key[2 * GOSSIP_KEY_LEN + 1], body[GOSSIP_KEYFILE_MAX];
	snprintf(dir_buf, sizeof(dir_buf), "%s", path);
	const char *dir = dirname(dir_buf);
	gossip_key_generate(key);
	if (!key[0]) {
		snprintf(err, errlen, "%s: libsodium is unusable", path);
		return -EIO;
	}
	int blen = snprintf(
	    body, sizeof(body),
	    "# proxystone gossip keyring (created at first start).\n"
	    "# Keys: 64 hex digits each, comma- or newline-separated, the first encrypts.\n"
	    "%s\n",
	    key);
	sodium_memzero(key, sizeof(key));
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%08x", path, (long)getpid(),
		 (unsigned)randombytes_random());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		      KEYFILE_MODE);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(e));
		sodium_memzero(body, sizeof(body));
		return -e;
	}
	int rc = 0;
	if (write(fd, body, (size_t)blen) != blen || fsync(fd) < 0)
		rc = -(errno ? errno : EIO);
	sodium_memzero(body, sizeof(body));
	if (close(fd) < 0 && !rc)
		rc = -errno;
	/* link() never replaces: exactly one of several racing creators
	 * wins, and the file it publishes is already complete on disk. */
	if (!rc && link(tmp, path) < 0)
		rc = -errno;
	unlink(tmp);
	if (rc && rc != -EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", path,
			 strerror(-rc));
		return rc;
	}
	if (!rc) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd); /* the new name survives a crash */
			close(dfd);
		}
	}
	return rc;
}

int gossip_keyring_file_load(const char *path, char *text, size_t cap,
			     bool *created, char *err, size_t errlen)
{
	*created = false;
	if (cap < GOSSIP_RING_TEXT_MAX ||
	    strlen(path) >= GOSSIP_KEYFILE_MAX - 32) {
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		int rc = keyfile_create(path, err, errlen);
		if (rc && rc != -EEXIST)
			return rc;
		*created = rc == 0;
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(err, errlen, "%s: not a regular file", path);
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		close(fd);
		snprintf(
		    err, errlen,
		    "%s: mode %04o lets group or others read or change the gossip keys; chmod 600 it",
		    path, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	char buf[GOSSIP_KEYFILE_MAX + 1];
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0 || n > GOSSIP_KEYFILE_MAX) {
		snprintf(err, errlen, "%s: %s", path,
			 n < 0 ? strerror(errno) : "larger than 4096 bytes");
		sodium_memzero(buf, sizeof(buf));
		return n < 0 ? -EIO : -EINVAL;
	}
	buf[n] = '\0';
	/* Comments out, newlines and spaces become separators. */
	size_t o = 0;
	bool comment = false;
	int rc = 0;
	for (ssize_t i = 0; i < n && !rc; i++) {
		char c = buf[i];
		if (c == '\n')
			comment = false;
		if (comment)
			continue;
		if (c == '#') {
			comment = true;
			continue;
		}
		if (c == '\n' || c == '\r' || c == '\t' || c == ' ')
			c = ',';
		if (c == ',' && (o == 0 || text[o - 1] == ','))
			continue;
		if (o + 1 >= cap)
			rc = -EINVAL;
		else
			text[o++] = c;
	}
	while (o > 0 && text[o - 1] == ',')
		o--;
	text[o] = '\0';
	sodium_memzero(buf, sizeof(buf));
	char why[160] = "too many keys";
	struct gossip_keyring ring;
	if (!rc)
		rc = gossip_keyring_parse(&ring, text, why, sizeof(why));
	if (!rc && ring.n == 0) {
		snprintf(why, sizeof(why), "no key in the file");
		rc = -EINVAL;
	}
	sodium_memzero(&ring, sizeof(ring));
	if (rc) {
		sodium_memzero(text, cap);
		snprintf(err, errlen, "%s: malformed keyring: %s", path, why);
		return -EINVAL;
	}
	return 0;
}
