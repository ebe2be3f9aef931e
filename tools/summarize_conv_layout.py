#!/usr/bin/env python3
"""Adds up conv_cuda_bench's conv_layout rows (cuDNN in NCHW against NHWC, per layer shape and pass) over a whole
network: what ResNet-50's 53 convolutions would take in each layout.

    build/conv_cuda_bench --benchmark_filter='conv_layout/(conv1|l)' --benchmark_out=layout.json \\
        --benchmark_out_format=json
    /usr/bin/python3 tools/summarize_conv_layout.py layout.json

Each layer shape counts as many times as the network has it (the rows' `count` counter, from
bench/resnet50_conv_shapes.h). Per pass (forward, input gradient, weight gradient) and for all three:
  nchw            the engine's layout, cuDNN's fastest timed algorithm per shape
  nhwc            NHWC throughout (no conversions: an engine in NHWC everywhere)
  nhwc+convert    NHWC with each layer's activation input(s) converted in and its output back (the rows'
                  with_transposes/nchw)
  best            per shape the faster of nchw and nhwc+convert (NHWC only where it pays inside an NCHW network)
A shape missing from either layout (a row that failed or was filtered out) is left out of that pass's sums, and
named. A file cut short (the benchmark stopped by a timeout before it closed its JSON) is read up to its last
complete row, and says so.
"""

import argparse
import json
import re
import sys

PASSES = ("fwd", "dgrad", "wgrad")
UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse(text):
    """The JSON document, or from a file cut short the rows it completed (Google Benchmark writes each row as an
    object indented by 4 spaces inside "benchmarks"); (doc, complete)."""
    try:
        return json.loads(text), True
    except ValueError:
        end = text.rfind("\n    }")
        if end < 0 or '"benchmarks"' not in text[:end]:
            raise
        return json.loads(text[:end + 6] + "\n  ]\n}"), False


def rows(doc):
    """{(layer, pass, layout): {"s": seconds, "count": n, "with_transposes": ratio or None}} of the rows that ran."""
    out = {}
    for b in doc.get("benchmarks", []):
        parts = b["name"].split("/")
        if len(parts) < 4 or parts[0] != "conv_layout" or b.get("error_occurred"):
            continue
        _, layer, pass_, layout = parts[:4]
        out[(layer, pass_, layout)] = {"s": b["real_time"] * UNIT[b.get("time_unit", "ns")],
                                       "count": int(b.get("count", 1)),
                                       "with_transposes": b.get("with_transposes/nchw")}
    return out


def summarize(r, layer_pattern):
    """{pass or "all": {"nchw", "nhwc", "nhwc_convert", "best": seconds, "shapes": n, "missing": [layer]}}."""
    layers = sorted({k[0] for k in r if re.search(layer_pattern, k[0])})
    total = {"nchw": 0.0, "nhwc": 0.0, "nhwc_convert": 0.0, "best": 0.0, "shapes": 0, "missing": []}
    out = {}
    for p in PASSES:
        s = {"nchw": 0.0, "nhwc": 0.0, "nhwc_convert": 0.0, "best": 0.0, "shapes": 0, "missing": []}
        for layer in layers:
            a, b = r.get((layer, p, "nchw")), r.get((layer, p, "nhwc"))
            if a is None or b is None or b["with_transposes"] is None:
                s["missing"].append(layer)
                continue
            n = a["count"]
            convert = b["with_transposes"] * a["s"]
            s["nchw"] += n * a["s"]
            s["nhwc"] += n * b["s"]
            s["nhwc_convert"] += n * convert
            s["best"] += n * min(a["s"], convert)
            s["shapes"] += 1
        out[p] = s
        for k in ("nchw", "nhwc", "nhwc_convert", "best", "shapes"):
            total[k] += s[k]
        total["missing"] += [f"{layer} ({p})" for layer in s["missing"]]
    out["all"] = total
    return out


def report(summary):
    lines = [f"{'pass':<7}{'shapes':>7}{'nchw ms':>10}{'nhwc ms':>10}{'nhwc/nchw':>11}{'+convert ms':>13}"
             f"{'best ms':>10}{'best/nchw':>11}"]
    for p in PASSES + ("all",):
        s = summary[p]
        ratio = (lambda v: f"{v / s['nchw']:.3f}" if s["nchw"] > 0 else "n/a")  # noqa: E731
        lines.append(f"{p:<7}{s['shapes']:>7}{s['nchw'] * 1e3:>10.3f}{s['nhwc'] * 1e3:>10.3f}{ratio(s['nhwc']):>11}"
                     f"{s['nhwc_convert'] * 1e3:>13.3f}{s['best'] * 1e3:>10.3f}{ratio(s['best']):>11}")
    if summary["all"]["missing"]:
        lines.append("left out (a layout's row missing or failed): " + ", ".join(summary["all"]["missing"]))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", help="conv_cuda_bench --benchmark_out (JSON) with conv_layout rows")
    ap.add_argument("--layers", default=r"^(conv1|l[1-4])_", help="regex of the layer names to add up (ResNet-50's)")
    args = ap.parse_args(argv)
    try:
        with open(args.json) as f:
            doc, complete = parse(f.read())
    except (OSError, ValueError) as e:
        print(f"{args.json}: {e}", file=sys.stderr)
        return 1
    if not complete:
        print(f"{args.json}: cut short (the benchmark was stopped?): its complete rows only", flush=True)
    r = rows(doc)
    if not any(re.search(args.layers, k[0]) for k in r):
        print(f"{args.json}: no conv_layout rows that ran for layers matching {args.layers!r}", file=sys.stderr)
        return 1
    print(report(summarize(r, args.layers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
