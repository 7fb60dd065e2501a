/*
 * test_customtar — extraction of hostile custom-files tars. Every tar is
 * built at test time with libarchive's writer, so members can be crafted
 * that no honest tar tool would produce; each refusal must name the member
 * and leave the staging directory exactly as it was.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/sysmacros.h>

#include "customtar.h"
#include "log.h"
#include "testutil.h"

#define MIB (1024ull * 1024ull)

struct mem {
	const char *name;
	mode_t type;		/* 0: regular file */
	int64_t size;		/* -1: strlen(data) */
	const char *data;	/* NULL: no data written (padding only) */
	const char *symlink;
	const char *hardlink;
};

struct fx {
	char dir[64];
	char dest[96];
	char tar[96];
};

static const struct customtar_limits LIM = {
	.max_members = 1000, .max_total = 64 * MIB, .max_file = 10 * MIB,
	.max_tar = 10 * MIB,
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || test_dir_setup("customtar", f->dir, sizeof(f->dir)) != 0)
		return -1;
	snprintf(f->dest, sizeof(f->dest), "%s/dest", f->dir);
	snprintf(f->tar, sizeof(f->tar), "%s/in.tar", f->dir);
	if (mkdir(f->dest, 0755) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	test_dir_teardown(f->dir);
	free(f);
	return 0;
}

static void make_tar(const char *path, const struct mem *m, size_t n,
		     bool gzip)
{
	struct archive *a = archive_write_new();

	assert_non_null(a);
	assert_int_equal(archive_write_set_format_pax_restricted(a),
			 ARCHIVE_OK);
	if (gzip)
		assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *e = archive_entry_new();
		int64_t size = m[i].size >= 0 ? m[i].size :
			(m[i].data ? (int64_t)strlen(m[i].data) : 0);

		archive_entry_set_pathname(e, m[i].name);
		archive_entry_set_filetype(e, m[i].type ? m[i].type : AE_IFREG);
		archive_entry_set_perm(e, 0644);
		if (m[i].type == AE_IFCHR)
			archive_entry_set_rdev(e, makedev(1, 3));
		if (m[i].symlink)
			archive_entry_set_symlink(e, m[i].symlink);
		if (m[i].hardlink)
			archive_entry_set_hardlink(e, m[i].hardlink);
		if (m[i].type == 0 && !m[i].hardlink)
			archive_entry_set_size(e, size);
		assert_true(archive_write_header(a, e) >= ARCHIVE_WARN);
		if (m[i].data && size > 0)
			assert_int_equal(archive_write_data(a, m[i].data,
							    strlen(m[i].data)),
					 (la_ssize_t)strlen(m[i].data));
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

static const char *slurp(const char *path)
{
	static char buf[256];
	int fd = open(path, O_RDONLY | O_NOFOLLOW);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n >= 0);
	buf[n] = '\0';
	close(fd);
	return buf;
}

/* Builds the tar, extracts it, expects refusal with why containing want,
 * and dest_dir's listing unchanged. */
static void refused_lim(struct fx *f, const struct mem *m, size_t n,
			const struct customtar_limits *lim, err_t err,
			const char *want)
{
	struct customtar_result res;
	char why[256], before[1024];

	make_tar(f->tar, m, n, false);
	snprintf(before, sizeof(before), "%s", dir_entries(f->dest));
	assert_int_equal(customtar_extract(f->tar, f->dest, lim, &res, why,
					   sizeof(why)), err);
	if (!strstr(why, want))
		fail_msg("why '%s' lacks '%s'", why, want);
	assert_string_equal(dir_entries(f->dest), before);
	assert_int_equal(res.files, 0);
	assert_int_equal(res.bytes, 0);
}

static void refused(struct fx *f, const struct mem *m, size_t n,
		    const char *want)
{
	refused_lim(f, m, n, &LIM, ERR_INVAL, want);
}

#define N(x) (sizeof(x) / sizeof((x)[0]))
/* A good member first, so each refusal also proves the undo. */
#define OK_FIRST { "ok.txt", 0, -1, "fine", NULL, NULL }

