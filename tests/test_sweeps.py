"""Sweep configs (validation naming the field, deterministic expansion, the paper's grid), the
per-point job (failures recorded, retried, finished runs untouched), failing points in a real sweep
with ``eoslab status``, and ``collect`` read back by pandas, polars and DuckDB.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from eoslab.commands.report import load_source
from eoslab.config import ConfigError, config_hash, resolve
from eoslab.provenance import code_identity
from eoslab.rundir import RunDir
from eoslab.store import read_json, read_parquet, to_frame
from eoslab.sweeps import (
    COLLECT_SCHEMA,
    collect,
    collect_info,
    grid_table,
    load_sweep,
    parse_sweep,
    point_status,
    run_point,
    run_sweep,
    sweep_status,
)
from eoslab.sweeps.collect import current_info

from ._sweep_helpers import sweep_cli, tiny_base, write_sweep


# ----------------------------------------------------------------------------- grid expansion
def test_expansion_order_ids_and_overrides():
    grid = {
        "datasets": [
            {"name": "synthetic", "n": [8, 16]},
            {"name": "synthetic", "options": {"seed": 1}, "split": "test"},
        ],
        "n": [12],
        "criteria": ["ce", "mse"],
        "init_seeds": [0, 1],
        "subset_seeds": [2],
        "solver": {"eta_max": [0.1, 0.2]},  # written [grid.solver] eta_max = [...]
        "model.width": [4],  # written "model.width" = [...]
    }
    base = tiny_base()
    del base["train"]["target_loss"]  # the default: by criterion
    data = {"base": base, "grid": grid}
    sweep = parse_sweep(data)
    pts = sweep.points
    assert len(pts) == (2 + 1) * 2 * 2 * 2  # sizes (2 + 1) × criteria × eta_max × init seeds
    assert [p.index for p in pts] == list(range(len(pts)))
    # datasets × criteria × sizes × other fields × init seeds × subset seeds
    key = [
        (
            p.config.data.options.get("seed"),
            p.config.criterion.name,
            p.config.data.n,
            p.config.solver.eta_max,
            p.config.model.init_seed,
        )
        for p in pts
    ]
    assert key == sorted(key, key=lambda k: (k[0], ["ce", "mse"].index(k[1]), k[2], k[3], k[4]))
    for p in pts:
        assert p.run_id == config_hash(p.config) == config_hash(resolve(p.config))
        assert p.config.train.target_loss == (0.01 if p.config.criterion.name == "ce" else 0.02)
        assert p.config.model.width == 4 and p.config.data.subset_seed == 2
        assert p.fields == {"solver.eta_max": p.config.solver.eta_max, "model.width": 4}
    first, last = pts[0].config.data, pts[-1].config.data
    assert first.options == {"n": 24, "input_dim": 4, "num_classes": 3, "seed": 0} and first.split == "train"
    assert last.options["seed"] == 1 and last.options["input_dim"] == 4 and last.split == "test"  # merged
    assert [p.run_id for p in parse_sweep(data).points] == [p.run_id for p in pts]  # deterministic
    grid_rows = grid_table(pts)
    assert grid_rows.column_names[:12] == [
        "index",
        "run_id",
        "dataset",
        "n",
        "criterion",
        "init_seed",
        "subset_seed",
        "width",
        "depth",
        "solver",
        "eta",
        "eta_max",
    ]
    assert grid_rows["eta_max"].to_pylist()[:2] == [0.1, 0.1] and "config" in grid_rows.column_names
    # the declared axis model.width is a run column; the dataset entries differ in data.options.seed and data.split
    assert grid_rows.column_names[13:] == ["data.options.seed", "data.split", "config"]  # target_loss: a run column


def test_paper_sizes_and_table1_presets():
    grid = {"datasets": [{"name": "cifar10", "n": "paper"}], "criteria": ["mse"]}
    assert [p.config.data.n for p in parse_sweep({"grid": grid}).points] == [390, 781, 1562, 3125]
    total = 0
    for name, dataset, criterion, sizes in [
        ("dice_ce", "dice", "ce", 5),
        ("cifar10_ce", "cifar10", "ce", 5),
        ("cifar10_mse", "cifar10", "mse", 4),
        ("atrial_fibrillation_ce", "atrial_fibrillation", "ce", 5),
        ("sst_ce", "sst", "ce", 4),
    ]:
        pts = load_sweep(name).points  # a preset, read as package data
        assert len(pts) == 16 * sizes
        total += len(pts)
        for p in pts:
            c = p.config
            assert (c.data.name, c.criterion.name) == (dataset, criterion)
            assert (c.model.depth, c.model.width, c.model.dtype, c.solver.method) == (6, 512, "float64", "exp_euler")
            assert c.train.snapshot_every == 100 and c.analysis.skip_before == 10
            assert c.train.target_loss == (0.01 if criterion == "ce" else 0.02)
        seeds = {(p.config.data.n, p.config.model.init_seed, p.config.data.subset_seed) for p in pts}
        assert len(seeds) == len(pts) and {s[1] for s in seeds} == {s[2] for s in seeds} == {0, 1, 2, 3}
    assert total == 368
    demo = load_sweep("demo").points
    assert 2 <= len(demo) <= 12 and {p.config.data.name for p in demo} == {"dice"}
    gd = [p.config for p in demo if p.config.solver.method == "gd"]
    assert len(gd) == 1 and gd[0].solver.eta == 0.8 and gd[0].solver.eta_max is None and gd[0].data.n == 256


@pytest.mark.parametrize(
    "grid, field",
    [
        ({"datasets": [{"name": "synthetic"}, {"name": "synthetic", "n": [0]}]}, "grid.datasets[1].n[0]"),
        ({"datasets": [{"name": "synthetic", "n": [4], "sizes": 1}]}, "grid.datasets[0].sizes"),
        ({"datasets": [{"n": [4]}]}, "grid.datasets[0].name"),
        ({"datasets": ["synthetic", "mnist"], "n": [4]}, "grid.datasets[1].name"),
        ({"n": [4], "criteria": ["hinge"]}, "grid.criteria[0]"),
        ({"n": [4], "init_seeds": [True]}, "grid.init_seeds[0]"),
        ({"n": [4], "subset_seeds": [1, 1]}, "grid.subset_seeds[1]"),
        ({"n": [4], "subset_seeds": []}, "grid.subset_seeds"),
        ({"n": [4], "solver.eta_max": [0.1, -1.0]}, "grid.solver.eta_max[1]"),
        ({"n": [4], "solver": {"method": ["gd"]}}, "grid.solver.method"),  # through grid.solvers
        ({"n": [4], "solvers": [{"method": "adam"}]}, "grid.solvers[0]: solver.method"),
        ({"n": [4], "solvers": [{"method": "gd", "eta": 0.1, "lr": 1}]}, "grid.solvers[0].lr"),
        ({"n": [4], "solvers": [{"method": "gd", "n": [0]}]}, "grid.solvers[0].n[0]"),
        ({"n": [4], "solvers": [{}, {"init_seeds": [-1]}]}, "grid.solvers[1].init_seeds[0]"),
        ({"n": [4], "solvers": [{}, {}]}, "grid"),  # the same config twice
        ({"datasets": [{"name": "synthetic", "n": [4], "options": {"sze": 3}}]}, "grid.datasets[0].options"),
        ({"n": [4], "model.widht": [4]}, "grid.model.widht"),
        ({"n": [4], "data.n": [4]}, "grid.data.n"),
        ({"n": "paper"}, "grid.n"),  # the paper has no synthetic sizes
        ({"n": [4, 4]}, "grid.n[1]"),
        ({}, "grid.n"),  # no subset size anywhere
    ],
)
def test_bad_grid_names_the_field(grid, field):
    with pytest.raises(ConfigError) as e:
        parse_sweep({"base": {"data": {"name": "synthetic"}}, "grid": grid})
    assert str(e.value).startswith(field + ":"), str(e.value)


def test_bad_base_and_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^base\.model\.depth: must be > 0"):
        parse_sweep({"base": {"model": {"depth": 0}}, "grid": {"n": [4]}})
    with pytest.raises(ConfigError, match=r"^grids: unknown key"):
        parse_sweep({"grids": {}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nn = [4]\ncriteria = ['ce', 'xx']\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: grid\.criteria\[1\]"):
        load_sweep(bad)
    r = sweep_cli("sweep", str(bad), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and "grid.criteria[1]" in r.stderr and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the per-point job


def test_run_point_records_an_analysis_failure_and_retries_without_retraining(tmp_path, monkeypatch, one_thread):
    import eoslab.sweeps.point

    point = parse_sweep({"base": tiny_base(), "grid": {"n": [12]}}).points[0]
    run_dir = tmp_path / point.run_id

    def broken(*args, **kwargs):
        raise RuntimeError("boom [x]")

    monkeypatch.setattr(eoslab.sweeps.point, "analyze_run", broken)
    s = run_point(point.config, run_dir)
    assert (s.state, s.retry, s.reason) == ("failed", True, "analysis: RuntimeError: boom [x]")
    assert point_status(run_dir).state == "failed"

    def stamps(*bookkeeping: str) -> dict:
        """Mtimes of the run's files, without the lock (it records its holder's pid) and ``bookkeeping``."""
        return {
            p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name not in (".lock", *bookkeeping)
        }

    trained = stamps("status.json", "manifest.json")
    monkeypatch.undo()
    s = run_point(point.config, run_dir)
    assert s.state == "done" and (run_dir / "analysis.parquet").exists()
    assert stamps("status.json", "manifest.json", "analysis.parquet") == trained  # training was not redone
    done = stamps()
    assert run_point(point.config, run_dir).state == "done"
    assert stamps() == done


# ----------------------------------------------------------------------------- failing points
def test_failing_points_are_recorded_and_the_rest_finish(tmp_path):
    base = tiny_base()
    base["solver"] = {"method": "gd", "eta": 0.5}
    grid = {
        "datasets": [
            {"name": "synthetic", "n": [12]},
            {"name": "synthetic", "n": [12], "options": {"input_dim": -3}},
        ],  # the loader raises
        "solver.eta": [0.5, 1e200],
    }  # 1e200 overflows
    cfg = write_sweep(tmp_path / "sweep.toml", base, grid)
    out = tmp_path / "out"
    r = sweep_cli("sweep", str(cfg), "--out", str(out), "--workers", "2", "--no-progress")
    assert r.returncode == 1, r.stderr
    states = [s.state for _, s in sweep_status(out)]
    assert states == ["done", "failed", "failed", "failed"]
    _, diverged = sweep_status(out)[1]
    assert "non-finite" in diverged.reason and not diverged.retry
    for _, bad in sweep_status(out)[2:]:
        assert bad.retry and bad.reason.startswith("ConfigError: data.options:")
        assert "input_dim" in (out / "runs" / bad.run_id / "sweep.log").read_text()  # the traceback
    st = sweep_cli("status", str(out))
    assert st.returncode == 0
    assert "done 1" in st.stdout and "failed 3" in st.stdout and "pending 0" in st.stdout
    assert st.stdout.count("non-finite loss") == 1 and st.stdout.count("ConfigError: data.options") == 2
    table = collect(out)
    assert set(table["run_id"].to_pylist()) == {sweep_status(out)[0][1].run_id}


# ----------------------------------------------------------------------------- collect
def test_collect_schema_and_readers(tmp_path):
    cfg = write_sweep(tmp_path / "sweep.toml", tiny_base(), {"n": [12, 24], "init_seeds": [0], "subset_seeds": [3]})
    out = tmp_path / "out"
    r = sweep_cli("sweep", str(cfg), "--out", str(out), "--workers", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (out / "sweep.toml").read_text() == cfg.read_text()
    table = collect(out)
    assert table.schema == COLLECT_SCHEMA
    grid = read_parquet(out / "grid.parquet").to_pylist()
    analysed = sum(read_parquet(out / "runs" / g["run_id"] / "analysis.parquet").num_rows for g in grid)
    trajectories = [read_parquet(out / "runs" / g["run_id"] / "trajectory.parquet") for g in grid]
    steps = sum(t.num_rows for t in trajectories)  # the loss at every step
    measured = sum(len([e for e in t["eigenvalues"].to_pylist() if e]) for t in trajectories)  # λ¹(H)
    assert steps - measured == len(grid)  # the flow measures every step but the final row's
    expect = analysed + steps + measured
    assert table.num_rows == expect > 0
    metrics = table["metric"].to_pylist()
    assert (metrics.count("trajectory_loss"), metrics.count("trajectory_sharpness_H")) == (steps, measured)
    first = trajectories[0]
    rows = to_frame(table.filter(pc.equal(table["run_id"], grid[0]["run_id"])))
    sharp = rows[rows["metric"] == "trajectory_sharpness_H"].sort_values("step")
    assert sharp["value"].tolist() == [e[0] for e in first["eigenvalues"].to_pylist() if e]
    assert sharp["layer"].isna().all() and sharp["t"].tolist() == first["t"].to_pylist()[:-1]
    assert table["layer"].null_count > 0 and set(table["n"].to_pylist()) == {12, 24}
    assert set(table["subset_seed"].to_pylist()) == {3} and set(table["solver"].to_pylist()) == {"exp_euler"}
    assert set(table["target_loss"].to_pylist()) == {0.3}  # the report's protocol states it
    assert collect_info(table).code == [code_identity()]  # the code that ran the sweep (code.txt)
    grid_path = out / "grid.parquet"  # a grid written before the column existed: taken from each point's config
    old_grid = read_parquet(grid_path)
    pq.write_table(old_grid.drop_columns(["target_loss"]), grid_path)
    assert collect(out).equals(table)
    pq.write_table(old_grid, grid_path)

    r = sweep_cli("collect", str(out), "--out", str(tmp_path / "t.parquet"))
    assert r.returncode == 0, r.stderr
    assert "rows from 2 of 2 runs" in r.stdout
    path = str(tmp_path / "t.parquet")

    import duckdb
    import pandas as pd
    import polars as pl

    frame = pd.read_parquet(path)
    assert list(frame.columns) == COLLECT_SCHEMA.names and len(frame) == expect
    assert frame["layer"].isna().any() and str(frame["n"].dtype) == "int64"
    pl_frame = pl.read_parquet(path)
    assert pl_frame.columns == COLLECT_SCHEMA.names and pl_frame.height == expect
    assert pl_frame.schema["layer"] == pl.Int64 and pl_frame["layer"].null_count() > 0
    con = duckdb.connect()
    rows, runs = con.execute(f"select count(*), count(distinct run_id) from read_parquet('{path}')").fetchone()
    assert (rows, runs) == (expect, 2)
    assert con.execute(f"select typeof(layer) from read_parquet('{path}') limit 1").fetchone()[0] == "BIGINT"
    np.testing.assert_array_equal(frame["value"].to_numpy(), table["value"].to_numpy())  # NaN == NaN here

    # each run records the code that trained it; a run resumed by other code is named in the report
    first_run = RunDir(out / "runs" / grid[0]["run_id"])
    assert first_run.code_sittings() == [(0, code_identity())] and current_info(out).mixed == {}
    manifest = json.loads(first_run.manifest_file.read_text())
    manifest["code"].append({"step": 5, "code": "eoslab 0.1.0, git fffffff"})
    first_run.manifest_file.write_text(json.dumps(manifest))
    assert current_info(out).mixed == {
        grid[0]["run_id"]: [f"{code_identity()} from step 0", "eoslab 0.1.0, git fffffff from step 5"]
    }
    _, _, lines = load_source(out)
    assert lines[0] == (
        f"WARNING: run {grid[0]['run_id']} was trained by more than one version of eoslab: "
        f"{code_identity()} from step 0; eoslab 0.1.0, git fffffff from step 5"
    )
    # then every note of an included run, named by its id instead of its path
    notes = {p["run_id"]: read_json(out / "runs" / p["run_id"] / "status.json").get("notes", []) for p in grid}
    said = [
        f"run {p['run_id']}: {n.removeprefix(str(out / 'runs' / p['run_id']) + ': ')}"
        for p in grid
        for n in notes[p["run_id"]]
    ]
    assert sorted(lines[1:]) == sorted(said) and any(n.startswith(str(out)) for v in notes.values() for n in v)


def test_status_through_a_pipe_keeps_whole_lines_and_leaves_unused_axes_blank(tmp_path):
    """`eoslab status` into a pipe keeps every line of its table whole (none cut at 80 columns),
    and a cell of an axis the run does not use (GD's sharpness measurements on an exponential
    Euler run) is blank, not 0.
    """
    grid = {
        "n": [12],
        "solvers": [
            {"method": "exp_euler", "eta_max": 0.5},
            {"method": "gd", "eta": 0.5, "measure_sharpness_every": 2},
            {"method": "gd", "eta": 0.5, "measure_sharpness_every": 3},
        ],
    }
    out = tmp_path / "out"
    run_sweep(load_sweep(write_sweep(tmp_path / "s.toml", tiny_base(), grid)), out, workers=2, progress=False)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = subprocess.run(
        [sys.executable, "-m", "eoslab.cli", "status", str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    header = next(line for line in lines if line.startswith("run_id"))
    names = ["run_id", "solver", "eta", "eta_max", "solver.measure_sharpness_every", "state", "step", "loss", "note"]
    assert header.split() == names and len(header) > 80
    rows = [line for line in lines if line[:12] in {s.run_id for _, s in sweep_status(out)}]
    at = header.index("solver.measure_sharpness_every")
    cells = {row.split()[1] + row[at : at + 30].strip(): row.split()[-3] for row in rows}
    assert cells == {"exp_euler": "done", "gd2": "done", "gd3": "done"}
    assert lines[-1] == "done 3  stopped 0  running 0  failed 0  pending 0  total 3"
