/*
 * fuzz_settings — libFuzzer harness for agent/settings.c: the input is
 * written as STATE_DIR/settings and settings_load()ed. Checks: *out is
 * always usable; a file over SETTINGS_FILE_MAX is all off; the result
 * renders (settings_render()) into SETTINGS_TEXT_MAX, and that text,
 * written and loaded again, is read back without a problem (ERR_OK) and
 * gives the same values. settings_lookup() of the input's first line must
 * agree with settings_name().
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "settings.h"

static char dir[512], file[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init("settings");
	snprintf(dir, sizeof(dir), "%s", fz_path("state"));
	snprintf(file, sizeof(file), "%s/settings", dir);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct settings *s = NULL, *s2 = NULL;
	char text[SETTINGS_TEXT_MAX], name[64];
	size_t n;
	int k;
	err_t e;

	if (size > SETTINGS_FILE_MAX * 2)
		return 0;
	n = 0;
	while (n < size && n < sizeof(name) - 1 && data[n] != '\n')
		n++;
	memcpy(name, data, n);
	name[n] = '\0';
	k = settings_lookup(name);
	FZ_CHECK(k >= -1 && k < SET__COUNT);
	FZ_CHECK(k < 0 || !strcmp(settings_name((enum setting)k), name));

	fz_empty(fz_dir);
	FZ_CHECK(mkdir(dir, 0700) == 0);
	fz_write(file, data, size, 0600);
	e = settings_load(dir, &s);
	FZ_CHECK(s != NULL);
	FZ_CHECK(e == ERR_OK || e == ERR_INVAL || e == ERR_IO);
	if (size > SETTINGS_FILE_MAX)
		for (k = 0; k < SET__COUNT; k++)
			FZ_CHECK(!settings_get(s, (enum setting)k));
	n = settings_render(s, text, sizeof(text));
	FZ_CHECK(n < sizeof(text) && strlen(text) == n);

	fz_write(file, text, n, 0600);
	e = settings_load(dir, &s2);
	FZ_CHECK(e == ERR_OK && s2 != NULL);
	for (k = 0; k < SET__COUNT; k++)
		FZ_CHECK(settings_get(s, (enum setting)k) ==
			 settings_get(s2, (enum setting)k));
	e = settings_reload(s);
	FZ_CHECK(e == ERR_OK);
	settings_free(s);
	settings_free(s2);
	fz_empty(fz_dir);
	return 0;
}
