"""Eq. 9 against a setting (eoslab.report.study): the exponent per width, against independent fits."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from eoslab.report import collected_frame, write_report
from eoslab.report.figures import render
from eoslab.report.study import Study, plan_studies, studies, study_frame, study_markdown
from eoslab.report.table2 import fit_power_laws

from ._report_helpers import make_collected

SIZES = (390, 781, 1562)


def _widths(b_of_width: dict[int, float], sizes_of_width: dict[int, tuple] | None = None) -> pd.DataFrame:
    """Runs of CIFAR-10/CE at several widths, C5 peaking at 4e-4·n^b(width) with noise."""
    parts = []
    for k, (width, b) in enumerate(b_of_width.items()):
        sizes = (sizes_of_width or {}).get(width, SIZES)
        frame = make_collected(groups=(("cifar10", "ce", sizes, 4e-4, b),), noise=0.05, gd=False, seed=k)
        parts.append(frame.assign(width=width, run_id=frame["run_id"] + f"-w{width}"))
    return collected_frame(pd.concat(parts, ignore_index=True))


def _independent_b(frame: pd.DataFrame, width: int) -> float:
    """The slope of log(peak C5, layer 1, steps ≥ 10) on log n over one width's runs, by numpy."""
    rows = frame[(frame["width"] == width) & (frame["metric"] == "eq7_c5") & (frame["layer"] == 1)]
    peaks = rows[rows["step"] >= 10].groupby("run_id").agg(n=("n", "first"), y=("value", "max"))
    return float(np.polyfit(np.log(peaks["n"]), np.log(peaks["y"]), 1)[0])


def test_a_study_gathers_the_fits_of_each_width_and_they_match_independent_fits():
    frame = _widths({32: 0.3, 128: 0.6, 64: 0.45})
    (study,) = studies(fit_power_laws(frame, on_error="record", n_boot=200))
    assert study.axis == "width" and study.family.extra == {}
    assert [v for v, _ in study.fits] == [32.0, 64.0, 128.0]  # ascending, whatever the table's order
    for value, g in study.fits:
        assert g.fit.b == pytest.approx(_independent_b(frame, int(value)), abs=1e-12)
    assert [g.fit.b for _, g in study.fits] == pytest.approx([0.3, 0.45, 0.6], abs=0.06)
    assert study.paper_b == 0.49 and study.size_note() == ""

    table = study_frame([study])
    assert list(table["value"]) == [32.0, 32.0, 64.0, 64.0, 128.0, 128.0]
    assert list(table["y"][:2]) == ["peak", f"at t* = {study.fits[0][1].t_star:.3g}"]
    peak_rows = table[table["y"] == "peak"]
    assert peak_rows["b"].to_numpy() == pytest.approx([g.fit.b for _, g in study.fits], abs=1e-12)
    assert (peak_rows["b_ci_low"] < peak_rows["b"]).all() and (peak_rows["b"] < peak_rows["b_ci_high"]).all()
    assert set(table["sizes"]) == {"390, 781, 1562"} and set(table["paper_b"]) == {0.49}

    md = study_markdown([study])
    assert md.startswith("## CIFAR-10, Cross-Entropy: b against width\n")
    g64 = study.fits[1][1]
    assert f"| 64 | peak | 390, 781, 1562 | 9 | {g64.fit.a:.2g} | {g64.fit.b:.2f} |" in md
    assert f"- width 64, y peak: {g64.fit.tests.verdict()}" in md


def test_fits_over_different_sizes_are_flagged():
    frame = _widths({32: 0.3, 64: 0.45}, sizes_of_width={64: (781, 1562, 3125)})
    (study,) = studies(fit_power_laws(frame, on_error="record", n_boot=100))
    assert study.size_note() == (
        "the fits span different sizes (width 32: n = 390, 781, 1562; width 64: n = 781, 1562, 3125): "
        "their b are not over one n range"
    )
    assert f"- Note: {study.size_note()}" in study_markdown([study])


