"""The ``eoslab`` command: train along the gradient flow or by GD, analyse, sweep and report.

Each subcommand lives in ``eoslab.commands.<name>`` and defines ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when used.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import (
    ConfigError,
    CorruptFileError,
    DatasetError,
    EoslabError,
    ReportError,
    RunConflictError,
    RunDirError,
    SweepError,
    UsageError,
)

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


#: Exit status of an error that ends a command: the first row of the command's list (then of
#: ``DEFAULT_EXIT_CODES``) whose classes the error is an instance of gives it; the error's message
#: is printed as one line, ``eoslab <command>: error: <message>``. 2 mostly means the request
#: cannot be served as given (a bad argument or config, a folder of the wrong kind), 1 that the
#: work failed (a file that cannot be read or written, a corrupt snapshot, a report that cannot
#: be made). An error no row matches, other than running out of memory (exit 1), is a bug: its
#: traceback is shown.
_RUN_EXIT_CODES: tuple[tuple[tuple[type[BaseException], ...], int], ...] = (
    ((CorruptFileError, DatasetError, OSError), 1),
    ((ConfigError, RunConflictError, RunDirError), 2),
)
EXIT_CODES: dict[str, tuple[tuple[tuple[type[BaseException], ...], int], ...]] = {
    "analyze": _RUN_EXIT_CODES,
    "train": _RUN_EXIT_CODES,
    "collect": (((OSError, ValueError), 2),),
    "data": (((DatasetError, ValueError, TypeError), 2),),
    "demo": (((ValueError, SweepError), 2), ((ReportError,), 1)),
    "report": (((OSError, ValueError, RuntimeError, EoslabError), 1),),
    "show": (((OSError, ValueError, RunDirError), 2),),
    "status": (((OSError, ValueError), 2),),
    "sweep": (((ValueError, SweepError), 2),),
}
DEFAULT_EXIT_CODES: tuple[tuple[tuple[type[BaseException], ...], int], ...] = (
    ((UsageError,), 2),
    ((RunDirError, OSError), 1),
    ((EoslabError,), 1),
)


def exit_code(command: str, error: BaseException) -> int | None:
    """The exit status of ``error`` ending ``command`` (``EXIT_CODES``), or None for a bug."""
    for classes, code in (*EXIT_CODES.get(command, ()), *DEFAULT_EXIT_CODES):
        if isinstance(error, classes):
            return code
    return None


def error_exit(command: str, error: BaseException, *, show: bool = True) -> int | None:
    """Report ``error``, which ended ``command``, as one line on stderr (when ``show``) and return
    the exit status; None (nothing printed) for an error that is a bug, which the caller re-raises.
    """
    code = exit_code(command, error)
    if code is not None:
        message = " ".join(str(error).split())
    elif isinstance(error, MemoryError | RuntimeError):  # out of memory mid-way: a problem too large for this machine
        from .runs import memory_message, out_of_memory  # torch, loaded only here

        if not out_of_memory(error):
            return None
        code, message = 1, f"out of memory ({memory_message(error)})"
    else:
        return None
    if show:
        print(f"eoslab {command}: error: {message}", file=sys.stderr)
    return code


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
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an error that ends the command: one line and an exit status (EXIT_CODES)
        code = error_exit(args._command, e)
        if code is None:
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
