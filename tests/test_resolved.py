"""A results folder's config.json run again (`desim run DIR`): the same design and workload,
whatever became of the files they came from, and the same bytes out."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from small_experiments import DENSE, lenet300_experiment

from desim.errors import ConfigError
from desim.experiment import load_experiment
from desim.resolved import made_elsewhere, resolved_config
from desim.results import provenance
from desim.runner import run_file
from mappings.workload import input_shape

RESULT_FILES = ("summary.json", "layers.csv", "energy.csv", "stats.json")
TOPOLOGY = ("Layer, IFMAP H, IFMAP W, Filter H, Filter W, Channels, Num Filter, Strides,\n"
            "conv1, 8, 8, 3, 3, 4, 8, 1,\n")


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


def test_a_config_json_edited_after_its_run_is_refused(tmp_path):
    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    recorded = config_json(exp, tmp_path / "out")
    raw = json.loads(recorded.read_text())
    assert raw["experiment"]["runs"][0]["pruning"]["channel_share"] == 0.5  # all recorded
    assert raw["given"]["experiment"]["runs"][0]["pruning"] == {"method": "dense"}
    assert load_experiment(recorded).spec.runs[0].pruning.model_fields_set == {"method"}
    edits = {"experiment": ("runs", 0, "pruning", "channel_share", 0.3),
             "given": ("experiment", "workload", "batch", 3),
             "architectures": ("dense", "noc", "hop_latency_cycles", 9)}
    keys = {"experiment": "experiment.runs.0.pruning.channel_share",
            "given": "experiment.workload.batch",
            "architectures": "architectures.dense.noc.hop_latency_cycles"}
    for section, (*where, name, value) in edits.items():
        edited = copy.deepcopy(raw)
        node = edited[section]
        for part in where:
            node = node[part]
        node[name] = value
        recorded.write_text(json.dumps(edited))
        with pytest.raises(ConfigError, match="edited after its run") as err:
            load_experiment(recorded)
        assert err.value.key == keys[section]
        with pytest.raises(ConfigError, match="edited after its run"):  # --set or not
            load_experiment(recorded, ["workload.batch=5"])
    recorded.write_text(json.dumps(raw))
    assert load_experiment(recorded, ["workload.batch=5"]).spec.workload.batch == 5


def test_a_set_item_moves_the_defaults_that_follow_from_it(tmp_path):
    """A rerun reads what the run was given, not the resolved defaults: a NoC's routing
    follows its topology, a method's parameters the method, a model's input the model,
    and a --set over the record moves them as it would over the experiment file."""
    exp = lenet300_experiment(tmp_path / "exp.yaml", {
        "dense": {"method": "dense"}, "hyb": {"method": "hybrid", "sparsity": 0.5}})
    raw = yaml.safe_load(exp.read_text())
    del raw["workload"]["input_shape"]
    raw["runs"][0]["arch_set"] = [
        "noc={topology: ring, shape: [16], link_bandwidth_bytes_per_cycle: 32, "
        "hop_latency_cycles: 1}", "global_buffer_router=r0"]
    raw["runs"][1]["workload_set"] = ["batch=4"]
    exp.write_text(yaml.safe_dump(raw))
    recorded = config_json(exp, tmp_path / "out")
    mesh = ["arch.dense.noc.topology=mesh", "arch.dense.noc.shape=[4, 4]",
            "arch.dense.global_buffer_router=r0_0"]
    for sets in (mesh, ["runs.hyb.pruning.method=magnitude"],
                 ["workload.model=lenet5", "workload.data=random"]):
        again, fresh = load_experiment(recorded, sets), load_experiment(exp, sets)
        assert again.archs == fresh.archs and again.spec == fresh.spec, sets
        assert again.workloads == fresh.workloads, sets
    assert load_experiment(recorded, mesh).archs["dense"].noc.routing == "xy"


def test_set_without_training_and_a_runs_own_topology_run_again(tmp_path):
    """Two studies the first reading of config.json (its resolved sections, less their
    defaults) could not run again: SET without training (its update_every, recorded, read
    as given), and a run whose workload_set makes it a SCALE-Sim topology's (the model's
    data and seed, recorded, read as given)."""
    (tmp_path / "net.csv").write_text(TOPOLOGY)
    exp = lenet300_experiment(tmp_path / "exp.yaml", {
        "dense": {"method": "dense"}, "set": {"method": "set", "sparsity": 0.5},
        "csv": {"method": "dense"}})
    raw = yaml.safe_load(exp.read_text())
    raw["workload"] = {"model": "lenet300", "batch": 2}
    raw["runs"][2]["workload_set"] = ["model=null", "scalesim_topology=net.csv", "batch=1"]
    exp.write_text(yaml.safe_dump(raw))
    fresh = load_experiment(exp)
    assert fresh.workloads["csv"].scalesim_topology == str(tmp_path / "net.csv")
    again = load_experiment(config_json(exp, tmp_path / "out"))
    assert again.spec == fresh.spec and again.workloads == fresh.workloads
    assert again.archs == fresh.archs


def test_an_edited_topology_of_a_runs_workload_set_is_refused(tmp_path):
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text(TOPOLOGY)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "two", "baseline": "a", "workload": {"scalesim_topology": "a.csv"},
        "runs": [{"name": "a", "arch": DENSE},
                 {"name": "b", "arch": DENSE, "workload_set": ["scalesim_topology=b.csv"]}]}))
    recorded = config_json(exp, tmp_path / "out")
    load_experiment(recorded)
    with (tmp_path / "b.csv").open("a") as f:
        f.write("conv2, 6, 6, 3, 3, 8, 8, 1,\n")
    with pytest.raises(ConfigError, match="has changed since the run") as err:
        load_experiment(recorded)
    assert err.value.key == "experiment.runs.1.scalesim_topology_sha256"
    with pytest.raises(ConfigError, match="has changed since the run"):  # --set or not
        load_experiment(recorded, ["workload.batch=1"])


def test_a_new_workload_set_of_a_run_applies_as_over_the_file(tmp_path):
    exp = lenet300_experiment(tmp_path / "exp.yaml", {
        "dense": {"method": "dense"}, "b": {"method": "dense"}})
    raw = yaml.safe_load(exp.read_text())
    raw["workload"] = {"model": "lenet5", "batch": 2}
    raw["runs"][1]["workload_set"] = ["model=lenet300"]
    exp.write_text(yaml.safe_dump(raw))
    recorded = config_json(exp, tmp_path / "out")
    assert input_shape(load_experiment(recorded).workloads["b"]) == (784,)
    sets = ["runs.b.workload_set=[batch=3]"]
    assert load_experiment(recorded, sets).workloads == load_experiment(exp, sets).workloads
    assert input_shape(load_experiment(recorded, sets).workloads["b"]) == (1, 28, 28)


def test_a_config_json_of_the_wrong_shape_is_one_line(tmp_path):
    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    recorded = config_json(exp, tmp_path / "out")
    raw = json.loads(recorded.read_text())
    cases = [("given", lambda r: r.pop("given"), "no given section"),
             ("architectures", lambda r: r.pop("architectures"), "expected a mapping"),
             ("extra", lambda r: r.update(extra=1), "unknown key"),
             ("given.architectures.dense", lambda r: r["given"]["architectures"].pop("dense"),
              "no design recorded for run 'dense'"),
             ("given.experiment.runs.0.pruning.method",
              lambda r: r["given"]["experiment"]["runs"][0]["pruning"].pop("method"),
              "Field required"),
             ("given.architectures.dense.kind",
              lambda r: r["given"]["architectures"]["dense"].update(kind="bogus"),
              "unknown kind 'bogus'"),
             ("architectures.ghost", lambda r: r["architectures"].update(ghost={}),
              "edited after its run")]
    for key, edit, message in cases:
        edited = copy.deepcopy(raw)
        edit(edited)
        recorded.write_text(json.dumps(edited))
        with pytest.raises(ConfigError, match=message) as err:
            load_experiment(recorded)
        assert err.value.key == key, message
    with pytest.raises(ConfigError, match="a directory without a config.json"):
        load_experiment(tmp_path)
    recorded.write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as err:  # a --set's error names the --set
        load_experiment(recorded, ["arch.dense.pe_cluster.pes=-1"])
    assert err.value.key == "given.architectures.dense.pe_cluster.pes"
    assert "set by --set arch.dense.pe_cluster.pes=-1" in err.value.message


def test_another_desim_is_named():
    here = provenance()
    assert made_elsewhere(here) is None
    other = {"version": here["version"], "commit": "0123456789" * 4, "modified": False}
    note = made_elsewhere(other)
    assert note is not None and note.startswith(
        f"written by desim {here['version']}, commit 0123456789; this is ")


def test_a_new_arch_or_arch_set_of_a_recorded_run_is_refused(tmp_path):
    """The run's design is recorded with its file and arch_set applied: a new one would
    not be read (an audit's rerun simulated 500 MHz under a recorded arch_set of 400)."""
    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    recorded = config_json(exp, tmp_path / "out")
    for item, key in (("runs.0.arch_set=[core_clock_mhz=400]", "runs.0.arch_set"),
                      ("runs.dense.arch=other.yaml", "runs.0.arch")):
        with pytest.raises(ConfigError, match="a new one would not be read") as err:
            load_experiment(recorded, [item])
        assert err.value.key == key
    clock = load_experiment(recorded, ["arch.dense.core_clock_mhz=400"])
    assert clock.archs["dense"].core_clock_mhz == 400


def test_a_sweeps_point_file_runs_again_and_its_folder_says_so(tmp_path):
    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    config = resolved_config(load_experiment(exp, ["workload.batch=3"]))
    sweep_folder = tmp_path / "sweep"
    (sweep_folder / "points").mkdir(parents=True)
    (sweep_folder / "sweep.json").write_text("{}")
    point = sweep_folder / "points" / "0123456789abcdef.json"
    point.write_text(json.dumps({"point_id": "0123456789abcdef", "status": "ok",
                                 "config": config}))
    assert load_experiment(point).spec.workload.batch == 3
    with pytest.raises(ConfigError, match="is a sweep's folder"):
        load_experiment(sweep_folder)


def test_names_outside_the_bmp_and_a_linked_experiment_run_again(tmp_path):
    (tmp_path / "real").mkdir()
    exp = lenet300_experiment(tmp_path / "real" / "exp.yaml", {"dense": {"method": "dense"}})
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "exp.yaml").symlink_to(exp)
    linked = tmp_path / "link" / "exp.yaml"
    recorded = config_json(linked, tmp_path / "out", ["arch.dense.name=dense\U0001f600"])
    assert json.loads(recorded.read_text())["experiment_file"] == str(linked)
    again = load_experiment(recorded)
    assert again.archs["dense"].name == "dense\U0001f600"
    assert again.archs == load_experiment(linked, ["arch.dense.name=dense\U0001f600"]).archs


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


