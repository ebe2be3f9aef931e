#!/usr/bin/python3
"""Converts pretrained classifiers to the engine's safetensors format (a tool, not a
runtime dependency of the engine).

Subcommands (see --help of each):
  torchvision     torchvision resnet50 / googlenet / alexnet checkpoints, keys kept as
                  torchvision names them (num_batches_tracked and GoogLeNet aux heads dropped)
  cifar-resnet    akamaster CIFAR-10 ResNet20/56 legacy torch.save pickles ('module.' stripped)
  tfjs-mobilenet  TensorFlow.js Layers MobileNet v1 0.75 224 (model.json + shards),
                  Keras layouts converted to NCHW / OIHW

Every tensor is float32, NCHW/OIHW, and every file carries metadata that fixes the input
convention (see weights/README.md). Any mismatch against the expected architecture is
reported as ONE error naming every missing, unexpected and mis-shaped tensor.
"""

import argparse
import hashlib
import json
import math
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

FORMAT_VERSION = "1"
IMAGENET_MEAN = "0.485,0.456,0.406"
IMAGENET_STD = "0.229,0.224,0.225"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


class ConversionError(Exception):
    """A checkpoint that does not match what the converter expects."""


# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_shapes(got, expected, what):
    """Compares {name: shape} maps; raises one ConversionError naming every problem."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    misshaped = [k for k in expected if k in got and tuple(got[k]) != tuple(expected[k])]
    if not (missing or unexpected or misshaped):
        return
    lines = [f"{what}: checkpoint does not match the architecture "
             f"({len(missing)} missing, {len(unexpected)} unexpected, {len(misshaped)} mis-shaped)"]
    lines += [f"  missing key '{k}' (expected shape {list(expected[k])})" for k in missing]
    lines += [f"  unexpected key '{k}' (shape {list(got[k])})" for k in unexpected]
    lines += [f"  key '{k}' has shape {list(got[k])}, expected {list(expected[k])}" for k in misshaped]
    raise ConversionError("\n".join(lines))


def read_class_file(path):
    """One class per line; a leading WordNet id ('n01440764 tench, ...') is dropped."""
    names = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            m = re.match(r"^n\d{8}\s+(.*)$", line)
            names.append(m.group(1) if m else line)
    return names


def base_metadata(arch, input_size, num_classes, class_names, source):
    if len(class_names) != num_classes:
        raise ConversionError(f"{arch}: {len(class_names)} class names for {num_classes} classes")
    return {
        "arch": arch,
        "format_version": FORMAT_VERSION,
        "layout": "NCHW",
        "input_size": str(input_size),
        "num_classes": str(num_classes),
        "class_names": json.dumps(list(class_names)),
        "source": source,
    }


def to_f32(t):
    """torch tensor -> contiguous float32 numpy array (bit-exact for float32 input)."""
    return t.detach().cpu().contiguous().float().numpy()


def load_torch_checkpoint(path):
    """Returns a {name: tensor} state_dict from a torch.save file holding a state_dict,
    a dict with 'state_dict' (or 'model'), or a pickled nn.Module."""
    import torch
    obj = torch.load(path, map_location="cpu")
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and not isinstance(obj[key], torch.Tensor):
                inner = obj[key]
                return inner.state_dict() if isinstance(inner, torch.nn.Module) else inner
        return obj
    raise ConversionError(f"{path}: expected a state_dict, a dict with 'state_dict' or a "
                          f"pickled nn.Module, got {type(obj).__name__}")


def strip_module_prefix(state_dict):
    """Removes the 'module.' prefix torch.nn.DataParallel adds, when every key has it."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


# ---------------------------------------------------------------------------------------
# torchvision: resnet50, googlenet, alexnet
# ---------------------------------------------------------------------------------------

# Per-architecture facts the engine must not guess.
TORCHVISION_ARCHS = {
    "resnet50": {"classifier": "fc.weight", "bn_eps": "1e-05"},
    # torchvision BasicConv2d uses BatchNorm2d(eps=0.001).
    "googlenet": {"classifier": "fc.weight", "bn_eps": "0.001"},
    # AlexNet has no BatchNorm: no bn_eps key.
    "alexnet": {"classifier": "classifier.6.weight", "bn_eps": None},
}


