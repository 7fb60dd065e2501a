/*
 * fuzz_common.h — helpers the libFuzzer harnesses in tests/fuzz share: a
 * per-process temporary directory (made once, removed at exit), writing
 * the input to a file in it, emptying a directory between inputs, and
 * silencing the agent's log (every log line is still formatted, so its
 * format paths are fuzzed too, but nothing is written).
 *
 * The directory is under $FUZZ_TMPDIR, else /dev/shm (the modules fsync
 * what they write: tmpfs keeps that cheap), else /tmp.
 */
#ifndef COMAGENT_FUZZ_COMMON_H
#define COMAGENT_FUZZ_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* The harness found a broken property: report it and crash (libFuzzer
 * saves the input). */
#define FZ_CHECK(cond)                                                      \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n",        \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

static char fz_dir[256];

/* rm -rf of what is inside the directory fd dfd (never follows links). */
static void fz_empty_at(int dfd)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;

	if (!d) {
		close(dfd);
		return;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue;
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW);

			if (sub >= 0) {
				fchmodat(dirfd(d), de->d_name, 0700, 0);
				fz_empty_at(sub);
			}
			unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
		} else {
			unlinkat(dirfd(d), de->d_name, 0);
		}
	}
	closedir(d);
}

/* Removes everything inside path (path itself stays). */
__attribute__((unused)) static void fz_empty(const char *path)
{
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);

	if (dfd >= 0)
		fz_empty_at(dfd);
}

static void fz_cleanup(void)
{
	if (fz_dir[0]) {
		fz_empty(fz_dir);
		rmdir(fz_dir);
	}
}

/* Makes the per-process temporary directory (once) and silences the log. */
__attribute__((unused)) static void fz_init(const char *name)
{
	const char *base = getenv("FUZZ_TMPDIR");
	struct stat st;

	log_set_stderr(false);
	log_set_level(LOG_LVL_DEBUG);
	if (fz_dir[0])
		return;
	if (!base || !*base)
		base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
			       access("/dev/shm", W_OK) == 0
		       ? "/dev/shm" : "/tmp";
	snprintf(fz_dir, sizeof(fz_dir), "%s/comagent-fuzz-%s.XXXXXX", base,
		 name);
	if (!mkdtemp(fz_dir)) {
		perror(fz_dir);
		abort();
	}
	atexit(fz_cleanup);
}

/* fz_dir/name into a static buffer (two at a time). */
__attribute__((unused)) static const char *fz_path(const char *name)
{
	static char p[2][512];
	static int k;

	k ^= 1;
	snprintf(p[k], sizeof(p[k]), "%s/%s", fz_dir, name);
	return p[k];
}

/* Writes data to path (created or truncated, mode as given). */
__attribute__((unused)) static void fz_write(const char *path,
					     const void *data, size_t len,
					     mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	const uint8_t *p = data;

	if (fd < 0) {
		perror(path);
		abort();
	}
	fchmod(fd, mode);
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			perror(path);
			abort();
		}
		p += w;
		len -= (size_t)w;
	}
	close(fd);
}

#endif
