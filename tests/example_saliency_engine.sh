#!/usr/bin/env bash
# ctest's check of examples/saliency_engine_example.cpp (the library API of layers/saliency_engine.h) on the
# five samples: it runs, prints one line per image, and the black box's top-1 is right on the zebra and the bus.
# usage: example_saliency_engine.sh BINARY   (run from the repository root)
set -euo pipefail
out=$("$1" weights/mobilenet_v1_0.75_224_masker.safetensors samples/*.JPEG)
echo "$out"
test "$(grep -c ': class ' <<< "$out")" -eq 5
grep -q '27429.JPEG: class 340 (zebra)' <<< "$out"
grep -q '31163.JPEG: class 779 (school bus)' <<< "$out"
