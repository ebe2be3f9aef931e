#!/usr/bin/env python3
"""Compares sal_mask outputs (`--raw npy`) of the same images: masks and the black box's answers.

    /usr/bin/python3 tools/compare_masks.py REF OTHER [OTHER...]

For each OTHER folder against REF: the largest and mean |mask difference|, the relative L2 difference of all
masks, how many pixels fall on the other side of 0.5, and from masks.jsonl how many top-1 classes changed and
the largest |probability difference|. Every REF mask must have its OTHER twin (same file name); an image missing
on either side is an error naming it.
"""

import glob
import json
import os
import sys

import numpy as np


def records(folder):
    path = os.path.join(folder, "masks.jsonl")
    with open(path) as f:
        return {r["image"]: r for r in map(json.loads, f)}


def compare(ref, other):
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ref, "*_mask.npy")))
    if not names:
        raise FileNotFoundError(f"{ref}: no *_mask.npy (sal_mask --raw npy)")
    worst = total = count = across = sq_diff = sq_ref = 0.0
    for name in names:
        o = os.path.join(other, name)
        if not os.path.exists(o):
            raise FileNotFoundError(f"{o}: missing (its twin is in {ref})")
        a = np.load(os.path.join(ref, name)).astype(np.float64)
        b = np.load(o).astype(np.float64)
        if a.shape != b.shape:
            raise ValueError(f"{name}: shapes {a.shape} and {b.shape}")
        d = np.abs(a - b)
        worst = max(worst, float(d.max()))
        total += float(d.sum())
        count += d.size
        across += int(np.sum((a > 0.5) != (b > 0.5)))
        sq_diff += float(((a - b) ** 2).sum())
        sq_ref += float((a ** 2).sum())
    ra, rb = records(ref), records(other)
    if ra.keys() != rb.keys():
        raise ValueError(f"{ref} and {other}: masks.jsonl lists different images")
    top1 = sum(ra[k]["top1"] != rb[k]["top1"] for k in ra)
    dprob = max(abs(ra[k]["prob"] - rb[k]["prob"]) for k in ra)
    return (f"{other} vs {ref}: {len(names)} masks, max |diff| {worst:.3g}, mean {total / count:.3g}, relative L2 "
            f"{np.sqrt(sq_diff / sq_ref):.3g}, pixels across 0.5 {int(across)} of {int(count)} "
            f"({100 * across / count:.4f}%); top-1 changed {top1} of {len(ra)}, max |prob diff| {dprob:.3g}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    try:
        for other in argv[1:]:
            print(compare(argv[0], other))
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
