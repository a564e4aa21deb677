"""One grid point: its status read (and verified) from its run directory, and the job that trains
and analyses it.

A point is ``done`` when its run reached the target loss (and is analysed, when analysis is
wanted), ``stopped`` when ``max_steps`` / ``max_time_s`` ended it above the target (analysed
likewise), ``running`` while a process holds its run directory's lock, ``failed`` (with the
reason; a failure from an exception is retried on a rerun, a diverged run or a run directory
whose ``config.toml`` no longer matches its manifest is not), ``pending`` (with what a rerun
will do: resume, rebuild a corrupt table, analyse) or ``missing`` (its run directory, which
the sweep creates for every point when it starts, does not exist: deleted, or a sweep folder
of an older eoslab, which created run directories only as it trained them; a rerun trains it).
:func:`collect <eoslab.sweeps.collect>` includes only ``done`` points unless told to include
``stopped`` ones (:func:`include_in_collect`).
"""

from __future__ import annotations

import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..config import ConfigError, RunConfig, load_config, to_dict
from ..rundir import (
    ANALYSIS_FILE,
    ANALYSIS_SCHEMA,
    FINAL_STATES,
    STATUS_FILE,
    TRAINED_STATES,
    TRAJECTORY_FILE,
    CorruptFileError,
    RunDir,
    RunDirError,
    code_sittings,
)
from ..runs import analyze_run, train
from .grid import GRID_FILE, RUNS_DIR

#: A run id: :func:`eoslab.config.config_hash` of the point's config (12 hex digits).
_RUN_ID = re.compile(r"[0-9a-f]{12}")


