/*
 * xfer — uploads and downloads over the COM link (see xfer.h).
 *
 * One struct xfer per file; while the link is up it has at most one open
 * stream. States:
 *   HASHING  download: hashing what an earlier attempt left, a slice per
 *            loop turn, before asking COM for the rest
 *   WAIT     no stream (no link yet, or the link dropped): opens on link up
 *   OPENING  stream.open sent, waiting for COM's stream.accept
 *   ACTIVE   bytes flowing (an upload within COM's credit, a download within
 *            our window)
 *   ENDING   upload: stream.end sent, waiting for COM's verdict
 *   DONE     done() was called; only xfer_free() is left
 * COM's "corrupt" verdict on an upload restarts it from byte 0 (COM threw
 * the partial file away), at most XFER_CORRUPT_RETRIES more times: the
 * file on our disk was hashed before the upload, so a repeat would be the
 * line. A message the link's queue cannot take is sent again once it can
 * (retry_pending).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "link.h"
#include "log.h"
#include "proto.h"
#include "state.h"
#include "stream.h"
#include "xfer.h"

#define LOG_MODULE "xfer"

#define XFER_CORRUPT_RETRIES 2
/* A download is written to its file as each frame arrives, so its window
 * costs no memory here; a wide one keeps COM sending while credit is on
 * its way back. Credit goes back in batches of a quarter window. */
#define XFER_WINDOW (512u * 1024u)
#define XFER_CREDIT_BATCH (XFER_WINDOW / 4)
#define XFER_SIZE_MAX (1LL << 40)	/* as a manifest's component */
/* COM's closes that say nothing about the file (PROTOCOL.md §3): the
 * transfer opens again, at most this many times in a row without
 * progress. */
#define XFER_REOPENS 5
/* How long COM may take to answer a stream.open or a stream.end; a COM
 * that keeps the link alive but never answers must not hold a job. */
#define XFER_ANSWER_US (60 * LWS_USEC_PER_SEC)
/* Bytes of a partial file hashed per loop turn (see ops.c's HASH_SLICE). */
#define XFER_HASH_SLICE (1024u * 1024u)
#define XFER_READ_CHUNK 65536u
/* Odd ids never opened on this link whose data was answered unknown_stream
 * (PROTOCOL.md §3: once per id), remembered so a flood gets one answer. */
#define XFER_UNKNOWN_MEMORY 16

enum xstate { X_HASHING, X_WAIT, X_OPENING, X_ACTIVE, X_ENDING, X_DONE };

struct xfer {
	struct xfers *x;
	struct xfer *next;
	bool upload;
	enum xstate st;
	uint32_t sid;			/* the open stream, 0 for none */
	int fd;
	char job[65];
	char name[XFER_NAME_MAX + 1];
	char path[STATE_PATH_MAX + 1];
	char part[STATE_PATH_MAX + 24];	/* download: see xfer_part_path() */
	uint64_t size;			/* 0 with !size_known: COM says */
	bool size_known;
	char sha[65];			/* what the file must hash to */
	uint64_t pos;			/* sent (upload) / held (download) */
	int64_t credit;			/* upload: COM's allowance */
	int64_t window;			/* download: what COM may still send */
	size_t consumed;		/* download: written, not yet credited */
	struct digest *dg;		/* download: hash of part[0..pos) */
	unsigned corrupt;		/* upload: COM's "corrupt" verdicts */
	unsigned reopens;		/* COM's transient closes in a row */
	bool flow;			/* ending for COM's flow violation */
	char content[8];		/* "backup", "log"; download: "custom" or "" */
	char level[10];			/* download of a custom file: its level */
	uint64_t reported;		/* pos at the last progress call */
	struct xfer_cbs cbs;
	void *arg;
	lws_sorted_usec_list_t sul_answer;	/* COM's accept or verdict */
	struct digest_reader *hr;		/* HASHING */
	lws_sorted_usec_list_t sul_hash;
};

struct xfers {
	struct lws_context *ctx;
	struct link *link;
	struct proto_w *w;
	struct xfer *head;
	struct xfer *rr;		/* the upload served last */
	uint32_t next_sid;		/* odd; per link */
	uint32_t unknown[XFER_UNKNOWN_MEMORY];	/* answered unknown_stream */
	unsigned unknown_n, unknown_next;
};

