"""Training runs: integrate to a target loss, write the run directory, resume a killed run.

A run directory (docs/rundir.md):

``config.toml``
    the resolved config (every default filled in, :func:`eoslab.config.resolve`).
``status.json``
    ``{"state": "running" | "done" | "failed", "reason", "step", "t", "loss"}``: while running,
    the step and t reached and the latest evaluated loss; when finished, those of the final θ.
``trajectory.parquet``
    one row per step u: ``step, t, loss, accuracy, dt, grad_norm, eig_iters, hvps, eigenvalues``
    (list<double>) and ``eig_converged`` (:class:`eoslab.integrators.StepReport`; loss, t, … are
    those of θ_u at the start of the step). The last row of a finished run is the evaluation of
    the final θ, with dt = 0.
``snapshots/step_XXXXXXXX.safetensors``
    θ_u as named parameter tensors (``Model.to_state_dict``), metadata ``step`` and ``t`` (``repr``
    of the float, exact); every ``train.snapshot_every`` steps, at step 0 and at the end.
``snapshots/state_XXXXXXXX.safetensors``
    the rest of the integrator state needed to resume bit-identically: the warm-start
    eigenvectors (tensor ``eigenvectors``, (P, j), absent before the first eigensolve), metadata
    ``step``, ``t``, ``elapsed_s``. Random draws are a function of (seed, step)
    (:func:`eoslab.integrators.step_seed`), so there is no RNG state. Only the two newest state
    files are kept (at the paper's size one is ≈ 230 MB).

Crash safety: every file is replaced atomically (:mod:`eoslab.store`). A snapshot is written as
state file, then trajectory (rows < u), then parameter file; a resume starts from the newest u
whose two files load and whose trajectory rows 0..u−1 are present, truncates the trajectory to
them and continues. Since the state is complete, the continued run is bit-identical to an
uninterrupted one (same machine, same thread count).

Data-parallel runs (:mod:`eoslab.distributed`: ``eoslab train --nproc N`` or ``torchrun``): every
rank builds the same problem and keeps its shard of the training subset; rank 0 alone writes the
run directory and decides whether to resume, and sends its decision and resume state to the others.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from safetensors import SafetensorError

from .config import ConfigError, RunConfig, config_hash, load_config, resolve, to_toml, torch_device
from .criteria import make_criterion
from .curvature import FullBatchLoss
from .data import Dataset, load_dataset
from .data.subsets import draw_subset
from .distributed import broadcast_object, is_main, rank_device, shard_slice, world
from .integrators import ExponentialEuler, GradientDescent, Integrator, StepReport
from .models import Model, ModelError, make_model
from .rundir import TRAJECTORY_SCHEMA, RunDir
from .store import read_json, read_parquet, read_safetensors, write_json, write_parquet, write_safetensors, write_text

_STATE_FILES_KEPT = 2


class RunConflictError(Exception):
    """The run directory already holds a run with a different config."""


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


def build_problem(cfg: RunConfig) -> Problem:
    """Dataset subset, model, criterion and full-batch loss of a config (train and load_run).

    Raises ConfigError naming the field when a value only turns out wrong here (an unknown
    dataset or loader option, a subset larger than the data, a model that cannot be built, k ≥ P,
    fewer samples than data-parallel processes).
    """
    d = cfg.data
    try:
        dataset = load_dataset(d.name, d.split, data_root=d.data_root, **d.options)
    except TypeError as e:
        raise ConfigError(f"data.options: {e}") from None
    except ValueError as e:
        field = "data.name" if "unknown dataset" in str(e) else "data.options"
        raise ConfigError(f"{field}: {e}") from None
    if d.n is not None:
        if d.n > len(dataset):
            raise ConfigError(f"data.n: the {d.name} {d.split} split has {len(dataset)} samples, got n = {d.n}")
        dataset = draw_subset(dataset, d.n, d.subset_seed, nested=d.nested)
    cfg = resolve(cfg, num_outputs=dataset.num_classes)
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


def make_integrator(problem: Problem) -> Integrator:
    """The config's integrator at θ_0 = model.init_params(model.init_seed); its random draws are
    seeded from the same seed.
    """
    s, seed = problem.config.solver, problem.config.model.init_seed
    theta = problem.model.init_params(seed)
    eig = dict(eig_method=s.eig_method, eig_tol=s.eig_tol, eig_max_iters=s.eig_max_iters)
    if s.method == "gd":
        return GradientDescent(
            problem.loss, theta, eta=s.eta, seed=seed, measure_sharpness_every=s.measure_sharpness_every, **eig
        )
    return ExponentialEuler(problem.loss, theta, k=s.k, eta_max=s.eta_max, step_c=s.step_c, seed=seed, **eig)


# ------------------------------------------------------------------------------ files
def _trajectory_table(rows: list[StepReport]) -> pa.Table:
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


def _status(state: str, reason: str | None, step: int, t: float, loss: float | None) -> dict[str, Any]:
    return {"state": state, "reason": reason, "step": step, "t": t, "loss": loss}


class _Writer:
    """Writes snapshots, trajectory and status of one run directory in the crash-safe order."""

    def __init__(self, run_dir: RunDir, model: Model) -> None:
        self.dir, self.model = run_dir, model

    def snapshot(self, integ: Integrator, rows: list[StepReport], elapsed_s: float) -> None:
        state = integ.state_dict()
        step, t = state["step"], state["t"]
        meta = {"step": str(step), "t": repr(t)}
        extra = {k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor) and k != "theta"}
        write_safetensors(extra, self.dir.snapshot_path("state", step), {**meta, "elapsed_s": repr(elapsed_s)})
        self.trajectory(rows)
        write_safetensors(self.model.to_state_dict(state["theta"]), self.dir.snapshot_path("step", step), meta)
        for old in self.dir.snapshot_steps("state")[:-_STATE_FILES_KEPT]:
            self.dir.snapshot_path("state", old).unlink(missing_ok=True)

    def trajectory(self, rows: list[StepReport]) -> None:
        write_parquet(_trajectory_table(rows), self.dir.trajectory_file)

    def status(self, status: dict[str, Any]) -> None:
        write_json(status, self.dir.status_file)


class _NullWriter(_Writer):
    """The writer of ranks other than 0 in a data-parallel run: rank 0 writes the run directory."""

    def snapshot(self, integ: Integrator, rows: list[StepReport], elapsed_s: float) -> None:
        pass

    def trajectory(self, rows: list[StepReport]) -> None:
        pass

    def status(self, status: dict[str, Any]) -> None:
        pass


def _resume_point(run_dir: RunDir, model: Model) -> tuple[dict[str, Any], list[StepReport], float] | None:
    """(integrator state, trajectory rows before it, elapsed seconds) of the newest complete
    snapshot, or None if there is none.
    """
    try:
        rows = _rows_from_table(read_parquet(run_dir.trajectory_file))
    except OSError:
        return None
    states = set(run_dir.snapshot_steps("state"))
    for step in reversed(run_dir.snapshot_steps("step")):
        before = [r for r in rows if r.step < step]
        if step not in states or [r.step for r in before] != list(range(step)):
            continue
        try:
            params, meta = read_safetensors(run_dir.snapshot_path("step", step))
            extra, state_meta = read_safetensors(run_dir.snapshot_path("state", step))
            theta = model.from_state_dict(params)
        except (OSError, KeyError, ValueError, SafetensorError):  # unreadable or foreign: try an older one
            continue
        state = {"step": step, "t": float(state_meta["t"]), "theta": theta, **extra}
        return state, before, float(state_meta.get("elapsed_s", "0"))
    return None


# ------------------------------------------------------------------------------ training
def train(cfg: RunConfig, run_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Train to the target loss (or ``max_steps`` / ``max_time_s``), writing ``run_dir``.

    A directory holding the same config resumes from its newest complete snapshot (a finished
    one returns its status as is); one holding a different config raises RunConflictError.
    Nothing is written until the config has been checked (ConfigError names the field).
    Returns the final status dict (``state`` "done" or "failed"; a non-finite loss or gradient
    fails the run, with the reason, keeping what was written).

    In a data-parallel run (an initialised process group, :mod:`eoslab.distributed`) every rank
    calls it: rank 0 checks and writes the directory (and shows the progress bar), the others
    follow its decisions.
    """
    run_dir = RunDir(run_dir)
    problem = build_problem(cfg)
    cfg = problem.config
    integ = make_integrator(problem)
    outcome = None
    if is_main():
        try:
            outcome = _open_run_dir(run_dir, cfg)
        except RunConflictError as e:
            outcome = e
    outcome = broadcast_object(outcome)
    if isinstance(outcome, RunConflictError):
        raise outcome
    if outcome is not None:
        return outcome

    threads = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        return _train_loop(problem, integ, run_dir, progress and is_main())
    finally:
        torch.set_num_threads(threads)


