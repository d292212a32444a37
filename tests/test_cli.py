"""The command line end to end: bad input exits 2 with one clear line; the quickstart runs."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from small_experiments import as_older_desims, lenet5_bare_experiment, lenet300_experiment

from desim.metrics import on_chip_energy_ratio

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "experiments" / "quickstart.yaml"


def desim(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "desim", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def copy_configs(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    return tmp_path / "configs"


def edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def assert_config_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())  # rich may wrap long lines
    for fragment in fragments:
        assert fragment in message, message


def test_the_command_line_starts_without_torch_or_pandas():
    """Help, `desim topology` and a typo's error need neither: they answer in about a second
    (torch alone takes seconds to import). Checked by what is imported, not by a clock."""
    probe = ("import sys, desim.cli; from desim.experiment import load_experiment; "
             f"load_experiment({str(QUICKSTART)!r}, ['workload.batch=2']); "
             "print(sorted({'torch', 'pandas'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_mistyped_arch_key_names_file_key_and_expectation(tmp_path):
    configs = copy_configs(tmp_path)
    edit_yaml(configs / "arch" / "hppu_like.yaml",
              lambda d: d["pe_cluster"].update({"macs_per_pe_per_cycel": 4}))
    result = desim("run", str(configs / "experiments" / "quickstart.yaml"), "--out",
                   str(tmp_path / "out"))
    assert_config_error(result, "hppu_like.yaml", "pe_cluster.macs_per_pe_per_cycel",
                        "unknown key", "macs_per_pe_per_cycle")


def test_wrong_type_names_the_key_and_value(tmp_path):
    configs = copy_configs(tmp_path)
    edit_yaml(configs / "arch" / "dense.yaml", lambda d: d["global_buffer"].update(banks="many"))
    result = desim("run", str(configs / "experiments" / "quickstart.yaml"))
    assert_config_error(result, "dense.yaml", "global_buffer.banks", "'many'")


def test_impossible_value_is_refused(tmp_path):
    configs = copy_configs(tmp_path)
    edit_yaml(configs / "arch" / "dense.yaml", lambda d: d["pe_cluster"].update(pes=0))
    result = desim("run", str(configs / "experiments" / "quickstart.yaml"))
    assert_config_error(result, "dense.yaml", "pe_cluster.pes", "greater than 0")


def test_an_infinite_price_is_refused_before_anything_is_written(tmp_path):
    """`inf` would reach summary.json as Infinity or NaN: a finite number is expected."""
    result = desim("run", str(QUICKSTART), "--set", "arch.*.energy.noc_pj_per_bit_hop=inf",
                   "--out", str(tmp_path / "out"))
    assert_config_error(result, "dense.yaml: energy.noc_pj_per_bit_hop: Input should be a "
                        "finite number (got 'inf')")
    assert not (tmp_path / "out" / "summary.json").exists()


def test_unknown_model_and_missing_file(tmp_path):
    result = desim("run", str(QUICKSTART), "--set", "workload.model=resnet19")
    assert_config_error(result, "resnet19")
    assert_config_error(desim("run", str(tmp_path / "nope.yaml")), "nope.yaml", "no such file")


@pytest.mark.parametrize("setting, fragments", [
    ("workload.input_shape=[1,32,32]", ["workload.input_shape", "cannot take inputs of shape"]),
    ("workload.batch=1000000000000", ["workload.batch", "does not fit in this machine's memory"]),
    ("workload.model_args.depth=3",
     ["workload.model_args.depth: model 'resnet18' takes no argument 'depth'; it takes "
      "num_classes, cifar"]),
    # YAML reads a quoted false as a string, which Python would take as true
    ('workload.model_args.cifar="false"',
     ["workload.model_args.cifar: model 'resnet18', argument 'cifar': input should be a "
      "valid boolean, got 'false'"]),
])
def test_a_workload_the_model_cannot_run_names_the_experiment_file_and_key(setting, fragments):
    assert_config_error(desim("run", str(QUICKSTART), "--set", setting), "quickstart.yaml",
                        *fragments)


def test_a_diverging_training_names_the_experiment_and_learning_rate(tmp_path):
    result = desim("run", str(QUICKSTART), "--out", str(tmp_path / "out"), "--set",
                   "workload={model: lenet5, batch: 1, data: digits, "
                   "training: {iterations: 3, learning_rate: 1.0e+30}}")
    assert_config_error(result, "quickstart.yaml: workload.training.learning_rate: training "
                        "diverged: the loss is nan at iteration 1; expected a smaller "
                        "learning rate (got 1e+30)")
    assert not (tmp_path / "out" / "summary.json").exists()
    # a run's own workload diverging says which run and which workload_set made it
    result = desim("run", str(QUICKSTART), "--out", str(tmp_path / "out"), "--set",
                   "workload={model: lenet5, batch: 1, data: digits, "
                   "training: {iterations: 3}}", "--set",
                   "runs.1.workload_set=[training.learning_rate=1.0e+30]")
    assert_config_error(result, "quickstart.yaml: workload.training.learning_rate: training "
                        "diverged", "(the workload of run 'hppu': the experiment's with "
                        "its workload_set [training.learning_rate=1.0e+30])")


@pytest.mark.parametrize("experiment, setting, fragments", [
    ("peak_efficiency.yaml", "workload.model_args.channels=-1",
     ["workload.model_args.channels: model 'sparsity_probe', argument 'channels': input "
      "should be greater than 0, got -1"]),
    ("permdnn_transformer.yaml", "workload.model_args={heads: 0}",
     ["workload.model_args.heads: model 'transformer_block', argument 'heads': input should "
      "be greater than 0, got 0"]),
    ("permdnn_transformer.yaml", "workload.model_args={num_classes: null}",
     ["workload.model_args.num_classes: model 'transformer_block' without a classification "
      "head has no loss to train on"]),
])
def test_check_refuses_a_model_argument_naming_its_key(experiment, setting, fragments):
    result = desim("check", str(ROOT / "configs" / "experiments" / experiment), "--set", setting)
    assert_config_error(result, experiment, *fragments)


def test_tile_larger_than_buffer_is_refused_before_simulating(tmp_path):
    configs = copy_configs(tmp_path)
    edit_yaml(configs / "arch" / "dense.yaml", lambda d: d["global_buffer"].update(capacity_kib=8))
    result = desim("run", str(configs / "experiments" / "quickstart.yaml"))
    assert_config_error(result, "quickstart.yaml: runs.0.arch:", "global buffer",
                        "(run 'dense', architecture ../arch/dense.yaml: "
                        "global_buffer.capacity_kib 8)")


@pytest.fixture(scope="module")
def quickstart_twice(tmp_path_factory):
    outs = [tmp_path_factory.mktemp(f"quickstart{i}") for i in range(2)]
    results = [desim("run", str(QUICKSTART), "--out", str(out)) for out in outs]
    for r in results:
        assert r.returncode == 0, r.stderr
    return outs, results


def test_quickstart_sparse_run_is_faster_and_uses_less_energy(quickstart_twice):
    outs, results = quickstart_twice
    summary = json.loads((outs[0] / "summary.json").read_text())
    dense, hppu = summary["runs"]["dense"], summary["runs"]["hppu"]
    assert hppu["cycles"] < dense["cycles"]
    assert hppu["energy_j"] < dense["energy_j"]
    assert summary["comparison"]["hppu"]["speedup"] > 1
    assert summary["comparison"]["hppu"]["energy_ratio"] > 1
    # a dense processor performs every MAC; the same training step has the same MACs
    assert dense["phases"]["FF"]["processed_macs"] == dense["phases"]["FF"]["macs"]
    assert hppu["macs"] == dense["macs"]
    assert hppu["effectual_macs"] < dense["effectual_macs"]
    on_chip = on_chip_energy_ratio(dense, hppu)
    assert 1 < on_chip != summary["comparison"]["hppu"]["energy_ratio"]
    assert (f"hppu vs dense: speedup {summary['comparison']['hppu']['speedup']:.2f}x, energy "
            f"{summary['comparison']['hppu']['energy_ratio']:.2f}x less ({on_chip:.2f}x less "
            "on chip)") in " ".join(results[0].stdout.split())
    # and what caps them: the component with the largest share of hppu's energy and the
    # part that bound the largest share of its time, against dense's
    from desim.gains import energy_gains, time_gains
    energy = energy_gains(dense, hppu).drop("total")
    top = energy["share_of_run"].idxmax()
    time = time_gains(dense, hppu).drop("total")
    bound = time["share_of_run"].idxmax()
    assert (f"largest: {top}, {100 * energy.loc[top, 'share_of_run']:.0f}% of its energy "
            f"({energy.loc[top, 'shrink']:.2f}x less than dense's); {bound}-bound layer-phases, "
            f"{100 * time.loc[bound, 'share_of_run']:.0f}% of its time") in \
        " ".join(results[0].stdout.split())
    # the vector layers' share of the time, as summary.json's units give it
    share = 100 * hppu["units"]["vector_unit"]["cycles"] / hppu["cycles"]
    stdout = " ".join(results[0].stdout.split())  # rich may wrap long lines
    assert (f"hppu: vector layers (batch norm, pooling, adds, softmax) take {share:.0f}% of"
            in stdout)


def test_quickstart_summary_says_how_busy_each_part_was(quickstart_twice):
    """summary.json's `utilization`: each part's busy share as stats.json counts it, the
    NoC's busiest link, and the MAC units' processed MACs over units x cycles; `desim run`
    prints them, busiest first."""
    outs, results = quickstart_twice
    summary = json.loads((outs[0] / "summary.json").read_text())
    stats = json.loads((outs[0] / "stats.json").read_text())
    config = json.loads((outs[0] / "config.json").read_text())
    stdout = " ".join(results[0].stdout.split())
    for run, r in summary["runs"].items():
        modules, time_ps = stats[run]["modules"], stats[run]["sim"]["time_ps"]
        busy = r["utilization"]
        assert busy["dram"] == modules[f"{run}.dram"]["busy_ps"] / time_ps
        assert busy["pe_array"] == modules[f"{run}.pe_array"]["busy_ps"] / time_ps
        # the global buffer's read and write ports: the mean of their shares
        assert modules[f"{run}.glb"]["concurrency"] == 2
        assert busy["glb"] == modules[f"{run}.glb"]["busy_ps"] / time_ps / 2
        links = {path.removeprefix(f"{run}.noc."): m["utilization"]
                 for path, m in modules.items() if path.startswith(f"{run}.noc.")}
        assert len(links) > 16 and busy["noc"] == max(links.values())
        assert links[r["busiest_parts"]["noc"]] == busy["noc"]
        assert not any("_to_" in part for part in busy)  # the stages' FIFOs do no timed work
        pe = config["architectures"][run]["pe_cluster"]
        units = 16 * pe["pes"] * pe["macs_per_pe_per_cycle"]  # a cluster at each of 4x4
        processed = sum(p["processed_macs"] for p in r["phases"].values())
        assert busy["mac_units"] == pytest.approx(processed / (units * r["cycles"]), rel=1e-12)
        assert 0 < busy["mac_units"] <= busy["pe_array"] <= 1
        first = max(busy, key=lambda part: busy[part])
        assert f"{run}: busy {first} {100 * busy[first]:.0f}%" in stdout
        bound = r["time_by_busiest_part"]
        first = max(bound, key=lambda part: bound[part])
        assert (f"{run}: time by each layer-phase's busiest part: {first} "
                f"{100 * bound[first]:.0f}%") in stdout
    # the sparse run waits on DRAM more than the dense one, and its MAC units idle more
    dense, hppu = summary["runs"]["dense"]["utilization"], summary["runs"]["hppu"]["utilization"]
    assert hppu["mac_units"] < dense["mac_units"] and hppu["dram"] > dense["dram"]


def test_quickstart_is_deterministic(quickstart_twice):
    outs, _ = quickstart_twice
    for name in ("summary.json", "layers.csv", "energy.csv", "config.json"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


def test_quickstart_layers_csv_has_every_layer_and_phase(quickstart_twice):
    import pandas as pd
    outs, _ = quickstart_twice
    layers = pd.read_csv(outs[0] / "layers.csv")
    assert list(layers.columns[:9]) == ["run", "arch", "layer", "phase", "macs",
                                        "effectual_macs", "processed_macs", "cycles",
                                        "energy_j"]
    summary = json.loads((outs[0] / "summary.json").read_text())
    for run, r in summary["runs"].items():
        rows = layers[layers["run"] == run]
        assert set(rows["arch"]) == {r["arch"]}    # the run's architecture, by its name
        assert rows["macs"].sum() == r["macs"]
        assert set(rows["phase"]) == {"FF", "BP", "WG"}
        # 21 conv/linear layers: 21 FF, 20 BP (not the first), 21 WG; 20 batch norms and
        # one pooling layer (ReLUs are fused): FF and BP each; 8 residual adds (FF) and the
        # 8 forks into their blocks (BP)
        mac_rows = rows[rows["macs"] > 0]
        assert len(mac_rows) == 21 + 20 + 21
        assert len(rows) - len(mac_rows) == (20 + 1) * 2 + 8 + 8


@pytest.mark.parametrize("arch", sorted((ROOT / "configs" / "arch").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_topology_writes_a_png_for_every_arch_config(arch, tmp_path):
    out = tmp_path / f"{arch.stem}.png"
    result = desim("topology", str(arch), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000


def test_the_paths_printed_are_the_paths_given_not_rich_markup(tmp_path):
    """A folder named like a rich tag: `[bold]` was dropped from the printed path, and `[/]`
    (a closing tag with nothing to close) ended a finished command in a traceback."""
    for folder in ("[bold]", "x[/]"):
        out = tmp_path / folder / "t.dot"
        out.parent.mkdir(parents=True)
        result = desim("topology", str(ROOT / "configs" / "arch" / "dense.yaml"), "-o",
                       str(out))
        assert result.returncode == 0, result.stderr
        # rich wraps the line at 80 columns, inside the path too: compare without spaces
        assert f"wrote{out}(" in "".join(result.stdout.split()) and out.is_file()


def test_topology_colours_by_utilization_from_a_run(quickstart_twice, tmp_path):
    """The run of the arch's name (hppu_like.yaml is the quickstart's `hppu` run): each link
    and node is labelled with its own module's utilization from stats.json."""
    outs, _ = quickstart_twice
    modules = json.loads((outs[0] / "stats.json").read_text())["hppu"]["modules"]
    port = modules["hppu.noc.selector->r0_0"]["utilization"]
    back = modules["hppu.noc.r0_0->selector"]["utilization"]
    pes = modules["hppu.pe_array"]["utilization"]
    assert 0 < back < port < 1 and 0 < pes < 1   # operands out outweigh results back
    arch = str(ROOT / "configs" / "arch" / "hppu_like.yaml")
    for suffix in ("svg", "dot"):
        out = tmp_path / f"util.{suffix}"
        result = desim("topology", arch, "-o", str(out), "--stats", str(outs[0]))
        assert result.returncode == 0, result.stderr
    assert "utilization" in (tmp_path / "util.svg").read_text()   # the colour bar
    dot = (tmp_path / "util.dot").read_text()
    assert f'"selector" -> "r0_0" [label="32 B/cycle {port:.0%}"];' in dot
    assert f'"r0_0" -> "selector" [label="32 B/cycle {back:.0%}"];' in dot
    assert f'label="cluster_r3_3\\npe_cluster\\n{pes:.0%}"' in dot
    # links that are no NoC link have no figure of their own (not a 0%): DRAM's port, the
    # global buffer's to its selector
    assert '"glb" -> "dram" [label=""];' in dot and '"dram" -> "glb" [label=""];' in dot
    assert '"glb" -> "selector" [label="32 B/cycle"];' in dot
    # no run of that folder uses fine_grained.yaml: refused, not coloured by another's
    other = desim("topology", str(ROOT / "configs" / "arch" / "fine_grained.yaml"), "-o",
                  str(tmp_path / "fg.dot"), "--stats", str(outs[0]))
    assert_config_error(other, "no run's design is fine_grained.yaml as it is (runs: dense "
                        "(arch dense), hppu (arch hppu_like))")


