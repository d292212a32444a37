"""An experiment file: one study, i.e. one workload on several architectures.

```yaml
name: quickstart
workload: {model: resnet18, model_args: {cifar: true}, batch: 8, input_shape: [3, 32, 32]}
runs:
  - {name: dense, arch: ../arch/dense.yaml}
  - {name: hppu, arch: ../arch/hppu_like.yaml,
     pruning: {method: hybrid, sparsity: 0.7, channel_share: 0.5}}
baseline: dense
```
Paths are relative to the experiment file. `--set key.path=value` overrides any key before
validation (`--set workload.batch=4`, `--set runs.1.pruning.sparsity=0.5`; a run by its
name too, `runs.hppu.pruning.sparsity`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from arch.config import ArchConfig
from arch.reram import ReramArch
from arch.snn import SnnArch
from desim.configio import (
    DuplicateKeyError,
    Strict,
    load_json,
    load_yaml,
    optional_section,
    parse_yaml,
    section_model,
    validate,
    yaml_problem,
)
from desim.errors import ConfigError
from desim.events import PHASES
from desim.metrics import DERIVED_RUN, PHASE_FIGURES
from desim.resolved import (
    Recorded,
    check_against_record,
    check_designs,
    is_resolved,
    read_resolved,
    resolved_sections,
)
from desim.sweep_spec import SweepSpec
from mappings.model_path import is_file_model, resolve
from mappings.specs import PruningSpec, WorkloadSpec


class RunSpec(Strict):
    # also the root of its module tree, and part of file names (waves_<run>.vcd, the
    # report's plots): 64 characters keep those within a file system's 255
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=64)
    arch: str
    # `key.path=value` settings applied to the arch file for this run only (as `--set`):
    # a variant of a processor without a copy of its file (`pe_cluster.precision=fp8`).
    arch_set: list[str] = Field(default_factory=list)
    # Likewise for the experiment's workload: this run captures its own variant of it
    # (`speculative_relu=true`: the iteration as a speculating processor runs it).
    workload_set: list[str] = Field(default_factory=list)
    pruning: PruningSpec = PruningSpec(method="dense")


class ObserveSpec(Strict):
    """Observability, off by default (`--trace`, `--vcd` switch it on too)."""

    trace: bool = False  # DIR/trace.json: Chrome/Perfetto, one slice per transaction
    vcd: bool = False    # DIR/waves_<run>.vcd: busy signals and FIFO depths (GTKWave)
    tiles: bool = False  # DIR/tiles.csv: every tile the mapper planned, as the event table
    # gives it (what it moves and computes), one row per run, layer-phase and tile
    # The probes: the modules the trace and the waveforms record, glob patterns of their
    # paths below the run (`dram`, `noc.*`, `glb*`; `desim check` lists a design's
    # modules); none: every module. A pattern no module of some run matches is refused.
    modules: list[str] = []


class Claim(Strict):
    """A paper's figure and the result value that should reproduce it (`desim report` checks).

    `metric` is a dotted path into summary.json (`comparison.hppu.speedup`,
    `runs.hppu.workload.accuracy`) or a derived metric of `desim.claims`
    (`comparison.hppu.on_chip_energy_ratio`); with `over`, the value is metric / over. A
    list of metrics (with a list of as many `over`, or none) gives their mean: a figure
    measured over several seeds, whose single runs scatter more than the tolerance.
    `compare`: "approx" passes when |value - paper| <= tolerance, "at_least" when
    value >= paper - tolerance, "at_most" when value <= paper + tolerance. `expect: outside`
    records a known gap (explained in `note`), so a report flags it without failing.
    """

    metric: str | list[str]
    over: str | list[str] | None = None
    label: str = ""  # what the claim says, in words: the report's claim column (else the path)
    paper: float
    tolerance: float = Field(ge=0)
    compare: Literal["approx", "at_least", "at_most"] = "approx"
    expect: Literal["within", "outside"] = "within"
    source: str = ""
    note: str = ""

    @model_validator(mode="after")
    def _over_matches_metric(self) -> Claim:
        if isinstance(self.metric, list) != isinstance(self.over, list) and self.over is not None:
            raise ValueError("metric and over must both be paths or both lists of paths")
        if isinstance(self.metric, list) and (
                not self.metric or (self.over is not None and len(self.over) != len(self.metric))):
            raise ValueError("a list of metrics must be non-empty, with as many over")
        if any(path is not None and not path.strip() for pair in self.ratios() for path in pair):
            raise ValueError("metric and over name a dotted path of summary.json "
                             "(comparison.<run>.speedup); got an empty one")
        return self

    def ratios(self) -> list[tuple[str, str | None]]:
        """(metric, over) of each value the claim averages (one without a list)."""
        if isinstance(self.metric, str):
            return [(self.metric, self.over if isinstance(self.over, str) else None)]
        overs = self.over if isinstance(self.over, list) else [None] * len(self.metric)
        return list(zip(self.metric, overs, strict=True))


# What a claim's metric may name under runs.<run> and comparison.<run>: the keys of
# summary.json there, and the metrics derived from them (`desim.metrics`).
CLAIM_METRICS = {
    "runs": ("cycles", "seconds", "energy_j", "macs", "effectual_macs", "dram_bytes",
             "simulation_events", "phases", "units", "utilization", "time_by_busiest_part",
             "energy_by_component_j", "energy_by_action_j", "energy_prices_pj",
             "vector_layers_not_simulated", "workload", *DERIVED_RUN),
    "comparison": ("speedup", "energy_ratio", "on_chip_energy_ratio"),
}
# What follows a section of runs.<run> that is no number, level by level: the keys
# summary.json has there, or what a run's own names are (a string: its processor's parts and
# components, checked once it is built, `desim.elaborate.summary_names`). The workload's
# statistics are checked against `WORKLOAD_STATS`.
CLAIM_SECTIONS: dict[str, tuple[tuple[str, ...] | str, ...]] = {
    "phases": (PHASES, PHASE_FIGURES),
    "units": (("pe_array", "vector_unit"), ("cycles", "energy_j")),
    "utilization": ("part",), "time_by_busiest_part": ("part",),
    "energy_by_component_j": ("component",), "energy_prices_pj": ("price",),
    "energy_by_action_j": ("component", "action"),
}


# The statistics of a run's workload (summary.json's runs.<run>.workload), each with what a
# run needs to have it ("": every run): mappings/workload.py `_stats` gives the first four,
# the pruning masks' (any method but dense) and the speculation's (desim/runner.py keeps
# them on a design with a speculator only); mappings/training.py `train_and_capture` the
# training's. A run may still lack one it could have (a pruning that prunes no layer), as
# the report then says; a claim on one it cannot have is refused before simulating.
WORKLOAD_STATS = {
    "activation_sparsity": "", "gradient_sparsity": "", "weight_sparsity": "",
    "vector_layers": "", "pruned_layers_weight_sparsity": "pruning",
    "speculated_layers": "speculator", "speculated_zero_fraction": "speculator",
    "speculation_false_zero_rate": "speculator", "speculation_false_zero_mass": "speculator",
    "accuracy": "training", "final_loss": "training", "iterations": "training",
    "captured_iteration": "training", "weight_compression": "training pruning",
    "exact_inference_accuracy": "training speculative_relu",
}
NEEDS = {"pruning": "a pruning other than dense", "speculator": "a speculator in its design",
         "training": "a training (workload.training)",
         "speculative_relu": "workload.speculative_relu"}


class ExperimentSpec(Strict):
    # a heading of the report and part of its plots' names, as a run's name is of its files:
    # one word, the same characters (prose goes in `description`)
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=64)
    description: str = ""
    notes: list[str] = Field(default_factory=list)  # assumptions, shown by `desim report`
    claims: list[Claim] = Field(default_factory=list)
    observe: ObserveSpec = ObserveSpec()
    workload: WorkloadSpec
    runs: list[RunSpec] = Field(min_length=1)
    baseline: str
    sweep: SweepSpec | None = None  # `desim sweep`: the parameters to vary (desim.sweep)

    @model_validator(mode="after")
    def _baseline_is_a_run(self) -> ExperimentSpec:
        names = [r.name for r in self.runs]
        if len(set(names)) != len(names):
            raise ValueError(f"runs: run names must be unique, got {names}")
        if self.baseline not in names:
            raise ValueError(f"baseline: {self.baseline!r} is not one of the runs {names}")
        for key, path in claim_metrics(self.claims):  # a typo fails before simulating
            parts = path.split(".")
            known = CLAIM_METRICS.get(parts[0])
            if known is None:
                raise ValueError(f"{key}: {path!r} is neither runs.<run>.... nor "
                                 "comparison.<run>....")
            if len(parts) < 3 or parts[1] not in names:
                raise ValueError(f"{key}: {path!r} names no run of {names}")
            if parts[2] not in known:
                raise ValueError(f"{key}: {path!r}: no {parts[0]} metric {parts[2]!r}; "
                                 f"expected one of: {', '.join(known)}")
            _check_claim_shape(key, path, parts)
        return self


def _check_claim_shape(key: str, path: str, parts: list[str]) -> None:
    """A claim's path leads to one number: a section of summary.json (`runs.X.phases`)
    followed by as many keys as it has levels (`runs.X.phases.FF.cycles`), each one it has
    where the keys are the same for every run; a scalar followed by nothing. The report
    alone found `runs.X.phases`, or `runs.X.cycles.FF`, to be no number, after simulating."""
    if parts[0] == "runs" and parts[2] == "workload":  # _check_workload_claims
        return
    levels = CLAIM_SECTIONS.get(parts[2], ()) if parts[0] == "runs" else ()
    keys = parts[3:]
    if len(keys) != len(levels):
        shape = ".".join([*parts[:3], *(f"<{level}>" if isinstance(level, str)
                                        else f"<{'|'.join(level)}>" for level in levels)])
        raise ValueError(f"{key}: {path!r} is no number; expected {shape}")
    for level, name in zip(levels, keys, strict=True):
        if not isinstance(level, str) and name not in level:
            raise ValueError(f"{key}: {path!r}: no {name!r} there; expected one of: "
                             f"{', '.join(level)}")


class Experiment:
    """A validated experiment with its architectures loaded and each run's workload (the
    experiment's, with the run's `workload_set` applied). `overrides`: the `--set` items
    applied over the file, as given (config.json records them)."""

    def __init__(self, path: Path, spec: ExperimentSpec, archs: dict[str, ArchConfig],
                 raw: dict[str, Any], workloads: dict[str, WorkloadSpec] | None = None,
                 overrides: Sequence[str] = (), recorded: Recorded | None = None,
                 given_archs: dict[str, dict[str, Any]] | None = None) -> None:
        self.path, self.spec, self.archs, self.raw = path, spec, archs, raw
        self.workloads = workloads or {run.name: spec.workload for run in spec.runs}
        self.overrides = list(overrides)
        # each run's design as given, before validation (config.json's `given`, which a
        # rerun reads): its file with the run's arch_set and the --set arch. items applied
        self.given_archs = given_archs or {}
        # read from a results folder's config.json: what it recorded (`desim.resolved`)
        self.recorded = recorded
        # the experiment file its relative paths are from (config.json's, when recorded)
        self.source = recorded.source if recorded else path

    def design_key(self, i: int) -> str:
        """Where run i's design is given in the experiment's file: its `arch`, or in a
        config.json its recorded design."""
        return (f"given.architectures.{self.spec.runs[i].name}" if self.recorded
                else f"runs.{i}.arch")

    def in_design(self, i: int, err: ConfigError) -> ConfigError:
        """An error of run i's design named in the file that gives it: its architecture
        file, or config.json under the run's recorded design."""
        if self.recorded:
            key = f"{self.design_key(i)}.{err.key}" if err.key else self.design_key(i)
            return ConfigError(err.message, file=str(self.path), key=key)
        return err.in_file(str((self.path.parent / self.spec.runs[i].arch).resolve()))


