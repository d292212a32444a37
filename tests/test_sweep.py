"""`desim sweep`: a sweep gives the numbers of single runs, survives SIGKILL without losing or
repeating a point, records failing points and goes on; planning, ids, Pareto and plots.

The simulated tests use the quickstart study with LeNet-5 at batch 2 (about a second a run)
on a local Dask cluster of two worker processes: the sweep's machinery does not depend on the
model, and ResNet-18 made these tests a third of the suite's time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from desim.errors import ConfigError
from desim.experiment import load_experiment
from desim.runner import run, summarize
from desim.summary_text import plural
from desim.sweep import (
    _Bar,
    _check_manifest,
    _compute,
    _Log,
    _write_manifest,
    fingerprint,
    load_sweep_spec,
    sweep,
    time_left,
)
from desim.sweep_dask import CANCEL_BEFORE_START_RACE
from desim.sweep_plots import plot_metric, plot_pareto, plotted_rows
from desim.sweep_results import gather, pareto_mask
from desim.sweep_spec import Point, SweepSpec, plan_points, point_id, yaml_text
from mappings.workload import capture_workload

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "experiments" / "quickstart.yaml"
ARCH = ROOT / "configs" / "arch"
PHASES = ["FF", "BP", "WG", "total"]


def write_experiment(folder: Path, axes: dict[str, Any], *, single_run: bool = False,
                     **sweep_keys: Any) -> Path:
    """The quickstart study with LeNet-5 at batch 2 and a sweep section, written to `folder`
    (arch paths absolute); `single_run` keeps only the HPPU-like run (the baseline then)."""
    data = yaml.safe_load(QUICKSTART.read_text())
    data["workload"].update(model="lenet5", model_args={}, input_shape=[1, 28, 28], batch=2)
    for run_spec in data["runs"]:
        run_spec["arch"] = str((QUICKSTART.parent / run_spec["arch"]).resolve())
    if single_run:
        data["runs"] = data["runs"][1:]
        data["baseline"] = data["runs"][0]["name"]
    data["sweep"] = {"mode": "grid", "axes": axes, **sweep_keys}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def totals(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["phase"] == "total"]


# --- planning, ids, overrides (no simulation) -------------------------------------------------

def test_grid_plans_every_combination_with_stable_ids():
    spec = SweepSpec(axes={"workload.batch": [1, 2, 2], "runs.1.pruning.sparsity": [0.5, 0.7]})
    points = plan_points(spec)
    assert [p.values for p in points] == [
        {"workload.batch": b, "runs.1.pruning.sparsity": s} for b in (1, 2) for s in (0.5, 0.7)]
    # the id hashes the overrides alone: the same in every process, on every machine
    assert point_id({"a": 1, "b": 2}) == point_id({"b": 2, "a": 1})
    assert point_id({"workload.batch": 1}) == "7a0cfeb97e15ae65"  # sha256 of sorted JSON, 16 hex
    assert len({p.point_id for p in points}) == 4
    assert points[0].overrides == ["workload.batch=1", "runs.1.pruning.sparsity=0.5"]
    # 0 and 0.0 are one value, one point (their ids had differed: one design run twice)
    once = plan_points(SweepSpec(axes={"runs.1.pruning.sparsity": [0, 0.0, 0.5, True, 1]}))
    assert [p.values["runs.1.pruning.sparsity"] for p in once] == [0, 0.5, True, 1]


def test_random_plan_is_seeded_in_bounds_and_extends():
    axes = {"runs.1.pruning.sparsity": {"low": 0.3, "high": 0.95},
            "arch.hppu.global_buffer.capacity_kib": {"low": 64, "high": 1024, "log": True},
            "arch.hppu.pe_cluster.pes": [4, 8, 16]}
    small = plan_points(SweepSpec(mode="random", axes=axes, budget=5, seed=3))
    large = plan_points(SweepSpec(mode="random", axes=axes, budget=12, seed=3))
    other = plan_points(SweepSpec(mode="random", axes=axes, budget=5, seed=4))
    assert len(small) == 5 and len(large) == 12
    assert large[:5] == small  # a larger budget keeps the points already computed
    assert [p.point_id for p in other] != [p.point_id for p in small]
    for p in large:
        assert 0.3 <= p.values["runs.1.pruning.sparsity"] <= 0.95
        kib = p.values["arch.hppu.global_buffer.capacity_kib"]
        assert isinstance(kib, int) and 64 <= kib <= 1024  # integer ends: integer draws
        assert p.values["arch.hppu.pe_cluster.pes"] in (4, 8, 16)
    # a discrete space smaller than the budget: every point once, no endless drawing
    tiny = plan_points(SweepSpec(mode="random", axes={"workload.batch": [1, 2]}, budget=9))
    assert sorted(p.values["workload.batch"] for p in tiny) == [1, 2]


@pytest.mark.parametrize("bad, message", [
    ({"mode": "grid", "axes": {"workload.batch": {"low": 1, "high": 4}}}, "grid needs a list"),
    ({"mode": "random", "axes": {"workload.batch": [1, 2]}}, "needs a budget"),
    ({"mode": "optuna", "axes": {"workload.batch": [1, 2]}}, "sweep.mode"),
    # an axis's own error names the axis as its key, `*` and `-` in it too (they kept the
    # axis inside the message under the key `sweep`)
    ({"axes": {"workload.batch": []}},
     r"experiment\.yaml: sweep\.axes\.workload\.batch: expected one value or more, got an "
     r"empty list$"),
    ({"axes": {"arch.*.pe_cluster.pes": []}},
     r"experiment\.yaml: sweep\.axes\.arch\.\*\.pe_cluster\.pes: expected one value or "
     r"more, got an empty list$"),
    ({"axes": {"arch.hppu-2.pe_cluster.pes": {"low": 4, "high": 16}}},
     r"experiment\.yaml: sweep\.axes\.arch\.hppu-2\.pe_cluster\.pes: a grid needs a list "
     r"of values, not a range \(ranges are for mode: random\)$"),
    ({"axes": {"sweep.seed": [1, 2]}},
     r"experiment\.yaml: sweep\.axes: expected a key path such as workload\.batch \(not of "
     r"the sweep section\), got 'sweep\.seed'$"),
    ({"axes": {"workload.batch": [1]}, "objectives": ["joules", "cycles"]}, "objectives"),
    # one metric twice is no Pareto front: its plot drew cycles against cycles
    ({"axes": {"workload.batch": [1]}, "objectives": ["cycles", "cycles"]},
     r"experiment\.yaml: sweep\.objectives: expected two different metrics \(the plot's y "
     r"and x\), got \['cycles', 'cycles'\]$"),
    # a range's error, not the list's "Input should be a valid list" (the other member of
    # the axis union), nor pydantic's name of a member in the key
    ({"mode": "random", "budget": 4, "axes": {"arch.*.pe_cluster.pes": {"low": 16, "high": 4}}},
     r"experiment\.yaml: sweep\.axes\.arch\.\*\.pe_cluster\.pes: low must be less than high "
     r"\(got 16, 4\)$"),
    # a range's wrong keys: the file, the key and the keys expected, the other unknown keys
    # beside it, and no count of the errors pydantic found ("[and 3 more errors]": the keys
    # a misspelling leaves missing, the members of a union)
    ({"mode": "random", "budget": 4, "axes": {"workload.batch": {"low": 1, "hgh": 4}}},
     r"experiment\.yaml: sweep\.axes\.workload\.batch\.hgh: unknown key; expected one of: "
     r"high, log, low$"),
    ({"mode": "random", "budget": 4, "axes": {"workload.batch": {"lo": 1, "hi": 4}}},
     r"experiment\.yaml: sweep\.axes\.workload\.batch\.hi: unknown key; expected one of: "
     r"high, log, low \(also unknown there: lo\)$"),
    ({"mode": "random", "budget": 4, "axes": {"workload.batch": {"min": 1, "max": 4,
                                                                 "lg": True}}},
     r"experiment\.yaml: sweep\.axes\.workload\.batch\.lg: unknown key; expected one of: "
     r"high, log, low \(also unknown there: max, min\)$"),
    # an integer end numpy cannot draw: it failed with numpy's "high is out of bounds for
    # int64", a traceback
    ({"mode": "random", "budget": 4, "axes": {"workload.seed": {"low": 0, "high": 2**70}}},
     r"experiment\.yaml: sweep\.axes\.workload\.seed\.high: expected an integer within "
     r"\+-2\^63 \(got 1180591620717411303424\)$"),
    # a range's end that is no number: any number is allowed there, not "a valid integer"
    ({"mode": "random", "budget": 4, "axes": {"workload.batch": {"low": "a", "high": 4}}},
     r"experiment\.yaml: sweep\.axes\.workload\.batch\.low: expected a number, an integer "
     r"or not \(got 'a'\)$"),
    ({"mode": "random", "budget": 4, "axes": {"runs.1.pruning.sparsity": {"low": 0.1,
                                                                          "high": [0.9]}}},
     r"experiment\.yaml: sweep\.axes\.runs\.1\.pruning\.sparsity\.high: expected a number, "
     r"an integer or not \(got \[0\.9\]\)$"),
    # an axis that is neither a list nor a range: its key, the value given and both shapes
    # an axis takes, not pydantic's "Input should be a valid list" of the union
    ({"axes": {"runs.1.pruning.sparsity": 0.5}},
     r"experiment\.yaml: sweep\.axes\.runs\.1\.pruning\.sparsity: expected a list of "
     r"values, or with mode: random a range \{low, high\} \(log: true for log-uniform\) "
     r"\(got 0\.5\)$"),
    ({"mode": "random", "budget": 4, "axes": {"arch.*.pe_cluster.pes": "8 to 16"}},
     r"sweep\.axes\.arch\.\*\.pe_cluster\.pes: expected a list of values, or with mode: "
     r"random a range \{low, high\} .* \(got '8 to 16'\)$"),
])
def test_bad_sweep_sections_are_config_errors(tmp_path, bad, message):
    path = write_experiment(tmp_path, {})
    data = yaml.safe_load(path.read_text())
    data["sweep"] = bad
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_sweep_spec(path)


@pytest.mark.parametrize("axis, message", [
    ("workload.bach", r"workload\.bach: unknown key.*no point of the sweep is valid"),
    ("arch.tpu.pe_cluster.pes", "no run 'tpu'"),
])
def test_a_sweep_with_no_valid_point_is_refused_before_writing_anything(tmp_path, axis,
                                                                          message):
    """A misspelt axis makes every point invalid: the sweep says so and exits 2 (the CLI's
    ConfigError), leaving no folder whose manifest would refuse the corrected sweep."""
    path = write_experiment(tmp_path, {axis: [1, 2]})
    with pytest.raises(ConfigError, match=message):
        sweep(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("observe", ["observe.vcd=true", "observe.trace=true",
                                     "observe.tiles=true"])
def test_a_sweep_that_asks_for_traces_is_refused_before_writing_anything(tmp_path, observe):
    """A point keeps its summary only: traces or waveforms asked of a sweep would be lost
    without a word, so the sweep says so (exit 2 from the CLI) and writes nothing."""
    path = write_experiment(tmp_path, {"workload.batch": [1, 2]})
    asked = observe.split(".")[1].split("=")[0]
    with pytest.raises(ConfigError, match=rf"observe: a sweep's points keep their summaries "
                                          rf"only, not {asked}"):
        sweep(path, tmp_path / "out", overrides=[observe])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("overrides, axes, message", [
    (["observe.trace=true"], {"workload.batch": [1, 2]},
     r"observe: a sweep's points keep their summaries only, not trace"),
    ([], {"workload.batch": [1, 2], "observe.vcd": [False, True]},
     r"sweep\.axes\.observe\.vcd: a sweep's points keep their summaries only: observe is "
     r"no axis"),
    ([], {"workload.bach": [1, 2]}, r"workload\.bach: unknown key.*no point of the sweep"),
    # an arch axis's bad key is said as the axis's, not as a --set the user never typed
    ([], {"arch.*.zzz": [8]}, r"dense\.yaml: zzz: unknown key; .* \(set by the sweep's axis "
     r"sweep\.axes\.arch\.\*\.zzz=8 of .*experiment\.yaml, for run dense\) \(no point"),
])
def test_check_refuses_the_sweeps_that_sweep_refuses(tmp_path, overrides, axes, message):
    """`desim check` passed a sweep asking for traces ("all valid", exit 0) that `desim
    sweep` refused (exit 2): both now raise the same error, from one rule."""
    from desim.check import check

    path = write_experiment(tmp_path, axes)
    with pytest.raises(ConfigError, match=message) as by_check:
        check(path, overrides)
    with pytest.raises(ConfigError, match=message) as by_sweep:
        sweep(path, tmp_path / "out", overrides=overrides)
    assert str(by_check.value) == str(by_sweep.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("workers", [0, 257, 100_000])
def test_a_local_cluster_of_no_or_too_many_workers_is_refused(tmp_path, workers):
    """-j 100000 spun for minutes starting processes for a sweep of two points."""
    path = write_experiment(tmp_path, {"workload.batch": [1, 2]})
    with pytest.raises(ConfigError, match=f"--workers must be 1 to 256, got {workers:,}"):
        sweep(path, tmp_path / "out", workers=workers)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("axes, first", [
    ({"arch.*.pe_cluster.pes": [4, 8], "arch.hppu.pe_cluster.pes": [16, 2]},
     "arch.*.pe_cluster.pes"),
    # runs.hppu. is runs.1.
    ({"runs.1.pruning.sparsity": [0.5, 0.6], "runs.hppu.pruning": [{"method": "hybrid"}] * 2},
     "runs.1.pruning.sparsity")])
def test_two_axes_that_set_one_key_are_refused(tmp_path, axes, first):
    """The axis applied last won at every point, and the other's values labelled rows it
    never changed (a run's cycles the same at `arch.*.pe_cluster.pes` 4 and 8)."""
    from desim.check import check

    path = write_experiment(tmp_path, axes)
    with pytest.raises(ConfigError) as err:
        check(path)
    assert str(err.value) == (f"{path}: sweep.axes.{list(axes)[1]}: sets what the axis "
                              f"sweep.axes.{first} sets too, so one would replace the other's "
                              "values in every point: keep one")


def test_a_workload_axis_a_runs_own_workload_set_replaces_is_refused(tmp_path):
    """A run's `workload_set` is applied after the experiment's workload, --set and axes
    included: the dense rows were labelled batch 1 and 2 with the same MACs."""
    from desim.check import check

    path = write_experiment(tmp_path, {"workload.batch": [1, 2]})
    data = yaml.safe_load(path.read_text())
    data["runs"][0]["workload_set"] = ["batch=4"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        check(path)
    assert str(err.value).startswith(
        f"{path}: workload.batch: run 'dense' sets batch=4 in its own workload_set "
        "(runs.0.workload_set), which replaces the sweep's axis sweep.axes.workload.batch=1")
    with pytest.raises(ConfigError) as err:  # and a --set, in a run as in a sweep
        load_experiment(path, ["workload.batch=1"])
    assert "run 'dense' sets batch=4 in its own workload_set (runs.0.workload_set), which " \
        "replaces --set workload.batch=1 in that run: set it there, or drop one of the " \
        "two" in str(err.value)
    whole = "workload={model: lenet5, input_shape: [1, 28, 28], batch: 1}"
    with pytest.raises(ConfigError, match=r"replaces --set workload=\{model: lenet5"):
        load_experiment(path, [whole])  # a section that gives the key
    assert load_experiment(path, ["workload.seed=3"]).workloads["dense"].batch == 4
    assert load_experiment(path, [whole.replace(", batch: 1", "")]).workloads["dense"].batch == 4


@pytest.mark.parametrize("item, axis", [
    ("runs.1.pruning.sparsity=0.3", "runs.1.pruning.sparsity"),
    ("runs.1.pruning={method: magnitude, sparsity: 0.3}", "runs.1.pruning.sparsity"),
    ("runs.1.pruning.sparsity=0.3", "runs.1.pruning"),
    ("arch.*.pe_cluster.pes=8", "arch.hppu.pe_cluster.pes"),
    ("arch.hppu.pe_cluster.pes=8", "arch.*.pe_cluster"),
])
def test_a_set_on_a_sweep_axis_is_refused_naming_it(tmp_path, item, axis):
    """A point's values are applied after `--set`: a --set on an axis (or on a part of one,
    or the whole of one) was overridden at every point without a word, its value in the
    point files beside the axis's that ran. Refused by check and sweep, nothing written."""
    from desim.check import check

    values = [{"method": "hybrid", "sparsity": 0.5}] if axis == "runs.1.pruning" else [0.5]
    values = [{"pes": 16}] if axis == "arch.*.pe_cluster" else values
    values = [16] if axis.endswith(".pes") else values
    path = write_experiment(tmp_path, {axis: values})
    message = (f"{path}: sweep.axes.{axis}: also given by --set {item}, which every point "
               "would replace by the axis's values: drop the --set or the axis")
    for refuse in (lambda: check(path, [item]),
                   lambda: sweep(path, tmp_path / "out", overrides=[item])):
        with pytest.raises(ConfigError) as err:
            refuse()
        assert str(err.value) == message
    result = subprocess.run(
        [sys.executable, "-c", "from desim.sweep import main; main()", str(path),
         "--out", str(tmp_path / "out"), "--set", item], cwd=ROOT, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert " ".join(result.stderr.split()) == f"error: {message}"
    assert not (tmp_path / "out").exists()


def test_a_set_beside_the_axes_is_no_conflict(tmp_path):
    from desim.check import check

    path = write_experiment(tmp_path, {"runs.1.pruning.sparsity": [0.5],
                                       "arch.hppu.pe_cluster.pes": [16]})
    check(path, ["runs.1.pruning.channel_share=0.4", "workload.seed=3",
                 "arch.dense.pe_cluster.pes=8", "arch.*.pe_cluster.precision=fp16"])


@pytest.mark.parametrize("value", [1e-05, 0.1, 3, True, "digits", [3, 16, 16], None,
                                   {"method": "hybrid", "sparsity": 0.5}, "1e-05", "yes",
                                   "1e3", "2E6", 1e300])
def test_override_text_round_trips(value):
    """As --set reads it back (`parse_yaml`, YAML 1.2's numbers: a string "1e3" written
    bare had come back the float 1000.0)."""
    from desim.configio import parse_yaml

    assert parse_yaml(yaml_text(value)) == value
    assert type(parse_yaml(yaml_text(value))) is type(value)


def test_arch_override_changes_only_its_run(tmp_path):
    path = write_experiment(tmp_path, {"workload.batch": [2]})
    data = yaml.safe_load(path.read_text())
    data["runs"][1]["arch"] = data["runs"][0]["arch"]  # both runs on dense.yaml
    path.write_text(yaml.safe_dump(data))
    experiment = load_experiment(path, ["arch.hppu.pe_cluster.pes=8", "workload.batch=1"])
    assert experiment.archs["hppu"].pe_cluster.pes == 8
    assert experiment.archs["dense"].pe_cluster.pes == 16
    assert experiment.spec.workload.batch == 1
    with pytest.raises(ConfigError, match="no run 'tpu'"):
        load_experiment(path, ["arch.tpu.pe_cluster.pes=8"])
    with pytest.raises(ConfigError, match=r"dense\.yaml: pe_cluster\.pes"):
        load_experiment(path, ["arch.hppu.pe_cluster.pes=0"])


def test_resume_into_a_folder_of_other_inputs_is_refused(tmp_path):
    path = write_experiment(tmp_path, {"workload.batch": [1, 2]})
    spec = load_sweep_spec(path)
    points = plan_points(spec)
    out = tmp_path / "out"
    out.mkdir()

    def resume(overrides: list[str]) -> None:
        _write_manifest(out, path, overrides, spec, points,
                        _check_manifest(out, path, overrides))

    resume([])
    resume([])  # same inputs: fine
    # extending the sweep section is fine (its points are new ids) ...
    resume(["sweep.seed=5"])
    with pytest.raises(ConfigError, match=r"sweep of other inputs \(the experiment, its "
                                          "--set overrides or a file it names changed"):
        resume(["workload.seed=1"])   # ... other numbers not


@pytest.mark.parametrize("manifest", ["deleted", "cut short", "without fingerprint"])
def test_points_without_a_readable_sweep_json_are_no_sweeps_of_these_inputs(tmp_path,
                                                                           manifest):
    """An audit copied a batch-2 sweep's folder without its sweep.json and resumed it with
    --set workload.batch=1: every point was taken as done, batch 2's cycles reported as
    batch 1's. Nothing else says what the points were computed from: refused."""
    path = write_experiment(tmp_path, {"workload.batch": [1, 2]})
    spec = load_sweep_spec(path)
    points = plan_points(spec)
    out = tmp_path / "out"
    out.mkdir()
    _write_manifest(out, path, [], spec, points, _check_manifest(out, path, []))
    (out / "points").mkdir()
    (out / "points" / f"{points[0].point_id}.json").write_text('{"status": "ok"}')
    assert _check_manifest(out, path, [])  # with its sweep.json: resumed
    sweep_json = out / "sweep.json"
    if manifest == "deleted":
        sweep_json.unlink()
    elif manifest == "cut short":
        sweep_json.write_text(sweep_json.read_text()[:300])
    else:
        data = json.loads(sweep_json.read_text())
        del data["fingerprint"]
        sweep_json.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="holds points but no readable sweep.json"):
        _check_manifest(out, path, ["workload.seed=1"])
    (out / "points" / f"{points[0].point_id}.json").unlink()
    assert _check_manifest(out, path, [])  # no point: a fresh start


@pytest.mark.parametrize("where", ["workload", "axis", "workload_set"])
def test_an_edited_file_the_sweep_names_makes_its_folder_another_sweep(tmp_path, where):
    """A model's Python file or a topology CSV is an input as the arch files are: a
    resumed sweep took the points of its old version (1,156 cycles where a fresh folder
    gave 11,938, after layers were added to the model's file)."""
    (tmp_path / "net.py").write_text("def make(num_classes):\n    return None\n")
    model = "net.py:make"
    path = write_experiment(tmp_path, {"workload.model": [model]} if where == "axis" else
                            {"workload.batch": [1, 2]})
    data = yaml.safe_load(path.read_text())
    if where == "workload":
        data["workload"]["model"] = model
    elif where == "workload_set":
        data["runs"][1]["workload_set"] = [f"model={model}"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = fingerprint(path, [])
    assert fingerprint(path, []) == before
    (tmp_path / "net.py").write_text("def make(num_classes):\n    return 1\n")
    assert fingerprint(path, []) != before
    (tmp_path / "t.csv").write_text("Layer, IFMAP Height\n")  # a --set naming a file too
    before = fingerprint(path, ["workload.scalesim_topology=t.csv"])
    (tmp_path / "t.csv").write_text("Layer, IFMAP Height\nconv1, 224\n")
    assert fingerprint(path, ["workload.scalesim_topology=t.csv"]) != before


def begun(out: Path, path: Path, base: Sequence[str] = ()) -> str:
    """`out` as `desim sweep` leaves it before computing a point: its sweep.json written
    (point files planted without it are no sweep's, `_check_manifest`). Returns the sweep's
    fingerprint, which a planted point file must record to be taken as this sweep's."""
    out.mkdir(parents=True, exist_ok=True)
    spec = load_sweep_spec(path, base)
    current = _check_manifest(out, path, list(base))
    _write_manifest(out, path, list(base), spec, plan_points(spec), current)
    return current


def computed_failing_points(tmp_path: Path) -> tuple[Path, Path, list[str], list]:
    """A one-point sweep with the base --set item workload.seed=3 whose point fails at
    elaboration (no tile fits a 1 KiB buffer), computed without a Dask cluster: (experiment,
    results folder, base items, points)."""
    path = write_experiment(tmp_path, {"arch.hppu.global_buffer.capacity_kib": [1]},
                            single_run=True)
    base = ["workload.seed=3"]
    out = tmp_path / "out"
    points = plan_points(load_sweep_spec(path, base))
    current = begun(out, path, base)
    _compute(path, out, base, points, None, None, _Log(out / "sweep.log"), _Bar(None, None),
             current)
    return path, out, base, points


def test_a_points_config_records_the_sweeps_set_items_as_config_json_does(tmp_path):
    """A point's file holds config.json's configuration, the base --set items among its
    overrides: the point's folder says how it was produced. Points failing at elaboration
    (1 KiB: no tile fits) are written here without a Dask cluster."""
    from desim.resolved import resolved_config

    path, out, base, points = computed_failing_points(tmp_path)
    record = json.loads((out / "points" / f"{points[0].point_id}.json").read_text())
    assert record["status"] == "failed" and "smallest tile" in record["error"]
    sets = ["workload.seed=3", "arch.hppu.global_buffer.capacity_kib=1"]
    assert record["config"]["overrides"] == sets
    assert record["config"] == resolved_config(load_experiment(path, sets))


def test_the_table_records_the_sweeps_set_items(tmp_path):
    """results.parquet says which --set items every point took (its metadata: the frame's
    attrs), as the point files and sweep.json do. The points fail at elaboration here (no
    tile fits 1 KiB), so no Dask cluster starts: the points are done, the table gathered."""
    path, out, base, _ = computed_failing_points(tmp_path)
    frame = sweep(path, out, overrides=base)
    assert list(frame["status"]) == ["failed"]
    assert pd.read_parquet(out / "results.parquet").attrs["set"] == base


def fake_frame(tmp_path: Path) -> pd.DataFrame:
    """results.parquet's table from hand-written point files."""
    spec = SweepSpec(axes={"runs.1.pruning.sparsity": [0.5, 0.7, 0.9]})
    points = plan_points(spec)
    out = tmp_path / "fake"
    (out / "points").mkdir(parents=True)
    designs = {0.5: (100, 5.0), 0.7: (80, 6.0), 0.9: (120, 4.0)}
    for point in points:
        cycles, energy = designs[point.values["runs.1.pruning.sparsity"]]
        phase = {"cycles": cycles // 3, "energy_j": energy / 3, "macs": 9, "effectual_macs": 3,
                 "processed_macs": 4, "dram_bytes": 7}
        run_summary = {"arch": "hppu_like", "cycles": cycles, "energy_j": energy, "macs": 27,
                       "effectual_macs": 9, "dram_bytes": 21, "seconds": cycles * 2e-9,
                       "phases": {p: phase for p in PHASES[:3]},
                       "energy_by_component_j": {"dram": 0.75 * energy, "macs": 0.25 * energy}}
        dense = {**run_summary, "arch": "dense", "cycles": 200, "energy_j": 10.0,
                 "energy_by_component_j": {"dram": 7.5, "macs": 2.5}}
        record = {"point_id": point.point_id, "status": "ok", "error": None, "elapsed_s": 1.0,
                  "runs": {"dense": dense, "hppu": run_summary},
                  "comparison": {"dense": {"speedup": 1.0, "energy_ratio": 1.0},
                                 "hppu": {"speedup": 200 / cycles,
                                          "energy_ratio": 10 / energy}}}
        (out / "points" / f"{point.point_id}.json").write_text(json.dumps(record))
    return gather(out, [*points, Point("0" * 16, {"runs.1.pruning.sparsity": 1.0})], spec)


def test_a_resumed_sweep_removes_what_a_kill_left_half_written(tmp_path):
    """Every point already has its file, so nothing is computed: the temporaries that
    atomic writes leave when killed (a point file, a capture, the table, a plot) are
    removed; other files stay."""
    path = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5, 0.7]},
                            single_run=True)
    out = tmp_path / "out"
    points = plan_points(load_sweep_spec(path))
    fake_frame(tmp_path)  # writes finished points' records: one, under this sweep's ids
    record = json.loads(next((tmp_path / "fake" / "points").glob("*.json")).read_text())
    current = begun(out, path)
    (out / "points").mkdir(parents=True)
    (out / "cache").mkdir()
    for point in points:
        (out / "points" / f"{point.point_id}.json").write_text(
            json.dumps({**record, "point_id": point.point_id, "fingerprint": current}))
    stale = [out / "points" / ".abc.json.x1.tmp", out / "cache" / ".k.pt.x2.tmp",
             out / ".results.parquet.x3.tmp", out / ".pareto.png.x4.tmp"]
    kept = [out / "cache" / "k.pt", out / "notes.tmp", out / ".keep"]
    for file in stale + kept:
        file.write_text("half")
    frame = sweep(path, out, workers=1)
    assert len(frame.drop_duplicates("point_id")) == 2 and (frame["status"] == "ok").all()
    assert not any(file.exists() for file in stale)
    assert all(file.read_text() == "half" for file in kept)


