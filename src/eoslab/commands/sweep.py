"""``eoslab sweep CONFIG --out DIR``: train and analyse every point of a sweep config's grid, one
run directory per point under ``DIR/runs/<run_id>/`` (:mod:`eoslab.sweeps`). CONFIG is a file or a
preset's name (``eoslab sweep demo --out DIR``; ``eoslab init --list`` lists them).

The plan (``2 workers × 1 thread``) is printed first; threads per run come from
``--threads-per-run``, else ``OMP_NUM_THREADS``, else the cores shared out over the workers.

A rerun skips finished points and resumes the others. A folder holds one sweep: another sweep
config into it is refused unless ``--force`` (which says what it replaces), and a second
``eoslab sweep`` into a folder in use fails at once. Exit codes: 0 every point done or stopped
(by max_steps / max_time_s, above its target), 1 some point failed (the others still ran), 2 a
bad sweep config (the message names the field), a folder that holds another sweep or is in use,
or a Ray cluster that does not answer.
"""

from __future__ import annotations

import argparse
import sys

from ..sweeps import load_sweep, run_sweep
from ._arguments import positive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("config", help="sweep config (TOML with [base] and [grid]) or a preset's name, e.g. demo")
    parser.add_argument("--out", required=True, metavar="DIR", help="sweep folder; rerunning resumes it")
    parser.add_argument(
        "--executor", choices=("local", "ray"), default="local", help="local worker processes (default) or Ray"
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local: concurrent runs (default: one per GPU for GPU runs, else cores // threads per run); "
        "ray without --address: the local Ray instance gets N × cpus-per-run CPUs",
    )
    parser.add_argument(
        "--threads-per-run",
        type=positive,
        metavar="T",
        help="torch/OpenMP threads of each run (default: $OMP_NUM_THREADS, else cores // workers)",
    )
    parser.add_argument("--address", metavar="ADDR", help="ray: cluster address (default: start a local Ray)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, metavar="C", help="CPUs per run (default 1)")
    parser.add_argument(
        "--gpus-per-run", type=float, default=0.0, metavar="G", help="ray: GPUs per run, fractions allowed (default 0)"
    )
    parser.add_argument("--no-analysis", action="store_true", help="train only; do not analyse the runs")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace another sweep in DIR (its sweep.toml and grid.parquet; its run directories stay)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    sweep = load_sweep(args.config)
    result = run_sweep(
        sweep,
        args.out,
        executor=args.executor,
        workers=args.workers,
        address=args.address,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run,
        threads_per_run=args.threads_per_run,
        analysis=not args.no_analysis,
        progress=not args.no_progress,
        force=args.force,
    )
    total, failed = len(result.statuses), result.failed
    stopped = f", {result.count('stopped')} stopped above their target" if result.count("stopped") else ""
    print(
        f"{args.out}: {result.count('done')}/{total} done{stopped}, {len(failed)} failed "
        f"({result.skipped} already finished before this run) on {result.plan}"
    )
    for s in failed:
        print(f"  failed {s.run_id}: {s.reason}", file=sys.stderr)
    return 1 if failed else 0
