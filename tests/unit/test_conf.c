/*
 * test_conf — unit tests for agent/conf.c (and the profile tables of
 * platform/platform.c it takes defaults from).
 *
 * Each test writes config text to a mode-0600 temp file, loads it with the
 * messages captured in memory, and checks the exact messages (with "$"
 * standing for the temp file's path) and the values. Run from the repo
 * root: the reference file is read from config/comagent.ini.example.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "platform.h"

#ifndef EXAMPLE_INI
#define EXAMPLE_INI "config/comagent.ini.example"
#endif

/* The smallest valid file: the five required keys. 8 lines, so text
 * appended with with() starts on line 9. */
static const char *const base_lines[] = {
	"[com]",
	"url = wss://com.example.net/agent/v1",
	"ca_file = /etc/comagent/ca.pem",
	"[system]",
	"customer_id = C1001",
	"system_name = pbx-hq",
	"[service_user]",
	"password = secret",
	NULL
};

struct tc {
	char path[64];
	char *msg;		/* everything conf_load wrote to errs */
	size_t msglen;
	struct conf *c;
	char *expect;
};

static void reset(struct tc *t)
{
	if (t->path[0])
		unlink(t->path);
	t->path[0] = '\0';
	free(t->msg);
	t->msg = NULL;
	free(t->expect);
	t->expect = NULL;
	conf_free(t->c);
	t->c = NULL;
}

static int setup(void **state)
{
	struct tc *t = calloc(1, sizeof(*t));

	*state = t;
	return t ? 0 : -1;
}

static int teardown(void **state)
{
	struct tc *t = *state;

	reset(t);
	free(t);
	return 0;
}

/* Loads the file at path; messages land in t->msg. */
static err_t load_path(struct tc *t, const char *path)
{
	FILE *errs = open_memstream(&t->msg, &t->msglen);
	err_t e;

	assert_non_null(errs);
	t->c = (struct conf *)0x1;	/* must be overwritten with NULL */
	e = conf_load(path, errs, &t->c);
	assert_int_equal(fclose(errs), 0);
	if (e != ERR_OK)
		assert_null(t->c);
	return e;
}

static err_t load_raw(struct tc *t, const char *data, size_t len, mode_t mode)
{
	int fd;

	reset(t);
	snprintf(t->path, sizeof(t->path), "/tmp/test_conf-XXXXXX");
	fd = mkstemp(t->path);
	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
	return load_path(t, t->path);
}

static err_t load(struct tc *t, const char *text)
{
	return load_raw(t, text, strlen(text), 0600);
}

/* The base file with key's line set to "key = value", or, for a key not
 * in it, with "[section]\nkey = value" appended. *line: where it went. */
static char *base_with(const char *section, const char *key, const char *value,
		       unsigned *line)
{
	char *text = NULL;
	size_t len = 0, klen = strlen(key);
	FILE *f = open_memstream(&text, &len);
	unsigned n = 0;

	assert_non_null(f);
	*line = 0;
	for (unsigned i = 0; base_lines[i]; i++) {
		if (strncmp(base_lines[i], key, klen) == 0 &&
		    strncmp(base_lines[i] + klen, " =", 2) == 0) {
			fprintf(f, "%s = %s\n", key, value);
			*line = i + 1;
		} else {
			fprintf(f, "%s\n", base_lines[i]);
		}
		n = i + 1;
	}
	if (*line == 0) {
		fprintf(f, "[%s]\n%s = %s\n", section, key, value);
		*line = n + 2;
	}
	assert_int_equal(fclose(f), 0);
	return text;
}

static err_t load_kv(struct tc *t, const char *section, const char *key,
		     const char *value, unsigned *line)
{
	char *text = base_with(section, key, value, line);
	err_t e = load(t, text);

	free(text);
	return e;
}

/* The base file plus extra lines (the first extra line is line 9). */
static err_t with(struct tc *t, const char *extra)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	err_t e;

	assert_non_null(f);
	for (unsigned i = 0; base_lines[i]; i++)
		fprintf(f, "%s\n", base_lines[i]);
	fputs(extra, f);
	assert_int_equal(fclose(f), 0);
	e = load(t, text);
	free(text);
	return e;
}

/* expected with every '$' replaced by the temp file's path. */
static void msgs_are(struct tc *t, const char *expected)
{
	size_t n = 0, plen = strlen(t->path), k = 0;

	for (const char *s = expected; *s; s++)
		n += *s == '$' ? plen : 1;
	free(t->expect);
	t->expect = malloc(n + 1);
	assert_non_null(t->expect);
	for (const char *s = expected; *s; s++) {
		if (*s == '$') {
			memcpy(t->expect + k, t->path, plen);
			k += plen;
		} else {
			t->expect[k++] = *s;
		}
	}
	t->expect[k] = '\0';
	assert_non_null(t->msg);
	assert_string_equal(t->msg, t->expect);
}

static void accept(struct tc *t, const char *section, const char *key,
		   const char *value)
{
	unsigned line;
	err_t e = load_kv(t, section, key, value, &line);

	if (e != ERR_OK)
		print_error("[%s] %s = %s: %s\n", section, key, value, t->msg);
	assert_int_equal(e, ERR_OK);
	msgs_are(t, "");
}

static void reject(struct tc *t, const char *section, const char *key,
		   const char *value, const char *msg)
{
	char expected[512];
	unsigned line;

	assert_int_equal(load_kv(t, section, key, value, &line), ERR_INVAL);
	snprintf(expected, sizeof(expected), "$:%u: %s\n", line, msg);
	msgs_are(t, expected);
}

/* ---- whole files ------------------------------------------------------- */

