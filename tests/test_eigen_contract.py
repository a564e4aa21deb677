"""The promise of ``converged`` (eigenvalues you can trust), for every registered solver.

Parametrised over the registry at collection time, so a solver registered later is held to the
same contract without editing this file: for both orders and k ∈ {1, 3, 11}, on spectra that are
hard on purpose (a 2 % gap at the top, near-ties, exact clusters, a large negative eigenvalue,
zero eigenvalues, k above the rank, P below k, a decaying Hessian-like spectrum, an all-negative
one, one eigenvalue over a dense cluster just below), from many random cold starts: whenever a
solve reports ``converged``, every returned eigenvalue is within tol (relative, with the absolute
floor) of ``eigvalsh``'s in the solver's order, and within its own certified error bound.
Unconverged solves are allowed (they say so); a wrong converged one is not. LOBPCG is held to
it a second time with float32 products (``precision="mixed"``): its certificate must be the
float64 one, whatever the float32 phase believed.
"""

import pytest
import torch

from eoslab.curvature import LinearOperator
from eoslab.eigen import EIG_ORDERS, available_eigensolvers, confirm_warm_solve, make_eigensolver

from ._cases import with_spectrum

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
TOL = 1e-4
FLOOR = 1e-8  # the solvers' absolute floor, relative to the largest |λ|
STARTS = 9  # per (variant, order, k, spectrum): 3 × 2 × 3 × 10 × 9 = 1,620 solves for three variants
MAX_ITERS = 300


def _spectra() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)

    def u(n):
        return torch.rand(n, generator=g, dtype=F64)

    def t(*values):
        return torch.tensor(values, dtype=F64)

    return {
        # top 28.1, 27.6 (a 1.8 % gap), then 21.0, 15.6 over 10·u³
        "gap_2pct": torch.cat([t(28.1, 27.6, 21.0, 15.6), 10 * u(278) ** 3]),
        "near_tie": torch.cat([t(1.0, 1 - 3e-5, 1 - 2e-3, 0.99), 0.95 * u(76)]),
        "clusters": torch.cat(
            [t(5.0, 5.0, 5.0, 4.9, 4.9, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0) + 1e-7 * u(13), 2.9 * u(67)]
        ),
        "big_negative": torch.cat([t(-30.0, 10.0, 9.8, 9.0, -8.5), 8 * u(75) - 4]),
        "zeros": torch.cat([t(3.0, 2.0, 1.0, 0.5), torch.zeros(60, dtype=F64)]),
        "k_above_rank": torch.cat([t(2.0, -1.0), torch.zeros(40, dtype=F64)]),
        "tiny_P": t(1.0, -2.0, 0.5),
        "hessian_like": torch.cat([30.0 / torch.arange(1, 101, dtype=F64) ** 1.5, -0.3 * u(20)]),
        "all_negative": -(0.1 + 10 * u(60) ** 2),
        "one_over_dense": torch.cat([t(1.0), 0.999 - 0.5 * u(150) ** 4]),
    }


SPECTRA = _spectra()


def _operator(lam: torch.Tensor) -> LinearOperator:
    return LinearOperator.from_dense(with_spectrum(lam, seed=7))


def _truth(lam: torch.Tensor, k: int, order: str) -> torch.Tensor:
    key = lam if order == "algebraic" else lam.abs()
    return lam[torch.argsort(key, descending=True, stable=True)][:k]


#: Every registered solver with its defaults, and LOBPCG with float32 products.
VARIANTS = [pytest.param(name, {}, id=name) for name in available_eigensolvers()] + [
    pytest.param("lobpcg", {"precision": "mixed"}, id="lobpcg-mixed")
]


@pytest.mark.parametrize("k", [1, 3, 11])
@pytest.mark.parametrize("order", EIG_ORDERS)
@pytest.mark.parametrize(("name", "options"), VARIANTS)
def test_converged_means_correct(name, options, order, k):
    wrong, converged = [], 0
    for spectrum, lam in SPECTRA.items():
        A = _operator(lam)
        want = _truth(lam, k, order)
        scale = float(lam.abs().max())
        for seed in range(STARTS):
            gen = torch.Generator().manual_seed(seed)
            solver = make_eigensolver(name, k, tol=TOL, max_iters=MAX_ITERS, order=order, generator=gen, **options)
            res = solver.solve(A)
            if not res.converged:
                continue
            converged += 1
            got = res.eigenvalues
            assert got.shape == want.shape, (spectrum, seed)
            # in the order's key (a magnitude tie of +x and −x may come either way) ...
            key_got, key_want = (got, want) if order == "algebraic" else (got.abs(), want.abs())
            err = (key_got - key_want).abs()
            limit = TOL * torch.clamp(key_want.abs(), min=FLOOR * scale) + 1e-12 * scale
            # ... and every value an eigenvalue (its sign right), within its certified bound
            nearest = (got[:, None] - lam[None, :]).abs().min(1).values
            assert res.error_bounds is not None and res.error_bounds.shape == got.shape
            if bool((err > limit).any()) or bool((nearest > res.error_bounds + 1e-12 * scale).any()):
                wrong.append((spectrum, seed, got.tolist(), want.tolist()))
    assert not wrong, f"{len(wrong)} converged solves wrong, e.g. {wrong[:3]}"
    assert converged >= len(SPECTRA) * STARTS // 4  # the contract is not met by never converging


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("order", EIG_ORDERS)
@pytest.mark.parametrize(("name", "options"), VARIANTS)
def test_a_warm_start_that_missed_a_risen_eigenvalue_is_caught_by_the_check(name, options, order, k):
    """A warm start that is still an exact invariant subspace converges at once and sees nothing
    else: a bulk eigenvalue raised past the top (10.5, 12, 20 over 10, 9, 8 …) is missed and the
    solve still says converged. :func:`confirm_warm_solve` finds it: every checked solve that
    reports converged is right, and the unchecked ones were wrong (the test meets the trap).
    """
    lam = torch.cat([torch.tensor([10.0, 9.0], dtype=F64), torch.linspace(8, -2, 118, dtype=F64)])
    trapped, wrong = 0, []
    for seed in range(3):
        A = with_spectrum(lam, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        solver = make_eigensolver(name, k, tol=TOL, max_iters=2000, order=order, generator=gen, **options)
        V0 = solver.solve(LinearOperator.from_dense(A)).warm_start()
        values, vectors = torch.linalg.eigh(A)
        for j, rise in enumerate((10.5, 12.0, 20.0)):
            q = vectors[:, -10 - j]
            B = A + (rise - float(values[-10 - j])) * torch.outer(q, q)
            want = _truth(torch.linalg.eigvalsh(B), k, order)
            op = LinearOperator.from_dense(B)
            plain = solver.solve(op, V0)
            trapped += plain.converged and bool((plain.eigenvalues - want).abs().max() > 1e-3)
            checked = confirm_warm_solve(solver, op, V0, plain, gen)
            assert checked.products >= plain.products and checked.iterations >= plain.iterations
            if checked.converged and bool((checked.eigenvalues - want).abs().max() > TOL * float(want.abs().max())):
                wrong.append((seed, rise, checked.eigenvalues.tolist(), want.tolist()))
    assert not wrong, f"{len(wrong)} checked solves converged and wrong, e.g. {wrong[:2]}"
    assert trapped > 0
