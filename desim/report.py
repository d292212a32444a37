"""`desim report DIR... [--out FILE.md]`: results folders as one Markdown and HTML report.

Why: a study's numbers mean little away from what they should reproduce and from what was
assumed to get them. For every results folder (`desim run ... --out DIR`) the report shows:

- each claim of the experiment file (`claims:`): the paper's figure, desim's value, the
  tolerance the file states and whether the value is within it. A claim the file marks as a
  known gap (`expect: outside`) is flagged as such, never hidden; a claim that lands where
  its file does not expect it is flagged loudly (and `--check` exits 1);
- the assumptions: the experiment's `description` and `notes` (YAML comments do not survive
  into config.json, so anything a reader must know lives there), and the `--set` overrides
  the run applied over the file (config.json's `overrides`), also beside any verdict that
  is not where the file expects it: the file's text describes the run without them;
- where the time went: each processor's topology coloured by how busy each part was, the
  time by each layer-phase's busiest part, the slowest layer-phases with their mapping, a
  roofline per run (every conv and linear layer-phase under the PE array's and DRAM's
  roofs), timelines coloured by the busiest part;
- the runs side by side, the processors they ran on (`desim check`'s description: MACs a
  cycle, buffers, DRAM, NoC, sparse units, then every key of config.json's architectures
  whose value differs between the runs), energy per component (a stacked bar plot), where
  each run's gain over the baseline comes from (`desim.gains`: energy by component, time by
  binding part) and,
  per run, a timeline of its layers (start and end cycle of each layer-phase from
  layers.csv) and its energy per layer and component (from energy.csv).

A folder must hold summary.json, config.json, layers.csv and energy.csv, as `desim run`
writes them; a section drawn from what an older desim did not write (stats.json, layers.csv's
busiest parts and mappings) is replaced by a line saying why it is not drawn.

Markdown and HTML carry the same content: both are rendered from one list of blocks
(`desim.document`). Plots (`desim.plots`) are PNG files written next to the report. The
folders are read by `desim.results_folder`, their claims checked by `desim.claims`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

import typer

from desim.claims import ClaimCheck
from desim.configio import validate
from desim.document import Block, Bullets, Heading, Image, Para, Table, to_html, to_markdown
from desim.errors import ConfigError, guarded
from desim.events import DEALT
from desim.metrics import OFF_CHIP, on_chip_energy_j, on_chip_energy_ratio
from desim.options import path_given, path_text_given
from desim.plots import (
    plot_energy,
    plot_layer_energy,
    plot_roofline,
    plot_time_by_busiest_part,
    plot_timeline,
    plot_topology,
)
from desim.results import (
    DEFAULT_REPORT,
    PLOT_KINDS,
    plot_path,
    report_files,
    writable_file,
    write_atomic,
)
from desim.results_folder import Results, load_results
from desim.summary_text import (
    bound_text,
    busy_text,
    fmt,
    more_or_less,
    run_notes,
    the_same,
    times,
    vector_share,
)

CLAIM_HEADER = ["experiment", "claim", "paper", "desim", "accepted range", "verdict",
                "source"]


def _claim_rows(results: Results) -> list[list[str]]:
    return [[results.shown_name, c.title, c.paper_text, c.value_text, c.range_text,
             results.verdict(c), c.claim.source] for c in results.checks]


def _note_title(check: ClaimCheck) -> str:
    """A claim note's lead: its label with the metric path it reads, or the path alone."""
    path = f"`{check.metric_text}`"
    return f"{check.claim.label} ({path})" if check.claim.label else path


def _tally(checks: list[ClaimCheck], where: str = "this experiment file") -> str:
    if not checks:
        return f"No claims in {where}."
    # three disjoint groups: a claim within tolerance that its file expects outside counts
    # once, among the surprises
    within = sum(1 for c in checks if c.within and c.as_expected)
    gaps = sum(1 for c in checks if c.within is False and c.as_expected)
    bad = sum(1 for c in checks if not c.as_expected)
    text = (f"{len(checks)} claim{'s' if len(checks) != 1 else ''}: {within} within tolerance, "
            f"{gaps} outside as a known gap (explained below)")
    return text + (f", **{bad} not where the experiment file expects them**." if bad else ".")


