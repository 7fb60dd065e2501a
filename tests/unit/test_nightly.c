/*
 * test_nightly — the daily backup schedule: the per-system minute and its
 * spread, date parsing and formatting, the run/wait decision in UTC, zones
 * without DST and across DST changes (Berlin, New York, Lord Howe's 30
 * minutes), clock steps, and simulated clocks walking over 400+ days with
 * random busy periods and wake-ups.
 *
 * Expected instants are written in UTC (timegm), read off `zdump -v`, so
 * the tests do not share the code under test's idea of local time; local
 * times are checked back with localtime_r.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "nightly.h"

static void use_tz(const char *tz)
{
	assert_int_equal(setenv("TZ", tz, 1), 0);
	tzset();
}

static time_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_sec = s };

	return timegm(&tm);
}

/* A local time that exists exactly as given. isdst picks the occurrence of
 * an ambiguous time (1: the first, summer time; 0: the second); -1 for any
 * other time. Read back, so a nonexistent time fails the test instead of
 * being silently normalised by mktime. */
static time_t local(int y, int mo, int d, int h, int mi, int isdst)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_isdst = isdst };
	struct tm back;
	time_t t = mktime(&tm);

	assert_non_null(localtime_r(&t, &back));
	assert_int_equal(back.tm_year, y - 1900);
	assert_int_equal(back.tm_mon, mo - 1);
	assert_int_equal(back.tm_mday, d);
	assert_int_equal(back.tm_hour, h);
	assert_int_equal(back.tm_min, mi);
	if (isdst >= 0)
		assert_int_equal(back.tm_isdst, isdst);
	return t;
}

/* Local minutes since midnight of t. */
static int local_min(time_t t)
{
	struct tm tm;

	assert_non_null(localtime_r(&t, &tm));
	return tm.tm_hour * 60 + tm.tm_min;
}

static struct nightly_plan plan(time_t now, const char *last, unsigned minute,
				bool busy)
{
	struct nightly_plan p;

	memset(&p, 0x5a, sizeof(p));
	assert_int_equal(nightly_backup(now, last, minute, busy, &p), ERR_OK);
	return p;
}

static void expect_run(time_t now, const char *last, unsigned minute,
		       const char *day)
{
	struct nightly_plan p = plan(now, last, minute, false);

	assert_true(p.run);
	assert_string_equal(p.day, day);
}

static void expect_wait(time_t now, const char *last, unsigned minute,
			bool busy, time_t next, const char *day)
{
	struct nightly_plan p = plan(now, last, minute, busy);

	assert_false(p.run);
	assert_int_equal(p.next, next);
	assert_string_equal(p.day, day);
}

/* --- the minute ------------------------------------------------------ */

static void test_minute_is_stable(void **state)
{
	(void)state;
	/* Pinned: a changed hash would move every system's backup minute. */
	assert_int_equal(nightly_minute("C-1001", "pbx-hq"), 85);
	assert_int_equal(nightly_minute("C-1001", "pbx-branch"), 82);
	assert_int_equal(nightly_minute("C-2002", "pbx-hq"), 27);
	assert_int_equal(nightly_minute("", ""), 95);
	assert_int_equal(nightly_minute(NULL, NULL), nightly_minute("", ""));
	assert_int_equal(nightly_minute("C-1001", "pbx-hq"),
			 nightly_minute("C-1001", "pbx-hq"));
	/* Both parts count, and where one ends. */
	assert_int_not_equal(nightly_minute("C-1001", "pbx-hq"),
			     nightly_minute("C-1002", "pbx-hq"));
	assert_int_not_equal(nightly_minute("ab", "c"),
			     nightly_minute("a", "bc"));
}

/* 3000 systems over the 11 ten-minute buckets (273 each on average), with
 * names as installers make them. */
enum naming { ONE_PER_CUSTOMER, ONE_CUSTOMER, SAME_NAME, FEW_PER_CUSTOMER };

static void check_spread(enum naming how)
{
	unsigned buckets[NIGHTLY_MINUTES / 10] = { 0 };
	char c[32], s[32];

	for (int i = 0; i < 3000; i++) {
		unsigned m;

		switch (how) {
		case ONE_PER_CUSTOMER:
			snprintf(c, sizeof(c), "C-%d", 1000 + i);
			snprintf(s, sizeof(s), "pbx-%d", i);
			break;
		case ONE_CUSTOMER:
			snprintf(c, sizeof(c), "C-1001");
			snprintf(s, sizeof(s), "pbx-%04d", i);
			break;
		case SAME_NAME:
			snprintf(c, sizeof(c), "C-%d", 1000 + i);
			snprintf(s, sizeof(s), "pbx-hq");
			break;
		case FEW_PER_CUSTOMER:
			snprintf(c, sizeof(c), "%06d", i / 3);
			snprintf(s, sizeof(s), "ipo%d", i % 3);
			break;
		}
		m = nightly_minute(c, s);
		assert_true(m < NIGHTLY_MINUTES);
		buckets[m / 10]++;
	}
	for (size_t b = 0; b < sizeof(buckets) / sizeof(buckets[0]); b++) {
		assert_true(buckets[b] >= 150);
		assert_true(buckets[b] <= 400);
	}
}

