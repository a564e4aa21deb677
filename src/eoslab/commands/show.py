"""``eoslab show RUN``: one run at a glance: its state, problem and solver, steps and flow time,
the loss, λ¹ of H, G and R first → peak → last (Eq. 2) and the change of the Eq. 7 factors
C1..C5 of layer 1 over the analysed snapshots (:func:`eoslab.report.run.run_summary`). Without an
analysis, λ¹(H) comes from the eigenvalues the integrator computed. ``eoslab report RUN`` draws
the same run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..report.run import run_summary
from ..sweeps.grid import GRID_FILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("run_dir", metavar="RUN", help="a run directory (eoslab train --out, or SWEEP/runs/<run_id>)")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    path = Path(args.run_dir)
    if (path / GRID_FILE).is_file():
        raise UsageError(f"{path} is a sweep folder; `eoslab status {path}` lists its runs")
    summary = run_summary(path)
    lines = summary.lines()
    width = max(len(k) for k, _ in lines)
    for key, text in lines:
        print(f"{key:>{width}}  {text}")
    return 0
