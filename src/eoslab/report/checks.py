"""The numbers of the paper's Section 5, evaluated on our runs (docs/math.md §5).

Each check is a maximum over the exponential Euler runs and their steps after the transient
(steps >= 10, D13 in docs/decisions.md), set beside the value the paper reports:

* ``R_over_H``: max lambda^1(R) / lambda^1(H) (Eq. 2), paper 9.9 %;
* ``R_max``: max lambda^1(R), paper 56.74;
* ``G_vs_H``: max |lambda^1(G) - lambda^1(H)| / lambda^1(H) (Eq. 2), paper 10.1 %;
* ``layer_vs_first``: max over layers i > 1 of E||J~_i||^2 / E||J~_1||^2 (Eqs. 4, 8), paper 1.37;
* ``nan_eigenvalues``: the largest share, over runs, of NaN (negative, D12) top-eigenvalue
  estimates of H, G and R among all of the run's snapshots, paper 0.009 %.

A check holds when our number does not exceed the paper's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from eoslab.constants import LAYER_RATIO_BOUND, SKIP_BEFORE
from eoslab.report.collected import ANALYSIS_SOLVER, runs_of


@dataclass(frozen=True)
class Check:
    """One Section-5 number: ours beside the paper's.

    Attributes:
        name: short key of the check.
        description: what is measured, with the equation it comes from.
        ours: our value (NaN when the table lacks the metrics it needs).
        paper: the paper's value.
        holds: ``ours <= paper`` (False when ``ours`` is NaN).
        at: where our maximum is attained (run, step, layer), or why there is no value.
        percent: whether the values are fractions best shown in percent.
    """

    name: str
    description: str
    ours: float
    paper: float
    holds: bool
    at: str
    percent: bool


def _pivot(rows: pd.DataFrame, columns: str) -> pd.DataFrame:
    """``rows`` side by side, one row per (run, step), one column per value of ``columns``."""
    if rows.empty:
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], []], names=["run_id", "step"]))
    return rows.pivot_table(index=["run_id", "step"], columns=columns, values="value", dropna=False)


def run_names(frame: pd.DataFrame) -> dict[str, str]:
    """``run_id`` → ``7326f09dbc18 (n=256, seeds 0/1)``: a run as the checks name it (init/subset seed)."""
    runs = runs_of(frame)
    return {
        r.run_id: f"{r.run_id} (n={r.n}, seeds {r.init_seed}/{r.subset_seed})" for r in runs.itertuples(index=False)
    }


def _check(name: str, description: str, values: pd.Series, paper: float, percent: bool, names: dict[str, str]) -> Check:
    """The maximum of ``values`` (indexed by run, step[, layer]) against the paper's value; the
    run where it is attained named by ``names`` (:func:`run_names`).
    """
    values = values[np.isfinite(values)]
    if values.empty:
        return Check(name, description, float("nan"), paper, False, "no data", percent)
    where = values.idxmax()
    labels = ("run", "step", "layer")
    at = " ".join(f"{k}={v:g}" if k != "run" else f"{k}={names.get(v, v)}" for k, v in zip(labels, where))
    ours = float(values.max())
    return Check(name, description, ours, paper, bool(ours <= paper), at, percent)


def section5_checks(
    frame: pd.DataFrame, *, skip_before: int = SKIP_BEFORE, solver: str | None = ANALYSIS_SOLVER
) -> list[Check]:
    """Evaluate the Section-5 checks on the runs of ``solver`` in a collected frame.

    The maxima use steps ``>= skip_before``; the NaN share counts every snapshot, as the paper
    counts every iteration.
    """
    if solver is not None:
        frame = frame[frame["solver"] == solver]
    late = frame[frame["step"] >= skip_before]
    eig_metrics = ["sharpness_H", "sharpness_G", "sharpness_R"]
    names = run_names(frame)
    sharp = _pivot(late[late["metric"].isin(eig_metrics)], "metric").reindex(columns=eig_metrics)
    h, g, r = (sharp[m] for m in eig_metrics)
    h_pos = h.where(h > 0)

    layers = _pivot(late[late["metric"] == "layer_sqnorm"], "layer")
    if 1.0 in layers.columns:
        layer_ratio = layers.drop(columns=1.0).div(layers[1.0], axis=0).stack()
    else:
        layer_ratio = pd.Series(dtype=float)

    eig = frame[frame["metric"].isin(eig_metrics)]
    nan_share = eig["value"].isna().groupby(eig["run_id"]).mean().astype(float)
    nan_share.index = pd.MultiIndex.from_arrays([nan_share.index])

    nan_check = _check(
        "nan_eigenvalues",
        "max over runs of the share of NaN (negative) λ¹ estimates of H, G, R (D12)",
        nan_share,
        0.00009,
        True,
        names,
    )
    if nan_check.ours == 0:
        nan_check = replace(nan_check, at="no NaN estimate in any run")
    return [
        _check("R_over_H", "max λ¹(R)/λ¹(H) after the transient (Eq. 2)", r / h_pos, 0.099, True, names),
        _check("R_max", "max λ¹(R) after the transient (Eq. 2)", r, 56.74, False, names),
        _check("G_vs_H", "max |λ¹(G) − λ¹(H)|/λ¹(H) (Eq. 2)", (g - h).abs() / h_pos, 0.101, True, names),
        _check(
            "layer_vs_first",
            "max over layers i>1 of E‖J̃ᵢ‖²/E‖J̃₁‖² (Eqs. 4, 8)",
            layer_ratio,
            LAYER_RATIO_BOUND,
            False,
            names,
        ),
        nan_check,
    ]


def checks_frame(checks: list[Check]) -> pd.DataFrame:
    """The checks as a table: ``check, description, ours, paper, holds, at`` (fractions, not %)."""
    frame = pd.DataFrame([asdict(c) for c in checks]).drop(columns="percent")
    return frame.rename(columns={"name": "check"})


def format_value(value: float, percent: bool) -> str:
    """A check's value as shown in the report: fractions in percent, others with 4 digits."""
    if not np.isfinite(value):
        return "–"
    return f"{100 * value:.3g} %" if percent else f"{value:.4g}"


def checks_markdown(checks: list[Check]) -> str:
    """The checks as a Markdown table, ours beside the paper's."""
    lines = [
        "Section 5 of the paper on our runs (exponential Euler, steps ≥ transient).",
        "",
        "| check | ours | paper | holds | where |",
        "|---|---|---|---|---|",
    ]
    for c in checks:
        description = c.description.replace("|", "\\|")
        lines.append(
            f"| {description} | {format_value(c.ours, c.percent)} | {format_value(c.paper, c.percent)} "
            f"| {'yes' if c.holds else 'no'} | {c.at} |"
        )
    return "\n".join(lines) + "\n"
