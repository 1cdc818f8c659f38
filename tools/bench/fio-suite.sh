#!/usr/bin/env bash
# fio-suite.sh - run the fio suite (tools/bench/fio-suite.fio) in a directory
# and write one JSON file with each job's bandwidth, IOPS and latency.
#
# Usage: tools/bench/fio-suite.sh DIR LABEL OUTJSON [--quick]
#   DIR       where to run: a mounted foliofs, an ext4 reference, any
#             directory; the suite writes one file there (1 GiB) and removes
#             it at the end
#   LABEL     names the run in the JSON and in the progress lines
#   OUTJSON   the results, written even when some jobs fail
#   --quick   256 MiB file and 5 s per random job instead of 1 GiB and 10 s
#
# Jobs, one fio run each, in this order (the file seqwrite writes is the one
# the others read and overwrite):
#   seqwrite    1 MiB sequential writes, fsync at the end       MiB/s
#   seqread     1 MiB sequential reads                          MiB/s
#   randread    4 KiB random reads, 2 processes                 IOPS
#   randwrite   4 KiB random writes, 2 processes, fsync at end  IOPS
#   randrw      4 KiB random 70/30 read/write, io_uring QD 16   IOPS
#   directread  4 KiB random reads, O_DIRECT, QD 1              IOPS
# A sequential pass stops after 30 s (20 s with --quick) even if unfinished,
# so the whole suite takes about 1 minute (30 s with --quick) on a local disk
# and at most about 1.5 minutes (50 s).
#
# Environment:
#   FIO_SUITE_JOBS="randread directread"   run only these jobs
#
# Output: {"label", "dir", "quick", "fio_version", "size_bytes",
# "runtime_s", "started", "elapsed_s", "jobs": [...]}, one job object per
# job in the order above: {"name", "ok", "unit" ("MiB/s" or "IOPS"),
# "value" (in that unit), "bw_mib_s", "iops", "lat_mean_us", "lat_p99_us",
# "runtime_s", "io_mib"}, plus "read" and "write" objects with the same
# fields for randrw; a failed job is {"name", "ok": false, "error"}.
# Exit status: 0 when every job ran, 1 when some failed (OUTJSON still
# written), 2 on bad usage.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
jobfile=$here/fio-suite.fio
all_jobs=(seqwrite seqread randread randwrite randrw directread)
tmp=
datafile=
fio_pid=

usage() {
	sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"
}

die() {
	echo "fio-suite.sh: $*" >&2
	exit 2
}

# fio runs in the background and the shell waits for it, so a signal to
# this script is acted on at once and stops fio as well; the data file
# goes in every case.
cleanup() {
	set +e
	if [ -n "$fio_pid" ]; then
		kill -TERM "$fio_pid" 2>/dev/null
		wait "$fio_pid" 2>/dev/null
	fi
	[ -n "$datafile" ] && rm -f -- "$datafile"
	[ -n "$tmp" ] && rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'echo "fio-suite.sh: interrupted" >&2; exit 130' INT
trap 'echo "fio-suite.sh: terminated" >&2; exit 143' TERM

# parse JOB MODE FIOJSON STDERR RC OUT: one job's fio output to one result
# object in OUT, and a progress line on stdout. merge OUTJSON META RESULT...:
# the results into the suite's JSON.
read -r -d '' parse_py <<'PY' || true
import json, sys

def num(x):
    return round(x, 3)

def summary(d):
    lat = d["lat_ns"]
    pct = lat.get("percentile", {})
    return {
        "bw_mib_s": num(d["bw_bytes"] / 2**20),
        "iops": num(d["iops"]),
        "lat_mean_us": num(lat["mean"] / 1000),
        "lat_p99_us": num(pct.get("99.000000", 0) / 1000),
        "runtime_s": num(d["runtime"] / 1000),
        "io_mib": num(d["io_bytes"] / 2**20),
    }

def parse(name, unit, fiojson, stderr, rc, out):
    res = {"name": name, "ok": False}
    try:
        text = open(fiojson).read()
        # fio may print warnings ahead of the JSON object.
        doc = json.loads(text[text.index("{"):])
        job = doc["jobs"][0]
        dirs = [k for k in ("read", "write") if job[k]["io_bytes"] > 0]
        if job.get("error"):
            raise RuntimeError("fio job error %d" % job["error"])
        if not dirs:
            raise RuntimeError("no I/O done")
        main = "mixed" if len(dirs) > 1 and "mixed" in job else dirs[0]
        s = summary(job[main])
        res.update(ok=(rc == "0"), unit=unit,
                   value=s["bw_mib_s" if unit == "MiB/s" else "iops"], **s)
        if len(dirs) > 1:
            for k in dirs:
                res[k] = summary(job[k])
        if rc != "0":
            res["error"] = "fio exited with status %s" % rc
    except Exception as e:
        lines = [l for l in open(stderr).read().splitlines() if l.strip()]
        res["error"] = "; ".join(lines[-3:]) or "fio exited with status %s (%s)" % (rc, e)
    json.dump(res, open(out, "w"))
    if res["ok"]:
        print("  %-10s %10.1f %-5s  mean %8.1f us  p99 %8.1f us" % (
            name, res["value"], unit, res["lat_mean_us"], res["lat_p99_us"]))
    else:
        print("  %-10s FAILED: %s" % (name, res["error"]))

def merge(outjson, meta, results):
    doc = json.load(open(meta))
    doc["jobs"] = [json.load(open(r)) for r in results]
    with open(outjson + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    import os
    os.replace(outjson + ".tmp", outjson)

if sys.argv[1] == "parse":
    parse(*sys.argv[2:8])
else:
    merge(sys.argv[2], sys.argv[3], sys.argv[4:])
PY

# run_job NAME: one fio run of section NAME; its result lands in
# $tmp/NAME.result. Returns fio's status.
run_job() {
	local name=$1 unit=IOPS limit rc=0

	case "$name" in
	seq*) unit=MiB/s limit=$seq_cap ;;
	*) limit=$runtime ;;
	esac
	# Laying out a missing file is not bounded by the job's runtime; a
	# filesystem that hangs is bounded here.
	timeout -k 10 $((limit + 90)) fio --output-format=json \
		--output="$tmp/$name.json" --section="$name" "$jobfile" \
		>"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null &
	fio_pid=$!
	wait "$fio_pid" || rc=$?
	fio_pid=
	[ $rc -eq 124 ] && echo "timed out after $((limit + 90)) s" >>"$tmp/$name.err"
	touch "$tmp/$name.json"
	python3 -c "$parse_py" parse "$name" "$unit" "$tmp/$name.json" \
		"$tmp/$name.err" "$rc" "$tmp/$name.result"
	return $rc
}

