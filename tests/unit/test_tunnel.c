/*
 * test_tunnel — the remote-support policy of PROTOCOL.md §3.1, rule by rule:
 * which setting opens which target, the service port mapping, network
 * servers, co-located servers and their tunnel entries, and the refusal
 * texts COM shows to the engineer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "settings.h"
#include "tunnel.h"

struct fx {
	char dir[64];
	char ini[96];
	struct conf *c;
	struct settings *s;
};

static const char config_text[] =
	"[com]\n"
	"url = wss://localhost:1/agent/v1\n"
	"ca_file = /dev/null\n"
	"[system]\n"
	"customer_id = C1\n"
	"system_name = pbx-hq\n"
	"address = 127.0.0.1\n"
	"root = %s\n"
	"[service_user]\n"
	"password = pw\n"
	"[services]\n"
	"ssh = 2222\n"
	"webmanager = 18443\n"
	"[network]\n"
	"exp1 = 127.0.0.3\n"
	"[tunnel rdp]\n"
	"application = rdp\n"
	"address = 127.0.0.2\n"
	"[tunnel v6]\n"
	"application = custom\n"
	"address = ::1\n"
	"port = 8080\n";

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	FILE *fp;

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_tunnel.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->ini, sizeof(f->ini), "%s/c.ini", f->dir);
	fp = fopen(f->ini, "w");
	if (!fp)
		return -1;
	fprintf(fp, config_text, f->dir);
	fclose(fp);
	if (chmod(f->ini, 0600) != 0 || conf_load(f->ini, stderr, &f->c) != ERR_OK)
		return -1;
	if (settings_load(f->dir, &f->s) != ERR_OK)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[128];

	settings_free(f->s);
	conf_free(f->c);
	unlink(f->ini);
	snprintf(p, sizeof(p), "%s/settings", f->dir);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

static err_t decide(struct fx *f, const char *sys, const char *host,
		    int64_t port, struct tunnel_target *t, char *why)
{
	return tunnel_decide(f->c, f->s, sys, host, port, t, why, 160);
}

static void test_everything_off_by_default(void **state)
{
	struct fx *f = *state;
	struct tunnel_target t;
	char why[160];

	assert_int_equal(decide(f, "", "", 22, &t, why), ERR_PERM);
	assert_string_equal(why, "remote access disabled");
	assert_int_equal(decide(f, NULL, NULL, 8443, &t, why), ERR_PERM);
	assert_string_equal(why, "central management (centralmgmt) disabled");
	assert_int_equal(decide(f, "", "127.0.0.2", 3389, &t, why), ERR_PERM);
	assert_string_equal(why, "co-located server access "
			    "(externalremoteaccess) disabled");
}

static void test_remoteaccess_maps_service_ports(void **state)
{
	struct fx *f = *state;
	struct tunnel_target t;
	char why[160];

	assert_int_equal(settings_set(f->s, SET_REMOTEACCESS, true), ERR_OK);
	assert_int_equal(decide(f, "", "", 22, &t, why), ERR_OK);
	assert_string_equal(t.host, "127.0.0.1");
	assert_int_equal(t.port, 2222);		/* [services] ssh */
	assert_string_equal(t.via, "system");
	/* Unconfigured services keep their well-known port. */
	assert_int_equal(decide(f, "pbx-hq", NULL, 7071, &t, why), ERR_OK);
	assert_int_equal(t.port, 7071);
	assert_int_equal(decide(f, "", "", 52233, &t, why), ERR_OK);
	assert_int_equal(decide(f, "", "", 9443, &t, why), ERR_OK);
	assert_int_equal(decide(f, "", "", 443, &t, why), ERR_OK);
	/* remoteaccess does not open Web Manager. */
	assert_int_equal(decide(f, "", "", 8443, &t, why), ERR_PERM);
	assert_int_equal(settings_set(f->s, SET_CENTRALMGMT, true), ERR_OK);
	assert_int_equal(decide(f, "", "", 8443, &t, why), ERR_OK);
	assert_int_equal(t.port, 18443);
	/* centralmgmt alone does not open SSH. */
	assert_int_equal(settings_set(f->s, SET_REMOTEACCESS, false), ERR_OK);
	assert_int_equal(decide(f, "", "", 22, &t, why), ERR_PERM);
}

