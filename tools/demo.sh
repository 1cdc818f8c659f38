#!/usr/bin/env bash
# demo.sh - build foliofs for speed and run its benchmarks, printing their
# tables. Meant for a fresh Debian machine, as root: it installs the build
# dependencies with apt-get, but only when some are missing.
#
# Usage: tools/demo.sh [--quick]
#   --quick   0.1 s per measurement instead of 0.5 s (a smoke run)
#
# Environment:
#   FOLIOFS_DEMO_BUILD=build-demo   the release build directory
#
# Steps, one function each, so later ones (mount, fio) slot in the same way:
#   install_deps      packages, from tools/lib/deps.sh
#   build             release build, debug checks off, no tests
#   run_xarray_bench  radix tree lookups against liburcu's cds_lfht
#   run_cache_bench   cached reads against kernel tmpfs and memcpy
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
builddir=${FOLIOFS_DEMO_BUILD:-$top/build-demo}
workdir=
bench_args=()

# Undo what the steps set up; each step registers what it leaves behind
# here (a mount later on). Runs on every exit, normal or not.
cleanup() {
	if [ -n "$workdir" ]; then
		rm -rf -- "$workdir"
	fi
}
trap cleanup EXIT
trap 'echo "demo.sh: interrupted" >&2; exit 130' INT TERM

# The package list is shared with tools/test.sh.
# shellcheck source=tools/lib/deps.sh
. "$top/tools/lib/deps.sh"

build() {
	local args=(-Dbuildtype=release -Ddebug_checks=false -Dtests=false)

	echo "=== building (release) in ${builddir#"$top"/}"
	if [ -d "$builddir" ]; then
		meson configure "$builddir" "${args[@]}" >/dev/null
	else
		meson setup "$builddir" "${args[@]}" >/dev/null
	fi
	if ! ninja -C "$builddir" >"$workdir/build.log" 2>&1; then
		tail -40 "$workdir/build.log" >&2
		echo "demo.sh: build failed" >&2
		return 1
	fi
}

run_xarray_bench() {
	cat <<'EOF'

=== radix tree lookups: our xarray against liburcu's cds_lfht

Each row is one measurement: reader threads look up random present keys for
a fixed time, at 1M entries (dense: indices 0..1M-1; sparse: 1M random 40-bit
indices), and every lookup reads the object it finds.

  structure    lfht           liburcu's lock-free RCU hash table
               xarray-xas     our tree, XA_STATE + xas_load, RCU read lock
                              taken once per 64 lookups (page-cache style)
               xarray-load    our tree, xa_load per lookup
               xarray-rwlock  our tree behind a pthread rwlock instead of RCU
  readers      reader threads
  writer       whether one more thread keeps replacing entries meanwhile (and,
               for the tree on the dense layout, merging 64-entry ranges into
               one order-6 entry and splitting them back)
  Mops/s       million lookups per second, all readers together
  vs lfht      Mops/s divided by lfht's in the same layout/readers/writer
  rd CPU       share of the wall time each reader thread was on a CPU: below
               100% when threads outnumber CPUs or the machine is busy
  Mops/CPU     million lookups per CPU-second the readers ran: steadier than
               Mops/s on a busy machine (a blocked rwlock reader runs none)
  wr kstore/s  the writer's replacements per second, in thousands
  wr split/s   the writer's merge+split cycles per second

The goal (DESIGN.md) is xarray-xas >= 1.00 vs lfht. With 2 readers and a
writer there are more threads than CPUs on a 2-CPU machine; the numbers are
what they are.

EOF
	"$builddir/tools/bench/xarray-bench" "${bench_args[@]}"
}

run_cache_bench() {
	cat <<'EOF'

=== cached reads through the embedded engine, against the kernel

A 1 GiB file is cached in foliofs (through the library, no FUSE), and the
same reads run against a 1 GiB file on kernel tmpfs with pread(2), and
against memcpy(3), in the same run. The ratio is foliofs over the
reference; the targets are from DESIGN.md. Bookkeeping is what the cache
spends on descriptors, block state and tree nodes per cached byte.

EOF
	"$builddir/tools/bench/cache-bench" "${bench_args[@]}"
}

main() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--quick) bench_args+=(--quick) ;;
		-h | --help)
			sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"
			return 0
			;;
		*)
			echo "demo.sh: unknown argument '$1' (try --help)" >&2
			return 2
			;;
		esac
		shift
	done

	cd "$top"
	workdir=$(mktemp -d "${TMPDIR:-/tmp}/foliofs-demo.XXXXXX")
	install_deps
	build
	run_xarray_bench
	run_cache_bench
}

main "$@"
