"""Reading YAML configs (and a results folder's config.json) with errors a user can act on.

A typo or a wrong type becomes one `ConfigError` naming the file, the key path and what was
expected, never a traceback: `configs/arch/x.yaml: pe_cluster.pes: Input should be greater
than 0 (got -4)`.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Hashable
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from desim.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, a number is finite (YAML's
    `.inf` and `.nan` would price or time a design at infinity or NaN and reach
    summary.json), and a boolean is not taken for a number nor anything else for a boolean
    (pydantic would read `pes: true` as 1 and `skip_zero_weights: 'yes'` as true), nor a
    quoted string for a number (`channels: "8"`: most likely a slip, and `"1e3"` would be
    refused where `"1000"` passed). A number in exponent form (`1e3`) is a number, as YAML
    1.2 reads it (`UniqueKeyLoader`)."""

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
            if _quoted_number(value) and _a_number_only(field.annotation):
                raise ValueError(f"{name}: expected a number, got the string {value!r} (a "
                                 "number in quotes: write it without them)")
        return data


def _scalar_types(annotation: Any) -> set[type]:
    """The plain types an annotation admits (through Annotated, Optional and unions; a
    Literal admits its values' types)."""
    if isinstance(annotation, type):
        return {annotation}
    if get_origin(annotation) is Literal:
        return {type(value) for value in get_args(annotation)}
    out: set[type] = set()
    for arg in get_args(annotation):
        out |= _scalar_types(arg) if not isinstance(arg, type) else {arg}
    return out


def _quoted_number(value: Any) -> bool:
    """Whether `value` is text that reads as a finite number (`"8"`, `"0.5"`): YAML made a
    string of it because it was quoted (`inf`, `nan` and words are pydantic's to refuse)."""
    try:
        return isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        return False


def _a_number_only(annotation: Any) -> bool:
    """Whether an annotation admits a number and nothing else (None aside): `int`, `float |
    None`, `Annotated[int, Field(gt=0)]`; not `int | str`, a Literal, `list[int]`."""
    if isinstance(annotation, type):
        return annotation in (int, float)
    if hasattr(annotation, "__metadata__"):  # Annotated[T, ...]: T
        return _a_number_only(get_args(annotation)[0])
    if get_origin(annotation) not in (Union, UnionType):
        return False  # a Literal, list[int], dict[str, float]...
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    return all(_a_number_only(arg) for arg in args)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping; `path` is its place in the document (mapping keys
    and list indices), for a message that names it as `runs.1.pruning.sparsity`."""

    def __init__(self, path: list[Any], first_line: int, mark: yaml.Mark) -> None:
        super().__init__(problem=f"key {path[-1]!r} given twice, first on line {first_line}",
                         problem_mark=mark)
        self.path = path

    @property
    def key(self) -> str:
        return ".".join(map(str, self.path))


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping: YAML forbids it, and
    PyYAML would keep the last value without a word (two `name:` in an arch file). The
    document's nodes are walked before they are built, so that the error knows where the
    mapping sits (building them, PyYAML defers nested mappings and loses their place)."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._refuse_duplicate_keys(node, [], set())
        return super().construct_document(node)

    def _refuse_duplicate_keys(self, node: yaml.Node, path: list[Any], seen: set[int]) -> None:
        if id(node) in seen:  # an alias: checked where its anchor is
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._refuse_duplicate_keys(item, [*path, i], seen)
        if not isinstance(node, yaml.MappingNode):
            return
        lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`, whose keys this
                self._refuse_duplicate_keys(value_node, path, seen)  # mapping may override
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable):  # else PyYAML's own error
                if key in lines:
                    raise DuplicateKeyError([*path, key], lines[key], key_node.start_mark)
                lines[key] = key_node.start_mark.line + 1
            self._refuse_duplicate_keys(value_node, [*path, key], seen)


class YamlDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting the strings `UniqueKeyLoader` would read as numbers
    (`"1e3"`: a sweep's value written for --set came back a float)."""


# Numbers in exponent form as YAML 1.2 reads them: PyYAML (YAML 1.1) reads `1e3`, `2e6` and
# `1.0e3` as strings, a float only with a dot and a signed exponent (`1.0e+3`)
for _resolving in (UniqueKeyLoader, YamlDumper):
    _resolving.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
        list("-+0123456789."))