static void test_minute_spreads(void **state)
{
	(void)state;
	check_spread(ONE_PER_CUSTOMER);
	check_spread(ONE_CUSTOMER);
	check_spread(SAME_NAME);
	check_spread(FEW_PER_CUSTOMER);
}

/* --- dates ----------------------------------------------------------- */

static void test_day_format(void **state)
{
	char d[NIGHTLY_DAY_LEN];
	time_t t = utc(2026, 12, 31, 20, 0, 0);

	(void)state;
	use_tz("UTC");
	nightly_day(t, d);
	assert_string_equal(d, "2026-12-31");
	nightly_day(utc(2028, 2, 29, 23, 59, 59), d);
	assert_string_equal(d, "2028-02-29");
	nightly_day(utc(1970, 1, 1, 0, 0, 0), d);
	assert_string_equal(d, "1970-01-01");
	/* The local date: 05:00 next day in Tokyo, 15:00 same day in NY. */
	use_tz("Asia/Tokyo");
	nightly_day(t, d);
	assert_string_equal(d, "2027-01-01");
	use_tz("America/New_York");
	nightly_day(t, d);
	assert_string_equal(d, "2026-12-31");
	/* No 4-digit year: empty rather than a wrong or truncated date.
	 * A 32-bit time_t (Debian's armhf and armel) ends in 2038. */
	use_tz("UTC");
	if (sizeof(time_t) > 4) {
		nightly_day(utc(10000, 1, 1, 0, 0, 0), d);
		assert_string_equal(d, "");
	}
}

static void test_rejects_malformed_last_day(void **state)
{
	static const char *const bad[] = {
		"2026-13-01", "2026-00-10", "2026-01-00", "2026-01-32",
		"2026-04-31", "2026-02-29", "2100-02-29", "2024-02-30",
		"2026-1-01", "2026-01-1", "2026-01-011", "20260101",
		"2026/01/01", "2026-01-01 ", " 2026-01-01", "abcd-ef-gh",
		"2026-0a-01", "1899-12-31", "-026-01-01", "2026-01",
		"2026-01-01T00", "+2026-01-0",
	};
	time_t now = utc(2026, 6, 10, 1, 0, 0);
	struct nightly_plan never, p;

	(void)state;
	use_tz("UTC");
	never = plan(now, "", 30, false);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&p, 0, sizeof(p));
		/* Rejected, and planned as never run, as the caller will. */
		assert_int_equal(nightly_backup(now, bad[i], 30, false, &p),
				 ERR_INVAL);
		assert_false(p.run);
		assert_int_equal(p.next, never.next);
		assert_string_equal(p.day, never.day);
	}
	/* A malformed date in the window still lets the day run. */
	assert_int_equal(nightly_backup(utc(2026, 6, 10, 2, 30, 0),
					"2026-6-9", 30, false, &p), ERR_INVAL);
	assert_true(p.run);
	assert_string_equal(p.day, "2026-06-10");
	/* Valid edge dates and NULL. */
	expect_wait(now, "2024-02-29", 30, false, utc(2026, 6, 10, 2, 30, 0),
		    "2026-06-10");
	expect_wait(now, "2000-02-29", 30, false, utc(2026, 6, 10, 2, 30, 0),
		    "2026-06-10");
	expect_wait(now, "1900-01-01", 30, false, utc(2026, 6, 10, 2, 30, 0),
		    "2026-06-10");
	expect_wait(now, NULL, 30, false, utc(2026, 6, 10, 2, 30, 0),
		    "2026-06-10");
}

static void test_rejects_bad_arguments(void **state)
{
	struct nightly_plan p;
	time_t now = utc(2026, 6, 10, 2, 30, 0);

	(void)state;
	use_tz("UTC");
	assert_int_equal(nightly_backup(now, "", 0, false, NULL), ERR_INVAL);
	p.run = true;
	assert_int_equal(nightly_backup(now, "", NIGHTLY_MINUTES, false, &p),
			 ERR_INVAL);
	assert_false(p.run);
	assert_int_equal(p.next, now + NIGHTLY_RETRY_S);
	assert_string_equal(p.day, "");
	/* The ends of the calendar; a 32-bit time_t (Debian's armhf and
	 * armel) cannot hold them. */
	if (sizeof(time_t) <= 4)
		return;
	p.run = true;
	assert_int_equal(nightly_backup(utc(10000, 1, 1, 2, 30, 0), "", 0,
					false, &p), ERR_INVAL);
	assert_false(p.run);
	/* The last valid year still plans; its last day has no next day. */
	assert_int_equal(nightly_backup(utc(9999, 6, 1, 2, 30, 0), "", 0,
					false, &p), ERR_OK);
	assert_true(p.run);
	assert_int_equal(nightly_backup(utc(9999, 12, 31, 5, 0, 0), "", 0,
					false, &p), ERR_INVAL);
	assert_false(p.run);
}

