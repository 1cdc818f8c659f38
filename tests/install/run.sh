#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# run.sh BUILD_DIR SOURCE_DIR PREFIX BINDIR SBINDIR LIBDIR INCLUDEDIR MANDIR
# - what `meson install` puts where, and that an embedder builds against it
# with nothing but pkg-config.
#
# Installs BUILD_DIR into a temporary DESTDIR (--no-rebuild: meson test has
# built it), checks every file is there (library, header, foliofs.pc,
# binaries, man pages; the pages format without groff warnings), runs the
# installed programs' --version, then copies tools/embed-example.c into an
# empty directory, builds it with `pkg-config --cflags --libs foliofs`
# (PKG_CONFIG_LIBDIR at the DESTDIR's pkgconfig only, PKG_CONFIG_SYSROOT_DIR
# at the DESTDIR, so no other foliofs.pc can be found) and runs it with
# LD_LIBRARY_PATH in the DESTDIR: it must print "ok". The directories are
# meson's options, absolute. MESON names the meson to run (default: meson).
#
# One line per check, "PASS name" or "FAIL name: why", then
# "N passed, N failed, N skipped". Exit 0, 1 on a failure, 77 without a C
# compiler or pkg-config.
set -uo pipefail

if [ $# -ne 8 ]; then
	echo "usage: $0 BUILD_DIR SOURCE_DIR PREFIX BINDIR SBINDIR LIBDIR INCLUDEDIR MANDIR" >&2
	exit 2
fi
build=$1 src=$2 prefix=$3 bindir=$4 sbindir=$5 libdir=$6 includedir=$7 mandir=$8
meson=${MESON:-meson}
cc=${CC:-cc}

for tool in "$cc" pkg-config; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool is missing; the install test builds with it"
		exit 77
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/foliofs-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest
passed=0 failed=0 skipped=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skip() { echo "SKIP $1: $2"; skipped=$((skipped + 1)); }

echo "install suite: build $build, prefix $prefix, DESTDIR $dest"
if out=$("$meson" install -C "$build" --destdir "$dest" --no-rebuild --quiet 2>&1); then
	pass install/meson-install
else
	fail install/meson-install "$(echo "$out" | tail -5)"
	echo "$passed passed, $failed failed, $skipped skipped"
	exit 1
fi

# ---- every file where it belongs ----------------------------------------------
missing=
for f in "$bindir/foliofs" "$bindir/foliofs-stat" "$sbindir/mkfs.foliofs" \
	"$sbindir/fsck.foliofs" "$includedir/foliofs.h" "$libdir/libfoliofs.so" \
	"$libdir/libfoliofs.so.0" "$libdir/pkgconfig/foliofs.pc" \
	"$mandir/man8/foliofs.8" "$mandir/man8/mkfs.foliofs.8" \
	"$mandir/man8/fsck.foliofs.8" "$mandir/man8/foliofs-stat.8" \
	"$mandir/man3/foliofs.3"; do
	[ -e "$dest$f" ] || missing="$missing $f"
done
if [ -z "$missing" ]; then
	pass install/files
else
	fail install/files "not installed:$missing"
fi

if command -v groff >/dev/null; then
	bad=
	for page in "$dest$mandir"/man*/*; do
		warn=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>&1)
		[ -z "$warn" ] || bad="$bad $(basename "$page"): $warn"
	done
	if [ -z "$bad" ]; then
		pass install/man-pages-format
	else
		fail install/man-pages-format "$bad"
	fi
else
	skip install/man-pages-format "groff is missing"
fi

# ---- the installed programs run against the installed library ------------------
export LD_LIBRARY_PATH=$dest$libdir
for p in "$bindir/foliofs --version" "$bindir/foliofs-stat --version" \
	"$sbindir/mkfs.foliofs --version" "$sbindir/fsck.foliofs -V"; do
	set -- $p
	name=$(basename "$1")
	if out=$("$dest$1" "$2" 2>&1) && [ -n "$out" ]; then
		pass "install/run-$name"
	else
		fail "install/run-$name" "$out"
	fi
done

# ---- an embedder with only pkg-config ----------------------------------------
work=$tmp/embedder
mkdir "$work"
cp "$src/tools/embed-example.c" "$work/"
export PKG_CONFIG_LIBDIR=$dest$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
unset PKG_CONFIG_PATH
version=$(cd "$work" && pkg-config --modversion foliofs 2>&1)
want=$("$meson" introspect "$build" --projectinfo 2>/dev/null |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])' 2>/dev/null)
if [ -n "$want" ] && [ "$version" = "$want" ]; then
	pass install/pkg-config-version
else
	fail install/pkg-config-version "pkg-config says '$version', the project is '$want'"
fi
if flags=$(cd "$work" && pkg-config --cflags --libs foliofs 2>&1) &&
	(cd "$work" && $cc embed-example.c $flags -o embed-example) >"$tmp/cc.out" 2>&1; then
	pass install/build-embedder
	if out=$(cd "$work" && ./embed-example 2>&1) && [ "$out" = ok ]; then
		pass install/run-embedder
	else
		fail install/run-embedder "printed '$out'"
	fi
	# It must have taken the installed library, not the build's.
	if LD_TRACE_LOADED_OBJECTS=1 "$work/embed-example" 2>/dev/null |
		grep -q "libfoliofs.so.0 => $dest"; then
		pass install/embedder-uses-installed-library
	else
		fail install/embedder-uses-installed-library \
			"$(LD_TRACE_LOADED_OBJECTS=1 "$work/embed-example" 2>&1 | grep foliofs)"
	fi
else
	fail install/build-embedder "flags '$flags': $(head -5 "$tmp/cc.out")"
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
