/*
 * logs — syslog intake, the log store and its uploads (see logs.h).
 *
 * Sockets: one vhost of its own ("syslog") listens on [logs] syslog for TCP
 * (raw sockets, framed by intake_tcp) and has a UDP socket bound to the
 * same address; both hand each message to intake_classify() and store the
 * RFC 5424 / RFC 3164 ones verbatim. What is dropped — malformed, binary,
 * a store cap, a write error, a TCP framing error — is counted (status)
 * and logged as a summary, never per message: a PBX in a log storm must not
 * turn the agent's own log into a second one.
 *
 * Uploads: a "pass" uploads, one at a time and oldest first, every closed
 * file COM does not have (logstore_mark_uploaded once COM says done). It
 * runs daily in the window 00:30-01:00 at this system's minute (nightly)
 * when logtransfer is on, and for a fetch (which closes the current file
 * first). A file COM refuses is skipped for the rest of the pass.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "collect.h"
#include "conf.h"
#include "daily.h"
#include "intake.h"
#include "link.h"
#include "log.h"
#include "logs.h"
#include "logstore.h"
#include "nightly.h"
#include "proto.h"
#include "settings.h"
#include "state.h"
#include "xfer.h"

#define LOG_MODULE "logs"

#define UPLOAD_STATE "logupload"
#define COLLECT_STATE "logcollect"
/* Collected files: looked at every 2 s, 1 MiB at a time; sooner while a
 * backlog lasts. */
#define COLLECT_US (2 * LWS_USEC_PER_SEC)
#define COLLECT_BUSY_US (100 * LWS_US_PER_MS)
#define COLLECT_SLICE (1024 * 1024)
#define FLUSH_US LWS_USEC_PER_SEC
#define SUMMARY_S 60		/* drops are summed up at most this often */
#define SKIP_MAX 32		/* files refused in one pass, remembered */
#define HOST_MAX 64
#define LOGS_UDP_RCVBUF (4 * 1024 * 1024)
/* A TCP syslog connection silent this long is closed (the sender
 * reconnects), so dead peers cannot hold the LOGS_TCP_MAX slots. */
#define TCP_IDLE_S (15 * 60)
#define UDP_REOPEN_US LWS_USEC_PER_SEC

/* 00:30-01:00 local, minutes 0..19 of it (the rest leaves room for a
 * retry while logtransfer is off or the store is not there). */
static const struct nightly_window upload_window = { 30, 30, 20 };

/* The UDP socket's opaque pointer: set before lws's first callback for it,
 * which then tells it from a TCP connection. */
static char udp_mark;

struct conn {			/* per TCP connection (lws user space) */
	struct intake_tcp *f;
};

struct logs {
	struct lws_context *ctx;
	const struct conf *conf;
	const struct settings *settings;
	struct xfers *xfers;
	struct logstore *store;
	struct collect *collect;
	char *line;			/* a collected line with its file name */
	struct lws_vhost *vh;
	struct lws *udp;
	bool udp_adopted;		/* set by the UDP socket's first callback */
	bool stopping;
	char host[HOST_MAX];		/* lws keeps pointers to it */
	int port;
	uint64_t udp_reopens;
	char listen_error[160];
	unsigned tcp_conns;
	struct daily *daily;		/* the nightly upload's planner */
	char upload_state[STATE_PATH_MAX + 1];
	/* counters since start */
	uint64_t received[INTAKE_KINDS];
	uint64_t udp_truncated, tcp_truncated, framing_errors, tcp_refused;
	uint64_t dropped_cap, write_drops;
	uint64_t dropped_io;		/* no store to put them in */
	uint64_t reported;		/* drops in the last summary */
	time_t summary_at;
	/* uploads */
	bool passing;
	struct xfer *xfer;
	char up_name[LOGSTORE_NAME_MAX];	/* the store's name of it */
	uint64_t up_size;
	char job[65];			/* the pass's job: "" or a fetch's */
	char skip[SKIP_MAX][LOGSTORE_NAME_MAX];
	unsigned nskip, sent, failed;
	uint64_t sent_bytes;
	time_t last_pass;
	struct logs_fetch_cbs fetch;
	void *fetch_arg;
	bool fetching;
	bool close_failed;		/* the fetch could not close the file */
	lws_sorted_usec_list_t sul_flush, sul_udp, sul_collect;
	char pass_last[LOGSTORE_NAME_MAX];	/* the pass ends after it */
};

