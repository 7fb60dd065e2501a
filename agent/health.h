/*
 * health — what COM's customer list shows of this system beyond its link
 * (REQUIREMENTS §1, guide ch. 3): the other servers of its network with
 * their own state, the outcome of the last operation, the active alarms by
 * severity, and the local reasons COM turns into its connection messages.
 *
 * Servers: every [network] server is probed with a TCP connect to its
 * [services] webmanager port every [system] probe_interval: "up" when it
 * accepts, "down" when it refuses or does not answer within the tunnel
 * connect timeout, "unknown" before the first answer (and always with
 * probe_interval 0: no probes).
 *
 * The service user: the PBX (or an operator) records its state with
 * `comagent service-user set state=... missing=...`, kept in
 * STATE_DIR/service_user:
 *   state=ok|disabled|disabled_by_admin|locked|password_expired|
 *         password_change_required
 *   missing=RIGHT[,RIGHT...]   of backup, upgrade, monitor_read,
 *                              write_password; empty: none missing
 * Reasons follow from it and from the remote-operation settings
 * (remoteupgrade off: remote_ops_not_allowed), as COM's reason codes of
 * PROTOCOL.md §2.3.
 */
#ifndef COMAGENT_HEALTH_H
#define COMAGENT_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

#include <libwebsockets.h>

#include "err.h"

struct alarms;
struct conf;
struct health;
struct jobs;
struct proto_w;
struct settings;

#define HEALTH_PROTOCOL "comagent-probe"
#define HEALTH_FILE_MAX 256	/* the service_user file */

enum health_user {
	HU_OK, HU_DISABLED, HU_DISABLED_BY_ADMIN, HU_LOCKED,
	HU_PASSWORD_EXPIRED, HU_PASSWORD_CHANGE_REQUIRED, HU__COUNT
};

enum health_right {
	HR_BACKUP, HR_UPGRADE, HR_MONITOR_READ, HR_WRITE_PASSWORD, HR__COUNT
};

/* The service user's recorded state; missing is a bit set of
 * 1 << enum health_right. */
struct health_user_state {
	enum health_user state;
	unsigned missing;
};

/* Told when something COM's status shows changed (a server's state, the
 * service user's). */
typedef void (*health_notify_fn)(void *arg);

/* ctx may be NULL (the CLI): no probes. Probes start with health_start. */
struct health *health_new(struct lws_context *ctx, const struct conf *c,
			  const struct settings *s);
void health_set_notify(struct health *h, health_notify_fn fn, void *arg);
void health_start(struct health *h);
/* Cancels timers and probes; before the lws context is destroyed. */
void health_shutdown(struct health *h);
void health_free(struct health *h);
struct lws_protocols health_protocol(void);

/* Re-reads STATE_DIR/service_user (after the CLI changed it). A damaged
 * file is logged line by line: ERR_INVAL, what was valid applies. */
err_t health_reload(struct health *h);

/*
 * The CLI's side: parses "state=WORD" / "missing=LIST" assignments over the
 * current state in *u (all or nothing; why filled on ERR_INVAL), and
 * writes the file atomically (ERR_IO).
 */
err_t health_user_load(const char *state_dir, struct health_user_state *u);
err_t health_user_assign(struct health_user_state *u, const char *assign,
			 char *why, size_t why_cap);
err_t health_user_save(const char *state_dir,
		       const struct health_user_state *u);
/* "state=locked\nmissing=upgrade\n" into buf (cap bytes, NUL-terminated);
 * the file format. */
size_t health_user_render(const struct health_user_state *u, char *buf,
			  size_t cap);

/*
 * The fields COM's status message and `comagent status --json` share:
 * "servers", "last_operation" (jobs_last_ended()), "alarms",
 * "service_user", "reasons". jobs and alarms may be NULL.
 */
void health_describe(const struct health *h, const struct jobs *jobs,
		     const struct alarms *alarms, struct proto_w *w);

/* For `comagent status` text: the i-th [network] server's name, address
 * and state word ("up", "down", "unknown"); false past the end. */
bool health_server(const struct health *h, size_t i, const char **name,
		   const char **address, const char **state);
/* The service user's state word ("ok", "locked", ...). */
const char *health_user_word(const struct health *h);
/* COM's reason codes (PROTOCOL.md §2.3) for what is wrong on this side,
 * most important first, into out; returns how many. */
#define HEALTH_REASONS_MAX 8
size_t health_reasons(const struct health *h,
		      const char *out[HEALTH_REASONS_MAX]);

#endif
