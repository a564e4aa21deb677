"""The per-snapshot decomposition (docs/math.md §3–§6, Eqs. 2–8) against a brute-force reference.

The reference shares no code with the fast path: its own forward pass and criteria, per-sample
parameter Jacobians by ``torch.func.jacrev``, dense G and H (``torch.func.hessian``), dense K_i
per sample (``jacrev`` of z_{i+1} w.r.t. z_i), ``svdvals``/``eigvalsh``, and Python loops for every
expectation and alignment ratio.
"""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from eoslab.analysis import (
    SHARPNESS_SOLVER,
    AnalysisSpec,
    LayerwiseStats,
    SnapshotAnalysis,
    analyze_snapshot,
    layerjac_sqnorms,
    layerwise_statistics,
    per_sample_statistics,
    preactivation_jacobians,
)
from eoslab.criteria import MSE, CrossEntropy
from eoslab.eigen import EigResult

from ._cases import CRITERIA, Case, mlp_case

pytestmark = pytest.mark.usefixtures("one_thread")

TIGHT = AnalysisSpec(replace(SHARPNESS_SOLVER, tol=1e-12, max_iters=500))
#: The residual and certified error bound of each λ¹ (docs/metrics.md), beside the glossary's metrics.
CERTIFIED = {(f"sharpness_{w}_{what}", None) for w in "HGR" for what in ("residual", "error")}


# ----------------------------------------------------------------------------- reference
def ref_params(model, theta):
    """[(W_i, b_i)] sliced by hand (not via the model)."""
    out, start = [], 0
    for n_in, n_out in zip(model.sizes[:-1], model.sizes[1:]):
        W = theta[start : start + n_out * n_in].reshape(n_out, n_in)
        start += n_out * n_in
        out.append((W, theta[start : start + n_out]))
        start += n_out
    return out


def ref_forward(model, theta, x):
    """(zs, acts) of one sample: z_1..z_L and a_0..a_{L-1}."""
    zs, acts, a = [], [x], x
    params = ref_params(model, theta)
    for i, (W, b) in enumerate(params):
        z = W @ a + b
        zs.append(z)
        if i < len(params) - 1:
            a = F.elu(z)
            acts.append(a)
    return zs, acts


def ref_loss(criterion, f, y):
    if isinstance(criterion, CrossEntropy):
        return -f[y] + torch.logsumexp(f, 0)
    e = torch.zeros_like(f)
    e[y] = 1.0
    scale = 1.0 / f.shape[0] if criterion.reduction == "mean" else 1.0
    return scale * ((f - e) ** 2).sum()


def psd_sqrt(A):
    mu, U = torch.linalg.eigh(A)
    return U @ torch.diag(mu.clamp(min=0).sqrt()) @ U.T


def top(A):
    return float(torch.linalg.eigvalsh(A)[-1])


def brute_force_operators(model, criterion, theta, X, y) -> dict[str, torch.Tensor]:
    """Dense H (torch.func.hessian), G = E JᵀH_ℓJ (per-sample jacrev) and R = H − G."""
    f = lambda th, x: ref_forward(model, th, x)[0][-1]
    N = X.shape[0]
    total = lambda th: sum(ref_loss(criterion, f(th, X[n]), y[n]) for n in range(N)) / N
    H = torch.func.hessian(total)(theta)
    G = torch.zeros_like(H)
    for n in range(N):
        J = torch.func.jacrev(f)(theta, X[n])  # (n_L, P)
        G += J.T @ torch.func.hessian(lambda g: ref_loss(criterion, g, y[n]))(f(theta, X[n])) @ J / N
    return {"H": H, "G": G, "R": H - G}


