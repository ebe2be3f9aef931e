#!/usr/bin/env bash
# The next device run in one shot, its steps in order of what they decide, each started only while enough of
# RUN_BUDGET is left (a step's header says how much was), so that a short budget loses the diagnostics, not the
# decisions:
#   1. build + every CUDA test (scripts/gpu-check.sh with no benchmarks): sessions 14-16's CUDA code has not run
#      yet (cuBLAS as the third conv backend, cuDNN's algorithms timed under Auto, the frozen batch norm folded
#      into cuDNN's fused conv + bias + ReLU, cuDNN in NHWC);
#   2. the masker's captured inference graphs, conv + BN fusion off / on, under auto (now with the fold) and with
#      cuDNN pinned, and fused with the fold forbidden: whether `conv_bn_fusion`'s CUDA default (layers/modules.h)
#      flips to fused, the issue's remaining done-criterion;
#   3. the ResNet-50 training step's graph, fused and unfused;
#   4. the eager comparison with PyTorch, ours fused (the candidate default); then the graphs of 2 and 3 with
#      SAL_CONV_NHWC=1 (cuDNN in NHWC with conversions as Auto's candidate): whether that default flips to on;
#   5. per ResNet-50 layer: conv + frozen BN + ReLU with the batch-norm pass against the fold (what the fold buys);
#      cuDNN in NCHW against NHWC, and PyTorch eager in channels_last (what NHWC would buy);
#   6. diagnostics: the masker graphs with cuBLAS and the custom kernels pinned; the 1x1 layers on cuBLAS, cuDNN
#      and the custom kernels; cuda_vs_cpu's conv rows with cuBLAS pinned; an op profile of ResNet-50 inference at
#      batch 1; sal_mask twice under Auto with a choices file (byte-identical?) and its masks against the CPU's;
#   7. compute-sanitizer's four tools over the two CUDA test programs (never run whole); torch.compile for
#      ResNet-50 with what time is left.
# Everything goes to $OUT (the device tool brings it back, 8 files at most: run.txt, gpu-check-console.txt,
# gpu-check.log, compare_eager.json, conv_layout.json, compare_channels_last.json, compare_compile.json). Run from
# the repository root with .debs and .gpu-shared carried along (scripts/gpu-check.sh --fetch-debs /
# --pack-shared), e.g.
#     OUT=$OUT RUN_BUDGET=500 bash scripts/gpu-next-run.sh      (the device tool's $OUT; timeout_s about 580)
# (about 11-12 of the 15 device minutes with the machine's start; files land in $OUT as they are written).
# SAL_NEXT_RUN_DRY=1 leaves the build and the tests out and runs the rest on an existing build (SAL_BUILD_DIR), e.g.
# on a machine without a GPU, to check the script itself: every CUDA step then fails at once, which is the point.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/build-gpu/next-run}"
mkdir -p "$OUT"
T0=$(date +%s)
DEADLINE=$((T0 + ${RUN_BUDGET:-520}))
left() { echo $((DEADLINE - $(date +%s))); }
X="$OUT/run.txt"
# step NEED TITLE: prints the step's header; true when at least NEED seconds of the budget are left.
step() {
  local l
  l=$(left)
  if [ "$l" -lt "$1" ]; then
    echo "== $2: left out ($l s left, needs $1)" >> "$X"
    return 1
  fi
  echo "== $2 ($l s left)" >> "$X"
}

if [ -z "${SAL_NEXT_RUN_DRY:-}" ]; then
  SAL_GPU_BENCH="" OUT="$OUT" timeout 240 bash scripts/gpu-check.sh > "$OUT/gpu-check-console.txt" 2>&1
  echo "gpu-check (build + tests) exit $? after $(($(date +%s) - T0)) s" >> "$X"
