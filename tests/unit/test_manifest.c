/*
 * test_manifest — unit tests of agent/manifest.c: loading trusted keys
 * (PEM, DER, lists, and every kind of file refused), signatures (a good
 * one, key rotation, an unknown key, one byte tampered, signatures that
 * are garbage, not base64, empty or oversized, and one made by the openssl
 * CLI as COM's tooling might), every rule of the strict manifest parse
 * with the exact why of its failure, and the order of dotted versions.
 *
 * The keys are made when the tests start, with mbedTLS itself, into a
 * temporary directory; nothing is fetched.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>

#include "manifest.h"

/* ------------------------------------------------------------ fixtures */

static char dir[64];
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
/* Three P-256 keys: A and B are trusted in the tests, C never is. */
static mbedtls_pk_context key_a, key_b, key_c;

/* Files the group setup writes into dir (removed again at the end). */
static const char *const files[] = {
	"a.pem", "b.pem", "b.der", "c.pem", "k1.pem", "p384.pem", "rsa.pem",
	"priv.pem", "garbage.pem", "empty.pem", "big.pem", "dir.pem",
	"o.key", "o.pem", "o.sig", "o.txt",
};

static const char *at(const char *name)
{
	/* A few at once: calls may share one argument list. */
	static char p[4][128];
	static int k;

	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
	return p[k];
}

static void put(const char *name, const void *data, size_t len)
{
	int fd = open(at(name), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void gen_ec(mbedtls_pk_context *pk, mbedtls_ecp_group_id curve)
{
	mbedtls_pk_init(pk);
	assert_int_equal(mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(
						      MBEDTLS_PK_ECKEY)), 0);
	assert_int_equal(mbedtls_ecp_gen_key(curve, mbedtls_pk_ec(*pk),
					     mbedtls_ctr_drbg_random, &drbg), 0);
}

static void put_pem(const char *name, mbedtls_pk_context *pk)
{
	unsigned char buf[4096];

	assert_int_equal(mbedtls_pk_write_pubkey_pem(pk, buf, sizeof(buf)), 0);
	put(name, buf, strlen((char *)buf));
}

static int group_setup(void **state)
{
	mbedtls_pk_context other;
	unsigned char buf[4096];
	char big[MANIFEST_MAX_KEY_FILE + 1];
	int n;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_manifest.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
				  (const unsigned char *)"test_manifest", 13))
		return -1;

	gen_ec(&key_a, MBEDTLS_ECP_DP_SECP256R1);
	gen_ec(&key_b, MBEDTLS_ECP_DP_SECP256R1);
	gen_ec(&key_c, MBEDTLS_ECP_DP_SECP256R1);
	put_pem("a.pem", &key_a);
	put_pem("b.pem", &key_b);
	put_pem("c.pem", &key_c);
	/* B once more as DER: written at the end of buf. */
	n = mbedtls_pk_write_pubkey_der(&key_b, buf, sizeof(buf));
	assert_true(n > 0);
	put("b.der", buf + sizeof(buf) - n, (size_t)n);
	/* A's private key: a key, but not a public key file. */
	assert_int_equal(mbedtls_pk_write_key_pem(&key_a, buf, sizeof(buf)), 0);
	put("priv.pem", buf, strlen((char *)buf));

	/* The same size on another curve, a bigger curve, and RSA. */
	gen_ec(&other, MBEDTLS_ECP_DP_SECP256K1);
	put_pem("k1.pem", &other);
	mbedtls_pk_free(&other);
	gen_ec(&other, MBEDTLS_ECP_DP_SECP384R1);
	put_pem("p384.pem", &other);
	mbedtls_pk_free(&other);
	mbedtls_pk_init(&other);
	assert_int_equal(mbedtls_pk_setup(&other, mbedtls_pk_info_from_type(
						      MBEDTLS_PK_RSA)), 0);
	assert_int_equal(mbedtls_rsa_gen_key(mbedtls_pk_rsa(other),
					     mbedtls_ctr_drbg_random, &drbg,
					     1024, 65537), 0);
	put_pem("rsa.pem", &other);
	mbedtls_pk_free(&other);

	put("garbage.pem", "hello\n", 6);
	put("empty.pem", "", 0);
	memset(big, ' ', sizeof(big));
	put("big.pem", big, sizeof(big));
	assert_int_equal(mkdir(at("dir.pem"), 0700), 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		unlink(at(files[i]));
		rmdir(at(files[i]));
	}
	rmdir(dir);
	mbedtls_pk_free(&key_a);
	mbedtls_pk_free(&key_b);
	mbedtls_pk_free(&key_c);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return 0;
}

/* base64 of the DER ECDSA signature over SHA-256(text[0..len)). */
static void sign(mbedtls_pk_context *pk, const char *text, size_t len,
		 char *b64, size_t cap)
{
	unsigned char hash[32], sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
	size_t slen = 0, olen = 0;

	assert_int_equal(mbedtls_sha256_ret((const unsigned char *)text, len,
					    hash, 0), 0);
	assert_int_equal(mbedtls_pk_sign(pk, MBEDTLS_MD_SHA256, hash, 32, sig,
					 &slen, mbedtls_ctr_drbg_random, &drbg),
			 0);
	assert_int_equal(mbedtls_base64_encode((unsigned char *)b64, cap,
					       &olen, sig, slen), 0);
}

static void b64_of(const void *data, size_t len, char *b64, size_t cap)
{
	size_t olen = 0;

	assert_int_equal(mbedtls_base64_encode((unsigned char *)b64, cap,
					       &olen, data, len), 0);
}

/* Loads a list of file names in dir ("a.pem b.pem"); asserts success. */
static struct manifest_keys *keys(const char *names)
{
	struct manifest_keys *k = NULL;
	char list[1024], why[256], name[64];
	size_t n = 0, len;

