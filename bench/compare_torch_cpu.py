#!/usr/bin/python3
"""PyTorch CPU reference for bench/model_cpu_bench.cpp: forward images/s of the same networks
at the same batch and input size, eval mode under torch.no_grad(), with the same thread count.

  resnet50      torchvision.models.resnet50(weights=None) (speed does not depend on the values)
  mobilenet_v1  tools/reference_models.MobileNetV1 with weights/mobilenet_v1_0.75_224.safetensors
                (TF "same" padding via F.pad, as the reference network is written)

Each network: untimed warm-up forwards for --warmup seconds (at least 2), then forwards until
--min-time seconds have passed; the result is batch * iterations / elapsed wall time (the
engine's benchmark reports the same quantity as items_per_second).

  /usr/bin/python3 bench/compare_torch_cpu.py --threads 2 --batch 8 --min-time 5 [--json]
"""

import argparse
import json
import os
import sys
import time

import torch
import torchvision

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import safetensors_io  # noqa: E402
from reference_models import MobileNetV1, load_converted  # noqa: E402

NETS = ["resnet50", "mobilenet_v1"]


def build(name, weights):
    if name == "resnet50":
        return torchvision.models.resnet50(weights=None)
    tensors, meta = safetensors_io.read(weights)
    return load_converted(MobileNetV1(bn_eps=float(meta["bn_eps"])), tensors)


def images_per_second(model, batch, size, min_time, warmup):
    model.eval()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        warm, start = 0, time.perf_counter()
        while warm < 2 or time.perf_counter() - start < warmup:  # oneDNN primitive caches, allocator
            y = model(x)
            warm += 1
        if not torch.isfinite(y).all():
            raise RuntimeError("non-finite logits")
        iters, start = 0, time.perf_counter()
        while True:
            model(x)
            iters += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
    return batch * iters / elapsed, iters


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--min-time", type=float, default=5.0, help="seconds of timed forwards per network")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of untimed forwards first (at least 2)")
    ap.add_argument("--nets", nargs="+", choices=NETS, default=NETS)
    ap.add_argument("--mobilenet-weights", default=os.path.join(REPO, "weights", "mobilenet_v1_0.75_224.safetensors"))
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    results = {}
    for name in args.nets:
        ips, iters = images_per_second(build(name, args.mobilenet_weights), args.batch, args.size, args.min_time,
                                        args.warmup)
        results[name] = {"images_per_second": ips, "iterations": iters}
        if not args.json:
            print(f"torch {torch.__version__} {name}: {ips:.2f} images/s (batch {args.batch}, {args.size}x{args.size}, "
                  f"{args.threads} threads, {iters} iterations)")
    if args.json:
        print(json.dumps({"torch_version": torch.__version__, "threads": torch.get_num_threads(),
                          "batch": args.batch, "size": args.size, "results": results}))


if __name__ == "__main__":
    main()
