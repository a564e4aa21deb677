import pytest

from eoslab.config import ConfigDeprecationWarning, ConfigError, from_dict, resolve


@pytest.mark.parametrize(("method", "field"), [("exp_euler", "eta_max"), ("gd", "eta")])
def test_deprecated_lr_becomes_the_methods_step(method, field):
    with pytest.warns(ConfigDeprecationWarning, match=f"solver.lr is deprecated: it is now solver.{field}"):
        cfg = from_dict({"solver": {"method": method, "lr": 0.25}})
    assert getattr(cfg.solver, field) == 0.25
    other = "eta" if field == "eta_max" else "eta_max"
    assert getattr(resolve(cfg).solver, other) is None


@pytest.mark.parametrize(
    ("solver", "message"),
    [
        ({"method": "gd", "eta_max": 0.1}, "solver.eta_max: only exponential Euler"),
        ({"method": "exp_euler", "eta": 0.1}, "solver.eta: gradient descent's step"),
        ({"method": "exp_euler", "lr": 0.1, "eta_max": 0.2}, "solver.lr: deprecated alias of solver.eta_max"),
    ],
)
def test_a_step_size_of_the_other_method_is_refused(solver, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"solver": solver})


@pytest.mark.parametrize(("method", "field"), [("exp_euler", "eta_max"), ("gd", "eta")])
def test_resolve_fills_the_default_step_of_the_method(method, field):
    assert getattr(resolve(from_dict({"solver": {"method": method}})).solver, field) == 0.01