static void test_good_tar(void **state)
{
	struct fx *f = *state;
	const struct mem m[] = {
		{ "46xxspecials.txt", 0, -1, "SET X 1\n", NULL, NULL },
		{ "./logo.png", 0, -1, "PNG", NULL, NULL },
		{ "t.xml", 0, -1, "<a/>", NULL, NULL },
		{ "empty.cfg", 0, -1, "", NULL, NULL },
	};
	struct customtar_result res;
	char why[256], p[160];

	make_tar(f->tar, m, N(m), false);
	assert_int_equal(customtar_extract(f->tar, f->dest, &LIM, &res, why,
					   sizeof(why)), ERR_OK);
	assert_string_equal(why, "");
	assert_int_equal(res.files, 4);
	assert_int_equal(res.bytes, 8 + 3 + 4);
	assert_int_equal(res.warnings, 1);
	assert_string_equal(res.warning[0],
		"member 'empty.cfg': not a phone file or template type");
	assert_string_equal(dir_entries(f->dest),
			    "46xxspecials.txt empty.cfg logo.png t.xml ");
	snprintf(p, sizeof(p), "%s/46xxspecials.txt", f->dest);
	assert_string_equal(slurp(p), "SET X 1\n");
	snprintf(p, sizeof(p), "%s/logo.png", f->dest);
	assert_string_equal(slurp(p), "PNG");
	snprintf(p, sizeof(p), "%s/empty.cfg", f->dest);
	assert_string_equal(slurp(p), "");
}

static void test_warnings_for_odd_names(void **state)
{
	struct fx *f = *state;
	const struct mem m[] = {
		{ "a.TXT", 0, -1, "x", NULL, NULL },
		{ "readme.doc", 0, -1, "x", NULL, NULL },
		{ "run.sh", 0, -1, "x", NULL, NULL },
		{ "Photo.JPEG", 0, -1, "x", NULL, NULL },
		{ "noext", 0, -1, "x", NULL, NULL },
	};
	struct customtar_result res;
	char why[256];

	make_tar(f->tar, m, N(m), false);
	assert_int_equal(customtar_extract(f->tar, f->dest, &LIM, &res, why,
					   sizeof(why)), ERR_OK);
	assert_int_equal(res.files, 5);
	assert_int_equal(res.warnings, 4);
	assert_string_equal(res.warning[0],
		"member 'a.TXT': not a phone file or template type");
	assert_string_equal(res.warning[1],
		"member 'readme.doc': not a phone file or template type");
	assert_string_equal(res.warning[2],
		"member 'run.sh': not a phone file or template type");
	assert_string_equal(res.warning[3],
		"member 'noext': not a phone file or template type");
}

static void test_bad_names(void **state)
{
	struct fx *f = *state;
	const char *bad[] = { "../escape", "/abs", "a/b", "..", "a\nb.txt",
			      "x\x01.txt", "caf\xe9.txt", "del\x7f.txt",
			      ".comagent-phones" };
	const char *want[] = { "member '../escape': not a plain file name",
			       "member '/abs': not a plain file name",
			       "member 'a/b': not a plain file name",
			       "member '..': not a plain file name",
			       "member 'a?b.txt': not a plain file name",
			       "member 'x?.txt': not a plain file name",
			       "member 'caf?.txt': not a plain file name",
			       "member 'del?.txt': not a plain file name",
			       "member '.comagent-phones': not a plain file name" };

	for (size_t i = 0; i < N(bad); i++) {
		const struct mem m[] = { OK_FIRST,
					 { bad[i], 0, -1, "x", NULL, NULL } };

		refused(f, m, N(m), want[i]);
	}
}

static void test_long_name(void **state)
{
	struct fx *f = *state;
	char name[140];

	memset(name, 'a', 129);
	name[129] = '\0';
	{
		const struct mem m[] = { OK_FIRST,
					 { name, 0, -1, "x", NULL, NULL } };

		refused(f, m, N(m), "not a plain file name");
	}
}

