# cross/rules.mk — the `make TARGET=<target>` half of the Makefile (included
# from it only when TARGET is set; cross/<target>.mk is already read).
# The appliance gets one fully static binary: same sources and warnings as the
# host build, lws/mbedTLS/libarchive/inih/expat/zlib from build/deps/<target>
# (scripts/cross-deps.sh), -Os with section GC, a linker map for `make size`.
#
#   make TARGET=armhf               build/armhf/comagent (+ .stripped, .map)
#   make TARGET=armhf check-unit    cmocka unit tests, static, under qemu-arm
#   make TARGET=armhf check-smoke   the integration smoke test under qemu
#   make TARGET=x86_64 size         also the memory budget: the static agent
#                                   run natively against comsim (idle RSS,
#                                   per tunnel, 1000 reconnects)
#   make TARGET=armhf size          stripped size + per-library breakdown;
#                                   fails above SIZE_LIMIT bytes
#   make TARGET=armhf install DESTDIR=...   the appliance's file tree

TBUILD     := build/$(TARGET)
CROSS_OK   := $(CROSS_DEPS)/.deps-ok
CROSS_LIB  := $(SYSROOT)/usr/lib/$(TRIPLET)
CROSS_CC   ?= $(CROSS_COMPILE)gcc
CROSS_STRIP ?= $(CROSS_COMPILE)strip
SIZE_LIMIT ?= 1572864

# BASE_CFLAGS already starts the include path with this target's lws prefix
# (it must come before anything else that might carry a lws_config.h).
# Stack protector and fortify cost little with static glibc; kept as on host.
# _FILE_OFFSET_BITS=64: 64-bit off_t/ino_t as on the host (and as our
# libarchive is built). Without it 32-bit glibc's readdir/stat fail with
# EOVERFLOW on large inode numbers, directory cookies (ext4 under qemu-user)
# or files over 2 GiB. time_t stays 32-bit: Debian's bookworm armhf/armel
# static libraries (mbedTLS...) are built that way.
TGT_CFLAGS := $(BASE_CFLAGS) -I$(CROSS_DEPS)/libarchive/include \
	-I$(SYSROOT)/usr/include/$(TRIPLET) -I$(SYSROOT)/usr/include \
	$(CPU_FLAGS) -D_FILE_OFFSET_BITS=64 \
	-Os -g -ffunction-sections -fdata-sections \
	-fstack-protector-strong -D_FORTIFY_SOURCE=2
TGT_TEST_CFLAGS := $(TGT_CFLAGS) -DCOMAGENT_TESTING -I$(CROSS_DEPS)/cmocka/include
TGT_LDFLAGS := -static -Wl,--gc-sections
# Full paths, not -l: only these static archives may end up in the binary.
TGT_LIBS   := $(CROSS_DEPS)/lws/lib/libwebsockets.a \
	$(CROSS_DEPS)/libarchive/lib/libarchive.a \
	$(CROSS_LIB)/libmbedtls.a $(CROSS_LIB)/libmbedx509.a \
	$(CROSS_LIB)/libmbedcrypto.a $(CROSS_LIB)/libinih.a \
	$(CROSS_LIB)/libexpat.a $(CROSS_LIB)/libz.a -lpthread

.PHONY: all check check-unit check-integration check-smoke demo install \
	clean deps lws size
all: $(TBUILD)/comagent $(TBUILD)/comagent.stripped

deps lws: $(CROSS_OK)
$(CROSS_OK): scripts/cross-deps.sh scripts/build-lws.sh $(wildcard scripts/lws-*.patch)
	@scripts/cross-deps.sh $(TARGET)
	@touch $@

# Objects also depend on the cross makefiles: a flag change rebuilds them.
$(TBUILD)/obj/%.o: %.c cross/rules.mk cross/$(TARGET).mk | $(CROSS_OK)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC/$(TARGET) $<")
	$(Q)$(CROSS_CC) $(TGT_CFLAGS) -c $< -o $@
$(TBUILD)/testobj/%.o: %.c cross/rules.mk cross/$(TARGET).mk | $(CROSS_OK)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC/$(TARGET)/test $<")
	$(Q)$(CROSS_CC) $(TGT_TEST_CFLAGS) -c $< -o $@

TGT_OBJS      := $(SRCS:%.c=$(TBUILD)/obj/%.o)
TGT_TEST_LIB_OBJS := $(LIB_SRCS:%.c=$(TBUILD)/testobj/%.o)

# The link output is kept: static glibc warns here about NSS-backed calls
# (getaddrinfo, getpwnam...) that would need the target's shared NSS modules.
$(TBUILD)/comagent: $(TGT_OBJS) $(CROSS_OK)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CROSS_CC) $(TGT_CFLAGS) $(TGT_LDFLAGS) -Wl,-Map=$@.map -o $@ \
		$(TGT_OBJS) $(TGT_LIBS) >$@.link.log 2>&1; \
		rc=$$?; cat $@.link.log; exit $$rc
