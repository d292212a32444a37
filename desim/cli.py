"""The `desim` command line.

Bad input (a `ConfigError`) prints one line naming the file, the key and what was expected,
and exits with code 2; a deadlock exits with code 3. Never a traceback for the user's mistakes.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from desim.console import console as make_console
from desim.errors import ConfigError, fail, guarded, interrupts_kept
from desim.options import path_given

if TYPE_CHECKING:
    import click

    from arch.config import ArchConfig


class _Commands(TyperGroup):
    """The commands, of which bench, compare, report and sweep are loaded when named (or
    listed, for help): their modules, which `desim run` does not need, are not imported for
    it. Each command's help is its docstring with every paragraph made one line, which the
    terminal then wraps (rich keeps a docstring's line breaks as they are)."""

    LOADED_WHEN_NAMED = {"bench": "desim.bench", "compare": "desim.compare",
                         "report": "desim.report", "sweep": "desim.sweep"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx),
                *(name for name in self.LOADED_WHEN_NAMED if name not in self.commands)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LOADED_WHEN_NAMED and name not in self.commands:
            commands = typer.Typer(add_completion=False)  # as the app: no completion options
            importlib.import_module(self.LOADED_WHEN_NAMED[name]).register(commands)
            self.add_command(typer.main.get_command(commands), name)
        command = super().get_command(ctx, name)
        if command is not None and command.help:  # paragraphs of a docstring reflowed
            command.help = "\n\n".join(" ".join(p.split()) for p in command.help.split("\n\n"))
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and args[0] not in self.LOADED_WHEN_NAMED:
            for name in self.LOADED_WHEN_NAMED:  # no such command: typer's "Did you mean"
                self.get_command(ctx, name)      # looks among the loaded ones only
        return super().resolve_command(ctx, args)


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True,
                  help="desim: transaction-level simulation of sparse DNN training accelerators.")
console = make_console()
err_console = make_console(stderr=True)  # what stops a command, said on stderr


def _print_version(asked: bool) -> None:
    """`desim --version`: the package's version and, from a git checkout, its commit (and
    whether tracked files differ from it), as config.json records them."""
    if not asked:
        return
    from desim.results import provenance

    made = provenance()
    commit = made.get("commit")
    where = (f" (commit {commit[:12]}{', modified' if made.get('modified') else ''})"
             if commit else "")
    console.print(f"desim {made['version'] or 'from a source tree, not installed'}{where}",
                  highlight=False, markup=False)
    raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="print desim's version (and git commit) and exit")] = False) -> None:
    """desim: transaction-level simulation of sparse DNN training accelerators."""


# `--set key.path=value`, repeatable: the overrides `desim run` and `desim check` take.
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="override key.path=value (runs.<name or index>.<key>), or "
                  "arch.<run or *>.<key.path>=value")]


