/*
 * test_settings — the remote-operation settings: secure defaults, set, get,
 * persist and reload across two instances (the daemon and the CLI), each
 * kind of damaged file with its line, and that saving leaves nothing but
 * the settings file behind.
 *
 * Each test has its own state directory; the log goes to a file next to it
 * so that the exact "FILE:LINE: message" lines can be checked.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "testutil.h"
#include "settings.h"
#include "state.h"


static const char all_off[] =
	"centralmgmt=0\nlogtransfer=0\nremoteupgrade=0\nremoteaccess=0\n"
	"externalremoteaccess=0\ncentralcert=0\n";

static char dir[64], path[128];

static void logged_is(const char *expected)
{
	logged_is_at(expected, path);
}

static void put_raw(const char *text, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

static void put(const char *text)
{
	put_raw(text, strlen(text));
}

static const char *file_text(void)
{
	static char buf[SETTINGS_FILE_MAX + 1];
	size_t len;

	assert_int_equal(state_read(path, buf, SETTINGS_FILE_MAX, &len),
			 ERR_OK);
	buf[len] = '\0';
	return buf;
}

static const char *entries(void)
{
	return dir_entries(dir);
}

/* Which settings are on, as a bit set (1 << k). */
static unsigned on_set(const struct settings *s)
{
	unsigned bits = 0;

	for (int k = 0; k < SET__COUNT; k++)
		if (settings_get(s, (enum setting)k))
			bits |= 1u << k;
	return bits;
}

#define BIT(k) (1u << (k))

