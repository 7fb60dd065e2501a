/*
 * status — what `comagent status` shows: the link's state in COM's words and
 * the system identity, as text for people or JSON for scripts.
 */
#ifndef COMAGENT_STATUS_H
#define COMAGENT_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct conf;
struct link;
struct logs;
struct settings;
struct streams;

struct custom;

struct status_src {
	const struct conf *conf;
	const struct link *link;
	const struct streams *streams;
	const struct settings *settings;
	const char *version;
	const char *operation;		/* "idle" or the op in progress */
	time_t next_auto_backup;	/* 0: none planned */
	const struct logs *logs;	/* the syslog store; may be NULL */
	const struct custom *custom;	/* custom files; may be NULL */
};

/* Renders into buf (cap bytes, always NUL-terminated); returns the length. */
size_t status_render(const struct status_src *src, bool json, char *buf,
		     size_t cap);

struct jobs;
/* The job journal, newest first, for `comagent jobs`; same contract. */
size_t status_render_jobs(const struct jobs *j, bool json, char *buf,
			  size_t cap);

#endif
