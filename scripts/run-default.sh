#!/usr/bin/env bash
# The README's main command: install dependencies, build, and run the main job on the embedded
# default. Until the trained masker lands this is the engine self-check (build facts, a small
# CNN trained on synthetic data through the op API, a checkpoint round trip), then the bundled
# MobileNet v1 black box classifying the bundled sample images.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SAL_BUILD_DIR:-$ROOT/build}"
bash "$ROOT/scripts/install-deps.sh"
bash "$ROOT/scripts/build.sh" "$BUILD" ${SAL_CMAKE_ARGS:-}
"$BUILD/sal_selfcheck"
"$BUILD/sal_classify" --weights "$ROOT/weights/mobilenet_v1_0.75_224.safetensors" "$ROOT"/samples/*.JPEG
