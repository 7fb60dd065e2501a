/*
 * fuzz_manifest — libFuzzer harness for agent/manifest.c: the signed
 * upgrade manifest (PROTOCOL.md §2.6).
 *
 * Input: "SIG\nTEXT" — the first line is the signature's base64 as COM
 * sends it, the rest the manifest text. SIG "*" has the harness sign TEXT
 * itself with the fixed test key (deterministic ECDSA) when it parses:
 * then manifest_verify() must say ERR_OK (and, for 1 in 16, refuse the
 * same signature over TEXT with one byte changed). Any other SIG is
 * verified as given (nothing the fuzzer makes up may verify). Every TEXT
 * is given to manifest_parse() (the agent verifies first; the harness
 * parses regardless, to fuzz it fully), whose result is checked against
 * the documented rules, and to manifest_version_cmp() (release against
 * each component's version, which must be antisymmetric).
 *
 * The key pair is made once at init from a fixed seed (mbedTLS with a
 * deterministic RNG) and its public half written as PEM into the
 * per-process temp dir for manifest_keys_load().
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include "fuzz_common.h"
#include "manifest.h"

static mbedtls_pk_context key;
static struct manifest_keys *keys;

/* A fixed-output "RNG" (xorshift64*): the same key every run, so a
 * crashing input reproduces. Test use only. */
static int fixed_rng(void *arg, unsigned char *out, size_t len)
{
	uint64_t *s = arg;

	for (size_t i = 0; i < len; i++) {
		*s ^= *s >> 12;
		*s ^= *s << 25;
		*s ^= *s >> 27;
		out[i] = (unsigned char)((*s * 2685821657736338717ULL) >> 56);
	}
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint64_t seed = 0x636f6d6167656e74ULL;	/* "comagent" */
	unsigned char pem[1024];
	char why[256];

	(void)argc;
	(void)argv;
	fz_init("manifest");
	mbedtls_pk_init(&key);
	FZ_CHECK(!mbedtls_pk_setup(&key,
				   mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)));
	FZ_CHECK(!mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1,
				      mbedtls_pk_ec(key), fixed_rng, &seed));
	FZ_CHECK(!mbedtls_pk_write_pubkey_pem(&key, pem, sizeof(pem)));
	fz_write(fz_path("key.pem"), pem, strlen((char *)pem), 0600);
	if (manifest_keys_load(fz_path("key.pem"), &keys, why,
			       sizeof(why)) != ERR_OK) {
		fprintf(stderr, "manifest_keys_load: %s\n", why);
		abort();
	}
	FZ_CHECK(manifest_keys_count(keys) == 1);
	return 0;
}

/* base64 of a deterministic ECDSA signature of text into b64. */
static void sign(const char *text, size_t len, char *b64, size_t cap)
{
	unsigned char hash[32], sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
	size_t slen = 0, olen = 0;
	uint64_t seed = 1;

	FZ_CHECK(!mbedtls_sha256_ret((const unsigned char *)text, len, hash,
				     0));
	FZ_CHECK(!mbedtls_pk_sign(&key, MBEDTLS_MD_SHA256, hash, 32, sig,
				  &slen, fixed_rng, &seed));
	FZ_CHECK(!mbedtls_base64_encode((unsigned char *)b64, cap, &olen, sig,
					slen));
}

static bool is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

