"""A sweep's worker: one grid point trained and analysed (:func:`~eoslab.sweeps.point.run_point`)
with a given number of torch threads, its config given as TOML text.

The local executor starts one worker process per point, which runs :func:`main` on ``RUN_DIR
ANALYSIS(0|1) THREADS PARENT_PID`` with the point's config as TOML on stdin (exit code 0 when the
point is done or stopped, 1 when it failed); the Ray executor runs :func:`point_from_toml` as a
task. Either way, what the worker ran with and how its point ended go to stdout
(``RUN_DIR/sweep.log`` for a local worker).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
import tomllib

import torch

from ..config import from_dict
from ..rundir import TRAINED_STATES
from .point import PointStatus, run_point


def pin_threads(threads: int) -> None:
    """Limit torch's intra-op threads (and OpenMP/MKL for libraries loaded later)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)


def point_from_toml(config_toml: str, run_dir: str, analysis: bool, threads: int) -> PointStatus:
    """:func:`run_point` on a config given as TOML text, with ``threads`` torch threads (the job
    of an executor's worker); what it ran with and how it ended go to stdout (``sweep.log``).
    """
    pin_threads(threads)
    config = from_dict(tomllib.loads(config_toml))
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    print(
        f"{_now()} worker pid {os.getpid()}: {torch.get_num_threads()} thread(s) "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), device {config.model.device}"
        + (f", CUDA_VISIBLE_DEVICES={gpus}" if gpus is not None else ""),
        flush=True,
    )
    start = time.monotonic()
    status = run_point(config, run_dir, analysis=analysis)
    where = f"step {status.step}, loss {status.loss:.6g}" if status.loss is not None else f"step {status.step}"
    print(
        f"{_now()} {status.state} after {time.monotonic() - start:.1f} s ({where})"
        + (f": {status.reason}" if status.reason else ""),
        flush=True,
    )
    return status


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _die_with_parent(parent: int) -> None:
    """Get SIGKILL when the sweep process ``parent`` dies (Linux), so a killed sweep leaves no
    worker behind; exit at once if it is already gone.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(3)


def main(argv: list[str]) -> int:
    """A local worker process: ``argv = RUN_DIR ANALYSIS(0|1) THREADS PARENT_PID``, the point's
    config as TOML on stdin. Exit code 0 when the point is done, 1 when it failed.
    """
    run_dir, analysis, threads, parent = argv[0], argv[1] == "1", int(argv[2]), int(argv[3])
    _die_with_parent(parent)
    return 0 if point_from_toml(sys.stdin.read(), run_dir, analysis, threads).state in TRAINED_STATES else 1
