/*
 * json — the shared front end of the parsers of untrusted JSON text (see
 * json.h).
 *
 * LEJP is fed one byte per call so that its state can be checked between
 * bytes. LEJP 4.1.6 needs that guarding: it does not bound key names (its
 * 128-byte path buffer overflows), it takes '#' outside strings as the
 * start of a comment, it accepts "[1,]" and "[1}]", it refuses a
 * top-level "{}", it writes its array-index stack one slot past the end
 * before noticing, it loses track of that stack after an array at top
 * level, it accepts "01" and "1e+" as numbers, and it emits an escaped
 * surrogate pair as two 3-byte CESU-8 sequences. Each of these is handled
 * here, once, for every caller (the last two by functions the callers
 * apply to values, where they report them in their own words); this is
 * also the one place that reads LEJP's internal state (path offsets,
 * parser states, the index stack).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libwebsockets.h>

#include "json.h"

/* The per-byte path guard lets one byte grow LEJP's path by at most two
 * characters ("[]") plus its NUL; LEJP keeps path offsets in a char. */
_Static_assert(JSON_MAX_PATH + 3 < LEJP_MAX_PATH, "LEJP path buffer too small");
_Static_assert(JSON_MAX_PATH + 2 <= 127, "LEJP keeps path offsets in a char");
/* LEJP's own stack holds one level per container plus one for a string. */
_Static_assert(JSON_MAX_DEPTH + 1 < LEJP_MAX_DEPTH, "LEJP stack too small");

/* ---------------------------------------------------------------- UTF-8 */

/* The length of the well-formed UTF-8 sequence at s (n >= 1 bytes there),
 * or 0: the lead byte sets the length and the range of the second byte,
 * which is what excludes overlong forms, surrogates and > U+10FFFF. */
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

size_t json_utf8_len(const void *s, size_t n)
{
	return s && n ? utf8_seq(s, n) : 0;
}

