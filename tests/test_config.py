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


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"solver": {"eig_method": "arpack"}}, "solver.eig_method: must be one of lobpcg, power, got 'arpack'"),
        ({"analysis": {"eig_method": "eigsh"}}, "analysis.eig_method: must be one of lobpcg, power, got 'eigsh'"),
        ({"solver": {"eig_order": "largest"}}, "solver.eig_order: must be one of algebraic, magnitude, got 'largest'"),
    ],
)
def test_eigensolver_fields_are_checked_against_the_registry(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


def test_eigensolver_fields_accept_every_registered_choice():
    cfg = from_dict({"solver": {"eig_method": "power", "eig_order": "magnitude"}, "analysis": {"eig_method": "power"}})
    assert (cfg.solver.eig_method, cfg.solver.eig_order, cfg.analysis.eig_method) == ("power", "magnitude", "power")