/* --- the decision, without DST --------------------------------------- */

static void test_utc_day(void **state)
{
	const unsigned m = 30;	/* target 02:30 */

	(void)state;
	use_tz("UTC");
	expect_wait(utc(2026, 6, 10, 0, 0, 0), "", m, false,
		    utc(2026, 6, 10, 2, 30, 0), "2026-06-10");
	/* In the window but before this system's minute. */
	expect_wait(utc(2026, 6, 10, 2, 29, 59), "2026-06-09", m, false,
		    utc(2026, 6, 10, 2, 30, 0), "2026-06-10");
	expect_run(utc(2026, 6, 10, 2, 30, 0), "2026-06-09", m, "2026-06-10");
	expect_run(utc(2026, 6, 10, 3, 59, 59), "", m, "2026-06-10");
	/* Ran today: tomorrow, however often asked. */
	expect_wait(utc(2026, 6, 10, 2, 30, 0), "2026-06-10", m, false,
		    utc(2026, 6, 11, 2, 30, 0), "2026-06-11");
	expect_wait(utc(2026, 6, 10, 1, 0, 0), "2026-06-10", m, false,
		    utc(2026, 6, 11, 2, 30, 0), "2026-06-11");
	/* Window over: tomorrow. */
	expect_wait(utc(2026, 6, 10, 4, 0, 0), "2026-06-09", m, false,
		    utc(2026, 6, 11, 2, 30, 0), "2026-06-11");
	expect_wait(utc(2026, 6, 10, 23, 59, 59), "", m, false,
		    utc(2026, 6, 11, 2, 30, 0), "2026-06-11");
	/* Busy: retry in 5 min while that is inside the window. */
	expect_wait(utc(2026, 6, 10, 2, 30, 0), "", m, true,
		    utc(2026, 6, 10, 2, 35, 0), "2026-06-10");
	expect_wait(utc(2026, 6, 10, 3, 54, 59), "", m, true,
		    utc(2026, 6, 10, 3, 59, 59), "2026-06-10");
	expect_wait(utc(2026, 6, 10, 3, 55, 0), "", m, true,
		    utc(2026, 6, 11, 2, 30, 0), "2026-06-11");
	/* Busy before the minute changes nothing. */
	expect_wait(utc(2026, 6, 10, 2, 10, 0), "", m, true,
		    utc(2026, 6, 10, 2, 30, 0), "2026-06-10");
	/* The window's edges. */
	expect_wait(utc(2026, 6, 10, 1, 59, 59), "", 0, false,
		    utc(2026, 6, 10, 2, 0, 0), "2026-06-10");
	expect_run(utc(2026, 6, 10, 2, 0, 0), "", 0, "2026-06-10");
	expect_wait(utc(2026, 6, 10, 3, 48, 59), "", NIGHTLY_MINUTES - 1, false,
		    utc(2026, 6, 10, 3, 49, 0), "2026-06-10");
}

static void test_day_boundaries(void **state)
{
	(void)state;
	use_tz("UTC");
	expect_wait(utc(2024, 2, 28, 5, 0, 0), "2024-02-28", 5, false,
		    utc(2024, 2, 29, 2, 5, 0), "2024-02-29");
	expect_run(utc(2024, 2, 29, 2, 5, 0), "2024-02-28", 5, "2024-02-29");
	expect_wait(utc(2024, 2, 29, 2, 6, 0), "2024-02-29", 5, false,
		    utc(2024, 3, 1, 2, 5, 0), "2024-03-01");
	expect_wait(utc(2026, 2, 28, 3, 0, 0), "2026-02-28", 5, false,
		    utc(2026, 3, 1, 2, 5, 0), "2026-03-01");
	expect_wait(utc(2026, 4, 30, 3, 0, 0), "2026-04-30", 5, false,
		    utc(2026, 5, 1, 2, 5, 0), "2026-05-01");
	expect_wait(utc(2026, 12, 31, 3, 0, 0), "2026-12-31", 5, false,
		    utc(2027, 1, 1, 2, 5, 0), "2027-01-01");
	expect_run(utc(2027, 1, 1, 2, 5, 0), "2026-12-31", 5, "2027-01-01");
	/* Busy at the end of the year's last window. */
	expect_wait(utc(2026, 12, 31, 3, 58, 0), "2026-12-30", 5, true,
		    utc(2027, 1, 1, 2, 5, 0), "2027-01-01");
}

