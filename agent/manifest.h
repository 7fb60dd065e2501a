/*
 * manifest — the signed software manifest of PROTOCOL.md §2.6: the trusted
 * public keys (`[jobs] trusted_keys`), the check of COM's signature over
 * the manifest text, the strict parse of that text, and the numeric order
 * of dotted versions.
 *
 *   {"release":"12.0.1.0","profile":"linux","components":[
 *     {"name":"ipoffice-12.0.1.0.bin","version":"12.0.1.0",
 *      "size":10485760,"sha256":"…64 lower-case hex…"}]}
 *
 * The manifest arrives from the network and is trusted only once
 * manifest_verify() said so: verify first, parse second.
 *
 * The module does not log: a failure comes back as an err_t plus a short
 * ASCII reason in why (always NUL-terminated when whylen > 0; why may be
 * NULL) that the caller logs once and may send to COM as the job's
 * message. mbedTLS's and the system's own error texts are part of it.
 */
#ifndef COMAGENT_MANIFEST_H
#define COMAGENT_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MANIFEST_MAX_TEXT	4096	/* bytes of the manifest text */
#define MANIFEST_MAX_KEYS	8	/* trusted keys */
#define MANIFEST_MAX_KEY_FILE	16384	/* bytes of one key file */
#define MANIFEST_MAX_KEY_PATH	4095	/* bytes of one key file's path */
#define MANIFEST_MAX_SIG	160	/* bytes of the decoded signature */
#define MANIFEST_MAX_SIG_TEXT	1024	/* characters of its base64 */
#define MANIFEST_MAX_COMPONENTS	16
#define MANIFEST_MAX_NAME	128	/* bytes of a component's name */
#define MANIFEST_MAX_VERSION	32	/* bytes of a component's version */
#define MANIFEST_MAX_SIZE	(1ULL << 40)	/* bytes of one component */
/* A dotted version: 1..8 parts of 1..6 digits each (0..999999). */
#define MANIFEST_VERSION_PARTS	8
#define MANIFEST_MAX_RELEASE	55	/* 8 * 6 digits + 7 dots */

struct manifest_keys;

/*
 * Loads the trusted keys: list is a whitespace-separated list of paths to
 * PEM or DER public key files, each an EC key on P-256 (secp256r1).
 * ERR_INVAL: an empty list ("no trusted keys configured"), a path longer
 * than MANIFEST_MAX_KEY_PATH, a file that is not a public key
 * ("PATH: not a public key: <mbedTLS's text>") or not a P-256 one
 * ("PATH: not a P-256 key"). ERR_LIMIT: more than MANIFEST_MAX_KEYS keys,
 * a file bigger than MANIFEST_MAX_KEY_FILE. ERR_NOTFOUND: a missing file,
 * ERR_IO: an unreadable one ("PATH: cannot open: <strerror>").
 * ERR_NOMEM. On failure *out is NULL: one bad key fails the whole list.
 */
err_t manifest_keys_load(const char *list, struct manifest_keys **out,
			 char *why, size_t whylen);
size_t manifest_keys_count(const struct manifest_keys *k);
void manifest_keys_free(struct manifest_keys *k);

/*
 * Checks sig_b64, the base64 of a DER ECDSA signature, over the SHA-256 of
 * the len bytes of text exactly as received. ERR_OK when any trusted key
 * verifies it. ERR_PERM otherwise, with why one of
 *   signature is empty
 *   signature is not valid base64
 *   signature longer than 160 bytes           (also: its base64 text
 *                                              longer than 1024 characters)
 *   signature does not verify with any of the N trusted keys
 * ERR_INVAL for no keys, text or signature; ERR_LIMIT for a text longer
 * than MANIFEST_MAX_TEXT; ERR_NOMEM, ERR_TLS (mbedTLS failed otherwise).
 */
err_t manifest_verify(const struct manifest_keys *k, const char *text,
		      size_t len, const char *sig_b64, char *why,
		      size_t whylen);

/* One component; the strings live as long as their manifest. */
struct manifest_component {
	const char *name;	/* 1..128 of [A-Za-z0-9._-], not "." or ".." */
	const char *version;	/* 1..32 printable ASCII */
	uint64_t size;		/* bytes, 0..2^40 */
	const char *sha256;	/* 64 lower-case hex digits */
};

struct manifest;

/*
 * Parses the len bytes of a manifest text (no NUL needed), strictly: one
 * JSON object, nothing but whitespace after it, valid UTF-8, no NUL byte.
 * "release" (a dotted version), "profile" ("linux" or "ip500v2") and
 * "components" (1..16 objects, names unique) must each be there exactly
 * once with the right type, as must "name", "version", "size" (an integer
 * in 0..2^40) and "sha256" in every component. Other members are ignored
 * (newer COMs may add some) but must be JSON too, nested at most 8 deep,
 * with paths of at most 120 bytes ("a.b[].c"). why names the member:
 *   release: missing
 *   components[2].sha256: not 64 lower-case hex digits
 *   components[1].name: given more than once
 * ERR_LIMIT for len > MANIFEST_MAX_TEXT, ERR_INVAL for every other
 * problem, ERR_NOMEM. On failure *out is NULL.
 */
err_t manifest_parse(const char *text, size_t len, struct manifest **out,
		     char *why, size_t whylen);
void manifest_free(struct manifest *m);

const char *manifest_release(const struct manifest *m);
const char *manifest_profile(const struct manifest *m);
size_t manifest_count(const struct manifest *m);
/* NULL when i >= manifest_count(m). */
const struct manifest_component *manifest_at(const struct manifest *m,
					     size_t i);
/* The sum of the components' sizes (at most 16 * 2^40). */
uint64_t manifest_total_size(const struct manifest *m);

/*
 * Numeric order of dotted versions: -1, 0 or 1 as a is lower than, the
 * same as or higher than b. Missing parts count as 0 ("12.0" == "12.0.0",
 * "11.1.3.0" < "12.0.0.1"). When a or b is not a dotted version ("",
 * "unknown", "1..2", "1.a", " 1", more than 8 parts, a part of more than 6
 * digits, NULL) *ok is false and 0 is returned; else *ok is true. ok may
 * be NULL.
 */
int manifest_version_cmp(const char *a, const char *b, bool *ok);

#endif
