"""UEA/UCR time-series archive (``.ts`` files), AtrialFibrillation windows (docs/math.md §8, D11 in docs/decisions.md).

:func:`parse_ts` reads any archive classification problem::

    # comments
    @problemName AtrialFibrillation
    @timeStamps false
    @missing false
    @univariate false
    @dimensions 2
    @equalLength true
    @seriesLength 640
    @classLabel true n s t
    @data
    v,v,v,...:v,v,v,...:n          <- one case per line: dim0 values : dim1 values : label

Values are comma separated; ``?`` (or ``NaN``) is a missing value and becomes NaN. Series of unequal
length are right-padded with NaN to the longest one (the lengths are returned). Files with
``@timeStamps true`` or regression targets are refused with a :class:`DatasetError`.

Loaders (files at ``<data_root>/<Problem>/<Problem>_{TRAIN,TEST}.ts``):

* ``uea`` (option ``problem=...``): one row per case, X = the series (``channels × length``);
  optional ``window=``/``stride=`` cut every case into windows instead.
* ``atrial_fibrillation``: decision D11 — windows of length 128, stride 1, start offsets
  ``0 .. L − 128 − 1`` (= 0..511 for L = 640) per series: 15 · 512 = 7,680 train windows, each
  2 × 128 values (the MLP flattens them channel-major to 256). A window's label is its series'
  label. Raw values
  (D9). Note that the last possible start (L − window) is excluded, as D11 requires
  (``include_last=True`` adds it, giving torchcast's 15 · 513).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from .dataset import Dataset
from .registry import default_data_root, register

__all__ = [
    "TsData",
    "parse_ts",
    "read_ts",
    "ts_path",
    "window_offsets",
    "make_windows",
    "load_uea",
    "load_atrial_fibrillation",
]


@dataclass
class TsData:
    """A parsed ``.ts`` file.

    Attributes:
        X: (cases, channels, length) float64, NaN for missing values and right padding.
        labels: (cases,) int64 indices into ``classes``.
        classes: class labels in the order of the ``@classLabel`` header (else first appearance).
        lengths: (cases,) int64 series length of each case (max over channels).
        header: the ``@`` fields as strings (lower-case keys).
        path: the file read.
    """

    X: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    lengths: torch.Tensor
    header: dict = field(default_factory=dict)
    path: str = ""


def _bool(value: str, where: str, key: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "false"):
        return v == "true"
    raise DatasetError(f"{where}: @{key} must be 'true' or 'false', got {value!r}")


def _parse_values(text: str, where: str, dim: int) -> list[float]:
    text = text.strip()
    if not text:
        return []
    out = []
    for j, tok in enumerate(text.split(",")):
        t = tok.strip()
        if t == "?" or t.lower() == "nan":
            out.append(math.nan)
            continue
        try:
            out.append(float(t))
        except ValueError:
            raise DatasetError(
                f"{where}: dimension {dim}, value {j + 1}: {t!r} is not a number "
                f"(expected comma-separated numbers, '?' for missing)"
            ) from None
    return out


def parse_ts(text: str, *, source: str = "<string>") -> TsData:
    """Parse the text of a ``.ts`` file; errors name ``source:line`` and what was expected."""
    header: dict[str, str] = {}
    class_labels: list[str] | None = None
    has_labels = True
    in_data = False
    cases: list[list[list[float]]] = []
    case_labels: list[str] = []
    n_dims: int | None = None
    want_len: int | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{source}:{lineno}"
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DatasetError(
                    f"{where}: expected a '@' header line, a '#' comment or '@data' before the data, got {line[:40]!r}"
                )
            key, _, value = line[1:].partition(" ")
            key = key.lower()
            value = value.strip()
            if key == "data":
                in_data = True
                if "dimensions" in header:
                    try:
                        n_dims = int(header["dimensions"])
                    except ValueError:
                        raise DatasetError(
                            f"{source}: @dimensions must be an integer, got {header['dimensions']!r}"
                        ) from None
                    if n_dims < 1:
                        raise DatasetError(f"{source}: @dimensions must be >= 1, got {n_dims}")
                elif "univariate" in header and _bool(header["univariate"], source, "univariate"):
                    n_dims = 1
                if (
                    "equallength" in header
                    and _bool(header["equallength"], source, "equalLength")
                    and "serieslength" in header
                ):
                    try:
                        want_len = int(header["serieslength"])
                    except ValueError:
                        raise DatasetError(
                            f"{source}: @seriesLength must be an integer, got {header['serieslength']!r}"
                        ) from None
                continue
            if key == "classlabel":
                parts = value.split()
                if not parts:
                    raise DatasetError(f"{where}: @classLabel needs 'true <labels...>' or 'false'")
                has_labels = _bool(parts[0], where, "classLabel")
                if has_labels:
                    if len(parts) < 2:
                        raise DatasetError(f"{where}: @classLabel true must list the class labels")
                    class_labels = parts[1:]
            elif key == "timestamps" and _bool(value, where, "timeStamps"):
                raise DatasetError(
                    f"{where}: @timeStamps true is not supported (expected plain comma-separated values)"
                )
            elif key == "targetlabel" and value and _bool(value.split()[0], where, "targetLabel"):
                raise DatasetError(
                    f"{where}: regression problems (@targetLabel true) are not supported; expected @classLabel true"
                )
            header[key] = value
            continue
        # data line
        parts = line.split(":")
        if has_labels:
            if len(parts) < 2:
                raise DatasetError(f"{where}: expected 'dim0 values : ... : label', found no ':' separator")
            label = parts[-1].strip()
            dims_txt = parts[:-1]
        else:
            label, dims_txt = "", parts
        if n_dims is None:
            n_dims = len(dims_txt)
        if len(dims_txt) != n_dims:
            raise DatasetError(
                f"{where}: expected {n_dims} dimension(s) then {'a label' if has_labels else 'nothing'} "
                f"separated by ':', found {len(dims_txt)} dimension(s)"
            )
        if has_labels:
            if not label:
                raise DatasetError(f"{where}: missing class label after the last ':'")
            if class_labels is not None and label not in class_labels:
                raise DatasetError(
                    f"{where}: class label {label!r} is not one of the @classLabel labels {class_labels}"
                )
        dims = [_parse_values(t, where, d) for d, t in enumerate(dims_txt)]
        for d, vals in enumerate(dims):
            if not vals:
                raise DatasetError(f"{where}: dimension {d} is empty; expected comma-separated numbers")
        cases.append(dims)
        case_labels.append(label)
        if want_len is not None:
            for d, vals in enumerate(dims):
                if len(vals) != want_len:
                    raise DatasetError(
                        f"{where}: dimension {d} has {len(vals)} values; expected @seriesLength {want_len}"
                    )
    if not in_data:
        raise DatasetError(f"{source}: no '@data' line; expected a .ts header ending in @data")
    if not cases:
        raise DatasetError(f"{source}: no cases after '@data'")
    assert n_dims is not None  # set by the first case
    if not has_labels:
        raise DatasetError(f"{source}: @classLabel false: unlabelled files cannot make a classification dataset")
    classes = class_labels if class_labels is not None else list(dict.fromkeys(case_labels))
    index = {c: i for i, c in enumerate(classes)}
    length = max(len(v) for dims in cases for v in dims)
    X = np.full((len(cases), n_dims, length), np.nan)
    lengths = np.empty(len(cases), dtype=np.int64)
    for i, dims in enumerate(cases):
        lengths[i] = max(len(v) for v in dims)
        for d, vals in enumerate(dims):
            X[i, d, : len(vals)] = vals
    y = np.array([index[lab] for lab in case_labels], dtype=np.int64)
    return TsData(
        X=torch.from_numpy(X),
        labels=torch.from_numpy(y),
        classes=list(classes),
        lengths=torch.from_numpy(lengths),
        header=header,
        path=source,
    )


def read_ts(path: str | Path) -> TsData:
    """Read and parse one ``.ts`` file (DatasetError if missing or malformed)."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"time-series file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DatasetError(f"{p}: cannot read ({e})") from e
    return parse_ts(text, source=str(p))