static char *read_example(void)
{
	FILE *f = fopen(EXAMPLE_INI, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	assert_non_null(f);	/* run from the repo root */
	assert_non_null(buf);
	n = fread(buf, 1, 65535, f);
	assert_true(n > 0 && n < 65535);
	fclose(f);
	return buf;
}

static void test_example_loads(void **state)
{
	struct tc *t = *state;
	char *text = read_example();
	const struct conf *c;

	assert_int_equal(load(t, text), ERR_OK);
	free(text);
	msgs_are(t, "");
	c = t->c;
	assert_string_equal(conf_path(c), t->path);
	assert_string_equal(conf_str(c, CONF_COM_URL),
			    "wss://com.example.net/agent/v1");
	assert_string_equal(conf_str(c, CONF_COM_CA_FILE),
			    "/etc/comagent/com-ca.pem");
	assert_string_equal(conf_str(c, CONF_COM_PROXY), "");
	assert_false(conf_isset(c, CONF_COM_PROXY));
	assert_int_equal(conf_num(c, CONF_COM_PING_INTERVAL), 30000);
	assert_int_equal(conf_num(c, CONF_COM_IDLE_TIMEOUT), 90000);
	assert_int_equal(conf_num(c, CONF_COM_CONNECT_TIMEOUT), 20000);
	assert_int_equal(conf_num(c, CONF_COM_RETRY_MIN), 1000);
	assert_int_equal(conf_num(c, CONF_COM_RETRY_MAX), 300000);
	assert_int_equal(conf_num(c, CONF_COM_AUTH_RETRY_MIN), 300000);
	assert_int_equal(conf_num(c, CONF_COM_AUTH_RETRY_MAX), 3600000);
	assert_int_equal(conf_num(c, CONF_COM_GRACE), 60000);
	assert_string_equal(conf_str(c, CONF_COM_GRACE), "60s");
	assert_string_equal(conf_str(c, CONF_SYSTEM_PROFILE), "linux");
	assert_string_equal(conf_platform(c)->name, "linux");
	assert_string_equal(conf_str(c, CONF_SYSTEM_CUSTOMER_ID), "C1001");
	assert_string_equal(conf_str(c, CONF_SYSTEM_SYSTEM_NAME), "pbx-hq");
	assert_string_equal(conf_str(c, CONF_SYSTEM_VERSION), "");
	assert_false(conf_isset(c, CONF_SYSTEM_VERSION));
	assert_string_equal(conf_str(c, CONF_SYSTEM_ROOT), "/");
	assert_string_equal(conf_str(c, CONF_SYSTEM_STATE_DIR),
			    "/var/lib/comagent");
	assert_string_equal(conf_str(c, CONF_SYSTEM_CONTROL_SOCKET),
			    "/run/comagent/comagent.sock");
	assert_string_equal(conf_str(c, CONF_SERVICE_USER_NAME), "COMAdmin");
	assert_string_equal(conf_str(c, CONF_SERVICE_USER_PASSWORD),
			    "change-me");
	assert_int_equal(conf_num(c, CONF_LOG_LEVEL), 1);
	assert_string_equal(conf_str(c, CONF_LOG_FILE),
			    "/var/log/comagent/comagent.log");
	assert_int_equal(conf_num(c, CONF_LOG_MAX_SIZE), 10 * 1024 * 1024);
	assert_false(conf_isset(c, CONF_LOG_MAX_SIZE));
	assert_int_equal(conf_num(c, CONF_COM_MAX_STREAMS), 64);
	assert_int_equal(conf_num(c, CONF_COM_TUNNEL_CONNECT_TIMEOUT), 10000);
	assert_string_equal(conf_str(c, CONF_SYSTEM_ADDRESS), "127.0.0.1");
	assert_int_equal(conf_num(c, CONF_SERVICES_SSH), 22);
	assert_int_equal(conf_tunnel_count(c), 0);
	assert_int_equal(conf_server_count(c), 0);
}

static void test_example_commented_keys_valid(void **state)
{
	struct tc *t = *state;
	char *text = read_example();
	char *p;

	const struct conf_tunnel *tun;
	const struct conf_server *sv;

	/* Uncomment every "#key = value" and "#[section]" line: all must
	 * still be valid. */
	for (p = text; (p = strstr(p, "\n#")); p++) {
		size_t len = strcspn(p + 1, "\n");

		if ((p[2] != ' ' && memchr(p + 1, '=', len)) || p[2] == '[')
			p[1] = ' ';
	}
	assert_int_equal(load(t, text), ERR_OK);
	free(text);
	msgs_are(t, "");
	assert_string_equal(conf_str(t->c, CONF_COM_PROXY),
			    "proxy.example.net:3128");
	assert_string_equal(conf_str(t->c, CONF_COM_PROXY_USER), "agent");
	assert_string_equal(conf_str(t->c, CONF_SYSTEM_VERSION), "11.1.3.0");
	assert_true(conf_isset(t->c, CONF_LOG_MAX_SIZE));
	/* The commented values are the defaults. */
	for (int k = CONF_SERVICES_SSH; k <= CONF_SERVICES_WEBMANAGER; k++)
		assert_true(conf_isset(t->c, (enum conf_key)k));
	assert_int_equal(conf_num(t->c, CONF_SERVICES_SSH), 22);
	assert_int_equal(conf_num(t->c, CONF_SERVICES_WEBMANAGER), 8443);
	assert_int_equal(conf_num(t->c, CONF_COM_MAX_STREAMS), 64);
	assert_true(conf_isset(t->c, CONF_SYSTEM_ADDRESS));
	assert_int_equal(conf_server_count(t->c), 1);
	sv = conf_server_at(t->c, 0);
	assert_string_equal(sv->name, "pbx-branch1");
	assert_string_equal(sv->address, "10.0.1.10");
	assert_int_equal(conf_tunnel_count(t->c), 1);
	tun = conf_tunnel_at(t->c, 0);
	assert_string_equal(tun->name, "rdp-terminal");
	assert_string_equal(tun->application, "rdp");
	assert_string_equal(tun->address, "10.0.0.7");
	assert_int_equal(tun->port, 3389);
}

static void test_minimal_gets_defaults(void **state)
{
	struct tc *t = *state;
	const struct conf *c;

	assert_int_equal(with(t, ""), ERR_OK);
	msgs_are(t, "");
	c = t->c;
	assert_int_equal(conf_num(c, CONF_COM_PING_INTERVAL), 30000);
	assert_string_equal(conf_str(c, CONF_COM_PING_INTERVAL), "30s");
	assert_false(conf_isset(c, CONF_COM_PING_INTERVAL));
	assert_int_equal(conf_num(c, CONF_COM_IDLE_TIMEOUT), 90000);
	assert_int_equal(conf_num(c, CONF_COM_CONNECT_TIMEOUT), 20000);
	assert_int_equal(conf_num(c, CONF_COM_RETRY_MIN), 1000);
	assert_int_equal(conf_num(c, CONF_COM_RETRY_MAX), 300000);
	assert_int_equal(conf_num(c, CONF_COM_AUTH_RETRY_MIN), 300000);
	assert_int_equal(conf_num(c, CONF_COM_AUTH_RETRY_MAX), 3600000);
	assert_int_equal(conf_num(c, CONF_COM_GRACE), 60000);
	assert_string_equal(conf_str(c, CONF_SYSTEM_PROFILE), "linux");
	assert_int_equal(conf_num(c, CONF_SYSTEM_PROFILE), 1);
	assert_string_equal(conf_str(c, CONF_SERVICE_USER_NAME), "COMAdmin");
	assert_string_equal(conf_str(c, CONF_LOG_LEVEL), "info");
	assert_string_equal(conf_str(c, CONF_SYSTEM_ROOT), "/");
	assert_string_equal(conf_str(c, CONF_COM_CA_FILE),
			    "/etc/comagent/ca.pem");
	assert_true(conf_isset(c, CONF_COM_URL));
	assert_false(conf_isset(c, CONF_LOG_FILE));
	assert_string_equal(conf_str(c, CONF_SERVICE_USER_PASSWORD), "secret");
	assert_int_equal(conf_num(c, CONF_COM_MAX_STREAMS), 64);
	assert_string_equal(conf_str(c, CONF_COM_MAX_STREAMS), "64");
	assert_false(conf_isset(c, CONF_COM_MAX_STREAMS));
	assert_int_equal(conf_num(c, CONF_COM_TUNNEL_CONNECT_TIMEOUT), 10000);
	assert_string_equal(conf_str(c, CONF_COM_TUNNEL_CONNECT_TIMEOUT),
			    "10s");
	assert_string_equal(conf_str(c, CONF_SYSTEM_ADDRESS), "127.0.0.1");
	assert_false(conf_isset(c, CONF_SYSTEM_ADDRESS));
	assert_int_equal(conf_num(c, CONF_SYSTEM_ADDRESS), 0);
	assert_int_equal(conf_num(c, CONF_SERVICES_SSH), 22);
	assert_int_equal(conf_num(c, CONF_SERVICES_HTTPS), 443);
	assert_int_equal(conf_num(c, CONF_SERVICES_WEBCONTROL), 7071);
	assert_int_equal(conf_num(c, CONF_SERVICES_ONEPORTAL), 9443);
	assert_int_equal(conf_num(c, CONF_SERVICES_WEBLM), 52233);
	assert_int_equal(conf_num(c, CONF_SERVICES_WEBMANAGER), 8443);
	assert_string_equal(conf_str(c, CONF_SERVICES_WEBLM), "52233");
	assert_false(conf_isset(c, CONF_SERVICES_SSH));
	assert_int_equal(conf_tunnel_count(c), 0);
	assert_null(conf_tunnel_at(c, 0));
	assert_int_equal(conf_server_count(c), 0);
	assert_null(conf_server_at(c, 0));
}

/* ---- strings ----------------------------------------------------------- */

static void test_string_id_class(void **state)
{
	struct tc *t = *state;
	char v[70];

	accept(t, "system", "customer_id", "Cust-1_0.9");
	assert_string_equal(conf_str(t->c, CONF_SYSTEM_CUSTOMER_ID),
			    "Cust-1_0.9");
	reject(t, "system", "customer_id", "C 1",
	       "customer_id: 'C 1' may only contain letters, digits, '.', "
	       "'_' and '-'");
	reject(t, "system", "system_name", "pbx/hq",
	       "system_name: 'pbx/hq' may only contain letters, digits, "
	       "'.', '_' and '-'");
	reject(t, "system", "system_name", "pbx\xc3\xa9",
	       "system_name: 'pbx\xc3\xa9' may only contain letters, "
	       "digits, '.', '_' and '-'");
	memset(v, 'a', 64);
	v[64] = '\0';
	accept(t, "system", "system_name", v);
	assert_int_equal(strlen(conf_str(t->c, CONF_SYSTEM_SYSTEM_NAME)), 64);
	v[64] = 'a';
	v[65] = '\0';
	reject(t, "system", "system_name", v,
	       "system_name: too long (65 characters, max 64)");
}

static void test_string_password(void **state)
{
	struct tc *t = *state;
	char v[140];

	/* No inline comments: ';' and '#' belong to the value. */
	accept(t, "service_user", "password", "p4ss ;not a comment #x");
	assert_string_equal(conf_str(t->c, CONF_SERVICE_USER_PASSWORD),
			    "p4ss ;not a comment #x");
	memset(v, 'x', 128);
	v[128] = '\0';
	accept(t, "service_user", "password", v);
	v[128] = 'x';
	v[129] = '\0';
	/* The message never echoes the secret. */
	reject(t, "service_user", "password", v,
	       "password: too long (129 characters, max 128)");
	reject(t, "service_user", "password", "a\x01z",
	       "password: contains a control character");
}

static void test_string_other(void **state)
{
	struct tc *t = *state;
	char v[200];

	accept(t, "system", "version", "11.1.3.0 build 5");
	assert_string_equal(conf_str(t->c, CONF_SYSTEM_VERSION),
			    "11.1.3.0 build 5");
	reject(t, "system", "version", "1\t2",
	       "version: contains a control character");
	accept(t, "service_user", "name", "Svc User");
	assert_string_equal(conf_str(t->c, CONF_SERVICE_USER_NAME),
			    "Svc User");
	reject(t, "service_user", "name", "", "name: empty value");
	/* The longest value a 197-character line can carry. */
	memset(v, 'v', 187);
	v[187] = '\0';
	accept(t, "system", "version", v);
	assert_int_equal(strlen(conf_str(t->c, CONF_SYSTEM_VERSION)), 187);
}

/* ---- url, host:port ---------------------------------------------------- */

static void test_url(void **state)
{
	struct tc *t = *state;
	static const char *const good[] = {
		"wss://h", "wss://com.example.net:443/agent/v1",
		"wss://[::1]:8443/agent", "wss://[2001:db8::5]",
		"wss://10.0.0.1/agent?x=1", "wss://h:65535", "wss://h:1#f",
		NULL
	};

	for (unsigned i = 0; good[i]; i++) {
		accept(t, "com", "url", good[i]);
		assert_string_equal(conf_str(t->c, CONF_COM_URL), good[i]);
	}
	reject(t, "com", "url", "https://h/agent",
	       "url: 'https://h/agent' must start with wss://");
	reject(t, "com", "url", "ws://h", "url: 'ws://h' must start with wss://");
	reject(t, "com", "url", "WSS://h", "url: 'WSS://h' must start with wss://");
	reject(t, "com", "url", "wss://", "url: 'wss://' has no host");
	reject(t, "com", "url", "wss:///agent", "url: 'wss:///agent' has no host");
	reject(t, "com", "url", "wss://h:0/a",
	       "url: port 0 is out of range 1..65535");
	reject(t, "com", "url", "wss://h:65536",
	       "url: port 65536 is out of range 1..65535");
	reject(t, "com", "url", "wss://h:/a",
	       "url: 'wss://h:/a' has an invalid host or port");
	reject(t, "com", "url", "wss://h:8x/a",
	       "url: 'wss://h:8x/a' has an invalid host or port");
	reject(t, "com", "url", "wss://u:pw@h/a",
	       "url: 'wss://u:pw@h/a' has an invalid host or port");
	reject(t, "com", "url", "wss://[zz::1]/a",
	       "url: 'wss://[zz::1]/a' has an invalid host or port");
	reject(t, "com", "url", "wss://h/a b",
	       "url: 'wss://h/a b' contains a space");
	reject(t, "com", "url", "", "url: empty value (required key)");
}

static void test_hostport(void **state)
{
	struct tc *t = *state;
	static const char *const good[] = {
		"proxy.example.net:3128", "[::1]:3128", "10.1.2.3:1",
		"h:65535", "p_x-1:80", NULL
	};
	static const char *const bad[] = {
		"proxy", "proxy:", ":80", "::1:80", "[::1]", "[::1]80",
		"h:80x", "h:+80", "h:-1", "h: 80", "h:80:81", "a b:80",
		"[nothex]:80", NULL
	};
	char msg[128];

	for (unsigned i = 0; good[i]; i++) {
		accept(t, "com", "proxy", good[i]);
		assert_string_equal(conf_str(t->c, CONF_COM_PROXY), good[i]);
		assert_true(conf_isset(t->c, CONF_COM_PROXY));
	}
	for (unsigned i = 0; bad[i]; i++) {
		snprintf(msg, sizeof(msg), "proxy: '%s' is not host:port",
			 bad[i]);
		reject(t, "com", "proxy", bad[i], msg);
	}
	reject(t, "com", "proxy", "h:0", "proxy: port 0 is out of range 1..65535");
	reject(t, "com", "proxy", "h:65536",
	       "proxy: port 65536 is out of range 1..65535");
	reject(t, "com", "proxy", "h:99999999999999999999",
	       "proxy: port 99999999999999999999 is out of range 1..65535");
	/* Empty: no proxy. */
	accept(t, "com", "proxy", "");
	assert_string_equal(conf_str(t->c, CONF_COM_PROXY), "");
	assert_true(conf_isset(t->c, CONF_COM_PROXY));
}

/* ---- durations --------------------------------------------------------- */

static void test_duration_units(void **state)
{
	struct tc *t = *state;
	static const struct {
		const char *text;
		uint64_t ms;
	} cases[] = {
		{ "1500ms", 1500 }, { "30s", 30000 }, { "5m", 300000 },
		{ "1h", 3600000 }, { "0001s", 1000 }, { "3600000ms", 3600000 },
		{ "24h", 86400000 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		accept(t, "com", "retry_max", cases[i].text);
		assert_int_equal(conf_num(t->c, CONF_COM_RETRY_MAX),
				 cases[i].ms);
		assert_string_equal(conf_str(t->c, CONF_COM_RETRY_MAX),
				    cases[i].text);
		assert_true(conf_isset(t->c, CONF_COM_RETRY_MAX));
	}
}

static void test_duration_garbage(void **state)
{
	struct tc *t = *state;
	static const char *const bad[] = {
		"30", "30sx", "5 m", "-1s", "+1s", "1.5s", "s", "30S", "0x10s",
		"1e3ms", "30 s", "30sec", "1h30m", "99999999999999999999", NULL
	};
	char msg[160];

	for (unsigned i = 0; bad[i]; i++) {
		snprintf(msg, sizeof(msg), "grace: '%s' is not a duration "
			 "(a number and a unit: ms, s, m or h)", bad[i]);
		reject(t, "com", "grace", bad[i], msg);
	}
	reject(t, "com", "grace", "", "grace: empty value");
	/* Overflow is out of range, not wrapped around into range. */
	reject(t, "com", "grace", "99999999999999999999h",
	       "grace: 99999999999999999999h is out of range 1s..1h");
	reject(t, "com", "grace", "18446744073709551615h",
	       "grace: 18446744073709551615h is out of range 1s..1h");
	reject(t, "com", "grace", "5124095576030432h",
	       "grace: 5124095576030432h is out of range 1s..1h");
	reject(t, "com", "grace", "18446744073709551615ms",
	       "grace: 18446744073709551615ms is out of range 1s..1h");
	reject(t, "com", "grace", "0s", "grace: 0s is out of range 1s..1h");
}

struct dur_bound {
	const char *key;
	const char *lo, *below, *hi, *above;
	const char *companion;	/* keeps the rules between keys satisfied */
	const char *range;
	uint64_t lo_ms, hi_ms;
	enum conf_key k;
};

static const struct dur_bound dur_bounds[] = {
	{ "ping_interval", "1s", "999ms", "1h", "3601s",
	  "idle_timeout = 2h", "1s..1h", 1000, 3600000,
	  CONF_COM_PING_INTERVAL },
	{ "idle_timeout", "2s", "1999ms", "2h", "7200001ms",
	  "ping_interval = 1s", "2s..2h", 2000, 7200000,
	  CONF_COM_IDLE_TIMEOUT },
	{ "connect_timeout", "1000ms", "999ms", "5m", "301s", NULL, "1s..5m",
	  1000, 300000, CONF_COM_CONNECT_TIMEOUT },
	{ "retry_min", "100ms", "99ms", "60m", "3600001ms",
	  "retry_max = 24h", "100ms..1h", 100, 3600000, CONF_COM_RETRY_MIN },
	{ "retry_max", "1s", "999ms", "24h", "1441m",
	  "retry_min = 100ms", "1s..24h", 1000, 86400000,
	  CONF_COM_RETRY_MAX },
	{ "auth_retry_min", "1s", "999ms", "1440m", "86400001ms",
	  "auth_retry_max = 24h", "1s..24h", 1000, 86400000,
	  CONF_COM_AUTH_RETRY_MIN },
	{ "auth_retry_max", "1s", "0ms", "24h", "25h",
	  "auth_retry_min = 1s", "1s..24h", 1000, 86400000,
	  CONF_COM_AUTH_RETRY_MAX },
	{ "grace", "1s", "999ms", "3600s", "61m", NULL, "1s..1h", 1000,
	  3600000, CONF_COM_GRACE },
	{ "tunnel_connect_timeout", "1s", "999ms", "2m", "120001ms", NULL,
	  "1s..2m", 1000, 120000, CONF_COM_TUNNEL_CONNECT_TIMEOUT },
};

/* [com], key (line 10), companion (line 11). */
static err_t load_dur(struct tc *t, const struct dur_bound *b, const char *v)
{
	char extra[200];

	snprintf(extra, sizeof(extra), "[com]\n%s = %s\n%s\n", b->key, v,
		 b->companion ? b->companion : "");
	return with(t, extra);
}

static void test_duration_bounds(void **state)
{
	struct tc *t = *state;
	char msg[200];

	for (size_t i = 0; i < sizeof(dur_bounds) / sizeof(dur_bounds[0]); i++) {
		const struct dur_bound *b = &dur_bounds[i];

		assert_int_equal(load_dur(t, b, b->lo), ERR_OK);
		msgs_are(t, "");
		assert_int_equal(conf_num(t->c, b->k), b->lo_ms);
		assert_int_equal(load_dur(t, b, b->hi), ERR_OK);
		msgs_are(t, "");
		assert_int_equal(conf_num(t->c, b->k), b->hi_ms);
		assert_int_equal(load_dur(t, b, b->below), ERR_INVAL);
		snprintf(msg, sizeof(msg), "$:10: %s: %s is out of range %s\n",
			 b->key, b->below, b->range);
		msgs_are(t, msg);
		assert_int_equal(load_dur(t, b, b->above), ERR_INVAL);
		snprintf(msg, sizeof(msg), "$:10: %s: %s is out of range %s\n",
			 b->key, b->above, b->range);
		msgs_are(t, msg);
	}
}

/* ---- sizes, enums ------------------------------------------------------ */

static void test_size(void **state)
{
	struct tc *t = *state;
	static const struct {
		const char *text;
		uint64_t bytes;
	} good[] = {
		{ "64K", 65536 }, { "65536", 65536 }, { "10M", 10485760 },
		{ "1G", 1073741824 }, { "1024M", 1073741824 },
		{ "1073741824", 1073741824 }, { "1048576K", 1073741824 },
	};
	static const char *const garbage[] = {
		"10MB", "10k", "M", "-1K", "1.5M", "10 M", "1T", "0x100000",
		NULL
	};
	static const char *const too_big[] = {
		"65535", "63K", "1073741825", "1025M", "2G",
		"99999999999999999999G", "17179869184G", NULL
	};
	char msg[160];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		accept(t, "log", "max_size", good[i].text);
		assert_int_equal(conf_num(t->c, CONF_LOG_MAX_SIZE),
				 good[i].bytes);
	}
	for (unsigned i = 0; garbage[i]; i++) {
		snprintf(msg, sizeof(msg), "max_size: '%s' is not a size (a "
			 "number, optionally with K, M or G)", garbage[i]);
		reject(t, "log", "max_size", garbage[i], msg);
	}
	for (unsigned i = 0; too_big[i]; i++) {
		snprintf(msg, sizeof(msg), "max_size: %s is out of range "
			 "64K..1G", too_big[i]);
		reject(t, "log", "max_size", too_big[i], msg);
	}
}

static void test_enum(void **state)
{
	struct tc *t = *state;

	accept(t, "log", "level", "error");
	assert_int_equal(conf_num(t->c, CONF_LOG_LEVEL), 0);
	accept(t, "log", "level", "debug");
	assert_int_equal(conf_num(t->c, CONF_LOG_LEVEL), 2);
	assert_string_equal(conf_str(t->c, CONF_LOG_LEVEL), "debug");
	reject(t, "log", "level", "verbose",
	       "level: 'verbose' is not one of error, info, debug");
	reject(t, "log", "level", "INFO",
	       "level: 'INFO' is not one of error, info, debug");
	reject(t, "log", "level", "", "level: empty value");
	accept(t, "system", "profile", "ip500v2");
	assert_int_equal(conf_num(t->c, CONF_SYSTEM_PROFILE), 0);
	assert_string_equal(conf_platform(t->c)->name, "ip500v2");
	reject(t, "system", "profile", "ipo",
	       "profile: 'ipo' is not one of ip500v2, linux");
}

/* ---- paths ------------------------------------------------------------- */

static void test_path_resolution(void **state)
{
	struct tc *t = *state;
	const struct conf *c;

	/* Relative keys before root: resolved after the whole file. */
	assert_int_equal(load(t,
		"[system]\n"
		"state_dir = state\n"
		"control_socket = /abs/ctl.sock\n"
		"customer_id = C1\n"
		"system_name = s1\n"
		"root = /tmp/r\n"
		"[com]\n"
		"url = wss://h/a\n"
		"ca_file = etc/ca.pem\n"
		"[service_user]\n"
		"password = pw\n"
		"[log]\n"
		"file =\n"), ERR_OK);
	msgs_are(t, "");
	c = t->c;
	assert_string_equal(conf_str(c, CONF_SYSTEM_ROOT), "/tmp/r");
	assert_string_equal(conf_str(c, CONF_SYSTEM_STATE_DIR), "/tmp/r/state");
	assert_string_equal(conf_str(c, CONF_SYSTEM_CONTROL_SOCKET),
			    "/abs/ctl.sock");
	assert_string_equal(conf_str(c, CONF_COM_CA_FILE), "/tmp/r/etc/ca.pem");
	/* Empty log file: no log, and no default in its place. */
	assert_string_equal(conf_str(c, CONF_LOG_FILE), "");
	assert_true(conf_isset(c, CONF_LOG_FILE));

	/* A trailing slash on root is not doubled; defaults resolve too. */
	assert_int_equal(with(t, "[system]\nroot = /tmp/r/\n"), ERR_OK);
	assert_string_equal(conf_str(t->c, CONF_SYSTEM_STATE_DIR),
			    "/tmp/r/var/lib/comagent");
	assert_string_equal(conf_str(t->c, CONF_SYSTEM_CONTROL_SOCKET),
			    "/tmp/r/run/comagent/comagent.sock");
	assert_string_equal(conf_str(t->c, CONF_LOG_FILE),
			    "/tmp/r/var/log/comagent/comagent.log");
	assert_string_equal(conf_str(t->c, CONF_COM_CA_FILE),
			    "/etc/comagent/ca.pem");
}

static void test_path_root_absolute(void **state)
{
	struct tc *t = *state;

	reject(t, "system", "root", "tmp/r",
	       "root: 'tmp/r' is not an absolute path");
	reject(t, "system", "root", "./r",
	       "root: './r' is not an absolute path");
	reject(t, "system", "root", "", "root: empty value");
	reject(t, "system", "state_dir", "", "state_dir: empty value");
	reject(t, "com", "ca_file", "", "ca_file: empty value (required key)");
	reject(t, "system", "state_dir", "a\x7f",
	       "state_dir: contains a control character");
}

/* ---- structure: duplicates, unknown names, syntax, long lines ---------- */

static void test_duplicates(void **state)
{
	struct tc *t = *state;

	assert_int_equal(with(t, "[com]\nurl = wss://other/\n"
			      "[system]\ncustomer_id = C2\ncustomer_id = C3\n"),
			 ERR_INVAL);
	msgs_are(t, "$:10: duplicate key 'url' (first at line 2)\n"
		    "$:12: duplicate key 'customer_id' (first at line 5)\n"
		    "$:13: duplicate key 'customer_id' (first at line 5)\n");
	/* A key whose value was bad still counts as the first. */
	assert_int_equal(with(t, "[log]\nlevel = x\nlevel = info\n"),
			 ERR_INVAL);
	msgs_are(t, "$:10: level: 'x' is not one of error, info, debug\n"
		    "$:11: duplicate key 'level' (first at line 10)\n");
}

static void test_unknown_names(void **state)
{
	struct tc *t = *state;

	assert_int_equal(with(t,
		"[com]\n"		/* 9 */
		"foo = 1\n"		/* 10 */
		"URL = wss://h\n"	/* 11 */
		"[bogus]\n"		/* 12 */
		"x = 1\n"		/* 13: not reported again */
		"y = 2\n"		/* 14 */
		"[log]\n"		/* 15 */
		"password = p\n"	/* 16: a key of another section */
		"[ com ]\n"),		/* 17 */
		ERR_INVAL);
	msgs_are(t, "$:10: unknown key 'foo' in [com]\n"
		    "$:11: unknown key 'URL' in [com]\n"
		    "$:12: unknown section [bogus]\n"
		    "$:16: unknown key 'password' in [log]\n"
		    "$:17: unknown section [ com ]\n");
	assert_int_equal(load(t, "level = info\n[com]\n"), ERR_INVAL);
	msgs_are(t, "$:1: key 'level' is outside any section\n"
		    "$: missing required key [com] url\n"
		    "$: missing required key [com] ca_file\n"
		    "$: missing required key [system] customer_id\n"
		    "$: missing required key [system] system_name\n"
		    "$: missing required key [service_user] password\n");
}

static void test_syntax_errors(void **state)
{
	struct tc *t = *state;

	assert_int_equal(with(t,
		"[com]\n"			/* 9 */
		"just words\n"			/* 10 */
		"ping_interval = 5s\n"		/* 11: still read */
		"[com\n"			/* 12 */
		"[com] trailing\n"		/* 13 */
		"grace: 5s\n"			/* 14 */
		"= 5s\n"			/* 15 */
		"[]\n"				/* 16 */
		"  connect_timeout = 7s\n"	/* 17: indented is fine */
		"  continued\n"			/* 18: no continuations */
		"  # indented comment\n"	/* 19 */
		"; semicolon comment\n"		/* 20 */
		"\t\n"				/* 21 */
		"a:b = c\n"			/* 22 */
		"ping_interval = 6s\n"		/* 23 */
		"connect_timeout = 8s\n"),	/* 24 */
		ERR_INVAL);
	msgs_are(t, "$:10: syntax error: expected [section] or key = value\n"
		    "$:12: syntax error: expected [section] or key = value\n"
		    "$:13: syntax error: expected [section] or key = value\n"
		    "$:14: syntax error: expected [section] or key = value\n"
		    "$:15: syntax error: expected [section] or key = value\n"
		    "$:16: syntax error: expected [section] or key = value\n"
		    "$:18: syntax error: expected [section] or key = value\n"
		    "$:22: syntax error: expected [section] or key = value\n"
		    "$:23: duplicate key 'ping_interval' (first at line 11)\n"
		    "$:24: duplicate key 'connect_timeout' (first at line 17)\n");
}

static void test_comments_crlf_bom(void **state)
{
	struct tc *t = *state;
	static const char text[] =
		"\xef\xbb\xbf# comment\r\n"
		"[com]\r\n"
		"url = wss://h/a\r\n"
		"ca_file = /ca.pem\r\n"
		"  ; indented\r\n"
		"ping_interval = 5s   \r\n"
		"[system]\r\n"
		"customer_id =   C1\r\n"
		"system_name=s1\r\n"
		"[service_user]\r\n"
		"password = a=b\r\n";

	assert_int_equal(load(t, text), ERR_OK);
	msgs_are(t, "");
	assert_int_equal(conf_num(t->c, CONF_COM_PING_INTERVAL), 5000);
	assert_string_equal(conf_str(t->c, CONF_SYSTEM_CUSTOMER_ID), "C1");
	assert_string_equal(conf_str(t->c, CONF_SYSTEM_SYSTEM_NAME), "s1");
	assert_string_equal(conf_str(t->c, CONF_SERVICE_USER_PASSWORD), "a=b");
}

static void test_long_lines(void **state)
{
	struct tc *t = *state;
	char text[6000];
	char *v;
	size_t n;

	/* 197 characters (the most inih's 200-byte buffer takes), also with
	 * CRLF; then 198, and 5000 followed by a good line. */
	n = (size_t)snprintf(text, sizeof(text), "[system]\nversion = ");
	v = text + n;
	memset(v, 'a', 187);
	memcpy(v + 187, "\r\n", 3);
	assert_int_equal(with(t, text), ERR_OK);
	msgs_are(t, "");
	assert_int_equal(strlen(conf_str(t->c, CONF_SYSTEM_VERSION)), 187);

	memset(v, 'a', 188);
	memcpy(v + 188, "\n", 2);
	assert_int_equal(with(t, text), ERR_INVAL);
	msgs_are(t, "$:10: line too long (max 197 characters)\n");

	n = (size_t)snprintf(text, sizeof(text), "[com]\n# ");
	memset(text + n, 'c', 5000);
	n += 5000;
	n += (size_t)snprintf(text + n, sizeof(text) - n,
			      "\ngrace = 2s\n%0250d\n[log]\nlevel = debug", 7);
	assert_int_equal(with(t, text), ERR_INVAL);
	msgs_are(t, "$:10: line too long (max 197 characters)\n"
		    "$:12: line too long (max 197 characters)\n");
	/* The long lines did not swallow their neighbours. */
	assert_int_equal(with(t, text + 6), ERR_INVAL);
	msgs_are(t, "$:9: line too long (max 197 characters)\n"
		    "$:10: unknown key 'grace' in [service_user]\n"
		    "$:11: line too long (max 197 characters)\n");
}

static void test_key_name_and_nul(void **state)
{
	struct tc *t = *state;
	char text[200];
	static const char nul[] =
		"[com]\nurl = wss://h\0x\nca_file = /ca\n[system]\n"
		"customer_id = C\nsystem_name = S\n[service_user]\n"
		"password = p\n";

	snprintf(text, sizeof(text), "[com]\n%065d = 1\n", 0);
	assert_int_equal(with(t, text), ERR_INVAL);
	msgs_are(t, "$:10: key name too long (max 64 characters)\n");
	/* 64 characters arrive whole (inih cuts only in multi-line mode). */
	snprintf(text, sizeof(text), "[com]\n%064d = 1\n", 0);
	assert_int_equal(with(t, text), ERR_INVAL);
	msgs_are(t, "$:10: unknown key "
		    "'0000000000000000000000000000000000000000000000000"
		    "000000000000000' in [com]\n");
	assert_int_equal(load_raw(t, nul, sizeof(nul) - 1, 0600), ERR_INVAL);
	msgs_are(t, "$:2: line contains a NUL byte\n"
		    "$: missing required key [com] url\n");
}

/* ---- missing keys, many errors at once --------------------------------- */

static void test_missing_required(void **state)
{
	struct tc *t = *state;

	assert_int_equal(load(t, ""), ERR_INVAL);
	msgs_are(t, "$: missing required key [com] url\n"
		    "$: missing required key [com] ca_file\n"
		    "$: missing required key [system] customer_id\n"
		    "$: missing required key [system] system_name\n"
		    "$: missing required key [service_user] password\n");
	reject(t, "service_user", "password", "",
	       "password: empty value (required key)");
	reject(t, "system", "customer_id", "",
	       "customer_id: empty value (required key)");
}

static void test_many_errors(void **state)
{
	struct tc *t = *state;

	assert_int_equal(load(t,
		"[com]\n"			/* 1 */
		"url = http://x\n"		/* 2 */
		"ping_interval = 0s\n"		/* 3 */
		"url = wss://h\n"		/* 4 */
		"what is this\n"		/* 5 */
		"[nope]\n"			/* 6 */
		"a = b\n"			/* 7 */
		"[system]\n"			/* 8 */
		"customer_id = bad id\n"	/* 9 */
		"[log]\n"			/* 10 */
		"level = loud\n"		/* 11 */
		"max_size = 10MB\n"		/* 12 */
		"[com]\n"			/* 13 */
		"retry_min = 10m\n"),		/* 14 */
		ERR_INVAL);
	msgs_are(t,
		"$:2: url: 'http://x' must start with wss://\n"
		"$:3: ping_interval: 0s is out of range 1s..1h\n"
		"$:4: duplicate key 'url' (first at line 2)\n"
		"$:5: syntax error: expected [section] or key = value\n"
		"$:6: unknown section [nope]\n"
		"$:9: customer_id: 'bad id' may only contain letters, "
		"digits, '.', '_' and '-'\n"
		"$:11: level: 'loud' is not one of error, info, debug\n"
		"$:12: max_size: '10MB' is not a size (a number, optionally "
		"with K, M or G)\n"
		"$: missing required key [com] ca_file\n"
		"$: missing required key [system] system_name\n"
		"$: missing required key [service_user] password\n"
		"$:14: retry_max: 5m must not be shorter than retry_min 10m\n");
}

/* ---- rules between keys ------------------------------------------------ */

static void test_rule_idle_ping(void **state)
{
	struct tc *t = *state;

	assert_int_equal(with(t, "[com]\nping_interval = 2m\n"), ERR_INVAL);
	msgs_are(t, "$:10: idle_timeout: 90s must be longer than "
		    "ping_interval 2m\n");
	/* Equal is not longer; the later of the two lines is reported. */
	assert_int_equal(with(t, "[com]\nidle_timeout = 30s\n"
			      "ping_interval = 30000ms\n"), ERR_INVAL);
	msgs_are(t, "$:11: idle_timeout: 30s must be longer than "
		    "ping_interval 30000ms\n");
	assert_int_equal(with(t, "[com]\nping_interval = 30s\n"
			      "idle_timeout = 31s\n"), ERR_OK);
	msgs_are(t, "");
}

static void test_rule_retry(void **state)
{
	struct tc *t = *state;

	assert_int_equal(with(t, "[com]\nretry_max = 5m\nretry_min = 301s\n"),
			 ERR_INVAL);
	msgs_are(t, "$:11: retry_max: 5m must not be shorter than "
		    "retry_min 301s\n");
	assert_int_equal(with(t, "[com]\nretry_min = 5m\nretry_max = 300s\n"),
			 ERR_OK);
	assert_int_equal(with(t, "[com]\nauth_retry_min = 2h\n"), ERR_INVAL);
	msgs_are(t, "$:10: auth_retry_max: 1h must not be shorter than "
		    "auth_retry_min 2h\n");
	assert_int_equal(with(t, "[com]\nauth_retry_min = 1h\n"), ERR_OK);
	assert_int_equal(conf_num(t->c, CONF_COM_AUTH_RETRY_MIN), 3600000);
	/* A bad value is reported once, not again by the rule. */
	assert_int_equal(with(t, "[com]\nretry_min = 2h\n"), ERR_INVAL);
	msgs_are(t, "$:10: retry_min: 2h is out of range 100ms..1h\n");
}

static void test_rule_proxy(void **state)
{
	struct tc *t = *state;

	assert_int_equal(with(t, "[com]\nproxy = p:3128\nproxy_user = u\n"
			      "proxy_password = pw ;x\n"), ERR_OK);
	msgs_are(t, "");
	assert_string_equal(conf_str(t->c, CONF_COM_PROXY_USER), "u");
	assert_string_equal(conf_str(t->c, CONF_COM_PROXY_PASSWORD), "pw ;x");
	assert_int_equal(with(t, "[com]\nproxy = p:3128\nproxy_user = u\n"),
			 ERR_INVAL);
	msgs_are(t, "$:11: proxy_user: set without proxy_password\n");
	assert_int_equal(with(t, "[com]\nproxy = p:1\nproxy_password = pw\n"),
			 ERR_INVAL);
	msgs_are(t, "$:11: proxy_password: set without proxy_user\n");
	assert_int_equal(with(t, "[com]\nproxy_user = u\nproxy_password = pw\n"),
			 ERR_INVAL);
	msgs_are(t, "$:10: proxy_user: set without proxy\n"
		    "$:11: proxy_password: set without proxy\n");
	assert_int_equal(with(t, "[com]\nproxy =\nproxy_user = u\n"
			      "proxy_password = pw\n"), ERR_INVAL);
	msgs_are(t, "$:11: proxy_user: set without proxy\n"
		    "$:12: proxy_password: set without proxy\n");
	/* A proxy without credentials is fine. */
	assert_int_equal(with(t, "[com]\nproxy = p:8080\n"), ERR_OK);
	reject(t, "com", "proxy_user", "a:b",
	       "proxy_user: must not contain ':' (Basic authentication "
	       "cannot carry it)");
}

/* ---- profiles ---------------------------------------------------------- */

static void test_profile_defaults(void **state)
{
	struct tc *t = *state;

	assert_int_equal(with(t, "[system]\nprofile = ip500v2\n"), ERR_OK);
	assert_string_equal(conf_platform(t->c)->label, "IP500 V2");
	assert_int_equal(conf_num(t->c, CONF_LOG_MAX_SIZE), 1024 * 1024);
	assert_string_equal(conf_str(t->c, CONF_LOG_MAX_SIZE), "1M");
	assert_false(conf_isset(t->c, CONF_LOG_MAX_SIZE));
	assert_string_equal(conf_str(t->c, CONF_LOG_FILE),
			    "/var/log/comagent.log");
	assert_string_equal(conf_str(t->c, CONF_SYSTEM_STATE_DIR),
			    "/var/lib/comagent");

	assert_int_equal(with(t, "[system]\nprofile = linux\n"), ERR_OK);
	assert_string_equal(conf_platform(t->c)->label, "Server Edition");
	assert_int_equal(conf_num(t->c, CONF_LOG_MAX_SIZE), 10 * 1024 * 1024);
	assert_string_equal(conf_str(t->c, CONF_LOG_MAX_SIZE), "10M");

	/* The file wins over the profile. */
	assert_int_equal(with(t, "[log]\nmax_size = 2M\nfile = a.log\n"
			      "[system]\nprofile = ip500v2\nroot = /r\n"
			      "state_dir = /st\n"), ERR_OK);
	assert_int_equal(conf_num(t->c, CONF_LOG_MAX_SIZE), 2 * 1024 * 1024);
	assert_true(conf_isset(t->c, CONF_LOG_MAX_SIZE));
	assert_string_equal(conf_str(t->c, CONF_LOG_FILE), "/r/a.log");
	assert_string_equal(conf_str(t->c, CONF_SYSTEM_STATE_DIR), "/st");
	assert_string_equal(conf_str(t->c, CONF_SYSTEM_CONTROL_SOCKET),
			    "/r/run/comagent.sock");
}

/* Bulk data per profile; on the IP500 V2 it must be on the SD card. */
static void test_profile_volumes(void **state)
{
	struct tc *t = *state;

	assert_int_equal(with(t, "[system]\nprofile = ip500v2\nroot = /r\n"),
			 ERR_OK);
	assert_string_equal(conf_str(t->c, CONF_JOBS_STAGING_DIR),
			    "/r/system/comagent/staging");
	assert_string_equal(conf_str(t->c, CONF_JOBS_WORK_DIR),
			    "/r/system/comagent/work");
	assert_string_equal(conf_str(t->c, CONF_LOGS_STORE_DIR),
			    "/r/system/comagent/logs");
	assert_string_equal(conf_str(t->c, CONF_CUSTOM_PHONE_DIR),
			    "/r/system/primary");
	assert_string_equal(conf_str(t->c, CONF_CUSTOM_TEMPLATE_DIR),
			    "/r/system/primary/templates");

	assert_int_equal(with(t, "[system]\nprofile = linux\nroot = /r\n"),
			 ERR_OK);
	assert_string_equal(conf_str(t->c, CONF_JOBS_STAGING_DIR),
			    "/r/var/lib/comagent/staging");
	assert_string_equal(conf_str(t->c, CONF_CUSTOM_PHONE_DIR),
			    "/r/opt/ipoffice/system/primary");

	/* On the appliance's flash, or out through "..": refused. */
	assert_int_equal(with(t, "[system]\nprofile = ip500v2\nroot = /r\n"
			      "[jobs]\nstaging_dir = /var/staging\n"
			      "work_dir = system/../var/w\n"
			      "[custom]\nphone_dir = system/primary\n"), ERR_INVAL);
	msgs_are(t, "$:14: work_dir: /r/system/../var/w is not on the System "
		 "SD card (/r/system): the IP500 V2 keeps its bulk data there\n"
		 "$:13: staging_dir: /var/staging is not on the System SD "
		 "card (/r/system): the IP500 V2 keeps its bulk data there\n");
	/* The same paths are fine on a server. */
	assert_int_equal(with(t, "[system]\nprofile = linux\nroot = /r\n"
			      "[jobs]\nstaging_dir = /var/staging\n"), ERR_OK);
}

static void test_platform_tables(void **state)
{
	const struct platform_ops *ip = platform_find("ip500v2");
	const struct platform_ops *lx = platform_find("linux");
	char root[] = "/tmp/test_conf-root-XXXXXX";
	char path[128], buf[64];
	FILE *f;

	(void)state;
	assert_non_null(ip);
	assert_non_null(lx);
	assert_null(platform_find("Linux"));
	assert_null(platform_find(NULL));
	assert_int_equal(ip->log_max_size, 1024 * 1024);
	assert_int_equal(lx->log_max_size, 10 * 1024 * 1024);
	assert_non_null(mkdtemp(root));
	assert_int_equal(lx->read_version(root, buf, sizeof(buf)), ERR_OK);
	assert_string_equal(buf, "unknown");
	snprintf(path, sizeof(path), "%s/etc", root);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/etc/ipoffice-version", root);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("  11.1.3.0 build 5 \r\nsecond line\n", f);
	fclose(f);
	assert_int_equal(ip->read_version(root, buf, sizeof(buf)), ERR_OK);
	assert_string_equal(buf, "11.1.3.0 build 5");
	assert_int_equal(ip->read_version(root, buf, 4), ERR_LIMIT);
	unlink(path);
	snprintf(path, sizeof(path), "%s/etc", root);
	rmdir(path);
	rmdir(root);
}

/* ---- integers, hosts, services ----------------------------------------- */

static void test_max_streams(void **state)
{
	struct tc *t = *state;
	static const char *const garbage[] = {
		"x", "-1", "+5", "64k", "1.5", "0x10", "6 4", "1e2", NULL
	};
	char msg[128];

	accept(t, "com", "max_streams", "1");
	assert_int_equal(conf_num(t->c, CONF_COM_MAX_STREAMS), 1);
	assert_true(conf_isset(t->c, CONF_COM_MAX_STREAMS));
	accept(t, "com", "max_streams", "256");
	assert_int_equal(conf_num(t->c, CONF_COM_MAX_STREAMS), 256);
	accept(t, "com", "max_streams", "0008");
	assert_int_equal(conf_num(t->c, CONF_COM_MAX_STREAMS), 8);
	assert_string_equal(conf_str(t->c, CONF_COM_MAX_STREAMS), "0008");
	reject(t, "com", "max_streams", "0",
	       "max_streams: 0 is out of range 1..256");
	reject(t, "com", "max_streams", "257",
	       "max_streams: 257 is out of range 1..256");
	reject(t, "com", "max_streams", "99999999999999999999",
	       "max_streams: 99999999999999999999 is out of range 1..256");
	for (unsigned i = 0; garbage[i]; i++) {
		snprintf(msg, sizeof(msg), "max_streams: '%s' is not a number",
			 garbage[i]);
		reject(t, "com", "max_streams", garbage[i], msg);
	}
	reject(t, "com", "max_streams", "", "max_streams: empty value");
}

static void test_services(void **state)
{
	struct tc *t = *state;
	static const struct {
		const char *key;
		enum conf_key k;
	} svc[] = {
		{ "ssh", CONF_SERVICES_SSH },
		{ "https", CONF_SERVICES_HTTPS },
		{ "webcontrol", CONF_SERVICES_WEBCONTROL },
		{ "oneportal", CONF_SERVICES_ONEPORTAL },
		{ "weblm", CONF_SERVICES_WEBLM },
		{ "webmanager", CONF_SERVICES_WEBMANAGER },
	};
	char msg[128];

	for (size_t i = 0; i < sizeof(svc) / sizeof(svc[0]); i++) {
		accept(t, "services", svc[i].key, "1");
		assert_int_equal(conf_num(t->c, svc[i].k), 1);
		assert_true(conf_isset(t->c, svc[i].k));
		accept(t, "services", svc[i].key, "65535");
		assert_int_equal(conf_num(t->c, svc[i].k), 65535);
		snprintf(msg, sizeof(msg), "%s: 0 is out of range 1..65535",
			 svc[i].key);
		reject(t, "services", svc[i].key, "0", msg);
		snprintf(msg, sizeof(msg), "%s: 65536 is out of range "
			 "1..65535", svc[i].key);
		reject(t, "services", svc[i].key, "65536", msg);
		snprintf(msg, sizeof(msg), "%s: 'ssh' is not a number",
			 svc[i].key);
		reject(t, "services", svc[i].key, "ssh", msg);
		snprintf(msg, sizeof(msg), "%s: empty value", svc[i].key);
		reject(t, "services", svc[i].key, "", msg);
	}
	/* sshd on a high port in the tests; the others keep theirs. */
	assert_int_equal(with(t, "[services]\nssh = 2222\n"), ERR_OK);
	assert_int_equal(conf_num(t->c, CONF_SERVICES_SSH), 2222);
	assert_int_equal(conf_num(t->c, CONF_SERVICES_HTTPS), 443);
	assert_false(conf_isset(t->c, CONF_SERVICES_HTTPS));
	assert_int_equal(with(t, "[services]\nssh = 22\nssh = 23\n"
			      "telnet = 23\n"), ERR_INVAL);
	msgs_are(t, "$:11: duplicate key 'ssh' (first at line 10)\n"
		    "$:12: unknown key 'telnet' in [services]\n");
}

static void test_system_address(void **state)
{
	struct tc *t = *state;
	static const char *const good[] = {
		"127.0.0.1", "10.1.2.3", "::1", "2001:db8::5",
		"::ffff:10.0.0.1", "pbx.example.net", "pbx-hq", "h_1",
		"pbx.example.net.", "1e3", "0x.example", NULL
	};
	/* The last label a number: only a dotted quad inet_pton takes,
	 * never glibc's other spellings of an IPv4 address. */
	static const char *const bad[] = {
		"[::1]", "10.0.0.05", "010.0.0.1", "10.1", "127", "0x7f.1",
		"0x7f000001", "a.0X1f", "10.0.0.1.", "256.1.1.1",
		"fe80::1%eth0", "a b", "host:80", "h/x", "::g", NULL
	};
	char msg[160];

	for (unsigned i = 0; good[i]; i++) {
		accept(t, "system", "address", good[i]);
		assert_string_equal(conf_str(t->c, CONF_SYSTEM_ADDRESS),
				    good[i]);
		assert_true(conf_isset(t->c, CONF_SYSTEM_ADDRESS));
	}
	for (unsigned i = 0; bad[i]; i++) {
		snprintf(msg, sizeof(msg), "address: '%s' is not an IP "
			 "address or host name", bad[i]);
		reject(t, "system", "address", bad[i], msg);
	}
	reject(t, "system", "address", "", "address: empty value");
	/* The same rule for the proxy and COM's host. */
	reject(t, "com", "proxy", "010.0.0.1:3128",
	       "proxy: '010.0.0.1:3128' is not host:port");
	reject(t, "com", "proxy", "10.1:3128",
	       "proxy: '10.1:3128' is not host:port");
	reject(t, "com", "url", "wss://10.1/agent",
	       "url: 'wss://10.1/agent' has an invalid host or port");
	accept(t, "com", "proxy", "10.0.0.1:3128");
	accept(t, "com", "proxy", "proxy1.example.net:3128");
}

/* ---- [network] --------------------------------------------------------- */

static void test_network(void **state)
{
	struct tc *t = *state;
	const struct conf_server *sv;
	char text[300];

	assert_int_equal(with(t,
		"[network]\n"			/* 9 */
		"pbx-2 = 10.0.1.2\n"		/* 10 */
		"pbx.3 = pbx3.example.net\n"	/* 11 */
		"[log]\n"			/* 12 */
		"level = info\n"		/* 13 */
		"[network]\n"			/* 14: once more */
		"Pbx_4 = 2001:db8::4\n"),	/* 15 */
		ERR_OK);
	msgs_are(t, "");
	assert_int_equal(conf_server_count(t->c), 3);
	sv = conf_server_at(t->c, 0);
	assert_string_equal(sv->name, "pbx-2");
	assert_string_equal(sv->address, "10.0.1.2");
	assert_int_equal(sv->line, 10);
	sv = conf_server_at(t->c, 1);
	assert_string_equal(sv->name, "pbx.3");
	assert_string_equal(sv->address, "pbx3.example.net");
	assert_int_equal(sv->line, 11);
	sv = conf_server_at(t->c, 2);
	assert_string_equal(sv->name, "Pbx_4");
	assert_string_equal(sv->address, "2001:db8::4");
	assert_int_equal(sv->line, 15);
	assert_null(conf_server_at(t->c, 3));

	/* 64 characters for a name. */
	snprintf(text, sizeof(text), "[network]\n%064d = 10.0.0.1\n", 7);
	assert_int_equal(with(t, text), ERR_OK);
	assert_int_equal(strlen(conf_server_at(t->c, 0)->name), 64);
	snprintf(text, sizeof(text), "[network]\n%065d = 10.0.0.1\n", 7);
	assert_int_equal(with(t, text), ERR_INVAL);
	msgs_are(t, "$:10: key name too long (max 64 characters)\n");
}

static void test_network_errors(void **state)
{
	struct tc *t = *state;

	assert_int_equal(with(t,
		"[network]\n"			/* 9 */
		"pbx2 = 10.0.1.2\n"		/* 10 */
		"PBX2 = 10.0.1.3\n"		/* 11: names ignore case */
		"pbx2 = 10.0.1.2\n"		/* 12 */
		"a b = 10.0.0.1\n"		/* 13 */
		"pbx/5 = 10.0.0.1\n"		/* 14 */
		"pbx6 = 10.0.0.06\n"		/* 15 */
		"pbx7 =\n"			/* 16 */
		"PBX-hq = 10.0.0.8\n"		/* 17: this system */
		"pbx9 = [::1]\n"		/* 18 */
		"pbx10 = a\x01z\n"),		/* 19 */
		ERR_INVAL);
	msgs_are(t,
		"$:11: duplicate key 'PBX2' (first at line 10)\n"
		"$:12: duplicate key 'pbx2' (first at line 10)\n"
		"$:13: server name 'a b' may only contain letters, digits, "
		"'.', '_' and '-'\n"
		"$:14: server name 'pbx/5' may only contain letters, digits, "
		"'.', '_' and '-'\n"
		"$:15: pbx6: '10.0.0.06' is not an IP address or host name\n"
		"$:16: pbx7: empty value\n"
		"$:18: pbx9: '[::1]' is not an IP address or host name\n"
		"$:19: pbx10: contains a control character\n"
		"$:17: server 'PBX-hq' has this system's own name "
		"(system_name)\n");
	/* Not outside a section, not in another one. */
	assert_int_equal(with(t, "[log]\npbx2 = 10.0.0.2\n"), ERR_INVAL);
	msgs_are(t, "$:10: unknown key 'pbx2' in [log]\n");
}

static void test_network_cap(void **state)
{
	struct tc *t = *state;
	char text[1024];
	size_t n;

	n = (size_t)snprintf(text, sizeof(text), "[network]\n");
	for (int i = 1; i <= 16; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "pbx%d = 10.0.0.%d\n", i, i);
	assert_int_equal(with(t, text), ERR_OK);
	assert_int_equal(conf_server_count(t->c), 16);
	assert_string_equal(conf_server_at(t->c, 15)->name, "pbx16");
	assert_int_equal(conf_server_at(t->c, 15)->line, 25);
	/* The 17th, line 26; a duplicate is still called one. */
	snprintf(text + n, sizeof(text) - n, "pbx17 = 10.0.0.17\n"
		 "pbx1 = 10.0.0.1\n");
	assert_int_equal(with(t, text), ERR_INVAL);
	msgs_are(t, "$:26: too many network servers (max 16)\n"
		    "$:27: duplicate key 'pbx1' (first at line 10)\n");
}

/* ---- [tunnel NAME] ----------------------------------------------------- */

static void tunnel_is(const struct conf *c, size_t i, const char *name,
		      const char *app, const char *addr, unsigned port,
		      int line)
{
	const struct conf_tunnel *tun = conf_tunnel_at(c, i);

	assert_non_null(tun);
	assert_string_equal(tun->name, name);
	assert_string_equal(tun->application, app);
	assert_string_equal(tun->address, addr);
	assert_int_equal(tun->port, port);
	assert_int_equal(tun->line, line);
}

static void test_tunnels(void **state)
{
	struct tc *t = *state;
	char text[300], name[70];

	assert_int_equal(with(t,
		"[tunnel rdp-terminal]\n"	/* 9 */
		"application = rdp\n"		/* 10 */
		"address = 10.0.0.7\n"		/* 11 */
		"[tunnel ssh.box]\n"		/* 12 */
		"address = 2001:DB8:0:0::0:7\n"	/* 13 */
		"application = ssh\n"		/* 14 */
		"[tunnel web_1]\n"		/* 15 */
		"application = https\n"		/* 16 */
		"address = ::ffff:10.0.0.8\n"	/* 17 */
		"[tunnel app]\n"		/* 18 */
		"application = custom\n"	/* 19 */
		"address = 10.0.0.7\n"		/* 20 */
		"port = 65535\n"		/* 21 */
		"[tunnel   rdp2]\n"		/* 22 */
		"port = 1\n"			/* 23 */
		"application = rdp\n"		/* 24 */
		"address = 10.0.0.7\n"		/* 25 */
		"[com]\n"			/* 26: a fixed one again */
		"max_streams = 8\n"),		/* 27 */
		ERR_OK);
	msgs_are(t, "");
	assert_int_equal(conf_tunnel_count(t->c), 5);
	tunnel_is(t->c, 0, "rdp-terminal", "rdp", "10.0.0.7", 3389, 9);
	tunnel_is(t->c, 1, "ssh.box", "ssh", "2001:db8::7", 22, 12);
	tunnel_is(t->c, 2, "web_1", "https", "10.0.0.8", 443, 15);
	tunnel_is(t->c, 3, "app", "custom", "10.0.0.7", 65535, 18);
	tunnel_is(t->c, 4, "rdp2", "rdp", "10.0.0.7", 1, 22);
	assert_null(conf_tunnel_at(t->c, 5));
	assert_int_equal(conf_num(t->c, CONF_COM_MAX_STREAMS), 8);

	/* A 64-character name, past inih's 49-character section names. */
	memset(name, 'n', 64);
	name[64] = '\0';
	snprintf(text, sizeof(text), "[tunnel %s]\napplication = ssh\n"
		 "address = fe80::1\n[tunnel b]\naddress = 127.0.0.1\n"
		 "application = ssh\n", name);
	assert_int_equal(with(t, text), ERR_OK);
	msgs_are(t, "");
	tunnel_is(t->c, 0, name, "ssh", "fe80::1", 22, 9);
	tunnel_is(t->c, 1, "b", "ssh", "127.0.0.1", 22, 12);
}

static void test_tunnel_headers(void **state)
{
	struct tc *t = *state;
	char text[400];

	snprintf(text, sizeof(text),
		"[tunnel]\n"			/* 9 */
		"application = rdp\n"		/* 10: skipped */
		"[tunnel a b]\n"		/* 11 */
		"[tunnel a/b]\n"		/* 12 */
		"[tunnel %065d]\n"		/* 13 */
		"[tunnelx]\n"			/* 14 */
		"[tunnel ok]\n"			/* 15 */
		"application = ssh\n"		/* 16 */
		"address = 10.0.0.1\n"		/* 17 */
		"[tunnel ok]\n"			/* 18 */
		"address = 10.0.0.2\n"		/* 19: skipped */
		"bogus = 1\n"			/* 20: skipped */
		"[Tunnel x]\n", 5);		/* 21 */
	assert_int_equal(with(t, text), ERR_INVAL);
	msgs_are(t,
		"$:9: tunnel section without a name (write [tunnel NAME])\n"
		"$:11: tunnel name 'a b' may only contain letters, digits, "
		"'.', '_' and '-'\n"
		"$:12: tunnel name 'a/b' may only contain letters, digits, "
		"'.', '_' and '-'\n"
		"$:13: tunnel name too long (65 characters, max 64)\n"
		"$:14: unknown section [tunnelx]\n"
		"$:18: duplicate tunnel 'ok' (first at line 15)\n"
		"$:21: unknown section [Tunnel x]\n");
}

static void test_tunnel_keys(void **state)
{
	struct tc *t = *state;

	assert_int_equal(with(t,
		"[tunnel t1]\n"			/* 9 */
		"application = telnet\n"	/* 10 */
		"address = host.example.net\n"	/* 11 */
		"port = 0\n"			/* 12 */
		"user = x\n"			/* 13 */
		"port = 22\n"			/* 14 */
		"[tunnel t2]\n"			/* 15 */
		"application = custom\n"	/* 16 */
		"address = 10.0.0.2\n"		/* 17 */
		"[tunnel t3]\n"			/* 18 */
		"port = 80\n"			/* 19 */
		"[tunnel t4]\n"			/* 20 */
		"application =\n"		/* 21 */
		"address =\n"			/* 22 */
		"port = http\n"			/* 23 */
		"[tunnel t5]\n"			/* 24 */
		"application = SSH\n"		/* 25 */
		"address = 10.0.0.5\n"		/* 26 */
		"port = 65536\n"),		/* 27 */
		ERR_INVAL);
	msgs_are(t,
		"$:10: application: 'telnet' is not one of ssh, rdp, https, "
		"custom\n"
		"$:11: address: 'host.example.net' is not an IPv4 or IPv6 "
		"address\n"
		"$:12: port: 0 is out of range 1..65535\n"
		"$:13: unknown key 'user' in [tunnel t1]\n"
		"$:14: duplicate key 'port' (first at line 12)\n"
		"$:21: application: empty value (required key)\n"
		"$:22: address: empty value (required key)\n"
		"$:23: port: 'http' is not a number\n"
		"$:25: application: 'SSH' is not one of ssh, rdp, https, "
		"custom\n"
		"$:27: port: 65536 is out of range 1..65535\n"
		"$:15: missing required key [tunnel t2] port (application "
		"custom has no default)\n"
		"$:18: missing required key [tunnel t3] application\n"
		"$:18: missing required key [tunnel t3] address\n");
}

static void test_tunnel_address(void **state)
{
	struct tc *t = *state;
	static const char *const not_ip[] = {
		"pbx.example.net", "10.0.0.05", "10.1", "[10.0.0.1]", "[::1]",
		"fe80::1%eth0", "10.0.0.1:22", "1.2.3.4.5", "::g", "a b", NULL
	};
	static const char *const not_host[] = {
		"0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.255",
		"255.255.255.255", "::", "0:0::0", "ff02::1", "::ffff:0.0.0.0",
		"::ffff:224.0.0.9", NULL
	};
	static const struct {
		const char *in, *canon;
	} good[] = {
		{ "1.0.0.0", "1.0.0.0" },
		{ "223.255.255.255", "223.255.255.255" },
		{ "127.0.0.1", "127.0.0.1" }, { "::1", "::1" },
		{ "::FFFF:192.168.1.1", "192.168.1.1" },
		{ "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1" },
		{ "FE80:0:0:0:0:0:0:1", "fe80::1" },
	};
	char text[200], msg[200];

	for (unsigned i = 0; not_ip[i]; i++) {
		snprintf(text, sizeof(text), "[tunnel t]\napplication = ssh\n"
			 "address = %s\n", not_ip[i]);
		assert_int_equal(with(t, text), ERR_INVAL);
		snprintf(msg, sizeof(msg), "$:11: address: '%s' is not an "
			 "IPv4 or IPv6 address\n", not_ip[i]);
		msgs_are(t, msg);
	}
	for (unsigned i = 0; not_host[i]; i++) {
		snprintf(text, sizeof(text), "[tunnel t]\napplication = ssh\n"
			 "address = %s\n", not_host[i]);
		assert_int_equal(with(t, text), ERR_INVAL);
		snprintf(msg, sizeof(msg), "$:11: address: '%s' is not the "
			 "address of a single host (unspecified, multicast or "
			 "broadcast)\n", not_host[i]);
		msgs_are(t, msg);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "[tunnel t]\napplication = ssh\n"
			 "address = %s\n", good[i].in);
		assert_int_equal(with(t, text), ERR_OK);
		assert_string_equal(conf_tunnel_at(t->c, 0)->address,
				    good[i].canon);
	}
}

