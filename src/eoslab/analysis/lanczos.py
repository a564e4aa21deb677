"""λ¹ of many small symmetric matrices at once, by batched Lanczos (docs/math.md §6).

:func:`batched_lanczos` runs the Lanczos three-term recurrence on n independent symmetric
operators together (one matrix-free product for all of them per step) and returns the top Ritz
value of each; it knows nothing about what the operators are. The analysis uses it for the
layerwise Jacobian norms ‖K_i‖² of every sample of a chunk
(:func:`eoslab.analysis.statistics.layerjac_sqnorms`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Relative Lanczos residual at which λ¹ is accepted; the eigenvalue error is about its square.
LANCZOS_TOL = 1e-6
#: Relative growth of the top Ritz value between checks below which λ¹ counts as converged.
STALL_RTOL = 1e-13
LANCZOS_MAX_STEPS = 500


def _top_ritz_value(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """λ¹(T) of n symmetric tridiagonal matrices T (diagonals alpha (n, j), off-diagonals beta
    (n, j−1)), by ``torch.linalg.eigvalsh`` of the small dense T (2–30× faster than Sturm-sequence
    multisection at the j ≤ 48 Lanczos steps used, ``benchmarks/lanczos_ritz.py``). A T with a
    non-finite entry (a diverged network's overflowing weights) gets NaN, never an error.
    """
    finite = torch.isfinite(alpha).all(1) & torch.isfinite(beta).all(1)
    T = torch.diag_embed(alpha) + torch.diag_embed(beta, 1) + torch.diag_embed(beta, -1)
    top = torch.full_like(alpha[:, 0], torch.nan)
    if finite.any():
        top[finite] = torch.linalg.eigvalsh(T[finite])[:, -1]
    return top


def _last_component_sq(alpha: torch.Tensor, beta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """s_j², the squared last component of the unit top eigenvector of T, evaluated at x just above
    λ¹(T): s_j² = χ_{j−1}(θ) / χ_j'(θ) = 1 / r_j'(θ), where r_k = χ_k / χ_{k−1} obeys
    r_1 = x − α_1, r_k = x − α_k − β_{k−1}² / r_{k−1}, r_k' = 1 + β_{k−1}² r_{k−1}' / r_{k−1}²
    (χ_k the characteristic polynomial of T's leading k × k block; every r_k > 0 above λ¹).
    """
    b2 = beta.square()
    big = torch.finfo(alpha.dtype).max
    r, rp = x - alpha[:, 0], torch.ones_like(x)
    for k in range(1, alpha.shape[1]):
        rp = 1 + b2[:, k - 1] * (rp / r.square()).clamp(max=big)
        r = x - alpha[:, k] - b2[:, k - 1] / r
    return (1 / rp).clamp(0, 1)


def batched_lanczos(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    *,
    tol: float = LANCZOS_TOL,
    max_steps: int = LANCZOS_MAX_STEPS,
) -> torch.Tensor:
    """λ¹ of n symmetric operators A_1..A_n at once, by Lanczos from the start vectors ``start``.

    The three-term recurrence alone, with no stored basis and no reorthogonalisation, which for
    the extreme eigenvalue loses nothing — loss of orthogonality only repeats converged Ritz
    values (Paige). The top Ritz value θ of the tridiagonal T_j (:func:`_top_ritz_value`) and the
    relative residual β_j |s_j| / θ of its Ritz vector (:func:`_last_component_sq`, evaluated just
    above θ) are checked after 8 steps and then every max(8, j/4) steps; the operators stop
    together once each has a residual ≤ ``tol`` (so |λ¹ − θ| ≲ tol² θ / relative gap) or a θ that
    grew by at most :data:`STALL_RTOL` since the last check (converged to round-off: once
    converged, plain Lanczos repeats θ as "ghosts", whose Ritz vectors never get small
    residuals), or after ``max_steps`` (then θ ≤ λ¹ is the best estimate). The only dense
    eigenproblems are the j × j tridiagonals.

    Args:
        matvec: (n, dim) → (n, dim), row m mapped by A_m.
        start: (n, dim), the start vectors (any nonzero scale; normalised here).
        tol, max_steps: the stopping above.

    Returns:
        (n,) top Ritz values.
    """
    n = start.shape[0]
    q = start / torch.linalg.vector_norm(start, dim=1, keepdim=True)
    q_prev, b = torch.zeros_like(q), q.new_zeros(n, 1)
    alphas, betas = [], []
    eps, tiny = torch.finfo(q.dtype).eps, torch.finfo(q.dtype).tiny
    previous, check = q.new_full((n,), -torch.inf), 8
    for j in range(1, max_steps + 1):
        w = matvec(q) - b * q_prev
        a = (w * q).sum(1, keepdim=True)
        w = w - a * q
        b = torch.linalg.vector_norm(w, dim=1, keepdim=True)
        alphas.append(a[:, 0])
        betas.append(b[:, 0])
        if j == check or j == max_steps:
            alpha, beta = torch.stack(alphas, 1), torch.stack(betas[:-1], 1)
            theta = _top_ritz_value(alpha, beta)
            above = theta + 4 * eps * theta.abs()  # just above λ¹(T_j), where every r_k > 0
            residual = b[:, 0] * _last_component_sq(alpha, beta, above).sqrt() / theta.abs().clamp(min=tiny)
            stalled = theta <= previous * (1 + STALL_RTOL)
            if bool(((residual <= tol) | stalled).all()) or j == max_steps:
                return theta
            previous, check = theta, j + max(8, j // 4)
        q_prev, q = q, w / b.clamp(min=tiny)
    raise ValueError(f"max_steps must be >= 1, got {max_steps}")
