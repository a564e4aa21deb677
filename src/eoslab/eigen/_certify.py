"""What makes an eigensolver's ``converged`` a promise (docs/math.md §6): the error bound of each
Ritz pair, and the check that a start (cold, or warm now and then: :func:`confirm_warm_solve`)
missed no eigenvalue above the pairs it returns.

A Ritz pair's residual ρ bounds its distance to *some* eigenvalue; which one, and the sharper
quadratic bound, depend on the rest of the spectrum, which Ritz values cannot see: a start block
with almost no component along the top eigenvector converges, with small residuals, to the
next eigenvalues instead (measured: ≈ 1 start in 500 on a spectrum with a 2 % gap at the top).
:func:`error_bounds` says what each bound relies on; :func:`missed_eigenvector` checks it, from
an independent random start, on the operator with the converged pairs deflated.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from ._start import random_rows
from .order import order_key

if TYPE_CHECKING:
    from .base import Eigensolver, EigResult

#: Absolute floor of the stopping tests, relative to the largest Ritz value.
FLOOR = 1e-8
#: Residuals at or below NOISE × the largest Ritz value are round-off: converged, never expanded.
NOISE = 1e-13
#: Deflated Lanczos checks of a cold start's result (each from a fresh random vector).
MAX_CONFIRMS = 2
#: Lanczos steps of a check: at least, at most.
CONFIRM_MIN_STEPS, CONFIRM_MAX_STEPS = 4, 60
#: A check stops when the top Ritz value's last two rises are each below this share of its
#: distance to the edge.
CONFIRM_RISE = 0.02


def error_bounds(key: torch.Tensor, rnorm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per Ritz pair j of a block (keys r_1 ≥ … ≥ r_m in the order's sense, residual norms ρ):
    a bound on the error of r_j as the j-th eigenvalue, the number of top pairs it relies on, and
    the edge above which no eigenvalue may have been missed for it to hold.

    The bound is the smallest of ρ_j and, over the windows of pairs a … p around j (p ≤ m − 1),
    (ρ_a² + … + ρ_p²) / δ_{a,p} with δ_{a,p} = min(r_{a−1} − r_a, r_p − (r_{p+1} + ρ_{p+1})) where
    positive (no upper side for a = 1). ρ_j alone bounds the distance from r_j to some eigenvalue
    (a symmetric operator); it is λ_j's when pairs 1 … j approximate λ_1 … λ_j, i.e. no
    eigenvalue above r_j + ρ_j was missed (depth j, edge r_j + ρ_j). The quadratic term is the
    Rayleigh–Ritz bound of a cluster of pairs (its residual's Frobenius norm squared over its gap
    to the rest of the spectrum, docs/math.md §6): the eigenvalues above it are ≥ r_{a−1} (Ritz
    values are lower bounds: λ_i ≥ r_i), those below ≤ r_{p+1} + ρ_{p+1} (depth p, edge
    r_{p+1} + ρ_{p+1}). A pair that has not converged gives no gap, so an unconverged guard or
    cold start cannot certify a quadratic bound; a window lets a cluster of near-equal pairs use
    the gaps around the whole cluster, and keeps the large residuals of the outliers above (a
    tiny relative residual of a λ of 1000 is large next to a bulk pair's) out of a bulk pair's
    bound. That nothing was missed above an edge is what no Ritz value can
    show; a cold start checks it (:func:`missed_eigenvector`).
    """
    m = key.numel()
    bound, depth, edge = rnorm.clone(), torch.arange(1, m + 1), key + rnorm
    r, rho = key.tolist(), rnorm.tolist()
    sq = [0.0]
    for x in rho:
        sq.append(sq[-1] + x * x)  # sq[i] = ρ_1² + … + ρ_i² (1-based)
    best = rho[:]
    for a in range(m - 1):  # windows of pairs a … p (0-based), p ≤ m − 2 (pair p + 1 bounds the rest below)
        up = r[a - 1] - r[a] if a else float("inf")  # eigenvalues above: ≥ r_{a−1} (Ritz values are lower bounds)
        for p in range(a, m - 1):
            low = r[p + 1] + rho[p + 1]  # eigenvalues below: ≤ r_{p+1} + ρ_{p+1}
            delta = min(up, r[p] - low)
            if delta <= 0:
                continue
            e = (sq[p + 1] - sq[a]) / delta
            for j in range(a, p + 1):
                if e < best[j]:
                    best[j] = e
                    bound[j], depth[j], edge[j] = e, p + 1, low
    return bound, depth, edge


