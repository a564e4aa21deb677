"""The Hessian's spectrum beyond λ¹ (docs/math.md §9): numerics on any symmetric operator.

Every function takes an operator of :mod:`eoslab.curvature` (``op(V)`` on a block of rows V
(k, P), ``op.dim``, ``op.dtype``, ``op.device``; a :class:`~eoslab.curvature.LinearOperator`, e.g.
``loss.operator(theta, "H")``) and returns a result dataclass; nothing here prints or writes.

* :func:`hutchinson_trace` — tr A ≈ mean of zᵀAz over Rademacher z, with its standard error
  (Eq. S4);
* :func:`lanczos_quadrature` — the stochastic Lanczos quadrature (SLQ) spectral density
  φ(λ) = (1/P) Σ_i δ(λ − λ_i) as nodes and weights per probe (Eq. S5), smoothed by
  :meth:`SpectralDensity.density`, with the negative mass φ(λ < 0) and bounds on it (Eq. S6);
* :func:`bottom_eigenvalues` — the k algebraically smallest eigenpairs (the top of −A);
* :func:`block_sharpness` — λ¹ of A[g, g] for each parameter group g (H restricted to one layer,
  Eq. S7);
* :func:`spectrum_summary` — all of them for H at one θ, with :meth:`SpectrumSummary.rows` in the
  long format of ``analysis.parquet`` (the analysis's optional ``analysis.spectrum``).

Probe vectors are drawn on the CPU from a ``torch.Generator`` (one seed, one draw on any device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .curvature import FullBatchLoss, LinearOperator
from .eigen import EigResult, make_eigensolver


def _rademacher(count: int, op, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` rows of i.i.d. ±1 entries, (count, P), drawn on the CPU."""
    z = torch.randint(0, 2, (count, op.dim), generator=generator, dtype=torch.int8)
    return (2 * z - 1).to(dtype=op.dtype, device=op.device)