static void test_ports_outside_all_rules(void **state)
{
	struct fx *f = *state;
	struct tunnel_target t;
	char why[160];

	for (int k = 0; k < SET__COUNT; k++)
		assert_int_equal(settings_set(f->s, (enum setting)k, true),
				 ERR_OK);
	assert_int_equal(decide(f, "", "", 25, &t, why), ERR_PERM);
	assert_string_equal(why, "port 25 is not a remote-support service");
	/* The real (mapped) port is not a door either. */
	assert_int_equal(decide(f, "", "", 2222, &t, why), ERR_PERM);
	assert_int_equal(decide(f, "", "", 0, &t, why), ERR_PERM);
	assert_string_equal(why, "port 0 is out of range");
	assert_int_equal(decide(f, "", "", 65536, &t, why), ERR_PERM);
	assert_int_equal(decide(f, "", "", -1, &t, why), ERR_PERM);
}

static void test_network_servers(void **state)
{
	struct fx *f = *state;
	struct tunnel_target t;
	char why[160];

	assert_int_equal(settings_set(f->s, SET_REMOTEACCESS, true), ERR_OK);
	assert_int_equal(decide(f, "exp1", "", 22, &t, why), ERR_OK);
	assert_string_equal(t.host, "127.0.0.3");
	assert_int_equal(t.port, 2222);
	assert_string_equal(t.via, "network");
	assert_int_equal(decide(f, "pbx-7", "", 22, &t, why), ERR_PERM);
	assert_string_equal(why, "unknown system pbx-7");
	/* Names are exact. */
	assert_int_equal(decide(f, "EXP1", "", 22, &t, why), ERR_PERM);
}

static void test_colocated_needs_setting_and_entry(void **state)
{
	struct fx *f = *state;
	struct tunnel_target t;
	char why[160];

	/* remoteaccess does not open co-located servers. */
	assert_int_equal(settings_set(f->s, SET_REMOTEACCESS, true), ERR_OK);
	assert_int_equal(decide(f, "", "127.0.0.2", 3389, &t, why), ERR_PERM);
	assert_int_equal(settings_set(f->s, SET_EXTERNALREMOTEACCESS, true),
			 ERR_OK);
	assert_int_equal(decide(f, "", "127.0.0.2", 3389, &t, why), ERR_OK);
	assert_string_equal(t.host, "127.0.0.2");
	assert_int_equal(t.port, 3389);		/* rdp's default port */
	assert_string_equal(t.via, "co-located");
	/* Same address, other port: no entry. */
	assert_int_equal(decide(f, "", "127.0.0.2", 22, &t, why), ERR_PERM);
	assert_string_equal(why, "no tunnel configured for 127.0.0.2:22");
	assert_int_equal(decide(f, "", "10.0.0.7", 3389, &t, why), ERR_PERM);
	assert_string_equal(why, "no tunnel configured for 10.0.0.7:3389");
	/* IPv6 entries match any spelling of the address. */
	assert_int_equal(decide(f, "", "0:0:0:0:0:0:0:1", 8080, &t, why),
			 ERR_OK);
	assert_string_equal(t.host, "::1");
	/* An IPv4-mapped spelling is the IPv4 address. */
	assert_int_equal(decide(f, "", "::ffff:127.0.0.2", 3389, &t, why), ERR_OK);
	assert_string_equal(t.host, "127.0.0.2");
	assert_int_equal(decide(f, "", "::1", 8081, &t, why), ERR_PERM);
	assert_string_equal(why, "no tunnel configured for [::1]:8081");
	/* Only IP literals: a name could resolve anywhere. */
	assert_int_equal(decide(f, "", "server.lan", 3389, &t, why), ERR_PERM);
	assert_string_equal(why, "co-located server 'server.lan' is not an "
			    "IP address");
	/* Through a network server: it must be a known one. */
	assert_int_equal(decide(f, "pbx-7", "127.0.0.2", 3389, &t, why),
			 ERR_PERM);
	assert_string_equal(why, "unknown system pbx-7");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_everything_off_by_default,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_remoteaccess_maps_service_ports, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ports_outside_all_rules,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_network_servers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_colocated_needs_setting_and_entry, setup, teardown),
	};
	return cmocka_run_group_tests_name("tunnel", tests, NULL, NULL);
}
