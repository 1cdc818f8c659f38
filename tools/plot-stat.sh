#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# plot-stat.sh - record `foliofs-stat --json -i 1` of a mount and plot dirty
# bytes and writeback throughput over time with gnuplot (SVG or PNG).
#
#   plot-stat.sh [-s SECONDS] [-i INTERVAL] [-o OUT.svg|OUT.png] MOUNTPOINT
#       record SECONDS (default: until Ctrl-C), then plot; the recording is
#       kept beside OUT as OUT's name with .jsonl
#   plot-stat.sh -f RECORDING.jsonl [-o OUT.svg|OUT.png]
#       plot a recording made before (foliofs-stat --json -i N > FILE)
#
# Left axis: dirty bytes and bytes under writeback (MiB); right axis:
# writeback throughput (MiB/s), the change of written_bytes between
# samples over the time between them. foliofs-stat comes from
# $FOLIOFS_STAT, else PATH, else the build directories next to this script.
# Needs gnuplot (Debian: gnuplot-nox) and awk.
set -euo pipefail

usage() {
	sed -n '3,16s/^# \{0,1\}//p' "$0"
	exit "${1:-2}"
}

seconds='' interval=1 out='' from='' mnt=''
while getopts "s:i:o:f:h" opt; do
	case $opt in
	s) seconds=$OPTARG ;;
	i) interval=$OPTARG ;;
	o) out=$OPTARG ;;
	f) from=$OPTARG ;;
	h) usage 0 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
if [ -n "$from" ]; then
	[ $# -eq 0 ] || usage
else
	[ $# -eq 1 ] || usage
	mnt=$1
fi
if [ -n "$seconds" ] && ! [[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]]; then
	echo "plot-stat.sh: bad -s '$seconds' (whole seconds)" >&2
	exit 2
fi
if ! command -v gnuplot >/dev/null; then
	echo "plot-stat.sh: gnuplot is missing (Debian: apt-get install gnuplot-nox)" >&2
	exit 1
fi

out=${out:-foliofs-stat-$(date +%Y%m%d-%H%M%S).svg}
case $out in
*.svg) term="svg size 1000,500 dynamic background rgb 'white' font 'sans,11'" ;;
*.png)
	if gnuplot -e 'set terminal' 2>&1 | grep -qw pngcairo; then
		term="pngcairo size 1000,500 font 'sans,10'"
	else
		term="png size 1000,500"
	fi ;;
*)
	echo "plot-stat.sh: $out: name the output .svg or .png" >&2
	exit 2 ;;
esac

# ---- record ---------------------------------------------------------------
if [ -z "$from" ]; then
	here=$(cd "$(dirname "$0")" && pwd)
	stat=${FOLIOFS_STAT:-}
	if [ -z "$stat" ]; then
		stat=$(command -v foliofs-stat || true)
	fi
	if [ -z "$stat" ]; then
		for b in "$here"/../build*/tools/foliofs-stat; do
			[ -x "$b" ] && stat=$b && break
		done
	fi
	if [ -z "$stat" ]; then
		echo "plot-stat.sh: foliofs-stat not found (set FOLIOFS_STAT)" >&2
		exit 1
	fi
	from=${out%.*}.jsonl
	count=()
	if [ -n "$seconds" ]; then
		# One sample at the start and one at the end of each interval.
		count=(-c "$(awk -v s="$seconds" -v i="$interval" \
			'BEGIN { n = int(s / i + 0.5) + 1; print (n < 2 ? 2 : n) }')")
		echo "recording $mnt for $seconds s into $from"
	else
		echo "recording $mnt into $from; Ctrl-C to stop and plot"
	fi
	# Ctrl-C ends the recording, not the script.
	trap ':' INT
	rc=0
	"$stat" "$mnt" --json -i "$interval" "${count[@]}" >"$from" || rc=$?
	trap - INT
	if [ ! -s "$from" ]; then
		echo "plot-stat.sh: nothing recorded (foliofs-stat exited $rc)" >&2
		exit 1
	fi
fi
if [ ! -s "$from" ]; then
	echo "plot-stat.sh: $from is missing or empty" >&2
	exit 1
fi

# ---- plot -----------------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# seconds, dirty MiB, under writeback MiB, written back MiB/s (NaN for the
# first sample, which has nothing before it).
awk '
function num(key) {
	if (match($0, "\"" key "\":[-0-9.eE+]+"))
		return substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3) + 0
	return "NaN"
}
/"foliofs_stats"/ {
	t = num("uptime"); w = num("written_bytes")
	if (n++ == 0) t0 = t
	tp = (n > 1 && t > pt) ? (w - pw) / (t - pt) / 1048576 : "NaN"
	printf "%.3f %.3f %.3f %s\n", t - t0, num("dirty_bytes") / 1048576,
		num("writeback_bytes") / 1048576, tp
	pt = t; pw = w
}' "$from" >"$tmp/data"
if [ ! -s "$tmp/data" ]; then
	echo "plot-stat.sh: $from holds no foliofs-stat --json samples" >&2
	exit 1
fi
title=$(grep -o '"mountpoint":"[^"]*"' "$from" | head -1 | cut -d'"' -f4)

# gnuplot strings in single quotes: a quote is written twice.
q() { printf "'%s'" "${1//\'/\'\'}"; }
cat >"$tmp/plot.gp" <<EOF
set terminal $term
set output $(q "$out")
set title $(q "foliofs on ${title:-?}: dirty data and writeback") noenhanced
set xlabel 'seconds'
set ylabel 'MiB'
set y2label 'MiB/s'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set grid
set key below
set datafile missing 'NaN'
plot $(q "$tmp/data") using 1:2 with lines lw 2 title 'dirty (MiB)', \
     '' using 1:3 with lines lw 1 dt 2 title 'under writeback (MiB)', \
     '' using 1:4 axes x1y2 with linespoints lw 2 pt 7 ps 0.5 title 'written back (MiB/s, right)'
EOF
gnuplot "$tmp/plot.gp"
echo "plot: $out ($(wc -l <"$tmp/data") samples from $from)"