def _open_run_dir(run_dir: RunDir, cfg: RunConfig) -> dict[str, Any] | None:
    """Write config.toml into a new run directory (None: train), or check the one there: its final
    status if it is finished, None to resume; RunConflictError for another config.
    """
    config_file = run_dir.config_file
    if not config_file.exists():
        write_text(to_toml(cfg), config_file)
        return None
    old = load_config(config_file)
    if config_hash(old) != config_hash(cfg):
        raise RunConflictError(
            f"{run_dir.path} holds a run with a different config (hash {config_hash(old)}, "
            f"this one {config_hash(cfg)}); use another --out or remove it"
        )
    status_file = run_dir.status_file
    if status_file.exists():
        status = read_json(status_file)
        if status.get("state") in ("done", "failed"):
            return status
    return None


def _train_loop(problem: Problem, integ: Integrator, run_dir: RunDir, progress: bool) -> dict[str, Any]:
    cfg = problem.config.train
    writer = (_Writer if is_main() else _NullWriter)(run_dir, problem.model)
    resume = broadcast_object(_resume_point(run_dir, problem.model) if is_main() else None)
    elapsed0, rows = 0.0, []
    if resume is not None:
        state, rows, elapsed0 = resume
        integ.load_state_dict(state)
    last_loss = rows[-1].loss if rows else None
    writer.status(_status("running", None, integ.step_count, integ.t, last_loss))
    if resume is None:
        writer.snapshot(integ, rows, elapsed0)

    start = time.monotonic()
    with _Progress(progress, cfg.target_loss, integ.step_count) as bar:
        while True:
            elapsed = elapsed0 + time.monotonic() - start
            limit = None
            if integ.step_count >= cfg.max_steps:
                limit = f"max_steps {cfg.max_steps} reached"
            elif cfg.max_time_s is not None and elapsed >= cfg.max_time_s:
                limit = f"max_time_s {cfg.max_time_s:g} reached"
            if cfg.max_time_s is not None:  # rank 0's clock decides for all ranks
                limit = broadcast_object(limit)
            report = integ.step(stop_below=math.inf if limit else cfg.target_loss)
            rows.append(report)
            bar.update(report)
            if report.final:
                break
            if integ.step_count % cfg.snapshot_every == 0:
                writer.snapshot(integ, rows, elapsed0 + time.monotonic() - start)
                writer.status(_status("running", None, integ.step_count, integ.t, report.loss))

    if not math.isfinite(report.loss) or not math.isfinite(report.grad_norm):
        what = "loss" if not math.isfinite(report.loss) else "gradient norm"
        value = report.loss if what == "loss" else report.grad_norm
        status = _status(
            "failed", f"non-finite {what} ({value}) at step {report.step}", report.step, report.t, report.loss
        )
        writer.trajectory(rows)
    else:
        reason = limit or f"target loss {cfg.target_loss:g} reached"
        status = _status("done", reason, report.step, report.t, report.loss)
        writer.snapshot(integ, rows, elapsed0 + time.monotonic() - start)
    writer.status(status)
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

    Attributes:
        path: the run directory.
        config: its resolved RunConfig.
        problem: dataset subset, model and loss rebuilt from the config (:func:`build_problem`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.dir = RunDir(path)
        self.config = load_config(self.dir.config_file)
        self.problem = build_problem(self.config)

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
        """(θ_u, t_u) of the snapshot at step u."""
        params, meta = read_safetensors(self.dir.snapshot_path("step", step))
        return self.model.from_state_dict(params), float(meta["t"])

    def status(self) -> dict[str, Any]:
        """``status.json`` of the run."""
        return read_json(self.dir.status_file)

    def trajectory(self):
        """trajectory.parquet as a pandas DataFrame."""
        return read_parquet(self.dir.trajectory_file).to_pandas()


def load_run(run_dir: str | Path) -> Run:
    """Open a run directory written by :func:`train`."""
    return Run(run_dir)


__all__ = [
    "Problem",
    "Run",
    "RunConflictError",
    "build_problem",
    "load_run",
    "make_integrator",
    "train",
]
