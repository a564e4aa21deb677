"""Executors: run a sweep's unfinished points on local worker processes or on a Ray cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import from_dict, to_toml
from .grid import GRID_FILE, RUNS_DIR, SWEEP_FILE, GridPoint, Sweep, grid_table
from .point import PointStatus, after_worker, point_status, run_point

#: Each local worker's output (its traceback on a failure) is appended to ``RUN_DIR/sweep.log``.
LOG_FILE = "sweep.log"


def _pin_threads(threads: int) -> None:
    """Limit torch's intra-op threads (and OpenMP/MKL for libraries loaded later)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _point_from_toml(config_toml: str, run_dir: str, analysis: bool, threads: int) -> PointStatus:
    """:func:`run_point` on a config given as TOML text, with ``threads`` torch threads (the job
    of an executor's worker).
    """
    _pin_threads(threads)
    return run_point(from_dict(tomllib.loads(config_toml)), run_dir, analysis=analysis)


def _die_with_parent(parent: int) -> None:
    """Get SIGKILL when the sweep process ``parent`` dies (Linux), so a killed sweep leaves no
    worker behind; exit at once if it is already gone.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(3)


def _worker_main() -> int:
    """Entry point of a local worker process: ``argv = RUN_DIR ANALYSIS(0|1) THREADS PARENT_PID``,
    the point's config as TOML on stdin. Exit code 0 when the point is done, 1 when it failed.
    """
    run_dir, analysis, threads, parent = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
    _die_with_parent(parent)
    return 0 if _point_from_toml(sys.stdin.read(), run_dir, analysis, threads).state == "done" else 1


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        out_dir: the sweep folder.
        statuses: the final status of every point, in grid order.
        skipped: points that were already finished (or failed for good) before this call.
    """

    out_dir: Path
    statuses: list[PointStatus]
    skipped: int

    def count(self, state: str) -> int:
        """How many points ended in ``state``."""
        return sum(s.state == state for s in self.statuses)

    @property
    def failed(self) -> list[PointStatus]:
        """The points that failed."""
        return [s for s in self.statuses if s.state == "failed"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _final_without_work(status: PointStatus) -> bool:
    """Done, or failed by train's own verdict (a diverged run), which a rerun would not change."""
    return status.state == "done" or (status.state == "failed" and not status.retry)


def run_sweep(
    sweep: Sweep,
    out_dir: str | Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    analysis: bool = True,
    progress: bool = True,
) -> SweepResult:
    """Run every unfinished point of ``sweep`` under ``out_dir`` (see the module docstring).

    Args:
        executor: ``local`` (worker processes on this machine) or ``ray``.
        workers: local: concurrent worker processes (default: cores // cpus_per_run), each pinned
            to max(1, cores // workers) threads. Ray without ``address``: the local Ray instance
            gets workers × cpus_per_run CPUs (default: all cores).
        address: Ray: the cluster to join (``HOST:PORT`` or ``ray://...``); None starts a local one.
        cpus_per_run, gpus_per_run: Ray: resources of each point's task (fractional GPUs let
            several small runs share one); torch gets max(1, ⌊cpus_per_run⌋) threads.
        analysis: also analyse each finished run.
        progress: an overall progress bar on stderr.
    """
    from ..store import write_parquet, write_text

    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if cpus_per_run <= 0 or gpus_per_run < 0 or (workers is not None and workers < 1):
        raise ValueError("need workers >= 1, cpus_per_run > 0 and gpus_per_run >= 0")
    out_dir = Path(out_dir)
    runs = out_dir / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    write_text(sweep.text, out_dir / SWEEP_FILE)
    write_parquet(grid_table(sweep.points), out_dir / GRID_FILE)

    statuses = {p.run_id: point_status(runs / p.run_id, analysis=analysis) for p in sweep.points}
    # largest subsets first: the longest runs start early, so no worker idles at the end
    todo = sorted(
        (p for p in sweep.points if not _final_without_work(statuses[p.run_id])), key=lambda p: -(p.config.data.n or 0)
    )
    skipped = len(sweep.points) - len(todo)
    with _SweepProgress(progress, len(sweep.points), skipped, statuses.values()) as bar:

        def finished(point: GridPoint, status: PointStatus) -> None:
            statuses[point.run_id] = status
            bar.finished(point, status)

        if executor == "local":
            n_workers = workers or max(1, int(_cores() // cpus_per_run))
            _run_local(todo, runs, analysis, n_workers, max(1, _cores() // n_workers), finished)
        else:
            _run_ray(todo, runs, analysis, address, workers, cpus_per_run, gpus_per_run, finished)
    return SweepResult(out_dir, [statuses[p.run_id] for p in sweep.points], skipped)


def _run_local(
    todo: list[GridPoint],
    runs: Path,
    analysis: bool,
    workers: int,
    threads: int,
    finished: Callable[[GridPoint, PointStatus], None],
) -> None:
    """Run the points on ``workers`` worker processes (one fresh Python process per point, its
    output appended to ``RUN_DIR/sweep.log``), each with ``threads`` threads.
    """
    env = {**os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    code = "import sys; from eoslab.sweeps.executors import _worker_main; sys.exit(_worker_main())"
    queue = list(reversed(todo))
    running: dict[subprocess.Popen, GridPoint] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                point = queue.pop()
                run_dir = runs / point.run_id
                run_dir.mkdir(parents=True, exist_ok=True)
                with open(run_dir / LOG_FILE, "ab") as log:
                    proc = subprocess.Popen(
                        [sys.executable, "-c", code, str(run_dir), str(int(analysis)), str(threads), str(os.getpid())],
                        stdin=subprocess.PIPE,
                        stdout=log,
                        stderr=log,
                        env=env,
                    )
                proc.stdin.write(to_toml(point.config).encode())
                proc.stdin.close()
                running[proc] = point
            time.sleep(0.1)
            for proc in [p for p in running if p.poll() is not None]:
                point = running.pop(proc)
                rc = proc.returncode
                what = (
                    f"worker killed by signal {-rc}" if rc < 0 else f"worker exited with code {rc}"
                ) + f" (see {LOG_FILE})"
                finished(point, after_worker(runs / point.run_id, analysis, what))
    finally:
        for proc in running:  # interrupted: stop our own workers
            proc.kill()
            proc.wait()


def _run_ray(
    todo: list[GridPoint],
    runs: Path,
    analysis: bool,
    address: str | None,
    workers: int | None,
    cpus_per_run: float,
    gpus_per_run: float,
    finished: Callable[[GridPoint, PointStatus], None],
) -> None:
    """Run the points as Ray tasks with ``cpus_per_run``/``gpus_per_run`` resources each. Joins
    ``address`` (or the Ray instance this process is already connected to); otherwise starts a
    local instance and shuts it down at the end. The sweep folder must be visible to every node.
    """
    import ray

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            num_cpus = int(workers * cpus_per_run) if workers else _cores()
            ray.init(address="local", num_cpus=max(1, num_cpus), include_dashboard=False, log_to_driver=False)
        started = True
    try:
        task = ray.remote(_point_from_toml).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run)
        threads = max(1, int(cpus_per_run))
        refs = {}
        for point in todo:
            (runs / point.run_id).mkdir(parents=True, exist_ok=True)
            refs[task.remote(to_toml(point.config), str(runs / point.run_id), analysis, threads)] = point
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            point = refs.pop(ready[0])
            try:
                status = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the worker died, or the task could not run
                status = after_worker(runs / point.run_id, analysis, f"ray task failed: {type(e).__name__}: {e}")
            finished(point, status)
    finally:
        if started:
            ray.shutdown()


class _SweepProgress:
    """The overall progress bar of a sweep (points finished / total, done and failed counts), on
    stderr; failures are printed above it as they happen.
    """

    def __init__(self, enabled: bool, total: int, skipped: int, initial: Any) -> None:
        self.enabled, self.total, self.finished_count = enabled, total, skipped
        self.counts = {"done": 0, "failed": 0}
        for s in initial:
            if _final_without_work(s):
                self.counts[s.state] += 1

    def __enter__(self) -> _SweepProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("[bold]sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self.bar.start()
            self.task = self.bar.add_task(self._text(), total=self.total, completed=self.finished_count)
        return self

    def _text(self) -> str:
        return f"{self.counts['done']} done, {self.counts['failed']} failed"

    def finished(self, point: GridPoint, status: PointStatus) -> None:
        self.counts["failed" if status.state == "failed" else "done"] += 1
        if self.enabled:
            if status.state == "failed":
                from rich.markup import escape

                self.bar.console.print(
                    f"[red]failed[/red] {point.run_id} ({escape(point.label())}): {escape(str(status.reason))}",
                    highlight=False,
                )
            self.bar.update(self.task, advance=1, description=self._text())

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.stop()
