/*
 * fuzz_customdata — libFuzzer harness for agent/customdata.c:
 * customdata_parse() of the input as IP Office's CustomData.xml (expat
 * underneath). Checks the documented contract: on error *out is all-zero
 * and why is NUL-terminated; on success customdata_vmpro() is one of its
 * four answers and a value is only set where present is.
 */
#include <stdint.h>
#include <string.h>

#include "customdata.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init("customdata");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct customdata zero;
	struct customdata cd;
	char why[200];
	const char *vm;
	err_t e;

	memset(&cd, 1, sizeof(cd));	/* all true: must be reset */
	memset(why, 'x', sizeof(why));
	e = customdata_parse((const char *)data, size, &cd, why, sizeof(why));
	FZ_CHECK(memchr(why, '\0', sizeof(why)));
	if (e != ERR_OK) {
		FZ_CHECK(e == ERR_INVAL || e == ERR_LIMIT || e == ERR_NOMEM);
		FZ_CHECK(!memcmp(&cd, &zero, sizeof(cd)));
		FZ_CHECK(why[0] != '\0');
		return 0;
	}
	FZ_CHECK(size <= CUSTOMDATA_MAX_BYTES);
	for (int k = 0; k < SET__COUNT; k++)
		FZ_CHECK(cd.present[k] || !cd.value[k]);
	for (int k = 0; k < CD_VM__COUNT; k++) {
		FZ_CHECK(cd.vm_present[k] || !cd.vm_value[k]);
		FZ_CHECK(customdata_vm_name((enum customdata_vm)k));
	}
	vm = customdata_vmpro(&cd);
	FZ_CHECK(!vm || !strcmp(vm, "none") || !strcmp(vm, "config") ||
		 !strcmp(vm, "full"));
	FZ_CHECK((vm == NULL) == (!cd.vm_present[0] && !cd.vm_present[1] &&
				  !cd.vm_present[2]));
	return 0;
}