	list[0] = '\0';
	while (*names) {
		len = strcspn(names, " ");
		assert_true(len < sizeof(name));
		memcpy(name, names, len);
		name[len] = '\0';
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s ",
				      at(name));
		names += len;
		names += strspn(names, " ");
	}
	if (manifest_keys_load(list, &k, why, sizeof(why)) != ERR_OK)
		print_error("keys_load(%s): %s\n", list, why);
	assert_non_null(k);
	assert_string_equal(why, "");
	return k;
}

/* keys_load(list) must fail with e and why (every '$' is path). */
static void keys_bad(const char *list, err_t e, const char *want,
		     const char *path)
{
	struct manifest_keys *k = (struct manifest_keys *)&k;
	char why[512], exp[512];
	size_t n = 0;

	for (const char *s = want; *s && n + 1 < sizeof(exp); s++) {
		if (*s == '$')
			n += (size_t)snprintf(exp + n, sizeof(exp) - n, "%s",
					      path);
		else
			exp[n++] = *s;
	}
	exp[n] = '\0';
	assert_int_equal(manifest_keys_load(list, &k, why, sizeof(why)), e);
	assert_null(k);
	assert_string_equal(why, exp);
}

/* -------------------------------------------------------------- keys */

static void test_keys_load(void **state)
{
	struct manifest_keys *k;
	char list[512];

	(void)state;
	k = keys("a.pem");
	assert_int_equal(manifest_keys_count(k), 1);
	manifest_keys_free(k);

	/* Any whitespace separates; PEM and DER both work. */
	snprintf(list, sizeof(list), " \t%s\n%s  %s\r\n", at("a.pem"),
		 at("b.pem"), at("b.der"));
	assert_int_equal(manifest_keys_load(list, &k, NULL, 0), ERR_OK);
	assert_int_equal(manifest_keys_count(k), 3);
	manifest_keys_free(k);

	/* Eight is the most. */
	k = keys("a.pem a.pem a.pem a.pem b.pem b.pem b.pem b.der");
	assert_int_equal(manifest_keys_count(k), 8);
	manifest_keys_free(k);
	manifest_keys_free(NULL);
	assert_int_equal(manifest_keys_count(NULL), 0);
}

static void test_keys_refused(void **state)
{
	char list[1200], big[MANIFEST_MAX_KEY_PATH + 2];

	(void)state;
	keys_bad("", ERR_INVAL, "no trusted keys configured", "");
	keys_bad(" \t\n ", ERR_INVAL, "no trusted keys configured", "");
	keys_bad(NULL, ERR_INVAL, "no trusted keys configured", "");
	assert_int_equal(manifest_keys_load("x", NULL, NULL, 0), ERR_INVAL);

	keys_bad(at("rsa.pem"), ERR_INVAL, "$: not a P-256 key", at("rsa.pem"));
	keys_bad(at("k1.pem"), ERR_INVAL, "$: not a P-256 key", at("k1.pem"));
	keys_bad(at("p384.pem"), ERR_INVAL, "$: not a P-256 key",
		 at("p384.pem"));
	keys_bad(at("nope.pem"), ERR_NOTFOUND,
		 "$: cannot open: No such file or directory", at("nope.pem"));
	keys_bad(at("dir.pem"), ERR_IO, "$: not a regular file", at("dir.pem"));
	keys_bad(at("big.pem"), ERR_LIMIT, "$: bigger than 16384 bytes",
		 at("big.pem"));
	keys_bad(at("empty.pem"), ERR_INVAL,
		 "$: not a public key: the file is empty", at("empty.pem"));
	keys_bad(at("garbage.pem"), ERR_INVAL,
		 "$: not a public key: PK - Invalid key tag or value : "
		 "ASN1 - ASN1 tag was of an unexpected value",
		 at("garbage.pem"));
	/* A private key file is not a public key file. */
	keys_bad(at("priv.pem"), ERR_INVAL,
		 "$: not a public key: PK - Invalid key tag or value : "
		 "ASN1 - ASN1 tag was of an unexpected value", at("priv.pem"));

	/* One bad key spoils the list, wherever it is. */
	snprintf(list, sizeof(list), "%s %s %s", at("a.pem"), at("rsa.pem"),
		 at("b.pem"));
	keys_bad(list, ERR_INVAL, "$: not a P-256 key", at("rsa.pem"));
	snprintf(list, sizeof(list), "%s %s", at("a.pem"), at("missing"));
	keys_bad(list, ERR_NOTFOUND,
		 "$: cannot open: No such file or directory", at("missing"));

	/* Nine keys. */
	list[0] = '\0';
	for (int i = 0; i < 9; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list),
			 "%s ", at("a.pem"));
	keys_bad(list, ERR_LIMIT, "more than 8 trusted keys", "");

	/* A path longer than any path can be. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	keys_bad(big, ERR_INVAL,
		 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		 "...: path longer than 4095 bytes", "");
}

/* ---------------------------------------------------------- signature */

#define SHA "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define SHB "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define COMP(name, size, sha) \
	"{\"name\":\"" name "\",\"version\":\"12.0.1.0\",\"size\":" size \
	",\"sha256\":\"" sha "\"}"
#define GOOD \
	"{\"release\":\"12.0.1.0\",\"profile\":\"linux\",\"components\":[" \
	COMP("ipoffice-12.0.1.0.bin", "10485760", SHA) "," \
	COMP("phones_12.0.tar", "0", SHB) "]}"

static void verify_is(const struct manifest_keys *k, const char *text,
		      size_t len, const char *sig, err_t e, const char *want)
{
	char why[200] = "junk";

	assert_int_equal(manifest_verify(k, text, len, sig, why, sizeof(why)),
			 e);
	assert_string_equal(why, want);
}

static void test_verify_good(void **state)
{
	struct manifest_keys *k = keys("a.pem");
	char sig[256];

	(void)state;
	sign(&key_a, GOOD, strlen(GOOD), sig, sizeof(sig));
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_OK, "");
	assert_int_equal(manifest_verify(k, GOOD, strlen(GOOD), sig, NULL, 0),
			 ERR_OK);
	/* The same key as DER; an empty text signed is still a text. */
	manifest_keys_free(k);
	k = keys("b.der");
	sign(&key_b, "", 0, sig, sizeof(sig));
	verify_is(k, "", 0, sig, ERR_OK, "");
	verify_is(k, NULL, 0, sig, ERR_OK, "");
	manifest_keys_free(k);
}

