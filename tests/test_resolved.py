"""A results folder's config.json run again (`desim run DIR`): the same design and workload,
whatever became of the files they came from, and the same bytes out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from small_experiments import DENSE, lenet300_experiment

from desim.errors import ConfigError
from desim.experiment import load_experiment
from desim.resolved import made_elsewhere
from desim.results import provenance
from desim.runner import resolved_config, run_file
from mappings.workload import input_shape

RESULT_FILES = ("summary.json", "layers.csv", "energy.csv", "stats.json")


def config_json(experiment_path: Path, folder: Path, overrides: list[str] | None = None
                ) -> Path:
    """`folder`/config.json as `desim run` writes it, without simulating."""
    folder.mkdir()
    path = folder / "config.json"
    path.write_text(json.dumps(resolved_config(load_experiment(experiment_path, overrides))))
    return path


def dense_experiment(folder: Path, workload: dict) -> Path:
    """folder/exp.yaml: `workload` on dense.yaml, one run."""
    exp = folder / "exp.yaml"
    exp.write_text(yaml.safe_dump({"name": "one", "baseline": "dense", "workload": workload,
                                   "runs": [{"name": "dense", "arch": DENSE}]}))
    return exp


def test_a_results_folder_runs_again_to_the_same_bytes(tmp_path):
    exp = lenet300_experiment(tmp_path / "exp.yaml", {
        "dense": {"method": "dense"},
        "pruned": {"method": "magnitude", "sparsity": 0.8}})
    raw = yaml.safe_load(exp.read_text())
    raw["runs"][1]["arch_set"] = ["global_buffer.capacity_kib=256"]
    exp.write_text(yaml.safe_dump(raw))
    first = tmp_path / "first"
    run_file(exp, first, ["arch.dense.core_clock_mhz=400", "workload.batch=4"])
    again = tmp_path / "again"
    run_file(first, again)  # the folder itself: its config.json
    for name in RESULT_FILES:
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    before = json.loads((first / "config.json").read_text())
    after = json.loads((again / "config.json").read_text())
    assert after["architectures"] == before["architectures"]
    assert after["architectures"]["dense"]["core_clock_mhz"] == 400
    assert after["architectures"]["pruned"]["global_buffer"]["capacity_kib"] == 256
    assert after["experiment"] == before["experiment"]
    assert after["overrides"] == ["arch.dense.core_clock_mhz=400", "workload.batch=4"]
    assert after["experiment_file"] == str(exp.resolve())


def test_the_recorded_design_runs_whatever_became_of_its_file(tmp_path):
    arch = tmp_path / "arch.yaml"
    arch.write_text(Path(DENSE).read_text())
    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    raw = yaml.safe_load(exp.read_text())
    raw["runs"][0]["arch"] = "arch.yaml"
    exp.write_text(yaml.safe_dump(raw))
    recorded = config_json(exp, tmp_path / "out")
    capacity = load_experiment(exp).archs["dense"].global_buffer.capacity_kib
    arch.write_text(arch.read_text().replace(f"capacity_kib: {capacity}", "capacity_kib: 8"))
    assert load_experiment(exp).archs["dense"].global_buffer.capacity_kib == 8
    assert load_experiment(recorded).archs["dense"].global_buffer.capacity_kib == capacity
    arch.unlink()
    assert load_experiment(recorded).archs["dense"].global_buffer.capacity_kib == capacity


def test_set_items_apply_over_the_recorded_experiment_and_design(tmp_path):
    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    recorded = config_json(exp, tmp_path / "out", ["workload.batch=4"])
    again = load_experiment(recorded, ["arch.dense.global_buffer.capacity_kib=64",
                                       "runs.dense.pruning={method: magnitude, sparsity: 0.5}"])
    assert again.archs["dense"].global_buffer.capacity_kib == 64
    assert again.spec.runs[0].pruning.sparsity == 0.5
    assert again.spec.workload.batch == 4
    assert again.overrides == ["workload.batch=4", "arch.dense.global_buffer.capacity_kib=64",
                               "runs.dense.pruning={method: magnitude, sparsity: 0.5}"]
    with pytest.raises(ConfigError) as err:  # an override's error names the key as --set
        load_experiment(recorded, ["arch.dense.global_buffer.capacity_kib=-1"])
    assert err.value.file == str(recorded) and "capacity_kib" in err.value.key


def test_an_edited_model_file_is_refused(tmp_path):
    model = tmp_path / "net.py"
    model.write_text("import torch.nn as nn\n\ndef net():\n"
                     "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n")
    exp = dense_experiment(tmp_path, {"model": "net.py:net", "input_shape": [1, 8, 8],
                                      "batch": 2})
    recorded = config_json(exp, tmp_path / "out")
    assert load_experiment(recorded).spec.workload.model == f"{model.resolve()}:net"
    model.write_text(model.read_text().replace("10))", "10), nn.ReLU())"))
    with pytest.raises(ConfigError) as err:
        load_experiment(recorded)
    assert err.value.key == "experiment.workload.model_file.sha256"
    assert "has changed since the run" in err.value.message


def test_an_edited_topology_is_refused(tmp_path):
    topology = tmp_path / "net.csv"
    topology.write_text("Layer, IFMAP H, IFMAP W, Filter H, Filter W, Channels, Num Filter, "
                        "Strides,\nconv1, 8, 8, 3, 3, 4, 8, 1,\n")
    exp = dense_experiment(tmp_path, {"scalesim_topology": "net.csv"})
    recorded = config_json(exp, tmp_path / "out")
    assert load_experiment(recorded).spec.workload == load_experiment(exp).spec.workload
    topology.write_text(topology.read_text().replace("4, 8, 1", "4, 16, 1"))
    with pytest.raises(ConfigError) as err:
        load_experiment(recorded)
    assert err.value.key == "experiment.workload.scalesim_topology_sha256"


def test_a_dense_runs_recorded_defaults_load_and_another_value_is_refused(tmp_path):
    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    recorded = config_json(exp, tmp_path / "out")
    raw = json.loads(recorded.read_text())
    assert raw["experiment"]["runs"][0]["pruning"]["channel_share"] == 0.5  # all recorded
    assert load_experiment(recorded).spec.runs[0].pruning.model_fields_set == {"method"}
    raw["experiment"]["runs"][0]["pruning"]["channel_share"] = 0.3  # no default: refused
    recorded.write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as err:
        load_experiment(recorded)
    assert err.value.key == "runs.0.pruning.channel_share"


def run_reading_another_model(tmp_path: Path, given: bool) -> tuple[Path, Path]:
    """An experiment of LeNet-5 and a run of it whose workload_set names the sparsity probe
    (default input [1, 14, 14] with one channel), the experiment's input given or not."""
    workload = {"model": "lenet5", "batch": 1, "data": "random"}
    if given:
        workload["input_shape"] = [1, 28, 28]  # LeNet-5's default, given
    exp = tmp_path / f"exp_{given}.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "two", "baseline": "a", "workload": workload,
        "runs": [{"name": "a", "arch": DENSE},
                 {"name": "b", "arch": DENSE, "workload_set": [
                     "model=sparsity_probe", "model_args={channels: 1}"]}]}))
    return exp, config_json(exp, tmp_path / f"out_{given}")