$(TBUILD)/comagent.stripped: $(TBUILD)/comagent
	$(Q)$(CROSS_STRIP) --strip-all -R .comment -o $@ $<

# Same static link as the agent (the expected NSS warnings are kept in
# <test>.link.log and shown only when the link fails).
TGT_UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(TBUILD)/tests/%)
$(TBUILD)/tests/%: $(TBUILD)/testobj/tests/unit/%.o $(TGT_TEST_LIB_OBJS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CROSS_CC) $(TGT_TEST_CFLAGS) $(TGT_LDFLAGS) -o $@ $^ \
		$(CROSS_DEPS)/cmocka/lib/libcmocka.a $(TGT_LIBS) 2>$@.link.log || \
		{ cat $@.link.log; exit 1; }

# Tests run under qemu through a host helper that gives them default signal
# dispositions (see cross/sigdfl.c). Every test runs (a failure does not
# hide the next ones); the target fails at the end.
HOST_CC    ?= cc
SIGDFL     := $(TBUILD)/tools/sigdfl
$(SIGDFL): cross/sigdfl.c
	@mkdir -p $(@D)
	$(Q)$(HOST_CC) -O2 -Wall -Wextra -Werror -o $@ $<
check-unit: $(TGT_UNIT_BINS) $(SIGDFL)
	@failed=""; for t in $(TGT_UNIT_BINS); do echo "== $$t ($(QEMU))"; \
		$(SIGDFL) $(QEMU) $$t || failed="$$failed $${t##*/}"; done; \
	if [ -n "$$failed" ]; then echo "FAILED on $(TARGET):$$failed" >&2; exit 1; fi
# The smoke pass of the integration suite (tests/integration/test_smoke.py:
# connect, status, a tunnel, a custom-files refresh) against the target
# binary under qemu, through a wrapper the tests run as COMAGENT_BIN. The
# Python side needs the host's packages (scripts/deps.sh).
QEMU_WRAP  := $(TBUILD)/comagent-qemu
$(QEMU_WRAP): $(TBUILD)/comagent $(SIGDFL) cross/rules.mk
	$(Q)printf '#!/bin/sh\n# %s under qemu (make check-smoke)\nexec %s %s %s "$$@"\n' \
		'$(TARGET) comagent' '$(CURDIR)/$(SIGDFL)' '$(QEMU)' \
		'$(CURDIR)/$(TBUILD)/comagent' > $@ && chmod 0755 $@
check-smoke: $(QEMU_WRAP) | $(DEPS_OK)
	COMAGENT_BIN=$(CURDIR)/$(QEMU_WRAP) $(PYTHON) -m pytest -q \
		tests/integration/test_smoke.py
$(DEPS_OK): scripts/deps.sh
	@scripts/deps.sh
	@mkdir -p $(@D) && touch $@
# The rest of the integration tests and the demo drive the host build.
check: check-unit
check-integration demo:
	@echo "make $@: host only (run it without TARGET=$(TARGET))" >&2; exit 1

size: $(TBUILD)/comagent.stripped $(TBUILD)/comagent
	@awk -v stripped="$$(stat -c %s $(TBUILD)/comagent.stripped)" \
		-v limit=$(SIZE_LIMIT) -v name=$(TBUILD)/comagent.stripped \
		-f cross/mapsize.awk $(TBUILD)/comagent.map
	$(if $(RSS_BUDGET),$(PYTHON) tests/bench/reconnect.py \
		--bin $(TBUILD)/comagent.stripped $(RSS_BUDGET))

# The appliance's tree: the stripped static binary, the host install's other
# files, and the SysV init script when config/comagent.init exists. The init
# script and inittab line run /usr/bin/comagent, so PREFIX defaults to /usr
# here (an explicit PREFIX=... still wins).
ifeq ($(origin PREFIX),file)
PREFIX := /usr
endif
install: $(TBUILD)/comagent.stripped
	install -D -m 0755 $(TBUILD)/comagent.stripped $(DESTDIR)$(PREFIX)/bin/comagent
	$(install-data)
	if [ -f config/comagent.init ]; then \
		install -d $(DESTDIR)/etc/init.d && \
		sed 's|@BINDIR@|$(PREFIX)/bin|g' config/comagent.init \
			> $(DESTDIR)/etc/init.d/comagent && \
		chmod 0755 $(DESTDIR)/etc/init.d/comagent; \
	fi

clean:
	rm -rf $(TBUILD)

.SECONDARY:

-include $(shell find $(TBUILD) -name '*.d' 2>/dev/null)
