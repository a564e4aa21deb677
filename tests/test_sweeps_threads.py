"""The local executor's plan: threads per run from ``--threads-per-run``, else the user's
``OMP_NUM_THREADS``, else the cores shared out; one GPU per worker; the plan printed at the start;
one progress line per finished point when stderr is not a terminal; ``sweep.log`` records what
each worker ran with.
"""

import pytest

from eoslab.sweeps import parse_sweep
from eoslab.sweeps.local_executor import LocalPlan, plan_local

from ._sweep_helpers import sweep_cli, tiny_base, write_sweep


def _points(device: str = "cpu", n: int = 3):
    base = tiny_base()
    base["model"]["device"] = device
    return parse_sweep({"base": base, "grid": {"n": list(range(4, 4 + n))}}).points


@pytest.mark.parametrize(
    "env, kwargs, expect",
    [
        (None, {"workers": 1}, LocalPlan(1, 8, "cores")),  # the old trap: 1 worker took every core ...
        ("1", {"workers": 1}, LocalPlan(1, 1, "OMP_NUM_THREADS")),  # ... and overwrote the user's 1
        ("2", {}, LocalPlan(4, 2, "OMP_NUM_THREADS")),  # workers fill the cores at the user's threads
        ("2", {"threads_per_run": 3}, LocalPlan(2, 3, "--threads-per-run")),  # the flag beats the env
        ("junk", {"workers": 2}, LocalPlan(2, 4, "cores")),  # not a number: ignored
        (None, {}, LocalPlan(8, 1, "cores")),
        (None, {"cpus_per_run": 4}, LocalPlan(2, 4, "cores")),
    ],
)
def test_threads_per_run(monkeypatch, env, kwargs, expect):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert plan_local(_points(), cores=8, gpus=[], **kwargs) == expect


def test_one_gpu_per_worker(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = plan_local(_points("auto"), cores=16, gpus=["0", "1"])
    assert plan == LocalPlan(2, 8, "cores", ("0", "1"))
    assert plan.describe() == "2 workers × 8 threads (cores), one GPU each (0, 1)"
    assert plan_local(_points("cuda"), workers=3, cores=12, gpus=["0", "1"]).gpus == ("0", "1", "0")
    assert plan_local(_points("cpu"), cores=16, gpus=["0", "1"]) == LocalPlan(16, 1, "cores")  # CPU runs
    assert plan_local(_points("cuda:1"), cores=16, gpus=["0", "1"]).gpus == ()  # an explicit device stays
    assert plan_local(_points("auto"), cores=4, gpus=[]) == LocalPlan(4, 1, "cores")  # no GPU here


def test_one_worker_one_thread_plan_progress_lines_and_sweep_log(tmp_path, monkeypatch):
    import eoslab.sweeps.local_executor as local_executor

    base = tiny_base(target_loss=0.3, max_steps=200)
    base["model"]["device"] = "auto"  # a GPU run where there is one: the worker gets its slot's GPU
    cfg = write_sweep(tmp_path / "s.toml", base, {"n": [8, 12]})
    out = tmp_path / "out"
    # below, this process believes there is one GPU, "5" (the runs still find no CUDA and use the CPU)
    monkeypatch.setattr(local_executor, "_visible_gpus", lambda: ["5"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    r = sweep_cli("sweep", str(cfg), "--out", str(out), "--workers", "1")  # stderr is a pipe, not a terminal
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == f"sweep {out}: 2 of 2 runs to do (0 finished before) on 1 worker × 1 thread (OMP_NUM_THREADS)"
    assert [line.split()[1:3] for line in lines[1:]] == [["[1/2]", "done"], ["[2/2]", "done"]]
    points = parse_sweep({"base": base, "grid": {"n": [8, 12]}}).points
    for point in points:
        log = (out / "runs" / point.run_id / "sweep.log").read_text()
        assert "1 thread(s) (OMP_NUM_THREADS=1), device auto" in log, log
        assert "done after" in log and "target loss 0.3 reached" in log

    # in process, with the fake GPU: the plan hands it to the worker as CUDA_VISIBLE_DEVICES
    from eoslab.sweeps import run_sweep

    more = parse_sweep({"base": base, "grid": {"n": [16]}})
    result = run_sweep(more, tmp_path / "gpu", workers=1, progress=False)
    assert result.plan == "1 worker × 1 thread (OMP_NUM_THREADS), one GPU each (5)"
    log = (tmp_path / "gpu" / "runs" / more.points[0].run_id / "sweep.log").read_text()
    assert "CUDA_VISIBLE_DEVICES=5" in log and result.count("done") == 1
