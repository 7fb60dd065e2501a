/*
 * test_logstore — the local syslog store: messages read back verbatim
 * (gunzip by zlib) one per line, newline replacement and truncation,
 * rotation by size and by local day (Europe/Berlin, across a DST change
 * and a clock stepped back), the manifest across free/open and with
 * damaged or missing lines, a current file left by a crash, the caps of
 * an IP500 V2-like store (total on disk never above max_total, uploaded
 * files pruned before unsent ones, oldest first), the per-day cap, and
 * write errors.
 *
 * A full disk cannot be made in a unit test (no tmpfs mount), so the
 * write errors are made with RLIMIT_FSIZE and SIGXFSZ ignored: a write
 * past the limit fails with EFBIG, which the store treats as "no space"
 * like ENOSPC (it is the same kind of condition, and the same code path).
 *
 * Time is simulated through `now`: every instant is written in UTC
 * (timegm) and the local dates are Berlin's.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "digest.h"
#include "log.h"
#include "testutil.h"
#include "logstore.h"

static char dir[64], sdir[96];
static struct rlimit old_fsize;
static bool fsize_changed;

static time_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_sec = s };

	return timegm(&tm);
}

/* 2026-12-01 11:00 in Berlin (CET, UTC+1). */
#define T0 utc(2026, 12, 1, 10, 0, 0)

static struct logstore_cfg cfg(void)
{
	return (struct logstore_cfg){ .dir = sdir, .max_total = 1 << 20,
				      .max_day = 0, .file_max = 4096,
				      .msg_max = 512 };
}

static struct logstore *open_store(const struct logstore_cfg *c, time_t now)
{
	struct logstore *s = NULL;

	assert_int_equal(logstore_open(c, now, &s), ERR_OK);
	assert_non_null(s);
	return s;
}

static void add(struct logstore *s, time_t now, const char *msg)
{
	assert_int_equal(logstore_append(s, now, msg, strlen(msg)), ERR_OK);
}

static const char *spath(const char *name)
{
	static char p[256];

	snprintf(p, sizeof(p), "%s/%s", sdir, name);
	return p;
}

/* The uncompressed contents of the .gz name (NUL-terminated, static). */
static const char *gunzip(const char *name)
{
	static char buf[1 << 20];
	gzFile f = gzopen(spath(name), "rb");
	int n;

	assert_non_null(f);
	n = gzread(f, buf, sizeof(buf) - 1);
	assert_true(n >= 0);
	assert_int_equal(gzclose(f), Z_OK);
	buf[n] = '\0';
	return buf;
}

/* The contents of a plain file (NUL-terminated, static). */
static const char *slurp(const char *name)
{
	static char buf[1 << 16];
	int fd = open(spath(name), O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n >= 0);
	close(fd);
	buf[n] = '\0';
	return buf;
}

static void put(const char *name, const char *text)
{
	int fd = open(spath(name), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static bool exists(const char *name)
{
	struct stat st;

	return stat(spath(name), &st) == 0;
}

/* Bytes of all log files in the store directory (what max_total caps). */
static uint64_t disk_total(uint64_t *files)
{
	struct dirent *e;
	struct stat st;
	uint64_t sum = 0, n = 0;
	DIR *d = opendir(sdir);

	assert_non_null(d);
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "log-", 4))
			continue;
		assert_int_equal(stat(spath(e->d_name), &st), 0);
		if (!S_ISREG(st.st_mode))
			continue;	/* a test's obstacle */
		sum += (uint64_t)st.st_size;
		n++;
	}
	closedir(d);
	if (files)
		*files = n;
	return sum;
}

/* The listing as "name[*] " for each file, * for uploaded. */
static const char *listing(const struct logstore *s)
{
	static char out[4096];
	size_t n = 0;

	out[0] = '\0';
	for (size_t i = 0; i < logstore_count(s); i++) {
		const struct logstore_file *f = logstore_at(s, i);

		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s ",
				      f->name, f->uploaded ? "*" : "");
		assert_true(n < sizeof(out));
	}
	return out;
}

/* Each listed file's size and SHA-256 match the file on disk. */
static void listing_true(const struct logstore *s)
{
	char sha[DIGEST_HEX_LEN + 1];
	struct stat st;

	for (size_t i = 0; i < logstore_count(s); i++) {
		const struct logstore_file *f = logstore_at(s, i);

		assert_int_equal(stat(spath(f->name), &st), 0);
		assert_int_equal(f->size, (uint64_t)st.st_size);
		assert_int_equal(digest_file(spath(f->name), UINT64_MAX, sha,
					     NULL), ERR_OK);
		assert_string_equal(f->sha256, sha);
	}
}

static struct logstore_stats stats(const struct logstore *s)
{
	struct logstore_stats st;

	logstore_stats(s, &st);
	return st;
}

/* A message of exactly len characters, tagged with i. */
static const char *msg(unsigned i, size_t len)
{
	static char buf[2048];
	int n = snprintf(buf, sizeof(buf), "msg %05u ", i);

	assert_true(len < sizeof(buf) && (size_t)n <= len);
	memset(buf + n, 'a' + (char)(i % 26), len - (size_t)n);
	buf[len] = '\0';
	return buf;
}

static int setup(void **state)
{
	(void)state;
	if (test_dir_setup("logstore", dir, sizeof(dir)))
		return -1;
	snprintf(sdir, sizeof(sdir), "%s/logs", dir);
	if (setenv("TZ", "Europe/Berlin", 1) != 0)
		return -1;
	tzset();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (fsize_changed)
		setrlimit(RLIMIT_FSIZE, &old_fsize);
	fsize_changed = false;
	return test_dir_teardown(dir);
}

