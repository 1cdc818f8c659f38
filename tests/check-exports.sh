#!/bin/sh
# Fails when the shared library exports a symbol outside the foliofs_ namespace.
lib="$1"
[ -f "$lib" ] || { echo "no library at '$lib'"; exit 1; }
# __tsan_default_suppressions: the ThreadSanitizer build's hook (engine/rcu.c).
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' |
	grep -v '^foliofs_' | grep -vx '__tsan_default_suppressions')
count=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | grep -c '^foliofs_')
if [ -n "$bad" ]; then
	echo "exported outside foliofs_*:"; echo "$bad"; exit 1
fi
if [ "$count" -eq 0 ]; then
	echo "no foliofs_* symbol exported at all"; exit 1
fi
echo "$count symbols exported, all foliofs_*"