def build_torchvision_model(arch, num_classes=1000, **kwargs):
    """The torchvision model with random weights (never downloads anything).

    GoogLeNet is built without aux heads (they only run in training) and with
    transform_input=False unless asked otherwise."""
    import torchvision
    if arch == "resnet50":
        return torchvision.models.resnet50(weights=None, num_classes=num_classes, **kwargs)
    if arch == "googlenet":
        kwargs.setdefault("aux_logits", False)
        kwargs.setdefault("transform_input", False)
        kwargs.setdefault("init_weights", False)
        return torchvision.models.googlenet(weights=None, num_classes=num_classes, **kwargs)
    if arch == "alexnet":
        return torchvision.models.alexnet(weights=None, num_classes=num_classes, **kwargs)
    raise ConversionError(f"unknown torchvision arch {arch!r}")


def torchvision_expected_shapes(arch, num_classes=1000):
    """{key: shape} of the eval-mode architecture, num_batches_tracked excluded."""
    model = build_torchvision_model(arch, num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def convert_torchvision_state_dict(arch, state_dict, class_names=None, transform_input=None,
                                   source="in-memory state_dict"):
    """Checks and converts a torchvision state_dict; returns (tensors, metadata).

    This is the single code path used by the CLI and by make_golden_fixtures.py.
    transform_input (GoogLeNet only): True for torchvision's pretrained GoogLeNet, which
    re-normalises its input inside forward(); None means that default.
    """
    if arch not in TORCHVISION_ARCHS:
        raise ConversionError(f"unknown torchvision arch {arch!r}")
    info = TORCHVISION_ARCHS[arch]
    sd = strip_module_prefix(state_dict)
    dropped = [k for k in sd if k.endswith("num_batches_tracked")
               or (arch == "googlenet" and (k.startswith("aux1.") or k.startswith("aux2.")))]
    for k in dropped:
        del sd[k]
    cls = sd.get(info["classifier"])
    num_classes = int(cls.shape[0]) if cls is not None and cls.dim() == 2 else 1000
    expected = torchvision_expected_shapes(arch, num_classes)
    check_shapes({k: tuple(v.shape) for k, v in sd.items()}, expected, f"torchvision {arch}")

    tensors = {k: to_f32(sd[k]) for k in expected}  # reference (torchvision) key order
    if class_names is None:
        if num_classes != 1000:
            raise ConversionError(f"{arch}: {num_classes} classes: pass --classes")
        from torchvision.models._meta import _IMAGENET_CATEGORIES
        class_names = list(_IMAGENET_CATEGORIES)
    if transform_input is None:
        transform_input = arch == "googlenet"
    if transform_input and arch != "googlenet":
        raise ConversionError("transform_input only exists for googlenet")
    meta = base_metadata(arch, 224, num_classes, class_names, source)
    meta.update({"input_range": "0_1", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                 "transform_input": "1" if transform_input else "0",
                 "converter": "tools/convert_weights.py torchvision"})
    if info["bn_eps"] is not None:
        meta["bn_eps"] = info["bn_eps"]
    return tensors, meta


def cmd_torchvision(args):
    sd = load_torch_checkpoint(args.input)
    class_names = read_class_file(args.classes) if args.classes else None
    transform_input = None if args.transform_input is None else args.transform_input == "1"
    source = f"torchvision {args.arch} checkpoint {os.path.basename(args.input)} sha256:{sha256_file(args.input)}"
    tensors, meta = convert_torchvision_state_dict(args.arch, sd, class_names, transform_input, source)
    safetensors_io.write(args.output, tensors, meta)
    return tensors, meta


# ---------------------------------------------------------------------------------------
# CIFAR-10 ResNet20/56 (akamaster/pytorch_resnet_cifar10)
# ---------------------------------------------------------------------------------------

def cifar_resnet_expected_shapes(depth, num_classes=10):
    """{key: shape} of the 6n+2 CIFAR ResNet: conv1/bn1, layer1..3 of n BasicBlocks
    (16/32/64 ch, option-A shortcuts have no parameters), linear 64 -> classes."""
    if (depth - 2) % 6:
        raise ConversionError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    shapes = {"conv1.weight": (16, 3, 3, 3)}
    shapes.update({f"bn1.{p}": (16,) for p in ("weight", "bias", "running_mean", "running_var")})
    in_planes = 16
    for layer, planes in ((1, 16), (2, 32), (3, 64)):
        for i in range(n):
            pre = f"layer{layer}.{i}"
            shapes[f"{pre}.conv1.weight"] = (planes, in_planes, 3, 3)
            shapes.update({f"{pre}.bn1.{p}": (planes,) for p in ("weight", "bias", "running_mean", "running_var")})
            shapes[f"{pre}.conv2.weight"] = (planes, planes, 3, 3)
            shapes.update({f"{pre}.bn2.{p}": (planes,) for p in ("weight", "bias", "running_mean", "running_var")})
            in_planes = planes
    shapes["linear.weight"] = (num_classes, 64)
    shapes["linear.bias"] = (num_classes,)
    return shapes


def cifar_metadata(depth, source):
    meta = base_metadata(f"cifar_resnet{depth}", 32, 10, CIFAR10_CLASSES, source)
    meta.update({"input_range": "0_1", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                 "bn_eps": "1e-05", "transform_input": "0",
                 # x[:, :, ::2, ::2] zero-padded by planes/4 channels on both sides
                 "shortcut": "A",
                 "converter": "tools/convert_weights.py cifar-resnet"})
    return meta


def convert_cifar_state_dict(depth, state_dict, source="in-memory state_dict"):
    """Checks and converts a CIFAR ResNet state_dict; returns (tensors, metadata)."""
    sd = strip_module_prefix(state_dict)
    for k in [k for k in sd if k.endswith("num_batches_tracked")]:
        del sd[k]
    expected = cifar_resnet_expected_shapes(depth)
    check_shapes({k: tuple(v.shape) for k, v in sd.items()}, expected, f"cifar_resnet{depth}")
    return {k: to_f32(sd[k]) for k in expected}, cifar_metadata(depth, source)


def cmd_cifar_resnet(args):
    import torch
    obj = torch.load(args.input, map_location="cpu")
    sd = obj["state_dict"] if isinstance(obj, dict) and "state_dict" in obj else obj
    source = f"akamaster pytorch_resnet_cifar10 {os.path.basename(args.input)} sha256:{sha256_file(args.input)}"
    tensors, meta = convert_cifar_state_dict(args.depth, sd, source)
    if isinstance(obj, dict) and "best_prec1" in obj:
        meta["best_prec1"] = f"{float(obj['best_prec1']):.2f}"
    safetensors_io.write(args.output, tensors, meta)
    return tensors, meta


# ---------------------------------------------------------------------------------------
# TensorFlow.js Layers MobileNet v1 (alpha 0.75, 224)
# ---------------------------------------------------------------------------------------

MOBILENET_ARCH = "mobilenet_v1_0.75_224"
# Output channels of conv_pw_1..13 (base widths x 0.75) and the depthwise strides.
MOBILENET_PW_CHANNELS = [48, 96, 96, 192, 192, 384, 384, 384, 384, 384, 384, 768, 768]
MOBILENET_DW_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
_BN_PARAMS = {"gamma": "weight", "beta": "bias",
              "moving_mean": "running_mean", "moving_variance": "running_var"}


def mobilenet_expected_shapes(num_classes=1000):
    """{key: shape} of the converted MobileNet v1 0.75 (our names, NCHW/OIHW)."""
    def bn(name, c):
        return {f"{name}.{p}": (c,) for p in _BN_PARAMS.values()}
    shapes = {"conv1.weight": (24, 3, 3, 3), **bn("conv1_bn", 24)}
    c_in = 24
    for i, c_out in enumerate(MOBILENET_PW_CHANNELS, start=1):
        shapes[f"conv_dw_{i}.weight"] = (c_in, 1, 3, 3)
        shapes.update(bn(f"conv_dw_{i}_bn", c_in))
        shapes[f"conv_pw_{i}.weight"] = (c_out, c_in, 1, 1)
        shapes.update(bn(f"conv_pw_{i}_bn", c_out))
        c_in = c_out
    shapes["conv_preds.weight"] = (num_classes, c_in, 1, 1)
    shapes["conv_preds.bias"] = (num_classes,)
    return shapes


def _keras_layers(model_json):
    """{layer name: (class_name, config)} from a TF.js Layers modelTopology."""
    topo = model_json.get("modelTopology")
    if not isinstance(topo, dict):
        raise ConversionError("model.json has no modelTopology (is this a graph model?)")
    cfg = topo.get("model_config", topo)
    inner = cfg.get("config") if isinstance(cfg, dict) else None
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        raise ConversionError("model.json: modelTopology has no layer list")
    out = {}
    for i, l in enumerate(layers):
        c = l.get("config") if isinstance(l, dict) else None
        if not (isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(l.get("class_name"), str)):
            raise ConversionError(f"model.json: layer {i} is not an object with a string 'class_name' and a "
                                  f"'config' object holding a string 'name'")
        out[c["name"]] = (l["class_name"], c)
    return out


def _int_pair(c, key, default):
    """A layer's [a, b] setting as a list of two ints, or None when it is anything else."""
    v = c.get(key, default)
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return v
    return None


def _check_mobilenet_topology(layers):
    """Verifies the topology facts the engine hard-codes; returns the BN epsilon."""
    problems = []
    convs = [("conv1", 2, False)] + [
        (f"conv_dw_{i}", s, False) for i, s in enumerate(MOBILENET_DW_STRIDES, 1)] + [
        (f"conv_pw_{i}", 1, False) for i in range(1, 14)] + [("conv_preds", 1, True)]
    for name, stride, bias in convs:
        if name not in layers:
            problems.append(f"layer '{name}' missing")
            continue
        cls, c = layers[name]
        want_cls = "DepthwiseConv2D" if name.startswith("conv_dw_") else "Conv2D"
        if cls != want_cls:
            problems.append(f"layer '{name}' is {cls}, expected {want_cls}")
        if c.get("padding") != "same":
            problems.append(f"layer '{name}' padding {c.get('padding')!r}, expected 'same'")
        if _int_pair(c, "strides", [1, 1]) != [stride, stride]:
            problems.append(f"layer '{name}' strides {c.get('strides')}, expected [{stride}, {stride}]")
        if _int_pair(c, "dilation_rate", [1, 1]) != [1, 1]:
            problems.append(f"layer '{name}' is dilated")
        if bool(c.get("use_bias")) != bias:
            problems.append(f"layer '{name}' use_bias={c.get('use_bias')}, expected {bias}")
        if c.get("data_format", "channels_last") != "channels_last":
            problems.append(f"layer '{name}' data_format {c.get('data_format')!r}")
        if cls == "DepthwiseConv2D" and c.get("depth_multiplier", 1) != 1:
            problems.append(f"layer '{name}' depth_multiplier {c.get('depth_multiplier')}")
    eps = set()
    for name, (cls, c) in layers.items():
        if cls == "BatchNormalization":
            e = c.get("epsilon", 1e-3)
            if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 < e < 1:
                problems.append(f"layer '{name}' epsilon {e!r}, expected a number in (0, 1)")
            else:
                eps.add(float(e))
            if not (c.get("center", True) and c.get("scale", True)):
                problems.append(f"layer '{name}' has center/scale disabled")
        if cls == "Activation" and name.endswith("_relu") and c.get("activation") != "relu6":
            problems.append(f"layer '{name}' activation {c.get('activation')!r}, expected relu6")
    if len(eps) != 1:
        problems.append(f"BatchNormalization epsilons {sorted(eps)}, expected one value")
    if problems:
        raise ConversionError("model.json topology is not MobileNet v1 0.75 as expected:\n  "
                              + "\n  ".join(problems))
    return eps.pop()


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# Largest weight a manifest may list (elements); a bigger one is a corrupt manifest, not a MobileNet.
_MAX_WEIGHT_ELEMENTS = 2**31


def _manifest_group(index, group):
    """Checks one weightsManifest entry; returns (paths, weight specs)."""
    where = f"model.json: weightsManifest[{index}]"
    if not isinstance(group, dict) or not isinstance(group.get("paths"), list) or \
            not isinstance(group.get("weights"), list):
        raise ConversionError(f"{where} is not an object with 'paths' and 'weights' lists")
    for p in group["paths"]:
        if not isinstance(p, str) or not p or os.path.isabs(p) or ".." in p.replace("\\", "/").split("/"):
            raise ConversionError(f"{where}: shard path {p!r} is not a relative path inside the model folder")
    for w in group["weights"]:
        if not isinstance(w, dict) or not isinstance(w.get("name"), str) or not isinstance(w.get("shape"), list):
            raise ConversionError(f"{where}: weight entry {json.dumps(w)[:80]} has no string 'name' and "
                                  f"'shape' list")
        shape = w["shape"]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape) or \
                math.prod(shape) > _MAX_WEIGHT_ELEMENTS:
            raise ConversionError(f"{where}: weight '{w['name']}' has shape {shape!r}; expected non-negative "
                                  f"integers, at most {_MAX_WEIGHT_ELEMENTS} elements")
    return group["paths"], group["weights"]