def brute_force(model, criterion, theta, X, y, c5_t0=None):
    """Every metric of the docs/metrics.md glossary, keyed (metric, layer)."""
    L, N = model.depth, X.shape[0]
    offsets, start = [], 0  # column ranges of (W_i, b_i) and of b_i in θ
    for n_in, n_out in zip(model.sizes[:-1], model.sizes[1:]):
        offsets.append((start, start + n_out * n_in + n_out, start + n_out * n_in))
        start += n_out * n_in + n_out
    f = lambda th, x: ref_forward(model, th, x)[0][-1]
    per = []
    for n in range(N):
        J = torch.func.jacrev(f)(theta, X[n])  # (n_L, P)
        fx = f(theta, X[n])
        Hl = torch.func.hessian(lambda g: ref_loss(criterion, g, y[n]))(fx)
        S = psd_sqrt(Hl)
        Jt = S @ J
        zs, acts = ref_forward(model, theta, X[n])
        params = ref_params(model, theta)
        s = [float(acts[i] @ acts[i]) + 1 for i in range(L)]
        P = [S @ J[:, lo_b:hi] for (_, hi, lo_b) in offsets]  # P̃_i = S J_{b_i}
        Ji = [Jt[:, lo:hi] for (lo, hi, _) in offsets]
        K = [
            torch.func.jacrev(lambda z, i=i: params[i + 1][0] @ F.elu(z) + params[i + 1][1])(zs[i])
            for i in range(L - 1)
        ]
        per.append(
            dict(
                s=s,
                P=P,
                K=K,
                jt=top(Jt @ Jt.T),
                Ji=[top(M @ M.T) for M in Ji],
                hn=top(Hl),
                Jc=[math.sqrt(s[i]) * P[i] for i in range(L)],
            )
        )
    E = lambda fn: sum(fn(p) for p in per) / N
    sq = lambda M: top(M @ M.T) if M.ndim == 2 else float(M) ** 2

    def kappa(Mf, Nf):  # Eq. 6: E‖MN‖² / (E‖M‖² E‖N‖²), a scalar counting as a 1×1 matrix
        prod = lambda p: Mf(p) * Nf(p) if Mf(p).ndim == 0 else Mf(p) @ Nf(p)
        return E(lambda p: sq(prod(p))) / (E(lambda p: sq(Mf(p))) * E(lambda p: sq(Nf(p))))

    out = {}
    lam = {
        k: float(torch.linalg.eigvalsh(A)[-1]) for k, A in brute_force_operators(model, criterion, theta, X, y).items()
    }
    for k, v in lam.items():
        out[(f"sharpness_{k}", None)] = v if v >= 0 else float("nan")
    out[("jtilde_sqnorm", None)] = E(lambda p: p["jt"])
    out[("overlap_ratio", None)] = out[("sharpness_G", None)] / out[("jtilde_sqnorm", None)]
    out[("criterion_hessian_norm", None)] = E(lambda p: p["hn"])
    for i in range(L):
        out[("layer_sqnorm", i + 1)] = E(lambda p: p["Ji"][i])
        out[("preact_sqnorm", i + 1)] = E(lambda p: sq(p["P"][i]))
        out[("act_scale", i + 1)] = E(lambda p: p["s"][i])
    r = lambda p, i: torch.tensor(p["s"][i] / p["s"][i + 1], dtype=torch.float64)
    for i in range(L - 1):
        out[("act_ratio", i + 1)] = E(lambda p: float(r(p, i)))
        out[("layerjac_sqnorm", i + 1)] = E(lambda p: float(torch.linalg.svdvals(p["K"][i])[0]) ** 2)
        out[("align_ratio", i + 1)] = kappa(lambda p: p["Jc"][i + 1], lambda p: p["K"][i])
        out[("align_ratio_preact", i + 1)] = kappa(lambda p: p["P"][i + 1], lambda p: p["K"][i])
        out[("act_align", i + 1)] = kappa(lambda p: r(p, i).sqrt(), lambda p: p["Jc"][i + 1] @ p["K"][i])
    for i in range(L - 1):
        c = [1.0, 1.0, out[("layer_sqnorm", L)], 1.0, 1.0]
        for k in range(i, L - 1):
            c[0] *= out[("act_align", k + 1)]
            c[1] *= out[("act_ratio", k + 1)]
            c[3] *= out[("layerjac_sqnorm", k + 1)]
            c[4] *= out[("align_ratio", k + 1)]
        for j in range(5):
            out[(f"eq7_c{j + 1}", i + 1)] = c[j]
    if L == 1:  # no factors: E‖J̃‖² = E‖J̃_1‖² = C3
        out[("stability_bound", None)] = out[("layer_sqnorm", 1)]
    else:
        c5 = out[("eq7_c5", 1)] if c5_t0 is None else c5_t0
        out[("stability_bound", None)] = (
            (1 + 1.37 * (L - 1))
            * out[("eq7_c1", 1)]
            * out[("eq7_c2", 1)]
            * out[("eq7_c3", 1)]
            * out[("eq7_c4", 1)]
            * c5
        )
    return out