fi
LIBS=$(dirname "$(find / -name libcudnn.so.9 -path "*nvidia*" 2>/dev/null | head -1)")
export LD_LIBRARY_PATH="/tmp/sal-deps/usr/lib/x86_64-linux-gnu:$LIBS:${LD_LIBRARY_PATH:-}"
B="${SAL_BUILD_DIR:-build-gpu}"  # (gpu-check.sh builds there)
# Line-buffered output through the pipes below, so that a benchmark stopped by its timeout keeps the rows it printed.
SB=$(command -v stdbuf > /dev/null && echo "stdbuf -oL")
INFER_FILTER='masker_infer_graph/(mobilenet_v1|resnet50_released)/cuda/batch:(1|64)/'

# masker_graphs BACKEND FUSE NHWC: the inference graphs under one setting; Auto's choices go to a fresh file per
# setting (timed as without one), summarised after.
masker_graphs() {
  rm -f "/tmp/choices-$1-$2-$3.txt"
  SAL_CONV_AUTO_CACHE="/tmp/choices-$1-$2-$3.txt" SAL_CONV_BACKEND=$1 SAL_FUSE_CONV_BN=$2 SAL_CONV_NHWC=$3 \
    timeout 60 $SB $B/masker_bench --benchmark_min_time=0.5 --benchmark_filter="$INFER_FILTER" \
    --benchmark_counters_tabular=true 2>&1 | grep -E "^masker|ERROR" | sed "s/^/backend=$1 fuse=$2 nhwc=$3  /"
}

# choices_summary FUSE NHWC: Auto's choices of masker_graphs auto FUSE NHWC (pass, then choice: how many shapes).
choices_summary() {
  tail -n +3 "/tmp/choices-auto-$1-$2.txt" 2>/dev/null | awk '{print $1, $NF}' | sort | uniq -c |
    sed "s/^/fuse=$1 nhwc=$2 /"
}

if step 60 "2. masker inference graphs, conv + BN fusion off / on, under auto and cudnn; fused with the fold forbidden"; then
  {
    for fuse in 0 1; do
      masker_graphs auto $fuse 0
      masker_graphs cudnn $fuse 0
    done
    echo "-- Auto's choices under auto (pass, then choice: how many shapes), fusion off / on:"
    for fuse in 0 1; do choices_summary $fuse 0; done
    SAL_CONV_FOLD_BN=0 SAL_CONV_BACKEND=auto SAL_FUSE_CONV_BN=1 timeout 60 $SB $B/masker_bench \
      --benchmark_min_time=0.5 --benchmark_filter="$INFER_FILTER" --benchmark_counters_tabular=true 2>&1 |
      grep -E "^masker|ERROR" | sed "s/^/backend=auto fuse=1 fold=0  /"
  } >> "$X" 2>&1
fi

# train_graph FUSE NHWC: the ResNet-50 masker's captured training step under one setting (Auto).
train_graph() {
  SAL_FUSE_CONV_BN=$1 SAL_CONV_NHWC=$2 timeout 60 $SB $B/masker_bench --benchmark_min_time=0.5 \
    --benchmark_filter='masker_train_graph/resnet50_released/cuda/' \
    --benchmark_counters_tabular=true 2>&1 | grep -E "^masker|ERROR" | sed "s/^/fuse=$1 nhwc=$2  /"
}

if step 40 "3. ResNet-50 training step graph, batch 64, fusion off / on under auto (the fold in the black box)"; then
  for fuse in 0 1; do train_graph $fuse 0; done >> "$X" 2>&1
fi

# Ours fused (and so with the fold): the candidate CUDA default; the unfused figures of this call are step 2's rows,
# and session 13 compared the unfused default with PyTorch already.
if step 160 "4. eager comparison with PyTorch, batch 64, ours fused (SAL_FUSE_CONV_BN=1)"; then
  SAL_FUSE_CONV_BN=1 PYTHONUNBUFFERED=1 timeout 150 python3 bench/compare_masker_torch.py --device cuda --batch 64 \
    --min-time 1 --no-compile --bench $B/masker_bench --json "$OUT/compare_eager.json" >> "$X" 2>&1
  echo "comparison exit $?" >> "$X"
