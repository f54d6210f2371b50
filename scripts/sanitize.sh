#!/usr/bin/env bash
# Builds the Swift tests with ThreadSanitizer and with AddressSanitizer (+ LeakSanitizer) and runs them;
# fails on any sanitizer report or test failure.
#
#   scripts/sanitize.sh            # both
#   scripts/sanitize.sh thread     # or: address
#
# Each sanitizer has its own scratch path (.build-tsan, .build-asan), so the normal .build is untouched.
# Suites:
#   thread:  the suites that run work on several threads at once — caches, the hash map, lookup sessions
#            (cached and direct), background inserts and reloads, RocksDB, Redis Cluster (real
#            redis-server nodes), the persistent tier, reliability (HPS_TSAN_SUITES overrides).
#   address: every suite but CUDATests (under ASan's dlopen the pip-installed NVRTC cannot find its
#            builtins library; the CUDA kernels are checked by the normal run and on a GPU).
# Leaks of XCTest's and Foundation's own process-lifetime allocations are suppressed
# (tests/sanitize/lsan.supp); any other leak fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

MODES=("${@:-thread address}")
[ $# -eq 0 ] && MODES=(thread address)
TSAN_SUITES="${HPS_TSAN_SUITES:-CacheTests|HashMapDatabaseTests|LookupSessionTests|LookupSessionDirectTests|TableReloadTests|PersistentTierTests|RocksDBDatabaseTests|RocksDBBulkLoadTests|RocksDBDumpTests|RedisClusterTests|RedisRuntimeTests|ReliabilityTests}"

status=0
for mode in "${MODES[@]}"; do
  case "$mode" in
    thread) scratch=.build-tsan; select=(--filter "$TSAN_SUITES") ;;
    address) scratch=.build-asan; select=(--skip CUDATests) ;;
    *) echo "sanitize: unknown mode $mode (thread, address)" >&2; exit 64 ;;
  esac
  log="$scratch/sanitize-test.log"
  start=$SECONDS
  echo "sanitize: building the tests with --sanitize=$mode ($scratch)"
  mkdir -p "$scratch"
  # HPS_WITHOUT_SERVER=1: the suites never run `hps serve`; its HTTP/gRPC stack is not compiled twice more.
  if ! HPS_WITHOUT_SERVER=1 swift build --build-tests --sanitize="$mode" --scratch-path "$scratch" > "$scratch/sanitize-build.log" 2>&1; then
    echo "sanitize: the $mode build failed; the end of $scratch/sanitize-build.log:" >&2
    grep -E "error:" "$scratch/sanitize-build.log" | head -20 >&2 || tail -20 "$scratch/sanitize-build.log" >&2
    status=1
    continue
  fi
  built=$SECONDS
  echo "sanitize: running the tests under $mode"
  set +e
  TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
  ASAN_OPTIONS="detect_leaks=1 ${ASAN_OPTIONS:-}" \
  LSAN_OPTIONS="suppressions=$PWD/tests/sanitize/lsan.supp print_suppressions=0 ${LSAN_OPTIONS:-}" \
    HPS_WITHOUT_SERVER=1 swift test --skip-build --sanitize="$mode" --scratch-path "$scratch" "${select[@]}" > "$log" 2>&1
  rc=$?
  set -e
  reports=$(grep -cE "WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer" "$log" || true)
  summary=$(grep -E "^. Test run with" "$log" | tail -1)
  echo "sanitize: $mode: ${summary:-no summary} (exit $rc, $reports sanitizer reports; build $((built - start)) s, tests $((SECONDS - built)) s)"
  if [ "$rc" -ne 0 ] || [ "$reports" -ne 0 ]; then
    echo "sanitize: $mode FAILED; see $log. First report:" >&2
    grep -m1 -A40 -E "WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|✘" "$log" >&2 || tail -40 "$log" >&2
    status=1
  fi
done
exit $status
