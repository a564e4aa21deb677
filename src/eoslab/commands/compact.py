"""``eoslab compact RUN_DIR...``: drop the snapshots a run's analysis no longer needs
(:func:`eoslab.runs.compact_run`), so that a long run can be moved, kept or committed.

Run it between ``eoslab analyze`` and the next ``eoslab train`` of the run: analysed parameter
snapshots and old state files go, the newest snapshot pair stays (without its warm start), and so
does every snapshot the analysis has not covered, unless ``--thin K`` drops those off every K-th
step (from ``--thin-from STEP`` on). Exit codes: 0 compacted, 1 a file that does not verify or
cannot be written, 2 not a run directory, analysis.every other than 1, or a run in use by another
process.
"""

from __future__ import annotations

import argparse

from ..runs import compact_run
from ._arguments import nonnegative, positive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="run directories written by `eoslab train`")
    parser.add_argument(
        "--thin",
        type=positive,
        default=None,
        metavar="K",
        help="also drop the unanalysed snapshots whose step is not a multiple of K (the analysis then has one "
        "every K steps there; a note in status.json says so)",
    )
    parser.add_argument(
        "--thin-from",
        type=nonnegative,
        default=0,
        metavar="STEP",
        help="thin only the snapshots from this step on (default 0: all)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    for run_dir in args.run_dirs:
        print(compact_run(run_dir, thin=args.thin, thin_from=args.thin_from).text())
    return 0
