/*
 * hook — run a platform hook inside the event loop (see hook.h).
 *
 * Life of a hook: hook_start() checks the executable, makes two pipes,
 * hands their read ends to lws as raw file descriptors, forks and execs.
 * The loop then reads stdout and stderr line by line into fixed buffers
 * (a line is cut at HOOK_LINE_MAX, the rest of it dropped, so a hook that
 * writes megabytes costs no memory). When both pipes are at EOF the child
 * is reaped and done() says how it ended.
 *
 * Why EOF-then-waitpid rather than SIGCHLD: a SIGCHLD handler is process
 * wide (it would have to be shared with every other module that forks and
 * with main's own signal handling) and still needs a self-pipe to get into
 * the loop. A hook nearly always exits right after its stdout and stderr
 * close, so the first waitpid(WNOHANG) at EOF finds it. Only a child that
 * closes its descriptors and runs on needs more: for that one a timer
 * retries waitpid starting at 10 ms (a hook that exits a moment later is
 * seen at once) and doubling up to 1 s (one that runs on for minutes costs
 * one wake-up a second, not a busy loop).
 *
 * Through a runner (hook_start_runner): the agent does not fork at all. It
 * connects to the root-side runner's socket (hookrun.c, started by systemd
 * per connection), sends the hook's name, arguments and environment with
 * its own /dev/null and pipe write ends attached (SCM_RIGHTS), and reads
 * how the hook ended from the same socket. The pipes work exactly as for a
 * child of ours; signals become "term"/"kill" requests on the socket.
 */
/* pipe2() is a GNU extension; it makes the pipes close-on-exec atomically. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hook.h"
#include "hookrun.h"
#include "log.h"

#define LOG_MODULE "hook"

#define HOOK_KILL_GRACE_US (5 * LWS_USEC_PER_SEC)
#define HOOK_REAP_FIRST_US (LWS_USEC_PER_SEC / 100)
#define HOOK_REAP_MAX_US LWS_USEC_PER_SEC
/* Read at most this much per wake-up, then let the loop serve others: a
 * chatty hook must not starve the link to COM. */
#define HOOK_READ_CHUNK 4096
#define HOOK_READS_PER_WAKE 16
/* Lines logged per stream and run: a hook printing a million lines must
 * not rotate everything else out of the capped log. */
#define HOOK_LOG_LINES_MAX 200
#define HOOK_NAME_MAX 64
/* done() status when the child was reaped by someone else (SIGCHLD
 * ignored): we cannot know how it ended, so it counts as a failure. */
#define HOOK_STATUS_LOST 255
/* Without close_range() the child closes descriptors one by one up to the
 * descriptor limit; above this nothing of ours is expected. */
#define HOOK_CLOSE_FALLBACK_MAX 65536
/* How long connecting to and writing the request to the runner may take. */
#define HOOK_RUNNER_TIMEOUT_S 5

enum { HOOK_OUT = 0, HOOK_ERR = 1, HOOK_CTL = 2 };
/* The runner's answer is one short line. */
#define HOOK_CTL_LINE_MAX 160
enum kill_stage { KILL_NONE, KILL_TERM_SENT, KILL_KILL_SENT };

struct linebuf {
	char buf[HOOK_LINE_MAX + 1];
	size_t len;		/* at HOOK_LINE_MAX the rest is dropped */
	unsigned logged;	/* lines logged so far (capped) */
};

struct hook {
	struct lws_context *ctx;
	struct hook_cbs cbs;
	void *arg;
	pid_t pid;		/* > 0 until reaped */
	struct lws *wsi[3];	/* stdout, stderr, runner; NULL once closed */
	bool remote;		/* runs through the runner, until finished */
	bool remote_done;	/* the runner said how it ended */
	int remote_status;	/* that: exit code or -signal */
	char ctl_line[HOOK_CTL_LINE_MAX + 1];
	size_t ctl_len;
	struct linebuf line[2];
	char last_err[HOOK_LINE_MAX + 1];
	char name[HOOK_NAME_MAX];
	unsigned timeout_s;
	enum kill_stage stage;
	bool timed_out;
	bool cancelled;
	bool in_progress_cb;	/* hook_free() now must wait for the return */
	bool free_pending;
	lws_sorted_usec_list_t sul_kill;
	lws_sorted_usec_list_t sul_reap;
	lws_usec_t reap_delay;
};

/* ---- text --------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

/* Lines go to the log and, as progress text or failure reason, into JSON
 * for COM: control characters and broken UTF-8 (a line cut in the middle
 * of a character, a Latin-1 message) become '?'. Tabs become spaces. */
