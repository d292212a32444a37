"""A results folder's config.json read back as the experiment it records, so that
`desim run DIR/config.json` (or `desim run DIR`) runs that study again: its experiment as
resolved, its architectures as they were resolved (each run's `arch_set` and `--set` applied),
not the files they came from, which may have changed since. gem5 dumps its resolved
configuration beside its statistics; this makes the dump an input too.

config.json records values an experiment file leaves out (every pruning parameter, a model's
default input shape), and records which bytes of a model file or topology CSV ran. Reading it
back drops the defaults a method does not read, as a file that never gave them, and refuses a
file whose bytes changed since: a rerun of other bytes is not this run's."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desim.errors import ConfigError
from mappings.model_path import file_sha256, is_file_model
from mappings.specs import TOPOLOGY_UNUSED, PruningSpec, WorkloadSpec


def is_resolved(raw: dict[str, Any]) -> bool:
    """Whether `raw` is a config.json (`desim.runner.resolved_config`), not an experiment."""
    return "experiment" in raw and "architectures" in raw and "runs" not in raw


@dataclass
class Recorded:
    """What a config.json gives to run again."""

    experiment: dict[str, Any]  # its experiment section, as an experiment file gives it
    designs: dict[str, Any]     # each run's resolved architecture, by run name
    overrides: list[str]        # the --set items already applied to both
    made_by: dict[str, Any]     # which desim wrote it (`desim.results.provenance`)
    source: Path                # the experiment file its relative paths are from
    input_shapes: dict[str, list[int]] = field(default_factory=dict)  # runs' recorded inputs


def read_resolved(raw: dict[str, Any], path: Path) -> Recorded:
    """config.json's sections, checked for shape, with the records an experiment file does
    not take removed (each file's sha256 checked against the file as it is now)."""
    where = str(path)
    experiment, designs = raw["experiment"], raw["architectures"]
    overrides, made_by = raw.get("overrides", []), raw.get("desim", {})
    if not isinstance(experiment, dict):
        raise ConfigError("expected the experiment as a mapping", file=where, key="experiment")
    if not isinstance(designs, dict):
        raise ConfigError("expected a mapping of run names to designs", file=where,
                          key="architectures")
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError("expected a list of key.path=value items", file=where,
                          key="overrides")
    experiment = copy.deepcopy(experiment)
    source = raw.get("experiment_file")
    recorded = Recorded(experiment, designs, list(overrides),
                        made_by if isinstance(made_by, dict) else {},
                        Path(source) if isinstance(source, str) else path)
    workload = experiment.get("workload")
    if isinstance(workload, dict):
        _check_files(workload, where, "experiment.workload")
    runs = experiment.get("runs")
    for i, run in enumerate(runs if isinstance(runs, list) else []):
        if not isinstance(run, dict):
            continue
        _check_files(run, where, f"experiment.runs.{i}")
        shape = run.pop("input_shape", None)
        if shape is not None and isinstance(run.get("name"), str):
            recorded.input_shapes[run["name"]] = shape
        if isinstance(run.get("pruning"), dict):
            run["pruning"] = _as_given(run["pruning"])
    if isinstance(workload, dict):
        _drop_workload_defaults(workload, list(recorded.input_shapes.values()))
    return recorded


def _check_files(section: dict[str, Any], where: str, key: str) -> None:
    """The records of the files a workload section ran (`model_file`,
    `scalesim_topology_sha256`) removed from `section`, once the files they name are found
    unchanged."""
    record = section.pop("model_file", None)
    if isinstance(record, dict):
        model = section.get("model")
        ran = model if isinstance(model, str) and is_file_model(model) else None
        if ran is None:  # a run's record: its workload_set names the model
            ran = f"{record.get('path')}:recorded"
        _same_bytes(record.get("sha256"), lambda: file_sha256(ran), record.get("path"),
                    where, f"{key}.model_file.sha256")
    digest = section.pop("scalesim_topology_sha256", None)
    if digest is not None:
        from mappings.scalesim import topology_sha256  # imports torch: only for a topology

        topology = section.get("scalesim_topology")
        if not isinstance(topology, str):  # a run's record: its workload_set names the CSV
            return
        _same_bytes(digest, lambda: topology_sha256(topology), topology, where,
                    f"{key}.scalesim_topology_sha256")


def _same_bytes(recorded: object, now: Any, name: object, where: str, key: str) -> None:
    """A ConfigError unless the file's sha256 `now()` is the one recorded."""
    try:
        digest = now()
    except ConfigError as err:
        raise ConfigError(f"{err.message} (the run this file records read {name})",
                          file=where, key=key) from None
    if digest != recorded:
        raise ConfigError(f"{name} has changed since the run this file records (sha256 "
                          f"{str(recorded)[:12]}..., now {digest[:12]}...): running it again "
                          "would not be that run; run its experiment file instead",
                          file=where, key=key)


def _as_given(pruning: dict[str, Any]) -> dict[str, Any]:
    """A run's pruning without the parameters its method does not read, where they hold
    their defaults (config.json records every one; an experiment file giving one is
    refused, as a parameter that changes nothing). Any other value is kept, and refused by
    the schema as the file's would be."""
    try:
        takes = PruningSpec.model_construct(**pruning).takes()
    except (TypeError, KeyError):  # no such method: the schema says so
        return pruning
    fields = PruningSpec.model_fields
    return {k: v for k, v in pruning.items()
            if k == "method" or k in takes or k not in fields
            or v != _json_default(PruningSpec, k)}


def _json_default(model: type[Any], name: str) -> Any:
    """The default of `model`'s field `name`, as config.json writes it (tuples as lists)."""
    default = model.model_fields[name].get_default(call_default_factory=True)
    return list(default) if isinstance(default, tuple) else default


def _drop_workload_defaults(workload: dict[str, Any], run_inputs: list[Any]) -> None:
    """The workload as its file gave it: a SCALE-Sim topology's unused keys at their
    defaults dropped, and a model's input shape dropped where it is the model's default,
    unless it may have been given: a run whose workload_set names another model takes that
    model's default input, unless the experiment gave one. The runs' recorded inputs
    (`run_inputs`) tell: all the experiment's shape, it is kept (given or not, those runs
    read it); any other, it was not given."""
    if workload.get("scalesim_topology") is not None:
        for key in TOPOLOGY_UNUSED:
            if key in workload and workload[key] == _json_default(WorkloadSpec, key):
                del workload[key]
        return
    model, shape = workload.get("model"), workload.get("input_shape")
    if not isinstance(model, str) or is_file_model(model) or shape is None:
        return
    from mappings.models import default_input_shape

    try:
        default = list(default_input_shape(model, workload.get("model_args") or {}))
    except (ConfigError, TypeError):  # an unknown model: the workload's check says so
        return
    if shape == default and not (run_inputs and all(r == shape for r in run_inputs)):
        del workload["input_shape"]


def made_elsewhere(made_by: dict[str, Any]) -> str | None:
    """Why a rerun of config.json may not give its run's figures: another desim wrote it
    (another commit, or a modified tree); None when this one did, or it cannot be told."""
    from desim.results import provenance

    here = provenance()

    def name(made: dict[str, Any]) -> str:
        commit = made.get("commit")
        text = (f"commit {commit[:10]}" if isinstance(commit, str)
                else f"version {made.get('version')}")
        diff = made.get("diff_sha256")
        return text + (f" (modified: diff {diff[:10]})" if isinstance(diff, str) else "")

    keys = ("version", "commit", "diff_sha256")
    if not made_by or all(made_by.get(k) == here.get(k) for k in keys):
        return None
    return f"written by desim {name(made_by)}; this is {name(here)}: figures may differ"
