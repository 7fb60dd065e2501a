/*
 * test_alarm — the active alarm set: raise, repeat (one entry, counted,
 * first time kept), clear, the cap, every refusal leaving set and file as
 * they were, the notify callback, persistence across two instances, a
 * damaged file loaded line by line, and the service user's state file of
 * health (the same kind of small state file).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alarm.h"
#include "health.h"
#include "log.h"
#include "testutil.h"
#include "state.h"

static char dir[64], path[128];

static const char *file_text(void)
{
	static char buf[ALARM_MAX * 512 + 1];
	size_t len = 0;

	if (state_read(path, buf, sizeof(buf) - 1, &len) != ERR_OK)
		len = 0;
	buf[len] = '\0';
	return buf;
}

static void put(const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

struct seen {
	int raised, cleared;
	char last[ALARM_ID_MAX + 1];
};

static void on_change(void *arg, const struct alarm *a, bool raised)
{
	struct seen *s = arg;

	if (raised)
		s->raised++;
	else
		s->cleared++;
	snprintf(s->last, sizeof(s->last), "%s", a->id);
}

static int setup(void **state)
{
	(void)state;
	if (test_dir_setup("alarm", dir, sizeof(dir)))
		return -1;
	snprintf(path, sizeof(path), "%s/alarms", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return test_dir_teardown(dir);
}

static void test_raise_repeat_clear(void **state)
{
	struct alarms *s = NULL, *t = NULL;
	struct seen seen = { 0 };
	const struct alarm *a;
	char why[200];

	(void)state;
	assert_int_equal(alarms_load(dir, &s), ERR_OK);
	assert_int_equal(alarms_count(s), 0);
	alarms_set_notify(s, on_change, &seen);
	assert_int_equal(alarms_raise(s, "trunk-3", ALARM_TRUNK, ALARM_MAJOR,
				      "trunk 3 down", 100, why, sizeof(why)),
			 ERR_OK);
	assert_int_equal(alarms_raise(s, "qos:1", ALARM_QOS, ALARM_WARNING,
				      "jitter", 150, why, sizeof(why)), ERR_OK);
	/* The repeat: one entry, first kept, last and text updated. */
	assert_int_equal(alarms_raise(s, "trunk-3", ALARM_TRUNK,
				      ALARM_CRITICAL, "still down", 200, why,
				      sizeof(why)), ERR_OK);
	assert_int_equal(alarms_count(s), 2);
	a = alarms_find(s, "trunk-3");
	assert_non_null(a);
	assert_int_equal(a->first, 100);
	assert_int_equal(a->last, 200);
	assert_int_equal(a->count, 2);
	assert_int_equal(a->severity, ALARM_CRITICAL);
	assert_string_equal(a->text, "still down");
	/* A clock set back: last never before first. */
	assert_int_equal(alarms_raise(s, "trunk-3", ALARM_TRUNK,
				      ALARM_CRITICAL, "still down", 50, why,
				      sizeof(why)), ERR_OK);
	assert_int_equal(alarms_find(s, "trunk-3")->last, 100);
	assert_int_equal(alarms_count_severity(s, ALARM_CRITICAL), 1);
	assert_int_equal(alarms_count_severity(s, ALARM_WARNING), 1);
	assert_int_equal(alarms_count_severity(s, ALARM_MINOR), 0);
	assert_int_equal(seen.raised, 4);
	assert_string_equal(file_text(),
			    "trunk-3\tTrunk\tcritical\t100\t100\t3\tstill down\n"
			    "qos:1\tQoS\twarning\t150\t150\t1\tjitter\n");

	/* Another instance (a restart) reads the same set, in order. */
	assert_int_equal(alarms_load(dir, &t), ERR_OK);
	assert_int_equal(alarms_count(t), 2);
	assert_string_equal(alarms_at(t, 0)->id, "trunk-3");
	assert_int_equal(alarms_at(t, 0)->count, 3);
	assert_string_equal(alarms_at(t, 1)->id, "qos:1");
	assert_null(alarms_at(t, 2));
	alarms_free(t);

	assert_int_equal(alarms_clear(s, "trunk-3", why, sizeof(why)), ERR_OK);
	assert_int_equal(seen.cleared, 1);
	assert_string_equal(seen.last, "trunk-3");
	assert_int_equal(alarms_clear(s, "trunk-3", why, sizeof(why)),
			 ERR_NOTFOUND);
	assert_string_equal(why, "no active alarm trunk-3");
	assert_string_equal(file_text(),
			    "qos:1\tQoS\twarning\t150\t150\t1\tjitter\n");
	alarms_free(s);
}

