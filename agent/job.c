/*
 * job — the job journal (see job.h).
 *
 * The journal is a fixed array of JOBS_MAX entries kept in iteration order
 * (newest first), so every answer is a pointer into it and nothing is
 * allocated after jobs_open(). A change is made to a second array, written
 * to the file from there and only then copied over, so memory and file
 * never disagree after a failed write. The buffer for the file's text is
 * part of the journal too; a static assertion ties its size to JOBS_MAX
 * lines of the longest form, so a write never fails for want of room.
 *
 * jobs_record() refuses what the file could not give back unchanged (text
 * that is not UTF-8 would come back as U+FFFD, and longer), so a reload
 * always sees what was recorded.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "job.h"
#include "log.h"
#include "proto.h"
#include "state.h"

#define LOG_MODULE "job"

#define FILE_NAME	"jobs"
#define ECHO_MAX	32	/* of a state name quoted in a message */

#define STR_(x)		#x
#define STR(x)		STR_(x)
#define FIELD_CAP(f)	sizeof(((struct job_rec *)0)->f)

/*
 * The longest line: 250 bytes with empty texts and the longest numbers
 * (the newline included, some spare on top), an id's '"' and '\' escaped
 * as two bytes (it has no control characters), every byte of the other
 * texts escaped as \u00XX.
 */
#define LINE_FIXED	260
#define LINE_CAP	(LINE_FIXED + 2 * JOB_ID_MAX + \
			 6 * (FIELD_CAP(op) - 1 + FIELD_CAP(reason) - 1 + \
			      FIELD_CAP(message) - 1 + FIELD_CAP(phase) - 1 + \
			      FIELD_CAP(target) - 1))
_Static_assert(JOBS_MAX * LINE_CAP <= JOBS_FILE_MAX,
	       "JOBS_FILE_MAX cannot hold a full journal");
_Static_assert(LINE_CAP <= PROTO_MAX_MSG,
	       "a journal line is too long to parse");

static const char *const state_names[] = {
	[JOB_ACCEPTED] = "accepted",
	[JOB_RUNNING] = "running",
	[JOB_SUCCEEDED] = "succeeded",
	[JOB_FAILED] = "failed",
	[JOB_REJECTED] = "rejected",
};
#define NSTATES (sizeof(state_names) / sizeof(state_names[0]))

struct entry {
	struct job_rec rec;
	int64_t seq;	/* insertion order, from 1: the file's "id" */
	int64_t sent;	/* message id of the last job.state sent; 0 */
};

struct jobs {
	char path[STATE_PATH_MAX + 1];
	struct entry e[JOBS_MAX];	/* newest first */
	size_t n;
	struct entry next[JOBS_MAX];	/* a change on its way to the file */
	int64_t next_seq;
	struct proto_w *w;
	char text[JOBS_FILE_MAX];	/* the file, as read or to be written */
};

/* What one pass over the file found. */
struct scan {
	const char *path;
	unsigned line;
	unsigned nerr;
	unsigned first[JOBS_MAX];	/* the line each kept job came from */
};

static bool state_ok(enum job_state s)
{
	return (unsigned)s < NSTATES;
}

bool job_awaits_restart(const struct job_rec *r)
{
	return r->state == JOB_RUNNING && !strcmp(r->phase, JOB_PHASE_RESTART);
}

bool job_state_final(enum job_state s)
{
	return s == JOB_SUCCEEDED || s == JOB_FAILED || s == JOB_REJECTED;
}

const char *job_state_name(enum job_state s)
{
	return state_ok(s) ? state_names[s] : NULL;
}

static int state_lookup(const char *name)
{
	for (size_t k = 0; k < NSTATES; k++)
		if (!strcmp(state_names[k], name))
			return (int)k;
	return -1;
}

/* Why the n bytes at id cannot be a job id, or NULL if they can. Control
 * characters are refused because ids go into log lines as they are. */
