/*
 * test_logview — `comagent logs`: the since/level/grep filters alone and
 * together, FILE.1 before FILE, continuation and damaged lines, cut long
 * lines, missing files, the --since forms, what log.c itself writes, and
 * follow mode across appends, a held partial line, rotations (one, two
 * between polls, log.c's own) and a truncation.
 *
 * The log lines are written out literally in log.c's format, so the tests
 * do not share the code's idea of it; one test reads what log.c wrote.
 * Follow mode runs in a thread writing to a file that the test polls (with
 * a timeout) for the line it waits for; that a partial line was read is
 * seen in /proc/self/fdinfo (the reader's file offset), not guessed from
 * a sleep.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "testutil.h"
#include "logview.h"

static char dir[64], path[128], old[132], outpath[128];
static char errtext[1024];

static int setup(void **state)
{
	(void)state;
	if (test_dir_setup("logview", dir, sizeof(dir)))
		return -1;
	snprintf(path, sizeof(path), "%s/agent.log", dir);
	snprintf(old, sizeof(old), "%s.1", path);
	snprintf(outpath, sizeof(outpath), "%s/out", dir);
	return 0;
}

/* ---- files ---- */

static void write_file(const char *p, const char *text, size_t len, int flags)
{
	int fd = open(p, O_WRONLY | O_CREAT | flags, 0640);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

static void put(const char *p, const char *text)
{
	write_file(p, text, strlen(text), O_TRUNC);
}

static void append(const char *p, const char *text)
{
	write_file(p, text, strlen(text), O_APPEND);
}

static char *slurp(const char *p)
{
	static char buf[1 << 16];
	FILE *f = fopen(p, "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

static long long fsize(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

/* ---- running it ---- */

static struct logview_opts opts(void)
{
	return (struct logview_opts){ .path = path, .level = LOG_LVL_DEBUG };
}

/* Runs o (not following) into memory: returns what was written out (a
 * static copy), sets errtext and *e. */
static const char *run(const struct logview_opts *o, err_t *e)
{
	static char text[1 << 18];
	char *obuf = NULL, *ebuf = NULL;
	size_t olen = 0, elen = 0;
	FILE *out = open_memstream(&obuf, &olen);
	FILE *err = open_memstream(&ebuf, &elen);

	assert_non_null(out);
	assert_non_null(err);
	*e = logview_run(o, out, err);
	fclose(out);
	fclose(err);
	assert_true(olen < sizeof(text) && elen < sizeof(errtext));
	memcpy(text, obuf, olen + 1);
	memcpy(errtext, ebuf, elen + 1);
	free(obuf);
	free(ebuf);
	return text;
}

/* Runs o and asserts it succeeded without a word. */
static const char *run_ok(const struct logview_opts *o)
{
	err_t e;
	const char *text = run(o, &e);

	assert_string_equal(errtext, "");
	assert_int_equal(e, ERR_OK);
	return text;
}

static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_sec = s };

	return (int64_t)timegm(&tm);
}

/* ---- the filters ---- */

#define O1 "2026-11-23T10:50:58.120Z info  main: started\n"
#define O2 "2026-11-23T10:50:59.500Z debug link: connecting to com:443\n"
#define O3 "2026-11-23T10:51:00.001Z error link: connect failed: timeout\n"
#define N1 "2026-11-23T10:51:05.999Z info  link: connected\n"
#define N2 "2026-11-23T10:51:06.854Z debug tunnel: open 3 to 127.0.0.1:22\n"
#define N3 "2026-11-23T10:51:07.000Z error tunnel: 3: connection refused\n"
#define N4 "2026-11-23T10:52:00.000Z info  tunnel: 3 closed\n"

static void put_both(void)
{
	put(old, O1 O2 O3);
	put(path, N1 N2 N3 N4);
}

static void test_all_in_order(void **state)
{
	struct logview_opts o = opts();

	(void)state;
	put_both();
	assert_string_equal(run_ok(&o), O1 O2 O3 N1 N2 N3 N4);
	/* FILE.1 the same file as FILE, as when log.c rotates between the
	 * two opens: read once. */
	assert_int_equal(unlink(old), 0);
	assert_int_equal(link(path, old), 0);
	assert_string_equal(run_ok(&o), N1 N2 N3 N4);
}

static void test_level(void **state)
{
	struct logview_opts o = opts();

	(void)state;
	put_both();
	o.level = LOG_LVL_ERROR;
	assert_string_equal(run_ok(&o), O3 N3);
	o.level = LOG_LVL_INFO;
	assert_string_equal(run_ok(&o), O1 O3 N1 N3 N4);
	o.level = LOG_LVL_DEBUG;
	assert_string_equal(run_ok(&o), O1 O2 O3 N1 N2 N3 N4);
}

static void test_since(void **state)
{
	struct logview_opts o = opts();

	(void)state;
	put_both();
	/* By the second: 10:51:06.854 is not older than 10:51:06. */
	o.since = utc(2026, 11, 23, 10, 51, 6);
	assert_string_equal(run_ok(&o), N2 N3 N4);
	o.since = utc(2026, 11, 23, 10, 51, 7);
	assert_string_equal(run_ok(&o), N3 N4);
	o.since = utc(2026, 11, 23, 10, 51, 0);
	assert_string_equal(run_ok(&o), O3 N1 N2 N3 N4);
	o.since = utc(2026, 11, 23, 10, 52, 1);
	assert_string_equal(run_ok(&o), "");
	o.since = utc(2026, 11, 22, 0, 0, 0);
	assert_string_equal(run_ok(&o), O1 O2 O3 N1 N2 N3 N4);
}

static void test_grep(void **state)
{
	struct logview_opts o = opts();

	(void)state;
	put_both();
	o.grep = "tunnel";
	assert_string_equal(run_ok(&o), N2 N3 N4);
	o.grep = "connect";
	assert_string_equal(run_ok(&o), O2 O3 N1 N3);
	o.grep = "Connect";		/* case-sensitive */
	assert_string_equal(run_ok(&o), "");
	o.grep = "10:51:0";		/* the whole line is searched */
	assert_string_equal(run_ok(&o), O3 N1 N2 N3);
	o.grep = "error l";
	assert_string_equal(run_ok(&o), O3);
	o.grep = "";			/* no filter */
	assert_string_equal(run_ok(&o), O1 O2 O3 N1 N2 N3 N4);
}

static void test_filters_combined(void **state)
{
	struct logview_opts o = opts();

	(void)state;
	put_both();
	o.level = LOG_LVL_INFO;
	o.grep = "link";
	assert_string_equal(run_ok(&o), O3 N1);
	o.since = utc(2026, 11, 23, 10, 51, 1);
	assert_string_equal(run_ok(&o), N1);
	o.grep = " 3";
	assert_string_equal(run_ok(&o), N3 N4);
	o.level = LOG_LVL_ERROR;
	assert_string_equal(run_ok(&o), N3);
	o.since = utc(2026, 11, 23, 10, 51, 8);
	assert_string_equal(run_ok(&o), "");
}

/* ---- lines the filter cannot parse ---- */

#define M1 "2026-11-23T10:51:00.000Z error hook: backup failed, output:\n"
#define M2 "  tar: cannot stat x\n"
#define M3 "  tar: exiting\n"
#define M4 "2026-11-23T10:51:01.000Z info  link: ok\n"
#define M5 "\n"

static void test_continuation_lines(void **state)
{
	struct logview_opts o = opts();

	(void)state;
	put(path, M1 M2 M3 M4 M5);
	assert_string_equal(run_ok(&o), M1 M2 M3 M4 M5);
	/* Shown and hidden with their entry... */
	o.level = LOG_LVL_ERROR;
	assert_string_equal(run_ok(&o), M1 M2 M3);
	o.level = LOG_LVL_DEBUG;
	o.since = utc(2026, 11, 23, 10, 51, 1);
	assert_string_equal(run_ok(&o), M4 M5);
	/* ...but searched on their own. */
	o.since = 0;
	o.grep = "cannot";
	assert_string_equal(run_ok(&o), M2);
	o.grep = "hook";
	assert_string_equal(run_ok(&o), M1);
	o.level = LOG_LVL_INFO;
	o.grep = "tar";
	assert_string_equal(run_ok(&o), M2 M3);
	o.level = LOG_LVL_ERROR;
	o.since = utc(2026, 11, 23, 10, 51, 1);
	assert_string_equal(run_ok(&o), "");
}

/* Lines before the first entry have neither time nor level. */
static void test_orphan_lines(void **state)
{
	struct logview_opts o = opts();

	(void)state;
	put(old, "  rest of a cut entry\n" O1);
	put(path, "  FILE's first line\n" N1);
	assert_string_equal(run_ok(&o),
			    "  rest of a cut entry\n" O1
			    "  FILE's first line\n" N1);
	/* FILE continues FILE.1: its first line is O1's. */
	o.level = LOG_LVL_INFO;
	assert_string_equal(run_ok(&o), O1 "  FILE's first line\n" N1);
	o.level = LOG_LVL_DEBUG;
	o.since = 1;
	assert_string_equal(run_ok(&o), O1 "  FILE's first line\n" N1);
}

static void test_damaged_lines(void **state)
{
	static const char text[] =
		M1
		"2026-11-23T10:5\n"				/* cut short */
		M4
		"2026-11-23T10:51:02.000Z warn  link: no such level\n"
		"2026-11-32T10:51:03.000Z info  link: no such day\n"
		"2026-11-23T10:51:04.000Zinfo  link: no blank\n"
		"2026-11-23 10:51:05.000Z info  link: no T\n"
		"\0\0\0\0" "2026-11-23T10:51:06.000Z error link: after a "
		"power cut\n"
		"  ESC \x1b[2J BEL \x07 DEL \x7f CR \r TAB \t end\n"
		"2026-11-23T10:51:07.000Z info  link: no newline at the end";
	struct logview_opts o = opts();

	(void)state;
	write_file(path, text, sizeof(text) - 1, O_TRUNC);
	assert_string_equal(run_ok(&o),
		M1
		"2026-11-23T10:5\n"
		M4
		"2026-11-23T10:51:02.000Z warn  link: no such level\n"
		"2026-11-32T10:51:03.000Z info  link: no such day\n"
		"2026-11-23T10:51:04.000Zinfo  link: no blank\n"
		"2026-11-23 10:51:05.000Z info  link: no T\n"
		"2026-11-23T10:51:06.000Z error link: after a power cut\n"
		"  ESC ?[2J BEL ? DEL ? CR ? TAB \t end\n"
		"2026-11-23T10:51:07.000Z info  link: no newline at the end\n");
	/* The damaged lines go with the entry before them. */
	o.level = LOG_LVL_ERROR;
	assert_string_equal(run_ok(&o),
		M1
		"2026-11-23T10:5\n"
		"2026-11-23T10:51:06.000Z error link: after a power cut\n"
		"  ESC ?[2J BEL ? DEL ? CR ? TAB \t end\n");
	o.level = LOG_LVL_INFO;
	o.since = utc(2026, 11, 23, 10, 51, 1);
	assert_string_equal(run_ok(&o),
		M4
		"2026-11-23T10:51:02.000Z warn  link: no such level\n"
		"2026-11-32T10:51:03.000Z info  link: no such day\n"
		"2026-11-23T10:51:04.000Zinfo  link: no blank\n"
		"2026-11-23 10:51:05.000Z info  link: no T\n"
		"2026-11-23T10:51:06.000Z error link: after a power cut\n"
		"  ESC ?[2J BEL ? DEL ? CR ? TAB \t end\n"
		"2026-11-23T10:51:07.000Z info  link: no newline at the end\n");
	/* grep sees the raw bytes. */
	o.since = 0;
	o.grep = "\x1b[2J";
	assert_string_equal(run_ok(&o), "  ESC ?[2J BEL ? DEL ? CR ? TAB \t end\n");
}

/* ---- long lines ---- */

#define HDR "2026-11-23T10:51:06.854Z info  big: "

/* A line of len bytes (without its newline): HDR, then 'x's, with at
 * offset at (if any) the text mark. */
static char *long_line(size_t len, size_t at, const char *mark)
{
	char *s = malloc(len + 2);

	assert_non_null(s);
	memset(s, 'x', len);
	memcpy(s, HDR, strlen(HDR));
	if (mark)
		memcpy(s + at, mark, strlen(mark));
	s[len] = '\n';
	s[len + 1] = '\0';
	return s;
}

/* What the viewer should show of line: its first keep bytes and the
 * mark, then (if given) the line after it. */
static void expect_cut(const char *got, const char *line, size_t keep,
		       size_t more, const char *after)
{
	char tail[128];
	size_t tlen;

	snprintf(tail, sizeof(tail), " [line cut: %zu more bytes]\n%s", more,
		 after ? after : "");
	tlen = strlen(tail);
	assert_int_equal(strlen(got), keep + tlen);
	assert_memory_equal(got, line, keep);
	assert_string_equal(got + keep, tail);
}

static void test_long_lines(void **state)
{
	struct logview_opts o = opts();
	char *line = long_line(10000, 0, NULL), *text;

	(void)state;
	/* Cut, counted, and the next line is whole. */
	text = malloc(strlen(line) + sizeof(N1));
	assert_non_null(text);
	memcpy(text, line, strlen(line));
	memcpy(text + strlen(line), N1, sizeof(N1));
	put(path, text);
	expect_cut(run_ok(&o), line, LOGVIEW_LINE_MAX, 10000 - LOGVIEW_LINE_MAX,
		   N1);
	/* Exactly the cap: whole. */
	free(line);
	line = long_line(LOGVIEW_LINE_MAX, 0, NULL);
	put(path, line);
	assert_string_equal(run_ok(&o), line);
	/* One more byte: cut. */
	free(line);
	line = long_line(LOGVIEW_LINE_MAX + 1, 0, NULL);
	put(path, line);
	expect_cut(run_ok(&o), line, LOGVIEW_LINE_MAX, 1, NULL);
	/* Not in the middle of a UTF-8 character: "é" at the cap's edge. */
	free(line);
	line = long_line(LOGVIEW_LINE_MAX + 100, LOGVIEW_LINE_MAX - 1, "\xc3\xa9");
	put(path, line);
	expect_cut(run_ok(&o), line, LOGVIEW_LINE_MAX - 1, 101, NULL);
	/* Without a newline at the end either. */
	line[strlen(line) - 1] = '\0';
	put(path, line);
	expect_cut(run_ok(&o), line, LOGVIEW_LINE_MAX - 1, 101, NULL);
	free(line);
	free(text);
}

/* grep finds its text in the part of a line that is cut, also across the
 * cap and across the reads of a big line. */
static void test_long_line_grep(void **state)
{
	static const struct {
		size_t len, at;
	} cases[] = {
		{ 10000, 5000 },			/* in the cut part */
		{ 10000, LOGVIEW_LINE_MAX - 3 },	/* across the cap */
		{ 10000, 10000 - 6 },			/* at the very end */
		{ 200000, 65536 - 3 },			/* across two reads */
		{ 200000, 4096 + 1024 - 2 },		/* across two pieces */
		{ 200000, 150001 },
	};
	struct logview_opts o = opts();

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *line = long_line(cases[i].len, cases[i].at, "NEEDLE");

		put(path, line);
		o.grep = "NEEDLE";
		expect_cut(run_ok(&o), line, LOGVIEW_LINE_MAX,
			   cases[i].len - LOGVIEW_LINE_MAX, NULL);
		o.grep = "NEEDLF";
		assert_string_equal(run_ok(&o), "");
		o.grep = "xNEEDLEx";
		if (cases[i].at + 6 < cases[i].len)
			expect_cut(run_ok(&o), line, LOGVIEW_LINE_MAX,
				   cases[i].len - LOGVIEW_LINE_MAX, NULL);
		free(line);
	}
	/* A needle no shorter than the cap's window, straddling pieces. */
	{
		char needle[LOGVIEW_GREP_MAX + 1];
		char *line;

		memset(needle, 'N', LOGVIEW_GREP_MAX);
		needle[LOGVIEW_GREP_MAX] = '\0';
		line = long_line(100000, 65536 - 100, needle);
		put(path, line);
		o.grep = needle;
		expect_cut(run_ok(&o), line, LOGVIEW_LINE_MAX,
			   100000 - LOGVIEW_LINE_MAX, NULL);
		needle[0] = 'x';	/* "xNNN...": also there */
		expect_cut(run_ok(&o), line, LOGVIEW_LINE_MAX,
			   100000 - LOGVIEW_LINE_MAX, NULL);
		needle[0] = 'N';
		needle[LOGVIEW_GREP_MAX - 1] = 'M';	/* not there */
		assert_string_equal(run_ok(&o), "");
		free(line);
	}
}

/* ---- files and options ---- */

static void test_missing_files(void **state)
{
	struct logview_opts o = opts();
	char want[512];
	err_t e;

	(void)state;
	assert_string_equal(run(&o, &e), "");
	assert_int_equal(e, ERR_NOTFOUND);
	snprintf(want, sizeof(want), "comagent logs: no log at %s (nor %s)\n",
		 path, old);
	assert_string_equal(errtext, want);
	/* In follow mode as well. */
	o.follow = true;
	assert_string_equal(run(&o, &e), "");
	assert_int_equal(e, ERR_NOTFOUND);
	o.follow = false;

	put(old, O1 O2);
	assert_string_equal(run_ok(&o), O1 O2);
	unlink(old);
	put(path, N1);
	assert_string_equal(run_ok(&o), N1);
	put(path, "");
	assert_string_equal(run_ok(&o), "");
}

static void test_bad_options(void **state)
{
	struct logview_opts o = opts();
	char grep[LOGVIEW_GREP_MAX + 2];
	char want[512];
	err_t e;

	(void)state;
	put(path, N1);
	memset(grep, 'g', sizeof(grep) - 1);
	grep[sizeof(grep) - 1] = '\0';
	o.grep = grep;
	assert_string_equal(run(&o, &e), "");
	assert_int_equal(e, ERR_INVAL);
	assert_string_equal(errtext, "comagent logs: text to look for too long "
				     "(at most 256 bytes)\n");
	grep[LOGVIEW_GREP_MAX] = '\0';		/* the longest: fine */
	assert_string_equal(run_ok(&o), "");

	o = opts();
	o.level = (enum log_level)3;
	assert_string_equal(run(&o, &e), "");
	assert_int_equal(e, ERR_INVAL);

	o = opts();
	o.path = "";
	assert_string_equal(run(&o, &e), "");
	assert_int_equal(e, ERR_INVAL);

	/* A directory where the log should be. */
	o = opts();
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_string_equal(run(&o, &e), "");
	assert_int_equal(e, ERR_INVAL);
	snprintf(want, sizeof(want), "comagent logs: %s is not a regular file\n",
		 path);
	assert_string_equal(errtext, want);
}

/* ---- --since and --level ---- */

static void test_parse_since(void **state)
{
	const time_t now = (time_t)utc(2026, 11, 23, 10, 51, 6);
	const struct {
		const char *s;
		int64_t want;
	} good[] = {
		{ "2026-11-23", utc(2026, 11, 23, 0, 0, 0) },
		{ "2026-11-23T10:51", utc(2026, 11, 23, 10, 51, 0) },
		{ "2026-11-23T10:51Z", utc(2026, 11, 23, 10, 51, 0) },
		{ "2026-11-23T10:51:06", utc(2026, 11, 23, 10, 51, 6) },
		{ "2026-11-23T10:51:06Z", utc(2026, 11, 23, 10, 51, 6) },
		{ "2026-11-23T10:51:06.854Z", utc(2026, 11, 23, 10, 51, 6) },
		{ "2026-11-23T10:51:06.9", utc(2026, 11, 23, 10, 51, 6) },
		{ "2026-11-23T10:51:06.123456789Z", utc(2026, 11, 23, 10, 51, 6) },
		{ "2026-12-31T23:59:59Z", utc(2026, 12, 31, 23, 59, 59) },
		{ "2024-02-29", utc(2024, 2, 29, 0, 0, 0) },
		{ "2000-02-29T00:00", utc(2000, 2, 29, 0, 0, 0) },
		{ "1970-01-01", 0 },
		{ "1970-01-01T00:00:01Z", 1 },
		{ "9999-12-31T23:59:59Z", 253402300799LL },
		{ "90s", now - 90 },
		{ "15m", now - 15 * 60 },
		{ "2h", now - 2 * 3600 },
		{ "3d", now - 3 * 86400 },
		{ "0s", now },
		{ "015m", now - 15 * 60 },
		{ "20780d", 39066 },		/* 1970-01-01T10:51:06Z */
	};
	static const char *const bad[] = {
		"", "2026", "2026-11", "2026-11-2", "2026-1-23", "26-11-23",
		"2026/11/23", "2026-11-23T", "2026-11-23T10", "2026-11-23T10:5",
		"2026-11-23T10:51:6", "2026-11-23T10:51:06.", "2026-11-23T10:51:06.Z",
		"2026-11-23T10:51:06.1234567890Z", "2026-11-23T10:51.5",
		"2026-11-23T10:51:06ZZ", "2026-11-23T10:51:06+01:00",
		"2026-11-23T10:51:06 ", " 2026-11-23", "2026-11-23 10:51",
		"2026-11-23t10:51", "2026-11-23T10:51:06z", "2026-11-23Z",
		"2026-00-10", "2026-13-01", "2026-11-00", "2026-11-31",
		"2026-02-29", "2100-02-29", "2026-11-23T24:00",
		"2026-11-23T10:60", "2026-11-23T10:51:60", "1969-12-31",
		"0000-01-01", "s", "10", "10x", "3w", "1y", "5M", "-5m", "+5m",
		" 5m", "5m ", "5 m", "1.5h", "0x10s", "5mm",
		"1000000000000s", "99999999999999999999d",
		"20781d",			/* before 1970 */
		"\xef\xbc\x92" "026-11-23",	/* a fullwidth digit */
	};
	int64_t got;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		got = -12345;
		if (!logview_parse_since(good[i].s, now, &got))
			fail_msg("rejected \"%s\"", good[i].s);
		if (got != good[i].want)
			fail_msg("\"%s\": %lld, want %lld", good[i].s,
				 (long long)got, (long long)good[i].want);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		got = -12345;
		if (logview_parse_since(bad[i], now, &got))
			fail_msg("accepted \"%s\" as %lld", bad[i],
				 (long long)got);
		assert_int_equal(got, -12345);
	}
	assert_false(logview_parse_since(NULL, now, &got));
	assert_false(logview_parse_since("5m", now, NULL));
	/* Relative to a clock before 1970 or too near it. */
	assert_false(logview_parse_since("5m", (time_t)-1, &got));
	assert_false(logview_parse_since("5m", 299, &got));
	assert_true(logview_parse_since("5m", 300, &got));
	assert_int_equal(got, 0);
}