def read_tfjs_weights(model_dir, model_json):
    """Reads the shards in manifest order; returns [(weight name, float32 array)].

    Each manifest group's shards are concatenated and split by the listed shapes. Every
    shard must exist and the group's bytes must match the manifest exactly."""
    manifest = model_json.get("weightsManifest")
    if not isinstance(manifest, list):
        raise ConversionError("model.json has no weightsManifest")
    problems, out = [], []
    for gi, group in enumerate(manifest):
        paths, specs = _manifest_group(gi, group)
        need = 0
        for w in specs:
            if w.get("dtype", "float32") != "float32" or "quantization" in w:
                raise ConversionError(f"weight '{w['name']}': only unquantised float32 is supported")
            need += 4 * math.prod(w["shape"])
        sizes = []
        for p in paths:
            full = os.path.join(model_dir, p)
            if not os.path.isfile(full):
                problems.append(f"shard '{p}' is missing")
            sizes.append(os.path.getsize(full) if os.path.isfile(full) else None)
        if None in sizes:
            continue
        if sum(sizes) != need:
            names = ", ".join(f"'{p}' ({s} bytes)" for p, s in zip(paths, sizes))
            problems.append(f"shard {names} should hold {need} bytes for "
                            f"{', '.join(w['name'] for w in specs)}")
            continue
        buf = b"".join(_read_bytes(os.path.join(model_dir, p)) for p in paths)
        pos = 0
        for w in specs:
            n = math.prod(w["shape"])
            arr = np.frombuffer(buf, dtype="<f4", count=n, offset=pos).reshape(w["shape"])
            out.append((w["name"].split(":")[0], arr.astype(np.float32)))
            pos += 4 * n
    if problems:
        raise ConversionError(f"{model_dir}: weight shards do not match the manifest:\n  "
                              + "\n  ".join(problems))
    return out