static const char *id_problem(const char *id, size_t n)
{
	if (n == 0)
		return "job id is empty";
	if (n > JOB_ID_MAX)
		return "job id is longer than " STR(JOB_ID_MAX) " bytes";
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
			return "job id contains a control character";
	return NULL;
}

/* Length of the text in a field of cap bytes; cap if it has no NUL. */
static size_t field_len(const char *s, size_t cap)
{
	const char *z = memchr(s, '\0', cap);

	return z ? (size_t)(z - s) : cap;
}

static bool text_ok(const char *s, size_t cap)
{
	size_t n = field_len(s, cap);

	return n < cap && proto_utf8_valid(s, n);
}

/* Whether text from the file may be quoted in the log as it is. */
static bool printable(const char *s)
{
	size_t n = strlen(s);

	if (n > ECHO_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* ----------------------------------------------------------- the order */

static bool newer(const struct entry *a, const struct entry *b)
{
	if (a->rec.created != b->rec.created)
		return a->rec.created > b->rec.created;
	return a->seq > b->seq;
}

/* Insertion sort, newest first: at most JOBS_MAX entries, mostly sorted. */
static void sort_newest_first(struct entry *e, size_t n)
{
	struct entry t;
	size_t i, k;

	for (i = 1; i < n; i++) {
		t = e[i];
		for (k = i; k > 0 && newer(&t, &e[k - 1]); k--)
			e[k] = e[k - 1];
		e[k] = t;
	}
}

/* By seq, ascending; stable, so equal ones (a damaged file) keep the
 * file's order. */
static void sort_by_seq(struct entry *e, size_t n)
{
	struct entry t;
	size_t i, k;

	for (i = 1; i < n; i++) {
		t = e[i];
		for (k = i; k > 0 && t.seq < e[k - 1].seq; k--)
			e[k] = e[k - 1];
		e[k] = t;
	}
}

static size_t index_of(const struct entry *e, size_t n, const char *id)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(e[i].rec.id, id))
			break;
	return i;
}

/* ----------------------------------------------------------- the file */

/* e[0..n) as the file's text into j->text, oldest first (a journal reads
 * in the order things happened); its length into *len. */
static err_t render(struct jobs *j, const struct entry *e, size_t n,
		    size_t *len)
{
	size_t used = 0;
	char *line;
	size_t ll;

	for (size_t i = n; i-- > 0;) {
		const struct job_rec *r = &e[i].rec;

		proto_w_begin(j->w, "job", e[i].seq);
		proto_w_str(j->w, "job", r->id);
		proto_w_str(j->w, "op", r->op);
		proto_w_str(j->w, "state", job_state_name(r->state));
		proto_w_int(j->w, "progress", r->progress);
		proto_w_str(j->w, "reason", r->reason);
		proto_w_str(j->w, "message", r->message);
		proto_w_int(j->w, "created", r->created);
		proto_w_int(j->w, "updated", r->updated);
		proto_w_bool(j->w, "acked", r->acked);
		proto_w_str(j->w, "phase", r->phase);
		proto_w_str(j->w, "target", r->target);
		proto_w_bool(j->w, "phones", r->phones);
		proto_w_bool(j->w, "local", r->local);
		/* Cannot fail: records are checked and LINE_CAP is the
		 * longest line; said loudly should that ever change. */
		if (proto_w_finish(j->w, &line, &ll) != ERR_OK ||
		    ll >= sizeof(j->text) - used) {
			LOGE("%s: the line of job %s does not fit in %zu "
			     "bytes; journal not written", j->path, r->id,
			     (size_t)LINE_CAP);
			return ERR_LIMIT;
		}
		memcpy(j->text + used, line, ll);
		used += ll;
		j->text[used++] = '\n';
	}
	*len = used;
	return ERR_OK;
}

/* e[0..n) into the file; state_write() logs its failures. */
static err_t save(struct jobs *j, const struct entry *e, size_t n)
{
	size_t len;
	err_t err = render(j, e, n, &len);

	if (err == ERR_OK)
		err = state_write(j->path, j->text, len);
	return err;
}

