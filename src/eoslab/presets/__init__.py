"""Presets: the run and sweep configs that ship with eoslab, read as package data.

Each preset is a TOML file in this package (``quick`` is a run config for ``eoslab train``; the
others are sweep configs for ``eoslab sweep``). Commands that take a config accept a preset's
name wherever they accept a file (``eoslab sweep demo --out DIR``, ``eoslab train quick --out
RUN``); a file of that name in the current folder wins. ``eoslab init NAME`` copies one out to
edit. The files are read with :mod:`importlib.resources`, so they work from an installed wheel.

The functions live in :mod:`eoslab.presets.catalog`.
"""

from .catalog import ConfigSource, available, is_preset, preset_text, read_config_source, read_config_toml, summary

__all__ = [
    "ConfigSource",
    "available",
    "is_preset",
    "preset_text",
    "read_config_source",
    "read_config_toml",
    "summary",
]