# ----------------------------------------------------------------------------- problems
def analysis_case(criterion, trained: bool, depth: int = 4) -> Case:
    """A width-7 MLP on 16 samples at θ_0, or after 60 GD steps of 0.2 (so that the layerwise
    Jacobians align).
    """
    case = mlp_case(criterion, depth=depth, width=7, n=16, data_seed=1)
    return replace(case, gd_steps=60, lr=0.2) if trained else case


def as_dict(result):
    return {(r["metric"], r["layer"]): r["value"] for r in result.rows()}


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture(
    scope="module",
    params=[analysis_case(c, trained) for c in CRITERIA[:2] for trained in (False, True)],
    ids=lambda case: case.id,
)
def case(request):
    criterion = request.param.criterion
    model, theta, X, y, loss = request.param.build()
    result = analyze_snapshot(loss, theta, replace(TIGHT, chunk_size=5), step=7, t=0.5)
    return model, criterion, theta, X, y, loss, result


# ----------------------------------------------------------------------------- tests
def test_every_metric_matches_brute_force(case):
    model, criterion, theta, X, y, _, result = case
    ref = brute_force(model, criterion, theta, X, y)
    got = as_dict(result)
    assert set(got) == set(ref) | CERTIFIED
    # each λ¹'s residual and certified bound: the true residual of the returned vector (dense
    # operator), and a bound the dense eigenvalue's distance respects
    dense = brute_force_operators(model, criterion, theta, X, y)
    for w, A in dense.items():
        solve = result.eig[w]
        v, lam = solve.eigenvectors[:, 0], float(solve.eigenvalues[0])
        assert rel(got[(f"sharpness_{w}_residual", None)], float(torch.linalg.vector_norm(A @ v - lam * v))) < 1e-6
        bound = got[(f"sharpness_{w}_error", None)]
        # the bound is the operator's; the dense H of torch.func.hessian differs from it by round-off
        assert abs(lam - float(torch.linalg.eigvalsh(A)[-1])) <= bound + 1e-11 * abs(lam)
        assert bound <= TIGHT.eigensolver.tol * abs(lam)
    bad = {k: (got[k], ref[k]) for k in ref if not rel(got[k], ref[k]) <= 1e-9}
    assert not bad, bad
    assert all(r["step"] == 7 and r["t"] == 0.5 for r in result.rows())
    assert all(e.converged for e in result.eig.values())


def test_training_aligns_the_layers():
    """Sanity of the trained fixture: GD raised the alignment (C5 of layer 1) above its init value."""
    c5 = []
    for trained in (False, True):
        model, theta, X, y, _ = analysis_case(CrossEntropy(), trained).build()
        c5.append(float(layerwise_statistics(model, CrossEntropy(), theta, X, y).eq7[0, 4]))
    assert c5[1] > 1.5 * c5[0]