def _named(items: list[Any], name: str) -> list[int]:
    """The indexes of the list's items (a run's section) whose `name` is `name`."""
    return [i for i, item in enumerate(items) if isinstance(item, dict)
            and item.get("name") == name]


def _list_index(items: list[Any], part: str, file: str, key: str) -> int:
    """The item of a list that `part` names: its index, or the `name` it has (a run's:
    `runs.hppu.pruning.sparsity`, as `arch.hppu.` names a run's architecture)."""
    if part.isdigit() and int(part) < len(items):
        return int(part)
    named = _named(items, part)
    if len(named) == 1:
        return named[0]
    if named:
        raise ConfigError(f"{len(named)} list items are named {part!r}; give its index "
                          "instead", file=file, key=key)
    if not items:
        raise ConfigError(f"no list item {part!r}; the list is empty", file=file, key=key)
    names = [item["name"] for item in items
             if isinstance(item, dict) and isinstance(item.get("name"), str)]
    raise ConfigError(f"no list item {part!r}; expected an index, 0 to {len(items) - 1}"
                      + (f", or a name: {', '.join(names)}" if names else ""),
                      file=file, key=key)


def run_index_key(raw: dict[str, Any], key: str) -> str:
    """`key` with a run named by its name (`runs.hppu.x`) named by its index instead
    (`runs.1.x`), so that two keys of one value compare equal."""
    parts = key.split(".")
    runs = raw.get("runs")
    if len(parts) > 1 and parts[0] == "runs" and isinstance(runs, list) \
            and not parts[1].isdigit() and len(named := _named(runs, parts[1])) == 1:
        parts[1] = str(named[0])
    return ".".join(parts)


