"""Training: integrate to a target loss, writing the run directory; resume a killed run (docs/rundir.md).

:func:`train` binds the run directory to the config and data (creating it, or checking that it
was created by the same ones), resumes from the newest good snapshot
(:mod:`eoslab.runs.checkpoint`) and steps the integrator until the loss reaches the target, a
limit ends the run or the loss or gradient stops being finite, writing snapshots every
``train.snapshot_every`` steps.

Crash safety: every write is a :meth:`eoslab.rundir.RunDir.transaction` (state file, trajectory,
parameter file and status move into place in that order, their checksums recorded first), and a
resume starts from the newest step u whose two snapshot files match their checksums, removes
every snapshot file after u (a corrupt one, or one of an abandoned trajectory), and continues.
Since the state is complete, the continued run is bit-identical to an uninterrupted one (same
machine, same thread count). A corrupt newest snapshot is skipped for the previous good one,
loudly (a warning on stderr and a note in ``status.json``); a finished run whose status,
trajectory or final snapshot is corrupt is rebuilt from its final state file (or by resuming).

Data-parallel runs (:mod:`eoslab.distributed`: ``eoslab train --nproc N`` or ``torchrun``): every
rank builds the same problem and keeps its shard of the training subset; rank 0 alone locks, checks
and writes the run directory and decides whether to resume, and sends its decision and resume
state to the others.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig, config_hash, load_config, to_dict, to_toml
from ..distributed import broadcast_object, is_main
from ..errors import RunConflictError
from ..integrators import ExponentialEuler, Integrator, StepReport, departure_note, loss_rises
from ..progress import ProgressBar
from ..provenance import code_identity
from ..rundir import (
    FINAL_STATES,
    SNAPSHOT_KINDS,
    STATUS_FILE,
    TRAJECTORY_FILE,
    CorruptFileError,
    RunDir,
    RunDirError,
    config_differences,
    describe_differences,
    folder_kind,
    warn,
)
from .checkpoint import NullWriter, Writer, resume_point
from .problem import Problem, build_problem, make_integrator
from .records import final_status, uncertified_note


def train(cfg: RunConfig, run_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Train to the target loss (or ``max_steps`` / ``max_time_s``), writing ``run_dir``.

    Holds the run directory's lock throughout (:class:`~eoslab.rundir.RunBusyError` at once if
    another process holds it). A directory created by the same config (and the same data)
    resumes from its newest good snapshot; a finished one returns its status as is, after
    checking its files (a corrupt status, trajectory or final snapshot is rebuilt, loudly). A
    directory created by a different config raises RunConflictError, one whose ``config.toml``
    or data changed since raises :class:`~eoslab.rundir.MismatchError`, both naming the fields.
    Nothing is written until the config has been checked (ConfigError names the field) and θ_0
    allocated; a sweep folder is refused (:class:`~eoslab.rundir.RunDirError`) untouched.

    In a data-parallel run (an initialised process group, :mod:`eoslab.distributed`) every rank
    calls it: rank 0 locks, checks and writes the directory (and shows the progress bar), the
    others follow its decisions (an error of rank 0's raises RunConflictError on the others).

    Returns:
        The final status dict (``state`` done, stopped or failed; a non-finite loss or gradient
        fails the run, with the reason, keeping what was written).
    """
    run = RunDir(run_dir)
    found = folder_kind(run.path)
    if found and found[0] == "sweep folder":
        raise RunDirError(
            f"{run.path} is a sweep folder (it holds {found[1]}), not a run directory; give `eoslab train` an "
            f"--out of its own (the sweep's runs are {run.path / 'runs'}/<run_id>)"
        )
    problem = build_problem(cfg)
    cfg = problem.config
    threads = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        integ = make_integrator(problem)  # before the run directory is created: θ_0 may not fit in memory
        with contextlib.ExitStack() as held:
            opened: Any = None
            if is_main():
                try:
                    held.enter_context(run.lock())
                    run.remove_leftovers()
                    manifest = _bind(run, problem)
                    opened = (manifest, *_finished_status(run, manifest))
                except Exception as e:
                    broadcast_object(str(e))
                    raise
            opened = broadcast_object(opened)
            if isinstance(opened, str):
                raise RunConflictError(f"rank 0: {opened}")
            manifest, status, note = opened
            if status is not None:
                return status
            return _train_loop(problem, integ, run, manifest, progress and is_main(), note)
    finally:
        torch.set_num_threads(threads)