__attribute__((format(printf, 2, 3)))
static void problem(struct scan *sc, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	sc->nerr++;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	LOGE("%s:%u: %s", sc->path, sc->line, msg);
}

/* Member key, a string of at most cap - 1 bytes, into dst. */
static bool get_text(struct scan *sc, const struct proto_msg *m,
		     const char *key, char *dst, size_t cap)
{
	const char *s = proto_str(m, key);
	size_t n;

	if (!s) {
		problem(sc, "\"%s\" missing or not a string", key);
		return false;
	}
	n = strlen(s);
	if (n >= cap) {
		problem(sc, "\"%s\" longer than %zu bytes", key, cap - 1);
		return false;
	}
	memcpy(dst, s, n + 1);
	return true;
}

/* A member later versions added: absent is "". */
static bool opt_text(struct scan *sc, const struct proto_msg *m,
		     const char *key, char *dst, size_t cap)
{
	if (!proto_str(m, key)) {
		dst[0] = '\0';
		return true;
	}
	return get_text(sc, m, key, dst, cap);
}

static bool get_int(struct scan *sc, const struct proto_msg *m,
		    const char *key, int64_t *v)
{
	if (proto_int(m, key, v))
		return true;
	problem(sc, "\"%s\" missing or not an integer", key);
	return false;
}

static bool get_id(struct scan *sc, const struct proto_msg *m, char *dst)
{
	const char *s = proto_str(m, "job");
	const char *why;

	if (!s) {
		problem(sc, "\"job\" missing or not a string");
		return false;
	}
	/* proto_parse() gives UTF-8 without NULs: only the rules of ids. */
	why = id_problem(s, strlen(s));
	if (why) {
		problem(sc, "%s", why);
		return false;
	}
	memcpy(dst, s, strlen(s) + 1);
	return true;
}

static bool get_state(struct scan *sc, const struct proto_msg *m,
		      enum job_state *st)
{
	const char *s = proto_str(m, "state");
	int k;

	if (!s) {
		problem(sc, "\"state\" missing or not a string");
		return false;
	}
	k = state_lookup(s);
	if (k < 0) {
		if (printable(s))
			problem(sc, "unknown state '%s'", s);
		else
			problem(sc, "unknown state");
		return false;
	}
	*st = (enum job_state)k;
	return true;
}

/* One parsed line's members into *en; false (logged) if any is bad. */
static bool decode(struct scan *sc, const struct proto_msg *m,
		   struct entry *en)
{
	struct job_rec *r = &en->rec;
	int64_t progress;

	memset(en, 0, sizeof(*en));
	if (strcmp(proto_type(m), "job")) {
		problem(sc, "not a job record");
		return false;
	}
	en->seq = proto_id(m);
	if (!get_id(sc, m, r->id) ||
	    !get_text(sc, m, "op", r->op, sizeof(r->op)) ||
	    !get_state(sc, m, &r->state) ||
	    !get_int(sc, m, "progress", &progress))
		return false;
	if (progress < 0 || progress > 100) {
		problem(sc, "progress %" PRId64 " is not in 0..100", progress);
		return false;
	}
	r->progress = (int)progress;
	if (!get_text(sc, m, "reason", r->reason, sizeof(r->reason)) ||
	    !get_text(sc, m, "message", r->message, sizeof(r->message)) ||
	    !get_int(sc, m, "created", &r->created) ||
	    !get_int(sc, m, "updated", &r->updated))
		return false;
	if (!proto_bool(m, "acked", &r->acked)) {
		problem(sc, "\"acked\" missing or not a boolean");
		return false;
	}
	if (r->acked && !job_state_final(r->state)) {
		problem(sc, "acknowledged but %s is not a final state",
			state_names[r->state]);
		return false;
	}
	if (!opt_text(sc, m, "phase", r->phase, sizeof(r->phase)) ||
	    !opt_text(sc, m, "target", r->target, sizeof(r->target)))
		return false;
	(void)proto_bool(m, "phones", &r->phones);
	(void)proto_bool(m, "local", &r->local);
	return true;
}

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

