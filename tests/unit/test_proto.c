/*
 * test_proto — unit tests of agent/proto.c: decoding of control messages
 * (every PROTOCOL.md example, limits, hostile input) and the JSON writer
 * (escaping round trips, overflow latching, headroom).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "proto.h"

/* ------------------------------------------------------------- helpers */

static struct proto_msg *parse_ok(const char *json)
{
	struct proto_msg *m = NULL;
	int64_t bad = -1;
	char why[128];
	err_t e = proto_parse(json, strlen(json), &m, &bad, why, sizeof(why));

	if (e != ERR_OK)
		print_error("unexpected failure: %s: %s\n", why, json);
	assert_int_equal(e, ERR_OK);
	assert_non_null(m);
	assert_int_equal(bad, 0);
	return m;
}

/* Expects failure; why must contain want_why; returns bad_id. */
static int64_t parse_badn(const char *buf, size_t len, err_t want,
			  const char *want_why)
{
	struct proto_msg *m = (struct proto_msg *)&m;	/* must be reset */
	int64_t bad = -1;
	char why[128];
	err_t e;

	memset(why, 'x', sizeof(why));
	e = proto_parse(buf, len, &m, &bad, why, sizeof(why));
	assert_int_equal(e, want);
	assert_null(m);
	assert_non_null(memchr(why, '\0', sizeof(why)));
	assert_true(why[0] != '\0');
	if (want_why && !strstr(why, want_why)) {
		print_error("reason \"%s\" lacks \"%s\"\n", why, want_why);
		fail();
	}
	return bad;
}

static int64_t parse_bad(const char *json, const char *want_why)
{
	return parse_badn(json, strlen(json), ERR_INVAL, want_why);
}

static void assert_str(const struct proto_msg *m, const char *path,
		       const char *want)
{
	const char *s = proto_str(m, path);

	if (!s)
		print_error("no string at %s\n", path);
	assert_non_null(s);
	assert_string_equal(s, want);
}

static void assert_int(const struct proto_msg *m, const char *path,
		       int64_t want)
{
	int64_t v = 0;

	if (!proto_int(m, path, &v))
		print_error("no integer at %s\n", path);
	assert_true(proto_int(m, path, &v));
	assert_true(v == want);
}

/* Growable text for building large inputs in tests. */
struct sb {
	char *p;
	size_t n, cap;
};