/* Tokyo (+09, no DST): the local window, every day of the year. */
static void test_zone_without_dst(void **state)
{
	(void)state;
	use_tz("Asia/Tokyo");
	expect_wait(utc(2026, 3, 28, 15, 0, 0), "", 45, false,
		    utc(2026, 3, 28, 17, 45, 0), "2026-03-29");
	expect_run(utc(2026, 3, 28, 17, 45, 0), "", 45, "2026-03-29");
	expect_wait(utc(2026, 3, 28, 19, 0, 0), "2026-03-29", 45, false,
		    utc(2026, 3, 29, 17, 45, 0), "2026-03-30");
	for (int d = 0; d < 366; d++) {
		/* Local noon. */
		time_t noon = utc(2026, 1, 1, 3, 0, 0) + (time_t)d * 86400;
		struct nightly_plan p = plan(noon, "", 45, false);

		assert_false(p.run);
		assert_int_equal(local_min(p.next), 2 * 60 + 45);
		assert_int_equal(p.next - noon, 12 * 3600 + 2 * 3600 + 45 * 60);
	}
}

/* --- DST ------------------------------------------------------------- */

/* Every minute's target on a date: planned from local midnight, inside
 * [s, e), in minute order, and run there. */
static void check_targets(int y, int mo, int d, time_t s, time_t e,
			  const char *day)
{
	time_t midnight = local(y, mo, d, 0, 0, -1), prev = s;

	for (unsigned m = 0; m < NIGHTLY_MINUTES; m++) {
		struct nightly_plan p = plan(midnight, "", m, false);

		assert_false(p.run);
		assert_string_equal(p.day, day);
		assert_true(p.next >= s && p.next < e);
		assert_true(p.next >= prev);
		/* Still a margin before the end for a retry. */
		assert_true(e - p.next > NIGHTLY_RETRY_S);
		prev = p.next;
		expect_run(p.next, "", m, day);
		expect_wait(p.next - 1, "", m, false, p.next, day);
	}
}

static void test_berlin_spring_forward(void **state)
{
	/* 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC): the window is
	 * 03:00-04:00 CEST, 60 real minutes; minute m runs m/2 min in. */
	time_t s = utc(2026, 3, 29, 1, 0, 0), e = utc(2026, 3, 29, 2, 0, 0);

	(void)state;
	use_tz("Europe/Berlin");
	assert_int_equal(local(2026, 3, 29, 3, 0, -1), s);
	expect_wait(utc(2026, 3, 28, 23, 0, 0), "2026-03-28", 0, false,
		    s, "2026-03-29");
	expect_wait(utc(2026, 3, 28, 23, 0, 0), "2026-03-28", 30, false,
		    s + 15 * 60, "2026-03-29");
	expect_wait(utc(2026, 3, 28, 23, 0, 0), "2026-03-28", 80, false,
		    s + 40 * 60, "2026-03-29");
	expect_wait(utc(2026, 3, 28, 23, 0, 0), "2026-03-28", 109, false,
		    s + 54 * 60 + 30, "2026-03-29");
	check_targets(2026, 3, 29, s, e, "2026-03-29");
	/* 01:59:59 CET, one second before the jump: wait for 03:00 CEST. */
	expect_wait(s - 1, "", 0, false, s, "2026-03-29");
	/* The day after is a normal day again: 02:30 CEST. */
	expect_wait(utc(2026, 3, 29, 1, 30, 0), "2026-03-29", 30, false,
		    utc(2026, 3, 30, 0, 30, 0), "2026-03-30");
	/* And the day before: 02:30 CET. */
	expect_wait(utc(2026, 3, 27, 23, 0, 0), "2026-03-27", 30, false,
		    utc(2026, 3, 28, 1, 30, 0), "2026-03-28");
}

static void test_berlin_fall_back(void **state)
{
	/* 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC): 02:00-03:00 twice,
	 * the window is 02:00 CEST .. 04:00 CET, three real hours. */
	time_t first0230 = utc(2026, 10, 25, 0, 30, 0);
	time_t second0230 = utc(2026, 10, 25, 1, 30, 0);

	(void)state;
	use_tz("Europe/Berlin");
	assert_int_equal(local(2026, 10, 25, 2, 30, 1), first0230);
	assert_int_equal(local(2026, 10, 25, 2, 30, 0), second0230);
	/* Targets in 02:xx: the first occurrence. */
	expect_wait(utc(2026, 10, 24, 22, 0, 0), "", 30, false, first0230,
		    "2026-10-25");
	expect_wait(utc(2026, 10, 24, 22, 0, 0), "", 0, false,
		    utc(2026, 10, 25, 0, 0, 0), "2026-10-25");
	/* 03:10 exists once (CET). */
	expect_wait(utc(2026, 10, 24, 22, 0, 0), "", 70, false,
		    utc(2026, 10, 25, 2, 10, 0), "2026-10-25");
	expect_run(first0230, "2026-10-24", 30, "2026-10-25");
	/* The second 02:30 is the same date: no second run. */
	expect_wait(second0230, "2026-10-25", 30, false,
		    utc(2026, 10, 26, 1, 30, 0), "2026-10-26");
	expect_wait(second0230 - 3600 + 60, "2026-10-25", 30, false,
		    utc(2026, 10, 26, 1, 30, 0), "2026-10-26");
	/* Busy through the first occurrence: the retries carry on through
	 * the second, still the same date's one run. */
	expect_wait(utc(2026, 10, 25, 0, 58, 0), "", 30, true,
		    utc(2026, 10, 25, 1, 3, 0), "2026-10-25");
	expect_run(utc(2026, 10, 25, 1, 3, 0), "", 30, "2026-10-25");
	/* Not yet run: still due on both sides of the change. */
	expect_run(utc(2026, 10, 25, 0, 59, 59), "2026-10-24", 30,
		   "2026-10-25");
	expect_run(utc(2026, 10, 25, 1, 0, 0), "2026-10-24", 30, "2026-10-25");
	check_targets(2026, 10, 25, utc(2026, 10, 25, 0, 0, 0),
		      utc(2026, 10, 25, 3, 0, 0), "2026-10-25");
}