static time_t now_wall(const struct logs *l)
{
	return l->daily ? daily_now(l->daily) : time(NULL);
}

/* ---- intake ----------------------------------------------------------- */

static void udp_reopen(lws_sorted_usec_list_t *sul);

static void store_msg(struct logs *l, const char *m, size_t len)
{
	enum intake_kind k = intake_classify(m, len);
	err_t e;

	l->received[k]++;
	if (k != INTAKE_RFC5424 && k != INTAKE_RFC3164)
		return;
	if (!l->store) {
		l->dropped_io++;	/* no store at all */
		return;
	}
	/* The store counts (and reports) its own drops; these feed the
	 * summary line only. */
	e = logstore_append(l->store, now_wall(l), m, len);
	if (e == ERR_LIMIT)
		l->dropped_cap++;
	else if (e)
		l->write_drops++;
}

static void on_tcp_msg(void *arg, const char *m, size_t len, bool truncated)
{
	struct logs *l = arg;

	if (truncated)
		l->tcp_truncated++;
	store_msg(l, m, len);
}

static void on_udp(struct logs *l, const char *m, size_t len)
{
	size_t max = (size_t)conf_num(l->conf, CONF_LOGS_MESSAGE_MAX);

	/* lws reads a datagram into its service buffer, and the kernel
	 * drops what does not fit: a full buffer means a cut message. (A
	 * bigger buffer would let tunnels read more than their streams are
	 * sized for.) */
	if (len >= LOGS_UDP_MAX)
		l->udp_truncated++;
	len = intake_trim(m, len);
	if (len > max) {
		l->udp_truncated++;
		len = max;
	}
	store_msg(l, m, len);
}

static int logs_lws_callback(struct lws *wsi, enum lws_callback_reasons reason,
			     void *user, void *in, size_t len)
{
	struct lws_vhost *vh = lws_get_vhost(wsi);
	struct logs *l = vh ? lws_vhost_user(vh) : NULL;
	struct conn *c = user;

	if (!l)
		return 0;
	if (lws_get_opaque_user_data(wsi) == &udp_mark) {
		if (reason == LWS_CALLBACK_RAW_ADOPT) {
			/* A PBX's bursts outrun a small socket buffer, and
			 * UDP drops silently; the kernel caps this at its
			 * own maximum. */
			int sz = LOGS_UDP_RCVBUF;

			l->udp_adopted = true;
			if (setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET,
				       SO_RCVBUF, &sz, sizeof(sz)) != 0)
				LOGE("syslog UDP receive buffer: %s",
				     strerror(errno));
		}
		if (reason == LWS_CALLBACK_RAW_RX && in)
			on_udp(l, in, len);
		else if (reason == LWS_CALLBACK_RAW_CLOSE) {
			l->udp = NULL;
			/* lws takes an empty datagram for an error and
			 * closes the socket: one packet must not end the
			 * intake. */
			if (!l->stopping) {
				l->udp_reopens++;
				lws_sul_schedule(l->ctx, 0, &l->sul_udp,
						 udp_reopen, UDP_REOPEN_US);
			}
		}
		return 0;
	}
	switch (reason) {
	case LWS_CALLBACK_RAW_ADOPT:
		if (!c || l->tcp_conns >= LOGS_TCP_MAX) {
			l->tcp_refused++;
			return -1;
		}
		c->f = intake_tcp_new((size_t)conf_num(l->conf,
						       CONF_LOGS_MESSAGE_MAX));
		if (!c->f)
			return -1;
		l->tcp_conns++;
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, TCP_IDLE_S);
		return 0;
	case LWS_CALLBACK_RAW_RX:
		if (!c || !c->f)
			return -1;
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, TCP_IDLE_S);
		if (intake_tcp_feed(c->f, in, len, on_tcp_msg, l) != ERR_OK) {
			/* RFC 6587 has no way to find the next frame. */
			l->framing_errors++;
			return -1;
		}
		return 0;
	case LWS_CALLBACK_RAW_CLOSE:
		if (c && c->f) {
			if (intake_tcp_pending(c->f))
				l->tcp_truncated++;	/* cut by the close */
			intake_tcp_free(c->f);
			c->f = NULL;
			l->tcp_conns--;
		}
		return 0;
	default:
		return 0;
	}
}