static void sb_add(struct sb *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void sb_puts(struct sb *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_rep(struct sb *b, const char *s, size_t times)
{
	while (times--)
		sb_puts(b, s);
}

__attribute__((format(printf, 2, 3)))
static void sb_printf(struct sb *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(tmp));
	sb_add(b, tmp, (size_t)n);
}

/* -------------------------------------------------- PROTOCOL.md examples */

static void test_example_hello(void **state)
{
	struct proto_msg *m;
	int64_t v;

	(void)state;
	m = parse_ok("{\"type\":\"hello\",\"id\":1,\"proto\":1,"
		     "\"agent\":\"comagent/0.1.0\",\n"
		     " \"customer\":\"C1001\",\"system\":\"pbx-hq\","
		     "\"profile\":\"linux\",\n"
		     " \"version\":\"11.1.3.0\",\"user\":\"COMAdmin\","
		     "\"password\":\"s3cret\"}");
	assert_string_equal(proto_type(m), "hello");
	assert_int_equal(proto_id(m), 1);
	assert_int_equal(proto_re(m), 0);
	assert_int(m, "proto", 1);
	assert_str(m, "agent", "comagent/0.1.0");
	assert_str(m, "customer", "C1001");
	assert_str(m, "system", "pbx-hq");
	assert_str(m, "profile", "linux");
	assert_str(m, "version", "11.1.3.0");
	assert_str(m, "user", "COMAdmin");
	assert_str(m, "password", "s3cret");
	assert_str(m, "type", "hello");
	assert_true(proto_int(m, "id", &v) && v == 1);
	assert_null(proto_str(m, "nope"));
	proto_msg_free(m);
}

static void test_example_welcome_refused(void **state)
{
	struct proto_msg *m;

	(void)state;
	m = parse_ok("{\"type\":\"welcome\",\"id\":1,\"re\":1,"
		     "\"session\":\"3f9c2a\",\"max_streams\":64,"
		     "\"window\":65536}");
	assert_string_equal(proto_type(m), "welcome");
	assert_int_equal(proto_id(m), 1);
	assert_int_equal(proto_re(m), 1);
	assert_str(m, "session", "3f9c2a");
	assert_int(m, "max_streams", 64);
	assert_int(m, "window", 65536);
	proto_msg_free(m);

	m = parse_ok("{\"type\":\"refused\",\"id\":1,\"re\":1,"
		     "\"reason\":\"user_locked\","
		     "\"message\":\"Service user temporarily locked\"}");
	assert_string_equal(proto_type(m), "refused");
	assert_int_equal(proto_re(m), 1);
	assert_str(m, "reason", "user_locked");
	assert_str(m, "message", "Service user temporarily locked");
	assert_string_equal(proto_reason_text(proto_str(m, "reason")),
			    "Service user temporarily locked");
	proto_msg_free(m);
}

static void test_example_status_ack(void **state)
{
	struct proto_msg *m;

	(void)state;
	m = parse_ok("{\"type\":\"status\",\"id\":2,\"customer\":\"C1001\","
		     "\"system\":\"pbx-hq\",\"profile\":\"linux\",\n"
		     " \"version\":\"11.1.3.0\",\"operation\":\"idle\","
		     "\"uptime\":3600}");
	assert_string_equal(proto_type(m), "status");
	assert_int_equal(proto_id(m), 2);
	assert_str(m, "customer", "C1001");
	assert_str(m, "system", "pbx-hq");
	assert_str(m, "profile", "linux");
	assert_str(m, "version", "11.1.3.0");
	assert_str(m, "operation", "idle");
	assert_int(m, "uptime", 3600);
	proto_msg_free(m);

	m = parse_ok("{\"type\":\"ack\",\"id\":5,\"re\":2}");
	assert_string_equal(proto_type(m), "ack");
	assert_int_equal(proto_id(m), 5);
	assert_int_equal(proto_re(m), 2);
	proto_msg_free(m);
}

static void test_example_job(void **state)
{
	struct proto_msg *m;

	(void)state;
	m = parse_ok("{\"type\":\"job\",\"id\":9,"
		     "\"job\":\"J-20261123-0042\",\"op\":\"backup\","
		     "\"args\":{}}");
	assert_string_equal(proto_type(m), "job");
	assert_int_equal(proto_id(m), 9);
	assert_str(m, "job", "J-20261123-0042");
	assert_str(m, "op", "backup");
	assert_null(proto_str(m, "args"));
	proto_msg_free(m);

	m = parse_ok("{\"type\":\"job.state\",\"id\":3,"
		     "\"job\":\"J-20261123-0042\",\"state\":\"rejected\",\n"
		     " \"reason\":\"unsupported\",\"message\":"
		     "\"operation backup is not supported by this agent\"}");
	assert_string_equal(proto_type(m), "job.state");
	assert_int_equal(proto_id(m), 3);
	assert_str(m, "job", "J-20261123-0042");
	assert_str(m, "state", "rejected");
	assert_str(m, "reason", "unsupported");
	assert_str(m, "message",
		   "operation backup is not supported by this agent");
	proto_msg_free(m);
}

/* Strings of an array (not inside another array) are kept by index; other
 * elements are not, and do not shift the indexes. */
static void test_string_arrays(void **state)
{
	struct proto_msg *m;

	(void)state;
	m = parse_ok("{\"type\":\"job\",\"id\":9,\"args\":{\"elements\":"
		     "[\"config\",\"voice\\u006dail\"],\"mixed\":[1,\"b\","
		     "{\"x\":[\"deep\"]},\"c\"],\"none\":[]},"
		     "\"top\":[\"t\"]}");
	assert_int_equal(proto_count(m, "args.elements"), 2);
	assert_string_equal(proto_str(m, "args.elements.0"), "config");
	assert_string_equal(proto_str(m, "args.elements.1"), "voicemail");
	assert_null(proto_str(m, "args.elements.2"));
	assert_null(proto_str(m, "args.mixed.0"));
	assert_string_equal(proto_str(m, "args.mixed.1"), "b");
	assert_string_equal(proto_str(m, "args.mixed.3"), "c");
	assert_null(proto_str(m, "args.mixed.2.x.0"));
	assert_int_equal(proto_count(m, "args.mixed"), 0);
	assert_int_equal(proto_count(m, "args.none"), 0);
	assert_int_equal(proto_count(m, "args.missing"), 0);
	assert_int_equal(proto_count(m, "top"), 1);
	assert_string_equal(proto_str(m, "top.0"), "t");
	proto_msg_free(m);
}

static void test_example_unsupported_error(void **state)
{
	struct proto_msg *m;

	(void)state;
	m = parse_ok("{\"type\":\"unsupported\",\"id\":7,\"re\":12,"
		     "\"what\":\"frobnicate\"}");
	assert_string_equal(proto_type(m), "unsupported");
	assert_int_equal(proto_id(m), 7);
	assert_int_equal(proto_re(m), 12);
	assert_str(m, "what", "frobnicate");
	proto_msg_free(m);

	m = parse_ok("{\"type\":\"error\",\"id\":8,\"re\":12,"
		     "\"code\":\"malformed\",\"message\":\"\xe2\x80\xa6\"}");
	assert_string_equal(proto_type(m), "error");
	assert_int_equal(proto_id(m), 8);
	assert_int_equal(proto_re(m), 12);
	assert_str(m, "code", "malformed");
	assert_str(m, "message", "\xe2\x80\xa6");
	proto_msg_free(m);
}

static void test_example_streams(void **state)
{
	struct proto_msg *m;

	(void)state;
	m = parse_ok("{\"type\":\"stream.open\",\"id\":20,\"stream\":4,"
		     "\"kind\":\"tunnel\",\"window\":65536}");
	assert_string_equal(proto_type(m), "stream.open");
	assert_int_equal(proto_id(m), 20);
	assert_int(m, "stream", 4);
	assert_str(m, "kind", "tunnel");
	assert_int(m, "window", 65536);
	proto_msg_free(m);

	m = parse_ok("{\"type\":\"stream.accept\",\"id\":6,\"re\":20,"
		     "\"stream\":4,\"window\":65536}");
	assert_string_equal(proto_type(m), "stream.accept");
	assert_int_equal(proto_re(m), 20);
	assert_int(m, "stream", 4);
	assert_int(m, "window", 65536);
	proto_msg_free(m);

	m = parse_ok("{\"type\":\"stream.credit\",\"id\":7,\"stream\":4,"
		     "\"bytes\":32768}");
	assert_string_equal(proto_type(m), "stream.credit");
	assert_int(m, "bytes", 32768);
	proto_msg_free(m);

	m = parse_ok("{\"type\":\"stream.close\",\"id\":8,\"stream\":4,"
		     "\"reason\":\"done\",\"message\":\"\"}");
	assert_string_equal(proto_type(m), "stream.close");
	assert_int_equal(proto_id(m), 8);
	assert_str(m, "reason", "done");
	assert_str(m, "message", "");
	proto_msg_free(m);
}

/* ------------------------------------------------------- structure, kinds */

static void test_nested_paths(void **state)
{
	struct proto_msg *m;
	bool b = true;
	int64_t v = 0;

	(void)state;
	m = parse_ok("{\"type\":\"job\",\"id\":9,\"args\":{\"name\":\"x.cfg\","
		     "\"deep\":{\"n\":-5,\"ok\":true,\"no\":false,\"z\":null},"
		     "\"size\":123},\"tail\":\"t\"}");
	assert_str(m, "args.name", "x.cfg");
	assert_int(m, "args.deep.n", -5);
	assert_int(m, "args.size", 123);
	assert_str(m, "tail", "t");
	assert_true(proto_bool(m, "args.deep.ok", &b) && b);
	assert_true(proto_bool(m, "args.deep.no", &b) && !b);
	/* kinds do not convert into each other */
	assert_null(proto_str(m, "args"));
	assert_null(proto_str(m, "args.deep.n"));
	assert_false(proto_int(m, "args.name", &v));
	assert_false(proto_int(m, "args.deep.ok", &v));
	assert_false(proto_bool(m, "args.deep.n", &b));
	assert_null(proto_str(m, "args.deep.z"));
	assert_null(proto_str(m, "name"));
	assert_null(proto_str(m, "args.nam"));
	assert_null(proto_str(m, NULL));
	assert_null(proto_str(NULL, "type"));
	assert_null(proto_type(NULL));
	assert_int_equal(proto_id(NULL), 0);
	proto_msg_free(m);
	proto_msg_free(NULL);
}

static void test_unknown_fields(void **state)
{
	struct proto_msg *m;

	(void)state;
	/* Arrays, nested objects, nulls, floats: kept or ignored, no error.
	 * Six array members also pin LEJP's top-level index-stack bug. */
	m = parse_ok("{\"future\":{\"a\":[1,2,{\"b\":\"c\"}],\"x\":1.5e3},"
		     "\"a1\":[],\"a2\":[1],\"a3\":[\"s\"],\"a4\":[[]],"
		     "\"a5\":[{}],\"a6\":[true,null],"
		     "\"type\":\"ack\",\"n\":null,\"f\":-0.25,\"id\":5,"
		     "\"re\":4,\"deep\":[[[[[1]]]]]}");
	assert_string_equal(proto_type(m), "ack");
	assert_int_equal(proto_id(m), 5);
	assert_int_equal(proto_re(m), 4);
	assert_null(proto_str(m, "future.a[].b"));
	assert_null(proto_str(m, "a3[]"));
	assert_false(proto_int(m, "future.x", NULL));
	assert_false(proto_int(m, "f", NULL));
	proto_msg_free(m);

	/* Five levels of arrays is what LEJP can track. */
	parse_bad("{\"type\":\"t\",\"id\":1,\"d\":[[[[[[1]]]]]]}",
		  "arrays nested");
}

static void test_numbers(void **state)
{
	struct proto_msg *m;
	int64_t v;

	(void)state;
	m = parse_ok("{\"type\":\"t\",\"id\":1,\"max\":9223372036854775807,"
		     "\"min\":-9223372036854775808,"
		     "\"over\":9223372036854775808,"
		     "\"under\":-9223372036854775809,"
		     "\"f\":1.5,\"e\":1e3,\"E\":2E+2,\"z\":0,\"mz\":-0,"
		     "\"big\":99999999999999999999}");
	assert_int(m, "max", INT64_MAX);
	assert_int(m, "min", INT64_MIN);
	assert_int(m, "z", 0);
	assert_int(m, "mz", 0);
	assert_false(proto_int(m, "over", &v));
	assert_false(proto_int(m, "under", &v));
	assert_false(proto_int(m, "f", &v));
	assert_false(proto_int(m, "e", &v));
	assert_false(proto_int(m, "E", &v));
	assert_false(proto_int(m, "big", &v));
	proto_msg_free(m);

	parse_bad("{\"type\":\"t\",\"id\":1,\"n\":01}", "bad number");
	parse_bad("{\"type\":\"t\",\"id\":1,\"n\":1e+}", "bad number");
	parse_bad("{\"type\":\"t\",\"id\":1,\"n\":1.}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"n\":.5}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"n\":-}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"n\":+1}", "not JSON");
	/* LEJP's limit: a number has at most 20 digits. */
	parse_bad("{\"type\":\"t\",\"id\":1,\"n\":123456789012345678901}",
		  "not JSON");
}

static void test_duplicates_last_wins(void **state)
{
	struct proto_msg *m;

	(void)state;
	m = parse_ok("{\"type\":\"a\",\"id\":1,\"x\":1,\"o\":{\"p\":1},"
		     "\"type\":\"b\",\"id\":2,\"x\":\"s\",\"o\":2,"
		     "\"q\":3,\"q\":{\"r\":4},\"n\":1,\"n\":null}");
	assert_string_equal(proto_type(m), "b");
	assert_int_equal(proto_id(m), 2);
	assert_str(m, "x", "s");
	assert_false(proto_int(m, "x", NULL));
	assert_int(m, "o", 2);
	assert_false(proto_int(m, "o.p", NULL));
	assert_false(proto_int(m, "q", NULL));
	assert_int(m, "q.r", 4);
	assert_false(proto_int(m, "n", NULL));
	proto_msg_free(m);

	/* escaped and raw spellings of a key are the same key */
	m = parse_ok("{\"type\":\"a\",\"id\":1,\"k\\ud83d\\ude00\":1,"
		     "\"k\\ud83d\\ude00\":2,\"o\\u00e9\":{\"p\":1},"
		     "\"o\xc3\xa9\":{\"q\":2},\"r\xf0\x9f\x98\x80\":1,"
		     "\"r\\ud83d\\ude00\":5}");
	assert_int(m, "k\xf0\x9f\x98\x80", 2);
	assert_false(proto_int(m, "o\xc3\xa9.p", NULL));
	assert_int(m, "o\xc3\xa9.q", 2);
	assert_int(m, "r\xf0\x9f\x98\x80", 5);
	proto_msg_free(m);

	/* every occurrence of "id" must be valid */
	parse_bad("{\"type\":\"a\",\"id\":1,\"id\":\"2\"}", "\"id\"");
}

/* ------------------------------------------------------- type, id and re */

static void test_type(void **state)
{
	struct sb b = { 0 };
	struct proto_msg *m;

	(void)state;
	parse_bad("{\"id\":1}", "no \"type\"");
	parse_bad("{}", "no \"type\"");
	parse_bad("{\"type\":\"\",\"id\":1}", "empty \"type\"");
	parse_bad("{\"type\":1,\"id\":1}", "\"type\" is not a string");
	parse_bad("{\"type\":true,\"id\":1}", "\"type\" is not a string");
	parse_bad("{\"type\":null,\"id\":1}", "\"type\" is not a string");
	parse_bad("{\"type\":{\"a\":\"b\"},\"id\":1}", "\"type\" is not a");
	parse_bad("{\"type\":[\"a\"],\"id\":1}", "\"type\" is not a string");
	/* a nested "type" is just a field */
	parse_bad("{\"a\":{\"type\":\"x\"},\"id\":1}", "no \"type\"");

	sb_puts(&b, "{\"id\":1,\"type\":\"");
	sb_rep(&b, "t", 31);
	sb_puts(&b, "\"}");
	m = parse_ok(b.p);
	assert_int_equal(strlen(proto_type(m)), 31);
	proto_msg_free(m);
	b.n = 0;
	sb_puts(&b, "{\"id\":1,\"type\":\"");
	sb_rep(&b, "t", 32);
	sb_puts(&b, "\"}");
	parse_bad(b.p, "longer than 31");
	free(b.p);
}

static void test_id_re(void **state)
{
	struct proto_msg *m;

	(void)state;
	parse_bad("{\"type\":\"t\"}", "no \"id\"");
	parse_bad("{\"type\":\"t\",\"id\":0}", "\"id\" is not an integer");
	parse_bad("{\"type\":\"t\",\"id\":-1}", "\"id\"");
	parse_bad("{\"type\":\"t\",\"id\":1.0}", "\"id\"");
	parse_bad("{\"type\":\"t\",\"id\":1.5}", "\"id\"");
	parse_bad("{\"type\":\"t\",\"id\":1e3}", "\"id\"");
	parse_bad("{\"type\":\"t\",\"id\":\"1\"}", "\"id\"");
	parse_bad("{\"type\":\"t\",\"id\":true}", "\"id\"");
	parse_bad("{\"type\":\"t\",\"id\":null}", "\"id\"");
	parse_bad("{\"type\":\"t\",\"id\":{}}", "\"id\" is not");
	parse_bad("{\"type\":\"t\",\"id\":[1]}", "\"id\" is not");
	parse_bad("{\"type\":\"t\",\"id\":[]}", "\"id\" is not");
	parse_bad("{\"type\":\"t\",\"id\":1,\"re\":[]}", "\"re\" is not");
	parse_bad("{\"type\":\"t\",\"id\":9007199254740992}", "\"id\"");
	parse_bad("{\"type\":\"t\",\"id\":9223372036854775808}", "\"id\"");
	parse_bad("{\"type\":\"t\",\"id\":99999999999999999999}", "\"id\"");
	/* LEJP hands over the first 20 digits, then stops at the 21st */
	parse_bad("{\"type\":\"t\",\"id\":999999999999999999999999}",
		  "\"id\"");
	m = parse_ok("{\"type\":\"t\",\"id\":9007199254740991,"
		     "\"re\":9007199254740991}");
	assert_true(proto_id(m) == 9007199254740991LL);
	assert_true(proto_re(m) == PROTO_MAX_ID);
	proto_msg_free(m);

	assert_int_equal(parse_bad("{\"type\":\"t\",\"id\":3,\"re\":0}",
				   "\"re\""), 3);
	parse_bad("{\"type\":\"t\",\"id\":3,\"re\":-2}", "\"re\"");
	parse_bad("{\"type\":\"t\",\"id\":3,\"re\":2.5}", "\"re\"");
	parse_bad("{\"type\":\"t\",\"id\":3,\"re\":\"2\"}", "\"re\"");
	parse_bad("{\"type\":\"t\",\"id\":3,\"re\":9007199254740992}",
		  "\"re\"");
	/* only the top-level "id" is the message id */
	m = parse_ok("{\"type\":\"t\",\"id\":3,\"args\":{\"id\":\"x\","
		     "\"re\":-1}}");
	assert_int_equal(proto_id(m), 3);
	assert_int_equal(proto_re(m), 0);
	assert_str(m, "args.id", "x");
	assert_int(m, "args.re", -1);
	proto_msg_free(m);
}

static void test_bad_id(void **state)
{
	(void)state;
	assert_int_equal(parse_bad("{\"type\":\"t\",\"id\":42,\"x\":tru}",
				   "not JSON"), 42);
	assert_int_equal(parse_bad("{\"id\":42,\"x\":1}", "no \"type\""), 42);
	assert_int_equal(parse_bad("{\"id\":42,\"type\":\"\"}", "empty"), 42);
	assert_int_equal(parse_bad("{\"id\":42,\"type\":\"t\",\"a\":[1,2", 
				   "truncated"), 42);
	assert_int_equal(parse_bad("{\"id\":42,\"type\":\"t\"} x",
				   "trailing"), 42);
	/* id after the error, or the id itself wrong: none */
	assert_int_equal(parse_bad("{\"type\":\"t\",\"x\":tru,\"id\":42}",
				   "not JSON"), 0);
	assert_int_equal(parse_bad("{\"type\":\"t\",\"id\":-42}", "\"id\""),
			 0);
	/* only a complete number counts as read */
	assert_int_equal(parse_bad("{\"type\":\"t\",\"id\":42", "truncated"),
			 0);
	assert_int_equal(parse_bad("{\"id\":7,\"type\":\"a\xff\"}",
				   "UTF-8"), 0);
}

/* ------------------------------------------------------ malformed input */

static void test_not_json(void **state)
{
	(void)state;
	parse_bad("hello", "not a JSON object");
	parse_bad("[{\"type\":\"t\",\"id\":1}]", "not a JSON object");
	parse_bad("\"type\"", "not a JSON object");
	parse_bad("42", "not a JSON object");
	parse_bad("true", "not a JSON object");
	parse_bad("null", "not a JSON object");
	parse_bad("   ", "truncated");
	parse_badn("", 0, ERR_INVAL, "empty");
	parse_badn(NULL, 0, ERR_INVAL, "empty");
	parse_bad("{\"type\":}", "not JSON");
	parse_bad("{\"type\" \"t\",\"id\":1}", "not JSON");
	parse_bad("{type:\"t\",\"id\":1}", "not JSON");
	parse_bad("{\"type\":'t',\"id\":1}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,}", "not JSON");
	parse_bad("{\"type\":\"t\",,\"id\":1}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":[1,]}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":[1, \n]}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":[1}]}", "mismatched");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":[{\"b\":1]]}",
		  "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":[,1]}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":[1,,2]}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\"}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":\"b\":1}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":[1}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":{]}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1]", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":nul}", "not JSON");
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":True}", "not JSON");
	parse_bad("{\"type\":\"t\\x\",\"id\":1}", "not JSON");
	parse_bad("{\"type\":\"t\\u12G4\",\"id\":1}", "not JSON");
	parse_bad("{\"type\":\"a\tb\",\"id\":1}", "not JSON");
	parse_bad("{\"type\":\"a\nb\",\"id\":1}", "not JSON");
	/* LEJP would skip these as comments */
	parse_bad("{\"type\":\"t\",# c\n\"id\":1}", "'#'");
	parse_bad("#\n{\"type\":\"t\",\"id\":1}", "'#'");
	parse_bad("{\"type\":\"t\",\"id\":1#\n}", "'#'");
	parse_bad("{\"type\":\"t\",\"id\":1}#", "trailing");
}