main() {
	local args=() quick=false size=1g seq_cap=30 runtime=10 failed=0
	local dir label out jobs name actual started t0 results

	while [ $# -gt 0 ]; do
		case "$1" in
		--quick) quick=true ;;
		-h | --help) usage; return 0 ;;
		-*) die "unknown option '$1' (try --help)" ;;
		*) args+=("$1") ;;
		esac
		shift
	done
	[ ${#args[@]} -eq 3 ] || die "usage: fio-suite.sh DIR LABEL OUTJSON [--quick]"
	dir=${args[0]} label=${args[1]} out=${args[2]}
	if $quick; then
		size=256m seq_cap=20 runtime=5
	fi
	read -r -a jobs <<<"${FIO_SUITE_JOBS:-${all_jobs[*]}}"
	for name in "${jobs[@]}"; do
		[[ " ${all_jobs[*]} " == *" $name "* ]] ||
			die "unknown job '$name' in FIO_SUITE_JOBS (jobs: ${all_jobs[*]})"
	done

	if ! [ -d "$dir" ] || ! [ -w "$dir" ]; then
		die "$dir: not a writable directory"
	fi
	command -v fio >/dev/null || die "fio is not installed"
	command -v python3 >/dev/null || die "python3 is not installed"
	dir=$(cd "$dir" && pwd)
	: >"$out" || die "$out: cannot write"

	tmp=$(mktemp -d "${TMPDIR:-/tmp}/fio-suite.XXXXXX")
	datafile=$dir/fio-suite.dat
	rm -f -- "$datafile"
	export FIO_SUITE_FILE=$datafile FIO_SUITE_SIZE=$size
	export FIO_SUITE_RUNTIME=$runtime FIO_SUITE_SEQ_CAP=$seq_cap

	started=$(date -Iseconds)
	t0=$(date +%s)
	echo "fio-suite [$label] in $dir: ${jobs[*]} ($size file, ${runtime} s per random job)"
	for name in "${jobs[@]}"; do
		run_job "$name" || failed=$((failed + 1))
		# A seqwrite cut short by its time cap leaves a shorter file:
		# the other jobs use what is there instead of laying out the
		# rest (which nothing would time).
		if [ "$name" = seqwrite ] && [ -f "$datafile" ]; then
			actual=$(($(stat -c %s "$datafile") / 1048576 * 1048576))
			[ "$actual" -gt 0 ] && export FIO_SUITE_SIZE=$actual
		fi
	done

	python3 - "$tmp/meta.json" "$label" "$dir" "$quick" "$FIO_SUITE_SIZE" \
		"$runtime" "$started" "$(($(date +%s) - t0))" "$(fio --version)" <<'PY'
import json, sys
f, label, d, quick, size, runtime, started, elapsed, fio = sys.argv[1:]
size = int(size) if size.isdigit() else int(size[:-1]) << {"m": 20, "g": 30}[size[-1]]
json.dump({"label": label, "dir": d, "quick": quick == "true",
           "fio_version": fio, "size_bytes": size, "runtime_s": int(runtime),
           "started": started, "elapsed_s": int(elapsed)}, open(f, "w"))
PY
	results=()
	for name in "${jobs[@]}"; do
		results+=("$tmp/$name.result")
	done
	python3 -c "$parse_py" merge "$out" "$tmp/meta.json" "${results[@]}"
	echo "fio-suite [$label] done in $(($(date +%s) - t0)) s, $failed failed: $out"
	[ "$failed" -eq 0 ] || return 1
}

main "$@"
