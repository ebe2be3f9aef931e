"""PyTorch reference implementations of the two non-torchvision networks, with module
names equal to the converted safetensors keys, so a converted file loads with
load_state_dict(strict) and nothing is renamed. Used by the accuracy checks and by
make_golden_fixtures.py; never by the engine.

  MobileNetV1     MobileNet v1 alpha 0.75 (TF.js/Keras names: conv1, conv1_bn, conv_dw_i,
                  conv_dw_i_bn, conv_pw_i, conv_pw_i_bn, conv_preds), TF "same" padding,
                  BN eps 1e-3, ReLU6, global average pool, conv_preds 1x1 with bias -> logits.
  CifarResNet     akamaster CIFAR ResNet 6n+2 (conv1, bn1, layer1..3.i.{conv1,bn1,conv2,bn2},
                  linear), option-A shortcuts, BN eps 1e-5.

forward(x) returns logits; forward_features(x) returns (logits, {name: feature map}).
"""

import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_weights import MOBILENET_DW_STRIDES, MOBILENET_PW_CHANNELS  # noqa: E402


def tf_same_pad(x, kernel, stride):
    """Pads NCHW x as TF/Keras padding='same' does: total = max((ceil(n/s)-1)*s + k - n, 0),
    split floor(total/2) before and the rest after (so stride 2 on an even size pads
    0 top/left and 1 bottom/right)."""
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad order: last dim first
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class MobileNetV1(nn.Module):
    # Feature maps at 1/4, 1/8, 1/16, 1/32 of the input: the last ReLU6 output of each scale.
    FEATURES = {"feat4": "conv_pw_3", "feat8": "conv_pw_5", "feat16": "conv_pw_11", "feat32": "conv_pw_13"}

    def __init__(self, num_classes=1000, bn_eps=1e-3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 3, stride=2, bias=False)
        self.conv1_bn = nn.BatchNorm2d(24, eps=bn_eps)
        self.blocks = []  # (index, depthwise stride)
        c_in = 24
        for i, (c_out, s) in enumerate(zip(MOBILENET_PW_CHANNELS, MOBILENET_DW_STRIDES), start=1):
            setattr(self, f"conv_dw_{i}", nn.Conv2d(c_in, c_in, 3, stride=s, groups=c_in, bias=False))
            setattr(self, f"conv_dw_{i}_bn", nn.BatchNorm2d(c_in, eps=bn_eps))
            setattr(self, f"conv_pw_{i}", nn.Conv2d(c_in, c_out, 1, bias=False))
            setattr(self, f"conv_pw_{i}_bn", nn.BatchNorm2d(c_out, eps=bn_eps))
            self.blocks.append((i, s))
            c_in = c_out
        self.conv_preds = nn.Conv2d(c_in, num_classes, 1, bias=True)

    def forward_features(self, x):
        feats = {}
        x = F.relu6(self.conv1_bn(self.conv1(tf_same_pad(x, 3, 2))))
        for i, s in self.blocks:
            dw = getattr(self, f"conv_dw_{i}")
            x = F.relu6(getattr(self, f"conv_dw_{i}_bn")(dw(tf_same_pad(x, 3, s))))
            x = F.relu6(getattr(self, f"conv_pw_{i}_bn")(getattr(self, f"conv_pw_{i}")(x)))
            feats[f"conv_pw_{i}"] = x
        x = x.mean(dim=(2, 3), keepdim=True)  # global average pool (dropout: eval no-op)
        logits = self.conv_preds(x).flatten(1)
        return logits, {k: feats[m] for k, m in self.FEATURES.items()}

    def forward(self, x):
        return self.forward_features(x)[0]


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.option_a = stride != 1 or in_planes != planes
        self.pad = planes // 4

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.option_a:
            # Option A: even rows/cols, planes/4 zero channels on each side.
            x = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + x)


class CifarResNet(nn.Module):
    # Feature maps at 1/1, 1/2, 1/4 of the 32x32 input: outputs of layer1..layer3.
    FEATURES = {"feat1": "layer1", "feat2": "layer2", "feat4": "layer3"}

    def __init__(self, depth=20, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for li, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{li}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)

    def forward_features(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        feats = {}
        for li in (1, 2, 3):
            x = getattr(self, f"layer{li}")(x)
            feats[f"layer{li}"] = x
        logits = self.linear(x.mean(dim=(2, 3)))
        return logits, {k: feats[m] for k, m in self.FEATURES.items()}

    def forward(self, x):
        return self.forward_features(x)[0]


def load_converted(model, tensors):
    """Loads a converted {name: numpy array} dict into `model` (strict: every key must
    match; BN num_batches_tracked, which the files do not carry, is the only exception)."""
    sd = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"converted weights do not fit: missing {missing}, unexpected {unexpected}")
    return model.eval()