def read_text(path: str | Path, expected: str = "a YAML file") -> str:
    """The text of the input file at `path`, decoded as UTF-8 whatever the locale: a file
    that is missing, a directory or not UTF-8 is bad input, one ConfigError naming it (and
    the byte at fault; `expected`: what the file should be), never a traceback. A directory
    is said to be one: "no such file" would send the user looking for a typo."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"is a directory; expected {expected}", file=str(path))
    if not path.is_file():
        raise ConfigError(f"not a regular file (a pipe or a device); expected {expected}"
                          if path.exists() else "no such file", file=str(path))
    data = read_bytes(path, expected)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"not UTF-8 text: byte {data[err.start]:#04x} at offset {err.start} "
                          f"(line {line}); expected {expected} saved as UTF-8",
                          file=str(path)) from None


def read_bytes(path: Path, expected: str) -> bytes:
    """The bytes of the file at `path`; one that cannot be read (no permission, an I/O
    error) is one ConfigError naming it and why, not a traceback."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read it ({err.strerror or err}); expected {expected}",
                          file=str(path)) from None


# The most values a configuration may hold once its aliases are expanded: a few thousand in
# the largest real one; a YAML "alias bomb" (anchors of anchors) expands to billions.
MAX_VALUES = 1_000_000


class UnreadableYaml(yaml.YAMLError):
    """YAML that PyYAML reads but desim cannot take: nested past Python's recursion limit, a
    number of more digits than Python converts, or aliases that expand past `MAX_VALUES`."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def parse_yaml(text: str) -> Any:
    """YAML text as data (`UniqueKeyLoader`); what it cannot take raises `UnreadableYaml`,
    a YAMLError as any other, so each caller says it once."""
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
    except RecursionError:
        raise UnreadableYaml("nested too deeply") from None
    except ValueError as err:  # int() of a number of more than 4,300 digits
        raise UnreadableYaml("a number of more digits than Python reads" if "digits" in str(err)
                             else str(err)) from None
    stack, values = [data], 0
    while stack:  # counted without expanding: a shared node counts at each use
        node = stack.pop()
        values += 1
        if values > MAX_VALUES:
            raise UnreadableYaml(f"its aliases expand to more than {MAX_VALUES:,} values")
        stack.extend(node.values() if isinstance(node, dict) else
                     node if isinstance(node, list) else ())
    return data


def yaml_problem(err: yaml.YAMLError) -> str:
    """What PyYAML found wrong, on one line (a control character's error spans two)."""
    return " ".join(str(getattr(err, "problem", None) or err).split())


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = read_text(path)
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{where}not valid YAML ({yaml_problem(err)})",
                          file=str(path),
                          key=err.key if isinstance(err, DuplicateKeyError) else None) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys at the top level", file=str(path))
    return data


