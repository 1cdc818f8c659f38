#!/usr/bin/env bash
# demo.sh - build foliofs for speed, mount it, and run the fio suite on it
# and on kernel ext4, printing one table of the two side by side. Meant for
# a fresh Debian machine, as root: it installs the build dependencies with
# apt-get, but only when some are missing. About 3 minutes on 2 CPUs
# (1.5 with --quick).
#
# Usage: tools/demo.sh [--quick] [--micro]
#   --quick   a 256 MiB file and 5 s per random job instead of 1 GiB and
#             10 s (and 0.1 s per point in the --micro benchmarks)
#   --micro   also run the in-process benchmarks (xarray-bench, cache-bench)
#             after fio: a few more minutes, and about 3 GiB of memory
#
# Environment:
#   FOLIOFS_DEMO_BUILD=build-demo   the release build directory
#   FOLIOFS_DEMO_TMP=/var/tmp       where the two images go (on disk, not on
#                                   tmpfs); mount points and logs go there too
#   FOLIOFS_DEMO_MOUNT_OPTS="-o X"  more arguments for the foliofs binary
#   FOLIOFS_DEMO_MOUNT=DIR          benchmark a foliofs you mounted yourself
#                                   at DIR instead of mounting one
#
# Steps, one function each:
#   install_deps      packages, from tools/lib/deps.sh
#   build             release build, debug checks off, no tests
#   mount_both        a 2 GiB foliofs image through the FUSE binary, and a
#                     2 GiB ext4 image on a loop device next to it
#   run_fio           tools/bench/fio-suite.sh on each, one after the other
#   report            the table, results/<time>/results.json and a plot
#   run_xarray_bench  (--micro) radix tree lookups against liburcu's cds_lfht
#   run_cache_bench   (--micro) cached reads against kernel tmpfs and memcpy
# Whatever happens, both filesystems are unmounted, the loop device is
# detached, and the images are removed on exit, Ctrl-C included.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
builddir=${FOLIOFS_DEMO_BUILD:-$top/build-demo}
tmpbase=${FOLIOFS_DEMO_TMP:-/var/tmp}
image_bytes=$((2 << 30))
workdir=
resdir=
fs_dir=
suite_pid=
quick=false
micro=false
bench_args=()
suite_args=()

# shellcheck source=tools/lib/deps.sh
. "$top/tools/lib/deps.sh"
# shellcheck source=tools/lib/mounts.sh
. "$top/tools/lib/mounts.sh"

