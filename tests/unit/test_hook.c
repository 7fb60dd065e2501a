/*
 * test_hook — platform hooks run in a real lws loop: progress lines (good,
 * malformed, cut, flooding), the status and reason of every way a child
 * ends (exit codes, stderr, signals, timeout, cancel, exec failure), a
 * child that closes its output and runs on, hook_free at each point
 * (running, inside progress(), inside done()) with the child reaped, the
 * clean environment, descriptors and signal state the child gets; then the
 * two backup hooks of scripts/ on a temporary root.
 *
 * Test hooks are small shell scripts written into a temp dir. The loop runs
 * until done() or a deadline (clock_gettime; a timer wakes lws_service at
 * the deadline). Run from the repository root (make check-unit does) so
 * that scripts/ is found.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "hook.h"
#include "log.h"
#include "testutil.h"

#define MAX_PROGRESS 16

struct run {
	struct hook *h;
	bool done;
	bool progressed;	/* progress() was called */
	int done_calls;
	int status;
	char why[HOOK_LINE_MAX + 64];
	int n;
	int pct[MAX_PROGRESS];
	char text[MAX_PROGRESS][HOOK_LINE_MAX + 1];
	bool free_in_done;
	bool free_in_progress;
	bool cancel_in_progress;
};

static char dir[64];
static struct lws_context *ctx;
static lws_sorted_usec_list_t sul_wake;

/* ---- helpers ------------------------------------------------------------- */

static void on_progress(void *arg, int pct, const char *text)
{
	struct run *r = arg;

	assert_true(pct >= 0 && pct <= 100);
	assert_true(strlen(text) <= HOOK_LINE_MAX);
	if (r->n < MAX_PROGRESS) {
		r->pct[r->n] = pct;
		snprintf(r->text[r->n], sizeof(r->text[0]), "%s", text);
	}
	r->n++;
	r->progressed = true;
	/* The lws_service call that ran us would poll on: see serve_until. */
	lws_cancel_service(ctx);
	if (r->cancel_in_progress)
		hook_cancel(r->h);
	if (r->free_in_progress) {
		hook_free(r->h);
		r->h = NULL;
	}
}

static void on_done(void *arg, int status, const char *why)
{
	struct run *r = arg;

	r->done_calls++;
	r->done = true;
	lws_cancel_service(ctx);
	r->status = status;
	snprintf(r->why, sizeof(r->why), "%s", why);
	if (r->free_in_done) {
		hook_free(r->h);
		r->h = NULL;
	}
}

static const struct hook_cbs cbs = { on_progress, on_done };

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wake_cb(lws_sorted_usec_list_t *sul)
{
	(void)sul;
}

/* Serves the loop until *flag or max_s seconds; returns the time taken. */
static double serve_until(const bool *flag, double max_s)
{
	double t0 = now_s(), left;

	while (!*flag && (left = max_s - (now_s() - t0)) > 0) {
		/* lws_service runs due timers, then sleeps until an event or
		 * its next timer: a callback that sets *flag from a timer
		 * wakes it with lws_cancel_service(). */
		lws_sul_schedule(ctx, 0, &sul_wake, wake_cb,
				 (lws_usec_t)(left * 1e6) + 1000);
		lws_service(ctx, 0);
	}
	lws_sul_cancel(&sul_wake);
	return now_s() - t0;
}

static double serve_until_done(struct run *r, double max_s)
{
	return serve_until(&r->done, max_s);
}

static void write_file(const char *p, const char *text, mode_t mode)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* The test hook dir/name with body after a #!/bin/sh line; its path. */
static const char *script(const char *name, const char *body)
{
	static char p[128];
	char text[4096];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	snprintf(text, sizeof(text), "#!/bin/sh\n%s\n", body);
	write_file(p, text, 0755);
	return p;
}

/* dir/name in buf. TMP() gives each use its own buffer, alive for the
 * enclosing block. */
static const char *tmp_path(const char *name, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%s", dir, name);
	return buf;
}
#define TMP(name) tmp_path((name), (char[160]){ 0 }, 160)

