/*
 * manifest — the signed software manifest (see manifest.h).
 *
 * Keys: each file is read here, bounded, rather than by
 * mbedtls_pk_parse_public_keyfile(), which reads a file of any size and
 * loses the system's error text; the bytes then go to
 * mbedtls_pk_parse_public_key() exactly as that function would pass them.
 *
 * Parsing: the text is checked as a whole first (size, NUL bytes, strict
 * UTF-8), then parsed by json.c, which drives LEJP with the guards LEJP
 * 4.1.6 needs (as it does for proto.c) and checks nesting and brackets;
 * numbers are checked against JSON's grammar here, as LEJP lets "01" and
 * "1e+" through. proto_parse() itself cannot be used: it does not keep
 * array elements, and the components are one.
 *
 * Which member a value belongs to is tracked here (depth, the member name
 * just read, whether the components array or one of its objects is open)
 * rather than matched on LEJP's dotted path, which cannot tell a key
 * "a.b" from a member b of a.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>
#include <mbedtls/base64.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include "digest.h"
#include "json.h"
#include "manifest.h"
#include "state.h"

#define MAX_PATH_LEN	120	/* bytes of LEJP's dotted path */
#define MAX_DEPTH	8	/* containers, the top-level object is 1 */

/* json.c's buffers are sized for its caps. */
_Static_assert(MAX_PATH_LEN <= JSON_MAX_PATH, "MAX_PATH_LEN too big");
_Static_assert(MAX_DEPTH <= JSON_MAX_DEPTH, "MAX_DEPTH too big");

/* -------------------------------------------------------------- keys */

struct manifest_keys {
	size_t n;
	mbedtls_pk_context pk[MANIFEST_MAX_KEYS];
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
	       c == '\f';
}

/* Whether "-----BEGIN " occurs in buf (memmem() is a GNU extension). */
static bool has_pem_header(const unsigned char *buf, size_t len)
{
	static const char tag[] = "-----BEGIN ";
	size_t i, n = sizeof(tag) - 1;

	for (i = 0; i + n <= len; i++)
		if (buf[i] == '-' && !memcmp(buf + i, tag, n))
			return true;
	return false;
}

