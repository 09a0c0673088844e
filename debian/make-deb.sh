#!/bin/bash
# debian/make-deb.sh BUILDDIR VERSION - what `make deb` runs
#
# Builds dovecot-migrate_VERSION_ARCH.deb into BUILDDIR (the configured top
# build directory) with dpkg-buildpackage -us -uc -b, then runs lintian on
# it and fails on an error.
#
# The package is built in a temporary directory from `make distdir`: the
# files a release tarball has (EXTRA_DIST and the sources automake knows),
# as they are in the working tree, so the tree itself gets no build
# products, no debian/ build directories and no second configure; it works
# in a git clone and in an unpacked release alike.  The distdir path is
# handed to make relative to BUILDDIR: automake's distdir recursion does
# not take an absolute one.
#
# Missing build tools (the Build-Depends of debian/control, dpkg-dev,
# build-essential, lintian) are installed with apt-get when run as root,
# like GNUmakefile's deps; otherwise the script names them and fails.
#
# Knobs: DEB_BUILD_OPTIONS (passed on: nocheck skips the unit tests),
# DEB_NO_LINTIAN=1 (skip lintian), TMPDIR.

set -eu
builddir=$(cd "$1" && pwd)
version=$2
srcdir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAKE=${MAKE:-make}

say() { printf '== %s\n' "$*"; }
die() {
	echo "make deb: $*" >&2
	exit 1
}

# --- build tools ---------------------------------------------------------------
# package names of the Build-Depends field (first of alternatives, versions
# and architecture lists dropped; debhelper-compat is debhelper's)
build_depends() {
	awk '/^Build-Depends:/ { on = 1; sub(/^Build-Depends:/, ""); print; next }
	     on && /^[ \t]/ { print; next }
	     { on = 0 }' "$srcdir/debian/control" |
		tr ',' '\n' | sed -e 's/|.*//' -e 's/[[(<].*//' -e 's/[ \t]//g' |
		sed 's/^debhelper-compat$/debhelper/' | grep -v '^$'
}

need=(build-essential dpkg-dev lintian $(build_depends))
missing=()
for p in "${need[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		die "missing Debian packages: ${missing[*]} (run as root or apt-get install them)"
	fi
	say "installing Debian packages: ${missing[*]}"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
fi

# --- version -------------------------------------------------------------------
changelog_version=$(dpkg-parsechangelog -l "$srcdir/debian/changelog" -S Version)
[ "$changelog_version" = "$version" ] ||
	die "debian/changelog is at $changelog_version, configure.ac's AC_INIT at $version: add a changelog entry (dch -v $version)"
arch=$(dpkg --print-architecture)
deb=dovecot-migrate_${version}_${arch}.deb
log=$builddir/dovecot-migrate_${version}_${arch}.build

# --- build ---------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dovecot-migrate-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tree=$tmp/dovecot-migrate-$version
start=$(date +%s)
say "make distdir into $tmp"
"$MAKE" -s -C "$builddir" distdir distdir="$(realpath --relative-to="$builddir" "$tree")" >/dev/null ||
	die "make distdir failed"
say "dpkg-buildpackage -us -uc -b (log: $log)"
if ! (cd "$tree" && dpkg-buildpackage -us -uc -b) >"$log" 2>&1; then
	tail -n 40 "$log" >&2
	die "dpkg-buildpackage failed (log: $log)"
fi
grep -E '^dpkg-deb: building package' "$log" | sed 's/^/  /'
[ -f "$tmp/$deb" ] || die "dpkg-buildpackage made no $deb (log: $log)"
rm -f "$builddir/$deb" "$builddir"/dovecot-migrate-dbgsym_"${version}"_"${arch}".deb
cp "$tmp/$deb" "$builddir/"
# the detached debug symbols, for a core file of the modules
cp "$tmp"/dovecot-migrate-dbgsym_"${version}"_"${arch}".*deb "$builddir/" 2>/dev/null || true
say "built $builddir/$deb ($(stat -c %s "$builddir/$deb") bytes) in $(($(date +%s) - start)) s"
dpkg-deb -f "$builddir/$deb" Depends | sed 's/^/  Depends: /'

# --- lintian -------------------------------------------------------------------
[ "${DEB_NO_LINTIAN:-0}" = 1 ] && exit 0
say "lintian $deb"
lint=$(lintian "$builddir/$deb" 2>&1 | grep -v '^running with root privileges is not recommended!$') || true
if [ -n "$lint" ]; then
	sed 's/^/  /' <<<"$lint"
else
	echo "  (no tags)"
fi
if grep -q '^E:' <<<"$lint"; then
	die "lintian reports errors on $deb"
fi
exit 0
