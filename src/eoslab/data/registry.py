"""The dataset registry: every loader registers itself by name (``@register("dice")``, the
:class:`~eoslab._registry.Registry` :data:`DATASETS`); :func:`load_dataset` loads one by name, from
:func:`default_data_root` unless told where.

The loaders are found, not listed: :data:`DATASETS` imports every module of this package before its
first read, so a new dataset needs only its own module. It does so lazily because the loaders
import this module (it cannot import them at its top), and so that ``import eoslab.data`` does not
pay for them (about 0.15 s after torch: pyarrow, rich) where no dataset is looked up by name.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path

from .._registry import Registry
from .dataset import Dataset

#: The dataset loaders by name, each ``fn(split=..., data_root=..., **options) -> Dataset`` whose
#: keyword-only parameters are its options.
DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset", discover=__package__)
#: Decorator: register a loader under a name (a name registered twice is a RegistryError).
register = DATASETS.register


def available() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(DATASETS.names())


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
    loader = DATASETS[name]
    check_options(name, options)
    root = Path(data_root) if data_root is not None else default_data_root()
    return loader(split=split, data_root=root, **options)


def dataset_options(name: str) -> list[str]:
    """The option names the loader of dataset ``name`` takes (its keyword-only parameters)."""
    params = inspect.signature(DATASETS[name]).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def check_options(name: str, options: dict) -> None:
    """Refuse an option the loader of ``name`` does not take (a typo such as ``sze=64``),
    naming it and the allowed ones (ValueError).
    """
    allowed = dataset_options(name)
    for key in options:
        if key not in allowed:
            raise ValueError(f"{name}: unknown option {key!r}; {name} takes {', '.join(allowed)}")
