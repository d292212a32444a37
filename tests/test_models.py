"""Every model against its known parameter count, and a forward+backward where cheap."""

import pytest
import torch

from desim.errors import ConfigError
from mappings.models import MODELS, build_model, default_input_shape
from mappings.models.common import MatMul
from mappings.models.transformer import TransformerEncoderBlock


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def block_params(d: int, r: int) -> int:
    """The bare encoder block in closed form."""
    attention = 4 * d * d + 4 * d        # q, k, v, out: d x d weights and d biases each
    mlp = 2 * r * d * d + (r + 1) * d    # d -> r d -> d, biases r d and d
    norms = 2 * 2 * d                    # two LayerNorms, weight and bias
    return attention + mlp + norms


@pytest.mark.parametrize(("name", "kwargs", "params"), [
    ("lenet300", {}, 266_610),
    ("lenet5", {}, 431_080),
    ("vgg16", {}, 138_357_544),
    ("vgg16", {"cifar": True, "num_classes": 10}, 14_728_266),
    ("resnet18", {}, 11_689_512),
    ("resnet18", {"cifar": True, "num_classes": 10}, 11_173_962),
    ("resnet50", {}, 25_557_032),
    ("mobilenet_v2", {}, 3_504_872),
    ("transformer_block", {"num_classes": None}, 789_760),
    ("transformer_block", {"num_classes": 10}, 789_760 + 256 * 10 + 10),
])
def test_parameter_counts(name, kwargs, params):
    assert count(build_model(name, **kwargs)) == params


@pytest.mark.parametrize(("d", "heads", "r"), [(256, 4, 4), (64, 8, 2), (96, 3, 3)])
def test_transformer_block_count_in_closed_form(d, heads, r):
    block = TransformerEncoderBlock(d, heads, r)
    assert count(block) == block_params(d, r)
    projections = [block.q, block.k, block.v, block.out]
    assert sum(count(m) for m in projections) == 4 * d * d + 4 * d
    assert count(block.mlp) == 2 * r * d * d + (r + 1) * d


