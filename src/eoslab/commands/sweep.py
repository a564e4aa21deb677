"""``eoslab sweep CONFIG --out DIR``: train and analyse every point of a sweep config's grid, one
run directory per point under ``DIR/runs/<run_id>/`` (:mod:`eoslab.sweeps`).

A rerun skips finished points and resumes the others. Exit codes: 0 every point done, 1 some
point failed (the others still ran), 2 a bad sweep config (the message names the field).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("config", help="sweep config (TOML with [base] and [grid])")
    parser.add_argument("--out", required=True, metavar="DIR", help="sweep folder; rerunning resumes it")
    parser.add_argument(
        "--executor", choices=("local", "ray"), default="local", help="local worker processes (default) or Ray"
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local: concurrent runs (default cores // cpus-per-run), each with cores // N threads; "
        "ray without --address: the local Ray instance gets N × cpus-per-run CPUs",
    )
    parser.add_argument("--address", metavar="ADDR", help="ray: cluster address (default: start a local Ray)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, metavar="C", help="CPUs per run (default 1)")
    parser.add_argument(
        "--gpus-per-run", type=float, default=0.0, metavar="G", help="ray: GPUs per run, fractions allowed (default 0)"
    )
    parser.add_argument("--no-analysis", action="store_true", help="train only; do not analyse the runs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    from ..config import ConfigError
    from ..sweeps import load_sweep, run_sweep

    try:
        sweep = load_sweep(args.config)
    except ConfigError as e:
        print(f"eoslab sweep: error: {e}", file=sys.stderr)
        return 2
    try:
        result = run_sweep(
            sweep,
            args.out,
            executor=args.executor,
            workers=args.workers,
            address=args.address,
            cpus_per_run=args.cpus_per_run,
            gpus_per_run=args.gpus_per_run,
            analysis=not args.no_analysis,
            progress=not args.no_progress,
        )
    except ValueError as e:
        print(f"eoslab sweep: error: {e}", file=sys.stderr)
        return 2
    total, failed = len(result.statuses), result.failed
    print(
        f"{args.out}: {result.count('done')}/{total} done, {len(failed)} failed "
        f"({result.skipped} already finished before this run)"
    )
    for s in failed:
        print(f"  failed {s.run_id}: {s.reason}", file=sys.stderr)
    return 1 if failed else 0
