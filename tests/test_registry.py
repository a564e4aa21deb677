"""One way to extend: the generic registry behind datasets, model kinds, criteria and eigensolvers,
and the names the paper's tables use, which must be registered ones.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from eoslab._registry import Registry
from eoslab.config import default_target_loss, from_dict, unused_fields
from eoslab.criteria import CRITERIA, Criterion
from eoslab.data import available
from eoslab.data.subsets import SUBSET_SIZES
from eoslab.errors import EoslabError, RegistryError
from eoslab.models.registry import MODELS
from eoslab.report.protocol import CRITERION_NAMES, DATASET_NAMES
from eoslab.report.table2 import PAPER_TABLE2


def first() -> str:
    return "first"


def second() -> str:
    return "second"


@pytest.fixture
def things() -> Registry:
    things: Registry = Registry("thing")
    things.register("b")(second)
    things.register("a", aliases=("alpha", "A"))(first)
    return things


def test_a_registered_object_is_found_by_its_name_and_its_aliases(things):
    assert things["a"] is things["alpha"] is things["A"] is first and things["b"] is second
    assert things.canonical("alpha") == "a" and things.name_of(second) == "b"
    # names are sorted; aliases are spellings a lookup accepts, not names
    assert things.names() == ("a", "b") and list(things) == ["a", "b"] and len(things) == 2
    assert "a" in things and "alpha" not in things


@pytest.mark.parametrize("name", ["a", "alpha", "b"])
def test_a_name_or_alias_registered_twice_is_refused_and_the_registry_is_untouched(things, name):
    def impostor() -> str:
        return "impostor"

    by = "first" if name != "b" else "second"
    with pytest.raises(RegistryError, match=rf"^thing {name!r} is already registered \(by {__name__}\.{by}\)$"):
        things.register(name)(impostor)
    with pytest.raises(RegistryError, match="'alpha' is already registered"):
        things.register("c", aliases=("alpha",))(impostor)
    assert things.names() == ("a", "b") and things["alpha"] is first


def test_an_unknown_name_lists_the_registered_ones(things):
    with pytest.raises(RegistryError, match=r"^unknown thing 'c'; available: a, b$") as info:
        things["c"]
    assert isinstance(info.value, EoslabError) and isinstance(info.value, ValueError)


def test_deleting_a_name_removes_its_aliases(things):
    del things["a"]
    assert things.names() == ("b",)
    with pytest.raises(RegistryError):
        things["alpha"]
    things.register("alpha")(second)  # the alias is free again
    assert things["alpha"] is second


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """A package whose modules register themselves into a registry that discovers them."""
    package = tmp_path / "plugins"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from eoslab._registry import Registry\nTHINGS = Registry('thing', discover=__name__)\n"
    )
    for name in ("one", "two"):
        (package / f"{name}.py").write_text(
            textwrap.dedent(
                f"""
                from . import THINGS

                @THINGS.register({name!r})
                def make():
                    return {name!r}
                """
            )
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for module in [m for m in sys.modules if m == "plugins" or m.startswith("plugins.")]:
        del sys.modules[module]


def test_a_discovering_registry_imports_its_package_on_the_first_read(plugins):
    import plugins as package

    assert "plugins.one" not in sys.modules  # nothing is imported before a read
    assert package.THINGS.names() == ("one", "two") and package.THINGS["two"]() == "two"
    assert "plugins.one" in sys.modules


def test_a_module_that_fails_to_import_fails_every_read(plugins):
    (plugins / "three.py").write_text("raise ImportError('missing dependency foo')\n")
    import plugins as package

    for _ in range(2):
        with pytest.raises(ImportError, match="missing dependency foo"):
            package.THINGS.names()


def test_the_paper_tables_name_registered_criteria_and_datasets():
    tables = [*SUBSET_SIZES, *PAPER_TABLE2]
    assert {c for _, c in tables} | set(CRITERION_NAMES) <= set(CRITERIA)
    assert {d for d, _ in tables} | set(DATASET_NAMES) <= set(available())


def test_what_a_criterion_or_model_kind_declares_is_what_the_config_reads():
    """A criterion's ``target_loss`` is the config's default target and a kind's ``config_fields``
    decide which ``model.*`` fields are unused, so a new one needs no edit of eoslab.config.
    """
    assert default_target_loss("ce") == default_target_loss("cross-entropy") == 0.01
    assert default_target_loss("mse") == 0.02

    @CRITERIA.register("huberish-test")
    class Huberish(Criterion):
        target_loss = 0.05

    try:
        assert default_target_loss("huberish-test") == 0.05
    finally:
        del CRITERIA["huberish-test"]

    model_fields = {
        kind: [f for f in unused_fields(from_dict({"model": {"kind": kind}})) if f.startswith("model.")]
        for kind in (*MODELS, "python:pkg.mod:factory")
    }
    assert model_fields == {
        "mlp": [],
        "cnn": ["model.depth", "model.width"],
        "python:pkg.mod:factory": ["model.depth", "model.width", "model.init", "model.gain"],
    }
