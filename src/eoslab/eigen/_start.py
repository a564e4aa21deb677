"""Random start vectors, shared by the solvers and their certification (:mod:`._certify`)."""

from __future__ import annotations

from typing import Any

import torch


def random_rows(count: int, op: Any, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` N(0, 1) row vectors of the operator's dimension, drawn on the CPU (so a seed
    gives the same draw on every device) and moved to the operator's device.
    """
    return torch.randn(count, op.dim, generator=generator, dtype=op.dtype).to(op.device)
