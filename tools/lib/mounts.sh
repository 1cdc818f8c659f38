# shellcheck shell=bash
# mounts.sh - mount and unmount the filesystems the benchmarks run on: a
# foliofs image through the FUSE binary, and a kernel ext4 image on a loop
# device as the reference. Sourced by tools/demo.sh. Needs root.
#
# The mount functions print what went wrong and return non-zero; they set
# their globals (FOLIOFS_PID, EXT4_LOOP) as early as they can, so that an
# EXIT trap can undo a half-done mount. The unmount functions never fail:
# they are meant for such a trap, and do what can be done.

FOLIOFS_PID=
EXT4_LOOP=

# is_mounted DIR: whether DIR is a mount point, from the mount table alone,
# so that a hung FUSE daemon cannot hang the question.
is_mounted() {
	awk -v d="$1" '$2 == d { found = 1 } END { exit !found }' /proc/self/mounts
}

# foliofs_mount BIN IMAGE DIR LOG [OPTION...]: run BIN in the foreground
# (-f) as a child of this shell, output to LOG, and wait until DIR is a
# FUSE mount. FOLIOFS_PID is its pid. Being our child, it is ours to stop;
# and if it dies first, we see it and say why.
foliofs_mount() {
	local bin=$1 image=$2 dir=$3 log=$4 i
	shift 4

	if [ ! -e /dev/fuse ]; then
		modprobe fuse 2>/dev/null || true
		if [ ! -e /dev/fuse ]; then
			echo "no /dev/fuse: this machine (or container) cannot mount FUSE" >&2
			return 1
		fi
	fi
	"$bin" "$image" "$dir" -f "$@" >"$log" 2>&1 </dev/null &
	FOLIOFS_PID=$!
	for ((i = 0; i < 300; i++)); do
		if is_mounted "$dir"; then
			return 0
		fi
		if ! kill -0 "$FOLIOFS_PID" 2>/dev/null; then
			wait "$FOLIOFS_PID" && i=0 || i=$?
			FOLIOFS_PID=
			echo "foliofs exited (status $i) before $dir was mounted:" >&2
			tail -20 "$log" | sed 's/^/  | /' >&2
			return 1
		fi
		sleep 0.1
	done
	echo "foliofs did not mount $dir within 30 s; its output so far:" >&2
	tail -20 "$log" | sed 's/^/  | /' >&2
	return 1
}

# stop_pid PID SECONDS: wait up to SECONDS for our child PID to exit, then
# SIGTERM it, then SIGKILL it; reap it in any case.
stop_pid() {
	local pid=$1 i

	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		[ "$i" -eq $(($2 * 5)) ] && kill -TERM "$pid" 2>/dev/null
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# foliofs_unmount DIR: unmount (lazily if busy) and stop FOLIOFS_PID, which
# ends once its mount is gone. Stopping the daemon also fails any request
# still waiting on it, which frees processes stuck on the mount.
foliofs_unmount() {
	local dir=$1

	if is_mounted "$dir"; then
		if ! fusermount3 -u "$dir" 2>/dev/null; then
			echo "  $dir busy, unmounting lazily" >&2
			umount -l "$dir" 2>/dev/null || fusermount3 -u -z "$dir"
		fi
	fi
	if [ -n "$FOLIOFS_PID" ]; then
		stop_pid "$FOLIOFS_PID" 10
		FOLIOFS_PID=
	fi
	return 0
}

# ext4_mount IMAGE BYTES DIR: make a BYTES-sized ext4 image and mount it on
# DIR through a loop device, EXT4_LOOP. The loop device reads and writes its
# image with O_DIRECT (--direct-io=on), as foliofs does its own, so neither
# side reads through the host's page cache.
ext4_mount() {
	local image=$1 bytes=$2 dir=$3

	truncate -s "$bytes" "$image" || return 1
	# Initialise inode tables and journal now rather than in the background
	# while the benchmark runs.
	mkfs.ext4 -F -q -E lazy_itable_init=0,lazy_journal_init=0 "$image" ||
		return 1
	EXT4_LOOP=$(losetup --find --show --direct-io=on "$image") || return 1
	mount -t ext4 "$EXT4_LOOP" "$dir"
}

# ext4_unmount DIR IMAGE: unmount DIR (lazily if busy) and detach every loop
# device on IMAGE, also one attached by a losetup this shell was interrupted
# in. A busy loop device is detached once its last user is gone.
ext4_unmount() {
	local dir=$1 image=$2 dev

	if is_mounted "$dir"; then
		if ! umount "$dir" 2>/dev/null; then
			echo "  $dir busy, unmounting lazily" >&2
			umount -l "$dir"
		fi
	fi
	if [ -e "$image" ]; then
		for dev in $EXT4_LOOP $(losetup -n -O NAME -j "$image" 2>/dev/null); do
			losetup -d "$dev" 2>/dev/null
		done
	fi
	EXT4_LOOP=
	return 0
}
