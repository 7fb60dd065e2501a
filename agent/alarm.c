/*
 * alarm — the system's active alarms (see alarm.h).
 *
 * The set is a fixed array of ALARM_MAX entries in the order they were
 * first raised: COM lists them that way and the file keeps it. Every
 * change is made to a copy that is rendered and written first and only
 * then taken over, so memory and file never disagree after a failed write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alarm.h"
#include "log.h"
#include "proto.h"
#include "state.h"

#define LOG_MODULE "alarm"

#define FILE_NAME	"alarms"
/* A line: id, two words, three numbers, text, tabs: well under 512. */
#define LINE_MAX_	512
#define FILE_MAX	(ALARM_MAX * LINE_MAX_)

static const char *const type_names[ALARM__TYPES] = {
	[ALARM_CONFIGURATION] = "Configuration", [ALARM_TRUNK] = "Trunk",
	[ALARM_LINK] = "Link", [ALARM_SERVICE] = "Service",
	[ALARM_QOS] = "QoS", [ALARM_SECURITY] = "Security",
};

static const char *const severity_names[ALARM__SEVERITIES] = {
	[ALARM_CRITICAL] = "critical", [ALARM_MAJOR] = "major",
	[ALARM_MINOR] = "minor", [ALARM_WARNING] = "warning",
};

struct set {
	struct alarm a[ALARM_MAX];
	size_t n;
};

struct alarms {
	char path[STATE_PATH_MAX + 1];
	struct set cur;
	alarm_notify_fn notify;
	void *notify_arg;
};

const char *alarm_type_name(enum alarm_type t)
{
	return (unsigned)t < ALARM__TYPES ? type_names[t] : NULL;
}

const char *alarm_severity_name(enum alarm_severity s)
{
	return (unsigned)s < ALARM__SEVERITIES ? severity_names[s] : NULL;
}

static int lookup(const char *const *names, int n, const char *s, size_t len)
{
	for (int i = 0; s && i < n; i++)
		if (strlen(names[i]) == len && !strncasecmp(names[i], s, len))
			return i;
	return -1;
}

int alarm_type_lookup(const char *name)
{
	return name ? lookup(type_names, ALARM__TYPES, name, strlen(name))
		    : -1;
}

int alarm_severity_lookup(const char *name)
{
	return name ? lookup(severity_names, ALARM__SEVERITIES, name,
			     strlen(name)) : -1;
}

static bool id_ok(const char *s, size_t n)
{
	if (n < 1 || n > ALARM_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.' || c == ':'))
			return false;
	}
	return true;
}

/* UTF-8, no control character (the file is tab- and line-separated, and
 * the text is shown on terminals and in COM's list). */
