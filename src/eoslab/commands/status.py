"""``eoslab status DIR``: a table of a sweep's points (done / running / failed / pending) with
their step, loss and a note, then the counts and the reason of every failed point
(:func:`eoslab.sweeps.sweep_status`).
"""

from __future__ import annotations

import argparse
import sys

STYLES = {"done": "green", "running": "cyan", "failed": "red", "pending": "yellow"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("sweep_dir", metavar="DIR", help="sweep folder (written by eoslab sweep)")
    parser.add_argument(
        "--no-analysis", action="store_true", help="count trained runs as done even without their analysis"
    )


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..sweeps import sweep_status

    try:
        rows = sweep_status(args.sweep_dir, analysis=not args.no_analysis)
    except (OSError, ValueError) as e:
        print(f"eoslab status: error: {e}", file=sys.stderr)
        return 2
    cells = []
    counts = dict.fromkeys(STYLES, 0)
    for row, s in rows:
        counts[s.state] += 1
        cells.append(
            [
                row["run_id"],
                row["dataset"],
                str(row["n"]),
                row["criterion"],
                f"{row['init_seed']}/{row['subset_seed']}",
                s.state,
                "" if s.step is None else str(s.step),
                "" if s.loss is None else f"{s.loss:.4g}",
                s.detail,
            ]
        )
    table = Table(
        title=f"sweep {args.sweep_dir}", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )
    for j, name in enumerate(("run_id", "dataset", "n", "crit", "seeds", "state", "step", "loss", "note")):
        # a narrow terminal shortens the dataset name and folds the note; the other cells stay whole
        width = max([len(name)] + [len(c[j]) for c in cells])
        table.add_column(
            name,
            justify="right" if name in ("n", "step", "loss") else "left",
            no_wrap=name != "note",
            overflow="fold" if name == "note" else "ellipsis",
            min_width=None if name in ("dataset", "note") else width,
        )
    for c in cells:
        table.add_row(*c[:5], f"[{STYLES[c[5]]}]{c[5]}[/]", *c[6:])
    console = Console()
    console.print(table)
    console.print("  ".join(f"[{STYLES[k]}]{k}[/] {v}" for k, v in counts.items()) + f"  total {len(rows)}")
    for row, s in rows:
        if s.state == "failed":
            console.print(f"[red]failed[/] {row['run_id']}: {escape(str(s.reason))}", highlight=False, soft_wrap=True)
    return 0
