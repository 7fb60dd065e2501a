/*
 * customdata — parses and validates IP Office's CustomData.xml (guide
 * ch. 16, REQUIREMENTS §2 and §7): the file COM hands a system on its very
 * first connection, applied once, that sets the defaults of the six
 * remote-operation settings and the voicemail backup options.
 *
 * Pure: no logging, no files, no settings. The caller applies the result;
 * on any error *out is all-zero (nothing present), so a bad file applies
 * nothing.
 *
 * Schema (version 1), as the guide's sample file, strictly:
 *
 *   <?xml version="1.0" encoding="utf-8"?>      optional; UTF-8 only
 *   <customdata version="1">                    root; version required,
 *                                               exactly "1", no other attribute
 *     <security>                                optional, at most once
 *       <centralmgmt>0|1</centralmgmt>          each optional, at most once,
 *       <centralcert>0|1</centralcert>          any order (settings_lookup()
 *       <remoteaccess>0|1</remoteaccess>        names, case-sensitive)
 *       <remoteupgrade>0|1</remoteupgrade>
 *       <logtransfer>0|1</logtransfer>
 *       <externalremoteaccess>0|1</externalremoteaccess>
 *     </security>
 *     <vmpro>                                   optional, at most once
 *       <backupconfig>0|1</backupconfig>        each optional, at most once
 *       <backupprompts>0|1</backupprompts>
 *       <backupmailboxes>0|1</backupmailboxes>
 *     </vmpro>
 *   </customdata>
 *
 * Choices where the guide says nothing (strict):
 *  - <security> and <vmpro> in either order; either, both or none (an
 *    empty <customdata version="1"/> is valid and sets nothing); a leaf
 *    left out is "not set" (present[] false), not "off".
 *  - A leaf holds "0" or "1", blanks (space, tab, CR, LF) around it
 *    allowed; empty is an error. No attribute on any element but the
 *    root's version. Only blanks as text between elements.
 *  - Comments and CDATA sections are allowed (CDATA counts as text);
 *    processing instructions are not. Namespaces are not recognised
 *    (xmlns is an unknown attribute).
 *  - Any DOCTYPE is refused (so no entities: no XML bomb, no external
 *    entity); only the predefined entities and character references work.
 *  - UTF-8 only: the parser is forced to UTF-8, an encoding declaration
 *    other than UTF-8 (any case) and a UTF-16/32 byte order mark are
 *    refused; a UTF-8 BOM is accepted. Any NUL byte is refused before
 *    parsing (no XML text holds one, and expat would otherwise take a
 *    BOM-less "<\0" as UTF-16 despite being told UTF-8).
 *  - At most CUSTOMDATA_MAX_BYTES (ERR_LIMIT) and element depth
 *    CUSTOMDATA_MAX_DEPTH (ERR_LIMIT; checked first, though the schema's
 *    own depth is 3, so in practice a deeper document is refused for
 *    the first element out of place: the depth cap is a second guard).
 *
 * vmpro mapping to the agent's backup vmpro argument (none, config, full;
 * scripts/HOOKS.md), customdata_vmpro():
 *    backupmailboxes=1                          -> "full" (the agent has no
 *                                                  "selected mailboxes": full
 *                                                  is the superset)
 *    else backupconfig=1 or backupprompts=1     -> "config" (everything but
 *                                                  the messages: prompts too)
 *    else (all present ones 0)                  -> "none"
 *    none of the three in the file              -> NULL (leave as is)
 *
 * why texts (first problem only), e.g.:
 *   "line 7: <remoteaccess> must be 0 or 1, not 'yes'"
 *   "line 3: unknown element <foo> in <security>"
 *   "line 4: duplicate <centralmgmt> (first at line 3)"
 *   "line 1: root element must be <customdata>, not <data>"
 *   "line 1: <customdata> needs version=\"1\""
 *   "line 1: unsupported version '2' (only \"1\")"
 *   "line 1: unknown attribute 'x' on <customdata>"
 *   "line 2: text 'abc' not allowed in <security>"
 *   "line 2: DOCTYPE not allowed"
 *   "line 1: encoding 'UTF-16' not allowed (UTF-8 only)"
 *   "line 1: not UTF-8 (UTF-16 byte order mark)"
 *   "line 3: NUL byte (not UTF-8 text)"
 *   "line 5: XML syntax: mismatched tag"     (expat's own text)
 *   "document is 65537 bytes, more than 65536"
 */
#ifndef COMAGENT_CUSTOMDATA_H
#define COMAGENT_CUSTOMDATA_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "settings.h"

#define CUSTOMDATA_MAX_BYTES	65536
#define CUSTOMDATA_MAX_DEPTH	8

enum customdata_vm {
	CD_VM_BACKUPCONFIG,
	CD_VM_BACKUPPROMPTS,
	CD_VM_BACKUPMAILBOXES,
	CD_VM__COUNT
};

struct customdata {
	/* indexed by enum setting: whether the file sets it, and to what */
	bool present[SET__COUNT];
	bool value[SET__COUNT];
	/* indexed by enum customdata_vm */
	bool vm_present[CD_VM__COUNT];
	bool vm_value[CD_VM__COUNT];
};

/*
 * Parses xml (len bytes, need not be NUL-terminated) into *out.
 * ERR_OK; ERR_INVAL for malformed XML or a schema violation; ERR_LIMIT for
 * a document over CUSTOMDATA_MAX_BYTES or nested deeper than
 * CUSTOMDATA_MAX_DEPTH; ERR_NOMEM. On error *out is all-zero and why
 * (whylen bytes, may be NULL/0) says what and where. NULL xml or out is
 * ERR_INVAL.
 */
err_t customdata_parse(const char *xml, size_t len, struct customdata *out,
		       char *why, size_t whylen);

/* "backupconfig"; NULL for an unknown k. */
const char *customdata_vm_name(enum customdata_vm k);

/* The backup vmpro argument the file implies (mapping above): "none",
 * "config", "full", or NULL when it names none of the vmpro options. */
const char *customdata_vmpro(const struct customdata *cd);

#endif
