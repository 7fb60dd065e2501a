/*
 * logs — the PBX's syslog: received on UDP and TCP (intake), kept in the
 * capped local store (logstore), uploaded to COM (xfer, content "log")
 * every night at about 00:30 system time when the logtransfer setting is
 * on, and at once for COM's fetch_logs job (run by ops, which calls
 * logs_fetch()).
 */
#ifndef COMAGENT_LOGS_H
#define COMAGENT_LOGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <libwebsockets.h>

#include "err.h"

#define LOGS_PROTOCOL "comagent-syslog"
#define LOGS_TCP_MAX 16		/* syslog TCP connections at once */
/* The longest UDP syslog message kept whole: lws's default service buffer
 * (4096 bytes) less its LWS_PRE headroom. RFC 5424 asks for 2048; longer
 * messages belong on TCP, which takes up to [logs] message_max. */
#define LOGS_UDP_MAX (4096 - LWS_PRE)

struct conf;
struct proto_w;
struct settings;
struct xfers;
struct logs;

/* Everything given must outlive l. */
struct logs *logs_new(struct lws_context *ctx, const struct conf *c,
		      const struct settings *s, struct xfers *x);
/* Opens the store, listens for syslog, plans the nightly upload. A store
 * or a listener that fails is logged and shown in status; the agent runs
 * on without it. */
void logs_start(struct logs *l);
/* Timers and sockets; before the lws context is destroyed. */
void logs_shutdown(struct logs *l);
void logs_free(struct logs *l);

struct logs_fetch_cbs {
	void (*progress)(void *arg, unsigned done, unsigned total,
			 const char *name);
	/* reason NULL: every closed file is with COM. */
	void (*done)(void *arg, const char *reason, const char *why);
};
/* COM's "fetch new logs": closes the current file and uploads every file
 * COM does not have yet (with the job's id), then done(). ERR_STATE when
 * there is no store, ERR_LIMIT when another fetch waits already. */
err_t logs_fetch(struct logs *l, const char *job,
		 const struct logs_fetch_cbs *cbs, void *arg);
/* Forget the callbacks of a fetch (its job ended otherwise). */
void logs_fetch_cancel(struct logs *l);

/* Appends a "logs" object (store, caps, counters, next upload) to w. */
void logs_describe(const struct logs *l, struct proto_w *w);
/* A few lines for people (comagent status); returns the length. */
size_t logs_format(const struct logs *l, char *buf, size_t cap);
/* The store's files with their upload state, one per line. */
size_t logs_list(const struct logs *l, char *buf, size_t cap);

/* Test builds: the wall clock is now + offset (as ops_clock_offset). */
void logs_clock_offset(struct logs *l, int64_t offset);

/* The lws protocol entry for the syslog sockets. */
struct lws_protocols logs_protocol(void);

#endif