struct lws_protocols logs_protocol(void)
{
	struct lws_protocols p = {
		.name = LOGS_PROTOCOL,
		.callback = logs_lws_callback,
		.per_session_data_size = sizeof(struct conn),
	};
	return p;
}

/* "host:port" or "[v6]:port" into host and port. */
static bool split_hostport(const char *s, char *host, size_t cap, int *port)
{
	const char *colon = strrchr(s, ':');
	const char *h = s;
	size_t hl;
	char *end;
	long p;

	if (!colon)
		return false;
	hl = (size_t)(colon - s);
	if (hl >= 2 && s[0] == '[' && colon[-1] == ']') {
		h = s + 1;
		hl -= 2;
	}
	if (!hl || hl >= cap)
		return false;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno || *end || p < 1 || p > 65535)
		return false;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (int)p;
	return true;
}

/* The UDP socket on the syslog address; false (listen_error set) if it
 * could not be bound. */
static bool open_udp(struct logs *l)
{
	/* With async DNS, lws binds an IP literal inside this call and frees
	 * the socket again if that fails, still returning it: the socket's
	 * first callback is the proof it exists. */
	l->udp_adopted = false;
	l->udp = lws_create_adopt_udp(l->vh, l->host, l->port, LWS_CAUDP_BIND,
				      LOGS_PROTOCOL, NULL, NULL, &udp_mark,
				      NULL);
	if (!l->udp || !l->udp_adopted) {
		l->udp = NULL;
		snprintf(l->listen_error, sizeof(l->listen_error),
			 "cannot receive syslog on UDP %s",
			 conf_str(l->conf, CONF_LOGS_SYSLOG));
		LOGE("%s", l->listen_error);
		return false;
	}
	return true;
}

static void udp_reopen(lws_sorted_usec_list_t *sul)
{
	struct logs *l = lws_container_of(sul, struct logs, sul_udp);

	if (!l->udp && !open_udp(l))
		lws_sul_schedule(l->ctx, 0, &l->sul_udp, udp_reopen,
				 60 * LWS_USEC_PER_SEC);
}

static void listen_syslog(struct logs *l)
{
	static struct lws_protocols protos[2];
	struct lws_context_creation_info vi;
	const char *addr = conf_str(l->conf, CONF_LOGS_SYSLOG);

	if (!*addr)
		return;
	if (!split_hostport(addr, l->host, sizeof(l->host), &l->port)) {
		snprintf(l->listen_error, sizeof(l->listen_error),
			 "bad syslog address %s", addr);
		LOGE("%s", l->listen_error);
		return;
	}
	protos[0] = logs_protocol();
	memset(&vi, 0, sizeof(vi));
	vi.port = l->port;
	vi.iface = l->host;
	vi.protocols = protos;
	vi.vhost_name = "syslog";
	vi.user = l;
	/* A bind that fails is an error now, not a silent retry every 30 s;
	 * and an IPv4 address that is not up yet must not turn into a
	 * listener on every address ([::]). */
	vi.options = LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG |
		     LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
	if (!strchr(l->host, ':'))
		vi.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	vi.listen_accept_role = "raw-skt";
	vi.listen_accept_protocol = LOGS_PROTOCOL;
	l->vh = lws_create_vhost(l->ctx, &vi);
	if (!l->vh) {
		snprintf(l->listen_error, sizeof(l->listen_error),
			 "cannot listen for syslog on TCP %s (see lws above)",
			 addr);
		LOGE("%s", l->listen_error);
		return;
	}
	(void)open_udp(l);
	LOGI("receiving syslog on %s (TCP%s)", addr, l->udp ? " and UDP" : "");
}

/* ---- collected log files ---------------------------------------------- */

/* A line of a collected file goes into the store as "FILE: text", FILE
 * under the root, so COM's reader sees where it came from. */
static void on_line(void *arg, const char *file, const char *text, size_t len,
		    bool truncated)
{
	struct logs *l = arg;
	const char *root = conf_str(l->conf, CONF_SYSTEM_ROOT);
	size_t rl = strlen(root), max;
	int n;

	(void)truncated;
	if (!l->store)
		return;
	if (rl > 1 && !strncmp(file, root, rl) && file[rl] == '/')
		file += rl + 1;
	max = (size_t)conf_num(l->conf, CONF_LOGS_MESSAGE_MAX);
	n = snprintf(l->line, max + 1, "%s: %.*s", file, (int)len, text);
	if (n < 0)
		return;
	if (logstore_append(l->store, now_wall(l), l->line,
			    (size_t)n < max ? (size_t)n : max) == ERR_LIMIT)
		l->dropped_cap++;
}