static err_t send_built(struct xfers *x)
{
	char *buf;
	size_t len;

	if (!x->link)
		return ERR_STATE;
	if (proto_w_finish(x->w, &buf, &len) != ERR_OK) {
		LOGE("transfer message does not fit; dropped");
		return ERR_LIMIT;
	}
	return link_send(x->link, buf, len);
}

static void send_close(struct xfers *x, uint32_t sid, const char *reason,
		       const char *msg)
{
	if (!x->link)
		return;
	proto_w_begin(x->w, "stream.close", link_next_id(x->link));
	proto_w_int(x->w, "stream", sid);
	proto_w_str(x->w, "reason", reason);
	proto_w_str(x->w, "message", msg);
	(void)send_built(x);
}

static const char *what(const struct xfer *t)
{
	return t->upload ? "upload" : "download";
}

static void set_state(struct xfer *t, enum xstate st);

/* The transfer is over: tell the owner, who may free it from there. */
static void finish(struct xfer *t, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void finish(struct xfer *t, const char *reason, const char *fmt, ...)
{
	char why[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (t->sid && t->st != X_DONE && reason)
		send_close(t->x, t->sid, t->flow ? "flow" : "refused", why);
	set_state(t, X_DONE);
	t->sid = 0;
	if (t->fd >= 0) {
		close(t->fd);
		t->fd = -1;
	}
	if (reason)
		LOGE("%s of %s failed (%s): %s", what(t), t->name, reason, why);
	else
		LOGI("%s of %s done: %llu bytes", what(t), t->name,
		     (unsigned long long)t->size);
	if (t->cbs.done)
		t->cbs.done(t->arg, reason, why);
}

static void progress(struct xfer *t)
{
	uint64_t step = t->size / 100 ? t->size / 100 : 1;

	if (t->cbs.progress && (t->pos - t->reported >= step ||
				t->pos == t->size)) {
		t->reported = t->pos;
		t->cbs.progress(t->arg, t->pos, t->size);
	}
}

static void open_stream(struct xfer *t);

static void answer_overdue(lws_sorted_usec_list_t *sul)
{
	struct xfer *t = lws_container_of(sul, struct xfer, sul_answer);

	if (t->st != X_OPENING && t->st != X_ENDING)
		return;
	if (t->reopens++ >= XFER_REOPENS) {
		finish(t, "transfer", "COM did not answer the %s of %s",
		       what(t), t->name);
		return;
	}
	LOGE("COM did not answer the %s of %s on stream %u; opening it again",
	     what(t), t->name, t->sid);
	send_close(t->x, t->sid, "timeout", "no answer from COM");
	t->sid = 0;
	set_state(t, X_WAIT);
	t->pos = t->upload ? 0 : t->pos;
	open_stream(t);
}

/* Every state change goes through here: waiting for COM is timed. */
static void set_state(struct xfer *t, enum xstate st)
{
	t->st = st;
	if (st == X_OPENING || st == X_ENDING)
		lws_sul_schedule(t->x->ctx, 0, &t->sul_answer, answer_overdue,
				 XFER_ANSWER_US);
	else
		lws_sul_cancel(&t->sul_answer);
}

static struct xfer *find(const struct xfers *x, uint32_t sid)
{
	for (struct xfer *t = x->head; t; t = t->next)
		if (sid && t->sid == sid)
			return t;
	return NULL;
}

/* ---- opening ---------------------------------------------------------- */

static void open_stream(struct xfer *t)
{
	struct xfers *x = t->x;

	if (!x->link || t->st != X_WAIT)
		return;
	t->sid = x->next_sid;
	x->next_sid += 2;
	proto_w_begin(x->w, "stream.open", link_next_id(x->link));
	proto_w_int(x->w, "stream", t->sid);
	proto_w_str(x->w, "kind", what(t));
	proto_w_int(x->w, "window", t->upload ? STREAM_WINDOW : XFER_WINDOW);
	proto_w_str(x->w, "job", t->job);
	proto_w_str(x->w, "name", t->name);
	if (t->upload) {
		proto_w_str(x->w, "content", t->content);
		proto_w_int(x->w, "size", (int64_t)t->size);
		proto_w_str(x->w, "sha256", t->sha);
	} else {
		if (t->content[0])
			proto_w_str(x->w, "content", t->content);
		if (t->level[0])
			proto_w_str(x->w, "level", t->level);
		proto_w_int(x->w, "offset", (int64_t)t->pos);
	}
	if (send_built(x) != ERR_OK) {
		/* The queue is full (or the link just went): tried again
		 * when the link can take more (xfers_next_frame). */
		t->sid = 0;
		link_want_write(x->link);
		return;
	}
	set_state(t, X_OPENING);
	LOGI("%s of %s: stream %u, %s %llu of %llu bytes", what(t), t->name,
	     t->sid, t->upload ? "COM to say its offset;" : "holding",
	     (unsigned long long)t->pos, (unsigned long long)t->size);
}

/* Re-reads part[0..n) into a fresh hash: the state after a restart, or
 * after COM chose a smaller offset than we hold. */
static err_t rehash(struct xfer *t, uint64_t n)
{
	static uint8_t buf[XFER_READ_CHUNK];
	uint64_t done = 0;

	digest_reset(t->dg);
	while (done < n) {
		size_t want = n - done < sizeof(buf) ? (size_t)(n - done)
						     : sizeof(buf);
		ssize_t r = pread(t->fd, buf, want, (off_t)done);

		if (r <= 0) {
			LOGE("%s: %s", t->part, r < 0 ? strerror(errno) :
			     "shorter than it was");
			return ERR_IO;
		}
		digest_update(t->dg, buf, (size_t)r);
		done += (uint64_t)r;
	}
	return ERR_OK;
}

/* A slice of the partial file into the hash; once it is all in, the
 * download asks COM for the rest. */
static void hash_step(lws_sorted_usec_list_t *sul)
{
	struct xfer *t = lws_container_of(sul, struct xfer, sul_hash);
	bool done = false;

	if (digest_reader_step(t->hr, XFER_HASH_SLICE, &done) == ERR_OK &&
	    !done) {
		lws_sul_schedule(t->x->ctx, 0, &t->sul_hash, hash_step, 1);
		return;
	}
	if (!done || digest_reader_bytes(t->hr) != t->pos) {
		/* Unreadable, or shorter than it was: start afresh. */
		LOGE("%s: cannot resume from it; downloading %s from the "
		     "start", t->part, t->name);
		t->pos = 0;
		digest_reset(t->dg);
		if (ftruncate(t->fd, 0) != 0)
			LOGE("%s: %s", t->part, strerror(errno));
	}
	digest_reader_free(t->hr);
	t->hr = NULL;
	set_state(t, X_WAIT);
	open_stream(t);
}

static void on_accept_download(struct xfer *t, const struct proto_msg *m)
{
	const char *sha = proto_str(m, "sha256");
	int64_t size, off;

	if (!proto_int(m, "size", &size) || size < 0 || size > XFER_SIZE_MAX ||
	    !sha || !digest_hex_valid(sha) || !proto_int(m, "offset", &off) ||
	    off < 0 || off > size) {
		finish(t, "transfer", "COM's stream.accept for %s lacks a "
		       "valid size, sha256 or offset", t->name);
		return;
	}
	if (t->size_known && (uint64_t)size != t->size) {
		finish(t, "corrupt", "COM offers %s with %lld bytes; the job "
		       "says %llu", t->name, (long long)size,
		       (unsigned long long)t->size);
		return;
	}
	if (t->sha[0] && strcmp(sha, t->sha)) {
		finish(t, "corrupt", "COM offers %s with SHA-256 %s; the job "
		       "says %s", t->name, sha, t->sha);
		return;
	}
	t->size = (uint64_t)size;
	t->size_known = true;
	if (!t->sha[0])
		memcpy(t->sha, sha, sizeof(t->sha));
	if ((uint64_t)off != t->pos) {
		/* COM cannot resume where we are: start where it can. */
		if ((uint64_t)off > t->pos || ftruncate(t->fd, off) != 0 ||
		    rehash(t, (uint64_t)off) != ERR_OK) {
			finish(t, "transfer", "cannot resume %s at byte %lld",
			       t->name, (long long)off);
			return;
		}
		t->pos = (uint64_t)off;
	}
	t->window = XFER_WINDOW;
	t->consumed = 0;
	set_state(t, X_ACTIVE);
	LOGI("download of %s: %llu bytes from byte %llu", t->name,
	     (unsigned long long)t->size, (unsigned long long)t->pos);
}

static void send_end(struct xfer *t)
{
	struct xfers *x = t->x;

	proto_w_begin(x->w, "stream.end", link_next_id(x->link));
	proto_w_int(x->w, "stream", t->sid);
	if (send_built(x) == ERR_OK)
		set_state(t, X_ENDING);
	else
		link_want_write(x->link);	/* again from next_frame */
}

static void on_accept_upload(struct xfer *t, const struct proto_msg *m)
{
	int64_t off, win;

	if (!proto_int(m, "offset", &off) || off < 0 ||
	    (uint64_t)off > t->size || !proto_int(m, "window", &win) ||
	    win < 0 || win > STREAM_CREDIT_MAX) {
		finish(t, "transfer", "COM's stream.accept for %s lacks a "
		       "valid offset or window", t->name);
		return;
	}
	t->pos = (uint64_t)off;
	t->credit = win;
	set_state(t, X_ACTIVE);
	if (off)
		LOGI("upload of %s resumes at byte %lld", t->name,
		     (long long)off);
	if (t->pos == t->size)
		send_end(t);
	else
		link_want_write(t->x->link);
}

/* ---- COM's messages --------------------------------------------------- */

static void on_close(struct xfer *t, const struct proto_msg *m)
{
	const char *reason = proto_str(m, "reason");
	const char *msg = proto_str(m, "message");
	char got[65];

	if (!reason)
		reason = "";
	if (!msg)
		msg = "";
	t->sid = 0;	/* closed: nothing more is sent about it */
	if ((!strcmp(reason, "link_lost") || !strcmp(reason, "shutdown") ||
	     !strcmp(reason, "timeout")) && t->reopens++ < XFER_REOPENS) {
		LOGI("COM closed the %s of %s (%s); opening it again",
		     what(t), t->name, reason);
		set_state(t, X_WAIT);
		t->consumed = 0;
		open_stream(t);
		return;
	}
	if (t->upload) {
		if (!strcmp(reason, "done") && t->st == X_ENDING) {
			finish(t, NULL, "stored");
		} else if (!strcmp(reason, "corrupt") &&
			   t->corrupt++ < XFER_CORRUPT_RETRIES) {
			LOGE("COM found upload %s corrupt (%s); sending it "
			     "again", t->name, msg);
			set_state(t, X_WAIT);
			t->pos = 0;
			open_stream(t);
		} else {
			finish(t, !strcmp(reason, "corrupt") ? "corrupt"
			       : "transfer", "COM closed the upload of %s: "
			       "%s%s%s", t->name, reason, msg[0] ? ": " : "",
			       msg);
		}
		return;
	}
	if (strcmp(reason, "done") || t->st != X_ACTIVE) {
		finish(t, "transfer", "COM closed the download of %s: %s%s%s",
		       t->name, reason, msg[0] ? ": " : "", msg);
		return;
	}
	digest_hex(t->dg, got);
	if (t->pos != t->size || strcmp(got, t->sha)) {
		uint64_t held = t->pos;

		/* Not worth resuming: the bytes held are wrong. */
		t->pos = 0;
		if (unlink(t->part) != 0)
			LOGE("%s: %s", t->part, strerror(errno));
		if (held != t->size)
			finish(t, "corrupt", "%s: got %llu bytes of %llu",
			       t->name, (unsigned long long)held,
			       (unsigned long long)t->size);
		else
			finish(t, "corrupt", "%s: SHA-256 %s, expected %s",
			       t->name, got, t->sha);
		return;
	}
	if (fsync(t->fd) != 0 || rename(t->part, t->path) != 0) {
		finish(t, "transfer", "%s: %s", t->path, strerror(errno));
		return;
	}
	finish(t, NULL, "verified");
}

static void on_credit(struct xfer *t, const struct proto_msg *m)
{
	int64_t b;

	if (!t->upload || t->st != X_ACTIVE)
		return;
	if (!proto_int(m, "bytes", &b) || b < 1 ||
	    b > STREAM_CREDIT_MAX - t->credit) {
		finish(t, "transfer", "COM's credit for %s is out of bounds",
		       t->name);
		return;
	}
	t->credit += b;
	link_want_write(t->x->link);
}

void xfers_on_control(struct xfers *x, const struct proto_msg *m)
{
	const char *type = proto_type(m);
	struct xfer *t;
	int64_t sid;

	if (!proto_int(m, "stream", &sid) || sid < 1 || sid > UINT32_MAX)
		return;
	t = find(x, (uint32_t)sid);
	if (!t)
		return;	/* one we closed or never had: crossed messages */
	if (!strcmp(type, "stream.close")) {
		on_close(t, m);
	} else if (!strcmp(type, "stream.credit")) {
		on_credit(t, m);
	} else if (!strcmp(type, "stream.accept") && t->st == X_OPENING) {
		if (t->upload)
			on_accept_upload(t, m);
		else
			on_accept_download(t, m);
	}
}

/* pwrite(2) all of it at off, or say why not. Positional, so a download
 * that COM restarts at an earlier offset overwrites from there. */
static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? errno : EIO;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static void grant(struct xfer *t)
{
	struct xfers *x = t->x;

	proto_w_begin(x->w, "stream.credit", link_next_id(x->link));
	proto_w_int(x->w, "stream", t->sid);
	proto_w_int(x->w, "bytes", (int64_t)t->consumed);
	if (send_built(x) == ERR_OK) {
		t->window += (int64_t)t->consumed;
		t->consumed = 0;
	} else {
		link_want_write(x->link);	/* again from next_frame */
	}
}

void xfers_on_data(struct xfers *x, uint32_t id, const uint8_t *p,
		   size_t len)
{
	struct xfer *t = find(x, id);
	int e;

	if (!t && id >= x->next_sid) {
		/* An id we never opened on this link: PROTOCOL.md §3 answers
		 * it with one stream.close. (Data for one we did open, and
		 * closed since, was in flight: dropped below, unanswered.) */
		for (unsigned i = 0; i < x->unknown_n; i++)
			if (x->unknown[i] == id)
				return;
		x->unknown[x->unknown_next] = id;
		x->unknown_next = (x->unknown_next + 1) % XFER_UNKNOWN_MEMORY;
		if (x->unknown_n < XFER_UNKNOWN_MEMORY)
			x->unknown_n++;
		LOGE("%zu bytes for stream %u, which was never open", len, id);
		send_close(x, id, "unknown_stream", "no such stream");
		return;
	}
	if (!t || t->upload || t->st != X_ACTIVE) {
		LOGD("%zu bytes for stream %u, which is not a download in "
		     "progress; dropped", len, id);
		return;
	}
	if ((int64_t)len > t->window || t->pos + len > t->size) {
		t->flow = true;
		finish(t, "transfer", "COM sent %s beyond the %s", t->name,
		       (int64_t)len > t->window ? "window" : "file's size");
		return;
	}
	e = write_all(t->fd, p, len, t->pos);
	if (e) {
		finish(t, e == ENOSPC || e == EDQUOT ? "space" : "transfer",
		       "%s: %s", t->part, strerror(e));
		return;
	}
	digest_update(t->dg, p, len);
	t->reopens = 0;
	t->pos += len;
	t->window -= (int64_t)len;
	t->consumed += len;
	if (t->consumed >= XFER_CREDIT_BATCH)
		grant(t);
	progress(t);
}

/* ---- upload frames ---------------------------------------------------- */

static bool has_frame(const struct xfer *t)
{
	return t->upload && t->st == X_ACTIVE && t->credit > 0 &&
	       t->pos < t->size;
}

/* Control messages that did not fit in the link's queue when they were
 * due; here the queue is empty (the link asks for a frame only then). */
static void retry_pending(struct xfers *x)
{
	for (struct xfer *t = x->head; t; t = t->next) {
		if (t->st == X_WAIT)
			open_stream(t);
		else if (t->upload && t->st == X_ACTIVE && t->pos == t->size)
			send_end(t);
		else if (!t->upload && t->st == X_ACTIVE &&
			 t->consumed >= XFER_CREDIT_BATCH)
			grant(t);
	}
}

size_t xfers_next_frame(struct xfers *x, uint8_t *buf, size_t cap)
{
	struct xfer *start, *t;
	size_t n;
	ssize_t r;

	retry_pending(x);
	start = x->rr && x->rr->next ? x->rr->next : x->head;
	t = start;
	if (!t || cap <= 4)
		return 0;
	while (!has_frame(t)) {
		t = t->next ? t->next : x->head;
		if (t == start)
			return 0;
	}
	x->rr = t;
	n = STREAM_FRAME_MAX;
	if ((int64_t)n > t->credit)
		n = (size_t)t->credit;
	if (n > t->size - t->pos)
		n = (size_t)(t->size - t->pos);
	if (n > cap - 4)
		n = cap - 4;
	r = pread(t->fd, buf + 4, n, (off_t)t->pos);
	if (r != (ssize_t)n) {
		finish(t, "transfer", "%s: %s", t->path, r < 0 ?
		       strerror(errno) : "the file shrank during the upload");
		return 0;
	}
	buf[0] = (uint8_t)(t->sid >> 24);
	buf[1] = (uint8_t)(t->sid >> 16);
	buf[2] = (uint8_t)(t->sid >> 8);
	buf[3] = (uint8_t)t->sid;
	t->pos += n;
	t->credit -= (int64_t)n;
	t->reopens = 0;
	progress(t);
	if (t->pos == t->size)
		send_end(t);	/* queued: leaves after this frame */
	return 4 + n;
}

/* ---- link events ------------------------------------------------------ */

void xfers_link_up(struct xfers *x, struct link *l)
{
	x->link = l;
	x->next_sid = 1;
	x->unknown_n = x->unknown_next = 0;
	for (struct xfer *t = x->head; t; t = t->next)
		open_stream(t);
}

void xfers_link_down(struct xfers *x)
{
	x->link = NULL;
	for (struct xfer *t = x->head; t; t = t->next) {
		if (t->st == X_DONE || t->st == X_HASHING)
			continue;
		if (t->sid)
			LOGI("%s of %s paused at byte %llu: link lost",
			     what(t), t->name, (unsigned long long)t->pos);
		t->sid = 0;
		set_state(t, X_WAIT);
		t->credit = 0;
		t->consumed = 0;
	}
}

/* ---- life ------------------------------------------------------------- */

bool xfer_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > XFER_NAME_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		      "0123456789._-") == n;
}

