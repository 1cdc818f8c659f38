# shellcheck shell=bash
# shellcheck disable=SC2034
# SPDX-License-Identifier: LGPL-2.1-or-later
# common.sh - what mount8.sh and stat.sh share: the skips, a temporary
# directory that is unmounted and removed whatever happens, PASS/FAIL
# tallies, and waiting for a daemon to finish.
#
# The caller sets `build` (the build directory) and then sources this; it
# gets bin, mkfs, fsck, fstat (foliofs-stat), tmp, mnt, direct_opt, and
# pass/fail/skip/finish, mounted, wait_released, fsck_clean. Add cleanup
# steps by defining extra_cleanup().

# shellcheck disable=SC2154
bin=$build/fuse/foliofs
mkfs=$build/tools/mkfs.foliofs
fsck=$build/tools/fsck.foliofs
fstat=$build/tools/foliofs-stat

if [ ! -c /dev/fuse ]; then
	echo "SKIP: /dev/fuse is missing (no FUSE in this kernel or container); this test mounts"
	exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: needs root (mount(8), /run/foliofs)"
	exit 77
fi
if ! command -v fusermount3 >/dev/null; then
	echo "SKIP: fusermount3 is missing (Debian package fuse3)"
	exit 77
fi
for b in "$bin" "$mkfs" "$fsck" "$fstat"; do
	if [ ! -x "$b" ]; then
		echo "FAIL: $b is not built"
		exit 1
	fi
done

tmp=$(mktemp -d "${FOLIOFS_TEST_DIR:-/tmp}/foliofs-$(basename "$0" .sh).XXXXXX") || exit 1
chmod 755 "$tmp"
mnt=$tmp/mnt
mkdir "$mnt"
passed=0 failed=0 skipped=0

mounted() {
	grep -q " $1 " /proc/self/mounts
}

extra_cleanup() { :; }

# Nothing stays mounted, whatever way we leave.
common_cleanup() {
	local m
	extra_cleanup
	for m in $(awk '{print $2}' /proc/self/mounts | grep "^$tmp/" | sort -r); do
		fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap common_cleanup EXIT
trap 'exit 1' INT TERM

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skip() { echo "SKIP $1: $2"; skipped=$((skipped + 1)); }
finish() {
	echo "$passed passed, $failed failed, $skipped skipped"
	[ "$failed" -eq 0 ]
	exit
}

# Images on a filesystem without O_DIRECT (tmpfs before 6.6) need no_direct.
direct_opt=
if ! dd if=/dev/zero of="$tmp/probe" bs=4096 count=1 oflag=direct \
	status=none 2>/dev/null; then
	direct_opt=,no_direct
fi
rm -f "$tmp/probe"

# wait_released IMAGE: the daemon finishes foliofs_unmount() after the kernel
# let go of the mount; the image's flock says when. Return 1 after 30 s.
wait_released() {
	for _ in $(seq 1 300); do
		flock -n "$1" true 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
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
