#!/usr/bin/env bash
# Runs the CUDA checks and the cache benchmark on a GPU machine, with a prebuilt `hps` in gpu-bin/.
#
# On the build machine (no GPU needed):
#   scripts/gpu-pack.sh        # release build, stripped, + RocksDB/hiredis libs → gpu-bin/hps-gpu.tar.gz
# (or by hand: swift build -c release --static-swift-stdlib --product hps; cp .build/release/hps gpu-bin/ —
#  then the GPU machine must have librocksdb.so.7.8 and libhiredis.so.0.14, which a CUDA image lacks).
# The kernels are embedded in the binary: no resource bundle is needed.
# On the GPU machine, from the repository root (gpu-bin carried along):
#   OUT=/some/folder scripts/gpu-run.sh
# Writes to $OUT (default ./gpu-out): env.txt, gpu-check.txt, gpu-check-<kernel>.txt, bench-cache.txt,
# bench-cache.json.
#
# gpu-check runs first with the default dynamic-cache query kernel (HPS_DYN_QUERY_KERNEL, else `streaming`), then
# once more per other query kernel (of streaming, pipelined, narrow, classic; GPU_RUN_KERNEL_CHECKS=0 skips), so that
# every kernel the bench times has been compared with the CPU cache on this GPU (a few seconds each).
# HPS_BENCH_ARGS adds arguments to the bench (e.g. "--hit-dims 128 32 64 16").
#
# NVRTC: HPS_NVRTC_LIBRARY when set; else the CUDA toolkit's libnvrtc (it matches the driver there), else
# whatever HPS finds itself (libnvrtc.so.* on the library path, CUDA installs, the nvidia-cuda-nvrtc wheel).
# HPS_USE_REPO_KERNELS=1 compiles Sources/HPSCUDA/Kernels/*.cu from this checkout instead of the copies
# embedded in the binary (to try a kernel change without rebuilding the Swift code).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
if [ -f gpu-bin/hps-gpu.tar.gz ]; then
  tar -xzf gpu-bin/hps-gpu.tar.gz -C gpu-bin
fi
export LD_LIBRARY_PATH=$PWD/gpu-bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
BIN=${HPS_BIN:-gpu-bin/hps}
if [ ! -x "$BIN" ]; then
  echo "gpu-run: $BIN not found: run scripts/gpu-pack.sh on the build machine and carry gpu-bin" >&2
  exit 2
fi
if ! "$BIN" --version >/dev/null 2>&1; then
  echo "gpu-run: $BIN does not start here:" >&2
  "$BIN" --version 2>&1 | head -5 >&2
  ldd "$BIN" | grep 'not found' >&2
  exit 2
fi
if [ -z "${HPS_NVRTC_LIBRARY:-}" ]; then
  for f in /usr/local/cuda/lib64/libnvrtc.so.13 /usr/local/cuda/lib64/libnvrtc.so.12 /usr/local/cuda/lib64/libnvrtc.so \
           /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so; do
    if [ -e "$f" ]; then export HPS_NVRTC_LIBRARY=$f; break; fi
  done
fi
if [ "${HPS_USE_REPO_KERNELS:-0}" = 1 ]; then export HPS_CUDA_KERNEL_DIR=$PWD/Sources/HPSCUDA/Kernels; fi
export HPS_KERNEL_CACHE_DIR=${HPS_KERNEL_CACHE_DIR:-/tmp/hps-kernel-cache}

{
  echo "date: $(date -u)"; echo "binary: $BIN ($(stat -c %s "$BIN") bytes)"; echo "HPS_NVRTC_LIBRARY=${HPS_NVRTC_LIBRARY:-}"
  echo "HPS_CUDA_KERNEL_DIR=${HPS_CUDA_KERNEL_DIR:-} (empty: embedded kernels)"
  echo "HPS_DYN_QUERY_KERNEL=${HPS_DYN_QUERY_KERNEL:-} (empty: streaming)"
  nvidia-smi 2>&1 || echo "nvidia-smi failed"
  ls -l /usr/local/cuda/lib64/libnvrtc* 2>&1 | head -5
} > "$OUT/env.txt" 2>&1
head -4 "$OUT/env.txt"

echo "== hps gpu-check"
timeout 240 "$BIN" gpu-check 2>&1 | tee "$OUT/gpu-check.txt"
check=${PIPESTATUS[0]}

if [ "${GPU_RUN_KERNEL_CHECKS:-1}" != 0 ]; then
  for kernel in streaming pipelined narrow classic; do
    [ "$kernel" = "${HPS_DYN_QUERY_KERNEL:-streaming}" ] && continue
    echo "== HPS_DYN_QUERY_KERNEL=$kernel hps gpu-check --rounds 6"
    HPS_DYN_QUERY_KERNEL=$kernel timeout 240 "$BIN" gpu-check --rounds 6 > "$OUT/gpu-check-$kernel.txt" 2>&1
    status=$?
    grep -E '^(FAIL|seed)|passed, .* failed' "$OUT/gpu-check-$kernel.txt"
    [ "$status" = 0 ] || { echo "gpu-check with query kernel $kernel: exit $status"; check=1; }
  done
fi

echo "== hps bench cache --device cuda"
# shellcheck disable=SC2086
timeout 420 "$BIN" bench cache --device cuda --json "$OUT/bench-cache.json" ${HPS_BENCH_ARGS:-} 2>&1 | tee "$OUT/bench-cache.txt"
bench=${PIPESTATUS[0]}

# The device-resident lookup path through the C API (needs PyTorch for device memory and streams).
device=0
if python3 -c "import torch, numpy; assert torch.cuda.is_available()" 2>/dev/null; then
  export HPS_C_LIBRARY=$PWD/gpu-bin/libhps.so
  echo "== device-path check (tests/gpu/device_path_check.py)"
  timeout 400 python3 tests/gpu/device_path_check.py 2>&1 | tee "$OUT/device-path-check.txt"
  device=${PIPESTATUS[0]}
  if [ "${GPU_RUN_DEVICE_BENCH:-1}" != 0 ]; then
    echo "== bench/device_lookup.py"
    # shellcheck disable=SC2086
    timeout 500 python3 bench/device_lookup.py --json "$OUT/device-lookup.json" ${HPS_DEVICE_BENCH_ARGS:-} 2>&1 | tee "$OUT/device-lookup.txt"
  fi
else
  echo "gpu-run: no PyTorch with CUDA here; device-path checks skipped"
fi

echo "gpu-run: gpu-check exit $check, bench exit $bench, device-path check exit $device"
[ "$check" = 0 ] && [ "$bench" = 0 ] && [ "$device" = 0 ]