static void sanitize(char *s, size_t n)
{
	unsigned char *p = (unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		size_t k = utf8_len(p + i, n - i);

		if (k == 0) {
			p[i++] = '?';
		} else if (k == 1 && (p[i] < 0x20 || p[i] == 0x7f)) {
			p[i] = p[i] == '\t' ? ' ' : '?';
			i++;
		} else {
			i += k;
		}
	}
}

/* "progress N" or "progress N text", N 0..100 in decimal. */
static bool parse_progress(const char *s, int *pct, const char **text)
{
	int v = 0, digits = 0;

	if (strncmp(s, "progress ", 9) != 0)
		return false;
	s += 9;
	while (*s == ' ')
		s++;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (++digits > 3)
			return false;
		v = v * 10 + (*s - '0');
	}
	if (digits == 0 || v > 100 || (*s != '\0' && *s != ' '))
		return false;
	while (*s == ' ')
		s++;
	*pct = v;
	*text = s;
	return true;
}

/* ---- lines --------------------------------------------------------------- */

static bool log_allowed(struct hook *h, int which)
{
	struct linebuf *lb = &h->line[which];

	if (lb->logged < HOOK_LOG_LINES_MAX) {
		lb->logged++;
		return true;
	}
	if (lb->logged == HOOK_LOG_LINES_MAX) {
		lb->logged++;
		LOGI("%s: more than %d lines on %s; the rest is not logged",
		     h->name, HOOK_LOG_LINES_MAX,
		     which == HOOK_OUT ? "stdout" : "stderr");
	}
	return false;
}

static void on_stdout_line(struct hook *h, const char *s)
{
	const char *text;
	int pct;

	if (!parse_progress(s, &pct, &text)) {
		if (log_allowed(h, HOOK_OUT))
			LOGD("%s: %s", h->name, s);
		return;
	}
	if (!h->cbs.progress)
		return;
	h->in_progress_cb = true;
	h->cbs.progress(h->arg, pct, text);
	h->in_progress_cb = false;
}

static void on_stderr_line(struct hook *h, const char *s)
{
	if (!*s)
		return;
	if (log_allowed(h, HOOK_ERR))
		LOGI("%s: %s", h->name, s);
	memcpy(h->last_err, s, strlen(s) + 1);
}

/* Ends the line collected in line[which] and acts on it. */
static void end_line(struct hook *h, int which)
{
	struct linebuf *lb = &h->line[which];
	size_t n = lb->len;

	while (n > 0 && (lb->buf[n - 1] == ' ' || lb->buf[n - 1] == '\t' ||
			 lb->buf[n - 1] == '\r'))
		n--;
	sanitize(lb->buf, n);
	lb->buf[n] = '\0';
	lb->len = 0;
	if (which == HOOK_OUT)
		on_stdout_line(h, lb->buf);
	else
		on_stderr_line(h, lb->buf);
}

/* Splits what was read into lines; stops early when progress() freed us. */
static void feed(struct hook *h, int which, const char *p, size_t n)
{
	struct linebuf *lb = &h->line[which];

	while (n > 0 && !h->free_pending) {
		const char *nl = memchr(p, '\n', n);
		size_t seg = nl ? (size_t)(nl - p) : n;
		size_t room = HOOK_LINE_MAX - lb->len;
		size_t take = seg < room ? seg : room;

		/* What does not fit is the part of the line that is dropped. */
		memcpy(lb->buf + lb->len, p, take);
		lb->len += take;
		if (!nl)
			return;
		end_line(h, which);
		p = nl + 1;
		n -= seg + 1;
	}
}

/* ---- the child --------------------------------------------------------- */

/* A request to the runner; it is a few bytes on a socket nobody else
 * writes to, so the buffer always has room. */
static void tell_runner(struct hook *h, const char *req)
{
	int fd = h->wsi[HOOK_CTL] ? lws_get_socket_fd(h->wsi[HOOK_CTL]) : -1;

	if (fd >= 0 && send(fd, req, strlen(req), MSG_NOSIGNAL) < 0)
		LOGE("%s: telling the hook runner \"%.4s\": %s", h->name, req,
		     strerror(errno));
}

static void signal_group(struct hook *h, int sig)
{
	if (h->remote) {
		tell_runner(h, sig == SIGKILL ? "kill\n" : "term\n");
		return;
	}
	/* While the child is unreaped its pid is still its group's id (a
	 * zombie keeps it), so this cannot hit a recycled group. */
	if (h->pid > 0 && kill(-h->pid, sig) != 0 && errno != ESRCH)
		LOGE("%s: kill(-%d, %d): %s", h->name, (int)h->pid, sig,
		     strerror(errno));
}

