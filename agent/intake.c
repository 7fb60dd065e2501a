/*
 * intake — syslog message classification (RFC 5424 / RFC 3164 / malformed
 * / binary), UDP trailer trimming and RFC 6587 TCP framing (rules in
 * intake.h).
 *
 * Everything here works on byte ranges with explicit lengths: messages may
 * contain NULs, and nothing is ever read past len. The classifier is one
 * pass over the text plus one over the header, so its cost is linear in
 * the message whatever the input. The framer is a small state machine that
 * keeps only the message being assembled, so a connection costs msg_max + 1
 * bytes however long a frame the peer announces.
 */
#include <stdlib.h>
#include <string.h>

#include "intake.h"

/* RFC 5424 section 6: PRIVAL range and header field lengths. */
#define PRI_MAX 191
#define HOSTNAME_MAX 255
#define APPNAME_MAX 48
#define PROCID_MAX 128
#define MSGID_MAX 32
#define SDNAME_MAX 32
/* TIME-SECFRAC is 1*6DIGIT in the RFC; 9 lets nanosecond senders in. */
#define SECFRAC_MAX 9

/* A cursor over msg[0..len). */
struct cur {
	const unsigned char *p;
	size_t i, len;
};

static bool at_end(const struct cur *c) { return c->i >= c->len; }

static int peek(const struct cur *c)
{
	return c->i < c->len ? c->p[c->i] : -1;
}

static bool eat(struct cur *c, int ch)
{
	if (peek(c) != ch)
		return false;
	c->i++;
	return true;
}

static bool is_digit(int ch) { return ch >= '0' && ch <= '9'; }

/* PRINTUSASCII: %d33-126. */
static bool is_print_ascii(int ch) { return ch >= 33 && ch <= 126; }

static bool eat_digits(struct cur *c, unsigned n)
{
	for (unsigned k = 0; k < n; k++) {
		if (!is_digit(peek(c)))
			return false;
		c->i++;
	}
	return true;
}

/* ---------------------------------------------------------------- text */

/*
 * Whether msg is text: strict UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF) with no control character but TAB,
 * LF and CR: an octet-counted message may span lines (a stack trace), and
 * the store keeps one line per message by turning them into spaces.
 * C1 controls (U+0080..U+009F) count as control characters too: in a log
 * line they are as much a sign of binary data as their C0 cousins.
 */
