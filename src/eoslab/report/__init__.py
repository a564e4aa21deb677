"""The report of a sweep: the collected table it reads, and the report as a whole.

The input is the *collected* table (``eoslab collect``): one tidy long table, one row per
``(run, step, metric, layer)``, with the run's configuration repeated on every row::

    run_id, dataset, n, criterion, init_seed, subset_seed, width, depth, solver, eta, eta_max,
    [one column per other axis of the sweep, named by its field: model.gain, ...],
    step, t, metric, layer, value

``metric`` uses the names of ``analysis.parquet`` (docs/metrics.md), and the two of each run's
trajectory (:data:`eoslab.sweeps.point.TRAJECTORY_METRICS`: the loss at every step, λ¹(H) at every
measured step; :func:`split_trajectory` separates them); ``layer`` is null for whole-network
metrics and ``value`` is NaN for a negative top eigenvalue (docs/decisions.md, D12).

The report fits and draws one *group* per combination of the axes that vary between the runs,
other than ``n`` and the seeds (:mod:`eoslab.report.groups`): a sweep over ``model.gain`` gets
one Eq. 9 fit per gain, never one pooled fit. The parts of the report live in submodules, one
concept each:

* :mod:`eoslab.report.groups` -- which runs belong together;
* :mod:`eoslab.report.powerlaw` -- the power law of peak alignment against ``n`` (Eq. 9, Table 2);
* :mod:`eoslab.report.checks` -- the numbers of the paper's Section 5 on our runs;
* :mod:`eoslab.report.figures` -- the paper's figure families (Figs. 1-4 and the supplement);
* :mod:`eoslab.report.html` -- one static ``index.html`` that shows them together;
* :mod:`eoslab.report.run` -- the report of a single run directory.

:func:`write_report` draws all of them into one folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from eoslab.constants import SKIP_BEFORE as SKIP_BEFORE
from eoslab.sweeps.grid import FIELD_OF_COLUMN
from eoslab.sweeps.grid import RUN_COLUMNS as RUN_SCHEMA

if TYPE_CHECKING:
    import pandas as pd

    from .checks import Check
    from .figures import FigureFile, FigureJob
    from .powerlaw import GroupFit

#: Columns every collected table must have.
REQUIRED_COLUMNS = ("run_id", "dataset", "n", "criterion", "step", "t", "metric", "layer", "value")
#: Columns of the rows of ``analysis.parquet``; every other column describes the run.
ANALYSIS_COLUMNS = ("step", "t", "metric", "layer", "value")
#: The solver whose runs the analyses of the paper use (exponential Euler, docs/math.md §7).
ANALYSIS_SOLVER = "exp_euler"


def _run_columns() -> dict[str, Any]:
    """The run columns of ``grid.parquet`` (:data:`eoslab.sweeps.grid.RUN_COLUMNS`) with the
    solver's settings (``solver.*`` and ``train.target_loss``) right after the problem
    (``criterion``), the order groups are named in, each with the value a table that lacks it
    gets: ``None`` for a string and ``n``, -1 for an integer, NaN for a float, and
    :data:`ANALYSIS_SOLVER` for ``solver``.
    """

    def default(field: pa.Field) -> Any:
        if field.name == "solver":
            return ANALYSIS_SOLVER
        if field.name == "n" or not (pa.types.is_integer(field.type) or pa.types.is_floating(field.type)):
            return None
        return -1 if pa.types.is_integer(field.type) else float("nan")

    solver = [f for f in RUN_SCHEMA if FIELD_OF_COLUMN.get(f.name, "").startswith(("solver.", "train."))]
    rest = [f for f in RUN_SCHEMA if f not in solver]
    after = [f.name for f in rest].index("criterion") + 1
    return {f.name: default(f) for f in [*rest[:after], *solver, *rest[after:]]}


#: Columns that describe a run (constant over its rows), with the values the ones absent get.
RUN_COLUMNS: dict[str, Any] = _run_columns()


def collected_frame(table: Any) -> pd.DataFrame:
    """The collected table as a pandas DataFrame the report can rely on.

    Accepts a ``pyarrow.Table`` or a ``pandas.DataFrame``. Missing optional run columns are
    filled with their defaults (``solver`` = ``"exp_euler"``), ``layer`` becomes a float column
    with NaN for whole-network metrics, and ``value`` a float column. Columns that are neither run
    columns nor analysis columns are the sweep's other axes (:func:`axis_columns`).

    Raises:
        ValueError: if the table is empty, lacks a required column, or a run's configuration
            (dataset, n, criterion, solver, eta, any other axis) differs between its rows.
    """
    import pandas as pd
    import pyarrow as pa

    from ..store import to_frame

    frame = to_frame(table) if isinstance(table, pa.Table) else pd.DataFrame(table).copy()
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"collected table lacks the column(s) {', '.join(missing)}; "
            f"it needs {', '.join(REQUIRED_COLUMNS)} (see eoslab.report)"
        )
    if frame.empty:
        raise ValueError("collected table is empty: no (run, step, metric) rows to report on")
    for column, default in RUN_COLUMNS.items():
        if column not in frame.columns:
            frame[column] = default
    frame["run_id"] = frame["run_id"].astype(str)
    frame["n"] = frame["n"].astype("int64")
    frame["layer"] = pd.to_numeric(frame["layer"], errors="coerce").astype("float64")
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    describe = [*RUN_COLUMNS, *axis_columns(frame)]
    runs = frame[describe].astype(str).drop_duplicates()
    clash = runs["run_id"][runs["run_id"].duplicated()]
    if len(clash):
        raise ValueError(
            f"run {clash.iloc[0]!r} has different configurations on different rows "
            f"({', '.join(c for c in describe if c != 'run_id')} must be constant per run)"
        )
    return frame


def axis_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of a collected frame that describe runs beyond :data:`RUN_COLUMNS` (the
    sweep's other axes, e.g. ``model.gain``), in table order.
    """
    return [c for c in frame.columns if c not in RUN_COLUMNS and c not in ANALYSIS_COLUMNS]


