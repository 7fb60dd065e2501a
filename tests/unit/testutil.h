/*
 * testutil.h — helpers the unit tests of the persistent modules share:
 * read back what a module logged (without timestamps) to assert on exact
 * error lines, list a state directory, and make and remove a test's own
 * temporary directory. Include after cmocka.h and log.h.
 */
#ifndef COMAGENT_TEST_TESTUTIL_H
#define COMAGENT_TEST_TESTUTIL_H

#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TS_LEN 25	/* "2026-11-23T10:51:06.854Z " before each line */

static char logpath[80];

__attribute__((unused)) static void log_start(void)
{
	assert_int_equal(log_open(logpath, 1 << 20, LOG_LVL_INFO, false),
			 ERR_OK);
}

/* What was logged since the last call, without the timestamps; the log
 * then starts afresh. */
__attribute__((unused)) static const char *logged(void)
{
	static char out[8192];
	char line[1200];
	size_t n = 0;
	FILE *f;

	log_close();
	out[0] = '\0';
	f = fopen(logpath, "r");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			size_t len = strlen(line);

			assert_true(len > TS_LEN);
			assert_true(n + len - TS_LEN < sizeof(out));
			memcpy(out + n, line + TS_LEN, len - TS_LEN + 1);
			n += len - TS_LEN;
		}
		fclose(f);
		unlink(logpath);
	}
	log_start();
	return out;
}

/* Asserts that what was logged is expected with every '$' replaced by
 * path (the file the module complained about). */
__attribute__((unused)) static void logged_is_at(const char *expected, const char *path)
{
	static char want[8192];
	size_t k = 0, plen = strlen(path);

	for (const char *s = expected; *s; s++) {
		assert_true(k + plen + 1 < sizeof(want));
		if (*s == '$') {
			memcpy(want + k, path, plen);
			k += plen;
		} else {
			want[k++] = *s;
		}
	}
	want[k] = '\0';
	assert_string_equal(logged(), want);
}

/* The names in dir, sorted, each followed by ' '. */
__attribute__((unused)) static const char *dir_entries(const char *dir)
{
	static char out[1024];
	struct dirent **list;
	size_t n = 0;
	int cnt = scandir(dir, &list, NULL, alphasort);

	assert_true(cnt >= 0);
	out[0] = '\0';
	for (int i = 0; i < cnt; i++) {
		if (strcmp(list[i]->d_name, ".") &&
		    strcmp(list[i]->d_name, ".."))
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%s ",
					      list[i]->d_name);
		free(list[i]);
	}
	free(list);
	return out;
}

/* Removes p and everything under it (what a test made, whatever the test
 * left in it, modes included). */
__attribute__((unused)) static void rm_tree(const char *p)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	char sub[512];

	if (lstat(p, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(p);
		return;
	}
	chmod(p, 0700);
	d = opendir(p);
	if (d) {
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", p, e->d_name);
			rm_tree(sub);
		}
		closedir(d);
	}
	rmdir(p);
}

/* A test's own fresh directory /tmp/test_NAME.XXXXXX in dir (cap bytes),
 * its log beside it (DIR.log), logging started; -1 if it cannot be made. */
__attribute__((unused)) static int test_dir_setup(const char *name, char *dir,
						  size_t cap)
{
	snprintf(dir, cap, "/tmp/test_%s.XXXXXX", name);
	if (!mkdtemp(dir))
		return -1;
	snprintf(logpath, sizeof(logpath), "%s.log", dir);
	log_start();
	return 0;
}

/* The other half: logging stopped, the log and the directory gone. */
__attribute__((unused)) static int test_dir_teardown(const char *dir)
{
	log_close();
	unlink(logpath);
	rm_tree(dir);
	return 0;
}

#endif
