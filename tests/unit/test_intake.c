/*
 * test_intake — the syslog receiver's parsing and framing: classification
 * of the RFC 5424 and RFC 3164 examples and of malformed and binary input,
 * UDP trailer trimming, and RFC 6587 TCP framing (octet counting and LF
 * framing mixed on one connection, any split of the bytes, trailers,
 * truncation, framing errors, and a 100 000-message stream with a rough
 * throughput figure).
 *
 * Every framing test feeds its stream three ways — whole, byte by byte and
 * cut at random points (fixed seed) — and expects the same messages, since
 * TCP may split the bytes anywhere.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "intake.h"

#define BOM "\xEF\xBB\xBF"

/* xorshift32: a fixed, well-spread sequence. */
static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* ------------------------------------------------------- classification */

struct ex {
	const char *msg;
	size_t len;	/* 0: strlen(msg) */
	enum intake_kind kind;
};

static void check_table(const struct ex *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = t[i].len ? t[i].len : strlen(t[i].msg);
		enum intake_kind k = intake_classify(t[i].msg, len);

		if (k != t[i].kind)
			print_error("#%zu '%.*s': %s, want %s\n", i, (int)len,
				    t[i].msg, intake_kind_name(k),
				    intake_kind_name(t[i].kind));
		assert_int_equal(k, t[i].kind);
	}
}

/* RFC 5424 6.5's four examples, and the header's corners. */
static void test_classify_rfc5424(void **state)
{
	static const struct ex t[] = {
		{ "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - "
		  "ID47 - " BOM "'su root' failed for lonvick on /dev/pts/8",
		  0, INTAKE_RFC5424 },
		{ "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc "
		  "8710 - - %% It's time to make the do-nuts.", 0,
		  INTAKE_RFC5424 },
		{ "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com "
		  "evntslog - ID47 [exampleSDID@32473 iut=\"3\" "
		  "eventSource=\"Application\" eventID=\"1011\"] " BOM
		  "An application event log entry...", 0, INTAKE_RFC5424 },
		{ "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com "
		  "evntslog - ID47 [exampleSDID@32473 iut=\"3\" "
		  "eventSource=\"Application\" eventID=\"1011\"]"
		  "[examplePriority@32473 class=\"high\"]", 0,
		  INTAKE_RFC5424 },
		/* The same without the BOM. */
		{ "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - "
		  "ID47 - 'su root' failed for lonvick on /dev/pts/8", 0,
		  INTAKE_RFC5424 },
		/* All NILVALUE, no MSG; lowest and highest PRI. */
		{ "<0>1 - - - - - -", 0, INTAKE_RFC5424 },
		{ "<191>1 - - - - - -", 0, INTAKE_RFC5424 },
		{ "<13>1 - - - - - - ", 0, INTAKE_RFC5424 },
		{ "<13>1 - - - - - - " BOM, 0, INTAKE_RFC5424 },
		/* Timestamps: no fraction, numeric offsets, nanoseconds; the
		 * shape only, so month 13 passes. */
		{ "<13>1 2024-02-29T23:59:60+14:00 h a p m - x", 0,
		  INTAKE_RFC5424 },
		{ "<13>1 1985-04-12T23:20:50.52-00:30 h a p m - x", 0,
		  INTAKE_RFC5424 },
		{ "<13>1 2024-05-01T10:00:00.123456789Z h a p m - x", 0,
		  INTAKE_RFC5424 },
		{ "<13>1 2024-13-45T99:99:99Z h a p m - x", 0,
		  INTAKE_RFC5424 },
		/* SD: no params, escapes, an unescaped ']' in a value. */
		{ "<13>1 - h a p m [origin] x", 0, INTAKE_RFC5424 },
		{ "<13>1 - h a p m [x@1 k=\"a\\\"b\\]c\\\\\" e=\"\"] x", 0,
		  INTAKE_RFC5424 },
		{ "<13>1 - h a p m [x@1 k=\"a]b\"][y z=\"\\n\"]", 0,
		  INTAKE_RFC5424 },
		/* UTF-8 in MSG and in a param value; TAB in MSG. */
		{ "<13>1 - h a p m [x k=\"Grüße\"] Grüße € 𝄞\tend", 0,
		  INTAKE_RFC5424 },
		/* Field lengths at the RFC's maximum: APP-NAME 48, MSGID 32. */
		{ "<13>1 - h 123456789012345678901234567890123456789012345678 p "
		  "12345678901234567890123456789012 - x", 0, INTAKE_RFC5424 },
	};

	(void)state;
	check_table(t, sizeof(t) / sizeof(t[0]));
}

