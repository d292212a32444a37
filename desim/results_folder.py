"""A results folder (`desim run --out DIR`) read back: summary.json, config.json, layers.csv
and energy.csv, each checked as it is read, so that a folder another program wrote, an
older desim's, or a hand edit fails with the file and the key, not in the middle of a
report's table; and the folder's claims checked (`desim.claims`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, model_validator

from desim.claims import ClaimCheck, check_claim
from desim.configio import validate
from desim.errors import ConfigError
from desim.experiment import Claim
from desim.resolved import config_digest, stats_digest

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Results:
    """What one results folder holds, read back."""

    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    layers: pd.DataFrame
    checks: list[ClaimCheck] = field(default_factory=list)
    energy: pd.DataFrame | None = None  # energy.csv
    # what a report calls it where another folder of the same experiment is beside it
    # (`desim.report.build_report`): the experiment's name and the folder's path
    label: str = ""

    @property
    def experiment(self) -> dict[str, Any]:
        return self.config.get("experiment", {})

    @property
    def name(self) -> str:
        return str(self.summary.get("experiment", self.path.name))

    @property
    def shown_name(self) -> str:
        """The experiment's name, or its `label` where a report set one."""
        return self.label or self.name

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
    layers = _read_table(path, "layers.csv", LAYER_COLUMNS, summary, "not a results folder: ")
    energy = _read_table(path, "energy.csv", ENERGY_COLUMNS, summary)
    _check_tables_add_up(path, summary, layers, energy)
    results = Results(path, summary, config, layers, energy=energy)
    results.checks = [check_claim(results.summary, c) for c in _claims(path, config)]
    return results


def _check_tables_add_up(path: Path, summary: dict[str, Any], layers: pd.DataFrame,
                         energy: pd.DataFrame) -> None:
    """Each run's rows of layers.csv add up to its cycles in summary.json, and of energy.csv
    to its joules, as `desim run` writes them: a file cut short (a copy stopped midway) or
    from another folder read as it was, and the report's tables and timelines showed part
    of a run without a word."""
    import pandas as pd

    again = "the file is cut short or from another folder; write the folder again (desim run)"
    tables = [("layers.csv", layers, "cycles"), ("energy.csv", energy, "energy_j")]
    for name, table, column in tables:
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
            if name == "layers.csv":
                _check_spans(path, run, table[table["run"] == run], figures["cycles"], again)
            total, expected = float(rows.sum()), float(figures[column])
            if not math.isclose(total, expected, rel_tol=1e-9):
                raise ConfigError(f"{name}: the rows of run {run!r} add up to {total:,.8g} "
                                  f"{column}, but summary.json has {expected:,.8g}: {again}",
                                  file=str(path))


def _check_spans(path: Path, run: str, rows: pd.DataFrame, cycles: int, again: str) -> None:
    """Each layer-phase's span in layers.csv (what the timelines draw) a number of cycles
    within its run's: a damaged cell failed drawing with a traceback, or was drawn far out
    of the run without a word."""
    import pandas as pd

    start = pd.to_numeric(rows["start_cycle"], errors="coerce")
    end = pd.to_numeric(rows["end_cycle"], errors="coerce")
    if start.isna().any() or end.isna().any():
        column = "start_cycle" if start.isna().any() else "end_cycle"
        raise ConfigError(f"layers.csv: a row of run {run!r} has no {column}: {again}",
                          file=str(path))
    if not ((start >= 0) & (start <= end) & (end <= cycles)).all():
        raise ConfigError(f"layers.csv: a row of run {run!r} spans cycles outside 0 to "
                          f"{cycles:,} (its run's in summary.json), or ends before it starts: "
                          f"{again}", file=str(path))


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
    _claims(path, config)  # a damaged key named before the hash says the file changed
    _check_config_is_the_summarys(path, summary, config)
    return summary, config


def _claims(path: Path, config: dict[str, Any]) -> list[Claim]:
    """config.json's claims, each validated."""
    return [validate(Claim, c, path / "config.json", f"experiment.claims.{i}")
            for i, c in enumerate(config.get("experiment", {}).get("claims", []))]


def _check_config_is_the_summarys(path: Path, summary: dict[str, Any],
                                  config: dict[str, Any]) -> None:
    """config.json describes the runs summary.json holds: the experiment's name and
    baseline, its runs' names and each run's design's name are summary.json's. Another
    folder's config.json copied in had the report check that experiment's claims against
    these numbers and describe its workload and processors, exit 0. (A key an older desim
    did not write is not compared.)"""
    experiment, designs = config["experiment"], config.get("architectures", {})
    pairs = [("experiment", experiment.get("name"), summary["experiment"]),
             ("baseline", experiment.get("baseline"), summary["baseline"])]
    if experiment.get("runs"):
        pairs.append(("runs", sorted(run["name"] for run in experiment["runs"]),
                      sorted(summary["runs"])))
    pairs += [(f"run {run}'s arch", (designs.get(run) or {}).get("name"), figures["arch"])
              for run, figures in summary["runs"].items()]
    disagree = [f"{what} {_listed(theirs)} where summary.json has {_listed(ours)}"
                for what, theirs, ours in pairs if theirs is not None and theirs != ours]
    if disagree:
        raise ConfigError(f"config.json is not summary.json's: {'; '.join(disagree)}; the "
                          "file is from another folder: write the folder again (desim run)",
                          file=str(path))
    recorded = summary.get("config_sha256")  # (none before 2026-12-07)
    if recorded is not None and recorded != config_digest(config):
        raise ConfigError("config.json is not summary.json's: its resolved experiment or "
                          "architectures are not those summary.json's run resolved "
                          "(config_sha256); the file was edited after the run or is another "
                          "folder's: write the folder again (desim run)", file=str(path))


