#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# run.sh BUILD_DIR - the FUSE suite: mounts fresh images with BUILD_DIR's
# fuse/foliofs and runs, through the mount, the POSIX checks (posix.py,
# some as uid 65534), a seeded random-op run against a model that is
# compared again after a remount (randops.py), fio with crc32c verify, the
# command line's bad-input cases, mkfs/fsck, the embedding example, and a
# SIGTERM with files open.
#
# One line per check, "PASS name" or "FAIL name: why", then
# "N passed, N failed, N skipped". Exit 0 if nothing failed, 1 otherwise,
# 77 (skip) without /dev/fuse. Whatever happens, nothing stays mounted.
#
# Environment: FOLIOFS_SEED (randops seed), FOLIOFS_RANDOPS (op count,
# default 3000), FOLIOFS_TEST_DIR (where images go; default /tmp),
# FOLIOFS_FUSE_ONLY (run only the named stages: kill9 concurrency tools cli daemon posix
# randops fio kcache evict sigterm), FOLIOFS_FUSE_OPTS (more -o options for the
# main mount, e.g. "cache_size=64M,dirty_bytes=8M" to force reclaim and
# throttling).
set -uo pipefail

if [ $# -lt 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build=$(cd "$1" && pwd) || exit 2
here=$(cd "$(dirname "$0")" && pwd)
bin=$build/fuse/foliofs
mkfs=$build/tools/mkfs.foliofs
fsck=$build/tools/fsck.foliofs
embed=$build/tools/embed-example

if [ ! -c /dev/fuse ]; then
	echo "SKIP: /dev/fuse is missing (no FUSE in this kernel or container); the FUSE suite needs it"
	exit 77
fi
for b in "$bin" "$mkfs" "$fsck"; do
	if [ ! -x "$b" ]; then
		echo "FAIL: $b is not built"
		exit 1
	fi
done
if ! command -v fusermount3 >/dev/null; then
	echo "SKIP: fusermount3 is missing (Debian package fuse3)"
	exit 77
fi

tmp=$(mktemp -d "${FOLIOFS_TEST_DIR:-/tmp}/foliofs-fuse.XXXXXX") || exit 1
chmod 755 "$tmp"
mnt=$tmp/mnt
img=$tmp/vol.img
mkdir "$mnt"
fg_pid=
passed=0 failed=0 skipped=0
seed=${FOLIOFS_SEED:-$(( $(date +%s%N) % 1000000 ))}

mounted() {
	grep -q " $1 " /proc/self/mounts
}

# Nothing stays mounted, whatever way we leave.
cleanup() {
	local m
	for m in $(awk '{print $2}' /proc/self/mounts | grep "^$tmp/" | sort -r); do
		fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	if [ -n "$fg_pid" ] && kill -0 "$fg_pid" 2>/dev/null; then
		kill "$fg_pid" 2>/dev/null
		wait "$fg_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skip() { echo "SKIP $1: $2"; skipped=$((skipped + 1)); }

want_stage() {
	[ -z "${FOLIOFS_FUSE_ONLY:-}" ] || [[ " $FOLIOFS_FUSE_ONLY " == *" $1 "* ]]
}

# Tally the PASS/FAIL/SKIP lines a script printed.
tally() {
	local out=$1
	passed=$((passed + $(grep -c '^PASS' "$out")))
	failed=$((failed + $(grep -c '^FAIL' "$out")))
	skipped=$((skipped + $(grep -c '^SKIP' "$out")))
}

# Images on a filesystem without O_DIRECT (tmpfs before 6.6) need no_direct.
direct_opt=
if ! dd if=/dev/zero of="$tmp/probe" bs=4096 count=1 oflag=direct \
	status=none 2>/dev/null; then
	direct_opt=,no_direct
fi
rm -f "$tmp/probe"

# mount_fg NAME IMAGE [OPTIONS]: mount in the foreground, in the background
# of this shell, and wait until the mount is there.
mount_fg() {
	local name=$1 image=$2 opts=${3:-} i
	"$bin" "$image" "$mnt" -f -o "size=1G,allow_other$direct_opt${opts:+,$opts}" \
		>"$tmp/$name.log" 2>&1 &
	fg_pid=$!
	for i in $(seq 1 200); do
		if mounted "$mnt"; then
			return 0
		fi
		if ! kill -0 "$fg_pid" 2>/dev/null; then
			wait "$fg_pid"
			fail "$name/mount" "foliofs exited $?: $(tail -3 "$tmp/$name.log")"
			fg_pid=
			return 1
		fi
		sleep 0.1
	done
	fail "$name/mount" "not mounted after 20 s: $(tail -3 "$tmp/$name.log")"
	return 1
}

# umount_fg NAME: unmount and check the daemon wrote everything and exited 0.
umount_fg() {
	local name=$1 rc
	sync -f "$mnt" 2>/dev/null
	if ! fusermount3 -u "$mnt"; then
		fail "$name/unmount" "fusermount3 -u failed"
		fusermount3 -u -z "$mnt" 2>/dev/null
	fi
	wait "$fg_pid"
	rc=$?
	fg_pid=
	if [ $rc -eq 0 ]; then
		pass "$name/unmount"
	else
		fail "$name/unmount" "foliofs exited $rc: $(tail -3 "$tmp/$name.log")"
	fi
}

fsck_clean() {
	local name=$1 image=$2 out rc
	out=$("$fsck" -n "$image" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		pass "$name"
	else
		fail "$name" "fsck.foliofs exited $rc: $(echo "$out" | head -5)"
	fi
}

# bad_input NAME PATTERN ARGS...: foliofs must fail, say PATTERN, and leave
# nothing mounted.
bad_input() {
	local name=$1 pattern=$2 rc
	shift 2
	timeout 30 "$bin" "$@" >"$tmp/bad.out" 2>&1
	rc=$?
	if [ $rc -eq 0 ]; then
		fail "cli/$name" "exited 0"
	elif [ $rc -eq 124 ]; then
		fail "cli/$name" "hung"
	elif ! grep -qi -- "$pattern" "$tmp/bad.out"; then
		fail "cli/$name" "exit $rc, but no '$pattern' in: $(head -3 "$tmp/bad.out")"
	elif mounted "$mnt"; then
		fail "cli/$name" "left $mnt mounted"
	else
		pass "cli/$name"
	fi
	fusermount3 -u -z "$mnt" 2>/dev/null
}

echo "fuse suite: build $build, images in $tmp, randops seed $seed"

# ---- the embedding example and the tools -----------------------------------
if want_stage tools; then
	if [ -x "$embed" ] && out=$("$embed" 2>&1) && [ "$out" = ok ]; then
		pass tools/embed-example
	else
		fail tools/embed-example "${out:-not built}"
	fi

	mk=$tmp/mk.img
	if out=$("$mkfs" --size 64M --label test "$mk" 2>&1); then
		pass tools/mkfs
	else
		fail tools/mkfs "$out"
	fi
	out=$("$mkfs" --size 64M "$mk" 2>&1)
	if [ $? -ne 0 ] && echo "$out" | grep -q "already holds a foliofs volume; use --force"; then
		pass tools/mkfs-refuses-existing
	else
		fail tools/mkfs-refuses-existing "$out"
	fi
	if out=$("$mkfs" --force "$mk" 2>&1); then
		pass tools/mkfs-force
	else
		fail tools/mkfs-force "$out"
	fi
	out=$("$mkfs" --size 64M --block-size 8192 "$tmp/bs.img" 2>&1)
	if [ $? -ne 0 ] && echo "$out" | grep -q "block size"; then
		pass tools/mkfs-bad-block-size
	else
		fail tools/mkfs-bad-block-size "$out"
	fi
	fsck_clean tools/fsck-fresh "$mk"
	head -c 4M /dev/urandom >"$tmp/junk.img"
	"$fsck" -n "$tmp/junk.img" >"$tmp/fsck.out" 2>&1
	rc=$?
	if [ $rc -ge 4 ]; then
		pass tools/fsck-junk
	else
		fail tools/fsck-junk "fsck.foliofs exited $rc on random bytes"
	fi
fi

# ---- bad input: non-zero exit, a clear message, nothing mounted -------------
if want_stage cli; then
	if "$bin" --help | grep -q "usage: foliofs IMAGE MOUNTPOINT"; then
		pass cli/help
	else
		fail cli/help "no usage"
	fi
	if "$bin" --version | grep -q "^foliofs "; then
		pass cli/version
	else
		fail cli/version "no version"
	fi
	bad_input no-args "usage"
	bad_input no-image-dir "cannot create" "$tmp/no/such/dir/img" "$mnt"
	bad_input missing-mountpoint "mountpoint" "$img" "$tmp/nomnt"
	mkdir "$tmp/full" && touch "$tmp/full/x"
	bad_input nonempty-mountpoint "not empty" "$img" "$tmp/full"
	bad_input file-mountpoint "not a directory" "$img" "$tmp/full/x"
	bad_input unknown-option "unknown option" "$img" "$mnt" -o bogus_opt
	bad_input unknown-flag "unknown argument" "$img" "$mnt" --frobnicate
	bad_input bad-size-value "bad value for -o cache_size" "$img" "$mnt" -o cache_size=lots
	bad_input bad-kcache-value "bad value for -o kcache" "$img" "$mnt" -o kcache=maybe
	bad_input extra-argument "unexpected argument" "$img" "$mnt" extra
	head -c 8M /dev/urandom >"$tmp/junk2.img"
	bad_input not-foliofs "foliofs" "$tmp/junk2.img" "$mnt"
	bad_input ro-missing-image "does not exist" "$tmp/absent.img" "$mnt" -o ro
	if [ -e "$img" ]; then
		fail cli/no-image-left "a failed mount left $img behind"
		rm -f "$img"
	else
		pass cli/no-image-left
	fi
fi

# ---- daemon mode: creates the image, refuses a second mount -----------------
if want_stage daemon; then
	dimg=$tmp/daemon.img
	out=$("$bin" "$dimg" "$mnt" -o "size=512M$direct_opt" 2>&1)
	rc=$?
	if [ $rc -eq 0 ] && mounted "$mnt" &&
		echo "$out" | grep -q "foliofs: created $dimg (512.0 MiB)"; then
		pass daemon/mount-creates-image
		echo daemon >"$mnt/file" && sync -f "$mnt"
		mkdir -p "$tmp/mnt2"
		out=$("$bin" "$dimg" "$tmp/mnt2" -f 2>&1)
		if [ $? -ne 0 ] && echo "$out" | grep -q "in use" &&
			! mounted "$tmp/mnt2"; then
			pass daemon/second-mount-refused
		else
			fail daemon/second-mount-refused "$out"
			fusermount3 -u -z "$tmp/mnt2" 2>/dev/null
		fi
		fusermount3 -u "$mnt"
		# The daemon finishes foliofs_unmount() after the kernel let go;
		# the image's flock says when.
		for _ in $(seq 1 300); do
			flock -n "$dimg" true 2>/dev/null && break
			sleep 0.1
		done
		if flock -n "$dimg" true; then
			pass daemon/unmount
		else
			fail daemon/unmount "image still locked 30 s after unmount"
		fi
		fsck_clean daemon/fsck-after-unmount "$dimg"
	else
		fail daemon/mount-creates-image "exit $rc: $out"
		fusermount3 -u -z "$mnt" 2>/dev/null
	fi
	rm -f "$dimg"
fi

# ---- the main mount: POSIX, random ops, fio ---------------------------------
if want_stage posix || want_stage randops || want_stage fio; then
	if mount_fg main "$img" "${FOLIOFS_FUSE_OPTS:-}"; then
		pass main/mount
		if want_stage posix; then
			python3 "$here/posix.py" "$mnt" 2>&1 | tee "$tmp/posix.out"
			tally "$tmp/posix.out"
		fi
		if want_stage randops; then
			mkdir -p "$mnt/randops" "$tmp/model"
			FOLIOFS_SEED=$seed python3 "$here/randops.py" run "$mnt/randops" \
				"$tmp/model" --ops "${FOLIOFS_RANDOPS:-3000}" 2>&1 |
				tee "$tmp/randops.out"
			tally "$tmp/randops.out"
		fi
		if want_stage fio; then
			if command -v fio >/dev/null; then
				mkdir -p "$mnt/fio"
				common=(--directory="$mnt/fio" --verify=crc32c --verify_state_save=0
					--verify_fatal=1 --do_verify=1 --output-format=terse)
				if fio "${common[@]}" --name=seq-write-verify --rw=write \
					--bs=1M --size=256M --ioengine=psync --end_fsync=1 \
					>"$tmp/fio1.out" 2>&1; then
					pass fio/seq-1M-crc32c
				else
					fail fio/seq-1M-crc32c "$(tail -5 "$tmp/fio1.out")"
				fi
				if fio "${common[@]}" --name=rand-write-verify \
					--rw=randwrite --bs=4k --size=64M --ioengine=libaio \
					--iodepth=16 --direct=1 --numjobs=2 \
					>"$tmp/fio2.out" 2>&1; then
					pass fio/rand-4k-qd16-crc32c
				else
					fail fio/rand-4k-qd16-crc32c "$(tail -5 "$tmp/fio2.out")"
				fi
				if fio "${common[@]}" --name=mixed-verify --rw=randwrite \
					--bsrange=512-256k --size=32M --ioengine=psync \
					--numjobs=2 --verify_backlog=64 \
					>"$tmp/fio3.out" 2>&1; then
					pass fio/mixed-sizes-crc32c
				else
					fail fio/mixed-sizes-crc32c "$(tail -5 "$tmp/fio3.out")"
				fi
				rm -rf "$mnt/fio"
			else
				skip fio "fio is not installed"
			fi
		fi
		umount_fg main
		fsck_clean main/fsck-after-unmount "$img"

		# What was written survives the remount, byte for byte.
		if mount_fg remount "$img" "${FOLIOFS_FUSE_OPTS:-}"; then
			pass remount/mount
			if want_stage randops; then
				python3 "$here/randops.py" verify "$mnt/randops" \
					"$tmp/model" 2>&1 | tee "$tmp/verify.out"
				tally "$tmp/verify.out"
			fi
			if want_stage posix; then
				if [ "$(cat "$mnt/posix/create_write_read/hello" 2>&1)" = "hello, world" ]; then
					pass remount/posix-file
				else
					fail remount/posix-file "posix/create_write_read/hello lost"
				fi
			fi
			umount_fg remount
		fi
	fi
fi

# ---- kernel caching on: the same data paths through the kernel's cache -----
if want_stage kcache; then
	kimg=$tmp/kcache.img
	if mount_fg kcache "$kimg" kcache=on; then
		python3 "$here/posix.py" "$mnt" --only e 2>&1 |
			sed 's#posix/#kcache/posix/#' | tee "$tmp/kcache.out"
		tally "$tmp/kcache.out"
		mkdir -p "$mnt/randops" "$tmp/kmodel"
		FOLIOFS_SEED=$seed python3 "$here/randops.py" run "$mnt/randops" \
			"$tmp/kmodel" --ops 1000 2>&1 | sed 's#randops/#kcache/randops/#' |
			tee "$tmp/krandops.out"
		tally "$tmp/krandops.out"
		umount_fg kcache
	fi
	rm -f "$kimg"
fi

# ---- a small cache: what the cache evicts must come back as written ------
if want_stage evict; then
	eimg=$tmp/evict.img
	if mount_fg evict "$eimg" cache_size=48M,dirty_bytes=8M; then
		python3 "$here/partial_punch_evict.py" "$mnt" 2>&1 | tee "$tmp/evict.out"
		tally "$tmp/evict.out"
		mkdir -p "$mnt/randops" "$tmp/emodel"
		FOLIOFS_SEED=$seed python3 "$here/randops.py" run "$mnt/randops" \
			"$tmp/emodel" --ops 2000 2>&1 | sed 's#randops/#evict/randops/#' |
			tee "$tmp/erandops.out"
		tally "$tmp/erandops.out"
		umount_fg evict
	fi
	rm -f "$eimg"
fi

# ---- SIGTERM with files open: clean unmount, clean image --------------------
if want_stage sigterm; then
	simg=$tmp/sig.img
	if mount_fg sigterm "$simg"; then
		exec 7>"$mnt/held-open"
		echo "written before the signal" >&7
		kill -TERM "$fg_pid"
		wait "$fg_pid"
		rc=$?
		fg_pid=
		exec 7>&-
		if [ $rc -eq 0 ] && ! mounted "$mnt"; then
			pass sigterm/exit-and-unmount
		else
			fail sigterm/exit-and-unmount "exit $rc, mounted: $(mounted "$mnt" && echo yes || echo no); $(tail -3 "$tmp/sigterm.log")"
			fusermount3 -u -z "$mnt" 2>/dev/null
		fi
		fsck_clean sigterm/fsck "$simg"
	fi
	rm -f "$simg"
fi

# ---- kill -9 during a write load: fsck clean, everything fsync'd there -----
if want_stage kill9; then
	kimg=$tmp/kill9.img
	if mount_fg kill9 "$kimg"; then
		python3 "$here/kill9.py" write "$mnt" "$tmp/kill9.state" \
			>"$tmp/kill9.write" 2>&1 &
		wpid=$!
		sleep 3
		kill -KILL "$fg_pid"
		wait "$fg_pid" 2>/dev/null
		fg_pid=
		wait "$wpid"
		fusermount3 -u -z "$mnt" 2>/dev/null
		cat "$tmp/kill9.write"
		fsck_clean kill9/fsck-after-kill "$kimg"
		if mount_fg kill9-remount "$kimg"; then
			python3 "$here/kill9.py" verify "$mnt" "$tmp/kill9.state" 2>&1 |
				tee "$tmp/kill9.out"
			tally "$tmp/kill9.out"
			umount_fg kill9-remount
			fsck_clean kill9/fsck-after-remount "$kimg"
		fi
	fi
	rm -f "$kimg"
fi

# ---- processes racing in one directory and on one file ---------------------
if want_stage concurrency; then
	cimg=$tmp/conc.img
	if mount_fg concurrency "$cimg"; then
		python3 "$here/concurrency.py" "$mnt" 2>&1 | tee "$tmp/conc.out"
		tally "$tmp/conc.out"
		umount_fg concurrency
		fsck_clean concurrency/fsck "$cimg"
	fi
	rm -f "$cimg"
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