static void test_non_regular_members(void **state)
{
	struct fx *f = *state;
	const struct mem sym[] = { OK_FIRST,
		{ "s.txt", AE_IFLNK, 0, NULL, "/etc/passwd", NULL } };
	const struct mem sym_then_file[] = {
		{ "x.txt", AE_IFLNK, 0, NULL, "/etc/passwd", NULL },
		{ "x.txt", 0, -1, "owned", NULL, NULL } };
	const struct mem hard[] = { OK_FIRST,
		{ "h.txt", 0, 0, NULL, NULL, "/etc/passwd" } };
	const struct mem chr[] = { OK_FIRST,
		{ "null.bin", AE_IFCHR, 0, NULL, NULL, NULL } };
	const struct mem fifo[] = { OK_FIRST,
		{ "p.txt", AE_IFIFO, 0, NULL, NULL, NULL } };
	const struct mem dir[] = { OK_FIRST,
		{ "sub", AE_IFDIR, 0, NULL, NULL, NULL } };

	refused(f, sym, N(sym), "member 's.txt': not a regular file");
	refused(f, sym_then_file, N(sym_then_file),
		"member 'x.txt': not a regular file");
	refused(f, hard, N(hard), "member 'h.txt': not a regular file");
	refused(f, chr, N(chr), "member 'null.bin': not a regular file");
	refused(f, fifo, N(fifo), "member 'p.txt': not a regular file");
	refused(f, dir, N(dir), "member 'sub/': not a regular file");
}

static void test_settings_file_refused(void **state)
{
	struct fx *f = *state;
	const struct mem lo[] = { OK_FIRST,
		{ "46xxsettings.txt", 0, -1, "SET", NULL, NULL } };
	const struct mem up[] = { OK_FIRST,
		{ "46XXSETTINGS.TXT", 0, -1, "SET", NULL, NULL } };

	refused(f, lo, N(lo), "member '46xxsettings.txt': generated by the "
		"system");
	refused(f, up, N(up), "member '46XXSETTINGS.TXT': generated by the "
		"system");
}

static void test_duplicate_names(void **state)
{
	struct fx *f = *state;
	const struct mem m[] = { OK_FIRST,
		{ "a.txt", 0, -1, "1", NULL, NULL },
		{ "a.txt", 0, -1, "2", NULL, NULL } };
	const struct mem dot[] = { OK_FIRST,
		{ "./ok.txt", 0, -1, "2", NULL, NULL } };

	refused(f, m, N(m), "member 'a.txt': twice in the tar");
	refused(f, dot, N(dot), "member './ok.txt': twice in the tar");
}

static void test_member_over_max_file(void **state)
{
	struct fx *f = *state;
	struct customtar_limits lim = LIM;
	const struct mem m[] = { OK_FIRST,
		{ "big.bin", 0, (int64_t)(10 * MIB + 1), NULL, NULL, NULL } };

	/* The tar itself may be big here: the member's cap is the test. */
	lim.max_tar = 64 * MIB;
	refused_lim(f, m, N(m), &lim, ERR_LIMIT,
		    "member 'big.bin': 10485761 bytes, more than 10485760");
}

static void test_too_many_members(void **state)
{
	struct fx *f = *state;
	struct customtar_limits lim = LIM;
	struct mem m[11];
	char names[11][24];

	for (int i = 0; i < 11; i++) {
		snprintf(names[i], sizeof(names[i]), "f%d.txt", i);
		m[i] = (struct mem){ names[i], 0, -1, "x", NULL, NULL };
	}
	lim.max_members = 10;
	refused_lim(f, m, 11, &lim, ERR_LIMIT, "more than 10 members");
}

static void test_total_over_max_total(void **state)
{
	struct fx *f = *state;
	struct customtar_limits lim = LIM;
	char data[61];
	const struct mem m[] = {
		{ "a.txt", 0, -1, data, NULL, NULL },
		{ "b.txt", 0, -1, data, NULL, NULL } };

	memset(data, 'd', 60);
	data[60] = '\0';
	lim.max_total = 100;
	refused_lim(f, m, N(m), &lim, ERR_LIMIT,
		    "member 'b.txt': the tar unpacks to more than 100 bytes");
}

