"""Where a model from the user's file is, and what its file holds: `"file.py:factory"`.

Kept apart from the loading (`mappings.models.from_file`) and free of torch, so that the
experiment loader resolves the path (relative to the experiment file, as a SCALE-Sim
topology's) and the workload cache hashes the file without importing torch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from desim.configio import read_bytes
from desim.errors import ConfigError

SYNTAX = "'path/to/file.py:factory'"


def is_file_model(model: str | None) -> bool:
    """Whether `model` names a file's model rather than a built-in (no built-in's name has
    a colon or `.py`)."""
    return model is not None and (":" in model or ".py" in model)


def split(model: str) -> tuple[Path, str]:
    """The file and the factory's name of `model` ("file.py:factory"), the path as given."""
    file, sep, factory = model.rpartition(":")
    if not sep or not file.endswith(".py") or not factory.isidentifier():
        raise ConfigError(f"expected a built-in model or {SYNTAX} (a Python file and the "
                          f"name of a function in it that returns an nn.Module), got "
                          f"{model!r}", key="workload.model")
    return Path(file), factory


def resolve(model: str, folder: Path) -> str:
    """`model` with its file as an absolute path, a relative one taken from `folder` (the
    experiment file's), as a SCALE-Sim topology's is."""
    file, factory = split(model)
    return f"{(folder / file).resolve()}:{factory}"


def file_sha256(model: str) -> str:
    """The sha256 of the model's file's bytes: what the workload cache keys and config.json
    records, so that an edited file is never mistaken for the one that ran."""
    return hashlib.sha256(model_bytes(split(model)[0])).hexdigest()


def model_bytes(path: Path) -> bytes:
    """The bytes of the model's file (`existing`); one that cannot be read is said so."""
    return read_bytes(existing(path), "a Python file defining the model")


def existing(path: Path) -> Path:
    """`path`, if it is a file; else a ConfigError saying it is missing."""
    if not path.is_file():
        raise ConfigError(f"model file {str(path)!r} not found"
                          + (" (it is a directory)" if path.is_dir() else ""),
                          key="workload.model")
    return path