@pytest.fixture(scope="module")
def lenet300_twice(tmp_path_factory):
    """LeNet-300 at batch 2 (seconds a run) on dense.yaml, as is and without its vector unit,
    into one folder twice: first traced with waveforms, then plainly. Before the first, the
    folder holds an earlier run's results (its summary.json and waveform) and files desim
    does not write; between the two, `desim report` writes its report of the first into
    the folder."""
    folder = tmp_path_factory.mktemp("lenet300")
    experiment = lenet300_experiment(folder / "experiment.yaml",
                                     {"dense": {"method": "dense"}, "bare": {"method": "dense"}})
    out = folder / "out"
    out.mkdir()
    for name in ("summary.json", "waves_gone.vcd", "notes.txt", "trace.json.bak"):
        (out / name).write_text("not this run's\n")
    base = ["run", str(experiment), "--out", str(out), "--set", "arch.bare.vector_unit=null"]
    first = desim(*base, "--trace", "--vcd")
    assert first.returncode == 0, first.stderr
    files_first = sorted(p.name for p in out.iterdir())
    report = desim("report", str(out))  # into the folder: report.md, its HTML and plots
    assert report.returncode == 0, report.stderr
    second = desim(*base)
    assert second.returncode == 0, second.stderr
    return out, files_first, [first, second]