def _experiment_blocks(results: Results, slug: str, out_dir: Path) -> list[Block]:
    exp, summary = results.experiment, results.summary
    blocks: list[Block] = [Heading(2, f"Experiment `{results.shown_name}`")]
    if exp.get("description"):
        blocks.append(Para(exp["description"]))
    blocks.append(Para(f"Results folder: `{results.path}`; baseline run: "
                       f"`{summary['baseline']}`."))
    if results.overrides:
        blocks.append(Para("Run with --set: " + ", ".join(f"`{o}`" for o in results.overrides)
                           + " (over the experiment file: its description, notes and claims "
                           "below are as the file gives them)."))
    blocks.append(Heading(3, "Claims"))
    blocks.append(Para(_tally(results.checks)))
    if results.checks:
        blocks.append(Table(CLAIM_HEADER[1:], [r[1:] for r in _claim_rows(results)],
                            numeric={1, 2}, status=4))
        notes = [_note_title(c) + f": {c.claim.note}" + (f" ({c.error})" if c.error else "")
                 for c in results.checks if c.claim.note or c.error]
        if notes:
            blocks.append(Bullets(notes))
    blocks.append(Heading(3, "Assumptions"))
    assumptions = [workload_text(exp.get("workload", {}))] + list(exp.get("notes", []))
    blocks.append(Bullets(assumptions))
    blocks.append(Heading(3, "Runs"))
    blocks.append(_runs_table(results))
    notes = [f"{name}: {note}" for name, run in results.summary["runs"].items()
             for note in run_notes(run)]
    if notes:  # what the table's figures leave out
        blocks.append(Bullets(notes))
    blocks.append(Heading(3, "Processors"))
    described = described_processors(results)
    blocks.append(_processors_table(results, described))
    columns = set(results.layers.columns)
    if {"mapping", "partition"} <= columns:
        blocks.append(Para(MAPPINGS_TEXT))
        blocks.append(_mappings_table(results))
    else:
        blocks.append(_not_drawn("The plans the mapper chose", _lacks(
            "layers.csv", {"mapping", "partition"} - columns)))
    blocks.append(Heading(3, "Energy by component"))
    energy_png = plot_energy(results, plot_path(out_dir, slug, "energy"))
    blocks.append(Image(f"{results.shown_name}: energy per component", energy_png.name))
    blocks.append(_energy_table(results))
    if any("energy_prices_pj" in r for r in summary["runs"].values()):
        blocks.append(Heading(3, "Energy prices"))
        blocks.append(_prices_table(results))
    else:
        blocks.append(_not_drawn("Energy prices", _lacks("summary.json", {"energy_prices_pj"})))
    if len(summary["runs"]) > 1:
        blocks.append(Heading(3, "Where the gain comes from"))
        blocks.append(Para(GAINS_TEXT))
        for run in summary["runs"]:
            if run != summary["baseline"]:
                blocks += gain_blocks(summary["baseline"], summary["runs"][summary[
                    "baseline"]], run, summary["runs"][run])
    topologies = [(run, plot_topology(results, run,
                                      plot_path(out_dir, slug, "topology", run)))
                  for run in summary["runs"]]
    blocks.append(Heading(3, "Where the time went"))
    blocks.append(Para("Each processor's links and nodes coloured by the share of the run "
                       "they were busy (`utilization` in summary.json, per module in "
                       "stats.json)."))
    blocks += [Image(f"{results.shown_name}: {run}, busy share of each link and node", png.name)
               for run, png in topologies if isinstance(png, Path)]
    missing = [f"{run}: not drawn, {why}" for run, why in topologies if isinstance(why, str)]
    if missing:
        blocks.append(Bullets(missing))
    bound = plot_time_by_busiest_part(results, plot_path(out_dir, slug, "busiest_part"))
    if bound is not None:
        blocks.append(Para("What bound each layer-phase: the part busiest over its span, "
                           "first fetch to last write-back (`busiest_part` and "
                           "`busiest_share` in layers.csv), and each run's time by that part "
                           "(`time_by_busiest_part` in summary.json): "
                           + "; ".join(f"{name}: {bound_text(run)}"
                                       for name, run in summary["runs"].items()) + "."))
        blocks.append(Image(f"{results.shown_name}: time by each layer-phase's busiest part",
                            bound.name))
    else:
        blocks.append(_not_drawn("The time by each layer-phase's busiest part", _lacks(
            "summary.json", {"time_by_busiest_part"})))
    if {"busiest_part", "busiest_share"} <= columns:
        blocks.append(Para(f"The {SLOWEST} layer-phases that take the most of each run's "
                           "time, and the part busiest over each one's span:"))
        blocks.append(_slowest_table(results))
        if isinstance(described, str):
            blocks.append(_not_drawn("Rooflines", "the processors are not described (above)"))
        else:
            blocks.append(Para(ROOFLINE_TEXT))
            for run in summary["runs"]:
                if run in described:
                    png = plot_roofline(results, run, described[run],
                                        plot_path(out_dir, slug, "roofline", run))
                    blocks.append(Image(f"{results.shown_name}: {run} roofline", png.name))
        blocks.append(Para("Each run's layer timeline, coloured by the part busiest over "
                           "each layer-phase's span: where in the iteration each part "
                           "bounds it."))
        for run in summary["runs"]:
            png = plot_timeline(results, run, plot_path(out_dir, slug, "bound_timeline", run),
                                by="busiest_part")
            blocks.append(Image(f"{results.shown_name}: {run} timeline by busiest part", png.name))
    else:
        blocks.append(_not_drawn("The slowest layer-phases, rooflines and timelines by busiest "
                                 "part", _lacks("layers.csv",
                                                {"busiest_part", "busiest_share"} - columns)))
    blocks.append(Heading(3, "Layer timelines"))
    for run in summary["runs"]:
        png = plot_timeline(results, run, plot_path(out_dir, slug, "timeline", run))
        blocks.append(Image(f"{results.shown_name}: {run} timeline", png.name))
    blocks.append(Heading(3, "Energy by layer"))
    for run in summary["runs"]:
        png = plot_layer_energy(results, run,
                                plot_path(out_dir, slug, "layer_energy", run))
        blocks.append(Image(f"{results.shown_name}: {run} energy per layer", png.name))
    return blocks


