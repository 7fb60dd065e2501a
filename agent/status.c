/*
 * status — renders the daemon's state for the control socket (see status.h).
 *
 * JSON goes through the protocol writer, so escaping and the size cap are the
 * same as on the COM link; it is a "status" message like the one COM gets,
 * plus the link fields only the local operator needs.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cert.h"
#include "alarm.h"
#include "conf.h"
#include "health.h"
#include "job.h"
#include "link.h"
#include "logs.h"
#include "proto.h"
#include "settings.h"
#include "status.h"
#include "custom.h"
#include "stream.h"

#include "../platform/platform.h"

static void fmt_time(time_t t, char *buf, size_t cap)
{
	struct tm tm;

	if (!t) {
		snprintf(buf, cap, "-");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* The writer's text plus a newline into buf (which has room for both, see
 * the writer's cap); frees w. 0 when it did not fit. */
static size_t finish_json(struct proto_w *w, char *buf)
{
	char *out;
	size_t len = 0;

	if (proto_w_finish(w, &out, &len) == ERR_OK) {
		memcpy(buf, out, len);
		buf[len++] = '\n';
	} else {
		len = 0;
	}
	buf[len] = '\0';
	proto_w_free(w);
	return len;
}

static void json_settings(const struct settings *st, struct proto_w *w)
{
	proto_w_obj(w, "settings");
	for (int k = 0; k < SET__COUNT; k++)
		proto_w_bool(w, settings_name((enum setting)k),
			     settings_get(st, (enum setting)k));
	proto_w_end(w);
}

static size_t render_json(const struct status_src *src,
			  const struct link_info *i, char *buf, size_t cap)
{
	const struct conf *c = src->conf;
	const char *version = src->version;
	/* Room for the newline and the NUL after the JSON text. */
	struct proto_w *w = proto_w_new(cap - 2, 0);

	if (!w)
		return 0;
	proto_w_begin(w, "status", 1);
	proto_w_str(w, "state", i->wording);
	proto_w_str(w, "code", i->code);
	proto_w_bool(w, "connecting", i->connecting);
	proto_w_int(w, "since", (int64_t)i->since);
	if (i->next_retry)
		proto_w_int(w, "next_retry", (int64_t)i->next_retry);
	else
		proto_w_null(w, "next_retry");
	proto_w_int(w, "attempts", i->attempts);
	proto_w_int(w, "reconnects", i->reconnects);
	proto_w_str(w, "last_error", i->last_error);
	proto_w_str(w, "session", i->session);
	proto_w_str(w, "url", conf_str(c, CONF_COM_URL));
	proto_w_str(w, "customer_id", conf_str(c, CONF_SYSTEM_CUSTOMER_ID));
	proto_w_str(w, "system_name", conf_str(c, CONF_SYSTEM_SYSTEM_NAME));
	proto_w_str(w, "profile", conf_str(c, CONF_SYSTEM_PROFILE));
	proto_w_str(w, "version", version);
	proto_w_int(w, "pid", (int64_t)getpid());
	proto_w_str(w, "operation", src->operation ? src->operation : "idle");
	if (src->next_auto_backup)
		proto_w_int(w, "next_auto_backup",
			    (int64_t)src->next_auto_backup);
	else
		proto_w_null(w, "next_auto_backup");
	json_settings(src->settings, w);
	if (src->custom) {
		proto_w_obj(w, "custom");
		proto_w_str(w, "customdata", custom_data_state(src->custom));
		proto_w_str(w, "customdata_message",
			    custom_data_message(src->custom));
		proto_w_str(w, "refresh", custom_refresh_state(src->custom));
		proto_w_str(w, "refresh_message",
			    custom_refresh_message(src->custom));
		proto_w_str(w, "vmpro", custom_vmpro(src->custom));
		proto_w_end(w);
	}
	if (src->cert) {
		proto_w_obj(w, "certificate");
		proto_w_str(w, "subject", src->cert->subject);
		proto_w_str(w, "issuer", src->cert->issuer);
		proto_w_str(w, "serial", src->cert->serial);
		proto_w_int(w, "not_before", src->cert->not_before);
		proto_w_int(w, "not_after", src->cert->not_after);
		proto_w_end(w);
	} else {
		proto_w_null(w, "certificate");
	}
	if (src->health)
		health_describe(src->health, src->jobs, src->alarms, w);
	if (src->logs)
		logs_describe(src->logs, w);
	streams_describe(src->streams, w);
	return finish_json(w, buf);
}

struct tbuf {
	char *p;
	size_t len, cap;
};

