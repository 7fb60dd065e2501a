# cross/common.cmake — shared body of the cross/<target>.cmake toolchain files.
# Reads CROSS_COMPILE, TRIPLET and CPU_FLAGS from cross/<target>.mk (one
# source of truth for make and CMake) and confines library/header lookups to
# the target sysroot assembled by scripts/cross-deps.sh plus the cross glibc,
# so nothing from the amd64 host (/usr/include, /usr/lib) can leak in.
# -ffunction-sections/-fdata-sections let the final static link drop unused
# code with --gc-sections.
if(NOT COMAGENT_TARGET)
  message(FATAL_ERROR "set COMAGENT_TARGET before including common.cmake")
endif()
get_filename_component(_comagent_top "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/${COMAGENT_TARGET}.mk" _mk
     REGEX "^(TRIPLET|CROSS_COMPILE|CPU_FLAGS|CMAKE_PROCESSOR)[ \t]*:=")
foreach(_l IN LISTS _mk)
  string(REGEX MATCH "^([A-Z_]+)[ \t]*:=[ \t]*(.*)$" _m "${_l}")
  string(STRIP "${CMAKE_MATCH_2}" _v)
  set(_mk_${CMAKE_MATCH_1} "${_v}")
endforeach()
if(NOT _mk_CROSS_COMPILE OR NOT _mk_TRIPLET)
  message(FATAL_ERROR "cross/${COMAGENT_TARGET}.mk lacks TRIPLET/CROSS_COMPILE/CPU_FLAGS")
endif()

set(CMAKE_SYSTEM_NAME Linux)
if(_mk_CMAKE_PROCESSOR)
  set(CMAKE_SYSTEM_PROCESSOR "${_mk_CMAKE_PROCESSOR}")
else()
  set(CMAKE_SYSTEM_PROCESSOR arm)
endif()
set(CMAKE_C_COMPILER "${_mk_CROSS_COMPILE}gcc")
set(CMAKE_CXX_COMPILER "${_mk_CROSS_COMPILE}g++")
set(CMAKE_AR "/usr/bin/${_mk_CROSS_COMPILE}ar" CACHE FILEPATH "")
set(CMAKE_RANLIB "/usr/bin/${_mk_CROSS_COMPILE}ranlib" CACHE FILEPATH "")
set(CMAKE_STRIP "/usr/bin/${_mk_CROSS_COMPILE}strip" CACHE FILEPATH "")
set(CMAKE_C_FLAGS_INIT "${_mk_CPU_FLAGS} -ffunction-sections -fdata-sections")
set(CMAKE_LIBRARY_ARCHITECTURE "${_mk_TRIPLET}")

set(COMAGENT_SYSROOT "${_comagent_top}/build/deps/${COMAGENT_TARGET}/sysroot")
set(CMAKE_FIND_ROOT_PATH "${COMAGENT_SYSROOT}" "/usr/${_mk_TRIPLET}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# Anything a project insists on running (try_run) goes through qemu.
if(CMAKE_SYSTEM_PROCESSOR STREQUAL "arm")
  set(CMAKE_CROSSCOMPILING_EMULATOR qemu-arm -L "/usr/${_mk_TRIPLET}")
endif()
