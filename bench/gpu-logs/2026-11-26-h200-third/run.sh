#!/usr/bin/env bash
# session 5 device run 2 (one shot): build + CUDA tests, sal_train throughput graph vs eager (CIFAR,
# ImageNet MobileNet), eager comparison for mobilenet_v1, eager + torch.compile for resnet50_released,
# memcheck with what time is left.
cd "$(dirname "$0")/.."
T0=$(date +%s); DEADLINE=$((T0 + ${RUN_BUDGET:-500}))
left() { echo $((DEADLINE - $(date +%s))); }
X=$OUT/extra.txt
SAL_GPU_BENCH="" timeout 200 bash scripts/gpu-check.sh > /dev/null 2>&1
echo "gpu-check exit $? after $(( $(date +%s) - T0 )) s" >> $X
export LD_LIBRARY_PATH=/tmp/sal-deps/usr/lib/x86_64-linux-gnu:$(dirname $(find / -name libcudnn.so.9 -path "*nvidia*" 2>/dev/null | head -1)):${LD_LIBRARY_PATH:-}
B=build-gpu; mkdir -p /tmp/sh
{
$B/sal_make_shards --tar ../shared/data/cifar10/test.tar --out /tmp/sh/c --per-shard 400 --shuffle --quiet
for bs in 8 64; do for mode in graph eager; do
  echo "== sal_train cuda batch $bs $mode"
  timeout 15 $B/sal_train --shards /tmp/sh --black-box weights/cifar_resnet20.safetensors --device cuda --batch $bs --steps 300 --log-every 100 --checkpoint-every 0 --threads 8 $([ $mode = eager ] && echo --eager) --out /tmp/tr$bs$mode 2>&1 | grep -E "^step|training step|error" | tail -4
done; done
for mode in graph eager; do
  echo "== sal_train cuda ImageNet MobileNet batch 64 $mode (192 images, 16 reader threads)"
  timeout 30 $B/sal_train --shards .gpu-shared/imagenet-train --black-box weights/mobilenet_v1_0.75_224.safetensors --preset mobilenet --device cuda --batch 64 --steps 40 --log-every 10 --checkpoint-every 0 --threads 16 $([ $mode = eager ] && echo --eager) --out /tmp/in$mode 2>&1 | grep -E "^step|training step|error" | tail -5
done
} >> $X 2>&1
echo "== eager comparison, mobilenet_v1 ($(left) s left)" >> $X
PYTHONUNBUFFERED=1 timeout 120 python3 bench/compare_masker_torch.py --device cuda --batch 64 --min-time 1 --no-compile \
  --bench $B/masker_bench --models mobilenet_v1 --json $OUT/compare_mobilenet.json >> $X 2>&1
echo "mobilenet comparison exit $?" >> $X
L=$(left); echo "== eager and torch.compile comparison, resnet50_released ($L s left)" >> $X
if [ "$L" -gt 100 ]; then
  PYTHONUNBUFFERED=1 timeout $((L - 30)) python3 bench/compare_masker_torch.py --device cuda --batch 64 --min-time 1 \
    --bench $B/masker_bench --models resnet50_released --json $OUT/compare_resnet50.json >> $X 2>&1
  echo "compile comparison exit $?" >> $X
fi
L=$(left); echo "== memcheck ($L s left)" >> $X
if [ "$L" -gt 25 ]; then
  timeout $((L - 10)) compute-sanitizer --tool memcheck --error-exitcode 1 $B/engine_tests \
    -tc="cuda: MaskerTrainStep*,cuda: uploads*,cuda: StepGraph*" 2>&1 | tail -15 >> $X
  echo "memcheck exit ${PIPESTATUS[0]}" >> $X
fi