@dataclass
class PointStatus:
    """Where one grid point stands, read from its run directory.

    Attributes:
        run_id: the point's run id.
        state: ``done`` (reached its target; analysed when analysis is wanted), ``stopped``
            (a step or time limit ended it above the target; analysed likewise), ``running``
            (a process holds the run directory), ``failed``, ``pending`` or ``missing`` (the
            run directory was deleted).
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


def point_dir(sweep_dir: str | Path, run_id: str) -> Path:
    """``DIR/runs/<run_id>``; a run id that is not 12 hex digits (one that could leave the sweep
    folder, such as ``../../victim``) raises :class:`~eoslab.rundir.RunDirError`.
    """
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise RunDirError(
            f"{Path(sweep_dir) / GRID_FILE}: run_id {run_id!r} is not a run id (12 hex digits), so the table was "
            f"altered; rewrite it with `eoslab sweep SWEEP.toml --out {sweep_dir} --force`"
        )
    return Path(sweep_dir) / RUNS_DIR / run_id


def exclusion_reason(status: PointStatus, include_stopped: bool = False) -> str | None:
    """Why :func:`eoslab.sweeps.collect` leaves a point out, or None when it includes it (``done``
    points; ``stopped`` ones too with ``include_stopped``).
    """
    if status.state == "done" or (include_stopped and status.state == "stopped"):
        return None
    if status.state == "stopped":
        return f"stopped above its target loss ({status.reason}); --include-stopped includes it"
    if status.state == "failed":
        return f"failed: {status.reason}"
    if status.state == "running":
        return "still running"
    return status.state + (f" ({status.detail})" if status.detail else "")


def final_without_work(status: PointStatus) -> bool:
    """Done or stopped, or failed for good (a diverged run, files that do not verify), which a
    rerun would not change.
    """
    return status.state in TRAINED_STATES or (status.state == "failed" and not status.retry)


def include_in_collect(status: PointStatus, include_stopped: bool = False) -> bool:
    """Whether :func:`eoslab.sweeps.collect` includes the point (:func:`exclusion_reason`)."""
    return exclusion_reason(status, include_stopped) is None


def analysis_table(run_dir: str | Path) -> pa.Table:
    """The run's ``analysis.parquet``, checked against its manifest (:class:`~eoslab.rundir.CorruptFileError`
    if it does not verify).
    """
    run = RunDir(run_dir)
    fix = "rerun `eoslab sweep` (or `eoslab analyze` on the run) to recompute it"
    return run.read_table(ANALYSIS_FILE, run.manifest(), fix).cast(ANALYSIS_SCHEMA)


#: The metrics of :func:`trajectory_rows`, by the ``trajectory.parquet`` column they come from.
TRAJECTORY_METRICS = {"trajectory_loss": "loss", "trajectory_sharpness_H": "eigenvalues"}


def trajectory_rows(run_dir: str | Path) -> pa.Table:
    """The run's ``trajectory.parquet`` (checked against its manifest) as rows of ``analysis.parquet``'s
    schema, ``layer`` null: ``trajectory_loss`` (the loss at every step) and ``trajectory_sharpness_H``
    (λ¹(H), the first of ``eigenvalues``, on every step that computed eigenvalues: each step of an
    exponential Euler run, every ``solver.measure_sharpness_every``-th of a GD run; Eq. 1's λ¹).
    """
    run = RunDir(run_dir)
    fix = "rerun `eoslab sweep` (or `eoslab train` on the run) to rebuild it"
    traj = run.read_table(TRAJECTORY_FILE, run.manifest(), fix)
    measured = traj.filter(pc.greater(pc.fill_null(pc.list_value_length(traj["eigenvalues"]), 0), 0))
    parts = []
    for metric, rows, value in (
        ("trajectory_loss", traj, traj["loss"]),
        ("trajectory_sharpness_H", measured, pc.list_element(measured["eigenvalues"], 0)),
    ):
        k = rows.num_rows
        columns = [rows["step"], rows["t"], pa.repeat(metric, k), pa.nulls(k, pa.int64()), value]
        parts.append(pa.table(columns, names=ANALYSIS_SCHEMA.names).cast(ANALYSIS_SCHEMA))
    return pa.concat_tables(parts)


def _analysis_complete(run: RunDir, manifest: dict) -> bool | None:
    """Whether the verified ``analysis.parquet`` holds every snapshot step that
    :func:`eoslab.runs.analyze_run` analyses with the run's ``analysis`` settings; None when
    the file does not verify.
    """
    if not run.analysis_file.exists():
        return False
    try:
        a = load_config(run.config_file).analysis
        have = set(run.read_table(ANALYSIS_FILE, manifest, "")["step"].to_pylist())
    except CorruptFileError:
        return None
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
            "analysing" if s.get("state") in TRAINED_STATES else "",
        )
    return _files_status(run, analysis)


def _files_status(run: RunDir, analysis: bool) -> PointStatus:
    """:func:`point_status` from the files alone (for the holder of the lock)."""
    run_id = run.path.name
    if not run.path.is_dir():  # the sweep created it when it started
        return PointStatus(run_id, "missing", detail=f"{run.path} does not exist; a rerun trains it")
    try:
        manifest = run.manifest()
        if manifest is not None and run.config_file.exists():
            run.check_config(to_dict(load_config(run.config_file)), manifest)
    except (RunDirError, ConfigError) as e:
        return PointStatus(run_id, "failed", reason=str(e), detail="its files do not verify; restore them")
    status = run.read_status(manifest)
    if status is None:
        broken = f"{STATUS_FILE} unreadable or corrupt; rebuilt on rerun" if run.status_file.exists() else ""
        return PointStatus(run_id, "pending", detail=broken)
    state, step, loss, reason = status.get("state"), status.get("step"), status.get("loss"), status.get("reason")
    if state == "failed":
        where = status.get("failed_in")
        return PointStatus(
            run_id, "failed", step, loss, reason, f"in {where}; retried on rerun" if where else "", retry=bool(where)
        )
    if manifest is None:
        return PointStatus(run_id, "pending", step, loss, reason, "written by an older eoslab; verified on rerun")
    if state in TRAINED_STATES:
        try:
            run.read_verified(TRAJECTORY_FILE, manifest, "")
        except CorruptFileError as e:
            return PointStatus(run_id, "pending", step, loss, reason, f"{TRAJECTORY_FILE} {e.detail}; rebuilt on rerun")
        complete = _analysis_complete(run, manifest) if analysis else True
        if complete:
            return PointStatus(run_id, state, step, loss, reason, _mixed_code(manifest))
        what = f"{ANALYSIS_FILE} corrupt; recomputed on rerun" if complete is None else "trained; analysis pending"
        return PointStatus(run_id, "pending", step, loss, reason, what)
    return PointStatus(run_id, "pending", step, loss, reason, f"interrupted at step {step}; resumes")


def _mixed_code(manifest: dict) -> str:
    """``trained by 2 versions of eoslab (eoslab show)`` when more than one code trained the run
    (the manifest's ``code``, docs/rundir.md), else empty.
    """
    sittings = code_sittings(manifest)
    versions = len({code for _, code in sittings})
    return f"trained by {versions} versions of eoslab (eoslab show)" if len(sittings) > 1 else ""


def _record_failure(run: RunDir, stage: str, reason: str, train_status: dict | None) -> None:
    """Write a ``failed`` status.json for an exception in ``stage`` (train or analysis), keeping
    the last step/loss; ``failed_in`` marks it as retryable on a rerun.
    """
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
    try:
        run.write_status(status)
    except (OSError, RunDirError) as e:  # a full disk, a broken manifest: say so, keep going
        print(f"eoslab: cannot record the failure of {run.path}: {e}", file=sys.stderr)


def _clear_retryable_failure(run: RunDir) -> None:
    """Undo a failure recorded by :func:`_record_failure` so the rerun retries: a training failure
    loses its status.json (train resumes from the snapshots), an analysis failure gets the
    training status back.
    """
    status = run.read_status()
    if not status or status.get("state") != "failed" or "failed_in" not in status:
        return
    if status["failed_in"] == "analysis" and status.get("train_status"):
        run.write_status(status["train_status"])
    else:
        with run.transaction() as tx:
            tx.remove(STATUS_FILE)


def run_point(config: RunConfig, run_dir: str | Path, *, analysis: bool = True) -> PointStatus:
    """Train (:func:`eoslab.runs.train`) and analyse (:func:`eoslab.runs.analyze_run`) one grid
    point in ``run_dir``, resuming what a previous attempt left (and rebuilding what does not verify).

    Never raises for a failing point: a diverging run is failed by train; an exception (a missing
    data file, an analysis error, a run directory that does not verify) is written to
    ``status.json`` as ``failed`` with its reason and ``failed_in`` (train or analysis), and its
    traceback goes to stderr. Returns the point's status.
    """
    run = RunDir(run_dir)
    with run.lock(wait=True):
        status = _files_status(run, analysis)
        if status.state in TRAINED_STATES:
            return status
        _clear_retryable_failure(run)
        try:
            trained = train(config, run.path, progress=False)
        except Exception as e:
            traceback.print_exc()
            _record_failure(run, "train", f"{type(e).__name__}: {e}", run.read_status())
        else:
            if trained.get("state") in TRAINED_STATES and analysis:
                try:
                    analyze_run(run.path, progress=False)
                except Exception as e:
                    traceback.print_exc()
                    _record_failure(run, "analysis", f"analysis: {type(e).__name__}: {e}", trained)
        return _files_status(run, analysis)


def after_worker(run_dir: str | Path, analysis: bool, what: str) -> PointStatus:
    """The status of a point whose worker ended; if it ended without a verdict (killed, crashed),
    record the failure with ``what`` happened (retried on a rerun).
    """
    run = RunDir(run_dir)
    status = point_status(run.path, analysis=analysis)
    if status.state in FINAL_STATES:
        return status
    stage = "analysis" if (run.read_status() or {}).get("state") in TRAINED_STATES else "train"
    _record_failure(run, stage, what, run.read_status())
    return point_status(run.path, analysis=analysis)