def apply_overrides(data: dict[str, Any], overrides: list[str], file: str,
                    created: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Set `key.path=value` pairs (values parsed as YAML) in a nested dict/list. A path
    through a section the data lacks creates it; `created` (if given) gets each such
    section's path, with the item that created it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"expected key.path=value, got {item!r}", file=file)
        key, text = item.split("=", 1)
        node: Any = data
        parts = key.split(".")
        made = False  # whether this item created a section yet (`created` gets the outermost)
        if not all(parts):  # `=3`, `workload..batch`: set the top level or a key ""
            raise ConfigError(f"expected key.path=value, got {item!r} (an empty key)",
                              file=file)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                part = _list_index(node, part, file, key)
            elif not isinstance(node, dict):
                raise ConfigError("cannot set a key inside a value", file=file, key=key)
            if last:
                try:
                    node[part] = parse_yaml(text)
                except yaml.YAMLError as err:  # a key given twice: named under `key`
                    raise ConfigError(f"the value {text!r} is not valid YAML "
                                      f"({yaml_problem(err)})", file=file,
                                      key=f"{key}.{err.key}" if isinstance(
                                          err, DuplicateKeyError) else key) from None
            else:
                if isinstance(node, dict) and part not in node:
                    node[part] = {}
                    if created is not None and not made:
                        created.append((".".join(parts[:i + 1]), item))
                    made = True
                node = node[part]
    return data


def _refuse_replaced_workload_sets(spec: ExperimentSpec, experiment_sets: list[str],
                                   path: Path) -> None:
    """A `--set workload.K=...` (or a sweep's axis) that a run's own `workload_set` sets
    again: that run would keep its own value without a word, while the item reads as if it
    applied to every run (a sweep labelled its points with batches its run never took)."""
    for item in experiment_sets:
        key, _, text = item.partition("=")
        if key.split(".")[0] != "workload":
            continue
        for i, run in enumerate(spec.runs):
            own = next((given for given in run.workload_set
                        if _gives(key.split(".")[1:], text, given.partition("=")[0])), None)
            if own is not None:
                raise ConfigError(f"run {run.name!r} sets {own} in its own workload_set "
                                  f"(runs.{i}.workload_set), which replaces --set {item} "
                                  f"in that run: set it there, or drop one of the two",
                                  file=str(path), key=key)


def _gives(parts: list[str], text: str, inner: str) -> bool:
    """Whether a --set of the workload's key `parts` to the YAML `text` gives the value of
    its key `inner` (a run's `workload_set` key): `inner` is the key or holds it, or the
    value set holds `inner` (`workload={batch: 1}` gives batch, not training's rate)."""
    inner_parts = inner.split(".")
    if parts[:len(inner_parts)] == inner_parts:
        return True
    if inner_parts[:len(parts)] != parts:
        return False
    value: Any = parse_yaml(text)
    for part in inner_parts[len(parts):]:
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def _refuse_replaced_items(overrides: Sequence[str], raw: dict[str, Any], path: Path
                           ) -> None:
    """Refuse a `--set` item that replaces an earlier one: the same key twice, or a section
    after one of its keys (`workload.batch=2 workload.batch=4`, `runs.1.pruning.sparsity=0.5
    runs.sparse.pruning={...}`): the last would win and the other be dropped without a word.
    A key after its section (`selector={...} selector.levels=2`) sets a part of it, and
    `arch.*.` against `arch.<run>.` is the documented precedence (the run's own wins)."""
    keys = [run_index_key(raw, item.partition("=")[0]).split(".") for item in overrides]
    for j, later in enumerate(keys):
        for i in range(j):
            if keys[i][:len(later)] == later:
                raise ConfigError(f"--set {overrides[j]} replaces --set {overrides[i]}, "
                                  "given before it: keep one", file=str(path),
                                  key=".".join(later))


def split_overrides(overrides: Sequence[str], path: Path
                    ) -> tuple[list[str], dict[str, list[str]]]:
    """Experiment overrides, and arch overrides by run name (with `arch.<run>.` removed)."""
    experiment_sets: list[str] = []
    arch_sets: dict[str, list[str]] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if key.startswith("arch."):
            run_name, _, arch_key = key.removeprefix("arch.").partition(".")
            if not sep or not run_name or not arch_key:
                raise ConfigError(f"expected arch.<run>.<key.path>=value, got {item!r}",
                                  file=str(path), key=key)
            arch_sets.setdefault(run_name, []).append(f"{arch_key}={text}")
        else:
            experiment_sets.append(item)
    return experiment_sets, arch_sets


def experiment_path(path: str | Path) -> Path:
    """The file of the experiment at `path`: a results folder's is its config.json."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / "sweep.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError("is a sweep's folder: each of its points runs again from its file, "
                          "points/<point_id>.json", file=str(path))
    if not (path / "config.json").is_file():
        raise ConfigError("is a directory without a config.json; expected an experiment YAML "
                          "file, or a results folder (`desim run --out`) to run again",
                          file=str(path))
    return path / "config.json"


def read_experiment(path: str | Path) -> tuple[Path, dict[str, Any], Recorded | None]:
    """The experiment at `path` as data, before validation, with its file
    (`experiment_path`): an experiment file's, or the experiment a results folder's
    config.json records (with what else it records: `desim.resolved`)."""
    path = experiment_path(path)
    raw = load_json(path) if path.suffix == ".json" else load_yaml(path)
    if "point_id" in raw and "config" in raw:  # a sweep's point file
        if not isinstance(raw["config"], dict):
            raise ConfigError("a sweep's point that recorded no configuration to run again "
                              f"(it failed before it had one: {raw.get('error')})",
                              file=str(path), key="config")
        raw = raw["config"]
    if is_resolved(raw):
        recorded = read_resolved(raw, path)  # (a copy: --set items apply to it in place)
        return path, copy.deepcopy(recorded.experiment), recorded
    return path, raw, None


def load_experiment(path: str | Path, overrides: Sequence[str] | None = None) -> Experiment:
    """An experiment file with `--set` overrides: `key.path=value` sets a key of the file,
    `arch.<run>.<key.path>=value` one of that run's architecture file (that run only, even
    when several runs share the file; applied after the run's own `arch_set`), so a bad
    value is a ConfigError naming the arch file and key. `arch.*.<key.path>=value` sets it
    in every run's architecture (before any one run's own override). A results folder, or
    its config.json, is the study it records: its experiment and designs as they were
    given, the `--set` items applied over them, checked against the record
    (`desim.resolved`)."""
    path, raw, recorded = read_experiment(path)
    if recorded is not None and overrides:
        # the record as it ran first, checked against itself: new items would hide an edit
        recorded.notes += load_experiment(path).recorded.notes  # type: ignore[union-attr]
    _refuse_replaced_items(overrides or [], raw, path)
    experiment_sets, arch_sets = split_overrides(overrides or [], path)
    source = recorded.source if recorded else path
    if "runs" not in raw and ("pe_cluster" in raw or "kind" in raw):
        kind = raw.get("kind")
        script = DESIGN_KINDS[kind][1] if kind in DESIGN_KINDS else None
        raise ConfigError("this is an architecture file, not an experiment: "
                          + (f"a {kind} design runs through {script} --arch FILE" if script
                             else "an experiment (configs/experiments/*.yaml) names it in "
                             "its runs, with a workload; `desim topology FILE -o x.png` "
                             "checks and draws the design alone"), file=str(path))
    raw = apply_overrides(raw, experiment_sets, str(path))
    try:
        _resolve_workload_paths(raw.get("workload"), source)
        spec = validate(ExperimentSpec, raw, path)
    except ConfigError as err:
        raise _in_record(err, path, recorded, overrides) from None
    _refuse_replaced_workload_sets(spec, experiment_sets, path)
    if recorded is not None:
        _refuse_new_designs(spec, recorded, path)
        if not overrides:
            check_designs(recorded, [run.name for run in spec.runs], path)
    names = [run.name for run in spec.runs]
    for run_name in arch_sets:
        if run_name not in names and run_name != "*":
            raise ConfigError(f"no run {run_name!r}; runs: {', '.join(names)} (or *, every "
                              f"run)", file=str(path), key=f"arch.{run_name}")
    archs, workloads, given_archs = {}, {}, {}
    for i, run in enumerate(spec.runs):
        named = _arch_set_items(arch_sets, run.name)
        if recorded is not None:
            archs[run.name], given_archs[run.name] = _recorded_arch(recorded, run.name, path,
                                                                    named)
        else:
            archs[run.name], given_archs[run.name] = _file_arch(path, i, run, named)
        workloads[run.name] = spec.workload
        if run.workload_set:
            data = apply_overrides(spec.workload.model_dump(mode="json", exclude_unset=True),
                                   run.workload_set,
                                   str(path))
            _resolve_workload_paths(data, source)
            workloads[run.name] = validate(WorkloadSpec, data, path,
                                           prefix=f"runs.{i}.workload_set")
        _check_speculation(path, spec, i, workloads[run.name], archs[run.name])
        _check_weight_update(path, spec, i, workloads[run.name], archs[run.name])
        _check_weight_storage(path, spec, i, archs[run.name])
        _check_regrowth(path, spec, i, workloads[run.name])
        _check_trained_form(path, spec, i, workloads[run.name])
        if workloads[run.name].scalesim_topology is not None and run.pruning.method != "dense":
            raise ConfigError(f"run {run.name!r} prunes a SCALE-Sim topology, whose layers are "
                              "dense (batch 1, no weights to prune); expected "
                              "{method: dense}", file=str(path), key=f"runs.{i}.pruning")
    _check_gradual(path, spec, workloads)
    _check_workload_claims(path, spec, archs, workloads)
    applied = [*recorded.overrides, *(overrides or [])] if recorded else overrides or []
    experiment = Experiment(path, spec, archs, raw, workloads, applied, recorded, given_archs)
    if recorded is not None:
        check_against_record(recorded, resolved_sections(experiment), path, bool(overrides))
    return experiment


def _in_record(err: ConfigError, path: Path, recorded: Recorded | None,
               overrides: Sequence[str] | None) -> ConfigError:
    """An error of config.json's own `given` experiment (no new --set item to blame) named
    as config.json holds it, under given.experiment; any other error as it is."""
    if recorded is None or overrides:
        return err
    key = f"given.experiment.{err.key}" if err.key else "given.experiment"
    return ConfigError(err.message, file=str(path), key=key)


def _refuse_new_designs(spec: ExperimentSpec, recorded: Recorded, path: Path) -> None:
    """A rerun's run whose `arch` or `arch_set` a --set changed: its design is the one
    recorded, that file and arch_set applied, so the change would not be read."""
    runs = recorded.experiment.get("runs")
    before = {run.get("name"): run for run in runs if isinstance(run, dict)} \
        if isinstance(runs, list) else {}
    for i, run in enumerate(spec.runs):
        was = before.get(run.name)
        if was is None:
            continue
        for key in ("arch", "arch_set"):
            if getattr(run, key) != was.get(key, [] if key == "arch_set" else None):
                raise ConfigError("a rerun reads each run's design as recorded, its arch file "
                                  "and arch_set applied then: a new one would not be read; set "
                                  f"its keys with arch.{run.name}.<key>=value, or run the "
                                  "experiment file", file=str(path), key=f"runs.{i}.{key}")


def _file_arch(path: Path, i: int, run: RunSpec, named: list[tuple[str, str]]
               ) -> tuple[ArchConfig, dict[str, Any]]:
    """Run i's architecture from its file, with its `arch_set` and the command line's
    `arch.` items (`named`, as `_arch_set_items` gives them), each error naming where it
    comes from; and its data as given, before validation."""
    arch_path = (path.parent / run.arch).resolve()
    if not run.arch.strip():  # the experiment's own folder, said "is a directory"
        raise ConfigError("empty; expected an architecture YAML file's path",
                          file=str(path), key=f"runs.{i}.arch")
    if arch_path.is_dir():
        raise ConfigError(f"{run.arch!r} is a directory; expected an architecture YAML "
                          "file", file=str(path), key=f"runs.{i}.arch")
    if not arch_path.exists():
        raise ConfigError(f"architecture file {run.arch!r} not found (looked at {arch_path})",
                          file=str(path), key=f"runs.{i}.arch")
    if not arch_path.is_file():  # a device, a pipe: /dev/null exists, it is no file
        raise ConfigError(f"{run.arch!r} is not a regular file; expected an architecture "
                          "YAML file", file=str(path), key=f"runs.{i}.arch")
    items = [item for _, item in named]
    try:
        arch = _run_arch(path, i, arch_path, run.arch_set, items)
    except ConfigError as err:
        raise _naming_the_override(err, run.name, named,
                                   partial(load_arch, arch_path, run.arch_set)) from None
    return arch, apply_overrides(load_yaml(arch_path), [*run.arch_set, *items], str(arch_path))


def _recorded_arch(recorded: Recorded, run_name: str, path: Path,
                   named: list[tuple[str, str]]) -> tuple[ArchConfig, dict[str, Any]]:
    """Run `run_name`'s design as config.json's `given` section holds it (its `arch_set`
    and the recorded `--set` items applied), with this command line's `arch.` items
    (`named`); and its data as given."""
    key = f"given.architectures.{run_name}"
    data = recorded.designs.get(run_name)
    if data is None:
        raise ConfigError(f"no design recorded for run {run_name!r}", file=str(path), key=key)

    def design(items: list[str]) -> Design:
        return design_from(copy.deepcopy(data), path, overrides=items)

    items = [item for _, item in named]
    try:
        arch = design(items)
    except ConfigError as err:
        raise _naming_the_override(err, run_name, named, partial(design, [])).within(
            key) from None
    if not isinstance(arch, ArchConfig):
        raise ConfigError(f"a {arch.kind} design is not a training processor",
                          file=str(path), key=f"{key}.kind")
    return arch, apply_overrides(copy.deepcopy(data), items, str(path))


def workload_stat_names(run: RunSpec, workload: WorkloadSpec, arch: ArchConfig) -> list[str]:
    """The workload statistics `run` may have in summary.json (`WORKLOAD_STATS`)."""
    has = {need for need, on in (("pruning", run.pruning.method != "dense"),
                                 ("speculator", arch.speculator is not None),
                                 ("training", workload.training is not None),
                                 ("speculative_relu", workload.speculative_relu)) if on}
    return [name for name, needs in WORKLOAD_STATS.items() if set(needs.split()) <= has]


def claim_metrics(claims: list[Claim]) -> Iterator[tuple[str, str]]:
    """Each path a claim names, with its key in the file (`claims.0.metric`; `over` too)."""
    for i, claim in enumerate(claims):
        for pair in claim.ratios():
            for field, metric in zip(("metric", "over"), pair, strict=True):
                if metric:
                    yield f"claims.{i}.{field}", metric


def _check_workload_claims(path: Path, spec: ExperimentSpec, archs: dict[str, ArchConfig],
                           workloads: dict[str, WorkloadSpec]) -> None:
    """A claim on a run's workload statistic names one that run will have
    (`WORKLOAD_STATS`): a typo (`runs.hppu.workload.zzz`), or `accuracy` of a run that does
    not train, was found missing by the report only, after the simulation. So was a claim
    on the weight update's phase of a run whose workload asks for none."""
    runs = {run.name: run for run in spec.runs}
    for key, metric in claim_metrics(spec.claims):
        parts = metric.split(".")
        if parts[0] == "runs" and parts[2:4] == ["phases", "WU"]:
            if workloads[parts[1]].weight_update == "none":
                raise ConfigError(f"{metric!r}: run {parts[1]!r} will have no weight update "
                                  "phase WU (its workload's weight_update is none)",
                                  file=str(path), key=key)
            continue
        if parts[0] != "runs" or parts[2] != "workload":
            continue
        run = runs[parts[1]]
        names = workload_stat_names(run, workloads[run.name], archs[run.name])
        stat = ".".join(parts[3:])
        if stat in names:
            continue
        if not stat:
            raise ConfigError(f"{metric!r}: expected {metric}.<statistic>, one of: "
                              f"{', '.join(names)}", file=str(path), key=key)
        why = (f" (it needs {' and '.join(NEEDS[n] for n in WORKLOAD_STATS[stat].split())})"
               if stat in WORKLOAD_STATS else "")
        raise ConfigError(f"{metric!r}: run {run.name!r} will have no workload statistic "
                          f"{stat!r}{why}; it will have: {', '.join(names)}",
                          file=str(path), key=key)


