/*
 * json — what every parser of untrusted JSON text here shares (proto.c for
 * control messages, manifest.c for the signed software manifest): strict
 * UTF-8, JSON's number grammar, integers with bounds, and a driver around
 * LEJP, libwebsockets' stream JSON parser, that refuses what LEJP 4.1.6
 * gets wrong and tracks the containers that are open.
 *
 * A parse is a struct json that the caller owns: json_init(), the caller's
 * own checks of the text (size, NUL bytes, UTF-8, in its own words),
 * json_run(), then the caller's checks of what it collected. The first
 * failure latches in it as an err_t plus a short ASCII reason: json_fail()
 * takes the caller's failures and the driver's alike, and later ones are
 * dropped as consequences. The caller's callback gives the members their
 * meaning; the driver owns depth, nesting and LEJP's internals.
 */
#ifndef COMAGENT_JSON_H
#define COMAGENT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* LEJP's parser state (<libwebsockets.h>): callbacks read the value at hand
 * from it (ctx->buf, ctx->npos, ctx->path) as LEJP documents. */
struct lejp_ctx;

/* The most any caller may ask for; LEJP's buffers are sized for these. */
#define JSON_MAX_DEPTH	8	/* open containers, the top one is 1 */
#define JSON_MAX_PATH	120	/* bytes of LEJP's path ("a.b[].c") */

/*
 * What one kind of document allows, and the caller's words for the
 * driver's reasons (their tests pin the texts). A NULL word takes the
 * default given.
 */
struct json_spec {
	unsigned max_depth;	/* 1..JSON_MAX_DEPTH */
	unsigned max_path;	/* 1..JSON_MAX_PATH */
	/* "field": "field path longer than 120 bytes" (default "member") */
	const char *path_name;
	/* "message": "not JSON: message truncated" (default "text") */
	const char *text_name;
	/* The reason for a top-level "{}", which LEJP refuses by itself: what
	 * the caller's check of required members would say first (default
	 * "empty object"). */
	const char *empty_why;
	/*
	 * Called with LEJPCB_PAIR_NAME, every LEJPCB_VAL_* reason and the
	 * start and end of every container but the top-level object. At a
	 * start json_depth() is still that of the enclosing container (the
	 * nesting limits are checked after the callback); at an end the
	 * container is already closed, so json_depth() is again that of the
	 * enclosing one. Returns 0, or -1 after json_fail().
	 */
	int (*event)(void *arg, struct lejp_ctx *ctx, char reason);
};

/* One parse. The members are json.c's own: use the functions below. */
struct json {
	const struct json_spec *spec;
	void *arg;
	char *why;
	size_t whylen;
	err_t err;		/* ERR_OK until the first failure */
	bool ran;		/* json_run() was called */
	unsigned depth;		/* open containers, the top one too */
	unsigned arrays;	/* open arrays among them */
	char stack[JSON_MAX_DEPTH];	/* 'o' or 'a' per open container */
};

/*
 * Starts a parse: arg goes to spec->event. why (may be NULL) receives the
 * reason of the first failure, always NUL-terminated when whylen > 0, and
 * is "" until then. A spec whose limits are out of range (or NULL) fails
 * the parse at once with ERR_INVAL.
 */
void json_init(struct json *j, const struct json_spec *spec, void *arg,
	       char *why, size_t whylen);

/* Records the failure unless one is recorded already. */
__attribute__((format(printf, 3, 4)))
void json_fail(struct json *j, err_t e, const char *fmt, ...);

/* The first failure, ERR_OK while there is none. */
err_t json_err(const struct json *j);

/*
 * Parses the len bytes at buf (no NUL needed) as one JSON object with
 * nothing but JSON whitespace after it, calling spec->event on the way;
 * once per json_init() (ERR_STATE after that). Does nothing when the parse
 * has already failed. Returns json_err(). The text must not contain a NUL
 * byte and must be strict UTF-8: callers check that first in their own
 * words; it is checked here again ("NUL byte in the text", "invalid
 * UTF-8") because json_cesu_to_utf8() relies on it.
 *
 * Refused besides what LEJP refuses itself ("not JSON: <LEJP's text>"):
 * '#' outside a string ("not JSON: '#' outside a string"), "[1,]" ("not
 * JSON: ',' before ']'"), "[1}]" ("not JSON: mismatched '}'"), anything
 * but an object at the top ("not a JSON object"), a path longer than
 * spec->max_path, more than spec->max_depth open containers ("nesting
 * deeper than 8 levels"), arrays within arrays deeper than LEJP allows
 * ("arrays nested deeper than 5 levels"), an unfinished text and trailing
 * data ("trailing data after the object"). Numbers are not checked here:
 * see json_number().
 */
err_t json_run(struct json *j, const char *buf, size_t len);

/* Containers open, the top-level object included; within spec->event. */
unsigned json_depth(const struct json *j);
/* How many of them are arrays. */
unsigned json_arrays(const struct json *j);
/* Whether the innermost open container is an array. */
bool json_in_array(const struct json *j);

/* LEJP's dotted path of the value at hand ("a.b[].c") and its length. */
const char *json_path(const struct lejp_ctx *ctx, size_t *len);
/*
 * At LEJPCB_PAIR_NAME: the member name just read (escapes decoded, so
 * "r\u0065lease" is "release"), *len bytes, NUL-terminated. NULL when
 * LEJP's state is not what this was written against.
 */
const char *json_key(const struct lejp_ctx *ctx, size_t *len);

/* Strict UTF-8: no overlong forms, no encoded surrogates, nothing above
 * U+10FFFF. */
bool json_utf8_valid(const void *s, size_t n);
/* Bytes of the well-formed UTF-8 sequence at s (n bytes there), 0 if
 * there is none (or n is 0). */
size_t json_utf8_len(const void *s, size_t n);
/*
 * LEJP decodes an escaped surrogate pair ("\ud83d\ude00") into two 3-byte
 * CESU-8 sequences: rewrites each such pair in s[0..n) in place as one
 * 4-byte UTF-8 sequence and sets *outlen. False for a lone or reversed
 * surrogate or anything else that is not UTF-8 (s is then garbled).
 */
bool json_cesu_to_utf8(unsigned char *s, size_t n, size_t *outlen);

/* Whether s is a number by JSON's grammar; LEJP also lets through "01",
 * "1e+" and "-1e". */
bool json_number(const char *s);
/*
 * An optionally negative run of decimal digits with a value in min..max
 * into *out (out may be NULL); false, *out untouched, for anything else
 * (fraction, exponent, '+', overflow, out of range, ""). "-0" is 0.
 */
bool json_int(const char *s, int64_t min, int64_t max, int64_t *out);

#endif