def test_fused_relus_are_not_said_to_be_left_out(lenet300_twice):
    """LeNet-300's vector layers are two ReLUs, each right after a linear layer: fused into
    its output, on the PE array, with a vector unit (which then runs no tile) or without.
    Neither design leaves anything out, so neither is warned of."""
    _, _, results = lenet300_twice
    for result in results:
        stdout = " ".join(result.stdout.split())
        assert "no vector unit" not in stdout
        assert "vector layers" not in stdout   # no vector tile ran, none left out
    summary = json.loads((lenet300_twice[0] / "summary.json").read_text())
    assert [(r["workload"]["vector_layers"], r["vector_layers_not_simulated"])
            for r in summary["runs"].values()] == [(2, 0), (2, 0)]


def test_the_table_gives_a_small_models_macs_in_a_unit_that_shows_them(lenet300_twice):
    """LeNet-300 at batch 2: 266,200 MACs an image in FF and in WG, 31,000 in BP (none for the
    first layer's input), 1,126,800 a run, in MMACs (they were "0.000" GMACs, every row)."""
    _, _, results = lenet300_twice
    rows = [line.split() for line in results[1].stdout.splitlines()]
    assert any("MMACs" in row for row in rows)
    totals = [row for row in rows if "total" in row]
    assert len(totals) == 2 and all("1.127" in row for row in totals)
    # and each run's time beside its cycles, in microseconds (under a millisecond a run)
    summary = json.loads((lenet300_twice[0] / "summary.json").read_text())
    assert any("us" in row for row in rows)
    for row, r in zip(totals, summary["runs"].values(), strict=True):
        assert r["seconds"] < 1e-3 and f"{r['seconds'] * 1e6:.3f}" in row
        assert f"{r['cycles']:,}" in row


