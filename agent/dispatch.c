/*
 * dispatch — COM's requests after the handshake (see dispatch.h).
 *
 * Streams COM opens (tunnels, even ids) are the stream module's; streams
 * the agent opens (uploads and downloads, odd ids) are xfer's; jobs are
 * run by ops. Data frames leave alternately from tunnels and transfers, so
 * a bulk transfer never starves an interactive tunnel.
 *
 * Every answer is journaled (job module) before it is sent: a final state
 * stays pending until COM acks it and is re-sent on every new link
 * (PROTOCOL.md §2.6), across agent restarts too; a job id seen again is
 * answered with its recorded state, never run again.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alarm.h"
#include "cert.h"
#include "conf.h"
#include "custom.h"
#include "dispatch.h"
#include "health.h"
#include "job.h"
#include "log.h"
#include "logs.h"
#include "ops.h"
#include "proto.h"
#include "stream.h"
#include "xfer.h"

#define LOG_MODULE "dispatch"

/* REQUIREMENTS §9 / issue: a warning this long before the installed
 * system certificate expires; looked at twice a day between jobs. */
#define CERT_WARN_DAYS 90
#define CERT_CHECK_US (12 * 3600 * LWS_USEC_PER_SEC)
#define CERT_ALARM "cert-expiry"
struct dispatch {
	const struct conf *conf;
	char version[64];
	time_t started;
	struct proto_w *w;
	struct streams *streams;
	struct xfers *xfers;
	struct logs *logs;
	struct ops *ops;
	struct custom *custom;
	struct jobs *jobs;		/* the journal, owned by the caller */
	struct alarms *alarms;		/* owned by the caller */
	struct health *health;
	struct lws_context *ctx;
	lws_sorted_usec_list_t sul_cert;
	int64_t cert_days;		/* days left when last alarmed; -1 */
	struct link *link;		/* while it is up */
	bool xfer_turn;			/* the next data frame: a transfer's */
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

static int64_t days_left(const struct cert_info *ci)
{
	int64_t left = ci->not_after - (int64_t)time(NULL);

	/* Whole days, rounded down; a certificate past its end is negative. */
	return left >= 0 ? left / 86400 : -((-left + 86399) / 86400);
}

static void put_cert(struct dispatch *d)
{
	struct cert_info ci;

	if (!ops_cert_info(d->ops, &ci)) {
		proto_w_null(d->w, "certificate");
		return;
	}
	proto_w_obj(d->w, "certificate");
	proto_w_str(d->w, "subject", ci.subject);
	proto_w_int(d->w, "not_after", ci.not_after);
	proto_w_int(d->w, "days_left", days_left(&ci));
	proto_w_end(d->w);
}

/* The certificate-expiry alarm follows the installed certificate: raised
 * (warning; major once expired) within CERT_WARN_DAYS of its end, again
 * when the days left change, cleared when a newer one is installed.
 * Looked at when the agent starts, when a certificate job ends and every
 * CERT_CHECK_US. */
static void check_cert(struct dispatch *d)
{
	struct cert_info ci;
	char why[160], text[ALARM_TEXT_MAX + 1], until[32];
	bool have = ops_cert_info(d->ops, &ci);
	int64_t left = have ? days_left(&ci) : 0;

	if (!have || left > CERT_WARN_DAYS) {
		d->cert_days = -1;
		if (alarms_find(d->alarms, CERT_ALARM))
			(void)alarms_clear(d->alarms, CERT_ALARM, why,
					   sizeof(why));
		return;
	}
	if (alarms_find(d->alarms, CERT_ALARM) && left == d->cert_days)
		return;
	cert_time_text(ci.not_after, until, sizeof(until));
	if (left >= 0)
		snprintf(text, sizeof(text), "the system certificate %.120s "
			 "expires on %s (%lld days); COM renews it when "
			 "centralcert is on", ci.subject, until,
			 (long long)left);
	else
		snprintf(text, sizeof(text), "the system certificate %.120s "
			 "expired on %s", ci.subject, until);
	if (alarms_raise(d->alarms, CERT_ALARM, ALARM_SECURITY,
			 left >= 0 ? ALARM_WARNING : ALARM_MAJOR, text,
			 (int64_t)time(NULL), why, sizeof(why)) == ERR_OK)
		d->cert_days = left;
	else
		LOGE("cannot raise the certificate alarm: %s", why);
}

static void cert_timer_cb(lws_sorted_usec_list_t *sul)
{
	struct dispatch *d = lws_container_of(sul, struct dispatch, sul_cert);

	check_cert(d);
	lws_sul_schedule(d->ctx, 0, &d->sul_cert, cert_timer_cb,
			 CERT_CHECK_US);
}

static void send_status(struct dispatch *d, struct link *l)
{
	const struct conf *c = d->conf;

	proto_w_begin(d->w, "status", link_next_id(l));
	proto_w_str(d->w, "customer", conf_str(c, CONF_SYSTEM_CUSTOMER_ID));
	proto_w_str(d->w, "system", conf_str(c, CONF_SYSTEM_SYSTEM_NAME));
	proto_w_str(d->w, "profile", conf_str(c, CONF_SYSTEM_PROFILE));
	proto_w_str(d->w, "version", d->version);
	proto_w_str(d->w, "operation", ops_current(d->ops));
	proto_w_int(d->w, "uptime", (int64_t)(time(NULL) - d->started));
	proto_w_str(d->w, "customdata", custom_data_state(d->custom));
	if (*custom_data_message(d->custom))
		proto_w_str(d->w, "customdata_message",
			    custom_data_message(d->custom));
	proto_w_str(d->w, "custom_refresh", custom_refresh_state(d->custom));
	if (*custom_refresh_message(d->custom))
		proto_w_str(d->w, "custom_refresh_message",
			    custom_refresh_message(d->custom));
	health_describe(d->health, d->jobs, d->alarms, d->w);
	put_cert(d);
	send_built(d, l);
}

/* One raise or clear (PROTOCOL.md §2.7); sync marks the re-sent set. */
static void send_alarm(struct dispatch *d, struct link *l,
		       const struct alarm *a, bool raised, bool sync)
{
	proto_w_begin(d->w, "alarm", link_next_id(l));
	proto_w_str(d->w, "action", raised ? "raise" : "clear");
	if (sync)
		proto_w_bool(d->w, "sync", true);
	proto_w_obj(d->w, "alarm");
	if (raised)
		alarm_put(d->w, a);
	else
		proto_w_str(d->w, "id", a->id);
	proto_w_end(d->w);
	send_built(d, l);
}

/* After every (re)connect COM gets the whole active set: whatever was
 * raised or cleared while the link was down is in it, so nothing sent on
 * an old link needs tracking. */
static void send_alarm_sync(struct dispatch *d, struct link *l)
{
	size_t n = alarms_count(d->alarms);

	proto_w_begin(d->w, "alarm.sync", link_next_id(l));
	proto_w_int(d->w, "count", (int64_t)n);
	send_built(d, l);
	for (size_t i = 0; i < n; i++)
		send_alarm(d, l, alarms_at(d->alarms, i), true, true);
}

/* COM asks to clear an alarm from its list: only one the system no
 * longer has (REQUIREMENTS §9). */
static void on_alarm_clear(struct dispatch *d, struct link *l,
			   const struct proto_msg *m)
{
	const char *id = proto_str(m, "alarm");
	const struct alarm *a = id ? alarms_find(d->alarms, id) : NULL;

	proto_w_begin(d->w, "alarm.clear.result", link_next_id(l));
	proto_w_int(d->w, "re", proto_id(m));
	if (id)
		proto_w_str(d->w, "alarm", id);
	proto_w_bool(d->w, "ok", id && !a);
	if (!id) {
		proto_w_str(d->w, "reason", "malformed");
		proto_w_str(d->w, "message", "no alarm id");
	} else if (a) {
		LOGI("COM asked to clear alarm %s, which is still active: "
		     "refused", a->id);
		proto_w_str(d->w, "reason", "active");
		proto_w_str(d->w, "message", "the alarm is still active on "
			    "the system and cannot be cleared");
	}
	send_built(d, l);
}

/* Sends r's state as a job.state; remembers the message id for COM's ack. */
static void send_job_state(struct dispatch *d, struct link *l, int64_t re,
			   const struct job_rec *r)
{
	int64_t id = link_next_id(l);

	proto_w_begin(d->w, "job.state", id);
	if (re > 0)
		proto_w_int(d->w, "re", re);
	proto_w_str(d->w, "job", r->id);
	proto_w_str(d->w, "state", job_state_name(r->state));
	if (r->state == JOB_RUNNING) {
		proto_w_int(d->w, "progress", r->progress);
		if (r->phase[0])
			proto_w_str(d->w, "phase", r->phase);
	}
	if (r->reason[0])
		proto_w_str(d->w, "reason", r->reason);
	if (r->message[0])
		proto_w_str(d->w, "message", r->message);
	send_built(d, l);
	jobs_set_sent(d->jobs, r->id, id);
}

static void on_ack(struct dispatch *d, const struct proto_msg *m)
{
	const struct job_rec *r = jobs_by_sent(d->jobs, proto_re(m));

	if (r && job_state_final(r->state) && !r->acked &&
	    jobs_ack(d->jobs, r->id) == ERR_OK)
		LOGD("COM acknowledged the final state of job %s", r->id);
}

static void on_up(void *arg, struct link *l)
{
	struct dispatch *d = arg;

	d->link = l;
	streams_link_up(d->streams, l);
	send_status(d, l);
	send_alarm_sync(d, l);
	/* Message ids restart on every link, so older ones are void; final
	 * states COM has not acknowledged go again (PROTOCOL.md §2.6). */
	jobs_clear_sent(d->jobs);
	for (size_t i = jobs_count(d->jobs); i-- > 0;) {
		const struct job_rec *r = jobs_at(d->jobs, i);

		if (job_state_final(r->state) && !r->acked && !r->local) {
			LOGI("re-sending unacknowledged final state of job %s",
			     r->id);
			send_job_state(d, l, 0, r);
		}
	}
	/* The job in progress, where it stands; then its transfer resumes. */
	for (size_t i = jobs_count(d->jobs); i-- > 0;) {
		const struct job_rec *r = jobs_at(d->jobs, i);

		if (!job_state_final(r->state) && !r->local)
			send_job_state(d, l, 0, r);
	}
	xfers_link_up(d->xfers, l);
	custom_link_up(d->custom, l);
}

/* ops: a job changed. Sent now if the link is up; a final state that does
 * not get through is re-sent on the next link (it is journaled). */
static void on_job_changed(void *arg, const struct job_rec *r, int64_t re)
{
	struct dispatch *d = arg;

	/* A certificate job ends after the agent recorded what it installed
	 * (or not): the expiry alarm follows that record. */
	if (job_state_final(r->state) && !strcmp(r->op, "certificate"))
		check_cert(d);

	if (d->link)
		send_job_state(d, d->link, re, r);
}

/* ops: the operation in progress changed, custom: its status fields, or
 * health: a server's or the service user's state; COM sees them in the
 * status. */
static void on_busy(void *arg)
{
	struct dispatch *d = arg;

	if (d->link)
		send_status(d, d->link);
}

/* alarms: one raised or cleared; COM hears it now, and the counts in the
 * status. Not sent while the link is down: the next link's sync has it. */
static void on_alarm(void *arg, const struct alarm *a, bool raised)
{
	struct dispatch *d = arg;

	if (!d->link)
		return;
	send_alarm(d, d->link, a, raised, false);
	send_status(d, d->link);
}

/* custom: CustomData.xml is settled; the first refresh is due. If
 * another operation runs, the next link asks again. */
static void on_first_refresh(void *arg)
{
	struct dispatch *d = arg;
	char id[JOB_ID_MAX + 1], why[160];

	if (ops_refresh_local(d->ops, false, true, id, sizeof(id), why,
			      sizeof(why)) == ERR_OK)
		LOGI("first connect: custom-files refresh %s started", id);
	else
		LOGI("first connect: the custom-files refresh waits for the "
		     "next link: %s", why);
}

/* An answer that cannot be journaled (no valid id, or the journal cannot
 * take it) is still sent, once. */
static void reject_invalid(struct dispatch *d, struct link *l,
			   const struct proto_msg *m, const char *job,
			   const char *why)
{
	proto_w_begin(d->w, "job.state", link_next_id(l));
	proto_w_int(d->w, "re", proto_id(m));
	if (job)
		proto_w_str(d->w, "job", job);
	proto_w_str(d->w, "state", "rejected");
	proto_w_str(d->w, "reason", "invalid");
	proto_w_str(d->w, "message", why);
	send_built(d, l);
}

static void on_job(struct dispatch *d, struct link *l, const struct proto_msg *m)
{
	const char *job = proto_str(m, "job");
	const char *op = proto_str(m, "op");
	const struct job_rec *seen;
	bool ctl = false;

	for (const char *c = job; c && *c; c++)
		ctl = ctl || (unsigned char)*c < 0x20 || *c == 0x7f;
	if (!job || !*job || strlen(job) > JOB_ID_MAX || ctl || !op || !*op) {
		LOGE("job message %lld without a valid job id or op; rejected",
		     (long long)proto_id(m));
		reject_invalid(d, l, m, job && strlen(job) <= JOB_ID_MAX &&
			       !ctl ? job : NULL, "job needs a job id of 1..64 "
			       "characters without control characters, and an "
			       "op");
		return;
	}
	seen = jobs_find(d->jobs, job);
	if (seen && seen->local) {
		/* The agent's own job (the automatic backup) has this id. */
		reject_invalid(d, l, m, job, "job id is taken by the agent's "
			       "own job");
		return;
	}
	if (seen) {
		LOGI("job %s seen before; answering its recorded state", job);
		send_job_state(d, l, proto_id(m), seen);
		return;
	}
	if (!ops_job(d->ops, m)) {
		/* The journal could not take it (logged there), so it does
		 * not run; COM still gets an answer, which will not be
		 * re-sent after a restart. */
		reject_invalid(d, l, m, job, "the agent cannot record the job "
			       "(journal full or not writable); try again later");
	}
}

static void on_message(void *arg, struct link *l, const struct proto_msg *m)
{
	struct dispatch *d = arg;
	const char *type = proto_type(m);

	if (custom_on_message(d->custom, m)) {
		/* custom.files, or COM's error answering custom.list */
	} else if (!strcmp(type, "error") || !strcmp(type, "unsupported")) {
		/* the link logged it; never answered */
	} else if (!strcmp(type, "ack")) {
		on_ack(d, m);
	} else if (!strcmp(type, "job")) {
		on_job(d, l, m);
	} else if (!strcmp(type, "alarm.clear")) {
		on_alarm_clear(d, l, m);
	} else if (!strcmp(type, "stream.accept")) {
		xfers_on_control(d->xfers, m);
	} else if (!strcmp(type, "stream.credit") ||
		   !strcmp(type, "stream.close")) {
		int64_t id = 0;

		if (proto_int(m, "stream", &id) && id > 0 && id <= UINT32_MAX &&
		    xfers_owns((uint32_t)id))
			xfers_on_control(d->xfers, m);
		else
			streams_on_control(d->streams, m);
	} else if (!strcmp(type, "stream.open")) {
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
	if (xfers_owns(stream))
		xfers_on_data(d->xfers, stream, p, len);
	else
		streams_on_data(d->streams, stream, p, len);
}

static size_t next_frame(void *arg, struct link *l, uint8_t *buf, size_t cap)
{
	struct dispatch *d = arg;

	size_t n;

	(void)l;
	d->xfer_turn = !d->xfer_turn;
	n = d->xfer_turn ? xfers_next_frame(d->xfers, buf, cap)
			 : streams_next_frame(d->streams, buf, cap);
	if (!n)
		n = d->xfer_turn ? streams_next_frame(d->streams, buf, cap)
				 : xfers_next_frame(d->xfers, buf, cap);
	return n;
}

static void on_down(void *arg, struct link *l)
{
	struct dispatch *d = arg;

	(void)l;
	d->link = NULL;
	streams_link_down(d->streams);
	xfers_link_down(d->xfers);
	custom_link_down(d->custom);
}

struct dispatch *dispatch_new(struct lws_context *ctx, const struct conf *c,
			      struct settings *s, struct jobs *jobs,
			      struct alarms *alarms, const char *version)
{
	struct dispatch *d = calloc(1, sizeof(*d));
	struct ops_cbs cbs = { .changed = on_job_changed, .busy = on_busy };
	struct custom_cbs ccbs = { .first_refresh = on_first_refresh,
				   .changed = on_busy };

	if (!d)
		return NULL;
	d->conf = c;
	d->jobs = jobs;
	d->alarms = alarms;
	d->ctx = ctx;
	d->cert_days = -1;
	d->started = time(NULL);
	snprintf(d->version, sizeof(d->version), "%s", version);
	d->w = proto_w_new(PROTO_MAX_MSG, 0);
	d->streams = streams_new(ctx, c, s);
	d->health = health_new(ctx, c, s);
	d->xfers = xfers_new(ctx);
	if (d->xfers)
		d->logs = logs_new(ctx, c, s, d->xfers);
	if (d->logs)
		d->custom = custom_new(ctx, c, s, d->xfers, &ccbs, d);
	if (d->custom)
		d->ops = ops_new(ctx, c, s, jobs, d->xfers, d->logs, d->custom,
				 &cbs, d);
	if (!d->w || !d->streams || !d->health || !d->ops) {
		dispatch_free(d);
		return NULL;
	}
	alarms_set_notify(alarms, on_alarm, d);
	health_set_notify(d->health, on_busy, d);
	health_start(d->health);
	cert_timer_cb(&d->sul_cert);
	logs_start(d->logs);
	custom_start(d->custom);
	ops_start(d->ops);
	return d;
}

void dispatch_shutdown(struct dispatch *d)
{
	if (!d)
		return;
	lws_sul_cancel(&d->sul_cert);
	custom_shutdown(d->custom);
	health_shutdown(d->health);
	ops_shutdown(d->ops);
	logs_shutdown(d->logs);
	xfers_shutdown(d->xfers);
	streams_shutdown(d->streams);
}

void dispatch_free(struct dispatch *d)
{
	if (!d)
		return;
	ops_free(d->ops);
	health_free(d->health);
	custom_free(d->custom);
	logs_free(d->logs);
	xfers_free(d->xfers);
	streams_free(d->streams);
	proto_w_free(d->w);
	free(d);
}

struct ops *dispatch_ops(const struct dispatch *d)
{
	return d->ops;
}

struct logs *dispatch_logs(const struct dispatch *d)
{
	return d->logs;
}

struct custom *dispatch_custom(const struct dispatch *d)
{
	return d->custom;
}

void dispatch_status_changed(struct dispatch *d)
{
	on_busy(d);
}

struct health *dispatch_health(const struct dispatch *d)
{
	return d->health;
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
