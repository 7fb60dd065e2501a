/* customdata — CustomData.xml, parsed with expat and validated (header). */
#include <expat.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "customdata.h"

enum node {
	N_NONE,		/* before the root */
	N_ROOT,
	N_SECURITY,
	N_VMPRO,
	N_SETTING,	/* a leaf of <security> */
	N_VM,		/* a leaf of <vmpro> */
};

#define VALUE_MAX 32	/* a leaf's text kept; more is an error anyway */

struct ctx {
	XML_Parser p;
	struct customdata cd;
	err_t err;
	char *why;
	size_t whylen;
	int depth;
	enum node stack[CUSTOMDATA_MAX_DEPTH + 1];
	const char *names[CUSTOMDATA_MAX_DEPTH + 1];	/* static names */
	unsigned long seen_security, seen_vmpro;	/* line, 0: not yet */
	unsigned long seen_set[SET__COUNT], seen_vm[CD_VM__COUNT];
	int leaf;			/* index of the open leaf */
	unsigned long leaf_line;
	char val[VALUE_MAX + 1];
	size_t vlen;
	bool vlong;
};

static const char *const vm_names[CD_VM__COUNT] = {
	[CD_VM_BACKUPCONFIG]	= "backupconfig",
	[CD_VM_BACKUPPROMPTS]	= "backupprompts",
	[CD_VM_BACKUPMAILBOXES]	= "backupmailboxes",
};

const char *customdata_vm_name(enum customdata_vm k)
{
	return (unsigned)k < CD_VM__COUNT ? vm_names[k] : NULL;
}

static int vm_lookup(const char *name)
{
	for (int i = 0; i < CD_VM__COUNT; i++)
		if (!strcmp(name, vm_names[i]))
			return i;
	return -1;
}

const char *customdata_vmpro(const struct customdata *cd)
{
	if (!cd)
		return NULL;
	bool any = false;
	for (int i = 0; i < CD_VM__COUNT; i++)
		any |= cd->vm_present[i];
	if (!any)
		return NULL;
	if (cd->vm_value[CD_VM_BACKUPMAILBOXES])
		return "full";
	if (cd->vm_value[CD_VM_BACKUPCONFIG] ||
	    cd->vm_value[CD_VM_BACKUPPROMPTS])
		return "config";
	return "none";
}