/* One line of the file; a good job is appended to j->e. */
static void scan_line(struct jobs *j, struct scan *sc, const char *s,
		      size_t n)
{
	struct proto_msg *m = NULL;
	char why[128];
	struct entry *en;
	size_t dup;

	if (blank(s, n))
		return;
	if (proto_parse(s, n, &m, NULL, why, sizeof(why)) != ERR_OK) {
		problem(sc, "%s", why);
		return;
	}
	/* Into the next free slot; when there is none, into scratch space
	 * only to tell a good line (too many) from a bad one. */
	en = j->n < JOBS_MAX ? &j->e[j->n] : &j->next[0];
	if (!decode(sc, m, en))
		goto out;
	dup = index_of(j->e, j->n, en->rec.id);
	if (dup < j->n) {
		problem(sc, "duplicate job '%s' (first at line %u)",
			en->rec.id, sc->first[dup]);
		goto out;
	}
	if (j->n == JOBS_MAX) {
		problem(sc, "more than " STR(JOBS_MAX) " jobs");
		goto out;
	}
	sc->first[j->n++] = sc->line;
out:
	proto_msg_free(m);
}

/* j->text[0..len) into j->e; returns the number of problems logged. */
static unsigned load(struct jobs *j, size_t len)
{
	struct scan sc = { .path = j->path };
	const char *p = j->text, *end = j->text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;

		sc.line++;
		scan_line(j, &sc, p, (size_t)(eol - p));
		p = nl ? nl + 1 : end;
	}
	/* Insertion numbers start at 1 again, so they never run out. */
	sort_by_seq(j->e, j->n);
	for (size_t i = 0; i < j->n; i++)
		j->e[i].seq = (int64_t)i + 1;
	sort_newest_first(j->e, j->n);
	return sc.nerr;
}

/* Jobs the journal holds as accepted or running were cut short when the
 * agent stopped: they failed. Returns whether there were any. */
static bool interrupt(struct jobs *j, int64_t now)
{
	bool any = false;

	for (size_t i = 0; i < j->n; i++) {
		struct job_rec *r = &j->e[i].rec;

		if (job_state_final(r->state) || job_awaits_restart(r))
			continue;
		LOGE("job %s was %s when the agent stopped; it failed "
		     "(interrupted)", r->id, state_names[r->state]);
		snprintf(r->message, sizeof(r->message),
			 "the agent restarted while the job was %s",
			 state_names[r->state]);
		snprintf(r->reason, sizeof(r->reason), "interrupted");
		r->state = JOB_FAILED;
		r->acked = r->local;	/* nobody else acknowledges those */
		r->updated = now;
		any = true;
	}
	return any;
}

err_t jobs_open(const char *state_dir, struct jobs **out)
{
	struct jobs *j;
	size_t len;
	err_t e, we;

	if (!out)
		return ERR_INVAL;
	*out = NULL;
	if (!state_dir || !*state_dir)
		return ERR_INVAL;
	j = calloc(1, sizeof(*j));
	if (j)
		j->w = proto_w_new(LINE_CAP - 1, 0);	/* without the '\n' */
	if (!j || !j->w) {
		LOGE("cannot open the job journal: out of memory");
		jobs_free(j);
		return ERR_NOMEM;
	}
	if (!state_path(state_dir, FILE_NAME, j->path, sizeof(j->path))) {
		LOGE("%.64s...: state directory path too long", state_dir);
		jobs_free(j);
		return ERR_INVAL;
	}
	e = state_read(j->path, j->text, sizeof(j->text), &len);
	switch (e) {
	case ERR_OK:
		e = load(j, len) ? ERR_INVAL : ERR_OK;
		break;
	case ERR_NOTFOUND:
		e = ERR_OK;
		break;
	case ERR_LIMIT:	/* not a file this agent wrote: trust none of it */
		e = ERR_INVAL;
		break;
	default:	/* ERR_IO, logged: nothing of it is known */
		break;
	}
	j->next_seq = (int64_t)j->n + 1;
	if (interrupt(j, (int64_t)time(NULL))) {
		we = save(j, j->e, j->n);
		if (e == ERR_OK)
			e = we;
	}
	LOGD("%s: %zu jobs", j->path, j->n);
	*out = j;
	return e;
}