static const char *read_text(const char *p)
{
	static char buf[8192];
	FILE *f = fopen(p, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* Starts path with the arguments a1, a2 (each may be NULL: no more) and
 * env. */
static void start(struct run *r, const char *path, char *const env[],
		  unsigned timeout_s, const char *a1, const char *a2)
{
	char *argv[] = { (char *)path, (char *)a1, (char *)a2, NULL };

	memset(r, 0, sizeof(*r));
	assert_int_equal(hook_start(ctx, path, argv, env, timeout_s, &cbs, r,
				    &r->h), ERR_OK);
	assert_non_null(r->h);
}

/* Runs a test hook with no arguments to its end. */
static void run_body(struct run *r, const char *body)
{
	start(r, script("h", body), NULL, 0, NULL, NULL);
	serve_until_done(r, 20);
	assert_true(r->done);
	assert_int_equal(r->done_calls, 1);
	hook_free(r->h);
}

static void assert_reaped(pid_t pid)
{
	errno = 0;
	assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(errno, ESRCH);
}

static void log_reset(void)
{
	log_close();
	unlink(logpath);
	log_start();
}

static int setup(void **state)
{
	static struct lws_protocols protos[2];
	struct lws_context_creation_info info;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_hook.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(logpath, sizeof(logpath), "%s.log", dir);
	log_start();
	log_set_level(LOG_LVL_DEBUG);
	lws_set_log_level(LLL_ERR, NULL);
	protos[0] = hook_protocol();
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protos;
	ctx = lws_create_context(&info);
	return ctx ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	lws_context_destroy(ctx);
	ctx = NULL;
	log_close();
	unlink(logpath);
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- progress -------------------------------------------------------------- */

static void test_progress_lines(void **state)
{
	struct run r;

	(void)state;
	run_body(&r, "echo 'progress 0 starting'\n"
		     "echo 'hello there'\n"
		     "echo 'progress 50 half way'\n"
		     "echo 'Progress 60 wrong case'\n"
		     "echo 'progress 100'\n");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.why, "");
	assert_int_equal(r.n, 3);
	assert_int_equal(r.pct[0], 0);
	assert_string_equal(r.text[0], "starting");
	assert_int_equal(r.pct[1], 50);
	assert_string_equal(r.text[1], "half way");
	assert_int_equal(r.pct[2], 100);
	assert_string_equal(r.text[2], "");
}

static void test_bad_progress_ignored(void **state)
{
	struct run r;

	(void)state;
	run_body(&r, "echo 'progress 101'\n"
		     "echo 'progress 101 too far'\n"
		     "echo 'progress x'\n"
		     "echo 'progress'\n"
		     "echo 'progress '\n"
		     "echo 'progress -1 negative'\n"
		     "echo 'progress 50% percent'\n"
		     "echo 'progress 0100 four digits'\n"
		     "echo 'progressing 5'\n"
		     "echo ' progress 5 leading space'\n"
		     "echo 'progress  42   spaced  '\n"
		     "printf 'progress 9 crlf\\r\\n'\n"
		     "printf 'progress 10 tab\\there\\001\\n'\n"
		     "printf 'progress 11 caf\\303\\251 \\377bad\\n'\n"
		     "printf 'progress 7 last, no newline'\n");
	assert_int_equal(r.status, 0);
	assert_int_equal(r.n, 5);
	assert_int_equal(r.pct[0], 42);
	assert_string_equal(r.text[0], "spaced");
	assert_int_equal(r.pct[1], 9);
	assert_string_equal(r.text[1], "crlf");
	assert_int_equal(r.pct[2], 10);
	assert_string_equal(r.text[2], "tab here?");
	assert_int_equal(r.pct[3], 11);
	assert_string_equal(r.text[3], "caf\xc3\xa9 ?bad");
	assert_int_equal(r.pct[4], 7);
	assert_string_equal(r.text[4], "last, no newline");
}

/* A line over HOOK_LINE_MAX is cut, the rest of it dropped; the next line
 * is read normally. */
static void test_long_line_cut(void **state)
{
	struct run r;

	(void)state;
	run_body(&r, "printf 'progress 50 '\n"
		     "head -c 2000 /dev/zero | tr '\\0' x\n"
		     "echo\n"
		     "echo 'progress 60 next'\n");
	assert_int_equal(r.status, 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.pct[0], 50);
	assert_int_equal(strlen(r.text[0]), HOOK_LINE_MAX - strlen("progress 50 "));
	assert_int_equal(strspn(r.text[0], "x"), strlen(r.text[0]));
	assert_string_equal(r.text[1], "next");
}

/* 5 MB without a newline on each stream: read through in bounded pieces,
 * the reason is the first HOOK_LINE_MAX bytes of the stderr "line". */
static void test_flood_without_newlines(void **state)
{
	struct run r;

	(void)state;
	run_body(&r, "head -c 5000000 /dev/zero | tr '\\0' a\n"
		     "echo\n"
		     "echo 'progress 100 end'\n"
		     "head -c 5000000 /dev/zero | tr '\\0' b >&2\n"
		     "exit 1\n");
	assert_int_equal(r.status, 1);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.pct[0], 100);
	assert_string_equal(r.text[0], "end");
	assert_int_equal(strlen(r.why), HOOK_LINE_MAX);
	assert_int_equal(strspn(r.why, "b"), HOOK_LINE_MAX);
}

/* ---- how a hook ends -------------------------------------------------------- */

static void test_exit_1_with_reason(void **state)
{
	struct run r;
	const char *log;

	(void)state;
	log_reset();
	run_body(&r, "echo 'tar: something odd' >&2\n"
		     "echo 'disk on fire' >&2\n"
		     "echo '   ' >&2\n"
		     "exit 1\n");
	assert_int_equal(r.status, 1);
	assert_string_equal(r.why, "disk on fire");
	log = logged();
	assert_non_null(strstr(log, "\ninfo  hook: h: tar: something odd\n"
				 "info  hook: h: disk on fire\n"
				 "info  hook: h: failed (1): disk on fire\n"));
}

static void test_exit_7_silent(void **state)
{
	struct run r;

	(void)state;
	run_body(&r, "echo 'progress 5 something'\nexit 7");
	assert_int_equal(r.status, 7);
	assert_string_equal(r.why, "exit status 7");
}

static void test_exit_0_ignores_stderr(void **state)
{
	struct run r;

	(void)state;
	run_body(&r, "echo 'warning: just so you know' >&2");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.why, "");
}

