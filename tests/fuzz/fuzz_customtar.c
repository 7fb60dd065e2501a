/*
 * fuzz_customtar — libFuzzer harness for agent/customtar.c: the input is
 * written as a tar file and customtar_extract()ed into a fresh, empty
 * destination directory (libarchive underneath). Afterwards, whatever the
 * result, the harness asserts (abort() on violation):
 *  - nothing was created outside dest: the temp dir holds only the tar
 *    and dest, and the tar is unchanged;
 *  - every entry in dest is a regular file (lstat) with a plain name;
 *  - on success dest holds exactly res.files files of res.bytes bytes
 *    in total, and on_file was called once for each; on failure dest is
 *    empty again and *res all-zero.
 * Caps are small so that one input stays cheap and the caps are hit.
 */
#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "customtar.h"
#include "fuzz_common.h"

#define MAX_TAR (256 * 1024)

static char tar_path[512], dest[512];
static unsigned n_on_file;

static void on_file(void *arg, const char *name, uint64_t size,
		    const char *sha256)
{
	(void)arg;
	(void)size;
	FZ_CHECK(name && *name && !strchr(name, '/'));
	FZ_CHECK(sha256 && strlen(sha256) == 64);
	n_on_file++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init("customtar");
	snprintf(tar_path, sizeof(tar_path), "%s", fz_path("in.tar"));
	snprintf(dest, sizeof(dest), "%s", fz_path("dest"));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct customtar_limits lim = {
		.max_members = 20,
		.max_total = 256 * 1024,
		.max_file = 64 * 1024,
		.max_tar = MAX_TAR,
		.on_file = on_file,
	};
	static const struct customtar_result zero;
	struct customtar_result res;
	char why[256];
	struct dirent *de;
	struct stat st;
	unsigned files = 0;
	uint64_t bytes = 0;
	DIR *d;
	err_t e;

	if (size > MAX_TAR)
		return 0;
	fz_empty(fz_dir);
	fz_write(tar_path, data, size, 0600);
	FZ_CHECK(mkdir(dest, 0700) == 0);
	n_on_file = 0;
	memset(&res, 0x5a, sizeof(res));
	e = customtar_extract(tar_path, dest, &lim, &res, why, sizeof(why));

	/* Nothing but in.tar and dest in the temp dir; the tar as it was. */
	d = opendir(fz_dir);
	FZ_CHECK(d);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strcmp(de->d_name, "in.tar") ||
		    !strcmp(de->d_name, "dest"))
			continue;
		fprintf(stderr, "created outside dest: %s\n", de->d_name);
		FZ_CHECK(!"entry outside dest");
	}
	closedir(d);
	FZ_CHECK(lstat(tar_path, &st) == 0 && S_ISREG(st.st_mode) &&
		 (size_t)st.st_size == size);
	FZ_CHECK(lstat(dest, &st) == 0 && S_ISDIR(st.st_mode));

	/* Only regular files, with plain names, in dest. */
	d = opendir(dest);
	FZ_CHECK(d);
	while ((de = readdir(d))) {
		char p[1024];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dest, de->d_name);
		FZ_CHECK(lstat(p, &st) == 0);
		if (!S_ISREG(st.st_mode)) {
			fprintf(stderr, "not a regular file in dest: %s "
				"(mode %o)\n", de->d_name, st.st_mode);
			FZ_CHECK(!"not a regular file");
		}
		FZ_CHECK(st.st_nlink == 1);
		FZ_CHECK(de->d_name[0] != '.');
		FZ_CHECK(strlen(de->d_name) <= CUSTOMTAR_NAME_MAX);
		files++;
		bytes += (uint64_t)st.st_size;
	}
	closedir(d);

	FZ_CHECK(memchr(why, '\0', sizeof(why)));
	if (e == ERR_OK) {
		FZ_CHECK(res.files == files && res.bytes == bytes);
		FZ_CHECK(n_on_file == files);
		FZ_CHECK(files <= lim.max_members && bytes <= lim.max_total);
	} else {
		if (files)
			fprintf(stderr, "refused (%s) but %u files left\n",
				why, files);
		FZ_CHECK(files == 0);
		FZ_CHECK(!memcmp(&res, &zero, sizeof(res)));
	}
	fz_empty(fz_dir);
	return 0;
}