static void test_tar_over_max_tar(void **state)
{
	struct fx *f = *state;
	struct customtar_limits lim = LIM;
	const struct mem m[] = { OK_FIRST };

	lim.max_tar = 1000;
	refused_lim(f, m, N(m), &lim, ERR_LIMIT, "more than 1000");
}

static void test_gzip_refused(void **state)
{
	struct fx *f = *state;
	const struct mem m[] = { OK_FIRST };
	struct customtar_result res;
	char why[256];

	make_tar(f->tar, m, N(m), true);
	assert_int_equal(customtar_extract(f->tar, f->dest, &LIM, &res, why,
					   sizeof(why)), ERR_INVAL);
	if (!strstr(why, "not a plain tar"))
		fail_msg("why '%s'", why);
	assert_string_equal(dir_entries(f->dest), "");
}

static void test_truncated_tar(void **state)
{
	struct fx *f = *state;
	char data[1001];
	const struct mem m[] = { OK_FIRST,
		{ "cut.txt", 0, -1, data, NULL, NULL } };
	struct customtar_result res;
	char why[256];

	memset(data, 'c', 1000);
	data[1000] = '\0';
	make_tar(f->tar, m, N(m), false);
	/* ok.txt: header + one block; cut.txt: header + one of two blocks. */
	assert_int_equal(truncate(f->tar, 4 * 512), 0);
	assert_int_equal(customtar_extract(f->tar, f->dest, &LIM, &res, why,
					   sizeof(why)), ERR_INVAL);
	if (!strstr(why, "member 'cut.txt'"))
		fail_msg("why '%s'", why);
	assert_string_equal(dir_entries(f->dest), "");
}

static void test_planted_symlink_not_followed(void **state)
{
	struct fx *f = *state;
	const struct mem m[] = { { "a.txt", 0, -1, "new", NULL, NULL } };
	struct customtar_result res;
	char why[256], outside[160], link[160];
	struct stat st;
	FILE *o;

	snprintf(outside, sizeof(outside), "%s/outside.txt", f->dir);
	snprintf(link, sizeof(link), "%s/a.txt", f->dest);
	o = fopen(outside, "w");
	assert_non_null(o);
	fputs("keep", o);
	fclose(o);
	assert_int_equal(symlink(outside, link), 0);
	make_tar(f->tar, m, N(m), false);
	assert_int_equal(customtar_extract(f->tar, f->dest, &LIM, &res, why,
					   sizeof(why)), ERR_OK);
	assert_string_equal(slurp(outside), "keep");
	assert_int_equal(lstat(link, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_string_equal(slurp(link), "new");
}

static void test_earlier_level_replaced(void **state)
{
	struct fx *f = *state;
	const struct mem m[] = { { "a.txt", 0, -1, "level2", NULL, NULL } };
	struct customtar_result res;
	char why[256], p[160];
	FILE *o;

	snprintf(p, sizeof(p), "%s/a.txt", f->dest);
	o = fopen(p, "w");
	assert_non_null(o);
	fputs("level1", o);
	fclose(o);
	make_tar(f->tar, m, N(m), false);
	assert_int_equal(customtar_extract(f->tar, f->dest, &LIM, &res, why,
					   sizeof(why)), ERR_OK);
	assert_string_equal(slurp(p), "level2");
	assert_int_equal(res.files, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_good_tar),
		T(test_warnings_for_odd_names),
		T(test_bad_names),
		T(test_long_name),
		T(test_non_regular_members),
		T(test_settings_file_refused),
		T(test_duplicate_names),
		T(test_member_over_max_file),
		T(test_too_many_members),
		T(test_total_over_max_total),
		T(test_tar_over_max_tar),
		T(test_gzip_refused),
		T(test_truncated_tar),
		T(test_planted_symlink_not_followed),
		T(test_earlier_level_replaced),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
