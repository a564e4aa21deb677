"""The per-sample quantities of docs/math.md §4 and their expectations over a dataset (Eqs. 3–7).

For **any model** of the protocol (:mod:`eoslab.models`), :func:`group_statistics` gives E‖J̃‖²
(Eq. 4), E‖H_ℓ‖ and, for every parameter group i (the model's "layers",
:meth:`~eoslab.models.Model.groups`), E‖J̃_i‖² (Eq. 4), from the n_L × n_L Gram matrices
J̃_i J̃_iᵀ of per-sample products (:func:`group_grams`: a vmapped VJP per output row of J̃, then a
vmapped JVP per group), never from a per-sample Jacobian.

For the paper's MLP only, :func:`layerwise_statistics` adds E‖P̃_i‖², E[s_i], E[r_i], E‖K_i‖²,
the alignment ratios κ (Eq. 6), the activation alignment and the five factors of Eq. 7 (boxed
form, D1). These need the MLP's layers z_i = W_i a_{i−1} + b_i and the layerwise Jacobians
K_i = W_{i+1} diag(σ'(z_i)); for any other model they are refused with :class:`MLPOnlyError`.
The per-sample part uses the network's structure (docs/math.md §4) and never forms a per-sample
parameter Jacobian nor a per-sample K_i: the pre-activation Jacobians are back-propagated from
the n_L rows of S = H_ℓ^{1/2}, P̃_L = S and P̃_i = P̃_{i+1} K_i = (P̃_{i+1} W_{i+1}) ⊙ σ'(z_i)
(Eq. 5); J̃_i J̃_iᵀ = s_i P̃_i P̃_iᵀ, so every squared norm of an n_L-row matrix is the top
eigenvalue of an n_L × n_L Gram matrix; ‖K_i‖² is the top eigenvalue of
K_iᵀK_i = diag(σ'(z_i)) W_{i+1}ᵀW_{i+1} diag(σ'(z_i)) (or of K_i K_iᵀ when that is smaller), found
for all samples at once by batched Lanczos (:func:`layerjac_sqnorms`,
:func:`~eoslab.analysis.lanczos.batched_lanczos`).

Samples are processed in chunks through the data loop of :mod:`eoslab.curvature` (and its
reduction across ranks), so memory is bounded for any N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import jvp, vjp, vmap

from ..criteria import Criterion
from ..curvature import DataLoop, Reduction
from ..errors import MLPOnlyError
from ..models import MLP, Model, elu_derivative
from .lanczos import LANCZOS_MAX_STEPS, LANCZOS_TOL, batched_lanczos
from .result import GroupStats, LayerwiseStats

DEFAULT_CHUNK_SIZE = 512
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
    when W has fewer rows than columns) by batched Lanczos from random starts
    (:func:`~eoslab.analysis.lanczos.batched_lanczos`, which documents the stopping by ``tol``
    and ``max_steps``). K_i is never formed.

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
    start = torch.randn(n, dim, generator=generator, dtype=W.dtype).to(W.device)
    return batched_lanczos(matvec, start, tol=tol, max_steps=max_steps)


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
