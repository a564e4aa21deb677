"""The collected table the report reads (``eoslab collect``), as a pandas frame the report can
rely on, and the helpers that slice it.

The table is one tidy long table, one row per ``(run, step, metric, layer)``, with the run's
configuration repeated on every row::

    run_id, dataset, n, criterion, init_seed, subset_seed, width, depth, solver, eta, eta_max,
    [one column per other axis of the sweep, named by its field: model.gain, ...],
    step, t, metric, layer, value

``metric`` uses the names of ``analysis.parquet`` (docs/metrics.md), and the two of each run's
trajectory (:data:`eoslab.sweeps.point.TRAJECTORY_METRICS`: the loss at every step, λ¹(H) at every
measured step; :func:`split_trajectory` separates them); ``layer`` is null for whole-network
metrics and ``value`` is NaN for a negative top eigenvalue (docs/decisions.md, D12).
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from eoslab.constants import SKIP_BEFORE
from eoslab.integrators import loss_rises
from eoslab.store import to_frame
from eoslab.sweeps.grid import FIELD_OF_COLUMN
from eoslab.sweeps.grid import RUN_COLUMNS as RUN_SCHEMA
from eoslab.sweeps.point import TRAJECTORY_METRICS

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
    is_trajectory = frame["metric"].isin(list(TRAJECTORY_METRICS))
    return frame[~is_trajectory], frame[is_trajectory]


def flow_departures(trajectory: pd.DataFrame) -> str | None:
    """A warning when exponential Euler runs of a collected table's trajectory rows
    (:func:`split_trajectory`) raised their loss — left the gradient flow
    (:func:`eoslab.integrators.departure_note`), so their analysed quantities are not the flow's —
    naming how many runs and the worst; None when none did (or the table has no trajectories).
    """
    rows = trajectory[(trajectory["metric"] == "trajectory_loss") & (trajectory["solver"] == ANALYSIS_SOLVER)]
    worst: dict[str, float] = {}
    for run_id, run in rows.groupby("run_id", sort=False):
        losses = run.sort_values("step")["value"].tolist()
        rises = loss_rises(losses)
        if rises:
            worst[run_id] = max(losses[u + 1] / losses[u] for u in rises)
    if not worst:
        return None
    top = max(worst, key=worst.__getitem__)
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
