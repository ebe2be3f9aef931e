#!/usr/bin/python3
"""The masker (layers/masker.cpp) and its training step in PyTorch, timed against our
build/masker_bench in the same run: images/s for inference at batch 1 and N and for the training
step at batch N, eager and torch.compile (when torch has it), and with --channels-last eager in NHWC
(channels_last: the memory format PyTorch advises for cuDNN's tensor-core kernels; ours is NCHW throughout), and
the ratios ours / PyTorch. On CUDA
also our inference and training step replayed from captured CUDA graphs (infer_graph_b*, train_graph_b*:
masker_bench's masker_infer_graph and masker_train_graph, the training step as sal_train runs it by
default), against the same PyTorch numbers.

Networks (the encoder is also the black box, as in tools/sal_train.cpp):
  mobilenet_v1       tools/reference_models.MobileNetV1 with weights/mobilenet_v1_0.75_224.safetensors,
                     decoder of MaskerConfig::mobilenet_v1()
  resnet50_released  torchvision resnet50(weights=None) (random weights: speed does not depend on them),
                     decoder of MaskerConfig::released_resnet50() (pixel shuffle, 256/128/64)
  resnet50_paper     the same encoder, MaskerConfig::paper_resnet50() (transposed convs, 768/384/192, 3 blocks)

The decoder mirrors masker.cpp module for module, with its parameter names (a masker file loads
with load_state_dict, strict): the feature filter z = sum_c X * C_s, Y = X * sigmoid(z); per
upsampler either conv 3x3 -> 4w + BN + ReLU + pixel_shuffle(2) or ConvTranspose2d 4x4/2 pad 1 + BN +
ReLU, the optional 1x1 skip conv, concat with the encoder feature, torchvision Bottleneck blocks
(planes w/4, expansion 4: layers/resnet.h's block), the 1x1 head with bias, |c0| / (|c0| + |c1| + eps)
and bilinear upsampling (align_corners=False) to the image size.

The training step: masker forward (decoder BN in training mode, frozen encoder in eval mode and
without gradients), the released loss as sal_train uses it (area weight 4, smoothness 0.5 with border
0.3, preserver 0.3 / margin 1, destroyer 1 / margin 5, selector 1, 30% fake selectors), then
backward and Adam (lr 1e-3) on the decoder. Evidence removal is the same ops as
layers/saliency_objective.cpp (blur with probability 0.5 (sigma 11, 55 taps, reflect padding) or a
constant colour, plus noise 0.11; the preserved image gets noise 0.03; both in the black box's
normalised units), simplified in that the random draws are made on the device with torch's
generator instead of on the host in a fixed order.

Before timing, the agreement check: build/masker_bench --dump_agreement writes seeded random masker
files (batch-norm statistics included) and each model's inputs, feature maps and masks; the same
parameters loaded here must give masks within 1e-4 (max abs) of ours on those 2 samples through the
decoder on our feature maps (every model), and within 1e-3 through the whole mobilenet_v1 masker
(PyTorch's encoder too; its rounding differences pass through 27 layers; about 1e-4 seen).

  /usr/bin/python3 bench/compare_masker_torch.py --device cpu --threads 2 --batch 8 --min-time 2
  python3 bench/compare_masker_torch.py --device cuda --batch 64 --min-time 5      (PyTorch 2.x)
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import Bottleneck

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import safetensors_io  # noqa: E402
from reference_models import MobileNetV1, load_converted  # noqa: E402

MODELS = ["mobilenet_v1", "resnet50_released", "resnet50_paper"]
PRESETS = {  # MaskerConfig presets of layers/masker.cpp
    "mobilenet_v1": dict(feature_channels=[96, 192, 384, 768], widths=[256, 128, 64], bottlenecks=1,
                         upsample="pixel_shuffle"),
    "resnet50_released": dict(feature_channels=[256, 512, 1024, 2048], widths=[256, 128, 64], bottlenecks=1,
                              upsample="pixel_shuffle"),
    "resnet50_paper": dict(feature_channels=[256, 512, 1024, 2048], widths=[768, 384, 192], bottlenecks=3,
                           upsample="conv_transpose"),
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- the masker

class Upsampler(nn.Module):
    def __init__(self, cin, width, skip_in, bottlenecks, mode, skip_channels, bn_eps):
        super().__init__()
        self.mode = mode
        if mode == "conv_transpose":
            self.tconv = nn.ConvTranspose2d(cin, width, 4, stride=2, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(width, eps=bn_eps)
        else:
            self.conv = nn.Conv2d(cin, 4 * width, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(4 * width, eps=bn_eps)
        self.skip = None
        if skip_channels > 0:
            self.skip = nn.Module()
            self.skip.conv = nn.Conv2d(skip_in, skip_channels, 1, bias=False)
            self.skip.bn = nn.BatchNorm2d(skip_channels, eps=bn_eps)
            skip_in = skip_channels
        bin_ = width + skip_in
        for b in range(bottlenecks):
            down = None
            if bin_ != width:
                down = nn.Sequential(nn.Conv2d(bin_, width, 1, bias=False), nn.BatchNorm2d(width, eps=bn_eps))
            blk = Bottleneck(bin_, width // 4, downsample=down, norm_layer=lambda c: nn.BatchNorm2d(c, eps=bn_eps))
            setattr(self, f"bottleneck{b}", blk)
            bin_ = width
        self.blocks = bottlenecks

    def forward(self, y, f):
        if self.mode == "conv_transpose":
            y = F.relu(self.bn(self.tconv(y)))
        else:
            y = F.pixel_shuffle(F.relu(self.bn(self.conv(y))), 2)
        if self.skip is not None:
            f = F.relu(self.skip.bn(self.skip.conv(f)))
        y = torch.cat([y, f], 1)
        for b in range(self.blocks):
            y = getattr(self, f"bottleneck{b}")(y)
        return y


class MaskerDecoder(nn.Module):
    """layers/masker.cpp's decoder; state_dict names are the masker file's without 'masker.'."""

    def __init__(self, feature_channels, widths, bottlenecks, upsample, num_classes=1000, skip_channels=0,
                 bn_eps=1e-5, mask_eps=1e-6):
        super().__init__()
        self.levels, self.mask_eps = len(feature_channels), mask_eps
        self.embedding = nn.Embedding(num_classes, feature_channels[-1])
        cin = feature_channels[-1]
        for i, w in enumerate(widths):
            setattr(self, f"up{i}", Upsampler(cin, w, feature_channels[self.levels - 2 - i], bottlenecks, upsample,
                                              skip_channels, bn_eps))
            cin = w if bottlenecks > 0 else w + (skip_channels or feature_channels[self.levels - 2 - i])
        self.ups = len(widths)
        self.head = nn.Conv2d(cin, 2, 1, bias=True)

    def forward(self, feats, classes, out_hw):
        x = feats[-1]
        z = (x * self.embedding(classes)[:, :, None, None]).sum(1, keepdim=True)
        y = x * torch.sigmoid(z)
        for i in range(self.ups):
            y = getattr(self, f"up{i}")(y, feats[self.levels - 2 - i])
        c = self.head(y)
        a = c.abs()
        head_mask = a[:, :1] / (a[:, :1] + a[:, 1:] + self.mask_eps)
        mask = F.interpolate(head_mask, size=out_hw, mode="bilinear", align_corners=False)
        return mask, head_mask, z


class Encoder(nn.Module):
    """The frozen black box: normalize, logits and the feature maps (finest first)."""

    def __init__(self, name, mobilenet_weights):
        super().__init__()
        self.name = name
        if name == "mobilenet_v1":
            tensors, meta = safetensors_io.read(mobilenet_weights)
            self.net = load_converted(MobileNetV1(bn_eps=float(meta["bn_eps"])), tensors)
        else:
            self.net = torchvision.models.resnet50(weights=None)
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.net.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def normalize(self, x01):
        return x01 * 2 - 1 if self.name == "mobilenet_v1" else (x01 - self.mean) / self.std

    def affine(self):
        """Per-channel (scale, shift) with input = x01 * scale + shift (InputSpec::affine)."""
        if self.name == "mobilenet_v1":
            return [2.0] * 3, [-1.0] * 3
        return [1 / s for s in IMAGENET_STD], [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]

    def forward(self, x01):
        x = self.normalize(x01)
        if self.name == "mobilenet_v1":
            logits, f = self.net.forward_features(x)
            return logits, [f["feat4"], f["feat8"], f["feat16"], f["feat32"]]
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        feats = []
        for layer in (n.layer1, n.layer2, n.layer3, n.layer4):
            x = layer(x)
            feats.append(x)
        logits = n.fc(torch.flatten(n.avgpool(x), 1))
        return logits, feats


class Masker(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, images01, classes):
        with torch.no_grad():
            _, feats = self.encoder(images01)
        return self.decoder(feats, classes, images01.shape[2:])


# ---------------------------------------------------------------- the training step

def gaussian_blur(x, sigma, ksize):
    d = torch.arange(ksize, device=x.device, dtype=x.dtype) - (ksize - 1) / 2
    w = torch.exp(-d * d / (2 * sigma * sigma))
    w = w / w.sum()
    c, r = x.shape[1], ksize // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), w.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), w.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def max_other_minus_true(z, onehot):
    """max_{k != c} z_k - z_c per sample."""
    return (z - 1e9 * onehot).max(1).values - (z * onehot).sum(1)


def tv_border(m, border):
    dh = (m[:, :, 1:, :] - m[:, :, :-1, :]).pow(2).sum((1, 2, 3))
    dw = (m[:, :, :, 1:] - m[:, :, :, :-1]).pow(2).sum((1, 2, 3))
    sq = m.pow(2)
    ring = sq.sum((1, 2, 3)) - sq[:, :, 1:-1, 1:-1].sum((1, 2, 3))
    return dh + dw + border * ring


def released_loss(masker, images, classes, real):
    """sal_train's released objective (see the top of the file); returns the scalar loss."""
    enc = masker.encoder
    mask, head_mask, z = masker(images, classes)
    n = images.shape[0]
    scale, shift = enc.affine()
    scale_t = torch.tensor(scale, device=images.device).view(1, 3, 1, 1)
    shift_t = torch.tensor(shift, device=images.device).view(1, 3, 1, 1)
    blur = (torch.rand(n, 1, 1, 1, device=images.device) < 0.5).to(images.dtype)
    colour = ((torch.rand(n, 3, 1, 1, device=images.device) - 0.5) * 0.66 - shift_t) / scale_t
    alt = blur * gaussian_blur(images, 11.0, 55) + (1 - blur) * colour
    alt = alt + 0.11 / scale_t * torch.randn_like(images)
    xp = images + 0.03 / scale_t * torch.randn_like(images)
    phi1 = xp * mask + alt * (1 - mask)
    phi2 = alt * mask + xp * (1 - mask)
    logits, _ = enc(torch.cat([phi1, phi2]))
    z1, z2 = logits[:n], logits[n:]
    onehot = F.one_hot(classes.long(), logits.shape[1]).to(logits.dtype)
    w_real = real / n
    area = 4.0 * ((mask + 5e-4).pow(0.3).mean((1, 2, 3))).mean()
    smooth = 0.5 / 2 * (tv_border(mask, 0.3) * w_real).sum()
    pres = 0.3 * (F.relu(max_other_minus_true(z1, onehot) + 1.0) * w_real).sum()
    destr = 1.0 * (F.relu(-max_other_minus_true(z2, onehot) + 5.0) * w_real).sum()
    zbar = z.mean((1, 2, 3))
    sel = F.binary_cross_entropy_with_logits(zbar, real)
    return area + smooth + pres + destr + sel


