/*
 * proto — control messages of the COM link (PROTOCOL.md §2): decoding of
 * untrusted JSON text frames into a flat table of leaf fields, a bounded
 * JSON writer for the messages we send, and the COM wording of `refused`
 * reasons.
 *
 * The module does not log: failures come back as an err_t plus a short
 * ASCII reason text that the caller logs once (and may put into its
 * {"type":"error"} answer).
 */
#ifndef COMAGENT_PROTO_H
#define COMAGENT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "err.h"

#define PROTO_MAX_MSG 65536	/* bytes of one text frame */
#define PROTO_MAX_STR 4096	/* bytes of one string value (decoded UTF-8) */
#define PROTO_MAX_FIELDS 64	/* members at any depth + array elements */
#define PROTO_MAX_DEPTH 8	/* the top-level object is level 1 */
#define PROTO_MAX_TYPE 31	/* bytes of "type" */
#define PROTO_MAX_PATH 120	/* bytes of a dotted field path ("args.name") */
#define PROTO_MAX_ID 9007199254740991LL	/* 2^53 - 1, largest "id"/"re" */

struct proto_msg;

/*
 * Parses one complete control message of len bytes (no NUL needed).
 * ERR_LIMIT: len > PROTO_MAX_MSG. ERR_INVAL: anything else wrong — not
 * JSON, not an object, invalid UTF-8, NUL byte, "type" missing/empty/longer
 * than PROTO_MAX_TYPE/not a string, "id" missing or "id"/"re" not an
 * integer in 1..PROTO_MAX_ID, a limit exceeded. ERR_NOMEM: allocation.
 * On failure *out is NULL, why holds a short ASCII reason (always
 * NUL-terminated when whylen > 0; why may be NULL) and *bad_id the message's
 * "id" if one was read before the failure, else 0 (bad_id may be NULL).
 * Duplicate keys: the last one wins (as in Python's json and JavaScript).
 * Array elements are checked and counted but not stored — except strings
 * that are elements of an array not inside another array: those are
 * stored as "PATH.N" (N from 0, counting every element of that array), so
 * {"args":{"elements":["a","b"]}} gives "args.elements.0" and
 * "args.elements.1" (see proto_count()). Escaped NULs
 * (\u0000) and lone surrogates are refused. LEJP's own limits also apply:
 * a number has at most 20 digits, arrays nest at most 5 deep.
 */
err_t proto_parse(const char *buf, size_t len, struct proto_msg **out,
		  int64_t *bad_id, char *why, size_t whylen);
void proto_msg_free(struct proto_msg *m);

const char *proto_type(const struct proto_msg *m);
int64_t proto_id(const struct proto_msg *m);	/* "id" is required: >= 1 */
int64_t proto_re(const struct proto_msg *m);	/* 0 if absent */

/*
 * Leaf lookup by dotted path ("reason", "args.name"). NULL/false when
 * absent or of another type; a number that is not an integer in int64_t
 * range (1.5, 1e3, 2^63) is not an integer.
 */
const char *proto_str(const struct proto_msg *m, const char *path);
bool proto_int(const struct proto_msg *m, const char *path, int64_t *out);
/* How many strings "PATH.0", "PATH.1", ... there are in a row: the length
 * of an array of strings (0 when absent, or its first element is not a
 * string). */
int proto_count(const struct proto_msg *m, const char *path);
bool proto_bool(const struct proto_msg *m, const char *path, bool *out);

struct proto_w;

/*
 * cap: max bytes of the JSON text; headroom: bytes reserved before the text
 * (lws_write() needs LWS_PRE). NULL on cap 0, size overflow or no memory.
 */
struct proto_w *proto_w_new(size_t cap, size_t headroom);
void proto_w_free(struct proto_w *w);
/* Resets the writer and starts {"type":..,"id":..; id must be 1..2^53-1. */
void proto_w_begin(struct proto_w *w, const char *type, int64_t id);
/*
 * Members of the innermost open object. Strings are JSON-escaped: quote,
 * backslash and control characters (as \u00XX); invalid UTF-8 becomes
 * \ufffd so the text sent is always valid UTF-8. val NULL writes null.
 */
void proto_w_str(struct proto_w *w, const char *key, const char *val);
void proto_w_int(struct proto_w *w, const char *key, int64_t v);
void proto_w_bool(struct proto_w *w, const char *key, bool v);
void proto_w_null(struct proto_w *w, const char *key);
void proto_w_obj(struct proto_w *w, const char *key);	/* opens an object */
/* Opens an array; its elements are written with key NULL. */
void proto_w_arr(struct proto_w *w, const char *key);
void proto_w_end(struct proto_w *w);			/* closes it */
/*
 * Closes the top-level object. The first error latches: ERR_LIMIT when the
 * text outgrew cap or nesting exceeded PROTO_MAX_DEPTH, ERR_STATE for
 * misuse (no begin, unbalanced obj/end), ERR_INVAL for a bad id. On error
 * *buf is NULL and *len 0 — nothing partial is ever returned. On success
 * *buf points at the NUL-terminated text inside the writer (valid until the
 * next begin or free) and (*buf - headroom) .. *buf is writable.
 */
err_t proto_w_finish(struct proto_w *w, char **buf, size_t *len);

/* Strict UTF-8, as proto_parse() takes it: no overlong forms, no encoded
 * surrogates, nothing above U+10FFFF. */
bool proto_utf8_valid(const void *str, size_t n);

/* PROTOCOL.md §2.3: COM wording for a refusal reason; "Connection failed"
 * for NULL or unknown reasons. */
const char *proto_reason_text(const char *reason);

#endif