static void test_new_york(void **state)
{
	(void)state;
	use_tz("America/New_York");
	/* 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC): 03:00-04:00 EDT. */
	expect_wait(utc(2026, 3, 8, 5, 0, 0), "", 0, false,
		    utc(2026, 3, 8, 7, 0, 0), "2026-03-08");
	expect_wait(utc(2026, 3, 8, 5, 0, 0), "", 100, false,
		    utc(2026, 3, 8, 7, 50, 0), "2026-03-08");
	check_targets(2026, 3, 8, utc(2026, 3, 8, 7, 0, 0),
		      utc(2026, 3, 8, 8, 0, 0), "2026-03-08");
	/* 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC): 01:00-02:00 twice,
	 * outside the window, which is the usual 02:00-04:00 EST. */
	expect_wait(local(2026, 11, 1, 1, 30, 1), "", 0, false,
		    utc(2026, 11, 1, 7, 0, 0), "2026-11-01");
	expect_wait(local(2026, 11, 1, 1, 30, 0), "", 0, false,
		    utc(2026, 11, 1, 7, 0, 0), "2026-11-01");
	expect_wait(local(2026, 11, 1, 1, 30, 1), "", 109, false,
		    utc(2026, 11, 1, 8, 49, 0), "2026-11-01");
	check_targets(2026, 11, 1, utc(2026, 11, 1, 7, 0, 0),
		      utc(2026, 11, 1, 9, 0, 0), "2026-11-01");
}

static void test_lord_howe(void **state)
{
	(void)state;
	use_tz("Australia/Lord_Howe");
	/* 2026-10-04 02:00 +1030 -> 02:30 +11 (15:30 UTC the day before):
	 * the window is 02:30-04:00, 90 real minutes; m runs 0.75 m in. */
	expect_wait(utc(2026, 10, 3, 12, 0, 0), "", 0, false,
		    utc(2026, 10, 3, 15, 30, 0), "2026-10-04");
	expect_wait(utc(2026, 10, 3, 12, 0, 0), "", 20, false,
		    utc(2026, 10, 3, 15, 45, 0), "2026-10-04");
	expect_wait(utc(2026, 10, 3, 12, 0, 0), "", 109, false,
		    utc(2026, 10, 3, 15, 30, 0) + 109 * 45, "2026-10-04");
	check_targets(2026, 10, 4, utc(2026, 10, 3, 15, 30, 0),
		      utc(2026, 10, 3, 17, 0, 0), "2026-10-04");
	/* 2026-04-05 02:00 +11 -> 01:30 +1030 (15:00 UTC): 01:30-02:00 twice,
	 * before the window: 02:00-04:00 +1030 as usual. */
	expect_wait(utc(2026, 4, 4, 14, 50, 0), "", 0, false,
		    utc(2026, 4, 4, 15, 30, 0), "2026-04-05");
	expect_wait(utc(2026, 4, 4, 14, 50, 0), "", 30, false,
		    utc(2026, 4, 4, 16, 0, 0), "2026-04-05");
	check_targets(2026, 4, 5, utc(2026, 4, 4, 15, 30, 0),
		      utc(2026, 4, 4, 17, 30, 0), "2026-04-05");
}

/* POSIX TZ rules with changes at odd seconds: not on the hourly grid the
 * offsets are sampled on, so the changes must be found to the second. */
#define ODD_TZ "XST-1XDT,M3.5.0/2:17:13,M10.5.0/2:41:07"