def _resolve_workload_paths(workload: object, path: Path) -> None:
    """The files a workload section names, made absolute in place, relative to the
    experiment file `path` like the arch files: a SCALE-Sim topology CSV, and the Python
    file of a model from a file ("file.py:factory"), so that config.json records which file
    ran and a sweep's Dask workers load the same one wherever their folder is."""
    if not isinstance(workload, dict):
        return
    if isinstance(workload.get("scalesim_topology"), str):
        workload["scalesim_topology"] = str((path.parent / workload["scalesim_topology"])
                                            .resolve())
    model = workload.get("model")
    if isinstance(model, str) and is_file_model(model):
        try:
            workload["model"] = resolve(model, path.parent)
        except ConfigError as err:
            raise err.in_file(str(path)) from None


def _check_speculation(path: Path, spec: ExperimentSpec, i: int, workload: WorkloadSpec,
                       arch: ArchConfig) -> None:
    """A run whose workload is speculative needs a speculator in its design: the capture
    zeroes the outputs the prediction zeroes, which changes the work of a processor that
    computes them all, without a word (a global `speculative_relu` reached the dense run
    too). Set it per run (`runs.N.workload_set: [speculative_relu=true]`) instead."""
    if not workload.speculative_relu or arch.speculator is not None:
        return
    run = spec.runs[i]
    key = ("workload.speculative_relu" if spec.workload.speculative_relu
           else f"runs.{i}.workload_set")
    raise ConfigError(f"run {run.name!r} has no speculator in its architecture {run.arch} to "
                      "run a speculative_relu workload (set it on the runs whose design "
                      "has one: runs.N.workload_set: [speculative_relu=true])",
                      file=str(path), key=key)


