"""``analyze_run`` and ``eoslab analyze`` on a tiny trained run: analysis.parquet layout and
metric names (docs/metrics.md), D13 skipping, D15's C5(t0), thinning, resume after an interruption.
"""

import dataclasses
import json
import math
import shutil

import pytest

import eoslab.analysis.snapshot as snapshot
import eoslab.runs.analyze as run_analysis
import eoslab.spectrum
from eoslab.analysis import SHARPNESS_SOLVER, AnalysisSpec, analyze_snapshot
from eoslab.cli import main as cli_main
from eoslab.config import from_dict
from eoslab.rundir import ANALYSIS_FILE, ANALYSIS_SCHEMA
from eoslab.runs import analyze_run, load_run, train
from eoslab.store import read_parquet, to_frame

from ._train_helpers import ANY_NETWORK_METRICS, MLP_ONLY_METRICS

pytestmark = pytest.mark.usefixtures("one_thread")

CONTRACT = ANY_NETWORK_METRICS | MLP_ONLY_METRICS
DEPTH = 3
TOL = 1e-10


def small_run_config(**sections):
    """The config of :func:`trained_run` as a dict, with ``sections`` added."""
    return {
        "data": {"name": "synthetic", "options": {"n": 15, "input_dim": 4, "num_classes": 3, "seed": 2}},
        "model": {"depth": DEPTH, "width": 6, "init_seed": 1},
        "criterion": {"name": "ce"},
        "solver": {"method": "gd", "eta": 0.5},
        "train": {"snapshot_every": 5, "max_steps": 30, "target_loss": 1e-6, "threads": 1},
        **sections,
    }


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """GD for 30 steps (depth 3, width 6, 15 samples), a snapshot every 5 steps."""
    cfg = from_dict(small_run_config())
    run_dir = tmp_path_factory.mktemp("run")
    train(cfg, run_dir, progress=False)
    return run_dir


@pytest.fixture
def run_dir(trained_run, tmp_path):
    """A fresh copy of the trained run for each test."""
    return shutil.copytree(trained_run, tmp_path / "run")


def table_of(run_dir):
    return to_frame(read_parquet(run_dir / ANALYSIS_FILE))


def check_bounds(df, c5_step):
    """stability_bound = (1 + 1.37 (L − 1)) C1 C2 C3 C4 (t) · C5(t0), C5(t0) from ``c5_step`` (D15)."""
    layer1 = df[df.layer == 1].pivot(index="step", columns="metric", values="value")
    c5_t0 = layer1.loc[c5_step, "eq7_c5"]
    bound = df[df.metric == "stability_bound"].set_index("step")["value"]
    for step, row in layer1.iterrows():
        expect = (1 + 1.37 * (DEPTH - 1)) * row.eq7_c1 * row.eq7_c2 * row.eq7_c3 * row.eq7_c4 * c5_t0
        assert math.isclose(bound[step], expect, rel_tol=1e-12)


def test_analysis_parquet_layout(run_dir):
    path = analyze_run(run_dir, tol=TOL, progress=False)
    assert path == run_dir / ANALYSIS_FILE
    assert read_parquet(path).schema.equals(ANALYSIS_SCHEMA)
    df = table_of(run_dir)
    snapshots = [s for s, _ in load_run(run_dir).snapshots()]
    assert sorted(df.step.unique()) == [s for s in snapshots if s >= 10]  # D13 default
    assert set(df.metric) == CONTRACT
    per_step = df[df.step == 10]
    whole = per_step[per_step.layer.isna()]
    assert set(whole.metric) == {
        "sharpness_H",
        "sharpness_G",
        "sharpness_R",
        *(f"sharpness_{w}_{what}" for w in "HGR" for what in ("residual", "error")),
        "jtilde_sqnorm",
        "overlap_ratio",
        "criterion_hessian_norm",
        "stability_bound",
    }
    layers = per_step.dropna(subset=["layer"]).groupby("metric").layer.apply(sorted).to_dict()
    for m in ("layer_sqnorm", "preact_sqnorm", "act_scale"):
        assert layers[m] == [1, 2, 3]
    for m in CONTRACT - set(whole.metric) - {"layer_sqnorm", "preact_sqnorm", "act_scale"}:
        assert layers[m] == [1, 2]
    check_bounds(df, c5_step=10)
    # the stored values are analyze_snapshot's on the stored θ, with C5(t0) of step 10
    run = load_run(run_dir)
    theta, t = run.load_snapshot(20)
    c5_t0 = float(df[(df.step == 10) & (df.metric == "eq7_c5") & (df.layer == 1)].value.iloc[0])
    spec = AnalysisSpec(dataclasses.replace(SHARPNESS_SOLVER, tol=TOL))
    ref = {
        (r["metric"], r["layer"]): r["value"]
        for r in analyze_snapshot(run.loss, theta, spec, step=20, t=t, c5_t0=c5_t0).rows()
    }
    got = df[df.step == 20]
    assert got.t.unique().tolist() == [t]
    for row in got.itertuples():
        key = (row.metric, None if math.isnan(row.layer) else int(row.layer))
        if row.metric.endswith("_residual"):  # how far the solve went (warm here, cold there)
            assert row.value >= 0 and ref[key] >= 0, key
            continue
        if row.metric.endswith("_error"):  # certified to tol either way
            sharp = ref[(row.metric.removesuffix("_error"), None)]
            assert 0 <= row.value <= TOL * sharp and 0 <= ref[key] <= TOL * sharp, key
            continue
        assert math.isclose(row.value, ref[key], rel_tol=1e-7), key