@pytest.mark.parametrize("given", [False, True])
def test_a_run_of_another_model_reads_the_input_it_read(tmp_path, given):
    exp, recorded = run_reading_another_model(tmp_path, given)
    shapes = [input_shape(w) for w in load_experiment(exp).workloads.values()]
    assert shapes == [(1, 28, 28), (1, 28, 28) if given else (1, 14, 14)]
    again = load_experiment(recorded)
    assert [input_shape(w) for w in again.workloads.values()] == shapes
    assert json.loads(recorded.read_text())["experiment"]["runs"][1]["input_shape"] \
        == list(shapes[1])


def test_a_recorded_input_that_cannot_be_read_back_is_refused(tmp_path):
    _, recorded = run_reading_another_model(tmp_path, given=False)
    raw = json.loads(recorded.read_text())
    raw["experiment"]["runs"][1]["input_shape"] = [1, 20, 20]  # neither reading gives it
    recorded.write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as err:
        load_experiment(recorded)
    assert err.value.key == "experiment.runs.b.input_shape"
    assert "[1, 14, 14], not the [1, 20, 20] recorded" in err.value.message


def test_a_config_json_without_a_design_for_a_run_is_refused(tmp_path):
    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    recorded = config_json(exp, tmp_path / "out")
    raw = json.loads(recorded.read_text())
    raw["architectures"]["dense"]["pe_cluster"]["pes"] = "many"
    recorded.write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as err:
        load_experiment(recorded)
    assert err.value.key == "architectures.dense.pe_cluster.pes"
    del raw["architectures"]["dense"]
    recorded.write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as err:
        load_experiment(recorded)
    assert err.value.key == "architectures.dense"


def test_another_desim_is_named():
    here = provenance()
    assert made_elsewhere(here) is None
    other = {"version": here["version"], "commit": "0123456789" * 4, "modified": False}
    note = made_elsewhere(other)
    assert note is not None and note.startswith("written by desim commit 0123456789; this is ")


def test_a_results_folders_sweep_is_its_recorded_sweep(tmp_path):
    from desim.check import check
    from desim.sweep import load_sweep_spec

    exp = lenet300_experiment(
        tmp_path / "exp.yaml", {"dense": {"method": "dense"},
                                "pruned": {"method": "magnitude", "sparsity": 0.5}},
        sweep={"mode": "grid", "axes": {"runs.1.pruning.sparsity": [0.5, 0.9],
                                        "arch.pruned.global_buffer.capacity_kib": [1, 64, 128]}})
    recorded = config_json(exp, tmp_path / "out")
    assert load_sweep_spec(recorded.parent) == load_sweep_spec(exp)
    checked = check(recorded.parent)  # the folder: its config.json's sweep, every point
    assert checked.sweep_points == 6
    invalid = [values for values, _ in checked.invalid_points]
    assert invalid == [{"runs.1.pruning.sparsity": s,
                        "arch.pruned.global_buffer.capacity_kib": 1} for s in (0.5, 0.9)]
    assert invalid == [values for values, _ in check(exp).invalid_points]
