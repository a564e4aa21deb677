"""``eoslab status DIR``: a table of a sweep's points (done / stopped / running / failed / pending / missing) with the
axes that vary between them (solver, η, ``model.gain``, ...), their step, loss and a note, then the
settings every point shares, the counts and the reason of every failed point
(:func:`eoslab.sweeps.sweep_status`).
"""

from __future__ import annotations

import argparse
import sys

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..sweeps import sweep_status, varying_axes

STYLES = {
    "done": "green",
    "stopped": "magenta",
    "running": "cyan",
    "failed": "red",
    "pending": "yellow",
    "missing": "red",
}
#: Short headers of the run columns.
HEADERS = {"criterion": "crit", "init_seed": "init", "subset_seed": "subset"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("sweep_dir", metavar="DIR", help="sweep folder (written by eoslab sweep)")
    parser.add_argument(
        "--no-analysis", action="store_true", help="count trained runs as done even without their analysis"
    )


def cell(value: object) -> str:
    """A value as shown in a table: floats with 4 significant digits, None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    rows = sweep_status(args.sweep_dir, analysis=not args.no_analysis)
    grid_rows = [row for row, _ in rows]
    axes = varying_axes(grid_rows)
    fixed = [k for k in (grid_rows[0] if grid_rows else {}) if k != "run_id" and k not in axes]
    counts = dict.fromkeys(STYLES, 0)
    cells = []
    for row, s in rows:
        counts[s.state] = counts.get(s.state, 0) + 1
        cells.append(
            [row["run_id"], *(cell(row[a]) for a in axes), s.state, cell(s.step), cell(s.loss), escape(s.detail)]
        )
    names = ["run_id", *(HEADERS.get(a, a) for a in axes), "state", "step", "loss", "note"]
    table = Table(
        title=f"sweep {args.sweep_dir}", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )
    numeric = {"step", "loss"} | {HEADERS.get(a, a) for a in axes if all(_number(r[a]) for r in grid_rows)}
    for j, name in enumerate(names):
        # a narrow terminal folds the note; the other cells stay whole
        width = max([len(name)] + [len(c[j]) for c in cells])
        table.add_column(
            name,
            justify="right" if name in numeric else "left",
            no_wrap=name != "note",
            overflow="fold" if name == "note" else "ellipsis",
            min_width=None if name == "note" else width,
        )
    state_at = 1 + len(axes)
    for c in cells:
        state = c[state_at]
        table.add_row(*c[:state_at], f"[{STYLES.get(state, 'white')}]{state}[/]", *c[state_at + 1 :])
    # off a terminal (a pipe, a file) nothing is cut to 80 columns: each row stays one whole line
    console = Console() if sys.stdout.isatty() else Console(width=1_000_000)
    console.print(table)
    if fixed:
        shared = "  ".join(f"{k}={cell(grid_rows[0][k])}" for k in fixed if grid_rows[0][k] is not None)
        console.print(f"every run: {escape(shared)}", highlight=False, soft_wrap=True)
    console.print(
        "  ".join(f"[{STYLES.get(k, 'white')}]{k}[/] {v}" for k, v in counts.items() if v or k != "missing")
        + f"  total {len(rows)}"
    )
    for row, s in rows:
        if s.state == "failed":
            console.print(f"[red]failed[/] {row['run_id']}: {escape(str(s.reason))}", highlight=False, soft_wrap=True)
    return 0


def _number(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))
