"""Training runs: integrate to a target loss, write the run directory, resume a killed run.

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
import hashlib
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from .config import ConfigError, RunConfig, config_hash, load_config, resolve, to_dict, to_toml, torch_device
from .criteria import make_criterion
from .curvature import FullBatchLoss
from .data import Dataset, load_dataset
from .data.stored import STORED, read_stored
from .data.subsets import draw_subset
from .distributed import broadcast_object, is_main, rank_device, shard_slice, world
from .errors import RunConflictError
from .integrators import ExponentialEuler, GradientDescent, Integrator, StepReport, departure_note, loss_rises
from .models import Model, ModelError, make_model
from .rundir import (
    DATA_FILE,
    FINAL_STATES,
    SNAPSHOT_KINDS,
    STATUS_FILE,
    TRAJECTORY_FILE,
    TRAJECTORY_SCHEMA,
    CorruptFileError,
    RunDir,
    RunDirError,
    config_differences,
    describe_differences,
    folder_kind,
    warn,
)
from .store import json_bytes, parquet_bytes, parse_safetensors, safetensors_bytes, to_frame

_STATE_FILES_KEPT = 2
#: Prefix of the trajectory-row tensors in a state file.
_ROWS = "rows."


# ------------------------------------------------------------------------------ problem
@dataclass
class Problem:
    """What a config describes: the training subset, the model, the criterion and L̃ over the subset.

    Attributes:
        config: the resolved config (k = n_L and the target loss filled in).
        dataset: the training subset the run trains on (all of it, on every rank).
        model: the model of ``model.kind`` (:func:`eoslab.models.make_model`).
        loss: the full-batch loss L̃ on ``dataset`` (docs/math.md §2); in a data-parallel run it
            holds this rank's shard (:func:`eoslab.distributed.shard_slice`) and sums over ranks.
    """

    config: RunConfig
    dataset: Dataset
    model: Model
    loss: FullBatchLoss

    def fingerprint(self) -> dict[str, Any]:
        """The data fingerprint recorded in the run's manifest (:mod:`eoslab.rundir`): dataset,
        sizes, the SHA-256 of the subset's indices (None for a whole split) and the SHA-256 of the
        training inputs X (float64, row-major) followed by the labels y (int64).
        """
        d = self.dataset
        h = hashlib.sha256()
        h.update(d.X.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
        h.update(d.y.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
        return {
            "dataset": d.name,
            "num_samples": len(d),
            "input_dim": d.input_dim,
            "num_classes": d.num_classes,
            "subset_indices_sha256": d.meta.get("subset", {}).get("indices_sha256"),
            "sha256": h.hexdigest(),
        }


def build_problem(cfg: RunConfig, run_dir: str | Path | None = None) -> Problem:
    """Dataset subset, model, criterion and full-batch loss of a config (train and load_run).

    ``run_dir``: the run directory, where a run of ``data.name = "stored"`` (a
    :class:`~eoslab.tracker.Tracker`'s) keeps its data (:mod:`eoslab.data.stored`).

    Raises ConfigError naming the field when a value only turns out wrong here (an unknown
    dataset or loader option, a subset larger than the data, a model that cannot be built, k ≥ P,
    fewer samples than data-parallel processes, data or a model that do not fit in memory).
    """
    d = cfg.data
    if d.name == STORED:
        if run_dir is None or not (Path(run_dir) / DATA_FILE).is_file():
            where = "a run directory without it" if run_dir is not None else "no run directory"
            raise ConfigError(
                f'data.name: "{STORED}" data live in the {DATA_FILE} of a tracker\'s run directory, got {where}'
            )
        try:
            dataset = read_stored((Path(run_dir) / DATA_FILE).read_bytes(), Path(run_dir) / DATA_FILE)
        except ValueError as e:
            raise ConfigError(f"data.name: {e}") from None
        return problem_from_dataset(cfg, dataset)
    with _allocating("data.options", f"the {d.name} {d.split} data"):
        try:
            dataset = load_dataset(d.name, d.split, data_root=d.data_root, **d.options)
        except TypeError as e:
            raise ConfigError(f"data.options: {e}") from None
        except ValueError as e:
            field = "data.name" if "unknown dataset" in str(e) else "data.options"
            raise ConfigError(f"{field}: {e}") from None
    return problem_from_dataset(cfg, dataset)


def problem_from_dataset(cfg: RunConfig, dataset: Dataset) -> Problem:
    """The rest of :func:`build_problem` once the split is loaded: standardise and draw the subset
    as the config says, then build the model, the criterion and L̃.
    """
    d = cfg.data
    if d.standardize:  # statistics of the whole split, so every subset size sees the same inputs
        dataset = dataset.standardized()
    if d.n is not None:
        if d.n > len(dataset):
            raise ConfigError(f"data.n: the {d.name} {d.split} split has {len(dataset)} samples, got n = {d.n}")
        dataset = draw_subset(dataset, d.n, d.subset_seed, nested=d.nested)
    cfg = resolve(cfg, num_outputs=dataset.num_classes)
    with _allocating(_size_field(cfg), "the model"):
        return _model_and_loss(cfg, dataset)


def _model_and_loss(cfg: RunConfig, dataset: Dataset) -> Problem:
    """The rest of :func:`build_problem`: the model, the criterion and L̃ over this rank's shard."""
    m = cfg.model
    try:
        model = make_model(
            m.kind,
            input_shape=dataset.input_shape,
            num_classes=dataset.num_classes,
            depth=m.depth,
            width=m.width,
            init=m.init,
            gain=m.gain,
            options=m.options,
            groups=m.groups,
            dtype=getattr(torch, m.dtype),
            device=rank_device(torch_device(cfg)),
        )
    except ModelError as e:
        raise ConfigError(f"{e.field}: {e}") from None
    if cfg.solver.method == "exp_euler" and cfg.solver.k + 1 > model.num_params:
        raise ConfigError(f"solver.k: must be < the number of parameters {model.num_params}, got {cfg.solver.k}")
    criterion_options = {"reduction": cfg.criterion.mse_reduction} if cfg.criterion.name == "mse" else {}
    criterion = make_criterion(cfg.criterion.name, **criterion_options)
    rank, size = world()
    if len(dataset) < size:
        raise ConfigError(f"data.n: {len(dataset)} samples cannot be split over {size} data-parallel processes")
    shard = shard_slice(len(dataset), rank, size)
    loss = FullBatchLoss(model, criterion, dataset.X[shard], dataset.y[shard], chunk_size=cfg.train.chunk_size)
    return Problem(cfg, dataset, model, loss)


def out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation that failed (torch's CPU allocator raises a RuntimeError)."""
    return isinstance(e, MemoryError | torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e)
    )


def memory_message(e: BaseException) -> str:
    """What failed to allocate, in a few words (``7.2e+03 GiB requested``, else torch's first line)."""
    match = re.search(r"allocate (\d+) bytes", str(e))
    if match:
        return f"{int(match.group(1)) / 2**30:.3g} GiB requested"
    return (str(e).splitlines() or [type(e).__name__])[0]


def _size_field(cfg: RunConfig) -> str:
    """The config field that sizes the model: ``model.width`` for the MLP, else its options."""
    return "model.width" if cfg.model.kind == "mlp" else "model.options"


@contextlib.contextmanager
def _allocating(field: str, what: str) -> Iterator[None]:
    """Turn an allocation that fails inside the block (out of memory, or a size past int64, which
    torch reports as a TypeError) into a ConfigError naming ``field``.
    """
    try:
        yield
    except (MemoryError, RuntimeError, TypeError, OverflowError) as e:
        if isinstance(e, OverflowError) or "Overflow when unpacking" in str(e):
            detail = "its size overflows int64"
        elif out_of_memory(e):
            detail = memory_message(e)
        else:
            raise
        raise ConfigError(f"{field}: {what} cannot be allocated ({detail}); make it smaller") from None


def make_integrator(problem: Problem) -> Integrator:
    """The config's integrator at θ_0 = model.init_params(model.init_seed); its random draws are
    seeded from the same seed. A θ_0 that does not fit in memory raises ConfigError.
    """
    with _allocating(_size_field(problem.config), "the model's parameters"):
        return _integrator(problem)


def _integrator(problem: Problem) -> Integrator:
    s, seed = problem.config.solver, problem.config.model.init_seed
    theta = problem.model.init_params(seed)
    eig = dict(eig_method=s.eig_method, eig_tol=s.eig_tol, eig_max_iters=s.eig_max_iters, eig_order=s.eig_order)
    if s.method == "gd":
        return GradientDescent(
            problem.loss, theta, eta=s.eta, seed=seed, measure_sharpness_every=s.measure_sharpness_every, **eig
        )
    return ExponentialEuler(problem.loss, theta, k=s.k, eta_max=s.eta_max, step_c=s.step_c, seed=seed, **eig)


# ------------------------------------------------------------------------------ files
def trajectory_table(rows: list[StepReport]) -> pa.Table:
    """The rows as a table of :data:`~eoslab.rundir.TRAJECTORY_SCHEMA`."""
    cols = [f.name for f in TRAJECTORY_SCHEMA]
    data = {c: [getattr(r, "converged" if c == "eig_converged" else c) for r in rows] for c in cols}
    return pa.table(data, schema=TRAJECTORY_SCHEMA)


def _rows_from_table(table: pa.Table) -> list[StepReport]:
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


def status_dict(
    state: str, reason: str | None, step: int, t: float, loss: float | None, target: float, notes: list[str]
) -> dict[str, Any]:
    """The ``status.json`` object (docs/rundir.md): state, reason, step, t, loss, target loss (+ notes)."""
    status = {"state": state, "reason": reason, "step": step, "t": t, "loss": loss, "target_loss": target}
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


class _Writer:
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


class _NullWriter(_Writer):
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
class _Resume:
    """The newest good snapshot: integrator state, the trajectory rows before it, the elapsed
    seconds, and (for the final snapshot of a finished run) the final row and status.
    """

    state: dict[str, Any]
    rows: list[StepReport]
    elapsed_s: float
    final_row: StepReport | None = None
    final_status: dict[str, Any] | None = None


def _resume_point(run: RunDir, manifest: dict[str, Any], model: Model) -> tuple[_Resume | None, list[str]]:
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
        return _Resume(state, before, float(meta.get("elapsed_s", "0")), final[0] if final else None, status), skipped
    return None, skipped


def _legacy_rows(run: RunDir, manifest: dict[str, Any]) -> list[StepReport]:
    """The rows of ``trajectory.parquet``, for state files written before they held the rows."""
    return _rows_from_table(run.read_table(TRAJECTORY_FILE, manifest, ""))


# ------------------------------------------------------------------------------ training
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
        return run.manifest()
    if manifest is None:  # written by an eoslab without manifests
        _check_same_config(run, config, to_dict(load_config(run.config_file)))
        run.adopt(config, digest, problem.fingerprint())
        _upgrade_legacy_status(run)
        return run.manifest()
    _check_same_config(run, config, manifest["config"])
    if run.config_file.exists():
        run.check_config(to_dict(load_config(run.config_file)), manifest)
    else:  # killed between the manifest and config.toml when it was created: cfg is the manifest's
        run.write_config_text(to_toml(cfg))
    run.check_data(problem.fingerprint(), manifest)
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
    cfg = problem.config.train
    main = is_main()
    notes = list((run.read_status(manifest) or {}).get("notes", [])) if main else []
    writer = (_Writer if main else _NullWriter)(run, problem.model, cfg.target_loss, notes)
    resume, skipped = broadcast_object(_resume_point(run, manifest, problem.model) if main else None)
    step0 = resume.state["step"] if resume else -1
    if main and (broken or skipped):
        where = f"resumed from step {step0}" if resume else "started again from step 0"
        note = "; ".join([*([broken] if broken else []), *(f"{s}: skipped, {where}" for s in skipped)])
        notes.append(note)
        warn(f"{run.path}: {note}")
    # files after the resume point are corrupt, or of an abandoned trajectory
    writer.remove([run.snapshot_name(k, s) for k in SNAPSHOT_KINDS for s in run.snapshot_steps(k) if s > step0])
    if resume is not None and resume.final_status is not None:  # the final snapshot is intact
        old = resume.final_status.get("notes", [])
        merged = [*old, *(n for n in notes if n not in old)]
        status = {**resume.final_status, **({"notes": merged} if merged else {})}
        writer.finish([*resume.rows, resume.final_row], status)
        return status

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
    with _Progress(progress, cfg.target_loss, integ.step_count) as bar:
        while True:
            elapsed = elapsed0 + time.monotonic() - start
            if integ.step_count >= cfg.max_steps:
                limit = f"max_steps {cfg.max_steps} reached"
            elif cfg.max_time_s is not None and elapsed >= cfg.max_time_s:
                limit = f"max_time_s {cfg.max_time_s:g} reached"
            if cfg.max_time_s is not None:  # rank 0's clock decides for all ranks
                limit = broadcast_object(limit)
            report = integ.step(stop_below=math.inf if limit else cfg.target_loss)
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
    if departed:
        notes.append(departed)
        warn(f"{run.path}: {departed}")
    status = final_status(report, limit, cfg.target_loss, notes, rows[0].loss)
    if status["state"] == "failed":
        writer.finish(rows, status)
    else:
        writer.snapshot(integ, rows, elapsed0 + time.monotonic() - start, status, final=True)
    return status


class _Progress:
    """A rich progress bar on stderr: fraction of log(L₀/L) to log(L₀/target), with step, t,
    loss and the sharpness λ¹ (last measured).
    """

    def __init__(self, enabled: bool, target: float, first_step: int) -> None:
        self.enabled, self.target, self.first_step = enabled, target, first_step
        self.loss0: float | None = None
        self.sharpness = math.nan

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=1.0)
        return self

    def update(self, r: StepReport) -> None:
        if not self.enabled:
            return
        if r.eigenvalues:
            self.sharpness = r.eigenvalues[0]
        if self.loss0 is None and r.loss > 0 and math.isfinite(r.loss):
            self.loss0 = r.loss
        frac = 0.0
        if self.loss0 and r.loss > 0 and math.isfinite(r.loss) and self.loss0 > self.target:
            frac = min(max(math.log(self.loss0 / r.loss) / math.log(self.loss0 / self.target), 0.0), 1.0)
        sharpness = f"  λ¹={self.sharpness:.4g}" if math.isfinite(self.sharpness) else ""
        self.bar.update(
            self.task, completed=frac, description=f"step {r.step}  t={r.t:.4g}  loss={r.loss:.4g}{sharpness}"
        )

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


