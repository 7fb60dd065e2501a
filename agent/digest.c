/*
 * digest — SHA-256 as lower-case hex (see digest.h), on mbedTLS 2.28.
 *
 * Only the _ret variants of mbedTLS's SHA-256 calls are used: the others
 * are deprecated in 2.28 and cannot report a failure (which the software
 * implementation never has, but an accelerated one may). The first
 * failure latches, so a digest is either right or visibly "".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/error.h>
#include <mbedtls/sha256.h>

#include "digest.h"
#include "log.h"

#define LOG_MODULE "digest"

struct digest {
	mbedtls_sha256_context ctx;
	err_t err;		/* first failure, until reset */
	bool done;		/* finished: hex is final */
	char hex[DIGEST_HEX_LEN + 1];
};

/* Logs an mbedTLS failure with its own text; what names the step. */
static err_t tls_fail(struct digest *d, const char *what, int ret)
{
	char msg[128];

	mbedtls_strerror(ret, msg, sizeof(msg));
	LOGE("SHA-256 %s: %s", what, msg);
	d->err = ERR_TLS;
	return d->err;
}

static void start(struct digest *d)
{
	int ret;

	mbedtls_sha256_init(&d->ctx);
	d->err = ERR_OK;
	d->done = false;
	d->hex[0] = '\0';
	ret = mbedtls_sha256_starts_ret(&d->ctx, 0);
	if (ret)
		tls_fail(d, "start", ret);
}

struct digest *digest_new(void)
{
	struct digest *d = calloc(1, sizeof(*d));

	if (!d) {
		LOGE("out of memory");
		return NULL;
	}
	start(d);
	return d;
}

void digest_free(struct digest *d)
{
	if (!d)
		return;
	mbedtls_sha256_free(&d->ctx);
	free(d);
}

void digest_reset(struct digest *d)
{
	if (!d)
		return;
	mbedtls_sha256_free(&d->ctx);
	start(d);
}

err_t digest_update(struct digest *d, const void *p, size_t n)
{
	int ret;

	if (!d || (!p && n)) {
		LOGE("digest_update: no digest or no data");
		return ERR_INVAL;
	}
	if (d->err)
		return d->err;
	/* A finished context would silently hash on from its padded state. */
	if (d->done) {
		LOGE("digest_update after digest_hex (reset first)");
		return ERR_STATE;
	}
	if (!n)
		return ERR_OK;
	ret = mbedtls_sha256_update_ret(&d->ctx, p, n);
	if (ret)
		return tls_fail(d, "update", ret);
	return ERR_OK;
}

void digest_hex(struct digest *d, char out[DIGEST_HEX_LEN + 1])
{
	static const char xd[] = "0123456789abcdef";
	unsigned char h[32];
	int ret, i;

	if (!d) {
		out[0] = '\0';
		return;
	}
	if (!d->done && !d->err) {
		ret = mbedtls_sha256_finish_ret(&d->ctx, h);
		if (ret) {
			tls_fail(d, "finish", ret);
		} else {
			for (i = 0; i < 32; i++) {
				d->hex[2 * i] = xd[h[i] >> 4];
				d->hex[2 * i + 1] = xd[h[i] & 0xf];
			}
			d->hex[DIGEST_HEX_LEN] = '\0';
		}
	}
	d->done = true;
	if (d->err)
		d->hex[0] = '\0';
	memcpy(out, d->hex, DIGEST_HEX_LEN + 1);
}

err_t digest_file(const char *path, uint64_t limit,
		  char out[DIGEST_HEX_LEN + 1], uint64_t *bytes)
{
	struct digest d;
	unsigned char *buf = NULL;
	uint64_t got = 0;
	struct stat st;
	size_t want;
	ssize_t r;
	int fd = -1;
	err_t e;

	out[0] = '\0';
	if (bytes)
		*bytes = 0;
	start(&d);
	if (d.err) {
		e = d.err;
		goto out;
	}
	if (!path) {
		LOGE("digest_file: no path");
		e = ERR_INVAL;
		goto out;
	}
	/* O_NONBLOCK: a FIFO put in the file's place must not hang us. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		e = errno == ENOENT ? ERR_NOTFOUND : ERR_IO;
		LOGE("%s: cannot open: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		LOGE("%s: not a regular file", path);
		e = ERR_IO;
		goto out;
	}
	/* On the heap: the agent's threads need not have 64 KiB of stack. */
	buf = malloc(DIGEST_CHUNK);
	if (!buf) {
		LOGE("%s: out of memory", path);
		e = ERR_NOMEM;
		goto out;
	}
	while (got < limit) {
		want = limit - got < DIGEST_CHUNK ? (size_t)(limit - got) :
						     DIGEST_CHUNK;
		r = read(fd, buf, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			LOGE("%s: cannot read: %s", path, strerror(errno));
			e = ERR_IO;
			goto out;
		}
		if (r == 0)
			break;
		e = digest_update(&d, buf, (size_t)r);
		if (e)
			goto out;
		got += (uint64_t)r;
	}
	digest_hex(&d, out);
	if (d.err) {
		e = d.err;
		goto out;
	}
	if (bytes)
		*bytes = got;
	e = ERR_OK;
out:
	if (e)
		out[0] = '\0';
	if (fd >= 0)
		close(fd);
	free(buf);
	mbedtls_sha256_free(&d.ctx);
	return e;
}

bool digest_hex_valid(const char *s)
{
	size_t i;

	if (!s)
		return false;
	for (i = 0; i < DIGEST_HEX_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[DIGEST_HEX_LEN] == '\0';
}
