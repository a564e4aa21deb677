"""Executors: run a sweep's unfinished points on local worker processes or on a Ray cluster.

A sweep folder is bound to its sweep: :func:`run_sweep` holds the folder's lock (``DIR/.lock``)
while it runs, so a second sweep into the same folder fails at once, and refuses a sweep whose
points differ from those in the folder's ``grid.parquet`` unless ``force`` (then it says what it
replaced; the runs on disk stay). SIGTERM and SIGHUP interrupt a sweep like Ctrl-C, so its cleanup
runs: local workers are killed, and a Ray instance the sweep started is shut down, with a
watchdog process that kills what is left of it when the sweep ends or is killed (even by
SIGKILL). Joining a Ray cluster that does not answer fails within :data:`RAY_CONNECT_TIMEOUT_S`.

The local executor's plan (:func:`plan_local`) is printed when a sweep starts, e.g. ``2 workers ×
1 thread``: the threads of each run come from ``--threads-per-run``, else from the user's
``OMP_NUM_THREADS``, else from the cores shared out over the workers; each worker gets one GPU of
its own (``CUDA_VISIBLE_DEVICES``) when there are GPUs and the runs use ``model.device = "auto"``
or ``"cuda"``. Every worker writes what it ran with and how its point ended to
``RUN_DIR/sweep.log``; the sweep prints one line per finished point when stderr is not a terminal
(a progress bar when it is).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import from_dict, to_toml
from ..errors import SweepError
from ..provenance import record_code
from ..rundir import TRAINED_STATES, folder_kind, folder_lock, warn
from .grid import GRID_FILE, RUNS_DIR, SWEEP_FILE, GridPoint, Sweep, grid_table, load_sweep
from .point import PointStatus, after_worker, point_status, run_point

#: Each local worker's output (its traceback on a failure) is appended to ``RUN_DIR/sweep.log``.
LOG_FILE = "sweep.log"
#: Seconds to wait for a Ray cluster given by ``address`` to answer before giving up.
RAY_CONNECT_TIMEOUT_S = 30.0


def _pin_threads(threads: int) -> None:
    """Limit torch's intra-op threads (and OpenMP/MKL for libraries loaded later)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _point_from_toml(config_toml: str, run_dir: str, analysis: bool, threads: int) -> PointStatus:
    """:func:`run_point` on a config given as TOML text, with ``threads`` torch threads (the job
    of an executor's worker); what it ran with and how it ended go to stdout (``sweep.log``).
    """
    import torch

    _pin_threads(threads)
    config = from_dict(tomllib.loads(config_toml))
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    print(
        f"{_now()} worker pid {os.getpid()}: {torch.get_num_threads()} thread(s) "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), device {config.model.device}"
        + (f", CUDA_VISIBLE_DEVICES={gpus}" if gpus is not None else ""),
        flush=True,
    )
    start = time.monotonic()
    status = run_point(config, run_dir, analysis=analysis)
    where = f"step {status.step}, loss {status.loss:.6g}" if status.loss is not None else f"step {status.step}"
    print(
        f"{_now()} {status.state} after {time.monotonic() - start:.1f} s ({where})"
        + (f": {status.reason}" if status.reason else ""),
        flush=True,
    )
    return status


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


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
    return 0 if _point_from_toml(sys.stdin.read(), run_dir, analysis, threads).state in TRAINED_STATES else 1


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        out_dir: the sweep folder.
        statuses: the final status of every point, in grid order.
        skipped: points that were already finished (or failed for good) before this call.
        plan: how the points ran (``2 workers × 1 thread``).
        replaced: what ``force`` replaced (None when the folder held this sweep or none).
    """

    out_dir: Path
    statuses: list[PointStatus]
    skipped: int
    plan: str = ""
    replaced: str | None = None

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


def _positive_env(name: str) -> int | None:
    """A positive integer environment variable, or None when unset or not one."""
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def _visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (empty without CUDA)."""
    import torch

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
    cores = cores or _cores()
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


def _final_without_work(status: PointStatus) -> bool:
    """Done or stopped, or failed for good (a diverged run, files that do not verify), which a
    rerun would not change.
    """
    return status.state in TRAINED_STATES or (status.state == "failed" and not status.retry)


