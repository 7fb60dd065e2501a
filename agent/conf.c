/*
 * conf — loads the INI file into a struct conf, driven by one schema table.
 *
 * inih splits the lines; our reader sits in front of it so that we know the
 * line number of every key it hands the handler, and so that problems inih
 * would only count (over-long lines, syntax errors) are each reported with
 * their own line. Values are checked as they arrive; after the last line come
 * missing required keys, defaults (some from the platform profile), paths
 * resolved under [system] root, the rules between keys and the file mode.
 *
 * The reader also tracks the current section itself: inih cuts section names
 * at 49 characters, too short for "[tunnel NAME]" with a 64-character NAME.
 * [network] and [tunnel NAME] entries live in fixed arrays in struct conf
 * (their caps), so they cost no allocation and no cleanup.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "conf.h"
#include "platform.h"

#define SEC	1000ull
#define MINUTE	(60 * SEC)
#define HOUR	(60 * MINUTE)
#define KIB	1024ull
#define MIB	(1024 * KIB)
#define GIB	(1024 * MIB)

#define PATH_CAP	4096	/* PATH_MAX on Linux, with the NUL */
/* inih hands key names over whole (only its multi-line mode, which is off,
 * cuts them at 49 characters); 64 is the longest [network] server name. */
#define KEY_NAME_MAX	64
#define ID_MAX		64	/* names: system, customer, server, tunnel */
#define HOST_MAX	253	/* a DNS name's longest text form */
#define SECTION_CAP	200	/* a section name always fits its line */

enum ktype {
	T_STRING, T_URL, T_HOSTPORT, T_DURATION, T_SIZE, T_ENUM, T_PATH,
	T_INT,		/* decimal, min..max */
	T_HOST,		/* IP literal (IPv6 without brackets) or host name */
	T_IP,		/* IPv4 or IPv6 literal of a unicast address only */
};

#define F_ID		0x01	/* charset [A-Za-z0-9._-] */
#define F_SECRET	0x02	/* never echoed; makes world-readable an error */
#define F_ABSOLUTE	0x04	/* must be absolute (root itself) */
#define F_PLATFORM	0x08	/* default comes from the platform profile */
#define F_NOCOLON	0x10	/* Basic auth user-ids cannot hold ':' */

struct key_spec {
	const char *section;
	const char *key;
	enum ktype type;
	bool required;
	const char *def;	/* default text; NULL: none or F_PLATFORM */
	uint64_t min, max;	/* ms, bytes, or characters for text types */
	unsigned flags;
	const char *const *words;	/* T_ENUM, NULL-terminated */
};

static const char *const profile_words[] = { "ip500v2", "linux", NULL };
/* Same order as enum log_level, so conf_num() is the level. */
static const char *const level_words[] = { "error", "info", "debug", NULL };
/* conf_num() is 1 for "on". */
static const char *const switch_words[] = { "off", "on", NULL };

#define DUR(sec, name, d, lo, hi) \
	{ sec, name, T_DURATION, false, d, lo, hi, 0, NULL }
#define PORT(name, d) \
	{ "services", name, T_INT, false, d, 1, 65535, 0, NULL }

/* Bounds and defaults as documented in config/comagent.ini.example. */
static const struct key_spec schema[CONF__COUNT] = {
	[CONF_COM_URL] = { "com", "url", T_URL, true, NULL, 1, 255, 0, NULL },
	[CONF_COM_CA_FILE] = { "com", "ca_file", T_PATH, true, NULL, 1, 255,
			       0, NULL },
	[CONF_COM_PROXY] = { "com", "proxy", T_HOSTPORT, false, NULL, 0, 255,
			     0, NULL },
	[CONF_COM_PROXY_USER] = { "com", "proxy_user", T_STRING, false, NULL,
				  0, 255, F_NOCOLON, NULL },
	[CONF_COM_PROXY_PASSWORD] = { "com", "proxy_password", T_STRING,
				      false, NULL, 0, 255, F_SECRET, NULL },
	[CONF_COM_PING_INTERVAL] = DUR("com", "ping_interval", "30s",
				       SEC, HOUR),
	[CONF_COM_IDLE_TIMEOUT] = DUR("com", "idle_timeout", "90s",
				      2 * SEC, 2 * HOUR),
	[CONF_COM_CONNECT_TIMEOUT] = DUR("com", "connect_timeout", "20s",
					 SEC, 5 * MINUTE),
	[CONF_COM_RETRY_MIN] = DUR("com", "retry_min", "1s", 100, HOUR),
	[CONF_COM_RETRY_MAX] = DUR("com", "retry_max", "5m", SEC, 24 * HOUR),
	[CONF_COM_AUTH_RETRY_MIN] = DUR("com", "auth_retry_min", "5m",
					SEC, 24 * HOUR),
	[CONF_COM_AUTH_RETRY_MAX] = DUR("com", "auth_retry_max", "1h",
					SEC, 24 * HOUR),
	[CONF_COM_GRACE] = DUR("com", "grace", "60s", SEC, HOUR),
	/* PROTOCOL.md §3.2: 64 streams per link unless configured. */
	[CONF_COM_MAX_STREAMS] = { "com", "max_streams", T_INT, false, "64",
				   1, 256, 0, NULL },
	[CONF_COM_TUNNEL_CONNECT_TIMEOUT] = DUR("com",
						"tunnel_connect_timeout",
						"10s", SEC, 2 * MINUTE),
	[CONF_SYSTEM_PROFILE] = { "system", "profile", T_ENUM, false, "linux",
				  0, 0, 0, profile_words },
	[CONF_SYSTEM_CUSTOMER_ID] = { "system", "customer_id", T_STRING, true,
				      NULL, 1, 64, F_ID, NULL },
	[CONF_SYSTEM_SYSTEM_NAME] = { "system", "system_name", T_STRING, true,
				      NULL, 1, 64, F_ID, NULL },
	[CONF_SYSTEM_VERSION] = { "system", "version", T_STRING, false, "",
				  0, 255, 0, NULL },
	[CONF_SYSTEM_ROOT] = { "system", "root", T_PATH, false, "/", 1, 255,
			       F_ABSOLUTE, NULL },
	[CONF_SYSTEM_STATE_DIR] = { "system", "state_dir", T_PATH, false,
				    NULL, 1, 255, F_PLATFORM, NULL },
	[CONF_SYSTEM_CONTROL_SOCKET] = { "system", "control_socket", T_PATH,
					 false, NULL, 1, 255, F_PLATFORM,
					 NULL },
	[CONF_SYSTEM_ADDRESS] = { "system", "address", T_HOST, false,
				  "127.0.0.1", 1, HOST_MAX, 0, NULL },
	/* How often the [network] servers are probed (health.h); 0: never
	 * (their state stays "unknown"). */
	[CONF_SYSTEM_PROBE_INTERVAL] = DUR("system", "probe_interval", "60s",
					   0, HOUR),
	[CONF_SERVICE_USER_NAME] = { "service_user", "name", T_STRING, false,
				     "COMAdmin", 1, 255, 0, NULL },
	[CONF_SERVICE_USER_PASSWORD] = { "service_user", "password", T_STRING,
					 true, NULL, 1, 128, F_SECRET, NULL },
	[CONF_LOG_LEVEL] = { "log", "level", T_ENUM, false, "info", 0, 0, 0,
			     level_words },
	/* Empty is allowed: it means "no log file". */
	[CONF_LOG_FILE] = { "log", "file", T_PATH, false, NULL, 0, 255,
			    F_PLATFORM, NULL },
	[CONF_LOG_MAX_SIZE] = { "log", "max_size", T_SIZE, false, NULL,
				64 * KIB, GIB, F_PLATFORM, NULL },
	[CONF_SERVICES_SSH] = PORT("ssh", "22"),
	[CONF_SERVICES_HTTPS] = PORT("https", "443"),
	[CONF_SERVICES_WEBCONTROL] = PORT("webcontrol", "7071"),
	[CONF_SERVICES_ONEPORTAL] = PORT("oneportal", "9443"),
	[CONF_SERVICES_WEBLM] = PORT("weblm", "52233"),
	[CONF_SERVICES_WEBMANAGER] = PORT("webmanager", "8443"),
	/* Hooks are the integrator's, installed with the agent, not part of
	 * the system under root: an absolute default. */
	[CONF_JOBS_HOOKS_DIR] = { "jobs", "hooks_dir", T_PATH, false,
				  "/usr/libexec/comagent", 1, 255, 0, NULL },
	[CONF_JOBS_WORK_DIR] = { "jobs", "work_dir", T_PATH, false, NULL, 1,
				 255, F_PLATFORM, NULL },
	[CONF_JOBS_STAGING_DIR] = { "jobs", "staging_dir", T_PATH, false,
				    NULL, 1, 255, F_PLATFORM, NULL },
	[CONF_JOBS_BACKUP_DIRS] = { "jobs", "backup_dirs", T_STRING, false,
				    "etc/ipoffice var/lib/ipoffice", 1, 190, 0,
				    NULL },
	[CONF_JOBS_AUTO_BACKUP] = { "jobs", "auto_backup", T_ENUM, false, "on",
				    0, 0, 0, switch_words },
	[CONF_JOBS_TRUSTED_KEYS] = { "jobs", "trusted_keys", T_STRING, false,
				     "", 0, 190, 0, NULL },
	[CONF_JOBS_HOOK_TIMEOUT] = DUR("jobs", "hook_timeout", "1h",
				       10 * SEC, 24 * HOUR),
	/* The root-side hook runner's socket (hookrun.h); empty: the agent
	 * runs hooks itself, as its own user. 107: sun_path. */
	[CONF_JOBS_HOOK_RUNNER] = { "jobs", "hook_runner", T_PATH, false, "",
				    0, 107, 0, NULL },
	/* Where the PBX sends its syslog (UDP and TCP); empty: no intake. */
	[CONF_LOGS_SYSLOG] = { "logs", "syslog", T_HOSTPORT, false,
			       "127.0.0.1:514", 0, 255, 0, NULL },
	[CONF_LOGS_STORE_DIR] = { "logs", "store_dir", T_PATH, false, NULL,
				  1, 255, F_PLATFORM, NULL },
	[CONF_LOGS_MAX_TOTAL] = { "logs", "max_total", T_SIZE, false, NULL,
				  MIB, 1024 * GIB, F_PLATFORM, NULL },
	/* 0: no daily cap. */
	[CONF_LOGS_MAX_DAY] = { "logs", "max_day", T_SIZE, false, NULL,
				0, 1024 * GIB, F_PLATFORM, NULL },
	[CONF_LOGS_FILE_MAX] = { "logs", "file_max", T_SIZE, false, NULL,
				 64 * KIB, 256 * MIB, F_PLATFORM, NULL },
	[CONF_LOGS_MESSAGE_MAX] = { "logs", "message_max", T_SIZE, false, "8K",
				    480, 64 * KIB, 0, NULL },
	/* Directories (under root, space-separated) whose *.log files are
	 * collected into the store too; empty: none. */
	[CONF_LOGS_COLLECT_DIRS] = { "logs", "collect_dirs", T_STRING, false,
				     "", 0, 190, 0, NULL },
	/* What the phones fetch over HTTP/TFTP (CustomPhoneFiles.tar), and
	 * the SIP trunk templates (CustomTemplates.tar). */
	[CONF_CUSTOM_PHONE_DIR] = { "custom", "phone_dir", T_PATH, false,
				    NULL, 1, 255, F_PLATFORM, NULL },
	[CONF_CUSTOM_TEMPLATE_DIR] = { "custom", "template_dir", T_PATH, false,
				       NULL, 1, 255, F_PLATFORM, NULL },
	/* The CA that must issue the system certificate COM pushes; empty:
	 * [com] ca_file (the agent looks there, so it follows that key). */
	[CONF_CERT_CA_FILE] = { "cert", "ca_file", T_PATH, false, "", 0, 255,
				0, NULL },
	/* The DNS name the certificate must carry; empty: [system]
	 * system_name. */
	[CONF_CERT_NAME] = { "cert", "name", T_STRING, false, "", 0, HOST_MAX,
			     F_ID, NULL },
};