static void kill_cb(lws_sorted_usec_list_t *sul)
{
	struct hook *h = lws_container_of(sul, struct hook, sul_kill);

	if (h->stage == KILL_NONE) {
		h->timed_out = true;
		LOGE("%s: still running after %u s; terminating it",
		     h->name, h->timeout_s);
		signal_group(h, SIGTERM);
		h->stage = KILL_TERM_SENT;
		lws_sul_schedule(h->ctx, 0, &h->sul_kill, kill_cb,
				 HOOK_KILL_GRACE_US);
	} else if (h->stage == KILL_TERM_SENT) {
		LOGE("%s: ignored SIGTERM for %lld s; killing it", h->name,
		     (long long)(HOOK_KILL_GRACE_US / LWS_USEC_PER_SEC));
		signal_group(h, SIGKILL);
		h->stage = KILL_KILL_SENT;
	}
}

/* done() with how the child ended (its exit code or -signal, or lost).
 * Nothing touches h after done(): it may have freed it. */
static void finish(struct hook *h, int status, bool lost)
{
	char why[HOOK_LINE_MAX + 64];
	bool via_runner = h->remote;

	lws_sul_cancel(&h->sul_kill);
	lws_sul_cancel(&h->sul_reap);
	h->pid = -1;
	h->remote = false;
	if (lost)
		status = HOOK_STATUS_LOST;

	if (status == 0)
		why[0] = '\0';
	else if (h->timed_out)
		snprintf(why, sizeof(why), "killed after %u s (timeout)",
			 h->timeout_s);
	else if (h->cancelled)
		snprintf(why, sizeof(why), "cancelled");
	else if (h->last_err[0])
		snprintf(why, sizeof(why), "%s", h->last_err);
	else if (lost && via_runner)
		snprintf(why, sizeof(why), "the hook runner went away, "
			 "outcome unknown");
	else if (lost)
		snprintf(why, sizeof(why), "hook process lost (reaped "
			 "elsewhere), outcome unknown");
	else if (status < 0)
		snprintf(why, sizeof(why), "killed by signal %d", -status);
	else
		snprintf(why, sizeof(why), "exit status %d", status);

	if (status == 0)
		LOGI("%s: succeeded", h->name);
	else
		LOGI("%s: failed (%d): %s", h->name, status, why);
	h->cbs.done(h->arg, status, why);
}

static void try_reap(struct hook *h);

static void reap_cb(lws_sorted_usec_list_t *sul)
{
	try_reap(lws_container_of(sul, struct hook, sul_reap));
}

static void try_reap(struct hook *h)
{
	int wstatus = 0;
	pid_t r;

	do
		r = waitpid(h->pid, &wstatus, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == h->pid) {
		finish(h, WIFEXITED(wstatus) ? WEXITSTATUS(wstatus)
					     : -WTERMSIG(wstatus), false);
		return;
	}
	if (r < 0) {
		LOGE("%s: waitpid(%d): %s", h->name, (int)h->pid,
		     strerror(errno));
		finish(h, 0, true);
		return;
	}
	/* Closed its output but runs on: see the top of the file. */
	h->reap_delay = h->reap_delay ? h->reap_delay * 2 : HOOK_REAP_FIRST_US;
	if (h->reap_delay > HOOK_REAP_MAX_US)
		h->reap_delay = HOOK_REAP_MAX_US;
	lws_sul_schedule(h->ctx, 0, &h->sul_reap, reap_cb, h->reap_delay);
}

/* Blocks, but only just after SIGKILL, which a process cannot ignore. A
 * runner is told to kill; it also does when the socket closes. */
static void kill_and_reap(struct hook *h)
{
	if (h->remote) {
		tell_runner(h, "kill\n");
		h->remote = false;
		return;
	}
	if (h->pid <= 0)
		return;
	signal_group(h, SIGKILL);
	while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
		;
	h->pid = -1;
}

/* ---- lws side ------------------------------------------------------------ */

static void release(struct hook *h)
{
	lws_sul_cancel(&h->sul_kill);
	lws_sul_cancel(&h->sul_reap);
	free(h);
}

static void drop_wsi(struct hook *h, int which);

static int which_of(const struct hook *h, const struct lws *wsi)
{
	return wsi == h->wsi[HOOK_OUT] ? HOOK_OUT :
	       wsi == h->wsi[HOOK_ERR] ? HOOK_ERR :
	       wsi == h->wsi[HOOK_CTL] ? HOOK_CTL : -1;
}

