"""The report on hand-made collected tables: Eq. 9 fits per group, the Section-5 checks, the
figures and ``eoslab report`` end to end (files, index.html whose images all exist).
"""

import warnings
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eoslab.report import collected_frame, runs_of
from eoslab.report.checks import checks_frame, section5_checks
from eoslab.report.figures import CURVE_FAMILIES, plan_figures
from eoslab.report.table2 import fit_power_laws, fits_frame, fits_markdown, peak_per_run

from ._report_helpers import STEPS, make_collected
from ._train_helpers import small_config


def test_collected_frame_normalises_and_validates():
    frame = collected_frame(pa.Table.from_pandas(make_collected(gd=False)))
    assert frame["layer"].dtype == np.float64 and frame["layer"].isna().any()
    with pytest.raises(ValueError, match="lacks the column.*metric"):
        collected_frame(make_collected(gd=False).drop(columns="metric"))
    with pytest.raises(ValueError, match="empty"):
        collected_frame(make_collected(gd=False).iloc[:0])
    clash = make_collected(gd=False)
    clash.loc[0, "n"] = 12345
    with pytest.raises(ValueError, match="different configurations"):
        collected_frame(clash)


def test_peaks_ignore_the_transient_and_the_noiseless_fit_recovers_a_b():
    frame = collected_frame(make_collected())
    peaks = peak_per_run(frame[frame["solver"] == "exp_euler"])
    cifar = peaks[peaks["dataset"] == "cifar10"]
    np.testing.assert_allclose(cifar["peak"], 4e-4 * cifar["n"] ** 0.49, rtol=1e-12)
    fits = fit_power_laws(frame, n_boot=100)
    assert [(g.dataset, g.criterion) for g in fits] == [("cifar10", "ce"), ("synthetic", "mse")]
    cifar_fit, synthetic_fit = (g.fit for g in fits)
    assert cifar_fit.b == pytest.approx(0.49) and cifar_fit.a == pytest.approx(4e-4)
    assert cifar_fit.n_runs == 12  # the GD run is not in the fit
    assert synthetic_fit.b == pytest.approx(0.3) and synthetic_fit.a == pytest.approx(2e-3)
    table = fits_frame(fits)
    assert table.loc[0, "paper_b"] == 0.49 and np.isnan(table.loc[1, "paper_b"])
    assert list(table["t_star"]) == [3.0, 3.0]  # every run's last snapshot is at t = 3, where C5 peaks
    np.testing.assert_allclose(table["t_star_b"], table["b"], rtol=1e-12)
    md = fits_markdown(fits)
    assert "| CIFAR-10 | Cross-Entropy | peak | 0.0004 | 0.49 | 1.00 | 0.0004 | 0.49 | 0.97 |" in md
    assert "| Synthetic | MSE | peak |" in md


def test_noisy_fit_on_a_table_recovers_b_within_its_interval():
    groups = (("dice", "ce", (468, 937, 1875, 3750, 7500), 1.7e-3, 0.23),)
    seeds = tuple((i, s) for i in range(3) for s in range(3))
    frame = collected_frame(make_collected(groups=groups, seeds=seeds, noise=0.1, gd=False, seed=5))
    (g,) = fit_power_laws(frame, n_boot=500, seed=2)
    assert g.fit.n_runs == 45 and g.fit.n_sizes == 5
    assert g.fit.b == pytest.approx(0.23, abs=0.06)
    assert g.fit.b_ci[0] < 0.23 < g.fit.b_ci[1]
    assert 0 < g.fit.r2 < 1


def test_group_errors_raise_or_are_recorded():
    groups = (("cifar10", "ce", (390, 781), 4e-4, 0.49), ("sst", "ce", (461,), 1e-4, 0.67))
    frame = collected_frame(make_collected(groups=groups, gd=False))
    with pytest.raises(ValueError, match="sst/ce: only one distinct dataset size"):
        fit_power_laws(frame, n_boot=10)
    fits = fit_power_laws(frame, n_boot=10, on_error="record")
    assert fits[0].fit is not None and fits[1].fit is None
    assert "only one distinct dataset size" in fits[1].error
    assert "not fitted: sst/ce: only one distinct" in fits_markdown(fits)
    with pytest.raises(ValueError, match="no nonexistent"):
        fit_power_laws(frame, metric="nonexistent")


