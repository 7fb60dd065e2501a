/*
 * platform — what differs between an IP500 V2 appliance and a Linux
 * (Server Edition) server.
 *
 * One table of values and functions per profile, chosen by [system] profile.
 * Paths are relative to the configured root so that tests run both profiles
 * on one Linux host in a temp directory.
 */
#ifndef COMAGENT_PLATFORM_H
#define COMAGENT_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../agent/err.h"

struct platform_ops {
	const char *name;		/* config value: "ip500v2" | "linux" */
	const char *label;		/* shown to people: "IP500 V2" ... */
	/* Defaults for config keys the operator did not set. */
	uint64_t log_max_size;		/* bytes */
	/* The PBX's log store ([logs]): all files together; per local day
	 * (0: no daily cap). */
	uint64_t logs_max_total, logs_max_day;
	/* A store file is closed (and compressed, which holds the loop for
	 * a moment) at this size; at most 999 a day. */
	uint64_t logs_file_max;
	const char *state_dir;		/* relative to root */
	const char *log_file;		/* relative to root */
	const char *control_socket;	/* relative to root */
	/* Bulk data, relative to root: transfers in progress, a staged
	 * release, the log store; the custom phone files and templates. */
	const char *work_dir, *staging_dir, *logs_store_dir;
	const char *phone_dir, *template_dir;
	/* Where bulk data must live, relative to root (the IP500 V2's SD
	 * card: its flash is too small), or NULL for anywhere. */
	const char *data_volume;
	const char *data_volume_label;
	/* Reads the IP Office software version into buf (NUL-terminated). */
	err_t (*read_version)(const char *root, char *buf, size_t len);
};

/* NULL when no profile has that name. */
const struct platform_ops *platform_find(const char *name);

/* Whether the process at the other end of the local stream socket fd may
 * use the agent's control socket: root, the agent's own user, or a member
 * (primary or supplementary group) of the agent's group. who gets "uid U
 * pid P" for the log either way. Fails closed when the kernel cannot say. */
bool platform_peer_allowed(int fd, char *who, size_t cap);

#endif