/* The keys of a [tunnel NAME] section. */
enum tunnel_key { TK_APPLICATION, TK_ADDRESS, TK_PORT, TK__COUNT };

/* Same order as app_ports. */
static const char *const app_words[] = { "ssh", "rdp", "https", "custom",
					 NULL };
/* The port an application's tunnel gets when the file names none; 0: the
 * file must (a custom service has no standard port). */
static const uint16_t app_ports[] = { 22, 3389, 443, 0 };
#define APP_CUSTOM 3

static const struct key_spec tunnel_schema[TK__COUNT] = {
	[TK_APPLICATION] = { "tunnel", "application", T_ENUM, true, NULL, 0, 0,
			     0, app_words },
	[TK_ADDRESS] = { "tunnel", "address", T_IP, true, NULL, 1, HOST_MAX,
			 0, NULL },
	[TK_PORT] = { "tunnel", "port", T_INT, false, NULL, 1, 65535, 0,
		      NULL },
};

/* A [network] value; its key is the server's name. */
static const struct key_spec server_spec = {
	"network", "", T_HOST, false, NULL, 1, HOST_MAX, 0, NULL
};

struct unit {
	const char *name;
	uint64_t mul;
};

/* Largest first: bounds are printed in the largest unit that fits. */
static const struct unit dur_units[] = {
	{ "h", HOUR }, { "m", MINUTE }, { "s", SEC }, { "ms", 1 }, { NULL, 0 }
};
static const struct unit size_units[] = {
	{ "G", GIB }, { "M", MIB }, { "K", KIB }, { "", 1 }, { NULL, 0 }
};

struct val {
	char *str;
	uint64_t num;
	unsigned line;	/* where it was in the file; 0: not there */
	bool ok;	/* holds a valid value (from the file or a default) */
};

/* A key of a [tunnel NAME] section: the value lives in the slot. */
struct tval {
	uint64_t num;
	unsigned line;	/* 0: not in the section */
	bool ok;
};

struct tunnel_slot {
	struct conf_tunnel pub;		/* filled once the file is valid */
	char name[ID_MAX + 1];
	char address[CONF_IP_MAX];	/* canonical */
	unsigned line;			/* of the [tunnel NAME] line */
	struct tval k[TK__COUNT];
};

struct server_slot {
	struct conf_server pub;		/* points at the two arrays below */
	char name[ID_MAX + 1];
	char address[HOST_MAX + 1];
};

struct conf {
	char *path;
	const struct platform_ops *plat;
	struct val v[CONF__COUNT];
	struct tunnel_slot tunnels[CONF_TUNNELS_MAX];
	size_t ntunnels;
	struct server_slot servers[CONF_SERVERS_MAX];
	size_t nservers;
};

/* What the lines since the last "[...]" belong to. */
enum sec_kind {
	SEC_NONE,	/* no section yet */
	SEC_FIXED,	/* one of the schema's */
	SEC_NETWORK,
	SEC_TUNNEL,	/* parse.tunnel is the one being read */
	SEC_SKIP,	/* unknown or bad, reported once: its keys are not */
};

struct parse {
	struct conf *c;
	FILE *f;
	FILE *errs;
	mode_t mode;
	unsigned line;		/* the line the reader returned last */
	unsigned nerr;		/* problems that make the file invalid */
	bool secret;		/* a password is in the file */
	err_t fatal;		/* ERR_NOMEM or ERR_IO: stop reading */
	int read_errno;
	enum sec_kind sec;
	char section[SECTION_CAP];	/* the name between the brackets */
	struct tunnel_slot *tunnel;
};

/* ---- messages ---------------------------------------------------------- */

__attribute__((format(printf, 3, 0)))
static void vsay(struct parse *p, unsigned line, const char *fmt,
		 va_list ap)
{
	if (!p->errs)
		return;
	if (line)
		fprintf(p->errs, "%s:%u: ", p->c->path, line);
	else
		fprintf(p->errs, "%s: ", p->c->path);
	vfprintf(p->errs, fmt, ap);
	fputc('\n', p->errs);
}

/* A message that does not by itself make the file invalid. */
__attribute__((format(printf, 3, 4)))
static void say(struct parse *p, unsigned line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(p, line, fmt, ap);
	va_end(ap);
}

/* A problem with the file: line 0 means "the file as a whole". */
__attribute__((format(printf, 3, 4)))
static void report(struct parse *p, unsigned line, const char *fmt, ...)
{
	va_list ap;

	p->nerr++;
	va_start(ap, fmt);
	vsay(p, line, fmt, ap);
	va_end(ap);
}

