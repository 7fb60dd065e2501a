/*
 * ops — the job engine (see ops.h).
 *
 * One struct run for the operation in progress, NULL when idle. Its steps:
 *
 *   backup            hook backup → hash → upload → succeeded
 *   restore           download (verified) → hook restore → restart
 *   transfer          hook transfer-check → stage manifest → download each
 *                     component (verified) → succeeded
 *   upgrade           verify staged files → hook upgrade → restart
 *   transfer_upgrade  transfer, then upgrade
 *   restart           journal "running/restart" → hook reboot → (the agent
 *                     is stopped by the reboot) → ops_start() settles it
 *   refresh_custom    the custom module's refresh (list → downloads →
 *                     extract → install), COM's or the agent's own
 *   certificate       (checked before it is accepted: cert.c) write the
 *                     pair into work_dir → hook certificate → record it
 *                     in the agent's store (or swap back: rollback)
 *
 * Checks that need nothing but the message and the disk (arguments,
 * settings, busy, the manifest's signature, downgrade, all of a
 * certificate's) are made before the job is accepted, so a refused job is
 * "rejected" with nothing started.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "cert.h"
#include "conf.h"
#include "custom.h"
#include "daily.h"
#include "digest.h"
#include "hook.h"
#include "job.h"
#include "log.h"
#include "logs.h"
#include "manifest.h"
#include "ops.h"
#include "proto.h"
#include "nightly.h"
#include "settings.h"
#include "state.h"
#include "xfer.h"
#include "../platform/platform.h"

#define LOG_MODULE "ops"

#define ELEMENTS_MAX 16
#define ELEMENT_MAX 64
#define PROGRESS_EVERY_US (2 * LWS_USEC_PER_SEC)
#define AUTO_STATE "autobackup"
#define MANIFEST_FILE "manifest.json"
#define SIGNATURE_FILE "manifest.sig"

#define SIGNATURE_MAX 512
/* How long a system may take to go down after the reboot hook said yes. */
#define RESTART_WAIT_US (15 * 60 * LWS_USEC_PER_SEC)
/* What the upgrade hook reads: the verified manifest, rewritten compact
 * (HOOKS.md promises one flat object per component). */
#define HOOK_MANIFEST_FILE "upgrade.json"
/* Files of work_dir no job is using are removed at start; partial
 * downloads (resumable) only once they are this old. */
#define PART_MAX_AGE_S (7 * 86400)
/* Bytes hashed per turn of the event loop: a few ms here, some tens on
 * the appliance, so tunnels and the link stay responsive while a big
 * file is checked. */
#define HASH_SLICE (1024u * 1024u)
/* Final states the journal could not take (a full or failing state
 * directory) wait here, at most this many, and are journaled again after
 * HELD_RETRY_US, doubling up to HELD_RETRY_MAX_US (each failure is logged);
 * see hold_final(). */
#define HELD_MAX 4
#define HELD_RETRY_US (5 * LWS_USEC_PER_SEC)
#define HELD_RETRY_MAX_US (60 * LWS_USEC_PER_SEC)

enum op { OP_BACKUP, OP_RESTORE, OP_TRANSFER, OP_UPGRADE, OP_TRANSFER_UPGRADE,
	  OP_FETCH_LOGS, OP_REFRESH_CUSTOM, OP_CERTIFICATE };

static const char *const op_names[] = {
	[OP_BACKUP] = "backup", [OP_RESTORE] = "restore",
	[OP_TRANSFER] = "transfer", [OP_UPGRADE] = "upgrade",
	[OP_TRANSFER_UPGRADE] = "transfer_upgrade",
	[OP_FETCH_LOGS] = "fetch_logs", [OP_REFRESH_CUSTOM] = "refresh_custom",
	[OP_CERTIFICATE] = "certificate",
};
#define NOPS (sizeof(op_names) / sizeof(op_names[0]))

struct run {
	struct ops *o;
	enum op op;
	struct job_rec rec;
	int64_t re;			/* COM's job message, for the 1st answer */
	lws_usec_t last_sent;
	int sent_progress;
	struct hook *hook;
	struct xfer *xfer;
	void (*after_hook)(struct run *r, int status, const char *why);
	int hook_base, hook_span;	/* the hook's 0..100 maps to these */
	lws_sorted_usec_list_t sul_restart;
	/* A file being hashed a slice per loop turn (hash_async). */
	struct digest *hd;
	struct digest_reader *hr;
	void (*hash_then)(struct run *r, err_t e, const char *hex, uint64_t n);
	lws_sorted_usec_list_t sul_hash;
	bool verified;			/* the staged files were just checked */
	/* backup / restore */
	char elements[ELEMENTS_MAX][ELEMENT_MAX + 1];
	int nel;
	char vmpro[8];
	char name[XFER_NAME_MAX + 1];	/* upload name, or the backup to restore */
	char sha[DIGEST_HEX_LEN + 1];	/* restore: what it must hash to */
	char file[STATE_PATH_MAX + 1];	/* the archive on our disk */
	uint64_t size;
	/* transfer / upgrade */
	struct manifest *mf;
	char mtext[MANIFEST_MAX_TEXT + 1];
	char sig[SIGNATURE_MAX + 1];
	bool allow_downgrade, phones;
	size_t comp;			/* the component being downloaded */
	uint64_t staged;		/* bytes of components done before it */
	/* refresh_custom */
	bool prune;
	bool first;			/* the first connect's refresh */
	/* certificate: the checked pair; the files the hook is given (key
	 * material: removed when the run ends, whatever the outcome) */
	struct cert_pair *cert;
	bool rollback;
	char cert_file[STATE_PATH_MAX + 1];
	char key_file[STATE_PATH_MAX + 1];
};

struct ops {
	struct lws_context *ctx;
	const struct conf *conf;
	const struct settings *settings;
	struct jobs *jobs;
	struct xfers *xfers;
	struct ops_cbs cbs;
	void *arg;
	struct run *run;		/* backup, restore, upgrade: one */
	struct run *side;		/* fetch_logs: beside them, one */
	/* refresh_custom: beside them too (it touches only the custom
	 * files, under its own journal), one */
	struct run *refresh;
	struct logs *logs;
	struct custom *custom;
	struct daily *daily;		/* the automatic backup's planner */
	struct cert_store *certs;	/* the certificate COM installed */
	char auto_state[STATE_PATH_MAX + 1];
	/* Ended jobs whose final state is not journaled yet, so not told. */
	struct held { struct job_rec rec; int64_t re; } held[HELD_MAX];
	size_t nheld;
	lws_usec_t held_wait;		/* until the next try */
	lws_sorted_usec_list_t sul_held;
};

static time_t now_wall(const struct ops *o)
{
	return o->daily ? daily_now(o->daily) : time(NULL);
}

static const char *cstr(const struct ops *o, enum conf_key k)
{
	return conf_str(o->conf, k);
}

/* ---- reporting -------------------------------------------------------- */

static void tell(struct run *r)
{
	struct ops *o = r->o;

	r->last_sent = lws_now_usecs();
	r->sent_progress = r->rec.progress;
	if (!r->rec.local && o->cbs.changed)
		o->cbs.changed(o->arg, &r->rec, r->re);
	r->re = 0;
}

/* Journals r's record; a job the journal cannot hold is still reported
 * (the journal logged why). */
static err_t save(struct run *r)
{
	r->rec.updated = (int64_t)now_wall(r->o);
	return jobs_record(r->o->jobs, &r->rec);
}

/* src into dst (cap bytes), cut at a character boundary if it does not
 * fit: the journal refuses broken UTF-8. */