static void test_lines_verbatim(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;
	const struct logstore_file *f;
	struct logstore_stats st;
	struct stat sb;
	char line[256];
	static const char want[] =
		"<134>Dec  1 11:00:00 ipo: SIP trunk 1 up\n"
		"\n"
		"tab\there, utf-8 \xc3\xa4\xc3\xb6, 100% \"quoted\"\n"
		"a\0b\n\n";

	(void)state;
	s = open_store(&c, T0);
	assert_int_equal(stat(sdir, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0700);
	assert_int_equal(logstore_count(s), 0);
	add(s, T0, "<134>Dec  1 11:00:00 ipo: SIP trunk 1 up");
	add(s, T0 + 1, "");
	add(s, T0 + 2, "tab\there, utf-8 \xc3\xa4\xc3\xb6, 100% \"quoted\"");
	/* Bytes after a NUL are the message's too: len counts. */
	assert_int_equal(logstore_append(s, T0 + 3, "a\0b", 3), ERR_OK);
	assert_int_equal(logstore_append(s, T0 + 3, NULL, 0), ERR_OK);
	assert_int_equal(logstore_append(s, T0 + 3, NULL, 1), ERR_INVAL);
	/* Not listed before it is closed. */
	assert_int_equal(logstore_count(s), 0);
	assert_int_equal(logstore_close_current(s, T0 + 4), ERR_OK);
	assert_int_equal(logstore_count(s), 1);
	f = logstore_at(s, 0);
	assert_string_equal(f->name, "log-20261201-001.log.gz");
	assert_string_equal(f->day, "2026-12-01");
	assert_false(f->uploaded);
	assert_null(logstore_at(s, 1));
	listing_true(s);
	assert_memory_equal(gunzip(f->name), want, sizeof(want) - 1);
	assert_true(logstore_path(s, f->name, line, sizeof(line)));
	assert_string_equal(line, spath(f->name));
	assert_false(logstore_path(s, f->name, line, 10));
	assert_string_equal(dir_entries(sdir),
			    "log-20261201-001.log.gz manifest ");
	snprintf(line, sizeof(line), "%s %llu %s 0\n", f->name,
		 (unsigned long long)f->size, f->sha256);
	assert_string_equal(slurp("manifest"), line);

	/* Nothing new: no file. The next message starts the next number. */
	assert_int_equal(logstore_close_current(s, T0 + 5), ERR_OK);
	assert_int_equal(logstore_count(s), 1);
	add(s, T0 + 6, "next");
	logstore_flush(s);
	assert_string_equal(slurp("log-20261201-002.log"), "next\n");
	st = stats(s);
	assert_int_equal(st.messages, 6);
	assert_int_equal(st.files, 2);
	assert_int_equal(st.bytes, f->size + 5);
	assert_int_equal(st.bytes, disk_total(NULL));
	assert_int_equal(st.today_bytes, sizeof(want) - 1 + 5);
	assert_int_equal(st.truncated + st.dropped_day + st.dropped_total +
			 st.write_errors + st.pruned_sent + st.pruned_unsent, 0);
	logstore_free(s);
	assert_string_equal(logged(), "");
}

static void test_newlines_and_truncation(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;

	(void)state;
	c.msg_max = 10;
	s = open_store(&c, T0);
	add(s, T0, "a\nb\rc\r\n");
	add(s, T0, "0123456789ABCDEF");	/* cut to 10 */
	add(s, T0, "0123456789");		/* exactly 10: kept */
	add(s, T0, "\n\n\n\n\n\n\n\n\n\nXYZ");	/* cut, then replaced */
	assert_int_equal(logstore_close_current(s, T0), ERR_OK);
	assert_string_equal(gunzip("log-20261201-001.log.gz"),
			    "a b c  \n0123456789\n0123456789\n          \n");
	assert_int_equal(stats(s).messages, 4);
	assert_int_equal(stats(s).truncated, 2);
	assert_int_equal(stats(s).today_bytes, 8 + 11 + 11 + 11);
	logstore_free(s);
	assert_string_equal(logged(), "");
}

static void test_rotation_by_size(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;
	char want[8192];
	size_t n;

	(void)state;
	s = open_store(&c, T0);
	/* 100 bytes a line: 40 lines fill 4000 of the 4096 bytes. */
	for (unsigned i = 0; i < 100; i++)
		add(s, T0 + i, msg(i, 99));
	assert_string_equal(listing(s), "log-20261201-001.log.gz "
			    "log-20261201-002.log.gz ");
	assert_true(exists("log-20261201-003.log"));
	assert_false(exists("log-20261201-001.log"));
	assert_int_equal(logstore_close_current(s, T0 + 100), ERR_OK);
	assert_int_equal(logstore_count(s), 3);
	listing_true(s);
	for (unsigned k = 0; k < 3; k++) {
		n = 0;
		for (unsigned i = 40 * k; i < 40 * k + 40 && i < 100; i++)
			n += (size_t)snprintf(want + n, sizeof(want) - n,
					      "%s\n", msg(i, 99));
		assert_string_equal(gunzip(logstore_at(s, k)->name), want);
	}
	assert_int_equal(stats(s).messages, 100);
	assert_int_equal(stats(s).files, 3);
	logstore_free(s);
	assert_string_equal(logged(), "");
}

static void test_rotation_by_day(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;
	/* 2026-03-28 23:59:59 CET and the next second, 00:00 on the day of
	 * the change to summer time (02:00 CET -> 03:00 CEST). */
	time_t eve = utc(2026, 3, 28, 22, 59, 59);
	/* That day has 23 hours: it ends at 22:00 UTC, not 23:00. */
	time_t late = utc(2026, 3, 29, 21, 59, 59);

	(void)state;
	s = open_store(&c, eve);
	add(s, eve, "saturday");
	add(s, eve + 1, "sunday, just after midnight");
	assert_string_equal(listing(s), "log-20260328-001.log.gz ");
	add(s, late, "sunday, 23:59:59 CEST");
	assert_string_equal(listing(s), "log-20260328-001.log.gz ");
	add(s, late + 1, "monday");
	assert_string_equal(listing(s), "log-20260328-001.log.gz "
			    "log-20260329-001.log.gz ");
	/* The clock stepped back a day: a new file for that day, numbered
	 * after the one it already has; then forward again. */
	add(s, late, "sunday again");
	add(s, late + 2, "monday again");
	assert_int_equal(logstore_close_current(s, late + 3), ERR_OK);
	assert_string_equal(listing(s), "log-20260328-001.log.gz "
			    "log-20260329-001.log.gz log-20260329-002.log.gz "
			    "log-20260330-001.log.gz log-20260330-002.log.gz ");
	assert_string_equal(logstore_at(s, 1)->day, "2026-03-29");
	assert_string_equal(gunzip("log-20260328-001.log.gz"), "saturday\n");
	assert_string_equal(gunzip("log-20260329-001.log.gz"),
			    "sunday, just after midnight\n"
			    "sunday, 23:59:59 CEST\n");
	assert_string_equal(gunzip("log-20260329-002.log.gz"),
			    "sunday again\n");
	assert_string_equal(gunzip("log-20260330-001.log.gz"), "monday\n");
	assert_string_equal(gunzip("log-20260330-002.log.gz"),
			    "monday again\n");
	listing_true(s);
	logstore_free(s);
	assert_string_equal(logged(), "");
}

static void test_manifest_round_trip(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;
	struct logstore_file before[3];
	char want[1024];
	size_t n = 0;

	(void)state;
	s = open_store(&c, T0);
	for (unsigned k = 0; k < 3; k++) {
		add(s, T0 + k, msg(k, 50));
		assert_int_equal(logstore_close_current(s, T0 + k), ERR_OK);
	}
	assert_int_equal(logstore_mark_uploaded(s, "log-20261201-002.log.gz"),
			 ERR_OK);
	for (unsigned k = 0; k < 3; k++) {
		before[k] = *logstore_at(s, k);
		n += (size_t)snprintf(want + n, sizeof(want) - n,
				      "%s %llu %s %d\n", before[k].name,
				      (unsigned long long)before[k].size,
				      before[k].sha256, k == 1);
	}
	assert_string_equal(slurp("manifest"), want);
	logstore_free(s);

	s = open_store(&c, T0 + 10);
	assert_int_equal(logstore_count(s), 3);
	for (unsigned k = 0; k < 3; k++)
		assert_memory_equal(logstore_at(s, k), &before[k],
				    sizeof(before[k]));
	assert_string_equal(listing(s), "log-20261201-001.log.gz "
			    "log-20261201-002.log.gz* log-20261201-003.log.gz ");
	assert_string_equal(slurp("manifest"), want);
	/* Numbers go on after the stored ones. */
	add(s, T0 + 11, "fourth");
	assert_int_equal(logstore_close_current(s, T0 + 11), ERR_OK);
	assert_string_equal(logstore_at(s, 3)->name, "log-20261201-004.log.gz");
	logstore_free(s);
	/* Nothing was hashed again or complained about. */
	assert_string_equal(logged(), "");
}

static void test_mark_uploaded_persists(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;

	(void)state;
	s = open_store(&c, T0);
	add(s, T0, "one");
	assert_int_equal(logstore_close_current(s, T0), ERR_OK);
	add(s, T0, "two");
	assert_int_equal(logstore_close_current(s, T0), ERR_OK);
	assert_int_equal(logstore_mark_uploaded(s, "log-20261201-001.log.gz"),
			 ERR_OK);
	assert_int_equal(logstore_mark_uploaded(s, "log-20261201-001.log.gz"),
			 ERR_OK);	/* again: no change */
	assert_int_equal(logstore_mark_uploaded(s, "log-20261201-009.log.gz"),
			 ERR_NOTFOUND);
	assert_int_equal(logstore_mark_uploaded(s, NULL), ERR_INVAL);
	logstore_free(s);
	logged_is_at("info  logstore: $/log-20261201-009.log.gz: not in the "
		     "log store\n", sdir);

	s = open_store(&c, T0 + 60);
	assert_string_equal(listing(s), "log-20261201-001.log.gz* "
			    "log-20261201-002.log.gz ");
	assert_int_equal(logstore_mark_uploaded(s, "log-20261201-002.log.gz"),
			 ERR_OK);
	logstore_free(s);
	s = open_store(&c, T0 + 120);
	assert_string_equal(listing(s), "log-20261201-001.log.gz* "
			    "log-20261201-002.log.gz* ");
	logstore_free(s);
	assert_string_equal(logged(), "");
}

static void test_crash_leftover(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;

	(void)state;
	s = open_store(&c, T0);
	add(s, T0, "before the crash 1");
	add(s, T0, "before the crash 2");
	/* No close: as after a restart, the buffer reached the file. */
	logstore_free(s);
	assert_string_equal(dir_entries(sdir),
			    "log-20261201-001.log manifest ");
	assert_string_equal(slurp("log-20261201-001.log"),
			    "before the crash 1\nbefore the crash 2\n");
	/* A power cut: a torn last line, and a compression cut short. */
	int fd = open(spath("log-20261201-001.log"), O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "torn", 4), 4);
	close(fd);
	put("log-20261130-007.log.gz.tmp", "half a gzip");

	s = open_store(&c, T0 + 30);
	assert_string_equal(dir_entries(sdir),
			    "log-20261201-001.log.gz manifest ");
	assert_string_equal(listing(s), "log-20261201-001.log.gz ");
	listing_true(s);
	assert_string_equal(gunzip("log-20261201-001.log.gz"),
			    "before the crash 1\nbefore the crash 2\ntorn\n");
	/* Its bytes count for the day. */
	assert_int_equal(stats(s).today_bytes, 19 + 19 + 5);
	add(s, T0 + 31, "after");
	assert_int_equal(logstore_close_current(s, T0 + 31), ERR_OK);
	assert_string_equal(listing(s), "log-20261201-001.log.gz "
			    "log-20261201-002.log.gz ");
	logstore_free(s);
	logged_is_at("info  logstore: $/log-20261130-007.log.gz.tmp: left by an "
		     "interrupted compression; removed\n"
		     "info  logstore: $: 1 files left by a restart; "
		     "compressing\n", sdir);

	/* A crash after the .gz was renamed into place, before the raw file
	 * was removed: the raw file goes, the .gz stays as it is. */
	put("log-20261201-002.log", "after\n");
	s = open_store(&c, T0 + 60);
	assert_string_equal(dir_entries(sdir), "log-20261201-001.log.gz "
			    "log-20261201-002.log.gz manifest ");
	assert_string_equal(gunzip("log-20261201-002.log.gz"), "after\n");
	listing_true(s);
	logstore_free(s);
	logged_is_at("info  logstore: $/log-20261201-002.log: already "
		     "compressed; removed\n", sdir);

	/* ... but a raw file that does not match its .gz is the one kept. */
	put("log-20261201-002.log", "after, longer\n");
	s = open_store(&c, T0 + 90);
	assert_string_equal(gunzip("log-20261201-002.log.gz"),
			    "after, longer\n");
	assert_int_equal(logstore_count(s), 2);
	listing_true(s);
	logstore_free(s);
	logged_is_at("error logstore: $/log-20261201-002.log.gz: does not match "
		     "log-20261201-002.log; compressed again\n"
		     "info  logstore: $: 1 files left by a restart; "
		     "compressing\n", sdir);
}

