"""Small problems, configs and run checks shared by the training, run and fault tests (not a test
module).
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import tomli_w
import torch

from eoslab.config import RunConfig, from_dict
from eoslab.criteria import make_criterion
from eoslab.curvature import FullBatchLoss
from eoslab.data import load_dataset
from eoslab.integrators import Integrator
from eoslab.models import MLP
from eoslab.runs import load_run
from eoslab.store import read_json, read_parquet

#: The metrics ``analysis.parquet`` holds for any network (docs/metrics.md) ...
ANY_NETWORK_METRICS = {
    "sharpness_H",
    "sharpness_G",
    "sharpness_R",
    "sharpness_H_residual",
    "sharpness_G_residual",
    "sharpness_R_residual",
    "sharpness_H_error",
    "sharpness_G_error",
    "sharpness_R_error",
    "jtilde_sqnorm",
    "overlap_ratio",
    "criterion_hessian_norm",
    "layer_sqnorm",
}
#: ... and those it adds for the paper's MLP (the whole contract is the union).
MLP_ONLY_METRICS = {
    "preact_sqnorm",
    "act_scale",
    "act_ratio",
    "layerjac_sqnorm",
    "align_ratio",
    "align_ratio_preact",
    "act_align",
    "eq7_c1",
    "eq7_c2",
    "eq7_c3",
    "eq7_c4",
    "eq7_c5",
    "stability_bound",
}

#: A tiny exponential Euler run (depth 3, width 8, 24 samples, 3 classes): ~5 ms a step.
SMALL = {
    "data": {"name": "synthetic", "options": {"n": 24, "input_dim": 6, "num_classes": 3, "seed": 1, "noise": 1.0}},
    "model": {"depth": 3, "width": 8, "init_seed": 3},
    "criterion": {"name": "ce"},
    "solver": {"method": "exp_euler", "eta_max": 0.05},
    "train": {"snapshot_every": 10, "max_steps": 60, "threads": 1},
}


def config_dict(**sections) -> dict:
    """SMALL with some keys replaced: ``config_dict(solver={"method": "gd"})`` merges per section."""
    d = copy.deepcopy(SMALL)
    for name, values in sections.items():
        d.setdefault(name, {}).update(values)
    if d["solver"].get("method") == "gd":  # GD has no η_max (its step is solver.eta)
        d["solver"].pop("eta_max", None)
    return d


def small_config(**sections) -> RunConfig:
    return from_dict(config_dict(**sections))


def write_config(path: Path, data: dict) -> Path:
    path.write_text(tomli_w.dumps(data))
    return path


def synthetic_loss(
    criterion: str,
    num_classes: int,
    *,
    n: int = 40,
    input_dim: int = 8,
    width: int = 16,
    gain: float = 2**0.5,
    noise: float = 0.5,
    seed: int = 0,
) -> tuple[FullBatchLoss, MLP]:
    """L̃ of a depth-3 float64 MLP on the seeded synthetic set."""
    ds = load_dataset("synthetic", n=n, input_dim=input_dim, num_classes=num_classes, seed=seed, noise=noise)
    model = MLP(input_dim, num_classes, depth=3, width=width, gain=gain, dtype=torch.float64)
    return FullBatchLoss(model, make_criterion(criterion), ds.X, ds.y), model


def assert_same_run(a: Path, b: Path) -> None:
    """Same final parameters (bit for bit), same trajectory, same status."""
    ra, rb = load_run(a), load_run(b)
    final = ra.snapshots()[-1][0]
    assert rb.snapshots()[-1][0] == final
    theta_a, t_a = ra.load_snapshot(final)
    theta_b, t_b = rb.load_snapshot(final)
    assert torch.equal(theta_a, theta_b) and t_a == t_b
    assert read_parquet(a / "trajectory.parquet").equals(read_parquet(b / "trajectory.parquet"))
    status_a, status_b = read_json(a / "status.json"), read_json(b / "status.json")
    status_b.pop("notes", None)  # what a recovery said
    assert status_a == status_b


def interrupt_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th Integrator.step raise KeyboardInterrupt (a crash inside the loop)."""
    original, calls = Integrator.step, itertools.count()

    def step(self, *args, **kwargs):
        if next(calls) == call:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Integrator, "step", step)


#: A UEA problem in the .ts format: 4 series of 2 dimensions and length 4, classes up and down.
TOY_TS = """@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength true
@seriesLength 4
@classLabel true up down
@data
1,2,3,4:5,6,7,8:up
0.5,0.1,1e-3,-2:1,1,1,1:down
4,3,2,1:8,7,6,5:up
-1,0,1,2:2,2,1,0:down
"""


def toy_uea(tmp_path: Path) -> tuple[Path, dict]:
    """(the Toy.ts data file, a config dict training on it) in a data root under ``tmp_path``."""
    root = tmp_path / "data"
    ts = root / "Toy" / "Toy_TRAIN.ts"
    ts.parent.mkdir(parents=True)
    ts.write_text(TOY_TS)
    data = config_dict(
        data={"name": "uea", "options": {"problem": "Toy"}, "data_root": str(root)},
        train={"max_steps": 6, "snapshot_every": 3},
        analysis={"skip_before": 0},
    )
    return ts, data
