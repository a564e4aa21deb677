"""A seeded synthetic classification set for tests and quick runs (not from the paper)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .dataset import Dataset
from .registry import register


@register("synthetic")
def load_synthetic(
    split: str = "train",
    data_root: Path | None = None,
    *,
    n: int = 64,
    input_dim: int = 8,
    num_classes: int = 3,
    seed: int = 0,
    noise: float = 0.5,
    shape: list[int] | None = None,
) -> Dataset:
    """Gaussian class clusters: class means ~ N(0, I), inputs = mean + noise * N(0, I).

    The class means depend only on ``seed``; ``split`` selects an independent draw of samples
    (train and test share the means). ``shape`` (e.g. [1, 6, 6]) gives each input that shape
    (image- or series-shaped inputs for a CNN; ``input_dim`` is then its product); the values are
    those of the flat draw with ``input_dim`` = the product, reshaped.
    """
    if shape is not None:
        if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
            raise ValueError(f"synthetic: shape must be a list of positive integers, got {shape!r}")
        input_dim = math.prod(shape)
    if n < 1 or input_dim < 1 or num_classes < 2:
        raise ValueError(
            f"synthetic: need n >= 1, input_dim >= 1, num_classes >= 2 (got {n}, {input_dim}, {num_classes})"
        )
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, input_dim, generator=g, dtype=torch.float64)
    g.manual_seed(seed * 1000 + {"train": 1, "test": 2}.get(split, 3))
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=g)]
    X = means[y] + noise * torch.randn(n, input_dim, generator=g, dtype=torch.float64)
    return Dataset(
        X=X if shape is None else X.reshape(n, *shape),
        y=y.long(),
        classes=[str(c) for c in range(num_classes)],
        name="synthetic",
        source=f"synthetic(seed={seed}, n={n}, input_dim={input_dim}, num_classes={num_classes}, noise={noise})"
        + (f", shape {list(shape)}" if shape is not None else ""),
    )
