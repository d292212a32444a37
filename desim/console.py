"""The rich consoles the commands print to.

Rich lays tables out to the terminal's width, and to 80 columns where output goes to a
file or a pipe (a log, CI): a wide table then cut its numbers short ("18679.4…") instead
of showing them. Piped output is given `PIPED_WIDTH` columns instead, unless `COLUMNS`
says how many.
"""

from __future__ import annotations

import os

from rich.console import Console

PIPED_WIDTH = 200


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) as wide as its terminal, or `PIPED_WIDTH` piped."""
    out = Console(stderr=stderr)
    if out.is_terminal or "COLUMNS" in os.environ:
        return out
    return Console(stderr=stderr, width=PIPED_WIDTH)
