"""``eoslab demo [--out DIR]``: the demo preset end to end on this machine: a small sweep (local
worker processes, training and analysis; exponential Euler runs and one gradient-descent run on
the edge of stability), and the report of the sweep as it is then in ``DIR/report/`` (power-law
fits, Section-5 checks, figures, ``index.html``; the table it was made from is
``DIR/report/collected.parquet``).

The preset ships inside the package (:mod:`eoslab.presets`), so the demo runs from an installed
wheel; ``eoslab init demo`` copies it out to edit. Rerunning resumes: finished runs are kept. Exit
code 1 if some run failed (the report is still written from the others), 2 if the config cannot
be read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..report import write_report
from ..store import write_parquet
from ..sweeps import load_sweep, run_sweep
from .report import figure_track, load_source

#: The demo preset's name (:mod:`eoslab.presets`).
DEMO_PRESET = "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("--out", default="eoslab-demo", metavar="DIR", help="output folder (default ./eoslab-demo)")
    parser.add_argument(
        "--config",
        default=DEMO_PRESET,
        metavar="TOML",
        help="sweep config or preset to run (default: the demo preset)",
    )
    parser.add_argument("--workers", type=int, metavar="N", help="concurrent runs (default: one per core)")
    parser.add_argument(
        "--threads-per-run",
        type=int,
        metavar="T",
        help="threads of each run (default: $OMP_NUM_THREADS, else cores // N)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    out = Path(args.out)
    start = time.monotonic()
    sweep = load_sweep(args.config)
    print(f"demo: {len(sweep.points)} runs of {args.config} into {out}", file=sys.stderr, flush=True)
    result = run_sweep(
        sweep, out, workers=args.workers, threads_per_run=args.threads_per_run, progress=not args.no_progress
    )
    for s in result.failed:
        print(f"eoslab demo: run {s.run_id} failed: {s.reason}", file=sys.stderr)
    table, headline, left_out = load_source(out)
    print("\n  ".join([headline, *left_out]), flush=True)
    write_parquet(table, out / "report" / "collected.parquet")
    progress = figure_track(not args.no_progress)
    report = write_report(table, out / "report", source=str(out), headline=headline, notes=left_out, track=progress)
    print(
        f"demo: {result.count('done')}/{len(result.statuses)} runs done ({result.plan}), {table.num_rows} analysis "
        f"rows, {len(report.fits)} power-law fit(s), {len(report.figures)} figures in {time.monotonic() - start:.0f} s"
    )
    print(f"report: {report.index.resolve()}")
    return 1 if result.failed else 0
