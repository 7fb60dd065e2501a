/*
 * test_json — unit tests of agent/json.c, the front end that proto.c and
 * manifest.c parse untrusted JSON through: strict UTF-8 and the joining of
 * LEJP's CESU-8 surrogate pairs, JSON's number grammar, bounded integers,
 * the first-failure latch, and the driver (which events reach the caller
 * and at what depth, each of LEJP's gaps refused with the caller's words,
 * the limits of the spec, the member name and path at hand).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <libwebsockets.h>

#include "json.h"

/* ------------------------------------------------------------- helpers */

/* What the recording callback saw, one token per event. */
static char trace[2048];
/* A key whose PAIR_NAME the callback refuses ("" for none). */
static const char *refuse_key = "";

__attribute__((format(printf, 1, 2)))
static void note(const char *fmt, ...)
{
	size_t n = strlen(trace);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(trace + n, sizeof(trace) - n, fmt, ap);
	va_end(ap);
}

/*
 * Records each event with the depth json.c reports then: "{2" an object
 * starts inside 2 open containers, "}1" one ended leaving 1, "k:a@a.b" the
 * key a at path a.b, "s(x)" a string, "n(1)" a number, "t" "f" "z".
 * A trailing '*' marks an event inside an open array.
 */
static int record(void *arg, struct lejp_ctx *ctx, char reason)
{
	struct json *j = arg;
	const char *key, *path;
	size_t klen = 0, plen = 0;

	switch (reason) {
	case LEJPCB_OBJECT_START:
		note("{%u", json_depth(j));
		break;
	case LEJPCB_ARRAY_START:
		note("[%u", json_depth(j));
		break;
	case LEJPCB_OBJECT_END:
		note("}%u", json_depth(j));
		break;
	case LEJPCB_ARRAY_END:
		note("]%u", json_depth(j));
		break;
	case LEJPCB_PAIR_NAME:
		key = json_key(ctx, &klen);
		path = json_path(ctx, &plen);
		assert_non_null(key);
		assert_int_equal(strlen(key), klen);
		assert_int_equal(strlen(path), plen);
		note("k:%s@%s", key, path);
		if (!strcmp(key, refuse_key)) {
			json_fail(j, ERR_PERM, "refused %s", key);
			return -1;
		}
		break;
	case LEJPCB_VAL_STR_END:
		note("s(%.*s)", (int)ctx->npos, ctx->buf);
		break;
	case LEJPCB_VAL_NUM_INT:
	case LEJPCB_VAL_NUM_FLOAT:
		note("n(%s)", ctx->buf);
		break;
	case LEJPCB_VAL_TRUE:
		note("t");
		break;
	case LEJPCB_VAL_FALSE:
		note("f");
		break;
	case LEJPCB_VAL_NULL:
		note("z");
		break;
	default:
		return 0;
	}
	if (json_in_array(j))
		note("*");
	note(" ");
	return 0;
}

static const struct json_spec spec = {
	.max_depth = 4,
	.max_path = 16,
	.path_name = "field",
	.text_name = "doc",
	.empty_why = "no members",
	.event = record,
};

/* Parses text with spec s; returns the error, why in why[64]. */
static err_t run_with(const struct json_spec *s, const char *text,
		      char *why)
{
	struct json j;

	trace[0] = '\0';
	json_init(&j, s, &j, why, 64);
	return json_run(&j, text, strlen(text));
}

static void run_ok(const char *text, const char *want_trace)
{
	char why[64];
	err_t e = run_with(&spec, text, why);

	if (e != ERR_OK)
		print_error("unexpected failure: %s: %s\n", why, text);
	assert_int_equal(e, ERR_OK);
	assert_string_equal(why, "");
	assert_string_equal(trace, want_trace);
}

static void run_bad(const char *text, err_t want, const char *want_why)
{
	char why[64];
	err_t e = run_with(&spec, text, why);

	if (e != want || strcmp(why, want_why))
		print_error("for %s\n got %d \"%s\"\n", text, (int)e, why);
	assert_int_equal(e, want);
	assert_string_equal(why, want_why);
}

/* ---------------------------------------------------------------- UTF-8 */

