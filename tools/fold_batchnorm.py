#!/usr/bin/env python3
"""Folds every convolution's batch norm into the convolution's weights in a safetensors file.

    /usr/bin/python3 tools/fold_batchnorm.py --eps 1e-5 weights/cifar_resnet20.safetensors /tmp/fold/cifar_resnet20.safetensors

The same arithmetic as the CUDA fold that Auto may pick for conv2d_bn_act (cuda/conv_bn_fold.h), per output
channel k: s = gamma / sqrt(var + eps) in double rounded to f32, w' = w * s in f32, bias = beta - mean * s in
double rounded to f32. The batch norm left behind is the identity on the engine's CPU path (gamma and var
chosen so that its s is exactly 1.0f, mean 0) with the folded bias as its beta, so the CPU's conv2d_bn_act on the
output file computes conv(x, w') + bias in f32: what the fold computes on a GPU, without a GPU. Used to measure
what the fold does to logits and masks (bench/RESULTS.md, with tools/compare_masks.py).

A batch norm `P.bnN` / `P.bn` pairs with the convolution `P.convN.weight` / `P.conv.weight`, and `P.N` (a
torchvision Sequential's batch norm) with `P.<N-1>.weight`; a batch norm with no 4-D convolution weight there is
an error naming it (a batch norm after something else, e.g. a transposed convolution, cannot be folded this way).
Tensors and metadata otherwise unchanged, in the input's order; written atomically (tools/safetensors_io.py).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


class FoldError(ValueError):
    """A batch norm that cannot be folded; the message names it and the file."""


def conv_of(bn_prefix, tensors):
    """The name of the convolution weight a batch norm follows, or None."""
    head, _, last = bn_prefix.rpartition(".")
    lead = head + "." if head else ""
    candidates = [lead + last.replace("bn", "conv", 1) + ".weight"] if last.startswith("bn") else []
    if last.isdigit() and int(last) > 0:
        candidates.append(lead + str(int(last) - 1) + ".weight")
    for name in candidates:
        if name in tensors and tensors[name].ndim == 4:
            return name
    return None


def _neighbours(x, n=4):
    """x and its n f32 neighbours on either side."""
    out, up, down = [x], x, x
    for _ in range(n):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
        out += [up, down]
    return out


def identity_statistics(eps):
    """(gamma, var) in f32 whose scale, as the engine computes it, is exactly 1.0f: gamma 1 with var near 1 - eps,
    else gamma near sqrt(1 + eps) with var 1 (one of the two always lands for the usual eps)."""
    candidates = [(np.float32(1), v) for v in _neighbours(np.float32(1.0 - eps))]
    candidates += [(g, np.float32(1)) for g in _neighbours(np.float32(np.sqrt(1.0 + eps)))]
    for g, v in candidates:
        if v > 0 and np.float32(np.float64(g) / np.sqrt(np.float64(v) + eps)) == np.float32(1.0):
            return g, v
    raise FoldError(f"no f32 (gamma, var) gives a scale of exactly 1 for eps {eps}")


def fold(tensors, eps, path="<tensors>"):
    """Folds in place every batch norm of `tensors` (name -> f32 array); returns the folded batch norms' names."""
    done = []
    for name in list(tensors):
        if not name.endswith(".running_var"):
            continue
        p = name[: -len(".running_var")]
        conv = conv_of(p, tensors)
        if conv is None:
            raise FoldError(f"{path}: batch norm {p} follows no convolution weight this tool can find")
        w = tensors[conv]
        gamma, beta = tensors[p + ".weight"], tensors[p + ".bias"]
        mean, var = tensors[p + ".running_mean"], tensors[p + ".running_var"]
        if w.shape[0] != gamma.shape[0]:
            raise FoldError(f"{path}: {conv} has {w.shape[0]} output channels, batch norm {p} {gamma.shape[0]}")
        s = (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)).astype(np.float32)
        tensors[conv] = (w * s[:, None, None, None]).astype(np.float32)
        tensors[p + ".bias"] = (beta.astype(np.float64) - mean.astype(np.float64) * s.astype(np.float64)).astype(
            np.float32)
        one_gamma, one_var = identity_statistics(eps)
        tensors[p + ".weight"] = np.full_like(gamma, one_gamma)
        tensors[p + ".running_mean"] = np.zeros_like(mean)
        tensors[p + ".running_var"] = np.full_like(var, one_var)
        done.append(p)
    return done


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eps", type=float, required=True, help="the batch norms' epsilon (the network's bn_eps)")
    ap.add_argument("input")
    ap.add_argument("output")
    a = ap.parse_args(argv)
    try:
        tensors, meta = safetensors_io.read(a.input)
        tensors = {k: np.array(v) for k, v in tensors.items()}
        for k, v in tensors.items():
            if v.dtype != np.float32:
                raise FoldError(f"{a.input}: tensor {k} is {v.dtype}, expected float32")
        done = fold(tensors, a.eps, a.input)
        safetensors_io.write(a.output, tensors, meta)
    except (FoldError, safetensors_io.SafetensorsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{a.output}: {len(done)} batch norms folded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
