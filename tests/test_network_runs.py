"""Runs of networks other than the MLP from a config (``model.kind`` = "cnn" and
"python:package.module:factory"): train, resume and ``analysis.parquet`` without the MLP-only metrics.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from eoslab.cli import main
from eoslab.config import ConfigError, from_dict, load_config
from eoslab.models import CNN, ModuleModel
from eoslab.runs import analyze_run, build_problem, load_run, train
from eoslab.store import read_parquet, to_frame
from eoslab.sweeps.grid import run_columns

from ._train_helpers import ANY_NETWORK_METRICS, config_dict, write_config

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGES = {"name": "synthetic", "options": {"n": 20, "num_classes": 3, "seed": 1, "shape": [1, 6, 6]}}


@pytest.fixture
def user_factory(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class Tiny(nn.Module):
                def __init__(self, input_shape, num_classes, hidden):
                    super().__init__()
                    self.embed = nn.Linear(input_shape[-1], hidden)
                    self.norm = nn.LayerNorm(hidden)
                    self.head = nn.Linear(hidden * input_shape[0], num_classes)

                def forward(self, x):
                    return self.head(torch.tanh(self.norm(self.embed(x))).flatten(1))

            def tiny(input_shape, num_classes, hidden=4):
                return Tiny(input_shape, num_classes, hidden)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "python:mynets:tiny"
    sys.modules.pop("mynets", None)


def test_cnn_run_trains_resumes_and_is_analysed(tmp_path):
    data = config_dict(
        data=IMAGES,
        model={"kind": "cnn", "options": {"channels": [2, 3]}, "init_seed": 2},
        solver={"eta_max": 0.5},
        train={"max_steps": 12, "snapshot_every": 4},
        analysis={"skip_before": 0},
    )
    problem = build_problem(from_dict(data))
    assert isinstance(problem.model, CNN) and problem.loss.X.shape == (20, 1, 6, 6)
    config = write_config(tmp_path / "cnn.toml", data)
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    run = load_run(tmp_path / "run")
    assert isinstance(run.model, CNN) and [s for s, _ in run.snapshots()] == [0, 4, 8, 12]
    theta, _ = run.load_snapshot(12)
    assert list(run.model.to_state_dict(theta)) == [
        "conv1.weight",
        "conv1.bias",
        "conv2.weight",
        "conv2.bias",
        "fc.weight",
        "fc.bias",
    ]
    traj = run.trajectory()
    assert traj.loss.iloc[-1] < traj.loss.iloc[0]
    analyze_run(tmp_path / "run", progress=False)
    table = to_frame(read_parquet(tmp_path / "run" / "analysis.parquet"))
    assert set(table.metric) == ANY_NETWORK_METRICS
    assert sorted(table[table.metric == "layer_sqnorm"].layer.unique()) == [1, 2, 3]  # conv1, conv2, fc
    assert sorted(table.step.unique()) == [0, 4, 8, 12]


def test_a_users_factory_runs_from_the_config(tmp_path, user_factory):
    data = config_dict(
        data={"name": "synthetic", "options": {"n": 12, "num_classes": 3, "seed": 3, "shape": [3, 2]}},
        model={"kind": user_factory, "options": {"hidden": 5}, "groups": ["embed", "norm", "head"]},
        solver={"eta_max": 0.2},
        train={"max_steps": 6, "snapshot_every": 3},
    )
    cfg = from_dict(data)
    problem = build_problem(cfg)
    assert isinstance(problem.model, ModuleModel)
    assert [g.name for g in problem.model.groups()] == ["embed", "norm", "head"]
    assert problem.model.num_params == (2 * 5 + 5) + 2 * 5 + (15 * 3 + 3)
    status = train(cfg, tmp_path / "run", progress=False)
    assert status["state"] == "stopped" and status["step"] == 6
    again = train(cfg, tmp_path / "run", progress=False)  # finished: a rerun is a no-op
    assert again == status
    run = load_run(tmp_path / "run")
    theta, _ = run.load_snapshot(6)
    assert theta.dtype == torch.float64 and theta.numel() == problem.model.num_params


def test_model_errors_at_build_time_name_the_field(tmp_path, user_factory):
    bad = config_dict(data=IMAGES, model={"kind": "python:mynets:absent"})
    assert main(["train", str(write_config(tmp_path / "a.toml", bad)), "--out", str(tmp_path / "a")]) == 2
    mismatch = config_dict(data=IMAGES, model={"kind": "cnn", "options": {"channels": [2, 2, 2]}})
    with pytest.raises(ConfigError, match=r"model.options: cnn: input \(1, 6, 6\) is too small"):
        build_problem(from_dict(mismatch))
    assert not (tmp_path / "a").exists()


def test_a_cnn_is_described_as_a_cnn_not_as_the_default_mlp(tmp_path, capsys):
    """With ``model.kind = "cnn"``, config.toml leaves the MLP's keys out (no "depth 6 × width 512",
    the MLP's defaults), `eoslab show` and the run's report describe the CNN, and the collected
    table's width and depth columns are null.
    """
    data = config_dict(
        data=IMAGES,
        model={"kind": "cnn", "options": {"channels": [2, 3]}},
        solver={"eta_max": 0.5},
        train={"max_steps": 4, "snapshot_every": 4},
        analysis={"skip_before": 0},
    )
    del data["model"]["depth"], data["model"]["width"]  # SMALL's, for its MLP
    run_dir = tmp_path / "run"
    assert main(["train", str(write_config(tmp_path / "cnn.toml", data)), "--out", str(run_dir), "--no-progress"]) == 0
    text = (run_dir / "config.toml").read_text()
    assert 'kind = "cnn"' in text and "depth" not in text and "width" not in text
    assert main(["analyze", str(run_dir), "--no-progress"]) == 0
    capsys.readouterr()

    assert main(["show", str(run_dir)]) == 0
    shown = capsys.readouterr().out
    assert "synthetic n=None ce, cnn, channels [2, 3], kernel 3, pool 2, seeds" in shown and "width" not in shown
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report"), "--no-progress"]) == 0
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "cnn, channels [2, 3], kernel 3, pool 2" in summary and "width" not in summary
    columns = run_columns("id", load_config(run_dir / "config.toml"))
    assert columns["width"] is None and columns["depth"] is None and columns["eta_max"] == 0.5
