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
# How it is built: not through SwiftPM. `swift build --sanitize=fuzzer` would instrument every product and
# link libFuzzer's main into the shipping executables and libraries, and a second executable target with
# @_cdecl("LLVMFuzzerTestOneInput") would still need per-target unsafe flags. Instead swiftc compiles the
# sources of HPS (and HPSRocksDB, for the dump reader) into static libraries with
# -sanitize=fuzzer,address (coverage + ASan, no main), and each Fuzz/<Target>Fuzz.swift links against them
# with libFuzzer's main. Nothing here is part of Package.swift or of any product.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${FUZZ_SECONDS:-60}"
OUT=.build-fuzz
ALL=(config table dump)
TARGETS=("${@:-${ALL[@]}}")
[ $# -eq 0 ] && TARGETS=("${ALL[@]}")

mkdir -p "$OUT/modules/CHPSSupport"
SAN=(-sanitize=fuzzer,address)
SWIFTC=(swiftc -swift-version 6 -package-name hps -parse-as-library -O -g "${SAN[@]}")

# CHPSSupport: the C helpers, as a Clang module.
cat > "$OUT/modules/CHPSSupport/module.modulemap" <<MAP
module CHPSSupport {
    header "$PWD/Sources/CHPSSupport/include/hps_support.h"
    export *
}
MAP

stamp() { find "$@" -name '*.swift' -o -name '*.c' -o -name '*.h' | sort | xargs cat | cksum | cut -d' ' -f1; }

build_libs() {
  local key
  key="$(stamp Sources/HPS Sources/CHPSSupport Sources/HPSRocksDB Sources/CRocksDB)-$(swiftc --version 2>&1 | head -1 | cksum | cut -d' ' -f1)"
  if [ -f "$OUT/libs.stamp" ] && [ "$(cat "$OUT/libs.stamp")" = "$key" ]; then return; fi
  echo "fuzz: building HPS and HPSRocksDB with -sanitize=fuzzer,address"
  clang -O1 -g -fsanitize=fuzzer-no-link,address -I Sources/CHPSSupport/include -c Sources/CHPSSupport/hps_support.c -o "$OUT/hps_support.o"
  "${SWIFTC[@]}" -module-name HPS -I "$OUT/modules" -emit-module -emit-module-path "$OUT/modules/HPS.swiftmodule" \
    -emit-library -static -o "$OUT/libHPS.a" $(find Sources/HPS -name '*.swift' | sort)
  "${SWIFTC[@]}" -module-name HPSRocksDB -I "$OUT/modules" -I Sources/CRocksDB -emit-module -emit-module-path "$OUT/modules/HPSRocksDB.swiftmodule" \
    -emit-library -static -o "$OUT/libHPSRocksDB.a" $(find Sources/HPSRocksDB -name '*.swift' | sort)
  echo "$key" > "$OUT/libs.stamp"
}

build_target() {
  local name="$1" source
  case "$name" in
    config) source=Fuzz/ConfigFuzz.swift ;;
    table) source=Fuzz/TableFuzz.swift ;;
    dump) source=Fuzz/DumpFuzz.swift ;;
    *) echo "fuzz: unknown target $name (known: ${ALL[*]})" >&2; exit 64 ;;
  esac
  "${SWIFTC[@]}" -module-name "Fuzz_$name" -I "$OUT/modules" -I Sources/CRocksDB "$source" Fuzz/FuzzSupport.swift \
    "$OUT/libHPSRocksDB.a" "$OUT/libHPS.a" "$OUT/hps_support.o" -lrocksdb -o "$OUT/fuzz-$name" 2> >(grep -v "Cannot export local symbol" >&2)
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