static void test_hash_in_strings_ok(void **state)
{
	struct proto_msg *m;

	(void)state;
	m = parse_ok(" \r\n\t{ \"type\" : \"a#b\" , \"#k\" : \"#\" ,"
		     "\"id\" : 1 } \n");
	assert_string_equal(proto_type(m), "a#b");
	assert_str(m, "#k", "#");
	proto_msg_free(m);
}

static void test_truncated(void **state)
{
	static const char full[] = "{\"type\":\"job\",\"id\":9,\"args\":"
		"{\"name\":\"a\\u00e9\",\"n\":[1,true]},\"x\":-1.5e2}";
	size_t n;

	(void)state;
	for (n = 1; n < sizeof(full) - 1; n++)
		parse_badn(full, n, ERR_INVAL, NULL);
	proto_msg_free(parse_ok(full));
}

static void test_trailing(void **state)
{
	(void)state;
	parse_bad("{\"type\":\"t\",\"id\":1}x", "trailing");
	parse_bad("{\"type\":\"t\",\"id\":1} {}", "trailing");
	parse_bad("{\"type\":\"t\",\"id\":1}{\"type\":\"u\",\"id\":2}",
		  "trailing");
	parse_bad("{\"type\":\"t\",\"id\":1}}", "trailing");
	proto_msg_free(parse_ok("{\"type\":\"t\",\"id\":1} \r\n\t "));
}

