"""Run configurations: TOML files loaded into dataclasses (every key: docs/decisions.md).

A run is fully described by a :class:`RunConfig`. Loading checks every key, type and value and
fails with :class:`ConfigError` naming the field (``solver.eta_max: must be > 0, got -1``). Defaults
follow the decisions D1–D15 (docs/decisions.md); :func:`resolve` fills the criterion-dependent ones
(target loss, k) so the ``config.toml`` written into a run directory holds every value that was used.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import types
import typing
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import torch

from .constants import INITS, SKIP_BEFORE
from .criteria import CRITERIA
from .eigen import EIG_ORDERS, PRECISIONS, available_eigensolvers
from .errors import ConfigError, ModelError
from .models.registry import check_options, unused_model_fields
from .presets import read_config_toml


class ConfigDeprecationWarning(UserWarning):
    """A config key that still works but has a new name (shown to users, unlike DeprecationWarning)."""


#: The default step of both integrators: GD's η and exponential Euler's η_max (D3).
DEFAULT_STEP = 0.01
#: Largest ``train.threads``: a fixed bound, not this machine's core count, so a config valid on a
#: cluster node stays valid on a laptop. More threads than cores only slows torch down, and a
#: thread pool of tens of thousands crashes it (100000 segfaults torch 2.13).
MAX_THREADS = 1024


@dataclass
class DataConfig:
    """Which data, and which subset of it (docs/math.md §8)."""

    name: str = "synthetic"  #: registry name: synthetic, dice, cifar10, atrial_fibrillation, sst, uea
    split: str = "train"
    n: int | None = None  #: training-subset size; None = the whole split
    subset_seed: int = 0
    nested: bool = True  #: subsets of one seed are nested across sizes
    data_root: str | None = None  #: None = $EOSLAB_DATA or the user cache folder
    standardize: bool = False  #: D9 alternative: per-feature mean 0, std 1 over the whole split
    options: dict = field(default_factory=dict)  #: loader options (e.g. synthetic: n, input_dim)


@dataclass
class ModelConfig:
    """The network: the paper's MLP by default (docs/math.md §1, D8), a small CNN, or the user's own
    ``torch.nn.Module`` (:mod:`eoslab.models.registry`).
    """

    kind: str = "mlp"  #: mlp | cnn | python:package.module:factory (imports that module: user code)
    depth: int = 6  #: mlp: Linear layers
    width: int = 512  #: mlp: hidden width
    init: str = "xavier_normal"  #: mlp, cnn
    gain: float = math.sqrt(2.0)  #: mlp, cnn
    init_seed: int = 0
    dtype: str = "float64"
    device: str = "cpu"  #: cpu | cuda | cuda:N | auto (cuda when available)
    options: dict = field(default_factory=dict)  #: cnn: channels, kernel_size, pool; python: the factory's kwargs
    groups: list | None = None  #: python kinds: parameter-group name prefixes (None: the module's children)


@dataclass
class CriterionConfig:
    """ℓ (D6)."""

    name: str = "ce"  #: ce | mse
    mse_reduction: str = "mean"  #: mean (D6 default, H_ℓ = 2/n_L I) | sum (H_ℓ = 2I)


@dataclass
class SolverConfig:
    """The integrator (docs/math.md §2, §7; D3, D4)."""

    method: str = "exp_euler"  #: exp_euler | gd
    eta: float | None = None  #: GD only: the step size η (None = 0.01)
    eta_max: float | None = None  #: exp_euler only: η_max, the largest step Δt (D3; None = 0.01)
    step_c: float = 1.0  #: exp_euler: Δt = min(η_max, c / |λ^{k+1}|) (D3)
    k: int | None = None  #: exp_euler: eigenpairs in the exact part; None = n_L (§7)
    eig_method: str = "lobpcg"  #: a registered eigensolver: lobpcg | power (D4)
    eig_order: str = "algebraic"  #: which top k+1: algebraic (D14) | magnitude (the authors' code)
    eig_tol: float = 1e-4  #: D4
    eig_max_iters: int = 1000
    eig_precision: str = "float64"  #: lobpcg's products: float64 | mixed (float32, certified in float64)
    measure_sharpness_every: int = 0  #: GD: also record λ¹(H) every this many steps (0 = never)


@dataclass
class TrainConfig:
    """When to stop and what to save."""

    target_loss: float | None = None  #: None = 0.01 for CE, 0.02 for MSE (§8)
    max_steps: int = 100_000
    max_time_s: float | None = None
    snapshot_every: int = 100
    chunk_size: int | None = None  #: samples per chunk in full-batch passes
    threads: int | None = None  #: torch intra-op threads (1..MAX_THREADS); None = leave as is


@dataclass
class AnalysisConfig:
    """The decomposition of every snapshot (docs/math.md §3–§6)."""

    skip_before: int = SKIP_BEFORE  #: D13: steps < this are not analysed
    every: int = 1  #: analyse every this-many-th snapshot
    eig_method: str = "lobpcg"  #: a registered eigensolver for the λ¹ solves: lobpcg | power
    eig_tol: float = 1e-4
    chunk_size: int | None = None
    spectrum: bool = False  #: also the spectrum beyond λ¹: trace, negative mass, λ_min, per-group λ¹ (§9)


@dataclass
class RunConfig:
    """Everything that determines one run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    criterion: CriterionConfig = field(default_factory=CriterionConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)