static void line(struct tbuf *t, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void line(struct tbuf *t, const char *key, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->len >= t->cap)
		return;
	n = snprintf(t->p + t->len, t->cap - t->len, "%-12s ", key);
	if (n > 0)
		t->len += (size_t)n < t->cap - t->len ? (size_t)n
						      : t->cap - t->len - 1;
	va_start(ap, fmt);
	n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n < t->cap - t->len ? (size_t)n
						      : t->cap - t->len - 1;
	if (t->len + 1 < t->cap)
		t->p[t->len++] = '\n';
	t->p[t->len] = '\0';
}

static void text_settings(struct tbuf *t, const struct settings *st)
{
	char list[160] = "";
	size_t n = 0;

	for (int k = 0; k < SET__COUNT && n < sizeof(list); k++)
		if (settings_get(st, (enum setting)k)) {
			int w = snprintf(list + n, sizeof(list) - n, "%s%s",
					 n ? ", " : "",
					 settings_name((enum setting)k));
			if (w > 0)
				n += (size_t)w;
		}
	line(t, "Settings on:", "%s", n ? list : "none");
}

/* What COM's customer list shows beyond the link (health.h). */
static void text_health(struct tbuf *t, const struct status_src *src)
{
	const struct job_rec *r = jobs_last_ended(src->jobs);
	const char *name, *address, *state, *why[HEALTH_REASONS_MAX];
	size_t nr = health_reasons(src->health, why);
	const struct alarms *al = src->alarms;

	for (size_t i = 0; health_server(src->health, i, &name, &address,
					 &state); i++)
		line(t, "Server:", "%s %s (%s)", name, state, address);
	if (r)
		line(t, "Last op:", "%s %s%s%s", r->op,
		     job_state_name(r->state), r->reason[0] ? ", " : "",
		     r->reason);
	line(t, "Alarms:", "%zu critical, %zu major, %zu minor, %zu warning",
	     alarms_count_severity(al, ALARM_CRITICAL),
	     alarms_count_severity(al, ALARM_MAJOR),
	     alarms_count_severity(al, ALARM_MINOR),
	     alarms_count_severity(al, ALARM_WARNING));
	line(t, "Service user:", "%s", health_user_word(src->health));
	for (size_t i = 0; i < nr; i++)
		line(t, "To COM:", "%s", proto_reason_text(why[i]));
}

static size_t render_text(const struct status_src *src,
			  const struct link_info *i, char *buf, size_t cap)
{
	const struct conf *c = src->conf;
	const char *version = src->version;
	struct tbuf t = { buf, 0, cap };
	char since[32], retry[32];
	long long ago = (long long)(time(NULL) - i->since);

	fmt_time(i->since, since, sizeof(since));
	fmt_time(i->next_retry, retry, sizeof(retry));
	buf[0] = '\0';
	line(&t, "Connection:", "%s%s", i->wording,
	     i->connecting ? " (connecting...)" : "");
	line(&t, "Since:", "%s (%lld s ago)", since, ago);
	if (i->last_error[0])
		line(&t, "Last error:", "%s", i->last_error);
	line(&t, "Next retry:", "%s", retry);
	line(&t, "COM:", "%s", conf_str(c, CONF_COM_URL));
	line(&t, "Customer:", "%s", conf_str(c, CONF_SYSTEM_CUSTOMER_ID));
	line(&t, "System:", "%s", conf_str(c, CONF_SYSTEM_SYSTEM_NAME));
	line(&t, "Profile:", "%s (%s)", conf_str(c, CONF_SYSTEM_PROFILE),
	     conf_platform(c)->label);
	line(&t, "Version:", "%s", version);
	line(&t, "Attempts:", "%u", i->attempts);
	line(&t, "Reconnects:", "%u", i->reconnects);
	line(&t, "Agent PID:", "%ld", (long)getpid());
	line(&t, "Operation:", "%s", src->operation ? src->operation : "idle");
	if (src->next_auto_backup) {
		char next[32];

		fmt_time(src->next_auto_backup, next, sizeof(next));
		line(&t, "Auto backup:", "next at %s", next);
	} else {
		line(&t, "Auto backup:", "off");
	}
	text_settings(&t, src->settings);
	if (src->cert) {
		char until[32];

		/* Not fmt_time(): the date may be past the appliance's
		 * 32-bit time_t. */
		cert_time_text(src->cert->not_after, until, sizeof(until));
		line(&t, "Certificate:", "%s, valid until %s",
		     src->cert->subject, until);
		line(&t, "", "serial %s, issued by %s", src->cert->serial,
		     src->cert->issuer);
	}
	if (src->health)
		text_health(&t, src);
	if (src->custom) {
		const struct custom *cu = src->custom;

		line(&t, "CustomData:", "%s%s%s", custom_data_state(cu),
		     *custom_data_message(cu) ? " - " : "",
		     custom_data_message(cu));
		line(&t, "Custom files:", "last refresh %s%s%s",
		     custom_refresh_state(cu),
		     *custom_refresh_message(cu) ? " - " : "",
		     custom_refresh_message(cu));
	}
	if (src->logs && t.len + 1 < t.cap)
		t.len += logs_format(src->logs, t.p + t.len, t.cap - t.len);
	line(&t, "Tunnels:", "%u open", streams_count(src->streams));
	if (t.len + 1 < t.cap)
		t.len += streams_format(src->streams, t.p + t.len,
					t.cap - t.len);
	return t.len;
}

