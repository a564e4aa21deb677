"""Top eigenpairs of the symmetric curvature operators H, G, R (docs/math.md §6, D4, D14).

One protocol, one registry. An eigensolver is made by name with :func:`make_eigensolver` and
has ``solve(op, V0=None) -> EigResult``; ``op`` is any operator on blocks of row vectors
(``op(V)`` for V of shape (j, P), ``op.products``, ``op.dim``, ``op.dtype``, ``op.device``).
The solvers are the modules of this package, each registered under a name by
:func:`register_eigensolver`; every module here is imported below, so adding a solver means
adding one module (and its test) and nothing else:

* ``"power"`` — the paper's block power iteration (§6 steps 1–5), :mod:`.power`;
* ``"lobpcg"`` — a block Krylov–Rayleigh–Ritz solver in the LOBPCG family with soft locking and
  an error-bound stopping test, :mod:`.lobpcg` (the default everywhere).

Which eigenvalues ("order", D14): ``"algebraic"`` (the default) wants the k algebraically
largest, returned in descending order of value; ``"magnitude"`` wants the k largest in absolute
value (the authors' code, and what plain power iteration finds), returned in descending order
of |λ|. Either way, ``eigenvalues[j]`` is the (j+1)-th by the solver's order, so a caller that
needs λ^{k+1} reads ``eigenvalues[k]`` whichever order it asked for.

Solvers never raise on non-convergence: ``EigResult.converged`` says whether the criterion was
met. Eigenvectors are returned as columns (P, k); inside, blocks are rows (k, P).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .._registry import Registry

#: The two orderings of "top k" (D14).
EIG_ORDERS = ("algebraic", "magnitude")


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


_REGISTRY: Registry[Callable[..., Eigensolver]] = Registry("eigensolver")
register_eigensolver = _REGISTRY.register


def available_eigensolvers() -> tuple[str, ...]:
    """The registered solver names, sorted."""
    return tuple(sorted(_REGISTRY))


def check_order(order: str) -> str:
    """``order`` if it is one of :data:`EIG_ORDERS`, else a ValueError naming the choices."""
    if order not in EIG_ORDERS:
        raise ValueError(f"eigenvalue order must be one of {', '.join(EIG_ORDERS)}, got {order!r}")
    return order


def make_eigensolver(
    name: str,
    k: int,
    *,
    tol: float = 1e-4,
    max_iters: int = 1000,
    order: str = "algebraic",
    generator: torch.Generator | None = None,
    **options: Any,
) -> Eigensolver:
    """The registered solver ``name`` for the top ``k`` eigenpairs (D4, D14).

    Args:
        name: one of :func:`available_eigensolvers`.
        k: eigenpairs wanted.
        tol: the stopping tolerance (each solver documents its test; D4's 1e-4 by default).
        max_iters: block iterations before giving up (``converged=False``).
        order: ``"algebraic"`` or ``"magnitude"`` (see the module docstring).
        generator: RNG of random start vectors.
        **options: solver-specific settings (e.g. ``guard``); an unknown one is a TypeError.

    Raises:
        ValueError: an unknown name or order, or k < 1.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown eigensolver {name!r}; available: {', '.join(available_eigensolvers())}")
    check_order(order)
    return _REGISTRY[name](k, tol=tol, max_iters=max_iters, order=order, generator=generator, **options)


# -- helpers shared by the solvers ------------------------------------------------------------
def order_key(values: torch.Tensor, order: str) -> torch.Tensor:
    """The quantity "top" ranks by: the value (algebraic) or its magnitude."""
    return values if order == "algebraic" else values.abs()


def top_indices(values: torch.Tensor, count: int, order: str) -> torch.Tensor:
    """Indices of the ``count`` top values by ``order``, best first."""
    return torch.argsort(order_key(values, order), descending=True, stable=True)[:count]


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


def random_rows(count: int, op: Any, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` N(0, 1) row vectors of the operator's dimension, drawn on the CPU (so a seed
    gives the same draw on every device) and moved to the operator's device.
    """
    return torch.randn(count, op.dim, generator=generator, dtype=op.dtype).to(op.device)


# Every module of the package registers its solver on import.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from .lobpcg import LOBPCG  # noqa: E402  (re-exported: the documented entry points)
from .power import BlockPower, block_power  # noqa: E402

__all__ = [
    "EIG_ORDERS",
    "BlockPower",
    "EigResult",
    "Eigensolver",
    "LOBPCG",
    "available_eigensolvers",
    "block_power",
    "check_order",
    "make_eigensolver",
    "register_eigensolver",
]
