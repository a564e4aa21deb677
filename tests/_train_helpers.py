"""Small problems and configs shared by test_integrators.py and test_runs.py."""

from __future__ import annotations

import copy
from pathlib import Path

import tomli_w
import torch

from eoslab.config import RunConfig, from_dict
from eoslab.criteria import make_criterion
from eoslab.curvature import FullBatchLoss
from eoslab.data import load_dataset
from eoslab.models import MLP

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
