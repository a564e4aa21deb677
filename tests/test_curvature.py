"""H·V, G·V, R·V block products against dense references (docs/math.md Eq. 2, §6)."""

import pytest
import torch
from torch.func import hessian

from eoslab.criteria import MSE, CrossEntropy
from eoslab.curvature import FullBatchLoss
from eoslab.models import MLP

from ._cases import CRITERIA, MLP_CASES, dense_G, dense_H, rel


@pytest.mark.parametrize("case", MLP_CASES, ids=lambda case: case.id)
@pytest.mark.parametrize("method", ["auto", "fwd_rev", "rev_rev", "loop"])
def test_block_products_match_dense(case, method):
    model, theta, X, y, L = case.build()
    criterion = case.criterion
    L.hvp_method = method
    H = dense_H(model, criterion, theta, X, y)
    G = dense_G(model, criterion, theta, X, y)
    V = torch.randn(7, model.num_params, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert rel(L.hvp(theta, V), V @ H) < 1e-10
    assert rel(L.ggnvp(theta, V), V @ G) < 1e-10
    assert rel(L.residual_vp(theta, V), V @ (H - G)) < 1e-10
    # the residual is not negligible here, so the last check can fail for a wrong G
    assert (H - G).norm() > 1e-3 * H.norm()


@pytest.mark.parametrize("criterion", CRITERIA, ids=repr)
def test_criterion_hessian_and_root(criterion):
    f = torch.randn(6, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    Hl = criterion.hessian(f, y)
    for i in range(6):
        ref = hessian(lambda out: criterion.losses(out[None], y[i : i + 1])[0])(f[i])
        assert torch.allclose(Hl[i], ref, atol=1e-13)
    S = criterion.hessian_sqrt(f, y)
    assert torch.allclose(S @ S, Hl, atol=1e-13)
    assert torch.allclose(S, S.transpose(-1, -2))
    assert (torch.linalg.eigvalsh(S) > -1e-13).all()
    u = torch.randn(2, 6, 4, dtype=torch.float64)
    assert torch.allclose(criterion.hessian_vp(f, y, u), (Hl @ u.unsqueeze(-1)).squeeze(-1), atol=1e-14)


@pytest.mark.parametrize("case", MLP_CASES, ids=lambda case: case.id)
def test_loss_and_gradient_match_autograd(case):
    model, theta, X, y, L = case.build()
    criterion = case.criterion
    th = theta.clone().requires_grad_(True)
    loss = criterion.losses(model(th, X), y).mean()
    (g,) = torch.autograd.grad(loss, th)
    v = L.value_and_grad(theta)
    assert abs(v.loss - float(loss.detach())) < 1e-14
    assert rel(v.grad, g) < 1e-13
    assert v.accuracy == float((model(theta, X).argmax(-1) == y).double().mean())


def test_mse_default_is_pytorch_mean():
    """D6: the default MSE is MSELoss(reduction="mean") over samples × outputs."""
    f = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    ref = torch.nn.functional.mse_loss(f, torch.nn.functional.one_hot(y, 3).double())
    assert torch.allclose(MSE().losses(f, y).mean(), ref, atol=1e-15)
    assert torch.allclose(MSE().hessian(f, y)[0], 2 / 3 * torch.eye(3, dtype=torch.float64))


@pytest.mark.parametrize("case", MLP_CASES[:2], ids=lambda case: case.id)
@pytest.mark.parametrize("chunk", [1, 7, 20])
def test_chunked_equals_unchunked(case, chunk):
    model, theta, X, y, L = case.build()
    C = FullBatchLoss(model, case.criterion, X, y, chunk_size=chunk)
    V = torch.randn(4, model.num_params, dtype=torch.float64)
    assert abs(C.loss(theta) - L.loss(theta)) < 1e-14
    assert rel(C.value_and_grad(theta).grad, L.value_and_grad(theta).grad) < 1e-13
    assert rel(C.hvp(theta, V), L.hvp(theta, V)) < 1e-13
    assert rel(C.ggnvp(theta, V), L.ggnvp(theta, V)) < 1e-13


def test_bad_inputs_are_named():
    model = MLP(5, 3, depth=2, width=4)
    X, y = torch.randn(4, 5, dtype=torch.float64), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="features"):
        FullBatchLoss(model, CrossEntropy(), torch.randn(4, 6), y)
    with pytest.raises(ValueError, match="chunk_size"):
        FullBatchLoss(model, CrossEntropy(), X, y, chunk_size=0)
    with pytest.raises(ValueError, match="hvp_method"):
        FullBatchLoss(model, CrossEntropy(), X, y, hvp_method="magic")
    L = FullBatchLoss(model, CrossEntropy(), X, y)
    with pytest.raises(ValueError, match=r"block of shape"):
        L.operator(model.init_params(0), "H")(torch.randn(3))


def test_model_layout_and_init():
    """D8: xavier_normal with gain √2, zero biases; θ ordered (W1, b1, …, WL, bL)."""
    model = MLP(300, 10, depth=3, width=200)
    theta = model.init_params(0)
    (W1, b1), (W2, b2), (W3, b3) = model.layers(theta)
    assert W1.shape == (200, 300) and b3.shape == (10,)
    assert torch.all(b1 == 0) and torch.all(b2 == 0)
    expected = (2.0 * 2.0 / (300 + 200)) ** 0.5
    assert abs(float(W1.std()) - expected) / expected < 0.02
    assert torch.equal(model.init_params(0), theta) and not torch.equal(model.init_params(1), theta)
    assert torch.equal(model.from_state_dict(model.to_state_dict(theta)), theta)
    x = torch.randn(4, 300, dtype=torch.float64)
    fw = model.forward_all(theta, x)
    assert torch.allclose(fw.output, model(theta, x))
    assert torch.allclose(fw.a[1], torch.nn.functional.elu(fw.z[0]))
    assert sum(s.stop - s.start for s in model.layer_slices()) == model.num_params


@pytest.mark.parametrize("method", ["fwd_rev", "rev_rev", "loop"])
def test_residual_of_a_linear_model_is_zero(method):
    """One layer: f is linear in θ, so R = 0 exactly and H = G."""
    model = MLP(4, 3, depth=1, width=1)
    theta = model.init_params(0)
    X, y = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    L = FullBatchLoss(model, CrossEntropy(), X, y, hvp_method=method, chunk_size=4)
    V = torch.randn(2, model.num_params, dtype=torch.float64)
    assert torch.equal(L.residual_vp(theta, V), torch.zeros_like(V))
    assert rel(L.hvp(theta, V), L.ggnvp(theta, V)) < 1e-12
