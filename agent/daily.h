/*
 * daily — a task run once a day at this system's minute of a local-time
 * window (nightly decides when), inside the event loop: the automatic
 * backup (02:00-04:00) and the log upload (00:30).
 *
 * The date of the last run is kept in a state file ("last=YYYY-MM-DD")
 * written before the task starts, so a task cut short by a restart is not
 * run again that date. Timers are monotonic and only wake the planner; the
 * wall clock decides, looked at again at least every minute, so a clock
 * step or a DST change is seen within a minute.
 *
 * Test builds (COMAGENT_TESTING) read the wall clock as now + an offset:
 * COMAGENT_TEST_CLOCK at start, daily_clock_offset() later.
 */
#ifndef COMAGENT_DAILY_H
#define COMAGENT_DAILY_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <libwebsockets.h>

#include "nightly.h"

struct daily_cfg {
	const struct nightly_window *win;
	unsigned minute;		/* < win->minutes */
	const char *state_path;		/* the "last=" file */
	const char *what;		/* for the log: "automatic backup" */
	/* May it start now? false: why says what it waits for. */
	bool (*ready)(void *arg, const char **why);
	/* Start it for local date day (recorded already). */
	void (*run)(void *arg, const char *day);
	void *arg;
};

struct daily;

/* cfg's strings must outlive d. NULL when out of memory. */
struct daily *daily_new(struct lws_context *ctx, const struct daily_cfg *cfg);
/* Cancels the timer; before the lws context is destroyed. */
void daily_free(struct daily *d);

/* Looks at the clock now and sets the timer (the first call starts it). */
void daily_plan(struct daily *d);
/* When the planner looks next (wall clock); 0 before daily_plan(). */
time_t daily_next(const struct daily *d);

/* The wall clock the task lives by (time(NULL) but in test builds). */
time_t daily_now(const struct daily *d);
/* Test builds: shift that clock by offset seconds and plan again. */
void daily_clock_offset(struct daily *d, int64_t offset);
/* The offset COMAGENT_TEST_CLOCK gives at start (test builds; else 0),
 * for every module that reads the wall clock through such an offset. */
int64_t daily_test_clock(void);

#endif