def _bind(run: RunDir, problem: Problem) -> dict[str, Any]:
    """Create the run directory for ``problem``, or check that it was created by the same config
    and data (adopting one written before manifests existed). Returns the manifest.
    """
    cfg = problem.config
    config, digest = to_dict(cfg), config_hash(cfg, 64)
    manifest = run.manifest()
    if manifest is None and not run.config_file.exists():
        run.create(config, digest, problem.fingerprint(), to_toml(cfg))
        return _written_manifest(run)
    if manifest is None:  # written by an eoslab without manifests
        _check_same_config(run, config, to_dict(load_config(run.config_file)))
        run.adopt(config, digest, problem.fingerprint())
        _upgrade_legacy_status(run)
        return _written_manifest(run)
    _check_same_config(run, config, manifest["config"])
    if run.config_file.exists():
        run.check_config(to_dict(load_config(run.config_file)), manifest)
    else:  # killed between the manifest and config.toml when it was created: cfg is the manifest's
        run.write_config_text(to_toml(cfg))
    run.check_data(problem.fingerprint(), manifest)
    return manifest


def _record_code(run: RunDir, step: int, notes: list[str]) -> None:
    """Record the code that trains ``run`` from ``step`` (:meth:`~eoslab.rundir.RunDir.record_code`);
    when it differs from the code that trained the steps before, say so loudly (stderr and a note).
    """
    now = code_identity()
    before = run.record_code(now, step)
    if before is not None:
        note = (
            f"resumed at step {step} by {now}, but steps up to {step} were trained by {before}: "
            "this run mixes two versions of eoslab; train it again into a new folder for one"
        )
        _note(run, notes, note)


def _note(run: RunDir, notes: list[str], note: str) -> None:
    """Say ``note`` on stderr and add it to the run's ``notes`` unless it is there already (a run
    resumed twice from the same snapshot meets the same problem twice; it is one problem).
    """
    warn(f"{run.path}: {note}")
    if note not in notes:
        notes.append(note)


def _written_manifest(run: RunDir) -> dict[str, Any]:
    """The manifest :meth:`~eoslab.rundir.RunDir.create` or :meth:`~eoslab.rundir.RunDir.adopt` just wrote."""
    manifest = run.manifest()
    assert manifest is not None  # just written, under the run's lock
    return manifest


def _check_same_config(run: RunDir, config: dict[str, Any], created: dict[str, Any]) -> None:
    diff = config_differences(config, created, "this config")
    if diff:
        raise RunConflictError(
            f"{run.path} holds a run with a different config ({describe_differences(diff)}); "
            f"use another --out or remove it"
        )


def _upgrade_legacy_status(run: RunDir) -> None:
    """An older eoslab called a run ended by max_steps / max_time_s ``done``: call it ``stopped``."""
    status = run.read_status(run.manifest())
    if status and status.get("state") == "done" and str(status.get("reason", "")).startswith("max_"):
        status["state"] = "stopped"
        run.write_status(status)