static void test_tunnel_same_target(void **state)
{
	struct tc *t = *state;

	assert_int_equal(with(t,
		"[tunnel a]\n"			/* 9 */
		"application = rdp\n"		/* 10 */
		"address = 10.0.0.7\n"		/* 11 */
		"[tunnel b]\n"			/* 12 */
		"application = custom\n"	/* 13 */
		"address = ::ffff:10.0.0.7\n"	/* 14 */
		"port = 3389\n"			/* 15: a's by default */
		"[tunnel c]\n"			/* 16 */
		"port = 22\n"			/* 17 */
		"address = 2001:db8::7\n"	/* 18 */
		"application = custom\n"	/* 19 */
		"[tunnel d]\n"			/* 20 */
		"address = 2001:DB8:0:0:0:0:0:7\n"	/* 21 */
		"application = ssh\n"		/* 22 */
		"[tunnel e]\n"			/* 23 */
		"application = ssh\n"		/* 24 */
		"address = 10.0.0.7\n"		/* 25: another port */
		"[tunnel f]\n"			/* 26 */
		"application = https\n"		/* 27 */
		"address = 10.0.0.7\n"		/* 28 */
		"port = 3389\n"),		/* 29: a third time */
		ERR_INVAL);
	msgs_are(t,
		"$:15: duplicate tunnel target 10.0.0.7:3389 (first in "
		"[tunnel a] at line 9)\n"
		"$:21: duplicate tunnel target [2001:db8::7]:22 (first in "
		"[tunnel c] at line 16)\n"
		"$:29: duplicate tunnel target 10.0.0.7:3389 (first in "
		"[tunnel a] at line 9)\n");
}

