"""The run directory: its files, its manifest, its lock, and which snapshots are analysed.

One run (``eoslab train CONFIG --out RUN_DIR``) lives in one folder, whose format is documented in
docs/rundir.md. This module is the one place that knows the layout:

``manifest.json``
    what the run was created with and the checksum of every file it wrote (below); written
    before ``config.toml`` when the run is created, then by every write.
``config.toml``
    the fully resolved config of the run.
``status.json``
    ``{"state", "reason", "step", "t", "loss", "target_loss", "notes"}``; ``state`` is
    ``running``, ``done`` (the target loss was reached), ``stopped`` (``max_steps`` or
    ``max_time_s`` ended it first; ``loss`` says where) or ``failed`` (``reason`` says why);
    ``notes`` lists what was recovered loudly (a corrupt snapshot skipped, a table rebuilt).
``trajectory.parquet``
    one row per step.
``snapshots/step_XXXXXXXX.safetensors`` and ``snapshots/state_XXXXXXXX.safetensors``
    parameters θ_u, and the rest of the integrator state needed to resume.
``analysis.parquet``
    the decomposition of the analysed snapshots (long format).
``.lock``
    held (``flock``) by the one process working on the run; it holds that process's pid.

The manifest (``manifest.json``, JSON)::

    {
      "format": 2,                # run directories without a manifest are format 1
      "config": {...},            # the resolved config the run was created with (as config.toml)
      "config_sha256": "…",       # SHA-256 of that config (eoslab.config.config_hash, 64 digits)
      "data": {                   # the data fingerprint
        "dataset": "dice", "num_samples": 468, "input_dim": 1024, "num_classes": 6,
        "subset_indices_sha256": "…",   # SHA-256 of the subset's int64 indices (null: whole split)
        "sha256": "…"                   # SHA-256 of the training inputs X (float64) then labels y (int64)
      },
      "files": {"status.json": "…", "trajectory.parquet": "…",
                "snapshots/step_00000100.safetensors": "…", ...},   # SHA-256 of each file's bytes
      "pending": {...},           # checksums of files being replaced right now (see below)
      "code": [{"step": 0, "code": "eoslab 0.1.0, git 8f149db"}, ...]
                                  # who trained it: each sitting whose code differs from the one
                                  # before, and the step it trained from (RunDir.record_code)
    }

Every write goes through :meth:`RunDir.transaction`: the new files are written to temporary
files and hashed, their checksums are recorded under ``pending``, the files are moved into
place, and then ``pending`` is merged into ``files``. A process killed between the two manifest
writes leaves ``pending`` standing; the next write settles it first (:meth:`RunDir.settle_pending`:
a pending file in place is recorded, any other pending entry dropped), so the commit of a set of
files and their checksums is atomic with respect to SIGKILL. A file whose bytes match neither its
``files`` nor its ``pending`` checksum is corrupt (:class:`CorruptFileError`) and is never trusted:
:mod:`eoslab.runs` resumes from the previous good snapshot and rebuilds the tables, the analysis
is recomputed, ``eoslab status`` and ``collect`` leave the run out. ``train`` and ``analyze``
compare ``config.toml`` and the data they load with the manifest and refuse a difference
(:class:`MismatchError`, naming every field that differs); ``status`` and ``collect`` compare
``config.toml`` with it. A run directory written before manifests existed (``config.toml`` but no
``manifest.json``) is adopted by the next ``train`` or ``analyze``, loudly.

Writers and readers of those files (:mod:`eoslab.runs`, :mod:`eoslab.tracker`,
:mod:`eoslab.sweeps`) take the paths from :class:`RunDir`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from .config import comparable
from .errors import CorruptFileError, MismatchError, RunBusyError, RunDirError
from .store import (
    WriteError,
    json_bytes,
    parquet_bytes,
    parse_json,
    parse_parquet,
    remove_leftovers,
    sha256_bytes,
    stage_bytes,
    write_bytes,
    write_text,
)

MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.toml"
STATUS_FILE = "status.json"
TRAJECTORY_FILE = "trajectory.parquet"
ANALYSIS_FILE = "analysis.parquet"
SNAPSHOT_DIR = "snapshots"
#: A tracker's run (:mod:`eoslab.tracker`): its data (X, y; :mod:`eoslab.data.stored`) and what it measured.
DATA_FILE = "data.safetensors"
TRACKER_FILE = "tracker.json"
LOCK_FILE = ".lock"
#: A sweep folder's own files (docs/rundir.md): the sweep config, the table of its points, and the
#: code of every invocation that ran it (:mod:`eoslab.provenance`).
SWEEP_FILE = "sweep.toml"
GRID_FILE = "grid.parquet"
CODE_FILE = "code.txt"
MANIFEST_FORMAT = 2
#: ``status.json`` states after training ended: trained (to the target, or to a step or time
#: limit), and those plus ``failed`` (a rerun does not train on); the other state is ``running``.
TRAINED_STATES = ("done", "stopped")
FINAL_STATES = (*TRAINED_STATES, "failed")
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
#: The columns a tracker's ``trajectory.parquet`` has after :data:`TRAJECTORY_SCHEMA`'s (docs/rundir.md):
#: the optimizer's step size, its stability threshold and its preconditioned sharpness (NaN where
#: unknown), λ¹ of G and R (NaN unless asked for), the optimizer in words.
TRACKER_COLUMNS = pa.schema(
    [
        ("lr", pa.float64()),
        ("threshold", pa.float64()),
        ("preconditioned_sharpness", pa.float64()),
        ("sharpness_G", pa.float64()),
        ("sharpness_R", pa.float64()),
        ("optimizer", pa.string()),
    ]
)
#: ``analysis.parquet``: long format, one row per value (``layer`` null for whole-network metrics).
ANALYSIS_SCHEMA = pa.schema(
    [("step", pa.int64()), ("t", pa.float64()), ("metric", pa.string()), ("layer", pa.int64()), ("value", pa.float64())]
)
#: Kinds of snapshot file: parameters θ_u (``step``) and the rest of the integrator state (``state``).
SNAPSHOT_KINDS = ("step", "state")


def warn(message: str) -> None:
    """A loud recovery: one line ``eoslab: warning: ...`` on stderr."""
    print(f"eoslab: warning: {message}", file=sys.stderr, flush=True)


def analysed_steps(snapshot_steps: list[int], *, skip_before: int, every: int) -> list[int]:
    """The snapshot steps the analysis covers: those at or after ``skip_before`` (the transient,
    D13 in docs/decisions.md), then every ``every``-th of them, in order.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return sorted(s for s in snapshot_steps if s >= skip_before)[::every]