def _listed(value: Any) -> str:
    """A name quoted, a list of names as "a, b"."""
    return ", ".join(value) if isinstance(value, list) else repr(value)


def read_run_stats(path: Path, run: str) -> dict[str, Any]:
    """Run `run`'s entry of a results folder's stats.json, checked as `desim topology
    --stats` reads it (`RunStatsRead`): its modules and their utilization; the file the
    one summary.json's run wrote (`stats_sha256`)."""
    stats = _read_json(path, "stats.json")
    if not isinstance(stats, dict):
        raise ConfigError(f"expected a mapping of runs, got {type(stats).__name__}",
                          file=str(path / "stats.json"))
    recorded = _read_json(path, "summary.json").get("stats_sha256")  # (none before 2026-12-07)
    if recorded is not None and recorded != stats_digest(stats):
        raise ConfigError("is not summary.json's: its statistics are not those summary.json's "
                          "run recorded (stats_sha256); the file was edited after the run or "
                          "is another folder's: write the folder again (desim run)",
                          file=str(path / "stats.json"))
    if run not in stats:  # (summary.json has it: its writing cut short, or the file edited)
        raise ConfigError(f"has no entry for run {run!r} (its runs: "
                          f"{', '.join(map(repr, stats)) or 'none'})",
                          file=str(path / "stats.json"))
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
    from arch.noc import is_noc_link, link_name
    from desim.stats import busy_share

    links = {}
    for u, v in graph.edges:
        entry = modules.get(f"{run}.noc.{link_name(u, v)}")
        if entry is not None:
            links[link_name(u, v)] = entry.get("utilization", 0.0)
        elif is_noc_link(graph, u, v):
            links[link_name(u, v)] = 0.0  # idle the whole run
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


class PhaseRead(BaseModel):
    """What the report reads of a phase of a run in summary.json."""

    cycles: int = 0


class RunRead(BaseModel):
    """What the report reads of a run in summary.json (the rest passes unchecked)."""

    arch: str
    # no run takes negative time or energy: a hand edit's -1 s was drawn as "-33x slower"
    cycles: int = Field(ge=0)
    seconds: float = Field(ge=0)
    energy_j: float = Field(ge=0)
    energy_by_component_j: dict[str, float]
    units: dict[str, dict[str, float]]
    phases: dict[str, PhaseRead] = {}
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

    name: str | None = None  # checked against summary.json's, as are the runs' names
    baseline: str | None = None
    runs: list[RunConfigRead] = []
    description: str = ""
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
    experiment: ExperimentRead  # what every desim wrote: `{}` is no results folder's
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

    @model_validator(mode="after")
    def _ratios_are_the_runs(self) -> SummaryRead:
        """Each run's speedup and energy ratio are the baseline's time and joules over its
        own, as `desim run` writes them: a hand edit (a speedup of 0 beside a 2.7x cycle
        ratio) was drawn as given."""
        base = self.runs[self.baseline]
        for name, run in self.runs.items():
            for key, expected in (("speedup", _ratio(base.seconds, run.seconds)),
                                  ("energy_ratio", _ratio(base.energy_j, run.energy_j))):
                given = getattr(self.comparison[name], key)
                if expected is not None and not math.isclose(given, expected, rel_tol=1e-6):
                    raise ValueError(f"comparison.{name}.{key}: {given:g} is not the baseline's "
                                     f"over the run's ({expected:g}); the file was edited or "
                                     "is another folder's")
        return self


def _ratio(base: float, run: float) -> float | None:
    """base / run, None where it is no number to check against (a run of no time)."""
    return base / run if run > 0 and math.isfinite(base / run) else None


# The columns the report reads that every desim able to write a summary.json it reads
# has written (`units`, 2026-12-02, is required there); layers.csv's busiest_part,
# busiest_share, mapping and partition came later: a report without them says so.
LAYER_COLUMNS = {"run", "layer", "phase", "cycles", "start_cycle", "end_cycle", "unit",
                 "processed_macs", "dram_bytes"}
ENERGY_COLUMNS = {"run", "layer", "phase", "component", "energy_j"}


def _read_table(path: Path, name: str, columns: set[str], summary: dict[str, Any],
                fault: str = "") -> pd.DataFrame:
    """A CSV of a results folder with the columns the report reads; anything else is bad
    input naming the folder, the file and what it lacks (`fault` leads the message). Both
    tables are required: `desim run` writes them with summary.json (energy.csv since
    2026-12-03), and a folder without one had its section left out without a word."""
    import pandas as pd  # here, not at the top: the CLI starts without pandas

    if not (path / name).is_file():
        raise ConfigError(f"{fault}no {name}, which desim run writes beside summary.json: "
                          "the folder is incomplete; write it again (desim run)", file=str(path))
    try:
        table = pd.read_csv(path / name, dtype={"run": str, "arch": str, "layer": str})
    except (OSError, ValueError) as err:
        raise ConfigError(f"{fault}cannot read {name} ({err})", file=str(path)) from None
    if "run" not in table.columns and "arch" in table.columns and set(
            table["arch"].dropna()) <= set(summary["runs"]):
        table = table.rename(columns={"arch": "run"})  # written before 2026-12-03: run names
    missing = columns - set(table.columns)
    if missing:
        raise ConfigError(f"{fault}{name} lacks {', '.join(sorted(missing))}", file=str(path))
    return table
