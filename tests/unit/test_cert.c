/*
 * test_cert — unit tests of agent/cert.c: UTC calendar seconds and their
 * text against timegm() and past 2038; cert_verify() on a good chain (the
 * info, the files written: the chain re-encoded leaf first, the key as
 * sent) and each refusal with its exact reason and message — key mismatch,
 * untrusted (no intermediate, another CA, no CA file), name (SANs, the CN
 * without SANs, a wildcard), dates by the given clock (at the boundaries,
 * an expired intermediate), malformed texts; the record: nothing, a
 * commit read back by a new store, the previous pair as texts, a damaged
 * record logged and ignored.
 *
 * The certificates are made when the tests start, with mbedTLS's own
 * x509write at fixed dates, so the checks never age; nothing is fetched.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "cert.h"
#include "log.h"
#include "state.h"
#include "testutil.h"

#define NAME "pbx-hq.example"
/* 2026-01-01 00:00:00 and 2028-01-01 00:00:00 UTC: the leaf's validity. */
#define T2026 1767225600LL
#define T2028 1830297600LL

static char dir[64], ca_file[96], other_ca_file[96];
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static mbedtls_pk_context root_key, int_key, leaf_key, other_key, short_key;
/* PEM texts (heap): CAs, intermediates, leaves, keys. */
static char *root_pem, *other_pem, *int_pem, *short_pem;
static char *leaf_pem, *leaf2_pem, *cn_pem, *wild_pem, *self_pem, *late_pem;
static char *leaf_key_pem, *other_key_pem;

/* ------------------------------------------------------------ fixtures */

static void gen_key(mbedtls_pk_context *pk)
{
	mbedtls_pk_init(pk);
	assert_int_equal(mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(
						      MBEDTLS_PK_ECKEY)), 0);
	assert_int_equal(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1,
					     mbedtls_pk_ec(*pk),
					     mbedtls_ctr_drbg_random, &drbg), 0);
}

static char *key_pem(mbedtls_pk_context *pk)
{
	char *buf = calloc(1, 4096);

	assert_non_null(buf);
	assert_int_equal(mbedtls_pk_write_key_pem(pk, (unsigned char *)buf,
						  4096), 0);
	return buf;
}

struct spec {
	const char *subject, *issuer;	/* "CN=..." */
	mbedtls_pk_context *key, *issuer_key;
	bool ca;
	const char *san;		/* one DNS name, or NULL */
	const char *from, *to;		/* "YYYYMMDDhhmmss" */
	unsigned serial;
};

/* A certificate as PEM, made by mbedTLS. */
static char *make_cert(const struct spec *s)
{
	mbedtls_x509write_cert w;
	mbedtls_mpi serial;
	char *buf = calloc(1, 4096);
	unsigned char san[300];
	size_t n;

	assert_non_null(buf);
	mbedtls_x509write_crt_init(&w);
	mbedtls_mpi_init(&serial);
	assert_int_equal(mbedtls_mpi_lset(&serial, (mbedtls_mpi_sint)s->serial),
			 0);
	mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&w, s->key);
	mbedtls_x509write_crt_set_issuer_key(&w, s->issuer_key);
	assert_int_equal(mbedtls_x509write_crt_set_subject_name(&w, s->subject),
			 0);
	assert_int_equal(mbedtls_x509write_crt_set_issuer_name(&w, s->issuer),
			 0);
	assert_int_equal(mbedtls_x509write_crt_set_serial(&w, &serial), 0);
	assert_int_equal(mbedtls_x509write_crt_set_validity(&w, s->from, s->to),
			 0);
	assert_int_equal(mbedtls_x509write_crt_set_basic_constraints(&w, s->ca,
								     -1), 0);
	if (s->san) {
		/* SEQUENCE { [2] dNSName } */
		n = strlen(s->san);
		assert_true(n < 120);
		san[0] = 0x30;
		san[1] = (unsigned char)(n + 2);
		san[2] = 0x82;
		san[3] = (unsigned char)n;
		memcpy(san + 4, s->san, n);
		assert_int_equal(mbedtls_x509write_crt_set_extension(
			&w, MBEDTLS_OID_SUBJECT_ALT_NAME,
			MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0, san,
			n + 4), 0);
	}
	assert_int_equal(mbedtls_x509write_crt_pem(&w, (unsigned char *)buf,
						   4096, mbedtls_ctr_drbg_random,
						   &drbg), 0);
	mbedtls_mpi_free(&serial);
	mbedtls_x509write_crt_free(&w);
	return buf;
}