/* RFC 3164 5.4's examples, and a valid PRI as the only requirement. */
static void test_classify_rfc3164(void **state)
{
	static const struct ex t[] = {
		{ "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for "
		  "lonvick on /dev/pts/8", 0, INTAKE_RFC3164 },
		{ "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!", 0,
		  INTAKE_RFC3164 },
		{ "<165>Aug 24 05:34:00 CST 1987 mymachine myproc[10]: %% "
		  "It's time to make the do-nuts.  %%  Ingredients: Mix=OK, "
		  "Jelly=OK # Devices: Mixer=OK, Jelly_Injector=OK, "
		  "Frier=OK # Transport: Conveyer1=OK, Conveyer2=OK # %%", 0,
		  INTAKE_RFC3164 },
		{ "<0>1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org "
		  "10.1.2.3 sched[0]: That's All Folks!", 0, INTAKE_RFC3164 },
		{ "<134>Mar  3 08:15:02 192.168.42.1 IPOffice: LIC: license "
		  "check ok", 0, INTAKE_RFC3164 },
		{ "<13>", 0, INTAKE_RFC3164 },
		{ "<191>x", 0, INTAKE_RFC3164 },
		{ "<13>no timestamp at all\ttab", 0, INTAKE_RFC3164 },
		{ "<13>Grüße aus Köln €", 0, INTAKE_RFC3164 },
		{ "<13>" BOM "with a BOM", 0, INTAKE_RFC3164 },
		/* Text that starts with a number is not another version. */
		{ "<13>2 files deleted", 0, INTAKE_RFC3164 },
		{ "<13>1000 2003-10-11T22:14:15Z h", 0, INTAKE_RFC3164 },
		{ "<13>1", 0, INTAKE_RFC3164 },
	};

	(void)state;
	check_table(t, sizeof(t) / sizeof(t[0]));
}

