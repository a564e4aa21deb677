"""Criteria ℓ(f, y) and their output Hessians H_ℓ = ∇²_f ℓ (docs/math.md §2, §3; D6 in docs/decisions.md).

Each criterion gives per-sample losses whose mean over the data is the training loss
L̃(θ) = E ℓ(f(x, θ), y), the per-sample criterion Hessian H_ℓ in closed form, its PSD square root
S = H_ℓ^{1/2} (so that J̃ = S J and G = E[J̃ᵀ J̃], Eq. 3), and the product H_ℓ u.

The criteria are registered by name in :data:`CRITERIA` (``criterion.name`` of a config; a name's
aliases are other spellings a lookup accepts): ``"ce"`` and ``"mse"``.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from ._registry import Registry


class Criterion:
    """Base class. ``f``: (N, n_L) outputs; ``y``: (N,) class indices.

    Attributes:
        target_loss: the training loss a run stops at unless its config says otherwise (the
            paper's targets, docs/math.md §8).
    """

    target_loss: float

    @property
    def name(self) -> str:
        """The name the criterion is registered under in :data:`CRITERIA` (``"ce"``, ``"mse"``)."""
        return CRITERIA.name_of(type(self))

    def losses(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample ℓ(f, y), shape (N,)."""
        raise NotImplementedError

    def hessian(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample H_ℓ = ∇²_f ℓ, shape (N, n_L, n_L)."""
        raise NotImplementedError

    def hessian_vp(self, f: torch.Tensor, y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """H_ℓ u for u of shape (..., N, n_L) (leading batch dims broadcast)."""
        raise NotImplementedError

    def hessian_sqrt(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """S = H_ℓ^{1/2}, the PSD square root: U diag(√max(μ, 0)) Uᵀ (docs/math.md §3)."""
        mu, U = torch.linalg.eigh(self.hessian(f, y))
        return (U * mu.clamp(min=0).sqrt().unsqueeze(-2)) @ U.transpose(-1, -2)

    def hessian_norm(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample ‖H_ℓ‖ (operator norm), shape (N,)."""
        return torch.linalg.eigvalsh(self.hessian(f, y))[..., -1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: The criteria ℓ by name (``criterion.name``); each registers itself below, with its aliases.
CRITERIA: Registry[type[Criterion]] = Registry("criterion")


@CRITERIA.register("ce", aliases=("cross_entropy", "cross-entropy", "crossentropy"))
class CrossEntropy(Criterion):
    """ℓ(f, y) = −f_y + log Σ_j e^{f_j};  H_ℓ = diag(p) − p pᵀ with p = softmax(f) (PSD, rank n_L − 1)."""

    target_loss = 0.01

    def losses(self, f, y):
        """Per-sample ℓ(f, y), shape (N,)."""
        return F.cross_entropy(f, y, reduction="none")

    def hessian(self, f, y):
        """Per-sample H_ℓ, shape (N, n_L, n_L)."""
        p = torch.softmax(f, dim=-1)
        return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)

    def hessian_vp(self, f, y, u):
        """H_ℓ u, broadcast over leading batch dims."""
        p = torch.softmax(f, dim=-1)
        return p * u - p * (p * u).sum(-1, keepdim=True)


@CRITERIA.register("mse")
class MSE(Criterion):
    """Squared error against the one-hot vector e_y (D6).

    ``reduction="mean"`` (default, PyTorch's ``MSELoss``): ℓ = ‖f − e_y‖² / n_L, H_ℓ = (2/n_L) I.
    ``reduction="sum"`` (as in the authors' code): ℓ = ‖f − e_y‖², H_ℓ = 2 I.
    """

    target_loss = 0.02

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"MSE reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def _scale(self, n_out: int) -> float:
        return 1.0 / n_out if self.reduction == "mean" else 1.0

    def losses(self, f, y):
        """Per-sample ℓ(f, y), shape (N,)."""
        target = F.one_hot(y, f.shape[-1]).to(f.dtype)
        return self._scale(f.shape[-1]) * ((f - target) ** 2).sum(-1)

    def hessian(self, f, y):
        """Per-sample H_ℓ, shape (N, n_L, n_L)."""
        n = f.shape[-1]
        eye = torch.eye(n, dtype=f.dtype, device=f.device)
        return (2.0 * self._scale(n) * eye).expand(f.shape[0], n, n).clone()

    def hessian_vp(self, f, y, u):
        """H_ℓ u, broadcast over leading batch dims."""
        return 2.0 * self._scale(f.shape[-1]) * u

    def hessian_sqrt(self, f, y):
        """S = H_ℓ^{1/2}, shape (N, n_L, n_L)."""
        return self.hessian(f, y).sqrt()  # elementwise √ of a scaled identity

    def __repr__(self) -> str:
        return f"MSE(reduction={self.reduction!r})"


def make_criterion(name: str, **options) -> Criterion:
    """The criterion registered as ``name`` or as one of its aliases, in any case (``"ce"``,
    ``"cross_entropy"``, …, ``"mse"``), made with ``options`` (``mse``: ``reduction``).

    Raises:
        RegistryError: an unknown name (the message lists the registered ones).
        ValueError: an option the criterion does not take.
    """
    key = CRITERIA.canonical(name.lower())
    takes = list(inspect.signature(CRITERIA[key]).parameters)
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise ValueError(f"criterion {key!r} takes {', '.join(takes) or 'no options'}, got {unknown}")
    return CRITERIA[key](**options)
