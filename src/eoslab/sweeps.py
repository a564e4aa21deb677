"""Sweeps: a grid of run configs, trained and analysed point by point (docs/rundir.md, docs/math.md §8).

A sweep config is a TOML file with a ``[base]`` :class:`~eoslab.config.RunConfig` and a ``[grid]``
table of lists::

    [base.model]                      # any RunConfig section; unset keys take their defaults
    depth = 6
    width = 512

    [grid]
    criteria = ["ce"]                 # default: [base.criterion.name]
    init_seeds = [0, 1, 2, 3]         # default: [base.model.init_seed]
    subset_seeds = [0, 1, 2, 3]       # default: [base.data.subset_seed]
    n = "paper"                       # subset sizes for every dataset: a list, one int, or "paper"
    "solver.eta_max" = [0.01, 0.02]  # any other RunConfig field (also as [grid.solver] eta_max = [...])

    [[grid.datasets]]                 # default: base.data as it is
    name = "dice"
    n = [468, 937]                    # overrides grid.n for this dataset
    options = { size = 32 }           # loader options (merged over base.data.options of the same name)

``"paper"`` takes the paper's subset sizes of the (dataset, criterion) (:mod:`eoslab.data.subsets`).
:func:`load_sweep` checks everything at load time and raises ConfigError naming the field
(``grid.datasets[1].n: ...``). Expansion order is datasets × criteria × sizes × other fields (in
file order) × init seeds × subset seeds; each point is a resolved RunConfig (target loss filled in)
whose :func:`~eoslab.config.config_hash` is its ``run_id``. k = n_L is filled in by
:func:`eoslab.runs.train` once the data is loaded, so the run directory's ``config.toml`` may hold
more than the point's config; the run_id is the hash of the point's config as expanded here.

A sweep folder ``DIR`` holds ``sweep.toml`` (a copy of the sweep config), ``grid.parquet`` (one
row per point) and ``runs/<run_id>/``, one run directory per point. :func:`run_sweep` trains and
analyses every point that is not finished, on local worker processes or on Ray; a rerun skips
finished points and resumes the others from their snapshots (:func:`eoslab.runs.train`), and one
failing point is recorded in its ``status.json`` and never stops the rest. :func:`sweep_status`
tells where each point stands; :func:`collect` joins the points' configs with their analyses.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import itertools
import json
import os
import subprocess
import sys
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import tomli_w

from .config import ConfigError, RunConfig, config_hash, from_dict, load_config, resolve, to_dict, to_toml

__all__ = [
    "COLLECT_SCHEMA",
    "GridPoint",
    "PointStatus",
    "Sweep",
    "SweepResult",
    "collect",
    "expand_grid",
    "grid_table",
    "load_sweep",
    "parse_sweep",
    "point_status",
    "run_point",
    "run_sweep",
    "sweep_status",
]

SWEEP_FILE = "sweep.toml"
GRID_FILE = "grid.parquet"
RUNS_DIR = "runs"
LOCK_FILE = ".lock"
LOG_FILE = "sweep.log"

#: Named grid axes; every other ``grid`` key is a dotted RunConfig field.
_NAMED_AXES = ("datasets", "n", "criteria", "init_seeds", "subset_seeds")
#: Fields set by a named axis, and which axis to use instead.
_AXIS_OF_FIELD = {
    "data.name": "datasets",
    "data.options": "datasets",
    "data.n": "n",
    "data.subset_seed": "subset_seeds",
    "model.init_seed": "init_seeds",
    "criterion.name": "criteria",
}
#: Keys of a ``[[grid.datasets]]`` entry besides ``name``, ``n`` and ``options``.
_DATASET_FIELDS = ("split", "nested", "data_root")

#: Columns of the collected table (the report's input, :mod:`eoslab.report`).
COLLECT_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("dataset", pa.string()),
        ("n", pa.int64()),
        ("criterion", pa.string()),
        ("init_seed", pa.int64()),
        ("subset_seed", pa.int64()),
        ("width", pa.int64()),
        ("depth", pa.int64()),
        ("solver", pa.string()),
        ("eta", pa.float64()),
        ("eta_max", pa.float64()),
        ("step", pa.int64()),
        ("t", pa.float64()),
        ("metric", pa.string()),
        ("layer", pa.int64()),
        ("value", pa.float64()),
    ]
)
_RUN_COLUMNS = [f.name for f in COLLECT_SCHEMA][:11]


# ============================================================================ grid
@dataclass(frozen=True)
class GridPoint:
    """One point of a sweep grid.

    Attributes:
        index: position in the expansion order.
        run_id: :func:`~eoslab.config.config_hash` of ``config``; the run directory's name.
        config: the resolved RunConfig of the point.
        fields: values of the dotted-field axes of the grid (``{"solver.eta_max": 0.1}``).
    """

    index: int
    run_id: str
    config: RunConfig
    fields: dict[str, Any] = field(default_factory=dict)

    def columns(self) -> dict[str, Any]:
        """The point's row of ``grid.parquet`` (without the dotted-field axes and the config)."""
        c = self.config
        return {
            "run_id": self.run_id,
            "dataset": c.data.name,
            "n": c.data.n,
            "criterion": c.criterion.name,
            "init_seed": c.model.init_seed,
            "subset_seed": c.data.subset_seed,
            "width": c.model.width,
            "depth": c.model.depth,
            "solver": c.solver.method,
            "eta": c.solver.eta,
            "eta_max": c.solver.eta_max,
        }

    def label(self) -> str:
        """A short human description, e.g. ``dice n=468 ce seeds 0/1``."""
        c = self.config
        extra = "".join(f" {k}={v}" for k, v in self.fields.items())
        return f"{c.data.name} n={c.data.n} {c.criterion.name} seeds {c.model.init_seed}/{c.data.subset_seed}{extra}"