def test_no_vector_unit_counts_the_layers_left_out_not_the_fused_relus(tmp_path, monkeypatch):
    """LeNet-5's vector layers are two max pools and a ReLU right after fc 500: without a
    vector unit the pools are left out, the ReLU (on the PE array's output) is not."""
    import io

    from rich.console import Console

    import desim
    import desim.cli

    experiment = lenet5_bare_experiment(tmp_path / "lenet5.yaml", batch=2, data="digits")
    summary = desim.run(experiment).summary
    assert [(r["workload"]["vector_layers"], r["vector_layers_not_simulated"])
            for r in summary["runs"].values()] == [(3, 0), (3, 2)]
    out = io.StringIO()
    monkeypatch.setattr(desim.cli, "console", Console(file=out, width=400))
    desim.cli.print_summary(summary)
    printed = out.getvalue()
    assert ("bare: no vector unit (arch dense): 2 of the model's 3 vector layers (batch norm, "
            "pooling, residual adds, GELUs, and ReLUs after them) are not simulated") in printed
    assert "dense: no vector unit" not in printed
    assert "dense: vector layers (batch norm, pooling, adds, softmax) take" in printed
    assert "dense: 0 of" not in printed


def test_run_pauses_the_collector_for_its_imports_only(tmp_path):
    """`desim run` imports torch with the garbage collector off and freezes what it made (a
    full collection over torch's objects cost 0.4 s a run); the run itself collects."""
    import gc

    from typer.testing import CliRunner

    from desim.cli import app

    experiment = tmp_path / "lenet5.yaml"
    experiment.write_text(yaml.safe_dump({
        "name": "lenet5", "baseline": "dense",
        "workload": {"model": "lenet5", "num_classes": 10, "batch": 1,
                     "input_shape": [1, 28, 28], "data": "digits", "seed": 0},
        "runs": [{"name": "dense", "arch": str(ROOT / "configs" / "arch" / "dense.yaml")}]}))
    try:
        result = CliRunner().invoke(app, ["run", str(experiment), "--out", str(tmp_path / "o")])
        assert result.exit_code == 0, result.output
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_run_into_a_folder_that_held_no_results_removes_nothing_of_it(tmp_path):
    """desim's own names in a folder no earlier run wrote results into (no summary.json,
    nor the layers.csv put in place before it; a config.json may be anyone's) are the
    user's: a run writes its files beside them and removes none (it had removed the user's
    report.md, trace.json and waves)."""
    import desim

    experiment = lenet300_experiment(tmp_path / "experiment.yaml", {"dense": {"method": "dense"}})
    out = tmp_path / "mine"
    out.mkdir()
    mine = ["report.md", "report.html", "report_x_energy.png", "trace.json", "tiles.csv",
            "waves_mine.vcd", "notes.md"]
    for name in mine:
        (out / name).write_text("mine\n")
    (out / "config.json").write_text("{}\n")  # a user's file of a name desim writes too
    desim.run(experiment, out=out)
    assert all((out / name).read_text() == "mine\n" for name in mine)
    assert (out / "summary.json").is_file()


def test_a_rerun_removes_the_trace_waveforms_and_report_it_did_not_write(lenet300_twice):
    """A report of the earlier run (report.md, report.html and their PNGs, `desim report
    DIR`'s default) would describe numbers the folder no longer holds."""
    out, files_first, results = lenet300_twice
    # the waveform of a run "gone" kept: the folder's earlier results have no config.json
    # to say desim wrote it (a user's file of a desim name, which a rerun had deleted)
    ours = {"summary.json", "layers.csv", "energy.csv", "config.json", "stats.json",
            "stats.txt", "notes.txt", "trace.json.bak", "waves_gone.vcd"}
    # traced: its own trace and waveforms, other files kept
    assert set(files_first) == ours | {"trace.json", "waves_dense.vcd", "waves_bare.vcd"}
    # then not traced: no trace, waveform or report of the first run passes for the second's
    assert {p.name for p in out.iterdir()} == ours
    # each run names what it wrote, and only that
    written = "summary.json, layers.csv, energy.csv, config.json, stats.json, stats.txt"
    said = [" ".join(r.stdout.split()) for r in results]
    assert f"({written}, trace.json, waves_bare.vcd, waves_dense.vcd);" in said[0]
    assert f"({written});" in said[1]
    assert (out / "notes.txt").read_text() == "not this run's\n"


def test_topology_colours_by_a_folder_written_before_a_design_key_existed(lenet300_twice,
                                                                            tmp_path):
    """A folder whose config.json predates a key the design leaves unset (supply_voltage_v,
    session 22): the same design, coloured by its run (the key was missing, not different)."""
    import shutil

    out = tmp_path / "old"
    shutil.copytree(lenet300_twice[0], out)
    config = json.loads((out / "config.json").read_text())
    for design in config["architectures"].values():
        assert design.pop("supply_voltage_v") is None
    (out / "config.json").write_text(json.dumps(config))
    as_older_desims(out)
    drawn = desim("topology", str(ROOT / "configs" / "arch" / "dense.yaml"), "-o",
                  str(tmp_path / "d.dot"), "--stats", str(out))
    assert drawn.returncode == 0, drawn.stderr
    pes = json.loads((out / "stats.json").read_text())["dense"]["modules"]["dense.pe_array"]
    assert (f'label="cluster_r3_3\\npe_cluster\\n{pes["utilization"]:.0%}"'
            in (tmp_path / "d.dot").read_text())


def test_run_with_report_writes_the_report_and_its_plots_into_the_folder(tmp_path):
    """`desim run --report`: the folder `desim report DIR` would write too, in one command:
    report.md, report.html, and per run of the two a timeline by phase and one by busiest
    part, an energy per layer, a topology and a roofline, plus the energy per component and
    the time by busiest part: 12 plots."""
    experiment = lenet300_experiment(
        tmp_path / "lenet300.yaml",
        {"dense": {"method": "dense"}, "sparse": {"method": "magnitude", "sparsity": 0.5}},
        data="random")
    out = tmp_path / "out"
    result = desim("run", str(experiment), "--out", str(out), "--report")
    assert result.returncode == 0, result.stderr
    plots = sorted(p.name for p in out.glob("report_*.png"))
    assert len(plots) == 12 and "report_lenet300.sparse.topology.png" in plots
    assert "report_lenet300.sparse.roofline.png" in plots
    assert "## Experiment `lenet300`" in (out / "report.md").read_text()
    assert (out / "report.html").is_file()
    said = " ".join(result.stdout.split())
    assert "stats.txt, report.md, report.html, 12 plots (report_*.png));" in said


def test_topology_refuses_run_without_stats(tmp_path):
    """--run without --stats was ignored: the drawing came out uncoloured, exit 0."""
    drawn = desim("topology", str(ROOT / "configs" / "arch" / "dense.yaml"), "-o",
                  str(tmp_path / "t.dot"), "--run", "dense")
    assert_config_error(drawn, "--run: names a run of the results folder given by --stats, "
                        "which is missing: give --stats DIR too")
    assert not (tmp_path / "t.dot").exists()