def test_gather_pareto_and_plots(tmp_path):
    frame = fake_frame(tmp_path)
    assert list(frame.columns[:2]) == ["point_id", "runs.1.pruning.sparsity"]
    assert frame["status"].tolist()[-1] == "pending"  # a point without its file
    assert len(frame) == 3 * 2 * 4 + 1
    front = frame[frame["pareto"].fillna(False).astype(bool)]
    # (80, 6) and (120, 4) are on the front; (100, 5) too (nothing beats it on both), dense not
    assert sorted(front["cycles"].tolist()) == [80, 100, 120]
    assert set(front["run"]) == {"hppu"}
    assert pareto_mask(frame, ["energy_j", "cycles"]).sum() == 3
    total = totals(frame)
    assert total[total["run"] == "hppu"]["speedup"].tolist() == [2.0, 2.5, 200 / 120]
    # desim.metrics' figures: without DRAM's 75%; 2 FLOPs a MAC (27 MACs) per joule
    hppu = total[total["run"] == "hppu"]
    assert hppu["on_chip_energy_j"].tolist() == [1.25, 1.5, 1.0]
    assert hppu["tflops_per_w"].tolist() == pytest.approx([54 / 5e12, 54 / 6e12, 54 / 4e12])
    assert hppu["on_chip_tflops_per_w"].tolist() == pytest.approx([54 / 1.25e12, 36e-12,
                                                                   54e-12])
    assert frame[frame["phase"] == "FF"]["on_chip_tflops_per_w"].isna().all()
    # an objective too: dense's on-chip 2.5 J in 200 cycles is dominated by hppu's
    assert SweepSpec(axes={"runs.1.pruning.sparsity": [0.5]},
                     objectives=["on_chip_energy_j", "cycles"]).objectives[0] == "on_chip_energy_j"
    assert set(frame[pareto_mask(frame, ["on_chip_energy_j", "cycles"])]["run"]) == {"hppu"}
    plot_pareto(frame, ["energy_j", "cycles"], tmp_path / "pareto.png")
    plot_metric(frame, "energy_j", "runs.1.pruning.sparsity", tmp_path / "metric.png")
    plot_metric(frame, "dram_bytes", "runs.1.pruning.sparsity", tmp_path / "ff.png", phase="FF")
    # the baseline's speedup against itself (1 at every point) is no line of the plot
    assert set(plotted_rows(frame, "speedup")["run"]) == {"hppu"}
    assert set(plotted_rows(frame, "energy_j")["run"]) == {"dense", "hppu"}
    plot_metric(frame, "speedup", "runs.1.pruning.sparsity", tmp_path / "speedup.png")
    plot_metric(frame, "on_chip_tflops_per_w", "runs.1.pruning.sparsity", tmp_path / "ee.png")
    for name in ("pareto.png", "metric.png", "ff.png", "ee.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="not an axis"):
        plot_metric(frame, "energy_j", "workload.batch", tmp_path / "x.png")
    with pytest.raises(ConfigError, match="no 'energy_j.noc' in this sweep"):  # none here
        plot_metric(frame, "energy_j.noc", "runs.1.pruning.sparsity", tmp_path / "y.png")
    with pytest.raises(ConfigError, match="no 'utilization.dram' in this sweep"):
        plot_metric(frame, "utilization.dram", "runs.1.pruning.sparsity", tmp_path / "z.png")
    with pytest.raises(ConfigError, match="utilization.<part> or time_by_busiest_part.<part>"):
        plot_metric(frame, "busy.dram", "runs.1.pruning.sparsity", tmp_path / "z.png")


def test_a_plot_splits_a_run_only_by_the_axes_that_set_it():
    """An axis of one run's design (`arch.hppu.`) or section (`runs.1.`) leaves the other
    runs alone: their line is one, not one per value of the axis, the same line labelled
    as if the axis had moved it (an audit: "dense, channels=1/2/4", three equal lines)."""
    from desim.sweep_plots import _unsplit_runs

    rows = pd.DataFrame({"run": ["dense", "hppu"] * 4,
                         "runs.1.pruning.sparsity": [0.5] * 4 + [0.9] * 4,
                         "arch.hppu.dram.channels": [1, 1, 2, 2] * 2,
                         "cycles": [100, 50, 100, 30, 100, 40, 100, 20]})
    drawn = _unsplit_runs(rows, ["arch.hppu.dram.channels"], "runs.1.pruning.sparsity")
    dense = drawn[drawn["run"] == "dense"]
    assert dense["runs.1.pruning.sparsity"].tolist() == [0.5, 0.9]
    assert dense["arch.hppu.dram.channels"].isna().all()
    assert drawn[drawn["run"] == "hppu"]["cycles"].tolist() == [50, 30, 40, 20]
    # the same by the run's index; an axis of every run's design splits every run
    by_index = rows.rename(columns={"arch.hppu.dram.channels": "runs.1.seed"})
    assert len(_unsplit_runs(by_index, ["runs.1.seed"], "runs.1.pruning.sparsity")) == 6
    every = rows.rename(columns={"arch.hppu.dram.channels": "arch.*.dram.channels"})
    assert len(_unsplit_runs(every, ["arch.*.dram.channels"], "runs.1.pruning.sparsity")) == 8


def test_a_front_over_clocks_can_be_of_time_not_cycles():
    """LeNet-300 at batch 2 on dense.yaml at 250, 500 and 1000 MHz (its sweep's figures): a
    slower clock waits fewer cycles for DRAM, so every point is on a front of cycles, and
    250 MHz (twice the time of 500 MHz, more energy) looks the fastest; in time, 1000 MHz
    beats both. `seconds` may be an objective (it was refused), and the printed front gives
    the time."""
    import io

    from rich.console import Console

    import desim.sweep

    spec = SweepSpec(axes={"arch.dense.core_clock_mhz": [250, 500, 1000]},
                     objectives=["energy_j", "seconds"])
    frame = pd.DataFrame({
        "point_id": ["p250", "p500", "p1000"], "arch.dense.core_clock_mhz": [250, 500, 1000],
        "run": "dense", "phase": "total", "status": "ok", "error": None,
        "cycles": [36_992, 37_793, 65_606], "seconds": [36_992 / 250e6, 37_793 / 500e6,
                                                        65_606 / 1000e6],
        "energy_j": [142e-6, 105e-6, 100e-6]})
    assert pareto_mask(frame, ["energy_j", "cycles"]).tolist() == [True, True, True]
    assert pareto_mask(frame, spec.objectives).tolist() == [False, False, True]
    frame["pareto"] = pareto_mask(frame, spec.objectives)
    out = io.StringIO()
    desim.sweep.print_sweep(Console(file=out, width=200), frame)
    rows = [line.replace("│", " ").split() for line in out.getvalue().splitlines()
            if any(p in line for p in ("p250", "p500", "p1000"))]
    assert "time (ms)" in out.getvalue()
    assert rows == [["p1000", "dense", "1000", "65,606", "0.06561", "0.1000"]]
    # a narrow terminal folds a cell onto more lines, never cuts it: the whole point id
    # names its points/<id>.json
    frame.loc[2, "point_id"] = "41c9f0a8d2b7e6c1"
    narrow = io.StringIO()
    desim.sweep.print_sweep(Console(file=narrow, width=40), frame)
    assert "…" not in narrow.getvalue()
    cells = "".join(line.replace("│", " ").split()[0] for line in narrow.getvalue().splitlines()
                    if line.startswith("│"))
    assert "41c9f0a8d2b7e6c1" in cells


# --- sweeps on a local Dask cluster ---------------------------------------------------------

def test_a_plot_cut_short_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    """pareto.png and the --plot figures are written atomically: a write that fails half
    way (as a kill or a full disk would cut it) leaves the earlier file as it was and no
    temporary beside it; one that succeeds is a whole PNG (SVG for an .svg name)."""
    from matplotlib.figure import Figure

    frame = fake_frame(tmp_path)
    folder = tmp_path / "plots"
    folder.mkdir()
    plot_pareto(frame, ["energy_j", "cycles"], folder / "pareto.png")
    plot_metric(frame, "energy_j", "runs.1.pruning.sparsity", folder / "metric.svg")
    assert (folder / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (folder / "metric.svg").read_bytes()[:500]
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    save = Figure.savefig

    def cut_short(self: Figure, fname: Any, **kwargs: Any) -> None:
        save(self, fname, **kwargs)
        with open(fname, "r+b") as f:
            f.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", cut_short)
    with pytest.raises(OSError, match="No space left"):
        plot_pareto(frame, ["energy_j", "cycles"], folder / "pareto.png")
    with pytest.raises(OSError, match="No space left"):
        plot_metric(frame, "energy_j", "runs.1.pruning.sparsity", folder / "metric.svg")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_grid_matches_single_runs(tmp_path):
    """A 2x2 grid (a pruning key and an arch key) on two workers gives, bit for bit, the
    numbers of four single runs of desim.runner with the same overrides."""
    axes = {"runs.1.pruning.sparsity": [0.5, 0.8], "arch.hppu.pe_cluster.pes": [8, 16]}
    path = write_experiment(tmp_path, axes)
    frame = sweep(path, tmp_path / "out", workers=2)

    assert (tmp_path / "out" / "results.parquet").is_file()
    assert (tmp_path / "out" / "pareto.png").is_file()
    assert len(list((tmp_path / "out" / "cache").glob("*.pt"))) == 3  # dense, 0.5, 0.8
    stored = pd.read_parquet(tmp_path / "out" / "results.parquet")
    pd.testing.assert_frame_equal(stored, frame, check_dtype=False)
    assert (frame["status"] == "ok").all()
    assert len(frame) == 4 * 2 * 4

    # the reference: desim.runner on each point, the arch key written into a copy of the
    # arch file (not through the sweep's arch overrides); each capture computed once here
    # too, by the runner's own capture_workload, to keep the test short
    captured: dict[str, Any] = {}

    def capture(workload: Any, pruning: Any) -> Any:
        key = workload.model_dump_json() + pruning.model_dump_json()
        if key not in captured:
            captured[key] = capture_workload(workload, pruning)
        return captured[key]

    for sparsity in axes["runs.1.pruning.sparsity"]:
        for pes in axes["arch.hppu.pe_cluster.pes"]:
            arch = yaml.safe_load((ARCH / "hppu_like.yaml").read_text())
            arch["pe_cluster"]["pes"] = pes
            arch_path = tmp_path / f"hppu_{pes}.yaml"
            arch_path.write_text(yaml.safe_dump(arch))
            experiment = load_experiment(path, [f"runs.1.pruning.sparsity={sparsity}",
                                                f"runs.1.arch={arch_path}"])
            summary = summarize(experiment, run(experiment, capture=capture))
            rows = frame[(frame["runs.1.pruning.sparsity"] == sparsity)
                         & (frame["arch.hppu.pe_cluster.pes"] == pes)]
            for name, expected in summary["runs"].items():
                for phase in PHASES:
                    want = expected if phase == "total" else expected["phases"][phase]
                    got = rows[(rows["run"] == name) & (rows["phase"] == phase)]
                    assert len(got) == 1
                    for metric in ("cycles", "energy_j", "macs", "effectual_macs",
                                   "dram_bytes"):
                        assert got[metric].item() == want[metric], (sparsity, pes, name,
                                                                    phase, metric)
                got = rows[(rows["run"] == name) & (rows["phase"] == "total")]
                assert got["speedup"].item() == summary["comparison"][name]["speedup"]
                # each component's joules, on the total row (NaN where a design has none)
                for component, joules in expected["energy_by_component_j"].items():
                    assert got[f"energy_j.{component}"].item() == joules, component
                # and each part's busy share, and its share of the time as the busiest
                for part, share in expected["utilization"].items():
                    assert got[f"utilization.{part}"].item() == share, part
                for part, share in expected["time_by_busiest_part"].items():
                    assert got[f"time_by_busiest_part.{part}"].item() == share, part
    per_part = [c for c in frame.columns if c.startswith(("energy_j.", "utilization.",
                                                           "time_by_busiest_part."))]
    assert {"energy_j.dram", "energy_j.noc", "energy_j.selector", "utilization.dram",
            "utilization.noc", "utilization.mac_units", "time_by_busiest_part.dram",
            "time_by_busiest_part.pe_array"} <= set(per_part)
    assert list(frame.columns[-len(per_part):]) == sorted(per_part)


def test_two_spellings_of_one_design_are_computed_once(tmp_path, monkeypatch):
    """`true` and the list of all X's phases are one design (the config makes the list
    `true`): computed once, each point's file written, with its own values and the same
    numbers; the other spelling, [WG], is a design of its own."""
    import desim.sweep as sweep_module

    submitted: list[int] = []
    real = sweep_module.run_on_dask

    def counted(client: Any, scheduler: Any, ready: list, out: Path) -> Iterator:
        submitted.append(len(ready))
        return real(client, scheduler, ready, out)

    monkeypatch.setattr(sweep_module, "run_on_dask", counted)
    axes = {"arch.hppu.sparsity.skip_zero_activations": [True, ["FF", "WG"], ["WG"]]}
    path = write_experiment(tmp_path, axes, single_run=True)
    frame = totals(sweep(path, tmp_path / "out", workers=1))
    assert submitted == [2]
    assert len(frame) == 3 and (frame["status"] == "ok").all()
    cycles = frame.set_index("arch.hppu.sparsity.skip_zero_activations")["cycles"]
    assert cycles["true"] == cycles["[FF, WG]"] != cycles["[WG]"]  # (the values as YAML)
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "points").glob("*.json")]
    assert sorted(str(r["overrides"]) for r in records) == sorted(
        str({"arch.hppu.sparsity.skip_zero_activations": v}) for v in axes[
            "arch.hppu.sparsity.skip_zero_activations"])
    assert all(r["config"]["overrides"] == r["set"] for r in records)