_CHOICES: dict[str, Collection[str]] = {
    "model.init": INITS,
    "model.dtype": ("float64", "float32"),
    "criterion.name": CRITERIA,
    "criterion.mse_reduction": ("mean", "sum"),
    "solver.method": ("exp_euler", "gd"),
    "solver.eig_precision": PRECISIONS,
    "data.split": ("train", "test"),
}
_POSITIVE = {
    "model.depth",
    "model.width",
    "model.gain",
    "solver.eta",
    "solver.eta_max",
    "solver.step_c",
    "solver.k",
    "solver.eig_tol",
    "solver.eig_max_iters",
    "train.target_loss",
    "train.max_steps",
    "train.max_time_s",
    "train.snapshot_every",
    "train.chunk_size",
    "train.threads",
    "data.n",
    "analysis.every",
    "analysis.eig_tol",
    "analysis.chunk_size",
}
_NONNEGATIVE = {"analysis.skip_before", "solver.measure_sharpness_every", "model.init_seed", "data.subset_seed"}


def _eigen_choices() -> dict[str, tuple[str, ...]]:
    """The eigensolver fields' choices, from the solver registry."""
    solvers = available_eigensolvers()
    return {"solver.eig_method": solvers, "analysis.eig_method": solvers, "solver.eig_order": EIG_ORDERS}