def test_another_desims_record_is_noted_with_or_without_set_items(tmp_path):
    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    recorded = config_json(exp, tmp_path / "out")
    raw = json.loads(recorded.read_text())
    raw["desim"]["commit"] = "0" * 40
    raw["architectures"]["dense"]["noc"]["hop_latency_cycles"] = 9
    recorded.write_text(json.dumps(raw))
    note = ("this desim resolves architectures.dense.noc.hop_latency_cycles to 1 (the "
            "record: 9)")
    assert load_experiment(recorded).recorded.notes == [note]
    assert load_experiment(recorded, ["workload.batch=3"]).recorded.notes == [note]
    from desim.check import check

    written, noted = check(recorded.parent).notes  # `desim check` says them as run does
    assert written.startswith(f"{recorded}: written by desim ") and "0000000000" in written
    assert noted == f"{recorded}: {note}"


def test_a_sweep_of_another_desims_record_says_so_and_one_sweep_holds_its_folder(tmp_path):
    """`desim sweep DIR` tells what `desim run DIR` says of a record (`tell`, printed by the
    command) before it runs. One sweep at a time writes a folder: a second, started while
    the first runs, had computed every point again beside it; it is refused, naming the
    first, before anything is computed. The lock dies with its process: a sweep killed
    while it runs leaves a folder the next one resumes."""
    import subprocess
    import sys

    from desim.results import held_by_this_process
    from desim.sweep import sweep

    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}},
                              sweep={"mode": "grid", "axes": {"workload.batch": [2, 3]}})
    recorded = config_json(exp, tmp_path / "out")
    raw = json.loads(recorded.read_text())
    raw["desim"]["commit"] = "0" * 40
    recorded.write_text(json.dumps(raw))
    out = tmp_path / "sweep"
    out.mkdir()
    told: list[str] = []
    with held_by_this_process(out, "a sweep"), pytest.raises(ConfigError) as refused:
        sweep(recorded.parent, out, tell=told.append)
    assert refused.value.file == str(out)
    assert refused.value.message == ("another desim is writing in this folder now: wait for "
                                     "it to end (run the same command again then: what it "
                                     "finished is kept), or write elsewhere")
    assert len(told) == 1 and told[0].startswith(f"note: {recorded}: written by desim ")
    assert not (out / "points").exists() and not (out / "sweep.json").exists()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from desim.results import "
        "held_by_this_process as held\n"
        f"with held(Path({str(out)!r}), 'a sweep'):\n"
        "    print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(ConfigError, match="another desim is writing in this folder"):
        with held_by_this_process(out, "a sweep"):
            pass
    holder.kill()
    holder.wait()
    with held_by_this_process(out, "a sweep"):  # its lock went with it
        assert list(out.iterdir()) == []  # (and left no file)


