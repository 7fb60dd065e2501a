# cross/x86_64.cmake — CMake toolchain file for the native static build's
# dependencies; the settings live in cross/x86_64.mk (see common.cmake).
set(COMAGENT_TARGET x86_64)
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