static void test_manifest_repair(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;
	struct logstore_file f[3];
	char text[1024];
	char sha[DIGEST_HEX_LEN + 1];

	(void)state;
	s = open_store(&c, T0);
	for (unsigned k = 0; k < 3; k++) {
		add(s, T0, msg(k, 30));
		assert_int_equal(logstore_close_current(s, T0), ERR_OK);
		f[k] = *logstore_at(s, k);
	}
	assert_int_equal(logstore_mark_uploaded(s, f[0].name), ERR_OK);
	logstore_free(s);
	/* The second file is missing (a crash between its rename and the
	 * manifest's write: here its line is damaged), a line is garbage,
	 * one names a file that is gone, and the third file's size does not
	 * match its line (a file changed behind the store's back). */
	snprintf(text, sizeof(text),
		 "%s %llu %s 1\n"
		 "garbage here\n"
		 "log-20261130-001.log.gz 10 %s 0\n"
		 "%s %llu %s 2\n"
		 "%s %llu %s 1",
		 f[0].name, (unsigned long long)f[0].size, f[0].sha256,
		 f[0].sha256, f[1].name, (unsigned long long)f[1].size,
		 f[1].sha256, f[2].name, (unsigned long long)f[2].size + 1,
		 f[0].sha256);
	put("manifest", text);
	s = open_store(&c, T0 + 5);
	/* What is uploaded is kept; the changed file is to be sent again. */
	assert_string_equal(listing(s), "log-20261201-001.log.gz* "
			    "log-20261201-002.log.gz log-20261201-003.log.gz ");
	for (unsigned k = 1; k < 3; k++) {
		assert_int_equal(digest_file(spath(f[k].name), UINT64_MAX, sha,
					     NULL), ERR_OK);
		assert_string_equal(logstore_at(s, k)->sha256, sha);
		assert_int_equal(logstore_at(s, k)->size, f[k].size);
	}
	listing_true(s);
	snprintf(text, sizeof(text), "%s %llu %s 1\n%s %llu %s 0\n"
		 "%s %llu %s 0\n",
		 f[0].name, (unsigned long long)f[0].size, f[0].sha256,
		 f[1].name, (unsigned long long)f[1].size, f[1].sha256,
		 f[2].name, (unsigned long long)f[2].size, f[2].sha256);
	assert_string_equal(slurp("manifest"), text);
	logstore_free(s);
	logged_is_at("error logstore: $/manifest: line 2 damaged, skipped\n"
		     "error logstore: $/manifest: line 4 damaged, skipped\n"
		     "info  logstore: $/log-20261201-002.log.gz: not in the "
		     "manifest; hashed and added\n"
		     "info  logstore: $/log-20261201-003.log.gz: size differs "
		     "from the manifest; hashed again, to be uploaded again\n"
		     "info  logstore: $: 1 files in the manifest are gone "
		     "(log-20261130-001.log.gz); dropped\n", sdir);

	/* No manifest at all: everything is hashed again, nothing known to
	 * be uploaded any more. */
	unlink(spath("manifest"));
	s = open_store(&c, T0 + 6);
	assert_string_equal(listing(s), "log-20261201-001.log.gz "
			    "log-20261201-002.log.gz log-20261201-003.log.gz ");
	listing_true(s);
	logstore_free(s);
	logged_is_at("info  logstore: $/log-20261201-001.log.gz: not in the "
		     "manifest; hashed and added\n"
		     "info  logstore: $/log-20261201-002.log.gz: not in the "
		     "manifest; hashed and added\n"
		     "info  logstore: $/log-20261201-003.log.gz: not in the "
		     "manifest; hashed and added\n", sdir);
}