def test_all_nan_peaks_are_an_error_and_single_nan_runs_are_counted():
    frame = collected_frame(make_collected(gd=False))
    c5 = (frame["metric"] == "eq7_c5") & (frame["layer"] == 1)
    one_run = frame["run_id"] == "cifar10-ce-n390-i0-s0"
    single = frame.copy()
    single.loc[c5 & one_run & (single["step"] >= 10), "value"] = np.nan
    with pytest.warns(UserWarning) as caught:
        fits = fit_power_laws(single, n_boot=10)
    assert [str(w.message).split(" from")[0] for w in caught] == [
        "cifar10/ce: dropped 1 of 12 runs",
        "cifar10/ce at t* = 3: dropped 1 of 12 runs",
    ]
    assert fits[0].fit.n_dropped == 1 and fits[0].fit.n_runs == 11
    everything = frame.copy()
    everything.loc[c5, "value"] = np.nan
    with pytest.raises(ValueError, match="all 12 y values are NaN"):
        fit_power_laws(everything, n_boot=10)


def test_section5_checks_against_hand_computed_values():
    raw = make_collected()
    target = raw["run_id"] == "cifar10-ce-n781-i0-s1"
    # λ¹(R) at 12 % of λ¹(H) at step 100 breaks the 9.9 % bound; a spike at step 0 is ignored.
    for step, share in ((100, 0.12), (0, 0.5)):
        at = target & (raw["step"] == step)
        h = raw.loc[at & (raw["metric"] == "sharpness_H"), "value"].iloc[0]
        raw.loc[at & (raw["metric"] == "sharpness_R"), "value"] = share * h
        raw.loc[at & (raw["metric"] == "sharpness_G"), "value"] = (1 - share) * h
    nan_run = raw["run_id"] == "synthetic-mse-n200-i0-s0"
    raw.loc[nan_run & (raw["metric"] == "sharpness_H") & (raw["step"] == 40), "value"] = np.nan
    checks = {c.name: c for c in section5_checks(collected_frame(raw))}

    assert checks["R_over_H"].ours == pytest.approx(0.12) and not checks["R_over_H"].holds
    assert checks["R_over_H"].at == "run=cifar10-ce-n781-i0-s1 (n=781, seeds 0/1) step=100"  # not the id alone
    assert checks["G_vs_H"].ours == pytest.approx(0.12) and not checks["G_vs_H"].holds
    euler = raw[(raw["solver"] == "exp_euler") & (raw["step"] >= 10) & (raw["metric"] == "sharpness_R")]
    assert checks["R_max"].ours == pytest.approx(euler["value"].max()) and checks["R_max"].holds
    assert checks["layer_vs_first"].ours == pytest.approx(1.0) and checks["layer_vs_first"].holds
    assert checks["layer_vs_first"].at.endswith("layer=2")
    assert checks["nan_eigenvalues"].ours == pytest.approx(1 / (3 * len(STEPS)))
    assert checks["nan_eigenvalues"].at == "run=synthetic-mse-n200-i0-s0 (n=200, seeds 0/0)"
    table = checks_frame(list(checks.values()))
    assert list(table.columns) == ["check", "description", "ours", "paper", "holds", "at"]
    assert table.set_index("check").loc["R_max", "paper"] == 56.74


def test_checks_without_data_do_not_hold():
    frame = collected_frame(make_collected(gd=False))
    checks = section5_checks(frame[~frame["metric"].str.startswith("sharpness")])
    assert all(np.isnan(c.ours) and not c.holds for c in checks if c.name != "layer_vs_first")