static void test_nul_byte(void **state)
{
	static const char a[] = "{\"type\":\"a\0b\",\"id\":1}";
	static const char b[] = "{\"type\":\"ab\",\"id\":1}\0";
	static const char c[] = "\0{\"type\":\"ab\",\"id\":1}";

	(void)state;
	parse_badn(a, sizeof(a) - 1, ERR_INVAL, "NUL byte in message");
	parse_badn(b, sizeof(b) - 1, ERR_INVAL, "NUL byte in message");
	parse_badn(c, sizeof(c) - 1, ERR_INVAL, "NUL byte in message");
	/* escaped NULs would cut C strings short: refused too */
	parse_bad("{\"type\":\"a\\u0000b\",\"id\":1}", "NUL character");
	parse_bad("{\"type\":\"t\",\"id\":1,\"k\\u0000\":1}", "NUL character");
}

static void test_invalid_utf8(void **state)
{
	struct proto_msg *m;

	(void)state;
	parse_bad("{\"type\":\"t\xff\",\"id\":1}", "invalid UTF-8");
	parse_bad("{\"type\":\"t\xc3\",\"id\":1}", "invalid UTF-8");
	parse_bad("{\"type\":\"t\",\"id\":1,\"x\":\"\xc0\xaf\"}",
		  "invalid UTF-8");			/* overlong '/' */
	parse_bad("{\"type\":\"t\",\"id\":1,\"x\":\"\xe0\x80\xaf\"}",
		  "invalid UTF-8");			/* overlong */
	parse_bad("{\"type\":\"t\",\"id\":1,\"x\":\"\xed\xa0\xbd\"}",
		  "invalid UTF-8");			/* raw surrogate */
	parse_bad("{\"type\":\"t\",\"id\":1,\"x\":\"\xf4\x90\x80\x80\"}",
		  "invalid UTF-8");			/* > U+10FFFF */
	parse_bad("{\"type\":\"t\",\"id\":1,\"x\":\"\x80\"}", "invalid UTF-8");
	parse_bad("{\"type\":\"t\",\"id\":1,\"\xfe\":1}", "invalid UTF-8");
	m = parse_ok("{\"type\":\"t\",\"id\":1,\"x\":\"\xc3\xa9\xe2\x82\xac"
		     "\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\",\"\xc3\xa9\":2}");
	assert_str(m, "x", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
		   "\xf4\x8f\xbf\xbf");
	assert_int(m, "\xc3\xa9", 2);
	proto_msg_free(m);
}

