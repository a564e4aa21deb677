"""The error family: every eoslab exception derives from EoslabError and keeps its built-in base;
the CLI gives each error that ends a command one line and an exit status.
"""

import errno
import inspect

import pytest

import eoslab.errors
from eoslab.commands.exit_codes import error_exit, exit_code
from eoslab.errors import EoslabError
from eoslab.store import WriteError


def test_every_eoslab_exception_is_an_eoslab_error():
    classes = [c for _, c in inspect.getmembers(eoslab.errors, inspect.isclass) if issubclass(c, BaseException)]
    assert len(classes) >= 12 and all(issubclass(c, EoslabError) for c in [*classes, WriteError])
    assert issubclass(eoslab.errors.ConfigError, ValueError) and issubclass(WriteError, OSError)


@pytest.mark.parametrize(
    ("command", "error", "code"),
    [
        ("train", eoslab.errors.ConfigError("train.seed: must be >= 0"), 2),
        ("train", eoslab.errors.CorruptFileError("f", "corrupt", "checksum", "rerun"), 1),
        ("analyze", eoslab.errors.RunDirError("no run"), 2),
        ("report", eoslab.errors.RunDirError("no run"), 1),
        ("show", OSError("unreadable"), 2),
        ("data", eoslab.errors.DatasetError("missing"), 2),
        ("init", eoslab.errors.UsageError("no preset"), 2),
        ("sweep", WriteError("x", OSError(errno.ENOSPC, "full")), 1),
        ("status", KeyError("a bug"), None),
    ],
)
def test_exit_codes(command, error, code):
    assert exit_code(command, error) == code


def test_an_error_is_one_line(capsys):
    assert error_exit("collect", ValueError("first line\n  second line")) == 2
    assert capsys.readouterr().err == "eoslab collect: error: first line second line\n"
