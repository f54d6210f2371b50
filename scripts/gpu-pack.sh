#!/usr/bin/env bash
# Builds `hps` and the C API (libhps.so) for the GPU machine (no GPU or CUDA needed here) and packs them into
# gpu-bin/ (git-ignored): gpu-bin/hps-gpu.tar.gz holds the stripped binary, libhps.so and the shared libraries
# they link that a stock CUDA image lacks (RocksDB, hiredis and their compression libraries), small enough to
# travel (< 64 MiB).
# scripts/gpu-run.sh unpacks it on the GPU machine. The CUDA kernels are embedded in the binary.
#   scripts/gpu-pack.sh                 # SCRATCH=.build-cuda to use another build folder
set -euo pipefail
cd "$(dirname "$0")/.."
SCRATCH=${SCRATCH:-.build}
swift build -c release --static-swift-stdlib --product hps --scratch-path "$SCRATCH"
rm -rf gpu-bin
mkdir -p gpu-bin/stage/lib
cp "$SCRATCH/release/hps" gpu-bin/stage/hps
strip gpu-bin/stage/hps
cp "$(scripts/build-capi.sh)" gpu-bin/stage/libhps.so
strip gpu-bin/stage/libhps.so
ldd gpu-bin/stage/hps gpu-bin/stage/libhps.so | awk '/=> \// {print $3}' \
  | grep -Ev '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s)\.so|/ld-linux' \
  | sort -u | while read -r lib; do cp -L "$lib" gpu-bin/stage/lib/; done
tar -C gpu-bin/stage -czf gpu-bin/hps-gpu.tar.gz .
rm -rf gpu-bin/stage
ls -l gpu-bin
echo "gpu-pack: carry gpu-bin to the GPU machine and run: OUT=<folder> scripts/gpu-run.sh"
