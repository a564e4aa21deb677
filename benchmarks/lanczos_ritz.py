"""Ritz values of the batched Lanczos for ‖K_i‖² (docs/math.md §4, §6): eigvalsh vs Sturm multisection.

``eoslab.analysis.layerjac_sqnorms`` runs Lanczos on all samples of a chunk at once and, at each
check, needs the top eigenvalue of n small symmetric tridiagonal matrices T_j (j = 8, 16, 24, …
steps). It takes it from ``torch.linalg.eigvalsh`` of the dense T_j; the first version used
Sturm-sequence multisection (31 points per pass, a Python loop over the j pivots per pass), kept
here as the reference. Both are timed side by side in one process, interleaved, on the paper's
MLP at initialisation (6 × 512, ELU, Xavier × √2, 3072 random inputs in [0, 1), n = 512 samples =
one analysis chunk), for every layerwise Jacobian K_1..K_5:

* ``ritz_*_s``: the Ritz values alone, summed over the checks of the five Lanczos runs;
* ``lanczos_*_s``: the five whole ``layerjac_sqnorms`` calls with either Ritz method;
* ``max_rel_diff``: the largest relative difference of the returned ‖K_i‖² between the two.

``--quick``: width 64, 256 inputs, n = 64.
"""

from __future__ import annotations

import statistics
import time

import torch

import eoslab.analysis as analysis
import eoslab.analysis.lanczos as lanczos_module
from _common import emit
from eoslab.models import MLP, elu_derivative


def sturm_top(alpha: torch.Tensor, beta: torch.Tensor, sections: int = 31) -> torch.Tensor:
    """λ¹(T) by Sturm-sequence multisection to 4 ulp (the first version's method): x ≥ λ¹(T) iff
    every pivot of the LDLᵀ factorisation of T − xI is negative; bracket [max α, Gershgorin bound].
    """
    radius = torch.zeros_like(alpha)
    radius[:, 1:] += beta.abs()
    radius[:, :-1] += beta.abs()
    lo, hi = alpha.max(1).values, (alpha + radius).max(1).values
    rtol = 4 * torch.finfo(alpha.dtype).eps
    b2 = beta.square()
    grid = torch.arange(1, sections + 1, dtype=alpha.dtype, device=alpha.device) / (sections + 1)
    tiny = torch.finfo(alpha.dtype).tiny
    while bool(((hi - lo) > rtol * hi.abs()).any()):
        x = lo[:, None] + (hi - lo)[:, None] * grid
        d = alpha[:, :1] - x
        above = d < 0
        for k in range(1, alpha.shape[1]):
            d = alpha[:, k : k + 1] - x - b2[:, k - 1 : k] / torch.where(d == 0, -tiny, d)
            above &= d < 0
        hi = torch.minimum(hi, torch.where(above, x, torch.inf).min(1).values)
        lo = torch.maximum(lo, torch.where(above, -torch.inf, x).max(1).values)
    return hi


def main() -> None:
    from _common import parser

    args = parser(__doc__.splitlines()[0]).parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    input_dim, width, n = (256, 64, args.n or 64) if args.quick else (3072, 512, args.n or 512)
    depth = 6
    model = MLP(input_dim, 10, depth=depth, width=width)
    theta = model.init_params(0)
    X = torch.rand(n, input_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        fwd = model.forward_all(theta, X)
    layers = model.layers(theta)
    problems = [(layers[i + 1][0], elu_derivative(fwd.z[i])) for i in range(depth - 1)]

    eigvalsh_top = lanczos_module._top_ritz_value
    ritz_time = {"eigvalsh": 0.0, "sturm": 0.0}
    steps: list[int] = []

    def timed(name, fn):
        def wrapper(alpha, beta):
            start = time.perf_counter()
            out = fn(alpha, beta)
            ritz_time[name] += time.perf_counter() - start
            if name == "eigvalsh":
                steps.append(alpha.shape[1])
            return out

        return wrapper

    def run(name, fn):
        lanczos_module._top_ritz_value = timed(name, fn)
        start = time.perf_counter()
        out = [
            analysis.layerjac_sqnorms(W, d, generator=torch.Generator().manual_seed(i))
            for i, (W, d) in enumerate(problems)
        ]
        return time.perf_counter() - start, torch.stack(out)

    repeats = 3
    totals = {"eigvalsh": [], "sturm": []}
    results = {}
    try:
        run("eigvalsh", eigvalsh_top)  # warm-up
        ritz_time.update(eigvalsh=0.0, sturm=0.0)
        steps.clear()
        for _ in range(repeats):  # interleaved: both see the same load
            for name, fn in (("eigvalsh", eigvalsh_top), ("sturm", sturm_top)):
                seconds, results[name] = run(name, fn)
                totals[name].append(seconds)
    finally:
        lanczos_module._top_ritz_value = eigvalsh_top
    diff = float(((results["eigvalsh"] - results["sturm"]).abs() / results["sturm"].abs()).max())
    ritz = {k: v / repeats for k, v in ritz_time.items()}
    lanczos = {k: statistics.median(v) for k, v in totals.items()}
    checks = steps[: len(steps) // repeats]
    print(
        f"Ritz values: Sturm {ritz['sturm']:.3f} s, eigvalsh {ritz['eigvalsh']:.3f} s "
        f"({ritz['sturm'] / ritz['eigvalsh']:.1f}×); whole Lanczos: Sturm {lanczos['sturm']:.3f} s, "
        f"eigvalsh {lanczos['eigvalsh']:.3f} s; checks at j = {checks}; max rel diff {diff:.1e}"
    )
    emit(
        {
            "ritz_sturm_s": ritz["sturm"],
            "ritz_eigvalsh_s": ritz["eigvalsh"],
            "ritz_sturm_over_eigvalsh": ritz["sturm"] / ritz["eigvalsh"],
            "lanczos_sturm_s": lanczos["sturm"],
            "lanczos_eigvalsh_s": lanczos["eigvalsh"],
            "lanczos_sturm_over_eigvalsh": lanczos["sturm"] / lanczos["eigvalsh"],
            "max_steps_seen": max(checks),
            "checks": len(checks),
            "max_rel_diff": diff,
        },
        {"input_dim": input_dim, "depth": depth, "width": width, "n": n, "quick": args.quick},
    )


if __name__ == "__main__":
    main()