def _tridiagonal(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The symmetric tridiagonal matrix with diagonal ``alpha`` (m,) and off-diagonal ``beta`` (m − 1,)."""
    return torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)


@dataclass
class TraceEstimate:
    """Hutchinson's estimate of tr A (Eq. S4).

    Attributes:
        value: the mean of the samples zᵀAz.
        stderr: their standard deviation (n − 1 in the denominator) over √n, the standard error
            of ``value``.
        samples: (n,), the samples zᵀAz.
        products: operator products used (= n).
    """

    value: float
    stderr: float
    samples: torch.Tensor
    products: int


def hutchinson_trace(
    op, samples: int = 100, *, block: int = 20, generator: torch.Generator | None = None
) -> TraceEstimate:
    """The trace tr A by Hutchinson's estimator (Eq. S4): zᵀAz for ``samples`` Rademacher vectors z,
    ``block`` of them per operator call (one pass over the data per block).

    E[zᵀAz] = tr A, Var[zᵀAz] = 2 (‖A‖_F² − Σ_i A_ii²): exact for a diagonal A.
    """
    if samples < 2:
        raise ValueError(f"samples must be >= 2 (the standard error needs two), got {samples}")
    values = []
    for start in range(0, samples, block):
        Z = _rademacher(min(block, samples - start), op, generator)
        values.append((op(Z) * Z).sum(1))
    v = torch.cat(values)
    return TraceEstimate(float(v.mean()), float(v.std() / math.sqrt(samples)), v.cpu(), samples)


@dataclass
class SpectralDensity:
    """The SLQ estimate of the spectral density φ (Eq. S5): per probe vector v_p, the Gauss
    quadrature of the measure Σ_i (q_iᵀv_p)² δ(λ − λ_i) (q_i the eigenvectors of A, ‖v_p‖ = 1).

    Attributes:
        nodes: (probes, m), the Ritz values of each probe's Lanczos tridiagonal T_m.
        weights: (probes, m), the squared first components of T_m's eigenvectors (each row sums
            to 1; a probe whose Krylov space closed after j < m steps has zero weights after j).
        products: operator products used.
        alpha, beta: (probes, m), T_m's diagonal and the Lanczos β_1 … β_m (β_m: the next
            off-diagonal, for the Gauss–Radau rules of :meth:`mass_below_bounds`).
        length: (probes,), the steps each probe took (< m where its Krylov space closed).
    """

    nodes: torch.Tensor
    weights: torch.Tensor
    products: int
    alpha: torch.Tensor
    beta: torch.Tensor
    length: torch.Tensor

    def expectation(self, f) -> float:
        """(1/probes) Σ_p Σ_j w_pj f(node_pj) ≈ (1/P) tr f(A) (Eq. S5)."""
        return float((self.weights * f(self.nodes)).sum(1).mean())

    def mass_below_bounds(self, tau: float = 0.0) -> torch.Tensor:
        """Per probe, bounds (probes, 2) on its measure's mass below ``tau``, μ_p(λ < τ) (Eq. S6).

        The Gauss–Radau rule with a node fixed at τ (T_m extended by one row so that τ is an
        eigenvalue: α̃ = τ + β_m² [(T_m − τ)⁻¹]_mm, Golub 1973) has nodes x_j and weights w_j with
        Σ_{x_j<τ} w_j ≤ μ_p(λ < τ) ≤ μ_p(λ ≤ τ) ≤ Σ_{x_j≤τ} w_j (the Chebyshev–Markov–Stieltjes
        inequalities). The weight at τ is what m steps cannot place on either side: large when much
        of the spectrum sits at τ (H's null space in an over-parameterised network: then the Gauss
        estimate Σ_{θ_j<τ} w_j can be far off either way). A probe whose Krylov space closed has the
        exact measure. Nodes within 1e-10 × the largest |node| of τ count as at τ (round-off).
        """
        bounds = torch.zeros(self.nodes.shape[0], 2, dtype=self.nodes.dtype)
        for p in range(self.nodes.shape[0]):
            m, b = int(self.length[p]), float(self.beta[p, int(self.length[p]) - 1])
            x, w = self.nodes[p, :m], self.weights[p, :m]
            near = 1e-10 * float(x.abs().max())
            if m == self.nodes.shape[1] and b > 0 and bool(((x - tau).abs() > near).all()):
                T = _tridiagonal(self.alpha[p, :m], self.beta[p, : m - 1])
                _, vectors = torch.linalg.eigh(T)
                last = float((vectors[-1].square() / (x - tau)).sum())  # [(T_m − τ)⁻¹]_mm
                R = torch.zeros(m + 1, m + 1, dtype=T.dtype)
                R[:m, :m], R[m - 1, m], R[m, m - 1], R[m, m] = T, b, b, tau + b * b * last
                values, vectors = torch.linalg.eigh(R)
                x, w = values, vectors[0].square()
            bounds[p, 0] = w[x < tau - near].sum()
            bounds[p, 1] = w[x <= tau + near].sum()
        return bounds

    @property
    def negative_mass_bounds(self) -> tuple[float, float]:
        """Bounds on the SLQ estimate of φ(λ < 0) (Eq. S6): the mean over probes of each probe's
        :meth:`mass_below_bounds` at 0 (certain for each probe's measure; the mean over probes is
        the stochastic estimate of the share of A's eigenvalues).
        """
        low, high = self.mass_below_bounds(0.0).mean(0).tolist()
        return low, high

    @property
    def negative_mass(self) -> float:
        """φ(λ < 0) ≈ (number of negative eigenvalues) / P (Eq. S6): the middle of
        :attr:`negative_mass_bounds`, which say how far it can be off for these probes.
        """
        low, high = self.negative_mass_bounds
        return 0.5 * (low + high)

    def density(self, grid: torch.Tensor, sigma: float) -> torch.Tensor:
        """φ smoothed by a Gaussian of width ``sigma`` at the points ``grid`` (Eq. S5): integrates to 1."""
        grid = grid.to(self.nodes.dtype)
        gauss = torch.exp(-0.5 * ((grid[:, None, None] - self.nodes) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return (gauss * self.weights).sum(2).mean(1)


def lanczos_quadrature(
    op, probes: int = 4, steps: int = 40, *, generator: torch.Generator | None = None
) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Eq. S5; Ubaru, Chen & Saad 2017; PyHessian's density):
    ``steps`` Lanczos steps with full reorthogonalisation from each of ``probes`` normalised
    Rademacher vectors, all probes in one block (one operator call per step). With
    steps = P the quadrature is exact: the nodes are A's eigenvalues (those the probe sees) and
    Σ_j w_j f(node_j) = vᵀ f(A) v.
    """
    steps = min(steps, op.dim)
    Q = op.dtype, op.device
    V = _rademacher(probes, op, generator) / math.sqrt(op.dim)
    basis = torch.zeros(probes, steps, op.dim, dtype=Q[0], device=Q[1])
    alpha = torch.zeros(probes, steps, dtype=Q[0], device=Q[1])
    beta = torch.zeros(probes, steps, dtype=Q[0], device=Q[1])
    length = torch.full((probes,), steps, dtype=torch.long)
    for j in range(steps):
        basis[:, j] = V
        W = op(V)
        alpha[:, j] = (W * V).sum(1)
        # full reorthogonalisation against the probe's basis (twice: "twice is enough")
        for _ in range(2):
            W = W - torch.einsum("pj,pjd->pd", torch.einsum("pjd,pd->pj", basis[:, : j + 1], W), basis[:, : j + 1])
        b = torch.linalg.vector_norm(W, dim=1)
        scale = alpha[:, : j + 1].abs().amax(1).clamp(min=torch.finfo(Q[0]).tiny)
        closed = (b <= 1e-10 * scale) & (length == steps)
        length[closed.cpu()] = j + 1
        beta[:, j] = b
        V = torch.where((length > j + 1).to(Q[1])[:, None], W / b.clamp(min=torch.finfo(Q[0]).tiny)[:, None], 0.0)
    nodes = torch.zeros(probes, steps, dtype=Q[0])
    weights = torch.zeros(probes, steps, dtype=Q[0])
    for p in range(probes):
        m = int(length[p])
        values, vectors = torch.linalg.eigh(_tridiagonal(alpha[p, :m], beta[p, : m - 1]).cpu())
        nodes[p, :m], weights[p, :m] = values, vectors[0].square()
    return SpectralDensity(nodes, weights, probes * steps, alpha.cpu(), beta.cpu(), length)


def bottom_eigenvalues(
    op: LinearOperator,
    k: int = 1,
    *,
    tol: float = 1e-4,
    max_iters: int = 200,
    generator: torch.Generator | None = None,
    V0: torch.Tensor | None = None,
) -> EigResult:
    """The k algebraically smallest eigenpairs of A, ascending: the top k of −A by the default
    eigensolver (LOBPCG, docs/math.md §6), negated back (``eigenvalues[0]`` = λ_min).
    """
    result = make_eigensolver("lobpcg", k, tol=tol, max_iters=max_iters, generator=generator).solve(-op, V0)
    result.eigenvalues = -result.eigenvalues
    return result


def block_sharpness(
    op: LinearOperator,
    parts: dict[str, slice],
    *,
    tol: float = 1e-4,
    max_iters: int = 200,
    generator: torch.Generator | None = None,
) -> dict[str, EigResult]:
    """λ¹ of each diagonal block A[g, g] (Eq. S7; for H, the Hessian of the loss in one parameter
    group's parameters with the others fixed), by LOBPCG on :meth:`LinearOperator.restrict`. Each
    product is a full product of A (the block's rows are cut out of it).
    """
    solver = make_eigensolver("lobpcg", 1, tol=tol, max_iters=max_iters, guard=1, generator=generator)
    return {name: solver.solve(op.restrict(part)) for name, part in parts.items()}


@dataclass
class SpectrumSummary:
    """The spectrum of H at one θ beyond λ¹ (docs/math.md §9; metrics: docs/metrics.md).

    Attributes:
        trace: Hutchinson's tr H (Eq. S4).
        density: the SLQ density of H (Eq. S5).
        bottom: the smallest eigenpair of H.
        blocks: λ¹ of the Hessian block of each parameter group, by group name in θ order (Eq. S7).
        products: H·v products used in all.
    """

    trace: TraceEstimate
    density: SpectralDensity
    bottom: EigResult
    blocks: dict[str, EigResult]
    products: int

    def unconverged(self) -> list[str]:
        """The rows whose eigensolve stopped before its tolerance (their values are estimates):
        ``bottom_eigenvalue_H`` and ``block_sharpness_H (group)``.
        """
        bottom = [] if self.bottom.converged else ["bottom_eigenvalue_H"]
        return bottom + [f"block_sharpness_H ({name})" for name, r in self.blocks.items() if not r.converged]

    def rows(self, step: int, t: float) -> list[dict]:
        """Long-format rows ``step, t, metric, layer, value`` (``analysis.parquet``):
        ``hessian_trace``, ``hessian_trace_stderr``, ``bottom_eigenvalue_H``, ``negative_mass``
        with its bounds ``negative_mass_low``/``_high``, and ``block_sharpness_H`` per parameter
        group (layer 1..G).
        """
        low, high = self.density.negative_mass_bounds
        whole = {
            "hessian_trace": self.trace.value,
            "hessian_trace_stderr": self.trace.stderr,
            "bottom_eigenvalue_H": float(self.bottom.eigenvalues[0]),
            "negative_mass": 0.5 * (low + high),
            "negative_mass_low": low,
            "negative_mass_high": high,
        }
        rows = [dict(step=step, t=t, metric=m, layer=None, value=float(v)) for m, v in whole.items()]
        rows += [
            dict(step=step, t=t, metric="block_sharpness_H", layer=i + 1, value=float(r.eigenvalues[0]))
            for i, r in enumerate(self.blocks.values())
        ]
        return rows


def spectrum_summary(
    loss: FullBatchLoss,
    theta: torch.Tensor,
    *,
    trace_samples: int = 100,
    probes: int = 4,
    steps: int = 40,
    tol: float = 1e-4,
    seed: int = 0,
) -> SpectrumSummary:
    """:class:`SpectrumSummary` of H at θ over ``loss``'s data: ``trace_samples`` + ``probes`` ×
    ``steps`` products, plus the bottom and per-group λ¹ solves (docs/math.md §9, the cost).
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    H = loss.operator(theta, "H")
    parts = {group.name: group.slice for group in loss.model.groups()}
    trace = hutchinson_trace(H, trace_samples, generator=g)
    density = lanczos_quadrature(H, probes, steps, generator=g)
    bottom = bottom_eigenvalues(H, 1, tol=tol, generator=g)
    blocks = block_sharpness(H, parts, tol=tol, generator=g)
    return SpectrumSummary(trace, density, bottom, blocks, H.products)
