"""What a config describes: the training subset, the model, the criterion, L̃ and the integrator.

:func:`build_problem` loads the data a config names (or a tracker's stored data), standardises
it and draws the subset, builds the model, the criterion and the full-batch loss L̃ over this
rank's shard (:mod:`eoslab.distributed`); :func:`make_integrator` starts the config's integrator
at θ_0. A value that only turns out wrong here (an unknown dataset option, a subset larger than
the data, a model or θ_0 that does not fit in memory) raises ConfigError naming the field.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, RunConfig, resolve, torch_device
from ..criteria import make_criterion
from ..curvature import FullBatchLoss
from ..data import Dataset, load_dataset
from ..data.stored import STORED, read_stored
from ..data.subsets import draw_subset
from ..distributed import rank_device, shard_slice, world
from ..eigspec import EigSpec
from ..integrators import ExponentialEuler, GradientDescent, Integrator
from ..models import Model, ModelError, make_model
from ..rundir import DATA_FILE


@dataclass
class Problem:
    """What a config describes: the training subset, the model, the criterion and L̃ over the subset.

    Attributes:
        config: the resolved config (k = n_L and the target loss filled in).
        dataset: the training subset the run trains on (all of it, on every rank).
        model: the model of ``model.kind`` (:func:`eoslab.models.make_model`).
        loss: the full-batch loss L̃ on ``dataset`` (docs/math.md §2); in a data-parallel run it
            holds this rank's shard (:func:`eoslab.distributed.shard_slice`) and sums over ranks.
    """

    config: RunConfig
    dataset: Dataset
    model: Model
    loss: FullBatchLoss

    @property
    def target_loss(self) -> float:
        """The loss at which training is done (``train.target_loss`` of the resolved config)."""
        target = self.config.train.target_loss
        assert target is not None  # resolve() fills it
        return target

    def fingerprint(self) -> dict[str, Any]:
        """The data fingerprint recorded in the run's manifest (:mod:`eoslab.rundir`): dataset,
        sizes, the SHA-256 of the subset's indices (None for a whole split) and the SHA-256 of the
        training inputs X (float64, row-major) followed by the labels y (int64).
        """
        d = self.dataset
        h = hashlib.sha256()
        h.update(d.X.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
        h.update(d.y.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
        return {
            "dataset": d.name,
            "num_samples": len(d),
            "input_dim": d.input_dim,
            "num_classes": d.num_classes,
            "subset_indices_sha256": d.meta.get("subset", {}).get("indices_sha256"),
            "sha256": h.hexdigest(),
        }


def build_problem(cfg: RunConfig, run_dir: str | Path | None = None) -> Problem:
    """Dataset subset, model, criterion and full-batch loss of a config (train and load_run).

    ``run_dir``: the run directory, where a run of ``data.name = "stored"`` (a
    :class:`~eoslab.tracker.Tracker`'s) keeps its data (:mod:`eoslab.data.stored`).

    Raises ConfigError naming the field when a value only turns out wrong here (an unknown
    dataset or loader option, a subset larger than the data, a model that cannot be built, k ≥ P,
    fewer samples than data-parallel processes, data or a model that do not fit in memory).
    """
    d = cfg.data
    if d.name == STORED:
        if run_dir is None or not (Path(run_dir) / DATA_FILE).is_file():
            where = "a run directory without it" if run_dir is not None else "no run directory"
            raise ConfigError(
                f'data.name: "{STORED}" data live in the {DATA_FILE} of a tracker\'s run directory, got {where}'
            )
        try:
            dataset = read_stored((Path(run_dir) / DATA_FILE).read_bytes(), Path(run_dir) / DATA_FILE)
        except ValueError as e:
            raise ConfigError(f"data.name: {e}") from None
        return problem_from_dataset(cfg, dataset)
    with _allocating("data.options", f"the {d.name} {d.split} data"):
        try:
            dataset = load_dataset(d.name, d.split, data_root=d.data_root, **d.options)
        except TypeError as e:
            raise ConfigError(f"data.options: {e}") from None
        except ValueError as e:
            field = "data.name" if "unknown dataset" in str(e) else "data.options"
            raise ConfigError(f"{field}: {e}") from None
    return problem_from_dataset(cfg, dataset)


def problem_from_dataset(cfg: RunConfig, dataset: Dataset) -> Problem:
    """The rest of :func:`build_problem` once the split is loaded: standardise and draw the subset
    as the config says, then build the model, the criterion and L̃.
    """
    d = cfg.data
    if d.standardize:  # statistics of the whole split, so every subset size sees the same inputs
        dataset = dataset.standardized()
    if d.n is not None:
        if d.n > len(dataset):
            raise ConfigError(f"data.n: the {d.name} {d.split} split has {len(dataset)} samples, got n = {d.n}")
        dataset = draw_subset(dataset, d.n, d.subset_seed, nested=d.nested)
    cfg = resolve(cfg, num_outputs=dataset.num_classes)
    with _allocating(_size_field(cfg), "the model"):
        return _model_and_loss(cfg, dataset)


def _model_and_loss(cfg: RunConfig, dataset: Dataset) -> Problem:
    """The rest of :func:`build_problem`: the model, the criterion and L̃ over this rank's shard."""
    m = cfg.model
    try:
        model = make_model(
            m.kind,
            input_shape=dataset.input_shape,
            num_classes=dataset.num_classes,
            depth=m.depth,
            width=m.width,
            init=m.init,
            gain=m.gain,
            options=m.options,
            groups=m.groups,
            dtype=getattr(torch, m.dtype),
            device=rank_device(torch_device(cfg)),
        )
    except ModelError as e:
        raise ConfigError(f"{e.field}: {e}") from None
    if cfg.solver.method == "exp_euler":
        k = cfg.solver.k
        assert k is not None  # resolve() sets it to n_L
        if k + 1 > model.num_params:
            raise ConfigError(f"solver.k: must be < the number of parameters {model.num_params}, got {k}")
    criterion_options = {"reduction": cfg.criterion.mse_reduction} if cfg.criterion.name == "mse" else {}
    criterion = make_criterion(cfg.criterion.name, **criterion_options)
    rank, size = world()
    if len(dataset) < size:
        raise ConfigError(f"data.n: {len(dataset)} samples cannot be split over {size} data-parallel processes")
    shard = shard_slice(len(dataset), rank, size)
    loss = FullBatchLoss(model, criterion, dataset.X[shard], dataset.y[shard], chunk_size=cfg.train.chunk_size)
    return Problem(cfg, dataset, model, loss)


def out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation that failed (torch's CPU allocator raises a RuntimeError)."""
    return isinstance(e, MemoryError | torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e)
    )


def memory_message(e: BaseException) -> str:
    """What failed to allocate, in a few words (``7.2e+03 GiB requested``, else torch's first line)."""
    match = re.search(r"allocate (\d+) bytes", str(e))
    if match:
        return f"{int(match.group(1)) / 2**30:.3g} GiB requested"
    return (str(e).splitlines() or [type(e).__name__])[0]


def _size_field(cfg: RunConfig) -> str:
    """The config field that sizes the model: ``model.width`` for the MLP, else its options."""
    return "model.width" if cfg.model.kind == "mlp" else "model.options"


@contextlib.contextmanager
def _allocating(field: str, what: str) -> Iterator[None]:
    """Turn an allocation that fails inside the block (out of memory, or a size past int64, which
    torch reports as a TypeError) into a ConfigError naming ``field``.
    """
    try:
        yield
    except (MemoryError, RuntimeError, TypeError, OverflowError) as e:
        if isinstance(e, OverflowError) or "Overflow when unpacking" in str(e):
            detail = "its size overflows int64"
        elif out_of_memory(e):
            detail = memory_message(e)
        else:
            raise
        raise ConfigError(f"{field}: {what} cannot be allocated ({detail}); make it smaller") from None


def make_integrator(problem: Problem) -> Integrator:
    """The config's integrator at θ_0 = model.init_params(model.init_seed); its random draws are
    seeded from the same seed. A θ_0 that does not fit in memory raises ConfigError.
    """
    with _allocating(_size_field(problem.config), "the model's parameters"):
        return _integrator(problem)


def _integrator(problem: Problem) -> Integrator:
    s, seed = problem.config.solver, problem.config.model.init_seed
    theta = problem.model.init_params(seed)
    eigensolver = EigSpec(s.eig_method, s.eig_tol, s.eig_max_iters, s.eig_order, precision=s.eig_precision)
    if s.method == "gd":
        assert s.eta is not None  # resolve() fills the step size of the config's method
        return GradientDescent(
            problem.loss,
            theta,
            eta=s.eta,
            seed=seed,
            measure_sharpness_every=s.measure_sharpness_every,
            eigensolver=eigensolver,
        )
    assert s.k is not None and s.eta_max is not None  # resolve() fills them
    return ExponentialEuler(
        problem.loss, theta, k=s.k, eta_max=s.eta_max, step_c=s.step_c, seed=seed, eigensolver=eigensolver
    )