def missed_eigenvector(
    op, X: torch.Tensor, kth: float, order: str, generator: torch.Generator | None
) -> torch.Tensor | None:
    """A check of a cold start's converged pairs X (rows: the top pairs the error bounds rely
    on): Lanczos on the deflated operator (I − XᵀX) A (I − XᵀX) from a fresh random vector.
    Returns, as a (1, P) row, the Ritz vector of an eigenvalue of the deflated operator beyond
    the bounds' edge ``kth`` (in the order's key) — an eigenvalue the block missed, because
    its start had almost no component along it — or None when the top Ritz value stops
    rising below ``kth``.

    The block's start and this check's are independent draws, so a miss needs both to be
    deficient; and deflation removes the block's own eigenvalues, so a missed one stands out
    from the rest of the spectrum and Lanczos finds it in a few steps. The vectors are not
    stored: a found Ritz vector is rebuilt by a second pass of the same recurrence.
    """

    def deflated(q: torch.Tensor) -> torch.Tensor:
        w = op(q[None])[0]
        return w.sub_(X.T @ (X @ w))

    q0 = random_rows(1, op, generator)[0]
    q0 -= X.T @ (X @ q0)
    q0 -= X.T @ (X @ q0)
    q0 /= torch.linalg.vector_norm(q0)
    betas: list[float]
    alphas, betas, rises, top = [], [], [], -torch.inf
    q_prev, q, beta = torch.zeros_like(q0), q0, 0.0
    found = None
    for j in range(CONFIRM_MAX_STEPS):
        w = deflated(q)
        alpha = float(q @ w)
        w.sub_(q, alpha=alpha).sub_(q_prev, alpha=beta)
        alphas.append(alpha)
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            T += torch.diag(off, 1) + torch.diag(off, -1)
        theta, U = torch.linalg.eigh(T)
        key = order_key(theta, order)
        best = int(torch.argmax(key))
        if float(key[best]) > kth:
            found = U[:, best]
            break
        rises.append(float(key[best]) - top)
        top = float(key[best])
        if j + 1 >= CONFIRM_MIN_STEPS and all(r <= CONFIRM_RISE * (kth - top) for r in rises[-2:]):
            return None
        beta = float(torch.linalg.vector_norm(w))
        if beta <= NOISE * max(abs(a) for a in alphas):  # an invariant subspace: nothing else
            return None
        betas.append(beta)
        q_prev, q = q, w / beta
    if found is None:
        return None
    y = torch.zeros_like(q0)  # the Ritz vector, by the same recurrence again
    q_prev, q = torch.zeros_like(q0), q0
    for j, s_j in enumerate(found.tolist()):
        y.add_(q, alpha=s_j)
        if j + 1 == found.numel():
            break
        w = deflated(q).sub_(q, alpha=alphas[j]).sub_(q_prev, alpha=betas[j - 1] if j else 0.0)
        q_prev, q = q, w / betas[j]
    return y[None]


def confirm_warm_solve(
    solver: Eigensolver, op: Any, V0: torch.Tensor | None, result: EigResult, generator: torch.Generator | None
) -> EigResult:
    """``result`` of ``solver.solve(op, V0)``, checked for an eigenvalue its block missed when it was
    warm-started (a cold start checks itself). A warm start that is still an accurate invariant
    subspace converges at once and explores nothing else, so an eigenvalue that rose past its
    pairs from directions the block does not couple to stays unseen, and the solve still reports
    ``converged``. The check is :func:`missed_eigenvector` on ``op`` deflated by the returned pairs,
    beyond the k-th pair's edge (value + residual); a found vector heads the next start block and
    the solve is repeated (at most :data:`MAX_CONFIRMS` times). Products and iterations of all of it
    are counted in the result. Callers run it periodically (docs/math.md §6).
    """
    if V0 is None or not result.converged:
        return result
    products, iterations = result.products, result.iterations
    for _ in range(MAX_CONFIRMS):
        k = result.eigenvalues.numel()
        kth = float(order_key(result.eigenvalues, result.order)[k - 1] + result.residual_norms[k - 1])
        before = op.products
        y = missed_eigenvector(op, result.eigenvectors.T, kth, result.order, generator)
        products += op.products - before
        if y is None:
            break
        start = result.warm_start()
        result = solver.solve(op, torch.cat([y.T, start], dim=1)[:, : start.shape[1]])
        products, iterations = products + result.products, iterations + result.iterations
    return dataclasses.replace(result, products=products, iterations=iterations)
