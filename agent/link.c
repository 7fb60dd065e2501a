/*
 * link — the one secure WebSocket to COM (see link.h).
 *
 * States: IDLE (waiting to redial) → CONNECTING (TCP/proxy/TLS/WebSocket
 * handshake) → HELLO (hello sent, waiting for welcome) → UP. Any failure goes
 * back to IDLE with a redial scheduled by the back-off; link_shutdown() goes
 * to CLOSING and then STOPPED. Every timer is an lws_sul inside the link.
 *
 * lws may report the end of one socket several ways (CONNECTION_ERROR,
 * CLIENT_CLOSED, WSI_DESTROY); link_gone() acts on the first and ignores the
 * rest, so the state machine sees exactly one "down" per attempt.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/platform_util.h>

#include "backoff.h"
#include "conf.h"
#include "daily.h"
#include "link.h"
#include "log.h"
#include "proto.h"

#define LOG_MODULE "link"

/* Offline durations under this are shown in seconds, then minutes. */
#define LINK_OFFLINE_AFTER_S 60
/* How long a clean close may take before the socket is just dropped. */
#define LINK_CLOSE_WAIT_S 2
#define LINK_RX_MAX (PROTO_MAX_MSG)
/* A wall clock before this (2026-01-01T00:00:00Z, older than this source)
 * has not been set: a box without a battery-backed clock boots in 1970 until
 * NTP answers. Certificates cannot be checked against such a clock, so the
 * link waits rather than fail every attempt and grow its back-off. */
#define LINK_CLOCK_FLOOR ((time_t)1767225600)
#define LINK_CLOCK_POLL_US (2 * LWS_USEC_PER_SEC)

enum link_state { L_IDLE, L_CONNECTING, L_HELLO, L_UP, L_CLOSING, L_STOPPED };

struct txmsg {
	struct txmsg *next;
	size_t len;
	unsigned char buf[];	/* LWS_PRE headroom, then the message */
};

struct link {
	struct lws_context *ctx;
	const struct conf *conf;
	struct link_handler h;
	struct lws *wsi;
	enum link_state state;

	/* Parsed COM URL; lws keeps pointers into url_buf while dialling. */
	char url_buf[512];
	char path_buf[512];
	const char *host, *path;
	int port;
	char hello_version[64];

	struct backoff *bo;		/* after link failures */
	struct backoff *bo_auth;	/* after COM refused the credentials */
	lws_sorted_usec_list_t sul_retry, sul_deadline, sul_keepalive;

	/* Outgoing control messages, bounded. */
	struct txmsg *txq_head, *txq_tail;
	unsigned txq_count;
	size_t txq_bytes;
	bool ping_due;
	uint16_t close_code;		/* non-zero: close with it when writable */
	char close_why[64];

	unsigned char *frame;		/* LWS_PRE + LINK_BIN_MAX, outgoing data */

	/* Incoming frame assembly, capped at LINK_RX_MAX. */
	unsigned char *rx;
	size_t rx_len;
	bool rx_binary, rx_overflow;

	int64_t next_id;
	int64_t hello_id;
	lws_usec_t last_rx;		/* monotonic */

	/* Status. */
	const char *code;
	char code_buf[48];	/* a refusal reason, when code points here */
	char wording[96];
	time_t since, next_retry, down_since;
	bool ever_up, refused;
	bool clock_wait;		/* dial() is waiting for a valid clock */
	int64_t clock_offset;		/* test builds: injected wall clock */
	bool err_this_attempt;	/* last_error describes the current attempt */
	unsigned attempts, ups;
	char last_error[192];
	char session[40];

	struct proto_w *w;		/* for the link's own messages */
};

static uint64_t now_ms(void) { return (uint64_t)(lws_now_usecs() / 1000); }

static uint32_t link_rnd(void *arg)
{
	struct link *l = arg;
	uint32_t r = 0;

	lws_get_random(l->ctx, &r, sizeof(r));
	return r;
}