static void test_verify_rotation(void **state)
{
	struct manifest_keys *k = keys("a.pem b.pem");
	char sig[256];

	(void)state;
	/* COM ships B next to A, then signs with B: both verify. */
	sign(&key_b, GOOD, strlen(GOOD), sig, sizeof(sig));
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_OK, "");
	sign(&key_a, GOOD, strlen(GOOD), sig, sizeof(sig));
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_OK, "");
	manifest_keys_free(k);

	/* Once A is dropped, A's signatures no longer do. */
	k = keys("b.pem");
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_PERM,
		  "signature does not verify with any of the 1 trusted keys");
	manifest_keys_free(k);
}

static void test_verify_unknown_key(void **state)
{
	struct manifest_keys *k = keys("a.pem b.pem");
	char sig[256];

	(void)state;
	sign(&key_c, GOOD, strlen(GOOD), sig, sizeof(sig));
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_PERM,
		  "signature does not verify with any of the 2 trusted keys");
	manifest_keys_free(k);
	k = keys("c.pem");
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_OK, "");
	manifest_keys_free(k);
}

static void test_verify_tampered(void **state)
{
	struct manifest_keys *k = keys("a.pem");
	char sig[256], text[sizeof(GOOD) + 1];
	size_t len = strlen(GOOD);

	(void)state;
	sign(&key_a, GOOD, len, sig, sizeof(sig));
	/* Any one byte changed, a byte more or a byte less. */
	for (size_t i = 0; i < len; i += 7) {
		memcpy(text, GOOD, len + 1);
		text[i] ^= 0x01;
		verify_is(k, text, len, sig, ERR_PERM,
			  "signature does not verify with any of the 1 "
			  "trusted keys");
	}
	snprintf(text, sizeof(text), "%s\n", GOOD);
	verify_is(k, text, len + 1, sig, ERR_PERM,
		  "signature does not verify with any of the 1 trusted keys");
	verify_is(k, GOOD, len - 1, sig, ERR_PERM,
		  "signature does not verify with any of the 1 trusted keys");
	verify_is(k, GOOD, len, sig, ERR_OK, "");
	manifest_keys_free(k);
}

static void test_verify_bad_signature(void **state)
{
	struct manifest_keys *k = keys("a.pem");
	unsigned char raw[200], der[MBEDTLS_PK_SIGNATURE_MAX_SIZE + 1];
	unsigned char hash[32];
	char sig[1100];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)(i * 37 + 11);
	/* Valid base64 of bytes that are no signature. */
	b64_of(raw, 70, sig, sizeof(sig));
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_PERM,
		  "signature does not verify with any of the 1 trusted keys");
	verify_is(k, GOOD, strlen(GOOD), "not base64!", ERR_PERM,
		  "signature is not valid base64");
	verify_is(k, GOOD, strlen(GOOD), "QQ=Q", ERR_PERM,
		  "signature is not valid base64");
	verify_is(k, GOOD, strlen(GOOD), "QUJD====", ERR_PERM,
		  "signature is not valid base64");
	verify_is(k, GOOD, strlen(GOOD), "QU JD", ERR_PERM,
		  "signature is not valid base64");
	verify_is(k, GOOD, strlen(GOOD), "", ERR_PERM, "signature is empty");
	verify_is(k, GOOD, strlen(GOOD), "\r\n", ERR_PERM,
		  "signature is empty");
	/* 160 bytes are taken (and fail), 161 are not. */
	b64_of(raw, 160, sig, sizeof(sig));
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_PERM,
		  "signature does not verify with any of the 1 trusted keys");
	b64_of(raw, 161, sig, sizeof(sig));
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_PERM,
		  "signature longer than 160 bytes");
	memset(sig, 'A', 1025);
	sig[1025] = '\0';
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_PERM,
		  "signature longer than 160 bytes");

	/* A good signature with a byte after its DER is not good. */
	assert_int_equal(mbedtls_sha256_ret((const unsigned char *)GOOD,
					    strlen(GOOD), hash, 0), 0);
	assert_int_equal(mbedtls_pk_sign(&key_a, MBEDTLS_MD_SHA256, hash, 32,
					 der, &n, mbedtls_ctr_drbg_random,
					 &drbg), 0);
	b64_of(der, n, sig, sizeof(sig));
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_OK, "");
	der[n] = 0;
	b64_of(der, n + 1, sig, sizeof(sig));
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_PERM,
		  "signature does not verify with any of the 1 trusted keys");
	manifest_keys_free(k);
}

static void test_verify_arguments(void **state)
{
	struct manifest_keys *k = keys("a.pem");
	char sig[256], *text;

	(void)state;
	sign(&key_a, GOOD, strlen(GOOD), sig, sizeof(sig));
	verify_is(NULL, GOOD, strlen(GOOD), sig, ERR_INVAL,
		  "no trusted keys configured");
	verify_is(k, NULL, 3, sig, ERR_INVAL, "no manifest or no signature");
	verify_is(k, GOOD, strlen(GOOD), NULL, ERR_INVAL,
		  "no manifest or no signature");
	/* 4096 bytes are checked, 4097 are not. */
	text = malloc(MANIFEST_MAX_TEXT + 1);
	assert_non_null(text);
	memset(text, ' ', MANIFEST_MAX_TEXT + 1);
	sign(&key_a, text, MANIFEST_MAX_TEXT, sig, sizeof(sig));
	verify_is(k, text, MANIFEST_MAX_TEXT, sig, ERR_OK, "");
	verify_is(k, text, MANIFEST_MAX_TEXT + 1, sig, ERR_LIMIT,
		  "manifest longer than 4096 bytes");
	free(text);
	manifest_keys_free(k);
}

