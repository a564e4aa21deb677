import pytest

from eoslab.data import Dataset, available, load_dataset, register, registry


def test_every_loader_module_registers_itself():
    assert {"atrial_fibrillation", "cifar10", "dice", "sst", "synthetic", "uea"} <= set(available())


def test_a_name_registered_twice_is_refused():
    def other_loader(**_) -> Dataset:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="dataset 'dice' is already registered"):
        register("dice")(other_loader)
    assert registry._REGISTRY["dice"].__module__ == "eoslab.data.dice"  # the registry is untouched


def test_an_unknown_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown dataset 'dise'; available: atrial_fibrillation, cifar10"):
        load_dataset("dise")
