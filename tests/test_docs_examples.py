"""The example outputs docs/DESIGNS.md shows are what the examples print now.

DESIGNS.md quotes each example's output in a code block after the command that makes it.
Two of those blocks had gone stale for sessions while the examples' own tests passed; this
runs each quoted command and checks every line of its block (a line may be cut short in
the docs, and "..." stands for lines left out). DESIGNS_RERAM_SNN.md's examples train
networks, whose figures land a little apart on each CPU (docs/PAPERS.md), so their blocks
are one machine's and not checked here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "docs" / "DESIGNS.md"]
COMMAND = re.compile(r"^`\.venv/bin/python (examples/\S+\.py)([^`]*)`")


def quoted_examples() -> list[tuple[str, list[str], list[str]]]:
    """(script, its arguments, the lines of the block after it) for each quoted command."""
    found = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            match = COMMAND.match(line)
            if not match:
                continue
            start = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            end = next(j for j in range(start + 1, len(lines)) if lines[j].startswith("```"))
            found.append((match.group(1), match.group(2).split(), lines[start + 1:end]))
    return found


EXAMPLES = quoted_examples()


def test_every_example_the_docs_quote_is_found():
    assert sorted(Path(s).stem for s, _, _ in EXAMPLES) == [
        "admm_break_even", "circnn", "permdnn", "ternary_pe_wise"]


@pytest.mark.slow
@pytest.mark.parametrize("script, args, block", EXAMPLES, ids=[Path(e[0]).stem for e in EXAMPLES])
def test_the_docs_show_what_the_example_prints(script, args, block, tmp_path):
    if "--out" in args:  # plots go to a scratch folder, not the checkout's results/
        args = [*args[:args.index("--out") + 1], str(tmp_path), *args[args.index("--out") + 2:]]
    run = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-2000:]
    printed = [line.rstrip() for line in run.stdout.splitlines()]
    stale = [line for line in block if line.strip() != "..."
             and not any(p.startswith(line.rstrip()) for p in printed)]
    assert not stale, f"{script}: lines the docs show that it no longer prints: {stale}"