static void test_odd_transition_times(void **state)
{
	(void)state;
	use_tz(ODD_TZ);
	/* 2026-03-29 02:17:13 XST (+1) -> 03:17:13 XDT (+2): 60 real
	 * minutes from 02:00 XST (01:00 UTC) to 04:00 XDT (02:00 UTC). */
	expect_wait(utc(2026, 3, 28, 22, 0, 0), "", 0, false,
		    utc(2026, 3, 29, 1, 0, 0), "2026-03-29");
	expect_wait(utc(2026, 3, 28, 22, 0, 0), "", 40, false,
		    utc(2026, 3, 29, 1, 20, 0), "2026-03-29");
	check_targets(2026, 3, 29, utc(2026, 3, 29, 1, 0, 0),
		      utc(2026, 3, 29, 2, 0, 0), "2026-03-29");
	/* 2026-10-25 02:41:07 XDT -> 01:41:07 XST (00:41:07 UTC): 02:41:00
	 * is still summer time; 02:42:00 exists only in winter time. */
	expect_wait(utc(2026, 10, 24, 22, 0, 0), "", 41, false,
		    utc(2026, 10, 25, 0, 41, 0), "2026-10-25");
	expect_wait(utc(2026, 10, 24, 22, 0, 0), "", 42, false,
		    utc(2026, 10, 25, 1, 42, 0), "2026-10-25");
	check_targets(2026, 10, 25, utc(2026, 10, 25, 0, 0, 0),
		      utc(2026, 10, 25, 3, 0, 0), "2026-10-25");
}

/* Shifts of two hours at the window's edges (no real zone does this, but
 * nothing in the rules forbids it). */
static void test_window_skipped_or_doubled(void **state)
{
	(void)state;
	use_tz("ZST0ZDT-2,M3.5.0/2,M10.5.0/4");
	/* 2026-03-29 02:00 ZST -> 04:00 ZDT: no window that day; the next
	 * day's 02:30 ZDT. */
	expect_wait(utc(2026, 3, 29, 0, 0, 0), "2026-03-28", 30, false,
		    utc(2026, 3, 30, 0, 30, 0), "2026-03-30");
	expect_wait(utc(2026, 3, 29, 2, 0, 0), "2026-03-28", 30, false,
		    utc(2026, 3, 30, 0, 30, 0), "2026-03-30");
	/* 2026-10-25 04:00 ZDT -> 02:00 ZST: the whole window twice; every
	 * minute in the first pass, one run. */
	check_targets(2026, 10, 25, utc(2026, 10, 25, 0, 0, 0),
		      utc(2026, 10, 25, 4, 0, 0), "2026-10-25");
	expect_wait(utc(2026, 10, 24, 20, 0, 0), "", 109, false,
		    utc(2026, 10, 25, 1, 49, 0), "2026-10-25");
	expect_wait(utc(2026, 10, 25, 2, 30, 0), "2026-10-25", 30, false,
		    utc(2026, 10, 26, 2, 30, 0), "2026-10-26");
	/* Not run in the first pass (busy): the second still counts. */
	expect_run(utc(2026, 10, 25, 2, 30, 0), "2026-10-24", 30,
		   "2026-10-25");
}

/* --- clock steps ----------------------------------------------------- */

static void test_clock_steps(void **state)
{
	const unsigned m = 30;

	(void)state;
	use_tz("Europe/Berlin");
	/* Forward past 04:00 before the run: the day is missed, not made up
	 * later that day. */
	expect_wait(local(2026, 6, 10, 1, 0, -1), "2026-06-09", m, false,
		    local(2026, 6, 10, 2, 30, -1), "2026-06-10");
	expect_wait(local(2026, 6, 10, 4, 0, -1), "2026-06-09", m, false,
		    local(2026, 6, 11, 2, 30, -1), "2026-06-11");
	expect_wait(local(2026, 6, 10, 13, 0, -1), "2026-06-09", m, false,
		    local(2026, 6, 11, 2, 30, -1), "2026-06-11");
	/* Forward by days: the new date's window. */
	expect_run(local(2026, 6, 20, 3, 0, -1), "2026-06-09", m,
		   "2026-06-20");
	/* Back within the day after the run: no second run. */
	expect_wait(local(2026, 6, 10, 2, 10, -1), "2026-06-10", m, false,
		    local(2026, 6, 11, 2, 30, -1), "2026-06-11");
	/* Back by a day after the run: that date waits too; next is the day
	 * after last_day. */
	expect_wait(local(2026, 6, 9, 2, 45, -1), "2026-06-10", m, false,
		    local(2026, 6, 11, 2, 30, -1), "2026-06-11");
	expect_wait(local(2026, 6, 9, 1, 0, -1), "2026-06-10", m, false,
		    local(2026, 6, 11, 2, 30, -1), "2026-06-11");
	/* Across a month end. */
	expect_wait(local(2026, 6, 30, 2, 45, -1), "2026-07-01", m, false,
		    local(2026, 7, 2, 2, 30, -1), "2026-07-02");
	/* More than a day ahead: a date from a wrong clock, ignored. */
	expect_run(local(2026, 6, 9, 2, 45, -1), "2026-06-11", m,
		   "2026-06-09");
	expect_run(local(2026, 6, 9, 2, 45, -1), "2035-01-01", m,
		   "2026-06-09");
	expect_wait(local(2026, 6, 9, 1, 0, -1), "2035-01-01", m, false,
		    local(2026, 6, 9, 2, 30, -1), "2026-06-09");
	/* Back into the day before, busy at its end: the day after last_day. */
	expect_wait(local(2026, 6, 9, 3, 58, -1), "2026-06-10", m, true,
		    local(2026, 6, 11, 2, 30, -1), "2026-06-11");
}