/* --level is parsed by log.h (one list of names), and each name means
 * the level of the lines log.c writes with it. */
static void test_level_names(void **state)
{
	static const char *const lines[] = {
		"2026-11-23T10:51:00.000Z error m: e\n",
		"2026-11-23T10:51:00.000Z info  m: i\n",
		"2026-11-23T10:51:00.000Z debug m: d\n",
	};
	static const char *const names[] = { "error", "info", "debug" };
	struct logview_opts o = opts();

	(void)state;
	put(path, "");
	for (int i = 0; i < 3; i++)
		append(path, lines[i]);
	for (int i = 0; i < 3; i++) {
		char want[256];
		size_t n = 0;

		o.level = (enum log_level)log_level_parse(names[i]);
		assert_int_equal(o.level, i);
		for (int k = 0; k <= i; k++)
			n += (size_t)snprintf(want + n, sizeof(want) - n, "%s",
					      lines[k]);
		assert_string_equal(run_ok(&o), want);
	}
	assert_int_equal(log_level_parse("warn"), -1);
	assert_int_equal(log_level_parse("ERROR"), -1);
	assert_int_equal(log_level_parse(""), -1);
	assert_int_equal(log_level_parse(NULL), -1);
}

/* What log.c writes, rotation included, is read back byte for byte. */
static void test_reads_log_c(void **state)
{
	static char both[1 << 15], want[1 << 15];
	struct logview_opts o = opts();
	size_t n = 0, k = 0;

	(void)state;
	log_close();
	assert_int_equal(log_open(path, 4096, LOG_LVL_DEBUG, false), ERR_OK);
	for (int i = 0; i < 80; i++)
		log_msg((enum log_level)(i % 3), "writer", "line %02d of %s", i,
			"the test");
	log_close();
	log_start();
	assert_true(fsize(old) > 0);
	n = (size_t)snprintf(both, sizeof(both), "%s", slurp(old));
	n += (size_t)snprintf(both + n, sizeof(both) - n, "%s", slurp(path));
	assert_true(n < sizeof(both) - 1);
	assert_string_equal(run_ok(&o), both);
	/* Its errors: every third line, as many as there are. */
	for (char *l = both; *l;) {
		char *nl = strchr(l, '\n');

		assert_non_null(nl);
		if (!strncmp(l + 25, "error writer: ", 14)) {
			memcpy(want + k, l, (size_t)(nl + 1 - l));
			k += (size_t)(nl + 1 - l);
		}
		l = nl + 1;
	}
	want[k] = '\0';
	assert_true(k > 0);
	o.level = LOG_LVL_ERROR;
	assert_string_equal(run_ok(&o), want);
}

