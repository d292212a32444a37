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
  layers.csv) and its energy per layer and component (from energy.csv, where the folder
  has one).

Markdown and HTML carry the same content: both are rendered from one list of blocks. The
HTML is a minimal template, no dependency beyond the standard library. Plots are PNG files
written next to the report.

Claims may name, besides any number in summary.json, these derived metrics:
- `runs.<run>.on_chip_energy_j`: the run's energy without the DRAM's share (a synthesized
  processor's power figures, and so its TFLOPS/W, cover the chip only);
- `comparison.<run>.on_chip_energy_ratio`: baseline on-chip energy / the run's;
- `runs.<run>.tflops_per_w`: 2 x nominal MACs / energy / 1e12 (dense-equivalent FLOPs per
  joule, the convention of the papers' TFLOPS/W figures);
- `runs.<run>.on_chip_tflops_per_w`: the same over the on-chip energy (a chip's peak figure).
"""

from __future__ import annotations

import html
import json
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel, Field, model_validator

from desim.configio import validate
from desim.errors import ConfigError, guarded
from desim.experiment import Claim
from desim.metrics import DERIVED_RUN, OFF_CHIP, on_chip_energy_j, on_chip_energy_ratio
from desim.results import (
    DEFAULT_REPORT,
    atomic_path,
    plot_path,
    writable_file,
    write_atomic,
)

if TYPE_CHECKING:
    import pandas as pd

PHASE_COLORS = {"FF": "#4c72b0", "BP": "#dd8452", "WG": "#55a868"}
# Each energy component one colour in every plot of a report, whichever components a plot
# shows: those desim's processors report (arch/accelerator.py) the ten of matplotlib's
# tab10, in this order; any other a light tab20 colour picked by its name.
COMPONENT_COLORS = dict(zip(
    ("macs", "vector_unit", "local_buffers", "global_buffer", "noc", "dram", "selector",
     "speculator", "index_matching", "weight_generator"),
    ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
     "#bcbd22", "#17becf"), strict=True))
OTHER_COLORS = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
                "#c7c7c7", "#dbdb8d", "#9edae5")


def component_color(name: str) -> str:
    """The colour of energy component `name` in every plot (deterministic, see above)."""
    return COMPONENT_COLORS.get(name) or OTHER_COLORS[zlib.crc32(name.encode()) % 10]


def part_color(part: str) -> str:
    """The colour of a processor's part (summary.json's `utilization` names): its energy
    component's, the PE array's that of its MACs, the global buffer's its own."""
    return component_color({"pe_array": "macs", "glb": "global_buffer"}.get(part, part))


# -- claims ---------------------------------------------------------------------------------


def resolve(summary: dict[str, Any], path: str) -> float:
    """The number at dotted `path` of a summary.json, or a derived metric (module doc).

    Raises KeyError naming the path when there is no such number.
    """
    node: Any = summary
    try:
        for part in path.split("."):
            node = node[part]
        return float(node)
    except (KeyError, TypeError, ValueError):
        pass
    parts = path.split(".")
    if len(parts) == 3 and parts[1] in summary.get("runs", {}):
        group, run, name = parts
        if group == "runs" and name in DERIVED_RUN:
            return DERIVED_RUN[name](summary["runs"][run])
        if group == "comparison" and name == "on_chip_energy_ratio":
            base = summary["runs"][summary["baseline"]]
            return on_chip_energy_ratio(base, summary["runs"][run])
    raise KeyError(f"no metric {path!r} in summary.json (nor a derived one)")


@dataclass
class ClaimCheck:
    """One claim against one results folder."""

    claim: Claim
    value: float | None       # None: the metric is missing from the results
    error: str = ""
    parts: list[float] = field(default_factory=list)  # the values a list claim averages
    # a ratio claim's metric and over (accuracies 0.908 and 0.918 of a ratio 0.989), one
    # pair for each ratio a list claim averages
    operands: list[tuple[float, float]] = field(default_factory=list)

    @property
    def low(self) -> float:
        return -math.inf if self.claim.compare == "at_most" else (
            self.claim.paper - self.claim.tolerance)

    @property
    def high(self) -> float:
        return math.inf if self.claim.compare == "at_least" else (
            self.claim.paper + self.claim.tolerance)

    @property
    def within(self) -> bool | None:
        if self.value is None:
            return None
        return self.low <= self.value <= self.high

    @property
    def as_expected(self) -> bool:
        """True when the value lies where the experiment file says it should."""
        return self.within is not None and self.within == (self.claim.expect == "within")

    @property
    def verdict(self) -> str:
        if self.within is None:
            return "MISSING"
        if self.within:
            return "within" if self.as_expected else "within (file expects a gap: update it)"
        return "outside (known gap)" if self.as_expected else "OUTSIDE (unexpected)"

    @property
    def paper_text(self) -> str:
        """The paper's figure as the experiment file gives it, never rounded (126.04, not
        126); a whole number without its ".0"."""
        text = repr(float(self.claim.paper))
        return text.removesuffix(".0")

    @property
    def range_text(self) -> str:
        """The accepted range, to `RANGE_DIGITS` (173.28 +- 34.66: 138.62 to 207.94)."""
        c = self.claim
        low, high = _fmt(self.low, RANGE_DIGITS), _fmt(self.high, RANGE_DIGITS)
        if c.compare == "at_least":
            return f">= {low}"
        if c.compare == "at_most":
            return f"<= {high}"
        return f"{low} to {high}"

    @property
    def value_text(self) -> str:
        """The value, with a ratio's two figures or the values it averages in brackets (each
        ratio's figures too: "1.007 (0.9 / 0.8 = 1.125, 0.8 / 0.9 = 0.8889)"); with as many
        more digits as it takes not to read as the bound it lies beyond (1.2197 against
        1.22, not 1.22)."""
        digits = 4
        if self.value is not None and self.within is False:
            while digits < 8 and _fmt(self.value, digits) in (_fmt(self.low, RANGE_DIGITS),
                                                              _fmt(self.high, RANGE_DIGITS)):
                digits += 1
        value = _fmt(self.value, digits)
        shown = [f"{_fmt(metric)} / {_fmt(over)}" for metric, over in self.operands]
        if self.parts and shown:  # a mean of ratios: each with its figures
            shown = [f"{ratio} = {_fmt(p)}" for ratio, p in zip(shown, self.parts, strict=True)]
        elif self.parts:  # a mean of metrics
            shown = [_fmt(p) for p in self.parts]
        return f"{value} ({', '.join(shown)})" if shown else value

    @property
    def metric_text(self) -> str:
        text = [m + (f" / {o}" if o else "") for m, o in self.claim.ratios()]
        return text[0] if isinstance(self.claim.metric, str) else f"mean of ({', '.join(text)})"

    @property
    def title(self) -> str:
        """The claim in words when its file gives a label, else its metric path."""
        return self.claim.label or self.metric_text


def check_claim(summary: dict[str, Any], claim: Claim) -> ClaimCheck:
    """The claim's value from a summary (metric, or metric / over, or the mean of a list of
    those) and where it lies; each ratio keeps its two figures."""
    try:
        pairs = [(resolve(summary, metric), resolve(summary, over) if over else 1.0)
                 for metric, over in claim.ratios()]
        values = [a / b for a, b in pairs]
    except (KeyError, ZeroDivisionError) as err:
        return ClaimCheck(claim, None, str(err).strip("'\""))
    operands = pairs if claim.over else []
    if isinstance(claim.metric, list):
        return ClaimCheck(claim, sum(values) / len(values), parts=values, operands=operands)
    return ClaimCheck(claim, values[0], operands=operands)


# -- results folders --------------------------------------------------------------------------


@dataclass
class Results:
    """What one results folder holds, read back."""

    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    layers: pd.DataFrame
    checks: list[ClaimCheck] = field(default_factory=list)
    energy: pd.DataFrame | None = None  # energy.csv (folders written before it: None)

    @property
    def experiment(self) -> dict[str, Any]:
        return self.config.get("experiment", {})

    @property
    def name(self) -> str:
        return str(self.summary.get("experiment", self.path.name))

    @property
    def overrides(self) -> list[str]:
        """The `--set` items the run applied over its experiment file (folders written
        before config.json recorded them: none known)."""
        return [str(item) for item in self.config.get("overrides", [])]

    def verdict(self, check: ClaimCheck) -> str:
        """The claim's verdict; a surprise of a run made with --set says the run was not
        the experiment file's (`observe.*`, --trace and --vcd, changes no figure)."""
        if check.as_expected or all(o.startswith("observe.") for o in self.overrides):
            return check.verdict
        return f"{check.verdict}; the run deviated from its file (--set)"


def load_results(path: Path) -> Results:
    """Read summary.json, config.json, layers.csv and (where there is one) energy.csv of a
    results folder; check its claims."""
    summary, config = read_summary_and_config(path)
    layers = _read_table(path, "layers.csv", LAYER_COLUMNS, "not a results folder: ")
    energy = (_read_table(path, "energy.csv", ENERGY_COLUMNS)
              if (path / "energy.csv").exists() else None)  # none before desim wrote it
    _check_tables_add_up(path, summary, layers, energy)
    results = Results(path, summary, config, layers, energy=energy)
    claims = [validate(Claim, c, path / "config.json", f"experiment.claims.{i}")
              for i, c in enumerate(results.experiment.get("claims", []))]
    results.checks = [check_claim(results.summary, c) for c in claims]
    return results


def _check_tables_add_up(path: Path, summary: dict[str, Any], layers: pd.DataFrame,
                         energy: pd.DataFrame | None) -> None:
    """Each run's rows of layers.csv add up to its cycles in summary.json, and of energy.csv
    to its joules, as `desim run` writes them: a file cut short (a copy stopped midway) or
    from another folder read as it was, and the report's tables and timelines showed part
    of a run without a word."""
    import pandas as pd

    again = "the file is cut short or from another folder; write the folder again (desim run)"
    tables = [("layers.csv", layers, "cycles"), ("energy.csv", energy, "energy_j")]
    for name, table, column in tables:
        if table is None or column not in table.columns:  # no energy.csv (older folders)
            continue
        strays = sorted(set(table["run"].astype(str)) - set(summary["runs"]))
        if strays:
            raise ConfigError(f"{name} has rows of run(s) {', '.join(map(repr, strays))} that "
                              f"summary.json does not have (runs: {', '.join(summary['runs'])}"
                              f"): {again}", file=str(path))
        for run, figures in summary["runs"].items():
            rows = pd.to_numeric(table.loc[table["run"] == run, column], errors="coerce")
            if rows.isna().any():
                raise ConfigError(f"{name}: a row of run {run!r} has no {column}: {again}",
                                  file=str(path))
            total, expected = float(rows.sum()), float(figures[column])
            if not math.isclose(total, expected, rel_tol=1e-9):
                raise ConfigError(f"{name}: the rows of run {run!r} add up to {total:,.8g} "
                                  f"{column}, but summary.json has {expected:,.8g}: {again}",
                                  file=str(path))


def _read_json(path: Path, name: str) -> Any:
    """A JSON file of a results folder as it is; one missing or not JSON is bad input
    naming the folder and the file."""
    try:
        return json.loads((path / name).read_text())
    except (OSError, ValueError) as err:
        sweep = (path / "sweep.json").is_file()  # `desim sweep --out`: no run's folder
        raise ConfigError(f"not a results folder: cannot read {name} ({err})" + (
            "; this is a sweep's folder: its results are results.parquet (one row per "
            "point, run and phase), and `desim run --set` of a point's values writes a "
            "folder to report" if sweep else ""), file=str(path)) from None


def read_summary_and_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """summary.json and config.json of a results folder, checked as the report and `desim
    topology --stats` read them (`SummaryRead`, `ConfigRead`): a damaged one is bad input
    naming the file and the key. Returned as they are (the parts not read pass unchecked)."""
    summary, config = _read_json(path, "summary.json"), _read_json(path, "config.json")
    validate(SummaryRead, summary, path / "summary.json")
    validate(ConfigRead, config, path / "config.json")
    return summary, config


def read_run_stats(path: Path, run: str) -> dict[str, Any]:
    """Run `run`'s entry of a results folder's stats.json, checked as `desim topology
    --stats` reads it (`RunStatsRead`): its modules and their utilization."""
    stats = _read_json(path, "stats.json")
    if not isinstance(stats, dict):
        raise ConfigError(f"expected a mapping of runs, got {type(stats).__name__}",
                          file=str(path / "stats.json"))
    if run not in stats:
        raise ConfigError(f"no run {run!r}; runs: {', '.join(stats)}", file=str(path))
    validate(RunStatsRead, stats[run], path / "stats.json", prefix=run)
    return stats[run]


def graph_utilization(graph: Any, modules: dict[str, Any], run: str) -> dict[str, Any]:
    """How busy each link and node of a processor's graph was in run `run`, from its
    stats.json `modules`, as `arch.draw.draw_topology` colours them: a link, the NoC
    link's share; a cluster, the PE array's; the global buffer, DRAM, the selector, their
    own (a router does no timed work of its own: its links do). A NoC link that no
    transfer took was 0% busy: the simulator makes a link's module on its first use
    (`arch.noc.Noc._link`), so stats.json has none for it. A link that is no NoC link
    (DRAM's port: DRAM's own share is its node's; the global buffer's to its selector)
    has no figure: drawn grey. Every NoC link has a router at one end (between routers, or
    a cluster's or the global buffer's port to its router); no other link has one. A node
    that serves several transactions at once (the global buffer's two ports): the mean of
    its ports' shares, as in summary.json (`desim.stats.busy_share`)."""
    from desim.stats import busy_share

    links = {}
    for u, v in graph.edges:
        entry = modules.get(f"{run}.noc.{u}->{v}")
        if entry is not None:
            links[f"{u}->{v}"] = entry.get("utilization", 0.0)
        elif "router" in (graph.nodes[u]["kind"], graph.nodes[v]["kind"]):
            links[f"{u}->{v}"] = 0.0  # idle the whole run
    nodes = {}
    for node, data in graph.nodes(data=True):
        module = {"pe_cluster": "pe_array"}.get(data["kind"], node)
        entry = modules.get(f"{run}.{module}")
        if entry is not None and "utilization" in entry and data["kind"] != "router":
            nodes[node] = min(1.0, busy_share(entry))
    return {"nodes": nodes, "links": links}


class WorkloadRead(BaseModel):
    """What the report reads of a run's workload in summary.json: the sparsities of its
    runs table (a hand edit to a string or null failed formatting them, with a traceback)."""

    weight_sparsity: float | None = None
    activation_sparsity: float | None = None
    gradient_sparsity: float | None = None


class RunRead(BaseModel):
    """What the report reads of a run in summary.json (the rest passes unchecked)."""

    arch: str
    cycles: int
    seconds: float
    energy_j: float
    energy_by_component_j: dict[str, float]
    units: dict[str, dict[str, float]]
    workload: WorkloadRead = WorkloadRead()
    energy_prices_pj: dict[str, float] = {}
    utilization: dict[str, float] = {}  # none in a summary written before 2026-12-05
    busiest_parts: dict[str, str] = {}
    time_by_busiest_part: dict[str, float] = {}  # none before 2026-12-05's second session


class ComparisonRead(BaseModel):
    """What the report reads of a run's comparison with the baseline in summary.json."""

    speedup: float
    energy_ratio: float


class PruningRead(BaseModel):
    method: str = "?"
    sparsity: float | None = None


class RunConfigRead(BaseModel):
    name: str
    pruning: PruningRead = PruningRead()


class ExperimentRead(BaseModel):
    """What the report reads of config.json's experiment (its runs' pruning, the workload
    of its assumptions): the rest passes unchecked."""

    runs: list[RunConfigRead] = []
    workload: dict[str, Any] = {}
    notes: list[str] = []
    claims: list[Any] = []  # each then validated as a Claim


class ModuleStatsRead(BaseModel):
    """What `desim topology --stats` reads of a module in stats.json."""

    utilization: float = 0.0
    concurrency: int = Field(1, ge=1)


class RunStatsRead(BaseModel):
    modules: dict[str, ModuleStatsRead]


class ConfigRead(BaseModel):
    experiment: ExperimentRead = ExperimentRead()
    overrides: list[str] = []  # the run's --set items (none before 2026-12-04)
    architectures: dict[str, dict[str, Any] | None] = {}  # each run's resolved design


class SummaryRead(BaseModel):
    """What the report reads of summary.json: a folder another program wrote, or an older
    desim, or a hand edit fails here with the key, not in the middle of a table."""

    experiment: str
    baseline: str
    runs: dict[str, RunRead]
    comparison: dict[str, ComparisonRead]

    @model_validator(mode="after")
    def _baseline_is_a_run(self) -> SummaryRead:
        if self.baseline not in self.runs or set(self.comparison) != set(self.runs):
            raise ValueError(f"baseline: {self.baseline!r} and comparison must name the runs "
                             f"{list(self.runs)}")
        return self


LAYER_COLUMNS = {"run", "layer", "phase", "start_cycle", "end_cycle"}
ENERGY_COLUMNS = {"run", "layer", "phase", "component", "energy_j"}


def _read_table(path: Path, name: str, columns: set[str], fault: str = "") -> pd.DataFrame:
    """A CSV of a results folder with the columns the report reads; anything else is bad
    input naming the folder, the file and what it lacks (`fault` leads the message)."""
    import pandas as pd  # here, not at the top: the CLI starts without pandas

    try:
        table = pd.read_csv(path / name, dtype={"run": str, "arch": str, "layer": str})
    except (OSError, ValueError) as err:
        raise ConfigError(f"{fault}cannot read {name} ({err})", file=str(path)) from None
    if "run" not in table.columns and "arch" in table.columns:
        table = table.rename(columns={"arch": "run"})  # written before 2026-12-03: run names
    missing = columns - set(table.columns)
    if missing:
        raise ConfigError(f"{fault}{name} lacks {', '.join(sorted(missing))}", file=str(path))
    return table


# -- plots ------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_energy(results: Results, path: Path) -> Path:
    """Stacked bars: each run's energy (mJ), one segment per component."""
    plt = _pyplot()
    runs = results.summary["runs"]
    components = sorted({c for r in runs.values() for c in r["energy_by_component_j"]})
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(runs) + 2.5), 4.0))
    _stacked_bars(ax, list(runs), {
        comp: [r["energy_by_component_j"].get(comp, 0.0) * 1e3 for r in runs.values()]
        for comp in components})
    ax.set_ylabel("energy (mJ)")
    ax.set_title(f"{results.name}: energy per component")
    return _save(fig, path)


