# cross/armhf.cmake — CMake toolchain file for building comagent's
# dependencies (libwebsockets, libarchive, cmocka) for armhf. The settings
# live in cross/armhf.mk; cross/common.cmake turns them into CMake variables.
set(COMAGENT_TARGET armhf)
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
