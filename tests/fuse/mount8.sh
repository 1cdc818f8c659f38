#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# mount8.sh BUILD_DIR - foliofs mounted the system's way: `mount -t
# fuse.foliofs` and an fstab entry (`mount --fstab FILE`, so /etc/fstab is
# never touched) go through mount.fuse3 to BUILD_DIR's fuse/foliofs, with
# generic options passed on (noexec must hold), unknown and refused options
# failing with a clear message, and the mounts working and unmounting with
# umount(8) and fusermount3 -u, the daemon writing everything and removing
# its statistics socket.
#
# mount(8) clears PATH for its helper, so mount.fuse3's shell finds foliofs
# only in the default path: the test re-runs itself in a private mount
# namespace (unshare -m) with a directory holding a foliofs link
# bind-mounted over /usr/local/sbin, the first directory of that path. No
# one outside the namespace sees it; nothing is installed.
#
# One line per check, then "N passed, N failed, N skipped". Exit 0, 1 on
# a failure, 77 without /dev/fuse, root, mount.fuse3 or mount namespaces.
set -uo pipefail

if [ $# -lt 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
build=$(cd "$1" && pwd) || exit 2

if [ -z "${FOLIOFS_MOUNT8_NS:-}" ]; then
	if ! command -v mount.fuse3 >/dev/null && [ ! -x /sbin/mount.fuse3 ]; then
		echo "SKIP: mount.fuse3 is missing (Debian package fuse3)"
		exit 77
	fi
	if [ "$(id -u)" -ne 0 ] || [ ! -d /usr/local/sbin ] ||
		! unshare -m --propagation private true 2>/dev/null; then
		echo "SKIP: needs root, /usr/local/sbin and a private mount namespace (unshare -m)"
		exit 77
	fi
	FOLIOFS_MOUNT8_NS=1 exec unshare -m --propagation private "$0" "$@"
fi

source "$(dirname "$0")/common.sh"

mkdir "$tmp/path"
ln -s "$bin" "$tmp/path/foliofs"
if ! mount --bind "$tmp/path" /usr/local/sbin; then
	echo "FAIL: cannot bind-mount $tmp/path over /usr/local/sbin in the namespace"
	exit 1
fi
# The bind mount is under neither $tmp nor visible outside; undo it before
# $tmp goes.
extra_cleanup() {
	umount /usr/local/sbin 2>/dev/null
}

img=$tmp/vol.img
echo "mount(8) suite: build $build, images in $tmp"

# socket_of MOUNTPOINT: where its daemon serves statistics.
socket_of() {
	echo "/run/foliofs/$(stat -c %d "$1").sock"
}

# ---- mount -t fuse.foliofs, generic options, umount ------------------------
out=$(mount -t fuse.foliofs "$img" "$mnt" \
	-o "size=256M,cache_size=64M,noatime,noexec$direct_opt" 2>&1)
rc=$?
if [ $rc -eq 0 ] && mounted "$mnt" &&
	[ "$(findmnt -n -o FSTYPE "$mnt")" = fuse.foliofs ]; then
	pass mount8/mount-t
	opts=$(findmnt -n -o OPTIONS "$mnt")
	if [[ ",$opts," == *,noexec,* && ",$opts," == *,noatime,* ]]; then
		pass mount8/generic-options-reach-kernel
	else
		fail mount8/generic-options-reach-kernel "options are $opts"
	fi
	printf '#!/bin/sh\necho ran\n' >"$mnt/script" && chmod 755 "$mnt/script"
	if ! "$mnt/script" >/dev/null 2>&1; then
		pass mount8/noexec-holds
	else
		fail mount8/noexec-holds "a script ran from a noexec mount"
	fi
	echo "through mount -t" >"$mnt/hello"
	if [ "$(cat "$mnt/hello")" = "through mount -t" ]; then
		pass mount8/read-write
	else
		fail mount8/read-write "read back '$(cat "$mnt/hello" 2>&1)'"
	fi
	sock=$(socket_of "$mnt")
	if [ -S "$sock" ] && "$fstat" "$mnt" >/dev/null 2>&1; then
		pass mount8/stats-socket
	else
		fail mount8/stats-socket "no socket $sock, or foliofs-stat failed"
	fi
	if umount "$mnt" && ! mounted "$mnt"; then
		pass mount8/umount
	else
		fail mount8/umount "umount failed"
		fusermount3 -u -z "$mnt" 2>/dev/null
	fi
	if wait_released "$img"; then
		pass mount8/daemon-exits
	else
		fail mount8/daemon-exits "image still locked 30 s after umount"
	fi
	if [ ! -e "$sock" ]; then
		pass mount8/socket-removed
	else
		fail mount8/socket-removed "$sock is still there"
	fi
	fsck_clean mount8/fsck-after-umount "$img"
else
	fail mount8/mount-t "exit $rc: $out"
fi

# ---- options mount(8) cannot turn into a mount ------------------------------
# mount_refused NAME PATTERN OPTIONS: mount(8) fails, says PATTERN, and
# nothing is mounted.
mount_refused() {
	local name=$1 pattern=$2 opts=$3 out rc
	out=$(timeout 30 mount -t fuse.foliofs "$img" "$mnt" -o "$opts" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		fail "mount8/$name" "mount exited 0"
	elif ! grep -qi -- "$pattern" <<<"$out"; then
		fail "mount8/$name" "exit $rc, but no '$pattern' in: $out"
	elif mounted "$mnt"; then
		fail "mount8/$name" "left $mnt mounted"
	else
		pass "mount8/$name"
	fi
	fusermount3 -u -z "$mnt" 2>/dev/null
}
if [ -e "$img" ]; then
	mount_refused unknown-option "unknown option '-o bogus_opt'" "bogus_opt$direct_opt"
	mount_refused sync-refused "-o sync is not supported" "sync$direct_opt"
	wait_released "$img"
fi

# ---- an fstab entry, fusermount3 -u ------------------------------------------
fstab=$tmp/fstab
printf '# a test fstab: mount --fstab %s\n%s %s fuse.foliofs defaults,noauto,nofail,_netdev,x-foliofs.test=1,cache_size=64M%s 0 0\n' \
	"$fstab" "${img// /\\040}" "${mnt// /\\040}" "$direct_opt" >"$fstab"
out=$(mount --fstab "$fstab" "$mnt" 2>&1)
rc=$?
if [ $rc -eq 0 ] && mounted "$mnt"; then
	pass mount8/fstab-mount
	# As root, mount.fuse3 asks for dev,suid unless nodev/nosuid is given.
	opts=$(findmnt -n -o OPTIONS "$mnt")
	if [[ ",$opts," != *,nosuid,* && ",$opts," != *,noexec,* ]]; then
		pass mount8/fstab-default-options
	else
		fail mount8/fstab-default-options "options are $opts"
	fi
	if [ "$(cat "$mnt/hello" 2>&1)" = "through mount -t" ]; then
		pass mount8/fstab-sees-earlier-data
	else
		fail mount8/fstab-sees-earlier-data "hello reads '$(cat "$mnt/hello" 2>&1)'"
	fi
	echo "through fstab" >"$mnt/fstab-file"
	sync "$mnt"	# fsync(2) of the root: the whole volume
	if fusermount3 -u "$mnt" && ! mounted "$mnt"; then
		pass mount8/fusermount3-u
	else
		fail mount8/fusermount3-u "fusermount3 -u failed"
		fusermount3 -u -z "$mnt" 2>/dev/null
	fi
	if wait_released "$img"; then
		pass mount8/fstab-daemon-exits
	else
		fail mount8/fstab-daemon-exits "image still locked 30 s after unmount"
	fi
	fsck_clean mount8/fsck-after-fusermount "$img"
else
	fail mount8/fstab-mount "exit $rc: $out"
fi

finish