/* n in the largest unit of the table that divides it exactly. */
static void fmt_units(uint64_t n, const struct unit *u, char *buf, size_t len)
{
	for (; u->name; u++)
		if (u->mul == 1 || (n != 0 && n % u->mul == 0))
			break;
	snprintf(buf, len, "%" PRIu64 "%s", u->name ? n / u->mul : n,
		 u->name ? u->name : "");
}

static const struct unit *units_of(enum ktype t)
{
	return t == T_DURATION ? dur_units : size_units;
}

/* ---- small parsers ----------------------------------------------------- */

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' ||
	       ch == '\v' || ch == '\f';
}

static const char *skip_space(const char *s)
{
	while (is_space(*s))
		s++;
	return s;
}

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static bool is_alnum(char ch)
{
	return is_digit(ch) || (ch >= 'a' && ch <= 'z') ||
	       (ch >= 'A' && ch <= 'Z');
}

static bool is_id_char(char ch)
{
	return is_alnum(ch) || ch == '.' || ch == '_' || ch == '-';
}

/*
 * Leading decimal digits of s. strtoull alone would also take white space,
 * a sign (it negates "-1" into a huge value) and "0x"; those are refused by
 * requiring a digit first. false on overflow; *end is after the digits.
 */
static bool parse_digits(const char *s, uint64_t *n, const char **end)
{
	char *e;
	unsigned long long v;

	_Static_assert(sizeof(v) == sizeof(*n), "strtoull must give 64 bits");

	*n = 0;
	*end = s;
	if (!is_digit(*s))
		return true;
	errno = 0;
	v = strtoull(s, &e, 10);
	*end = e;
	if (errno == ERANGE)
		return false;
	*n = v;
	return true;
}

/* ---- host:port --------------------------------------------------------- */

enum hp_result { HP_OK, HP_BAD, HP_PORT };

static enum hp_result parse_port(const char *s, size_t n)
{
	uint64_t port;
	const char *end;
	bool fits = parse_digits(s, &port, &end);

	/* strtoull cannot run past n: what follows a port (NUL, '/', '?',
	 * '#') is never a digit. */
	if (n == 0 || end != s + n)
		return HP_BAD;
	if (!fits || port < 1 || port > 65535)
		return HP_PORT;
	return HP_OK;
}

/* "[v6]" of n characters: the address must parse. */
static bool v6_ok(const char *s, size_t n)
{
	char addr[64];
	unsigned char bin[16];

	if (n < 3 || n - 2 >= sizeof(addr) || s[n - 1] != ']')
		return false;
	memcpy(addr, s + 1, n - 2);
	addr[n - 2] = '\0';
	return inet_pton(AF_INET6, addr, bin) == 1;
}

static bool is_xdigit(char ch)
{
	return is_digit(ch) || (ch >= 'a' && ch <= 'f') ||
	       (ch >= 'A' && ch <= 'F');
}

/* A label inet_aton() reads as a number: decimal, octal or "0x" hex. */
static bool label_numeric(const char *s, size_t n)
{
	size_t i = 0;

	if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		for (i = 2; i < n && is_xdigit(s[i]); i++)
			;
		return i == n;
	}
	for (; i < n && is_digit(s[i]); i++)
		;
	return n > 0 && i == n;
}

static bool ipv4_ok(const char *s, size_t n)
{
	char addr[16];
	struct in_addr bin;

	if (n >= sizeof(addr))
		return false;
	memcpy(addr, s, n);
	addr[n] = '\0';
	return inet_pton(AF_INET, addr, &bin) == 1;
}

/*
 * A name whose last label is a number is an IPv4 address to the resolver,
 * and glibc's takes more than dotted quads: "10.1", "0x0a.1", and
 * "010.0.0.1" as octal 8.0.0.1. Only the one form inet_pton() takes is let
 * through, so that the address dialled is the address written.
 */
static bool hostname_ok(const char *s, size_t n)
{
	const char *dot;
	size_t last;

	if (n == 0 || n > HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '-' &&
		    s[i] != '_')
			return false;
	last = s[n - 1] == '.' ? n - 1 : n;	/* "name." is fully qualified */
	for (dot = s + last; dot > s && dot[-1] != '.'; dot--)
		;
	if (label_numeric(dot, (size_t)(s + last - dot)))
		return ipv4_ok(s, n);
	return true;
}

/* A bare IP literal (IPv6 without brackets) or a host name. */
static bool host_ok(const char *s)
{
	unsigned char bin[16];

	return inet_pton(AF_INET6, s, bin) == 1 || hostname_ok(s, strlen(s));
}

static bool id_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!is_id_char(*s))
			return false;
	return true;
}

/*
 * host:port in the n characters at s; the port may be left out when
 * need_port is false. The port's text is left in *port_at, *port_len.
 */
static enum hp_result parse_hostport(const char *s, size_t n, bool need_port,
				     const char **port_at, size_t *port_len)
{
	const char *colon;
	size_t hlen;

	if (n > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', n);

		hlen = rb ? (size_t)(rb - s) + 1 : n;
		if (!v6_ok(s, hlen))
			return HP_BAD;
	} else {
		colon = memchr(s, ':', n);
		hlen = colon ? (size_t)(colon - s) : n;
		if (!hostname_ok(s, hlen))
			return HP_BAD;
	}
	if (hlen == n)
		return need_port ? HP_BAD : HP_OK;
	if (s[hlen] != ':')
		return HP_BAD;
	*port_at = s + hlen + 1;
	*port_len = n - hlen - 1;
	return parse_port(*port_at, *port_len);
}

/* ---- value checks, one per type ---------------------------------------- */

static bool has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Checks shared by every text type. Secrets are never echoed. */
static bool check_text(struct parse *p, unsigned line,
		       const struct key_spec *s, const char *text)
{
	size_t len = strlen(text);

	if (has_control(text)) {
		report(p, line, "%s: contains a control character", s->key);
		return false;
	}
	if (len > s->max) {
		report(p, line, "%s: too long (%zu characters, max %" PRIu64
		       ")", s->key, len, s->max);
		return false;
	}
	return true;
}

static bool check_string(struct parse *p, unsigned line,
			 const struct key_spec *s, const char *text)
{
	if (s->flags & F_ID) {
		for (const char *t = text; *t; t++) {
			if (is_id_char(*t))
				continue;
			report(p, line, "%s: '%s' may only contain letters, "
			       "digits, '.', '_' and '-'", s->key, text);
			return false;
		}
	}
	if ((s->flags & F_NOCOLON) && strchr(text, ':')) {
		report(p, line, "%s: must not contain ':' (Basic "
		       "authentication cannot carry it)", s->key);
		return false;
	}
	return true;
}

static bool check_hostport(struct parse *p, unsigned line,
			   const struct key_spec *s, const char *text)
{
	const char *port = "";
	size_t plen = 0;

	switch (parse_hostport(text, strlen(text), true, &port, &plen)) {
	case HP_OK:
		return true;
	case HP_PORT:
		report(p, line, "%s: port %.*s is out of range 1..65535",
		       s->key, (int)plen, port);
		return false;
	case HP_BAD:
		break;
	}
	report(p, line, "%s: '%s' is not host:port", s->key, text);
	return false;
}

static bool check_url(struct parse *p, unsigned line,
		      const struct key_spec *s, const char *text)
{
	const char *auth = text + 6, *port = "";
	size_t alen, plen = 0;

	if (strncmp(text, "wss://", 6) != 0) {
		report(p, line, "%s: '%s' must start with wss://", s->key, text);
		return false;
	}
	if (strchr(text, ' ')) {
		report(p, line, "%s: '%s' contains a space", s->key, text);
		return false;
	}
	alen = strcspn(auth, "/?#");
	if (alen == 0) {
		report(p, line, "%s: '%s' has no host", s->key, text);
		return false;
	}
	switch (parse_hostport(auth, alen, false, &port, &plen)) {
	case HP_OK:
		return true;
	case HP_PORT:
		report(p, line, "%s: port %.*s is out of range 1..65535",
		       s->key, (int)plen, port);
		return false;
	case HP_BAD:
		break;
	}
	report(p, line, "%s: '%s' has an invalid host or port", s->key, text);
	return false;
}

static bool check_path(struct parse *p, unsigned line,
		       const struct key_spec *s, const char *text)
{
	if ((s->flags & F_ABSOLUTE) && text[0] != '/') {
		report(p, line, "%s: '%s' is not an absolute path", s->key,
		       text);
		return false;
	}
	return true;
}

