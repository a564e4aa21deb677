"""The model protocol (docs/math.md §1): the MLP's θ layout, the CNN, the nn.Module adapter, the
registry of model kinds and its one-line errors.
"""

from __future__ import annotations

import math
import re
import sys
import textwrap

import pytest
import torch
from torch import nn

from eoslab.config import ConfigError, from_dict
from eoslab.models import CNN, MLP, ModelError, ModuleModel, make_model

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


# ----------------------------------------------------------------------------- the MLP
def first_version_init(sizes: list[int], seed: int, gain: float = math.sqrt(2.0)) -> torch.Tensor:
    """θ_0 as the first version built it: per layer, W_i (row-major) then b_i = 0, W_i drawn by
    randn from one CPU generator in layer order (D8).
    """
    g = torch.Generator().manual_seed(seed)
    parts = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        std = gain * math.sqrt(2.0 / (n_in + n_out))
        parts += [(torch.randn(n_out, n_in, generator=g, dtype=F64) * std).reshape(-1), torch.zeros(n_out, dtype=F64)]
    return torch.cat(parts)


def test_mlp_theta_layout_is_the_first_versions():
    model = MLP(7, 4, depth=3, width=5)
    theta = model.init_params(11)
    assert torch.equal(theta, first_version_init([7, 5, 5, 4], 11))
    assert model.param_names() == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert [(g.name, g.slice, g.params) for g in model.groups()] == [
        ("layer1", slice(0, 40), ("W1", "b1")),
        ("layer2", slice(40, 70), ("W2", "b2")),
        ("layer3", slice(70, 94), ("W3", "b3")),
    ]
    assert model.layer_slices() == [g.slice for g in model.groups()]
    # f by hand from the same layout
    x = torch.randn(3, 7, dtype=F64)
    (W1, b1), (W2, b2), (W3, b3) = model.layers(theta)
    ref = nn.functional.elu(nn.functional.elu(x @ W1.T + b1) @ W2.T + b2) @ W3.T + b3
    assert torch.equal(model(theta, x), ref)


def test_mlp_flattens_inputs_of_any_shape():
    model = MLP(12, 3, depth=2, width=4)
    theta = model.init_params(0)
    x = torch.randn(5, 3, 2, 2, dtype=F64)
    assert torch.equal(model(theta, x), model(theta, x.reshape(5, 12)))
    assert torch.equal(model.forward_all(theta, x).a[0], x.reshape(5, 12))
    model.check_inputs(x)
    with pytest.raises(ValueError, match=r"X has 8 features per sample \(shape \(2, 4\)\) but the model expects 12"):
        model.check_inputs(torch.zeros(1, 2, 4))


# ----------------------------------------------------------------------------- nn.Module adapter
class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return x + torch.tanh(self.fc(self.norm(x)))


class Net(nn.Module):
    """Root parameter, a ModuleList of blocks, a frozen layer, a buffer and a head."""

    def __init__(self, d: int = 4, out: int = 3) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.linspace(-1, 1, d))
        self.blocks = nn.ModuleList([Block(d), Block(d)])
        self.frozen = nn.Linear(d, d)
        self.frozen.requires_grad_(False)
        self.register_buffer("scale", torch.tensor(0.5))
        self.head = nn.Linear(d, out)

    def forward(self, x):
        h = x + self.shift
        for b in self.blocks:
            h = b(h)
        return self.head(self.frozen(h) * self.scale)


def test_module_adapter_layout_groups_and_call():
    net = Net()
    model = ModuleModel(net, input_shape=(4,), output_dim=3)
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    assert model.param_names() == names and "frozen.weight" not in names
    assert [g.name for g in model.groups()] == ["shift", "blocks.0", "blocks.1", "head"]
    assert model.groups()[1].params == (
        "blocks.0.norm.weight",
        "blocks.0.norm.bias",
        "blocks.0.fc.weight",
        "blocks.0.fc.bias",
    )
    assert (
        sum(g.size for g in model.groups())
        == model.num_params
        == sum(p.numel() for p in net.parameters() if p.requires_grad)
    )
    assert model.output_dim == 3 and model.dtype == F64 and not net.training
    # f(θ, X) with θ = the module's parameters is the module's forward; another θ changes it
    theta = model.module_params()
    x = torch.randn(5, 4, dtype=F64)
    with torch.no_grad():
        assert torch.allclose(model(theta, x), net(x), rtol=1e-15, atol=1e-15)
    other = theta + 0.1
    ref = model.load_into_module(other)(x)
    assert torch.equal(model(other, x), ref)
    # state dicts round-trip by name
    state = model.to_state_dict(other)
    assert list(state) == names and torch.equal(model.from_state_dict(state), other)


