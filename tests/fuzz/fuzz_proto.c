/*
 * fuzz_proto — libFuzzer harness for agent/proto.c: proto_parse() of the
 * input as one control message of the COM link. Aborts on any broken
 * promise of proto.h: on failure *out NULL, ERR_INVAL/ERR_LIMIT only,
 * bad_id in range, why a non-empty NUL-terminated printable ASCII text;
 * on success bad_id 0, a valid type and id/re, every accessor
 * (proto_str/int/bool/count) on the paths the agent reads answering
 * sanely, and a round trip of every string, integer and array element
 * found through the writer (proto_w_*, into the headroom too) and back
 * through proto_parse() giving the same values.
 *
 * Built and run by `make fuzz` (tests/fuzz/corpus/proto is the seed
 * corpus); LEJP comes from build/deps/host/lws/lib/libwebsockets.a, so
 * only agent/ code is coverage-instrumented.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "proto.h"

/* Every string path the agent looks up (grep proto_str agent/). */
static const char *const paths[] = {
	"reason", "message", "job", "op", "state", "host", "session", "user",
	"what", "kind", "stream", "system", "sha256", "window",
	"args.manifest", "args.signature", "args.vmpro", "args.backup",
	"args.sha256", "args.name", "customdata.level", "a.b.c.d.e.f.g",
};
static const char *const ints[] = {
	"port", "size", "offset", "bytes", "window", "progress", "stream",
	"max_streams", "uptime", "args.n",
};
static const char *const bools[] = {
	"acked", "local", "phones", "args.prune", "args.restart_phones",
	"args.allow_downgrade",
};
static const char *const arrays[] = { "args.elements", "elements", "args" };

#define NPATHS (sizeof(paths) / sizeof(paths[0]))
#define NINTS (sizeof(ints) / sizeof(ints[0]))
/* The refusal text checked below names the cap. */
_Static_assert(PROTO_MAX_FIELDS == 64, "update \"more than 64 fields\"");
#define NARR (sizeof(arrays) / sizeof(arrays[0]))
#define MAXEL 64

