/*
 * collect — on Linux servers the agent also keeps the log files of
 * configured directories in its log store (besides syslog): this module
 * follows them like `tail -F`, one look per collect_poll(), and hands each
 * new line to the caller.
 *
 * Files: the regular files directly in each directory whose name ends in
 * ".log" (not subdirectories, not symlinks, not "app.log.1": a rotated copy
 * was read under its old name already; not a name with a '\n', which the
 * state file cannot hold), at most COLLECT_FILES_MAX in all. Files already
 * followed keep their place; new ones are taken by directory order, then
 * name; the others are left out (logged once) until there is room. Two
 * names of one file (a hard link) are read once.
 *
 * Lines: every complete line, without its '\n', bytes as they are (empty
 * lines too). A line longer than line_max is delivered cut to line_max
 * bytes (truncated = true) as soon as that much is there; the rest of it
 * is skipped. A last line without its '\n' waits for it — unless its file
 * was rotated away or truncated: then it is delivered as it is.
 *
 * Rotation, by what a look finds under a followed name:
 *   the same file, shorter than what was read: truncated (copytruncate);
 *     read again from its start.
 *   another file, or none (renamed away, or deleted): the old file stays
 *     open and is read to its end first, before the new file of the name —
 *     an application writes to its old file until it reopens its log, so
 *     nothing written there in between is lost. It is closed (and
 *     forgotten) once read to its end after it was deleted, or after the
 *     new file under its name got data (the application switched); what is
 *     written to it after that is not read. Renamed to another watched
 *     name, it is followed on under that name, nothing read twice.
 *   a new file: read from its beginning.
 *
 * Positions: for each file its path, inode and the offset after the last
 * line delivered are kept in the state file (state_write(), at most once
 * per look and only when something changed; a failed write is tried again
 * after COLLECT_RETRY_S, and at collect_free()). After a restart a file
 * found at the first look of its directory resumes there if it is the same
 * file: the same inode, at least that big, and its first bytes (up to 256)
 * the same as when they were read — an inode number is reused by a file
 * created after a delete, its first bytes tell the two apart. Anything
 * else starts at 0. So a restart neither loses nor repeats lines, except:
 * lines delivered after the last state write (the agent died in between)
 * come again; what a renamed-away file not yet read to its end still held
 * under a name that is not watched is lost.
 *
 * A damaged state file (unreadable, too big, a line that does not parse):
 * a file it does not list, found at the first look of its directory, is
 * read from 0 if smaller than COLLECT_REREAD_MAX, else from its end (from
 * the next line start). The positions are lost, but most of what the files
 * hold was collected before: a small file read again repeats little and
 * loses nothing, while a big one read again would flood the log store with
 * lines it has already (and, under its caps, push out ones not yet sent);
 * from its end, only what was written since the last good state is lost.
 * A missing state file is a first start: every file is new and read from 0.
 *
 * Errors (a directory missing or unreadable, a file that cannot be opened
 * or read, a damaged or unwritable state file, too many files) are logged
 * once — again only after the thing worked in between — and counted; after
 * collect_new() the module never fails its caller, and a directory that is
 * missing is looked for again at each look.
 *
 * Runs in the daemon's event loop: a look reads at most max_bytes, never
 * sleeps and never blocks on anything but local file I/O.
 */
#ifndef COMAGENT_COLLECT_H
#define COMAGENT_COLLECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define COLLECT_DIRS_MAX	8	/* directories */
#define COLLECT_DIR_MAX		1024	/* bytes of a directory path */
#define COLLECT_FILES_MAX	64	/* files followed, in all */
#define COLLECT_LINE_LIMIT	65536	/* largest line_max */
#define COLLECT_REREAD_MAX	(1 << 20) /* damaged state: smaller files
					   * are read again from 0 */
#define COLLECT_RETRY_S		60	/* a failed state write: again after */

struct collect;

/*
 * dirs: space-separated absolute directory paths (already resolved under
 * the system root by the caller), 1..COLLECT_DIRS_MAX, each at most
 * COLLECT_DIR_MAX bytes, no one twice (trailing '/'s do not count); they
 * need not exist yet. state_path: the file the positions are kept in (its
 * directory must exist when a look writes it). line_max:
 * 1..COLLECT_LINE_LIMIT. The state file is read here.
 * ERR_INVAL for bad arguments, ERR_NOMEM; both logged.
 */
err_t collect_new(const char *dirs, const char *state_path, size_t line_max,
		  struct collect **out);

/* Writes the positions if they changed and closes every file. NULL is
 * fine. */
void collect_free(struct collect *c);

/* Called for each line: file is the path it was read from ("DIR/NAME",
 * the name the file had when last seen under it), text its len bytes (not
 * NUL-terminated, no '\n'), truncated whether it was cut to line_max. The
 * callback must not call collect_* on the same c. */
typedef void collect_line_fn(void *arg, const char *file, const char *text,
			     size_t len, bool truncated);

/*
 * One look: the directories are listed, rotations handled, and what was
 * appended since the last look read — at most max_bytes in all (0: none),
 * so a huge backlog does not hold the event loop; the rest comes at the
 * next look. That one starts with the file after the one this one
 * stopped in, so a big backlog gets what the other files leave and does
 * not starve them; old files of rotated names always come first.
 * Returns the number of lines delivered.
 */
size_t collect_poll(struct collect *c, size_t max_bytes, collect_line_fn *line,
		    void *arg);

/* Counters for status, since collect_new(). */
struct collect_stats {
	unsigned files;		/* files followed now (open, under a name) */
	uint64_t bytes;		/* bytes read */
	uint64_t lines;		/* lines delivered */
	uint64_t truncated;	/* of them cut to line_max */
	uint64_t errors;	/* errors logged */
};

void collect_stats(const struct collect *c, struct collect_stats *out);

#endif
