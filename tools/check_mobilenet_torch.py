#!/usr/bin/python3
"""Checks the converted MobileNet v1 0.75 without our C++ engine: builds the network in
PyTorch from weights/mobilenet_v1_0.75_224.safetensors (tools/reference_models.py), runs
it on the first N images of imagenet-val (227x227 JPEGs resized to 224) and reports top-1
and top-5 against annotations.tsv for several input conventions, which confirms the
"input_range" metadata. The network is fairly robust to input scale, so it also
compares the batch statistics of conv1's output with conv1_bn's stored running
mean/variance: the convention used in training matches them. A tool, not a CI test (it needs ../shared/data).

  /usr/bin/python3 tools/check_mobilenet_torch.py [--count 200]
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402
from reference_models import MobileNetV1, load_converted, tf_same_pad  # noqa: E402

REPO = os.path.dirname(HERE)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

# Candidate input conventions, applied to RGB float pixels in [0, 255].
CONVENTIONS = {
    "minus1_1 (x/127.5-1)": lambda x: x / 127.5 - 1.0,
    "0_1 + ImageNet mean/std": lambda x: (x / 255.0 - MEAN) / STD,
    "0_1 plain": lambda x: x / 255.0,
}


def load_images(data_dir, count, size):
    """[N,3,size,size] float RGB in [0,255] (bilinear, align_corners=False, no antialias)
    and the labels of the first `count` rows of annotations.tsv."""
    rows = []
    with open(os.path.join(data_dir, "annotations.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            file, label = line.split("\t")[:2]
            rows.append((file, int(label)))
    rows = rows[:count]
    batch = []
    for file, _ in rows:
        with Image.open(os.path.join(data_dir, "images", file)) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
        x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)
        batch.append(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False))
    return torch.cat(batch), torch.tensor([l for _, l in rows])


def bn_stat_match(model, x):
    """How well conv1's output statistics on x match conv1_bn's running stats: mean
    |batch mean - running mean| / running std, and the median batch var / running var,
    over channels with non-negligible running variance."""
    bn = model.conv1_bn
    z = model.conv1(tf_same_pad(x, 3, 2))
    keep = bn.running_var > 1e-3
    mean_err = ((z.mean((0, 2, 3)) - bn.running_mean) / bn.running_var.sqrt())[keep].abs().mean()
    var_ratio = (z.var((0, 2, 3)) / bn.running_var)[keep].median()
    return mean_err.item(), var_ratio.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=os.path.join(REPO, "weights", "mobilenet_v1_0.75_224.safetensors"))
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "imagenet-val"))
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tensors, meta = safetensors_io.read(args.weights)
    model = load_converted(MobileNetV1(bn_eps=float(meta["bn_eps"])), tensors)
    t0 = time.time()
    images, labels = load_images(args.data, args.count, int(meta["input_size"]))
    print(f"{len(labels)} images from {args.data}, {len(set(labels.tolist()))} classes, "
          f"metadata input_range={meta['input_range']}")
    for name, fn in CONVENTIONS.items():
        with torch.no_grad():
            logits = torch.cat([model(fn(images[i:i + 50])) for i in range(0, len(images), 50)])
        nll = F.cross_entropy(logits, labels).item()  # finer than top-1 on few images
        top5 = logits.topk(5, dim=1).indices
        top1 = (top5[:, 0] == labels).float().mean().item()
        top5 = (top5 == labels[:, None]).any(dim=1).float().mean().item()
        with torch.no_grad():
            mean_err, var_ratio = bn_stat_match(model, fn(images))
        print(f"  {name:26s} top-1 {100 * top1:5.1f}%  top-5 {100 * top5:5.1f}%  NLL {nll:.3f}  "
              f"conv1 stats vs conv1_bn: mean err {mean_err:.3f} std, var ratio {var_ratio:.2f}")
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
