/*
 * fuzz_intake — libFuzzer harness for agent/intake.c, the syslog receiver's
 * parsing: intake_classify() and intake_trim() of the input as one UDP
 * datagram, and the RFC 6587 TCP framer fed the input as a stream.
 *
 * Input: byte 0 picks msg_max (1..256, or 2048, or 64 KiB), byte 1 seeds
 * the chunk sizes, the rest is the stream (and the datagram). The stream
 * is fed twice — whole in one call, and in random-sized chunks (0..64
 * bytes, derived from byte 1) — and both runs must deliver the same
 * messages (same bytes, same truncated flags), end with the same result
 * and the same pending count: the framer's contract is that bytes may
 * arrive split anywhere. Every message is at most msg_max bytes, exactly
 * msg_max when truncated, and is classified too.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "intake.h"

/* What one run delivered: the messages back to back, with their lengths
 * and flags. */
struct run {
	uint8_t *bytes;
	size_t len, cap;
	size_t *lens;
	bool *trunc;
	size_t n, ncap;
	size_t msg_max;
};

static void on_msg(void *arg, const char *m, size_t len, bool truncated)
{
	struct run *r = arg;
	enum intake_kind k;

	FZ_CHECK(m != NULL || len == 0);
	FZ_CHECK(len <= r->msg_max);
	FZ_CHECK(!truncated || len == r->msg_max);
	k = intake_classify(m, len);
	FZ_CHECK((int)k >= 0 && (int)k < INTAKE_KINDS);
	if (r->len + len > r->cap) {
		r->cap = (r->len + len) * 2 + 64;
		r->bytes = realloc(r->bytes, r->cap);
		FZ_CHECK(r->bytes);
	}
	if (r->n == r->ncap) {
		r->ncap = r->ncap * 2 + 16;
		r->lens = realloc(r->lens, r->ncap * sizeof(*r->lens));
		r->trunc = realloc(r->trunc, r->ncap * sizeof(*r->trunc));
		FZ_CHECK(r->lens && r->trunc);
	}
	if (len)
		memcpy(r->bytes + r->len, m, len);
	r->len += len;
	r->lens[r->n] = len;
	r->trunc[r->n] = truncated;
	r->n++;
}

static void run_free(struct run *r)
{
	free(r->bytes);
	free(r->lens);
	free(r->trunc);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init("intake");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run whole = { 0 }, split = { 0 };
	struct intake_tcp *f;
	size_t msg_max, pend_whole, pend_split, t;
	uint32_t seed;
	err_t e_whole, e_split = ERR_OK;
	const uint8_t *s;
	size_t n;

	if (size < 2)
		return 0;
	msg_max = data[0] < 250 ? (size_t)data[0] + 1
		: data[0] < 253 ? 2048 : 65536;
	seed = data[1] * 2654435761u + 1;
	s = data + 2;
	n = size - 2;

	/* UDP: one datagram. */
	t = intake_trim((const char *)s, n);
	FZ_CHECK(t <= n);
	for (size_t i = t; i < n; i++)
		FZ_CHECK(s[i] == '\n' || s[i] == '\r' || s[i] == '\0');
	FZ_CHECK(t == 0 || (s[t - 1] != '\n' && s[t - 1] != '\r' &&
			    s[t - 1] != '\0'));
	FZ_CHECK((int)intake_classify((const char *)s, n) < INTAKE_KINDS);
	FZ_CHECK(intake_kind_name(intake_classify((const char *)s, t)));
	FZ_CHECK(intake_classify(NULL, 0) == INTAKE_MALFORMED);

	/* TCP: whole, then in chunks. */
	whole.msg_max = split.msg_max = msg_max;
	f = intake_tcp_new(msg_max);
	FZ_CHECK(f);
	e_whole = intake_tcp_feed(f, s, n, on_msg, &whole);
	pend_whole = intake_tcp_pending(f);
	FZ_CHECK(e_whole == ERR_OK || e_whole == ERR_PROTO);
	if (e_whole == ERR_PROTO)
		FZ_CHECK(intake_tcp_feed(f, s, n, on_msg, &whole) ==
			 ERR_PROTO);
	intake_tcp_free(f);

	f = intake_tcp_new(msg_max);
	FZ_CHECK(f);
	for (size_t off = 0; off <= n && e_split == ERR_OK;) {
		size_t c;

		seed ^= seed << 13;
		seed ^= seed >> 17;
		seed ^= seed << 5;
		c = seed % 65;		/* 0..64: empty feeds too */
		if (c > n - off)
			c = n - off;
		e_split = intake_tcp_feed(f, s + off, c, on_msg, &split);
		off += c;
		if (off == n)
			break;
	}
	pend_split = intake_tcp_pending(f);
	intake_tcp_free(f);

	if (e_whole != e_split || whole.n != split.n ||
	    whole.len != split.len || pend_whole != pend_split) {
		fprintf(stderr, "whole: err %d, %zu msgs, %zu bytes, pending "
			"%zu; split: err %d, %zu msgs, %zu bytes, pending "
			"%zu\n", e_whole, whole.n, whole.len, pend_whole,
			e_split, split.n, split.len, pend_split);
		FZ_CHECK(!"split stream framed differently");
	}
	FZ_CHECK(whole.n == 0 || !memcmp(whole.lens, split.lens,
					 whole.n * sizeof(size_t)));
	FZ_CHECK(whole.n == 0 || !memcmp(whole.trunc, split.trunc,
					 whole.n * sizeof(bool)));
	FZ_CHECK(whole.len == 0 || !memcmp(whole.bytes, split.bytes,
					   whole.len));
	run_free(&whole);
	run_free(&split);
	return 0;
}
