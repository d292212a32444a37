"""A results folder's config.json: written (`resolved_config`), and read back as the study
it records, so that `desim run DIR` (or `desim run DIR/config.json`) runs it again. gem5
dumps its resolved configuration beside its statistics; this makes the dump an input too.

config.json holds each section twice. `experiment` and `architectures` are the resolved
ones, every default written out, for reading. `given` is what the user gave, which is what a
rerun reads: the experiment as its file and the `--set` items made it, and each run's
design as its architecture file, the run's `arch_set` and the `--set arch.` items made it,
before validation filled in defaults. A rerun reads `given`, not the resolved sections,
because a default is a rule, not a value: a method's unused parameters, a model's input
shape, a NoC's routing follow from other keys, and new `--set` items must move them as they
would in the file (an experiment file giving them is refused, or reads otherwise). The
rerun then checks that `given` still resolves to the recorded sections: a file the study
read whose bytes changed is refused, and so is a config.json edited by hand (a record is
changed by `--set` items, which apply over it)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desim.errors import ConfigError
from mappings.model_path import file_sha256, is_file_model, split

if TYPE_CHECKING:
    from desim.experiment import Experiment

# config.json's sections (`resolved_config`)
SECTIONS = ("experiment_file", "experiment", "architectures", "given", "overrides", "desim")


def resolved_config(experiment: Experiment) -> dict[str, Any]:
    """config.json: the experiment and its architectures as resolved, what they were given
    (`given`), and the `--set` items applied over the file; a sweep's point files record the
    same (`desim.sweep`). `read_resolved` reads it back."""
    from desim.results import provenance

    return {
        # the file the experiment's relative paths are from (`desim run` of this file
        # resolves a run's workload_set from there)
        "experiment_file": os.path.abspath(experiment.source),  # (a link as given: its
        # folder is the one the run's relative paths were read from)
        **resolved_sections(experiment),
        # what the user gave, before validation filled in defaults: what `desim run` of this
        # file reads (`desim.resolved`)
        "given": {"experiment": json_data(experiment.raw),
                  "architectures": {n: json_data(d)
                                    for n, d in experiment.given_archs.items()}},
        # the --set items applied over the experiment file, which a reader of the file alone
        # would not know (desim report lists them)
        "overrides": experiment.overrides,
        "desim": provenance(),
    }


def resolved_sections(experiment: Experiment) -> dict[str, Any]:
    """config.json's `experiment` and `architectures`: every default written out, and the
    bytes of each file the workload read (`config_digest` hashes them)."""
    from mappings.scalesim import topology_sha256  # (torch: not for a typo's error)
    from mappings.workload import input_shape

    resolved = experiment.spec.model_dump(mode="json")
    if experiment.spec.workload.model:  # the input the capture used, default or not
        resolved["workload"]["input_shape"] = list(input_shape(experiment.spec.workload))
    # a model from the user's file: which file, and exactly which bytes, ran
    if is_file_model(experiment.spec.workload.model):
        resolved["workload"]["model_file"] = model_file(experiment.spec.workload.model)
    # a SCALE-Sim topology: exactly which bytes of it ran (its path alone would say the
    # same of an edited file)
    topology = experiment.spec.workload.scalesim_topology
    if topology is not None:
        resolved["workload"]["scalesim_topology_sha256"] = topology_sha256(topology)
    for i, run_spec in enumerate(experiment.spec.runs):  # a run's workload_set naming another
        workload = experiment.workloads[run_spec.name]
        if is_file_model(workload.model) and workload.model != experiment.spec.workload.model:
            resolved["runs"][i]["model_file"] = model_file(workload.model)
        if workload.scalesim_topology not in (None, topology):
            resolved["runs"][i]["scalesim_topology"] = workload.scalesim_topology
            resolved["runs"][i]["scalesim_topology_sha256"] = topology_sha256(
                workload.scalesim_topology)
        if run_spec.workload_set and workload.model:  # the input this run's model read
            resolved["runs"][i]["input_shape"] = list(input_shape(workload))
    return {"experiment": resolved,
            "architectures": {n: a.model_dump(mode="json")
                              for n, a in experiment.archs.items()}}


def model_file(model: str) -> dict[str, str]:
    """config.json's record of a model from a file ("file.py:factory", its path resolved
    by the experiment loader): the file's path and the sha256 of its bytes."""
    return {"path": str(split(model)[0]), "sha256": file_sha256(model)}


