/*
 * health — the system's health as COM's customer list shows it (see
 * health.h).
 *
 * A probe round dials every [network] server at once (lws raw client
 * sockets, so the loop never blocks) and each probe ends on its own: the
 * connect, the refusal or its timer. A state that changes is told to the
 * dispatcher, which sends COM a new status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alarm.h"
#include "conf.h"
#include "health.h"
#include "job.h"
#include "log.h"
#include "proto.h"
#include "settings.h"
#include "state.h"
#include "stream.h"

#define LOG_MODULE "health"

#define USER_FILE "service_user"
/* A probe's answer within this or the tunnel connect timeout, whichever
 * is shorter: a LAN server that takes longer is as good as down for a
 * technician about to open a tunnel to it. */
#define PROBE_TIMEOUT_MS 5000

enum srv_state { SRV_UNKNOWN, SRV_UP, SRV_DOWN };

static const char *const srv_words[] = { "unknown", "up", "down" };

static const char *const user_words[HU__COUNT] = {
	[HU_OK] = "ok", [HU_DISABLED] = "disabled",
	[HU_DISABLED_BY_ADMIN] = "disabled_by_admin", [HU_LOCKED] = "locked",
	[HU_PASSWORD_EXPIRED] = "password_expired",
	[HU_PASSWORD_CHANGE_REQUIRED] = "password_change_required",
};

/* COM's reason code (PROTOCOL.md §2.3) for each user state. */
static const char *const user_reasons[HU__COUNT] = {
	[HU_OK] = NULL, [HU_DISABLED] = "user_disabled",
	[HU_DISABLED_BY_ADMIN] = "disabled_by_admin",
	[HU_LOCKED] = "user_locked",
	[HU_PASSWORD_EXPIRED] = "password_expired",
	[HU_PASSWORD_CHANGE_REQUIRED] = "password_change_required",
};

static const char *const right_words[HR__COUNT] = {
	[HR_BACKUP] = "backup", [HR_UPGRADE] = "upgrade",
	[HR_MONITOR_READ] = "monitor_read",
	[HR_WRITE_PASSWORD] = "write_password",
};

#define ALL_RIGHTS ((1u << HR__COUNT) - 1)

struct probe {
	struct health *h;
	const struct conf_server *srv;
	struct lws *wsi;
	enum srv_state state;
	time_t since;			/* of the state; 0: never probed */
	bool busy;			/* a dial in flight */
	bool dialing;			/* inside lws_client_connect_via_info */
	bool failed_sync;		/* refused from inside it */
	lws_sorted_usec_list_t sul;	/* this probe's timeout */
};

struct health {
	struct lws_context *ctx;
	struct lws_vhost *vhost;
	const struct conf *conf;
	const struct settings *settings;
	char path[STATE_PATH_MAX + 1];
	struct health_user_state user;
	struct probe probes[CONF_SERVERS_MAX];
	size_t n;
	lws_sorted_usec_list_t sul_round;
	bool stopped;
	health_notify_fn notify;
	void *notify_arg;
};

/* ---- the service user ------------------------------------------------ */

static int word_index(const char *const *words, int n, const char *s,
		      size_t len)
{
	for (int i = 0; i < n; i++)
		if (strlen(words[i]) == len && !strncmp(words[i], s, len))
			return i;
	return -1;
}

/* "a,b,c" (or empty) into a bit set; false at an unknown right. */
static bool parse_rights(const char *s, size_t len, unsigned *out)
{
	unsigned set = 0;

	for (size_t i = 0; i < len;) {
		const char *c = memchr(s + i, ',', len - i);
		size_t n = c ? (size_t)(c - (s + i)) : len - i;
		int k = word_index(right_words, HR__COUNT, s + i, n);

		if (k < 0)
			return false;
		set |= 1u << k;
		i += n + (c ? 1 : 0);
		if (c && i == len)
			return false;	/* a trailing comma */
	}
	*out = set;
	return true;
}