static void test_escapes(void **state)
{
	struct proto_msg *m;

	(void)state;
	m = parse_ok("{\"type\":\"t\",\"id\":1,"
		     "\"c\":\"a\\nb\\tc\\rd\\be\\ff\\\"g\\\\h\\/i\","
		     "\"e\":\"caf\\u00e9\",\"E\":\"caf\\u00E9\","
		     "\"a\":\"\\u0041\\u007f\\u0080\\u07ff\\u0800\\uffff\","
		     "\"euro\":\"\\u20ac\","
		     "\"emoji\":\"x\\ud83d\\ude00y\","
		     "\"max\":\"\\udbff\\udfff\","
		     "\"ctl\":\"\\u0001\\u001f\","
		     "\"k\\u00e9y\":1,\"k\\ud83d\\ude00\":2}");
	assert_str(m, "c", "a\nb\tc\rd\be\ff\"g\\h/i");
	assert_str(m, "e", "caf\xc3\xa9");
	assert_str(m, "E", "caf\xc3\xa9");
	assert_str(m, "a", "A\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf");
	assert_str(m, "euro", "\xe2\x82\xac");
	assert_str(m, "emoji", "x\xf0\x9f\x98\x80y");
	assert_str(m, "max", "\xf4\x8f\xbf\xbf");
	assert_str(m, "ctl", "\x01\x1f");
	assert_int(m, "k\xc3\xa9y", 1);
	assert_int(m, "k\xf0\x9f\x98\x80", 2);
	proto_msg_free(m);

	parse_bad("{\"type\":\"t\",\"id\":1,\"x\":\"\\ud83d\"}", "\\u escape");
	parse_bad("{\"type\":\"t\",\"id\":1,\"x\":\"\\ude00\"}", "\\u escape");
	parse_bad("{\"type\":\"t\",\"id\":1,\"x\":\"\\ud83dA\"}", "\\u escape");
	parse_bad("{\"type\":\"t\",\"id\":1,\"x\":\"\\ude00\\ud83d\"}",
		  "\\u escape");
	parse_bad("{\"type\":\"t\",\"id\":1,\"x\":\"\\ud83d\\ud83d\"}",
		  "\\u escape");
	parse_bad("{\"type\":\"t\",\"id\":1,\"\\ud83d\":1}", "\\u escape");
}

/* ---------------------------------------------------------------- limits */

static void test_size_limit(void **state)
{
	static const char head[] = "{\"type\":\"t\",\"id\":1}";
	char *buf = malloc(PROTO_MAX_MSG + 1);
	struct proto_msg *m = NULL;
	char why[128];
	int64_t bad;

	(void)state;
	assert_non_null(buf);
	memset(buf, ' ', PROTO_MAX_MSG + 1);
	memcpy(buf, head, sizeof(head) - 1);
	assert_int_equal(proto_parse(buf, PROTO_MAX_MSG, &m, &bad, why,
				     sizeof(why)), ERR_OK);
	assert_string_equal(proto_type(m), "t");
	proto_msg_free(m);
	parse_badn(buf, PROTO_MAX_MSG + 1, ERR_LIMIT, "larger than 65536");
	parse_badn(buf, SIZE_MAX, ERR_LIMIT, "larger");
	free(buf);
}

/* A message with one string field "s" of n copies of unit. */
static char *msg_with_str(const char *unit, size_t n)
{
	struct sb b = { 0 };

	sb_puts(&b, "{\"type\":\"t\",\"id\":1,\"s\":\"");
	sb_rep(&b, unit, n);
	sb_puts(&b, "\"}");
	return b.p;
}

static void test_string_limit(void **state)
{
	struct proto_msg *m;
	char *j;

	(void)state;
	j = msg_with_str("a", PROTO_MAX_STR);
	m = parse_ok(j);
	assert_int_equal(strlen(proto_str(m, "s")), PROTO_MAX_STR);
	proto_msg_free(m);
	free(j);
	j = msg_with_str("a", PROTO_MAX_STR + 1);
	parse_bad(j, "longer than 4096");
	free(j);

	/* the limit is on decoded bytes */
	j = msg_with_str("\\u00e9", PROTO_MAX_STR / 2);
	m = parse_ok(j);
	assert_int_equal(strlen(proto_str(m, "s")), PROTO_MAX_STR);
	proto_msg_free(m);
	free(j);
	j = msg_with_str("\\ud83d\\ude00", PROTO_MAX_STR / 4);
	m = parse_ok(j);
	assert_int_equal(strlen(proto_str(m, "s")), PROTO_MAX_STR);
	proto_msg_free(m);
	free(j);
	j = msg_with_str("\\ud83d\\ude00", PROTO_MAX_STR / 4 + 1);
	parse_bad(j, "longer than 4096");
	free(j);
	j = msg_with_str("\\n", PROTO_MAX_STR + 1);
	parse_bad(j, "longer than 4096");
	free(j);
	/* array elements are held to the limit too */
	{
		struct sb b = { 0 };

		sb_puts(&b, "{\"type\":\"t\",\"id\":1,\"a\":[\"");
		sb_rep(&b, "a", PROTO_MAX_STR + 1);
		sb_puts(&b, "\"]}");
		parse_bad(b.p, "longer than 4096");
		free(b.p);
	}
}

/* Strings around LEJP's 254-byte chunks are reassembled exactly. */
static void test_chunk_boundaries(void **state)
{
	static const size_t lens[] = { 0, 1, 253, 254, 255, 507, 508, 509,
				       762, 1000, 2047, PROTO_MAX_STR };
	struct proto_msg *m;
	struct sb b = { 0 }, want = { 0 };
	size_t i, k;
	char c[2] = { 0, 0 };

	(void)state;
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		b.n = 0;
		want.n = 0;
		sb_add(&want, "", 0);
		sb_puts(&b, "{\"type\":\"t\",\"id\":1,\"s\":\"");
		for (k = 0; k < lens[i]; k++) {
			c[0] = (char)('a' + k % 26);
			sb_puts(&b, c);
			sb_puts(&want, c);
		}
		sb_puts(&b, "\",\"after\":\"z\"}");
		m = parse_ok(b.p);
		assert_string_equal(proto_str(m, "s"), want.p);
		assert_str(m, "after", "z");
		proto_msg_free(m);
	}

	/* multi-byte output of an escape straddling a chunk boundary */
	for (k = 245; k < 260; k++) {
		b.n = 0;
		want.n = 0;
		sb_puts(&b, "{\"type\":\"t\",\"id\":1,\"s\":\"");
		sb_rep(&b, "x", k);
		sb_rep(&want, "x", k);
		sb_puts(&b, "\\ud83d\\ude00\\u20ac\xc3\xa9\\n");
		sb_puts(&want, "\xf0\x9f\x98\x80\xe2\x82\xac\xc3\xa9\n");
		sb_rep(&b, "y", 300);
		sb_rep(&want, "y", 300);
		sb_puts(&b, "\"}");
		m = parse_ok(b.p);
		assert_string_equal(proto_str(m, "s"), want.p);
		proto_msg_free(m);
	}
	free(b.p);
	free(want.p);
}

