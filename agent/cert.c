/*
 * cert — the system certificate COM pushes (see cert.h).
 *
 * Texts from COM are looked at as PEM blocks first ("-----BEGIN " to the
 * end of its "-----END ...-----" line): each argument must be exactly one
 * block of its kind, so a key cannot hide a second key and a "leaf" cannot
 * be a bundle. Each block is copied NUL-terminated (what mbedTLS's PEM
 * reader needs, its length counting the NUL) and parsed.
 *
 * mbedTLS judges validity by its own clock (mbedtls_time()); the agent's
 * clock is another (the test build shifts it, and a box whose clock was
 * wrong at boot must be judged by what the agent believes). So the
 * EXPIRED/FUTURE flags of mbedtls_x509_crt_verify() are ignored and the
 * dates are compared here, as 64-bit seconds: the appliance's time_t is 32
 * bits and certificates run past 2038.
 *
 * What is installed and recorded is the chain re-encoded from the parsed
 * DER (no comments, no "Bag Attributes" lines, one canonical form) and the
 * key's PEM block as sent: re-encoding the key would pass it through
 * mbedTLS buffers this module cannot wipe.
 *
 * The record: STATE_DIR/cert/current.pem and previous.pem, each the chain
 * followed by the key, each replaced whole by state_write(): one file per
 * pair, so a power cut can never leave a certificate beside another's key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mbedtls/asn1.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509_crt.h>

#include "cert.h"
#include "log.h"
#include "state.h"

#define LOG_MODULE "cert"

#define STORE_DIR	"cert"
#define CURRENT_FILE	"current.pem"
#define PREVIOUS_FILE	"previous.pem"

static const char pem_begin[] = "-----BEGIN ";
static const char pem_end[] = "-----END ";
static const char cert_header[] = "-----BEGIN CERTIFICATE-----";
#define KEY_HEADER_TAIL "PRIVATE KEY-----"

/* One certificate re-encoded: DER of a CERT_PEM_MAX text is at most 3/4 of
 * it; as 64-column base64 with header, footer and newlines that stays
 * below this. */
#define PEM_OUT_MAX	4608
/* A record file: the whole chain and the key, with room to spare. */
#define STORE_FILE_MAX	((1 + CERT_CHAIN_MAX) * PEM_OUT_MAX + CERT_PEM_MAX + 64)

struct cert_pair {
	char *chain;		/* PEM, leaf first */
	size_t chain_len;
	char *key;		/* the key's PEM block; wiped on free */
	size_t key_len;
	struct cert_info info;
};

struct cert_store {
	char dir[STATE_PATH_MAX + 1];
	char cur[STATE_PATH_MAX + 1];
	char prev[STATE_PATH_MAX + 1];
	bool have;
	struct cert_info info;
	bool have_prev;
};

/* ---- time ------------------------------------------------------------- */

/* Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), all in 64 bits. */
int64_t cert_utc_seconds(int year, int mon, int day, int hour, int min,
			 int sec)
{
	int64_t y = (int64_t)year - (mon <= 2);
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t mp = ((int64_t)mon + 9) % 12;	/* March is 0 */
	int64_t doy = (153 * mp + 2) / 5 + day - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64_t days = era * 146097 + doe - 719468;

	return days * 86400 + (int64_t)hour * 3600 + (int64_t)min * 60 + sec;
}

/* The inverse (civil_from_days), for any t, without gmtime_r's time_t. */
void cert_time_text(int64_t t, char *buf, size_t cap)
{
	int64_t z = t / 86400, s = t % 86400;
	int64_t era, doe, yoe, y, doy, mp, d, m;

	if (s < 0) {
		s += 86400;
		z--;
	}
	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y += m <= 2;
	snprintf(buf, cap, "%04lld-%02lld-%02lld %02lld:%02lld:%02lld UTC",
		 (long long)y, (long long)m, (long long)d,
		 (long long)(s / 3600), (long long)(s / 60 % 60),
		 (long long)(s % 60));
}

