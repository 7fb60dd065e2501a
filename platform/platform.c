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
#include <stdio.h>
#include <string.h>

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
	.control_socket = "run/comagent.sock",
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
