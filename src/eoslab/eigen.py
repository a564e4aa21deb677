"""Top eigenpairs of the symmetric curvature operators H, G, R (docs/math.md §6, D4, D14).

Two solvers return the same :class:`EigResult`:

* :func:`block_power` — the paper's block power iteration (§6 steps 1–5): V ← QR(A V), eigenvalue
  estimates from diag(R), stop when every estimate changes by less than ``tol`` relatively.
  It converges to the eigenvalues of largest *magnitude*; ``shift`` σ iterates on A + σI instead,
  which turns the algebraically largest into the largest in magnitude when σ ≥ −λ_min.
* :class:`LOBPCG` — locally optimal block preconditioned conjugate gradient with Rayleigh–Ritz on
  span[X, W, P] and guard vectors. It targets the algebraically largest eigenvalues (D14), so the
  indefinite R is handled natively, and it stops when the residual-based error bound of every
  wanted Ritz value is below tol (relative); a warm start that is already accurate costs one block.
  The block buffers are kept between calls (they are hundreds of MB at the paper's size).

Neither raises on non-convergence: ``converged`` says whether the criterion was met.
Eigenvalues are returned in descending algebraic order (D14), eigenvectors as columns (P, k).
Inside, blocks are stored with vectors as rows, (k, P), as the operators take them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .curvature import LinearOperator


@dataclass
class EigResult:
    """Top-k eigenpairs of a symmetric operator.

    Attributes:
        eigenvalues: (k,), descending by value.
        eigenvectors: (P, k), orthonormal columns, matching ``eigenvalues``.
        iterations: block iterations performed.
        products: single-vector operator products used (a block of k counts k).
        residual_norms: (k,), ‖A v − λ v‖ for each returned pair (block power: of the last
            iterate, which the returned vectors improve on).
        converged: whether the stopping criterion was met for all k pairs.
        guard_vectors: (P, g), LOBPCG's guard vectors (empty for block power); pass
            ``cat([eigenvectors, guard_vectors], 1)`` as the next warm start to reuse them.
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    iterations: int
    products: int
    residual_norms: torch.Tensor
    converged: bool
    guard_vectors: torch.Tensor | None = None

    def warm_start(self) -> torch.Tensor:
        """Start vectors for the next solve: the eigenvectors, then the guard vectors."""
        if self.guard_vectors is None or self.guard_vectors.shape[1] == 0:
            return self.eigenvectors
        return torch.cat([self.eigenvectors, self.guard_vectors], dim=1)


