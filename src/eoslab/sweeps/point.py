"""One grid point: its status read from its run directory, and the job that trains and analyses it.

A point is ``done`` when trained (and analysed, when analysis is wanted), ``running`` while a
process holds its run directory's lock, ``failed`` (with the reason; a failure from an exception
is retried on a rerun, a diverged run is not) or ``pending``.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError, RunConfig, load_config
from ..rundir import RunDir


@dataclass
class PointStatus:
    """Where one grid point stands, read from its run directory.

    Attributes:
        run_id: the point's run id.
        state: ``done`` (trained, and analysed when analysis is wanted), ``running`` (a process
            holds the run directory), ``failed`` or ``pending``.
        step, loss: the latest step and loss recorded in ``status.json`` (None before training).
        reason: why it failed (``failed``), or ``status.json``'s reason.
        detail: a short note (``analysis pending``, ``interrupted at step 40``, ...).
        retry: a failure that a rerun retries (an exception, not a diverged run).
    """

    run_id: str
    state: str
    step: int | None = None
    loss: float | None = None
    reason: str | None = None
    detail: str = ""
    retry: bool = False


def _analysis_complete(run: RunDir) -> bool:
    """Whether ``analysis.parquet`` holds every snapshot step that :func:`eoslab.analysis.analyze_run`
    analyses with the run's ``analysis`` settings (:meth:`eoslab.rundir.RunDir.analysed_steps`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not run.analysis_file.exists():
        return False
    try:
        a = load_config(run.config_file).analysis
        have = set(pq.read_table(run.analysis_file, columns=["step"])["step"].to_pylist())
    except (OSError, ConfigError, pa.ArrowInvalid):
        return False
    return set(run.analysed_steps(skip_before=a.skip_before, every=a.every)) <= have


def point_status(run_dir: str | Path, *, analysis: bool = True) -> PointStatus:
    """Where the grid point in ``run_dir`` stands (see :class:`PointStatus`)."""
    run = RunDir(run_dir)
    if run.path.is_dir() and run.lock_held():
        s = run.read_status() or {}
        return PointStatus(
            run.path.name,
            "running",
            s.get("step"),
            s.get("loss"),
            None,
            "analysing" if s.get("state") == "done" else "",
        )
    return _files_status(run, analysis)


def _files_status(run: RunDir, analysis: bool) -> PointStatus:
    """:func:`point_status` from the files alone (for the holder of the lock)."""
    status = run.read_status() if run.path.is_dir() else None
    run_id = run.path.name
    if status is None:
        return PointStatus(run_id, "pending")
    state, step, loss, reason = status.get("state"), status.get("step"), status.get("loss"), status.get("reason")
    if state == "failed":
        where = status.get("failed_in")
        return PointStatus(
            run_id, "failed", step, loss, reason, f"in {where}; retried on rerun" if where else "", retry=bool(where)
        )
    if state == "done":
        if not analysis or _analysis_complete(run):
            return PointStatus(run_id, "done", step, loss, reason)
        return PointStatus(run_id, "pending", step, loss, reason, "trained; analysis pending")
    return PointStatus(run_id, "pending", step, loss, reason, f"interrupted at step {step}; resumes")


def _record_failure(run: RunDir, stage: str, reason: str, train_status: dict | None) -> None:
    """Write a ``failed`` status.json for an exception in ``stage`` (train or analysis), keeping
    the last step/loss; ``failed_in`` marks it as retryable on a rerun.
    """
    from ..store import write_json

    s = train_status or {}
    status = {
        "state": "failed",
        "reason": reason,
        "step": s.get("step"),
        "t": s.get("t"),
        "loss": s.get("loss"),
        "failed_in": stage,
    }
    if stage == "analysis":
        status["train_status"] = train_status
    write_json(status, run.status_file)


def _clear_retryable_failure(run: RunDir) -> None:
    """Undo a failure recorded by :func:`_record_failure` so the rerun retries: a training failure
    loses its status.json (train resumes from the snapshots), an analysis failure gets the
    training status back.
    """
    from ..store import write_json

    status = run.read_status()
    if not status or status.get("state") != "failed" or "failed_in" not in status:
        return
    if status["failed_in"] == "analysis" and status.get("train_status"):
        write_json(status["train_status"], run.status_file)
    else:
        run.status_file.unlink(missing_ok=True)


def run_point(config: RunConfig, run_dir: str | Path, *, analysis: bool = True) -> PointStatus:
    """Train (:func:`eoslab.runs.train`) and analyse (:func:`eoslab.analysis.analyze_run`) one grid
    point in ``run_dir``, resuming what a previous attempt left.

    Never raises for a failing point: a diverging run is failed by train; an exception (a missing
    data file, an analysis error) is written to ``status.json`` as ``failed`` with its reason and
    ``failed_in`` (train or analysis), and its traceback goes to stderr. Returns the point's status.
    """
    run = RunDir(run_dir)
    with run.lock():
        if _files_status(run, analysis).state == "done":
            return _files_status(run, analysis)
        _clear_retryable_failure(run)
        try:
            from ..runs import train

            status = train(config, run.path, progress=False)
        except Exception as e:
            traceback.print_exc()
            _record_failure(run, "train", f"{type(e).__name__}: {e}", run.read_status())
        else:
            if status.get("state") == "done" and analysis:
                try:
                    from ..analysis import analyze_run

                    analyze_run(run.path, progress=False)
                except Exception as e:
                    traceback.print_exc()
                    _record_failure(run, "analysis", f"analysis: {type(e).__name__}: {e}", status)
        return _files_status(run, analysis)


def after_worker(run_dir: str | Path, analysis: bool, what: str) -> PointStatus:
    """The status of a point whose worker ended; if it ended without a verdict (killed, crashed),
    record the failure with ``what`` happened (retried on a rerun).
    """
    run = RunDir(run_dir)
    status = point_status(run.path, analysis=analysis)
    if status.state in ("done", "failed"):
        return status
    stage = "analysis" if (run.read_status() or {}).get("state") == "done" else "train"
    _record_failure(run, stage, what, run.read_status())
    return point_status(run.path, analysis=analysis)
