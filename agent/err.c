/* err — names of the error codes, for log lines and CLI messages. */
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
