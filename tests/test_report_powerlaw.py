"""Eq. 9 fits on arrays with a known answer: a, b recovered, R² as numpy computes it, the
bootstrap interval, and clear errors on degenerate input.
"""

import warnings

import numpy as np
import pytest

from eoslab.report.powerlaw import PAPER_TABLE2, fit_power_law

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