@dataclass
class Sweep:
    """A parsed sweep config.

    Attributes:
        base: the base RunConfig.
        points: the expanded grid, in order.
        text: the sweep config as TOML (the file's own text when loaded from a file).
    """

    base: RunConfig
    points: list[GridPoint]
    text: str


def load_sweep(path: str | Path) -> Sweep:
    """Load, validate and expand a sweep config file; ConfigError names the file and the field."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"sweep config not found: {path}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return parse_sweep(data, text=text)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_sweep(data: dict, *, text: str | None = None) -> Sweep:
    """A validated, expanded :class:`Sweep` from nested dicts (as parsed from TOML)."""
    unknown = sorted(set(data) - {"base", "grid"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (a sweep config has [base] and [grid])")
    base_data = data.get("base", {})
    if not isinstance(base_data, dict):
        raise ConfigError(f"base: expected a table, got {type(base_data).__name__}")
    try:
        base = from_dict(base_data)
    except ConfigError as e:
        raise ConfigError(f"base.{e}") from None
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError(f"grid: expected a table, got {type(grid).__name__}")
    return Sweep(base=base, points=expand_grid(base, grid), text=text if text is not None else tomli_w.dumps(data))


def _as_list(name: str, value: Any, kind: type | tuple[type, ...]) -> list:
    """A non-empty list of ``kind`` without repeats (a scalar counts as a one-element list)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"{name}: must not be empty")
    for i, v in enumerate(values):
        if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):  # TOML true is no int
            raise ConfigError(
                f"{name}[{i}]: expected {' or '.join(k.__name__ for k in kinds)}, got {type(v).__name__} {v!r}"
            )
    for i, v in enumerate(values):
        if v in values[:i]:
            raise ConfigError(f"{name}[{i}]: {v!r} is listed twice")
    return values


def _sizes(name: str, value: Any) -> list[int] | str:
    """``"paper"`` or a list of positive subset sizes."""
    if value == "paper":
        return "paper"
    sizes = _as_list(name, value, int)
    for i, n in enumerate(sizes):
        if n < 1:
            raise ConfigError(f"{name}[{i}]: must be > 0, got {n}")
    return sizes


