"""The sweep config and its grid: ``[base]`` + ``[grid]`` expanded into resolved run configs (docs/math.md §8).

A sweep config is a TOML file (or a preset's name, :mod:`eoslab.presets`) with a ``[base]``
:class:`~eoslab.config.RunConfig` and a ``[grid]`` table of lists::

    [base.model]                      # any RunConfig section; unset keys take their defaults
    depth = 6
    width = 512

    [grid]
    criteria = ["ce"]                 # default: [base.criterion.name]
    init_seeds = [0, 1, 2, 3]         # default: [base.model.init_seed]
    subset_seeds = [0, 1, 2, 3]       # default: [base.data.subset_seed]
    n = "paper"                       # subset sizes for every dataset: a list, one int, or "paper"
    "model.gain" = [1.0, 1.4]         # any other RunConfig field (also as [grid.model] gain = [...])

    [[grid.datasets]]                 # default: base.data as it is
    name = "dice"
    n = [468, 937]                    # overrides grid.n for this dataset
    options = { size = 32 }           # loader options (merged over base.data.options of the same name)

    [[grid.solvers]]                  # default: base.solver as it is
    method = "exp_euler"              # a table of [solver] overrides, merged over base.solver
    eta_max = 0.01

    [[grid.solvers]]                  # gradient descent beside the flow, on the same problems
    method = "gd"
    eta = 0.5
    measure_sharpness_every = 1       # λ¹(H) in the trajectory at every step
    n = [468]                         # an entry may narrow the grid for its runs:
    init_seeds = [0]                  #   its own n, init_seeds and subset_seeds
    subset_seeds = [0]

A solver entry that changes ``method`` drops base.solver's step size of the other method (GD
has ``eta``, exponential Euler ``eta_max``), so one sweep can hold both; the report fits Eq. 9 on
the exponential Euler runs and draws the GD runs with their 2/η line beside the flow.

``"paper"`` takes the paper's subset sizes of the (dataset, criterion) (:mod:`eoslab.data.subsets`).
:func:`load_sweep` checks everything at load time and raises ConfigError naming the field
(``grid.datasets[1].n: ...``, ``grid.datasets[0].options: dice: unknown option 'sze'``).
Expansion order is datasets × criteria × solvers × sizes × other fields (in file order) × init
seeds × subset seeds; each point is a resolved RunConfig (target loss filled in) whose
:func:`~eoslab.config.config_hash` is its ``run_id``. k = n_L is filled in by
:func:`eoslab.runs.train` once the data is loaded, so the run directory's ``config.toml`` may hold
more than the point's config; the run_id is the hash of the point's config as expanded here.

Every setting that tells runs apart travels with them: ``grid.parquet`` and the collected table
hold the run columns (:data:`RUN_COLUMNS`) and one typed column per other *axis*, named by its
dotted field (``model.gain``, ``solver.measure_sharpness_every``, ``data.options.size``): every
dotted-field axis of the grid, and every other config value that differs between points
(:func:`axis_columns`).

A sweep folder ``DIR`` holds ``sweep.toml`` (a copy of the sweep config), ``grid.parquet`` (one
row per point) and ``runs/<run_id>/``, one run directory per point. :func:`run_sweep` trains and
analyses every point that is not finished, on local worker processes or on Ray; a rerun skips
finished points and resumes the others from their snapshots (:func:`eoslab.runs.train`), and one
failing point is recorded in its ``status.json`` and never stops the rest. :func:`sweep_status`
tells where each point stands; :func:`collect` joins the points' configs with their analyses.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import tomli_w

from ..config import (
    ConfigError,
    RunConfig,
    config_hash,
    flatten_config,
    from_dict,
    resolve,
    to_dict,
    to_toml,
    unused_fields,
)
from ..criteria import CRITERIA
from ..data import available, check_options
from ..data.subsets import paper_subset_sizes
from ..presets import read_config_toml
from ..rundir import GRID_FILE as GRID_FILE  # re-exported: the sweep folder's files
from ..rundir import SWEEP_FILE as SWEEP_FILE

RUNS_DIR = "runs"

#: Named grid axes; every other ``grid`` key is a dotted RunConfig field.
_NAMED_AXES = ("datasets", "n", "criteria", "init_seeds", "subset_seeds", "solvers")
#: Fields set by a named axis, and which axis to use instead.
_AXIS_OF_FIELD = {
    "data.name": "datasets",
    "data.options": "datasets",
    "data.n": "n",
    "data.subset_seed": "subset_seeds",
    "model.init_seed": "init_seeds",
    "criterion.name": "criteria",
    "solver.method": "solvers",
}
#: Keys of a ``[[grid.datasets]]`` entry besides ``name``, ``n`` and ``options``.
_DATASET_FIELDS = ("split", "nested", "data_root")
#: Keys of a ``[[grid.solvers]]`` entry that narrow the grid for its runs (the rest are solver fields).
_SOLVER_NARROWING = ("n", "init_seeds", "subset_seeds")
#: The step-size field of each method; an entry that switches method drops the other one.
_STEP_FIELD = {"gd": "eta", "exp_euler": "eta_max"}

#: The columns that describe a run in ``grid.parquet`` and in the collected table, with their types.
RUN_COLUMNS = pa.schema(
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
        ("target_loss", pa.float64()),
    ]
)
#: The config field behind each run column (``run_id`` is the config's hash).
FIELD_OF_COLUMN = {
    "dataset": "data.name",
    "n": "data.n",
    "criterion": "criterion.name",
    "init_seed": "model.init_seed",
    "subset_seed": "data.subset_seed",
    "width": "model.width",
    "depth": "model.depth",
    "solver": "solver.method",
    "eta": "solver.eta",
    "eta_max": "solver.eta_max",
    "target_loss": "train.target_loss",
}


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
        """The point's run columns (:data:`RUN_COLUMNS`)."""
        return run_columns(self.run_id, self.config)

    def label(self) -> str:
        """A short human description, e.g. ``dice n=468 ce gd η=0.5 seeds 0/1``."""
        c = self.config
        step = f"η={c.solver.eta:g}" if c.solver.method == "gd" else f"η_max={c.solver.eta_max:g}"
        extra = "".join(f" {k}={v}" for k, v in self.fields.items())
        return (
            f"{c.data.name} n={c.data.n} {c.criterion.name} {c.solver.method} {step} "
            f"seeds {c.model.init_seed}/{c.data.subset_seed}{extra}"
        )


