#!/usr/bin/env bash
# Runs every test: the Swift suites, then the Python suites in .venv. Run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

swift build --build-tests
swift test --skip-build

if [ -d tests/python ]; then
  .venv/bin/python -m pytest -q tests/python tests/cli tests/capi tests/wheel tests/server tests/kafka
fi
