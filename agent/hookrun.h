/*
 * hookrun — the root side of the agent's privilege separation on Linux
 * servers: `comagent hook-runner`, started by systemd for each connection to
 * its socket (comagent-hooks.socket, Accept=yes), runs one platform hook as
 * root on behalf of the unprivileged agent and reports how it ended.
 *
 * Why a runner and not sudo: the agent's own unit is sandboxed
 * (NoNewPrivileges, a read-only system, no capabilities) and a hook started
 * from inside it would be sandboxed too; the runner's unit is not. And the
 * request is narrow: a hook NAME from the fixed set below, resolved by the
 * runner in its own configuration's hooks_dir and profile (never a path
 * from the agent), arguments, and COMAGENT_* environment entries only.
 *
 * The request, on the connected socket (one or more writes; the first
 * carries the hook's stdin, stdout and stderr as SCM_RIGHTS), lines of at
 * most HOOKRUN_LINE_MAX bytes:
 *
 *     hook NAME
 *     arg VALUE          (0..HOOKRUN_ARGS_MAX times)
 *     env NAME=VALUE     (0..HOOKRUN_ENV_MAX times, NAME = COMAGENT_[A-Z0-9_]+)
 *     end
 *
 * The runner answers with one line when the hook has ended: "exit N",
 * "signal N", or "error TEXT" when it refused or could not start it. While
 * the hook runs, the agent may send "term" or "kill" (to the hook's process
 * group); the agent's end of the socket closing means SIGTERM, then SIGKILL
 * after 5 s.
 */
#ifndef COMAGENT_HOOKRUN_H
#define COMAGENT_HOOKRUN_H

#include <stdbool.h>

#include "conf.h"

#define HOOKRUN_LINE_MAX 4096
#define HOOKRUN_REQ_MAX (64 * 1024)
#define HOOKRUN_ARGS_MAX 32
#define HOOKRUN_ENV_MAX 16

/* Whether name is a hook the runner may run. */
bool hookrun_name_ok(const char *name);

/* Serves the one request on fd (a connected AF_UNIX stream socket) with
 * c, read from the file config (which must be root's alone, like the hooks
 * directory it names). The hook's own exit code is not the runner's: 0
 * when it reported how the hook ended, 1 when it refused or failed (it said
 * why on fd and stderr). */
int hookrun_serve(const struct conf *c, const char *config, int fd);

#endif
