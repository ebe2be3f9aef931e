#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: configure a Release build with CUDA (sm_90),
# build, run the test suite (the CUDA tests must PASS here: a "skipped: no CUDA device" counts as
# a failure), every CUDA benchmark (bench/*cuda*), the masker benchmark against PyTorch
# (bench/compare_masker_torch.py) and again with f32 convolutions (SAL_CONV_MATH=f32), logging to
# ${OUT:-<repo>/build}/gpu-check.log (benchmark results also as JSON beside it).
# Exits non-zero when the build, any test, or any benchmark's validation failed.
#
#   scripts/gpu-check.sh                # everything, about 5 minutes on an H100 once built
#   scripts/gpu-check.sh --fetch-debs   # on a Debian 12 machine with apt: download the .deb files
#                                       # of the build's libraries into $SAL_DEBS (see below)
#   scripts/gpu-check.sh --pack-shared  # here: the data the CUDA tests read, into .gpu-shared/ (below)
#
# Environment:
#   SAL_BUILD_DIR        build folder (default <repo>/build-gpu)
#   SAL_BENCH_MIN_TIME   --benchmark_min_time per benchmark, seconds (default 0.05)
#   SAL_COMPARE_MIN_TIME seconds per number of the masker comparison (default 2)
#   SAL_COMPARE_ARGS     extra arguments of bench/compare_masker_torch.py (e.g. "--models mobilenet_v1
#                        --no-compile" when device time is short: torch.compile takes minutes per model)
#   SAL_GPU_BENCH        which benchmark groups run (default "micro masker f32 fused reader"): micro =
#                        bench/*cuda*, masker = the masker against PyTorch, f32 = the masker with
#                        SAL_CONV_MATH=f32, fused = the masker with SAL_FUSE_CONV_BN=1 (the conv + BN
#                        epilogue fusion, off by default on CUDA), reader = the training reader's
#                        decode + augment images/s (bench/reader_bench.cpp); "" runs the build and the
#                        tests alone
#   SAL_CTEST_EXCLUDE    ctest -E regex for tests not run here (default "golden": the PyTorch
#                        fixtures need Debian's python3-torch, not a GPU)
#   SAL_DEBS             folder of .deb files (default <repo>/.debs). When it holds any, they are
#                        unpacked under /tmp/sal-deps and the build uses them: OpenBLAS, doctest,
#                        Google Benchmark and nlohmann-json, which a CUDA image may lack and cannot
#                        download. Fill it with --fetch-debs on a Debian 12 machine.
#   CUDNN_ROOT           cuDNN install (include/, lib/). Found automatically when cudnn.h is under
#                        the CUDA toolkit or in python3's site-packages (nvidia/cudnn, PyTorch's wheels).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SAL_BUILD_DIR:-$ROOT/build-gpu}"
DEBS="${SAL_DEBS:-$ROOT/.debs}"
DEB_PACKAGES=(libopenblas0-pthread libopenblas-pthread-dev libopenblas-dev libgfortran5
              nlohmann-json3-dev doctest-dev libbenchmark-dev libbenchmark1debian
              libturbojpeg0 libturbojpeg0-dev libpng16-16 libpng-dev zlib1g zlib1g-dev)

if [ "${1:-}" = "--fetch-debs" ]; then
  grep -qx "/.debs/" "$ROOT/.git/info/exclude" 2>/dev/null || echo "/.debs/" >>"$ROOT/.git/info/exclude"
  mkdir -p "$DEBS" && cd "$DEBS" && apt-get download "${DEB_PACKAGES[@]}"
  exit $?
fi

# The device machine gets the repository but not ../shared. --pack-shared (here) writes the few data
# files the CUDA test cases read into $ROOT/.gpu-shared (about 8 MB; carry it): 120 CIFAR-10 test
# images per class, the imagenet-val table and three of its images. On the device, when ../shared is absent,
# it is linked to that folder and only the CUDA tests run (the CPU tests need all of ../shared; CI runs
# them). It also holds imagenet-train/: the first 192 imagenet-sample images as 3 WebDataset shards
# (about 6 MB), for reader_bench and ImageNet-sized sal_train runs there.
PACK="$ROOT/.gpu-shared"
if [ "${1:-}" = "--pack-shared" ]; then
  SRC="$ROOT/../shared/data"
  rm -rf "$PACK" && mkdir -p "$PACK/data/cifar10" "$PACK/data/imagenet-val/images" || exit 1
  python3 - "$SRC/cifar10/test.tar" "$PACK/data/cifar10/test.tar" <<'PY' || exit 1