# Undo what the steps set up, in reverse: the fio run, the mounts, the
# work directory. Runs on every exit, normal or not. Nothing under the
# work directory is removed while something is still mounted there.
cleanup() {
	local rc=$? left i

	set +e
	trap '' INT TERM
	# fio may be stuck on the FUSE mount: give it 10 s to stop, then
	# unmount and stop the daemon, which frees it, and wait again.
	if [ -n "$suite_pid" ]; then
		kill -TERM "$suite_pid" 2>/dev/null
		for ((i = 0; i < 100; i++)); do
			kill -0 "$suite_pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	if [ -n "$workdir" ]; then
		foliofs_unmount "$workdir/foliofs"
		[ -n "$suite_pid" ] && stop_pid "$suite_pid" 10
		ext4_unmount "$workdir/ext4" "$workdir/ext4.img"
		left=$(awk -v w="$workdir/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts)
		if [ -n "$left" ]; then
			echo "demo.sh: still mounted, leaving $workdir: $left" >&2
		else
			rm -rf --one-file-system -- "$workdir"
		fi
	fi
	# Half a set of results is none.
	if [ -n "$resdir" ] && [ ! -e "$resdir/results.json" ]; then
		rm -rf -- "$resdir"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "demo.sh: interrupted" >&2; exit 130' INT
trap 'echo "demo.sh: terminated" >&2; exit 143' TERM

fail() {
	echo "demo.sh: $*" >&2
	exit 1
}

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
		fail "build failed"
	fi
}

mount_both() {
	local bin=$builddir/fuse/foliofs mkfs=$builddir/tools/mkfs.foliofs
	local opts=() fstype

	read -r -a opts <<<"${FOLIOFS_DEMO_MOUNT_OPTS:-}"
	echo "=== mounting foliofs and the ext4 reference (2 GiB images in $workdir)"
	mkdir "$workdir/foliofs" "$workdir/ext4"
	if [ -n "${FOLIOFS_DEMO_MOUNT:-}" ]; then
		[ -d "$FOLIOFS_DEMO_MOUNT" ] ||
			fail "FOLIOFS_DEMO_MOUNT=$FOLIOFS_DEMO_MOUNT is not a directory"
		fs_dir=$(cd "$FOLIOFS_DEMO_MOUNT" && pwd)
		fstype=$(awk -v d="$fs_dir" '$2 == d { t = $3 } END { print t }' /proc/self/mounts)
		echo "foliofs: using $fs_dir (${fstype:-not a mount point}), as FOLIOFS_DEMO_MOUNT says"
	else
		[ -x "$bin" ] || fail "no foliofs binary at ${bin#"$top"/}: the FUSE frontend (fuse/) is not built yet" \
			"(to benchmark a foliofs mounted by hand, set FOLIOFS_DEMO_MOUNT=DIR)"
		if [ -x "$mkfs" ]; then
			"$mkfs" "$workdir/foliofs.img" --size "$image_bytes" >"$workdir/mkfs.log" 2>&1 ||
				{ cat "$workdir/mkfs.log" >&2; fail "mkfs.foliofs failed"; }
		else
			echo "note: no ${mkfs#"$top"/}; foliofs creates the image, at its default size"
		fi
		foliofs_mount "$bin" "$workdir/foliofs.img" "$workdir/foliofs" \
			"$workdir/foliofs.log" "${opts[@]}" || fail "could not mount foliofs"
		fs_dir=$workdir/foliofs
		echo "foliofs: $workdir/foliofs.img on $fs_dir (pid $FOLIOFS_PID)"
	fi
	ext4_mount "$workdir/ext4.img" "$image_bytes" "$workdir/ext4" ||
		fail "could not mount the ext4 reference"
	echo "ext4:    $workdir/ext4.img on $workdir/ext4 ($EXT4_LOOP, direct I/O)"
}

# run_fio LABEL DIR: the suite on DIR into $resdir/fio-LABEL.json, run in
# the background so that a signal reaches this shell at once. Returns 1
# when some jobs failed, and stops the demo on anything worse.
run_fio() {
	local label=$1 dir=$2 rc=0

	echo
	sync
	{ echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || true
	"$top/tools/bench/fio-suite.sh" "$dir" "$label" "$resdir/fio-$label.json" \
		"${suite_args[@]}" &
	suite_pid=$!
	wait "$suite_pid" || rc=$?
	suite_pid=
	[ $rc -le 1 ] || fail "fio suite on $label failed (status $rc)"
	return $rc
}

# report: one table of both runs (printed, and saved as table.md), the
# combined results.json, and plot.gp, which gnuplot turns into results.svg.
report() {
	local plot

	python3 - "$resdir" "$quick" "$(nproc)" "$(uname -r)" "$image_bytes" \
		"${FOLIOFS_DEMO_MOUNT_OPTS:-}" <<'PY'
import json, os, sys, time

resdir, quick, ncpu, kernel, image_bytes, opts = sys.argv[1:]
runs = {l: json.load(open(os.path.join(resdir, "fio-%s.json" % l)))
        for l in ("foliofs", "ext4")}
jobs = {l: {j["name"]: j for j in r["jobs"]} for l, r in runs.items()}

rows = []
for name in jobs["ext4"]:
    a, b = jobs["foliofs"].get(name, {}), jobs["ext4"][name]
    unit = b.get("unit") or a.get("unit") or ""
    va = a["value"] if a.get("ok") else None
    vb = b["value"] if b.get("ok") else None
    ratio = va / vb if va is not None and vb else None
    rows.append({"job": name, "unit": unit, "foliofs": va, "ext4": vb,
                 "ratio": None if ratio is None else round(ratio, 3)})

def fmt(v, unit):
    if v is None:
        return "failed"
    return "%.1f" % v if unit == "MiB/s" else "%.0f" % v

head = ("job", "unit", "foliofs", "ext4", "foliofs/ext4")
cells = [(r["job"], r["unit"], fmt(r["foliofs"], r["unit"]),
          fmt(r["ext4"], r["unit"]),
          "-" if r["ratio"] is None else "%.2f" % r["ratio"]) for r in rows]
w = [max(len(c[i]) for c in cells + [head]) for i in range(5)]
line = lambda c: "| " + " | ".join(
    c[i].ljust(w[i]) if i < 2 else c[i].rjust(w[i]) for i in range(5)) + " |"
table = [line(head), "| " + " | ".join(
    "-" * w[i] if i < 2 else "-" * (w[i] - 1) + ":" for i in range(5)) + " |"]
table += [line(c) for c in cells]
print("\n".join(table))
open(os.path.join(resdir, "table.md"), "w").write("\n".join(table) + "\n")

doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": quick == "true",
       "host": {"cpus": int(ncpu), "kernel": kernel},
       "image_bytes": int(image_bytes), "foliofs_options": opts,
       "rows": rows, "runs": runs}
with open(os.path.join(resdir, "results.json"), "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")

# gnuplot: absolute values for the sequential and the random jobs (their
# units differ), then the ratios, with the line at 1 where they are equal.
def block(name, rs, cols):
    out = ["$%s << EOD" % name]
    for r in rs:
        out.append(" ".join(['"%s"' % r["job"]] +
                   ["NaN" if r[c] is None else repr(r[c]) for c in cols]))
    return out + ["EOD"]

seq = [r for r in rows if r["unit"] == "MiB/s"]
rnd = [r for r in rows if r["unit"] == "IOPS"]
gp = block("seq", seq, ("foliofs", "ext4")) + block("rnd", rnd, ("foliofs", "ext4"))
gp += block("ratio", rows, ("ratio",))
gp += ["""
set terminal svg size 1200,440 dynamic enhanced font "sans,11" background "white"
set output "results.svg"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key outside top left horizontal
set tmargin 5
set yrange [0:*]
set xtics nomirror rotate by -30
set multiplot layout 1,3 title "foliofs vs kernel ext4 (fio%s, %s CPUs, kernel %s)"
set title "sequential 1 MiB, MiB/s"
plot $seq using 2:xtic(1) title "foliofs" lc rgb "#d95f02", \\
     '' using 3 title "ext4" lc rgb "#7570b3"
set title "random 4 KiB, IOPS"
set key off
plot $rnd using 2:xtic(1) title "foliofs" lc rgb "#d95f02", \\
     '' using 3 title "ext4" lc rgb "#7570b3"
# Ratios on a log scale: 0.5 and 2 are as far from 1.
set title "foliofs / ext4 (log scale)"
set logscale y 2
set yrange [*:*]
set offsets 0, 0, graph 0.1, graph 0.05
set ytics format "%%g"
plot $ratio using 2:xtic(1) lc rgb "#1b9e77", \\
     '' using 0:2:(sprintf("%%.2f", $2)) with labels offset 0,0.7, \\
     1 with lines dt 2 lc rgb "black"
unset multiplot
""" % (", quick" if quick == "true" else "", ncpu, kernel)]
open(os.path.join(resdir, "plot.gp"), "w").write("\n".join(gp))
PY
	if (cd "$resdir" && gnuplot plot.gp) 2>"$workdir/gnuplot.log"; then
		plot=$resdir/results.svg
	else
		plot="(none: gnuplot failed, see $resdir/plot.gp)"
		cat "$workdir/gnuplot.log" >&2
	fi
	cat <<EOF

MiB/s for the sequential jobs, IOPS for the random ones; above 1 in the last
column, foliofs is faster. fio drops the kernel page cache of its file before
each job; foliofs's own cache is not dropped, so its reads may be served from
memory where ext4's go to the disk.

results: ${resdir#"$top"/}/results.json
plot:    ${plot#"$top"/}
EOF
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
	local t0=$SECONDS failed=0 avail

	while [ $# -gt 0 ]; do
		case "$1" in
		--quick) quick=true bench_args+=(--quick) suite_args+=(--quick) ;;
		--micro) micro=true ;;
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
	[ "$(id -u)" -eq 0 ] || fail "run as root: it mounts filesystems"
	[ -d "$tmpbase" ] || fail "FOLIOFS_DEMO_TMP=$tmpbase is not a directory"
	# Two 2 GiB images, each about half full at the end.
	avail=$(df -P -k "$tmpbase" | awk 'NR == 2 { print $4 }')
	[ "$avail" -ge $((3 << 20)) ] ||
		fail "$tmpbase has $((avail >> 10)) MiB free, the images need 3 GiB (set FOLIOFS_DEMO_TMP)"
	[ "$(stat -f -c %T "$tmpbase")" != tmpfs ] ||
		echo "note: $tmpbase is tmpfs: both images live in memory (set FOLIOFS_DEMO_TMP)"
	workdir=$(mktemp -d "$tmpbase/foliofs-demo.XXXXXX")

	install_deps
	build
	mount_both
	# The two runs are minutes apart: whatever else runs meanwhile moves
	# the ratios, and the table cannot tell.
	awk -v n="$(nproc)" '$1 > n / 2 {
		printf "note: load average %s on %d CPUs: something else is running, expect noisy ratios\n", $1, n }' /proc/loadavg
	resdir=$top/results/$(date +%Y%m%d-%H%M%S)
	mkdir -p "$resdir"
	run_fio foliofs "$fs_dir" || failed=1
	run_fio ext4 "$workdir/ext4" || failed=1
	echo
	report
	if $micro; then
		run_xarray_bench
		run_cache_bench
	fi
	echo
	echo "demo finished in $((SECONDS - t0)) s"
	[ "$failed" -eq 0 ] || fail "some fio jobs failed (see the table)"
}

main "$@"
