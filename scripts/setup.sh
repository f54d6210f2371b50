#!/usr/bin/env bash
# Sets up a fresh Debian machine that has the Swift toolchain: system libraries, the Python venv with
# TensorFlow and this package, and a release build of the `hps` CLI. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(librocksdb-dev libhiredis-dev librdkafka-dev redis-server pkg-config python3-venv)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import tensorflow, tf_keras, torch, pytest, numpy, nvidia.cu13, tritonclient.http" >/dev/null 2>&1; then
  echo "setup: installing tensorflow-cpu, tf-keras, torch (CPU), numpy, pytest and NVRTC (to compile-check the CUDA kernels) and tritonclient[http] (tests/server) into .venv (a few minutes)"
  .venv/bin/pip install -q --upgrade pip setuptools wheel
  .venv/bin/pip install -q "tensorflow-cpu==2.21.*" "tf-keras==2.21.*" "torch==2.13.0+cpu" numpy pytest "nvidia-cuda-nvrtc==13.*" "tritonclient[http]==2.73.*"
fi
if ! .venv-tf-oldest/bin/python -c "import tensorflow" >/dev/null 2>&1; then
  echo "setup: creating .venv-tf-oldest with tensorflow-cpu 2.16, the oldest TensorFlow the op library declares (tests/wheel serves the wheel with it)"
  python3 -m venv .venv-tf-oldest
  .venv-tf-oldest/bin/pip install -q "tensorflow-cpu==2.16.*" "numpy<2"
fi
if ! .venv/bin/python -c "import tritonclient.grpc, prometheus_client" >/dev/null 2>&1; then
  echo "setup: installing tritonclient[grpc] and prometheus_client (tests/server: gRPC and /metrics) into .venv"
  .venv/bin/pip install -q "tritonclient[grpc]==2.73.*" "prometheus_client==0.26.*"
fi
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('recbole') is None)"; then
  echo "setup: installing recbole --no-deps for the MovieLens-100K files its wheel ships (examples/sok_dlrm reads them; RecBole is never imported)"
  .venv/bin/pip install -q --no-deps "recbole==1.2.1"
fi
if [ -f pyproject.toml ]; then
  echo "setup: building and installing the hierarchical_parameter_server package into .venv"
  .venv/bin/pip install -q --no-build-isolation .
fi

echo "setup: building the C API (libhps.so)"
./scripts/build-capi.sh >/dev/null

echo "setup: building hps (release)"
swift build -c release --product hps