def folder_kind(folder: str | Path) -> tuple[str, str] | None:
    """What ``folder`` holds, as ``(kind, the file that says so)``: a ``sweep folder``
    (``grid.parquet`` or ``sweep.toml``), a ``run directory`` (``manifest.json`` or
    ``config.toml``), or None (neither, or no such folder). ``eoslab train`` refuses a sweep
    folder, ``eoslab sweep`` a run directory, before touching it.
    """
    for kind, names in (("sweep folder", (GRID_FILE, SWEEP_FILE)), ("run directory", (MANIFEST_FILE, CONFIG_FILE))):
        for name in names:
            if (Path(folder) / name).exists():
                return kind, name
    return None


# ------------------------------------------------------------------------------ locks
#: Locks this process holds: lock file -> [fd, depth] (a lock is re-entrant within a process).
_HELD: dict[Path, list[int]] = {}


def _lock_owner(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, wait: bool = False, what: str = "run") -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively (``flock``; it goes with the process if that dies).

    Re-entrant within one process. With ``wait=False`` a lock held by another process raises
    :class:`RunBusyError` at once; a folder that cannot be created raises
    :class:`~eoslab.store.WriteError`.

    Args:
        what: what the folder is, for the message (``run``, ``sweep folder``).
    """
    folder = Path(folder)
    lock = folder.resolve() / LOCK_FILE
    if lock in _HELD:
        _HELD[lock][1] += 1
        try:
            yield
        finally:
            _HELD[lock][1] -= 1
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise WriteError(lock, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        raise RunBusyError(
            f"{folder}: this {what} is in use by another eoslab process{_lock_owner(lock)}; "
            f"wait for it to finish (or stop it) and rerun"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the pid is only for messages
    _HELD[lock] = [fd, 1]
    try:
        yield
    finally:
        del _HELD[lock]
        os.close(fd)


def lock_held(folder: str | Path) -> bool:
    """Whether another process holds ``folder/.lock`` now."""
    lock = Path(folder) / LOCK_FILE
    if lock.resolve() in _HELD:
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ config differences
def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _show(value: Any) -> str:
    if value is None:
        return "nothing (the default)"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def config_differences(current: dict, created: dict, where: str) -> list[str]:
    """``field: WHERE says X, the run was created with Y`` for every field of two config dicts
    (:func:`eoslab.config.to_dict`) that differs, in field order; keys added by a later eoslab
    count as absent while at their defaults (:func:`eoslab.config.comparable`).
    """
    a, b = _flatten(comparable(current)), _flatten(comparable(created))
    return [
        f"{key}: {where} says {_show(a.get(key))}, the run was created with {_show(b.get(key))}"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def describe_differences(differences: list[str], limit: int = 3) -> str:
    """The first ``limit`` differences joined with ``; `` (and how many more)."""
    more = len(differences) - limit
    return "; ".join(differences[:limit]) + (f"; and {more} more" if more > 0 else "")


_DATA_FIELDS = {
    "dataset": "the dataset",
    "num_samples": "the number of training samples",
    "input_dim": "the input dimension",
    "num_classes": "the number of classes",
    "subset_indices_sha256": "the SHA-256 of the subset's indices",
    "sha256": "the SHA-256 of the training data (X, y)",
}


def data_differences(current: dict, created: dict) -> list[str]:
    """What differs between two data fingerprints (:meth:`eoslab.runs.Problem.fingerprint`)."""
    out = []
    for key, name in _DATA_FIELDS.items():
        a, b = current.get(key), created.get(key)
        if a != b:
            short = lambda v: f"{v[:12]}…" if isinstance(v, str) and len(v) > 16 else _show(v)
            out.append(f"data: {name} is {short(a)} now, the run was created with {short(b)}")
    return out


# ------------------------------------------------------------------------------ the run directory
def code_sittings(manifest: dict[str, Any] | None) -> list[tuple[int, str]]:
    """``(step, code)`` of each sitting recorded in a manifest's ``code`` (docs/rundir.md), in order;
    empty for a run without a manifest or without the record.
    """
    return [(int(s["step"]), str(s["code"])) for s in (manifest or {}).get("code", [])]


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
    def manifest_file(self) -> Path:
        """``manifest.json``."""
        return self.path / MANIFEST_FILE

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

    def snapshot_name(self, kind: str, step: int) -> str:
        """``snapshots/<kind>_XXXXXXXX.safetensors`` of step u, relative to the run directory."""
        if kind not in SNAPSHOT_KINDS:
            raise ValueError(f"snapshot kind must be one of {SNAPSHOT_KINDS}, got {kind!r}")
        return f"{SNAPSHOT_DIR}/{kind}_{step:08d}.safetensors"

    def snapshot_path(self, kind: str, step: int) -> Path:
        """``snapshots/<kind>_XXXXXXXX.safetensors`` of step u (``kind``: step or state)."""
        return self.path / self.snapshot_name(kind, step)

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

    # -- lock ----------------------------------------------------------------------------
    def lock(self, *, wait: bool = False) -> contextlib.AbstractContextManager[None]:
        """Hold ``.lock`` (:func:`folder_lock`): one process at a time works on the run."""
        return folder_lock(self.path, wait=wait, what="run")

    def lock_held(self) -> bool:
        """Whether another process holds ``.lock`` now (the run is being worked on)."""
        return lock_held(self.path)

    def remove_leftovers(self) -> list[Path]:
        """Remove the temporary files of interrupted writes (call it holding the lock)."""
        return remove_leftovers(self.path) + remove_leftovers(self.snapshot_dir)

    # -- manifest ------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any] | None:
        """``manifest.json``, or None when there is none (a run not created yet, or written by an
        eoslab without manifests). An unreadable manifest raises :class:`RunDirError`.
        """
        try:
            data = self.manifest_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RunDirError(f"{self.manifest_file}: cannot read it ({e.strerror}); check the folder") from None
        try:
            m = parse_json(data, self.manifest_file)
            if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT or not isinstance(m.get("files"), dict):
                raise ValueError("not an eoslab manifest")
        except ValueError as e:
            raise RunDirError(
                f"{self.manifest_file}: unreadable ({e}), so nothing in this run can be verified; "
                f"move the run directory away and train it again"
            ) from None
        m.setdefault("pending", {})
        return m

    def settle_pending(self, manifest: dict[str, Any]) -> None:
        """Settle the ``pending`` checksums a killed write left in ``manifest`` (in place): a file
        whose bytes match its pending checksum was moved into place, so that checksum becomes the
        file's; any other pending entry (the file not moved, or gone) is dropped.
        """
        for name, digest in manifest["pending"].items():
            try:
                moved = sha256_bytes((self.path / name).read_bytes()) == digest
            except OSError:
                moved = False
            if moved:
                manifest["files"][name] = digest
        manifest["pending"] = {}

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        write_bytes(json_bytes(manifest), self.manifest_file)

    def create(self, config: dict[str, Any], config_sha256: str, data: dict[str, Any], config_text: str) -> None:
        """Start a run directory: the manifest (config, data fingerprint, no files yet), then
        ``config.toml`` (``config_text``).
        """
        self._write_manifest(
            {"format": MANIFEST_FORMAT, "config": config, "config_sha256": config_sha256, "data": data, "files": {}}
        )
        self.write_config_text(config_text)

    def write_config_text(self, text: str) -> None:
        """Write ``config.toml``."""
        write_text(text, self.config_file)

    def adopt(self, config: dict[str, Any], config_sha256: str, data: dict[str, Any]) -> None:
        """Record a manifest for a run directory written before manifests existed: its config,
        the data now, and the checksums of the files as they are (loudly: they are trusted as found).
        """
        files = {}
        for p in [self.status_file, self.trajectory_file, self.analysis_file, *self.snapshot_dir.glob("*.safetensors")]:
            if p.is_file():
                files[p.relative_to(self.path).as_posix()] = sha256_bytes(p.read_bytes())
        self._write_manifest(
            {"format": MANIFEST_FORMAT, "config": config, "config_sha256": config_sha256, "data": data, "files": files}
        )
        warn(
            f"{self.path} has no {MANIFEST_FILE} (written by an older eoslab): recorded its config, its data and "
            f"the checksums of its {len(files)} files as found"
        )

    def check_config(self, current: dict[str, Any], manifest: dict[str, Any]) -> None:
        """Refuse (:class:`MismatchError`) when ``current`` (``config.toml`` as loaded, as a dict)
        differs from the config the run was created with.
        """
        diff = config_differences(current, manifest["config"], CONFIG_FILE)
        if diff:
            raise MismatchError(
                f"{self.config_file} was changed after the run was created: {describe_differences(diff)}; "
                f"restore it (the original is in {MANIFEST_FILE}) or train the new config into another folder"
            )

    def check_data(self, current: dict[str, Any], manifest: dict[str, Any]) -> None:
        """Refuse (:class:`MismatchError`) when the data fingerprint ``current`` differs from the
        manifest's.
        """
        diff = data_differences(current, manifest["data"])
        if diff:
            raise MismatchError(
                f"{self.path}: the data differ from those the run was created with: {describe_differences(diff)}; "
                f"restore the data files (or data_root) the run used, or train into another folder"
            )

    # -- verified files --------------------------------------------------------------------
    def file_problem(self, name: str, data: bytes | None, manifest: dict[str, Any]) -> str | None:
        """None when the bytes ``data`` of file ``name`` (relative) match the manifest; else
        ``missing`` (data None), ``unrecorded`` or ``corrupt``.
        """
        if data is None:
            return "missing"
        expected = {manifest["files"].get(name), manifest["pending"].get(name)} - {None}
        if not expected:
            return "unrecorded"
        return None if sha256_bytes(data) in expected else "corrupt"

    def read_verified(self, name: str, manifest: dict[str, Any] | None, fix: str) -> bytes:
        """The bytes of file ``name`` (relative), checked against ``manifest`` (when there is one).

        Raises:
            CorruptFileError: missing, not recorded in the manifest, or not matching its
                checksum; the message ends with ``fix``.
        """
        path = self.path / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as e:
            raise CorruptFileError(path, "corrupt", f"cannot read it ({e.strerror})", fix) from None
        if data is None:
            raise CorruptFileError(path, "missing", "missing", fix)
        problem = None if manifest is None else self.file_problem(name, data, manifest)
        if problem == "unrecorded":
            raise CorruptFileError(path, problem, f"not recorded in {MANIFEST_FILE}", fix)
        if problem == "corrupt":
            raise CorruptFileError(path, problem, f"does not match its checksum in {MANIFEST_FILE} (corrupt)", fix)
        return data

    def read_status(self, manifest: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """``status.json`` as a dict (checked against ``manifest`` when given), or None when it is
        missing, unreadable or does not match its checksum.
        """
        try:
            status = parse_json(self.read_verified(STATUS_FILE, manifest, ""), self.status_file)
        except (RunDirError, ValueError):
            return None
        return status if isinstance(status, dict) else None

    def read_table(self, name: str, manifest: dict[str, Any] | None, fix: str) -> pa.Table:
        """A verified Parquet table of the run (:meth:`read_verified`); an unparsable file raises
        :class:`CorruptFileError` too.
        """
        data = self.read_verified(name, manifest, fix)
        try:
            return parse_parquet(data, self.path / name)
        except OSError as e:
            raise CorruptFileError(self.path / name, "corrupt", f"not a readable Parquet file ({e})", fix) from None

    # -- writing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Write files together, recording their checksums (module docstring). The files are
        moved into place in the order they were added; nothing is written if the block raises.
        """
        tx = Transaction(self)
        try:
            yield tx
        except BaseException:
            tx.discard()
            raise
        tx.commit()

    def write_table(self, name: str, table: pa.Table) -> None:
        """Write one Parquet table of the run (a one-file :meth:`transaction`)."""
        with self.transaction() as tx:
            tx.write(name, parquet_bytes(table))

    def write_status(self, status: dict[str, Any]) -> None:
        """Write ``status.json`` (a one-file :meth:`transaction`)."""
        with self.transaction() as tx:
            tx.write(STATUS_FILE, json_bytes(status))

    def record_code(self, identity: str, step: int) -> str | None:
        """Record in the manifest's ``code`` that ``identity`` (:func:`eoslab.provenance.code_identity`)
        trains the run from ``step`` on (call it holding the lock). Sittings from ``step`` on are
        dropped first (their steps were abandoned: the run restarts before them); a sitting is added
        only when its code differs from the last one's. Returns that last code when it differs and
        trained steps before ``step``: the run now mixes two versions of the code. None otherwise
        (and for a run directory without a manifest, which records nothing).
        """
        manifest = self.manifest()
        if manifest is None:
            return None
        recorded = manifest.get("code", [])
        kept = [s for s in recorded if s["step"] < step]
        last = kept[-1]["code"] if kept else None
        if last != identity:
            kept.append({"step": step, "code": identity})
        if kept != recorded:
            manifest["code"] = kept
            self._write_manifest(manifest)
        return last if last not in (None, identity) else None

    def code_sittings(self) -> list[tuple[int, str]]:
        """``(step, code)`` of each sitting :meth:`record_code` recorded, in order (empty when none)."""
        return code_sittings(self.manifest())

    def add_note(self, note: str) -> None:
        """Warn (stderr) and append ``note`` to ``status.json``'s ``notes`` (when it is readable)."""
        warn(note)
        manifest = self.manifest()
        status = self.read_status(manifest)
        if status is not None:
            status["notes"] = [*status.get("notes", []), note]
            self.write_status(status)