def _check_type(name: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(name, value, inner[0])
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    base = origin or tp
    if base is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a table, got {type(value).__name__} {value!r}")
        return dict(value)
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise ConfigError(f"{name}: expected {getattr(base, '__name__', base)}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key (allowed: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        tp = hints[key]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, name)
        else:
            kwargs[key] = _check_type(name, value, tp)
    return cls(**kwargs)


def validate(cfg: RunConfig) -> RunConfig:
    """Check values (choices, signs); raise ConfigError naming the field."""
    eigen = _eigen_choices()
    for section in dataclasses.fields(cfg):
        sub = getattr(cfg, section.name)
        for f in dataclasses.fields(sub):
            name, value = f"{section.name}.{f.name}", getattr(sub, f.name)
            if value is None:
                continue
            if name == "model.device" and not re.fullmatch(r"cpu|auto|cuda(:\d+)?", value):
                raise ConfigError(f"{name}: must be cpu, cuda, cuda:N or auto, got {value!r}")
            choices = _CHOICES.get(name) or eigen.get(name)
            if choices and value not in choices:
                raise ConfigError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
            if name in _POSITIVE and not value > 0:
                raise ConfigError(f"{name}: must be > 0, got {value!r}")
            if name in _NONNEGATIVE and value < 0:
                raise ConfigError(f"{name}: must be >= 0, got {value!r}")
            if name == "train.threads" and value > MAX_THREADS:
                raise ConfigError(
                    f"{name}: must be <= {MAX_THREADS} (more threads than cores only slows torch down), got {value}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name}: must be finite, got {value!r}")
    _check_solver(cfg)
    _check_model(cfg)
    return cfg


def _check_model(cfg: RunConfig) -> None:
    """model.kind, model.options and model.groups (without importing a user's module)."""
    m = cfg.model
    if m.groups is not None and not all(isinstance(g, str) and g for g in m.groups):
        raise ConfigError(f"model.groups: must be a list of parameter-name prefixes (strings), got {m.groups!r}")
    try:
        check_options(m.kind, m.options, m.groups)
    except ModelError as e:
        raise ConfigError(f"{e.field}: {e}") from None


def _upgrade(data: dict) -> dict:
    """Rename deprecated keys, with a :class:`ConfigDeprecationWarning`: ``solver.lr`` becomes
    ``solver.eta`` (GD) or ``solver.eta_max`` (exponential Euler), whichever the method uses.
    """
    solver = data.get("solver")
    if not isinstance(solver, dict) or "lr" not in solver:
        return data
    solver = dict(solver)
    new = "eta" if solver.get("method") == "gd" else "eta_max"
    if new in solver:
        raise ConfigError(f"solver.lr: deprecated alias of solver.{new}, which is also set; remove solver.lr")
    warnings.warn(
        f"solver.lr is deprecated: it is now solver.{new} "
        f"({'the GD step size' if new == 'eta' else 'the largest exponential Euler step, D3'})",
        ConfigDeprecationWarning,
        stacklevel=3,
    )
    solver[new] = solver.pop("lr")
    return {**data, "solver": solver}


def _check_solver(cfg: RunConfig) -> None:
    """The step-size field must be the one of the chosen method (η for GD, η_max for exponential Euler)."""
    s = cfg.solver
    if s.method == "gd" and s.eta_max is not None:
        raise ConfigError("solver.eta_max: only exponential Euler has η_max; gradient descent's step is solver.eta")
    if s.method == "exp_euler" and s.eta is not None:
        raise ConfigError("solver.eta: gradient descent's step; exponential Euler's largest step is solver.eta_max")
    if s.eig_precision != "float64" and s.eig_method != "lobpcg":
        raise ConfigError(
            f"solver.eig_precision: {s.eig_precision!r} is lobpcg's option; solver.eig_method is {s.eig_method!r}"
        )


def from_dict(data: dict) -> RunConfig:
    """A validated RunConfig from nested dicts (as parsed from TOML)."""
    return validate(_build(RunConfig, _upgrade(data), ""))


def torch_device(cfg: RunConfig) -> str:
    """The torch device of ``model.device`` (``auto``: cuda when available, else cpu).

    Raises:
        ConfigError: a CUDA device this machine does not have (a torch build without CUDA, no
            GPU visible, or ``cuda:N`` past the last GPU). Checked here, not when the config is
            loaded, so that a config written for a GPU machine stays valid on a laptop.
    """
    device = cfg.model.device
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            build = "this torch build has no CUDA" if torch.version.cuda is None else "none is visible"
            has = f"{count} GPU(s)" if count else f"no GPU ({build})"
            raise ConfigError(f'model.device: "{device}" but this machine has {has}; use "cpu" or "auto"')
    return device


def load_config(path: str | Path) -> RunConfig:
    """Load and validate a TOML run config (a file, or a preset's name, :mod:`eoslab.presets`);
    errors name the file and the field. A sweep config is refused with the command that runs it.
    """
    source, data = read_config_toml(path, "run config")
    if "grid" in data or "base" in data:
        raise ConfigError(
            f"{source.where}: this is a sweep config ([base] and [grid]), not a run config; "
            f"run it with `eoslab sweep {path} --out DIR`"
        )
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{source.where}: {e}") from None


def default_target_loss(criterion: str) -> float:
    """The registered criterion's target: 0.01 for cross-entropy, 0.02 for MSE (docs/math.md §8)."""
    return CRITERIA[criterion].target_loss


def resolve(cfg: RunConfig, num_outputs: int | None = None) -> RunConfig:
    """Fill the defaults that depend on other values: the target loss (by criterion), the step
    size of the chosen method (η or η_max) and the number k of exact eigen-directions (= n_L,
    docs/math.md §7) when ``num_outputs`` is known.
    """
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train), solver=dataclasses.replace(cfg.solver))
    step = "eta" if cfg.solver.method == "gd" else "eta_max"
    if getattr(cfg.solver, step) is None:
        setattr(cfg.solver, step, DEFAULT_STEP)
    if cfg.train.target_loss is None:
        cfg.train.target_loss = default_target_loss(cfg.criterion.name)
    if cfg.solver.k is None and num_outputs is not None:
        cfg.solver.k = num_outputs
    return validate(cfg)


