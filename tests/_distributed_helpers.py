"""What each rank of the data-parallel tests computes (importable by the spawned processes)."""

from __future__ import annotations

import torch

from eoslab.analysis import group_statistics, layerwise_statistics
from eoslab.criteria import CrossEntropy
from eoslab.curvature import FullBatchLoss
from eoslab.data import load_dataset
from eoslab.distributed import shard_slice, world
from eoslab.integrators import ExponentialEuler
from eoslab.models import CNN, MLP

N = 25  # odd: the two shards differ in size (13 and 12)


def problems() -> dict[str, tuple]:
    """An MLP and a CNN, each with its loss over this rank's shard (chunks of 4) and θ."""
    out = {}
    for name in ("mlp", "cnn"):
        ds = load_dataset("synthetic", n=N, num_classes=3, seed=2, noise=1.0, shape=[1, 4, 4])
        model = MLP(16, 3, depth=3, width=6) if name == "mlp" else CNN((1, 4, 4), 3, [2])
        rank, size = world()
        shard = shard_slice(N, rank, size)
        loss = FullBatchLoss(model, CrossEntropy(), ds.X[shard], ds.y[shard], chunk_size=4)
        out[name] = (loss, model, model.init_params(1), ds.X[shard], ds.y[shard])
    return out


def results() -> dict[str, dict[str, torch.Tensor]]:
    """Loss, gradient, H·V / G·V / R·V blocks, 5 exponential Euler steps and the analysis'
    expectations, on this process (or process group).
    """
    out = {}
    for name, (loss, model, theta, X, y) in problems().items():
        V = torch.randn(4, model.num_params, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        value = loss.value_and_grad(theta)
        r = {
            "loss": torch.tensor(value.loss),
            "accuracy": torch.tensor(value.accuracy),
            "grad": value.grad,
            "H": loss.hvp(theta, V),
            "G": loss.ggnvp(theta, V),
            "R": loss.residual_vp(theta, V),
            "N": torch.tensor(float(loss.num_samples)),
        }
        ee = ExponentialEuler(loss, theta, k=3, eta_max=0.5, seed=0)
        steps = [ee.step() for _ in range(5)]
        r["theta5"] = ee.theta
        r["t5"] = torch.tensor(ee.t)
        r["eigenvalues"] = torch.tensor([s.eigenvalues for s in steps])
        r["eig_iters"] = torch.tensor([s.eig_iters for s in steps])
        if name == "mlp":
            st = layerwise_statistics(model, CrossEntropy(), theta, X, y, chunk_size=4)
            r["stats"] = torch.cat(
                [st.layer_sqnorm, st.layerjac_sqnorm, st.eq7.flatten(), torch.tensor([st.jtilde_sqnorm])]
            )
        else:
            st = group_statistics(model, CrossEntropy(), theta, X, y, chunk_size=4)
            r["stats"] = torch.cat([st.layer_sqnorm, torch.tensor([st.jtilde_sqnorm, st.criterion_hessian_norm])])
        out[name] = r
    return out


def rank_main(path: str) -> int:
    """Every rank computes; rank 0 saves the results to ``path``."""
    r = results()
    if world()[0] == 0:
        torch.save(r, path)
    return 0
