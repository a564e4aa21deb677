"""The power law of peak alignment against dataset size (Eq. 9, Table 2; docs/math.md §5, D5 in docs/decisions.md).

For every run, ``y`` is the peak over training (steps >= 10, D13) of the alignment factor
``C5`` of Eq. 7 for layer 1 (``eq7_c5``, layer 1); any metric and layer may be chosen instead.
Eq. 9, ``y = a n^b``, is fitted by ordinary least squares of ``log y`` on ``log n`` with one
point per run, so ``a = exp(intercept)``, ``b`` = slope and ``R^2`` is taken in log space.
A bootstrap over runs gives a confidence interval for ``b``. One fit per group of exponential
Euler runs (:mod:`eoslab.report.groups`): runs that differ in anything but ``n`` and their seeds
are never pooled; gradient-descent runs are never fitted (the paper fits the flow).

Beyond the paper (which shows a fit and R² only), every fit carries the tests of whether one power
law describes the data at all (:func:`power_law_tests`, X15 in docs/decisions.md): the lack-of-fit F
test against the replicate runs of each size, the quadratic term in ``log n``, the local slopes
between consecutive sizes and a verdict in words. Every group also gets a second ``y`` that does
not depend on where each run stops (:func:`fixed_time_per_run`: the metric at a flow time ``t*``
every run of the group has reached), fitted by Eq. 9 the same way, and the share of runs whose
peak is their last analysed snapshot (then the "peak" is where training stopped).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import Literal, TypedDict

import numpy as np
import pandas as pd
from scipy import stats

from eoslab.constants import SKIP_BEFORE
from eoslab.report.collected import ANALYSIS_SOLVER, metric_rows, runs_of
from eoslab.report.groups import Group, groups

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
#: Significance level of the verdict: one power law is rejected when its test's p is below it (X15).
ALPHA = 0.05
#: The report warns when more than this share of runs has its peak at its last analysed snapshot.
LAST_SNAPSHOT_WARNING = 0.5
#: Sums of squares below this share of sum(log y)^2 are round-off, not scatter (exact power laws).
ROUND_OFF = 1e-20


def dataset_name(dataset: str) -> str:
    """The paper's name of a dataset (``atrial_fibrillation`` → ``AtrialFibrillation``)."""
    return DATASET_NAMES.get(dataset, dataset)


def criterion_name(criterion: str) -> str:
    """The paper's name of a criterion (``ce`` → ``Cross-Entropy``)."""
    return CRITERION_NAMES.get(criterion, criterion)


def format_p(p: float) -> str:
    """A p-value as the report prints it: three decimals, or one significant digit below 0.001."""
    if not np.isfinite(p):
        return "–"
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1g}"