def _check_weight_update(path: Path, spec: ExperimentSpec, i: int, workload: WorkloadSpec,
                         arch: ArchConfig) -> None:
    """A weight update runs on the vector unit (`mappings.update`): a run whose design has
    none would leave it out of the iteration without a word."""
    if workload.weight_update == "none" or arch.vector_unit is not None:
        return
    run = spec.runs[i]
    key = ("workload.weight_update" if spec.workload.weight_update != "none"
           else f"runs.{i}.workload_set")
    raise ConfigError(f"run {run.name!r} has no vector unit in its architecture {run.arch} to "
                      f"apply the weight update ({workload.weight_update}) on; give it a "
                      "vector_unit, or drop weight_update", file=str(path), key=key)


# Prunings that leave every weight's position implied by the structure, so that values
# alone describe the weights (`values_only`): PermDNN's permuted diagonals, and those that
# keep whole blocks or every weight.
POSITIONS_IMPLIED = ("permuted_diagonal", "block_circulant", "dense")


def _check_weight_storage(path: Path, spec: ExperimentSpec, i: int, arch: ArchConfig) -> None:
    """What a design stores of the weights must describe the run's weights: `values_only`
    keeps no index, so a pruning whose zeros fall anywhere would read fewer bytes than any
    real format; and a value of two bits or fewer is a ternary code, which weights the run
    does not ternarize do not fit (a 2-bit fp16 weight: a fifth of the DRAM bytes)."""
    sparsity, run = arch.sparsity, spec.runs[i]
    pruning = run.pruning
    ternary = pruning.method == "ternarize" or pruning.ternary
    if sparsity.weight_format == "values_only" and (pruning.method not in POSITIONS_IMPLIED
                                                    or pruning.ternary):
        raise ConfigError(
            f"run {run.name!r}: its design stores the weights values_only (no index: "
            f"sparsity.weight_format in {run.arch}), and pruning {pruning.method}"
            f"{' with ternary' if pruning.ternary else ''} leaves zeros whose positions the "
            "values alone cannot give; expected a pruning whose structure implies them "
            f"({', '.join(POSITIONS_IMPLIED)}), or a format with an index (csr, bitmap, "
            "...)", file=str(path), key=f"runs.{i}.pruning")
    if sparsity.weight_bits is not None and sparsity.weight_bits <= 2 and not ternary:
        raise ConfigError(
            f"run {run.name!r}: its design stores a weight in {sparsity.weight_bits} bits "
            f"(sparsity.weight_bits in {run.arch}), a ternary code, and pruning "
            f"{pruning.method} does not ternarize the weights; expected ternarize, "
            "ternary: true, or more bits", file=str(path), key=f"runs.{i}.pruning")