static bool check_host(struct parse *p, unsigned line,
		       const struct key_spec *s, const char *text)
{
	if (host_ok(text))
		return true;
	report(p, line, "%s: '%s' is not an IP address or host name", s->key,
	       text);
	return false;
}

/* canon is conf_ip_canon()'s: IPv4 dotted, or IPv6 but not IPv4-mapped. */
static bool ip_unicast(const char *canon)
{
	struct in_addr a4;
	struct in6_addr a6;
	uint32_t h;

	if (inet_pton(AF_INET, canon, &a4) == 1) {
		h = ntohl(a4.s_addr);
		return (h >> 24) != 0 && (h >> 28) != 0xe && h != 0xffffffffu;
	}
	return inet_pton(AF_INET6, canon, &a6) == 1 &&
	       !IN6_IS_ADDR_UNSPECIFIED(&a6) && !IN6_IS_ADDR_MULTICAST(&a6);
}

/* A tunnel's far end is one server: 0.0.0.0 would quietly be this host,
 * and a multicast or broadcast address no server at all. */
static bool check_ip(struct parse *p, unsigned line, const struct key_spec *s,
		     const char *text)
{
	char canon[CONF_IP_MAX];

	if (!conf_ip_canon(text, canon, sizeof(canon))) {
		report(p, line, "%s: '%s' is not an IPv4 or IPv6 address",
		       s->key, text);
		return false;
	}
	if (!ip_unicast(canon)) {
		report(p, line, "%s: '%s' is not the address of a single host "
		       "(unspecified, multicast or broadcast)", s->key, text);
		return false;
	}
	return true;
}

static bool check_int(struct parse *p, unsigned line,
		      const struct key_spec *s, const char *text, uint64_t *num)
{
	const char *end;
	uint64_t n;
	bool fits = parse_digits(text, &n, &end);

	if (end == text || *end != '\0') {
		report(p, line, "%s: '%s' is not a number", s->key, text);
		return false;
	}
	if (!fits || n < s->min || n > s->max) {
		report(p, line, "%s: %s is out of range %" PRIu64 "..%" PRIu64,
		       s->key, text, s->min, s->max);
		return false;
	}
	*num = n;
	return true;
}

/* A number and a unit from the table ("" is a unit: plain bytes). */
static bool check_scaled(struct parse *p, unsigned line,
			 const struct key_spec *s, const char *text,
			 uint64_t *num)
{
	const struct unit *u = units_of(s->type);
	const char *end;
	uint64_t n;
	bool fits = parse_digits(text, &n, &end);
	char lo[32], hi[32];

	while (u->name && strcmp(end, u->name) != 0)
		u++;
	if (end == text || !u->name) {
		report(p, line, s->type == T_DURATION ?
		       "%s: '%s' is not a duration (a number and a unit: "
		       "ms, s, m or h)" :
		       "%s: '%s' is not a size (a number, optionally with "
		       "K, M or G)", s->key, text);
		return false;
	}
	if (fits && n <= UINT64_MAX / u->mul)
		*num = n * u->mul;
	if (!fits || n > UINT64_MAX / u->mul || *num < s->min ||
	    *num > s->max) {
		fmt_units(s->min, units_of(s->type), lo, sizeof(lo));
		fmt_units(s->max, units_of(s->type), hi, sizeof(hi));
		report(p, line, "%s: %s is out of range %s..%s", s->key, text,
		       lo, hi);
		return false;
	}
	return true;
}

static bool check_enum(struct parse *p, unsigned line,
		       const struct key_spec *s, const char *text,
		       uint64_t *num)
{
	char list[128];
	size_t used = 0;

	for (size_t i = 0; s->words[i]; i++) {
		if (strcmp(text, s->words[i]) == 0) {
			*num = i;
			return true;
		}
	}
	list[0] = '\0';
	for (size_t i = 0; s->words[i] && used < sizeof(list); i++) {
		int w = snprintf(list + used, sizeof(list) - used, "%s%s",
				 i ? ", " : "", s->words[i]);

		if (w < 0)
			break;
		used += (size_t)w;
	}
	report(p, line, "%s: '%s' is not one of %s", s->key, text, list);
	return false;
}

static bool is_text(enum ktype t)
{
	return t == T_STRING || t == T_URL || t == T_HOSTPORT || t == T_PATH ||
	       t == T_HOST || t == T_IP;
}

/* Empty text: fine only for optional text keys that allow length 0. */
static bool check_empty(struct parse *p, unsigned line,
			const struct key_spec *s)
{
	if (s->required)
		report(p, line, "%s: empty value (required key)", s->key);
	else if (is_text(s->type) && s->min == 0)
		return true;
	else
		report(p, line, "%s: empty value", s->key);
	return false;
}

static bool check_value(struct parse *p, unsigned line,
			const struct key_spec *s, const char *text,
			uint64_t *num)
{
	*num = 0;
	if (text[0] == '\0')
		return check_empty(p, line, s);
	if (is_text(s->type) && !check_text(p, line, s, text))
		return false;
	switch (s->type) {
	case T_STRING:		return check_string(p, line, s, text);
	case T_URL:		return check_url(p, line, s, text);
	case T_HOSTPORT:	return check_hostport(p, line, s, text);
	case T_PATH:		return check_path(p, line, s, text);
	case T_DURATION:
	case T_SIZE:		return check_scaled(p, line, s, text, num);
	case T_ENUM:		return check_enum(p, line, s, text, num);
	case T_INT:		return check_int(p, line, s, text, num);
	case T_HOST:		return check_host(p, line, s, text);
	case T_IP:		return check_ip(p, line, s, text);
	}
	return false;
}

/* Stores a checked value; the only allocation per key. */
static void set_val(struct parse *p, enum conf_key k, const char *text,
		    uint64_t num)
{
	struct val *v = &p->c->v[k];
	char *copy = strdup(text);

	if (!copy) {
		p->fatal = ERR_NOMEM;
		return;
	}
	free(v->str);
	v->str = copy;
	v->num = num;
	v->ok = true;
}

/* ---- the reader: line numbers, long lines, syntax, sections ------------ */

static bool section_known(const char *name)
{
	for (size_t k = 0; k < CONF__COUNT; k++)
		if (strcmp(schema[k].section, name) == 0)
			return true;
	return false;
}

static void syntax_error(struct parse *p)
{
	report(p, p->line, "syntax error: expected [section] or key = value");
}

/* "[tunnel NAME]": a new slot, unless the name is bad, taken or one too
 * many; then the section's keys are skipped (the header was reported). */
static void open_tunnel(struct parse *p, const char *name)
{
	struct conf *c = p->c;
	struct tunnel_slot *t;
	size_t len = strlen(name);

	if (len == 0) {
		report(p, p->line, "tunnel section without a name (write "
		       "[tunnel NAME])");
		return;
	}
	if (len > ID_MAX) {
		report(p, p->line, "tunnel name too long (%zu characters, "
		       "max %d)", len, ID_MAX);
		return;
	}
	if (!id_ok(name)) {
		report(p, p->line, "tunnel name '%s' may only contain letters, "
		       "digits, '.', '_' and '-'", name);
		return;
	}
	for (size_t i = 0; i < c->ntunnels; i++) {
		if (strcmp(c->tunnels[i].name, name) == 0) {
			report(p, p->line, "duplicate tunnel '%s' (first at "
			       "line %u)", name, c->tunnels[i].line);
			return;
		}
	}
	if (c->ntunnels == CONF_TUNNELS_MAX) {
		report(p, p->line, "too many tunnels (max %d)",
		       CONF_TUNNELS_MAX);
		return;
	}
	t = &c->tunnels[c->ntunnels++];
	memcpy(t->name, name, len + 1);
	t->line = p->line;
	p->tunnel = t;
	p->sec = SEC_TUNNEL;
}

/* The n characters between the brackets become the current section. */
static void open_section(struct parse *p, const char *name, size_t n)
{
	char *sec = p->section;

	p->sec = SEC_SKIP;
	p->tunnel = NULL;
	if (n >= sizeof(p->section)) {	/* longer than any line */
		syntax_error(p);
		return;
	}
	memcpy(sec, name, n);
	sec[n] = '\0';
	if (strncmp(sec, "tunnel", 6) == 0 && (n == 6 || is_space(sec[6])))
		open_tunnel(p, skip_space(sec + 6));
	else if (strcmp(sec, "network") == 0)
		p->sec = SEC_NETWORK;
	else if (section_known(sec))
		p->sec = SEC_FIXED;
	else
		report(p, p->line, "unknown section [%s]", sec);
}