def sweep_process(path: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from desim.sweep import main; main()", str(path),
         "--out", str(out), "--workers", "2"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_computes_each_point_exactly_once(tmp_path):
    axes = {"runs.0.pruning.sparsity": [0.5, 0.6, 0.7], "arch.hppu.pe_cluster.pes": [8, 16]}
    path = write_experiment(tmp_path, axes, single_run=True)
    out = tmp_path / "out"
    points_dir = out / "points"
    first = sweep_process(path, out)
    deadline = time.monotonic() + 600  # a hang guard, not a speed claim
    while not list(points_dir.glob("*.json")):
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        assert time.monotonic() < deadline, "no point finished in 600 s"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.5)  # nothing may write after the kill: only the killed client writes points
    before = {p.name: p.stat().st_mtime_ns for p in points_dir.glob("*.json")}
    assert 1 <= len(before) < 6
    assert not (out / "results.parquet").exists()

    second = sweep_process(path, out)
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr

    frame = pd.read_parquet(out / "results.parquet")
    planned = {p.point_id for p in plan_points(load_sweep_spec(path))}
    assert set(frame["point_id"]) == planned
    assert not frame.duplicated(["point_id", "run", "phase"]).any()
    assert len(totals(frame)) == 6 and (frame["status"] == "ok").all()
    # the second run computed exactly the missing points: old files untouched, log counts
    after = {p.name: p.stat().st_mtime_ns for p in points_dir.glob("*.json")}
    assert len(after) == 6 and all(after[name] == mtime for name, mtime in before.items())
    log = (out / "sweep.log").read_text().splitlines()
    starts = [i for i, line in enumerate(log) if " start: " in line]
    assert len(starts) == 2
    assert f"{len(before)} already done, {6 - len(before)} to compute" in log[starts[1]]
    assert sum(" ok in " in line for line in log[starts[1]:]) == 6 - len(before)


