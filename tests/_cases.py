"""The small float64 problems the curvature, eigensolver, spectrum, network, analysis and tracker
tests check against dense references, defined once (as curvlinops' ``test/cases.py``): a
:class:`Case` is a network on random data with a criterion, named for ``pytest.mark.parametrize``
ids; :data:`MLP_CASES` are the curvature core's MLP problems; :func:`with_spectrum` is a dense
symmetric matrix of a chosen spectrum; :func:`dense_H` and :func:`dense_G` are the dense
references by torch.func (not a test module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
from torch.func import hessian, jacrev

from eoslab.criteria import MSE, Criterion, CrossEntropy
from eoslab.curvature import FullBatchLoss
from eoslab.models import MLP, Model

F64 = torch.float64
#: Features of an MLP case's samples, and the classes of every case.
INPUTS, CLASSES = 5, 3


class Problem(NamedTuple):
    """A built case: the model, θ, the data and its L̃."""

    model: Model
    theta: torch.Tensor
    X: torch.Tensor
    y: torch.Tensor
    loss: FullBatchLoss


@dataclass(frozen=True)
class Case:
    """``network()`` on ``n`` random float64 samples of ``sample_shape`` (X ~ N(0, 1), then y
    uniform over the classes, from a generator seeded by ``data_seed``) with ``criterion``, at
    θ_0 = ``init_params(init_seed)`` followed by ``gd_steps`` gradient descent steps of size ``lr``.
    """

    name: str
    network: Callable[[], Model]
    sample_shape: tuple[int, ...]
    criterion: Criterion
    n: int = 20
    data_seed: int = 0
    init_seed: int = 0
    gd_steps: int = 0
    lr: float = 0.0

    @property
    def id(self) -> str:
        """The test id: the network's name, the criterion and the GD steps taken."""
        mse_sum = isinstance(self.criterion, MSE) and self.criterion.reduction == "sum"
        criterion = "mse_sum" if mse_sum else self.criterion.name
        return f"{self.name}-{criterion}" + (f"-gd{self.gd_steps}" if self.gd_steps else "")

    def build(self) -> Problem:
        g = torch.Generator().manual_seed(self.data_seed)
        model = self.network()
        X = torch.randn(self.n, *self.sample_shape, generator=g, dtype=F64)
        y = torch.randint(0, CLASSES, (self.n,), generator=g)
        loss = FullBatchLoss(model, self.criterion, X, y)
        theta = model.init_params(self.init_seed)
        for _ in range(self.gd_steps):
            theta = theta - self.lr * loss.value_and_grad(theta).grad
        return Problem(model, theta, X, y, loss)


def mlp_case(criterion: Criterion, depth: int = 3, width: int = 8, **options) -> Case:
    """The paper's MLP of ``depth`` and ``width`` on :data:`INPUTS` features (``options``: the
    other fields of :class:`Case`).
    """
    network = partial(MLP, INPUTS, CLASSES, depth=depth, width=width)
    return Case(f"mlp{depth}x{width}", network, (INPUTS,), criterion, **options)


#: The criteria: cross-entropy and MSE with both reductions (D6).
CRITERIA = [CrossEntropy(), MSE("mean"), MSE("sum")]
#: The curvature core's problem, one per criterion: a depth-3, width-8 MLP (P = 139) on 20 samples
#: at θ_0, where the residual R is not negligible.
MLP_CE, MLP_MSE, MLP_MSE_SUM = MLP_CASES = [mlp_case(c) for c in CRITERIA]


def with_spectrum(eigenvalues, seed=0) -> torch.Tensor:
    """Q diag(λ) Qᵀ with a random orthogonal Q (QR of a Gaussian matrix drawn from ``seed``)."""
    lam = torch.as_tensor(eigenvalues, dtype=F64)
    Q, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=torch.Generator().manual_seed(seed), dtype=F64))
    return (Q * lam) @ Q.T


def dense_H(model, criterion, theta, X, y):
    """H by torch.func.hessian of the mean loss."""
    return hessian(lambda th: criterion.losses(model(th, X), y).mean())(theta)


def per_sample_jacobians(model, criterion, theta, X, y) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(J, H_ℓ) of each sample: its parameter Jacobian by jacrev, (n_L, P), and its criterion
    Hessian by autodiff, (n_L, n_L).
    """
    for x, t in zip(X, y):
        J = jacrev(lambda th: model(th, x[None])[0])(theta)  # (n_L, P)
        f = model(theta, x[None])
        yield J, hessian(lambda out: criterion.losses(out[None], t[None])[0])(f[0])


def dense_G(model, criterion, theta, X, y):
    """G = E[Jᵀ H_ℓ J] from :func:`per_sample_jacobians`, assembled sample by sample."""
    P = theta.numel()
    G = torch.zeros(P, P, dtype=theta.dtype)
    for J, Hl in per_sample_jacobians(model, criterion, theta, X, y):
        G += J.T @ Hl @ J
    return G / X.shape[0]


def rel(a, b):
    """‖a − b‖ / ‖b‖."""
    return float((a - b).norm() / b.norm())
