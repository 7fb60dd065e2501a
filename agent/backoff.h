/*
 * backoff — reconnect delays: exponential back-off with full jitter.
 *
 * delay = random(0, min(max, min * 2^n)), where n counts failures since the
 * last link that stayed up for at least `grace`. Full jitter (rather than
 * "equal" or none) is what spreads 3000 agents after a COM restart over the
 * whole window instead of in waves. With a floor the delay is
 * random(min, ceiling) instead: after COM refused the credentials, a retry
 * a moment later would only help lock the service user. The random source
 * is injected so tests can check bounds and spread deterministically.
 */
#ifndef COMAGENT_BACKOFF_H
#define COMAGENT_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

struct backoff;

/* rnd returns a uniformly distributed 32-bit value. min_ms <= max_ms. */
struct backoff *backoff_new(uint64_t min_ms, uint64_t max_ms, uint64_t grace_ms,
			    bool floor, uint32_t (*rnd)(void *), void *rnd_arg);
void backoff_free(struct backoff *b);

/* The delay before the next attempt; counts one more failure. */
uint64_t backoff_next(struct backoff *b);
/* The current ceiling (before jitter) for the next delay. */
uint64_t backoff_ceiling(const struct backoff *b);
/* The link came up at now_ms / went down at now_ms. Going down after being
 * up for at least grace resets the failure count. */
void backoff_up(struct backoff *b, uint64_t now_ms);
void backoff_down(struct backoff *b, uint64_t now_ms);
void backoff_reset(struct backoff *b);
unsigned backoff_failures(const struct backoff *b);

#endif