/* ---- follow mode ---- */

static struct {
	pthread_t thread;
	bool running;
	struct logview_opts o;
	volatile sig_atomic_t stop;
	err_t result;
	FILE *out, *err;
} fw;

static void *follower(void *arg)
{
	(void)arg;
	fw.result = logview_run(&fw.o, fw.out, fw.err);
	return NULL;
}

static void start_follow(enum log_level level)
{
	fw.o = opts();
	fw.o.level = level;
	fw.o.follow = true;
	fw.o.stop = &fw.stop;
	fw.stop = 0;
	fw.result = ERR_STATE;
	fw.out = fopen(outpath, "w");
	assert_non_null(fw.out);
	fw.err = tmpfile();
	assert_non_null(fw.err);
	assert_int_equal(pthread_create(&fw.thread, NULL, follower, NULL), 0);
	fw.running = true;
}

/* Stops the follower; returns what it wrote out. */
static const char *stop_follow(void)
{
	char ebuf[512];
	size_t n;

	if (!fw.running)
		return "";
	__atomic_store_n(&fw.stop, 1, __ATOMIC_SEQ_CST);
	assert_int_equal(pthread_join(fw.thread, NULL), 0);
	fw.running = false;
	fclose(fw.out);
	rewind(fw.err);
	n = fread(ebuf, 1, sizeof(ebuf) - 1, fw.err);
	ebuf[n] = '\0';
	fclose(fw.err);
	assert_string_equal(ebuf, "");
	assert_int_equal(fw.result, ERR_OK);
	return slurp(outpath);
}

