#!/usr/bin/env bash
# Installs the Debian packages comagent needs to build, test and run its demo.
# Idempotent and quiet when everything is already there; must run as root
# (or via sudo) only when something is missing.
#
#   scripts/deps.sh          the build/test/demo set below
#   scripts/deps.sh fuzz     only what `make fuzz` needs on top: clang and
#                            its libFuzzer/sanitizer runtimes
#   scripts/deps.sh soak     only what `make soak` needs on top: valgrind,
#                            and gdb (it reads ASan's heap count in the agent)
#   scripts/deps.sh bench    the peers `make bench` measures against
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config dpkg-dev ca-certificates openssl patch
  libmbedtls-dev libarchive-dev libinih-dev zlib1g-dev libexpat1-dev
  libcmocka-dev
  python3 python3-pytest python3-websockets python3-cryptography
  procps systemd
  # the package's test (test_package.py): lintian, man -l, groff -ww
  lintian man-db groff-base
  openssh-server openssh-client proxytunnel curl
)
case "${1:-}" in
  "") ;;
  fuzz) PKGS=(clang-14 libclang-rt-14-dev) ;;
  soak) PKGS=(valgrind gdb) ;;
  bench) PKGS=(socat openssh-server openssh-client gzip tar time) ;;
  *) echo "usage: $0 [fuzz|soak|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$st" == ii* ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# openssh-server is here for the tests' own loopback sshd: don't let its
# package start a system sshd. policy-rc.d is Debian's switch for that; only
# one we created ourselves is removed again.
policy=/usr/sbin/policy-rc.d
made_policy=""
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
  $SUDO chmod 755 $policy
  made_policy=1
fi
trap '[[ -n "$made_policy" ]] && $SUDO rm -f $policy' EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
