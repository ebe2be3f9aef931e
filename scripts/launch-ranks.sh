#!/usr/bin/env bash
# Starts the ranks of one data-parallel run on this node (engine/data_parallel.h), like torchrun:
#
#   scripts/launch-ranks.sh --nproc N [options] -- COMMAND [ARGS...]
#     --nproc N          ranks on this node (one per GPU with --device cuda; CPU processes otherwise)
#     --nnodes M         nodes in the run (default 1); with M > 1 also:
#     --node-rank K      this node, 0 .. M-1: its ranks are K*N .. K*N+N-1
#     --init-file PATH   SAL_DIST_INIT_FILE (with M > 1: a path every node sees; default: a fresh
#                        temporary file on this node, removed at the end)
#     --grace S          seconds the other ranks get to stop by themselves after one fails (default 30)
#     --log-dir DIR      each rank's output in DIR/rank-R.log instead of the terminal
#
# Every rank gets WORLD_SIZE, RANK, LOCAL_RANK, SAL_DIST_INIT_FILE and, unless already set,
# OMP_NUM_THREADS = cores / N. Output of ranks other than 0 is prefixed "[rank R] ". SIGINT and SIGTERM
# go to every rank (sal_train then checkpoints after the current step). When a rank exits non-zero,
# the others get --grace seconds (CPU ranks notice a gone rank and stop by themselves; NCCL ranks may
# wait in an all-reduce forever), then SIGTERM, then after 10 s more SIGKILL. The exit code is the
# first failing rank's, else 0.
set -uo pipefail

nproc_local="" nnodes=1 node_rank=0 init_file="" grace=30 log_dir=""
usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --nproc) nproc_local="${2:-}"; shift 2 ;;
    --nnodes) nnodes="${2:-}"; shift 2 ;;
    --node-rank) node_rank="${2:-}"; shift 2 ;;
    --init-file) init_file="${2:-}"; shift 2 ;;
    --grace) grace="${2:-}"; shift 2 ;;
    --log-dir) log_dir="${2:-}"; shift 2 ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "launch-ranks: unknown option '$1' (the command goes after --)" >&2; usage ;;
  esac
done
[ $# -gt 0 ] || { echo "launch-ranks: no command after --" >&2; usage; }
is_count() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ]; }
is_count "$nproc_local" 1 || { echo "launch-ranks: --nproc must be a positive integer, got '$nproc_local'" >&2; exit 2; }
is_count "$nnodes" 1 || { echo "launch-ranks: --nnodes must be a positive integer, got '$nnodes'" >&2; exit 2; }
is_count "$node_rank" 0 && [ "$node_rank" -lt "$nnodes" ] ||
  { echo "launch-ranks: --node-rank must be in 0..$((nnodes - 1)), got '$node_rank'" >&2; exit 2; }
is_count "$grace" 0 || { echo "launch-ranks: --grace must be whole seconds, got '$grace'" >&2; exit 2; }
if [ "$nnodes" -gt 1 ] && [ -z "$init_file" ]; then
  echo "launch-ranks: --nnodes $nnodes needs --init-file on a filesystem every node sees" >&2; exit 2
fi
made_init=""
if [ -z "$init_file" ]; then
  init_file="$(mktemp -u "${TMPDIR:-/tmp}/sal-ranks.XXXXXX")"
  made_init=1
fi
[ -z "$log_dir" ] || mkdir -p "$log_dir" || exit 2
world=$((nproc_local * nnodes))
threads="${OMP_NUM_THREADS:-$(( $(nproc) / nproc_local > 0 ? $(nproc) / nproc_local : 1 ))}"

declare -a pids=()
for (( local = 0; local < nproc_local; local++ )); do
  rank=$((node_rank * nproc_local + local))
  vars=(WORLD_SIZE="$world" RANK="$rank" LOCAL_RANK="$local" SAL_DIST_INIT_FILE="$init_file" OMP_NUM_THREADS="$threads")
  if [ -n "$log_dir" ]; then
    env "${vars[@]}" "$@" > "$log_dir/rank-$rank.log" 2>&1 &
  elif [ "$rank" -eq 0 ]; then
    env "${vars[@]}" "$@" &
  else
    env "${vars[@]}" "$@" > >(sed -u "s/^/[rank $rank] /") 2> >(sed -u "s/^/[rank $rank] /" >&2) &
  fi
  pids+=($!)
done
echo "launch-ranks: $nproc_local of $world ranks started on this node (pids ${pids[*]}), OMP_NUM_THREADS=$threads," \
     "SAL_DIST_INIT_FILE=$init_file" >&2

signal_all() { for p in "${pids[@]}"; do kill "-$1" "$p" 2>/dev/null; done; }
trap 'echo "launch-ranks: passing SIGINT to every rank" >&2; signal_all INT' INT
trap 'echo "launch-ranks: passing SIGTERM to every rank" >&2; signal_all TERM' TERM

running() {  # how many ranks are still alive
  local n=0 p
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done
  echo "$n"
}

# Wait for the ranks one by one as they end; the first non-zero exit starts the teardown clock.
first_rc=0 failed_at=""
declare -A done_rc=()
while [ "${#done_rc[@]}" -lt "${#pids[@]}" ]; do
  for i in "${!pids[@]}"; do
    [ -n "${done_rc[$i]+x}" ] && continue
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      wait "${pids[$i]}"; rc=$?
      done_rc[$i]=$rc
      if [ "$rc" -ne 0 ] && [ "$first_rc" -eq 0 ]; then
        first_rc=$rc failed_at=$SECONDS
        echo "launch-ranks: rank $((node_rank * nproc_local + i)) exited with $rc; the others get $grace s to stop" >&2
      fi
    fi
  done
  if [ -n "$failed_at" ] && [ "$(running)" -gt 0 ]; then
    if [ $((SECONDS - failed_at)) -ge $((grace + 10)) ]; then
      echo "launch-ranks: killing the ranks still running" >&2; signal_all KILL
    elif [ $((SECONDS - failed_at)) -ge "$grace" ] && [ -z "${termed:-}" ]; then
      termed=1; echo "launch-ranks: SIGTERM to the ranks still running" >&2; signal_all TERM
    fi
  fi
  sleep 0.2
done
[ -z "$made_init" ] || rm -f "$init_file"
exit "$first_rc"
