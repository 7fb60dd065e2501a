#!/usr/bin/env bash
# build.sh — turns a `make install DESTDIR=ROOT PREFIX=/usr` tree into the
# Debian package OUT (make deb runs it; see packaging/deb/README).
#
#   packaging/deb/build.sh ROOT OUT
#
# Adds what Debian wants beside the installed files — the docs
# (/usr/share/doc/comagent: copyright, changelog.Debian.gz, README.md.gz,
# HOOKS.md.gz), the control file with Depends from dpkg-shlibdeps, the
# maintainer scripts, conffiles and md5sums — and builds with dpkg-deb,
# owners root:root. No debhelper: it is a single binary package whose
# build system is the Makefile, and this keeps every step visible.
#
# Reproducible: every timestamp is SOURCE_DATE_EPOCH (the changelog
# entry's, when unset), compression is gzip -9n / dpkg-deb's xz, and file
# lists are sorted, so the same binary gives the same .deb byte for byte.
set -euo pipefail

root=$(realpath "$1")
out=$2
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
pkg=comagent
doc=$root/usr/share/doc/$pkg

umask 022
export LC_ALL=C
changelog=$here/changelog
version=$(dpkg-parsechangelog -l "$changelog" -S Version)
maintainer=$(dpkg-parsechangelog -l "$changelog" -S Maintainer)
: "${SOURCE_DATE_EPOCH:=$(dpkg-parsechangelog -l "$changelog" -S Timestamp)}"
export SOURCE_DATE_EPOCH
arch=$(dpkg --print-architecture)

# The version in the Makefile and the changelog's upstream part must agree:
# the binary reports one, the package the other.
binver=$("$root/usr/bin/comagent" version | awk '{ print $2 }')
if [[ "${version%-*}" != "$binver" ]]; then
	echo "deb: packaging/deb/changelog is at $version but the agent is" \
		"$binver: add a changelog entry" >&2
	exit 1
fi

# make install strips the symbols; the compiler's .comment goes too, as
# dh_strip does (lintian: binary-has-unneeded-section).
strip --remove-section=.comment --remove-section=.note "$root/usr/bin/comagent"

# Docs. Debian policy 12.3: compressed with gzip -9n when larger than 4 kB
# (the copyright file never).
install -d "$doc"
install -m 0644 "$here/copyright" "$doc/copyright"
gzip -9n -c "$changelog" >"$doc/changelog.Debian.gz"
gzip -9n -c "$top/README.md" >"$doc/README.md.gz"
gzip -9n -c "$top/scripts/HOOKS.md" >"$doc/HOOKS.md.gz"
chmod 0644 "$doc"/*.gz
install -D -m 0644 "$here/lintian-overrides" \
	"$root/usr/share/lintian/overrides/$pkg"

# Depends: the shared libraries the binary links (lws is static, see
# copyright), as dpkg-shlibdeps finds them in the installed packages'
# shlibs/symbols files, and adduser for postinst. dpkg-shlibdeps wants a
# debian/control and the binary in debian/PACKAGE/: both in a scratch
# directory.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$pkg" "$pkg" \
	>"$work/debian/control"
install -D "$root/usr/bin/comagent" "$work/debian/$pkg/usr/bin/comagent"
mkdir "$work/debian/$pkg/DEBIAN"	# how it finds the package's root
shlibs=$(cd "$work" && dpkg-shlibdeps -O "debian/$pkg/usr/bin/comagent" |
	sed -n 's/^shlibs:Depends=//p')
[[ -n "$shlibs" ]] || { echo "deb: dpkg-shlibdeps found nothing" >&2; exit 1; }
depends="adduser, $shlibs"

# Every file the same time; then the size as dpkg-gencontrol counts it
# (KiB per file, rounded up; 1 per directory or link).
rm -rf "$root/DEBIAN"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
size=$(find "$root" -mindepth 1 -printf '%y %s\n' |
	awk '$1 == "f" { n += int(($2 + 1023) / 1024); next } { n++ }
	     END { print n }')

install -d -m 0755 "$root/DEBIAN"
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" \
	-e "s|@MAINTAINER@|$maintainer|" -e "s|@INSTALLED_SIZE@|$size|" \
	-e "s|@DEPENDS@|$depends|" "$here/control.in" >"$root/DEBIAN/control"
for s in postinst prerm postrm; do
	install -m 0755 "$here/$s" "$root/DEBIAN/$s"
done
# Everything under /etc is a conffile (the example configuration); the
# admin's comagent.ini is not shipped at all. md5sums leaves conffiles
# out, as dh_md5sums does: dpkg keeps their hashes itself.
(cd "$root" && find etc -type f -printf '/%p\n' | sort) \
	>"$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o \
	-type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
	>"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" \
	"$root/DEBIAN/md5sums"
touch -h -d "@$SOURCE_DATE_EPOCH" "$root/DEBIAN" "$root/DEBIAN"/*

mkdir -p "$(dirname "$out")"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out.tmp" >/dev/null
mv "$out.tmp" "$out"
echo "deb: $out ($version, $arch; Depends: $depends)"