def test_the_local_workers_ignore_sigint_and_the_client_keeps_its_handler():
    """A Ctrl-C reaches the whole process group: the local workers ignore it (each printed
    its KeyboardInterrupt's traceback), this process still raises KeyboardInterrupt."""
    from desim.sweep_dask import dask_client

    before = signal.getsignal(signal.SIGINT)
    with dask_client(None, 1) as client:
        assert signal.getsignal(signal.SIGINT) is before
        handlers = client.run(signal.getsignal, signal.SIGINT)
        # their Dask logs CRITICAL only: a shared capture fetched from a worker a Ctrl-C
        # was closing logged its traceback at ERROR
        levels = client.run(lambda: logging.getLogger("distributed.worker").getEffectiveLevel())
    assert list(handlers.values()) == [signal.SIG_IGN]
    assert list(levels.values()) == [logging.CRITICAL]
    assert signal.getsignal(signal.SIGINT) is before
    assert "DASK_LOGGING__DISTRIBUTED" not in os.environ  # ours again


def test_a_sigterm_while_the_cluster_starts_stops_it_once_started(monkeypatch):
    """A SIGTERM met midway through the cluster's start left a half-made cluster, and
    Dask's exit hook a traceback; it now takes effect once the cluster has started, and
    the cluster is closed."""
    import distributed

    from desim.sweep_dask import dask_client

    started = []

    class SignalledDuringStart(distributed.LocalCluster):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            super().__init__(*args, **kwargs)
            started.append(self)

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "LocalCluster", SignalledDuringStart)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(KeyboardInterrupt), dask_client(None, 1):
            pytest.fail("the sweep went on")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(started) == 1 and started[0].status.name == "closed"


