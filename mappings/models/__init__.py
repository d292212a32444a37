"""DNN models written in plain torch (torchvision does not import beside our torch).

`build_model(name, **kwargs)` builds one by name; `default_input_shape(name)` gives the input
it expects (C, H, W), (features,) for an MLP, or (sequence, dim) for the transformer.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from desim.errors import ConfigError
from mappings.models.lenet import lenet5, lenet300
from mappings.models.mobilenet import mobilenet_v2
from mappings.models.resnet import resnet18, resnet50
from mappings.models.transformer import transformer_block
from mappings.models.vgg import vgg16

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet300": lenet300,
    "lenet5": lenet5,
    "vgg16": vgg16,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "transformer_block": transformer_block,
}
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "lenet300": (784,),
    "lenet5": (1, 28, 28),
    "vgg16": (3, 224, 224),
    "resnet18": (3, 224, 224),
    "resnet50": (3, 224, 224),
    "mobilenet_v2": (3, 224, 224),
    "transformer_block": (64, 256),  # (sequence, model dimension)
}


def build_model(name: str, **kwargs: object) -> nn.Module:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}",
                          key="workload.model")
    try:
        return MODELS[name](**kwargs)
    except TypeError as err:
        raise ConfigError(f"model {name!r}: {err}", key="workload.model_args") from None


def default_input_shape(name: str) -> tuple[int, ...]:
    return INPUT_SHAPES[name]