static void test_classify_malformed(void **state)
{
	static const struct ex t[] = {
		{ "", 0, INTAKE_MALFORMED },
		{ "no pri at all", 0, INTAKE_MALFORMED },
		{ " <13>leading space", 0, INTAKE_MALFORMED },
		{ "<192>x", 0, INTAKE_MALFORMED },
		{ "<999>x", 0, INTAKE_MALFORMED },
		{ "<1000>x", 0, INTAKE_MALFORMED },
		{ "<01>x", 0, INTAKE_MALFORMED },
		{ "<00>x", 0, INTAKE_MALFORMED },
		{ "<013>x", 0, INTAKE_MALFORMED },
		{ "<>x", 0, INTAKE_MALFORMED },
		{ "<-1>x", 0, INTAKE_MALFORMED },
		{ "<1a>x", 0, INTAKE_MALFORMED },
		{ "<13", 0, INTAKE_MALFORMED },
		{ "<", 0, INTAKE_MALFORMED },
		/* 5424 with fields missing. */
		{ "<34>1 ", 0, INTAKE_MALFORMED },
		{ "<34>1 2003-10-11T22:14:15.003Z", 0, INTAKE_MALFORMED },
		{ "<34>1 2003-10-11T22:14:15.003Z mymachine su", 0,
		  INTAKE_MALFORMED },
		{ "<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47", 0,
		  INTAKE_MALFORMED },
		{ "<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 ", 0,
		  INTAKE_MALFORMED },
		{ "<34>1 - - - - -", 0, INTAKE_MALFORMED },
		{ "<34>1 - - - - - ", 0, INTAKE_MALFORMED },
		{ "<34>1  - - - - -", 0, INTAKE_MALFORMED },
		{ "<34>1 - - -  - - -", 0, INTAKE_MALFORMED },
		/* A 3164 line with a "1 " in front claims 5424. */
		{ "<34>1 Oct 11 22:14:15 mymachine su: hello", 0,
		  INTAKE_MALFORMED },
		/* Timestamp shapes. */
		{ "<13>1 2003-10-11 h a p m - x", 0, INTAKE_MALFORMED },
		{ "<13>1 2003-10-11T22:14:15 h a p m - x", 0,
		  INTAKE_MALFORMED },
		{ "<13>1 2003-10-11t22:14:15Z h a p m - x", 0,
		  INTAKE_MALFORMED },
		{ "<13>1 2003-10-11T22:14:15.Z h a p m - x", 0,
		  INTAKE_MALFORMED },
		{ "<13>1 2003-10-11T22:14:15.1234567890Z h a p m - x", 0,
		  INTAKE_MALFORMED },
		{ "<13>1 2003-10-11T22:14:15+0100 h a p m - x", 0,
		  INTAKE_MALFORMED },
		{ "<13>1 03-10-11T22:14:15Z h a p m - x", 0,
		  INTAKE_MALFORMED },
		/* Field lengths one over: APP-NAME 49, MSGID 33. */
		{ "<13>1 - h 1234567890123456789012345678901234567890123456789 "
		  "p m - x", 0, INTAKE_MALFORMED },
		{ "<13>1 - h a p 123456789012345678901234567890123 - x", 0,
		  INTAKE_MALFORMED },
		/* Non-ASCII in a header field. */
		{ "<13>1 - hö a p m - x", 0, INTAKE_MALFORMED },
		/* Structured data. */
		{ "<13>1 - h a p m x", 0, INTAKE_MALFORMED },
		{ "<13>1 - h a p m [] x", 0, INTAKE_MALFORMED },
		{ "<13>1 - h a p m [x", 0, INTAKE_MALFORMED },
		{ "<13>1 - h a p m [x a] m", 0, INTAKE_MALFORMED },
		{ "<13>1 - h a p m [x a=b] m", 0, INTAKE_MALFORMED },
		{ "<13>1 - h a p m [x a=\"b] m", 0, INTAKE_MALFORMED },
		{ "<13>1 - h a p m [x a=\"b\\\"] m", 0, INTAKE_MALFORMED },
		{ "<13>1 - h a p m [x  a=\"b\"] m", 0, INTAKE_MALFORMED },
		{ "<13>1 - h a p m [x a=\"b\"]m", 0, INTAKE_MALFORMED },
		/* (and what is after SD and SP is MSG, whatever it is) */
		{ "<13>1 - h a p m [x a=\"b\"] [y] m", 0, INTAKE_RFC5424 },
		{ "<13>1 - h a p m -x", 0, INTAKE_MALFORMED },
		{ "<13>1 - h a p m [123456789012345678901234567890123]", 0,
		  INTAKE_MALFORMED },
		/* Another version, with a 5424 header after it. */
		{ "<34>2 2003-10-11T22:14:15.003Z mymachine.example.com su - "
		  "ID47 - hello", 0, INTAKE_MALFORMED },
		{ "<34>2 - - - - - -", 0, INTAKE_MALFORMED },
		{ "<34>10 - - - - - -", 0, INTAKE_MALFORMED },
	};
	char host[300];

	(void)state;
	check_table(t, sizeof(t) / sizeof(t[0]));

	/* HOSTNAME: 255 characters pass, 256 do not. */
	memcpy(host, "<13>1 - ", 8);
	memset(host + 8, 'h', 255);
	memcpy(host + 8 + 255, " a p m -", 9);
	assert_int_equal(intake_classify(host, strlen(host)), INTAKE_RFC5424);
	memset(host + 8, 'h', 256);
	memcpy(host + 8 + 256, " a p m -", 9);
	assert_int_equal(intake_classify(host, strlen(host)),
			 INTAKE_MALFORMED);

	assert_int_equal(intake_classify(NULL, 0), INTAKE_MALFORMED);
	assert_int_equal(intake_classify(NULL, 5), INTAKE_MALFORMED);
	/* Only len bytes count: the rest of a longer buffer is not read. */
	assert_int_equal(intake_classify("<13>1 - - - - - -", 16),
			 INTAKE_MALFORMED);
	assert_int_equal(intake_classify("<13>x", 3), INTAKE_MALFORMED);
}

