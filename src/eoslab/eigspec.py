"""Which eigensolver a computation uses, as one object (docs/math.md §6, D4, D14).

An :class:`EigSpec` is the registered solver's name with its stopping (D4), order (D14) and
guard: what the config's ``solver.eig_*`` fields say, built once from them and passed to the
integrators and the analysis instead of loose arguments. :meth:`EigSpec.make` builds the solver
for k eigenpairs with the caller's random generator (the integrators reseed theirs every step,
:func:`eoslab.integrators.step_seed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .eigen import Eigensolver, make_eigensolver


@dataclass(frozen=True)
class EigSpec:
    """A registered eigensolver and its settings (:func:`~eoslab.eigen.make_eigensolver`).

    Attributes:
        method: the solver's registry name (``"lobpcg"``, ``"power"``).
        tol: the stopping tolerance (D4; each solver documents its test).
        max_iters: block iterations before a solve gives up (``converged=False``).
        order: ``"algebraic"`` (the largest values, D14) or ``"magnitude"`` (the largest |λ|).
        guard: extra vectors iterated alongside the wanted ones; None takes the solver's default.
        precision: ``"float64"``, or ``"mixed"``: LOBPCG's float32 products certified in float64
            (:class:`~eoslab.eigen.LOBPCG`).
    """

    method: str = "lobpcg"
    tol: float = 1e-4
    max_iters: int = 1000
    order: str = "algebraic"
    guard: int | None = None
    precision: str = "float64"

    def make(self, k: int, generator: torch.Generator | None = None) -> Eigensolver:
        """The solver for the top ``k`` eigenpairs, its random starts drawn from ``generator``.

        Raises:
            ValueError: an unknown method, order or precision, or k < 1.
            TypeError: a precision other than float64 for a solver without that option.
        """
        options: dict[str, object] = {} if self.guard is None else {"guard": self.guard}
        if self.precision != "float64":  # only LOBPCG has the option: another solver refuses it
            options["precision"] = self.precision
        return make_eigensolver(
            self.method, k, tol=self.tol, max_iters=self.max_iters, order=self.order, generator=generator, **options
        )