fi

# cuDNN in NHWC with conversions as Auto's candidate (SAL_CONV_NHWC=1, off by default): the same graphs with it
# allowed. (The arena grows by its temporaries, the NHWC copies, wherever it is timed: compare arena sizes within
# one setting.)
if step 70 "4b. masker inference graphs and the training step under auto with cuDNN in NHWC allowed (SAL_CONV_NHWC=1)"; then
  {
    for fuse in 0 1; do masker_graphs auto $fuse 1; done
    echo "-- Auto's choices with NHWC allowed, fusion off / on:"
    for fuse in 0 1; do choices_summary $fuse 1; done
    train_graph 0 1
  } >> "$X" 2>&1
fi

if step 60 "5a. ResNet-50 layers, conv + frozen BN + ReLU, batch 64: BN pass after cuDNN vs folded into cuDNN's fused op"; then
  timeout 60 $SB $B/conv_cuda_bench --benchmark_min_time=0.05 --benchmark_counters_tabular=true \
    --benchmark_filter='conv_bn_relu/(conv1|l)' 2>&1 | grep -E "^conv|ERROR|Benchmark" >> "$X"
fi

# What NHWC would give (issue 8's "NHWC where it is faster"; the engine is NCHW throughout): per ResNet-50 layer and
# pass, cuDNN's fastest timed algorithm in each layout (conv_layout rows, session 16), added up over the network, and
# PyTorch eager with the masker in channels_last against its default NCHW (ours: the unfused default).
if step 70 "5b. cuDNN NCHW vs NHWC per ResNet-50 layer, batch 64"; then
  timeout 60 $SB $B/conv_cuda_bench --benchmark_min_time=0.02 --benchmark_counters_tabular=true \
    --benchmark_filter='conv_layout/(conv1|l)' --benchmark_out="$OUT/conv_layout.json" \
    --benchmark_out_format=json 2>&1 | grep -E "^conv|ERROR|Benchmark" >> "$X"
  echo "-- summed over ResNet-50's 53 convolutions (tools/summarize_conv_layout.py):" >> "$X"
  python3 tools/summarize_conv_layout.py "$OUT/conv_layout.json" >> "$X" 2>&1
fi
if step 70 "5c. PyTorch eager in channels_last against NCHW, ResNet-50 released decoder"; then
  PYTHONUNBUFFERED=1 timeout 60 python3 bench/compare_masker_torch.py --device cuda --batch 64 --min-time 1 \
    --models resnet50_released --no-compile --channels-last --skip-agreement --bench $B/masker_bench \
    --json "$OUT/compare_channels_last.json" >> "$X" 2>&1
  echo "comparison exit $?" >> "$X"
fi

if step 50 "6a. masker inference graphs with cuBLAS and the custom kernels pinned"; then
  for backend in cublas custom; do
    for fuse in 0 1; do masker_graphs $backend $fuse 0; done
  done >> "$X" 2>&1
fi
if step 60 "6b. 1x1 stride-1 layers, forward and dgrad, batch 64: cuBLAS vs cuDNN vs custom; cuda_vs_cpu's conv rows with cuBLAS pinned"; then
  {
    timeout 60 $SB $B/conv_cuda_bench --benchmark_min_time=0.05 --benchmark_counters_tabular=true \
      --benchmark_filter='conv/[a-z0-9]+_1x1_[0-9]+to[0-9]+_[0-9]+/(fwd|dgrad)/' 2>&1 | grep -E "^conv|ERROR|Benchmark"
    SAL_CONV_BACKEND=cublas timeout 60 $B/cuda_vs_cpu conv 2>&1 | tail -5
  } >> "$X" 2>&1