def test_topology_refuses_a_run_of_another_design_named_with_run(lenet300_twice, tmp_path):
    """--run names which run to colour by; one on another design is refused as it is
    without --run."""
    out, _, _ = lenet300_twice
    other = desim("topology", str(ROOT / "configs" / "arch" / "hppu_like.yaml"), "-o",
                  str(tmp_path / "h.dot"), "--stats", str(out), "--run", "dense")
    assert_config_error(other, "--run dense: that run uses arch 'dense', not 'hppu_like'",
                        "runs: dense (arch dense), bare (arch dense)")
    assert not (tmp_path / "h.dot").exists()


def test_topology_names_the_stats_json_that_lacks_the_run(lenet300_twice, tmp_path):
    """A stats.json that is not the one its summary.json's run wrote (another folder's, a
    what-if of the same design, or edited: a busy share halved) had coloured the drawing
    without a word: summary.json's `stats_sha256` refuses it. In a folder an older desim
    wrote, without that hash, a stats.json without the run summary.json has (`{}`, its
    writing cut short) had read "DIR: no run 'dense'; runs: " (an empty list, and not the
    file at fault): it names stats.json and the run it lacks. A --run no run of the folder
    has is said to be none of summary.json's runs."""
    import shutil

    out = tmp_path / "cut"
    shutil.copytree(lenet300_twice[0], out)
    dense = str(ROOT / "configs" / "arch" / "dense.yaml")
    stats = json.loads((out / "stats.json").read_text())
    stats["dense"]["modules"]["dense.pe_array"]["utilization"] /= 2
    for edited in (stats, {}):
        (out / "stats.json").write_text(json.dumps(edited))
        drawn = desim("topology", dense, "-o", str(tmp_path / "d.dot"), "--stats", str(out))
        assert_config_error(drawn, f"error: {out / 'stats.json'}: is not summary.json's: its "
                            "statistics are not those summary.json's run recorded "
                            "(stats_sha256); the file was edited after the run or is another "
                            "folder's: write the folder again (desim run)")
        assert not (tmp_path / "d.dot").exists()
    as_older_desims(out)
    (out / "stats.json").write_text("{}\n")
    drawn = desim("topology", dense, "-o", str(tmp_path / "d.dot"), "--stats", str(out))
    assert_config_error(drawn, f"error: {out / 'stats.json'}: has no entry for run 'dense' "
                        "(its runs: none)")
    assert len(drawn.stderr.strip().splitlines()) == 1 and not (tmp_path / "d.dot").exists()
    (out / "stats.json").write_text('{"bare": {"modules": {}}}\n')
    drawn = desim("topology", dense, "-o", str(tmp_path / "d.dot"), "--stats", str(out))
    assert_config_error(drawn, f"{out / 'stats.json'}: has no entry for run 'dense' (its "
                        "runs: 'bare')")
    nope = desim("topology", dense, "-o", str(tmp_path / "d.dot"), "--stats",
                 str(lenet300_twice[0]), "--run", "nope")
    assert_config_error(nope, f"{lenet300_twice[0]}: --run nope: no such run; runs: dense "
                        "(arch dense), bare (arch dense)")


def test_topology_refuses_a_damaged_summary_naming_its_key(lenet300_twice, tmp_path):
    """--stats reads each run's arch from summary.json: a run without one (a hand edit, a
    file another program wrote) is bad input naming the key, not a KeyError."""
    out, _, _ = lenet300_twice
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)

    def drop_arch(summary):
        del summary["runs"]["dense"]["arch"]

    def listed_architectures(config):
        config["architectures"] = list(config["architectures"])

    def busy_utilization(stats):
        stats["dense"]["modules"]["dense.pe_array"]["utilization"] = "busy"

    for name, damage, message in [
            ("summary.json", drop_arch, "summary.json: runs.dense.arch: Field required"),
            ("config.json", listed_architectures,
             "config.json: architectures: Input should be a valid dictionary"),
            ("stats.json", busy_utilization, "stats.json: dense.modules.dense.pe_array."
             "utilization: Input should be a valid number")]:
        data = json.loads((out / name).read_text())
        damage(data)
        (damaged / name).write_text(json.dumps(data))
        if name == "stats.json":  # (an edit summary.json's stats_sha256 would refuse first)
            as_older_desims(damaged)
        result = desim("topology", str(ROOT / "configs" / "arch" / "dense.yaml"), "-o",
                       str(tmp_path / "d.dot"), "--stats", str(damaged))
        assert_config_error(result, message)
        shutil.copy(out / name, damaged / name)
    for name in ("summary.json", "config.json", "stats.json"):  # not JSON: named, exit 2
        (damaged / name).write_text("{")
        result = desim("topology", str(ROOT / "configs" / "arch" / "dense.yaml"), "-o",
                       str(tmp_path / "d.dot"), "--stats", str(damaged))
        assert_config_error(result, str(damaged), f"cannot read {name}")
        shutil.copy(out / name, damaged / name)


def test_topology_colours_by_the_run_whose_resolved_design_is_the_files(lenet300_twice,
                                                                        tmp_path):
    """Runs are matched by their resolved design (config.json), not the arch's name: both
    runs used dense.yaml, `bare` with `--set arch.bare.vector_unit=null`. Only `dense` is
    dense.yaml as it is; `bare`'s figures (named with --run), or any run's for a file of
    the same name with other values, are refused with the keys that differ, not drawn."""
    out, _, _ = lenet300_twice
    stats = json.loads((out / "stats.json").read_text())
    pes = stats["dense"]["modules"]["dense.pe_array"]["utilization"]
    dense = ROOT / "configs" / "arch" / "dense.yaml"
    for run in ([], ["--run", "dense"]):
        drawn = desim("topology", str(dense), "-o", str(tmp_path / "d.dot"), "--stats",
                      str(out), *run)
        assert drawn.returncode == 0, drawn.stderr
        dot = (tmp_path / "d.dot").read_text()
        assert f'label="cluster_r3_3\\npe_cluster\\n{pes:.0%}"' in dot
    changed = desim("topology", str(dense), "-o", str(tmp_path / "b.dot"), "--stats", str(out),
                    "--run", "bare")
    assert_config_error(changed, f"{out}: --run bare: that run uses arch 'dense' with other "
                        'values (vector_unit {"lanes": 64, ', "in dense.yaml, null in the run)",
                        "changed by --set or arch_set (draw it with the same --set), or "
                        "another file of that name")
    eight = tmp_path / "dense.yaml"   # the same name, another design
    eight.write_text(dense.read_text().replace("  pes: 16\n", "  pes: 8\n"))
    other = desim("topology", str(eight), "-o", str(tmp_path / "e.dot"), "--stats", str(out))
    assert_config_error(other, "no run's design is dense.yaml as it is (runs: dense (arch "
                        "dense), bare (arch dense)); run dense uses arch 'dense' with other "
                        "values (pe_cluster.pes 8 in dense.yaml, 16 in the run)",
                        "run bare uses arch 'dense' with other values (pe_cluster.pes 8")
    assert not (tmp_path / "b.dot").exists() and not (tmp_path / "e.dot").exists()
    # bare's design is dense.yaml with the run's --set: drawn so, with bare's figures
    bare = desim("topology", str(dense), "-o", str(tmp_path / "b.dot"), "--stats", str(out),
                 "--run", "bare", "--set", "vector_unit=null")
    assert bare.returncode == 0, bare.stderr
    pes = stats["bare"]["modules"]["bare.pe_array"]["utilization"]
    assert f'label="cluster_r3_3\\npe_cluster\\n{pes:.0%}"' in (tmp_path / "b.dot").read_text()


