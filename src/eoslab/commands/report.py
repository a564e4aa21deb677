"""``eoslab report DIR --out REPORT_DIR``: power-law fits (Eq. 9, Table 2), the Section-5 checks,
the paper's figures and one ``index.html``, from a collected table or a sweep directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument(
        "source",
        metavar="DIR",
        help="a collected Parquet table, or a sweep directory (its collected.parquet, else collected now)",
    )
    parser.add_argument("--out", metavar="REPORT_DIR", help="report folder (default: report/ beside DIR's table)")
    parser.add_argument("--metric", default="eq7_c5", help="metric whose peak is fitted by Eq. 9 (default eq7_c5)")
    parser.add_argument("--layer", default="1", help="layer of --metric; 'none' for a whole-network metric (default 1)")
    parser.add_argument(
        "--skip-before",
        type=int,
        default=10,
        help="ignore steps below this, the transient (default 10, D13 in docs/decisions.md)",
    )
    parser.add_argument(
        "--per-size-means", action="store_true", help="fit the mean peak of each size instead of every run"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for b's interval")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")


def _load(source: Path):
    """The collected table of ``source``: a Parquet file, ``DIR/collected.parquet``, or
    ``eoslab.sweeps.collect(DIR)``.
    """
    from eoslab.store import read_parquet

    if source.is_file():
        return read_parquet(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is neither a collected Parquet table nor a sweep directory")
    if (source / "collected.parquet").is_file():
        return read_parquet(source / "collected.parquet")
    from eoslab.sweeps import collect

    return collect(source)


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    from rich.console import Console
    from rich.progress import track

    from eoslab.report import write_report

    console = Console(stderr=True)
    source = Path(args.source)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent) / "report"
    layer = None if str(args.layer).lower() == "none" else int(args.layer)
    try:
        table = _load(source)
        result = write_report(
            table,
            out,
            metric=args.metric,
            layer=layer,
            skip_before=args.skip_before,
            per_size_means=args.per_size_means,
            n_boot=args.bootstrap,
            seed=args.seed,
            source=str(source),
            track=lambda jobs: track(jobs, description="drawing figures", console=console, transient=True),
        )
    except (OSError, ValueError, RuntimeError) as e:
        print(f"eoslab report: error: {e}", file=sys.stderr)
        return 1
    for g in result.fits:
        if g.error:
            print(f"eoslab report: {g.dataset}/{g.criterion} not fitted: {g.error}", file=sys.stderr)
    failed = [c.name for c in result.checks if not c.holds]
    print(
        f"{len(result.fits)} power-law fit(s), {len(result.checks) - len(failed)}/{len(result.checks)} "
        f"Section-5 checks hold, {len(result.figures)} figure(s)"
    )
    print(f"report: {result.index.resolve()}")
    return 0