def run_columns(run_id: str, config: RunConfig) -> dict[str, Any]:
    """The run columns (:data:`RUN_COLUMNS`) of a run."""
    flat = flatten_config(config)
    return {"run_id": run_id, **{column: flat.get(name) for column, name in FIELD_OF_COLUMN.items()}}


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
    """Load, validate and expand a sweep config file, or the preset of that name
    (:mod:`eoslab.presets`); ConfigError names the file and the field.
    """
    source, data = read_config_toml(path, "sweep config")
    if "base" not in data and "grid" not in data and data:
        raise ConfigError(
            f"{source.where}: this is a run config, not a sweep config ([base] and [grid]); "
            f"run it with `eoslab train {path} --out RUN_DIR`"
        )
    try:
        return parse_sweep(data, text=source.text)
    except ConfigError as e:
        raise ConfigError(f"{source.where}: {e}") from None


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


def _seeds(name: str, value: Any) -> list[int]:
    """A list of seeds >= 0."""
    seeds = _as_list(name, value, int)
    for i, s in enumerate(seeds):
        if s < 0:
            raise ConfigError(f"{name}[{i}]: must be >= 0, got {s}")
    return seeds


def _datasets(grid: dict, base: RunConfig) -> list[dict]:
    """The dataset entries as ``{"data": {DataConfig overrides}, "n": sizes | "paper" | None, "where":
    the entry's field name}``; names and loader options are checked against the dataset registry.
    """
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
        try:
            check_options(data["name"], data["options"])
        except ValueError as e:
            raise ConfigError(f"{where if options else 'base.data'}.options: {e}") from None
        out.append({"data": data, "n": _sizes(f"{where}.n", entry["n"]) if "n" in entry else None, "where": where})
    return out


