#!/usr/bin/env python3
"""Averages masker files of one training run (checkpoint averaging, "stochastic weight averaging").

    /usr/bin/python3 tools/average_maskers.py --out masker-avg.safetensors runs/x-snaps/masker-{100,200,300}.safetensors

A masker file (layers/masker_io.h, written by sal_train) holds the masker's tensors and metadata that
rebuild its configuration. Every tensor of the output is the mean of the inputs' (summed in float64,
stored as float32): the trainable weights and the batch-norm running statistics alike (those are
averages of batch statistics themselves, and per-checkpoint they are the noisiest part of a small-batch
run). Averaging only makes sense along one run, where the weights stay in one basin; the tool checks
what it can: the same tensor names, order, shapes and dtype (F32), and the same metadata except
`training`. The output's `training` starts with a line naming every input with its sha256, followed by
the first input's training text. Written atomically (tools/safetensors_io.py).

Why: with batch 8 on 1,000 images the ImageNet masker's held-out saliency metric moves by +-0.05 from
one checkpoint to the next (docs/results.md); the mean of a window of checkpoints is steadier than any
one of them.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from convert_weights import sha256_file  # noqa: E402 (torch is imported there only by the converters)


class AverageError(Exception):
    pass


def average(paths):
    """(dict name -> float32 array, metadata) of the mean of the masker files `paths`."""
    if len(paths) < 2:
        raise AverageError("give at least two masker files to average")
    first_tensors, first_meta = safetensors_io.read(paths[0])
    if "training" not in first_meta:
        raise AverageError(f"{paths[0]}: no 'training' metadata: not a masker file written by sal_train")
    names = list(first_tensors)
    sums = {}
    for name in names:
        t = first_tensors[name]
        if t.dtype != np.float32:
            raise AverageError(f"{paths[0]}: tensor '{name}' is {t.dtype}, expected float32")
        sums[name] = t.astype(np.float64)
    for path in paths[1:]:
        tensors, meta = safetensors_io.read(path)
        if list(tensors) != names:
            missing = sorted(set(names) - set(tensors))
            extra = sorted(set(tensors) - set(names))
            raise AverageError(f"{path}: other tensors than {paths[0]} (missing {missing[:5]}, extra {extra[:5]}"
                               f"{', or another order' if not missing and not extra else ''})")
        for key in sorted(set(meta) | set(first_meta)):
            if key != "training" and meta.get(key) != first_meta.get(key):
                raise AverageError(f"{path}: metadata '{key}' is {meta.get(key)!r}, {paths[0]} has "
                                   f"{first_meta.get(key)!r} (not the same masker configuration)")
        for name in names:
            t = tensors[name]
            if t.shape != sums[name].shape or t.dtype != np.float32:
                raise AverageError(f"{path}: tensor '{name}' is {t.dtype} {list(t.shape)}, {paths[0]} has "
                                   f"float32 {list(sums[name].shape)}")
            sums[name] += t
    n = float(len(paths))
    out = {name: (sums[name] / n).astype(np.float32) for name in names}
    meta = dict(first_meta)
    sources = " ".join(f"{p} (sha256 {sha256_file(p)})" for p in paths)
    meta["training"] = f"average of {len(paths)} maskers: {sources}\n{first_meta['training']}"
    return out, meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output masker file (.safetensors)")
    ap.add_argument("inputs", nargs="+", help="masker files of one run (sal_train's masker.safetensors snapshots)")
    args = ap.parse_args(argv)
    try:
        tensors, meta = average(args.inputs)
        safetensors_io.write(args.out, tensors, meta)
    except (AverageError, safetensors_io.SafetensorsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.out}: the mean of {len(args.inputs)} maskers ({len(tensors)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