static int64_t x509_seconds(const mbedtls_x509_time *t)
{
	return cert_utc_seconds(t->year, t->mon, t->day, t->hour, t->min,
				t->sec);
}

/* ---- small helpers ---------------------------------------------------- */

/* Certificate text goes into COM's messages, the journal (strict UTF-8)
 * and the status: printable ASCII only. */
static void ascii_only(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

/* Wipes and frees what may have held key material. */
static void wipe_free(void *p, size_t n)
{
	if (!p)
		return;
	mbedtls_platform_zeroize(p, n);
	free(p);
}

struct block {
	const char *p;
	size_t len;
};

/* The PEM blocks of text into b (at most max); returns how many there are
 * (also beyond max). A block without its END line runs to the end. */
static size_t pem_blocks(const char *text, struct block *b, size_t max)
{
	const char *s = text;
	size_t n = 0;

	while ((s = strstr(s, pem_begin))) {
		const char *e = strstr(s + sizeof(pem_begin) - 1, pem_end);
		const char *stop;

		if (!e) {
			stop = s + strlen(s);
		} else {
			stop = strchr(e, '\n');
			stop = stop ? stop + 1 : e + strlen(e);
		}
		if (n < max) {
			b[n].p = s;
			b[n].len = (size_t)(stop - s);
		}
		n++;
		s = stop;
	}
	return n;
}

static bool is_cert_block(const struct block *b)
{
	return b->len >= sizeof(cert_header) - 1 &&
	       !memcmp(b->p, cert_header, sizeof(cert_header) - 1);
}

/* "-----BEGIN [RSA |EC |ENCRYPTED ]PRIVATE KEY-----" on its first line. */
static bool is_key_block(const struct block *b)
{
	const char *nl = memchr(b->p, '\n', b->len);
	size_t line = nl ? (size_t)(nl - b->p) : b->len;
	size_t tail = sizeof(KEY_HEADER_TAIL) - 1;

	while (line && b->p[line - 1] == '\r')
		line--;
	return line >= tail &&
	       !memcmp(b->p + line - tail, KEY_HEADER_TAIL, tail);
}

/* The block NUL-terminated, on the heap (wipe_free(p, len + 1)), with a
 * newline after it if it had none. */
static char *block_dup(const struct block *b, size_t *len)
{
	bool nl = b->len && b->p[b->len - 1] == '\n';
	char *s = malloc(b->len + 2);

	if (!s)
		return NULL;
	memcpy(s, b->p, b->len);
	*len = b->len;
	if (!nl)
		s[(*len)++] = '\n';
	s[*len] = '\0';
	return s;
}

static void tls_text(int ret, char *msg, size_t cap)
{
	mbedtls_strerror(ret, msg, cap);
	ascii_only(msg);
}

/* ---- parsing ---------------------------------------------------------- */

/* One certificate from text (named what in messages), appended to crt. */
static bool parse_cert(mbedtls_x509_crt *crt, const char *text,
		       const char *what, char *why, size_t cap)
{
	struct block b;
	char msg[128];
	size_t n, len;
	char *buf;
	int ret;

	if (!text || !*text) {
		err_say(why, cap, "%s: a PEM certificate is required", what);
		return false;
	}
	if (strlen(text) > CERT_PEM_MAX) {
		err_say(why, cap, "%s: longer than %d bytes", what,
			CERT_PEM_MAX);
		return false;
	}
	n = pem_blocks(text, &b, 1);
	if (n != 1 || !is_cert_block(&b)) {
		if (n > 1)
			err_say(why, cap, "%s: one PEM certificate expected, "
				"found %zu PEM blocks", what, n);
		else
			err_say(why, cap, "%s: not a PEM certificate (no "
				"\"%s\" line)", what, cert_header);
		return false;
	}
	buf = block_dup(&b, &len);
	if (!buf) {
		err_say(why, cap, "%s: out of memory", what);
		return false;
	}
	ret = mbedtls_x509_crt_parse(crt, (const unsigned char *)buf, len + 1);
	free(buf);
	if (ret != 0) {
		tls_text(ret, msg, sizeof(msg));
		err_say(why, cap, "%s: not a valid certificate: %s", what, msg);
		return false;
	}
	return true;
}

static bool parse_key(mbedtls_pk_context *key, const char *text,
		      struct block *kb, char *why, size_t cap)
{
	char msg[128];
	size_t n, len;
	char *buf;
	int ret;

	if (!text || !*text) {
		err_say(why, cap, "args.key: a PEM private key is required");
		return false;
	}
	if (strlen(text) > CERT_PEM_MAX) {
		err_say(why, cap, "args.key: longer than %d bytes",
			CERT_PEM_MAX);
		return false;
	}
	n = pem_blocks(text, kb, 1);
	if (n != 1 || !is_key_block(kb)) {
		if (n > 1)
			err_say(why, cap, "args.key: one PEM private key "
				"expected, found %zu PEM blocks", n);
		else
			err_say(why, cap, "args.key: not a PEM private key (no "
				"\"-----BEGIN ...PRIVATE KEY-----\" line)");
		return false;
	}
	buf = block_dup(kb, &len);
	if (!buf) {
		err_say(why, cap, "args.key: out of memory");
		return false;
	}
	ret = mbedtls_pk_parse_key(key, (const unsigned char *)buf, len + 1,
				   NULL, 0);
	wipe_free(buf, len + 1);
	if (ret == MBEDTLS_ERR_PK_PASSWORD_REQUIRED) {
		err_say(why, cap, "args.key: the key is encrypted; an "
			"unencrypted key is required");
		return false;
	}
	if (ret != 0) {
		tls_text(ret, msg, sizeof(msg));
		err_say(why, cap, "args.key: not a valid private key: %s", msg);
		return false;
	}
	return true;
}

/* The CA bundle, read bounded (mbedtls_x509_crt_parse_file() reads any
 * size and loses the system's error text). */
static bool load_ca(mbedtls_x509_crt *ca, const char *path, char *why,
		    size_t cap)
{
	char msg[128], err[256];
	size_t len = 0;
	char *buf;
	int ret;

	if (!path || !*path) {
		err_say(why, cap, "no CA is configured ([cert] ca_file, "
			"[com] ca_file)");
		return false;
	}
	buf = malloc(CERT_CA_FILE_MAX + 1);
	if (!buf) {
		err_say(why, cap, "%s: out of memory", path);
		return false;
	}
	if (state_read_why(path, buf, CERT_CA_FILE_MAX, &len, err,
			   sizeof(err)) != ERR_OK) {
		free(buf);
		err_say(why, cap, "the configured CA cannot be read: %s", err);
		return false;
	}
	buf[len] = '\0';
	/* Only the PEM reader wants the NUL counted. */
	ret = mbedtls_x509_crt_parse(ca, (const unsigned char *)buf,
				     strstr(buf, pem_begin) ? len + 1 : len);
	free(buf);
	/* > 0: some certificates of a bundle did not parse, others did. */
	if (ret < 0 || ca->version == 0) {
		tls_text(ret < 0 ? ret : MBEDTLS_ERR_X509_CERT_UNKNOWN_FORMAT,
			 msg, sizeof(msg));
		err_say(why, cap, "the configured CA %s holds no usable "
			"certificate: %s", path, msg);
		return false;
	}
	return true;
}

/* ---- what a certificate says ------------------------------------------ */

static void fill_info(const mbedtls_x509_crt *c, struct cert_info *i)
{
	memset(i, 0, sizeof(*i));
	/* A name longer than the buffer comes back cut (and an error). */
	(void)mbedtls_x509_dn_gets(i->subject, sizeof(i->subject), &c->subject);
	(void)mbedtls_x509_dn_gets(i->issuer, sizeof(i->issuer), &c->issuer);
	(void)mbedtls_x509_serial_gets(i->serial, sizeof(i->serial),
				       &c->serial);
	i->subject[sizeof(i->subject) - 1] = '\0';
	i->issuer[sizeof(i->issuer) - 1] = '\0';
	i->serial[sizeof(i->serial) - 1] = '\0';
	ascii_only(i->subject);
	ascii_only(i->issuer);
	ascii_only(i->serial);
	i->not_before = x509_seconds(&c->valid_from);
	i->not_after = x509_seconds(&c->valid_to);
}

static void append(char *buf, size_t cap, const char *sep,
		   const unsigned char *p, size_t n)
{
	size_t at = strlen(buf);

	if (at && at + strlen(sep) < cap) {
		memcpy(buf + at, sep, strlen(sep) + 1);
		at += strlen(sep);
	}
	for (size_t i = 0; i < n && at + 1 < cap; i++)
		buf[at++] = p[i] >= 0x20 && p[i] <= 0x7e ? (char)p[i] : '?';
	buf[at] = '\0';
}

/* The names mbedTLS matched against, as it does: the DNS SANs when the
 * certificate has the extension, else its CNs. */
static void names_of(const mbedtls_x509_crt *c, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (c->ext_types & MBEDTLS_X509_EXT_SUBJECT_ALT_NAME) {
		for (const mbedtls_x509_sequence *s = &c->subject_alt_names;
		     s; s = s->next)
			if (s->buf.p && s->buf.tag ==
			    (MBEDTLS_ASN1_CONTEXT_SPECIFIC |
			     MBEDTLS_X509_SAN_DNS_NAME))
				append(buf, cap, ", ", s->buf.p, s->buf.len);
		if (!buf[0])
			snprintf(buf, cap, "no DNS name");
		return;
	}
	for (const mbedtls_x509_name *n = &c->subject; n; n = n->next)
		if (n->oid.p && !MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid))
			append(buf, cap, ", ", n->val.p, n->val.len);
	if (!buf[0])
		snprintf(buf, cap, "no DNS name or CN");
}

