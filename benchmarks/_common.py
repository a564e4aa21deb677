"""Shared set-up for the benchmarks: the paper's MLP on random data, timing, the JSON line."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from eoslab.criteria import make_criterion
from eoslab.curvature import FullBatchLoss
from eoslab.models import MLP


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a small problem that finishes in well under a minute")
    p.add_argument("--n", type=int, default=None, help="samples (default 390; quick: 64)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--criterion", default="ce", choices=["ce", "mse"])
    p.add_argument("--width", type=int, default=None, help="hidden width (default 512; quick: 64)")
    return p


def paper_problem(args) -> tuple[MLP, torch.Tensor, FullBatchLoss, dict]:
    """6 × 512 ELU MLP, 3072 inputs, 10 classes, N = 390 random inputs (quick: 3 × 64, 256 inputs);
    ``--width`` and ``--n`` change the width and N.
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        input_dim, depth, width, n = 256, 3, args.width or 64, args.n or 64
    else:
        input_dim, depth, width, n = 3072, 6, args.width or 512, args.n or 390
    g = torch.Generator().manual_seed(0)
    model = MLP(input_dim, 10, depth=depth, width=width)
    theta = model.init_params(0)
    X = torch.rand(n, input_dim, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (n,), generator=g)
    loss = FullBatchLoss(model, make_criterion(args.criterion), X, y)
    size = {
        "input_dim": input_dim,
        "depth": depth,
        "width": width,
        "outputs": 10,
        "n": n,
        "params": model.num_params,
        "criterion": args.criterion,
    }
    return model, theta, loss, size


def median_time(fn, repeats: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def emit(figures: dict, size: dict) -> None:
    """Print the benchmark's last line: one JSON object (docs/performance.md)."""
    out = {
        **figures,
        **size,
        "device": f"cpu ({platform.processor() or platform.machine()})",
        "dtype": "float64",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(json.dumps({k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in out.items()}))
