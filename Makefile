# comagent — build, test, demo, install. Plain GNU make.
#
#   make                 build/host/comagent (optimised, what gets installed)
#   make check           unit + integration tests, ASan+UBSan build
#   make check-unit      cmocka unit tests only
#   make check-integration [K=expr]   pytest integration tests (-k expr)
#   make demo            the agent against the bundled COM simulator
#   make fuzz [FUZZ_TIME=60] [FUZZ_TARGETS=...]   libFuzzer harnesses
#   make fuzz-smoke      the same, 10 s each (CI)
#   make soak [SOAK_SECONDS=3600] [SOAK_TOOLS="asan valgrind"]   mixed work
#                        against a misbehaving comsim, under ASan / memcheck
#   make soak-ci         the same, 300 s each (CI)
#   make bench [BENCH_ARGS=...]   comagent beside ssh -L, socat, tar, gzip (not in check)
#   make install DESTDIR=... PREFIX=... HOOKSDIR=...
#   make deb             build/deb/comagent_<version>_<arch>.deb (packaging/deb)
#
#   make TARGET=armhf|armel [all|check-unit|size|install]
#                        static cross build for the ARM appliance, see
#                        cross/rules.mk (deps: scripts/cross-deps.sh)
#
# Missing Debian packages are installed by scripts/deps.sh; libwebsockets is
# built on mbedTLS from Debian's source package into build/deps (cached).

VERSION   := 0.1.0
# The Debian package (make deb): its version is packaging/deb/changelog's.
DEB_VERSION := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' packaging/deb/changelog)
DEB_ARCH  := $(shell dpkg --print-architecture 2>/dev/null)
DEB       := build/deb/comagent_$(DEB_VERSION)_$(DEB_ARCH).deb
PREFIX    ?= /usr/local
DESTDIR   ?=
# The platform hooks; the agent's default [jobs] hooks_dir.
HOOKSDIR  ?= /usr/libexec/comagent
PYTHON    := /usr/bin/python3
CC        ?= cc

LWS_HOST  := build/deps/host/lws
DEPS_OK   := build/deps/.apt-ok