def test_no_study_without_a_numeric_setting_that_varies():
    one_width = _widths({32: 0.3})
    assert studies(fit_power_laws(one_width, on_error="record", n_boot=100)) == []
    # two datasets at one width: groups differ in the dataset, which is no setting
    two = collected_frame(make_collected(noise=0.05, gd=False))
    assert studies(fit_power_laws(two, on_error="record", n_boot=100)) == []
    # a second width with one run only (a run stopped early, say): one fitted value, no study
    lone = _widths({32: 0.3, 64: 0.45})
    lone = lone[(lone["width"] == 32) | (lone["run_id"] == lone.loc[lone["width"] == 64, "run_id"].iloc[0])]
    fits = fit_power_laws(lone, on_error="record", n_boot=100)
    assert [g.fit is not None for g in fits] == [True, False] and studies(fits) == []


def test_the_report_writes_the_study_and_its_figure_and_removes_a_stale_one(tmp_path):
    frame = _widths({32: 0.3, 64: 0.45})
    result = write_report(frame, tmp_path, n_boot=100)
    assert len(result.studies) == 1
    assert (tmp_path / "study.md").read_text() == study_markdown(result.studies)
    assert pd.read_csv(tmp_path / "study.csv")["b"].notna().all()
    figure = tmp_path / "figures" / "b_against_width__cifar10_ce.png"
    assert figure.is_file() and figure.with_suffix(".pdf").is_file()
    page = (tmp_path / "index.html").read_text()
    assert "<h2>Eq. 9 against a setting</h2>" in page and "CIFAR-10, Cross-Entropy: b against width" in page

    write_report(_widths({32: 0.3}), tmp_path, n_boot=100)  # the same folder, now one width
    assert not (tmp_path / "study.md").exists() and not (tmp_path / "study.csv").exists()
    assert "against a setting" not in (tmp_path / "index.html").read_text()


def test_the_figure_draws_intervals_that_miss_b_or_are_nan(tmp_path):
    """A percentile bootstrap of few resamples can give an interval on one side of b (and a
    degenerate one NaN): the figure then draws no bar on that side instead of failing.
    """
    (study,) = studies(fit_power_laws(_widths({32: 0.3, 64: 0.45}), on_error="record", n_boot=100))
    (v1, g1), (v2, g2) = study.fits
    above = dataclasses.replace(g1.fit, b_ci=(g1.fit.b + 0.1, g1.fit.b + 0.2))
    nan = dataclasses.replace(g2.fit, b_ci=(float("nan"), float("nan")))
    fits = ((v1, dataclasses.replace(g1, fit=above)), (v2, dataclasses.replace(g2, fit=nan)))
    (job,) = plan_studies([Study(study.axis, study.family, fits)])
    figure = render(job, tmp_path)
    assert figure.png.stat().st_size > 0 and figure.pdf.is_file()


def test_groups_that_differ_in_a_number_are_ordered_by_its_value_in_table2():
    """Widths 512, 64, 256, 128 give table2's groups in the order 64, 128, 256, 512 (not the
    text order 128, 256, 512, 64); a text setting beside them still orders as text.
    """
    from eoslab.report.groups import groups
    from eoslab.report.table2 import fits_markdown

    frame = _widths({512: 0.5, 64: 0.2, 256: 0.4, 128: 0.3})
    assert [g.extra["width"] for g, _ in groups(frame)] == [64, 128, 256, 512]
    table = fits_markdown(fit_power_laws(frame, on_error="record", n_boot=20))
    rows = [line for line in table.splitlines() if line.startswith("| CIFAR-10")]
    assert [row.split("|")[3].strip() for row in rows[::2]] == [f"width = {w}" for w in (64, 128, 256, 512)]
    mixed = collected_frame(frame.assign(tag=np.where(frame["width"] > 128, "b", "a")).drop(columns="width"))
    assert [g.extra["tag"] for g, _ in groups(mixed)] == ["a", "b"]