/* The runner's one line: "exit N", "signal N" or "error TEXT" (it refused
 * the request). Anything else is the runner's fault: outcome unknown. */
static void runner_said(struct hook *h)
{
	char *line = h->ctl_line, *end;
	long v;

	h->ctl_line[h->ctl_len] = '\0';
	if (!strncmp(line, "error ", 6)) {
		sanitize(line + 6, strlen(line + 6));
		snprintf(h->last_err, sizeof(h->last_err), "hook runner: %s",
			 line + 6);
		h->remote_status = 126;	/* the shell's "cannot execute" */
		h->remote_done = true;
		return;
	}
	if (!strncmp(line, "exit ", 5) || !strncmp(line, "signal ", 7)) {
		const char *num = line[0] == 'e' ? line + 5 : line + 7;

		errno = 0;
		v = strtol(num, &end, 10);
		if (!errno && end != num && !*end && v >= 0 && v <= 255) {
			h->remote_status = line[0] == 'e' ? (int)v : -(int)v;
			h->remote_done = true;
			return;
		}
	}
	sanitize(line, strlen(line));
	LOGE("%s: the hook runner said \"%s\"", h->name, line);
}

/* Both pipes are at EOF: for a runner's hook, done once the runner said
 * how it ended or is gone. */
static void pipes_closed(struct hook *h)
{
	if (!h->remote) {
		try_reap(h);
		return;
	}
	if (h->remote_done) {
		drop_wsi(h, HOOK_CTL);
		finish(h, h->remote_status, false);
	} else if (!h->wsi[HOOK_CTL]) {
		finish(h, 0, true);
	}
}

static int on_ctl_rx(struct hook *h, struct lws *wsi, int fd)
{
	char buf[64];
	ssize_t n;

	do
		n = read(fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n <= 0)
		return -1;
	for (ssize_t i = 0; i < n && !h->remote_done; i++) {
		if (buf[i] == '\n') {
			runner_said(h);
			h->ctl_len = 0;
		} else if (h->ctl_len < HOOK_CTL_LINE_MAX) {
			h->ctl_line[h->ctl_len++] = buf[i];
		}
	}
	if (h->remote_done && !h->wsi[HOOK_OUT] && !h->wsi[HOOK_ERR]) {
		/* lws closes it on our -1; done() may free h before that. */
		lws_set_opaque_user_data(wsi, NULL);
		h->wsi[HOOK_CTL] = NULL;
		finish(h, h->remote_status, false);
		return -1;
	}
	return 0;
}

static int on_rx(struct hook *h, struct lws *wsi)
{
	int which = which_of(h, wsi);
	int fd = lws_get_socket_fd(wsi);
	char buf[HOOK_READ_CHUNK];

	if (which < 0)
		return -1;
	if (which == HOOK_CTL)
		return on_ctl_rx(h, wsi, fd);
	for (int i = 0; i < HOOK_READS_PER_WAKE; i++) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			LOGE("%s: reading its %s: %s", h->name,
			     which == HOOK_OUT ? "stdout" : "stderr",
			     strerror(errno));
		if (n <= 0)
			return -1;	/* EOF: lws closes, then on_close */
		feed(h, which, buf, (size_t)n);
		if (h->free_pending) {
			release(h);
			return -1;
		}
	}
	return 0;
}

static void on_close(struct hook *h, struct lws *wsi)
{
	int which = which_of(h, wsi);

	if (which < 0)
		return;
	h->wsi[which] = NULL;
	if (which == HOOK_CTL) {
		/* The runner closed without a word: done if the pipes are. */
		if (!h->remote_done && !h->wsi[HOOK_OUT] && !h->wsi[HOOK_ERR] &&
		    h->remote)
			finish(h, 0, true);
		return;
	}
	/* A last line without a newline still counts. */
	if (h->line[which].len)
		end_line(h, which);
	if (h->free_pending) {
		release(h);
		return;
	}
	if (!h->wsi[HOOK_OUT] && !h->wsi[HOOK_ERR])
		pipes_closed(h);
}

static int hook_lws_callback(struct lws *wsi, enum lws_callback_reasons reason,
			     void *user, void *in, size_t len)
{
	struct hook *h = lws_get_opaque_user_data(wsi);

	(void)user;
	(void)in;
	(void)len;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		return h ? on_rx(h, wsi) : -1;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		if (h)
			on_close(h, wsi);
		return 0;
	default:
		return 0;
	}
}

struct lws_protocols hook_protocol(void)
{
	struct lws_protocols p = {
		.name = HOOK_PROTOCOL,
		.callback = hook_lws_callback,
	};
	return p;
}

/* Closes one of our pipe wsis from outside its own callback; lws closes
 * the fd. */
