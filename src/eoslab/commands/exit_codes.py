"""The exit status of an error that ends an ``eoslab`` command, and its one line on stderr
(``eoslab <command>: error: <message>``): the one place that maps the error family
(:mod:`eoslab.errors`) to exit codes, used by the dispatcher (:func:`eoslab.cli.main`) and by
each process of ``eoslab train --nproc N``.
"""

from __future__ import annotations

import sys

from ..errors import (
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
    "compact": _RUN_EXIT_CODES,
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
        # eoslab.runs imports torch: loaded only for such an error, so that `eoslab --help` stays fast
        from ..runs import memory_message, out_of_memory

        if not out_of_memory(error):
            return None
        code, message = 1, f"out of memory ({memory_message(error)})"
    else:
        return None
    if show:
        print(f"eoslab {command}: error: {message}", file=sys.stderr)
    return code