def _not_drawn(what: str, why: str) -> Para:
    """Why a section is missing from the report: a folder written by an older desim lacks
    what it is drawn from, and the reader is told so, not left to miss it."""
    return Para(f"{what}: not drawn, {why}.")


def _lacks(file: str, keys: set[str]) -> str:
    return (f"{file} has no {', '.join(f'`{key}`' for key in sorted(keys))} (written by an "
            "older desim)")


def workload_text(workload: dict[str, Any]) -> str:
    """config.json's workload in a line: the model, its arguments, batch, input and data;
    or a SCALE-Sim topology's file and batch, which has no model, arguments, input or data
    to name (its line had read "`None` {}, ..., data `digits`")."""
    if workload.get("scalesim_topology"):
        text = (f"Workload: SCALE-Sim topology `{workload['scalesim_topology']}` (dense layers), "
                f"batch {workload.get('batch', '?')}")
    else:
        text = (f"Workload: `{workload.get('model', '?')}` "
                f"{json.dumps(workload.get('model_args', {}))}, batch "
                f"{workload.get('batch', '?')}, input "
                f"{workload.get('input_shape') or 'the model default'}, data "
                f"`{workload.get('data', '?')}`")
    return (text + (", trained first" if workload.get("training") else "")
            + (", inference" if workload.get("inference") else ""))


ROOFLINE_TEXT = (
    "Each run's roofline: every conv and linear layer-phase as a point, its processed MACs "
    "a cycle over its span (first fetch to last write-back) against its processed MACs per "
    "DRAM byte, under the processor's two roofs, its MACs a cycle and DRAM's bytes a cycle "
    "times that intensity; coloured by the part busiest over its span. A point well under "
    "both roofs waited on something else (the NoC, the buffer, the vector unit's phases "
    "beside it) or shares its span with its neighbours.")


