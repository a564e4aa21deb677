"""Eq. 9 fits on arrays with a known answer: a, b recovered, R² as numpy computes it, the
bootstrap interval, and clear errors on degenerate input.
"""

import warnings

import numpy as np
import pytest
from scipy import special, stats

from eoslab.report.powerlaw import fit_power_law, format_p
from eoslab.report.table2 import PAPER_TABLE2

SIZES = np.repeat([390, 781, 1562, 3125, 6250], 16)


def test_noiseless_power_law_is_recovered_exactly():
    a, b = 4e-4, 0.49
    fit = fit_power_law(SIZES, a * SIZES**b, n_boot=50)
    assert fit.a == pytest.approx(a, rel=1e-10)
    assert fit.b == pytest.approx(b, rel=1e-10)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.b_ci == pytest.approx((b, b), rel=1e-9)
    assert (fit.n_runs, fit.n_sizes, fit.n_dropped) == (80, 5, 0)
    np.testing.assert_allclose(fit.predict(SIZES), a * SIZES**b, rtol=1e-10)


def test_noisy_power_law_matches_numpy_and_the_interval_covers_b():
    rng = np.random.default_rng(3)
    a, b = 1.7e-3, 0.23
    y = a * SIZES**b * np.exp(rng.normal(0, 0.15, SIZES.size))
    fit = fit_power_law(SIZES, y, n_boot=1000, seed=1)
    slope, intercept = np.polyfit(np.log(SIZES), np.log(y), 1)
    assert fit.b == pytest.approx(slope, rel=1e-10)
    assert fit.a == pytest.approx(np.exp(intercept), rel=1e-10)
    assert fit.r2 == pytest.approx(np.corrcoef(np.log(SIZES), np.log(y))[0, 1] ** 2, rel=1e-10)
    residual = np.log(y) - np.polyval([slope, intercept], np.log(SIZES))
    total = np.log(y) - np.log(y).mean()
    assert fit.r2 == pytest.approx(1 - residual @ residual / (total @ total), rel=1e-10)
    assert fit.b == pytest.approx(b, abs=0.05)
    assert fit.a == pytest.approx(a, rel=0.4)
    # the interval against a plain-numpy percentile bootstrap: n_boot resamples of the runs with
    # replacement (default_rng(seed).integers(0, N, N), one draw per resample; a resample of a single
    # size would have no slope and is skipped), each slope by np.polyfit in log-log, and the 2.5 and
    # 97.5 percentiles (linear interpolation) of the slopes
    boot = np.random.default_rng(1)
    slopes = []
    for _ in range(1000):
        pick = boot.integers(0, SIZES.size, size=SIZES.size)
        if np.unique(SIZES[pick]).size > 1:
            slopes.append(np.polyfit(np.log(SIZES[pick]), np.log(y[pick]), 1)[0])
    assert fit.b_ci == pytest.approx(tuple(np.percentile(slopes, [2.5, 97.5])), rel=1e-12)
    low, high = fit.b_ci
    assert low < b < high and low < fit.b < high
    assert high - low < 0.15
    # seeded: the same seed gives the same interval
    assert fit_power_law(SIZES, y, n_boot=1000, seed=1).b_ci == fit.b_ci


def test_per_size_means_fits_one_point_per_size():
    rng = np.random.default_rng(0)
    y = 2e-3 * SIZES**0.4 * np.exp(rng.normal(0, 0.1, SIZES.size))
    fit = fit_power_law(SIZES, y, per_size_means=True, n_boot=200)
    sizes = np.unique(SIZES)
    means = np.array([y[SIZES == s].mean() for s in sizes])
    slope, intercept = np.polyfit(np.log(sizes), np.log(means), 1)
    assert fit.b == pytest.approx(slope, rel=1e-10)
    assert fit.a == pytest.approx(np.exp(intercept), rel=1e-10)
    assert fit.per_size_means and fit.n_sizes == 5 and fit.n_runs == 80


