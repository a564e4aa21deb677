"""Eigensolvers against eigvalsh on dense matrices and on dense H, G, R of small MLPs
(docs/math.md §6, D4, D14): the registry, both orderings, rank-deficient operators, warm starts,
and the drift of the stored A·X over many iterations.
"""

from dataclasses import replace

import pytest
import torch

from eoslab.criteria import CrossEntropy
from eoslab.curvature import FullBatchLoss, LinearOperator
from eoslab.eigen import (
    LOBPCG,
    EigResult,
    available_eigensolvers,
    block_power,
    lobpcg,
    make_eigensolver,
    register_eigensolver,
)
from eoslab.models import ModuleModel

from ._cases import MLP_CASES, MLP_CE, MLP_MSE, dense_G, dense_H, with_spectrum

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
#: Every registered solver (collected from the registry, as in test_eigen_contract.py).
SOLVERS = available_eigensolvers()


def dense_ops(case):
    model, theta, X, y, L = case.build()
    H = dense_H(model, case.criterion, theta, X, y)
    G = dense_G(model, case.criterion, theta, X, y)
    return model, theta, L, {"H": H, "G": G, "R": H - G}


def solver(name, k, **kw):
    kw.setdefault("generator", torch.Generator().manual_seed(0))
    return make_eigensolver(name, k, **kw)


def check_pairs(A: torch.Tensor, res: EigResult, atol: float) -> None:
    """The returned values are the Rayleigh quotients of the returned orthonormal vectors, and
    ``residual_norms`` their true residuals, to ``atol``.
    """
    V = res.eigenvectors
    assert torch.allclose(V.T @ V, torch.eye(V.shape[1], dtype=F64), atol=1e-10)
    assert torch.allclose(((A @ V) * V).sum(0), res.eigenvalues, rtol=0, atol=atol)
    true_res = torch.linalg.vector_norm(A @ V - V * res.eigenvalues, dim=0)
    assert torch.allclose(true_res, res.residual_norms, rtol=0, atol=atol)


def check_bounds(res: EigResult, ref: torch.Tensor, tol: float) -> None:
    """What ``converged`` promises (as in test_eigen_contract.py): each eigenvalue is within tol
    of the true one ``ref`` (relative, with the solvers' absolute floor of 1e-8 · max |λ|) and
    within its own certified error bound, up to round-off.
    """
    scale = float(ref.abs().max())
    err = (res.eigenvalues - ref).abs()
    assert res.converged and res.error_bounds is not None and res.error_bounds.shape == ref.shape
    assert bool((err <= tol * torch.clamp(ref.abs(), min=1e-8 * scale) + 1e-12 * scale).all())
    assert bool((err <= res.error_bounds + 1e-12 * scale).all())


# --------------------------------------------------------------------------- registry
def test_registry_names_and_errors():
    names = available_eigensolvers()
    assert {"lobpcg", "power"} <= set(names) and list(names) == sorted(names)
    with pytest.raises(ValueError, match=f"unknown eigensolver 'arpack'; available: {', '.join(names)}$"):
        make_eigensolver("arpack", 1)
    with pytest.raises(ValueError, match="order must be one of algebraic, magnitude"):
        make_eigensolver("lobpcg", 1, order="smallest")
    with pytest.raises(ValueError, match="'power' is already registered"):
        register_eigensolver("power")(type("Another", (), {}))
    with pytest.raises(ValueError, match="magnitude order needs guard >= 2"):
        make_eigensolver("lobpcg", 3, order="magnitude", guard=1)
    with pytest.raises(TypeError, match="colour"):
        make_eigensolver("lobpcg", 1, colour="blue")
    assert isinstance(make_eigensolver("lobpcg", 3, guard=1), LOBPCG)


