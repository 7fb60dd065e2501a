/*
 * stream — tunnels multiplexed over the COM link (see stream.h).
 *
 * Flow control, per stream:
 *   COM → local: COM may send STREAM_WINDOW bytes; they wait in `down`
 *     until the local socket takes them; what it took is granted back to COM
 *     with stream.credit in batches. `down` never holds more than the window.
 *   local → COM: reads from the local socket land in `up`; frames leave as
 *     COM's credit allows. When `up` cannot take another read, reading from
 *     the local socket is paused (lws rx flow control) until frames drain it.
 * So each stream holds at most two windows, whatever the two ends do.
 *
 * Endings: local EOF → send what is in `up`, then stream.close "done". COM's
 * stream.close → write what is in `down`, then close the local socket. A
 * protocol violation closes the stream (never the link). Link loss closes
 * every local socket at once.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "link.h"
#include "log.h"
#include "proto.h"
#include "settings.h"
#include "stream.h"
#include "tunnel.h"

#define LOG_MODULE "stream"

/* One local read (lws rx_buffer_size) and the headroom lws_write wants. */
#define STREAM_RX_CHUNK 16384u
#define STREAM_BUF_CAP (STREAM_WINDOW + STREAM_RX_CHUNK)
/* Credit is granted back once this much was consumed (or all of it). */
#define STREAM_CREDIT_BATCH 16384u
/* Ids answered "unknown_stream" recently; bounded, so a flood of bogus ids
 * cannot grow memory (an id that falls out is merely answered again). */
#define UNKNOWN_MEMORY 32
/* How long a closing tunnel may take to hand its last bytes to the service. */
#define STREAM_FLUSH_S 30

/* A byte queue with LWS_PRE bytes in front of the data, always. */
struct bq {
	uint8_t *mem;
	size_t off, len;
};

struct stream {
	struct streams *t;
	struct stream *next;
	uint32_t id;
	struct lws *wsi;		/* the local socket, NULL once gone */
	bool connected;			/* TCP up, stream.accept sent */
	bool close_sent;		/* no more messages about it to COM */
	bool remote_closed;		/* COM closed: flush down, then close */
	bool closing_local;		/* close the local socket when writable */
	bool paused;			/* local reads paused */
	bool dialing;			/* inside lws_client_connect_via_info */
	bool dial_failed;		/* ...which reported an error */
	int64_t credit;			/* bytes we may still send COM */
	int64_t window;			/* bytes COM may still send us */
	size_t consumed;		/* written locally, not yet credited */
	struct bq up, down;
	uint64_t bytes_in, bytes_out;	/* in: from COM to the service */
	time_t started;
	lws_usec_t t0;
	int64_t open_id;		/* COM's stream.open message id */
	char target[272];		/* host:port, host up to 255 */
	char user[40];
	char end[384];		/* why it ended, for the close log */
	lws_sorted_usec_list_t sul_connect;
};

struct streams {
	struct lws_context *ctx;
	struct lws_vhost *vhost;	/* STREAM_VHOST */
	const struct conf *conf;
	const struct settings *settings;
	struct link *link;		/* NULL while the link is down */
	struct proto_w *w;
	struct stream *head;
	struct stream *rr;		/* served last by the frame writer */
	unsigned count;
	uint32_t unknown[UNKNOWN_MEMORY];
	unsigned unknown_next, unknown_n;
};

/* ---- byte queues ------------------------------------------------------ */

static size_t bq_room(const struct bq *q)
{
	return STREAM_BUF_CAP - q->len;
}

static uint8_t *bq_data(struct bq *q) { return q->mem + LWS_PRE + q->off; }