static int teardown(void **state)
{
	(void)state;
	if (fw.running) {		/* a failed follow test */
		fw.stop = 1;
		pthread_join(fw.thread, NULL);
		fw.running = false;
		fclose(fw.out);
		fclose(fw.err);
	}
	return test_dir_teardown(dir);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_ms(long ms)
{
	struct timespec ts = { 0, ms * 1000000L };

	nanosleep(&ts, NULL);
}

/* Waits (at most 3 s) until the follower has written text. */
static void wait_for(const char *text)
{
	double end = now_s() + 3;

	while (!strstr(slurp(outpath), text)) {
		if (now_s() > end)
			fail_msg("no \"%s\" in the output after 3 s; it has:\n%s",
				 text, slurp(outpath));
		pause_ms(5);
	}
}

/* The file offset of this process's descriptor open on p, -1 if none. */
static long long reader_pos(const char *p)
{
	char link[64], target[256], info[256];
	long long pos = -1;

	for (int fd = 0; fd < 1024 && pos < 0; fd++) {
		ssize_t n;
		FILE *f;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strcmp(target, p))
			continue;
		snprintf(link, sizeof(link), "/proc/self/fdinfo/%d", fd);
		f = fopen(link, "r");
		if (!f)
			continue;
		while (fgets(info, sizeof(info), f))
			if (sscanf(info, "pos: %lld", &pos) == 1)
				break;
		fclose(f);
	}
	return pos;
}