def _stacked_bars(ax: Any, names: list[str], segments: dict[str, list[float]],
                  horizontal: bool = False, color: Callable[[str], str] = component_color
                  ) -> None:
    """One bar per name, one segment per energy component (or part) of `segments`, in its
    colour (`component_color`, or `part_color`), a legend beside."""
    base = [0.0] * len(names)
    for label, values in segments.items():
        if horizontal:
            ax.barh(range(len(names)), values, left=base, height=0.8, label=label,
                    color=color(label))
        else:
            ax.bar(names, values, bottom=base, label=label, color=color(label))
        base = [b + v for b, v in zip(base, values, strict=True)]
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _save(fig: Any, path: Path) -> Path:
    """Write the figure as PNG atomically (a reader never sees half a plot)."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    _pyplot().close(fig)
    return path


def plot_time_by_busiest_part(results: Results, path: Path) -> Path | None:
    """Stacked bars: each run's time (ms), one segment per part, the time of the layer-phases
    whose busiest part it is (`time_by_busiest_part`); None when no run has the figures (a
    summary written before them)."""
    runs = {name: run for name, run in results.summary["runs"].items()
            if run.get("time_by_busiest_part")}
    if not runs:
        return None
    plt = _pyplot()
    parts = sorted({part for run in runs.values()  # parts never the busiest: no segment
                    for part, share in run["time_by_busiest_part"].items() if share})
    fig, ax = plt.subplots(figsize=(9.0, max(2.0, 0.5 * len(runs) + 1.2)))
    _stacked_bars(ax, list(runs), {
        part: [run["time_by_busiest_part"].get(part, 0.0) * run["seconds"] * 1e3
               for run in runs.values()] for part in parts}, horizontal=True, color=part_color)
    ax.set_yticks(range(len(runs)), list(runs))
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_title(f"{results.name}: time by each layer-phase's busiest part")
    return _save(fig, path)


def plot_timeline(results: Results, run: str, path: Path, by: str = "phase") -> Path:
    """Horizontal bars: when each layer-phase of `run` ran (cycles), coloured by its phase
    (`by="phase"`) or by the part busiest over its span (`by="busiest_part"`: where in the
    iteration each part bounds it)."""
    plt = _pyplot()
    rows = results.layers[results.layers["run"] == run]
    names = list(dict.fromkeys(rows["layer"]))  # first appearance: forward order
    y = {name: i for i, name in enumerate(names)}
    fig, ax = plt.subplots(figsize=(9.0, max(3.0, 0.16 * len(names) + 1.2)))
    colors = PHASE_COLORS if by == "phase" else {
        part: part_color(part) for part in sorted(set(rows[by].dropna()) - {""})}
    for label, color in colors.items():
        part = rows[rows[by] == label]
        if len(part):
            ax.barh([y[n] for n in part["layer"]], part["end_cycle"] - part["start_cycle"],
                    left=part["start_cycle"], height=0.8, color=color, label=label)
    ax.set_yticks(range(len(names)), names, fontsize=max(4, min(8, 400 // max(len(names), 1))))
    ax.invert_yaxis()
    ax.set_xlabel("cycle")
    ax.set_title(f"{results.name}: {run}, layer timeline"
                 + (", coloured by the busiest part" if by != "phase" else ""))
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


ROOFLINE_TEXT = (
    "Each run's roofline: every conv and linear layer-phase as a point, its processed MACs "
    "a cycle over its span (first fetch to last write-back) against its processed MACs per "
    "DRAM byte, under the processor's two roofs, its MACs a cycle and DRAM's bytes a cycle "
    "times that intensity; coloured by the part busiest over its span. A point well under "
    "both roofs waited on something else (the NoC, the buffer, the vector unit's phases "
    "beside it) or shares its span with its neighbours.")


def roofline_points(layers: pd.DataFrame, run: str) -> tuple[pd.DataFrame, pd.Series,
                                                              pd.Series]:
    """`run`'s conv and linear layer-phases that move DRAM bytes and do MACs (layers.csv's
    rows), their processed MACs per DRAM byte and their processed MACs a cycle over their
    span."""
    rows = layers[(layers["run"] == run) & (layers["unit"] == "pe_array")
                  & (layers["dram_bytes"] > 0) & (layers["processed_macs"] > 0)]
    span = (rows["end_cycle"] - rows["start_cycle"]).clip(lower=1)
    return rows, rows["processed_macs"] / rows["dram_bytes"], rows["processed_macs"] / span


def plot_roofline(results: Results, run: str, described: dict[str, Any], path: Path) -> Path:
    """`run`'s conv and linear layer-phases on the roofline of its processor (`described`:
    `desim.elaborate.describe`'s MACs a cycle and ridge, MACs per DRAM byte); layer-phases
    that move no DRAM byte or do no MAC have no intensity and are left out."""
    import numpy as np

    plt = _pyplot()
    rows, intensity, rate = roofline_points(results.layers, run)
    peak, ridge = described["macs_per_cycle"], described["macs_per_dram_byte"]
    bandwidth = peak / ridge  # DRAM's bytes a cycle
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    low = min([*intensity, ridge]) / 4
    high = max([*intensity, ridge]) * 4
    xs = np.geomspace(low, high, 200)
    ax.plot(xs, np.minimum(peak, bandwidth * xs), color="black", linewidth=1,
            label=f"roofs: {peak:,} MACs a cycle, DRAM {bandwidth:.3g} B a cycle")
    for part in sorted(set(rows["busiest_part"].dropna()) - {""}):
        mine = rows["busiest_part"] == part
        ax.scatter(intensity[mine], rate[mine], s=14, color=part_color(part), label=part)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("processed MACs per DRAM byte")
    ax.set_ylabel("processed MACs a cycle, over its span")
    ax.set_title(f"{results.name}: {run}, roofline of its conv and linear layer-phases")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_layer_energy(results: Results, run: str, path: Path) -> Path:
    """Horizontal stacked bars: each layer's energy (uJ, its three phases together) of `run`,
    one segment per component, layers in forward order (from energy.csv)."""
    plt = _pyplot()
    rows = results.energy[results.energy["run"] == run]
    table = rows.pivot_table(index="layer", columns="component", values="energy_j",
                             aggfunc="sum", fill_value=0.0, sort=False) * 1e6
    names = list(dict.fromkeys(results.layers.loc[results.layers["run"] == run, "layer"]))
    table = table.reindex([n for n in names if n in table.index])
    fig, ax = plt.subplots(figsize=(9.0, max(3.0, 0.16 * len(table) + 1.2)))
    _stacked_bars(ax, list(table.index),
                  {comp: table[comp].tolist() for comp in sorted(table.columns)},
                  horizontal=True)
    ax.set_yticks(range(len(table)), list(table.index),
                  fontsize=max(4, min(8, 400 // max(len(table), 1))))
    ax.invert_yaxis()
    ax.set_xlabel("energy (uJ), FF + BP + WG")
    ax.set_title(f"{results.name}: {run}, energy per layer")
    return _save(fig, path)


def plot_topology(results: Results, run: str, path: Path) -> Path | str:
    """Run `run`'s processor, its links and nodes coloured by how busy they were (the
    picture of `desim topology --stats`), or why it cannot be drawn: the folder lacks the
    run's resolved design (config.json) or its statistics (stats.json), or this desim no
    longer reads its design (written by an older one: a key since renamed, a value since
    refused, such as a clock under 1 MHz). The rest of the report does not need it."""
    design = results.config.get("architectures", {}).get(run)
    if design is None:
        return "config.json holds no resolved design for it"
    if not (results.path / "stats.json").exists():
        return "the folder has no stats.json"
    from arch.accelerator import build_graph
    from arch.config import ArchConfig
    from arch.draw import draw_topology

    try:
        cfg = validate(ArchConfig, design, results.path / "config.json",
                       f"architectures.{run}")
        graph = build_graph(cfg)
        modules = read_run_stats(results.path, run)["modules"]
    except ConfigError as err:
        return str(err)
    return draw_topology(graph, path, graph_utilization(graph, modules, run))


# -- document blocks, rendered to Markdown and to HTML ------------------------------------------


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)   # right-aligned columns
    status: int | None = None                         # column whose text sets a row's class


@dataclass
class Image:
    alt: str
    src: str


Block = Heading | Para | Bullets | Table | Image


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
            lines = ["| " + " | ".join(cell(h) for h in b.header) + " |",
                     "|" + "|".join("---:" if i in b.numeric else "---"
                                    for i in range(len(b.header))) + "|"]
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        else:
            out.append(f"![{b.alt}]({b.src})")
    return "\n\n".join(out) + "\n"


HTML_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 80em; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 90%; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; vertical-align: top; }}
td.num {{ text-align: right; }}
tr.ok td {{ background: #eef8ee; }}
tr.gap td {{ background: #fdf5e6; }}
tr.bad td {{ background: #fbe9e9; font-weight: bold; }}
img {{ max-width: 100%; }}
code {{ background: #f4f4f4; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def _inline_html(text: str) -> str:
    """The Markdown inline markup the report's text may hold as HTML: `code` spans,
    **bold** and [links](url) outside them; everything else escaped."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]+)`", text)):
        if i % 2:  # inside a code span: as it is
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(part))
        out.append(re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', part))
    return "".join(out)


def _row_class(text: str) -> str:
    if text.startswith("within") and "update" not in text:
        return "ok"
    if text.startswith("outside (known"):
        return "gap"
    return "bad"


def to_html(blocks: list[Block], title: str) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>\n" + "\n".join(f"<li>{_inline_html(i)}</li>" for i in b.items)
                       + "\n</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
            rows = []
            for row in b.rows:
                cls = f' class="{_row_class(row[b.status])}"' if b.status is not None else ""
                cells = "".join(
                    f'<td class="num">{_inline_html(c)}</td>' if i in b.numeric
                    else f"<td>{_inline_html(c)}</td>" for i, c in enumerate(row))
                rows.append(f"<tr{cls}>{cells}</tr>")
            out.append(f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>")
        else:
            out.append(f'<p><img src="{html.escape(b.src)}" alt="{html.escape(b.alt)}"></p>')
    return HTML_TEMPLATE.format(title=html.escape(title), body="\n".join(out))


# -- the report ---------------------------------------------------------------------------------


def _fmt(v: float | None, digits: int = 4) -> str:
    """A figure to `digits` significant digits; a large one in full, with thousands
    separators (4,242,000, not 4.242e+06), a tiny one in e-notation."""
    if v is None:
        return "-"
    if math.isinf(v) or math.isnan(v):
        return str(v)
    if abs(v) >= 1e4:
        return f"{round(v, digits - 1 - math.floor(math.log10(abs(v)))):,.0f}"
    return f"{v:.{digits}g}"


RANGE_DIGITS = 5  # a paper's figure has up to five (173.28): its range as many
CLAIM_HEADER = ["experiment", "claim", "paper", "desim", "accepted range", "verdict",
                "source"]


def _claim_rows(results: Results) -> list[list[str]]:
    return [[results.name, c.title, c.paper_text, c.value_text, c.range_text,
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
    blocks: list[Block] = [Heading(2, f"Experiment `{results.name}`")]
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
    workload = exp.get("workload", {})
    assumptions = [f"Workload: `{workload.get('model', '?')}` "
                   f"{json.dumps(workload.get('model_args', {}))}, batch "
                   f"{workload.get('batch', '?')}, input "
                   f"{workload.get('input_shape') or 'the model default'}, data "
                   f"`{workload.get('data', '?')}`"
                   + (", trained first" if workload.get("training") else "")]
    assumptions += list(exp.get("notes", []))
    blocks.append(Bullets(assumptions))
    blocks.append(Heading(3, "Runs"))
    blocks.append(_runs_table(results))
    blocks.append(Heading(3, "Processors"))
    described = described_processors(results)
    blocks.append(_processors_table(results, described))
    blocks.append(Heading(3, "Energy by component"))
    energy_png = plot_energy(results, plot_path(out_dir, slug, "energy"))
    blocks.append(Image(f"{results.name}: energy per component", energy_png.name))
    blocks.append(_energy_table(results))
    if any("energy_prices_pj" in r for r in summary["runs"].values()):
        blocks.append(Heading(3, "Energy prices"))
        blocks.append(_prices_table(results))
    if len(summary["runs"]) > 1:
        blocks.append(Heading(3, "Where the gain comes from"))
        blocks.append(Para(GAINS_TEXT))
        for run in summary["runs"]:
            if run != summary["baseline"]:
                blocks += gain_blocks(summary["baseline"], summary["runs"][summary[
                    "baseline"]], run, summary["runs"][run])
    topologies = [(run, plot_topology(results, run,
                                      plot_path(out_dir, f"{slug}_{run}", "topology")))
                  for run in summary["runs"]]
    blocks.append(Heading(3, "Where the time went"))
    blocks.append(Para("Each processor's links and nodes coloured by the share of the run "
                       "they were busy (`utilization` in summary.json, per module in "
                       "stats.json)."))
    blocks += [Image(f"{results.name}: {run}, busy share of each link and node", png.name)
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
        blocks.append(Image(f"{results.name}: time by each layer-phase's busiest part",
                            bound.name))
    if {"cycles", "unit", "busiest_part", "busiest_share"} <= set(results.layers.columns):
        blocks.append(Para(f"The {SLOWEST} layer-phases that take the most of each run's "
                           "time, and the part busiest over each one's span:"))
        blocks.append(_slowest_table(results))
        if not isinstance(described, str) and {"processed_macs", "dram_bytes"} <= set(
                results.layers.columns):
            blocks.append(Para(ROOFLINE_TEXT))
            for run in summary["runs"]:
                if run in described:
                    png = plot_roofline(results, run, described[run],
                                        plot_path(out_dir, f"{slug}_{run}", "roofline"))
                    blocks.append(Image(f"{results.name}: {run} roofline", png.name))
        blocks.append(Para("Each run's layer timeline, coloured by the part busiest over "
                           "each layer-phase's span: where in the iteration each part "
                           "bounds it."))
        for run in summary["runs"]:
            png = plot_timeline(results, run, plot_path(out_dir, f"{slug}_{run}",
                                                        "bound_timeline"), by="busiest_part")
            blocks.append(Image(f"{results.name}: {run} timeline by busiest part", png.name))
    blocks.append(Heading(3, "Layer timelines"))
    for run in summary["runs"]:
        png = plot_timeline(results, run, plot_path(out_dir, f"{slug}_{run}", "timeline"))
        blocks.append(Image(f"{results.name}: {run} timeline", png.name))
    if results.energy is not None:
        blocks.append(Heading(3, "Energy by layer"))
        for run in summary["runs"]:
            png = plot_layer_energy(results, run,
                                    plot_path(out_dir, f"{slug}_{run}", "layer_energy"))
            blocks.append(Image(f"{results.name}: {run} energy per layer", png.name))
    return blocks


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
    (layers.csv's `partition`; "channels", the default, is not said; a folder from before
    the column has none)."""
    dealt = {"rows": ", by rows", "both": ", by rows and channels"}
    return row["unit"] + dealt.get(row.get("partition"), "")


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
    rows, nan = [], float("nan")
    for name, run in summary["runs"].items():
        p = pruning.get(name, {})
        method = p.get("method", "?") + (f" {p['sparsity']:g}" if p.get("sparsity") else "")
        w = run.get("workload", {})
        sparsity = " / ".join(f"{nan if w.get(k) is None else w[k]:.2f}" for k in
                              ("weight_sparsity", "activation_sparsity", "gradient_sparsity"))
        comp = summary["comparison"][name]
        rows.append([name, run["arch"], method, f"{run['cycles']:,}",
                     _fmt(run["seconds"] * 1e3), _fmt(run["energy_j"] * 1e3),
                     _fmt(on_chip_energy_j(run) * 1e3), f"{comp['speedup']:.2f}",
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
    """A nested section as dotted keys to values, null values left out; a list of sections
    (an experiment's runs) by index, as `--set runs.1.pruning.sparsity` names them, and a
    list of plain values (a mesh's shape) as one value."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, list) and any(isinstance(item, dict) for item in value):
            value = {str(i): item for i, item in enumerate(value)}
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif value is not None:
            out[prefix + key] = value
    return out


def _value_text(value: Any) -> str:
    """A configuration value as its YAML would read: true, [a, b], 4,096, auto."""
    from desim.elaborate import cell

    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return json.dumps(value)
    return cell(value)


def vector_share(run: dict[str, Any]) -> float | None:
    """The share of a run's time (summary.json's run) its vector layers take: batch norm,
    pooling, adds, softmax, work that weight sparsity does not shrink. None for results written
    before `units` existed, or a run of no time."""
    if "units" not in run or not run["cycles"]:
        return None
    return run["units"].get("vector_unit", {}).get("cycles", 0) / run["cycles"]


def busy_text(run: dict[str, Any], parts: int | None = None) -> str:
    """A run's `utilization`, busiest part first: "dram 64%, noc 52% (busiest glb->r0_0),
    ..."; the names are summary.json's. `parts`: only that many, the busiest; "-" for a
    run written before summary.json had them."""
    shares = sorted(run.get("utilization", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    if not shares:
        return "-"
    busiest = run.get("busiest_parts", {})
    return ", ".join(f"{part} {100 * share:.0f}%"
                     + (f" (busiest {busiest[part]})" if part in busiest else "")
                     for part, share in shares[:parts])


def bound_text(run: dict[str, Any]) -> str:
    """A run's `time_by_busiest_part`, the largest first, parts under half a percent left
    out: "dram 51%, pe_array 28%, ..."; "-" for a run written before summary.json had it."""
    shares = sorted(run.get("time_by_busiest_part", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{part} {100 * share:.0f}%" for part, share in shares
                     if share >= 0.005) or "-"


def _vector_share(run: dict[str, Any]) -> str:
    share = vector_share(run)
    return "-" if share is None else f"{100 * share:.0f}"


GAINS_TEXT = (
    "Each run against the baseline, part by part (`desim.gains`): its energy by component, "
    "and its time by the part that bound it (each layer-phase's time goes to the part "
    "busiest over its span, `time_by_busiest_part`). \"Shrinks\" is the baseline's "
    "amount over the run's; \"% of the saving\" what the part gave of the total saved "
    "(negative where it grew); \"if free\" the total ratio were that part to cost nothing "
    "in the run: a part that shrinks little and holds a large share of the run caps the "
    "ratio, however much the rest shrinks. It is accounting, not a second simulation: with "
    "a part free the mapper would choose other tiles, and another part would bind.")


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
    if time is not None:
        said.append(more_or_less(time.loc[TOTAL, "shrink"], "faster", "slower"))
    blocks: list[Block] = [Para(", ".join(said) + ".")]
    chip = OFF_CHIP in energy.index
    rows = [_gain_cells(part, row, 1e3) + (
        [_times(on_chip.loc[part, "ratio_if_free"]) if part in on_chip.index else "-"]
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
    return blocks


def _gain_cells(part: str, row: Any, scale: float) -> list[str]:
    """A `desim.gains` row as report cells: amounts times `scale`, shares in percent, a part
    the baseline lacks "new", one the run lacks "gone"."""
    shrink = ("new" if not row["baseline"] else "gone" if not row["run"]
              else _times(row["shrink"]))
    saving = row["share_of_saving"]
    return [part, _fmt(row["baseline"] * scale), _fmt(row["run"] * scale), shrink,
            f"{100 * row['share_of_run']:.1f}",
            "-" if math.isnan(saving) else f"{round(100 * saving, 1) + 0.0:.1f}",  # no -0.0
            "-" if math.isnan(row["ratio_if_free"]) else _times(row["ratio_if_free"])]


def more_or_less(ratio: float, less: str, more: str) -> str:
    """A baseline-over-run ratio as words: 2.00x less, or 1.25x more for 0.8."""
    return (f"{_times(ratio)} {less}" if not ratio or ratio >= 1
            else f"{_times(1 / ratio)} {more}")


def _times(x: float) -> str:
    return f"{x:.2f}x" if math.isfinite(x) else "-"


def _energy_table(results: Results) -> Table:
    runs = results.summary["runs"]
    components = sorted({c for r in runs.values() for c in r["energy_by_component_j"]})
    rows = [[comp] + [_fmt(r["energy_by_component_j"].get(comp, 0.0) * 1e3)
                      for r in runs.values()] for comp in components]
    rows.append(["total"] + [_fmt(r["energy_j"] * 1e3) for r in runs.values()])
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


def build_report(dirs: list[Path], out: Path) -> tuple[Path, Path, list[Results]]:
    """Write `out` (Markdown), the same content as HTML beside it, and the plots; return the
    two paths and the results read (with their claim checks)."""
    if out.suffix.lower() != ".md":  # Markdown in a file named .pdf or .html misleads
        raise ConfigError(f"--out {out}: the report is Markdown (with an HTML copy beside "
                          "it); name it FILE.md")
    out_dir = writable_file(out).parent
    writable_file(out.with_suffix(".html"))
    all_results = [load_results(Path(d)) for d in dirs]
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
    used: dict[str, int] = {}
    for results in all_results:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", results.name) or "experiment"
        used[slug] = used.get(slug, 0) + 1
        if used[slug] > 1:
            slug = f"{slug}_{used[slug]}"
        # the plots take the report's name first: two reports in one folder keep their own
        blocks += _experiment_blocks(results, f"{out.stem}_{slug}", out_dir)
    html_path = out.with_suffix(".html")
    write_atomic(out, to_markdown(blocks))
    write_atomic(html_path, to_html(blocks, "desim report: " + ", ".join(r.name for r in
                                                                         all_results)))
    return out, html_path, all_results


def register(app: typer.Typer) -> None:
    """Add the `report` command to the `desim` command line."""

    @app.command("report")
    def report(
        dirs: Annotated[list[Path], typer.Argument(help="results folders (desim run --out DIR)")],
        out: Annotated[Path | None, typer.Option(
            "--out", "-o", help="FILE.md; FILE.html and the plots go beside it "
                                "(default: FIRST_DIR/report.md, removed when desim run writes "
                                "that folder again)")] = None,
        check: Annotated[bool, typer.Option(
            "--check", help="exit 1 when a claim is not where its experiment file expects "
                            "it (or its metric is missing)")] = False,
    ) -> None:
        """Markdown and HTML report of results folders: claims vs paper, energy, timelines."""
        from rich.console import Console
        from rich.markup import escape


        # folder names and messages are printed as they are, never read as rich markup
        console = Console()
        md, page, all_results = guarded(
            lambda: build_report(dirs, out or dirs[0] / DEFAULT_REPORT))
        surprises = 0
        for results in all_results:
            for c in results.checks:
                surprises += not c.as_expected
                console.print(escape(f"{results.name}: {c.title} paper "
                                     f"{c.paper_text} desim {c.value_text} "
                                     f"({c.range_text}): {results.verdict(c)}"),
                              highlight=False, soft_wrap=True)
        console.print(escape(f"wrote {md} and {page} (plots beside them)"), highlight=False,
                      soft_wrap=True)
        if check and surprises:
            raise typer.Exit(1)
