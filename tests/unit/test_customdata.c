/*
 * test_customdata — CustomData.xml: the guide's sample file, partial files,
 * and each rule broken with its exact why text; nothing applied from a bad
 * file (the result stays all-zero). Hostile inputs: XML bomb, external
 * entity, oversize, deep nesting, bad UTF-8, UTF-16.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "customdata.h"

static const char sample[] =
	"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
	"<customdata version=\"1\">\n"
	"  <security>\n"
	"    <centralmgmt>1</centralmgmt>\n"
	"    <centralcert>1</centralcert>\n"
	"    <remoteaccess>0</remoteaccess>\n"
	"    <remoteupgrade>1</remoteupgrade>\n"
	"    <logtransfer>1</logtransfer>\n"
	"    <externalremoteaccess>0</externalremoteaccess>\n"
	"  </security>\n"
	"  <vmpro>\n"
	"    <backupconfig>1</backupconfig>\n"
	"    <backupprompts>0</backupprompts>\n"
	"    <backupmailboxes>1</backupmailboxes>\n"
	"  </vmpro>\n"
	"</customdata>\n";

static const struct customdata zero;

static void parse_ok(const char *xml, struct customdata *cd)
{
	char why[256] = "x";

	assert_int_equal(customdata_parse(xml, strlen(xml), cd, why,
					  sizeof(why)), ERR_OK);
	assert_string_equal(why, "");
}

/* Parses a bad document of n bytes: the error, the why text, nothing set. */
static void bad_n(const char *xml, size_t n, err_t err, const char *expect)
{
	struct customdata cd;
	char why[256];

	memset(&cd, 0xff, sizeof(cd));
	assert_int_equal(customdata_parse(xml, n, &cd, why, sizeof(why)), err);
	assert_string_equal(why, expect);
	assert_memory_equal(&cd, &zero, sizeof(cd));
}

static void bad(const char *xml, err_t err, const char *expect)
{
	bad_n(xml, strlen(xml), err, expect);
}

static void test_sample(void **st)
{
	struct customdata cd;

	(void)st;
	parse_ok(sample, &cd);
	for (int k = 0; k < SET__COUNT; k++)
		assert_true(cd.present[k]);
	assert_true(cd.value[SET_CENTRALMGMT]);
	assert_true(cd.value[SET_CENTRALCERT]);
	assert_false(cd.value[SET_REMOTEACCESS]);
	assert_true(cd.value[SET_REMOTEUPGRADE]);
	assert_true(cd.value[SET_LOGTRANSFER]);
	assert_false(cd.value[SET_EXTERNALREMOTEACCESS]);
	for (int k = 0; k < CD_VM__COUNT; k++)
		assert_true(cd.vm_present[k]);
	assert_true(cd.vm_value[CD_VM_BACKUPCONFIG]);
	assert_false(cd.vm_value[CD_VM_BACKUPPROMPTS]);
	assert_true(cd.vm_value[CD_VM_BACKUPMAILBOXES]);
	assert_string_equal(customdata_vmpro(&cd), "full");
	assert_string_equal(customdata_vm_name(CD_VM_BACKUPPROMPTS),
			    "backupprompts");
	assert_null(customdata_vm_name(CD_VM__COUNT));
}

