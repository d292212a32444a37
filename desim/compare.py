"""`desim compare BEFORE AFTER`: what a what-if changed, and what that did, run by run.

Why: an architect's day is what-ifs (`desim run E.yaml --set ... --out after`), each read
against the folder before it. This reads two results folders and shows what differs in
their configuration (the `--set` items, then every key of the experiment whose value
differs), where the change moved the experiment's claims (each folder's value and
verdict), and, for every run they share, what differs in its resolved architecture and
where the change moved its time and energy (`desim.gains`, AFTER's run against BEFORE's:
energy by component, time by binding part). Printed in the terminal; `--out FILE.md`
writes it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from desim.document import Block, Bullets, Heading, Para, Table, print_blocks, to_markdown
from desim.errors import ConfigError, fail, guarded
from desim.options import path_given
from desim.report import config_differences, gain_blocks
from desim.results import writable_file, write_atomic
from desim.results_folder import Results, load_results
from desim.summary_text import run_notes


def compare(before: Path, after: Path, runs: list[str] | None = None) -> list[Block]:
    """The blocks of the comparison: the folders' `--set` items, experiment differences and
    claims, then per run its architecture's differences and its gains (AFTER against
    BEFORE)."""
    if Path(before).resolve() == Path(after).resolve():  # every ratio 1.00x, said as a gain
        raise ConfigError(f"the same folder as {before}: expected the folder of a what-if "
                          "against the one before it", file=str(after))
    read_b, read_a = load_results(before), load_results(after)
    summary_b, config_b = read_b.summary, read_b.config
    summary_a, config_a = read_a.summary, read_a.config
    shared = [run for run in summary_a["runs"] if run in summary_b["runs"]]
    for run in runs or []:
        if run not in shared:
            raise ConfigError(f"--run {run}: not a run of both folders (runs of both: "
                              f"{', '.join(shared) or 'none'})", file=str(after))
    if not shared:
        raise ConfigError(f"no run of {after} is a run of {before} (runs: "
                          f"{', '.join(summary_a['runs'])} against "
                          f"{', '.join(summary_b['runs'])}): nothing to compare",
                          file=str(after))
    blocks: list[Block] = [Heading(1, f"`{after}` against `{before}`")]
    overrides = [f"{label}: " + (", ".join(f"`{o}`" for o in config.get("overrides", []))
                                 or "none")
                 for label, config in (("before", config_b), ("after", config_a))]
    blocks.append(Para("--set items: " + "; ".join(overrides) + "."))
    made = [config.get("desim") for config in (config_b, config_a)]
    if made[0] != made[1]:  # the same configuration may give other numbers
        blocks.append(Para("Made by other code: before " + _made_by(made[0]) + ", after "
                           + _made_by(made[1]) + "."))
    alone = [f"{label}'s {', '.join(f'`{r}`' for r in only)}" for label, only in (
        ("before", [r for r in summary_b["runs"] if r not in shared]),
        ("after", [r for r in summary_a["runs"] if r not in shared])) if only]
    if alone:  # a run of one folder only has nothing to be read against
        blocks.append(Para("Not compared, a run of one folder only: " + "; ".join(alone) + "."))
    changed = config_differences({"before": config_b.get("experiment", {}),
                                  "after": config_a.get("experiment", {})})
    if changed:
        blocks.append(Table(["experiment", "before", "after"], changed))
    claims = claim_rows(read_b, read_a)
    if claims:
        blocks.append(Table(["claim", "paper", "before", "after", "range", "before's verdict",
                             "after's verdict"], claims, numeric={1, 2, 3}))
    for run in runs or shared:
        blocks.append(Heading(2, f"Run `{run}`"))
        changed = config_differences({label: config.get("architectures", {}).get(run) or {}
                                      for label, config in (("before", config_b),
                                                            ("after", config_a))})
        blocks.append(Table(["architecture", "before", "after"], changed) if changed else
                      Para("Its architecture is the same in both."))
        notes = [f"{label}: {note}" for label, summary in (("before", summary_b),
                                                            ("after", summary_a))
                 for note in run_notes(summary["runs"][run])]
        if notes:  # what the figures below leave out
            blocks.append(Bullets(notes))
        blocks += gain_blocks("before", summary_b["runs"][run], "after",
                              summary_a["runs"][run])
    return blocks


def _made_by(made: dict | None) -> str:
    """config.json's `desim` (`desim.results.provenance`) in words."""
    if not made:
        return "a desim that did not record itself"
    commit = f" at {made['commit'][:10]}" if made.get("commit") else ""
    diff = made.get("diff_sha256")  # two edits of one commit told apart
    return f"desim {made.get('version', '?')}{commit}" + (
        f" with modified files (diff {diff[:10]})" if made.get("modified") and diff else
        " with modified files" if made.get("modified") else "")


def claim_rows(before: Results, after: Results) -> list[list[str]]:
    """The claims of AFTER's experiment file that BEFORE's has too (by their title), with
    both folders' values and verdicts: what a what-if moved across a range."""
    earlier = {check.title: check for check in before.checks}
    return [[check.title, check.paper_text, earlier[check.title].value_text,
             check.value_text, check.range_text, earlier[check.title].verdict, check.verdict]
            for check in after.checks if check.title in earlier]


def register(app: typer.Typer) -> None:
    """Add the `compare` command to the `desim` command line."""

    @app.command("compare")
    def compare_command(
        before: Annotated[Path, typer.Argument(help="results folder before the change",
                                               parser=path_given)],
        after: Annotated[Path, typer.Argument(help="results folder after it", parser=path_given)],
        run: Annotated[list[str] | None, typer.Option(
            "--run", help="only this run (repeatable; default: every run of both)")] = None,
        out: Annotated[Path | None, typer.Option(
            "--out", "-o", help="also write the comparison to FILE.md", parser=path_given)] = None,
    ) -> None:
        """Read a what-if's results folder against the one before it.

        What differs between the two folders' configurations, where it moved the claims,
        and where it moved each run's time and energy (component by component, part by
        part)."""
        from desim.console import console as make_console

        if out is not None and out.suffix.lower() != ".md":  # as `desim report` refuses
            fail(2, f"--out {out}: the comparison is Markdown; name it FILE.md")
        blocks = guarded(lambda: compare(before, after, run))
        if out is not None:
            guarded(lambda: write_atomic(writable_file(out), to_markdown(blocks)))
        print_blocks(make_console(), blocks)
        if out is not None:
            make_console().print(f"wrote {out}", highlight=False, markup=False)