def _group_ends(group: int, within_s: float) -> bool:
    """Whether process group `group` is empty within `within_s` seconds (the workers close
    after their sweep's process has exited)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("stop, send, code", [(signal.SIGINT, os.killpg, 130),
                                               (signal.SIGTERM, os.kill, 143)])
def test_ctrl_c_stops_a_sweep_in_one_line_and_the_same_command_finishes_it(tmp_path, stop,
                                                                            send, code):
    """SIGINT to the sweep's process group (a terminal's Ctrl-C, `timeout -s INT`), or
    SIGTERM to its process (`kill PID`; it killed the process where it stood, and its local
    scheduler logged the results it could not gather): exit 130 or 143 with one line and
    no traceback, from the client or its workers, and no worker left; then resumed."""
    axes = {"runs.0.pruning.sparsity": [0.5, 0.6, 0.7], "arch.hppu.pe_cluster.pes": [8, 16]}
    path = write_experiment(tmp_path, axes, single_run=True)
    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-c", "from desim.sweep import main; main()", str(path),
         "--out", str(out), "--workers", "2"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    deadline = time.monotonic() + 600  # a hang guard, not a speed claim
    while not list((out / "points").glob("*.json")):
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        assert time.monotonic() < deadline, "no point finished in 600 s"
        time.sleep(0.02)
    send(first.pid, stop)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == code, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "ERROR" not in stderr and "resource_tracker" not in stderr, stderr
    assert _group_ends(first.pid, within_s=60), "a worker outlived its sweep"
    assert "interrupted: finished points are in" in " ".join(stderr.split())
    assert f"{out}/points;" in "".join(stderr.split())  # rich may wrap it anywhere
    second = sweep_process(path, out)
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert len(totals(pd.read_parquet(out / "results.parquet"))) == 6


CANCEL_RACE = """
import logging, os, signal, sys, threading, time
from distributed.utils import LoopRunner, sync
from desim.sweep_dask import CANCEL_BEFORE_START_RACE
log = logging.getLogger("tornado.application")
if sys.argv[1] == "filtered":
    log.addFilter(CANCEL_BEFORE_START_RACE)
runner = LoopRunner(asynchronous=False)
runner.start()
signal.signal(signal.SIGINT, signal.default_int_handler)
runner.loop.add_callback(time.sleep, 0.5)  # the loop busy: sync's coroutine not started
threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    sync(runner.loop, lambda: None)
except KeyboardInterrupt:
    print("interrupted", flush=True)