static void test_field_limit(void **state)
{
	struct proto_msg *m;
	struct sb b = { 0 };
	int i;

	(void)state;
	sb_puts(&b, "{\"type\":\"t\",\"id\":1");
	for (i = 3; i <= PROTO_MAX_FIELDS; i++)
		sb_printf(&b, ",\"f%d\":%d", i, i);
	sb_puts(&b, "}");
	m = parse_ok(b.p);
	assert_int(m, "f3", 3);
	assert_int(m, "f64", 64);
	proto_msg_free(m);

	b.p[b.n - 1] = '\0';
	b.n--;
	sb_puts(&b, ",\"f65\":65}");
	parse_bad(b.p, "more than 64 fields");

	/* members of nested objects and array elements count too */
	b.n = 0;
	sb_puts(&b, "{\"type\":\"t\",\"id\":1,\"a\":[1");
	for (i = 2; i <= PROTO_MAX_FIELDS - 3; i++)
		sb_printf(&b, ",%d", i);
	sb_puts(&b, "]}");
	proto_msg_free(parse_ok(b.p));
	b.p[b.n - 2] = '\0';
	b.n -= 2;
	sb_puts(&b, ",0]}");
	parse_bad(b.p, "more than 64 fields");

	b.n = 0;
	sb_puts(&b, "{\"type\":\"t\",\"id\":1,\"o\":{\"x\":0");
	for (i = 2; i <= PROTO_MAX_FIELDS - 3; i++)
		sb_printf(&b, ",\"x%d\":%d", i, i);
	sb_puts(&b, "}}");
	m = parse_ok(b.p);
	assert_int(m, "o.x61", 61);
	proto_msg_free(m);
	b.p[b.n - 2] = '\0';
	b.n -= 2;
	sb_puts(&b, ",\"y\":0}}");
	parse_bad(b.p, "more than 64 fields");
	free(b.p);
}

static void test_depth_limit(void **state)
{
	struct proto_msg *m;

	(void)state;
	/* levels: top 1, a 2, ..., g 8 */
	m = parse_ok("{\"type\":\"t\",\"id\":1,\"a\":{\"b\":{\"c\":{\"d\":"
		     "{\"e\":{\"f\":{\"g\":{\"h\":7}}}}}}}}");
	assert_int(m, "a.b.c.d.e.f.g.h", 7);
	proto_msg_free(m);
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":{\"b\":{\"c\":{\"d\":"
		  "{\"e\":{\"f\":{\"g\":{\"h\":{}}}}}}}}}",
		  "nesting deeper than 8");
	/* arrays are levels too */
	proto_msg_free(parse_ok("{\"type\":\"t\",\"id\":1,\"a\":{\"b\":{\"c\":"
				"{\"d\":[[[[1]]]]}}}}"));
	parse_bad("{\"type\":\"t\",\"id\":1,\"a\":{\"b\":{\"c\":{\"d\":"
		  "[[[[[1]]]]]}}}}", "nesting deeper than 8");
	/* deep hostile input fails early and cleanly */
	{
		struct sb b = { 0 };

		sb_puts(&b, "{\"type\":\"t\",\"id\":1,\"a\":");
		sb_rep(&b, "{\"a\":", 5000);
		parse_bad(b.p, "nesting deeper than 8");
		b.n = 0;
		sb_puts(&b, "{\"type\":\"t\",\"id\":1,\"a\":");
		sb_rep(&b, "[", 5000);
		parse_bad(b.p, "arrays nested");
		free(b.p);
	}
}

static void test_path_limit(void **state)
{
	struct proto_msg *m;
	struct sb b = { 0 }, k = { 0 };

	(void)state;
	sb_rep(&k, "k", PROTO_MAX_PATH);
	sb_printf(&b, "{\"type\":\"t\",\"id\":1,\"%s\":5}", k.p);
	m = parse_ok(b.p);
	assert_int(m, k.p, 5);
	proto_msg_free(m);

	b.n = 0;
	sb_printf(&b, "{\"type\":\"t\",\"id\":1,\"%sk\":5}", k.p);
	parse_bad(b.p, "path longer than 120");

	/* would overrun LEJP's path buffer without the guard, and its
	 * 8-bit path length would wrap round to a harmless-looking 50 */
	b.n = 0;
	sb_puts(&b, "{\"type\":\"t\",\"id\":1,\"");
	sb_rep(&b, "k", 256 + 50);
	sb_puts(&b, "\":1}");
	parse_bad(b.p, "path longer than 120");
	b.n = 0;
	sb_puts(&b, "{\"type\":\"t\",\"id\":1,\"");
	sb_rep(&b, "k", 5000);
	sb_puts(&b, "\":1}");
	parse_bad(b.p, "path longer than 120");

	/* the dotted path counts, not each key */
	b.n = 0;
	sb_puts(&b, "{\"type\":\"t\",\"id\":1,\"");
	sb_rep(&b, "a", 60);
	sb_puts(&b, "\":{\"");
	sb_rep(&b, "b", 60);
	sb_puts(&b, "\":{\"c\":1}}}");
	parse_bad(b.p, "path longer than 120");
	free(b.p);
	free(k.p);
}

static void test_why_buffer(void **state)
{
	struct proto_msg *m = NULL;
	char why[8];
	int64_t bad;
	static const char j[] = "{\"type\":\"t\",\"id\":0}";

	(void)state;
	memset(why, 'x', sizeof(why));
	assert_int_equal(proto_parse(j, sizeof(j) - 1, &m, &bad, why,
				     sizeof(why)), ERR_INVAL);
	assert_int_equal(strlen(why), sizeof(why) - 1);
	assert_int_equal(proto_parse(j, sizeof(j) - 1, &m, NULL, NULL, 0),
			 ERR_INVAL);
	assert_null(m);
	assert_int_equal(proto_parse(j, sizeof(j) - 1, NULL, NULL, why,
				     sizeof(why)), ERR_INVAL);
	/* a key with control characters is not echoed raw into the log */
	{
		static const char k[] = "{\"type\":\"t\",\"id\":1,"
			"\"a\\u001b[31m\\u00e9\":01}";
		char w[128];

		assert_int_equal(proto_parse(k, sizeof(k) - 1, &m, &bad, w,
					     sizeof(w)), ERR_INVAL);
		assert_string_equal(w, "bad number at \"a?[31m??\"");
	}
}

/* --------------------------------------------------------------- encoder */

static char *finish_ok(struct proto_w *w, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;

	assert_int_equal(proto_w_finish(w, &buf, &n), ERR_OK);
	assert_non_null(buf);
	assert_int_equal(strlen(buf), n);
	if (len)
		*len = n;
	return buf;
}

