"""The ``eoslab`` command: train along the gradient flow or by GD, analyse, sweep and report.

Each subcommand lives in ``eoslab.commands.<name>`` and defines ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when used.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> one-line help; each lives in eoslab.commands.<name>.
COMMANDS: dict[str, str] = {
    "demo": "run the demo preset end to end (sweep, analysis, report)",
    "train": "train one network to a target loss (GD or exponential Euler), resumable",
    "analyze": "compute the decomposition (analysis.parquet) for every snapshot of a run",
    "sweep": "run train + analyze over a grid of configs (local processes or Ray)",
    "status": "table of done / running / failed / pending runs of a sweep, with the axes that vary",
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


def build_parser() -> argparse.ArgumentParser:
    """The ``eoslab`` argument parser with one sub-parser per command."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="eoslab", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"eoslab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_command=name)
        p.set_defaults(_parser=p)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_command", None) is None:
        parser.print_help()
        return 2
    if getattr(args, "data_root", None):  # read by eoslab.data.default_data_root here and in workers
        os.environ["EOSLAB_DATA"] = args.data_root
    module = importlib.import_module(_module_name(args._command))
    from .rundir import RunDirError

    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RunDirError, OSError) as e:  # an ordinary fault a command did not catch: one line, no traceback
        print(f"eoslab {args._command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as e:  # out of memory mid-way (a problem too large for this machine)
        from .runs import memory_message, out_of_memory

        if not out_of_memory(e):
            raise
        print(f"eoslab {args._command}: error: out of memory ({memory_message(e)})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
