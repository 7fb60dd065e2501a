/*
 * nightly — when the automatic daily backup runs (the pure decision part).
 *
 * COM's guide: the backup runs once a day between 02:00 and 04:00 system
 * local time (the process time zone, TZ). Each system gets its own minute in
 * that window from a stable hash of customer id and system name, so 3000
 * systems do not all upload at 02:00. A backup that cannot start because
 * another operation runs is retried later in the window; a date never gets
 * a second run. The caller stores the local date of the last run, keeps its
 * timers on the monotonic clock and asks nightly_backup() again on every
 * wake-up, so a DST change or a clock step is seen at the next wake-up; this
 * module only reads the clock it is given and the time zone. (Not called
 * "sched": agent/ is on the include path, and an agent/sched.h would shadow
 * the system <sched.h> that <pthread.h> includes.)
 *
 * Local times are resolved with localtime_r() alone, never with mktime():
 * glibc's mktime(tm_isdst = -1) picks the first or the second occurrence of
 * an ambiguous time depending on the previous mktime call in the process,
 * and the result for a nonexistent time differs between C libraries.
 *
 * Rules (the window of local date D is [S, E): S is the first instant whose
 * local time on D is 02:00 or later, E the same for 04:00):
 *  - Target: the first instant whose local time is 02:00 + minute on D; an
 *    ambiguous time (fall back inside the window) is its first occurrence.
 *  - Spring forward inside the window (the window has less than 120 real
 *    minutes: 60 in Berlin and New York, 90 on Lord Howe): the target is
 *    S + minute * (E - S) / 120, i.e. the minutes are compressed into the
 *    real window, so the run still happens that day, inside the window, and
 *    systems stay spread with the same proportional margin before 04:00.
 *  - Fall back inside the window (02:00-03:00 twice in Berlin): one run for
 *    the date, because the date counts, not the hour; the targets of minutes
 *    0..59 lie in the first occurrence.
 *  - A day whose window does not exist at all (a zone skipping the hours or
 *    the whole date) has no run.
 *  - Missed window (clock jumped past 04:00, the host was off or busy until
 *    04:00): not made up later that day; the next run is the next day's.
 *  - The clock jumped back after a run: last_day later than today by one
 *    day (NIGHTLY_AHEAD_DAYS) blocks today too, so the same backup does not
 *    run twice within hours; the next run is on the day after last_day.
 *    A last_day further ahead came from a wrong clock (an RTC set in the
 *    future, later corrected) and is ignored, or backups would stop until
 *    that date; after such a step a run may follow the last one closely,
 *    but for another date, so no date runs twice unless the clock moved
 *    back more than NIGHTLY_AHEAD_DAYS days.
 */
#ifndef COMAGENT_NIGHTLY_H
#define COMAGENT_NIGHTLY_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "err.h"

#define NIGHTLY_WINDOW_MIN 120	/* 02:00-04:00 */
#define NIGHTLY_START_MIN 120	/* the window opens at 02:00 local */
#define NIGHTLY_MINUTES 110	/* nightly_minute() < this: 10 min margin */
#define NIGHTLY_RETRY_S 300	/* busy: ask again this much later */
#define NIGHTLY_AHEAD_DAYS 1	/* last_day this far in the future blocks */
#define NIGHTLY_DAY_LEN 11	/* "YYYY-MM-DD" and the NUL */

/* This system's minute in the window, 0..NIGHTLY_MINUTES-1, the same on
 * every restart and every host: FNV-1a-32 of the bytes of customer, 0xff,
 * system, 0xff, modulo NIGHTLY_MINUTES (NULL counts as ""). */
unsigned nightly_minute(const char *customer, const char *system);
/* The FNV-1a hash nightly_minute() takes its minute from, for callers with
 * windows of their own (the 00:30 log upload). */
uint32_t nightly_hash(const char *customer, const char *system);

/* A daily window: starts start_min minutes after local midnight, lasts
 * len_min minutes (within the day); a system's minute is < minutes
 * (<= len_min, the rest a margin for retries). */
struct nightly_window {
	unsigned start_min, len_min, minutes;
};
/* 02:00-04:00, minutes 0..109: the automatic backup's. */
extern const struct nightly_window nightly_backup_window;

struct nightly_plan {
	bool run;		/* start the backup now */
	time_t next;		/* run == false: wall-clock time to ask again */
	/* run: the local date the run counts for (store it as last_day once
	 * the backup started); otherwise the local date of next. */
	char day[NIGHTLY_DAY_LEN];
};

/*
 * The decision at wall-clock time now. last_day: the local date of the last
 * run as "YYYY-MM-DD" (year 1900..9999), "" or NULL for never. minute: from
 * nightly_minute(). busy: another operation runs now.
 *  - now in [target, E) of its local date D, D not yet run, !busy: run, D.
 *  - the same but busy: next = now + NIGHTLY_RETRY_S if that is before E,
 *    else the next day's target.
 *  - now before D's target, D not yet run: next = D's target.
 *  - otherwise: the target of the first later day that may run.
 * Returns ERR_INVAL for a malformed last_day (not a real calendar date in
 * that format) and still fills *out as for "" (never run), which is what
 * the caller does with it after logging. ERR_INVAL as well for out NULL,
 * minute >= NIGHTLY_MINUTES, a now whose local year is outside 1900..9999
 * or whose next run would be after 9999-12-31; then *out is run = false,
 * next = now + NIGHTLY_RETRY_S, day "". ERR_STATE if no day in the next
 * week has a window (no such zone exists), *out as for ERR_INVAL.
 */
err_t nightly_backup(time_t now, const char *last_day, unsigned minute,
		     bool busy, struct nightly_plan *out);
/* The same rules for any window (nightly_backup() is this with
 * nightly_backup_window); ERR_INVAL also for a window that is empty,
 * passes midnight, or has more minutes than it is long. */
err_t nightly_plan(const struct nightly_window *win, time_t now,
		   const char *last_day, unsigned minute, bool busy,
		   struct nightly_plan *out);

/* The local date of t as "YYYY-MM-DD"; "" for a year outside 1900..9999. */
void nightly_day(time_t t, char out[NIGHTLY_DAY_LEN]);

#endif