static void test_partial(void **st)
{
	struct customdata cd;

	(void)st;
	/* only two settings, in another order, blanks around values, no
	 * XML declaration, vmpro first, a comment, a UTF-8 BOM */
	parse_ok("\xef\xbb\xbf<customdata version='1'><!-- c -->"
		 "<vmpro><backupprompts> 1\n</backupprompts></vmpro>"
		 "<security><remoteaccess>\t0 </remoteaccess>"
		 "<centralmgmt><![CDATA[1]]></centralmgmt></security>"
		 "</customdata>", &cd);
	assert_true(cd.present[SET_CENTRALMGMT]);
	assert_true(cd.value[SET_CENTRALMGMT]);
	assert_true(cd.present[SET_REMOTEACCESS]);
	assert_false(cd.value[SET_REMOTEACCESS]);
	assert_false(cd.present[SET_LOGTRANSFER]);
	assert_false(cd.present[SET_REMOTEUPGRADE]);
	assert_false(cd.present[SET_EXTERNALREMOTEACCESS]);
	assert_false(cd.present[SET_CENTRALCERT]);
	assert_true(cd.vm_present[CD_VM_BACKUPPROMPTS]);
	assert_false(cd.vm_present[CD_VM_BACKUPCONFIG]);
	assert_string_equal(customdata_vmpro(&cd), "config");

	/* security only: vmpro left as is */
	parse_ok("<customdata version=\"1\"><security>"
		 "<logtransfer>1</logtransfer></security></customdata>", &cd);
	assert_true(cd.present[SET_LOGTRANSFER]);
	assert_true(cd.value[SET_LOGTRANSFER]);
	assert_null(customdata_vmpro(&cd));

	/* vmpro all off */
	parse_ok("<customdata version=\"1\"><vmpro>"
		 "<backupconfig>0</backupconfig></vmpro></customdata>", &cd);
	assert_string_equal(customdata_vmpro(&cd), "none");
	for (int k = 0; k < SET__COUNT; k++)
		assert_false(cd.present[k]);

	/* empty root, empty sections */
	parse_ok("<customdata version=\"1\"/>", &cd);
	assert_memory_equal(&cd, &zero, sizeof(cd));
	parse_ok("<customdata version=\"1\"><security/><vmpro>\n</vmpro>"
		 "</customdata>", &cd);
	assert_memory_equal(&cd, &zero, sizeof(cd));
	assert_null(customdata_vmpro(&cd));
	assert_null(customdata_vmpro(NULL));
}

static void test_malformed(void **st)
{
	(void)st;
	bad("<customdata version=\"1\">\n<security>\n</customdata>\n",
	    ERR_INVAL, "line 3: XML syntax: mismatched tag");
	bad("<customdata version=\"1\"><security>", ERR_INVAL,
	    "line 1: XML syntax: no element found");
	bad("garbage", ERR_INVAL, "line 1: XML syntax: syntax error");
	bad("", ERR_INVAL, "line 1: XML syntax: no element found");
	bad("<customdata version=\"1\"/><customdata version=\"1\"/>", ERR_INVAL,
	    "line 1: XML syntax: junk after document element");
	bad_n("<customdata version=\"1\">\n\0</customdata>", 38, ERR_INVAL,
	      "line 2: NUL byte (not UTF-8 text)");
	bad("<customdata version=\"1\">&foo;</customdata>", ERR_INVAL,
	    "line 1: XML syntax: undefined entity");
	/* a syntax error after a valid part still applies nothing */
	bad("<customdata version=\"1\"><security><centralmgmt>1</centralmgmt>"
	    "</security>\n<", ERR_INVAL,
	    "line 2: XML syntax: unclosed token");
}

static void test_root_version(void **st)
{
	(void)st;
	bad("<data version=\"1\"/>", ERR_INVAL,
	    "line 1: root element must be <customdata>, not <data>");
	bad("<CustomData version=\"1\"/>", ERR_INVAL,
	    "line 1: root element must be <customdata>, not <CustomData>");
	bad("<security><centralmgmt>1</centralmgmt></security>", ERR_INVAL,
	    "line 1: root element must be <customdata>, not <security>");
	bad("<customdata>\n</customdata>", ERR_INVAL,
	    "line 1: <customdata> needs version=\"1\"");
	bad("\n<customdata version=\"2\"/>", ERR_INVAL,
	    "line 2: unsupported version '2' (only \"1\")");
	bad("<customdata version=\" 1\"/>", ERR_INVAL,
	    "line 1: unsupported version ' 1' (only \"1\")");
	bad("<customdata version=\"\"/>", ERR_INVAL,
	    "line 1: unsupported version '' (only \"1\")");
}

static void test_unknown(void **st)
{
	(void)st;
	bad("<customdata version=\"1\">\n<security>\n"
	    "<centralmgmt>1</centralmgmt>\n<foo>1</foo>\n</security>"
	    "</customdata>", ERR_INVAL,
	    "line 4: unknown element <foo> in <security>");
	bad("<customdata version=\"1\"><settings/></customdata>", ERR_INVAL,
	    "line 1: unknown element <settings> in <customdata>");
	bad("<customdata version=\"1\"><vmpro><centralmgmt>1</centralmgmt>"
	    "</vmpro></customdata>", ERR_INVAL,
	    "line 1: unknown element <centralmgmt> in <vmpro>");
	bad("<customdata version=\"1\"><security><CentralMgmt>1"
	    "</CentralMgmt></security></customdata>", ERR_INVAL,
	    "line 1: unknown element <CentralMgmt> in <security>");
	/* a leaf directly under the root */
	bad("<customdata version=\"1\"><centralmgmt>1</centralmgmt>"
	    "</customdata>", ERR_INVAL,
	    "line 1: unknown element <centralmgmt> in <customdata>");
	bad("<customdata version=\"1\"><security><centralmgmt><b>1</b>"
	    "</centralmgmt></security></customdata>", ERR_INVAL,
	    "line 1: element <b> not allowed inside <centralmgmt>");
	bad("<customdata version=\"1\"><?php x?></customdata>", ERR_INVAL,
	    "line 1: processing instructions not allowed");
}

