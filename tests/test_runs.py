"""Training runs: the run-directory contract, config errors, failures, and crash-safe resume
(a resumed run is bit-identical to an uninterrupted one).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from eoslab.cli import main
from eoslab.config import config_hash, load_config
from eoslab.data import load_dataset
from eoslab.errors import ConfigError
from eoslab.rundir import TRAJECTORY_SCHEMA, RunDir
from eoslab.runs import RunConflictError, analyze_run, build_problem, load_run, train
from eoslab.store import read_json, read_parquet
from eoslab.sweeps.point import point_status

from ._train_helpers import assert_same_run, config_dict, interrupt_at, small_config, write_config

CONTRACT_COLUMNS = ["step", "t", "loss", "accuracy", "dt", "grad_norm", "eig_iters", "hvps", "eigenvalues"]


def snapshot_files(run_dir: Path, kind: str = "step") -> list[str]:
    return sorted(p.name for p in (run_dir / "snapshots").glob(f"{kind}_*.safetensors"))


# --------------------------------------------------------------------------- the contract
def test_train_writes_the_run_directory(tmp_path):
    cfg = small_config(data={"n": 20, "subset_seed": 5}, train={"target_loss": 0.1, "max_steps": 200})
    run_dir = tmp_path / "run"
    status = train(cfg, run_dir, progress=False)
    assert status["state"] == "done" and status["reason"] == "target loss 0.1 reached"
    assert status == read_json(run_dir / "status.json")
    final = status["step"]
    assert 10 < final < 200

    saved = load_config(run_dir / "config.toml")  # resolved: k = n_L filled in
    assert saved.solver.k == 3 and saved.train.target_loss == 0.1 and saved.model.gain == pytest.approx(2**0.5)

    table = read_parquet(run_dir / "trajectory.parquet")
    assert table.schema.equals(TRAJECTORY_SCHEMA) and table.column_names[:9] == CONTRACT_COLUMNS
    traj = table.to_pylist()
    assert [r["step"] for r in traj] == list(range(final + 1))
    for prev, row in zip(traj, traj[1:]):  # t of θ_u, dt of the step from it
        assert row["t"] == prev["t"] + prev["dt"]
        assert len(prev["eigenvalues"]) == 4 and prev["hvps"] > 0 and prev["dt"] > 0
    assert traj[-1]["dt"] == 0.0 and traj[-1]["loss"] <= 0.1 < traj[-2]["loss"]
    assert (traj[-1]["step"], traj[-1]["t"], traj[-1]["loss"]) == (final, status["t"], status["loss"])

    expected = [f"step_{s:08d}.safetensors" for s in sorted(set(range(0, final + 1, 10)) | {final})]
    assert snapshot_files(run_dir) == expected
    assert len(snapshot_files(run_dir, "state")) == 2  # only the newest state files

    umask = os.umask(0o022)
    os.umask(umask)
    for p in run_dir.rglob("*"):  # readable by others, as the umask allows (not mkstemp's 0600)
        if p.is_file() and p.name != ".lock":
            assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p

    run = load_run(run_dir)
    assert config_hash(run.config) == config_hash(saved)
    assert [s for s, _ in run.snapshots()] == [int(n[5:13]) for n in expected]
    theta0, t0 = run.load_snapshot(0)
    assert torch.equal(theta0, run.model.init_params(saved.model.init_seed)) and t0 == 0.0
    theta, t = run.load_snapshot(final)
    assert t == status["t"] and run.loss.loss(theta) == status["loss"]  # same subset, same θ
    assert run.loss.num_samples == 20


def test_rerun_of_finished_run_is_a_no_op(tmp_path, capsys):
    config = write_config(tmp_path / "c.toml", config_dict(train={"max_steps": 15}))
    run_dir = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 0
    stamp = (run_dir / "trajectory.parquet").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 0
    assert "stopped: max_steps 15 reached at loss 0." in capsys.readouterr().out
    assert (run_dir / "trajectory.parquet").stat().st_mtime_ns == stamp
    status = read_json(run_dir / "status.json")
    assert status["state"] == "stopped" and status["reason"].startswith("max_steps 15 reached at loss")


def test_different_config_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(small_config(train={"max_steps": 5}), run_dir, progress=False)
    with pytest.raises(RunConflictError, match="different config"):
        train(small_config(train={"max_steps": 5}, solver={"eta_max": 0.02}), run_dir, progress=False)
    config = write_config(tmp_path / "other.toml", config_dict(train={"max_steps": 6}))
    assert main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "different config" in err and "\n" not in err
    assert load_config(run_dir / "config.toml").train.max_steps == 5  # untouched


@pytest.mark.parametrize(
    "section, change, field",
    [
        ("solver", {"lrr": 0.1}, "solver.lrr"),  # unknown key
        ("model", {"width": "wide"}, "model.width"),  # wrong type
        ("solver", {"eta_max": -1.0}, "solver.eta_max"),  # bad value
        ("solver", {"method": "rk4"}, "solver.method"),  # bad choice
        ("data", {"options": {"n": 24, "colour": 1}}, "data.options"),  # loader rejects it
        ("data", {"name": "mnist"}, "data.name"),
        ("data", {"n": 1000}, "data.n"),  # larger than the data
    ],
)
def test_config_errors_exit_2_naming_the_field(tmp_path, capsys, section, change, field):
    config = write_config(tmp_path / "bad.toml", config_dict(**{section: change}))
    run_dir = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert field in err and "\n" not in err
    assert not run_dir.exists()  # nothing written


def test_non_finite_loss_fails_the_run(tmp_path, capsys):
    config = write_config(tmp_path / "c.toml", config_dict(solver={"method": "gd", "eta": 1e8}))
    run_dir = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 1
    status = read_json(run_dir / "status.json")
    assert status["state"] == "failed" and "non-finite" in status["reason"]
    assert "failed" in capsys.readouterr().err
    traj = read_parquet(run_dir / "trajectory.parquet").to_pylist()
    last = traj[-1]
    assert last["step"] == status["step"] and not (math.isfinite(last["loss"]) and math.isfinite(last["grad_norm"]))
    assert snapshot_files(run_dir) == ["step_00000000.safetensors"]  # what was written is kept
    assert main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 1  # stays failed


def test_max_time_stops_the_run(tmp_path):
    status = train(small_config(train={"max_time_s": 1e-9}), tmp_path / "run", progress=False)
    assert status["state"] == "stopped" and status["reason"].startswith("max_time_s")
    assert status["loss"] > status["target_loss"] and status["step"] == 0


def test_progress_bar_runs(tmp_path, capsys):
    train(small_config(train={"max_steps": 3}), tmp_path / "run", progress=True)
    assert "loss=" in capsys.readouterr().err


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize(
    "solver",
    [
        {"method": "exp_euler"},
        {"method": "exp_euler", "eig_method": "power"},
        {"method": "exp_euler", "eig_method": "power", "eig_order": "magnitude"},
        {"method": "gd", "eta": 0.3, "measure_sharpness_every": 3},
    ],
)
def test_resume_after_crash_is_bit_identical(tmp_path, monkeypatch, solver):
    cfg = small_config(solver=solver, train={"max_steps": 45})
    train(cfg, tmp_path / "whole", progress=False)

    with monkeypatch.context() as m:
        interrupt_at(m, 27)  # last snapshot: step 20
        with pytest.raises(KeyboardInterrupt):
            train(cfg, tmp_path / "crashed", progress=False)
    assert read_json(tmp_path / "crashed" / "status.json")["state"] == "running"
    assert read_parquet(tmp_path / "crashed" / "trajectory.parquet").num_rows == 20
    train(cfg, tmp_path / "crashed", progress=False)
    assert_same_run(tmp_path / "whole", tmp_path / "crashed")


def test_resume_skips_an_unreadable_snapshot(tmp_path, monkeypatch):
    cfg = small_config(train={"max_steps": 35})
    train(cfg, tmp_path / "whole", progress=False)
    with monkeypatch.context() as m:
        interrupt_at(m, 25)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, tmp_path / "crashed", progress=False)
    (tmp_path / "crashed" / "snapshots" / "step_00000020.safetensors").write_bytes(b"\x00garbage")
    train(cfg, tmp_path / "crashed", progress=False)  # resumes from step 10
    assert_same_run(tmp_path / "whole", tmp_path / "crashed")
    notes = read_json(tmp_path / "crashed" / "status.json")["notes"]
    assert notes == [
        "snapshots/step_00000020.safetensors does not match its checksum in manifest.json (corrupt): "
        "skipped, resumed from step 10"
    ]


def _crash_at_step_20(cfg, run_dir, monkeypatch):
    with monkeypatch.context() as m:
        interrupt_at(m, 27)  # last snapshot: step 20
        with pytest.raises(KeyboardInterrupt):
            train(cfg, run_dir, progress=False)


def test_a_run_whose_eigensolves_stop_early_says_so(tmp_path, capsys):
    """Steps whose eigensolve ran out of iterations are estimates (and so is the exponential Euler
    step built on them): stderr and a note in status.json name them; a certified run has no note.
    """
    status = train(small_config(solver={"eig_max_iters": 3}, train={"max_steps": 30}), tmp_path / "r", progress=False)
    rows = [r for r in read_parquet(tmp_path / "r" / "trajectory.parquet").to_pylist() if r["eigenvalues"]]
    early = [r["step"] for r in rows if not r["eig_converged"]]
    assert 0 < len(early) < len(rows)
    said = f"the eigensolve stopped before its tolerance at {len(early)} of {len(rows)} measured steps"
    (note,) = status["notes"]
    assert note.startswith(said) and note == read_json(tmp_path / "r" / "status.json")["notes"][0]
    assert said in capsys.readouterr().err
    certified = train(small_config(train={"max_steps": 30}), tmp_path / "c", progress=False)
    assert "notes" not in certified


def test_a_run_resumed_by_other_code_says_it_mixes_two_versions(tmp_path, monkeypatch, capsys):
    """The manifest records the code of each sitting; a resume by other code than the one that
    trained the steps before is loud: stderr, a note in status.json, MIXED in `eoslab show`.
    """
    cfg, run_dir = small_config(train={"max_steps": 45}), tmp_path / "run"
    monkeypatch.setattr("eoslab.runs.training.code_identity", lambda: "eoslab 0.1.0, git aaaaaaa")
    _crash_at_step_20(cfg, run_dir, monkeypatch)
    assert RunDir(run_dir).code_sittings() == [(0, "eoslab 0.1.0, git aaaaaaa")]
    capsys.readouterr()
    monkeypatch.setattr("eoslab.runs.training.code_identity", lambda: "eoslab 0.1.0, git bbbbbbb")
    assert train(cfg, run_dir, progress=False)["state"] == "stopped"
    assert RunDir(run_dir).code_sittings() == [(0, "eoslab 0.1.0, git aaaaaaa"), (20, "eoslab 0.1.0, git bbbbbbb")]
    said = (
        "resumed at step 20 by eoslab 0.1.0, git bbbbbbb, but steps up to 20 were trained by eoslab 0.1.0, git aaaaaaa"
    )
    assert said in capsys.readouterr().err
    (note,) = read_json(run_dir / "status.json")["notes"]
    assert note.startswith(said) and "mixes two versions" in note
    assert main(["show", str(run_dir)]) == 0
    shown = capsys.readouterr().out
    assert "git aaaaaaa from step 0; eoslab 0.1.0, git bbbbbbb from step 20 (MIXED" in shown and said in shown
    # and a sweep's status names it
    assert point_status(run_dir, analysis=False).detail == "trained by 2 versions of eoslab (eoslab show)"


def test_a_run_resumed_twice_from_one_snapshot_by_other_code_notes_it_once(tmp_path, monkeypatch):
    """The second resume from the same snapshot meets the same mix; status.json says it once."""
    cfg, run_dir = small_config(train={"max_steps": 45}), tmp_path / "run"
    monkeypatch.setattr("eoslab.runs.training.code_identity", lambda: "eoslab 0.1.0, git aaaaaaa")
    _crash_at_step_20(cfg, run_dir, monkeypatch)
    monkeypatch.setattr("eoslab.runs.training.code_identity", lambda: "eoslab 0.1.0, git bbbbbbb")
    with monkeypatch.context() as m:
        interrupt_at(m, 5)  # step 26: before the next snapshot, so the next sitting resumes from 20 again
        with pytest.raises(KeyboardInterrupt):
            train(cfg, run_dir, progress=False)
    assert [n for n in read_json(run_dir / "status.json")["notes"] if "mixes two versions" in n]
    assert train(cfg, run_dir, progress=False)["state"] == "stopped"
    assert RunDir(run_dir).code_sittings() == [(0, "eoslab 0.1.0, git aaaaaaa"), (20, "eoslab 0.1.0, git bbbbbbb")]
    (note,) = read_json(run_dir / "status.json")["notes"]
    assert note.startswith("resumed at step 20 by eoslab 0.1.0, git bbbbbbb") and "mixes two versions" in note


def test_a_run_resumed_by_the_same_code_or_restarted_from_scratch_is_not_mixed(tmp_path, monkeypatch, capsys):
    cfg = small_config(train={"max_steps": 45})
    monkeypatch.setattr("eoslab.runs.training.code_identity", lambda: "eoslab 0.1.0, git aaaaaaa")
    _crash_at_step_20(cfg, tmp_path / "same", monkeypatch)
    train(cfg, tmp_path / "same", progress=False)
    assert RunDir(tmp_path / "same").code_sittings() == [(0, "eoslab 0.1.0, git aaaaaaa")]
    assert "notes" not in read_json(tmp_path / "same" / "status.json")
    # every snapshot after step 0 unreadable: the run starts again from scratch, all by the new code
    _crash_at_step_20(cfg, tmp_path / "again", monkeypatch)
    for step in (10, 20):
        (tmp_path / "again" / "snapshots" / f"step_{step:08d}.safetensors").write_bytes(b"garbage")
    monkeypatch.setattr("eoslab.runs.training.code_identity", lambda: "eoslab 0.1.0, git bbbbbbb")
    train(cfg, tmp_path / "again", progress=False)
    assert RunDir(tmp_path / "again").code_sittings() == [(0, "eoslab 0.1.0, git bbbbbbb")]
    assert not any("mixes" in n for n in read_json(tmp_path / "again" / "status.json").get("notes", []))


@pytest.mark.slow
def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path):
    """`eoslab train` killed with SIGKILL mid-run, then rerun with the same command, ends with the
    parameters and trajectory of an uninterrupted run.
    """
    data = config_dict(train={"max_steps": 200, "snapshot_every": 20, "target_loss": 1e-9})
    config = write_config(tmp_path / "c.toml", data)
    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "eoslab.cli", "train", str(config), "--out", str(run_dir)]
    with open(tmp_path / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while not (run_dir / "snapshots" / "step_00000040.safetensors").exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log.txt").read_text()
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    status = read_json(run_dir / "status.json")
    assert status["state"] == "running" and status["step"] < 200  # killed mid-way

    resumed = subprocess.run(cmd + ["--no-progress"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    train(load_config(config), tmp_path / "whole", progress=False)
    assert_same_run(tmp_path / "whole", run_dir)
    assert read_json(run_dir / "status.json")["step"] == 200


def test_a_run_created_before_later_config_keys_is_accepted(tmp_path, capsys):
    """A run directory written by an eoslab without model.kind / model.options / data.standardize
    (its manifest lacks them) is the same run for this one: train, analyze and status accept it.
    """
    config = write_config(tmp_path / "c.toml", config_dict(train={"max_steps": 12}))
    run_dir = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for section, key in (("model", "kind"), ("model", "options"), ("data", "standardize")):
        del manifest["config"][section][key]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    old = ('kind = "mlp"', "options = {}", "standardize = false")  # the older config.toml lacks them
    text = (run_dir / "config.toml").read_text().splitlines()
    (run_dir / "config.toml").write_text("\n".join(line for line in text if line.strip() not in old) + "\n")
    capsys.readouterr()
    assert main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 0
    assert "stopped: max_steps 12 reached" in capsys.readouterr().out
    analyze_run(run_dir, progress=False)
    # a real difference is still refused, named
    manifest["config"]["model"]["kind"] = "cnn"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 2
    assert "model.kind" in capsys.readouterr().err


def test_standardize_uses_the_whole_split_and_keeps_the_default_hash():
    """data.standardize (D9's alternative): per-feature mean 0 / std 1 over the whole split, the
    subset drawn after it; off by default, and then absent from the config hash.
    """
    options = {"n": 40, "input_dim": 5, "num_classes": 3, "seed": 4, "noise": 1.0}
    full = load_dataset("synthetic", "train", **options)
    scaled = full.standardized()
    assert torch.allclose(scaled.X.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-14)
    assert torch.allclose(scaled.X.std(0, correction=0), torch.ones(5, dtype=torch.float64), atol=1e-14)
    assert torch.equal(scaled.X, (full.X - full.X.mean(0)) / full.X.std(0, correction=0))
    data = {"name": "synthetic", "options": options, "n": 10, "subset_seed": 2}
    plain = build_problem(small_config(data=data))
    standard = build_problem(small_config(data={**data, "standardize": True}))
    assert torch.equal(plain.dataset.y, standard.dataset.y)
    rows = [int(torch.nonzero((full.X == x).all(1))[0]) for x in plain.dataset.X]
    assert torch.equal(standard.dataset.X, scaled.X[rows])
    assert config_hash(small_config()) == config_hash(small_config(data={"standardize": False}))
    assert config_hash(small_config()) != config_hash(small_config(data={"standardize": True}))


def test_mixed_precision_runs_follow_the_float64_run(tmp_path):
    """solver.eig_precision = "mixed" (LOBPCG's float32 products, certified in float64): a run
    follows the float64 run's trajectory to well within D4's tolerance (its eigenvalues are
    certified the same way), uses float32 products for most of them, and is a different config
    (hash); at its default the field leaves existing run ids alone, and only LOBPCG takes it.
    """
    base = dict(data={"n": 20, "subset_seed": 5}, train={"target_loss": 0.1, "max_steps": 60})
    runs = {}
    for precision in ("float64", "mixed"):
        cfg = small_config(solver={"eig_precision": precision}, **base)
        status = train(cfg, tmp_path / precision, progress=False)
        assert status["state"] == "done"
        runs[precision] = read_parquet(tmp_path / precision / "trajectory.parquet").to_pylist()
    plain, mixed = runs["float64"], runs["mixed"]
    assert len(plain) == len(mixed) > 5
    for a, b in zip(plain, mixed):
        assert b["eig_converged"] and math.isclose(a["t"], b["t"], rel_tol=1e-6)
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-6)
        assert all(math.isclose(x, y, rel_tol=1e-4) for x, y in zip(a["eigenvalues"], b["eigenvalues"]))
    assert sum(r["hvps"] for r in mixed) > sum(r["hvps"] for r in plain)  # one float64 block more per step
    default = config_hash(small_config(**base))
    assert default == config_hash(small_config(solver={"eig_precision": "float64"}, **base))
    assert default != config_hash(small_config(solver={"eig_precision": "mixed"}, **base))
    with pytest.raises(ConfigError, match="solver.eig_precision"):
        small_config(solver={"eig_precision": "mixed", "eig_method": "power"})
    with pytest.raises(ConfigError, match="solver.eig_precision: must be one of float64, mixed"):
        small_config(solver={"eig_precision": "half"})


def test_a_flow_run_whose_loss_rises_says_it_left_the_gradient_flow(tmp_path, capsys):
    """The gradient flow's loss never rises; an exponential Euler run whose loss does (here Δt =
    10/|λ^{k+1}|: the bulk's Euler step is unstable) is flagged in its status notes and on stderr.
    """
    cfg = small_config(
        data={"n": 20, "subset_seed": 5}, solver={"step_c": 10.0, "eta_max": 1.0}, train={"target_loss": 0.1}
    )
    status = train(cfg, tmp_path / "run", progress=False)
    losses = [r["loss"] for r in read_parquet(tmp_path / "run" / "trajectory.parquet").to_pylist()]
    rises = [u for u in range(len(losses) - 1) if losses[u + 1] > losses[u]]
    worst = max(rises, key=lambda u: losses[u + 1] / losses[u])
    assert rises and status["notes"] == [
        f"the loss rose along exponential Euler at {len(rises)} of {len(losses) - 1} steps (the largest "
        f"×{losses[worst + 1] / losses[worst]:.3g}, step {worst} → {worst + 1}): the run left the gradient flow "
        "there; lower solver.eta_max or solver.step_c"
    ]
    err = capsys.readouterr().err
    assert f"the loss rose at step {rises[0] + 1} (" in err and "left the gradient flow" in err
    calm = train(small_config(data={"n": 20, "subset_seed": 5}), tmp_path / "calm", progress=False)
    assert "notes" not in calm  # the default step never raised the loss here
