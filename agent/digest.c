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
#include <stdio.h>
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

struct digest_reader {
	struct digest *d;	/* the caller's */
	int fd;
	uint64_t limit, got;
	unsigned char *buf;	/* DIGEST_CHUNK */
	char path[4096];
};

err_t digest_reader_open(const char *path, uint64_t limit, struct digest *into,
			 struct digest_reader **out)
{
	struct digest_reader *r;
	struct stat st;
	err_t e;

	*out = NULL;
	if (!path || !into) {
		LOGE("digest_file: no path");
		return ERR_INVAL;
	}
	r = calloc(1, sizeof(*r));
	/* On the heap: the agent's threads need not have 64 KiB of stack. */
	if (r) {
		r->fd = -1;
		r->buf = malloc(DIGEST_CHUNK);
	}
	if (!r || !r->buf) {
		LOGE("%s: out of memory", path);
		e = ERR_NOMEM;
		goto fail;
	}
	r->d = into;
	r->limit = limit;
	snprintf(r->path, sizeof(r->path), "%s", path);
	/* O_NONBLOCK: a FIFO put in the file's place must not hang us. */
	r->fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (r->fd < 0) {
		e = errno == ENOENT ? ERR_NOTFOUND : ERR_IO;
		LOGE("%s: cannot open: %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(r->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		LOGE("%s: not a regular file", path);
		e = ERR_IO;
		goto fail;
	}
	*out = r;
	return ERR_OK;
fail:
	digest_reader_free(r);
	return e;
}

err_t digest_reader_step(struct digest_reader *r, uint64_t max, bool *done)
{
	uint64_t stop = max > r->limit - r->got ? r->limit : r->got + max;
	size_t want;
	ssize_t n;
	err_t e;

	*done = false;
	while (r->got < stop) {
		want = stop - r->got < DIGEST_CHUNK ? (size_t)(stop - r->got) :
						       DIGEST_CHUNK;
		n = read(r->fd, r->buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			LOGE("%s: cannot read: %s", r->path, strerror(errno));
			return ERR_IO;
		}
		if (n == 0) {
			*done = true;	/* shorter than the limit: all of it */
			return ERR_OK;
		}
		e = digest_update(r->d, r->buf, (size_t)n);
		if (e)
			return e;
		r->got += (uint64_t)n;
	}
	*done = r->got == r->limit;
	return ERR_OK;
}

uint64_t digest_reader_bytes(const struct digest_reader *r)
{
	return r->got;
}

void digest_reader_free(struct digest_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r->buf);
	free(r);
}

err_t digest_file(const char *path, uint64_t limit,
		  char out[DIGEST_HEX_LEN + 1], uint64_t *bytes)
{
	struct digest *d = digest_new();
	struct digest_reader *r = NULL;
	bool done = false;
	err_t e;

	out[0] = '\0';
	if (bytes)
		*bytes = 0;
	if (!d)
		return ERR_NOMEM;
	e = d->err;
	if (!e)
		e = digest_reader_open(path, limit, d, &r);
	if (!e)
		e = digest_reader_step(r, UINT64_MAX, &done);
	if (!e) {
		digest_hex(d, out);
		e = d->err;
	}
	if (!e && bytes)
		*bytes = digest_reader_bytes(r);
	if (e)
		out[0] = '\0';
	digest_reader_free(r);
	digest_free(d);
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