static void test_refusals_change_nothing(void **state)
{
	static const char *const bad_ids[] = { "", "a b", "a/b", "a\tb",
					       "\xc3\xa9t\xc3\xa9" };
	static const char *const bad_texts[] = { "", "a\tb", "a\nb", "\x7f",
						 "\xff\xfe", "\xc3" };
	char id[ALARM_ID_MAX + 2], text[ALARM_TEXT_MAX + 2], why[200];
	struct alarms *s = NULL;
	struct seen seen = { 0 };
	const char *before;

	(void)state;
	assert_int_equal(alarms_load(dir, &s), ERR_OK);
	alarms_set_notify(s, on_change, &seen);
	assert_int_equal(alarms_raise(s, "x", ALARM_LINK, ALARM_MINOR, "t", 1,
				      why, sizeof(why)), ERR_OK);
	before = strdup(file_text());
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++)
		assert_int_equal(alarms_raise(s, bad_ids[i], ALARM_LINK,
					      ALARM_MINOR, "t", 2, why,
					      sizeof(why)), ERR_INVAL);
	memset(id, 'i', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';	/* 65 characters */
	assert_int_equal(alarms_raise(s, id, ALARM_LINK, ALARM_MINOR, "t", 2,
				      why, sizeof(why)), ERR_INVAL);
	for (size_t i = 0; i < sizeof(bad_texts) / sizeof(bad_texts[0]); i++)
		assert_int_equal(alarms_raise(s, "x", ALARM_LINK, ALARM_MINOR,
					      bad_texts[i], 2, why,
					      sizeof(why)), ERR_INVAL);
	memset(text, 't', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';	/* 256 bytes */
	assert_int_equal(alarms_raise(s, "x", ALARM_LINK, ALARM_MINOR, text, 2,
				      why, sizeof(why)), ERR_INVAL);
	text[ALARM_TEXT_MAX] = '\0';	/* 255: fine */
	assert_int_equal(alarms_raise(s, "y", ALARM_LINK, ALARM_MINOR, text, 2,
				      why, sizeof(why)), ERR_OK);
	assert_int_equal(alarms_clear(s, "y", why, sizeof(why)), ERR_OK);
	assert_int_equal(alarms_raise(s, "x", ALARM__TYPES, ALARM_MINOR, "t",
				      2, why, sizeof(why)), ERR_INVAL);
	assert_int_equal(alarms_raise(s, "x", ALARM_LINK, ALARM__SEVERITIES,
				      "t", 2, why, sizeof(why)), ERR_INVAL);
	assert_int_equal(alarms_raise(s, NULL, ALARM_LINK, ALARM_MINOR, "t",
				      2, why, sizeof(why)), ERR_INVAL);
	assert_string_equal(file_text(), before);
	assert_int_equal(alarms_find(s, "x")->count, 1);
	assert_int_equal(seen.raised, 2);

	/* The cap: the 65th id is refused; repeats still count. */
	for (int i = 1; i < ALARM_MAX; i++) {
		snprintf(id, sizeof(id), "a%d", i);
		assert_int_equal(alarms_raise(s, id, ALARM_SERVICE,
					      ALARM_WARNING, "s", 3, why,
					      sizeof(why)), ERR_OK);
	}
	assert_int_equal(alarms_raise(s, "one-more", ALARM_SERVICE,
				      ALARM_WARNING, "s", 3, why, sizeof(why)),
			 ERR_LIMIT);
	assert_string_equal(why, "64 alarms are active already; clear one "
			    "first");
	assert_int_equal(alarms_raise(s, "x", ALARM_LINK, ALARM_MINOR, "t", 4,
				      why, sizeof(why)), ERR_OK);
	assert_int_equal(alarms_count(s), ALARM_MAX);
	free((void *)before);
	alarms_free(s);
}

static void test_damaged_file(void **state)
{
	struct alarms *s = NULL;
	char want[1024];

	(void)state;
	put("ok-1\tTrunk\tmajor\t5\t6\t2\tfine\n"
	    "\n"
	    "two fields\n"
	    "ok-1\tLink\tminor\t5\t6\t1\tduplicate\n"
	    "b\tNoSuch\tmajor\t5\t6\t1\tt\n"
	    "c\tLink\tloud\t5\t6\t1\tt\n"
	    "d\tLink\tminor\t7\t6\t1\tlast before first\n"
	    "e\tLink\tminor\t5\t6\t0\tcount zero\n"
	    "f\tLink\tminor\t5\t6\t1\t\n"
	    "bad id\tLink\tminor\t5\t6\t1\tt\n"
	    "ok-2\tsecurity\tWARNING\t1\t1\t1\tcase-insensitive words\n");
	assert_int_equal(alarms_load(dir, &s), ERR_INVAL);
	assert_non_null(s);
	assert_int_equal(alarms_count(s), 2);
	assert_int_equal(alarms_find(s, "ok-1")->count, 2);
	assert_int_equal(alarms_find(s, "ok-2")->type, ALARM_SECURITY);
	snprintf(want, sizeof(want),
		 "error alarm: $:3: expected 7 tab-separated fields; line skipped\n"
		 "error alarm: $:4: duplicate alarm id; line skipped\n"
		 "error alarm: $:5: unknown alarm type; line skipped\n"
		 "error alarm: $:6: unknown severity; line skipped\n"
		 "error alarm: $:7: bad first/last time; line skipped\n"
		 "error alarm: $:8: bad count; line skipped\n"
		 "error alarm: $:9: bad alarm text; line skipped\n"
		 "error alarm: $:10: bad alarm id; line skipped\n"
		 "info  alarm: 2 active alarms loaded\n");
	logged_is_at(want, path);
	alarms_free(s);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(alarm_type_name(ALARM_QOS), "QoS");
	assert_null(alarm_type_name(ALARM__TYPES));
	assert_int_equal(alarm_type_lookup("configuration"), ALARM_CONFIGURATION);
	assert_int_equal(alarm_type_lookup("Trunks"), -1);
	assert_int_equal(alarm_type_lookup(NULL), -1);
	assert_int_equal(alarm_severity_lookup("Critical"), ALARM_CRITICAL);
	assert_int_equal(alarm_severity_lookup(""), -1);
	assert_null(alarm_severity_name((enum alarm_severity)-1));
}

static void test_service_user_file(void **state)
{
	struct health_user_state u = { 0 };
	char buf[HEALTH_FILE_MAX], why[200];

	(void)state;
	assert_int_equal(health_user_load(dir, &u), ERR_OK);
	assert_int_equal(u.state, HU_OK);
	assert_int_equal(u.missing, 0);
	assert_int_equal(health_user_assign(&u, "state=locked", why,
					    sizeof(why)), ERR_OK);
	assert_int_equal(health_user_assign(&u, "missing=upgrade,backup", why,
					    sizeof(why)), ERR_OK);
	assert_int_equal(health_user_assign(&u, "missing=upgrade,", why,
					    sizeof(why)), ERR_INVAL);
	assert_int_equal(health_user_assign(&u, "state=asleep", why,
					    sizeof(why)), ERR_INVAL);
	assert_int_equal(health_user_assign(&u, "colour=red", why,
					    sizeof(why)), ERR_INVAL);
	assert_string_equal(why, "unknown key 'colour' (state or missing)");
	assert_int_equal(health_user_assign(&u, "novalue", why, sizeof(why)),
			 ERR_INVAL);
	assert_int_equal(u.state, HU_LOCKED);
	health_user_render(&u, buf, sizeof(buf));
	assert_string_equal(buf, "state=locked\nmissing=backup,upgrade\n");
	assert_int_equal(health_user_save(dir, &u), ERR_OK);
	memset(&u, 0, sizeof(u));
	assert_int_equal(health_user_load(dir, &u), ERR_OK);
	assert_int_equal(u.state, HU_LOCKED);
	assert_int_equal(u.missing, (1u << HR_BACKUP) | (1u << HR_UPGRADE));
	assert_int_equal(health_user_assign(&u, "missing=", why, sizeof(why)),
			 ERR_OK);
	assert_int_equal(u.missing, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_raise_repeat_clear),
		T(test_refusals_change_nothing),
		T(test_damaged_file),
		T(test_names),
		T(test_service_user_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
