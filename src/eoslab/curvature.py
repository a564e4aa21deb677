"""The full-batch loss over a dataset and its curvature operators (docs/math.md §2, §3, §6).

``FullBatchLoss`` evaluates L̃(θ) = E ℓ(f(x, θ), y) over a dataset held as tensors, in chunks of
samples (results do not depend on the chunk size beyond round-off), and multiplies a *block* of k
vectors by

* the Hessian  H = ∇²_θ L̃                     (Eq. 2),
* the Gauss–Newton part  G = E[Jᵀ H_ℓ J]       (Eq. 2),
* the residual  R = H − G                      (Eq. 2),

all k vectors in one pass over the data (vmap / batched autograd), never k separate passes.

Blocks are stored with **vectors as rows**: a block V has shape (k, P). Eigensolvers see the
operators as :class:`LinearOperator`, which counts the operator products it performs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch.func import jvp, vjp, vmap

from .criteria import Criterion
from .models import MLP

HVP_METHODS = ("auto", "fwd_rev", "rev_rev", "loop")
OPERATORS = ("H", "G", "R")


@dataclass
class LinearOperator:
    """A symmetric operator on R^P acting on blocks of row vectors (k, P) → (k, P).

    Attributes:
        matmat: the block product.
        dim: P.
        name: ``"H"``, ``"G"`` or ``"R"`` (or anything, for tests).
        products: number of single-vector products performed so far (a block of k counts k).
    """

    matmat: Callable[[torch.Tensor], torch.Tensor]
    dim: int
    dtype: torch.dtype = torch.float64
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    name: str = ""
    products: int = 0

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        if V.ndim != 2 or V.shape[1] != self.dim:
            raise ValueError(f"operator {self.name}: expected a block of shape (k, {self.dim}), got {tuple(V.shape)}")
        self.products += V.shape[0]
        return self.matmat(V)

    @classmethod
    def from_dense(cls, A: torch.Tensor, name: str = "dense") -> LinearOperator:
        """Wrap a dense symmetric matrix (tests and references)."""
        return cls(matmat=lambda V: V @ A, dim=A.shape[0], dtype=A.dtype, device=A.device, name=name)


@dataclass
class LossValue:
    """L̃(θ), its gradient and the training accuracy, from one pass over the data."""

    loss: float
    grad: torch.Tensor
    accuracy: float


class FullBatchLoss:
    """L̃(θ) = E_{(x,y)∈T} ℓ(f(x, θ), y) and block products with H, G, R.

    Args:
        model: the MLP (maps a flat θ and inputs to outputs).
        criterion: ℓ, with its closed-form H_ℓ.
        X: inputs (N, n_0); y: labels (N,).
        chunk_size: samples per chunk (``None``: all at once). Memory of a block product grows
            with chunk_size × k × width.
        hvp_method: how a block of H·V is formed within a chunk — ``"fwd_rev"`` (vmapped
            forward-over-reverse, ``jvp`` of ``grad``), ``"rev_rev"`` (double backward with
            ``is_grads_batched``), ``"loop"`` (one retained double-backward graph, looped over the
            vectors) or ``"auto"`` (``fwd_rev`` for chunks of ≤ 1024 samples, else ``loop``, as
            measured by ``benchmarks/curvature.py`` and docs/performance.md).
    """

    def __init__(
        self,
        model: MLP,
        criterion: Criterion,
        X: torch.Tensor,
        y: torch.Tensor,
        *,
        chunk_size: int | None = None,
        hvp_method: str = "auto",
    ) -> None:
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
        if X.shape[1] != model.input_dim:
            raise ValueError(f"X has {X.shape[1]} features but the model expects {model.input_dim}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
        if hvp_method not in HVP_METHODS:
            raise ValueError(f"hvp_method must be one of {HVP_METHODS}, got {hvp_method!r}")
        self.model, self.criterion = model, criterion
        self.X, self.y = X.to(dtype=model.dtype, device=model.device), y.to(model.device)
        self.chunk_size = chunk_size or X.shape[0]
        self.hvp_method = hvp_method

    @property
    def num_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def num_params(self) -> int:
        return self.model.num_params

    def chunks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """Yield (X_c, y_c, |c| / N): each chunk's loss is weighted so the sum is the mean."""
        n = self.num_samples
        for s in range(0, n, self.chunk_size):
            Xc, yc = self.X[s : s + self.chunk_size], self.y[s : s + self.chunk_size]
            yield Xc, yc, Xc.shape[0] / n

    def _chunk_loss(self, theta: torch.Tensor, Xc: torch.Tensor, yc: torch.Tensor, w: float) -> torch.Tensor:
        return self.criterion.losses(self.model(theta, Xc), yc).mean() * w

    # ----------------------------------------------------------------- loss and gradient
    def loss(self, theta: torch.Tensor) -> float:
        """L̃(θ)."""
        with torch.no_grad():
            return float(sum(self._chunk_loss(theta, Xc, yc, w) for Xc, yc, w in self.chunks()))

    def value_and_grad(self, theta: torch.Tensor) -> LossValue:
        """L̃(θ), ∇L̃(θ) and accuracy in one pass over the data."""
        grad = torch.zeros_like(theta)
        loss, correct = 0.0, 0.0
        th = theta.detach().requires_grad_(True)
        for Xc, yc, w in self.chunks():
            f = self.model(th, Xc)
            lc = self.criterion.losses(f, yc).mean() * w
            (g,) = torch.autograd.grad(lc, th)
            grad += g
            loss += float(lc.detach())
            correct += float((f.detach().argmax(-1) == yc).sum())
        return LossValue(loss=loss, grad=grad, accuracy=correct / self.num_samples)

    # ----------------------------------------------------------------- block products
    def hvp(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """H V for a block V of shape (k, P): Hv = E[∇_θ(∇_θ ℓ · v)] (docs/math.md §6)."""
        out = torch.zeros_like(V)
        for Xc, yc, w in self.chunks():
            out += self._hessian_block(theta, V, lambda th: self._chunk_loss(th, Xc, yc, w), Xc.shape[0])
        return out

    def _hessian_block(self, theta, V, scalar, n_chunk: int) -> torch.Tensor:
        """(∇²_θ scalar) V for one chunk's scalar function θ ↦ R, by ``self.hvp_method``."""
        method = self.hvp_method
        if method == "auto":
            method = "fwd_rev" if n_chunk <= 1024 else "loop"
        if method == "fwd_rev":
            grad_fn = torch.func.grad(scalar)
            return vmap(lambda v: jvp(grad_fn, (theta,), (v,))[1])(V)
        th = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(scalar(th), th, create_graph=True)
        if g.grad_fn is None:  # the scalar is linear in θ: its Hessian is zero
            return torch.zeros_like(V)
        if method == "rev_rev":
            return torch.autograd.grad(g, th, grad_outputs=V, is_grads_batched=True)[0]
        rows = [torch.autograd.grad(g, th, grad_outputs=v, retain_graph=j < V.shape[0] - 1)[0] for j, v in enumerate(V)]
        return torch.stack(rows)

    def ggnvp(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """G V for a block V (k, P): Gv = E[Jᵀ H_ℓ (J v)] — a vmapped JVP, H_ℓ in closed form,
        then a vmapped VJP sharing one forward pass (docs/math.md §6).
        """
        out = torch.zeros_like(V)
        for Xc, yc, w in self.chunks():
            out += self._ggnvp_chunk(theta, V, Xc, yc, w)
        return out

    def _ggnvp_chunk(self, theta, V, Xc, yc, w):
        f_fn = lambda th: self.model(th, Xc)
        f, vjp_fn = vjp(f_fn, theta)
        JV = vmap(lambda v: jvp(f_fn, (theta,), (v,))[1])(V)  # (k, n_c, n_L)
        HJV = self.criterion.hessian_vp(f.detach(), yc, JV) * (w / Xc.shape[0])
        return vmap(lambda u: vjp_fn(u)[0])(HJV)  # (k, P)

    def residual_vp(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """R V for a block V (k, P), R = E[Σ_q (∂ℓ/∂f_q) ∇²_θ f_q] = H − G (Eq. 2).

        R is the Hessian of θ ↦ E[sg(∇_f ℓ) · f(x, θ)] with sg a stop-gradient (docs/math.md §6, the
        [R] alternative): one Hessian block of a cheaper scalar, instead of an H·V and a G·V.
        """
        out = torch.zeros_like(V)
        for Xc, yc, w in self.chunks():
            f0 = self.model(theta.detach(), Xc).requires_grad_(True)
            (e,) = torch.autograd.grad(self.criterion.losses(f0, yc).mean() * w, f0)  # ∂L̃_c/∂f, fixed
            out += self._hessian_block(theta, V, lambda th: (e * self.model(th, Xc)).sum(), Xc.shape[0])
        return out

    def operator(self, theta: torch.Tensor, which: str = "H") -> LinearOperator:
        """H, G or R at θ as a :class:`LinearOperator` (θ is captured, detached)."""
        if which not in OPERATORS:
            raise ValueError(f"operator must be one of {OPERATORS}, got {which!r}")
        theta = theta.detach()
        fn = {"H": self.hvp, "G": self.ggnvp, "R": self.residual_vp}[which]
        return LinearOperator(
            matmat=lambda V: fn(theta, V), dim=self.num_params, dtype=theta.dtype, device=theta.device, name=which
        )
