"""``eoslab collect DIR [--out TABLE.parquet]``: join a sweep's run configs with their analyses
into one tidy long Parquet table (:func:`eoslab.sweeps.collect`; default ``DIR/collected.parquet``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("sweep_dir", metavar="DIR", help="sweep folder (written by eoslab sweep)")
    parser.add_argument("--out", metavar="TABLE.parquet", help="output table (default DIR/collected.parquet)")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    from ..store import write_parquet
    from ..sweeps import collect, sweep_status

    out = Path(args.out) if args.out else Path(args.sweep_dir) / "collected.parquet"
    try:
        table = collect(args.sweep_dir)
        points = len(sweep_status(args.sweep_dir))
    except (OSError, ValueError) as e:
        print(f"eoslab collect: error: {e}", file=sys.stderr)
        return 2
    write_parquet(table, out)
    runs = len(set(table["run_id"].to_pylist()))
    print(f"{out}: {table.num_rows} rows from {runs}/{points} finished runs")
    return 0