def _datasets(grid: dict, base: RunConfig) -> list[dict]:
    """The dataset entries as ``{"data": {DataConfig overrides}, "n": sizes | "paper" | None, "where":
    the entry's field name}``; names are checked against the dataset registry.
    """
    from .data import available

    entries = grid.get("datasets", [base.data.name])
    if not isinstance(entries, list) or not entries:
        raise ConfigError("grid.datasets: expected a non-empty list of dataset names or tables")
    out = []
    for i, entry in enumerate(entries):
        where = f"grid.datasets[{i}]" if "datasets" in grid else "base.data"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a dataset name or a table, got {type(entry).__name__}")
        unknown = sorted(set(entry) - {"name", "n", "options", *_DATASET_FIELDS})
        if unknown:
            raise ConfigError(
                f"{where}.{unknown[0]}: unknown key (allowed: name, n, options, {', '.join(_DATASET_FIELDS)})"
            )
        if not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}.name: expected the dataset's name (str), got {entry.get('name')!r}")
        if entry["name"] not in available():
            raise ConfigError(f"{where}.name: unknown dataset {entry['name']!r}; available: {', '.join(available())}")
        options = entry.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{where}.options: expected a table, got {type(options).__name__}")
        inherited = base.data.options if entry["name"] == base.data.name else {}
        data = {
            "name": entry["name"],
            "options": {**inherited, **options},
            **{k: entry[k] for k in _DATASET_FIELDS if k in entry},
        }
        out.append({"data": data, "n": _sizes(f"{where}.n", entry["n"]) if "n" in entry else None, "where": where})
    return out


def _field_axes(grid: dict, base: RunConfig) -> dict[str, list]:
    """The dotted-field axes: ``"solver.eta_max" = [...]`` or ``[grid.solver] eta_max = [...]``."""
    sections = {f.name for f in dataclasses.fields(RunConfig)}
    flat: dict[str, Any] = {}
    for key, value in grid.items():
        if key in _NAMED_AXES:
            continue
        if key in sections and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    axes = {}
    base_dict = to_dict(base)
    for key, value in flat.items():
        section, _, name = key.partition(".")
        if key in _AXIS_OF_FIELD:
            raise ConfigError(f"grid.{key}: set it through grid.{_AXIS_OF_FIELD[key]}")
        sub = getattr(base, section, None) if section in sections else None
        if sub is None or name not in {f.name for f in dataclasses.fields(sub)}:
            raise ConfigError(
                f"grid.{key}: unknown key (named axes: {', '.join(_NAMED_AXES)}; "
                f'other keys are RunConfig fields such as "solver.eta_max")'
            )
        values = _as_list(f"grid.{key}", value, (int, float, str, bool, dict))
        for j, v in enumerate(values):  # each value must make a valid config on its own
            trial = copy.deepcopy(base_dict)
            trial.setdefault(section, {})[name] = v
            try:
                from_dict(trial)
            except ConfigError as e:
                raise ConfigError(f"grid.{key}[{j}]: {e}") from None
        axes[key] = values
    return axes