/* "[name]" with nothing after it; an unknown or bad name is reported here,
 * once, and its keys are then skipped by the handler. A bad line leaves
 * the section as it was, as it does for inih. */
static bool check_section_line(struct parse *p, const char *s)
{
	const char *rb = strchr(s, ']');

	if (!rb || rb == s + 1 || *skip_space(rb + 1) != '\0') {
		syntax_error(p);
		return false;
	}
	open_section(p, s + 1, (size_t)(rb - s - 1));
	return true;
}

/* "name = value". inih splits at the first '=' or ':', so a ':' in front
 * of the '=' would give a different key than the one the operator meant. */
static bool check_key_line(struct parse *p, const char *s)
{
	const char *eq = strchr(s, '='), *colon = strchr(s, ':');
	const char *end = eq;

	if (!eq || (colon && colon < eq)) {
		syntax_error(p);
		return false;
	}
	while (end > s && is_space(end[-1]))
		end--;
	if (end == s) {
		syntax_error(p);
		return false;
	}
	if (end - s > KEY_NAME_MAX) {
		report(p, p->line, "key name too long (max %d characters)",
		       KEY_NAME_MAX);
		return false;
	}
	return true;
}

/* Classifies a line as inih will read it; false: do not pass it on. */
static bool check_line(struct parse *p, const char *s)
{
	if (p->line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;	/* UTF-8 BOM, which inih skips too */
	s = skip_space(s);
	if (*s == '\0' || *s == '#' || *s == ';')
		return true;
	if (*s == '[')
		return check_section_line(p, s);
	return check_key_line(p, s);
}

struct raw_line {
	size_t len;	/* bytes read, without the '\n' */
	bool nul;	/* held a NUL byte */
};

/*
 * One physical line into buf (at most cap - 1 bytes kept, the rest read
 * and dropped), like fgets but counting what was read, so an over-long
 * line or a NUL byte is seen exactly and the next call starts on the next
 * line. false at the end of the file (or on a read error).
 */
static bool get_line(FILE *f, char *buf, size_t cap, struct raw_line *rl)
{
	size_t kept = 0;
	bool eol = false;
	int ch;

	rl->len = 0;
	rl->nul = false;
	while ((ch = getc(f)) != EOF) {
		if (ch == '\n') {
			eol = true;
			break;
		}
		rl->nul |= ch == '\0';
		if (kept + 1 < cap)
			buf[kept++] = (char)ch;
		rl->len++;
	}
	buf[kept] = '\0';
	return eol || rl->len > 0;
}

/* inih's ini_reader: the next line, or "" in place of a bad one. */
static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	struct raw_line rl;
	size_t max;

	/* inih needs room for "\r\n" and the NUL after the longest line. */
	if (p->fatal != ERR_OK || num < 4)
		return NULL;
	max = (size_t)num - 3;
	if (!get_line(p->f, str, (size_t)num, &rl)) {
		if (ferror(p->f)) {
			p->read_errno = errno;
			p->fatal = ERR_IO;
		}
		return NULL;
	}
	p->line++;
	if (rl.len > 0 && rl.len <= (size_t)num - 1 && str[rl.len - 1] == '\r')
		rl.len--;
	if (rl.len > max)
		report(p, p->line, "line too long (max %zu characters)", max);
	else if (rl.nul)
		report(p, p->line, "line contains a NUL byte");
	else if (check_line(p, str))
		return str;
	str[0] = '\0';
	return str;
}

/* ---- the handler: one call per key line -------------------------------- */

static int find_key(const char *section, const char *name)
{
	for (int k = 0; k < CONF__COUNT; k++)
		if (strcmp(schema[k].section, section) == 0 &&
		    strcmp(schema[k].key, name) == 0)
			return k;
	return -1;
}

/* The first of two lines with one key is the one that counts, even when
 * its value was bad. false for the second. */
static bool first_time(struct parse *p, const char *name, unsigned *line)
{
	if (*line) {
		report(p, p->line, "duplicate key '%s' (first at line %u)",
		       name, *line);
		return false;
	}
	*line = p->line;
	return true;
}

static void fixed_key(struct parse *p, const char *name, const char *value)
{
	int k = find_key(p->section, name);
	uint64_t num;

	if (k < 0) {
		report(p, p->line, "unknown key '%s' in [%s]", name,
		       p->section);
		return;
	}
	if (!first_time(p, name, &p->c->v[k].line))
		return;
	if ((schema[k].flags & F_SECRET) && value[0])
		p->secret = true;
	if (check_value(p, p->line, &schema[k], value, &num))
		set_val(p, (enum conf_key)k, value, num);
}

/*
 * "NAME = ADDRESS". Names are matched ignoring case: COM takes them from a
 * DNS name (PROTOCOL.md §3.1), where "PBX2" and "pbx2" are one.
 */
static void network_key(struct parse *p, const char *name, const char *value)
{
	struct conf *c = p->c;
	struct key_spec spec = server_spec;
	struct server_slot *sv;
	size_t len = strlen(name);
	uint64_t num;

	_Static_assert(KEY_NAME_MAX <= ID_MAX, "a key name fits a slot");
	if (len > ID_MAX || !id_ok(name)) {
		report(p, p->line, "server name '%s' may only contain letters, "
		       "digits, '.', '_' and '-'", name);
		return;
	}
	for (size_t i = 0; i < c->nservers; i++) {
		if (strcasecmp(c->servers[i].name, name) == 0) {
			report(p, p->line, "duplicate key '%s' (first at line "
			       "%d)", name, c->servers[i].pub.line);
			return;
		}
	}
	if (c->nservers == CONF_SERVERS_MAX) {
		report(p, p->line, "too many network servers (max %d)",
		       CONF_SERVERS_MAX);
		return;
	}
	sv = &c->servers[c->nservers++];
	memcpy(sv->name, name, len + 1);
	sv->pub.name = sv->name;
	sv->pub.address = sv->address;
	sv->pub.line = (int)p->line;
	spec.key = name;
	/* check_text() held the value to HOST_MAX characters. */
	if (check_value(p, p->line, &spec, value, &num))
		memcpy(sv->address, value, strlen(value) + 1);
}

static void tunnel_key(struct parse *p, const char *name, const char *value)
{
	struct tunnel_slot *t = p->tunnel;
	struct tval *v;
	int k = 0;

	while (k < TK__COUNT && strcmp(tunnel_schema[k].key, name) != 0)
		k++;
	if (k == TK__COUNT) {
		report(p, p->line, "unknown key '%s' in [%s]", name,
		       p->section);
		return;
	}
	v = &t->k[k];
	if (!first_time(p, name, &v->line) ||
	    !check_value(p, p->line, &tunnel_schema[k], value, &v->num))
		return;
	if (k == TK_ADDRESS &&
	    !conf_ip_canon(value, t->address, sizeof(t->address)))
		return;		/* check_value() said it was one */
	v->ok = true;
}

/* Called by inih right after reader() returned this key's line. inih's
 * section is cut at 49 characters: the reader's p->section is whole. */
static int handler(void *user, const char *section, const char *name,
		   const char *value)
{
	struct parse *p = user;

	(void)section;
	if (!value)	/* no-value lines are off; never happens */
		return 1;
	switch (p->sec) {
	case SEC_NONE:
		report(p, p->line, "key '%s' is outside any section", name);
		break;
	case SEC_FIXED:
		fixed_key(p, name, value);
		break;
	case SEC_NETWORK:
		network_key(p, name, value);
		break;
	case SEC_TUNNEL:
		tunnel_key(p, name, value);
		break;
	case SEC_SKIP:	/* the section was reported already */
		break;
	}
	return 1;
}

/*
 * Debian's libinih (55-1) turns its compile-time options into run-time
 * variables and defaults to inline ';' comments and indented continuation
 * lines. Both change values silently (a password "a ;b" would become "a"),
 * so the dialect is pinned here. conf is the agent's only inih user.
 */
static void pin_ini_dialect(void)
{
	ini_allow_inline_comments = false;
	ini_allow_multiline = false;
	ini_allow_no_value = false;
	ini_allow_bom = true;
	ini_stop_on_first_error = false;
}

