/*
 * alarm — the system's active alarms (REQUIREMENTS §9, guide ch. 4), as the
 * PBX raises and clears them through `comagent alarm` / the control socket
 * and as the agent raises its own (a certificate about to expire).
 *
 * One entry per alarm id: a repeated raise updates its type, severity and
 * text, keeps its first time, sets its last time and counts it. A clear
 * removes it. The active set is kept in STATE_DIR/alarms (state_write, so a
 * crash never leaves half a file) and survives a restart; COM hears every
 * raise and clear while the link is up and the whole set again after every
 * reconnect (PROTOCOL.md §2.7). At most ALARM_MAX are active at once.
 *
 * File format, one alarm per line, tab-separated:
 *   ID TYPE SEVERITY FIRST LAST COUNT TEXT
 * FIRST/LAST in Unix seconds. A damaged line is logged ("FILE:LINE:
 * message") and skipped; the others still load.
 */
#ifndef COMAGENT_ALARM_H
#define COMAGENT_ALARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"

#define ALARM_MAX	64	/* active alarms */
#define ALARM_ID_MAX	64	/* bytes: letters, digits, '-', '_', '.', ':' */
#define ALARM_TEXT_MAX	255	/* bytes of UTF-8, no control characters */

enum alarm_type {
	ALARM_CONFIGURATION, ALARM_TRUNK, ALARM_LINK, ALARM_SERVICE,
	ALARM_QOS, ALARM_SECURITY, ALARM__TYPES
};

enum alarm_severity {
	ALARM_CRITICAL, ALARM_MAJOR, ALARM_MINOR, ALARM_WARNING,
	ALARM__SEVERITIES
};

struct alarm {
	char id[ALARM_ID_MAX + 1];
	enum alarm_type type;
	enum alarm_severity severity;
	char text[ALARM_TEXT_MAX + 1];
	int64_t first, last;	/* Unix seconds */
	uint32_t count;		/* raises since the first, >= 1 */
};

struct alarms;

/* Told of every change to the active set (after it is persisted): the
 * alarm raised, or the one cleared (its last state). */
typedef void (*alarm_notify_fn)(void *arg, const struct alarm *a,
				bool raised);

/*
 * Loads STATE_DIR/alarms (missing: none active). A damaged file is
 * reported line by line and what is valid still loads (ERR_INVAL, *out
 * usable). *out is NULL only on ERR_NOMEM or a bad state_dir.
 */
err_t alarms_load(const char *state_dir, struct alarms **out);
void alarms_free(struct alarms *s);
void alarms_set_notify(struct alarms *s, alarm_notify_fn fn, void *arg);

/*
 * Raises (or repeats) one alarm at time now. Checks everything first:
 * ERR_INVAL with why filled for a bad id, text, type or severity;
 * ERR_LIMIT when ALARM_MAX others are active; ERR_IO when the set cannot
 * be persisted — in every case nothing changes.
 */
err_t alarms_raise(struct alarms *s, const char *id, enum alarm_type type,
		   enum alarm_severity sev, const char *text, int64_t now,
		   char *why, size_t why_cap);
/* ERR_NOTFOUND if id is not active; ERR_IO as above. */
err_t alarms_clear(struct alarms *s, const char *id, char *why,
		   size_t why_cap);

size_t alarms_count(const struct alarms *s);
/* Active alarms in the order they were first raised; NULL past the end. */
const struct alarm *alarms_at(const struct alarms *s, size_t i);
const struct alarm *alarms_find(const struct alarms *s, const char *id);
/* How many active alarms have severity sev. */
size_t alarms_count_severity(const struct alarms *s,
			     enum alarm_severity sev);

struct proto_w;
/* a's members (id, type, severity, text, first, last, count) into the
 * innermost open object of w: PROTOCOL.md §2.7, and `alarm list --json`. */
void alarm_put(struct proto_w *w, const struct alarm *a);

/* "Trunk", "major" — COM's words; NULL for an out-of-range value. */
const char *alarm_type_name(enum alarm_type t);
const char *alarm_severity_name(enum alarm_severity s);
/* Case-insensitive; -1 if unknown. */
int alarm_type_lookup(const char *name);
int alarm_severity_lookup(const char *name);

#endif