def runs_of(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its ``run_id`` and configuration columns (other axes included), sorted
    by dataset, criterion, n and id.
    """
    runs = frame[[*RUN_COLUMNS, *axis_columns(frame)]].drop_duplicates("run_id")
    return runs.sort_values(["dataset", "criterion", "n", "run_id"]).reset_index(drop=True)


def split_trajectory(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A collected frame's analysis rows, and its trajectory rows (the metrics of
    :data:`eoslab.sweeps.point.TRAJECTORY_METRICS`; none in a table collected before them).
    """
    from eoslab.sweeps.point import TRAJECTORY_METRICS

    is_trajectory = frame["metric"].isin(list(TRAJECTORY_METRICS))
    return frame[~is_trajectory], frame[is_trajectory]


def flow_departures(trajectory: pd.DataFrame) -> str | None:
    """A warning when exponential Euler runs of a collected table's trajectory rows
    (:func:`split_trajectory`) raised their loss — left the gradient flow
    (:func:`eoslab.integrators.departure_note`), so their analysed quantities are not the flow's —
    naming how many runs and the worst; None when none did (or the table has no trajectories).
    """
    from eoslab.integrators import loss_rises

    rows = trajectory[(trajectory["metric"] == "trajectory_loss") & (trajectory["solver"] == ANALYSIS_SOLVER)]
    worst: dict[str, float] = {}
    for run_id, run in rows.groupby("run_id", sort=False):
        losses = run.sort_values("step")["value"].tolist()
        rises = loss_rises(losses)
        if rises:
            worst[run_id] = max(losses[u + 1] / losses[u] for u in rises)
    if not worst:
        return None
    top = max(worst, key=worst.get)
    return (
        f"WARNING: the loss rose along exponential Euler in {len(worst)} of {rows['run_id'].nunique()} runs "
        f"(the largest step ×{worst[top]:.3g}, run {top}): those runs left the gradient flow, and their quantities "
        "are not the flow's; rerun them with a smaller solver.eta_max or solver.step_c"
    )


def metric_rows(frame: pd.DataFrame, metric: str, layer: int | None = None) -> pd.DataFrame:
    """The rows of one metric; of one ``layer``, or the whole-network rows when ``layer`` is None."""
    rows = frame[frame["metric"] == metric]
    return rows[rows["layer"].isna()] if layer is None else rows[rows["layer"] == layer]


def check_options(
    frame: pd.DataFrame, *, metric: str, layer: int | None | Literal["auto"] = "auto", skip_before: int = SKIP_BEFORE
) -> int | None:
    """Check the report's options against what a collected frame holds, and return the layer to
    fit ``metric`` at (``"auto"``: 1 for a per-layer metric, None for a whole-network one).

    Only analysis metrics are fitted: the trajectory's rows (:func:`split_trajectory`) are not
    among the valid values.

    Raises:
        ValueError: naming the valid values, for a metric the table lacks, a layer the metric does
            not have there (or a layer for a whole-network metric, none for a per-layer one), or a
            ``skip_before`` that leaves no analysed step.
    """
    import difflib

    frame = split_trajectory(frame)[0]
    metrics = sorted(frame["metric"].unique())
    if metric not in metrics:
        close = difflib.get_close_matches(metric, metrics, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"no metric {metric!r} in the table; {hint}it holds: {', '.join(metrics)}")
    rows = frame[frame["metric"] == metric]
    layers = sorted(int(i) for i in rows["layer"].dropna().unique())
    whole = bool(rows["layer"].isna().any())
    if layer == "auto":
        layer = None if whole else min(layers)
    if layer is None and not whole:
        raise ValueError(f"{metric} is a per-layer metric: pass --layer {_span(layers)}")
    if layer is not None and layer not in layers:
        valid = f"its layers in this table are {_span(layers)}" if layers else "it is a whole-network metric"
        raise ValueError(f"{metric} has no layer {layer}: {valid}" + ("" if layers else " (--layer none)"))
    steps = rows["step"]
    if not 0 <= skip_before <= steps.max():
        raise ValueError(
            f"--skip-before {skip_before} leaves no analysed step: the table's {metric} steps run "
            f"from {steps.min()} to {steps.max()}"
        )
    return layer


def _span(layers: list[int]) -> str:
    """``1..5`` for consecutive layers, else ``1, 3, 4``."""
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return ", ".join(map(str, layers))


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote: the folder, its ``index.html``, the fits, the checks, the
    figure files and the notes on what was skipped.
    """

    out_dir: Path
    index: Path
    fits: list[GroupFit]
    checks: list[Check]
    figures: list[FigureFile]
    notes: list[str]


def write_report(
    table: Any,
    out_dir: str | Path,
    *,
    metric: str = "eq7_c5",
    layer: int | None = 1,
    skip_before: int = SKIP_BEFORE,
    per_size_means: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    source: str = "",
    headline: str = "",
    notes: Sequence[str] = (),
    track: Callable[[Sequence[FigureJob]], Iterable[FigureJob]] = lambda jobs: jobs,
) -> ReportResult:
    """Write the whole report of a collected table into ``out_dir``.

    Writes ``table2.csv`` / ``table2.md`` (Eq. 9 fits per group, :mod:`eoslab.report.groups`,
    beside the paper's Table 2), ``peaks.csv`` (the per-run ``y`` of Eq. 9), ``checks.csv`` /
    ``checks.md`` (Section 5), ``figures/*.png`` and ``figures/*.pdf`` (the edge-of-stability
    figures from the trajectory rows, the curves from the analysis rows), and ``index.html``
    (opened by ``headline``, e.g. ``8 of 9 runs (left out: ...)``). A group that cannot be fitted
    gets its reason in the table, and a table without the fitted metric gets a note, instead of
    stopping the report. ``notes`` (which runs were left out, say) open the page's notes; ``track``
    wraps the list of figures to draw (a progress bar, say).
    """
    from eoslab.store import write_text

    from . import checks as checks_mod
    from . import figures as figures_mod
    from . import html as html_mod
    from . import powerlaw

    out_dir = Path(out_dir)
    frame = collected_frame(table)
    analysis, trajectory = split_trajectory(frame)
    notes = list(notes)
    departed = flow_departures(trajectory)
    if departed:
        notes.append(departed)
    try:
        fits = powerlaw.fit_power_laws(
            analysis,
            metric=metric,
            layer=layer,
            skip_before=skip_before,
            per_size_means=per_size_means,
            n_boot=n_boot,
            seed=seed,
            on_error="record",
        )
    except ValueError as e:  # the metric is absent altogether; the rest of the report still stands
        fits = []
        notes.append(f"No power-law fit: {e}")
    write_text(powerlaw.fits_frame(fits).to_csv(index=False), out_dir / "table2.csv")
    write_text(powerlaw.fits_markdown(fits), out_dir / "table2.md")
    write_text(powerlaw.peaks_frame(fits).to_csv(index=False), out_dir / "peaks.csv")

    checks = checks_mod.section5_checks(analysis, skip_before=skip_before)
    write_text(checks_mod.checks_frame(checks).to_csv(index=False), out_dir / "checks.csv")
    write_text(checks_mod.checks_markdown(checks), out_dir / "checks.md")

    jobs, figure_notes = figures_mod.plan_figures(frame, fits=fits, skip_before=skip_before)
    notes += figure_notes
    figures = [figures_mod.render(job, out_dir / "figures") for job in track(jobs)]

    index = out_dir / "index.html"
    write_text(
        html_mod.index_html(
            fits=fits, checks=checks, figures=figures, notes=notes, out_dir=out_dir, source=source, headline=headline
        ),
        index,
    )
    return ReportResult(out_dir=out_dir, index=index, fits=fits, checks=checks, figures=figures, notes=notes)
