"""A researcher's workflow without traps, on tiny sweeps run in this process.

* a sweep over ``model.gain`` keeps the axis through collect (a typed column), status (a column)
  and report (two Eq. 9 fits, two sets of figures), never one pooled fit;
* GD and exponential Euler runs in one sweep (``[[grid.solvers]]``): the fit uses the flow only,
  the edge-of-stability figure pairs each GD run with its flow;
* a collected table that the sweep has outgrown is refused by ``report``; a sweep folder is always
  collected afresh; the first line says ``N of M runs`` and why the others were left out;
* ``--include-stopped``; ``eoslab show`` and ``eoslab report`` on one run; written files are 0644
  under umask 022.
"""

import shutil
import stat
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pytest

from eoslab.cli import main
from eoslab.store import read_parquet, to_frame, write_parquet, write_text
from eoslab.sweeps import collect, collect_info, grid_table, parse_sweep, run_point, stale_reason
from eoslab.sweeps.grid import GRID_FILE, RUNS_DIR, SWEEP_FILE

from ._sweep_helpers import sweep_cli, tiny_base


def workflow_base() -> dict:
    """A tiny base config whose runs reach their target loss (0.3) in about 5 to 10 steps."""
    return tiny_base(target_loss=0.3, max_steps=200)


def make_sweep(out, grid: dict, *, run: int | None = None, base: dict | None = None):
    """Write a sweep folder for ``grid`` and train + analyse its first ``run`` points (all when
    None) in this process. Returns the parsed sweep.
    """
    sweep = parse_sweep({"base": base or workflow_base(), "grid": grid})
    (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    write_text(sweep.text, out / SWEEP_FILE)
    write_parquet(grid_table(sweep.points), out / GRID_FILE)
    for point in sweep.points:  # as `eoslab sweep` does: every point's run directory at the start
        (out / RUNS_DIR / point.run_id).mkdir()
    for point in sweep.points[:run]:
        assert run_point(point.config, out / RUNS_DIR / point.run_id).state == "done"
    return sweep


@pytest.fixture(scope="module")
def gain_sweep(tmp_path_factory):
    """3 sizes × 2 gains, all done."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("gain") / "sweep"
        make_sweep(out, {"n": [8, 16, 24], "model.gain": [1.0, 1.5]})
    finally:
        torch.set_num_threads(threads)
    return out


def test_a_gain_axis_survives_collect_status_and_report(gain_sweep, tmp_path, capsys):
    table = collect(gain_sweep)
    assert table.schema.field("model.gain").type == pa.float64()
    assert (
        table.column_names.index("model.gain") == table.column_names.index("target_loss") + 1
    )  # after the run columns
    runs = to_frame(table.select(["run_id", "n", "model.gain"])).drop_duplicates()
    assert sorted(zip(runs["n"], runs["model.gain"])) == [(n, g) for n in (8, 16, 24) for g in (1.0, 1.5)]

    r = sweep_cli("status", str(gain_sweep))
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if line.startswith("run_id"))
    assert header.split() == ["run_id", "n", "model.gain", "state", "step", "loss", "note"]
    assert "every run: dataset=synthetic" in r.stdout and "solver=exp_euler" in r.stdout

    out = tmp_path / "report"
    assert (
        main(["report", str(gain_sweep), "--out", str(out), "--bootstrap", "50", "--skip-before", "0", "--no-progress"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"report on 6 of 6 runs of sweep {gain_sweep}"
    fits = pd.read_csv(out / "table2.csv")
    assert list(fits["model.gain"]) == [1.0, 1.5] and list(fits["n_runs"]) == [3, 3]  # two fits, not one of 6
    peaks = pd.read_csv(out / "peaks.csv")
    for gain, fit in zip((1.0, 1.5), fits.itertuples()):  # each fit is the OLS of its own runs
        mine = peaks[peaks["model.gain"] == gain]
        assert fit.b == pytest.approx(_slope(mine["n"], mine["peak"]), rel=1e-9)
    assert "| Synthetic | Cross-Entropy | model.gain = 1 |" in (out / "table2.md").read_text()
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {
        "fig1_sharpness__synthetic_ce__model.gain=1.png",
        "fig1_sharpness__synthetic_ce__model.gain=1.5.png",
    } <= figures
    assert {
        "peak_alignment__synthetic_ce__model.gain=1.png",
        "peak_alignment__synthetic_ce__model.gain=1.5.png",
    } <= figures
    page = (out / "index.html").read_text()
    assert "report on 6 of 6 runs" in page and "model.gain = 1.5" in page
    assert read_parquet(out / "collected.parquet").num_rows == table.num_rows  # the table it was made from


def quick_report(source, out, *extra: str) -> int:
    """``eoslab report SOURCE --out OUT`` with a small bootstrap, every step, no progress bar."""
    quick = ["--bootstrap", "10", "--skip-before", "0", "--no-progress"]
    return main(["report", str(source), "--out", str(out), *quick, *extra])


def _slope(n, y):
    import numpy as np

    x, v = np.log(np.asarray(n, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, v, 1)[0])


def test_a_stale_table_is_refused_and_the_sweep_folder_is_collected_afresh(tmp_path, capsys, one_thread):
    out = tmp_path / "sweep"
    sweep = make_sweep(out, {"n": [8, 12, 16]}, run=2)
    assert main(["collect", str(out)]) == 0
    said = capsys.readouterr().out
    assert "from 2 of 3 runs (left out: 1 pending)" in said
    table = out / "collected.parquet"
    info = collect_info(read_parquet(table))
    assert (info.total, sorted(info.included)) == (3, sorted(p.run_id for p in sweep.points[:2]))
    assert stale_reason(info, out) is None
    assert quick_report(table, tmp_path / "r0") == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"report on 2 of 3 runs (left out: 1 pending) of sweep {out} (table {table}, current)"
    )

    last = sweep.points[2]
    run_point(last.config, out / RUNS_DIR / last.run_id)  # the sweep moves on
    assert main(["report", str(table), "--out", str(tmp_path / "r1"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{table} is stale: it holds 2 of 3 runs" in err and f"1 run(s) finished since ({last.run_id})" in err
    assert not (tmp_path / "r1" / "index.html").exists()

    assert quick_report(out, tmp_path / "r2") == 0
    assert capsys.readouterr().out.splitlines()[0] == f"report on 3 of 3 runs of sweep {out}"
    assert pd.read_csv(tmp_path / "r2" / "table2.csv")["n_runs"].tolist() == [3]

    assert main(["collect", str(out)]) == 0  # a fresh table is current again ...
    capsys.readouterr()
    (out / RUNS_DIR / last.run_id / "analysis.parquet").unlink()  # ... until a run is analysed again,
    assert main(["analyze", str(out / RUNS_DIR / last.run_id), "--tol", "1e-9", "--no-progress"]) == 0  # tighter
    assert main(["report", str(table), "--out", str(tmp_path / "r3"), "--no-progress"]) == 1
    assert f"the analysis of 1 run(s) changed ({last.run_id})" in capsys.readouterr().err

    moved = tmp_path / "elsewhere.parquet"  # a table whose sweep is not here is reported, flagged as unchecked
    shutil.copy(table, moved)
    shutil.move(out, tmp_path / "gone")
    assert quick_report(moved, tmp_path / "r4") == 0
    assert "NOT checked that the table is current" in capsys.readouterr().out.splitlines()[0]


def test_stopped_runs_are_left_out_unless_asked_for(tmp_path, capsys, one_thread):
    base = tiny_base(target_loss=0.3, max_steps=60)
    slow = {"method": "exp_euler", "eta_max": 0.01, "n": [20]}  # t = 0.6 after 60 steps: far above the target
    out = tmp_path / "sweep"
    sweep = parse_sweep({"base": base, "grid": {"n": [8, 12, 16], "solvers": [{}, slow]}})
    (out / RUNS_DIR).mkdir(parents=True)
    write_text(sweep.text, out / SWEEP_FILE)
    write_parquet(grid_table(sweep.points), out / GRID_FILE)
    states = [run_point(p.config, out / RUNS_DIR / p.run_id).state for p in sweep.points]
    assert states == ["done", "done", "done", "stopped"]
    stopped = sweep.points[3].run_id

    assert main(["collect", str(out)]) == 0
    said = capsys.readouterr().out
    assert "from 3 of 4 runs (left out: 1 stopped; --include-stopped adds the stopped)" in said
    assert stopped not in set(read_parquet(out / "collected.parquet")["run_id"].to_pylist())
    r = tmp_path / "r"
    assert main(["report", str(out / "collected.parquet"), "--out", str(r), "--include-stopped"]) == 1
    assert "collected without stopped runs" in capsys.readouterr().err
    assert quick_report(out, r) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"report on 3 of 4 runs (left out: 1 stopped; --include-stopped adds the stopped) of sweep {out}"
    assert lines[1].startswith(f"  left out {stopped}: stopped above its target loss (max_steps 60")
    assert quick_report(out, r, "--include-stopped") == 0
    assert capsys.readouterr().out.splitlines()[0] == f"report on 4 of 4 runs of sweep {out}"
    fits = pd.read_csv(r / "table2.csv")
    assert fits["eta_max"].tolist() == [0.01, 0.5] and fits["n_runs"].tolist() == [1, 3]


def test_gd_and_the_flow_in_one_sweep(tmp_path, capsys, one_thread):
    grid = {
        "n": [8, 12, 16],
        "solvers": [
            {"method": "exp_euler"},
            {"method": "gd", "eta": 0.5, "measure_sharpness_every": 1, "n": [16]},
        ],
    }
    out = tmp_path / "sweep"
    sweep = make_sweep(out, grid)
    methods = [(p.config.solver.method, p.config.data.n) for p in sweep.points]
    assert methods == [("exp_euler", 8), ("exp_euler", 12), ("exp_euler", 16), ("gd", 16)]
    gd = sweep.points[3].config.solver
    assert (gd.eta, gd.eta_max, gd.measure_sharpness_every) == (0.5, None, 1)  # base's eta_max dropped
    table = collect(out)
    # measure_sharpness_every is the GD entry's own setting, which the flow does not use; with one
    # GD run it is no axis of the table.
    assert "solver.measure_sharpness_every" not in table.column_names
    assert quick_report(out, tmp_path / "r") == 0
    capsys.readouterr()
    fits = pd.read_csv(tmp_path / "r" / "table2.csv")
    assert fits["n_runs"].tolist() == [3] and "solver" not in fits.columns  # the flow alone, one fit
    figures = {p.name for p in (tmp_path / "r" / "figures").glob("*.png")}
    gd_run = f"gd_run__synthetic_ce__{sweep.points[3].run_id}.png"
    assert {"gd_vs_euler__synthetic_ce.png", gd_run} == {f for f in figures if "gd" in f}
    assert "fig1_sharpness__synthetic_ce.png" in figures
    page = (tmp_path / "r" / "index.html").read_text()
    order = [page.index(f'id="{name[:-4]}"') for name in ("gd_vs_euler__synthetic_ce.png", gd_run)]
    assert order[0] < order[1] < page.index('id="fig1_sharpness__synthetic_ce"')  # the edge of stability first
    assert "measured steps are within 10 % of 2/η" in page or "stays below 2/η = 4" in page


def test_show_and_report_of_one_finished_run(gain_sweep, tmp_path, capsys):
    run = next((gain_sweep / RUNS_DIR).iterdir())
    assert main(["show", str(run)]) == 0
    lines = dict(line.strip().split("  ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["state"].startswith("done (target loss 0.3 reached)")
    analysis = to_frame(read_parquet(run / "analysis.parquet"))
    h = analysis[analysis["metric"] == "sharpness_H"].sort_values("step")["value"]
    assert lines["λ¹(H)"].startswith(f"{h.iloc[0]:.4g} → {h.max():.4g}") and lines["λ¹(H)"].endswith("[analysis]")
    c5 = analysis[(analysis["metric"] == "eq7_c5") & (analysis["layer"] == 1)].sort_values("step")["value"]
    assert lines["C5 (layer 1)"].endswith(f"→ {c5.iloc[-1]:.4g}")
    assert lines["analysis"] == f"{analysis['step'].nunique()} of {analysis['step'].nunique()} snapshots analysed"

    out = tmp_path / "one"
    assert main(["report", str(run), "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"report on run {run}"
    figures = {p.name.split("__")[0] for p in (out / "figures").glob("*.png")}
    assert {"trajectory", "fig1_sharpness", "fig4_eq7"} <= figures
    assert "λ¹(H)" in (out / "summary.md").read_text() and "trajectory" in (out / "index.html").read_text()
    assert main(["report", str(run), "--metric", "eq7_c5", "--layer", "2", "--out", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err == (
        f"eoslab report: error: --metric, --layer: option(s) of a sweep's report; {run} is a single run "
        "(its report takes --out, --skip-before and --no-progress)\n"
    )
    assert main(["show", str(gain_sweep)]) == 2
    assert capsys.readouterr().err == (
        f"eoslab show: error: {gain_sweep} is a sweep folder; `eoslab status {gain_sweep}` lists its runs\n"
    )


def test_written_files_are_0644_under_umask_022(gain_sweep, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(next((gain_sweep / RUNS_DIR).iterdir()), run)
    (run / "analysis.parquet").unlink()
    commands = [
        f"eoslab analyze {run} --no-progress",
        f"eoslab report {gain_sweep} --out {tmp_path / 'report'} --bootstrap 10 --skip-before 0 --no-progress",
        f"eoslab collect {gain_sweep} --out {tmp_path / 'table.parquet'}",
        f"eoslab init quick {tmp_path / 'quick.toml'}",
    ]
    for command in commands:  # each in a fresh process whose umask is 022 from its start
        r = subprocess.run(
            ["sh", "-c", f"umask 022 && exec {sys.executable} -m eoslab.cli {command.split(' ', 1)[1]}"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert r.returncode == 0, r.stderr
    written = [run / "analysis.parquet", tmp_path / "table.parquet", tmp_path / "quick.toml"]
    written += [p for p in (tmp_path / "report").rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:  # atomic writes go through a temporary file, which mkstemp makes 0600
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