DEADLOCK = """
from desim.channels import Fifo
from desim.errors import guarded
from desim.module import Module, Simulator

sim = Simulator()
top = Module("top", sim)
to_ping, to_pong = Fifo("to_ping", top, 1), Fifo("to_pong", top, 1)

def ping():
    yield from to_ping.get()
    yield from to_pong.put("ball")

def pong():
    yield from to_pong.get()
    yield from to_ping.put("ball")

top.add_process(ping)
top.add_process(pong)
guarded(sim.run)
"""


def test_a_deadlock_exits_3_naming_both_processes_never_hanging():
    """A hang would never end: the timeout catches it (generous, so that a slow or busy
    machine does not fail a test of behaviour; speed is `desim bench`'s business)."""
    result = subprocess.run([sys.executable, "-c", DEADLOCK], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 3, result.stderr
    message = " ".join(result.stderr.split())
    assert "ping" in message and "pong" in message and "Traceback" not in message


def test_a_clock_faster_than_a_picosecond_is_refused_naming_its_file(tmp_path):
    configs = copy_configs(tmp_path)
    edit_yaml(configs / "arch" / "hppu_like.yaml", lambda d: d.update(core_clock_mhz=2e6))
    result = desim("run", str(configs / "experiments" / "quickstart.yaml"))
    assert_config_error(result, "hppu_like.yaml", "core_clock_mhz",
                        "less than or equal to 1000000")


def test_energy_per_action_adds_up_to_components_and_total(quickstart_twice):
    outs, _ = quickstart_twice
    summary = json.loads((outs[0] / "summary.json").read_text())
    for r in summary["runs"].values():
        actions, components = r["energy_by_action_j"], r["energy_by_component_j"]
        assert sum(actions.values()) == pytest.approx(r["energy_j"], rel=1e-12)
        for component, joules in components.items():
            parts = [v for k, v in actions.items() if k.split(".")[0] == component]
            assert sum(parts) == pytest.approx(joules, rel=1e-12)
        assert actions["dram.standby"] > 0 and actions["macs.macs"] > 0
    assert "selector.entries" in summary["runs"]["hppu"]["energy_by_action_j"]
    # energy.csv: each layer-phase's joules by component and action, adding up to its row
    # in layers.csv and, over the layers, to each action's total in summary.json
    import pandas as pd
    keys = ["run", "layer", "phase"]
    energy = pd.read_csv(outs[0] / "energy.csv", dtype={"run": str, "layer": str})
    layers = pd.read_csv(outs[0] / "layers.csv", dtype={"run": str, "layer": str})
    assert list(energy.columns) == [*keys[:1], "arch", *keys[1:], "component", "action",
                                    "energy_j"]
    per_row = energy.groupby(keys, sort=False)["energy_j"].sum().rename("energy_j_parts")
    joined = layers.set_index(keys)["energy_j"].to_frame().join(per_row)
    assert (joined["energy_j"] > 0).all()
    assert joined["energy_j_parts"].to_numpy() == pytest.approx(joined["energy_j"].to_numpy(),
                                                                rel=1e-9)
    for run, r in summary["runs"].items():
        mine = energy[energy["run"] == run]
        by_action = mine.groupby(mine["component"] + "." + mine["action"])["energy_j"].sum()
        assert by_action.to_dict() == pytest.approx(r["energy_by_action_j"], rel=1e-9)


def test_check_elaborates_every_run_without_simulating():
    """`desim check`: each run's processor assembled and described in closed form (dense.yaml:
    16 clusters x 16 PEs x 4 MACs at 500 MHz, one DDR4-2400 channel: 2400 MT/s x 8 bytes;
    the global buffer's NoC port 32 B a cycle, 16 GB/s)."""
    from desim.check import check

    dense, hppu = check(QUICKSTART).runs
    assert (dense["run"], hppu["run"]) == ("dense", "hppu")
    assert dense["macs_per_cycle"] == hppu["macs_per_cycle"] == 16 * 16 * 4
    assert dense["peak_tmacs"] == pytest.approx(1024 * 500e6 / 1e12)
    assert dense["dram_gb_s"] == pytest.approx(19.2, rel=1e-3)
    assert dense["noc_port_gb_s"] == hppu["noc_port_gb_s"] == 16.0  # the selector's on hppu
    _, wide = check(QUICKSTART, ["arch.hppu.noc.link_bandwidth_bytes_per_cycle=64"]).runs
    assert wide["noc_port_gb_s"] == 32.0
    assert dense["dram"] == "DDR4-2400 x1" and dense["noc"] == "mesh 4x4"
    assert (dense["skips"], hppu["skips"]) == ("-", "W X dY")
    assert (dense["sparse_units"], hppu["sparse_units"]) == ("-", "selector")
    assert hppu["modules"] == dense["modules"] + 1  # the selector
    assert hppu["pruning"] == "hybrid 0.7"
    _, hppu = check(QUICKSTART, ["arch.hppu.dram.power_down=precharge"]).runs
    assert hppu["dram"] == "DDR4-2400 x1, precharge power-down"
    _, hppu = check(QUICKSTART, ["arch.hppu.supply_voltage_v=0.6",
                                 "arch.hppu.static_power_mw=50"]).runs
    assert (dense["technology"], hppu["technology"]) == ("28nm", "28nm at 0.6 V, 50 mW static")


def test_check_refuses_bad_input_with_the_brackets_of_its_message():
    """A wrong NoC shape exits 2 before anything runs; the expected shape, '[cols, rows]',
    is printed as written (not eaten as console markup)."""
    result = desim("check", str(QUICKSTART), "--set", "arch.hppu.noc.shape=[2]")
    assert_config_error(result, "hppu_like.yaml", "noc: topology 'mesh' needs shape: "
                        "[cols, rows], got [2]")
    ok = desim("check", str(QUICKSTART))
    assert ok.returncode == 0 and "elaborated, not simulated" in ok.stdout


def test_check_reads_a_scalesim_topology(tmp_path):
    """A SCALE-Sim topology CSV is read by `desim check` as by `desim run`: a bad line is
    said at once, naming the CSV and the line."""
    experiment = ROOT / "configs" / "experiments" / "scalesim_resnet18.yaml"
    bad = tmp_path / "bad.csv"
    bad.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                   "Channels, Num Filter, Strides,\nconv1, 224, 224, 7, 7, 3,\n")
    result = desim("check", str(experiment), "--set", f"workload.scalesim_topology={bad}")
    assert_config_error(result, "bad.csv", "line 2: expected 8 fields")


