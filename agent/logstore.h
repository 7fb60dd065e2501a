/*
 * logstore — the agent's local store of the PBX's syslog messages: capped
 * files by local day and size, gzip-compressed when closed, with a
 * manifest of what is stored and what COM already has (the ~00:30 upload
 * and `fetch_logs`, PROTOCOL.md §3.3).
 *
 * Files in the store directory (all mode 0600, the directory 0700):
 *   log-<yyyymmdd>-<nnn>.log     the current file (at most one written to),
 *                                <yyyymmdd> the local date of the instant
 *                                it was opened, nnn 001..999 per date
 *   log-<yyyymmdd>-<nnn>.log.gz  a closed file, one message per line
 *   manifest                     "name size sha256 uploaded(0|1)" per .gz
 * The uploader sends a .gz as log-<system>-<yyyymmdd>-<nnn>.log.gz.
 *
 * The store never stops the daemon: a message it cannot keep is dropped
 * and counted (logstore_stats), and the store goes on. Disk use — every
 * .gz, the current file (with what is still buffered) and uncompressed
 * files waiting to be compressed again — stays within max_total; the
 * manifest (about 110 bytes per file) is not counted. While a file is
 * being compressed its .gz grows next to it: room for the worst case is
 * made first, so the cap holds then too, unless nothing is left to prune.
 *
 * Logging: errors are logged where detected, but drops are not logged per
 * message. Per kind (day cap, total cap, write error) the first drop is
 * logged at once with its reason ("DIR: dropping messages: WHY", or the
 * failed write with its errno text); later ones only add to a count that
 * is logged at most once a minute ("DIR: N more messages ... since the
 * last report", also from logstore_flush(), so a burst is summed up after
 * it ends). After a minute without drops, or on a new local day, the next
 * drop is logged with its reason again. Failures to compress, create or
 * remove a file are limited the same way. The day cap logs at info level,
 * the rest as errors. "Minute" is by the `now` the caller gives.
 */
#ifndef COMAGENT_LOGSTORE_H
#define COMAGENT_LOGSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"

#define LOGSTORE_DIR_MAX	3900		/* bytes of the directory path */
#define LOGSTORE_FILE_MIN	4096		/* smallest file_max */
#define LOGSTORE_FILE_LIMIT	(1ULL << 30)	/* largest file_max */
#define LOGSTORE_MSG_LIMIT	65536		/* largest msg_max */
#define LOGSTORE_TOTAL_LIMIT	(1ULL << 42)	/* largest max_total, max_day */
#define LOGSTORE_BUF		32768	/* the write buffer, bytes (or
					 * msg_max + 2 if that is more) */
#define LOGSTORE_MAX_FILES	16384	/* closed files listed; at the cap
					 * one is pruned for the next */
#define LOGSTORE_MAX_PENDING	16		/* closed, not yet compressed */
#define LOGSTORE_SEQ_MAX	999		/* files per local day */
#define LOGSTORE_RETRY_S	10	/* a failed compression, create,
					 * remove or manifest write, a prune
					 * for a full disk: again after */
#define LOGSTORE_REPORT_S	60	/* drop summaries: at most this often */
#define LOGSTORE_NAME_MAX	64	/* bytes of a file name with its NUL */
#define LOGSTORE_DAY_LEN	11	/* "YYYY-MM-DD" and the NUL */

struct logstore_cfg {
	const char *dir;	/* created 0700 if missing (not its parents) */
	/* Bytes all log files together may use, 4 * LOGSTORE_FILE_MIN ..
	 * LOGSTORE_TOTAL_LIMIT. */
	uint64_t max_total;
	/* Bytes of messages (each with its '\n') accepted per local day;
	 * 0: no cap. At most LOGSTORE_SEQ_MAX files a day are made, so the
	 * effective cap is also below LOGSTORE_SEQ_MAX * file_max (4 GiB a
	 * day needs a file_max above 4.1 MiB). */
	uint64_t max_day;
	/* The current file is closed before passing this size;
	 * LOGSTORE_FILE_MIN..LOGSTORE_FILE_LIMIT and more than msg_max.
	 * Lowered (logged) to max_total / 4 if bigger: a file is compressed
	 * next to the current one, within max_total. */
	uint64_t file_max;
	/* Longer messages are cut to this (and counted); 1..LOGSTORE_MSG_LIMIT. */
	size_t msg_max;
};