def run_sweep(
    sweep: Sweep,
    out_dir: str | Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    threads_per_run: int | None = None,
    analysis: bool = True,
    progress: bool = True,
    force: bool = False,
) -> SweepResult:
    """Run every unfinished point of ``sweep`` under ``out_dir`` (see the module docstring).

    Args:
        executor: ``local`` (worker processes on this machine) or ``ray``.
        workers: local: concurrent worker processes (:func:`plan_local`). Ray without
            ``address``: the local Ray instance gets workers × cpus_per_run CPUs (default: all cores).
        address: Ray: the cluster to join (``HOST:PORT`` or ``ray://...``); None starts a local one.
        cpus_per_run, gpus_per_run: Ray: resources of each point's task (fractional GPUs let
            several small runs share one); torch gets ``threads_per_run`` or max(1, ⌊cpus_per_run⌋)
            threads. Local: ``cpus_per_run`` sets the default number of workers.
        threads_per_run: torch/OpenMP threads of each run (default: ``$OMP_NUM_THREADS``, else
            the cores shared out over the workers).
        analysis: also analyse each finished run.
        progress: the plan and the progress on stderr: a bar on a terminal, else one line per
            finished point.
        force: replace another sweep in ``out_dir`` (its run directories stay on disk).

    Raises:
        SweepError: ``out_dir`` is a run directory, holds another sweep (without ``force``) or
            another process is sweeping into it, or the Ray cluster at ``address`` does not
            answer (nothing is written into a run directory).
    """
    from ..rundir import RunBusyError

    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if (
        cpus_per_run <= 0
        or gpus_per_run < 0
        or (workers is not None and workers < 1)
        or (threads_per_run is not None and threads_per_run < 1)
    ):
        raise ValueError("need workers >= 1, threads_per_run >= 1, cpus_per_run > 0 and gpus_per_run >= 0")
    out_dir = Path(out_dir)
    found = folder_kind(out_dir)
    if found and found[0] == "run directory":
        raise SweepError(
            f"{out_dir} is a run directory (it holds {found[1]}), not a sweep folder; "
            f"give `eoslab sweep` an --out of its own (it writes a run directory per point under it)"
        )
    try:
        with folder_lock(out_dir, what="sweep folder"), _terminate_as_interrupt():
            return _run_bound_sweep(
                sweep,
                out_dir,
                executor,
                workers,
                address,
                cpus_per_run,
                gpus_per_run,
                threads_per_run,
                analysis,
                progress,
                force,
            )
    except RunBusyError as e:
        raise SweepError(str(e)) from None


def _bind_folder(sweep: Sweep, out_dir: Path, force: bool) -> str | None:
    """Check that ``out_dir`` holds no sweep, or this one (the same points); with ``force``
    replace another. Returns what was replaced, or None.
    """
    from ..store import read_parquet

    if not (out_dir / GRID_FILE).exists() and not (out_dir / SWEEP_FILE).exists():
        return None
    new = {p.run_id for p in sweep.points}
    try:
        old = read_parquet(out_dir / GRID_FILE)["run_id"].to_pylist()
    except (OSError, KeyError) as e:
        try:  # a broken grid table: the sweep config beside it still says which sweep this is
            old = [p.run_id for p in load_sweep(out_dir / SWEEP_FILE).points]
        except Exception:
            what = f"a sweep whose {GRID_FILE} and {SWEEP_FILE} are unreadable ({e})"
            old = None
    if old is not None and set(old) == new and len(old) == len(new):
        return None
    if old is not None:
        common = len(new & set(old))
        what = f"another sweep ({len(old)} points, {common} of them in this one)"
    if not force:
        raise SweepError(
            f"{out_dir} holds {what}; sweep into another --out, or add --force to replace its "
            f"{SWEEP_FILE} and {GRID_FILE} (its run directories stay on disk)"
        )
    kept = "" if old is None else f"; {common} of its runs are reused, {len(old) - common} stay in {RUNS_DIR}/ unlisted"
    return f"replaced {what} in {out_dir}{kept}"


