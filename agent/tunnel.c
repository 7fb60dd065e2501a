/*
 * tunnel — the remote-support policy (see tunnel.h).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "settings.h"
#include "tunnel.h"

/* COM's well-known service ports, what the real port is configured as, and
 * which setting opens them (REQUIREMENTS §2, §8). */
static const struct service {
	uint16_t port;
	enum conf_key key;
	enum setting needs;
} services[] = {
	{ 22, CONF_SERVICES_SSH, SET_REMOTEACCESS },
	{ 443, CONF_SERVICES_HTTPS, SET_REMOTEACCESS },
	{ 7071, CONF_SERVICES_WEBCONTROL, SET_REMOTEACCESS },
	{ 9443, CONF_SERVICES_ONEPORTAL, SET_REMOTEACCESS },
	{ 52233, CONF_SERVICES_WEBLM, SET_REMOTEACCESS },
	{ 8443, CONF_SERVICES_WEBMANAGER, SET_CENTRALMGMT },
};

static err_t refuse(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static err_t refuse(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return ERR_PERM;
}

static err_t colocated(const struct conf *c, const struct settings *s,
		       const char *host, uint16_t port,
		       struct tunnel_target *out, char *why, size_t whylen)
{
	char want[CONF_IP_MAX];

	/* The config stores canonical addresses; COM's spelling may differ. */
	if (!conf_ip_canon(host, want, sizeof(want)))
		return refuse(why, whylen, "co-located server '%.64s' is not "
			      "an IP address", host);
	if (!settings_get(s, SET_EXTERNALREMOTEACCESS))
		return refuse(why, whylen, "co-located server access "
			      "(externalremoteaccess) disabled");
	for (size_t i = 0; i < conf_tunnel_count(c); i++) {
		const struct conf_tunnel *t = conf_tunnel_at(c, i);

		if (t->port == port && !strcmp(t->address, want)) {
			snprintf(out->host, sizeof(out->host), "%s", want);
			out->port = port;
			out->via = "co-located";
			return ERR_OK;
		}
	}
	return refuse(why, whylen, "no tunnel configured for %s%s%s:%u",
		      strchr(want, ':') ? "[" : "", want,
		      strchr(want, ':') ? "]" : "", port);
}

err_t tunnel_decide(const struct conf *c, const struct settings *s,
		    const char *system, const char *host, int64_t port,
		    struct tunnel_target *out, char *why, size_t whylen)
{
	const char *addr = conf_str(c, CONF_SYSTEM_ADDRESS);
	const char *via = "system";

	memset(out, 0, sizeof(*out));
	if (port < 1 || port > 65535)
		return refuse(why, whylen, "port %lld is out of range",
			      (long long)port);
	if (system && *system &&
	    strcmp(system, conf_str(c, CONF_SYSTEM_SYSTEM_NAME))) {
		const struct conf_server *srv = NULL;

		for (size_t i = 0; i < conf_server_count(c) && !srv; i++)
			if (!strcmp(conf_server_at(c, i)->name, system))
				srv = conf_server_at(c, i);
		if (!srv)
			return refuse(why, whylen, "unknown system %.64s",
				      system);
		addr = srv->address;
		via = "network";
	}
	if (host && *host)
		return colocated(c, s, host, (uint16_t)port, out, why, whylen);

	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		if (services[i].port != port)
			continue;
		if (!settings_get(s, services[i].needs))
			return refuse(why, whylen, "%s disabled",
				      services[i].needs == SET_REMOTEACCESS ?
				      "remote access" :
				      "central management (centralmgmt)");
		snprintf(out->host, sizeof(out->host), "%s", addr);
		out->port = (uint16_t)conf_num(c, services[i].key);
		out->via = via;
		return ERR_OK;
	}
	return refuse(why, whylen, "port %lld is not a remote-support service",
		      (long long)port);
}
