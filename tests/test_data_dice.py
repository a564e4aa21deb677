"""Dice generator (docs/math.md §8 / paper §7.3): per-class geometry, determinism, cache, timing."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from eoslab.data import load_dataset
from eoslab.data.dice import (
    DICE_CLASSES,
    DICE_PARAM_NAMES,
    _stroke,
    dice_arrays,
    dice_cache_path,
    generate_dice,
    render_dice,
    split_indices,
)

N_SMALL = 150  # images per class for the statistics tests


@pytest.fixture(scope="module")
def small():
    return generate_dice(N_SMALL, 32, seed=3)


def _class(d, name):
    k = DICE_CLASSES.index(name)
    m = d.labels == k
    return d.ink()[m], d.params[m]


def _one(params, name, **kw):
    """Render a single image of class ``name`` with the given parameter values."""
    p = np.full((1, len(DICE_PARAM_NAMES)), np.nan)
    for key, v in kw.items():
        p[0, DICE_PARAM_NAMES.index(key)] = v
    return render_dice(np.array([DICE_CLASSES.index(name)]), p, **params)[0].astype(np.float64)


def test_parameter_ranges_follow_the_paper(small):
    col = {n: i for i, n in enumerate(DICE_PARAM_NAMES)}
    ranges = {
        "one": {"x": (-1, 1), "y": (-1, 1), "cex": (0.1, 1)},
        "two": {"x": (-1, 1), "y": (-1, 1), "cex": (0.1, 1)},
        "three": {"x": (-1, 1), "y": (-1, 1), "lwd": (0.1, 2.5), "lend": (0, 2)},
        "four": {"x": (-1, 1), "y": (-1, 1), "lwd": (0.1, 1), "lend": (0, 2)},
        "five": {"x": (0.2, 1), "y": (0.2, 1), "cex": (0.1, 0.7), "lwd": (0.1, 1), "lend": (0, 2)},
        "six": {
            "x": (-0.9, 0.9),
            "y": (-0.9, 0.9),
            "dx": (0.1, 0.8),
            "dy": (0.1, 0.8),
            "lwd": (0.1, 2.5),
            "lend": (0, 2),
        },
    }
    for name, rr in ranges.items():
        _, p = _class(small, name)
        for key, (lo, hi) in rr.items():
            v = p[:, col[key]]
            assert np.all((v >= lo) & (v <= hi)), (name, key)
            assert v.max() - v.min() > 0.5 * (hi - lo), (name, key)  # actually spread over the range
        unused = set(DICE_PARAM_NAMES) - set(rr)
        for key in unused:
            assert np.all(np.isnan(p[:, col[key]])), (name, key)
        if "lend" in rr:
            assert set(np.unique(p[:, col["lend"]])) == {0.0, 1.0, 2.0}


def test_values_shape_and_range(small):
    assert small.images.shape == (6 * N_SMALL, 32, 32) and small.images.dtype == np.uint8
    ink = small.ink()
    assert ink.min() == 0.0 and ink.max() == 1.0
    # every image has some ink (thin lines are faint but present) and a mostly empty background
    per_image = ink.reshape(len(ink), -1)
    assert np.all(per_image.max(axis=1) > 0)
    assert np.median((per_image > 0).mean(axis=1)) < 0.25


def test_one_is_a_single_blob(small):
    ink, p = _class(small, "one")
    for img in ink:
        _, n = ndi.label(img > 0)
        assert n == 1


def test_two_is_two_blobs_point_symmetric(small):
    ink, p = _class(small, "two")
    for img, row in zip(ink, p):
        x, y, cex = row[0], row[1], row[2]
        # pips are at (x, y) and (-x, -y): point symmetry about the centre, up to the 8-bit rounding
        assert np.abs(img - img[::-1, ::-1]).max() <= 1 / 255 + 1e-9
        r_px = 2.7 * cex  # pip radius in pixels at 32 px (R: 0.375 · cex/10 inch at 72 dpi)
        if np.hypot(x, y) * 16 > r_px + 2 and max(abs(x), abs(y)) < 0.95:
            _, n = ndi.label(img > 0)
            assert n == 2, (x, y, cex)


def test_three_and_six_are_point_symmetric_lines(small):
    for name in ("three", "six"):
        ink, p = _class(small, name)
        for img in ink:
            assert np.abs(img - img[::-1, ::-1]).max() <= 1 / 255 + 1e-9, name
    ink, p = _class(small, "three")
    for img in ink:  # a line through the centre: one component
        _, n = ndi.label(img > 0, structure=np.ones((3, 3)))
        assert n == 1


def test_six_is_two_parallel_lines():
    # lines centred at ±(dx, dy) = ±(0.5, 0), direction (0.2, 0.6): two separate components, one each side
    img = _one({"size": 32}, "six", x=0.2, y=0.6, dx=0.5, dy=0.0, lwd=2.5, lend=1.0)
    lab, n = ndi.label(img > 0, structure=np.ones((3, 3)))
    assert n == 2
    cols = [np.nonzero(lab == k)[1].mean() for k in (1, 2)]
    assert min(cols) < 16 < max(cols)
    assert np.abs(img - img[::-1, ::-1]).max() < 1e-5


def test_four_is_a_box_outline_symmetric_about_both_axes(small):
    ink, p = _class(small, "four")
    for img, row in zip(ink, p):
        x, y = abs(row[0]), abs(row[1])
        tol = 1 / 255 + 1e-9
        assert np.abs(img - img[:, ::-1]).max() <= tol  # mirror in x
        assert np.abs(img - img[::-1, :]).max() <= tol  # mirror in y
        if x < 0.8 and y < 0.8 and x > 0.35 and y > 0.35:
            # an outline: the centre of the box is empty, ink on the box edges
            assert img[15:17, 15:17].max() == 0
            col = int(round((1 + x) * 16 - 0.5))
            assert img[14:18, col - 1 : col + 2].max() > 0


def test_five_has_ink_at_the_centre_and_a_box(small):
    ink, p = _class(small, "five")
    for img in ink[: len(p)]:
        # the centre pip: cex >= 0.1 is a disc of area >= π(0.27 px)² ≈ 0.23 px² on the 4 centre pixels
        assert img[15:17, 15:17].sum() > 0.12
        assert np.abs(img - img[:, ::-1]).max() <= 1 / 255 + 1e-9
        assert np.abs(img - img[::-1, :]).max() <= 1 / 255 + 1e-9
    # "four" with |x|, |y| >= 0.2 never has centre ink: the pip is what tells five from four
    four, p4 = _class(small, "four")
    big = (np.abs(p4[:, 0]) > 0.3) & (np.abs(p4[:, 1]) > 0.3)
    assert np.all(four[big][:, 15:17, 15:17].max(axis=(1, 2)) == 0)


def test_pip_area_matches_r_symbol_size():
    # filled pip (pch = 16) radius 0.375 · cex · 7.2 px at a 32-px device: ink mass = π r²
    for cex in (0.1, 0.5, 1.0):
        img = _one({"size": 32}, "one", x=0.0, y=0.0, cex=cex)
        r = 0.375 * cex * 7.2
        assert img.sum() == pytest.approx(np.pi * r * r, rel=0.02, abs=0.01)
    # rendering at 4x the resolution with the same device keeps the geometry: mass scales by 16
    hi = _one({"size": 128, "device_px": 32}, "one", x=0.1, y=-0.2, cex=0.8)
    lo = _one({"size": 32}, "one", x=0.1, y=-0.2, cex=0.8)
    assert hi.sum() / 16 == pytest.approx(lo.sum(), rel=0.02)


def test_line_ends_and_width():
    # lwd 2 = 1.5 px wide (Cairo: lwd 1 = 1/96 inch at 72 dpi); a horizontal line from x=-0.5 to 0.5 (16 px)
    kw = dict(x=-0.5, y=0.0, lwd=2.0)
    masses = {}
    for lend in (0, 1, 2):
        img = _one({"size": 32}, "three", lend=float(lend), **kw)
        masses[lend] = img.sum()
    w, L = 1.5, 16.0
    assert masses[1] == pytest.approx(w * L, abs=1e-9)  # butt: the rectangle, exact on the pixel grid
    assert masses[2] - masses[1] == pytest.approx(w * w, abs=1e-9)  # square: + w/2 at each end
    # round: two half discs are π w²/4 = 1.77 px²; drawing the caps from the distance to the segment
    # (module docstring) puts 2.17 px² there. Pinned, so that a change of the rendering is seen.
    assert masses[0] - masses[1] == pytest.approx(2.1716, abs=1e-3)


def _supersampled(inside, size=32, S=64):
    """The covered fraction of each pixel by S × S sample points: the independent reference."""
    o = (np.arange(S) + 0.5) / S - 0.5
    c = np.arange(size) + 0.5
    X = c[None, :, None, None] + o[None, None, None, :]
    Y = c[:, None, None, None] + o[None, None, :, None]
    return inside(X, Y).mean(axis=(2, 3))


def _stroke_shape(ax, ay, bx, by, h, lend):
    """``inside(X, Y)`` of a segment stroked with half-width h: capsule (0), rectangle (1, 2)."""
    L = np.hypot(bx - ax, by - ay)
    ex, ey = (bx - ax) / L, (by - ay) / L
    ext = h if lend == 2 else 0.0

    def inside(X, Y):
        t, u = (X - ax) * ex + (Y - ay) * ey, (X - ax) * ey - (Y - ay) * ex
        if lend == 0:
            return np.hypot(u, t - np.clip(t, 0.0, L)) <= h
        return (np.abs(u) <= h) & (t >= -ext) & (t <= L + ext)

    return inside


def test_strokes_against_their_supersampled_coverage():
    """A stroke's ink per pixel against its covered fraction (64 × 64 samples per pixel): exact for
    an axis-parallel butt or square stroke on the pixel grid; within 0.15 of it for oblique strokes
    and round caps (module docstring; measured worst 0.138: a thin oblique round-capped line).
    """
    px, py = np.meshgrid(np.arange(32) + 0.5, np.arange(32) + 0.5)
    segments = [(8.0, 16.0, 24.0, 16.0), (8.3, 10.2, 22.7, 25.1), (20.1, 6.4, 9.8, 23.9)]
    for h in (0.25, 0.75):
        for lend in (0, 1, 2):
            for seg in segments:
                ours = _stroke(
                    px.reshape(1, -1), py.reshape(1, -1), *(np.array([[v]]) for v in (*seg, h)), np.array([lend])
                ).reshape(32, 32)
                exact = _supersampled(_stroke_shape(*seg, h, lend))
                err = np.abs(ours - exact).max()
                if seg[1] == seg[3] and lend != 0:
                    assert err < 1e-12, (h, lend, seg)
                else:
                    assert err < 0.15, (h, lend, seg, err)


def test_box_lend_has_no_effect():
    # R's polygon() is a closed path: no caps, round joins
    imgs = [_one({"size": 32}, "four", x=0.5, y=0.4, lwd=1.0, lend=float(le)) for le in (0, 1, 2)]
    assert np.array_equal(imgs[0], imgs[1]) and np.array_equal(imgs[0], imgs[2])


def test_open_pips_option():
    filled = _one({"size": 32, "pip": "filled"}, "one", x=0, y=0, cex=1.0)
    ring = _one({"size": 32, "pip": "open"}, "one", x=0, y=0, cex=1.0)
    assert filled[15:17, 15:17].min() > 0.9 and ring[15:17, 15:17].max() < 0.05
    assert ring.sum() == pytest.approx(2 * np.pi * 2.7 * 0.75, rel=0.05)  # circumference × lwd-1 width


def test_deterministic_and_prefix_stable():
    a = generate_dice(20, 16, seed=5)
    b = generate_dice(20, 16, seed=5)
    c = generate_dice(20, 16, seed=6)
    d = generate_dice(40, 16, seed=5)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.params, b.params, equal_nan=True)
    assert not np.array_equal(a.images, c.images)
    for k in range(6):  # the first 20 of each class do not depend on n_per_class
        assert np.array_equal(a.images[k * 20 : (k + 1) * 20], d.images[k * 40 : k * 40 + 20])


def test_split_is_fixed_disjoint_and_balanced():
    tr, te = split_indices(100, "train", 0), split_indices(100, "test", 0)
    assert len(tr) == len(te) == 300 and not set(tr) & set(te)
    assert set(tr) | set(te) == set(range(600))
    assert np.array_equal(np.bincount(tr // 100), [50] * 6)
    assert np.array_equal(tr, split_indices(100, "train", 0))


def test_loader_cache_hit_returns_identical_arrays(tmp_path):
    opts = dict(n_per_class=60, size=16, seed=2)
    ds1 = load_dataset("dice", "train", data_root=tmp_path, **opts)
    path = dice_cache_path(tmp_path, ds1.meta["generator"])
    assert path.is_file() and path.parent == tmp_path / "dice" and not ds1.meta["cache_hit"]
    assert not list(path.parent.glob(".*tmp"))  # atomic write left no temporary file
    mtime = path.stat().st_mtime_ns
    ds2 = load_dataset("dice", "train", data_root=tmp_path, **opts)
    assert ds2.meta["cache_hit"] and path.stat().st_mtime_ns == mtime
    assert torch.equal(ds1.X, ds2.X) and torch.equal(ds1.y, ds2.y)
    assert ds1.X.dtype == torch.float64 and ds1.y.dtype == torch.int64
    assert ds1.X.shape == (180, 1, 16, 16) and ds1.input_shape == (1, 16, 16) and ds1.input_dim == 256
    assert ds1.classes == DICE_CLASSES
    assert float(ds1.X.min()) == 0.0 and float(ds1.X.max()) == 1.0
    # the cached arrays are those generate_dice gives
    gen = generate_dice(60, 16, seed=2)
    idx = ds1.meta["indices"]
    assert np.array_equal(ds1.X.numpy(), gen.images[idx].reshape(len(idx), 1, 16, 16) / 255.0)
    # other parameters -> another cache file
    ds3 = load_dataset("dice", "test", data_root=tmp_path, n_per_class=60, size=16, seed=3)
    assert ds3.meta["cache_path"] != str(path)
    # a corrupt cache is regenerated, not trusted
    path.write_bytes(b"garbage")
    ds4 = load_dataset("dice", "train", data_root=tmp_path, **opts)
    assert not ds4.meta["cache_hit"] and torch.equal(ds4.X, ds1.X)


def test_generate_all_120k_timing(tmp_path, capsys):
    """The paper-sized set: 20,000 per class, 60k/60k. Prints the wall time (not asserted)."""
    t0 = time.perf_counter()
    arrays, path, hit = dice_arrays(tmp_path)
    dt = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n[dice] generated + cached 120,000 images (32x32) in {dt:.1f} s -> {path}")
    assert arrays.images.shape == (120000, 32, 32) and not hit
    assert np.array_equal(np.bincount(arrays.labels), [20000] * 6)
    t0 = time.perf_counter()
    ds = load_dataset("dice", "test", data_root=tmp_path)
    with capsys.disabled():
        print(f"[dice] cached test split loaded in {time.perf_counter() - t0:.2f} s")
    assert ds.meta["cache_hit"] and ds.X.shape == (60000, 1, 32, 32) and ds.input_dim == 1024
    assert torch.equal(torch.bincount(ds.y), torch.full((6,), 10000))
