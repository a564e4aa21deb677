"""``eoslab demo [--out DIR]``: the demo preset end to end on this machine: a small sweep (local
worker processes, training and analysis), ``DIR/collected.parquet``, and the report in
``DIR/report/`` (power-law fits, Section-5 checks, figures, ``index.html``).

Rerunning resumes: finished runs are kept. Exit code 1 if some run failed (the report is still
written from the others), 2 if the preset cannot be found or read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

#: The demo preset, in the repository's configs/ folder.
DEMO_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "demo.toml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("--out", default="eoslab-demo", metavar="DIR", help="output folder (default ./eoslab-demo)")
    parser.add_argument(
        "--config",
        default=str(DEMO_CONFIG),
        metavar="TOML",
        help="sweep config to run (default: the repository's configs/demo.toml)",
    )
    parser.add_argument("--workers", type=int, metavar="N", help="concurrent runs (default: one per core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    from rich.console import Console
    from rich.progress import track

    from ..config import ConfigError
    from ..report import write_report
    from ..store import write_parquet
    from ..sweeps import collect, load_sweep, run_sweep

    console = Console(stderr=True)
    out = Path(args.out)
    start = time.monotonic()
    try:
        sweep = load_sweep(args.config)
    except ConfigError as e:
        print(f"eoslab demo: error: {e}", file=sys.stderr)
        return 2
    console.print(f"demo: {len(sweep.points)} runs from {args.config} into {out}", highlight=False)
    result = run_sweep(sweep, out, workers=args.workers, progress=not args.no_progress)
    for s in result.failed:
        print(f"eoslab demo: run {s.run_id} failed: {s.reason}", file=sys.stderr)
    table = collect(out)
    write_parquet(table, out / "collected.parquet")
    if table.num_rows == 0:
        print("eoslab demo: error: no run finished; nothing to report", file=sys.stderr)
        return 1
    progress = (
        (lambda jobs: jobs)
        if args.no_progress
        else (lambda jobs: track(jobs, description="drawing figures", console=console, transient=True))
    )
    report = write_report(table, out / "report", source=str(out), track=progress)
    print(
        f"demo: {result.count('done')}/{len(result.statuses)} runs done, {table.num_rows} analysis rows, "
        f"{len(report.figures)} figures in {time.monotonic() - start:.0f} s"
    )
    print(f"report: {report.index.resolve()}")
    return 1 if result.failed else 0
