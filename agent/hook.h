/*
 * hook — run a platform hook (an executable under scripts/<profile>/) as a
 * child process inside the event loop.
 *
 * The hook's stdout and stderr come back over pipes that lws watches as raw
 * file descriptors, so the loop never blocks on them. stdout lines
 * "progress N text" become progress() calls; stderr lines are logged and the
 * last one explains a failure. When the child is gone, done() reports how it
 * ended. The contract a hook follows is scripts/HOOKS.md.
 *
 * Every text handed to a callback is one line, at most HOOK_LINE_MAX bytes,
 * valid UTF-8 without control characters (a tab becomes a space, other
 * control characters and invalid bytes '?'), without trailing white space,
 * so it can go into a JSON message to COM as it is.
 *
 * The agent must not ignore SIGCHLD (children must stay waitable), and every
 * hook must be freed before lws_context_destroy().
 */
#ifndef COMAGENT_HOOK_H
#define COMAGENT_HOOK_H

#include <libwebsockets.h>

#include "err.h"

#define HOOK_PROTOCOL "comagent-hook"
#define HOOK_LINE_MAX 512

struct hook;

struct hook_cbs {
	/* A "progress N text" line: N 0..100; text may be empty. May be NULL.
	 * hook_cancel() is fine from here; so is hook_free(), after which
	 * nothing more is called. */
	void (*progress)(void *arg, int pct, const char *text);
	/* The child is gone. status: its exit code (0..255) or -signal.
	 * why: "" when status is 0, else one line: "killed after N s
	 * (timeout)", "cancelled", the last non-empty stderr line, "killed by
	 * signal N", or "exit status N" (the first that applies). Called
	 * exactly once; hook_free() may be called from here. */
	void (*done)(void *arg, int status, const char *why);
};

/*
 * Starts path with argv (argv[0] = path; NULL means just { path }) and the
 * extra environment entries env (NAME=VALUE, NULL-terminated, may be NULL)
 * on top of a minimal clean environment: PATH=/usr/sbin:/usr/bin:/sbin:/bin
 * and LANG=C (an entry of env with the same name replaces those). stdin is
 * /dev/null, stdout and stderr are piped back, the working directory is /,
 * no other descriptor of the agent is inherited, every signal has its
 * default disposition, and the child leads its own process group.
 * timeout_s > 0: SIGTERM to the group at the deadline, SIGKILL 5 s later.
 * ERR_NOTFOUND if path is not an executable file (checked before forking).
 * Callbacks run from the loop of ctx; cbs is copied.
 */
err_t hook_start(struct lws_context *ctx, const char *path,
		 char *const argv[], char *const env[], unsigned timeout_s,
		 const struct hook_cbs *cbs, void *arg, struct hook **out);

/*
 * The same, but the hook runs as root through the hook runner listening on
 * sock (hookrun.h): name is the hook's name (the runner finds it), args its
 * arguments after argv[0] (NULL-terminated, may be NULL), env COMAGENT_*
 * entries. Callbacks, timeout and cancelling work as for hook_start; a
 * runner that refuses shows as a failure (status 126, why "hook runner:
 * ..."), one that goes away without an answer as an unknown outcome.
 */
err_t hook_start_runner(struct lws_context *ctx, const char *sock,
			const char *name, char *const args[],
			char *const env[], unsigned timeout_s,
			const struct hook_cbs *cbs, void *arg,
			struct hook **out);

/* Ends a running hook: SIGTERM to its group, SIGKILL 5 s later; done()
 * follows as usual. Nothing happens once the child is gone. */
void hook_cancel(struct hook *h);

/* A still-running child (and its group) is killed with SIGKILL and reaped
 * here; no callback follows. */
void hook_free(struct hook *h);

/* For the hook runner, which starts hooks the same way. */
/* env on top of PATH=/usr/sbin:/usr/bin:/sbin:/bin and LANG=C, as
 * hook_start gives a hook; *out (free() it) points into env. */
err_t hook_build_env(const char *name, char *const env[], char ***out);
/* Highest descriptor number + 1 to close in a child (before fork). */
int hook_fd_limit(void);
/* In a forked child only: stdin/stdout/stderr from devnull/out_w/err_w,
 * every other descriptor closed, default signals, its own process group,
 * working directory /, then execve(path, argv, envp). */
void hook_child_exec(const char *path, char *const argv[],
		     char *const envp[], int devnull, int out_w, int err_w,
		     int fd_limit) __attribute__((noreturn));

/* The lws protocol entry main puts in the context's protocol table. */
struct lws_protocols hook_protocol(void);

#endif