/* A closed file, oldest first. */
struct logstore_file {
	char name[LOGSTORE_NAME_MAX];	/* "log-20261201-001.log.gz" */
	uint64_t size;			/* bytes of the .gz */
	char sha256[65];		/* of the .gz, lower-case hex */
	bool uploaded;
	char day[LOGSTORE_DAY_LEN];	/* the local date, "2026-12-01" */
};

/* Since logstore_open() unless said otherwise. Every message given to
 * logstore_append() ends in exactly one of messages, dropped_day,
 * dropped_total and write_errors. */
struct logstore_stats {
	uint64_t bytes;		/* on disk now: as counted for max_total */
	uint64_t files;		/* on disk now: .gz, current, waiting ones */
	uint64_t messages;	/* stored (written or still in the buffer) */
	uint64_t truncated;	/* of those, cut to msg_max */
	uint64_t dropped_day;	/* the day's cap or its 999 files */
	uint64_t dropped_total;	/* no room under max_total */
	/* Lost to a failed write (also ones that had been accepted into the
	 * buffer), a file that could not be made, or one that could not be
	 * closed. */
	uint64_t write_errors;
	uint64_t pruned_sent;	/* files deleted for room, uploaded */
	uint64_t pruned_unsent;	/* the same, never uploaded */
	uint64_t today_bytes;	/* accepted on the last message's local date,
				 * as restored from disk at open */
	int write_errno;	/* the last write error's errno, 0: none */
};

struct logstore;

/*
 * Opens the store: creates dir if missing, loads the manifest (damaged or
 * unknown lines logged and skipped), adds .gz files missing from it (hashed
 * again), drops entries whose file is gone, compresses a current file left
 * by a restart or a crash, removes temporary files, and prunes to
 * max_total if the cap was lowered. ERR_INVAL (bad configuration), ERR_IO
 * (the directory cannot be made or read), ERR_NOMEM; all logged. A file
 * that cannot be handled is logged and the store opens anyway.
 */
err_t logstore_open(const struct logstore_cfg *c, time_t now,
		    struct logstore **out);

/* Writes out the buffer and closes the current file without compressing
 * it: the next open does that. NULL is fine. */
void logstore_free(struct logstore *s);

/*
 * Stores one message of len bytes (no NUL needed; '\n' and '\r' in it
 * become ' ', the store adds the line's '\n'). now: the wall clock, whose
 * local date names the file. ERR_OK when stored (possibly still in the
 * buffer: a later failed write loses it and counts it as a write error),
 * ERR_LIMIT when dropped for a cap, ERR_IO when dropped for a write error,
 * ERR_INVAL for no store or NULL msg with len > 0 (not counted).
 */
err_t logstore_append(struct logstore *s, time_t now, const char *msg,
		      size_t len);

/* Writes out the buffer and makes it durable (fdatasync); retries a
 * compression that failed (after LOGSTORE_RETRY_S) and logs due drop
 * summaries. The daemon calls it every second. */
void logstore_flush(struct logstore *s);

/*
 * Closes and compresses the current file now, so that it can be listed
 * and uploaded; the next message starts a new file. Files whose earlier
 * compression failed are tried again too. ERR_OK when no uncompressed
 * closed file is left (also when the current file was empty: nothing to
 * do), ERR_IO otherwise (logged; retried later).
 */
err_t logstore_close_current(struct logstore *s, time_t now);

/* The closed files, oldest first (by name: date, then number). A pointer
 * stays valid only until the next call that changes the store (append,
 * close, flush, mark): copy what is needed. A file being uploaded can be
 * pruned meanwhile; an open descriptor still reads it whole. */
size_t logstore_count(const struct logstore *s);
const struct logstore_file *logstore_at(const struct logstore *s, size_t i);

/* DIR/name into out (cap bytes); false if it does not fit. */
bool logstore_path(const struct logstore *s, const char *name, char *out,
		   size_t cap);

/* Records that COM has the file (persisted in the manifest). ERR_NOTFOUND
 * if it is not (or no longer) in the store, ERR_IO if the manifest could
 * not be written (it is retried with the next change). */
err_t logstore_mark_uploaded(struct logstore *s, const char *name);

void logstore_stats(const struct logstore *s, struct logstore_stats *out);

#endif