def test_module_adapter_prefix_groups_and_their_errors():
    model = ModuleModel(Net(), groups=["shift", "blocks", "head"])
    assert [(g.name, len(g.params)) for g in model.groups()] == [("shift", 1), ("blocks", 8), ("head", 2)]
    with pytest.raises(ValueError, match="parameter 'head.weight' matches none of the group prefixes"):
        ModuleModel(Net(), groups=["shift", "blocks"])
    with pytest.raises(ValueError, match="distinct names"):
        ModuleModel(Net(), groups=["shift", "blocks", "blocks.0.fc", "head"])  # "blocks" split in two runs


def test_module_adapter_init_is_seeded_and_leaves_the_callers_rng_alone():
    model = ModuleModel(Net())
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b, c = model.init_params(0), model.init_params(0), model.init_params(1)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # reset_parameters() re-drew the Linear layers; LayerNorm resets to ones/zeros
    w = dict(zip(model.param_names(), model.unflatten(a)))
    assert torch.equal(w["blocks.0.norm.weight"], torch.ones(4, dtype=F64))
    # with a factory, θ_0 is the factory's module built under the seed
    built = []

    def factory():
        built.append(torch.randn(()))
        return Net()

    fm = ModuleModel(Net(), factory=factory)
    theta = fm.init_params(7)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        torch.set_default_dtype(F64)
        try:
            torch.randn(())
            ref = torch.cat([p.detach().reshape(-1) for p in Net().parameters() if p.requires_grad])
        finally:
            torch.set_default_dtype(torch.float32)
    assert torch.equal(theta, ref)


def test_module_adapter_refuses_bad_outputs():
    with pytest.raises(ValueError, match=r"maps a batch of shape \(1, 4\) to \(1, 3\), expected \(1, 5\)"):
        ModuleModel(Net(), input_shape=(4,), output_dim=5)
    with pytest.raises(ValueError, match="no trainable parameters"):
        ModuleModel(nn.ReLU())


# ----------------------------------------------------------------------------- the CNN
def test_cnn_layout_init_and_shapes():
    model = CNN((3, 8, 8), 10, [4, 6])
    assert [g.name for g in model.groups()] == ["conv1", "conv2", "fc"]
    assert model.num_params == (3 * 9 * 4 + 4) + (4 * 9 * 6 + 6) + (6 * 2 * 2 * 10 + 10)
    theta = model.init_params(0)
    assert torch.equal(theta, model.init_params(0)) and not torch.equal(theta, model.init_params(1))
    p = dict(zip(model.param_names(), model.unflatten(theta)))
    assert torch.all(p["conv1.bias"] == 0) and torch.all(p["fc.bias"] == 0)
    # Xavier normal with gain √2: std² = 2 · 2 / (fan_in + fan_out), fans with the kernel size
    big = CNN((16, 8, 8), 2, [64])
    w = dict(zip(big.param_names(), big.unflatten(big.init_params(3))))["conv1.weight"]
    expected = math.sqrt(2 * 2 / (16 * 9 + 64 * 9))
    assert abs(float(w.std()) - expected) / expected < 0.03
    x = torch.rand(5, 3, 8, 8, dtype=F64)
    assert model(theta, x).shape == (5, 10)
    seq = CNN((2, 16), 3, [4], kernel_size=5)
    assert isinstance(seq.module.conv1, nn.Conv1d) and seq(
        seq.init_params(0), torch.rand(2, 2, 16, dtype=F64)
    ).shape == (2, 3)
    with pytest.raises(ValueError, match="too small"):
        CNN((1, 4, 4), 2, [2, 2, 2])
    with pytest.raises(ValueError, match="inputs have shape"):
        model.check_inputs(torch.zeros(2, 3 * 64))


