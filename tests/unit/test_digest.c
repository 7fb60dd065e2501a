/*
 * test_digest — unit tests of agent/digest.c: the FIPS 180-2 vectors, in
 * one piece and byte by byte; finishing, re-reading and resetting; files
 * across the 64 KiB read size (1 MiB + 1 byte) against one-shot hashing by
 * mbedTLS itself; a limit shorter and longer than the file; a missing file
 * and a directory with their exact log lines; the hex check.
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

#include <mbedtls/sha256.h>

#include "digest.h"
#include "log.h"
#include "testutil.h"

#define EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define ABC   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define ABC56 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define TEXT56 "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"

#define BIG (1024 * 1024 + 1)

static char dir[64], path[128];

static void logged_is(const char *expected)
{
	logged_is_at(expected, path);
}

static int setup(void **state)
{
	(void)state;
	if (test_dir_setup("digest", dir, sizeof(dir)))
		return -1;
	snprintf(path, sizeof(path), "%s/file", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return test_dir_teardown(dir);
}

/* A pattern that differs at every offset of a chunk and between chunks. */
static unsigned char *pattern(size_t n)
{
	unsigned char *b = malloc(n);

	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((i * 7 + (i >> 16) * 13) & 0xff);
	return b;
}

static void put(const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* The reference: mbedTLS's one-shot call, as hex. */
static const char *oneshot(const void *data, size_t len)
{
	static char hex[65];
	unsigned char h[32];

	assert_int_equal(mbedtls_sha256_ret(data, len, h, 0), 0);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	return hex;
}

static void test_vectors(void **state)
{
	struct digest *d = digest_new();
	char hex[65];

	(void)state;
	assert_non_null(d);
	digest_hex(d, hex);
	assert_string_equal(hex, EMPTY);

	digest_reset(d);
	assert_int_equal(digest_update(d, "abc", 3), ERR_OK);
	digest_hex(d, hex);
	assert_string_equal(hex, ABC);

	/* Byte by byte, with empty updates in between. */
	digest_reset(d);
	for (size_t i = 0; i < strlen(TEXT56); i++) {
		assert_int_equal(digest_update(d, TEXT56 + i, 1), ERR_OK);
		assert_int_equal(digest_update(d, NULL, 0), ERR_OK);
	}
	digest_hex(d, hex);
	assert_string_equal(hex, ABC56);
	logged_is("");
	digest_free(d);
	digest_free(NULL);
}

static void test_finish_and_reset(void **state)
{
	struct digest *d = digest_new();
	char hex[65];

	(void)state;
	assert_int_equal(digest_update(d, "ab", 2), ERR_OK);
	assert_int_equal(digest_update(d, "c", 1), ERR_OK);
	digest_hex(d, hex);
	assert_string_equal(hex, ABC);
	/* Asking again gives the same; adding more is refused. */
	memset(hex, 'x', sizeof(hex));
	digest_hex(d, hex);
	assert_string_equal(hex, ABC);
	assert_int_equal(digest_update(d, "d", 1), ERR_STATE);
	digest_hex(d, hex);
	assert_string_equal(hex, ABC);
	logged_is("error digest: digest_update after digest_hex (reset first)\n");

	digest_reset(d);
	digest_hex(d, hex);
	assert_string_equal(hex, EMPTY);
	digest_reset(d);
	assert_int_equal(digest_update(d, "abc", 3), ERR_OK);
	digest_hex(d, hex);
	assert_string_equal(hex, ABC);
	logged_is("");
	digest_free(d);
}

static void test_bad_arguments(void **state)
{
	struct digest *d = digest_new();
	char hex[65] = "x";

	(void)state;
	assert_int_equal(digest_update(NULL, "a", 1), ERR_INVAL);
	assert_int_equal(digest_update(d, NULL, 1), ERR_INVAL);
	digest_hex(NULL, hex);
	assert_string_equal(hex, "");
	digest_reset(NULL);
	/* The failed calls did not touch the digest. */
	digest_hex(d, hex);
	assert_string_equal(hex, EMPTY);
	logged_is("error digest: digest_update: no digest or no data\n"
		  "error digest: digest_update: no digest or no data\n");
	digest_free(d);
}

static void test_file_whole(void **state)
{
	unsigned char *b = pattern(BIG);
	struct digest *d = digest_new();
	char hex[65], one[65];
	uint64_t n = 7;

	(void)state;
	put(b, BIG);
	snprintf(one, sizeof(one), "%s", oneshot(b, BIG));
	assert_int_equal(digest_file(path, UINT64_MAX, hex, &n), ERR_OK);
	assert_string_equal(hex, one);
	assert_true(n == BIG);

	/* The same bytes through digest_update in one piece. */
	assert_int_equal(digest_update(d, b, BIG), ERR_OK);
	digest_hex(d, hex);
	assert_string_equal(hex, one);

	/* A limit beyond the end hashes what there is; bytes may be NULL. */
	assert_int_equal(digest_file(path, BIG + 1000, hex, NULL), ERR_OK);
	assert_string_equal(hex, one);
	assert_int_equal(digest_file(path, BIG, hex, &n), ERR_OK);
	assert_string_equal(hex, one);
	assert_true(n == BIG);
	logged_is("");
	digest_free(d);
	free(b);
}

static void test_file_limit(void **state)
{
	static const uint64_t limits[] = {
		0, 1, 1000, DIGEST_CHUNK - 1, DIGEST_CHUNK, DIGEST_CHUNK + 1,
		3 * DIGEST_CHUNK + 5, BIG - 1,
	};
	unsigned char *b = pattern(BIG);
	char hex[65];
	uint64_t n;

	(void)state;
	put(b, BIG);
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		n = 12345;
		assert_int_equal(digest_file(path, limits[i], hex, &n), ERR_OK);
		assert_string_equal(hex, oneshot(b, (size_t)limits[i]));
		assert_true(n == limits[i]);
	}
	assert_int_equal(digest_file(path, 0, hex, &n), ERR_OK);
	assert_string_equal(hex, EMPTY);

	/* An empty file. */
	put("", 0);
	assert_int_equal(digest_file(path, UINT64_MAX, hex, &n), ERR_OK);
	assert_string_equal(hex, EMPTY);
	assert_true(n == 0);
	put("abc", 3);
	assert_int_equal(digest_file(path, UINT64_MAX, hex, &n), ERR_OK);
	assert_string_equal(hex, ABC);
	assert_true(n == 3);
	logged_is("");
	free(b);
}