/* mbedTLS's lines for flags as one line: "a; b". */
static void verify_text(uint32_t flags, char *buf, size_t cap)
{
	char info[512];
	const char *line = info;

	/* Too small a buffer: what fitted, still NUL-terminated. */
	(void)mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
	info[sizeof(info) - 1] = '\0';
	buf[0] = '\0';
	while (*line) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);

		if (n)
			append(buf, cap, "; ", (const unsigned char *)line, n);
		line += n + (nl != NULL);
	}
}

/* The leaf and each intermediate against the agent's clock. */
static const char *check_dates(const mbedtls_x509_crt *crt, int64_t now,
			       char *why, size_t cap)
{
	char when[32], clock[32], subject[96];
	int i = 0;

	cert_time_text(now, clock, sizeof(clock));
	for (const mbedtls_x509_crt *c = crt; c && c->version;
	     c = c->next, i++) {
		bool past = now > x509_seconds(&c->valid_to);
		bool future = now < x509_seconds(&c->valid_from);

		if (!past && !future)
			continue;
		cert_time_text(x509_seconds(past ? &c->valid_to
						 : &c->valid_from),
			       when, sizeof(when));
		if (i == 0) {
			err_say(why, cap, past ? "the certificate expired on "
				"%s (the agent's clock reads %s)" :
				"the certificate is not valid before %s (the "
				"agent's clock reads %s)", when, clock);
		} else {
			(void)mbedtls_x509_dn_gets(subject, sizeof(subject),
						   &c->subject);
			subject[sizeof(subject) - 1] = '\0';
			ascii_only(subject);
			err_say(why, cap, past ? "intermediate %d (%s) expired "
				"on %s" : "intermediate %d (%s) is not valid "
				"before %s", i, subject, when);
		}
		return past ? "expired" : "not_yet_valid";
	}
	return NULL;
}