MAPPINGS_TEXT = (
    "The plans the mapper chose for each run's conv and linear layer-phases (layers.csv's "
    "`partition` and `mapping`), counted: what the clusters were dealt, the operand kept "
    "in the buffer across the inner loop, and whether the reduction stayed whole in its "
    "tiles, was cut into chunks run one after the other, or was dealt across the clusters.")

# The mapping's words (`mappings.planner.mapping_text`) each column of the table counts.
MAPPING_WORDS = {"weight stationary": "weight stationary",
                 "input stationary": "input stationary", "whole": "whole reduction",
                 "in chunks": "reduction chunks", "across clusters": "reduction across"}


def _mappings_table(results: Results) -> Table:
    """`MAPPINGS_TEXT`'s counts, a row per run: its PE array's layer-phases by what their
    clusters were dealt (`partition`) and by the words of their `mapping`."""
    rows = []
    for run in results.summary["runs"]:
        layers = results.layers[(results.layers["run"] == run)
                                & (results.layers["unit"] == "pe_array")]
        mapping = layers["mapping"].fillna("").astype(str)
        rows.append([run, str(len(layers))]
                    + [str(int((layers["partition"] == p).sum())) for p in DEALT]
                    + [str(int(mapping.str.contains(words, regex=False).sum()))
                       for words in MAPPING_WORDS.values()])
    return Table(["run", "layer-phases", *(f"by {p}" for p in DEALT), *MAPPING_WORDS],
                 rows, numeric=set(range(1, 2 + len(DEALT) + len(MAPPING_WORDS))))


SLOWEST = 5  # layer-phases a run in the report's table of the slowest


def _slowest_table(results: Results) -> Table:
    """Each run's SLOWEST layer-phases by their share of its time (layers.csv's `cycles`),
    with the part busiest over each one's span and its share of the span, and the plan the
    mapper chose for it (`mapping`, where the folder has the column)."""
    planned = "mapping" in results.layers.columns
    rows = []
    for run, total in ((name, r["cycles"]) for name, r in results.summary["runs"].items()):
        layers = results.layers[(results.layers["run"] == run)  # (hidden ones take none)
                                & (results.layers["cycles"] > 0)]
        for _, row in layers.sort_values("cycles", ascending=False, kind="stable").head(
                SLOWEST).iterrows():
            mapping = row["mapping"] if planned and isinstance(row["mapping"], str) else ""
            rows.append([run, row["layer"], row["phase"], _unit_cell(row),
                         f"{row['cycles']:,}", f"{100 * row['cycles'] / total:.1f}",
                         _busiest_cell(row)] + ([mapping or "-"] if planned else []))
    return Table(["run", "layer", "phase", "unit", "cycles", "% of the run",
                  "busiest part (% of its span)"] + (["mapping"] if planned else []), rows,
                 numeric={4, 5})


def _unit_cell(row: Any) -> str:
    """"pe_array", or "pe_array, by rows" where its tiles were dealt to the clusters by rows
    (layers.csv's `partition`: "channels", the default, is not said; a folder from before
    the column has none, and pandas reads an empty cell as NaN)."""
    dealt = row.get("partition")
    if not isinstance(dealt, str) or dealt in ("", "channels"):
        return row["unit"]
    return f"{row['unit']}, by {dealt.replace('+', ' and ')}"


def _busiest_cell(row: Any) -> str:
    """"dram (98%)", or for the NoC its link too: "noc glb->r0_0 (94%)" (pandas reads an
    empty `busiest_link` as NaN)."""
    link = row.get("busiest_link")
    link = f" {link}" if isinstance(link, str) and link else ""
    return f"{row['busiest_part']}{link} ({100 * row['busiest_share']:.0f}%)"


