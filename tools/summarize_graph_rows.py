#!/usr/bin/env python3
"""The masker graph rows of a device run, as one table against the CUDA default.

scripts/gpu-next-run.sh prints masker_bench's captured-graph rows (inference and training step) under several
settings, each row prefixed by the setting, e.g.

    backend=auto fuse=1 nhwc=0  masker_infer_graph/resnet50_released/cuda/batch:64/manual_time  9.59 ms  9.61 ms ...
    backend=auto fuse=1 fold=0  masker_infer_graph/...
    fuse=0 nhwc=1  masker_train_graph/resnet50_released/cuda/batch:64/manual_time ...

This reads such a run.txt and prints, per benchmark, the best time of each setting and its ratio to the default
setting (backend=auto fuse=0 nhwc=0 fold=1: what CUDA runs today; ratio = default / setting, so above 1 is faster
than the default), then one line per setting over all benchmarks. A key a row leaves out counts as today's
default (session 13's first call ran fused by default and wrote no `fuse=`: its rows read wrongly here). It
decides nothing: which default to flip is the reader's call, from these ratios and the noise between rounds of
the same setting.

    python3 tools/summarize_graph_rows.py run.txt
"""

import argparse
import math
import re
import sys

# A setting's keys and their values in the CUDA default (layers/modules.h conv_bn_fusion, cuda/conv_backend.h).
DEFAULTS = {"backend": "auto", "fuse": "0", "nhwc": "0", "fold": "1"}
UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}

ROW = re.compile(r"^(?P<setting>(?:[a-z]+=\S+\s+)+)(?P<name>masker_\S+?)(?:/manual_time|/real_time)?\s+(?P<rest>.*)$")
TIME = re.compile(r"^(?P<t>[0-9.]+(?:e[+-]?[0-9]+)?)\s+(?P<unit>ns|us|ms|s)\b")


def setting_key(text):
    """'backend=auto fuse=1 nhwc=0' -> 'fuse=1' (only what differs from the default; 'default' if nothing)."""
    pairs = dict(p.split("=", 1) for p in text.split())
    unknown = sorted(set(pairs) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown setting key(s) {unknown} in '{text.strip()}'")
    diff = [f"{k}={pairs[k]}" for k in DEFAULTS if k in pairs and pairs[k] != DEFAULTS[k]]
    return " ".join(diff) if diff else "default"


def parse(lines):
    """-> {benchmark: {setting: [ms, ...]}}, {benchmark: {setting: error message}} (a row's error, if any)."""
    times, errors = {}, {}
    for line in lines:
        m = ROW.match(line.rstrip("\n"))
        if not m:
            continue
        key, name, rest = setting_key(m.group("setting")), m.group("name"), m.group("rest").strip()
        t = TIME.match(rest)
        if t:
            times.setdefault(name, {}).setdefault(key, []).append(float(t.group("t")) * UNIT_MS[t.group("unit")])
        elif "ERROR" in rest:
            errors.setdefault(name, {})[key] = rest
    return times, errors


def summarize(times, errors):
    """-> (settings in first-seen order, default first; rows per benchmark; per-setting ratios over benchmarks)."""
    settings = []
    for per in list(times.values()) + list(errors.values()):
        for s in per:
            if s not in settings:
                settings.append(s)
    settings.sort(key=lambda s: s != "default")  # stable: the default first, the rest as they came
    rows, ratios = [], {s: [] for s in settings}
    for name in sorted(set(times) | set(errors)):
        per = times.get(name, {})
        base = min(per["default"]) if "default" in per else None
        cells = {}
        for s in settings:
            if s in per:
                best = min(per[s])
                ratio = base / best if base is not None else None
                cells[s] = (best, len(per[s]), max(per[s]) / best - 1, ratio)
                if ratio is not None and s != "default":
                    ratios[s].append((name, ratio))
            elif s in errors.get(name, {}):
                cells[s] = "error"
        rows.append((name, cells))
    return settings, rows, ratios


def format_cell(cell):
    if cell is None:
        return ""
    if cell == "error":
        return "error"
    best, n, spread, ratio = cell
    text = f"{best:.3f}" + (f" x{n} +{100 * spread:.0f}%" if n > 1 else "")
    return text + (f" ({ratio:.2f}x)" if ratio is not None else "")


def report(times, errors, out):
    if not times and not errors:
        out.write("no masker graph rows found\n")
        return
    settings, rows, ratios = summarize(times, errors)
    default = " ".join(f"{k}={v}" for k, v in DEFAULTS.items())
    out.write("ms per batch, best of the rounds (xN +P%: N rounds, the slowest P% above the best); "
              f"(r x): default / this, above 1 is faster than the default ({default})\n\n")
    out.write("| benchmark | " + " | ".join(settings) + " |\n")
    out.write("|---|" + "---:|" * len(settings) + "\n")
    for name, cells in rows:
        out.write(f"| {name} | " + " | ".join(format_cell(cells.get(s)) for s in settings) + " |\n")
    out.write("\n")
    for s in settings:
        if s == "default":
            continue
        r = ratios[s]
        if not r:
            out.write(f"{s}: no benchmark measured under both it and the default\n")
            continue
        geo = math.exp(sum(math.log(v) for _, v in r) / len(r))
        worst = min(r, key=lambda p: p[1])
        out.write(f"{s}: faster than the default in {sum(v > 1 for _, v in r)} of {len(r)} benchmarks; ratio "
                  f"geometric mean {geo:.3f}, lowest {worst[1]:.3f} ({worst[0]})\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_txt", help="scripts/gpu-next-run.sh's run.txt (or any text with such rows)")
    args = ap.parse_args(argv)
    with open(args.run_txt, encoding="utf-8", errors="replace") as f:
        times, errors = parse(f)
    report(times, errors, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
