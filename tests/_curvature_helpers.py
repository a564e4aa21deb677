"""Small curvature problems and their dense references (torch.func), shared by the curvature,
eigensolver, spectrum and network tests (not a test module).
"""

import torch
from torch.func import hessian, jacrev

from eoslab.curvature import FullBatchLoss
from eoslab.models import MLP


def make_problem(criterion, n=20, seed=0):
    """(model, θ, X, y, FullBatchLoss) of a depth-3, width-8 MLP on n random float64 samples."""
    g = torch.Generator().manual_seed(seed)
    model = MLP(5, 3, depth=3, width=8)
    theta = model.init_params(seed)
    X = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return model, theta, X, y, FullBatchLoss(model, criterion, X, y)


def dense_H(model, criterion, theta, X, y):
    """H by torch.func.hessian of the mean loss."""
    return hessian(lambda th: criterion.losses(model(th, X), y).mean())(theta)


def dense_G(model, criterion, theta, X, y):
    """G = E[Jᵀ H_ℓ J] from per-sample jacrev Jacobians and the closed-form H_ℓ, assembled
    sample by sample.
    """
    P = theta.numel()
    G = torch.zeros(P, P, dtype=theta.dtype)
    for x, t in zip(X, y):
        J = jacrev(lambda th: model(th, x[None])[0])(theta)  # (n_L, P)
        f = model(theta, x[None])
        Hl = hessian(lambda out: criterion.losses(out[None], t[None])[0])(f[0])  # autodiff H_ℓ
        G += J.T @ Hl @ J
    return G / X.shape[0]


def rel(a, b):
    """‖a − b‖ / ‖b‖."""
    return float((a - b).norm() / b.norm())
