/*
 * dispatch — what the agent does with COM's messages once the link is up.
 *
 * Sends the status report and the active alarms when the link comes up,
 * every alarm raised or cleared while it is up, and answers every request
 * COM makes: jobs (run by the ops module), streams (tunnels to the stream
 * module, transfers to xfer), clearing an alarm from COM's list, and
 * anything it does not know ("unsupported").
 */
#ifndef COMAGENT_DISPATCH_H
#define COMAGENT_DISPATCH_H

#include "link.h"

struct alarms;
struct conf;
struct custom;
struct dispatch;
struct health;

struct jobs;
struct settings;
struct streams;

/* jobs: the job journal, s: the settings (CustomData.xml changes them),
 * alarms: the active alarms (COM hears their changes); all must outlive
 * d. */
struct dispatch *dispatch_new(struct lws_context *ctx, const struct conf *c,
			      struct settings *s, struct jobs *jobs,
			      struct alarms *alarms, const char *version);
/* Cancels timers; before the lws context is destroyed. */
void dispatch_shutdown(struct dispatch *d);
/* After the lws context is destroyed. */
void dispatch_free(struct dispatch *d);
const struct streams *dispatch_streams(const struct dispatch *d);
struct ops *dispatch_ops(const struct dispatch *d);
struct logs *dispatch_logs(const struct dispatch *d);
struct custom *dispatch_custom(const struct dispatch *d);
struct health *dispatch_health(const struct dispatch *d);
/* Something the status reports changed outside the modules that tell it
 * (the settings, re-read): COM gets a new status if the link is up. */
void dispatch_status_changed(struct dispatch *d);
/* The handler to give link_new(); d must outlive the link. */
struct link_handler dispatch_handler(struct dispatch *d);

#endif