/* COM's signing tool may well be OpenSSL: its signatures must verify. */
static void test_verify_openssl(void **state)
{
	struct manifest_keys *k;
	unsigned char der[200];
	char cmd[1024], sig[400];
	ssize_t n;
	int fd;

	(void)state;
	if (system("openssl version >/dev/null 2>&1") != 0)
		skip();
	put("o.txt", GOOD, strlen(GOOD));
	snprintf(cmd, sizeof(cmd),
		 "cd %s && openssl ecparam -name prime256v1 -genkey -noout "
		 "-out o.key && openssl ec -in o.key -pubout -out o.pem "
		 "2>/dev/null && openssl dgst -sha256 -sign o.key -out o.sig "
		 "o.txt", dir);
	assert_int_equal(system(cmd), 0);
	fd = open(at("o.sig"), O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, der, sizeof(der));
	close(fd);
	assert_true(n > 8 && n <= 72);
	b64_of(der, (size_t)n, sig, sizeof(sig));

	k = keys("a.pem o.pem");
	verify_is(k, GOOD, strlen(GOOD), sig, ERR_OK, "");
	verify_is(k, GOOD, strlen(GOOD) - 1, sig, ERR_PERM,
		  "signature does not verify with any of the 2 trusted keys");
	manifest_keys_free(k);
}

/* ------------------------------------------------------------- parsing */

static struct manifest *parse_ok(const char *text)
{
	struct manifest *m = NULL;
	char why[200] = "junk";
	err_t e = manifest_parse(text, strlen(text), &m, why, sizeof(why));

	if (e != ERR_OK)
		print_error("unexpected failure: %s: %s\n", why, text);
	assert_int_equal(e, ERR_OK);
	assert_non_null(m);
	assert_string_equal(why, "");
	return m;
}

static void parse_badn(const char *text, size_t len, err_t want,
		       const char *want_why)
{
	struct manifest *m = (struct manifest *)&m;
	char why[200] = "junk";
	err_t e = manifest_parse(text, len, &m, why, sizeof(why));

	if (e != want || strcmp(why, want_why))
		print_error("for %.*s\n got %d \"%s\"\n", (int)len, text,
			    (int)e, why);
	assert_int_equal(e, want);
	assert_null(m);
	assert_string_equal(why, want_why);
}

static void parse_bad(const char *text, const char *want_why)
{
	parse_badn(text, strlen(text), ERR_INVAL, want_why);
}

/* The good manifest with one component replaced by comp. */
static const char *with_comp(const char *comp)
{
	static char buf[8192];

	snprintf(buf, sizeof(buf),
		 "{\"release\":\"12.0.1.0\",\"profile\":\"linux\","
		 "\"components\":[%s]}", comp);
	return buf;
}

/* The good manifest with the top-level members replaced by top. */
static const char *with_top(const char *top)
{
	static char buf[8192];

	snprintf(buf, sizeof(buf), "{%s}", top);
	return buf;
}

#define COMPS "\"components\":[" COMP("a.bin", "1", SHA) "]"
#define REL "\"release\":\"12.0.1.0\""
#define PROF "\"profile\":\"linux\""

static void test_parse_good(void **state)
{
	struct manifest *m;
	const struct manifest_component *c;

	(void)state;
	m = parse_ok(GOOD);
	assert_string_equal(manifest_release(m), "12.0.1.0");
	assert_string_equal(manifest_profile(m), "linux");
	assert_int_equal(manifest_count(m), 2);
	c = manifest_at(m, 0);
	assert_non_null(c);
	assert_string_equal(c->name, "ipoffice-12.0.1.0.bin");
	assert_string_equal(c->version, "12.0.1.0");
	assert_true(c->size == 10485760);
	assert_string_equal(c->sha256, SHA);
	c = manifest_at(m, 1);
	assert_string_equal(c->name, "phones_12.0.tar");
	assert_true(c->size == 0);
	assert_string_equal(c->sha256, SHB);
	assert_null(manifest_at(m, 2));
	assert_true(manifest_total_size(m) == 10485760);
	manifest_free(m);

	/* NULL-safe accessors. */
	assert_null(manifest_release(NULL));
	assert_null(manifest_profile(NULL));
	assert_int_equal(manifest_count(NULL), 0);
	assert_null(manifest_at(NULL, 0));
	assert_true(manifest_total_size(NULL) == 0);
	manifest_free(NULL);
}

static void test_parse_forward_compatible(void **state)
{
	struct manifest *m;
	const struct manifest_component *c;

	(void)state;
	/*
	 * Unknown members anywhere, of any type and nesting, any member
	 * order, whitespace around everything, escapes in names and keys.
	 */
	m = parse_ok(
		" \r\n{ \"signed_at\" : \"2026-11-23T10:00:00Z\",\n"
		"  \"components\" : [ { \"sha256\" : \"" SHA "\" ,"
		"  \"extra\" : {\"name\": 5, \"list\": [1, [2, {\"size\": \"x\"}]],"
		"  \"t\": true}, \"size\" : 1099511627776, \"n\\u0061me\" :"
		" \"\\u0041-1.bin\", \"version\" : \"12.0 build 7 (GA)\","
		"  \"note\": null } ],\n"
		"  \"future\": [[[[]]], {}, \"\\u00e9\\ud83d\\ude00\", -1.5e-3],"
		"  \"components.name\": \"not a component\","
		"  \"profile\" : \"ip500v2\" , \"release\" : \"999999.0.1\","
		"  \"x\": false, \"y\": 0, \"z\": \"caf\xc3\xa9\" }\n\t ");
	assert_string_equal(manifest_release(m), "999999.0.1");
	assert_string_equal(manifest_profile(m), "ip500v2");
	assert_int_equal(manifest_count(m), 1);
	c = manifest_at(m, 0);
	assert_string_equal(c->name, "A-1.bin");
	assert_string_equal(c->version, "12.0 build 7 (GA)");
	assert_true(c->size == 1099511627776ULL);
	assert_string_equal(c->sha256, SHA);
	assert_true(manifest_total_size(m) == 1099511627776ULL);
	manifest_free(m);

	/* Five top-level arrays in turn (LEJP's index stack must keep up). */
	m = parse_ok("{\"a\":[1],\"b\":[[2]],\"c\":[3],\"d\":[4],\"e\":[5],"
		     "\"f\":[[[[6]]]]," REL "," PROF "," COMPS "}");
	manifest_free(m);
}

