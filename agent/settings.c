/*
 * settings — the remote-operation settings (see settings.h).
 *
 * The whole file is read into a stack buffer (it is a few hundred bytes at
 * most) and parsed in place, line by line, with lengths rather than NUL
 * terminators, so nothing in it is ever copied unbounded. A change is made
 * to a copy of the values that is rendered and written first, and only
 * then taken over, so memory and file never disagree after a failure.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "settings.h"
#include "state.h"

#define LOG_MODULE "settings"

#define FILE_NAME	"settings"
#define ECHO_MAX	64	/* of a name or value quoted in a message */

/* The CustomData.xml tags, in enum setting order (= the file's order). */
static const char *const names[SET__COUNT] = {
	[SET_CENTRALMGMT] = "centralmgmt",
	[SET_LOGTRANSFER] = "logtransfer",
	[SET_REMOTEUPGRADE] = "remoteupgrade",
	[SET_REMOTEACCESS] = "remoteaccess",
	[SET_EXTERNALREMOTEACCESS] = "externalremoteaccess",
	[SET_CENTRALCERT] = "centralcert",
};

struct settings {
	char path[STATE_PATH_MAX + 1];
	bool on[SET__COUNT];
};

/* What one pass over the file found. */
struct scan {
	const char *path;
	bool on[SET__COUNT];
	unsigned first[SET__COUNT];	/* line it was first named on; 0 */
	bool bad[SET__COUNT];		/* a bad line for it: it is off */
	unsigned line;
	unsigned nerr;
};

static bool key_ok(enum setting k)
{
	return (unsigned)k < SET__COUNT;
}

__attribute__((format(printf, 2, 3)))
static void problem(struct scan *sc, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	sc->nerr++;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	LOGE("%s:%u: %s", sc->path, sc->line, msg);
}

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/* The n bytes at s without blanks at either end. */
static const char *trim(const char *s, size_t *n)
{
	while (*n > 0 && is_blank(*s)) {
		s++;
		(*n)--;
	}
	while (*n > 0 && is_blank(s[*n - 1]))
		(*n)--;
	return s;
}

/* Whether text from the file may be quoted in the log as it is: a
 * damaged file must not put control characters into log lines. */
static bool printable(const char *s, size_t n)
{
	if (n > ECHO_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

static int lookup(const char *name, size_t n)
{
	for (int k = 0; k < SET__COUNT; k++)
		if (strlen(names[k]) == n && memcmp(names[k], name, n) == 0)
			return k;
	return -1;
}

static void scan_value(struct scan *sc, int k, const char *val, size_t n)
{
	if (n == 1 && (val[0] == '0' || val[0] == '1')) {
		sc->on[k] = val[0] == '1';
		return;
	}
	sc->bad[k] = true;
	if (printable(val, n))
		problem(sc, "%s: '%.*s' is not 0 or 1", names[k], (int)n, val);
	else
		problem(sc, "%s: the value is not 0 or 1", names[k]);
}

static void scan_line(struct scan *sc, const char *s, size_t n)
{
	const char *eq, *name, *val;
	size_t nlen, vlen;
	int k;

	s = trim(s, &n);
	if (n == 0 || s[0] == '#')
		return;
	if (memchr(s, '\0', n)) {
		problem(sc, "line contains a NUL byte");
		return;
	}
	eq = memchr(s, '=', n);
	if (!eq) {
		problem(sc, "syntax error: expected name=0|1");
		return;
	}
	nlen = (size_t)(eq - s);
	name = trim(s, &nlen);
	vlen = n - (size_t)(eq + 1 - s);
	val = trim(eq + 1, &vlen);
	if (nlen == 0) {
		problem(sc, "syntax error: expected name=0|1");
		return;
	}
	k = lookup(name, nlen);
	if (k < 0) {
		if (printable(name, nlen))
			problem(sc, "unknown setting '%.*s'", (int)nlen, name);
		else
			problem(sc, "unknown setting");
		return;
	}
	if (sc->first[k]) {
		sc->bad[k] = true;
		problem(sc, "duplicate setting '%s' (first at line %u)",
			names[k], sc->first[k]);
		return;
	}
	sc->first[k] = sc->line;
	scan_value(sc, k, val, vlen);
}

/* The file's values into on[]; returns the number of problems logged. */
static unsigned scan(const char *path, const char *buf, size_t len,
		     bool on[SET__COUNT])
{
	struct scan sc = { .path = path };
	const char *p = buf, *end = buf + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;

		sc.line++;
		scan_line(&sc, p, (size_t)(eol - p));
		p = nl ? nl + 1 : end;
	}
	for (int k = 0; k < SET__COUNT; k++)
		on[k] = sc.on[k] && !sc.bad[k];
	return sc.nerr;
}

/* on[] from the file: all off unless it says otherwise. state_read() has
 * logged what it returns but ERR_NOTFOUND. */
static err_t read_file(const char *path, bool on[SET__COUNT])
{
	char buf[SETTINGS_FILE_MAX];
	size_t len;
	err_t e = state_read(path, buf, sizeof(buf), &len);

	memset(on, 0, SET__COUNT * sizeof(on[0]));
	switch (e) {
	case ERR_OK:
		return scan(path, buf, len, on) ? ERR_INVAL : ERR_OK;
	case ERR_NOTFOUND:
		return ERR_OK;
	case ERR_LIMIT:	/* not a file this agent wrote: trust none of it */
		return ERR_INVAL;
	default:
		return e;
	}
}

err_t settings_load(const char *state_dir, struct settings **out)
{
	struct settings *s;
	err_t e;

	if (!out)
		return ERR_INVAL;
	*out = NULL;
	if (!state_dir || !*state_dir)
		return ERR_INVAL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		LOGE("cannot load the settings: out of memory");
		return ERR_NOMEM;
	}
	if (!state_path(state_dir, FILE_NAME, s->path, sizeof(s->path))) {
		LOGE("%.64s...: state directory path too long", state_dir);
		free(s);
		return ERR_INVAL;
	}
	e = read_file(s->path, s->on);
	*out = s;
	return e;
}