time.sleep(1)  # the loop runs the cancel callback Dask queued on the interrupt
runner.stop()
"""


@pytest.mark.parametrize("filtered", [False, True])
def test_a_ctrl_c_before_dasks_call_starts_logs_nothing(filtered):
    """distributed 2026.8's `sync`, interrupted before its coroutine starts, queues a
    callback that raises NameError, which tornado logs with a traceback (seen once in CI
    after the sweep's "interrupted" line). Reproduced here; the filter on for every sweep
    drops that record. Unfiltered, the record is there: the race is real, not imagined."""
    done = subprocess.run([sys.executable, "-c", CANCEL_RACE,
                           "filtered" if filtered else "bare"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout == "interrupted\n", done.stderr
    if filtered:
        assert done.stderr == ""
    else:
        assert "NameError" in done.stderr and "distributed/utils.py" in done.stderr


def test_the_cancel_race_filter_passes_every_other_record():
    def record_of(error: BaseException) -> logging.LogRecord:
        try:
            raise error
        except BaseException as raised:
            return logging.LogRecord("tornado.application", logging.ERROR, __file__, 1,
                                     "Exception in callback", None, (type(raised), raised,
                                                                     raised.__traceback__))

    def cancel() -> None:  # a `cancel` of ours raising the same error passes too
        raise NameError("cannot access free variable 'future'")

    try:
        cancel()
    except NameError as ours:
        assert CANCEL_BEFORE_START_RACE.filter(record_of(ours))
    assert CANCEL_BEFORE_START_RACE.filter(record_of(ValueError("future")))
    assert CANCEL_BEFORE_START_RACE.filter(logging.LogRecord(
        "tornado.application", logging.ERROR, __file__, 1, "no error", None, None))


def test_failing_points_are_recorded_and_the_others_complete(tmp_path):
    # 1 KiB: the smallest tile does not fit (a ConfigError here, at the point's
    # elaboration, before any capture);
    # "lots": not an integer (a ConfigError here, while resolving the point's config);
    # nosuchnet: no such model (its elaboration fails here; the points needing it record why)
    axes = {"arch.hppu.global_buffer.capacity_kib": [1, "lots", 512],
            "workload.model": ["lenet5", "nosuchnet"]}
    path = write_experiment(tmp_path, axes, single_run=True)
    frame = sweep(path, tmp_path / "out", workers=2)
    points = frame.drop_duplicates("point_id").set_index(
        ["arch.hppu.global_buffer.capacity_kib", "workload.model"])
    assert len(points) == 6
    assert points.loc[("1", "lenet5"), "status"] == "failed"
    assert "smallest tile" in points.loc[("1", "lenet5"), "error"]
    for model in axes["workload.model"]:
        assert points.loc[("lots", model), "status"] == "failed"
        assert "global_buffer.capacity_kib" in points.loc[("lots", model), "error"]
    for kib in ("1", "512"):
        assert "unknown model 'nosuchnet'" in points.loc[(kib, "nosuchnet"), "error"]
    assert points.loc[("512", "lenet5"), "status"] == "ok"
    assert (frame["status"] == "ok").sum() == 4  # FF, BP, WG, total of the one good point
    record = json.loads((tmp_path / "out" / "points" /
                         f"{points.loc[('1', 'lenet5'), 'point_id']}.json").read_text())
    assert record["error_type"] == "ConfigError" and record["elapsed_s"] == 0.0
    assert record["set"] == ["arch.hppu.global_buffer.capacity_kib=1", "workload.model=lenet5"]
    assert record["config"]["architectures"]["hppu"]["global_buffer"]["capacity_kib"] == 1
    # the command line on the same folder (every point done: nothing computed) exits 1,
    # after writing the results, and its last line says why
    (tmp_path / "out" / "results.parquet").unlink()
    result = subprocess.run(
        [sys.executable, "-c", "from desim.sweep import main; main()", str(path),
         "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "5 of 6 points failed: exit 1" in " ".join(result.stdout.split()[-12:])
    assert len(pd.read_parquet(tmp_path / "out" / "results.parquet")) == len(frame)


def test_an_unreachable_scheduler_exits_2_naming_its_address(tmp_path):
    """Nothing listens at the address (a port just closed): one line, exit 2, and the
    sweep folder as it was (no sweep.json, log or point file, no progress bar drawn): it
    connects before writing anything. Dask's connect timeout (30 s by default) is set to
    1 s through its config. The axis's second value fails at its elaboration, which would
    write its point file."""
    import socket

    path = write_experiment(tmp_path, {"arch.hppu.global_buffer.capacity_kib": [512, 1]},
                            single_run=True)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{closed.getsockname()[1]}"
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", "from desim.sweep import main; main()", str(path),
         "--out", str(out), "--scheduler", address],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert message.startswith(f"error: --scheduler {address}: cannot connect to a Dask "
                              "scheduler there"), message
    assert "Timed out trying to connect" in message and "Traceback" not in message
    assert "sweep" not in message.split("error:")[0]  # no progress bar before the error
    assert list(out.iterdir()) == []
    # not an address at all: the same error, at once, and still nothing written
    with pytest.raises(ConfigError, match="--scheduler nonsense: .*missing port number"):
        sweep(path, out, scheduler="nonsense")
    assert list(out.iterdir()) == []


def test_an_error_is_printed_as_it_is_not_as_rich_markup(tmp_path):
    """The command line's one-line error holds the user's text verbatim: square brackets
    in it are not taken for rich markup (`[/]` made a MarkupError traceback; `[bold]` was
    swallowed from the message)."""
    path = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5]}, single_run=True)
    for metric in ("[/]", "[bold]x"):
        result = subprocess.run(
            [sys.executable, "-c", "from desim.sweep import main; main()", str(path),
             "--out", str(tmp_path / "out"), "--plot", f"{metric}:runs.0.pruning.sparsity"],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert " ".join(result.stderr.split()).startswith(
            f"error: --plot: unknown metric {metric!r}; expected one of cycles"), result.stderr


def test_the_closing_line_names_every_file_the_sweep_wrote(tmp_path):
    """`--plot`'s image and sweep.json were written and not listed."""
    path = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5]}, single_run=True)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", "from desim.sweep import main; main()", str(path), "--out",
         str(out), "--workers", "1", "--plot", "cycles:runs.0.pruning.sparsity"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ,
                                                                   "COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    listed = " ".join(result.stdout.split()).split("results in ")[-1]
    image = "cycles_vs_runs.0.pruning.sparsity.png"
    assert listed.startswith(f"{out}/ (results.parquet, pareto.png, {image}, points/, "
                             "cache/, sweep.json, sweep.log);"), listed
    assert {p.name for p in out.iterdir()} == {"results.parquet", "pareto.png", image,
                                               "points", "cache", "sweep.json", "sweep.log"}


def test_a_lost_scheduler_exits_1_and_its_unfinished_points_stay_to_compute(tmp_path):
    """A Dask scheduler (and one worker without a nanny) in processes of their own; the
    sweep runs on it and the scheduler is SIGKILLed once the first point is written: the
    sweep exits 1 at once with one line saying so and how many points are unfinished, and
    exactly those have no file (a resumed sweep computes them, as the SIGKILL test shows)."""
    path = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5, 0.6, 0.7, 0.8]},
                            single_run=True)
    out, address_file = tmp_path / "out", tmp_path / "scheduler.json"
    dask = [sys.executable, "-m"]
    started = []
    try:
        started.append(subprocess.Popen(
            [*dask, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(address_file)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        scheduler = started[0]
        started.append(subprocess.Popen(
            [*dask, "distributed.cli.dask_worker", "--scheduler-file", str(address_file),
             "--nthreads", "1", "--no-nanny", "--no-dashboard"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 600  # a hang guard, not a speed claim
        while not address_file.is_file() or not address_file.read_text().strip():
            assert scheduler.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        address = json.loads(address_file.read_text())["address"]
        started.append(subprocess.Popen(
            [sys.executable, "-c", "from desim.sweep import main; main()", str(path),
             "--out", str(out), "--scheduler", address],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        client = started[2]
        while not list((out / "points").glob("*.json")):
            assert client.poll() is None, client.communicate()
            assert time.monotonic() < deadline, "no point finished in 600 s"
            time.sleep(0.02)
        scheduler.kill()
        stdout, stderr = client.communicate(timeout=120)
    finally:
        for process in started:
            process.kill()
            process.wait()
    assert client.returncode == 1, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    message = " ".join(stderr.split())
    written = len(list((out / "points").glob("*.json")))
    assert 1 <= written < 4
    # the futures are cancelled, or a call raises first (its error said in brackets): a race
    assert re.search(re.escape(f"error: lost the connection to the Dask scheduler at {address}")
                     + r"( \(.*\))?" + re.escape(
                         f": {4 - written} of 4 points unfinished (the finished ones are "
                         "written): run the same command again to compute them"), message)
    assert not (out / "results.parquet").exists()  # not a finished sweep's table
    log = (out / "sweep.log").read_text()
    assert f"{4 - written} of 4 points unfinished" in log.splitlines()[-1]


def test_a_connection_error_from_dask_is_a_lost_scheduler(tmp_path):
    """The seam the test above cannot time: a Dask call that raises (CommClosedError, an
    OSError) rather than cancelling the futures. A stand-in client raises it on the first
    submit; no point was finished, so every point is unfinished."""
    from types import SimpleNamespace

    from distributed.comm.core import CommClosedError

    from desim.sweep_dask import SchedulerLost, run_on_dask

    class Gone:
        def submit(self, *args: Any, **kwargs: Any) -> None:
            raise CommClosedError("in <TCP (closed)>: Stream is closed")

    run_spec = SimpleNamespace(name="hppu", pruning=None)
    experiment = SimpleNamespace(spec=SimpleNamespace(runs=[run_spec]),
                                 workloads={"hppu": None})
    ready = [(Point(str(i), {}), experiment, ["key"]) for i in range(3)]
    with pytest.raises(SchedulerLost) as lost:
        list(run_on_dask(Gone(), "tcp://10.0.0.1:8786", ready, tmp_path))  # type: ignore[arg-type]
    assert str(lost.value) == (
        "lost the connection to the Dask scheduler at tcp://10.0.0.1:8786 (CommClosedError: "
        "in <TCP (closed)>: Stream is closed): 3 of 3 points unfinished (the finished ones "
        "are written): run the same command again to compute them")


def test_check_lists_the_invalid_points_of_a_sweep(tmp_path):
    """`desim check` on a sweep: every point is elaborated, nothing simulated;
    the invalid ones come back with their values and the key at fault."""
    from desim.check import check

    path = write_experiment(tmp_path, {"arch.hppu.pe_cluster.pes": [0, 8, -1]})
    checked = check(path)
    assert [r["run"] for r in checked.runs] == ["dense", "hppu"]
    assert checked.sweep_points == 3
    assert [values for values, _ in checked.invalid_points] == [
        {"arch.hppu.pe_cluster.pes": 0}, {"arch.hppu.pe_cluster.pes": -1}]
    assert all("pe_cluster.pes: Input should be greater than 0" in str(err)
               for _, err in checked.invalid_points)


def test_check_elaborates_every_point_of_a_sweep(tmp_path, monkeypatch):
    """A point whose buffer is too small for a tile loads fine; elaborated, it is invalid,
    as `desim sweep` would find it after the capture. Points share the untrained iteration
    of their workload and the tile check of a design they repeat."""
    import desim.elaborate
    import mappings.workload
    from desim.check import check

    calls = {"untrained": 0, "tiles": 0}

    def counted(name, function):
        def call(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return call

    monkeypatch.setattr(mappings.workload, "untrained",
                        counted("untrained", mappings.workload.untrained))
    monkeypatch.setattr(desim.elaborate, "_check_tiles_fit",
                        counted("tiles", desim.elaborate._check_tiles_fit))
    path = write_experiment(tmp_path, {"arch.hppu.global_buffer.capacity_kib": [512, 1],
                                       "runs.1.pruning.sparsity": [0.5, 0.7]})
    checked = check(path)
    assert checked.sweep_points == 4
    assert [values for values, _ in checked.invalid_points] == [
        {"arch.hppu.global_buffer.capacity_kib": 1, "runs.1.pruning.sparsity": s}
        for s in (0.5, 0.7)]
    for _, err in checked.invalid_points:
        assert err.key == "runs.1.arch" and "smallest tile" in err.message
        assert ("global_buffer.capacity_kib 1, set by the sweep's axis sweep.axes."
                f"arch.hppu.global_buffer.capacity_kib=1 of {path})") in err.message
    assert calls == {"untrained": 1, "tiles": 3}  # dense, hppu at 512 KiB and at 1 KiB


def test_the_local_cluster_does_not_reach_for_port_8787():
    """The local cluster's scheduler serves no dashboard, and its HTTP server (which starts
    anyway) takes a free local port: with 8787 taken by another cluster there is no
    "Port 8787 is already in use" warning (dask/distributed#8136)."""
    import contextlib
    import socket
    import warnings

    from desim.sweep_dask import dask_client

    holder = socket.socket()
    with contextlib.suppress(OSError):  # held by something else already: as good
        holder.bind(("127.0.0.1", 8787))
        holder.listen()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with dask_client(None, 1) as client:
                assert client.submit(int, "2").result() == 2
                ports = [s.getsockname()[1]
                         for s in client.cluster.scheduler.http_server._sockets.values()]
        assert 8787 not in ports
        assert not [w for w in caught if "already in use" in str(w.message)]
    finally:
        holder.close()


def test_a_sweep_lost_unfinished_leaves_no_earlier_table(tmp_path, monkeypatch):
    """A finished sweep's table, then the same folder's sweep extended by a point whose
    scheduler is lost before it finishes: no results.parquet, pareto.png nor --plot image
    is left, so the earlier sweep's cannot pass for this one's; the finished point's file
    stays, and the earlier sweep run again (nothing to compute) writes its table back, same
    values."""
    import contextlib

    import desim.sweep
    from desim.sweep_dask import SchedulerLost

    path = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5]}, single_run=True)
    out = tmp_path / "out"
    fake_frame(tmp_path)  # a finished point's record, used for this sweep's one point
    record = json.loads(next((tmp_path / "fake" / "points").glob("*.json")).read_text())
    (first,) = plan_points(load_sweep_spec(path))
    current = begun(out, path)
    (out / "points").mkdir(parents=True)
    (out / "points" / f"{first.point_id}.json").write_text(
        json.dumps({**record, "point_id": first.point_id, "fingerprint": current}))
    before = sweep(path, out, plots=[("cycles", "runs.0.pruning.sparsity")])
    assert totals(before)["cycles"].tolist() == [200, int(record["runs"]["hppu"]["cycles"])]
    assert (out / "results.parquet").is_file() and (out / "pareto.png").is_file()
    plots = [out / "cycles_vs_runs.0.pruning.sparsity.png", out / "energy_j.noc_vs_x.png"]
    assert plots[0].is_file()
    plots[1].write_bytes(plots[0].read_bytes())  # a component's plot of another sweep
    (out / "mine_vs_yours.png").write_text("not desim's")

    def lost(client, scheduler, ready, folder):
        raise SchedulerLost(f"lost the connection: {len(ready)} of "
                            f"{plural(len(ready), 'point')} unfinished")
        yield  # a generator, as run_on_dask is

    monkeypatch.setattr(desim.sweep, "dask_client", lambda *a: contextlib.nullcontext(object()))
    monkeypatch.setattr(desim.sweep, "run_on_dask", lost)
    extended = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5, 0.6]},
                                single_run=True)
    with pytest.raises(SchedulerLost, match="1 of 1 point unfinished"):
        sweep(extended, out)
    assert not (out / "results.parquet").exists() and not (out / "pareto.png").exists()
    assert not any(p.exists() for p in plots)  # the --plot images went with the table
    assert (out / "mine_vs_yours.png").read_text() == "not desim's"
    assert [p.name for p in (out / "points").glob("*.json")] == [f"{first.point_id}.json"]
    assert "1 of 1 point unfinished" in (out / "sweep.log").read_text().splitlines()[-1]
    monkeypatch.undo()
    write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5]}, single_run=True)
    again = sweep(path, out)
    pd.testing.assert_frame_equal(again, before)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), before)


