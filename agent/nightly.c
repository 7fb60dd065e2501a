/*
 * nightly — when the automatic daily backup runs: the system's minute in the
 * 02:00-04:00 window and the run/wait decision at a given wall-clock time,
 * correct across DST changes and clock steps (rules in nightly.h).
 *
 * Local wall-clock times are resolved here from localtime_r() offsets
 * (tm_gmtoff) only: the offsets around the window are sampled, each change
 * located exactly by bisection, and "the first instant whose local time is
 * at least W" computed per constant-offset segment. That is deterministic
 * for gaps and ambiguous times, unlike mktime(tm_isdst = -1).
 */
#include <stdint.h>
#include <string.h>

#include "nightly.h"

#define DAY_S 86400LL
#define HOUR_S 3600LL
/* Every instant whose local time is a given wall time lies within the
 * largest UTC offset (+14 h, -12 h; historic local mean times a little
 * more) of that wall time read as UTC. */
#define SPAN_S (16 * HOUR_S)
/* Offsets are sampled this often; a change is then bisected to the
 * second. Two changes inside one sample step that cancel out would be
 * missed; no zone has ever had that. */
#define PROBE_S HOUR_S
#define SEG_MAX 16	/* offset segments in ~34 h; real zones have 1-3 */
/* Days looked ahead for one that may run: past a blocking last_day and a
 * few windowless days. */
#define LOOKAHEAD_DAYS (NIGHTLY_AHEAD_DAYS + 7)

struct ymd {
	int y, m, d;
};

/* The window of one local date, as instants (long long: arithmetic near
 * the ends of a 32-bit time_t must not overflow before it is checked). */
struct window {
	long long s, e, target;
	bool empty;
};

/* The UTC offsets over [lo, end): segment i starts at start[i]. */
struct segs {
	int n;
	long long start[SEG_MAX];
	long off[SEG_MAX];
	long long end;
};