bool json_utf8_valid(const void *str, size_t n)
{
	const unsigned char *s = str;
	size_t k;

	if (!s && n)
		return false;
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

/* The raw text was checked to be UTF-8 before parsing (json_run() insists),
 * so any surrogate in LEJP's output came from an escape. */
bool json_cesu_to_utf8(unsigned char *s, size_t n, size_t *outlen)
{
	size_t r = 0, w = 0, k;
	unsigned hs, ls, cp;

	if (!s && n)
		return false;
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

/* -------------------------------------------------------------- numbers */

bool json_number(const char *s)
{
	if (!s)
		return false;
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

bool json_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	bool neg = false;
	uint64_t v = 0, lim = INT64_MAX;
	unsigned d;
	int64_t r;

	if (!s)
		return false;
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
		r = (int64_t)v;
	else if (v == (uint64_t)INT64_MAX + 1)
		r = INT64_MIN;
	else
		r = -(int64_t)v;
	if (r < min || r > max)
		return false;
	if (out)
		*out = r;
	return true;
}

/* ----------------------------------------------------------- the driver */

void json_init(struct json *j, const struct json_spec *spec, void *arg,
	       char *why, size_t whylen)
{
	memset(j, 0, sizeof(*j));
	j->spec = spec;
	j->arg = arg;
	j->why = why;
	j->whylen = whylen;
	if (why && whylen)
		why[0] = '\0';
	/* The stack below and LEJP's buffers are sized for the caps. */
	if (!spec || !spec->event || !spec->max_depth ||
	    spec->max_depth > JSON_MAX_DEPTH || !spec->max_path ||
	    spec->max_path > JSON_MAX_PATH)
		json_fail(j, ERR_INVAL, "cannot parse: bad JSON limits");
}

void json_fail(struct json *j, err_t e, const char *fmt, ...)
{
	va_list ap;

	if (j->err)
		return;
	j->err = e;
	if (!j->why || !j->whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(j->why, j->whylen, fmt, ap);
	va_end(ap);
}

err_t json_err(const struct json *j)
{
	return j->err;
}

unsigned json_depth(const struct json *j)
{
	return j->depth;
}

unsigned json_arrays(const struct json *j)
{
	return j->arrays;
}

bool json_in_array(const struct json *j)
{
	return j->depth && j->stack[j->depth - 1] == 'a';
}

const char *json_path(const struct lejp_ctx *ctx, size_t *len)
{
	*len = ctx->pst[0].ppos;
	return ctx->path;
}

/* LEJP records where the key of a stack level starts in that level's path
 * offset; the key runs from there to the end of the path. */
const char *json_key(const struct lejp_ctx *ctx, size_t *len)
{
	size_t from = (size_t)(unsigned char)ctx->st[ctx->sp].p;
	size_t to = ctx->pst[0].ppos;

	if (from > to)
		return NULL;
	*len = to - from;
	return ctx->path + from;
}

static const char *word(const char *w, const char *dflt)
{
	return w ? w : dflt;
}

static int on_start(struct json *j, struct lejp_ctx *ctx, char kind,
		    char reason)
{
	if (!j->depth) {
		if (kind != 'o') {
			json_fail(j, ERR_INVAL, "not a JSON object");
			return -1;
		}
		j->stack[j->depth++] = kind;
		return 0;
	}
	/* The caller first: which of two failures is reported stays its
	 * choice (a wrong kind of value rather than too deep). */
	if (j->spec->event(j->arg, ctx, reason))
		return -1;
	if (j->depth >= j->spec->max_depth) {
		json_fail(j, ERR_INVAL, "nesting deeper than %u levels",
			  j->spec->max_depth);
		return -1;
	}
	/* LEJP writes i[ipos] before checking ipos against its size. */
	if (kind == 'a' && (j->arrays >= LEJP_MAX_INDEX_DEPTH ||
			    ctx->ipos >= LEJP_MAX_INDEX_DEPTH)) {
		json_fail(j, ERR_INVAL, "arrays nested deeper than %d levels",
			  LEJP_MAX_INDEX_DEPTH);
		return -1;
	}
	if (kind == 'a')
		j->arrays++;
	j->stack[j->depth++] = kind;
	return 0;
}

/* LEJP lets '}' close an array ("[1}]" parses); JSON does not. */
static int on_end(struct json *j, struct lejp_ctx *ctx, char kind,
		  char reason)
{
	if (!j->depth || j->stack[j->depth - 1] != kind) {
		json_fail(j, ERR_INVAL, "not JSON: mismatched '%c'",
			  kind == 'a' ? ']' : '}');
		return -1;
	}
	if (j->stack[--j->depth] == 'a')
		j->arrays--;
	/*
	 * LEJP does not restore its index depth when an array closes at its
	 * stack level 0 (a top-level member), so five array members would
	 * use it up. It counts open arrays, which we know exactly.
	 */
	ctx->ipos = (uint8_t)j->arrays;
	if (!j->depth)
		return 0;
	return j->spec->event(j->arg, ctx, reason);
}

static signed char lejp_cb(struct lejp_ctx *ctx, char reason)
{
	struct json *j = ctx->user;
	int r = 0;

	/* LEJP keeps going after some ignored callback results. */
	if (j->err)
		return -1;
	switch (reason) {
	case LEJPCB_OBJECT_START:
		r = on_start(j, ctx, 'o', reason);
		break;
	case LEJPCB_ARRAY_START:
		r = on_start(j, ctx, 'a', reason);
		break;
	case LEJPCB_OBJECT_END:
		r = on_end(j, ctx, 'o', reason);
		break;
	case LEJPCB_ARRAY_END:
		/* LEJP ignores this result; j->err stops it at the next. */
		r = on_end(j, ctx, 'a', reason);
		break;
	case LEJPCB_PAIR_NAME:
	case LEJPCB_VAL_STR_START:
	case LEJPCB_VAL_STR_CHUNK:
	case LEJPCB_VAL_STR_END:
	case LEJPCB_VAL_NUM_INT:
	case LEJPCB_VAL_NUM_FLOAT:
	case LEJPCB_VAL_TRUE:
	case LEJPCB_VAL_FALSE:
	case LEJPCB_VAL_NULL:
		r = j->spec->event(j->arg, ctx, reason);
		break;
	default:
		break;
	}
	/* Negative: LEJP checks some results only for < 0. */
	return r ? -1 : 0;
}

/* JSON's whitespace; LEJP's idea of it is wider. */
static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Feeds the text to LEJP; true once the top-level object closed. */
static bool run_lejp(struct json *j, struct lejp_ctx *ctx,
		     const unsigned char *buf, size_t len, size_t *used)
{
	unsigned char prev = 0;	/* last byte that was not whitespace */
	bool in_str;
	size_t i;
	int r;

	for (i = 0; i < len && !j->err; i++) {
		/* LEJP appends key characters to its path without a bound,
		 * and one byte adds at most two. */
		if (ctx->pst[0].ppos > j->spec->max_path) {
			json_fail(j, ERR_INVAL, "%s path longer than %u bytes",
				  word(j->spec->path_name, "member"),
				  j->spec->max_path);
			break;
		}
		in_str = ctx->st[ctx->sp].s == LEJP_MP_STRING;
		/* LEJP skips "# ..." as a comment; JSON has none. */
		if (buf[i] == '#' && !in_str) {
			json_fail(j, ERR_INVAL,
				  "not JSON: '#' outside a string");
			break;
		}
		/* LEJP takes "[1,]"; JSON does not. */
		if (buf[i] == ']' && prev == ',' && !in_str) {
			json_fail(j, ERR_INVAL, "not JSON: ',' before ']'");
			break;
		}
		if (!is_ws((char)buf[i]) || in_str)
			prev = buf[i];
		r = lejp_parse(ctx, buf + i, 1);
		if (r == LEJP_CONTINUE)
			continue;
		if (r == LEJP_REJECT_IDLE_NO_BRACE)
			json_fail(j, ERR_INVAL, "not a JSON object");
		/* LEJP refuses "{}" at top level with this code. */
		if (r == LEJP_REJECT_MEMBERS_NO_CLOSE && j->depth == 1)
			json_fail(j, ERR_INVAL, "%s",
				  word(j->spec->empty_why, "empty object"));
		if (r < 0) {
			json_fail(j, ERR_INVAL, "not JSON: %s",
				  lejp_error_to_string(r));
			break;
		}
		/* LEJP completes at the '}' that closes its level 0. */
		if (j->depth)
			json_fail(j, ERR_INVAL,
				  "not JSON: unbalanced brackets");
		*used = i + 1;
		return !j->err;
	}
	json_fail(j, ERR_INVAL, "not JSON: %s truncated",
		  word(j->spec->text_name, "text"));
	return false;
}

err_t json_run(struct json *j, const char *buf, size_t len)
{
	struct lejp_ctx ctx;
	size_t i, used = 0;

	if (j->err)
		return j->err;
	if (j->ran) {
		json_fail(j, ERR_STATE, "cannot parse: parsed already");
		return j->err;
	}
	j->ran = true;
	if (!buf && len) {
		json_fail(j, ERR_INVAL, "no text");
		return j->err;
	}
	if (len && memchr(buf, 0, len)) {
		json_fail(j, ERR_INVAL, "NUL byte in the text");
		return j->err;
	}
	if (!json_utf8_valid(buf, len)) {
		json_fail(j, ERR_INVAL, "invalid UTF-8");
		return j->err;
	}
	lejp_construct(&ctx, lejp_cb, j, NULL, 0);
	if (run_lejp(j, &ctx, (const unsigned char *)buf, len, &used))
		for (i = used; i < len; i++)
			if (!is_ws(buf[i])) {
				json_fail(j, ERR_INVAL,
					  "trailing data after the object");
				break;
			}
	lejp_destruct(&ctx);
	return j->err;
}