static void test_classify_binary(void **state)
{
	static const struct ex t[] = {
		{ "<13>a\0b", 7, INTAKE_BINARY },
		{ "<13>ab\0", 7, INTAKE_BINARY },
		{ "\0\0\0\0", 4, INTAKE_BINARY },
		{ "<13>\x1b[31mred", 0, INTAKE_BINARY },
		{ "<13>bell\x07", 0, INTAKE_BINARY },
		{ "<13>del\x7f", 0, INTAKE_BINARY },
		/* Lines are text: a multi-line message (a stack trace) is
		 * kept, made one line by the store. */
		{ "<13>two\nlines", 0, INTAKE_RFC3164 },
		{ "<13>cr\rinside", 0, INTAKE_RFC3164 },
		{ "<13>trailing lf\n", 0, INTAKE_RFC3164 },
		{ "<13>vt\x0binside", 0, INTAKE_BINARY },
		/* Not UTF-8: a lone continuation, Latin-1, a cut sequence,
		 * 0xfe/0xff, beyond U+10FFFF. */
		{ "<13>\x80", 0, INTAKE_BINARY },
		{ "<13>Gr\xfc\xdf" "e", 0, INTAKE_BINARY },
		{ "<13>cut \xe2\x82", 0, INTAKE_BINARY },
		{ "<13>cut \xe2\x82 x", 0, INTAKE_BINARY },
		{ "<13>\xf0\x9d\x84", 0, INTAKE_BINARY },
		{ "<13>\xff\xfe", 0, INTAKE_BINARY },
		{ "<13>\xf4\x90\x80\x80", 0, INTAKE_BINARY },
		{ "<13>\xf5\x80\x80\x80", 0, INTAKE_BINARY },
		/* Overlong forms of '/' and of U+07FF, U+FFFF. */
		{ "<13>\xc0\xaf", 0, INTAKE_BINARY },
		{ "<13>\xc1\xbf", 0, INTAKE_BINARY },
		{ "<13>\xe0\x80\xaf", 0, INTAKE_BINARY },
		{ "<13>\xe0\x9f\xbf", 0, INTAKE_BINARY },
		{ "<13>\xf0\x80\x80\xaf", 0, INTAKE_BINARY },
		{ "<13>\xf0\x8f\xbf\xbf", 0, INTAKE_BINARY },
		/* A UTF-16 surrogate; a C1 control (NEL). */
		{ "<13>\xed\xa0\x80", 0, INTAKE_BINARY },
		{ "<13>\xc2\x85", 0, INTAKE_BINARY },
		/* Binary wins over a broken PRI and in a valid 5424 MSG
		 * (MSG-ANY is not stored). */
		{ "no pri\x01", 0, INTAKE_BINARY },
		{ "<34>1 - - - - - - \x01", 0, INTAKE_BINARY },
		{ "<34>1 - - - - - - " BOM "\xc3\x28", 0, INTAKE_BINARY },
		/* The edges that are valid: U+0080 is C1 but U+00A0, U+07FF,
		 * U+0800, U+D7FF, U+E000, U+FFFF, U+10000, U+10FFFF pass. */
		{ "<13>\xc2\x80", 0, INTAKE_BINARY },
		{ "<13>\xc2\xa0\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"
		  "\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 0,
		  INTAKE_RFC3164 },
	};

	(void)state;
	check_table(t, sizeof(t) / sizeof(t[0]));
	/* A sequence cut by len is cut, whatever the buffer holds after. */
	assert_int_equal(intake_classify("<13>\xe2\x82\xac", 7),
			 INTAKE_RFC3164);
	assert_int_equal(intake_classify("<13>\xe2\x82\xac", 6),
			 INTAKE_BINARY);
	assert_int_equal(intake_classify("<13>\xf0\x9d\x84\x9e", 7),
			 INTAKE_BINARY);
}

static void test_kind_names(void **state)
{
	(void)state;
	assert_string_equal(intake_kind_name(INTAKE_RFC5424), "rfc5424");
	assert_string_equal(intake_kind_name(INTAKE_RFC3164), "rfc3164");
	assert_string_equal(intake_kind_name(INTAKE_MALFORMED), "malformed");
	assert_string_equal(intake_kind_name(INTAKE_BINARY), "binary");
	assert_string_equal(intake_kind_name((enum intake_kind)INTAKE_KINDS),
			    "unknown");
}