class Transaction:
    """Files written together into a run directory (:meth:`RunDir.transaction`)."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.staged: list[tuple[str, Path, str]] = []  # (name, temporary file, sha256)
        self.removed: list[str] = []

    def write(self, name: str, data: bytes) -> None:
        """Stage file ``name`` (relative to the run directory) with bytes ``data``."""
        self.staged.append((name, stage_bytes(data, self.run.path / name), sha256_bytes(data)))

    def remove(self, name: str) -> None:
        """Remove file ``name`` (and its checksum) when the transaction commits."""
        self.removed.append(name)

    def discard(self) -> None:
        """Drop the staged files."""
        for _, tmp, _ in self.staged:
            tmp.unlink(missing_ok=True)
        self.staged = []

    def commit(self) -> None:
        """Record the new checksums as pending, move the files into place, then record them as
        the files' checksums (a run directory without a manifest gets the files only).
        """
        manifest = self.run.manifest()
        try:
            if manifest is not None:
                self.run.settle_pending(manifest)
                manifest["pending"] = {name: digest for name, _, digest in self.staged}
                self.run._write_manifest(manifest)
            for name, tmp, _ in self.staged:
                try:
                    os.replace(tmp, self.run.path / name)
                except OSError as e:
                    raise WriteError(self.run.path / name, e) from None
        finally:
            self.discard()
        for name in self.removed:
            (self.run.path / name).unlink(missing_ok=True)
        if manifest is not None:
            manifest["files"].update(manifest.pop("pending"))
            for name in self.removed:
                manifest["files"].pop(name, None)
            manifest["pending"] = {}
            self.run._write_manifest(manifest)
