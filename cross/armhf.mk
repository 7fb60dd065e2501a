# cross/armhf.mk — target description for `make TARGET=armhf`.
# armv7-a hard-float (Debian armhf ABI): Debian's own defaults for that port,
# spelled out so the flags stay the same whatever gcc's configured defaults.
# cross/common.cmake reads CROSS_COMPILE and CPU_FLAGS from this file, so the
# dependencies (lws, libarchive, cmocka) are built for exactly the same CPU.
TRIPLET       := arm-linux-gnueabihf
CROSS_COMPILE := arm-linux-gnueabihf-
CPU_FLAGS     := -march=armv7-a -mfpu=vfpv3-d16 -mfloat-abi=hard -mthumb
# Where scripts/cross-deps.sh puts the target's libraries.
CROSS_DEPS    := build/deps/armhf
SYSROOT       := $(CROSS_DEPS)/sysroot
# Static binaries run directly under qemu-arm; -L also lets any dynamic
# helper find the cross glibc.
QEMU          := qemu-arm -L /usr/arm-linux-gnueabihf