def test_identities(case):
    """Eqs. 3, 6, 7 (both forms, D1), 8 and Lemma 7.2 on the logged values."""
    model, *_, result = case
    st, L = result.stats, model.depth
    # Eq. 3 and Lemma 7.2
    assert rel(result.sharpness("G"), result.overlap_ratio * st.jtilde_sqnorm) < 1e-13
    assert 0 <= result.overlap_ratio <= 1
    # Eq. 6 for every layer
    for i in range(L - 1):
        rhs = st.align_ratio_preact[i] * st.preact_sqnorm[i + 1] * st.layerjac_sqnorm[i]
        assert rel(float(st.preact_sqnorm[i]), float(rhs)) < 1e-12
    # Eq. 7, boxed form: the product of the five factors is the layer component
    assert torch.allclose(st.eq7.prod(1), st.layer_sqnorm[:-1], rtol=1e-12, atol=0)
    # Eq. 7, alternative form assembled from the logged primitives (D1)
    for i in range(L - 1):
        kappa_s = st.layer_sqnorm[i] / (st.act_scale[i] * st.preact_sqnorm[i])  # κ(s_i^{1/2}, P̃_i)
        alt = (
            kappa_s
            * st.act_scale[i]
            * st.criterion_hessian_norm
            * st.layerjac_sqnorm[i:].prod()
            * st.align_ratio_preact[i:].prod()
        )
        assert rel(float(alt), float(st.layer_sqnorm[i])) < 1e-12
    assert rel(float(st.preact_sqnorm[-1]), st.criterion_hessian_norm) < 1e-12  # ‖P̃_L‖² = ‖H_ℓ‖
    # Eq. 8
    assert st.jtilde_sqnorm <= float(st.layer_sqnorm.sum()) * (1 + 1e-12)


def test_stability_bound(case):
    """§4's counterfactual bound for a lone snapshot (C5(t0) = its own C5, D15) is
    (1 + 1.37 (L − 1)) E‖J̃_1‖²; Eqs. 3, 8 and Lemma 7.2 give λ¹(G) ≤ (1 + (L − 1) r) E‖J̃_1‖² with r
    the largest layer ratio E‖J̃_i‖² / E‖J̃_1‖², whether or not r ≤ 1.37 (it is not in two cases).
    """
    model, *_, result = case
    st, L = result.stats, model.depth
    first = float(st.layer_sqnorm[0])
    ratio = float(st.layer_sqnorm[1:].max()) / first
    assert rel(result.stability_bound, (1 + 1.37 * (L - 1)) * first) < 1e-12
    assert result.sharpness("G") <= (1 + (L - 1) * ratio) * first * (1 + 1e-12)
    assert result.sharpness("G") <= result.stability_bound


