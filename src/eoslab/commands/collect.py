"""``eoslab collect DIR [--out TABLE.parquet] [--include-stopped]``: join a sweep's run configs
with their analyses into one tidy long Parquet table (:func:`eoslab.sweeps.collect`; default
``DIR/collected.parquet``): the run columns, one typed column per other axis of the grid
(``model.gain``, ...), then the analysis rows and the trajectory's (the loss at every step, λ¹(H)
at every measured step; :func:`eoslab.sweeps.point.trajectory_rows`). Only runs that reached their target loss go in
(``--include-stopped`` adds those a step or time limit stopped); the command says how many were
left out and why. The table records what it holds, so ``eoslab report TABLE`` refuses it once the
sweep has moved on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..store import write_parquet
from ..sweeps import collect, collect_info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("sweep_dir", metavar="DIR", help="sweep folder (written by eoslab sweep)")
    parser.add_argument("--out", metavar="TABLE.parquet", help="output table (default DIR/collected.parquet)")
    parser.add_argument(
        "--include-stopped",
        action="store_true",
        help="also collect runs a step or time limit stopped before the target loss (default: done runs only)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    out = Path(args.out) if args.out else Path(args.sweep_dir) / "collected.parquet"
    table = collect(args.sweep_dir, include_stopped=args.include_stopped)
    write_parquet(table, out)
    info = collect_info(table)
    assert info is not None  # collect() records it
    print("\n  left out ".join([f"{out}: {table.num_rows} rows from {info.headline()}", *info.left_out_lines()]))
    return 0
