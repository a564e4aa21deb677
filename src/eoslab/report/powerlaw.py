"""The power law of peak alignment against dataset size (Eq. 9, Table 2; docs/math.md §5, D5 in docs/decisions.md).

For every run, ``y`` is the peak over training (steps >= 10, D13) of the alignment factor
``C5`` of Eq. 7 for layer 1 (``eq7_c5``, layer 1); any metric and layer may be chosen instead.
Eq. 9, ``y = a n^b``, is fitted by ordinary least squares of ``log y`` on ``log n`` with one
point per run, so ``a = exp(intercept)``, ``b`` = slope and ``R^2`` is taken in log space.
A bootstrap over runs gives a confidence interval for ``b``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from eoslab.report import ANALYSIS_SOLVER, SKIP_BEFORE, metric_rows, runs_of

#: Table 2 of the paper: (dataset, criterion) -> (a, b, R^2) of Eq. 9.
PAPER_TABLE2: dict[tuple[str, str], tuple[float, float, float]] = {
    ("dice", "ce"): (0.0017, 0.23, 0.84),
    ("cifar10", "ce"): (0.0004, 0.49, 0.97),
    ("cifar10", "mse"): (0.0004, 0.20, 0.74),
    ("atrial_fibrillation", "ce"): (0.0026, 0.45, 0.93),
    ("sst", "ce"): (0.0001, 0.67, 0.98),
}
#: How the paper's tables name our datasets and criteria.
DATASET_NAMES = {
    "dice": "Dice",
    "cifar10": "CIFAR-10",
    "atrial_fibrillation": "AtrialFibrillation",
    "sst": "SST",
    "synthetic": "Synthetic",
}
CRITERION_NAMES = {"ce": "Cross-Entropy", "mse": "MSE"}
#: The fewest usable points an OLS fit with a residual degree of freedom needs.
MIN_POINTS = 3


def dataset_name(dataset: str) -> str:
    """The paper's name of a dataset (``atrial_fibrillation`` → ``AtrialFibrillation``)."""
    return DATASET_NAMES.get(dataset, dataset)


def criterion_name(criterion: str) -> str:
    """The paper's name of a criterion (``ce`` → ``Cross-Entropy``)."""
    return CRITERION_NAMES.get(criterion, criterion)


