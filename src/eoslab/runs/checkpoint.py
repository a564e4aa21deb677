"""Writing a run's snapshots crash-safely, and finding where a killed run resumes (docs/rundir.md).

Every write is a :meth:`eoslab.rundir.RunDir.transaction` (state file, trajectory, parameter file
and status move into place in that order, their checksums recorded first; :class:`Writer`). A
state file holds everything needed to resume bit-identically: the integrator's state and the
trajectory rows before its step (tensors ``rows.<column>``). A resume starts from the newest step
u whose two snapshot files match their checksums (:func:`resume_point`); a corrupt newest snapshot
is skipped for the previous good one, and said so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from ..integrators import Integrator, StepReport
from ..models import Model
from ..rundir import STATUS_FILE, TRAJECTORY_FILE, CorruptFileError, RunDir
from ..store import json_bytes, parquet_bytes, parse_safetensors, safetensors_bytes
from .records import rows_from_table, status_dict, trajectory_table

_STATE_FILES_KEPT = 2
#: Prefix of the trajectory-row tensors in a state file.
_ROWS = "rows."
_FLOAT_COLUMNS = ("t", "loss", "accuracy", "dt", "grad_norm")
_INT_COLUMNS = ("step", "eig_iters", "hvps")


def _rows_to_tensors(rows: list[StepReport]) -> dict[str, torch.Tensor]:
    """Trajectory rows as flat tensors ``rows.<column>`` (eigenvalue lists concatenated, with
    their lengths in ``rows.eig_count``) for a state file.
    """
    out = {_ROWS + c: torch.tensor([getattr(r, c) for r in rows], dtype=torch.float64) for c in _FLOAT_COLUMNS}
    out.update({_ROWS + c: torch.tensor([getattr(r, c) for r in rows], dtype=torch.int64) for c in _INT_COLUMNS})
    out[_ROWS + "eig_converged"] = torch.tensor([r.converged for r in rows], dtype=torch.bool)
    out[_ROWS + "eig_count"] = torch.tensor([len(r.eigenvalues) for r in rows], dtype=torch.int64)
    out[_ROWS + "eigenvalues"] = torch.tensor([v for r in rows for v in r.eigenvalues], dtype=torch.float64)
    return out


def _rows_from_tensors(tensors: dict[str, torch.Tensor]) -> list[StepReport]:
    """Inverse of :func:`_rows_to_tensors`."""
    cols = {c: tensors[_ROWS + c].tolist() for c in (*_FLOAT_COLUMNS, *_INT_COLUMNS, "eig_converged", "eig_count")}
    eig, start, rows = tensors[_ROWS + "eigenvalues"].tolist(), 0, []
    for i, count in enumerate(cols["eig_count"]):
        rows.append(
            StepReport(
                **{c: cols[c][i] for c in (*_FLOAT_COLUMNS, *_INT_COLUMNS)},
                eigenvalues=eig[start : start + count],
                converged=cols["eig_converged"][i],
                final=cols["dt"][i] == 0.0,
            )
        )
        start += count
    return rows


class Writer:
    """Writes snapshots, trajectory and status of one run directory, each write one transaction
    in the crash-safe order (module docstring).
    """

    def __init__(self, run_dir: RunDir, model: Model, target: float, notes: list[str]) -> None:
        self.dir, self.model, self.target, self.notes = run_dir, model, target, notes

    def running(self, step: int, t: float, loss: float | None) -> dict[str, Any]:
        """A ``running`` status with the current notes."""
        return status_dict("running", None, step, t, loss, self.target, self.notes)

    def snapshot(
        self, integ: Integrator, rows: list[StepReport], elapsed_s: float, status: dict[str, Any], final: bool = False
    ) -> None:
        """State file (with ``rows``; the final one with ``status``), trajectory, parameter file and
        ``status``; state files older than the newest two are removed.
        """
        state = integ.state_dict()
        step, t = state["step"], state["t"]
        meta = {"step": str(step), "t": repr(t)}
        extra = {k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor) and k != "theta"}
        extra.update(_rows_to_tensors(rows))
        state_meta = {**meta, "elapsed_s": repr(elapsed_s)}
        if final:
            state_meta["status"] = json.dumps(status, sort_keys=True)
        kept = sorted({*self.dir.snapshot_steps("state"), step})[-_STATE_FILES_KEPT:]
        with self.dir.transaction() as tx:
            tx.write(self.dir.snapshot_name("state", step), safetensors_bytes(extra, state_meta))
            tx.write(TRAJECTORY_FILE, parquet_bytes(trajectory_table(rows)))
            tx.write(
                self.dir.snapshot_name("step", step), safetensors_bytes(self.model.to_state_dict(state["theta"]), meta)
            )
            tx.write(STATUS_FILE, json_bytes(status))
            for old in self.dir.snapshot_steps("state"):
                if old not in kept:
                    tx.remove(self.dir.snapshot_name("state", old))

    def finish(self, rows: list[StepReport], status: dict[str, Any]) -> None:
        """Trajectory and status (no snapshot)."""
        with self.dir.transaction() as tx:
            tx.write(TRAJECTORY_FILE, parquet_bytes(trajectory_table(rows)))
            tx.write(STATUS_FILE, json_bytes(status))

    def remove(self, names: list[str]) -> None:
        """Remove files (and their checksums)."""
        if names:
            with self.dir.transaction() as tx:
                for name in names:
                    tx.remove(name)


class NullWriter(Writer):
    """The writer of ranks other than 0 in a data-parallel run: rank 0 writes the run directory."""

    def snapshot(
        self, integ: Integrator, rows: list[StepReport], elapsed_s: float, status: dict[str, Any], final: bool = False
    ) -> None:
        """Nothing: rank 0 writes."""

    def finish(self, rows: list[StepReport], status: dict[str, Any]) -> None:
        """Nothing: rank 0 writes."""

    def remove(self, names: list[str]) -> None:
        """Nothing: rank 0 writes."""


@dataclass
class Resume:
    """The newest good snapshot: integrator state, the trajectory rows before it, the elapsed
    seconds, and (for the final snapshot of a finished run) the final row and status.
    """

    state: dict[str, Any]
    rows: list[StepReport]
    elapsed_s: float
    final_row: StepReport | None = None
    final_status: dict[str, Any] | None = None


def resume_point(run: RunDir, manifest: dict[str, Any], model: Model) -> tuple[Resume | None, list[str]]:
    """(the newest snapshot whose parameter and state files both verify, or None; what was
    skipped on the way, one line each).
    """
    skipped: list[str] = []
    states = set(run.snapshot_steps("state"))
    for step in reversed(run.snapshot_steps("step")):
        if step not in states:
            continue  # its state file was pruned: not a resume point
        try:
            params, _ = parse_safetensors(run.read_verified(run.snapshot_name("step", step), manifest, ""))
            extra, meta = parse_safetensors(run.read_verified(run.snapshot_name("state", step), manifest, ""))
            theta = model.from_state_dict(params)
            rows = _rows_from_tensors(extra) if _ROWS + "step" in extra else _legacy_rows(run, manifest)
        except CorruptFileError as e:
            skipped.append(f"{e.path.relative_to(run.path)} {e.detail}")
            continue
        except (ValueError, KeyError) as e:  # unparsable, or a snapshot of another model
            skipped.append(f"snapshot of step {step} unreadable ({e})")
            continue
        before = [r for r in rows if r.step < step]
        if [r.step for r in before] != list(range(step)):
            skipped.append(f"snapshot of step {step}: its trajectory rows are incomplete")
            continue
        final = [r for r in rows if r.step == step]
        state = {
            "step": step,
            "t": float(meta["t"]),
            "theta": theta,
            **{k: v for k, v in extra.items() if not k.startswith(_ROWS)},
        }
        status = json.loads(meta["status"]) if "status" in meta else None
        return Resume(state, before, float(meta.get("elapsed_s", "0")), final[0] if final else None, status), skipped
    return None, skipped


def _legacy_rows(run: RunDir, manifest: dict[str, Any]) -> list[StepReport]:
    """The rows of ``trajectory.parquet``, for state files written before they held the rows."""
    return rows_from_table(run.read_table(TRAJECTORY_FILE, manifest, ""))