static struct xfer *xfer_alloc(struct xfers *x, bool upload, const char *job,
			       const char *name, const char *path,
			       const struct xfer_cbs *cbs, void *arg)
{
	struct xfer *t;

	if (strlen(job) >= sizeof(t->job) || !xfer_name_ok(name) ||
	    strlen(path) >= sizeof(t->path)) {
		LOGE("cannot transfer '%s' for job '%s': bad name or path",
		     name, job);
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->x = x;
	t->upload = upload;
	t->fd = -1;
	set_state(t, X_WAIT);
	snprintf(t->job, sizeof(t->job), "%s", job);
	snprintf(t->name, sizeof(t->name), "%s", name);
	snprintf(t->path, sizeof(t->path), "%s", path);
	t->cbs = *cbs;
	t->arg = arg;
	return t;
}

static void xfer_link(struct xfer *t)
{
	t->next = t->x->head;
	t->x->head = t;
	open_stream(t);
}

err_t xfer_upload(struct xfers *x, const char *job, const char *name,
		  const char *content, const char *path, uint64_t size,
		  const char *sha256, const struct xfer_cbs *cbs, void *arg,
		  struct xfer **out)
{
	struct xfer *t;

	*out = NULL;
	if (!digest_hex_valid(sha256))
		return ERR_INVAL;
	t = xfer_alloc(x, true, job, name, path, cbs, arg);
	if (!t)
		return ERR_INVAL;
	t->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (t->fd < 0) {
		err_t e = errno == ENOENT ? ERR_NOTFOUND : ERR_IO;

		LOGE("%s: %s", path, strerror(errno));
		free(t);
		return e;
	}
	t->size = size;
	t->size_known = true;
	memcpy(t->sha, sha256, sizeof(t->sha));
	snprintf(t->content, sizeof(t->content), "%s", content);
	xfer_link(t);
	*out = t;
	return ERR_OK;
}

err_t xfer_download(struct xfers *x, const char *job, const char *content,
		    const char *level, const char *name, const char *path,
		    uint64_t size, const char *sha256,
		    const struct xfer_cbs *cbs, void *arg, struct xfer **out)
{
	struct xfer *t;
	struct stat st;

	*out = NULL;
	if ((sha256 && !digest_hex_valid(sha256)) ||
	    (content && strlen(content) >= sizeof(t->content)) ||
	    (level && strlen(level) >= sizeof(t->level)))
		return ERR_INVAL;
	t = xfer_alloc(x, false, job, name, path, cbs, arg);
	if (!t)
		return ERR_INVAL;
	snprintf(t->content, sizeof(t->content), "%s", content ? content : "");
	snprintf(t->level, sizeof(t->level), "%s", level ? level : "");
	t->dg = digest_new();
	if (!xfer_part_path(path, sha256, t->part, sizeof(t->part)) || !t->dg)
		goto fail;
	t->fd = open(t->part, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (t->fd < 0 || fstat(t->fd, &st) != 0) {
		LOGE("%s: %s", t->part, strerror(errno));
		goto fail;
	}
	if (sha256)
		memcpy(t->sha, sha256, sizeof(t->sha));
	if (sha256 && size != XFER_SIZE_UNKNOWN) {
		t->size = size;
		t->size_known = true;
	}
	/* What an earlier attempt left: resume from it (once it is hashed),
	 * unless it cannot be this file. */
	t->pos = (uint64_t)st.st_size;
	if (t->pos && (!t->size_known || t->pos <= t->size) &&
	    digest_reader_open(t->part, t->pos, t->dg, &t->hr) == ERR_OK) {
		set_state(t, X_HASHING);
		lws_sul_schedule(x->ctx, 0, &t->sul_hash, hash_step, 1);
	} else if (t->pos) {
		if (ftruncate(t->fd, 0) != 0) {
			LOGE("%s: %s", t->part, strerror(errno));
			goto fail;
		}
		t->pos = 0;
	}
	xfer_link(t);
	*out = t;
	return ERR_OK;
fail:
	if (t->fd >= 0)
		close(t->fd);
	digest_free(t->dg);
	free(t);
	return ERR_IO;
}

void xfer_free(struct xfer *t)
{
	struct xfers *x;
	struct xfer **pp;

	if (!t)
		return;
	x = t->x;
	if (t->sid && t->st != X_DONE)
		send_close(x, t->sid, "shutdown", "cancelled by the agent");
	for (pp = &x->head; *pp && *pp != t; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = t->next;
	if (x->rr == t)
		x->rr = NULL;
	lws_sul_cancel(&t->sul_answer);
	lws_sul_cancel(&t->sul_hash);
	digest_reader_free(t->hr);
	if (t->fd >= 0)
		close(t->fd);
	digest_free(t->dg);
	free(t);
}

bool xfer_part_path(const char *path, const char *sha256, char *out,
		    size_t cap)
{
	int w = sha256 ? snprintf(out, cap, "%s.%.16s.part", path, sha256)
		       : snprintf(out, cap, "%s.part", path);

	return w >= 0 && (size_t)w < cap;
}

uint64_t xfer_done_bytes(const struct xfer *t) { return t->pos; }
uint64_t xfer_total_bytes(const struct xfer *t) { return t->size; }

struct xfers *xfers_new(struct lws_context *ctx)
{
	struct xfers *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->ctx = ctx;
	x->w = proto_w_new(PROTO_MAX_MSG, 0);
	if (!x->w) {
		free(x);
		return NULL;
	}
	x->next_sid = 1;
	return x;
}

void xfers_shutdown(struct xfers *x)
{
	for (struct xfer *t = x ? x->head : NULL; t; t = t->next) {
		lws_sul_cancel(&t->sul_answer);
		lws_sul_cancel(&t->sul_hash);
	}
}

void xfers_free(struct xfers *x)
{
	if (!x)
		return;
	while (x->head) {
		x->head->sid = 0;	/* no link to tell any more */
		xfer_free(x->head);
	}
	proto_w_free(x->w);
	free(x);
}
