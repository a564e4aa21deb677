"""What the flow costs to follow (docs/math.md §7, docs/performance.md): gradients per unit of flow time,
at a measured trajectory accuracy.

The paper's MLP (6 × 512, ELU, float64, 3072 inputs, 10 classes) on N = 390 random inputs and
labels, cross-entropy (``_common.paper_problem``). From the same θ₀, exponential Euler (k = 10,
η_max = 1: the step set by the curvature, Δt = 1/|λ^{k+1}|, as the reproduction presets run it) is
run to the flow time ``--time`` twice, interleaved step by step so both see the same machine load:

* **default**: the library's settings (eigensolver tol 1e-4, D4);
* **reference**: the same integrator with a tight eigensolver (tol 1e-10);
* **mixed** (with ``--mixed``): the default settings with LOBPCG's float32 products, certified in
  float64 (``EigSpec.precision = "mixed"``).

Both take their own steps (Δt comes from their own λ^{k+1}); each run's last step is shortened to
land on ``--time`` exactly. Prints, as its last line, a JSON object:

* ``grad_s``: median seconds of one full-batch loss + gradient (timed beside every step);
* ``default_*``, ``reference_*`` (and ``mixed_*``): ``wall_s`` (the flow's wall time), ``steps``,
  ``products`` (H·v), ``float32_products``, ``gradients`` (wall time over ``grad_s``),
  ``gradients_per_time`` (gradients per unit of flow time), ``first_step_products`` (the cold start);
* ``rel_theta_diff`` = ‖θ − θ_ref‖ / ‖θ_ref − θ₀‖ (the difference against the distance travelled),
  ``rel_loss_diff``, ``rel_lambda1_diff`` (λ¹(H) at the end, both from a tight solve) — the
  trajectory error the default settings make (``mixed_rel_*``: the mixed run's).

``--quick``: a 3 × 64 network on 256 inputs, N = 64, to t = 2 (seconds).
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from _common import emit, paper_problem, parser
from eoslab.eigen import LOBPCG
from eoslab.eigspec import EigSpec
from eoslab.integrators import ExponentialEuler

K = 10
TIGHT_TOL = 1e-10


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--time", type=float, default=None, help="flow time to reach (default 1.0; quick 2.0)")
    p.add_argument("--eta-max", type=float, default=1.0, help="η_max (D3; default 1: curvature-limited steps)")
    p.add_argument("--mixed", action="store_true", help="also run the default with float32 products (precision mixed)")
    args = p.parse_args()
    _, theta0, loss, size = paper_problem(args)
    horizon = args.time or (2.0 if args.quick else 1.0)

    runs = {
        "default": ExponentialEuler(loss, theta0, k=K, eta_max=args.eta_max),
        "reference": ExponentialEuler(loss, theta0, k=K, eta_max=args.eta_max, eigensolver=EigSpec(tol=TIGHT_TOL)),
    }
    if args.mixed:
        mixed = EigSpec(precision="mixed")
        runs["mixed"] = ExponentialEuler(loss, theta0, k=K, eta_max=args.eta_max, eigensolver=mixed)
    stats = {
        name: {"wall_s": 0.0, "steps": 0, "products": 0, "float32_products": 0, "first_step_products": None}
        for name in runs
    }
    grad_times = []
    while any(run.t < horizon * (1 - 1e-12) for run in runs.values()):
        for name, run in runs.items():
            if run.t >= horizon * (1 - 1e-12):
                continue
            start = time.perf_counter()
            loss.value_and_grad(run.theta)
            grad_times.append(time.perf_counter() - start)
            run.eta_max = min(args.eta_max, horizon - run.t)  # land on the horizon exactly
            start = time.perf_counter()
            report = run.step()
            s = stats[name]
            s["wall_s"] += time.perf_counter() - start
            s["steps"] += 1
            s["products"] += report.hvps
            s["float32_products"] += report.low_hvps
            if s["first_step_products"] is None:
                s["first_step_products"] = report.hvps
            print(
                f"{name:9s} step {s['steps']:3d}  t {run.t:.4f}  loss {report.loss:.6f}  "
                f"λ¹ {report.eigenvalues[0]:9.3f}  dt {report.dt:.4g}  hvps {report.hvps:3d}",
                file=sys.stderr,
                flush=True,
            )
    grad_s = statistics.median(grad_times)
    figures = {"grad_s": grad_s, "time": horizon, "eta_max": args.eta_max, "k": K}
    for name, s in stats.items():
        s["gradients"] = s["wall_s"] / grad_s
        s["gradients_per_time"] = s["gradients"] / horizon
        figures.update({f"{name}_{key}": value for key, value in s.items()})

    ref = runs["reference"].theta
    end = {}
    for name, run in runs.items():
        tight = LOBPCG(1, tol=TIGHT_TOL, max_iters=500, generator=torch.Generator().manual_seed(0))
        lam1 = float(tight.solve(loss.operator(run.theta, "H")).eigenvalues[0])
        end[name] = (loss.value_and_grad(run.theta).loss, lam1)
    for name in runs.keys() - {"reference"}:
        prefix = "" if name == "default" else f"{name}_"
        theta = runs[name].theta
        diff = torch.linalg.vector_norm(theta - ref) / torch.linalg.vector_norm(ref - theta0)
        figures[f"{prefix}rel_theta_diff"] = float(diff)
        figures[f"{prefix}rel_loss_diff"] = abs(end[name][0] - end["reference"][0]) / abs(end["reference"][0])
        figures[f"{prefix}rel_lambda1_diff"] = abs(end[name][1] - end["reference"][1]) / abs(end["reference"][1])
    emit(figures, size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
