"""A small convolutional network (model kind ``"cnn"``): conv-ELU blocks and a linear read-out.

For images (C, H, W) (Dice (1, H, W), CIFAR-10 (3, 32, 32)) each block is
``Conv2d(c_in, c, k, padding=k // 2) → ELU → AvgPool2d(pool)``; for sequences (C, L)
(AtrialFibrillation windows (2, 128)) the same with ``Conv1d`` / ``AvgPool1d``. After the blocks the
features are flattened and ``fc = Linear(·, n_L)`` gives the outputs. ELU and average pooling keep
f smooth in θ and x (docs/math.md §1 chose ELU for smoothness), so H, G and R are well defined.

Parameter groups ("layers" of Eq. 4): ``conv1 .. convB`` and ``fc``. Initialisation as D8 for the
MLP: Xavier normal (or uniform) weights with gain √2 (fans as ``torch.nn.init`` computes them for
convolutions: channels × kernel size), zero biases, drawn on the CPU from a generator seeded by
the init seed.

It is the model kind ``"cnn"`` (:mod:`eoslab.models.registry`): its options (``model.options``)
are checked once, by the rules of :data:`OPTIONS`, whether the config names them (before any data
is loaded) or the class is called.
"""

from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..constants import INITS
from ..errors import ModelError
from .module import ModuleModel, seeded
from .registry import MODELS


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: The options of the CNN (``model.options``), each with its rule and what the rule asks for.
OPTIONS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "channels": (
        lambda v: isinstance(v, list | tuple) and len(v) > 0 and all(_is_int(c) and c >= 1 for c in v),
        "a non-empty list of positive integers",
    ),
    "kernel_size": (lambda v: _is_int(v) and v >= 1 and v % 2 == 1, "a positive odd integer"),
    "pool": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
}


def cnn_module(
    input_shape: Sequence[int], num_classes: int, channels: Sequence[int], kernel_size: int, pool: int
) -> nn.Sequential:
    """The ``nn.Sequential`` of :class:`CNN` (children ``conv1, elu1, pool1, …, flatten, fc``), for
    options that pass :meth:`CNN.check_options`.
    """
    if len(input_shape) not in (2, 3):
        raise ValueError(f"cnn: inputs must be (C, L) or (C, H, W), got shape {tuple(input_shape)}")
    conv, avg = (nn.Conv1d, nn.AvgPool1d) if len(input_shape) == 2 else (nn.Conv2d, nn.AvgPool2d)
    spatial = list(input_shape[1:])
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = int(input_shape[0])
    for b, c in enumerate(channels, start=1):
        layers[f"conv{b}"] = conv(c_in, int(c), kernel_size, padding=kernel_size // 2)
        layers[f"elu{b}"] = nn.ELU()
        if pool > 1:
            if min(spatial) < pool:
                raise ValueError(
                    f"cnn: input {tuple(input_shape)} is too small for {len(channels)} blocks pooling by {pool}"
                )
            layers[f"pool{b}"] = avg(pool)
            spatial = [s // pool for s in spatial]
        c_in = int(c)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(c_in * math.prod(spatial), num_classes)
    return nn.Sequential(layers)


@MODELS.register("cnn")
class CNN(ModuleModel):
    """conv-ELU blocks and a linear read-out on inputs (C, H, W) or (C, L) (module docstring).

    Args:
        input_shape: (C, H, W) or (C, L).
        num_classes: n_L.
        channels: output channels of the blocks (default (16, 32)).
        kernel_size: odd kernel size (``padding = k // 2`` keeps the size).
        pool: average-pooling factor after each block (1: none).
        init: ``"xavier_normal"`` (default, as D8) or ``"xavier_uniform"``; biases are zero.
        gain: init gain (default √2).
        dtype, device: of the parameters (float64 by default).
    """

    config_fields = ("init", "gain")

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        *,
        kernel_size: int = 3,
        pool: int = 2,
        init: str = "xavier_normal",
        gain: float = math.sqrt(2.0),
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.channels, self.kernel_size, self.pool = [int(c) for c in channels], int(kernel_size), int(pool)
        self.check_options({"channels": self.channels, "kernel_size": self.kernel_size, "pool": self.pool})
        self.init, self.gain = init, gain
        with seeded(0):  # the layers' own default init must not draw from the caller's RNG
            module = cnn_module(input_shape, num_classes, self.channels, self.kernel_size, self.pool)
        super().__init__(module, input_shape=input_shape, output_dim=num_classes, dtype=dtype, device=device)

    # -- the model kind "cnn" (eoslab.models.registry.ModelKind) --------------------------------
    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Refuse an option that is not in :data:`OPTIONS` or breaks its rule (ModelError, ``model.options``)."""
        for key, value in options.items():
            if key not in OPTIONS:
                raise ModelError("model.options", f"cnn: unknown option {key!r} (allowed: {', '.join(OPTIONS)})")
            ok, what = OPTIONS[key]
            if not ok(value):
                raise ModelError("model.options", f"cnn: {key} must be {what}, got {value!r}")

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
    ) -> CNN:
        """The CNN with ``options`` (``depth`` and ``width`` are the MLP's); an input shape it cannot
        take is a ModelError (``model.options``).
        """
        try:
            return cls(input_shape, num_classes, **options, init=init, gain=gain, dtype=dtype, device=device)
        except ValueError as e:
            raise ModelError("model.options", str(e)) from None

    @classmethod
    def describe(cls, *, depth: int, width: int, options: dict[str, Any]) -> str:
        """``cnn, channels [..], kernel k, pool p``, the defaults filled in."""
        defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items() if name in OPTIONS}
        c = {**defaults, **options}
        return f"cnn, channels {list(c['channels'])}, kernel {c['kernel_size']}, pool {c['pool']}"

    def init_params(self, seed: int) -> torch.Tensor:
        """θ_0: Xavier weights (gain g, D8-style) from a CPU generator seeded by ``seed``, zero biases."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        theta = torch.zeros(self.num_params, dtype=torch.float64)
        init = nn.init.xavier_normal_ if self.init == "xavier_normal" else nn.init.xavier_uniform_
        for name, p in zip(self.names, self.unflatten(theta)):
            if name.endswith("weight"):
                init(p, gain=self.gain, generator=g)
        return theta.to(dtype=self.dtype, device=self.device)