static void test_utf8(void **state)
{
	(void)state;
	assert_true(json_utf8_valid("", 0));
	assert_true(json_utf8_valid("plain", 5));
	assert_true(json_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
	assert_true(json_utf8_valid("\xf4\x8f\xbf\xbf", 4));	/* max */
	assert_false(json_utf8_valid("\xff", 1));
	assert_false(json_utf8_valid("\xc0\xaf", 2));		/* long */
	assert_false(json_utf8_valid("\xe0\x80\xaf", 3));	/* long */
	assert_false(json_utf8_valid("\xed\xa0\x80", 3));	/* surrogate */
	assert_false(json_utf8_valid("\xf4\x90\x80\x80", 4));	/* > max */
	assert_false(json_utf8_valid("a\xc3", 2));		/* cut */
	assert_false(json_utf8_valid(NULL, 1));

	assert_int_equal(json_utf8_len("a", 1), 1);
	assert_int_equal(json_utf8_len("\xc3\xa9x", 3), 2);
	assert_int_equal(json_utf8_len("\xf0\x9f\x98\x80", 4), 4);
	assert_int_equal(json_utf8_len("\xf0\x9f\x98\x80", 3), 0);
	assert_int_equal(json_utf8_len("\x80", 1), 0);
	assert_int_equal(json_utf8_len("a", 0), 0);
}

static void test_cesu(void **state)
{
	/* U+1F600 as LEJP leaves "\ud83d\ude00", between ASCII */
	unsigned char s[] = "a\xed\xa0\xbd\xed\xb8\x80z";
	unsigned char plain[] = "caf\xc3\xa9";
	unsigned char lone_hi[] = "\xed\xa0\xbdx";
	unsigned char lone_lo[] = "\xed\xb8\x80";
	unsigned char swapped[] = "\xed\xb8\x80\xed\xa0\xbd";
	unsigned char bad[] = "a\xff";
	size_t n = 99;

	(void)state;
	assert_true(json_cesu_to_utf8(s, sizeof(s) - 1, &n));
	assert_int_equal(n, 6);
	assert_memory_equal(s, "a\xf0\x9f\x98\x80z", 6);
	assert_true(json_cesu_to_utf8(plain, sizeof(plain) - 1, &n));
	assert_int_equal(n, 5);
	assert_memory_equal(plain, "caf\xc3\xa9", 5);
	assert_true(json_cesu_to_utf8(plain, 0, &n));
	assert_int_equal(n, 0);
	assert_false(json_cesu_to_utf8(lone_hi, sizeof(lone_hi) - 1, &n));
	assert_false(json_cesu_to_utf8(lone_lo, sizeof(lone_lo) - 1, &n));
	assert_false(json_cesu_to_utf8(swapped, sizeof(swapped) - 1, &n));
	assert_false(json_cesu_to_utf8(bad, sizeof(bad) - 1, &n));
}

/* -------------------------------------------------------------- numbers */

static void test_number(void **state)
{
	static const char *const good[] = {
		"0", "-0", "7", "-12", "1.5", "0.25", "1e3", "1E+3", "-2.5e-7",
		"123456789012345678901234567890",
	};
	static const char *const bad[] = {
		"", "-", "01", "-01", "+1", ".5", "1.", "1e", "1e+", "-1e",
		"1.e3", "0x10", "1 ", " 1", "NaN", "1..2",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!json_number(good[i]))
			fail_msg("\"%s\" refused", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (json_number(bad[i]))
			fail_msg("\"%s\" accepted", bad[i]);
	assert_false(json_number(NULL));
}

static void test_int(void **state)
{
	int64_t v = 5;

	(void)state;
	assert_true(json_int("42", 0, 100, &v));
	assert_int_equal(v, 42);
	assert_true(json_int("-0", 0, 0, &v));
	assert_int_equal(v, 0);
	assert_true(json_int("9223372036854775807", INT64_MIN, INT64_MAX, &v));
	assert_true(v == INT64_MAX);
	assert_true(json_int("-9223372036854775808", INT64_MIN, INT64_MAX,
			     &v));
	assert_true(v == INT64_MIN);
	assert_true(json_int("100", 0, 100, NULL));
	/* nothing is written on failure */
	v = 5;
	assert_false(json_int("101", 0, 100, &v));
	assert_false(json_int("-1", 0, 100, &v));
	assert_false(json_int("9223372036854775808", INT64_MIN, INT64_MAX,
			      &v));
	assert_false(json_int("-9223372036854775809", INT64_MIN, INT64_MAX,
			      &v));
	assert_false(json_int("1.0", 0, 100, &v));
	assert_false(json_int("1e2", 0, 1000, &v));
	assert_false(json_int("+1", 0, 100, &v));
	assert_false(json_int("", 0, 100, &v));
	assert_false(json_int("-", 0, 100, &v));
	assert_false(json_int(NULL, 0, 100, &v));
	assert_int_equal(v, 5);
}

/* ---------------------------------------------------------------- latch */

static void test_fail_latch(void **state)
{
	struct json j;
	char why[12];
	struct json_spec bad = spec;

	(void)state;
	memset(why, 'x', sizeof(why));
	json_init(&j, &spec, &j, why, sizeof(why));
	assert_int_equal(json_err(&j), ERR_OK);
	assert_string_equal(why, "");
	json_fail(&j, ERR_LIMIT, "first %d", 1);
	json_fail(&j, ERR_INVAL, "second");
	assert_int_equal(json_err(&j), ERR_LIMIT);
	assert_string_equal(why, "first 1");
	/* a failed parse does not run: the callback sees nothing */
	trace[0] = '\0';
	assert_int_equal(json_run(&j, "{\"a\":1}", 7), ERR_LIMIT);
	assert_string_equal(trace, "");

	/* the reason is cut to fit, NUL-terminated */
	json_init(&j, &spec, &j, why, sizeof(why));
	json_fail(&j, ERR_INVAL, "a rather long reason");
	assert_string_equal(why, "a rather lo");
	/* no place for a reason is fine */
	json_init(&j, &spec, &j, NULL, 0);
	json_fail(&j, ERR_INVAL, "nowhere");
	assert_int_equal(json_err(&j), ERR_INVAL);

	/* limits beyond the caps, or none, fail the parse at once */
	bad.max_depth = JSON_MAX_DEPTH + 1;
	json_init(&j, &bad, &j, why, sizeof(why));
	assert_int_equal(json_err(&j), ERR_INVAL);
	bad = spec;
	bad.max_path = 0;
	json_init(&j, &bad, &j, why, sizeof(why));
	assert_int_equal(json_err(&j), ERR_INVAL);
	json_init(&j, NULL, &j, why, sizeof(why));
	assert_int_equal(json_run(&j, "{}", 2), ERR_INVAL);
}

/* --------------------------------------------------------------- driver */

static void test_run_events(void **state)
{
	(void)state;
	/* the top-level object's own start and end are not passed on */
	run_ok("{\"a\":1}", "k:a@a n(1) ");
	run_ok(" {\"s\":\"x\",\"t\":true,\"f\":false,\"z\":null} \n",
	       "k:s@s s(x) k:t@t t k:f@f f k:z@z z ");
	/* at a start the depth is still the enclosing one's; at an end it
	 * is again */
	run_ok("{\"a\":{\"b\":[1,{\"c\":2.5}]}}",
	       "k:a@a {1 k:b@a.b [2 n(1)* {3* k:c@a.b[].c n(2.5) }3* ]2 }1 ");
	/* escapes in keys are decoded; the key is the last part only */
	run_ok("{\"x\":{\"b\\u0063\":0}}", "k:x@x {1 k:bc@x.bc n(0) }1 ");
	/* numbers are the caller's to check: "01" reaches it */
	run_ok("{\"n\":01}", "k:n@n n(01) ");
}

static void test_run_refused(void **state)
{
	(void)state;
	/* what LEJP would let through */
	run_bad("{\"a\":1 # c\n}", ERR_INVAL, "not JSON: '#' outside a string");
	run_bad("{\"a\":[1, ]}", ERR_INVAL, "not JSON: ',' before ']'");
	run_bad("{\"a\":[1}}", ERR_INVAL, "not JSON: mismatched '}'");
	run_bad("{}", ERR_INVAL, "no members");
	/* '#' and "[1,]" inside strings are text */
	run_ok("{\"a\":\"#,]\"}", "k:a@a s(#,]) ");
	/* not an object, unfinished, followed by more */
	run_bad("[1]", ERR_INVAL, "not a JSON object");
	run_bad("42", ERR_INVAL, "not a JSON object");
	run_bad("{\"a\":1", ERR_INVAL, "not JSON: doc truncated");
	run_bad("", ERR_INVAL, "not JSON: doc truncated");
	run_bad("{\"a\":1} x", ERR_INVAL, "trailing data after the object");
	run_bad("{\"a\":1}{}", ERR_INVAL, "trailing data after the object");
	/* what LEJP refuses itself, in its words */
	run_bad("{\"a\":tru}", ERR_INVAL, "not JSON: Unknown token");
	/* the text itself */
	run_bad("{\"a\":\"\xff\"}", ERR_INVAL, "invalid UTF-8");
	{
		static const char nul[] = "{\"a\":\"\0\"}";
		struct json j;
		char why[64];

		json_init(&j, &spec, &j, why, sizeof(why));
		assert_int_equal(json_run(&j, nul, sizeof(nul) - 1),
				 ERR_INVAL);
		assert_string_equal(why, "NUL byte in the text");
	}
}

static void test_run_limits(void **state)
{
	struct json_spec s = spec;
	char why[64];

	(void)state;
	/* max_depth 4: the top-level object and three more */
	run_ok("{\"a\":{\"b\":{\"c\":{}}}}",
	       "k:a@a {1 k:b@a.b {2 k:c@a.b.c {3 }3 }2 }1 ");
	run_bad("{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}", ERR_INVAL,
		"nesting deeper than 4 levels");
	/* LEJP's index stack holds five arrays */
	s.max_depth = JSON_MAX_DEPTH;
	assert_int_equal(run_with(&s, "{\"a\":[[[[[1]]]]]}", why), ERR_OK);
	assert_int_equal(run_with(&s, "{\"a\":[[[[[[1]]]]]]}", why),
			 ERR_INVAL);
	assert_string_equal(why, "arrays nested deeper than 5 levels");
	/* ... and loses count after top-level arrays unless reset */
	assert_int_equal(run_with(&s, "{\"a\":[1],\"b\":[2],\"c\":[3],"
				  "\"d\":[4],\"e\":[5],\"f\":[[6]]}", why),
			 ERR_OK);
	/* max_path 16: a 16-byte path passes, 17 do not */
	run_ok("{\"abcdefghijklmnop\":1}",
	       "k:abcdefghijklmnop@abcdefghijklmnop n(1) ");
	run_bad("{\"abcdefghijklmnopq\":1}", ERR_INVAL,
		"field path longer than 16 bytes");
	run_bad("{\"abcdefgh\":{\"ijklmnopq\":1}}", ERR_INVAL,
		"field path longer than 16 bytes");
}

static void test_run_words(void **state)
{
	struct json_spec s = spec;
	char why[64];

	(void)state;
	/* NULL words take the defaults */
	s.path_name = NULL;
	s.text_name = NULL;
	s.empty_why = NULL;
	assert_int_equal(run_with(&s, "{}", why), ERR_INVAL);
	assert_string_equal(why, "empty object");
	assert_int_equal(run_with(&s, "{", why), ERR_INVAL);
	assert_string_equal(why, "not JSON: text truncated");
	assert_int_equal(run_with(&s, "{\"abcdefghijklmnopq\":1}", why),
			 ERR_INVAL);
	assert_string_equal(why, "member path longer than 16 bytes");
}

static void test_run_callback(void **state)
{
	struct json j;
	char why[64];

	(void)state;
	/* the callback's failure is the parse's, and it stops there */
	refuse_key = "b";
	run_bad("{\"a\":1,\"b\":2,\"c\":3}", ERR_PERM, "refused b");
	assert_string_equal(trace, "k:a@a n(1) k:b@b");
	refuse_key = "";
	/* one run per json_init() */
	json_init(&j, &spec, &j, why, sizeof(why));
	assert_int_equal(json_run(&j, "{\"a\":1}", 7), ERR_OK);
	assert_int_equal(json_run(&j, "{\"a\":1}", 7), ERR_STATE);
	json_init(&j, &spec, &j, why, sizeof(why));
	assert_int_equal(json_run(&j, NULL, 3), ERR_INVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_cesu),
		cmocka_unit_test(test_number),
		cmocka_unit_test(test_int),
		cmocka_unit_test(test_fail_latch),
		cmocka_unit_test(test_run_events),
		cmocka_unit_test(test_run_refused),
		cmocka_unit_test(test_run_limits),
		cmocka_unit_test(test_run_words),
		cmocka_unit_test(test_run_callback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