/* The chain as PEM, leaf first, from the parsed DER. */
static bool encode_chain(const mbedtls_x509_crt *crt, struct cert_pair *p,
			 char *why, size_t cap)
{
	size_t room = 0, used = 0;
	char msg[128];

	for (const mbedtls_x509_crt *c = crt; c && c->version; c = c->next)
		room += PEM_OUT_MAX;
	p->chain = malloc(room + 1);
	if (!p->chain) {
		err_say(why, cap, "out of memory");
		return false;
	}
	for (const mbedtls_x509_crt *c = crt; c && c->version; c = c->next) {
		size_t olen = 0;
		int ret = mbedtls_pem_write_buffer(
			"-----BEGIN CERTIFICATE-----\n",
			"-----END CERTIFICATE-----\n", c->raw.p, c->raw.len,
			(unsigned char *)p->chain + used, room + 1 - used,
			&olen);

		if (ret) {
			tls_text(ret, msg, sizeof(msg));
			err_say(why, cap, "cannot encode the chain: %s", msg);
			return false;
		}
		used += olen - 1;	/* olen counts the NUL */
	}
	p->chain_len = used;
	return true;
}

/* ---- verification ----------------------------------------------------- */

const char *cert_verify(const struct cert_req *q, struct cert_pair **out,
			char *why, size_t cap)
{
	mbedtls_x509_crt crt, ca;
	mbedtls_pk_context key;
	struct cert_pair *p = NULL;
	const char *reason = "invalid";
	struct block kb;
	char what[32], text[200];
	uint32_t flags = 0;
	int ret;

	*out = NULL;
	err_say(why, cap, "%s", "");
	mbedtls_x509_crt_init(&crt);
	mbedtls_x509_crt_init(&ca);
	mbedtls_pk_init(&key);
	if (q->nchain > CERT_CHAIN_MAX) {
		err_say(why, cap, "args.chain: at most %d intermediate "
			"certificates, got %zu", CERT_CHAIN_MAX, q->nchain);
		goto out;
	}
	/* The leaf first: mbedTLS verifies the first of the list. */
	if (!parse_cert(&crt, q->cert, "args.cert", why, cap))
		goto out;
	for (size_t i = 0; i < q->nchain; i++) {
		snprintf(what, sizeof(what), "args.chain[%u]", (unsigned)i);
		if (!parse_cert(&crt, q->chain[i], what, why, cap))
			goto out;
	}
	if (!parse_key(&key, q->key, &kb, why, cap))
		goto out;
	if (mbedtls_pk_check_pair(&crt.pk, &key) != 0) {
		reason = "key_mismatch";
		err_say(why, cap, "the key does not match the certificate");
		goto out;
	}
	reason = "untrusted";
	if (!load_ca(&ca, q->ca_file, why, cap))
		goto out;
	ret = mbedtls_x509_crt_verify(&crt, &ca, NULL, q->name, &flags, NULL,
				      NULL);
	/* Dates are judged below, by the agent's clock. */
	flags &= ~(uint32_t)(MBEDTLS_X509_BADCERT_EXPIRED |
			     MBEDTLS_X509_BADCERT_FUTURE);
	if (ret && ret != MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
		tls_text(ret, text, sizeof(text));
		err_say(why, cap, "the chain cannot be verified: %s", text);
		goto out;
	}
	if (flags & ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH) {
		verify_text(flags & ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH,
			    text, sizeof(text));
		err_say(why, cap, "%s: %s",
			flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED ?
			"the chain does not lead to the configured CA" :
			"the chain is not acceptable", text);
		goto out;
	}
	if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
		names_of(&crt, text, sizeof(text));
		reason = "name";
		err_say(why, cap, "the certificate names %s, not %s", text,
			q->name);
		goto out;
	}
	reason = check_dates(&crt, q->now, why, cap);
	if (reason)
		goto out;
	reason = "invalid";
	p = calloc(1, sizeof(*p));
	if (!p) {
		err_say(why, cap, "out of memory");
		goto out;
	}
	if (!encode_chain(&crt, p, why, cap))
		goto out;
	p->key = block_dup(&kb, &p->key_len);
	if (!p->key) {
		err_say(why, cap, "out of memory");
		goto out;
	}
	fill_info(&crt, &p->info);
	*out = p;
	p = NULL;
	reason = NULL;
