/*
 * cross/sigdfl.c — host-side helper for `make TARGET=... check-unit`:
 * resets every signal disposition to SIG_DFL, including glibc's reserved
 * real-time signals 32 and 33 (through the raw syscall, since glibc's
 * sigaction() refuses them), unblocks all signals, and execs its arguments
 * (qemu-arm and the test binary).
 *
 * Why: GNU make starts its children with 32/33 ignored. A native agent
 * resets them for its hooks (agent/hook.c), but under qemu-user the guest's
 * signal 32 is remapped to another host signal, so the guest cannot undo
 * the host-side SIG_IGN and every hook would inherit it (test_hook's
 * test_signal_defaults fails with "SigIgn: 0000000080000000"). This is an
 * emulation artefact, not target behaviour; the real appliance runs the
 * agent natively.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	sigset_t none;

	if (argc < 2) {
		fprintf(stderr, "usage: sigdfl COMMAND [ARGS...]\n");
		return 2;
	}
	for (int sig = 1; sig < _NSIG; sig++) {
		unsigned long ksa[8] = { 0 };	/* SIG_DFL, no flags, empty mask */

		if (sig != SIGKILL && sig != SIGSTOP)
			(void)syscall(SYS_rt_sigaction, sig, ksa, NULL,
				      (size_t)(_NSIG / 8));
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execvp(argv[1], argv + 1);
	fprintf(stderr, "sigdfl: %s: %s\n", argv[1], strerror(errno));
	return 127;
}