static bool text_ok(const char *s, size_t n)
{
	if (n < 1 || n > ALARM_TEXT_MAX || !proto_utf8_valid(s, n))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static size_t find(const struct set *st, const char *id)
{
	for (size_t i = 0; i < st->n; i++)
		if (!strcmp(st->a[i].id, id))
			return i;
	return SIZE_MAX;
}

/* The file's text of st into a new buffer (*out, *len). */
static err_t render(const struct set *st, char **out, size_t *len)
{
	char *buf = malloc(FILE_MAX);
	size_t off = 0;

	if (!buf)
		return ERR_NOMEM;
	for (size_t i = 0; i < st->n; i++) {
		const struct alarm *a = &st->a[i];
		int k = snprintf(buf + off, FILE_MAX - off,
				 "%s\t%s\t%s\t%lld\t%lld\t%lu\t%s\n", a->id,
				 type_names[a->type],
				 severity_names[a->severity],
				 (long long)a->first, (long long)a->last,
				 (unsigned long)a->count, a->text);

		/* Bounded by the field caps: cannot happen, but never
		 * write a truncated file. */
		if (k < 0 || (size_t)k >= FILE_MAX - off) {
			free(buf);
			return ERR_LIMIT;
		}
		off += (size_t)k;
	}
	*out = buf;
	*len = off;
	return ERR_OK;
}

/* Persists st and, only then, makes it the current set. */
static err_t commit(struct alarms *s, const struct set *st)
{
	char *buf = NULL;
	size_t len = 0;
	err_t e = render(st, &buf, &len);

	if (e == ERR_OK)
		e = state_write(s->path, buf, len);
	free(buf);
	if (e == ERR_OK)
		s->cur = *st;
	return e;
}

/* Splits [p, end) at tabs into at most n fields; the number found. */
static size_t split(const char *p, const char *end, const char **f,
		    size_t *fl, size_t n)
{
	size_t k = 0;

	while (k < n) {
		const char *t = memchr(p, '\t', (size_t)(end - p));

		f[k] = p;
		fl[k] = (size_t)((t ? t : end) - p);
		k++;
		if (!t)
			break;
		p = t + 1;
	}
	return k;
}

/* One line of the file into a; false (why filled) if it is damaged. */
static bool parse_line(const char *p, const char *end, struct alarm *a,
		       const char **why)
{
	const char *f[8];
	size_t fl[8];
	uint64_t first, last, count;
	int t, sv;

	if (split(p, end, f, fl, 8) != 7) {
		*why = "expected 7 tab-separated fields";
		return false;
	}
	t = lookup(type_names, ALARM__TYPES, f[1], fl[1]);
	sv = lookup(severity_names, ALARM__SEVERITIES, f[2], fl[2]);
	if (!id_ok(f[0], fl[0]))
		*why = "bad alarm id";
	else if (t < 0)
		*why = "unknown alarm type";
	else if (sv < 0)
		*why = "unknown severity";
	else if (!state_number(f[3], fl[3], 10, INT64_MAX, &first) ||
		 !state_number(f[4], fl[4], 10, INT64_MAX, &last) ||
		 last < first)
		*why = "bad first/last time";
	else if (!state_number(f[5], fl[5], 10, UINT32_MAX, &count) ||
		 count < 1)
		*why = "bad count";
	else if (!text_ok(f[6], fl[6]))
		*why = "bad alarm text";
	else
		*why = NULL;
	if (*why)
		return false;
	memset(a, 0, sizeof(*a));
	memcpy(a->id, f[0], fl[0]);
	memcpy(a->text, f[6], fl[6]);
	a->type = (enum alarm_type)t;
	a->severity = (enum alarm_severity)sv;
	a->first = (int64_t)first;
	a->last = (int64_t)last;
	a->count = (uint32_t)count;
	return true;
}

err_t alarms_load(const char *state_dir, struct alarms **out)
{
	struct alarms *s;
	char *buf = NULL;
	size_t len = 0;
	unsigned line = 0;
	err_t e, rc = ERR_OK;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return ERR_NOMEM;
	if (!state_dir || !state_path(state_dir, FILE_NAME, s->path,
				      sizeof(s->path))) {
		free(s);
		return ERR_INVAL;
	}
	*out = s;
	buf = malloc(FILE_MAX);
	if (!buf) {
		alarms_free(s);
		*out = NULL;
		return ERR_NOMEM;
	}
	e = state_read(s->path, buf, FILE_MAX, &len);
	if (e == ERR_NOTFOUND)
		goto out;
	if (e != ERR_OK) {
		/* Logged by state; an unreadable set starts empty and the
		 * PBX's next raises rebuild it. */
		rc = e == ERR_LIMIT ? ERR_INVAL : e;
		goto out;
	}
	for (const char *p = buf, *end = buf + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *why = NULL;
		struct alarm a;

		line++;
		if (le == p) {
			p = le + 1;
			continue;
		}
		if (memchr(p, '\0', (size_t)(le - p)))
			why = "line contains a NUL byte";
		else if (parse_line(p, le, &a, &why)) {
			if (find(&s->cur, a.id) != SIZE_MAX)
				why = "duplicate alarm id";
			else if (s->cur.n >= ALARM_MAX)
				why = "too many alarms";
			else
				s->cur.a[s->cur.n++] = a;
		}
		if (why) {
			LOGE("%s:%u: %s; line skipped", s->path, line, why);
			rc = ERR_INVAL;
		}
		p = nl ? nl + 1 : end;
	}
out:
	free(buf);
	if (s->cur.n)
		LOGI("%zu active alarm%s loaded", s->cur.n,
		     s->cur.n == 1 ? "" : "s");
	return rc;
}

void alarms_free(struct alarms *s)
{
	free(s);
}

void alarms_set_notify(struct alarms *s, alarm_notify_fn fn, void *arg)
{
	s->notify = fn;
	s->notify_arg = arg;
}

err_t alarms_raise(struct alarms *s, const char *id, enum alarm_type type,
		   enum alarm_severity sev, const char *text, int64_t now,
		   char *why, size_t why_cap)
{
	struct set *st;
	struct alarm *a;
	size_t i;
	err_t e;

	if (!id || !id_ok(id, strlen(id))) {
		snprintf(why, why_cap, "bad alarm id: 1..%d of letters, "
			 "digits, '-', '_', '.', ':'", ALARM_ID_MAX);
		return ERR_INVAL;
	}
	if ((unsigned)type >= ALARM__TYPES) {
		snprintf(why, why_cap, "bad alarm type");
		return ERR_INVAL;
	}
	if ((unsigned)sev >= ALARM__SEVERITIES) {
		snprintf(why, why_cap, "bad alarm severity");
		return ERR_INVAL;
	}
	if (!text || !text_ok(text, strlen(text))) {
		snprintf(why, why_cap, "bad alarm text: 1..%d bytes of "
			 "UTF-8 without control characters", ALARM_TEXT_MAX);
		return ERR_INVAL;
	}
	if (now < 0)
		now = 0;
	i = find(&s->cur, id);
	if (i == SIZE_MAX && s->cur.n >= ALARM_MAX) {
		snprintf(why, why_cap, "%d alarms are active already; clear "
			 "one first", ALARM_MAX);
		return ERR_LIMIT;
	}
	st = malloc(sizeof(*st));
	if (!st) {
		snprintf(why, why_cap, "out of memory");
		return ERR_NOMEM;
	}
	*st = s->cur;
	if (i == SIZE_MAX) {
		a = &st->a[st->n++];
		memset(a, 0, sizeof(*a));
		memcpy(a->id, id, strlen(id));
		a->first = now;
		a->count = 1;
	} else {
		a = &st->a[i];
		/* A clock set back must not make last precede first. */
		if (now < a->first)
			now = a->first;
		if (a->count < UINT32_MAX)
			a->count++;
	}
	a->type = type;
	a->severity = sev;
	a->last = now;
	memset(a->text, 0, sizeof(a->text));
	memcpy(a->text, text, strlen(text));
	e = commit(s, st);
	if (e != ERR_OK) {
		snprintf(why, why_cap, "cannot record the alarm (see the "
			 "agent's log)");
	} else {
		i = i == SIZE_MAX ? s->cur.n - 1 : i;
		LOGI("alarm %s raised (%s, %s, count %lu): %s", id,
		     type_names[type], severity_names[sev],
		     (unsigned long)s->cur.a[i].count, text);
		if (s->notify)
			s->notify(s->notify_arg, &s->cur.a[i], true);
	}
	free(st);
	return e;
}

err_t alarms_clear(struct alarms *s, const char *id, char *why,
		   size_t why_cap)
{
	size_t i = id ? find(&s->cur, id) : SIZE_MAX;
	struct alarm gone;
	struct set *st;
	err_t e;

	if (i == SIZE_MAX) {
		snprintf(why, why_cap, "no active alarm %.64s", id ? id : "");
		return ERR_NOTFOUND;
	}
	st = malloc(sizeof(*st));
	if (!st) {
		snprintf(why, why_cap, "out of memory");
		return ERR_NOMEM;
	}
	*st = s->cur;
	gone = st->a[i];
	memmove(&st->a[i], &st->a[i + 1], (st->n - i - 1) * sizeof(st->a[0]));
	st->n--;
	e = commit(s, st);
	free(st);
	if (e != ERR_OK) {
		snprintf(why, why_cap, "cannot record the clear (see the "
			 "agent's log)");
		return e;
	}
	LOGI("alarm %s cleared", gone.id);
	if (s->notify)
		s->notify(s->notify_arg, &gone, false);
	return ERR_OK;
}

size_t alarms_count(const struct alarms *s)
{
	return s ? s->cur.n : 0;
}

const struct alarm *alarms_at(const struct alarms *s, size_t i)
{
	return s && i < s->cur.n ? &s->cur.a[i] : NULL;
}

const struct alarm *alarms_find(const struct alarms *s, const char *id)
{
	size_t i = s && id ? find(&s->cur, id) : SIZE_MAX;

	return i == SIZE_MAX ? NULL : &s->cur.a[i];
}

size_t alarms_count_severity(const struct alarms *s,
			     enum alarm_severity sev)
{
	size_t n = 0;

	for (size_t i = 0; s && i < s->cur.n; i++)
		n += s->cur.a[i].severity == sev;
	return n;
}

void alarm_put(struct proto_w *w, const struct alarm *a)
{
	proto_w_str(w, "id", a->id);
	proto_w_str(w, "type", alarm_type_name(a->type));
	proto_w_str(w, "severity", alarm_severity_name(a->severity));
	proto_w_str(w, "text", a->text);
	proto_w_int(w, "first", a->first);
	proto_w_int(w, "last", a->last);
	proto_w_int(w, "count", a->count);
}
