#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# stat.sh BUILD_DIR SOURCE_DIR - foliofs-stat against a live mount: the
# socket is where foliofs.8 says (/run/foliofs/<st_dev>.sock, mode 0600)
# and leaves the namespace alone; the summary, table and JSON forms print;
# the numbers move as they must under a scripted workload (dirty bytes and
# reservations rise with writes and fall to 0 after fsync, written_bytes
# grows by what was written, writeback throughput shows while it runs);
# tools/plot-stat.sh plots a recording; and the errors are clear: not a
# foliofs mount, a daemon that does not answer (SIGSTOP), a daemon that is
# gone (SIGKILL), the socket removed at unmount.
#
# One line per check, then "N passed, N failed, N skipped". Exit 0, 1 on
# a failure, 77 without /dev/fuse or root.
set -uo pipefail

if [ $# -lt 2 ]; then
	echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
	exit 2
fi
build=$(cd "$1" && pwd) || exit 2
src=$(cd "$2" && pwd) || exit 2
source "$(dirname "$0")/common.sh"

img=$tmp/vol.img
stopped=
stale=
# A stopped daemon would hang the unmount: wake it first. A killed one
# leaves its socket.
extra_cleanup() {
	[ -n "$stopped" ] && kill -CONT "$stopped" 2>/dev/null
	[ -n "$stale" ] && rm -f "$stale"
}
echo "foliofs-stat suite: build $build, images in $tmp"

# json_check CODE < LINES: run python CODE with `s` the list of JSON
# objects read, one per line; prints what failed.
json_check() {
	python3 -c '
import json, sys
s = [json.loads(l) for l in sys.stdin.read().splitlines() if l.strip()]
exec(sys.argv[1])' "$1" 2>&1 | tail -3
	return "${PIPESTATUS[0]}"
}
# field NAME: one number of a fresh sample (json_check checks the JSON).
field() {
	"$fstat" "$mnt" --json | grep -o "\"$1\":[0-9]*" | cut -d: -f2
}

# Writeback must not start on its own while we look: no expiry, no
# background threshold within reach. attr_timeout lets the kernel answer
# stat(MOUNTPOINT) itself while the daemon is stopped below.
opts="size=256M,cache_size=256M,dirty_bytes=128M,dirty_background_bytes=96M"
opts="$opts,dirty_expire_ms=600000,commit_ms=600000,attr_timeout=3600$direct_opt"
if ! out=$("$bin" "$img" "$mnt" -o "$opts" 2>&1) || ! mounted "$mnt"; then
	fail stat/mount "$out"
	finish
fi
pass stat/mount

# ---- the socket -----------------------------------------------------------------
dev=$(stat -c %d "$mnt")
sock=/run/foliofs/$dev.sock
if [ -S "$sock" ] && [ "$(stat -c %a "$sock")" = 600 ]; then
	pass stat/socket-path-and-mode
else
	fail stat/socket-path-and-mode "$(ls -l "$sock" 2>&1)"
fi
if [ -z "$(ls -A "$mnt")" ]; then
	pass stat/namespace-untouched
else
	fail stat/namespace-untouched "the mount holds: $(ls -A "$mnt")"
fi

# ---- the three forms ------------------------------------------------------------
out=$("$fstat" "$mnt" 2>&1)
if [ $? -eq 0 ] && grep -q '^cache ' <<<"$out" && grep -q '^dirty ' <<<"$out" &&
	grep -q '^log ' <<<"$out"; then
	pass stat/summary
else
	fail stat/summary "$out"
fi
out=$("$fstat" "$mnt" -i 0.2 -c 3 2>&1)
if [ $? -eq 0 ] && [ "$(wc -l <<<"$out")" -eq 4 ] && head -1 <<<"$out" | grep -q dirty; then
	pass stat/interval-table
else
	fail stat/interval-table "$out"
fi
out=$("$fstat" "$mnt" --json -i 0.2 -c 3 2>&1)
if [ $? -eq 0 ] && [ "$(wc -l <<<"$out")" -eq 3 ] && why=$(json_check "
assert all(o['dev'] == $dev for o in s), 'dev'
assert all('written_bytes_per_sec' in o and 'hit_ratio' in o for o in s), 'rates'
assert all(0.1 < o['interval'] < 1.0 for o in s[1:]), [o['interval'] for o in s]
assert len(s[0]['cached_bytes_by_order']) == 10, 'orders'
assert s[0]['dirty_bytes'] == 0 and s[0]['reserved_blocks'] == 0, s[0]
" <<<"$out"); then
	pass stat/json-lines
else
	fail stat/json-lines "${why:-$out}"
fi

# ---- the numbers under a workload ---------------------------------------------
w0=$(field written_bytes)
bs=$(field block_size)
dd if=/dev/urandom of="$mnt/data" bs=1M count=16 status=none
if json_check "
o = s[0]
assert o['dirty_bytes'] >= 16 << 20, 'dirty %d' % o['dirty_bytes']
assert o['reserved_blocks'] * $bs >= 16 << 20, 'reserved %d blocks' % o['reserved_blocks']
assert o['written_bytes'] == $w0, 'written %d, was $w0' % o['written_bytes']
" <<<"$("$fstat" "$mnt" --json)" >"$tmp/why"; then
	pass stat/dirty-and-reserved-rise
else
	fail stat/dirty-and-reserved-rise "$(cat "$tmp/why")"
fi
sync "$mnt/data"	# fsync(2) of the file; plain sync(2) does not reach us
if json_check "
o = s[0]
assert o['dirty_bytes'] == 0, 'dirty %d' % o['dirty_bytes']
assert o['writeback_bytes'] == 0, 'under writeback %d' % o['writeback_bytes']
assert o['reserved_blocks'] == 0, 'reserved %d blocks' % o['reserved_blocks']
assert o['written_bytes'] >= $w0 + (16 << 20), 'written %d, was $w0' % o['written_bytes']
assert o['writeback_errors'] == 0, 'errors'
" <<<"$("$fstat" "$mnt" --json)" >"$tmp/why"; then
	pass stat/fsync-cleans-and-writes
else
	fail stat/fsync-cleans-and-writes "$(cat "$tmp/why")"
fi

# Throughput while writeback runs: record, write and fsync in the middle.
"$fstat" "$mnt" --json -i 0.25 -c 10 >"$tmp/rec.jsonl" 2>"$tmp/rec.err" &
rec=$!
sleep 0.6
dd if=/dev/urandom of="$mnt/data2" bs=1M count=32 conv=fsync status=none
wait "$rec"
if json_check "
assert len(s) == 10, '%d samples' % len(s)
assert max(o['dirty_bytes'] for o in s[1:]) > 0 or max(o['written_bytes_per_sec'] for o in s[1:]) > 0, 'nothing moved'
assert max(o['written_bytes_per_sec'] for o in s[1:]) > 0, 'no throughput'
assert s[-1]['written_bytes'] - s[0]['written_bytes'] >= 32 << 20, 'written grew by %d' % (s[-1]['written_bytes'] - s[0]['written_bytes'])
assert s[-1]['dirty_bytes'] == 0, 'still dirty'
" <"$tmp/rec.jsonl" >"$tmp/why"; then
	pass stat/writeback-throughput
else
	fail stat/writeback-throughput "$(cat "$tmp/why" "$tmp/rec.err")"
fi
if command -v gnuplot >/dev/null; then
	out=$("$src/tools/plot-stat.sh" -f "$tmp/rec.jsonl" -o "$tmp/plot.svg" 2>&1)
	if [ $? -eq 0 ] && grep -q '<svg' "$tmp/plot.svg" 2>/dev/null; then
		pass stat/plot-svg
	else
		fail stat/plot-svg "$out"
	fi
else
	skip stat/plot-svg "gnuplot is missing (Debian: gnuplot-nox)"
fi

# ---- clear errors ------------------------------------------------------------
# expect_error NAME PATTERN ARGS...: foliofs-stat exits 1 and says PATTERN.
expect_error() {
	local name=$1 pattern=$2 out rc
	shift 2
	out=$(timeout 30 "$fstat" "$@" 2>&1)
	rc=$?
	if [ $rc -eq 1 ] && grep -q -- "$pattern" <<<"$out"; then
		pass "stat/$name"
	else
		fail "stat/$name" "exit $rc: $out"
	fi
}
expect_error not-foliofs "is not a foliofs mount" "$tmp"
expect_error no-such-path "No such file" "$tmp/absent"
"$fstat" >/dev/null 2>&1
rc=$?
if [ $rc -eq 2 ]; then
	pass stat/usage
else
	fail stat/usage "no arguments exited $rc, not 2"
fi

pid=$(field pid)
stat "$mnt" >/dev/null	# the root's attributes cached for attr_timeout
stopped=$pid
kill -STOP "$pid"
expect_error not-answering "is not answering" "$mnt" -t 0.5
kill -CONT "$pid"
stopped=
if [ "$(field dirty_bytes)" = 0 ]; then
	pass stat/answers-after-continue
else
	fail stat/answers-after-continue "no answer after SIGCONT"
fi

if fusermount3 -u "$mnt" && wait_released "$img" && [ ! -e "$sock" ]; then
	pass stat/socket-removed-at-unmount
else
	fail stat/socket-removed-at-unmount "$(ls -l "$sock" 2>&1)"
	fusermount3 -u -z "$mnt" 2>/dev/null
fi
fsck_clean stat/fsck-after-unmount "$img"

# A daemon that died: the mount answers ENOTCONN.
if out=$("$bin" "$img" "$mnt" -o "attr_timeout=0$direct_opt" 2>&1) && mounted "$mnt"; then
	stale=/run/foliofs/$(stat -c %d "$mnt").sock
	kill -KILL "$(field pid)"
	sleep 0.2
	expect_error daemon-gone "daemon is gone" "$mnt"
	fusermount3 -u -z "$mnt" 2>/dev/null
else
	fail stat/remount "$out"
fi

finish
