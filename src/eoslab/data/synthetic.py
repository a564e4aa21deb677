"""A seeded synthetic classification set for tests and quick runs (not from the paper)."""

from __future__ import annotations

from pathlib import Path

import torch

from . import Dataset, register


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
) -> Dataset:
    """Gaussian class clusters: class means ~ N(0, I), inputs = mean + noise * N(0, I).

    The class means depend only on ``seed``; ``split`` selects an independent draw of samples
    (train and test share the means).
    """
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
        X=X,
        y=y.long(),
        classes=[str(c) for c in range(num_classes)],
        name="synthetic",
        source=f"synthetic(seed={seed}, n={n}, input_dim={input_dim}, num_classes={num_classes}, noise={noise})",
    )