@dataclass(frozen=True)
class PowerLawFit:
    """Eq. 9, ``y = a n^b``, fitted in log space.

    Attributes:
        a: the coefficient, ``exp(intercept)``.
        b: the exponent (the slope of ``log y`` on ``log n``).
        r2: the coefficient of determination of the log-space fit.
        n_runs: runs (points) used; with ``per_size_means`` the fit itself has ``n_sizes`` points.
        n_sizes: distinct dataset sizes among them.
        b_ci: bootstrap confidence interval of ``b`` (percentiles over resampled runs).
        n_dropped: runs left out because their ``y`` was NaN or non-positive.
        per_size_means: whether ``y`` was averaged per size before fitting.
    """

    a: float
    b: float
    r2: float
    n_runs: int
    n_sizes: int
    b_ci: tuple[float, float]
    n_dropped: int = 0
    per_size_means: bool = False

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        """``a n^b`` (Eq. 9)."""
        return self.a * np.asarray(n, dtype=float) ** self.b


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept and R^2 of the least-squares line of ``y`` on ``x``."""
    xc, yc = x - x.mean(), y - y.mean()
    slope = float(xc @ yc / (xc @ xc))
    intercept = float(y.mean() - slope * x.mean())
    ss_tot = float(yc @ yc)
    ss_res = float(np.sum((y - intercept - slope * x) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return slope, intercept, r2


def _points(n: np.ndarray, y: np.ndarray, per_size_means: bool) -> tuple[np.ndarray, np.ndarray]:
    """The (log n, log y) points of the fit: one per run, or one per size (mean of y)."""
    if not per_size_means:
        return np.log(n), np.log(y)
    sizes, inverse = np.unique(n, return_inverse=True)
    means = np.bincount(inverse, weights=y) / np.bincount(inverse)
    return np.log(sizes), np.log(means)


def fit_power_law(
    n: np.ndarray,
    y: np.ndarray,
    *,
    per_size_means: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    label: str = "",
) -> PowerLawFit:
    """Fit Eq. 9, ``y = a n^b``, by OLS of ``log y`` on ``log n`` (D5).

    Args:
        n: dataset size of each run.
        y: the fitted quantity of each run (the peak alignment, Eq. 9).
        per_size_means: fit the mean ``y`` of each size instead of every run.
        n_boot: bootstrap resamples of the runs for the interval of ``b``.
        seed: seed of the bootstrap.
        ci: coverage of the interval.
        label: names the data in warnings and errors (e.g. ``"cifar10/ce"``).

    Runs whose ``y`` is NaN or non-positive cannot enter a log-space fit: they are dropped with
    a warning and counted in ``n_dropped``. Bootstrap resamples that hold a single size have no
    slope and are skipped.

    Raises:
        ValueError: on empty input, sizes that are not positive, no usable ``y`` at all, a single
            distinct size, or fewer than three usable points.
    """
    where = f"{label}: " if label else ""
    n = np.asarray(n, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if n.shape != y.shape:
        raise ValueError(f"{where}n and y differ in length ({n.size} vs {y.size})")
    if n.size == 0:
        raise ValueError(f"{where}power-law fit (Eq. 9) got no runs")
    if not np.all(np.isfinite(n) & (n > 0)):
        raise ValueError(f"{where}dataset sizes n must be positive and finite, got {np.unique(n)}")
    usable = np.isfinite(y) & (y > 0)
    n_dropped = int(np.sum(~usable))
    if not usable.any():
        raise ValueError(
            f"{where}all {y.size} y values are NaN or non-positive; Eq. 9 is fitted in log space "
            "and needs positive values"
        )
    if n_dropped:
        n_nan = int(np.sum(np.isnan(y)))
        warnings.warn(
            f"{where}dropped {n_dropped} of {y.size} runs from the power-law fit "
            f"({n_nan} NaN, {n_dropped - n_nan} non-positive or infinite y)",
            stacklevel=2,
        )
    n, y = n[usable], y[usable]
    sizes = np.unique(n)
    if sizes.size < 2:
        raise ValueError(
            f"{where}only one distinct dataset size (n={sizes[0]:g}) among {n.size} usable runs; "
            "a power law in n needs at least two sizes"
        )
    n_points = sizes.size if per_size_means else n.size
    if n_points < MIN_POINTS:
        unit = "sizes" if per_size_means else "usable runs"
        raise ValueError(f"{where}only {n_points} {unit}; the fit needs at least {MIN_POINTS}")

    slope, intercept, r2 = _ols(*_points(n, y, per_size_means))
    rng = np.random.default_rng(seed)
    slopes = []
    for _ in range(n_boot):
        pick = rng.integers(0, n.size, size=n.size)
        if np.unique(n[pick]).size > 1:
            slopes.append(_ols(*_points(n[pick], y[pick], per_size_means))[0])
    tail = 100 * (1 - ci) / 2
    low, high = np.percentile(slopes, [tail, 100 - tail]) if slopes else (np.nan, np.nan)
    return PowerLawFit(
        a=float(np.exp(intercept)),
        b=slope,
        r2=r2,
        n_runs=int(n.size),
        n_sizes=int(sizes.size),
        b_ci=(float(low), float(high)),
        n_dropped=n_dropped,
        per_size_means=per_size_means,
    )


def peak_per_run(
    frame: pd.DataFrame, *, metric: str = "eq7_c5", layer: int | None = 1, skip_before: int = SKIP_BEFORE
) -> pd.DataFrame:
    """``y`` of Eq. 9 for every run of a collected frame: the NaN-ignoring maximum of ``metric``
    (at ``layer``; whole-network if None) over steps ``>= skip_before``.

    Returns one row per run (``run_id, dataset, criterion, n, peak``); a run without a finite
    value there has ``peak`` NaN.
    """
    rows = metric_rows(frame, metric, layer)
    peaks = rows[rows["step"] >= skip_before].groupby("run_id")["value"].max()
    runs = runs_of(frame)[["run_id", "dataset", "criterion", "n"]]
    return runs.assign(peak=runs["run_id"].map(peaks).astype(float))


@dataclass(frozen=True)
class GroupFit:
    """The Eq. 9 fit of one (dataset, criterion) group, or why there is none."""

    dataset: str
    criterion: str
    metric: str
    layer: int | None
    skip_before: int
    per_size_means: bool
    peaks: pd.DataFrame = field(repr=False)
    fit: PowerLawFit | None = None
    error: str | None = None

    @property
    def paper(self) -> tuple[float, float, float] | None:
        """The paper's (a, b, R^2) for this group (Table 2), if it is one of its rows."""
        return PAPER_TABLE2.get((self.dataset, self.criterion))


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
    """Fit Eq. 9 for every (dataset, criterion) of a collected frame (Table 2).

    Only runs of ``solver`` enter (exponential Euler, as in the paper; None: all runs). With
    ``on_error="record"`` a group that cannot be fitted keeps the reason in ``GroupFit.error``;
    with ``"raise"`` its ValueError propagates.

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
    for (dataset, criterion), group in frame.groupby(["dataset", "criterion"], sort=True):
        peaks = peak_per_run(group, metric=metric, layer=layer, skip_before=skip_before)
        common = dict(
            dataset=dataset,
            criterion=criterion,
            metric=metric,
            layer=layer,
            skip_before=skip_before,
            per_size_means=per_size_means,
        )
        try:
            fit = fit_power_law(
                peaks["n"].to_numpy(),
                peaks["peak"].to_numpy(),
                per_size_means=per_size_means,
                n_boot=n_boot,
                seed=seed,
                label=f"{dataset}/{criterion}",
            )
        except ValueError as e:
            if on_error == "raise":
                raise
            fits.append(GroupFit(peaks=peaks, error=str(e), **common))
        else:
            fits.append(GroupFit(peaks=peaks, fit=fit, **common))
    return fits


def fits_frame(fits: list[GroupFit]) -> pd.DataFrame:
    """The fits as a flat table (the CSV of Table 2), the paper's values beside ours."""
    rows = []
    for g in fits:
        f, paper = g.fit, g.paper or (np.nan, np.nan, np.nan)
        rows.append(
            {
                "dataset": g.dataset,
                "criterion": g.criterion,
                "metric": g.metric,
                "layer": g.layer,
                "skip_before": g.skip_before,
                "per_size_means": g.per_size_means,
                "a": f.a if f else np.nan,
                "b": f.b if f else np.nan,
                "r2": f.r2 if f else np.nan,
                "b_ci_low": f.b_ci[0] if f else np.nan,
                "b_ci_high": f.b_ci[1] if f else np.nan,
                "n_runs": f.n_runs if f else int(g.peaks["peak"].notna().sum()),
                "n_sizes": f.n_sizes if f else int(g.peaks["n"].nunique()),
                "n_dropped": f.n_dropped if f else int(g.peaks["peak"].isna().sum()),
                "paper_a": paper[0],
                "paper_b": paper[1],
                "paper_r2": paper[2],
                "error": g.error or "",
            }
        )
    return pd.DataFrame(rows)


