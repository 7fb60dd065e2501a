# cross/armel.mk — target description for `make TARGET=armel`.
# armv5te soft-float (Debian armel ABI), for older ARM cores without VFP.
# cross/common.cmake reads CROSS_COMPILE and CPU_FLAGS from this file, so the
# dependencies (lws, libarchive, cmocka) are built for exactly the same CPU.
TRIPLET       := arm-linux-gnueabi
CROSS_COMPILE := arm-linux-gnueabi-
CPU_FLAGS     := -march=armv5te -mfloat-abi=soft -mthumb -mthumb-interwork
CROSS_DEPS    := build/deps/armel
SYSROOT       := $(CROSS_DEPS)/sysroot
QEMU          := qemu-arm -L /usr/arm-linux-gnueabi
# Not the budgeted target (armhf is); a cap that still catches regressions.
SIZE_LIMIT    := 2097152
