/*
 * fuzz_tunnel — libFuzzer harness for agent/tunnel.c, the remote-support
 * policy that turns COM's stream.open destination (target system, host,
 * port) into a place on the customer LAN, or refuses it.
 *
 * Input: byte 0 picks the remote-operation settings (its low bits switch
 * centralmgmt, remoteaccess and externalremoteaccess), bytes 1-8 the port
 * (int64, so out-of-range values come too), the rest "system\0host".
 * Properties: an allowed destination is always one the configuration names
 * (this system's address, a [network] server's, a [tunnel] entry's) on a
 * port it names; a refusal always says why; and the answer is the same
 * when asked twice (a pure function).
 */
#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "fuzz_common.h"
#include "settings.h"
#include "tunnel.h"

static struct conf *cfg;
static struct settings *sets[8];

static const char *const allowed_hosts[] = {
	"127.0.0.1", "10.0.0.7", "media.example.net", "10.0.0.9",
	"::ffff:10.0.0.10", NULL
};
/* [services] defaults and overrides, and the tunnel entries' ports. */
static const int allowed_ports[] = {
	2222, 443, 7071, 9443, 52233, 18443, 3389, 8080, 0
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char text[] =
		"[com]\nurl = wss://com.example.net/agent/v1\n"
		"ca_file = /etc/comagent/com-ca.pem\n"
		"[system]\nprofile = linux\ncustomer_id = C1001\n"
		"system_name = pbx-hq\naddress = 127.0.0.1\n"
		"[service_user]\npassword = x\n"
		"[services]\nssh = 2222\nwebmanager = 18443\n"
		"[network]\nvoicemail = 10.0.0.7\nmedia = media.example.net\n"
		"[tunnel rdp]\napplication = rdp\naddress = 10.0.0.9\n"
		"[tunnel web]\napplication = custom\n"
		"address = ::ffff:10.0.0.10\nport = 8080\n";

	(void)argc;
	(void)argv;
	fz_init("tunnel");
	fz_write(fz_path("comagent.ini"), text, sizeof(text) - 1, 0600);
	if (conf_load(fz_path("comagent.ini"), stderr, &cfg) != ERR_OK)
		abort();
	for (int i = 0; i < 8; i++) {
		char body[128];
		int n = snprintf(body, sizeof(body),
				 "centralmgmt=%d\nremoteaccess=%d\n"
				 "externalremoteaccess=%d\n", i & 1,
				 (i >> 1) & 1, (i >> 2) & 1);

		fz_write(fz_path("settings"), body, (size_t)n, 0600);
		if (settings_load(fz_dir, &sets[i]) != ERR_OK)
			abort();
	}
	return 0;
}

/* As the configuration keeps them: IP literals in canonical form. */
static bool listed_host(const char *h)
{
	for (size_t i = 0; allowed_hosts[i]; i++) {
		char canon[64];

		if (!strcmp(allowed_hosts[i], h) ||
		    (conf_ip_canon(allowed_hosts[i], canon, sizeof(canon)) &&
		     !strcmp(canon, h)))
			return true;
	}
	return false;
}

static bool listed_port(int p)
{
	for (size_t i = 0; allowed_ports[i]; i++)
		if (allowed_ports[i] == p)
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tunnel_target a, b;
	char why_a[256], why_b[256], *text;
	const char *system, *host = NULL;
	int64_t port;
	err_t ea, eb;

	if (size < 9 || size > 4096)
		return 0;
	memcpy(&port, data + 1, sizeof(port));
	text = malloc(size - 9 + 2);
	FZ_CHECK(text != NULL);
	memcpy(text, data + 9, size - 9);
	text[size - 9] = '\0';
	text[size - 9 + 1] = '\0';
	system = text;
	if (strlen(system) < size - 9)
		host = system + strlen(system) + 1;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	why_a[0] = why_b[0] = '\0';
	ea = tunnel_decide(cfg, sets[data[0] & 7], system, host, port, &a,
			   why_a, sizeof(why_a));
	eb = tunnel_decide(cfg, sets[data[0] & 7], system, host, port, &b,
			   why_b, sizeof(why_b));
	FZ_CHECK(ea == eb);
	if (ea == ERR_OK) {
		FZ_CHECK(listed_host(a.host));
		FZ_CHECK(listed_port(a.port));
		FZ_CHECK(a.port == b.port && !strcmp(a.host, b.host));
		FZ_CHECK(a.via != NULL);
	} else {
		FZ_CHECK(why_a[0] != '\0');
		FZ_CHECK(!strcmp(why_a, why_b));
	}
	free(text);
	return 0;
}