static err_t parse_file(struct parse *p)
{
	int r;

	pin_ini_dialect();
	r = ini_parse_stream(reader, p, handler, p);
	if (p->fatal == ERR_IO)
		say(p, 0, "read error: %s", strerror(p->read_errno));
	if (p->fatal != ERR_OK)
		return p->fatal;
	if (r == -2)
		return ERR_NOMEM;
	/* The reader passes inih only lines it accepts; should inih still
	 * disagree, the file is not let through unreported. */
	if (r > 0 && p->nerr == 0)
		report(p, (unsigned)r, "syntax error");
	return ERR_OK;
}

/* ---- after the last line ----------------------------------------------- */

static unsigned later(unsigned a, unsigned b) { return a > b ? a : b; }

static void check_required(struct parse *p)
{
	for (int k = 0; k < CONF__COUNT; k++)
		if (schema[k].required && !p->c->v[k].line)
			report(p, 0, "missing required key [%s] %s",
			       schema[k].section, schema[k].key);
}

/* Missing keys, the application's port; reported on the [tunnel] line. */
static void finish_tunnel(struct parse *p, struct tunnel_slot *t)
{
	struct tval *app = &t->k[TK_APPLICATION], *addr = &t->k[TK_ADDRESS];
	struct tval *port = &t->k[TK_PORT];

	if (!app->line)
		report(p, t->line, "missing required key [tunnel %s] "
		       "application", t->name);
	if (!addr->line)
		report(p, t->line, "missing required key [tunnel %s] address",
		       t->name);
	if (!port->line && app->ok) {
		port->num = app_ports[app->num];
		port->ok = port->num != 0;
		if (app->num == APP_CUSTOM)
			report(p, t->line, "missing required key [tunnel %s] "
			       "port (application custom has no default)",
			       t->name);
	}
	if (!app->ok || !addr->ok || !port->ok)
		return;
	t->pub.name = t->name;
	t->pub.application = app_words[app->num];
	t->pub.address = t->address;
	t->pub.port = (uint16_t)port->num;
	t->pub.line = (int)t->line;
}

/* One address and port is one server: a second tunnel to it would only
 * make the policy depend on which of the two is looked at. */
static void check_targets(struct parse *p, const struct tunnel_slot *t)
{
	const struct tunnel_slot *first = p->c->tunnels;
	bool v6 = strchr(t->address, ':') != NULL;

	for (; first < t; first++) {
		if (!first->pub.name || first->pub.port != t->pub.port ||
		    strcmp(first->address, t->address) != 0)
			continue;
		report(p, later(t->k[TK_ADDRESS].line, t->k[TK_PORT].line),
		       "duplicate tunnel target %s%s%s:%u (first in [tunnel "
		       "%s] at line %u)", v6 ? "[" : "", t->address,
		       v6 ? "]" : "", (unsigned)t->pub.port, first->name,
		       first->line);
		return;
	}
}

static void finish_tunnels(struct parse *p)
{
	for (size_t i = 0; i < p->c->ntunnels; i++) {
		finish_tunnel(p, &p->c->tunnels[i]);
		if (p->c->tunnels[i].pub.name)
			check_targets(p, &p->c->tunnels[i]);
	}
}

static void apply_defaults(struct parse *p)
{
	uint64_t num;

	for (int k = 0; k < CONF__COUNT && !p->fatal; k++) {
		if (p->c->v[k].line || !schema[k].def)
			continue;
		if (check_value(p, 0, &schema[k], schema[k].def, &num))
			set_val(p, (enum conf_key)k, schema[k].def, num);
	}
}

/* The profile's values for keys the file left out; needs a valid profile. */
static void apply_platform(struct parse *p)
{
	const struct platform_ops *pl;
	struct val *v = p->c->v;
	char size[32];

	if (!v[CONF_SYSTEM_PROFILE].ok)
		return;
	pl = platform_find(v[CONF_SYSTEM_PROFILE].str);
	if (!pl) {	/* the schema's words and platform.c disagree */
		report(p, v[CONF_SYSTEM_PROFILE].line,
		       "profile: '%s' has no platform table",
		       v[CONF_SYSTEM_PROFILE].str);
		return;
	}
	p->c->plat = pl;
	{
		const struct { enum conf_key k; const char *path; } paths[] = {
			{ CONF_SYSTEM_STATE_DIR, pl->state_dir },
			{ CONF_SYSTEM_CONTROL_SOCKET, pl->control_socket },
			{ CONF_LOG_FILE, pl->log_file },
			{ CONF_JOBS_WORK_DIR, pl->work_dir },
			{ CONF_JOBS_STAGING_DIR, pl->staging_dir },
			{ CONF_LOGS_STORE_DIR, pl->logs_store_dir },
			{ CONF_CUSTOM_PHONE_DIR, pl->phone_dir },
			{ CONF_CUSTOM_TEMPLATE_DIR, pl->template_dir },
		};

		for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
			if (!v[paths[i].k].line)
				set_val(p, paths[i].k, paths[i].path, 0);
	}
	if (!v[CONF_LOG_MAX_SIZE].line) {
		fmt_units(pl->log_max_size, size_units, size, sizeof(size));
		set_val(p, CONF_LOG_MAX_SIZE, size, pl->log_max_size);
	}
	if (!v[CONF_LOGS_MAX_TOTAL].line) {
		fmt_units(pl->logs_max_total, size_units, size, sizeof(size));
		set_val(p, CONF_LOGS_MAX_TOTAL, size, pl->logs_max_total);
	}
	if (!v[CONF_LOGS_FILE_MAX].line) {
		fmt_units(pl->logs_file_max, size_units, size, sizeof(size));
		set_val(p, CONF_LOGS_FILE_MAX, size, pl->logs_file_max);
	}
	if (!v[CONF_LOGS_MAX_DAY].line) {
		fmt_units(pl->logs_max_day, size_units, size, sizeof(size));
		set_val(p, CONF_LOGS_MAX_DAY, size, pl->logs_max_day);
	}
}

/* root + "/" + rel, without doubling the slash of root "/". */
static void resolve_one(struct parse *p, enum conf_key k, const char *root)
{
	struct val *v = &p->c->v[k];
	size_t rlen = strlen(root), len;
	const char *sep = root[rlen - 1] == '/' ? "" : "/";
	char *joined;

	len = rlen + strlen(sep) + strlen(v->str);
	if (len >= PATH_CAP) {
		report(p, v->line, "%s: path under root is too long (max %d "
		       "characters)", schema[k].key, PATH_CAP - 1);
		v->ok = false;
		return;
	}
	joined = malloc(len + 1);
	if (!joined) {
		p->fatal = ERR_NOMEM;
		return;
	}
	memcpy(joined, root, rlen);
	memcpy(joined + rlen, sep, strlen(sep));
	memcpy(joined + rlen + strlen(sep), v->str, strlen(v->str) + 1);
	free(v->str);
	v->str = joined;
}

static void resolve_paths(struct parse *p)
{
	const struct val *root = &p->c->v[CONF_SYSTEM_ROOT];

	if (!root->ok)
		return;
	for (int k = 0; k < CONF__COUNT && !p->fatal; k++) {
		const struct val *v = &p->c->v[k];

		if (schema[k].type == T_PATH && k != CONF_SYSTEM_ROOT &&
		    v->ok && v->str[0] && v->str[0] != '/')
			resolve_one(p, (enum conf_key)k, root->str);
	}
}

struct order_rule {
	enum conf_key lo, hi;
	bool strict;	/* hi > lo rather than hi >= lo */
};

static const struct order_rule order_rules[] = {
	{ CONF_COM_PING_INTERVAL, CONF_COM_IDLE_TIMEOUT, true },
	{ CONF_COM_RETRY_MIN, CONF_COM_RETRY_MAX, false },
	{ CONF_COM_AUTH_RETRY_MIN, CONF_COM_AUTH_RETRY_MAX, false },
};

static void check_order(struct parse *p, const struct order_rule *r)
{
	const struct val *lo = &p->c->v[r->lo], *hi = &p->c->v[r->hi];

	if (!lo->ok || !hi->ok)
		return;	/* already reported */
	if (hi->num > lo->num || (!r->strict && hi->num == lo->num))
		return;
	report(p, later(lo->line, hi->line), "%s: %s must %s %s %s",
	       schema[r->hi].key, hi->str,
	       r->strict ? "be longer than" : "not be shorter than",
	       schema[r->lo].key, lo->str);
}