out:
	cert_pair_free(p);
	mbedtls_pk_free(&key);		/* wipes the key */
	mbedtls_x509_crt_free(&ca);
	mbedtls_x509_crt_free(&crt);
	return reason;
}

void cert_pair_free(struct cert_pair *p)
{
	if (!p)
		return;
	free(p->chain);
	wipe_free(p->key, p->key_len + 1);
	free(p);
}

const struct cert_info *cert_pair_info(const struct cert_pair *p)
{
	return &p->info;
}

err_t cert_pair_write(const struct cert_pair *p, const char *cert_path,
		      const char *key_path)
{
	err_t e = state_write(cert_path, p->chain, p->chain_len);

	return e ? e : state_write(key_path, p->key, p->key_len);
}

/* ---- the record ------------------------------------------------------- */

/* A record file whole into a fresh buffer (wipe_free(*buf, STORE_FILE_MAX
 * + 1)), NUL-terminated. ERR_NOTFOUND quietly; others logged by state. */
static err_t read_record(const char *path, char **buf, size_t *len)
{
	err_t e;

	*buf = malloc(STORE_FILE_MAX + 1);
	if (!*buf) {
		LOGE("%s: out of memory", path);
		return ERR_NOMEM;
	}
	e = state_read(path, *buf, STORE_FILE_MAX, len);
	if (e) {
		wipe_free(*buf, STORE_FILE_MAX + 1);
		*buf = NULL;
		return e;
	}
	(*buf)[*len] = '\0';
	return ERR_OK;
}

