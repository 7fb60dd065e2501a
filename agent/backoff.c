/* backoff — exponential back-off with full jitter and a grace reset. */
#include <stdbool.h>
#include <stdlib.h>

#include "backoff.h"

struct backoff {
	uint64_t min_ms, max_ms, grace_ms;
	bool floor;
	uint32_t (*rnd)(void *);
	void *rnd_arg;
	unsigned failures;
	bool up;
	uint64_t up_since;
};

struct backoff *backoff_new(uint64_t min_ms, uint64_t max_ms, uint64_t grace_ms,
			    bool floor, uint32_t (*rnd)(void *), void *rnd_arg)
{
	struct backoff *b;

	if (min_ms == 0 || max_ms < min_ms || max_ms >= (1ull << 31) || !rnd)
		return NULL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->min_ms = min_ms;
	b->max_ms = max_ms;
	b->grace_ms = grace_ms;
	b->floor = floor;
	b->rnd = rnd;
	b->rnd_arg = rnd_arg;
	return b;
}

void backoff_free(struct backoff *b) { free(b); }

uint64_t backoff_ceiling(const struct backoff *b)
{
	uint64_t c = b->min_ms;

	/* Doubling stops at max, so this cannot overflow. */
	for (unsigned i = 0; i < b->failures && c < b->max_ms; i++)
		c *= 2;
	return c < b->max_ms ? c : b->max_ms;
}

uint64_t backoff_next(struct backoff *b)
{
	uint64_t ceil = backoff_ceiling(b);
	uint64_t base = b->floor ? b->min_ms : 0;
	/* A 32-bit random times the ceiling (< 2^31, checked in _new) fits
	 * 64 bits; scaled down it is uniform over [0, ceil] with no modulo
	 * bias, and needs no 128-bit type on 32-bit ARM. */
	uint64_t r = b->rnd(b->rnd_arg);
	uint64_t d = base + ((r * (ceil - base + 1)) >> 32);

	if (b->failures < 64)
		b->failures++;
	return d;
}

void backoff_up(struct backoff *b, uint64_t now_ms)
{
	b->up = true;
	b->up_since = now_ms;
}

void backoff_down(struct backoff *b, uint64_t now_ms)
{
	if (b->up && now_ms >= b->up_since &&
	    now_ms - b->up_since >= b->grace_ms)
		b->failures = 0;
	b->up = false;
}

void backoff_reset(struct backoff *b) { b->failures = 0; b->up = false; }
unsigned backoff_failures(const struct backoff *b) { return b->failures; }