/* For quoting input in why: printable ASCII, the rest '?', at most 32. */
static void sanitize(char *dst, size_t cap, const char *s, size_t n)
{
	size_t j = 0;

	for (size_t i = 0; i < n && j + 1 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (n >= cap && cap > 4) {
		j = cap - 4;
		memcpy(dst + j, "...", 3);
		j += 3;
	}
	dst[j < cap ? j : cap - 1] = '\0';
}

static void fail(struct ctx *c, err_t e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Records the first problem, prefixed with the current line, and stops. */
static void fail(struct ctx *c, err_t e, const char *fmt, ...)
{
	char msg[192];
	va_list ap;

	if (c->err != ERR_OK)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->err = e;
	err_say(c->why, c->whylen, "line %lu: %s",
		(unsigned long)XML_GetCurrentLineNumber(c->p), msg);
	XML_StopParser(c->p, XML_FALSE);
}

static bool blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	struct ctx *c = ud;
	unsigned long line;
	enum node parent, node = N_NONE;
	const char *sname = NULL;
	char q[40];

	if (c->err != ERR_OK)
		return;
	line = (unsigned long)XML_GetCurrentLineNumber(c->p);
	if (c->depth >= CUSTOMDATA_MAX_DEPTH) {
		fail(c, ERR_LIMIT, "elements nested deeper than %d",
		     CUSTOMDATA_MAX_DEPTH);
		return;
	}
	sanitize(q, sizeof(q), name, strlen(name));
	parent = c->stack[c->depth];
	switch (parent) {
	case N_NONE:
		if (strcmp(name, "customdata")) {
			fail(c, ERR_INVAL,
			     "root element must be <customdata>, not <%s>", q);
			return;
		}
		node = N_ROOT;
		sname = "customdata";
		break;
	case N_ROOT:
		if (!strcmp(name, "security")) {
			if (c->seen_security) {
				fail(c, ERR_INVAL, "duplicate <security> "
				     "(first at line %lu)", c->seen_security);
				return;
			}
			c->seen_security = line;
			node = N_SECURITY;
			sname = "security";
		} else if (!strcmp(name, "vmpro")) {
			if (c->seen_vmpro) {
				fail(c, ERR_INVAL, "duplicate <vmpro> "
				     "(first at line %lu)", c->seen_vmpro);
				return;
			}
			c->seen_vmpro = line;
			node = N_VMPRO;
			sname = "vmpro";
		} else {
			fail(c, ERR_INVAL, "unknown element <%s> in "
			     "<customdata>", q);
			return;
		}
		break;
	case N_SECURITY: {
		int k = settings_lookup(name);
		if (k < 0) {
			fail(c, ERR_INVAL, "unknown element <%s> in "
			     "<security>", q);
			return;
		}
		if (c->seen_set[k]) {
			fail(c, ERR_INVAL, "duplicate <%s> (first at line %lu)",
			     q, c->seen_set[k]);
			return;
		}
		c->seen_set[k] = line;
		c->leaf = k;
		node = N_SETTING;
		sname = settings_name((enum setting)k);
		break;
	}
	case N_VMPRO: {
		int k = vm_lookup(name);
		if (k < 0) {
			fail(c, ERR_INVAL, "unknown element <%s> in <vmpro>", q);
			return;
		}
		if (c->seen_vm[k]) {
			fail(c, ERR_INVAL, "duplicate <%s> (first at line %lu)",
			     q, c->seen_vm[k]);
			return;
		}
		c->seen_vm[k] = line;
		c->leaf = k;
		node = N_VM;
		sname = vm_names[k];
		break;
	}
	case N_SETTING:
	case N_VM:
		fail(c, ERR_INVAL, "element <%s> not allowed inside <%s>", q,
		     c->names[c->depth]);
		return;
	}

	bool version = false;
	for (size_t i = 0; attrs[i]; i += 2) {
		char a[40], v[40];
		sanitize(a, sizeof(a), attrs[i], strlen(attrs[i]));
		if (node != N_ROOT || strcmp(attrs[i], "version")) {
			fail(c, ERR_INVAL, "unknown attribute '%s' on <%s>", a,
			     sname);
			return;
		}
		if (strcmp(attrs[i + 1], "1")) {
			sanitize(v, sizeof(v), attrs[i + 1],
				 strlen(attrs[i + 1]));
			fail(c, ERR_INVAL,
			     "unsupported version '%s' (only \"1\")", v);
			return;
		}
		version = true;
	}
	if (node == N_ROOT && !version) {
		fail(c, ERR_INVAL, "<customdata> needs version=\"1\"");
		return;
	}
	if (node == N_SETTING || node == N_VM) {
		c->leaf_line = line;
		c->vlen = 0;
		c->vlong = false;
	}
	c->depth++;
	c->stack[c->depth] = node;
	c->names[c->depth] = sname;
}

static void on_end(void *ud, const XML_Char *name)
{
	struct ctx *c = ud;
	enum node node;
	size_t b, e;
	bool v;

	(void)name;
	if (c->err != ERR_OK || c->depth <= 0)
		return;
	node = c->stack[c->depth];
	if (node == N_SETTING || node == N_VM) {
		for (b = 0; b < c->vlen && blank(c->val[b]); b++)
			;
		for (e = c->vlen; e > b && blank(c->val[e - 1]); e--)
			;
		if (!c->vlong && e - b == 1 &&
		    (c->val[b] == '0' || c->val[b] == '1')) {
			v = c->val[b] == '1';
		} else {
			char q[40];
			sanitize(q, sizeof(q), c->val + b, e - b);
			c->err = ERR_INVAL;
			err_say(c->why, c->whylen,
				"line %lu: <%s> must be 0 or 1, not '%s%s'",
				c->leaf_line, c->names[c->depth], q,
				c->vlong ? "..." : "");
			XML_StopParser(c->p, XML_FALSE);
			return;
		}
		if (node == N_SETTING) {
			c->cd.present[c->leaf] = true;
			c->cd.value[c->leaf] = v;
		} else {
			c->cd.vm_present[c->leaf] = true;
			c->cd.vm_value[c->leaf] = v;
		}
	}
	c->depth--;
}

static void on_text(void *ud, const XML_Char *s, int len)
{
	struct ctx *c = ud;
	enum node node;
	char q[40];

	if (c->err != ERR_OK || len <= 0)
		return;
	node = c->stack[c->depth];
	if (node == N_SETTING || node == N_VM) {
		size_t n = (size_t)len;
		if (n > VALUE_MAX - c->vlen) {
			n = VALUE_MAX - c->vlen;
			c->vlong = true;
		}
		memcpy(c->val + c->vlen, s, n);
		c->vlen += n;
		return;
	}
	for (int i = 0; i < len; i++)
		if (!blank(s[i])) {
			sanitize(q, sizeof(q), s + i, (size_t)(len - i));
			fail(c, ERR_INVAL, "text '%s' not allowed in <%s>", q,
			     c->names[c->depth] ? c->names[c->depth]
						: "the prolog");
			return;
		}
}

static void on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
		       const XML_Char *pubid, int has_internal)
{
	(void)name, (void)sysid, (void)pubid, (void)has_internal;
	fail(ud, ERR_INVAL, "DOCTYPE not allowed");
}

