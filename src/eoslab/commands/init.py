"""``eoslab init NAME [DEST]``: copy a preset (:mod:`eoslab.presets`) out to edit, to
``./NAME.toml`` by default; ``eoslab init --list`` lists the presets. An existing file is kept
unless ``--force``.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from ..errors import UsageError
from ..presets import available, is_preset, preset_text, summary
from ..store import write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("name", metavar="NAME", nargs="?", help="the preset to copy, e.g. demo or quick")
    parser.add_argument("dest", metavar="DEST", nargs="?", help="where to write it (default ./NAME.toml)")
    parser.add_argument("--list", action="store_true", help="list the presets and what each is")
    parser.add_argument("--force", action="store_true", help="overwrite DEST if it exists")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    if args.list or args.name is None:
        for name in available():
            print(f"{name:<24} {summary(name)}")
        return 0 if args.list else 2
    if not is_preset(args.name):
        raise UsageError(f"no preset {args.name!r}; presets: {', '.join(available())}")
    name = args.name.removesuffix(".toml")
    dest = Path(args.dest) if args.dest else Path(f"{name}.toml")
    if dest.is_dir():
        dest = dest / f"{name}.toml"
    if dest.exists() and not args.force:
        raise UsageError(f"{dest} exists; pass --force to overwrite it")
    text = preset_text(name)
    write_text(text, dest)
    sweep = {"base", "grid"} & set(tomllib.loads(text))
    kind = "a sweep config: eoslab sweep" if sweep else "a run config: eoslab train"
    print(f"wrote {dest} ({kind} {dest} --out DIR)")
    return 0