fi
if step 30 "6c. op profile of ResNet-50 masker inference at batch 1, eager (where the 2.14 ms go)"; then
  SAL_PROFILE_OPS=1 timeout 40 $B/masker_bench --benchmark_min_time=0.5 \
    --benchmark_filter='masker_infer/resnet50_released/cuda/batch:1/' 2>&1 | sed -n '/^op profile/,$p' | head -24 >> "$X"
fi
if step 60 "6d. sal_mask under Auto twice with a choices file (SAL_CONV_AUTO_CACHE): the same bytes? Against the CPU"; then
  {
    rm -f /tmp/conv-choices.txt
    rm -rf /tmp/sal-mask-cached-1 /tmp/sal-mask-cached-2 /tmp/sal-mask-cpu  # (a rerun on a warm machine)
    for run in 1 2; do
      SAL_CONV_AUTO_CACHE=/tmp/conv-choices.txt timeout 40 $B/sal_mask --device cuda --batch 64 --quiet --raw npy \
        --masker weights/mobilenet_v1_0.75_224_masker.safetensors --out /tmp/sal-mask-cached-$run \
        .gpu-shared/imagenet-train/*.tar 2>&1 | tail -1
    done
    # The same images on the CPU: how far the GPU's masks (TF32, Auto's choices) are from the CPU's f32 ones.
    OMP_NUM_THREADS=16 timeout 60 $B/sal_mask --device cpu --batch 64 --quiet --raw npy \
      --masker weights/mobilenet_v1_0.75_224_masker.safetensors --out /tmp/sal-mask-cpu \
      .gpu-shared/imagenet-train/*.tar 2>&1 | tail -1
    timeout 60 python3 tools/compare_masks.py /tmp/sal-mask-cpu /tmp/sal-mask-cached-1
    echo "choices file: $(grep -c . /tmp/conv-choices.txt 2>/dev/null) lines"
    if [ -s /tmp/sal-mask-cached-1/masks.jsonl ] && [ -s /tmp/sal-mask-cached-2/masks.jsonl ]; then
      diff -rq /tmp/sal-mask-cached-1 /tmp/sal-mask-cached-2 > /tmp/cached-diff.txt &&
        echo "auto with a choices file: two runs byte-identical" ||
        echo "auto with a choices file: two runs differ in $(wc -l < /tmp/cached-diff.txt) files"
    else
      echo "auto with a choices file: a run wrote no masks (above)"
    fi
  } >> "$X" 2>&1
fi

if step 90 "7a. compute-sanitizer: memcheck, racecheck, initcheck, synccheck over cuda_conv_backends and cuda_vs_cpu"; then
  # The logs stay on the machine (the device tool brings back 8 files at most); each tool's tail comes back.
  L=$(left)
  OUT=/tmp/gpu-san SAL_SANITIZE_PROGRAMS="cuda_conv_backends cuda_vs_cpu" timeout $((L - 60)) \
    bash scripts/gpu-sanitize.sh >> "$X" 2>&1
  echo "gpu-sanitize exit $?" >> "$X"
fi
if step 120 "7b. torch.compile, ResNet-50 released decoder"; then
  L=$(left)
  PYTHONUNBUFFERED=1 timeout $((L - 10)) python3 bench/compare_masker_torch.py --device cuda --batch 64 \
    --min-time 1 --models resnet50_released --bench $B/masker_bench --json "$OUT/compare_compile.json" >> "$X" 2>&1
  echo "comparison exit $?" >> "$X"
fi
# Every masker graph row above against the CUDA default, one table (instant; also runs on run.txt afterwards).
echo "== the masker graph rows against the CUDA default (tools/summarize_graph_rows.py)" >> "$X"
python3 tools/summarize_graph_rows.py "$X" > /tmp/graph-summary.txt 2>&1
cat /tmp/graph-summary.txt >> "$X"
rm -f /tmp/graph-summary.txt
echo "done after $(($(date +%s) - T0)) s" >> "$X"
