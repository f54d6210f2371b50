#!/usr/bin/env bash
# Checks the logic of the CUDA kernels (Sources/HPSCUDA/Kernels) on the CPU, without a GPU: compiles them as
# C++ against Tests/CUDAEmulator/emu.h (one host thread per CUDA thread, real warp barriers and atomics) and
# compares every kernel with a sequential reference. Takes a minute or two.
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CXX:-$(command -v clang++ || command -v g++)}
out=${TMPDIR:-/tmp}/hps-cuda-emulator-$$
"$CXX" -std=c++17 -O1 -g -fno-strict-aliasing -pthread -Wno-unused-function -o "$out" Tests/CUDAEmulator/emu_test.cpp
trap 'rm -f "$out"' EXIT
"$out"