def unused_fields(cfg: RunConfig) -> list[str]:
    """The fields the config's solver method and model kind do not use: GD has no η_max, c or k,
    exponential Euler no η or sharpness measurements; only the MLP has a depth and a width, and
    a python: model no init or gain.
    """
    if cfg.solver.method == "gd":
        unused = ["solver.eta_max", "solver.step_c", "solver.k"]
    else:
        unused = ["solver.eta", "solver.measure_sharpness_every"]
    return unused + unused_model_fields(cfg.model.kind)


def to_dict(cfg: RunConfig) -> dict:
    """Nested plain dict (None values dropped: TOML has no null, and None is the default)."""

    def strip(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if v is not None}
        return d

    return strip(dataclasses.asdict(cfg))


def to_toml(cfg: RunConfig) -> str:
    """The config as TOML text (what ``config.toml`` holds), without the :func:`unused_fields`
    that are at their defaults (a CNN's config says no MLP width); loading it gives ``cfg`` back.
    """
    data, defaults = to_dict(cfg), to_dict(RunConfig())
    for name in unused_fields(cfg):
        section, key = name.split(".")
        if key in data[section] and data[section][key] == defaults[section].get(key):
            del data[section][key]
    return tomli_w.dumps(data)


#: Keys added after configs were first hashed, with the default that means "as before": left out
#: of :func:`config_hash` while at it, so existing run ids and sweeps keep their hashes.
_HASH_NEUTRAL = {
    ("model", "kind"): "mlp",
    ("model", "options"): {},
    ("data", "standardize"): False,
    ("analysis", "spectrum"): False,
    ("solver", "eig_precision"): "float64",
}


def comparable(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict (:func:`to_dict`) without the keys added later while they are at their
    defaults (``_HASH_NEUTRAL``), so a run created by an older eoslab compares (and hashes) equal to
    the same config read by this one.
    """
    data = copy.deepcopy(data)
    for (section, key), default in _HASH_NEUTRAL.items():
        if data.get(section, {}).get(key, default) == default:
            data.get(section, {}).pop(key, None)
    return data


def config_hash(cfg: RunConfig, length: int = 12) -> str:
    """A stable hash of the config's values (key order and formatting do not matter; keys added
    later are left out while at their defaults, :func:`comparable`).
    """
    blob = json.dumps(comparable(to_dict(cfg)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def flatten_config(cfg: RunConfig) -> dict[str, Any]:
    """The config as ``{dotted.name: value}`` leaves (a loader option is ``data.options.size``;
    unset values and the :func:`unused_fields` are left out, so a table of runs shows them blank).
    """

    def flat(d: dict, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    unused = set(unused_fields(cfg))
    return {k: v for k, v in flat(to_dict(cfg), "").items() if k not in unused}