def ts_path(data_root: str | Path, problem: str, split: str) -> Path:
    """``<data_root>/<problem>/<problem>_{TRAIN,TEST}.ts``; ``problem`` must be a plain name (letters,
    digits, ``_ . -``, not starting with a dot), so the path cannot leave the data root.
    """
    if split not in ("train", "test"):
        raise ValueError(f"uea: split must be 'train' or 'test', got {split!r}")
    if not isinstance(problem, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", problem):
        raise ValueError(
            f"uea: problem must be a UEA problem name such as 'AtrialFibrillation' (letters, digits, _ . -; "
            f"a folder under the data root), got {problem!r}"
        )
    return Path(data_root) / problem / f"{problem}_{split.upper()}.ts"


def window_offsets(length: int, window: int, stride: int = 1, *, include_last: bool = False) -> np.ndarray:
    """Start offsets of the windows of one series: ``range(0, length − window [+1], stride)``.

    With ``include_last=False`` (D11) the final start ``length − window`` is left out, so a 640-long
    series with window 128 gives offsets 0..511.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1 (got {window}, {stride})")
    if window > length:
        raise ValueError(f"window {window} is longer than the series ({length})")
    stop = length - window + (1 if include_last else 0)
    return np.arange(0, stop, stride, dtype=np.int64)


def make_windows(
    X: torch.Tensor, labels: torch.Tensor, window: int, stride: int = 1, *, include_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut (cases, channels, length) into windows, series-major then offset.

    Returns ``(windows (N, channels, window), labels (N,), origin (N, 2) = (case index, start offset))``.
    """
    cases, channels, length = X.shape
    offs = torch.from_numpy(window_offsets(length, window, stride, include_last=include_last))
    w = X.unfold(2, window, stride)  # (cases, channels, n_all, window)
    w = w[:, :, : offs.numel()]  # offsets 0, stride, ... (drop the last one unless include_last)
    n = offs.numel()
    W = w.permute(0, 2, 1, 3).reshape(cases * n, channels, window).contiguous()
    Y = labels.repeat_interleave(n)
    origin = torch.stack([torch.arange(cases).repeat_interleave(n), offs.repeat(cases)], dim=1)
    return W, Y, origin


def _missing(problem: str, path: Path, root: Path) -> DatasetError:
    return DatasetError(
        f"{problem}: file not found: {path}. Put the UEA archive's {problem}_TRAIN.ts and {problem}_TEST.ts "
        f"in {root / problem}/ (from timeseriesclassification.com), or point --data-root / $EOSLAB_DATA at a folder "
        f"holding {problem}/"
    )


@register("uea")
def load_uea(
    split: str = "train",
    data_root: Path | None = None,
    *,
    problem: str | None = None,
    window: int | None = None,
    stride: int = 1,
    include_last: bool = False,
) -> Dataset:
    """Any UEA/UCR classification problem, one row per case (or per window if ``window`` is set).

    X is float64, (cases, channels, length) (or (windows, channels, window)); missing values stay NaN.
    """
    if not problem:
        raise ValueError("uea: pass problem=NAME (e.g. problem='AtrialFibrillation')")
    root = Path(data_root) if data_root is not None else default_data_root()
    path = ts_path(root, problem, split)
    if not path.is_file():
        raise _missing(problem, path, root)
    ts = read_ts(path)
    cases, channels, length = ts.X.shape
    meta = {
        "problem": problem,
        "channels": channels,
        "series_length": length,
        "cases": cases,
        "header": ts.header,
        "lengths": ts.lengths,
    }
    if window is None:
        X, y = ts.X.clone(), ts.labels.clone()
        meta["shape"] = (channels, length)
    else:
        X, y, origin = make_windows(ts.X, ts.labels, int(window), int(stride), include_last=include_last)
        meta.update(
            {
                "window": int(window),
                "stride": int(stride),
                "include_last": include_last,
                "origin": origin,
                "shape": (channels, int(window)),
            }
        )
    name = "uea" if problem != "AtrialFibrillation" or window is None else "atrial_fibrillation"
    return Dataset(X=X, y=y, classes=ts.classes, name=name, source=str(path), meta=meta)


@register("atrial_fibrillation")
def load_atrial_fibrillation(
    split: str = "train",
    data_root: Path | None = None,
    *,
    window: int = 128,
    stride: int = 1,
    include_last: bool = False,
) -> Dataset:
    """AtrialFibrillation windows (D11): X (7680, 2, 128) float64 raw values for the train split."""
    ds = load_uea(
        split, data_root, problem="AtrialFibrillation", window=window, stride=stride, include_last=include_last
    )
    ds.name = "atrial_fibrillation"
    return ds