@dataclass(frozen=True)
class PowerLawTests:
    """Whether one power law (Eq. 9) describes the runs: tests on the per-run points
    ``(log n, log y)`` (whatever ``per_size_means``), X15 in docs/decisions.md.

    Attributes:
        sizes: the distinct ``n``, ascending.
        runs_per_size: usable runs at each size.
        local_slopes: ``Δ log(mean y) / Δ log n`` between consecutive sizes: Eq. 9's exponent
            between them (the slopes of the ``--per-size-means`` points).
        lof_f: the lack-of-fit F statistic: the lack-of-fit mean square of the log-log line over
            the pure-error mean square of the runs about their size's mean ``log y``; NaN without
            replicate runs or with fewer than 3 sizes.
        lof_df: its degrees of freedom ``(sizes - 2, runs - sizes)``.
        lof_p: its p-value, ``P(F(lof_df) >= lof_f)``.
        quad_coef: the coefficient of ``(log n)^2`` when it is added to the line (< 0: the
            exponent falls with ``n``); NaN with fewer than 3 sizes or 4 runs.
        quad_p: the two-sided p-value of that coefficient (its t test, the F test of 1 degree of
            freedom).
    """

    sizes: tuple[float, ...]
    runs_per_size: tuple[int, ...]
    local_slopes: tuple[float, ...]
    lof_f: float
    lof_df: tuple[int, int]
    lof_p: float
    quad_coef: float
    quad_p: float

    @property
    def replicated(self) -> bool:
        """Whether some size has more than one run (pure error, a sampling interval for ``b``)."""
        return max(self.runs_per_size) > 1

    @property
    def test(self) -> str:
        """The test the verdict rests on: ``"lack of fit"`` with replicate runs, else ``"quadratic"``."""
        return "lack of fit" if np.isfinite(self.lof_p) else "quadratic"

    @property
    def p(self) -> float:
        """The p-value of :attr:`test`."""
        return self.lof_p if self.test == "lack of fit" else self.quad_p

    @property
    def rejected(self) -> bool:
        """Whether one power law is rejected: the p of :attr:`test` is below :data:`ALPHA`."""
        return bool(self.p < ALPHA)

    def verdict(self) -> str:
        """One plain line: rejected (at which p, and how the local exponent moves), consistent
        (with both p-values), or not testable; and, with one run per size, that ``b``'s interval
        is not a sampling interval.
        """
        quad = f"quadratic term in log n: p = {format_p(self.quad_p)}"
        lof = f"lack-of-fit p = {format_p(self.lof_p)}"
        no_lof = "no replicate runs, so no lack-of-fit test"
        if not np.isfinite(self.p):
            why = (
                f"{len(self.sizes)} sizes; a bend needs 3"
                if len(self.sizes) < 3
                else f"{sum(self.runs_per_size)} runs; the quadratic term needs 4"
                if sum(self.runs_per_size) < 4
                else "no scatter about the line"
            )
            text = f"power law not tested ({why})"
        elif self.rejected:
            first, last = self.local_slopes[0], self.local_slopes[-1]
            if self.test == "lack of fit":
                test = f"lack-of-fit F({self.lof_df[0]}, {self.lof_df[1]}) = {self.lof_f:.2f}; {quad}"
            else:
                test = f"{quad}; {no_lof}"
            text = (
                f"power law rejected at p = {format_p(self.p)} ({test}): the local exponent "
                f"{'falls' if last < first else 'rises'} from {first:.2f} to {last:.2f}"
            )
        elif self.test == "lack of fit":
            text = f"consistent with a power law ({lof}, quadratic p = {format_p(self.quad_p)})"
        else:
            text = f"consistent with a power law (quadratic p = {format_p(self.quad_p)}; {no_lof})"
        if not self.replicated:
            text += "; one run per size: b's interval resamples the sizes, it is not a sampling interval over seeds"
        return text


def _sum_of_squares(residuals: np.ndarray, scale: float) -> float:
    """``residuals @ residuals``, with round-off (below :data:`ROUND_OFF` × ``scale``) as exactly 0."""
    ss = float(residuals @ residuals)
    return 0.0 if ss <= ROUND_OFF * scale else ss


def _f_test(extra_ss: float, df_extra: int, error_ss: float, df_error: int) -> tuple[float, float]:
    """F = (extra_ss/df_extra) / (error_ss/df_error) and its upper-tail p-value; NaN when both
    sums are 0 (no scatter: nothing to test), F = inf and p = 0 when only the error sum is.
    """
    if extra_ss == 0 and error_ss == 0:
        return float("nan"), float("nan")
    f = float("inf") if error_ss == 0 else (extra_ss / df_extra) / (error_ss / df_error)
    return f, float(stats.f.sf(f, df_extra, df_error))


