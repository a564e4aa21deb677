"""Runs: train to a target loss into a run directory, resume a killed run, open and analyse it.

A run directory (docs/rundir.md; the layout, the manifest and its checksums are :mod:`eoslab.rundir`):

``manifest.json``
    the config and the data fingerprint the run was created with, and the SHA-256 of every file
    written since; ``train`` refuses a ``config.toml``, a config or data that differ from it.
``config.toml``
    the resolved config (every default filled in, :func:`eoslab.config.resolve`).
``status.json``
    ``{"state", "reason", "step", "t", "loss", "target_loss"}`` (+ ``notes`` after a loud
    recovery): ``running`` with the step and t reached and the latest evaluated loss; when
    finished, those of the final θ and the verdict: ``done`` (the loss reached the target),
    ``stopped`` (``max_steps`` / ``max_time_s`` ended the run above the target; the reason says
    which, and the loss) or ``failed`` (a non-finite loss or gradient; the reason says which).
``trajectory.parquet``
    one row per step u: ``step, t, loss, accuracy, dt, grad_norm, eig_iters, hvps, eigenvalues``
    (list<double>) and ``eig_converged`` (:class:`eoslab.integrators.StepReport`; loss, t, … are
    those of θ_u at the start of the step). The last row of a finished run is the evaluation of
    the final θ, with dt = 0.
``snapshots/step_XXXXXXXX.safetensors``
    θ_u as named parameter tensors (``Model.to_state_dict``), metadata ``step`` and ``t`` (``repr``
    of the float, exact); every ``train.snapshot_every`` steps, at step 0 and at the end.
``snapshots/state_XXXXXXXX.safetensors``
    everything else needed to resume bit-identically: the warm-start eigenvectors (tensor
    ``eigenvectors``, (P, j), absent before the first eigensolve), the trajectory rows before u
    (tensors ``rows.<column>``; the eigenvalue lists flattened, with ``rows.eig_count``), metadata
    ``step``, ``t``, ``elapsed_s``; the final one also holds the final row and the final status
    (metadata ``status``). Random draws are a function of (seed, step)
    (:func:`eoslab.integrators.step_seed`), so there is no RNG state. Only the two newest state
    files are kept (at the paper's size one is ≈ 230 MB).

The modules, by concept:

* :mod:`.problem` — what a config describes: data subset, model, criterion, L̃, the integrator;
* :mod:`.records` — the trajectory rows as a table and the status object;
* :mod:`.checkpoint` — crash-safe snapshot writes and the resume point of a killed run;
* :mod:`.training` — :func:`train` (binding the run directory, the loop, crash safety,
  data-parallel runs);
* :mod:`.run` — :func:`load_run`, a run directory opened for analysis;
* :mod:`.analyze` — :func:`analyze_run`, the analysis of a run's snapshots into
  ``analysis.parquet`` (the numerics are :mod:`eoslab.analysis`, which writes no files);
* :mod:`.compact` — :func:`compact_run`, dropping the snapshots a run's analysis no longer needs.
"""

from ..errors import RunConflictError
from .analyze import analyze_run
from .compact import Compacted, compact_run
from .problem import Problem, build_problem, make_integrator, memory_message, out_of_memory, problem_from_dataset
from .records import DIVERGED_FACTOR, final_status, status_dict, trajectory_table, uncertified_note
from .run import Run, load_run
from .training import train

__all__ = [
    "DIVERGED_FACTOR",
    "Compacted",
    "Problem",
    "Run",
    "RunConflictError",
    "analyze_run",
    "build_problem",
    "compact_run",
    "final_status",
    "load_run",
    "make_integrator",
    "memory_message",
    "out_of_memory",
    "problem_from_dataset",
    "status_dict",
    "train",
    "trajectory_table",
    "uncertified_note",
]
