"""``eoslab status DIR``: a table of a sweep's points (done / running / failed / pending) with
their step, loss and, for failed ones, the reason; then the counts (:func:`eoslab.sweeps.sweep_status`)."""

from __future__ import annotations

import argparse
import sys

STYLES = {"done": "green", "running": "cyan", "failed": "red", "pending": "yellow"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", metavar="DIR", help="sweep folder (written by eoslab sweep)")
    parser.add_argument("--no-analysis", action="store_true",
                        help="count trained runs as done even without their analysis")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..sweeps import sweep_status

    try:
        rows = sweep_status(args.sweep_dir, analysis=not args.no_analysis)
    except (OSError, ValueError) as e:
        print(f"eoslab status: error: {e}", file=sys.stderr)
        return 2
    table = Table(title=f"sweep {args.sweep_dir}")
    for name in ("run_id", "dataset", "n", "criterion", "seeds", "state", "step", "loss", "reason / note"):
        table.add_column(name, justify="right" if name in ("n", "step", "loss") else "left",
                         overflow="fold", no_wrap=name != "reason / note")
    counts = dict.fromkeys(STYLES, 0)
    for row, s in rows:
        counts[s.state] += 1
        note = s.reason if s.state == "failed" else s.detail
        if s.state == "failed" and s.detail:
            note = f"{note} ({s.detail})"
        table.add_row(row["run_id"], row["dataset"], str(row["n"]), row["criterion"],
                      f"{row['init_seed']}/{row['subset_seed']}", f"[{STYLES[s.state]}]{s.state}[/]",
                      "" if s.step is None else str(s.step), "" if s.loss is None else f"{s.loss:.4g}", note or "")
    console = Console()
    console.print(table)
    console.print("  ".join(f"[{STYLES[k]}]{k}[/] {v}" for k, v in counts.items()) + f"  total {len(rows)}")
    return 0