@pytest.mark.parametrize("theirs", ["another sweep's", "none"])
def test_a_point_file_of_another_sweep_is_computed_again(tmp_path, monkeypatch, theirs):
    """A point's id is its axis values alone: a file copied from another sweep's folder (a
    batch-2 sweep's point into a batch-4 sweep's) was taken as done on resume and its
    numbers reported. Each point file records the sweep's fingerprint (sweep.json's); one
    that records another, or none (a desim before this wrote it, or a hand), is not this
    sweep's: the table of a sweep cut short lists it pending, and the sweep computes it
    again, saying so in sweep.log. A point file of its own is kept."""
    import contextlib

    import desim.sweep

    path = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5, 0.6]},
                            single_run=True)
    spec = load_sweep_spec(path)
    first, second = plan_points(spec)
    out = tmp_path / "out"
    fake_frame(tmp_path)  # finished points' records, used as this sweep's and another's
    record = json.loads(next((tmp_path / "fake" / "points").glob("*.json")).read_text())
    current = begun(out, path)
    (out / "points").mkdir(parents=True)
    foreign = {**record, "point_id": first.point_id, "fingerprint": "0123456789abcdef"}
    if theirs == "none":
        del foreign["fingerprint"]
    (out / "points" / f"{first.point_id}.json").write_text(json.dumps(foreign))
    (out / "points" / f"{second.point_id}.json").write_text(
        json.dumps({**record, "point_id": second.point_id, "fingerprint": current}))
    cut_short = gather(out, [first, second], spec, current).drop_duplicates("point_id")
    assert cut_short["status"].tolist() == ["pending", "ok"]
    computed = []
    ours = json.loads(json.dumps({key: record[key] for key in ("status", "error", "elapsed_s",
                                                                 "runs", "comparison")}))
    ours["runs"]["hppu"]["cycles"] = 4321  # (not the copied file's)

    def run_on_dask(client, scheduler, ready, folder):
        for point, experiment, _ in ready:
            computed.append(point.point_id)
            yield point, experiment, {**ours, "worker": "w"}

    monkeypatch.setattr(desim.sweep, "dask_client", lambda *a: contextlib.nullcontext(object()))
    monkeypatch.setattr(desim.sweep, "run_on_dask", run_on_dask)
    frame = sweep(path, out)
    assert computed == [first.point_id]
    hppu = totals(frame)[totals(frame)["run"] == "hppu"]
    assert hppu["cycles"].tolist() == [4321, record["runs"]["hppu"]["cycles"]]
    written = json.loads((out / "points" / f"{first.point_id}.json").read_text())
    assert written["fingerprint"] == current
    said = "none" if theirs == "none" else "0123456789abcdef"
    log = [line.split(" ", 2)[2] for line in (out / "sweep.log").read_text().splitlines()]
    assert (f"point {first.point_id}: its file is not this sweep's (it records {said}, this "
            f"sweep's fingerprint is {current}): computed again {first.values}") in log
    assert sweep(path, out)["cycles"].equals(frame["cycles"])  # now its own: kept
    assert computed == [first.point_id]