static void test_killed_by_signal(void **state)
{
	struct run r;

	(void)state;
	run_body(&r, "kill -KILL $$");
	assert_int_equal(r.status, -SIGKILL);
	assert_string_equal(r.why, "killed by signal 9");
	run_body(&r, "echo 'about to die' >&2\nkill -TERM $$");
	assert_int_equal(r.status, -SIGTERM);
	assert_string_equal(r.why, "about to die");
}

static void test_timeout(void **state)
{
	struct run r;
	double took;

	(void)state;
	start(&r, script("slow", "echo 'progress 1 sleeping'\nsleep 30"),
	      NULL, 1, NULL, NULL);
	took = serve_until_done(&r, 10);
	assert_true(r.done);
	assert_true(took >= 0.9 && took < 6);
	assert_true(r.status == -SIGTERM || r.status == -SIGKILL);
	assert_string_equal(r.why, "killed after 1 s (timeout)");
	assert_int_equal(r.n, 1);
	hook_free(r.h);
}

/* Closes stdout and stderr, then runs on: the exit is found by the
 * waitpid retries, not by a pipe event. */
static void test_closes_output_and_runs_on(void **state)
{
	struct run r;
	double took;

	(void)state;
	start(&r, script("h", "exec >&- 2>&-\nsleep 0.3\nexit 0"), NULL, 0,
	      NULL, NULL);
	took = serve_until_done(&r, 10);
	assert_true(r.done);
	assert_true(took >= 0.25);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.why, "");
	hook_free(r.h);
}