static bool is_text(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned b = s[i];
		unsigned need, cp, min;

		if (b < 0x80) {
			if ((b < 0x20 && b != '\t' && b != '\n' &&
			     b != '\r') || b == 0x7f)
				return false;
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf) {
			need = 1;
			cp = b & 0x1f;
			min = 0x80;
		} else if (b >= 0xe0 && b <= 0xef) {
			need = 2;
			cp = b & 0x0f;
			min = 0x800;
		} else if (b >= 0xf0 && b <= 0xf4) {
			need = 3;
			cp = b & 0x07;
			min = 0x10000;
		} else {
			/* 0x80..0xc1 (continuation or overlong lead), 0xf5+ */
			return false;
		}
		if (len - i <= need)
			return false;
		for (unsigned k = 1; k <= need; k++) {
			unsigned cb = s[i + k];

			if ((cb & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (cb & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		if (cp >= 0x80 && cp <= 0x9f)
			return false;
		i += need + 1;
	}
	return true;
}

/* -------------------------------------------------------------- header */

/* PRI = "<" PRIVAL ">", PRIVAL 0..191 in 1-3 digits without a leading
 * zero (RFC 5424 6.2.1; "<00>" and "<013>" are not valid). */
static bool parse_pri(struct cur *c)
{
	unsigned v = 0, n = 0;
	size_t start;

	if (!eat(c, '<'))
		return false;
	start = c->i;
	while (is_digit(peek(c))) {
		if (++n > 3)
			return false;
		v = v * 10 + (unsigned)(peek(c) - '0');
		c->i++;
	}
	if (n == 0 || (n > 1 && c->p[start] == '0') || v > PRI_MAX)
		return false;
	return eat(c, '>');
}

/* TIMESTAMP: NILVALUE or the shape of FULL-DATE "T" FULL-TIME. Values are
 * not range-checked: a wrong clock is the sender's business, and the
 * message is still worth storing. */
static bool parse_timestamp(struct cur *c)
{
	unsigned frac = 0;

	if (eat(c, '-'))
		return true;
	if (!eat_digits(c, 4) || !eat(c, '-') || !eat_digits(c, 2) ||
	    !eat(c, '-') || !eat_digits(c, 2) || !eat(c, 'T') ||
	    !eat_digits(c, 2) || !eat(c, ':') || !eat_digits(c, 2) ||
	    !eat(c, ':') || !eat_digits(c, 2))
		return false;
	if (eat(c, '.')) {
		while (is_digit(peek(c)) && frac < SECFRAC_MAX) {
			c->i++;
			frac++;
		}
		if (frac == 0)
			return false;
	}
	if (eat(c, 'Z'))
		return true;
	if (!eat(c, '+') && !eat(c, '-'))
		return false;
	return eat_digits(c, 2) && eat(c, ':') && eat_digits(c, 2);
}

/* HOSTNAME, APP-NAME, PROCID, MSGID: NILVALUE / 1*max PRINTUSASCII. "-"
 * is one printable character, so NILVALUE needs no case of its own. */
static bool parse_field(struct cur *c, size_t max)
{
	size_t n = 0;

	while (is_print_ascii(peek(c))) {
		if (++n > max)
			return false;
		c->i++;
	}
	return n > 0;
}

static bool is_sd_name_char(int ch)
{
	return is_print_ascii(ch) && ch != '=' && ch != ']' && ch != '"';
}

/* SD-NAME: 1*32 PRINTUSASCII except '=', SP, ']' and '"'. */
static bool parse_sd_name(struct cur *c)
{
	size_t n = 0;

	while (is_sd_name_char(peek(c))) {
		if (++n > SDNAME_MAX)
			return false;
		c->i++;
	}
	return n > 0;
}

/* PARAM-VALUE up to its closing '"'. A backslash takes the next byte with
 * it (RFC 5424 6.3.3: '"', '\' and ']' are escaped; a backslash before
 * anything else is a plain backslash, which taking the next byte along
 * also handles). An unescaped ']' is let through: the closing quote is
 * what ends the value, and senders that forget that escape are common. */
static bool parse_param_value(struct cur *c)
{
	while (!at_end(c)) {
		int ch = c->p[c->i++];

		if (ch == '"')
			return true;
		if (ch == '\\' && !at_end(c))
			c->i++;
	}
	return false;
}

/* STRUCTURED-DATA = NILVALUE / 1*SD-ELEMENT,
 * SD-ELEMENT = "[" SD-ID *(SP PARAM-NAME "=" %d34 PARAM-VALUE %d34) "]". */
static bool parse_sd(struct cur *c)
{
	if (eat(c, '-'))
		return true;
	if (peek(c) != '[')
		return false;
	while (eat(c, '[')) {
		if (!parse_sd_name(c))
			return false;
		while (eat(c, ' ')) {
			if (!parse_sd_name(c) || !eat(c, '=') || !eat(c, '"') ||
			    !parse_param_value(c))
				return false;
		}
		if (!eat(c, ']'))
			return false;
	}
	return true;
}

/* After "<PRI>1 ": TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP
 * STRUCTURED-DATA [SP MSG]. MSG itself (BOM or not) was checked as text. */
static bool parse_5424_rest(struct cur *c)
{
	if (!parse_timestamp(c) || !eat(c, ' ') ||
	    !parse_field(c, HOSTNAME_MAX) || !eat(c, ' ') ||
	    !parse_field(c, APPNAME_MAX) || !eat(c, ' ') ||
	    !parse_field(c, PROCID_MAX) || !eat(c, ' ') ||
	    !parse_field(c, MSGID_MAX) || !eat(c, ' ') || !parse_sd(c))
		return false;
	return at_end(c) || eat(c, ' ');
}

/* Another VERSION (NONZERO-DIGIT 0*2DIGIT) then a 5424-shaped TIMESTAMP
 * field: a newer syslog, not free 3164 text that happens to start with a
 * number. */
static bool is_other_version(struct cur c)
{
	unsigned n = 0;

	if (!is_digit(peek(&c)) || peek(&c) == '0')
		return false;
	while (is_digit(peek(&c)) && n < 4) {
		c.i++;
		n++;
	}
	return n <= 3 && eat(&c, ' ') && parse_timestamp(&c) && eat(&c, ' ');
}

enum intake_kind intake_classify(const char *msg, size_t len)
{
	struct cur c = { (const unsigned char *)msg, 0, len };

	if (!msg || len == 0)
		return INTAKE_MALFORMED;
	if (!is_text(c.p, len))
		return INTAKE_BINARY;
	if (!parse_pri(&c))
		return INTAKE_MALFORMED;
	if (c.len - c.i >= 2 && c.p[c.i] == '1' && c.p[c.i + 1] == ' ') {
		c.i += 2;
		return parse_5424_rest(&c) ? INTAKE_RFC5424 : INTAKE_MALFORMED;
	}
	if (is_other_version(c))
		return INTAKE_MALFORMED;
	return INTAKE_RFC3164;
}

const char *intake_kind_name(enum intake_kind kind)
{
	switch (kind) {
	case INTAKE_RFC5424: return "rfc5424";
	case INTAKE_RFC3164: return "rfc3164";
	case INTAKE_MALFORMED: return "malformed";
	case INTAKE_BINARY: return "binary";
	}
	return "unknown";
}

size_t intake_trim(const char *msg, size_t len)
{
	if (!msg)
		return 0;
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r' ||
			   msg[len - 1] == '\0'))
		len--;
	return len;
}

/* ----------------------------------------------------------------- tcp */

enum tcp_state {
	ST_START,	/* between frames */
	ST_LEN,		/* in MSG-LEN */
	ST_OCTET,	/* in an octet-counted message */
	ST_SKIP_N,	/* skipping the rest of a cut octet-counted message */
	ST_LF,		/* in a non-transparent (LF-framed) message */
	ST_SKIP_LF,	/* skipping the rest of a cut LF-framed message */
	ST_ERROR,	/* framing error: latched */
};

struct intake_tcp {
	size_t max;		/* msg_max */
	enum tcp_state st;
	unsigned digits;	/* MSG-LEN digits seen */
	size_t want;		/* ST_LEN: MSG-LEN so far; ST_OCTET, ST_SKIP_N:
				 * bytes of the message still to come */
	size_t used;		/* bytes in buf */
	char *buf;		/* max + 1 bytes */
};

struct intake_tcp *intake_tcp_new(size_t msg_max)
{
	struct intake_tcp *f;

	if (msg_max == 0 || msg_max > INTAKE_MSG_MAX_LIMIT)
		return NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	/* One extra byte: a CR at msg_max may turn out to be the CR of CR LF
	 * (not content, so the message is not cut) or content (it is). */
	f->buf = malloc(msg_max + 1);
	if (!f->buf) {
		free(f);
		return NULL;
	}
	f->max = msg_max;
	f->st = ST_START;
	return f;
}

void intake_tcp_free(struct intake_tcp *f)
{
	if (!f)
		return;
	free(f->buf);
	free(f);
}

size_t intake_tcp_pending(const struct intake_tcp *f)
{
	if (!f)
		return 0;
	switch (f->st) {
	case ST_LEN: return f->digits;
	case ST_OCTET: return f->digits + 1 + f->used;
	case ST_LF: return f->used;
	default: return 0;
	}
}

static bool is_lf_end(uint8_t b) { return b == '\n' || b == '\0'; }

/* Bytes of p[i..n) before the first LF or NUL. */
static size_t span_to_end(const uint8_t *p, size_t i, size_t n)
{
	size_t j = i;

	while (j < n && !is_lf_end(p[j]))
		j++;
	return j - i;
}

/* One step in ST_LF at p[i..n); returns the new i. Appends what is there
 * of the message, delivers it at its end or once it is known to be longer
 * than max. */
static size_t step_lf(struct intake_tcp *f, const uint8_t *p, size_t i,
		      size_t n, intake_msg_fn *msg, void *arg)
{
	size_t seg = span_to_end(p, i, n);
	size_t room;

	if (seg > 0) {
		if (f->used > f->max) {
			/* The held CR was content, and more follows. */
			msg(arg, f->buf, f->max, true);
			f->used = 0;
			f->st = ST_SKIP_LF;
			return i + seg;
		}
		room = f->max - f->used;
		if (seg <= room || (seg == room + 1 && p[i + room] == '\r')) {
			/* Fits; or overflows by one CR only, which the next
			 * byte decides about. */
			memcpy(f->buf + f->used, p + i, seg);
			f->used += seg;
		} else {
			memcpy(f->buf + f->used, p + i, room);
			msg(arg, f->buf, f->max, true);
			f->used = 0;
			f->st = ST_SKIP_LF;
			return i + seg;
		}
		i += seg;
	}
	if (i < n) {
		/* At LF or NUL: the message is complete. used is at most
		 * max, or max + 1 with a CR last, which goes. */
		size_t len = f->used;

		if (len > 0 && f->buf[len - 1] == '\r')
			len--;
		msg(arg, f->buf, len, false);
		f->used = 0;
		f->st = ST_START;
		i++;
	}
	return i;
}

/* One step in ST_OCTET at p[i..n); returns the new i. */
static size_t step_octet(struct intake_tcp *f, const uint8_t *p, size_t i,
			 size_t n, intake_msg_fn *msg, void *arg)
{
	size_t keep = n - i < f->want ? n - i : f->want;

	if (keep > f->max - f->used)
		keep = f->max - f->used;

	memcpy(f->buf + f->used, p + i, keep);
	f->used += keep;
	f->want -= keep;
	i += keep;
	if (f->want == 0) {
		msg(arg, f->buf, f->used, false);
		f->used = 0;
		f->st = ST_START;
	} else if (f->used == f->max) {
		/* MSG-LEN > max: deliver now, skip the rest exactly. */
		msg(arg, f->buf, f->used, true);
		f->used = 0;
		f->st = ST_SKIP_N;
	}
	return i;
}

err_t intake_tcp_feed(struct intake_tcp *f, const uint8_t *p, size_t n,
		      intake_msg_fn *msg, void *arg)
{
	size_t i = 0;

	if (!f || !msg || (!p && n > 0))
		return ERR_INVAL;
	while (i < n && f->st != ST_ERROR) {
		uint8_t b = p[i];
		size_t k;

		switch (f->st) {
		case ST_START:
			if (b == '\n' || b == '\r' || b == '\0') {
				i++;
			} else if (b == '<') {
				f->used = 0;
				f->st = ST_LF;	/* '<' is the message's own */
			} else if (b >= '1' && b <= '9') {
				f->want = (size_t)(b - '0');
				f->digits = 1;
				f->st = ST_LEN;
				i++;
			} else {
				f->st = ST_ERROR;
			}
			break;
		case ST_LEN:
			if (is_digit(b) && f->digits < INTAKE_LEN_DIGITS) {
				f->want = f->want * 10 + (size_t)(b - '0');
				f->digits++;
				i++;
			} else if (b == ' ') {
				f->used = 0;
				f->st = ST_OCTET;
				i++;
			} else {
				f->st = ST_ERROR;
			}
			break;
		case ST_OCTET:
			i = step_octet(f, p, i, n, msg, arg);
			break;
		case ST_SKIP_N:
			k = n - i < f->want ? n - i : f->want;
			f->want -= k;
			i += k;
			if (f->want == 0)
				f->st = ST_START;
			break;
		case ST_LF:
			i = step_lf(f, p, i, n, msg, arg);
			break;
		case ST_SKIP_LF:
			i += span_to_end(p, i, n);
			if (i < n) {
				f->st = ST_START;
				i++;
			}
			break;
		case ST_ERROR:
			break;
		}
	}
	return f->st == ST_ERROR ? ERR_PROTO : ERR_OK;
}