/* One "key=value" of the file or the command line, len bytes, over *u. */
static err_t assign(struct health_user_state *u, const char *s, size_t len,
		    char *why, size_t why_cap)
{
	const char *eq = memchr(s, '=', len);
	size_t kl = eq ? (size_t)(eq - s) : 0;
	const char *v = eq ? eq + 1 : NULL;
	size_t vl = eq ? len - kl - 1 : 0;
	int k;

	if (!eq) {
		snprintf(why, why_cap, "expected state=WORD or missing=LIST");
	} else if (kl == 5 && !strncmp(s, "state", 5)) {
		k = word_index(user_words, HU__COUNT, v, vl);
		if (k >= 0) {
			u->state = (enum health_user)k;
			return ERR_OK;
		}
		snprintf(why, why_cap, "state: '%.*s' is not one of ok, "
			 "disabled, disabled_by_admin, locked, "
			 "password_expired, password_change_required",
			 (int)(vl > 40 ? 40 : vl), v);
	} else if (kl == 7 && !strncmp(s, "missing", 7)) {
		if (parse_rights(v, vl, &u->missing))
			return ERR_OK;
		snprintf(why, why_cap, "missing: '%.*s' is not a list of "
			 "backup, upgrade, monitor_read, write_password",
			 (int)(vl > 60 ? 60 : vl), v);
	} else {
		snprintf(why, why_cap, "unknown key '%.*s' (state or missing)",
			 (int)(kl > 40 ? 40 : kl), s);
	}
	return ERR_INVAL;
}

err_t health_user_assign(struct health_user_state *u, const char *a,
			 char *why, size_t why_cap)
{
	struct health_user_state t = *u;
	err_t e = assign(&t, a, strlen(a), why, why_cap);

	if (e == ERR_OK)
		*u = t;
	return e;
}

size_t health_user_render(const struct health_user_state *u, char *buf,
			  size_t cap)
{
	size_t off = 0;
	int k = snprintf(buf, cap, "state=%s\nmissing=", user_words[u->state]);

	if (k < 0 || (size_t)k >= cap)
		return 0;
	off = (size_t)k;
	for (int i = 0; i < HR__COUNT; i++) {
		if (!(u->missing & (1u << i)))
			continue;
		k = snprintf(buf + off, cap - off, "%s%s",
			     buf[off - 1] == '=' ? "" : ",", right_words[i]);
		if (k < 0 || (size_t)k >= cap - off)
			return 0;
		off += (size_t)k;
	}
	if (off + 1 >= cap)
		return 0;
	buf[off++] = '\n';
	buf[off] = '\0';
	return off;
}

/* Reads path into *u: missing means all well; each bad line is logged
 * and skipped. */
static err_t user_read(const char *path, struct health_user_state *u)
{
	char buf[HEALTH_FILE_MAX];
	size_t len = 0;
	unsigned line = 0;
	err_t e, rc = ERR_OK;

	memset(u, 0, sizeof(*u));
	e = state_read(path, buf, sizeof(buf), &len);
	if (e == ERR_NOTFOUND)
		return ERR_OK;
	if (e != ERR_OK)
		return e == ERR_LIMIT ? ERR_INVAL : e;
	for (const char *p = buf, *end = buf + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		char why[160];

		line++;
		if (n && *p != '#') {
			if (memchr(p, '\0', n))
				snprintf(why, sizeof(why), "NUL byte");
			if (memchr(p, '\0', n) ||
			    assign(u, p, n, why, sizeof(why)) != ERR_OK) {
				LOGE("%s:%u: %s; line skipped", path, line,
				     why);
				rc = ERR_INVAL;
			}
		}
		p = nl ? nl + 1 : end;
	}
	return rc;
}

err_t health_user_load(const char *state_dir, struct health_user_state *u)
{
	char path[STATE_PATH_MAX + 1];

	if (!state_path(state_dir, USER_FILE, path, sizeof(path)))
		return ERR_INVAL;
	return user_read(path, u);
}

err_t health_user_save(const char *state_dir,
		       const struct health_user_state *u)
{
	char path[STATE_PATH_MAX + 1], buf[HEALTH_FILE_MAX];
	size_t len = health_user_render(u, buf, sizeof(buf));

	if (!len || !state_path(state_dir, USER_FILE, path, sizeof(path)))
		return ERR_INVAL;
	return state_write(path, buf, len);
}

err_t health_reload(struct health *h)
{
	struct health_user_state before = h->user;
	err_t e = user_read(h->path, &h->user);

	if (e == ERR_IO)
		h->user = before;	/* says nothing of what it holds */
	if (memcmp(&before, &h->user, sizeof(before))) {
		LOGI("service user now %s, %u right(s) missing",
		     user_words[h->user.state],
		     (unsigned)__builtin_popcount(h->user.missing));
		if (h->notify)
			h->notify(h->notify_arg);
	}
	return e;
}

