/*
 * status — what `comagent status` shows: the link's state in COM's words and
 * the system identity, as text for people or JSON for scripts.
 */
#ifndef COMAGENT_STATUS_H
#define COMAGENT_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct alarms;
struct cert_info;
struct conf;
struct health;
struct jobs;
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
	const struct health *health;	/* servers, service user; NULL */
	const struct jobs *jobs;	/* the last operation; may be NULL */
	const struct alarms *alarms;	/* may be NULL */
	/* The system certificate the agent installed (ops_cert_info());
	 * NULL: none recorded. */
	const struct cert_info *cert;
};

/* Renders into buf (cap bytes, always NUL-terminated); returns the length. */
size_t status_render(const struct status_src *src, bool json, char *buf,
		     size_t cap);

struct jobs;
/* The job journal, newest first, for `comagent jobs`; same contract. */
size_t status_render_jobs(const struct jobs *j, bool json, char *buf,
			  size_t cap);

/* The active alarms, in the order first raised, for `comagent alarm list`;
 * same contract. */
size_t status_render_alarms(const struct alarms *al, bool json, char *buf,
			    size_t cap);

#endif
