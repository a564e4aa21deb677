"""A classification dataset held in memory: float64 inputs of their natural shape, int64 class
indices (docs/math.md §8).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch


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