static void test_not_executable(void **state)
{
	struct hook *h = (struct hook *)&h;	/* not NULL, to see it reset */
	struct run r = { 0 };
	const char *p = TMP("plain");
	char *const argv[] = { (char *)p, NULL };

	(void)state;
	write_file(p, "#!/bin/sh\nexit 0\n", 0644);
	assert_int_equal(hook_start(ctx, p, argv, NULL, 0, &cbs, &r, &h),
			 ERR_NOTFOUND);
	assert_null(h);
	h = (struct hook *)&h;
	assert_int_equal(hook_start(ctx, TMP("missing"), NULL, NULL, 0,
				    &cbs, &r, &h), ERR_NOTFOUND);
	assert_null(h);
	assert_int_equal(hook_start(ctx, dir, NULL, NULL, 0, &cbs, &r, &h),
			 ERR_NOTFOUND);
	assert_null(h);
	/* Nothing was started, so nothing may call back. */
	r.done = false;
	serve_until(&r.done, 0.2);
	assert_false(r.done);
	assert_int_equal(r.n, 0);
}

/* Executable but not runnable (no #! line, not a binary): the child
 * says why on stderr and exits 127. */
static void test_exec_failure(void **state)
{
	struct run r;
	const char *p = TMP("garbage");

	(void)state;
	write_file(p, "\x7f" "ELF garbage\n", 0755);
	start(&r, p, NULL, 0, NULL, NULL);
	serve_until_done(&r, 10);
	assert_true(r.done);
	assert_int_equal(r.status, 127);
	assert_non_null(strstr(r.why, "cannot execute "));
	assert_non_null(strstr(r.why, ": Exec format error"));
	hook_free(r.h);
}

static void test_bad_env(void **state)
{
	char *env[] = { "GOOD=1", "NOEQUALS", NULL };
	struct hook *h;
	struct run r = { 0 };

	(void)state;
	assert_int_equal(hook_start(ctx, script("h", "exit 0"), NULL, env, 0,
				    &cbs, &r, &h), ERR_INVAL);
	assert_null(h);
}

/* ---- cancel and free ------------------------------------------------------ */

static void test_cancel(void **state)
{
	struct run r;

	(void)state;
	start(&r, script("h", "echo 'progress 1 up'\nsleep 30"), NULL, 0, NULL,
	      NULL);
	r.cancel_in_progress = true;
	serve_until_done(&r, 10);
	assert_true(r.done);
	assert_int_equal(r.status, -SIGTERM);
	assert_string_equal(r.why, "cancelled");
	hook_cancel(r.h);	/* after the end: nothing happens */
	hook_free(r.h);
}

/* A hook that ignores SIGTERM (so does everything it starts) gets SIGKILL
 * five seconds later. */
static void test_cancel_escalates_to_kill(void **state)
{
	struct run r;
	double took;

	(void)state;
	start(&r, script("h", "trap '' TERM\necho 'progress 1 up'\n"
			      "while :; do sleep 1; done"), NULL, 0, NULL, NULL);
	r.cancel_in_progress = true;
	took = serve_until_done(&r, 15);
	assert_true(r.done);
	assert_true(took >= 4.5 && took < 10);
	assert_int_equal(r.status, -SIGKILL);
	assert_string_equal(r.why, "cancelled");
	hook_free(r.h);
}

static pid_t pid_of(const struct run *r)
{
	char *end;
	long v = strtol(r->text[0], &end, 10);

	assert_true(v > 0 && *end == '\0');
	return (pid_t)v;
}

static void test_free_while_running(void **state)
{
	struct run r;
	bool never = false;
	pid_t pid;

	(void)state;
	start(&r, script("h", "echo \"progress 1 $$\"\nexec sleep 30"), NULL, 0,
	      NULL, NULL);
	serve_until(&r.progressed, 10);
	assert_int_equal(r.n, 1);
	pid = pid_of(&r);
	hook_free(r.h);
	assert_reaped(pid);
	serve_until(&never, 0.1);
	assert_false(r.done);
}

static void test_free_inside_progress(void **state)
{
	struct run r;
	bool never = false;

	(void)state;
	start(&r, script("h", "echo \"progress 1 $$\"\necho 'progress 2 more'\n"
			      "exec sleep 30"), NULL, 0, NULL, NULL);
	r.free_in_progress = true;
	serve_until(&r.progressed, 10);
	serve_until(&never, 0.1);
	assert_int_equal(r.n, 1);	/* nothing after the free */
	assert_false(r.done);
	assert_null(r.h);
	assert_reaped(pid_of(&r));
}

