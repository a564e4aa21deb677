"""Eigensolvers against eigvalsh on dense H, G, R of small MLPs (docs/math.md §6, D4, D14)."""

import pytest
import torch

from eoslab.criteria import MSE, CrossEntropy
from eoslab.curvature import LinearOperator
from eoslab.eigen import LOBPCG, block_power, top_eigenpairs
from test_curvature import dense_G, dense_H, make_problem


def dense_ops(criterion):
    model, theta, X, y, L = make_problem(criterion)
    H = dense_H(model, criterion, theta, X, y)
    G = dense_G(model, criterion, theta, X, y)
    return model, theta, L, {"H": H, "G": G, "R": H - G}


@pytest.mark.parametrize("criterion", [CrossEntropy(), MSE()], ids=repr)
@pytest.mark.parametrize("which", ["H", "G", "R"])
def test_lobpcg_top_k_matches_eigvalsh(criterion, which):
    model, theta, L, dense = dense_ops(criterion)
    k = 4
    ref = torch.linalg.eigvalsh(dense[which]).flip(0)[:k]
    op = L.operator(theta, which)
    res = LOBPCG(k, tol=1e-11, max_iters=500, generator=torch.Generator().manual_seed(0)).solve(op)
    assert res.converged
    assert torch.all(res.eigenvalues[:-1] >= res.eigenvalues[1:])  # by value, descending
    assert float(((res.eigenvalues - ref).abs() / ref.abs()).max()) < 1e-8
    V = res.eigenvectors
    assert torch.allclose(V.T @ V, torch.eye(k, dtype=V.dtype), atol=1e-10)
    residual = torch.linalg.vector_norm(dense[which] @ V - V * res.eigenvalues, dim=0)
    assert torch.allclose(residual, res.residual_norms, rtol=1e-6, atol=1e-12)
    assert float(residual.max()) < 1e-5 * float(ref.abs().max())
    assert res.products == op.products and res.residual_norms.shape == (k,)


def test_residual_is_indefinite_and_lobpcg_ranks_by_value():
    """R = H − G has eigenvalues of both signs; the solver must return the algebraically
    largest (D14), even where a negative eigenvalue is the largest in magnitude.
    """
    _, _, _, dense = dense_ops(CrossEntropy())
    ev = torch.linalg.eigvalsh(dense["R"])
    assert ev[0] < 0 < ev[-1]
    A = dense["R"] - 2 * abs(float(ev[0])) * torch.outer(*(2 * [torch.linalg.eigh(dense["R"])[1][:, 0]]))
    ev_a = torch.linalg.eigvalsh(A)
    assert abs(ev_a[0]) > abs(ev_a[-1])  # most negative dominates
    res = LOBPCG(3, tol=1e-11, max_iters=500).solve(LinearOperator.from_dense(A))
    assert torch.allclose(res.eigenvalues, ev_a.flip(0)[:3], rtol=1e-8)


@pytest.mark.parametrize("which", ["H", "G"])
def test_block_power_matches_eigvalsh(which):
    model, theta, L, dense = dense_ops(MSE())
    k = 3
    ref = torch.linalg.eigvalsh(dense[which]).flip(0)[:k]
    res = block_power(
        L.operator(theta, which), k, tol=1e-13, max_iters=20000, generator=torch.Generator().manual_seed(0)
    )
    assert res.converged
    assert float(((res.eigenvalues - ref).abs() / ref.abs()).max()) < 1e-8


def test_block_power_shift_finds_algebraically_largest_of_R():
    _, _, _, dense = dense_ops(CrossEntropy())
    R = dense["R"]
    ev = torch.linalg.eigvalsh(R)
    res = block_power(
        LinearOperator.from_dense(R),
        2,
        tol=1e-14,
        max_iters=50000,
        shift=2 * float(ev.abs().max()),
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.allclose(res.eigenvalues, ev.flip(0)[:2], rtol=1e-8)


def test_block_power_sign_of_negative_dominant_eigenvalue():
    """Plain power iteration finds the largest magnitude; the sign of diag(R) must be right."""
    A = torch.diag(torch.tensor([-5.0, 3.0, 1.0, 0.5], dtype=torch.float64))
    res = block_power(LinearOperator.from_dense(A), 2, tol=1e-12, max_iters=5000)
    assert torch.allclose(res.eigenvalues, torch.tensor([3.0, -5.0], dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("method", ["lobpcg", "power"])
def test_warm_start_needs_fewer_products(method):
    """A warm start from the eigenvectors at slightly perturbed parameters converges in fewer
    products than a cold start (the exponential Euler solver relies on this).
    """
    model, theta, L, _ = dense_ops(CrossEntropy())
    k = 3
    g = torch.Generator().manual_seed(3)
    prev = top_eigenpairs(L.operator(theta, "H"), k, method=method, tol=1e-10, max_iters=20000, generator=g)
    theta2 = theta + 1e-4 * torch.randn(theta.shape, generator=g, dtype=theta.dtype)
    cold = top_eigenpairs(
        L.operator(theta2, "H"), k, method=method, tol=1e-6, max_iters=20000, generator=torch.Generator().manual_seed(4)
    )
    warm = top_eigenpairs(
        L.operator(theta2, "H"),
        k,
        prev.eigenvectors,
        method=method,
        tol=1e-6,
        max_iters=20000,
        generator=torch.Generator().manual_seed(4),
    )
    assert cold.converged and warm.converged
    assert warm.products < cold.products
    assert torch.allclose(warm.eigenvalues, cold.eigenvalues, rtol=1e-5)


def test_non_convergence_is_reported_not_raised():
    _, theta, L, _ = dense_ops(CrossEntropy())
    res = LOBPCG(4, tol=1e-15, max_iters=1).solve(L.operator(theta, "H"))
    assert not res.converged and res.iterations == 1
    res = block_power(L.operator(theta, "H"), 4, tol=1e-15, max_iters=2)
    assert not res.converged and res.iterations == 2


def test_unknown_method():
    with pytest.raises(ValueError, match="lobpcg"):
        top_eigenpairs(LinearOperator.from_dense(torch.eye(3, dtype=torch.float64)), 1, method="arpack")