def test_preactivation_jacobians_chain(case):
    """Eq. 5: P̃_{i+1} K_i = P̃_i, with K_i built densely per sample, and P̃_i = S J_{b_i}."""
    model, criterion, theta, X, y, *_ = case
    fwd = model.forward_all(theta, X)
    P = preactivation_jacobians(model, theta, fwd.z, criterion.hessian_sqrt(fwd.output, y))
    params = ref_params(model, theta)
    for n in range(X.shape[0]):
        zs, _ = ref_forward(model, theta, X[n])
        for i in range(model.depth - 1):
            K = torch.func.jacrev(lambda z: params[i + 1][0] @ F.elu(z))(zs[i])
            assert torch.allclose(P[i + 1][n] @ K, P[i][n], rtol=1e-12, atol=1e-14)
    f = lambda th, x: ref_forward(model, th, x)[0][-1]
    J = torch.func.jacrev(f)(theta, X[0])
    S0 = criterion.hessian_sqrt(fwd.output[:1], y[:1])[0]
    b1 = slice(model.sizes[1] * model.sizes[0], model.sizes[1] * (model.sizes[0] + 1))
    assert torch.allclose(S0 @ J[:, b1], P[0][0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("criterion", CRITERIA[:2], ids=lambda c: c.name)
def test_chunked_equals_unchunked(criterion):
    model, theta, X, y, _ = replace(analysis_case(criterion, trained=False), n=13).build()
    a = layerwise_statistics(model, criterion, theta, X, y, chunk_size=None)
    for chunk in (1, 4):
        b = layerwise_statistics(model, criterion, theta, X, y, chunk_size=chunk)
        for name in LayerwiseStats.__dataclass_fields__:
            x, z = torch.as_tensor(getattr(a, name)), torch.as_tensor(getattr(b, name))
            assert torch.allclose(x, z, rtol=1e-12, atol=0), name


@pytest.mark.parametrize("shape", [(40, 50), (50, 40), (3, 30), (120, 120)])
def test_layerjac_sqnorms_by_batched_lanczos(shape):
    """‖W diag(d)‖² for many d at once, also past the dimension (where plain Lanczos repeats
    converged Ritz values) and with a nearly flat ELU region.
    """
    g = torch.Generator().manual_seed(3)
    W = torch.randn(*shape, generator=g, dtype=torch.float64)
    d = torch.rand(9, shape[1], generator=g, dtype=torch.float64)
    d[0, : shape[1] // 2] = 1e-9
    ref = torch.stack([torch.linalg.svdvals(W * dx)[0] ** 2 for dx in d])
    got = layerjac_sqnorms(W, d, generator=g)
    assert torch.allclose(got, ref, rtol=1e-12, atol=0)


def test_per_sample_parts_are_consistent():
    model, theta, X, y, _ = analysis_case(CrossEntropy(), trained=True).build()
    ps = per_sample_statistics(model, CrossEntropy(), theta, X, y)
    assert torch.allclose(ps.preact_sqnorm[:, -1], ps.hessian_norm, rtol=1e-12)
    # Eq. 4 per sample: max_i ‖J̃_i‖² ≤ ‖J̃‖² ≤ Σ_i ‖J̃_i‖²
    assert bool((ps.layer_sqnorm.max(1).values <= ps.jtilde_sqnorm * (1 + 1e-12)).all())
    assert bool((ps.jtilde_sqnorm <= ps.layer_sqnorm.sum(1) * (1 + 1e-12)).all())


def test_warm_start_and_c5_t0():
    model, theta, X, y, loss = analysis_case(MSE(), trained=True).build()
    spec = AnalysisSpec(replace(SHARPNESS_SOLVER, tol=1e-8))
    cold = analyze_snapshot(loss, theta, spec)
    warm = analyze_snapshot(loss, theta, spec, warm_start=cold.eigenvectors(), c5_t0=0.25)
    for k in "HGR":
        assert warm.eig[k].products < cold.eig[k].products
        assert rel(warm.raw_sharpness(k), cold.raw_sharpness(k)) < 1e-10
    c = warm.stats.eq7[0]
    assert rel(warm.stability_bound, (1 + 1.37 * 3) * float(c[:4].prod()) * 0.25) < 1e-14
    assert rel(cold.stability_bound, (1 + 1.37 * 3) * float(warm.stats.layer_sqnorm[0])) < 1e-9


def test_negative_sharpness_is_nan_but_kept():
    """D12: a negative λ¹ is recorded as NaN; the raw value stays in the result."""
    model, theta, X, y, loss = analysis_case(CrossEntropy(), trained=False).build()
    base = analyze_snapshot(loss, theta)
    eig = dict(base.eig)
    r = eig["R"]
    eig["R"] = EigResult(-r.eigenvalues.abs(), r.eigenvectors, r.iterations, r.products, r.residual_norms, r.converged)
    res = SnapshotAnalysis(step=base.step, t=base.t, eig=eig, stats=base.stats, c5_t0=base.c5_t0)
    assert res.raw_sharpness("R") < 0 and math.isnan(res.sharpness("R"))
    assert math.isnan(as_dict(res)[("sharpness_R", None)])
    assert not math.isnan(as_dict(res)[("sharpness_H", None)])


def test_one_layer_network():
    model, theta, X, y, loss = analysis_case(CrossEntropy(), trained=False, depth=1).build()
    res = analyze_snapshot(loss, theta, TIGHT)
    got = as_dict(res)
    ref = brute_force(model, CrossEntropy(), theta, X, y)
    assert set(got) == set(ref) | CERTIFIED
    assert all(rel(got[k], ref[k]) <= 1e-9 for k in ref if k != ("sharpness_R", None))
    assert got[("sharpness_R", None)] == 0.0 and abs(ref[("sharpness_R", None)]) < 1e-14  # linear: R = 0
    assert rel(res.stability_bound, float(res.stats.layer_sqnorm[0])) < 1e-14