/* Incompressible enough: gzip keeps about 3/4 of it. */
static const char *noise(unsigned i, size_t len)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
				  "wxyz0123456789+/";
	static char buf[1024];
	static uint32_t x = 2463534242u;
	int n = snprintf(buf, sizeof(buf), "%06u ", i);

	for (size_t k = (size_t)n; k < len; k++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[k] = abc[x & 63];
	}
	buf[len] = '\0';
	return buf;
}

static void test_caps_ip500v2(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;
	char order[64][LOGSTORE_NAME_MAX];	/* the expected pruning order */
	char seen[64][LOGSTORE_NAME_MAX];	/* listed before this append */
	size_t norder = 0, nseen = 0, next = 0, gone_total = 0;
	uint64_t raw = 0, files, sent = 0;
	unsigned i = 0;
	bool marked = false;
	struct logstore_stats st;

	(void)state;
	c.max_total = 256 * 1024;
	c.file_max = 32 * 1024;
	c.msg_max = 1024;
	s = open_store(&c, T0);
	while (raw <= 3 * c.max_total + c.max_total / 2) {
		const char *m = noise(i, 400);

		assert_int_equal(logstore_append(s, T0 + i / 100, m, 400),
				 ERR_OK);
		raw += 401;
		i++;
		/* Which listed files went with this append: exactly the next
		 * ones of the expected order. */
		bool is_gone[64];
		size_t gone = 0;
		for (size_t k = 0; k < nseen; k++) {
			is_gone[k] = true;
			for (size_t j = 0; j < logstore_count(s); j++)
				if (!strcmp(logstore_at(s, j)->name, seen[k]))
					is_gone[k] = false;
			gone += is_gone[k];
		}
		for (size_t k = 0; k < nseen; k++) {
			size_t o = next;

			while (is_gone[k] && o < next + gone &&
			       strcmp(order[o], seen[k]))
				o++;
			assert_true(!is_gone[k] || (o < next + gone &&
						     o < norder));
		}
		next += gone;
		gone_total += gone;
		nseen = logstore_count(s);
		assert_true(nseen < 64);
		for (size_t k = 0; k < nseen; k++)
			memcpy(seen[k], logstore_at(s, k)->name,
			       LOGSTORE_NAME_MAX);
		/* Once five files are closed, two are uploaded: they go
		 * first, then the others from the oldest. */
		if (!marked && nseen == 5) {
			assert_int_equal(logstore_mark_uploaded(s, seen[1]),
					 ERR_OK);
			assert_int_equal(logstore_mark_uploaded(s, seen[3]),
					 ERR_OK);
			memcpy(order[norder++], seen[1], LOGSTORE_NAME_MAX);
			memcpy(order[norder++], seen[3], LOGSTORE_NAME_MAX);
			memcpy(order[norder++], seen[0], LOGSTORE_NAME_MAX);
			memcpy(order[norder++], seen[2], LOGSTORE_NAME_MAX);
			memcpy(order[norder++], seen[4], LOGSTORE_NAME_MAX);
			marked = true;
		} else if (marked && nseen &&
			   strcmp(seen[nseen - 1], order[norder - 1]) > 0) {
			memcpy(order[norder++], seen[nseen - 1],
			       LOGSTORE_NAME_MAX);
		}
		/* The cap, on disk and as counted. */
		st = stats(s);
		assert_true(st.bytes <= c.max_total);
		assert_true(disk_total(&files) <= c.max_total);
		assert_int_equal(files, st.files);
	}
	assert_true(marked);
	assert_true(gone_total >= 10);
	st = stats(s);
	for (size_t k = 0; k < logstore_count(s); k++)
		sent += logstore_at(s, k)->uploaded;
	assert_int_equal(sent, 0);
	assert_int_equal(st.pruned_sent, 2);
	assert_int_equal(st.pruned_unsent, gone_total - 2);
	assert_int_equal(st.messages, i);
	assert_int_equal(st.dropped_total + st.dropped_day + st.write_errors +
			 st.truncated, 0);
	/* The newest messages are all there. */
	logstore_flush(s);
	assert_int_equal(st.bytes, disk_total(NULL));
	listing_true(s);
	assert_int_equal(logstore_close_current(s, T0 + i / 100), ERR_OK);
	const char *last = gunzip(logstore_at(s, logstore_count(s) - 1)->name);
	char tail[420];
	snprintf(tail, sizeof(tail), "%06u ", i - 1);
	assert_non_null(strstr(last, tail));
	logstore_free(s);

	/* A smaller cap at the next start: pruned to it at once. */
	c.max_total = 128 * 1024;
	s = open_store(&c, T0 + 1000);
	st = stats(s);
	assert_true(st.bytes <= c.max_total);
	assert_true(disk_total(NULL) <= c.max_total);
	assert_true(st.pruned_unsent > 0);
	listing_true(s);
	logstore_free(s);
	assert_string_equal(logged(), "");
}