static void collect_cb(lws_sorted_usec_list_t *sul)
{
	struct logs *l = lws_container_of(sul, struct logs, sul_collect);
	size_t lines = collect_poll(l->collect, COLLECT_SLICE, on_line, l);

	lws_sul_schedule(l->ctx, 0, &l->sul_collect, collect_cb,
			 lines ? COLLECT_BUSY_US : COLLECT_US);
}

/* "a b" under root "/r" -> "/r/a /r/b" (absolute ones as they are). */
static void start_collect(struct logs *l)
{
	const char *dirs = conf_str(l->conf, CONF_LOGS_COLLECT_DIRS);
	const char *root = conf_str(l->conf, CONF_SYSTEM_ROOT);
	char abs[COLLECT_DIRS_MAX * (COLLECT_DIR_MAX + 1)], word[256];
	char state[STATE_PATH_MAX + 1];
	size_t used = 0;
	const char *p = dirs;

	if (!*dirs)
		return;
	while (*p) {
		size_t n = strcspn(p, " \t");
		int w;

		if (n && n < sizeof(word)) {
			memcpy(word, p, n);
			word[n] = '\0';
			w = snprintf(abs + used, sizeof(abs) - used, "%s%s%s%s",
				     used ? " " : "", word[0] == '/' ? "" : root,
				     word[0] == '/' || root[strlen(root) - 1] ==
				     '/' ? "" : "/", word);
			if (w < 0 || (size_t)w >= sizeof(abs) - used)
				break;
			used += (size_t)w;
		}
		p += n;
		p += strspn(p, " \t");
	}
	l->line = malloc((size_t)conf_num(l->conf, CONF_LOGS_MESSAGE_MAX) + 1);
	if (!l->line ||
	    !state_path(conf_str(l->conf, CONF_SYSTEM_STATE_DIR),
			COLLECT_STATE, state, sizeof(state)) ||
	    collect_new(abs, state, (size_t)conf_num(l->conf,
						     CONF_LOGS_MESSAGE_MAX),
			&l->collect) != ERR_OK) {
		LOGE("log files of %s are not collected", dirs);
		return;
	}
	LOGI("collecting the *.log files of %s", dirs);
	lws_sul_schedule(l->ctx, 0, &l->sul_collect, collect_cb, 1);
}

/* ---- uploads ---------------------------------------------------------- */

static void pass_step(struct logs *l);

static bool skipped(const struct logs *l, const char *name)
{
	for (unsigned i = 0; i < l->nskip; i++)
		if (!strcmp(l->skip[i], name))
			return true;
	return false;
}

static void pass_end(struct logs *l)
{
	struct logs_fetch_cbs cbs = l->fetch;
	void *arg = l->fetch_arg;
	bool fetching = l->fetching;
	char why[160];

	l->passing = false;
	l->last_pass = now_wall(l);
	LOGI("log upload done: %u files, %llu bytes, %u failed", l->sent,
	     (unsigned long long)l->sent_bytes, l->failed);
	if (!fetching)
		return;
	l->fetching = false;
	memset(&l->fetch, 0, sizeof(l->fetch));
	if (!cbs.done)
		return;
	snprintf(why, sizeof(why), "%u log files uploaded (%llu bytes)%s%s",
		 l->sent, (unsigned long long)l->sent_bytes,
		 l->failed ? "; some could not be" : "",
		 l->close_failed ? "; the file being written could not be "
		 "closed and waits for the next upload" : "");
	l->close_failed = false;
	cbs.done(arg, l->failed ? "transfer" : NULL, why);
}

static void upload_done(void *arg, const char *reason, const char *why)
{
	struct logs *l = arg;

	xfer_free(l->xfer);
	l->xfer = NULL;
	if (reason) {
		LOGE("log file %s not uploaded: %s", l->up_name, why);
		l->failed++;
		if (l->nskip < SKIP_MAX)
			snprintf(l->skip[l->nskip++], LOGSTORE_NAME_MAX, "%s",
				 l->up_name);
		else
			l->nskip = SKIP_MAX + 1;	/* give up this pass */
	} else {
		l->sent++;
		l->sent_bytes += l->up_size;
		(void)logstore_mark_uploaded(l->store, l->up_name);
	}
	pass_step(l);
}