static void copy_utf8(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	if (n >= cap) {
		n = cap - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void set_message(struct job_rec *rec, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void set_message(struct job_rec *rec, const char *fmt, va_list ap)
{
	char buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	copy_utf8(rec->message, sizeof(rec->message), buf);
}

/* Progress within the job: a new phase is journaled and sent at once; the
 * same phase at most every PROGRESS_EVERY_US. */
static void report(struct run *r, const char *phase, int pct,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void report(struct run *r, const char *phase, int pct,
		   const char *fmt, ...)
{
	bool new_phase = strcmp(r->rec.phase, phase) != 0 ||
			 r->rec.state != JOB_RUNNING;
	va_list ap;

	r->rec.state = JOB_RUNNING;
	r->rec.progress = pct < 0 ? 0 : pct > 100 ? 100 : pct;
	snprintf(r->rec.phase, sizeof(r->rec.phase), "%s", phase);
	va_start(ap, fmt);
	set_message(&r->rec, fmt, ap);
	va_end(ap);
	if (new_phase) {
		LOGI("job %s (%s): %s: %s", r->rec.id, r->rec.op, phase,
		     r->rec.message);
		(void)save(r);
		tell(r);
	} else if (r->rec.progress != r->sent_progress &&
		   lws_now_usecs() - r->last_sent >= PROGRESS_EVERY_US) {
		tell(r);
	}
}

static void retry_held(lws_sorted_usec_list_t *sul)
{
	struct ops *o = lws_container_of(sul, struct ops, sul_held);
	size_t k = 0;

	for (size_t i = 0; i < o->nheld; i++) {
		struct held *h = &o->held[i];

		h->rec.updated = (int64_t)now_wall(o);
		if (jobs_record(o->jobs, &h->rec) != ERR_OK) {
			o->held[k++] = *h;
			continue;
		}
		LOGI("job %s (%s): final state journaled now; reported",
		     h->rec.id, h->rec.op);
		if (!h->rec.local && o->cbs.changed)
			o->cbs.changed(o->arg, &h->rec, h->re);
	}
	o->nheld = k;
	if (!k)
		return;
	o->held_wait = o->held_wait * 2 > HELD_RETRY_MAX_US ?
		       HELD_RETRY_MAX_US : o->held_wait * 2;
	lws_sul_schedule(o->ctx, 0, &o->sul_held, retry_held, o->held_wait);
}

/*
 * r ended, but the journal could not take its final state (state_write
 * logged why). Every answer is journaled before it is sent (PROTOCOL.md
 * §2.6): told now, COM would hear "succeeded" while the journal still says
 * "running" — sent as such on the next link, and "failed / interrupted"
 * after a restart. So the state is held and journaled again from time to
 * time (the disk may get room), and told once it is; until then
 * COM sees the job running, and a restart meanwhile reports it
 * interrupted — one outcome either way. false: no room to hold it (then
 * it is told unjournaled, as before).
 */
static bool hold_final(struct run *r)
{
	struct ops *o = r->o;

	if (o->nheld == HELD_MAX)
		return false;
	o->held[o->nheld].rec = r->rec;
	o->held[o->nheld].re = r->re;
	if (o->nheld++ == 0) {
		o->held_wait = HELD_RETRY_US;
		lws_sul_schedule(o->ctx, 0, &o->sul_held, retry_held,
				 o->held_wait);
	}
	LOGE("job %s (%s): its final state (%s) is not journaled; it is "
	     "reported once it is (tried again in %d s, then less often)",
	     r->rec.id, r->rec.op, job_state_name(r->rec.state),
	     (int)(HELD_RETRY_US / LWS_USEC_PER_SEC));
	return true;
}

static void run_free(struct run *r)
{
	if (!r)
		return;
	/* A certificate job's files hold the private key: never left
	 * behind, not even by a job cut short (work_dir is also cleaned at
	 * start, for a power cut). */
	if (r->key_file[0])
		(void)unlink(r->key_file);
	if (r->cert_file[0])
		(void)unlink(r->cert_file);
	cert_pair_free(r->cert);
	lws_sul_cancel(&r->sul_restart);
	lws_sul_cancel(&r->sul_hash);
	digest_reader_free(r->hr);
	digest_free(r->hd);
	hook_free(r->hook);
	xfer_free(r->xfer);
	manifest_free(r->mf);
	free(r);
}

/* The end of the run: journaled, reported, the engine idle again. */
static void end(struct run *r, enum job_state st, const char *reason,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void end(struct run *r, enum job_state st, const char *reason,
		const char *fmt, ...)
{
	struct ops *o = r->o;
	va_list ap;

	r->rec.state = st;
	if (st == JOB_SUCCEEDED)
		r->rec.progress = 100;
	snprintf(r->rec.reason, sizeof(r->rec.reason), "%s",
		 reason ? reason : "");
	va_start(ap, fmt);
	set_message(&r->rec, fmt, ap);
	va_end(ap);
	r->rec.acked = r->rec.local;	/* nobody to acknowledge ours */
	if (st == JOB_SUCCEEDED)
		LOGI("job %s (%s) succeeded: %s", r->rec.id, r->rec.op,
		     r->rec.message);
	else
		LOGE("job %s (%s) %s (%s): %s", r->rec.id, r->rec.op,
		     job_state_name(st), r->rec.reason, r->rec.message);
	if (save(r) == ERR_OK || !hold_final(r))
		tell(r);
	if (o->side == r) {
		logs_fetch_cancel(o->logs);
		o->side = NULL;
	}
	if (o->refresh == r)
		o->refresh = NULL;
	if (o->run == r) {
		o->run = NULL;
		if (o->cbs.busy)
			o->cbs.busy(o->arg);
	}
	run_free(r);
}

/* ---- hooks ------------------------------------------------------------ */

static void hook_progress(void *arg, int pct, const char *text)
{
	struct run *r = arg;

	/* A hook's own percentage, shown within the job's range for it. */
	report(r, r->rec.phase, r->hook_base + pct * r->hook_span / 100, "%s",
	       text[0] ? text : r->rec.message);
}

static void hook_done(void *arg, int status, const char *why)
{
	struct run *r = arg;

	hook_free(r->hook);
	r->hook = NULL;
	r->after_hook(r, status, why);
}

/* Runs hook NAME of the profile with args (NULL-terminated, after the
 * path); then after(r, status, why). false: the run has ended. */
static bool run_hook(struct run *r, const char *name, const char *const *args,
		     int span, void (*after)(struct run *, int, const char *))
{
	struct ops *o = r->o;
	char path[STATE_PATH_MAX + 1];
	char env[6][STATE_PATH_MAX + 32];
	char *envp[7];
	char *argv[ELEMENTS_MAX + 4];
	struct hook_cbs cbs = { .progress = hook_progress, .done = hook_done };
	const char *runner = cstr(o, CONF_JOBS_HOOK_RUNNER);
	unsigned timeout_s;
	size_t n = 0;
	err_t e;
	int w;

	w = snprintf(path, sizeof(path), "%s/%s/%s", cstr(o, CONF_JOBS_HOOKS_DIR),
		     cstr(o, CONF_SYSTEM_PROFILE), name);
	if (w < 0 || (size_t)w >= sizeof(path)) {
		end(r, JOB_FAILED, "hook", "hook path too long");
		return false;
	}
	argv[n++] = path;
	for (size_t i = 0; args && args[i] && n < ELEMENTS_MAX + 3; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	snprintf(env[0], sizeof(env[0]), "COMAGENT_ROOT=%s",
		 cstr(o, CONF_SYSTEM_ROOT));
	snprintf(env[1], sizeof(env[1]), "COMAGENT_PROFILE=%s",
		 cstr(o, CONF_SYSTEM_PROFILE));
	snprintf(env[2], sizeof(env[2]), "COMAGENT_STATE_DIR=%s",
		 cstr(o, CONF_SYSTEM_STATE_DIR));
	snprintf(env[3], sizeof(env[3]), "COMAGENT_JOB=%s",
		 r->rec.local ? "" : r->rec.id);
	snprintf(env[4], sizeof(env[4]), "COMAGENT_BACKUP_DIRS=%s",
		 cstr(o, CONF_JOBS_BACKUP_DIRS));
	snprintf(env[5], sizeof(env[5]), "COMAGENT_VMPRO=%s",
		 r->vmpro[0] ? r->vmpro : "none");
	for (int i = 0; i < 6; i++)
		envp[i] = env[i];
	envp[6] = NULL;
	r->after_hook = after;
	r->hook_base = r->rec.progress;
	r->hook_span = span;
	timeout_s = (unsigned)(conf_num(o->conf, CONF_JOBS_HOOK_TIMEOUT) /
			       1000);
	if (*runner)
		e = hook_start_runner(o->ctx, runner, name, argv + 1, envp,
				      timeout_s, &cbs, r, &r->hook);
	else
		e = hook_start(o->ctx, path, argv, envp, timeout_s, &cbs, r,
			       &r->hook);
	if (e != ERR_OK && *runner) {
		end(r, JOB_FAILED, "hook", "cannot run the %s hook through the "
		    "hook runner %s: %s", name, runner, err_str(e));
		return false;
	}
	if (e != ERR_OK) {
		end(r, JOB_FAILED, "hook", "cannot run the %s hook %s: %s", name,
		    path, e == ERR_NOTFOUND ? "not an executable file"
					    : err_str(e));
		return false;
	}
	return true;
}

/* A hook's failure as the job's: exit 3 is the contract's "no space". */
static void hook_failed(struct run *r, const char *name, int status,
			const char *why)
{
	end(r, JOB_FAILED, status == 3 ? "space" : "hook", "%s: %s", name,
	    why);
}

/* ---- hashing a file without holding the loop ------------------------- */

static void hash_step(lws_sorted_usec_list_t *sul)
{
	struct run *r = lws_container_of(sul, struct run, sul_hash);
	char hex[DIGEST_HEX_LEN + 1] = "";
	uint64_t n = digest_reader_bytes(r->hr);
	bool done = false;
	err_t e = digest_reader_step(r->hr, HASH_SLICE, &done);

	if (!e && !done) {
		lws_sul_schedule(r->o->ctx, 0, &r->sul_hash, hash_step, 1);
		return;
	}
	n = digest_reader_bytes(r->hr);
	if (!e) {
		digest_hex(r->hd, hex);
		if (!hex[0])
			e = ERR_TLS;	/* logged by digest */
	}
	digest_reader_free(r->hr);
	r->hr = NULL;
	digest_free(r->hd);
	r->hd = NULL;
	r->hash_then(r, e, hex, n);
}

/* Hashes path a slice per loop turn, then then(r, e, hex, bytes). An
 * error that comes at once is returned and then() is not called. */
static err_t hash_async(struct run *r, const char *path,
			void (*then)(struct run *, err_t, const char *,
				     uint64_t))
{
	err_t e;

	r->hd = digest_new();
	if (!r->hd)
		return ERR_NOMEM;
	e = digest_reader_open(path, UINT64_MAX, r->hd, &r->hr);
	if (e) {
		digest_free(r->hd);
		r->hd = NULL;
		return e;
	}
	r->hash_then = then;
	lws_sul_schedule(r->o->ctx, 0, &r->sul_hash, hash_step, 1);
	return ERR_OK;
}

/* ---- the restart that ends a restore or an upgrade -------------------- */

static void restart_overdue(lws_sorted_usec_list_t *sul)
{
	struct run *r = lws_container_of(sul, struct run, sul_restart);

	end(r, JOB_FAILED, "hook", "the reboot hook succeeded but the system "
	    "did not restart within %d minutes", (int)(RESTART_WAIT_US /
						       (60 * LWS_USEC_PER_SEC)));
}

static void after_reboot(struct run *r, int status, const char *why)
{
	if (status) {
		hook_failed(r, "reboot", status, why);
		return;
	}
	/* The system is going down; the next start of the agent settles the
	 * job. Until then nothing else may start — but a system that does
	 * not go down must not keep every later job "busy" for ever. */
	LOGI("job %s: the system is restarting", r->rec.id);
	lws_sul_schedule(r->o->ctx, 0, &r->sul_restart, restart_overdue,
			 RESTART_WAIT_US);
}

static void restart(struct run *r, const char *why)
{
	report(r, JOB_PHASE_RESTART, 95, "%s; restarting the system", why);
	(void)run_hook(r, "reboot", NULL, 4, after_reboot);
}

/* ---- backup ----------------------------------------------------------- */

static void upload_progress(void *arg, uint64_t done, uint64_t total)
{
	struct run *r = arg;

	report(r, "upload", 50 + (int)(total ? done * 49 / total : 49),
	       "uploading %s: %llu of %llu bytes", r->name,
	       (unsigned long long)done, (unsigned long long)total);
}

static void upload_done(void *arg, const char *reason, const char *why)
{
	struct run *r = arg;

	xfer_free(r->xfer);
	r->xfer = NULL;
	if (unlink(r->file) != 0)
		LOGE("%s: %s", r->file, strerror(errno));
	if (reason) {
		end(r, JOB_FAILED, reason, "%s", why);
		return;
	}
	end(r, JOB_SUCCEEDED, NULL, "stored as %s (%llu bytes, sha256 %s)",
	    r->name, (unsigned long long)r->size, r->sha);
}

static void backup_unreadable(struct run *r, err_t e)
{
	(void)unlink(r->file);
	end(r, JOB_FAILED, "hook", "the backup hook's archive %s cannot be "
	    "read: %s", r->file, err_str(e));
}

static void backup_hashed(struct run *r, err_t e, const char *hex,
			  uint64_t n)
{
	struct xfer_cbs cbs = { .progress = upload_progress,
				.done = upload_done };

	if (!e) {
		memcpy(r->sha, hex, sizeof(r->sha));
		r->size = n;
		e = xfer_upload(r->o->xfers, r->rec.local ? "" : r->rec.id,
				r->name, "backup", r->file, r->size, r->sha,
				&cbs, r, &r->xfer);
	}
	if (e) {
		backup_unreadable(r, e);
		return;
	}
	report(r, "upload", 50, "uploading %s (%llu bytes)", r->name,
	       (unsigned long long)r->size);
}

static void after_backup(struct run *r, int status, const char *why)
{
	err_t e;

	if (status) {
		(void)unlink(r->file);
		hook_failed(r, "backup", status, why);
		return;
	}
	e = hash_async(r, r->file, backup_hashed);
	if (e)
		backup_unreadable(r, e);
}

static void start_backup(struct run *r)
{
	struct ops *o = r->o;
	const char *args[ELEMENTS_MAX + 2];
	char stamp[32];
	struct tm tm;
	time_t t = now_wall(o);

	gmtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(r->name, sizeof(r->name), "backup-%s-%s.tar.gz",
		 cstr(o, CONF_SYSTEM_SYSTEM_NAME), stamp);
	if (state_mkdirs(cstr(o, CONF_JOBS_WORK_DIR), 0700) != ERR_OK ||
	    !state_path(cstr(o, CONF_JOBS_WORK_DIR), r->name, r->file,
			sizeof(r->file))) {
		end(r, JOB_FAILED, "space", "no work directory %s",
		    cstr(o, CONF_JOBS_WORK_DIR));
		return;
	}
	args[0] = r->file;
	for (int i = 0; i < r->nel; i++)
		args[i + 1] = r->elements[i];
	args[r->nel + 1] = NULL;
	report(r, "backup", 0, "making the backup");
	(void)run_hook(r, "backup", args, 50, after_backup);
}

/* ---- restore ---------------------------------------------------------- */

static void after_restore(struct run *r, int status, const char *why)
{
	(void)unlink(r->file);
	if (status) {
		hook_failed(r, "restore", status, why);
		return;
	}
	restart(r, "restored");
}

static void download_progress(void *arg, uint64_t done, uint64_t total)
{
	struct run *r = arg;
	uint64_t all = r->op == OP_RESTORE ? total :
		       manifest_total_size(r->mf);
	uint64_t got = r->op == OP_RESTORE ? done : r->staged + done;

	report(r, "download", 5 + (int)(all ? got * 75 / all : 75),
	       "downloading %s: %llu of %llu bytes", r->op == OP_RESTORE ?
	       r->name : manifest_at(r->mf, r->comp)->name,
	       (unsigned long long)done, (unsigned long long)total);
}

static void restore_downloaded(void *arg, const char *reason,
			       const char *why)
{
	struct run *r = arg;
	const char *args[ELEMENTS_MAX + 2];

	xfer_free(r->xfer);
	r->xfer = NULL;
	if (reason) {
		end(r, JOB_FAILED, reason, "%s", why);
		return;
	}
	args[0] = r->file;
	for (int i = 0; i < r->nel; i++)
		args[i + 1] = r->elements[i];
	args[r->nel + 1] = NULL;
	report(r, "apply", 80, "restoring %s", r->name);
	(void)run_hook(r, "restore", args, 14, after_restore);
}

static void start_restore(struct run *r)
{
	struct ops *o = r->o;
	struct xfer_cbs cbs = { .progress = download_progress,
				.done = restore_downloaded };
	char fn[XFER_NAME_MAX + 16];

	snprintf(fn, sizeof(fn), "restore-%s", r->name);
	if (state_mkdirs(cstr(o, CONF_JOBS_WORK_DIR), 0700) != ERR_OK ||
	    !state_path(cstr(o, CONF_JOBS_WORK_DIR), fn, r->file,
			sizeof(r->file))) {
		end(r, JOB_FAILED, "space", "no work directory %s",
		    cstr(o, CONF_JOBS_WORK_DIR));
		return;
	}
	report(r, "download", 0, "downloading %s", r->name);
	if (xfer_download(o->xfers, r->rec.id, NULL, NULL, r->name, r->file,
			  XFER_SIZE_UNKNOWN, r->sha, &cbs, r, &r->xfer) !=
	    ERR_OK)
		end(r, JOB_FAILED, "transfer", "cannot start the download of "
		    "%s into %s", r->name, r->file);
}

/* ---- upgrade: staging ------------------------------------------------- */

static bool staged_path(const struct ops *o, const char *name, char *out,
			size_t cap)
{
	return state_path(cstr(o, CONF_JOBS_STAGING_DIR), name, out, cap);
}

/* The component's staged file has its size: worth hashing (path out). */
static bool staged_size_ok(const struct ops *o,
			   const struct manifest_component *c, char *path,
			   size_t cap)
{
	struct stat st;

	return staged_path(o, c->name, path, cap) && stat(path, &st) == 0 &&
	       S_ISREG(st.st_mode) && (uint64_t)st.st_size == c->size;
}

/* Whether a staging entry is a component of m or its partial download
 * (the manifest files are written anew once the components are there). */
static bool wanted(const struct manifest *m, const char *fn)
{
	char part[XFER_NAME_MAX + 32];

	for (size_t i = 0; i < manifest_count(m); i++) {
		const struct manifest_component *c = manifest_at(m, i);

		if (!strcmp(fn, c->name) ||
		    (xfer_part_path(c->name, c->sha256, part, sizeof(part)) &&
		     !strcmp(fn, part)))
			return true;
	}
	return false;
}

/* Removes from the staging area what another release left. */
static void clean_staging(const struct ops *o, const struct manifest *m)
{
	const char *dir = cstr(o, CONF_JOBS_STAGING_DIR);
	char path[STATE_PATH_MAX + 1];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || (m && wanted(m, de->d_name)))
			continue;
		if (state_path(dir, de->d_name, path, sizeof(path)) &&
		    unlink(path) == 0)
			LOGI("staging: removed %s", de->d_name);
	}
	closedir(d);
}

static void start_upgrade_apply(struct run *r);
static void stage_next(struct run *r);
static err_t write_staged(struct run *r);

static void component_done(void *arg, const char *reason, const char *why)
{
	struct run *r = arg;

	xfer_free(r->xfer);
	r->xfer = NULL;
	if (reason) {
		end(r, JOB_FAILED, reason, "%s", why);
		return;
	}
	r->staged += manifest_at(r->mf, r->comp)->size;
	r->comp++;
	stage_next(r);
}

static void stage_download(struct run *r);

/* A component found staged from an earlier transfer: whole and right? */
static void stage_checked(struct run *r, err_t e, const char *hex,
			  uint64_t n)
{
	const struct manifest_component *c = manifest_at(r->mf, r->comp);

	(void)n;
	if (e || strcmp(hex, c->sha256)) {
		stage_download(r);
		return;
	}
	LOGI("staging: %s is there already", c->name);
	r->staged += c->size;
	r->comp++;
	stage_next(r);
}

static void stage_next(struct run *r)
{
	struct ops *o = r->o;
	char path[STATE_PATH_MAX + 1];

	if (r->comp < manifest_count(r->mf)) {
		if (staged_size_ok(o, manifest_at(r->mf, r->comp), path,
				   sizeof(path)) &&
		    hash_async(r, path, stage_checked) == ERR_OK)
			return;
		stage_download(r);
		return;
	}
	/* Every component is there and was hashed on its way in (or just
	 * now): staged. */
	r->verified = true;
	if (write_staged(r) != ERR_OK) {
		end(r, JOB_FAILED, "space", "cannot write the manifest into "
		    "the staging area %s", cstr(o, CONF_JOBS_STAGING_DIR));
		return;
	}
	if (r->op == OP_TRANSFER) {
		end(r, JOB_SUCCEEDED, NULL, "staged release %s: %zu "
		    "components, %llu bytes", manifest_release(r->mf),
		    manifest_count(r->mf),
		    (unsigned long long)manifest_total_size(r->mf));
		return;
	}
	start_upgrade_apply(r);
}

static void stage_download(struct run *r)
{
	struct ops *o = r->o;
	struct xfer_cbs cbs = { .progress = download_progress,
				.done = component_done };
	char path[STATE_PATH_MAX + 1];
	const struct manifest_component *c = manifest_at(r->mf, r->comp);

	if (!staged_path(o, c->name, path, sizeof(path)) ||
	    xfer_download(o->xfers, r->rec.id, NULL, NULL, c->name, path, c->size,
			  c->sha256, &cbs, r, &r->xfer) != ERR_OK) {
		end(r, JOB_FAILED, "transfer", "cannot start the download of "
		    "%s", c->name);
		return;
	}
	report(r, "download", 5 + (int)(manifest_total_size(r->mf) ?
		r->staged * 75 / manifest_total_size(r->mf) : 0),
	       "downloading %s (%zu of %zu)", c->name, r->comp + 1,
	       manifest_count(r->mf));
}

static void after_check(struct run *r, int status, const char *why)
{
	struct ops *o = r->o;

	if (status) {
		hook_failed(r, "transfer-check", status, why);
		return;
	}
	/* Other releases' files go, this release's manifest too: it is
	 * written again only once every component is verified, so a failed
	 * transfer leaves nothing an upgrade would take as staged. */
	clean_staging(o, r->mf);
	stage_next(r);
}

/* Appends s to buf (JSON string contents); false when it does not fit. */
static bool json_text(char *buf, size_t cap, size_t *n, const char *s)
{
	for (; *s; s++) {
		if (*n + 3 >= cap)
			return false;
		if (*s == '"' || *s == '\\')
			buf[(*n)++] = '\\';
		buf[(*n)++] = *s;
	}
	buf[*n] = '\0';
	return true;
}

__attribute__((format(printf, 4, 5)))
static bool json_raw(char *buf, size_t cap, size_t *n, const char *fmt, ...)
{
	va_list ap;
	int w;

	va_start(ap, fmt);
	w = vsnprintf(buf + *n, cap - *n, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= cap - *n)
		return false;
	*n += (size_t)w;
	return true;
}

/*
 * The release is staged: the signed manifest and its signature (for the
 * upgrade's second check) and the compact form the upgrade hook reads,
 * made from what was verified (names and hashes are [A-Za-z0-9._-] and
 * hex; versions may hold a quote, escaped).
 */
static err_t write_staged(struct run *r)
{
	struct ops *o = r->o;
	char path[STATE_PATH_MAX + 1];
	char buf[MANIFEST_MAX_TEXT * 2];
	size_t n = 0;
	bool ok;

	ok = json_raw(buf, sizeof(buf), &n, "{\"release\":\"%s\",\"profile\":"
		      "\"%s\",\"components\":[", manifest_release(r->mf),
		      manifest_profile(r->mf));
	for (size_t i = 0; ok && i < manifest_count(r->mf); i++) {
		const struct manifest_component *c = manifest_at(r->mf, i);

		ok = json_raw(buf, sizeof(buf), &n, "%s{\"name\":\"%s\","
			      "\"version\":\"", i ? "," : "", c->name) &&
		     json_text(buf, sizeof(buf), &n, c->version) &&
		     json_raw(buf, sizeof(buf), &n, "\",\"size\":%llu,"
			      "\"sha256\":\"%s\"}", (unsigned long long)c->size,
			      c->sha256);
	}
	ok = ok && json_raw(buf, sizeof(buf), &n, "]}\n");
	if (!ok || !staged_path(o, HOOK_MANIFEST_FILE, path, sizeof(path)) ||
	    state_write(path, buf, n) != ERR_OK ||
	    !staged_path(o, SIGNATURE_FILE, path, sizeof(path)) ||
	    state_write(path, r->sig, strlen(r->sig)) != ERR_OK ||
	    !staged_path(o, MANIFEST_FILE, path, sizeof(path)) ||
	    state_write(path, r->mtext, strlen(r->mtext)) != ERR_OK)
		return ERR_IO;
	return ERR_OK;
}

static void start_transfer(struct run *r)
{
	struct ops *o = r->o;
	char bytes[24];
	const char *args[3];
	uint64_t need = 0;
	char path[STATE_PATH_MAX + 1], part[STATE_PATH_MAX + 32];
	struct stat st;

	if (state_mkdirs(cstr(o, CONF_JOBS_STAGING_DIR), 0700) != ERR_OK) {
		end(r, JOB_FAILED, "space", "no staging directory %s",
		    cstr(o, CONF_JOBS_STAGING_DIR));
		return;
	}
	/* Only what is still missing needs room: a resumed transfer holds
	 * some of it already. */
	for (size_t i = 0; i < manifest_count(r->mf); i++) {
		const struct manifest_component *c = manifest_at(r->mf, i);
		uint64_t held = 0;

		if (staged_path(o, c->name, path, sizeof(path)) &&
		    stat(path, &st) == 0 && (uint64_t)st.st_size == c->size)
			continue;
		if (staged_path(o, c->name, path, sizeof(path)) &&
		    xfer_part_path(path, c->sha256, part, sizeof(part)) &&
		    stat(part, &st) == 0 && (uint64_t)st.st_size <= c->size)
			held = (uint64_t)st.st_size;
		need += c->size - held;
	}
	snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)need);
	args[0] = cstr(o, CONF_JOBS_STAGING_DIR);
	args[1] = bytes;
	args[2] = NULL;
	report(r, "check", 2, "checking the staging space for %s bytes",
	       bytes);
	(void)run_hook(r, "transfer-check", args, 3, after_check);
}

/* ---- upgrade: apply --------------------------------------------------- */

static void after_upgrade(struct run *r, int status, const char *why)
{
	if (status) {
		hook_failed(r, "upgrade", status, why);
		return;
	}
	snprintf(r->rec.target, sizeof(r->rec.target), "%s",
		 manifest_release(r->mf));
	r->rec.phones = r->phones;
	restart(r, "upgrade applied");
}

static void apply_staged(struct run *r);
static void verify_next(struct run *r);

static void staged_mismatch(struct run *r)
{
	const struct manifest_component *c = manifest_at(r->mf, r->comp);
	char path[STATE_PATH_MAX + 1];

	/* A staged file that is not what was signed: gone, so a new
	 * transfer fetches it again. */
	if (staged_path(r->o, c->name, path, sizeof(path)))
		(void)unlink(path);
	end(r, JOB_FAILED, "corrupt", "staged component %s is missing or does "
	    "not match the manifest (size %llu, sha256 %s); transfer it again",
	    c->name, (unsigned long long)c->size, c->sha256);
}

static void verify_checked(struct run *r, err_t e, const char *hex,
			   uint64_t n)
{
	(void)n;
	if (e || strcmp(hex, manifest_at(r->mf, r->comp)->sha256)) {
		staged_mismatch(r);
		return;
	}
	r->comp++;
	verify_next(r);
}

/* Every staged component hashed again before it is applied. */
static void verify_next(struct run *r)
{
	char path[STATE_PATH_MAX + 1];

	if (r->comp == manifest_count(r->mf)) {
		apply_staged(r);
		return;
	}
	if (!staged_size_ok(r->o, manifest_at(r->mf, r->comp), path,
			    sizeof(path)) ||
	    hash_async(r, path, verify_checked) != ERR_OK)
		staged_mismatch(r);
}

static void start_upgrade_apply(struct run *r)
{
	if (r->verified) {	/* transfer_upgrade: staged and checked now */
		apply_staged(r);
		return;
	}
	report(r, "verify", 82, "verifying the staged release %s",
	       manifest_release(r->mf));
	r->comp = 0;
	verify_next(r);
}

static void apply_staged(struct run *r)
{
	struct ops *o = r->o;
	char mpath[STATE_PATH_MAX + 1];
	const char *args[3];

	/* transfer_upgrade staged it just now (r->verified); an upgrade of a
	 * release staged by an older agent may lack upgrade.json. */
	if ((!r->verified && write_staged(r) != ERR_OK) ||
	    !staged_path(o, HOOK_MANIFEST_FILE, mpath, sizeof(mpath))) {
		end(r, JOB_FAILED, "space", "cannot write the manifest into "
		    "the staging area %s", cstr(o, CONF_JOBS_STAGING_DIR));
		return;
	}
	args[0] = cstr(o, CONF_JOBS_STAGING_DIR);
	args[1] = mpath;
	args[2] = NULL;
	report(r, "apply", 85, "applying release %s", manifest_release(r->mf));
	(void)run_hook(r, "upgrade", args, 10, after_upgrade);
}

/* ---- certificate ------------------------------------------------------ */

/* The name the system certificate must carry. */
static const char *cert_name(const struct ops *o)
{
	const char *n = cstr(o, CONF_CERT_NAME);

	return *n ? n : cstr(o, CONF_SYSTEM_SYSTEM_NAME);
}

static void after_certificate(struct run *r, int status, const char *why)
{
	const struct cert_info *ci = cert_pair_info(r->cert);
	char until[32];

	(void)unlink(r->key_file);
	(void)unlink(r->cert_file);
	r->key_file[0] = r->cert_file[0] = '\0';
	if (status) {
		/* The hook changes nothing when it fails (HOOKS.md): the
		 * record stays as it is. */
		hook_failed(r, "certificate", status, why);
		return;
	}
	if (cert_store_commit(r->o->certs, r->cert) != ERR_OK) {
		end(r, JOB_FAILED, "space", "the certificate was installed, "
		    "but the agent could not record it (see the agent's log)");
		return;
	}
	cert_time_text(ci->not_after, until, sizeof(until));
	end(r, JOB_SUCCEEDED, NULL, "%s for %s, serial %s, valid until %s",
	    r->rollback ? "reinstalled the previous certificate" :
	    "installed the certificate", cert_name(r->o), ci->serial, until);
}

static void start_certificate(struct run *r)
{
	struct ops *o = r->o;
	const char *dir = cstr(o, CONF_JOBS_WORK_DIR);
	const char *args[3];

	if (state_mkdirs(dir, 0700) != ERR_OK ||
	    !state_path(dir, "certificate.pem", r->cert_file,
			sizeof(r->cert_file)) ||
	    !state_path(dir, "certificate.key", r->key_file,
			sizeof(r->key_file))) {
		end(r, JOB_FAILED, "space", "no work directory %s", dir);
		return;
	}
	if (cert_pair_write(r->cert, r->cert_file, r->key_file) != ERR_OK) {
		end(r, JOB_FAILED, "space", "cannot write the certificate into "
		    "the work directory %s (see the agent's log)", dir);
		return;
	}
	args[0] = r->cert_file;
	args[1] = r->key_file;
	args[2] = NULL;
	report(r, "apply", 10, "%s for %s", r->rollback ?
	       "reinstalling the previous certificate" :
	       "installing the certificate", cert_name(o));
	(void)run_hook(r, "certificate", args, 85, after_certificate);
}

/*
 * Everything of a certificate job before it is accepted: its arguments and
 * the whole of cert_verify() (or, for a rollback, the previous pair checked
 * again: the CA or the name may have changed since, or it expired), so a
 * refused certificate is "rejected" and the installed one untouched.
 */
static const char *check_certificate(struct run *r, const struct proto_msg *m,
				     char *why, size_t cap)
{
	struct ops *o = r->o;
	const char *ca = cstr(o, CONF_CERT_CA_FILE);
	struct cert_req q = {
		.ca_file = *ca ? ca : cstr(o, CONF_COM_CA_FILE),
		.name = cert_name(o),
		.now = (int64_t)now_wall(o),
	};
	struct cert_texts prev;
	int nchain = proto_count(m, "args.chain");
	const char *reason;
	char key[32], text[200];
	int64_t n;
	err_t e;

	/* Absent is false; anything but a boolean is refused. */
	if (proto_str(m, "args.rollback") || proto_int(m, "args.rollback", &n)) {
		snprintf(why, cap, "args.rollback: must be true or false");
		return "invalid";
	}
	(void)proto_bool(m, "args.rollback", &r->rollback);
	if (proto_str(m, "args.chain")) {
		snprintf(why, cap, "args.chain: must be an array of PEM "
			 "certificates");
		return "invalid";
	}
	if (!r->rollback) {
		if (nchain > CERT_CHAIN_MAX) {
			snprintf(why, cap, "args.chain: at most %d intermediate "
				 "certificates, got %d", CERT_CHAIN_MAX, nchain);
			return "invalid";
		}
		q.cert = proto_str(m, "args.cert");
		q.key = proto_str(m, "args.key");
		for (int i = 0; i < nchain; i++) {
			snprintf(key, sizeof(key), "args.chain.%d", i);
			q.chain[i] = proto_str(m, key);
		}
		q.nchain = (size_t)nchain;
		return cert_verify(&q, &r->cert, why, cap);
	}
	if (proto_str(m, "args.cert") || proto_str(m, "args.key") || nchain) {
		snprintf(why, cap, "args.rollback reinstalls the previous "
			 "certificate: cert, key and chain must not be given");
		return "invalid";
	}
	e = cert_store_previous(o->certs, &prev, text, sizeof(text));
	if (e == ERR_NOTFOUND) {
		snprintf(why, cap, "there is no previous certificate to roll "
			 "back to");
		return "no_previous";
	}
	if (e) {
		snprintf(why, cap, "the previous certificate cannot be "
			 "reinstalled: %s", text);
		return "no_previous";
	}
	q.cert = prev.cert;
	q.key = prev.key;
	for (size_t i = 0; i < prev.nchain; i++)
		q.chain[i] = prev.chain[i];
	q.nchain = prev.nchain;
	reason = cert_verify(&q, &r->cert, text, sizeof(text));
	cert_texts_clear(&prev);
	if (reason)
		snprintf(why, cap, "the previous certificate cannot be "
			 "reinstalled: %s", text);
	return reason;
}

/* ---- accepting a job -------------------------------------------------- */

static bool element_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= ELEMENT_MAX &&
	       (s[0] == '_' || (s[0] >= '0' && s[0] <= '9') ||
		(s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')) &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		      "0123456789._-") == n;
}

/* args.elements and args.vmpro; false with why on a bad one. */
static bool read_elements(struct run *r, const struct proto_msg *m,
			  char *why, size_t cap)
{
	const char *v = proto_str(m, "args.vmpro");
	int n = proto_count(m, "args.elements");
	char key[40];

	if (n > ELEMENTS_MAX) {
		snprintf(why, cap, "args.elements: more than %d elements",
			 ELEMENTS_MAX);
		return false;
	}
	for (int i = 0; i < n; i++) {
		const char *e;

		snprintf(key, sizeof(key), "args.elements.%d", i);
		e = proto_str(m, key);
		if (!element_ok(e)) {
			snprintf(why, cap, "args.elements[%d]: not a name of "
				 "1..64 letters, digits, '.', '_', '-'", i);
			return false;
		}
		snprintf(r->elements[i], sizeof(r->elements[i]), "%s", e);
	}
	r->nel = n;
	if (v && strcmp(v, "none") && strcmp(v, "config") && strcmp(v, "full")) {
		snprintf(why, cap, "args.vmpro: must be none, config or full");
		return false;
	}
	snprintf(r->vmpro, sizeof(r->vmpro), "%s",
		 v ? v : custom_vmpro(r->o->custom));
	return true;
}

/* Reads a small staged file whole (NUL-terminated). */
static bool read_staged(const struct ops *o, const char *name, char *buf,
			size_t cap)
{
	char path[STATE_PATH_MAX + 1];
	size_t len;

	if (!staged_path(o, name, path, sizeof(path)) ||
	    state_read(path, buf, cap - 1, &len) != ERR_OK)
		return false;
	buf[len] = '\0';
	return true;
}

/*
 * The manifest of a transfer or upgrade: signature, form, profile and
 * downgrade. Returns the rejection reason (why filled), or NULL.
 */
static const char *check_manifest(struct run *r, char *why, size_t cap)
{
	struct ops *o = r->o;
	struct manifest_keys *keys = NULL;
	char running[64];
	const char *reason = NULL;
	bool ok;
	int cmp;

	if (manifest_keys_load(cstr(o, CONF_JOBS_TRUSTED_KEYS), &keys, why,
			       cap) != ERR_OK) {
		reason = "signature";
		goto out;
	}
	if (manifest_verify(keys, r->mtext, strlen(r->mtext), r->sig, why,
			    cap) != ERR_OK) {
		reason = "signature";
		goto out;
	}
	if (manifest_parse(r->mtext, strlen(r->mtext), &r->mf, why, cap) !=
	    ERR_OK) {
		reason = "invalid";
		goto out;
	}
	for (size_t i = 0; i < manifest_count(r->mf); i++) {
		const char *n = manifest_at(r->mf, i)->name;
		size_t len = strlen(n);

		/* Staged next to the manifest files and partial downloads. */
		if (!strcmp(n, MANIFEST_FILE) || !strcmp(n, SIGNATURE_FILE) ||
		    !strcmp(n, HOOK_MANIFEST_FILE) ||
		    (len > 5 && !strcmp(n + len - 5, ".part"))) {
			snprintf(why, cap, "component name %s is reserved", n);
			reason = "invalid";
			goto out;
		}
	}
	if (strcmp(manifest_profile(r->mf), cstr(o, CONF_SYSTEM_PROFILE))) {
		snprintf(why, cap, "the release is for %s, this system is %s",
			 manifest_profile(r->mf), cstr(o, CONF_SYSTEM_PROFILE));
		reason = "invalid";
		goto out;
	}
	if (conf_platform(o->conf)->read_version(cstr(o, CONF_SYSTEM_ROOT),
						 running, sizeof(running)) !=
	    ERR_OK)
		snprintf(running, sizeof(running), "unknown");
	cmp = manifest_version_cmp(manifest_release(r->mf), running, &ok);
	if (ok && cmp < 0 && !r->allow_downgrade) {
		snprintf(why, cap, "release %s is older than the running %s "
			 "and the job does not allow a downgrade",
			 manifest_release(r->mf), running);
		reason = "downgrade";
	}
out:
	manifest_keys_free(keys);
	return reason;
}

/* Everything about the job that can be checked before it starts. */
static const char *check_args(struct run *r, const struct proto_msg *m,
			      char *why, size_t cap)
{
	struct ops *o = r->o;
	const char *s;

	(void)proto_bool(m, "args.allow_downgrade", &r->allow_downgrade);
	(void)proto_bool(m, "args.restart_phones", &r->phones);
	switch (r->op) {
	case OP_BACKUP:
		return read_elements(r, m, why, cap) ? NULL : "invalid";
	case OP_RESTORE:
		if (!read_elements(r, m, why, cap))
			return "invalid";
		s = proto_str(m, "args.backup");
		if (!xfer_name_ok(s)) {
			snprintf(why, cap, "args.backup: the name of a stored "
				 "backup is required");
			return "invalid";
		}
		snprintf(r->name, sizeof(r->name), "%s", s);
		s = proto_str(m, "args.sha256");
		if (!s || !digest_hex_valid(s)) {
			snprintf(why, cap, "args.sha256: the backup's SHA-256 "
				 "(64 lower-case hex digits) is required");
			return "invalid";
		}
		memcpy(r->sha, s, sizeof(r->sha));
		return NULL;
	case OP_FETCH_LOGS:
		return NULL;
	case OP_CERTIFICATE:
		return check_certificate(r, m, why, cap);
	case OP_REFRESH_CUSTOM: {
		int64_t n;

		/* Absent is false; anything but a boolean is refused. */
		if (proto_str(m, "args.prune") ||
		    proto_int(m, "args.prune", &n)) {
			snprintf(why, cap, "args.prune: must be true or false");
			return "invalid";
		}
		(void)proto_bool(m, "args.prune", &r->prune);
		return NULL;
	}
	case OP_TRANSFER:
	case OP_TRANSFER_UPGRADE:
	case OP_UPGRADE:
		s = proto_str(m, "args.manifest");
		if (r->op == OP_UPGRADE) {
			if (!read_staged(o, MANIFEST_FILE, r->mtext,
					 sizeof(r->mtext)) ||
			    !read_staged(o, SIGNATURE_FILE, r->sig,
					 sizeof(r->sig))) {
				snprintf(why, cap, "no release is staged: run a "
					 "transfer first");
				return "nothing_staged";
			}
			if (s && strcmp(s, r->mtext)) {
				snprintf(why, cap, "args.manifest is not the "
					 "staged release's manifest");
				return "invalid";
			}
		} else {
			const char *sig = proto_str(m, "args.signature");

			if (!s || !*s || strlen(s) > MANIFEST_MAX_TEXT ||
			    !sig || !*sig || strlen(sig) > SIGNATURE_MAX) {
				snprintf(why, cap, "args.manifest and "
					 "args.signature are required");
				return "invalid";
			}
			snprintf(r->mtext, sizeof(r->mtext), "%s", s);
			snprintf(r->sig, sizeof(r->sig), "%s", sig);
		}
		return check_manifest(r, why, cap);
	}
	return "unsupported";
}

static int op_lookup(const char *s)
{
	for (size_t i = 0; i < NOPS; i++)
		if (!strcmp(s, op_names[i]))
			return (int)i;
	return -1;
}

static void fetch_progress(void *arg, unsigned done, unsigned total,
			   const char *name)
{
	struct run *r = arg;

	report(r, "upload", total ? (int)(done * 99 / total) : 0,
	       "uploading log file %u of %u: %s", done + 1, total, name);
}

static void fetch_done(void *arg, const char *reason, const char *why)
{
	struct run *r = arg;

	if (reason)
		end(r, JOB_FAILED, reason, "%s", why);
	else
		end(r, JOB_SUCCEEDED, NULL, "%s", why);
}

static void start_fetch(struct run *r)
{
	struct logs_fetch_cbs cbs = { .progress = fetch_progress,
				      .done = fetch_done };
	err_t e;

	r->o->side = r;
	report(r, "upload", 0, "closing the current log file");
	e = logs_fetch(r->o->logs, r->rec.id, &cbs, r);
	if (e)
		end(r, JOB_FAILED, "transfer", "%s",
		    e == ERR_STATE ? "the log store is not available (see the "
		    "agent's log)" : "another log upload waits");
}

static void refresh_progress(void *arg, const char *phase, int pct,
			     const char *text)
{
	report(arg, phase, pct, "%s", text);
}

static void refresh_done(void *arg, const char *reason, const char *text)
{
	struct run *r = arg;

	if (r->first)
		custom_first_refreshed(r->o->custom);
	end(r, reason ? JOB_FAILED : JOB_SUCCEEDED, reason, "%s", text);
}

static void start_refresh(struct run *r)
{
	struct custom_refresh_cbs cbs = { .progress = refresh_progress,
					  .done = refresh_done };

	report(r, "list", 0, "starting a custom-files refresh");
	if (custom_refresh(r->o->custom, r->rec.local ? "" : r->rec.id,
			   r->prune, &cbs, r) != ERR_OK)
		end(r, JOB_FAILED, "space", "cannot start the refresh (see "
		    "the agent's log)");
}

static void start(struct run *r)
{
	struct ops *o = r->o;

	if (r->op == OP_FETCH_LOGS) {
		start_fetch(r);
		return;
	}
	if (r->op == OP_REFRESH_CUSTOM) {
		r->o->refresh = r;
		start_refresh(r);
		return;
	}
	o->run = r;
	if (o->cbs.busy)
		o->cbs.busy(o->arg);
	switch (r->op) {
	case OP_BACKUP:
		start_backup(r);
		break;
	case OP_RESTORE:
		start_restore(r);
		break;
	case OP_TRANSFER:
	case OP_TRANSFER_UPGRADE:
		start_transfer(r);
		break;
	case OP_UPGRADE:
		start_upgrade_apply(r);
		break;
	case OP_CERTIFICATE:
		start_certificate(r);
		break;
	case OP_REFRESH_CUSTOM:
	case OP_FETCH_LOGS:
		break;
	}
}

static struct run *run_new(struct ops *o, const char *id, const char *op)
{
	struct run *r = calloc(1, sizeof(*r));

	if (!r) {
		LOGE("out of memory for job %s", id);
		return NULL;
	}
	r->o = o;
	snprintf(r->rec.id, sizeof(r->rec.id), "%s", id);
	snprintf(r->rec.op, sizeof(r->rec.op), "%s", op);
	r->rec.created = r->rec.updated = (int64_t)now_wall(o);
	return r;
}

bool ops_job(struct ops *o, const struct proto_msg *m)
{
	const char *op = proto_str(m, "op");
	char why[256] = "";
	const char *reason = NULL;
	struct run *r;
	int k = op ? op_lookup(op) : -1;
	char opname[24];

	/* The op as far as it fits whole characters, for the record. */
	copy_utf8(opname, sizeof(opname),
		  k >= 0 ? op_names[k] : op ? op : "?");
	r = run_new(o, proto_str(m, "job"), opname);
	if (!r)
		return false;
	r->re = proto_id(m);
	if (k < 0) {
		reason = "unsupported";
		snprintf(why, sizeof(why), "operation %.40s is not supported "
			 "by this agent", op ? op : "");
	} else if (k == OP_FETCH_LOGS) {
		/* Not one of the exclusive operations: beside them. */
		r->op = OP_FETCH_LOGS;
		if (o->side) {
			reason = "busy";
			snprintf(why, sizeof(why), "a log upload runs: job %s",
				 o->side->rec.id);
		} else if (!settings_get(o->settings, SET_LOGTRANSFER)) {
			reason = "not_allowed";
			snprintf(why, sizeof(why), "log transfer is off on this "
				 "system (setting logtransfer)");
		}
	} else if (k == OP_REFRESH_CUSTOM) {
		r->op = OP_REFRESH_CUSTOM;
		if (o->refresh) {
			reason = "busy";
			snprintf(why, sizeof(why), "a custom-files refresh "
				 "runs: %s", o->refresh->rec.id);
		} else {
			reason = check_args(r, m, why, sizeof(why));
		}
	} else if (o->run) {
		reason = "busy";
		snprintf(why, sizeof(why), "another operation runs: %s %s",
			 o->run->rec.op, o->run->rec.local ? "(automatic)"
							   : o->run->rec.id);
	} else if (k == OP_CERTIFICATE) {
		/*
		 * Exclusive (busy above), though it takes seconds: the hook
		 * replaces files a backup is archiving and a restore is
		 * replacing (etc/ipoffice on a server) and has the services
		 * reload their certificate, which must not race an upgrade
		 * restarting them. Gated by its own setting, not
		 * remoteupgrade.
		 */
		r->op = OP_CERTIFICATE;
		if (!settings_get(o->settings, SET_CENTRALCERT)) {
			reason = "not_allowed";
			snprintf(why, sizeof(why), "certificate management is "
				 "off on this system (setting centralcert)");
		} else {
			reason = check_args(r, m, why, sizeof(why));
		}
	} else if (!settings_get(o->settings, SET_REMOTEUPGRADE)) {
		reason = "not_allowed";
		snprintf(why, sizeof(why), "remote operations are off on this "
			 "system (setting remoteupgrade)");
	} else {
		r->op = (enum op)k;
		reason = check_args(r, m, why, sizeof(why));
	}
	r->rec.state = reason ? JOB_REJECTED : JOB_ACCEPTED;
	if (reason)
		snprintf(r->rec.reason, sizeof(r->rec.reason), "%s", reason);
	/* Journaled before anything is said or started: a job the journal
	 * cannot hold is not run (it could run twice), and the caller
	 * answers it. */
	if (save(r) != ERR_OK) {
		run_free(r);
		return false;
	}
	if (reason) {
		end(r, JOB_REJECTED, reason, "%s", why);
		return true;
	}
	tell(r);
	start(r);
	return true;
}

const char *ops_current(const struct ops *o)
{
	return o->run ? o->run->rec.op : "idle";
}

bool ops_cert_info(const struct ops *o, struct cert_info *out)
{
	return o && cert_store_info(o->certs, out);
}

/* ---- the automatic backup --------------------------------------------- */

static bool auto_ready(void *arg, const char **why)
{
	struct ops *o = arg;

	if (o->run) {
		*why = "another operation runs";
		return false;
	}
	if (!settings_get(o->settings, SET_REMOTEUPGRADE)) {
		*why = "remoteupgrade is off";
		return false;
	}
	return true;
}

/* The agent's own job r (set up by the caller): journaled, then started.
 * ERR_IO (and r freed) when the journal cannot take it (logged there). */
static err_t start_local(struct run *r)
{
	r->rec.local = true;
	r->rec.state = JOB_ACCEPTED;
	if (save(r) != ERR_OK) {
		run_free(r);
		return ERR_IO;
	}
	start(r);
	return ERR_OK;
}

static void auto_run(void *arg, const char *day)
{
	struct ops *o = arg;
	char id[40];
	struct run *r;

	snprintf(id, sizeof(id), "auto-backup-%s", day);
	r = run_new(o, id, "backup");
	if (!r)
		return;
	r->op = OP_BACKUP;
	snprintf(r->vmpro, sizeof(r->vmpro), "%s", custom_vmpro(o->custom));
	(void)start_local(r);
}

err_t ops_refresh_local(struct ops *o, bool prune, bool first, char *id,
			size_t idcap, char *why, size_t whycap)
{
	char base[JOB_ID_MAX + 1];
	struct run *r;

	if (o->refresh) {
		snprintf(why, whycap, "a custom-files refresh runs: %s",
			 o->refresh->rec.id);
		return ERR_STATE;
	}
	snprintf(base, sizeof(base), "%s-%lld", first ? "first-refresh" :
		 "refresh", (long long)now_wall(o));
	snprintf(id, idcap, "%s", base);
	for (int i = 2; jobs_find(o->jobs, id) && i < 100; i++)
		snprintf(id, idcap, "%s-%d", base, i);
	r = run_new(o, id, "refresh_custom");
	if (!r) {
		snprintf(why, whycap, "out of memory");
		return ERR_NOMEM;
	}
	r->op = OP_REFRESH_CUSTOM;
	r->prune = prune;
	r->first = first;
	if (start_local(r) != ERR_OK) {
		snprintf(why, whycap, "the job journal cannot take it (see the "
			 "agent's log)");
		return ERR_IO;
	}
	return ERR_OK;
}

time_t ops_next_auto(const struct ops *o)
{
	return o->daily && conf_num(o->conf, CONF_JOBS_AUTO_BACKUP) ?
	       daily_next(o->daily) : 0;
}

void ops_clock_offset(struct ops *o, int64_t offset)
{
	if (o->daily)
		daily_clock_offset(o->daily, offset);
}

/* ---- start: jobs that restarted the system ---------------------------- */

static void after_phones(struct run *r, int status, const char *why)
{
	if (status) {
		end(r, JOB_FAILED, "hook", "release %s runs, but the phones "
		    "were not restarted: %s", r->rec.target, why);
		return;
	}
	clean_staging(r->o, NULL);
	end(r, JOB_SUCCEEDED, NULL, "the system runs %s; phones restarted",
	    r->rec.target);
}

/* What no job uses any more in work_dir: archives of backups cut short,
 * downloaded restores; partial downloads once they are old. */
static void clean_work(const struct ops *o)
{
	const char *dir = cstr(o, CONF_JOBS_WORK_DIR);
	char path[STATE_PATH_MAX + 1];
	time_t now = time(NULL);
	struct dirent *de;
	struct stat st;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		bool part = n > 5 && !strcmp(de->d_name + n - 5, ".part");

		if (de->d_name[0] == '.' ||
		    !state_path(dir, de->d_name, path, sizeof(path)) ||
		    lstat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
		    (part && now - st.st_mtime < PART_MAX_AGE_S))
			continue;
		if (unlink(path) == 0)
			LOGI("%s: removed %s, left by an earlier run", dir,
			     de->d_name);
	}
	closedir(d);
}

/* The job restarted the system and the agent is back: did it work? */
static void settle(struct ops *o, const struct job_rec *rec)
{
	char running[64];
	struct run *r = run_new(o, rec->id, rec->op);
	bool ok;

	if (!r)
		return;
	r->rec = *rec;
	if (!strcmp(rec->op, "restore")) {
		end(r, JOB_SUCCEEDED, NULL, "restored; the system restarted");
		return;
	}
	if (conf_platform(o->conf)->read_version(cstr(o, CONF_SYSTEM_ROOT),
						 running, sizeof(running)) !=
	    ERR_OK)
		snprintf(running, sizeof(running), "unknown");
	if (manifest_version_cmp(running, rec->target, &ok) != 0 || !ok) {
		end(r, JOB_FAILED, "version", "the system runs %s after the "
		    "upgrade to %s: it was rolled back", running, rec->target);
		return;
	}
	if (rec->phones) {
		o->run = r;
		if (o->cbs.busy)
			o->cbs.busy(o->arg);
		report(r, "phones", 97, "release %s runs; restarting the "
		       "phones", rec->target);
		(void)run_hook(r, "restart-phones", NULL, 2, after_phones);
		return;
	}
	clean_staging(o, NULL);
	end(r, JOB_SUCCEEDED, NULL, "the system runs %s", rec->target);
}

void ops_start(struct ops *o)
{
	for (size_t i = jobs_count(o->jobs); i-- > 0;) {
		const struct job_rec *rec = jobs_at(o->jobs, i);

		struct job_rec copy = *rec;
		struct run *r;

		if (!job_awaits_restart(rec))
			continue;
		if (!o->run) {
			settle(o, &copy);
			continue;
		}
		/* Two jobs restarting the system cannot both have run: the
		 * journal is damaged; the older one is not settled. */
		r = run_new(o, rec->id, rec->op);
		if (r) {
			r->rec = copy;
			end(r, JOB_FAILED, "interrupted", "another job was "
			    "restarting the system too");
		}
	}
	if (!o->run)
		clean_work(o);
	if (o->daily && conf_num(o->conf, CONF_JOBS_AUTO_BACKUP))
		daily_plan(o->daily);
}

/* ---- life ------------------------------------------------------------- */

struct ops *ops_new(struct lws_context *ctx, const struct conf *c,
		    const struct settings *s, struct jobs *jobs,
		    struct xfers *x, struct logs *logs, struct custom *custom,
		    const struct ops_cbs *cbs, void *arg)
{
	struct ops *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->ctx = ctx;
	o->conf = c;
	o->settings = s;
	o->jobs = jobs;
	o->xfers = x;
	o->logs = logs;
	o->custom = custom;
	o->cbs = *cbs;
	o->arg = arg;
	if (!state_path(conf_str(c, CONF_SYSTEM_STATE_DIR), AUTO_STATE,
			o->auto_state, sizeof(o->auto_state))) {
		free(o);
		return NULL;
	}
	{
		struct daily_cfg dc = {
			.win = &nightly_backup_window,
			.minute = nightly_minute(conf_str(c, CONF_SYSTEM_CUSTOMER_ID),
						 conf_str(c, CONF_SYSTEM_SYSTEM_NAME)),
			.state_path = o->auto_state,
			.what = "automatic backup",
			.ready = auto_ready, .run = auto_run, .arg = o,
		};

		o->daily = daily_new(ctx, &dc);
	}
	if (o->daily)
		o->certs = cert_store_new(conf_str(c, CONF_SYSTEM_STATE_DIR));
	if (!o->certs) {
		daily_free(o->daily);
		free(o);
		return NULL;
	}
	return o;
}

void ops_shutdown(struct ops *o)
{
	if (!o)
		return;
	daily_free(o->daily);
	o->daily = NULL;
	lws_sul_cancel(&o->sul_held);
	for (size_t i = 0; i < o->nheld; i++)
		LOGE("job %s (%s): its final state was never journaled; the "
		     "next start reports it interrupted", o->held[i].rec.id,
		     o->held[i].rec.op);
	o->nheld = 0;
	if (o->run) {
		/* Left as journaled: interrupted, or settled after a
		 * restart the job asked for. */
		run_free(o->run);
		o->run = NULL;
	}
	if (o->side) {
		logs_fetch_cancel(o->logs);
		run_free(o->side);
		o->side = NULL;
	}
	/* The custom module (shut down first) dropped the refresh. */
	run_free(o->refresh);
	o->refresh = NULL;
}

void ops_free(struct ops *o)
{
	if (!o)
		return;
	run_free(o->run);
	run_free(o->side);
	run_free(o->refresh);
	cert_store_free(o->certs);
	free(o);
}
