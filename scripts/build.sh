#!/usr/bin/env bash
# Configures and builds every target (engine, tools, tests, benchmarks, CUDA when nvcc is present).
# Usage: scripts/build.sh [build-dir] [extra cmake args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
shift || true
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$BUILD" -j "$(nproc)"
