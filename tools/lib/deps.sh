# shellcheck shell=bash
# deps.sh - installs the Debian packages foliofs builds, tests and benchmarks
# with, only when some are missing. Sourced by tools/test.sh and tools/demo.sh.

# The libFuzzer campaign (-Dfuzz=true) also needs clang and libclang-rt-dev;
# tests/fuzz/README.md says how. CI runs the gcc-built fuzz-smoke instead.
FOLIOFS_DEPS=(meson ninja-build pkg-config gcc python3 libfuse3-dev fuse3
	liburing-dev liburcu-dev libxxhash-dev libjemalloc-dev libcmocka-dev fio
	e2fsprogs util-linux gnuplot-nox)

install_deps() {
	local missing=() pkg
	for pkg in "${FOLIOFS_DEPS[@]}"; do
		dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages: ${missing[*]} (run as root, or install them)" >&2
		return 1
	fi
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
