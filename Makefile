# comagent — build, test, demo, install. Plain GNU make.
#
#   make                 build/host/comagent (optimised, what gets installed)
#   make check           unit + integration tests, ASan+UBSan build
#   make check-unit      cmocka unit tests only
#   make check-integration [K=expr]   pytest integration tests (-k expr)
#   make demo            the agent against the bundled COM simulator
#   make install DESTDIR=... PREFIX=... HOOKSDIR=...
#
#   make TARGET=armhf|armel [all|check-unit|size|install]
#                        static cross build for the ARM appliance, see
#                        cross/rules.mk (deps: scripts/cross-deps.sh)
#
# Missing Debian packages are installed by scripts/deps.sh; libwebsockets is
# built on mbedTLS from Debian's source package into build/deps (cached).

VERSION   := 0.1.0
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
	chmod 0644 $(DESTDIR)/lib/systemd/system/comagent.service
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
$(LWS_HOST)/lib/libwebsockets.a: scripts/build-lws.sh | $(DEPS_OK)
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
	$(Q)$(CC) $(HOST_CFLAGS) -o $@ $(HOST_OBJS) $(LIBS)
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

check-integration: build/asan/comagent | $(DEPS_OK)
	COMAGENT_BIN=$(CURDIR)/build/asan/comagent $(PYTHON) -m pytest -q \
		tests/comsim tests/integration $(if $(K),-k '$(K)')

check: check-unit check-integration

demo: build/host/comagent | $(DEPS_OK)
	@scripts/demo.sh build/host/comagent

install: build/host/comagent
	install -D -s -m 0755 build/host/comagent $(DESTDIR)$(PREFIX)/bin/comagent
	$(install-data)

clean:
	rm -rf build/host build/asan

.SECONDARY:

-include $(shell find build/host build/asan -name '*.d' 2>/dev/null)
endif
