/*
 * xfer — file transfers over the COM link: uploads (PROTOCOL.md §3.3) and
 * downloads (§3.4), as streams the agent opens with odd ids.
 *
 * A transfer outlives links: when the link drops, it waits, and on the next
 * link it opens a new stream that resumes where the last one stopped — an
 * upload from the offset COM says it holds, a download from the bytes the
 * partial file holds. A transfer ends only by success, by a failure that
 * retrying cannot fix (COM refused it, the bytes are wrong twice, the disk
 * is full), or by xfer_free().
 *
 * Memory: one read of STREAM_FRAME_MAX bytes at a time for an upload (the
 * file is read as the link can take it); a download writes every frame to
 * the partial file as it arrives and grants COM credit for what is written,
 * so at most one window is in flight.
 */
#ifndef COMAGENT_XFER_H
#define COMAGENT_XFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "err.h"

struct link;
struct proto_msg;
struct xfer;
struct xfers;

struct xfer_cbs {
	/* Bytes done of total; at most about once per percent. May be NULL. */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	/* The end. reason NULL: success (the upload is stored, or the
	 * download verified and renamed into place). Otherwise a PROTOCOL.md
	 * §2.6 failure word — "transfer" (COM refused it or broke the
	 * protocol), "corrupt" (size or SHA-256 wrong), "space" (the disk is
	 * full) — and why, one line for people. Called once; xfer_free() may
	 * be called from here. */
	void (*done)(void *arg, const char *reason, const char *why);
};

/* ctx: for timers (COM's answers are awaited at most a minute). */
struct xfers *xfers_new(struct lws_context *ctx);
/* Cancels timers; before the lws context is destroyed. */
void xfers_shutdown(struct xfers *x);
/* Ends every transfer still there without calling back. */
void xfers_free(struct xfers *x);

void xfers_link_up(struct xfers *x, struct link *l);
void xfers_link_down(struct xfers *x);

#define XFER_NAME_MAX 128

/* A file name a transfer may carry (PROTOCOL.md §3.3): 1..XFER_NAME_MAX
 * of [A-Za-z0-9._-], not "." or "..". false for NULL. */
bool xfer_name_ok(const char *s);

/* Streams with odd ids are the agent's (PROTOCOL.md §3). */
static inline bool xfers_owns(uint32_t stream) { return stream & 1u; }
/* stream.accept, and stream.credit / stream.close for an odd id. */
void xfers_on_control(struct xfers *x, const struct proto_msg *m);
void xfers_on_data(struct xfers *x, uint32_t id, const uint8_t *p,
		   size_t len);
/* The next upload data frame ([u32 id][payload]) into buf; 0 for none. */
size_t xfers_next_frame(struct xfers *x, uint8_t *buf, size_t cap);

/*
 * Uploads the file at path (size bytes, SHA-256 sha256 in lower-case hex,
 * both computed by the caller) as name for COM job job ("" for the
 * agent's own); content is "backup" or "log" (PROTOCOL.md §3.3). The file must not change until done() is called.
 * ERR_NOTFOUND/ERR_IO (logged) when it cannot be opened.
 */
err_t xfer_upload(struct xfers *x, const char *job, const char *name,
		  const char *content, const char *path, uint64_t size,
		  const char *sha256, const struct xfer_cbs *cbs, void *arg,
		  struct xfer **out);

#define XFER_SIZE_UNKNOWN UINT64_MAX

/*
 * Downloads name of job job into path; content and level (NULL: not
 * sent) say which of COM's files it is when the job does not (a custom
 * file: "custom" and its level, PROTOCOL.md §3.5), through the partial file
 * xfer_part_path() names (kept across links and restarts, so a later
 * download of the same file resumes).
 * size and sha256 are what the job says the file must be; size
 * XFER_SIZE_UNKNOWN takes COM's word for the size, sha256 NULL for both
 * (not used by the job engine). ERR_IO (logged)
 * when the partial file cannot be opened.
 */
err_t xfer_download(struct xfers *x, const char *job, const char *content,
		    const char *level, const char *name, const char *path,
		    uint64_t size, const char *sha256,
		    const struct xfer_cbs *cbs, void *arg, struct xfer **out);

/* The partial file of a download to path: "PATH.<16 hex of sha256>.part",
 * so that bytes of another file of the same name are never resumed, or
 * "PATH.part" when sha256 is NULL. false if it does not fit in cap. */
bool xfer_part_path(const char *path, const char *sha256, char *out,
		    size_t cap);

/* Stops a transfer (a stream.close to COM if one is open); no callback. A
 * download's partial file stays for a resume. */
void xfer_free(struct xfer *t);

/* Bytes done and total, for status. */
uint64_t xfer_done_bytes(const struct xfer *t);
uint64_t xfer_total_bytes(const struct xfer *t);

#endif