def test_nan_and_nonpositive_runs_are_dropped_with_a_warning_and_counted():
    y = 1e-3 * SIZES**0.5
    y[[0, 20]] = np.nan
    y[40] = -1.0
    with pytest.warns(UserWarning, match=r"cifar10/ce: dropped 3 of 80 runs .*2 NaN, 1 non-positive"):
        fit = fit_power_law(SIZES, y, n_boot=20, label="cifar10/ce")
    assert fit.n_dropped == 3 and fit.n_runs == 77
    assert fit.b == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("n", "y", "message"),
    [
        ([], [], "no runs"),
        ([100, 100, 100, 100], [1.0, 2.0, 3.0, 4.0], "only one distinct dataset size"),
        ([100, 200, 400], [np.nan, np.nan, np.nan], "all 3 y values are NaN or non-positive"),
        ([100, 200, 400], [0.0, -1.0, np.nan], "all 3 y values are NaN or non-positive"),
        ([100, 200], [0.1, 0.2], "only 2 usable runs; the fit needs at least 3"),
        ([100, 200, 0], [0.1, 0.2, 0.3], "sizes n must be positive"),
        ([100, 200, 400], [0.1, 0.2], "differ in length"),
    ],
)
def test_degenerate_input_gives_a_clear_error(n, y, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=message):
            fit_power_law(np.array(n, dtype=float), np.array(y, dtype=float), n_boot=10)


def test_per_size_means_needs_three_sizes():
    with pytest.raises(ValueError, match="only 2 sizes"):
        fit_power_law([100, 100, 200, 200], [1.0, 1.1, 2.0, 2.1], per_size_means=True, n_boot=10)


def test_paper_table2_has_the_papers_rows():
    assert PAPER_TABLE2[("cifar10", "ce")] == (0.0004, 0.49, 0.97)
    assert len(PAPER_TABLE2) == 5
    assert all(0.74 <= r2 <= 0.98 for _, _, r2 in PAPER_TABLE2.values())


# --- whether one power law describes the runs (D16) ---------------------------------------------

REPLICATED = np.repeat([60, 120, 240, 480, 960], 4)


def _independent_tests(n, y):
    """The lack-of-fit F and p and the quadratic term's p computed another way: the lack of fit as
    the comparison of the line with the one-mean-per-size model (dummy regression), its p from the
    regularised incomplete beta function; the quadratic p by the t statistic of the uncentred
    polynomial's coefficient and its covariance.
    """
    x, ly = np.log(n), np.log(y)
    sizes = np.unique(x)
    dummies = (x[:, None] == sizes[None, :]).astype(float)
    line = np.column_stack([np.ones_like(x), x])
    sse = lambda design: np.sum((ly - design @ np.linalg.lstsq(design, ly, rcond=None)[0]) ** 2)
    k, runs = sizes.size, x.size
    d1, d2 = k - 2, runs - k
    f = ((sse(line) - sse(dummies)) / d1) / (sse(dummies) / d2)
    lof_p = special.betainc(d2 / 2, d1 / 2, d2 / (d2 + d1 * f))
    coef, cov = np.polyfit(x, ly, 2, cov="unscaled")
    sigma2 = np.sum((ly - np.polyval(coef, x)) ** 2) / (runs - 3)
    t = coef[0] / np.sqrt(sigma2 * cov[0, 0])
    return f, lof_p, 2 * stats.t.sf(abs(t), runs - 3)


def test_a_noisy_power_law_is_not_rejected_and_the_tests_match_an_independent_computation():
    rng = np.random.default_rng(11)
    y = 2.6e-3 * REPLICATED**0.45 * np.exp(rng.normal(0, 0.1, REPLICATED.size))
    t = fit_power_law(REPLICATED, y, n_boot=50).tests
    f, lof_p, quad_p = _independent_tests(REPLICATED, y)
    assert t.lof_df == (3, 15)
    assert t.lof_f == pytest.approx(f, rel=1e-9)
    assert t.lof_p == pytest.approx(lof_p, rel=1e-9)
    assert t.quad_p == pytest.approx(quad_p, rel=1e-8)
    assert t.lof_p > 0.05 and t.quad_p > 0.05 and not t.rejected
    assert t.verdict() == (f"consistent with a power law (lack-of-fit p = {t.lof_p:.3f}, quadratic p = {t.quad_p:.3f})")
    sizes = np.unique(REPLICATED)
    means = np.array([y[REPLICATED == s].mean() for s in sizes])
    np.testing.assert_allclose(t.local_slopes, np.diff(np.log(means)) / np.diff(np.log(sizes)), rtol=1e-12)
    assert t.runs_per_size == (4,) * 5 and t.replicated


