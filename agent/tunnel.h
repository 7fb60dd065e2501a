/*
 * tunnel — may COM open this tunnel, and where does it go?
 *
 * The remote-support policy of PROTOCOL.md §3.1 as one pure function of the
 * configuration and the remote-operation settings, so every rule is unit
 * tested without a socket: COM's well-known service ports map to this
 * system's (or a network server's) real ports, co-located servers need
 * externalremoteaccess and a configured [tunnel] entry, anything else is
 * refused with a reason COM shows to the support engineer as is.
 */
#ifndef COMAGENT_TUNNEL_H
#define COMAGENT_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct conf;
struct settings;

struct tunnel_target {
	char host[256];		/* address or host name to connect to */
	uint16_t port;
	const char *via;	/* "system", "network" or "co-located" */
};

/* system: "" or NULL for this system, else a [network] server name.
 * host: "" or NULL for that system's own services, else a co-located
 * server's IP literal. ERR_PERM with why set when not allowed. */
err_t tunnel_decide(const struct conf *c, const struct settings *s,
		    const char *system, const char *host, int64_t port,
		    struct tunnel_target *out, char *why, size_t whylen);

#endif