def expand_grid(base: RunConfig, grid: dict) -> list[GridPoint]:
    """The grid's points in a deterministic order (see the module docstring).

    Raises ConfigError naming the field for a bad entry, a point without a subset size, a size the
    paper does not have, or two points that are the same config.
    """
    from .data.subsets import paper_subset_sizes

    criteria = _as_list("grid.criteria", grid.get("criteria", [base.criterion.name]), str)
    for i, c in enumerate(criteria):
        if c not in ("ce", "mse"):
            raise ConfigError(f"grid.criteria[{i}]: must be one of ce, mse, got {c!r}")
    init_seeds = _as_list("grid.init_seeds", grid.get("init_seeds", [base.model.init_seed]), int)
    subset_seeds = _as_list("grid.subset_seeds", grid.get("subset_seeds", [base.data.subset_seed]), int)
    for name, seeds in (("grid.init_seeds", init_seeds), ("grid.subset_seeds", subset_seeds)):
        for i, s in enumerate(seeds):
            if s < 0:
                raise ConfigError(f"{name}[{i}]: must be >= 0, got {s}")
    default_n = _sizes("grid.n", grid["n"]) if "n" in grid else ([base.data.n] if base.data.n else None)
    datasets = _datasets(grid, base)
    axes = _field_axes(grid, base)

    base_dict = to_dict(base)
    points: list[GridPoint] = []
    seen: dict[str, int] = {}
    for ds in datasets:
        sizes_spec = ds["n"] if ds["n"] is not None else default_n
        where = f"{ds['where']}.n" if ds["n"] is not None else "grid.n"
        for criterion in criteria:
            if sizes_spec is None:
                raise ConfigError(
                    f"{where}: no subset size for {ds['data']['name']}; set grid.n, {ds['where']}.n or base.data.n"
                )
            if sizes_spec == "paper":
                try:
                    sizes = list(paper_subset_sizes(ds["data"]["name"], criterion))
                except ValueError as e:
                    raise ConfigError(f"{where}: {e}") from None
            else:
                sizes = sizes_spec
            for n, combo, init_seed, subset_seed in itertools.product(
                sizes, itertools.product(*axes.values()), init_seeds, subset_seeds
            ):
                d = copy.deepcopy(base_dict)
                d.setdefault("data", {}).update(ds["data"], n=n, subset_seed=subset_seed)
                d.setdefault("model", {})["init_seed"] = init_seed
                d.setdefault("criterion", {})["name"] = criterion
                fields = dict(zip(axes, combo))
                for key, value in fields.items():
                    section, _, name = key.partition(".")
                    d.setdefault(section, {})[name] = value
                try:
                    cfg = resolve(from_dict(d))
                except ConfigError as e:
                    raise ConfigError(f"grid point {len(points)} ({ds['where']}, n={n}, {criterion}): {e}") from None
                point = GridPoint(len(points), config_hash(cfg), cfg, fields)
                if point.run_id in seen:
                    raise ConfigError(
                        f"grid: points {seen[point.run_id]} and {point.index} are the same config ({point.label()})"
                    )
                seen[point.run_id] = point.index
                points.append(point)
    return points


def grid_table(points: list[GridPoint]) -> pa.Table:
    """``grid.parquet``: one row per point: ``index``, the run columns of the collected table, one
    column per dotted-field axis (tables as JSON text), and ``config`` (the point's TOML).
    """

    def cell(v: Any) -> Any:
        return json.dumps(v, sort_keys=True) if isinstance(v, dict) else v

    table = pa.Table.from_pylist(
        [
            {"index": p.index, **p.columns(), **{k: cell(v) for k, v in p.fields.items()}, "config": to_toml(p.config)}
            for p in points
        ]
    )
    types = {"index": pa.int64(), **{f.name: f.type for f in COLLECT_SCHEMA}}
    return table.cast(pa.schema([pa.field(c, types.get(c, table.schema.field(c).type)) for c in table.column_names]))


# ============================================================================ one point
@dataclass
class PointStatus:
    """Where one grid point stands, read from its run directory.

    Attributes:
        run_id: the point's run id.
        state: ``done`` (trained, and analysed when analysis is wanted), ``running`` (a process
            holds the run directory), ``failed`` or ``pending``.
        step, loss: the latest step and loss recorded in ``status.json`` (None before training).
        reason: why it failed (``failed``), or ``status.json``'s reason.
        detail: a short note (``analysis pending``, ``interrupted at step 40``, ...).
        retry: a failure that a rerun retries (an exception, not a diverged run).
    """

    run_id: str
    state: str
    step: int | None = None
    loss: float | None = None
    reason: str | None = None
    detail: str = ""
    retry: bool = False


def _read_status(run_dir: Path) -> dict | None:
    from .store import read_json

    try:
        return read_json(run_dir / "status.json")
    except (OSError, ValueError):
        return None


