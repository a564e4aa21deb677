"""The ``eoslab`` command: train along the gradient flow or by GD, analyse, sweep and report.

Each subcommand lives in ``eoslab.commands.<name>`` and defines ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when used (``eoslab --help`` imports none, so it is
fast; ``eoslab train ...`` imports ``eoslab.commands.train`` alone). An error that ends a command
becomes one line and an exit status in one place, :mod:`eoslab.commands.exit_codes`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Collection

from . import __version__
from .commands.exit_codes import error_exit

# name -> one-line help; each lives in eoslab.commands.<name>.
COMMANDS: dict[str, str] = {
    "demo": "run the demo preset end to end (sweep, analysis, report)",
    "train": "train one network to a target loss (GD or exponential Euler), resumable",
    "analyze": "compute the decomposition (analysis.parquet) for every snapshot of a run",
    "compact": "drop the snapshots a run's analysis no longer needs (analysed ones, old state files)",
    "sweep": "run train + analyze over a grid of configs (local processes or Ray)",
    "status": "table of a sweep's runs (done, stopped, running, failed, pending, missing), with the axes that vary",
    "collect": "join a sweep's configs, analyses and trajectories into one Parquet table",
    "report": "power-law fits (Table 2), the paper's figures and an index.html, of a sweep or of one run",
    "show": "one run at a glance: state, loss, λ¹ of H, G, R and the Eq. 7 factors over training",
    "init": "copy a preset config (demo, quick, the paper's grids) out to edit; --list lists them",
    "data": "dataset tools: preview, fetch, import-cifar10, info",
}

#: Commands that load datasets (besides ``data``, whose tools take the same flag): each takes
#: ``--data-root DIR``, which sets ``$EOSLAB_DATA`` for the command and the processes it starts.
DATA_COMMANDS = ("demo", "train", "analyze", "sweep", "report")


def _module_name(name: str) -> str:
    return f"eoslab.commands.{name}"


def build_parser(commands: Collection[str] = tuple(COMMANDS)) -> argparse.ArgumentParser:
    """The ``eoslab`` argument parser with one sub-parser per command, and the arguments of those
    in ``commands`` (each imports its module, with what it needs: torch, pandas, ...); the others'
    sub-parsers are there for ``eoslab --help``.
    """
    parser = argparse.ArgumentParser(prog="eoslab", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"eoslab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_command=name)
        p.set_defaults(_parser=p)
        if name not in commands:
            continue
        importlib.import_module(_module_name(name)).add_arguments(p)
        if name in DATA_COMMANDS:
            p.add_argument(
                "--data-root",
                metavar="DIR",
                help="where datasets are found when a config sets no data.data_root "
                "(default: $EOSLAB_DATA, else ~/.cache/eoslab)",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``eoslab`` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)  # the only options before it: --help, --version
    parser = build_parser([command] if command in COMMANDS else [])
    args = parser.parse_args(argv)
    if getattr(args, "_command", None) is None:
        parser.print_help()
        return 2
    if getattr(args, "data_root", None):  # read by eoslab.data.default_data_root here and in workers
        os.environ["EOSLAB_DATA"] = args.data_root
    module = importlib.import_module(_module_name(args._command))
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an error that ends the command: one line and an exit status (exit_codes)
        code = error_exit(args._command, e)
        if code is None:
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