def _finished_status(run: RunDir, manifest: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the status of a finished run whose status, trajectory and final snapshot all verify, else
    None; what is broken and will be rebuilt, else None).
    """
    status = run.read_status(manifest)
    if status is None:
        return None, (f"{STATUS_FILE} unreadable or corrupt: rebuilt" if run.status_file.exists() else None)
    if status.get("state") not in FINAL_STATES:
        return None, None
    names = [TRAJECTORY_FILE]
    if status["state"] != "failed":
        names += [run.snapshot_name(kind, status["step"]) for kind in SNAPSHOT_KINDS]
    for name in names:
        try:
            run.read_verified(name, manifest, "")
        except CorruptFileError as e:
            return None, f"{name} {e.detail}: the finished run was rebuilt from its snapshots"
    return status, None


def _train_loop(
    problem: Problem, integ: Integrator, run: RunDir, manifest: dict[str, Any], progress: bool, broken: str | None
) -> dict[str, Any]:
    cfg, target = problem.config.train, problem.target_loss
    main = is_main()
    notes = list((run.read_status(manifest) or {}).get("notes", [])) if main else []
    writer = (Writer if main else NullWriter)(run, problem.model, target, notes)
    resume, skipped = broadcast_object(resume_point(run, manifest, problem.model) if main else None)
    step0 = resume.state["step"] if resume else -1
    if main and (broken or skipped):
        where = f"resumed from step {step0}" if resume else "started again from step 0"
        _note(run, notes, "; ".join([*([broken] if broken else []), *(f"{s}: skipped, {where}" for s in skipped)]))
    # files after the resume point are corrupt, or of an abandoned trajectory
    writer.remove([run.snapshot_name(k, s) for k in SNAPSHOT_KINDS for s in run.snapshot_steps(k) if s > step0])
    if resume is not None and resume.final_status is not None:  # the final snapshot is intact
        old = resume.final_status.get("notes", [])
        merged = [*old, *(n for n in notes if n not in old)]
        status = {**resume.final_status, **({"notes": merged} if merged else {})}
        writer.finish([*resume.rows, resume.final_row], status)
        return status
    if main:
        _record_code(run, max(step0, 0), notes)

    elapsed0, rows = 0.0, []
    if resume is not None:
        integ.load_state_dict(resume.state)
        elapsed0, rows = resume.elapsed_s, resume.rows
        writer.finish(rows, writer.running(integ.step_count, integ.t, rows[-1].loss if rows else None))
    else:
        writer.snapshot(integ, rows, elapsed0, writer.running(0, integ.t, None))

    start = time.monotonic()
    limit = None
    flow = isinstance(integ, ExponentialEuler)
    warned = flow and bool(loss_rises([r.loss for r in rows]))
    with _TrainProgress(progress, target) as bar:
        while True:
            elapsed = elapsed0 + time.monotonic() - start
            if integ.step_count >= cfg.max_steps:
                limit = f"max_steps {cfg.max_steps} reached"
            elif cfg.max_time_s is not None and elapsed >= cfg.max_time_s:
                limit = f"max_time_s {cfg.max_time_s:g} reached"
            if cfg.max_time_s is not None:  # rank 0's clock decides for all ranks
                limit = broadcast_object(limit)
            report = integ.step(stop_below=math.inf if limit else target)
            rows.append(report)
            bar.update(report)
            if flow and not warned and main and len(rows) > 1 and loss_rises([rows[-2].loss, report.loss]):
                warned = True
                warn(
                    f"{run.path}: the loss rose at step {report.step} ({rows[-2].loss:.6g} → {report.loss:.6g}): "
                    "exponential Euler left the gradient flow; lower solver.eta_max or solver.step_c"
                )
            if report.final:
                break
            if integ.step_count % cfg.snapshot_every == 0:
                running = writer.running(integ.step_count, integ.t, report.loss)
                writer.snapshot(integ, rows, elapsed0 + time.monotonic() - start, running)

    departed = departure_note([r.loss for r in rows]) if flow and main else None
    for said in (departed, uncertified_note(rows) if main else None):
        if said:
            _note(run, notes, said)
    status = final_status(report, limit, target, notes, rows[0].loss)
    if status["state"] == "failed":
        writer.finish(rows, status)
    else:
        writer.snapshot(integ, rows, elapsed0 + time.monotonic() - start, status, final=True)
    return status


class _TrainProgress:
    """The training bar (:class:`~eoslab.progress.ProgressBar`): fraction of log(L₀/L) to
    log(L₀/target), with step, t, loss and the sharpness λ¹ (last measured).
    """

    def __init__(self, enabled: bool, target: float) -> None:
        self.bar = ProgressBar(total=1.0, enabled=enabled, label="train", unit=None, clock="elapsed")
        self.target = target
        self.loss0: float | None = None
        self.sharpness = math.nan

    def __enter__(self) -> _TrainProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def update(self, r: StepReport) -> None:
        if not self.bar.enabled:
            return
        if r.eigenvalues:
            self.sharpness = r.eigenvalues[0]
        if self.loss0 is None and r.loss > 0 and math.isfinite(r.loss):
            self.loss0 = r.loss
        frac = 0.0
        if self.loss0 and r.loss > 0 and math.isfinite(r.loss) and self.loss0 > self.target:
            frac = min(max(math.log(self.loss0 / r.loss) / math.log(self.loss0 / self.target), 0.0), 1.0)
        sharpness = f"  λ¹={self.sharpness:.4g}" if math.isfinite(self.sharpness) else ""
        self.bar.update(completed=frac, description=f"step {r.step}  t={r.t:.4g}  loss={r.loss:.4g}{sharpness}")
