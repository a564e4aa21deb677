"""Cost of the curvature primitives on the paper's MLP, as multiples of one gradient.

Prints the time of one gradient, of one block of 11 H·V and 11 G·V (each hvp method), and the
operator products a cold and a warm LOBPCG solve (and the paper's block power iteration) of the
top 11 eigenpairs of H need to reach relative eigenvalue accuracy 1e-4, checked against a tight
solve. The warm start comes from the eigenvectors at θ before one gradient step of size 0.01.

``--quick`` (defined with the other shared flags in ``_common.py``): a 3 × 64 network on 256 inputs
and N = 64, which finishes in seconds.
"""

from __future__ import annotations

import time

import torch

from _common import emit, median_time, paper_problem, parser
from eoslab.curvature import HVP_METHODS
from eoslab.eigen import LOBPCG, block_power

K = 11


def solve_products(solve, reference: torch.Tensor) -> tuple[int, float]:
    res = solve()
    err = float(((res.eigenvalues - reference).abs() / reference.abs()).max())
    return res.products, err


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    began = time.perf_counter()
    model, theta, L, size = paper_problem(args)
    repeats = 3 if args.quick else 1
    grad_s = median_time(lambda: L.value_and_grad(theta), repeats=5)
    V = torch.randn(K, model.num_params, dtype=theta.dtype, generator=torch.Generator().manual_seed(1))
    hvp_s = {}
    for method in HVP_METHODS[1:]:
        L.hvp_method = method
        hvp_s[method] = median_time(lambda: L.hvp(theta, V), repeats=repeats)
        print(f"block of {K} H·V ({method}): {hvp_s[method]:.3f} s = {hvp_s[method] / grad_s:.2f} gradients")
    best = min(hvp_s, key=hvp_s.get)
    L.hvp_method = "auto"
    auto_s = median_time(lambda: L.hvp(theta, V), repeats=repeats)
    ggn_s = median_time(lambda: L.ggnvp(theta, V), repeats=repeats)
    print(
        f"gradient: {grad_s:.4f} s;  block of {K} H·V (auto): {auto_s / grad_s:.2f} gradients;  "
        f"block of {K} G·V: {ggn_s / grad_s:.2f} gradients"
    )

    # Cold and warm solves of the top 11 eigenpairs of H at θ1 = θ0 − 0.01 ∇L(θ0).
    theta1 = theta - 0.01 * L.value_and_grad(theta).grad
    op0, op1 = L.operator(theta, "H"), L.operator(theta1, "H")
    prev = LOBPCG(K, tol=1e-4, generator=torch.Generator().manual_seed(2)).solve(op0)
    cold_res = LOBPCG(K, generator=torch.Generator().manual_seed(4)).solve(op1)
    warm_res = LOBPCG(K, generator=torch.Generator().manual_seed(4)).solve(op1, prev.warm_start())
    # the reference: a tight solve continued from the cold one
    tight = LOBPCG(K, tol=1e-8, max_iters=500, generator=torch.Generator().manual_seed(3)).solve(
        op1, cold_res.warm_start()
    )
    ref = tight.eigenvalues
    cold, cold_err = solve_products(lambda: cold_res, ref)
    warm, warm_err = solve_products(lambda: warm_res, ref)
    # the paper's block power iteration, warm-started (full size: capped at the authors' ≈ 80 iterations),
    # in the reference's order (algebraic, D14: it shifts when a negative eigenvalue is among the top |λ|)
    pw_warm, pw_err = solve_products(
        lambda: block_power(
            op1,
            K,
            prev.eigenvectors,
            tol=1e-4,
            max_iters=300 if args.quick else 80,
            order="algebraic",
            generator=torch.Generator().manual_seed(5),  # its guard rows: the same draw in every run
        ),
        ref,
    )
    print(
        f"top-{K} of H to 1e-4: LOBPCG cold {cold} products (err {cold_err:.1e}), warm {warm} "
        f"(err {warm_err:.1e}); block power warm {pw_warm} (err {pw_err:.1e}); tight converged={tight.converged}"
    )
    emit(
        {
            "grad_s": grad_s,
            "hvp_block_s": auto_s,
            "ggn_block_s": ggn_s,
            "block_k": K,
            "hvp_block_over_grad": auto_s / grad_s,
            "ggn_block_over_grad": ggn_s / grad_s,
            **{f"hvp_block_{m}_over_grad": s / grad_s for m, s in hvp_s.items()},
            "best_hvp_method": best,
            "cold_products": cold,
            "warm_products": warm,
            "cold_rel_err": cold_err,
            "warm_rel_err": warm_err,
            "power_warm_products": pw_warm,
            "power_warm_rel_err": pw_err,
            "total_s": time.perf_counter() - began,
        },
        size,
    )


if __name__ == "__main__":
    main()
