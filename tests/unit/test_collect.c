/*
 * test_collect — following log files in directories: lines appended across
 * looks arrive once and in order, a partial line waits for its newline,
 * max_bytes splits a backlog over looks (without starving other files),
 * long lines are cut, only regular "*.log" files directly in the
 * directories are read, rotation by rename (the old file read on through
 * its descriptor, also while no new file exists), by truncation and by
 * delete + recreate, restarts (free + new on the same state file) resume
 * exactly, a missing directory is picked up when it appears, a file that
 * cannot be opened is logged once and read once it can, a damaged or
 * unwritable state file is survived, and the file cap.
 *
 * Looks are driven directly through collect_poll(): no sleeps. Each line
 * delivered is recorded as "FILE TEXT\n" (FILE relative to the test's
 * directory, TEXT followed by "~" if it was cut) and compared whole.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "testutil.h"
#include "collect.h"
#include "state.h"

static char dir[64];
static char out[1 << 16];
static size_t out_len;

static void record(void *arg, const char *file, const char *text, size_t len,
		   bool truncated)
{
	size_t dlen = strlen(dir);
	int n;

	(void)arg;
	assert_memory_equal(file, dir, dlen);
	assert_int_equal(file[dlen], '/');
	assert_null(memchr(text, '\n', len));
	n = snprintf(out + out_len, sizeof(out) - out_len, "%s %.*s%s\n",
		     file + dlen + 1, (int)len, text, truncated ? "~" : "");
	assert_true(n > 0 && (size_t)n < sizeof(out) - out_len);
	out_len += (size_t)n;
}

/* What was delivered since the last call. */
static const char *got(void)
{
	static char copy[sizeof(out)];

	memcpy(copy, out, out_len + 1);
	out_len = 0;
	out[0] = '\0';
	return copy;
}

/* One look with plenty of bytes; its lines must match want exactly. */
static void poll_is(struct collect *c, const char *want)
{
	size_t lines = 0;

	for (const char *p = want; *p; p++)
		lines += *p == '\n';
	assert_int_equal(collect_poll(c, 1 << 24, record, NULL), lines);
	assert_string_equal(got(), want);
}

static const char *at(const char *rel)
{
	static char p[4][256];
	static int k;

	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", dir, rel);
	return p[k];
}

static void write_all(int fd, const char *text)
{
	size_t n = strlen(text);

	assert_int_equal(write(fd, text, n), (ssize_t)n);
}

