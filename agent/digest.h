/*
 * digest — SHA-256 as lower-case hex, of bytes or of (the start of) a file.
 *
 * The one hash of the protocol: upload and download checks (PROTOCOL.md
 * §3.3, §3.4) and the components of a signed manifest (§2.6). Every
 * failure is logged here, once, with the system's or mbedTLS's error text;
 * callers only propagate the err_t.
 */
#ifndef COMAGENT_DIGEST_H
#define COMAGENT_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define DIGEST_HEX_LEN	64		/* hex digits, without the NUL */
#define DIGEST_CHUNK	(64 * 1024)	/* bytes digest_file() reads at a time */

struct digest;

/* A running SHA-256, started. NULL (logged) when out of memory. */
struct digest *digest_new(void);
void digest_free(struct digest *d);

/*
 * Adds n bytes. ERR_INVAL for no digest or NULL data with n > 0,
 * ERR_STATE after digest_hex() until digest_reset(), ERR_TLS if mbedTLS
 * failed (the digest then stays failed until reset).
 */
err_t digest_update(struct digest *d, const void *p, size_t n);

/*
 * Finishes and writes the 64 lower-case hex digits and a NUL to out.
 * Calling it again gives the same text. A failed digest (or NULL) gives
 * "" — the failure was logged when it happened.
 */
void digest_hex(struct digest *d, char out[DIGEST_HEX_LEN + 1]);

/* Starts over, as from digest_new(). */
void digest_reset(struct digest *d);

/*
 * Hashes the first limit bytes of the regular file path (UINT64_MAX: all
 * of it), read DIGEST_CHUNK bytes at a time; a file shorter than limit is
 * hashed whole. *bytes (may be NULL) is the number of bytes hashed.
 * ERR_NOTFOUND if there is no such file, ERR_IO if it cannot be read or
 * is not a regular file, ERR_NOMEM, ERR_TLS; on failure out is "" and
 * *bytes 0.
 */
err_t digest_file(const char *path, uint64_t limit,
		  char out[DIGEST_HEX_LEN + 1], uint64_t *bytes);

/*
 * A file hashed a slice at a time into the caller's digest, so that a big
 * file does not hold the event loop: open, then step until *done.
 * digest_reader_open: as digest_file() for path (ERR_NOTFOUND, ERR_IO, not
 * a regular file, ERR_NOMEM; logged), the first limit bytes (UINT64_MAX:
 * all). digest_reader_step: reads and hashes up to max more bytes; *done
 * once limit bytes or the whole file are in. digest_reader_bytes: how many
 * so far.
 */
struct digest_reader;
err_t digest_reader_open(const char *path, uint64_t limit, struct digest *into,
			 struct digest_reader **out);
err_t digest_reader_step(struct digest_reader *r, uint64_t max, bool *done);
uint64_t digest_reader_bytes(const struct digest_reader *r);
void digest_reader_free(struct digest_reader *r);

/* Exactly 64 lower-case hex digits (how the protocol writes a SHA-256). */
bool digest_hex_valid(const char *s);

#endif