# ---------------------------------------------------------------- agreement with our masker files

def load_decoder(path):
    tensors, meta = safetensors_io.read(path)
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    dec = MaskerDecoder(ints(meta["feature_channels"]), ints(meta["widths"]), int(meta["bottlenecks"]),
                        meta["upsample"], int(meta["num_classes"]), int(meta["skip_channels"]),
                        float(meta["bn_eps"]), float(meta["mask_eps"]))
    sd = {k[len("masker."):]: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    missing, unexpected = dec.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"{path}: the masker file does not fit the PyTorch decoder: missing {missing}, "
                         f"unexpected {unexpected}")
    return dec.eval()


def agreement(bench, models, mobilenet_weights, tol=1e-4, tol_full=1e-3):
    """Masks of our masker files through the PyTorch decoder on our feature maps must be within `tol`
    (max abs) of ours; for mobilenet_v1 also through the PyTorch encoder (the whole masker) within
    `tol_full` (the encoders' float rounding, amplified by 27 layers, comes on top)."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([bench, f"--dump_agreement={d}"], check=True, stdout=subprocess.DEVNULL)
        for name in models:
            dec = load_decoder(os.path.join(d, f"{name}_masker.safetensors"))
            io, _ = safetensors_io.read(os.path.join(d, f"{name}_io.safetensors"))
            t = {k: torch.from_numpy(v.copy()) for k, v in io.items()}
            classes = t["classes"].long()
            with torch.no_grad():
                mask, _, _ = dec([t[f"feat{i}"] for i in range(4)], classes, (224, 224))
                diff = (mask - t["mask"]).abs().max().item()
                print(f"agreement {name}: decoder on our feature maps: max |mask ours - mask torch| = {diff:.2e} "
                      f"(2 samples, tolerance {tol:g})")
                if not diff < tol:
                    raise SystemExit(f"agreement check failed for the {name} decoder: {diff:.3e} >= {tol:g}")
                if "images" in t:
                    _, feats = Encoder(name, mobilenet_weights)(t["images"])
                    fdiff = max(((a - t[f"feat{i}"]).abs().max() / t[f"feat{i}"].abs().max()).item()
                                for i, a in enumerate(feats))
                    mask, _, _ = dec(feats, classes, (224, 224))
                    diff = (mask - t["mask"]).abs().max().item()
                    print(f"agreement {name}: whole masker: feature maps max abs diff / max {fdiff:.2e}, "
                          f"max |mask ours - mask torch| = {diff:.2e} (tolerance {tol_full:g})")
                    if not diff < tol_full:
                        raise SystemExit(f"agreement check failed for the whole {name} masker: {diff:.3e} >= "
                                         f"{tol_full:g}")


# ---------------------------------------------------------------- timing

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_second(fn, batch, device, min_time, warmup):
    warm, start = 0, time.perf_counter()
    while warm < 2 or time.perf_counter() - start < warmup:
        out = fn()
        warm += 1
    sync(device)
    if out is not None and not torch.isfinite(out).all():
        raise RuntimeError("non-finite output")
    iters, start = 0, time.perf_counter()
    while True:
        fn()
        iters += 1
        if iters % 4 == 0 or device.type != "cuda":
            sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
    return batch * iters / elapsed


def torch_numbers(name, args, device, mode):
    """{kind: images/s} for inference at batch 1 and N and the training step at batch N; mode eager, compile or
    channels_last (eager, the modules' weights and the input images in NHWC)."""
    compiled, cl = mode == "compile", mode == "channels_last"
    fmt = torch.channels_last if cl else torch.contiguous_format
    torch.manual_seed(0)
    enc = Encoder(name, args.mobilenet_weights).to(device)
    p = PRESETS[name]
    dec = MaskerDecoder(p["feature_channels"], p["widths"], p["bottlenecks"], p["upsample"]).to(device)
    masker = Masker(enc, dec).to(memory_format=fmt)
    out = {}
    infer = masker
    if compiled:
        infer = torch.compile(masker)
    dec.eval()
    for b in (1, args.batch):
        x = torch.rand(b, 3, 224, 224, device=device).contiguous(memory_format=fmt)
        c = torch.randint(0, 1000, (b,), device=device)
        with torch.no_grad():
            out[f"infer_b{b}"] = images_per_second(lambda: infer(x, c)[0], b, device, args.min_time, args.warmup)
    dec.train()
    n = args.batch
    x = torch.rand(n, 3, 224, 224, device=device).contiguous(memory_format=fmt)
    c = torch.randint(0, 1000, (n,), device=device)
    real = (torch.rand(n, device=device) >= 0.3).float()
    opt = torch.optim.Adam(dec.parameters(), lr=1e-3)
    loss_fn = torch.compile(released_loss) if compiled else released_loss

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(masker, x, c, real)
        loss.backward()
        opt.step()
        return loss.detach()

    out[f"train_b{n}"] = images_per_second(step, n, device, args.min_time, args.warmup)
    return out


def ours_numbers(bench, device, args):
    """{(model, kind): images/s} from build/masker_bench (JSON), skipped ones as None with a message."""
    dev = "cuda" if device.type == "cuda" else "cpu"
    flt = f"masker_.*/({'|'.join(args.models)})/{dev}/"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), SAL_MASKER_BATCH=str(args.batch))
    r = subprocess.run([bench, f"--benchmark_filter={flt}", f"--benchmark_min_time={args.min_time}",
                        "--benchmark_format=json"], env=env, check=True, capture_output=True, text=True)
    res = {}
    for b in json.loads(r.stdout)["benchmarks"]:
        kind, model, _, batch = b["name"].split("/")[:4]
        prefix = {"masker_infer": "infer_b", "masker_infer_graph": "infer_graph_b", "masker_train": "train_b",
                  "masker_train_graph": "train_graph_b"}[kind]
        key = (model, prefix + batch.split(":")[1])
        if b.get("error_occurred"):
            print(f"ours {b['name']}: skipped: {b.get('error_message')}")
            res[key] = None
        else:
            res[key] = b["items_per_second"]
            if b.get("arena_growths", 0):
                print(f"ours {b['name']}: arena_growths = {b['arena_growths']:.0f} during timing")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch and OMP_NUM_THREADS for ours)")
    ap.add_argument("--batch", type=int, default=None, help="the large batch (default 8 on cpu, 64 on cuda)")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds of timed iterations per number")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of untimed iterations first (at least 2)")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=MODELS)
    ap.add_argument("--bench", default=os.path.join(REPO, "build", "masker_bench"))
    ap.add_argument("--mobilenet-weights", default=os.path.join(REPO, "weights", "mobilenet_v1_0.75_224.safetensors"))
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--channels-last", action="store_true",
                    help="also eager with the masker and the images in channels_last (NHWC) memory format")
    ap.add_argument("--compile-models", nargs="+", choices=MODELS, default=None,
                    help="torch.compile only these models (default: all of --models; compiling takes minutes each)")
    ap.add_argument("--skip-agreement", action="store_true")
    ap.add_argument("--json", default=None, help="also write every number (ours, torch per mode) to this file")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.batch is None:
        args.batch = 64 if device.type == "cuda" else 8
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if not os.access(args.bench, os.X_OK):
        raise SystemExit(f"{args.bench} not found (build with -DSAL_BUILD_BENCH=ON, or pass --bench)")

    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()}, TF32 in cuDNN convs {torch.backends.cudnn.allow_tf32}, "
             f"in matmuls {torch.backends.cuda.matmul.allow_tf32})" if device.type == "cuda"
             else f", {args.threads} threads")
          + f", load average {open('/proc/loadavg').read().split()[:3]}", flush=True)
    if not args.skip_agreement:
        agreement(args.bench, args.models, args.mobilenet_weights)

    modes = ["eager"]
    if not args.no_compile:
        if hasattr(torch, "compile"):
            modes.append("compile")
        else:
            print(f"torch.compile: not available (torch {torch.__version__})")
    if args.channels_last:
        modes.append("channels_last")
    theirs = {}
    for name in args.models:
        for mode in modes:
            if mode == "compile" and args.compile_models is not None and name not in args.compile_models:
                continue
            try:
                nums = torch_numbers(name, args, device, mode)
            except Exception as e:  # torch.compile (or channels_last) can fail on a given setup: report, keep going
                print(f"torch {mode} {name}: failed: {type(e).__name__}: {str(e)[:300]}")
                continue
            for kind, v in nums.items():
                theirs[(name, kind, mode)] = v
            print(f"torch {mode} {name}: " + ", ".join(f"{k} {v:.2f} img/s" for k, v in nums.items()), flush=True)
    if device.type == "cuda":  # hand PyTorch's cached blocks back: our benchmark runs next, in its own process
        gc.collect()
        torch.cuda.empty_cache()
    ours = ours_numbers(args.bench, device, args)

    kinds = ["infer_b1", f"infer_b{args.batch}", f"train_b{args.batch}"]
    if device.type == "cuda":  # ours replayed from CUDA graphs, against the same PyTorch numbers
        kinds[2:2] = ["infer_graph_b1", f"infer_graph_b{args.batch}"]
        kinds.append(f"train_graph_b{args.batch}")
        for (name, kind, mode), v in list(theirs.items()):
            if kind.startswith("infer_b") or kind.startswith("train_b"):
                theirs[(name, kind.replace("_b", "_graph_b", 1), mode)] = v
    fmt = lambda v: f"{v:.2f}" if v else "n/a"  # noqa: E731
    width = {m: max(15, len(m) + 8) for m in modes}
    head = f"{'model':<19}{'kind':<11}{'ours img/s':>12}" + "".join(
        f"{'torch ' + m:>{width[m]}}{'ratio':>8}" for m in modes)
    print(head)
    for name in args.models:
        for kind in kinds:
            o = ours.get((name, kind))
            line = f"{name:<19}{kind:<11}{fmt(o):>12}"
            for m in modes:
                t = theirs.get((name, kind, m))
                line += f"{fmt(t):>{width[m]}}" + (f"{o / t:8.2f}" if o and t else f"{'n/a':>8}")
            print(line)
    print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")
    if args.json:
        rows = [{"model": m, "kind": k, "ours": ours.get((m, k)),
                 **{f"torch_{md}": theirs.get((m, k, md)) for md in modes}} for m in args.models for k in kinds]
        with open(args.json, "w") as f:
            json.dump({"torch_version": torch.__version__, "device": str(device),
                       "card": torch.cuda.get_device_name() if device.type == "cuda" else None,
                       "threads": args.threads, "batch": args.batch, "min_time": args.min_time, "results": rows}, f,
                      indent=1)
    failed = [f"{m} {k}" for m in args.models for k in kinds if ours.get((m, k)) is None]
    if failed:
        raise SystemExit(f"our benchmark reported an error (or did not run) for: {', '.join(failed)}")


if __name__ == "__main__":
    main()