def test_registering_a_solver_makes_it_available():
    @register_eigensolver("dense-test")
    class Dense:
        def __init__(self, k, *, tol, max_iters, order, generator):
            self.k = k

        def solve(self, op, V0=None):
            A = op(torch.eye(op.dim, dtype=op.dtype))
            values, vectors = torch.linalg.eigh(A)
            return EigResult(values.flip(0)[: self.k], vectors.flip(1)[:, : self.k], 1, op.dim, values[:0], True)

    try:
        assert "dense-test" in available_eigensolvers()
        A = with_spectrum([3.0, 2.0, 1.0])
        res = make_eigensolver("dense-test", 2).solve(LinearOperator.from_dense(A))
        assert torch.allclose(res.eigenvalues, torch.tensor([3.0, 2.0], dtype=F64))
    finally:
        from eoslab import eigen

        del eigen.EIGENSOLVERS["dense-test"]


# --------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("case", MLP_CASES[:2], ids=lambda case: case.id)
@pytest.mark.parametrize("which", ["H", "G", "R"])
def test_lobpcg_top_k_matches_eigvalsh(case, which):
    model, theta, L, dense = dense_ops(case)
    k = 4
    ref = torch.linalg.eigvalsh(dense[which]).flip(0)[:k]
    op = L.operator(theta, which)
    res = LOBPCG(k, tol=1e-11, max_iters=500, generator=torch.Generator().manual_seed(0)).solve(op)
    assert res.converged and res.order == "algebraic"
    assert torch.all(res.eigenvalues[:-1] >= res.eigenvalues[1:])  # by value, descending
    assert float(((res.eigenvalues - ref).abs() / ref.abs()).max()) < 1e-8
    check_pairs(dense[which], res, atol=1e-12 * float(ref.abs().max()))
    assert float(res.residual_norms.max()) < 1e-5 * float(ref.abs().max())
    assert res.products == op.products and res.residual_norms.shape == (k,)


@pytest.mark.parametrize("name", SOLVERS)
def test_indefinite_operator_ranked_by_value(name):
    """R = H − G has eigenvalues of both signs; with order="algebraic" every solver returns the
    algebraically largest (D14), even where a negative eigenvalue is the largest in magnitude.
    """
    _, _, _, dense = dense_ops(MLP_CE)
    ev = torch.linalg.eigvalsh(dense["R"])
    assert ev[0] < 0 < ev[-1]
    A = dense["R"] - 2 * abs(float(ev[0])) * torch.outer(*(2 * [torch.linalg.eigh(dense["R"])[1][:, 0]]))
    ev_a = torch.linalg.eigvalsh(A)
    assert abs(ev_a[0]) > 2 * abs(ev_a[-1])  # the most negative dominates
    res = solver(name, 3, tol=1e-12, max_iters=100000).solve(LinearOperator.from_dense(A))
    assert res.converged
    assert torch.allclose(res.eigenvalues, ev_a.flip(0)[:3], rtol=1e-7)
    check_pairs(A, res, atol=1e-12 * float(ev_a.abs().max()))


@pytest.mark.parametrize("which", ["H", "G"])
def test_block_power_matches_eigvalsh(which):
    model, theta, L, dense = dense_ops(MLP_MSE)
    k = 3
    ref = torch.linalg.eigvalsh(dense[which]).flip(0)[:k]
    res = block_power(
        L.operator(theta, which), k, tol=1e-13, max_iters=20000, generator=torch.Generator().manual_seed(0)
    )
    assert res.converged
    assert float(((res.eigenvalues - ref).abs() / ref.abs()).max()) < 1e-8


