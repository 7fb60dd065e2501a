#!/usr/bin/env bash
# Prepares everything `make TARGET=<target>` needs for a static cross build
# of comagent (armhf or armel), the cross counterpart of scripts/deps.sh +
# scripts/build-lws.sh:
#   1. host packages: crossbuild-essential-<target>, qemu-user, cmake;
#   2. build/deps/<target>/sysroot: Debian's -dev packages for the target
#      architecture (static .a + headers), downloaded with a private apt
#      configuration (multiarch `apt-get install pkg:armhf` does not work on
#      our mirror, and /etc/apt must stay untouched) and unpacked with
#      dpkg-deb; shared-library links are dropped, we link statically only;
#   3. build/deps/<target>/lws: libwebsockets 4.1.6 on the sysroot's mbedTLS;
#   4. build/deps/<target>/libarchive: libarchive from Debian's source with
#      only tar + gzip (zlib) in mind: Debian's own libarchive.a drags in
#      libxml2, ICU, lzma, zstd, acl, nettle...;
#   5. build/deps/<target>/cmocka: static cmocka for the unit tests (Debian
#      ships no libcmocka.a).
# Every step is cached by a stamp/result file; a second run does nothing.
#
#   cross-deps.sh TARGET          (TARGET = armhf | armel | x86_64)
set -euo pipefail

target=${1:?usage: cross-deps.sh armhf|armel|x86_64}
# x86_64: the same static build natively, to measure the agent as it will
# be on the appliance (static, minimal libraries) without an emulator.
case "$target" in
  armhf) triplet=arm-linux-gnueabihf; debarch=armhf
         tools=(crossbuild-essential-armhf qemu-user) ;;
  armel) triplet=arm-linux-gnueabi; debarch=armel
         tools=(crossbuild-essential-armel qemu-user) ;;
  x86_64) triplet=x86_64-linux-gnu; debarch=amd64; tools=(build-essential) ;;
  *) echo "cross-deps: unknown target '$target'" >&2; exit 2 ;;
esac

top=$(cd "$(dirname "$0")/.." && pwd)
deps="$top/build/deps/$target"
src="$top/build/deps/src"
sysroot="$deps/sysroot"
toolchain="$top/cross/$target.cmake"
jobs=$(nproc)
mkdir -p "$deps" "$src"

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

# --- 1. host tools ---------------------------------------------------------
host_pkgs=("${tools[@]}" cmake dpkg-dev)
missing=()
for p in "${host_pkgs[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$st" == ii* ]] || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "cross-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. target sysroot -----------------------------------------------------
# -dev packages whose static libraries and headers the link needs. Their
# runtime packages only hold shared objects, which a -static link never uses.
SYSROOT_PKGS=(libmbedtls-dev zlib1g-dev libexpat1-dev libinih-dev)