def test_resume_after_interruption(run_dir, monkeypatch):
    calls, interrupt_at = [], [2]
    real = run_analysis.analyze_snapshot

    def counting(*args, **kwargs):
        if len(calls) in interrupt_at:
            raise KeyboardInterrupt
        calls.append(kwargs["step"])
        return real(*args, **kwargs)

    monkeypatch.setattr(run_analysis, "analyze_snapshot", counting)
    with pytest.raises(KeyboardInterrupt):
        analyze_run(run_dir, skip_before=5, tol=TOL, progress=False)
    assert sorted(table_of(run_dir).step.unique()) == [5, 10]  # written after each
    before = table_of(run_dir)
    calls.clear()
    interrupt_at.clear()
    analyze_run(run_dir, skip_before=5, tol=TOL, progress=False)
    assert calls == [15, 20, 25, 30]  # only the missing steps
    df = table_of(run_dir)
    assert sorted(df.step.unique()) == [5, 10, 15, 20, 25, 30]
    assert df[df.step <= 10].reset_index(drop=True).equals(before)
    check_bounds(df, c5_step=5)  # C5(t0) read back from file
    calls.clear()
    analyze_run(run_dir, skip_before=5, tol=TOL, progress=False)  # nothing left to do
    assert calls == []


def test_cli_every_and_skip_before(run_dir, tmp_path, capsys):
    assert (
        cli_main(["analyze", str(run_dir), "--every", "2", "--skip-before", "0", "--tol", "1e-8", "--no-progress"]) == 0
    )
    assert str(run_dir / ANALYSIS_FILE) in capsys.readouterr().out
    df = table_of(run_dir)
    assert sorted(df.step.unique()) == [0, 10, 20, 30]
    check_bounds(df, c5_step=0)
    assert cli_main(["analyze", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "nothing is not a run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses the value: usage error, exit 2
        cli_main(["analyze", str(run_dir), "--every", "0"])
    assert exit_info.value.code == 2
    assert "eoslab analyze: error: argument --every: must be >= 1, got 0" in capsys.readouterr().err


def test_empty_selection_writes_an_empty_table(run_dir):
    path = analyze_run(run_dir, skip_before=10_000, progress=False)
    assert read_parquet(path).num_rows == 0 and read_parquet(path).schema.equals(ANALYSIS_SCHEMA)


def test_an_unconverged_eigensolve_is_named_in_a_warning_and_the_notes(run_dir, monkeypatch, capsys):
    """A λ¹ solve that runs out of iterations keeps its estimate, and says so (never silently)."""
    solve = snapshot.top_eigenvalues

    def g_never_converges(*args, **kwargs):
        eig = solve(*args, **kwargs)
        return {**eig, "G": dataclasses.replace(eig["G"], converged=False)}

    monkeypatch.setattr(snapshot, "top_eigenvalues", g_never_converges)
    analyze_run(run_dir, tol=TOL, every=2, progress=False)
    said = "eigenvalues not certified to tol 1e-10, values are estimates: λ¹(G) at steps 10, 20, 30"
    assert said in capsys.readouterr().err
    assert any(said in note for note in json.loads((run_dir / "status.json").read_text())["notes"])
    df = table_of(run_dir)
    assert df[df.metric == "sharpness_G"].value.notna().all()  # the estimate is kept


def test_a_layer_beyond_the_stability_bounds_premise_is_named_in_the_notes(tmp_path, capsys):
    """stability_bound grants E‖J̃_i‖² ≤ 1.37 E‖J̃_1‖² (§4); few inputs and a wide depth-4 MLP break
    it at every snapshot: the notes say where and by how much (the ratio from the stored rows).
    """
    run_dir = tmp_path / "run"
    config = small_run_config()
    config["data"]["options"].update(n=40, input_dim=4)
    config["model"].update(depth=4, width=64)
    config["train"].update(max_steps=10)
    train(from_dict(config), run_dir, progress=False)
    analyze_run(run_dir, skip_before=0, progress=False)
    df = table_of(run_dir)
    sq = df[df.metric == "layer_sqnorm"].pivot(index="step", columns="layer", values="value")
    ratio = sq[[2, 3, 4]].max(axis=1) / sq[1]
    assert (ratio > 1.37).all() and list(ratio.index) == [0, 5, 10]
    said = f"a layer's ratio is up to {ratio.max():.3g} at steps 0, 5, 10: there the bound's premise fails"
    (note,) = json.loads((run_dir / "status.json").read_text())["notes"]
    assert said in note and said in capsys.readouterr().err


def test_an_unconverged_spectrum_solve_is_named_in_the_notes(tmp_path, monkeypatch, capsys):
    """``analysis.spectrum``: a λ_min(H) solve that stops before its tolerance is an estimate, and
    the notes say so (as for λ¹); the per-group solves that converged are not named.
    """
    run_dir = tmp_path / "run"
    train(from_dict(small_run_config(analysis={"spectrum": True})), run_dir, progress=False)
    bottom = eoslab.spectrum.bottom_eigenvalues
    monkeypatch.setattr(
        eoslab.spectrum, "bottom_eigenvalues", lambda *a, **k: dataclasses.replace(bottom(*a, **k), converged=False)
    )
    analyze_run(run_dir, every=3, progress=False)
    said = "values are estimates: bottom_eigenvalue_H at steps 10, 25"
    assert said in capsys.readouterr().err
    (note,) = json.loads((run_dir / "status.json").read_text())["notes"]
    assert said in note and "block_sharpness_H" not in note
    df = table_of(run_dir)
    assert df[df.metric == "bottom_eigenvalue_H"].value.notna().all() and {"negative_mass_low"} <= set(df.metric)
