/*
 * dispatch — COM's requests after the handshake (see dispatch.h).
 *
 * Streams (tunnels) are the stream module's. This version runs no job
 * operation yet, and says so plainly: a job is answered "rejected /
 * unsupported" (or "invalid" when it is malformed).
 *
 * A final job state stays pending until COM acks it and is re-sent on every
 * new link (PROTOCOL.md §2.6); a job id seen again is answered with its
 * recorded state, never run again. The table is bounded and lives in memory:
 * the persistent job journal comes with the job operations themselves.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "dispatch.h"
#include "log.h"
#include "proto.h"
#include "stream.h"

#define LOG_MODULE "dispatch"
#define JOB_ID_MAX 64

/* Final job states kept for acks and duplicate ids; the oldest is dropped
 * when full (COM then sees at most a repeat answer to a repeated job). */
#define JOBS_MAX 32

struct job_rec {
	char job[JOB_ID_MAX + 1];
	char reason[16];
	char msg[160];
	int64_t sent_id;	/* id of the last job.state sent for it */
	bool acked;
	bool used;
};

struct dispatch {
	const struct conf *conf;
	char version[64];
	time_t started;
	struct proto_w *w;
	struct streams *streams;
	struct job_rec jobs[JOBS_MAX];
	unsigned jobs_next;
};

static void send_built(struct dispatch *d, struct link *l)
{
	char *buf;
	size_t len;

	if (proto_w_finish(d->w, &buf, &len) != ERR_OK) {
		LOGE("reply does not fit in %u bytes; dropped", PROTO_MAX_MSG);
		return;
	}
	(void)link_send(l, buf, len);
}

static void send_status(struct dispatch *d, struct link *l)
{
	const struct conf *c = d->conf;

	proto_w_begin(d->w, "status", link_next_id(l));
	proto_w_str(d->w, "customer", conf_str(c, CONF_SYSTEM_CUSTOMER_ID));
	proto_w_str(d->w, "system", conf_str(c, CONF_SYSTEM_SYSTEM_NAME));
	proto_w_str(d->w, "profile", conf_str(c, CONF_SYSTEM_PROFILE));
	proto_w_str(d->w, "version", d->version);
	proto_w_str(d->w, "operation", "idle");
	proto_w_int(d->w, "uptime", (int64_t)(time(NULL) - d->started));
	send_built(d, l);
}

static int64_t job_state(struct dispatch *d, struct link *l, int64_t re,
			 const char *job, const char *reason, const char *msg)
{
	int64_t id = link_next_id(l);

	proto_w_begin(d->w, "job.state", id);
	if (re > 0)
		proto_w_int(d->w, "re", re);
	if (job)
		proto_w_str(d->w, "job", job);
	proto_w_str(d->w, "state", "rejected");
	proto_w_str(d->w, "reason", reason);
	proto_w_str(d->w, "message", msg);
	send_built(d, l);
	return id;
}

static struct job_rec *job_find(struct dispatch *d, const char *job)
{
	for (unsigned i = 0; i < JOBS_MAX; i++)
		if (d->jobs[i].used && !strcmp(d->jobs[i].job, job))
			return &d->jobs[i];
	return NULL;
}

static struct job_rec *job_add(struct dispatch *d, const char *job,
			       const char *reason, const char *msg)
{
	struct job_rec *r = &d->jobs[d->jobs_next];

	if (r->used && !r->acked)
		LOGE("job table full: final state of job %s no longer re-sent",
		     r->job);
	d->jobs_next = (d->jobs_next + 1) % JOBS_MAX;
	memset(r, 0, sizeof(*r));
	r->used = true;
	snprintf(r->job, sizeof(r->job), "%s", job);
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
	snprintf(r->msg, sizeof(r->msg), "%s", msg);
	return r;
}

static void on_ack(struct dispatch *d, const struct proto_msg *m)
{
	int64_t re = proto_re(m);

	for (unsigned i = 0; i < JOBS_MAX; i++) {
		struct job_rec *r = &d->jobs[i];

		if (r->used && !r->acked && re > 0 && r->sent_id == re) {
			r->acked = true;
			LOGD("COM acknowledged the final state of job %s", r->job);
		}
	}
}