import sys, tarfile
per_class = {}
with tarfile.open(sys.argv[1]) as src, tarfile.open(sys.argv[2], "w") as dst:
    for m in src:
        if not m.isfile():
            continue
        c = m.name.split("/")[0]
        if per_class.get(c, 0) < 120:
            per_class[c] = per_class.get(c, 0) + 1
            dst.addfile(m, src.extractfile(m))
PY
  mkdir -p "$PACK/imagenet-train" || exit 1
  python3 - "$SRC/imagenet-sample" "$PACK/imagenet-train" <<'PY' || exit 1
import io, os, sys, tarfile
src, dst = sys.argv[1:3]
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(src, "labels.tsv"))][1:193]
for s in range(0, len(rows), 64):
    with tarfile.open(os.path.join(dst, f"in-{s // 64:06d}.tar"), "w") as t:
        for i, (file, _, label, _) in enumerate(rows[s:s + 64], start=s):
            for name, data in ((f"s{i}.jpg", open(os.path.join(src, file), "rb").read()), (f"s{i}.cls", label.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
PY
  cp "$SRC/imagenet-val/annotations.tsv" "$PACK/data/imagenet-val/" || exit 1
  for f in ILSVRC2012_val_00000347.JPEG ILSVRC2012_val_00000355.JPEG ILSVRC2012_val_00000361.JPEG; do
    cp "$SRC/imagenet-val/images/$f" "$PACK/data/imagenet-val/images/" || exit 1
  done
  grep -qx "/.gpu-shared/" "$ROOT/.git/info/exclude" 2>/dev/null || echo "/.gpu-shared/" >>"$ROOT/.git/info/exclude"
  du -sh "$PACK"
  exit 0
fi
CUDA_TESTS_ONLY=0
if [ ! -e "$ROOT/../shared" ] && [ -d "$PACK" ]; then
  ln -s "$PACK" "$ROOT/../shared" && CUDA_TESTS_ONLY=1
fi

LOG_DIR="${OUT:-$ROOT/build}"
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/gpu-check.log"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1

FAILED=()
step() { echo; echo "==== $* ($(date -u +%H:%M:%S))"; }

step "machine"
uname -a
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
"$NVCC" --version | tail -2
CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}"
cmake --version | head -1

CMAKE_ARGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DSAL_REQUIRE_CUDA=ON
            -DSAL_BUILD_TESTS=ON -DSAL_BUILD_BENCH=ON -DCMAKE_CUDA_COMPILER="$NVCC")

