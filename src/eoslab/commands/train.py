"""``eoslab train CONFIG.toml --out RUN_DIR [--no-progress]``: train one network (GD or
exponential Euler) to its target loss, writing a resumable run directory (:mod:`eoslab.runs`).

Exit codes: 0 done (also when the run was already done), 1 the run failed (non-finite loss) or
its data could not be loaded, 2 a bad config (the message names the field; nothing is written)
or a run directory that holds a different config.
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
    from ..runs import RunConflictError, train

    try:
        cfg = load_config(args.config)
        status = train(cfg, args.out, progress=not args.no_progress)
    except (ConfigError, RunConflictError) as e:
        print(f"eoslab train: error: {e}", file=sys.stderr)
        return 2
    except DatasetError as e:
        print(f"eoslab train: error: {e}", file=sys.stderr)
        return 1
    where = f"step {status['step']}, t = {status['t']:.6g}, loss = {status['loss']}"
    if status["state"] == "failed":
        print(f"{args.out}: failed: {status['reason']} ({where})", file=sys.stderr)
        return 1
    print(f"{args.out}: done: {status['reason']} ({where})")
    return 0
