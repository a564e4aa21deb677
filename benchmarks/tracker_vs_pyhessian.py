"""eoslab's λ¹(H) and Hutchinson trace beside PyHessian's, on identical θ and data (docs/math.md §9).

The paper's MLP (``_common.paper_problem``) as an ``nn.Sequential`` (:meth:`MLP.as_module`) for
PyHessian 0.1 (``pip install --no-deps pyhessian``, the ``bench`` extra), cross-entropy, one
full batch. Compared:

1. **λ¹(H), cold**: eoslab's LOBPCG (tol 1e-4, one guard vector) against PyHessian's power
   iteration (``eigenvalues(top_n=1)``, its default tol 1e-3 on the relative change), and, what
   the tracker does between measurements, eoslab warm-started from the previous θ's vectors after
   one GD step (η = 1/λ¹). Products counted (eoslab: ``LinearOperator.products``; PyHessian: its
   iterations); λ¹ checked against a tight solve.
2. **tr H**: eoslab's ``hutchinson_trace`` and PyHessian's ``trace``, 100 Rademacher samples each
   (PyHessian stops earlier when its running mean moves by less than its tol 1e-3).
3. **A gradient** (``value_and_grad``), to state every cost in gradients.

Prints, as its last line, a JSON object: ``*_s`` times, ``*_products``, ``*_gradients`` (time /
gradient time), the eigenvalues and traces, the problem size.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from _common import emit, median_time, paper_problem, parser
from eoslab.eigen import make_eigensolver
from eoslab.spectrum import hutchinson_trace


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    model, theta, loss, size = paper_problem(args)
    from pyhessian import hessian as PyHessian

    grad_s = median_time(lambda: loss.value_and_grad(theta))
    solver = lambda tol=1e-4: make_eigensolver(
        "lobpcg", 1, tol=tol, guard=1, generator=torch.Generator().manual_seed(0)
    )
    exact = float(solver(1e-10).solve(loss.operator(theta, "H")).eigenvalues[0])
    op = loss.operator(theta, "H")
    cold, cold_s = timed(lambda: solver().solve(op))
    theta1 = theta - loss.value_and_grad(theta).grad / exact  # one GD step, η = 1/λ¹
    exact1 = float(solver(1e-10).solve(loss.operator(theta1, "H")).eigenvalues[0])
    op1 = loss.operator(theta1, "H")
    warm, warm_s = timed(lambda: solver().solve(op1, cold.warm_start()))
    trace, trace_s = timed(
        lambda: hutchinson_trace(loss.operator(theta, "H"), 100, generator=torch.Generator().manual_seed(0))
    )

    net = model.as_module(theta)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # PyHessian draws its vectors in the default dtype
    try:
        torch.manual_seed(0)
        (peer, peer_setup_s) = timed(lambda: PyHessian(net, F.cross_entropy, data=(loss.X, loss.y), cuda=False))
        (values, _), peer_eig_s = timed(lambda: peer.eigenvalues(top_n=1))
        samples, peer_trace_s = timed(lambda: peer.trace(maxIter=100))
    finally:
        torch.set_default_dtype(old)
    peer_trace = sum(samples) / len(samples)
    emit(
        {
            "gradient_s": grad_s,
            "eoslab_cold_eig_s": cold_s,
            "eoslab_cold_products": cold.products,
            "eoslab_cold_gradients": cold_s / grad_s,
            "eoslab_cold_rel_err": abs(float(cold.eigenvalues[0]) - exact) / exact,
            "eoslab_warm_eig_s": warm_s,
            "eoslab_warm_products": warm.products,
            "eoslab_warm_gradients": warm_s / grad_s,
            "eoslab_warm_rel_err": abs(float(warm.eigenvalues[0]) - exact1) / exact1,
            "pyhessian_eig_s": peer_eig_s + peer_setup_s,
            "pyhessian_eig_gradients": (peer_eig_s + peer_setup_s) / grad_s,
            "pyhessian_rel_err": abs(values[0] - exact) / exact,
            "eig_speedup_cold": (peer_eig_s + peer_setup_s) / cold_s,
            "lambda1": exact,
            "eoslab_trace": trace.value,
            "eoslab_trace_stderr": trace.stderr,
            "eoslab_trace_s": trace_s,
            "eoslab_trace_samples": trace.products,
            "pyhessian_trace": peer_trace,
            "pyhessian_trace_s": peer_trace_s,
            "pyhessian_trace_samples": len(samples),
            "trace_s_per_sample_ratio": (peer_trace_s / len(samples)) / (trace_s / trace.products),
        },
        size,
    )


if __name__ == "__main__":
    main()