def test_plan_covers_every_family_and_notes_what_is_skipped():
    frame = collected_frame(make_collected())
    jobs, notes = plan_figures(frame, fits=fit_power_laws(frame, n_boot=10))
    families = {(j.group.dataset, j.family) for j in jobs}
    for family in CURVE_FAMILIES:
        assert ("cifar10", family.key) in families and ("synthetic", family.key) in families
    assert ("cifar10", "peak_alignment") in families and ("cifar10", "gd_vs_euler") in families
    assert ("synthetic", "gd_vs_euler") not in families
    assert len(jobs) == 2 * (len(CURVE_FAMILIES) + 1) + 2  # + the GD group figure and the GD run's own
    # The group with a GD run opens with its edge-of-stability figures; the groups keep their order.
    assert [j.family for j in jobs[:3]] == ["gd_vs_euler", "gd_run", "fig1_sharpness"]
    assert jobs[1].stem == "gd_run__cifar10_ce__gd-run"
    assert [j.group.dataset for j in jobs] == ["cifar10"] * 11 + ["synthetic"] * 9
    _, notes = plan_figures(collected_frame(make_collected(gd=False)))
    assert any("no gradient-descent run" in n for n in notes)


def test_the_edge_of_stability_figure_is_drawn_from_every_measured_step_with_a_caption_from_the_data():
    """λ¹ of the trajectory at every measured step (not the analysed snapshots), a loss panel, 2/η,
    and a caption that says what the data show.
    """
    from eoslab.report.figures import EdgeBand, RunCurves

    frame = collected_frame(make_collected())
    jobs, _ = plan_figures(frame)
    contrast, own = jobs[0], jobs[1]
    band = "first reaches 2/η = 200 at step 150; from there on 88 % of 51 measured steps are within 10 % of 2/η"
    assert band + " (λ¹ 190–300)" in contrast.caption and band in own.caption
    assert "GD η = 0.01, n=390, seeds 0/0" in contrast.caption and "settles" not in contrast.caption
    fig = contrast.draw()
    loss, sharp = fig.axes[:2]
    assert loss.get_yscale() == "log" and "loss" in loss.get_ylabel()
    flow, gd = sharp.get_lines()[:2]
    assert len(gd.get_xdata()) == 101 and len(flow.get_xdata()) == 301  # every 3rd step, and every step
    assert [line.get_ydata()[0] for line in sharp.get_lines()[2:3]] == [200.0]  # the 2/η line
    assert "exponential Euler" in flow.get_label()

    below = EdgeBand.of(pd.DataFrame({"step": [0, 5, 10], "value": [1.0, 1.5, np.nan]}), eta=1.0)
    assert (
        below.crossing is None
        and below.text() == "λ¹(H) stays below 2/η = 2: at most 1.5 (75 % of it) over 2 measured steps"
    )
    unmeasured = RunCurves("r", "n=1", frame.iloc[:0], frame.iloc[:0], eta=0.5)
    assert unmeasured.band_text() == "λ¹(H) not measured (solver.measure_sharpness_every = 0)"

    analysis_only = frame[~frame["metric"].str.startswith("trajectory_")]  # a table collected before trajectories
    jobs, notes = plan_figures(analysis_only)
    assert not [j for j in jobs if j.family.startswith("gd")]
    assert any("no trajectory rows" in n and "eoslab collect" in n for n in notes)


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.src, self.href = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.src.append(attrs["src"])
        if tag == "a":
            self.href.append(attrs["href"])


def test_eoslab_report_writes_every_figure_tables_and_index(tmp_path, capsys):
    from eoslab.cli import main

    table = tmp_path / "collected.parquet"
    pq.write_table(pa.Table.from_pandas(make_collected(), preserve_index=False), table)
    out = tmp_path / "rep"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pandas/matplotlib warnings either
        assert main(["report", str(table), "--out", str(out), "--bootstrap", "100"]) == 0
    assert f"report: {(out / 'index.html').resolve()}" in capsys.readouterr().out

    expected = [f.key for f in CURVE_FAMILIES] + ["peak_alignment"]
    stems = [f"{k}__cifar10_ce" for k in expected + ["gd_vs_euler", "gd_run"]] + [
        f"{k}__synthetic_mse" for k in expected
    ]
    stems[-len(expected) - 1] += "__gd-run"  # one GD run's own figure
    for stem in stems:
        for suffix in (".png", ".pdf"):
            assert (out / "figures" / f"{stem}{suffix}").stat().st_size > 1000, stem + suffix
    assert len(list((out / "figures").iterdir())) == 2 * len(stems)

    csv = pd.read_csv(out / "table2.csv")
    assert list(csv["dataset"]) == ["cifar10", "synthetic"]
    assert csv.loc[0, "b"] == pytest.approx(0.49)
    assert "| Dataset | Criterion | y | a | b | R² |" in (out / "table2.md").read_text()
    assert len(pd.read_csv(out / "checks.csv")) == 5
    assert "λ¹(R)" in (out / "checks.md").read_text()
    assert len(pd.read_csv(out / "peaks.csv")) == 15

    page = (out / "index.html").read_text()
    parser = _Images()
    parser.feed(page)
    assert len(parser.src) == len(stems)
    for link in parser.src + parser.href:
        assert not link.startswith(("/", "file:", "http")), link
        assert (out / link).is_file(), link
    assert "0.49" in page and "Section 5" in page