def test_block_power_explicit_shift_finds_algebraically_largest_of_R():
    _, _, _, dense = dense_ops(MLP_CE)
    R = dense["R"]
    ev = torch.linalg.eigvalsh(R)
    res = block_power(
        LinearOperator.from_dense(R),
        2,
        tol=1e-14,
        max_iters=50000,
        order="magnitude",
        shift=2 * float(ev.abs().max()),
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.allclose(res.eigenvalues, ev.flip(0)[:2], rtol=1e-8)


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize(("order", "expected"), [("algebraic", [10.0, 9.0, 1.0]), ("magnitude", [-50.0, 10.0, 9.0])])
def test_orderings_with_a_large_negative_eigenvalue(name, order, expected):
    """The k top by value, descending (D14), or by |λ|, descending by |λ| (the authors' code):
    eigenvalues[j] is the (j+1)-th by the order, in every solver.
    """
    A = with_spectrum([-50.0, 10.0, 9.0, 1.0, 0.5, 0.25, 0.1, -0.2, -0.3, 0.05])
    res = solver(name, 3, tol=1e-13, max_iters=20000, order=order).solve(LinearOperator.from_dense(A))
    assert res.converged and res.order == order
    assert torch.allclose(res.eigenvalues, torch.tensor(expected, dtype=F64), rtol=0, atol=1e-8)
    check_pairs(A, res, atol=1e-12 * 50)


# --------------------------------------------------------------------------- rank deficiency
@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("tol", [1e-4, 1e-10])
def test_rank_two_matrix_with_k_three(name, tol):
    """A 60 × 60 PSD matrix of rank 2, k = 3: the two eigenvalues and an exact zero, converged.

    LOBPCG used to diverge here: round-off residuals were normalised into the basis.
    """
    g = torch.Generator().manual_seed(5)
    B = torch.randn(60, 2, generator=g, dtype=F64)
    A = B @ B.T
    ref = torch.linalg.eigvalsh(A).flip(0)[:3]
    res = solver(name, 3, tol=tol).solve(LinearOperator.from_dense(A))
    assert res.converged
    # the block spans the range after one product: exact to round-off whatever the tol
    assert torch.allclose(res.eigenvalues[:2], ref[:2], rtol=1e-10, atol=0)
    assert abs(float(res.eigenvalues[2])) < 1e-12 * float(ref[0])
    check_pairs(A, res, atol=1e-12 * float(ref[0]))
    check_bounds(res, ref, tol)


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("case", MLP_CASES[:2], ids=lambda case: case.id)
def test_gauss_newton_of_one_sample_with_k_five(name, case):
    """G of one sample has rank n_L − 1 (CE) or n_L (MSE) = 2 or 3 < k = 5: the top eigenvalues
    and zeros for the rest, converged.
    """
    model, theta, X, y, L = replace(case, n=1).build()
    criterion = case.criterion
    G = dense_G(model, criterion, theta, X, y)
    ref = torch.linalg.eigvalsh(G).flip(0)[:5]
    rank = 2 if isinstance(criterion, CrossEntropy) else 3
    assert float(ref[rank - 1]) > 1e-3 * float(ref[0]) and float(ref[rank:].abs().max()) < 1e-14 * float(ref[0])
    res = solver(name, 5, tol=1e-10, max_iters=5000).solve(L.operator(theta, "G"))
    assert res.converged
    assert torch.allclose(res.eigenvalues[:rank], ref[:rank], rtol=1e-9, atol=0)
    assert float(res.eigenvalues[rank:].abs().max()) < 1e-12 * float(ref[0])
    check_pairs(G, res, atol=1e-12 * float(ref[0]))
    check_bounds(res, ref, 1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_magnitude_order_finds_either_end(seed):
    """The top 2 by |λ| of random spectra, whose top magnitudes sit at both ends and are close: the
    selection by |r| must not settle on one end (the sentinel and the guards explore both).
    """
    g = torch.Generator().manual_seed(seed)
    lam = torch.randn(36, generator=g, dtype=F64)
    A = with_spectrum(lam, seed=seed)
    ref = lam[torch.argsort(lam.abs(), descending=True)][:2]
    res = solver("lobpcg", 2, tol=1e-10, max_iters=500, order="magnitude").solve(LinearOperator.from_dense(A))
    assert res.converged
    assert torch.allclose(res.eigenvalues, ref, rtol=0, atol=1e-8)


def test_stored_products_do_not_drift():
    """Hundreds of iterations (tol 0: only round-off residuals stop it) on a clustered spectrum,
    through many in-place restarts: the returned values stay the Rayleigh quotients of the
    returned vectors and the reported residuals the true ones, to round-off. Both are computed
    from the stored A·X, so this bounds ‖A·X − stored A·X‖ (it grew from 1e-13 to 1.3 in 20
    iterations in the first LOBPCG).
    """
    lam = torch.cat([torch.tensor([1.0, 0.999, 0.998, 0.997, 0.996]), torch.linspace(0.995, 0.0, 295)])
    A = with_spectrum(lam, seed=2)
    op = LinearOperator.from_dense(A)
    res = solver("lobpcg", 5, tol=0.0, max_iters=400, guard=1).solve(op)
    assert res.iterations > 3 * lobpcg.REFRESH_RESTARTS  # through several refreshes of A·S
    check_pairs(A, res, atol=1e-13)
    assert torch.allclose(res.eigenvalues, lam[:5].to(F64), rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- warm starts
@pytest.mark.parametrize("name", SOLVERS)
def test_warm_start_needs_fewer_products(name):
    """A warm start from the eigenvectors at slightly perturbed parameters converges in fewer
    products than a cold start (the exponential Euler solver relies on this).
    """
    model, theta, L, _ = dense_ops(MLP_CE)
    k, g = 3, torch.Generator().manual_seed(3)
    prev = solver(name, k, tol=1e-10, max_iters=20000, generator=g).solve(L.operator(theta, "H"))
    theta2 = theta + 1e-4 * torch.randn(theta.shape, generator=g, dtype=theta.dtype)
    cold = solver(name, k, tol=1e-6, max_iters=20000, generator=torch.Generator().manual_seed(4))
    cold = cold.solve(L.operator(theta2, "H"))
    warm = solver(name, k, tol=1e-6, max_iters=20000).solve(L.operator(theta2, "H"), prev.warm_start())
    assert cold.converged and warm.converged
    assert warm.products < cold.products
    assert torch.allclose(warm.eigenvalues, cold.eigenvalues, rtol=1e-5)


def test_warm_start_keeps_vectors_as_rows():
    res = LOBPCG(2, guard=2).solve(LinearOperator.from_dense(with_spectrum(torch.linspace(1, 0, 12))))
    V0 = res.warm_start()
    assert V0.shape == (12, 4) and V0.T.is_contiguous()
    assert torch.equal(V0[:, :2], res.eigenvectors) and torch.equal(V0[:, 2:], res.guard_vectors)
    assert V0.data_ptr() == res.eigenvectors.data_ptr()  # LOBPCG's vectors are one block: a view, no copy
    apart = EigResult(res.eigenvalues, res.eigenvectors.clone(), 0, 0, res.residual_norms, True, res.guard_vectors)
    assert torch.equal(apart.warm_start(), V0) and apart.warm_start().data_ptr() != V0.data_ptr()


@pytest.mark.parametrize("iters", [0, 1, 3])
def test_residual_norms_of_unconverged_pairs_are_the_true_ones(iters):
    """Stopped early (residuals far above round-off, so they come from the Gram matrix of the
    stored A·S, not from residual rows), the reported residual norms are still the true ones.
    """
    A = with_spectrum(torch.cat([torch.tensor([50.0, 40.0, 30.0]), torch.linspace(20, -5, 197)]), seed=4)
    res = solver("lobpcg", 3, tol=1e-12, max_iters=iters).solve(LinearOperator.from_dense(A))
    assert not res.converged and float(res.residual_norms.min()) > 1e-3
    check_pairs(A, res, atol=1e-11)


@pytest.mark.parametrize("name", SOLVERS)
def test_non_convergence_is_reported_not_raised(name):
    _, theta, L, _ = dense_ops(MLP_CE)
    res = solver(name, 4, tol=1e-15, max_iters=2).solve(L.operator(theta, "H"))
    assert not res.converged and res.iterations == 2


# --------------------------------------------------------------------------- mixed precision
def test_mixed_precision_is_certified_in_float64():
    """Float32 products are off by ≈ 1e-7 of the largest eigenvalue (here 1e4: ≈ 1e-3 absolute,
    5e-4 of the wanted 2.0 … 1.8); a tolerance of 1e-10 is met all the same, by the float64 phase,
    and the result is that of an all-float64 solve.
    """
    lam = torch.cat([torch.tensor([1e4, 5e3, 2.0, 1.9, 1.8], dtype=F64), torch.linspace(1.5, -1, 195, dtype=F64)])
    A = with_spectrum(lam, seed=5)
    mixed = solver("lobpcg", 5, tol=1e-10, max_iters=500, precision="mixed").solve(LinearOperator.from_dense(A))
    plain = solver("lobpcg", 5, tol=1e-10, max_iters=500).solve(LinearOperator.from_dense(A))
    assert 0 < mixed.low_products < mixed.products and plain.low_products == 0
    check_bounds(mixed, lam[:5], 1e-10)
    check_pairs(A, mixed, atol=1e-9)
    assert torch.allclose(mixed.eigenvalues, plain.eigenvalues, rtol=1e-10, atol=0)


def test_mixed_precision_on_the_hessian_of_an_mlp():
    """The float32 form of H (the loss's data and θ cast, products cast back) is H to float32
    round-off, and a mixed solve, cold and then warm after a small move, meets D4's tolerance
    against the dense Hessian.
    """
    model, theta, L, dense = dense_ops(MLP_CE)
    op = L.operator(theta, "H")
    V = torch.randn(4, op.dim, generator=torch.Generator().manual_seed(1), dtype=F64)
    low = op.lowered()
    assert low is op.lowered() and low.dtype == F64  # made once; blocks in and out in float64
    HV, HV32 = op(V), low(V)
    assert HV32.dtype == F64 and 1e-12 < float((HV32 - HV).abs().max() / HV.abs().max()) < 1e-5
    s = solver("lobpcg", 3, tol=1e-6, max_iters=300, precision="mixed")
    cold = s.solve(op)
    check_bounds(cold, torch.linalg.eigvalsh(dense["H"]).flip(0)[:3], 1e-6)
    theta2 = theta + 1e-4 * torch.randn(theta.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
    H2 = dense_H(model, MLP_CE.criterion, theta2, L.X, L.y)
    warm = s.solve(L.operator(theta2, "H"), cold.warm_start())
    check_bounds(warm, torch.linalg.eigvalsh(H2).flip(0)[:3], 1e-6)
    assert warm.low_products > 0


def test_mixed_precision_needs_a_float32_form():
    """An operator without one (derived, or a model that computes in float64 from float32
    inputs) is refused with a message, not solved in float64 behind the user's back.
    """
    A = LinearOperator.from_dense(with_spectrum(torch.linspace(1, 0, 20, dtype=F64)))
    with pytest.raises(ValueError, match="no float32 form"):
        solver("lobpcg", 2, precision="mixed").solve(A.shifted(1.0))
    with pytest.raises(ValueError, match="precision must be one of"):
        LOBPCG(2, precision="float16")
    with pytest.raises(TypeError, match="unexpected keyword argument 'precision'"):
        solver("power", 2, precision="mixed")

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)
            self.register_buffer("scale", torch.ones(2, dtype=F64))

        def forward(self, x):
            return self.lin(x) * self.scale

    model = ModuleModel(Scaled(), input_shape=(3,))  # θ becomes the parameters, the buffer stays float64
    X, y = torch.randn(5, 3, dtype=F64), torch.tensor([0, 1, 0, 1, 1])
    L = FullBatchLoss(model, CrossEntropy(), X, y)
    with pytest.raises(ValueError, match="computes in torch.float64"):
        L.operator(model.init_params(0), "H").lowered()