static void test_free_inside_done(void **state)
{
	struct run r;

	(void)state;
	start(&r, script("h", "echo 'progress 100 done'\nexit 2"), NULL, 0,
	      NULL, NULL);
	r.free_in_done = true;
	serve_until_done(&r, 10);
	assert_true(r.done);
	assert_null(r.h);
	assert_int_equal(r.status, 2);
	assert_int_equal(r.done_calls, 1);
}

/* ---- what the child gets ---------------------------------------------------- */

static void test_clean_environment(void **state)
{
	char *env[] = { "COMAGENT_ROOT=/x", "COMAGENT_JOB=", "A=two words",
			NULL };
	char *env_path[] = { "PATH=/bin", NULL };
	const char *out = TMP("env");
	const char *p;
	struct run r;

	(void)state;
	setenv("COMAGENT_TEST_LEAK", "1", 1);
	p = script("h", "tr '\\0' '\\n' < /proc/$$/environ | sort > \"$1\"");
	start(&r, p, env, 0, out, NULL);
	serve_until_done(&r, 10);
	assert_int_equal(r.status, 0);
	hook_free(r.h);
	assert_string_equal(read_text(out),
			    "A=two words\n"
			    "COMAGENT_JOB=\n"
			    "COMAGENT_ROOT=/x\n"
			    "LANG=C\n"
			    "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n");
	/* An entry of env replaces the default of the same name. */
	start(&r, p, env_path, 0, out, NULL);
	serve_until_done(&r, 10);
	assert_int_equal(r.status, 0);
	hook_free(r.h);
	assert_string_equal(read_text(out), "LANG=C\nPATH=/bin\n");
	unsetenv("COMAGENT_TEST_LEAK");
}

/* Descriptors the agent has open without close-on-exec still do not reach
 * the hook: it sees 0, 1, 2 and the one ls uses for the listing. stdin is
 * /dev/null, the working directory /. */
static void test_no_descriptor_leaks(void **state)
{
	const char *out = TMP("fds"), *out2 = TMP("misc");
	int sock = socket(AF_INET, SOCK_STREAM, 0);
	int fds[2];
	struct run r;

	(void)state;
	assert_true(sock >= 0);
	assert_int_equal(pipe(fds), 0);
	start(&r, script("h", "ls /proc/self/fd > \"$1\"\n"
			      "{ readlink /proc/$$/fd/0; pwd; } > \"$2\""),
	      NULL, 0, out, out2);
	serve_until_done(&r, 10);
	assert_int_equal(r.status, 0);
	hook_free(r.h);
	close(sock);
	close(fds[0]);
	close(fds[1]);
	assert_string_equal(read_text(out), "0\n1\n2\n3\n");
	assert_string_equal(read_text(out2), "/dev/null\n/\n");
}

/* Signals the agent ignores or blocks (SIGPIPE, and SIGTERM on its way
 * out) are back to their defaults in the hook. */
static void test_signal_defaults(void **state)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, old_pipe, old_term;
	sigset_t set, old_mask;
	struct run r;

	(void)state;
	sigaction(SIGPIPE, &ign, &old_pipe);
	sigaction(SIGTERM, &ign, &old_term);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, &old_mask);
	start(&r, script("h", "echo \"progress 1 $(grep SigIgn /proc/$$/status)\"\n"
			      "echo \"progress 2 $(grep SigBlk /proc/$$/status)\"\n"
			      "yes | head -n 1 >/dev/null"),
	      NULL, 0, NULL, NULL);
	sigaction(SIGPIPE, &old_pipe, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	serve_until_done(&r, 10);
	assert_int_equal(r.status, 0);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.text[0], "SigIgn: 0000000000000000");
	assert_string_equal(r.text[1], "SigBlk: 0000000000000000");
	hook_free(r.h);
}

/* ---- the backup hooks --------------------------------------------------------- */

static const char *hook_path(const char *rel)
{
	static char p[PATH_MAX];

	assert_non_null(realpath(rel, p));
	return p;
}

