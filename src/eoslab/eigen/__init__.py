"""Top eigenpairs of the symmetric curvature operators H, G, R (docs/math.md §6, D4, D14).

One protocol, one registry. An eigensolver is made by name with :func:`make_eigensolver` and
has ``solve(op, V0=None) -> EigResult``; ``op`` is any operator on blocks of row vectors
(``op(V)`` for V of shape (j, P), ``op.products``, ``op.dim``, ``op.dtype``, ``op.device``).
The solvers are the modules of this package, each registered under a name by
:func:`register_eigensolver`; the registry finds every module here, so adding a solver means
adding one module (and its test) and nothing else:

* ``"power"`` — the paper's block power iteration (§6 steps 1–5), :mod:`.power`;
* ``"lobpcg"`` — a block Krylov–Rayleigh–Ritz solver in the LOBPCG family with soft locking and
  an error-bound stopping test, :mod:`.lobpcg` (the default everywhere); its products may be
  float32 until a float64 certificate (``precision="mixed"``, :data:`PRECISIONS`).

Which eigenvalues ("order", D14): ``"algebraic"`` (the default) wants the k algebraically
largest, returned in descending order of value; ``"magnitude"`` wants the k largest in absolute
value (the authors' code, and what plain power iteration finds), returned in descending order
of |λ|. Either way, ``eigenvalues[j]`` is the (j+1)-th by the solver's order, so a caller that
needs λ^{k+1} reads ``eigenvalues[k]`` whichever order it asked for.

Solvers never raise on non-convergence: ``EigResult.converged`` says whether the criterion was
met. Eigenvectors are returned as columns (P, k); inside, blocks are rows (k, P).

The protocol and the result are in :mod:`eoslab.eigen.base`, the orders in
:mod:`eoslab.eigen.order`, the registry in :mod:`eoslab.eigen.registry`; the helpers the solvers
share are private modules (``_start``, ``_certify``).
"""

from ._certify import confirm_warm_solve
from .base import Eigensolver, EigResult
from .lobpcg import LOBPCG, PRECISIONS
from .order import EIG_ORDERS, check_order
from .power import BlockPower, block_power
from .registry import EIGENSOLVERS, available_eigensolvers, make_eigensolver, register_eigensolver

__all__ = [
    "EIGENSOLVERS",
    "EIG_ORDERS",
    "LOBPCG",
    "PRECISIONS",
    "BlockPower",
    "EigResult",
    "Eigensolver",
    "available_eigensolvers",
    "block_power",
    "check_order",
    "confirm_warm_solve",
    "make_eigensolver",
    "register_eigensolver",
]
