/*
 * fuzz_hookrun — libFuzzer harness for agent/hookrun.c, the root-side hook
 * runner's reading of a request from the unprivileged agent: the input is
 * sent over a socketpair exactly as the agent would send it (byte 0, bit 0:
 * with the three descriptors attached or not; the rest is the request) and
 * hookrun_serve() answers.
 *
 * The runner's configuration names a hooks directory that does not exist,
 * so even a well-formed request ends refused before anything is forked.
 * Properties: the runner answers exactly one line, "error ...", returns 1,
 * and leaves no descriptor of its own or the agent's open.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf.h"
#include "fuzz_common.h"
#include "hookrun.h"

static struct conf *cfg;
static char runner_ini[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char text[] =
		"[com]\nurl = wss://com.example.net/agent/v1\n"
		"ca_file = /etc/comagent/com-ca.pem\n"
		"[system]\nprofile = linux\ncustomer_id = C1001\n"
		"system_name = pbx-hq\n"
		"[service_user]\npassword = x\n"
		"[jobs]\nhooks_dir = /nonexistent/comagent-fuzz-hooks\n";

	(void)argc;
	(void)argv;
	fz_init("hookrun");
	snprintf(runner_ini, sizeof(runner_ini), "%s", fz_path("runner.ini"));
	fz_write(runner_ini, text, sizeof(text) - 1, 0600);
	if (conf_load(runner_ini, stderr, &cfg) != ERR_OK)
		abort();
	return 0;
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	FZ_CHECK(d != NULL);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2], fds[3], before;
	char answer[1024];
	size_t got = 0;
	bool with_fds;
	int rc;

	if (size < 1 || size > 2 * HOOKRUN_REQ_MAX)
		return 0;
	with_fds = data[0] & 1;
	data++;
	size--;
	before = open_fds();
	FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	for (int i = 0; i < 3; i++)
		FZ_CHECK((fds[i] = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0);
	{
		union {
			char buf[CMSG_SPACE(3 * sizeof(int))];
			struct cmsghdr align;
		} cm;
		struct iovec iov = { (void *)data, size };
		char zero = 0;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		struct cmsghdr *c;

		if (!size) {
			/* Descriptors need a byte to travel with. */
			iov.iov_base = &zero;
			iov.iov_len = with_fds ? 1 : 0;
		}
		if (with_fds) {
			memset(cm.buf, 0, sizeof(cm.buf));
			mh.msg_control = cm.buf;
			mh.msg_controllen = sizeof(cm.buf);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(fds));
			memcpy(CMSG_DATA(c), fds, sizeof(fds));
		}
		/* The socket buffer takes 2 * HOOKRUN_REQ_MAX at once. */
		if (iov.iov_len)
			FZ_CHECK(sendmsg(sv[0], &mh, 0) == (ssize_t)iov.iov_len);
	}
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	shutdown(sv[0], SHUT_WR);

	rc = hookrun_serve(cfg, runner_ini, sv[1]);
	close(sv[1]);
	for (;;) {
		ssize_t n = read(sv[0], answer + got, sizeof(answer) - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(sv[0]);
	answer[got] = '\0';
	FZ_CHECK(rc == 1);
	FZ_CHECK(got > 6 && !memcmp(answer, "error ", 6));
	FZ_CHECK(memchr(answer, '\n', got) == answer + got - 1);
	/* The descriptors that came with the request are closed too. */
	FZ_CHECK(open_fds() == before);
	return 0;
}