static void test_parse_limits_ok(void **state)
{
	char comps[4000], name[MANIFEST_MAX_NAME + 1], buf[600];
	struct manifest *m;
	size_t n = 0;

	(void)state;
	/* Sixteen components, their sizes added up. */
	for (int i = 0; i < MANIFEST_MAX_COMPONENTS; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		n += (size_t)snprintf(comps + n, sizeof(comps) - n,
				      "%s{\"name\":\"%s\",\"version\":\"1\","
				      "\"size\":%d,\"sha256\":\"" SHA "\"}",
				      i ? "," : "", name, 1000 + i);
	}
	m = parse_ok(with_comp(comps));
	assert_int_equal(manifest_count(m), 16);
	assert_string_equal(manifest_at(m, 15)->name, "c15");
	assert_true(manifest_total_size(m) == 16 * 1000 + 120);
	manifest_free(m);

	/* The longest name and version, the biggest size, 8 version parts. */
	memset(name, 'n', MANIFEST_MAX_NAME);
	name[MANIFEST_MAX_NAME] = '\0';
	snprintf(buf, sizeof(buf),
		 "{\"name\":\"%s\",\"version\":\"%s\",\"size\":1099511627776,"
		 "\"sha256\":\"" SHA "\"}", name,
		 "12345678901234567890123456789012");
	m = parse_ok(with_comp(buf));
	assert_string_equal(manifest_at(m, 0)->name, name);
	assert_string_equal(manifest_at(m, 0)->version,
			    "12345678901234567890123456789012");
	manifest_free(m);
	m = parse_ok(with_top("\"release\":\"999999.999999.999999.999999."
			      "999999.999999.999999.999999\"," PROF ","
			      COMPS));
	assert_string_equal(manifest_release(m), "999999.999999.999999.999999."
			    "999999.999999.999999.999999");
	manifest_free(m);
	m = parse_ok(with_top("\"release\":\"0\"," PROF "," COMPS));
	manifest_free(m);
}

static void test_parse_text(void **state)
{
	struct manifest *m = NULL;
	char *big;

	(void)state;
	parse_badn("", 0, ERR_INVAL, "empty manifest");
	parse_badn(NULL, 0, ERR_INVAL, "empty manifest");
	parse_badn(NULL, 5, ERR_INVAL, "no manifest");
	assert_int_equal(manifest_parse(GOOD, strlen(GOOD), NULL, NULL, 0),
			 ERR_INVAL);
	/* Padded to exactly 4096 bytes it parses, one more is refused. */
	big = malloc(MANIFEST_MAX_TEXT + 1);
	assert_non_null(big);
	memset(big, ' ', MANIFEST_MAX_TEXT + 1);
	memcpy(big, GOOD, strlen(GOOD));
	assert_int_equal(manifest_parse(big, MANIFEST_MAX_TEXT, &m, NULL, 0),
			 ERR_OK);
	manifest_free(m);
	parse_badn(big, MANIFEST_MAX_TEXT + 1, ERR_LIMIT,
		   "manifest longer than 4096 bytes");
	free(big);

	parse_badn("{\"release\":\"1\"\0}", 16, ERR_INVAL,
		   "NUL byte in the manifest");
	/* Invalid UTF-8 anywhere, even in a member that would be ignored:
	 * a stray byte, an overlong '/', an encoded surrogate. */
	parse_bad("{\"x\":\"\xff\"," REL "," PROF "," COMPS "}",
		  "invalid UTF-8");
	parse_bad("{\"x\":\"\xc0\xaf\"," REL "," PROF "," COMPS "}",
		  "invalid UTF-8");
	parse_bad("{\"x\":\"\xed\xa0\x80\"," REL "," PROF "," COMPS "}",
		  "invalid UTF-8");
}

static void test_parse_json(void **state)
{
	(void)state;
	parse_bad("[" GOOD "]", "not a JSON object");
	parse_bad("\"release\"", "not a JSON object");
	parse_bad("\xef\xbb\xbf" GOOD, "not a JSON object");
	parse_bad("{}", "release: missing");
	parse_bad(GOOD " x", "trailing data after the object");
	parse_bad(GOOD GOOD, "trailing data after the object");
	parse_bad(GOOD ",", "trailing data after the object");
	parse_bad("{\"release\":\"12.0\"", "not JSON: manifest truncated");
	/* What LEJP would let through. */
	parse_bad("{\"x\":1 # comment\n," REL "," PROF "," COMPS "}",
		  "not JSON: '#' outside a string");
	parse_bad("{\"x\":[1,]," REL "," PROF "," COMPS "}",
		  "not JSON: ',' before ']'");
	parse_bad("{\"x\":[1}," REL "," PROF "," COMPS "}",
		  "not JSON: mismatched '}'");
	parse_bad("{\"x\":01," REL "," PROF "," COMPS "}",
		  "not JSON: bad number");
	parse_bad("{\"x\":1e+," REL "," PROF "," COMPS "}",
		  "not JSON: bad number");
	/* What LEJP refuses itself, in its words. */
	parse_bad("{\"x\":[1 2]," REL "," PROF "," COMPS "}",
		  "not JSON: Comma or block end expected");
	parse_bad("{\"x\":tru," REL "," PROF "," COMPS "}",
		  "not JSON: Unknown token");
	parse_bad("{\"x\":1,," REL "," PROF "," COMPS "}",
		  "not JSON: Expected '\"'");
	parse_bad("{'x':1," REL "," PROF "," COMPS "}",
		  "not JSON: Expected '\"'");
	parse_bad("{\"x\":\"a\nb\"," REL "," PROF "," COMPS "}",
		  "not JSON: Illegal unescaped control char");
}

