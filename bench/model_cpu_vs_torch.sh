#!/usr/bin/env bash
# Our CPU forward throughput against PyTorch's on the same networks, batch 8 at 224x224, the same
# thread count: runs build/model_cpu_bench and bench/compare_torch_cpu.py alternately (REPEATS
# rounds), then prints per network our images/s, PyTorch's and the ratio (median over rounds;
# target >= 1.0). The load average is printed before and after: other processes on the cores
# make the numbers noisy.
#
#   bench/model_cpu_vs_torch.sh [build-dir]      env: THREADS=2 MIN_TIME=5 REPEATS=1
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
THREADS="${THREADS:-2}"
MIN_TIME="${MIN_TIME:-5}"
REPEATS="${REPEATS:-1}"
PY=/usr/bin/python3
BENCH="$BUILD/model_cpu_bench"
[ -x "$BENCH" ] || { echo "model_cpu_bench not found in $BUILD (build with -DSAL_BUILD_BENCH=ON)" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$REPEATS"); do
  OMP_NUM_THREADS="$THREADS" "$BENCH" --benchmark_min_time="$MIN_TIME" --benchmark_format=json \
    > "$TMP/ours_$r.json" 2> "$TMP/ours_$r.err" || { cat "$TMP/ours_$r.err" >&2; exit 1; }
  OMP_NUM_THREADS="$THREADS" "$PY" "$ROOT/bench/compare_torch_cpu.py" --threads "$THREADS" --batch 8 \
    --min-time "$MIN_TIME" --json > "$TMP/torch_$r.json"
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" - "$TMP" "$REPEATS" "$THREADS" <<'EOF'
import json, statistics, sys
tmp, repeats, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = {"BM_resnet50_forward/batch:8/real_time": "resnet50",
         "BM_mobilenet_v1_forward/batch:8/real_time": "mobilenet_v1"}
ours, torch = {}, {}
for r in range(1, repeats + 1):
    for b in json.load(open(f"{tmp}/ours_{r}.json"))["benchmarks"]:
        net = names.get(b["name"])
        if net is None:
            continue
        if b.get("error_occurred"):
            ours.setdefault(net, []).append(None)
            print(f"ours {net}: skipped: {b.get('error_message')}")
        else:
            ours.setdefault(net, []).append(b["items_per_second"])
    t = json.load(open(f"{tmp}/torch_{r}.json"))
    for net, v in t["results"].items():
        torch.setdefault(net, []).append(v["images_per_second"])
print(f"batch 8, 224x224, {threads} threads, median of {repeats} round(s), torch {t['torch_version']}")
print(f"{'network':<14}{'ours img/s':>12}{'torch img/s':>13}{'ratio':>8}")
for net in ("resnet50", "mobilenet_v1"):
    o = [v for v in ours.get(net, []) if v is not None]
    p = torch.get(net, [])
    om = statistics.median(o) if o else None
    pm = statistics.median(p) if p else None
    ratio = f"{om / pm:8.2f}" if om and pm else f"{'n/a':>8}"
    print(f"{net:<14}{(f'{om:.2f}' if om else 'skipped'):>12}{(f'{pm:.2f}' if pm else 'n/a'):>13}{ratio}")
if repeats > 1:
    for net in ("resnet50", "mobilenet_v1"):
        fmt = lambda vs: " ".join("skipped" if v is None else f"{v:.2f}" for v in vs)
        print(f"  {net} rounds: ours {fmt(ours.get(net, []))} | torch {fmt(torch.get(net, []))}")
EOF
