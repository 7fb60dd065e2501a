/*
 * cert — the system's identity certificate when COM manages it (the
 * remote-operation setting `centralcert`; PROTOCOL.md §2.6, op
 * `certificate`): the checks a pushed certificate and key must pass before
 * anything is installed, and the agent's own record of what it installed
 * (STATE_DIR/cert/current.pem and previous.pem: one level of rollback).
 *
 * Installing is not done here: ops writes the pair into its work directory
 * (cert_pair_write) and runs the platform hook `certificate` (HOOKS.md §5);
 * only when the hook succeeded does it record the pair (cert_store_commit).
 *
 * Verification does not log: a refusal comes back as a reason word
 * (PROTOCOL.md) and a message in why that names the argument and carries
 * mbedTLS's own text; the caller logs it once (as the job's end). The
 * store logs its own file errors (state.c does).
 *
 * Key material lives only in memory this module allocates, is wiped
 * (mbedtls_platform_zeroize) before it is freed, and is never logged.
 */
#ifndef COMAGENT_CERT_H
#define COMAGENT_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Bytes of one PEM text from COM: the protocol's string limit (§2). */
#define CERT_PEM_MAX	4096
/* Intermediate certificates a job may send beside the leaf. */
#define CERT_CHAIN_MAX	4
/* The CA bundle that must issue the certificate is read whole, at most
 * this big (a system-wide bundle is some 200 KiB). */
#define CERT_CA_FILE_MAX (512 * 1024)

/* What status and alarms show of a certificate. Text is printable ASCII
 * (anything else is '?'), cut to fit. */
struct cert_info {
	char subject[256];	/* "CN=pbx-hq.example, O=..." */
	char issuer[256];
	char serial[100];	/* hex bytes "01:A3:...", as mbedTLS prints */
	int64_t not_before;	/* Unix seconds, UTC (64 bits: past 2038 on */
	int64_t not_after;	/* the appliance's 32-bit time_t too) */
};

/* A certificate job's texts (NUL-terminated, each at most CERT_PEM_MAX
 * bytes): the leaf, its unencrypted private key, intermediates. */
struct cert_req {
	const char *cert;
	const char *key;
	const char *chain[CERT_CHAIN_MAX];
	size_t nchain;
	const char *ca_file;	/* PEM bundle the chain must lead to */
	const char *name;	/* the DNS name (or CN) it must carry */
	int64_t now;		/* the agent's wall clock, Unix seconds */
};

/* A verified certificate chain (leaf first, re-encoded as PEM from what
 * was parsed) and its key (the PEM block as sent), ready to install. */
struct cert_pair;

/*
 * Checks q, in this order, and stops at the first failure:
 *   invalid        a text is missing, is not exactly one PEM block of
 *                  its kind, does not parse, or the key is encrypted
 *   key_mismatch   the key is not the certificate's
 *   untrusted      the CA file cannot be read, or the chain (leaf plus
 *                  intermediates) does not verify to it
 *   name           neither a DNS SAN nor (without SANs) the CN matches
 *                  q->name (mbedTLS's rules: case-insensitive, "*."
 *                  wildcard of one label)
 *   expired, not_yet_valid   the leaf or an intermediate, judged by
 *                  q->now (never by mbedTLS's own clock)
 * NULL and *out (cert_pair_free() it) when all pass; else the reason word
 * above, *out NULL and why a sentence for COM ("args.chain[1]: ...", "the
 * certificate names X, not Y", "the certificate expired on ...").
 */
const char *cert_verify(const struct cert_req *q, struct cert_pair **out,
			char *why, size_t cap);
/* Wipes the key and frees. NULL is fine. */
void cert_pair_free(struct cert_pair *p);
const struct cert_info *cert_pair_info(const struct cert_pair *p);

/* Writes the chain (leaf first) to cert_path and the key to key_path,
 * each atomically, mode 0600 (state_write; failures logged there). */
err_t cert_pair_write(const struct cert_pair *p, const char *cert_path,
		      const char *key_path);

/* The record of what was installed. */
struct cert_store;

/*
 * The record under state_dir/cert (made 0700 on the first commit); the
 * current certificate's info is read at once. A record that cannot be read
 * or parsed is logged and treated as absent: it does not stop the agent.
 * NULL only when out of memory or the path is too long (logged).
 */
struct cert_store *cert_store_new(const char *state_dir);
void cert_store_free(struct cert_store *s);

/* The installed certificate's info; false when none is recorded. */
bool cert_store_info(const struct cert_store *s, struct cert_info *out);
bool cert_store_has_previous(const struct cert_store *s);

/* The previous certificate as texts (the leaf, the key, intermediates), to
 * be checked again and reinstalled. Strings owned by t; cert_texts_clear()
 * wipes and frees them. ERR_NOTFOUND when there is none; ERR_INVAL when
 * the record is damaged (why says how); ERR_IO, ERR_NOMEM. */
struct cert_texts {
	char *cert, *key;
	char *chain[CERT_CHAIN_MAX];
	size_t nchain;
};
err_t cert_store_previous(const struct cert_store *s, struct cert_texts *t,
			  char *why, size_t cap);
void cert_texts_clear(struct cert_texts *t);

/* p is now installed: the current record becomes the previous one and p
 * the current one (a rollback commits the previous pair, which swaps
 * them). Each file is replaced atomically; ERR_IO (logged) leaves the
 * record as it was or, when only the second write failed, with current
 * also as previous. */
err_t cert_store_commit(struct cert_store *s, const struct cert_pair *p);

/* Seconds since 1970 of a UTC calendar time (proleptic Gregorian, any
 * year 0..9999), without time_t: the appliance's is 32 bits. */
int64_t cert_utc_seconds(int year, int mon, int day, int hour, int min,
			 int sec);
/* t as "YYYY-MM-DD HH:MM:SS UTC" into buf (32 bytes suffice). */
void cert_time_text(int64_t t, char *buf, size_t cap);

#endif
