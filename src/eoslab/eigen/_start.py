"""Start vectors, shared by the solvers and their certification (:mod:`._certify`): random rows,
and the Ritz vectors of a loose single-vector Lanczos run (ARPACK) for a cold block.
"""

from __future__ import annotations

from typing import Any

import torch
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh
from threadpoolctl import threadpool_limits

#: The relative tolerance of the Lanczos start: loose, since the block solver certifies after it.
KRYLOV_TOL = 1e-2
#: Implicit restarts the Lanczos start may take before the block starts from random rows instead.
KRYLOV_RESTARTS = 20


def random_rows(count: int, op: Any, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` N(0, 1) row vectors of the operator's dimension, drawn on the CPU (so a seed
    gives the same draw on every device) and moved to the operator's device.
    """
    return torch.randn(count, op.dim, generator=generator, dtype=op.dtype).to(op.device)


def krylov_rows(count: int, op: Any, order: str, generator: torch.Generator | None) -> torch.Tensor | None:
    """``count`` rows spanning the top of the spectrum (by ``order``), from ARPACK's implicitly
    restarted Lanczos (``scipy.sparse.linalg.eigsh`` on ``op.to_scipy()``) to the loose
    :data:`KRYLOV_TOL`, started from one random vector drawn from ``generator``; None when the
    operator has no SciPy form, is too small for ARPACK (``count`` ≥ dim − 1), or Lanczos does
    not settle within :data:`KRYLOV_RESTARTS` restarts.

    A cold block started this way still needs the block solver's certificate and its check for a
    missed eigenvalue: a Lanczos start is one random vector, and ARPACK's tolerance here is loose.
    ARPACK's BLAS runs on one thread: its threads left spinning beside torch's between products
    made one solve 90× slower on a loaded 2-core machine (``LinearOperator.to_scipy``).
    """
    if not hasattr(op, "to_scipy") or count >= op.dim - 1:
        return None
    v0 = random_rows(1, op, generator)[0].cpu().numpy()
    which = "LA" if order == "algebraic" else "LM"
    try:
        with threadpool_limits(1, user_api="blas"):
            _, vectors = eigsh(op.to_scipy(), k=count, which=which, tol=KRYLOV_TOL, v0=v0, maxiter=KRYLOV_RESTARTS)
    except (ArpackNoConvergence, ArpackError):
        return None
    return torch.as_tensor(vectors.T.copy(), dtype=op.dtype).to(op.device)
