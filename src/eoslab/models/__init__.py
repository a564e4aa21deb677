"""Models on a flat parameter vector θ (docs/math.md §1): the protocol and its implementations.

* :class:`Model`, :class:`ParamGroup` — the protocol the curvature core, the integrators and the
  analysis rely on (:mod:`eoslab.models.base`).
* :class:`MLP` — the paper's network (ELU, D8 init); it flattens its inputs.
* :class:`CNN` — a small conv-ELU network for image (C, H, W) and sequence (C, L) inputs.
* :class:`ModuleModel` — any ``torch.nn.Module`` via ``torch.func.functional_call``.
* :data:`MODELS`, :func:`make_model` — the registry of model kinds (``"mlp"``, ``"cnn"``, each
  registered where it is defined) and ``"python:package.module:factory"``, behind the config's
  ``model.kind``.
"""

from .base import Model, ParamGroup
from .cnn import CNN
from .mlp import ACTIVATIONS, INITS, MLP, Forward, elu_derivative
from .module import ModuleModel
from .registry import MODELS, ModelError, ModelKind, check_kind, check_options, make_model

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "INITS",
    "MLP",
    "MODELS",
    "Forward",
    "Model",
    "ModelError",
    "ModelKind",
    "ModuleModel",
    "ParamGroup",
    "check_kind",
    "check_options",
    "elu_derivative",
    "make_model",
]
