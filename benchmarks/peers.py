"""eoslab beside its peers, in one process, on identical θ and data (docs/performance.md).

The paper's MLP (6 Linear layers × 512, ELU, float64) on N = 390 random CIFAR-shaped inputs
(3 × 32 × 32 in [0, 1), 10 random labels), cross-entropy, θ₀ = eoslab's initialisation; the peers
get the same θ₀ (its flat layout is ``nn.Sequential``'s parameter order) and the same tensors,
and the first thing checked is that all three compute the same loss and gradient.

1. **Exponential Euler** (docs/math.md §7): ``eoslab.integrators.ExponentialEuler`` against
   ``stable_solvers.ExponentialEulerSolver`` (stable-solvers 0.1, the authors' package): k = 10
   (``stiff_dim`` 10), η_max = 0.01, eigen tolerance 1e-4. The peer takes the top k + 1 by
   |λ| and Δt from the (k+1)-th by |λ|, so eoslab runs with ``EigSpec(order="magnitude")`` here —
   like with like (its default, D14, ranks by value). Both start warm at θ₀ from the same
   eigenvectors (a tight eoslab solve), then take ``--steps`` steps each, interleaved (same
   machine load); the H·v products of the peer are counted by wrapping its operator.
2. **Top 11 eigenvalues of H** at θ₀, cold: eoslab's LOBPCG (tol 1e-4, block products) against
   ``curvlinops.HessianLinearOperator`` (curvlinops-for-pytorch) handed to
   ``scipy.sparse.linalg.eigsh`` (ARPACK Lanczos, one product per call, ``which="LA"``,
   tol 1e-4), products counted by wrapping its ``matvec``/``matmat``.

Both peers come with the ``bench`` extra: ``make peers`` installs it under ``constraints.txt``,
which pins torch (a peer that wants another torch then fails to install instead of replacing
it). ARPACK runs on SciPy's BLAS threads beside torch's; both fighting over 2 cores made one
``eigsh`` take 107 s instead of 1.2 s, so this benchmark gives BLAS one thread (set before NumPy
loads) and torch ``--threads``. Prints, as its last line, a JSON object with
``ours_step_s``, ``peer_step_s`` (medians over the steps; null with ``--steps 0``), ``step_speedup`` (their ratio),
``ours_hvps_per_step``, ``peer_hvps_per_step``, ``step0_max_rel_eig_diff`` (the k + 1 eigenvalues
both used at θ₀), ``ours_eig_s``, ``curvlinops_eig_s``, ``eig_speedup_vs_curvlinops``,
``ours_eig_products``, ``curvlinops_eig_products``, ``max_rel_eig_diff`` (eoslab vs eigsh, top 11),
the same for eoslab's LOBPCG with float32 products certified in float64 (``ours_mixed_eig_*``,
``eig_speedup_mixed_vs_curvlinops``, ``mixed_max_rel_eig_diff``),
``eig_order`` and the problem size. ``--quick``: a 3 × 32 network on N = 48 (a minute).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):  # before NumPy loads its BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import emit  # noqa: E402
from eoslab.criteria import make_criterion  # noqa: E402
from eoslab.curvature import FullBatchLoss  # noqa: E402
from eoslab.eigen import LOBPCG  # noqa: E402
from eoslab.eigspec import EigSpec  # noqa: E402
from eoslab.integrators import ExponentialEuler  # noqa: E402
from eoslab.models import MLP  # noqa: E402

K = 10  # exact directions (stiff_dim); the solvers compute K + 1 eigenpairs
ETA_MAX = 0.01
TOL = 1e-4
FULL = dict(depth=6, width=512, n=390, steps=2)
QUICK = dict(depth=3, width=32, n=48, steps=3)


def peer_network(depth: int, width: int) -> torch.nn.Sequential:
    """The MLP as an ``nn.Sequential`` (flatten, Linear, ELU, …, Linear): its parameters, in
    order, have eoslab's flat layout (W_1, b_1, …, W_L, b_L, each W row-major).
    """
    dims = [3 * 32 * 32] + [width] * (depth - 1) + [10]
    layers: list[torch.nn.Module] = [torch.nn.Flatten()]
    for i in range(depth):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1], dtype=torch.float64))
        if i < depth - 1:
            layers.append(torch.nn.ELU())
    return torch.nn.Sequential(*layers)


def load_params(net: torch.nn.Module, theta: torch.Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(theta[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
    assert offset == theta.numel()


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs()).max())


def by_magnitude(values) -> torch.Tensor:
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    return v[torch.argsort(v.abs(), descending=True)]


STEP_FIELDS = (
    "ours_step_s",
    "peer_step_s",
    "step_speedup",
    "ours_hvps_per_step",
    "peer_hvps_per_step",
    "step0_max_rel_eig_diff",
    "lambda1_last_ours",
    "lambda1_last_peer",
)


def compare_steps(loss, theta0, peer_loss, stable_solvers, steps: int) -> dict:
    """``steps`` exponential Euler steps of eoslab and of ``stable-solvers``, interleaved, both warm
    from the same tight eigenvectors at θ₀: the :data:`STEP_FIELDS` of the JSON line.
    """
    ours_s, peer_s, ours_hvps, peer_hvps, lam1 = [], [], [], [], []
    step0_diff = None
    start = LOBPCG(K + 1, tol=1e-8, max_iters=1000, order="magnitude", generator=torch.Generator().manual_seed(1))
    warm = start.solve(loss.operator(theta0, "H"))
    ours = ExponentialEuler(loss, theta0, k=K, eta_max=ETA_MAX, eigensolver=EigSpec(tol=TOL, order="magnitude"))
    ours.load_state_dict({"step": 0, "t": 0.0, "theta": theta0, "eigenvectors": warm.warm_start()})
    peer = stable_solvers.ExponentialEulerSolver(theta0.clone(), peer_loss, max_step_size=ETA_MAX, stiff_dim=K)
    peer.eigvecs = warm.eigenvectors.clone()

    peer_products = [0]
    forward = stable_solvers.operators.LossHessian.forward

    def counted(self, m):
        peer_products[0] += m.shape[-1]
        return forward(self, m)

    stable_solvers.operators.LossHessian.forward = counted
    for u in range(steps):
        t0 = time.perf_counter()
        report = ours.step()
        ours_s.append(time.perf_counter() - t0)
        ours_hvps.append(report.hvps)
        peer_products[0] = 0
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the peer warns when the loss rises
            peer_report = peer.step()
        peer_s.append(time.perf_counter() - t0)
        peer_hvps.append(peer_products[0])
        a, b = by_magnitude(report.eigenvalues), by_magnitude(peer_report.eigvals)
        if u == 0:
            step0_diff = rel_diff(a, b)
        lam1.append((float(a[0]), float(b[0])))
        print(
            f"step {u}: eoslab {ours_s[-1]:.2f} s, {report.hvps} H·v, λ¹ {float(a[0]):.6g}, Δt {report.dt:.4g};  "
            f"stable-solvers {peer_s[-1]:.2f} s, {peer_hvps[-1]} H·v, λ¹ {float(b[0]):.6g}, "
            f"Δt {peer_report.dt:.4g}",
            flush=True,
        )
    stable_solvers.operators.LossHessian.forward = forward
    ours_step, peer_step = statistics.median(ours_s), statistics.median(peer_s)
    values = (ours_step, peer_step, peer_step / ours_step, statistics.mean(ours_hvps), statistics.mean(peer_hvps))
    return dict(zip(STEP_FIELDS, (*values, step0_diff, *lam1[-1]), strict=True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small problem (about a minute)")
    p.add_argument(
        "--steps", type=int, help="exponential Euler steps of each (default 2; quick 3; 0: only the cold top-11)"
    )
    p.add_argument("--threads", type=int, help="torch threads (default: as is)")
    args = p.parse_args()
    try:
        import stable_solvers
        from curvlinops import HessianLinearOperator
    except ImportError as e:
        raise SystemExit(
            f"benchmarks/peers.py needs the peers of the bench extra ({e}): `make peers` installs them "
            "under constraints.txt, which keeps torch at its pinned build"
        ) from None
    from scipy.sparse.linalg import LinearOperator as ScipyOperator
    from scipy.sparse.linalg import eigsh

    if args.threads:
        torch.set_num_threads(args.threads)
    size = dict(QUICK if args.quick else FULL)
    steps = size["steps"] if args.steps is None else args.steps
    g = torch.Generator().manual_seed(0)
    images = torch.rand(size["n"], 3, 32, 32, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 10, (size["n"],), generator=g)
    model = MLP(3 * 32 * 32, 10, size["depth"], size["width"])
    loss = FullBatchLoss(model, make_criterion("ce"), images.flatten(1), labels)
    theta0 = model.init_params(0)

    net = peer_network(size["depth"], size["width"])  # curvlinops' (stable-solvers moves its own to "meta")
    load_params(net, theta0)
    peer_loss = stable_solvers.LossFunction(
        torch.utils.data.TensorDataset(images, labels),
        torch.nn.CrossEntropyLoss(),
        peer_network(size["depth"], size["width"]),
        batch_size=size["n"],
    )
    # the same function: loss and gradient agree (a layout or criterion mismatch stops here)
    ours_value = loss.value_and_grad(theta0)
    peer_value, peer_grad = peer_loss.gradient(theta0.clone())
    grad_diff = float((peer_grad - ours_value.grad).norm() / ours_value.grad.norm())
    assert abs(float(peer_value) - ours_value.loss) < 1e-12 * ours_value.loss and grad_diff < 1e-10, grad_diff

    # ---- 1. exponential Euler, warm from the same eigenvectors at θ₀ (--steps 0: skipped; the peer's
    # first step takes ≈ 14 min at full size on 1 thread)
    step_fields = compare_steps(loss, theta0, peer_loss, stable_solvers, steps) if steps else dict.fromkeys(STEP_FIELDS)

    # ---- 2. top 11 of H at θ₀, cold
    op = loss.operator(theta0, "H")
    t0 = time.perf_counter()
    ours_eig = LOBPCG(K + 1, tol=TOL, max_iters=1000, generator=torch.Generator().manual_seed(2)).solve(op)
    ours_eig_s = time.perf_counter() - t0
    op = loss.operator(theta0, "H")  # fresh: its float32 form is built inside the timed solve
    t0 = time.perf_counter()
    mixed = LOBPCG(K + 1, tol=TOL, max_iters=1000, generator=torch.Generator().manual_seed(2), precision="mixed")
    mixed_eig = mixed.solve(op)
    mixed_eig_s = time.perf_counter() - t0
    H = HessianLinearOperator(
        net, torch.nn.CrossEntropyLoss(), list(net.parameters()), [(images, labels)], check_deterministic=False
    ).to_scipy(np.float64)
    products = [0]

    def matvec(v):
        products[0] += 1
        return H.matvec(v)

    def matmat(V):
        products[0] += V.shape[1]
        return H.matmat(V)

    counted_H = ScipyOperator(H.shape, matvec=matvec, matmat=matmat, dtype=np.float64)
    v0 = np.random.default_rng(2).standard_normal(H.shape[0])
    t0 = time.perf_counter()
    values = eigsh(counted_H, k=K + 1, which="LA", tol=TOL, v0=v0, return_eigenvectors=False)
    peer_eig_s = time.perf_counter() - t0
    peer_values = torch.as_tensor(np.sort(values)[::-1].copy())
    eig_diff = rel_diff(ours_eig.eigenvalues, peer_values)
    print(
        f"top {K + 1} of H: eoslab LOBPCG {ours_eig_s:.2f} s, {ours_eig.products} products; "
        f"mixed precision {mixed_eig_s:.2f} s, {mixed_eig.products} products ({mixed_eig.low_products} float32); "
        f"curvlinops + eigsh {peer_eig_s:.2f} s, {products[0]} products; max rel. difference {eig_diff:.2e}"
    )
    emit(
        {
            **step_fields,
            "ours_eig_s": ours_eig_s,
            "curvlinops_eig_s": peer_eig_s,
            "eig_speedup_vs_curvlinops": peer_eig_s / ours_eig_s,
            "ours_eig_products": ours_eig.products,
            "ours_mixed_eig_s": mixed_eig_s,
            "ours_mixed_eig_products": mixed_eig.products,
            "ours_mixed_eig_float32_products": mixed_eig.low_products,
            "eig_speedup_mixed_vs_curvlinops": peer_eig_s / mixed_eig_s,
            "mixed_max_rel_eig_diff": rel_diff(mixed_eig.eigenvalues, peer_values),
            "curvlinops_eig_products": products[0],
            "max_rel_eig_diff": eig_diff,
            "eig_order": "magnitude (the peer's rule) for the steps; algebraic for the top-11 of H",
            "steps": steps,
            "peers": f"stable-solvers {_version('stable-solvers')}, curvlinops {_version('curvlinops-for-pytorch')}",
        },
        {"input_shape": "3x32x32", "depth": size["depth"], "width": size["width"], "outputs": 10, "n": size["n"]}
        | {"params": model.num_params, "criterion": "ce", "k": K, "eig_tol": TOL, "quick": args.quick},
    )


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    main()