static void test_parse_nesting(void **state)
{
	struct manifest *m;
	char key[400];

	(void)state;
	/* 8 levels are fine, 9 are not. */
	m = parse_ok("{\"x\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{}}}}}}},"
		     REL "," PROF "," COMPS "}");
	manifest_free(m);
	parse_bad("{\"x\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":"
		  "{}}}}}}}}," REL "," PROF "," COMPS "}",
		  "nesting deeper than 8 levels");
	/* 5 arrays within each other are fine, 6 are not. */
	m = parse_ok("{\"x\":[[[[[1]]]]]," REL "," PROF "," COMPS "}");
	manifest_free(m);
	parse_bad("{\"x\":[[[[[[1]]]]]]," REL "," PROF "," COMPS "}",
		  "arrays nested deeper than 5 levels");
	/* An unknown key of 120 bytes is fine, 121 are too long. */
	snprintf(key, sizeof(key), "{\"%0120d\":1," REL "," PROF "," COMPS "}",
		 0);
	m = parse_ok(key);
	manifest_free(m);
	snprintf(key, sizeof(key), "{\"%0121d\":1," REL "," PROF "," COMPS "}",
		 0);
	parse_bad(key, "member path longer than 120 bytes");
	snprintf(key, sizeof(key), "{\"x\":{\"%0118d\":1}," REL "," PROF ","
		 COMPS "}", 0);
	m = parse_ok(key);
	manifest_free(m);
	snprintf(key, sizeof(key), "{\"x\":{\"%0119d\":1}," REL "," PROF ","
		 COMPS "}", 0);
	parse_bad(key, "member path longer than 120 bytes");
}

static void test_parse_top_members(void **state)
{
	(void)state;
	parse_bad(with_top(PROF "," COMPS), "release: missing");
	parse_bad(with_top(REL "," COMPS), "profile: missing");
	parse_bad(with_top(REL "," PROF), "components: missing");
	parse_bad(with_top(REL "," REL "," PROF "," COMPS),
		  "release: given more than once");
	parse_bad(with_top(REL "," PROF "," COMPS ",\"r\\u0065lease\":\"1\""),
		  "release: given more than once");
	parse_bad(with_top(REL "," PROF "," PROF "," COMPS),
		  "profile: given more than once");
	parse_bad(with_top(REL "," PROF "," COMPS "," COMPS),
		  "components: given more than once");

	parse_bad(with_top("\"release\":12," PROF "," COMPS),
		  "release: not a string");
	parse_bad(with_top("\"release\":null," PROF "," COMPS),
		  "release: not a string");
	parse_bad(with_top("\"release\":{}," PROF "," COMPS),
		  "release: not a string");
	parse_bad(with_top("\"release\":[\"12\"]," PROF "," COMPS),
		  "release: not a string");
	parse_bad(with_top(REL ",\"profile\":true," COMPS),
		  "profile: not a string");
	parse_bad(with_top(REL "," PROF ",\"components\":{}"),
		  "components: not an array");
	parse_bad(with_top(REL "," PROF ",\"components\":\"a.bin\""),
		  "components: not an array");
	parse_bad(with_top(REL "," PROF ",\"components\":null"),
		  "components: not an array");
}

static void test_parse_release(void **state)
{
	static const char *const bad[] = {
		"", "unknown", "12.0.1.a", "1..2", ".1", "1.", "12.0 ", " 12",
		"+1", "-1", "1.-2", "1,2", "1.2.3.4.5.6.7.8.9", "1234567",
		"1.0000001", "\\u0031\\u0000", "12.0.1.0\\n",
		"0000000000000000000000000000000000000000000000000000000000001",
	};
	static const char *const good[] = {
		"12.0.1.0", "1", "0.0", "000001.2", "11.1.3.0",
	};
	char top[300];
	struct manifest *m;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(top, sizeof(top), "\"release\":\"%s\"," PROF "," COMPS,
			 bad[i]);
		parse_bad(with_top(top), "release: not a dotted version (1 to 8 "
			  "numbers of up to 6 digits)");
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(top, sizeof(top), "\"release\":\"%s\"," PROF "," COMPS,
			 good[i]);
		m = parse_ok(with_top(top));
		assert_string_equal(manifest_release(m), good[i]);
		manifest_free(m);
	}
}

static void test_parse_profile(void **state)
{
	static const char *const bad[] = {
		"", "Linux", "linux ", "ip500", "ip500v2x", "IP500V2",
		"linux\\u0000", "windows",
	};
	char top[300];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(top, sizeof(top), REL ",\"profile\":\"%s\"," COMPS,
			 bad[i]);
		parse_bad(with_top(top), "profile: not linux or ip500v2");
	}
}

