/*
 * test_state — crash-safe small files: round trips, size caps, and that a
 * failed or concurrent write never leaves a torn file or a PATH.tmp behind.
 *
 * Each test works in its own temp directory; the log goes to a file next to
 * it so that the exact error lines can be checked. The tests run as root
 * too, where a read-only directory does not stop a write: failures are made
 * with PATH.tmp being a directory or a symlink instead.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
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
#include "state.h"


static char dir[64], path[128], tmp[136];

/* printf into a static buffer, for expected log text. */
__attribute__((format(printf, 1, 2)))
static const char *fmt(const char *f, ...)
{
	static char buf[1024];
	va_list ap;

	va_start(ap, f);
	vsnprintf(buf, sizeof(buf), f, ap);
	va_end(ap);
	return buf;
}

static const char *entries(void)
{
	return dir_entries(dir);
}

static void put(const char *p, const char *text, mode_t mode)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* The file at p must hold exactly text. */
static void holds(const char *p, const char *text)
{
	char buf[256];
	size_t len = 99;

	assert_int_equal(state_read(p, buf, sizeof(buf), &len), ERR_OK);
	assert_int_equal(len, strlen(text));
	assert_memory_equal(buf, text, len);
}

static int setup(void **state)
{
	(void)state;
	if (test_dir_setup("state", dir, sizeof(dir)))
		return -1;
	snprintf(path, sizeof(path), "%s/file", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return test_dir_teardown(dir);
}

static void test_round_trip(void **state)
{
	static const char data[] = "hello\0world\n";
	char buf[64];
	size_t len = 0;
	struct stat st;

	(void)state;
	assert_int_equal(state_write(path, data, sizeof(data) - 1), ERR_OK);
	assert_int_equal(state_read(path, buf, sizeof(buf), &len), ERR_OK);
	assert_int_equal(len, sizeof(data) - 1);
	assert_memory_equal(buf, data, len);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_string_equal(entries(), "file ");
	assert_string_equal(logged(), "");
}

static void test_overwrite(void **state)
{
	char buf[8];
	size_t len = 99;

	(void)state;
	assert_int_equal(state_write(path, "the first, longer version", 25),
			 ERR_OK);
	assert_int_equal(state_write(path, "2nd", 3), ERR_OK);
	holds(path, "2nd");
	/* Empty is a content too. */
	assert_int_equal(state_write(path, NULL, 0), ERR_OK);
	assert_int_equal(state_read(path, buf, sizeof(buf), &len), ERR_OK);
	assert_int_equal(len, 0);
	assert_string_equal(entries(), "file ");
	assert_string_equal(logged(), "");
}

/* A PATH.tmp a crash left behind, bigger and world-readable: reused. */
static void test_stale_tmp(void **state)
{
	struct stat st;

	(void)state;
	put(path, "old", 0600);
	put(tmp, "half-written leftover of a crashed write", 0666);
	assert_int_equal(state_write(path, "new", 3), ERR_OK);
	holds(path, "new");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_string_equal(entries(), "file ");
	assert_string_equal(logged(), "");
}

static void test_missing(void **state)
{
	char buf[8];
	size_t len = 99;

	(void)state;
	assert_int_equal(state_read(path, buf, sizeof(buf), &len),
			 ERR_NOTFOUND);
	assert_int_equal(len, 0);
	/* Not an error: callers have a default. */
	assert_string_equal(logged(), "");
}

static void test_too_big(void **state)
{
	char buf[100];
	size_t len = 99;

	(void)state;
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(state_write(path, buf, sizeof(buf)), ERR_OK);
	assert_int_equal(state_read(path, buf, 99, &len), ERR_LIMIT);
	assert_int_equal(len, 0);
	assert_string_equal(logged(), fmt("error state: %s: bigger than 99 "
					  "bytes\n", path));
	assert_int_equal(state_read(path, buf, sizeof(buf), &len), ERR_OK);
	assert_int_equal(len, 100);
	assert_int_equal(state_read(path, NULL, 0, &len), ERR_LIMIT);
	assert_string_equal(logged(), fmt("error state: %s: bigger than 0 "
					  "bytes\n", path));
	assert_int_equal(state_write(path, "", 0), ERR_OK);
	assert_int_equal(state_read(path, NULL, 0, &len), ERR_OK);
	assert_int_equal(len, 0);
}

static void test_read_errors(void **state)
{
	char buf[8], sub[160];
	size_t len = 99;

	(void)state;
	assert_int_equal(state_read(dir, buf, sizeof(buf), &len), ERR_IO);
	assert_string_equal(logged(), fmt("error state: %s: not a regular "
					  "file\n", dir));
	/* A FIFO does not hang the reader. */
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(state_read(path, buf, sizeof(buf), &len), ERR_IO);
	assert_string_equal(logged(), fmt("error state: %s: not a regular "
					  "file\n", path));
	unlink(path);
	put(path, "x", 0600);
	snprintf(sub, sizeof(sub), "%s/below", path);
	assert_int_equal(state_read(sub, buf, sizeof(buf), &len), ERR_IO);
	assert_string_equal(logged(), fmt("error state: %s: cannot open: "
					  "Not a directory\n", sub));
	assert_int_equal(len, 0);
}

/* PATH.tmp cannot be made: the write fails, PATH keeps what it had. */
static void test_failed_write_keeps_original(void **state)
{
	(void)state;
	assert_int_equal(state_write(path, "original", 8), ERR_OK);
	assert_int_equal(mkdir(tmp, 0700), 0);
	assert_int_equal(state_write(path, "replacement", 11), ERR_IO);
	assert_string_equal(logged(), fmt("error state: %s: cannot create: "
					  "Is a directory\n", tmp));
	holds(path, "original");
	assert_int_equal(rmdir(tmp), 0);
	assert_string_equal(entries(), "file ");
}

/* A symlink planted at PATH.tmp is not followed to its target. */
static void test_tmp_symlink_not_followed(void **state)
{
	char target[160];

	(void)state;
	snprintf(target, sizeof(target), "%s/target", dir);
	put(target, "precious", 0600);
	put(path, "original", 0600);
	assert_int_equal(symlink(target, tmp), 0);
	assert_int_equal(state_write(path, "evil", 4), ERR_IO);
	assert_string_equal(logged(), fmt("error state: %s: cannot create: "
					  "Too many levels of symbolic "
					  "links\n", tmp));
	holds(target, "precious");
	holds(path, "original");
}

static void test_unwritable_dir(void **state)
{
	char sub[160];

	(void)state;
	snprintf(sub, sizeof(sub), "%s/nonexistent/file", dir);
	assert_int_equal(state_write(sub, "x", 1), ERR_IO);
	snprintf(sub, sizeof(sub), "%s/nonexistent", dir);
	assert_string_equal(logged(), fmt("error state: %s: cannot open "
					  "directory: No such file or "
					  "directory\n", sub));
	put(path, "original", 0600);
	if (geteuid() == 0)
		return;	/* root writes into a read-only directory anyway */
	assert_int_equal(chmod(dir, 0500), 0);
	assert_int_equal(state_write(path, "replacement", 11), ERR_IO);
	assert_string_equal(logged(), fmt("error state: %s: cannot create: "
					  "Permission denied\n", tmp));
	assert_int_equal(chmod(dir, 0700), 0);
	holds(path, "original");
	assert_string_equal(entries(), "file ");
}

/* A relative path: the directory synced is ".". */
static void test_relative_path(void **state)
{
	char cwd[4096];

	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(state_write("rel", "r", 1), ERR_OK);
	holds("rel", "r");
	assert_int_equal(chdir(cwd), 0);
	assert_string_equal(entries(), "rel ");
	assert_string_equal(logged(), "");
}

/* mkdir -p: parents made, an existing tree fine, a file in the way not. */
static void test_mkdirs(void **state)
{
	char deep[192], file_in_way[192];
	struct stat st;

	(void)state;
	snprintf(deep, sizeof(deep), "%s/a/b/c", dir);
	assert_int_equal(state_mkdirs(deep, 0700), ERR_OK);
	assert_int_equal(stat(deep, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(state_mkdirs(deep, 0700), ERR_OK);
	assert_int_equal(state_write(path, "x", 1), ERR_OK);
	assert_int_equal(state_mkdirs(path, 0700), ERR_IO);
	snprintf(file_in_way, sizeof(file_in_way), "%s/sub", path);
	assert_int_equal(state_mkdirs(file_in_way, 0700), ERR_IO);
	assert_int_equal(state_mkdirs("", 0700), ERR_INVAL);
	assert_int_equal(state_mkdirs(NULL, 0700), ERR_INVAL);
}

static void test_bad_arguments(void **state)
{
	static char longp[STATE_PATH_MAX + 2];
	char buf[8];
	size_t len;

	(void)state;
	assert_int_equal(state_write(NULL, "x", 1), ERR_INVAL);
	assert_int_equal(state_write(path, NULL, 1), ERR_INVAL);
	assert_int_equal(state_write("", "x", 1), ERR_INVAL);
	assert_int_equal(state_read(NULL, buf, sizeof(buf), &len), ERR_INVAL);
	assert_int_equal(state_read(path, buf, sizeof(buf), NULL), ERR_INVAL);
	assert_int_equal(state_read(path, NULL, 1, &len), ERR_INVAL);
	(void)logged();
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	assert_int_equal(state_write(longp, "x", 1), ERR_INVAL);
	assert_string_equal(logged(), fmt("error state: %.64s...: path too "
					  "long (max %d characters)\n", longp,
					  STATE_PATH_MAX));
}

/*
 * Two processes write one file over and over while this one reads it:
 * every read finds one of the two contents whole, and at the end no
 * PATH.tmp is left. (Different lengths, so a mix would show.)
 */
static void test_concurrent_writers(void **state)
{
	static const char *const text[2] = {
		"first writer's rather long contents\n", "second's\n"
	};
	pid_t pid[2];
	int status, reads = 0, running = 2;

	(void)state;
	assert_int_equal(state_write(path, text[0], strlen(text[0])), ERR_OK);
	for (int w = 0; w < 2; w++) {
		pid[w] = fork();
		assert_true(pid[w] >= 0);
		if (pid[w] == 0) {
			for (int i = 0; i < 60; i++)
				if (state_write(path, text[w],
						strlen(text[w])) != ERR_OK)
					_exit(1);
			_exit(0);
		}
	}
	while (running > 0 || reads < 10) {
		char buf[64];
		size_t len;

		assert_int_equal(state_read(path, buf, sizeof(buf), &len),
				 ERR_OK);
		assert_true((len == strlen(text[0]) &&
			     !memcmp(buf, text[0], len)) ||
			    (len == strlen(text[1]) &&
			     !memcmp(buf, text[1], len)));
		reads++;
		for (int w = 0; w < 2; w++) {
			if (pid[w] <= 0 ||
			    waitpid(pid[w], &status, WNOHANG) != pid[w])
				continue;
			assert_true(WIFEXITED(status));
			assert_int_equal(WEXITSTATUS(status), 0);
			pid[w] = 0;
			running--;
		}
	}
	assert_string_equal(entries(), "file ");
	assert_string_equal(logged(), "");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_round_trip),
		T(test_overwrite),
		T(test_stale_tmp),
		T(test_missing),
		T(test_too_big),
		T(test_read_errors),
		T(test_failed_write_keeps_original),
		T(test_tmp_symlink_not_followed),
		T(test_unwritable_dir),
		T(test_relative_path),
		T(test_mkdirs),
		T(test_bad_arguments),
		T(test_concurrent_writers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
