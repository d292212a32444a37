"""A model from the user's own Python file: `workload.model: "path/to/file.py:factory"`.

So an architect studies their own network without editing desim: `factory` is a callable
in the file that returns an `nn.Module`, or an `nn.Module` class (its constructor is the
factory); `workload.model_args` are its keyword arguments, checked against its signature
as the built-ins' are; it gets `num_classes` (the workload's) when its signature takes
that parameter and model_args does not set it, as the built-ins do. The path is relative
to the experiment file's folder (the experiment loader resolves it,
`mappings.model_path.resolve`), so a results folder and a sweep's Dask workers name the
same file wherever they run. Its bytes' sha256 (`model_path.file_sha256`) keys the
workload cache and is recorded in config.json: a changed file is another workload.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from desim.errors import ConfigError
from mappings.model_path import model_bytes, split
from mappings.models import call_checked


def load_factory(model: str) -> Callable[..., Any]:
    """The factory the model names, its file imported as a module of its own. The module
    is registered in sys.modules (under a name from the file's hash, so an edited file is
    imported afresh), so that its classes pickle by reference within this process."""
    path, factory = split(model)
    source = model_bytes(path)
    name = f"desim_user_model_{hashlib.sha256(source).hexdigest()[:16]}"
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__file__ = str(path)
        sys.modules[name] = module
        try:  # the bytes hashed are the bytes run, even if the file changes meanwhile
            exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102
        except BaseException as err:  # noqa: BLE001 - SystemExit too: the file's fault
            del sys.modules[name]
            if isinstance(err, KeyboardInterrupt):
                raise
            raise ConfigError(f"model file {str(path)!r} raised on import: "
                              f"{type(err).__name__}: {_first_line(err)}",
                              key="workload.model") from None
    found = getattr(module, factory, None)
    if not callable(found):
        defined = sorted(n for n, v in vars(module).items()
                         if callable(v) and not n.startswith("_")
                         and getattr(v, "__module__", None) == name)
        raise ConfigError(f"model file {str(path)!r} has no "
                          f"{'callable ' if found is not None else ''}{factory!r}; it defines "
                          f"{', '.join(defined) or 'none'}", key="workload.model")
    return found


def build_file_model(model: str, model_args: Mapping[str, Any], num_classes: int) -> nn.Module:
    """The nn.Module the file's factory returns for `model_args` (each checked against its
    signature: a bad one is a ConfigError naming `workload.model_args.<arg>`), with
    `num_classes` added when the factory takes it and model_args does not give it."""
    path, name = split(model)
    label = f"{name!r} of {str(path)!r}"
    factory = _as_function(load_factory(model), label)
    kwargs = dict(model_args)
    if "num_classes" not in kwargs and _takes(factory, "num_classes"):
        kwargs["num_classes"] = num_classes
    try:
        built = call_checked(label, factory, kwargs)
    except ConfigError:
        raise
    except (Exception, SystemExit) as err:  # noqa: BLE001 - the user's code: said
        raise ConfigError(f"model {label} raised {type(err).__name__}: {_first_line(err)}",
                          key="workload.model") from None
    if not isinstance(built, nn.Module):
        raise ConfigError(f"model {label} returned a value of type {type(built).__name__}, not an "
                          "nn.Module", key="workload.model")
    return built


def _as_function(factory: Callable[..., Any], label: str) -> Callable[..., Any]:
    """`factory`, or for an nn.Module class a function of its constructor's signature and
    annotations that builds one: the arguments are checked as a function's are, which
    pydantic's validate_call does for functions only."""
    if not isinstance(factory, type):
        return factory
    if not issubclass(factory, nn.Module):
        raise ConfigError(f"model {label} is a class that is not an nn.Module; expected an "
                          "nn.Module class or a function that returns an nn.Module",
                          key="workload.model")
    cls = factory

    def build(*args: Any, **kwargs: Any) -> nn.Module:
        return cls(*args, **kwargs)

    build.__signature__ = inspect.signature(cls)  # type: ignore[attr-defined]
    build.__annotations__ = {arg: hint for arg, hint in
                             inspect.get_annotations(cls.__init__).items() if arg != "return"}
    build.__module__ = cls.__module__  # where string annotations (`from __future__`) resolve
    build.__name__ = build.__qualname__ = cls.__name__
    return build


def _takes(factory: Callable[..., Any], arg: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read: give it only what was asked
        return False
    return arg in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "(no message)"