static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	fclose(f);
}

static char *read_file(const char *path)
{
	static char buf[32768];
	size_t n;
	FILE *f = fopen(path, "r");

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static int group_setup(void **state)
{
	const char *root = "CN=Test Root CA", *inter = "CN=Test Issuing CA";

	(void)state;
	if (test_dir_setup("cert", dir, sizeof(dir)))
		return -1;
	snprintf(ca_file, sizeof(ca_file), "%s/ca.pem", dir);
	snprintf(other_ca_file, sizeof(other_ca_file), "%s/other.pem", dir);
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
				  (const unsigned char *)"test_cert", 9))
		return -1;
	gen_key(&root_key);
	gen_key(&int_key);
	gen_key(&leaf_key);
	gen_key(&other_key);
	gen_key(&short_key);
	root_pem = make_cert(&(struct spec){ root, root, &root_key, &root_key,
		true, NULL, "20200101000000", "20400101000000", 1 });
	other_pem = make_cert(&(struct spec){ "CN=Other CA", "CN=Other CA",
		&other_key, &other_key, true, NULL, "20200101000000",
		"20400101000000", 2 });
	int_pem = make_cert(&(struct spec){ inter, root, &int_key, &root_key,
		true, NULL, "20200101000000", "20400101000000", 3 });
	/* An intermediate that ends before its leaf does. */
	short_pem = make_cert(&(struct spec){ "CN=Short CA", root, &short_key,
		&root_key, true, NULL, "20200101000000", "20270101000000", 4 });
	leaf_pem = make_cert(&(struct spec){ "CN=" NAME, inter, &leaf_key,
		&int_key, false, NAME, "20260101000000", "20280101000000",
		0x1001 });
	leaf2_pem = make_cert(&(struct spec){ "CN=" NAME, "CN=Short CA",
		&leaf_key, &short_key, false, NAME, "20260101000000",
		"20280101000000", 0x1002 });
	cn_pem = make_cert(&(struct spec){ "CN=" NAME ", O=Example", inter,
		&leaf_key, &int_key, false, NULL, "20260101000000",
		"20280101000000", 0x1003 });
	wild_pem = make_cert(&(struct spec){ "CN=wild", inter, &leaf_key,
		&int_key, false, "*.example", "20260101000000",
		"20280101000000", 0x1004 });
	self_pem = make_cert(&(struct spec){ "CN=" NAME, "CN=" NAME, &leaf_key,
		&leaf_key, false, NAME, "20260101000000", "20280101000000",
		0x1005 });
	/* Valid until 2045: past the 32-bit time_t. */
	late_pem = make_cert(&(struct spec){ "CN=" NAME, inter, &leaf_key,
		&int_key, false, NAME, "20260101000000", "20450615123456",
		0x1006 });
	leaf_key_pem = key_pem(&leaf_key);
	other_key_pem = key_pem(&other_key);
	put_file(ca_file, root_pem);
	put_file(other_ca_file, other_pem);
	return 0;
}

static int group_teardown(void **state)
{
	char *all[] = { root_pem, other_pem, int_pem, short_pem, leaf_pem,
			leaf2_pem, cn_pem, wild_pem, self_pem, late_pem,
			leaf_key_pem, other_key_pem };

	(void)state;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		free(all[i]);
	mbedtls_pk_free(&root_key);
	mbedtls_pk_free(&int_key);
	mbedtls_pk_free(&leaf_key);
	mbedtls_pk_free(&other_key);
	mbedtls_pk_free(&short_key);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return test_dir_teardown(dir);
}