@pytest.mark.parametrize(("name", "shape", "kwargs"), [
    ("lenet300", (784,), {}), ("lenet5", (1, 28, 28), {}),
    ("resnet18", (3, 32, 32), {"cifar": True, "num_classes": 10}),
    ("resnet18", (3, 64, 64), {"num_classes": 10}),
    ("resnet50", (3, 32, 32), {"cifar": True, "num_classes": 10}),
    ("vgg16", (3, 32, 32), {"cifar": True, "num_classes": 10}),
    ("mobilenet_v2", (3, 64, 64), {"num_classes": 10}),
    ("transformer_block", (16, 256), {"num_classes": 10}),
])
def test_forward_backward_shapes(name, shape, kwargs):
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_bare_transformer_block_keeps_its_input_shape():
    block = build_model("transformer_block", num_classes=None, dim=64, heads=4)
    x = torch.randn(3, 10, 64, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_transformer_matmuls_are_layers():
    block = build_model("transformer_block", num_classes=10)
    assert [n for n, m in block.named_modules() if isinstance(m, MatMul)] == ["scores", "mix"]
    assert default_input_shape("transformer_block") == (64, 256)
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    assert torch.equal(MatMul()(a, b), torch.matmul(a, b))


def test_every_model_has_a_default_input_shape():
    shapes = {name: default_input_shape(name) for name in MODELS}
    assert shapes["lenet300"] == (784,) and shapes["lenet5"] == (1, 28, 28)
    assert all(shapes[n] == (3, 224, 224) for n in ("vgg16", "resnet18", "resnet50",
                                                     "mobilenet_v2"))


def test_the_default_input_shape_follows_the_arguments_that_set_it():
    assert default_input_shape("transformer_block", {"seq_len": 128}) == (128, 256)
    assert default_input_shape("transformer_block", {"dim": 32, "heads": 4}) == (64, 32)
    assert default_input_shape("sparsity_probe", {"channels": 64, "kernel": 5}) == (64, 14, 14)
    assert default_input_shape("lenet5", {"num_classes": 3}) == (1, 28, 28)


def test_a_workload_is_captured_on_the_input_its_model_args_set():
    """No input_shape: a transformer of seq_len 128 and dim 64 gets 128 tokens of width 64
    (the default [64, 256] once was simulated, or blamed on input_shape)."""
    from mappings.specs import WorkloadSpec
    from mappings.workload import untrained

    spec = WorkloadSpec(model="transformer_block", batch=1, data="random",
                        model_args={"dim": 64, "heads": 4, "seq_len": 128})
    q = untrained(spec).layers[0]
    assert q.name == "q" and q.x_nz.shape == (128, 64, 1, 1)


@pytest.mark.parametrize(("model_args", "shape", "fragment"), [
    ({"seq_len": 128}, [64, 256], "[64, 256] has 64 on axis 0, where model 'transformer_block' "
     "takes its seq_len (model_args.seq_len: 128); give the same seq_len in both, or leave "
     "input_shape out to take [128, 256]"),
    ({"dim": 32}, [64], "[64] has nothing on axis 1"),
    ({"channels": 128}, [256, 14, 14], "model 'sparsity_probe' takes its channels"),
])
def test_an_input_shape_against_the_model_args_is_refused(model_args, shape, fragment):
    from mappings.specs import WorkloadSpec
    from mappings.workload import checked_model

    model = "sparsity_probe" if "channels" in model_args else "transformer_block"
    spec = WorkloadSpec(model=model, model_args=model_args, input_shape=shape)
    with pytest.raises(ConfigError) as err:
        checked_model(spec)
    assert err.value.key == "workload.input_shape" and fragment in err.value.message


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model 'alexnet'; expected one of"):
        build_model("alexnet")
    with pytest.raises(ConfigError, match="unknown model 'alexnet'"):
        default_input_shape("alexnet")
    with pytest.raises(ConfigError, match="model_args"):
        build_model("lenet5", depth=3)
    with pytest.raises(ConfigError, match="not a multiple of heads"):
        build_model("transformer_block", dim=100, heads=3)


@pytest.mark.parametrize(("name", "kwargs", "key", "fragment"), [
    ("sparsity_probe", {"channels": -1}, "channels", "greater than 0, got -1"),
    ("sparsity_probe", {"kernel": -3}, "kernel", "greater than 0, got -3"),
    ("sparsity_probe", {"channels": 0}, "channels", "greater than 0, got 0"),
    ("sparsity_probe", {"density": 0.0}, "density", "greater than 0, got 0.0"),
    ("sparsity_probe", {"density": 1.5}, "density", "less than or equal to 1, got 1.5"),
    ("transformer_block", {"heads": 0}, "heads", "greater than 0, got 0"),
    ("transformer_block", {"dim": -8}, "dim", "greater than 0, got -8"),
    ("transformer_block", {"seq_len": -1}, "seq_len", "greater than 0, got -1"),
    ("transformer_block", {"mlp_ratio": 0}, "mlp_ratio", "greater than 0, got 0"),
    ("transformer_block", {"dim": 100, "heads": 3}, "heads",
     "dim 100 is not a multiple of heads 3"),
    ("lenet5", {"num_classes": -1}, "num_classes", "greater than 0, got -1"),
    ("resnet18", {"num_classes": 0}, "num_classes", "greater than 0, got 0"),
])
def test_an_argument_a_model_cannot_be_built_with_names_its_key(name, kwargs, key, fragment):
    """Sizes of 0 or less, or heads not dividing dim, are bad input of that argument (torch
    would raise a RuntimeError or a ZeroDivisionError deep in a constructor)."""
    with pytest.raises(ConfigError) as err:
        build_model(name, **kwargs)
    assert err.value.key == f"workload.model_args.{key}"
    assert f"model {name!r}, argument {key!r}: " in err.value.message
    assert fragment in err.value.message


def test_a_bug_in_a_builder_is_not_said_as_bad_input(monkeypatch):
    """Only the builders' own refusals (`ArgumentError`) are bad input; any other error is a
    bug and keeps its traceback."""
    def broken(num_classes: int = 10) -> torch.nn.Module:
        raise TypeError("a bug")
    monkeypatch.setitem(MODELS, "lenet5", broken)
    with pytest.raises(TypeError, match="a bug"):
        build_model("lenet5")


def test_a_model_whose_size_overflows_does_not_fit_in_memory():
    """10^12 channels: torch's size in bytes overflows 64 bits (a RuntimeError of its own)."""
    with pytest.raises(ConfigError, match="does not fit in this machine's memory"):
        build_model("sparsity_probe", channels=10**12)


class _ReluFirst(torch.nn.Module):
    """fc1 reads relu(x - 0.5), an activation made from the data (as the sparsity probe's
    conv does); fc2 reads fc1's output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(8, 4), torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(torch.relu(x - 0.5)))


class _DataFirst(_ReluFirst):
    """fc1 reads the data itself (flattened, a view); fc2 reads relu(fc1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def test_activation_sparsity_counts_every_input_but_the_data():
    """Closed forms, batch 4. fc1's input, relu(x - 0.5) with 3 of every 4 x below 0.5: 24
    of 32 zeros; fc2's input dense (fc1's outputs, positive weights and inputs): 0 of 16.
    So 24 / 48 = 0.5 (the first layer once left out: 0.0, and the sparsity probe's 90% zero
    input read 0.00). With the data itself first (its zeros not counted), only fc2's input:
    the ReLU of fc1's outputs, one of 4 negative, 4 of 16 zeros."""
    from mappings.capture import capture
    from mappings.workload import _stats

    torch.manual_seed(0)
    model = _ReluFirst()
    with torch.no_grad():
        for fc in (model.fc1, model.fc2):
            fc.weight.uniform_(0.1, 1.0)
            fc.bias.zero_()
    x = torch.tensor([[0.1, 0.2, 0.3, 0.9] * 2] * 4)             # 3 of 4 below 0.5
    layers = capture(model, x, torch.zeros(4, dtype=torch.long))
    assert _stats(layers, {}, [], False)["activation_sparsity"] == pytest.approx(24 / 48)
    assert [layer.x_is_data for layer in layers] == [False, False]

    data_first = _DataFirst()
    with torch.no_grad():
        data_first.fc1.weight.copy_(torch.ones(4, 8) * torch.tensor([[1.0], [1], [-1], [1]]))
        data_first.fc1.bias.zero_()
    layers = capture(data_first, x.reshape(4, 2, 4), torch.zeros(4, dtype=torch.long))
    assert _stats(layers, {}, [], False)["activation_sparsity"] == pytest.approx(4 / 16)
    assert [layer.x_is_data for layer in layers] == [True, False]


@pytest.mark.parametrize("density", [0.1, 1.0])
def test_the_sparsity_probe_keeps_its_density_and_a_finite_loss(density):
    """The probe's conv sees `density` of its inputs non-zero (90% zeros at 0.1: the peak
    figures' setting), and its output stays finite at density 1, which once shifted every
    input by -inf (every output NaN)."""
    probe = build_model("sparsity_probe", channels=8, density=density)
    x = torch.randn(2, 8, 14, 14, generator=torch.Generator().manual_seed(0))
    seen = []
    probe.conv.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    out = probe(x)
    assert torch.isfinite(out).all()
    assert float((seen[0] != 0).float().mean()) == pytest.approx(density, abs=0.03)


def test_a_built_in_models_input_shape_is_checked_once_and_refused_every_time(monkeypatch):
    """`checked_model` runs its checking pass once for a built-in model, its arguments and
    input shape (the capture after `desim.elaborate` does not run it again), whatever the
    seed or batch; a shape it refuses is refused every time."""
    from mappings import workload
    from mappings.specs import WorkloadSpec

    shapes = []
    check = workload._check_input_shape

    def counted(model, name, shape):
        shapes.append(shape)
        return check(model, name, shape)
    monkeypatch.setattr(workload, "_check_input_shape", counted)
    monkeypatch.setattr(workload, "_SHAPES_TAKEN", set())
    spec = WorkloadSpec(model="lenet5", input_shape=[1, 28, 28])
    workload.checked_model(spec)
    workload.checked_model(spec.model_copy(update={"seed": 1, "batch": 4}))
    assert shapes == [(1, 28, 28)]
    small = spec.model_copy(update={"input_shape": [1, 4, 4]})
    for _ in range(2):
        with pytest.raises(ConfigError, match="cannot take inputs of shape"):
            workload.checked_model(small)
    assert shapes == [(1, 28, 28), (1, 4, 4), (1, 4, 4)]
