"""The local executor: a sweep's points on worker processes of this machine.

Its plan (:func:`plan_local`) is printed when a sweep starts, e.g. ``2 workers × 1 thread``: the
threads of each run come from ``--threads-per-run``, else from the user's ``OMP_NUM_THREADS``,
else from the cores shared out over the workers; each worker gets one GPU of its own
(``CUDA_VISIBLE_DEVICES``) when there are GPUs and the runs use ``model.device = "auto"`` or
``"cuda"``. Each point runs in a fresh Python process (:func:`eoslab.sweeps.worker.main`), which
writes what it ran with and how its point ended to ``RUN_DIR/sweep.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import to_toml
from .grid import GridPoint
from .point import PointStatus, after_worker

#: Each local worker's output (its traceback on a failure) is appended to ``RUN_DIR/sweep.log``.
LOG_FILE = "sweep.log"
#: The program of a worker process: :func:`eoslab.sweeps.worker.main` on its arguments.
_WORKER = "import sys; from eoslab.sweeps.worker import main; sys.exit(main(sys.argv[1:]))"


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _positive_env(name: str) -> int | None:
    """A positive integer environment variable, or None when unset or not one."""
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def _visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (empty without CUDA)."""
    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [d.strip() for d in visible.split(",") if d.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


@dataclass(frozen=True)
class LocalPlan:
    """How the local executor runs the points.

    Attributes:
        workers: concurrent worker processes.
        threads: torch/OpenMP threads of each.
        threads_from: where the thread count came from (``--threads-per-run``, ``OMP_NUM_THREADS``
            or ``cores``).
        gpus: the GPU of each worker slot (``CUDA_VISIBLE_DEVICES`` entries), or empty on the CPU.
    """

    workers: int
    threads: int
    threads_from: str
    gpus: tuple[str, ...] = ()

    def describe(self) -> str:
        """E.g. ``2 workers × 1 thread (OMP_NUM_THREADS)`` or ``2 workers × 8 threads, one GPU each (0, 1)``."""
        text = (
            f"{self.workers} worker{'s' * (self.workers != 1)} × {self.threads} thread{'s' * (self.threads != 1)} "
            f"({self.threads_from})"
        )
        if self.gpus:
            share = "one GPU each" if len(set(self.gpus)) == len(self.gpus) else "sharing GPUs"
            text += f", {share} ({', '.join(self.gpus)})"
        return text


def plan_local(
    points: list[GridPoint],
    *,
    workers: int | None = None,
    threads_per_run: int | None = None,
    cpus_per_run: float = 1.0,
    cores: int | None = None,
    gpus: list[str] | None = None,
) -> LocalPlan:
    """The local executor's plan (see the module docstring).

    Threads per run: ``threads_per_run``, else ``$OMP_NUM_THREADS``, else cores // workers (at
    least 1). Workers: ``workers``, else one per GPU when the runs go on GPUs, else cores //
    (threads per run, or ``cpus_per_run`` when neither sets it). GPUs (``gpus``: default the
    visible CUDA devices) are handed out one per worker slot, round robin, when every point's
    ``model.device`` is ``auto`` or ``cuda``.
    """
    cores = cores or available_cores()
    threads = threads_per_run or _positive_env("OMP_NUM_THREADS")
    threads_from = "--threads-per-run" if threads_per_run else "OMP_NUM_THREADS" if threads else "cores"
    on_gpu = bool(points) and all(p.config.model.device in ("auto", "cuda") for p in points)
    devices = (gpus if gpus is not None else _visible_gpus()) if on_gpu else []
    if workers is None:
        workers = len(devices) or max(1, int(cores // (threads or cpus_per_run)))
    if threads is None:
        threads = max(1, cores // workers)
    slots = tuple(devices[k % len(devices)] for k in range(workers)) if devices else ()
    return LocalPlan(workers, threads, threads_from, slots)


def run_local(
    todo: list[GridPoint],
    runs: Path,
    analysis: bool,
    plan: LocalPlan,
    finished: Callable[[GridPoint, PointStatus], None],
) -> None:
    """Run the points on ``plan.workers`` worker processes (one fresh Python process per point,
    its output appended to ``RUN_DIR/sweep.log``), each with ``plan.threads`` threads and the GPU
    of its worker slot.
    """
    threads = {v: str(plan.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    queue = list(reversed(todo))
    running: dict[subprocess.Popen, tuple[GridPoint, int]] = {}
    try:
        while queue or running:
            while queue and len(running) < plan.workers:
                point = queue.pop()
                slot = min(set(range(plan.workers)) - {k for _, k in running.values()})
                env = {**os.environ, **threads}
                if plan.gpus:
                    env["CUDA_VISIBLE_DEVICES"] = plan.gpus[slot]
                run_dir = runs / point.run_id
                with open(run_dir / LOG_FILE, "ab") as log:
                    proc = subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            _WORKER,
                            str(run_dir),
                            str(int(analysis)),
                            str(plan.threads),
                            str(os.getpid()),
                        ],
                        stdin=subprocess.PIPE,
                        stdout=log,
                        stderr=log,
                        env=env,
                    )
                assert proc.stdin is not None  # made with stdin=PIPE
                proc.stdin.write(to_toml(point.config).encode())
                proc.stdin.close()
                running[proc] = (point, slot)
            time.sleep(0.1)
            for proc in [p for p in running if p.poll() is not None]:
                point, _ = running.pop(proc)
                rc = proc.returncode
                what = (
                    f"worker killed by signal {-rc}" if rc < 0 else f"worker exited with code {rc}"
                ) + f" (see {LOG_FILE})"
                finished(point, after_worker(runs / point.run_id, analysis, what))
    finally:
        for proc in running:  # interrupted: stop our own workers
            proc.kill()
            proc.wait()
