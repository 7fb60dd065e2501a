/*
 * hookrun — the root-side hook runner (see hookrun.h for the why and the
 * request format).
 *
 * One process serves one request and then exits (systemd's Accept=yes), so
 * it keeps no state and a wedged hook ties up only its own runner. It runs
 * plain blocking code: read the request (with a deadline), check it, fork
 * the hook with the descriptors the agent sent, then wait for the hook
 * while watching the socket for "term"/"kill" or the agent going away.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hook.h"
#include "hookrun.h"
#include "log.h"

#define LOG_MODULE "hook-runner"

/* The whole request must arrive within this. */
#define HOOKRUN_READ_TIMEOUT_S 10
/* After the agent went away: SIGTERM, then SIGKILL this much later. */
#define HOOKRUN_KILL_GRACE_MS 5000
/* How often the wait looks at the hook when the socket is quiet. */
#define HOOKRUN_POLL_MS 100

static const char *const hook_names[] = {
	"backup", "restore", "transfer-check", "upgrade", "restart-phones",
	"reboot", "certificate", NULL
};

bool hookrun_name_ok(const char *name)
{
	for (size_t i = 0; hook_names[i]; i++)
		if (!strcmp(hook_names[i], name))
			return true;
	return false;
}

struct req {
	char *buf;		/* the request, lines NUL-terminated in place */
	size_t len;
	const char *name;
	char *args[HOOKRUN_ARGS_MAX + 2];	/* path first, NULL last */
	char *env[HOOKRUN_ENV_MAX + 1];
	size_t nargs, nenv;
	int fds[3];		/* stdin, stdout, stderr for the hook */
};

/* Says why the request is refused, to the agent and to the journal. */
static int refuse(int fd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int refuse(int fd, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	LOGE("refused: %s", msg);
	n = dprintf(fd, "error %s\n", msg);
	(void)n;
	return 1;
}

/* The first read carries the descriptors; the rest is plain bytes until
 * "end\n". */
static int read_request(int fd, struct req *r)
{
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	bool have_fds = false;

	while (r->len < HOOKRUN_REQ_MAX) {
		struct iovec iov = { r->buf + r->len, HOOKRUN_REQ_MAX - r->len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cm.buf,
				     .msg_controllen = sizeof(cm.buf) };
		ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return refuse(fd, "reading the request: %s",
				      errno == EAGAIN ? "timed out"
						      : strerror(errno));
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c;
		     c = CMSG_NXTHDR(&mh, c)) {
			size_t k;

			if (c->cmsg_level != SOL_SOCKET ||
			    c->cmsg_type != SCM_RIGHTS)
				continue;
			k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			if (have_fds || k != 3) {
				/* Close what came; they are not ours to use. */
				int tmp[8];

				memcpy(tmp, CMSG_DATA(c),
				       (k < 8 ? k : 8) * sizeof(int));
				for (size_t i = 0; i < k && i < 8; i++)
					close(tmp[i]);
				return refuse(fd, "expected 3 descriptors once, "
					      "got %zu", k);
			}
			memcpy(r->fds, CMSG_DATA(c), sizeof(r->fds));
			have_fds = true;
		}
		if (mh.msg_flags & MSG_CTRUNC)
			return refuse(fd, "descriptors truncated");
		if (n == 0)
			return refuse(fd, "request ended before \"end\"");
		r->len += (size_t)n;
		if (r->len >= 4 && !memcmp(r->buf + r->len - 4, "end\n", 4) &&
		    (r->len == 4 || r->buf[r->len - 5] == '\n'))
			break;
	}
	if (r->len >= HOOKRUN_REQ_MAX)
		return refuse(fd, "request over %d bytes", HOOKRUN_REQ_MAX);
	if (!have_fds)
		return refuse(fd, "no descriptors for the hook");
	return 0;
}

