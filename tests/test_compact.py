"""Compacting a run directory (eoslab.runs.compact_run, `eoslab compact`): what goes, what stays, a
resume and an analysis after it, and the refusals.
"""

from __future__ import annotations

import os

import pytest
import torch

from eoslab.cli import main
from eoslab.errors import CorruptFileError
from eoslab.rundir import RunDir
from eoslab.runs import analyze_run, compact_run, load_run, train
from eoslab.store import parse_safetensors, read_json, read_parquet

from ._train_helpers import config_dict, interrupt_at, small_config, write_config
from .test_faults import cli


def files(run_dir, kind):
    return RunDir(run_dir).snapshot_steps(kind)


def metric(run_dir, name, layer=None):
    rows = read_parquet(run_dir / "analysis.parquet").to_pylist()
    return {r["step"]: r["value"] for r in rows if r["metric"] == name and r["layer"] == layer}


def test_a_compacted_run_resumes_and_its_later_analysis_keeps_c5_t0(tmp_path, monkeypatch, capsys):
    """Analysed snapshots and old state files go, the resume pair stays without its warm start;
    the run then trains on from it (to the eigensolver's tolerance of the uninterrupted run, with a
    note), and the analysis of its later snapshots takes C5(t0) from the analysis file's first
    step (D15), so its stability bound is the uninterrupted run's.
    """
    cfg = small_config(train={"max_steps": 45})
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    train(cfg, whole, progress=False)
    analyze_run(whole, progress=False)
    with monkeypatch.context() as m:
        interrupt_at(m, 37)  # last snapshot: step 30
        with pytest.raises(KeyboardInterrupt):
            train(cfg, crashed, progress=False)
    analyze_run(crashed, progress=False)
    assert files(crashed, "step") == [0, 10, 20, 30] and files(crashed, "state") == [20, 30]

    done = compact_run(crashed)
    assert files(crashed, "step") == [30] and files(crashed, "state") == [30]
    assert done.stripped == 30 and done.bytes_after < done.bytes_before
    assert sorted(done.removed) == [
        "snapshots/state_00000020.safetensors",
        "snapshots/step_00000000.safetensors",
        "snapshots/step_00000010.safetensors",
        "snapshots/step_00000020.safetensors",
    ]
    manifest = RunDir(crashed).manifest()
    assert not set(done.removed) & set(manifest["files"])
    tensors, meta = parse_safetensors((crashed / "snapshots" / "state_00000030.safetensors").read_bytes())
    assert "eigenvectors" not in tensors and meta["step"] == "30" and "rows.step" in tensors
    note = read_json(crashed / "status.json")["notes"][-1]  # after the analysis's premise note
    assert "the warm start of step 30 was dropped" in note and note in capsys.readouterr().err

    train(cfg, crashed, progress=False)  # resumes from step 30, cold
    a, b = (read_parquet(p / "trajectory.parquet").to_pylist() for p in (whole, crashed))
    assert [r["step"] for r in b] == list(range(46))
    assert a[:30] == b[:30]  # the rows before the resume point are the stored ones
    loss_a, loss_b = (torch.tensor([r["loss"] for r in rows]) for rows in (a, b))
    assert torch.allclose(loss_b, loss_a, rtol=5e-6, atol=0)  # measured 5.5e-7
    assert not torch.equal(loss_b, loss_a)  # a cold resume is not bit-identical
    theta_a, _ = load_run(whole).load_snapshot(45)
    theta_b, _ = load_run(crashed).load_snapshot(45)
    assert torch.allclose(theta_b, theta_a, rtol=0, atol=5e-6)  # measured 7.3e-7 (|θ| up to 1.4)

    analyze_run(crashed, progress=False)  # analyses 40 and 45 with no snapshot before 30 on disk
    bound_a, bound_b = metric(whole, "stability_bound"), metric(crashed, "stability_bound")
    assert sorted(bound_b) == [10, 20, 30, 40, 45]
    for step in (40, 45):
        assert bound_b[step] == pytest.approx(bound_a[step], rel=1e-5)  # measured 8.5e-7
    c5 = metric(whole, "eq7_c5", 1)
    assert abs(c5[30] / c5[10] - 1) > 1e-3  # C5(t0) at step 30 would give another bound


def test_thin_keeps_every_kth_unanalysed_snapshot_and_says_so(tmp_path, capsys):
    cfg = small_config(
        solver={"method": "gd", "eta": 0.3}, train={"max_steps": 60, "snapshot_every": 5, "target_loss": 1e-9}
    )
    train(cfg, tmp_path / "r", progress=False)
    assert files(tmp_path / "r", "step") == list(range(0, 61, 5))

    done = compact_run(tmp_path / "r", thin=20, thin_from=16)  # 10 and 15 stay: before step 16
    assert files(tmp_path / "r", "step") == [10, 15, 20, 40, 60] and files(tmp_path / "r", "state") == [60]
    assert done.thinned == [25, 30, 35, 45, 50, 55] and done.stripped is None  # GD has no warm start
    note = read_json(tmp_path / "r" / "status.json")["notes"][-1]
    assert "thinned to every 20 steps by `eoslab compact`, 6 unanalysed snapshots removed (6 steps, 25 to 55)" in note
    assert compact_run(tmp_path / "r", thin=20).thinned == [10, 15]

    analyze_run(tmp_path / "r", progress=False)
    assert sorted(metric(tmp_path / "r", "sharpness_H")) == [20, 40, 60]
    assert compact_run(tmp_path / "r").removed == [
        "snapshots/step_00000020.safetensors",
        "snapshots/step_00000040.safetensors",
    ]
    assert main(["show", str(tmp_path / "r")]) == 0
    assert "3 of 3 snapshots analysed" in capsys.readouterr().out


def test_compact_refuses_what_it_cannot_do_safely(tmp_path, capsys):
    run = tmp_path / "r"
    train(small_config(train={"max_steps": 20}), run, progress=False)
    analyze_run(run, progress=False)
    before = sorted(p.name for p in (run / "snapshots").iterdir())

    (run / "analysis.parquet").write_bytes(b"not parquet")
    with pytest.raises(
        CorruptFileError, match=r"analysis.parquet: does not match its checksum .*; run `eoslab analyze` on the run"
    ):
        compact_run(run)
    with RunDir(run).lock():  # held by this process: another one is refused, at once
        r = cli("compact", str(run))
    assert r.returncode == 2 and f"this run is in use by another eoslab process (pid {os.getpid()})" in r.stderr
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == before
    analyze_run(run, progress=False)  # rebuilt
    newest = run / "snapshots" / "step_00000020.safetensors"
    data = bytearray(newest.read_bytes())
    data[-9] ^= 1
    newest.write_bytes(bytes(data))  # the resume point is corrupt: its predecessors must stay
    with pytest.raises(CorruptFileError, match="step_00000020.safetensors: does not match its checksum"):
        compact_run(run)
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == before

    every = tmp_path / "every.toml"
    write_config(every, config_dict(analysis={"every": 2}, train={"max_steps": 20}))
    assert main(["train", str(every), "--out", str(tmp_path / "e"), "--no-progress"]) == 0
    assert main(["compact", str(tmp_path / "e")]) == 2
    assert "analysis.every = 2" in capsys.readouterr().err
    assert main(["compact", str(tmp_path / "x")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses the value: usage error, exit 2
        main(["compact", str(run), "--thin", "0"])
    assert exit_info.value.code == 2
    assert "argument --thin: must be >= 1, got 0" in capsys.readouterr().err
