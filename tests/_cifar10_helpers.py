"""Tiny CIFAR-10 files in the official layouts (binary and pickle, folder and tar.gz), shared by
the CIFAR-10 and data-command tests (not a test module).
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from eoslab.data.cifar10 import BIN_DIR, BIN_TAR, CIFAR10_CLASSES, PY_DIR, PY_TAR

PER_BATCH = 3  # images per tiny batch


def tiny_batch(seed: int, n: int = PER_BATCH):
    """(pixels (n, 3072) uint8, labels (n,)) drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    return pixels, labels


def all_batches():
    """{file stem: (pixels, labels)} for data_batch_1..5 and test_batch."""
    out = {f"data_batch_{i}": tiny_batch(i) for i in range(1, 6)}
    out["test_batch"] = tiny_batch(99, 4)
    return out


def bin_bytes(pixels, labels) -> bytes:
    """A batch in the binary layout: one label byte, then 3072 pixel bytes, per record."""
    rec = np.concatenate([labels.astype(np.uint8)[:, None], pixels], axis=1)
    return rec.tobytes()


def py_bytes(pixels, labels, name: str) -> bytes:
    """A batch in the pickle layout."""
    # the official files are Python 2 pickles of dicts with byte-string keys
    d = {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": pixels,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    return pickle.dumps(d, protocol=2)


def meta_py() -> bytes:
    """``batches.meta`` of the pickle layout."""
    return pickle.dumps(
        {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072},
        protocol=2,
    )


def official_files(fmt: str) -> dict[str, bytes]:
    """{file name: bytes} of the whole set in the ``"bin"`` or ``"py"`` layout."""
    files = {}
    for stem, (pix, lab) in all_batches().items():
        if fmt == "bin":
            files[f"{stem}.bin"] = bin_bytes(pix, lab)
        else:
            files[stem] = py_bytes(pix, lab, stem)
    if fmt == "bin":
        files["batches.meta.txt"] = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode()
    else:
        files["batches.meta"] = meta_py()
    return files


def write_cifar10(root: Path, fmt: str, container: str, files: dict[str, bytes] | None = None) -> Path:
    """Write ``files`` (default: :func:`official_files`) under ``root`` as the official folder
    (``container="dir"``) or tar.gz; returns the folder or archive.
    """
    files = official_files(fmt) if files is None else files
    sub = BIN_DIR if fmt == "bin" else PY_DIR
    if container == "dir":
        d = root / sub
        d.mkdir(parents=True)
        for name, data in files.items():
            (d / name).write_bytes(data)
        return d
    path = root / (BIN_TAR if fmt == "bin" else PY_TAR)
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{sub}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path