static bool env_name_ok(const char *e)
{
	const char *eq = strchr(e, '=');

	if (!eq || strncmp(e, "COMAGENT_", 9) || eq == e + 9)
		return false;
	for (const char *p = e + 9; p < eq; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_'))
			return false;
	return true;
}

/* Splits the request into its lines and checks each. */
static int parse_request(int fd, struct req *r)
{
	char *p = r->buf, *end = r->buf + r->len;
	bool ended = false;

	while (p < end && !ended) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *val;

		if (!nl)
			return refuse(fd, "request does not end with \"end\"");
		*nl = '\0';
		if ((size_t)(nl - p) >= HOOKRUN_LINE_MAX)
			return refuse(fd, "line over %d bytes",
				      HOOKRUN_LINE_MAX);
		if (memchr(p, '\0', (size_t)(nl - p)))
			return refuse(fd, "NUL byte in the request");
		if (!strcmp(p, "end")) {
			ended = true;
			p = nl + 1;
			continue;
		}
		val = strchr(p, ' ');
		if (!val)
			return refuse(fd, "malformed line \"%.40s\"", p);
		*val++ = '\0';
		if (!strcmp(p, "hook")) {
			if (r->name)
				return refuse(fd, "two hook names");
			if (!hookrun_name_ok(val))
				return refuse(fd, "no hook named \"%.40s\"",
					      val);
			r->name = val;
		} else if (!strcmp(p, "arg")) {
			if (r->nargs >= HOOKRUN_ARGS_MAX)
				return refuse(fd, "more than %d arguments",
					      HOOKRUN_ARGS_MAX);
			r->args[1 + r->nargs++] = val;
		} else if (!strcmp(p, "env")) {
			if (r->nenv >= HOOKRUN_ENV_MAX)
				return refuse(fd, "more than %d environment "
					      "entries", HOOKRUN_ENV_MAX);
			if (!env_name_ok(val))
				return refuse(fd, "environment entry \"%.40s\" "
					      "is not COMAGENT_NAME=VALUE",
					      val);
			r->env[r->nenv++] = val;
		} else {
			return refuse(fd, "unknown request line \"%.40s\"", p);
		}
		p = nl + 1;
	}
	if (!ended || p != end)
		return refuse(fd, "bytes after \"end\"");
	if (!r->name)
		return refuse(fd, "no hook name");
	return 0;
}

enum kind { K_DIR, K_FILE, K_PROGRAM };

/* What the runner acts on must be root's alone: a file or directory others
 * could write would let them choose what runs as root (the configuration
 * names the hooks directory). */
static int check_owned(int fd, const char *path, enum kind k)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return refuse(fd, "%s: %s", path, strerror(errno));
	if (k == K_DIR ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
		return refuse(fd, "%s is not a %s", path,
			      k == K_DIR ? "directory" : "regular file");
	if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
		return refuse(fd, "%s is not root's alone (owner %u, mode "
			      "%04o)", path, (unsigned)st.st_uid,
			      (unsigned)(st.st_mode & 07777));
	if (k == K_PROGRAM && !(st.st_mode & S_IXUSR))
		return refuse(fd, "%s is not executable", path);
	return 0;
}

static int hook_path(int fd, const struct conf *c, const char *name,
		     char *path, size_t cap)
{
	const char *dir = conf_str(c, CONF_JOBS_HOOKS_DIR);
	const char *prof = conf_str(c, CONF_SYSTEM_PROFILE);
	char sub[4096];
	int n;

	n = snprintf(sub, sizeof(sub), "%s/%s", dir, prof);
	if (n < 0 || (size_t)n >= sizeof(sub))
		return refuse(fd, "hooks_dir too long");
	n = snprintf(path, cap, "%s/%s", sub, name);
	if (n < 0 || (size_t)n >= cap)
		return refuse(fd, "hook path too long");
	if (check_owned(fd, dir, K_DIR) || check_owned(fd, sub, K_DIR) ||
	    check_owned(fd, path, K_PROGRAM))
		return 1;
	return 0;
}