@app.command()
def run(
    config: Annotated[Path, typer.Argument(
        help="experiment YAML (configs/experiments/...), or a results folder (its "
             "config.json) to run again", parser=path_given)],
    out: Annotated[Path, typer.Option("--out", "-o", help="results folder",
                                      parser=path_given)] = Path("results"),
    set_: SetOption = None,
    trace: Annotated[bool, typer.Option("--trace", help="write DIR/trace.json (Perfetto)")] = False,
    vcd: Annotated[bool, typer.Option("--vcd", help="write DIR/waves_<run>.vcd")] = False,
    tiles: Annotated[bool, typer.Option(
        "--tiles", help="write DIR/tiles.csv: every tile the mapper planned")] = False,
    report: Annotated[bool, typer.Option(
        "--report", help="then write DIR/report.md and .html with their plots, as `desim "
                         "report DIR` does")] = False,
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="keep each captured workload (trained, pruned) in this folder and "
                        "reuse it when a run has the same workload and pruning: a hardware "
                        "what-if skips capture and training and gives the same numbers. Use "
                        "only a folder you made: its files are pickles, which run code",
                        parser=path_given)] = None,
) -> None:
    """Simulate one training iteration of an experiment's workload on each architecture."""
    from desim.experiment import load_experiment

    overrides = list(set_ or [])
    overrides += ["observe.trace=true"] if trace else []
    overrides += ["observe.vcd=true"] if vcd else []
    overrides += ["observe.tiles=true"] if tiles else []
    started = time.perf_counter()
    experiment = guarded(lambda: load_experiment(config, overrides))  # a typo: before torch
    from desim.resolved import rerun_notes

    for note in rerun_notes(experiment.recorded):  # a results folder's config.json, again
        err_console.print(escape(f"note: {experiment.path}: {note}"), highlight=False)
    observe = experiment.spec.observe
    if observe.modules and not (observe.trace or observe.vcd):  # probes of nothing recorded
        err_console.print(escape(f"note: {config}: observe.modules names what the trace and "
                                 "the waveforms record, and neither is on (--trace, --vcd)"),
                          highlight=False)
    if experiment.spec.sweep is not None:  # run as it is: the file's own values
        err_console.print(escape(f"note: {config}: its sweep: section is not run here; "
                                 f"`desim sweep {config}` runs its points"), highlight=False)
    # torch, pandas and networkx make some 200,000 objects and next to no garbage: collected
    # as they load, then walked by each full collection of the run, they cost 0.4 s a run
    gc.disable()
    try:
        from desim.runner import held_results_folder, run_and_write_held
    finally:
        gc.freeze()  # what the imports made lives as long as the process: left out of collections
        gc.enable()
    # The folder is held from before the simulation to after the report: another desim's
    # run into it is refused at once (exit 2), as this one is while another holds it.
    with contextlib.ExitStack() as holding:
        try:
            guarded(lambda: holding.enter_context(held_results_folder(out, experiment)))
            with console.status("starting") as status:
                def kept() -> dict[str, Any]:  # (a Ctrl-C caught on the way is one still)
                    with interrupts_kept():
                        return run_and_write_held(experiment, out, status.update, cache)

                summary = guarded(kept)
        except KeyboardInterrupt:  # a Ctrl-C: said, as a sweep says it (exit 130)
            left = ("the earlier results there are as they were"
                    if (out / "summary.json").is_file() else "no results there")
            err_console.print(escape(f"interrupted: {out}: {left}"), highlight=False)
            raise typer.Exit(130) from None
        print_summary(summary)
        from desim.runner import RESULT_FILES

        # what this run wrote (`observe`, as above): a file of another's is not
        written = [n for n in RESULT_FILES if not (n == "trace.json" and not observe.trace
                                                   or n == "tiles.csv" and not observe.tiles)]
        written += (sorted(f"waves_{name}.vcd" for name in summary["runs"]) if observe.vcd
                    else [])
        if report:  # the plots in the results folder, in one command (DESIGN.md's folder)
            from desim.report import build_report
            from desim.results import DEFAULT_REPORT

            md, page, _ = guarded(lambda: build_report([out], out / DEFAULT_REPORT))
            plots = len(list(out.glob(f"{md.stem}_*.png")))
            written += [md.name, page.name, f"{plots} plots ({md.stem}_*.png)"]
    console.print(escape(f"results in {out}/ ({', '.join(written)}); "
                         f"{time.perf_counter() - started:.1f} s"), highlight=False)


@app.command()
def check(
    config: Annotated[Path, typer.Argument(
        help="experiment YAML (configs/experiments/...), or a results folder (its "
             "config.json)", parser=path_given)],
    set_: SetOption = None,
) -> None:
    """Validate an experiment and build each run's processor, without simulating.

    Takes seconds; prints a table of what each processor is (MACs a cycle, buffers, DRAM,
    NoC, sparse units)."""
    from desim.check import check as check_experiment
    from desim.elaborate import DESCRIBED, cell

    checked = guarded(lambda: check_experiment(config, list(set_ or []), progress=True))
    for note in checked.notes:  # a results folder's config.json: as `desim run` says them
        err_console.print(escape(f"note: {note}"), highlight=False)
    rows = checked.runs
    table = Table(title=f"{config.name}: elaborated, not simulated")
    table.add_column("")
    for row in rows:
        table.add_column(row["run"], justify="right")
    for key, title in {**DESCRIBED, "pruning": "pruning"}.items():
        table.add_row(title, *(escape(cell(row[key])) for row in rows))
    console.print(table)
    console.print(f"ok: {len(rows)} run(s) elaborated; `desim run` simulates them")
    if checked.sweep_points:
        invalid = checked.invalid_points
        console.print(f"sweep: {checked.sweep_points} points, "
                      + (f"{len(invalid)} invalid:" if invalid else "all valid"))
        for values, err in invalid[:5]:
            console.print(escape(f"  {values}: {err}"), highlight=False, soft_wrap=True)
        if invalid:  # `desim sweep` would record these as failed: bad input all the same
            fail(2, f"{len(invalid)} of {checked.sweep_points} sweep points are invalid")


