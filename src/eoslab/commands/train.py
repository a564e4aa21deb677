"""``eoslab train CONFIG.toml --out RUN_DIR [--nproc N] [--no-progress]``: train one network (GD or
exponential Euler) to its target loss, writing a resumable, self-verifying run directory
(:mod:`eoslab.runs`, :mod:`eoslab.rundir`).

``--nproc N`` splits the training data over N local processes (gloo on CPU, nccl on GPUs, one GPU
each; :mod:`eoslab.distributed`); the trajectory equals the one-process run to round-off, and a run
may be resumed with another N. Under ``torchrun`` (``WORLD_SIZE`` > 1) the command joins the
process group torchrun describes instead. Rank 0 writes the run directory and prints.

Exit codes: 0 done or stopped (the run reached its target, or ``max_steps`` / ``max_time_s``
ended it first: the message says which, with the loss; also when it had finished before), 1 the
run failed (non-finite loss), its data could not be loaded, or a file could not be written or
verified, 2 a bad config (the message names the field; nothing is written), a run directory
that holds a different config or whose config or data changed, or one in use by another process.
Every error is one line on stderr naming the file (or field) and the fix.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..config import load_config, torch_device
from ..distributed import is_main, launch, process_group_from_env
from ..errors import UsageError
from ..runs import train
from .exit_codes import error_exit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its sub-parser."""
    parser.add_argument("config", help="run config (TOML), or a preset's name (eoslab init --list)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="RUN_DIR",
        help="run directory; rerunning the same command resumes an interrupted run",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="data-parallel processes on this machine (gloo on CPU, nccl on GPUs); default 1",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_command(config: str, out: str, progress: bool) -> int:
    """Load, train and report: the whole command in this process (one of the ranks, or the only one)."""
    try:
        cfg = load_config(config)
        with process_group_from_env(torch_device(cfg)):
            status = train(cfg, out, progress=progress)
            main = is_main()
    except Exception as e:  # each of --nproc processes ends with the exit status; the main one says why
        code = error_exit("train", e, show=is_main())
        if code is None:
            raise
        return code
    where = f"step {status['step']}, t = {status['t']:.6g}, loss = {status['loss']}"
    if status["state"] == "failed":
        if main:
            print(f"{out}: failed: {status['reason']} ({where})", file=sys.stderr)
        return 1
    if main:
        print(f"{out}: {status['state']}: {status['reason']} ({where})")
    return 0


def run(args: argparse.Namespace) -> int:
    """Train in this process, or in ``--nproc`` spawned ones; the exit code."""
    if args.nproc < 1:
        raise UsageError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc == 1:
        return train_command(args.config, args.out, not args.no_progress)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--nproc starts its own processes; under torchrun leave it out")

    device = torch_device(load_config(args.config))
    return launch(train_command, args.nproc, args.config, args.out, not args.no_progress, device=device)