def test_a_bent_curve_is_rejected_and_the_verdict_says_how_the_exponent_moves():
    rng = np.random.default_rng(5)
    x = np.log(REPLICATED)
    y = np.exp(-4 + 0.3 * x - 0.2 * (x - x.mean()) ** 2 + rng.normal(0, 0.05, x.size))  # flattening
    t = fit_power_law(REPLICATED, y, n_boot=50).tests
    f, lof_p, quad_p = _independent_tests(REPLICATED, y)
    assert t.lof_f == pytest.approx(f, rel=1e-9) and t.lof_p == pytest.approx(lof_p, rel=1e-6, abs=1e-300)
    assert t.quad_p == pytest.approx(quad_p, rel=1e-6, abs=1e-300)
    assert t.lof_p < 1e-6 and t.quad_p < 1e-6 and t.rejected and t.test == "lack of fit"
    # the (log n)² coefficient is numpy's quadratic fit in log n (uncentred: centring does not change
    # the leading coefficient), and near the -0.2 the data were drawn with
    assert t.quad_coef == pytest.approx(np.polyfit(x, np.log(y), 2)[0], rel=1e-9)
    assert t.quad_coef == pytest.approx(-0.2, abs=0.03)
    # local slopes: Δ log(mean y per size) / Δ log n between consecutive sizes
    sizes = np.unique(REPLICATED)
    means = np.array([y[REPLICATED == s].mean() for s in sizes])
    np.testing.assert_allclose(t.local_slopes, np.diff(np.log(means)) / np.diff(np.log(sizes)), rtol=1e-12)
    slopes = t.local_slopes
    assert slopes[0] > 0.5 and slopes[-1] < 0  # 0.3 - 0.4 (x - mean) at the ends: ~0.7 and ~-0.1
    assert t.verdict() == (
        f"power law rejected at p = {t.lof_p:.1g} (lack-of-fit F(3, 15) = {t.lof_f:.2f}; quadratic term in "
        f"log n: p = {t.quad_p:.1g}): the local exponent falls from {slopes[0]:.2f} to {slopes[-1]:.2f}"
    )


def test_one_run_per_size_tests_the_quadratic_term_and_says_the_interval_is_not_a_sampling_interval():
    sizes = np.array([60, 120, 240, 480, 960, 1920])
    x = np.log(sizes)
    y = np.exp(-4 + 0.3 * x - 0.3 * (x - x.mean()) ** 2 + np.array([0.01, -0.02, 0.015, 0.0, -0.01, 0.02]))
    t = fit_power_law(sizes, y, n_boot=50).tests
    assert np.isnan(t.lof_f) and np.isnan(t.lof_p) and not t.replicated and t.test == "quadratic"
    coef, cov = np.polyfit(x, np.log(y), 2, cov="unscaled")
    sigma2 = np.sum((np.log(y) - np.polyval(coef, x)) ** 2) / 3
    assert t.quad_p == pytest.approx(2 * stats.t.sf(abs(coef[0] / np.sqrt(sigma2 * cov[0, 0])), 3), rel=1e-8)
    assert t.rejected
    verdict = t.verdict()
    assert verdict.startswith(f"power law rejected at p = {t.quad_p:.1g} (quadratic term in log n: p = ")
    assert "no replicate runs, so no lack-of-fit test" in verdict
    assert verdict.endswith(
        "; one run per size: b's interval resamples the sizes, it is not a sampling interval over seeds"
    )


def test_two_sizes_cannot_test_the_power_law():
    t = fit_power_law([100, 100, 200, 200], [1.0, 1.1, 2.0, 2.1], n_boot=10).tests
    assert np.isnan(t.lof_p) and np.isnan(t.quad_p) and not t.rejected
    assert t.verdict() == "power law not tested (2 sizes; a bend needs 3)"
    assert t.local_slopes == pytest.approx((np.log(2.05 / 1.05) / np.log(2),))


def test_an_exact_power_law_has_nothing_to_test():
    t = fit_power_law(SIZES, 4e-4 * SIZES**0.49, n_boot=10).tests
    assert np.isnan(t.lof_f) and np.isnan(t.quad_p)
    assert t.verdict() == "power law not tested (no scatter about the line)"
    assert t.local_slopes == pytest.approx((0.49,) * 4)


@pytest.mark.parametrize(("p", "text"), [(0.0104, "0.010"), (0.4, "0.400"), (0.00084, "0.0008"), (np.nan, "–")])
def test_p_values_print_with_three_decimals_or_one_significant_digit(p, text):
    assert format_p(p) == text