static void drop_wsi(struct hook *h, int which)
{
	struct lws *wsi = h->wsi[which];

	if (!wsi)
		return;
	h->wsi[which] = NULL;
	lws_set_opaque_user_data(wsi, NULL);
	lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

void hook_cancel(struct hook *h)
{
	if (!h || (!h->remote && h->pid <= 0) || h->stage != KILL_NONE)
		return;
	LOGI("%s: cancelled", h->name);
	h->cancelled = true;
	signal_group(h, SIGTERM);
	h->stage = KILL_TERM_SENT;
	lws_sul_schedule(h->ctx, 0, &h->sul_kill, kill_cb, HOOK_KILL_GRACE_US);
}

void hook_free(struct hook *h)
{
	if (!h)
		return;
	kill_and_reap(h);
	if (h->in_progress_cb) {
		/* The wsi being served cannot be closed under lws's feet: the
		 * read loop frees us when progress() returns. */
		if (h->wsi[HOOK_OUT])
			lws_set_opaque_user_data(h->wsi[HOOK_OUT], NULL);
		drop_wsi(h, HOOK_ERR);
		drop_wsi(h, HOOK_CTL);
		h->free_pending = true;
		return;
	}
	drop_wsi(h, HOOK_OUT);
	drop_wsi(h, HOOK_ERR);
	drop_wsi(h, HOOK_CTL);
	release(h);
}

/* ---- starting ------------------------------------------------------------ */

static void put(char *buf, size_t cap, size_t *n, const char *s)
{
	while (*s && *n + 1 < cap)
		buf[(*n)++] = *s++;
}

/* strerror() may allocate (translations); after fork only this is safe. */
static const char *errno_text(int e)
{
	switch (e) {
	case ENOENT: return "No such file or directory";
	case EACCES: return "Permission denied";
	case ENOEXEC: return "Exec format error";
	case E2BIG: return "Argument list too long";
	case ENOMEM: return "Cannot allocate memory";
	case ETXTBSY: return "Text file busy";
	case ELOOP: return "Too many levels of symbolic links";
	default: return "exec failed";
	}
}

/* glibc refuses sigaction() on the signals it reserves for itself (32 and
 * 33), yet they can arrive ignored (GNU make starts its children so) and
 * would stay ignored in the hook; the kernel call resets them. An
 * all-zero kernel sigaction is SIG_DFL with no flags and an empty mask on
 * every architecture. */
static void reset_reserved_signal(int sig)
{
#ifdef SYS_rt_sigaction
	unsigned long ksa[8] = { 0 };

	(void)syscall(SYS_rt_sigaction, sig, ksa, NULL, (size_t)(_NSIG / 8));
#else
	(void)sig;
#endif
}

void hook_child_exec(const char *path, char *const argv[],
		     char *const envp[], int devnull, int out_w, int err_w,
		     int fd_limit)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	char msg[HOOK_LINE_MAX];
	sigset_t none;
	size_t n = 0;

	setpgid(0, 0);
	/* Ignored signals survive exec: the agent ignores SIGPIPE, and on the
	 * way out SIGTERM and SIGINT; a hook gets the defaults. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP &&
		    sigaction(sig, &dfl, NULL) != 0)
			reset_reserved_signal(sig);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	/* All three are above 2 (hook_start sees to it), so no dup2 here
	 * overwrites a source of a later one. dup2 clears close-on-exec. */
	if (dup2(devnull, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
		_exit(127);
	/* Every descriptor the agent creates is close-on-exec; this catches
	 * any a library opened without it (lws, mbedTLS, libc internals). */
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
#endif
		for (int fd = 3; fd < fd_limit; fd++)
			(void)close(fd);
	if (chdir("/") != 0)
		_exit(127);
	execve(path, argv, envp);
	put(msg, sizeof(msg), &n, "cannot execute ");
	put(msg, sizeof(msg), &n, path);
	put(msg, sizeof(msg), &n, ": ");
	put(msg, sizeof(msg), &n, errno_text(errno));
	msg[n++] = '\n';
	(void)!write(2, msg, n);
	_exit(127);
}

static bool env_has(char *const env[], const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; env && env[i]; i++)
		if (strncmp(env[i], name, len) == 0 && env[i][len] == '=')
			return true;
	return false;
}

err_t hook_build_env(const char *name, char *const env[], char ***out)
{
	static char def_path[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
	static char def_lang[] = "LANG=C";
	size_t n = 0, k = 0;
	char **e;

	for (; env && env[n]; n++) {
		const char *eq = strchr(env[n], '=');

		if (!eq || eq == env[n]) {
			LOGE("%s: environment entry \"%s\" is not NAME=VALUE",
			     name, env[n]);
			return ERR_INVAL;
		}
	}
	e = calloc(n + 3, sizeof(*e));
	if (!e) {
		LOGE("%s: out of memory", name);
		return ERR_NOMEM;
	}
	for (size_t i = 0; i < n; i++)
		e[k++] = env[i];
	if (!env_has(env, "PATH"))
		e[k++] = def_path;
	if (!env_has(env, "LANG"))
		e[k++] = def_lang;
	*out = e;
	return ERR_OK;
}

/* Moves fd above stdin/stdout/stderr (an agent started with those closed
 * gets them back from open/pipe), keeping close-on-exec. */
static int above_stdio(int fd)
{
	int nfd, saved;

	if (fd < 0 || fd > 2)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	saved = errno;
	close(fd);
	errno = saved;
	return nfd;
}

static err_t check_executable(const char *path)
{
	struct stat st;
	int e = 0;

	if (stat(path, &st) != 0)
		e = errno;
	else if (S_ISDIR(st.st_mode))
		e = EISDIR;
	else if (!S_ISREG(st.st_mode))
		e = EACCES;	/* what execve would say */
	else if (access(path, X_OK) != 0)
		e = errno;
	if (e) {
		LOGE("cannot run hook %s: %s", path, strerror(e));
		return ERR_NOTFOUND;
	}
	return ERR_OK;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Pipes for stdout and stderr (read ends non-blocking; the write ends
 * stay blocking, a hook writing to a full pipe just waits) and
 * /dev/null for stdin, all close-on-exec and above 2. */
static err_t open_fds(const struct hook *h, int out[2], int err[2],
		      int *devnull)
{
	*devnull = above_stdio(open("/dev/null", O_RDONLY | O_CLOEXEC));
	if (*devnull < 0) {
		LOGE("%s: /dev/null: %s", h->name, strerror(errno));
		return ERR_IO;
	}
	if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
		LOGE("%s: pipe: %s", h->name, strerror(errno));
		return ERR_IO;
	}
	for (int i = 0; i < 2; i++) {
		out[i] = above_stdio(out[i]);
		err[i] = above_stdio(err[i]);
		if (out[i] < 0 || err[i] < 0) {
			LOGE("%s: fcntl: %s", h->name, strerror(errno));
			return ERR_IO;
		}
	}
	if (fcntl(out[0], F_SETFL, O_NONBLOCK) != 0 ||
	    fcntl(err[0], F_SETFL, O_NONBLOCK) != 0) {
		LOGE("%s: fcntl: %s", h->name, strerror(errno));
		return ERR_IO;
	}
	return ERR_OK;
}

/* lws takes the fd from here on and closes it with the wsi. If adoption
 * fails after lws took the fd (it may keep a half-adopted wsi that it
 * closes with the vhost), closing it ourselves could later close a reused
 * number; the protocol check in hook_start rules out the one failure a
 * configuration could cause, the rest (out of memory or descriptors) leak
 * at most this fd. */
static err_t adopt(struct hook *h, struct lws_vhost *vh, int which, int *fd)
{
	lws_adopt_desc_t info = {
		.vh = vh,
		.type = LWS_ADOPT_RAW_FILE_DESC,
		.fd = { .filefd = *fd },
		.vh_prot_name = HOOK_PROTOCOL,
		.opaque = h,
	};

	h->wsi[which] = lws_adopt_descriptor_vhost_via_info(&info);
	*fd = -1;
	if (!h->wsi[which]) {
		LOGE("%s: cannot watch its %s", h->name,
		     which == HOOK_OUT ? "stdout" :
		     which == HOOK_ERR ? "stderr" : "runner socket");
		return ERR_STATE;
	}
	return ERR_OK;
}

int hook_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > HOOK_CLOSE_FALLBACK_MAX)
		return HOOK_CLOSE_FALLBACK_MAX;
	return (int)rl.rlim_cur;
}

