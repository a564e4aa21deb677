"""UEA/UCR .ts parser and the AtrialFibrillation windows (D11)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eoslab.data import DatasetError, load_dataset
from eoslab.data.uea import make_windows, parse_ts, read_ts, window_offsets

from ._data_helpers import require_shared

AF = "AtrialFibrillation/AtrialFibrillation_TRAIN.ts"
AF_TEST = "AtrialFibrillation/AtrialFibrillation_TEST.ts"

TOY = """# a comment line
# another: with a colon
@problemName Toy
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength true
@seriesLength 4
@classLabel true up down
@data
1,2,3,4:5,6,7,8:up
# comment inside the data
0.5,?,1e-3,-2:1,1,1,1:down

4,3,2,1:8,7,6,5:up
"""


def test_parse_toy_file():
    ts = parse_ts(TOY, source="toy.ts")
    assert ts.X.shape == (3, 2, 4) and ts.X.dtype == torch.float64
    assert ts.classes == ["up", "down"] and ts.labels.tolist() == [0, 1, 0]
    assert ts.X[0, 1].tolist() == [5, 6, 7, 8]
    assert math.isnan(ts.X[1, 0, 1].item()) and ts.X[1, 0, 2].item() == 1e-3
    assert ts.header["problemname"] == "Toy" and ts.lengths.tolist() == [4, 4, 4]


def test_unequal_lengths_are_nan_padded_and_labels_in_first_appearance_order():
    text = "@problemName U\n@univariate true\n@equalLength false\n@classLabel false\n@data\n"
    with pytest.raises(DatasetError, match="unlabelled"):
        parse_ts(text + "1,2\n", source="u.ts")
    text = "@problemName U\n@univariate true\n@equalLength false\n@data\n1,2,3:b\n4:a\n"
    ts = parse_ts(text, source="u.ts")
    assert ts.X.shape == (2, 1, 3) and ts.lengths.tolist() == [3, 1]
    assert math.isnan(ts.X[1, 0, 2].item()) and ts.classes == ["b", "a"]


@pytest.mark.parametrize(
    "line, expect",
    [
        ("1,2,3,4:5,6,7,8", r"expected 2 dimension\(s\) then a label separated by ':', found 1"),
        ("1,2,3,4:5,6,x,8:up", r"dimension 1, value 3: 'x' is not a number"),
        ("1,2,3:5,6,7,8:up", r"dimension 0 has 3 values; expected @seriesLength 4"),
        ("1,2,3,4:5,6,7,8:sideways", r"class label 'sideways' is not one of"),
        ("1,2,3,4:5,6,7,8:", r"missing class label"),
        ("1,2,3,4,5,6,7,8", r"found no ':' separator"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, expect):
    bad = TOY.replace("4,3,2,1:8,7,6,5:up", line)
    path = tmp_path / "Bad_TRAIN.ts"
    path.write_text(bad)
    lineno = bad.splitlines().index(line) + 1
    with pytest.raises(DatasetError, match=expect) as ei:
        read_ts(path)
    assert f"{path}:{lineno}:" in str(ei.value)


def test_header_errors():
    with pytest.raises(DatasetError, match=r"h\.ts:2: expected a '@' header line"):
        parse_ts("@problemName X\n1,2:a\n", source="h.ts")
    with pytest.raises(DatasetError, match=r"no '@data' line"):
        parse_ts("@problemName X\n", source="h.ts")
    with pytest.raises(DatasetError, match=r"h\.ts:2: @timeStamps true is not supported"):
        parse_ts("@problemName X\n@timeStamps true\n@data\n", source="h.ts")


def test_missing_file_names_path(tmp_path):
    with pytest.raises(DatasetError) as ei:
        load_dataset("atrial_fibrillation", "train", data_root=tmp_path)
    assert str(tmp_path / AF) in str(ei.value)
    with pytest.raises(DatasetError, match="ECG200_TEST.ts"):
        load_dataset("uea", "test", data_root=tmp_path, problem="ECG200")


def test_window_offsets_follow_d11():
    offs = window_offsets(640, 128)
    assert offs[0] == 0 and offs[-1] == 511 and len(offs) == 512
    assert len(window_offsets(640, 128, include_last=True)) == 513  # torchcast's count
    assert window_offsets(10, 4, 3).tolist() == [0, 3]
    X = torch.arange(2 * 3 * 10, dtype=torch.float64).reshape(2, 3, 10)
    W, Y, origin = make_windows(X, torch.tensor([1, 0]), 4, 3)
    assert W.shape == (4, 3, 4) and Y.tolist() == [1, 1, 0, 0]
    assert origin.tolist() == [[0, 0], [0, 3], [1, 0], [1, 3]]
    assert torch.equal(W[3], X[1, :, 3:7])


def test_generic_uea_loader_on_a_toy_archive(tmp_path):
    (tmp_path / "Toy").mkdir()
    (tmp_path / "Toy" / "Toy_TRAIN.ts").write_text(TOY)
    ds = load_dataset("uea", "train", data_root=tmp_path, problem="Toy")
    assert ds.X.shape == (3, 2, 4) and ds.classes == ["up", "down"] and ds.meta["shape"] == (2, 4)
    assert ds.input_shape == (2, 4) and ds.input_dim == 8
    assert ds.X[0].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]  # (channels, length)
    assert ds.X[0].flatten().tolist() == [1, 2, 3, 4, 5, 6, 7, 8]  # what the MLP sees: channel-major
    dw = load_dataset("uea", "train", data_root=tmp_path, problem="Toy", window=2, stride=1)
    assert dw.X.shape == (3 * 2, 2, 2) and dw.X[1].tolist() == [[2, 3], [6, 7]]


def test_real_atrial_fibrillation_train():
    root = require_shared(AF, AF_TEST)
    ts = read_ts(root / AF)
    assert ts.X.shape == (15, 2, 640) and not torch.isnan(ts.X).any()
    assert ts.classes == ["n", "s", "t"] and torch.bincount(ts.labels).tolist() == [5, 5, 5]
    ds = load_dataset("atrial_fibrillation", "train", data_root=root)
    assert ds.X.shape == (7680, 2, 128) and ds.X.dtype == torch.float64 and ds.y.dtype == torch.int64
    assert ds.name == "atrial_fibrillation" and ds.input_shape == (2, 128) and ds.input_dim == 256
    assert torch.bincount(ds.y).tolist() == [2560, 2560, 2560]
    rng = np.random.default_rng(0)
    for i in [0, 511, 512, 7679] + rng.integers(0, 7680, 20).tolist():
        case, off = divmod(i, 512)
        assert ds.meta["origin"][i].tolist() == [case, off]
        want = torch.stack([ts.X[case, 0, off : off + 128], ts.X[case, 1, off : off + 128]])
        assert torch.equal(ds.X[i], want)
        assert ds.y[i] == ts.labels[case]
    # raw values (D9): the published statistics of channel 1 over the 15 train + 15 test cases
    both = torch.cat([ts.X, read_ts(root / AF_TEST).X])
    assert both[:, 0].max().item() == 2.4849 and both[:, 1].min().item() == -2.2195
    assert both[:, 0].mean().item() == pytest.approx(-0.0121409, abs=1e-6)
    # options: window length and stride
    ds2 = load_dataset("atrial_fibrillation", "test", data_root=root, window=64, stride=32)
    assert ds2.X.shape == (15 * 18, 2, 64)
