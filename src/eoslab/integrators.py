"""Integrators of the gradient flow dθ/dt = −∇L̃(θ): gradient descent and exponential Euler.

* :class:`GradientDescent` — θ_{u+1} = θ_u − η ∇L̃(θ_u) (docs/math.md §2), the edge-of-stability
  baseline: stable only while λ¹(H) < 2/η (Eq. 1). Its flow time advances by η per step.
* :class:`ExponentialEuler` — the paper's solver (docs/math.md §7, D3, D4, D14): the top k directions of
  H are integrated exactly under the linearised flow, the bulk by explicit Euler, with a step
  Δt = min(η_max, c / |λ^{k+1}|) that keeps the bulk stable.

Each integrator owns θ, its flow time t and its step counter u. :meth:`Integrator.step` evaluates
L̃(θ_u), ∇L̃(θ_u), moves to θ_{u+1}, and returns a :class:`StepReport` that describes the start of
the step (loss, accuracy, gradient norm and t are those of θ_u; Δt is the step taken from it).

Every random draw (the eigensolver's random start and padding) comes from a generator reseeded
from (seed, u) at step u, so a run restored by :meth:`Integrator.load_state_dict` continues
bit-identically: the state is θ, t, u and the warm-start eigenvectors, nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .curvature import FullBatchLoss
from .eigen import Eigensolver, EigResult, confirm_warm_solve
from .eigspec import EigSpec


@dataclass
class StepReport:
    """What one step saw at its start θ_u and what it did (one trajectory row, docs/rundir.md).

    Attributes:
        step: u, the index of θ_u.
        t: flow time of θ_u.
        loss: L̃(θ_u).
        accuracy: training accuracy at θ_u.
        dt: Δt_u, the flow time of the step taken (0 when the step stopped without moving).
        grad_norm: ‖∇L̃(θ_u)‖.
        eigenvalues: eigenvalues of H(θ_u) the step computed, descending (exponential Euler: the
            top k+1; GD: λ¹ on measuring steps, else empty). Negative values are kept (D12).
        eig_iters: block iterations of the eigensolver at this step.
        hvps: H·v products (single vectors) used at this step, in either precision.
        low_hvps: of ``hvps``, those computed in float32 (``EigSpec.precision = "mixed"``); not a
            trajectory column (the run's config says which precision it used).
        converged: whether the eigensolver met its tolerance (True when none ran).
        final: the step stopped at θ_u without moving (target reached, non-finite loss or
            gradient, or a stop requested by the caller).
    """

    step: int
    t: float
    loss: float
    accuracy: float
    dt: float
    grad_norm: float
    eigenvalues: list[float] = field(default_factory=list)
    eig_iters: int = 0
    hvps: int = 0
    low_hvps: int = 0
    converged: bool = True
    final: bool = False


def step_seed(seed: int, step: int) -> int:
    """The seed of every random draw at step u: a fixed mix of (seed, u) into 63 bits."""
    return (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + 1) % (1 << 63)


class Integrator:
    """Common state (θ, t, u) and the evaluate-then-move skeleton of :meth:`step`.

    Args:
        loss: the full-batch loss L̃ and its Hessian operator.
        theta: the starting θ_0 (copied).
        seed: base seed of the per-step random draws (:func:`step_seed`).
    """

    def __init__(self, loss: FullBatchLoss, theta: torch.Tensor, *, seed: int = 0) -> None:
        self.loss = loss
        self.theta = theta.detach().clone()
        self.t = 0.0
        self.step_count = 0
        self.seed = seed
        self.generator = torch.Generator(device="cpu")
        self._warm_start: torch.Tensor | None = None  # last eigenvectors, (P, j)

    def step(self, stop_below: float = -math.inf) -> StepReport:
        """One step from θ_u. It evaluates L̃(θ_u) and ∇L̃(θ_u), and stops there without moving
        (``final=True``, Δt = 0) when L̃(θ_u) ≤ ``stop_below`` or the loss or gradient is not
        finite; pass ``math.inf`` to only evaluate.
        """
        value = self.loss.value_and_grad(self.theta)
        grad_norm = float(torch.linalg.vector_norm(value.grad))
        report = StepReport(
            step=self.step_count,
            t=self.t,
            loss=value.loss,
            accuracy=value.accuracy,
            dt=0.0,
            grad_norm=grad_norm,
            final=True,
        )
        if not (math.isfinite(value.loss) and math.isfinite(grad_norm)) or value.loss <= stop_below:
            return report
        self.generator.manual_seed(step_seed(self.seed, self.step_count))
        self._move(value.grad, report)
        report.final = False
        self.t += report.dt
        self.step_count += 1
        return report

    def _move(self, grad: torch.Tensor, report: StepReport) -> None:
        """Update θ in place from g_u = ``grad``; fill report.dt and the eigensolver fields."""
        raise NotImplementedError

    # -- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically: ``step`` (int), ``t`` (float),
        ``theta`` and, once computed, ``eigenvectors`` (the warm start, (P, j)) as tensors.
        """
        state: dict[str, Any] = {"step": self.step_count, "t": self.t, "theta": self.theta.clone()}
        if self._warm_start is not None:
            state["eigenvectors"] = self._warm_start.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.step_count = int(state["step"])
        self.t = float(state["t"])
        self.theta = state["theta"].detach().to(dtype=self.theta.dtype, device=self.theta.device).clone()
        V = state.get("eigenvectors")
        self._warm_start = None if V is None else V.to(dtype=self.theta.dtype, device=self.theta.device).clone()

    def _eigs(self, solver: Eigensolver, check: bool) -> EigResult:
        """Top eigenpairs of H(θ_u) by ``solver``, warm-started from the previous ones, which they
        replace; with ``check``, a warm start is checked for an eigenvalue it missed
        (:func:`~eoslab.eigen.confirm_warm_solve`; every :data:`WARM_CHECK_EVERY`-th solve).
        """
        op, V0 = self.loss.operator(self.theta, "H"), self._warm_start
        result = solver.solve(op, V0)
        if check:
            result = confirm_warm_solve(solver, op, V0, result, self.generator)
        self._warm_start = result.warm_start()
        return result


class GradientDescent(Integrator):
    """θ_{u+1} = θ_u − η ∇L̃(θ_u), t_{u+1} = t_u + η (docs/math.md §2, Eq. 1).

    Args:
        loss, theta, seed: as :class:`Integrator`.
        eta: η, the step size.
        measure_sharpness_every: if > 0, compute λ¹(H(θ_u)) (warm-started) at every step u
            divisible by it and report it in ``eigenvalues``; 0 = never.
        eigensolver: the eigensolver of the measurement: its registry name, stopping (D4) and
            order (``"algebraic"``: λ¹ is the largest eigenvalue, D14; ``"magnitude"``: the
            eigenvalue of largest |λ|, sign kept).
    """

    def __init__(
        self,
        loss: FullBatchLoss,
        theta: torch.Tensor,
        *,
        eta: float,
        seed: int = 0,
        measure_sharpness_every: int = 0,
        eigensolver: EigSpec = EigSpec(),
    ) -> None:
        super().__init__(loss, theta, seed=seed)
        if not eta > 0:
            raise ValueError(f"eta must be > 0, got {eta}")
        if measure_sharpness_every < 0:
            raise ValueError(f"measure_sharpness_every must be >= 0, got {measure_sharpness_every}")
        self.eta = eta
        self.measure_every = measure_sharpness_every
        self._solver = eigensolver.make(1, self.generator) if measure_sharpness_every else None

    def _move(self, grad: torch.Tensor, report: StepReport) -> None:
        if self._solver is not None and self.step_count % self.measure_every == 0:
            solves = self.step_count // self.measure_every
            _record(report, self._eigs(self._solver, check=solves % WARM_CHECK_EVERY == 0))
        self.theta.sub_(grad, alpha=self.eta)
        report.dt = self.eta


class ExponentialEuler(Integrator):
    """The exponential Euler step of docs/math.md §7 (D3, D4, D14).

    With (λ^m, v^m), m = 1..k+1, the top eigenpairs of H(θ_u) by the eigensolver's order (warm-started
    from the previous step's eigenvectors) and g_u = Σ_{m≤k} c^m v^m + w_u, c^m = g_u·v^m:

        Δt_u = min(η_max, c / |λ^{k+1}|)                                   (D3)
        r^m  = min((1 − e^{−λ^m Δt_u}) / λ^m, Δt_u),  r^m = Δt_u if λ^m = 0  (§7 step 5)
        θ_{u+1} = θ_u − Σ_m r^m c^m v^m − Δt_u w_u,   t_{u+1} = t_u + Δt_u    (§7 step 6)

    Along v^m this is the exact solution of the flow linearised at θ_u; the bulk w_u takes an
    explicit Euler step, which is stable because Δt_u |λ^{k+1}| ≤ c.

    Args:
        loss, theta, seed: as :class:`Integrator`.
        k: directions integrated exactly (the paper: n_L, the number of outputs).
        eta_max: η_max, the largest step (D3; 0.01 by default, as in the authors' examples).
        step_c: c in Δt = min(η_max, c/|λ^{k+1}|) (D3).
        eigensolver: the eigensolver of the k+1 eigenpairs: its method (``"lobpcg"``, the
            default, or ``"power"``, the paper's block power iteration, §6), stopping (D4) and
            order (D14): ``"algebraic"`` (default: the largest values, λ^{k+1} the (k+1)-th
            largest) or ``"magnitude"`` (the authors' code: the k+1 largest |λ|, λ^{k+1} the
            (k+1)-th by |λ|). Both solvers and Δt follow the order.
    """

    def __init__(
        self,
        loss: FullBatchLoss,
        theta: torch.Tensor,
        *,
        k: int,
        eta_max: float = 0.01,
        step_c: float = 1.0,
        seed: int = 0,
        eigensolver: EigSpec = EigSpec(),
    ) -> None:
        super().__init__(loss, theta, seed=seed)
        if not eta_max > 0:
            raise ValueError(f"eta_max must be > 0, got {eta_max}")
        if k < 1 or k + 1 > loss.num_params:
            raise ValueError(f"k must be in 1..{loss.num_params - 1}, got {k}")
        if not step_c > 0:
            raise ValueError(f"step_c must be > 0, got {step_c}")
        self.eta_max, self.k, self.step_c = eta_max, k, step_c
        self._solver = eigensolver.make(k + 1, self.generator)

    def _move(self, grad: torch.Tensor, report: StepReport) -> None:
        result = self._eigs(self._solver, check=self.step_count % WARM_CHECK_EVERY == 0)
        _record(report, result)
        lam, V = result.eigenvalues[: self.k], result.eigenvectors[:, : self.k]  # (k,), (P, k)
        dt = self.step_size(float(result.eigenvalues[self.k]))
        c = V.T @ grad  # (k,)
        w = grad - V @ c  # ⟂ v^1..v^k
        r = exp_factor(lam, dt)
        self.theta.sub_(V @ (r * c)).sub_(w, alpha=dt)
        report.dt = dt

    def step_size(self, lam_next: float) -> float:
        """Δt = min(η_max, c / |λ^{k+1}|) (D3); η_max when λ^{k+1} = 0."""
        if lam_next == 0.0:
            return self.eta_max
        return min(self.eta_max, self.step_c / abs(lam_next))


#: Every this many eigensolves a warm-started one is checked for an eigenvalue it missed
#: (:func:`~eoslab.eigen.confirm_warm_solve`): a missed one is found within this many solves,
#: at a cost of a few products per solve on average (docs/math.md §6).
WARM_CHECK_EVERY = 25

#: A rise of the loss between consecutive exponential Euler steps larger than this (relative) is a
#: departure from the gradient flow, whose loss never rises (dL/dt = −‖∇L̃‖², docs/math.md §2);
#: smaller ones are round-off.
RISE_TOL = 1e-9


def loss_rises(losses: list[float]) -> list[int]:
    """The steps u with L̃(θ_{u+1}) > L̃(θ_u) (1 + :data:`RISE_TOL`) in a trajectory's losses."""
    return [u for u in range(len(losses) - 1) if losses[u + 1] > losses[u] * (1 + RISE_TOL)]


def departure_note(losses: list[float]) -> str | None:
    """What a flow trajectory whose loss rose says about itself (None when it never rose): an
    exponential Euler step that raises the loss has left the gradient flow it integrates (its top
    directions are exact only for the flow linearised at θ_u; with Δt λ¹ ≫ 1 and curvature that
    changes within a step, the step overshoots), so the run's quantities are not the flow's.
    """
    rises = loss_rises(losses)
    if not rises:
        return None
    worst = max(rises, key=lambda u: losses[u + 1] / losses[u])
    return (
        f"the loss rose along exponential Euler at {len(rises)} of {len(losses) - 1} steps (the largest "
        f"×{losses[worst + 1] / losses[worst]:.3g}, step {worst} → {worst + 1}): the run left the gradient flow "
        "there; lower solver.eta_max or solver.step_c"
    )


def exp_factor(lam: torch.Tensor, dt: float) -> torch.Tensor:
    """R = min((1 − e^{−λ Δt}) / λ, Δt), and r = Δt where λ = 0 (docs/math.md §7 step 5).

    1 − e^{−λΔt} is computed as −expm1(−λΔt), exact to round-off even when λΔt is tiny. For
    λ > 0 the first argument is < Δt; the clamp acts only for λ ≤ 0, where it would grow.
    """
    safe = torch.where(lam == 0, torch.ones_like(lam), lam)
    r = -torch.expm1(-safe * dt) / safe
    return torch.where(lam == 0, torch.full_like(lam, dt), torch.clamp(r, max=dt))


def _record(report: StepReport, result: EigResult) -> None:
    report.eigenvalues = [float(v) for v in result.eigenvalues]
    report.eig_iters = result.iterations
    report.hvps = result.products
    report.low_hvps = result.low_products
    report.converged = bool(result.converged)
