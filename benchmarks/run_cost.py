"""What trained runs cost, in gradients of their own loss: the cost of a flow, not of one step.

For each run directory (``eoslab train`` / a sweep's ``runs/<id>``): its steps, flow time, training
wall time (``elapsed_s`` of its newest state snapshot: the time spent in the training loop, resumes
summed, without start-up), the H·V products and LOBPCG iterations of its trajectory, and one
full-batch loss + gradient of its problem timed here (median of ``--repeats``, at θ₀, with
``--threads`` threads); hence gradients in all, per step and per unit of flow time. Time the
gradient with the threads and load the run had, or the ratio means nothing.

    python benchmarks/run_cost.py RUN_DIR [RUN_DIR ...] --threads 2
    python benchmarks/run_cost.py --quick      # trains a small synthetic run to its target first

Reads only ``config.toml``, ``trajectory.parquet`` and the newest ``snapshots/state_*.safetensors``,
so a run written by an older eoslab is measured the same way. One JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open

from _common import median_time
from eoslab.config import from_dict, load_config
from eoslab.runs import build_problem, train
from eoslab.store import read_parquet


def elapsed_s(run_dir: Path) -> float:
    """``elapsed_s`` of the newest state snapshot (the training loop's wall time)."""
    states = sorted((run_dir / "snapshots").glob("state_*.safetensors"))
    if not states:
        raise SystemExit(f"{run_dir}: no state snapshot (snapshots/state_*.safetensors) to read elapsed_s from")
    with safe_open(str(states[-1]), framework="pt") as f:
        return float(f.metadata()["elapsed_s"])


def measure(run_dir: Path, repeats: int) -> dict:
    cfg = load_config(run_dir / "config.toml")
    problem = build_problem(cfg)
    theta = problem.model.init_params(cfg.model.init_seed)
    grad_s = median_time(lambda: problem.loss.value_and_grad(theta), repeats=repeats)
    traj = read_parquet(run_dir / "trajectory.parquet").to_pandas()
    steps = int(traj["step"].max())  # the last row is the final θ's evaluation (dt = 0)
    wall = elapsed_s(run_dir)
    t = float(traj["t"].max())
    gradients = wall / grad_s
    return {
        "run": run_dir.name,
        "n": cfg.data.n,
        "width": cfg.model.width,
        "steps": steps,
        "t": t,
        "final_loss": float(traj["loss"].iloc[-1]),
        "wall_s": wall,
        "grad_s": grad_s,
        "gradients": gradients,
        "gradients_per_step": gradients / steps,
        "gradients_per_unit_t": gradients / t,
        "hvps": int(traj["hvps"].sum()),
        "hvps_per_step": float(traj["hvps"].sum()) / steps,
        "first_step_hvps": int(traj["hvps"].iloc[0]),
        "eig_iters_per_step": float(traj["eig_iters"].sum()) / steps,
        "threads": torch.get_num_threads(),
    }


#: ``--quick``: a 3 × 32 MLP on 128 synthetic samples, exponential Euler to loss 1e-3 (seconds).
QUICK = {
    "data": {"name": "synthetic", "n": 128, "options": {"n": 128, "input_dim": 16, "num_classes": 4, "seed": 0}},
    "model": {"depth": 3, "width": 32},
    "solver": {"method": "exp_euler", "eta_max": 1.0},
    "train": {"target_loss": 1e-3, "max_steps": 500, "snapshot_every": 50},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR")
    parser.add_argument("--quick", action="store_true", help="train a small synthetic run first and measure it")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the gradient (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5, help="gradients timed per run (median; default 5)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.runs and not args.quick:
        parser.error("give RUN_DIR(s), or --quick")
    with tempfile.TemporaryDirectory() as tmp:
        runs = list(args.runs)
        if args.quick:
            runs.append(Path(tmp) / "quick")
            train(from_dict(QUICK), runs[-1], progress=False)
        for run_dir in runs:
            print(json.dumps(measure(run_dir, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