# Cross builds: cross/<target>.mk names the toolchain, CPU flags, sysroot.
TARGET    ?=
ifneq ($(TARGET),)
ifeq ($(wildcard cross/$(TARGET).mk),)
$(error TARGET=$(TARGET): no cross/$(TARGET).mk (known: $(filter-out rules,$(basename $(notdir $(wildcard cross/*.mk))))))
endif
include cross/$(TARGET).mk
endif
# Our lws prefix's include dir comes first (Debian's OpenSSL lws_config.h
# must never win).
LWS_INC   := $(if $(TARGET),$(CROSS_DEPS)/lws,$(LWS_HOST))/include

SRCS      := $(wildcard agent/*.c) $(wildcard platform/*.c)
LIB_SRCS  := $(filter-out agent/main.c,$(SRCS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)

WARN      := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wstrict-prototypes
BASE_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L \
	-DCOMAGENT_VERSION=\"$(VERSION)\" $(WARN) -MMD -MP \
	-I$(LWS_INC) -Iagent -Iplatform
LIBS      := $(LWS_HOST)/lib/libwebsockets.a -lmbedtls -lmbedx509 -lmbedcrypto \
	-linih -lpthread -lz -lexpat -larchive

HOST_CFLAGS := $(BASE_CFLAGS) -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2
# Full RELRO: the GOT is read-only before main() (the installed daemon
# parses what the network sends; lintian's hardening-no-bindnow).
HOST_LDFLAGS := -Wl,-z,relro -Wl,-z,now
# The test build also answers the control socket's test-only requests.
ASAN_CFLAGS := $(BASE_CFLAGS) -DCOMAGENT_TESTING -O1 -g -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined

# Everything the host install and the appliance install have in common.
define install-data
	install -D -m 0600 config/comagent.ini.example \
		$(DESTDIR)/etc/comagent/comagent.ini.example
	install -d $(DESTDIR)/lib/systemd/system
	sed 's|@BINDIR@|$(PREFIX)/bin|g' config/comagent.service.in \
		> $(DESTDIR)/lib/systemd/system/comagent.service
	sed 's|@BINDIR@|$(PREFIX)/bin|g' config/comagent-hooks@.service.in \
		> $(DESTDIR)/lib/systemd/system/comagent-hooks@.service
	install -m 0644 config/comagent-hooks.socket $(DESTDIR)/lib/systemd/system/
	chmod 0644 $(DESTDIR)/lib/systemd/system/comagent*.service
	for p in linux ip500v2; do \
		install -d $(DESTDIR)$(HOOKSDIR)/$$p && \
		install -m 0755 scripts/$$p/* $(DESTDIR)$(HOOKSDIR)/$$p/ || exit 1; \
	done
	install -D -m 0644 scripts/lib/hooklib.sh $(DESTDIR)$(HOOKSDIR)/lib/hooklib.sh
endef

# V=1 shows the full command lines.
Q := $(if $(V),,@)

ifneq ($(TARGET),)
include cross/rules.mk
else
.PHONY: all check check-unit check-integration demo install clean deps lws
all: build/host/comagent

deps: $(DEPS_OK)
$(DEPS_OK): scripts/deps.sh
	@scripts/deps.sh
	@mkdir -p $(@D) && touch $@

lws: $(LWS_HOST)/lib/libwebsockets.a
$(LWS_HOST)/lib/libwebsockets.a: scripts/build-lws.sh $(wildcard scripts/lws-*.patch) | $(DEPS_OK)
	@scripts/build-lws.sh $(LWS_HOST)

# One object tree per variant; every object waits for lws (its headers).
build/host/obj/%.o: %.c | $(LWS_HOST)/lib/libwebsockets.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(HOST_CFLAGS) -c $< -o $@
build/asan/obj/%.o: %.c | $(LWS_HOST)/lib/libwebsockets.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC/asan $<")
	$(Q)$(CC) $(ASAN_CFLAGS) -c $< -o $@

HOST_OBJS := $(SRCS:%.c=build/host/obj/%.o)
ASAN_OBJS := $(SRCS:%.c=build/asan/obj/%.o)
ASAN_LIB_OBJS := $(LIB_SRCS:%.c=build/asan/obj/%.o)

build/host/comagent: $(HOST_OBJS) $(LWS_HOST)/lib/libwebsockets.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(HOST_CFLAGS) $(HOST_LDFLAGS) -o $@ $(HOST_OBJS) $(LIBS)
build/asan/comagent: $(ASAN_OBJS) $(LWS_HOST)/lib/libwebsockets.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(ASAN_CFLAGS) -o $@ $(ASAN_OBJS) $(LIBS)

# Unit tests: each test_X.c links against every module but main.
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/asan/tests/%)
build/asan/tests/%: build/asan/obj/tests/unit/%.o $(ASAN_LIB_OBJS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(ASAN_CFLAGS) -o $@ $^ $(LIBS) -lcmocka

check-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# The package test (test_package.py) installs $(DEB), built from build/host.
check-integration: build/asan/comagent $(DEB) | $(DEPS_OK)
	COMAGENT_BIN=$(CURDIR)/build/asan/comagent $(PYTHON) -m pytest -q \
		tests/comsim tests/integration $(if $(K),-k '$(K)')

check: check-unit check-integration

demo: build/host/comagent | $(DEPS_OK)
	@scripts/demo.sh build/host/comagent

# libFuzzer harnesses (tests/fuzz/fuzz_<name>.c), built with clang and
# ASan+UBSan into build/fuzz/ (scripts/deps.sh fuzz installs clang-14).
# `make fuzz` runs each for FUZZ_TIME seconds (default 60) on a copy of its
# seed corpus tests/fuzz/corpus/<name> in build/fuzz/work/<name>; a crash
# fails the target and leaves build/fuzz/crash-<name>-* (reproduce with
# build/fuzz/fuzz_<name> FILE). `make fuzz-smoke` is the same with
# FUZZ_TIME=10 (CI). FUZZ_TARGETS=... picks some; -j2 runs two at a time.
FUZZ_TARGETS ?= proto customdata customtar conf intake manifest job settings logstore hookrun tunnel
FUZZ_TIME ?= 60
FUZZ_CC   ?= clang-14
FUZZ_OK   := build/fuzz/.deps-ok
FUZZ_SAN  := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := $(BASE_CFLAGS) -O1 -g \
	-fno-omit-frame-pointer $(FUZZ_SAN)
FUZZ_LIB  := build/fuzz/libcomagent.a
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=build/fuzz/obj/%.o)
# -max_len per target: above each module's own cap where that is cheap
# (so the limit paths run), else a few KiB of the interesting part.
FUZZ_MAXLEN_proto      := 8192
FUZZ_MAXLEN_customdata := 8192
FUZZ_MAXLEN_customtar  := 65536
FUZZ_MAXLEN_conf       := 8192
FUZZ_MAXLEN_intake     := 8192
FUZZ_MAXLEN_manifest   := 6144
FUZZ_MAXLEN_job        := 16384
FUZZ_MAXLEN_settings   := 8192
FUZZ_MAXLEN_logstore   := 8192
FUZZ_MAXLEN_hookrun    := 8192
FUZZ_MAXLEN_tunnel     := 1024
FUZZ_FLAGS ?= -timeout=20 -rss_limit_mb=1024 -print_final_stats=1

.PHONY: fuzz fuzz-smoke fuzz-build
$(FUZZ_OK): scripts/deps.sh
	@scripts/deps.sh fuzz
	@mkdir -p $(@D) && touch $@
build/fuzz/obj/%.o: %.c | $(FUZZ_OK) $(LWS_HOST)/lib/libwebsockets.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC/fuzz $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^
build/fuzz/fuzz_%: build/fuzz/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB) \
		$(LWS_HOST)/lib/libwebsockets.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB) \
		$(LIBS)
fuzz-build: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
# One run per target; the corpus copy keeps tests/fuzz/corpus clean.
fuzz-run-%: build/fuzz/fuzz_%
	@rm -rf build/fuzz/work/$* && mkdir -p build/fuzz/work/$*
	@cp tests/fuzz/corpus/$*/* build/fuzz/work/$*/
	@echo "== fuzz $* ($(FUZZ_TIME) s)"
	@if build/fuzz/fuzz_$* $(FUZZ_FLAGS) -max_total_time=$(FUZZ_TIME) \
		-max_len=$(FUZZ_MAXLEN_$*) \
		-artifact_prefix=build/fuzz/crash-$*- build/fuzz/work/$* \
		> build/fuzz/$*.log 2>&1; then \
		grep -h '^stat::number_of_executed_units' build/fuzz/$*.log | \
			sed 's/^stat::number_of_executed_units: */== fuzz $*: ok, /; s/$$/ executions/'; \
	else \
		tail -n 60 build/fuzz/$*.log; \
		echo "== fuzz $*: FAILED, see build/fuzz/$*.log and" \
			build/fuzz/crash-$*-*; \
		exit 1; \
	fi
fuzz: $(FUZZ_TARGETS:%=fuzz-run-%)
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_TIME=10

# Soak (tests/soak/soak.py): SOAK_SECONDS (default an hour) of mixed work —
# reconnects, stalls, tunnels, backups and transfers with upload/download
# faults, log uploads, custom-file refreshes, bad input — against a
# misbehaving comsim, once per tool of SOAK_TOOLS, one after the other:
# asan (build/asan/comagent) and valgrind memcheck (build/host/comagent:
# -O2 -g, no sanitizer). Each writes build/soak/<tool>.json (and the
# agent's, valgrind's and comsim's logs beside it) and prints a table; it
# fails on an unexpected outcome, a sanitizer report, a memcheck error or
# leak, or RSS / heap growth after the warm-up. scripts/deps.sh soak
# installs valgrind and gdb (which reads ASan's heap count in the agent).
# SOAK_SEED=N seeds the random choices (the lanes' timing still varies);
# SOAK_ARGS passes more options. `make soak-ci`: both, 300 s each (CI).
SOAK_SECONDS ?= 3600
SOAK_TOOLS ?= asan valgrind
SOAK_SEED ?=
SOAK_ARGS ?=
SOAK_BIN_asan := build/asan/comagent
SOAK_BIN_valgrind := build/host/comagent
SOAK_OK   := build/soak/.deps-ok

.PHONY: soak soak-ci
$(SOAK_OK): scripts/deps.sh
	@scripts/deps.sh soak
	@mkdir -p $(@D) && touch $@
soak: $(foreach t,$(SOAK_TOOLS),$(SOAK_BIN_$(t))) | $(DEPS_OK) $(SOAK_OK)
	@rc=0; for t in $(SOAK_TOOLS); do \
		case $$t in \
		asan) b=$(SOAK_BIN_asan) ;; \
		valgrind) b=$(SOAK_BIN_valgrind) ;; \
		*) echo "SOAK_TOOLS: unknown tool '$$t' (asan, valgrind)"; exit 2 ;; \
		esac; \
		echo "== soak $$t ($(SOAK_SECONDS) s)"; \
		$(PYTHON) tests/soak/soak.py --tool $$t --bin $$b \
			--seconds $(SOAK_SECONDS) $(if $(SOAK_SEED),--seed $(SOAK_SEED)) \
			$(SOAK_ARGS) || rc=1; \
	done; exit $$rc
soak-ci:
	@$(MAKE) --no-print-directory soak SOAK_SECONDS=300

install: build/host/comagent build/man/comagent.8
	install -D -s -m 0755 build/host/comagent $(DESTDIR)$(PREFIX)/bin/comagent
	install -d $(DESTDIR)$(PREFIX)/share/man/man8
	gzip -9n -c build/man/comagent.8 > $(DESTDIR)$(PREFIX)/share/man/man8/comagent.8.gz
	chmod 0644 $(DESTDIR)$(PREFIX)/share/man/man8/comagent.8.gz
	$(install-data)

# comagent(8), generated by scripts/mkman.py from the built agent (--help,
# help COMMAND, config-keys) and the comments of the example configuration,
# so it lists every command and key there is. Its date is the release's
# (packaging/deb/changelog), so it does not change from build to build.
MAN_DATE = $(shell date -u -d @$$(dpkg-parsechangelog -l packaging/deb/changelog -S Timestamp) +%Y-%m-%d)
build/man/comagent.8: build/host/comagent scripts/mkman.py \
		config/comagent.ini.example packaging/deb/changelog
	@mkdir -p $(@D)
	@$(if $(Q),echo "  MAN     $@")
	$(Q)$(PYTHON) scripts/mkman.py --bin build/host/comagent \
		--example config/comagent.ini.example --hooks-dir $(HOOKSDIR) \
		--date $(MAN_DATE) --out $@

# make deb: build/deb/comagent_<version>_<arch>.deb for Linux servers, from
# `make install DESTDIR=build/deb/root PREFIX=/usr` and packaging/deb/ (the
# control template, maintainer scripts, copyright, changelog; README there
# says what the package does and why lintian's remaining tags stay). The
# version is packaging/deb/changelog's; build.sh checks it against VERSION.
# (DEB itself is defined at the top: check-integration depends on it.)
DEB_INPUTS := Makefile $(wildcard packaging/deb/*) $(wildcard config/*) \
	$(wildcard scripts/linux/* scripts/ip500v2/* scripts/lib/*) \
	README.md scripts/HOOKS.md
.PHONY: deb
deb: $(DEB)
$(DEB): build/host/comagent build/man/comagent.8 $(DEB_INPUTS)
	@rm -rf build/deb/root
	$(Q)umask 022 && $(MAKE) --no-print-directory install \
		DESTDIR=$(CURDIR)/build/deb/root PREFIX=/usr HOOKSDIR=/usr/libexec/comagent \
		$(if $(Q),>/dev/null)
	$(Q)packaging/deb/build.sh build/deb/root $@

clean:
	rm -rf build/host build/asan build/man build/deb

.SECONDARY:

-include $(shell find build/host build/asan -name '*.d' 2>/dev/null)
-include $(shell find build/fuzz -name '*.d' 2>/dev/null)
endif

# Benchmarks (tests/bench/bench.py), not part of check: comagent beside the
# tools people would use instead (direct TCP, ssh -L through OpenSSH's sshd,
# socat with TLS, tar -xf, gzip | socat) and the reconnect storm simulated
# on the agent's own back-off (build/bench/storm); a table on stdout and
# build/bench/results.json. BENCH_ARGS passes options (--runs, --mb ...).
BENCH_ARGS ?=
BENCH_OK := build/bench/.deps-ok
.PHONY: bench
$(BENCH_OK): scripts/deps.sh
	@scripts/deps.sh bench
	@mkdir -p $(@D) && touch $@
build/bench/storm: tests/bench/storm.c agent/backoff.c agent/backoff.h
	@mkdir -p $(@D)
	$(Q)$(CC) -std=c11 -O2 -Wall -Wextra -Werror -Iagent -o $@ \
		tests/bench/storm.c agent/backoff.c
bench: build/host/comagent build/bench/storm | $(DEPS_OK) $(BENCH_OK)
	$(PYTHON) tests/bench/bench.py $(BENCH_ARGS)