static void test_attributes(void **st)
{
	(void)st;
	bad("<customdata version=\"1\" x=\"y\"/>", ERR_INVAL,
	    "line 1: unknown attribute 'x' on <customdata>");
	bad("<customdata xmlns=\"urn:x\" version=\"1\"/>", ERR_INVAL,
	    "line 1: unknown attribute 'xmlns' on <customdata>");
	bad("<customdata version=\"1\">\n<security on=\"1\"/></customdata>",
	    ERR_INVAL, "line 2: unknown attribute 'on' on <security>");
	bad("<customdata version=\"1\"><vmpro><backupconfig v=\"1\">1"
	    "</backupconfig></vmpro></customdata>", ERR_INVAL,
	    "line 1: unknown attribute 'v' on <backupconfig>");
	bad("<customdata version=\"1\" version=\"1\"/>", ERR_INVAL,
	    "line 1: XML syntax: duplicate attribute");
}

static void test_duplicate(void **st)
{
	(void)st;
	bad("<customdata version=\"1\"><security>\n"
	    "<centralmgmt>1</centralmgmt>\n<centralmgmt>1</centralmgmt>\n"
	    "</security></customdata>", ERR_INVAL,
	    "line 3: duplicate <centralmgmt> (first at line 2)");
	bad("<customdata version=\"1\">\n<security/>\n<security/>"
	    "</customdata>", ERR_INVAL,
	    "line 3: duplicate <security> (first at line 2)");
	bad("<customdata version=\"1\"><vmpro/>\n\n<vmpro/></customdata>",
	    ERR_INVAL, "line 3: duplicate <vmpro> (first at line 1)");
	bad("<customdata version=\"1\"><vmpro><backupprompts>1</backupprompts>"
	    "<backupprompts>1</backupprompts></vmpro></customdata>", ERR_INVAL,
	    "line 1: duplicate <backupprompts> (first at line 1)");
}

static void test_values(void **st)
{
	(void)st;
	bad("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
	    "<customdata version=\"1\">\n  <security>\n"
	    "    <centralmgmt>1</centralmgmt>\n"
	    "    <centralcert>1</centralcert>\n"
	    "    <logtransfer>1</logtransfer>\n"
	    "    <remoteaccess>yes</remoteaccess>\n"
	    "  </security>\n</customdata>\n", ERR_INVAL,
	    "line 7: <remoteaccess> must be 0 or 1, not 'yes'");
	bad("<customdata version=\"1\"><security><centralmgmt></centralmgmt>"
	    "</security></customdata>", ERR_INVAL,
	    "line 1: <centralmgmt> must be 0 or 1, not ''");
	bad("<customdata version=\"1\"><security><centralmgmt>  </centralmgmt>"
	    "</security></customdata>", ERR_INVAL,
	    "line 1: <centralmgmt> must be 0 or 1, not ''");
	bad("<customdata version=\"1\"><security><centralmgmt>2</centralmgmt>"
	    "</security></customdata>", ERR_INVAL,
	    "line 1: <centralmgmt> must be 0 or 1, not '2'");
	bad("<customdata version=\"1\"><security><centralmgmt>01</centralmgmt>"
	    "</security></customdata>", ERR_INVAL,
	    "line 1: <centralmgmt> must be 0 or 1, not '01'");
	bad("<customdata version=\"1\"><security><centralmgmt>1 1"
	    "</centralmgmt></security></customdata>", ERR_INVAL,
	    "line 1: <centralmgmt> must be 0 or 1, not '1 1'");
	bad("<customdata version=\"1\"><vmpro><backupmailboxes>\n1<!-- -->0\n"
	    "</backupmailboxes></vmpro></customdata>", ERR_INVAL,
	    "line 1: <backupmailboxes> must be 0 or 1, not '10'");
	bad("<customdata version=\"1\"><security><centralmgmt>"
	    "111111111111111111111111111111111111111111111111111111"
	    "</centralmgmt></security></customdata>", ERR_INVAL,
	    "line 1: <centralmgmt> must be 0 or 1, not "
	    "'11111111111111111111111111111111...'");
	bad("<customdata version=\"1\"><security><centralmgmt>&#x31;&#x0a;x"
	    "</centralmgmt></security></customdata>", ERR_INVAL,
	    "line 1: <centralmgmt> must be 0 or 1, not '1?x'");
}

