/*
 * job — the job journal (PROTOCOL.md §2.6): every job COM sent and the last
 * state the agent gave it, kept in STATE_DIR/jobs so that it survives a
 * restart or a power cut. A job id seen again is answered from the journal
 * and never run twice; a final state stays unacknowledged until COM acks it
 * (the caller re-sends those after every reconnect); a job the journal
 * holds as accepted or running when it is loaded was cut short by a restart
 * and becomes failed with reason "interrupted" at once — unless it is
 * running in phase "restart": then the restart was the job's own (a restore
 * or an upgrade reboots the system) and the job engine settles it.
 *
 * File format: one JSON object per line, oldest job first, each written
 * with proto_w and read back with proto_parse:
 *
 *   {"type":"job","id":1,"job":"J-1","op":"backup","state":"failed",
 *    "progress":40,"reason":"interrupted","message":"...",
 *    "created":1795431066,"updated":1795431070,"acked":false,
 *    "phase":"upload","target":"","phones":false,"local":false}
 *
 * "id" is the order the jobs were first recorded in (it breaks ties in
 * "created"); members not named here are ignored, and phase, target,
 * phones and local may be missing ("" and false). The whole file is
 * replaced by state_write() on every change, so it is either the old
 * journal or the new one, never a mix. At most JOBS_FILE_MAX bytes.
 *
 * Each damaged line is logged as "FILE:LINE: message" and skipped:
 *   <the JSON parser's reason>            not JSON, invalid UTF-8, ...
 *   not a job record                      "type" is not "job"
 *   "NAME" missing or not a string        also: an integer, a boolean
 *   "NAME" longer than N bytes            op, reason, message
 *   job id is empty
 *   job id is longer than 64 bytes
 *   job id contains a control character
 *   unknown state 'NAME'                  (NAME quoted only if printable)
 *   progress N is not in 0..100
 *   acknowledged but STATE is not a final state
 *   duplicate job 'ID' (first at line N)  the first one is kept
 *   more than 64 jobs                     the first 64 good lines are kept
 * Blank lines are skipped silently.
 */
#ifndef COMAGENT_JOB_H
#define COMAGENT_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum job_state {
	JOB_ACCEPTED,
	JOB_RUNNING,
	JOB_SUCCEEDED,
	JOB_FAILED,
	JOB_REJECTED
};

#define JOB_ID_MAX	64	/* bytes of COM's job id */
#define JOBS_MAX	64	/* journal capacity */
/* The biggest journal file read: JOBS_MAX lines of the longest form (every
 * character of every text escaped); a bigger one is not ours. */
#define JOBS_FILE_MAX	(128 * 1024)

struct job_rec {
	char id[JOB_ID_MAX + 1];
	/* backup, restore, transfer, upgrade, transfer_upgrade, fetch_logs,
	 * refresh_custom, or what COM sent (the caller bounds it) */
	char op[24];
	enum job_state state;
	int progress;		/* 0..100 */
	/* busy, not_allowed, invalid, unsupported, interrupted, or a
	 * failure code; "" when there is none */
	char reason[24];
	char message[160];
	int64_t created, updated;	/* wall-clock seconds */
	bool acked;		/* COM acknowledged the final state */
	/* What the job engine needs to carry a job across a restart; "" and
	 * false for jobs that never had them (also in older journals). */
	char phase[12];		/* backup, upload, ... (PROTOCOL.md §2.6) */
	char target[56];	/* the release an upgrade must end up on */
	bool phones;		/* restart the phones once that is verified */
	bool local;		/* the agent's own (automatic backup): never
				 * sent to COM, recorded as acknowledged */
};

struct jobs;

/*
 * Loads STATE_DIR/jobs; a missing file is an empty journal. A damaged one:
 * each bad line logged and skipped, the rest kept, ERR_INVAL but *out is
 * usable (the agent keeps running). A file bigger than JOBS_FILE_MAX is not
 * trusted at all: empty, ERR_INVAL. One that cannot be read (a directory,
 * no permission): empty, ERR_IO. Jobs found accepted or running become
 * failed/"interrupted" (logged, updated = now) and the journal is rewritten
 * at once; if that write fails they are failed in memory all the same and
 * the result is ERR_IO (unless the file was damaged: ERR_INVAL).
 * *out is NULL only on ERR_NOMEM, or ERR_INVAL for a NULL, empty or too
 * long state_dir.
 */
err_t jobs_open(const char *state_dir, struct jobs **out);
void jobs_free(struct jobs *j);

/*
 * Pointers returned by jobs_find, jobs_active, jobs_at and jobs_by_sent
 * stay valid until the next jobs_record, jobs_ack or jobs_free.
 */
const struct job_rec *jobs_find(const struct jobs *j, const char *id);

/*
 * Inserts r, or updates the job with r's id (it keeps its place in the
 * insertion order and its sent message id), and persists the journal
 * atomically. When the journal holds JOBS_MAX jobs already, the oldest one
 * that is final and acknowledged is dropped for a new one; if there is
 * none, ERR_LIMIT (logged) and nothing changes. ERR_INVAL (logged) for a
 * record the journal could not give back as it is, and nothing is clamped
 * or cut: an id that is empty, longer than JOB_ID_MAX, has a control
 * character or is not UTF-8; op, reason or message without a NUL in its
 * array or not UTF-8 (so a caller that cuts a text must cut it at a
 * character boundary); an unknown state; progress outside 0..100; acked on
 * a state that is not final. On a write failure (ERR_IO, logged by state)
 * the journal in memory is unchanged. r may point into the journal.
 */
err_t jobs_record(struct jobs *j, const struct job_rec *r);

/*
 * COM acknowledged the final state of job id: persisted. Acknowledging
 * again is ERR_OK and writes nothing. ERR_NOTFOUND or ERR_STATE (not
 * final), both logged; ERR_IO as jobs_record.
 */
err_t jobs_ack(struct jobs *j, const char *id);

/* The newest job in state accepted or running, if any (the caller runs one
 * operation at a time). */
const struct job_rec *jobs_active(const struct jobs *j);

/* The newest job that ran and ended (a rejected one never ran), if any:
 * the last operation COM's status reports. */
const struct job_rec *jobs_last_ended(const struct jobs *j);

/* Iteration, newest first: by created, then by insertion order. */
size_t jobs_count(const struct jobs *j);
const struct job_rec *jobs_at(const struct jobs *j, size_t i);

/*
 * In memory only: the message id of the last job.state sent for job id, so
 * that COM's ack (its "re") finds the job. Unknown ids are ignored; msg_id
 * 0 forgets. jobs_by_sent: NULL for no match or msg_id < 1. Clear on every
 * new link: message ids start again.
 */
void jobs_set_sent(struct jobs *j, const char *id, int64_t msg_id);
const struct job_rec *jobs_by_sent(const struct jobs *j, int64_t msg_id);
void jobs_clear_sent(struct jobs *j);

#define JOB_PHASE_RESTART "restart"
/* Running in phase "restart": the system restarts for this job, and the
 * agent's restart is expected; the job engine settles it once it is back. */
bool job_awaits_restart(const struct job_rec *r);

/* succeeded, failed and rejected. */
bool job_state_final(enum job_state s);
/* "accepted", "running", "succeeded", "failed", "rejected"; NULL for an
 * unknown s. */
const char *job_state_name(enum job_state s);

#endif
