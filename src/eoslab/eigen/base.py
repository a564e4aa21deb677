"""What an eigensolver is and what it returns (docs/math.md §6, D4, D14): the :class:`Eigensolver`
protocol and its :class:`EigResult`.

Solvers never raise on non-convergence: ``EigResult.converged`` says whether the criterion was
met. Eigenvectors are returned as columns (P, k); inside, blocks are rows (k, P).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class EigResult:
    """Top-k eigenpairs of a symmetric operator.

    Attributes:
        eigenvalues: (k,), descending by the solver's order (value, or |value|).
        eigenvectors: (P, k), orthonormal columns, matching ``eigenvalues``.
        iterations: block iterations performed.
        products: single-vector operator products used (a block of k counts k).
        residual_norms: (k,), ‖A v − λ v‖ for each returned pair.
        converged: whether the stopping criterion was met for all k pairs.
        guard_vectors: (P, g), extra vectors iterated alongside (empty or None when there are
            none); pass :meth:`warm_start` as the next solve's ``V0`` to reuse them.
        order: ``"algebraic"`` or ``"magnitude"``, the order of ``eigenvalues``.
        error_bounds: (k,), the certified error bound of each eigenvalue, where the solver gives one.
        low_products: how many of ``products`` were computed in float32 (a mixed-precision solve).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    iterations: int
    products: int
    residual_norms: torch.Tensor
    converged: bool
    guard_vectors: torch.Tensor | None = None
    order: str = "algebraic"
    error_bounds: torch.Tensor | None = None
    low_products: int = 0

    def warm_start(self) -> torch.Tensor:
        """Start vectors for the next solve, (P, k + g): the eigenvectors, then the guard vectors
        (stored with vectors as rows, as the solvers read them).
        """
        V, G = self.eigenvectors, self.guard_vectors
        if G is None or G.shape[1] == 0:
            return V
        if _consecutive_rows(V.T, G.T):  # one (k + g, P) block already (LOBPCG's): a view, no copy
            return V.T.as_strided((V.shape[1] + G.shape[1], V.shape[0]), V.T.stride()).T
        return torch.cat([V.T, G.T]).T


class Eigensolver(Protocol):
    """What every registered solver is: made once for k, then ``solve`` on any operator."""

    k: int

    def solve(self, op: Any, V0: torch.Tensor | None = None) -> EigResult:
        """Top-k eigenpairs of ``op``; ``V0`` (P, j) warm-starts the first j start vectors."""
        ...


def _consecutive_rows(A: torch.Tensor, B: torch.Tensor) -> bool:
    """Whether B's rows directly follow A's in one row-major buffer (so [A; B] is a view)."""
    return (
        A.is_contiguous()
        and B.is_contiguous()
        and A.shape[1] == B.shape[1]
        and A.dtype == B.dtype
        and A.untyped_storage().data_ptr() == B.untyped_storage().data_ptr()
        and A.storage_offset() + A.numel() == B.storage_offset()
    )
