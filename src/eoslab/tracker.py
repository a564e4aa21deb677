"""Sharpness of one's own training loop, into a run directory (docs/math.md §9, docs/rundir.md).

::

    tracker = eoslab.Tracker(net, "ce", X, y, every=10, out="runs/adam", kind="mlp")
    for step in range(steps):
        ...; loss.backward(); optimizer.step()
        tracker.step(optimizer)        # after optimizer.step(), before scheduler.step()
    tracker.close()                    # or `with eoslab.Tracker(...) as tracker:`

Every ``every`` steps the tracker copies the module's parameters into θ (float64) and measures,
on the **fixed batch** (X, y) it was given — the full training set (``batch="full"``, the
full-batch sharpness of the paper) or a fixed evaluation batch (``batch="evaluation"``); never
the mini-batch of the step — the loss, the gradient, λ¹ of H (and of G and R when ``operators``
asks), each solve warm-started from the previous measurement's vectors (LOBPCG,
:meth:`~eoslab.eigen.EigResult.warm_start`), and, from the optimizer's own ``param_groups`` and
``state``, its stability threshold and its preconditioned sharpness (:func:`optimizer_stability`,
Eqs. S1–S3). A measurement costs one gradient plus the eigensolver's H·v products (each about
1.5–2 gradients; docs/math.md §9 has the measured count).

The run directory is that of ``eoslab train`` (manifest, ``config.toml``, ``status.json``,
``trajectory.parquet``, ``snapshots/step_*.safetensors``) plus ``data.safetensors`` (X, y) and
``tracker.json``; its config says ``data.name = "stored"`` and the model kind, so ``eoslab
analyze`` rebuilds the same loss and model, and ``show`` and ``report`` read it unchanged. The
trajectory has one row per measurement (not per step) and the columns of
:data:`~eoslab.rundir.TRACKER_COLUMNS` after the usual ones.

**The model must be rebuildable from a kind** (``model.kind`` of the config, docs/rundir.md):
``"mlp"`` (the paper's MLP: ``Linear, ELU, …, Linear`` — e.g. :meth:`eoslab.models.MLP.as_module`;
depth and width are read off the module; the analysis then has every factor of Eqs. 4–8),
``"cnn"`` with ``options``, or ``"python:package.module:factory"`` (an importable factory,
``options`` its keyword arguments, ``groups`` its parameter groups; the analysis then has what
applies to any network). The module's trainable parameters, in ``named_parameters()`` order,
must have the shapes of the kind's θ, and the tracker checks that the module computes what the
kind computes on the first samples of X.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from torch import nn

from .analysis import SHARPNESS_SOLVER
from .config import (
    AnalysisConfig,
    CriterionConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    SolverConfig,
    TrainConfig,
    config_hash,
    resolve,
    to_dict,
    to_toml,
)
from .data import Dataset
from .data.stored import STORED, stored_bytes
from .eigen import EigResult, confirm_warm_solve
from .integrators import WARM_CHECK_EVERY, StepReport
from .provenance import code_identity
from .rundir import (
    DATA_FILE,
    STATUS_FILE,
    TRACKER_COLUMNS,
    TRACKER_FILE,
    TRAJECTORY_FILE,
    RunDir,
    RunDirError,
    folder_kind,
    warn,
)
from .runs import Problem, final_status, problem_from_dataset, status_dict, trajectory_table, uncertified_note
from .store import json_bytes, parquet_bytes, safetensors_bytes

OPERATOR_CHOICES = ("H", "G", "R")
BATCHES = {"full": "full batch", "evaluation": "fixed evaluation batch"}


# ----------------------------------------------------------------------------- optimizers
@dataclass
class Stability:
    """What an optimizer's state says about the stability of its next steps (docs/math.md §9).

    Attributes:
        optimizer: the optimizer in words, e.g. ``Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08)``.
        lr: η, the step size in its ``param_groups`` (the schedule's current value).
        threshold: the largest stable preconditioned sharpness: 2/η (GD, Eq. 1), (2 + 2β)/((1 − τ)η)
            (heavy ball, momentum β, dampening τ, Eq. S1), (2 + 2β)/((1 + 2β)η) (Nesterov,
            Eq. S2), (2 + 2β₁)/((1 − β₁)η) (Adam, AdamW, Eq. S3); NaN for other optimizers.
        scale: P^{-1/2} (P,) in θ order for Adam's P (Eq. S3); None when P = I (SGD) or unknown.
        shift: L2 weight decay λ_wd added to H (SGD, Adam: the gradient is ∇L̃ + λ_wd θ); 0 for
            AdamW, whose decay is decoupled.
        preconditioned: whether the preconditioned sharpness is λ¹(P^{-1/2}(H + λ_wd I)P^{-1/2})
            (Adam) rather than λ¹(H) + λ_wd (SGD); with ``scale`` None it is not yet defined (no step).
    """

    optimizer: str
    lr: float
    threshold: float
    scale: torch.Tensor | None = None
    shift: float = 0.0
    preconditioned: bool = False

    @property
    def known(self) -> bool:
        """Whether the optimizer is one whose threshold is known (SGD, Adam, AdamW)."""
        return math.isfinite(self.threshold)


_HYPER = {
    torch.optim.SGD: ("lr", "momentum", "dampening", "nesterov", "weight_decay"),
    torch.optim.Adam: ("lr", "betas", "eps", "weight_decay", "amsgrad"),
    torch.optim.AdamW: ("lr", "betas", "eps", "weight_decay", "amsgrad"),
}


def _value(v: Any) -> Any:
    """A hyper-parameter as a plain number (a tensor lr, tuple of tensors) for comparing and printing."""
    if isinstance(v, torch.Tensor):
        return float(v)
    if isinstance(v, tuple):
        return tuple(_value(x) for x in v)
    return v


def optimizer_stability(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> Stability:
    """The threshold and preconditioner of ``optimizer`` for the parameters ``params`` (θ order).

    SGD (``momentum`` β, ``dampening`` τ, ``nesterov``): on a quadratic with Hessian eigenvalue λ
    the update is a linear recurrence whose eigenvalue leaves the unit disc through −1 when
    η(1 − τ)λ = 2 + 2β (heavy ball, Eq. S1; β = 0: 2/η, Eq. 1) or ηλ(1 + 2β) = 2 + 2β (Nesterov,
    Eq. S2); P = I.

    Adam and AdamW (``betas`` (β₁, β₂), ``eps`` ε, ``amsgrad``): the update after t steps,
    θ ← θ − η m̂_t / (√v̂_t + ε) with m̂_t = m_t/(1 − β₁^t), v̂_t = v_t/(1 − β₂^t), is
    θ ← θ − η P_t⁻¹ m_t with P_t = (1 − β₁^t) diag(√v̂_t + ε) (Cohen et al. 2022); with P_t
    frozen, m_t = β₁ m_{t−1} + (1 − β₁) g_t is heavy ball with dampening τ = 1 − β₁ in the metric
    P_t, so it is stable while λ¹(P_t⁻¹H) = λ¹(P_t^{-1/2} H P_t^{-1/2}) < (2 + 2β₁)/((1 − β₁)η)
    (38/η for β₁ = 0.9; Eq. S3). P_t is the one of the step just taken, read from the state
    (``exp_avg_sq``, or ``max_exp_avg_sq`` with amsgrad, and ``step``).

    Raises:
        ValueError: a parameter of θ is in none of the optimizer's groups, or the groups that
            hold θ's parameters differ in their hyper-parameters (one threshold needs one set).
    """
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    missing = [i for i, p in enumerate(params) if id(p) not in group_of]
    if missing:
        raise ValueError(
            f"the optimizer does not hold the module's parameters {missing} (θ order); give it all of them"
        )
    groups = list({id(group_of[id(p)]): group_of[id(p)] for p in params}.values())
    name = type(optimizer).__name__
    keys = next((k for cls, k in _HYPER.items() if type(optimizer) is cls), ("lr",))
    hyper = {k: _value(groups[0].get(k)) for k in keys}
    for g in groups[1:]:
        other = {k: _value(g.get(k)) for k in keys}
        if other != hyper:
            raise ValueError(
                f"{name}: the parameter groups differ ({hyper} vs {other}); the tracker's threshold needs one set "
                "of hyper-parameters for all of θ"
            )
    words = f"{name}({', '.join(f'{k}={v!r}' for k, v in hyper.items())})"
    lr = float(hyper["lr"])
    if type(optimizer) is torch.optim.SGD:
        beta, tau, wd = hyper["momentum"], hyper["dampening"], hyper["weight_decay"]
        if hyper["nesterov"]:
            threshold = (2 + 2 * beta) / ((1 + 2 * beta) * lr)
        else:
            threshold = (2 + 2 * beta) / ((1 - tau) * lr) if beta > 0 else 2 / lr
        return Stability(words, lr, threshold, shift=wd)
    if type(optimizer) in (torch.optim.Adam, torch.optim.AdamW):
        (b1, b2), eps = hyper["betas"], hyper["eps"]
        threshold = (2 + 2 * b1) / ((1 - b1) * lr)
        shift = hyper["weight_decay"] if type(optimizer) is torch.optim.Adam else 0.0
        states = [optimizer.state.get(p, {}) for p in params]
        if not all(states):
            return Stability(words, lr, threshold, shift=shift, preconditioned=True)
        parts = []
        for state in states:
            t = float(state["step"])
            v = state["max_exp_avg_sq" if hyper["amsgrad"] else "exp_avg_sq"].detach().to(torch.float64)
            P = (1 - b1**t) * ((v / (1 - b2**t)).sqrt() + eps)
            parts.append(P.reshape(-1).rsqrt())
        return Stability(words, lr, threshold, torch.cat(parts), shift, preconditioned=True)
    return Stability(words, lr, math.nan)


# ----------------------------------------------------------------------------- the tracker
def _mlp_size(shapes: list[tuple[int, ...]]) -> tuple[int, int]:
    """(depth, width) of the paper's MLP whose parameters have ``shapes`` (W1, b1, …, WL, bL)."""
    depth = len(shapes) // 2
    pairs = all(len(shapes[2 * i]) == 2 and len(shapes[2 * i + 1]) == 1 for i in range(depth))
    if not (len(shapes) == 2 * depth > 0 and pairs):
        raise ValueError(f"kind 'mlp' needs Linear layers' (weight, bias) pairs, got parameter shapes {shapes}")
    return depth, (shapes[0][0] if depth > 1 else 1)


def _device_name(device: torch.device) -> str:
    return "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"


class Tracker:
    """λ¹ of H (G, R), the optimizer's preconditioned sharpness and threshold, and snapshots, every
    ``every`` steps of one's own loop, into the run directory ``out`` (module docstring).

    Args:
        model: the ``torch.nn.Module`` being trained (read, never modified).
        criterion: ``"ce"`` or ``"mse"`` (eoslab's ℓ, docs/math.md §2: the loop must minimise the
            same mean loss: cross-entropy, or the squared error to one-hot targets averaged over
            samples and outputs with ``mse_reduction="mean"``).
        X, y: the fixed batch it measures on: inputs (N, *input shape) and class labels (N,).
        out: the run directory to create (a folder that holds a run or a sweep is refused).
        every: measure every this many steps (and at step 0 and at :meth:`close`).
        kind: the model kind the analysis rebuilds it from (module docstring).
        options, groups: the kind's ``model.options`` and ``model.groups``.
        operators: which λ¹ to measure: ``("H",)``, or with ``"G"`` and ``"R"`` (Eq. 2).
        snapshot_every: save θ every this many steps (a multiple of ``every``; default ``every``).
        batch: ``"full"`` when (X, y) is the whole training set (the full-batch sharpness), else
            ``"evaluation"`` (a fixed evaluation batch); recorded, never the mini-batch sharpness.
        target_loss, mse_reduction, eig_tol, eig_max_iters, chunk_size, spectrum: as the config
            fields ``train.target_loss``, ``criterion.mse_reduction``, ``analysis.eig_tol``,
            the solver's iteration limit, ``train.chunk_size``, ``analysis.spectrum``.
        seed: of the eigensolver's random start vectors.
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: str,
        X: torch.Tensor,
        y: torch.Tensor,
        *,
        out: str | Path,
        every: int = 10,
        kind: str = "mlp",
        options: dict | None = None,
        groups: list[str] | None = None,
        operators: Sequence[str] = ("H",),
        snapshot_every: int | None = None,
        batch: str = "full",
        target_loss: float | None = None,
        mse_reduction: str = "mean",
        eig_tol: float = 1e-4,
        eig_max_iters: int = 200,
        chunk_size: int | None = None,
        spectrum: bool = False,
        seed: int = 0,
    ) -> None:
        snapshot_every = every if snapshot_every is None else snapshot_every
        if every < 1 or snapshot_every < 1 or snapshot_every % every:
            raise ValueError(f"every must be >= 1 and snapshot_every a multiple of it, got {every}, {snapshot_every}")
        if "H" not in operators or not set(operators) <= set(OPERATOR_CHOICES):
            raise ValueError(f"operators must hold 'H' and only {OPERATOR_CHOICES}, got {tuple(operators)}")
        if batch not in BATCHES:
            raise ValueError(f"batch must be one of {', '.join(BATCHES)}, got {batch!r}")
        self.run = RunDir(out)
        found = folder_kind(self.run.path)
        if found:
            raise RunDirError(f"{self.run.path} holds a {found[0]} ({found[1]}); a Tracker writes a new run directory")
        self.module, self.every, self.snapshot_every = model, every, snapshot_every
        self.operators = tuple(operators)
        self.params = [p for p in model.parameters() if p.requires_grad]
        asked = RunConfig(
            model=ModelConfig(kind=kind, options=dict(options or {}), groups=groups),
            criterion=CriterionConfig(name=criterion, mse_reduction=mse_reduction),
            solver=SolverConfig(method="gd"),
            train=TrainConfig(target_loss=target_loss, snapshot_every=snapshot_every, chunk_size=chunk_size),
            analysis=AnalysisConfig(eig_tol=eig_tol, chunk_size=chunk_size, spectrum=spectrum),
        )
        self.problem = self._problem(X, y, asked)
        self._check_module(X)
        self.measured_on = f"{BATCHES[batch]} ({len(self.problem.dataset)} samples)"
        eigensolver = dataclasses.replace(SHARPNESS_SOLVER, tol=eig_tol, max_iters=eig_max_iters)
        self.generator = torch.Generator().manual_seed(seed)
        self.solver = eigensolver.make(1, self.generator)
        self.warm: dict[str, torch.Tensor] = {}
        self.rows: list[tuple[StepReport, dict[str, Any]]] = []
        self.steps, self.t = 0, 0.0
        self.created = False
        self.stability: Stability | None = None  # of the last step
        self._theta0 = self.theta()  # the step-0 snapshot, written when the run directory is created
        self._held = contextlib.ExitStack()
        self._held.enter_context(self.run.lock())
        self._measure(None)

    # -------------------------------------------------------------- setting up
    def _problem(self, X: torch.Tensor, y: torch.Tensor, asked: RunConfig) -> Problem:
        """The run's :class:`~eoslab.runs.Problem` (what ``eoslab analyze`` rebuilds): the config
        ``asked`` (the tracker's arguments), with what the batch and the module say: the data (X, y),
        the device, and for kind ``"mlp"`` its depth and width.
        """
        params = self.params
        dtype = torch.float64
        device = params[0].device
        with torch.no_grad():
            n_out = copy.deepcopy(self.module).to(dtype).eval()(X[:1].to(device, dtype)).shape[-1]
        model = asked.model
        depth, width = (
            _mlp_size([tuple(p.shape) for p in params]) if model.kind == "mlp" else (model.depth, model.width)
        )
        cfg = dataclasses.replace(
            asked,
            data=DataConfig(name=STORED, n=int(X.shape[0])),
            model=dataclasses.replace(model, depth=depth, width=width, device=_device_name(device)),
        )
        self.data = Dataset(
            X=X.detach().to("cpu", dtype),
            y=y.detach().to("cpu", torch.int64),
            classes=[str(c) for c in range(n_out)],
            name=STORED,
        )
        return problem_from_dataset(resolve(cfg), self.data)

    def _check_module(self, X: torch.Tensor) -> None:
        """Refuse a module whose parameters or outputs are not those of the config's model kind."""
        model = self.problem.model
        shapes = [tuple(p.shape) for p in self.params]
        if shapes != model.shapes:
            raise ValueError(
                f"the module's trainable parameters have shapes {shapes}; model kind "
                f"{self.problem.config.model.kind!r} has {model.shapes} (its θ order: {model.names})"
            )
        Xs = X[:16].to(model.device, model.dtype)
        with torch.no_grad():
            mine = copy.deepcopy(self.module).to(model.dtype).eval()(Xs)
            kinds = model(self.theta(), Xs)
        if not torch.allclose(mine, kinds, rtol=1e-6, atol=1e-9 * float(kinds.abs().max().clamp(min=1))):
            raise ValueError(
                f"the module does not compute what model kind {self.problem.config.model.kind!r} computes "
                f"(largest difference {float((mine - kinds).abs().max()):.3g} on the first samples); "
                "give the kind (and options) that rebuild it"
            )

    def theta(self) -> torch.Tensor:
        """θ now: the module's trainable parameters, flattened in order, as float64 (a copy)."""
        model = self.problem.model
        return torch.cat([p.detach().reshape(-1) for p in self.params]).to(model.device, model.dtype)

    @property
    def config(self) -> RunConfig:
        """The run's config (as ``config.toml`` holds it once the first step was taken)."""
        return self.problem.config

    # -------------------------------------------------------------- the loop
    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Count one step of the loop (call it after ``optimizer.step()``): t grows by its η; every
        ``every`` steps, measure and write (the first call creates the run directory, its config
        recording the optimizer's first η as ``solver.eta``).
        """
        stability = self.stability = optimizer_stability(optimizer, self.params)
        self.steps += 1
        self.t += stability.lr
        if not self.created:
            self._create(stability.lr)
        if self.steps % self.every == 0:
            self._measure(stability)

    def close(self) -> dict[str, Any]:
        """Measure the final θ (unless just measured), save it and write the final status
        (``done`` below the target loss, else ``stopped``; :func:`eoslab.runs.final_status`);
        release the run directory. Returns the status.
        """
        if not self.created:
            eta = self.config.solver.eta
            assert eta is not None  # resolve() fills GD's step size
            self._create(eta)
        if self.rows[-1][0].step != self.steps:
            self._measure(self.stability)
        report, extra = self.rows[-1]
        report = dataclasses.replace(report, dt=0.0, final=True)
        self.rows[-1] = (report, extra)
        limit = f"the tracker closed at step {self.steps}"
        uncertain = uncertified_note([r for r, _ in self.rows])
        if uncertain:
            warn(f"{self.run.path}: {uncertain}")
        notes = [uncertain] if uncertain else []
        status = final_status(report, limit, self.problem.target_loss, notes, self.rows[0][0].loss)
        self._write(status, snapshot=True)
        self._held.close()
        return status

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind, error, tb) -> None:
        if error is None:
            self.close()
            return
        if self.created:
            last = self.rows[-1][0]
            reason = f"the training loop raised {kind.__name__}: {error}"
            self._write(
                status_dict("failed", reason, self.steps, self.t, last.loss, self.problem.target_loss, []),
                snapshot=False,
            )
        self._held.close()

    # -------------------------------------------------------------- measuring and writing
    def _solve(self, which: str, op) -> EigResult:
        """λ¹ of ``op``, warm-started from the last measurement's; every
        :data:`~eoslab.integrators.WARM_CHECK_EVERY`-th measurement checks the warm start for an
        eigenvalue it missed (:func:`~eoslab.eigen.confirm_warm_solve`).
        """
        V0 = self.warm.get(which)
        result = self.solver.solve(op, V0)
        if len(self.rows) % WARM_CHECK_EVERY == 0:
            result = confirm_warm_solve(self.solver, op, V0, result, self.generator)
        self.warm[which] = result.warm_start()
        return result

    def _measure(self, stability: Stability | None) -> None:
        """One row: L̃, ∇L̃ and accuracy on the batch, λ¹ of the operators asked for, the
        preconditioned sharpness and threshold of ``stability`` (None before the first step).
        """
        loss = self.problem.loss
        theta = self.theta()
        value = loss.value_and_grad(theta)
        eig = {w: self._solve(w, loss.operator(theta, w)) for w in self.operators}
        sharp = {w: float(r.eigenvalues[0]) for w, r in eig.items()}
        precond = math.nan
        if stability is not None and stability.known:
            if stability.scale is not None:
                eig["P"] = self._solve("P", loss.operator(theta, "H").shifted(stability.shift).scaled(stability.scale))
                precond = float(eig["P"].eigenvalues[0])
            elif not stability.preconditioned:
                precond = sharp["H"] + stability.shift
        lr = math.nan if stability is None else stability.lr
        report = StepReport(
            step=self.steps,
            t=self.t,
            loss=value.loss,
            accuracy=value.accuracy,
            dt=0.0 if stability is None else lr,
            grad_norm=float(value.grad.norm()),
            eigenvalues=[sharp["H"]],
            eig_iters=eig["H"].iterations,
            hvps=sum(r.products for r in eig.values()),
            converged=all(r.converged for r in eig.values()),
        )
        extra = {
            "lr": lr,
            "threshold": math.nan if stability is None else stability.threshold,
            "preconditioned_sharpness": precond,
            "sharpness_G": sharp.get("G", math.nan),
            "sharpness_R": sharp.get("R", math.nan),
            "optimizer": "" if stability is None else stability.optimizer,
        }
        self.rows.append((report, extra))
        if self.created:
            self._write(self._running(), snapshot=self.steps % self.snapshot_every == 0)

    def _running(self) -> dict[str, Any]:
        last = self.rows[-1][0]
        return status_dict("running", None, self.steps, self.t, last.loss, self.problem.target_loss, [])

    def _table(self) -> pa.Table:
        """``trajectory.parquet``: :data:`~eoslab.rundir.TRAJECTORY_SCHEMA`, then :data:`TRACKER_COLUMNS`."""
        table = trajectory_table([r for r, _ in self.rows])
        for field in TRACKER_COLUMNS:
            table = table.append_column(field, pa.array([e[field.name] for _, e in self.rows], field.type))
        return table

    def _snapshot(self, report: StepReport, theta: torch.Tensor) -> tuple[str, bytes]:
        """(name, bytes) of the parameter snapshot of ``report``'s step (as ``eoslab train`` writes it)."""
        meta = {"step": str(report.step), "t": repr(report.t)}
        state = self.problem.model.to_state_dict(theta)
        return self.run.snapshot_name("step", report.step), safetensors_bytes(state, meta)

    def _write(self, status: dict[str, Any], *, snapshot: bool) -> None:
        with self.run.transaction() as tx:
            tx.write(TRAJECTORY_FILE, parquet_bytes(self._table()))
            if snapshot:
                tx.write(*self._snapshot(self.rows[-1][0], self.theta()))
            tx.write(STATUS_FILE, json_bytes(status))

    def _create(self, eta: float) -> None:
        """Create the run directory: manifest and ``config.toml`` (``solver.eta`` = ``eta``), then
        the data, ``tracker.json``, the step-0 snapshot, the trajectory and the status.
        """
        cfg = dataclasses.replace(self.config, solver=dataclasses.replace(self.config.solver, eta=eta))
        self.problem = dataclasses.replace(self.problem, config=cfg)
        self.run.create(to_dict(cfg), config_hash(cfg, 64), self.problem.fingerprint(), to_toml(cfg))
        self.run.record_code(code_identity(), 0)  # the eoslab that measures (docs/rundir.md, `code`)
        about = {
            "measured_on": self.measured_on,
            "operators": list(self.operators),
            "every": self.every,
            "snapshot_every": self.snapshot_every,
            "module": type(self.module).__name__,
        }
        first = self.rows[0][0]
        with self.run.transaction() as tx:
            tx.write(DATA_FILE, stored_bytes(self.data))  # as given: the config's subset of it is drawn on reading
            tx.write(TRACKER_FILE, json_bytes(about))
            tx.write(*self._snapshot(first, self._theta0))
            tx.write(TRAJECTORY_FILE, parquet_bytes(self._table()))
            tx.write(STATUS_FILE, json_bytes(self._running()))
        self.created = True
