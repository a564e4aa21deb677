"""README's tour, run as written, command by command, in a fresh folder; the one change is the sweep
config that ``eoslab init demo my_sweep.toml`` copies out, which is replaced by a tiny sweep (a few
synthetic runs of a few steps, the flow and one GD run) so the tour takes a minute, not the demo's.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import tomli_w

from eoslab.store import read_parquet

README = Path(__file__).resolve().parents[1] / "README.md"

#: What replaces the demo preset in the tour: the same shape (flow + one GD run), tiny.
TINY_SWEEP = {
    "base": {
        "data": {"name": "synthetic", "options": {"n": 24, "input_dim": 4, "num_classes": 3, "seed": 0}},
        "model": {"depth": 2, "width": 6, "device": "auto"},
        "solver": {"method": "exp_euler", "eta_max": 0.5},
        "train": {"target_loss": 0.1, "snapshot_every": 5, "max_steps": 300},
        "analysis": {"skip_before": 0},
    },
    "grid": {
        "n": [8, 12, 16],
        "solvers": [{"method": "exp_euler"}, {"method": "gd", "eta": 0.5, "measure_sharpness_every": 1, "n": [16]}],
    },
}


def tour_commands() -> list[str]:
    """The commands of README's tour block, comments stripped."""
    text = README.read_text()
    section = text[text.index("## A short tour") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def _eoslab() -> list[str]:
    script = Path(sys.executable).parent / "eoslab"
    return [str(script)] if script.exists() else [sys.executable, "-m", "eoslab.cli"]


def test_the_readme_tour_runs_as_written(tmp_path):
    commands = tour_commands()
    assert len(commands) >= 10 and all(c.startswith("eoslab") for c in commands)
    env = {**os.environ, "EOSLAB_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    outputs = {}
    for command in commands:
        args = shlex.split(command)
        r = subprocess.run(_eoslab() + args[1:], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{command}\n{r.stdout}\n{r.stderr}"
        outputs[command] = r.stdout
        if args[1:3] == ["init", "demo"]:
            (tmp_path / args[3]).write_text(tomli_w.dumps(TINY_SWEEP))

    assert (tmp_path / "dice.png").stat().st_size > 1000
    assert (tmp_path / "runs/quick/analysis.parquet").is_file()
    assert (tmp_path / "runs/quick/report/index.html").is_file()
    show = outputs["eoslab show runs/quick"]
    assert "done (target loss 0.01 reached)" in show and "λ¹(H)" in show and "C5 (layer 1)" in show
    # The quick preset shows the edge of stability: λ¹ starts below 2/η (it first
    # reaches it after step 0: progressive sharpening) and then stays near it.
    edge = re.search(r"edge\s+λ¹\(H\) first reaches 2/η = 5 at step (\d+); from there on (\d+) %", show)
    assert edge and int(edge.group(1)) > 0 and int(edge.group(2)) >= 70, show
    status = outputs["eoslab status sweep"]
    assert "done 4" in status and "solver" in status.splitlines()[1]  # the solver is an axis that varies
    assert "from 4 of 4 runs" in outputs["eoslab collect sweep"]
    assert outputs["eoslab report sweep"].splitlines()[0] == "report on 4 of 4 runs of sweep sweep"
    figures = {p.name for p in (tmp_path / "sweep/report/figures").glob("*.png")}
    assert "gd_vs_euler__synthetic_ce.png" in figures and "fig1_sharpness__synthetic_ce.png" in figures
    assert read_parquet(tmp_path / "sweep/collected.parquet").num_rows > 0