/* ---- server probes --------------------------------------------------- */

static void probe_done(struct probe *p, enum srv_state st)
{
	struct health *h = p->h;

	lws_sul_cancel(&p->sul);
	p->busy = false;
	if (st == p->state && p->since)
		return;
	if (p->since || st != SRV_UNKNOWN)
		LOGI("server %s (%s) is %s", p->srv->name, p->srv->address,
		     srv_words[st]);
	p->state = st;
	p->since = time(NULL);
	if (h->notify && !h->stopped)
		h->notify(h->notify_arg);
}

static void probe_timeout_cb(lws_sorted_usec_list_t *sul)
{
	struct probe *p = lws_container_of(sul, struct probe, sul);
	struct lws *wsi = p->wsi;

	/* Detach first: closing calls back, and the answer is ours. */
	p->wsi = NULL;
	if (wsi) {
		lws_set_opaque_user_data(wsi, NULL);
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
	}
	probe_done(p, SRV_DOWN);
}

static void probe_dial(struct probe *p)
{
	static const lws_retry_bo_t no_validity = { .secs_since_valid_hangup = 0 };
	struct health *h = p->h;
	struct lws_client_connect_info i;
	uint64_t to = conf_num(h->conf, CONF_COM_TUNNEL_CONNECT_TIMEOUT);

	if (to > PROBE_TIMEOUT_MS)
		to = PROBE_TIMEOUT_MS;
	memset(&i, 0, sizeof(i));
	i.context = h->ctx;
	i.vhost = h->vhost;
	i.address = p->srv->address;
	i.port = (int)conf_num(h->conf, CONF_SERVICES_WEBMANAGER);
	i.host = i.origin = p->srv->address;
	i.method = "RAW";
	i.local_protocol_name = HEALTH_PROTOCOL;
	i.opaque_user_data = p;
	i.pwsi = &p->wsi;
	i.retry_and_idle_policy = &no_validity;
	p->busy = true;
	p->failed_sync = false;
	lws_sul_schedule(h->ctx, 0, &p->sul, probe_timeout_cb,
			 (lws_usec_t)to * 1000);
	p->dialing = true;
	if (!lws_client_connect_via_info(&i))
		p->failed_sync = true;
	p->dialing = false;
	if (p->failed_sync) {
		p->wsi = NULL;
		if (p->busy)
			probe_done(p, SRV_DOWN);
	}
}

static void round_cb(lws_sorted_usec_list_t *sul)
{
	struct health *h = lws_container_of(sul, struct health, sul_round);

	for (size_t i = 0; i < h->n; i++)
		if (!h->probes[i].busy)
			probe_dial(&h->probes[i]);
	lws_sul_schedule(h->ctx, 0, &h->sul_round, round_cb,
			 (lws_usec_t)conf_num(h->conf,
					      CONF_SYSTEM_PROBE_INTERVAL) * 1000);
}

static int health_lws_callback(struct lws *wsi,
			       enum lws_callback_reasons reason, void *user,
			       void *in, size_t len)
{
	struct probe *p = lws_get_opaque_user_data(wsi);

	(void)user;
	(void)len;
	if (!p)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_RAW_CONNECTED:
		/* It answered; nothing is said to it. -1 closes the socket. */
		lws_set_opaque_user_data(wsi, NULL);
		p->wsi = NULL;
		probe_done(p, SRV_UP);
		return -1;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		lws_set_opaque_user_data(wsi, NULL);
		p->wsi = NULL;
		LOGD("probe of %s: %s", p->srv->name,
		     in ? (const char *)in : "connection failed");
		if (p->dialing)
			p->failed_sync = true;
		probe_done(p, SRV_DOWN);
		return 0;
	case LWS_CALLBACK_RAW_CLOSE:
		lws_set_opaque_user_data(wsi, NULL);
		p->wsi = NULL;
		return 0;
	default:
		return 0;
	}
}

struct lws_protocols health_protocol(void)
{
	struct lws_protocols p = {
		.name = HEALTH_PROTOCOL,
		.callback = health_lws_callback,
	};
	return p;
}

/* ---- the object ------------------------------------------------------ */

