/*
 * ops — the job engine: runs COM's backup, restore, transfer, upgrade,
 * transfer_upgrade and certificate jobs and the automatic daily backup, one
 * at a time (PROTOCOL.md §2.6), and beside them fetch_logs and
 * refresh_custom (the logs and custom modules do the work).
 *
 * Each operation is a chain of steps — a platform hook (scripts/HOOKS.md),
 * an upload or a download (xfer) — driven by their callbacks inside the
 * event loop. Every state change goes to the journal (job) before COM hears
 * of it; progress within a phase is sent at most every 2 s and not
 * journaled. A restore or an upgrade ends by restarting the system: the
 * journal holds the job "running" in phase "restart", and ops_start() on
 * the next run settles it (an upgrade by checking the running version).
 */
#ifndef COMAGENT_OPS_H
#define COMAGENT_OPS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <libwebsockets.h>

#include "err.h"

struct cert_info;
struct conf;
struct custom;
struct job_rec;
struct jobs;
struct logs;
struct proto_msg;
struct settings;
struct xfers;

struct ops_cbs {
	/* Job r changed (also its first answer, with re = the id of COM's
	 * job message; 0 after that). Local jobs are never passed here. */
	void (*changed)(void *arg, const struct job_rec *r, int64_t re);
	/* The operation in progress changed (ops_current()). */
	void (*busy)(void *arg);
};

/* Everything given must outlive the engine. */
struct ops *ops_new(struct lws_context *ctx, const struct conf *c,
		    const struct settings *s, struct jobs *jobs,
		    struct xfers *x, struct logs *logs, struct custom *custom,
		    const struct ops_cbs *cbs, void *arg);
/* Settles jobs that restarted the system and plans the automatic backup.
 * Once the event loop can run. */
void ops_start(struct ops *o);
/* Stops hooks and timers; before the lws context is destroyed. A job in
 * progress stays in the journal as it is (the next start fails it as
 * interrupted, or settles it if it was restarting the system). */
void ops_shutdown(struct ops *o);
void ops_free(struct ops *o);

/* A job message from COM whose id the journal does not know: journaled,
 * answered (accepted or rejected) and started. false: the journal could
 * not take it (logged there); nothing was sent or started, and the caller
 * answers. */
bool ops_job(struct ops *o, const struct proto_msg *m);

/*
 * A custom-files refresh of the agent's own (a technician's, or the first
 * connect's when first): a local job, id "refresh-<time>" or
 * "first-refresh-<time>" into id. It runs beside the other operations;
 * ERR_STATE (why says which) when a refresh runs already.
 */
err_t ops_refresh_local(struct ops *o, bool prune, bool first, char *id,
			size_t idcap, char *why, size_t whycap);

/* "idle" or the op in progress ("backup", ...). */
const char *ops_current(const struct ops *o);

/* The system certificate the agent installed for COM (op certificate,
 * cert.h): its subject, issuer, serial and dates, as recorded in the
 * agent's store (read at start, updated on each install or rollback).
 * false when none is recorded. */
bool ops_cert_info(const struct ops *o, struct cert_info *out);

/* When the automatic backup is next looked at (wall clock); 0 when off. */
time_t ops_next_auto(const struct ops *o);

/*
 * Test builds only (COMAGENT_TESTING): the wall clock the engine reads is
 * now + offset seconds, and the automatic backup is planned again at once.
 * The offset at start is the environment's COMAGENT_TEST_CLOCK (seconds).
 */
void ops_clock_offset(struct ops *o, int64_t offset);

#endif