def peaks_frame(fits: list[GroupFit]) -> pd.DataFrame:
    """The per-run ``y`` of every group (``run_id, dataset, criterion, n, peak``)."""
    if not fits:
        return pd.DataFrame(columns=["run_id", "dataset", "criterion", "n", "peak"])
    return pd.concat([g.peaks for g in fits], ignore_index=True)


def _num(x: float, fmt: str) -> str:
    return "–" if x is None or not np.isfinite(x) else format(x, fmt)


def fits_markdown(fits: list[GroupFit]) -> str:
    """Table 2 in Markdown: Dataset | Criterion | a | b | R², then the paper's a, b, R² where the
    group is a row of the paper's table, the bootstrap interval of b and the run counts.
    """
    what = ""
    if fits:
        head = fits[0]
        layer = "" if head.layer is None else f" (layer {head.layer})"
        points = "per-size means" if head.per_size_means else "one point per run"
        what = f"y = peak of `{head.metric}`{layer} over steps ≥ {head.skip_before}; OLS of log y on log n ({points})"
    lines = [
        "Power law y = a·n^b (Eq. 9, Table 2). " + what,
        "",
        "| Dataset | Criterion | a | b | R² | paper a | paper b | paper R² | b 95% CI | runs | sizes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in fits:
        paper = g.paper or (np.nan, np.nan, np.nan)
        name = f"| {dataset_name(g.dataset)} | {criterion_name(g.criterion)} |"
        pa = f" {_num(paper[0], '.4f')} | {_num(paper[1], '.2f')} | {_num(paper[2], '.2f')} |"
        if g.fit is None:
            error = (g.error or "").replace("|", "\\|")
            lines.append(f"{name} – | – | – |{pa} not fitted: {error} | | |")
            continue
        f = g.fit
        ci = f"[{_num(f.b_ci[0], '.2f')}, {_num(f.b_ci[1], '.2f')}]"
        runs = f"{f.n_runs}" + (f" (+{f.n_dropped} dropped)" if f.n_dropped else "")
        lines.append(
            f"{name} {_num(f.a, '.2g')} | {_num(f.b, '.2f')} | {_num(f.r2, '.2f')} |{pa} {ci} | {runs} | {f.n_sizes} |"
        )
    return "\n".join(lines) + "\n"