def _run_bound_sweep(
    sweep: Sweep,
    out_dir: Path,
    executor: str,
    workers: int | None,
    address: str | None,
    cpus_per_run: float,
    gpus_per_run: float,
    threads_per_run: int | None,
    analysis: bool,
    progress: bool,
    force: bool,
) -> SweepResult:
    """:func:`run_sweep` holding the folder's lock."""
    from ..store import remove_leftovers, write_parquet, write_text

    remove_leftovers(out_dir, {SWEEP_FILE, GRID_FILE})
    replaced = _bind_folder(sweep, out_dir, force)
    if replaced:
        warn(replaced)
    runs = out_dir / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    write_text(sweep.text, out_dir / SWEEP_FILE)
    write_parquet(grid_table(sweep.points), out_dir / GRID_FILE)
    record_code(out_dir)
    for p in sweep.points:  # every point's run directory from now on: one found missing was deleted
        (runs / p.run_id).mkdir(exist_ok=True)

    statuses = {p.run_id: point_status(runs / p.run_id, analysis=analysis) for p in sweep.points}
    # largest subsets first: the longest runs start early, so no worker idles at the end
    todo = sorted(
        (p for p in sweep.points if not _final_without_work(statuses[p.run_id])), key=lambda p: -(p.config.data.n or 0)
    )
    skipped = len(sweep.points) - len(todo)
    if executor == "local":
        local = plan_local(sweep.points, workers=workers, threads_per_run=threads_per_run, cpus_per_run=cpus_per_run)
        plan = local.describe()
    else:
        threads = threads_per_run or max(1, int(cpus_per_run))
        plan = f"Ray tasks of {cpus_per_run:g} CPU, {gpus_per_run:g} GPU, {threads} thread{'s' * (threads != 1)} each"
    if progress:
        print(
            f"sweep {out_dir}: {len(todo)} of {len(sweep.points)} runs to do ({skipped} finished before) on {plan}",
            file=sys.stderr,
            flush=True,
        )
    with _SweepProgress(progress, len(sweep.points), skipped, statuses.values()) as bar:

        def finished(point: GridPoint, status: PointStatus) -> None:
            statuses[point.run_id] = status
            bar.finished(point, status)

        if executor == "local":
            _run_local(todo, runs, analysis, local, finished)
        else:
            _run_ray(todo, runs, analysis, address, workers, cpus_per_run, gpus_per_run, threads, finished)
    return SweepResult(out_dir, [statuses[p.run_id] for p in sweep.points], skipped, plan=plan, replaced=replaced)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While the sweep runs, SIGTERM and SIGHUP raise KeyboardInterrupt (as SIGINT does), so its
    cleanup runs (workers killed, a Ray instance it started shut down).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_local(
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
    code = "import sys; from eoslab.sweeps.executors import _worker_main; sys.exit(_worker_main())"
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
                            code,
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


def _run_ray(
    todo: list[GridPoint],
    runs: Path,
    analysis: bool,
    address: str | None,
    workers: int | None,
    cpus_per_run: float,
    gpus_per_run: float,
    threads: int,
    finished: Callable[[GridPoint, PointStatus], None],
) -> None:
    """Run the points as Ray tasks with ``cpus_per_run``/``gpus_per_run`` resources and
    ``threads`` threads each. Joins
    ``address`` (or the Ray instance this process is already connected to); otherwise starts a
    local instance and shuts it down at the end (:class:`_RayJanitor`). The sweep folder must be
    visible to every node.
    """
    import ray

    connected, janitor = False, None
    try:
        if not ray.is_initialized():
            if address:
                _join_ray(address)
            else:
                num_cpus = int(workers * cpus_per_run) if workers else _cores()
                janitor = _RayJanitor()
                ray.init(address="local", num_cpus=max(1, num_cpus), include_dashboard=False, log_to_driver=False)
            connected = True
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, _raise_interrupt)  # ray.init installed its own
        task = ray.remote(_point_from_toml).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run)
        refs = {}
        for point in todo:
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
        if connected:
            ray.shutdown()
        if janitor is not None:
            janitor.close()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _join_ray(address: str) -> None:
    """``ray.init(address)``, failing with :class:`SweepError` within :data:`RAY_CONNECT_TIMEOUT_S`
    when nothing answers there (ray.init itself would retry for ever).
    """
    import ray

    hostport = address.split("://", 1)[-1]
    if hostport != "auto":
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise SweepError(f"--address: expected HOST:PORT or ray://HOST:PORT, got {address!r}")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
        except OSError as e:
            raise SweepError(
                f"ray: no Ray cluster answers at {address} ({e.strerror or e}); check the address "
                f"(`ray status` on the head node prints it)"
            ) from None
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            ray.init(address=address, log_to_driver=False)
        except BaseException as e:  # handed to the caller's thread
            errors.append(e)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(RAY_CONNECT_TIMEOUT_S)
    if thread.is_alive():
        raise SweepError(
            f"ray: {address} did not answer as a Ray cluster within {RAY_CONNECT_TIMEOUT_S:g} s; check the "
            f"address (`ray status` on the head node prints it)"
        )
    if errors:
        raise SweepError(f"ray: cannot join {address}: {' '.join(str(errors[0]).split())}") from None


