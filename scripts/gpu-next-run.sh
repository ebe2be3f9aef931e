#!/usr/bin/env bash
# The next device run in one shot (written in session 6, without a GPU, for the code that has not run
# yet): build + every CUDA test (scripts/gpu-check.sh with no benchmarks), what the conv + BN epilogue
# fusion gives (the masker with SAL_FUSE_CONV_BN=0 and =1, inference at batch 1 and 64 and the captured
# training step), an op-by-op profile of the eager training step (SAL_PROFILE_OPS), sal_train's
# images/s on ImageNet-sized batches with the read-ahead through the copy stream, compute-sanitizer over
# the new CUDA paths, and the comparison with PyTorch with what time is left; the fused ops' CUDA rows
# again with the custom and the cuDNN backend pinned (session 10); sal_mask's images/s on CUDA with its
# host stages serial and overlapped (session 12). Everything goes to $OUT (the device
# tool brings it back). Run from the repository root with
# .debs and .gpu-shared carried along (scripts/gpu-check.sh --fetch-debs / --pack-shared), e.g.
#     RUN_BUDGET=520 bash scripts/gpu-next-run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/build-gpu/next-run}"
mkdir -p "$OUT"
T0=$(date +%s)
DEADLINE=$((T0 + ${RUN_BUDGET:-520}))
left() { echo $((DEADLINE - $(date +%s))); }
X="$OUT/run.txt"

SAL_GPU_BENCH="" OUT="$OUT" timeout 240 bash scripts/gpu-check.sh > "$OUT/gpu-check-console.txt" 2>&1
echo "gpu-check (build + tests) exit $? after $(($(date +%s) - T0)) s" >> "$X"
LIBS=$(dirname "$(find / -name libcudnn.so.9 -path "*nvidia*" 2>/dev/null | head -1)")
export LD_LIBRARY_PATH="/tmp/sal-deps/usr/lib/x86_64-linux-gnu:$LIBS:${LD_LIBRARY_PATH:-}"
B=build-gpu

{
  echo "== cuda_vs_cpu's conv2d_bn_act / conv2d_dgrad_bn_act rows with each conv backend pinned (Auto may skip one)"
  for backend in custom cudnn; do
    SAL_CONV_BACKEND=$backend timeout 30 $B/cuda_vs_cpu bn_act 2>&1 | tail -3 | sed "s/^/backend=$backend  /"
  done

  echo "== masker: conv + BN epilogue fusion off / on ($(left) s left)"
  for fuse in 0 1; do
    SAL_FUSE_CONV_BN=$fuse timeout 90 $B/masker_bench --benchmark_min_time=1 \
      --benchmark_filter='masker_(infer_graph|train_graph)/(mobilenet_v1|resnet50_released)/cuda/' \
      --benchmark_counters_tabular=true 2>&1 | grep -E "^masker|ERROR" | sed "s/^/fuse=$fuse  /"
  done

  echo "== op profile of the eager training step (where its time goes), ResNet-50 released decoder, batch 64"
  SAL_PROFILE_OPS=1 timeout 60 $B/masker_bench --benchmark_min_time=1 \
    --benchmark_filter='masker_train/resnet50_released/cuda/' 2>&1 | sed -n '/^op profile/,$p' | head -48

  echo "== MobileNet inference at batch 64 by conv backend (session 5's open 11%) ($(left) s left)"
  for backend in cudnn custom auto; do
    SAL_CONV_BACKEND=$backend timeout 40 $B/masker_bench --benchmark_min_time=1 \
      --benchmark_filter='masker_infer_graph/mobilenet_v1/cuda/batch:64' --benchmark_counters_tabular=true 2>&1 |
      grep -E "^masker|ERROR" | sed "s/^/backend=$backend  /"
  done

  echo "== sal_train cuda ImageNet MobileNet batch 64, read-ahead on the copy stream ($(left) s left)"
  timeout 45 $B/sal_train --shards .gpu-shared/imagenet-train --black-box weights/mobilenet_v1_0.75_224.safetensors \
    --preset mobilenet --device cuda --batch 64 --steps 60 --log-every 20 --checkpoint-every 0 --threads 16 \
    --out /tmp/next-in 2>&1 | grep -E "^step|error" | tail -4

  echo "== sal_mask --device cuda on the 192 shard images, batch 64: serial / overlapped host stages, PNG level 1 / 6 ($(left) s left)"
  for run in "serial 1" "overlap 1" "serial 1" "overlap 1" "overlap 6"; do
    set -- $run
    s=$(date +%s%3N)
    timeout 40 $B/sal_mask --device cuda --batch 64 --quiet --pipeline $1 --png-level $2 \
      --masker weights/mobilenet_v1_0.75_224_masker.safetensors --out /tmp/sal-mask-$1-$2 .gpu-shared/imagenet-train/*.tar 2>&1 | tail -1
    echo "pipeline=$1 png-level=$2: exit ${PIPESTATUS[0]}, $(($(date +%s%3N) - s)) ms (start-up and graph capture included)"
  done
  diff -rq /tmp/sal-mask-serial-1 /tmp/sal-mask-overlap-1 && echo "serial and overlapped outputs identical"
} >> "$X" 2>&1

L=$(left)
echo "== memcheck: the conv2d_bn_act and conv2d_dgrad_bn_act rows, the read-ahead step ($L s left)" >> "$X"
if [ "$L" -gt 60 ]; then
  timeout $((L / 3)) compute-sanitizer --tool memcheck --error-exitcode 1 $B/cuda_vs_cpu bn_act 2>&1 |
    tail -4 >> "$X"
  echo "memcheck cuda_vs_cpu exit ${PIPESTATUS[0]}" >> "$X"
  timeout $((L / 3)) compute-sanitizer --tool memcheck --error-exitcode 1 $B/engine_tests \
    -tc="cuda: MaskerTrainStep*" 2>&1 | tail -6 >> "$X"
  echo "memcheck engine_tests exit ${PIPESTATUS[0]}" >> "$X"
fi

L=$(left)
echo "== eager comparison with PyTorch, batch 64 ($L s left)" >> "$X"
if [ "$L" -gt 80 ]; then
  PYTHONUNBUFFERED=1 timeout $((L - 15)) python3 bench/compare_masker_torch.py --device cuda --batch 64 \
    --min-time 1 --no-compile --bench $B/masker_bench --json "$OUT/compare_eager.json" >> "$X" 2>&1
  echo "comparison exit $?" >> "$X"
fi
echo "done after $(($(date +%s) - T0)) s" >> "$X"