/* The next file COM does not have, or the end of the pass. */
static void pass_step(struct logs *l)
{
	struct xfer_cbs cbs = { .done = upload_done };
	const struct logstore_file *f = NULL;
	char path[STATE_PATH_MAX + 1], name[LOGSTORE_NAME_MAX + 80];
	size_t n = l->store ? logstore_count(l->store) : 0;
	unsigned total = 0;

	if (!settings_get(l->settings, SET_LOGTRANSFER)) {
		LOGI("log upload stopped: logtransfer is off");
		l->failed++;
		pass_end(l);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct logstore_file *x = logstore_at(l->store, i);

		/* Files closed after the pass began wait for the next one:
		 * a log storm must not keep a pass (and a fetch) going. */
		if (strcmp(x->name, l->pass_last) > 0)
			break;
		if (x->uploaded || skipped(l, x->name))
			continue;
		total++;
		if (!f)
			f = x;
	}
	if (!f || l->nskip > SKIP_MAX) {
		pass_end(l);
		return;
	}
	if (l->fetching && l->fetch.progress)
		l->fetch.progress(l->fetch_arg, l->sent, l->sent + total,
				  f->name);
	/* The store names files log-DATE-NNN; COM wants the system too
	 * (PROTOCOL.md §3.3). */
	snprintf(l->up_name, sizeof(l->up_name), "%s", f->name);
	snprintf(name, sizeof(name), "log-%s-%s",
		 conf_str(l->conf, CONF_SYSTEM_SYSTEM_NAME), f->name + 4);
	l->up_size = f->size;
	if (!logstore_path(l->store, f->name, path, sizeof(path)) ||
	    xfer_upload(l->xfers, l->job, name, "log", path, f->size,
			f->sha256, &cbs, l, &l->xfer) != ERR_OK)
		upload_done(l, "transfer", "cannot read it");
}

/* What a pass covers: the closed files there are now. */
static void mark_pass_end(struct logs *l)
{
	size_t n = logstore_count(l->store);

	l->pass_last[0] = '\0';
	if (n)
		snprintf(l->pass_last, sizeof(l->pass_last), "%s",
			 logstore_at(l->store, n - 1)->name);
}

static void pass_start(struct logs *l, const char *job)
{
	if (l->passing)
		return;	/* the pass under way takes what is there */
	l->passing = true;
	l->nskip = l->sent = l->failed = 0;
	l->sent_bytes = 0;
	snprintf(l->job, sizeof(l->job), "%s", job);
	mark_pass_end(l);
	pass_step(l);
}

err_t logs_fetch(struct logs *l, const char *job,
		 const struct logs_fetch_cbs *cbs, void *arg)
{
	if (!l->store)
		return ERR_STATE;
	if (l->fetching)
		return ERR_LIMIT;
	/* Its latest messages too: the current file is closed first (if
	 * that fails, logged by the store, the rest still goes). */
	if (logstore_close_current(l->store, now_wall(l)) != ERR_OK)
		l->close_failed = true;
	l->fetching = true;
	l->fetch = *cbs;
	l->fetch_arg = arg;
	if (l->passing) {
		/* The running pass ends the fetch: from here on under the
		 * fetch's id, through the file just closed, with files it
		 * skipped tried again. */
		snprintf(l->job, sizeof(l->job), "%s", job);
		l->nskip = l->sent = l->failed = 0;
		l->sent_bytes = 0;
		mark_pass_end(l);
		return ERR_OK;
	}
	pass_start(l, job);
	return ERR_OK;
}

void logs_fetch_cancel(struct logs *l)
{
	l->fetching = false;
	memset(&l->fetch, 0, sizeof(l->fetch));
}

/* ---- the nightly upload ----------------------------------------------- */

static bool upload_ready(void *arg, const char **why)
{
	struct logs *l = arg;

	if (!l->store) {
		*why = "no log store";
		return false;
	}
	if (!settings_get(l->settings, SET_LOGTRANSFER)) {
		*why = "logtransfer is off";
		return false;
	}
	return true;
}