def convert_tfjs_mobilenet(model_dir):
    """Converts the TF.js MobileNet folder; returns (tensors, metadata).

    Layouts: Conv2D kernel [R,S,C,K] -> [K,C,R,S]; DepthwiseConv2D kernel [R,S,C,1] ->
    [C,1,R,S]; BN gamma/beta/moving_mean/moving_variance -> weight/bias/running_mean/
    running_var; conv_preds bias kept. Names are the Keras layer names."""
    model_path = os.path.join(model_dir, "model.json")
    try:
        with open(model_path, encoding="utf-8") as f:
            model_json = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: json.JSONDecodeError
        raise ConversionError(f"{model_path}: cannot read as JSON: {e}") from e
    if not isinstance(model_json, dict):
        raise ConversionError(f"{model_path}: not a JSON object")
    layers = _keras_layers(model_json)
    bn_eps = _check_mobilenet_topology(layers)

    converted, problems = {}, []
    for wname, arr in read_tfjs_weights(model_dir, model_json):
        layer, _, param = wname.rpartition("/")
        cls = layers.get(layer, (None,))[0]
        if cls == "Conv2D" and param == "kernel" and arr.ndim == 4:
            key, val = f"{layer}.weight", arr.transpose(3, 2, 0, 1)
        elif cls == "Conv2D" and param == "bias":
            key, val = f"{layer}.bias", arr
        elif cls == "DepthwiseConv2D" and param == "depthwise_kernel" and arr.ndim == 4:
            r, s, c, m = arr.shape  # output channel c*m+j uses input channel c
            key, val = f"{layer}.weight", arr.transpose(2, 3, 0, 1).reshape(c * m, 1, r, s)
        elif cls == "BatchNormalization" and param in _BN_PARAMS:
            key, val = f"{layer}.{_BN_PARAMS[param]}", arr
        else:
            problems.append(f"weight '{wname}' (layer class {cls}) has no known conversion")
            continue
        converted[key] = np.ascontiguousarray(val, dtype=np.float32)
    if problems:
        raise ConversionError(f"{model_dir}: " + "\n  ".join(problems))
    expected = mobilenet_expected_shapes()
    check_shapes({k: v.shape for k, v in converted.items()}, expected, MOBILENET_ARCH)
    tensors = {k: converted[k] for k in expected}  # network order

    labels_path = os.path.join(model_dir, "metadata.json")
    with open(labels_path, encoding="utf-8") as f:
        labels = json.load(f)["labels"]
    shard_hash = hashlib.sha256()
    for group in model_json["weightsManifest"]:
        for p in group["paths"]:
            shard_hash.update(_read_bytes(os.path.join(model_dir, p)))
    source = (f"tfjs-layers {os.path.basename(os.path.normpath(model_dir))}/model.json "
              f"sha256:{sha256_file(model_path)}; weight shards in manifest order, "
              f"concatenated sha256:{shard_hash.hexdigest()}; metadata.json "
              f"sha256:{sha256_file(labels_path)}")
    meta = base_metadata(MOBILENET_ARCH, 224, 1000, labels, source)
    meta.update({
        "input_range": "minus1_1",      # x / 127.5 - 1 on RGB in [0, 255]
        "bn_eps": repr(bn_eps),          # '0.001'
        "transform_input": "0",
        "padding": "tf_same",            # stride 2: pad 0 top/left, 1 bottom/right (even input)
        "activation": "relu6",
        "output": "logits",              # conv_preds output; the Keras softmax is not applied
        "converter": "tools/convert_weights.py tfjs-mobilenet",
    })
    return tensors, meta