static void test_trim(void **state)
{
	static const struct {
		const char *in;
		size_t len, want;
	} t[] = {
		{ "<13>abc", 7, 7 },
		{ "<13>abc\n", 8, 7 },
		{ "<13>abc\r\n", 9, 7 },
		{ "<13>abc\0", 8, 7 },
		{ "<13>abc\n\0", 9, 7 },
		{ "<13>abc\0\0\0", 10, 7 },
		{ "<13>a\nb\n", 8, 7 },	/* only trailing ones */
		{ "<13>abc \n", 9, 8 },	/* a space is content */
		{ "<13>abc\t\n", 9, 8 },
		{ "\n\r\0", 3, 0 },
		{ "", 0, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_int_equal(intake_trim(t[i].in, t[i].len), t[i].want);
	assert_int_equal(intake_trim(NULL, 3), 0);
	/* A trimmed datagram classifies as its text. */
	assert_int_equal(intake_classify("<13>abc\r\n",
					 intake_trim("<13>abc\r\n", 9)),
			 INTAKE_RFC3164);
}

/* ------------------------------------------------------------ framing */

#define COL_MAX 64
#define COL_LEN 600

/* What a framer delivered. */
struct col {
	size_t n;
	size_t len[COL_MAX];
	bool trunc[COL_MAX];
	char m[COL_MAX][COL_LEN];
};

static void collect(void *arg, const char *m, size_t len, bool truncated)
{
	struct col *c = arg;

	assert_true(c->n < COL_MAX);
	assert_true(len < COL_LEN);
	memcpy(c->m[c->n], m, len);
	c->len[c->n] = len;
	c->trunc[c->n] = truncated;
	c->n++;
}

/* An expected message; '!' first marks one delivered truncated. */
struct want {
	const char *m;
	size_t len;	/* 0: strlen(m) */
};

enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };

/* Feeds s[0..len) to a new framer cut as split says; returns the result of
 * the last feed and fills c. After an error the rest is still fed: it must
 * deliver nothing. */
static err_t run(size_t max, const char *s, size_t len, enum split split,
		 uint32_t *seed, struct col *c)
{
	struct intake_tcp *f = intake_tcp_new(max);
	err_t e = ERR_OK;
	size_t i = 0;

	assert_non_null(f);
	memset(c, 0, sizeof(*c));
	while (i < len) {
		size_t k = len - i;
		err_t r;

		if (split == SPLIT_BYTES)
			k = 1;
		else if (split == SPLIT_RANDOM && k > 1)
			k = 1 + rnd(seed) % (k < 40 ? k : 40);
		r = intake_tcp_feed(f, (const uint8_t *)s + i, k, collect, c);
		if (e == ERR_OK)
			e = r;
		else
			assert_int_equal(r, e);	/* latched */
		i += k;
	}
	intake_tcp_free(f);
	return e;
}

static void expect(const struct col *c, const struct want *w, size_t n)
{
	if (c->n != n)
		print_error("%zu messages, want %zu\n", c->n, n);
	assert_int_equal(c->n, n);
	for (size_t i = 0; i < n; i++) {
		bool trunc = w[i].m[0] == '!';
		const char *m = w[i].m + trunc;
		size_t len = w[i].len ? w[i].len : strlen(m);

		if (c->len[i] != len || memcmp(c->m[i], m, len) != 0)
			print_error("#%zu: '%.*s', want '%.*s'\n", i,
				    (int)c->len[i], c->m[i], (int)len, m);
		assert_int_equal(c->len[i], len);
		assert_memory_equal(c->m[i], m, len);
		assert_int_equal(c->trunc[i], trunc);
	}
}

/* The stream whole, byte by byte and at 200 random cuts gives want and
 * ends with err. */
static void check_stream(size_t max, const char *s, size_t len,
			 const struct want *w, size_t n, err_t err)
{
	static struct col c;
	uint32_t seed = 0x9e3779b9u;

	if (len == 0)
		len = strlen(s);
	assert_int_equal(run(max, s, len, SPLIT_WHOLE, &seed, &c), err);
	expect(&c, w, n);
	assert_int_equal(run(max, s, len, SPLIT_BYTES, &seed, &c), err);
	expect(&c, w, n);
	for (int k = 0; k < 200; k++) {
		assert_int_equal(run(max, s, len, SPLIT_RANDOM, &seed, &c),
				 err);
		expect(&c, w, n);
	}
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_tcp_mixed_framing(void **state)
{
	static const char s[] =
		"67 <34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 - "
		"su root failed"
		"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!\n"
		"9 <13>a\nb c"		/* LF inside a counted message */
		"<13>lf\n"
		"13 <13>x\n<13>y\n\n"	/* ends with LF, also counted */
		"<14>1 - - - - - - last\n"
		"5 <13>z";
	static const struct want w[] = {
		{ "<34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 - su "
		  "root failed", 0 },
		{ "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!", 0 },
		{ "<13>a\nb c", 0 },
		{ "<13>lf", 0 },
		{ "<13>x\n<13>y\n\n", 0 },
		{ "<14>1 - - - - - - last", 0 },
		{ "<13>z", 0 },
	};

	(void)state;
	assert_int_equal(strlen(w[0].m), 67);
	check_stream(8192, s, 0, w, N(w), ERR_OK);
}

static void test_tcp_trailers(void **state)
{
	static const char s[] =
		"<13>crlf\r\n"
		"<13>nul\0"
		"<13>nul-lf\0\n"
		"\n\r\n\0\0"		/* between frames: skipped */
		"<13>cr-nul\r\0"
		"<13>cr\rinside\n"
		"<13>two cr\r\r\n"
		"<13>\n"
		"3 <1>";
	static const struct want w[] = {
		{ "<13>crlf", 0 },
		{ "<13>nul", 0 },
		{ "<13>nul-lf", 0 },
		{ "<13>cr-nul", 0 },
		{ "<13>cr\rinside", 0 },
		{ "<13>two cr\r", 0 },
		{ "<13>", 0 },
		{ "<1>", 0 },
	};

	(void)state;
	check_stream(8192, s, sizeof(s) - 1, w, N(w), ERR_OK);
}

/* msg_max 16: counted messages of 16 bytes pass whole, 17 and 40 are cut
 * and exactly the rest is skipped (including a '<' and LF in it). */
static void test_tcp_truncate_octet(void **state)
{
	static const char s[] =
		"16 <13>0123456789AB"
		"17 <13>0123456789ABC"
		"40 <13>0123456789ABCDEF\n<13>fake\n9 <13>1234"
		"<13>next\n"
		"5 <13>x";
	static const struct want w[] = {
		{ "<13>0123456789AB", 0 },
		{ "!<13>0123456789AB", 0 },
		{ "!<13>0123456789AB", 0 },
		{ "<13>next", 0 },
		{ "<13>x", 0 },
	};

	(void)state;
	check_stream(16, s, 0, w, N(w), ERR_OK);
}

/* msg_max 16 with LF framing: 16 bytes then LF, CR LF or NUL pass whole;
 * a 17th byte (even a CR that is content) cuts, and the rest up to LF is
 * skipped. */
static void test_tcp_truncate_lf(void **state)
{
	static const char s[] =
		"<13>0123456789AB\n"
		"<13>0123456789AB\r\n"
		"<13>0123456789AB\0"
		"<13>0123456789ABC\n"
		"<13>0123456789AB\rx\n"
		"<13>0123456789AB\r\r\n"
		"<13>0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ 8 <13>no\n"
		"6 <13>ok"
		"<13>last\n";
	static const struct want w[] = {
		{ "<13>0123456789AB", 0 },
		{ "<13>0123456789AB", 0 },
		{ "<13>0123456789AB", 0 },
		{ "!<13>0123456789AB", 0 },
		{ "!<13>0123456789AB", 0 },
		{ "!<13>0123456789AB", 0 },
		{ "!<13>0123456789AB", 0 },
		{ "<13>ok", 0 },
		{ "<13>last", 0 },
	};

	(void)state;
	check_stream(16, s, sizeof(s) - 1, w, N(w), ERR_OK);
}

/* A framing error: the messages before it arrive, then ERR_PROTO for this
 * and every later feed. */
static void test_tcp_framing_errors(void **state)
{
	static const struct want ok[] = { { "<13>ok", 0 } };
	static const char *const bad[] = {
		"<13>ok\nAbc\n",		/* a letter first */
		"<13>ok\n0 x",			/* leading zero */
		"<13>ok\n01 x",
		"<13>ok\n1234567890 <13>x",	/* 10 digits */
		"<13>ok\n12a <13>x",		/* not a number */
		"<13>ok\n12\n<13>x",
		"<13>ok\n-5 x",
		"<13>ok\n <13>x",		/* space first */
		"<13>ok\n\t<13>x",
		"6 <13>ok\xef\xbb\xbf<13>x\n",	/* BOM first */
	};
	static struct col c;
	uint32_t seed = 1;

	(void)state;
	for (size_t i = 0; i < N(bad); i++)
		check_stream(8192, bad[i], 0, ok, 1, ERR_PROTO);

	/* Not errors: after "12 " a second space is the message's first
	 * byte (here the message is still incomplete) ... */
	assert_int_equal(run(8192, "<13>ok\n12  <13>x", 16, SPLIT_WHOLE,
			     &seed, &c), ERR_OK);
	assert_int_equal(c.n, 1);
	/* ... and 9 digits are fine (999 999 999 < 10^9): cut at msg_max. */
	assert_int_equal(run(16, "999999999 <13>0123456789ABCDEF", 30,
			     SPLIT_BYTES, &seed, &c), ERR_OK);
	assert_int_equal(c.n, 1);
	assert_true(c.trunc[0]);
	assert_int_equal(c.len[0], 16);
	assert_memory_equal(c.m[0], "<13>0123456789AB", 16);
}

static void test_tcp_pending(void **state)
{
	struct intake_tcp *f = intake_tcp_new(8);
	static struct col c;

#define FEED(s) intake_tcp_feed(f, (const uint8_t *)(s), sizeof(s) - 1, \
				collect, &c)
	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(intake_tcp_pending(f), 0);
	assert_int_equal(FEED("<13>ab"), ERR_OK);
	assert_int_equal(intake_tcp_pending(f), 6);
	assert_int_equal(FEED("\r"), ERR_OK);
	assert_int_equal(intake_tcp_pending(f), 7);
	assert_int_equal(FEED("\n\n"), ERR_OK);
	assert_int_equal(intake_tcp_pending(f), 0);
	assert_int_equal(FEED("12"), ERR_OK);
	assert_int_equal(intake_tcp_pending(f), 2);
	assert_int_equal(FEED(" <13>"), ERR_OK);
	assert_int_equal(intake_tcp_pending(f), 7);
	/* Cut at 8 and delivered: nothing pending while the rest is
	 * skipped. */
	assert_int_equal(FEED("abc"), ERR_OK);
	assert_int_equal(c.n, 1);
	assert_int_equal(intake_tcp_pending(f), 10);
	assert_int_equal(FEED("d"), ERR_OK);
	assert_int_equal(c.n, 2);
	assert_true(c.trunc[1]);
	assert_int_equal(intake_tcp_pending(f), 0);
	assert_int_equal(FEED("efgh<13>toolong"), ERR_OK);
	assert_int_equal(c.n, 3);
	assert_int_equal(intake_tcp_pending(f), 0);
	assert_int_equal(FEED("\n"), ERR_OK);
	assert_int_equal(FEED("Z"), ERR_PROTO);
	assert_int_equal(intake_tcp_pending(f), 0);
	assert_int_equal(FEED("<13>x\n"), ERR_PROTO);
	assert_int_equal(c.n, 3);
#undef FEED
	intake_tcp_free(f);
}

static void test_tcp_arguments(void **state)
{
	struct intake_tcp *f;
	static struct col c;

	(void)state;
	assert_null(intake_tcp_new(0));
	assert_null(intake_tcp_new(INTAKE_MSG_MAX_LIMIT + 1));
	f = intake_tcp_new(INTAKE_MSG_MAX_LIMIT);
	assert_non_null(f);
	intake_tcp_free(f);
	intake_tcp_free(NULL);
	assert_int_equal(intake_tcp_pending(NULL), 0);

	/* msg_max 1: every message is cut to its '<' or first digit. */
	{
		static const struct want w[] = { { "!<", 0 }, { "!<", 0 },
						 { "<", 0 } };

		check_stream(1, "<13>a\n3 <1><\n", 0, w, N(w), ERR_OK);
	}

	f = intake_tcp_new(16);
	assert_non_null(f);
	memset(&c, 0, sizeof(c));
	assert_int_equal(intake_tcp_feed(NULL, (const uint8_t *)"x", 1,
					 collect, &c), ERR_INVAL);
	assert_int_equal(intake_tcp_feed(f, (const uint8_t *)"x", 1, NULL,
					 &c), ERR_INVAL);
	assert_int_equal(intake_tcp_feed(f, NULL, 1, collect, &c),
			 ERR_INVAL);
	assert_int_equal(intake_tcp_feed(f, NULL, 0, collect, &c), ERR_OK);
	assert_int_equal(c.n, 0);
	intake_tcp_free(f);
}

/* ------------------------------------------------ a long stream, timed */

#define BIG_N 100000
#define BIG_CHUNK 4096

/* Message i of the big stream (no framing): alternating 5424 and 3164
 * lines of varying length. */
static size_t big_msg(unsigned i, char *out, size_t cap)
{
	int n;

	if (i % 2)
		n = snprintf(out, cap, "<%u>1 2026-01-02T03:04:05.%06uZ pbx "
			     "ipo %u ID%u - message %u %.*s", i % 192,
			     i % 1000000, i, i % 97, i, (int)(i % 151),
			     "the quick brown fox jumps over the lazy dog; "
			     "the quick brown fox jumps over the lazy dog; "
			     "the quick brown fox jumps over the lazy dog; "
			     "the quick brown fox");
	else
		n = snprintf(out, cap, "<%u>Jan  2 03:04:05 pbx ipo[%u]: "
			     "Grüße %u %.*s", i % 192, i, i, (int)(i % 131),
			     "pack my box with five dozen liquor jugs; "
			     "pack my box with five dozen liquor jugs; "
			     "pack my box with five dozen liquor jugs; "
			     "pack my box with");
	assert_true(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

struct big {
	unsigned next;
	unsigned kinds[INTAKE_KINDS];
};

static void big_check(void *arg, const char *m, size_t len, bool truncated)
{
	struct big *b = arg;
	char want[400];
	size_t wl = big_msg(b->next, want, sizeof(want));

	assert_false(truncated);
	if (len != wl || memcmp(m, want, len) != 0)
		print_error("#%u: '%.*s'\n", b->next, (int)len, m);
	assert_int_equal(len, wl);
	assert_memory_equal(m, want, len);
	b->kinds[intake_classify(m, len)]++;
	b->next++;
}

static void test_tcp_big_stream(void **state)
{
	size_t cap = (size_t)BIG_N * 400, len = 0;
	char *s = malloc(cap);
	struct intake_tcp *f = intake_tcp_new(8192);
	struct big b = { 0 };
	struct timespec t0, t1;
	double secs;

	(void)state;
	assert_non_null(s);
	assert_non_null(f);
	for (unsigned i = 0; i < BIG_N; i++) {
		char m[400];
		size_t ml = big_msg(i, m, sizeof(m));

		assert_true(len + ml + 16 < cap);
		switch (i % 3) {
		case 0:		/* octet counting */
			len += (size_t)snprintf(s + len, cap - len, "%zu ",
						ml);
			memcpy(s + len, m, ml);
			len += ml;
			break;
		case 1:		/* LF */
			memcpy(s + len, m, ml);
			len += ml;
			s[len++] = '\n';
			break;
		default:	/* CR LF */
			memcpy(s + len, m, ml);
			len += ml;
			s[len++] = '\r';
			s[len++] = '\n';
			break;
		}
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i < len; i += BIG_CHUNK) {
		size_t k = len - i < BIG_CHUNK ? len - i : BIG_CHUNK;

		assert_int_equal(intake_tcp_feed(f, (const uint8_t *)s + i, k,
						 big_check, &b), ERR_OK);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(b.next, BIG_N);
	assert_int_equal(intake_tcp_pending(f), 0);
	assert_int_equal(b.kinds[INTAKE_RFC5424], BIG_N / 2);
	assert_int_equal(b.kinds[INTAKE_RFC3164], BIG_N / 2);

	secs = (double)(t1.tv_sec - t0.tv_sec) +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* Informational only: this build has ASan and UBSan. */
	printf("intake: %u messages, %.1f MB framed, checked and classified "
	       "in %.3f s: %.0f messages/s\n", BIG_N, (double)len / 1e6, secs,
	       secs > 0 ? BIG_N / secs : 0.0);
	intake_tcp_free(f);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify_rfc5424),
		cmocka_unit_test(test_classify_rfc3164),
		cmocka_unit_test(test_classify_malformed),
		cmocka_unit_test(test_classify_binary),
		cmocka_unit_test(test_kind_names),
		cmocka_unit_test(test_trim),
		cmocka_unit_test(test_tcp_mixed_framing),
		cmocka_unit_test(test_tcp_trailers),
		cmocka_unit_test(test_tcp_truncate_octet),
		cmocka_unit_test(test_tcp_truncate_lf),
		cmocka_unit_test(test_tcp_framing_errors),
		cmocka_unit_test(test_tcp_pending),
		cmocka_unit_test(test_tcp_arguments),
		cmocka_unit_test(test_tcp_big_stream),
	};
	return cmocka_run_group_tests_name("intake", tests, NULL, NULL);
}
