/*
 * proto — control messages of the COM link (PROTOCOL.md §2).
 *
 * Decoding: the frame is checked as a whole first (size, NUL bytes, strict
 * UTF-8), then parsed by json.c, which drives LEJP (libwebsockets' stream
 * JSON parser) with the guards LEJP 4.1.6 needs and tracks the open
 * containers. What is left here is what a control message means: "type",
 * "id" and "re", the field count, and the leaves kept. LEJP emits an
 * escaped surrogate pair as two 3-byte CESU-8 sequences; strings and keys
 * are joined back into UTF-8 before they are stored. Every scalar leaf
 * outside arrays is stored with its dotted path in one allocation sized
 * from the input, so memory is bounded by the frame size.
 *
 * Encoding: a fixed-capacity writer with latched errors; a message either
 * fits whole or is not produced at all.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>
#include <mbedtls/platform_util.h>

#include "json.h"
#include "proto.h"

/* json.c's buffers are sized for its caps. */
_Static_assert(PROTO_MAX_PATH <= JSON_MAX_PATH, "PROTO_MAX_PATH too big");
_Static_assert(PROTO_MAX_DEPTH <= JSON_MAX_DEPTH, "PROTO_MAX_DEPTH too big");

bool proto_utf8_valid(const void *str, size_t n)
{
	return json_utf8_valid(str, n);
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

/* Where a parse stands; json.c hands it back to on_event(). */
struct parse {
	struct json j;		/* open containers, the first failure */
	struct proto_msg *m;
	unsigned counted;	/* members + array elements so far */
	unsigned elems;		/* elements so far of the one open array */
	size_t str_at;		/* offset in m->text of the string being read */
	size_t str_len;
};

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
		json_fail(&p->j, ERR_INVAL, "message too complex");
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
	size_t plen;
	const char *path = json_path(ctx, &plen);
	char c[48];

	if (plen > PROTO_MAX_PATH) {
		json_fail(&p->j, ERR_INVAL, "field path longer than %d bytes",
			  PROTO_MAX_PATH);
		return -1;
	}
	if (memchr(path, '\0', plen)) {
		json_fail(&p->j, ERR_INVAL, "NUL character in a key");
		return -1;
	}
	memcpy(dst, path, plen);
	if (!json_cesu_to_utf8((unsigned char *)dst, plen, len)) {
		json_fail(&p->j, ERR_INVAL,
			  "invalid \\u escape in key \"%s\"",
			  clean(path, c, sizeof(c)));
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
	if (json_arrays(&p->j) == 1 && json_in_array(&p->j) &&
	    kind == K_STR && n >= 2 && !memcmp(norm + n - 2, "[]", 2)) {
		int w = snprintf(norm + n - 2, sizeof(norm) - n + 2, ".%u",
				 p->elems - 1);

		if (w < 0 || (size_t)w >= sizeof(norm) - n + 2) {
			json_fail(&p->j, ERR_INVAL, "field path too long");
			return NULL;
		}
		n = n - 2 + (size_t)w;
	}
	f = find(m, norm);
	if (!f) {
		if (m->nfields == m->maxfields) {
			json_fail(&p->j, ERR_INVAL, "message too complex");
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
	size_t n = strlen(name), plen;
	const char *path = json_path(ctx, &plen);

	if (json_depth(&p->j) != 1)
		return false;
	if (plen == n + 2 && !memcmp(path + n, "[]", 2))
		plen = n;
	return plen == n && !memcmp(path, name, n);
}

/* Counts a value that is an array element (members count at PAIR_NAME). */
static int count_element(struct parse *p)
{
	if (!json_in_array(&p->j))
		return 0;
	if (json_arrays(&p->j) == 1)
		p->elems++;
	if (++p->counted > PROTO_MAX_FIELDS) {
		json_fail(&p->j, ERR_INVAL, "more than %d fields",
			  PROTO_MAX_FIELDS);
		return -1;
	}
	return 0;
}

/* "id" and "re" must be integers; this refuses any other kind of value. */
static int check_not_idre(struct parse *p, struct lejp_ctx *ctx)
{
	if (is_top(p, ctx, "id") || is_top(p, ctx, "re")) {
		json_fail(&p->j, ERR_INVAL,
			  "\"%s\" is not an integer in 1..2^53-1",
			  ctx->path[0] == 'i' ? "id" : "re");
		return -1;
	}
	return 0;
}

static int check_not_type(struct parse *p, struct lejp_ctx *ctx)
{
	if (is_top(p, ctx, "type")) {
		json_fail(&p->j, ERR_INVAL, "\"type\" is not a string");
		return -1;
	}
	return 0;
}

/*
 * A container inside the top-level object starts; json.c checks its
 * nesting after this. It is a value like any other: of "id", "re" or
 * "type" it is the wrong kind, and as an array element it counts.
 */
static int on_container(struct parse *p, struct lejp_ctx *ctx, bool array)
{
	if (check_not_idre(p, ctx) || check_not_type(p, ctx) ||
	    count_element(p))
		return -1;
	/* Elements are numbered within the outermost array only. */
	if (array && !json_arrays(&p->j))
		p->elems = 0;
	return 0;
}

static int on_pair(struct parse *p, struct lejp_ctx *ctx)
{
	char norm[LEJP_MAX_PATH];
	size_t n;

	if (norm_path(p, ctx, norm, &n))
		return -1;
	if (++p->counted > PROTO_MAX_FIELDS) {
		json_fail(&p->j, ERR_INVAL, "more than %d fields",
			  PROTO_MAX_FIELDS);
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
		json_fail(&p->j, ERR_INVAL,
			  "string at \"%s\" longer than %d bytes",
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
		json_fail(&p->j, ERR_INVAL,
			  "NUL character in string at \"%s\"",
			  clean(ctx->path, c, sizeof(c)));
		return -1;
	}
	if (!json_cesu_to_utf8(s, p->str_len, &n)) {
		json_fail(&p->j, ERR_INVAL,
			  "invalid \\u escape in string at \"%s\"",
			  clean(ctx->path, c, sizeof(c)));
		return -1;
	}
	if (n > PROTO_MAX_STR) {
		json_fail(&p->j, ERR_INVAL,
			  "string at \"%s\" longer than %d bytes",
			  clean(ctx->path, c, sizeof(c)), PROTO_MAX_STR);
		return -1;
	}
	/* Array elements are checked but not kept, except strings of an
	 * array not inside another one: give the bytes back. */
	if (json_arrays(&p->j) &&
	    !(json_arrays(&p->j) == 1 && json_in_array(&p->j))) {
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
			json_fail(&p->j, ERR_INVAL, "bad number at \"%s\"",
				  clean(ctx->path, c, sizeof(c)));
			return -1;
		}
		isint = json_int(ctx->buf, INT64_MIN, INT64_MAX, &v);
	}
	if (is_top(p, ctx, "id") || is_top(p, ctx, "re")) {
		if (!isint || v < 1 || v > PROTO_MAX_ID)
			return check_not_idre(p, ctx);
		if (ctx->path[0] == 'i')
			p->m->id = v;
		else
			p->m->re = v;
	}
	if (json_arrays(&p->j) || reason == LEJPCB_VAL_NULL)
		return 0;
	f = store(p, ctx, reason == LEJPCB_VAL_TRUE ||
		  reason == LEJPCB_VAL_FALSE ? K_BOOL : isint ? K_INT : K_NUM);
	if (!f)
		return -1;
	f->num = reason == LEJPCB_VAL_TRUE ? 1 : v;
	return 0;
}

/* json.c's callback: what each value means in a control message. */
static int on_event(void *arg, struct lejp_ctx *ctx, char reason)
{
	struct parse *p = arg;

	switch (reason) {
	case LEJPCB_OBJECT_START:
	case LEJPCB_ARRAY_START:
		return on_container(p, ctx, reason == LEJPCB_ARRAY_START);
	case LEJPCB_PAIR_NAME:
		return on_pair(p, ctx);
	case LEJPCB_VAL_STR_START:
		return on_str_start(p, ctx);
	case LEJPCB_VAL_STR_CHUNK:
		return on_str_data(p, ctx);
	case LEJPCB_VAL_STR_END:
		return on_str_end(p, ctx);
	case LEJPCB_VAL_TRUE:
	case LEJPCB_VAL_FALSE:
	case LEJPCB_VAL_NULL:
	case LEJPCB_VAL_NUM_INT:
	case LEJPCB_VAL_NUM_FLOAT:
		return on_scalar(p, ctx, reason);
	default:
		/* Container ends: nothing to do, json.c checked them. */
		return 0;
	}
}

static const struct json_spec msg_spec = {
	.max_depth = PROTO_MAX_DEPTH,
	.max_path = PROTO_MAX_PATH,
	.path_name = "field",
	.text_name = "message",
	/* What the check for "type" below says of an empty message. */
	.empty_why = "no \"type\"",
	.event = on_event,
};

err_t proto_parse(const char *buf, size_t len, struct proto_msg **out,
		  int64_t *bad_id, char *why, size_t whylen)
{
	struct parse p = { .m = NULL };
	struct proto_msg *m = NULL;
	size_t i, colons = 0, maxf;
	struct field *t;

	json_init(&p.j, &msg_spec, &p, why, whylen);
	if (bad_id)
		*bad_id = 0;
	if (!out || (!buf && len)) {
		json_fail(&p.j, ERR_INVAL, "no message");
		goto out;
	}
	*out = NULL;
	if (len > PROTO_MAX_MSG) {
		json_fail(&p.j, ERR_LIMIT, "message larger than %d bytes",
			  PROTO_MAX_MSG);
		goto out;
	}
	if (!len) {
		json_fail(&p.j, ERR_INVAL, "empty message");
		goto out;
	}
	if (memchr(buf, 0, len)) {
		json_fail(&p.j, ERR_INVAL, "NUL byte in message");
		goto out;
	}
	if (!json_utf8_valid(buf, len)) {
		json_fail(&p.j, ERR_INVAL, "invalid UTF-8");
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
		json_fail(&p.j, ERR_NOMEM, "out of memory");
		goto out;
	}
	m->maxfields = maxf;
	m->text = (char *)&m->f[maxf];
	m->text_cap = len + 1 + maxf * (PROTO_MAX_PATH + 1);
	p.m = m;

	if (json_run(&p.j, buf, len))
		goto out;
	t = find(m, "type");
	if (!t || t->kind != K_STR) {
		json_fail(&p.j, ERR_INVAL, "no \"type\"");
		goto out;
	}
	if (!t->str[0]) {
		json_fail(&p.j, ERR_INVAL, "empty \"type\"");
		goto out;
	}
	if (strlen(t->str) > PROTO_MAX_TYPE) {
		json_fail(&p.j, ERR_INVAL, "\"type\" longer than %d bytes",
			  PROTO_MAX_TYPE);
		goto out;
	}
	m->type = t->str;
	if (!m->id) {
		json_fail(&p.j, ERR_INVAL, "no \"id\"");
		goto out;
	}
	*out = m;
	m = NULL;
out:
	if (json_err(&p.j) && bad_id && p.m)
		*bad_id = p.m->id;
	free(m);
	return json_err(&p.j);
}

void proto_msg_free(struct proto_msg *m)
{
	/* A value may be a secret (a certificate job's private key): wiped
	 * before the memory is reused; all of it, as strings dropped while
	 * parsing lie beyond text_used. About what calloc() cleared. */
	if (m)
		mbedtls_platform_zeroize(m->text, m->text_cap);
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
			k = json_utf8_len(u, n);
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