def test_unreadable_json_and_a_failed_point_are_one_line(tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    for text, message in (("[" * 100_000 + "]" * 100_000, "nested too deeply"),
                          ('{"given": {}, "given": {}}', "key 'given' given twice"),
                          ('{"desim": ' + "9" * 5000 + "}", "not valid JSON"),
                          ('{"point_id": "ab", "status": "failed", "error": "no tile fits", '
                           '"config": null}', "recorded no configuration to run again "
                                              "(it failed before it had one: no tile fits)")):
        (folder / "config.json").write_text(text)
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_experiment(folder)


def test_a_reruns_design_error_is_named_in_its_record(tmp_path):
    from desim.check import check

    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    recorded = config_json(exp, tmp_path / "out")
    with pytest.raises(ConfigError) as err:  # no tile fits 1 KiB
        check(recorded.parent, ["arch.dense.global_buffer.capacity_kib=1"])
    assert err.value.file == str(recorded) and err.value.key == "given.architectures.dense"


def test_a_folder_a_file_system_cannot_lock_is_written_unheld(tmp_path, monkeypatch):
    """NFS's client takes `flock` for a write lock, which a folder opened to read cannot
    have (EBADF): every run and sweep into such a folder had died with a traceback. The
    folder is written unheld there, as before the lock."""
    import errno
    import fcntl

    from desim.results import held_by_this_process

    def nfs(fd: int, operation: int) -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", nfs)
    entered = []
    with held_by_this_process(tmp_path, "a sweep"):
        entered.append(True)
    assert entered == [True]
