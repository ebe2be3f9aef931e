#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the benchmarks need.
# Skipped when SAL_SKIP_DEPS=1 (e.g. a machine set up by hand, or no root).
set -euo pipefail
if [ "${SAL_SKIP_DEPS:-0}" = 1 ]; then
  echo "install-deps: skipped (SAL_SKIP_DEPS=1)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libopenblas-dev            # BLAS for the CPU backend
  doctest-dev                # tests
  libbenchmark-dev           # benchmarks
  nlohmann-json3-dev         # safetensors headers, JSON logs
  libcli11-dev libfmt-dev    # command-line tools
  libstb-dev libturbojpeg0-dev libpng-dev  # image decode/encode
  python3 python3-numpy python3-torch python3-torchvision  # tools only: weight conversion, golden fixtures
  clang libclang-rt-dev libomp-dev  # scripts/sanitize.sh: ASan/UBSan build, libFuzzer, OpenMP for clang
)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "install-deps: note: nvcc not found; the CUDA backend will not be built (the CUDA Toolkit is not a Debian package here)"
fi