/* Waits for the hook, passing on "term"/"kill"; the agent going away
 * ends the hook too. */
static int wait_hook(int fd, pid_t pid)
{
	int wstatus = 0, grace_ms = 0;
	bool agent_gone = false, killed = false;
	char buf[64];

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		pid_t w = waitpid(pid, &wstatus, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			LOGE("waitpid(%d): %s", (int)pid, strerror(errno));
			return refuse(fd, "lost the hook process");
		}
		if (agent_gone) {
			if (!killed && grace_ms <= 0) {
				(void)kill(-pid, SIGKILL);
				killed = true;
			}
			(void)poll(NULL, 0, HOOKRUN_POLL_MS);
			grace_ms -= HOOKRUN_POLL_MS;
			continue;
		}
		if (poll(&pfd, 1, HOOKRUN_POLL_MS) <= 0)
			continue;
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			LOGI("the agent went away; ending the hook");
			(void)kill(-pid, SIGTERM);
			agent_gone = true;
			grace_ms = HOOKRUN_KILL_GRACE_MS;
			continue;
		}
		/* Requests are whole words; look for them anywhere. */
		if (memmem(buf, (size_t)n, "kill", 4))
			(void)kill(-pid, SIGKILL);
		else if (memmem(buf, (size_t)n, "term", 4))
			(void)kill(-pid, SIGTERM);
	}
	if (WIFEXITED(wstatus)) {
		LOGI("hook pid %d exited with %d", (int)pid,
		     WEXITSTATUS(wstatus));
		(void)!dprintf(fd, "exit %d\n", WEXITSTATUS(wstatus));
	} else {
		LOGI("hook pid %d killed by signal %d", (int)pid,
		     WTERMSIG(wstatus));
		(void)!dprintf(fd, "signal %d\n", WTERMSIG(wstatus));
	}
	return 0;
}

int hookrun_serve(const struct conf *c, const char *config, int fd)
{
	struct timeval tv = { .tv_sec = HOOKRUN_READ_TIMEOUT_S };
	struct req r = { .fds = { -1, -1, -1 } };
	char path[4096 + 64];
	char **envp = NULL;
	int rc = 1;
	pid_t pid;

	/* A SIGPIPE from an agent that went away must not kill us before
	 * the hook is dealt with. */
	signal(SIGPIPE, SIG_IGN);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	r.buf = malloc(HOOKRUN_REQ_MAX);
	if (!r.buf) {
		rc = refuse(fd, "out of memory");
		goto out;
	}
	if (read_request(fd, &r) || parse_request(fd, &r) ||
	    check_owned(fd, config, K_FILE) ||
	    hook_path(fd, c, r.name, path, sizeof(path)))
		goto out;
	/* Wait without a deadline from here on: the hook may run for hours. */
	tv.tv_sec = 0;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	r.args[0] = path;
	r.args[1 + r.nargs] = NULL;
	r.env[r.nenv] = NULL;
	if (hook_build_env(r.name, r.env, &envp) != ERR_OK) {
		rc = refuse(fd, "cannot build the environment");
		goto out;
	}
	{
		int limit = hook_fd_limit();

		pid = fork();
		if (pid == 0)
			hook_child_exec(path, r.args, envp, r.fds[0], r.fds[1],
					r.fds[2], limit);
	}
	if (pid < 0) {
		rc = refuse(fd, "fork: %s", strerror(errno));
		goto out;
	}
	(void)setpgid(pid, pid);
	LOGI("running %s (pid %d) with %zu argument%s", path, (int)pid,
	     r.nargs, r.nargs == 1 ? "" : "s");
	for (int i = 0; i < 3; i++) {
		close(r.fds[i]);
		r.fds[i] = -1;
	}
	rc = wait_hook(fd, pid);
out:
	for (int i = 0; i < 3; i++)
		if (r.fds[i] >= 0)
			close(r.fds[i]);
	free(envp);
	free(r.buf);
	return rc;
}
