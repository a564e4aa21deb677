"""LOBPCG with a growing basis and soft locking (docs/math.md §6, D4, D14), registered as ``"lobpcg"``.

The iteration is LOBPCG's — Rayleigh–Ritz on the span of the current Ritz block X, the residual
block W and the previous search directions P — organised so that every vector of length P is
touched as few times as possible (the dense work on a 2.6 M × 39 basis costs as much as the
operator products if done naively, docs/performance.md):

* The basis S (rows, orthonormal) and A·S are kept in preallocated buffers, and grow by one
  block per iteration: [X₀], [X₀; W₁], [X₀; W₁; W₂]. The projected matrix Sᵀ A S is kept too, so
  a new block needs only its own inner products (one pass over S and one over A·S), and the Ritz
  vectors are never formed until the end: they live as coefficients C in the basis. This space
  contains LOBPCG's span[X, W, P] (P is the Ritz vectors' change since the last iteration).
* When the basis is full (3 blocks), it restarts in place to [X; P], LOBPCG's basis, from the
  coefficients: S ← Qᵀ S and A·S ← Qᵀ A·S with Q orthonormal (no products, no drift growth: an
  orthonormal Q cannot amplify round-off, the cause of the classic LOBPCG's A·X drift). A·S is
  recomputed by products after every :data:`REFRESH_RESTARTS` restarts all the same.
* The Gram matrix K = (A S)(A S)ᵀ is kept the same way (one pass over A·S per new block), so
  every Ritz pair's residual norm comes from the coefficients alone, ρ² = cᵀ K c − r², and only
  the residual rows of the pairs still being expanded are formed (forming all of them was most
  of an iteration's dense work once the leading pairs had converged); a norm small enough for
  that difference to lose digits is taken from its residual row instead (:data:`GRAM_TRUST`).
* A new block W is the normalised residuals of the active pairs. Residuals of Ritz vectors are
  orthogonal to the basis in exact arithmetic; the inner products W·Sᵀ (computed anyway for the
  projected matrix) are checked, and W is projected out explicitly only when they exceed
  min(:data:`ORTH_LOOSE`, max(:data:`ORTH_TOL`, :data:`ORTH_PER_TOL` × tol)): the computed
  residuals of an iteration at tol 1e-4 sit at |w·s| ≈ 1e-12–2e-9 at the paper's size (round-off
  of A·S against residuals far smaller than it), and a loss of orthogonality η moves Ritz values
  by about η × max |r|, a millionth of the tolerance, so projecting every block (more passes over
  the basis per iteration) buys nothing; tight solves (tol ≤ 1e-6) keep the basis orthonormal to
  1e-12.
  Directions of W with Gram eigenvalue below :data:`DROP_TOL` (nothing new) are dropped.

Stopping (per wanted pair j, Ritz value r_j, residual ρ_j = ‖A x_j − r_j x_j‖): its certified
error bound (:func:`~eoslab.eigen._certify.error_bounds`: ρ_j, or a quadratic Rayleigh–Ritz
bound over a gap that only converged pairs below can give) must be ≤ tol · max(|r_j|, FLOOR ·
max_i |r_i|), FLOOR = :data:`FLOOR` the absolute floor that lets eigenvalues ≈ 0 converge. A
cold start (any random start row) is checked once converged for an eigenvalue it missed
(:func:`~eoslab.eigen._certify.missed_eigenvector`, at most MAX_CONFIRMS times); a missed one
joins the basis and the iteration goes on. A pair whose residual is at round-off (ρ_j ≤ :data:`NOISE` · max |r_i|)
is converged whatever tol says — it cannot improve. Only the residuals of the wanted pairs that
are not converged enter the basis: converged pairs are locked softly (they stay in the basis,
their residuals do not enter it, nor do the round-off residuals of null directions), and the
guard vectors improve through the Rayleigh–Ritz alone (measured on exponential Euler steps of a
4 × 128 MLP: 32 instead of 41 products per step, eigenvalues still within 1e-4 of a tight solve),
except the first, expanded beside the k-th pair to give it its gap (:meth:`LOBPCG._converged`). The
returned eigenvalues are the Rayleigh quotients of the returned vectors, and ``residual_norms``
are their true residuals as computed from the stored A·S.

``precision="mixed"`` computes the products of the iteration in float32
(:meth:`~eoslab.curvature.LinearOperator.lowered`; 2.2–2.5× cheaper per product on a 2-core CPU,
docs/performance.md) and certifies in float64: once the float32 products say every wanted pair has converged (or sits
at their round-off, :data:`LOW_NOISE`), the basis restarts to the Ritz block and the guards, A·S
is formed again by float64 products, and the iteration goes on in float64 until the stopping test
holds there — the same test, on float64 residuals, as ``precision="float64"``. So ``converged``
means what it means at float64; only the path there is cheaper (one more block of float64
products than a warm step needs at float64 when the float32 phase was enough).

``order="magnitude"`` selects the Ritz pairs of largest |r| instead of largest r, measures gaps
in |r|, and keeps a sentinel at the other end of the spectrum while the wanted pairs all have one
sign (see :meth:`LOBPCG._rayleigh_ritz`).
"""