static void test_parse_components(void **state)
{
	struct manifest *m;
	char comps[4000];
	size_t n = 0;

	(void)state;
	parse_bad(with_comp(""), "components: empty");
	parse_bad(with_comp("1"), "components[0]: not an object");
	parse_bad(with_comp("[]"), "components[0]: not an object");
	parse_bad(with_comp("null"), "components[0]: not an object");
	parse_bad(with_comp(COMP("a.bin", "1", SHA) ",\"b.bin\""),
		  "components[1]: not an object");
	parse_bad(with_comp("{}"), "components[0].name: missing");
	parse_bad(with_comp(COMP("a.bin", "1", SHA) ",{\"name\":\"b\"}"),
		  "components[1].version: missing");
	parse_bad(with_comp("{\"name\":\"a\",\"version\":\"1\",\"sha256\":\""
			    SHA "\"}"), "components[0].size: missing");
	parse_bad(with_comp("{\"name\":\"a\",\"version\":\"1\",\"size\":1}"),
		  "components[0].sha256: missing");

	/* Seventeen. */
	for (int i = 0; i < MANIFEST_MAX_COMPONENTS + 1; i++)
		n += (size_t)snprintf(comps + n, sizeof(comps) - n,
				      "%s{\"name\":\"c%d\",\"version\":\"1\","
				      "\"size\":1,\"sha256\":\"" SHA "\"}",
				      i ? "," : "", i);
	parse_bad(with_comp(comps), "components: more than 16 entries");

	/* Names are unique, exactly (case matters on the file system). */
	parse_bad(with_comp(COMP("a.bin", "1", SHA) "," COMP("b.bin", "1", SHA)
			    "," COMP("a.bin", "2", SHB)),
		  "components[2].name: duplicate of components[0]");
	m = parse_ok(with_comp(COMP("a.bin", "1", SHA) ","
			       COMP("A.bin", "1", SHA)));
	manifest_free(m);

	/* A member given twice within one component. */
	parse_bad(with_comp("{\"name\":\"a\",\"name\":\"b\",\"version\":\"1\","
			    "\"size\":1,\"sha256\":\"" SHA "\"}"),
		  "components[0].name: given more than once");
	parse_bad(with_comp(COMP("a", "1", SHA) ",{\"name\":\"b\",\"size\":1,"
			    "\"version\":\"1\",\"size\":2,\"sha256\":\"" SHA
			    "\"}"),
		  "components[1].size: given more than once");
}

static void test_parse_component_name(void **state)
{
	static const char *const bad[] = {
		"", "a/b", "../x", "a b", "a\\u0000b", "caf\xc3\xa9.bin",
		"a\\\\b", "a:b", "a\\nb", "*",
	};
	char buf[600], name[MANIFEST_MAX_NAME + 2], lng[301];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "{\"name\":\"%s\",\"version\":\"1\","
			 "\"size\":1,\"sha256\":\"" SHA "\"}", bad[i]);
		parse_bad(with_comp(buf), "components[0].name: not 1..128 "
			  "characters of [A-Za-z0-9._-]");
	}
	memset(name, 'n', MANIFEST_MAX_NAME + 1);
	name[MANIFEST_MAX_NAME + 1] = '\0';
	snprintf(buf, sizeof(buf), "{\"name\":\"%s\",\"version\":\"1\","
		 "\"size\":1,\"sha256\":\"" SHA "\"}", name);
	parse_bad(with_comp(buf),
		  "components[0].name: not 1..128 characters of [A-Za-z0-9._-]");
	parse_bad(with_comp(COMP(".", "1", SHA)),
		  "components[0].name: \".\" and \"..\" are not file names");
	parse_bad(with_comp(COMP("a", "1", SHA) "," COMP("..", "1", SHA)),
		  "components[1].name: \".\" and \"..\" are not file names");
	parse_bad(with_comp("{\"name\":7,\"version\":\"1\",\"size\":1,"
			    "\"sha256\":\"" SHA "\"}"),
		  "components[0].name: not a string");
	/* A name longer than a LEJP chunk (254 bytes). */
	memset(lng, 'x', 300);
	lng[300] = '\0';
	snprintf(buf, sizeof(buf), "{\"name\":\"%s\",\"version\":\"1\","
		 "\"size\":1,\"sha256\":\"" SHA "\"}", lng);
	parse_bad(with_comp(buf),
		  "components[0].name: not 1..128 characters of [A-Za-z0-9._-]");
}

static void test_parse_component_version(void **state)
{
	static const char *const bad[] = {
		"", "123456789012345678901234567890123", "1\\n", "1\\t2",
		"v\xc3\xa9", "\\u007f", "1\\u0000",
	};
	char buf[600];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "{\"name\":\"a\",\"version\":\"%s\","
			 "\"size\":1,\"sha256\":\"" SHA "\"}", bad[i]);
		parse_bad(with_comp(buf), "components[0].version: not 1..32 "
			  "printable ASCII characters");
	}
	parse_bad(with_comp("{\"name\":\"a\",\"version\":12,\"size\":1,"
			    "\"sha256\":\"" SHA "\"}"),
		  "components[0].version: not a string");
}

static void test_parse_component_size(void **state)
{
	static const char *const bad[] = {
		"-1", "-0", "1.0", "1e3", "1E3", "0.5", "1099511627777",
		"18446744073709551616", "99999999999999999999",
		"\"10\"", "null", "true", "[1]", "{}",
	};
	char buf[600];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "{\"name\":\"a\",\"version\":\"1\","
			 "\"size\":%s,\"sha256\":\"" SHA "\"}", bad[i]);
		parse_bad(with_comp(buf),
			  "components[0].size: not an integer in 0..2^40");
	}
	snprintf(buf, sizeof(buf), "{\"name\":\"a\",\"version\":\"1\","
		 "\"size\":007,\"sha256\":\"" SHA "\"}");
	parse_bad(with_comp(buf), "not JSON: bad number");
}

static void test_parse_component_sha256(void **state)
{
	static const char *const bad[] = {
		"", "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
		"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0",
		"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a081",
		"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0g",
		"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0\\u0000",
		"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15",
	};
	char buf[600];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), COMP("a", "1", SHA) ","
			 COMP("b", "1", SHA) ",{\"name\":\"c\",\"version\":"
			 "\"1\",\"size\":1,\"sha256\":\"%s\"}", bad[i]);
		parse_bad(with_comp(buf),
			  "components[2].sha256: not 64 lower-case hex digits");
	}
	parse_bad(with_comp("{\"name\":\"a\",\"version\":\"1\",\"size\":1,"
			    "\"sha256\":null}"),
		  "components[0].sha256: not a string");
}

/* Verify, then parse: the whole path the job engine takes. */
/*
 * Every string member longer than two LEJP chunks (254 bytes each): once
 * the kept part is full, later chunks are only counted. Regression (found
 * by tests/fuzz/fuzz_manifest): the copy of such a chunk was a 0-byte
 * memcpy to p->str + str_len, a pointer past the 129-byte buffer (UB,
 * reported by clang's -fsanitize=bounds).
 */