static struct proto_w *w;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_init("proto");
	w = proto_w_new(PROTO_MAX_MSG * 2, 16);
	FZ_CHECK(w);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_msg *m = (struct proto_msg *)1, *m2 = NULL;
	const char *sv[NPATHS], *el[NARR][MAXEL];
	int count[NARR];
	char why[128], key[16];
	int64_t bad = -1, iv[NINTS];
	bool has_int[NINTS];
	bool bv;
	char *out;
	size_t outlen, nfields;
	err_t e;

	memset(why, 'x', sizeof(why));
	e = proto_parse((const char *)data, size, &m, &bad, why, sizeof(why));
	FZ_CHECK(memchr(why, '\0', sizeof(why)));
	if (e != ERR_OK) {
		FZ_CHECK(m == NULL);
		FZ_CHECK(e == ERR_INVAL || e == ERR_LIMIT);
		FZ_CHECK(bad >= 0 && bad <= PROTO_MAX_ID);
		FZ_CHECK(size <= PROTO_MAX_MSG || e == ERR_LIMIT);
		FZ_CHECK(why[0] != '\0');
		for (const char *p = why; *p; p++)
			FZ_CHECK(*p >= 0x20 && *p <= 0x7e);
		return 0;
	}
	FZ_CHECK(m != NULL && bad == 0);
	FZ_CHECK(size <= PROTO_MAX_MSG);

	const char *type = proto_type(m);
	int64_t id = proto_id(m), re = proto_re(m);

	FZ_CHECK(type && *type && strlen(type) <= PROTO_MAX_TYPE);
	FZ_CHECK(id >= 1 && id <= PROTO_MAX_ID);
	FZ_CHECK(re >= 0 && re <= PROTO_MAX_ID);
	for (size_t i = 0; i < NINTS; i++)
		has_int[i] = proto_int(m, ints[i], &iv[i]);
	for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++)
		(void)proto_bool(m, bools[i], &bv);
	for (size_t i = 0; i < NPATHS; i++) {
		sv[i] = proto_str(m, paths[i]);
		if (sv[i]) {
			FZ_CHECK(strlen(sv[i]) <= PROTO_MAX_STR);
			FZ_CHECK(proto_utf8_valid(sv[i], strlen(sv[i])));
			(void)proto_reason_text(sv[i]);
		}
	}
	for (size_t a = 0; a < NARR; a++) {
		count[a] = proto_count(m, arrays[a]);
		FZ_CHECK(count[a] >= 0 && count[a] <= PROTO_MAX_FIELDS);
		if (count[a] > MAXEL)
			count[a] = MAXEL;
		for (int i = 0; i < count[a]; i++) {
			char p[PROTO_MAX_PATH + 16];

			snprintf(p, sizeof(p), "%s.%d", arrays[a], i);
			el[a][i] = proto_str(m, p);
			FZ_CHECK(el[a][i] != NULL);
		}
	}

	/* Round trip: write what was found, parse it back. */
	proto_w_begin(w, type, id);
	if (re)
		proto_w_int(w, "re", re);
	nfields = 3 + (re != 0) + 1 + NARR;	/* type, id, re, arr, a0.. */
	for (size_t i = 0; i < NPATHS; i++) {
		if (!sv[i])
			continue;
		snprintf(key, sizeof(key), "s%zu", i);
		proto_w_str(w, key, sv[i]);
		nfields++;
	}
	proto_w_obj(w, "ints");
	nfields++;
	for (size_t i = 0; i < NINTS; i++) {
		if (!has_int[i])
			continue;
		snprintf(key, sizeof(key), "i%zu", i);
		proto_w_int(w, key, iv[i]);
		nfields++;
	}
	proto_w_end(w);
	proto_w_obj(w, "arr");
	for (size_t a = 0; a < NARR; a++) {
		snprintf(key, sizeof(key), "a%zu", a);
		proto_w_arr(w, key);
		for (int i = 0; i < count[a]; i++)
			proto_w_str(w, NULL, el[a][i]);
		nfields += (size_t)count[a];
		proto_w_end(w);
	}
	proto_w_end(w);
	e = proto_w_finish(w, &out, &outlen);
	FZ_CHECK(e == ERR_OK);
	FZ_CHECK(strlen(out) == outlen);
	FZ_CHECK(proto_utf8_valid(out, outlen));
	memset(out - 16, 'x', 16);	/* the headroom is ours */
	e = proto_parse(out, outlen, &m2, NULL, why, sizeof(why));
	if (e != ERR_OK) {
		/* Only the field cap may refuse what the writer made from a
		 * parsed message (the copy can hold more fields). */
		if (nfields <= PROTO_MAX_FIELDS)
			fprintf(stderr, "round trip refused: %s\n%s\n", why,
				out);
		FZ_CHECK(nfields > PROTO_MAX_FIELDS);
		if (strcmp(why, "more than 64 fields") &&
		    strcmp(why, "message too complex"))
			fprintf(stderr, "refused: %s\n", why);
		FZ_CHECK(!strcmp(why, "more than 64 fields") ||
			 !strcmp(why, "message too complex"));
		proto_msg_free(m);
		return 0;
	}
	FZ_CHECK(!strcmp(proto_type(m2), type));
	FZ_CHECK(proto_id(m2) == id);
	FZ_CHECK(proto_re(m2) == re);
	for (size_t i = 0; i < NPATHS; i++) {
		const char *s2;

		snprintf(key, sizeof(key), "s%zu", i);
		s2 = proto_str(m2, key);
		FZ_CHECK((s2 == NULL) == (sv[i] == NULL));
		FZ_CHECK(!s2 || !strcmp(s2, sv[i]));
	}
	for (size_t i = 0; i < NINTS; i++) {
		int64_t v2;

		snprintf(key, sizeof(key), "ints.i%zu", i);
		FZ_CHECK(proto_int(m2, key, &v2) == has_int[i]);
		FZ_CHECK(!has_int[i] || v2 == iv[i]);
	}
	for (size_t a = 0; a < NARR; a++) {
		char p[32];

		snprintf(p, sizeof(p), "arr.a%zu", a);
		FZ_CHECK(proto_count(m2, p) == count[a]);
		for (int i = 0; i < count[a]; i++) {
			char q[48];

			snprintf(q, sizeof(q), "%s.%d", p, i);
			FZ_CHECK(!strcmp(proto_str(m2, q), el[a][i]));
		}
	}
	proto_msg_free(m2);
	proto_msg_free(m);
	return 0;
}
