/*
 * dispatch — what the agent does with COM's messages once the link is up.
 *
 * Sends the status report when the link comes up and answers every request
 * COM makes: jobs, stream opens, and anything it does not know ("unsupported").
 * The job and stream machinery of later versions plugs in here.
 */
#ifndef COMAGENT_DISPATCH_H
#define COMAGENT_DISPATCH_H

#include "link.h"

struct conf;
struct dispatch;

struct dispatch *dispatch_new(const struct conf *c, const char *version);
void dispatch_free(struct dispatch *d);
/* The handler to give link_new(); d must outlive the link. */
struct link_handler dispatch_handler(struct dispatch *d);

#endif