def test_a_results_folder_that_cannot_be_written_is_refused_before_simulating(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = desim("run", str(QUICKSTART), "--out", str(blocker / "results"))
    assert_config_error(result, "a_file/results: cannot write results there")
    assert "capturing" not in result.stdout and "simulating" not in result.stdout


def test_run_keeps_its_captures_in_the_cache_folder_given(tmp_path):
    """`--cache DIR`: the capture kept (the API's test checks the numbers and the reuse);
    a file given for the folder is refused before anything is captured."""
    exp = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    result = desim("run", str(exp), "--out", str(tmp_path / "out"), "--cache",
                   str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = desim("run", str(exp), "--out", str(tmp_path / "out"), "--cache", str(blocker))
    assert_config_error(result, "a_file: is a file, not a folder")
    assert "capturing" not in result.stdout


@pytest.mark.parametrize("option, value", [("--items", "0"), ("--items", "-5"),
                                           ("--stages", "0"), ("--repeats", "0")])
def test_bench_refuses_fewer_than_one_item_stage_or_repeat(option, value, monkeypatch):
    """Exit 2 naming the option, before anything is timed (run_bench is never called)."""
    from typer.testing import CliRunner

    import desim.bench
    from desim.cli import app

    def timed(*args, **kwargs):
        raise AssertionError("benchmarked despite the bad option")

    monkeypatch.setattr(desim.bench, "run_bench", timed)
    result = CliRunner().invoke(app, ["bench", "--no-frontend", option, value])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"Invalid value for '{option}'" in message and "Traceback" not in message


def test_bench_prints_the_large_linear_layer_without_a_target():
    """The front end's large linear layer (benchmarks/frontend_cases.py) prints its time and
    its peak memory's growth over the process after imports per million weights, with no
    target (a regression guard)."""
    from rich.console import Console

    from desim.bench import FRONTEND_TARGETS, print_bench

    frontend = {"macs_per_phase": 1.8e9, "capture_count_s": 0.9, "peak_rss_mib": 900.0,
                "run_batch1_s": 4.0, "run_batch8_s": 9.0, "large_linear_s": 7.26,
                "large_linear_peak_mib": 2451.6, "large_linear_baseline_mib": 316.0,
                "large_linear_growth_mib_per_m_weights": 83.1}
    result = {"config": {"items": 1, "stages": 1, "transactions": 1, "repeats": 1,
                         "memory_items": 1},
              "transactions_per_s": {"simpy": 1.0, "desim": 0.6},
              "best_seconds": {"simpy": 1.0, "desim": 1.5},
              "ratios": {"desim_vs_simpy": 0.6, "traced_vs_off": 1.2},
              "targets": {"desim_vs_simpy_min": 0.5, "hook_overhead_off_max": 0.03,
                          **FRONTEND_TARGETS},
              "hook_overhead_off": 0.01, "noise_a_a": 0.01,
              "memory_bytes_per_pending": {f"{k}_{w}": 1.0 for k in ("simpy", "desim")
                                           for w in ("queued", "blocked")},
              "frontend": frontend}
    console = Console(record=True, width=120)
    print_bench(result, console)
    text = console.export_text()
    assert re.search(r"large linear layer: desim run \(s\) +│ +7\.26 │ +- │ +│", text), text
    assert re.search(r"its peak memory above the process after imports \(MiB per million "
                     r"weights\) +│ +83 │ +- │ +│", text), text
    # each figure with a target says whether it meets it (these do)
    assert re.search(r"desim run, batch 8, end to end \(s\) +│ +9\.00 │ +< 10\.0 │ ok", text)
    frontend.update(run_batch1_s=7.06, run_batch8_s=13.73)  # session 36's, over target
    console = Console(record=True, width=120)
    print_bench(result, console)
    text = console.export_text()
    assert re.search(r"desim run, batch 1, end to end \(s\) +│ +7\.06 │ +< 5\.0 │ OVER TARGET",
                     text), text
    assert re.search(r"capture \+ count FF/BP/WG, batch 1 \(s\) +│ +0\.900 │ +< 1\.0 │ ok", text)


def test_a_file_that_is_not_utf8_is_bad_input_for_every_command(tmp_path):
    """A Latin-1 byte (a comment's 'µm' saved by an old editor) names the file and the byte,
    exit 2, in whichever file it is: an architecture, an experiment, a run's arch, a
    SCALE-Sim topology; UnicodeDecodeError was a traceback."""
    arch = tmp_path / "latin1.yaml"
    arch.write_bytes(b"# \xb5m\n" + (ROOT / "configs" / "arch" / "dense.yaml").read_bytes())
    experiment = tmp_path / "latin1_experiment.yaml"
    experiment.write_bytes(b"# \xb5m\n" + QUICKSTART.read_text().replace(
        "../arch/", f"{ROOT}/configs/arch/").encode())
    csv = tmp_path / "latin1.csv"
    csv.write_bytes(b"Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    b"Channels, Num Filter, Strides,\nconv\xb5, 8, 8, 3, 3, 3, 4, 1,\n")
    expected = ("not UTF-8 text: byte 0xb5 at offset 2 (line 1); expected a YAML file saved "
                "as UTF-8")
    cases = [
        (["topology", str(arch), "-o", str(tmp_path / "x.png")], f"{arch}: {expected}"),
        (["check", str(experiment)], f"{experiment}: {expected}"),
        (["run", str(experiment), "--out", str(tmp_path / "out")], f"{experiment}: {expected}"),
        (["check", str(QUICKSTART), "--set", f"runs.1.arch={arch}"], f"{arch}: {expected}"),
        (["check", str(ROOT / "configs" / "experiments" / "scalesim_resnet18.yaml"), "--set",
          f"workload.scalesim_topology={csv}"],
         f"{csv}: not UTF-8 text: byte 0xb5 at offset 103 (line 2); expected a SCALE-Sim "
         "topology CSV"),
    ]
    for args, message in cases:
        assert_config_error(desim(*args), message)
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.png").exists()


def test_commands_loaded_when_named_take_their_own_options_and_are_suggested():
    """bench, report and sweep, loaded only when named (`desim.cli._Commands`), have the
    options they had when registered on the app: no shell-completion options (the app has
    none), and a mistyped name is still answered with the command it resembles."""
    from typer.testing import CliRunner

    from desim.cli import app

    runner = CliRunner()
    for name in ("bench", "report", "sweep"):
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "completion" not in result.output, name
    result = runner.invoke(app, ["swep"])
    assert result.exit_code == 2
    assert "Did you mean 'sweep'?" in result.output


def test_every_commands_help_reads_as_paragraphs():
    """Each command's help (its docstring) is paragraphs of one line each, which the terminal
    wraps: rich printed a docstring's own line breaks, cutting sentences mid-line; its first
    paragraph, the line `desim --help` lists, is one sentence."""
    import typer

    from desim.cli import app

    group = typer.main.get_command(app)
    ctx = group.make_context("desim", ["run"], resilient_parsing=True)
    for name in group.list_commands(ctx):
        text = group.get_command(ctx, name).help
        paragraphs = text.split("\n\n")
        assert all("\n" not in p and p == p.strip() for p in paragraphs), (name, text)
        assert paragraphs[0].endswith(".") and paragraphs[0].count(". ") == 0, (name, text)


def test_an_interrupted_run_says_what_it_left(tmp_path, monkeypatch):
    """A Ctrl-C ended `desim run` with exit 130 and not a word."""
    from typer.testing import CliRunner

    import desim.runner
    from desim.cli import app

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(desim.runner, "run_and_write_held", interrupted)
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["run", str(QUICKSTART), "--out", str(out)])
    assert result.exit_code == 130
    assert f"interrupted: {out}: no results there" in " ".join(result.output.split())


def test_an_idle_weight_generator_is_said(tmp_path, monkeypatch):
    """Procrustes' weight generator regenerates DropBack's untracked weights: on a run pruned
    by magnitude it has nothing to do, and `desim run` says so beside the 0% in its busy
    line; on a DropBack run trained a few steps (its untracked weights back at their initial
    values, not zero) it works, and nothing is said."""
    import io

    from rich.console import Console

    import desim
    import desim.cli

    experiment = tmp_path / "idle.yaml"
    procrustes = str(ROOT / "configs" / "arch" / "procrustes.yaml")
    experiment.write_text(yaml.safe_dump({
        "name": "idle", "baseline": "magnitude",
        "workload": {"model": "lenet300", "num_classes": 10, "batch": 2, "data": "digits",
                     "seed": 0, "training": {"iterations": 2, "learning_rate": 0.05}},
        "runs": [{"name": "magnitude", "arch": procrustes,
                  "pruning": {"method": "magnitude", "sparsity": 0.9}},
                 {"name": "dropback", "arch": procrustes,
                  "pruning": {"method": "dropback", "sparsity": 0.9}}]}))
    summary = desim.run(experiment).summary
    busy = {name: r["utilization"]["weight_generator"] for name, r in summary["runs"].items()}
    assert busy["magnitude"] == 0 and busy["dropback"] > 0
    out = io.StringIO()
    monkeypatch.setattr(desim.cli, "console", Console(file=out, width=400))
    desim.cli.print_summary(summary)
    printed = out.getvalue()
    assert ("magnitude: its weight generator did no work (it regenerates the weights DropBack "
            "leaves untracked at their initial values (init_decay 1); no other pruning, nor "
            "Procrustes' decay, leaves "
            "any)") in printed
    assert "dropback: its weight generator" not in printed


def test_desim_run_of_a_sweep_file_says_it_runs_the_files_own_values(tmp_path):
    """An experiment with a sweep: section runs as it is under `desim run` (its own values),
    which now says so and points to `desim sweep`; it had been silent. What it lists as
    written is what this run wrote, not a user's trace.json of the same name."""
    experiment = lenet300_experiment(
        tmp_path / "e.yaml", {"dense": {"method": "dense"}}, data="random",
        sweep={"mode": "grid", "axes": {"workload.batch": [1, 2]}})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "trace.json").write_text("mine\n")
    result = desim("run", str(experiment), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert f"note: {experiment}: its sweep: section is not run here; `desim sweep {experiment}` " \
           "runs its points" in said
    assert "trace.json" not in result.stdout.split("results in")[-1]
    assert (tmp_path / "out" / "trace.json").read_text() == "mine\n"


def test_version_says_the_package_and_its_commit():
    """`desim --version` (there was none): the version config.json records, and from a git
    checkout its commit."""
    from desim.results import provenance

    result = desim("--version")
    assert result.returncode == 0, result.stderr
    made = provenance()
    assert result.stdout.startswith(f"desim {made['version'] or 'from a source tree'}")
    if made.get("commit"):
        assert f"(commit {made['commit'][:12]}" in result.stdout


# `desim run` with a Ctrl-C (SIGINT to itself) while tracing the model's forward, which a
# library met and turned into an error of its own ("error": torch's lazy import of
# torch._dynamo, cut short, surfaced as an AttributeError) or swallowed ("swallowed":
# mpmath's bare `except:` around an import); the one-layer trace that imports what tracing
# imports is left alone.
INTERRUPTED_WHILE_TRACING = """
import os, signal, sys, time
from mappings.models import supported
real = supported._Tracer.trace
def trace(self, root, *args, **kwargs):
    if type(root).__name__ != "_OneLayer":
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            if sys.argv[1] == "error":
                raise AttributeError("partially initialized module 'torch._dynamo' has no "
                                     "attribute 'config' (most likely due to a circular "
                                     "import)") from None
    return real(self, root, *args, **kwargs)
supported._Tracer.trace = trace
from desim.cli import app
app(sys.argv[2:], prog_name="desim")
"""


@pytest.mark.parametrize("met", ["error", "swallowed"])
def test_a_ctrl_c_while_the_model_is_traced_is_an_interrupt(tmp_path, met):
    """A Ctrl-C about 2 s into `desim run` (a model file's forward traced by torch.fx) was
    reported as bad input, exit 2: "torch.fx cannot trace it in training mode
    (AttributeError: partially initialized module 'torch._dynamo' ..."; twice it was lost
    and the run went on to write its results (exit 0). Either way it is an interrupt now:
    one line, exit 130, and no results."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_WHILE_TRACING, met, "run",
         str(ROOT / "configs" / "experiments" / "custom_model.yaml"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 130, result.stderr
    assert " ".join(result.stderr.split()) == f"interrupted: {out}: no results there"  # (wrapped)
    assert not out.exists()
