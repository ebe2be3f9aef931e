#!/usr/bin/python3
"""Writes PyTorch golden fixtures for the engine's model tests (CI runs this; Python is a
tool here, never a runtime dependency of the engine).

For each network, with torch.manual_seed(SEED) random weights (nothing is downloaded):
  OUT/<arch>.weights.safetensors  the weights, converted by the same code path as
                                  convert_weights.py (torchvision / cifar-resnet)
  OUT/<arch>.golden.safetensors   "input" [2,3,H,W] (seeded, already normalised: it is
                                  exactly what the network's first layer sees), "logits",
                                  "feat4", "feat8", "feat16", "feat32" (feature maps at
                                  1/4..1/32 of the input; CIFAR: "feat1", "feat2", "feat4"),
                                  "input_grad" = d(sum_n logits[n, c_n]) / d input with
                                  c_n = n*7 % num_classes, weights frozen, eval mode.
Networks and feature modules (also in each golden file's metadata "feature_modules"):
  resnet50   112x112: feat4..feat32 = layer1 (256ch 28x28), layer2 (512, 14), layer3
             (1024, 7), layer4 (2048, 4: 7 -> 4 exercises odd-size stride-2 convs)
  googlenet  112x112, transform_input=False, aux_logits=False, init_weights=True:
             feat4 = conv3 (192ch 28x28; maxpool2's output is 1/8, not 1/4), feat8 =
             inception3b (480, 14), feat16 = inception4e (832, 7), feat32 = inception5b
             (1024, 4). At 112 every ceil_mode max-pool rounds up (56->28, 28->14, 14->7,
             and maxpool4 7->4 with a partial last window), which 224 only partly does.
  alexnet    224x224: feat4 = features.1 (ReLU after conv1, 64ch 55x55), feat8 =
             features.4 (ReLU after conv2, 192, 27), feat16 = features.11 (ReLU after
             conv5, 256, 13), feat32 = features.12 (last max-pool, 256, 6)
  cifar_resnet20  32x32, tools/reference_models.CifarResNet (same keys as cifar-resnet):
             feat1 = layer1 (16ch 32x32), feat2 = layer2 (32, 16), feat4 = layer3 (64, 8)
  mobilenet_v1_0.75_224 (only if weights/mobilenet_v1_0.75_224.safetensors exists): the
             REAL converted weights (no weights file is written), 224x224, input in
             [-1,1]: feat4 = conv_pw_3 (96ch 56x56), feat8 = conv_pw_5 (192, 28), feat16 =
             conv_pw_11 (384, 14), feat32 = conv_pw_13 (768, 7), all after BN + ReLU6.
Random BN layers would be identities (weight 1, bias 0, mean 0, var 1), so every
BatchNorm gets a seeded random affine (weight U(0.5,1.5), bias N(0,0.1)) and running
stats calibrated on a seeded batch in train mode (cumulative average): features stay
well scaled and BN is really tested. AlexNet has no BN and PyTorch's default init
(std 1/sqrt(3 fan_in)) shrinks every layer (logits ~1e-2, input_grad ~1e-6), so its
conv/linear weights are multiplied by sqrt(6), i.e. He (ReLU) scaling.
Float32, 1 thread, deterministic algorithms: the output is byte-identical run to run.

  /usr/bin/python3 tools/make_golden_fixtures.py --out build/fixtures --seed 0
"""

import argparse
import hashlib
import json
import os
import sys
import time

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert_weights  # noqa: E402
import safetensors_io  # noqa: E402
from reference_models import CifarResNet, MobileNetV1, load_converted  # noqa: E402

REPO = os.path.dirname(HERE)
BATCH = 2
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

# arch -> (input size, {fixture name: module name whose output it is})
TORCHVISION_FIXTURES = {
    "resnet50": (112, {"feat4": "layer1", "feat8": "layer2", "feat16": "layer3", "feat32": "layer4"}),
    "googlenet": (112, {"feat4": "conv3", "feat8": "inception3b", "feat16": "inception4e",
                        "feat32": "inception5b"}),
    "alexnet": (224, {"feat4": "features.1", "feat8": "features.4", "feat16": "features.11",
                      "feat32": "features.12"}),
}


def imagenet_like_input(gen, n, size):
    """Seeded uniform [0,1] pixels normalised with the ImageNet mean/std."""
    return (torch.rand(n, 3, size, size, generator=gen) - IMAGENET_MEAN) / IMAGENET_STD


def randomize_batchnorm(model, gen, calib_input):
    """Seeded random BN affine, then running stats = statistics of calib_input."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration pass
        model.train()
        model(calib_input)
        for bn in bns:
            bn.momentum = 0.1
    model.eval()


def he_rescale(model):
    """Default-initialised conv/linear weights (std 1/sqrt(3 fan_in)) -> std sqrt(2/fan_in)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(6 ** 0.5)


