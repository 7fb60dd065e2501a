/*
 * state — crash-safe small files (see state.h).
 *
 * The new contents go to PATH.tmp, are fsync'ed, and replace PATH by
 * rename(), which POSIX makes atomic; the directory is fsync'ed last so the
 * rename itself survives a power cut. PATH.tmp has a fixed name so that a
 * crash leaves at most one stale copy, which the next write reuses.
 *
 * Two processes writing one path (the daemon and `comagent settings set`)
 * would write into that one PATH.tmp at once, so a writer holds an flock()
 * on the directory from creating PATH.tmp to the directory's fsync: writes
 * in one directory take turns (they are small and rare). Readers take no
 * lock: rename() gives them the old file or the new one, whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "state.h"

#define LOG_MODULE "state"

#define TMP_SUFFIX	".tmp"

/* "PATH.tmp" into tmp; false if path is too long. */
static bool tmp_name(const char *path, char *tmp, size_t cap)
{
	size_t n = strlen(path);

	if (n == 0 || n > STATE_PATH_MAX || n + sizeof(TMP_SUFFIX) > cap)
		return false;
	memcpy(tmp, path, n);
	memcpy(tmp + n, TMP_SUFFIX, sizeof(TMP_SUFFIX));
	return true;
}

/* The directory part of path into dir: "." for none, "/" for the root. */
static void dir_name(const char *path, char *dir, size_t cap)
{
	const char *slash = strrchr(path, '/');
	size_t n;

	if (!slash) {
		snprintf(dir, cap, ".");
		return;
	}
	n = slash == path ? 1 : (size_t)(slash - path);
	if (n >= cap)
		n = cap - 1;	/* cannot happen: path fits cap */
	memcpy(dir, path, n);
	dir[n] = '\0';
}

static bool write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, data, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w == 0)
			errno = EIO;	/* no progress, no errno of its own */
		if (w <= 0)
			return false;
		data += w;
		len -= (size_t)w;
	}
	return true;
}

/* PATH's directory, open for flock() and fsync(); -1 (logged) if not. */
static int open_dir(const char *path)
{
	char dir[STATE_PATH_MAX + 1];
	int fd;

	dir_name(path, dir, sizeof(dir));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		LOGE("%s: cannot open directory: %s", dir, strerror(errno));
	return fd;
}

