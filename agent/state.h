/*
 * state — small files in the state directory that must survive a crash or
 * a power cut whole: after state_write() returns, a reader finds either the
 * old contents or the new ones, never a mix or an empty file.
 *
 * Every failure is logged here, once, with the path and the system's error
 * text; callers only propagate the err_t. A missing file is not a failure
 * (ERR_NOTFOUND, logged at debug level only): callers have a default.
 */
#ifndef COMAGENT_STATE_H
#define COMAGENT_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <stddef.h>

#include "err.h"

/* The longest path the functions take, without the NUL (PATH_MAX - 1 less
 * room for the temporary file's ".tmp"). */
#define STATE_PATH_MAX	4091

/*
 * Writes data to path atomically and durably: path.tmp, write, fsync,
 * rename, fsync the directory. Mode 0600. Writers in one directory (the
 * daemon and the CLI) take turns, under an flock() on the directory; the
 * later one's contents win.
 * ERR_INVAL for a path that is too long, ERR_IO otherwise. A failure
 * leaves path untouched and no path.tmp behind, except when only the last
 * step (the directory's fsync) failed: then path already has the new
 * contents, not yet known to be on disk.
 */
/* The next space-separated field of the line [*p, end) into *f and *flen
 * (not NUL-terminated), *p moved past it and its space; false if it is
 * empty. For the line formats of state files. */
bool state_field(const char **p, const char *end, const char **f,
		 size_t *flen);

/* A field of digits (base 10 or 16, no sign, space or "0x") as a number
 * of at most max into *out; false otherwise. */
bool state_number(const char *f, size_t n, int base, uint64_t max,
		  uint64_t *out);
/* mkdir -p: every missing component of path is created with mode; the
 * result must be a directory. Logged here; ERR_IO / ERR_INVAL. */
err_t state_mkdirs(const char *path, mode_t mode);
/* DIR "/" NAME into path (cap bytes); false if it does not fit. */
bool state_path(const char *dir, const char *name, char *path, size_t cap);

err_t state_write(const char *path, const void *data, size_t len);

/*
 * Reads at most cap bytes into buf (no NUL is added) and their number into
 * *len. ERR_NOTFOUND if missing, ERR_LIMIT if the file is bigger than cap,
 * ERR_IO if it cannot be read (a directory, no permission).
 */
err_t state_read(const char *path, char *buf, size_t cap, size_t *len);

/* The same without logging: the reason goes to why (whylen bytes, may be
 * NULL) as "PATH: cannot open: ERROR", "PATH: not a regular file",
 * "PATH: cannot read: ERROR" or "PATH: bigger than CAP bytes", for a
 * caller that reports it in its own words (the manifest's key files). */
err_t state_read_why(const char *path, char *buf, size_t cap, size_t *len,
		     char *why, size_t whylen);

#endif
