"""Data-parallel runs over torch.distributed (gloo, 2 CPU processes) against one process: products,
gradient, 5 exponential Euler steps, the analysis' expectations, and `eoslab train --nproc 2` with
a resume.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

from eoslab.cli import main
from eoslab.config import load_config
from eoslab.distributed import launch, shard_slice
from eoslab.runs import load_run, train
from eoslab.store import read_json, read_parquet, to_frame, write_json

from . import _distributed_helpers as helpers
from ._cases import rel
from ._train_helpers import config_dict, write_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shard_slices_cover_the_data_in_near_equal_blocks():
    for n, w in [(25, 2), (10, 3), (7, 7), (100, 8)]:
        parts = [shard_slice(n, r, w) for r in range(w)]
        assert [p.start for p in parts] == [0] + [p.stop for p in parts[:-1]] and parts[-1].stop == n
        sizes = [p.stop - p.start for p in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="3 samples cannot be split over 4 processes"):
        shard_slice(3, 0, 4)


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(tmp_path):
    assert launch(helpers.rank_main, 2, str(tmp_path / "r.pt")) == 0
    two = torch.load(tmp_path / "r.pt", weights_only=True)
    one = helpers.results()
    for name in ("mlp", "cnn"):
        a, b = two[name], one[name]
        assert a["N"] == b["N"] == helpers.N
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-12)
        assert float(a["accuracy"]) == float(b["accuracy"])
        for key in ("grad", "H", "G", "R", "theta5", "eigenvalues"):
            assert rel(a[key], b[key]) <= 1e-12, (name, key, rel(a[key], b[key]))
        assert torch.equal(a["eig_iters"], b["eig_iters"]) and float(a["t5"]) == pytest.approx(
            float(b["t5"]), rel=1e-12
        )
        assert not torch.equal(a["theta5"], helpers.problems()[name][2])  # the steps moved θ
        # the analysis' expectations (the MLP's ‖K_i‖² by Lanczos from other random starts: 1e-10)
        assert rel(a["stats"], b["stats"]) <= (1e-10 if name == "mlp" else 1e-12), (name, rel(a["stats"], b["stats"]))


def _crash_after(run_dir, step: int) -> None:
    """Leave the run directory as a crash between the snapshots at ``step`` and the next would."""
    for p in (run_dir / "snapshots").glob("*.safetensors"):
        if int(p.stem.split("_")[1]) > step:
            p.unlink()
    status = read_json(run_dir / "status.json")
    write_json({**status, "state": "running"}, run_dir / "status.json")


@pytest.mark.slow
def test_train_nproc_2_equals_one_process_and_resumes(tmp_path, capfd):
    data = config_dict(
        data={"options": {"n": 25, "input_dim": 6, "num_classes": 3, "seed": 1, "noise": 1.0}},
        train={"max_steps": 12, "snapshot_every": 4, "chunk_size": 5},
    )
    config = write_config(tmp_path / "c.toml", data)
    assert main(["train", str(config), "--out", str(tmp_path / "two"), "--nproc", "2", "--no-progress"]) == 0
    assert "two: stopped: max_steps 12 reached" in capfd.readouterr().out
    train(load_config(config), tmp_path / "one", progress=False)
    a = to_frame(read_parquet(tmp_path / "two" / "trajectory.parquet"))
    b = to_frame(read_parquet(tmp_path / "one" / "trajectory.parquet"))
    assert list(a.step) == list(b.step) == list(range(13))
    # equal to round-off: the two reduction orders differ by ≈ 1e-16, which the eigensolver's steps
    # amplify to ≈ 1e-12 over 12 steps (its basis is kept orthogonal to 1e-10 at tol 1e-4, so
    # whether a block is re-projected can differ); a lost or misweighted shard moves them by > 1e-3
    assert ((a.loss - b.loss).abs() <= 1e-11 * b.loss).all() and ((a.t - b.t).abs() <= 1e-11 * b.t.abs().max()).all()
    theta_a, _ = load_run(tmp_path / "two").load_snapshot(12)
    theta_b, _ = load_run(tmp_path / "one").load_snapshot(12)
    assert rel(theta_a, theta_b) <= 1e-11, rel(theta_a, theta_b)

    # a crash after step 8's snapshot; resumed with 2 processes it is bit-identical to the whole run,
    # resumed with 1 process equal to round-off
    shutil.copytree(tmp_path / "two", tmp_path / "crashed")
    _crash_after(tmp_path / "crashed", 8)
    shutil.copytree(tmp_path / "crashed", tmp_path / "crashed1")
    assert main(["train", str(config), "--out", str(tmp_path / "crashed"), "--nproc", "2", "--no-progress"]) == 0
    theta_c, _ = load_run(tmp_path / "crashed").load_snapshot(12)
    assert torch.equal(theta_c, theta_a)
    assert read_parquet(tmp_path / "crashed" / "trajectory.parquet").equals(
        read_parquet(tmp_path / "two" / "trajectory.parquet")
    )
    assert main(["train", str(config), "--out", str(tmp_path / "crashed1"), "--no-progress"]) == 0
    theta_d, _ = load_run(tmp_path / "crashed1").load_snapshot(12)
    assert rel(theta_d, theta_a) <= 1e-12
    # a different config in the same directory is refused by every rank (exit 2, one message)
    capfd.readouterr()
    other = write_config(tmp_path / "d.toml", {**data, "model": {**data["model"], "width": 9}})
    assert main(["train", str(other), "--out", str(tmp_path / "two"), "--nproc", "2", "--no-progress"]) == 2
    assert capfd.readouterr().err.count("holds a run with a different config") == 1


@pytest.mark.slow
def test_train_under_torchrun(tmp_path):
    """`torchrun --nproc_per_node 2 -m eoslab.cli train ...` joins torchrun's process group."""
    data = config_dict(train={"max_steps": 6, "snapshot_every": 3})
    config = write_config(tmp_path / "c.toml", data)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "eoslab.cli", "train", str(config), "--out", str(tmp_path / "tr"), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("stopped: max_steps 6 reached") == 1  # rank 0 alone reports
    train(load_config(config), tmp_path / "one", progress=False)
    a = to_frame(read_parquet(tmp_path / "tr" / "trajectory.parquet"))
    b = to_frame(read_parquet(tmp_path / "one" / "trajectory.parquet"))
    assert len(a) == len(b) == 7 and ((a.loss - b.loss).abs() <= 1e-12 * b.loss).all()