static void test_text(void **st)
{
	(void)st;
	bad("<customdata version=\"1\">\n<security>on\n"
	    "</security></customdata>", ERR_INVAL,
	    "line 2: text 'on' not allowed in <security>");
	bad("<customdata version=\"1\">1</customdata>", ERR_INVAL,
	    "line 1: text '1' not allowed in <customdata>");
	bad("<customdata version=\"1\"><vmpro>x<backupconfig>1</backupconfig>"
	    "</vmpro></customdata>", ERR_INVAL,
	    "line 1: text 'x' not allowed in <vmpro>");
}

static void test_doctype(void **st)
{
	(void)st;
	bad("<?xml version=\"1.0\"?>\n<!DOCTYPE customdata>\n"
	    "<customdata version=\"1\"/>", ERR_INVAL,
	    "line 2: DOCTYPE not allowed");
	bad("<!DOCTYPE customdata [\n<!ELEMENT customdata ANY>\n]>\n"
	    "<customdata version=\"1\"/>", ERR_INVAL,
	    "line 1: DOCTYPE not allowed");
}

static void test_bomb(void **st)
{
	static const char lol[] =
		"<?xml version=\"1.0\"?>\n"
		"<!DOCTYPE lolz [\n"
		" <!ENTITY lol \"lol\">\n"
		" <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
		" <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
		" <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
		" <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
		" <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
		" <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
		" <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
		" <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
		" <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
		"]>\n"
		"<customdata version=\"1\"><security><centralmgmt>&lol9;"
		"</centralmgmt></security></customdata>\n";

	(void)st;
	bad(lol, ERR_INVAL, "line 2: DOCTYPE not allowed");
}

static void test_external_entity(void **st)
{
	(void)st;
	bad("<?xml version=\"1.0\"?>\n"
	    "<!DOCTYPE customdata [\n"
	    "<!ENTITY xxe SYSTEM \"file:///etc/passwd\">\n]>\n"
	    "<customdata version=\"1\"><security><centralmgmt>&xxe;"
	    "</centralmgmt></security></customdata>", ERR_INVAL,
	    "line 2: DOCTYPE not allowed");
	bad("<!DOCTYPE customdata SYSTEM \"file:///etc/passwd\">\n"
	    "<customdata version=\"1\"/>", ERR_INVAL,
	    "line 1: DOCTYPE not allowed");
	bad("<!DOCTYPE customdata [<!ENTITY % p SYSTEM \"http://x/e.dtd\">"
	    "%p;]>\n<customdata version=\"1\"/>", ERR_INVAL,
	    "line 1: DOCTYPE not allowed");
}

static void test_size(void **st)
{
	static const char head[] = "<customdata version=\"1\">";
	static const char tail[] = "</customdata>";
	size_t max = CUSTOMDATA_MAX_BYTES;
	char *doc = malloc(max + 2);
	struct customdata cd;
	char why[256];

	(void)st;
	assert_non_null(doc);
	/* exactly 64 KiB, padded with blanks: accepted */
	memset(doc, ' ', max + 1);
	memcpy(doc, head, strlen(head));
	memcpy(doc + max - strlen(tail), tail, strlen(tail));
	doc[max] = '\0';
	assert_int_equal(customdata_parse(doc, max, &cd, why, sizeof(why)),
			 ERR_OK);
	/* one byte more: refused before parsing */
	memcpy(doc + max - strlen(tail), " ", 1);
	memcpy(doc + max + 1 - strlen(tail), tail, strlen(tail));
	bad_n(doc, max + 1, ERR_LIMIT, "document is 65537 bytes, more than "
	      "65536");
	free(doc);
}