/* The good request: leaf, key, intermediate, the root as CA, 2027. */
static struct cert_req good(void)
{
	struct cert_req q = {
		.cert = leaf_pem, .key = leaf_key_pem,
		.chain = { int_pem }, .nchain = 1,
		.ca_file = ca_file, .name = NAME,
		.now = T2026 + 365 * 86400,
	};

	return q;
}

/* cert_verify must refuse q with reason and exactly why. */
static void refused(const struct cert_req *q, const char *reason,
		    const char *why)
{
	struct cert_pair *p = (struct cert_pair *)1;
	char buf[256];
	const char *r = cert_verify(q, &p, buf, sizeof(buf));

	assert_non_null(r);
	assert_string_equal(r, reason);
	assert_string_equal(buf, why);
	assert_null(p);
}

static void accepted(const struct cert_req *q, struct cert_pair **p)
{
	char buf[256];
	const char *r = cert_verify(q, p, buf, sizeof(buf));

	if (r)
		print_error("refused %s: %s\n", r, buf);
	assert_null(r);
	assert_non_null(*p);
}

/* ------------------------------------------------------------ time */

static void test_utc_seconds(void **state)
{
	static const struct { int y, mo, d, h, mi, s; } dates[] = {
		{ 1970, 1, 1, 0, 0, 0 }, { 1969, 12, 31, 23, 59, 59 },
		{ 2000, 2, 29, 12, 34, 56 }, { 2000, 3, 1, 0, 0, 0 },
		{ 2038, 1, 19, 3, 14, 8 }, { 2100, 3, 1, 0, 0, 0 },
		{ 2026, 12, 31, 23, 59, 59 }, { 1950, 6, 15, 6, 0, 0 },
	};
	char text[40], want[40];

	(void)state;
	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
		struct tm tm = { .tm_year = dates[i].y - 1900,
				 .tm_mon = dates[i].mo - 1,
				 .tm_mday = dates[i].d, .tm_hour = dates[i].h,
				 .tm_min = dates[i].mi, .tm_sec = dates[i].s };
		int64_t t = cert_utc_seconds(dates[i].y, dates[i].mo,
					     dates[i].d, dates[i].h,
					     dates[i].mi, dates[i].s);

		if (sizeof(time_t) == 8)
			assert_int_equal(t, (int64_t)timegm(&tm));
		cert_time_text(t, text, sizeof(text));
		snprintf(want, sizeof(want), "%04d-%02d-%02d %02d:%02d:%02d UTC",
			 dates[i].y, dates[i].mo, dates[i].d, dates[i].h,
			 dates[i].mi, dates[i].s);
		assert_string_equal(text, want);
	}
	assert_int_equal(cert_utc_seconds(2026, 1, 1, 0, 0, 0), T2026);
	assert_int_equal(cert_utc_seconds(9999, 12, 31, 23, 59, 59),
			 253402300799LL);
	cert_time_text(253402300799LL, text, sizeof(text));
	assert_string_equal(text, "9999-12-31 23:59:59 UTC");
	cert_time_text(-1, text, sizeof(text));
	assert_string_equal(text, "1969-12-31 23:59:59 UTC");
}

/* ------------------------------------------------------------ verify */

