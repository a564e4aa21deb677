"""Training subsets (docs/math.md §8): the paper's sizes per dataset and criterion, and seeded draws.

The paper trains on random subsets of each training set whose sizes double (``⌊N/2^j⌋``); each
(dataset, size, criterion) is run with 4 subset seeds × 4 initialisation seeds. Whether subsets were
class-stratified is unknown; like the authors' reimplementation we draw a plain random permutation.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from ..criteria import CRITERIA
from .dataset import Dataset

__all__ = ["SUBSET_SIZES", "paper_subset_sizes", "subset_indices", "draw_subset"]

#: (dataset, criterion) -> subset sizes of the paper's Table 1.
SUBSET_SIZES: dict[tuple[str, str], tuple[int, ...]] = {
    ("dice", "ce"): (468, 937, 1875, 3750, 7500),
    ("cifar10", "ce"): (390, 781, 1562, 3125, 6250),
    ("cifar10", "mse"): (390, 781, 1562, 3125),
    ("atrial_fibrillation", "ce"): (60, 120, 240, 480, 960),
    ("sst", "ce"): (461, 922, 1844, 3689),
}

_DATASETS = {
    "cifar": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "atrialfibrillation": "atrial_fibrillation",
    "atrial-fibrillation": "atrial_fibrillation",
    "af": "atrial_fibrillation",
}


def paper_subset_sizes(dataset: str, criterion: str = "ce") -> tuple[int, ...]:
    """The paper's subset sizes for a dataset (``dice``, ``cifar10``, ``atrial_fibrillation``,
    ``sst``) and criterion (``ce``/``cross_entropy`` or ``mse``).
    """
    d = _DATASETS.get(dataset.lower(), dataset.lower())
    c = CRITERIA.canonical(criterion.lower())
    try:
        return SUBSET_SIZES[(d, c)]
    except KeyError:
        known = ", ".join(f"{a}/{b}" for a, b in SUBSET_SIZES)
        raise ValueError(f"the paper has no subsets for {dataset}/{criterion}; known: {known}") from None


def _generator(seed: int, n: int, nested: bool) -> torch.Generator:
    if nested:
        s = int(seed)
    else:  # one independent stream per (seed, n)
        s = int(np.random.SeedSequence([int(seed), int(n), 1]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(s)


def subset_indices(N: int, n: int, seed: int, *, nested: bool = True) -> torch.Tensor:
    """Indices of a size-``n`` subset of ``range(N)``.

    ``nested=True``: the first ``n`` entries of ``torch.randperm(N)`` under ``manual_seed(seed)``, so
    for one seed every smaller subset is contained in every larger one. ``nested=False``: the first
    ``n`` entries of an independent permutation per ``(seed, n)``.
    """
    if not 1 <= n <= N:
        raise ValueError(f"subset size must be in 1..{N}, got {n}")
    return torch.randperm(N, generator=_generator(seed, n, nested))[:n]


def draw_subset(dataset: Dataset, n: int, seed: int, nested: bool = True) -> Dataset:
    """A random size-``n`` subset of ``dataset`` (see :func:`subset_indices`) as a new Dataset.

    ``meta["subset"]`` records ``n``, ``seed``, ``nested``, the parent size, the SHA-256 of the
    int64 indices and the indices themselves. Per-row arrays in the parent's meta (tensors or numpy
    arrays whose first dimension is the parent's N, e.g. Dice parameters or window origins) are
    indexed along with X and y; their keys are listed in ``meta["subset"]["row_keys"]``.
    """
    N = len(dataset)
    idx = subset_indices(N, int(n), int(seed), nested=nested)
    digest = hashlib.sha256(idx.numpy().astype("<i8").tobytes()).hexdigest()
    meta: dict[str, Any] = {}
    row_keys: list[str] = []
    for k, v in dataset.meta.items():
        if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == N:
            meta[k] = v[idx]
            row_keys.append(k)
        elif isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == N:
            meta[k] = v[idx.numpy()]
            row_keys.append(k)
        else:
            meta[k] = v
    meta["subset"] = {
        "n": int(n),
        "seed": int(seed),
        "nested": bool(nested),
        "parent_n": N,
        "indices_sha256": digest,
        "indices": idx,
        "row_keys": row_keys,
    }
    return Dataset(
        X=dataset.X[idx],
        y=dataset.y[idx],
        classes=list(dataset.classes),
        name=dataset.name,
        source=dataset.source,
        meta=meta,
    )