/* --- calendar arithmetic (proleptic Gregorian, no time zone) --------- */

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
	static const int dim[12] = { 31, 28, 31, 30, 31, 30,
				     31, 31, 30, 31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days since 1970-01-01 (H. Hinnant's days_from_civil; y >= 1). */
static long long days_from_civil(struct ymd c)
{
	int y = c.y - (c.m <= 2);
	long long era = y / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned mp = (unsigned)(c.m > 2 ? c.m - 3 : c.m + 9);
	unsigned doy = (153 * mp + 2) / 5 + (unsigned)c.d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (long long)doe - 719468;
}

/* The inverse, for z >= days_from_civil(0001-03-01). */
static struct ymd civil_from_days(long long z)
{
	struct ymd c;
	long long era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = z / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	c.d = (int)(doy - (153 * mp + 2) / 5 + 1);
	c.m = (int)(mp < 10 ? mp + 3 : mp - 9);
	c.y = (int)(yoe + era * 400) + (c.m <= 2);
	return c;
}

/* Dates are written and parsed with 4-digit years only; 1900 keeps
 * tm_year non-negative. */
static bool year_ok(int y) { return y >= 1900 && y <= 9999; }

static void put_num(char *p, int v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

static void format_day(struct ymd c, char out[NIGHTLY_DAY_LEN])
{
	if (!year_ok(c.y)) {
		out[0] = '\0';
		return;
	}
	put_num(out, c.y, 4);
	out[4] = '-';
	put_num(out + 5, c.m, 2);
	out[7] = '-';
	put_num(out + 8, c.d, 2);
	out[10] = '\0';
}

/* Exactly "YYYY-MM-DD", a real date, year 1900..9999. */
static bool parse_day(const char *s, struct ymd *c)
{
	int v[3] = { 0, 0, 0 };
	int f = 0;

	for (int i = 0; i < 10; i++) {
		if (i == 4 || i == 7) {
			if (s[i] != '-')
				return false;
			f++;
			continue;
		}
		/* A NUL fails here, so nothing past it is read. */
		if (s[i] < '0' || s[i] > '9')
			return false;
		/* At most 4 digits per field: no overflow. */
		v[f] = v[f] * 10 + (s[i] - '0');
	}
	if (s[10] != '\0')
		return false;
	c->y = v[0];
	c->m = v[1];
	c->d = v[2];
	return year_ok(c->y) && c->m >= 1 && c->m <= 12 && c->d >= 1 &&
	       c->d <= days_in_month(c->y, c->m);
}

/* --- the time zone --------------------------------------------------- */

static bool to_time(long long v, time_t *t)
{
	/* A 32-bit time_t (older 32-bit ARM userlands) cannot hold every
	 * instant computed near its end. */
	if (sizeof(time_t) < sizeof(long long) &&
	    (v < INT32_MIN || v > INT32_MAX))
		return false;
	*t = (time_t)v;
	return true;
}

static bool offset_at(long long v, long *off)
{
	struct tm tm;
	time_t t;

	if (!to_time(v, &t) || !localtime_r(&t, &tm))
		return false;
	*off = tm.tm_gmtoff;
	return true;
}

static bool segs_add(struct segs *z, long long start, long off)
{
	if (z->n == SEG_MAX)
		return false;
	z->start[z->n] = start;
	z->off[z->n] = off;
	z->n++;
	return true;
}

/* The offsets over [lo, hi]: sampled every PROBE_S, each change bisected
 * to the first second with the new offset. */
static bool segs_load(long long lo, long long hi, struct segs *z)
{
	long long a = lo;
	long cur;

	z->n = 0;
	z->end = hi + 1;
	if (!offset_at(lo, &cur) || !segs_add(z, lo, cur))
		return false;
	while (a < hi) {
		long long b = a + PROBE_S < hi ? a + PROBE_S : hi;
		long ob;

		if (!offset_at(b, &ob))
			return false;
		/* Invariant: offset(a) == cur. Loops again if (a, b] holds
		 * more than one change. */
		while (ob != cur) {
			/* offset(l) == cur != offset(r) */
			long long l = a, r = b;

			while (r - l > 1) {
				long long mid = l + (r - l) / 2;
				long om;

				if (!offset_at(mid, &om))
					return false;
				if (om == cur)
					l = mid;
				else
					r = mid;
			}
			if (!offset_at(r, &cur) || !segs_add(z, r, cur))
				return false;
			a = r;
		}
		a = b;
	}
	return true;
}

/* The first instant t in the loaded span whose local time (t + offset,
 * read as UTC) is at least the wall time w. In a gap that is the end of
 * the gap; for an ambiguous time its first occurrence. */
static bool segs_first(const struct segs *z, long long w, long long *t)
{
	for (int i = 0; i < z->n; i++) {
		long long e = i + 1 < z->n ? z->start[i + 1] : z->end;
		long long c = w - z->off[i];

		if (c < z->start[i])
			c = z->start[i];
		if (c < e) {
			*t = c;
			return true;
		}
	}
	return false;
}

const struct nightly_window nightly_backup_window = {
	NIGHTLY_START_MIN, NIGHTLY_WINDOW_MIN, NIGHTLY_MINUTES
};

/* The window of local date d and this minute's target in it. */
static bool day_window(const struct nightly_window *win, struct ymd d,
		       unsigned minute, struct window *w)
{
	long long w02 = days_from_civil(d) * DAY_S + win->start_min * 60LL;
	long long w04 = w02 + win->len_min * 60LL;
	long long len;
	struct segs z;

	if (!segs_load(w02 - SPAN_S, w04 + SPAN_S, &z) ||
	    !segs_first(&z, w02, &w->s) || !segs_first(&z, w04, &w->e) ||
	    !segs_first(&z, w02 + minute * 60LL, &w->target))
		return false;
	len = w->e - w->s;
	w->empty = len <= 0;
	/* Spring forward inside the window: fewer real minutes than wall
	 * minutes. Compress the minutes into the real window so every system
	 * still runs that day, spread as usual, with the same proportional
	 * margin before the end. The second test only catches odd zones. */
	if (!w->empty &&
	    (len < win->len_min * 60LL || w->target >= w->e))
		w->target = w->s + (long long)minute * len / win->len_min;
	return true;
}

/* --- the interface --------------------------------------------------- */

uint32_t nightly_hash(const char *customer, const char *system)
{
	const char *parts[2] = { customer ? customer : "",
				 system ? system : "" };
	/* FNV-1a, 32 bits: simple to reproduce elsewhere (docs, COM side),
	 * and it spreads installers' names well (see the tests). */
	uint32_t h = 2166136261u;

	for (int i = 0; i < 2; i++) {
		for (const unsigned char *p = (const unsigned char *)parts[i];
		     *p; p++) {
			h ^= *p;
			h *= 16777619u;
		}
		/* A separator, so ("ab", "c") and ("a", "bc") differ. */
		h ^= 0xff;
		h *= 16777619u;
	}
	return h;
}

unsigned nightly_minute(const char *customer, const char *system)
{
	/* 2^32 % 110 makes some minutes likelier by 1 in 39 million. */
	return nightly_hash(customer, system) % NIGHTLY_MINUTES;
}

void nightly_day(time_t t, char out[NIGHTLY_DAY_LEN])
{
	struct tm tm;

	if (!localtime_r(&t, &tm)) {
		out[0] = '\0';
		return;
	}
	format_day((struct ymd){ tm.tm_year + 1900, tm.tm_mon + 1,
				 tm.tm_mday }, out);
}

static err_t fail(time_t now, err_t e, struct nightly_plan *out)
{
	if (out) {
		out->run = false;
		/* Saturating: retry soon rather than wrap into the past. */
		if (!to_time((long long)now + NIGHTLY_RETRY_S, &out->next))
			out->next = now;
		out->day[0] = '\0';
	}
	return e;
}

err_t nightly_backup(time_t now, const char *last_day, unsigned minute,
		     bool busy, struct nightly_plan *out)
{
	return nightly_plan(&nightly_backup_window, now, last_day, minute, busy,
			    out);
}

err_t nightly_plan(const struct nightly_window *win, time_t now,
		   const char *last_day, unsigned minute, bool busy,
		   struct nightly_plan *out)
{
	struct tm tm;
	struct ymd today, last;
	long long dtoday, dlast = 0;
	bool have_last = false;
	err_t rc = ERR_OK;

	if (!out || !win || !win->len_min || win->start_min + win->len_min >
	    24 * 60 || minute >= win->minutes || win->minutes > win->len_min ||
	    !localtime_r(&now, &tm))
		return fail(now, ERR_INVAL, out);
	today = (struct ymd){ tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday };
	if (!year_ok(today.y))
		return fail(now, ERR_INVAL, out);
	dtoday = days_from_civil(today);

	if (last_day && last_day[0]) {
		if (parse_day(last_day, &last)) {
			dlast = days_from_civil(last);
			/* Far ahead: stored under a wrong clock; honouring it
			 * would stop backups until that date. */
			have_last = dlast - dtoday <= NIGHTLY_AHEAD_DAYS;
		} else {
			rc = ERR_INVAL;	/* and plan as never run */
		}
	}

	for (int k = 0; k <= LOOKAHEAD_DAYS; k++) {
		long long dx = dtoday + k;
		struct ymd x = civil_from_days(dx);
		struct window w;
		time_t next;

		if (have_last && dx <= dlast)
			continue;	/* ran (or the clock went back) */
		if (!year_ok(x.y) || !day_window(win, x, minute, &w))
			return fail(now, ERR_INVAL, out);
		if (w.empty)
			continue;
		if (k == 0 && now >= w.target) {
			if (now >= w.e)
				continue;	/* missed: not made up today */
			if (!busy) {
				out->run = true;
				out->next = now;
				format_day(x, out->day);
				return rc;
			}
			if ((long long)now + NIGHTLY_RETRY_S >= w.e)
				continue;
			if (!to_time((long long)now + NIGHTLY_RETRY_S, &next))
				return fail(now, ERR_INVAL, out);
		} else if (!to_time(w.target, &next)) {
			return fail(now, ERR_INVAL, out);
		}
		out->run = false;
		out->next = next;
		format_day(x, out->day);
		return rc;
	}
	return fail(now, ERR_STATE, out);
}
