#!/usr/bin/env bash
# test.sh - build foliofs and run every test suite, in three builds:
#   default  debug checks on, jemalloc
#   asan     AddressSanitizer + UndefinedBehaviorSanitizer, system malloc
#   tsan     ThreadSanitizer, system malloc
# Ends with one line: "N passed, N failed, N skipped". Exit 1 if any failed.
#
# Environment:
#   FOLIOFS_BUILDS="default asan tsan"   which builds to run
#   FOLIOFS_STRESS_SECONDS=5             per stress test (longer by hand)
#   FOLIOFS_TEST_ARGS="--suite unit"     extra arguments to meson test
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
# shellcheck source=tools/lib/deps.sh
. tools/lib/deps.sh
install_deps || exit 1

builds=${FOLIOFS_BUILDS:-default asan tsan}
stress=${FOLIOFS_STRESS_SECONDS:-5}
passed=0 failed=0 skipped=0

config_args() {
	case "$1" in
	default) echo "-Dbuildtype=debugoptimized" ;;
	asan) echo "-Dbuildtype=debugoptimized -Djemalloc=disabled -Db_sanitize=address,undefined -Db_lundef=false" ;;
	tsan) echo "-Dbuildtype=debugoptimized -Djemalloc=disabled -Db_sanitize=thread -Db_lundef=false" ;;
	*) echo "unknown build '$1'" >&2; return 1 ;;
	esac
}

# Sanitizers stop at the first report, so a report fails the test.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

for b in $builds; do
	dir="build-test-$b"
	args=$(config_args "$b") || exit 1
	echo "=== $b build ($dir)"
	if [ -d "$dir" ]; then
		# shellcheck disable=SC2086
		meson configure "$dir" $args -Dstress_seconds="$stress" >/dev/null
	else
		# shellcheck disable=SC2086
		meson setup "$dir" $args -Dstress_seconds="$stress" >/dev/null
	fi || { echo "configure failed: $b"; failed=$((failed + 1)); continue; }
	if ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
		tail -40 "$dir.build.log"
		echo "build failed: $b"
		failed=$((failed + 1))
		continue
	fi
	wrapper=()
	# TSan needs the classic address-space layout on kernels with high
	# mmap randomisation.
	[ "$b" = tsan ] && wrapper=(--wrapper "setarch $(uname -m) -R")
	# ThreadSanitizer is for the racing code: the stress and unit tests.
	# The FUSE daemon runs under the other two builds (libfuse itself is
	# not instrumented), and the single-threaded crash replays, fuzz
	# inputs and install check gain nothing from it but time.
	# The install test builds a plain embedder against the installed
	# library, which cannot load a sanitizer runtime: plain build only.
	skip=()
	[ "$b" = asan ] && skip=(--no-suite install)
	[ "$b" = tsan ] && skip=(--no-suite fuse --no-suite crash
				  --no-suite fuzz --no-suite install)
	# shellcheck disable=SC2086
	# meson names its log after the wrapper when there is one: clear old
	# logs and read whichever this run wrote.
	rm -f "$dir"/meson-logs/testlog*.json
	meson test -C "$dir" --print-errorlogs --num-processes 2 \
		"${wrapper[@]}" "${skip[@]}" ${FOLIOFS_TEST_ARGS:-}
	counts=$(python3 - "$dir"/meson-logs/testlog*.json <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:
        f += 1
print(p, f, s)
PY
	) || counts="0 1 0"
	read -r p f s <<<"$counts"
	echo "--- $b: $p passed, $f failed, $s skipped"
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