struct health *health_new(struct lws_context *ctx, const struct conf *c,
			  const struct settings *s)
{
	struct health *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->ctx = ctx;
	h->conf = c;
	h->settings = s;
	if (!state_path(conf_str(c, CONF_SYSTEM_STATE_DIR), USER_FILE, h->path,
			sizeof(h->path))) {
		free(h);
		return NULL;
	}
	(void)user_read(h->path, &h->user);
	h->n = conf_server_count(c);
	for (size_t i = 0; i < h->n; i++) {
		h->probes[i].h = h;
		h->probes[i].srv = conf_server_at(c, i);
	}
	/* Tunnels' vhost: the probes are the same kind of LAN dial. */
	if (ctx)
		h->vhost = lws_get_vhost_by_name(ctx, STREAM_VHOST);
	return h;
}

void health_set_notify(struct health *h, health_notify_fn fn, void *arg)
{
	h->notify = fn;
	h->notify_arg = arg;
}

void health_start(struct health *h)
{
	if (h && h->ctx && h->vhost && h->n &&
	    conf_num(h->conf, CONF_SYSTEM_PROBE_INTERVAL))
		lws_sul_schedule(h->ctx, 0, &h->sul_round, round_cb, 1);
}

void health_shutdown(struct health *h)
{
	if (!h || !h->ctx)
		return;
	h->stopped = true;
	lws_sul_cancel(&h->sul_round);
	for (size_t i = 0; i < h->n; i++) {
		struct probe *p = &h->probes[i];

		lws_sul_cancel(&p->sul);
		if (p->wsi) {
			lws_set_opaque_user_data(p->wsi, NULL);
			p->wsi = NULL;
		}
		p->busy = false;
	}
}

void health_free(struct health *h)
{
	free(h);
}

/* ---- what COM and the operator see ----------------------------------- */

size_t health_reasons(const struct health *h,
		      const char *out[HEALTH_REASONS_MAX])
{
	size_t n = 0;
	unsigned m = h->user.missing;

	if (user_reasons[h->user.state])
		out[n++] = user_reasons[h->user.state];
	if (m == ALL_RIGHTS) {
		out[n++] = "no_rights";
	} else {
		if (m & (1u << HR_UPGRADE))
			out[n++] = "upgrade_rights";
		if (m & (1u << HR_MONITOR_READ))
			out[n++] = "monitor_read_disabled";
		if (m & ((1u << HR_BACKUP) | (1u << HR_WRITE_PASSWORD)))
			out[n++] = "insufficient_permissions";
	}
	if (!settings_get(h->settings, SET_REMOTEUPGRADE))
		out[n++] = "remote_ops_not_allowed";
	return n;
}

bool health_server(const struct health *h, size_t i, const char **name,
		   const char **address, const char **state)
{
	if (!h || i >= h->n)
		return false;
	*name = h->probes[i].srv->name;
	*address = h->probes[i].srv->address;
	*state = srv_words[h->probes[i].state];
	return true;
}

const char *health_user_word(const struct health *h)
{
	return user_words[h->user.state];
}

void health_describe(const struct health *h, const struct jobs *jobs,
		     const struct alarms *alarms, struct proto_w *w)
{
	const struct job_rec *r = jobs_last_ended(jobs);
	const char *why[HEALTH_REASONS_MAX];
	size_t nr = health_reasons(h, why);

	/* Names as keys: one field per server keeps a full network (16)
	 * inside PROTOCOL.md's 64 fields per message. */
	proto_w_obj(w, "servers");
	for (size_t i = 0; i < h->n; i++)
		proto_w_str(w, h->probes[i].srv->name,
			    srv_words[h->probes[i].state]);
	proto_w_end(w);
	if (r) {
		proto_w_obj(w, "last_operation");
		proto_w_str(w, "op", r->op);
		proto_w_str(w, "state", job_state_name(r->state));
		proto_w_int(w, "at", r->updated);
		if (r->reason[0])
			proto_w_str(w, "reason", r->reason);
		proto_w_end(w);
	} else {
		proto_w_null(w, "last_operation");
	}
	proto_w_obj(w, "alarms");
	for (int s = 0; s < ALARM__SEVERITIES; s++)
		proto_w_int(w, alarm_severity_name((enum alarm_severity)s),
			    (int64_t)alarms_count_severity(
				    alarms, (enum alarm_severity)s));
	proto_w_end(w);
	proto_w_str(w, "service_user", user_words[h->user.state]);
	proto_w_arr(w, "reasons");
	for (size_t i = 0; i < nr; i++)
		proto_w_str(w, NULL, why[i]);
	proto_w_end(w);
}
