import pytest

from eoslab.data import DATASETS, Dataset, available, load_dataset, register
from eoslab.errors import RegistryError


def test_every_loader_module_registers_itself():
    assert {"atrial_fibrillation", "cifar10", "dice", "sst", "synthetic", "uea"} <= set(available())


def test_a_name_registered_twice_is_refused():
    def other_loader(**_) -> Dataset:
        raise AssertionError("never called")

    with pytest.raises(
        RegistryError, match=r"^dataset 'dice' is already registered \(by eoslab\.data\.dice\.load_dice\)$"
    ):
        register("dice")(other_loader)
    assert DATASETS["dice"].__module__ == "eoslab.data.dice"  # the registry is untouched


def test_an_unknown_name_lists_the_registered_ones():
    with pytest.raises(RegistryError, match="unknown dataset 'dise'; available: atrial_fibrillation, cifar10"):
        load_dataset("dise")
