/*
 * log — the agent's own diagnostic log (see log.h).
 *
 * The file is opened O_APPEND and its size tracked; when the next line would
 * take the file past half the cap it is renamed to FILE.1 (replacing the old
 * one) and a new file is started, so FILE and FILE.1 together stay within
 * max_size. A write failure is reported once on stderr and the file is then
 * dropped: the agent keeps running without a diagnostic log rather than
 * stopping its real work.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 1024
#define LOG_PATH_MAX 4096

static struct {
	int fd;
	uint64_t size;		/* bytes in the current file */
	uint64_t half_cap;	/* rotate before passing this */
	enum log_level level;
	bool to_stderr;
	char path[LOG_PATH_MAX];
	char rotated[LOG_PATH_MAX + 2];
} g_log = { .fd = -1, .level = LOG_LVL_INFO, .to_stderr = true };

static const char *const level_names[] = { "error", "info", "debug" };

int log_level_parse(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (s && !strcmp(s, level_names[i]))
			return i;
	return -1;
}

void log_set_level(enum log_level level) { g_log.level = level; }
void log_set_stderr(bool on) { g_log.to_stderr = on; }
enum log_level log_get_level(void) { return g_log.level; }

static int open_append(const char *path, uint64_t *size)
{
	struct stat st;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0)
		return -1;
	*size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	return fd;
}

err_t log_open(const char *file, uint64_t max_size, enum log_level level,
	       bool to_stderr)
{
	log_close();
	g_log.level = level;
	g_log.to_stderr = to_stderr;
	if (!file || !*file)
		return ERR_OK;
	int n = snprintf(g_log.path, sizeof(g_log.path), "%s", file);
	if (n < 0 || (size_t)n >= sizeof(g_log.path)) {
		fprintf(stderr, "log: path too long: %s\n", file);
		return ERR_INVAL;
	}
	snprintf(g_log.rotated, sizeof(g_log.rotated), "%s.1", g_log.path);
	g_log.half_cap = max_size / 2;
	g_log.fd = open_append(g_log.path, &g_log.size);
	if (g_log.fd < 0) {
		fprintf(stderr, "log: cannot open %s: %s\n", file, strerror(errno));
		return ERR_IO;
	}
	return ERR_OK;
}

void log_close(void)
{
	if (g_log.fd >= 0)
		close(g_log.fd);
	g_log.fd = -1;
}

static void drop_file(const char *what)
{
	fprintf(stderr, "log: %s %s: %s; file logging stopped\n", what,
		g_log.path, strerror(errno));
	log_close();
}

static void write_file(char *line, size_t len)
{
	if (g_log.size + len > g_log.half_cap && g_log.size > 0) {
		close(g_log.fd);
		g_log.fd = -1;
		/* A file already over half the cap (max_size was lowered) is
		 * dropped rather than kept as .1, so the pair stays in the cap. */
		if (g_log.size > g_log.half_cap) {
			if (unlink(g_log.path) != 0) {
				drop_file("cannot remove oversized");
				return;
			}
		} else if (rename(g_log.path, g_log.rotated) != 0) {
			drop_file("cannot rotate");
			return;
		}
		g_log.fd = open_append(g_log.path, &g_log.size);
		if (g_log.fd < 0) {
			drop_file("cannot reopen");
			return;
		}
	}
	/* A line longer than half the cap is cut rather than breaking the cap. */
	if (len > g_log.half_cap && g_log.half_cap > 0) {
		len = g_log.half_cap;
		line[len - 1] = '\n';
	}
	ssize_t w = write(g_log.fd, line, len);
	if (w < 0) {
		drop_file("cannot write");
		return;
	}
	g_log.size += (uint64_t)w;
}

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if (level > g_log.level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			 level_names[level], module);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	va_end(ap);
	if (n > 0)
		len += (size_t)n < sizeof(line) - len ? (size_t)n
						      : sizeof(line) - len - 1;
	/* Strip a trailing newline the caller (or lws) put there, add ours. */
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len >= sizeof(line) - 1)
		len = sizeof(line) - 2;
	line[len++] = '\n';

	if (g_log.to_stderr)
		(void)!write(STDERR_FILENO, line, len);
	if (g_log.fd >= 0)
		write_file(line, len);
}