static void test_total_cap_without_room(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;
	struct logstore_stats st;
	char text[14001];

	(void)state;
	/* Nothing can be deleted for room: a file left by a restart (14000
	 * bytes, unsent) cannot be compressed and waits, uncompressed. */
	c.max_total = 16384;
	c.file_max = 4096;
	assert_int_equal(mkdir(sdir, 0700), 0);
	for (unsigned i = 0; i < 140; i++)
		snprintf(text + 100 * i, 101, "%s\n", msg(i, 99));
	put("log-20261201-001.log", text);
	assert_int_equal(mkdir(spath("log-20261201-001.log.gz.tmp"), 0700), 0);
	s = open_store(&c, T0);
	assert_int_equal(stats(s).bytes, 14000);
	/* 23 more lines of 100 bytes fit under 16384, no more. */
	for (unsigned i = 0; i < 100; i++) {
		assert_int_equal(logstore_append(s, T0, msg(i, 99), 99),
				 i < 23 ? ERR_OK : ERR_LIMIT);
		assert_true(stats(s).bytes <= c.max_total);
	}
	st = stats(s);
	assert_int_equal(st.messages, 23);
	assert_int_equal(st.dropped_total, 77);
	assert_int_equal(st.files, 2);
	logstore_flush(s);
	assert_true(disk_total(NULL) <= c.max_total);
	logged_is_at("info  logstore: $: 1 files left by a restart; "
		     "compressing\n"
		     "error logstore: $/log-20261201-001.log.gz.tmp: cannot "
		     "create: Is a directory; compression retried later\n"
		     "error logstore: $: dropping messages: the store is full "
		     "(16384 bytes) and nothing is left to delete\n", sdir);
	/* Once it is compressed there is room again. */
	assert_int_equal(rmdir(spath("log-20261201-001.log.gz.tmp")), 0);
	assert_int_equal(logstore_close_current(s, T0 + 1), ERR_OK);
	assert_string_equal(listing(s), "log-20261201-001.log.gz "
			    "log-20261201-002.log.gz ");
	assert_string_equal(gunzip("log-20261201-001.log.gz"), text);
	add(s, T0 + 2, "room again");
	assert_true(stats(s).bytes <= c.max_total);
	logstore_free(s);
	(void)logged();
}