# ------------------------------------------------------------------------------ reading runs
class Run:
    """A run directory opened for analysis (the analysis engineer's entry point).

    Opening it checks ``config.toml`` and the data against the run's manifest
    (:class:`~eoslab.rundir.MismatchError` naming the fields that differ); a run written before
    manifests existed opens unverified until :meth:`adopt` records one.

    Attributes:
        path: the run directory.
        dir: its :class:`~eoslab.rundir.RunDir`.
        config: its resolved RunConfig.
        problem: dataset subset, model and loss rebuilt from the config (:func:`build_problem`).
        manifest: the run's manifest (None for a run without one).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.dir = RunDir(path)
        if not self.dir.config_file.exists():
            raise RunDirError(f"{self.path} is not a run directory (no config.toml); give the --out of `eoslab train`")
        self.config = load_config(self.dir.config_file)
        self.manifest = self.dir.manifest()
        if self.manifest is not None:
            self.dir.check_config(to_dict(self.config), self.manifest)
        self.problem = build_problem(self.config, self.path)
        if self.manifest is not None:
            self.dir.check_data(self.problem.fingerprint(), self.manifest)

    def adopt(self) -> None:
        """Record a manifest for a run written before manifests existed (call it holding the lock)."""
        if self.manifest is None:
            cfg = self.problem.config
            self.dir.adopt(to_dict(cfg), config_hash(cfg, 64), self.problem.fingerprint())
            self.manifest = self.dir.manifest()

    @property
    def model(self) -> Model:
        """The model the run trains (:func:`eoslab.models.make_model` of its config)."""
        return self.problem.model

    @property
    def loss(self) -> FullBatchLoss:
        """L̃ on the subset the run trained on."""
        return self.problem.loss

    def snapshots(self) -> list[tuple[int, Path]]:
        """Sorted (step, path) of the parameter snapshots."""
        return [(s, self.dir.snapshot_path("step", s)) for s in self.dir.snapshot_steps("step")]

    def load_snapshot(self, step: int) -> tuple[torch.Tensor, float]:
        """(θ_u, t_u) of the snapshot at step u, checked against its checksum.

        Raises:
            CorruptFileError: the file is missing or corrupt; the message says how to rebuild it.
        """
        if step == max(self.dir.snapshot_steps("step"), default=None):
            fix = "rerun `eoslab train` with the run's config on this run to rebuild it from the previous snapshot"
        else:
            fix = "an older snapshot cannot be rebuilt: train the run again into a fresh folder"
        name = self.dir.snapshot_name("step", step)
        try:
            params, meta = parse_safetensors(self.dir.read_verified(name, self.manifest, fix), self.path / name)
            return self.model.from_state_dict(params), float(meta["t"])
        except (ValueError, KeyError) as e:
            raise CorruptFileError(self.path / name, "corrupt", f"unreadable ({e})", fix) from None

    def status(self) -> dict[str, Any]:
        """``status.json`` of the run (:class:`~eoslab.rundir.CorruptFileError` if it does not verify)."""
        fix = "rerun `eoslab train` with the run's config on this run to rebuild it"
        status = self.dir.read_status(self.manifest)
        if status is None:
            self.dir.read_verified(STATUS_FILE, self.manifest, fix)  # raises, naming the problem
            raise CorruptFileError(self.dir.status_file, "corrupt", "not a JSON object", fix)
        return status

    def trajectory(self):
        """trajectory.parquet as a pandas DataFrame (checked against its checksum)."""
        fix = "rerun `eoslab train` with the run's config on this run to rebuild it"
        return to_frame(self.dir.read_table(TRAJECTORY_FILE, self.manifest, fix))


def load_run(run_dir: str | Path) -> Run:
    """Open a run directory written by :func:`train` (:class:`Run`)."""
    return Run(run_dir)


__all__ = [
    "Problem",
    "Run",
    "RunConflictError",
    "build_problem",
    "final_status",
    "load_run",
    "make_integrator",
    "problem_from_dataset",
    "status_dict",
    "train",
    "trajectory_table",
]