def print_summary(summary: dict[str, Any]) -> None:
    """The runs' table, then notes: the vector layers' share of a run's time and, when its
    design has no vector unit, how many vector layers a run left out: all but the ReLUs it
    applies on the PE array's output (`mappings.vector.vector_layers_not_simulated`)."""
    from desim.metrics import on_chip_energy_ratio
    from desim.summary_text import (
        bound_text,
        busy_text,
        more_or_less,
        run_notes,
        vector_share,
    )

    training = any(p["cycles"] for r in summary["runs"].values()
                   for phase, p in r["phases"].items() if phase != "FF")
    table = Table(title=f"{summary['experiment']}: one "
                        f"{'training iteration' if training else 'inference (FF only)'}",
                  box=box.SIMPLE_HEAD, pad_edge=False)  # no vertical rules: eight columns fit
    # in 80 characters (and units as headers, for the same reason)
    # MACs in the largest unit the largest run reaches: LeNet-300's 0.47 MMACs were
    # "0.000" GMACs
    most = max((r["macs"] for r in summary["runs"].values()), default=0)
    scale, unit = next(((s, u) for s, u in ((1e9, "GMACs"), (1e6, "MMACs"), (1e3, "kMACs"))
                        if most >= s), (1.0, "MACs"))
    # time beside cycles: runs at other clocks compare by time, as their speedups do
    longest = max((r["seconds"] for r in summary["runs"].values()), default=0.0)
    per_s, time_unit = (1e3, "ms") if longest >= 1e-3 else (1e6, "us")
    for col in ("run", "phase", "cycles", time_unit, "mJ", unit, "effectual", "DRAM MB"):
        table.add_column(col, justify="left" if col in ("run", "phase") else "right",
                         no_wrap=True)

    def cells(p: dict[str, Any], seconds: float) -> tuple[str, ...]:
        return (f"{p['cycles']:,}", f"{seconds * per_s:.3f}", f"{p['energy_j'] * 1e3:.3f}",
                f"{p['macs'] / scale:.3f}", f"{p['effectual_macs'] / scale:.3f}",
                f"{p['dram_bytes'] / 1e6:.2f}")

    for name, r in summary["runs"].items():
        period = r["seconds"] / r["cycles"] if r["cycles"] else 0.0  # s a core cycle
        for phase, p in r["phases"].items():
            table.add_row(name, phase, *cells(p, p["cycles"] * period))
        table.add_row(name, "total", *cells(r, r["seconds"]), style="bold", end_section=True)
    console.print(table)
    for name, r in summary["runs"].items():
        share = vector_share(r)
        if share:  # a run with vector layers
            console.print(f"{name}: vector layers (batch norm, pooling, adds, softmax) take "
                          f"{100 * share:.0f}% of the time")
        if "WU" in r["phases"] and r["cycles"]:
            console.print(f"{name}: the weight update (phase WU) takes "
                          f"{100 * r['phases']['WU']['cycles'] / r['cycles']:.0f}% of the time")
        for note in run_notes(r):
            console.print(escape(f"{name}: {note}"), highlight=False)
    for name, r in summary["runs"].items():
        console.print(escape(f"{name}: busy {busy_text(r)}"), highlight=False)
        console.print(escape(f"{name}: time by each layer-phase's busiest part: "
                             f"{bound_text(r)}"), highlight=False)
    base = summary["baseline"]
    for name, c in summary["comparison"].items():
        if name != base:
            on_chip = on_chip_energy_ratio(summary["runs"][base], summary["runs"][name])
            console.print(f"{name} vs {base}: speedup {c['speedup']:.2f}x, energy "
                          f"{more_or_less(c['energy_ratio'], 'less', 'more')} "
                          f"({more_or_less(on_chip, 'less', 'more')} on chip)")
            largest = largest_parts(summary["runs"][base], summary["runs"][name], base)
            console.print(escape(f"  {largest}"), highlight=False)


def largest_parts(base: dict[str, Any], run: dict[str, Any], base_name: str) -> str:
    """What caps a run's ratios over the baseline (`desim.gains`, Amdahl's view): the
    component with the largest share of its energy and the part that bound the largest
    share of its time, each against the baseline's; `desim report` has the whole split."""
    from desim.gains import energy_gains, time_gains
    from desim.summary_text import more_or_less

    def against(row: Any) -> str:
        return (f"none in {base_name}" if not row["baseline"]
                else more_or_less(row["shrink"], "less", "more", f"{base_name}'s"))

    energy = energy_gains(base, run).drop("total")
    top = energy.loc[energy["share_of_run"].idxmax()]
    said = (f"largest: {top.name}, {100 * top['share_of_run']:.0f}% of its energy "
            f"({against(top)})")
    if run.get("time_by_busiest_part") and base.get("time_by_busiest_part"):
        time = time_gains(base, run).drop("total")
        bound = time.loc[time["share_of_run"].idxmax()]
        said += (f"; {bound.name}-bound layer-phases, {100 * bound['share_of_run']:.0f}% of "
                 f"its time ({against(bound)})")
    return said


