/*
 * fuzz_conf — libFuzzer harness for agent/conf.c: the input is written to
 * a file with mode 0600 and conf_load()ed (inih underneath); the messages
 * go to a memory stream. Checks: *out is set exactly on ERR_OK; every
 * message line is "PATH: ..." or "PATH:LINE: ..." with LINE >= 1; on
 * success every accessor answers for every key, tunnel and server, and
 * tunnel addresses are canonical (conf_ip_canon() of them is themselves).
 * Also feeds the input's first line to conf_ip_canon(), which must be
 * idempotent.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "fuzz_common.h"

static char path[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init("conf");
	snprintf(path, sizeof(path), "%s", fz_path("comagent.ini"));
	return 0;
}

static void check_messages(const char *text, size_t len)
{
	size_t plen = strlen(path);

	for (const char *p = text, *end = text + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *q;

		if (!nl) {
			fprintf(stderr, "message without a newline: %.*s\n",
				(int)(end - p), p);
			FZ_CHECK(!"unterminated message");
		}
		if ((size_t)(nl - p) <= plen + 1 || memcmp(p, path, plen) ||
		    p[plen] != ':') {
			fprintf(stderr, "message not 'PATH:': %.*s\n",
				(int)(nl - p), p);
			FZ_CHECK(!"message without the path");
		}
		q = p + plen + 1;
		if (*q >= '0' && *q <= '9') {
			FZ_CHECK(*q != '0');	/* never line 0 */
			while (q < nl && *q >= '0' && *q <= '9')
				q++;
			FZ_CHECK(q < nl && *q == ':');
		}
		p = nl + 1;
	}
}

static void ip_canon(const uint8_t *data, size_t size)
{
	char in[64], a[CONF_IP_MAX], b[CONF_IP_MAX];
	size_t n = 0;

	while (n < size && n < sizeof(in) - 1 && data[n] != '\n')
		n++;
	memcpy(in, data, n);
	in[n] = '\0';
	if (conf_ip_canon(in, a, sizeof(a))) {
		FZ_CHECK(conf_ip_canon(a, b, sizeof(b)));
		FZ_CHECK(!strcmp(a, b));
	} else {
		FZ_CHECK(a[0] == '\0');
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf *c = (struct conf *)1;
	char *msgs = NULL;
	size_t msglen = 0;
	FILE *errs;
	err_t e;

	ip_canon(data, size);
	fz_write(path, data, size, 0600);
	errs = open_memstream(&msgs, &msglen);
	FZ_CHECK(errs);
	e = conf_load(path, errs, &c);
	fclose(errs);
	check_messages(msgs, msglen);
	free(msgs);
	if (e != ERR_OK) {
		FZ_CHECK(c == NULL);
		FZ_CHECK(e == ERR_INVAL || e == ERR_NOMEM);
		return 0;
	}
	FZ_CHECK(c != NULL);
	FZ_CHECK(conf_platform(c) != NULL);
	FZ_CHECK(!strcmp(conf_path(c), path));
	for (int k = 0; k < CONF__COUNT; k++) {
		const char *s = conf_str(c, (enum conf_key)k);

		FZ_CHECK(s != NULL);
		(void)strlen(s);
		(void)conf_num(c, (enum conf_key)k);
		(void)conf_isset(c, (enum conf_key)k);
	}
	FZ_CHECK(conf_tunnel_count(c) <= CONF_TUNNELS_MAX);
	FZ_CHECK(conf_server_count(c) <= CONF_SERVERS_MAX);
	for (size_t i = 0; i < conf_tunnel_count(c); i++) {
		const struct conf_tunnel *t = conf_tunnel_at(c, i);
		char canon[CONF_IP_MAX];

		FZ_CHECK(t && t->name && t->application && t->address);
		FZ_CHECK(t->line >= 1);
		FZ_CHECK(conf_ip_canon(t->address, canon, sizeof(canon)));
		FZ_CHECK(!strcmp(canon, t->address));
	}
	FZ_CHECK(conf_tunnel_at(c, conf_tunnel_count(c)) == NULL);
	for (size_t i = 0; i < conf_server_count(c); i++) {
		const struct conf_server *s = conf_server_at(c, i);

		FZ_CHECK(s && s->name && s->address && s->line >= 1);
	}
	FZ_CHECK(conf_server_at(c, conf_server_count(c)) == NULL);
	conf_free(c);
	return 0;
}
