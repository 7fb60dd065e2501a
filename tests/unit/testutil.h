/*
 * testutil.h — helpers the unit tests of the persistent modules share:
 * read back what a module logged (without timestamps) to assert on exact
 * error lines, and list a state directory. Include after cmocka.h and
 * log.h; set logpath, then log_start().
 */
#ifndef COMAGENT_TEST_TESTUTIL_H
#define COMAGENT_TEST_TESTUTIL_H

#include <dirent.h>
#include <stdio.h>
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

#endif
