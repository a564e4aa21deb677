"""``eoslab analyze RUN_DIR``: the decomposition of docs/math.md §3–§6 for every snapshot of a run,
written to ``RUN_DIR/analysis.parquet`` (resumable; :func:`eoslab.runs.analyze_run`).

The run is checked first: its ``config.toml`` and data must be those it was created with, and
every snapshot must match its checksum (:mod:`eoslab.rundir`); a corrupt ``analysis.parquet`` is
recomputed, loudly. Exit codes: 0 written, 1 a snapshot or file that does not verify, data that
cannot be loaded or a file that cannot be written, 2 not a run directory, a bad or changed
``config.toml``, or a run in use by another process. Every error is one line naming the file and
the fix.
"""

from __future__ import annotations

import argparse

from ..runs import analyze_run
from ._arguments import nonnegative, positive, positive_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `eoslab train`")
    parser.add_argument(
        "--every",
        type=positive,
        default=None,
        metavar="N",
        help="analyse every N-th snapshot (default: the run config's analysis.every)",
    )
    parser.add_argument(
        "--skip-before",
        type=nonnegative,
        default=None,
        metavar="STEP",
        help="skip snapshots before this step (D13 in docs/decisions.md; default: analysis.skip_before, 10)",
    )
    parser.add_argument(
        "--tol",
        type=positive_float,
        default=None,
        help="relative residual tolerance of the λ¹ solves (default: analysis.eig_tol, 1e-4)",
    )
    parser.add_argument(
        "--chunk-size",
        type=positive,
        default=None,
        metavar="N",
        help="samples per chunk of the per-sample part (default: analysis.chunk_size)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    path = analyze_run(
        args.run_dir,
        every=args.every,
        skip_before=args.skip_before,
        tol=args.tol,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    print(f"wrote {path}")
    return 0