def _solvers(grid: dict, base: RunConfig) -> list[dict]:
    """The solver entries as ``{"solver": {SolverConfig values}, "n", "init_seeds", "subset_seeds":
    the entry's narrowing or None, "where": the entry's field name}`` (see the module docstring).
    """
    entries = grid.get("solvers", [{}])
    if not isinstance(entries, list) or not entries:
        raise ConfigError("grid.solvers: expected a non-empty list of tables of solver settings")
    base_dict = to_dict(base)
    names = {f.name for f in dataclasses.fields(base.solver)}
    out = []
    for i, entry in enumerate(entries):
        where = f"grid.solvers[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table of solver settings, got {type(entry).__name__}")
        unknown = sorted(set(entry) - names - set(_SOLVER_NARROWING))
        if unknown:
            raise ConfigError(
                f"{where}.{unknown[0]}: unknown key (allowed: the [solver] fields "
                f"{', '.join(sorted(names))}, and {', '.join(_SOLVER_NARROWING)})"
            )
        solver = dict(base_dict.get("solver", {}))
        method = entry.get("method", base.solver.method)
        if method != base.solver.method and isinstance(method, str):
            solver.pop(_STEP_FIELD.get(base.solver.method, ""), None)
        solver.update({k: v for k, v in entry.items() if k in names})
        try:
            from_dict({**base_dict, "solver": solver})
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        out.append(
            {
                "solver": solver,
                "n": _sizes(f"{where}.n", entry["n"]) if "n" in entry else None,
                "init_seeds": _seeds(f"{where}.init_seeds", entry["init_seeds"]) if "init_seeds" in entry else None,
                "subset_seeds": _seeds(f"{where}.subset_seeds", entry["subset_seeds"])
                if "subset_seeds" in entry
                else None,
                "where": where,
            }
        )
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
    criteria = _as_list("grid.criteria", grid.get("criteria", [base.criterion.name]), str)
    for i, c in enumerate(criteria):
        if c not in CRITERIA:
            raise ConfigError(f"grid.criteria[{i}]: must be one of {', '.join(CRITERIA)}, got {c!r}")
    init_seeds = _seeds("grid.init_seeds", grid.get("init_seeds", [base.model.init_seed]))
    subset_seeds = _seeds("grid.subset_seeds", grid.get("subset_seeds", [base.data.subset_seed]))
    default_n = _sizes("grid.n", grid["n"]) if "n" in grid else ([base.data.n] if base.data.n else None)
    datasets = _datasets(grid, base)
    solvers = _solvers(grid, base)
    axes = _field_axes(grid, base)

    base_dict = to_dict(base)
    points: list[GridPoint] = []
    seen: dict[str, int] = {}
    for ds, criterion, solver in itertools.product(datasets, criteria, solvers):
        sizes_spec, where = solver["n"], f"{solver['where']}.n"
        if sizes_spec is None:
            sizes_spec = ds["n"] if ds["n"] is not None else default_n
            where = f"{ds['where']}.n" if ds["n"] is not None else "grid.n"
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
            sizes,
            itertools.product(*axes.values()),
            solver["init_seeds"] or init_seeds,
            solver["subset_seeds"] or subset_seeds,
        ):
            d = copy.deepcopy(base_dict)
            d.setdefault("data", {}).update(ds["data"], n=n, subset_seed=subset_seed)
            d.setdefault("model", {})["init_seed"] = init_seed
            d.setdefault("criterion", {})["name"] = criterion
            d["solver"] = copy.deepcopy(solver["solver"])
            fields = dict(zip(axes, combo))
            for key, value in fields.items():
                section, _, name = key.partition(".")
                d.setdefault(section, {})[name] = value
            try:
                cfg = resolve(from_dict(d))
            except ConfigError as e:
                raise ConfigError(
                    f"grid point {len(points)} ({ds['where']}, {solver['where']}, n={n}, {criterion}): {e}"
                ) from None
            point = GridPoint(len(points), config_hash(cfg), cfg, fields)
            if point.run_id in seen:
                raise ConfigError(
                    f"grid: points {seen[point.run_id]} and {point.index} are the same config ({point.label()})"
                )
            seen[point.run_id] = point.index
            points.append(point)
    return points


def _arrow_type(values: list[Any]) -> pa.DataType:
    """The column type of an axis's values (None allowed): bool, int64, float64, string, or JSON text."""
    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    return pa.string()  # text; tables, lists or mixed kinds as JSON text (:func:`_cell`)


def _cell(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if kind == pa.string() and not isinstance(value, str):
        return json.dumps(value, sort_keys=True)
    if kind == pa.float64():
        return float(value)
    return value


def axis_columns(configs: list[RunConfig], declared: Sequence[str] = ()) -> dict[str, pa.Array]:
    """One typed column per axis of a set of runs beyond :data:`RUN_COLUMNS`, named by its dotted
    field: the ``declared`` dotted-field axes of the grid, then every other config value that
    differs between the runs that use it (sorted; :func:`eoslab.config.unused_fields` are null);
    one row per config. Tables and mixed kinds are JSON text.
    """
    flats = [flatten_config(c) for c in configs]
    unused = [set(unused_fields(c)) for c in configs]
    standard = set(FIELD_OF_COLUMN.values())
    keys = sorted({k for f in flats for k in f} - standard)
    varying = [
        k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f, u in zip(flats, unused) if k not in u}) > 1
    ]
    names = [k for k in declared if k not in standard] + [k for k in varying if k not in declared]
    columns = {}
    for name in names:
        values = [f.get(name) for f in flats]
        kind = _arrow_type(values)
        columns[name] = pa.array([_cell(v, kind) for v in values], kind)
    return columns


def grid_table(points: list[GridPoint]) -> pa.Table:
    """``grid.parquet``: one row per point: ``index``, the run columns of the collected table, one
    typed column per other axis (:func:`axis_columns`), and ``config`` (the point's TOML).
    """
    declared = list(dict.fromkeys(k for p in points for k in p.fields))
    run = pa.Table.from_pylist([p.columns() for p in points], schema=RUN_COLUMNS)
    columns = {"index": pa.array([p.index for p in points], pa.int64())}
    columns.update({name: run[name] for name in run.column_names})
    columns.update(axis_columns([p.config for p in points], declared))
    columns["config"] = pa.array([to_toml(p.config) for p in points], pa.string())
    return pa.table(columns)
