/*
 * proto — control messages of the COM link (PROTOCOL.md §2).
 *
 * Decoding: the frame is checked as a whole first (size, NUL bytes, strict
 * UTF-8), then fed to LEJP, libwebsockets' stream JSON parser, one byte per
 * call so that LEJP's state can be checked between bytes. LEJP 4.1.6 needs
 * that guarding: it does not bound key names (its 128-byte path buffer
 * overflows), it takes '#' outside strings as the start of a comment, it
 * writes its array-index stack one slot past the end before noticing, it
 * loses track of that stack after an array at top level, and it emits an
 * escaped surrogate pair as two 3-byte CESU-8 sequences. Each of these is
 * handled below where it matters. Every scalar leaf outside arrays is
 * stored with its dotted path in one allocation sized from the input, so
 * memory is bounded by the frame size.
 *
 * Encoding: a fixed-capacity writer with latched errors; a message either
 * fits whole or is not produced at all.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "proto.h"

/* The per-byte path guard below lets one byte grow LEJP's path by at most
 * two characters ("[]") plus its NUL; LEJP stores path offsets in a char. */
_Static_assert(PROTO_MAX_PATH + 3 < LEJP_MAX_PATH, "LEJP path buffer too small");
_Static_assert(PROTO_MAX_PATH + 2 <= 127, "LEJP keeps path offsets in a char");
/* LEJP's own stack holds one level per container plus one for a string. */
_Static_assert(PROTO_MAX_DEPTH + 1 < LEJP_MAX_DEPTH, "LEJP stack too small");

/* ---------------------------------------------------------------- UTF-8 */

/*
 * Length of the well-formed UTF-8 sequence at s (n bytes available), or 0.
 * Strict: no overlong forms, no surrogates, nothing above U+10FFFF.
 */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t k, i;

	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return 0;
	if (c < 0xe0) {
		k = 2;
	} else if (c < 0xf0) {
		k = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c < 0xf5) {
		k = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < k || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < k; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return k;
}

bool proto_utf8_valid(const void *str, size_t n)
{
	const unsigned char *s = str;
	size_t k;

	while (n) {
		k = utf8_seq(s, n);
		if (!k)
			return false;
		s += k;
		n -= k;
	}
	return true;
}

/* The code point of a 3-byte sequence that utf8_seq() would refuse as a
 * surrogate, or 0 when s is not one. */
static unsigned surrogate_at(const unsigned char *s, size_t n)
{
	if (n < 3 || s[0] != 0xed || s[1] < 0xa0 || s[1] > 0xbf ||
	    (s[2] & 0xc0) != 0x80)
		return 0;
	return 0xd000u | ((unsigned)(s[1] & 0x3f) << 6) | (s[2] & 0x3fu);
}

/*
 * LEJP decodes "\ud83d\ude00" into two 3-byte CESU-8 sequences; rewrite
 * each pair in place as one 4-byte UTF-8 sequence. The raw frame was
 * checked to be UTF-8 before parsing, so any surrogate here came from an
 * escape. False for a lone surrogate or anything else not UTF-8.
 */
