/*
 * logview — `comagent logs`: support staff on site read the agent's own
 * diagnostic log (see log.h) without knowing where it is or how it rotates.
 *
 * The log is FILE.1 (older, if present) then FILE, each line
 * "2026-11-23T10:51:06.854Z info  module: message". Lines are filtered by
 * time, level and a substring and written out as they are, except that
 * control characters (a terminal escape a peer smuggled into a message)
 * are shown as '?' and a line longer than LOGVIEW_LINE_MAX bytes is cut
 * and ends in " [line cut: N more bytes]".
 *
 * A line that does not start with a timestamp and a level (a continuation
 * of a multi-line message, a damaged line) belongs to the entry above it:
 * the time and level filters show or hide it with that entry; the substring
 * filter looks at its own text. Such lines before the first entry have no
 * time or level, so they are shown only when those filters are off.
 *
 * Runs in the CLI process, not in the daemon: it reads and sleeps freely.
 */
#ifndef COMAGENT_LOGVIEW_H
#define COMAGENT_LOGVIEW_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "err.h"
#include "log.h"

/* Bytes of one line shown; the rest of the line is cut (and counted). */
#define LOGVIEW_LINE_MAX	4096
/* Longest grep text. */
#define LOGVIEW_GREP_MAX	256
/* How often follow mode looks for new lines and a rotation. */
#define LOGVIEW_POLL_MS		200

struct logview_opts {
	const char *path;	/* the log file; FILE.1 is read first if present */
	int64_t since;		/* epoch seconds: entries older are skipped
				 * (by the second: 10:51:06.854 is not older
				 * than 10:51:06); 0 = all */
	enum log_level level;	/* show this level and the more severe ones;
				 * LOG_LVL_DEBUG = all */
	const char *grep;	/* must occur in the line (case-sensitive, bytes);
				 * NULL or "" = all */
	bool follow;		/* at the end, keep printing lines as they are
				 * written, across rotations */
	/* Follow mode ends when *stop becomes non-zero (polled; a signal
	 * handler may set it) — NULL: runs until the process is killed. */
	volatile sig_atomic_t *stop;
};

/*
 * Writes the matching lines of the log to out (flushed after each poll in
 * follow mode, so a pipe sees them at once). Problems are written to err as
 * "comagent logs: ..." and returned: ERR_NOTFOUND if neither FILE nor
 * FILE.1 exists, ERR_PERM if one cannot be opened for lack of permission,
 * ERR_INVAL for bad options (no path, grep too long, level out of range)
 * or a path that is not a regular file, ERR_IO for a read or write error
 * (a closed pipe on out included), ERR_NOMEM. ERR_OK at the end of the
 * log or, in follow mode, once *stop is set.
 * In follow mode FILE.1 without FILE is fine (FILE is waited for); FILE is
 * followed through a rename (a new file under the name: read from its
 * start, after what the old one still had) and a truncation (read again
 * from its start). A last line without its newline is held until the
 * newline arrives, or until the file is left (shown as it is).
 */
err_t logview_run(const struct logview_opts *o, FILE *out, FILE *err);

/*
 * Parses a --since value into epoch seconds:
 *   2026-11-23                  that day, 00:00 UTC
 *   2026-11-23T10:51            a UTC date-time, with an optional ":SS",
 *   2026-11-23T10:51:06Z        an optional ".fraction" after the seconds
 *   2026-11-23T10:51:06.854Z    (ignored: a timestamp copied from the log
 *                               works) and an optional 'Z'
 *   90s  15m  2h  3d            that long before now
 * false for anything else, an impossible date (2026-02-29, 24:00) or a
 * time before 1970. No time zones but UTC: the log is in UTC.
 */
bool logview_parse_since(const char *s, time_t now, int64_t *out);

/* The level names are log.h's: parse --level with log_level_parse(). */

#endif
