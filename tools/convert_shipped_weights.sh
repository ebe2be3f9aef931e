#!/usr/bin/env bash
# Reproduces the converted weights shipped in weights/ from ../shared/data in one command, and
# checks them byte for byte against the committed files.
#
#   tools/convert_shipped_weights.sh [out-dir]    (default: a temporary folder; "weights" overwrites them)
#
# Needs Debian's python3-torch (the CIFAR checkpoints are torch pickles). Exits non-zero when a
# source is missing or a produced file differs from the one in weights/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${SHARED_DATA:-$ROOT/../shared/data}"
OUT="${1:-$(mktemp -d)}"
PY=/usr/bin/python3
mkdir -p "$OUT"
"$PY" "$ROOT/tools/convert_weights.py" tfjs-mobilenet --model-dir "$DATA/mobilenet_v1_0.75_224" \
  --output "$OUT/mobilenet_v1_0.75_224.safetensors"
"$PY" "$ROOT/tools/convert_weights.py" cifar-resnet --depth 20 --input "$DATA/cifar10-resnet/resnet20-12fca82f.th" \
  --output "$OUT/cifar_resnet20.safetensors"
"$PY" "$ROOT/tools/convert_weights.py" cifar-resnet --depth 56 --input "$DATA/cifar10-resnet/resnet56-4bfd9763.th" \
  --output "$OUT/cifar_resnet56.safetensors"
status=0
for f in mobilenet_v1_0.75_224 cifar_resnet20 cifar_resnet56; do
  if cmp -s "$OUT/$f.safetensors" "$ROOT/weights/$f.safetensors"; then
    echo "same as weights/$f.safetensors ($(sha256sum "$OUT/$f.safetensors" | cut -c1-16)...)"
  else
    echo "DIFFERS from weights/$f.safetensors" >&2
    status=1
  fi
done
exit $status
