#!/usr/bin/env bash
# NVIDIA compute-sanitizer over the CUDA-vs-CPU test programs (docs/reliability.md): memcheck (out-of-bounds
# and misaligned device accesses, device leaks), racecheck (shared-memory data races), initcheck (reads of
# uninitialised device memory) and synccheck (invalid __syncthreads use), each over tests/cuda_vs_cpu.cpp
# (every op table row, CUDA vs the CPU oracle) and tests/cuda_conv_backends.cpp (custom kernels vs cuDNN).
# Each tool runs with --error-exitcode 1; any report fails the script. Logs go to
# ${OUT:-<build>}/gpu-sanitize-<tool>-<program>.log.
#
#   scripts/gpu-check.sh        # first: configures and builds build-gpu (Release, CUDA, -lineinfo)
#   scripts/gpu-sanitize.sh     # then this (memcheck/initcheck slow kernels down 10-100x: expect minutes)
#
# Environment:
#   SAL_BUILD_DIR           the CUDA build (default <repo>/build-gpu, as scripts/gpu-check.sh makes it)
#   SAL_SANITIZE_TOOLS      which tools (default "memcheck racecheck initcheck synccheck")
#   SAL_SANITIZE_PROGRAMS   which programs (default "cuda_vs_cpu cuda_conv_backends")
#   CUDNN_ROOT              cuDNN install whose lib/ must be on the loader path (as for gpu-check.sh)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SAL_BUILD_DIR:-$ROOT/build-gpu}"
TOOLS="${SAL_SANITIZE_TOOLS:-memcheck racecheck initcheck synccheck}"
PROGRAMS="${SAL_SANITIZE_PROGRAMS:-cuda_vs_cpu cuda_conv_backends}"
LOG_DIR="${OUT:-$BUILD}"
mkdir -p "$LOG_DIR"

SAN="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
if [ ! -x "$SAN" ]; then
  echo "gpu-sanitize: compute-sanitizer not found (it ships with the CUDA Toolkit: /usr/local/cuda/bin)"
  exit 2
fi
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  echo "gpu-sanitize: $BUILD is not configured; run scripts/gpu-check.sh first (or set SAL_BUILD_DIR)"
  exit 2
fi
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$(nproc)" --target $PROGRAMS || { echo "gpu-sanitize: build FAILED"; exit 2; }
# cuDNN 9 opens its engine libraries at run time from the loader path.
CUDNN_LIB="$(grep -E '^CUDNN_LIB:' "$BUILD/CMakeCache.txt" | cut -d= -f2)"
[ -n "$CUDNN_LIB" ] && export LD_LIBRARY_PATH="$(dirname "$CUDNN_LIB"):${LD_LIBRARY_PATH:-}"
[ -n "${CUDNN_ROOT:-}" ] && export LD_LIBRARY_PATH="$CUDNN_ROOT/lib:${LD_LIBRARY_PATH:-}"

FAILED=()
for prog in $PROGRAMS; do
  for tool in $TOOLS; do
    log="$LOG_DIR/gpu-sanitize-$tool-$prog.log"
    extra=()
    [ "$tool" = memcheck ] && extra=(--leak-check full)
    [ "$tool" = racecheck ] && extra=(--racecheck-report all)
    echo "==== compute-sanitizer --tool $tool $prog ($(date -u +%H:%M:%S))"
    start=$SECONDS
    "$SAN" --tool "$tool" "${extra[@]}" --error-exitcode 1 --print-limit 100 "$BUILD/$prog" >"$log" 2>&1
    rc=$?
    tail -3 "$log"
    echo "     exit $rc in $((SECONDS - start)) s (log $log)"
    # 77: the program saw no CUDA device, which is a failure here too.
    [ $rc -ne 0 ] && FAILED+=("$tool $prog (exit $rc)")
  done
done
if [ ${#FAILED[@]} -eq 0 ]; then
  echo "gpu-sanitize: no errors reported"
  exit 0
fi
echo "gpu-sanitize: FAILED:"
printf '  %s\n' "${FAILED[@]}"
exit 1
