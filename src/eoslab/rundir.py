"""The run directory: its files, its snapshots, its lock, and which snapshots are analysed.

One run (``eoslab train CONFIG --out RUN_DIR``) lives in one folder, whose format is documented in
docs/rundir.md. This module is the one place that knows the layout:

``config.toml``
    the fully resolved config of the run.
``status.json``
    ``{"state", "reason", "step", "t", "loss"}``.
``trajectory.parquet``
    one row per step.
``snapshots/step_XXXXXXXX.safetensors`` and ``snapshots/state_XXXXXXXX.safetensors``
    parameters θ_u, and the rest of the integrator state needed to resume.
``analysis.parquet``
    the decomposition of the analysed snapshots (long format).
``.lock``
    held (``flock``) by the one process working on the run.

Writers and readers of those files (:mod:`eoslab.runs`, :mod:`eoslab.analysis`,
:mod:`eoslab.sweeps`) take the paths from :class:`RunDir`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

CONFIG_FILE = "config.toml"
STATUS_FILE = "status.json"
TRAJECTORY_FILE = "trajectory.parquet"
ANALYSIS_FILE = "analysis.parquet"
SNAPSHOT_DIR = "snapshots"
LOCK_FILE = ".lock"
#: ``trajectory.parquet``: one row per step u, describing θ_u and the step taken from it.
TRAJECTORY_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("t", pa.float64()),
        ("loss", pa.float64()),
        ("accuracy", pa.float64()),
        ("dt", pa.float64()),
        ("grad_norm", pa.float64()),
        ("eig_iters", pa.int64()),
        ("hvps", pa.int64()),
        ("eigenvalues", pa.list_(pa.float64())),
        ("eig_converged", pa.bool_()),
    ]
)
#: ``analysis.parquet``: long format, one row per value (``layer`` null for whole-network metrics).
ANALYSIS_SCHEMA = pa.schema(
    [("step", pa.int64()), ("t", pa.float64()), ("metric", pa.string()), ("layer", pa.int64()), ("value", pa.float64())]
)
#: Kinds of snapshot file: parameters θ_u (``step``) and the rest of the integrator state (``state``).
SNAPSHOT_KINDS = ("step", "state")


def analysed_steps(snapshot_steps: list[int], *, skip_before: int, every: int) -> list[int]:
    """The snapshot steps the analysis covers: those at or after ``skip_before`` (the transient,
    D13 in docs/decisions.md), then every ``every``-th of them, in order.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return sorted(s for s in snapshot_steps if s >= skip_before)[::every]


class RunDir:
    """The files of one run directory (see the module docstring).

    Args:
        path: the run directory (it need not exist yet).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_file(self) -> Path:
        """``config.toml``."""
        return self.path / CONFIG_FILE

    @property
    def status_file(self) -> Path:
        """``status.json``."""
        return self.path / STATUS_FILE

    @property
    def trajectory_file(self) -> Path:
        """``trajectory.parquet``."""
        return self.path / TRAJECTORY_FILE

    @property
    def analysis_file(self) -> Path:
        """``analysis.parquet``."""
        return self.path / ANALYSIS_FILE

    @property
    def snapshot_dir(self) -> Path:
        """``snapshots/``."""
        return self.path / SNAPSHOT_DIR

    def snapshot_path(self, kind: str, step: int) -> Path:
        """``snapshots/<kind>_XXXXXXXX.safetensors`` of step u (``kind``: step or state)."""
        if kind not in SNAPSHOT_KINDS:
            raise ValueError(f"snapshot kind must be one of {SNAPSHOT_KINDS}, got {kind!r}")
        return self.snapshot_dir / f"{kind}_{step:08d}.safetensors"

    def snapshot_steps(self, kind: str = "step") -> list[int]:
        """Sorted steps of the snapshot files of ``kind`` on disk."""
        steps = []
        for p in self.snapshot_dir.glob(f"{kind}_*.safetensors"):
            digits = p.stem.split("_", 1)[1]
            if digits.isdigit():
                steps.append(int(digits))
        return sorted(steps)

    def analysed_steps(self, *, skip_before: int, every: int) -> list[int]:
        """The parameter snapshots the analysis covers (:func:`analysed_steps`)."""
        return analysed_steps(self.snapshot_steps("step"), skip_before=skip_before, every=every)

    def read_status(self) -> dict[str, Any] | None:
        """``status.json`` as a dict, or None when it is missing or unreadable."""
        from .store import read_json

        try:
            status = read_json(self.status_file)
        except (OSError, ValueError):
            return None
        return status if isinstance(status, dict) else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``.lock`` exclusively (waiting for another holder), so one process at a time works
        on the run; the lock goes with the process if it dies.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def lock_held(self) -> bool:
        """Whether another process holds ``.lock`` now (the run is being worked on)."""
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
