"""The paper's MLP (docs/math.md §1, D8).

    a_0 = x,  z_i = W_i a_{i-1} + b_i  (i = 1..L),  a_i = σ(z_i)  (i < L),  f(x, θ) = z_L,

with σ = ELU. All numerics work on the flat parameter vector θ ∈ R^P, ordered
(W_1, b_1, ..., W_L, b_L) with each W_i row-major; :meth:`MLP.unflatten` gives per-layer views.
Inputs of any shape are flattened (the only model that flattens): x = X[n].flatten(), n_0 = its size.
The parameter groups are the layers, ``layer1 .. layerL`` = (W_i, b_i). It is the model kind
``"mlp"`` (the default ``model.kind``, :mod:`eoslab.models.registry`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..constants import INITS
from ..errors import ModelError
from .base import Model
from .registry import MODELS

ACTIVATIONS = ("elu",)


def elu_derivative(z: torch.Tensor) -> torch.Tensor:
    """σ'(z) for ELU with α = 1: 1 for z > 0, e^z for z ≤ 0 (docs/math.md §1)."""
    return torch.where(z > 0, torch.ones_like(z), torch.exp(torch.clamp(z, max=0.0)))


@dataclass
class Forward:
    """Everything one forward pass records, per sample (batch dimension first).

    Attributes:
        z: pre-activations z_1..z_L, each (N, n_i); z[-1] is the output f.
        a: activations a_0..a_{L-1}, each (N, n_{i}); a[0] is the input x.
    """

    z: list[torch.Tensor]
    a: list[torch.Tensor]

    @property
    def output(self) -> torch.Tensor:
        """The output f = z_L."""
        return self.z[-1]


@MODELS.register("mlp")
class MLP(Model):
    """Layer sizes n_0 → width → … → width → n_L with ``depth`` Linear layers (D8 init).

    Parameters ``W1, b1, …, WL, bL`` (layers numbered 1..L as in the paper).

    Args:
        input_dim: n_0.
        output_dim: n_L.
        depth: L, the number of Linear layers (≥ 1).
        width: hidden width.
        activation: only ``"elu"`` (the paper's choice, for smoothness).
        init: ``"xavier_normal"`` (default, D8) or ``"xavier_uniform"``; biases are zero.
        gain: init gain g (default √2, the Kaiming gain).
        dtype, device: of the parameters (float64 by default).
    """

    config_fields = ("depth", "width", "init", "gain")

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        depth: int = 6,
        width: int = 512,
        *,
        activation: str = "elu",
        init: str = "xavier_normal",
        gain: float = math.sqrt(2.0),
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        if depth < 1 or width < 1 or input_dim < 1 or output_dim < 1:
            raise ValueError(
                f"MLP needs depth, width, input_dim, output_dim >= 1 (got {depth}, {width}, {input_dim}, {output_dim})"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.sizes = [input_dim] + [width] * (depth - 1) + [output_dim]
        self.output_dim: int = output_dim  # n_L
        self.init, self.gain, self.dtype = init, gain, dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        shapes: list[tuple[int, ...]] = []
        for i in range(depth):
            shapes += [(self.sizes[i + 1], self.sizes[i]), (self.sizes[i + 1],)]
        names = [f"{kind}{i + 1}" for i in range(depth) for kind in ("W", "b")]
        self._set_layout(names, shapes, [(f"layer{i + 1}", names[2 * i : 2 * i + 2]) for i in range(depth)])

    # -- the model kind "mlp" (eoslab.models.registry.ModelKind) --------------------------------
    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """The MLP takes no ``model.options``: its size is ``model.depth`` × ``model.width``."""
        if options:
            raise ModelError(
                "model.options", f"the mlp takes no options (use model.depth, width, init, gain), got {sorted(options)}"
            )

    @classmethod
    def build(
        cls,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        depth: int,
        width: int,
        init: str,
        gain: float,
        options: dict[str, Any],
        dtype: torch.dtype,
        device: torch.device | str | None,
    ) -> MLP:
        """The MLP on inputs of ``input_shape``, flattened (n_0 = their number of entries)."""
        return cls(math.prod(input_shape), num_classes, depth, width, init=init, gain=gain, dtype=dtype, device=device)

    @classmethod
    def describe(cls, *, depth: int, width: int, options: dict[str, Any]) -> str:
        """``mlp, depth L × width w``."""
        return f"mlp, depth {depth} × width {width}"

    @property
    def depth(self) -> int:
        """L."""
        return len(self.sizes) - 1

    @property
    def input_dim(self) -> int:
        """n_0."""
        return self.sizes[0]

    def check_inputs(self, X: torch.Tensor) -> None:
        """Raise ValueError unless each sample has n_0 entries (any shape; it is flattened)."""
        features = math.prod(X.shape[1:])
        if features != self.input_dim:
            raise ValueError(
                f"X has {features} features per sample (shape {tuple(X.shape[1:])}) "
                f"but the model expects {self.input_dim}"
            )

    def init_params(self, seed: int) -> torch.Tensor:
        """A fresh θ: W_i ~ N(0, g²·2/(n_{i-1}+n_i)) (or the uniform variant), b_i = 0 (D8)."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        theta = torch.zeros(self.num_params, dtype=self.dtype)
        for i, (W, _) in enumerate(self.layers(theta)):
            fan_in, fan_out = self.sizes[i], self.sizes[i + 1]
            std = self.gain * math.sqrt(2.0 / (fan_in + fan_out))
            if self.init == "xavier_normal":
                W.copy_(torch.randn(W.shape, generator=g, dtype=torch.float64) * std)
            else:
                bound = math.sqrt(3.0) * std
                W.copy_((torch.rand(W.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
        return theta.to(self.device)

    def as_module(self, theta: torch.Tensor) -> torch.nn.Sequential:
        """This MLP at θ as a ``torch.nn.Module`` for one's own training loop (e.g. with
        :class:`eoslab.Tracker`): ``Linear, ELU, …, Linear``, holding copies of W_i, b_i in
        ``dtype`` on ``device``; its parameters in ``named_parameters()`` order are θ's.
        """
        parts: list[torch.nn.Module] = []
        for i, (W, b) in enumerate(self.layers(theta.detach())):
            linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=self.dtype, device=self.device)
            with torch.no_grad():
                linear.weight.copy_(W)
                linear.bias.copy_(b)
            parts += [linear] if i == self.depth - 1 else [linear, torch.nn.ELU()]
        return torch.nn.Sequential(torch.nn.Flatten(), *parts)

    def layers(self, theta: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(W_1, b_1), …, (W_L, b_L)] as views into θ."""
        p = self.unflatten(theta)
        return [(p[2 * i], p[2 * i + 1]) for i in range(self.depth)]

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """f(x, θ): (N, n_0) (or (N, *shape), flattened) → (N, n_L)."""
        a = x if x.ndim == 2 else x.flatten(1)
        layers = self.layers(theta)
        for i, (W, b) in enumerate(layers):
            z = torch.addmm(b, a, W.T)
            a = F.elu(z) if i < len(layers) - 1 else z
        return a

    def forward_all(self, theta: torch.Tensor, x: torch.Tensor) -> Forward:
        """One forward pass that keeps every z_i and a_i (docs/math.md §1); a_0 is x flattened."""
        x = x if x.ndim == 2 else x.flatten(1)
        a, zs, acts = x, [], [x]
        layers = self.layers(theta)
        for i, (W, b) in enumerate(layers):
            z = torch.addmm(b, a, W.T)
            zs.append(z)
            if i < len(layers) - 1:
                a = F.elu(z)
                acts.append(a)
        return Forward(z=zs, a=acts)