def power_law_tests(n: np.ndarray, y: np.ndarray) -> PowerLawTests:
    """Test one power law (Eq. 9) against the runs ``(n, y)`` (positive ``y``; X15).

    * **Lack of fit.** With ``k`` sizes and ``N`` runs, the residual sum of squares of the
      log-log line splits into pure error (runs about their size's mean ``log y``, ``N - k``
      degrees of freedom) and lack of fit (the rest, ``k - 2``); ``F = (SS_lof/(k-2)) /
      (SS_pe/(N-k))`` is F(k-2, N-k)-distributed when the line is right.
    * **Quadratic term.** ``log y = c0 + c1 log n + c2 (log n)^2``; the p-value of ``c2 = 0`` by
      the F test of the added term (1 and ``N - 3`` degrees of freedom).
    * **Local slopes** between consecutive sizes, of ``log`` of the mean ``y`` per size.
    """
    n = np.asarray(n, dtype=float)
    y = np.asarray(y, dtype=float)
    x, ly = np.log(n), np.log(y)
    sizes, inverse, counts = np.unique(n, return_inverse=True, return_counts=True)
    k, runs = sizes.size, n.size
    scale = float(ly @ ly)
    size_x, size_ly = _points(n, y, per_size_means=True)
    slope, intercept, _ = _ols(x, ly)
    line_ss = _sum_of_squares(ly - intercept - slope * x, scale)

    lof_f = lof_p = np.nan
    if k >= 3 and runs > k:
        mean_ly = np.bincount(inverse, weights=ly) / counts
        pure_ss = _sum_of_squares(ly - mean_ly[inverse], scale)
        lof_f, lof_p = _f_test(max(line_ss - pure_ss, 0.0), k - 2, pure_ss, runs - k)

    quad_coef = quad_p = np.nan
    if k >= 3 and runs >= 4:
        xc = x - x.mean()  # centred for conditioning; the (log n)^2 coefficient is unchanged
        design = np.column_stack([np.ones_like(xc), xc, xc**2])
        coef = np.linalg.lstsq(design, ly, rcond=None)[0]
        quad_ss = _sum_of_squares(ly - design @ coef, scale)
        quad_coef = float(coef[2])
        quad_p = _f_test(max(line_ss - quad_ss, 0.0), 1, quad_ss, runs - 3)[1]

    return PowerLawTests(
        sizes=tuple(float(s) for s in sizes),
        runs_per_size=tuple(int(c) for c in counts),
        local_slopes=tuple(float(s) for s in np.diff(size_ly) / np.diff(size_x)),
        lof_f=float(lof_f),
        lof_df=(int(k - 2), int(runs - k)),
        lof_p=float(lof_p),
        quad_coef=quad_coef,
        quad_p=float(quad_p),
    )


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
        tests: whether one power law describes the runs at all (:func:`power_law_tests`).
        n_dropped: runs left out because their ``y`` was NaN or non-positive.
        per_size_means: whether ``y`` was averaged per size before fitting.
    """

    a: float
    b: float
    r2: float
    n_runs: int
    n_sizes: int
    b_ci: tuple[float, float]
    tests: PowerLawTests
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
        tests=power_law_tests(n, y),
        n_dropped=n_dropped,
        per_size_means=per_size_means,
    )


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


def _distinct(values: pd.Series) -> str:
    """The distinct values of a column, in order, as text (floats as ``%g``)."""
    return ", ".join(dict.fromkeys(format(v, "g") if isinstance(v, float) else str(v) for v in values))


def protocol(runs: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    """The protocol of a group's runs (one row per run, :func:`eoslab.report.runs_of`), as the
    report states it beside the fit: dataset, network, criterion, solver with η_max or η, target
    loss, sizes, runs per size and, for SST, the encoder. A value the collected table does not
    record (it holds the run columns and only the axes that vary in the sweep) says so.
    """
    absent = "not recorded in the collected table"

    def column(name: str) -> str:
        return _distinct(runs[name]) if name in runs else ""

    kind = column("model.kind")
    if kind and kind != "mlp":
        network = kind
    elif (runs["depth"] > 0).all() and (runs["width"] > 0).all():
        network = f"MLP, depth {column('depth')} × width {column('width')}"
    else:
        network = f"MLP, depth and width {absent}"
    steps = {"exp_euler": ("exponential Euler", "η_max", "eta_max"), "gd": ("gradient descent", "η", "eta")}
    solvers = []
    for solver, rows in runs.groupby("solver", sort=False):
        name, symbol, step = steps.get(solver, (solver, "", ""))
        if step:
            value = rows[step].dropna()
            name += f", {symbol} = {_distinct(value)}" if len(value) else f", {symbol} {absent}"
        solvers.append(name)
    counts = runs["n"].value_counts().sort_index()
    per_size = str(counts.iloc[0]) if counts.nunique() == 1 else ", ".join(f"{n}: {c}" for n, c in counts.items())
    items = [
        ("dataset", ", ".join(dataset_name(d) for d in dict.fromkeys(runs["dataset"]))),
        ("network", network),
        ("criterion", ", ".join(criterion_name(c) for c in dict.fromkeys(runs["criterion"]))),
        ("solver", "; ".join(solvers)),
        ("target loss", _distinct(runs["target_loss"].dropna()) or absent),
        ("sizes n", ", ".join(str(n) for n in counts.index)),
        ("runs per size", per_size),
    ]
    if "sst" in set(runs["dataset"]):
        items.append(("encoder", column("data.options.encoder") or absent))
    return tuple(items)


def protocol_text(items: tuple[tuple[str, str], ...]) -> str:
    """``dataset AtrialFibrillation · network MLP, depth 6 × width 128 · …``: the protocol in one line."""
    return " · ".join(f"{k} {v}" for k, v in items)


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