/* --- simulated clocks ------------------------------------------------ */

static uint32_t xs(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

#define WALK_DAYS 420
#define WALK_START_UTC_Y 2027	/* 2027-10-01 .. 2028-11-24: Feb 29 and */
#define WALK_START_UTC_M 10	/* two DST changes each way in every    */
#define WALK_START_UTC_D 1	/* DST zone (both hemispheres)          */

struct walk_day {
	int runs;
	int in_window;		/* asked with local time in [02:00, 04:00) */
	bool last_busy;		/* the last such ask was busy */
};

/* Index of a local date "YYYY-MM-DD" from the walk's first date. */
static int day_index(const char *day)
{
	int y, mo, d;
	long long i;

	assert_int_equal(sscanf(day, "%4d-%2d-%2d", &y, &mo, &d), 3);
	i = (utc(y, mo, d, 12, 0, 0) - utc(WALK_START_UTC_Y, WALK_START_UTC_M,
					   WALK_START_UTC_D, 12, 0, 0)) / 86400;
	assert_true(i >= 0 && i < WALK_DAYS + 3);
	return (int)i;
}

static long gmtoff(time_t t)
{
	struct tm tm;

	assert_non_null(localtime_r(&t, &tm));
	return tm.tm_gmtoff;
}

struct walk_stats {
	int changes;	/* UTC offset changes crossed */
	int missed;	/* dates without a run: the window ended busy */
	int retries;	/* busy in the window: asked again 5 min later */
};

/*
 * Walk a clock over WALK_DAYS days the way the caller does: sleep until the
 * plan's next (or wake earlier for something else), ask again, run when
 * told and store the date. busy_pct: per ask, the chance that another
 * operation starts (it lasts 1..40 min).
 */
static struct walk_stats walk(const char *tz, unsigned minute, int busy_pct,
			      uint32_t seed)
{
	struct walk_stats st = { 0, 0, 0 };
	static struct walk_day days[WALK_DAYS + 3];
	char last[NIGHTLY_DAY_LEN] = "";
	time_t now, end, busy_until = 0;
	long off;

	use_tz(tz);
	memset(days, 0, sizeof(days));
	now = local(WALK_START_UTC_Y, WALK_START_UTC_M, WALK_START_UTC_D, 0, 0,
		    -1);
	end = now + (time_t)WALK_DAYS * 86400;
	off = gmtoff(now);
	while (now < end) {
		struct nightly_plan p;
		char today[NIGHTLY_DAY_LEN];
		int lm = local_min(now);
		bool busy;

		if (now >= busy_until && (int)(xs(&seed) % 100) < busy_pct)
			busy_until = now + 60 + xs(&seed) % (40 * 60);
		busy = now < busy_until;
		nightly_day(now, today);
		if (lm >= 120 && lm < 240) {
			struct walk_day *w = &days[day_index(today)];

			w->in_window++;
			w->last_busy = busy;
		}
		assert_int_equal(nightly_backup(now, last, minute, busy, &p),
				 ERR_OK);
		if (p.run) {
			struct walk_day *w = &days[day_index(p.day)];

			assert_false(busy);
			assert_true(lm >= 120 && lm < 240);
			assert_string_equal(p.day, today);
			w->runs++;
			assert_int_equal(w->runs, 1);
			memcpy(last, p.day, sizeof(last));
			/* The backup itself takes a while. */
			busy_until = now + 30 + xs(&seed) % 1200;
			now = busy_until;
		} else {
			char nday[NIGHTLY_DAY_LEN];

			assert_true(p.next > now);
			/* At most the day after tomorrow's window. */
			assert_true(p.next - now <= 2 * 86400 + 4 * 3600);
			nightly_day(p.next, nday);
			assert_string_equal(p.day, nday);
			if (busy && p.next == now + NIGHTLY_RETRY_S)
				st.retries++;
			/* One wake-up in eight comes early, at random. */
			if (xs(&seed) % 8 == 0)
				now += 1 + (time_t)(xs(&seed) %
						    (uint32_t)(p.next - now));
			else
				now = p.next;
		}
		if (gmtoff(now) != off) {
			off = gmtoff(now);
			st.changes++;
		}
	}
	/* Every whole date: one run, or the window ended while busy. */
	for (int i = 1; i < WALK_DAYS - 1; i++) {
		assert_true(days[i].in_window > 0);
		if (days[i].runs == 0) {
			assert_true(days[i].last_busy);
			st.missed++;
		}
		if (busy_pct == 0)
			assert_int_equal(days[i].runs, 1);
	}
	return st;
}

static void test_walk_quiet(void **state)
{
	static const char *const zones[] = {
		"UTC", "Asia/Tokyo", "Europe/Berlin", "America/New_York",
		"Australia/Lord_Howe", ODD_TZ,
	};
	const unsigned minutes[] = { 0, 59, 60, NIGHTLY_MINUTES - 1,
				     nightly_minute("C-1001", "pbx-hq") };

	(void)state;
	for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
		for (size_t m = 0; m < sizeof(minutes) / sizeof(minutes[0]);
		     m++) {
			struct walk_stats st = walk(zones[z], minutes[m], 0,
						    0x9e3779b9u + (uint32_t)m);

			assert_int_equal(st.missed, 0);
			assert_int_equal(st.retries, 0);
			/* UTC, Tokyo: none; the others: 3 in the walk. */
			assert_int_equal(st.changes, z < 2 ? 0 : 3);
		}
	}
}

