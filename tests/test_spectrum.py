"""The spectrum beyond λ¹ (docs/math.md §9) against the dense Hessian of small networks:
Hutchinson's trace and its standard error, the SLQ density, the bottom eigenvalues, the negative
mass, the per-group Hessian blocks; and the operators they are built on (−A, A + cI, SAS, A[g, g]).
"""

import math
from dataclasses import replace

import pytest
import torch

from eoslab.curvature import LinearOperator
from eoslab.spectrum import (
    block_sharpness,
    bottom_eigenvalues,
    hutchinson_trace,
    lanczos_quadrature,
    spectrum_summary,
)

from ._cases import MLP_CE, MLP_MSE, dense_H


@pytest.fixture(scope="module")
def problem():
    """A 3-layer MLP (P = 139) on 20 samples, with MSE, and its dense float64 H: indefinite
    (the residual R is not negligible at init with MSE), so the bottom and the negative mass are real.
    """
    model, theta, X, y, loss = MLP_MSE.build()
    H = dense_H(model, loss.criterion, theta, X, y)
    return model, theta, loss, H


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_derived_operators_match_dense(problem):
    _, theta, loss, H = problem
    op = loss.operator(theta, "H")
    V = torch.randn(3, H.shape[0], generator=gen(), dtype=torch.float64)
    s = torch.rand(H.shape[0], generator=gen(1), dtype=torch.float64) + 0.5
    part = slice(40, 81)
    torch.testing.assert_close(-op @ V.T, -(H @ V.T))
    torch.testing.assert_close(op.shifted(0.3) @ V.T, (H + 0.3 * torch.eye(H.shape[0], dtype=H.dtype)) @ V.T)
    torch.testing.assert_close(V @ op.scaled(s), V @ (s[:, None] * H * s[None, :]))
    torch.testing.assert_close(V[:, part] @ op.restrict(part), V[:, part] @ H[part, part])
    with pytest.raises(ValueError, match="contiguous"):
        op.restrict(slice(0, 10, 2))


def test_hutchinson_trace_within_its_standard_error(problem):
    _, theta, loss, H = problem
    est = hutchinson_trace(loss.operator(theta, "H"), 400, block=100, generator=gen())
    exact = float(torch.trace(H))
    # the standard error estimates the true one, sqrt(2 (‖H‖_F² − Σ H_ii²) / n)
    true_se = math.sqrt(2 * (float(H.square().sum()) - float(torch.diag(H).square().sum())) / 400)
    assert est.stderr == pytest.approx(true_se, rel=0.2)
    assert abs(est.value - exact) < 4 * true_se
    assert est.products == 400 and est.samples.shape == (400,)
    # exact for a diagonal operator, standard error 0
    D = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    diag = hutchinson_trace(LinearOperator.from_dense(D), 5, generator=gen())
    assert diag.value == pytest.approx(55.0, abs=1e-12) and diag.stderr == pytest.approx(0.0, abs=1e-12)


def test_slq_exact_with_P_steps(problem):
    """With steps = P each probe's nodes are H's eigenvalues and the quadrature is exact:
    Σ_j w_j node_j^q = vᵀ H^q v for the probe's unit v.
    """
    _, theta, loss, H = problem
    P = H.shape[0]
    eig = torch.linalg.eigvalsh(H)
    density = lanczos_quadrature(LinearOperator.from_dense(H), probes=2, steps=P, generator=gen(3))
    torch.testing.assert_close(density.weights.sum(1), torch.ones(2, dtype=torch.float64))
    v = (2 * torch.randint(0, 2, (2, P), generator=gen(3), dtype=torch.int8) - 1).double() / math.sqrt(P)
    for q in (1, 2, 3):
        exact = float(((v @ torch.linalg.matrix_power(H, q)) * v).sum(1).mean())
        assert density.expectation(lambda x, q=q: x**q) == pytest.approx(exact, rel=1e-8)
    # every node with weight is an eigenvalue of H (to round-off of the largest)
    seen = density.nodes[density.weights > 1e-12]
    gap = (seen[:, None] - eig[None, :]).abs().min(1).values
    assert float(gap.max()) < 1e-8 * float(eig.abs().max())
    # the smoothed density integrates to 1
    grid = torch.linspace(float(eig[0]) - 1, float(eig[-1]) + 1, 4001, dtype=torch.float64)
    mass = torch.trapezoid(density.density(grid, sigma=0.05), grid)
    assert float(mass) == pytest.approx(1.0, abs=1e-6)


def test_negative_mass_and_bottom_vs_eigvalsh(problem):
    _, theta, loss, H = problem
    P = H.shape[0]
    eig = torch.linalg.eigvalsh(H)
    negative = float((eig < 0).sum()) / P
    assert 0.05 < negative < 0.95  # an indefinite H: the test can tell mass from none
    density = lanczos_quadrature(LinearOperator.from_dense(H), probes=64, steps=P, generator=gen(4))
    # the per-probe negative mass is Σ_{λ_i<0} (q_iᵀv)²; its mean over 64 probes is within a few
    # standard errors of the exact fraction
    per_probe = (density.weights * (density.nodes < 0)).sum(1)
    assert abs(density.negative_mass - negative) < 4 * float(per_probe.std()) / 8 + 1e-12
    bottom = bottom_eigenvalues(loss.operator(theta, "H"), 2, tol=1e-8, generator=gen())
    torch.testing.assert_close(bottom.eigenvalues, eig[:2], rtol=1e-6, atol=1e-9)
    assert bottom.converged


def test_block_sharpness_vs_dense_blocks(problem):
    model, theta, loss, H = problem
    parts = {g.name: g.slice for g in model.groups()}
    blocks = block_sharpness(loss.operator(theta, "H"), parts, tol=1e-8, generator=gen())
    assert list(blocks) == ["layer1", "layer2", "layer3"]
    for name, part in parts.items():
        assert float(blocks[name].eigenvalues[0]) == pytest.approx(
            float(torch.linalg.eigvalsh(H[part, part])[-1]), rel=1e-6
        )
    # a block's λ¹ is not H's: the test would catch an unrestricted solve
    assert float(blocks["layer1"].eigenvalues[0]) < 0.99 * float(torch.linalg.eigvalsh(H)[-1])


def test_spectrum_summary_rows():
    model, theta, X, y, loss = replace(MLP_CE, n=12).build()
    H = dense_H(model, loss.criterion, theta, X, y)
    summary = spectrum_summary(loss, theta, trace_samples=40, probes=2, steps=10, tol=1e-8)
    rows = {(r["metric"], r["layer"]): r["value"] for r in summary.rows(5, 0.5)}
    assert rows[("bottom_eigenvalue_H", None)] == pytest.approx(float(torch.linalg.eigvalsh(H)[0]), rel=1e-5)
    assert abs(rows[("hessian_trace", None)] - float(torch.trace(H))) < 5 * rows[("hessian_trace_stderr", None)]
    assert 0 <= rows[("negative_mass", None)] <= 1
    for i, g in enumerate(model.groups()):
        dense = float(torch.linalg.eigvalsh(H[g.slice, g.slice])[-1])
        assert rows[("block_sharpness_H", i + 1)] == pytest.approx(dense, rel=1e-6)
