"""A tiny sweep base, sweep files and the ``eoslab`` command in a fresh process, shared by the
sweep, executor, preset, workflow and fault tests (not a test module).
"""

import os
import subprocess
import sys
from pathlib import Path

import tomli_w


def tiny_base(**train) -> dict:
    """A base RunConfig that trains (to loss 0.3 in under 10 steps, so its runs are ``done``) and
    analyses in about a second: synthetic data, depth 2, width 6.
    """
    return {
        "data": {"name": "synthetic", "options": {"n": 24, "input_dim": 4, "num_classes": 3, "seed": 0}},
        "model": {"depth": 2, "width": 6},
        "solver": {"method": "exp_euler", "eta_max": 0.5},
        "train": {"snapshot_every": 5, "max_steps": 10, "target_loss": 0.3, **train},
        "analysis": {"skip_before": 0},
    }


def write_sweep(path: Path, base: dict, grid: dict) -> Path:
    """A sweep file of ``base`` and ``grid`` at ``path``."""
    path.write_text(tomli_w.dumps({"base": base, "grid": grid}))
    return path


def sweep_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``eoslab ARGS`` in a fresh process (a wide terminal, so rich wraps no line)."""
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "eoslab.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