def _runs_table(results: Results) -> Table:
    summary = results.summary
    pruning = {r["name"]: r.get("pruning", {}) for r in results.experiment.get("runs", [])}
    base = summary["runs"][summary["baseline"]]
    header = ["run", "arch", "pruning", "cycles", "time (ms)", "energy (mJ)", "on-chip (mJ)",
              "speedup", "energy ratio", "on-chip ratio", "vector layers (% time)",
              "sparsity W / X / dY", "busiest (% of the time)"]
    rows = []
    for name, run in summary["runs"].items():
        p = pruning.get(name, {})
        method = p.get("method", "?") + (f" {p['sparsity']:g}" if p.get("sparsity") else "")
        w = run.get("workload", {})
        sparsity = " / ".join("-" if w.get(k) is None else f"{w[k]:.2f}" for k in  # dY: none
                              ("weight_sparsity", "activation_sparsity", "gradient_sparsity"))
        comp = summary["comparison"][name]
        rows.append([name, run["arch"], method, f"{run['cycles']:,}",
                     fmt(run["seconds"] * 1e3), fmt(run["energy_j"] * 1e3),
                     fmt(on_chip_energy_j(run) * 1e3), f"{comp['speedup']:.2f}",
                     f"{comp['energy_ratio']:.2f}", f"{on_chip_energy_ratio(base, run):.2f}",
                     _vector_share(run), sparsity, busy_text(run, parts=3)])
    return Table(header, rows, numeric=set(range(3, 11)))


def described_processors(results: Results) -> dict[str, dict[str, Any]] | str:
    """Each run's processor as `desim check` describes it (`desim.elaborate.describe`),
    elaborated from the resolved configuration in config.json; or why it cannot be (a
    folder written by another version of desim, whose design this one refuses)."""
    from arch.config import ArchConfig
    from desim.elaborate import describe

    archs = results.config.get("architectures", {})
    try:
        return {run: describe(run, validate(ArchConfig, archs[run], results.path
                                            / "config.json", f"architectures.{run}"))
                for run in results.summary["runs"] if run in archs}
    except ConfigError as err:
        return str(err)


def _processors_table(results: Results, described: dict[str, dict[str, Any]] | str
                      ) -> Table | Para:
    """What each run's processor is (`described_processors`), so the reader sees the
    resources compared, then the architecture keys that differ between the runs."""
    from desim.elaborate import DESCRIBED, cell

    if isinstance(described, str):
        return Para(f"Processors not shown: {described}")
    archs = results.config.get("architectures", {})
    rows = [[title] + [cell(d[key]) for d in described.values()]
            for key, title in DESCRIBED.items()]
    rows += arch_differences({run: archs[run] for run in described})
    return Table(["processor", *described], rows, numeric=set(range(1, len(described) + 1)))