static void set_state_text(struct link *l, const char *code,
			   const char *wording)
{
	/* "since" is when the state began, not the latest attempt. */
	if (l->code && !strcmp(l->code, code) && !strcmp(l->wording, wording))
		return;
	l->code = code;
	snprintf(l->wording, sizeof(l->wording), "%s", wording);
	l->since = time(NULL);
}

static void set_error(struct link *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_error(struct link *l, const char *fmt, ...)
{
	va_list ap;

	l->err_this_attempt = true;
	va_start(ap, fmt);
	vsnprintf(l->last_error, sizeof(l->last_error), fmt, ap);
	va_end(ap);
	/* lws's error strings may end in a newline; status shows one line. */
	for (size_t n = strlen(l->last_error);
	     n > 0 && (l->last_error[n - 1] == '\n' ||
		       l->last_error[n - 1] == '\r' ||
		       l->last_error[n - 1] == ' ');
	     n--)
		l->last_error[n - 1] = '\0';
}

static void txq_clear(struct link *l)
{
	while (l->txq_head) {
		struct txmsg *m = l->txq_head;
		l->txq_head = m->next;
		free(m);
	}
	l->txq_tail = NULL;
	l->txq_count = 0;
	l->txq_bytes = 0;
}

/* ---- dialling and back-off ------------------------------------------ */

static void dial(struct link *l);

static void retry_cb(lws_sorted_usec_list_t *sul)
{
	struct link *l = lws_container_of(sul, struct link, sul_retry);

	l->next_retry = 0;
	dial(l);
}

static time_t wall_now(const struct link *l)
{
	return time(NULL) + (time_t)l->clock_offset;
}

/* Whether the wall clock can be trusted to check certificates; while it
 * cannot, says so (once in the log, always in the status) and looks again
 * shortly. */
static bool clock_valid(struct link *l)
{
	time_t now = wall_now(l);
	struct tm tm;
	char when[32] = "?";

	if (now >= LINK_CLOCK_FLOOR) {
		if (l->clock_wait) {
			LOGI("the system clock is valid now; connecting");
			if (l->ever_up)
				set_state_text(l, "offline",
					       "Not reachable or offline");
			else
				set_state_text(l, "waiting",
					       "Waiting for initial connection");
		}
		l->clock_wait = false;
		return true;
	}
	if (gmtime_r(&now, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	set_error(l, "the system clock reads %s, before 2026: COM's "
		  "certificate cannot be checked until it is set", when);
	if (!l->clock_wait)
		LOGE("%s; waiting for a valid clock", l->last_error);
	l->clock_wait = true;
	set_state_text(l, "clock", "Waiting for a valid system clock");
	l->next_retry = 0;
	lws_sul_schedule(l->ctx, 0, &l->sul_retry, retry_cb,
			 LINK_CLOCK_POLL_US);
	return false;
}

static void schedule_retry(struct link *l)
{
	struct backoff *b = l->refused ? l->bo_auth : l->bo;
	uint64_t d = backoff_next(b);

	l->next_retry = time(NULL) + (time_t)((d + 999) / 1000);
	LOGI("next attempt in %llu.%03llu s (%s back-off, failure %u)",
	     (unsigned long long)(d / 1000), (unsigned long long)(d % 1000),
	     l->refused ? "authentication" : "link", backoff_failures(b));
	lws_sul_schedule(l->ctx, 0, &l->sul_retry, retry_cb,
			 (lws_usec_t)d * 1000);
}

/* Only for callers outside this wsi's own callbacks (timers, shutdown):
 * an async kill set from a timer can be overwritten by lws's own handshake
 * timeouts before it fires, so the kill happens here and now. */
static void kill_wsi(struct link *l)
{
	if (l->wsi)
		lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK,
				LWS_TO_KILL_SYNC);
}

static void deadline_cb(lws_sorted_usec_list_t *sul)
{
	struct link *l = lws_container_of(sul, struct link, sul_deadline);
	uint64_t t = conf_num(l->conf, CONF_COM_CONNECT_TIMEOUT);

	if (l->state != L_CONNECTING && l->state != L_HELLO)
		return;
	set_error(l, "no %s from COM within %llu ms",
		  l->state == L_HELLO ? "welcome" : "connection",
		  (unsigned long long)t);
	LOGE("%s", l->last_error);
	kill_wsi(l);
}

/* The socket of the current attempt is gone: decide what it means. */
static void link_gone(struct link *l, struct lws *wsi)
{
	enum link_state was = l->state;

	if (was == L_IDLE || was == L_STOPPED)
		return;
	if (l->wsi && wsi && l->wsi != wsi)
		return;
	l->wsi = NULL;
	lws_sul_cancel(&l->sul_deadline);
	lws_sul_cancel(&l->sul_keepalive);
	txq_clear(l);
	l->rx_len = 0;
	l->session[0] = '\0';
	l->close_code = 0;
	l->ping_due = false;

	if (was == L_CLOSING) {
		l->state = L_STOPPED;
		LOGI("link closed");
		if (l->ever_up && l->h.down)
			l->h.down(l->h.arg, l);
		return;
	}
	l->state = L_IDLE;
	if (was == L_UP) {
		backoff_down(l->bo, now_ms());
		l->down_since = time(NULL);
		LOGI("link to COM lost: %s", l->last_error);
		if (l->h.down)
			l->h.down(l->h.arg, l);
	}
	if (l->refused) {
		/* wording already set from the refusal reason */
	} else if (was == L_UP ||
		   (l->ever_up && !strcmp(l->code, "offline"))) {
		/* Lost after being up: offline since the loss, whatever the
		 * later attempts run into (last_error says what). */
		set_state_text(l, "offline", "Not reachable or offline");
	} else {
		set_state_text(l, "failed", "Connection failed");
	}
	schedule_retry(l);
}

static const lws_retry_bo_t no_lws_validity = { .secs_since_valid_hangup = 0 };

static void dial(struct link *l)
{
	struct lws_client_connect_info i;

	if (l->state != L_IDLE || !clock_valid(l))
		return;
	memset(&i, 0, sizeof(i));
	i.context = l->ctx;
	i.address = l->host;
	i.port = l->port;
	i.path = l->path;
	i.host = l->host;
	i.origin = l->host;
	i.ssl_connection = LCCSCF_USE_SSL;
	i.protocol = LINK_SUBPROTOCOL;
	i.local_protocol_name = LINK_SUBPROTOCOL;
	i.opaque_user_data = l;
	i.pwsi = &l->wsi;
	/* Our keepalive decides when the link is dead; lws's own validity
	 * timer (5 min) would hang up a longer idle_timeout early. */
	i.retry_and_idle_policy = &no_lws_validity;

	l->attempts++;
	l->refused = false;
	l->err_this_attempt = false;
	l->state = L_CONNECTING;
	LOGI("connecting to %s (attempt %u)", conf_str(l->conf, CONF_COM_URL),
	     l->attempts);
	lws_sul_schedule(l->ctx, 0, &l->sul_deadline, deadline_cb,
			 (lws_usec_t)conf_num(l->conf, CONF_COM_CONNECT_TIMEOUT)
				 * 1000);
	if (!lws_client_connect_via_info(&i)) {
		/* lws may have failed synchronously without the error callback
		 * (only WSI_DESTROY), so say what we know; link_gone() ignores
		 * a repeat. */
		if (!l->err_this_attempt)
			set_error(l, "cannot start a connection to %s:%d",
				  l->host, l->port);
		LOGE("%s", l->last_error);
		link_gone(l, NULL);
	}
}

/* ---- keepalive ------------------------------------------------------- */

static void keepalive_cb(lws_sorted_usec_list_t *sul)
{
	struct link *l = lws_container_of(sul, struct link, sul_keepalive);
	lws_usec_t ping = (lws_usec_t)conf_num(l->conf, CONF_COM_PING_INTERVAL) * 1000;
	lws_usec_t idle = (lws_usec_t)conf_num(l->conf, CONF_COM_IDLE_TIMEOUT) * 1000;
	lws_usec_t quiet = lws_now_usecs() - l->last_rx;
	lws_usec_t next;

	if (l->state != L_UP)
		return;
	if (quiet >= idle) {
		set_error(l, "nothing from COM for %lld ms (idle_timeout)",
			  (long long)(quiet / 1000));
		LOGE("%s; hanging up", l->last_error);
		kill_wsi(l);
		return;
	}
	if (quiet >= ping) {
		l->ping_due = true;
		lws_callback_on_writable(l->wsi);
		/* Ping again each interval while silent; the deadline decides. */
		next = ping - (quiet % ping);
	} else {
		next = ping - quiet;
	}
	if (next > idle - quiet)
		next = idle - quiet;
	lws_sul_schedule(l->ctx, 0, &l->sul_keepalive, keepalive_cb, next);
}

/* ---- sending --------------------------------------------------------- */

int64_t link_next_id(struct link *l) { return l->next_id++; }

void link_want_write(struct link *l)
{
	if (l->state == L_UP && l->wsi)
		lws_callback_on_writable(l->wsi);
}

static err_t enqueue(struct link *l, const char *json, size_t len)
{
	struct txmsg *m;

	if (l->txq_count >= LINK_TXQ_MAX_MSGS ||
	    l->txq_bytes + len > LINK_TXQ_MAX_BYTES) {
		LOGE("send queue full (%u messages, %zu bytes); message dropped",
		     l->txq_count, l->txq_bytes);
		return ERR_LIMIT;
	}
	m = malloc(sizeof(*m) + LWS_PRE + len);
	if (!m) {
		LOGE("out of memory queueing %zu bytes", len);
		return ERR_NOMEM;
	}
	m->next = NULL;
	m->len = len;
	memcpy(m->buf + LWS_PRE, json, len);
	if (l->txq_tail)
		l->txq_tail->next = m;
	else
		l->txq_head = m;
	l->txq_tail = m;
	l->txq_count++;
	l->txq_bytes += len;
	lws_callback_on_writable(l->wsi);
	return ERR_OK;
}

err_t link_send(struct link *l, const char *json, size_t len)
{
	if (l->state != L_UP || !l->wsi)
		return ERR_STATE;
	return enqueue(l, json, len);
}

/* Sends an error/unsupported answer; never answered in turn. */
static void send_problem(struct link *l, const char *type, int64_t re,
			 const char *k, const char *v, const char *msg)
{
	char *buf;
	size_t len;

	proto_w_begin(l->w, type, link_next_id(l));
	if (re > 0)
		proto_w_int(l->w, "re", re);
	proto_w_str(l->w, k, v);
	if (msg)
		proto_w_str(l->w, "message", msg);
	if (proto_w_finish(l->w, &buf, &len) == ERR_OK)
		(void)enqueue(l, buf, len);
}

static void close_with(struct link *l, uint16_t code, const char *why)
{
	l->close_code = code;
	snprintf(l->close_why, sizeof(l->close_why), "%s", why);
	lws_callback_on_writable(l->wsi);
}

static int on_writable(struct link *l, struct lws *wsi)
{
	if (l->close_code) {
		lws_close_reason(wsi, (enum lws_close_status)l->close_code,
				 (unsigned char *)l->close_why,
				 strlen(l->close_why));
		return -1;
	}
	if (l->ping_due) {
		unsigned char ping[LWS_PRE];

		l->ping_due = false;
		if (lws_write(wsi, ping + LWS_PRE, 0, LWS_WRITE_PING) < 0) {
			set_error(l, "ping write failed");
			return -1;
		}
	} else if (!l->txq_head) {
		size_t n = l->state == L_UP && l->h.next_frame ?
			l->h.next_frame(l->h.arg, l, l->frame + LWS_PRE,
					LINK_BIN_MAX) : 0;

		if (n && lws_write(wsi, l->frame + LWS_PRE, n,
				   LWS_WRITE_BINARY) < (int)n) {
			set_error(l, "write of a %zu-byte frame failed", n);
			LOGE("%s", l->last_error);
			return -1;
		}
		/* More may be waiting; an idle round costs one callback. */
		if (n)
			lws_callback_on_writable(wsi);
	} else {
		struct txmsg *m = l->txq_head;

		if (lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT) <
		    (int)m->len) {
			set_error(l, "write of %zu bytes to COM failed", m->len);
			LOGE("%s", l->last_error);
			return -1;
		}
		l->txq_head = m->next;
		if (!l->txq_head)
			l->txq_tail = NULL;
		l->txq_count--;
		l->txq_bytes -= m->len;
		free(m);
		/* Data frames get their turn after the control queue. */
		if (l->h.next_frame)
			lws_callback_on_writable(wsi);
	}
	if (l->txq_head || l->ping_due)
		lws_callback_on_writable(wsi);
	return 0;
}

/* ---- the handshake --------------------------------------------------- */

static void send_hello(struct link *l)
{
	const struct conf *c = l->conf;
	char *buf;
	size_t len;

	l->next_id = 1;
	l->hello_id = link_next_id(l);
	proto_w_begin(l->w, "hello", l->hello_id);
	proto_w_int(l->w, "proto", 1);
	proto_w_str(l->w, "agent", "comagent/" COMAGENT_VERSION);
	proto_w_str(l->w, "customer", conf_str(c, CONF_SYSTEM_CUSTOMER_ID));
	proto_w_str(l->w, "system", conf_str(c, CONF_SYSTEM_SYSTEM_NAME));
	proto_w_str(l->w, "profile", conf_str(c, CONF_SYSTEM_PROFILE));
	proto_w_str(l->w, "version", l->hello_version);
	proto_w_str(l->w, "user", conf_str(c, CONF_SERVICE_USER_NAME));
	proto_w_str(l->w, "password", conf_str(c, CONF_SERVICE_USER_PASSWORD));
	if (proto_w_finish(l->w, &buf, &len) != ERR_OK ||
	    enqueue(l, buf, len) != ERR_OK) {
		set_error(l, "cannot build hello");
		LOGE("%s", l->last_error);
		close_with(l, 1011, "internal error");
	}
}

static void on_welcome(struct link *l, const struct proto_msg *m)
{
	const char *s = proto_str(m, "session");

	lws_sul_cancel(&l->sul_deadline);
	snprintf(l->session, sizeof(l->session), "%s", s ? s : "");
	l->state = L_UP;
	if (l->ever_up)
		l->ups++;
	l->ever_up = true;
	backoff_up(l->bo, now_ms());
	backoff_reset(l->bo_auth);
	set_state_text(l, "connected", "Connection successful");
	l->last_error[0] = '\0';
	LOGI("Connection successful (session %s)", l->session);
	lws_sul_schedule(l->ctx, 0, &l->sul_keepalive, keepalive_cb,
			 (lws_usec_t)conf_num(l->conf, CONF_COM_PING_INTERVAL)
				 * 1000);
	if (l->h.up)
		l->h.up(l->h.arg, l);
}

static void on_refused(struct link *l, const struct proto_msg *m)
{
	const char *reason = proto_str(m, "reason");
	const char *text = proto_reason_text(reason);

	lws_sul_cancel(&l->sul_deadline);
	l->refused = true;
	set_state_text(l, reason && strcmp(text, "Connection failed") ?
			      "refused" : "failed", text);
	/* Keep the reason code itself for --json consumers. */
	if (reason && strcmp(text, "Connection failed")) {
		snprintf(l->code_buf, sizeof(l->code_buf), "%s", reason);
		l->code = l->code_buf;
	}
	set_error(l, "COM refused the link: %s (%s)", text,
		  reason ? reason : "no reason given");
	LOGE("%s", l->last_error);
	close_with(l, 1000, "refused");
}

static void on_control(struct link *l, const char *buf, size_t len)
{
	struct proto_msg *m = NULL;
	int64_t bad_id = 0;
	char why[128];
	const char *type;

	/* Once we decided to close, nothing else from COM counts. */
	if (l->close_code)
		return;
	if (proto_parse(buf, len, &m, &bad_id, why, sizeof(why)) != ERR_OK) {
		LOGE("malformed message from COM: %s", why);
		if (l->state == L_HELLO) {
			set_error(l, "no recognised answer to hello: %s", why);
			close_with(l, 4002, "malformed message");
			return;
		}
		send_problem(l, "error", bad_id, "code", "malformed", why);
		return;
	}
	type = proto_type(m);
	LOGD("rx %s id %lld", type, (long long)proto_id(m));
	if (l->state == L_HELLO) {
		if ((!strcmp(type, "welcome") || !strcmp(type, "refused")) &&
		    proto_re(m) != l->hello_id) {
			set_error(l, "COM's %s answers message %lld, not hello %lld",
				  type, (long long)proto_re(m),
				  (long long)l->hello_id);
			LOGE("%s", l->last_error);
			close_with(l, 4002, "answer to the wrong message");
		} else if (!strcmp(type, "welcome"))
			on_welcome(l, m);
		else if (!strcmp(type, "refused"))
			on_refused(l, m);
		else {
			set_error(l, "COM answered hello with '%s'", type);
			LOGE("%s", l->last_error);
			close_with(l, 4002, "expected welcome");
		}
	} else if (!strcmp(type, "error") || !strcmp(type, "unsupported")) {
		const char *what = proto_str(m, "message");

		LOGE("COM answered message %lld with %s: %s",
		     (long long)proto_re(m), type,
		     what ? what : (proto_str(m, "what") ?
				    proto_str(m, "what") : "(no detail)"));
		/* The handler may be waiting for that answer; it never
		 * answers these. */
		if (l->h.message)
			l->h.message(l->h.arg, l, m);
	} else if (!strcmp(type, "welcome") || !strcmp(type, "refused")) {
		send_problem(l, "error", proto_id(m), "code", "unexpected",
			     "handshake message on an open link");
	} else if (l->h.message) {
		l->h.message(l->h.arg, l, m);
	} else {
		send_problem(l, "unsupported", proto_id(m), "what", type, NULL);
	}
	proto_msg_free(m);
}

static void on_binary(struct link *l, const unsigned char *p, size_t len)
{
	uint32_t id;

	if (len < 5) {
		LOGE("binary frame of %zu bytes is too short for a stream frame",
		     len);
		return;
	}
	id = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	     (uint32_t)p[2] << 8 | p[3];
	if (l->h.data)
		l->h.data(l->h.arg, l, id, p + 4, len - 4);
}

static int on_receive(struct link *l, struct lws *wsi, const void *in,
		      size_t len)
{
	size_t cap;

	l->last_rx = lws_now_usecs();
	if (lws_is_first_fragment(wsi)) {
		l->rx_len = 0;
		l->rx_overflow = false;
		l->rx_binary = lws_frame_is_binary(wsi);
	}
	cap = l->rx_binary ? LINK_BIN_MAX : LINK_RX_MAX;
	if (l->rx_overflow || l->rx_len + len > cap) {
		l->rx_overflow = true;
		set_error(l, "COM sent a %s message over %zu bytes",
			  l->rx_binary ? "binary" : "text", cap);
		LOGE("%s; closing the link", l->last_error);
		lws_close_reason(wsi, (enum lws_close_status)4002,
				 (unsigned char *)"message too big", 15);
		return -1;
	}
	memcpy(l->rx + l->rx_len, in, len);
	l->rx_len += len;
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
		return 0;
	if (l->rx_binary) {
		if (l->state == L_UP)
			on_binary(l, l->rx, l->rx_len);
	} else {
		on_control(l, (const char *)l->rx, l->rx_len);
		/* A control message may carry a private key (a certificate
		 * job): not left in the buffer for the next frame's bytes to
		 * overwrite only in part. */
		mbedtls_platform_zeroize(l->rx, l->rx_len);
	}
	l->rx_len = 0;
	return 0;
}

static void on_peer_close(struct link *l, const unsigned char *in, size_t len)
{
	unsigned code = in && len >= 2 ? (unsigned)in[0] << 8 | in[1] : 1005;
	int rlen = in && len > 2 ? (int)(len - 2) : 0;
	const char *rtext = rlen ? (const char *)in + 2 : "";

	if (rlen > 100)
		rlen = 100;
	/* Keep a refusal's message: it says more than the close code. */
	if (!l->refused)
		set_error(l, "COM closed the link: %u %.*s", code, rlen, rtext);
	LOGI("COM closed the link: %u %.*s", code, rlen, rtext);
}

static int link_lws_callback(struct lws *wsi, enum lws_callback_reasons reason,
		      void *user, void *in, size_t len)
{
	const struct lws_protocols *p = lws_get_protocol(wsi);
	struct link *l = lws_get_opaque_user_data(wsi);

	/* lws sends some events (WSI_DESTROY) of every socket to the first
	 * protocol in the table: only our own client sockets are links. */
	if (!l || !p || p->callback != link_lws_callback)
		return lws_callback_http_dummy(wsi, reason, user, in, len);

	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		/* After our own deadline killed the attempt lws reports a
		 * vaguer reason; the deadline's is the one to keep. */
		if (!l->err_this_attempt && l->state != L_CLOSING) {
			set_error(l, "%s", in ? (const char *)in
					      : "connection failed");
			LOGE("cannot connect to COM: %s", l->last_error);
		}
		link_gone(l, wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (l->state != L_CONNECTING)
			return -1;
		l->wsi = wsi;
		l->state = L_HELLO;
		l->last_rx = lws_now_usecs();
		LOGD("WebSocket up, sending hello");
		send_hello(l);
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return on_receive(l, wsi, in, len);
	case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
		l->last_rx = lws_now_usecs();
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return on_writable(l, wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		on_peer_close(l, in, len);
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
	case LWS_CALLBACK_WSI_DESTROY:
		if (!l->err_this_attempt && l->state != L_CLOSING)
			set_error(l, "connection closed%s",
				  l->state == L_CONNECTING ?
				  " before it was established" : "");
		link_gone(l, wsi);
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

struct lws_protocols link_protocol(void)
{
	struct lws_protocols p = {
		.name = LINK_SUBPROTOCOL,
		.callback = link_lws_callback,
		.rx_buffer_size = PROTO_MAX_MSG,
	};
	return p;
}

/* ---- lifecycle ------------------------------------------------------- */

static err_t parse_url(struct link *l, const char *url)
{
	const char *prot, *addr, *path;
	int port;

	snprintf(l->url_buf, sizeof(l->url_buf), "%s", url);
	if (lws_parse_uri(l->url_buf, &prot, &addr, &port, &path) ||
	    strcmp(prot, "wss") || !*addr) {
		LOGE("cannot use COM url '%s': want wss://host[:port]/path", url);
		return ERR_INVAL;
	}
	/* lws_parse_uri strips the leading '/' of the path. */
	snprintf(l->path_buf, sizeof(l->path_buf), "/%s", path);
	l->host = addr;
	l->port = port;
	l->path = l->path_buf;
	return ERR_OK;
}

struct link *link_new(struct lws_context *ctx, const struct conf *c,
		      const char *version, const struct link_handler *h)
{
	struct link *l = calloc(1, sizeof(*l));

	if (!l)
		goto fail;
	l->ctx = ctx;
	l->conf = c;
	l->h = *h;
	l->state = L_IDLE;
	snprintf(l->hello_version, sizeof(l->hello_version), "%s", version);
	set_state_text(l, "waiting", "Waiting for initial connection");
	if (parse_url(l, conf_str(c, CONF_COM_URL)) != ERR_OK)
		goto fail;
	l->clock_offset = daily_test_clock();
	l->rx = malloc(LINK_RX_MAX > LINK_BIN_MAX ? LINK_RX_MAX : LINK_BIN_MAX);
	l->frame = malloc(LWS_PRE + LINK_BIN_MAX);
	l->w = proto_w_new(PROTO_MAX_MSG, 0);
	l->bo = backoff_new(conf_num(c, CONF_COM_RETRY_MIN),
			    conf_num(c, CONF_COM_RETRY_MAX),
			    conf_num(c, CONF_COM_GRACE), false, link_rnd, l);
	l->bo_auth = backoff_new(conf_num(c, CONF_COM_AUTH_RETRY_MIN),
				 conf_num(c, CONF_COM_AUTH_RETRY_MAX), 0, true,
				 link_rnd, l);
	if (!l->rx || !l->frame || !l->w || !l->bo || !l->bo_auth) {
		LOGE("out of memory creating the link");
		goto fail;
	}
	return l;
fail:
	link_free(l);
	return NULL;
}

void link_free(struct link *l)
{
	if (!l)
		return;
	lws_sul_cancel(&l->sul_retry);
	lws_sul_cancel(&l->sul_deadline);
	lws_sul_cancel(&l->sul_keepalive);
	txq_clear(l);
	backoff_free(l->bo);
	backoff_free(l->bo_auth);
	proto_w_free(l->w);
	free(l->rx);
	free(l->frame);
	free(l);
}

void link_start(struct link *l) { dial(l); }

void link_clock_offset(struct link *l, int64_t offset)
{
	l->clock_offset = offset;
	/* A clock that became valid is acted on now, not at the next look. */
	if (l->clock_wait && clock_valid(l)) {
		lws_sul_cancel(&l->sul_retry);
		dial(l);
	}
}

void link_shutdown(struct link *l)
{
	lws_sul_cancel(&l->sul_retry);
	lws_sul_cancel(&l->sul_deadline);
	lws_sul_cancel(&l->sul_keepalive);
	l->next_retry = 0;
	switch (l->state) {
	case L_IDLE:
		l->state = L_STOPPED;
		break;
	case L_UP:
		l->state = L_CLOSING;
		close_with(l, 1000, "agent shutting down");
		/* A stalled COM may never let us write the close frame. */
		lws_set_timeout(l->wsi, PENDING_TIMEOUT_CLOSE_SEND,
				LINK_CLOSE_WAIT_S);
		break;
	case L_CONNECTING:
	case L_HELLO:
		l->state = L_CLOSING;
		kill_wsi(l);
		break;
	default:
		break;
	}
}

bool link_stopped(const struct link *l) { return l->state == L_STOPPED; }

static void format_offline(const struct link *l, struct link_info *out)
{
	time_t down = time(NULL) - l->down_since;

	if (down < LINK_OFFLINE_AFTER_S)
		snprintf(out->wording, sizeof(out->wording),
			 "Not reachable or offline for the last %lld s",
			 (long long)down);
	else if (down < 3600 * 2)
		snprintf(out->wording, sizeof(out->wording),
			 "Not reachable or offline for the last %lld min",
			 (long long)(down / 60));
	else
		snprintf(out->wording, sizeof(out->wording),
			 "Not reachable or offline for the last %lld h",
			 (long long)(down / 3600));
}

void link_get_info(const struct link *l, struct link_info *out)
{
	memset(out, 0, sizeof(*out));
	out->code = l->code;
	snprintf(out->wording, sizeof(out->wording), "%s", l->wording);
	if (!strcmp(l->code, "offline"))
		format_offline(l, out);
	out->connecting = l->state == L_CONNECTING || l->state == L_HELLO;
	out->since = l->since;
	out->next_retry = l->next_retry;
	out->attempts = l->attempts;
	out->reconnects = l->ups;
	snprintf(out->last_error, sizeof(out->last_error), "%s", l->last_error);
	snprintf(out->session, sizeof(out->session), "%s", l->session);
}