/* Waits (at most 3 s) until the follower has read all of p. */
static void wait_read(const char *p)
{
	double end = now_s() + 3;

	while (reader_pos(p) != fsize(p)) {
		if (now_s() > end)
			fail_msg("%s: read to %lld of %lld after 3 s", p,
				 reader_pos(p), fsize(p));
		pause_ms(5);
	}
}

#define F(msg) "2026-11-23T11:00:00.000Z info  test: " msg "\n"
#define FD(msg) "2026-11-23T11:00:00.000Z debug test: " msg "\n"

static void test_follow(void **state)
{
	(void)state;
	put(old, F("a1") F("a2"));
	put(path, F("b1"));
	start_follow(LOG_LVL_INFO);
	wait_for(F("b1"));

	/* Appended lines, filtered as ever. */
	append(path, FD("hidden") F("b2"));
	wait_for(F("b2"));

	/* A rotation right after a line: that line, then the new file. */
	append(path, F("b3"));
	assert_int_equal(rename(path, old), 0);
	put(path, F("c1"));
	wait_for(F("c1"));

	/* A partial line is held until its newline comes. */
	append(path, "2026-11-23T11:00:00.000Z info  test: c2 ");
	wait_read(path);
	append(path, "continued\n" F("c3"));
	wait_for(F("c3"));

	/* Truncated in place: read again from the start. */
	put(path, F("d1"));
	wait_for(F("d1"));

	/* Two rotations, maybe between two polls: the file in the middle
	 * is read too. */
	append(path, F("d2"));
	assert_int_equal(rename(path, old), 0);
	put(path, F("e1"));
	assert_int_equal(rename(path, old), 0);
	put(path, F("f1"));
	wait_for(F("f1"));

	/* Gone for a while (log.c's rotation is not atomic), then back. */
	append(path, F("f2"));
	assert_int_equal(rename(path, old), 0);
	wait_for(F("f2"));
	put(path, F("g1"));
	wait_for(F("g1"));

	assert_string_equal(stop_follow(),
		F("a1") F("a2") F("b1") F("b2") F("b3") F("c1")
		F("c2 continued") F("c3") F("d1") F("d2") F("e1") F("f1")
		F("f2") F("g1"));
}

