"""``eoslab report SOURCE [--out REPORT_DIR]``: power-law fits (Eq. 9, Table 2), the Section-5
checks, the paper's figures and one ``index.html``.

SOURCE is

* a sweep folder: collected afresh (:func:`eoslab.sweeps.collect`), so the report is always of
  the sweep as it is now; the table it was made from is kept as ``REPORT_DIR/collected.parquet``;
* a collected Parquet table: checked against its sweep (:func:`eoslab.sweeps.stale_reason`) and
  refused when the sweep has changed since (runs finished, failed or re-analysed);
* a run directory: the report of that one run (:mod:`eoslab.report.run`);
* several sweep folders or collected tables: the *parts* of one sweep that did not fit one
  sitting (say, its small sizes, then its large ones, each collected and committed when it
  finished): each part is checked as above, a run in two parts is refused, and the report is of
  their union, its page naming every part and the code that ran it (``code.txt``,
  :mod:`eoslab.provenance`); ``--out`` is then required.

The first line printed (and the page's first line) says what the report holds: ``8 of 9 runs
(left out: 1 stopped (max_steps 2000 reached); --include-stopped)``.

Every option is checked against what SOURCE holds before anything is written
(:func:`eoslab.report.check_options`): a metric the table lacks, a layer the metric does not have,
a ``--skip-before`` past the last analysed step, or a sweep-report option given for a single run is
a one-line error that names the valid values, with exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.progress import track

from eoslab.report import check_options, collected_frame, write_report
from eoslab.report.run import is_run_dir, write_run_report
from eoslab.store import read_parquet, write_parquet
from eoslab.sweeps import collect, collect_info, stale_reason
from eoslab.sweeps.grid import GRID_FILE

from ..constants import SKIP_BEFORE
from ..errors import ReportError, UsageError
from ._arguments import nonnegative, positive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument(
        "source",
        metavar="SOURCE",
        nargs="+",
        help="a sweep folder (collected afresh), a collected Parquet table (checked against its sweep), "
        "or a run directory; several sweep folders or tables: the parts of one sweep, reported together (needs --out)",
    )
    parser.add_argument(
        "--out", metavar="REPORT_DIR", help="report folder (default: SOURCE/report, or report/ beside the table)"
    )
    parser.add_argument(
        "--include-stopped",
        action="store_true",
        help="also report runs a step or time limit stopped before the target loss (default: done runs only)",
    )
    parser.add_argument(
        "--metric", help=f"metric whose peak is fitted by Eq. 9 (default {DEFAULTS['metric']}); one the table holds"
    )
    parser.add_argument(
        "--layer",
        type=_layer,
        help="layer of --metric, one the table holds; 'none' for a whole-network metric "
        "(default: 1 for a per-layer metric, none for a whole-network one)",
    )
    parser.add_argument(
        "--skip-before",
        type=nonnegative,
        help=f"ignore steps below this, the transient (default {DEFAULTS['skip_before']}, D13 in docs/decisions.md; "
        "a single run's report: the run's analysis.skip_before)",
    )
    parser.add_argument(
        "--per-size-means", action="store_true", help="fit the mean peak of each size instead of every run"
    )
    parser.add_argument(
        "--bootstrap",
        type=positive,
        help=f"bootstrap resamples for b's interval (default {DEFAULTS['bootstrap']})",
    )
    parser.add_argument("--seed", type=int, help=f"seed of the bootstrap (default {DEFAULTS['seed']})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


#: The sweep report's defaults of the options a single run's report does not take.
DEFAULTS: dict[str, Any] = {"metric": "eq7_c5", "skip_before": SKIP_BEFORE, "bootstrap": 1000, "seed": 0}
#: Options of the sweep report only: (attribute, flag).
SWEEP_ONLY = (
    ("metric", "--metric"),
    ("layer", "--layer"),
    ("per_size_means", "--per-size-means"),
    ("bootstrap", "--bootstrap"),
    ("seed", "--seed"),
    ("include_stopped", "--include-stopped"),
)


def _layer(text: str) -> int | str:
    """``--layer``: ``"none"`` (a whole-network metric) or a layer number >= 1."""
    if text.lower() == "none":
        return "none"
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a layer: a number >= 1, or 'none' (a whole-network metric)")
    return int(text)


def figure_track(enabled: bool):
    """A progress bar over the figures to draw (on stderr, cleared when done), or none."""
    if not enabled:
        return lambda jobs: jobs

    console = Console(stderr=True)
    return lambda jobs: track(jobs, description="drawing figures", console=console, transient=True)


def _sweep_of_table(path: Path, recorded: str) -> Path | None:
    """The sweep folder of a collected table: the folder it lies in when that is a sweep (a
    moved or copied sweep), else the one recorded at collect time, if it is still there.
    """
    for candidate in (path.parent, Path(recorded)):
        if (candidate / GRID_FILE).is_file():
            return candidate
    return None


def load_source(source: Path, *, include_stopped: bool = False):
    """The collected table of a sweep folder or a table file, its headline (``report on 8 of 9
    runs of sweep DIR (left out: ...)``) and why each left-out run is left out (lines).

    Raises:
        ReportError: a stale table, a table collected without ``include_stopped`` when asked for it,
            or no run to report.
        FileNotFoundError: neither a sweep folder nor a table.
    """
    if source.is_dir() and (source / GRID_FILE).is_file():
        table = collect(source, include_stopped=include_stopped)
        info = collect_info(table)
        assert info is not None  # collect() records it
        headline = f"report on {info.headline()} of sweep {source}"
    elif source.is_file():
        table = read_parquet(source)
        info = collect_info(table)
        if info is None:
            headline = f"report on table {source} (not written by `eoslab collect`: not checked against a sweep)"
        else:
            if include_stopped and not info.include_stopped:
                raise ReportError(
                    f"{source} was collected without stopped runs; collect again with --include-stopped, "
                    "or report the sweep folder"
                )
            sweep = _sweep_of_table(source, info.sweep)
            if sweep is None:
                headline = (
                    f"report on {info.headline()} of table {source}, collected {info.collected_at} from {info.sweep} "
                    "(that sweep folder is not here: NOT checked that the table is current)"
                )
            else:
                reason = stale_reason(info, sweep)
                if reason is not None:
                    raise ReportError(
                        f"{source} is stale: {reason}. Report the sweep folder (`eoslab report {sweep}`) "
                        f"or collect it again (`eoslab collect {sweep}`)"
                    )
                headline = f"report on {info.headline()} of sweep {sweep} (table {source}, current)"
    else:
        raise FileNotFoundError(f"{source} is neither a sweep folder, a run directory nor a collected Parquet table")
    if table.num_rows == 0:
        what = info.headline() if info is not None else "0 runs"
        raise ReportError(f"nothing to report: {what}")
    return (
        table,
        headline,
        []
        if info is None
        else [*info.mixed_lines(), *(f"left out {x}" for x in info.left_out_lines()), *info.note_lines()],
    )


def load_parts(sources: list[Path], *, include_stopped: bool = False):
    """The union of several parts' collected tables (:func:`load_source` each), a headline and,
    per part, a line naming it, its runs and the code that ran it, then its left-out runs.

    Raises:
        ReportError: a run in two parts, or what :func:`load_source` raises for a part.
    """
    tables: list[pa.Table] = []
    lines: list[str] = []
    seen: dict[str, Path] = {}  # {run id: the part that holds it}
    for i, source in enumerate(sources, 1):
        table, headline, left_out = load_source(source, include_stopped=include_stopped)
        info = collect_info(table)
        for run_id in dict.fromkeys(table.column("run_id").to_pylist()):
            if run_id in seen:
                raise ReportError(f"run {run_id} is in two parts: {seen[run_id]} and {source}")
            seen[run_id] = source
        code = info.code_text() if info is not None else "code not recorded"
        lines.append(f"part {i}: {headline.removeprefix('report on ')}; {code}")
        lines += [f"  {line}" for line in left_out]
        tables.append(table.replace_schema_metadata(None))
    merged = pa.concat_tables(tables, promote_options="default")
    return merged, f"report on {len(sources)} parts, {len(seen)} runs", lines


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    sources = [Path(s) for s in args.source]
    source = sources[0]
    if len(sources) > 1 and not args.out:
        raise UsageError("several SOURCEs (the parts of a sweep) need --out REPORT_DIR")
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent) / "report"
    progress = figure_track(not args.no_progress)
    if len(sources) > 1 and any(s.is_dir() and is_run_dir(s) for s in sources):
        raise ReportError("a run directory is reported alone; several SOURCEs are the parts of a sweep")
    if len(sources) == 1 and source.is_dir() and is_run_dir(source):
        given = [flag for name, flag in SWEEP_ONLY if getattr(args, name) not in (None, False)]
        if given:
            raise ReportError(
                f"{', '.join(given)}: option(s) of a sweep's report; {source} is a single run "
                "(its report takes --out, --skip-before and --no-progress)"
            )
        print(f"report on run {source}", flush=True)
        result = write_run_report(source, out, skip_before=args.skip_before, track=progress)
        print(f"{len(result.figures)} figure(s)")
        print(f"report: {result.index.resolve()}")
        return 0
    if len(sources) > 1:
        table, headline, left_out = load_parts(sources, include_stopped=args.include_stopped)
    else:
        table, headline, left_out = load_source(source, include_stopped=args.include_stopped)
    frame = collected_frame(table)
    options = {k: DEFAULTS[k] if getattr(args, k) is None else getattr(args, k) for k in DEFAULTS}
    layer = check_options(
        frame,
        metric=options["metric"],
        layer="auto" if args.layer is None else None if args.layer == "none" else args.layer,
        skip_before=options["skip_before"],
    )
    print("\n  ".join([headline, *left_out]), flush=True)
    if len(sources) > 1 or source.is_dir():
        write_parquet(table, out / "collected.parquet")
    result = write_report(
        frame,
        out,
        metric=options["metric"],
        layer=layer,
        skip_before=options["skip_before"],
        per_size_means=args.per_size_means,
        n_boot=options["bootstrap"],
        seed=options["seed"],
        source=", ".join(map(str, sources)),
        headline=headline,
        notes=left_out,
        track=progress,
    )
    for g in result.fits:
        if g.error:
            print(f"eoslab report: {g.group.name} not fitted: {g.error}", file=sys.stderr)
    for note in result.notes:
        if note.lstrip().startswith("WARNING"):  # a part's lines are indented under it
            print(f"eoslab report: {note.lstrip()}", file=sys.stderr)
    failed = [c.name for c in result.checks if not c.holds]
    print(
        f"{len(result.fits)} power-law fit(s), {len(result.checks) - len(failed)}/{len(result.checks)} "
        f"Section-5 checks hold, {len(result.figures)} figure(s)"
    )
    print(f"report: {result.index.resolve()}")
    return 0