static void test_deep(void **st)
{
	enum { N = 1000 };	/* under 64 KiB */
	char *doc = malloc(N * 30 + 64), *p = doc;

	(void)st;
	assert_non_null(doc);
	p += sprintf(p, "<customdata version=\"1\">");
	for (int i = 0; i < N; i++)
		p += sprintf(p, "<security>");
	for (int i = 0; i < N; i++)
		p += sprintf(p, "</security>");
	p += sprintf(p, "</customdata>");
	bad(doc, ERR_INVAL, "line 1: unknown element <security> in "
	    "<security>");
	/* nesting inside a leaf */
	p = doc;
	p += sprintf(p, "<customdata version=\"1\"><security><centralmgmt>");
	for (int i = 0; i < N; i++)
		p += sprintf(p, "<a>");
	bad(doc, ERR_INVAL, "line 1: element <a> not allowed inside "
	    "<centralmgmt>");
	/* nested roots */
	p = doc;
	for (int i = 0; i < N; i++)
		p += sprintf(p, "<customdata version=\"1\">");
	bad(doc, ERR_INVAL, "line 1: unknown element <customdata> in "
	    "<customdata>");
	free(doc);
}

static void test_utf8(void **st)
{
	(void)st;
	bad("<customdata version=\"1\"><security><centralmgmt>\xff"
	    "</centralmgmt></security></customdata>", ERR_INVAL,
	    "line 1: XML syntax: not well-formed (invalid token)");
	bad("<customdata version=\"1\">\n<!-- \xc3\x28 --></customdata>",
	    ERR_INVAL, "line 2: XML syntax: not well-formed (invalid token)");
	/* overlong '/' */
	bad("<customdata version=\"1\"><security>\xc0\xaf</security>"
	    "</customdata>", ERR_INVAL,
	    "line 1: XML syntax: not well-formed (invalid token)");
	/* valid UTF-8 in a value is just a bad value */
	bad("<customdata version=\"1\"><security><centralmgmt>\xc3\xa9"
	    "</centralmgmt></security></customdata>", ERR_INVAL,
	    "line 1: <centralmgmt> must be 0 or 1, not '?\?'");
}

static void test_encoding(void **st)
{
	static const char utf16le[] =
		"\xff\xfe<\0c\0u\0s\0t\0o\0m\0d\0a\0t\0a\0/\0>\0";
	static const char utf16be[] = "\xfe\xff\0<\0c\0/\0>";
	static const char utf32be[] = "\0\0\xfe\xff\0\0\0<";

	(void)st;
	bad_n(utf16le, sizeof(utf16le) - 1, ERR_INVAL,
	      "line 1: not UTF-8 (UTF-16 byte order mark)");
	bad_n(utf16be, sizeof(utf16be) - 1, ERR_INVAL,
	      "line 1: not UTF-8 (UTF-16 byte order mark)");
	bad_n(utf32be, sizeof(utf32be) - 1, ERR_INVAL,
	      "line 1: not UTF-8 (UTF-32 byte order mark)");
	bad("<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n"
	    "<customdata version=\"1\"/>", ERR_INVAL,
	    "line 1: encoding 'UTF-16' not allowed (UTF-8 only)");
	bad("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n"
	    "<customdata version=\"1\"/>", ERR_INVAL,
	    "line 1: encoding 'ISO-8859-1' not allowed (UTF-8 only)");
	/* UTF-16 without a BOM (expat would detect it): its NULs */
	bad_n("<\0c\0/\0>\0", 8, ERR_INVAL,
	      "line 1: NUL byte (not UTF-8 text)");
	bad_n("\0<\0c\0/\0>", 8, ERR_INVAL,
	      "line 1: NUL byte (not UTF-8 text)");
	struct customdata cd;
	parse_ok("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
		 "<customdata version=\"1\"/>", &cd);
}

static void test_args(void **st)
{
	struct customdata cd;
	char why[64];

	(void)st;
	assert_int_equal(customdata_parse(NULL, 0, &cd, why, sizeof(why)),
			 ERR_INVAL);
	assert_int_equal(customdata_parse(sample, strlen(sample), NULL, why,
					  sizeof(why)), ERR_INVAL);
	/* why may be absent; a small why is truncated, not overrun */
	assert_int_equal(customdata_parse("<x/>", 4, &cd, NULL, 0), ERR_INVAL);
	char tiny[8];
	assert_int_equal(customdata_parse("<x/>", 4, &cd, tiny, sizeof(tiny)),
			 ERR_INVAL);
	assert_string_equal(tiny, "line 1:");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sample),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_root_version),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_attributes),
		cmocka_unit_test(test_duplicate),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_doctype),
		cmocka_unit_test(test_bomb),
		cmocka_unit_test(test_external_entity),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_deep),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_encoding),
		cmocka_unit_test(test_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
