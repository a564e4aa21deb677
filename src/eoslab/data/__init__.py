"""Datasets as float64 tensors (docs/math.md §8): one loader per dataset, one registry.

Every loader returns a :class:`Dataset` whose inputs keep their natural shape (``X``:
(N, *input_shape), float64: Dice (N, 1, H, W), CIFAR-10 (N, 3, 32, 32), AtrialFibrillation windows
(N, 2, 128), SST (N, tokens, hidden), synthetic (N, input_dim)) and whose labels are class indices
(``y``: (N,), int64). Only the MLP flattens (n_0 = ``input_dim`` = the product of the shape).


:class:`Dataset` is in :mod:`eoslab.data.dataset`, the registry (:data:`DATASETS`,
:func:`register`, :func:`load_dataset`) in :mod:`eoslab.data.registry`; each loader is a module of
this package that registers itself when imported.
"""

from ..errors import DatasetError
from .dataset import Dataset
from .registry import (
    DATASETS,
    available,
    check_options,
    dataset_options,
    default_data_root,
    load_dataset,
    register,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "available",
    "check_options",
    "dataset_options",
    "default_data_root",
    "load_dataset",
    "register",
]