void settings_free(struct settings *s)
{
	free(s);
}

bool settings_get(const struct settings *s, enum setting k)
{
	return s && key_ok(k) && s->on[k];
}

/* on[] as the file's text into buf; the length, as snprintf counts it. */
static size_t render(const bool on[SET__COUNT], char *buf, size_t cap)
{
	size_t used = 0;

	if (!buf)
		cap = 0;
	for (int k = 0; k < SET__COUNT; k++) {
		int w = snprintf(used < cap ? buf + used : NULL,
				 used < cap ? cap - used : 0, "%s=%d\n",
				 names[k], on[k] ? 1 : 0);

		if (w < 0)	/* cannot happen: no wide characters */
			break;
		used += (size_t)w;
	}
	return used;
}

size_t settings_render(const struct settings *s, char *buf, size_t cap)
{
	static const bool none[SET__COUNT];

	return render(s ? s->on : none, buf, cap);
}

err_t settings_apply(struct settings *s, const bool present[SET__COUNT],
		     const bool value[SET__COUNT])
{
	bool next[SET__COUNT];
	char text[SETTINGS_TEXT_MAX];
	size_t n;
	err_t e;

	if (!s || !present || !value)
		return ERR_INVAL;
	memcpy(next, s->on, sizeof(next));
	for (int k = 0; k < SET__COUNT; k++)
		if (present[k])
			next[k] = value[k];
	n = render(next, text, sizeof(text));
	if (n >= sizeof(text)) {	/* cannot happen: a test checks */
		LOGE("settings text longer than %d bytes", SETTINGS_TEXT_MAX);
		return ERR_LIMIT;
	}
	e = state_write(s->path, text, n);
	if (e == ERR_OK)
		memcpy(s->on, next, sizeof(next));
	return e;
}

err_t settings_set(struct settings *s, enum setting k, bool on)
{
	bool present[SET__COUNT] = { false }, value[SET__COUNT] = { false };

	if (!key_ok(k))
		return ERR_INVAL;
	present[k] = true;
	value[k] = on;
	return settings_apply(s, present, value);
}

err_t settings_reload(struct settings *s)
{
	bool on[SET__COUNT];
	err_t e;

	if (!s)
		return ERR_INVAL;
	e = read_file(s->path, on);
	if (e != ERR_IO)
		memcpy(s->on, on, sizeof(on));
	return e;
}

const char *settings_name(enum setting k)
{
	return key_ok(k) ? names[k] : NULL;
}

int settings_lookup(const char *name)
{
	return name ? lookup(name, strlen(name)) : -1;
}