REGROWING = {"set": "SET", "rigl": "RigL"}  # methods whose masks move every update_every


def _check_regrowth(path: Path, spec: ExperimentSpec, i: int, workload: WorkloadSpec) -> None:
    """SET and RigL drop and regrow weights between training iterations: without a
    training, or with fewer iterations than one update takes, their masks never move and
    the run is magnitude pruning under another name, its parameters read by nothing."""
    pruning = spec.runs[i].pruning
    if pruning.method not in REGROWING:
        return
    name, training = REGROWING[pruning.method], workload.training
    given = [k for k in ("update_every", "regrow_fraction") if k in pruning.model_fields_set]
    if training is None and given:
        raise ConfigError(f"{name} drops and regrows weights between training iterations, and "
                          "this run's workload trains none (workload.training): drop it, or "
                          "train", file=str(path), key=f"runs.{i}.pruning.{given[0]}")
    if training is not None and pruning.update_every > training.iterations:
        raise ConfigError(f"{name} updates its masks every {pruning.update_every} iterations, "
                          f"and the workload trains {training.iterations}: they would never "
                          f"move; expected at most {training.iterations}", file=str(path),
                          key=f"runs.{i}.pruning.update_every")


def _check_trained_form(path: Path, spec: ExperimentSpec, i: int,
                        workload: WorkloadSpec) -> None:
    """Training keeps a pruning's zeros (its mask, applied after every step), not the form
    of its values: ternary weights and block-circulant ones would leave it after one SGD
    step, and the run would count 2-bit or FFT-domain work for weights that are neither
    (training such weights needs latent full-precision copies: not modelled)."""
    pruning = spec.runs[i].pruning
    form = ("ternary" if pruning.method == "ternarize" or pruning.ternary else
            "block-circulant" if pruning.method == "block_circulant" else None)
    if form is None or workload.training is None:
        return
    raise ConfigError(f"run {spec.runs[i].name!r}: training keeps a pruning's zeros, not its "
                      f"values' form: the {form} weights of pruning {pruning.method} would not "
                      "stay so after an SGD step (training them is not modelled); let this "
                      f"run not train (runs.{i}.workload_set: [training=null]: it prunes "
                      "the untrained model)", file=str(path), key=f"runs.{i}.pruning")