static void set_name(struct hook *h, const char *path)
{
	const char *base = strrchr(path, '/');

	base = base && base[1] ? base + 1 : path;
	snprintf(h->name, sizeof(h->name), "%s", base);
}

/* What both ways of starting share: h, with its stdout and stderr pipes
 * watched by lws; *out_w, *err_w and *devnull are for the hook. */
static err_t prepare(struct lws_context *ctx, const char *path,
		     unsigned timeout_s, const struct hook_cbs *cbs, void *arg,
		     int *out_w, int *err_w, int *devnull, struct hook **out)
{
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 };
	struct lws_vhost *vh;
	struct hook *h;
	err_t e;

	*out = NULL;
	if (!ctx || !path || !cbs || !cbs->done) {
		LOGE("hook_start: missing context, path or done callback");
		return ERR_INVAL;
	}
	vh = lws_get_vhost_by_name(ctx, "default");
	if (!vh || !lws_vhost_name_to_protocol(vh, HOOK_PROTOCOL)) {
		LOGE("cannot run hook %s: protocol %s is not on the default "
		     "vhost", path, HOOK_PROTOCOL);
		return ERR_STATE;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		LOGE("cannot run hook %s: out of memory", path);
		return ERR_NOMEM;
	}
	h->ctx = ctx;
	h->cbs = *cbs;
	h->arg = arg;
	h->pid = -1;
	h->timeout_s = timeout_s;
	set_name(h, path);
	e = open_fds(h, po, pe, devnull);
	if (e == ERR_OK)
		e = adopt(h, vh, HOOK_OUT, &po[0]);
	if (e == ERR_OK)
		e = adopt(h, vh, HOOK_ERR, &pe[0]);
	close_fd(&po[0]);
	close_fd(&pe[0]);
	*out_w = po[1];
	*err_w = pe[1];
	if (e != ERR_OK) {
		close_fd(out_w);
		close_fd(err_w);
		close_fd(devnull);
		hook_free(h);
		return e;
	}
	*out = h;
	return ERR_OK;
}