static bool cesu_to_utf8(unsigned char *s, size_t n, size_t *outlen)
{
	size_t r = 0, w = 0, k;
	unsigned hs, ls, cp;

	while (r < n) {
		hs = surrogate_at(s + r, n - r);
		if (hs) {
			ls = surrogate_at(s + r + 3, n - r - 3);
			if (hs > 0xdbff || ls < 0xdc00)
				return false;
			cp = 0x10000u + ((hs - 0xd800u) << 10) + (ls - 0xdc00u);
			s[w++] = (unsigned char)(0xf0 | (cp >> 18));
			s[w++] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
			s[w++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
			s[w++] = (unsigned char)(0x80 | (cp & 0x3f));
			r += 6;
			continue;
		}
		k = utf8_seq(s + r, n - r);
		if (!k)
			return false;
		memmove(s + w, s + r, k);
		r += k;
		w += k;
	}
	*outlen = w;
	return true;
}

/* -------------------------------------------------------------- decoding */

enum kind { K_STR, K_INT, K_NUM, K_BOOL };

struct field {
	const char *path;
	const char *str;	/* K_STR */
	int64_t num;		/* K_INT value, K_BOOL 0 or 1 */
	enum kind kind;
};

struct proto_msg {
	const char *type;
	int64_t id, re;
	size_t nfields, maxfields;
	char *text;		/* paths and string values, bump-allocated */
	size_t text_cap, text_used;
	struct field f[];
};

/* Where a parse stands; LEJP hands it back to the callback as ctx->user. */
struct parse {
	struct proto_msg *m;
	char *why;
	size_t whylen;
	err_t err;		/* ERR_OK until the first failure */
	unsigned depth;		/* open containers, top-level object included */
	unsigned arrays;	/* open arrays among them */
	char stack[PROTO_MAX_DEPTH];	/* 'o' or 'a' per open container */
	unsigned counted;	/* members + array elements so far */
	unsigned elems;		/* elements so far of the one open array */
	size_t str_at;		/* offset in m->text of the string being read */
	size_t str_len;
};

/* Only the first failure is reported: later ones are consequences. */
__attribute__((format(printf, 3, 4)))
static void fail(struct parse *p, err_t e, const char *fmt, ...)
{
	va_list ap;

	if (p->err)
		return;
	p->err = e;
	if (!p->why || !p->whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(p->why, p->whylen, fmt, ap);
	va_end(ap);
}

/* Paths come from the peer and end up in our log and in an error message;
 * keep only printable ASCII so neither can be forged or made invalid. */
static const char *clean(const char *s, char *dst, size_t cap)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < cap; i++)
		dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	dst[i] = '\0';
	return dst;
}