/* Runs a backup hook of scripts/ on root dir/root; the run in *r. */
static void run_backup(struct run *r, const char *profile, const char *out,
		       const char *element, const char *path_env)
{
	char root[80], state_dir[112], e_root[96], e_state[136],
	     e_profile[64], script_rel[64];
	char *env[] = { e_root, e_profile, e_state, "COMAGENT_JOB=j-17",
			(char *)path_env, NULL };

	snprintf(root, sizeof(root), "%s/root", dir);
	snprintf(state_dir, sizeof(state_dir), "%s/var/lib/comagent", root);
	snprintf(e_root, sizeof(e_root), "COMAGENT_ROOT=%s", root);
	snprintf(e_state, sizeof(e_state), "COMAGENT_STATE_DIR=%s", state_dir);
	snprintf(e_profile, sizeof(e_profile), "COMAGENT_PROFILE=%s", profile);
	snprintf(script_rel, sizeof(script_rel), "scripts/%s/backup", profile);
	start(r, hook_path(script_rel), env, 60, out, element);
	serve_until_done(r, 60);
	assert_true(r->done);
	hook_free(r->h);
}

static void mkdirs(const char *rel)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "mkdir -p -- '%s/root/%s'", dir, rel);
	assert_int_equal(system(cmd), 0);
}

static void put_root_file(const char *rel, const char *text)
{
	char p[160];

	snprintf(p, sizeof(p), "%s/root/%s", dir, rel);
	write_file(p, text, 0640);
}

/* tar -tzf of an archive, the names sorted, one per line. */
static const char *listing(const char *archive)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "tar -tzf '%s' | sort > '%s/listing'",
		 archive, dir);
	assert_int_equal(system(cmd), 0);
	return read_text(TMP("listing"));
}

static bool same_bytes(const char *a, const char *b)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
	return system(cmd) == 0;
}

static void assert_backup_progress(const struct run *r)
{
	assert_int_equal(r->n, 4);
	assert_int_equal(r->pct[0], 10);
	assert_int_equal(r->pct[1], 50);
	assert_int_equal(r->pct[2], 90);
	assert_int_equal(r->pct[3], 100);
	assert_string_equal(r->text[3], "done");
}

static void make_linux_root(void)
{
	mkdirs("etc/ipoffice/users");
	mkdirs("var/lib/ipoffice/voicemail");
	mkdirs("var/lib/comagent");
	put_root_file("etc/ipoffice/system.cfg", "name=pbx-hq\n");
	put_root_file("etc/ipoffice/users/u100", "ext=100\n");
	put_root_file("var/lib/ipoffice/voicemail/greeting", "hello\n");
}

