"""Model kinds by name, behind the config's ``model.kind`` (docs/rundir.md).

* a registered kind (:data:`MODELS`): a :class:`~eoslab.models.Model` class that registers itself
  where it is defined (``@MODELS.register("name")``) and has the three class methods of
  :class:`ModelKind`, so the config checks its options and the run builds it:

  * ``"mlp"`` (default): the paper's MLP (docs/math.md §1) from ``depth``, ``width``, ``init``,
    ``gain``; it flattens its inputs; no ``options``.
  * ``"cnn"``: :class:`~eoslab.models.CNN`, options ``channels`` (list of ints, default [16, 32]),
    ``kernel_size`` (odd, default 3), ``pool`` (default 2); ``init`` and ``gain`` as the MLP's.

* ``"python:package.module:factory"``: **imports the user's code** ``package.module`` (it must be
  importable, e.g. on ``PYTHONPATH`` or installed) and calls
  ``factory(input_shape=(...), num_classes=n_L, **options)``, which must return a
  ``torch.nn.Module`` mapping (N, *input_shape) to (N, n_L); it is wrapped by
  :class:`~eoslab.models.ModuleModel` (``groups``: its parameter-group prefixes). θ_0 for an init
  seed s is the parameters of a module built by the factory under ``torch.manual_seed(s)`` (CPU
  generator, the caller's RNG untouched) with torch's default dtype set to the model dtype.

Errors are :class:`ModelError` with a one-line message and the config field they concern.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from .._registry import Registry
from ..errors import ModelError
from .base import Model
from .module import ModuleModel, seeded

PYTHON_PREFIX = "python:"
_PYTHON_SPEC = re.compile(r"python:([A-Za-z_][\w.]*):([A-Za-z_]\w*)")


#: The ``model.*`` fields a kind may read from a config; each kind names those it uses.
MODEL_FIELDS = ("depth", "width", "init", "gain")


class ModelKind(Protocol):
    """What a registered model kind is: a model class with these class methods, and
    ``config_fields``, the :data:`MODEL_FIELDS` it builds from (the others are unused).
    """

    config_fields: tuple[str, ...]

    def check_options(self, options: dict[str, Any]) -> None:
        """Refuse ``model.options`` the kind does not take (:class:`ModelError`), before any data is loaded."""
        ...

    def build(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        depth: int,
        width: int,
        init: str,
        gain: float,
        options: dict[str, Any],
        dtype: torch.dtype,
        device: torch.device | str | None,
    ) -> Model:
        """The model for inputs of ``input_shape`` and ``num_classes`` outputs (ModelError if it cannot be built)."""
        ...

    def describe(self, *, depth: int, width: int, options: dict[str, Any]) -> str:
        """What the model is, in a few words (``eoslab show``, a run's report)."""
        ...


#: The registered model kinds; every module of this package is imported before the first lookup,
#: so a kind's module registers it.
MODELS: Registry[ModelKind] = Registry("model kind", discover=__package__)


def check_kind(kind: str) -> None:
    """Refuse a kind that is neither registered nor of the form ``python:package.module:factory``
    (without importing anything).
    """
    if kind.startswith(PYTHON_PREFIX):
        if not _PYTHON_SPEC.fullmatch(kind):
            raise ModelError("model.kind", f"{kind!r} is not of the form 'python:package.module:factory'")
        return
    if kind not in MODELS:
        raise ModelError(
            "model.kind", f"must be one of {', '.join(MODELS)} or 'python:package.module:factory', got {kind!r}"
        )


def check_options(kind: str, options: dict, groups: Sequence[str] | None = None) -> None:
    """Refuse options the kind does not take (``python:`` kinds take any keyword options and groups)."""
    check_kind(kind)
    if kind.startswith(PYTHON_PREFIX):
        return
    if groups is not None:
        raise ModelError("model.groups", f"parameter-group prefixes are only for python: models, not {kind!r}")
    MODELS[kind].check_options(options)


def unused_model_fields(kind: str) -> list[str]:
    """The :data:`MODEL_FIELDS` a kind does not build from, as ``model.<field>`` (a python: kind uses none)."""
    used = MODELS[kind].config_fields if kind in MODELS else ()
    return [f"model.{f}" for f in MODEL_FIELDS if f not in used]


def describe(kind: str, *, depth: int, width: int, options: dict | None = None) -> str:
    """What a model of ``kind`` is, in a few words (``eoslab show``, a run's report): ``mlp, depth 6
    × width 512``, ``cnn, channels [16, 32], kernel 3, pool 2`` (its defaults filled in), or a
    python: kind with its options; ``depth`` and ``width`` only describe the MLP.
    """
    options = dict(options or {})
    if kind in MODELS:
        return MODELS[kind].describe(depth=depth, width=width, options=options)
    return kind + (f" ({', '.join(f'{k}={v!r}' for k, v in options.items())})" if options else "")


def load_factory(kind: str) -> Callable[..., nn.Module]:
    """Import ``package.module`` of ``python:package.module:factory`` (user code!) and return the factory."""
    check_kind(kind)
    match = _PYTHON_SPEC.fullmatch(kind)
    if match is None:
        raise ModelError("model.kind", f"{kind!r} is not a python: model kind")
    module_name, attr = match.groups()
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ModelError("model.kind", f"{kind}: cannot import {module_name} ({type(e).__name__}: {e})") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise ModelError("model.kind", f"{kind}: module {module_name} has no attribute {attr!r}")
    if not callable(factory):
        raise ModelError("model.kind", f"{kind}: {module_name}.{attr} is not callable")
    return factory


def make_model(
    kind: str = "mlp",
    *,
    input_shape: Sequence[int],
    num_classes: int,
    depth: int = 6,
    width: int = 512,
    init: str = "xavier_normal",
    gain: float = math.sqrt(2.0),
    options: dict | None = None,
    groups: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Model:
    """The model of ``kind`` for inputs of ``input_shape`` (one sample) and ``num_classes`` outputs.

    Raises:
        ModelError: an unknown kind or option, a factory that cannot be imported or called, or
            a module whose outputs do not have shape (N, num_classes).
    """
    options = dict(options or {})
    check_options(kind, options, groups)
    input_shape = tuple(int(d) for d in input_shape)
    if kind in MODELS:
        return MODELS[kind].build(
            input_shape,
            num_classes,
            depth=depth,
            width=width,
            init=init,
            gain=gain,
            options=options,
            dtype=dtype,
            device=device,
        )
    factory = load_factory(kind)
    call = f"{kind}(input_shape={input_shape}, num_classes={num_classes}" + "".join(
        f", {k}={v!r}" for k, v in options.items()
    )

    def build() -> nn.Module:
        try:
            module = factory(input_shape=input_shape, num_classes=num_classes, **options)
        except Exception as e:
            raise ModelError("model.kind", f"{call}) raised {type(e).__name__}: {e}") from None
        if not isinstance(module, nn.Module):
            raise ModelError("model.kind", f"{call}) returned {type(module).__name__}, expected a torch.nn.Module")
        return module

    with seeded(0, dtype):
        module = build()
    try:
        return ModuleModel(
            module,
            groups=groups,
            factory=build,
            input_shape=input_shape,
            output_dim=num_classes,
            dtype=dtype,
            device=device,
        )
    except (ValueError, RuntimeError, TypeError) as e:
        field = "model.groups" if groups is not None and "group" in str(e) else "model.kind"
        raise ModelError(field, f"{kind}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