static int setup(void **state)
{
	(void)state;
	if (test_dir_setup("settings", dir, sizeof(dir)))
		return -1;
	snprintf(path, sizeof(path), "%s/settings", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return test_dir_teardown(dir);
}

static void test_missing_file_all_off(void **state)
{
	struct settings *s = NULL;
	char buf[SETTINGS_TEXT_MAX];

	(void)state;
	assert_int_equal(settings_load(dir, &s), ERR_OK);
	assert_non_null(s);
	assert_int_equal(on_set(s), 0);
	assert_int_equal(settings_render(s, buf, sizeof(buf)),
			 strlen(all_off));
	assert_string_equal(buf, all_off);
	/* Loading writes nothing, and a missing file is no error. */
	assert_string_equal(entries(), "");
	logged_is("");
	settings_free(s);
}

static void test_names_lookup(void **state)
{
	static const char *const names[SET__COUNT] = {
		"centralmgmt", "logtransfer", "remoteupgrade", "remoteaccess",
		"externalremoteaccess", "centralcert"
	};

	(void)state;
	for (int k = 0; k < SET__COUNT; k++) {
		assert_string_equal(settings_name((enum setting)k), names[k]);
		assert_int_equal(settings_lookup(names[k]), k);
	}
	assert_null(settings_name(SET__COUNT));
	assert_null(settings_name((enum setting)-1));
	assert_int_equal(settings_lookup("RemoteAccess"), -1);
	assert_int_equal(settings_lookup("remoteaccess "), -1);
	assert_int_equal(settings_lookup("remote"), -1);
	assert_int_equal(settings_lookup(""), -1);
	assert_int_equal(settings_lookup(NULL), -1);
}

static void test_render(void **state)
{
	struct settings *s = NULL;
	char buf[SETTINGS_TEXT_MAX];
	size_t n;

	(void)state;
	assert_int_equal(settings_load(dir, &s), ERR_OK);
	for (int k = 0; k < SET__COUNT; k++)
		assert_int_equal(settings_set(s, (enum setting)k, true),
				 ERR_OK);
	n = settings_render(s, buf, sizeof(buf));
	assert_string_equal(buf, "centralmgmt=1\nlogtransfer=1\n"
			    "remoteupgrade=1\nremoteaccess=1\n"
			    "externalremoteaccess=1\ncentralcert=1\n");
	assert_int_equal(n, strlen(buf));
	assert_true(n < SETTINGS_TEXT_MAX);
	/* Like snprintf: the whole length, the text cut and terminated. */
	assert_int_equal(settings_render(s, buf, 5), n);
	assert_string_equal(buf, "cent");
	assert_int_equal(settings_render(s, NULL, 0), n);
	assert_int_equal(settings_render(NULL, buf, sizeof(buf)),
			 strlen(all_off));
	assert_string_equal(buf, all_off);
	settings_free(s);
}

/* The daemon and the CLI: one saves, the other reloads. */
static void test_set_persist_reload(void **state)
{
	struct settings *a = NULL, *b = NULL;
	struct stat st;

	(void)state;
	assert_int_equal(settings_load(dir, &a), ERR_OK);
	assert_int_equal(settings_set(a, SET_REMOTEACCESS, true), ERR_OK);
	assert_true(settings_get(a, SET_REMOTEACCESS));
	assert_false(settings_get(a, SET_CENTRALMGMT));
	assert_string_equal(file_text(), "centralmgmt=0\nlogtransfer=0\n"
			    "remoteupgrade=0\nremoteaccess=1\n"
			    "externalremoteaccess=0\ncentralcert=0\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_string_equal(entries(), "settings ");

	assert_int_equal(settings_load(dir, &b), ERR_OK);
	assert_int_equal(on_set(b), BIT(SET_REMOTEACCESS));
	assert_int_equal(settings_set(b, SET_CENTRALMGMT, true), ERR_OK);
	assert_int_equal(settings_set(b, SET_REMOTEACCESS, false), ERR_OK);
	/* a sees b's change only once it reloads. */
	assert_int_equal(on_set(a), BIT(SET_REMOTEACCESS));
	assert_int_equal(settings_reload(a), ERR_OK);
	assert_int_equal(on_set(a), BIT(SET_CENTRALMGMT));
	/* Setting what is already set still writes, harmlessly. */
	assert_int_equal(settings_set(a, SET_CENTRALMGMT, true), ERR_OK);
	assert_int_equal(settings_reload(b), ERR_OK);
	assert_int_equal(on_set(b), BIT(SET_CENTRALMGMT));
	/* Removed: all off again. */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(settings_reload(a), ERR_OK);
	assert_int_equal(on_set(a), 0);
	assert_string_equal(entries(), "");
	logged_is("");
	settings_free(a);
	settings_free(b);
}

/* CustomData.xml: only the named ones change, in one write. */
static void test_apply_several(void **state)
{
	struct settings *s = NULL;
	bool present[SET__COUNT] = { false }, value[SET__COUNT] = { false };

	(void)state;
	assert_int_equal(settings_load(dir, &s), ERR_OK);
	assert_int_equal(settings_set(s, SET_LOGTRANSFER, true), ERR_OK);
	present[SET_CENTRALMGMT] = value[SET_CENTRALMGMT] = true;
	present[SET_REMOTEACCESS] = value[SET_REMOTEACCESS] = true;
	present[SET_LOGTRANSFER] = true;	/* to 0 */
	assert_int_equal(settings_apply(s, present, value), ERR_OK);
	assert_int_equal(on_set(s), BIT(SET_CENTRALMGMT) |
			 BIT(SET_REMOTEACCESS));
	assert_string_equal(file_text(), "centralmgmt=1\nlogtransfer=0\n"
			    "remoteupgrade=0\nremoteaccess=1\n"
			    "externalremoteaccess=0\ncentralcert=0\n");
	assert_int_equal(settings_apply(s, NULL, value), ERR_INVAL);
	assert_int_equal(settings_apply(NULL, present, value), ERR_INVAL);
	logged_is("");
	settings_free(s);
}

static void test_trailing_slash_and_comments(void **state)
{
	struct settings *s = NULL;
	char d[80];

	(void)state;
	put("# written by hand\n"
	    "\n"
	    "  remoteaccess = 1  \r\n"
	    "\tcentralcert=1\n"
	    "   # indented comment\n"
	    "logtransfer=0\n"
	    "externalremoteaccess=1");	/* no newline at the end */
	snprintf(d, sizeof(d), "%s/", dir);
	assert_int_equal(settings_load(d, &s), ERR_OK);
	assert_int_equal(on_set(s), BIT(SET_REMOTEACCESS) | BIT(SET_CENTRALCERT)
			 | BIT(SET_EXTERNALREMOTEACCESS));
	logged_is("");
	/* Saving replaces the comments with the plain form. */
	assert_int_equal(settings_set(s, SET_CENTRALCERT, false), ERR_OK);
	assert_string_equal(file_text(), "centralmgmt=0\nlogtransfer=0\n"
			    "remoteupgrade=0\nremoteaccess=1\n"
			    "externalremoteaccess=1\ncentralcert=0\n");
	assert_string_equal(entries(), "settings ");
	settings_free(s);
}

static void test_malformed(void **state)
{
	struct settings *s = NULL;

	(void)state;
	put("# comment\n"			/* 1 */
	    "\n"				/* 2 */
	    "centralmgmt=1\n"			/* 3 */
	    "remoteaccess = 1\n"		/* 4 */
	    "bogus=1\n"				/* 5 */
	    "logtransfer=2\n"			/* 6 */
	    "remoteupgrade\n"			/* 7 */
	    "centralcert=1\n"			/* 8 */
	    "centralcert=1\n"			/* 9: named twice: off */
	    "=1\n"				/* 10 */
	    "externalremoteaccess=on\n"		/* 11 */
	    "\tlogtransfer = 1\r\n"		/* 12 */
	    "remoteupgrade=\n"			/* 13 */
	    "RemoteAccess=1\n");		/* 14 */
	assert_int_equal(settings_load(dir, &s), ERR_INVAL);
	assert_non_null(s);
	/* The good lines apply; everything with a bad line is off. */
	assert_int_equal(on_set(s), BIT(SET_CENTRALMGMT) |
			 BIT(SET_REMOTEACCESS));
	logged_is("error settings: $:5: unknown setting 'bogus'\n"
		  "error settings: $:6: logtransfer: '2' is not 0 or 1\n"
		  "error settings: $:7: syntax error: expected name=0|1\n"
		  "error settings: $:9: duplicate setting 'centralcert' "
		  "(first at line 8)\n"
		  "error settings: $:10: syntax error: expected name=0|1\n"
		  "error settings: $:11: externalremoteaccess: 'on' is not 0 "
		  "or 1\n"
		  "error settings: $:12: duplicate setting 'logtransfer' "
		  "(first at line 6)\n"
		  "error settings: $:13: remoteupgrade: '' is not 0 or 1\n"
		  "error settings: $:14: unknown setting 'RemoteAccess'\n");
	/* A good value on the first line is off once it is named again. */
	put("remoteaccess=1\nremoteaccess=1\ncentralmgmt=1\n");
	assert_int_equal(settings_reload(s), ERR_INVAL);
	assert_int_equal(on_set(s), BIT(SET_CENTRALMGMT));
	logged_is("error settings: $:2: duplicate setting 'remoteaccess' "
		  "(first at line 1)\n");
	settings_free(s);
}

/* Bytes a damaged file may hold never reach the log as they are. */
static void test_malformed_bytes(void **state)
{
	static const char text[] =
		"remote\x01" "access=1\n"	/* 1 */
		"centralmgmt=1\x7f\n"		/* 2 */
		"centralcert=\0" "1\n"		/* 3 */
		"remoteupgrade=1\n"		/* 4 */
		"\xc3\xa9=1\n";			/* 5 */
	struct settings *s = NULL;
	char longname[200];

	(void)state;
	put_raw(text, sizeof(text) - 1);
	assert_int_equal(settings_load(dir, &s), ERR_INVAL);
	assert_int_equal(on_set(s), BIT(SET_REMOTEUPGRADE));
	logged_is("error settings: $:1: unknown setting\n"
		  "error settings: $:2: centralmgmt: the value is not 0 or 1\n"
		  "error settings: $:3: line contains a NUL byte\n"
		  "error settings: $:5: unknown setting\n");
	/* Names longer than 64 characters are not quoted either. */
	memset(longname, 'a', sizeof(longname));
	snprintf(longname + 100, sizeof(longname) - 100, "=1\n");
	put(longname);
	assert_int_equal(settings_reload(s), ERR_INVAL);
	assert_int_equal(on_set(s), 0);
	logged_is("error settings: $:1: unknown setting\n");
	settings_free(s);
}

static void test_too_big(void **state)
{
	struct settings *s = NULL;
	char big[SETTINGS_FILE_MAX + 2];

	(void)state;
	/* The biggest file taken: comments up to the cap. */
	memset(big, '#', sizeof(big));
	memcpy(big, "remoteaccess=1\n", 15);
	put_raw(big, SETTINGS_FILE_MAX);
	assert_int_equal(settings_load(dir, &s), ERR_OK);
	assert_int_equal(on_set(s), BIT(SET_REMOTEACCESS));
	logged_is("");
	/* One byte more: nothing of it is trusted. */
	put_raw(big, SETTINGS_FILE_MAX + 1);
	assert_int_equal(settings_reload(s), ERR_INVAL);
	assert_int_equal(on_set(s), 0);
	logged_is("error state: $: bigger than 4096 bytes\n");
	settings_free(s);
	s = NULL;
	assert_int_equal(settings_load(dir, &s), ERR_INVAL);
	assert_non_null(s);
	assert_int_equal(on_set(s), 0);
	logged_is("error state: $: bigger than 4096 bytes\n");
	settings_free(s);
}

/* Unreadable: all off at load; at reload the values stay as they were. */
static void test_unreadable(void **state)
{
	struct settings *s = NULL;

	(void)state;
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(settings_load(dir, &s), ERR_IO);
	assert_non_null(s);
	assert_int_equal(on_set(s), 0);
	logged_is("error state: $: not a regular file\n");
	settings_free(s);

	assert_int_equal(rmdir(path), 0);
	put("centralmgmt=1\n");
	assert_int_equal(settings_load(dir, &s), ERR_OK);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(settings_reload(s), ERR_IO);
	assert_int_equal(on_set(s), BIT(SET_CENTRALMGMT));
	logged_is("error state: $: not a regular file\n");
	settings_free(s);
}

/* A save that fails changes neither memory nor file. */
static void test_set_failure(void **state)
{
	struct settings *s = NULL;
	char tmp[160];

	(void)state;
	assert_int_equal(settings_load(dir, &s), ERR_OK);
	assert_int_equal(settings_set(s, SET_LOGTRANSFER, true), ERR_OK);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	assert_int_equal(mkdir(tmp, 0700), 0);
	assert_int_equal(settings_set(s, SET_REMOTEACCESS, true), ERR_IO);
	assert_int_equal(settings_set(s, SET_LOGTRANSFER, false), ERR_IO);
	assert_int_equal(on_set(s), BIT(SET_LOGTRANSFER));
	assert_string_equal(file_text(), "centralmgmt=0\nlogtransfer=1\n"
			    "remoteupgrade=0\nremoteaccess=0\n"
			    "externalremoteaccess=0\ncentralcert=0\n");
	logged_is("error state: $.tmp: cannot create: Is a directory\n"
		  "error state: $.tmp: cannot create: Is a directory\n");
	assert_int_equal(rmdir(tmp), 0);
	assert_int_equal(settings_set(s, SET_REMOTEACCESS, true), ERR_OK);
	assert_int_equal(on_set(s), BIT(SET_LOGTRANSFER) |
			 BIT(SET_REMOTEACCESS));
	assert_string_equal(entries(), "settings ");
	settings_free(s);
}

static void test_bad_arguments(void **state)
{
	static char longdir[STATE_PATH_MAX + 8];
	struct settings *s = (struct settings *)0x1;
	char want[200];

	(void)state;
	assert_int_equal(settings_load(dir, NULL), ERR_INVAL);
	assert_int_equal(settings_load(NULL, &s), ERR_INVAL);
	assert_null(s);
	s = (struct settings *)0x1;
	assert_int_equal(settings_load("", &s), ERR_INVAL);
	assert_null(s);
	memset(longdir, 'd', sizeof(longdir) - 1);
	longdir[0] = '/';
	s = (struct settings *)0x1;
	assert_int_equal(settings_load(longdir, &s), ERR_INVAL);
	assert_null(s);
	snprintf(want, sizeof(want), "error settings: %.64s...: state "
		 "directory path too long\n", longdir);
	assert_string_equal(logged(), want);
	assert_false(settings_get(NULL, SET_REMOTEACCESS));
	assert_int_equal(settings_set(NULL, SET_REMOTEACCESS, true), ERR_INVAL);
	assert_int_equal(settings_reload(NULL), ERR_INVAL);
	settings_free(NULL);
	assert_int_equal(settings_load(dir, &s), ERR_OK);
	assert_false(settings_get(s, SET__COUNT));
	assert_int_equal(settings_set(s, SET__COUNT, true), ERR_INVAL);
	assert_int_equal(settings_set(s, (enum setting)-1, true), ERR_INVAL);
	assert_string_equal(entries(), "");
	settings_free(s);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_missing_file_all_off),
		T(test_names_lookup),
		T(test_render),
		T(test_set_persist_reload),
		T(test_apply_several),
		T(test_trailing_slash_and_comments),
		T(test_malformed),
		T(test_malformed_bytes),
		T(test_too_big),
		T(test_unreadable),
		T(test_set_failure),
		T(test_bad_arguments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
