"""Paper subset sizes and seeded (nested) subset draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eoslab.data import Dataset, load_dataset
from eoslab.data.subsets import SUBSET_SIZES, draw_subset, paper_subset_sizes, subset_indices


def test_paper_sizes():
    assert paper_subset_sizes("dice") == (468, 937, 1875, 3750, 7500)
    assert paper_subset_sizes("cifar10", "cross_entropy") == (390, 781, 1562, 3125, 6250)
    assert paper_subset_sizes("CIFAR-10", "mse") == (390, 781, 1562, 3125)
    assert paper_subset_sizes("atrial_fibrillation") == (60, 120, 240, 480, 960)
    assert paper_subset_sizes("sst") == (461, 922, 1844, 3689)
    # the sizes are floor(N / 2^j) of the full train sets
    for (name, _), sizes in SUBSET_SIZES.items():
        N = {"dice": 60000, "cifar10": 50000, "atrial_fibrillation": 7680}.get(name)
        if N is not None:
            assert all(s in {N // 2**j for j in range(1, 10)} for s in sizes)
    with pytest.raises(ValueError, match=r"^the paper has no subsets for sst/mse; known: dice/ce, .*sst/ce$"):
        paper_subset_sizes("sst", "mse")


def _toy(N=500):
    X = torch.arange(N, dtype=torch.float64)[:, None].repeat(1, 3)
    return Dataset(
        X=X, y=torch.arange(N) % 4, classes=list("abcd"), name="toy", meta={"row": np.arange(N) * 10, "other": [1, 2]}
    )


def test_nested_subsets_are_contained():
    ds = _toy()
    sizes = (30, 60, 120, 240)
    subs = [draw_subset(ds, n, seed=3) for n in sizes]
    for small, big in zip(subs, subs[1:]):
        assert set(small.X[:, 0].tolist()) <= set(big.X[:, 0].tolist())
    s = subs[1]
    assert len(s) == 60 and len(set(s.X[:, 0].tolist())) == 60
    idx = s.meta["subset"]["indices"]
    assert torch.equal(s.X, ds.X[idx]) and torch.equal(s.y, ds.y[idx])
    assert s.meta["subset"]["n"] == 60 and s.meta["subset"]["seed"] == 3 and s.meta["subset"]["nested"]
    assert np.array_equal(s.meta["row"], ds.meta["row"][idx.numpy()]) and s.meta["other"] == [1, 2]
    # deterministic; other seeds differ
    again = draw_subset(ds, 60, seed=3)
    assert torch.equal(again.X, s.X) and again.meta["subset"]["indices_sha256"] == s.meta["subset"]["indices_sha256"]
    assert draw_subset(ds, 60, seed=4).meta["subset"]["indices_sha256"] != s.meta["subset"]["indices_sha256"]


def test_independent_subsets_per_size():
    N = 500
    a = subset_indices(N, 100, seed=1, nested=False)
    b = subset_indices(N, 200, seed=1, nested=False)
    assert not set(a.tolist()) <= set(b.tolist())  # independent draws (overlap ~ 40 %, containment ~ impossible)
    assert torch.equal(a, subset_indices(N, 100, seed=1, nested=False))
    assert draw_subset(_toy(N), 100, 1, nested=False).meta["subset"]["nested"] is False
    with pytest.raises(ValueError, match=r"^subset size must be in 1\.\.500, got 501$"):
        subset_indices(N, N + 1, 0)


def test_draw_from_a_loaded_dataset(tmp_path):
    ds = load_dataset("dice", "train", data_root=tmp_path, n_per_class=40, size=8)
    sub = draw_subset(ds, 30, seed=0)
    assert sub.X.shape == (30, 1, 8, 8) and sub.name == "dice" and sub.meta["params"].shape == (30, 7)
    assert torch.equal(sub.X, ds.X[sub.meta["subset"]["indices"]])
    assert np.array_equal(sub.meta["indices"], ds.meta["indices"][sub.meta["subset"]["indices"].numpy()])
