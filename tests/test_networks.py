"""Any network through the curvature core, the eigensolvers, exponential Euler and the analysis:
a CNN and a module with LayerNorm and multi-head attention against dense references
(``torch.func.hessian``, per-sample ``jacrev``), and the operators' scipy interop.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse.linalg
import torch
from torch import nn

from eoslab.analysis import (
    SHARPNESS_SOLVER,
    AnalysisSpec,
    GroupStats,
    MLPOnlyError,
    analyze_snapshot,
    group_grams,
    group_statistics,
    layerwise_statistics,
    per_sample_statistics,
)
from eoslab.criteria import CrossEntropy
from eoslab.curvature import FullBatchLoss, LinearOperator
from eoslab.eigen import LOBPCG
from eoslab.eigspec import EigSpec
from eoslab.integrators import ExponentialEuler
from eoslab.models import CNN, ModuleModel

from ._cases import CRITERIA, Case, dense_G, dense_H, mlp_case, per_sample_jacobians, rel
from ._train_helpers import ANY_NETWORK_METRICS

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


class Attention(nn.Module):
    """LayerNorm, 2-head self-attention with a residual, a smooth read-out over the tokens."""

    def __init__(self, d: int = 4, tokens: int = 3, out: int = 3) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.head = nn.Linear(d * tokens, out)

    def forward(self, x):
        h = self.norm(x)
        h = x + self.attn(h, h, h, need_weights=False)[0]
        return self.head(torch.tanh(h).flatten(1))


#: A small CNN on 10 single-channel 6 × 6 images, at θ_0, with cross-entropy.
CNN_CASE = Case("cnn", lambda: CNN((1, 6, 6), 3, [2, 3]), (1, 6, 6), CrossEntropy(), n=10)
#: :class:`Attention` on 10 sequences of 3 tokens of width 4, at θ_0, with cross-entropy.
ATTENTION_CASE = Case(
    "attention", lambda: ModuleModel(Attention(), input_shape=(3, 4), output_dim=3), (3, 4), CrossEntropy(), n=10
)
#: Both networks at a non-initial θ (5 GD steps of 0.1), with cross-entropy and with MSE.
NETWORK_CASES = [
    replace(case, criterion=criterion, gd_steps=5, lr=0.1)
    for case in (CNN_CASE, ATTENTION_CASE)
    for criterion in CRITERIA[:2]
]


@pytest.fixture(scope="module", params=NETWORK_CASES, ids=lambda case: case.id)
def dense(request):
    """The network case with its dense H and G."""
    model, theta, X, y, _ = request.param.build()
    criterion = request.param.criterion
    return model, criterion, theta, X, y, dense_H(model, criterion, theta, X, y), dense_G(model, criterion, theta, X, y)


@pytest.mark.parametrize("method", ["fwd_rev", "rev_rev", "loop"])
def test_block_products_match_dense(dense, method):
    model, criterion, theta, X, y, H, G = dense
    L = FullBatchLoss(model, criterion, X, y, hvp_method=method, chunk_size=4)
    V = torch.randn(5, model.num_params, dtype=F64, generator=torch.Generator().manual_seed(1))
    assert rel(L.hvp(theta, V), V @ H) < 1e-10
    assert rel(L.ggnvp(theta, V), V @ G) < 1e-10
    assert rel(L.residual_vp(theta, V), V @ (H - G)) < 1e-10
    assert (H - G).norm() > 1e-2 * H.norm()  # R matters, so a wrong G would show
    ref = torch.func.grad(lambda th: criterion.losses(model(th, X), y).mean())(theta)
    assert rel(L.value_and_grad(theta).grad, ref) < 1e-13


def test_top_eigenvalues_match_dense(dense):
    model, criterion, theta, X, y, H, G = dense
    L = FullBatchLoss(model, criterion, X, y)
    for which, A in (("H", H), ("G", G), ("R", H - G)):
        ref = torch.linalg.eigvalsh((A + A.T) / 2).flip(0)[:3]
        res = LOBPCG(3, tol=1e-12, max_iters=500, generator=torch.Generator().manual_seed(2)).solve(
            L.operator(theta, which)
        )
        assert res.converged and torch.allclose(res.eigenvalues, ref, rtol=1e-9, atol=1e-12), which


def test_exponential_euler_step_matches_a_dense_eigh_step(dense):
    """One step (docs/math.md §7) against θ − Σ_m r^m c^m v^m − Δt w from eigh of the dense H."""
    model, criterion, theta, X, y, H, _ = dense
    L = FullBatchLoss(model, criterion, X, y)
    k, eta_max = 3, 10.0
    ee = ExponentialEuler(L, theta, k=k, eta_max=eta_max, eigensolver=EigSpec(tol=1e-14, max_iters=2000))
    report = ee.step()
    lam, U = torch.linalg.eigh((H + H.T) / 2)
    lam, U = lam.flip(0), U.flip(1)
    g = torch.func.grad(lambda th: criterion.losses(model(th, X), y).mean())(theta)
    dt = min(eta_max, 1 / abs(float(lam[k])))
    c = U[:, :k].T @ g
    r = torch.tensor([min((1 - math.exp(-float(m) * dt)) / float(m), dt) for m in lam[:k]], dtype=F64)
    expected = theta - U[:, :k] @ (r * c) - dt * (g - U[:, :k] @ c)
    assert report.dt == pytest.approx(dt, rel=1e-10)
    assert report.eigenvalues == pytest.approx(lam[: k + 1].tolist(), rel=1e-10)
    # the solver's eigenvectors are accurate to ~√tol, so the step agrees to ~1e-8 (a wrong r, Δt,
    # sign or bulk term would be off by O(1e-2) or more)
    assert rel(ee.theta, expected) < 1e-8
    assert rel(ee.theta - theta, expected - theta) < 1e-7  # the step itself, not just θ


def _dense_group_statistics(model, criterion, theta, X, y):
    """(E‖J̃‖², [E‖J̃_i‖² per parameter group], E‖H_ℓ‖) from per-sample jacrev Jacobians (Eq. 4)."""
    Jt, Ji, hn = [], [[] for _ in model.groups()], []
    for J, Hl in per_sample_jacobians(model, criterion, theta, X, y):
        mu, U = torch.linalg.eigh(Hl)
        S = U @ torch.diag(mu.clamp(min=0).sqrt()) @ U.T
        Jt.append(float(torch.linalg.eigvalsh(S @ J @ J.T @ S)[-1]))
        for i, grp in enumerate(model.groups()):
            Jg = S @ J[:, grp.slice]
            Ji[i].append(float(torch.linalg.eigvalsh(Jg @ Jg.T)[-1]))
        hn.append(float(mu[-1]))
    return float(np.mean(Jt)), [float(np.mean(v)) for v in Ji], float(np.mean(hn))


def test_per_group_statistics_match_per_sample_jacobians(dense):
    """E‖J̃‖², E‖J̃_i‖² per parameter group (Eq. 4) and E‖H_ℓ‖ from per-sample jacrev Jacobians."""
    model, criterion, theta, X, y, *_ = dense
    jtilde, layers, hnorm = _dense_group_statistics(model, criterion, theta, X, y)
    st = group_statistics(model, criterion, theta, X, y, chunk_size=3)
    assert st.jtilde_sqnorm == pytest.approx(jtilde, rel=1e-11)
    assert torch.allclose(st.layer_sqnorm, torch.tensor(layers, dtype=F64), rtol=1e-11, atol=0)
    assert st.criterion_hessian_norm == pytest.approx(hnorm, rel=1e-12)


def test_analysis_of_a_network_has_the_whole_network_metrics_only(dense):
    """λ¹ of H, G, R and ρ = λ¹(G) / E‖J̃‖² (Eq. 3) against the dense H, G and per-sample Jacobians;
    only the metrics any network has.
    """
    model, criterion, theta, X, y, H, G = dense
    L = FullBatchLoss(model, criterion, X, y)
    res = analyze_snapshot(L, theta, AnalysisSpec(replace(SHARPNESS_SOLVER, tol=1e-10, max_iters=500), chunk_size=4))
    assert isinstance(res.stats, GroupStats) and res.c5_t0 is None
    for which, A in (("H", H), ("G", G), ("R", H - G)):
        assert res.raw_sharpness(which) == pytest.approx(float(torch.linalg.eigvalsh(A)[-1]), rel=1e-8)
    jtilde, _, _ = _dense_group_statistics(model, criterion, theta, X, y)
    assert res.overlap_ratio == pytest.approx(float(torch.linalg.eigvalsh(G)[-1]) / jtilde, rel=1e-8)
    rows = res.rows()
    metrics = {r["metric"] for r in rows}
    assert metrics == ANY_NETWORK_METRICS
    assert sorted(r["layer"] for r in rows if r["metric"] == "layer_sqnorm") == list(range(1, len(model.groups()) + 1))
    with pytest.raises(MLPOnlyError, match="stability bound needs the MLP"):
        _ = res.stability_bound


def test_mlp_only_factors_are_refused_with_the_reason():
    model, theta, X, y, _ = CNN_CASE.build()
    for fn in (layerwise_statistics, per_sample_statistics):
        with pytest.raises(MLPOnlyError, match=r"need the paper's MLP.*a CNN has no such layers"):
            fn(model, CrossEntropy(), theta, X, y)


def test_group_path_on_the_mlp_equals_its_structured_path():
    """The Jacobian-free products of group_grams against the MLP's back-propagated P̃_i (§4)."""
    model, theta, X, y, _ = mlp_case(CrossEntropy(), depth=4, width=6, n=9, data_seed=4, init_seed=1).build()
    grams, hn = group_grams(model, CrossEntropy(), theta, X, y)
    ps = per_sample_statistics(model, CrossEntropy(), theta, X, y)
    assert torch.allclose(torch.linalg.eigvalsh(grams)[..., -1], ps.layer_sqnorm, rtol=1e-12, atol=0)
    assert torch.allclose(torch.linalg.eigvalsh(grams.sum(1))[:, -1], ps.jtilde_sqnorm, rtol=1e-12, atol=0)
    assert torch.allclose(hn, ps.hessian_norm, rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- interop
def test_operator_shape_matmul_and_scipy_eigsh():
    model, theta, X, y, loss = CNN_CASE.build()
    op = loss.operator(theta, "H")
    P = model.num_params
    assert op.shape == (P, P)
    H = dense_H(model, CrossEntropy(), theta, X, y)
    v, M = torch.randn(P, dtype=F64), torch.randn(P, 4, dtype=F64)
    assert rel(op @ v, H @ v) < 1e-12 and rel(op @ M, H @ M) < 1e-12 and rel(M.T @ op, M.T @ H) < 1e-12
    sp = op.to_scipy()
    assert sp.shape == (P, P) and sp.dtype == np.float64
    before = op.products
    assert np.allclose(sp.matvec(v.numpy()), (H @ v).numpy(), rtol=1e-12, atol=1e-14)
    assert np.allclose(sp.matmat(M.numpy()), (H @ M).numpy(), rtol=1e-12, atol=1e-14)
    assert op.products == before + 1 + 4
    vals = scipy.sparse.linalg.eigsh(sp, k=3, which="LA", tol=1e-12, return_eigenvectors=False)
    lob = LOBPCG(3, tol=1e-12, max_iters=500, generator=torch.Generator().manual_seed(0)).solve(op)
    assert np.allclose(np.sort(vals)[::-1], lob.eigenvalues.numpy(), rtol=1e-9, atol=0)
    assert np.allclose(np.sort(vals)[::-1], torch.linalg.eigvalsh(H).flip(0)[:3].numpy(), rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match=r"A @ x needs x of shape"):
        _ = op @ torch.zeros(P + 1, 2, dtype=F64)


def test_dense_operator_interop():
    A = torch.diag(torch.arange(1.0, 6.0, dtype=F64))
    op = LinearOperator.from_dense(A)
    vals = scipy.sparse.linalg.eigsh(op.to_scipy(), k=2, return_eigenvectors=False)
    assert sorted(vals) == pytest.approx([4.0, 5.0], rel=1e-12)