def run_golden(model, x, feature_modules, num_classes):
    """Forward + input gradient; returns the golden tensors (float32 numpy)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    modules = dict(model.named_modules())
    captured = {}
    hooks = [modules[m].register_forward_hook(
        lambda mod, inp, out, key=key: captured.__setitem__(key, out.detach().clone()))
        for key, m in feature_modules.items()]
    x = x.clone().requires_grad_(True)
    logits = model(x)
    for h in hooks:
        h.remove()
    targets = torch.tensor([(n * 7) % num_classes for n in range(x.shape[0])])
    logits.gather(1, targets[:, None]).sum().backward()
    out = {"input": x.detach(), "logits": logits.detach()}
    out.update({k: captured[k] for k in feature_modules})
    out["input_grad"] = x.grad.detach()
    return {k: v.contiguous().numpy() for k, v in out.items()}


def golden_metadata(arch, seed, size, feature_modules, extra=None):
    meta = {
        "arch": arch, "format_version": convert_weights.FORMAT_VERSION, "layout": "NCHW",
        "seed": str(seed), "input_size": str(size), "batch": str(BATCH),
        "feature_modules": json.dumps(feature_modules),
        "input_grad_of": "sum_n logits[n, c_n], c_n = n*7 % num_classes; weights frozen, eval mode",
        "input_note": "'input' is the network input as fed to the first layer (already normalised)",
        "torch_version": torch.__version__,
        "generator": "tools/make_golden_fixtures.py",
    }
    meta.update(extra or {})
    return meta


def check_reload(path, build, x, logits):
    """The written weights must reproduce the logits exactly when loaded back."""
    tensors, _ = safetensors_io.read(path)
    model = load_converted(build(), tensors)
    with torch.no_grad():
        again = model(torch.from_numpy(x))
    if not torch.equal(again, torch.from_numpy(logits)):
        raise RuntimeError(f"{path}: reloaded weights give different logits")


def make_torchvision(arch, seed, out):
    size, feats = TORCHVISION_FIXTURES[arch]
    torch.manual_seed(seed)
    kwargs = {"transform_input": False, "aux_logits": False, "init_weights": True} \
        if arch == "googlenet" else {}
    model = convert_weights.build_torchvision_model(arch, **kwargs)
    if arch == "alexnet":
        he_rescale(model)
    gen = torch.Generator().manual_seed(seed + 1)
    randomize_batchnorm(model, gen, imagenet_like_input(gen, 4, size))
    x = imagenet_like_input(gen, BATCH, size)

    tensors, wmeta = convert_weights.convert_torchvision_state_dict(
        arch, model.state_dict(), transform_input=False,
        source=f"tools/make_golden_fixtures.py: torchvision {arch}, weights=None, seed {seed}, "
               f"random BN affine + calibrated running stats, alexnet: weights x sqrt(6)")
    wpath = os.path.join(out, f"{arch}.weights.safetensors")
    safetensors_io.write(wpath, tensors, wmeta)
    golden = run_golden(model, x, feats, 1000)
    safetensors_io.write(os.path.join(out, f"{arch}.golden.safetensors"), golden,
                         golden_metadata(arch, seed, size, feats, {"num_classes": "1000",
                                                                   "transform_input": "0"}))
    check_reload(wpath, lambda: convert_weights.build_torchvision_model(arch, **kwargs),
                 golden["input"], golden["logits"])


def make_cifar(seed, out):
    arch, depth, size = "cifar_resnet20", 20, 32
    torch.manual_seed(seed)
    model = CifarResNet(depth)
    gen = torch.Generator().manual_seed(seed + 1)
    randomize_batchnorm(model, gen, imagenet_like_input(gen, 8, size))
    x = imagenet_like_input(gen, BATCH, size)
    tensors, wmeta = convert_weights.convert_cifar_state_dict(
        depth, model.state_dict(),
        source=f"tools/make_golden_fixtures.py: reference_models.CifarResNet({depth}), seed {seed}, "
               f"random BN affine + calibrated running stats")
    wpath = os.path.join(out, f"{arch}.weights.safetensors")
    safetensors_io.write(wpath, tensors, wmeta)
    feats = {k: m for k, m in CifarResNet.FEATURES.items()}
    golden = run_golden(model, x, feats, 10)
    safetensors_io.write(os.path.join(out, f"{arch}.golden.safetensors"), golden,
                         golden_metadata(arch, seed, size, feats, {"num_classes": "10"}))
    check_reload(wpath, lambda: CifarResNet(depth), golden["input"], golden["logits"])


def make_mobilenet(seed, out, weights_path):
    arch, size = "mobilenet_v1_0.75_224", 224
    tensors, meta = safetensors_io.read(weights_path)
    model = load_converted(MobileNetV1(bn_eps=float(meta["bn_eps"])), tensors)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(BATCH, 3, size, size, generator=gen) * 2 - 1  # the x/127.5-1 range
    with open(weights_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()

    # MobileNetV1 computes its features itself: wrap them as module outputs for run_golden.
    class Wrapped(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.taps = nn.ModuleDict({k: nn.Identity() for k in MobileNetV1.FEATURES})

        def forward(self, x):
            logits, feats = self.net.forward_features(x)
            for k, v in feats.items():
                self.taps[k](v)
            return logits

    taps = {k: f"taps.{k}" for k in MobileNetV1.FEATURES}
    golden = run_golden(Wrapped(model), x, taps, 1000)
    safetensors_io.write(os.path.join(out, f"{arch}.golden.safetensors"), golden,
                         golden_metadata(arch, seed, size, dict(MobileNetV1.FEATURES), {
                             "num_classes": "1000",
                             "weights_file": "weights/mobilenet_v1_0.75_224.safetensors",
                             "weights_sha256": digest,
                             "feature_note": "outputs of conv_pw_i after BN + ReLU6"}))


ALL = ["resnet50", "googlenet", "alexnet", "cifar_resnet20", "mobilenet_v1_0.75_224"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", choices=ALL, help="a subset of the fixtures")
    ap.add_argument("--mobilenet-weights",
                    default=os.path.join(REPO, "weights", "mobilenet_v1_0.75_224.safetensors"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    for arch in args.only or ALL:
        t0 = time.time()
        if arch in TORCHVISION_FIXTURES:
            make_torchvision(arch, args.seed, args.out)
        elif arch == "cifar_resnet20":
            make_cifar(args.seed, args.out)
        elif os.path.isfile(args.mobilenet_weights):
            make_mobilenet(args.seed, args.out, args.mobilenet_weights)
        else:
            print(f"skipped {arch}: {args.mobilenet_weights} not found")
            continue
        print(f"{arch}: {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