@contextlib.contextmanager
def client_log_records() -> Iterator[list[logging.LogRecord]]:
    """What Dask's client logs meanwhile, whatever its level; and that level is as it was
    after (desim silences the logger for a while, then restores it)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("distributed.client")
    level = logger.level
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
    assert logger.level == level


def test_a_scheduler_lost_before_any_point_is_sent_logs_nothing_of_dasks(tmp_path,
                                                                          monkeypatch):
    """The scheduler (a process of its own) is SIGKILLed after the sweep connected, before
    it sends a point: Dask's client fails to reconnect (its connect timeout, 1 s here) and
    would log so at ERROR; SchedulerLost alone says it, with every point unfinished."""

    import dask
    import distributed  # noqa: F401 - sets its loggers' levels on import

    import desim.sweep
    from desim.sweep_dask import SchedulerLost

    path = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5, 0.6]},
                            single_run=True)
    out, address_file = tmp_path / "out", tmp_path / "scheduler.json"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--no-dashboard", "--scheduler-file", str(address_file)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    on_dask = desim.sweep.run_on_dask

    def scheduler_gone(*args: Any) -> Any:
        scheduler.kill()
        scheduler.wait()
        return on_dask(*args)

    monkeypatch.setattr(desim.sweep, "run_on_dask", scheduler_gone)
    try:
        with client_log_records() as records:
            deadline = time.monotonic() + 120  # a hang guard, not a speed claim
            while not address_file.is_file() or not address_file.read_text().strip():
                assert scheduler.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            address = json.loads(address_file.read_text())["address"]
            with (dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
                  pytest.raises(SchedulerLost) as lost):
                sweep(path, out, scheduler=address)
    finally:
        scheduler.kill()
        scheduler.wait()
    assert str(lost.value).startswith(f"lost the connection to the Dask scheduler at {address}")
    assert "2 of 2 points unfinished" in str(lost.value)
    assert [r.getMessage() for r in records] == []
    assert not list((out / "points").glob("*.json"))


def test_a_local_clusters_scheduler_lost_logs_nothing_of_dasks(tmp_path, monkeypatch):
    """As with --scheduler: the local cluster's scheduler stops after the sweep connected,
    before it sends a point; Dask's client, failing to reconnect, would log so at ERROR
    (`silence_logs` lets ERROR through); SchedulerLost alone says it."""
    import logging

    import dask
    import distributed  # noqa: F401 - sets its loggers' levels on import

    import desim.sweep
    from desim.sweep_dask import SchedulerLost

    path = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5, 0.6]},
                            single_run=True)
    on_dask = desim.sweep.run_on_dask

    def scheduler_gone(client: Any, *args: Any) -> Any:
        client.sync(client.cluster.scheduler.close)
        return on_dask(client, *args)

    monkeypatch.setattr(desim.sweep, "run_on_dask", scheduler_gone)
    with (client_log_records() as records,
          dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
          pytest.raises(SchedulerLost) as lost):
        sweep(path, tmp_path / "out", workers=1)
    assert str(lost.value).startswith("lost the connection to the Dask scheduler of the "
                                      "local cluster")
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("error", [
    RuntimeError("Cluster failed to start: Worker process died"),
    OSError(24, "Too many open files"),
    TimeoutError("Nanny failed to start in 60 seconds"),
])
def test_a_local_cluster_that_cannot_start_exits_1_in_one_line(tmp_path, monkeypatch, capsys,
                                                              error):
    """The local cluster fails to start (its workers cannot spawn, no descriptor or port
    left, a start that times out): one line naming the cause, exit 1 (this machine's
    failure, not bad input), no traceback, and the sweep folder as it was."""
    import distributed

    from desim.sweep import main

    class Broken:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise error

    monkeypatch.setattr(distributed, "LocalCluster", Broken)
    path = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5, 0.6, 0.7]},
                            single_run=True)  # (a cluster no larger than the points)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        main([str(path), "--out", str(out), "--workers", "3"])
    assert exited.value.code == 1
    stderr = " ".join(capsys.readouterr().err.split())
    cause = " ".join(str(error).split())
    assert stderr == (f"error: could not start a local Dask cluster of 3 workers "
                      f"({type(error).__name__}: {cause}): nothing was computed; try fewer "
                      "--workers, or a running scheduler with --scheduler")
    assert list(out.iterdir()) == []


def test_a_local_cluster_is_no_larger_than_the_points_to_compute(tmp_path, monkeypatch):
    import distributed

    from desim.sweep_dask import ClusterFailed

    asked = {}

    class Recorded:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            asked.update(kwargs)
            raise RuntimeError("recorded")

    monkeypatch.setattr(distributed, "LocalCluster", Recorded)
    path = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5, 0.6]},
                            single_run=True)
    with pytest.raises(ClusterFailed, match="of 2 workers"):
        sweep(path, tmp_path / "out", workers=8)
    assert asked["n_workers"] == 2


def test_a_client_that_cannot_join_the_local_cluster_closes_it(tmp_path, monkeypatch):
    """The cluster started, its client did not connect: ClusterFailed, the cluster closed."""
    import distributed

    from desim.sweep import sweep
    from desim.sweep_dask import ClusterFailed

    closed = []

    class Cluster:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> Cluster:
            return self

        def __exit__(self, *exc: Any) -> None:
            closed.append(True)

    def no_client(*args: Any, **kwargs: Any) -> None:
        raise TimeoutError("Timed out trying to connect to tcp://127.0.0.1:1 after 30 s")

    monkeypatch.setattr(distributed, "LocalCluster", Cluster)
    monkeypatch.setattr(distributed, "Client", no_client)
    path = write_experiment(tmp_path, {"runs.0.pruning.sparsity": [0.5]}, single_run=True)
    with pytest.raises(ClusterFailed, match=r"of 1 worker \(TimeoutError: Timed out trying "
                                            r"to connect to tcp://127\.0\.0\.1:1 after 30 s\)"):
        sweep(path, tmp_path / "out", workers=1)
    assert closed == [True]
    assert list((tmp_path / "out").iterdir()) == []


def test_time_left_is_the_mean_rate_of_this_runs_points():
    """2 points finished in 20 s, 4 to go: 40 s at their mean rate (rich's own estimate took
    the last few points' rate: two workers finishing together made it read 0:00:01). None
    finished yet (a resumed sweep's earlier points do not count): no estimate."""
    assert time_left(20.0, 2, 4) == "0:00:40"
    assert time_left(3600.0, 1, 2) == "2:00:00"
    assert time_left(61.0, 1, 1) == "0:01:01"
    assert time_left(5.0, 0, 6) == "-:--:--"


def test_the_bar_counts_this_runs_points_for_its_time_left():
    """A sweep resumed with 1 of 6 points done finishes one more: the bar's estimate is
    this run's elapsed time for 1 point, times the 4 left."""
    from desim.sweep import _progress_bar

    with _progress_bar(True, 6, 1, 0) as bar:
        bar.advance(False, Point("a", {}), {})
        task = bar.progress.tasks[0]
        shown = str(bar.progress.columns[-1].render(task))
        assert task.completed == 2
        assert shown == time_left(task.elapsed, 1, 4)


def test_a_signal_met_in_a_finalizer_stops_the_sweep_after_its_point_without_a_traceback(
        capsys):
    """A SIGTERM that found the main thread in a finalizer (a Dask Future's `__del__`, or a
    garbage-collection callback) raised there, where Python printed the exception with a
    traceback and went on: CI saw that traceback on stderr (stop 42). It is now dropped
    quietly, kept, and raised after the point being written or at the sweep's end."""
    import gc
    import types

    from desim import sweep as sweep_module

    class Finalized:
        def __del__(self) -> None:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)

    with pytest.raises(sweep_module.Terminated):  # at the context's end, had nothing else
        with sweep_module._stopped_quietly():
            Finalized()  # its __del__ runs here, and its Terminated cannot propagate
            assert sweep_module._STOPPED == [signal.SIGTERM]
            with pytest.raises(sweep_module.Terminated):  # after the next point
                sweep_module._raise_if_stopped()
            gc.callbacks.append(callback)
            try:
                gc.collect()
            finally:
                gc.callbacks.remove(callback)
            assert sweep_module._STOPPED == [signal.SIGTERM] * 2
            with pytest.raises(sweep_module.Terminated):  # elsewhere: at once
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Exception ignored" not in captured.err
    sweep_module._STOPPED.clear()

    seen: list[BaseException] = []
    previous, sys.unraisablehook = sys.unraisablehook, lambda info: seen.append(info.exc_value)
    try:
        with sweep_module._stopped_quietly():
            sys.unraisablehook(types.SimpleNamespace(exc_value=ValueError("kept")))
    finally:
        sys.unraisablehook = previous
    assert [str(e) for e in seen] == ["kept"]  # not a stop: still said


def test_a_sweep_of_other_code_is_another_sweep(tmp_path, monkeypatch):
    """The fingerprint takes in which desim computes the points (version, commit and the
    sha256 of uncommitted edits): a folder's points from before a code change would be
    resumed beside points of the new code, one table of two models. The refusal says that
    the code is what changed."""
    import desim.sweep

    path = write_experiment(tmp_path, {"workload.batch": [1, 2]})
    spec = load_sweep_spec(path)
    out = tmp_path / "out"
    out.mkdir()
    before = _check_manifest(out, path, [])
    _write_manifest(out, path, [], spec, plan_points(spec), before)
    assert fingerprint(path, []) == before
    edited = {"version": "0.1.0", "commit": "f" * 40, "modified": True, "diff_sha256": "0" * 64}
    monkeypatch.setattr(desim.sweep, "provenance", lambda: edited)
    with_edits = fingerprint(path, [])
    assert with_edits != before
    with pytest.raises(ConfigError, match=r"sweep of other inputs \(desim's code changed "
                                          r"since its points were computed\)"):
        _check_manifest(out, path, [])
    # other uncommitted edits to the same commit are other code too
    monkeypatch.setattr(desim.sweep, "provenance", lambda: {**edited, "diff_sha256": "1" * 64})
    assert fingerprint(path, []) != with_edits


@pytest.mark.parametrize("section, said", [("", "no sweep: section"),
                                           ("sweep:\n", "an empty sweep: section")])
def test_a_missing_or_empty_sweep_section_is_said_as_it_is(tmp_path, section, said):
    """A `sweep:` key with nothing under it had been called missing."""
    path = write_experiment(tmp_path, {"workload.batch": [1]})
    data = yaml.safe_load(path.read_text())
    del data["sweep"]
    path.write_text(yaml.safe_dump(data) + section)
    with pytest.raises(ConfigError, match=f"{said} \\(expected mode and axes"):
        load_sweep_spec(path)


def test_a_stop_that_breaks_a_lock_is_still_a_stop(tmp_path, monkeypatch, capsys):
    """SIGTERM finding the main thread inside Dask's as_completed wait leaves its lock
    unheld, and the `with` releasing it raises RuntimeError in the stop's place (seen once
    in CI: a traceback, exit 1): the sweep command says it was interrupted, exit 143."""
    import typer

    import desim.sweep as sweep_module

    def stopped(*args, **kwargs):
        sweep_module._STOPPED.append(signal.SIGTERM)
        raise RuntimeError("cannot release un-acquired lock")

    monkeypatch.setattr(sweep_module, "sweep", stopped)
    app = typer.Typer()
    sweep_module.register(app)
    path = write_experiment(tmp_path, {"workload.batch": [1, 2]})
    with pytest.raises(SystemExit) as done:
        app([str(path), "--out", str(tmp_path / "out")], standalone_mode=True)
    assert done.value.code == 143
    assert "interrupted: no point finished" in capsys.readouterr().err
    # said, it is off the record: a later sweep() of this process (a notebook's, the next
    # test's) had been stopped by it after its first point
    assert sweep_module._STOPPED == []


def test_a_stop_a_library_swallowed_in_the_client_is_still_a_stop():
    """A Ctrl-C or SIGTERM met while a model was traced in the sweep's client, caught where
    torch imported lazily and surfaced as another error, had failed that point as bad input
    (a resume took it as done): the sweep's handler keeps it where `refuse_uncounted` looks
    (`desim.errors.raise_if_interrupted`), and the stop is off that record once said."""
    from desim import errors
    from desim import sweep as sweep_module

    with pytest.raises(sweep_module.Terminated):
        with sweep_module._stopped_quietly():
            try:
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            except KeyboardInterrupt:
                pass  # swallowed, as a library's broad except did
            errors.raise_if_interrupted()
            pytest.fail("the stop was lost")
    assert errors.STOPS == [] and sweep_module._STOPPED == []
    errors.raise_if_interrupted()  # (nothing on record: no stop)
