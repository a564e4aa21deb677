"""A run directory opened for analysis: its config, data, model, loss, snapshots and tables.

:func:`load_run` opens what :func:`eoslab.runs.train` (or a :class:`~eoslab.tracker.Tracker`)
wrote, checking ``config.toml`` and the data against the run's manifest, and rebuilds the problem
(:func:`~eoslab.runs.problem.build_problem`); every file it reads is checked against its checksum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import config_hash, load_config, to_dict
from ..curvature import FullBatchLoss
from ..models import Model
from ..rundir import STATUS_FILE, TRAJECTORY_FILE, CorruptFileError, RunDir, RunDirError
from ..store import parse_safetensors, to_frame
from .problem import build_problem


class Run:
    """A run directory opened for analysis (the analysis engineer's entry point).

    Opening it checks ``config.toml`` and the data against the run's manifest
    (:class:`~eoslab.rundir.MismatchError` naming the fields that differ); a run written before
    manifests existed opens unverified until :meth:`adopt` records one.

    Attributes:
        path: the run directory.
        dir: its :class:`~eoslab.rundir.RunDir`.
        config: its resolved RunConfig.
        problem: dataset subset, model and loss rebuilt from the config (:func:`build_problem`).
        manifest: the run's manifest (None for a run without one).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.dir = RunDir(path)
        if not self.dir.config_file.exists():
            raise RunDirError(f"{self.path} is not a run directory (no config.toml); give the --out of `eoslab train`")
        self.config = load_config(self.dir.config_file)
        self.manifest = self.dir.manifest()
        if self.manifest is not None:
            self.dir.check_config(to_dict(self.config), self.manifest)
        self.problem = build_problem(self.config, self.path)
        if self.manifest is not None:
            self.dir.check_data(self.problem.fingerprint(), self.manifest)

    def adopt(self) -> None:
        """Record a manifest for a run written before manifests existed (call it holding the lock)."""
        if self.manifest is None:
            cfg = self.problem.config
            self.dir.adopt(to_dict(cfg), config_hash(cfg, 64), self.problem.fingerprint())
            self.manifest = self.dir.manifest()

    @property
    def model(self) -> Model:
        """The model the run trains (:func:`eoslab.models.make_model` of its config)."""
        return self.problem.model

    @property
    def loss(self) -> FullBatchLoss:
        """L̃ on the subset the run trained on."""
        return self.problem.loss

    def snapshots(self) -> list[tuple[int, Path]]:
        """Sorted (step, path) of the parameter snapshots."""
        return [(s, self.dir.snapshot_path("step", s)) for s in self.dir.snapshot_steps("step")]

    def load_snapshot(self, step: int) -> tuple[torch.Tensor, float]:
        """(θ_u, t_u) of the snapshot at step u, checked against its checksum.

        Raises:
            CorruptFileError: the file is missing or corrupt; the message says how to rebuild it.
        """
        if step == max(self.dir.snapshot_steps("step"), default=None):
            fix = "rerun `eoslab train` with the run's config on this run to rebuild it from the previous snapshot"
        else:
            fix = "an older snapshot cannot be rebuilt: train the run again into a fresh folder"
        name = self.dir.snapshot_name("step", step)
        try:
            params, meta = parse_safetensors(self.dir.read_verified(name, self.manifest, fix), self.path / name)
            return self.model.from_state_dict(params), float(meta["t"])
        except (ValueError, KeyError) as e:
            raise CorruptFileError(self.path / name, "corrupt", f"unreadable ({e})", fix) from None

    def status(self) -> dict[str, Any]:
        """``status.json`` of the run (:class:`~eoslab.rundir.CorruptFileError` if it does not verify)."""
        fix = "rerun `eoslab train` with the run's config on this run to rebuild it"
        status = self.dir.read_status(self.manifest)
        if status is None:
            self.dir.read_verified(STATUS_FILE, self.manifest, fix)  # raises, naming the problem
            raise CorruptFileError(self.dir.status_file, "corrupt", "not a JSON object", fix)
        return status

    def trajectory(self):
        """trajectory.parquet as a pandas DataFrame (checked against its checksum)."""
        fix = "rerun `eoslab train` with the run's config on this run to rebuild it"
        return to_frame(self.dir.read_table(TRAJECTORY_FILE, self.manifest, fix))


def load_run(run_dir: str | Path) -> Run:
    """Open a run directory written by :func:`train` (:class:`Run`)."""
    return Run(run_dir)