static void test_day_cap(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;
	struct logstore_stats st;
	time_t tomorrow = T0 + 86400;

	(void)state;
	c.max_day = 1000;
	s = open_store(&c, T0);
	for (unsigned i = 0; i < 10; i++)
		add(s, T0, msg(i, 99));
	for (unsigned i = 10; i < 16; i++)
		assert_int_equal(logstore_append(s, T0 + 1, msg(i, 99), 99),
				 ERR_LIMIT);
	/* A smaller one still fits? No: the day is at its cap exactly. */
	assert_int_equal(logstore_append(s, T0 + 2, "", 0), ERR_LIMIT);
	st = stats(s);
	assert_int_equal(st.messages, 10);
	assert_int_equal(st.dropped_day, 7);
	assert_int_equal(st.today_bytes, 1000);
	/* One line for the first drop, none for the others. */
	logged_is_at("info  logstore: $: dropping messages: 2026-12-01 reached "
		     "its cap of 1000 bytes\n", sdir);
	/* A minute later the rest are summed up, once. */
	assert_int_equal(logstore_append(s, T0 + 61, "x", 1), ERR_LIMIT);
	assert_int_equal(logstore_append(s, T0 + 62, "x", 1), ERR_LIMIT);
	logged_is_at("info  logstore: $: 7 more messages dropped over the day's "
		     "cap since the last report\n", sdir);
	logstore_free(s);
	logged_is_at("info  logstore: $: 1 more messages dropped over the day's "
		     "cap since the last report\n", sdir);

	/* A restart the same day knows what the day already has. */
	s = open_store(&c, T0 + 100);
	assert_int_equal(stats(s).today_bytes, 1000);
	assert_int_equal(logstore_append(s, T0 + 100, "x", 1), ERR_LIMIT);
	/* The next day takes messages again. */
	add(s, tomorrow, msg(99, 99));
	st = stats(s);
	assert_int_equal(st.today_bytes, 100);
	assert_int_equal(st.messages, 1);
	assert_int_equal(st.dropped_day, 1);
	assert_int_equal(logstore_close_current(s, tomorrow), ERR_OK);
	assert_string_equal(listing(s), "log-20261201-001.log.gz "
			    "log-20261202-001.log.gz ");
	assert_int_equal(strlen(gunzip("log-20261201-001.log.gz")), 1000);
	logstore_free(s);
	(void)logged();
}

static void test_day_files_used_up(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;
	gzFile g;

	(void)state;
	/* The day's last number is taken (by a file from before a restart). */
	assert_int_equal(mkdir(sdir, 0700), 0);
	g = gzopen(spath("log-20261201-999.log.gz"), "wb");
	assert_non_null(g);
	assert_true(gzputs(g, "the last one\n") > 0);
	assert_int_equal(gzclose(g), Z_OK);
	s = open_store(&c, T0);
	assert_string_equal(listing(s), "log-20261201-999.log.gz ");
	assert_int_equal(stats(s).today_bytes, 13);
	assert_int_equal(logstore_append(s, T0, "one too many", 12), ERR_LIMIT);
	assert_int_equal(logstore_append(s, T0, "two too many", 12), ERR_LIMIT);
	assert_int_equal(stats(s).dropped_day, 2);
	add(s, T0 + 86400, "the next day");
	assert_int_equal(logstore_close_current(s, T0 + 86400), ERR_OK);
	assert_string_equal(listing(s), "log-20261201-999.log.gz "
			    "log-20261202-001.log.gz ");
	logstore_free(s);
	logged_is_at("info  logstore: $/log-20261201-999.log.gz: not in the "
		     "manifest; hashed and added\n"
		     "info  logstore: $: dropping messages: 2026-12-01 has its "
		     "999 files\n"
		     "info  logstore: $: 1 more messages dropped over the day's "
		     "cap since the last report\n", sdir);
}