size_t status_render(const struct status_src *src, bool json, char *buf,
		     size_t cap)
{
	struct link_info i;

	if (cap < 3)
		return 0;
	link_get_info(src->link, &i);
	return json ? render_json(src, &i, buf, cap)
		    : render_text(src, &i, buf, cap);
}

static size_t jobs_json(const struct jobs *j, char *buf, size_t cap)
{
	struct proto_w *w = proto_w_new(cap - 2, 0);

	if (!w)
		return 0;
	proto_w_begin(w, "jobs", 1);
	proto_w_arr(w, "jobs");
	for (size_t i = 0; i < jobs_count(j); i++) {
		const struct job_rec *r = jobs_at(j, i);

		proto_w_obj(w, NULL);
		proto_w_str(w, "job", r->id);
		proto_w_str(w, "op", r->op);
		proto_w_str(w, "state", job_state_name(r->state));
		proto_w_int(w, "progress", r->progress);
		proto_w_str(w, "reason", r->reason);
		proto_w_str(w, "message", r->message);
		proto_w_int(w, "created", r->created);
		proto_w_int(w, "updated", r->updated);
		proto_w_bool(w, "acked", r->acked);
		proto_w_str(w, "phase", r->phase);
		proto_w_bool(w, "local", r->local);
		proto_w_end(w);
	}
	proto_w_end(w);
	return finish_json(w, buf);
}

size_t status_render_jobs(const struct jobs *j, bool json, char *buf,
			  size_t cap)
{
	struct tbuf t = { buf, 0, cap };
	char when[32], key[80];

	if (cap < 3)
		return 0;
	if (json)
		return jobs_json(j, buf, cap);
	buf[0] = '\0';
	if (!jobs_count(j))
		line(&t, "No jobs", "%s", "recorded yet");
	for (size_t i = 0; i < jobs_count(j); i++) {
		const struct job_rec *r = jobs_at(j, i);

		fmt_time((time_t)r->updated, when, sizeof(when));
		snprintf(key, sizeof(key), "%s", r->id);
		char phase[40] = "";

		if (r->state == JOB_RUNNING && r->phase[0])
			snprintf(phase, sizeof(phase), " (%s, %d%%)", r->phase,
				 r->progress);
		line(&t, key, "%s %s%s%s%s%s%s (%s)%s", r->op,
		     job_state_name(r->state), phase, r->reason[0] ? ": " : "",
		     r->reason, r->message[0] ? " - " : "", r->message, when,
		     job_state_final(r->state) && !r->acked ?
		     " [not yet acknowledged by COM]" : "");
	}
	return t.len;
}

static size_t alarms_json(const struct alarms *al, char *buf, size_t cap)
{
	struct proto_w *w = proto_w_new(cap - 2, 0);

	if (!w)
		return 0;
	proto_w_begin(w, "alarms", 1);
	proto_w_arr(w, "alarms");
	for (size_t i = 0; i < alarms_count(al); i++) {
		proto_w_obj(w, NULL);
		alarm_put(w, alarms_at(al, i));
		proto_w_end(w);
	}
	proto_w_end(w);
	return finish_json(w, buf);
}

size_t status_render_alarms(const struct alarms *al, bool json, char *buf,
			    size_t cap)
{
	struct tbuf t = { buf, 0, cap };
	char first[32], last[32];

	if (cap < 3)
		return 0;
	if (json)
		return alarms_json(al, buf, cap);
	buf[0] = '\0';
	if (!alarms_count(al))
		line(&t, "No alarms", "%s", "active");
	for (size_t i = 0; i < alarms_count(al); i++) {
		const struct alarm *x = alarms_at(al, i);

		fmt_time((time_t)x->first, first, sizeof(first));
		fmt_time((time_t)x->last, last, sizeof(last));
		line(&t, alarm_severity_name(x->severity), "%s %s x%lu, first "
		     "%s, last %s: %s", alarm_type_name(x->type), x->id,
		     (unsigned long)x->count, first, last, x->text);
	}
	return t.len;
}
