/*
 * settings — the remote-operation settings (REQUIREMENTS §2): six switches,
 * named as the tags of IP Office's CustomData.xml, that gate what COM may do
 * on this system. Kept in STATE_DIR/settings, written with state_write() so
 * a crash never leaves a half-written file.
 *
 * File format, also what settings_render() produces:
 *
 *   # a comment
 *   centralmgmt=1
 *   remoteaccess=0
 *
 * One "name=0|1" per line, blanks around the name and the value allowed,
 * whole-line '#' comments and blank lines, at most SETTINGS_FILE_MAX bytes.
 * A setting the file does not name is off: everything is off until
 * CustomData.xml or an operator turns it on (secure default).
 *
 * Each problem in the file is logged as "FILE:LINE: message":
 *   syntax error: expected name=0|1
 *   unknown setting 'NAME'
 *   duplicate setting 'NAME' (first at line N)
 *   NAME: 'VALUE' is not 0 or 1
 *   line contains a NUL byte
 * The other lines still apply; a setting with a bad line (a bad value, or
 * named twice) is off.
 */
#ifndef COMAGENT_SETTINGS_H
#define COMAGENT_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

enum setting {
	SET_CENTRALMGMT,
	SET_LOGTRANSFER,
	SET_REMOTEUPGRADE,
	SET_REMOTEACCESS,
	SET_EXTERNALREMOTEACCESS,
	SET_CENTRALCERT,
	SET__COUNT
};

/* Room for settings_render()'s text with its NUL. */
#define SETTINGS_TEXT_MAX	128
/* A bigger settings file is refused as a whole (every setting off). */
#define SETTINGS_FILE_MAX	4096

struct settings;

/*
 * Loads STATE_DIR/settings; a missing file means all off (secure default
 * until CustomData.xml or an operator turns them on). A malformed file:
 * each problem logged as "FILE:LINE: message", the valid lines still apply,
 * the bad ones count as off, returns ERR_INVAL but *out is still usable
 * (the agent must keep running: an unattended PBX without its COM link is
 * worse). The same for a file bigger than SETTINGS_FILE_MAX (all off) and,
 * as ERR_IO, one that cannot be read (all off).
 * *out is NULL only on ERR_NOMEM, or ERR_INVAL for a NULL or too long
 * state_dir.
 */
err_t settings_load(const char *state_dir, struct settings **out);
void settings_free(struct settings *s);

/* false for a NULL s or an unknown k: off is the safe answer. */
bool settings_get(const struct settings *s, enum setting k);

/*
 * Changes one and persists the whole set atomically (state_write); on
 * failure the in-memory value is unchanged. What the file held is
 * replaced, not merged: settings_reload() first to pick up another
 * writer's change.
 */
err_t settings_set(struct settings *s, enum setting k, bool on);

/* Several at once (CustomData.xml): those with present[k] set to
 * value[k], persisted in one atomic write; on failure nothing changes. */
err_t settings_apply(struct settings *s, const bool present[SET__COUNT],
		     const bool value[SET__COUNT]);

/*
 * Re-reads the file (after the CLI changed it), with settings_load()'s
 * rules and results. Only when the file cannot be read at all (ERR_IO) the
 * values stay as they were: that says nothing about what it holds.
 */
err_t settings_reload(struct settings *s);

/* "remoteaccess" — the CustomData.xml tag names; NULL for an unknown k. */
const char *settings_name(enum setting k);
/* Exact, case-sensitive as XML tags are; -1 if unknown (or NULL). */
int settings_lookup(const char *name);

/*
 * Renders "centralmgmt=1\n..." (all six, fixed order) into buf; returns
 * length. Also the file format. Like snprintf: the length is that of the
 * whole text, complete in buf (NUL-terminated) only when it is less than
 * cap; SETTINGS_TEXT_MAX always suffices.
 */
size_t settings_render(const struct settings *s, char *buf, size_t cap);

#endif
