/*
 * logcapture.h — for unit tests: read back what a module logged (without
 * the timestamps), so tests assert on the exact error lines. Include after
 * cmocka.h and log.h; set logpath, then log_start().
 */
#ifndef COMAGENT_TEST_LOGCAPTURE_H
#define COMAGENT_TEST_LOGCAPTURE_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define TS_LEN 25	/* "2026-11-23T10:51:06.854Z " before each line */

static char logpath[80];

static void log_start(void)
{
	assert_int_equal(log_open(logpath, 1 << 20, LOG_LVL_INFO, false),
			 ERR_OK);
}

/* What was logged since the last call, without the timestamps; the log
 * then starts afresh. */
static const char *logged(void)
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

#endif
