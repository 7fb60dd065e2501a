/*
 * link — the one secure WebSocket to COM.
 *
 * Dials wss:// (optionally through an HTTP CONNECT proxy), verifies COM's
 * certificate against the configured CA, says hello with the service user and
 * system identity, keeps the link alive (ping when idle, hang up when nothing
 * arrives within the deadline) and redials with jittered exponential back-off
 * (a long one after COM refused the credentials). It tracks the connection
 * state in COM's own words for `comagent status`.
 *
 * Messages other than the handshake and acks go to the handler; everything
 * the agent sends goes through link_send(), a bounded queue that control
 * traffic leaves in order.
 */
#ifndef COMAGENT_LINK_H
#define COMAGENT_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <libwebsockets.h>

#include "err.h"
#include "proto.h"

struct conf;
struct link;

#define LINK_SUBPROTOCOL "com-agent.v1"
#define LINK_TXQ_MAX_MSGS 256
#define LINK_TXQ_MAX_BYTES (512u * 1024u)
#define LINK_BIN_MAX (4 + 32768)	/* one binary frame, PROTOCOL.md §1 */

struct link_handler {
	void *arg;
	/* The link is up (welcome received). */
	void (*up)(void *arg, struct link *l);
	/* A control message after the handshake that the link does not
	 * handle itself (anything but welcome/refused/error/unsupported). */
	void (*message)(void *arg, struct link *l, const struct proto_msg *m);
	/* A binary frame (stream data): stream id and payload. */
	void (*data)(void *arg, struct link *l, uint32_t stream,
		     const uint8_t *p, size_t len);
	/* The link can take a data frame (no control message is waiting):
	 * fill buf with one ([u32 id][payload], at most cap bytes) and return
	 * its length, or 0 when there is nothing to send. */
	size_t (*next_frame)(void *arg, struct link *l, uint8_t *buf,
			     size_t cap);
	/* The link that was up is gone. */
	void (*down)(void *arg, struct link *l);
};

/* A snapshot of the link for status displays. */
struct link_info {
	const char *code;	/* waiting|clock|connected|failed|offline|<reason> */
	char wording[96];	/* COM's words for the state */
	bool connecting;	/* an attempt is under way */
	time_t since;		/* when this state began (wall clock) */
	time_t next_retry;	/* 0 when none scheduled */
	unsigned attempts;	/* connection attempts started */
	unsigned reconnects;	/* times the link came up after the first */
	char last_error[192];	/* last failure, in the library's words */
	char session[40];	/* COM's session id while connected */
};

struct link *link_new(struct lws_context *ctx, const struct conf *c,
		      const char *version, const struct link_handler *h);
void link_free(struct link *l);

/* Dial now. */
void link_start(struct link *l);
/* Test builds: the wall clock is off by offset seconds (the same injection
 * as the automatic backup's, COMAGENT_TEST_CLOCK). */
void link_clock_offset(struct link *l, int64_t offset);
/* Close with 1000 and stop redialling; link_stopped() turns true once the
 * socket is gone. */
void link_shutdown(struct link *l);
bool link_stopped(const struct link *l);

/* The next message id on this link. */
int64_t link_next_id(struct link *l);
/* Queues one finished control message. ERR_STATE when the link is not up,
 * ERR_LIMIT when the queue is full. */
err_t link_send(struct link *l, const char *json, size_t len);

/* Someone has data frames to send: ask for a writable callback. */
void link_want_write(struct link *l);

void link_get_info(const struct link *l, struct link_info *out);

/* The lws protocol entry main puts in the context's protocol table. */
struct lws_protocols link_protocol(void);

#endif