void jobs_free(struct jobs *j)
{
	if (!j)
		return;
	proto_w_free(j->w);
	free(j);
}

const struct job_rec *jobs_find(const struct jobs *j, const char *id)
{
	size_t i;

	if (!j || !id)
		return NULL;
	i = index_of(j->e, j->n, id);
	return i < j->n ? &j->e[i].rec : NULL;
}

/* Whether r can go into the journal and come back from it as it is;
 * logs why not. */
static bool check(const struct job_rec *r)
{
	size_t n = field_len(r->id, sizeof(r->id));
	const char *what = NULL;
	const char *why = n > JOB_ID_MAX ? "job id is longer than "
		STR(JOB_ID_MAX) " bytes" : id_problem(r->id, n);

	if (!why && !proto_utf8_valid(r->id, n))
		why = "job id is not UTF-8";
	if (why) {
		LOGE("cannot record a job: %s", why);
		return false;
	}
	if (!text_ok(r->op, sizeof(r->op)))
		what = "op";
	else if (!text_ok(r->reason, sizeof(r->reason)))
		what = "reason";
	else if (!text_ok(r->message, sizeof(r->message)))
		what = "message";
	else if (!text_ok(r->phase, sizeof(r->phase)))
		what = "phase";
	else if (!text_ok(r->target, sizeof(r->target)))
		what = "target";
	if (what) {
		LOGE("cannot record job %s: %s is not UTF-8 text that fits "
		     "its field", r->id, what);
		return false;
	}
	if (!state_ok(r->state)) {
		LOGE("cannot record job %s: unknown state %d", r->id,
		     (int)r->state);
		return false;
	}
	if (r->progress < 0 || r->progress > 100) {
		LOGE("cannot record job %s: progress %d is not in 0..100",
		     r->id, r->progress);
		return false;
	}
	if (r->acked && !job_state_final(r->state)) {
		LOGE("cannot record job %s: acknowledged but %s is not a "
		     "final state", r->id, state_names[r->state]);
		return false;
	}
	return true;
}

/* A checked r into dst, with nothing after the NULs: what reloading the
 * file gives back. */
static void copy_rec(struct job_rec *dst, const struct job_rec *r)
{
	struct job_rec t;

	memset(&t, 0, sizeof(t));
	memcpy(t.id, r->id, strlen(r->id));
	memcpy(t.op, r->op, strlen(r->op));
	t.state = r->state;
	t.progress = r->progress;
	memcpy(t.reason, r->reason, strlen(r->reason));
	memcpy(t.message, r->message, strlen(r->message));
	t.created = r->created;
	t.updated = r->updated;
	t.acked = r->acked;
	memcpy(t.phase, r->phase, strlen(r->phase));
	memcpy(t.target, r->target, strlen(r->target));
	t.phones = r->phones;
	t.local = r->local;
	*dst = t;
}

/* Drops the oldest job that is final and acknowledged from e[0..*n). */
static bool evict(struct entry *e, size_t *n)
{
	for (size_t i = *n; i-- > 0;) {
		const struct job_rec *r = &e[i].rec;

		if (job_state_final(r->state) && r->acked) {
			LOGD("journal full: job %s dropped", r->id);
			memmove(&e[i], &e[i + 1], (*n - i - 1) * sizeof(e[0]));
			(*n)--;
			return true;
		}
	}
	return false;
}

