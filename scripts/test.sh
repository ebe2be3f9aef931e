#!/usr/bin/env bash
# The README's test command: install dependencies, build everything, run the test suite.
# CUDA-vs-CPU tests report "Skipped" (not passed) on a machine without a GPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SAL_BUILD_DIR:-$ROOT/build}"
bash "$ROOT/scripts/install-deps.sh"
bash "$ROOT/scripts/build.sh" "$BUILD" ${SAL_CMAKE_ARGS:-}
cd "$BUILD"
ctest --output-on-failure -j "$(nproc)"