/* manifest_parse() and the checks of its result; true if it parsed. */
static bool check_parse(const char *text, size_t len)
{
	struct manifest *m = (struct manifest *)1;
	char why[256];
	uint64_t sum = 0;
	bool ok;
	err_t e;

	why[0] = 'x';
	e = manifest_parse(text, len, &m, why, sizeof(why));
	FZ_CHECK(memchr(why, '\0', sizeof(why)));
	if (e != ERR_OK) {
		FZ_CHECK(m == NULL);
		FZ_CHECK(e == ERR_INVAL || e == ERR_LIMIT || e == ERR_NOMEM);
		return false;
	}
	FZ_CHECK(len <= MANIFEST_MAX_TEXT);
	const char *rel = manifest_release(m), *prof = manifest_profile(m);

	FZ_CHECK(rel && prof);
	FZ_CHECK(!strcmp(prof, "linux") || !strcmp(prof, "ip500v2"));
	FZ_CHECK(manifest_version_cmp(rel, rel, &ok) == 0 && ok);
	FZ_CHECK(manifest_count(m) >= 1 &&
		 manifest_count(m) <= MANIFEST_MAX_COMPONENTS);
	for (size_t i = 0; i < manifest_count(m); i++) {
		const struct manifest_component *c = manifest_at(m, i);
		size_t nl;
		int ab, ba;
		bool ok2;

		FZ_CHECK(c && c->name && c->version && c->sha256);
		nl = strlen(c->name);
		FZ_CHECK(nl >= 1 && nl <= MANIFEST_MAX_NAME);
		FZ_CHECK(strcmp(c->name, ".") && strcmp(c->name, ".."));
		FZ_CHECK(strspn(c->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				"abcdefghijklmnopqrstuvwxyz0123456789._-") == nl);
		FZ_CHECK(strlen(c->version) >= 1 &&
			 strlen(c->version) <= MANIFEST_MAX_VERSION);
		FZ_CHECK(c->size <= MANIFEST_MAX_SIZE);
		FZ_CHECK(is_hex64(c->sha256));
		for (size_t j = 0; j < i; j++)
			FZ_CHECK(strcmp(manifest_at(m, j)->name, c->name));
		sum += c->size;
		ab = manifest_version_cmp(rel, c->version, &ok);
		ba = manifest_version_cmp(c->version, rel, &ok2);
		FZ_CHECK(ok == ok2);
		FZ_CHECK(ab == -ba);
		FZ_CHECK(ok || ab == 0);
	}
	FZ_CHECK(manifest_at(m, manifest_count(m)) == NULL);
	FZ_CHECK(manifest_total_size(m) == sum);
	manifest_free(m);
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size);
	char sig[MANIFEST_MAX_SIG_TEXT + 64], why[256];
	const char *text;
	size_t slen, tlen;
	err_t e;

	if (!nl)
		return 0;
	slen = (size_t)(nl - (const char *)data);
	text = nl + 1;
	tlen = size - slen - 1;
	if (slen >= sizeof(sig))
		return 0;

	if (slen == 1 && data[0] == '*') {
		/* ECDSA under ASan costs milliseconds: sign only what parses,
		 * as the agent would go on with those. */
		if (!check_parse(text, tlen))
			return 0;
		sign(text, tlen, sig, sizeof(sig));
		e = manifest_verify(keys, text, tlen, sig, why, sizeof(why));
		if (e != ERR_OK)
			fprintf(stderr, "good signature refused: %s\n", why);
		FZ_CHECK(e == ERR_OK);
		/* Not the text it signs: one byte changed must not verify
		 * (1 in 16 inputs, by the text's length: it costs as much). */
		if (tlen % 16 == 0) {
			char *copy = malloc(tlen);

			FZ_CHECK(copy);
			memcpy(copy, text, tlen);
			copy[tlen / 2] ^= 0x01;
			e = manifest_verify(keys, copy, tlen, sig, why,
					    sizeof(why));
			free(copy);
			FZ_CHECK(e == ERR_PERM);
		}
		return 0;
	}
	memcpy(sig, data, slen);
	sig[slen] = '\0';
	why[0] = 'x';
	e = manifest_verify(keys, text, tlen, sig, why, sizeof(why));
	FZ_CHECK(memchr(why, '\0', sizeof(why)));
	/* Nothing the fuzzer makes up verifies with our key. */
	FZ_CHECK(e != ERR_OK);
	FZ_CHECK(e == ERR_PERM || e == ERR_INVAL || e == ERR_LIMIT ||
		 e == ERR_TLS);
	(void)check_parse(text, tlen);
	return 0;
}
