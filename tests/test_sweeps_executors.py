"""Executors: the local worker processes and a real local Ray cluster give identical collected
tables; a sweep killed with SIGKILL mid-way resumes on rerun without touching finished runs.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eoslab.store import read_parquet
from eoslab.sweeps import collect, point_status, sweep_status

from ._sweep_helpers import sweep_cli, tiny_base, write_sweep


def _sorted(table):
    return table.sort_by([(c, "ascending") for c in ("run_id", "step", "metric", "layer")])


def test_local_and_ray_give_identical_tables(tmp_path):
    ray = pytest.importorskip("ray")
    cfg = write_sweep(tmp_path / "sweep.toml", tiny_base(), {"n": [12, 24], "init_seeds": [0, 1]})
    local_args = ("--workers", "2", "--threads-per-run", "1")  # 1 thread, as Ray's 1 CPU per run gives
    r = sweep_cli("sweep", str(cfg), "--out", str(tmp_path / "local"), *local_args, "--no-progress")
    assert r.returncode == 0, r.stderr

    # a real local Ray cluster (Ray announces it on this host's address, not 127.0.0.1), joined by the
    # sweep command as a second driver
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        r = sweep_cli(
            "sweep",
            str(cfg),
            "--out",
            str(tmp_path / "ray"),
            "--executor",
            "ray",
            "--address",
            address,
            "--cpus-per-run",
            "1",
            "--no-progress",
        )
    finally:
        ray.shutdown()
    assert r.returncode == 0, r.stderr
    local, on_ray = _sorted(collect(tmp_path / "local")), _sorted(collect(tmp_path / "ray"))
    assert local.num_rows > 0 and len(set(local["run_id"].to_pylist())) == 4
    # same rows, same values, bit for bit (1 thread per run in both)
    assert local.drop_columns(["value"]).equals(on_ray.drop_columns(["value"]))
    np.testing.assert_array_equal(local["value"].to_numpy(), on_ray["value"].to_numpy())


def _snapshot(run_dir: Path) -> dict:
    """Mtime and SHA-256 of every file of a run directory."""
    return {
        p.relative_to(run_dir): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def _progress(out: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(every run, the finished ones, those running at step 5 or later) as the files say now."""
    if not (out / "grid.parquet").exists():
        return [], [], []
    runs = [out / "runs" / r for r in read_parquet(out / "grid.parquet")["run_id"].to_pylist()]
    status = {r: point_status(r) for r in runs}
    done = [r for r in runs if status[r].state == "stopped"]
    busy = [r for r in runs if status[r].state == "running" and (status[r].step or 0) >= 5]
    return runs, done, busy


def _freeze(group: int) -> None:
    """SIGSTOP a process group and wait until each of its processes has stopped (Linux: /proc)."""
    os.killpg(group, signal.SIGSTOP)
    deadline = time.monotonic() + 30
    while True:
        states = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == group:
                    states.append(fields[0])
        if all(state in "TtZX" for state in states):
            return
        assert time.monotonic() < deadline, f"process group {group} did not stop: {states}"
        time.sleep(0.01)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_mid_sweep_then_rerun_resumes(tmp_path):
    base = tiny_base(max_steps=40, target_loss=1e-9)  # max_steps stops every run
    cfg = write_sweep(tmp_path / "sweep.toml", base, {"n": [12, 16, 20]})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "eoslab.cli", "sweep", str(cfg), "--out", str(out), "--workers", "1", "--no-progress"]
    # a process group of its own (the sweep and its worker), to be frozen while it is looked at
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:  # wait for a finished run and one half-way, seen with the sweep frozen
            if all(_progress(out)[1:]):
                _freeze(proc.pid)
                runs, done, busy = _progress(out)
                if done and busy:
                    killed = busy[0]
                    break
                os.killpg(proc.pid, signal.SIGCONT)  # moved on between the two looks
            assert proc.poll() is None, "the sweep finished before it could be killed"
            assert time.monotonic() < deadline, "the sweep made no progress"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the sweep alone: its frozen worker dies with it
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGCONT)  # nothing of it stays stopped
        except ProcessLookupError:
            pass
    assert 1 <= len(done) < len(runs)  # the first run, or the first two
    deadline = time.monotonic() + 30  # the worker dies with the sweep (PR_SET_PDEATHSIG)
    while point_status(killed).state == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert point_status(killed).state == "pending"  # interrupted in training or in its analysis
    assert [point_status(r).state for r in runs].count("pending") == len(runs) - len(done)
    assert all(point_status(r).state == "stopped" for r in done)  # max_steps ended them above the target
    finished = {r: _snapshot(r) for r in done}
    saved = {p: p.stat().st_mtime_ns for p in (killed / "snapshots").glob("step_*.safetensors")}
    assert saved

    r = sweep_cli("sweep", str(cfg), "--out", str(out), "--workers", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"({len(done)} already finished before this run)" in r.stdout
    assert [s.state for _, s in sweep_status(out)] == ["stopped"] * 3
    assert {r: _snapshot(r) for r in done} == finished  # not recomputed, not rewritten
    assert all(p.stat().st_mtime_ns == m for p, m in saved.items())  # resumed, not restarted
    for run_dir in runs:
        traj = read_parquet(run_dir / "trajectory.parquet")
        assert traj["step"].to_pylist() == list(range(41))
        steps = set(read_parquet(run_dir / "analysis.parquet")["step"].to_pylist())
        assert steps == set(range(0, 41, 5))
    for path in out.rglob("*.parquet"):  # every Parquet file reads back whole
        table = read_parquet(path)
        assert table.num_rows > 0, path
    assert collect(out).num_rows == 0  # stopped above their target: not collected by default
