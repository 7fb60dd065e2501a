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
 * are at most 197 characters (libinih's 200-byte line buffer), key names at
 * most 64.
 *
 * Besides the fixed keys of enum conf_key, two kinds of section hold lists:
 *   [network]       NAME = ADDRESS, one line per other server of this
 *                   system's network (at most CONF_SERVERS_MAX);
 *   [tunnel NAME]   one section per co-located server COM may tunnel to
 *                   (at most CONF_TUNNELS_MAX), keys application, address
 *                   and port.
 */
#ifndef COMAGENT_CONF_H
#define COMAGENT_CONF_H

#include <stdbool.h>
#include <stddef.h>
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
	CONF_COM_MAX_STREAMS,
	CONF_COM_TUNNEL_CONNECT_TIMEOUT,
	CONF_SYSTEM_PROFILE,
	CONF_SYSTEM_CUSTOMER_ID,
	CONF_SYSTEM_SYSTEM_NAME,
	CONF_SYSTEM_VERSION,
	CONF_SYSTEM_ROOT,
	CONF_SYSTEM_STATE_DIR,
	CONF_SYSTEM_CONTROL_SOCKET,
	CONF_SYSTEM_ADDRESS,
	CONF_SYSTEM_PROBE_INTERVAL,
	CONF_SERVICE_USER_NAME,
	CONF_SERVICE_USER_PASSWORD,
	CONF_LOG_LEVEL,
	CONF_LOG_FILE,
	CONF_LOG_MAX_SIZE,
	/* [services]: the local TCP port of each well-known service COM asks
	 * for by its standard port (22, 443, 7071, 9443, 52233, 8443). */
	CONF_SERVICES_SSH,
	CONF_SERVICES_HTTPS,
	CONF_SERVICES_WEBCONTROL,
	CONF_SERVICES_ONEPORTAL,
	CONF_SERVICES_WEBLM,
	CONF_SERVICES_WEBMANAGER,
	/* [jobs]: remote jobs (backup, restore, upgrade; PROTOCOL.md §2.6). */
	CONF_JOBS_HOOKS_DIR,
	CONF_JOBS_WORK_DIR,
	CONF_JOBS_STAGING_DIR,
	CONF_JOBS_BACKUP_DIRS,
	CONF_JOBS_AUTO_BACKUP,
	CONF_JOBS_TRUSTED_KEYS,
	CONF_JOBS_HOOK_TIMEOUT,
	CONF_JOBS_HOOK_RUNNER,
	/* [logs]: the PBX's syslog, stored and uploaded nightly. */
	CONF_LOGS_SYSLOG,
	CONF_LOGS_STORE_DIR,
	CONF_LOGS_MAX_TOTAL,
	CONF_LOGS_MAX_DAY,
	CONF_LOGS_FILE_MAX,
	CONF_LOGS_MESSAGE_MAX,
	CONF_LOGS_COLLECT_DIRS,
	/* [custom]: where COM's custom files are installed. */
	CONF_CUSTOM_PHONE_DIR,
	CONF_CUSTOM_TEMPLATE_DIR,
	/* [cert]: the system certificate COM manages (setting centralcert,
	 * PROTOCOL.md §2.6 op certificate). */
	CONF_CERT_CA_FILE,
	CONF_CERT_NAME,
	CONF__COUNT
};

#define CONF_TUNNELS_MAX	32
#define CONF_SERVERS_MAX	16
/* Room for any canonical IP address text, with the NUL (INET6_ADDRSTRLEN). */
#define CONF_IP_MAX		46

/* A [tunnel NAME] section. address is canonical (see conf_ip_canon()), so
 * two spellings of one address compare equal with strcmp; port is the one
 * in the file or the application's (ssh 22, rdp 3389, https 443). */
struct conf_tunnel {
	const char *name;
	const char *application;	/* "ssh" | "rdp" | "https" | "custom" */
	const char *address;
	uint16_t port;
	int line;			/* of the [tunnel NAME] line */
};

/* A line of [network]: address is an IP literal or a host name, as written.
 * Names are unique ignoring case (COM takes them from DNS names) and never
 * this system's own system_name. */
struct conf_server {
	const char *name;
	const char *address;
	int line;
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
/* Durations in ms, sizes in bytes, integers (max_streams, ports) as they
 * are, enums as the index of the word in the schema (log level: 0 error,
 * 1 info, 2 debug = enum log_level; profile: 0 ip500v2, 1 linux). 0 for
 * string, host and path keys. */
uint64_t conf_num(const struct conf *c, enum conf_key k);
/* True when the key was in the file (even with an empty value). */
bool conf_isset(const struct conf *c, enum conf_key k);
/* The profile's table; never NULL for a loaded conf. */
const struct platform_ops *conf_platform(const struct conf *c);
/* The path conf_load() was given. */
const char *conf_path(const struct conf *c);

/* The [tunnel NAME] sections in file order; NULL if i is out of range. */
size_t conf_tunnel_count(const struct conf *c);
const struct conf_tunnel *conf_tunnel_at(const struct conf *c, size_t i);
/* The [network] servers in file order; NULL if i is out of range. */
size_t conf_server_count(const struct conf *c);
const struct conf_server *conf_server_at(const struct conf *c, size_t i);

/*
 * The canonical text of an IPv4 or IPv6 literal into out (cap bytes,
 * CONF_IP_MAX always suffice): inet_ntop's spelling, an IPv4-mapped IPv6
 * address as plain IPv4. The form conf_tunnel.address is in, so a host from
 * COM can be matched against it with strcmp. false, out "", if text is not
 * a literal inet_pton takes (no zones, no leading zeros) or cap is short.
 */
bool conf_ip_canon(const char *text, char *out, size_t cap);

/*
 * Every key the schema knows, for `comagent config-keys` and the man page
 * (scripts/mkman.py reads this): "[section]" lines, under each "  key"
 * lines, under each key "      field:    value" lines — type, default
 * (F_PLATFORM keys: each profile's), bounds, flags (required, secret) and
 * note (rules between keys, counts). A "field" line before the first key
 * of a section belongs to the section. [network] lists its NAME = ADDRESS
 * form as the key NAME, [tunnel NAME] its three keys.
 */
void conf_print_keys(FILE *f);

#endif