static bool nonempty(const struct val *v) { return v->ok && v->str[0]; }

/* In the file but with a bad value: reported already, not again. */
static bool invalid(const struct val *v) { return v->line && !v->ok; }

/* Proxy credentials only as a pair, and only with a proxy to send them to. */
static void check_proxy(struct parse *p)
{
	const struct val *proxy = &p->c->v[CONF_COM_PROXY];
	const struct val *user = &p->c->v[CONF_COM_PROXY_USER];
	const struct val *pass = &p->c->v[CONF_COM_PROXY_PASSWORD];
	bool has_user = nonempty(user), has_pass = nonempty(pass);

	if (has_user && !has_pass && !invalid(pass))
		report(p, user->line, "proxy_user: set without proxy_password");
	if (has_pass && !has_user && !invalid(user))
		report(p, pass->line, "proxy_password: set without proxy_user");
	if (nonempty(proxy) || invalid(proxy))
		return;
	if (has_user)
		report(p, user->line, "proxy_user: set without proxy");
	if (has_pass)
		report(p, pass->line, "proxy_password: set without proxy");
}

/* COM names this system itself by its own name or none (PROTOCOL.md
 * §3.1), so a network server by that name could never be reached. */
static void check_servers(struct parse *p)
{
	const struct val *own = &p->c->v[CONF_SYSTEM_SYSTEM_NAME];

	if (!own->ok)
		return;
	for (size_t i = 0; i < p->c->nservers; i++) {
		const struct server_slot *sv = &p->c->servers[i];

		if (strcasecmp(sv->name, own->str) == 0)
			report(p, (unsigned)sv->pub.line, "server '%s' has "
			       "this system's own name (system_name)",
			       sv->name);
	}
}

/* Profiles that keep bulk data on one volume (the IP500 V2's SD card):
 * every bulk directory must be under it, or a release or the log store
 * would fill the small flash. A ".." component cannot be judged by its
 * text, so it is refused there too. */
static void check_volume(struct parse *p)
{
	static const enum conf_key keys[] = {
		CONF_JOBS_WORK_DIR, CONF_JOBS_STAGING_DIR, CONF_LOGS_STORE_DIR,
		CONF_CUSTOM_PHONE_DIR, CONF_CUSTOM_TEMPLATE_DIR,
	};
	const struct platform_ops *pl = p->c->plat;
	const struct val *root = &p->c->v[CONF_SYSTEM_ROOT];
	char vol[PATH_CAP];
	size_t rlen, n;
	int w;

	if (!pl || !pl->data_volume || !root->ok)
		return;
	rlen = strlen(root->str);
	w = snprintf(vol, sizeof(vol), "%s%s%s", root->str,
		     rlen && root->str[rlen - 1] == '/' ? "" : "/",
		     pl->data_volume);
	if (w < 0 || (size_t)w >= sizeof(vol))
		return;
	n = (size_t)w;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const struct val *v = &p->c->v[keys[i]];

		if (!v->ok)
			continue;
		if (strncmp(v->str, vol, n) == 0 &&
		    (v->str[n] == '/' || v->str[n] == '\0') &&
		    !strstr(v->str, "/../") &&
		    !(strlen(v->str) >= 3 &&
		      !strcmp(v->str + strlen(v->str) - 3, "/..")))
			continue;
		report(p, v->line, "%s: %s is not on %s (%s): the %s keeps its "
		       "bulk data there", schema[keys[i]].key, v->str,
		       pl->data_volume_label, vol, pl->label);
	}
}

static void check_rules(struct parse *p)
{
	for (size_t i = 0; i < sizeof(order_rules) / sizeof(order_rules[0]); i++)
		check_order(p, &order_rules[i]);
	check_proxy(p);
	check_servers(p);
	check_volume(p);
}

/* Secrets in a file everyone can read are refused, not just warned about. */
static bool mode_ok(struct parse *p)
{
	if (!p->secret || !(p->mode & S_IROTH))
		return true;
	say(p, 0, "file is world-readable and holds a password; "
	    "run: chmod o-r %s", p->c->path);
	return false;
}

static err_t finish(struct parse *p)
{
	bool perm_ok;

	check_required(p);
	finish_tunnels(p);
	apply_defaults(p);
	apply_platform(p);
	resolve_paths(p);
	check_rules(p);
	perm_ok = mode_ok(p);
	if (p->fatal != ERR_OK)
		return p->fatal;
	if (p->nerr)
		return ERR_INVAL;
	return perm_ok ? ERR_OK : ERR_PERM;
}

/* ---- public ------------------------------------------------------------ */

static err_t open_file(struct parse *p)
{
	struct stat st;

	p->f = fopen(p->c->path, "r");
	if (!p->f) {
		say(p, 0, "cannot open: %s", strerror(errno));
		return ERR_IO;
	}
	if (fstat(fileno(p->f), &st) != 0) {
		say(p, 0, "cannot stat: %s", strerror(errno));
		return ERR_IO;
	}
	p->mode = st.st_mode;
	return ERR_OK;
}

err_t conf_load(const char *path, FILE *errs, struct conf **out)
{
	struct parse p = { .errs = errs };
	err_t e;

	if (!out || !path)
		return ERR_INVAL;
	*out = NULL;
	p.c = calloc(1, sizeof(*p.c));
	if (!p.c)
		return ERR_NOMEM;
	p.c->path = strdup(path);
	if (!p.c->path) {
		e = ERR_NOMEM;
		goto out;
	}
	e = open_file(&p);
	if (e == ERR_OK)
		e = parse_file(&p);
	if (e == ERR_OK)
		e = finish(&p);
out:
	if (p.f)
		fclose(p.f);
	if (e == ERR_OK)
		*out = p.c;
	else
		conf_free(p.c);
	return e;
}

void conf_free(struct conf *c)
{
	if (!c)
		return;
	for (int k = 0; k < CONF__COUNT; k++)
		free(c->v[k].str);
	free(c->path);
	free(c);
}

static bool key_ok(enum conf_key k)
{
	return (unsigned)k < CONF__COUNT;
}

const char *conf_str(const struct conf *c, enum conf_key k)
{
	if (!c || !key_ok(k) || !c->v[k].str)
		return "";
	return c->v[k].str;
}

uint64_t conf_num(const struct conf *c, enum conf_key k)
{
	return c && key_ok(k) ? c->v[k].num : 0;
}

bool conf_isset(const struct conf *c, enum conf_key k)
{
	return c && key_ok(k) && c->v[k].line != 0;
}

const struct platform_ops *conf_platform(const struct conf *c)
{
	return c ? c->plat : NULL;
}

const char *conf_path(const struct conf *c)
{
	return c ? c->path : "";
}

size_t conf_tunnel_count(const struct conf *c)
{
	return c ? c->ntunnels : 0;
}

const struct conf_tunnel *conf_tunnel_at(const struct conf *c, size_t i)
{
	return c && i < c->ntunnels ? &c->tunnels[i].pub : NULL;
}

size_t conf_server_count(const struct conf *c)
{
	return c ? c->nservers : 0;
}

const struct conf_server *conf_server_at(const struct conf *c, size_t i)
{
	return c && i < c->nservers ? &c->servers[i].pub : NULL;
}

/* ---- the key list: `comagent config-keys`, comagent(8) ---------------- */

static const char *type_name(const struct key_spec *s)
{
	switch (s->type) {
	case T_STRING:		return "string";
	case T_URL:		return "URL (wss://HOST[:PORT]/PATH)";
	case T_HOSTPORT:	return "HOST:PORT";
	case T_DURATION:	return "duration (a number and ms, s, m or h)";
	case T_SIZE:		return "size (bytes, or a number and K, M or G)";
	case T_ENUM:		return "word";
	case T_PATH:		return s->flags & F_ABSOLUTE ? "absolute path" :
				       "path (a relative one is under [system] "
				       "root)";
	case T_INT:		return "integer";
	case T_HOST:		return "IPv4 or IPv6 address or host name";
	case T_IP:		return "IPv4 or IPv6 address";
	}
	return "?";
}

/*
 * An F_PLATFORM key's default in one profile's table, as the text
 * apply_platform() gives it (keep the two in step; test_conf checks they
 * agree). false for a key the table holds no value for.
 */
