/*
 * err — the one error type of comagent.
 *
 * Every function that can fail returns an err_t. The error is logged once,
 * where it is detected, with the library's own text; callers only propagate.
 */
#ifndef COMAGENT_ERR_H
#define COMAGENT_ERR_H

#include <stddef.h>

typedef enum {
	ERR_OK = 0,
	ERR_NOMEM,	/* allocation failed */
	ERR_INVAL,	/* bad input: config, message, argument */
	ERR_IO,		/* file or socket I/O failed */
	ERR_LIMIT,	/* a cap was reached (buffer, queue, field count) */
	ERR_PROTO,	/* the peer broke the protocol */
	ERR_NOTFOUND,	/* no such thing (key, file, daemon) */
	ERR_PERM,	/* permissions: world-readable secret, socket access */
	ERR_STATE,	/* operation not possible in the current state */
	ERR_TLS,	/* TLS or certificate problem */
} err_t;

const char *err_str(err_t e);

/* Formats a reason into why (whylen bytes; nothing when why is NULL or
 * whylen 0), for modules that hand their reasons to the caller instead of
 * logging them. */
void err_say(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
