"""``eoslab train CONFIG.toml --out RUN_DIR [--no-progress]``: train one network (GD or
exponential Euler) to its target loss, writing a resumable, self-verifying run directory
(:mod:`eoslab.runs`, :mod:`eoslab.rundir`).

Exit codes: 0 done or stopped (the run reached its target, or ``max_steps`` / ``max_time_s``
ended it first: the message says which, with the loss; also when it had finished before), 1 the
run failed (non-finite loss), its data could not be loaded, or a file could not be written or
verified, 2 a bad config (the message names the field; nothing is written), a run directory
that holds a different config or whose config or data changed, or one in use by another process.
Every error is one line on stderr naming the file (or field) and the fix.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("config", help="run config (TOML)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="RUN_DIR",
        help="run directory; rerunning the same command resumes an interrupted run",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the command; returns its exit code."""
    from ..config import ConfigError, load_config
    from ..data import DatasetError
    from ..rundir import CorruptFileError, RunDirError
    from ..runs import RunConflictError, train

    try:
        cfg = load_config(args.config)
        status = train(cfg, args.out, progress=not args.no_progress)
    except (CorruptFileError, DatasetError, OSError) as e:
        print(f"eoslab train: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except (ConfigError, RunConflictError, RunDirError) as e:
        print(f"eoslab train: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    where = f"step {status['step']}, t = {status['t']:.6g}, loss = {status['loss']}"
    if status["state"] == "failed":
        print(f"{args.out}: failed: {status['reason']} ({where})", file=sys.stderr)
        return 1
    print(f"{args.out}: {status['state']}: {status['reason']} ({where})")
    return 0
