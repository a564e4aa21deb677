"""The dataset registry: every loader registers itself by name (:func:`register`);
:func:`load_dataset` loads one by name, from :func:`default_data_root` unless told where.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from collections.abc import Callable
from pathlib import Path

from .dataset import Dataset

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
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__package__}.{info.name}")