if [[ ! -f "$sysroot/.ok" ]]; then
  apt_dir="$deps/apt"
  rm -rf "$sysroot" "$apt_dir/debs"
  mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial" "$apt_dir/debs" \
           "$apt_dir/cache/archives/partial" "$sysroot"
  echo "deb [arch=$debarch] http://deb.debian.org/debian bookworm main" \
    > "$apt_dir/sources/$debarch.list"
  aptopts=(-o Dir::Etc::SourceList=/dev/null
           -o Dir::Etc::SourceParts="$apt_dir/sources"
           -o Dir::State::Lists="$apt_dir/lists"
           -o Dir::Cache="$apt_dir/cache"
           -o APT::Architectures::="$debarch"
           -o APT::Sandbox::User=root)
  echo "cross-deps: downloading ${SYSROOT_PKGS[*]} ($target)" >&2
  apt-get "${aptopts[@]}" update -qq
  (cd "$apt_dir/debs" &&
     apt-get "${aptopts[@]}" download -qq "${SYSROOT_PKGS[@]/%/:$debarch}")
  for deb in "$apt_dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$sysroot"
  done
  # Absolute symlinks would point into the build host's /: re-anchor them
  # inside the sysroot (relative), then drop shared-library links and
  # anything else left dangling, so only the static archives remain.
  while IFS= read -r -d '' l; do
    dest=$(readlink "$l")
    if [[ "$dest" == /* ]]; then
      ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$sysroot$dest")" "$l"
    fi
  done < <(find "$sysroot" -type l -print0)
  find "$sysroot" \( -name '*.so' -o -name '*.so.*' \) \( -type l -o -type f \) -delete
  find "$sysroot" -xtype l -delete
  for a in libmbedtls libmbedx509 libmbedcrypto libz libexpat libinih; do
    [[ -f "$sysroot/usr/lib/$triplet/$a.a" ]] ||
      { echo "cross-deps: $a.a missing from the $target sysroot" >&2; exit 1; }
  done
  touch "$sysroot/.ok"
fi

# Fetches a Debian source package into build/deps/src once (the same private
# deb-src configuration scripts/build-lws.sh uses). Prints the source dir.
fetch_source() {
  local pkg=$1 dir
  dir=$(ls -d "$src/$pkg"-[0-9]* 2>/dev/null | head -1 || true)
  if [[ -z "$dir" ]]; then
    local apt_dir="$src/apt"
    mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial"
    echo "deb-src http://deb.debian.org/debian bookworm main" \
      > "$apt_dir/sources/debsrc.list"
    local aptopts=(-o Dir::Etc::SourceList=/dev/null
                   -o Dir::Etc::SourceParts="$apt_dir/sources"
                   -o Dir::State::Lists="$apt_dir/lists"
                   -o APT::Sandbox::User=root)
    echo "cross-deps: fetching Debian source package $pkg" >&2
    apt-get "${aptopts[@]}" update -qq
    (cd "$src" && apt-get "${aptopts[@]}" source -qq --only-source "$pkg" >/dev/null)
    dir=$(ls -d "$src/$pkg"-[0-9]* | head -1)
  fi
  echo "$dir"
}

# Runs cmake configure + build for one dependency, log in $bdir.log.
cmake_build() {
  local name=$1 srcdir=$2 bdir=$3; shift 3
  local targets=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do targets+=(--target "$1"); shift; done
  [[ $# -gt 0 ]] && shift
  rm -rf "$bdir"; mkdir -p "$bdir"
  echo "$name: building for $target" >&2
  { cmake -S "$srcdir" -B "$bdir" -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
      -DCMAKE_BUILD_TYPE=MinSizeRel "$@" &&
    cmake --build "$bdir" -j"$jobs" "${targets[@]}"; } >"$bdir.log" 2>&1 ||
    { tail -30 "$bdir.log"; exit 1; }
}

lib="$sysroot/usr/lib/$triplet"

# --- 3. libwebsockets --------------------------------------------------------
"$top/scripts/build-lws.sh" "$deps/lws" "$toolchain" \
  -DLWS_MBEDTLS_INCLUDE_DIRS="$sysroot/usr/include" \
  -DLWS_MBEDTLS_LIBRARIES="$lib/libmbedtls.a;$lib/libmbedx509.a;$lib/libmbedcrypto.a"

# --- 4. libarchive: static, tar + gzip only ----------------------------------
if [[ ! -f "$deps/libarchive/lib/libarchive.a" ]]; then
  la_src=$(fetch_source libarchive)
  bdir="$deps/libarchive.build"
  off=()
  for o in OPENSSL MBEDTLS NETTLE LIBB2 LZ4 LZO LZMA ZSTD BZip2 LIBXML2 EXPAT \
           PCREPOSIX PCRE2POSIX LIBGCC CNG TAR CPIO CAT XATTR ACL ICONV TEST \
           COVERAGE WERROR UNZIP; do
    off+=(-DENABLE_$o=OFF)
  done
  cmake_build libarchive "$la_src" "$bdir" archive_static -- \
    -DENABLE_ZLIB=ON -DZLIB_INCLUDE_DIR="$sysroot/usr/include" \
    -DZLIB_LIBRARY="$lib/libz.a" -DBUILD_SHARED_LIBS=OFF \
    -DPOSIX_REGEX_LIB=NONE \
    -DCMAKE_DISABLE_FIND_PACKAGE_LibXml2=ON -DCMAKE_DISABLE_FIND_PACKAGE_EXPAT=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_ICU=ON "${off[@]}"
  mkdir -p "$deps/libarchive/include" "$deps/libarchive/lib"
  cp "$la_src/libarchive/archive.h" "$la_src/libarchive/archive_entry.h" \
     "$deps/libarchive/include/"
  cp "$bdir/libarchive/libarchive.a" "$deps/libarchive/lib/libarchive.a"
fi

# --- 5. cmocka (unit tests only) ---------------------------------------------
if [[ ! -f "$deps/cmocka/lib/libcmocka.a" ]]; then
  cm_src=$(fetch_source cmocka)
  bdir="$deps/cmocka.build"
  cmake_build cmocka "$cm_src" "$bdir" -- \
    -DBUILD_SHARED_LIBS=OFF -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF \
    -DUNIT_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$deps/cmocka" \
    -DCMAKE_INSTALL_LIBDIR=lib
  cmake --install "$bdir" >>"$bdir.log" 2>&1 || { tail -30 "$bdir.log"; exit 1; }
  # cmocka 1.1.5 always builds a shared library too and names the static one
  # libcmocka-static.a; keep only the static one, under the usual name.
  mv "$deps/cmocka/lib/libcmocka-static.a" "$deps/cmocka/lib/libcmocka.a"
  rm -rf "$deps/cmocka/lib"/libcmocka.so* "$deps/cmocka/lib/cmake" \
         "$deps/cmocka/lib/pkgconfig"
fi
