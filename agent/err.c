/* err — names of the error codes, for log lines and CLI messages. */
#include <stdarg.h>
#include <stdio.h>

#include "err.h"

const char *err_str(err_t e)
{
	switch (e) {
	case ERR_OK:		return "ok";
	case ERR_NOMEM:		return "out of memory";
	case ERR_INVAL:		return "invalid input";
	case ERR_IO:		return "I/O error";
	case ERR_LIMIT:		return "limit reached";
	case ERR_PROTO:		return "protocol error";
	case ERR_NOTFOUND:	return "not found";
	case ERR_PERM:		return "permission problem";
	case ERR_STATE:		return "wrong state";
	case ERR_TLS:		return "TLS error";
	}
	return "unknown error";
}

void err_say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}
