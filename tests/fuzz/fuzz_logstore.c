/*
 * fuzz_logstore — libFuzzer harness for agent/logstore.c's manifest
 * reader: the input is written as the store's `manifest` file ("name size
 * sha256 uploaded" per line), next to two small .gz files the lines can
 * name, and logstore_open() loads the store (damaged lines logged and
 * skipped, files missing from it hashed again). Checks: the store opens;
 * exactly the two .gz files are listed, in name order, each with its true
 * size and a 64-hex sha256; logstore_mark_uploaded() then works, and the
 * manifest the store rewrote loads again with the same list, hashes and
 * uploaded flags.
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "fuzz_common.h"
#include "logstore.h"

static char dir[512], man[512];

/* gzip of "hello\n" and of "" (26 and 20 bytes). */
static const uint8_t gz1[] = {
	0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48,
	0xcd, 0xc9, 0xc9, 0xe7, 0x02, 0x00, 0x20, 0x30, 0x3a, 0x36, 0x06, 0x00,
	0x00, 0x00,
};
static const uint8_t gz2[] = {
	0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x03, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};
#define NAME1 "log-20261201-001.log.gz"
#define NAME2 "log-20261201-002.log.gz"
#define NOW 1795431066	/* 2026-11-23 */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init("logstore");
	snprintf(dir, sizeof(dir), "%s", fz_path("store"));
	snprintf(man, sizeof(man), "%s/manifest", dir);
	return 0;
}

static void check_list(struct logstore *s, struct logstore_file out[2])
{
	static const char *const names[2] = { NAME1, NAME2 };
	static const uint64_t sizes[2] = { sizeof(gz1), sizeof(gz2) };

	FZ_CHECK(logstore_count(s) == 2);
	FZ_CHECK(logstore_at(s, 2) == NULL);
	for (size_t i = 0; i < 2; i++) {
		const struct logstore_file *f = logstore_at(s, i);

		FZ_CHECK(f && !strcmp(f->name, names[i]));
		FZ_CHECK(f->size == sizes[i]);
		FZ_CHECK(strlen(f->sha256) == 64);
		FZ_CHECK(!strcmp(f->day, "2026-12-01"));
		out[i] = *f;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct logstore_cfg cfg = {
		.dir = dir,
		.max_total = 1 << 20,
		.max_day = 0,
		.file_max = 64 * 1024,
		.msg_max = 2048,
	};
	struct logstore_file a[2], b[2];
	struct logstore *s = NULL;
	err_t e;

	if (size > 256 * 1024)
		return 0;
	fz_empty(fz_dir);
	FZ_CHECK(mkdir(dir, 0700) == 0);
	fz_write(man, data, size, 0600);
	fz_write(fz_path("store/" NAME1), gz1, sizeof(gz1), 0600);
	fz_write(fz_path("store/" NAME2), gz2, sizeof(gz2), 0600);

	e = logstore_open(&cfg, NOW, &s);
	FZ_CHECK(e == ERR_OK && s != NULL);
	check_list(s, a);
	FZ_CHECK(logstore_mark_uploaded(s, NAME2) == ERR_OK);
	FZ_CHECK(logstore_mark_uploaded(s, "log-20261201-003.log.gz") ==
		 ERR_NOTFOUND);
	logstore_flush(s);
	logstore_free(s);
	a[1].uploaded = true;

	s = NULL;
	e = logstore_open(&cfg, NOW, &s);
	FZ_CHECK(e == ERR_OK && s != NULL);
	check_list(s, b);
	for (size_t i = 0; i < 2; i++) {
		FZ_CHECK(!strcmp(a[i].sha256, b[i].sha256));
		FZ_CHECK(a[i].uploaded == b[i].uploaded);
	}
	logstore_free(s);
	fz_empty(fz_dir);
	return 0;
}