def config_digest(config: dict[str, Any]) -> str:
    """The sha256 of a config.json's resolved sections (its experiment and architectures),
    which summary.json records: a results folder's files are one run's when they agree. A
    rerun of the same study resolves to the same sections, so its summary.json is the
    same bytes."""
    text = json.dumps([config.get("experiment"), config.get("architectures")], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def stats_digest(stats: dict[str, Any]) -> str:
    """The sha256 of a results folder's stats.json as data (each run's statistics), which
    summary.json records beside `config_digest`: a stats.json copied from another folder
    (a what-if of the same design) was drawn as this run's by `desim topology --stats` and
    the report's topology, without a word."""
    as_read = json.loads(json.dumps(stats))  # keys as text, as the file gives them back
    return hashlib.sha256(json.dumps(as_read, sort_keys=True).encode()).hexdigest()


def is_resolved(raw: dict[str, Any]) -> bool:
    """Whether `raw` is a config.json, not an experiment file (which has `runs`)."""
    return "runs" not in raw and bool({"given", "architectures", "desim"} & set(raw))


@dataclass
class Recorded:
    """What a config.json gives to run again, and what it says the run resolved to."""

    experiment: dict[str, Any]           # given: the experiment, as its file gives one
    designs: dict[str, dict[str, Any]]   # given: each run's design data, by run name
    resolved: dict[str, Any]             # the config.json: its resolved sections
    overrides: list[str]                 # the --set items already applied to `given`
    made_by: dict[str, Any]              # which desim wrote it (`provenance`)
    source: Path                         # the experiment file its relative paths are from
    notes: list[str] = field(default_factory=list)  # what a rerun should say


def read_resolved(raw: dict[str, Any], path: Path) -> Recorded:
    """config.json's sections, checked for shape."""
    where = str(path)
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown key; expected one of: {', '.join(SECTIONS)}", file=where,
                          key=unknown[0])
    given = raw.get("given")
    if given is None:
        source = raw.get("experiment_file")
        instead = f"its experiment file ({source})" if isinstance(source, str) else \
            "the experiment file it came from"
        raise ConfigError("no given section: this config.json was written before desim could "
                          f"run one again (2026-12-07); run {instead} instead", file=where,
                          key="given")
    for section, value in (("given", given), ("experiment", raw.get("experiment")),
                           ("architectures", raw.get("architectures"))):
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {_kind(value)}", file=where,
                              key=section)
    for section in ("experiment", "architectures"):
        if not isinstance(given.get(section), dict):
            raise ConfigError(f"expected a mapping, got {_kind(given.get(section))}",
                              file=where, key=f"given.{section}")
    extra = sorted(set(given) - {"experiment", "architectures"})
    if extra:
        raise ConfigError("unknown key; expected one of: experiment, architectures",
                          file=where, key=f"given.{extra[0]}")
    designs = given["architectures"]
    for name, design in designs.items():
        if not isinstance(design, dict):
            raise ConfigError(f"expected a design's mapping, got {_kind(design)}", file=where,
                              key=f"given.architectures.{name}")
    overrides, made_by = raw.get("overrides", []), raw.get("desim", {})
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError("expected a list of key.path=value items", file=where,
                          key="overrides")
    if not isinstance(made_by, dict):
        raise ConfigError(f"expected a mapping (version, commit), got {_kind(made_by)}",
                          file=where, key="desim")
    source = raw.get("experiment_file", str(path))
    if not isinstance(source, str) or not source or "\0" in source:
        raise ConfigError("expected the path of the experiment file the study came from",
                          file=where, key="experiment_file")
    return Recorded(copy.deepcopy(given["experiment"]), copy.deepcopy(designs), raw,
                    list(overrides), made_by, Path(source))