static void test_backup_linux(void **state)
{
	const char *out = TMP("b1.tar.gz"), *out2 = TMP("b2.tar.gz");
	struct run r;
	struct stat st;
	char cmd[256];

	(void)state;
	make_linux_root();
	run_backup(&r, "linux", out, NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.why, "");
	assert_backup_progress(&r);
	assert_string_equal(listing(out),
			    "etc/ipoffice/\n"
			    "etc/ipoffice/system.cfg\n"
			    "etc/ipoffice/users/\n"
			    "etc/ipoffice/users/u100\n"
			    "var/lib/ipoffice/\n"
			    "var/lib/ipoffice/voicemail/\n"
			    "var/lib/ipoffice/voicemail/greeting\n");
	assert_int_equal(stat(TMP("b1.tar.gz.tmp"), &st), -1);
	/* Same files, other times: the same bytes. */
	snprintf(cmd, sizeof(cmd), "touch -d @12345 '%s/root/etc/ipoffice/"
		 "system.cfg' '%s/root/etc/ipoffice/users'", dir, dir);
	assert_int_equal(system(cmd), 0);
	run_backup(&r, "linux", out2, NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_true(same_bytes(out, out2));
	/* Again onto an existing OUT: replaced, still the same. */
	run_backup(&r, "linux", out2, NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_true(same_bytes(out, out2));
	assert_int_equal(stat(TMP("b2.tar.gz.tmp"), &st), -1);
}

static void test_backup_linux_elements(void **state)
{
	const char *out = TMP("b.tar.gz");
	struct run r;
	struct stat st;

	(void)state;
	make_linux_root();
	run_backup(&r, "linux", out, "users", NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(listing(out),
			    "etc/ipoffice/users/\n"
			    "etc/ipoffice/users/u100\n");
	run_backup(&r, "linux", TMP("c.tar.gz"), "nope", NULL);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.why, "element not found: nope");
	run_backup(&r, "linux", TMP("c.tar.gz"), "../etc", NULL);
	assert_int_equal(r.status, 2);
	assert_int_equal(stat(TMP("c.tar.gz"), &st), -1);
}

static void test_backup_linux_nothing(void **state)
{
	const char *out = TMP("b.tar.gz");
	struct run r;
	struct stat st;

	(void)state;
	mkdirs("etc");
	run_backup(&r, "linux", out, NULL, NULL);
	assert_int_equal(r.status, 1);
	assert_true(strncmp(r.why, "nothing to back up", 18) == 0);
	assert_int_equal(stat(out, &st), -1);
	assert_int_equal(stat(TMP("b.tar.gz.tmp"), &st), -1);
}

/* df is faked through PATH (an entry of env replaces the default). */
static void test_backup_no_space(void **state)
{
	const char *out = TMP("b.tar.gz");
	char path_env[128];
	struct run r;
	struct stat st;

	(void)state;
	make_linux_root();
	mkdirs("../fakebin");
	write_file(TMP("fakebin/df"),
		   "#!/bin/sh\necho 'Filesystem 1024-blocks Used Available "
		   "Capacity Mounted on'\necho 'fake 100 90 10 90% /'\n", 0755);
	snprintf(path_env, sizeof(path_env), "PATH=%s/fakebin:/usr/bin:/bin",
		 dir);
	run_backup(&r, "linux", out, NULL, path_env);
	assert_int_equal(r.status, 3);
	assert_true(strncmp(r.why, "not enough space: need ", 23) == 0);
	assert_non_null(strstr(r.why, " KiB, have 10 KiB"));
	assert_int_equal(stat(out, &st), -1);
}

static void test_backup_ip500v2(void **state)
{
	const char *out = TMP("cfg.tar.gz"), *out2 = TMP("c2.tar.gz");
	char want[256];
	struct run r;

	(void)state;
	mkdirs("var/lib/comagent");
	run_backup(&r, "ip500v2", out, NULL, NULL);
	assert_int_equal(r.status, 1);
	snprintf(want, sizeof(want),
		 "no system configuration at %s/root/config/config.cfg", dir);
	assert_string_equal(r.why, want);

	mkdirs("config");
	put_root_file("config/config.cfg", "IP500 V2 config\n");
	run_backup(&r, "ip500v2", out, NULL, NULL);
	assert_int_equal(r.status, 0);
	assert_backup_progress(&r);
	assert_string_equal(listing(out), "config/config.cfg\n");
	run_backup(&r, "ip500v2", out2, "config", NULL);
	assert_int_equal(r.status, 0);
	assert_true(same_bytes(out, out2));
	run_backup(&r, "ip500v2", out2, "voicemail", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.why, "unknown element: voicemail"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_progress_lines),
		T(test_bad_progress_ignored),
		T(test_long_line_cut),
		T(test_flood_without_newlines),
		T(test_exit_1_with_reason),
		T(test_exit_7_silent),
		T(test_exit_0_ignores_stderr),
		T(test_killed_by_signal),
		T(test_timeout),
		T(test_closes_output_and_runs_on),
		T(test_not_executable),
		T(test_exec_failure),
		T(test_bad_env),
		T(test_cancel),
		T(test_cancel_escalates_to_kill),
		T(test_free_while_running),
		T(test_free_inside_progress),
		T(test_free_inside_done),
		T(test_clean_environment),
		T(test_no_descriptor_leaks),
		T(test_signal_defaults),
		T(test_backup_linux),
		T(test_backup_linux_elements),
		T(test_backup_linux_nothing),
		T(test_backup_no_space),
		T(test_backup_ip500v2),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
