"""Dice: the paper's synthetic six-class image set (docs/math.md §8, paper §7.3), rendered with numpy.

The paper drew each image with R base graphics (``points``, ``lines``, ``polygon``) on a square
canvas whose axes both span [-1, 1], black on white. This module reproduces those drawing calls
analytically and vectorised over images and pixels (no per-pixel Python loops):

========  ===========================================================  =====================================
class     construction (R call)                                        parameters (``runif`` / ``sample``)
========  ===========================================================  =====================================
one       ``points(x, y, cex)``                                        x, y ∈ [-1, 1], cex ∈ [0.1, 1]
two       pips at (x, y) and (-x, -y), same cex                        x, y ∈ [-1, 1], cex ∈ [0.1, 1]
three     ``lines`` (x, y)–(-x, -y)                                    x, y ∈ [-1, 1], lwd ∈ [0.1, 2.5], lend
four      ``polygon`` (x, y), (-x, y), (-x, -y), (x, -y) (outline)     x, y ∈ [-1, 1], lwd ∈ [0.1, 1], lend
five      four's box plus a pip at (0, 0)                              x, y ∈ [0.2, 1], cex ∈ [0.1, 0.7],
                                                                       lwd ∈ [0.1, 1], lend
six       lines (x+dx, y+dy)–(-x+dx, -y+dy) and (x-dx, y-dy)–(-x-dx,   x, y ∈ [-0.9, 0.9], dx, dy ∈ [0.1, 0.8],
          -y-dy)                                                       lwd ∈ [0.1, 2.5], lend
========  ===========================================================  =====================================

``lend`` ∈ {0 round, 1 butt, 2 square} is drawn uniformly (R's ``sample``).

Rendering choices (the paper is silent; see also the module constants):

* **Device.** An R ``png()`` device of ``device_px`` × ``device_px`` pixels at R's default 72 dpi,
  the plot region filling the whole device (``mar = 0``, ``xaxs = yaxs = "i"``), so the canvas
  [-1, 1]² is the whole image. ``device_px`` defaults to the output ``size``: at the default
  32 × 32 (decision D10, docs/decisions.md) one output pixel is one device pixel. Rendering at another ``size`` with
  the same ``device_px`` gives the same picture at another resolution; changing ``device_px``
  changes how thick strokes and how big pips are relative to the canvas, as it would in R.
* **Units.** R's symbol size at ``cex = 1`` is 1/10 inch (``cra[1] · 0.5 · ipr`` with 12 pt text),
  and a circle symbol has radius ``0.375 × that`` (R's ``RADIUS``), i.e. 2.7 device pixels · cex.
  Line width follows R's Cairo devices: ``lwd = 1`` is 1/96 inch = 0.75 device pixels.
* **Pips.** ``pip="filled"`` (the default): a filled disc of radius
  ``0.375 · cex / 10 inch``, i.e. R's ``pch = 16``. ``pip="open"``: R's default ``pch = 1``, a
  circle outline of that radius stroked with ``lwd = 1``.
* **Lines.** ``lend = 0`` round caps (a capsule), ``1`` butt (a rectangle ending at the end points),
  ``2`` square (a rectangle extended by half the width beyond each end point).
* **Boxes.** ``polygon`` draws a *closed* path, so Cairo puts no caps on it: ``lend`` has no visible
  effect on a box and its corners are R's default round joins (``ljoin = 0``). ``lend`` is still
  drawn and recorded, as the paper says.
* **Anti-aliasing.** Each pixel's ink approximates the fraction of the pixel square covered by
  the shape (what Cairo's default anti-aliasing computes). Pips: the exact area of disc ∩ pixel
  square (closed form), evaluated on a small window around each pip. Strokes: the overlap of the
  pixel's unit interval with the stroke across its width, times the same along the stroke for
  butt/square ends; round caps use the distance to the segment. That is exact for an
  axis-parallel butt or square stroke on the pixel grid and approximate otherwise: against 64 × 64
  supersampling a pixel is off by at most 0.14 (thin oblique round-capped lines; ≤ 0.08 with
  butt/square ends), a stroke's total ink by ≤ 5 % at lwd ≥ 1.33, by up to 11 % for thinner lines
  and more for the thinnest, shortest ones; and two round caps of a 1.5-px line carry 2.17 px² of
  ink for their exact 1.77 px² (kept: an exact renderer would change every Dice image, and the
  committed Dice results were rendered with this one). Separate draw calls composite like opaque
  black over white with coverage alpha: ``ink = 1 − Π(1 − coverage)``; the four sides of one
  polygon are one path (union, ``max``).
* **Values.** Ink ∈ [0, 1] (decision D9: black on white rendered as ink = 1 on background 0),
  quantised to 8 bits like R's PNG output (``quantize=False`` keeps the exact coverage).
* **Split.** ``n_per_class`` images per class (20,000 in the paper); the first half of each class
  is the train split, the second half the test split (fixed; 60k/60k by default). Each split is
  shuffled by a permutation fixed by ``seed``.
* **Determinism.** Class ``k`` draws its parameters as one ``(n_per_class, 8)`` uniform matrix from
  ``numpy.random.default_rng(SeedSequence([seed, k]))`` (filled row by row), so the first ``m``
  images of a class are the same for every ``n_per_class ≥ m``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from ..store import write_npz
from .dataset import Dataset
from .registry import default_data_root, register

__all__ = [
    "DICE_CLASSES",
    "DICE_PARAM_NAMES",
    "DiceImages",
    "generate_dice",
    "render_dice",
    "dice_cache_path",
    "load_dice",
    "split_indices",
]

DICE_CLASSES = ["one", "two", "three", "four", "five", "six"]
#: Columns of the per-image parameter matrix (NaN where a class does not use a parameter).
DICE_PARAM_NAMES = ["x", "y", "cex", "lwd", "lend", "dx", "dy"]
#: Bumped whenever the rendering changes, so stale caches are not reused.
DICE_VERSION = 1

#: R: symbol size at cex = 1 is 1/10 inch; circle radius = 0.375 of it; 72 device pixels per inch.
_R_DPI = 72.0
_R_SYMBOL_INCH = 0.1
_R_RADIUS = 0.375
#: R's Cairo devices: lwd = 1 is 1/96 inch.
_R_LWD_INCH = 1.0 / 96.0


@dataclass
class DiceImages:
    """Rendered Dice images, class-major (all of class 0, then class 1, ...).

    Attributes:
        images: (N, size, size), uint8 ink·255 (``quantize=True``) or float32 ink in [0, 1];
            row 0 is the top of the canvas (y = 1), column 0 its left edge (x = -1).
        labels: (N,) int64 class indices into :data:`DICE_CLASSES`.
        params: (N, 7) float64, columns :data:`DICE_PARAM_NAMES`.
        config: the generator settings.
    """

    images: np.ndarray
    labels: np.ndarray
    params: np.ndarray
    config: dict = field(default_factory=dict)

    def ink(self) -> np.ndarray:
        """Images as float64 ink in [0, 1]."""
        if self.images.dtype == np.uint8:
            return self.images.astype(np.float64) / 255.0
        return self.images.astype(np.float64)


# --------------------------------------------------------------------------------------------
# Parameters


def _class_params(k: int, n: int, seed: int) -> np.ndarray:
    """Parameters of the first ``n`` images of class ``k`` (rows of :data:`DICE_PARAM_NAMES`)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(k)]))
    u = rng.random((n, 8))  # row-major fill: prefix-stable in n
    p = np.full((n, len(DICE_PARAM_NAMES)), np.nan)

    def unif(col: int, lo: float, hi: float) -> np.ndarray:
        return lo + (hi - lo) * u[:, col]

    lend = np.minimum(np.floor(3.0 * u[:, 4]), 2.0)  # sample(0:2, 1)
    name = DICE_CLASSES[k]
    if name in ("one", "two"):
        p[:, 0], p[:, 1], p[:, 2] = unif(0, -1, 1), unif(1, -1, 1), unif(2, 0.1, 1.0)
    elif name == "three":
        p[:, 0], p[:, 1], p[:, 3], p[:, 4] = unif(0, -1, 1), unif(1, -1, 1), unif(3, 0.1, 2.5), lend
    elif name == "four":
        p[:, 0], p[:, 1], p[:, 3], p[:, 4] = unif(0, -1, 1), unif(1, -1, 1), unif(3, 0.1, 1.0), lend
    elif name == "five":
        p[:, 0], p[:, 1] = unif(0, 0.2, 1.0), unif(1, 0.2, 1.0)
        p[:, 2], p[:, 3], p[:, 4] = unif(2, 0.1, 0.7), unif(3, 0.1, 1.0), lend
    elif name == "six":
        p[:, 0], p[:, 1] = unif(0, -0.9, 0.9), unif(1, -0.9, 0.9)
        p[:, 3], p[:, 4] = unif(3, 0.1, 2.5), lend
        p[:, 5], p[:, 6] = unif(5, 0.1, 0.8), unif(6, 0.1, 0.8)
    else:  # pragma: no cover
        raise AssertionError(name)
    return p


