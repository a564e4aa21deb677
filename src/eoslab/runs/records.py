"""What a run records: its trajectory rows as a table, and its status (docs/rundir.md).

``trajectory.parquet`` holds one :class:`~eoslab.integrators.StepReport` per step
(:func:`trajectory_table`, :func:`rows_from_table`); ``status.json`` holds the object of
:func:`status_dict`, whose verdict on a finished run is :func:`final_status`. The tracker
(:mod:`eoslab.tracker`) writes the same records.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from ..integrators import StepReport
from ..rundir import TRAJECTORY_SCHEMA


def steps_text(steps: list[int]) -> str:
    """``step 10``, ``steps 10, 20, 30`` or ``12 steps, 10 to 120``."""
    if len(steps) == 1:
        return f"step {steps[0]}"
    if len(steps) <= 3:
        return f"steps {', '.join(map(str, steps))}"
    return f"{len(steps)} steps, {steps[0]} to {steps[-1]}"


def uncertified_note(rows: list[StepReport]) -> str | None:
    """What a trajectory says about the steps whose eigensolve stopped before its tolerance
    (``eig_converged`` false; None when there are none): their eigenvalues are the solver's
    estimates, and so are an exponential Euler step's Δt and direction, which are built on them.
    """
    measured = [r for r in rows if r.eigenvalues]
    steps = [r.step for r in measured if not r.converged]
    if not steps:
        return None
    return (
        f"the eigensolve stopped before its tolerance at {len(steps)} of {len(measured)} measured steps "
        f"({steps_text(steps)}): "
        "their eigenvalues (and an exponential Euler step's Δt and direction) are estimates; "
        "more eigensolver iterations (solver.eig_max_iters) would certify them"
    )


def trajectory_table(rows: list[StepReport]) -> pa.Table:
    """The rows as a table of :data:`~eoslab.rundir.TRAJECTORY_SCHEMA`."""
    cols = [f.name for f in TRAJECTORY_SCHEMA]
    data = {c: [getattr(r, "converged" if c == "eig_converged" else c) for r in rows] for c in cols}
    return pa.table(data, schema=TRAJECTORY_SCHEMA)


def rows_from_table(table: pa.Table) -> list[StepReport]:
    """Inverse of :func:`trajectory_table`."""
    return [
        StepReport(
            step=r["step"],
            t=r["t"],
            loss=r["loss"],
            accuracy=r["accuracy"],
            dt=r["dt"],
            grad_norm=r["grad_norm"],
            eigenvalues=list(r["eigenvalues"]),
            eig_iters=r["eig_iters"],
            hvps=r["hvps"],
            converged=r["eig_converged"],
            final=r["dt"] == 0.0,
        )
        for r in table.to_pylist()
    ]


def status_dict(
    state: str, reason: str | None, step: int, t: float, loss: float | None, target: float, notes: list[str]
) -> dict[str, Any]:
    """The ``status.json`` object (docs/rundir.md): state, reason, step, t, loss, target loss (+ notes)."""
    status: dict[str, Any] = {
        "state": state,
        "reason": reason,
        "step": step,
        "t": t,
        "loss": loss,
        "target_loss": target,
    }
    if notes:
        status["notes"] = list(notes)
    return status


#: A run that a limit ended with a loss above this many times its initial loss has diverged.
DIVERGED_FACTOR = 1e3


def final_status(
    report: StepReport, limit: str | None, target: float, notes: list[str], initial_loss: float
) -> dict[str, Any]:
    """The verdict on a run whose last step was ``report``: ``failed`` (non-finite loss or
    gradient, or diverged: ``limit`` ended it with the loss above :data:`DIVERGED_FACTOR` × the
    ``initial_loss``), ``done`` (loss ≤ target) or ``stopped`` (``limit`` ended it above the target).
    """
    if not math.isfinite(report.loss) or not math.isfinite(report.grad_norm):
        what, value = ("loss", report.loss) if not math.isfinite(report.loss) else ("gradient norm", report.grad_norm)
        state, reason = "failed", f"non-finite {what} ({value}) at step {report.step}"
    elif report.loss > DIVERGED_FACTOR * initial_loss:
        state, reason = (
            "failed",
            f"diverged: loss {report.loss:.3g} at step {report.step}, {report.loss / initial_loss:.3g} times "
            f"the initial loss {initial_loss:.4g} ({limit}); lower the step size",
        )
    elif report.loss <= target:
        state, reason = "done", f"target loss {target:g} reached"
    else:
        state, reason = "stopped", f"{limit} at loss {report.loss:.6g}, above the target {target:g}"
    return status_dict(state, reason, report.step, report.t, report.loss, target, notes)
