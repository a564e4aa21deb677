"""Any ``torch.nn.Module`` as a model of the protocol (:mod:`eoslab.models.base`), through
``torch.func.functional_call``.

θ holds the module's trainable parameters (``requires_grad=True``) in ``named_parameters()`` order,
each flattened row-major; frozen parameters and buffers are passed as constants. The module is run
as it is (``eval()`` is called: no dropout, BatchNorm with its fixed running statistics), since the
full-batch loss must be a mean of per-sample terms (docs/math.md §2) for chunks and data-parallel
shards to add up. Attention runs without fused kernels (:func:`differentiable_attention`).

Parameter groups (the "layers" of Eq. 4, docs/math.md §4), by default: one group per direct child
of the module that holds trainable parameters, where a container child (``nn.Sequential``,
``nn.ModuleList``, ``nn.ModuleDict``) is replaced by its own children, recursively (so
``blocks = nn.ModuleList([...])`` gives ``blocks.0``, ``blocks.1``, …, and a root ``nn.Sequential``
gives its layers); a parameter held by the root module itself is a group of its own. Or pass
``groups``: dotted name prefixes; each parameter goes to the longest prefix it starts with (at a
``.`` boundary), every parameter must match one, and each group must be a run of consecutive
parameters in θ.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from .base import Model

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@contextlib.contextmanager
def seeded(seed: int, dtype: torch.dtype | None = None) -> Iterator[None]:
    """Run a block with the CPU random generator seeded (the caller's RNG state is restored) and,
    optionally, ``dtype`` as torch's default floating dtype.
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        old = torch.get_default_dtype()
        if dtype is not None:
            torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(old)


@contextlib.contextmanager
def differentiable_attention() -> Iterator[None]:
    """Attention by PyTorch's math backend and without the fused ``nn.MultiheadAttention`` /
    ``nn.TransformerEncoderLayer`` fast paths: the fused kernels have no forward-mode derivative
    and no double backward, which H·V, G·V and the analysis need.
    """
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def default_groups(module: nn.Module, names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The default parameter groups (module docstring): [(group name, parameter names)] in θ order."""
    out: list[tuple[str, list[str]]] = []
    for name in names:
        parts = name.split(".")
        group = name  # a parameter of the root module itself
        if len(parts) > 1:
            depth, current = 1, module.get_submodule(parts[0])
            while isinstance(current, _CONTAINERS) and depth < len(parts) - 1:
                current, depth = current.get_submodule(parts[depth]), depth + 1
            group = ".".join(parts[:depth])
        if out and out[-1][0] == group:
            out[-1][1].append(name)
        else:
            out.append((group, [name]))
    return out


def prefix_groups(prefixes: Sequence[str], names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Groups by dotted name prefixes: each parameter to the longest prefix it starts with."""
    out: list[tuple[str, list[str]]] = []
    for name in names:
        matches = [p for p in prefixes if name == p or name.startswith(p + ".")]
        if not matches:
            raise ValueError(f"parameter {name!r} matches none of the group prefixes {list(prefixes)}")
        group = max(matches, key=len)
        if out and out[-1][0] == group:
            out[-1][1].append(name)
        else:
            out.append((group, [name]))
    return out


class ModuleModel(Model):
    """A ``torch.nn.Module`` on a flat θ (module docstring): f(θ, X) = functional_call(module, θ, X).

    Args:
        module: maps a batch (N, *input_shape) to outputs (N, n_L). It is moved to ``dtype`` and
            ``device`` and put in eval mode, in place.
        groups: parameter-group name prefixes (module docstring); None: the default rule.
        factory: optional zero-argument function building a fresh module of the same layout;
            :meth:`init_params` then calls it under the seed. Without one, :meth:`init_params`
            re-initialises a copy of ``module`` with every submodule's ``reset_parameters()``.
        input_shape: the shape of one input, checked by :meth:`~Model.check_inputs`; with it the
            output size n_L is found by one forward pass of a zero input.
        output_dim: n_L expected of the outputs (checked by that forward pass).
        dtype, device: of θ and the module (float64 by default).
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        groups: Sequence[str] | None = None,
        factory: Callable[[], nn.Module] | None = None,
        input_shape: Sequence[int] | None = None,
        output_dim: int | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, got {type(module).__name__}")
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.module = module.to(dtype=dtype, device=self.device).eval()
        self._factory = factory
        trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not trainable:
            raise ValueError(f"{type(module).__name__} has no trainable parameters")
        names = [n for n, _ in trainable]
        layout = default_groups(module, names) if groups is None else prefix_groups(groups, names)
        self._set_layout(names, [tuple(p.shape) for _, p in trainable], layout)
        self._constants = {n: p.detach() for n, p in module.named_parameters() if not p.requires_grad}
        self._constants.update(dict(module.named_buffers()))
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.output_dim = output_dim
        if self.input_shape is not None:
            self._probe_output(self.input_shape, output_dim)

    def _probe_output(self, input_shape: tuple[int, ...], expected: int | None) -> None:
        x = torch.zeros((1, *input_shape), dtype=self.dtype, device=self.device)
        with torch.no_grad():
            out = self(self.module_params(), x)
        if out.ndim != 2 or out.shape[0] != 1 or (expected is not None and out.shape[1] != expected):
            want = f"(1, {expected})" if expected is not None else "(1, n_L)"
            raise ValueError(
                f"{type(self.module).__name__} maps a batch of shape {tuple(x.shape)} to {tuple(out.shape)}, "
                f"expected {want}"
            )
        self.output_dim = int(out.shape[1])

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """f(θ, X) = the module's forward with its trainable parameters taken from θ (attention
        without fused kernels, :func:`differentiable_attention`).
        """
        params = dict(zip(self.names, self.unflatten(theta)))
        with differentiable_attention():
            return functional_call(self.module, (params, self._constants), (x,))

    def module_params(self) -> torch.Tensor:
        """θ holding the module's current parameters (e.g. a pretrained module's)."""
        named = dict(self.module.named_parameters())
        return torch.cat([named[n].detach().reshape(-1) for n in self.names])

    def load_into_module(self, theta: torch.Tensor) -> nn.Module:
        """Copy θ into the module's parameters (in place) and return the module."""
        with torch.no_grad():
            named = dict(self.module.named_parameters())
            for name, value in zip(self.names, self.unflatten(theta)):
                named[name].copy_(value)
        return self.module

    def init_params(self, seed: int) -> torch.Tensor:
        """θ_0 for ``seed``: the parameters of ``factory()`` built with the CPU generator seeded
        by ``seed`` and torch's default dtype set to ``dtype``; without a factory, those of a CPU
        copy of the module after a seeded ``reset_parameters()`` (or ``_reset_parameters()``,
        e.g. ``nn.MultiheadAttention``) of every submodule that has one (parameters of
        submodules without one keep their values).
        """
        with seeded(seed, self.dtype):
            if self._factory is not None:
                fresh = self._factory()
            else:
                fresh = copy.deepcopy(self.module).to(device="cpu", dtype=self.dtype)
                for m in fresh.modules():
                    reset = getattr(m, "reset_parameters", None) or getattr(m, "_reset_parameters", None)
                    if callable(reset):
                        reset()
        named = dict(fresh.named_parameters())
        parts = []
        for name, shape in zip(self.names, self.shapes):
            if name not in named or tuple(named[name].shape) != shape:
                raise ValueError(f"the module built for init_params has no parameter {name!r} of shape {shape}")
            parts.append(named[name].detach().reshape(-1).to(self.dtype))
        return torch.cat(parts).to(self.device)