/* The recorded certificate's info, from the first block of the file. */
static void load_current(struct cert_store *s)
{
	mbedtls_x509_crt crt;
	struct block b;
	char msg[128];
	size_t len, blen;
	char *buf, *one = NULL;
	int ret = MBEDTLS_ERR_X509_CERT_UNKNOWN_FORMAT;

	if (read_record(s->cur, &buf, &len) != ERR_OK)
		return;
	mbedtls_x509_crt_init(&crt);
	if (pem_blocks(buf, &b, 1) >= 1 && is_cert_block(&b) &&
	    (one = block_dup(&b, &blen)))
		ret = mbedtls_x509_crt_parse(&crt, (unsigned char *)one,
					     blen + 1);
	if (ret == 0) {
		fill_info(&crt, &s->info);
		s->have = true;
		LOGI("installed certificate: %s, serial %s, issued by %s",
		     s->info.subject, s->info.serial, s->info.issuer);
	} else {
		tls_text(ret, msg, sizeof(msg));
		LOGE("%s: no certificate in the record: %s", s->cur, msg);
	}
	free(one);
	mbedtls_x509_crt_free(&crt);
	wipe_free(buf, STORE_FILE_MAX + 1);
}

struct cert_store *cert_store_new(const char *state_dir)
{
	struct cert_store *s = calloc(1, sizeof(*s));
	struct stat st;

	if (!s) {
		LOGE("out of memory for the certificate record");
		return NULL;
	}
	if (!state_path(state_dir, STORE_DIR, s->dir, sizeof(s->dir)) ||
	    !state_path(s->dir, CURRENT_FILE, s->cur, sizeof(s->cur)) ||
	    !state_path(s->dir, PREVIOUS_FILE, s->prev, sizeof(s->prev))) {
		LOGE("%s: path too long for the certificate record", state_dir);
		free(s);
		return NULL;
	}
	load_current(s);
	s->have_prev = stat(s->prev, &st) == 0 && S_ISREG(st.st_mode);
	return s;
}

