"""Run a sweep's unfinished points on local worker processes or on a Ray cluster.

A sweep folder is bound to its sweep: :func:`run_sweep` holds the folder's lock (``DIR/.lock``)
while it runs, so a second sweep into the same folder fails at once, and refuses a sweep whose
points differ from those in the folder's ``grid.parquet`` unless ``force`` (then it says what it
replaced; the runs on disk stay). SIGTERM and SIGHUP interrupt a sweep like Ctrl-C, so its cleanup
runs: local workers are killed, and a Ray instance the sweep started is shut down. The executors,
one concept each:

* :mod:`eoslab.sweeps.local_executor` -- worker processes on this machine, by the plan
  (:func:`~eoslab.sweeps.local_executor.plan_local`) printed when a sweep starts, e.g.
  ``2 workers × 1 thread``;
* :mod:`eoslab.sweeps.ray_executor` -- Ray tasks, on a cluster the sweep joins or a local
  instance it starts (watched by :mod:`eoslab.janitor`);
* :mod:`eoslab.sweeps.worker` -- the job of either: one point, with its threads; what it ran with
  and how its point ended go to ``RUN_DIR/sweep.log``.

The sweep prints one line per finished point when stderr is not a terminal (a progress bar when
it is).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import SweepError
from ..provenance import record_code
from ..rundir import RunBusyError, folder_kind, folder_lock, warn
from ..store import read_parquet, remove_leftovers, write_parquet, write_text
from ._progress import SweepProgress
from ._signals import terminate_as_interrupt
from .grid import GRID_FILE, RUNS_DIR, SWEEP_FILE, GridPoint, Sweep, grid_table, load_sweep
from .local_executor import plan_local, run_local
from .point import PointStatus, final_without_work, point_status
from .ray_executor import run_ray


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


@dataclass(frozen=True)
class _Executor:
    """Where a sweep's points run: :func:`run_sweep`'s ``executor`` (as ``kind``) and its settings,
    checked when made.

    Raises:
        ValueError: an executor other than ``local`` or ``ray``, workers or threads_per_run < 1,
            cpus_per_run <= 0 or gpus_per_run < 0.
    """

    kind: str
    workers: int | None
    address: str | None
    cpus_per_run: float
    gpus_per_run: float
    threads_per_run: int | None

    def __post_init__(self) -> None:
        if self.kind not in ("local", "ray"):
            raise ValueError(f"executor must be 'local' or 'ray', got {self.kind!r}")
        if (
            self.cpus_per_run <= 0
            or self.gpus_per_run < 0
            or (self.workers is not None and self.workers < 1)
            or (self.threads_per_run is not None and self.threads_per_run < 1)
        ):
            raise ValueError("need workers >= 1, threads_per_run >= 1, cpus_per_run > 0 and gpus_per_run >= 0")


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
    how = _Executor(executor, workers, address, cpus_per_run, gpus_per_run, threads_per_run)
    out_dir = Path(out_dir)
    found = folder_kind(out_dir)
    if found and found[0] == "run directory":
        raise SweepError(
            f"{out_dir} is a run directory (it holds {found[1]}), not a sweep folder; "
            f"give `eoslab sweep` an --out of its own (it writes a run directory per point under it)"
        )
    try:
        with folder_lock(out_dir, what="sweep folder"), terminate_as_interrupt():
            return _run_bound_sweep(sweep, out_dir, how, analysis=analysis, progress=progress, force=force)
    except RunBusyError as e:
        raise SweepError(str(e)) from None


def _bind_folder(sweep: Sweep, out_dir: Path, force: bool) -> str | None:
    """Check that ``out_dir`` holds no sweep, or this one (the same points); with ``force``
    replace another. Returns what was replaced, or None.
    """
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
    sweep: Sweep, out_dir: Path, how: _Executor, *, analysis: bool, progress: bool, force: bool
) -> SweepResult:
    """:func:`run_sweep` holding the folder's lock."""
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
        (p for p in sweep.points if not final_without_work(statuses[p.run_id])), key=lambda p: -(p.config.data.n or 0)
    )
    skipped = len(sweep.points) - len(todo)
    if how.kind == "local":
        local = plan_local(
            sweep.points, workers=how.workers, threads_per_run=how.threads_per_run, cpus_per_run=how.cpus_per_run
        )
        plan = local.describe()
    else:
        threads = how.threads_per_run or max(1, int(how.cpus_per_run))
        each = f"{how.cpus_per_run:g} CPU, {how.gpus_per_run:g} GPU, {threads} thread{'s' * (threads != 1)} each"
        plan = f"Ray tasks of {each}"
    if progress:
        print(
            f"sweep {out_dir}: {len(todo)} of {len(sweep.points)} runs to do ({skipped} finished before) on {plan}",
            file=sys.stderr,
            flush=True,
        )
    with SweepProgress(progress, len(sweep.points), skipped, statuses.values()) as bar:

        def finished(point: GridPoint, status: PointStatus) -> None:
            statuses[point.run_id] = status
            bar.finished(point, status)

        if how.kind == "local":
            run_local(todo, runs, analysis, local, finished)
        else:
            run_ray(
                todo, runs, analysis, how.address, how.workers, how.cpus_per_run, how.gpus_per_run, threads, finished
            )
    return SweepResult(out_dir, [statuses[p.run_id] for p in sweep.points], skipped, plan=plan, replaced=replaced)