static err_t bq_push(struct bq *q, const uint8_t *p, size_t n)
{
	if (n > bq_room(q))
		return ERR_LIMIT;
	if (!q->mem) {
		/* Allocated on first use and freed when drained, so an idle
		 * tunnel costs no buffer memory. */
		q->mem = malloc(LWS_PRE + STREAM_BUF_CAP);
		if (!q->mem)
			return ERR_NOMEM;
		q->off = 0;
	}
	if (q->off + q->len + n > STREAM_BUF_CAP) {
		memmove(q->mem + LWS_PRE, bq_data(q), q->len);
		q->off = 0;
	}
	memcpy(bq_data(q) + q->len, p, n);
	q->len += n;
	return ERR_OK;
}

static void bq_pop(struct bq *q, size_t n)
{
	q->off += n;
	q->len -= n;
	if (!q->len) {
		free(q->mem);
		q->mem = NULL;
		q->off = 0;
	}
}

static void bq_clear(struct bq *q)
{
	free(q->mem);
	memset(q, 0, sizeof(*q));
}

/* ---- messages to COM -------------------------------------------------- */

static err_t send_built(struct streams *t)
{
	char *buf;
	size_t len;

	if (!t->link)
		return ERR_STATE;
	if (proto_w_finish(t->w, &buf, &len) != ERR_OK) {
		LOGE("stream message does not fit; dropped");
		return ERR_LIMIT;
	}
	return link_send(t->link, buf, len);
}

static void send_close(struct streams *t, uint32_t id, const char *reason,
		       const char *msg)
{
	if (!t->link)
		return;
	proto_w_begin(t->w, "stream.close", link_next_id(t->link));
	proto_w_int(t->w, "stream", id);
	proto_w_str(t->w, "reason", reason);
	proto_w_str(t->w, "message", msg ? msg : "");
	send_built(t);
}

static void send_credit(struct stream *s)
{
	struct streams *t = s->t;

	if (!s->consumed || s->close_sent || !t->link)
		return;
	proto_w_begin(t->w, "stream.credit", link_next_id(t->link));
	proto_w_int(t->w, "stream", s->id);
	proto_w_int(t->w, "bytes", (int64_t)s->consumed);
	/* Credit COM never hears of would shrink its allowance for good:
	 * keep it owed and grant it with the next write instead. */
	if (send_built(t) != ERR_OK)
		return;
	s->window += (int64_t)s->consumed;
	s->consumed = 0;
}

static void want_write(struct streams *t)
{
	if (t->link)
		link_want_write(t->link);
}

/* ---- stream lifecycle ------------------------------------------------- */

