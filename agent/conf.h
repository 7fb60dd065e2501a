/*
 * conf — the agent's INI configuration (config/comagent.ini.example is the
 * reference), parsed with inih and checked against one schema table.
 *
 * conf_load() reports every problem it finds, not just the first, so that
 * `comagent check-config` shows an operator all mistakes in one run. Each
 * message goes to `errs` as one line:
 *
 *   FILE:LINE: message     a problem on that line of the file
 *   FILE: message          a problem of the file as a whole: it cannot be
 *                          read, a required key is missing ("missing required
 *                          key [com] url"), it is world-readable
 *
 * A line number is never 0: file-level problems have none at all.
 *
 * Dialect: "[section]" and "key = value" lines; whole-line comments start
 * with '#' or ';'. There are no inline comments ('#' and ';' inside a value
 * are part of it, which passwords need) and no continuation lines. Lines
 * are at most 197 characters (libinih's 200-byte line buffer).
 */
#ifndef COMAGENT_CONF_H
#define COMAGENT_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

struct platform_ops;

enum conf_key {
	CONF_COM_URL,
	CONF_COM_CA_FILE,
	CONF_COM_PROXY,
	CONF_COM_PROXY_USER,
	CONF_COM_PROXY_PASSWORD,
	CONF_COM_PING_INTERVAL,
	CONF_COM_IDLE_TIMEOUT,
	CONF_COM_CONNECT_TIMEOUT,
	CONF_COM_RETRY_MIN,
	CONF_COM_RETRY_MAX,
	CONF_COM_AUTH_RETRY_MIN,
	CONF_COM_AUTH_RETRY_MAX,
	CONF_COM_GRACE,
	CONF_SYSTEM_PROFILE,
	CONF_SYSTEM_CUSTOMER_ID,
	CONF_SYSTEM_SYSTEM_NAME,
	CONF_SYSTEM_VERSION,
	CONF_SYSTEM_ROOT,
	CONF_SYSTEM_STATE_DIR,
	CONF_SYSTEM_CONTROL_SOCKET,
	CONF_SERVICE_USER_NAME,
	CONF_SERVICE_USER_PASSWORD,
	CONF_LOG_LEVEL,
	CONF_LOG_FILE,
	CONF_LOG_MAX_SIZE,
	CONF__COUNT
};

struct conf;

/*
 * Parses and validates the file at path. Returns
 *   ERR_OK     and *out: the file is valid;
 *   ERR_INVAL  something in it is wrong (every problem reported);
 *   ERR_PERM   it is valid but world-readable while holding a password
 *              (when it is also invalid, ERR_INVAL wins; both reported);
 *   ERR_IO     it cannot be opened or read (reported with strerror);
 *   ERR_NOMEM.
 * *out is NULL unless ERR_OK. errs may be NULL to discard the messages.
 * Not thread-safe: it sets libinih's process-wide dialect switches.
 */
err_t conf_load(const char *path, FILE *errs, struct conf **out);
void conf_free(struct conf *c);

/*
 * The value as text: strings and enum words as written; durations and sizes
 * as written (or the default's text); paths resolved to absolute ones under
 * [system] root. "" for an optional key that is unset or set empty.
 */
const char *conf_str(const struct conf *c, enum conf_key k);
/* Durations in ms, sizes in bytes, enums as the index of the word in the
 * schema (log level: 0 error, 1 info, 2 debug = enum log_level; profile:
 * 0 ip500v2, 1 linux). 0 for string and path keys. */
uint64_t conf_num(const struct conf *c, enum conf_key k);
/* True when the key was in the file (even with an empty value). */
bool conf_isset(const struct conf *c, enum conf_key k);
/* The profile's table; never NULL for a loaded conf. */
const struct platform_ops *conf_platform(const struct conf *c);
/* The path conf_load() was given. */
const char *conf_path(const struct conf *c);

#endif
