/*
 * status — what `comagent status` shows: the link's state in COM's words and
 * the system identity, as text for people or JSON for scripts.
 */
#ifndef COMAGENT_STATUS_H
#define COMAGENT_STATUS_H

#include <stdbool.h>
#include <stddef.h>

struct conf;
struct link;

/* Renders into buf (cap bytes, always NUL-terminated); returns the length. */
size_t status_render(const struct conf *c, const struct link *l,
		     const char *version, bool json, char *buf, size_t cap);

#endif