def cmd_tfjs_mobilenet(args):
    tensors, meta = convert_tfjs_mobilenet(args.model_dir)
    safetensors_io.write(args.output, tensors, meta)
    return tensors, meta


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------

def build_parser():
    p = argparse.ArgumentParser(
        description="Convert pretrained classifiers to the engine's safetensors format "
                    "(float32, NCHW/OIHW, with input-convention metadata).")
    sub = p.add_subparsers(dest="command", required=True)

    tv = sub.add_parser("torchvision", help="torchvision resnet50/googlenet/alexnet checkpoint")
    tv.add_argument("--arch", required=True, choices=sorted(TORCHVISION_ARCHS))
    tv.add_argument("--input", required=True,
                    help="torch.save file: state_dict, dict with 'state_dict', or pickled model")
    tv.add_argument("--output", required=True, help="output .safetensors")
    tv.add_argument("--classes", help="class names, one per line (synset_words.txt); "
                                      "default: torchvision's ImageNet category names")
    tv.add_argument("--transform-input", choices=["0", "1"],
                    help="googlenet only: '1' (default) when the checkpoint is torchvision's "
                         "pretrained GoogLeNet, which re-normalises its input in forward()")
    tv.set_defaults(func=cmd_torchvision)

    cr = sub.add_parser("cifar-resnet", help="akamaster CIFAR-10 ResNet20/56 checkpoint")
    cr.add_argument("--depth", required=True, type=int, choices=[20, 56])
    cr.add_argument("--input", required=True, help="e.g. resnet20-12fca82f.th")
    cr.add_argument("--output", required=True, help="output .safetensors")
    cr.set_defaults(func=cmd_cifar_resnet)

    tf = sub.add_parser("tfjs-mobilenet", help="TF.js Layers MobileNet v1 0.75 224 folder")
    tf.add_argument("--model-dir", required=True, help="folder with model.json, shards, metadata.json")
    tf.add_argument("--output", required=True, help="output .safetensors")
    tf.set_defaults(func=cmd_tfjs_mobilenet)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        tensors, meta = args.func(args)
    except (ConversionError, safetensors_io.SafetensorsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    n = sum(int(v.size) for v in tensors.values())
    print(f"wrote {args.output}: {meta['arch']}, {len(tensors)} tensors, {n} floats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
