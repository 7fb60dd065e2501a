/*
 * platform — the two profiles (IP500 V2 appliance, Linux Server Edition)
 * and the lookup by [system] profile name.
 *
 * Both read the IP Office version from ROOT/etc/ipoffice-version; they
 * differ in the defaults that suit their storage: the IP500 V2 has little
 * flash, so its log is capped at 1 MiB and kept flat under var/log, and
 * everything big (transfers, a staged release, the 128 MB log store, the
 * phone files and templates) lives on its System SD card (/system).
 */
#define _GNU_SOURCE	/* struct ucred, SO_PEERCRED */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "platform.h"

#define VERSION_FILE "etc/ipoffice-version"
#define VERSION_UNKNOWN "unknown"

/* Copies s into buf; ERR_LIMIT when it does not fit (never truncates a
 * version silently: a cut version string would mislead COM). */
static err_t copy_out(const char *s, char *buf, size_t len)
{
	size_t n = strlen(s);

	if (n >= len)
		return ERR_LIMIT;
	memcpy(buf, s, n + 1);
	return ERR_OK;
}

/* The first line of the version file, without surrounding white space;
 * "" when the file is missing, unreadable or empty. */
static void read_first_line(const char *root, char *line, size_t len)
{
	char path[4096];
	const char *sep = root[0] && root[strlen(root) - 1] == '/' ? "" : "/";
	FILE *f;
	size_t n;
	int w;

	line[0] = '\0';
	w = snprintf(path, sizeof(path), "%s%s%s", root, sep, VERSION_FILE);
	if (w < 0 || (size_t)w >= sizeof(path))
		return;
	f = fopen(path, "r");
	if (!f)
		return;
	if (!fgets(line, (int)len, f))
		line[0] = '\0';
	fclose(f);
	n = strlen(line);
	while (n > 0 && strchr(" \t\r\n", line[n - 1]))
		line[--n] = '\0';
	n = strspn(line, " \t");
	memmove(line, line + n, strlen(line + n) + 1);
}

/* Shared by both profiles: the file is where IP Office keeps it on both. */
static err_t read_version(const char *root, char *buf, size_t len)
{
	char line[256];

	if (!root || !buf || len == 0)
		return ERR_INVAL;
	read_first_line(root, line, sizeof(line));
	return copy_out(line[0] ? line : VERSION_UNKNOWN, buf, len);
}

static const struct platform_ops ip500v2 = {
	.name = "ip500v2",
	.label = "IP500 V2",
	.log_max_size = 1024ull * 1024,
	/* COM's guide: at most 128 MB of logs on the appliance's flash. */
	.logs_max_total = 128ull * 1024 * 1024,
	.logs_max_day = 0,
	.logs_file_max = 1024ull * 1024,
	.state_dir = "var/lib/comagent",
	.log_file = "var/log/comagent.log",
	.control_socket = "run/comagent.sock",
	/* The System SD card (mounted at /system) holds what the phones
	 * fetch (primary/) and everything big the agent keeps. */
	.work_dir = "system/comagent/work",
	.staging_dir = "system/comagent/staging",
	.logs_store_dir = "system/comagent/logs",
	.phone_dir = "system/primary",
	.template_dir = "system/primary/templates",
	.data_volume = "system",
	.data_volume_label = "the System SD card",
	.read_version = read_version,
};

static const struct platform_ops linux_se = {
	.name = "linux",
	.label = "Server Edition",
	.log_max_size = 10ull * 1024 * 1024,
	/* COM's guide: at most 4 GB collected per day on a server. */
	.logs_max_total = 16ull * 1024 * 1024 * 1024,
	.logs_max_day = 4ull * 1024 * 1024 * 1024,
	/* 999 files of 8 MiB hold the 4 GB of a day. */
	.logs_file_max = 8ull * 1024 * 1024,
	.state_dir = "var/lib/comagent",
	.log_file = "var/log/comagent/comagent.log",
	/* In a directory of its own: the agent runs as its own user there,
	 * and systemd makes /run/comagent for it (RuntimeDirectory=). */
	.control_socket = "run/comagent/comagent.sock",
	.work_dir = "var/lib/comagent/work",
	.staging_dir = "var/lib/comagent/staging",
	.logs_store_dir = "var/lib/comagent/logs",
	.phone_dir = "opt/ipoffice/system/primary",
	.template_dir = "opt/ipoffice/system/primary/templates",
	.data_volume = NULL,
	.read_version = read_version,
};

static const struct platform_ops *const profiles[] = { &ip500v2, &linux_se };

const struct platform_ops *platform_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++)
		if (strcmp(profiles[i]->name, name) == 0)
			return profiles[i];
	return NULL;
}

/* Whether /proc/PID/status lists gid among the process's groups. Read at
 * connect time: procfs answers from memory, never blocks on a disk. */
static bool in_group(pid_t pid, gid_t gid)
{
	char path[64], line[1024];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *p = line + 7, *end;

		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		for (;;) {
			unsigned long g = strtoul(p, &end, 10);

			if (end == p)
				break;
			if (g == (unsigned long)gid) {
				found = true;
				break;
			}
			p = end;
		}
		break;
	}
	fclose(f);
	return found;
}

bool platform_peer_allowed(int fd, char *who, size_t cap)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 ||
	    len != sizeof(cr)) {
		snprintf(who, cap, "unknown peer");
		return false;
	}
	snprintf(who, cap, "uid %u pid %d", (unsigned)cr.uid, (int)cr.pid);
	return cr.uid == 0 || cr.uid == geteuid() || cr.gid == getegid() ||
	       in_group(cr.pid, getegid());
}
