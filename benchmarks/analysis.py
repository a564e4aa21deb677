"""Cost of analysing one snapshot (docs/math.md §3–§6), in gradients, against the naive per-sample path.

The snapshot is the paper's MLP (6 × 512, ELU, float64, 3072 inputs, 10 classes) at initialization
on N = 390 random inputs and labels, cross-entropy. Timed parts:

* one gradient, ``FullBatchLoss.value_and_grad`` (the unit);
* the three λ¹ solves of H, G, R (``top_eigenvalues``, cold start, default tolerance), and again
  warm-started at a θ ``--warm-steps`` GD steps later, as consecutive snapshots of a run are;
* the per-sample part (``layerwise_statistics``: back-propagated P̃_i, batched Lanczos for ‖K_i‖²);
* the naive per-sample path on the same snapshot: a parameter Jacobian per sample by
  ``torch.func.jacrev``, J̃ = S J, column slices per layer, dense K_i and ``svdvals``. At full size
  it is timed on ``--naive-samples`` samples and extrapolated linearly to N (said in the JSON as
  ``naive_extrapolated``); its values are compared with the fast path's on those samples.

``--quick`` runs a small problem (depth 4, width 48, 128 inputs, N = 64, 5 GD steps to the warm
snapshot) with the naive path on every sample. The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from eoslab.analysis import layerwise_statistics, per_sample_statistics, top_eigenvalues
from eoslab.criteria import CrossEntropy
from eoslab.curvature import OPERATORS, FullBatchLoss
from eoslab.models import MLP, elu_derivative


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def naive_per_sample(model, criterion, theta, X, y):
    """Per-sample ‖J̃‖², ‖J̃_i‖², ‖K_i‖², ‖H_ℓ‖ from full parameter Jacobians and dense K_i."""
    slices, layers = model.layer_slices(), model.layers(theta)
    out = {"jtilde_sqnorm": [], "layer_sqnorm": [], "layerjac_sqnorm": [], "hessian_norm": []}
    for x, label in zip(X, y):
        J = torch.func.jacrev(lambda th: model(th, x[None])[0])(theta)  # (n_L, P)
        fwd = model.forward_all(theta, x[None])
        S = criterion.hessian_sqrt(fwd.output, label[None])[0]
        Jt = S @ J
        top = lambda M: torch.linalg.eigvalsh(M @ M.T)[-1]
        out["jtilde_sqnorm"].append(top(Jt))
        out["layer_sqnorm"].append(torch.stack([top(Jt[:, sl]) for sl in slices]))
        K = [layers[i + 1][0] * elu_derivative(fwd.z[i][0]) for i in range(model.depth - 1)]
        out["layerjac_sqnorm"].append(torch.stack([torch.linalg.svdvals(k)[0] ** 2 for k in K]))
        out["hessian_norm"].append(criterion.hessian_norm(fwd.output, label[None])[0])
    return {k: torch.stack(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem, well under a minute on 2 cores")
    parser.add_argument("--naive-samples", type=int, default=6, help="samples the naive path is timed on (full size)")
    parser.add_argument("--warm-steps", type=int, default=20, help="GD steps to the second, warm-started snapshot")
    parser.add_argument("--chunk-size", type=int, default=None, help="per-sample chunk (default: the library's)")
    args = parser.parse_args()

    if args.quick:
        n_in, n_out, depth, width, N = 128, 10, 4, 48, 64
        args.warm_steps = min(args.warm_steps, 5)
    else:
        n_in, n_out, depth, width, N = 3072, 10, 6, 512, 390
    dtype = torch.float64
    model = MLP(n_in, n_out, depth=depth, width=width, dtype=dtype)
    theta = model.init_params(0)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(N, n_in, generator=g, dtype=dtype)
    y = torch.randint(0, n_out, (N,), generator=g)
    criterion = CrossEntropy()
    loss = FullBatchLoss(model, criterion, X, y)
    chunk = {} if args.chunk_size is None else {"chunk_size": args.chunk_size}

    loss.value_and_grad(theta)  # warm-up (first calls trace vmap)
    for which in OPERATORS:
        loss.operator(theta, which)(torch.randn(1, model.num_params, generator=g, dtype=dtype))
    grad_times = [timed(loss.value_and_grad, theta)[1] for _ in range(3)]
    print(f"gradient: {statistics.median(grad_times):.3f} s (median of 3; 3 more at the end)", flush=True)

    eig, eig_s = {}, {}
    for which in OPERATORS:
        res, dt = timed(top_eigenvalues, loss, theta, operators=(which,))
        eig[which], eig_s[which] = res[which], dt
        print(
            f"λ¹({which}) = {float(res[which].eigenvalues[0]):.6g}: {dt:.2f} s, "
            f"{res[which].iterations} iterations, {res[which].products} products, "
            f"converged={res[which].converged}",
            flush=True,
        )

    # the next snapshot of a run: a few GD steps on, warm-started from these eigenvectors
    theta_next = theta
    for _ in range(args.warm_steps):
        theta_next = theta_next - loss.value_and_grad(theta_next).grad / float(eig["H"].eigenvalues[0])
    warm, eig_warm_s = timed(top_eigenvalues, loss, theta_next, warm_start={k: r.eigenvectors for k, r in eig.items()})
    print(
        f"warm-started λ¹ solves {args.warm_steps} GD steps (η = 1/λ¹(H)) later: {eig_warm_s:.2f} s, "
        f"products {', '.join(f'{k} {r.products}' for k, r in warm.items())}",
        flush=True,
    )

    stats, persample_s = timed(layerwise_statistics, model, criterion, theta, X, y, **chunk)
    print(f"per-sample part: {persample_s:.2f} s", flush=True)

    n_naive = N if args.quick else min(args.naive_samples, N)
    ref, naive_s = timed(naive_per_sample, model, criterion, theta, X[:n_naive], y[:n_naive])
    naive_persample_s = naive_s / n_naive * N
    fast = per_sample_statistics(model, criterion, theta, X[:n_naive], y[:n_naive])
    got = {
        "jtilde_sqnorm": fast.jtilde_sqnorm,
        "layer_sqnorm": fast.layer_sqnorm,
        "layerjac_sqnorm": fast.layerjac_sqnorm,
        "hessian_norm": fast.hessian_norm,
    }
    max_rel = max(float(((got[k] - ref[k]).abs() / ref[k].abs()).max()) for k in ref)
    print(
        f"naive per-sample path: {naive_s:.2f} s on {n_naive} samples -> {naive_persample_s:.1f} s for N = {N}"
        f"{' (extrapolated)' if n_naive < N else ''}; max relative difference {max_rel:.2e}",
        flush=True,
    )

    grad_times += [timed(loss.value_and_grad, theta)[1] for _ in range(3)]
    grad_s = statistics.median(grad_times)  # before and after, against drifting load
    print(f"gradient: {grad_s:.3f} s (median of 6, range {min(grad_times):.3f}-{max(grad_times):.3f})")
    snapshot_s = sum(eig_s.values()) + persample_s
    print(
        json.dumps(
            {
                "device": str(theta.device),
                "dtype": str(dtype).replace("torch.", ""),
                "threads": torch.get_num_threads(),
                "quick": args.quick,
                "N": N,
                "input_dim": n_in,
                "output_dim": n_out,
                "depth": depth,
                "width": width,
                "num_params": model.num_params,
                "criterion": criterion.name,
                "grad_s": grad_s,
                "grad_min_s": min(grad_times),
                "grad_max_s": max(grad_times),
                **{f"eig_{k}_s": v for k, v in eig_s.items()},
                **{f"eig_{k}_products": eig[k].products for k in OPERATORS},
                **{f"eig_{k}_iterations": eig[k].iterations for k in OPERATORS},
                "eig_converged": all(r.converged for r in eig.values()),
                "eig_warm_s": eig_warm_s,
                "warm_gd_steps": args.warm_steps,
                **{f"eig_warm_{k}_products": warm[k].products for k in OPERATORS},
                "persample_s": persample_s,
                "snapshot_s": snapshot_s,
                "snapshot_over_grad": snapshot_s / grad_s,
                "eig_over_grad": sum(eig_s.values()) / grad_s,
                "snapshot_warm_over_grad": (eig_warm_s + persample_s) / grad_s,
                "persample_over_grad": persample_s / grad_s,
                "naive_persample_s": naive_persample_s,
                "naive_samples_timed": n_naive,
                "naive_extrapolated": n_naive < N,
                "persample_speedup": naive_persample_s / persample_s,
                "max_rel_diff_vs_naive": max_rel,
            }
        )
    )


if __name__ == "__main__":
    main()
