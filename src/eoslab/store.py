"""Files written atomically: Parquet tables, JSON, TOML and safetensors (docs/rundir.md contracts).

Every writer serialises to bytes, writes them to a temporary file ``.NAME.XXXXXXXX.tmp`` beside
the target, fsyncs it, then ``os.replace``s it over the target, so a reader (or a resumed run)
never sees a half-written file. Files get mode 0666 less the umask (0644 under the usual 022).
A process killed between the two steps leaves the temporary file behind; :func:`remove_leftovers`
removes such files (the holder of a folder's lock calls it on start).

A failed write (a read-only folder, a full disk, a file-size limit) raises :class:`WriteError`,
whose one-line message names the file and the fix. The ``*_bytes`` serialisers and ``parse_*``
readers let a caller hash exactly the bytes it writes or reads (:mod:`eoslab.rundir` checksums).
Tables are read, and turned into pandas frames (:func:`to_frame`), on the calling thread:
pyarrow's thread pools abort a process at exit now and then ("terminate called without an
active exception", apache/arrow#34314; sweeps exited with SIGABRT after their work). Opening a
Parquet file by path, ``pq.read_table`` even with ``use_threads=False``, and a plain
``to_pandas()`` all start Arrow pool threads; ``ParquetFile(BufferReader(bytes))`` read with
``use_threads=False`` starts none (pyarrow 26; ``tests/test_faults.py`` checks it).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import SafetensorError
from safetensors.torch import load, save

from .errors import EoslabError

#: Name of the temporary file of an atomic write of ``NAME``: ``.NAME.`` + 8 random characters + ``.tmp``.
_TMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")

#: The process's umask (read once: reading it means setting it), applied to every file written.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

_FIXES: dict[int | None, str] = {
    errno.ENOSPC: "the disk is full: free some space and rerun (an interrupted run resumes)",
    errno.EDQUOT: "the disk quota is used up: free some space and rerun (an interrupted run resumes)",
    errno.EFBIG: "the file-size limit was hit (ulimit -f): raise it and rerun (an interrupted run resumes)",
    errno.EROFS: "the folder is read-only: make it writable or write somewhere else (--out)",
    errno.EACCES: "no permission to write there: make the folder writable or write somewhere else (--out)",
    errno.EPERM: "no permission to write there: make the folder writable or write somewhere else (--out)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path (--out)",
    errno.EEXIST: "a file is in the way of a folder: choose another path (--out)",
}


class WriteError(EoslabError, OSError):
    """A file could not be written; the message names the file, the cause and the fix."""

    def __init__(self, path: str | Path, cause: OSError) -> None:
        code = cause.errno
        if code is None:  # pyarrow's IO errors carry the errno only in their text
            m = re.search(r"errno (\d+)", str(cause), re.IGNORECASE)
            code = int(m.group(1)) if m else None
        reason = os.strerror(code) if code else str(cause)
        fix = _FIXES.get(code, "check the folder and rerun")
        super().__init__(code, f"cannot write {path}: {reason}; {fix}")
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.strerror)  # the message given to OSError.__init__


def tmp_target(path: str | Path) -> str | None:
    """The name a leftover temporary file ``.NAME.XXXXXXXX.tmp`` was to replace, else None."""
    m = _TMP.match(Path(path).name)
    return m.group("name") if m else None


def remove_leftovers(folder: str | Path, names: set[str] | None = None) -> list[Path]:
    """Remove the temporary files of interrupted atomic writes in ``folder`` (only those that were
    to replace one of ``names``, when given). Call it only while holding the folder's lock, so no
    write in progress loses its file. Returns the removed paths.
    """
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        target = tmp_target(p)
        if target is not None and (names is None or target in names) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def stage_bytes(data: bytes, path: str | Path) -> Path:
    """Write ``data`` to a fsynced temporary file beside ``path`` and return it; the caller
    ``os.replace``s it over ``path`` (or unlinks it). Raises :class:`WriteError`.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp_path = Path(tmp)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from other readers
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)
        raise WriteError(path, e) from None
    return tmp_path


def write_bytes(data: bytes, path: str | Path) -> None:
    """Write ``data`` to ``path`` atomically."""
    tmp = stage_bytes(data, path)
    try:
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(path, e) from None


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------ serialisers
def parquet_bytes(table: pa.Table) -> bytes:
    """A Parquet file's bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def json_bytes(obj: Any) -> bytes:
    """Indented, key-sorted JSON (NaN/inf written as null)."""
    return (json.dumps(_finite(obj), indent=2, sort_keys=True) + "\n").encode()


def safetensors_bytes(tensors: dict, metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file's bytes (metadata values must be strings)."""
    return save(tensors, metadata=metadata)


def parse_parquet(data: bytes, source: str | Path = "<bytes>") -> pa.Table:
    """A Parquet file's table from its bytes (OSError naming ``source`` if it is not one)."""
    try:
        return pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
    except (OSError, pa.ArrowException) as e:
        raise OSError(f"cannot read Parquet file {source}: {e}") from None


def parse_json(data: bytes, source: str | Path = "<bytes>") -> Any:
    """A JSON file's object from its bytes (ValueError naming ``source`` if it is not JSON)."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{source}: not valid JSON ({e})") from None


def parse_safetensors(data: bytes, source: str | Path = "<bytes>") -> tuple[dict, dict[str, str]]:
    """(tensors, metadata) of a safetensors file's bytes (ValueError naming ``source`` if malformed)."""
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise ValueError("__metadata__ is not a table")
        return load(data), meta
    except (struct.error, ValueError, UnicodeDecodeError, AttributeError, SafetensorError) as e:
        raise ValueError(f"{source}: not a readable safetensors file ({e})") from None


# ------------------------------------------------------------------------------ writers and readers
def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write a Parquet file atomically."""
    write_bytes(parquet_bytes(table), path)


def read_parquet(path: str | Path) -> pa.Table:
    """Read a Parquet file (an error names the file if it is missing or corrupt)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise OSError(f"cannot read Parquet file {path}: {e}") from e
    return parse_parquet(data, path)


def to_frame(table: pa.Table):
    """``table`` as a pandas DataFrame, converted on the calling thread (see the module docstring)."""
    return table.to_pandas(use_threads=False)


def write_npz(path: str | Path, *, compressed: bool = False, **arrays) -> None:
    """Write a NumPy ``.npz`` archive atomically."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    write_bytes(buf.getvalue(), path)


def write_text(text: str, path: str | Path) -> None:
    """Write a text file atomically."""
    write_bytes(text.encode(), path)


def write_json(obj: Any, path: str | Path) -> None:
    """Write JSON atomically (NaN/inf written as null)."""
    write_bytes(json_bytes(obj), path)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    with open(path) as fh:
        return json.load(fh)