static void test_walk_busy(void **state)
{
	static const char *const zones[] = {
		"Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
	};

	(void)state;
	for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
		for (unsigned m = 0; m < NIGHTLY_MINUTES; m += 27) {
			struct walk_stats st = walk(zones[z], m, 10,
						    12345u + m);

			/* The busy path was taken... */
			assert_true(st.retries > 20);
			/* ...and busy periods sometimes fill the rest of a late
			 * minute's window (checked to be the reason in walk()),
			 * but most days still run. */
			assert_true(st.missed < WALK_DAYS / 5);
		}
	}
}

/* Another window, as the 00:30 log upload uses: 00:30-01:00, minutes
 * 0..19; and windows the rules refuse. */
static void test_other_window(void **state)
{
	static const struct nightly_window logs = { 30, 30, 20 };
	static const struct nightly_window bad[] = {
		{ 30, 0, 0 }, { 23 * 60 + 50, 20, 5 }, { 30, 30, 31 },
	};
	struct nightly_plan p;

	(void)state;
	use_tz("Europe/Berlin");
	/* 2026-12-15, CET (UTC+1): 00:30 + 7 min = 23:37 UTC the day before */
	assert_int_equal(nightly_plan(&logs, utc(2026, 12, 14, 22, 0, 0), "",
				      7, false, &p), ERR_OK);
	assert_false(p.run);
	assert_true(p.next == utc(2026, 12, 14, 23, 37, 0));
	assert_string_equal(p.day, "2026-12-15");
	assert_int_equal(nightly_plan(&logs, p.next, "", 7, false, &p), ERR_OK);
	assert_true(p.run);
	assert_string_equal(p.day, "2026-12-15");
	/* done for the day: tomorrow's */
	assert_int_equal(nightly_plan(&logs, utc(2026, 12, 14, 23, 40, 0),
				      "2026-12-15", 7, false, &p), ERR_OK);
	assert_true(!p.run && p.next == utc(2026, 12, 15, 23, 37, 0));
	/* minute beyond the window's minutes */
	assert_int_equal(nightly_plan(&logs, utc(2026, 12, 14, 22, 0, 0), "",
				      20, false, &p), ERR_INVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(nightly_plan(&bad[i], utc(2026, 12, 14, 22, 0,
							   0), "", 0, false,
					      &p), ERR_INVAL);
	/* the backup's window through the general call: the same plan */
	{
		struct nightly_plan q;

		assert_int_equal(nightly_plan(&nightly_backup_window,
					      utc(2026, 12, 14, 22, 0, 0), "",
					      50, false, &p), ERR_OK);
		assert_int_equal(nightly_backup(utc(2026, 12, 14, 22, 0, 0),
						"", 50, false, &q), ERR_OK);
		assert_true(p.next == q.next && p.run == q.run);
	}
	/* the hash the minutes come from */
	assert_int_equal(nightly_hash("C1001", "pbx-hq") % NIGHTLY_MINUTES,
			 nightly_minute("C1001", "pbx-hq"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minute_is_stable),
		cmocka_unit_test(test_minute_spreads),
		cmocka_unit_test(test_day_format),
		cmocka_unit_test(test_rejects_malformed_last_day),
		cmocka_unit_test(test_rejects_bad_arguments),
		cmocka_unit_test(test_utc_day),
		cmocka_unit_test(test_day_boundaries),
		cmocka_unit_test(test_zone_without_dst),
		cmocka_unit_test(test_berlin_spring_forward),
		cmocka_unit_test(test_berlin_fall_back),
		cmocka_unit_test(test_new_york),
		cmocka_unit_test(test_lord_howe),
		cmocka_unit_test(test_odd_transition_times),
		cmocka_unit_test(test_window_skipped_or_doubled),
		cmocka_unit_test(test_clock_steps),
		cmocka_unit_test(test_walk_quiet),
		cmocka_unit_test(test_walk_busy),
		cmocka_unit_test(test_other_window),
	};
	return cmocka_run_group_tests_name("nightly", tests, NULL, NULL);
}
