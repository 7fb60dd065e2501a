/*
 * custom — COM's custom files (PROTOCOL.md §3.5, issue 6): CustomData.xml
 * applied once at the very first connect, and refreshes of the phone files
 * (CustomPhoneFiles.tar) and SIP templates (CustomTemplates.tar) from the
 * provider, reseller and system folders, in that order.
 *
 * A refresh asks COM what there is (custom.list), downloads every tar
 * (xfer: resumable, checked against the list's size and SHA-256),
 * extracts each part's levels into a staging directory beside its target
 * (customtar: only plain regular files), and installs each part that
 * extracted whole under a journal (STATE_DIR/custom-files.pending) that the
 * next start finishes after a crash: the installed set is the old or the
 * new one, never a mix. STATE_DIR/custom-files is the manifest of what the
 * agent installed (part, level, size, SHA-256, name; "ship" for files the
 * last refresh of their part shipped, "stale" for older ones it no longer
 * ships, removed only by a prune).
 *
 * Extraction and the install run inside the event loop (bounded: at most
 * 10 MiB per tar, CUSTOM_FILES_MAX files).
 */
#ifndef COMAGENT_CUSTOM_H
#define COMAGENT_CUSTOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "err.h"

struct conf;
struct link;
struct proto_msg;
struct settings;
struct xfers;

#define CUSTOM_TAR_MAX	(10u * 1024u * 1024u)	/* bytes of one tar */
#define CUSTOM_MEMBERS_MAX 1000			/* members of one tar */
#define CUSTOM_FILES_MAX 1024			/* files in the manifest */
#define CUSTOM_TEMPLATES_MAX 4			/* SIP templates installed */
#define CUSTOM_MANIFEST "custom-files"		/* in STATE_DIR */

struct custom_cbs {
	/* CustomData.xml is settled (applied, none or rejected) and the
	 * first refresh is due: the caller starts it (custom_refresh()) as
	 * its own job when it can, and calls custom_first_refreshed() when
	 * it has run. */
	void (*first_refresh)(void *arg);
	/* A field of custom_status() changed (COM gets a new status). */
	void (*changed)(void *arg);
};

struct custom;

/* Everything given must outlive c. */
struct custom *custom_new(struct lws_context *ctx, const struct conf *conf,
			  struct settings *s, struct xfers *x,
			  const struct custom_cbs *cbs, void *arg);
/* Finishes an install a crash cut short, removes what an interrupted
 * extraction left. Once, before the first link. */
void custom_start(struct custom *c);
/* Cancels timers and transfers; before the lws context is destroyed. */
void custom_shutdown(struct custom *c);
void custom_free(struct custom *c);

/* The link is up (the first connect's work starts, a pending list
 * request goes again) / down. */
void custom_link_up(struct custom *c, struct link *l);
void custom_link_down(struct custom *c);
/* custom.files, or an error / unsupported answering our custom.list:
 * true if it was ours. */
bool custom_on_message(struct custom *c, const struct proto_msg *m);

struct custom_refresh_cbs {
	/* phase (a PROTOCOL.md §2.6 word), percent, one line for people. */
	void (*progress)(void *arg, const char *phase, int pct,
			 const char *text);
	/* reason NULL: succeeded; else a §2.6 failure word. The summary or
	 * why. Called once, never from inside custom_refresh(). */
	void (*done)(void *arg, const char *reason, const char *text);
};

/* Starts a refresh for COM job job ("" for the agent's own). prune: also
 * remove stale files. ERR_STATE when one runs already. */
err_t custom_refresh(struct custom *c, const char *job, bool prune,
		     const struct custom_refresh_cbs *cbs, void *arg);
/* The first refresh has run (whatever its outcome): not asked again. */
void custom_first_refreshed(struct custom *c);

/* Removes the stale files (those still as the agent installed them) and
 * their manifest lines, now. ERR_STATE while a refresh runs. msg: what
 * was done or why not. */
err_t custom_prune(struct custom *c, char *msg, size_t cap);

/* "steps TOTAL\n", then the refreshes' per-file steps after step number
 * from (0: all kept) as "N\tTEXT\n" lines, into buf; returns the length. */
size_t custom_steps(const struct custom *c, unsigned from, char *buf,
		    size_t cap);

/* For status: "pending" | "applied" | "none" | "rejected", and why. */
const char *custom_data_state(const struct custom *c);
const char *custom_data_message(const struct custom *c);
/* "never" | "running" | "succeeded" | "failed", and its summary. */
const char *custom_refresh_state(const struct custom *c);
const char *custom_refresh_message(const struct custom *c);
/* The voicemail backup option CustomData.xml set: "none" (default),
 * "config" or "full". */
const char *custom_vmpro(const struct custom *c);

/* Renders the manifest in STATE_DIR (a table, or JSON) into buf; returns
 * the length (like snprintf). For `comagent custom-files`; needs no
 * daemon. ERR_* in *e when it cannot be read (a missing one is empty). */
size_t custom_render_manifest(const char *state_dir, bool json, char *buf,
			      size_t cap, err_t *e);

#endif