/* Creates (or truncates) rel with text. */
static void put(const char *rel, const char *text)
{
	int fd = open(at(rel), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	write_all(fd, text);
	close(fd);
}

static void append(const char *rel, const char *text)
{
	int fd = open(at(rel), O_WRONLY | O_CREAT | O_APPEND, 0600);

	assert_true(fd >= 0);
	write_all(fd, text);
	close(fd);
}

/* A collect on the test's directories named in rels ("d1 d2"), its state
 * file DIR/state. */
static struct collect *open_c(const char *rels, size_t line_max)
{
	char dirs[512] = "", rel[32];
	size_t n = 0;
	struct collect *c = NULL;

	for (const char *p = rels; *p;) {
		const char *sp = strchr(p, ' ');
		size_t k = sp ? (size_t)(sp - p) : strlen(p);

		assert_true(k > 0 && k < sizeof(rel));
		memcpy(rel, p, k);
		rel[k] = '\0';
		n += (size_t)snprintf(dirs + n, sizeof(dirs) - n, "%s%s",
				      n ? " " : "", at(rel));
		assert_true(n < sizeof(dirs));
		p += k + (sp != NULL);
	}
	assert_int_equal(collect_new(dirs, at("state"), line_max, &c), ERR_OK);
	assert_non_null(c);
	return c;
}

static struct collect_stats stats(const struct collect *c)
{
	struct collect_stats s;

	collect_stats(c, &s);
	return s;
}

static ino_t inode_of(const char *rel)
{
	struct stat st;

	assert_int_equal(stat(at(rel), &st), 0);
	return st.st_ino;
}

static int setup(void **state)
{
	(void)state;
	out_len = 0;
	out[0] = '\0';
	if (test_dir_setup("collect", dir, sizeof(dir)) != 0)
		return -1;
	if (mkdir(at("d1"), 0700) != 0 || mkdir(at("d2"), 0700) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return test_dir_teardown(dir);
}

/* ---- tests ---- */

static void test_lines_once_in_order(void **state)
{
	struct collect *c = open_c("d1", 100);
	struct collect_stats s;

	(void)state;
	poll_is(c, "");
	put("d1/a.log", "one\ntwo\n");
	poll_is(c, "d1/a.log one\nd1/a.log two\n");
	poll_is(c, "");
	append("d1/a.log", "three\n\nfour\n");
	poll_is(c, "d1/a.log three\nd1/a.log \nd1/a.log four\n");
	poll_is(c, "");
	s = stats(c);
	assert_int_equal(s.files, 1);
	assert_int_equal(s.bytes, 20);
	assert_int_equal(s.lines, 5);
	assert_int_equal(s.truncated, 0);
	assert_int_equal(s.errors, 0);
	collect_free(c);
	assert_string_equal(logged(), "");
}

static void test_partial_line_waits(void **state)
{
	struct collect *c = open_c("d1", 100);

	(void)state;
	put("d1/a.log", "hel");
	poll_is(c, "");
	poll_is(c, "");
	append("d1/a.log", "lo\nwor");
	poll_is(c, "d1/a.log hello\n");
	append("d1/a.log", "l");
	poll_is(c, "");
	append("d1/a.log", "d\n");
	poll_is(c, "d1/a.log world\n");
	collect_free(c);
}

static void test_max_bytes(void **state)
{
	struct collect *c = open_c("d1", 100);
	char text[128] = "";

	(void)state;
	for (int i = 0; i < 10; i++)	/* 10 lines of 10 bytes */
		snprintf(text + 10 * i, sizeof(text) - 10 * (size_t)i,
			 "line-%04d\n", i);
	put("d1/a.log", text);
	assert_int_equal(collect_poll(c, 35, record, NULL), 3);
	assert_string_equal(got(), "d1/a.log line-0000\nd1/a.log line-0001\n"
				   "d1/a.log line-0002\n");
	assert_int_equal(stats(c).bytes, 35);
	/* 35..70: the held half line first. */
	assert_int_equal(collect_poll(c, 35, record, NULL), 4);
	assert_string_equal(got(), "d1/a.log line-0003\nd1/a.log line-0004\n"
				   "d1/a.log line-0005\nd1/a.log line-0006\n");
	assert_int_equal(collect_poll(c, 1000, record, NULL), 3);
	assert_string_equal(got(), "d1/a.log line-0007\nd1/a.log line-0008\n"
				   "d1/a.log line-0009\n");
	assert_int_equal(collect_poll(c, 0, record, NULL), 0);

	/* A backlog does not starve the others: the next look starts with
	 * the file after the one that ran out. */
	append("d1/a.log", text);
	put("d1/b.log", "b-1\n");
	assert_int_equal(collect_poll(c, 25, record, NULL), 2);
	assert_string_equal(got(), "d1/a.log line-0000\nd1/a.log line-0001\n");
	append("d1/b.log", "b-2\n");
	assert_int_equal(collect_poll(c, 25, record, NULL), 4);
	assert_string_equal(got(), "d1/b.log b-1\nd1/b.log b-2\n"
				   "d1/a.log line-0002\nd1/a.log line-0003\n");
	poll_is(c, "d1/a.log line-0004\nd1/a.log line-0005\n"
		   "d1/a.log line-0006\nd1/a.log line-0007\n"
		   "d1/a.log line-0008\nd1/a.log line-0009\n");
	assert_int_equal(stats(c).bytes, 208);
	collect_free(c);
}

static void test_long_lines_cut(void **state)
{
	struct collect *c = open_c("d1", 8);
	struct collect_stats s;

	(void)state;
	put("d1/a.log", "0123456789abc\nshort\n12345678\n123456789\n");
	poll_is(c, "d1/a.log 01234567~\nd1/a.log short\nd1/a.log 12345678\n"
		   "d1/a.log 12345678~\n");
	/* Cut as soon as it is too long; the rest skipped across looks. */
	append("d1/a.log", "ABCDEFGHIJ");
	poll_is(c, "d1/a.log ABCDEFGH~\n");
	append("d1/a.log", "KLMNOPQRSTUVWXYZ");
	poll_is(c, "");
	append("d1/a.log", "0123\nnext\n");
	poll_is(c, "d1/a.log next\n");
	/* Held part and new part together too long. */
	append("d1/a.log", "abc");
	poll_is(c, "");
	append("d1/a.log", "defghijk\nexactly8\n");
	poll_is(c, "d1/a.log abcdefgh~\nd1/a.log exactly8\n");
	s = stats(c);
	assert_int_equal(s.lines, 8);
	assert_int_equal(s.truncated, 4);

	/* A restart inside a cut line goes on skipping it. */
	append("d1/a.log", "XXXXXXXXXXX");
	poll_is(c, "d1/a.log XXXXXXXX~\n");
	collect_free(c);
	append("d1/a.log", "YY\nafter\n");
	c = open_c("d1", 8);
	poll_is(c, "d1/a.log after\n");
	collect_free(c);
	assert_string_equal(logged(), "");
}

static void test_what_is_collected(void **state)
{
	struct collect *c;
	const char *g;

	(void)state;
	put("d1/b.log", "b\n");
	put("d1/a.log", "a\n");
	put("d1/notes.txt", "not a log\n");
	put("d1/a.log.1", "rotated copy\n");
	put("d1/.log", "no name\n");
	assert_int_equal(mkdir(at("d1/sub.log"), 0700), 0);
	put("d1/sub.log/inner.log", "in a subdirectory\n");
	assert_int_equal(symlink(at("d1/a.log"), at("d1/link.log")), 0);
	assert_int_equal(symlink(at("d2/x"), at("d1/dangling.log")), 0);
	assert_int_equal(link(at("d1/b.log"), at("d1/hard.log")), 0);
	assert_int_equal(mkfifo(at("d1/fifo.log"), 0600), 0);
	put("d2/c.log", "c\n");
	c = open_c("d1 d2", 100);
	/* The hard link's two names: one of them, once. */
	assert_int_equal(collect_poll(c, 1 << 20, record, NULL), 3);
	g = got();
	assert_true(!strcmp(g, "d1/a.log a\nd1/b.log b\nd2/c.log c\n") ||
		    !strcmp(g, "d1/a.log a\nd1/hard.log b\nd2/c.log c\n"));
	assert_int_equal(stats(c).files, 3);
	append("d2/c.log", "c2\n");
	append("d1/a.log", "a2\n");
	poll_is(c, "d1/a.log a2\nd2/c.log c2\n");
	collect_free(c);
	assert_string_equal(logged(), "");
}

static void test_rotation_by_rename(void **state)
{
	struct collect *c = open_c("d1", 100);
	int w = open(at("d1/app.log"), O_WRONLY | O_CREAT | O_APPEND, 0600);

	(void)state;
	assert_true(w >= 0);
	write_all(w, "1\n");
	poll_is(c, "d1/app.log 1\n");

	/* Renamed away, the application still writes to it: read on
	 * through the open descriptor while no new file exists. */
	assert_int_equal(rename(at("d1/app.log"), at("d1/app.log.1")), 0);
	write_all(w, "2\n");
	poll_is(c, "d1/app.log 2\n");
	write_all(w, "3\npart");
	put("d1/app.log", "4\n");
	/* Old file first, its last line as it is, then the new one. */
	poll_is(c, "d1/app.log 3\nd1/app.log part\nd1/app.log 4\n");
	assert_int_equal(stats(c).files, 1);
	close(w);

	/* No look between the rename and the new file. */
	w = open(at("d1/app.log"), O_WRONLY | O_APPEND);
	assert_true(w >= 0);
	assert_int_equal(rename(at("d1/app.log"), at("d1/app.log.1")), 0);
	write_all(w, "b1\n");
	put("d1/app.log", "b2\n");
	write_all(w, "b3\n");
	poll_is(c, "d1/app.log b1\nd1/app.log b3\nd1/app.log b2\n");
	close(w);

	/* logrotate's "create": an empty new file at once; the old one is
	 * read on until the application writes to the new one. */
	w = open(at("d1/app.log"), O_WRONLY | O_APPEND);
	assert_true(w >= 0);
	assert_int_equal(rename(at("d1/app.log"), at("d1/app.log.1")), 0);
	put("d1/app.log", "");
	write_all(w, "c1\n");
	poll_is(c, "d1/app.log c1\n");
	write_all(w, "c2\n");
	poll_is(c, "d1/app.log c2\n");
	close(w);
	append("d1/app.log", "c3\n");
	poll_is(c, "d1/app.log c3\n");

	/* Renamed to another watched name: followed there, not read again. */
	w = open(at("d1/app.log"), O_WRONLY | O_APPEND);
	assert_true(w >= 0);
	assert_int_equal(rename(at("d1/app.log"), at("d1/app-old.log")), 0);
	write_all(w, "d1\n");
	put("d1/app.log", "d2\n");
	poll_is(c, "d1/app-old.log d1\nd1/app.log d2\n");
	write_all(w, "d3\n");
	poll_is(c, "d1/app-old.log d3\n");
	close(w);
	assert_int_equal(stats(c).files, 2);
	assert_int_equal(stats(c).errors, 0);
	collect_free(c);
	assert_string_equal(logged(), "");
}

static void test_rotation_by_truncation(void **state)
{
	struct collect *c = open_c("d1", 100);

	(void)state;
	put("d1/a.log", "aaaa\nbbbb\n");
	poll_is(c, "d1/a.log aaaa\nd1/a.log bbbb\n");
	put("d1/a.log", "x\n");
	poll_is(c, "d1/a.log x\n");
	/* A held last line is delivered as it is. */
	append("d1/a.log", "tail");
	poll_is(c, "");
	put("d1/a.log", "new\n");
	poll_is(c, "d1/a.log tail\nd1/a.log new\n");
	/* Truncated to 0 and written again past nothing: from 0. */
	put("d1/a.log", "");
	poll_is(c, "");
	append("d1/a.log", "again\n");
	poll_is(c, "d1/a.log again\n");
	collect_free(c);
}

static void test_rotation_by_delete(void **state)
{
	struct collect *c = open_c("d1", 100);

	(void)state;
	put("d1/a.log", "1\n");
	poll_is(c, "d1/a.log 1\n");
	/* Written, deleted and created again between two looks: the deleted
	 * file's last lines are read through the open descriptor. */
	append("d1/a.log", "2\n3");
	assert_int_equal(unlink(at("d1/a.log")), 0);
	put("d1/a.log", "4\n");
	poll_is(c, "d1/a.log 2\nd1/a.log 3\nd1/a.log 4\n");
	assert_int_equal(stats(c).files, 1);
	/* Deleted, no new file: read to its end and forgotten. */
	append("d1/a.log", "5\n");
	assert_int_equal(unlink(at("d1/a.log")), 0);
	poll_is(c, "d1/a.log 5\n");
	assert_int_equal(stats(c).files, 0);
	poll_is(c, "");
	put("d1/a.log", "6\n");
	poll_is(c, "d1/a.log 6\n");
	collect_free(c);
	assert_string_equal(logged(), "");
}

static void test_restart_resumes(void **state)
{
	struct collect *c = open_c("d1", 100);
	char text[4096];
	size_t len;
	ino_t before;

	(void)state;
	put("d1/a.log", "1\n2\npar");
	put("d1/b.log", "x\n");
	put("d1/c.log", "c-old\n");
	put("d1/d.log", "d\n");
	poll_is(c, "d1/a.log 1\nd1/a.log 2\nd1/b.log x\nd1/c.log c-old\n"
		   "d1/d.log d\n");
	/* Nothing changed: the state is not written again. */
	before = inode_of("state");
	poll_is(c, "");
	assert_int_equal(inode_of("state"), before);
	collect_free(c);
	assert_int_equal(inode_of("state"), before);

	/* Down: a gets more, b is rotated (a new inode under the name), c
	 * deleted and made again (its inode number may well be reused:
	 * the first bytes tell). */
	append("d1/a.log", "tial\n3\n");
	assert_int_equal(rename(at("d1/b.log"), at("d1/b.log.1")), 0);
	put("d1/b.log", "y\n");
	assert_int_equal(unlink(at("d1/c.log")), 0);
	put("d1/c.log", "c-new-1\nc-new-2\n");
	assert_int_equal(unlink(at("d1/d.log")), 0);
	c = open_c("d1", 100);
	poll_is(c, "d1/a.log partial\nd1/a.log 3\nd1/b.log y\n"
		   "d1/c.log c-new-1\nd1/c.log c-new-2\n");
	/* The deleted file's position is not kept on. */
	assert_int_equal(state_read(at("state"), text, sizeof(text) - 1, &len),
			 ERR_OK);
	text[len] = '\0';
	assert_null(strstr(text, "d.log"));
	assert_non_null(strstr(text, "c.log"));
	collect_free(c);

	/* A restart with nothing new repeats nothing. */
	c = open_c("d1", 100);
	poll_is(c, "");
	append("d1/b.log", "z\n");
	poll_is(c, "d1/b.log z\n");
	assert_int_equal(stats(c).errors, 0);
	collect_free(c);
	c = open_c("d1", 100);
	poll_is(c, "");
	collect_free(c);
}

static void test_missing_dir_appears(void **state)
{
	struct collect *c = open_c("d1 d3", 100);

	(void)state;
	put("d1/a.log", "a\n");
	poll_is(c, "d1/a.log a\n");
	logged_is_at("error collect: $/d3: cannot read: No such file or "
		     "directory\n", dir);
	poll_is(c, "");
	assert_string_equal(logged(), "");	/* once */
	assert_int_equal(stats(c).errors, 1);
	assert_int_equal(mkdir(at("d3"), 0700), 0);
	put("d3/x.log", "x\n");
	poll_is(c, "d3/x.log x\n");
	logged_is_at("info  collect: $/d3: readable now\n", dir);
	assert_int_equal(stats(c).files, 2);
	collect_free(c);

	/* A directory that is a file: the same. */
	put("d4", "");
	c = open_c("d4", 100);
	poll_is(c, "");
	poll_is(c, "");
	logged_is_at("error collect: $/d4: cannot read: Not a directory\n",
		     dir);
	collect_free(c);
}

static void test_damaged_state(void **state)
{
	struct collect *c;
	static char big[COLLECT_REREAD_MAX + 64];
	char text[4096];
	size_t len;

	(void)state;
	put("d1/small.log", "s1\ns2\n");
	memset(big, 'b', sizeof(big));
	for (size_t i = 99; i < sizeof(big); i += 100)
		big[i] = '\n';
	big[sizeof(big) - 1] = '\0';	/* ends inside a line */
	put("d1/big.log", big);
	put("state", "garbage\n");
	c = open_c("d1", 100);
	logged_is_at("error collect: $/state: line 1 damaged; files it does "
		     "not list start at 0 below 1048576 bytes, else at their "
		     "end\n", dir);
	/* The small file from 0, the big one from its next line start. */
	poll_is(c, "d1/small.log s1\nd1/small.log s2\n");
	logged_is_at("info  collect: $/d1/big.log: no saved position; its "
		     "1048639 bytes are left out\n", dir);
	append("d1/big.log", "bbb\nfresh\n");
	poll_is(c, "d1/big.log fresh\n");
	assert_int_equal(stats(c).errors, 1);
	collect_free(c);

	/* One bad line: the good ones are still used. */
	assert_int_equal(state_read(at("state"), text, sizeof(text) - 64, &len),
			 ERR_OK);
	memcpy(text + len, "12 x 0 0 0 /y\n", 14);
	assert_int_equal(state_write(at("state"), text, len + 14), ERR_OK);
	append("d1/small.log", "s3\n");
	c = open_c("d1", 100);
	logged_is_at("error collect: $/state: line 4 damaged; files it does "
		     "not list start at 0 below 1048576 bytes, else at their "
		     "end\n", dir);
	poll_is(c, "d1/small.log s3\n");
	collect_free(c);

	/* Not a file at all. */
	assert_int_equal(unlink(at("state")), 0);
	assert_int_equal(mkdir(at("state"), 0700), 0);
	append("d1/small.log", "s4\n");
	c = open_c("d1", 100);
	poll_is(c, "d1/small.log s1\nd1/small.log s2\nd1/small.log s3\n"
		   "d1/small.log s4\n");
	assert_int_equal(stats(c).errors, 2);	/* and the write fails */
	collect_free(c);
	(void)logged();
}

static void test_state_unwritable(void **state)
{
	struct collect *c = NULL;
	char sp[128];

	(void)state;
	snprintf(sp, sizeof(sp), "%s/none/state", dir);
	assert_int_equal(collect_new(at("d1"), sp, 100, &c), ERR_OK);
	put("d1/a.log", "1\n");
	poll_is(c, "d1/a.log 1\n");
	logged_is_at("error state: $/none: cannot open directory: No such "
		     "file or directory\n", dir);
	/* Not tried again at once: logged once. */
	append("d1/a.log", "2\n");
	poll_is(c, "d1/a.log 2\n");
	assert_string_equal(logged(), "");
	assert_int_equal(stats(c).errors, 1);
	/* The last try, at the end. */
	collect_free(c);
	logged_is_at("error state: $/none: cannot open directory: No such "
		     "file or directory\n", dir);
}

/* The part of test_unreadable_file that runs without root's rights (root
 * opens a mode 000 file anyway): 0 if all went as expected, else the line
 * that did not (cmocka's asserts do not work in a child). */
static int unreadable_scenario(void)
{
	struct collect *c = NULL;
	char sp[128];

#define CHECK(x) do { if (!(x)) return __LINE__; } while (0)
	snprintf(sp, sizeof(sp), "%s/d1/state", dir);
	CHECK(collect_new(at("d1"), sp, 100, &c) == ERR_OK);
	put("d1/a.log", "a\n");
	put("d1/b.log", "b\n");
	CHECK(chmod(at("d1/a.log"), 0) == 0);
	CHECK(collect_poll(c, 1 << 20, record, NULL) == 1);
	CHECK(!strcmp(got(), "d1/b.log b\n"));
	CHECK(collect_poll(c, 1 << 20, record, NULL) == 0);
	CHECK(stats(c).files == 1 && stats(c).errors == 1);
	CHECK(chmod(at("d1/a.log"), 0600) == 0);
	CHECK(collect_poll(c, 1 << 20, record, NULL) == 1);
	CHECK(!strcmp(got(), "d1/a.log a\n"));
	CHECK(stats(c).files == 2 && stats(c).errors == 1);
	collect_free(c);
	return 0;
#undef CHECK
}

static void test_unreadable_file(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	/* The child, as nobody if we are root, needs its way in. */
	assert_int_equal(chmod(dir, 0711), 0);
	assert_int_equal(chmod(at("d1"), 0777), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setgid(65534) != 0 ||
				       setuid(65534) != 0))
			_exit(1);
		_exit(unreadable_scenario());
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* Logged once, not at every look. */
	logged_is_at("error collect: $/d1/a.log: cannot open: Permission "
		     "denied\ninfo  collect: $/d1/a.log: readable now\n", dir);
}

static void test_file_cap(void **state)
{
	struct collect *c = open_c("d1", 100);
	char name[32];

	(void)state;
	for (int i = 0; i < 70; i++) {
		snprintf(name, sizeof(name), "d1/f%02d.log", i);
		put(name, "l\n");
	}
	assert_int_equal(collect_poll(c, 1 << 20, record, NULL), 64);
	(void)got();
	assert_int_equal(stats(c).files, 64);
	logged_is_at("error collect: more than 64 log files; $/d1/f64.log and "
		     "5 more left out\n", dir);
	poll_is(c, "");
	assert_string_equal(logged(), "");
	/* Room again: the ones left out come in (the last names). */
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "d1/f%02d.log", i);
		assert_int_equal(unlink(at(name)), 0);
	}
	poll_is(c, "d1/f64.log l\nd1/f65.log l\nd1/f66.log l\n"
		   "d1/f67.log l\nd1/f68.log l\nd1/f69.log l\n");
	assert_int_equal(stats(c).files, 60);
	assert_int_equal(stats(c).errors, 1);
	collect_free(c);
	assert_string_equal(logged(), "");
}