err_t state_write(const char *path, const void *data, size_t len)
{
	char tmp[STATE_PATH_MAX + sizeof(TMP_SUFFIX)];
	const char *what;
	int dfd, fd = -1;
	err_t e = ERR_IO;

	if (!path || (!data && len))
		return ERR_INVAL;
	if (!tmp_name(path, tmp, sizeof(tmp))) {
		LOGE("%.64s...: path too long (max %d characters)", path,
		     STATE_PATH_MAX);
		return ERR_INVAL;
	}
	dfd = open_dir(path);
	if (dfd < 0)
		return ERR_IO;
	while (flock(dfd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			LOGE("%s: cannot lock its directory: %s", path,
			     strerror(errno));
			goto out;
		}
	}
	/* O_TRUNC: a stale PATH.tmp from a crash may hold more. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		LOGE("%s: cannot create: %s", tmp, strerror(errno));
		goto out;
	}
	what = "chmod";		/* ... or have another mode */
	if (fchmod(fd, 0600) != 0)
		goto fail;
	what = "write";
	if (!write_all(fd, data, len))
		goto fail;
	what = "sync";
	if (fsync(fd) != 0)
		goto fail;
	what = "close";
	e = close(fd) == 0 ? ERR_OK : ERR_IO;
	fd = -1;
	if (e != ERR_OK)
		goto fail;
	e = ERR_IO;
	if (rename(tmp, path) != 0) {
		LOGE("%s: cannot rename to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	/* PATH holds the new contents now; only their durability is left. */
	if (fsync(dfd) != 0) {
		LOGE("%s: cannot sync its directory: %s", path,
		     strerror(errno));
		goto out;
	}
	e = ERR_OK;
	goto out;
fail:
	LOGE("%s: cannot %s: %s", tmp, what, strerror(errno));
	unlink(tmp);	/* ours: the directory is locked */
out:
	if (fd >= 0)
		close(fd);
	close(dfd);	/* and with it the lock */
	return e;
}

err_t state_read_why(const char *path, char *buf, size_t cap, size_t *len,
		     char *why, size_t whylen)
{
	struct stat st;
	size_t got = 0;
	char extra;
	ssize_t r;
	int fd;
	err_t e = ERR_IO;

	if (why && whylen)
		why[0] = '\0';
	if (!path || !len || (!buf && cap))
		return ERR_INVAL;
	*len = 0;
	/* O_NONBLOCK: a FIFO put in its place must not hang the agent. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		e = errno == ENOENT ? ERR_NOTFOUND : ERR_IO;
		err_say(why, whylen, "%s: cannot open: %s", path, strerror(errno));
		return e;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		err_say(why, whylen, "%s: not a regular file", path);
		goto out;
	}
	/* Read to the end rather than trust st_size: the file may change. */
	for (;;) {
		r = got < cap ? read(fd, buf + got, cap - got) :
				read(fd, &extra, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err_say(why, whylen, "%s: cannot read: %s", path,
			    strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		if (got == cap) {
			err_say(why, whylen, "%s: bigger than %zu bytes", path, cap);
			e = ERR_LIMIT;
			goto out;
		}
		got += (size_t)r;
	}
	*len = got;
	e = ERR_OK;
out:
	close(fd);
	return e;
}

err_t state_read(const char *path, char *buf, size_t cap, size_t *len)
{
	char why[STATE_PATH_MAX + 96];
	err_t e = state_read_why(path, buf, cap, len, why, sizeof(why));

	if (e == ERR_NOTFOUND)
		LOGD("%s: not there", path);
	else if (e && why[0])
		LOGE("%s", why);
	return e;
}

err_t state_mkdirs(const char *path, mode_t mode)
{
	char buf[STATE_PATH_MAX + 1];
	size_t n = path ? strlen(path) : 0;
	struct stat st;

	if (n == 0 || n >= sizeof(buf))
		return ERR_INVAL;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST) {
			LOGE("cannot create directory %s: %s", buf,
			     strerror(errno));
			return ERR_IO;
		}
		buf[i] = i == n ? '\0' : '/';
	}
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		LOGE("%s: not a directory", path);
		return ERR_IO;
	}
	return ERR_OK;
}

bool state_number(const char *f, size_t n, int base, uint64_t max,
		  uint64_t *out)
{
	char tmp[24];
	char *endp;
	unsigned long long v;

	if (n == 0 || n >= sizeof(tmp))
		return false;
	/* strtoull() alone would take spaces, a sign and "0x". */
	for (size_t i = 0; i < n; i++) {
		char ch = f[i];

		if (!(ch >= '0' && ch <= '9') &&
		    !(base == 16 && ((ch >= 'a' && ch <= 'f') ||
				     (ch >= 'A' && ch <= 'F'))))
			return false;
	}
	memcpy(tmp, f, n);
	tmp[n] = '\0';
	errno = 0;
	v = strtoull(tmp, &endp, base);
	if (errno || *endp || v > max)
		return false;
	*out = v;
	return true;
}

bool state_field(const char **p, const char *end, const char **f,
		 size_t *flen)
{
	const char *q = *p;

	while (q < end && *q != ' ')
		q++;
	*f = *p;
	*flen = (size_t)(q - *p);
	*p = q < end ? q + 1 : q;
	return *flen > 0;
}

bool state_path(const char *dir, const char *name, char *path, size_t cap)
{
	size_t n = strlen(dir);
	const char *sep = n > 0 && dir[n - 1] == '/' ? "" : "/";
	int w = snprintf(path, cap, "%s%s%s", dir, sep, name);

	return w > 0 && (size_t)w < cap;
}