err_t jobs_record(struct jobs *j, const struct job_rec *r)
{
	size_t n, i;
	bool added = false;
	err_t e;

	if (!j || !r)
		return ERR_INVAL;
	if (!check(r))
		return ERR_INVAL;
	n = j->n;
	memcpy(j->next, j->e, n * sizeof(j->e[0]));
	i = index_of(j->next, n, r->id);
	if (i == n) {
		if (n == JOBS_MAX && !evict(j->next, &n)) {
			LOGE("cannot record job %s: the journal holds "
			     STR(JOBS_MAX) " jobs and none is final and "
			     "acknowledged", r->id);
			return ERR_LIMIT;
		}
		i = n++;
		j->next[i].seq = j->next_seq;
		j->next[i].sent = 0;
		added = true;
	}
	/* r may point into j->e: read before j->e changes. */
	copy_rec(&j->next[i].rec, r);
	sort_newest_first(j->next, n);
	e = save(j, j->next, n);
	if (e != ERR_OK)
		return e;
	memcpy(j->e, j->next, n * sizeof(j->e[0]));
	j->n = n;
	if (added)
		j->next_seq++;
	return ERR_OK;
}

err_t jobs_ack(struct jobs *j, const char *id)
{
	size_t i;
	err_t e;

	if (!j || !id)
		return ERR_INVAL;
	i = index_of(j->e, j->n, id);
	if (i == j->n) {
		/* Quoted only if it could be an id: it came from COM. */
		if (id_problem(id, strnlen(id, JOB_ID_MAX + 1)))
			LOGE("cannot acknowledge a job: not in the journal");
		else
			LOGE("cannot acknowledge job %s: not in the journal",
			     id);
		return ERR_NOTFOUND;
	}
	if (!job_state_final(j->e[i].rec.state)) {
		LOGE("cannot acknowledge job %s: %s is not a final state",
		     j->e[i].rec.id, state_names[j->e[i].rec.state]);
		return ERR_STATE;
	}
	if (j->e[i].rec.acked)
		return ERR_OK;	/* COM acked twice: nothing to write */
	memcpy(j->next, j->e, j->n * sizeof(j->e[0]));
	j->next[i].rec.acked = true;
	e = save(j, j->next, j->n);
	if (e == ERR_OK)
		j->e[i].rec.acked = true;
	return e;
}

const struct job_rec *jobs_active(const struct jobs *j)
{
	if (!j)
		return NULL;
	for (size_t i = 0; i < j->n; i++)
		if (!job_state_final(j->e[i].rec.state))
			return &j->e[i].rec;
	return NULL;
}

const struct job_rec *jobs_last_ended(const struct jobs *j)
{
	for (size_t i = 0; i < jobs_count(j); i++) {
		const struct job_rec *r = jobs_at(j, i);

		if (job_state_final(r->state) && r->state != JOB_REJECTED)
			return r;
	}
	return NULL;
}

size_t jobs_count(const struct jobs *j)
{
	return j ? j->n : 0;
}

const struct job_rec *jobs_at(const struct jobs *j, size_t i)
{
	return j && i < j->n ? &j->e[i].rec : NULL;
}

void jobs_set_sent(struct jobs *j, const char *id, int64_t msg_id)
{
	size_t i;

	if (!j || !id)
		return;
	i = index_of(j->e, j->n, id);
	if (i < j->n)
		j->e[i].sent = msg_id > 0 ? msg_id : 0;
}

const struct job_rec *jobs_by_sent(const struct jobs *j, int64_t msg_id)
{
	if (!j || msg_id < 1)
		return NULL;
	for (size_t i = 0; i < j->n; i++)
		if (j->e[i].sent == msg_id)
			return &j->e[i].rec;
	return NULL;
}

void jobs_clear_sent(struct jobs *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n; i++)
		j->e[i].sent = 0;
}
