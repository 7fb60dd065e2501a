/*
 * test_backoff — bounds, jitter spread and the grace reset of the reconnect
 * back-off, with a deterministic random source.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

/* xorshift32: a fixed, well-spread sequence. */
static uint32_t rnd_xs(void *arg)
{
	uint32_t *s = arg;

	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static uint32_t rnd_max(void *arg) { (void)arg; return UINT32_MAX; }
static uint32_t rnd_zero(void *arg) { (void)arg; return 0; }

static void test_rejects_bad_parameters(void **state)
{
	uint32_t s = 1;

	(void)state;
	assert_null(backoff_new(0, 10, 0, false, rnd_xs, &s));
	assert_null(backoff_new(10, 5, 0, false, rnd_xs, &s));
	assert_null(backoff_new(10, 1ull << 31, 0, false, rnd_xs, &s));
	assert_null(backoff_new(10, 20, 0, false, NULL, NULL));
}

static void test_ceiling_doubles_then_caps(void **state)
{
	uint32_t s = 1;
	struct backoff *b = backoff_new(100, 1000, 0, false, rnd_xs, &s);
	const uint64_t want[] = { 100, 200, 400, 800, 1000, 1000, 1000 };

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(backoff_ceiling(b), want[i]);
		(void)backoff_next(b);
	}
	/* Many failures later the ceiling is still the cap (no overflow). */
	for (int i = 0; i < 200; i++)
		(void)backoff_next(b);
	assert_int_equal(backoff_ceiling(b), 1000);
	backoff_free(b);
}

static void test_delay_within_zero_and_ceiling(void **state)
{
	struct backoff *hi = backoff_new(100, 300000, 0, false, rnd_max, NULL);
	struct backoff *lo = backoff_new(100, 300000, 0, false, rnd_zero, NULL);

	(void)state;
	for (int i = 0; i < 40; i++) {
		uint64_t ceil = backoff_ceiling(hi);
		uint64_t d = backoff_next(hi);

		/* The extreme random value lands at the ceiling, never above. */
		assert_true(d <= ceil);
		assert_true(d + 1 >= ceil);
		assert_int_equal(backoff_next(lo), 0);
	}
	backoff_free(hi);
	backoff_free(lo);
}

/* Full jitter: delays at a fixed ceiling spread evenly over [0, ceiling]. */
static void test_jitter_spreads_uniformly(void **state)
{
	uint32_t s = 2463534242u;
	struct backoff *b = backoff_new(1000, 1000, 0, false, rnd_xs, &s);
	unsigned buckets[10] = { 0 };
	const unsigned n = 20000;

	(void)state;
	for (unsigned i = 0; i < n; i++) {
		uint64_t d = backoff_next(b);

		assert_true(d <= 1000);
		buckets[d >= 1000 ? 9 : d / 100]++;
	}
	for (int i = 0; i < 10; i++) {
		/* Each tenth of the window gets 10% +- 1.5%. */
		assert_true(buckets[i] > n / 10 - n * 15 / 1000);
		assert_true(buckets[i] < n / 10 + n * 15 / 1000);
	}
	backoff_free(b);
}

/* With a floor (the auth back-off) no delay is shorter than min. */
static void test_floor_keeps_min(void **state)
{
	struct backoff *lo = backoff_new(300000, 3600000, 0, true, rnd_zero, NULL);
	struct backoff *hi = backoff_new(300000, 3600000, 0, true, rnd_max, NULL);
	uint32_t s = 99;
	struct backoff *b = backoff_new(300000, 3600000, 0, true, rnd_xs, &s);

	(void)state;
	assert_int_equal(backoff_next(lo), 300000);
	assert_true(backoff_next(hi) + 1 >= 300000);
	for (int i = 0; i < 1000; i++) {
		uint64_t ceil = backoff_ceiling(b);
		uint64_t d = backoff_next(b);

		assert_true(d >= 300000 && d <= ceil);
	}
	backoff_free(lo);
	backoff_free(hi);
	backoff_free(b);
}

static void test_grace_resets_only_after_long_enough_up(void **state)
{
	uint32_t s = 7;
	struct backoff *b = backoff_new(100, 10000, 5000, false, rnd_xs, &s);

	(void)state;
	for (int i = 0; i < 4; i++)
		(void)backoff_next(b);
	assert_int_equal(backoff_failures(b), 4);

	/* Up for less than the grace period: the count stays. */
	backoff_up(b, 1000);
	backoff_down(b, 5999);
	assert_int_equal(backoff_failures(b), 4);
	assert_int_equal(backoff_ceiling(b), 1600);

	/* Up for exactly the grace period: reset. */
	backoff_up(b, 10000);
	backoff_down(b, 15000);
	assert_int_equal(backoff_failures(b), 0);
	assert_int_equal(backoff_ceiling(b), 100);

	/* Down without having been up changes nothing. */
	(void)backoff_next(b);
	backoff_down(b, 99999);
	assert_int_equal(backoff_failures(b), 1);
	backoff_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rejects_bad_parameters),
		cmocka_unit_test(test_ceiling_doubles_then_caps),
		cmocka_unit_test(test_delay_within_zero_and_ceiling),
		cmocka_unit_test(test_jitter_spreads_uniformly),
		cmocka_unit_test(test_floor_keeps_min),
		cmocka_unit_test(test_grace_resets_only_after_long_enough_up),
	};
	return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