def _check_gradual(path: Path, spec: ExperimentSpec, workloads: dict[str, WorkloadSpec]
                   ) -> None:
    """A gradual schedule that no run follows: only magnitude pruning has one
    (`mappings.training`), and every other method trained as if it were off."""
    gradual = [i for i, run in enumerate(spec.runs)
               if (training := workloads[run.name].training) is not None and training.gradual]
    if gradual and all(spec.runs[i].pruning.method != "magnitude" for i in gradual):
        methods = ", ".join(sorted({spec.runs[i].pruning.method for i in gradual}))
        own = spec.workload.training is None or not spec.workload.training.gradual
        raise ConfigError("only magnitude pruning has a gradual schedule, and no run that "
                          f"trains with it prunes by magnitude ({methods}): drop it, or prune "
                          "by magnitude", file=str(path),
                          key=f"runs.{gradual[0]}.workload_set" if own
                          else "workload.training.gradual")


def _naming_the_override(err: ConfigError, run_name: str, named: list[tuple[str, str]],
                         without: Callable[[], object]) -> ConfigError:
    """`err` of run `run_name`'s architecture, naming the `--set` that set its key
    (`arch.*.pe_cluster.pes=-1`: the file alone holds no such value), if one did, or else
    those that set a key within the section it is about (a check of `noc` as a whole, its
    shape against its topology, after `--set arch.dense.noc.shape.1=0`), or else, where the
    design loads `without` them, all of them (a new `noc` leaves `global_buffer_router`
    naming no router of it: the file's key is named, and it is right as written)."""
    if not (err.file and err.key):
        return err
    for given, item in reversed(named):  # the last one set wins
        key = item.partition("=")[0]
        if err.key == key or err.key.startswith(f"{key}."):
            return ConfigError(f"{err.message} (set by --set {given}, for run {run_name})",
                               file=err.file, key=err.key)
    inside = [given for given, item in named
              if item.partition("=")[0].startswith(f"{err.key}.")]
    if inside:  # "with": the file's own values in the section may be the ones at fault
        return ConfigError(f"{err.message} (with --set {', --set '.join(inside)}, for run "
                           f"{run_name})", file=err.file, key=err.key)
    if named:
        try:
            without()
        except ConfigError:
            return err  # the file (and the run's arch_set) at fault whatever was set
        given = [given for given, _ in named]
        return ConfigError(f"{err.message} (with --set {', --set '.join(given)}, for run "
                           f"{run_name})", file=err.file, key=err.key)
    return err


def _arch_set_items(arch_sets: dict[str, list[str]], run_name: str) -> list[tuple[str, str]]:
    """The `--set arch.*.` and `arch.<run>.` items that apply to run `run_name`, in the order
    they are applied: each as given (`arch.*.noc.shape.1=0`) and as its architecture's
    override (`noc.shape.1=0`, `split_overrides`)."""
    return [(f"arch.{who}.{item}", item) for who in ("*", run_name)
            for item in arch_sets.get(who, [])]


def arch_setter(experiment: Experiment, i: int, key: str) -> str | None:
    """What set run i's architecture key `key` (`global_buffer.capacity_kib`) over its file,
    as the user wrote it: the last of the run's `arch_set` items, then the `--set arch.*.`
    and `--set arch.<run>.` items, in the order `load_experiment` applies them; None when
    the file's own value stands. So that an error about the value can name where it came
    from."""
    run = experiment.spec.runs[i]
    _, arch_sets = split_overrides(experiment.overrides, experiment.path)
    applied = [(f"runs.{i}.arch_set item {item}", item) for item in run.arch_set]
    applied += [(f"--set {given}", item) for given, item in _arch_set_items(arch_sets, run.name)]
    for given, item in reversed(applied):
        if item.partition("=")[0] == key:
            return given
    return None


def _run_arch(path: Path, i: int, arch_path: Path, arch_set: list[str],
              command_line: list[str]) -> ArchConfig:
    """Run i's architecture: its file, the run's `arch_set` and the command line's
    overrides, in that order; an error names where it comes from (the arch file, the
    experiment's runs.i.arch_set, or the arch file's key for `--set`). The file is read
    again only to place an error."""
    try:
        return load_arch(arch_path, [*arch_set, *command_line])
    except ConfigError:
        if not arch_set:
            raise
        load_arch(arch_path)  # the file's own mistakes name the file
        try:
            load_arch(arch_path, arch_set)
        except ConfigError as err:
            raise ConfigError(f"{err.key + ': ' if err.key else ''}{err.message} (in the "
                              f"architecture {arch_path.name})", file=str(path),
                              key=f"runs.{i}.arch_set") from None
        raise