static struct stream *find(const struct streams *t, uint32_t id)
{
	for (struct stream *s = t->head; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void remember_id(struct streams *t, uint32_t id)
{
	t->unknown[t->unknown_next] = id;
	t->unknown_next = (t->unknown_next + 1) % UNKNOWN_MEMORY;
	if (t->unknown_n < UNKNOWN_MEMORY)
		t->unknown_n++;
}

static bool remembered(const struct streams *t, uint32_t id)
{
	for (unsigned i = 0; i < t->unknown_n; i++)
		if (t->unknown[i] == id)
			return true;
	return false;
}

static void stream_free(struct stream *s)
{
	struct streams *t = s->t;
	struct stream **pp;

	for (pp = &t->head; *pp && *pp != s; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = s->next;
	if (t->rr == s)
		t->rr = NULL;
	t->count--;
	lws_sul_cancel(&s->sul_connect);
	/* Data or credit COM sent before it saw our close is no violation:
	 * remember the id so it is dropped quietly. */
	remember_id(t, s->id);
	LOGI("tunnel %u to %s closed (%s): %llu bytes in, %llu bytes out, "
	     "%.1f s", s->id, s->target, s->end[0] ? s->end : "done",
	     (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out,
	     (double)(lws_now_usecs() - s->t0) / 1e6);
	bq_clear(&s->up);
	bq_clear(&s->down);
	free(s);
}

static void set_end(struct stream *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_end(struct stream *s, const char *fmt, ...)
{
	va_list ap;

	if (s->end[0])
		return;	/* the first reason is the real one */
	va_start(ap, fmt);
	vsnprintf(s->end, sizeof(s->end), fmt, ap);
	va_end(ap);
}

/* Close the local socket at once, from outside its own callbacks, when
 * nothing more is to be written to it. Synchronous: an async kill of a
 * connecting socket can be cancelled by lws's own connect timeouts, and a
 * connected one may never become writable (a service that stopped
 * reading). lws calls back (RAW_CLOSE / CONNECTION_ERROR) from in here,
 * which frees the stream: callers must not touch s afterwards. */
static void close_local(struct stream *s)
{
	if (!s->wsi) {
		stream_free(s);
		return;
	}
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

/* Close the local socket once what COM sent is written, within a bound:
 * a service that stopped reading must not hold the stream for ever. */
static void close_local_after_flush(struct stream *s)
{
	if (!s->wsi || !s->connected || !s->down.len) {
		close_local(s);
		return;
	}
	s->closing_local = true;
	if (s->paused) {
		/* A service blocked writing to us may not read until it can. */
		s->paused = false;
		lws_rx_flow_control(s->wsi, 1);
	}
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, STREAM_FLUSH_S);
	lws_callback_on_writable(s->wsi);
}

/* End the stream now: tell COM (once) and close the local side. */
static void stream_abort(struct stream *s, const char *reason, const char *msg)
{
	set_end(s, "%s: %s", reason, msg);
	if (!s->close_sent) {
		send_close(s->t, s->id, reason, msg);
		s->close_sent = true;
	}
	bq_clear(&s->up);
	bq_clear(&s->down);
	close_local(s);
}

static void connect_timeout_cb(lws_sorted_usec_list_t *sul)
{
	struct stream *s = lws_container_of(sul, struct stream, sul_connect);
	char msg[384];

	snprintf(msg, sizeof(msg), "connect %s: no answer within %llu ms",
		 s->target, (unsigned long long)conf_num(s->t->conf,
			CONF_COM_TUNNEL_CONNECT_TIMEOUT));
	LOGE("tunnel %u: %s", s->id, msg);
	stream_abort(s, "timeout", msg);
}

static err_t dial(struct stream *s, const struct tunnel_target *to)
{
	static const lws_retry_bo_t no_validity = { .secs_since_valid_hangup = 0 };
	struct lws_client_connect_info i;

	memset(&i, 0, sizeof(i));
	i.context = s->t->ctx;
	i.vhost = s->t->vhost;
	i.address = to->host;
	i.port = to->port;
	i.host = to->host;
	i.origin = to->host;
	i.method = "RAW";
	i.local_protocol_name = STREAM_PROTOCOL;
	i.opaque_user_data = s;
	i.pwsi = &s->wsi;
	i.retry_and_idle_policy = &no_validity;
	lws_sul_schedule(s->t->ctx, 0, &s->sul_connect, connect_timeout_cb,
			 (lws_usec_t)conf_num(s->t->conf,
					      CONF_COM_TUNNEL_CONNECT_TIMEOUT) * 1000);
	/* lws may report a failure synchronously, from inside this call:
	 * on_local_closed() then leaves the stream to us. */
	s->dialing = true;
	if (!lws_client_connect_via_info(&i))
		s->dial_failed = true;
	s->dialing = false;
	if (s->dial_failed) {
		s->wsi = NULL;
		return ERR_IO;
	}
	return ERR_OK;
}

/* ---- COM's control messages ------------------------------------------- */

static void on_open(struct streams *t, const struct proto_msg *m)
{
	const char *kind = proto_str(m, "kind");
	const char *user = proto_str(m, "user");
	struct tunnel_target to;
	struct stream *s;
	int64_t id, win, port = 0;
	char why[384];

	if (!proto_int(m, "stream", &id) || id <= 0 || id > UINT32_MAX ||
	    (id & 1) || find(t, (uint32_t)id)) {
		LOGE("stream.open %lld: bad or busy stream id",
		     (long long)proto_id(m));
		proto_w_begin(t->w, "error", link_next_id(t->link));
		proto_w_int(t->w, "re", proto_id(m));
		proto_w_str(t->w, "code", "malformed");
		proto_w_str(t->w, "message", "stream.open needs an even stream "
			    "id 2..2^32-2 that is not open");
		send_built(t);
		return;
	}
	if (!kind || strcmp(kind, "tunnel")) {
		send_close(t, (uint32_t)id, "refused", "unsupported stream kind");
		return;
	}
	if (!proto_int(m, "window", &win) || win < 1 ||
	    win > STREAM_CREDIT_MAX) {
		send_close(t, (uint32_t)id, "flow", "window must be 1..2^31-1");
		return;
	}
	if (t->count >= conf_num(t->conf, CONF_COM_MAX_STREAMS)) {
		snprintf(why, sizeof(why), "too many streams (max %llu)",
			 (unsigned long long)conf_num(t->conf,
						     CONF_COM_MAX_STREAMS));
		LOGE("stream %lld refused: %s", (long long)id, why);
		send_close(t, (uint32_t)id, "limit", why);
		return;
	}
	if (!proto_int(m, "port", &port)) {
		send_close(t, (uint32_t)id, "refused",
			   "a tunnel needs a port 1..65535");
		return;
	}
	if (tunnel_decide(t->conf, t->settings, proto_str(m, "system"),
			  proto_str(m, "host"), port, &to, why,
			  sizeof(why)) != ERR_OK) {
		LOGI("tunnel %lld for %s refused: %s", (long long)id,
		     user ? user : "?", why);
		send_close(t, (uint32_t)id, "not_allowed", why);
		return;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		LOGE("out of memory for stream %lld", (long long)id);
		send_close(t, (uint32_t)id, "refused", "out of memory");
		return;
	}
	s->t = t;
	s->id = (uint32_t)id;
	s->credit = win;
	s->window = STREAM_WINDOW;
	s->open_id = proto_id(m);
	s->started = time(NULL);
	s->t0 = lws_now_usecs();
	snprintf(s->target, sizeof(s->target), "%s%s%s:%u",
		 strchr(to.host, ':') ? "[" : "", to.host,
		 strchr(to.host, ':') ? "]" : "", to.port);
	snprintf(s->user, sizeof(s->user), "%s", user ? user : "");
	s->next = t->head;
	t->head = s;
	t->count++;
	LOGI("tunnel %u for %s: connecting to %s (%s)", s->id,
	     s->user[0] ? s->user : "?", s->target, to.via);
	if (dial(s, &to) != ERR_OK) {
		if (!s->end[0])
			set_end(s, "connect %s: cannot start", s->target);
		LOGE("tunnel %u: %s", s->id, s->end);
		snprintf(why, sizeof(why), "%s", s->end);
		stream_abort(s, "unreachable", why);
	}
}

static void on_credit(struct streams *t, const struct proto_msg *m)
{
	struct stream *s;
	int64_t id, bytes;

	if (!proto_int(m, "stream", &id) || id <= 0 || id > UINT32_MAX)
		return;
	s = find(t, (uint32_t)id);
	if (!s) {
		if (!remembered(t, (uint32_t)id)) {
			remember_id(t, (uint32_t)id);
			send_close(t, (uint32_t)id, "unknown_stream",
				   "no such stream");
		}
		return;
	}
	if (s->close_sent)
		return;
	if (!proto_int(m, "bytes", &bytes) || bytes < 1 ||
	    bytes > STREAM_CREDIT_MAX - s->credit) {
		LOGE("tunnel %u: credit overflow from COM", s->id);
		stream_abort(s, "flow", "credit must keep the allowance within "
			     "1..2^31-1");
		return;
	}
	s->credit += bytes;
	want_write(t);
}

static void on_close(struct streams *t, const struct proto_msg *m)
{
	const char *reason = proto_str(m, "reason");
	struct stream *s;
	int64_t id;

	if (!proto_int(m, "stream", &id) || id <= 0 || id > UINT32_MAX)
		return;
	s = find(t, (uint32_t)id);
	if (!s)
		return;	/* never answered (PROTOCOL.md §3) */
	set_end(s, "closed by COM: %s", reason ? reason : "done");
	s->close_sent = true;
	s->remote_closed = true;
	bq_clear(&s->up);
	close_local_after_flush(s);
}

void streams_on_control(struct streams *t, const struct proto_msg *m)
{
	const char *type = proto_type(m);

	if (!t->link)
		return;
	if (!strcmp(type, "stream.open"))
		on_open(t, m);
	else if (!strcmp(type, "stream.credit"))
		on_credit(t, m);
	else if (!strcmp(type, "stream.close"))
		on_close(t, m);
}

void streams_on_data(struct streams *t, uint32_t id, const uint8_t *p,
		     size_t len)
{
	struct stream *s = find(t, id);

	if (!s) {
		/* Id 0 never exists; like any unknown id it is reported once
		 * and then dropped quietly, so COM cannot flood the log. */
		if (remembered(t, id))
			return;
		remember_id(t, id);
		LOGE("%zu bytes for stream %u, which is not open", len, id);
		if (id)
			send_close(t, id, "unknown_stream", "no such stream");
		return;
	}
	if (s->close_sent || (s->connected && !s->wsi))
		return;	/* in flight when we or the service closed: dropped */
	if (!s->connected || (int64_t)len > s->window) {
		LOGE("tunnel %u: %zu bytes beyond the window (%lld left)",
		     s->id, len, (long long)s->window);
		stream_abort(s, "flow", s->connected ? "data beyond credit" :
			     "data before stream.accept");
		return;
	}
	if (bq_push(&s->down, p, len) != ERR_OK) {
		stream_abort(s, "flow", "no buffer for data");
		return;
	}
	s->window -= (int64_t)len;
	lws_callback_on_writable(s->wsi);
}

/* ---- frames to COM ---------------------------------------------------- */

static bool has_frame(const struct stream *s)
{
	return s->up.len && s->credit > 0 && !s->close_sent;
}

size_t streams_next_frame(struct streams *t, uint8_t *buf, size_t cap)
{
	struct stream *start = t->rr && t->rr->next ? t->rr->next : t->head;
	struct stream *s = start;
	size_t n;

	if (!s || cap <= 4)
		return 0;
	/* Round-robin: the stream after the one served last goes first. */
	while (!has_frame(s)) {
		s = s->next ? s->next : t->head;
		if (s == start)
			return 0;
	}
	n = s->up.len;
	if ((int64_t)n > s->credit)
		n = (size_t)s->credit;
	if (n > STREAM_FRAME_MAX)
		n = STREAM_FRAME_MAX;
	if (n > cap - 4)
		n = cap - 4;
	buf[0] = (uint8_t)(s->id >> 24);
	buf[1] = (uint8_t)(s->id >> 16);
	buf[2] = (uint8_t)(s->id >> 8);
	buf[3] = (uint8_t)s->id;
	memcpy(buf + 4, bq_data(&s->up), n);
	bq_pop(&s->up, n);
	s->credit -= (int64_t)n;
	s->bytes_out += n;
	t->rr = s;
	if (s->paused && s->wsi && bq_room(&s->up) >= STREAM_RX_CHUNK) {
		s->paused = false;
		lws_rx_flow_control(s->wsi, 1);
	}
	if (!s->wsi && !s->up.len) {
		/* The local side ended and everything it sent is framed. */
		send_close(t, s->id, "done", "");
		s->close_sent = true;
		stream_free(s);
	}
	return 4 + n;
}

/* ---- the local sockets ------------------------------------------------ */

static int on_connected(struct stream *s)
{
	struct streams *t = s->t;

	lws_sul_cancel(&s->sul_connect);
	if (s->close_sent)
		return -1;	/* given up on while it connected */
	if (!t->link)
		return -1;
	s->connected = true;
	LOGI("tunnel %u to %s open", s->id, s->target);
	proto_w_begin(t->w, "stream.accept", link_next_id(t->link));
	proto_w_int(t->w, "re", s->open_id);
	proto_w_int(t->w, "stream", s->id);
	proto_w_int(t->w, "window", STREAM_WINDOW);
	(void)send_built(t);
	return 0;
}

static int on_local_rx(struct stream *s, const void *in, size_t len)
{
	if (!s->connected)
		return -1;	/* nothing may speak before the connection is up */
	if (s->close_sent)
		return 0;	/* COM is gone for this stream: discard */
	if (bq_push(&s->up, in, len) != ERR_OK) {
		/* Inside this socket's own callback: let lws close it. */
		set_end(s, "flow: local data overflow");
		send_close(s->t, s->id, "flow", "local data overflow");
		s->close_sent = true;
		bq_clear(&s->up);
		bq_clear(&s->down);
		return -1;
	}
	if (!s->paused && bq_room(&s->up) < STREAM_RX_CHUNK) {
		s->paused = true;
		lws_rx_flow_control(s->wsi, 0);
	}
	want_write(s->t);
	return 0;
}

static int on_local_writable(struct stream *s, struct lws *wsi)
{
	size_t n;

	if (s->down.len) {
		n = s->down.len < STREAM_FRAME_MAX ? s->down.len
						   : STREAM_FRAME_MAX;
		/* lws buffers what the socket does not take and writes it
		 * before the next WRITEABLE, so n counts as taken. */
		if (lws_write(wsi, bq_data(&s->down), n, LWS_WRITE_RAW) < 0) {
			set_end(s, "write to %s failed", s->target);
			return -1;
		}
		bq_pop(&s->down, n);
		s->bytes_in += n;
		s->consumed += n;
		if (s->consumed >= STREAM_CREDIT_BATCH || !s->down.len)
			send_credit(s);
	}
	if (s->down.len || ((s->closing_local || s->remote_closed) &&
			    lws_partial_buffered(wsi))) {
		/* lws drops what it still buffers when a raw socket closes:
		 * close only once it is all out. */
		lws_callback_on_writable(wsi);
		return 0;
	}
	return s->closing_local || s->remote_closed ? -1 : 0;
}

/* The local socket is gone (EOF, error, or our own close). */
static void on_local_closed(struct stream *s, const char *err)
{
	struct streams *t = s->t;

	s->wsi = NULL;
	lws_sul_cancel(&s->sul_connect);
	if (s->dialing) {
		s->dial_failed = true;
		set_end(s, "connect %s: %s", s->target, err ? err : "failed");
		return;
	}
	if (!s->connected) {
		char msg[384];

		snprintf(msg, sizeof(msg), "connect %s: %s", s->target,
			 err ? err : "failed");
		LOGE("tunnel %u: %s", s->id, msg);
		set_end(s, "%s", msg);
		if (!s->close_sent)
			send_close(t, s->id, "unreachable", msg);
		s->close_sent = true;
		stream_free(s);
		return;
	}
	bq_clear(&s->down);
	if (s->close_sent || !t->link) {
		stream_free(s);
		return;
	}
	set_end(s, "closed by %s", s->target);
	if (!s->up.len) {
		send_close(t, s->id, "done", "");
		s->close_sent = true;
		stream_free(s);
	} else {
		want_write(t);	/* the frame writer closes it when drained */
	}
}

static int streams_lws_callback(struct lws *wsi,
				enum lws_callback_reasons reason, void *user,
				void *in, size_t len)
{
	struct stream *s = lws_get_opaque_user_data(wsi);

	(void)user;
	if (!s)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_RAW_CONNECTED:
		return on_connected(s);
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		lws_set_opaque_user_data(wsi, NULL);
		/* lws 4.1 says "Unable to connect" without the errno: the
		 * socket is closed by then, so the reason is not ours to
		 * read either. */
		on_local_closed(s, in ? (const char *)in : "connection failed");
		return 0;
	case LWS_CALLBACK_RAW_RX:
		return on_local_rx(s, in, len);
	case LWS_CALLBACK_RAW_WRITEABLE:
		return on_local_writable(s, wsi);
	case LWS_CALLBACK_RAW_CLOSE:
		lws_set_opaque_user_data(wsi, NULL);
		on_local_closed(s, NULL);
		return 0;
	default:
		return 0;
	}
}

struct lws_protocols streams_protocol(void)
{
	struct lws_protocols p = {
		.name = STREAM_PROTOCOL,
		.callback = streams_lws_callback,
		.rx_buffer_size = STREAM_RX_CHUNK,
	};
	return p;
}

/* ---- link events and life --------------------------------------------- */

void streams_link_up(struct streams *t, struct link *l)
{
	t->link = l;
	/* Ids are per link: a new link starts with none remembered. */
	t->unknown_n = 0;
	t->unknown_next = 0;
}

void streams_link_down(struct streams *t)
{
	struct stream *s = t->head, *next;

	t->link = NULL;
	for (; s; s = next) {
		next = s->next;
		set_end(s, "link to COM lost");
		s->close_sent = true;
		bq_clear(&s->up);
		bq_clear(&s->down);
		close_local(s);
	}
}

void streams_describe(const struct streams *t, struct proto_w *w)
{
	time_t now = time(NULL);

	proto_w_arr(w, "tunnels");
	for (const struct stream *s = t->head; s; s = s->next) {
		proto_w_obj(w, NULL);
		proto_w_int(w, "stream", s->id);
		proto_w_str(w, "target", s->target);
		proto_w_str(w, "user", s->user);
		proto_w_bool(w, "connected", s->connected);
		proto_w_int(w, "age", (int64_t)(now - s->started));
		proto_w_int(w, "bytes_in", (int64_t)s->bytes_in);
		proto_w_int(w, "bytes_out", (int64_t)s->bytes_out);
		proto_w_end(w);
	}
	proto_w_end(w);
}

unsigned streams_count(const struct streams *t) { return t->count; }

size_t streams_format(const struct streams *t, char *buf, size_t cap)
{
	time_t now = time(NULL);
	size_t n = 0;

	if (!cap)
		return 0;
	buf[0] = '\0';
	for (const struct stream *s = t->head; s && n + 1 < cap; s = s->next) {
		int w = snprintf(buf + n, cap - n,
				 "  stream %u -> %s%s%s%s, %lld s, %llu bytes in, "
				 "%llu bytes out\n", s->id, s->target,
				 s->user[0] ? " for " : "", s->user,
				 s->connected ? "" : " (connecting)",
				 (long long)(now - s->started),
				 (unsigned long long)s->bytes_in,
				 (unsigned long long)s->bytes_out);
		if (w < 0)
			break;
		n += (size_t)w < cap - n ? (size_t)w : cap - n - 1;
	}
	return n;
}

struct streams *streams_new(struct lws_context *ctx, const struct conf *c,
			    const struct settings *s)
{
	struct streams *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ctx = ctx;
	t->conf = c;
	t->settings = s;
	t->vhost = lws_get_vhost_by_name(ctx, STREAM_VHOST);
	t->w = proto_w_new(PROTO_MAX_MSG, 0);
	if (!t->w || !t->vhost) {
		if (!t->vhost)
			LOGE("no '%s' vhost to dial tunnels from", STREAM_VHOST);
		proto_w_free(t->w);
		free(t);
		return NULL;
	}
	return t;
}

void streams_shutdown(struct streams *t)
{
	if (!t)
		return;
	for (struct stream *s = t->head; s; s = s->next)
		lws_sul_cancel(&s->sul_connect);
}

void streams_free(struct streams *t)
{
	if (!t)
		return;
	while (t->head) {
		set_end(t->head, "agent shutting down");
		stream_free(t->head);
	}
	proto_w_free(t->w);
	free(t);
}
