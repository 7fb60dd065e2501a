/*
 * storm — the reconnect storm, simulated: AGENTS agents lose COM at the same
 * moment (a COM restart), COM is down for DOWN seconds, then accepts at most
 * CAP new links a second (its TLS handshake capacity; an attempt beyond
 * that fails and backs off like any other). Each agent's delays come from
 * the agent's own back-off code (agent/backoff.c, linked in, defaults
 * retry_min 1 s, retry_max 5 min, full jitter) or, for comparison, from a
 * plain exponential back-off without jitter (min * 2^n, capped at max).
 *
 * Prints one JSON object: for each policy the peak and the 99th percentile
 * of attempts per second at COM over the HORIZON seconds after the loss,
 * the peak once COM is back (what a recovering COM has to absorb), the
 * attempts in all, and when the last agent was back (or null).
 *
 *   build/bench/storm [AGENTS DOWN_S CAP HORIZON_S SEED]
 *       defaults: 3000 30 100 600 1
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"

#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS (5 * 60 * 1000)

struct agent {
	uint64_t at;		/* next attempt, ms after the loss */
	unsigned failures;	/* for the plain policy */
	struct backoff *bo;	/* for the agent's own policy */
};

/* A binary heap of agent indexes by their next attempt. */
struct heap {
	uint32_t *v;
	size_t n;
	struct agent *a;
};

static void heap_swap(struct heap *h, size_t i, size_t j)
{
	uint32_t t = h->v[i];

	h->v[i] = h->v[j];
	h->v[j] = t;
}

static bool earlier(const struct heap *h, size_t i, size_t j)
{
	return h->a[h->v[i]].at < h->a[h->v[j]].at;
}

static void heap_push(struct heap *h, uint32_t k)
{
	size_t i = h->n++;

	h->v[i] = k;
	while (i > 0 && earlier(h, i, (i - 1) / 2)) {
		heap_swap(h, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static uint32_t heap_pop(struct heap *h)
{
	uint32_t top = h->v[0];
	size_t i = 0;

	h->v[0] = h->v[--h->n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < h->n && earlier(h, l, m))
			m = l;
		if (r < h->n && earlier(h, r, m))
			m = r;
		if (m == i)
			break;
		heap_swap(h, i, m);
		i = m;
	}
	return top;
}

/* xorshift64*: a seeded, repeatable source for the jitter. */
static uint32_t rnd(void *arg)
{
	uint64_t *s = arg;

	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return (uint32_t)((*s * 2685821657736338717ull) >> 32);
}

static uint64_t plain_next(struct agent *a)
{
	uint64_t d = RETRY_MIN_MS;

	for (unsigned i = 0; i < a->failures && d < RETRY_MAX_MS; i++)
		d *= 2;
	if (a->failures < 64)
		a->failures++;
	return d < RETRY_MAX_MS ? d : RETRY_MAX_MS;
}

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;

	return a < b ? -1 : a > b;
}

static int run(const char *name, bool jitter, unsigned agents,
	       unsigned down_s, unsigned cap, unsigned horizon_s,
	       uint64_t seed, bool last)
{
	struct agent *a = calloc(agents, sizeof(*a));
	uint32_t *per_s = calloc(horizon_s, sizeof(*per_s));
	uint32_t *sorted = calloc(horizon_s, sizeof(*sorted));
	uint32_t *accepted = calloc(horizon_s, sizeof(*accepted));
	struct heap h = { calloc(agents, sizeof(uint32_t)), 0, a };
	uint64_t total = 0, back_at = 0, rs = seed;
	unsigned up = 0, peak = 0, peak_up = 0;
	int rc = 1;

	if (!a || !per_s || !sorted || !accepted || !h.v)
		goto out;
	for (uint32_t i = 0; i < agents; i++) {
		if (jitter) {
			a[i].bo = backoff_new(RETRY_MIN_MS, RETRY_MAX_MS, 60000,
					      false, rnd, &rs);
			if (!a[i].bo)
				goto out;
			a[i].at = backoff_next(a[i].bo);
		} else {
			a[i].at = plain_next(&a[i]);
		}
		heap_push(&h, i);
	}
	while (h.n > 0) {
		uint32_t k = heap_pop(&h);
		uint64_t s = a[k].at / 1000;

		if (s >= horizon_s)
			break;
		per_s[s]++;
		total++;
		if (s >= down_s && accepted[s] < cap) {
			accepted[s]++;
			if (++up == agents)
				back_at = a[k].at;
			continue;
		}
		a[k].at += jitter ? backoff_next(a[k].bo) : plain_next(&a[k]);
		heap_push(&h, k);
	}
	for (unsigned i = down_s; i < horizon_s; i++)
		if (per_s[i] > peak_up)
			peak_up = per_s[i];
	memcpy(sorted, per_s, horizon_s * sizeof(*sorted));
	qsort(sorted, horizon_s, sizeof(*sorted), cmp_u32);
	peak = sorted[horizon_s - 1];
	printf("  \"%s\": {\"peak_per_s\": %u, \"p99_per_s\": %u, "
	       "\"peak_after_com_up_per_s\": %u, "
	       "\"attempts\": %" PRIu64 ", \"connected\": %u, ",
	       name, peak, sorted[(horizon_s * 99) / 100], peak_up, total, up);
	if (up == agents)
		printf("\"all_back_s\": %.1f}%s\n", (double)back_at / 1000,
		       last ? "" : ",");
	else
		printf("\"all_back_s\": null}%s\n", last ? "" : ",");
	rc = 0;
out:
	for (uint32_t i = 0; a && i < agents; i++)
		backoff_free(a[i].bo);
	free(a);
	free(per_s);
	free(sorted);
	free(accepted);
	free(h.v);
	return rc;
}

static unsigned arg(int argc, char **argv, int i, unsigned def, unsigned lo,
		    unsigned hi)
{
	char *end;
	unsigned long v;

	if (argc <= i)
		return def;
	v = strtoul(argv[i], &end, 10);
	if (*end || end == argv[i] || v < lo || v > hi) {
		fprintf(stderr, "storm: argument %d must be %u..%u\n", i, lo,
			hi);
		exit(2);
	}
	return (unsigned)v;
}

int main(int argc, char **argv)
{
	unsigned agents = arg(argc, argv, 1, 3000, 1, 1000000);
	unsigned down_s = arg(argc, argv, 2, 30, 0, 3600);
	unsigned cap = arg(argc, argv, 3, 100, 1, 1000000);
	unsigned horizon_s = arg(argc, argv, 4, 600, 10, 86400);
	unsigned seed = arg(argc, argv, 5, 1, 1, 0xffffffffu);

	printf("{\"agents\": %u, \"com_down_s\": %u, \"com_accepts_per_s\": %u, "
	       "\"horizon_s\": %u,\n", agents, down_s, cap, horizon_s);
	if (run("comagent", true, agents, down_s, cap, horizon_s, seed,
		false) ||
	    run("plain_exponential", false, agents, down_s, cap, horizon_s,
		seed, true)) {
		fprintf(stderr, "storm: out of memory\n");
		return 1;
	}
	printf("}\n");
	return 0;
}
