"""What the commands' options accept: any path but an empty one; and, for the example
scripts' argparse options, counts and fractions in their range.

`Path("")` is the current folder, so `--out ''` (or `--out "$UNSET"`) wrote a run's results
where the command was typed, unasked; an empty input path read the current folder as a file.
Click then says the option and the reason in its usage error (exit 2), as argparse does."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import typer


def path_given(value: str | Path) -> Path:
    """The parser of every path option and argument (typer's `parser=`)."""
    if not str(value).strip():
        raise typer.BadParameter("an empty path; expected a file or folder name")
    return Path(value)


def path_text_given(value: str) -> str:
    """`path_given`'s check, the text kept as typed: `./r/` stays `./r/` (a Path reads `r`),
    for a message that quotes the argument."""
    path_given(value)
    return value


def at_least(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `least` (a batch of 0, a calibration
    set of 0 images or -4 failed deep in the study, or printed a conclusion of nothing)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected at least {least}, got {value}")
        return value
    return parse


def fraction(text: str) -> float:
    """An argparse type: a sparsity, at least 0 and less than 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a sparsity from 0 up to 1 (not 1), got "
                                         f"{text}")
    return value
