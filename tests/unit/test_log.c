/*
 * test_log — the diagnostic log: line format, level filter, and the byte cap
 * over the current file and its one rotated copy.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define LOG_MODULE "test"

static char dir[64];
static char path[128], rotated[132];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_log.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/agent.log", dir);
	snprintf(rotated, sizeof(rotated), "%s.1", path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_close();
	unlink(path);
	unlink(rotated);
	rmdir(dir);
	return 0;
}

static long fsize(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static char *slurp(const char *p)
{
	static char buf[65536];
	FILE *f = fopen(p, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_level_parse(void **state)
{
	(void)state;
	assert_int_equal(log_level_parse("error"), LOG_LVL_ERROR);
	assert_int_equal(log_level_parse("info"), LOG_LVL_INFO);
	assert_int_equal(log_level_parse("debug"), LOG_LVL_DEBUG);
	assert_int_equal(log_level_parse("Info"), -1);
	assert_int_equal(log_level_parse(""), -1);
	assert_int_equal(log_level_parse(NULL), -1);
}

static void test_format_and_filter(void **state)
{
	char *text;

	(void)state;
	assert_int_equal(log_open(path, 1 << 20, LOG_LVL_INFO, false), ERR_OK);
	LOGE("disk %s", "full");
	LOGI("connected\n");	/* a trailing newline is not doubled */
	LOGD("not shown");
	log_close();
	text = slurp(path);
	/* 2026-11-23T10:51:06.854Z error test: disk full */
	assert_int_equal(strlen(text), 2 * 25 + strlen("error test: disk full\n") +
			 strlen("info  test: connected\n"));
	assert_true(text[4] == '-' && text[10] == 'T' && text[23] == 'Z');
	assert_non_null(strstr(text, "Z error test: disk full\n"));
	assert_non_null(strstr(text, "Z info  test: connected\n"));
	assert_null(strstr(text, "not shown"));
}

static void test_cap_holds_over_rotation(void **state)
{
	const long cap = 4096;
	char *text;

	(void)state;
	assert_int_equal(log_open(path, (uint64_t)cap, LOG_LVL_DEBUG, false),
			 ERR_OK);
	for (int i = 0; i < 1000; i++) {
		LOGI("line %04d with some padding to make it longer", i);
		assert_true(fsize(path) + (fsize(rotated) > 0 ? fsize(rotated) : 0)
			    <= cap);
	}
	log_close();
	assert_true(fsize(rotated) > cap / 4);
	text = slurp(path);
	assert_non_null(strstr(text, "line 0999 "));
	assert_null(strstr(text, "line 0000 "));
}

static void test_overlong_line_is_cut_to_the_cap(void **state)
{
	char big[900];

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(log_open(path, 256, LOG_LVL_DEBUG, false), ERR_OK);
	LOGI("%s", big);
	LOGI("%s", big);
	log_close();
	assert_int_equal(fsize(path), 128);
	assert_true(fsize(path) + fsize(rotated) <= 256);
	assert_int_equal(slurp(path)[127], '\n');
}

static void test_unwritable_path(void **state)
{
	(void)state;
	assert_int_equal(log_open("/nonexistent-dir/x.log", 4096, LOG_LVL_INFO,
				  false), ERR_IO);
	LOGE("still safe to call");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_level_parse),
		cmocka_unit_test_setup_teardown(test_format_and_filter, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cap_holds_over_rotation,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_overlong_line_is_cut_to_the_cap, setup, teardown),
		cmocka_unit_test(test_unwritable_path),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
