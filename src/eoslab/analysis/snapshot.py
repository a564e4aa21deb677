"""The decomposition of the sharpness at one snapshot (docs/math.md §3–§6, Eqs. 2–8).

For one parameter vector θ and one dataset (a :class:`~eoslab.curvature.FullBatchLoss`),
:func:`analyze_snapshot` solves for λ¹ of H, G and R = H − G (Eq. 2, :func:`top_eigenvalues`)
and computes the expectations of :mod:`eoslab.analysis.statistics` (every factor of Eqs. 4–8 for
the paper's MLP, those of Eq. 4 for any other model), as a
:class:`~eoslab.analysis.result.SnapshotAnalysis`. How (the eigensolver, the chunk size, the
seed) is one :class:`AnalysisSpec`, the same for every snapshot of a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..curvature import OPERATORS, FullBatchLoss
from ..eigen import EigResult, confirm_warm_solve
from ..eigspec import EigSpec
from ..models import MLP
from .result import SnapshotAnalysis
from .statistics import DEFAULT_CHUNK_SIZE, group_statistics, layerwise_statistics

#: The λ¹ solves' eigensolver: LOBPCG to D4's 1e-4 within 200 iterations, one guard vector.
SHARPNESS_SOLVER = EigSpec(max_iters=200, guard=1)


@dataclass(frozen=True)
class AnalysisSpec:
    """How a snapshot is analysed (:func:`analyze_snapshot`).

    Attributes:
        eigensolver: the λ¹ solves' eigensolver, k = 1 (:func:`top_eigenvalues`; LOBPCG stops
            when its error estimate of λ¹ is ≤ tol·|λ¹|, see :class:`~eoslab.eigen.LOBPCG`).
        chunk_size: samples per chunk of the per-sample part (memory ∝ chunk_size × L × n_L × width).
        seed: for the random starts of the eigensolvers (and of the Lanczos runs for ‖K_i‖²).
    """

    eigensolver: EigSpec = SHARPNESS_SOLVER
    chunk_size: int | None = DEFAULT_CHUNK_SIZE
    seed: int = 0


def top_eigenvalues(
    loss: FullBatchLoss,
    theta: torch.Tensor,
    eigensolver: EigSpec = SHARPNESS_SOLVER,
    *,
    warm_start: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    operators: tuple[str, ...] = OPERATORS,
) -> dict[str, EigResult]:
    """λ¹ (algebraically largest, D14) of H, G and R = H − G (Eq. 2), k = 1 (R·V as a Hessian block
    of the scalar E[sg(∇_f ℓ) · f], formed by the loss's ``hvp_method``:
    :meth:`FullBatchLoss.residual_vp`).

    Args:
        eigensolver: the solver, its stopping (D4's 1e-4 by default; ``converged`` is False when
            its iterations run out) and guard vectors.
        warm_start: optional start vectors (P, j) per operator name, e.g. the previous
            snapshot's :meth:`SnapshotAnalysis.eigenvectors`; a warm-started solve is checked
            for an eigenvalue it missed (:func:`~eoslab.eigen.confirm_warm_solve`).
        seed: for the solver's random starts.
        operators: which of H, G, R to solve for.
    """
    warm_start = warm_start or {}
    generator = torch.Generator(device="cpu").manual_seed(seed)
    solver = eigensolver.make(1, generator)
    solves = {}
    for which in operators:  # a warm start (the previous snapshot's vectors) is checked every time
        op, V0 = loss.operator(theta, which), warm_start.get(which)
        solves[which] = confirm_warm_solve(solver, op, V0, solver.solve(op, V0), generator)
    return solves


def analyze_snapshot(
    loss: FullBatchLoss,
    theta: torch.Tensor,
    spec: AnalysisSpec = AnalysisSpec(),
    *,
    step: int = 0,
    t: float = 0.0,
    warm_start: dict[str, torch.Tensor] | None = None,
    c5_t0: float | None = None,
) -> SnapshotAnalysis:
    """The full decomposition of §3–§6 at θ over the dataset of ``loss`` (the MLP-only factors
    for the MLP alone, see :mod:`eoslab.analysis.statistics`).

    Args:
        spec: the eigensolver, chunk size and seed.
        step, t: the snapshot's step and (gradient-flow) time, recorded in the result.
        warm_start: start vectors of the three λ¹ solves (:func:`top_eigenvalues`).
        c5_t0: C5 of layer 1 at t0 for the stability bound (D15: the run's first analysed
            snapshot); None uses this snapshot's own C5 (a lone snapshot). Ignored for a model
            other than the MLP.
    """
    eig = top_eigenvalues(loss, theta, spec.eigensolver, warm_start=warm_start, seed=spec.seed)
    model, data = loss.model, (loss.criterion, theta, loss.X, loss.y)
    if not isinstance(model, MLP):
        stats = group_statistics(model, *data, chunk_size=spec.chunk_size, reduction=loss.data.reduction)
        return SnapshotAnalysis(step=int(step), t=float(t), eig=eig, stats=stats, c5_t0=None)
    stats = layerwise_statistics(
        model, *data, chunk_size=spec.chunk_size, seed=spec.seed, reduction=loss.data.reduction
    )
    c5 = float(stats.layer1_factors()[4]) if c5_t0 is None else float(c5_t0)
    return SnapshotAnalysis(step=int(step), t=float(t), eig=eig, stats=stats, c5_t0=c5)
