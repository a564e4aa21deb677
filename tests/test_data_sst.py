"""SST: PTB-tree parsing, labels (D7) and per-word encoder embeddings with a small real encoder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from eoslab.data import DatasetError, load_dataset
from eoslab.data import sst as sst_mod
from eoslab.data.sst import encoder_identity, parse_tree, read_trees, resolve_encoder

from ._data_helpers import minilm_folder, require_shared

TRAIN = "sst/trees/train.txt"
N_EMB = 80  # sentences embedded in the encoder tests (keeps them to seconds on 2 cores)


def test_parse_tree_labels_and_leaves():
    t = parse_tree("(3 (2 (2 The) (2 Rock)) (4 (3 (2 is) (4 great)) (2 -LRB-)))")
    assert t.label == 3 and t.leaves() == ["The", "Rock", "is", "great", "-LRB-"]
    assert [n.label for n in t.nodes()] == [3, 2, 2, 2, 4, 3, 2, 4, 2]
    # words may contain a no-break space (as in SST's "8\u00a01\\/2")
    t = parse_tree("(2 (2 8\u00a01\\/2) (2 .))")
    assert t.leaves() == ["8\u00a01\\/2", "."]
    assert sst_mod._unescape("-LRB-") == "(" and sst_mod._unescape("8\u00a01\\/2") == "8\u00a01/2"


@pytest.mark.parametrize(
    "line, col, expect",
    [
        (
            "(3 (2 The) (2 Rock)",
            20,
            r"unbalanced tree: 1 unclosed '\(' at end of line \(innermost opened at column 1\)",
        ),
        ("(3 (2 The) (2 Rock)))", 21, r"unbalanced tree: '\)' closes nothing|after the tree closed"),
        ("(3 (2 The) (7 Rock))", 13, r"label '7'; expected a sentiment label 0-4"),
        ("(3 (2 The Rock))", 11, r"second word 'Rock' in a leaf"),
        ("(3 (The) (2 Rock))", 5, r"label 'The'"),
        ("(3 (2 The)) (2 x)", 13, r"after the tree closed; expected one tree per line"),
    ],
)
def test_malformed_trees_name_file_line_and_column(tmp_path, line, col, expect):
    path = tmp_path / "train.txt"
    path.write_text("(2 (2 fine) (2 .))\n" + line + "\n(1 ok)\n")
    with pytest.raises(DatasetError, match=expect) as ei:
        read_trees(path)
    assert f"{path}:2: column {col}:" in str(ei.value)


def test_missing_tree_file(tmp_path):
    with pytest.raises(DatasetError) as ei:
        load_dataset("sst", "train", data_root=tmp_path, encoder=str(tmp_path))
    assert str(tmp_path / TRAIN) in str(ei.value)


def test_real_sst_train_counts():
    root = require_shared(TRAIN)
    trees = read_trees(root / TRAIN)
    assert len(trees) == 8544
    assert np.bincount([t.label for t in trees]).tolist() == [1092, 2218, 1624, 2322, 1288]
    assert all(0 <= n.label <= 4 for n in trees[0].nodes())
    assert trees[0].leaves()[:3] == ["The", "Rock", "is"]


def test_encoder_is_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DatasetError, match=r"not in the local Hugging Face cache.*encoder=PATH"):
        resolve_encoder("some-org/no-such-model")
    with pytest.raises(DatasetError, match="encoder folder not found"):
        resolve_encoder(str(tmp_path / "nope"))


@pytest.fixture(scope="module")
def sst_root(tmp_path_factory):
    """A data root holding the first N_EMB + 30 trees of the real train file."""
    shared = require_shared(TRAIN)
    root = tmp_path_factory.mktemp("sstroot")
    (root / "sst" / "trees").mkdir(parents=True)
    lines = (shared / TRAIN).read_text(encoding="utf-8").splitlines(keepends=True)[: N_EMB + 30]
    (root / "sst" / "trees" / "train.txt").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def embedded(sst_root):
    folder = minilm_folder()
    ds = load_dataset(
        "sst", "train", data_root=sst_root, encoder=str(folder), limit=N_EMB, max_tokens=32, progress=False
    )
    return folder, ds


def test_embedding_shapes_and_zero_padding(embedded, sst_root):
    folder, ds = embedded
    hidden = 384
    assert ds.X.shape == (N_EMB, 32, hidden) and ds.X.dtype == torch.float64 and ds.y.dtype == torch.int64
    assert ds.input_shape == (32, hidden) and ds.input_dim == 32 * hidden
    assert ds.meta["hidden"] == hidden and not ds.meta["cache_hit"]
    words, labels = sst_mod.sst_sentences("train", sst_root, limit=N_EMB)
    assert ds.y.tolist() == labels.tolist()
    E = ds.X.reshape(N_EMB, 32, hidden)
    nonzero = E.abs().sum(dim=2) > 0
    n_words = torch.tensor([min(len(w), 32) for w in words])
    assert torch.equal(ds.meta["n_words"], n_words)
    # a vector exactly at every word position, zeros exactly after the last word
    assert torch.equal(nonzero, torch.arange(32)[None, :] < n_words[:, None])
    assert (n_words < 32).any() and (n_words == 32).any()  # both padded and cropped sentences occur


def test_embedding_is_first_subtoken_of_last_hidden_state(embedded, sst_root):
    folder, ds = embedded
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    words, _ = sst_mod.sst_sentences("train", sst_root, limit=N_EMB)
    i = 1
    enc = tok(words[i], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state[0]
    wids = enc.word_ids(0)
    E = ds.X.reshape(N_EMB, 32, -1)
    for w in (0, 5, min(len(words[i]), 32) - 1):
        t = wids.index(w)
        assert torch.allclose(E[i, w], h[t].double(), atol=2e-5)


def test_cache_reuse_does_not_call_the_encoder(embedded, sst_root, monkeypatch):
    folder, ds = embedded

    def boom(*a, **k):
        raise AssertionError("encoder loaded although the embeddings are cached")

    monkeypatch.setattr(sst_mod, "_load_encoder", boom)
    again = load_dataset(
        "sst", "train", data_root=sst_root, encoder=str(folder), limit=N_EMB, max_tokens=32, progress=False
    )
    assert again.meta["cache_hit"] and torch.equal(again.X, ds.X) and torch.equal(again.y, ds.y)
    # binary labels (D7) come from the same cache: drop 2, {0,1} -> 0, {3,4} -> 1
    b = load_dataset("sst", "train", data_root=sst_root, encoder=str(folder), limit=N_EMB, binary=True, progress=False)
    keep = ds.y != 2
    assert b.meta["cache_hit"] and b.classes == ["negative", "positive"]
    assert torch.equal(b.y, (ds.y[keep] >= 3).long()) and torch.equal(b.X, ds.X[keep])
    # the same encoder copied elsewhere has the same identity (content, not location)
    copy = sst_root / "enc_copy"
    shutil.copytree(folder, copy)
    assert encoder_identity(copy)["sha256"] == encoder_identity(folder)["sha256"]
    assert load_dataset("sst", "train", data_root=sst_root, encoder=str(copy), limit=N_EMB, progress=False).meta[
        "cache_hit"
    ]
    # another max_tokens is another cache entry: the encoder would be needed
    with pytest.raises(AssertionError, match="encoder loaded"):
        load_dataset("sst", "train", data_root=sst_root, encoder=str(folder), limit=N_EMB, max_tokens=8, progress=False)
    # a changed data file is another cache entry too
    p = sst_root / TRAIN
    p.write_text(p.read_text(encoding="utf-8").replace("(2 The)", "(2 A)", 1), encoding="utf-8")
    with pytest.raises(AssertionError, match="encoder loaded"):
        load_dataset("sst", "train", data_root=sst_root, encoder=str(folder), limit=N_EMB, progress=False)


def test_short_crop_and_mean_pool(sst_root):
    folder = minilm_folder()
    ds = load_dataset(
        "sst",
        "train",
        data_root=sst_root,
        encoder=str(folder),
        limit=24,
        max_tokens=8,
        pool="mean",
        cache=False,
        progress=False,
    )
    assert ds.X.shape == (24, 8, 384) and ds.meta["cache_path"] is None
    E = ds.X.reshape(24, 8, 384)
    assert torch.equal(E.abs().sum(2) > 0, torch.arange(8)[None] < ds.meta["n_words"][:, None])