void cert_store_free(struct cert_store *s)
{
	free(s);
}

bool cert_store_info(const struct cert_store *s, struct cert_info *out)
{
	if (!s || !s->have)
		return false;
	*out = s->info;
	return true;
}

bool cert_store_has_previous(const struct cert_store *s)
{
	return s && s->have_prev;
}

void cert_texts_clear(struct cert_texts *t)
{
	if (t->cert)
		wipe_free(t->cert, strlen(t->cert));
	if (t->key)
		wipe_free(t->key, strlen(t->key));
	/* All slots: a failed load fills them before nchain is known. */
	for (size_t i = 0; i < CERT_CHAIN_MAX; i++)
		free(t->chain[i]);
	memset(t, 0, sizeof(*t));
}

err_t cert_store_previous(const struct cert_store *s, struct cert_texts *t,
			  char *why, size_t cap)
{
	struct block b[2 + CERT_CHAIN_MAX];
	size_t n, len, ncert = 0, nkey = 0, dummy;
	char *buf;
	err_t e;

	memset(t, 0, sizeof(*t));
	if (!s->have_prev)
		return ERR_NOTFOUND;
	e = read_record(s->prev, &buf, &len);
	if (e) {
		err_say(why, cap, "%s cannot be read (see the agent's log)",
			s->prev);
		return e;
	}
	n = pem_blocks(buf, b, sizeof(b) / sizeof(b[0]));
	e = ERR_INVAL;
	if (n > sizeof(b) / sizeof(b[0])) {
		err_say(why, cap, "%s holds %zu PEM blocks", s->prev, n);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char **slot;

		if (is_cert_block(&b[i])) {
			if (ncert == 1 + CERT_CHAIN_MAX) {
				ncert++;
				break;
			}
			slot = ncert ? &t->chain[ncert - 1] : &t->cert;
			ncert++;
		} else if (is_key_block(&b[i]) && !nkey++) {
			slot = &t->key;
		} else {
			nkey = 2;	/* a stranger, or a second key */
			break;
		}
		*slot = block_dup(&b[i], &dummy);
		if (!*slot) {
			err_say(why, cap, "out of memory");
			e = ERR_NOMEM;
			goto out;
		}
	}
	if (ncert == 0 || ncert > 1 + CERT_CHAIN_MAX || nkey != 1) {
		err_say(why, cap, "%s is not a recorded certificate and key",
			s->prev);
		goto out;
	}
	t->nchain = ncert - 1;
	e = ERR_OK;
out:
	wipe_free(buf, STORE_FILE_MAX + 1);
	if (e)
		cert_texts_clear(t);
	return e;
}

err_t cert_store_commit(struct cert_store *s, const struct cert_pair *p)
{
	char *old = NULL, *rec = NULL;
	size_t len = 0, n = p->chain_len + p->key_len;
	err_t e;

	e = state_mkdirs(s->dir, 0700);
	if (e)
		return e;
	/* Made by an earlier agent, or by hand: it holds private keys. */
	if (chmod(s->dir, 0700) != 0)
		LOGE("%s: chmod 0700: %s", s->dir, strerror(errno));
	e = read_record(s->cur, &old, &len);
	if (e == ERR_OK) {
		e = state_write(s->prev, old, len);
		wipe_free(old, STORE_FILE_MAX + 1);
		if (e)
			return e;
		s->have_prev = true;
	} else if (e != ERR_NOTFOUND) {
		return e;
	}
	rec = malloc(n + 1);
	if (!rec) {
		LOGE("%s: out of memory", s->cur);
		return ERR_NOMEM;
	}
	memcpy(rec, p->chain, p->chain_len);
	memcpy(rec + p->chain_len, p->key, p->key_len);
	e = state_write(s->cur, rec, n);
	wipe_free(rec, n + 1);
	if (e)
		return e;
	s->info = p->info;
	s->have = true;
	return ERR_OK;
}
