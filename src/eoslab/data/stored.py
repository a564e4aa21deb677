"""The data a run directory holds itself (``data.safetensors``): what :class:`eoslab.Tracker`
measures on, stored so that ``eoslab analyze`` rebuilds the same full-batch loss.

A run whose config says ``data.name = "stored"`` reads its inputs and labels from its own folder
(:func:`eoslab.runs.build_problem` with the run directory); it is no registered loader, since
the data exist only in that run directory. The file holds tensors ``X`` (N, *input shape),
float64, and ``y`` (N,), int64, and the metadata ``classes`` (a JSON list of the class names).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..store import parse_safetensors, safetensors_bytes
from .dataset import Dataset

#: ``data.name`` of a run whose data live in its run directory.
STORED = "stored"


def stored_bytes(dataset: Dataset) -> bytes:
    """The bytes of ``data.safetensors`` for ``dataset`` (X as float64, y as int64, on the CPU)."""
    tensors = {
        "X": dataset.X.detach().to("cpu", torch.float64).contiguous(),
        "y": dataset.y.detach().to("cpu", torch.int64).contiguous(),
    }
    return safetensors_bytes(tensors, {"classes": json.dumps(list(dataset.classes))})


def read_stored(data: bytes, source: str | Path) -> Dataset:
    """The :class:`Dataset` of a ``data.safetensors`` file's bytes (ValueError naming ``source``)."""
    tensors, meta = parse_safetensors(data, source)
    if "X" not in tensors or "y" not in tensors or "classes" not in meta:
        raise ValueError(f"{source}: expected tensors X and y and metadata classes")
    return Dataset(X=tensors["X"], y=tensors["y"], classes=json.loads(meta["classes"]), name=STORED, source=str(source))
