"""The decomposition of the sharpness at one snapshot, and over a run (docs/math.md §3–§6, Eqs. 2–8).

For one parameter vector θ and one dataset (a :class:`FullBatchLoss`) :func:`analyze_snapshot`
computes, for **any model** of the protocol (:mod:`eoslab.models`),

* λ¹ of H, G and R = H − G (Eq. 2), the algebraically largest (D14), by the run's eigensolver
  (``analysis.eig_method``; R as one operator, :meth:`FullBatchLoss.residual_vp`); a negative λ¹
  is recorded as NaN (D12), the raw value is kept;
* E‖J̃‖² (Eq. 4), the overlap ratio ρ = λ¹(G) / E‖J̃‖² (Eq. 3), E‖H_ℓ‖ and, for every parameter
  group i (the model's "layers", :meth:`~eoslab.models.Model.groups`), E‖J̃_i‖² (Eq. 4);

and, for the paper's MLP only, E‖P̃_i‖², E[s_i], E[r_i], E‖K_i‖², the alignment ratios κ (Eq. 6),
the activation alignment, the five factors of Eq. 7 (boxed form, D1) and the counterfactual
stability bound (§4, D15). These need the MLP's layers z_i = W_i a_{i−1} + b_i and the layerwise
Jacobians K_i = W_{i+1} diag(σ'(z_i)); for any other model they are refused with
:class:`MLPOnlyError`, and its ``analysis.parquet`` simply has no rows for them.

For the MLP the per-sample part uses the network's structure (docs/math.md §4) and never forms a
per-sample parameter Jacobian nor a per-sample K_i: the pre-activation Jacobians are
back-propagated from the n_L rows of S = H_ℓ^{1/2}, P̃_L = S and P̃_i = P̃_{i+1} K_i =
(P̃_{i+1} W_{i+1}) ⊙ σ'(z_i) (Eq. 5); J̃_i J̃_iᵀ = s_i P̃_i P̃_iᵀ, so every squared norm of an
n_L-row matrix is the top eigenvalue of an n_L × n_L Gram matrix; ‖K_i‖² is the top eigenvalue of
K_iᵀK_i = diag(σ'(z_i)) W_{i+1}ᵀW_{i+1} diag(σ'(z_i)) (or of K_i K_iᵀ when that is smaller), found
for all samples at once by batched Lanczos (:func:`layerjac_sqnorms`). For any other model the
n_L × n_L Gram matrices J̃_i J̃_iᵀ come from per-sample products (:func:`group_grams`: a vmapped
VJP per output row of J̃, then a vmapped JVP per group), never from a per-sample Jacobian.
Samples are processed in chunks through the data loop of :mod:`eoslab.curvature` (and its
reduction across ranks), so memory is bounded for any N.

:func:`analyze_run` applies :func:`analyze_snapshot` to the snapshots of a run directory and
writes ``analysis.parquet`` (long format ``step, t, metric, layer, value``, docs/rundir.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.func import jvp, vjp, vmap

from .constants import LAYER_RATIO_BOUND as LAYER_RATIO_BOUND
from .criteria import Criterion
from .curvature import OPERATORS, DataLoop, FullBatchLoss, Reduction
from .eigen import EigResult, make_eigensolver
from .errors import MLPOnlyError
from .models import MLP, Model, elu_derivative
from .rundir import ANALYSIS_FILE, ANALYSIS_SCHEMA
from .spectrum import spectrum_summary

DEFAULT_CHUNK_SIZE = 512
#: Relative Lanczos residual at which ‖K_i‖² is accepted; the eigenvalue error is about its square.
LANCZOS_TOL = 1e-6
#: Relative growth of the top Ritz value between checks below which ‖K_i‖² counts as converged.
STALL_RTOL = 1e-13
LANCZOS_MAX_STEPS = 500
#: Bytes of per-sample θ-sized rows :func:`group_grams` holds at once (it processes as many
#: samples together as fit: two (samples, P) blocks).
GROUP_GRAM_BYTES = 1 << 28


def _require_mlp(model: Model, what: str) -> None:
    if not isinstance(model, MLP):
        raise MLPOnlyError(
            f"{what} need the paper's MLP: its layers z_i = W_i a_(i-1) + b_i and layerwise Jacobians "
            f"K_i = W_(i+1) diag(σ'(z_i)) (docs/math.md §4); a {type(model).__name__} has no such layers. "
            "For any network use group_statistics (E‖J̃‖², E‖H_ℓ‖, E‖J̃_i‖² per parameter group)"
        )


# ----------------------------------------------------------------------------- per sample
def preactivation_jacobians(
    model: MLP, theta: torch.Tensor, z: list[torch.Tensor], S: torch.Tensor
) -> list[torch.Tensor]:
    """P̃_1..P̃_L (Eq. 5), each (n, n_L, n_i): P̃_L = S, P̃_i = P̃_{i+1} K_i = (P̃_{i+1} W_{i+1}) ⊙ σ'(z_i).

    Args:
        z: pre-activations z_1..z_L of the n samples, each (n, n_i).
        S: (n, n_L, n_L), the square roots H_ℓ^{1/2}.
    """
    _require_mlp(model, "the pre-activation Jacobians P̃_i")
    layers = model.layers(theta)
    P = [S]
    for i in range(model.depth - 2, -1, -1):  # 0-based: P[i] belongs to layer i + 1
        P.append((P[-1] @ layers[i + 1][0]) * elu_derivative(z[i]).unsqueeze(1))
    return P[::-1]


def _top_ritz_value(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """λ¹(T) of n symmetric tridiagonal matrices T (diagonals alpha (n, j), off-diagonals beta
    (n, j−1)), by ``torch.linalg.eigvalsh`` of the small dense T (2–30× faster than Sturm-sequence
    multisection at the j ≤ 48 Lanczos steps used, ``benchmarks/lanczos_ritz.py``). A T with a
    non-finite entry (a diverged network's overflowing weights) gets NaN, never an error.
    """
    finite = torch.isfinite(alpha).all(1) & torch.isfinite(beta).all(1)
    T = torch.diag_embed(alpha) + torch.diag_embed(beta, 1) + torch.diag_embed(beta, -1)
    top = torch.full_like(alpha[:, 0], torch.nan)
    if finite.any():
        top[finite] = torch.linalg.eigvalsh(T[finite])[:, -1]
    return top


def _last_component_sq(alpha: torch.Tensor, beta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """s_j², the squared last component of the unit top eigenvector of T, evaluated at x just above
    λ¹(T): s_j² = χ_{j−1}(θ) / χ_j'(θ) = 1 / r_j'(θ), where r_k = χ_k / χ_{k−1} obeys
    r_1 = x − α_1, r_k = x − α_k − β_{k−1}² / r_{k−1}, r_k' = 1 + β_{k−1}² r_{k−1}' / r_{k−1}²
    (χ_k the characteristic polynomial of T's leading k × k block; every r_k > 0 above λ¹).
    """
    b2 = beta.square()
    big = torch.finfo(alpha.dtype).max
    r, rp = x - alpha[:, 0], torch.ones_like(x)
    for k in range(1, alpha.shape[1]):
        rp = 1 + b2[:, k - 1] * (rp / r.square()).clamp(max=big)
        r = x - alpha[:, k] - b2[:, k - 1] / r
    return (1 / rp).clamp(0, 1)


def layerjac_sqnorms(
    W: torch.Tensor,
    dsigma: torch.Tensor,
    *,
    tol: float = LANCZOS_TOL,
    max_steps: int = LANCZOS_MAX_STEPS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """‖K_i‖² = ‖W_{i+1} diag(σ'(z_i))‖² for n samples at once (the "layerwise Jacobian norms", §4, §6).

    The top eigenvalue of the per-sample Gram matrix B = diag(d) WᵀW diag(d) (or W diag(d²) Wᵀ
    when W has fewer rows than columns) by batched Lanczos: the three-term recurrence alone, with
    no stored basis and no reorthogonalisation, which for the extreme eigenvalue loses nothing —
    loss of orthogonality only repeats converged Ritz values (Paige). The top Ritz value θ of the
    tridiagonal T_j (:func:`_top_ritz_value`) and the relative residual β_j |s_j| / θ of its Ritz
    vector (:func:`_last_component_sq`, evaluated just above θ) are checked, after 8
    steps and then every max(8, j/4) steps; the samples stop together once each has a residual
    ≤ ``tol`` (so |λ¹ − θ| ≲ tol² θ / relative gap) or a θ that grew by at most
    ``STALL_RTOL`` since the last check (converged to round-off: once converged, plain Lanczos
    repeats θ as "ghosts", whose Ritz vectors never get small residuals), or after
    ``max_steps`` (then θ ≤ λ¹ is the best estimate). K_i is never formed; the only dense
    eigenproblems are the j × j tridiagonals.

    Args:
        W: W_{i+1}, (n_{i+1}, n_i).
        dsigma: σ'(z_i), (n, n_i).

    Returns:
        (n,) squared spectral norms.
    """
    n = dsigma.shape[0]
    if W.shape[0] < W.shape[1]:
        d2 = dsigma.square()
        dim, matvec = W.shape[0], lambda v: ((v @ W) * d2) @ W.T
    else:
        A = W.T @ W
        dim, matvec = W.shape[1], lambda v: ((v * dsigma) @ A) * dsigma
    q = torch.randn(n, dim, generator=generator, dtype=W.dtype).to(W.device)
    q = q / torch.linalg.vector_norm(q, dim=1, keepdim=True)
    q_prev, b = torch.zeros_like(q), q.new_zeros(n, 1)
    alphas, betas = [], []
    eps, tiny = torch.finfo(W.dtype).eps, torch.finfo(W.dtype).tiny
    previous, check = q.new_full((n,), -torch.inf), 8
    for j in range(1, max_steps + 1):
        w = matvec(q) - b * q_prev
        a = (w * q).sum(1, keepdim=True)
        w = w - a * q
        b = torch.linalg.vector_norm(w, dim=1, keepdim=True)
        alphas.append(a[:, 0])
        betas.append(b[:, 0])
        if j == check or j == max_steps:
            alpha, beta = torch.stack(alphas, 1), torch.stack(betas[:-1], 1)
            theta = _top_ritz_value(alpha, beta)
            above = theta + 4 * eps * theta.abs()  # just above λ¹(T_j), where every r_k > 0
            residual = b[:, 0] * _last_component_sq(alpha, beta, above).sqrt() / theta.abs().clamp(min=tiny)
            stalled = theta <= previous * (1 + STALL_RTOL)
            if bool(((residual <= tol) | stalled).all()) or j == max_steps:
                return theta
            previous, check = theta, j + max(8, j // 4)
        q_prev, q = q, w / b.clamp(min=tiny)
    raise ValueError(f"max_steps must be >= 1, got {max_steps}")


@dataclass
class PerSample:
    """Per-sample quantities of docs/math.md §4 for n samples (layers 1..L in columns 0..L−1).

    Attributes:
        act_scale: (n, L), s_i = ‖a_{i−1}‖² + 1.
        preact_sqnorm: (n, L), ‖P̃_i‖² (‖P̃_L‖² = ‖S‖² = ‖H_ℓ‖).
        layerjac_sqnorm: (n, L−1), ‖K_i‖².
        jtilde_sqnorm: (n,), ‖J̃‖² = λ¹(Σ_i s_i P̃_i P̃_iᵀ) (Eq. 4).
        hessian_norm: (n,), ‖H_ℓ‖.
    """

    act_scale: torch.Tensor
    preact_sqnorm: torch.Tensor
    layerjac_sqnorm: torch.Tensor
    jtilde_sqnorm: torch.Tensor
    hessian_norm: torch.Tensor

    @property
    def layer_sqnorm(self) -> torch.Tensor:
        """(n, L), ‖J̃_i‖² = s_i ‖P̃_i‖² (§4, chain rule)."""
        return self.act_scale * self.preact_sqnorm


def per_sample_statistics(
    model: MLP,
    criterion: Criterion,
    theta: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> PerSample:
    """The per-sample quantities of §4 for the samples (X, y), from one forward pass, the
    back-propagated P̃_i (Eq. 5) and batched Lanczos for ‖K_i‖² (:func:`layerjac_sqnorms`).
    """
    _require_mlp(model, "the activation ratios, ‖K_i‖² and alignment ratios")
    with torch.no_grad():
        fwd = model.forward_all(theta, X)
        f = fwd.output
        S = criterion.hessian_sqrt(f, y)
        P = preactivation_jacobians(model, theta, fwd.z, S)
        grams = torch.stack([p @ p.transpose(1, 2) for p in P], dim=1)  # (n, L, n_L, n_L)
        s = torch.stack([a.square().sum(1) + 1 for a in fwd.a], dim=1)  # (n, L)
        layers = model.layers(theta)
        K = [
            layerjac_sqnorms(layers[i + 1][0], elu_derivative(fwd.z[i]), generator=generator)
            for i in range(model.depth - 1)
        ]
        return PerSample(
            act_scale=s,
            preact_sqnorm=torch.linalg.eigvalsh(grams)[..., -1],
            layerjac_sqnorm=torch.stack(K, dim=1) if K else f.new_zeros(f.shape[0], 0),
            jtilde_sqnorm=torch.linalg.eigvalsh((s[:, :, None, None] * grams).sum(1))[:, -1],
            hessian_norm=criterion.hessian_norm(f, y),
        )


def group_grams(
    model: Model, criterion: Criterion, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample J̃_i J̃_iᵀ for every parameter group i (Eq. 4), for any model, without forming a
    per-sample Jacobian.

    Row q of J̃ = S J is the VJP of f with cotangent S e_q (vmapped over the samples); column q of
    J̃_i J̃_iᵀ is S J t with t = that row restricted to group i, a JVP (vmapped over the samples).
    Per sample this costs n_L VJPs and n_L × (number of groups) JVPs; at most
    :data:`GROUP_GRAM_BYTES` of θ-sized rows are held at once.

    Returns:
        ((n, G, n_L, n_L) Gram matrices, whose sum over groups is J̃ J̃ᵀ; (n,) ‖H_ℓ‖).
    """
    with torch.no_grad():
        f = model(theta, X)
    S = criterion.hessian_sqrt(f, y)  # (n, n_L, n_L), symmetric
    groups = model.groups()
    n, n_out = f.shape
    grams = f.new_zeros(n, len(groups), n_out, n_out)
    one = lambda th, x: model(th, x.unsqueeze(0))[0]
    row = lambda x, s: vjp(lambda th: one(th, x), theta)[1](s)[0]  # sᵀ J, (P,)
    col = lambda x, t: jvp(lambda th: one(th, x), (theta,), (t,))[1]  # J t, (n_L,)
    step = max(1, GROUP_GRAM_BYTES // (2 * theta.numel() * theta.element_size()))
    for start in range(0, n, step):
        xs, Ss = X[start : start + step], S[start : start + step]
        for q in range(n_out):
            rows = vmap(row)(xs, Ss[:, q])  # (m, P), row q of J̃ per sample
            for i, g in enumerate(groups):
                t = torch.zeros_like(rows)
                t[:, g.slice] = rows[:, g.slice]
                grams[start : start + step, i, :, q] = (Ss @ vmap(col)(xs, t).unsqueeze(-1)).squeeze(-1)
    return grams, criterion.hessian_norm(f, y)


# ----------------------------------------------------------------------------- expectations
def _suffix_products(x: torch.Tensor) -> torch.Tensor:
    """out[i] = Π_{k ≥ i} x[k]."""
    return x.flip(0).cumprod(0).flip(0)


@dataclass
class GroupStats:
    """Expectations over the dataset that every model has (Eqs. 3–4); tensors indexed by group − 1.

    Attributes:
        jtilde_sqnorm: E‖J̃‖² (Eq. 4).
        criterion_hessian_norm: E‖H_ℓ‖.
        layer_sqnorm: (G,), E‖J̃_i‖² for the parameter groups i = 1..G (the MLP's layers; Eq. 4).
    """

    jtilde_sqnorm: float
    criterion_hessian_norm: float
    layer_sqnorm: torch.Tensor

    @property
    def depth(self) -> int:
        """The number of parameter groups (L for the MLP)."""
        return int(self.layer_sqnorm.shape[0])


@dataclass
class LayerwiseStats(GroupStats):
    """The MLP's expectations of §4 (Eqs. 4–7); tensors indexed by layer − 1.

    Attributes:
        jtilde_sqnorm, criterion_hessian_norm, layer_sqnorm: as :class:`GroupStats` (L layers).
        preact_sqnorm: (L,), E‖P̃_i‖².
        act_scale: (L,), E[s_i].
        act_ratio: (L−1,), E[r_i], r_i = s_i / s_{i+1} (Eq. 7, C2).
        layerjac_sqnorm: (L−1,), E‖K_i‖² (Eq. 7, C4).
        align_ratio: (L−1,), κ(J̌_{i+1}, K_i) (Eq. 6 form; Eq. 7, C5).
        align_ratio_preact: (L−1,), κ(P̃_{i+1}, K_i) (Eq. 6).
        act_align: (L−1,), κ(r_i^{1/2}, J̌_{i+1} K_i) (Eq. 7, C1).
        eq7: (L−1, 5), columns C1..C5 of Eq. 7 for layer i (products over k = i..L−1); their
            product is E‖J̃_i‖².
    """

    preact_sqnorm: torch.Tensor
    act_scale: torch.Tensor
    act_ratio: torch.Tensor
    layerjac_sqnorm: torch.Tensor
    align_ratio: torch.Tensor
    align_ratio_preact: torch.Tensor
    act_align: torch.Tensor
    eq7: torch.Tensor

    def layer1_factors(self) -> torch.Tensor:
        """C1..C5 of Eq. 7 for layer 1 ((1, 1, E‖J̃_1‖², 1, 1) for a one-layer network)."""
        if self.depth == 1:
            return torch.tensor([1.0, 1.0, float(self.layer_sqnorm[0]), 1.0, 1.0], dtype=self.eq7.dtype)
        return self.eq7[0]


def group_statistics(
    model: Model,
    criterion: Criterion,
    theta: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    reduction: Reduction | None = None,
) -> GroupStats:
    """E‖J̃‖², E‖H_ℓ‖ and E‖J̃_i‖² per parameter group (Eqs. 3–4) over (X, y), for any model,
    from the per-sample Gram matrices of :func:`group_grams`, through the data loop
    (:class:`~eoslab.curvature.DataLoop`, summed over ranks by ``reduction``).
    """
    data = DataLoop(X, y, chunk_size, reduction=reduction)

    def part(c) -> dict[str, torch.Tensor]:
        grams, hn = group_grams(model, criterion, theta, c.X, c.y)
        return {
            "layer": torch.linalg.eigvalsh(grams)[..., -1].sum(0),
            "jt": torch.linalg.eigvalsh(grams.sum(1))[:, -1].sum(),
            "hn": hn.sum(),
        }

    E = {key: value / data.num_samples for key, value in data.accumulate(part).items()}
    return GroupStats(jtilde_sqnorm=float(E["jt"]), criterion_hessian_norm=float(E["hn"]), layer_sqnorm=E["layer"])


def layerwise_statistics(
    model: MLP,
    criterion: Criterion,
    theta: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    seed: int = 0,
    reduction: Reduction | None = None,
) -> LayerwiseStats:
    """The MLP's expectations of §4 over (X, y), accumulated over chunks of ``chunk_size`` samples
    through the data loop (:class:`~eoslab.curvature.DataLoop`, summed over ranks by ``reduction``).

    Alignment ratios (Eq. 6, D2) are ratios of expectations, κ(M, N) = E‖MN‖² / (E‖M‖² E‖N‖²),
    evaluated with P̃_{i+1} K_i = P̃_i (Eq. 5) and J̌_i = s_i^{1/2} P̃_i (so ‖J̌_i‖ = ‖J̃_i‖):

    * κ(P̃_{i+1}, K_i) = E‖P̃_i‖² / (E‖P̃_{i+1}‖² E‖K_i‖²),
    * κ(J̌_{i+1}, K_i) = E[s_{i+1}‖P̃_i‖²] / (E‖J̃_{i+1}‖² E‖K_i‖²),
    * κ(r_i^{1/2}, J̌_{i+1}K_i) = E‖J̃_i‖² / (E[r_i] E[s_{i+1}‖P̃_i‖²]).

    Eq. 7 (boxed, D1): E‖J̃_i‖² = C1·C2·C3·C4·C5 with C1 = Π_k κ(r_k^{1/2}, J̌_{k+1}K_k),
    C2 = Π_k E[r_k], C3 = E‖J̃_L‖², C4 = Π_k E‖K_k‖², C5 = Π_k κ(J̌_{k+1}, K_k), k = i..L−1.

    Raises:
        MLPOnlyError: ``model`` is not the paper's MLP (use :func:`group_statistics`).
    """
    _require_mlp(model, "the activation ratios, ‖K_i‖², alignment ratios and Eq. 7 factors")
    data = DataLoop(X, y, chunk_size, reduction=reduction)
    generator = torch.Generator(device="cpu").manual_seed(seed)

    def part(c) -> dict[str, torch.Tensor]:
        ps = per_sample_statistics(model, criterion, theta, c.X, c.y, generator=generator)
        s, pn = ps.act_scale, ps.preact_sqnorm
        parts = {
            "s": s,
            "pn": pn,
            "spn": s * pn,
            "s_next_pn": s[:, 1:] * pn[:, :-1],
            "r": s[:, :-1] / s[:, 1:],
            "kn": ps.layerjac_sqnorm,
            "jt": ps.jtilde_sqnorm,
            "hn": ps.hessian_norm,
        }
        return {key: value.sum(0) for key, value in parts.items()}

    E = {key: value / data.num_samples for key, value in data.accumulate(part).items()}
    layer = E["spn"]
    align = E["s_next_pn"] / (layer[1:] * E["kn"])
    act_align = layer[:-1] / (E["r"] * E["s_next_pn"])
    c3 = layer[-1].expand_as(align)
    eq7 = torch.stack(
        [_suffix_products(act_align), _suffix_products(E["r"]), c3, _suffix_products(E["kn"]), _suffix_products(align)],
        dim=1,
    )
    return LayerwiseStats(
        jtilde_sqnorm=float(E["jt"]),
        criterion_hessian_norm=float(E["hn"]),
        layer_sqnorm=layer,
        preact_sqnorm=E["pn"],
        act_scale=E["s"],
        act_ratio=E["r"],
        layerjac_sqnorm=E["kn"],
        align_ratio=align,
        align_ratio_preact=E["pn"][:-1] / (E["pn"][1:] * E["kn"]),
        act_align=act_align,
        eq7=eq7,
    )


# ----------------------------------------------------------------------------- one snapshot
def _nan_if_negative(value: float) -> float:
    return float("nan") if value < 0 else value


@dataclass
class SnapshotAnalysis:
    """The decomposition of one snapshot (docs/math.md §3–§6).

    Attributes:
        step, t: the snapshot's step and (gradient-flow) time.
        eig: the λ¹ solves of H, G, R by name (eigenvalues, eigenvectors for warm starts,
            iterations, products, ``converged``).
        stats: the per-sample expectations (:class:`LayerwiseStats` for the MLP,
            :class:`GroupStats` for any other model).
        c5_t0: C5 of layer 1 used in the stability bound (D15); None for a model other than the MLP.
    """

    step: int
    t: float
    eig: dict[str, EigResult]
    stats: GroupStats
    c5_t0: float | None

    def raw_sharpness(self, which: str) -> float:
        """λ¹ of ``which`` ∈ {H, G, R} as solved, sign included (D14)."""
        return float(self.eig[which].eigenvalues[0])

    def sharpness(self, which: str) -> float:
        """λ¹ of ``which``, NaN when negative (D12)."""
        return _nan_if_negative(self.raw_sharpness(which))

    def residual(self, which: str) -> float:
        """‖A v − λ¹ v‖ of the λ¹ solve of ``which`` (A = H, G or R)."""
        return float(self.eig[which].residual_norms[0])

    def error_bound(self, which: str) -> float:
        """The bound on |λ¹ − its estimate| the solver certified for ``which`` (the residual when
        the solver certifies none, :attr:`~eoslab.eigen.EigResult.error_bounds`).
        """
        bounds = self.eig[which].error_bounds
        return self.residual(which) if bounds is None else float(bounds[0])

    def uncertain(self, tol: float) -> list[str]:
        """The operators whose λ¹ is not certified to ``tol``: the solve did not converge, or its
        error bound exceeds tol · max(|λ¹|, 1e-8 · max over H, G, R of |λ¹|) (the solvers' test).
        """
        floor = 1e-8 * max(abs(self.raw_sharpness(w)) for w in self.eig)
        return [
            w
            for w, solve in self.eig.items()
            if not solve.converged or not self.error_bound(w) <= tol * max(abs(self.raw_sharpness(w)), floor)
        ]

    @property
    def overlap_ratio(self) -> float:
        """ρ = λ¹(G) / E‖J̃‖² (Eq. 3; in [0, 1] by Lemma 7.2); NaN when E‖J̃‖² is 0 or not finite
        (a degenerate snapshot, :meth:`degenerate`).
        """
        jt = self.stats.jtilde_sqnorm
        return self.sharpness("G") / jt if math.isfinite(jt) and jt > 0 else math.nan

    def degenerate(self) -> list[str]:
        """Why values of :meth:`rows` are NaN beyond D12 (one line per metric; empty for a regular
        snapshot): E‖J̃‖² = 0 (the criterion Hessian vanishes on every sample) leaves ρ undefined,
        and a ratio with a zero or non-finite denominator is recorded as NaN, never as ±inf.
        """
        reasons = [
            f"sharpness_{w}: the λ¹ solve gave {self.raw_sharpness(w)}"
            for w in OPERATORS
            if not math.isfinite(self.raw_sharpness(w))
        ]
        jt = self.stats.jtilde_sqnorm
        if not (math.isfinite(jt) and jt > 0):
            reasons.append(f"overlap_ratio: E‖J̃‖² = {jt:g}, so ρ = λ¹(G) / E‖J̃‖² is undefined")
        sharpness = {f"sharpness_{w}" for w in OPERATORS} | {"overlap_ratio"}  # NaN when negative (D12)
        bad = sorted({r["metric"] for r in self._raw_rows() if not math.isfinite(r["value"])} - sharpness)
        reasons += [f"{m}: not finite (a zero, non-finite or overflowing denominator)" for m in bad]
        return reasons

    @property
    def stability_bound(self) -> float:
        """(1 + 1.37 (L − 1)) · C1 C2 C3 C4 (t) · C5(t0), layer-1 components of Eq. 7 (§4, D15).

        Raises:
            MLPOnlyError: the snapshot is of a model other than the MLP.
        """
        if not isinstance(self.stats, LayerwiseStats):
            raise MLPOnlyError(
                "the stability bound needs the MLP's Eq. 7 factors (docs/math.md §4); this snapshot is of another model"
            )
        c = self.stats.layer1_factors()
        prefactor = 1 + LAYER_RATIO_BOUND * (self.stats.depth - 1)
        return prefactor * float(c[:4].prod()) * self.c5_t0

    def eigenvectors(self) -> dict[str, torch.Tensor]:
        """{H, G, R: (P, 1 + guard)} to warm-start the next snapshot's solves (eigenvector and
        guard vectors, :meth:`EigResult.warm_start`).
        """
        return {k: r.warm_start() for k, r in self.eig.items()}

    def rows(self) -> list[dict]:
        """Long-format rows ``step, t, metric, layer, value`` (docs/metrics.md; ``layer`` is None
        for whole-network metrics, else 1..L, the parameter group for a model other than the MLP,
        which has no rows for the MLP-only metrics).
        """
        return [{**r, "value": r["value"] if math.isfinite(r["value"]) else math.nan} for r in self._raw_rows()]

    def _raw_rows(self) -> list[dict]:
        st = self.stats
        whole = {
            "sharpness_H": self.sharpness("H"),
            "sharpness_G": self.sharpness("G"),
            "sharpness_R": self.sharpness("R"),
            "jtilde_sqnorm": st.jtilde_sqnorm,
            "overlap_ratio": self.overlap_ratio,
            "criterion_hessian_norm": st.criterion_hessian_norm,
        }
        for w in self.eig:
            whole[f"sharpness_{w}_residual"] = self.residual(w)
            whole[f"sharpness_{w}_error"] = self.error_bound(w)
        per_layer = {"layer_sqnorm": st.layer_sqnorm}
        if isinstance(st, LayerwiseStats):
            whole["stability_bound"] = self.stability_bound
            per_layer.update(
                {
                    "preact_sqnorm": st.preact_sqnorm,
                    "act_scale": st.act_scale,
                    "act_ratio": st.act_ratio,
                    "layerjac_sqnorm": st.layerjac_sqnorm,
                    "align_ratio": st.align_ratio,
                    "align_ratio_preact": st.align_ratio_preact,
                    "act_align": st.act_align,
                }
            )
            per_layer.update({f"eq7_c{c + 1}": st.eq7[:, c] for c in range(5)})
        rows = [dict(step=self.step, t=self.t, metric=m, layer=None, value=float(v)) for m, v in whole.items()]
        for metric, values in per_layer.items():
            rows += [
                dict(step=self.step, t=self.t, metric=metric, layer=i + 1, value=float(v))
                for i, v in enumerate(values.tolist())
            ]
        return rows


def top_eigenvalues(
    loss: FullBatchLoss,
    theta: torch.Tensor,
    *,
    method: str = "lobpcg",
    tol: float = 1e-4,
    max_iters: int = 200,
    guard: int = 1,
    warm_start: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    operators: tuple[str, ...] = OPERATORS,
) -> dict[str, EigResult]:
    """λ¹ (algebraically largest, D14) of H, G and R = H − G (Eq. 2), k = 1 (R·V as a Hessian block
    of the scalar E[sg(∇_f ℓ) · f], formed by the loss's ``hvp_method``:
    :meth:`FullBatchLoss.residual_vp`).

    Args:
        method: the eigensolver's registry name (:func:`~eoslab.eigen.make_eigensolver`);
            ``"lobpcg"`` by default.
        tol: the solver's stopping tolerance (D4's 1e-4 by default; LOBPCG stops when its error
            estimate of λ¹ is ≤ tol·|λ¹|, see :class:`~eoslab.eigen.LOBPCG`).
        max_iters: block iterations per solve (``converged`` is False when they run out).
        guard: extra vectors iterated alongside the wanted one.
        warm_start: optional start vectors (P, j) per operator name, e.g. the previous
            snapshot's :meth:`SnapshotAnalysis.eigenvectors`.
        operators: which of H, G, R to solve for.
    """
    warm_start = warm_start or {}
    solver = make_eigensolver(
        method, 1, tol=tol, max_iters=max_iters, guard=guard, generator=torch.Generator(device="cpu").manual_seed(seed)
    )
    return {which: solver.solve(loss.operator(theta, which), warm_start.get(which)) for which in operators}


def analyze_snapshot(
    loss: FullBatchLoss,
    theta: torch.Tensor,
    *,
    step: int = 0,
    t: float = 0.0,
    eig_method: str = "lobpcg",
    tol: float = 1e-4,
    max_iters: int = 200,
    guard: int = 1,
    warm_start: dict[str, torch.Tensor] | None = None,
    c5_t0: float | None = None,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    seed: int = 0,
) -> SnapshotAnalysis:
    """The full decomposition of §3–§6 at θ over the dataset of ``loss`` (the MLP-only factors
    for the MLP alone, see the module docstring).

    Args:
        eig_method, tol, max_iters, guard, warm_start: the three λ¹ solves' solver, stopping and
            start (:func:`top_eigenvalues`).
        c5_t0: C5 of layer 1 at t0 for the stability bound (D15: the run's first analysed
            snapshot); None uses this snapshot's own C5 (a lone snapshot). Ignored for a model
            other than the MLP.
        chunk_size: samples per chunk of the per-sample part (memory ∝ chunk_size × L × n_L × width).
        seed: for the random starts of the eigensolvers.
    """
    eig = top_eigenvalues(
        loss, theta, method=eig_method, tol=tol, max_iters=max_iters, guard=guard, warm_start=warm_start, seed=seed
    )
    args = (loss.model, loss.criterion, theta, loss.X, loss.y)
    if not isinstance(loss.model, MLP):
        stats = group_statistics(*args, chunk_size=chunk_size, reduction=loss.data.reduction)
        return SnapshotAnalysis(step=int(step), t=float(t), eig=eig, stats=stats, c5_t0=None)
    stats = layerwise_statistics(*args, chunk_size=chunk_size, seed=seed, reduction=loss.data.reduction)
    c5 = float(stats.layer1_factors()[4]) if c5_t0 is None else float(c5_t0)
    return SnapshotAnalysis(step=int(step), t=float(t), eig=eig, stats=stats, c5_t0=c5)


# ----------------------------------------------------------------------------- a run directory
def rows_to_table(rows: list[dict]) -> pa.Table:
    """Long-format rows (:meth:`SnapshotAnalysis.rows`) as a table of the ``analysis.parquet`` schema."""
    return pa.Table.from_pylist(rows, schema=ANALYSIS_SCHEMA)


def _first_c5(table: pa.Table, step: int) -> float | None:
    """C5 of layer 1 stored for ``step`` (D15's C5(t0) when resuming), None if absent."""
    for row in table.filter(pc.equal(table["step"], step)).to_pylist():
        if row["metric"] == "eq7_c5" and row["layer"] == 1:
            return row["value"]
    return None


def analyze_run(
    run_dir: str | Path,
    *,
    every: int | None = None,
    skip_before: int | None = None,
    tol: float | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> Path:
    """Write ``RUN_DIR/analysis.parquet``: :func:`analyze_snapshot` for the run's snapshots.

    Holds the run directory's lock; the run's config.toml and data must be those it was created
    with, and every snapshot to analyse must match its checksum (checked before any work;
    :class:`~eoslab.rundir.CorruptFileError` otherwise). A stored ``analysis.parquet`` that does
    not verify is recomputed, loudly; values a degenerate snapshot leaves undefined are NaN, with
    the reason in ``status.json``'s notes (:meth:`SnapshotAnalysis.degenerate`); a λ¹ solve that
    did not meet its tolerance within its iteration limit (200) is kept as the solver's
    estimate and named in a warning and in the notes (step and operator).

    Snapshots with step < ``skip_before`` are skipped (D13), then every ``every``-th is kept.
    C5(t0) of the stability bound is layer 1's C5 at the first kept snapshot (D15). The file is
    rewritten atomically after each snapshot, and a rerun skips the steps it already holds, so an
    interrupted analysis resumes. The λ¹ solves are warm-started from the previous snapshot.

    Args:
        every, skip_before, tol, chunk_size: None takes the run config's ``analysis`` section
            (``every``, ``skip_before``, ``eig_tol``, ``chunk_size``; a chunk size of None there
            means :data:`DEFAULT_CHUNK_SIZE`).
        progress: show a progress bar on the terminal.

    Returns:
        The path of ``analysis.parquet``.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .runs import load_run

    run = load_run(run_dir)
    cfg = run.config.analysis
    every = cfg.every if every is None else every
    skip_before = cfg.skip_before if skip_before is None else skip_before
    tol = cfg.eig_tol if tol is None else tol
    chunk_size = (cfg.chunk_size or DEFAULT_CHUNK_SIZE) if chunk_size is None else chunk_size
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with run.dir.lock():
        run.dir.remove_leftovers()
        run.adopt()
        table = _stored_analysis(run)
        done = set(table["step"].to_pylist())
        steps = run.dir.analysed_steps(skip_before=skip_before, every=every)
        todo = [step for step in steps if step not in done]
        c5_t0 = _first_c5(table, steps[0]) if steps and steps[0] in done else None
        for step in todo:  # refuse a corrupt snapshot before hours of work, not after
            run.load_snapshot(step)
        warm = None
        degenerate: dict[str, list[int]] = {}
        unconverged: dict[str, list[int]] = {}
        with Progress(*columns, disable=not progress, transient=False) as bar:
            task = bar.add_task(f"analyse {Path(run_dir).name}", total=len(todo))
            for step in todo:
                bar.update(task, description=f"analyse {Path(run_dir).name} step {step}")
                theta, t = run.load_snapshot(step)
                result = analyze_snapshot(
                    run.loss,
                    theta,
                    step=step,
                    t=t,
                    eig_method=cfg.eig_method,
                    tol=tol,
                    chunk_size=chunk_size,
                    warm_start=warm,
                    c5_t0=c5_t0,
                )
                c5_t0 = result.c5_t0 if c5_t0 is None else c5_t0
                warm = result.eigenvectors()
                for reason in result.degenerate():
                    degenerate.setdefault(reason, []).append(step)
                for which in result.uncertain(tol):
                    unconverged.setdefault(which, []).append(step)
                rows = result.rows()
                if cfg.spectrum:  # docs/math.md §9, on request only
                    rows += spectrum_summary(run.loss, theta, tol=tol, seed=step).rows(step, t)
                table = pa.concat_tables([table, rows_to_table(rows)])
                run.dir.write_table(ANALYSIS_FILE, table)
                bar.advance(task)
        if not run.dir.analysis_file.exists():
            run.dir.write_table(ANALYSIS_FILE, table)
        if degenerate:
            said = "; ".join(f"{reason} ({_steps_text(s)})" for reason, s in degenerate.items())
            run.dir.add_note(f"{run.path}: degenerate snapshots, values recorded as NaN: {said}")
        if unconverged:
            said = "; ".join(f"λ¹({which}) at {_steps_text(s)}" for which, s in unconverged.items())
            run.dir.add_note(f"{run.path}: λ¹ not certified to tol {tol:g}, values are estimates: {said}")
    return run.dir.analysis_file


def _steps_text(steps: list[int]) -> str:
    """``step 10``, ``steps 10, 20, 30`` or ``12 steps, 10 to 120``."""
    if len(steps) == 1:
        return f"step {steps[0]}"
    if len(steps) <= 3:
        return f"steps {', '.join(map(str, steps))}"
    return f"{len(steps)} steps, {steps[0]} to {steps[-1]}"


def _stored_analysis(run) -> pa.Table:
    """The analysis rows already in ``analysis.parquet`` (none if it is missing); a file that does
    not verify is recomputed, loudly.
    """
    from .rundir import CorruptFileError

    if not run.dir.analysis_file.exists():
        return ANALYSIS_SCHEMA.empty_table()
    try:
        return run.dir.read_table(ANALYSIS_FILE, run.manifest, "").cast(ANALYSIS_SCHEMA)
    except CorruptFileError as e:
        detail = e.detail
    except pa.ArrowException as e:
        detail = f"has other columns than analysis.parquet's ({e})"
    run.dir.add_note(f"{run.dir.analysis_file} {detail}: recomputing it")
    return ANALYSIS_SCHEMA.empty_table()
