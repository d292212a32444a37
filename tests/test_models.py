"""Every model against its known parameter count, and a forward+backward where cheap."""

import pytest
import torch

from desim.errors import ConfigError
from mappings.models import build_model, default_input_shape
from mappings.models.common import MatMul


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "kwargs", "params"), [
    ("lenet300", {}, 266_610),
    ("lenet5", {}, 431_080),
    ("vgg16", {}, 138_357_544),
    ("vgg16", {"cifar": True, "num_classes": 10}, 14_728_266),
    ("resnet18", {}, 11_689_512),
    ("resnet18", {"cifar": True, "num_classes": 10}, 11_173_962),
    ("resnet50", {}, 25_557_032),
    ("mobilenet_v2", {}, 3_504_872),
    ("transformer_block", {"num_classes": None}, 4 * 256**2 + 4 * 256        # attention
     + 2 * 4 * 256**2 + 5 * 256 + 4 * 256),                                 # MLP, norms
])
def test_parameter_counts(name, kwargs, params):
    assert count(build_model(name, **kwargs)) == params


@pytest.mark.parametrize(("name", "shape", "kwargs"), [
    ("lenet300", (784,), {}), ("lenet5", (1, 28, 28), {}),
    ("resnet18", (3, 32, 32), {"cifar": True, "num_classes": 10}),
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


def test_transformer_matmuls_are_layers():
    block = build_model("transformer_block", num_classes=10)
    assert [n for n, m in block.named_modules() if isinstance(m, MatMul)] == ["scores", "mix"]
    assert default_input_shape("transformer_block") == (64, 256)


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model 'alexnet'; expected one of"):
        build_model("alexnet")
    with pytest.raises(ConfigError, match="model_args"):
        build_model("lenet5", depth=3)