static void test_file_missing(void **state)
{
	char hex[65] = "x";
	uint64_t n = 9;

	(void)state;
	assert_int_equal(digest_file(path, UINT64_MAX, hex, &n), ERR_NOTFOUND);
	assert_string_equal(hex, "");
	assert_true(n == 0);
	logged_is("error digest: $: cannot open: No such file or directory\n");

	/* A directory is not a file to hash. */
	assert_int_equal(mkdir(path, 0700), 0);
	n = 9;
	assert_int_equal(digest_file(path, UINT64_MAX, hex, &n), ERR_IO);
	assert_string_equal(hex, "");
	assert_true(n == 0);
	logged_is("error digest: $: not a regular file\n");

	assert_int_equal(digest_file(NULL, UINT64_MAX, hex, &n), ERR_INVAL);
	logged_is("error digest: digest_file: no path\n");
}

static void test_hex_valid(void **state)
{
	char s[80];

	(void)state;
	assert_true(digest_hex_valid(EMPTY));
	assert_true(digest_hex_valid(ABC));
	assert_true(digest_hex_valid("0123456789abcdef0123456789abcdef"
				     "0123456789abcdef0123456789abcdef"));
	assert_false(digest_hex_valid(NULL));
	assert_false(digest_hex_valid(""));
	/* Upper case, one digit short or over, a non-hex letter. */
	assert_false(digest_hex_valid("E3b0c44298fc1c149afbf4c8996fb92427ae41e4"
				      "649b934ca495991b7852b855"));
	snprintf(s, sizeof(s), "%.63s", EMPTY);
	assert_false(digest_hex_valid(s));
	snprintf(s, sizeof(s), "%s0", EMPTY);
	assert_false(digest_hex_valid(s));
	snprintf(s, sizeof(s), "%s", EMPTY);
	s[10] = 'g';
	assert_false(digest_hex_valid(s));
	s[10] = ' ';
	assert_false(digest_hex_valid(s));
	snprintf(s, sizeof(s), " %.63s", EMPTY);
	assert_false(digest_hex_valid(s));
	logged_is("");
}

/* Slices of any size give digest_file()'s result; a limit stops it; the
 * reader hashes into a digest that already holds bytes. */
static void test_reader_slices(void **state)
{
	static const uint64_t steps[] = { 1, 1000, DIGEST_CHUNK,
					  DIGEST_CHUNK + 3, BIG };
	unsigned char *b = pattern(BIG);
	struct digest *d = digest_new();
	struct digest_reader *r;
	char hex[65];
	bool done;
	unsigned calls;

	(void)state;
	put(b, BIG);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		digest_reset(d);
		assert_int_equal(digest_reader_open(path, UINT64_MAX, d, &r),
				 ERR_OK);
		calls = 0;
		do {
			assert_int_equal(digest_reader_step(r, steps[i], &done),
					 ERR_OK);
			calls++;
			assert_true(done || digest_reader_bytes(r) ==
				    calls * steps[i]);
		} while (!done);
		assert_true(digest_reader_bytes(r) == BIG);
		digest_hex(d, hex);
		assert_string_equal(hex, oneshot(b, BIG));
		digest_reader_free(r);
	}
	/* a limit, and a digest with the first bytes in it already */
	digest_reset(d);
	assert_int_equal(digest_update(d, b, 10), ERR_OK);
	assert_int_equal(digest_reader_open(path, 5000, d, &r), ERR_OK);
	assert_int_equal(digest_reader_step(r, 4000, &done), ERR_OK);
	assert_false(done);
	assert_int_equal(digest_reader_step(r, 4000, &done), ERR_OK);
	assert_true(done && digest_reader_bytes(r) == 5000);
	digest_reader_free(r);
	digest_hex(d, hex);
	{
		unsigned char *c = malloc(5010);

		assert_non_null(c);
		memcpy(c, b, 10);
		memcpy(c + 10, b, 5000);
		assert_string_equal(hex, oneshot(c, 5010));
		free(c);
	}
	/* a missing file: as digest_file */
	assert_int_equal(digest_reader_open("/nonexistent/x", UINT64_MAX, d,
					    &r), ERR_NOTFOUND);
	assert_null(r);
	digest_free(d);
	free(b);
	logged_is("error digest: /nonexistent/x: cannot open: No such file or directory\n");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_vectors),
		T(test_finish_and_reset),
		T(test_bad_arguments),
		T(test_file_whole),
		T(test_file_limit),
		T(test_file_missing),
		T(test_hex_valid),
		T(test_reader_slices),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