static void upload_run(void *arg, const char *day)
{
	struct logs *l = arg;

	(void)day;
	/* The night's file goes too: a quiet PBX may not have sent a
	 * message since midnight to close it. */
	(void)logstore_close_current(l->store, now_wall(l));
	pass_start(l, "");
}

void logs_clock_offset(struct logs *l, int64_t offset)
{
	daily_clock_offset(l->daily, offset);
}

/* ---- housekeeping ----------------------------------------------------- */

static void flush_cb(lws_sorted_usec_list_t *sul)
{
	struct logs *l = lws_container_of(sul, struct logs, sul_flush);
	uint64_t dropped = l->dropped_cap + l->write_drops + l->dropped_io +
			   l->framing_errors +
			   l->received[INTAKE_MALFORMED] +
			   l->received[INTAKE_BINARY];
	time_t now = time(NULL);

	if (l->store)
		logstore_flush(l->store);
	if (dropped != l->reported && now - l->summary_at >= SUMMARY_S) {
		LOGE("syslog: %llu messages not stored so far (%llu malformed, "
		     "%llu binary, %llu over a cap, %llu write errors, %llu "
		     "TCP framing errors)", (unsigned long long)dropped,
		     (unsigned long long)l->received[INTAKE_MALFORMED],
		     (unsigned long long)l->received[INTAKE_BINARY],
		     (unsigned long long)l->dropped_cap,
		     (unsigned long long)(l->write_drops + l->dropped_io),
		     (unsigned long long)l->framing_errors);
		l->reported = dropped;
		l->summary_at = now;
	}
	lws_sul_schedule(l->ctx, 0, &l->sul_flush, flush_cb, FLUSH_US);
}

/* ---- status ----------------------------------------------------------- */

void logs_describe(const struct logs *l, struct proto_w *w)
{
	struct logstore_stats st;

	memset(&st, 0, sizeof(st));
	if (l->store)
		logstore_stats(l->store, &st);
	proto_w_obj(w, "logs");
	proto_w_str(w, "syslog", conf_str(l->conf, CONF_LOGS_SYSLOG));
	proto_w_str(w, "error", l->listen_error);
	proto_w_bool(w, "store", l->store != NULL);
	proto_w_int(w, "bytes", (int64_t)st.bytes);
	proto_w_int(w, "files", (int64_t)st.files);
	proto_w_int(w, "max_total",
		    (int64_t)conf_num(l->conf, CONF_LOGS_MAX_TOTAL));
	proto_w_int(w, "today_bytes", (int64_t)st.today_bytes);
	proto_w_int(w, "max_day", (int64_t)conf_num(l->conf, CONF_LOGS_MAX_DAY));
	proto_w_int(w, "stored", (int64_t)st.messages);
	proto_w_int(w, "rfc5424", (int64_t)l->received[INTAKE_RFC5424]);
	proto_w_int(w, "rfc3164", (int64_t)l->received[INTAKE_RFC3164]);
	proto_w_int(w, "malformed", (int64_t)l->received[INTAKE_MALFORMED]);
	proto_w_int(w, "binary", (int64_t)l->received[INTAKE_BINARY]);
	proto_w_int(w, "truncated", (int64_t)(l->udp_truncated +
					      l->tcp_truncated));
	proto_w_int(w, "framing_errors", (int64_t)l->framing_errors);
	proto_w_int(w, "udp_reopens", (int64_t)l->udp_reopens);
	if (l->collect) {
		struct collect_stats cs;

		collect_stats(l->collect, &cs);
		proto_w_int(w, "collected_files", cs.files);
		proto_w_int(w, "collected_lines", (int64_t)cs.lines);
	}
	proto_w_int(w, "dropped_day", (int64_t)st.dropped_day);
	proto_w_int(w, "dropped_total", (int64_t)st.dropped_total);
	proto_w_int(w, "write_errors", (int64_t)st.write_errors);
	proto_w_int(w, "pruned_sent", (int64_t)st.pruned_sent);
	proto_w_int(w, "pruned_unsent", (int64_t)st.pruned_unsent);
	proto_w_bool(w, "uploading", l->passing);
	proto_w_int(w, "next_upload", (int64_t)daily_next(l->daily));
	proto_w_end(w);
}