/* The hook is under way: its deadline starts. */
static void started(struct hook *h)
{
	if (h->timeout_s > 0)
		lws_sul_schedule(h->ctx, 0, &h->sul_kill, kill_cb,
				 (lws_usec_t)h->timeout_s * LWS_USEC_PER_SEC);
}

err_t hook_start(struct lws_context *ctx, const char *path,
		 char *const argv[], char *const env[], unsigned timeout_s,
		 const struct hook_cbs *cbs, void *arg, struct hook **out)
{
	char *const argv_def[] = { (char *)path, NULL };
	int out_w = -1, err_w = -1, devnull = -1;
	struct hook *h = NULL;
	char **envp = NULL;
	int limit;
	err_t e;

	*out = NULL;
	if (path) {
		e = check_executable(path);
		if (e != ERR_OK)
			return e;
	}
	e = prepare(ctx, path, timeout_s, cbs, arg, &out_w, &err_w, &devnull,
		    &h);
	if (e != ERR_OK)
		return e;
	e = hook_build_env(h->name, env, &envp);
	if (e != ERR_OK)
		goto out;

	limit = hook_fd_limit();
	h->pid = fork();
	if (h->pid == 0)
		hook_child_exec(path, argv ? argv : argv_def, envp, devnull,
				out_w, err_w, limit);
	if (h->pid < 0) {
		LOGE("cannot run hook %s: fork: %s", path, strerror(errno));
		e = ERR_IO;
		goto out;
	}
	/* Also here, so that a kill(-pid) right after we return reaches the
	 * group even if the child has not run yet; EACCES means it already
	 * exec'd, so it did this itself. */
	(void)setpgid(h->pid, h->pid);
	LOGI("%s: started (pid %d)", h->name, (int)h->pid);
	started(h);
	*out = h;
out:
	/* The child has its copies; ours would keep the pipes from EOF. */
	close_fd(&out_w);
	close_fd(&err_w);
	close_fd(&devnull);
	free(envp);
	if (e != ERR_OK)
		hook_free(h);
	return e;
}

/* ---- through the runner ------------------------------------------------- */

/* Appends "key value\n" to the request; a value that would break the line
 * format or the caps is refused. */
static err_t req_line(struct hook *h, char *buf, size_t *n, const char *key,
		      const char *value)
{
	size_t kl = strlen(key), vl = strlen(value);

	if (strchr(value, '\n') || kl + 1 + vl + 1 > HOOKRUN_LINE_MAX) {
		LOGE("%s: %s value too long or multi-line for the hook runner",
		     h->name, key);
		return ERR_INVAL;
	}
	if (*n + kl + 1 + vl + 1 > HOOKRUN_REQ_MAX) {
		LOGE("%s: request too large for the hook runner", h->name);
		return ERR_INVAL;
	}
	memcpy(buf + *n, key, kl);
	buf[*n + kl] = ' ';
	memcpy(buf + *n + kl + 1, value, vl);
	buf[*n + kl + 1 + vl] = '\n';
	*n += kl + 1 + vl + 1;
	return ERR_OK;
}

