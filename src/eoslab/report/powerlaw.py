"""Eq. 9, ``y = a n^b``, fitted to the runs' ``(n, y)`` (docs/math.md §5, D5 and X15 in docs/decisions.md).

:func:`fit_power_law` fits Eq. 9 by ordinary least squares of ``log y`` on ``log n`` (one point per
run, or per size), so ``a = exp(intercept)``, ``b`` = slope and ``R^2`` is taken in log space; a
bootstrap over runs gives a confidence interval for ``b``.

Beyond the paper (which shows a fit and R² only), every fit carries the tests of whether one power
law describes the data at all (:func:`power_law_tests`, X15): the lack-of-fit F test against the
replicate runs of each size, the quadratic term in ``log n``, the local slopes between consecutive
sizes and a verdict in words. What ``y`` is, and the fit of each group of a sweep, are
:mod:`eoslab.report.table2`'s.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: The fewest usable points an OLS fit with a residual degree of freedom needs.
MIN_POINTS = 3
#: Significance level of the verdict: one power law is rejected when its test's p is below it (X15).
ALPHA = 0.05
#: Sums of squares below this share of sum(log y)^2 are round-off, not scatter (exact power laws).
ROUND_OFF = 1e-20


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