static bool platform_default(const struct platform_ops *pl, enum conf_key k,
			     char *buf, size_t len)
{
	const char *path = NULL;
	uint64_t size = 0;

	switch (k) {
	case CONF_SYSTEM_STATE_DIR:	 path = pl->state_dir; break;
	case CONF_SYSTEM_CONTROL_SOCKET: path = pl->control_socket; break;
	case CONF_LOG_FILE:		 path = pl->log_file; break;
	case CONF_JOBS_WORK_DIR:	 path = pl->work_dir; break;
	case CONF_JOBS_STAGING_DIR:	 path = pl->staging_dir; break;
	case CONF_LOGS_STORE_DIR:	 path = pl->logs_store_dir; break;
	case CONF_CUSTOM_PHONE_DIR:	 path = pl->phone_dir; break;
	case CONF_CUSTOM_TEMPLATE_DIR:	 path = pl->template_dir; break;
	case CONF_LOG_MAX_SIZE:		 size = pl->log_max_size; break;
	case CONF_LOGS_MAX_TOTAL:	 size = pl->logs_max_total; break;
	case CONF_LOGS_MAX_DAY:		 size = pl->logs_max_day; break;
	case CONF_LOGS_FILE_MAX:	 size = pl->logs_file_max; break;
	default:			 return false;
	}
	if (path)
		snprintf(buf, len, "%s", *path ? path : "(empty)");
	else
		fmt_units(size, size_units, buf, len);
	return true;
}

/* k: the key's enum conf_key, or -1 for a key outside schema[]. */
static void print_default(FILE *f, const struct key_spec *s, int k)
{
	char buf[PATH_CAP];
	const char *sep = "";

	fputs("      default:  ", f);
	if (s->flags & F_PLATFORM) {
		/* Every profile's, so one page serves both. */
		fputs("platform default (", f);
		for (size_t i = 0; k >= 0 && profile_words[i]; i++) {
			const struct platform_ops *pl =
				platform_find(profile_words[i]);

			if (pl && platform_default(pl, (enum conf_key)k, buf,
						   sizeof(buf))) {
				fprintf(f, "%s%s: %s", sep, profile_words[i],
					buf);
				sep = "; ";
			}
		}
		fputs(")\n", f);
	} else if (!s->def) {
		fputs("none\n", f);
	} else {
		fprintf(f, "%s\n", *s->def ? s->def : "(empty)");
	}
}

static void print_bounds(FILE *f, const struct key_spec *s)
{
	char lo[32], hi[32];

	fputs("      bounds:   ", f);
	switch (s->type) {
	case T_DURATION:
	case T_SIZE:
		fmt_units(s->min, units_of(s->type), lo, sizeof(lo));
		fmt_units(s->max, units_of(s->type), hi, sizeof(hi));
		fprintf(f, "%s..%s", lo, hi);
		break;
	case T_INT:
		fprintf(f, "%" PRIu64 "..%" PRIu64, s->min, s->max);
		break;
	case T_ENUM:
		fputs("one of ", f);
		for (size_t i = 0; s->words[i]; i++)
			fprintf(f, "%s%s", i ? ", " : "", s->words[i]);
		break;
	default:
		if (s->min == 0)
			fprintf(f, "up to %" PRIu64 " characters (may be "
				"empty)", s->max);
		else
			fprintf(f, "%" PRIu64 "..%" PRIu64 " characters",
				s->min, s->max);
		if (s->flags & F_ID)
			fputs(" of A-Z a-z 0-9 . _ -", f);
		if (s->flags & F_NOCOLON)
			fputs(", no ':'", f);
		break;
	}
	fputc('\n', f);
}

/* One key: name, then indented "field: value" lines. */
static void print_key(FILE *f, const char *name, const struct key_spec *s,
		      int k, const char *note)
{
	fprintf(f, "  %s\n      type:     %s\n", name, type_name(s));
	print_default(f, s, k);
	print_bounds(f, s);
	if (s->required || (s->flags & F_SECRET))
		fprintf(f, "      flags:    %s%s%s\n",
			s->required ? "required" : "",
			s->required && (s->flags & F_SECRET) ? ", " : "",
			s->flags & F_SECRET ? "secret (never shown; the file "
			"must then not be world-readable)" : "");
	if (note && *note)
		fprintf(f, "      note:     %s\n", note);
}

/* schema[k], with the rule that orders it after another key (order_rules)
 * as its note. */
static void print_schema_key(FILE *f, int k)
{
	char note[128] = "";

	for (size_t i = 0; i < sizeof(order_rules) / sizeof(order_rules[0]);
	     i++)
		if (order_rules[i].hi == (enum conf_key)k)
			snprintf(note, sizeof(note), "%s %s",
				 order_rules[i].strict ? "must be longer than" :
				 "at least", schema[order_rules[i].lo].key);
	print_key(f, schema[k].key, &schema[k], k, note);
}

/* The section of schema[k] was printed with an earlier key's. */
static bool section_seen(int k)
{
	for (int j = 0; j < k; j++)
		if (strcmp(schema[j].section, schema[k].section) == 0)
			return true;
	return false;
}

void conf_print_keys(FILE *f)
{
	char note[128];

	/* Sections in the order they first appear, each with all its keys
	 * (enum conf_key need not keep a section's keys together). */
	for (int k = 0; k < CONF__COUNT; k++) {
		if (section_seen(k))
			continue;
		fprintf(f, "%s[%s]\n", k ? "\n" : "", schema[k].section);
		for (int j = k; j < CONF__COUNT; j++)
			if (strcmp(schema[j].section, schema[k].section) == 0)
				print_schema_key(f, j);
	}
	fprintf(f, "\n[network]\n      note:     NAME = ADDRESS, one line per "
		"other server of this system's network, at most %d; NAME "
		"1..%d characters of A-Z a-z 0-9 . _ -, unique ignoring case, "
		"not this system's own system_name\n",
		CONF_SERVERS_MAX, KEY_NAME_MAX);
	print_key(f, "NAME", &server_spec, -1, NULL);
	fprintf(f, "\n[tunnel NAME]\n      note:     one section per "
		"co-located server, at most %d, no two for the same address "
		"and port; NAME 1..%d characters of A-Z a-z 0-9 . _ -\n",
		CONF_TUNNELS_MAX, ID_MAX);
	for (int k = 0; k < TK__COUNT; k++) {
		const struct key_spec *s = &tunnel_schema[k];
		size_t used = 0;

		if (k != TK_PORT) {
			print_key(f, s->key, s, -1, NULL);
			continue;
		}
		/* No fixed default: the application's port (app_ports). */
		fprintf(f, "  %s\n      type:     %s\n      default:  by "
			"application (", s->key, type_name(s));
		for (size_t i = 0, n = 0; app_words[i]; i++)
			if (app_ports[i])
				fprintf(f, "%s%s %u", n++ ? ", " : "",
					app_words[i], (unsigned)app_ports[i]);
		fputs(")\n", f);
		print_bounds(f, s);
		for (size_t i = 0; app_words[i]; i++)
			if (!app_ports[i] && used < sizeof(note)) {
				int w = snprintf(note + used,
						 sizeof(note) - used, "%s%s",
						 used ? ", " : "required for ",
						 app_words[i]);

				if (w > 0)
					used += (size_t)w;
			}
		if (used)
			fprintf(f, "      note:     %s\n", note);
	}
}

bool conf_ip_canon(const char *text, char *out, size_t cap)
{
	struct in_addr a4;
	struct in6_addr a6;
	socklen_t n = cap < CONF_IP_MAX ? (socklen_t)cap : CONF_IP_MAX;
	const char *r;

	if (!out || cap == 0)
		return false;
	out[0] = '\0';
	if (!text)
		return false;
	if (inet_pton(AF_INET, text, &a4) == 1) {
		r = inet_ntop(AF_INET, &a4, out, n);
	} else if (inet_pton(AF_INET6, text, &a6) != 1) {
		return false;
	} else if (IN6_IS_ADDR_V4MAPPED(&a6)) {
		/* What an AF_INET6 socket dials for it: the IPv4 address. */
		memcpy(&a4, &a6.s6_addr[12], sizeof(a4));
		r = inet_ntop(AF_INET, &a4, out, n);
	} else {
		r = inet_ntop(AF_INET6, &a6, out, n);
	}
	if (!r)
		out[0] = '\0';
	return r != NULL;
}