static void test_bad_arguments(void **state)
{
	struct collect *c = NULL;
	char many[512] = "", longdir[COLLECT_DIR_MAX + 8];

	(void)state;
	assert_int_equal(collect_new("relative/dir", at("state"), 100, &c),
			 ERR_INVAL);
	logged_is_at("error collect: relative/dir: not an absolute path\n", "");
	assert_int_equal(collect_new("/a /b/ /a/", at("state"), 100, &c),
			 ERR_INVAL);
	logged_is_at("error collect: /a: listed twice\n", "");
	assert_int_equal(collect_new("  ", at("state"), 100, &c), ERR_INVAL);
	assert_int_equal(collect_new("/a", at("state"), 0, &c), ERR_INVAL);
	assert_int_equal(collect_new("/a", at("state"),
				     COLLECT_LINE_LIMIT + 1, &c), ERR_INVAL);
	assert_int_equal(collect_new("/a", "", 100, &c), ERR_INVAL);
	assert_int_equal(collect_new(NULL, at("state"), 100, &c), ERR_INVAL);
	assert_int_equal(collect_new("/a", at("state"), 100, NULL), ERR_INVAL);
	for (int i = 0; i <= COLLECT_DIRS_MAX; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many),
			 " /d%d", i);
	assert_int_equal(collect_new(many, at("state"), 100, &c), ERR_INVAL);
	memset(longdir, 'x', sizeof(longdir) - 1);
	longdir[0] = '/';
	longdir[sizeof(longdir) - 1] = '\0';
	assert_int_equal(collect_new(longdir, at("state"), 100, &c), ERR_INVAL);
	assert_null(c);
	/* At the limits. */
	many[strlen(many) - 4] = '\0';
	longdir[COLLECT_DIR_MAX] = '\0';
	assert_int_equal(collect_new(many, at("state"), COLLECT_LINE_LIMIT, &c),
			 ERR_OK);
	collect_free(c);
	assert_int_equal(collect_new(longdir, at("state"), 1, &c), ERR_OK);
	collect_free(c);
	assert_int_equal(collect_poll(NULL, 100, record, NULL), 0);
	collect_free(NULL);
	(void)logged();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lines_once_in_order,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_line_waits, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_max_bytes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_long_lines_cut, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_what_is_collected, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rotation_by_rename, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rotation_by_truncation,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_by_delete, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_restart_resumes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_missing_dir_appears,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_state, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_state_unwritable, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_cap, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
