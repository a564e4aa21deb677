"""Table 2 of a sweep: the power law of peak alignment against dataset size, one fit per group
(Eq. 9, Table 2; docs/math.md §5, D5 in docs/decisions.md).

For every run, ``y`` is the peak over training (steps >= 10, D13) of the alignment factor
``C5`` of Eq. 7 for layer 1 (``eq7_c5``, layer 1); any metric and layer may be chosen instead.
One fit (:func:`eoslab.report.powerlaw.fit_power_law`, with its tests) per group of exponential
Euler runs (:mod:`eoslab.report.groups`): runs that differ in anything but ``n`` and their seeds
are never pooled; gradient-descent runs are never fitted (the paper fits the flow).

Every group also gets a second ``y`` that does not depend on where each run stops
(:func:`fixed_time_per_run`: the metric at a flow time ``t*`` every run of the group has reached),
fitted by Eq. 9 the same way, and the share of runs whose peak is their last analysed snapshot
(then the "peak" is where training stopped). :func:`fits_frame` and :func:`fits_markdown` write
``table2.csv`` and ``table2.md``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal, TypedDict

import numpy as np
import pandas as pd

from eoslab.constants import SKIP_BEFORE
from eoslab.report.collected import ANALYSIS_SOLVER, metric_rows, runs_of
from eoslab.report.groups import Group, groups
from eoslab.report.powerlaw import ALPHA, PowerLawFit, fit_power_law, format_p
from eoslab.report.protocol import criterion_name, dataset_name, protocol, protocol_text

#: Table 2 of the paper: (dataset, criterion) -> (a, b, R^2) of Eq. 9.
PAPER_TABLE2: dict[tuple[str, str], tuple[float, float, float]] = {
    ("dice", "ce"): (0.0017, 0.23, 0.84),
    ("cifar10", "ce"): (0.0004, 0.49, 0.97),
    ("cifar10", "mse"): (0.0004, 0.20, 0.74),
    ("atrial_fibrillation", "ce"): (0.0026, 0.45, 0.93),
    ("sst", "ce"): (0.0001, 0.67, 0.98),
}
#: The report warns when more than this share of runs has its peak at its last analysed snapshot.
LAST_SNAPSHOT_WARNING = 0.5


def _analysed(frame: pd.DataFrame, metric: str, layer: int | None, skip_before: int) -> pd.DataFrame:
    """The finite values of ``metric`` (at ``layer``) at steps ``>= skip_before``."""
    rows = metric_rows(frame, metric, layer)
    return rows[(rows["step"] >= skip_before) & np.isfinite(rows["value"])]


def peak_per_run(
    frame: pd.DataFrame, *, metric: str = "eq7_c5", layer: int | None = 1, skip_before: int = SKIP_BEFORE
) -> pd.DataFrame:
    """``y`` of Eq. 9 for every run of a collected frame: the NaN-ignoring maximum of ``metric``
    (at ``layer``; whole-network if None) over steps ``>= skip_before``.

    Returns one row per run (``run_id, dataset, criterion, n, peak, peak_step, last_step``): the
    step of the peak and the run's last analysed step with a finite value (equal when the "peak"
    is where training stopped); a run without a finite value there has NaN in all three.
    """
    rows = _analysed(frame, metric, layer, skip_before)
    by_run = rows.groupby("run_id")
    at_peak = rows.loc[by_run["value"].idxmax()] if len(rows) else rows
    at_peak = at_peak.set_index("run_id")
    runs = runs_of(frame)[["run_id", "dataset", "criterion", "n"]]
    return runs.assign(
        peak=runs["run_id"].map(at_peak["value"]).astype(float),
        peak_step=runs["run_id"].map(at_peak["step"]).astype(float),
        last_step=runs["run_id"].map(by_run["step"].max()).astype(float),
    )


def fixed_time_per_run(
    frame: pd.DataFrame, *, metric: str = "eq7_c5", layer: int | None = 1, skip_before: int = SKIP_BEFORE
) -> tuple[float, pd.Series]:
    """A ``y`` of Eq. 9 that does not depend on where each run stops (X15): ``metric`` (at
    ``layer``) at the flow time ``t*`` = the earliest last analysed ``t`` among the runs of
    ``frame`` (one group), the latest time every run has reached; linearly interpolated in ``t``
    between the two analysed snapshots (steps ``>= skip_before``) around it.

    Returns ``t*`` and ``y`` by ``run_id``: NaN for a run whose first analysed snapshot comes after
    ``t*``; empty, with ``t*`` NaN, when no run has a finite value.
    """
    rows = _analysed(frame, metric, layer, skip_before).sort_values(["run_id", "t"])
    if rows.empty:
        return float("nan"), pd.Series(dtype=float)
    t_star = float(rows.groupby("run_id")["t"].max().min())
    y = {
        run_id: float(np.interp(t_star, r["t"], r["value"])) if r["t"].iloc[0] <= t_star else float("nan")
        for run_id, r in rows.groupby("run_id")
    }
    return t_star, pd.Series(y, dtype=float)


@dataclass(frozen=True)
class GroupFit:
    """The Eq. 9 fits of one group of runs (:class:`~eoslab.report.groups.Group`), or why there are none.

    Attributes:
        group: the group.
        metric, layer, skip_before, per_size_means: what ``y`` is and how it is fitted.
        peaks: one row per run (:func:`peak_per_run`, with ``y_at_t_star`` of
            :func:`fixed_time_per_run` and the group's extra key columns).
        protocol: the group's protocol (:func:`protocol`).
        fit, error: Eq. 9 fitted to the peak, or why it cannot be.
        t_star: the flow time of the second ``y`` (:func:`fixed_time_per_run`).
        fixed_time, fixed_time_error: Eq. 9 fitted to ``y`` at ``t*``, or why it cannot be.
    """

    group: Group
    metric: str
    layer: int | None
    skip_before: int
    per_size_means: bool
    peaks: pd.DataFrame = field(repr=False)
    protocol: tuple[tuple[str, str], ...] = ()
    fit: PowerLawFit | None = None
    error: str | None = None
    t_star: float = float("nan")
    fixed_time: PowerLawFit | None = None
    fixed_time_error: str | None = None

    @property
    def dataset(self) -> str:
        """The group's dataset."""
        return self.group.dataset

    @property
    def criterion(self) -> str:
        """The group's criterion."""
        return self.group.criterion

    @property
    def paper(self) -> tuple[float, float, float] | None:
        """The paper's (a, b, R^2) for this group (Table 2), if it is one of its rows."""
        return PAPER_TABLE2.get((self.dataset, self.criterion))

    @property
    def at_last(self) -> tuple[int, int]:
        """(runs whose peak is their last analysed snapshot, runs with a peak)."""
        peaked = self.peaks[np.isfinite(self.peaks["peak"])]
        return int((peaked["peak_step"] == peaked["last_step"]).sum()), len(peaked)

    def last_snapshot_line(self) -> str:
        """How many runs peak at their last analysed snapshot; a warning when most do (the peak
        is then where training stopped, and still rising there: read the fit at ``t*`` too).
        """
        last, total = self.at_last
        if total == 0:
            return "no run has a peak"
        text = f"the peak is the last analysed snapshot in {last} of {total} runs ({last / total:.0%})"
        if last / total > LAST_SNAPSHOT_WARNING:
            text = (
                f"WARNING: {text}: y is where training stopped (the stopping rule), not a maximum; "
                f"the fit at t* = {self.t_star:.3g} does not depend on it"
            )
        return text

    def fits(self) -> list[tuple[str, PowerLawFit | None, str | None]]:
        """The fitted ``y`` of the group, ``(label, fit, error)``: the peak, then ``y`` at ``t*``."""
        return [("peak", self.fit, self.error), (f"at t* = {self.t_star:.3g}", self.fixed_time, self.fixed_time_error)]


class _Y(TypedDict):
    """What ``y`` is: the arguments :func:`peak_per_run`, :func:`fixed_time_per_run` and
    :class:`GroupFit` share.
    """

    metric: str
    layer: int | None
    skip_before: int


def _fit_or_error(
    n: np.ndarray, y: np.ndarray, on_error: Literal["raise", "record"], **options
) -> tuple[PowerLawFit | None, str | None]:
    """:func:`fit_power_law`, or (with ``on_error="record"``) None and why it cannot be fitted."""
    try:
        return fit_power_law(n, y, **options), None
    except ValueError as e:
        if on_error == "raise":
            raise
        return None, str(e)


def fit_power_laws(
    frame: pd.DataFrame,
    *,
    metric: str = "eq7_c5",
    layer: int | None = 1,
    skip_before: int = SKIP_BEFORE,
    per_size_means: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    solver: str | None = ANALYSIS_SOLVER,
    on_error: Literal["raise", "record"] = "raise",
) -> list[GroupFit]:
    """Fit Eq. 9 for every group of a collected frame (Table 2; :func:`eoslab.report.groups.groups`),
    to the peak and to the ``y`` at ``t*`` (:func:`fixed_time_per_run`), each with its tests.

    Only runs of ``solver`` enter (exponential Euler, as in the paper; None: all runs, grouped by
    their solver settings too). With
    ``on_error="record"`` a group that cannot be fitted keeps the reason in ``GroupFit.error``
    (``fixed_time_error``); with ``"raise"`` its ValueError propagates.

    Raises:
        ValueError: if no run of ``solver`` has rows of ``metric`` at ``layer``; and, with
            ``on_error="raise"``, for the first group that cannot be fitted.
    """
    if solver is not None:
        frame = frame[frame["solver"] == solver]
    where = f"{metric}" + ("" if layer is None else f" (layer {layer})")
    if metric_rows(frame, metric, layer).empty:
        raise ValueError(
            f"no {where} values for {solver or 'any'} runs in the collected table; cannot fit the power law of Eq. 9"
        )
    fits = []
    y_of = _Y(metric=metric, layer=layer, skip_before=skip_before)
    fit_or_error = functools.partial(
        _fit_or_error, per_size_means=per_size_means, n_boot=n_boot, seed=seed, on_error=on_error
    )
    for key, rows in groups(frame):
        t_star, at_t_star = fixed_time_per_run(rows, **y_of)
        peaks = peak_per_run(rows, **y_of)
        peaks = peaks.assign(y_at_t_star=peaks["run_id"].map(at_t_star).astype(float), **key.extra)
        n = peaks["n"].to_numpy()
        fit, error = fit_or_error(n, peaks["peak"].to_numpy(), label=key.name)
        fixed_time, fixed_time_error = fit_or_error(
            n, peaks["y_at_t_star"].to_numpy(), label=f"{key.name} at t* = {t_star:.3g}"
        )
        fits.append(
            GroupFit(
                group=key,
                peaks=peaks,
                protocol=protocol(runs_of(rows)),
                fit=fit,
                error=error,
                t_star=t_star,
                fixed_time=fixed_time,
                fixed_time_error=fixed_time_error,
                **y_of,
                per_size_means=per_size_means,
            )
        )
    return fits


def fit_columns(f: PowerLawFit | None, peaks: pd.Series, n: pd.Series, prefix: str = "") -> dict:
    """One fit's columns of ``table2.csv`` (NaN when not fitted; then the counts of ``peaks``, ``n``)."""
    t = f.tests if f else None
    columns = {
        "a": f.a if f else np.nan,
        "b": f.b if f else np.nan,
        "r2": f.r2 if f else np.nan,
        "b_ci_low": f.b_ci[0] if f else np.nan,
        "b_ci_high": f.b_ci[1] if f else np.nan,
        "n_runs": f.n_runs if f else int(peaks.notna().sum()),
        "n_sizes": f.n_sizes if f else int(n.nunique()),
        "n_dropped": f.n_dropped if f else int(peaks.isna().sum()),
        "lof_f": t.lof_f if t else np.nan,
        "lof_df1": t.lof_df[0] if t else np.nan,
        "lof_df2": t.lof_df[1] if t else np.nan,
        "lof_p": t.lof_p if t else np.nan,
        "quad_coef": t.quad_coef if t else np.nan,
        "quad_p": t.quad_p if t else np.nan,
        "local_slopes": " ".join(f"{s:.6g}" for s in t.local_slopes) if t else "",
        "verdict": t.verdict() if t else "",
    }
    return {prefix + k: v for k, v in columns.items()}


def fits_frame(fits: list[GroupFit]) -> pd.DataFrame:
    """The fits as a flat table (the CSV of Table 2), one row per group: the peak's fit with its
    tests and verdict, the paper's values beside it, then the fit of ``y`` at ``t*`` (columns
    prefixed ``t_star_``) and how many runs peak at their last analysed snapshot.
    """
    rows = []
    for g in fits:
        paper = g.paper or (np.nan, np.nan, np.nan)
        last, total = g.at_last
        rows.append(
            {
                "dataset": g.dataset,
                "criterion": g.criterion,
                **g.group.extra,
                "metric": g.metric,
                "layer": g.layer,
                "skip_before": g.skip_before,
                "per_size_means": g.per_size_means,
                **fit_columns(g.fit, g.peaks["peak"], g.peaks["n"]),
                "paper_a": paper[0],
                "paper_b": paper[1],
                "paper_r2": paper[2],
                "error": g.error or "",
                "peak_at_last_snapshot": last,
                "runs_with_peak": total,
                "t_star": g.t_star,
                **fit_columns(g.fixed_time, g.peaks["y_at_t_star"], g.peaks["n"], "t_star_"),
                "t_star_error": g.fixed_time_error or "",
            }
        )
    return pd.DataFrame(rows)


def peaks_frame(fits: list[GroupFit]) -> pd.DataFrame:
    """The per-run ``y`` of every group (``run_id, dataset, criterion, n, peak, peak_step,
    last_step, y_at_t_star``).
    """
    if not fits:
        return pd.DataFrame(
            columns=["run_id", "dataset", "criterion", "n", "peak", "peak_step", "last_step", "y_at_t_star"]
        )
    return pd.concat([g.peaks for g in fits], ignore_index=True)


def _num(x: float, fmt: str) -> str:
    return "–" if x is None or not np.isfinite(x) else format(x, fmt)


def group_title(g: GroupFit) -> str:
    """``AtrialFibrillation, Cross-Entropy`` (and the setting, if any): heads a group's verdicts."""
    extra = g.group.extra_label()
    return f"{dataset_name(g.dataset)}, {criterion_name(g.criterion)}" + (f" ({extra})" if extra else "")


def describe_y(g: GroupFit) -> str:
    """What ``y`` is and how it is fitted (the line above Table 2)."""
    layer = "" if g.layer is None else f" (layer {g.layer})"
    points = "per-size means" if g.per_size_means else "one point per run"
    return (
        f"y = peak of `{g.metric}`{layer} over steps ≥ {g.skip_before}, and (second row of each group) "
        f"`{g.metric}`{layer} at t*, the earliest last analysed flow time among the group's runs (a y that "
        f"does not depend on where each run stops); OLS of log y on log n ({points}). "
        f"Tests on the per-run points: lack of fit against the replicate runs, the (log n)² term; "
        f"a power law is rejected when the lack-of-fit p (the quadratic p without replicates) is below {ALPHA:g}. "
        "Local slopes: Δ log(mean y)/Δ log n between consecutive sizes."
    )


def tests_cells(f: PowerLawFit) -> list[str]:
    """The tests' cells of a fit's row: lack-of-fit F (df), its p, the quadratic p, the local slopes."""
    t = f.tests
    lof = "–" if not np.isfinite(t.lof_f) else f"{t.lof_f:.2f} ({t.lof_df[0]}, {t.lof_df[1]})"
    return [lof, format_p(t.lof_p), format_p(t.quad_p), ", ".join(f"{s:.2f}" for s in t.local_slopes)]


def ci_text(f: PowerLawFit) -> str:
    """The b 95% CI cell: ``[0.25, 0.37]``, and with one run per size ``[0.25, 0.37] (sizes
    resampled, 1 run each)``: then the bootstrap resamples the sizes, not seeds, and the interval is
    no sampling interval (:meth:`PowerLawTests.verdict`).
    """
    ci = f"[{_num(f.b_ci[0], '.2f')}, {_num(f.b_ci[1], '.2f')}]"
    return ci if f.tests.replicated else f"{ci} (sizes resampled, 1 run each)"


def verdict_lines(g: GroupFit) -> list[str]:
    """The verdict of each of the group's fits (``y peak: power law rejected at …``), then how many
    runs peak at their last analysed snapshot (a WARNING when most do).
    """
    lines = [f"y {label}: {f.tests.verdict() if f else 'not fitted'}" for label, f, _ in g.fits()]
    return [*lines, g.last_snapshot_line()]


def fits_markdown(fits: list[GroupFit]) -> str:
    """Table 2 in Markdown: what ``y`` is, each group's protocol, then the table (Dataset |
    Criterion | y | a | b | R², the paper's a, b, R² where the group is a row of the paper's table,
    the bootstrap interval of b, the run counts and the tests of :class:`PowerLawTests`), then the
    verdicts (:func:`verdict_lines`).
    """
    setting = any(g.group.extra for g in fits)
    lines = ["Power law y = a·n^b (Eq. 9, Table 2). " + (describe_y(fits[0]) if fits else "")]
    if fits:
        lines += ["", "Protocol:", ""] + [f"- **{group_title(g)}**: {protocol_text(g.protocol)}." for g in fits]
    lines += [
        "",
        "| Dataset | Criterion |"
        + (" Setting |" if setting else "")
        + " y | a | b | R² | paper a | paper b | paper R² | b 95% CI | runs | sizes"
        " | lack-of-fit F (df) | lack-of-fit p | quadratic p | local slopes |",
        "|---|---|" + ("---|" if setting else "") + "---|" * 14,
    ]
    for g in fits:
        name = f"| {dataset_name(g.dataset)} | {criterion_name(g.criterion)} |"
        if setting:
            name += f" {g.group.extra_label()} |"
        for label, f, error in g.fits():
            paper = (g.paper if label == "peak" else None) or (np.nan, np.nan, np.nan)
            pa = f" {_num(paper[0], '.4f')} | {_num(paper[1], '.2f')} | {_num(paper[2], '.2f')} |"
            if f is None:
                error = (error or "").replace("|", "\\|")
                lines.append(f"{name} {label} | – | – | – |{pa} not fitted: {error} | | | | | | |")
                continue
            ci = ci_text(f)
            runs = f"{f.n_runs}" + (f" (+{f.n_dropped} dropped)" if f.n_dropped else "")
            lines.append(
                f"{name} {label} | {_num(f.a, '.2g')} | {_num(f.b, '.2f')} | {_num(f.r2, '.2f')} |{pa} {ci} | {runs} "
                f"| {f.n_sizes} | " + " | ".join(tests_cells(f)) + " |"
            )
    if fits:
        lines += ["", "Verdicts:", ""]
        lines += [f"- **{group_title(g)}**, {line}" for g in fits for line in verdict_lines(g)]
    return "\n".join(lines) + "\n"