static err_t build_request(struct hook *h, const char *name,
			   char *const args[], char *const env[], char *buf,
			   size_t *n)
{
	size_t na = 0, ne = 0;
	err_t e;

	*n = 0;
	e = req_line(h, buf, n, "hook", name);
	for (; e == ERR_OK && args && args[na]; na++)
		e = req_line(h, buf, n, "arg", args[na]);
	for (; e == ERR_OK && env && env[ne]; ne++)
		e = req_line(h, buf, n, "env", env[ne]);
	if (e == ERR_OK && (na > HOOKRUN_ARGS_MAX || ne > HOOKRUN_ENV_MAX)) {
		LOGE("%s: more than %d arguments or %d environment entries "
		     "for the hook runner", h->name, HOOKRUN_ARGS_MAX,
		     HOOKRUN_ENV_MAX);
		e = ERR_INVAL;
	}
	if (e == ERR_OK && *n + 4 > HOOKRUN_REQ_MAX) {
		LOGE("%s: request too large for the hook runner", h->name);
		e = ERR_INVAL;
	}
	if (e == ERR_OK) {
		memcpy(buf + *n, "end\n", 4);
		*n += 4;
	}
	return e;
}

/* Connects to the runner and sends the request with the hook's three
 * descriptors. Blocking, with a deadline: the runner is local and systemd
 * accepts at once; a runner that does not is reported, not waited for. */
static err_t send_request(struct hook *h, const char *sock, const char *req,
			  size_t len, const int fds[3], int *out_fd)
{
	struct timeval tv = { .tv_sec = HOOK_RUNNER_TIMEOUT_S };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { .iov_base = (void *)req, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *c;
	size_t done = 0;
	int fd;

	if (strlen(sock) >= sizeof(sa.sun_path)) {
		LOGE("%s: hook runner socket path too long: %s", h->name, sock);
		return ERR_INVAL;
	}
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	fd = above_stdio(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (fd < 0) {
		LOGE("%s: socket: %s", h->name, strerror(errno));
		return ERR_IO;
	}
	/* On AF_UNIX the send timeout also bounds connect(). */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		LOGE("%s: cannot reach the hook runner at %s: %s", h->name,
		     sock, strerror(errno));
		close(fd);
		return ERR_IO;
	}
	memset(cm.buf, 0, sizeof(cm.buf));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(3 * sizeof(int));
	memcpy(CMSG_DATA(c), fds, 3 * sizeof(int));
	while (done < len) {
		ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			LOGE("%s: sending to the hook runner at %s: %s",
			     h->name, sock, w < 0 ? strerror(errno) : "EOF");
			close(fd);
			return ERR_IO;
		}
		done += (size_t)w;
		/* The descriptors went with the first bytes. */
		mh.msg_control = NULL;
		mh.msg_controllen = 0;
		iov.iov_base = (char *)req + done;
		iov.iov_len = len - done;
	}
	if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
		LOGE("%s: fcntl: %s", h->name, strerror(errno));
		close(fd);
		return ERR_IO;
	}
	*out_fd = fd;
	return ERR_OK;
}

err_t hook_start_runner(struct lws_context *ctx, const char *sock,
			const char *name, char *const args[],
			char *const env[], unsigned timeout_s,
			const struct hook_cbs *cbs, void *arg,
			struct hook **out)
{
	int fds[3] = { -1, -1, -1 }, fd = -1;
	struct hook *h = NULL;
	char *req = NULL;
	size_t len;
	err_t e;

	*out = NULL;
	if (!sock || !name) {
		LOGE("hook_start_runner: missing socket or hook name");
		return ERR_INVAL;
	}
	e = prepare(ctx, name, timeout_s, cbs, arg, &fds[1], &fds[2], &fds[0],
		    &h);
	if (e != ERR_OK)
		return e;
	req = malloc(HOOKRUN_REQ_MAX);
	if (!req) {
		LOGE("%s: out of memory", h->name);
		e = ERR_NOMEM;
		goto out;
	}
	e = build_request(h, name, args, env, req, &len);
	if (e == ERR_OK)
		e = send_request(h, sock, req, len, fds, &fd);
	if (e == ERR_OK)
		e = adopt(h, lws_get_vhost_by_name(ctx, "default"), HOOK_CTL,
			  &fd);
	if (e != ERR_OK)
		goto out;
	h->remote = true;
	LOGI("%s: started through the hook runner %s", h->name, sock);
	started(h);
	*out = h;
out:
	/* The runner has its copies (SCM_RIGHTS duplicates them). */
	for (int i = 0; i < 3; i++)
		close_fd(&fds[i]);
	close_fd(&fd);
	free(req);
	if (e != ERR_OK)
		hook_free(h);
	return e;
}
