# cross/armel.cmake — CMake toolchain file for building comagent's
# dependencies (libwebsockets, libarchive, cmocka) for armel. The settings
# live in cross/armel.mk; cross/common.cmake turns them into CMake variables.
set(COMAGENT_TARGET armel)
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
