"""The paper's block power iteration (docs/math.md §6 steps 1–5, D4), registered as ``"power"``.

V ← orthonormal(A V), as the paper iterates. The eigenvalue estimates are the Rayleigh–Ritz values
of the block (the eigenvalues of V A Vᵀ, free: A V is computed anyway), and the stopping test is
on the certified error bounds of those pairs (:func:`~eoslab.eigen._certify.error_bounds`: a
residual ρ bounds the error whatever the gap), not on the relative change of the estimates: the
authors' test |λ_new − λ_old| / (|λ_old| + 1e-6) < tol accepts any estimate that moves slowly,
converged or not (measured: on a spectrum with a 2 % gap at the top it stopped at errors up to
30 × tol). A cold start's result is checked for a missed eigenvalue
(:func:`~eoslab.eigen._certify.missed_eigenvector`); a found one replaces the block's last
vector and the iteration goes on.

Power iteration converges to the eigenvalues of largest *magnitude*, so:

* ``order="magnitude"`` is the paper's method as it is; the result is sorted by |λ|, and
  ``eigenvalues[k]`` (with k + 1 wanted) is the (k+1)-th by |λ|, as the authors' Δt uses it.
* ``order="algebraic"`` (D14) iterates the same way; once converged, if the block's k-th value
  is below the smallest magnitude in the block (so an eigenvalue outside the block may exceed it:
  the magnitude-top block held a negative eigenvalue), it continues on A + σI with
  σ = −(the most negative estimate) ≥ −λ_min, whose largest-magnitude eigenvalues are A's
  algebraically largest, and the columns of the negative estimates (A + σI's smallest, the worst
  start there) are replaced by fresh random vectors. The result is sorted by value.
"""

from __future__ import annotations

import torch

from ._certify import FLOOR, MAX_CONFIRMS, NOISE, error_bounds, missed_eigenvector
from ._start import random_rows
from .base import EigResult
from .order import check_order, order_key
from .registry import register_eigensolver


def _orthonormal_rows(V: torch.Tensor) -> torch.Tensor:
    """Orthonormalise the rows of V (j, P) by Householder QR of Vᵀ."""
    Q, _ = torch.linalg.qr(V.T)
    return Q.T.contiguous()


@register_eigensolver("power")
class BlockPower:
    """Block power iteration for k eigenpairs (docs/math.md §6).

    Args:
        k: eigenpairs wanted.
        tol: stop when each of the k estimates' error bound is ≤ tol · max(|λ|, 1e-8 · max |λ|)
            (the test LOBPCG uses; see the module docstring).
        max_iters: give up (``converged=False``) after this many block products.
        order: ``"algebraic"`` (D14) or ``"magnitude"`` (the paper's); see the module docstring.
        generator: RNG for the random start (and padding of a short warm start).
        guard: extra vectors iterated alongside and not tested (0, the paper's method, by
            default); they are returned as ``guard_vectors``.
        shift: iterate on A + σI from the start and report A's eigenvalues (0 is the paper's
            method). The order then applies to A + σI's eigenvalues.
    """

    def __init__(
        self,
        k: int,
        *,
        tol: float = 1e-4,
        max_iters: int = 1000,
        order: str = "algebraic",
        generator: torch.Generator | None = None,
        guard: int = 0,
        shift: float = 0.0,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if guard < 0:
            raise ValueError(f"guard must be >= 0, got {guard}")
        self.k, self.guard, self.tol, self.max_iters = k, guard, tol, max_iters
        self.order, self.generator, self.shift = check_order(order), generator, shift

    def solve(self, op, V0: torch.Tensor | None = None) -> EigResult:
        """Top-k eigenpairs of ``op``; ``V0`` (P, j) warm-starts the first j vectors."""
        m = min(self.k + self.guard, op.dim)
        k = min(self.k, m)
        start = op.products
        V = torch.empty(0, op.dim, dtype=op.dtype, device=op.device) if V0 is None else V0[:, :m].T.to(op.dtype)
        cold = V.shape[0] < m
        V = _orthonormal_rows(self._fill(V, m, op))
        shift, checks = self.shift, (MAX_CONFIRMS if cold and m < op.dim else 0)
        converged, it = False, 0
        while it < self.max_iters:
            it += 1
            W = op(V)
            theta, X, AX = _rayleigh_ritz(V, W)
            key = order_key(theta + self.shift, self.order)
            top = torch.argsort(key, descending=True, stable=True)
            theta, X, AX, key = theta[top], X[top], AX[top], key[top]
            rnorm = torch.linalg.vector_norm(AX - theta[:, None] * X, dim=1)
            bound, depth, edge = error_bounds(key, rnorm)
            scale = theta.abs().max()
            limit = torch.maximum(theta.abs(), FLOOR * scale)
            done = bool(((bound[:k] <= self.tol * limit[:k]) | (rnorm[:k] <= NOISE * scale)).all())
            if done and self.order == "algebraic" and bool(theta[k - 1] < (theta + shift).abs().min() - shift):
                # an eigenvalue outside the magnitude-top block may exceed the k-th value: rank by
                # value on A + σI, and restart the shifted-away columns at random
                shift = -float(theta.min())
                V = _orthonormal_rows(self._fill(X[theta >= 0], m, op))
                continue
            if done and checks:
                checks -= 1
                y = missed_eigenvector(op, X[: int(depth[:k].max())], float(edge[:k].min()), self.order, self.generator)
                if y is not None:
                    V = _orthonormal_rows(torch.cat([y, X[: m - 1]]))
                    continue
            if done:
                converged = True
                break
            V = _orthonormal_rows(W + shift * V)
        return EigResult(
            theta[:k].clone(),
            X[:k].T,
            it,
            op.products - start,
            rnorm[:k].clone(),
            converged,
            guard_vectors=X[k:].T,
            order=self.order,
            error_bounds=bound[:k].clone(),
        )

    def _fill(self, V: torch.Tensor, m: int, op) -> torch.Tensor:
        """V's rows, then random rows up to m."""
        if V.shape[0] >= m:
            return V
        return torch.cat([V, random_rows(m - V.shape[0], op, self.generator)])


def _rayleigh_ritz(V: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ritz values of the orthonormal rows V with W = A V, their vectors (rows) and A times them."""
    M = V @ W.T
    theta, U = torch.linalg.eigh((M + M.T) / 2)
    return theta, U.T @ V, U.T @ W


def block_power(
    op,
    k: int,
    V0: torch.Tensor | None = None,
    *,
    tol: float = 1e-4,
    max_iters: int = 1000,
    order: str = "algebraic",
    shift: float = 0.0,
    generator: torch.Generator | None = None,
) -> EigResult:
    """One solve by :class:`BlockPower` (the paper's block power iteration, docs/math.md §6)."""
    solver = BlockPower(k, tol=tol, max_iters=max_iters, order=order, generator=generator, shift=shift)
    return solver.solve(op, V0)
