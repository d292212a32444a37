"""The README against the code it describes: every `desim` command it shows names a command
and options that exist, and its `--set` items name keys the experiment accepts; every file
it names is in the repository; every Python call it shows exists. A walkthrough found the
README had drifted from the code in a few places; this keeps it from drifting unseen."""

import re
import shlex
from pathlib import Path

import pytest
import typer

import desim
from desim.api import Result
from desim.cli import app
from desim.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# the placeholder an example command reads for any experiment file
EXAMPLE_EXPERIMENT = "configs/experiments/quickstart.yaml"


def code_blocks(language: str = "") -> list[str]:
    """The README's fenced blocks of `language` ("": plain), fences paired in order."""
    blocks, inside = [], None
    for line in README.splitlines():
        if line.startswith("```"):
            if inside is None:
                inside, lines = line[3:].strip(), []
            else:
                if inside == language:
                    blocks.append("\n".join(lines))
                inside = None
        elif inside is not None:
            lines.append(line)
    return blocks


def readme_commands() -> list[list[str]]:
    """Each `desim ...` line of the plain code blocks as words, its comment left out, an
    optional part's brackets dropped, and an indented line's words (`[--plot ...]`, a
    continued `--set`) joined to the command above it."""
    commands: list[list[str]] = []
    for block in code_blocks():
        command = None  # the words of the command the lines above began
        for line in block.splitlines():
            text = line.split("  #")[0].split(" # ")[0].rstrip(" \\")
            if text.startswith("desim "):
                command = []
                commands.append(command)
            elif not text.startswith(" "):
                command = None
            if command is not None and text.strip():
                command += [word if "=[" in word else word.strip("[]")  # (a list value kept)
                            for word in shlex.split(text) if word.strip("[]")]
    return commands


COMMANDS = readme_commands()
# and the commands the README and docs/ quote in their text (`desim run ... --report`)
QUOTED = sorted({span for doc in [README, *(p.read_text() for p in (ROOT / "docs").glob("*.md"))]
                 for span in re.findall(r"`(desim \w+[^`]*)`", doc)})


def test_the_readme_shows_every_command():
    group = typer.main.get_command(app)
    ctx = group.make_context("desim", ["run"], resilient_parsing=True)
    assert {words[1] for words in COMMANDS} == set(group.list_commands(ctx))


@pytest.mark.parametrize("words", COMMANDS + [
    shlex.split(q.replace("[", " ").replace("]", " ")) for q in QUOTED],
    ids=[" ".join(w[:3]) for w in COMMANDS] + QUOTED)
def test_each_readme_command_names_options_that_exist(words):
    group = typer.main.get_command(app)
    ctx = group.make_context("desim", ["run"], resilient_parsing=True)
    command = group.get_command(ctx, words[1])
    assert command is not None, words
    known = {opt for param in command.params for opt in param.opts}
    named = {w for w in words if w.startswith("-") and not w[1:2].isdigit()}
    assert named <= known, (words, named - known)


@pytest.mark.parametrize("words", [w for w in COMMANDS if w[1] in ("run", "check")
                                   and "--set" in w],
                         ids=lambda w: " ".join(w[2:]))
def test_each_readme_set_item_names_a_key_the_experiment_has(words):
    """`--set` items as `desim run` reads them (no simulation: the experiment and its
    architectures are loaded and validated); `EXP.yaml` stands for the quickstart."""
    path = words[2].replace("EXP.yaml", EXAMPLE_EXPERIMENT)
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    load_experiment(ROOT / path, sets)


def test_every_file_the_readme_names_is_there():
    named = set(re.findall(r"\b((?:configs|benchmarks|examples|docs|mappings|arch|desim|tests)"
                           r"/[A-Za-z0-9_./-]*\.(?:py|yaml|md|csv))\b", README))
    assert len(named) > 20
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing


def test_every_python_call_the_readme_shows_exists():
    (block,) = code_blocks("python")
    for name in re.findall(r"\bresult\.(\w+)", block):
        assert hasattr(Result, name), name
    for name in re.findall(r"\bdesim\.(\w+)\(", block):
        assert callable(getattr(desim, name, None)), name
