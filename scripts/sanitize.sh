#!/usr/bin/env bash
# The reliability checks of docs/reliability.md, on the CPU:
#   1. one clang build (build-san) with AddressSanitizer + UndefinedBehaviorSanitizer (every UB report
#      fatal) and libFuzzer instrumentation: -DSAL_SANITIZE=ON -DSAL_FUZZ=ON -DSAL_ENABLE_CUDA=OFF;
#   2. a subset of engine_tests under the sanitizers (SAL_SAN_TESTS, a ctest -R regex; see below);
#   3. every fuzz target of tests/fuzz/ for SAL_FUZZ_SECONDS seconds from its seed corpus
#      (tests/fuzz/corpus/<target>/, plus weights/cifar_resnet20.safetensors for fuzz_weights; copied: the
#      run's new inputs stay in the build folder), after replaying tests/fuzz/regressions/<target>/ (inputs
#      that earlier runs found; tests/test_fuzz_regressions.cpp checks them in the normal build too). Any crash,
#      sanitizer report, leak, out-of-memory or timeout fails the script; the crashing input is left in
#      build-san/fuzz/<target>/ (crash-*, leak-*, oom-*, timeout-*) and the log in build-san/fuzz/<target>.log.
# CI runs it after scripts/test.sh (.ci/run). Needs clang, libclang-rt-14-dev (libFuzzer, the sanitizer
# runtimes) and libomp-dev (OpenMP for clang): scripts/install-deps.sh installs them.
#
# Usage: scripts/sanitize.sh [all|build|tests|fuzz]      (default all)
# Environment:
#   SAL_SAN_BUILD_DIR   build folder (default <repo>/build-san)
#   SAL_SAN_TESTS       ctest -R regex of the engine_tests cases run under the sanitizers (default: the
#                       readers and writers of outside bytes, the shard pipeline, training end to end,
#                       the fuzz regressions, the data-parallel collectives,
#                       the fault tests, the masker and the objective, the direct 3x3 conv kernel and
#                       Winograd (their masked loads reach before and after the planes), the narrow GEMM (masked
#                       stores into C's rows), the worker thread (sal_mask's overlapped pipeline: its
#                       sal_mask case runs too, "image" in its name), SaliencyEngine (sal_mask's compute as a
#                       library), the in-place batch norm (written over its input) and the arena (its host blocks are
#                       mapped pages of its own, engine/host_pages.h); the op-gradient tables run in the
#                       normal build only, they take too long under ASan on 2 cores)
#   SAL_FUZZ_SECONDS    seconds per fuzz target (default 20)
#   SAL_FUZZ_TARGETS    which targets (default: all of tests/fuzz/fuzz_*.cpp)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SAL_SAN_BUILD_DIR:-$ROOT/build-san}"
MODE="${1:-all}"
SECONDS_PER_TARGET="${SAL_FUZZ_SECONDS:-20}"
TESTS="${SAL_SAN_TESTS:-safetensors|SafeTensors|image|Image|tar|Tar|Shard|shard|sal_train|masker|Masker|label|objective|fuzz regressions|ShmComm|DataParallel|direct 3x3|Winograd|dgrad_bn_act equals|narrow GEMM|WorkerThread|SaliencyEngine|infer_act_inplace|batch-norm fold|arena:}"
TARGETS="${SAL_FUZZ_TARGETS:-$(cd "$ROOT/tests/fuzz" && ls fuzz_*.cpp | sed 's/\.cpp$//' | tr '\n' ' ')}"
JOBS="${SAL_JOBS:-$(nproc)}"
# Leaks are reported (LeakSanitizer) and fatal; UBSan prints a stack for each report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

build() {
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSAL_ENABLE_CUDA=OFF -DSAL_BUILD_BENCH=OFF -DSAL_SANITIZE=ON -DSAL_FUZZ=ON >/dev/null
  # shellcheck disable=SC2086
  cmake --build "$BUILD" -j "$JOBS" --target engine_tests $TARGETS
}

tests() {
  local start=$SECONDS
  (cd "$BUILD" && ctest --output-on-failure -j "$JOBS" -R "$TESTS" -E "golden|model")
  echo "sanitize: engine_tests subset (-R '$TESTS') passed under ASan+UBSan in $((SECONDS - start)) s"
}

fuzz() {
  local failed=() t start
  mkdir -p "$BUILD/fuzz"
  for t in $TARGETS; do
    start=$SECONDS
    rm -rf "$BUILD/fuzz/$t" && mkdir -p "$BUILD/fuzz/$t/corpus"
    cp "$ROOT/tests/fuzz/corpus/$t"/* "$BUILD/fuzz/$t/corpus/"
    # The shipped CIFAR ResNet20 is the weight target's full-size seed (not copied into the corpus).
    if [ "$t" = fuzz_weights ]; then cp "$ROOT/weights/cifar_resnet20.safetensors" "$BUILD/fuzz/$t/corpus/"; fi
    # -max_len: the largest seed, so that the real checkpoint and masker seeds are not cut at libFuzzer's
    # default cap of 1 MB. -rss_limit_mb / -malloc_limit_mb: an input that makes a reader allocate 2 GB is a
    # finding.
    max_len=$(find "$BUILD/fuzz/$t/corpus" -type f -printf '%s\n' | sort -n | tail -1)
    # First the inputs earlier runs found (tests/fuzz/regressions/<target>/), each run once.
    if [ -d "$ROOT/tests/fuzz/regressions/$t" ] && ! "$BUILD/$t" -rss_limit_mb=2560 -malloc_limit_mb=2048 \
         "$ROOT/tests/fuzz/regressions/$t"/* >"$BUILD/fuzz/$t.regressions.log" 2>&1; then
      echo "sanitize: $t: a regression input fails again (log $BUILD/fuzz/$t.regressions.log)"
      failed+=("$t")
      continue
    fi
    if (cd "$BUILD/fuzz/$t" && "$BUILD/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=30 -rss_limit_mb=2560 \
          -max_len="$(( max_len > 4096 ? max_len : 4096 ))" \
          -malloc_limit_mb=2048 -print_final_stats=1 corpus >"../$t.log" 2>&1); then
      echo "sanitize: $t: $(grep -m1 '^stat::number_of_executed_units' "$BUILD/fuzz/$t.log" | awk '{print $2}') runs" \
           "in $((SECONDS - start)) s, no finding"
    else
      echo "sanitize: $t: FINDING (log $BUILD/fuzz/$t.log, input in $BUILD/fuzz/$t/):"
      grep -E 'ERROR|SUMMARY|==[0-9]+==|runtime error|uncaught|what\(\)' "$BUILD/fuzz/$t.log" | head -20 || true
      failed+=("$t")
    fi
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "sanitize: fuzz findings in: ${failed[*]}"
    return 1
  fi
}

case "$MODE" in
  build) build ;;
  tests) tests ;;
  fuzz) fuzz ;;
  all) build; tests; fuzz ;;
  *) echo "usage: scripts/sanitize.sh [all|build|tests|fuzz]" >&2; exit 2 ;;
esac
