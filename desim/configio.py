"""Reading YAML configs with errors a user can act on.

A typo or a wrong type becomes one `ConfigError` naming the file, the key path and what was
expected, never a traceback: `configs/arch/x.yaml: pe_cluster.pes: Input should be greater
than 0 (got -4)`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from desim.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, a number is finite (YAML's
    `.inf` and `.nan` would price or time a design at infinity or NaN and reach
    summary.json), and a boolean is not taken for a number nor anything else for a boolean
    (pydantic would read `pes: true` as 1 and `skip_zero_weights: 'yes'` as true)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _booleans_are_booleans(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            if name not in data:
                continue
            value, types = data[name], _scalar_types(field.annotation)
            if isinstance(value, bool) and bool not in types and types & {int, float}:
                raise ValueError(f"{name}: expected a number, got a boolean ({value!r})")
            if bool in types and not isinstance(value, bool) and not types - {bool, type(None)}:
                raise ValueError(f"{name}: expected true or false, got {value!r}")
        return data


def _scalar_types(annotation: Any) -> set[type]:
    """The plain types an annotation admits (through Annotated, Optional and unions)."""
    if isinstance(annotation, type):
        return {annotation}
    out: set[type] = set()
    for arg in get_args(annotation):
        out |= _scalar_types(arg) if not isinstance(arg, type) else {arg}
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such file", file=str(path))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{where}not valid YAML ({getattr(err, 'problem', err)})",
                          file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys at the top level", file=str(path))
    return data


def validate(model: type[M], data: Any, file: str | Path, prefix: str = "") -> M:
    """`model` built from `data`; the first validation error becomes a ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        # an unknown key first: a misspelt key also leaves the right one missing
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        parts = (prefix.split(".") if prefix else []) + [str(p) for p in first["loc"]]
        key = ".".join(parts)
        message = first["msg"]
        if first["type"] == "value_error":  # a section's own check (a model validator)
            message = message.removeprefix("Value error, ")
            named, sep, rest = message.partition(": ")
            if sep and re.fullmatch(r"[A-Za-z_][\w.]*", named):  # it names the key at fault
                key, message = ".".join([*parts, named]), rest
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(_fields_at(model, first["loc"][:-1])))
            message = f"unknown key; expected one of: {allowed}"
        elif (first["type"] != "missing" and first["loc"]
              and not (first["type"] == "value_error" and isinstance(first.get("input"), dict))):
            message += f" (got {first.get('input')!r})"  # not after a section's own check
        more = len(err.errors()) - 1
        if more:
            message += f" [and {more} more error{'s' if more > 1 else ''}]"
        raise ConfigError(message, file=str(file), key=key or "(top level)") from None


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the section at `loc`, for 'expected one of' hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):  # an item of a list: the section its items are
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        for arg in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
                break
        else:
            return []
    return list(getattr(current, "model_fields", {}))