def check_designs(recorded: Recorded, runs: list[str], path: Path) -> None:
    """Every design config.json gives is one of its runs'."""
    for name in recorded.designs:
        if name not in runs:
            raise ConfigError(f"a design for no run; runs: {', '.join(runs)}", file=str(path),
                              key=f"given.architectures.{name}")


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def check_against_record(recorded: Recorded, config: dict[str, Any], path: Path,
                         new_items: bool) -> None:
    """The rerun's resolved sections `config` (`resolved_sections`) against the ones
    recorded: a file it reads whose bytes changed is refused; without new `--set` items
    (`new_items`), any other difference is refused too where the same desim wrote the record
    (a resolved section edited by hand: the rerun reads `given`), and noted where another
    desim did (its defaults may differ)."""
    now = dict(_files(config))
    for name, (digest, key) in _files(recorded.resolved):
        if name in now and now[name][0] != digest:
            raise ConfigError(f"{name} has changed since the run this file records (sha256 "
                              f"{str(digest)[:12]}..., now {now[name][0][:12]}...): running it "
                              "again would not be that run; run its experiment file instead",
                              file=str(path), key=key)
    if new_items:
        return
    for section in ("experiment", "architectures"):
        found = _first_difference(recorded.resolved[section], config[section], section)
        if found is None:
            continue
        key, was, now_value = found
        if made_elsewhere(recorded.made_by) is None:
            raise ConfigError(f"is {_text(was)}, but what the run was given resolves to "
                              f"{_text(now_value)}: the file was edited after its run. It is "
                              "the run's record: change a rerun with --set items, which apply "
                              "over it", file=str(path), key=key)
        recorded.notes.append(f"this desim resolves {key} to {_text(now_value)} (the record: "
                              f"{_text(was)})")
        return


def _files(config: dict[str, Any]) -> list[tuple[str, tuple[Any, str]]]:
    """The files a resolved configuration records the bytes of: (path, (sha256, key))."""
    found = []
    experiment = config.get("experiment")
    if not isinstance(experiment, dict):
        return found
    runs = experiment.get("runs")
    sections = [("experiment.workload", experiment.get("workload"))]
    sections += [(f"experiment.runs.{i}", run)
                 for i, run in enumerate(runs if isinstance(runs, list) else [])]
    for key, section in sections:
        if not isinstance(section, dict):
            continue
        model = section.get("model_file")
        if isinstance(model, dict) and isinstance(model.get("path"), str):
            found.append((model["path"], (model.get("sha256"), f"{key}.model_file.sha256")))
        topology = section.get("scalesim_topology")
        if isinstance(topology, str) and "scalesim_topology_sha256" in section:
            found.append((topology, (section["scalesim_topology_sha256"],
                                     f"{key}.scalesim_topology_sha256")))
    return found


def _first_difference(was: Any, now: Any, key: str) -> tuple[str, Any, Any] | None:
    """The first dotted key where `was` and `now` differ, with both values; None if equal."""
    if isinstance(was, dict) and isinstance(now, dict):
        for name in [*was, *(k for k in now if k not in was)]:
            found = _first_difference(was.get(name, _ABSENT), now.get(name, _ABSENT),
                                      f"{key}.{name}")
            if found:
                return found
        return None
    if isinstance(was, list) and isinstance(now, list) and len(was) == len(now):
        for i, (a, b) in enumerate(zip(was, now, strict=True)):
            found = _first_difference(a, b, f"{key}.{i}")
            if found:
                return found
        return None
    return None if was == now else (key, was, now)


_ABSENT = object()


def _text(value: Any) -> str:
    return "absent" if value is _ABSENT else json.dumps(value)


def made_elsewhere(made_by: dict[str, Any]) -> str | None:
    """Why a rerun of config.json may not give its run's figures: another desim wrote it
    (another commit, or a modified tree); None when this one did, or it cannot be told."""
    from desim.results import provenance

    here = provenance()

    def name(made: dict[str, Any]) -> str:
        commit = made.get("commit")
        text = f"{made.get('version')}" + (f", commit {commit[:10]}"
                                           if isinstance(commit, str) else "")
        diff = made.get("diff_sha256")
        return text + (f" (modified: diff {diff[:10]})" if isinstance(diff, str) else "")

    keys = ("version", "commit", "diff_sha256")
    if not made_by or all(made_by.get(k) == here.get(k) for k in keys):
        return None
    return f"written by desim {name(made_by)}; this is {name(here)}: figures may differ"


def rerun_notes(recorded: Recorded | None) -> list[str]:
    """What a rerun of `recorded` says before it runs: which desim wrote the record, if
    another, and the first key this one resolves otherwise."""
    if recorded is None:
        return []
    differs = made_elsewhere(recorded.made_by)
    return ([differs] if differs else []) + recorded.notes


def json_data(data: Any) -> Any:
    """`data` (a YAML file's, after overrides) as config.json can hold it: a value JSON has
    no type for (a YAML date) as its text, which the rerun's validation then judges."""
    return json.loads(json.dumps(data, default=str))
