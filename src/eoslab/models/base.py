"""The model protocol: what the curvature core, the integrators and the analysis need of a network.

A model maps a flat parameter vector θ ∈ R^P and a batch of inputs to outputs (docs/math.md §1):

* ``model(theta, X)`` is f(θ, X): X has shape (N, *input shape), the result (N, n_L);
* ``num_params`` (P), ``dtype``, ``device``, ``output_dim`` (n_L);
* the flat θ ↔ parameters map: :meth:`Model.unflatten` (views into θ, in the order of
  :meth:`Model.param_names` and ``shapes``), :meth:`Model.to_state_dict` /
  :meth:`Model.from_state_dict` (named tensors, as the safetensors snapshots store them);
* the parameter groups ("layers", docs/math.md §4, Eq. 4): :meth:`Model.groups`, each a name and
  its contiguous slice of θ; together they cover θ once, in order;
* ``init_params(seed)``: a fresh θ_0, a function of the seed alone;
* :meth:`Model.check_inputs`: refuses inputs of the wrong shape with a one-line message.

:class:`Model` implements everything but f and the initialisation from ``names``, ``shapes`` and
the groups' boundaries; :class:`~eoslab.models.MLP`, :class:`~eoslab.models.CNN` and
:class:`~eoslab.models.ModuleModel` (any ``torch.nn.Module``) are its implementations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ParamGroup:
    """One parameter group ("layer" i of Eq. 4): a name and its contiguous slice of θ.

    Attributes:
        name: e.g. ``"layer1"`` (MLP), ``"conv2"`` (CNN) or a module's child name.
        slice: the entries of θ the group holds.
        params: the names of its parameters, in θ order.
    """

    name: str
    slice: slice
    params: tuple[str, ...]

    @property
    def size(self) -> int:
        """The number of entries of θ in the group."""
        return self.slice.stop - self.slice.start


class Model:
    """Base class of the model protocol (see the module docstring).

    Subclasses call :meth:`_set_layout` with the parameter names and shapes (θ order) and the
    groups as lists of parameter names, set ``dtype``, ``device`` and ``output_dim``, and implement
    ``__call__`` and :meth:`init_params`.
    """

    dtype: torch.dtype
    device: torch.device
    #: n_L; None: not known (a :class:`~eoslab.models.ModuleModel` given neither an input shape
    #: nor n_L).
    output_dim: int | None
    #: the shape of one input (without the batch dimension); None: any.
    input_shape: tuple[int, ...] | None = None

    def _set_layout(self, names: Sequence[str], shapes: Sequence[tuple[int, ...]], groups) -> None:
        """Record θ's layout; ``groups`` is [(group name, [parameter names])] in θ order, each
        group a run of consecutive parameters, together covering every parameter once.
        """
        self.names = list(names)
        self.shapes = [tuple(int(d) for d in s) for s in shapes]
        self.numels = [math.prod(s) for s in self.shapes]
        self.num_params = sum(self.numels)
        offsets = [0]
        for n in self.numels:
            offsets.append(offsets[-1] + n)
        index = {name: i for i, name in enumerate(self.names)}
        out, expected = [], 0
        seen = [g for g, _ in groups]
        if len(set(seen)) != len(seen):
            raise ValueError(
                f"parameter groups must have distinct names and be runs of consecutive parameters, got {seen}"
            )
        for gname, pnames in groups:
            ids = [index[p] for p in pnames]
            if not ids or ids != list(range(ids[0], ids[0] + len(ids))) or ids[0] != expected:
                raise ValueError(
                    f"parameter group {gname!r} must be a run of consecutive parameters in θ order, "
                    f"starting after the previous group (got {list(pnames)})"
                )
            expected = ids[-1] + 1
            out.append(ParamGroup(gname, slice(offsets[ids[0]], offsets[ids[-1] + 1]), tuple(pnames)))
        if expected != len(self.names):
            raise ValueError(f"parameter groups leave out {self.names[expected:]}")
        self._groups = out

    # ------------------------------------------------------------------ the protocol
    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """f(θ, X): (N, *input shape) → (N, n_L)."""
        raise NotImplementedError

    def init_params(self, seed: int) -> torch.Tensor:
        """A fresh θ_0 of shape (P,), on ``device``, a function of ``seed`` alone."""
        raise NotImplementedError

    def param_names(self) -> list[str]:
        """Parameter names in θ order (the keys of :meth:`to_state_dict`)."""
        return list(self.names)

    def unflatten(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """Views of θ as the parameters, in θ order (differentiable; one split, one backward node)."""
        return [t.view(s) for t, s in zip(torch.split(theta, self.numels), self.shapes)]

    def groups(self) -> list[ParamGroup]:
        """The parameter groups ("layers" of Eq. 4) in θ order."""
        return list(self._groups)

    def layer_slices(self) -> list[slice]:
        """Slice of θ of each parameter group (used for the layerwise J̃_i, Eq. 4)."""
        return [g.slice for g in self._groups]

    def check_inputs(self, X: torch.Tensor) -> None:
        """Raise ValueError (one line) unless X is a batch (N, *input shape) this model takes."""
        if self.input_shape is not None and tuple(X.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"inputs have shape {tuple(X.shape[1:])} per sample but the model expects {tuple(self.input_shape)}"
            )

    def to_state_dict(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named parameter tensors (contiguous CPU copies) for safetensors files."""
        return {n: t.detach().cpu().clone().contiguous() for n, t in zip(self.names, self.unflatten(theta))}

    def from_state_dict(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`to_state_dict`; checks names and shapes."""
        parts = []
        for name, shape in zip(self.names, self.shapes):
            if name not in state:
                raise KeyError(f"parameter {name!r} missing (have {sorted(state)})")
            t = state[name]
            if tuple(t.shape) != shape:
                raise ValueError(f"parameter {name!r} has shape {tuple(t.shape)}, expected {shape}")
            parts.append(t.reshape(-1))
        return torch.cat(parts).to(dtype=self.dtype, device=self.device)
