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

from ._cases import MLP_CE, MLP_MSE, dense_H, mlp_case, with_spectrum


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


def rademacher(count, P, generator):
    """``count`` Rademacher rows (count, P) in float64, drawn as the spectrum module documents its
    probes (``torch.randint(0, 2, (count, P), dtype=int8)`` on the CPU, mapped to ±1): replaying a
    generator this way rebuilds exactly the probes the code used, so the dense references below see
    the same vectors.
    """
    return (2 * torch.randint(0, 2, (count, P), generator=generator, dtype=torch.int8) - 1).double()


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
    P = H.shape[0]
    est = hutchinson_trace(loss.operator(theta, "H"), 400, block=100, generator=gen())
    # exact reference for this draw: the same 400 probes (4 blocks of 100 from one generator),
    # each zᵀHz by the dense H; the value is their mean, the standard error their std (n − 1) / √n
    g = gen()
    Z = torch.cat([rademacher(100, P, g) for _ in range(4)])
    samples = ((Z @ H) * Z).sum(1)
    assert est.value == pytest.approx(float(samples.mean()), rel=1e-12)
    assert est.stderr == pytest.approx(float(samples.std()) / math.sqrt(400), rel=1e-12)
    torch.testing.assert_close(est.samples, samples, rtol=1e-12, atol=0)
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
    v = rademacher(2, P, gen(3)) / math.sqrt(P)
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
    # with steps = P the quadrature is exact: each probe's negative mass is Σ_{λ_i<0} (q_iᵀv)² with
    # q_i, λ_i from the dense eigh of H (no |λ_i| below 4e-4 here, so every sign is unambiguous),
    # for the same 64 unit probes (replayed from the generator)
    lam, Q = torch.linalg.eigh(H)
    v = rademacher(64, P, gen(4)) / math.sqrt(P)
    exact_per_probe = (v @ Q[:, lam < 0]).square().sum(1)
    assert float(lam.abs().min()) > 1e-4
    assert density.negative_mass_bounds == pytest.approx((float(exact_per_probe.mean()),) * 2, abs=1e-10)
    assert density.negative_mass == pytest.approx(float(exact_per_probe.mean()), abs=1e-10)
    # and, statistically, that mean over 64 probes is within a few standard errors of the exact
    # fraction of negative eigenvalues (what the estimator estimates)
    assert abs(density.negative_mass - negative) < 4 * float(exact_per_probe.std()) / 8 + 1e-12
    bottom = bottom_eigenvalues(loss.operator(theta, "H"), 2, tol=1e-8, generator=gen())
    torch.testing.assert_close(bottom.eigenvalues, eig[:2], rtol=1e-6, atol=1e-9)
    assert bottom.converged


@pytest.mark.parametrize("steps", [5, 12, 40])
def test_negative_mass_bounds_hold_on_hard_spectra(steps):
    """The Gauss–Radau bounds on each probe's mass below 0 against the exact Σ_{λ_i<0} (q_iᵀv)²,
    on spectra built to break them: a large null space (an over-parameterised network's H, where the
    Gauss estimate alone is off by 0.5), a cluster just either side of 0, and H of MLPs with P ≫ n;
    many random probes, few to many Lanczos steps. The old estimate Σ_{θ_j<0} w_j is shown to leave
    the exact mass on the null-space spectrum, which the bounds do not.
    """
    P = 150
    spectra = {
        "null space": torch.cat([torch.zeros(100), torch.linspace(-2, -0.1, 20), torch.linspace(0.1, 9, 30)]),
        "cluster at 0": torch.cat([torch.linspace(-1e-3, 1e-3, 80), torch.linspace(-3, 5, 70)]),
        "one negative": torch.cat([torch.tensor([-1e-6]), torch.linspace(1, 4, P - 1)]),
    }
    mats = {name: with_spectrum(lam, seed=i) for i, (name, lam) in enumerate(spectra.items())}
    for crit, (width, n) in [(MLP_CE.criterion, (16, 4)), (MLP_MSE.criterion, (16, 3))]:
        model, theta, X, y, _ = mlp_case(crit, width=width, n=n).build()
        mats[f"mlp {crit.name}"] = dense_H(model, crit, theta, X, y)
    gauss_off = 0.0
    for name, A in mats.items():
        lam, Q = torch.linalg.eigh(A)
        below = lam < -1e-10 * float(lam.abs().max())
        for seed in range(8):
            density = lanczos_quadrature(LinearOperator.from_dense(A), probes=8, steps=steps, generator=gen(seed))
            v = rademacher(8, A.shape[0], gen(seed)) / math.sqrt(A.shape[0])
            exact = (v @ Q[:, below]).square().sum(1)
            bounds = density.mass_below_bounds(0.0)
            assert bool((bounds[:, 0] <= exact + 1e-10).all() and (exact <= bounds[:, 1] + 1e-10).all()), (name, seed)
            low, high = density.negative_mass_bounds
            assert low <= density.negative_mass <= high
            if name == "null space":
                gauss = float((density.weights * (density.nodes < 0)).sum(1).mean())
                gauss_off = max(gauss_off, abs(gauss - float(exact.mean())))
    if steps < 40:
        assert gauss_off > 0.1  # what the bounds guard against


