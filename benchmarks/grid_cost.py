"""What one Table-1 row costs on this machine, from measured steps and measured step times.

The paper's network (6 Linear layers × 512, ELU, float64), exponential Euler with the paper's
η_max = 0.01 (D3), on one dataset of Table 1 (default AtrialFibrillation, cross-entropy):

1. ``full run``: the smallest subset trained to the target loss (docs/math.md §8): steps, flow
   time t, wall time (``--full-run-limit-s`` stops it earlier; then the steps per unit of flow
   time so far are what was measured);
2. ``step times``: for every subset size of the row, the median wall time of an exponential Euler
   step and of a gradient over ``--steps`` steps from the initialisation (the first two steps, the
   eigensolver's cold start, are timed but not in the median);
3. the row's cost from those measurements alone: 16 runs per size (4 init × 4 subset seeds) ×
   the steps measured for the smallest subset × the step time measured at each size. A larger
   subset takes at least as much flow time to fit (more data to fit), so this is a **lower bound**
   built from measured numbers only; nothing is extrapolated.

The last line is one JSON object (docs/performance.md). ``--quick``: a depth-3, width-32 network,
2 sizes, η_max = 1 (seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import torch

from eoslab.config import from_dict
from eoslab.data.subsets import paper_subset_sizes
from eoslab.runs import build_problem, make_integrator

#: The paper's grid: 4 initialisation seeds × 4 subset seeds per (dataset, size, criterion).
RUNS_PER_SIZE = 16


def _config(args, n: int, depth: int, width: int) -> dict:
    data = {"name": args.dataset, "n": n, "options": dict(args.options)}
    if args.data_root:
        data["data_root"] = args.data_root
    return {
        "data": data,
        "model": {"depth": depth, "width": width},
        "criterion": {"name": args.criterion},
        "solver": {"method": "exp_euler", "eta_max": args.eta_max},
    }


def full_run(args, n: int, depth: int, width: int) -> dict:
    """Train the size-``n`` subset to the target loss (or until the time limit)."""
    problem = build_problem(from_dict(_config(args, n, depth, width)))
    integ = make_integrator(problem)
    target = problem.config.train.target_loss
    start = time.perf_counter()
    report = integ.step(stop_below=target)
    while not report.final and time.perf_counter() - start < args.full_run_limit_s:
        report = integ.step(stop_below=target)
    wall = time.perf_counter() - start
    reached = report.final and math.isfinite(report.loss) and report.loss <= target
    return {
        "n": n,
        "reached_target": bool(reached),
        "steps": report.step,
        "t": report.t,
        "loss": report.loss,
        "wall_s": wall,
        "steps_per_flow_time": report.step / report.t if report.t > 0 else float("nan"),
    }


def step_times(args, n: int, depth: int, width: int) -> dict:
    """Median wall time of an exponential Euler step and of a gradient at size ``n``."""
    problem = build_problem(from_dict(_config(args, n, depth, width)))
    integ = make_integrator(problem)
    steps, grads = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        problem.loss.value_and_grad(integ.theta)
        grads.append(time.perf_counter() - start)
        start = time.perf_counter()
        integ.step()
        steps.append(time.perf_counter() - start)
    warm = steps[2:] or steps
    return {
        "n": n,
        "step_s": statistics.median(warm),
        "grad_s": statistics.median(grads),
        "first_steps_s": steps[:2],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="depth 3, width 32, two sizes (seconds)")
    p.add_argument("--dataset", default="atrial_fibrillation", help="a Table-1 dataset (default atrial_fibrillation)")
    p.add_argument("--criterion", default="ce", choices=["ce", "mse"])
    p.add_argument("--data-root", default=None, help="data root (default $EOSLAB_DATA or ~/.cache/eoslab)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a loader option")
    p.add_argument("--eta-max", type=float, default=0.01, help="exponential Euler's η_max (default 0.01, D3)")
    p.add_argument("--steps", type=int, default=6, help="steps timed per size (default 6)")
    p.add_argument("--full-run-limit-s", type=float, default=3 * 3600, help="stop the full run after this long")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()
    args.options = {k: int(v) if v.isdigit() else v for k, v in (o.split("=", 1) for o in args.option)}
    if args.threads:
        torch.set_num_threads(args.threads)
    depth, width = (3, 32) if args.quick else (6, 512)
    sizes = list(paper_subset_sizes(args.dataset, args.criterion))
    if args.quick:  # seconds: Δt set by the curvature instead of η_max = 0.01
        sizes, args.steps, args.eta_max = sizes[:2], 3, 1.0

    smallest = full_run(args, sizes[0], depth, width)
    times = [step_times(args, n, depth, width) for n in sizes]
    lower_bound_s = sum(RUNS_PER_SIZE * smallest["steps"] * t["step_s"] for t in times)
    out = {
        "full_run": smallest,
        "step_times": times,
        "row_lower_bound_h": lower_bound_s / 3600,
        "row_runs": RUNS_PER_SIZE * len(sizes),
        "row": f"{args.dataset}/{args.criterion}",
        "sizes": sizes,
        "eta_max": args.eta_max,
        "depth": depth,
        "width": width,
        "device": f"cpu ({platform.processor() or platform.machine()})",
        "dtype": "float64",
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