/* With only FILE.1 there, FILE is waited for. */
static void test_follow_waits_for_file(void **state)
{
	(void)state;
	put(old, F("a1"));
	start_follow(LOG_LVL_DEBUG);
	wait_for(F("a1"));
	put(path, F("b1"));
	wait_for(F("b1"));
	append(path, F("b2"));
	wait_for(F("b2"));
	assert_string_equal(stop_follow(), F("a1") F("b1") F("b2"));
}

/* log.c writing and rotating (its cap is a few lines) while followed:
 * every line once, in order. */
static void test_follow_log_c(void **state)
{
	static char want[1 << 15], stripped[1 << 15];
	const char *got;
	size_t k = 0, m = 0;

	(void)state;
	log_close();
	assert_int_equal(log_open(path, 2048, LOG_LVL_DEBUG, false), ERR_OK);
	start_follow(LOG_LVL_DEBUG);
	for (int b = 0; b < 6; b++) {
		char last[64];

		/* Under 2 KiB a batch: at most two rotations unread. */
		for (int i = 0; i < 20; i++)
			log_msg(LOG_LVL_INFO, "rot", "batch %d line %02d", b, i);
		snprintf(last, sizeof(last), "rot: batch %d line 19\n", b);
		wait_for(last);
	}
	log_close();
	log_start();
	got = stop_follow();
	assert_true(fsize(old) > 0);
	for (int b = 0; b < 6; b++)
		for (int i = 0; i < 20; i++)
			k += (size_t)snprintf(want + k, sizeof(want) - k,
					      "info  rot: batch %d line %02d\n",
					      b, i);
	/* Without the timestamps (log.c's own). */
	for (const char *nl; (nl = strchr(got, '\n')); got = nl + 1) {
		size_t n = (size_t)(nl + 1 - got);

		assert_true(n > TS_LEN && m + n - TS_LEN < sizeof(stripped));
		memcpy(stripped + m, got + TS_LEN, n - TS_LEN);
		m += n - TS_LEN;
	}
	assert_string_equal(got, "");
	stripped[m] = '\0';
	assert_string_equal(stripped, want);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_all_in_order),
		T(test_level),
		T(test_since),
		T(test_grep),
		T(test_filters_combined),
		T(test_continuation_lines),
		T(test_orphan_lines),
		T(test_damaged_lines),
		T(test_long_lines),
		T(test_long_line_grep),
		T(test_missing_files),
		T(test_bad_options),
		T(test_parse_since),
		T(test_level_names),
		T(test_reads_log_c),
		T(test_follow),
		T(test_follow_waits_for_file),
		T(test_follow_log_c),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