static void on_entity(void *ud, const XML_Char *name, int is_param,
		      const XML_Char *value, int value_len,
		      const XML_Char *base, const XML_Char *sysid,
		      const XML_Char *pubid, const XML_Char *notation)
{
	(void)name, (void)is_param, (void)value, (void)value_len, (void)base;
	(void)sysid, (void)pubid, (void)notation;
	fail(ud, ERR_INVAL, "entity declarations not allowed");
}

static int on_extref(XML_Parser p, const XML_Char *context,
		     const XML_Char *base, const XML_Char *sysid,
		     const XML_Char *pubid)
{
	(void)context, (void)base, (void)sysid, (void)pubid;
	fail(XML_GetUserData(p), ERR_INVAL, "external entities not allowed");
	return XML_STATUS_ERROR;
}

static void on_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
	(void)target, (void)data;
	fail(ud, ERR_INVAL, "processing instructions not allowed");
}

static void on_xmldecl(void *ud, const XML_Char *version,
		       const XML_Char *encoding, int standalone)
{
	char q[40];

	(void)version, (void)standalone;
	if (encoding && strcasecmp(encoding, "UTF-8")) {
		sanitize(q, sizeof(q), encoding, strlen(encoding));
		fail(ud, ERR_INVAL, "encoding '%s' not allowed (UTF-8 only)",
		     q);
	}
}

err_t customdata_parse(const char *xml, size_t len, struct customdata *out,
		       char *why, size_t whylen)
{
	struct ctx c;
	const unsigned char *u = (const unsigned char *)xml;

	err_say(why, whylen, "%s", "");
	if (out)
		memset(out, 0, sizeof(*out));
	if (!xml || !out) {
		err_say(why, whylen, "no document");
		return ERR_INVAL;
	}
	if (len > CUSTOMDATA_MAX_BYTES) {
		err_say(why, whylen, "document is %zu bytes, more than %d",
			len, CUSTOMDATA_MAX_BYTES);
		return ERR_LIMIT;
	}
	if (len >= 2 && ((u[0] == 0xfe && u[1] == 0xff) ||
			 (u[0] == 0xff && u[1] == 0xfe))) {
		err_say(why, whylen, "line 1: not UTF-8 (UTF-16 byte order "
			"mark)");
		return ERR_INVAL;
	}
	if (len >= 4 && u[0] == 0 && u[1] == 0 && u[2] == 0xfe &&
	    u[3] == 0xff) {
		err_say(why, whylen, "line 1: not UTF-8 (UTF-32 byte order "
			"mark)");
		return ERR_INVAL;
	}

	/* No XML document holds a NUL; and expat would take "<\0" as
	 * UTF-16 even when told UTF-8. */
	const char *nul = memchr(xml, '\0', len);
	if (nul) {
		unsigned long line = 1;
		for (const char *q = xml; q < nul; q++)
			line += *q == '\n';
		err_say(why, whylen, "line %lu: NUL byte (not UTF-8 text)",
			line);
		return ERR_INVAL;
	}

	memset(&c, 0, sizeof(c));
	c.why = why;
	c.whylen = whylen;
	c.leaf = -1;
	c.p = XML_ParserCreate("UTF-8");
	if (!c.p) {
		err_say(why, whylen, "out of memory");
		return ERR_NOMEM;
	}
	XML_SetUserData(c.p, &c);
	XML_SetParamEntityParsing(c.p, XML_PARAM_ENTITY_PARSING_NEVER);
	XML_SetElementHandler(c.p, on_start, on_end);
	XML_SetCharacterDataHandler(c.p, on_text);
	XML_SetStartDoctypeDeclHandler(c.p, on_doctype);
	XML_SetEntityDeclHandler(c.p, on_entity);
	XML_SetExternalEntityRefHandler(c.p, on_extref);
	XML_SetProcessingInstructionHandler(c.p, on_pi);
	XML_SetXmlDeclHandler(c.p, on_xmldecl);

	enum XML_Status st = XML_Parse(c.p, xml, (int)len, XML_TRUE);
	if (st != XML_STATUS_OK && c.err == ERR_OK) {
		enum XML_Error code = XML_GetErrorCode(c.p);
		c.err = code == XML_ERROR_NO_MEMORY ? ERR_NOMEM : ERR_INVAL;
		err_say(why, whylen, "line %lu: XML syntax: %s",
			(unsigned long)XML_GetCurrentLineNumber(c.p),
			XML_ErrorString(code));
	}
	XML_ParserFree(c.p);
	if (c.err != ERR_OK)
		return c.err;
	*out = c.cd;
	return ERR_OK;
}