static void on_up(void *arg, struct link *l)
{
	struct dispatch *d = arg;

	streams_link_up(d->streams, l);
	send_status(d, l);
	/* Message ids restart on every link, so older sent_ids are void. */
	for (unsigned i = 0; i < JOBS_MAX; i++) {
		struct job_rec *r = &d->jobs[i];

		r->sent_id = 0;
		if (r->used && !r->acked) {
			LOGI("re-sending unacknowledged final state of job %s",
			     r->job);
			r->sent_id = job_state(d, l, 0, r->job, r->reason,
					       r->msg);
		}
	}
}

static void on_job(struct dispatch *d, struct link *l, const struct proto_msg *m)
{
	const char *job = proto_str(m, "job");
	const char *op = proto_str(m, "op");
	struct job_rec *r;
	char msg[160];

	if (!job || !*job || strlen(job) > JOB_ID_MAX || !op || !*op) {
		LOGE("job message %lld without a valid job id or op; rejected",
		     (long long)proto_id(m));
		job_state(d, l, proto_id(m), job && strlen(job) <= JOB_ID_MAX ?
			  job : NULL, "invalid",
			  "job needs a job id of 1..64 characters and an op");
		return;
	}
	r = job_find(d, job);
	if (r) {
		LOGI("job %s seen before; answering its recorded state", job);
	} else {
		snprintf(msg, sizeof(msg),
			 "operation %.40s is not supported by this agent", op);
		LOGI("job %s (%s) rejected: %s", job, op, msg);
		r = job_add(d, job, "unsupported", msg);
	}
	r->sent_id = job_state(d, l, proto_id(m), r->job, r->reason, r->msg);
}

static void on_message(void *arg, struct link *l, const struct proto_msg *m)
{
	struct dispatch *d = arg;
	const char *type = proto_type(m);

	if (!strcmp(type, "ack")) {
		on_ack(d, m);
	} else if (!strcmp(type, "job")) {
		on_job(d, l, m);
	} else if (!strncmp(type, "stream.", 7) &&
		   (!strcmp(type + 7, "open") || !strcmp(type + 7, "credit") ||
		    !strcmp(type + 7, "close"))) {
		streams_on_control(d->streams, m);
	} else {
		LOGI("COM sent unsupported message type '%s'", type);
		proto_w_begin(d->w, "unsupported", link_next_id(l));
		proto_w_int(d->w, "re", proto_id(m));
		proto_w_str(d->w, "what", type);
		send_built(d, l);
	}
}

static void on_data(void *arg, struct link *l, uint32_t stream,
		    const uint8_t *p, size_t len)
{
	struct dispatch *d = arg;

	(void)l;
	streams_on_data(d->streams, stream, p, len);
}

static size_t next_frame(void *arg, struct link *l, uint8_t *buf, size_t cap)
{
	struct dispatch *d = arg;

	(void)l;
	return streams_next_frame(d->streams, buf, cap);
}

static void on_down(void *arg, struct link *l)
{
	struct dispatch *d = arg;

	(void)l;
	streams_link_down(d->streams);
}

struct dispatch *dispatch_new(struct lws_context *ctx, const struct conf *c,
			      const struct settings *s, const char *version)
{
	struct dispatch *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->conf = c;
	d->started = time(NULL);
	snprintf(d->version, sizeof(d->version), "%s", version);
	d->w = proto_w_new(PROTO_MAX_MSG, 0);
	d->streams = streams_new(ctx, c, s);
	if (!d->w || !d->streams) {
		dispatch_free(d);
		return NULL;
	}
	return d;
}

void dispatch_shutdown(struct dispatch *d)
{
	if (d)
		streams_shutdown(d->streams);
}

void dispatch_free(struct dispatch *d)
{
	if (!d)
		return;
	streams_free(d->streams);
	proto_w_free(d->w);
	free(d);
}

const struct streams *dispatch_streams(const struct dispatch *d)
{
	return d->streams;
}

struct link_handler dispatch_handler(struct dispatch *d)
{
	struct link_handler h = {
		.arg = d, .up = on_up, .message = on_message, .data = on_data,
		.next_frame = next_frame, .down = on_down,
	};
	return h;
}