#: The watchdog of a Ray instance a sweep started: it records the sweep's descendants every
#: second and, once its stdin closes (the sweep ended or died), kills those still alive.
_JANITOR_CODE = r"""
import os, select, signal, sys, time
parent, me, seen = int(sys.argv[1]), os.getpid(), {}
def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), fields[19]
def record():
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid, start = stat(d)
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append((int(d), start))
    todo = [parent]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid != me:
                seen[pid] = start
                todo.append(pid)
while True:
    record()
    if select.select([sys.stdin], [], [], 1.0)[0] and not os.read(sys.stdin.fileno(), 1):
        break
for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
    alive = [p for p, s in seen.items() if os.path.exists(f"/proc/{p}") and stat(p)[1] == s]
    for pid in alive:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    deadline = time.monotonic() + wait
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if os.path.exists(f"/proc/{p}")]
"""


class _RayJanitor:
    """A watchdog process for a Ray instance this sweep starts (Linux): when the sweep ends, or
    dies even by SIGKILL, it kills every process the sweep started and left behind (Ray's GCS,
    raylet, agents and workers). Elsewhere it does nothing.
    """

    def __init__(self) -> None:
        self.proc = None
        if sys.platform.startswith("linux"):
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _JANITOR_CODE, str(os.getpid())],
                stdin=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C in the terminal does not reach it
            )

    def close(self) -> None:
        """Let it clean up now (after ``ray.shutdown()``) and wait for it."""
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait()


class _SweepProgress:
    """The progress of a sweep on stderr: a bar (points finished / total, counts by state) on a
    terminal, with failures printed above it; elsewhere (a log file, a pipe) one line per finished
    point.
    """

    def __init__(self, enabled: bool, total: int, skipped: int, initial: Any) -> None:
        from collections import Counter

        self.enabled, self.total, self.finished_count = enabled, total, skipped
        self.counts = Counter(s.state for s in initial if _final_without_work(s))
        self.start = time.monotonic()
        self.bar = None

    def __enter__(self) -> _SweepProgress:
        if self.enabled and sys.stderr.isatty():
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
        return ", ".join(f"{k} {state}" for state, k in sorted(self.counts.items())) or "0 done"

    def finished(self, point: GridPoint, status: PointStatus) -> None:
        self.counts[status.state] += 1
        self.finished_count += 1
        if not self.enabled:
            return
        if self.bar is None:
            reason = f": {status.reason}" if status.state != "done" and status.reason else ""
            print(
                f"sweep [{self.finished_count}/{self.total}] {status.state} {point.run_id} ({point.label()}){reason} "
                f"· {time.monotonic() - self.start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            return
        if status.state == "failed":
            from rich.markup import escape

            self.bar.console.print(
                f"[red]failed[/red] {point.run_id} ({escape(point.label())}): {escape(str(status.reason))}",
                highlight=False,
            )
        self.bar.update(self.task, advance=1, description=self._text())

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