/* Ignores SIGXFSZ and limits the size of files written from now on. */
static void limit_fsize(rlim_t max)
{
	struct rlimit r;

	if (!fsize_changed) {
		assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_fsize), 0);
		fsize_changed = true;
	}
	signal(SIGXFSZ, SIG_IGN);
	r = old_fsize;
	r.rlim_cur = max;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &r), 0);
}

static void unlimit_fsize(void)
{
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_fsize), 0);
	fsize_changed = false;
}

static void test_write_errors(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;
	struct logstore_stats st;
	struct stat sb;
	char want[65536], cur[LOGSTORE_NAME_MAX + 8];
	size_t n = 0;
	unsigned first_io = 0, k;
	off_t good;

	(void)state;
	c.file_max = 256 * 1024;
	s = open_store(&c, T0);
	add(s, T0, "an older file");
	assert_int_equal(logstore_close_current(s, T0), ERR_OK);
	for (k = 0; k < 10; k++) {
		add(s, T0, msg(k, 99));
		n += (size_t)snprintf(want + n, sizeof(want) - n, "%s\n",
				      msg(k, 99));
	}
	logstore_flush(s);
	snprintf(cur, sizeof(cur), "log-20261201-002.log");
	assert_int_equal(stat(spath(cur), &sb), 0);
	good = sb.st_size;
	assert_int_equal(good, 1000);
	(void)logged();

	/* "The disk is full" 50 bytes further on: a write that gets half a
	 * line out, then EFBIG. */
	limit_fsize((rlim_t)good + 50);
	for (k = 10; k < 20; k++)
		add(s, T0, msg(k, 99));	/* buffered */
	logstore_flush(s);
	st = stats(s);
	assert_int_equal(st.messages, 11);	/* not these 10 */
	assert_int_equal(st.write_errors, 10);
	assert_int_equal(st.write_errno, EFBIG);
	/* Room was made: the older file is gone. */
	assert_int_equal(st.pruned_unsent, 1);
	assert_int_equal(logstore_count(s), 0);
	/* The half line was taken back. */
	assert_int_equal(stat(spath(cur), &sb), 0);
	assert_int_equal(sb.st_size, good);
	/* The buffer fills again and cannot be written: the message that
	 * found it full is dropped with it, ERR_IO. */
	for (k = 20; k < 420; k++) {
		err_t e = logstore_append(s, T0 + 1, msg(k, 99), 99);

		if (e == ERR_IO) {
			assert_int_equal(first_io, 0);
			first_io = k;
		} else {
			assert_int_equal(e, ERR_OK);
		}
	}
	assert_int_equal(first_io, 20 + (LOGSTORE_BUF - 1) / 100 - 1 + 1);
	st = stats(s);
	assert_int_equal(st.write_errors, 10 + first_io - 20 + 1);
	assert_int_equal(st.messages + st.write_errors, 11 + 410);
	assert_int_equal(st.pruned_unsent, 1);
	/* One line for the first failure only. */
	logged_is_at("error logstore: $/log-20261201-002.log: cannot write: "
		     "File too large; 10 messages lost\n", sdir);

	/* Space returns: the store takes messages again, and the second
	 * failure is summed up at the next report. */
	unlimit_fsize();
	add(s, T0 + 61, "back");
	for (k = first_io + 1; k < 420; k++)
		n += (size_t)snprintf(want + n, sizeof(want) - n, "%s\n",
				      msg(k, 99));
	n += (size_t)snprintf(want + n, sizeof(want) - n, "back\n");
	logstore_flush(s);
	char line[200];
	snprintf(line, sizeof(line), "error logstore: $: %u more messages lost "
		 "to write errors since the last report\n", first_io - 20 + 1);
	logged_is_at(line, sdir);
	assert_int_equal(logstore_close_current(s, T0 + 62), ERR_OK);
	assert_string_equal(listing(s), "log-20261201-002.log.gz ");
	assert_string_equal(gunzip("log-20261201-002.log.gz"), want);
	st = stats(s);
	assert_int_equal(st.messages + st.write_errors, 11 + 410 + 1);
	logstore_free(s);
	assert_string_equal(logged(), "");
}

static void test_compress_failure_keeps_data(void **state)
{
	struct logstore_cfg c = cfg();
	struct logstore *s;
	struct stat sb;

	(void)state;
	s = open_store(&c, T0);
	add(s, T0, "kept while the .gz cannot be written");
	logstore_flush(s);
	(void)logged();
	/* The .gz cannot be created: its .tmp name is taken by a
	 * directory. Closing fails, the messages stay, new ones go to a
	 * new file. */
	assert_int_equal(mkdir(spath("log-20261201-001.log.gz.tmp"), 0700), 0);
	assert_int_equal(logstore_close_current(s, T0 + 1), ERR_IO);
	assert_int_equal(logstore_count(s), 0);
	assert_int_equal(stat(spath("log-20261201-001.log"), &sb), 0);
	add(s, T0 + 2, "new file");
	logstore_flush(s);
	assert_string_equal(slurp("log-20261201-002.log"), "new file\n");
	assert_int_equal(stats(s).files, 2);
	/* Not retried before LOGSTORE_RETRY_S; then it works. */
	assert_int_equal(rmdir(spath("log-20261201-001.log.gz.tmp")), 0);
	logstore_flush(s);
	assert_int_equal(logstore_count(s), 0);
	add(s, T0 + 1 + LOGSTORE_RETRY_S, "later");
	logstore_flush(s);
	assert_string_equal(listing(s), "log-20261201-001.log.gz ");
	assert_string_equal(gunzip("log-20261201-001.log.gz"),
			    "kept while the .gz cannot be written\n");
	assert_false(exists("log-20261201-001.log"));
	listing_true(s);
	logstore_free(s);
	logged_is_at("error logstore: $/log-20261201-001.log.gz.tmp: cannot "
		     "create: Is a directory; compression retried later\n",
		     sdir);
}

