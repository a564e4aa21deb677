"""`eoslab data`: preview, info, fetch and the one-line error with exit code 2."""

from __future__ import annotations

import numpy as np
import pytest

from eoslab.cli import main

from ._cifar10_helpers import write_cifar10
from ._data_helpers import require_shared
from ._train_helpers import toy_uea, write_config


def test_help_lists_actions(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["data", "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "preview" in out and "fetch" in out and "info" in out


def test_preview_dice_writes_png(tmp_path, capsys):
    out = tmp_path / "dice.png"
    assert main(["data", "preview", "dice", "--out", str(out), "--per-class", "3", "-o", "seed=1"]) == 0
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert "wrote" in capsys.readouterr().out


def test_info_dice(tmp_path, capsys):
    rc = main(["data", "info", "dice", "--data-root", str(tmp_path), "-o", "n_per_class=20", "-o", "size=8"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "N:          60" in out and "input dim:  64" in out and "one: 10" in out and "six: 10" in out


def test_info_real_files(capsys):
    root = require_shared("AtrialFibrillation/AtrialFibrillation_TRAIN.ts", "sst/trees/train.txt")
    assert main(["data", "info", "atrial_fibrillation", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "N:          7680" in out and "input dim:  256" in out and "n: 2560" in out
    assert main(["data", "info", "sst", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "N:          8544" in out and "very negative: 1092" in out and "very positive: 1288" in out


def test_preview_series(tmp_path):
    root = require_shared("AtrialFibrillation/AtrialFibrillation_TRAIN.ts")
    out = tmp_path / "af.png"
    assert (
        main(
            ["data", "preview", "atrial_fibrillation", "--data-root", str(root), "--out", str(out), "--per-class", "2"]
        )
        == 0
    )
    assert out.stat().st_size > 1000


def test_dataset_errors_are_one_line_and_exit_2(tmp_path, capsys):
    rc = main(["data", "info", "cifar10", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("eoslab data: error: ")
    assert str(tmp_path / "cifar-10-python.tar.gz") in err
    # a malformed .ts file: file:line in the one-line message
    (tmp_path / "AtrialFibrillation").mkdir()
    (tmp_path / "AtrialFibrillation" / "AtrialFibrillation_TRAIN.ts").write_text("@data\n1,2:3,x:n\n")
    rc = main(["data", "info", "atrial_fibrillation", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "AtrialFibrillation_TRAIN.ts:2:" in err and err.count("\n") == 1
    # bad option syntax is a usage error too
    assert main(["data", "info", "dice", "-o", "nonsense"]) == 2


def test_fetch_without_network_names_the_file(tmp_path, capsys):
    rc = main(
        [
            "data",
            "fetch",
            "cifar10",
            "--data-root",
            str(tmp_path),
            "-o",
            "url='http://127.0.0.1:9/x.tar.gz'",
            "-o",
            "timeout=2",
            "-o",
            "progress=False",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and str(tmp_path / "cifar-10-python.tar.gz") in err and err.count("\n") == 1


def test_preview_cifar_from_tiny_files(tmp_path):
    write_cifar10(tmp_path, "bin", "dir")
    out = tmp_path / "c.png"
    assert (
        main(["data", "preview", "cifar10", "--data-root", str(tmp_path), "--out", str(out), "--per-class", "2"]) == 0
    )
    assert out.stat().st_size > 1000
    assert np.isfinite(out.stat().st_size)


def test_every_command_that_loads_data_takes_data_root(tmp_path, monkeypatch, capsys):
    """Every command that loads data takes ``--data-root`` (as $EOSLAB_DATA, when the config sets
    no data.data_root), so the missing-data error's advice ("point --data-root / $EOSLAB_DATA")
    works: `eoslab train … --data-root X` and `eoslab analyze … --data-root X` find the data.
    """
    from eoslab.cli import DATA_COMMANDS, build_parser

    ts, data = toy_uea(tmp_path)
    root = data["data"].pop("data_root")
    config = write_config(tmp_path / "uea.toml", data)
    monkeypatch.setenv("EOSLAB_DATA", str(tmp_path / "elsewhere"))
    run_dir = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 1
    assert "or point --data-root / $EOSLAB_DATA at a folder holding Toy/" in capsys.readouterr().err
    assert main(["train", str(config), "--out", str(run_dir), "--no-progress", "--data-root", root]) == 0
    monkeypatch.setenv("EOSLAB_DATA", str(tmp_path / "elsewhere"))
    assert main(["analyze", str(run_dir), "--no-progress", "--data-root", root]) == 0
    assert (run_dir / "analysis.parquet").is_file()
    parser = build_parser()
    positional = {"demo": [], "train": ["C", "--out", "R"], "sweep": ["S", "--out", "D"]}
    for command in DATA_COMMANDS:
        args = parser.parse_args([command, *positional.get(command, ["R"]), "--data-root", root])
        assert args.data_root == root