def _analysis_complete(run_dir: Path) -> bool:
    """Whether ``analysis.parquet`` holds every snapshot step that :func:`eoslab.analysis.analyze_run`
    analyses with the run's ``analysis`` settings (steps ≥ skip_before, every ``every``-th).
    """
    import pyarrow.parquet as pq

    path = run_dir / "analysis.parquet"
    if not path.exists():
        return False
    try:
        a = load_config(run_dir / "config.toml").analysis
        have = set(pq.read_table(path, columns=["step"])["step"].to_pylist())
    except (OSError, ConfigError, pa.ArrowInvalid):
        return False
    steps = sorted(int(p.stem.split("_")[1]) for p in (run_dir / "snapshots").glob("step_*.safetensors"))
    return set([s for s in steps if s >= a.skip_before][:: a.every]) <= have


def _lock_held(run_dir: Path) -> bool:
    """Whether another process holds the run directory's lock (a point being worked on)."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def point_status(run_dir: str | Path, *, analysis: bool = True) -> PointStatus:
    """Where the grid point in ``run_dir`` stands (see :class:`PointStatus`)."""
    run_dir = Path(run_dir)
    if run_dir.is_dir() and _lock_held(run_dir):
        s = _read_status(run_dir) or {}
        return PointStatus(
            run_dir.name, "running", s.get("step"), s.get("loss"), None, "analysing" if s.get("state") == "done" else ""
        )
    return _files_status(run_dir, analysis)


def _files_status(run_dir: Path, analysis: bool) -> PointStatus:
    """:func:`point_status` from the files alone (for the holder of the lock)."""
    status = _read_status(run_dir) if run_dir.is_dir() else None
    run_id = run_dir.name
    if status is None:
        return PointStatus(run_id, "pending")
    state, step, loss, reason = status.get("state"), status.get("step"), status.get("loss"), status.get("reason")
    if state == "failed":
        where = status.get("failed_in")
        return PointStatus(
            run_id, "failed", step, loss, reason, f"in {where}; retried on rerun" if where else "", retry=bool(where)
        )
    if state == "done":
        if not analysis or _analysis_complete(run_dir):
            return PointStatus(run_id, "done", step, loss, reason)
        return PointStatus(run_id, "pending", step, loss, reason, "trained; analysis pending")
    return PointStatus(run_id, "pending", step, loss, reason, f"interrupted at step {step}; resumes")


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` exclusively (waiting for another holder), so one process at a time
    works on a run directory; the lock goes with the process if it dies.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _record_failure(run_dir: Path, stage: str, reason: str, train_status: dict | None) -> None:
    """Write a ``failed`` status.json for an exception in ``stage`` (train or analysis), keeping
    the last step/loss; ``failed_in`` marks it as retryable on a rerun.
    """
    from .store import write_json

    s = train_status or {}
    status = {
        "state": "failed",
        "reason": reason,
        "step": s.get("step"),
        "t": s.get("t"),
        "loss": s.get("loss"),
        "failed_in": stage,
    }
    if stage == "analysis":
        status["train_status"] = train_status
    write_json(status, run_dir / "status.json")


def _clear_retryable_failure(run_dir: Path) -> None:
    """Undo a failure recorded by :func:`_record_failure` so the rerun retries: a training failure
    loses its status.json (train resumes from the snapshots), an analysis failure gets the
    training status back.
    """
    from .store import write_json

    status = _read_status(run_dir)
    if not status or status.get("state") != "failed" or "failed_in" not in status:
        return
    if status["failed_in"] == "analysis" and status.get("train_status"):
        write_json(status["train_status"], run_dir / "status.json")
    else:
        (run_dir / "status.json").unlink(missing_ok=True)


def run_point(config: RunConfig, run_dir: str | Path, *, analysis: bool = True) -> PointStatus:
    """Train (:func:`eoslab.runs.train`) and analyse (:func:`eoslab.analysis.analyze_run`) one grid
    point in ``run_dir``, resuming what a previous attempt left.

    Never raises for a failing point: a diverging run is failed by train; an exception (a missing
    data file, an analysis error) is written to ``status.json`` as ``failed`` with its reason and
    ``failed_in`` (train or analysis), and its traceback goes to stderr. Returns the point's status.
    """
    run_dir = Path(run_dir)
    with _locked(run_dir):
        if _files_status(run_dir, analysis).state == "done":
            return _files_status(run_dir, analysis)
        _clear_retryable_failure(run_dir)
        try:
            from .runs import train

            status = train(config, run_dir, progress=False)
        except Exception as e:
            traceback.print_exc()
            _record_failure(run_dir, "train", f"{type(e).__name__}: {e}", _read_status(run_dir))
        else:
            if status.get("state") == "done" and analysis:
                try:
                    from .analysis import analyze_run

                    analyze_run(run_dir, progress=False)
                except Exception as e:
                    traceback.print_exc()
                    _record_failure(run_dir, "analysis", f"analysis: {type(e).__name__}: {e}", status)
        return _files_status(run_dir, analysis)


def _pin_threads(threads: int) -> None:
    """Limit torch's intra-op threads (and OpenMP/MKL for libraries loaded later)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _point_from_toml(config_toml: str, run_dir: str, analysis: bool, threads: int) -> PointStatus:
    """:func:`run_point` on a config given as TOML text, with ``threads`` torch threads (the job
    of an executor's worker).
    """
    _pin_threads(threads)
    return run_point(from_dict(tomllib.loads(config_toml)), run_dir, analysis=analysis)


