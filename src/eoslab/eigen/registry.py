"""The eigensolvers by name (D4, D14): every solver registers itself where it is defined
(``@register_eigensolver("name")``, the :class:`~eoslab._registry.Registry` :data:`EIGENSOLVERS`),
and :func:`make_eigensolver` makes one by name.

The solvers are found, not listed: :data:`EIGENSOLVERS` imports every module of this package
before its first read, so a new solver needs only its own module (and its test). It does so
lazily because the solvers import this module (it cannot import them at its top).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._registry import Registry
from .base import Eigensolver
from .order import check_order

#: The solver classes by name, each ``cls(k, *, tol, max_iters, order, generator, **options)``.
EIGENSOLVERS: Registry[Callable[..., Eigensolver]] = Registry("eigensolver", discover=__package__)
#: Decorator: register a solver under a name (a name registered twice is a RegistryError).
register_eigensolver = EIGENSOLVERS.register


def available_eigensolvers() -> tuple[str, ...]:
    """The registered solver names, sorted."""
    return EIGENSOLVERS.names()


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
        order: ``"algebraic"`` or ``"magnitude"`` (:mod:`eoslab.eigen.order`).
        generator: RNG of random start vectors.
        **options: solver-specific settings (e.g. ``guard``); an unknown one is a TypeError.

    Raises:
        ValueError: an unknown name or order, or k < 1.
    """
    if name not in EIGENSOLVERS:
        raise ValueError(f"unknown eigensolver {name!r}; available: {', '.join(available_eigensolvers())}")
    check_order(order)
    return EIGENSOLVERS[name](k, tol=tol, max_iters=max_iters, order=order, generator=generator, **options)
