"""Integrators (docs/math.md §2, §7): closed-form steps on quadratics, agreement with the gradient flow,
the edge of stability of GD, and bit-identical continuation from a state dict.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from eoslab.curvature import LinearOperator, LossValue
from eoslab.eigspec import EigSpec
from eoslab.integrators import ExponentialEuler, GradientDescent, departure_note, exp_factor, loss_rises

from ._train_helpers import synthetic_loss

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


class Quadratic:
    """L̃(θ) = ½ θᵀ A θ with A = Q diag(λ) Qᵀ: ∇L̃ = Aθ, H = A (duck-types FullBatchLoss)."""

    def __init__(self, eigenvalues: list[float], seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.lam = torch.tensor(eigenvalues, dtype=F64)
        self.Q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=F64))
        self.A = (self.Q * self.lam) @ self.Q.T
        self.num_params = len(eigenvalues)

    def value_and_grad(self, theta: torch.Tensor) -> LossValue:
        grad = self.A @ theta
        return LossValue(loss=float(0.5 * theta @ grad), grad=grad, accuracy=1.0)

    def operator(self, theta: torch.Tensor, which: str = "H") -> LinearOperator:
        return LinearOperator.from_dense(self.A, name=which)

    def step_matrix(self, k: int, dt: float, r: torch.Tensor) -> torch.Tensor:
        """θ ↦ θ − Σ_m r^m c^m v^m − Δt w in the eigenbasis: factor 1 − r^m λ^m on the top k
        (= e^{−λΔt} where λ > 0), 1 − Δt λ on the bulk.
        """
        factors = torch.cat([1 - r * self.lam[:k], 1 - dt * self.lam[k:]])
        return (self.Q * factors) @ self.Q.T


def dense_top_eigenvalue(loss, theta) -> float:
    """λ¹ of the dense Hessian of L̃ (small problems only)."""
    H = loss.hvp(theta, torch.eye(loss.num_params, dtype=theta.dtype))
    return float(torch.linalg.eigvalsh((H + H.T) / 2)[-1])


# --------------------------------------------------------------------------- the step formula
def test_exp_factor_values_zero_and_clamp():
    dt = 0.1
    lam = torch.tensor([50.0, 2.0, 1e-13, 0.0, -3.0, -1e4], dtype=F64)
    r = exp_factor(lam, dt)
    assert r[0] == pytest.approx((1 - math.exp(-5.0)) / 50.0, rel=1e-14)
    assert r[1] == pytest.approx((1 - math.exp(-0.2)) / 2.0, rel=1e-14)
    # tiny λΔt: expm1 keeps full accuracy, r = Δt (1 − λΔt/2 + …)
    assert r[2] == pytest.approx(dt * (1 - 1e-14 / 2), rel=1e-15)
    assert r[3] == dt  # λ = 0
    assert r[4] == dt and r[5] == dt  # λ < 0: clamped to Δt (no overflow to inf/nan)
    assert bool(torch.all(r <= dt))


def test_step_size_d3():
    loss = Quadratic([5.0, 4.0, 2.0, 1.0])
    ee = ExponentialEuler(loss, torch.ones(4, dtype=F64), k=1, eta_max=0.3, step_c=0.5)
    assert ee.step_size(4.0) == pytest.approx(0.125)  # c/|λ^{k+1}|
    assert ee.step_size(-4.0) == pytest.approx(0.125)  # |λ^{k+1}|, as in [R]
    assert ee.step_size(1.0) == 0.3  # η_max
    assert ee.step_size(0.0) == 0.3


@pytest.mark.parametrize("eig_method", ["lobpcg", "power"])
def test_exponential_euler_step_on_quadratic(eig_method):
    """Top k directions decay exactly (e^{−λΔt}), the bulk takes explicit Euler with
    Δt = min(η, 1/λ^{k+1}); t advances by Δt; the report describes θ_u.
    """
    lam = [9.0, 5.0, 3.0, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02]
    loss, k = Quadratic(lam), 3
    theta0 = torch.linspace(-1, 1, len(lam), dtype=F64)
    ee = ExponentialEuler(loss, theta0, k=k, eta_max=2.0, eigensolver=EigSpec(eig_method, tol=1e-12))
    dt = 1 / 0.8  # 1/λ^{k+1} < η_max = 2
    # block power stops on eigenvalue changes, whose error is the square of its vectors' error
    atol = 1e-9 if eig_method == "lobpcg" else 1e-5
    step_matrix = loss.step_matrix(k, dt, exp_factor(loss.lam[:k], dt))
    for u in range(4):
        start = ee.theta.clone()
        report = ee.step()
        assert report.step == u and report.t == pytest.approx(u * dt) and report.dt == pytest.approx(dt)
        assert report.loss == loss.value_and_grad(start).loss
        assert report.eigenvalues == pytest.approx(lam[: k + 1], rel=1e-8)
        assert torch.allclose(ee.theta, step_matrix @ start, rtol=0, atol=atol)
    exact_top = loss.Q[:, :k].T @ torch.linalg.matrix_exp(-loss.A * 4 * dt) @ theta0
    assert torch.allclose(loss.Q[:, :k].T @ ee.theta, exact_top, rtol=0, atol=atol)
    assert ee.t == pytest.approx(4 * dt)


def test_exponential_euler_clamps_nonpositive_eigenvalues():
    """λ^2 < 0 among the top k: r = Δt there (explicit Euler), as the clamp of §7 step 5 says."""
    lam = [3.0, -0.5, -1.0, -2.0, -3.0, -4.0]
    loss, k = Quadratic(lam, seed=1), 2
    theta0 = torch.linspace(1, 2, len(lam), dtype=F64)
    ee = ExponentialEuler(loss, theta0, k=k, eta_max=0.5, eigensolver=EigSpec(tol=1e-12))
    report = ee.step()
    dt = 0.5  # min(η = 0.5, 1/|−1|)
    assert report.dt == dt and report.eigenvalues == pytest.approx(lam[: k + 1], rel=1e-8)
    r = torch.tensor([(1 - math.exp(-3.0 * dt)) / 3.0, dt], dtype=F64)
    # the closed-form step in Quadratic's eigenbasis (agrees to ~3e-15 on entries of size ~4)
    assert torch.allclose(ee.theta, loss.step_matrix(k, dt, r) @ theta0, rtol=0, atol=1e-10)


@pytest.mark.parametrize("eig_method", ["lobpcg", "power"])
@pytest.mark.parametrize(
    ("order", "exact", "lam_next"),
    [("algebraic", [5.0, 3.0], 1.0), ("magnitude", [-20.0, 5.0], 3.0)],
)
def test_eig_order_sets_the_exact_directions_and_dt(eig_method, order, exact, lam_next):
    """One large negative eigenvalue: "algebraic" (D14) integrates the top k by value exactly and
    takes Δt from the (k+1)-th by value; "magnitude" (the authors' code) uses the top k+1 by |λ|.
    Both solvers agree, and θ_1 is the closed-form step of each rule.
    """
    lam = [5.0, 3.0, -20.0, 1.0, 0.5, 0.2]
    loss, k = Quadratic(lam, seed=2), 2
    theta0 = torch.linspace(-1, 1, len(lam), dtype=F64)
    eigensolver = EigSpec(eig_method, tol=1e-13, max_iters=100000, order=order)
    ee = ExponentialEuler(loss, theta0, k=k, eta_max=2.0, eigensolver=eigensolver)
    report = ee.step()
    dt = 1 / lam_next  # < η_max
    assert report.converged and report.dt == pytest.approx(dt, rel=1e-9)
    assert report.eigenvalues == pytest.approx(exact + [lam_next], rel=1e-8)
    lam_t = loss.lam
    r = exp_factor(lam_t, dt)
    in_exact = torch.tensor([float(v) in exact for v in lam], dtype=torch.bool)
    factors = torch.where(in_exact, 1 - r * lam_t, 1 - dt * lam_t)
    assert torch.allclose(ee.theta, (loss.Q * factors) @ loss.Q.T @ theta0, rtol=0, atol=1e-7)


@pytest.mark.parametrize(("order", "sharpness"), [("algebraic", 5.0), ("magnitude", -20.0)])
def test_gradient_descent_measures_sharpness_by_the_order(order, sharpness):
    loss = Quadratic([5.0, 3.0, -20.0, 1.0, 0.5, 0.2], seed=2)
    gd = GradientDescent(
        loss, torch.ones(6, dtype=F64), eta=0.01, measure_sharpness_every=1, eigensolver=EigSpec(order=order)
    )
    assert gd.step().eigenvalues == pytest.approx([sharpness], rel=1e-4)


def test_gradient_descent_step_and_sharpness_measurement():
    loss, model = synthetic_loss("ce", 3)
    theta0 = model.init_params(0)
    gd = GradientDescent(loss, theta0, eta=0.05, measure_sharpness_every=3, eigensolver=EigSpec(tol=1e-10))
    theta = theta0.clone()
    for u in range(7):
        value = loss.value_and_grad(theta)
        report = gd.step()
        assert (report.step, report.loss, report.accuracy) == (u, value.loss, value.accuracy)
        assert report.t == pytest.approx(0.05 * u) and report.dt == 0.05
        if u % 3 == 0:
            assert report.eigenvalues == pytest.approx([dense_top_eigenvalue(loss, theta)], rel=1e-8)
            assert report.hvps > 0
        else:
            assert report.eigenvalues == [] and report.hvps == 0
        theta = theta.sub(value.grad, alpha=0.05)
        assert torch.equal(gd.theta, theta)


def test_stop_without_moving():
    loss, model = synthetic_loss("ce", 3)
    ee = ExponentialEuler(loss, model.init_params(0), k=3, eta_max=0.05)
    before = ee.theta.clone()
    report = ee.step(stop_below=math.inf)  # evaluate only
    assert report.final and report.dt == 0.0 and report.eigenvalues == []
    assert torch.equal(ee.theta, before) and ee.step_count == 0 and ee.t == 0.0
    ee.theta[0] = math.nan  # non-finite loss: stop, whatever the target
    report = ee.step()
    assert report.final and math.isnan(report.loss) and ee.step_count == 0


@pytest.mark.parametrize("method", ["exp_euler_lobpcg", "exp_euler_power", "gd_measured"])
def test_state_dict_continues_bit_identically(method):
    """A fresh integrator loaded with state_dict() continues exactly like the original: the
    warm start and every random draw (LOBPCG's random guard vectors) are part of the state.
    """
    loss, model = synthetic_loss("ce", 3, n=30)

    def make():
        if method == "gd_measured":
            return GradientDescent(loss, model.init_params(1), eta=0.1, seed=7, measure_sharpness_every=2)
        eigensolver = EigSpec(method.split("_")[-1])
        return ExponentialEuler(loss, model.init_params(1), k=3, eta_max=0.1, seed=7, eigensolver=eigensolver)

    reference = make()
    ref_reports = [reference.step() for _ in range(8)]
    first = make()
    for _ in range(4):
        first.step()
    second = make()
    second.load_state_dict(first.state_dict())
    reports = [second.step() for _ in range(4)]
    assert torch.equal(second.theta, reference.theta) and second.t == reference.t
    assert reports == ref_reports[4:]


# --------------------------------------------------------------------------- gradient flow
@pytest.mark.slow
def test_exponential_euler_follows_gradient_flow():
    """Exponential Euler stays on the gradient flow (DOP853 reference, rtol 1e-10) at a step where
    λ¹Δt ≈ 3, i.e. where GD / explicit Euler with the same Δt (same thing here: Δt = η every
    step) is unstable along v¹ and leaves the flow.

    Problem: MSE, 10 classes, depth 3, width 16, 40 samples, init gain 3 (sharp), after a short
    GD warm-up past the initial transient. Measured: exponential Euler 0.6 % relative parameter
    distance, GD 82 %. A sign error, a wrong clamp (r = Δt for λ > 0 is explicit Euler) or a
    wrong projection breaks the 1.5 % bound.
    """
    loss, model = synthetic_loss("mse", 10, gain=3.0)
    theta0 = model.init_params(0)
    for _ in range(250):  # warm-up at λ¹·0.002 < 2 (stable)
        theta0 = theta0 - 0.002 * loss.value_and_grad(theta0).grad
    eta, T = 0.0136, 0.5

    ee = ExponentialEuler(loss, theta0, k=10, eta_max=eta, eigensolver=EigSpec(tol=1e-10))
    times, path = [0.0], [theta0]
    while ee.t < T - 1e-12:
        report = ee.step()
        assert report.converged and report.dt == eta  # Δt = η_max throughout (1/λ^{11} > η)
        assert report.eigenvalues[0] * eta > 2.5  # explicit Euler is unstable along v¹
        times.append(ee.t)
        path.append(ee.theta.clone())

    def flow(t, y):
        return -loss.value_and_grad(torch.from_numpy(y)).grad.numpy()

    sol = solve_ivp(
        flow, (0.0, times[-1]), theta0.numpy(), method="DOP853", rtol=1e-10, atol=1e-13, t_eval=np.array(times)
    )
    assert sol.success
    ref = torch.from_numpy(sol.y.T)
    scale = float(torch.linalg.vector_norm(ref[-1] - theta0))  # distance travelled

    gd = GradientDescent(loss, theta0, eta=eta)
    gd_path = [theta0] + [(gd.step(), gd.theta.clone())[1] for _ in range(len(times) - 1)]
    ee_err = max(float(torch.linalg.vector_norm(a - b)) for a, b in zip(path, ref)) / scale
    gd_err = max(float(torch.linalg.vector_norm(a - b)) for a, b in zip(gd_path, ref)) / scale
    print(
        f"relative distance to the flow over t ∈ [0, {times[-1]:.3f}]: "
        f"exponential Euler {ee_err:.4f}, GD / explicit Euler (same Δt) {gd_err:.4f}"
    )
    assert ee_err < 0.015
    assert gd_err > 10 * 0.015


@pytest.mark.slow
def test_gd_edge_of_stability_vs_exponential_euler():
    """GD sharpens until λ¹(H) hovers at 2/η (within 10 % over the last third of training), while
    exponential Euler, following the flow over the same time, sharpens past 2/η (Eq. 1, §7).

    Problem: MSE, 2 classes, depth 3, width 32, 40 noisy samples in 4 dimensions, init gain 1;
    η = 0.04 (2/η = 50), 1000 steps (t = 40). The flow's λ¹ rises from ≈ 33 to ≈ 68.
    """
    loss, model = synthetic_loss("mse", 2, input_dim=4, width=32, gain=1.0, noise=3.0)
    eta, steps = 0.04, 1000
    gd = GradientDescent(loss, model.init_params(0), eta=eta, measure_sharpness_every=5, eigensolver=EigSpec(tol=1e-6))
    sharp = [(r.step, r.eigenvalues[0]) for r in (gd.step() for _ in range(steps)) if r.eigenvalues]
    last = torch.tensor([s for u, s in sharp if u >= 2 * steps // 3])
    assert sharp[0][1] < 0.8 * 2 / eta  # it starts well below 2/η …
    dev = float((last * eta / 2 - 1).abs().max())
    print(f"GD: λ¹ over the last third in [{float(last.min()):.1f}, {float(last.max()):.1f}], 2/η = {2 / eta:g}")
    assert dev < 0.10  # … and hovers at 2/η

    ee = ExponentialEuler(loss, model.init_params(0), k=2, eta_max=0.1)
    flow_sharp = []
    while ee.t < steps * eta:
        flow_sharp.append((ee.t, ee.step().eigenvalues[0]))
    print(f"exponential Euler: λ¹ {flow_sharp[0][1]:.1f} → {flow_sharp[-1][1]:.1f} at t = {flow_sharp[-1][0]:.1f}")
    assert flow_sharp[0][1] < 2 / eta and flow_sharp[-1][1] > 1.25 * 2 / eta


def test_loss_rises_beyond_round_off_are_departures_from_the_flow():
    assert loss_rises([3.0, 2.0, 2.0 * (1 + 1e-12), 1.0]) == []  # round-off is not a rise
    assert departure_note([3.0, 2.0, 1.0]) is None
    assert loss_rises([3.0, 4.5, 2.0, 2.2, 1.0]) == [0, 2]
    assert departure_note([3.0, 4.5, 2.0, 2.2, 1.0]) == (
        "the loss rose along exponential Euler at 2 of 4 steps (the largest ×1.5, step 0 → 1): the run left "
        "the gradient flow there; lower solver.eta_max or solver.step_c"
    )