static void test_w_basic(void **state)
{
	struct proto_w *w = proto_w_new(1024, 0);
	char *buf;
	size_t n;

	(void)state;
	assert_non_null(w);
	proto_w_begin(w, "status", 2);
	proto_w_str(w, "operation", "idle");
	proto_w_int(w, "uptime", 3600);
	proto_w_int(w, "neg", INT64_MIN);
	proto_w_int(w, "pos", INT64_MAX);
	proto_w_bool(w, "t", true);
	proto_w_bool(w, "f", false);
	proto_w_null(w, "n");
	proto_w_str(w, "s", NULL);
	buf = finish_ok(w, &n);
	assert_string_equal(buf, "{\"type\":\"status\",\"id\":2,"
			    "\"operation\":\"idle\",\"uptime\":3600,"
			    "\"neg\":-9223372036854775808,"
			    "\"pos\":9223372036854775807,"
			    "\"t\":true,\"f\":false,\"n\":null,\"s\":null}");

	{
		struct proto_msg *m = parse_ok(buf);
		bool b;

		assert_string_equal(proto_type(m), "status");
		assert_int_equal(proto_id(m), 2);
		assert_int(m, "neg", INT64_MIN);
		assert_int(m, "pos", INT64_MAX);
		assert_true(proto_bool(m, "t", &b) && b);
		assert_true(proto_bool(m, "f", &b) && !b);
		proto_msg_free(m);
	}

	/* begin resets */
	proto_w_begin(w, "ack", 5);
	proto_w_int(w, "re", 2);
	buf = finish_ok(w, NULL);
	assert_string_equal(buf, "{\"type\":\"ack\",\"id\":5,\"re\":2}");
	proto_w_free(w);
	proto_w_free(NULL);
	assert_null(proto_w_new(0, 16));
	assert_null(proto_w_new(SIZE_MAX, 16));
}

static void test_w_escaping(void **state)
{
	static const char tail[] = "\"\\\"\\\\ \x7f/caf\xc3\xa9 "
		"\xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf end";
	struct proto_w *w = proto_w_new(4096, 0);
	struct proto_msg *m;
	char all[160], *buf;
	size_t i, n = 0;

	(void)state;
	proto_w_begin(w, "t", 1);
	proto_w_str(w, "s", "a\"b\\c\n\x01/\x7f");
	buf = finish_ok(w, NULL);
	assert_string_equal(buf, "{\"type\":\"t\",\"id\":1,"
			    "\"s\":\"a\\\"b\\\\c\\u000a\\u0001/\\u007f\"}");

	/* every control character, quotes, backslashes, UTF-8 */
	for (i = 1; i < 0x20; i++)
		all[n++] = (char)i;
	memcpy(all + n, tail, sizeof(tail));
	proto_w_begin(w, "t\"q", 7);
	proto_w_str(w, "all", all);
	proto_w_str(w, "k\"e\\y\n", "v");
	proto_w_str(w, "empty", "");
	buf = finish_ok(w, NULL);
	assert_null(strchr(buf, '\n'));
	m = parse_ok(buf);
	assert_string_equal(proto_type(m), "t\"q");
	assert_str(m, "all", all);
	assert_str(m, "k\"e\\y\n", "v");
	assert_str(m, "empty", "");
	proto_msg_free(m);

	/* invalid UTF-8 never reaches the wire */
	proto_w_begin(w, "t", 1);
	proto_w_str(w, "s", "a\xff" "b\xc3" "c\xed\xa0\x80" "d");
	buf = finish_ok(w, NULL);
	assert_string_equal(buf, "{\"type\":\"t\",\"id\":1,\"s\":"
			    "\"a\\ufffdb\\ufffdc\\ufffd\\ufffd\\ufffdd\"}");
	m = parse_ok(buf);
	assert_str(m, "s", "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd"
		   "\xef\xbf\xbd\xef\xbf\xbd" "d");
	proto_msg_free(m);
	proto_w_free(w);
}

static void test_w_nested(void **state)
{
	struct proto_w *w = proto_w_new(1024, 0);
	struct proto_msg *m;
	char *buf;
	int i;

	(void)state;
	proto_w_begin(w, "job", 9);
	proto_w_obj(w, "args");
	proto_w_str(w, "name", "x");
	proto_w_obj(w, "deep");
	proto_w_int(w, "n", 5);
	proto_w_end(w);
	proto_w_obj(w, "empty");
	proto_w_end(w);
	proto_w_end(w);
	proto_w_str(w, "after", "y");
	buf = finish_ok(w, NULL);
	assert_string_equal(buf, "{\"type\":\"job\",\"id\":9,\"args\":"
			    "{\"name\":\"x\",\"deep\":{\"n\":5},\"empty\":{}},"
			    "\"after\":\"y\"}");
	m = parse_ok(buf);
	assert_str(m, "args.name", "x");
	assert_int(m, "args.deep.n", 5);
	assert_str(m, "after", "y");
	proto_msg_free(m);

	/* as deep as the parser takes, and no deeper */
	proto_w_begin(w, "t", 1);
	for (i = 2; i <= PROTO_MAX_DEPTH; i++)
		proto_w_obj(w, "o");
	proto_w_int(w, "v", 1);
	for (i = 2; i <= PROTO_MAX_DEPTH; i++)
		proto_w_end(w);
	buf = finish_ok(w, NULL);
	m = parse_ok(buf);
	assert_int(m, "o.o.o.o.o.o.o.v", 1);
	proto_msg_free(m);
	proto_w_begin(w, "t", 1);
	for (i = 2; i <= PROTO_MAX_DEPTH + 1; i++)
		proto_w_obj(w, "o");
	for (i = 2; i <= PROTO_MAX_DEPTH + 1; i++)
		proto_w_end(w);
	assert_int_equal(proto_w_finish(w, &buf, &(size_t){ 0 }), ERR_LIMIT);
	assert_null(buf);
	proto_w_free(w);
}

static void test_w_misuse(void **state)
{
	struct proto_w *w = proto_w_new(256, 0);
	char *buf = (char *)&buf;
	size_t n = 99;

	(void)state;
	/* nothing before begin */
	proto_w_str(w, "a", "b");
	assert_int_equal(proto_w_finish(w, &buf, &n), ERR_STATE);
	assert_null(buf);
	assert_int_equal(n, 0);

	proto_w_begin(w, "t", 1);
	proto_w_end(w);
	assert_int_equal(proto_w_finish(w, &buf, &n), ERR_STATE);

	proto_w_begin(w, "t", 1);
	proto_w_obj(w, "o");
	assert_int_equal(proto_w_finish(w, &buf, &n), ERR_STATE);

	proto_w_begin(w, "t", 0);
	assert_int_equal(proto_w_finish(w, &buf, &n), ERR_INVAL);
	proto_w_begin(w, "t", PROTO_MAX_ID + 1);
	assert_int_equal(proto_w_finish(w, &buf, &n), ERR_INVAL);

	/* finished means closed */
	proto_w_begin(w, "t", 1);
	buf = finish_ok(w, NULL);
	assert_string_equal(buf, "{\"type\":\"t\",\"id\":1}");
	proto_w_int(w, "late", 1);
	assert_int_equal(proto_w_finish(w, &buf, &n), ERR_STATE);
	assert_null(buf);

	assert_int_equal(proto_w_finish(NULL, &buf, &n), ERR_INVAL);
	proto_w_begin(NULL, "t", 1);
	proto_w_str(NULL, "a", "b");
	proto_w_free(w);
}