# --------------------------------------------------------------------------------------------
# Anti-aliased coverage primitives (all lengths in output pixels; a pixel is a unit square)


def _box_band(u: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Coverage of the band |coordinate| <= h by a unit pixel interval centred at ``u``
    (exact pixel-square coverage for axis-aligned strokes; approximate at an angle: module docstring).
    """
    return np.clip(np.minimum(u + 0.5, h) - np.maximum(u - 0.5, -h), 0.0, 1.0)


def _box_interval(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Coverage of the interval [a, b] by a unit pixel interval centred at ``t``."""
    return np.clip(np.minimum(t + 0.5, b) - np.maximum(t - 0.5, a), 0.0, 1.0)


def _disc_quadrant_area(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Exact area of {X <= a, Y <= b} inside the disc of radius r centred at the origin.

    The chord length at abscissa x is clip(b + s(x), 0, 2 s(x)) with s(x) = sqrt(r² − x²); it is
    integrated in closed form with S(x) = ∫ s = (x s(x) + r² asin(x/r)) / 2.
    """
    r2 = r * r

    def S(x):
        return 0.5 * (x * np.sqrt(np.maximum(r2 - x * x, 0.0)) + r2 * np.arcsin(np.clip(x / r, -1.0, 1.0)))

    a = np.clip(a, -r, r)
    bc = np.clip(b, -r, r)
    xb = np.sqrt(np.maximum(r2 - bc * bc, 0.0))  # where the line Y = b meets the circle
    hi = np.minimum(a, xb)
    inner = np.where(hi > -xb, bc * (hi + xb) + S(hi) - S(-xb), 0.0)  # |x| < xb: chord b + s(x)
    s_r = S(-r)
    outer = 2.0 * ((S(np.minimum(a, -xb)) - s_r) + np.where(a > xb, S(a) - S(xb), 0.0))  # |x| >= xb: 2 s(x) if b >= 0
    return inner + np.where(bc >= 0, outer, 0.0)


def _disc_pixel_area(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Exact area of the unit pixel centred at (dx, dy) (relative to the disc centre) inside the disc."""
    r = np.maximum(r, 1e-12)
    A = _disc_quadrant_area
    x0, x1, y0, y1 = dx - 0.5, dx + 0.5, dy - 0.5, dy + 0.5
    return np.clip(A(x1, y1, r) - A(x0, y1, r) - A(x1, y0, r) + A(x0, y0, r), 0.0, 1.0)


def _segment_frame(px, py, ax, ay, bx, by):
    """Along-coordinate t (from a), segment length L and perpendicular distance u of pixels."""
    dx, dy = bx - ax, by - ay
    L = np.sqrt(dx * dx + dy * dy)
    degenerate = L < 1e-9
    Ls = np.where(degenerate, 1.0, L)
    ex = np.where(degenerate, 1.0, dx / Ls)  # a zero-length segment is taken along +x
    ey = np.where(degenerate, 0.0, dy / Ls)
    rx, ry = px - ax, py - ay
    t = rx * ex + ry * ey
    u = np.abs(rx * ey - ry * ex)
    return t, np.where(degenerate, 0.0, L), u


def _stroke(px, py, ax, ay, bx, by, h, lend) -> np.ndarray:
    """Coverage of one stroked segment a–b of half-width h with line-end style ``lend``.

    Args: px, py: (1, P) pixel centres; the rest (B, 1) per image; lend: (B,) ints in {0, 1, 2}.
    """
    t, L, u = _segment_frame(px, py, ax, ay, bx, by)
    out = np.empty(np.broadcast_shapes(t.shape, u.shape), dtype=t.dtype)
    for style in (0, 1, 2):
        rows = np.nonzero(lend == style)[0]
        if rows.size == 0:
            continue
        tr, Lr, ur, hr = t[rows], L[rows], u[rows], h[rows]
        if style == 0:  # round: distance to the segment
            tc = np.clip(tr, 0.0, Lr)
            dist = np.sqrt(ur * ur + (tr - tc) ** 2)
            out[rows] = _box_band(dist, hr)
        elif style == 1:  # butt
            out[rows] = _box_band(ur, hr) * _box_interval(tr, 0.0 * Lr, Lr)
        else:  # square
            out[rows] = _box_band(ur, hr) * _box_interval(tr, -hr, Lr + hr)
    return out


def _capsule(px, py, ax, ay, bx, by, h) -> np.ndarray:
    t, L, u = _segment_frame(px, py, ax, ay, bx, by)
    tc = np.clip(t, 0.0, L)
    return _box_band(np.sqrt(u * u + (t - tc) ** 2), h)


def _pip(size: int, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, style: str, ring_h: float) -> np.ndarray:
    """Coverage (B, size²) of one pip per image: a filled disc of radius r (pch = 16), or a
    ring r ± ring_h (pch = 1). Exact pixel-square areas, computed on a window around each pip.

    Args: cx, cy, r: (B,) centre (column, row coordinates) and radius in output pixels.
    """
    B = cx.shape[0]
    out = np.zeros((B, size * size), dtype=np.float32)
    if B == 0:
        return out
    outer = r + (ring_h if style == "open" else 0.0)
    half = int(math.ceil(float(outer.max()))) + 1
    m = 2 * half
    j0 = np.floor(cx).astype(np.int64) - half + 1  # window columns j0 .. j0 + m - 1 cover cx ± outer
    i0 = np.floor(cy).astype(np.int64) - half + 1
    off = np.arange(m)
    jj = j0[:, None, None] + off[None, None, :]  # (B, 1, m)
    ii = i0[:, None, None] + off[None, :, None]  # (B, m, 1)
    dx = (jj + 0.5) - cx[:, None, None]
    dy = (ii + 0.5) - cy[:, None, None]
    rr = r[:, None, None]
    if style == "filled":
        cov = _disc_pixel_area(dx, dy, rr)
    else:
        cov = _disc_pixel_area(dx, dy, rr + ring_h) - _disc_pixel_area(dx, dy, np.maximum(rr - ring_h, 0.0))
    jj, ii = np.broadcast_arrays(jj, ii)
    valid = (jj >= 0) & (jj < size) & (ii >= 0) & (ii < size)
    b = np.broadcast_to(np.arange(B)[:, None, None], valid.shape)
    out[b[valid], (ii * size + jj)[valid]] = np.clip(cov, 0.0, 1.0)[valid]
    return out


def _over(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two separate draw calls: coverage alpha compositing of black over white."""
    return 1.0 - (1.0 - a) * (1.0 - b)


# --------------------------------------------------------------------------------------------
# Rendering


def render_dice(
    labels: np.ndarray,
    params: np.ndarray,
    *,
    size: int = 32,
    device_px: int | None = None,
    pip: str = "filled",
    chunk: int = 2048,
) -> np.ndarray:
    """Render images from class labels and parameter rows; returns float32 ink, (N, size, size).

    Args:
        labels: (N,) class indices into :data:`DICE_CLASSES`.
        params: (N, 7) rows of :data:`DICE_PARAM_NAMES` (as drawn by :func:`generate_dice`).
        size: output image side in pixels.
        device_px: side of the notional R device in pixels (72 dpi) that fixes how big pips and
            line widths are relative to the canvas; ``None`` = ``size``.
        pip: ``"filled"`` (R ``pch = 16``) or ``"open"`` (R ``pch = 1``).
        chunk: images rendered per vectorised batch.
    """
    if pip not in ("filled", "open"):
        raise ValueError(f"dice: pip must be 'filled' or 'open', got {pip!r}")
    size = int(size)
    if size < 1:
        raise ValueError(f"dice: size must be >= 1, got {size}")
    dev = float(device_px if device_px is not None else size)
    if dev <= 0:
        raise ValueError(f"dice: device_px must be > 0, got {device_px}")
    labels = np.asarray(labels)
    params = np.asarray(params, dtype=np.float64)
    n = labels.shape[0]
    out = np.zeros((n, size, size), dtype=np.float32)

    k = size / 2.0  # output pixels per canvas unit
    dev_to_out = size / dev  # output pixels per device pixel
    sym_r = _R_RADIUS * _R_SYMBOL_INCH * _R_DPI * dev_to_out  # pip radius per unit cex
    lwd_w = _R_LWD_INCH * _R_DPI * dev_to_out  # stroke width per unit lwd
    ring_h = 0.5 * lwd_w  # pch = 1 is stroked with lwd = 1

    c = np.arange(size, dtype=np.float32) + 0.5
    py_grid, px_grid = np.meshgrid(c, c, indexing="ij")
    px = px_grid.reshape(1, -1)
    py = py_grid.reshape(1, -1)

    def X(x):  # canvas x -> output column coordinate
        return ((x + 1.0) * k).astype(np.float32)[:, None]

    def Y(y):  # canvas y -> output row coordinate (row 0 at y = 1)
        return ((1.0 - y) * k).astype(np.float32)[:, None]

    for cls in range(len(DICE_CLASSES)):
        idx_all = np.nonzero(labels == cls)[0]
        for start in range(0, idx_all.size, chunk):
            idx = idx_all[start : start + chunk]
            p = params[idx]
            x, y, cex, lwd, lend, ddx, ddy = (p[:, j] for j in range(7))
            name = DICE_CLASSES[cls]
            r = sym_r * cex  # pip radius in output pixels (NaN for classes without pips)

            def pip_at(xc, yc, r=r):
                return _pip(size, (xc + 1.0) * k, (1.0 - yc) * k, r, pip, ring_h)

            if name in ("three", "four", "five", "six"):
                h = (0.5 * lwd_w * lwd).astype(np.float32)[:, None]
                le = lend.astype(np.int64)
            if name == "one":
                img = pip_at(x, y)
            elif name == "two":
                img = _over(pip_at(x, y), pip_at(-x, -y))
            elif name == "three":
                img = _stroke(px, py, X(x), Y(y), X(-x), Y(-y), h, le)
            elif name in ("four", "five"):
                corners = [(x, y), (-x, y), (-x, -y), (x, -y)]
                img = None
                for j in range(4):
                    (x0, y0), (x1, y1) = corners[j], corners[(j + 1) % 4]
                    cov = _capsule(px, py, X(x0), Y(y0), X(x1), Y(y1), h)
                    img = cov if img is None else np.maximum(img, cov)
                if name == "five":
                    zero = np.zeros_like(x)
                    img = _over(img, pip_at(zero, zero))
            else:  # six
                a = _stroke(px, py, X(x + ddx), Y(y + ddy), X(-x + ddx), Y(-y + ddy), h, le)
                b = _stroke(px, py, X(x - ddx), Y(y - ddy), X(-x - ddx), Y(-y - ddy), h, le)
                img = _over(a, b)
            out[idx] = np.clip(img, 0.0, 1.0).reshape(-1, size, size)
    return out


def generate_dice(
    n_per_class: int = 20000,
    size: int = 32,
    seed: int = 0,
    *,
    device_px: int | None = None,
    pip: str = "filled",
    quantize: bool = True,
) -> DiceImages:
    """Draw parameters and render ``n_per_class`` images of each of the six classes (class-major).

    Deterministic in (``n_per_class``, ``size``, ``seed``, ``device_px``, ``pip``, ``quantize``);
    the first ``m`` images of each class do not depend on ``n_per_class``.
    """
    if n_per_class < 1:
        raise ValueError(f"dice: n_per_class must be >= 1, got {n_per_class}")
    params = np.concatenate([_class_params(k, n_per_class, seed) for k in range(len(DICE_CLASSES))])
    labels = np.repeat(np.arange(len(DICE_CLASSES), dtype=np.int64), n_per_class)
    ink = render_dice(labels, params, size=size, device_px=device_px, pip=pip)
    images = np.rint(ink * 255.0).astype(np.uint8) if quantize else ink
    return DiceImages(
        images=images, labels=labels, params=params, config=_config(n_per_class, size, seed, device_px, pip, quantize)
    )


def _config(n_per_class, size, seed, device_px, pip, quantize) -> dict:
    return {
        "generator": "eoslab.dice",
        "version": DICE_VERSION,
        "n_per_class": int(n_per_class),
        "size": int(size),
        "seed": int(seed),
        "device_px": None if device_px is None else int(device_px),
        "pip": str(pip),
        "quantize": bool(quantize),
    }


def split_indices(n_per_class: int, split: str, seed: int) -> np.ndarray:
    """Indices (into the class-major arrays) of a split: the first half of every class is train,
    the second half test; each split is shuffled by a permutation fixed by ``seed``.
    """
    half = n_per_class // 2
    if split == "train":
        lo, hi = 0, half
    elif split == "test":
        lo, hi = half, n_per_class
    else:
        raise ValueError(f"dice: split must be 'train' or 'test', got {split!r}")
    idx = np.concatenate([k * n_per_class + np.arange(lo, hi) for k in range(len(DICE_CLASSES))])
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1000, 0 if split == "train" else 1]))
    return idx[rng.permutation(idx.size)]


def dice_cache_path(data_root: str | Path, config: dict) -> Path:
    """``<data_root>/dice/<sha256 of the generator settings>.npz``."""
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:20]
    return Path(data_root) / "dice" / f"{key}.npz"


def _save_atomic(path: Path, arrays: DiceImages) -> None:
    write_npz(
        path,
        compressed=True,
        images=arrays.images,
        labels=arrays.labels,
        params=arrays.params,
        config=np.array(json.dumps(arrays.config, sort_keys=True)),
    )


def _load_cached(path: Path, config: dict) -> DiceImages | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(str(z["config"]))
            if stored != config:
                return None
            return DiceImages(images=z["images"], labels=z["labels"], params=z["params"], config=stored)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None  # unreadable or partial cache: regenerate


def dice_arrays(
    data_root: str | Path | None = None,
    *,
    n_per_class: int = 20000,
    size: int = 32,
    seed: int = 0,
    device_px: int | None = None,
    pip: str = "filled",
    quantize: bool = True,
    cache: bool = True,
) -> tuple[DiceImages, Path | None, bool]:
    """All Dice images (both splits), from the on-disk cache when present.

    Returns ``(images, cache_path or None, cache_hit)``.
    """
    config = _config(n_per_class, size, seed, device_px, pip, quantize)
    if not cache:
        return generate_dice(n_per_class, size, seed, device_px=device_px, pip=pip, quantize=quantize), None, False
    root = Path(data_root) if data_root is not None else default_data_root()
    path = dice_cache_path(root, config)
    if path.exists():
        got = _load_cached(path, config)
        if got is not None:
            return got, path, True
    arrays = generate_dice(n_per_class, size, seed, device_px=device_px, pip=pip, quantize=quantize)
    try:
        _save_atomic(path, arrays)
    except OSError as e:
        raise DatasetError(
            f"dice: cannot write the cache file {path}: {e}; pass cache=False or choose another --data-root"
        ) from e
    return arrays, path, False


@register("dice")
def load_dice(
    split: str = "train",
    data_root: Path | None = None,
    *,
    size: int = 32,
    seed: int = 0,
    n_per_class: int = 20000,
    device_px: int | None = None,
    pip: str = "filled",
    quantize: bool = True,
    cache: bool = True,
) -> Dataset:
    """The Dice dataset (docs/math.md §8): X (N, 1, size, size) float64 ink in [0, 1], y (N,) int64.

    ``split`` is ``"train"`` or ``"test"`` (each 3·n_per_class images: 60,000 by default).
    Generated once and cached at ``<data_root>/dice/<hash>.npz``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"dice: split must be 'train' or 'test', got {split!r}")
    t0 = time.perf_counter()
    arrays, path, hit = dice_arrays(
        data_root,
        n_per_class=n_per_class,
        size=size,
        seed=seed,
        device_px=device_px,
        pip=pip,
        quantize=quantize,
        cache=cache,
    )
    idx = split_indices(n_per_class, split, seed)
    imgs = arrays.images[idx].reshape(idx.size, 1, size, size)
    X = torch.from_numpy(imgs).to(torch.float64)
    if imgs.dtype == np.uint8:
        X /= 255.0
    y = torch.from_numpy(arrays.labels[idx].astype(np.int64))
    cfg = arrays.config
    return Dataset(
        X=X,
        y=y,
        classes=list(DICE_CLASSES),
        name="dice",
        source=f"eoslab dice generator v{DICE_VERSION} (seed={seed}, n_per_class={n_per_class}, size={size})"
        + (f", cache {path}" if path is not None else ""),
        meta={
            "image_shape": (1, int(size), int(size)),
            "generator": cfg,
            "cache_path": str(path) if path is not None else None,
            "cache_hit": hit,
            "indices": idx,
            "params": arrays.params[idx],
            "param_names": list(DICE_PARAM_NAMES),
            "load_seconds": time.perf_counter() - t0,
        },
    )