static void test_verify_good(void **state)
{
	struct cert_req q = good();
	struct cert_pair *p = NULL;
	const struct cert_info *i;
	char cpath[128], kpath[128], both[8192];
	struct stat st;

	(void)state;
	accepted(&q, &p);
	i = cert_pair_info(p);
	assert_string_equal(i->subject, "CN=" NAME);
	assert_string_equal(i->issuer, "CN=Test Issuing CA");
	assert_string_equal(i->serial, "10:01");
	assert_int_equal(i->not_before, T2026);
	assert_int_equal(i->not_after, T2028);
	/* What the hook is given: the chain as mbedTLS writes PEM (which is
	 * how the fixtures were written), the key as sent. */
	snprintf(cpath, sizeof(cpath), "%s/c.pem", dir);
	snprintf(kpath, sizeof(kpath), "%s/c.key", dir);
	assert_int_equal(cert_pair_write(p, cpath, kpath), ERR_OK);
	snprintf(both, sizeof(both), "%s%s", leaf_pem, int_pem);
	assert_string_equal(read_file(cpath), both);
	assert_string_equal(read_file(kpath), leaf_key_pem);
	assert_int_equal(stat(kpath, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	cert_pair_free(p);
	unlink(cpath);
	unlink(kpath);

	/* Exactly at either end of the validity: still valid. */
	q.now = T2028;
	accepted(&q, &p);
	cert_pair_free(p);
	q.now = T2026;
	accepted(&q, &p);
	cert_pair_free(p);

	/* Past 2038 (the appliance's time_t), told in 64 bits. */
	q = good();
	q.cert = late_pem;
	q.now = cert_utc_seconds(2040, 1, 1, 0, 0, 0);
	accepted(&q, &p);
	assert_int_equal(cert_pair_info(p)->not_after,
			 cert_utc_seconds(2045, 6, 15, 12, 34, 56));
	cert_pair_free(p);

	/* A wildcard certificate; one named by its CN (no SANs). */
	q = good();
	q.cert = wild_pem;
	accepted(&q, &p);
	cert_pair_free(p);
	q.cert = cn_pem;
	accepted(&q, &p);
	assert_string_equal(cert_pair_info(p)->subject,
			    "CN=" NAME ", O=Example");
	cert_pair_free(p);
	/* Junk around the PEM block (openssl's "Bag Attributes") is fine. */
	{
		size_t n = strlen(leaf_pem) + 64;
		char *junk = malloc(n);

		assert_non_null(junk);
		snprintf(junk, n, "Bag Attributes\n    friendlyName: x\n%s",
			 leaf_pem);
		q = good();
		q.cert = junk;
		accepted(&q, &p);
		cert_pair_free(p);
		free(junk);
	}
}

static void test_verify_trust(void **state)
{
	struct cert_req q = good();
	char why[256];

	(void)state;
	q.nchain = 0;
	refused(&q, "untrusted", "the chain does not lead to the configured "
		"CA: The certificate is not correctly signed by the trusted CA");
	q = good();
	q.ca_file = other_ca_file;
	refused(&q, "untrusted", "the chain does not lead to the configured "
		"CA: The certificate is not correctly signed by the trusted CA");
	q = good();
	q.cert = self_pem;
	q.nchain = 0;
	refused(&q, "untrusted", "the chain does not lead to the configured "
		"CA: The certificate is not correctly signed by the trusted CA");
	q = good();
	q.ca_file = "/nonexistent/ca.pem";
	refused(&q, "untrusted", "the configured CA cannot be read: "
		"/nonexistent/ca.pem: cannot open: No such file or directory");
	q.ca_file = "";
	refused(&q, "untrusted", "no CA is configured ([cert] ca_file, "
		"[com] ca_file)");
	q.ca_file = dir;
	snprintf(why, sizeof(why), "the configured CA cannot be read: %s: "
		 "not a regular file", dir);
	refused(&q, "untrusted", why);
	/* A CA file of garbage. */
	{
		char path[128];

		snprintf(path, sizeof(path), "%s/junk.pem", dir);
		put_file(path, "no certificates here\n");
		q.ca_file = path;
		snprintf(why, sizeof(why), "the configured CA %s holds no "
			 "usable certificate: X509 - ", path);
		{
			struct cert_pair *p = NULL;
			char buf[256];

			assert_string_equal(cert_verify(&q, &p, buf,
							sizeof(buf)),
					    "untrusted");
			assert_memory_equal(buf, why, strlen(why));
		}
		unlink(path);
	}
}

static void test_verify_key_and_name(void **state)
{
	struct cert_req q = good();

	(void)state;
	q.key = other_key_pem;
	refused(&q, "key_mismatch", "the key does not match the certificate");
	q = good();
	q.name = "pbx-x.example";
	refused(&q, "name", "the certificate names " NAME ", not "
		"pbx-x.example");
	q.cert = cn_pem;
	refused(&q, "name", "the certificate names " NAME ", not "
		"pbx-x.example");
	q.cert = wild_pem;
	q.name = "a.b.example";
	refused(&q, "name", "the certificate names *.example, not "
		"a.b.example");
}

static void test_verify_dates(void **state)
{
	struct cert_req q = good();

	(void)state;
	q.now = T2028 + 1;
	refused(&q, "expired", "the certificate expired on 2028-01-01 00:00:00 "
		"UTC (the agent's clock reads 2028-01-01 00:00:01 UTC)");
	q.now = T2026 - 1;
	refused(&q, "not_yet_valid", "the certificate is not valid before "
		"2026-01-01 00:00:00 UTC (the agent's clock reads 2025-12-31 "
		"23:59:59 UTC)");
	/* The intermediate ended before its leaf: judged too. */
	q = good();
	q.cert = leaf2_pem;
	q.chain[0] = short_pem;
	q.now = cert_utc_seconds(2026, 6, 1, 0, 0, 0);
	{
		struct cert_pair *p = NULL;

		accepted(&q, &p);
		cert_pair_free(p);
	}
	q.now = cert_utc_seconds(2027, 6, 1, 0, 0, 0);
	refused(&q, "expired", "intermediate 1 (CN=Short CA) expired on "
		"2027-01-01 00:00:00 UTC");
}

static void test_verify_malformed(void **state)
{
	struct cert_req q = good();
	char two[8192], big[CERT_PEM_MAX + 2];

	(void)state;
	q.cert = NULL;
	refused(&q, "invalid", "args.cert: a PEM certificate is required");
	q.cert = "";
	refused(&q, "invalid", "args.cert: a PEM certificate is required");
	q.cert = "hello";
	refused(&q, "invalid", "args.cert: not a PEM certificate (no "
		"\"-----BEGIN CERTIFICATE-----\" line)");
	q.cert = leaf_key_pem;
	refused(&q, "invalid", "args.cert: not a PEM certificate (no "
		"\"-----BEGIN CERTIFICATE-----\" line)");
	snprintf(two, sizeof(two), "%s%s", leaf_pem, int_pem);
	q.cert = two;
	refused(&q, "invalid", "args.cert: one PEM certificate expected, "
		"found 2 PEM blocks");
	q.cert = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
	refused(&q, "invalid", "args.cert: not a valid certificate: PEM - PEM "
		"string is not as expected : BASE64 - Invalid character in "
		"input");
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	q.cert = big;
	refused(&q, "invalid", "args.cert: longer than 4096 bytes");
	q = good();
	q.chain[0] = "x";
	refused(&q, "invalid", "args.chain[0]: not a PEM certificate (no "
		"\"-----BEGIN CERTIFICATE-----\" line)");
	q = good();
	q.nchain = CERT_CHAIN_MAX + 1;
	refused(&q, "invalid", "args.chain: at most 4 intermediate "
		"certificates, got 5");
	q = good();
	q.key = NULL;
	refused(&q, "invalid", "args.key: a PEM private key is required");
	q.key = leaf_pem;
	refused(&q, "invalid", "args.key: not a PEM private key (no "
		"\"-----BEGIN ...PRIVATE KEY-----\" line)");
	snprintf(two, sizeof(two), "%s%s", leaf_key_pem, other_key_pem);
	q.key = two;
	refused(&q, "invalid", "args.key: one PEM private key expected, found "
		"2 PEM blocks");
	q.key = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE "
		"KEY-----\n";
	refused(&q, "invalid", "args.key: not a valid private key: PK - "
		"Invalid key tag or value : ASN1 - ASN1 tag was of an unexpected "
		"value");
	q.key = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END "
		"ENCRYPTED PRIVATE KEY-----\n";
	refused(&q, "invalid", "args.key: the key is encrypted; an "
		"unencrypted key is required");
}

/* ------------------------------------------------------------ the record */

static void test_store(void **state)
{
	char sdir[96], rdir[128], cur[160];
	struct cert_req q = good();
	struct cert_pair *p1 = NULL, *p2 = NULL, *again = NULL;
	struct cert_store *s;
	struct cert_texts t;
	struct cert_info i;
	char why[256];
	struct stat st;

	(void)state;
	snprintf(sdir, sizeof(sdir), "%s/state", dir);
	snprintf(rdir, sizeof(rdir), "%s/cert", sdir);
	snprintf(cur, sizeof(cur), "%s/current.pem", rdir);
	s = cert_store_new(sdir);
	assert_non_null(s);
	assert_false(cert_store_info(s, &i));
	assert_false(cert_store_has_previous(s));
	assert_int_equal(cert_store_previous(s, &t, why, sizeof(why)),
			 ERR_NOTFOUND);
	accepted(&q, &p1);
	q.cert = cn_pem;
	accepted(&q, &p2);
	assert_int_equal(cert_store_commit(s, p1), ERR_OK);
	assert_true(cert_store_info(s, &i));
	assert_string_equal(i.serial, "10:01");
	assert_false(cert_store_has_previous(s));
	assert_int_equal(stat(rdir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(cur, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	cert_store_free(s);
	assert_string_equal(logged(), "");

	/* A new store (the agent restarted) knows it. */
	s = cert_store_new(sdir);
	assert_true(cert_store_info(s, &i));
	assert_string_equal(i.subject, "CN=" NAME);
	assert_int_equal(i.not_after, T2028);
	assert_string_equal(logged(), "info  cert: installed certificate: CN="
			    NAME ", serial 10:01, issued by CN=Test Issuing "
			    "CA\n");
	assert_int_equal(cert_store_commit(s, p2), ERR_OK);
	assert_true(cert_store_has_previous(s));
	assert_true(cert_store_info(s, &i));
	assert_string_equal(i.serial, "10:03");
	/* The previous pair comes back as texts that verify as before. */
	assert_int_equal(cert_store_previous(s, &t, why, sizeof(why)), ERR_OK);
	assert_string_equal(t.cert, leaf_pem);
	assert_string_equal(t.key, leaf_key_pem);
	assert_int_equal(t.nchain, 1);
	assert_string_equal(t.chain[0], int_pem);
	q = good();
	q.cert = t.cert;
	q.key = t.key;
	q.chain[0] = t.chain[0];
	accepted(&q, &again);
	assert_string_equal(cert_pair_info(again)->serial, "10:01");
	cert_texts_clear(&t);
	assert_null(t.cert);
	/* Rolling back swaps the two. */
	assert_int_equal(cert_store_commit(s, again), ERR_OK);
	assert_true(cert_store_info(s, &i));
	assert_string_equal(i.serial, "10:01");
	assert_int_equal(cert_store_previous(s, &t, why, sizeof(why)), ERR_OK);
	assert_string_equal(t.cert, cn_pem);
	assert_int_equal(t.nchain, 1);
	cert_texts_clear(&t);
	cert_store_free(s);
	(void)logged();

	/* A damaged record: logged, then as if there were none. */
	put_file(cur, "garbage\n");
	s = cert_store_new(sdir);
	assert_non_null(s);
	assert_false(cert_store_info(s, &i));
	assert_non_null(strstr(logged(), "cert: "));
	cert_store_free(s);
	snprintf(why, sizeof(why), "%s/previous.pem", rdir);
	put_file(why, leaf_key_pem);
	s = cert_store_new(sdir);
	(void)logged();
	assert_int_equal(cert_store_previous(s, &t, why, sizeof(why)),
			 ERR_INVAL);
	assert_non_null(strstr(why, "is not a recorded certificate and key"));
	cert_store_free(s);
	cert_pair_free(p1);
	cert_pair_free(p2);
	cert_pair_free(again);
	rm_tree(sdir);
}

#define T(f) cmocka_unit_test(f)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_utc_seconds),
		T(test_verify_good),
		T(test_verify_trust),
		T(test_verify_key_and_name),
		T(test_verify_dates),
		T(test_verify_malformed),
		T(test_store),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