static void test_w_overflow(void **state)
{
	static const char want[] = "{\"type\":\"t\",\"id\":1,\"s\":\"abc\"}";
	size_t cap = sizeof(want) - 1;
	struct proto_w *w;
	char *buf;
	size_t n;

	(void)state;
	/* exactly fits */
	w = proto_w_new(cap, 0);
	proto_w_begin(w, "t", 1);
	proto_w_str(w, "s", "abc");
	buf = finish_ok(w, &n);
	assert_int_equal(n, cap);
	assert_string_equal(buf, want);
	proto_w_free(w);

	/* one byte short, only the closing brace is missing */
	w = proto_w_new(cap - 1, 0);
	proto_w_begin(w, "t", 1);
	proto_w_str(w, "s", "abc");
	buf = (char *)&buf;
	n = 99;
	assert_int_equal(proto_w_finish(w, &buf, &n), ERR_LIMIT);
	assert_null(buf);
	assert_int_equal(n, 0);

	/* latched: later small writes do not un-fail it */
	proto_w_begin(w, "t", 1);
	proto_w_str(w, "s", "abcdefghijklmnopqrstuvwxyz");
	proto_w_int(w, "i", 1);
	assert_int_equal(proto_w_finish(w, &buf, &n), ERR_LIMIT);
	assert_null(buf);

	/* and begin starts afresh */
	proto_w_begin(w, "t", 1);
	buf = finish_ok(w, NULL);
	assert_string_equal(buf, "{\"type\":\"t\",\"id\":1}");
	proto_w_free(w);

	/* an escape that does not fit whole */
	w = proto_w_new(26, 0);
	proto_w_begin(w, "t", 1);
	proto_w_str(w, "s", "\x01");
	assert_int_equal(proto_w_finish(w, &buf, &n), ERR_LIMIT);
	proto_w_free(w);
}

static void test_w_arrays(void **state)
{
	struct proto_w *w = proto_w_new(256, 0);
	struct proto_msg *m = NULL;
	char *buf;
	size_t len;
	int64_t v;

	(void)state;
	proto_w_begin(w, "status", 1);
	proto_w_arr(w, "tunnels");
	proto_w_obj(w, NULL);
	proto_w_int(w, "stream", 2);
	proto_w_end(w);
	proto_w_int(w, NULL, 7);
	proto_w_end(w);
	proto_w_str(w, "after", "x");
	assert_int_equal(proto_w_finish(w, &buf, &len), ERR_OK);
	assert_string_equal(buf, "{\"type\":\"status\",\"id\":1,"
			    "\"tunnels\":[{\"stream\":2},7],\"after\":\"x\"}");
	assert_int_equal(proto_parse(buf, len, &m, NULL, NULL, 0), ERR_OK);
	assert_string_equal(proto_str(m, "after"), "x");
	assert_false(proto_int(m, "tunnels", &v));
	proto_msg_free(m);

	/* A key inside an array, or none inside an object, is misuse. */
	proto_w_begin(w, "x", 1);
	proto_w_arr(w, "a");
	proto_w_int(w, "k", 1);
	assert_int_equal(proto_w_finish(w, &buf, &len), ERR_STATE);
	proto_w_begin(w, "x", 1);
	proto_w_int(w, NULL, 1);
	assert_int_equal(proto_w_finish(w, &buf, &len), ERR_STATE);
	proto_w_free(w);
}

static void test_w_headroom(void **state)
{
	struct proto_w *w = proto_w_new(64, LWS_PRE);
	char *buf;
	size_t n;

	(void)state;
	proto_w_begin(w, "ack", 5);
	proto_w_int(w, "re", 2);
	buf = finish_ok(w, &n);
	/* ASan flags this if the headroom is not ours */
	memset(buf - LWS_PRE, 0xa5, LWS_PRE);
	assert_string_equal(buf, "{\"type\":\"ack\",\"id\":5,\"re\":2}");
	assert_int_equal(n, 28);
	proto_w_free(w);
}

/* --------------------------------------------------------- reason table */

static void test_reason_text(void **state)
{
	static const char *const tab[][2] = {
		{ "auth_failed", "Authorization failed" },
		{ "credentials_invalid", "Credentials invalid" },
		{ "insufficient_permissions", "Insufficient permissions" },
		{ "legacy", "Legacy" },
		{ "max_sessions", "Maximum concurrent sessions exceeded" },
		{ "password_change_required",
		  "Service user needs a new password" },
		{ "no_authorisation",
		  "No authorisation supplied, features limited" },
		{ "no_rights", "No user rights enabled for this system" },
		{ "remote_ops_not_allowed", "Remote operations not allowed" },
		{ "monitor_read_disabled", "Service-monitor read not enabled" },
		{ "disabled_by_admin",
		  "Service user disabled by administrator" },
		{ "user_locked", "Service user temporarily locked" },
		{ "user_disabled", "Service user disabled" },
		{ "password_expired", "Service user password expired" },
		{ "not_primary",
		  "Not reachable / not a valid primary IP Office" },
		{ "upgrade_rights", "Upgrade rights not enabled" },
		{ "protocol", "Connection failed" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		assert_string_equal(proto_reason_text(tab[i][0]), tab[i][1]);
	assert_string_equal(proto_reason_text("frobnicated"),
			    "Connection failed");
	assert_string_equal(proto_reason_text(""), "Connection failed");
	assert_string_equal(proto_reason_text("USER_LOCKED"),
			    "Connection failed");
	assert_string_equal(proto_reason_text(NULL), "Connection failed");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_hello),
		cmocka_unit_test(test_example_welcome_refused),
		cmocka_unit_test(test_example_status_ack),
		cmocka_unit_test(test_example_job),
		cmocka_unit_test(test_example_unsupported_error),
		cmocka_unit_test(test_example_streams),
		cmocka_unit_test(test_nested_paths),
		cmocka_unit_test(test_unknown_fields),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_duplicates_last_wins),
		cmocka_unit_test(test_type),
		cmocka_unit_test(test_id_re),
		cmocka_unit_test(test_bad_id),
		cmocka_unit_test(test_not_json),
		cmocka_unit_test(test_hash_in_strings_ok),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_trailing),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_string_limit),
		cmocka_unit_test(test_chunk_boundaries),
		cmocka_unit_test(test_field_limit),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_path_limit),
		cmocka_unit_test(test_why_buffer),
		cmocka_unit_test(test_w_basic),
		cmocka_unit_test(test_w_escaping),
		cmocka_unit_test(test_w_nested),
		cmocka_unit_test(test_w_misuse),
		cmocka_unit_test(test_w_overflow),
		cmocka_unit_test(test_w_arrays),
		cmocka_unit_test(test_string_arrays),
		cmocka_unit_test(test_w_headroom),
		cmocka_unit_test(test_reason_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