static err_t load_key(const char *path, mbedtls_pk_context *pk, char *why,
		      size_t whylen)
{
	unsigned char *buf;
	char msg[128];
	size_t len = 0;
	err_t e;
	int ret;

	/* One more byte for the NUL that PEM parsing wants. */
	buf = malloc(MANIFEST_MAX_KEY_FILE + 1);
	if (!buf) {
		err_say(why, whylen, "%s: out of memory", path);
		return ERR_NOMEM;
	}
	e = state_read_why(path, (char *)buf, MANIFEST_MAX_KEY_FILE, &len, why,
			   whylen);
	if (e)
		goto out;
	/*
	 * As mbedtls_pk_load_file() does: mbedTLS tries PEM only on a
	 * NUL-terminated buffer whose length counts the NUL, and DER only
	 * on the exact bytes.
	 */
	buf[len] = '\0';
	if (has_pem_header(buf, len))
		len++;
	e = ERR_INVAL;
	if (!len) {
		err_say(why, whylen, "%s: not a public key: the file is empty",
		    path);
		goto out;
	}
	ret = mbedtls_pk_parse_public_key(pk, buf, len);
	if (ret) {
		mbedtls_strerror(ret, msg, sizeof(msg));
		err_say(why, whylen, "%s: not a public key: %s", path, msg);
		goto out;
	}
	/* Another curve of the same size (secp256k1) must not pass either. */
	if (!mbedtls_pk_can_do(pk, MBEDTLS_PK_ECDSA) ||
	    mbedtls_pk_ec(*pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
		err_say(why, whylen, "%s: not a P-256 key", path);
		goto out;
	}
	e = ERR_OK;
out:
	free(buf);
	return e;
}

err_t manifest_keys_load(const char *list, struct manifest_keys **out,
			 char *why, size_t whylen)
{
	struct manifest_keys *k = NULL;
	char path[MANIFEST_MAX_KEY_PATH + 1];
	const char *s = list;
	size_t n, i;
	err_t e;

	err_say(why, whylen, "%s", "");
	if (!out) {
		err_say(why, whylen, "no place for the keys");
		return ERR_INVAL;
	}
	*out = NULL;
	k = calloc(1, sizeof(*k));
	if (!k) {
		err_say(why, whylen, "out of memory");
		return ERR_NOMEM;
	}
	for (i = 0; i < MANIFEST_MAX_KEYS; i++)
		mbedtls_pk_init(&k->pk[i]);
	while (s && *s) {
		while (is_space(*s))
			s++;
		if (!*s)
			break;
		for (n = 0; s[n] && !is_space(s[n]); n++)
			;
		if (k->n == MANIFEST_MAX_KEYS) {
			err_say(why, whylen, "more than %d trusted keys",
			    MANIFEST_MAX_KEYS);
			e = ERR_LIMIT;
			goto out;
		}
		if (n > MANIFEST_MAX_KEY_PATH) {
			err_say(why, whylen, "%.64s...: path longer than %d bytes",
			    s, MANIFEST_MAX_KEY_PATH);
			e = ERR_INVAL;
			goto out;
		}
		memcpy(path, s, n);
		path[n] = '\0';
		s += n;
		e = load_key(path, &k->pk[k->n], why, whylen);
		if (e)
			goto out;
		k->n++;
	}
	if (!k->n) {
		err_say(why, whylen, "no trusted keys configured");
		e = ERR_INVAL;
		goto out;
	}
	*out = k;
	k = NULL;
	e = ERR_OK;
out:
	manifest_keys_free(k);
	return e;
}

size_t manifest_keys_count(const struct manifest_keys *k)
{
	return k ? k->n : 0;
}

void manifest_keys_free(struct manifest_keys *k)
{
	size_t i;

	if (!k)
		return;
	for (i = 0; i < MANIFEST_MAX_KEYS; i++)
		mbedtls_pk_free(&k->pk[i]);
	free(k);
}

/* --------------------------------------------------------- signature */

static bool alloc_failed(int ret)
{
	return ret == MBEDTLS_ERR_PK_ALLOC_FAILED ||
	       ret == MBEDTLS_ERR_ECP_ALLOC_FAILED ||
	       ret == MBEDTLS_ERR_MPI_ALLOC_FAILED ||
	       ret == MBEDTLS_ERR_ASN1_ALLOC_FAILED;
}

err_t manifest_verify(const struct manifest_keys *k, const char *text,
		      size_t len, const char *sig_b64, char *why,
		      size_t whylen)
{
	unsigned char sig[MANIFEST_MAX_SIG], hash[32];
	char msg[128];
	size_t slen, olen = 0, i;
	int ret;

	err_say(why, whylen, "%s", "");
	if (!k || !k->n) {
		err_say(why, whylen, "no trusted keys configured");
		return ERR_INVAL;
	}
	if ((!text && len) || !sig_b64) {
		err_say(why, whylen, "no manifest or no signature");
		return ERR_INVAL;
	}
	if (len > MANIFEST_MAX_TEXT) {
		err_say(why, whylen, "manifest longer than %d bytes",
		    MANIFEST_MAX_TEXT);
		return ERR_LIMIT;
	}
	slen = strnlen(sig_b64, MANIFEST_MAX_SIG_TEXT + 1);
	if (slen > MANIFEST_MAX_SIG_TEXT) {
		err_say(why, whylen, "signature longer than %d bytes",
		    MANIFEST_MAX_SIG);
		return ERR_PERM;
	}
	ret = mbedtls_base64_decode(sig, sizeof(sig), &olen,
				    (const unsigned char *)sig_b64, slen);
	if (ret == MBEDTLS_ERR_BASE64_BUFFER_TOO_SMALL) {
		err_say(why, whylen, "signature longer than %d bytes",
		    MANIFEST_MAX_SIG);
		return ERR_PERM;
	}
	if (ret) {
		err_say(why, whylen, "signature is not valid base64");
		return ERR_PERM;
	}
	/* "" and whitespace alone decode to nothing. */
	if (!olen) {
		err_say(why, whylen, "signature is empty");
		return ERR_PERM;
	}
	/* "" is a valid (if useless) text: hash it from a valid pointer. */
	ret = mbedtls_sha256_ret(len ? (const unsigned char *)text :
				 (const unsigned char *)"", len, hash, 0);
	if (ret) {
		mbedtls_strerror(ret, msg, sizeof(msg));
		err_say(why, whylen, "SHA-256 of the manifest: %s", msg);
		return ERR_TLS;
	}
	for (i = 0; i < k->n; i++) {
		/* pk_verify takes a non-const context but does not change it. */
		ret = mbedtls_pk_verify((mbedtls_pk_context *)&k->pk[i],
					MBEDTLS_MD_SHA256, hash, sizeof(hash),
					sig, olen);
		if (!ret)
			return ERR_OK;
		/* Anything else is "not this key": garbage, wrong key, extra
		 * bytes after the DER (MBEDTLS_ERR_PK_SIG_LEN_MISMATCH). */
		if (alloc_failed(ret)) {
			mbedtls_strerror(ret, msg, sizeof(msg));
			err_say(why, whylen, "signature check: %s", msg);
			return ERR_NOMEM;
		}
	}
	err_say(why, whylen,
	    "signature does not verify with any of the %zu trusted keys",
	    k->n);
	return ERR_PERM;
}

/* ---------------------------------------------------------- versions */

/* The parts of the dotted version s[0..n); false if it is not one. */
static bool version_parse(const char *s, size_t n,
			  uint32_t parts[MANIFEST_VERSION_PARTS],
			  unsigned *count)
{
	size_t i = 0;
	unsigned digits;
	uint32_t v;

	*count = 0;
	for (;;) {
		v = 0;
		for (digits = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
			/* Six digits bound the value to 0..999999. */
			if (++digits > 6)
				return false;
			v = v * 10 + (uint32_t)(s[i] - '0');
		}
		if (!digits || *count == MANIFEST_VERSION_PARTS)
			return false;
		parts[(*count)++] = v;
		if (i == n)
			return true;
		if (s[i] != '.')
			return false;
		i++;
	}
}

int manifest_version_cmp(const char *a, const char *b, bool *ok)
{
	uint32_t pa[MANIFEST_VERSION_PARTS], pb[MANIFEST_VERSION_PARTS], x, y;
	unsigned na, nb, i;
	size_t la, lb;

	if (ok)
		*ok = false;
	if (!a || !b)
		return 0;
	la = strnlen(a, MANIFEST_MAX_RELEASE + 1);
	lb = strnlen(b, MANIFEST_MAX_RELEASE + 1);
	if (la > MANIFEST_MAX_RELEASE || lb > MANIFEST_MAX_RELEASE ||
	    !version_parse(a, la, pa, &na) || !version_parse(b, lb, pb, &nb))
		return 0;
	if (ok)
		*ok = true;
	for (i = 0; i < MANIFEST_VERSION_PARTS; i++) {
		x = i < na ? pa[i] : 0;
		y = i < nb ? pb[i] : 0;
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

/* ----------------------------------------------------------- parsing */

struct manifest {
	char release[MANIFEST_MAX_RELEASE + 1];
	char profile[8];
	size_t n;
	struct manifest_component c[MANIFEST_MAX_COMPONENTS];
	struct {
		char name[MANIFEST_MAX_NAME + 1];
		char version[MANIFEST_MAX_VERSION + 1];
		char sha256[DIGEST_HEX_LEN + 1];
	} s[MANIFEST_MAX_COMPONENTS];
};

/* The members the parser knows; a bit each in the seen masks. */
enum member {
	M_NONE = 0,		/* an unknown member: checked, ignored */
	M_RELEASE, M_PROFILE, M_COMPONENTS,		/* top level */
	M_NAME, M_VERSION, M_SIZE, M_SHA256,		/* a component */
};

static const char *const member_name[] = {
	[M_NONE] = "", [M_RELEASE] = "release", [M_PROFILE] = "profile",
	[M_COMPONENTS] = "components", [M_NAME] = "name",
	[M_VERSION] = "version", [M_SIZE] = "size", [M_SHA256] = "sha256",
};

/* The longest string kept: the longest a known member may be, so a longer
 * one is known to be wrong without keeping it all. */
#define MAX_STR MANIFEST_MAX_NAME
_Static_assert(MAX_STR >= MANIFEST_MAX_RELEASE &&
	       MAX_STR >= MANIFEST_MAX_VERSION && MAX_STR >= DIGEST_HEX_LEN,
	       "MAX_STR too small");

/* Where a parse stands; json.c hands it back to on_event(). */
struct parse {
	struct json j;		/* open containers, the first failure */
	struct manifest *m;
	enum member want;	/* the member whose value comes next */
	unsigned top_seen;	/* 1 << member, top level */
	unsigned elem_seen;	/* 1 << member, the open component */
	bool in_comps;		/* the components array is open (depth 2) */
	bool in_elem;		/* one of its objects is open (depth 3) */
	enum member str_of;	/* the member whose string is being read */
	char str[MAX_STR + 1];
	size_t str_len;		/* all of it; at most MAX_STR bytes kept */
};

/* "release" or "components[2].sha256": how why names a member. */
static const char *where(const struct parse *p, enum member w, char *buf,
			 size_t cap)
{
	if (w >= M_NAME)
		snprintf(buf, cap, "components[%zu].%s", p->m->n,
			 member_name[w]);
	else
		snprintf(buf, cap, "%s", member_name[w]);
	return buf;
}

/* Fails with why "<member>: <what>". */
static void bad(struct parse *p, enum member w, const char *what)
{
	char at[48];

	json_fail(&p->j, ERR_INVAL, "%s: %s", where(p, w, at, sizeof(at)),
		  what);
}

/* The member whose name LEJP just read, M_NONE for one not known there. */
static enum member key_member(struct parse *p, struct lejp_ctx *ctx)
{
	size_t n;
	const char *key = json_key(ctx, &n);
	enum member w, lo, hi;

	if (!key) {
		json_fail(&p->j, ERR_INVAL,
			  "cannot parse: unexpected parser state");
		return M_NONE;
	}
	if (json_depth(&p->j) == 1) {
		lo = M_RELEASE;
		hi = M_COMPONENTS;
	} else if (json_depth(&p->j) == 3 && p->in_elem) {
		lo = M_NAME;
		hi = M_SHA256;
	} else {
		return M_NONE;
	}
	for (w = lo; w <= hi; w++)
		if (strlen(member_name[w]) == n &&
		    !memcmp(key, member_name[w], n))
			return w;
	return M_NONE;
}

static int on_pair(struct parse *p, struct lejp_ctx *ctx)
{
	enum member w = key_member(p, ctx);
	unsigned *seen = w >= M_NAME ? &p->elem_seen : &p->top_seen;

	if (json_err(&p->j))
		return -1;
	p->want = w;
	if (w == M_NONE)
		return 0;
	if (*seen & (1u << w)) {
		bad(p, w, "given more than once");
		return -1;
	}
	*seen |= 1u << w;
	return 0;
}

/*
 * The start of a value: kind 'o' object, 'a' array, 's' string, 'n' number,
 * 'b' boolean, 'z' null. Checks it against the member it belongs to.
 */
static int on_value(struct parse *p, char kind)
{
	enum member w = p->want;

	p->want = M_NONE;
	/* A direct element of the components array is a component. */
	if (json_depth(&p->j) == 2 && p->in_comps) {
		if (p->m->n == MANIFEST_MAX_COMPONENTS) {
			json_fail(&p->j, ERR_INVAL,
				  "components: more than %d entries",
				  MANIFEST_MAX_COMPONENTS);
			return -1;
		}
		if (kind != 'o') {
			json_fail(&p->j, ERR_INVAL,
				  "components[%zu]: not an object", p->m->n);
			return -1;
		}
		p->in_elem = true;
		p->elem_seen = 0;
		return 0;
	}
	switch (w) {
	case M_NONE:
		return 0;
	case M_COMPONENTS:
		if (kind != 'a') {
			bad(p, w, "not an array");
			return -1;
		}
		p->in_comps = true;
		return 0;
	case M_SIZE:
		if (kind != 'n') {
			bad(p, w, "not an integer in 0..2^40");
			return -1;
		}
		return 0;
	default:
		if (kind != 's') {
			bad(p, w, "not a string");
			return -1;
		}
		p->str_of = w;
		p->str_len = 0;
		return 0;
	}
}

/* A component object closed: all four members there, a new name. */
static int end_component(struct parse *p)
{
	struct manifest *m = p->m;
	enum member w;
	size_t i;

	for (w = M_NAME; w <= M_SHA256; w++)
		if (!(p->elem_seen & (1u << w))) {
			bad(p, w, "missing");
			return -1;
		}
	for (i = 0; i < m->n; i++)
		if (!strcmp(m->s[i].name, m->s[m->n].name)) {
			json_fail(&p->j, ERR_INVAL,
				  "components[%zu].name: duplicate of "
				  "components[%zu]", m->n, i);
			return -1;
		}
	m->c[m->n].name = m->s[m->n].name;
	m->c[m->n].version = m->s[m->n].version;
	m->c[m->n].sha256 = m->s[m->n].sha256;
	m->n++;
	p->in_elem = false;
	return 0;
}

/* A container inside the top-level object closed; json.c has checked
 * its bracket and taken it off its stack. */
static int on_container_end(struct parse *p)
{
	if (json_depth(&p->j) == 2 && p->in_elem)
		return end_component(p);
	if (json_depth(&p->j) == 1 && p->in_comps) {
		p->in_comps = false;
		if (!p->m->n) {
			json_fail(&p->j, ERR_INVAL, "components: empty");
			return -1;
		}
	}
	return 0;
}

static int on_str_data(struct parse *p, struct lejp_ctx *ctx)
{
	size_t keep;

	if (p->str_of == M_NONE)
		return 0;
	keep = p->str_len < MAX_STR ? MAX_STR - p->str_len : 0;
	if (keep > ctx->npos)
		keep = ctx->npos;
	/* Not even a 0-byte copy once str_len is past the buffer: that
	 * pointer would be out of bounds (UB). */
	if (keep)
		memcpy(p->str + p->str_len, ctx->buf, keep);
	/* Counts on past what is kept; the check below needs only "too
	 * long", and a string is at most MANIFEST_MAX_TEXT bytes. */
	p->str_len += ctx->npos;
	return 0;
}

static bool name_ok(const char *s, size_t n)
{
	size_t i;

	if (!n || n > MANIFEST_MAX_NAME)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static bool printable_ok(const char *s, size_t n, size_t max)
{
	size_t i;

	if (!n || n > max)
		return false;
	for (i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	return true;
}

/* A known member's string is complete: check it and keep it. */
static int on_str_end(struct parse *p, struct lejp_ctx *ctx)
{
	struct manifest *m = p->m;
	enum member w = p->str_of;
	uint32_t parts[MANIFEST_VERSION_PARTS];
	unsigned nparts;
	const char *s = p->str;
	size_t n;

	on_str_data(p, ctx);
	p->str_of = M_NONE;
	n = p->str_len;
	if (n <= MAX_STR)
		p->str[n] = '\0';
	switch (w) {
	case M_NONE:
		return 0;
	case M_RELEASE:
		if (n > MANIFEST_MAX_RELEASE ||
		    !version_parse(s, n, parts, &nparts)) {
			bad(p, w, "not a dotted version (1 to 8 numbers of "
				  "up to 6 digits)");
			return -1;
		}
		memcpy(m->release, s, n + 1);
		return 0;
	case M_PROFILE:
		if ((n != 5 || memcmp(s, "linux", 5)) &&
		    (n != 7 || memcmp(s, "ip500v2", 7))) {
			bad(p, w, "not linux or ip500v2");
			return -1;
		}
		memcpy(m->profile, s, n + 1);
		return 0;
	case M_NAME:
		if (!name_ok(s, n)) {
			bad(p, w, "not 1..128 characters of [A-Za-z0-9._-]");
			return -1;
		}
		if (!strcmp(s, ".") || !strcmp(s, "..")) {
			bad(p, w, "\".\" and \"..\" are not file names");
			return -1;
		}
		memcpy(m->s[m->n].name, s, n + 1);
		return 0;
	case M_VERSION:
		if (!printable_ok(s, n, MANIFEST_MAX_VERSION)) {
			bad(p, w, "not 1..32 printable ASCII characters");
			return -1;
		}
		memcpy(m->s[m->n].version, s, n + 1);
		return 0;
	case M_SHA256:
		if (n != DIGEST_HEX_LEN || !digest_hex_valid(s)) {
			bad(p, w, "not 64 lower-case hex digits");
			return -1;
		}
		memcpy(m->s[m->n].sha256, s, n + 1);
		return 0;
	default:
		/* on_value() lets only string members get here. */
		json_fail(&p->j, ERR_INVAL, "cannot parse: unexpected string");
		return -1;
	}
}

static int on_number(struct parse *p, struct lejp_ctx *ctx)
{
	enum member w = p->want;
	int64_t v;

	if (!json_number(ctx->buf)) {
		json_fail(&p->j, ERR_INVAL, "not JSON: bad number");
		return -1;
	}
	if (on_value(p, 'n'))
		return -1;
	if (w != M_SIZE)
		return 0;
	/* "-0" is 0, but a size has no sign. */
	if (ctx->buf[0] == '-' ||
	    !json_int(ctx->buf, 0, (int64_t)MANIFEST_MAX_SIZE, &v)) {
		bad(p, w, "not an integer in 0..2^40");
		return -1;
	}
	p->m->c[p->m->n].size = (uint64_t)v;
	return 0;
}

/* json.c's callback: what each value means in a manifest. */
static int on_event(void *arg, struct lejp_ctx *ctx, char reason)
{
	struct parse *p = arg;

	switch (reason) {
	case LEJPCB_OBJECT_START:
		return on_value(p, 'o');
	case LEJPCB_ARRAY_START:
		return on_value(p, 'a');
	case LEJPCB_OBJECT_END:
	case LEJPCB_ARRAY_END:
		return on_container_end(p);
	case LEJPCB_PAIR_NAME:
		return on_pair(p, ctx);
	case LEJPCB_VAL_STR_START:
		return on_value(p, 's');
	case LEJPCB_VAL_STR_CHUNK:
		return on_str_data(p, ctx);
	case LEJPCB_VAL_STR_END:
		return on_str_end(p, ctx);
	case LEJPCB_VAL_NUM_INT:
	case LEJPCB_VAL_NUM_FLOAT:
		return on_number(p, ctx);
	case LEJPCB_VAL_TRUE:
	case LEJPCB_VAL_FALSE:
		return on_value(p, 'b');
	case LEJPCB_VAL_NULL:
		return on_value(p, 'z');
	default:
		return 0;
	}
}

static const struct json_spec text_spec = {
	.max_depth = MAX_DEPTH,
	.max_path = MAX_PATH_LEN,
	.path_name = "member",
	.text_name = "manifest",
	/* What the check for missing members below says of an empty one. */
	.empty_why = "release: missing",
	.event = on_event,
};

err_t manifest_parse(const char *text, size_t len, struct manifest **out,
		     char *why, size_t whylen)
{
	struct parse *p = NULL;
	struct manifest *m = NULL;
	enum member w;
	err_t e;

	err_say(why, whylen, "%s", "");
	if (out)
		*out = NULL;
	if (!out || (!text && len)) {
		err_say(why, whylen, "no manifest");
		return ERR_INVAL;
	}
	if (len > MANIFEST_MAX_TEXT) {
		err_say(why, whylen, "manifest longer than %d bytes",
		    MANIFEST_MAX_TEXT);
		return ERR_LIMIT;
	}
	if (!len) {
		err_say(why, whylen, "empty manifest");
		return ERR_INVAL;
	}
	if (memchr(text, 0, len)) {
		err_say(why, whylen, "NUL byte in the manifest");
		return ERR_INVAL;
	}
	if (!json_utf8_valid(text, len)) {
		err_say(why, whylen, "invalid UTF-8");
		return ERR_INVAL;
	}
	m = calloc(1, sizeof(*m));
	p = calloc(1, sizeof(*p));
	if (!m || !p) {
		err_say(why, whylen, "out of memory");
		e = ERR_NOMEM;
		goto out;
	}
	p->m = m;
	json_init(&p->j, &text_spec, p, why, whylen);
	if (json_run(&p->j, text, len))
		goto fin;
	for (w = M_RELEASE; w <= M_COMPONENTS; w++)
		if (!(p->top_seen & (1u << w))) {
			bad(p, w, "missing");
			goto fin;
		}
	*out = m;
	m = NULL;
fin:
	e = json_err(&p->j);
out:
	free(p);
	free(m);
	return e;
}

void manifest_free(struct manifest *m)
{
	free(m);
}

const char *manifest_release(const struct manifest *m)
{
	return m ? m->release : NULL;
}

const char *manifest_profile(const struct manifest *m)
{
	return m ? m->profile : NULL;
}

size_t manifest_count(const struct manifest *m)
{
	return m ? m->n : 0;
}

const struct manifest_component *manifest_at(const struct manifest *m,
					     size_t i)
{
	return m && i < m->n ? &m->c[i] : NULL;
}

uint64_t manifest_total_size(const struct manifest *m)
{
	uint64_t t = 0;
	size_t i;

	for (i = 0; m && i < m->n; i++)
		t += m->c[i].size;
	return t;
}