def arch_differences(archs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per architecture key (dotted, as config.json gives it) whose value differs
    between the runs, its values in the runs' order: what tells the designs apart beyond
    the description (the dataflow, a fused BN unit, load balancing, the formats). The
    design's name and the keys the description shows (`desim.elaborate.DESCRIBED_KEYS`)
    are left out."""
    from desim.elaborate import DESCRIBED_KEYS

    return config_differences(archs, leave_out={"name", *DESCRIBED_KEYS})


def config_differences(sections: dict[str, dict[str, Any]], leave_out: set[str] | None = None
                       ) -> list[list[str]]:
    """One row per dotted key whose value differs between configuration sections (config.json's
    experiment, or an architecture), its values in the sections' order; a section that
    lacks the key (or has it null) reads "-". `leave_out`: keys not compared."""
    flat = [_flatten(section) for section in sections.values()]
    keys = list(dict.fromkeys(k for f in flat for k in f if k not in (leave_out or set())))
    rows = []
    for key in keys:
        values = [f.get(key) for f in flat]
        if any(v != values[0] for v in values):
            rows.append([f"`{key}`", *("-" if v is None else _value_text(v) for v in values)])
    return rows


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested section as dotted keys to values, null values and empty lists left out (a
    list of no sections, `claims: []`, had read "[]" against the other's "-" beside its
    claims' own rows); a list of sections (an experiment's runs) by index, as `--set
    runs.1.pruning.sparsity` names them, and a list of plain values (a mesh's shape) as one
    value."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if value == []:
            continue
        if isinstance(value, list) and any(isinstance(item, dict) for item in value):
            value = {str(i): item for i, item in enumerate(value)}
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif value is not None:
            out[prefix + key] = value
    return out


def _value_text(value: Any) -> str:
    """A configuration value as its YAML would read, exactly: true, [1, 2], 4096, 0.70001,
    auto. A difference is shown by its values, so none is rounded: through the tables' 4
    significant digits 0.70001 against 0.7 had read 0.7 twice, and 126.04 as 126."""
    return value if isinstance(value, str) else json.dumps(value)


def _vector_share(run: dict[str, Any]) -> str:
    share = vector_share(run)
    return "-" if share is None else f"{100 * share:.0f}"


GAINS_TEXT = (
    "Each run against the baseline, part by part (`desim.gains`): its energy by component, "
    "and its time by the part that bound it (each layer-phase's time goes to the part "
    "busiest over its span, `time_by_busiest_part`). \"Shrinks\" is the baseline's "
    "amount over the run's; \"% of the saving\" the part's own saving over the size of "
    "the total's (negative where the part grew; the parts add up to 100, or to -100 where "
    "the run spends more than the baseline); \"if free\" the total ratio were that part "
    "to cost nothing in the run: a part that shrinks little and holds a large share of "
    "the run caps the ratio, however much the rest shrinks. It is accounting, not a second "
    "simulation: with a part free the mapper would choose other tiles, and another part "
    "would bind.")


def gain_blocks(base: str, base_run: dict[str, Any], name: str, run: dict[str, Any]
                ) -> list[Block]:
    """Run `name` against `base` (summary.json entries; `desim.gains`): a line of its
    ratios, its energy by component (the ratio if free with DRAM and, where DRAM is there,
    on chip) and its time by binding part (when both runs have `time_by_busiest_part`)."""
    from desim.gains import TOTAL, energy_gains, time_gains

    energy = energy_gains(base_run, run)
    on_chip = energy_gains(base_run, run, on_chip=True)
    time = (time_gains(base_run, run) if "time_by_busiest_part" in run
            and "time_by_busiest_part" in base_run else None)
    said = [f"`{name}` against `{base}`: energy "
            f"{more_or_less(energy.loc[TOTAL, 'shrink'], 'less', 'more')}, "
            f"{more_or_less(on_chip.loc[TOTAL, 'shrink'], 'less', 'more')} on chip"]
    if time is not None:  # "the same (1.00x)" alone had named nothing
        speedup = time.loc[TOTAL, "shrink"]
        said.append(("time " if the_same(speedup) else "")
                    + more_or_less(speedup, "faster", "slower"))
    blocks: list[Block] = [Para(", ".join(said) + ".")]
    chip = OFF_CHIP in energy.index
    rows = [_gain_cells(part, row, 1e3) + (
        [times(on_chip.loc[part, "ratio_if_free"]) if part in on_chip.index else "-"]
        if chip else []) for part, row in energy.iterrows()]
    blocks.append(Table(["component", f"{base} (mJ)", f"{name} (mJ)", "shrinks",
                         f"% of {name}", "% of the saving", "ratio if free"]
                        + (["on chip, if free"] if chip else []), rows,
                        numeric=set(range(1, 8 if chip else 7))))
    if time is not None:
        rows = [_gain_cells(part, row, 1e3) for part, row in time.iterrows()]
        blocks.append(Table(["time bound by", f"{base} (ms)", f"{name} (ms)",
                             "shrinks", f"% of {name}", "% of the saving", "speedup if free"],
                            rows, numeric=set(range(1, 7))))
    else:
        older = [label for label, r in ((base, base_run), (name, run))
                 if "time_by_busiest_part" not in r]
        blocks.append(_not_drawn("Its time by binding part", f"summary.json has no "
                                 f"`time_by_busiest_part` for {' and '.join(older)} (written "
                                 "by an older desim)"))
    return blocks


def _gain_cells(part: str, row: Any, scale: float) -> list[str]:
    """A `desim.gains` row as report cells: amounts times `scale`, shares in percent, a part
    the baseline lacks "new", one the run lacks "gone"."""
    shrink = ("new" if not row["baseline"] else "gone" if not row["run"]
              else times(row["shrink"]))
    saving = row["share_of_saving"]
    return [part, fmt(row["baseline"] * scale), fmt(row["run"] * scale), shrink,
            f"{100 * row['share_of_run']:.1f}",
            "-" if math.isnan(saving) else f"{round(100 * saving, 1) + 0.0:.1f}",  # no -0.0
            "-" if math.isnan(row["ratio_if_free"]) else times(row["ratio_if_free"])]


def _energy_table(results: Results) -> Table:
    runs = results.summary["runs"]
    components = sorted({c for r in runs.values() for c in r["energy_by_component_j"]})
    rows = [[comp] + [fmt(r["energy_by_component_j"].get(comp, 0.0) * 1e3)
                      for r in runs.values()] for comp in components]
    rows.append(["total"] + [fmt(r["energy_j"] * 1e3) for r in runs.values()])
    return Table(["component (mJ)", *runs], rows, numeric=set(range(1, len(runs) + 1)))


def _prices_table(results: Results) -> Table:
    """The price of each action every run used (pJ): the energy tables' at its node, or its
    arch file's own (`energy:`); a dash where the design lacks the component."""
    runs = results.summary["runs"]
    prices = {r: run.get("energy_prices_pj", {}) for r, run in runs.items()}
    names = list(dict.fromkeys(k for p in prices.values() for k in p))
    rows = [[f"`{name}`"] + [f"{p[name]:.4g}" if name in p else "-" for p in prices.values()]
            for name in names]
    return Table(["price (pJ)", *runs], rows, numeric=set(range(1, len(runs) + 1)))


def build_report(dirs: Sequence[str | Path], out: Path) -> tuple[Path, Path, list[Results]]:
    """Write `out` (Markdown), the same content as HTML beside it, and the plots; return the
    two paths and the results read (with their claim checks). `dirs` as given: a folder
    named twice is refused quoting both (`./r/` and `r` had read "as r and r")."""
    if out.suffix.lower() != ".md":  # Markdown in a file named .pdf or .html misleads
        raise ConfigError(f"--out {out}: the report is Markdown (with an HTML copy beside "
                          "it); name it FILE.md")
    seen: dict[Path, str | Path] = {}
    for d in dirs:  # the same folder twice: its claims counted twice
        folder = Path(d).resolve()
        if folder in seen:
            raise ConfigError(f"given twice (as {seen[folder]} and {d}); expected each "
                              "results folder once", file=str(d))
        seen[folder] = d
    all_results = [load_results(Path(d)) for d in dirs]  # a folder that is none: said first
    out_dir = writable_file(out).parent
    writable_file(out.with_suffix(".html"))
    names = [r.name for r in all_results]
    for results in all_results:  # two folders of one experiment (a what-if): told apart
        if names.count(results.name) > 1:
            results.label = f"{results.name} ({results.path})"
    blocks: list[Block] = [Heading(1, "desim report")]
    blocks.append(Para("Paper figures against desim's, for every claim of the experiments "
                       "below; then each experiment's assumptions, runs, energy and timelines. "
                       "Tolerances and the reasons for any known gap are stated in the "
                       "experiment files and in docs/PAPERS.md."))
    rows = [row for r in all_results for row in _claim_rows(r)]
    blocks.append(Para(_tally([c for r in all_results for c in r.checks],
                              "these experiment files")))
    if rows:
        blocks.append(Table(CLAIM_HEADER, rows, numeric={2, 3}, status=5))
    html_path = out.with_suffix(".html")
    # The plots are drawn in a hidden folder and moved into place with the report: one
    # stopped while drawing (seconds) leaves the earlier report and its plots whole.
    staged = out_dir / f".{out.name}.plots.tmp"
    shutil.rmtree(staged, ignore_errors=True)  # (what a killed report left)
    staged.mkdir()
    try:
        taken: set[str] = set()
        for results in all_results:
            # the plots take the report's name first: two reports in one folder keep theirs
            slug = _plot_slug(out.stem, results.name, list(results.summary["runs"]), taken,
                              out_dir)
            blocks += _experiment_blocks(results, slug, staged)
        html = to_html(blocks, "desim report: " + ", ".join(r.shown_name for r in all_results))
        stale = earlier_plots(out) - {plot.name for plot in staged.iterdir()}
        for earlier in (out, html_path):  # stopped while the plots move: no report beside
            earlier.unlink(missing_ok=True)  # plots it did not draw
        for name in sorted(stale):  # the earlier report's, which this one does not draw
            (out_dir / name).unlink(missing_ok=True)
        for plot in sorted(staged.iterdir()):
            os.replace(plot, out_dir / plot.name)
        write_atomic(html_path, html)
        write_atomic(out, to_markdown(blocks))  # the report last: it names the plots and HTML
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out, html_path, all_results


IMAGE_LINE = re.compile(r"^!\[.*\]\((?:<(.+)>|(\S+))\)$", re.M)  # as `to_markdown` writes


def earlier_plots(out: Path) -> set[str]:
    """The plots the earlier report at `out` shows, where it is desim's (its Markdown opens
    "# desim report"): the names of its images that are files beside it of the report's own
    naming (`report_files`). Those it does not draw again are removed as it is written; they
    had stayed, shown by no report (r_custom_model_* beside a report of another experiment).
    A file no report of that name shows, or of another name, is left alone."""
    try:
        text = out.read_text(errors="replace")
    except OSError:
        return set()
    if not text.startswith("# desim report\n"):
        return set()
    patterns = report_files(out.stem)[2:]  # its plots' patterns, not the report's own names
    links = [quoted or bare for quoted, bare in IMAGE_LINE.findall(text)]
    # percent-encoded as `to_markdown` writes them; an older desim wrote them as they are
    names = {unquote(link) for link in links} | set(links)
    return {name for name in names if "/" not in name and (out.parent / name).is_file()
            and any(fnmatchcase(name, pattern) for pattern in patterns)}


def _plot_slug(stem: str, name: str, runs: list[str], taken: set[str], out_dir: Path) -> str:
    """The prefix of an experiment's plot files (`plot_path`: it, the run's name if the plot
    is one run's, then the kind): the report's `stem`, then the experiment's `name` made
    safe for a file name, numbered where a plot of it would take the name of one in `taken`
    (an earlier experiment's; it adds its own) or of a folder in `out_dir`. Two folders of
    one experiment, and an experiment named as another's "<name>_2", had their plots
    overwrite each other's, each section showing the other's; a folder of a plot's name
    failed the plot's write with a traceback."""
    base = f"{stem}_{re.sub(r'[^A-Za-z0-9_-]+', '_', name)[:64] or 'experiment'}"
    for n in itertools.count(1):  # (the names taken, and folders, are finitely many)
        slug = base if n == 1 else f"{base}_{n}"
        names = {plot_path(Path(), slug, kind, run).name
                 for run in (None, *runs) for kind in PLOT_KINDS}
        if not names & taken and not any((out_dir / name).is_dir() for name in names):
            taken |= names
            return slug
    raise AssertionError("unreachable")


def register(app: typer.Typer) -> None:
    """Add the `report` command to the `desim` command line."""

    @app.command("report")
    def report(
        dirs: Annotated[list[str], typer.Argument(help="results folders (desim run --out DIR)",
                                                  parser=path_text_given)],
        out: Annotated[Path | None, typer.Option(
            "--out", "-o", help="FILE.md; FILE.html and the plots go beside it "
                                "(default: FIRST_DIR/report.md, removed when desim run writes "
                                "that folder again)", parser=path_given)] = None,
        check: Annotated[bool, typer.Option(
            "--check", help="exit 1 when a claim is not where its experiment file expects "
                            "it (or its metric is missing)")] = False,
    ) -> None:
        """Write a Markdown and HTML report of results folders: claims vs paper, energy, time."""
        from rich.markup import escape

        from desim.console import console as make_console

        # folder names and messages are printed as they are, never read as rich markup
        console = make_console()
        md, page, all_results = guarded(
            lambda: build_report(dirs, out or Path(dirs[0]) / DEFAULT_REPORT))
        surprises = 0
        for results in all_results:
            for c in results.checks:
                surprises += not c.as_expected
                console.print(escape(f"{results.shown_name}: {c.title} paper "
                                     f"{c.paper_text} desim {c.value_text} "
                                     f"({c.range_text}): {results.verdict(c)}"),
                              highlight=False, soft_wrap=True)
        console.print(escape(f"wrote {md} and {page} (plots beside them)"), highlight=False,
                      soft_wrap=True)
        if check and surprises:
            raise typer.Exit(1)