def _random_block(k: int, dim: int, like: LinearOperator, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(k, dim, generator=generator, dtype=like.dtype).to(like.device)


def _orthonormal_rows(V: torch.Tensor) -> torch.Tensor:
    """Orthonormalise the rows of V (k, P) by Householder QR of Vᵀ."""
    Q, _ = torch.linalg.qr(V.T)
    return Q.T.contiguous()


def _sorted(values: torch.Tensor, vectors_rows: torch.Tensor, residuals: torch.Tensor):
    order = torch.argsort(values, descending=True)
    return values[order], vectors_rows[order], residuals[order]


def block_power(
    op: LinearOperator,
    k: int,
    V0: torch.Tensor | None = None,
    *,
    tol: float = 1e-4,
    max_iters: int = 1000,
    shift: float = 0.0,
    generator: torch.Generator | None = None,
) -> EigResult:
    """The paper's block power iteration (docs/math.md §6, D4).

    Args:
        op: the operator A.
        k: number of eigenpairs.
        V0: warm start, (P, k) columns (e.g. the previous call's eigenvectors); random N(0, 1)
            otherwise.
        tol: stop when |λ_new − λ_old| / (|λ_old| + 1e-6) < tol for every estimate.
        max_iters: give up (``converged=False``) after this many block products.
        shift: iterate on A + σI and report eigenvalues of A (σ = 0 is the paper's method).
    """
    start = op.products
    V = _random_block(k, op.dim, op, generator) if V0 is None else V0.T.to(op.dtype).contiguous()
    V = _orthonormal_rows(V)
    lam_old = torch.full((k,), float("inf"), dtype=op.dtype, device=op.device)
    converged, it = False, 0
    for it in range(1, max_iters + 1):
        W = op(V)
        if shift:
            W = W + shift * V
        Q, Rm = torch.linalg.qr(W.T)
        # diag(R) carries the sign of the QR's column flips; undo it against the input block.
        signs = torch.sign((Q * V.T).sum(0))
        signs[signs == 0] = 1.0
        lam = torch.diagonal(Rm) * signs
        residual = torch.linalg.vector_norm(W - (V * W).sum(1, keepdim=True) * V, dim=1)
        rel = (lam - lam_old).abs() / (lam_old.abs() + 1e-6)
        V = (Q * signs).T.contiguous()
        lam_old = lam
        if bool((rel < tol).all()):
            converged = True
            break
    values, rows, res = _sorted(lam_old - shift, V, residual)
    return EigResult(values, rows.T, it, op.products - start, res, converged)


class LOBPCG:
    """LOBPCG for the algebraically largest k eigenpairs, with ``guard`` extra vectors.

    Args:
        k: eigenpairs wanted.
        guard: extra vectors iterated alongside (they speed up convergence of the k-th pair and
            are not checked for convergence). Default max(2, k // 4).
        tol: stop when the estimated error of every wanted Ritz value is ≤ tol · |θ_j|, the
            estimate being min(‖r_j‖, ‖r_j‖²/δ_j) (see :meth:`_error_bound`).
        max_iters: block iterations after the first product.
        generator: RNG for random starts and for padding a warm start with fewer than k + guard
            vectors.
    """

    def __init__(
        self,
        k: int,
        *,
        guard: int | None = None,
        tol: float = 1e-4,
        max_iters: int = 200,
        generator: torch.Generator | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.guard = max(2, k // 4) if guard is None else guard
        self.tol, self.max_iters, self.generator = tol, max_iters, generator
        self._S: torch.Tensor | None = None  # basis [X; W; P], vectors as rows
        self._AS: torch.Tensor | None = None  # A times the basis

    def _buffers(self, m: int, op: LinearOperator) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (3 * m, op.dim)
        if self._S is None or self._S.shape != shape or self._S.dtype != op.dtype or self._S.device != op.device:
            self._S = torch.empty(shape, dtype=op.dtype, device=op.device)
            self._AS = torch.empty(shape, dtype=op.dtype, device=op.device)
        return self._S, self._AS

    def solve(self, op: LinearOperator, V0: torch.Tensor | None = None) -> EigResult:
        """Top-k eigenpairs of ``op``; ``V0`` (P, j) warm-starts the first j of the k + guard
        vectors (use :meth:`EigResult.warm_start` of the previous solve).
        """
        m = min(self.k + self.guard, op.dim)
        k = min(self.k, m)
        start = op.products
        S, AS = self._buffers(m, op)  # rows: X = [0, m), P = [m, m + n_p), W after P
        S[:m] = self._start_block(m, op, V0)
        AS[:m] = op(S[:m])
        theta, n_p = self._rayleigh_ritz(S, AS, m, n_basis=m, orthonormal=True), 0
        converged, it = False, 0
        for it in range(1, self.max_iters + 1):
            X, AX = S[:m], AS[:m]
            Rres = AX - theta.unsqueeze(1) * X
            ok = self._error_bound(theta, torch.linalg.vector_norm(Rres, dim=1)) <= self.tol * theta.abs()
            if bool(ok[:k].all()):
                converged = True
                break
            # residuals of the unconverged pairs (guards included); Ritz residuals are already
            # orthogonal to span X, and the Gram matrix of the next Rayleigh–Ritz absorbs the rest
            W = Rres[~ok]
            nrm = torch.linalg.vector_norm(W, dim=1, keepdim=True)
            if not bool((nrm > 0).any()):  # residuals vanished: nothing left to add
                break
            W = W * torch.where(nrm > 0, 1.0 / nrm, torch.zeros_like(nrm))
            n_w = W.shape[0]
            S[m + n_p : m + n_p + n_w] = W
            AS[m + n_p : m + n_p + n_w] = op(W)
            theta = self._rayleigh_ritz(S, AS, m, n_basis=m + n_p + n_w)
            n_p = m
        residual = torch.linalg.vector_norm(AS[:m] - theta.unsqueeze(1) * S[:m], dim=1)
        return EigResult(
            theta[:k].clone(),
            S[:k].clone().T,
            it,
            op.products - start,
            residual[:k],
            converged,
            guard_vectors=S[k:m].clone().T,
        )

    # -- helpers ---------------------------------------------------------------------------
    def _start_block(self, m: int, op: LinearOperator, V0: torch.Tensor | None) -> torch.Tensor:
        """M orthonormal start rows: the warm start V0's columns (eigenvectors and guard vectors
        of a previous solve, :meth:`EigResult.warm_start`), then random rows; orthonormalised by
        SVQB (a Gram matrix and one product, much cheaper than a Householder QR of a P × m
        block), which an orthonormal warm start skips.
        """
        X = torch.empty(0, op.dim, dtype=op.dtype, device=op.device) if V0 is None else V0[:, :m].T.to(op.dtype)
        if X.shape[0] == m:
            gram = X @ X.T
            if float((gram - torch.eye(m, dtype=X.dtype, device=X.device)).abs().max()) < 1e-10:
                return X  # the usual warm start: already orthonormal
        while True:
            if X.shape[0] < m:
                X = torch.cat([X, _random_block(m - X.shape[0], op.dim, op, self.generator)])
            Q = self._orthonormalise(X)
            if Q is not None and Q.shape[0] >= m:
                return Q[:m]
            X = X[:0] if Q is None else Q

    @staticmethod
    def _error_bound(theta: torch.Tensor, rnorm: torch.Tensor) -> torch.Tensor:
        """Estimated |λ_j − θ_j| for each Ritz pair: min(‖r_j‖, ‖r_j‖² / δ_j).

        ‖r_j‖ bounds the error of a symmetric operator's Ritz value; the quadratic bound
        ‖r_j‖²/δ_j needs δ_j, the gap from θ_j to the spectrum outside the block. With guard
        vectors, the block's smallest Ritz value θ_{m−1} stands in for that spectrum's top, so
        δ_j = θ_j − θ_{m−1} (a near-degenerate pair straddling the k-th eigenvalue is then
        handled by the guards instead of stalling convergence).
        """
        delta = (theta - theta[-1]).clamp(min=torch.finfo(theta.dtype).tiny)
        return torch.minimum(rnorm, rnorm**2 / delta)

    @staticmethod
    def _orthonormalise(W: torch.Tensor, drop: float = 1e-10) -> torch.Tensor | None:
        """Orthonormal rows spanning W's rows (SVQB twice: eigh of the Gram matrix, directions
        with relative weight below ``drop`` dropped). None if nothing is left.
        """
        W = W / torch.linalg.vector_norm(W, dim=1, keepdim=True).clamp(min=torch.finfo(W.dtype).tiny)
        for _ in range(2):
            mu, U = torch.linalg.eigh(W @ W.T)
            keep = mu > drop * mu.max().clamp(min=0)
            if not bool(keep.any()):
                return None
            W = (U[:, keep].T @ W) / mu[keep].sqrt().unsqueeze(1)
        return W

    def _rayleigh_ritz(
        self, S: torch.Tensor, AS: torch.Tensor, m: int, *, n_basis: int, orthonormal: bool = False
    ) -> torch.Tensor:
        """Rayleigh–Ritz on span of the rows S[:n_basis] (orthonormalised here through the Gram
        matrix, unless ``orthonormal``). The top m Ritz vectors go to S[:m] (A times them to
        AS[:m]); when the basis has more than X, the new search directions go to S[m:2m].
        Returns the m Ritz values, descending.
        """
        B, AB = S[:n_basis], AS[:n_basis]
        if orthonormal:  # the caller knows B Bᵀ = I
            T = torch.eye(n_basis, dtype=S.dtype, device=S.device)
        else:
            gram = B @ B.T
            mu, U = torch.linalg.eigh((gram + gram.T) / 2)
            keep = mu > 1e-12 * mu.max()
            T = U[:, keep] / mu[keep].sqrt()  # B-coordinates of an orthonormal basis
        small = T.T @ (B @ AB.T) @ T
        theta, C = torch.linalg.eigh((small + small.T) / 2)
        theta, C = theta.flip(0)[:m], C.flip(1)[:, :m]
        D = T @ C  # Ritz vectors = Dᵀ B
        if n_basis > m:
            # new search directions P = the (P, W) parts of the Ritz vectors, normalised through
            # the Gram matrix; a direction that vanished (the iteration stalled there) becomes a
            # zero row, which the next Gram matrix drops
            Dp = D.clone()
            Dp[:m] = 0
            nrm = torch.einsum("ij,ik,kj->j", Dp, gram, Dp).clamp(min=0).sqrt()
            D = torch.cat([D, Dp * torch.where(nrm > 1e-7, 1.0 / nrm, torch.zeros_like(nrm))], dim=1)
        # one pass over the basis for [X; P] and one over A times it
        rows = D.shape[1]
        new, new_A = D.T @ B, D.T @ AB
        S[:rows], AS[:rows] = new, new_A
        return theta


def top_eigenpairs(
    op: LinearOperator,
    k: int,
    V0: torch.Tensor | None = None,
    *,
    method: str = "lobpcg",
    tol: float = 1e-4,
    max_iters: int = 1000,
    generator: torch.Generator | None = None,
) -> EigResult:
    """Top-k eigenpairs of ``op`` by ``method`` = ``"lobpcg"`` (default) or ``"power"`` (the paper's)."""
    if method == "power":
        return block_power(op, k, V0, tol=tol, max_iters=max_iters, generator=generator)
    if method == "lobpcg":
        return LOBPCG(k, tol=tol, max_iters=max_iters, generator=generator).solve(op, V0)
    raise ValueError(f"eigensolver method must be 'lobpcg' or 'power', got {method!r}")
