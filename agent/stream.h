/*
 * stream — byte streams multiplexed over the COM link (PROTOCOL.md §3).
 *
 * Each stream is a tunnel from COM to a TCP service on the customer LAN: a
 * non-blocking lws raw connection on one side, binary frames on the link on
 * the other. Per-stream credit windows bound memory in both directions (a
 * slow consumer stalls only its own stream), frames leave round-robin between
 * streams and only after the link's queued control messages, and a stream's
 * memory is freed when it closes.
 */
#ifndef COMAGENT_STREAM_H
#define COMAGENT_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "err.h"

struct conf;
struct link;
struct proto_msg;
struct proto_w;
struct settings;
struct streams;

#define STREAM_PROTOCOL "comagent-tunnel"
/* The vhost tunnels dial from: one without the COM link's HTTP proxy, which
 * is for reaching COM, not the customer LAN. main creates it. */
#define STREAM_VHOST "tunnels"
#define STREAM_WINDOW 65536u		/* granted to COM per stream */
#define STREAM_FRAME_MAX 16384u		/* payload bytes per data frame */
#define STREAM_CREDIT_MAX 0x7fffffffLL	/* PROTOCOL.md §3 */

struct streams *streams_new(struct lws_context *ctx, const struct conf *c,
			    const struct settings *s);
/* Frees what is left; call after the lws context is destroyed (closing its
 * sockets still calls back into the streams). */
void streams_free(struct streams *t);
/* Cancels timers; call before destroying the lws context. */
void streams_shutdown(struct streams *t);

void streams_link_up(struct streams *t, struct link *l);
/* The link is gone: every tunnel's local socket is closed promptly. */
void streams_link_down(struct streams *t);

/* stream.open / stream.credit / stream.close from COM. */
void streams_on_control(struct streams *t, const struct proto_msg *m);
/* A binary frame's payload for stream id. */
void streams_on_data(struct streams *t, uint32_t id, const uint8_t *p,
		     size_t len);
/* Fills buf with the next data frame ([u32 id][payload]); returns its
 * length, 0 when no stream has data and credit. */
size_t streams_next_frame(struct streams *t, uint8_t *buf, size_t cap);

/* Appends a "tunnels" array (open tunnels, for status) to w. */
void streams_describe(const struct streams *t, struct proto_w *w);
unsigned streams_count(const struct streams *t);
/* One line per open tunnel, for people; returns the length written. */
size_t streams_format(const struct streams *t, char *buf, size_t cap);

/* The lws protocol entry for the local sockets of tunnels. */
struct lws_protocols streams_protocol(void);

#endif
