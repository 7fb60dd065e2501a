/*
 * daily — a once-a-day task in the event loop (see daily.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daily.h"
#include "log.h"
#include "state.h"

#define LOG_MODULE "daily"

/* Longest sleep between two looks at the wall clock. */
#define RECHECK_US (60 * LWS_USEC_PER_SEC)

struct daily {
	struct lws_context *ctx;
	struct daily_cfg cfg;
	int64_t offset;
	time_t next;
	bool planned;
	lws_sorted_usec_list_t sul;
};

time_t daily_now(const struct daily *d)
{
	return time(NULL) + (time_t)d->offset;
}

/* The date of the last run; "" for never (or an unreadable file). */
static void last_day(const struct daily *d, char day[NIGHTLY_DAY_LEN])
{
	char buf[64];
	size_t len = 0;

	day[0] = '\0';
	if (state_read(d->cfg.state_path, buf, sizeof(buf) - 1, &len) !=
	    ERR_OK)
		return;
	buf[len] = '\0';
	if (!strncmp(buf, "last=", 5) && len >= 15) {
		memcpy(day, buf + 5, NIGHTLY_DAY_LEN - 1);
		day[NIGHTLY_DAY_LEN - 1] = '\0';
	}
}

static void tick(lws_sorted_usec_list_t *sul)
{
	daily_plan(lws_container_of(sul, struct daily, sul));
}

void daily_plan(struct daily *d)
{
	struct nightly_plan p;
	char last[NIGHTLY_DAY_LEN], buf[32];
	const char *why = "";
	time_t now = daily_now(d);
	bool busy = !d->cfg.ready(d->cfg.arg, &why);
	lws_usec_t wait;
	int n;

	d->planned = true;
	last_day(d, last);
	if (nightly_plan(d->cfg.win, now, last, d->cfg.minute, busy, &p) ==
	    ERR_INVAL && last[0])
		LOGE("%s: last run '%s' is not a date; taken as never",
		     d->cfg.state_path, last);
	if (p.run) {
		/* Recorded before it starts: never twice on a date. */
		n = snprintf(buf, sizeof(buf), "last=%s\n", p.day);
		if (state_write(d->cfg.state_path, buf, (size_t)n) == ERR_OK) {
			LOGI("%s for %s starts", d->cfg.what, p.day);
			d->cfg.run(d->cfg.arg, p.day);
		} else {
			LOGE("%s skipped: cannot record it", d->cfg.what);
		}
		/* What comes next is another day's (or, if the date could
		 * not be recorded, a retry later in the window). */
		last_day(d, last);
		(void)nightly_plan(d->cfg.win, now, last, d->cfg.minute, true,
				   &p);
	} else if (busy && p.next - now <= NIGHTLY_RETRY_S) {
		LOGI("%s waits: %s", d->cfg.what, why);
	}
	d->next = p.next;
	wait = p.next > now ? (lws_usec_t)(p.next - now) * LWS_USEC_PER_SEC
			    : LWS_USEC_PER_SEC;
	if (wait > RECHECK_US)
		wait = RECHECK_US;
	lws_sul_schedule(d->ctx, 0, &d->sul, tick, wait);
}

time_t daily_next(const struct daily *d)
{
	return d->next;
}

int64_t daily_test_clock(void)
{
	int64_t offset = 0;
#ifdef COMAGENT_TESTING
	const char *t = getenv("COMAGENT_TEST_CLOCK");
	char *end;

	if (t && *t) {
		errno = 0;
		offset = strtoll(t, &end, 10);
		if (errno || *end)
			offset = 0;
	}
#endif
	return offset;
}

void daily_clock_offset(struct daily *d, int64_t offset)
{
	d->offset = offset;
	LOGI("test clock: wall clock %+lld s", (long long)offset);
	if (d->planned)
		daily_plan(d);
}

struct daily *daily_new(struct lws_context *ctx, const struct daily_cfg *cfg)
{
	struct daily *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->ctx = ctx;
	d->cfg = *cfg;
	d->offset = daily_test_clock();
	return d;
}

void daily_free(struct daily *d)
{
	if (!d)
		return;
	lws_sul_cancel(&d->sul);
	free(d);
}