from __future__ import annotations

import torch

from ._certify import FLOOR, MAX_CONFIRMS, NOISE, error_bounds, missed_eigenvector
from ._start import krylov_rows, random_rows
from .base import EigResult
from .order import check_order, order_key, top_indices
from .registry import register_eigensolver

#: Blocks of m rows the basis may hold before it restarts to [X; P].
BASIS_BLOCKS = 3
#: A new direction is dropped when its Gram eigenvalue (unit-norm rows) is below this.
DROP_TOL = 1e-8
#: Largest |w·s| between a new unit block row and the basis that is left unprojected: at least
#: ORTH_TOL, ORTH_PER_TOL × tol when that is larger, at most ORTH_LOOSE.
ORTH_TOL = 1e-12
ORTH_PER_TOL = 1e-6
ORTH_LOOSE = 1e-10
#: A projection of components |w·s| ≤ ONE_PASS is done once and not re-measured (see _new_block).
ONE_PASS = 1e-8
#: Residual norms from the Gram matrix of A·S below this × the largest Ritz value are recomputed
#: from their residual rows (the Gram formula cancels to ≈ 1e-14 × that scale).
GRAM_TRUST = 1e-5
#: After this many in-place restarts, A·S of the restarted basis is recomputed by products.
REFRESH_RESTARTS = 20
#: Columns per chunk of the in-place basis rotation (its temporary is rows × this).
CHUNK = 1 << 15
#: Mixed precision: residuals at or below LOW_NOISE × the largest Ritz value are at the round-off
#: of float32 products (measured ≈ 2e-7 of λ¹ on the paper's MLP): the float32 phase ends there.
LOW_NOISE = 1e-5
#: The precisions of the products: all float64, or float32 until the float64 certificate.
PRECISIONS = ("float64", "mixed")
#: A cold start of at least this many vectors starts from Lanczos Ritz vectors (ARPACK, to a loose
#: tolerance), not random rows: measured on the paper's MLP, a cold top-11 (13 vectors) in 86
#: instead of 133 products at width 128 and 106 instead of 166 at width 512 (docs/performance.md).
#: Smaller blocks (the analysis's λ¹ solves: 2 vectors, 14–44 products cold) would pay ARPACK's 20
#: Lanczos vectors up front.
KRYLOV_MIN_BLOCK = 8


