#!/usr/bin/env bash
# session 5 device run 1: gpu-check, then sal_train throughput on CIFAR, then memcheck of engine CUDA cases
cd "$(dirname "$0")/.."
export SAL_COMPARE_ARGS="--no-compile --models mobilenet_v1 resnet50_released" SAL_COMPARE_MIN_TIME=1 SAL_BENCH_MIN_TIME=0.02
timeout ${GPU_CHECK_LIMIT:-270} bash scripts/gpu-check.sh > /dev/null 2>&1
echo "gpu-check exit $?" >> $OUT/extra.txt
{
export LD_LIBRARY_PATH=/tmp/sal-deps/usr/lib/x86_64-linux-gnu:$(dirname $(find / -name libcudnn.so.9 -path "*nvidia*" 2>/dev/null | head -1)):${LD_LIBRARY_PATH:-}
B=build-gpu; mkdir -p /tmp/sh
$B/sal_make_shards --tar ../shared/data/cifar10/test.tar --out /tmp/sh/c --per-shard 400 --shuffle --quiet
for bs in 8 64; do
  echo "== sal_train cuda batch $bs"
  timeout 25 $B/sal_train --shards /tmp/sh --black-box weights/cifar_resnet20.safetensors --device cuda --batch $bs --steps 120 --log-every 40 --checkpoint-every 0 --threads 8 --out /tmp/tr$bs 2>&1 | grep -v "^[a-z_]*=" | tail -6
done
} >> $OUT/extra.txt 2>&1
