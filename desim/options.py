"""What the commands' path options and arguments accept: any path but an empty one.

`Path("")` is the current folder, so `--out ''` (or `--out "$UNSET"`) wrote a run's results
where the command was typed, unasked; an empty input path read the current folder as a file.
Click then says the option and the reason in its usage error (exit 2)."""

from __future__ import annotations

from pathlib import Path

import typer


def path_given(value: str | Path) -> Path:
    """The parser of every path option and argument (typer's `parser=`)."""
    if not str(value).strip():
        raise typer.BadParameter("an empty path; expected a file or folder name")
    return Path(value)
