#!/usr/bin/env bash
# The README's main command: install dependencies, build, and run the main job on the embedded
# default: the engine self-check (build facts, a small CNN trained on synthetic data through the op
# API, a checkpoint round trip), the bundled MobileNet v1 black box classifying the bundled sample
# images, then the shipped ImageNet masker writing their saliency masks and overlays to out/samples/
# (SAL_OUT overrides the folder).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SAL_BUILD_DIR:-$ROOT/build}"
bash "$ROOT/scripts/install-deps.sh"
bash "$ROOT/scripts/build.sh" "$BUILD" ${SAL_CMAKE_ARGS:-}
"$BUILD/sal_selfcheck"
"$BUILD/sal_classify" --weights "$ROOT/weights/mobilenet_v1_0.75_224.safetensors" "$ROOT"/samples/*.JPEG
OUT="${SAL_OUT:-$ROOT/out/samples}"
"$BUILD/sal_mask" --masker "$ROOT/weights/mobilenet_v1_0.75_224_masker.safetensors" --out "$OUT" "$ROOT"/samples/*.JPEG
echo "masks and overlays: $OUT"