static void test_tunnel_cap(void **state)
{
	struct tc *t = *state;
	char text[4096];
	size_t n = 0;

	for (int i = 1; i <= 32; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "[tunnel t%d]\napplication = ssh\n"
				      "address = 10.0.0.%d\n", i, i);
	assert_int_equal(with(t, text), ERR_OK);
	assert_int_equal(conf_tunnel_count(t->c), 32);
	tunnel_is(t->c, 31, "t32", "ssh", "10.0.0.32", 22, 9 + 31 * 3);
	/* The 33rd is refused on its line (105), its keys with it. */
	snprintf(text + n, sizeof(text) - n, "[tunnel t33]\n"
		 "application = ssh\naddress = 10.0.0.33\n");
	assert_int_equal(with(t, text), ERR_INVAL);
	msgs_are(t, "$:105: too many tunnels (max 32)\n");
}

static void test_ip_canon(void **state)
{
	static const char *const bad[] = {
		"10.0.0.07", "host", "", " 10.0.0.7", "10.0.0.7 ",
		"fe80::1%1", "[::1]", NULL
	};
	char out[CONF_IP_MAX];

	(void)state;
	assert_true(conf_ip_canon("10.0.0.7", out, sizeof(out)));
	assert_string_equal(out, "10.0.0.7");
	assert_true(conf_ip_canon("2001:0DB8:0000::0007", out, sizeof(out)));
	assert_string_equal(out, "2001:db8::7");
	assert_true(conf_ip_canon("::ffff:10.0.0.7", out, sizeof(out)));
	assert_string_equal(out, "10.0.0.7");
	assert_true(conf_ip_canon("::1", out, sizeof(out)));
	assert_string_equal(out, "::1");
	assert_true(conf_ip_canon("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
				  out, sizeof(out)));
	assert_string_equal(out, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	for (unsigned i = 0; bad[i]; i++) {
		out[0] = 'x';
		assert_false(conf_ip_canon(bad[i], out, sizeof(out)));
		assert_string_equal(out, "");
	}
	assert_false(conf_ip_canon(NULL, out, sizeof(out)));
	/* "10.0.0.7" needs 9 bytes. */
	assert_false(conf_ip_canon("10.0.0.7", out, 8));
	assert_string_equal(out, "");
	assert_true(conf_ip_canon("10.0.0.7", out, 9));
	assert_false(conf_ip_canon("10.0.0.7", out, 0));
	assert_false(conf_ip_canon("10.0.0.7", NULL, 9));
	assert_int_equal(conf_tunnel_count(NULL), 0);
	assert_null(conf_tunnel_at(NULL, 0));
	assert_int_equal(conf_server_count(NULL), 0);
	assert_null(conf_server_at(NULL, 0));
}

/* ---- the file itself --------------------------------------------------- */

static void test_world_readable(void **state)
{
	struct tc *t = *state;
	char text[512];
	size_t n = 0;

	for (unsigned i = 0; base_lines[i]; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%s\n",
				      base_lines[i]);
	assert_int_equal(load_raw(t, text, n, 0604), ERR_PERM);
	msgs_are(t, "$: file is world-readable and holds a password; "
		    "run: chmod o-r $\n");
	assert_int_equal(load_raw(t, text, n, 0640), ERR_OK);
	msgs_are(t, "");
	/* Invalid as well: ERR_INVAL, both reported. */
	snprintf(text + n, sizeof(text) - n, "[log]\nlevel = x\n");
	assert_int_equal(load_raw(t, text, strlen(text), 0644), ERR_INVAL);
	msgs_are(t, "$:10: level: 'x' is not one of error, info, debug\n"
		    "$: file is world-readable and holds a password; "
		    "run: chmod o-r $\n");
}

static void test_io_errors(void **state)
{
	struct tc *t = *state;
	char dir[] = "/tmp/test_conf-dir-XXXXXX";
	char msg[128];

	reset(t);
	assert_int_equal(load_path(t, "/nonexistent/comagent.ini"), ERR_IO);
	assert_string_equal(t->msg, "/nonexistent/comagent.ini: cannot "
			    "open: No such file or directory\n");
	free(t->msg);
	t->msg = NULL;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(load_path(t, dir), ERR_IO);
	snprintf(msg, sizeof(msg), "%s: read error: Is a directory\n", dir);
	assert_string_equal(t->msg, msg);
	rmdir(dir);
}

static void test_null_errs_and_accessors(void **state)
{
	struct tc *t = *state;
	struct conf *c = NULL;

	assert_int_equal(with(t, "[com]\ngrace = 0s\n"), ERR_INVAL);
	/* errs NULL: same verdict, nothing printed. */
	assert_int_equal(conf_load(t->path, NULL, &c), ERR_INVAL);
	assert_null(c);
	assert_int_equal(conf_load(NULL, NULL, &c), ERR_INVAL);
	assert_string_equal(conf_str(NULL, CONF_COM_URL), "");
	assert_int_equal(conf_num(NULL, CONF_COM_GRACE), 0);
	assert_false(conf_isset(NULL, CONF_COM_URL));
	assert_null(conf_platform(NULL));
	conf_free(NULL);
	assert_int_equal(with(t, ""), ERR_OK);
	assert_string_equal(conf_str(t->c, CONF__COUNT), "");
	assert_int_equal(conf_num(t->c, CONF_COM_URL), 0);
}

/* `comagent config-keys` (conf_print_keys, what comagent(8) is made from)
 * shows for each profile-dependent key the default conf_load() gives it:
 * its table and apply_platform()'s agree. */
static void test_print_keys(void **state)
{
	static const struct { const char *key; enum conf_key k; bool path; }
	pk[] = {
		{ "state_dir", CONF_SYSTEM_STATE_DIR, true },
		{ "control_socket", CONF_SYSTEM_CONTROL_SOCKET, true },
		{ "file", CONF_LOG_FILE, true },
		{ "max_size", CONF_LOG_MAX_SIZE, false },
		{ "work_dir", CONF_JOBS_WORK_DIR, true },
		{ "staging_dir", CONF_JOBS_STAGING_DIR, true },
		{ "store_dir", CONF_LOGS_STORE_DIR, true },
		{ "max_total", CONF_LOGS_MAX_TOTAL, false },
		{ "max_day", CONF_LOGS_MAX_DAY, false },
		{ "file_max", CONF_LOGS_FILE_MAX, false },
		{ "phone_dir", CONF_CUSTOM_PHONE_DIR, true },
		{ "template_dir", CONF_CUSTOM_TEMPLATE_DIR, true },
	};
	static const char *const profiles[] = { "ip500v2", "linux" };
	struct tc *t = *state;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(f);
	conf_print_keys(f);
	assert_int_equal(fclose(f), 0);
	assert_non_null(strstr(out, "[com]\n  url\n      type:     URL"));
	assert_non_null(strstr(out, "      flags:    required, secret"));
	assert_non_null(strstr(out, "\n[network]\n"));
	assert_non_null(strstr(out, "\n[tunnel NAME]\n"));
	assert_non_null(strstr(out, "by application (ssh 22, rdp 3389, "
				    "https 443)"));
	/* A profile-dependent key platform_default() does not know. */
	assert_null(strstr(out, "platform default ()"));
	for (size_t p = 0; p < 2; p++) {
		char extra[80], needle[80], want[300];

		snprintf(extra, sizeof(extra), "[system]\nprofile = %s\n"
			 "root = /r\n", profiles[p]);
		assert_int_equal(with(t, extra), ERR_OK);
		for (size_t i = 0; i < sizeof(pk) / sizeof(pk[0]); i++) {
			const char *b, *v;
			size_t n;

			snprintf(needle, sizeof(needle), "\n  %s\n", pk[i].key);
			b = strstr(out, needle);
			assert_non_null(b);
			b = strstr(b, "      default:  platform default (");
			assert_non_null(b);
			snprintf(needle, sizeof(needle), "%s: ", profiles[p]);
			v = strstr(b, needle);
			assert_non_null(v);
			v += strlen(needle);
			n = strcspn(v, ";)");
			if (pk[i].path)
				snprintf(want, sizeof(want), "/r/%.*s", (int)n, v);
			else
				snprintf(want, sizeof(want), "%.*s", (int)n, v);
			assert_string_equal(conf_str(t->c, pk[i].k), want);
		}
	}
	free(out);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_example_loads),
		T(test_example_commented_keys_valid),
		T(test_minimal_gets_defaults),
		T(test_string_id_class),
		T(test_string_password),
		T(test_string_other),
		T(test_url),
		T(test_hostport),
		T(test_duration_units),
		T(test_duration_garbage),
		T(test_duration_bounds),
		T(test_size),
		T(test_enum),
		T(test_path_resolution),
		T(test_path_root_absolute),
		T(test_duplicates),
		T(test_unknown_names),
		T(test_syntax_errors),
		T(test_comments_crlf_bom),
		T(test_long_lines),
		T(test_key_name_and_nul),
		T(test_missing_required),
		T(test_many_errors),
		T(test_rule_idle_ping),
		T(test_rule_retry),
		T(test_rule_proxy),
		T(test_profile_defaults),
		T(test_profile_volumes),
		T(test_platform_tables),
		T(test_world_readable),
		T(test_io_errors),
		T(test_null_errs_and_accessors),
		T(test_max_streams),
		T(test_services),
		T(test_system_address),
		T(test_network),
		T(test_network_errors),
		T(test_network_cap),
		T(test_tunnels),
		T(test_tunnel_headers),
		T(test_tunnel_keys),
		T(test_tunnel_address),
		T(test_tunnel_same_target),
		T(test_tunnel_cap),
		T(test_ip_canon),
		T(test_print_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