@app.command()
def topology(
    arch: Annotated[Path, typer.Argument(help="architecture YAML (configs/arch/...)",
                                         parser=path_given)],
    out: Annotated[Path, typer.Option("--out", "-o", help="FILE.png, FILE.svg or FILE.dot",
                                      parser=path_given)],
    stats: Annotated[Path | None, typer.Option("--stats", help="a results folder: colour "
                                               "links and nodes by utilization",
                                               parser=path_given)] = None,
    run_name: Annotated[str | None, typer.Option("--run", help="which run of --stats (default: "
                                                 "the first whose design is this file's)")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="override key.path=value in the architecture file (what `desim run "
                      "--set arch.<run>.<key.path>=value` did to the run of --stats)")] = None,
) -> None:
    """Draw an architecture's graph: nodes by kind, links by bandwidth (or how busy).

    Files with a `kind:` (ReRAM crossbars, the SNN array) are drawn as their datapath."""
    from arch.accelerator import build_graph
    from arch.config import ArchConfig
    from arch.draw import draw_topology
    from desim.experiment import load_design

    def draw() -> tuple[Path, Any]:
        if run_name is not None and stats is None:  # it was ignored: drawn uncoloured
            raise ConfigError("names a run of the results folder given by --stats, which is "
                              "missing: give --stats DIR too", key="--run")
        cfg = load_design(arch, overrides=set_)
        if not isinstance(cfg, ArchConfig):
            if stats:
                raise ConfigError(f"--stats: a {cfg.kind} design has no desim run results "
                                  "to colour by", file=str(arch), key="kind")
            graph = cfg.graph()
            return draw_topology(graph, out), graph
        graph = build_graph(cfg)
        utilization = _utilization(stats, run_name, arch, cfg, graph) if stats else None
        return draw_topology(graph, out, utilization), graph

    path, graph = guarded(draw)
    console.print(f"wrote {escape(str(path))} ({graph.number_of_nodes()} nodes, "
                  f"{graph.number_of_edges()} links)")


def _utilization(stats_dir: Path, run_name: str | None, arch: Path, cfg: ArchConfig,
                 graph: Any) -> dict:
    """Utilization of links and nodes from a results folder's stats.json, for a run whose
    resolved design (config.json) is the file's, `cfg`: a run whose design was changed
    (`--set`, `arch_set`), or another design of the same name, would colour the drawing
    with figures of hardware it does not show."""
    from desim.results_folder import (
        graph_utilization,
        read_run_stats,
        read_summary_and_config,
    )

    summary, config = read_summary_and_config(stats_dir)  # each run's arch read below
    designs = config.get("architectures", {})
    drawn = json.loads(json.dumps(cfg.model_dump(mode="json")))  # as config.json holds it
    runs = ", ".join(f"{n} (arch {r['arch']})" for n, r in summary["runs"].items())

    def mismatch(name: str) -> str | None:
        """Why run `name`'s design is not the drawn one; None when it is."""
        used, design = summary["runs"][name]["arch"], designs.get(name)
        if design is not None and used == cfg.name and not _differences(drawn, design, ""):
            return None  # a key unset here and absent there (written before it existed) too
        if used != cfg.name:
            return f"uses arch {used!r}, not {cfg.name!r}"
        if design is None:
            return f"uses arch {used!r}, whose resolved design config.json does not hold"
        return (f"uses arch {used!r} with other values ({_differences(drawn, design, arch.name)}"
                "): changed by --set or arch_set (draw it with the same --set), or another "
                "file of that name")

    if run_name is None:
        matching = [n for n in summary["runs"] if mismatch(n) is None]
        if not matching:
            same_name = "".join(f"; run {n} {mismatch(n)}" for n, r in summary["runs"].items()
                                if r["arch"] == cfg.name)
            raise ConfigError(f"no run's design is {arch.name} as it is (runs: {runs})"
                              f"{same_name}", file=str(stats_dir))
        run_name = matching[0]
    elif run_name not in summary["runs"]:  # (not stats.json's fault)
        raise ConfigError(f"--run {run_name}: no such run; runs: {runs}", file=str(stats_dir))
    elif (why := mismatch(run_name)) is not None:
        raise ConfigError(f"--run {run_name}: that run {why}; runs: {runs}", file=str(stats_dir))
    return graph_utilization(graph, read_run_stats(stats_dir, run_name)["modules"], run_name)


def _differences(drawn: Any, run: Any, file: str, limit: int = 3) -> str:
    """The keys whose values differ between the drawn design and a run's (both as JSON),
    the first `limit` of them: `pe_cluster.pes 16 in dense.yaml, 8 in the run`."""
    def walk(a: Any, b: Any, key: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            return [d for k in [*a, *(k for k in b if k not in a)]
                    for d in walk(a.get(k), b.get(k), f"{key}.{k}" if key else k)]
        if a == b:
            return []
        return [f"{key} {json.dumps(a)} in {file}, {json.dumps(b)} in the run"]

    found = walk(drawn, run, "")
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return "; ".join(found[:limit]) + more


def main() -> None:  # pragma: no cover - console entry for `python -m desim`
    sys.exit(app())