# Architecture files with a top-level `kind:` describe designs other than the training
# processors of `ArchConfig` (which have no `kind`): their schema, and the script that runs
# them (`desim run` simulates training processors only).
DESIGN_KINDS: dict[str, tuple[type[ReramArch] | type[SnnArch], str]] = {
    "reram_crossbar": (ReramArch, "examples/bitslice_reram.py"),
    "snn_systolic": (SnnArch, "examples/snn_split_time.py"),
}
Design = ArchConfig | ReramArch | SnnArch


def load_design(path: str | Path, kind: str | None = None,
                overrides: list[str] | None = None) -> Design:
    """Any architecture file, validated by the schema its `kind` names (no kind: a training
    processor, `ArchConfig`). With `kind` given, a file of another kind is a ConfigError."""
    data = load_yaml(path)
    if "runs" in data and "workload" in data:
        raise ConfigError("this is an experiment file, not an architecture: its runs name "
                          "their architecture files (runs.N.arch)", file=str(path))
    return design_from(data, path, kind, overrides)


def design_from(data: dict[str, Any], path: str | Path, kind: str | None = None,
                overrides: list[str] | None = None) -> Design:
    """A design from `data`, read from `path`, with `key.path=value` overrides: validated
    as `load_design` says."""
    created: list[tuple[str, str]] = []
    data = apply_overrides(data, overrides or [], str(path), created)
    found = data.get("kind")
    if found is not None and (not isinstance(found, str) or found not in DESIGN_KINDS):
        raise ConfigError(f"unknown kind {found!r}; expected one of: "
                          f"{', '.join(DESIGN_KINDS)} (or no kind: a training processor)",
                          file=str(path), key="kind")
    if kind is not None and found != kind:
        raise ConfigError(f"expected kind {kind}, got {found or 'none (a training processor)'}",
                          file=str(path), key="kind")
    schema = DESIGN_KINDS[found][0] if found else ArchConfig
    _refuse_added_components(schema, created, path)
    try:
        design = validate(schema, data, path)
    except ConfigError as err:
        raise _kind_forgotten(err, data) if found is None else err from None
    _check_whole_numbers(design, path)
    if isinstance(design, ArchConfig):
        _check_graph(design, path)
    return design


def _refuse_added_components(schema: type[BaseModel], created: list[tuple[str, str]],
                             path: str | Path) -> None:
    """A ConfigError for an override that reaches into an optional component the design
    lacks (`vector_unit.fused_residual=false` on a systolic array without a vector unit):
    setting it would add the component, every other key at its default, and change what
    is simulated, where the user meant to adjust a switch. Adding one is said whole."""
    for section, item in created:
        if optional_section(schema, section.split(".")):
            key, _, value = item.partition("=")
            rest = key.removeprefix(f"{section}.")
            model = section_model(schema, section.split("."))
            needed = [name for name, field in model.model_fields.items()
                      if field.is_required() and name != rest.split(".")[0]]
            raise ConfigError(f"the design has no {section}; setting a key inside it would "
                              f"add one, every other key at its default. To add it, give "
                              f"the section whole"
                              + (f", with its required {', '.join(needed)}" if needed else "")
                              + f": {section}={{{rest.replace('.', ': {')}: {value}"
                              f"{'}' * (rest.count('.') + 1)}", file=str(path), key=section)


def _kind_forgotten(err: ConfigError, data: dict[str, Any]) -> ConfigError:
    """`err` of a file read as a training processor (no `kind:`) whose keys are, but for
    one at most (a misspelt `kind`), those of another kind's design: said, since "unknown
    key" alone sent the user looking for a typo in a key that was right."""
    keys = set(data)
    for name, (schema, _) in DESIGN_KINDS.items():
        if len(keys - set(schema.model_fields)) <= 1 and keys - set(ArchConfig.model_fields):
            return ConfigError(f"{err.message} (the file's keys are a {name} design's: is its "
                               f"`kind: {name}` missing or misspelt?)", file=err.file,
                               key=err.key)
    return err


# The largest whole number a design file may give (a count, a size in KiB, a latency in
# cycles): the mapper counts a layer's tiles in 32-bit columns and its cycles in 64 bits, so
# a PE count or a bitmap width of 10^12 failed there with a traceback, and a fill of 10^18
# cycles a tile wrapped around to a negative cycle count in summary.json.
MAX_DESIGN_INT = 2**31 - 1


def _check_whole_numbers(design: Design, path: str | Path) -> None:
    """Every whole number of the validated design at most MAX_DESIGN_INT, else a
    ConfigError naming the file and its key."""
    def walk(value: Any, key: list[str]) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), [*key, name])
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, [*key, str(i)])
        elif isinstance(value, dict):
            for name, item in value.items():
                walk(item, [*key, str(name)])
        elif isinstance(value, int) and not isinstance(value, bool) and value > MAX_DESIGN_INT:
            raise ConfigError(f"expected at most {MAX_DESIGN_INT} (2^31 - 1), got {value}",
                              file=str(path), key=".".join(key))

    walk(design, [])


def _check_graph(arch: ArchConfig, path: str | Path) -> None:
    """The processor's graph built once, so that its errors (a NoC in pieces, a buffer
    router that is none of the routers) name the file wherever a design is loaded from one
    (`desim.api`, `load_arch`, `desim topology`), as the schema's do, and not only where a
    processor is built from it."""
    from arch.accelerator import build_graph

    try:
        build_graph(arch)
    except ConfigError as err:
        raise err.in_file(str(path)) from None


def load_arch(path: str | Path, overrides: list[str] | None = None) -> ArchConfig:
    """A training processor's architecture file (what `desim run` simulates), with
    `key.path=value` overrides."""
    design = load_design(path, overrides=overrides)
    if not isinstance(design, ArchConfig):
        script = DESIGN_KINDS[design.kind][1]
        raise ConfigError(f"a {design.kind} design is not a training processor: desim run "
                          f"cannot simulate it; it runs through {script} --arch FILE",
                          file=str(path), key="kind")
    return design
