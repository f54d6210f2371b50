#!/usr/bin/env bash
# Builds the C API: libhps.so (the Swift runtime linked in statically; it needs only glibc, RocksDB and
# hiredis) for include/hps.h, and prints its path. The same release build folder as the Python package.
#   scripts/build-capi.sh            # → .build-python/release/libhps.so
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-c release --product HPSCAPI -Xswiftc -static-stdlib --scratch-path .build-python)
swift build "${args[@]}" >&2
bin=$(swift build "${args[@]}" --show-bin-path)
# Replace by rename, never in place: a process that has the old libhps.so mapped (a test session that loaded
# it before a rebuild) keeps its copy instead of crashing on rewritten pages.
if ! cmp -s "$bin/libHPSCAPI.so" "$bin/libhps.so"; then
  cp -f "$bin/libHPSCAPI.so" "$bin/libhps.so.$$"
  mv -f "$bin/libhps.so.$$" "$bin/libhps.so"
fi
echo "$bin/libhps.so"
