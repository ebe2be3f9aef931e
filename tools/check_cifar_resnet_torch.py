#!/usr/bin/python3
"""Checks a converted CIFAR-10 ResNet (weights/cifar_resnet20.safetensors by default)
without our C++ engine: builds it in PyTorch (tools/reference_models.py), runs it on
CIFAR-10 test JPEGs from test.tar and reports top-1. The tar is sorted by class, so the
default takes the first --per-class images of every class (100 x 10 = 1,000) instead of
the first 1,000 entries, which would all be airplanes. A tool, not a CI test.

  /usr/bin/python3 tools/check_cifar_resnet_torch.py [--per-class 100] [--weights ...]
"""

import argparse
import io
import json
import os
import sys
import tarfile
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402
from reference_models import CifarResNet, load_converted  # noqa: E402

REPO = os.path.dirname(HERE)


def load_test_images(tar_path, class_names, per_class):
    """[N,3,32,32] RGB in [0,1] and labels: the first `per_class` entries of each class."""
    index = {c: i for i, c in enumerate(class_names)}
    taken = {c: 0 for c in class_names}
    images, labels = [], []
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            cls = member.name.split("/")[0]
            if taken[cls] >= per_class:
                continue
            taken[cls] += 1
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                images.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
            labels.append(index[cls])
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=os.path.join(REPO, "weights", "cifar_resnet20.safetensors"))
    ap.add_argument("--tar", default=os.path.join(REPO, "..", "shared", "data", "cifar10", "test.tar"))
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tensors, meta = safetensors_io.read(args.weights)
    classes = json.loads(meta["class_names"])
    depth = int(meta["arch"].replace("cifar_resnet", ""))
    model = load_converted(CifarResNet(depth, len(classes)), tensors)
    mean = torch.tensor([float(v) for v in meta["mean"].split(",")]).view(1, 3, 1, 1)
    std = torch.tensor([float(v) for v in meta["std"].split(",")]).view(1, 3, 1, 1)

    t0 = time.time()
    x, labels = load_test_images(args.tar, classes, args.per_class)
    with torch.no_grad():
        for name, norm in (("0_1 + mean/std (metadata)", lambda v: (v - mean) / std),
                           ("0_1 plain", lambda v: v)):
            logits = torch.cat([model(norm(x[i:i + 500])) for i in range(0, len(x), 500)])
            acc = (logits.argmax(1) == labels).float().mean().item()
            print(f"{meta['arch']} on {len(labels)} test images: {name:26s} top-1 {100 * acc:.2f}%")
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
