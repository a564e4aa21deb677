"""The eoslab error family: every exception eoslab raises on purpose derives from :class:`EoslabError`.

Each class also keeps the built-in base its callers catch (a :class:`ConfigError` is a
``ValueError``, a :class:`eoslab.store.WriteError` an ``OSError``) and is importable from the module
that raises it (``eoslab.config.ConfigError``, ``eoslab.rundir.CorruptFileError``, ...). The
``eoslab`` command turns an error that ends a command into one line on stderr,
``eoslab <command>: error: <message>``, and an exit status
(``eoslab.commands.exit_codes.EXIT_CODES``); an exception outside the family and the built-ins
listed there is a bug and shows its traceback.

This module imports nothing from eoslab, so every module can import it.
"""

from __future__ import annotations

from pathlib import Path


class EoslabError(Exception):
    """Base of every eoslab exception; its message is one line that says what to do."""


class UsageError(EoslabError):
    """Arguments of a command that cannot be served as given (``--nproc 0``, an unknown preset)."""


class ConfigError(EoslabError, ValueError):
    """A bad config key, type or value; the message starts with the dotted field name."""


class ModelError(EoslabError, ValueError):
    """A model that cannot be built; ``field`` is the config field it concerns (e.g. ``model.kind``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DatasetError(EoslabError):
    """A dataset file is missing, malformed or fails its checksum; the message names the file."""


class RunDirError(EoslabError):
    """A run directory (or sweep folder) that cannot be used as it is; the one-line message names
    the file and the fix.
    """


class RunBusyError(RunDirError):
    """Another process holds the folder's lock."""


class CorruptFileError(RunDirError):
    """A file of a run directory does not match its checksum in the manifest (or cannot be read).

    Attributes:
        path: the file.
        problem: ``corrupt`` (checksum mismatch or unreadable), ``unrecorded`` (not in the
            manifest) or ``missing``.
    """

    def __init__(self, path: Path, problem: str, detail: str, fix: str) -> None:
        super().__init__(f"{path}: {detail}; {fix}")
        self.path, self.problem, self.detail = path, problem, detail


class MismatchError(RunDirError):
    """The config or the data differ from what the run was created with (the manifest)."""


class RunConflictError(EoslabError):
    """The run directory already holds a run with a different config."""


class MLPOnlyError(EoslabError, ValueError):
    """A quantity defined only for the paper's MLP (docs/math.md §4) was asked of another model."""


class SweepError(EoslabError):
    """A sweep that cannot start: its folder holds another sweep or is in use, or its Ray cluster
    does not answer; the one-line message says what to do.
    """


class ReportError(EoslabError):
    """Why there is no report (a stale table, an empty sweep); the CLI prints it as one line."""


class RegistryError(EoslabError, ValueError):
    """A name registered twice, or a name looked up that is not registered (:mod:`eoslab._registry`);
    the message names the registered ones.
    """