def test_negative_mass_bounds_are_tight_away_from_zero():
    """A spectrum with no eigenvalue near 0 leaves no weight at 0: low = high = the exact mass."""
    A = with_spectrum(torch.cat([torch.linspace(-3, -1, 40), torch.linspace(1, 6, 60)]), seed=7)
    lam, Q = torch.linalg.eigh(A)
    density = lanczos_quadrature(LinearOperator.from_dense(A), probes=4, steps=40, generator=gen(1))
    exact = float((rademacher(4, 100, gen(1)) / 10 @ Q[:, lam < 0]).square().sum(1).mean())
    low, high = density.negative_mass_bounds
    assert high - low < 1e-6 and density.negative_mass == pytest.approx(exact, abs=1e-6)


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
    """The rows against dense references for the exact probes the summary draws: its one generator
    (seed 0) gives the trace's 40 probes (two blocks of 20, the default block) and then the SLQ's
    2 probes, so replaying it gives each row's exact value; steps = P makes the SLQ exact.
    """
    model, theta, X, y, loss = replace(MLP_CE, n=12).build()
    H = dense_H(model, loss.criterion, theta, X, y)
    P = H.shape[0]
    summary = spectrum_summary(loss, theta, trace_samples=40, probes=2, steps=P, tol=1e-8)
    rows = {(r["metric"], r["layer"]): r["value"] for r in summary.rows(5, 0.5)}
    lam, Q = torch.linalg.eigh(H)
    assert rows[("bottom_eigenvalue_H", None)] == pytest.approx(float(lam[0]), rel=1e-5)
    draw = gen(0)
    Z = torch.cat([rademacher(20, P, draw), rademacher(20, P, draw)])
    samples = ((Z @ H) * Z).sum(1)
    assert rows[("hessian_trace", None)] == pytest.approx(float(samples.mean()), rel=1e-12)
    assert rows[("hessian_trace_stderr", None)] == pytest.approx(float(samples.std()) / math.sqrt(40), rel=1e-12)
    assert abs(rows[("hessian_trace", None)] - float(torch.trace(H))) < 5 * rows[("hessian_trace_stderr", None)]
    # negative mass: Σ_{λ_i<0} (q_iᵀv)² per unit probe v (the dense eigh of H), averaged. With
    # cross-entropy H has an exact null space (softmax's shift invariance: one vector added to every
    # class's row of the last layer's weight and bias, width + 1 = 9 directions): its eigenvalue is
    # 0, not negative, but its Ritz value is 0 only to round-off, of either sign. The bounds put its
    # weight above the low one and below the high one; the estimate is their middle.
    v = rademacher(2, P, draw) / math.sqrt(P)
    null = lam.abs() <= 1e-10 * float(lam.abs().max())
    assert int(null.sum()) == 9 and float(lam[~null].abs().min()) > 1e-7 * float(lam.abs().max())
    weight = (v @ Q).square()
    negative, zero = float(weight[:, (lam < 0) & ~null].sum(1).mean()), float(weight[:, null].sum(1).mean())
    assert zero > 0.01  # the probes see the null space
    assert rows[("negative_mass_low", None)] == pytest.approx(negative, abs=1e-10)
    assert rows[("negative_mass_high", None)] == pytest.approx(negative + zero, abs=1e-10)
    assert rows[("negative_mass", None)] == pytest.approx(negative + zero / 2, abs=1e-10)
    for i, g in enumerate(model.groups()):
        dense = float(torch.linalg.eigvalsh(H[g.slice, g.slice])[-1])
        assert rows[("block_sharpness_H", i + 1)] == pytest.approx(dense, rel=1e-6)
