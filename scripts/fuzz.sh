#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ and runs each for a bounded time; fails on any crash.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   FUZZ_SECONDS=10 scripts/fuzz.sh config dump
#
# Targets: config (JSON config parser + validator), table (table-directory reader), dump (.bin dump
# reader). Seeds: tests/fuzz/<target>/corpus/ (checked in; never written). New inputs go to a scratch corpus
# under .build-fuzz/; a crash leaves its input in .build-fuzz/<target>/crash-* and fails the script.
#
# How it is built: SwiftPM compiles the HPSRocksDB target and what it depends on (HPS, CHPSSupport,
# swift-log, ...) into its own scratch path, .build-fuzz/spm, with -sanitize=fuzzer,address (coverage and
# ASan instrumentation; --target builds objects only, so nothing is linked there), and swiftc links each
# Fuzz/<Target>Fuzz.swift (whose entry point is @_cdecl("LLVMFuzzerTestOneInput")) against those objects
# with libFuzzer's main. Neither Package.swift nor any shipped product knows about the fuzzers, and the
# normal .build is untouched: `swift build --sanitize=fuzzer` would instrument every product and link
# libFuzzer's main into the shipping executables and libraries.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${FUZZ_SECONDS:-60}"
OUT=.build-fuzz
ALL=(config table dump)
TARGETS=("${@:-${ALL[@]}}")
[ $# -eq 0 ] && TARGETS=("${ALL[@]}")

mkdir -p "$OUT"
SPM="$OUT/spm"
R="$SPM/release"

build_libs() {
  echo "fuzz: building HPSRocksDB and its dependencies with -sanitize=fuzzer,address ($SPM)"
  if ! swift build -c release --scratch-path "$SPM" --target HPSRocksDB \
      -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address > "$OUT/build.log" 2>&1; then
    grep -E "error:" "$OUT/build.log" | head -20 >&2 || tail -20 "$OUT/build.log" >&2
    echo "fuzz: the instrumented build failed ($OUT/build.log)" >&2
    exit 1
  fi
}

build_target() {
  local name="$1" source
  case "$name" in
    config) source=Fuzz/ConfigFuzz.swift ;;
    table) source=Fuzz/TableFuzz.swift ;;
    dump) source=Fuzz/DumpFuzz.swift ;;
    *) echo "fuzz: unknown target $name (known: ${ALL[*]})" >&2; exit 64 ;;
  esac
  # Every object of the targets HPSRocksDB depends on (the C support module too), not those of unrelated
  # targets the scratch path may hold.
  local objects=() dir
  for dir in "$R"/*.build; do
    case "$(basename "$dir" .build)" in
      HPSRocksDB|HPS|CHPSSupport|Logging|_AtomicsShims|Atomics|SystemPackage|CSystem|CoreMetrics) while IFS= read -r o; do objects+=("$o"); done < <(find "$dir" -name '*.o') ;;
    esac
  done
  swiftc -swift-version 6 -parse-as-library -O -g -sanitize=fuzzer,address -module-name "Fuzz_$name" \
    -I "$R/Modules" -Xcc -fmodule-map-file="$R/CHPSSupport.build/module.modulemap" -I Sources/CRocksDB \
    -Xcc -fmodule-map-file="$SPM/checkouts/swift-system/Sources/CSystem/include/module.modulemap" \
    "$source" Fuzz/FuzzSupport.swift "${objects[@]}" -lrocksdb -o "$OUT/fuzz-$name" 2> >(grep -v "Cannot export local symbol" >&2)
}

build_libs
status=0
for name in "${TARGETS[@]}"; do
  build_target "$name"
  work="$OUT/$name"
  rm -rf "$work/corpus"
  mkdir -p "$work/corpus"
  echo "fuzz: $name for ${SECONDS_EACH}s (seeds: tests/fuzz/$name/corpus)"
  # -rss_limit_mb: an input that makes a reader allocate beyond it is a finding, as the issue asks.
  if ! (cd "$work" && TMPDIR="$PWD" ASAN_OPTIONS=detect_leaks=0 "../fuzz-$name" -max_total_time="$SECONDS_EACH" \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 corpus "../../tests/fuzz/$name/corpus" > log.txt 2>&1); then
    echo "fuzz: $name FAILED; the end of $work/log.txt:" >&2
    tail -40 "$work/log.txt" >&2
    status=1
  else
    grep -E "^stat::number_of_executed_units|^Done" "$work/log.txt" | tr '\n' ' '
    echo
  fi
done
exit $status