def _die_with_parent(parent: int) -> None:
    """Get SIGKILL when the sweep process ``parent`` dies (Linux), so a killed sweep leaves no
    worker behind; exit at once if it is already gone.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(3)


def _worker_main() -> int:
    """Entry point of a local worker process: ``argv = RUN_DIR ANALYSIS(0|1) THREADS PARENT_PID``,
    the point's config as TOML on stdin. Exit code 0 when the point is done, 1 when it failed.
    """
    run_dir, analysis, threads, parent = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
    _die_with_parent(parent)
    return 0 if _point_from_toml(sys.stdin.read(), run_dir, analysis, threads).state == "done" else 1


# ============================================================================ executors
@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        out_dir: the sweep folder.
        statuses: the final status of every point, in grid order.
        skipped: points that were already finished (or failed for good) before this call.
    """

    out_dir: Path
    statuses: list[PointStatus]
    skipped: int

    def count(self, state: str) -> int:
        return sum(s.state == state for s in self.statuses)

    @property
    def failed(self) -> list[PointStatus]:
        return [s for s in self.statuses if s.state == "failed"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _final_without_work(status: PointStatus) -> bool:
    """Done, or failed by train's own verdict (a diverged run), which a rerun would not change."""
    return status.state == "done" or (status.state == "failed" and not status.retry)


def run_sweep(
    sweep: Sweep,
    out_dir: str | Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    analysis: bool = True,
    progress: bool = True,
) -> SweepResult:
    """Run every unfinished point of ``sweep`` under ``out_dir`` (see the module docstring).

    Args:
        executor: ``local`` (worker processes on this machine) or ``ray``.
        workers: local: concurrent worker processes (default: cores // cpus_per_run), each pinned
            to max(1, cores // workers) threads. Ray without ``address``: the local Ray instance
            gets workers × cpus_per_run CPUs (default: all cores).
        address: Ray: the cluster to join (``HOST:PORT`` or ``ray://...``); None starts a local one.
        cpus_per_run, gpus_per_run: Ray: resources of each point's task (fractional GPUs let
            several small runs share one); torch gets max(1, ⌊cpus_per_run⌋) threads.
        analysis: also analyse each finished run.
        progress: an overall progress bar on stderr.
    """
    from .store import write_parquet, write_text

    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if cpus_per_run <= 0 or gpus_per_run < 0 or (workers is not None and workers < 1):
        raise ValueError("need workers >= 1, cpus_per_run > 0 and gpus_per_run >= 0")
    out_dir = Path(out_dir)
    runs = out_dir / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    write_text(sweep.text, out_dir / SWEEP_FILE)
    write_parquet(grid_table(sweep.points), out_dir / GRID_FILE)

    statuses = {p.run_id: point_status(runs / p.run_id, analysis=analysis) for p in sweep.points}
    # largest subsets first: the longest runs start early, so no worker idles at the end
    todo = sorted(
        (p for p in sweep.points if not _final_without_work(statuses[p.run_id])), key=lambda p: -(p.config.data.n or 0)
    )
    skipped = len(sweep.points) - len(todo)
    with _SweepProgress(progress, len(sweep.points), skipped, statuses.values()) as bar:

        def finished(point: GridPoint, status: PointStatus) -> None:
            statuses[point.run_id] = status
            bar.finished(point, status)

        if executor == "local":
            n_workers = workers or max(1, int(_cores() // cpus_per_run))
            _run_local(todo, runs, analysis, n_workers, max(1, _cores() // n_workers), finished)
        else:
            _run_ray(todo, runs, analysis, address, workers, cpus_per_run, gpus_per_run, finished)
    return SweepResult(out_dir, [statuses[p.run_id] for p in sweep.points], skipped)


def _after_worker(run_dir: Path, analysis: bool, what: str) -> PointStatus:
    """The status of a point whose worker ended; if it ended without a verdict (killed, crashed),
    record the failure with ``what`` happened.
    """
    status = point_status(run_dir, analysis=analysis)
    if status.state in ("done", "failed"):
        return status
    stage = "analysis" if (_read_status(run_dir) or {}).get("state") == "done" else "train"
    _record_failure(run_dir, stage, what, _read_status(run_dir))
    return point_status(run_dir, analysis=analysis)


def _run_local(
    todo: list[GridPoint],
    runs: Path,
    analysis: bool,
    workers: int,
    threads: int,
    finished: Callable[[GridPoint, PointStatus], None],
) -> None:
    """Run the points on ``workers`` worker processes (one fresh Python process per point, its
    output appended to ``RUN_DIR/sweep.log``), each with ``threads`` threads.
    """
    env = {**os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    code = "import sys; from eoslab.sweeps import _worker_main; sys.exit(_worker_main())"
    queue = list(reversed(todo))
    running: dict[subprocess.Popen, GridPoint] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                point = queue.pop()
                run_dir = runs / point.run_id
                run_dir.mkdir(parents=True, exist_ok=True)
                with open(run_dir / LOG_FILE, "ab") as log:
                    proc = subprocess.Popen(
                        [sys.executable, "-c", code, str(run_dir), str(int(analysis)), str(threads), str(os.getpid())],
                        stdin=subprocess.PIPE,
                        stdout=log,
                        stderr=log,
                        env=env,
                    )
                proc.stdin.write(to_toml(point.config).encode())
                proc.stdin.close()
                running[proc] = point
            time.sleep(0.1)
            for proc in [p for p in running if p.poll() is not None]:
                point = running.pop(proc)
                rc = proc.returncode
                what = (
                    f"worker killed by signal {-rc}" if rc < 0 else f"worker exited with code {rc}"
                ) + f" (see {LOG_FILE})"
                finished(point, _after_worker(runs / point.run_id, analysis, what))
    finally:
        for proc in running:  # interrupted: stop our own workers
            proc.kill()
            proc.wait()


def _run_ray(
    todo: list[GridPoint],
    runs: Path,
    analysis: bool,
    address: str | None,
    workers: int | None,
    cpus_per_run: float,
    gpus_per_run: float,
    finished: Callable[[GridPoint, PointStatus], None],
) -> None:
    """Run the points as Ray tasks with ``cpus_per_run``/``gpus_per_run`` resources each. Joins
    ``address`` (or the Ray instance this process is already connected to); otherwise starts a
    local instance and shuts it down at the end. The sweep folder must be visible to every node.
    """
    import ray

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            num_cpus = int(workers * cpus_per_run) if workers else _cores()
            ray.init(address="local", num_cpus=max(1, num_cpus), include_dashboard=False, log_to_driver=False)
        started = True
    try:
        task = ray.remote(_point_from_toml).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run)
        threads = max(1, int(cpus_per_run))
        refs = {}
        for point in todo:
            (runs / point.run_id).mkdir(parents=True, exist_ok=True)
            refs[task.remote(to_toml(point.config), str(runs / point.run_id), analysis, threads)] = point
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            point = refs.pop(ready[0])
            try:
                status = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the worker died, or the task could not run
                status = _after_worker(runs / point.run_id, analysis, f"ray task failed: {type(e).__name__}: {e}")
            finished(point, status)
    finally:
        if started:
            ray.shutdown()


class _SweepProgress:
    """The overall progress bar of a sweep (points finished / total, done and failed counts), on
    stderr; failures are printed above it as they happen.
    """

    def __init__(self, enabled: bool, total: int, skipped: int, initial: Any) -> None:
        self.enabled, self.total, self.finished_count = enabled, total, skipped
        self.counts = {"done": 0, "failed": 0}
        for s in initial:
            if _final_without_work(s):
                self.counts[s.state] += 1

    def __enter__(self) -> _SweepProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("[bold]sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self.bar.start()
            self.task = self.bar.add_task(self._text(), total=self.total, completed=self.finished_count)
        return self

    def _text(self) -> str:
        return f"{self.counts['done']} done, {self.counts['failed']} failed"

    def finished(self, point: GridPoint, status: PointStatus) -> None:
        self.counts["failed" if status.state == "failed" else "done"] += 1
        if self.enabled:
            if status.state == "failed":
                from rich.markup import escape

                self.bar.console.print(
                    f"[red]failed[/red] {point.run_id} ({escape(point.label())}): {escape(str(status.reason))}",
                    highlight=False,
                )
            self.bar.update(self.task, advance=1, description=self._text())

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.stop()


# ============================================================================ reading a sweep
def _grid(sweep_dir: Path) -> pa.Table:
    from .store import read_parquet

    if not (sweep_dir / GRID_FILE).exists():
        raise FileNotFoundError(f"{sweep_dir} is not a sweep folder (no {GRID_FILE}); run `eoslab sweep` first")
    return read_parquet(sweep_dir / GRID_FILE)


def sweep_status(sweep_dir: str | Path, *, analysis: bool = True) -> list[tuple[dict, PointStatus]]:
    """``(grid row, status)`` of every point of the sweep in ``sweep_dir``, in grid order."""
    sweep_dir = Path(sweep_dir)
    return [
        (row, point_status(sweep_dir / RUNS_DIR / row["run_id"], analysis=analysis))
        for row in _grid(sweep_dir).drop_columns(["config"]).to_pylist()
    ]


def collect(sweep_dir: str | Path) -> pa.Table:
    """One tidy long table of a sweep: every finished point's analysis rows (``step, t, metric,
    layer, value``) with the point's run columns in front (:data:`COLLECT_SCHEMA`), in grid order.

    Points that are not done (pending, running, failed, not fully analysed) are left out.
    """
    from .store import read_parquet

    sweep_dir = Path(sweep_dir)
    parts = []
    for row, status in sweep_status(sweep_dir):
        if status.state != "done":
            continue
        a = read_parquet(sweep_dir / RUNS_DIR / row["run_id"] / "analysis.parquet")
        cols = {c: pa.array([row[c]] * a.num_rows, COLLECT_SCHEMA.field(c).type) for c in _RUN_COLUMNS}
        cols.update({c: a[c].cast(COLLECT_SCHEMA.field(c).type) for c in ("step", "t", "metric", "layer", "value")})
        parts.append(pa.table(cols, schema=COLLECT_SCHEMA))
    return pa.concat_tables(parts) if parts else COLLECT_SCHEMA.empty_table()