def load_json(path: Path) -> dict[str, Any]:
    """A JSON file (a results folder's config.json), read as JSON: its YAML reading turned
    an escaped character outside the BMP into two lone surrogates, and NaN into text."""
    try:
        data = json.loads(read_text(path, "a JSON file"), object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        raise ConfigError(f"line {err.lineno}, column {err.colno}: not valid JSON ({err.msg})",
                          file=str(path)) from None
    except RecursionError:
        raise ConfigError("not valid JSON (nested too deeply)", file=str(path)) from None
    except _GivenTwice as err:
        raise ConfigError(f"key {err.args[0]!r} given twice in one mapping",
                          file=str(path)) from None
    except ValueError as err:  # int() of a number of more than 4,300 digits
        raise ConfigError(f"not valid JSON ({err})", file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys at the top level", file=str(path))
    return data


class _GivenTwice(Exception):
    """A JSON object's key given twice (its argument)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's keys, each once: a key given twice is refused, as in a YAML file."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _GivenTwice(key)
        data[key] = value
    return data


def validate(model: type[M], data: Any, file: str | Path, prefix: str = "") -> M:
    """`model` built from `data`; the first validation error becomes a ConfigError naming
    the file, the key and what was expected. One error, as every other ConfigError: the
    others pydantic finds mostly follow from it (a misspelt key leaves the right one
    missing, a union reports each member), so their count ("[and 3 more errors]") told the
    user nothing to act on; other unknown keys beside the first are named with it."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        errors = _fitting_errors(err.errors(), data)
        # an unknown key first: a misspelt key also leaves the right one missing
        unknown = [place for e, place in errors if e["type"] == "extra_forbidden"]
        first, place = next((e for e in errors if e[0]["type"] == "extra_forbidden"), errors[0])
        parts = (prefix.split(".") if prefix else []) + [str(p) for p in place]
        key = ".".join(parts)
        message = first["msg"]
        if first["type"] == "value_error":  # a section's own check (a model validator)
            message = message.removeprefix("Value error, ")
            named, sep, rest = message.partition(": ")
            # it names the key at fault: a key path as --set takes it, `*` (every run's
            # arch) and `-` (a sweep axis's or a model argument's name) included
            if sep and re.fullmatch(r"[\w*-]+(\.[\w*-]+)*", named):
                key, message = ".".join([*parts, named]), rest
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(_fields_at(model, place[:-1])))
            message = f"unknown key; expected one of: {allowed}"
            beside = [str(p[-1]) for p in unknown if p[:-1] == place[:-1] and p != place]
            if beside:
                message += f" (also unknown there: {', '.join(beside)})"
        elif (first["type"] != "missing" and first["loc"]
              and not (first["type"] == "value_error" and isinstance(first.get("input"), dict))):
            message += f" (got {shown(first.get('input'))})"  # not after a section's check
        raise ConfigError(message, file=str(file), key=key or "(top level)") from None


def shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short where it is long (a
    pasted blob, a deep structure), so that the message stays one readable line."""
    brief = reprlib.Repr()
    brief.maxstring = brief.maxother = 80
    brief.maxlevel, brief.maxlist, brief.maxdict = 3, 6, 6
    return brief.repr(value)


def _fitting_errors(errors: list[Any], data: Any) -> list[tuple[Any, tuple]]:
    """Each error with its place in `data`, less those of a union's members that wanted
    another shape of input. Pydantic tries every member of a union (a sweep axis is a list
    or a range) and reports them all: for a range's dict, "Input should be a valid list"
    would hide the range's own error ("low must be less than high")."""
    placed = [(e, *_place(e, data)) for e in errors]
    return [(e, place) for e, place, member in placed
            if not (member and e["type"].endswith("_type") and any(
                other_member and other_place[:len(place)] == place
                and not other["type"].endswith("_type")
                for other, other_place, other_member in placed))]


def _place(error: Any, data: Any) -> tuple[tuple, bool]:
    """Where `error` is in `data`: its `loc` less the union members pydantic names there
    ('list[any]', 'function-after[_ordered(), RangeAxis]'), and whether it named one."""
    node, place, member = data, [], False
    for i, part in enumerate(error["loc"]):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif not (error["type"] == "missing" and i == len(error["loc"]) - 1):
            member = True  # not in the data: a member's name
            continue
        place.append(part)
    return tuple(place), member


def _fields_at(model: type[BaseModel], place: tuple) -> list[str]:
    """Field names of the section at `place`, for 'expected one of' hints."""
    section = _section_at(model, place)
    return list(section.model_fields) if section is not None else []


def optional_section(model: type[BaseModel], place: list[str]) -> bool:
    """Whether `place` names a section of `model` that may be absent (its default None):
    an optional component, whose presence changes what a design is."""
    parent = _section_at(model, tuple(place[:-1]))
    field = parent.model_fields.get(place[-1]) if parent is not None else None
    return field is not None and field.default is None and bool(_sections(field))


def section_model(model: type[BaseModel], place: list[str]) -> type[BaseModel]:
    """The model of the optional section at `place` (`optional_section`'s)."""
    parent = _section_at(model, tuple(place[:-1]))
    assert parent is not None
    return _sections(parent.model_fields[place[-1]])[0]


def _section_at(model: type[BaseModel], place: tuple) -> type[BaseModel] | None:
    """The section (a model) at `place` in `model`, None where a field there is no section;
    a part that names no field (an item of a list or a dict) stands for the section its
    items are."""
    current: Any = model
    for part in place:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue
        sections = _sections(field)
        if not sections:
            return None
        current = sections[0]
    return current


def _sections(field: Any) -> list[type[BaseModel]]:
    """The models (sections) a field's annotation admits."""
    return [t for t in _scalar_types(field.annotation)
            if isinstance(t, type) and issubclass(t, BaseModel)]
