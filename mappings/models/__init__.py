"""DNN models written in plain torch (torchvision does not import beside our torch).

`build_model(name, **kwargs)` builds one by name; `default_input_shape(name)` gives the input
it expects (C, H, W), or (features,) for an MLP.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from desim.errors import ConfigError
from mappings.models.resnet import resnet18, resnet50

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
}
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "resnet18": (3, 224, 224),
    "resnet50": (3, 224, 224),
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
