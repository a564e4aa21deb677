"""The paper's block power iteration (docs/math.md §6 steps 1–5, D4), registered as ``"power"``.

V ← QR(A V); the eigenvalue estimates are diag(R) with the sign of each column flip undone; stop
when every wanted estimate changes by less than ``tol`` relatively, |λ_new − λ_old| /
(|λ_old| + 1e-6) < tol (the authors' test, D4).

Power iteration converges to the eigenvalues of largest *magnitude*, so:

* ``order="magnitude"`` is the paper's method as it is; the result is sorted by |λ|, and
  ``eigenvalues[k]`` (with k + 1 wanted) is the (k+1)-th by |λ|, as the authors' Δt uses it.
* ``order="algebraic"`` (D14) iterates the same way, and if an estimate of the block is negative
  once it has converged (so the magnitude-top block may differ from the algebraic top), continues
  on A + σI with σ = −(that most negative estimate) ≥ −λ_min, whose largest-magnitude
  eigenvalues are A's algebraically largest. (If every estimate is ≥ 0, the two sets coincide:
  every eigenvalue outside the block is smaller in magnitude, hence in value.) The result is
  sorted by value.
"""

from __future__ import annotations

import torch

from . import EigResult, check_order, random_rows, register_eigensolver, top_indices

#: The absolute term of the authors' relative-change test (docs/math.md §6 step 5).
CHANGE_FLOOR = 1e-6


def _orthonormal_rows(V: torch.Tensor) -> torch.Tensor:
    """Orthonormalise the rows of V (j, P) by Householder QR of Vᵀ."""
    Q, _ = torch.linalg.qr(V.T)
    return Q.T.contiguous()


@register_eigensolver("power")
class BlockPower:
    """Block power iteration for k eigenpairs (docs/math.md §6).

    Args:
        k: eigenpairs wanted.
        tol: stop when |λ_new − λ_old| / (|λ_old| + 1e-6) < tol for each of the k estimates.
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
        if V.shape[0] < m:
            V = torch.cat([V, random_rows(m - V.shape[0], op, self.generator)])
        V = _orthonormal_rows(V)
        shift = self.shift
        lam_old = torch.full((m,), float("inf"), dtype=op.dtype, device=op.device)
        converged, it = False, 0
        while it < self.max_iters:
            it += 1
            W = op(V)
            if shift:
                W = W + shift * V
            Q, Rm = torch.linalg.qr(W.T)
            # diag(R) carries the sign of the QR's column flips; undo it against the input block
            signs = torch.sign((Q * V.T).sum(0))
            signs[signs == 0] = 1.0
            lam = torch.diagonal(Rm) * signs - shift  # estimates of A's eigenvalues
            residual = torch.linalg.vector_norm(W - (V * W).sum(1, keepdim=True) * V, dim=1)
            wanted = top_indices(lam + shift, k, "magnitude")
            change = (lam - lam_old).abs() / (lam_old.abs() + CHANGE_FLOOR)
            V = (Q * signs).T.contiguous()
            lam_old = lam
            if bool((change[wanted] < self.tol).all()):
                if self.order == "algebraic" and shift == 0.0 and bool((lam[wanted] < 0).any()):
                    # the magnitude-top block holds a negative eigenvalue: its most negative
                    # estimate is λ_min, so A − λ_min I ranks A's eigenvalues by value
                    shift = -float(lam[wanted].min())
                    lam_old = torch.full_like(lam, float("inf"))
                    continue
                converged = True
                break
        ranked = top_indices(lam_old + shift, m, "magnitude")
        wanted, rest = ranked[:k], ranked[k:]
        if self.order == "algebraic":
            wanted = wanted[torch.argsort(lam_old[wanted], descending=True, stable=True)]
        order = torch.cat([wanted, rest])
        values, rows, res = lam_old[order], V[order], residual[order]
        return EigResult(
            values[:k].clone(),
            rows[:k].T,
            it,
            op.products - start,
            res[:k],
            converged,
            guard_vectors=rows[k:].T,
            order=self.order,
        )


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
