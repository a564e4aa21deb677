"""Datasets as float64 tensors (docs/math.md §8): one loader per dataset, one registry.

Every loader returns a :class:`Dataset` whose inputs keep their natural shape (``X``:
(N, *input_shape), float64: Dice (N, 1, H, W), CIFAR-10 (N, 3, 32, 32), AtrialFibrillation windows
(N, 2, 128), SST (N, tokens, hidden), synthetic (N, input_dim)) and whose labels are class indices
(``y``: (N,), int64). Only the MLP flattens (n_0 = ``input_dim`` = the product of the shape).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DatasetError as DatasetError


@dataclass
class Dataset:
    """A classification dataset held in memory.

    Attributes:
        X: inputs, shape (N, *input_shape), float64 (images (C, H, W), series (C, L), token
            embeddings (tokens, hidden), plain vectors (n_0,)).
        y: labels, shape (N,), int64 in ``range(len(classes))``.
        classes: class names, index = label.
        name: registry name (e.g. ``"dice"``).
        source: where it came from (a path, or a generator description).
        meta: anything else worth recording (image shape, window length, encoder, ...).
    """

    X: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    name: str
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.X.ndim < 2:
            raise ValueError(f"dataset {self.name!r}: X must be (N, *input_shape), got shape {tuple(self.X.shape)}")
        if self.y.shape != (self.X.shape[0],):
            raise ValueError(f"dataset {self.name!r}: y has shape {tuple(self.y.shape)}, expected ({self.X.shape[0]},)")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, e.g. (3, 32, 32)."""
        return tuple(int(d) for d in self.X.shape[1:])

    @property
    def input_dim(self) -> int:
        """n_0, the number of input features (entries of one input: what the MLP sees after flattening)."""
        return math.prod(self.input_shape)

    @property
    def num_classes(self) -> int:
        """n_L, the number of classes."""
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def standardized(self) -> Dataset:
        """Every input feature shifted and scaled to mean 0 and standard deviation 1 over this
        dataset (``data.standardize``, the alternative of decision D9 in docs/decisions.md; a
        constant feature is only shifted).
        """
        mean = self.X.mean(0, keepdim=True)
        std = self.X.std(0, correction=0, keepdim=True)
        X = (self.X - mean) / torch.where(std > 0, std, torch.ones_like(std))
        return dataclasses.replace(self, X=X, meta={**self.meta, "standardized": "per feature, over the split"})


_REGISTRY: dict[str, Callable[..., Dataset]] = {}


def register(name: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator: register a loader ``fn(split=..., data_root=..., **options) -> Dataset`` under
    ``name``. A loader module in this package registers itself on import (:func:`available` imports
    them all); a name registered twice is refused.
    """

    def deco(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"dataset {name!r} is already registered (by {_REGISTRY[name].__module__})")
        _REGISTRY[name] = fn
        return fn

    return deco


def available() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    _import_loaders()
    return sorted(_REGISTRY)


def default_data_root() -> Path:
    """``$EOSLAB_DATA`` if set, else ``~/.cache/eoslab``."""
    env = os.environ.get("EOSLAB_DATA")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "eoslab"


def load_dataset(name: str, split: str = "train", *, data_root: str | Path | None = None, **options) -> Dataset:
    """Load a registered dataset by name (``synthetic``, ``dice``, ``cifar10``, ``uea``,
    ``atrial_fibrillation``, ``sst``).
    """
    _import_loaders()
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    check_options(name, options)
    root = Path(data_root) if data_root is not None else default_data_root()
    return _REGISTRY[name](split=split, data_root=root, **options)


def dataset_options(name: str) -> list[str]:
    """The option names the loader of dataset ``name`` takes (its keyword-only parameters)."""
    import inspect

    _import_loaders()
    params = inspect.signature(_REGISTRY[name]).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def check_options(name: str, options: dict) -> None:
    """Refuse an option the loader of ``name`` does not take (a typo such as ``sze=64``),
    naming it and the allowed ones (ValueError).
    """
    allowed = dataset_options(name)
    for key in options:
        if key not in allowed:
            raise ValueError(f"{name}: unknown option {key!r}; {name} takes {', '.join(allowed)}")


def _import_loaders() -> None:
    """Import every module of this package once, so each loader registers itself (lazily, so that
    ``import eoslab.data`` stays cheap); a new dataset needs only its own module.
    """
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