# ----------------------------------------------------------------------------- the registry
@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's package on sys.path with factories (good and bad)."""
    (tmp_path / "userpkg").mkdir()
    (tmp_path / "userpkg" / "__init__.py").write_text("")
    (tmp_path / "userpkg" / "nets.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def small(input_shape, num_classes, hidden=5):
                return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), hidden),
                                     nn.Tanh(), nn.Linear(hidden, num_classes))

            def wrong_outputs(input_shape, num_classes):
                return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), num_classes + 1))

            def broken(input_shape, num_classes):
                raise RuntimeError("no GPU here")

            def not_a_module(input_shape, num_classes):
                return 42

            NOT_CALLABLE = 3
            """
        )
    )
    (tmp_path / "userpkg" / "crashes.py").write_text("raise ImportError('missing dependency foo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "userpkg"
    for name in [m for m in sys.modules if m.startswith("userpkg")]:
        del sys.modules[name]


def test_registry_builds_each_kind(user_module):
    mlp = make_model("mlp", input_shape=(1, 4, 4), num_classes=3, depth=2, width=5)
    assert isinstance(mlp, MLP) and mlp.input_dim == 16
    cnn = make_model("cnn", input_shape=(1, 8, 8), num_classes=3, options={"channels": [2], "pool": 2})
    assert isinstance(cnn, CNN) and cnn.channels == [2]
    own = make_model("python:userpkg.nets:small", input_shape=(2, 3), num_classes=4, options={"hidden": 7})
    assert isinstance(own, ModuleModel) and own.num_params == 6 * 7 + 7 + 7 * 4 + 4
    assert [g.name for g in own.groups()] == ["1", "3"]
    # θ_0 for seed s: the factory's module built under manual_seed(s)
    a = own.init_params(2)
    assert torch.equal(a, own.init_params(2)) and not torch.equal(a, own.init_params(3))


@pytest.mark.parametrize(
    ("kind", "field", "message"),
    [
        (
            "python:userpkg.crashes:f",
            "model.kind",
            r"cannot import userpkg.crashes \(ImportError: missing dependency foo\)",
        ),
        ("python:userpkg.absent:f", "model.kind", "cannot import userpkg.absent"),
        ("python:userpkg.nets:nothing", "model.kind", "module userpkg.nets has no attribute 'nothing'"),
        ("python:userpkg.nets:NOT_CALLABLE", "model.kind", "is not callable"),
        ("python:userpkg.nets:broken", "model.kind", r"raised RuntimeError: no GPU here"),
        ("python:userpkg.nets:not_a_module", "model.kind", "returned int, expected a torch.nn.Module"),
        ("python:userpkg.nets:wrong_outputs", "model.kind", r"to \(1, 4\), expected \(1, 3\)"),
        ("python:nodots", "model.kind", "not of the form"),
        ("resnet", "model.kind", "must be one of cnn, mlp or 'python:package.module:factory', got 'resnet'"),
    ],
)
def test_registry_errors_are_one_line_and_name_the_field(user_module, kind, field, message):
    with pytest.raises(ModelError, match=message) as info:
        make_model(kind, input_shape=(4,), num_classes=3)
    assert info.value.field == field and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"kind": "cnn", "options": {"channel": [2]}}, "model.options: cnn: unknown option 'channel'"),
        ({"kind": "mlp", "options": {"channels": [2]}}, "model.options: the mlp takes no options"),
        ({"kind": "cnn", "groups": ["conv1"]}, "model.groups: parameter-group prefixes are only for python: models"),
        ({"kind": "python:a.b:c", "groups": [3]}, "model.groups: must be a list of parameter-name prefixes"),
        ({"kind": "Python:a.b:c"}, "model.kind: must be one of"),
    ],
)
def test_config_validates_the_model_fields(model, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"model": model})


@pytest.mark.parametrize(("key", "value"), [("kernel_size", 4), ("channels", []), ("pool", 0)])
def test_a_cnn_option_has_one_rule_for_the_config_and_the_class(key, value):
    with pytest.raises(ModelError) as from_class:
        CNN((1, 8, 8), 2, **{key: value})
    rule = str(from_class.value)
    assert rule.startswith(f"cnn: {key} must be ") and rule.endswith(f", got {value!r}")
    with pytest.raises(ConfigError, match=f"^model.options: {re.escape(rule)}$"):
        from_dict({"model": {"kind": "cnn", "options": {key: value}}})
