"""``eoslab demo`` from a built wheel in a fresh virtual environment, away from the source tree: the
presets ship as package data, so the demo finds its config, runs its sweep (the flow and one GD
run) and writes its report, edge-of-stability figure included.

The wheel is built from a copy of the tree (``pip wheel --no-deps --no-build-isolation``); the
fresh venv has no pip of its own and reaches torch and the other dependencies through a ``.pth``
line to this interpreter's site-packages (nothing is downloaded), while ``eoslab`` itself comes
from the wheel (checked).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    r = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert r.returncode == 0, f"{args}\n{r.stdout}\n{r.stderr}"
    return r


def test_eoslab_demo_from_a_wheel_in_a_fresh_venv(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(tree)]
    )
    (wheel,) = wheels.glob("eoslab-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "_shared_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co., not eoslab
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)])

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(EOSLAB_DATA=str(tmp_path / "data"), OMP_NUM_THREADS="1")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(python), "-c", "import eoslab.presets as p; print(p.__file__)"], cwd=work, env=env).stdout
    assert where.startswith(str(site)), where  # the wheel's eoslab, not the source tree's

    r = _run([str(venv / "bin" / "eoslab"), "demo", "--out", "demo", "--no-progress"], cwd=work, env=env, timeout=3000)
    lines = r.stdout.splitlines()
    assert lines[0] == "report on 9 of 9 runs of sweep demo"
    assert lines[-1] == f"report: {work / 'demo' / 'report' / 'index.html'}"
    figures = {p.name for p in (work / "demo" / "report" / "figures").glob("*.png")}
    assert {"gd_vs_euler__dice_ce.png", "fig1_sharpness__dice_ce.png", "peak_alignment__dice_ce.png"} <= figures
    assert "| Dice | Cross-Entropy |" in (work / "demo" / "report" / "table2.md").read_text()
