"""DNN models written in plain torch (torchvision is not a dependency).

`build_model(name, **kwargs)` builds one by name (kwargs go to the builder: `num_classes`,
`cifar` for VGG-16 and the ResNets, `dim`/`heads`/`mlp_ratio`/`seq_len` for the transformer,
`channels`/`kernel`/`density` for the sparsity probe);
`default_input_shape(name, model_args)` gives the input it expects without the batch: (C, H, W),
(784,) for the MLP, or (sequence, dim) for the transformer, with the axes its arguments set
(`SHAPE_ARGS`: the transformer's seq_len and dim, the probe's channels) taken from them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ConfigDict, ValidationError, validate_call
from torch import nn

from desim.errors import ConfigError, out_of_memory_as
from mappings.models.common import ArgumentError
from mappings.models.lenet import lenet5, lenet300
from mappings.models.mobilenet import mobilenet_v2
from mappings.models.probe import sparsity_probe
from mappings.models.resnet import resnet18, resnet50
from mappings.models.transformer import DIM, SEQ_LEN, transformer_block
from mappings.models.vgg import vgg16

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet300": lenet300,
    "lenet5": lenet5,
    "vgg16": vgg16,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "transformer_block": transformer_block,
    "sparsity_probe": sparsity_probe,
}
# ImageNet sizes; the CIFAR variants (`cifar=True`) take (3, 32, 32), given as input_shape.
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "lenet300": (784,),
    "lenet5": (1, 28, 28),
    "vgg16": (3, 224, 224),
    "resnet18": (3, 224, 224),
    "resnet50": (3, 224, 224),
    "mobilenet_v2": (3, 224, 224),
    "transformer_block": (SEQ_LEN, DIM),
    "sparsity_probe": (256, 14, 14),
}
# The input axes a model's arguments set: {argument: axis of the shape without the batch}.
SHAPE_ARGS: dict[str, dict[str, int]] = {
    "transformer_block": {"seq_len": 0, "dim": 1},
    "sparsity_probe": {"channels": 0},
}
# What the built-ins compute outside a counted module, deliberately, as the check of a
# file's model (`mappings.models.supported.refuse_uncounted`) names it: the probe makes its
# input's density with relu(x - t) (the data, not the network: see probe.py), and the
# transformer's and the probe's heads average with `mean` (a reduction that, as a pool
# module, would change the shipped experiments' numbers). tests/test_custom_model.py
# checks that each built-in passes with exactly these.
UNCOUNTED: dict[str, frozenset[str]] = {
    "transformer_block": frozenset({"mean"}),
    "sparsity_probe": frozenset({"sub", "relu", "mean"}),
}


def _check(name: str) -> None:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}"
                          ", or a model from your own file, 'path/to/file.py:factory'",
                          key="workload.model")


def build_model(name: str, **kwargs: object) -> nn.Module:
    """The model `name`, built by its registered builder with `kwargs`, each checked against
    the builder's signature strictly: a quoted "false" is not a bool, 10.0 or true not a
    number of classes (YAML reads `cifar: "false"` as a string, which is true), and 0 or -1
    not a size (`PositiveInt`: torch would fail deep in a layer's constructor)."""
    _check(name)
    return call_checked(repr(name), MODELS[name], kwargs)


def call_checked(label: str, builder: Callable[..., Any], kwargs: Mapping[str, object]) -> Any:
    """`builder(**kwargs)`, each argument checked against its signature strictly (a bad
    one is a ConfigError naming `workload.model_args.<arg>`); `label` names the model in
    the messages. Shared by the built-ins and a model from the user's file
    (`mappings.models.from_file`), so both refuse an argument in the same words."""
    # arbitrary types: a user's factory may annotate an argument with any class
    checked = validate_call(config=ConfigDict(strict=True,
                                              arbitrary_types_allowed=True))(builder)
    for arg, value in kwargs.items():  # torch failed to unpack it, a TypeError's traceback
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            raise ConfigError(f"model {label}, argument {arg!r}: expected a whole number of "
                              f"64 bits (torch's sizes), less than 2^63, got {value}",
                              key=f"workload.model_args.{arg}")
    settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    try:
        with out_of_memory_as(ConfigError(f"model {label} ({settings}) does not fit in this "
                                          "machine's memory", key="workload")):
            return checked(**kwargs)
    except ValidationError as err:
        first = err.errors()[0]
        arg = ".".join(str(part) for part in first["loc"])
        params = ", ".join(inspect.signature(builder).parameters)
        if first["type"] == "unexpected_keyword_argument":
            message = (f"model {label} takes no argument {arg!r}; "
                       + (f"it takes {params}" if params else "it takes none"))
        elif first["type"] == "missing_argument":
            message = (f"model {label} needs argument {arg!r}, which workload.model_args "
                       f"does not give; it takes {params}")
        else:
            message = (f"model {label}, argument {arg!r}: {first['msg'].lower()}, "
                       f"got {first['input']!r}")
        raise ConfigError(message, key=f"workload.model_args.{arg}") from None
    except ArgumentError as err:  # a value its builder refuses with the others given
        raise ConfigError(f"model {label}, argument {err.arg!r}: {err}",
                          key=f"workload.model_args.{err.arg}") from None


def default_input_shape(name: str, model_args: Mapping[str, Any] | None = None
                        ) -> tuple[int, ...]:
    """The input `name` expects with `model_args`, without the batch dimension: its default,
    with the axes those arguments set (`SHAPE_ARGS`) taken from them, so that a transformer
    of seq_len 128 is simulated on 128 tokens, not on the default 64."""
    _check(name)
    shape = list(INPUT_SHAPES[name])
    for arg, axis in SHAPE_ARGS.get(name, {}).items():
        if model_args and arg in model_args:
            shape[axis] = model_args[arg]
    return tuple(shape)


def input_shape_misfit(name: str, model_args: Mapping[str, Any], shape: Sequence[int]
                       ) -> str | None:
    """Why an input of `shape` (without the batch) contradicts an argument of the model that
    sets one of its axes (a transformer's dim 32 against inputs of width 256), else None."""
    for arg, axis in SHAPE_ARGS.get(name, {}).items():
        if arg in model_args and (axis >= len(shape) or shape[axis] != model_args[arg]):
            got = shape[axis] if axis < len(shape) else "nothing"
            return (f"{list(shape)} has {got} on axis {axis}, where model {name!r} takes its "
                    f"{arg} (model_args.{arg}: {model_args[arg]}); give the same {arg} in "
                    f"both, or leave input_shape out to take "
                    f"{list(default_input_shape(name, model_args))}")
    return None