static void test_parse_long_strings(void **state)
{
	char lng[601], buf[2048], top[1024];

	(void)state;
	memset(lng, '1', 600);
	lng[600] = '\0';
	snprintf(top, sizeof(top), "\"release\":\"%s\"," PROF "," COMPS, lng);
	parse_bad(with_top(top), "release: not a dotted version (1 to 8 "
		  "numbers of up to 6 digits)");
	snprintf(top, sizeof(top), REL ",\"profile\":\"%s\"," COMPS, lng);
	parse_bad(with_top(top), "profile: not linux or ip500v2");
	snprintf(buf, sizeof(buf), "{\"name\":\"%s\",\"version\":\"1\","
		 "\"size\":1,\"sha256\":\"" SHA "\"}", lng);
	parse_bad(with_comp(buf),
		  "components[0].name: not 1..128 characters of [A-Za-z0-9._-]");
	snprintf(buf, sizeof(buf), "{\"name\":\"a\",\"version\":\"%s\","
		 "\"size\":1,\"sha256\":\"" SHA "\"}", lng);
	parse_bad(with_comp(buf), "components[0].version: not 1..32 printable "
		  "ASCII characters");
	snprintf(buf, sizeof(buf), "{\"name\":\"a\",\"version\":\"1\","
		 "\"size\":1,\"sha256\":\"%s\"}", lng);
	parse_bad(with_comp(buf),
		  "components[0].sha256: not 64 lower-case hex digits");
}

static void test_verify_then_parse(void **state)
{
	struct manifest_keys *k = keys("a.pem b.pem");
	struct manifest *m = NULL;
	char sig[256], why[200];

	(void)state;
	sign(&key_b, GOOD, strlen(GOOD), sig, sizeof(sig));
	assert_int_equal(manifest_verify(k, GOOD, strlen(GOOD), sig, why,
					 sizeof(why)), ERR_OK);
	assert_int_equal(manifest_parse(GOOD, strlen(GOOD), &m, why,
					sizeof(why)), ERR_OK);
	assert_int_equal(manifest_count(m), 2);
	manifest_free(m);
	manifest_keys_free(k);
}

/* ------------------------------------------------------------ versions */

static void cmp_is(const char *a, const char *b, int want)
{
	bool ok = false;
	int r = manifest_version_cmp(a, b, &ok);

	if (!ok || r != want)
		print_error("cmp(%s, %s) = %d ok %d\n", a ? a : "NULL",
			    b ? b : "NULL", r, ok);
	assert_true(ok);
	assert_int_equal(r, want);
	/* And the other way round. */
	assert_int_equal(manifest_version_cmp(b, a, &ok), -want);
	assert_true(ok);
	assert_int_equal(manifest_version_cmp(a, b, NULL), want);
}

static void cmp_invalid(const char *v)
{
	bool ok = true;

	if (manifest_version_cmp(v, "12.0", &ok) != 0 || ok)
		print_error("cmp(%s, 12.0) took it\n", v ? v : "NULL");
	assert_int_equal(manifest_version_cmp(v, "12.0", &ok), 0);
	assert_false(ok);
	ok = true;
	assert_int_equal(manifest_version_cmp("12.0", v, &ok), 0);
	assert_false(ok);
	ok = true;
	assert_int_equal(manifest_version_cmp(v, v, &ok), 0);
	assert_false(ok);
	assert_int_equal(manifest_version_cmp(v, "99", NULL), 0);
}

static void test_version_cmp(void **state)
{
	(void)state;
	cmp_is("11.1.3.0", "12.0.0.1", -1);
	cmp_is("12.0", "12.0.0", 0);
	cmp_is("12.0.0.1", "12.0", 1);
	cmp_is("12.0.1.0", "12.0.1.0", 0);
	cmp_is("1", "1.0.0.0.0.0.0.0", 0);
	cmp_is("1.0.0.0.0.0.0.1", "1", 1);
	cmp_is("10.0", "9.9", 1);		/* numbers, not text */
	cmp_is("12.0.10", "12.0.9", 1);
	cmp_is("01.2", "1.2", 0);		/* leading zeros are fine */
	cmp_is("0", "0.0", 0);
	cmp_is("999999", "999998.999999", 1);
	cmp_is("11.1.100.0", "11.1.99.9", 1);

	cmp_invalid("unknown");
	cmp_invalid("");
	cmp_invalid("1..2");
	cmp_invalid("1.a");
	cmp_invalid(".1");
	cmp_invalid("1.");
	cmp_invalid(" 1");
	cmp_invalid("1 ");
	cmp_invalid("+1");
	cmp_invalid("-1");
	cmp_invalid("1.2.3.4.5.6.7.8.9");
	cmp_invalid("1000000");
	cmp_invalid("12.0.1000000");
	cmp_invalid("0000001");
	cmp_invalid("12.0\n");
	cmp_invalid("v12.0");
	cmp_invalid(NULL);
	cmp_invalid("1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23");
}

#define T(f) cmocka_unit_test(f)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_keys_load),
		T(test_keys_refused),
		T(test_verify_good),
		T(test_verify_rotation),
		T(test_verify_unknown_key),
		T(test_verify_tampered),
		T(test_verify_bad_signature),
		T(test_verify_arguments),
		T(test_verify_openssl),
		T(test_parse_good),
		T(test_parse_forward_compatible),
		T(test_parse_limits_ok),
		T(test_parse_text),
		T(test_parse_json),
		T(test_parse_nesting),
		T(test_parse_top_members),
		T(test_parse_release),
		T(test_parse_profile),
		T(test_parse_components),
		T(test_parse_component_name),
		T(test_parse_component_version),
		T(test_parse_component_size),
		T(test_parse_component_sha256),
		T(test_parse_long_strings),
		T(test_verify_then_parse),
		T(test_version_cmp),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
