"""Which eigenvalues are "top" (D14): the two orders and the ranking the solvers share.

``"algebraic"`` (the default) wants the k algebraically largest, returned in descending order of
value; ``"magnitude"`` wants the k largest in absolute value (the authors' code, and what plain
power iteration finds), returned in descending order of |λ|.
"""

from __future__ import annotations

import torch

#: The two orderings of "top k" (D14).
EIG_ORDERS = ("algebraic", "magnitude")


def check_order(order: str) -> str:
    """``order`` if it is one of :data:`EIG_ORDERS`, else a ValueError naming the choices."""
    if order not in EIG_ORDERS:
        raise ValueError(f"eigenvalue order must be one of {', '.join(EIG_ORDERS)}, got {order!r}")
    return order


def order_key(values: torch.Tensor, order: str) -> torch.Tensor:
    """The quantity "top" ranks by: the value (algebraic) or its magnitude."""
    return values if order == "algebraic" else values.abs()


def top_indices(values: torch.Tensor, count: int, order: str) -> torch.Tensor:
    """Indices of the ``count`` top values by ``order``, best first."""
    return torch.argsort(order_key(values, order), descending=True, stable=True)[:count]
