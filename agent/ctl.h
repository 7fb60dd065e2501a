/*
 * ctl — the local control socket between the daemon and the CLI.
 *
 * A Unix stream socket (mode 0660, so root and the agent's group can ask)
 * inside the event loop. A client sends one request line ("status json\n"),
 * the daemon writes the answer and closes. Requests and answers are capped;
 * a client that says nothing is dropped after a few seconds.
 */
#ifndef COMAGENT_CTL_H
#define COMAGENT_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <libwebsockets.h>

#include "err.h"

#define CTL_PROTOCOL "comagent-ctl"
#define CTL_REQ_MAX 512	/* an alarm raise: id 64, text 255 */
#define CTL_REPLY_MAX (128 * 1024)	/* status with 256 tunnels listed */

struct ctl;

/* Writes the answer to one request line into buf (cap bytes); returns its
 * length. The daemon decides what the commands are. */
typedef size_t (*ctl_answer_fn)(void *arg, const char *req, char *buf,
				size_t cap);

/* Binds path (replacing a stale socket, refusing if a daemon answers there)
 * and serves it on the default vhost of ctx. */
err_t ctl_new(struct lws_context *ctx, const char *path, ctl_answer_fn fn,
	      void *arg, struct ctl **out);
void ctl_free(struct ctl *c);

/* Client side: sends req to the daemon at path, copies the answer to out
 * (NULL: discard it). Unless quiet, prints its own error (naming the
 * socket) to stderr; returns it. */
err_t ctl_request(const char *path, const char *req, FILE *out, bool quiet);

/* The lws protocol entry main puts in the context's protocol table. */
struct lws_protocols ctl_protocol(void);

#endif