/* JSON's number grammar; LEJP also lets through "01", "1e+" and "-1e". */
static bool json_number(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (*s >= '1' && *s <= '9')
		while (*s >= '0' && *s <= '9')
			s++;
	else
		return false;
	if (*s == '.') {
		s++;
		if (*s < '0' || *s > '9')
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (*s < '0' || *s > '9')
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

/* An optionally negative run of digits that fits int64_t; anything else
 * (fraction, exponent, overflow) is not an integer. */
static bool parse_i64(const char *s, int64_t *out)
{
	bool neg = false;
	uint64_t v = 0, lim = INT64_MAX;
	unsigned d;

	if (*s == '-') {
		neg = true;
		lim = (uint64_t)INT64_MAX + 1;
		s++;
	}
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		d = (unsigned)(*s - '0');
		if (v > (lim - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (!neg)
		*out = (int64_t)v;
	else if (v == (uint64_t)INT64_MAX + 1)
		*out = INT64_MIN;
	else
		*out = -(int64_t)v;
	return true;
}

static struct field *find(const struct proto_msg *m, const char *path)
{
	size_t i;

	if (!m || !path)
		return NULL;
	for (i = 0; i < m->nfields; i++)
		if (!strcmp(m->f[i].path, path))
			return (struct field *)&m->f[i];
	return NULL;
}

/*
 * A repeated key replaces everything its earlier value left: the leaf at
 * path itself and, if that value was an object, the leaves beneath it.
 */
static void forget(struct proto_msg *m, const char *path, size_t plen)
{
	size_t i = 0;
	const char *q;

	while (i < m->nfields) {
		q = m->f[i].path;
		if (!strncmp(q, path, plen) &&
		    (q[plen] == '\0' || q[plen] == '.')) {
			memmove(&m->f[i], &m->f[i + 1],
				(m->nfields - i - 1) * sizeof(m->f[0]));
			m->nfields--;
			continue;
		}
		i++;
	}
}

static char *text_alloc(struct parse *p, size_t n)
{
	struct proto_msg *m = p->m;
	char *r;

	/* Cannot happen with the sizing in proto_parse(); kept as a guard. */
	if (n > m->text_cap - m->text_used) {
		fail(p, ERR_INVAL, "message too complex");
		return NULL;
	}
	r = m->text + m->text_used;
	m->text_used += n;
	return r;
}

/*
 * LEJP's path with escaped surrogate pairs joined, as stored and looked up.
 * Every key in it was checked at its PAIR_NAME, so this cannot fail, but a
 * failure is still reported rather than trusted away.
 */
static int norm_path(struct parse *p, struct lejp_ctx *ctx,
		     char dst[LEJP_MAX_PATH], size_t *len)
{
	size_t plen = ctx->pst[0].ppos;
	char c[48];

	if (plen > PROTO_MAX_PATH) {
		fail(p, ERR_INVAL, "field path longer than %d bytes",
		     PROTO_MAX_PATH);
		return -1;
	}
	if (memchr(ctx->path, '\0', plen)) {
		fail(p, ERR_INVAL, "NUL character in a key");
		return -1;
	}
	memcpy(dst, ctx->path, plen);
	if (!cesu_to_utf8((unsigned char *)dst, plen, len)) {
		fail(p, ERR_INVAL, "invalid \\u escape in key \"%s\"",
		     clean(ctx->path, c, sizeof(c)));
		return -1;
	}
	dst[*len] = '\0';
	return 0;
}

/* Stores a leaf under LEJP's current path. */
static struct field *store(struct parse *p, struct lejp_ctx *ctx,
			   enum kind kind)
{
	struct proto_msg *m = p->m;
	char norm[LEJP_MAX_PATH], *path;
	struct field *f;
	size_t n;

	if (norm_path(p, ctx, norm, &n))
		return NULL;
	/* A string element of an array that is not inside another one is
	 * kept as "PATH.N" (LEJP's path ends in "[]" there). */
	if (p->arrays == 1 && p->stack[p->depth - 1] == 'a' && kind == K_STR &&
	    n >= 2 && !memcmp(norm + n - 2, "[]", 2)) {
		int w = snprintf(norm + n - 2, sizeof(norm) - n + 2, ".%u",
				 p->elems - 1);

		if (w < 0 || (size_t)w >= sizeof(norm) - n + 2) {
			fail(p, ERR_INVAL, "field path too long");
			return NULL;
		}
		n = n - 2 + (size_t)w;
	}
	f = find(m, norm);
	if (!f) {
		if (m->nfields == m->maxfields) {
			fail(p, ERR_INVAL, "message too complex");
			return NULL;
		}
		path = text_alloc(p, n + 1);
		if (!path)
			return NULL;
		memcpy(path, norm, n + 1);
		f = &m->f[m->nfields++];
		f->path = path;
	}
	f->kind = kind;
	f->str = NULL;
	f->num = 0;
	return f;
}

/* Whether the value about to be read is the top-level member name. At
 * ARRAY_START LEJP has already appended "[]" to the path. */
static bool is_top(const struct parse *p, const struct lejp_ctx *ctx,
		   const char *name)
{
	size_t n = strlen(name), plen = ctx->pst[0].ppos;

	if (p->depth != 1)
		return false;
	if (plen == n + 2 && !memcmp(ctx->path + n, "[]", 2))
		plen = n;
	return plen == n && !memcmp(ctx->path, name, n);
}

/* Counts a value that is an array element (members count at PAIR_NAME). */
static int count_element(struct parse *p)
{
	if (!p->depth || p->stack[p->depth - 1] != 'a')
		return 0;
	if (p->arrays == 1)
		p->elems++;
	if (++p->counted > PROTO_MAX_FIELDS) {
		fail(p, ERR_INVAL, "more than %d fields", PROTO_MAX_FIELDS);
		return -1;
	}
	return 0;
}

/* "id" and "re" must be integers; this refuses any other kind of value. */
static int check_not_idre(struct parse *p, struct lejp_ctx *ctx)
{
	if (is_top(p, ctx, "id") || is_top(p, ctx, "re")) {
		fail(p, ERR_INVAL, "\"%s\" is not an integer in 1..2^53-1",
		     ctx->path[0] == 'i' ? "id" : "re");
		return -1;
	}
	return 0;
}

static int check_not_type(struct parse *p, struct lejp_ctx *ctx)
{
	if (is_top(p, ctx, "type")) {
		fail(p, ERR_INVAL, "\"type\" is not a string");
		return -1;
	}
	return 0;
}

static int on_container(struct parse *p, struct lejp_ctx *ctx, char kind)
{
	if (!p->depth) {
		if (kind != 'o') {
			fail(p, ERR_INVAL, "not a JSON object");
			return -1;
		}
		p->stack[p->depth++] = kind;
		return 0;
	}
	if (check_not_idre(p, ctx) || check_not_type(p, ctx) ||
	    count_element(p))
		return -1;
	if (p->depth >= PROTO_MAX_DEPTH) {
		fail(p, ERR_INVAL, "nesting deeper than %d levels",
		     PROTO_MAX_DEPTH);
		return -1;
	}
	/* LEJP writes i[ipos] before checking ipos against its size. */
	if (kind == 'a' && (p->arrays >= LEJP_MAX_INDEX_DEPTH ||
			    ctx->ipos >= LEJP_MAX_INDEX_DEPTH)) {
		fail(p, ERR_INVAL, "arrays nested deeper than %d levels",
		     LEJP_MAX_INDEX_DEPTH);
		return -1;
	}
	if (kind == 'a' && !p->arrays++)
		p->elems = 0;
	p->stack[p->depth++] = kind;
	return 0;
}

/* LEJP lets '}' close an array ("[1}]" parses); JSON does not. */
static int on_container_end(struct parse *p, struct lejp_ctx *ctx, char kind)
{
	if (!p->depth || p->stack[p->depth - 1] != kind) {
		fail(p, ERR_INVAL, "not JSON: mismatched '%c'",
		     kind == 'a' ? ']' : '}');
		return -1;
	}
	if (p->stack[--p->depth] == 'a')
		p->arrays--;
	/*
	 * LEJP does not restore its index depth when an array closes at its
	 * stack level 0 (a top-level member), so five array members would
	 * use it up. It counts open arrays, which we know exactly.
	 */
	ctx->ipos = (uint8_t)p->arrays;
	return 0;
}

static int on_pair(struct parse *p, struct lejp_ctx *ctx)
{
	char norm[LEJP_MAX_PATH];
	size_t n;

	if (norm_path(p, ctx, norm, &n))
		return -1;
	if (++p->counted > PROTO_MAX_FIELDS) {
		fail(p, ERR_INVAL, "more than %d fields", PROTO_MAX_FIELDS);
		return -1;
	}
	forget(p->m, norm, n);
	return 0;
}

static int on_str_start(struct parse *p, struct lejp_ctx *ctx)
{
	if (check_not_idre(p, ctx) || count_element(p))
		return -1;
	p->str_at = p->m->text_used;
	p->str_len = 0;
	return 0;
}

static int on_str_data(struct parse *p, struct lejp_ctx *ctx)
{
	char *d;
	char c[48];

	/* Escaped surrogate pairs take 6 bytes here and 4 once joined. */
	if (ctx->npos > PROTO_MAX_STR / 2 * 3 - p->str_len) {
		fail(p, ERR_INVAL, "string at \"%s\" longer than %d bytes",
		     clean(ctx->path, c, sizeof(c)), PROTO_MAX_STR);
		return -1;
	}
	d = text_alloc(p, ctx->npos);
	if (!d)
		return -1;
	memcpy(d, ctx->buf, ctx->npos);
	p->str_len += ctx->npos;
	return 0;
}

static int on_str_end(struct parse *p, struct lejp_ctx *ctx)
{
	struct proto_msg *m = p->m;
	unsigned char *s;
	struct field *f;
	size_t n;
	char c[48];

	if (on_str_data(p, ctx))
		return -1;
	s = (unsigned char *)m->text + p->str_at;
	if (memchr(s, 0, p->str_len)) {
		fail(p, ERR_INVAL, "NUL character in string at \"%s\"",
		     clean(ctx->path, c, sizeof(c)));
		return -1;
	}
	if (!cesu_to_utf8(s, p->str_len, &n)) {
		fail(p, ERR_INVAL, "invalid \\u escape in string at \"%s\"",
		     clean(ctx->path, c, sizeof(c)));
		return -1;
	}
	if (n > PROTO_MAX_STR) {
		fail(p, ERR_INVAL, "string at \"%s\" longer than %d bytes",
		     clean(ctx->path, c, sizeof(c)), PROTO_MAX_STR);
		return -1;
	}
	/* Array elements are checked but not kept, except strings of an
	 * array not inside another one: give the bytes back. */
	if (p->arrays && !(p->arrays == 1 &&
			   p->stack[p->depth - 1] == 'a')) {
		m->text_used = p->str_at;
		return 0;
	}
	m->text_used = p->str_at + n;
	if (!text_alloc(p, 1))
		return -1;
	s[n] = '\0';
	f = store(p, ctx, K_STR);
	if (!f)
		return -1;
	f->str = (const char *)s;
	return 0;
}

static int on_scalar(struct parse *p, struct lejp_ctx *ctx, char reason)
{
	struct field *f;
	int64_t v = 0;
	bool isint = false;
	char c[48];

	if (check_not_type(p, ctx) || count_element(p))
		return -1;
	if (reason == LEJPCB_VAL_NUM_INT || reason == LEJPCB_VAL_NUM_FLOAT) {
		if (!json_number(ctx->buf)) {
			fail(p, ERR_INVAL, "bad number at \"%s\"",
			     clean(ctx->path, c, sizeof(c)));
			return -1;
		}
		isint = parse_i64(ctx->buf, &v);
	}
	if (is_top(p, ctx, "id") || is_top(p, ctx, "re")) {
		if (!isint || v < 1 || v > PROTO_MAX_ID)
			return check_not_idre(p, ctx);
		if (ctx->path[0] == 'i')
			p->m->id = v;
		else
			p->m->re = v;
	}
	if (p->arrays || reason == LEJPCB_VAL_NULL)
		return 0;
	f = store(p, ctx, reason == LEJPCB_VAL_TRUE ||
		  reason == LEJPCB_VAL_FALSE ? K_BOOL : isint ? K_INT : K_NUM);
	if (!f)
		return -1;
	f->num = reason == LEJPCB_VAL_TRUE ? 1 : v;
	return 0;
}

static signed char lejp_cb(struct lejp_ctx *ctx, char reason)
{
	struct parse *p = ctx->user;
	int r = 0;

	/* LEJP keeps going after some ignored callback results. */
	if (p->err)
		return -1;
	switch (reason) {
	case LEJPCB_OBJECT_START:
		r = on_container(p, ctx, 'o');
		break;
	case LEJPCB_ARRAY_START:
		r = on_container(p, ctx, 'a');
		break;
	case LEJPCB_OBJECT_END:
		r = on_container_end(p, ctx, 'o');
		break;
	case LEJPCB_ARRAY_END:
		/* LEJP ignores this result; p->err stops it at the next. */
		r = on_container_end(p, ctx, 'a');
		break;
	case LEJPCB_PAIR_NAME:
		r = on_pair(p, ctx);
		break;
	case LEJPCB_VAL_STR_START:
		r = on_str_start(p, ctx);
		break;
	case LEJPCB_VAL_STR_CHUNK:
		r = on_str_data(p, ctx);
		break;
	case LEJPCB_VAL_STR_END:
		r = on_str_end(p, ctx);
		break;
	case LEJPCB_VAL_TRUE:
	case LEJPCB_VAL_FALSE:
	case LEJPCB_VAL_NULL:
	case LEJPCB_VAL_NUM_INT:
	case LEJPCB_VAL_NUM_FLOAT:
		r = on_scalar(p, ctx, reason);
		break;
	default:
		break;
	}
	/* Negative: LEJP checks some results only for < 0. */
	return r ? -1 : 0;
}

static bool json_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Feeds the frame to LEJP; true once the top-level object closed. */
static bool run_lejp(struct parse *p, struct lejp_ctx *ctx,
		     const unsigned char *buf, size_t len, size_t *used)
{
	unsigned char prev = 0;	/* last byte that was not whitespace */
	bool in_str;
	size_t i;
	int r;

	for (i = 0; i < len && !p->err; i++) {
		/*
		 * The per-byte guards. LEJP 4.1.6 appends key characters to
		 * its path without a bound, and one byte adds at most two.
		 */
		if (ctx->pst[0].ppos > PROTO_MAX_PATH) {
			fail(p, ERR_INVAL, "field path longer than %d bytes",
			     PROTO_MAX_PATH);
			break;
		}
		in_str = ctx->st[ctx->sp].s == LEJP_MP_STRING;
		/* LEJP skips "# ..." as a comment; JSON has none. */
		if (buf[i] == '#' && !in_str) {
			fail(p, ERR_INVAL, "not JSON: '#' outside a string");
			break;
		}
		/* LEJP takes "[1,]"; JSON does not. */
		if (buf[i] == ']' && prev == ',' && !in_str) {
			fail(p, ERR_INVAL, "not JSON: ',' before ']'");
			break;
		}
		if (!json_ws((char)buf[i]) || in_str)
			prev = buf[i];
		r = lejp_parse(ctx, buf + i, 1);
		if (r == LEJP_CONTINUE)
			continue;
		if (r == LEJP_REJECT_IDLE_NO_BRACE)
			fail(p, ERR_INVAL, "not a JSON object");
		/* LEJP refuses "{}" at top level with this code. */
		if (r == LEJP_REJECT_MEMBERS_NO_CLOSE && p->depth == 1)
			fail(p, ERR_INVAL, "no \"type\"");
		if (r < 0) {
			fail(p, ERR_INVAL, "not JSON: %s",
			     lejp_error_to_string(r));
			break;
		}
		/* LEJP completes at the '}' that closes its level 0. */
		if (p->depth)
			fail(p, ERR_INVAL, "not JSON: unbalanced brackets");
		*used = i + 1;
		return !p->err;
	}
	fail(p, ERR_INVAL, "not JSON: message truncated");
	return false;
}

err_t proto_parse(const char *buf, size_t len, struct proto_msg **out,
		  int64_t *bad_id, char *why, size_t whylen)
{
	struct parse p = { .why = why, .whylen = whylen };
	struct lejp_ctx ctx;
	struct proto_msg *m = NULL;
	size_t i, colons = 0, maxf, used = 0;
	struct field *t;
	bool lejp_on = false;

	if (why && whylen)
		why[0] = '\0';
	if (bad_id)
		*bad_id = 0;
	if (!out || (!buf && len)) {
		fail(&p, ERR_INVAL, "no message");
		goto out;
	}
	*out = NULL;
	if (len > PROTO_MAX_MSG) {
		fail(&p, ERR_LIMIT, "message larger than %d bytes",
		     PROTO_MAX_MSG);
		goto out;
	}
	if (!len) {
		fail(&p, ERR_INVAL, "empty message");
		goto out;
	}
	if (memchr(buf, 0, len)) {
		fail(&p, ERR_INVAL, "NUL byte in message");
		goto out;
	}
	if (!proto_utf8_valid(buf, len)) {
		fail(&p, ERR_INVAL, "invalid UTF-8");
		goto out;
	}

	/*
	 * One allocation. Every stored leaf is a member or an array
	 * element, so there are no more than there are ':', ',' and '[' in
	 * the frame. Decoded strings plus their NULs never outgrow their
	 * quoted source; paths are bounded each.
	 */
	for (i = 0; i < len; i++)
		colons += buf[i] == ':' || buf[i] == ',' || buf[i] == '[';
	maxf = colons < PROTO_MAX_FIELDS ? colons : PROTO_MAX_FIELDS;
	m = calloc(1, sizeof(*m) + maxf * sizeof(m->f[0]) + len + 1 +
		   maxf * (PROTO_MAX_PATH + 1));
	if (!m) {
		fail(&p, ERR_NOMEM, "out of memory");
		goto out;
	}
	m->maxfields = maxf;
	m->text = (char *)&m->f[maxf];
	m->text_cap = len + 1 + maxf * (PROTO_MAX_PATH + 1);
	p.m = m;

	lejp_construct(&ctx, lejp_cb, &p, NULL, 0);
	lejp_on = true;
	if (!run_lejp(&p, &ctx, (const unsigned char *)buf, len, &used))
		goto out;
	for (i = used; i < len; i++)
		if (!json_ws(buf[i])) {
			fail(&p, ERR_INVAL, "trailing data after the object");
			goto out;
		}

	t = find(m, "type");
	if (!t || t->kind != K_STR) {
		fail(&p, ERR_INVAL, "no \"type\"");
		goto out;
	}
	if (!t->str[0]) {
		fail(&p, ERR_INVAL, "empty \"type\"");
		goto out;
	}
	if (strlen(t->str) > PROTO_MAX_TYPE) {
		fail(&p, ERR_INVAL, "\"type\" longer than %d bytes",
		     PROTO_MAX_TYPE);
		goto out;
	}
	m->type = t->str;
	if (!m->id) {
		fail(&p, ERR_INVAL, "no \"id\"");
		goto out;
	}
	*out = m;
	m = NULL;
out:
	if (lejp_on)
		lejp_destruct(&ctx);
	if (p.err && bad_id && p.m)
		*bad_id = p.m->id;
	free(m);
	return p.err;
}

void proto_msg_free(struct proto_msg *m)
{
	free(m);
}

const char *proto_type(const struct proto_msg *m)
{
	return m ? m->type : NULL;
}

int64_t proto_id(const struct proto_msg *m)
{
	return m ? m->id : 0;
}

int64_t proto_re(const struct proto_msg *m)
{
	return m ? m->re : 0;
}

int proto_count(const struct proto_msg *m, const char *path)
{
	char key[PROTO_MAX_PATH + 8];
	int n;

	for (n = 0; n < PROTO_MAX_FIELDS; n++) {
		int w = snprintf(key, sizeof(key), "%s.%d", path, n);

		if (w < 0 || (size_t)w >= sizeof(key))
			break;
		if (!proto_str(m, key))
			break;
	}
	return n;
}

const char *proto_str(const struct proto_msg *m, const char *path)
{
	const struct field *f = find(m, path);

	return f && f->kind == K_STR ? f->str : NULL;
}

bool proto_int(const struct proto_msg *m, const char *path, int64_t *out)
{
	const struct field *f = find(m, path);

	if (!f || f->kind != K_INT)
		return false;
	if (out)
		*out = f->num;
	return true;
}

bool proto_bool(const struct proto_msg *m, const char *path, bool *out)
{
	const struct field *f = find(m, path);

	if (!f || f->kind != K_BOOL)
		return false;
	if (out)
		*out = f->num != 0;
	return true;
}

/* -------------------------------------------------------------- encoding */

struct proto_w {
	char *mem;		/* headroom + cap + 1 (the NUL) */
	char *text;		/* mem + headroom */
	size_t cap, headroom, len;
	unsigned depth;		/* open containers, top level included */
	unsigned arrays;	/* bit d-1 set: the container at depth d is an array */
	bool first;		/* innermost container has no member yet */
	err_t err;		/* first error, latched until begin */
};

struct proto_w *proto_w_new(size_t cap, size_t headroom)
{
	struct proto_w *w;

	if (!cap || cap > SIZE_MAX - 1 - headroom)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->mem = malloc(headroom + cap + 1);
	if (!w->mem) {
		free(w);
		return NULL;
	}
	w->text = w->mem + headroom;
	w->text[0] = '\0';
	w->cap = cap;
	w->headroom = headroom;
	/* Nothing may be written or finished before proto_w_begin(). */
	w->err = ERR_STATE;
	return w;
}

void proto_w_free(struct proto_w *w)
{
	if (!w)
		return;
	free(w->mem);
	free(w);
}

static void w_fail(struct proto_w *w, err_t e)
{
	if (!w->err)
		w->err = e;
}

static void w_put(struct proto_w *w, const char *s, size_t n)
{
	if (w->err)
		return;
	if (n > w->cap - w->len) {
		w_fail(w, ERR_LIMIT);
		return;
	}
	memcpy(w->text + w->len, s, n);
	w->len += n;
}

static void w_putc(struct proto_w *w, char c)
{
	w_put(w, &c, 1);
}

static void w_string(struct proto_w *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), k;
	char e[6];

	w_putc(w, '"');
	while (n && !w->err) {
		if (*u == '"' || *u == '\\') {
			e[0] = '\\';
			e[1] = (char)*u;
			w_put(w, e, 2);
			k = 1;
		} else if (*u < 0x20 || *u == 0x7f) {
			/* DEL too: harmless in JSON but not in a log line. */
			memcpy(e, "\\u00", 4);
			e[4] = hex[*u >> 4];
			e[5] = hex[*u & 0xf];
			w_put(w, e, 6);
			k = 1;
		} else if (*u < 0x80) {
			/* Copy the run of plain ASCII in one go. */
			for (k = 1; k < n && u[k] >= 0x20 && u[k] < 0x7f &&
			     u[k] != '"' && u[k] != '\\'; k++)
				;
			w_put(w, (const char *)u, k);
		} else {
			k = utf8_seq(u, n);
			if (k) {
				w_put(w, (const char *)u, k);
			} else {
				w_put(w, "\\ufffd", 6);
				k = 1;
			}
		}
		u += k;
		n -= k;
	}
	w_putc(w, '"');
}

static void w_key(struct proto_w *w, const char *key)
{
	bool in_array;

	if (w->err)
		return;
	in_array = w->depth && (w->arrays >> (w->depth - 1) & 1u);
	/* Object members need a key, array elements must not have one. */
	if (!w->depth || !key != in_array) {
		w_fail(w, ERR_STATE);
		return;
	}
	if (!w->first)
		w_putc(w, ',');
	w->first = false;
	if (in_array)
		return;
	w_string(w, key);
	w_putc(w, ':');
}

static void w_i64(struct proto_w *w, int64_t v)
{
	char b[24];
	int n = snprintf(b, sizeof(b), "%" PRId64, v);

	if (n > 0 && (size_t)n < sizeof(b))
		w_put(w, b, (size_t)n);
	else
		w_fail(w, ERR_LIMIT);
}

void proto_w_begin(struct proto_w *w, const char *type, int64_t id)
{
	if (!w)
		return;
	w->len = 0;
	w->text[0] = '\0';
	w->err = ERR_OK;
	w->depth = 1;
	w->arrays = 0;
	w->first = true;
	w_putc(w, '{');
	proto_w_str(w, "type", type ? type : "");
	if (id < 1 || id > PROTO_MAX_ID)
		w_fail(w, ERR_INVAL);
	proto_w_int(w, "id", id);
}

void proto_w_str(struct proto_w *w, const char *key, const char *val)
{
	if (!w)
		return;
	w_key(w, key);
	if (val)
		w_string(w, val);
	else
		w_put(w, "null", 4);
}

void proto_w_int(struct proto_w *w, const char *key, int64_t v)
{
	if (!w)
		return;
	w_key(w, key);
	w_i64(w, v);
}

void proto_w_bool(struct proto_w *w, const char *key, bool v)
{
	if (!w)
		return;
	w_key(w, key);
	if (v)
		w_put(w, "true", 4);
	else
		w_put(w, "false", 5);
}

void proto_w_null(struct proto_w *w, const char *key)
{
	if (!w)
		return;
	w_key(w, key);
	w_put(w, "null", 4);
}

static void w_open(struct proto_w *w, const char *key, bool array)
{
	w_key(w, key);
	/* Never write what our own parser (and so COM's limits) refuses. */
	if (w->depth >= PROTO_MAX_DEPTH)
		w_fail(w, ERR_LIMIT);
	w_putc(w, array ? '[' : '{');
	if (w->err)
		return;
	if (array)
		w->arrays |= 1u << w->depth;
	else
		w->arrays &= ~(1u << w->depth);
	w->depth++;
	w->first = true;
}

void proto_w_obj(struct proto_w *w, const char *key)
{
	if (w)
		w_open(w, key, false);
}

void proto_w_arr(struct proto_w *w, const char *key)
{
	if (w)
		w_open(w, key, true);
}

void proto_w_end(struct proto_w *w)
{
	if (!w)
		return;
	if (w->depth <= 1)
		w_fail(w, ERR_STATE);
	w_putc(w, w->arrays >> (w->depth - 1) & 1u ? ']' : '}');
	if (w->err)
		return;
	w->depth--;
	w->first = false;
}

err_t proto_w_finish(struct proto_w *w, char **buf, size_t *len)
{
	err_t e;

	if (buf)
		*buf = NULL;
	if (len)
		*len = 0;
	if (!w || !buf || !len)
		return ERR_INVAL;
	if (w->depth != 1)
		w_fail(w, ERR_STATE);
	w_putc(w, '}');
	e = w->err;
	/* Finished (or failed): further members need a new begin. */
	w->depth = 0;
	if (!w->err)
		w->err = ERR_STATE;
	if (e) {
		w->text[0] = '\0';
		return e;
	}
	w->text[w->len] = '\0';
	*buf = w->text;
	*len = w->len;
	return ERR_OK;
}

/* ------------------------------------------------------- refusal reasons */

static const struct {
	const char *reason;
	const char *text;
} reasons[] = {
	{ "auth_failed", "Authorization failed" },
	{ "credentials_invalid", "Credentials invalid" },
	{ "insufficient_permissions", "Insufficient permissions" },
	{ "legacy", "Legacy" },
	{ "max_sessions", "Maximum concurrent sessions exceeded" },
	{ "password_change_required", "Service user needs a new password" },
	{ "no_authorisation", "No authorisation supplied, features limited" },
	{ "no_rights", "No user rights enabled for this system" },
	{ "remote_ops_not_allowed", "Remote operations not allowed" },
	{ "monitor_read_disabled", "Service-monitor read not enabled" },
	{ "disabled_by_admin", "Service user disabled by administrator" },
	{ "user_locked", "Service user temporarily locked" },
	{ "user_disabled", "Service user disabled" },
	{ "password_expired", "Service user password expired" },
	{ "not_primary", "Not reachable / not a valid primary IP Office" },
	{ "upgrade_rights", "Upgrade rights not enabled" },
	{ "protocol", "Connection failed" },
};

const char *proto_reason_text(const char *reason)
{
	size_t i;

	if (reason)
		for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
			if (!strcmp(reasons[i].reason, reason))
				return reasons[i].text;
	return "Connection failed";
}
