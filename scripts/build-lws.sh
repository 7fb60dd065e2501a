#!/usr/bin/env bash
# Builds libwebsockets 4.1.6 on mbedTLS from Debian's own source package into
# a prefix. Debian's libwebsockets-dev is OpenSSL-backed; we want one TLS
# stack (mbedTLS) on every target. The result is cached: nothing is done when
# PREFIX/lib/libwebsockets.a already exists.
#
#   build-lws.sh PREFIX [CMAKE_TOOLCHAIN_FILE] [extra cmake args...]
set -euo pipefail

prefix=$(realpath -m "$1"); shift
toolchain=${1:-}; [[ $# -gt 0 ]] && shift
top=$(cd "$(dirname "$0")/.." && pwd)
# Our changes to lws (scripts/lws-*.patch). The build is redone when they or
# this script change: the stamp names their hash.
patches=("$top"/scripts/lws-*.patch)
stamp="$prefix/.built-$(cat "$0" "${patches[@]}" | sha256sum | cut -c1-16)"
[[ -f "$prefix/lib/libwebsockets.a" && -f "$stamp" ]] && exit 0
work="$top/build/deps/src"
mkdir -p "$work"

# Fetch the source once. A private deb-src list keeps /etc/apt untouched.
src=$(ls -d "$work"/libwebsockets-4.1.6 2>/dev/null || true)
if [[ -z "$src" ]]; then
  apt_dir="$work/apt"
  mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial"
  echo "deb-src http://deb.debian.org/debian bookworm main" \
    > "$apt_dir/sources/debsrc.list"
  aptopts=(-o Dir::Etc::SourceList=/dev/null
           -o Dir::Etc::SourceParts="$apt_dir/sources"
           -o Dir::State::Lists="$apt_dir/lists"
           -o APT::Sandbox::User=root)
  echo "lws: fetching Debian source package" >&2
  apt-get "${aptopts[@]}" update -qq
  (cd "$work" && apt-get "${aptopts[@]}" source -qq --only-source libwebsockets=4.1.6-3 >/dev/null)
  src=$(ls -d "$work"/libwebsockets-4.1.6)
fi

# Patch the shared source tree once per patch (a reverse dry run that
# applies means it is in already).
for p in "${patches[@]}"; do
  if ! patch -d "$src" -p1 -R -s -f --dry-run <"$p" >/dev/null 2>&1; then
    echo "lws: applying $(basename "$p")" >&2
    patch -d "$src" -p1 -s -f <"$p"
  fi
done

bdir="$prefix.build"
rm -f "$prefix"/.built-*
rm -rf "$bdir"; mkdir -p "$bdir"
cm=(-DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_BUILD_TYPE=MinSizeRel
    -DLWS_WITH_MBEDTLS=ON -DLWS_WITH_SSL=ON
    -DLWS_WITH_SYS_ASYNC_DNS=ON
    -DLWS_WITH_SHARED=OFF -DLWS_WITH_STATIC=ON
    -DLWS_WITHOUT_TESTAPPS=ON -DLWS_WITHOUT_TEST_SERVER=ON
    -DLWS_WITHOUT_TEST_CLIENT=ON -DLWS_WITHOUT_TEST_PING=ON
    -DLWS_WITHOUT_TEST_SERVER_EXTPOLL=ON
    -DLWS_WITH_MINIMAL_EXAMPLES=OFF
    -DLWS_WITH_LEJP=ON -DLWS_WITH_HTTP2=OFF -DLWS_WITH_LIBUV=OFF
    -DLWS_WITH_LIBEV=OFF -DLWS_WITH_LIBEVENT=OFF -DLWS_WITH_GLIB=OFF
    -DLWS_IPV6=ON -DLWS_WITH_HTTP_PROXY=OFF -DLWS_WITH_SOCKS5=OFF
    -DLWS_WITH_ACCESS_LOG=OFF -DLWS_WITH_FS=OFF
    -DLWS_WITH_DIR=OFF -DLWS_WITH_LWSAC=ON -DLWS_WITH_CUSTOM_HEADERS=OFF
    -DDISABLE_WERROR=ON)
[[ -n "$toolchain" ]] && cm+=(-DCMAKE_TOOLCHAIN_FILE="$toolchain")
echo "lws: building into $prefix" >&2
cmake -S "$src" -B "$bdir" "${cm[@]}" "$@" >"$bdir.log" 2>&1 || { tail -30 "$bdir.log"; exit 1; }
cmake --build "$bdir" -j"$(nproc)" >>"$bdir.log" 2>&1 || { tail -30 "$bdir.log"; exit 1; }
cmake --install "$bdir" >>"$bdir.log" 2>&1 || { tail -30 "$bdir.log"; exit 1; }
touch "$stamp"
