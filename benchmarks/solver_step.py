"""Cost of an exponential Euler step (docs/math.md §7) in gradients, and its H·V products per step.

The paper's network (6 Linear layers × 512, ELU, float64), 3072 inputs, 10 classes, cross-entropy,
on N = 390 random inputs in [0, 1) with random labels (a real training signal: the network fits
them), trained from initialisation with the default exponential Euler (k = n_L = 10, η_max = 0.01,
warm-started LOBPCG at tol 1e-4, D3/D4).

Prints, as its last line, a JSON object:

* ``grad_s``: median seconds of one full-batch loss + gradient, timed just before each step
  after the first 10 (so both see the same machine load);
* ``step_s``: median seconds of one exponential Euler step after the first 10 steps;
* ``step_over_grad``: their ratio (the number we track);
* ``hvps_per_step``: mean single-vector H·v products per step after the first 10 steps
  (``blocks_per_step`` divides it by the block width k + 1 + guard vectors), of which
  ``float32_hvps_per_step`` in float32 (``--precision mixed``);
* ``max_rel_eig_error``: every ``--check-every`` steps, the k + 1 eigenvalues the step used are
  compared with a tight solve (LOBPCG, tol 1e-10) at the same θ: max |λ − λ*| / |λ*| (D4 asks
  for 1e-4);
* ``device``, ``dtype``, ``threads`` and the problem size.

``--quick``: a depth-3, width-32 network on 128 inputs and N = 64, 20 steps (seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from eoslab.criteria import make_criterion
from eoslab.curvature import FullBatchLoss
from eoslab.eigen import LOBPCG, PRECISIONS
from eoslab.eigspec import EigSpec
from eoslab.integrators import ExponentialEuler
from eoslab.models import MLP

FULL = dict(depth=6, width=512, input_dim=3072, n=390, steps=35, check_every=5)
QUICK = dict(depth=3, width=32, input_dim=128, n=64, steps=20, check_every=5)
WARMUP_STEPS = 10
CLASSES = 10
EIG_TOL = 1e-4  # D4
TIGHT_TOL = 1e-10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small problem (seconds)")
    parser.add_argument("--steps", type=int, help="exponential Euler steps (default 35, quick 20)")
    parser.add_argument("--check-every", type=int, help="steps between eigenvalue-accuracy checks")
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: as is; 1 with --quick, where more only add overhead)"
    )
    parser.add_argument("--width", type=int, help="hidden width (default 512, quick 32)")
    parser.add_argument(
        "--eta-max", type=float, default=0.01, help="η_max (D3; default 0.01; 1: the curvature sets Δt, as the presets)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float64",
        help="LOBPCG's products: float64, or mixed (float32, certified in float64)",
    )
    args = parser.parse_args()
    size = dict(QUICK if args.quick else FULL)
    size["width"] = args.width or size["width"]
    size["steps"] = args.steps or size["steps"]
    size["check_every"] = args.check_every or size["check_every"]
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    dtype = torch.float64

    g = torch.Generator().manual_seed(0)
    X = torch.rand(size["n"], size["input_dim"], generator=g, dtype=dtype)
    y = torch.randint(0, CLASSES, (size["n"],), generator=g)
    model = MLP(size["input_dim"], CLASSES, size["depth"], size["width"], dtype=dtype)
    loss = FullBatchLoss(model, make_criterion("ce"), X, y)
    theta = model.init_params(0)

    loss.value_and_grad(theta)  # warm caches / allocator
    spec = EigSpec(tol=EIG_TOL, precision=args.precision)
    ee = ExponentialEuler(loss, theta, k=CLASSES, eta_max=args.eta_max, eigensolver=spec)
    grad_times, step_times, hvps, low_hvps, iters, errors, losses = [], [], [], [], [], [], []
    for u in range(size["steps"]):
        theta_u = ee.theta.clone()
        start = time.perf_counter()  # a gradient timed beside each step: same load
        loss.value_and_grad(theta_u)
        grad_time = time.perf_counter() - start
        start = time.perf_counter()
        report = ee.step()
        elapsed = time.perf_counter() - start
        losses.append(report.loss)
        if u % size["check_every"] == 0:  # tight solve at θ_u, from the step's own eigenvectors
            # a fresh solver per check: its ≈ 1.6 GB of buffers (paper size) are freed between checks
            tight = LOBPCG(CLASSES + 1, tol=TIGHT_TOL, max_iters=500, generator=torch.Generator().manual_seed(u))
            reference = tight.solve(loss.operator(theta_u, "H"), ee.state_dict()["eigenvectors"]).eigenvalues
            del tight
            used = torch.tensor(report.eigenvalues, dtype=dtype)
            errors.append(float(((used - reference).abs() / reference.abs()).max()))
        if u >= WARMUP_STEPS:
            grad_times.append(grad_time)
            step_times.append(elapsed)
            hvps.append(report.hvps)
            low_hvps.append(report.low_hvps)
            iters.append(report.eig_iters)
        print(
            f"step {u:3d}  loss {report.loss:.5f}  λ¹ {report.eigenvalues[0]:9.3f}  dt {report.dt:.4g}  "
            f"hvps {report.hvps:3d}  iters {report.eig_iters:2d}  {elapsed:7.3f} s  grad {grad_time:.3f} s"
            + (f"  rel.eig.err {errors[-1]:.2e}" if u % size["check_every"] == 0 else ""),
            file=sys.stderr,
            flush=True,
        )

    grad_s, step_s = statistics.median(grad_times), statistics.median(step_times)
    block = CLASSES + 1 + max(2, (CLASSES + 1) // 4)  # LOBPCG's default guard vectors
    hvps_per_step = sum(hvps) / len(hvps)
    print(
        json.dumps(
            {
                "grad_s": grad_s,
                "step_s": step_s,
                "step_over_grad": step_s / grad_s,
                "hvps_per_step": hvps_per_step,
                "float32_hvps_per_step": sum(low_hvps) / len(low_hvps),
                "precision": args.precision,
                "eta_max": args.eta_max,
                "blocks_per_step": hvps_per_step / block,
                "eig_iters_per_step": sum(iters) / len(iters),
                "max_rel_eig_error": max(errors),
                "eig_tol": EIG_TOL,
                "loss_first": losses[0],
                "loss_last": losses[-1],
                "device": "cpu",
                "dtype": "float64",
                "threads": torch.get_num_threads(),
                "n_samples": size["n"],
                "input_dim": size["input_dim"],
                "depth": size["depth"],
                "width": size["width"],
                "num_params": model.num_params,
                "k": CLASSES,
                "steps": size["steps"],
                "timed_steps": len(step_times),
                "quick": args.quick,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
