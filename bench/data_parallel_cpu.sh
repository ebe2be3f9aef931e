#!/usr/bin/env bash
# CPU data-parallel training throughput: sal_train (CIFAR preset, 32 px) as one process with THREADS
# OpenMP threads against WORLD ranks of THREADS / WORLD threads each (the collectives in shared memory,
# engine/cpu/shm_comm.h), at the same global batch and at the same batch per rank, plus one rank's
# work alone. REPEATS rounds, alternating. Every run must exit 0 (the ranks end with their parameters
# compared: a run whose ranks drifted apart fails, engine/data_parallel.h) and log step STEPS; the
# figure is the last log line's images/s (steps STEPS/2+1 .. STEPS, one log step's clean forward in it).
#
#   bench/data_parallel_cpu.sh [build-dir]   env: THREADS=2 WORLD=2 BATCH=32 STEPS=40 REPEATS=2
#                                                 CIFAR_TAR=../shared/data/cifar10/test.tar
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
THREADS="${THREADS:-2}"
WORLD="${WORLD:-2}"
BATCH="${BATCH:-32}"
STEPS="${STEPS:-40}"
REPEATS="${REPEATS:-2}"
CIFAR_TAR="${CIFAR_TAR:-$ROOT/../shared/data/cifar10/test.tar}"
(( BATCH % WORLD == 0 && THREADS % WORLD == 0 )) || { echo "BATCH and THREADS must be multiples of WORLD" >&2; exit 1; }
[ -x "$BUILD/sal_train" ] || { echo "sal_train not found in $BUILD" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# Enough images that no rank's shards run out: STEPS * BATCH per rank, in 2 * WORLD shards.
PER_SHARD=$(( (STEPS * BATCH + 1) / 2 + 1 ))
"$BUILD/sal_make_shards" --tar "$CIFAR_TAR" --out "$TMP/shards/c" --per-shard "$PER_SHARD" --shuffle --seed 1 \
  --limit $(( PER_SHARD * 2 * WORLD )) > "$TMP/shards.log" 2>&1 || { cat "$TMP/shards.log" >&2; exit 1; }
TRAIN=("$BUILD/sal_train" --shards "$TMP/shards" --black-box "$ROOT/weights/cifar_resnet20.safetensors" --preset cifar
       --image-size 32 --threads 1 --seed 5 --log-every $(( STEPS / 2 )) --steps "$STEPS" --checkpoint-every 0)

# images/s of the last log line of run directory $1, after checking it reached step STEPS.
last_rate() {
  python3 - "$1/log.jsonl" "$STEPS" <<'EOF'
import json, sys
line = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert line["step"] == int(sys.argv[2]), f"{sys.argv[1]}: the last line is step {line['step']}"
print(f"{line['images_per_s']:.1f}")
EOF
}

one_process() {  # threads batch name
  OMP_NUM_THREADS="$1" "${TRAIN[@]}" --batch "$2" --out "$TMP/$3" > "$TMP/$3.txt" 2>&1 || { tail -n 5 "$TMP/$3.txt" >&2; exit 1; }
  last_rate "$TMP/$3"
}

ranks() {  # batch-per-rank name
  local pids=() r
  for (( r = 0; r < WORLD; r++ )); do
    WORLD_SIZE="$WORLD" RANK="$r" SAL_DIST_INIT_FILE="$TMP/$2.group" OMP_NUM_THREADS=$(( THREADS / WORLD )) \
      "${TRAIN[@]}" --batch "$1" --out "$TMP/$2" > "$TMP/$2.$r.txt" 2>&1 &
    pids+=($!)
  done
  for r in "${!pids[@]}"; do wait "${pids[$r]}" || { tail -n 5 "$TMP/$2.$r.txt" >&2; exit 1; }; done
  last_rate "$TMP/$2"  # rank 0's own batches
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for (( round = 1; round <= REPEATS; round++ )); do
  rm -rf "$TMP"/run*
  a=$(one_process "$THREADS" "$BATCH" run_one)
  b=$(ranks $(( BATCH / WORLD )) run_same_global)
  c=$(ranks "$BATCH" run_same_per_rank)
  d=$(one_process $(( THREADS / WORLD )) $(( BATCH / WORLD )) run_alone)
  echo "round $round (images/s: per process | in all)"
  echo "  one process, $THREADS threads, batch $BATCH:                 $a | $a"
  echo "  $WORLD ranks, $(( THREADS / WORLD )) thread(s) each, batch $(( BATCH / WORLD )) per rank: $b | $(python3 -c "print(f'{$b * $WORLD:.1f}')")"
  echo "  $WORLD ranks, $(( THREADS / WORLD )) thread(s) each, batch $BATCH per rank:  $c | $(python3 -c "print(f'{$c * $WORLD:.1f}')")"
  echo "  one process, $(( THREADS / WORLD )) thread(s), batch $(( BATCH / WORLD )) (one rank's work alone): $d | $d"
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