@register_eigensolver("lobpcg")
class LOBPCG:
    """The top k eigenpairs by LOBPCG with ``guard`` extra vectors (see the module docstring).

    Args:
        k: eigenpairs wanted.
        tol: the stopping tolerance of the error estimate (see the module docstring; D4).
        max_iters: block iterations after the first product (``converged=False`` when they run
            out).
        order: ``"algebraic"`` (D14) or ``"magnitude"``.
        generator: RNG for random starts and for padding a warm start with fewer than
            k + guard vectors.
        guard: extra vectors iterated alongside (they give the gap of the stopping test and
            absorb the near-degenerate neighbours of the k-th pair; not tested). Default
            max(2, k // 4); magnitude order needs at least 2 (they explore both ends).
        precision: ``"float64"`` (every product in the operator's dtype) or ``"mixed"`` (float32
            products until the float64 certificate; the operator must have a float32 form).

    The buffers (2 × 3 (k + guard) vectors, ≈ 1.6 GB at the paper's size) are kept between
    calls; one instance serves a whole run.
    """

    def __init__(
        self,
        k: int,
        *,
        tol: float = 1e-4,
        max_iters: int = 200,
        order: str = "algebraic",
        generator: torch.Generator | None = None,
        guard: int | None = None,
        precision: str = "float64",
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if guard is not None and guard < 0:
            raise ValueError(f"guard must be >= 0, got {guard}")
        self.k = k
        self.guard = max(2, k // 4) if guard is None else guard
        if order == "magnitude" and self.guard < 2:
            raise ValueError(f"LOBPCG in magnitude order needs guard >= 2 (one per end of the spectrum), got {guard}")
        self.tol, self.max_iters, self.generator = tol, max_iters, generator
        self._orth_tol = min(ORTH_LOOSE, max(ORTH_TOL, ORTH_PER_TOL * tol))
        self.order = check_order(order)
        self.precision = precision
        # kept between solves: the basis rows S, A·S, the residual rows of the Ritz block, and a
        # chunk for the in-place rotation
        self._space: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------- solve
    def solve(self, op, V0: torch.Tensor | None = None) -> EigResult:
        """Top-k eigenpairs of ``op``; ``V0`` (P, j) warm-starts the first j of the k + guard
        vectors (use :meth:`EigResult.warm_start` of the previous solve).
        """
        m = min(self.k + self.guard, op.dim)
        k = min(self.k, m)
        cap = min(BASIS_BLOCKS * m, op.dim)
        S, AS, R, tmp = self._buffers(cap, m, op)
        low = op.lowered() if self.precision == "mixed" else None
        prod = op if low is None else low  # the operator of the products, until the certificate
        start, start_low = op.products, 0 if low is None else low.products
        cold = self._start_block(S[:m], prod, V0)
        AS[:m] = prod(S[:m])
        M = S[:m] @ AS[:m].T  # projected matrix S A Sᵀ of the basis
        K = AS[:m] @ AS[:m].T  # Gram matrix of A·S: residual norms without forming residuals
        n, restarts, prev = m, 0, None
        converged, it = False, 0
        confirms = MAX_CONFIRMS if cold and m < op.dim else 0
        while True:
            ritz, C, sentinel = self._rayleigh_ritz(M, m, k)
            rnorm = self._residual_norms(C, ritz, K, S[:n], AS[:n], R)
            ok, noise, bound, expand, depth, edge = self._converged(ritz[:m], rnorm[:m], k)
            if prod is not op:
                floor = rnorm[:m] <= LOW_NOISE * ritz.abs().max()
                ok, expand = ok | floor, expand & ~floor
            if self.order == "magnitude":  # the guards explore the two ends of the spectrum, where
                expand = ~ok & ~noise  # the next |λ| may be at either: iterated to tol
            expand = torch.cat([expand, expand.new_zeros(C.shape[1] - m)])
            settled = True
            if sentinel is not None:  # magnitude order: is the other end of the spectrum below the k-th?
                r_s, rho_s = ritz[sentinel].abs(), rnorm[sentinel]
                settled = bool(r_s + rho_s < ritz[k - 1].abs()) or bool(rho_s <= NOISE * ritz.abs().max())
                expand[sentinel] = not settled
            W = None
            if bool(ok[:k].all()) and settled and prod is not op:  # certify: float64 from here on
                n, prod, prev = C.shape[1], op, None
                _rotate((S,), C, C.shape[0], tmp)
                AS[:n] = op(S[:n])
                M, K = S[:n] @ AS[:n].T, AS[:n] @ AS[:n].T
                continue
            if bool(ok[:k].all()) and settled:
                if confirms == 0 or n >= op.dim:
                    converged = True
                    break
                confirms -= 1  # a cold start: look for an eigenvalue the block missed
                W = missed_eigenvector(op, C[:, :depth].T @ S[:n], edge, self.order, self.generator)
                if W is None:
                    converged = True
                    break
            if it == self.max_iters:
                break
            if W is None:
                active = torch.nonzero(expand).flatten()
                if active.numel() == 0:
                    break
                W = self._residuals(C[:, active], ritz[active], S[:n], AS[:n], R)
            it += 1
            block = self._new_block(W, S[:n], AS[:n], M)
            if block is None:  # nothing outside the basis is left to add
                break
            W, T, Z_a = block
            nw = T.shape[1]
            if n + nw > cap:
                Q = self._restart_coefficients(C, prev)[:, : max(m, cap - nw)]
                _rotate((S, AS), Q, n, tmp)
                n, restarts = Q.shape[1], restarts + 1
                M, K, Z_a, C = Q.T @ M @ Q, Q.T @ K @ Q, Z_a @ Q, Q.T @ C
                if restarts % REFRESH_RESTARTS == 0:  # bound the drift of the rotated basis and A·S
                    L = torch.linalg.cholesky(S[:n] @ S[:n].T)
                    L_inv = torch.linalg.inv(L)
                    _rotate((S,), L_inv.T, n, tmp)  # S ← L⁻¹ S, orthonormal again
                    C, Z_a = L.T @ C, Z_a @ L_inv.T
                    AS[:n] = prod(S[:n])
                    M, K = S[:n] @ AS[:n].T, AS[:n] @ AS[:n].T
            if n + nw > cap:  # a basis as large as the space (tiny operators): keep what fits
                T, Z_a, nw = T[:, : cap - n], Z_a[: cap - n], cap - n
                if nw <= 0:
                    break
            torch.mm(T.T, W, out=S[n : n + nw])
            if T.abs().max() > 3.0:  # an ill-conditioned block (μ < 0.1) amplified round-off:
                new = S[n : n + nw]  # orthonormalise it once more and measure W·(A S)ᵀ afresh
                T_new = _svqb(new @ new.T)
                if T_new is not None and T_new.shape[1] == nw:  # rows of Tᵀ W are unit-norm: none is dropped
                    new.copy_(T_new.T @ new)
                Z_a = new @ AS[:n].T
            AS[n : n + nw] = prod(S[n : n + nw])
            M = self._extend(M, Z_a, S[n : n + nw] @ AS[n : n + nw].T)
            K_new = AS[n : n + nw] @ AS[: n + nw].T
            K = self._extend(K, K_new[:, :n], K_new[:, n:])
            prev = torch.cat([C, C.new_zeros(nw, C.shape[1])])  # the Ritz coefficients in the grown basis
            n += nw
        X = C.T @ S[:n]  # the Ritz vectors, formed once
        return EigResult(
            ritz[:k].clone(),
            X[:k].T,
            it,
            op.products - start + (0 if low is None else low.products - start_low),
            rnorm[:k].clone(),
            converged,
            low_products=0 if low is None else low.products - start_low,
            error_bounds=bound[:k].clone(),
            guard_vectors=X[k:m].T,
            order=self.order,
        )

    # ----------------------------------------------------------------------------- pieces
    def _buffers(self, cap: int, m: int, op) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        like = dict(dtype=op.dtype, device=op.device)
        space = self._space
        if (
            space is None
            or (S := space[0]).shape != (cap, op.dim)
            or S.dtype != op.dtype
            or S.device != torch.device(op.device)
        ):
            space = self._space = (
                torch.empty(cap, op.dim, **like),
                torch.empty(cap, op.dim, **like),
                torch.empty(m + 1, op.dim, **like),
                torch.empty(cap, min(CHUNK, op.dim), **like),
            )
        return space

    def _start_block(self, X: torch.Tensor, op, V0: torch.Tensor | None) -> bool:
        """Fill X (m rows) with orthonormal start rows: V0's columns (the eigenvectors and guard
        vectors of a previous solve, :meth:`EigResult.warm_start`), then random rows; with no V0
        and m ≥ :data:`KRYLOV_MIN_BLOCK`, the Ritz vectors of a loose Lanczos run
        (:func:`~eoslab.eigen._start.krylov_rows`, its products counted by ``op``). An
        orthonormal warm start is used as it is (one Gram matrix to check); otherwise SVQB.
        Returns whether the start is cold (any row random, or Lanczos's): its result is checked
        for a missed eigenvalue.
        """
        m = X.shape[0]
        j = 0 if V0 is None else min(V0.shape[1], m)
        if V0 is None and m >= KRYLOV_MIN_BLOCK:
            rows = krylov_rows(m, op, self.order, self.generator)
            Q = None if rows is None else _orthonormalise(rows)
            if Q is not None and Q.shape[0] == m:
                X.copy_(Q)
                return True
        if V0 is not None and j:
            X[:j] = V0[:, :j].T
        if j == m:
            eye = torch.eye(m, dtype=X.dtype, device=X.device)
            if float((X @ X.T - eye).abs().max()) < 1e-10:
                return False
        rows, cold = X[:j], False
        while True:
            if rows.shape[0] < m:
                rows, cold = torch.cat([rows, random_rows(m - rows.shape[0], op, self.generator)]), True
            Q = _orthonormalise(rows)
            if Q is not None and Q.shape[0] == m:
                X.copy_(Q)
                return cold
            rows = rows[:0] if Q is None else Q

    def _rayleigh_ritz(self, M: torch.Tensor, m: int, k: int) -> tuple[torch.Tensor, torch.Tensor, int | None]:
        """The m top Ritz pairs (by ``order``) of the orthonormal basis with projected matrix M:
        values (m,), best first, coefficients (n, m), and the position of the sentinel or None.

        Magnitude order keeps a sentinel when the k wanted pairs are all of one sign: the extreme
        Ritz pair of the other sign (appended as pair m + 1 unless it is a guard already).
        Selecting by |r| alone can settle on one end of the spectrum while the other end, seen
        only through guards that are not iterated, holds a larger magnitude; the sentinel is
        iterated (its residual enters the basis) until r + ρ puts that end below the k-th
        magnitude, or it joins the top k.
        """
        values, vectors = torch.linalg.eigh((M + M.T) / 2)
        top = top_indices(values, m, self.order)
        sentinel = None
        if self.order == "magnitude" and values.numel() > k:
            wanted, other = values[top[:k]], None
            if bool((wanted >= 0).all()) and values[0] < 0:
                other = 0  # the most negative
            elif bool((wanted < 0).all()) and values[-1] >= 0:
                other = values.numel() - 1  # the most positive
            if other is not None:
                where = torch.nonzero(top == other).flatten()
                if where.numel():
                    sentinel = int(where[0])
                else:
                    top, sentinel = torch.cat([top, top.new_tensor([other])]), m
        return values[top], vectors[:, top], sentinel

    def _converged(self, ritz: torch.Tensor, rnorm: torch.Tensor, k: int) -> tuple:
        """(converged, at round-off, error bound, expand) per Ritz pair of the block, then the
        depth and edge the wanted pairs' bounds rely on (:func:`error_bounds`).

        The error bound is :func:`error_bounds`; a pair is converged when it is ≤ tol ·
        max(|r_j|, FLOOR · max|r|), or its residual is at round-off. ``expand`` marks the pairs whose
        residuals enter the next block: the wanted pairs not converged and, for k > 1 while the k-th
        is one of them, the first guard. The k-th pair (λ^{k+1} of an exponential Euler step) sits at the
        edge of the bulk, where its own residual shrinks slowly; its quadratic bound needs the gap
        down to r_{k+1} + ρ_{k+1}, which only a guard with a small residual gives. Measured on warm
        exponential Euler steps (6 × 128 MLP, N = 390, k + 1 = 11): the k-th pair alone was
        expanded in 6 iterations per step; expanding the first guard beside it: 3.6 iterations,
        +5 % products, −9 % time (the dense work of an iteration is passes over the whole basis).
        For k = 1 (the analysis's λ¹) the basis is small and products dominate: there it cost
        more (``benchmarks/analysis.py --quick``: cold H, G, R 17, 16, 22 → 21, 17, 31 products).
        The other guards improve through the Rayleigh–Ritz alone (expanding all of them until they
        converge cost 10–20 % more products per warm step).
        """
        scale = ritz.abs().max()
        bound, depth, edge = error_bounds(order_key(ritz, self.order), rnorm)
        noise = rnorm <= NOISE * scale
        limit = torch.maximum(ritz.abs(), FLOOR * scale)
        ok = (bound <= self.tol * limit) | noise
        expand = ~ok & ~noise
        first_guard = 1 < k < expand.numel() and bool(expand[k - 1]) and bool(expand[k])
        expand[k:] = False
        if first_guard:
            expand[k] = True
        return ok, noise, bound, expand, int(depth[:k].max()), float(edge[:k].min())

    @staticmethod
    def _residuals(C, ritz, S, AS, R) -> torch.Tensor:
        """The residual rows A x_j − r_j x_j of the Ritz vectors x = Cᵀ S, in R's first rows."""
        rows = R[: C.shape[1]]
        torch.mm(C.T, AS, out=rows)
        return rows.addmm_((C * ritz).T, S, alpha=-1.0)

    def _residual_norms(self, C, ritz, K, S, AS, R) -> torch.Tensor:
        """‖A x_j − r_j x_j‖ for every Ritz pair, from the Gram matrix K = (A S)(A S)ᵀ.

        With S orthonormal and r_j = c_jᵀ M c_j, ‖A x_j − r_j x_j‖² = c_jᵀ K c_j − r_j²: no
        vector of length P is touched (forming every pair's residual row is a pass over the whole
        basis per pair, most of an iteration's dense work when few pairs are still active). The
        difference cancels to round-off ≈ ε n max r² when ρ_j ≪ |r_j|, so a norm below
        :data:`GRAM_TRUST` × max |r| is recomputed from its residual row.
        """
        rho2 = ((C.T @ K) * C.T).sum(1) - ritz**2
        rnorm = rho2.clamp(min=0).sqrt()
        doubtful = torch.nonzero(rnorm <= GRAM_TRUST * ritz.abs().max()).flatten()
        if doubtful.numel():
            rows = self._residuals(C[:, doubtful], ritz[doubtful], S, AS, R)
            rnorm[doubtful] = torch.linalg.vector_norm(rows, dim=1)
        return rnorm

    def _new_block(self, W, S, AS, M):
        """The next basis block from the residual rows W of the pairs to expand, as (W, T, Z_a):
        the block is Tᵀ W, orthonormal rows orthogonal to S to ``_orth_tol``, with W normalised in
        place and Z_a = Tᵀ W (A S)ᵀ its inner products with A·S; None when no direction is left.

        The rows are normalised and rotated by their Gram matrix (SVQB, dropping directions
        below DROP_TOL). Residuals of Ritz vectors are orthogonal to S in exact arithmetic; if
        W Sᵀ (computed anyway) says the block is not, to ``_orth_tol`` (a residual near round-off), S
        is projected out of W explicitly first (and again if needed: a block that is still not
        orthogonal to S after two projections is refused). A projection of components no larger
        than :data:`ONE_PASS` is not re-measured: it leaves ≈ ε × them behind, and changes W Wᵀ
        by their square (below round-off), so it costs one pass over S instead of three.
        """
        W = W.div_(torch.linalg.vector_norm(W, dim=1, keepdim=True))
        Z_s, Z_a = W @ S.T, W @ AS.T
        T = _svqb(W @ W.T)
        for _ in range(2):  # classical Gram–Schmidt, twice at most ("twice is enough")
            if T is None or float((T.T @ Z_s).abs().max()) <= self._orth_tol:
                break
            W.addmm_(Z_s, S, alpha=-1.0)  # W ← W − (W Sᵀ) S
            Z_a = Z_a - Z_s @ M
            if float(Z_s.abs().max()) <= ONE_PASS:
                Z_s = torch.zeros_like(Z_s)
                break
            Z_s = W @ S.T
            T = _svqb(W @ W.T)
        if T is None or float((T.T @ Z_s).abs().max()) > self._orth_tol:
            return None
        return W, T, T.T @ Z_a

    @staticmethod
    def _extend(M: torch.Tensor, Z_a: torch.Tensor, M_ww: torch.Tensor) -> torch.Tensor:
        """The projected matrix of [S; W] from that of S, W·(A S)ᵀ and W·(A W)ᵀ."""
        return torch.cat([torch.cat([M, Z_a.T], 1), torch.cat([Z_a, M_ww], 1)], 0)

    def _restart_coefficients(self, C: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        """Orthonormal coefficients (n, n') of LOBPCG's basis [X; P]: the Ritz vectors C, then
        the part of the previous iteration's Ritz vectors ``prev`` outside them (their change,
        the search directions).
        """
        if prev is None:
            return C
        P = prev - C @ (C.T @ prev)
        T = _svqb(P.T @ P)
        if T is None:
            return C
        P = P @ T
        P, _ = torch.linalg.qr(P - C @ (C.T @ P))  # orthonormal to C to round-off
        return torch.cat([C, P], 1)


def _rotate(buffers: tuple[torch.Tensor, ...], Q: torch.Tensor, n: int, chunk: torch.Tensor) -> None:
    """B[:n'] ← Qᵀ B[:n] for each buffer B, in place, in column chunks."""
    tmp = chunk[: Q.shape[1]]
    for B in buffers:
        for c in range(0, B.shape[1], tmp.shape[1]):
            block = B[:n, c : c + tmp.shape[1]]
            out = tmp[:, : block.shape[1]]
            torch.mm(Q.T, block, out=out)
            B[: Q.shape[1], c : c + block.shape[1]] = out


def _svqb(gram: torch.Tensor) -> torch.Tensor | None:
    """T with Tᵀ gram T = I over the directions of Gram eigenvalue ≥ DROP_TOL · max(1, trace
    scale); None when none is left. For unit rows W, Tᵀ W is an orthonormal basis of their span.
    """
    mu, U = torch.linalg.eigh((gram + gram.T) / 2)
    keep = mu > DROP_TOL * max(1.0, float(mu.max()))
    if not bool(keep.any()):
        return None
    return U[:, keep] / mu[keep].sqrt()


def _orthonormalise(W: torch.Tensor) -> torch.Tensor | None:
    """Orthonormal rows spanning W's rows (normalise, then SVQB twice); None if nothing is left."""
    W = W / torch.linalg.vector_norm(W, dim=1, keepdim=True).clamp(min=torch.finfo(W.dtype).tiny)
    for _ in range(2):
        T = _svqb(W @ W.T)
        if T is None:
            return None
        W = T.T @ W
    return W
