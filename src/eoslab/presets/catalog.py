"""The shipped presets: their names, their text, and a config read from a file or a preset's name.

The presets are the TOML files of the package :mod:`eoslab.presets`, read with
:mod:`importlib.resources`, so they work from an installed wheel.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class ConfigSource:
    """A config's text and where it came from.

    Attributes:
        text: the TOML text.
        where: how to name it in messages: the file's path, or ``preset NAME``.
        preset: the preset's name, or None for a file.
    """

    text: str
    where: str
    preset: str | None = None


def available() -> list[str]:
    """The names of the shipped presets, sorted."""
    return sorted(p.name[: -len(".toml")] for p in resources.files(__package__).iterdir() if p.name.endswith(".toml"))


def _name(name: str) -> str:
    return name[: -len(".toml")] if name.endswith(".toml") else name


def is_preset(name: str) -> bool:
    """Whether ``name`` (with or without ``.toml``) is a shipped preset."""
    return "/" not in name and _name(name) in available()


def preset_text(name: str) -> str:
    """The TOML text of preset ``name``; KeyError (naming the presets) if there is none."""
    if not is_preset(name):
        raise KeyError(f"no preset {name!r}; presets: {', '.join(available())}")
    return resources.files(__package__).joinpath(f"{_name(name)}.toml").read_text(encoding="utf-8")


def summary(name: str) -> str:
    """The first comment line of a preset (what it is)."""
    for line in preset_text(name).splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def read_config_source(path_or_name: str | Path) -> ConfigSource:
    """The text of a config file, or of the preset of that name when no such file exists.

    Raises:
        FileNotFoundError: neither a file nor a preset; the message lists the presets.
        UnicodeDecodeError: a file that is not UTF-8 text.
    """
    path = Path(path_or_name)
    if path.is_file():
        return ConfigSource(path.read_text(encoding="utf-8"), str(path))
    name = str(path_or_name)
    if is_preset(name):
        return ConfigSource(preset_text(name), f"preset {_name(name)}", _name(name))
    raise FileNotFoundError(
        f"{path} not found: no such file, and no preset of that name (presets: {', '.join(available())})"
    )


def read_config_toml(path_or_name: str | Path, kind: str) -> tuple[ConfigSource, dict[str, Any]]:
    """:func:`read_config_source`, then its TOML parsed; ConfigError names ``kind`` (``"run config"``,
    ``"sweep config"``) when there is no such file or preset, and the file when it is not TOML.
    """
    try:
        source = read_config_source(path_or_name)
    except FileNotFoundError as e:
        raise ConfigError(f"{kind} {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path_or_name}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
            f"TOML files are UTF-8: save it as UTF-8"
        ) from None
    try:
        return source, tomllib.loads(source.text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source.where}: not valid TOML: {e}") from None