/* Bytes for people: "812 KiB", "3.4 MiB", "16.0 GiB". */
static void human(uint64_t b, char *out, size_t cap)
{
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b / 1024;
	unsigned u = 0;

	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

size_t logs_format(const struct logs *l, char *buf, size_t cap)
{
	struct logstore_stats st;
	char used[24], total[24];
	int n;

	if (!cap)
		return 0;
	memset(&st, 0, sizeof(st));
	if (l->store)
		logstore_stats(l->store, &st);
	human(st.bytes, used, sizeof(used));
	human(conf_num(l->conf, CONF_LOGS_MAX_TOTAL), total, sizeof(total));
	n = snprintf(buf, cap,
		     "Syslog:      %s%s%s\n"
		     "Log store:   %s in %llu files (cap %s), %llu messages "
		     "stored, %llu not stored\n",
		     *conf_str(l->conf, CONF_LOGS_SYSLOG) ?
		     conf_str(l->conf, CONF_LOGS_SYSLOG) : "off",
		     l->listen_error[0] ? ": " : "", l->listen_error, used,
		     (unsigned long long)st.files, total,
		     (unsigned long long)st.messages,
		     (unsigned long long)(st.dropped_day + st.dropped_total +
					  st.write_errors + l->dropped_io +
					  l->framing_errors +
					  l->received[INTAKE_MALFORMED] +
					  l->received[INTAKE_BINARY]));
	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t logs_list(const struct logs *l, char *buf, size_t cap)
{
	size_t used = 0;

	if (!cap)
		return 0;
	buf[0] = '\0';
	for (size_t i = 0; l->store && i < logstore_count(l->store); i++) {
		const struct logstore_file *f = logstore_at(l->store, i);
		int n = snprintf(buf + used, cap - used, "%s %llu %s\n",
				 f->name, (unsigned long long)f->size,
				 f->uploaded ? "uploaded" : "not uploaded");

		if (n < 0 || (size_t)n >= cap - used)
			break;
		used += (size_t)n;
	}
	return used;
}

/* ---- life ------------------------------------------------------------- */

struct logs *logs_new(struct lws_context *ctx, const struct conf *c,
		      const struct settings *s, struct xfers *x)
{
	struct logs *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->ctx = ctx;
	l->conf = c;
	l->settings = s;
	l->xfers = x;
	if (!state_path(conf_str(c, CONF_SYSTEM_STATE_DIR), UPLOAD_STATE,
			l->upload_state, sizeof(l->upload_state))) {
		free(l);
		return NULL;
	}
	{
		struct daily_cfg dc = {
			.win = &upload_window,
			.minute = nightly_hash(conf_str(c,
							CONF_SYSTEM_CUSTOMER_ID),
					       conf_str(c,
							CONF_SYSTEM_SYSTEM_NAME)) %
				  upload_window.minutes,
			.state_path = l->upload_state,
			.what = "nightly log upload",
			.ready = upload_ready, .run = upload_run, .arg = l,
		};

		l->daily = daily_new(ctx, &dc);
	}
	if (!l->daily) {
		free(l);
		return NULL;
	}
	return l;
}

void logs_start(struct logs *l)
{
	struct logstore_cfg sc = {
		.dir = conf_str(l->conf, CONF_LOGS_STORE_DIR),
		.max_total = conf_num(l->conf, CONF_LOGS_MAX_TOTAL),
		.max_day = conf_num(l->conf, CONF_LOGS_MAX_DAY),
		.file_max = conf_num(l->conf, CONF_LOGS_FILE_MAX),
		.msg_max = (size_t)conf_num(l->conf, CONF_LOGS_MESSAGE_MAX),
	};

	if (logstore_open(&sc, now_wall(l), &l->store) != ERR_OK)
		l->store = NULL;	/* logged; intake counts drops */
	listen_syslog(l);
	start_collect(l);
	lws_sul_schedule(l->ctx, 0, &l->sul_flush, flush_cb, FLUSH_US);
	daily_plan(l->daily);
}

void logs_shutdown(struct logs *l)
{
	if (!l)
		return;
	l->stopping = true;
	lws_sul_cancel(&l->sul_flush);
	lws_sul_cancel(&l->sul_udp);
	lws_sul_cancel(&l->sul_collect);
	daily_free(l->daily);
	l->daily = NULL;
	xfer_free(l->xfer);
	l->xfer = NULL;
	if (l->store)
		logstore_flush(l->store);
}

void logs_free(struct logs *l)
{
	if (!l)
		return;
	collect_free(l->collect);
	free(l->line);
	logstore_free(l->store);
	free(l);
}
