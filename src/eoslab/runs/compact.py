"""Compacting a run directory: dropping the snapshots its analysis no longer needs (docs/rundir.md).

A run writes a parameter snapshot (8·P bytes in float64) every ``train.snapshot_every`` steps and
keeps two state files, each with the warm-start eigenvectors ((P, j), 48 MB for the 6 × 128
CIFAR-10 MLP). A long run's folder grows to gigabytes, too much to move to another machine or
commit. :func:`compact_run` keeps what resuming and the report need:

* the newest snapshot pair (parameters and state), where training resumes; its state file loses
  the warm-start eigenvectors (the next resume solves cold, a note says so: that run is then no
  longer bit-identical to an uninterrupted one, it follows the same flow to the eigensolver's
  tolerance);
* every parameter snapshot the analysis has not covered yet, unless ``thin`` drops it (below).

What goes: the parameter snapshots whose rows ``analysis.parquet`` holds (their rows stay; a
later analysis takes C5(t0) of the stability bound from the file's first step, D15), those the
analysis skips by design (step < ``analysis.skip_before``, D13), the older state file, and with
``thin = K`` the unanalysed snapshots whose step is not a multiple of K, from step ``thin_from`` on
(the analysis is then every K steps there; a note names the steps). Nothing is removed that a later analysis would
compute, except what ``thin`` removes by request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import load_config
from ..errors import RunDirError
from ..rundir import ANALYSIS_FILE, RunDir
from ..store import parse_safetensors, safetensors_bytes
from .records import steps_text

#: The state tensor :func:`compact_run` drops (the integrator's warm start).
WARM_START = "eigenvectors"


@dataclass
class Compacted:
    """What :func:`compact_run` did to one run directory."""

    path: Path
    removed: list[str] = field(default_factory=list)
    thinned: list[int] = field(default_factory=list)
    stripped: int | None = None  # the step whose state file lost its warm start
    bytes_before: int = 0
    bytes_after: int = 0

    def text(self) -> str:
        """One line: files removed and the folder's size before and after."""
        mb = 1024 * 1024
        said = f"{self.path}: snapshot files removed: {len(self.removed)}"
        if self.stripped is not None:
            said += f", the warm start of step {self.stripped} dropped"
        return said + f"; {self.bytes_before / mb:.1f} MB -> {self.bytes_after / mb:.1f} MB"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def compact_run(run_dir: str | Path, *, thin: int | None = None, thin_from: int = 0) -> Compacted:
    """Drop the snapshots of ``run_dir`` that nothing needs any more (module docstring).

    Holds the run's lock (a run in use is refused, :class:`~eoslab.rundir.RunBusyError`) and
    writes through one transaction, so the manifest stays exact and a kill leaves the run as it
    was or compacted. Refuses a run without a manifest and one whose ``analysis.every`` is not 1
    (removing snapshots would shift which ones a later analysis takes; thin with ``thin``).

    Args:
        thin: also drop the unanalysed parameter snapshots whose step is not a multiple of
            ``thin`` (never the newest); None keeps every unanalysed snapshot.
        thin_from: thin only the snapshots from this step on (the earlier ones stay, e.g. to keep
            the analysis dense where a flow time t* the report reads falls).
    """
    if thin is not None and thin < 1:
        raise ValueError(f"thin must be >= 1, got {thin}")
    if thin_from < 0:
        raise ValueError(f"thin_from must be >= 0, got {thin_from}")
    run = RunDir(run_dir)
    if not run.config_file.exists():
        raise RunDirError(f"{run.path} is not a run directory (no config.toml); give the --out of `eoslab train`")
    analysis = load_config(run.config_file).analysis
    if analysis.every != 1:
        raise RunDirError(
            f"{run.config_file}: analysis.every = {analysis.every}; compacting would change which snapshots a "
            "later analysis takes, so it needs analysis.every = 1 (thin the snapshots with --thin instead)"
        )
    out = Compacted(run.path, bytes_before=_size(run.path))
    with run.lock():
        run.remove_leftovers()
        manifest = run.manifest()
        if manifest is None:
            raise RunDirError(f"{run.manifest_file}: missing; compact only runs written with a manifest")
        fix = "run `eoslab analyze` on the run to rebuild it before compacting"
        analysed = (
            set(run.read_table(ANALYSIS_FILE, manifest, fix)["step"].to_pylist())
            if run.analysis_file.exists()
            else set()
        )
        steps, states = run.snapshot_steps("step"), run.snapshot_steps("state")
        pairs = [s for s in steps if s in states]
        newest = pairs[-1] if pairs else None
        for step in steps:
            if step == newest:
                continue
            if step in analysed or step < analysis.skip_before:
                out.removed.append(run.snapshot_name("step", step))
            elif thin is not None and step >= thin_from and step % thin != 0:
                out.removed.append(run.snapshot_name("step", step))
                out.thinned.append(step)
        out.removed += [run.snapshot_name("state", s) for s in states if s != newest]
        with run.transaction() as tx:
            if newest is not None:  # the resume point must be good before its predecessors go
                run.read_verified(run.snapshot_name("step", newest), manifest, "")
                name = run.snapshot_name("state", newest)
                tensors, meta = parse_safetensors(run.read_verified(name, manifest, ""))
                if tensors.pop(WARM_START, None) is not None:
                    tx.write(name, safetensors_bytes(tensors, meta))
                    out.stripped = newest
            for name in out.removed:
                tx.remove(name)
        if out.thinned:
            run.add_note(
                f"{run.path}: snapshots thinned to every {thin} steps by `eoslab compact`, {len(out.thinned)} "
                f"unanalysed snapshot{'s' if len(out.thinned) > 1 else ''} removed ({steps_text(out.thinned)}): the "
                f"analysis has one every {thin} steps there"
            )
        if out.stripped is not None:
            run.add_note(
                f"{run.path}: the warm start of step {out.stripped} was dropped by `eoslab compact`: a resume from "
                "it solves its first eigenproblem cold, so it is not bit-identical to an uninterrupted run"
            )
    out.bytes_after = _size(run.path)
    return out