# ---- libraries from .deb files, when given
if compgen -G "$DEBS/*.deb" >/dev/null; then
  step "unpacking the .deb files of $DEBS into /tmp/sal-deps"
  PREFIX=/tmp/sal-deps
  mkdir -p "$PREFIX"
  for f in "$DEBS"/*.deb; do dpkg-deb -x "$f" "$PREFIX" || FAILED+=("unpack $f"); done
  BLAS_SO="$(find "$PREFIX" -name libopenblas.so -path '*openblas-pthread*' | head -1)"
  CBLAS_H="$(find "$PREFIX" -name cblas.h -path '*openblas-pthread*' | head -1)"
  CMAKE_ARGS+=(-DCMAKE_PREFIX_PATH="$PREFIX/usr")
  [ -n "$BLAS_SO" ] && CMAKE_ARGS+=(-DOPENBLAS_LIB="$BLAS_SO")
  [ -n "$CBLAS_H" ] && CMAKE_ARGS+=(-DCBLAS_INCLUDE_DIR="$(dirname "$CBLAS_H")")
  export LD_LIBRARY_PATH="${BLAS_SO:+$(dirname "$BLAS_SO"):}$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi

# ---- cuDNN: the toolkit's, the system's, or PyTorch's wheel (nvidia/cudnn in site-packages)
step "cuDNN"
if [ -z "${CUDNN_ROOT:-}" ]; then
  for d in "$CUDA_HOME" /usr /usr/local; do
    if [ -f "$d/include/cudnn.h" ] || [ -f "$d/include/x86_64-linux-gnu/cudnn.h" ]; then CUDNN_ROOT=""; FOUND=1; break; fi
  done
  if [ -z "${FOUND:-}" ]; then
    CUDNN_H="$(python3 - <<'EOF' 2>/dev/null
import glob, os, site, sys
pats = [os.path.join(r, "nvidia", "*", "include", "cudnn.h") for r in site.getsitepackages() + [site.getusersitepackages()]]
try:
    import nvidia
    pats += [os.path.join(p, "*", "include", "cudnn.h") for p in nvidia.__path__]
except Exception:
    pass
for pat in pats:
    for h in sorted(glob.glob(pat)):
        print(h)
        sys.exit(0)
EOF
)"
    [ -n "$CUDNN_H" ] && CUDNN_ROOT="$(dirname "$(dirname "$CUDNN_H")")"
  fi
fi
if [ -n "${CUDNN_ROOT:-}" ]; then
  echo "cuDNN from CUDNN_ROOT=$CUDNN_ROOT"
  CMAKE_ARGS+=(-DCUDNN_ROOT="$CUDNN_ROOT")
  # cuDNN 9 opens its engine libraries (libcudnn_cnn.so.9, ...) at run time from the loader path.
  export LD_LIBRARY_PATH="$CUDNN_ROOT/lib:${LD_LIBRARY_PATH:-}"
else
  echo "cuDNN under the CUDA toolkit or the system"
fi

# ---- configure and build
step "configure $BUILD"
if ! cmake -S "$ROOT" -B "$BUILD" "${CMAKE_ARGS[@]}"; then
  echo "gpu-check: configure FAILED"
  exit 2
fi
step "build"
if ! cmake --build "$BUILD" -j "$(nproc)"; then
  echo "gpu-check: build FAILED"
  exit 2
fi
grep -E "CUDNN_(INCLUDE_DIR|LIB)|OPENBLAS_LIB" "$BUILD/CMakeCache.txt" | grep -v "^//"

# ---- tests: everything but the CUDA programs through ctest, then those directly (full output)
if [ "$CUDA_TESTS_ONLY" = 1 ]; then
  step "ctest (CPU tests): not run here (../shared is the packed subset; CI runs them)"
else
  step "ctest (CPU tests)"
  EXCLUDE="${SAL_CTEST_EXCLUDE:-golden}"
  (cd "$BUILD" && ctest --output-on-failure -j 8 --timeout 900 -E "(${EXCLUDE})|^cuda_") || FAILED+=("ctest")
fi

# The CUDA cases inside engine_tests (masker + objective, StepGraph replay, sal_train / sal_mask --device
# cuda against the CPU) passed under ctest above, but a case that found no device passes by skipping:
# run them again, showing their messages, and count a skip as a failure.
step "CUDA cases of engine_tests (a skip is a failure here)"
out="$LOG_DIR/engine_tests_cuda.txt"
"$BUILD/engine_tests" --success=false -tc="cuda:*,*--device cuda*,sal_mask:*,*data parallel*" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
skips=$(grep -c "skipped:" "$out")
rm -f "$out"
if [ "$rc" -ne 0 ] || [ "$skips" -ne 0 ]; then FAILED+=("engine_tests CUDA cases (exit $rc, $skips skipped)"); fi

for t in "$BUILD"/cuda_vs_cpu "$BUILD"/cuda_conv_backends; do
  [ -x "$t" ] || { FAILED+=("$(basename "$t") (not built)"); continue; }
  step "$(basename "$t")"
  "$t"
  rc=$?
  if [ $rc -ne 0 ]; then FAILED+=("$(basename "$t") (exit $rc$([ $rc -eq 77 ] && echo ': no CUDA device seen'))"); fi
done

# run_benchmark LABEL NAME [VAR=value ...] BINARY [ARGS ...]: a Google Benchmark binary with its results
# in $LOG_DIR/NAME.json (the table goes to the log); a non-zero exit or any benchmark that reported an
# error (a validation before timing failed) is a failure named LABEL.
run_benchmark() {
  local label="$1" name="$2"
  shift 2
  local out="$LOG_DIR/$name.txt" rc errors
  env "$@" --benchmark_counters_tabular=true --benchmark_out="$LOG_DIR/$name.json" \
      --benchmark_out_format=json 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  errors=$(grep -c "ERROR OCCURRED" "$out")
  rm -f "$out"
  if [ "$rc" -ne 0 ] || [ "$errors" -ne 0 ]; then FAILED+=("$label (exit $rc, $errors benchmarks reported an error)"); fi
}

BENCH_GROUPS=" ${SAL_GPU_BENCH-micro masker f32 fused reader} "
wants() { [[ "$BENCH_GROUPS" == *" $1 "* ]]; }

# ---- CUDA benchmarks (validated against cuDNN / cuBLAS and the CPU before timing)
MIN_TIME="${SAL_BENCH_MIN_TIME:-0.05}"
wants micro || step "CUDA kernel benchmarks: skipped (SAL_GPU_BENCH)"
for src in "$ROOT"/bench/*cuda*.cpp; do
  wants micro || break
  [ -e "$src" ] || continue
  name="$(basename "$src" .cpp)"
  step "benchmark $name (min time ${MIN_TIME}s)"
  if [ ! -x "$BUILD/$name" ]; then FAILED+=("$name (not built)"); continue; fi
  run_benchmark "$name" "$name" "$BUILD/$name" --benchmark_min_time="$MIN_TIME"
done

# ---- masker inference / training step (bench/masker_bench.cpp, validated before timing), against
# PyTorch eager and torch.compile on the same GPU (bench/compare_masker_torch.py) when python3 has
# torch with CUDA; otherwise our CUDA benchmarks alone.
CMP_MIN_TIME="${SAL_COMPARE_MIN_TIME:-2}"
step "masker benchmark against PyTorch (min time ${CMP_MIN_TIME}s)"
if ! wants masker; then
  echo "skipped (SAL_GPU_BENCH)"
elif [ ! -x "$BUILD/masker_bench" ]; then
  FAILED+=("masker_bench (not built)")
elif python3 -c "import torch, torchvision, numpy; assert torch.cuda.is_available()" 2>/dev/null; then
  # shellcheck disable=SC2086
  python3 "$ROOT/bench/compare_masker_torch.py" --device cuda --batch 64 --min-time "$CMP_MIN_TIME" \
      --bench "$BUILD/masker_bench" --json "$LOG_DIR/compare_masker_torch.json" ${SAL_COMPARE_ARGS:-}
  rc=$?
  [ "$rc" -ne 0 ] && FAILED+=("compare_masker_torch.py (exit $rc)")
else
  echo "no python3 torch with CUDA: our masker benchmarks alone"
  run_benchmark masker_bench masker_bench "$BUILD/masker_bench" --benchmark_filter=/cuda/ \
      --benchmark_min_time="$CMP_MIN_TIME"
fi

# ---- the price of f32 convolutions (SAL_CONV_MATH=f32, cuda/conv_backend.h): the masker benchmarks
# at batch 64 with TF32 off, to set beside the TF32 figures above.
if wants f32 && [ -x "$BUILD/masker_bench" ]; then
  step "masker benchmark with SAL_CONV_MATH=f32 (batch 64, min time ${CMP_MIN_TIME}s)"
  run_benchmark "masker_bench f32" masker_bench_f32 SAL_CONV_MATH=f32 "$BUILD/masker_bench" \
      --benchmark_filter='masker_(infer|train)/(mobilenet_v1|resnet50_released)/cuda/batch:64' \
      --benchmark_min_time="$CMP_MIN_TIME"
fi

# ---- what the conv + BN epilogue fusion gives (conv2d_bn_act, layers/modules.h; off by default on CUDA,
# where it measured slower): the same masker benchmarks with SAL_FUSE_CONV_BN=1, beside the default.
if wants fused && [ -x "$BUILD/masker_bench" ]; then
  step "masker benchmark with SAL_FUSE_CONV_BN=1 (min time ${CMP_MIN_TIME}s)"
  run_benchmark "masker_bench fused" masker_bench_fused SAL_FUSE_CONV_BN=1 "$BUILD/masker_bench" \
      --benchmark_filter='masker_(infer|infer_graph|train_graph)/(mobilenet_v1|resnet50_released)/cuda/' \
      --benchmark_min_time="$CMP_MIN_TIME"
fi

# ---- the training reader alone: decode + augment images/s by thread count (what feeds sal_train)
if wants reader; then
  step "benchmark reader_bench (the training reader, min time ${MIN_TIME}s)"
  READER_SHARDS="${SAL_READER_SHARDS:-}"
  [ -z "$READER_SHARDS" ] && [ "$CUDA_TESTS_ONLY" = 1 ] && READER_SHARDS="$PACK/imagenet-train"
  if [ ! -x "$BUILD/reader_bench" ]; then
    FAILED+=("reader_bench (not built)")
  else
    run_benchmark reader_bench reader_bench ${READER_SHARDS:+SAL_READER_SHARDS=$READER_SHARDS} "$BUILD/reader_bench" \
        --benchmark_min_time="$MIN_TIME"
  fi
fi

step "summary"
if [ ${#FAILED[@]} -eq 0 ]; then
  echo "gpu-check: all passed (log: $LOG)"
  exit 0
fi
echo "gpu-check: FAILED:"
printf '  %s\n' "${FAILED[@]}"
exit 1