def test_report_sources_that_are_not_reports_are_one_line_errors(tmp_path, capsys):
    from eoslab.cli import main

    (tmp_path / "empty").mkdir()
    for source in (tmp_path / "missing", tmp_path / "empty"):
        assert main(["report", str(source), "--out", str(tmp_path / "c")]) == 1
        err = capsys.readouterr().err
        assert err == (
            f"eoslab report: error: {source} is neither a sweep folder, a run directory nor a collected Parquet table\n"
        )
    hand_made = tmp_path / "hand.parquet"  # a table not written by eoslab collect is reported, and says so
    pq.write_table(pa.Table.from_pandas(make_collected(gd=False), preserve_index=False), hand_made)
    assert main(["report", str(hand_made), "--out", str(tmp_path / "d"), "--bootstrap", "10", "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"report on table {hand_made} (not written by `eoslab collect`: not checked against a sweep)"
    )


def test_figure_titles_name_the_layers_drawn_and_log_axes_keep_few_labels():
    frame = collected_frame(make_collected(gd=False))
    three = frame[frame["layer"].isna() | (frame["layer"] <= 3)]  # a network of 3 layers
    jobs, _ = plan_figures(three)
    fig3 = next(j for j in jobs if j.family == "fig3_layer_sqnorm" and j.group.dataset == "cifar10")
    assert "layers 1 and 3" in fig3.caption
    figure = fig3.draw()
    assert figure.get_suptitle().endswith("layerwise components, layers 1 and 3")
    assert [ax.get_title() for ax in figure.axes if ax.get_title()] == ["layer 1", "layer 3"]

    for family in ("fig4_eq7", "layerjac_sqnorm", "align_ratio"):  # every log axis drawn is tidied
        figure = next(j for j in jobs if j.family == family).draw()
        logs = [ax for ax in figure.axes if ax.get_yscale() == "log"]
        assert logs and all(_readable(ax) for ax in logs), family


def _readable(ax) -> bool:
    """2 to 6 tick labels (minor ones included) inside the y range, none overlapping another."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(ax.figure).get_renderer()
    ax.figure.canvas.draw()
    low, high = ax.get_ylim()
    labels = [
        t
        for t in ax.yaxis.get_ticklabels(which="both")
        if t.get_text() and t.get_visible() and low <= t.get_position()[1] <= high
    ]
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.y0)
    return 2 <= len(labels) <= 6 and all(a.y1 <= b.y0 for a, b in zip(boxes, boxes[1:]))


@pytest.mark.parametrize("low, high", [(0.31, 0.48), (3, 60), (0.9, 2.0), (1e-3, 1e2), (20, 600), (0.05, 0.4)])
def test_log_axes_carry_a_few_readable_labels(low, high):
    from matplotlib.figure import Figure

    from eoslab.report.figures import tidy_log_axis

    ax = Figure(figsize=(3, 2.3)).add_subplot()  # a panel's size
    ax.plot([0, 1], [low, high])
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    tidy_log_axis(ax)  # matplotlib alone labels 8-9 ticks here (minor ones), overlapping at (20, 600)
    assert _readable(ax)


def test_a_gd_runs_own_report_opens_with_its_edge_figure_and_names_no_other_run(tmp_path, one_thread):
    """A single GD run's report opens with its edge-of-stability figure, and its notes name no run
    (nothing such as "GD run <hash> left out of the edge-of-stability figure").
    """
    from eoslab.report.run import write_run_report
    from eoslab.runs import analyze_run, train

    run = tmp_path / "gd"
    solver = {"method": "gd", "eta": 0.5, "measure_sharpness_every": 3}
    train(small_config(solver=solver, train={"max_steps": 30, "snapshot_every": 10}), run, progress=False)
    analyze_run(run, progress=False)
    result = write_run_report(run, tmp_path / "report")
    assert result.figures[0].family == "trajectory" and "2/η = 4" in result.figures[0].caption
    assert not [n for n in result.notes if "GD run" in n or "left out" in n], result.notes
    assert "edge" in (tmp_path / "report" / "summary.md").read_text()


def test_an_interval_from_one_run_per_size_says_so_in_its_cell(tmp_path):
    """A "95 % CI" from one run per size says so in its cell of table2.md and index.html ("sizes
    resampled, 1 run each"); an interval from replicated sizes does not.
    """
    from eoslab.report import write_report

    one = make_collected(seeds=((0, 0),), gd=False)
    result = write_report(one, tmp_path, n_boot=20)
    assert {g.fit.tests.replicated for g in result.fits} == {False}
    for name in ("table2.md", "index.html"):
        assert (tmp_path / name).read_text().count("(sizes resampled, 1 run each)") == 2 * len(result.fits), name
    replicated = fit_power_laws(collected_frame(make_collected(gd=False)), n_boot=20)
    assert "sizes resampled" not in fits_markdown(replicated[:1])  # cifar10: 3 runs a size


def test_tick_labels_within_a_few_percent_are_told_apart():
    """Log-axis ticks within a few percent of each other (C1 from 1.003 to 1.017) get distinct
    labels.
    """
    from matplotlib.figure import Figure

    from eoslab.report.figures import tidy_log_axis

    ax = Figure(figsize=(3, 2.3)).add_subplot()
    ax.plot([0, 1], [1.003, 1.017])
    ax.set_yscale("log")
    ax.set_ylim(1.003, 1.017)
    tidy_log_axis(ax)
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.yaxis.get_ticklabels() if t.get_text()]
    assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
    assert labels == ["1.004", "1.008", "1.012", "1.016"]  # three significant digits gave 1, 1.01, 1.01, 1.02


def test_the_papers_line_does_not_set_the_range_and_a_single_size_gets_no_colour_bar():
    """The paper's line (a = 0.0017) does not set the axis range: our points fill the axes and the
    line's legend entry says "(below the axes)"; a single size n gets no colour bar.
    """
    far = make_collected(groups=(("dice", "ce", (128, 256, 512), 0.05, 0.2),), gd=False)
    frame = collected_frame(far)
    (fit,) = fit_power_laws(frame, n_boot=10)
    assert fit.paper[0] == 0.0017
    jobs, _ = plan_figures(frame, fits=[fit])
    ax = next(j for j in jobs if j.family == "peak_alignment").draw().axes[0]
    low, high = ax.get_ylim()
    assert fit.peaks["peak"].min() / low < 1.5 and high / fit.peaks["peak"].max() < 1.5  # ours fill the axes
    assert any("(below the axes)" in t.get_text() for t in ax.get_legend().get_texts())

    one = collected_frame(far[far["n"] == 256])
    jobs, _ = plan_figures(one)
    figure = next(j for j in jobs if j.family == "fig1_sharpness").draw()
    assert len(figure.axes) == 3 and figure.get_suptitle().endswith("(n = 256)")  # 3 panels, no colour bar
    assert len(next(j for j in plan_figures(frame)[0] if j.family == "fig1_sharpness").draw().axes) == 4


def test_a_table_without_the_fitted_metric_still_gets_a_report(tmp_path):
    from eoslab.report import write_report

    frame = make_collected(groups=(("cifar10", "ce", (390, 781), 4e-4, 0.49),), gd=False)
    result = write_report(frame[frame["metric"] == "sharpness_H"], tmp_path, n_boot=10)
    assert result.fits == [] and any("No power-law fit: no eq7_c5 (layer 1) values" in n for n in result.notes)
    assert [f.family for f in result.figures] == ["fig1_sharpness"]
    assert "No power-law fit" in (tmp_path / "index.html").read_text()
    assert pd.read_csv(tmp_path / "peaks.csv").empty


def test_the_pages_notes_mark_warnings(tmp_path):
    """A WARNING among the notes (a run that two versions of eoslab trained) stands out on the page."""
    from eoslab.report import write_report

    frame = make_collected(groups=(("cifar10", "ce", (390, 781), 4e-4, 0.49),), gd=False)
    notes = ["WARNING: run abc was trained by more than one version of eoslab: …", "left out def: stopped"]
    write_report(frame[frame["metric"] == "sharpness_H"], tmp_path, n_boot=10, notes=notes)
    page = (tmp_path / "index.html").read_text()
    assert "<li class=warn>WARNING: run abc was trained" in page and "<li>left out def: stopped</li>" in page


def test_y_at_a_common_flow_time_interpolates_and_the_last_snapshot_share_is_counted():
    from eoslab.report.table2 import fixed_time_per_run

    table = collected_frame(make_collected(groups=(("cifar10", "ce", (390, 781, 1562), 4e-4, 0.49),), gd=False))
    frame = table[~((table["n"] == 390) & (table["step"] > 200))].copy()  # n = 390 stops at t = 2, the rest at 3
    c5 = (frame["metric"] == "eq7_c5") & (frame["layer"] == 1)
    frame.loc[c5 & (frame["n"] == 1562) & (frame["step"] == 300), "value"] = 0.0  # peaks before its last snapshot
    t_star, y = fixed_time_per_run(frame)
    assert t_star == pytest.approx(2.0)
    for run_id, value in y.items():
        n = int(run_id.split("-n")[1].split("-")[0])
        assert value == pytest.approx(4e-4 * n**0.49 * (0.3 + 0.7 * 200 / 300), rel=1e-12), run_id
    (g,) = fit_power_laws(frame, n_boot=20)
    assert g.t_star == pytest.approx(2.0) and g.fixed_time.b == pytest.approx(0.49)
    assert g.at_last == (6, 9)
    assert g.last_snapshot_line().startswith(
        "WARNING: the peak is the last analysed snapshot in 6 of 9 runs (67%): y is where training stopped"
    )

    between = frame.copy()  # t* = 2.5 lies halfway between the snapshots at t = 2.4 and 2.6
    between.loc[(between["n"] == 390) & (between["step"] == 200), "t"] = 2.5
    t_star, y = fixed_time_per_run(between)
    around = between[c5 & (between["n"] == 781) & between["step"].isin([240, 260])]
    assert t_star == pytest.approx(2.5)
    assert y[around["run_id"].iloc[0]] == pytest.approx(around["value"].iloc[:2].mean(), rel=1e-12)

    frame.loc[c5 & (frame["n"] == 781) & (frame["step"] == 300), "value"] = 0.0
    (g,) = fit_power_laws(frame, n_boot=20)
    assert g.at_last == (3, 9)  # a minority: no warning
    assert g.last_snapshot_line() == "the peak is the last analysed snapshot in 3 of 9 runs (33%)"


def test_the_protocol_comes_from_the_table_and_says_what_it_does_not_record():
    from eoslab.report.protocol import protocol, protocol_text

    frame = collected_frame(make_collected(gd=False))
    fits = fit_power_laws(frame, n_boot=10)
    assert dict(fits[0].protocol) == {
        "dataset": "CIFAR-10",
        "network": "MLP, depth 6 × width 32",
        "criterion": "Cross-Entropy",
        "solver": "exponential Euler, η_max not recorded in the collected table",
        "target loss": "not recorded in the collected table",
        "sizes n": "390, 781, 1562, 3125",
        "runs per size": "3",
    }
    runs = runs_of(frame)
    sst = runs.assign(dataset="sst", eta_max=1.0, target_loss=0.01, **{"data.options.encoder": "/models/x"})
    assert protocol_text(protocol(sst.iloc[:4])) == (
        "dataset SST · network MLP, depth 6 × width 32 · criterion Cross-Entropy · "
        "solver exponential Euler, η_max = 1 · target loss 0.01 · sizes n 390, 781 · runs per size 390: 3, 781: 1 · "
        "encoder /models/x"
    )
    cnn = runs.assign(**{"model.kind": "cnn", "solver": "gd", "eta": 0.1})
    assert dict(protocol(cnn))["network"] == "cnn" and dict(protocol(cnn))["solver"] == "gradient descent, η = 0.1"
    md = fits_markdown(fits)
    assert "- **CIFAR-10, Cross-Entropy**: dataset CIFAR-10 · network MLP, depth 6 × width 32 ·" in md


def _three_layer_table(tmp_path):
    frame = make_collected(groups=(("cifar10", "ce", (390, 781, 1562), 4e-4, 0.49),), gd=False)
    frame = frame[frame["layer"].isna() | (frame["layer"] <= 2)]  # a depth-3 network: per-layer C5 at 1, 2
    path = tmp_path / "collected.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--metric", "sharpnes_H"],
            "no metric 'sharpnes_H' in the table; did you mean 'sharpness_H'? it holds: act_align, act_ratio, "
            "act_scale, align_ratio, align_ratio_preact, criterion_hessian_norm, eq7_c1, eq7_c2, eq7_c3, eq7_c4, "
            "eq7_c5, jtilde_sqnorm, layer_sqnorm, layerjac_sqnorm, overlap_ratio, preact_sqnorm, sharpness_G, "
            "sharpness_H, sharpness_R, stability_bound",
        ),
        (["--layer", "7"], "eq7_c5 has no layer 7: its layers in this table are 1, 2"),
        (
            ["--metric", "layer_sqnorm", "--layer", "3"],
            "layer_sqnorm has no layer 3: its layers in this table are 1, 2",
        ),
        (["--layer", "none"], "eq7_c5 is a per-layer metric: pass --layer 1, 2"),
        (
            ["--metric", "sharpness_H", "--layer", "1"],
            "sharpness_H has no layer 1: it is a whole-network metric (--layer none)",
        ),
        (
            ["--skip-before", "301"],
            "--skip-before 301 leaves no analysed step: the table's eq7_c5 steps run from 0 to 300",
        ),
    ],
)
def test_report_options_the_table_does_not_hold_are_refused_with_the_valid_values(tmp_path, capsys, options, message):
    from eoslab.cli import main

    out = tmp_path / "report"
    assert main(["report", str(_three_layer_table(tmp_path)), "--out", str(out), "--no-progress", *options]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"eoslab report: error: {message}\n" and captured.out == ""
    assert not out.exists()  # nothing written


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--layer", "abc", "'abc' is not a layer"),
        ("--layer", "0", "'0' is not a layer"),
        ("--bootstrap", "0", "must be >= 1"),
    ],
)
def test_report_option_values_of_the_wrong_kind_are_usage_errors(tmp_path, capsys, option, value, said):
    from eoslab.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path / "any.parquet"), option, value])
    assert exit_.value.code == 2 and f"argument {option}: {said}" in capsys.readouterr().err


def test_a_whole_network_metric_needs_no_layer(tmp_path, capsys):
    from eoslab.cli import main

    out = tmp_path / "report"
    args = ["report", str(_three_layer_table(tmp_path)), "--out", str(out), "--no-progress", "--bootstrap", "20"]
    assert main([*args, "--metric", "sharpness_H"]) == 0
    assert "0 power-law fit(s)" not in capsys.readouterr().out
    assert "y = peak of `sharpness_H` over steps ≥ 10" in (out / "table2.md").read_text()
    assert pd.read_csv(out / "table2.csv")["layer"].isna().all()


def test_the_parts_of_a_sweep_are_reported_as_one_and_named(tmp_path, capsys):
    """Several tables (a sweep's parts, each collected when it finished) give the report of their
    union: the same fit as the whole table, every part named on the page, a run in two parts refused.
    """
    from eoslab.cli import main

    whole = make_collected(gd=False)
    small, large = tmp_path / "small.parquet", tmp_path / "large.parquet"
    for path, part in ((small, whole[whole["n"] <= 781]), (large, whole[whole["n"] > 781])):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), path)
    both = tmp_path / "whole.parquet"
    pq.write_table(pa.Table.from_pandas(whole, preserve_index=False), both)
    args = ["--bootstrap", "50", "--no-progress"]
    assert main(["report", str(both), "--out", str(tmp_path / "one"), *args]) == 0
    assert main(["report", str(small), str(large), "--out", str(tmp_path / "two"), *args]) == 0
    out = capsys.readouterr().out.splitlines()
    runs = whole["run_id"].nunique()
    assert out[out.index(f"report on 2 parts, {runs} runs") + 1].startswith(f"  part 1: table {small} (not written")
    table2 = (tmp_path / "two" / "table2.md").read_text()
    assert table2 == (tmp_path / "one" / "table2.md").read_text() and "0.49" in table2
    page = (tmp_path / "two" / "index.html").read_text()
    assert f"part 2: table {large}" in page and page.count("code not recorded") == 2
    merged = pq.read_table(tmp_path / "two" / "collected.parquet")
    assert merged.num_rows == len(whole)  # the union is kept beside the report

    assert main(["report", str(small), str(small), "--out", str(tmp_path / "three"), *args]) == 1
    assert f"is in two parts: {small} and {small}" in capsys.readouterr().err
    assert main(["report", str(small), str(large)]) == 1
    assert "need --out" in capsys.readouterr().err


def test_a_report_warns_when_flow_runs_raised_their_loss(tmp_path, capsys):
    """Trajectory rows whose loss rises along exponential Euler (the flow's never does) get a
    warning on stderr and on the page, naming how many runs and the worst step; GD's rises do not.
    """
    from eoslab.cli import main

    frame = make_collected(groups=(("cifar10", "ce", (390, 781, 1562), 4e-4, 0.49),), gd=True)
    frame = frame[~frame["metric"].str.startswith("trajectory_")]  # replaced by the losses below
    runs = frame.drop_duplicates("run_id").set_index("run_id")
    rows = []
    for run_id, run in runs.iterrows():
        losses = [2.0, 1.5, 1.0, 0.5] if run["solver"] == "exp_euler" else [2.0, 3.0, 1.0, 0.5]
        if run_id == runs.index[1]:
            losses = [2.0, 1.0, 1.8, 0.5]  # one flow run left the flow: ×1.8 at step 1 → 2
        for step, loss in enumerate(losses):
            rows.append(
                {
                    **run.to_dict(),
                    "run_id": run_id,
                    "step": step,
                    "t": 0.1 * step,
                    "metric": "trajectory_loss",
                    "layer": None,
                    "value": loss,
                }
            )
    table = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)
    assert main(["report", str(path), "--out", str(tmp_path / "r"), "--bootstrap", "20", "--no-progress"]) == 0
    flows = int((runs["solver"] == "exp_euler").sum())
    warning = (
        f"WARNING: the loss rose along exponential Euler in 1 of {flows} runs (the largest step ×1.8, run "
        f"{runs.index[1]}): those runs left the gradient flow"
    )
    assert warning in capsys.readouterr().err
    assert warning in (tmp_path / "r" / "index.html").read_text()


def test_a_report_into_a_folder_of_an_earlier_one_removes_the_figures_it_no_longer_draws(tmp_path):
    """Reporting a table with one group into the folder of a two-group report leaves no figure
    of the dropped group (PNG or PDF) and says which it removed; every figure it draws is there.
    """
    from eoslab.report import write_report

    both = make_collected(gd=False)
    first = write_report(both, tmp_path, n_boot=10)
    before = {p.name for p in (tmp_path / "figures").iterdir()}
    assert any("synthetic" in name for name in before) and not any("Removed" in n for n in first.notes)
    cifar = both[both["dataset"] == "cifar10"]
    second = write_report(cifar, tmp_path, n_boot=10)
    after = {p.name for p in (tmp_path / "figures").iterdir()}
    drawn = {p.name for f in second.figures for p in (f.png, f.pdf)}
    assert after == drawn and not any("synthetic" in name for name in after)
    removed = sorted({name.rsplit(".", 1)[0] for name in before - after})
    assert removed and all("synthetic" in stem for stem in removed)
    [note] = [n for n in second.notes if n.startswith("Removed")]
    stems = ", ".join(removed)
    n = len(removed)
    assert note == f"Removed {n} figure(s) of an earlier report in this folder, not drawn this time: {stems}."
    assert note in (tmp_path / "index.html").read_text().replace("&#x27;", "'")