static void test_bad_config(void **state)
{
	struct logstore_cfg c;
	struct logstore *s = (struct logstore *)1;

	(void)state;
	c = cfg();
	c.dir = "";
	assert_int_equal(logstore_open(&c, T0, &s), ERR_INVAL);
	assert_null(s);
	c = cfg();
	c.file_max = 1000;
	assert_int_equal(logstore_open(&c, T0, &s), ERR_INVAL);
	c = cfg();
	c.msg_max = 0;
	assert_int_equal(logstore_open(&c, T0, &s), ERR_INVAL);
	c = cfg();
	c.msg_max = 4096;	/* not below file_max */
	assert_int_equal(logstore_open(&c, T0, &s), ERR_INVAL);
	c = cfg();
	c.max_total = 3 * c.file_max;
	assert_int_equal(logstore_open(&c, T0, &s), ERR_INVAL);
	c = cfg();
	c.max_day = 1ULL << 50;
	assert_int_equal(logstore_open(&c, T0, &s), ERR_INVAL);
	c = cfg();
	c.msg_max = LOGSTORE_MSG_LIMIT + 1;
	assert_int_equal(logstore_open(&c, T0, &s), ERR_INVAL);
	assert_int_equal(logstore_open(NULL, T0, &s), ERR_INVAL);
	assert_false(exists(""));	/* no directory was made */
	logged_is_at("error logstore: no log store directory\n"
		     "error logstore: $: file size 1000 outside 4096..1073741824\n"
		     "error logstore: $: message size 0 outside 1..65536 (and "
		     "below the file size)\n"
		     "error logstore: $: message size 4096 outside 1..65536 (and "
		     "below the file size)\n"
		     "error logstore: $: store size 12288 outside "
		     "16384..4398046511104\n"
		     "error logstore: $: daily cap 1125899906842624 above "
		     "4398046511104\n"
		     "error logstore: $: message size 65537 outside 1..65536 (and "
		     "below the file size)\n"
		     "error logstore: no log store directory\n", sdir);
	/* A file size too big for the store is lowered, not refused: the
	 * files are closed at a quarter of the store. */
	c = cfg();
	c.max_total = 65536;
	c.file_max = 65536;
	assert_int_equal(logstore_open(&c, T0, &s), ERR_OK);
	for (unsigned i = 0; i < 200; i++)
		add(s, T0, msg(i, 99));
	assert_string_equal(listing(s), "log-20261201-001.log.gz ");
	assert_int_equal(strlen(gunzip("log-20261201-001.log.gz")), 16300);
	assert_true(stats(s).bytes <= 65536);
	assert_int_equal(logstore_close_current(s, T0), ERR_OK);
	logstore_free(s);
	s = NULL;
	logged_is_at("info  logstore: $: file size 65536 lowered to 16384, a "
		     "quarter of the store size\n", sdir);
	/* A message size above the buffer: the buffer grows to it. */
	c = cfg();
	c.file_max = 1 << 20;
	c.max_total = 4 << 20;
	c.msg_max = LOGSTORE_MSG_LIMIT;
	char *big = malloc(LOGSTORE_MSG_LIMIT + 10);
	assert_non_null(big);
	memset(big, 'b', LOGSTORE_MSG_LIMIT + 10);
	assert_int_equal(logstore_open(&c, T0, &s), ERR_OK);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(logstore_append(s, T0, big,
						 LOGSTORE_MSG_LIMIT + 10), ERR_OK);
	assert_int_equal(logstore_close_current(s, T0), ERR_OK);
	const char *back = gunzip("log-20261201-003.log.gz");
	assert_int_equal(strlen(back), 3 * (LOGSTORE_MSG_LIMIT + 1));
	assert_int_equal(stats(s).truncated, 3);
	logstore_free(s);
	s = NULL;
	free(big);
	assert_string_equal(logged(), "");
	/* A directory that cannot be made or is no directory. */
	char file[128];
	snprintf(file, sizeof(file), "%s/file", dir);
	int fd = open(file, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	c = cfg();
	c.dir = file;
	assert_int_equal(logstore_open(&c, T0, &s), ERR_IO);
	assert_null(s);
	logged_is_at("error state: $: not a directory\n", file);
	char sub[140];
	snprintf(sub, sizeof(sub), "%s/logs", file);
	c.dir = sub;
	assert_int_equal(logstore_open(&c, T0, &s), ERR_IO);
	assert_null(s);
	logged_is_at("error state: cannot create directory $/logs: Not a "
		     "directory\n",
		     file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lines_verbatim, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_newlines_and_truncation,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_by_size, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rotation_by_day, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_manifest_round_trip, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_mark_uploaded_persists,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_leftover, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_manifest_repair, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_caps_ip500v2, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_total_cap_without_room,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_day_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_day_files_used_up, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_compress_failure_keeps_data,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
