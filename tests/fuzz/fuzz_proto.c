/*
 * fuzz_proto — libFuzzer harness for agent/proto.c: proto_parse() on
 * arbitrary bytes, then every accepted message re-encoded with the writer
 * and parsed again. Aborts on any broken promise of proto.h (reason text
 * not NUL-terminated or not printable ASCII, bad_id out of range, a
 * message accepted with a bad type/id, a round trip that changes a value).
 *
 * Build from the repository root; LEJP is compiled in from source so that
 * it is instrumented too:
 *
 *   S=build/deps/src/libwebsockets-4.1.6 B=build/deps/host/lws.build
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -I$B -I$B/include -I$S/lib -I$S/lib/core -I$S/lib/plat/unix \
 *     -I$S/lib/core-net -I$S/lib/event-libs -I$S/lib/roles -I$S/lib/tls \
 *     -I$S/lib/system/smd -I$S/lib/system/async-dns -I$S/lib/roles/h1 \
 *     -I$S/lib/roles/http -I$S/lib/roles/ws -I$S/lib/tls/mbedtls \
 *     -I$S/lib/roles/raw-skt -I$S/lib/roles/raw-file \
 *     -I$S/lib/secure-streams -Iagent \
 *     tests/fuzz/fuzz_proto.c agent/proto.c agent/err.c $S/lib/misc/lejp.c \
 *     build/deps/host/lws/lib/libwebsockets.a \
 *     -lmbedtls -lmbedx509 -lmbedcrypto -lpthread -o build/fuzz_proto
 *   build/fuzz_proto -max_len=70000 -max_total_time=60 CORPUS_DIR
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_why(const char *why, size_t cap)
{
	size_t i;

	if (!memchr(why, '\0', cap) || !why[0])
		abort();
	for (i = 0; why[i]; i++)
		if (why[i] < 0x20 || why[i] > 0x7e)
			abort();
}

/* Re-encodes what the parser kept of the well-known fields and checks
 * that the writer's text parses back to the same values. */
static void round_trip(const struct proto_msg *m)
{
	static const char *const strs[] = { "reason", "message", "what",
					    "session", "job", "op" };
	static const char *const ints[] = { "stream", "window", "bytes",
					    "max_streams", "uptime" };
	struct proto_w *w = proto_w_new(PROTO_MAX_MSG, 16);
	struct proto_msg *m2 = NULL;
	const char *s, *s2;
	int64_t v, v2;
	char why[96], *buf;
	size_t i, len;
	err_t e;

	if (!w)
		abort();
	proto_w_begin(w, proto_type(m), proto_id(m));
	if (proto_re(m))
		proto_w_int(w, "re", proto_re(m));
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if ((s = proto_str(m, strs[i])))
			proto_w_str(w, strs[i], s);
	proto_w_obj(w, "args");
	for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
		if (proto_int(m, ints[i], &v))
			proto_w_int(w, ints[i], v);
	proto_w_end(w);
	e = proto_w_finish(w, &buf, &len);
	if (e != ERR_OK)
		abort();	/* decoded values never outgrow their source */
	buf[-16] = 'x';		/* headroom is ours */
	e = proto_parse(buf, len, &m2, NULL, why, sizeof(why));
	if (e != ERR_OK)
		abort();
	if (strcmp(proto_type(m), proto_type(m2)) ||
	    proto_id(m) != proto_id(m2) || proto_re(m) != proto_re(m2))
		abort();
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		s = proto_str(m, strs[i]);
		s2 = proto_str(m2, strs[i]);
		if (!s != !s2 || (s && strcmp(s, s2)))
			abort();
	}
	/* the integers went into a nested object */
	for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		char path[32];
		bool a = proto_int(m, ints[i], &v);
		bool b;

		snprintf(path, sizeof(path), "args.%s", ints[i]);
		b = proto_int(m2, path, &v2);
		if (a != b || (a && v != v2))
			abort();
	}
	proto_msg_free(m2);
	proto_w_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_msg *m = (struct proto_msg *)&m;
	char why[96];
	int64_t bad = -1;
	const char *t;
	err_t e;

	memset(why, 'x', sizeof(why));
	e = proto_parse((const char *)data, size, &m, &bad, why, sizeof(why));
	if (e != ERR_OK) {
		if (m || (e != ERR_INVAL && e != ERR_LIMIT))
			abort();
		if (bad < 0 || bad > PROTO_MAX_ID)
			abort();
		check_why(why, sizeof(why));
		return 0;
	}
	if (!m || bad != 0)
		abort();
	t = proto_type(m);
	if (!t || !t[0] || strlen(t) > PROTO_MAX_TYPE)
		abort();
	if (proto_id(m) < 1 || proto_id(m) > PROTO_MAX_ID ||
	    proto_re(m) < 0 || proto_re(m) > PROTO_MAX_ID)
		abort();
	round_trip(m);
	proto_msg_free(m);
	return 0;
}
