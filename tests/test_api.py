"""desim from Python: `desim.run` gives what `desim run` writes, as DataFrames."""

import json
import math
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
import yaml

import desim
from desim.errors import ConfigError


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """LeNet-5 at batch 2 on the dense and the HPPU-like processor, written to a folder too."""
    root = tmp_path_factory.mktemp("api")
    exp = root / "a" / "b" / "lenet.yaml"
    exp.parent.mkdir(parents=True)
    configs = Path(__file__).resolve().parents[1] / "configs" / "arch"
    exp.write_text(yaml.safe_dump({
        "name": "lenet", "baseline": "dense",
        "workload": {"model": "lenet5", "batch": 2, "data": "digits", "seed": 0},
        "runs": [{"name": "dense", "arch": str(configs / "dense.yaml")},
                 {"name": "hppu", "arch": str(configs / "hppu_like.yaml"),
                  "pruning": {"method": "hybrid", "sparsity": 0.7}}]}))
    return exp, desim.run(exp, ["workload.seed=1"], out=root / "out"), root / "out"


def test_result_holds_what_the_folder_holds(lenet):
    _, result, out = lenet
    assert json.loads((out / "summary.json").read_text()) == json.loads(
        json.dumps(result.summary))
    written = pd.read_csv(out / "layers.csv", dtype={"run": str, "layer": str})
    for column in ("busiest_link", "partition", "mapping"):   # pandas reads "" as NaN
        written[column] = written[column].fillna("")
    assert set(result.layers["partition"]) == {"channels", ""}   # "": the vector layers
    planned = result.layers[result.layers["unit"] == "pe_array"]["mapping"]
    assert planned.str.fullmatch(r"\d+ ch x \d+ (images?|rows?|input channels?), "
                                 r"(weight|input) stationary, .*reduction.*").all()
    assert (result.layers[result.layers["unit"] == "vector_unit"]["mapping"] == "").all()
    pd.testing.assert_frame_equal(written, result.layers, check_dtype=False)
    written = pd.read_csv(out / "energy.csv", dtype={"run": str, "layer": str})
    pd.testing.assert_frame_equal(written, result.layer_energy, check_dtype=False)
    assert len(written) > len(result.layers)  # several components a layer-phase
    workload = json.loads((out / "config.json").read_text())["experiment"]["workload"]
    assert workload["seed"] == 1
    assert workload["input_shape"] == [1, 28, 28]  # resolved: the model's default, as used


def test_the_report_states_the_input_the_model_took(lenet, tmp_path):
    from desim.report import build_report

    md, _, _ = build_report([lenet[2]], tmp_path / "report.md")
    assert "Workload: `lenet5` {}, batch 2, input [1, 28, 28], data `digits`" in md.read_text()


def test_comparison_and_energy_tables_agree_with_the_runs(lenet):
    _, result, _ = lenet
    table = result.comparison()
    assert list(table.index) == ["dense", "hppu"]
    dense, hppu = result.runs["dense"], result.runs["hppu"]
    assert table.loc["hppu", "speedup"] == pytest.approx(dense.total_ps / hppu.total_ps)
    assert table.loc["dense", "speedup"] == 1.0
    assert table.loc["hppu", "cycles"] == hppu.cycles
    assert table["vector_layers_not_simulated"].tolist() == [0, 0]  # both have a vector unit
    with pytest.raises(KeyError, match="no run 'nope'; the runs are: dense, hppu"):
        result.energy_gains("nope")
    energy = result.energy()
    assert energy.sum().to_dict() == pytest.approx({"dense": dense.energy_j,
                                                    "hppu": hppu.energy_j})
    assert energy.loc["selector", "dense"] == 0.0 and energy.loc["selector", "hppu"] > 0
    busy = result.utilization()  # summary.json's, a part a row: dense has no selector
    assert busy.loc["dram", "hppu"] == result.summary["runs"]["hppu"]["utilization"]["dram"]
    assert busy["dense"].isna().to_dict() == {part: part == "selector" for part in busy.index}
    assert busy.loc["selector", "hppu"] > 0


def test_bad_input_raises_a_config_error(lenet):
    exp, _, _ = lenet
    with pytest.raises(ConfigError, match=r"lenet\.yaml: workload\.bach: unknown key"):
        desim.run(exp, ["workload.bach=2"])
    with pytest.raises(AttributeError, match="no attribute 'simulate'"):
        desim.simulate  # noqa: B018


@pytest.mark.parametrize("overrides", [[5], [None], [["workload.batch=2"]], b"workload.batch=2",
                                       {"workload.batch": 2}])
def test_overrides_that_are_no_strings_are_a_type_error(lenet, overrides):
    """An int failed deep inside ('int' object has no attribute 'partition'), bytes were
    taken as numbers one by one, a dict's keys as items without a value."""
    exp, _, _ = lenet
    with pytest.raises(TypeError, match="overrides: expected 'key.path=value' strings, as "
                                        "--set takes them"):
        desim.run(exp, overrides)


def test_a_clock_off_the_picosecond_grid_runs_on_its_exact_period(lenet):
    """1,200 MHz (833 1/3 ps a cycle): the run's cycles are the clock edges up to its end,
    and the layer-phases' shares add up to them."""
    exp, _, _ = lenet
    result = desim.run(exp, ["arch.*.core_clock_mhz=1200"])
    for run in result.runs.values():
        assert run.period_ps == Fraction(2500, 3)
        edge = math.ceil(run.cycles * run.period_ps)  # the first at or after the end
        assert (run.cycles - 1) * run.period_ps < run.total_ps <= edge
        assert int(result.layers[result.layers["run"] == run.name]["cycles"].sum()) == run.cycles
        assert result.summary["runs"][run.name]["seconds"] == run.total_ps / 1e12


def test_a_cached_capture_gives_the_same_numbers_and_skips_the_capture(tmp_path,
                                                                        monkeypatch):
    """`cache` (`desim run --cache`): the first run captures whole (every CaptureNeeds) and
    keeps each (workload, pruning) pair's capture; the next reads it instead of training
    again. The numbers are those of a run without a cache, whose captures hold only what
    their designs need (a speculator's predictions for Trainer's, none for dense's)."""
    from small_experiments import lenet300_experiment

    import desim.workload_cache

    root = Path(__file__).resolve().parents[1]
    path = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    data = yaml.safe_load(path.read_text())
    data["workload"]["training"] = {"iterations": 2}
    data["runs"].append({"name": "trainer", "arch": str(root / "configs/arch/trainer.yaml"),
                         "pruning": {"method": "dynamic", "sparsity": 0.5}})
    path.write_text(yaml.safe_dump(data))
    plain = desim.run(path)
    cache = tmp_path / "cache"
    first = desim.run(path, cache=cache)
    assert len(list(cache.glob("*.pt"))) == 2  # two prunings of one workload

    def no_capture(*_: object) -> None:
        raise AssertionError("captured again")

    monkeypatch.setattr(desim.workload_cache, "capture_workload", no_capture)
    again = desim.run(path, cache=cache)
    assert plain.summary == first.summary == again.summary
    pd.testing.assert_frame_equal(plain.layers, again.layers)
    assert plain.summary["runs"]["trainer"]["workload"]["speculated_layers"] > 0


def test_a_cache_file_that_holds_no_workload_is_captured_again(lenet, tmp_path):
    """A file of the cache's name that torch loads but holds something else (another
    program's, a hand edit) failed the run with a traceback; it is captured again."""
    import torch

    exp, _, _ = lenet
    cache = tmp_path / "cache"
    first = desim.run(exp, cache=cache)
    for file in cache.glob("*.pt"):
        torch.save({"x": 1}, file)
    assert desim.run(exp, cache=cache).summary == first.summary


def test_a_cache_onto_a_file_is_bad_input(lenet, tmp_path):
    exp, _, _ = lenet
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        desim.run(exp, cache=tmp_path / "file")


def test_gains_add_up_to_the_comparison(lenet):
    """`Result.energy_gains` and `time_gains`: their totals are the run's energy ratio and
    speedup, and each part's share of the saving adds up to the whole."""
    _, result, _ = lenet
    comp = result.summary["comparison"]["hppu"]
    energy = result.energy_gains("hppu")
    assert energy.loc["total", "shrink"] == pytest.approx(comp["energy_ratio"])
    assert energy.drop("total")["share_of_saving"].sum() == pytest.approx(1.0)
    assert energy.loc["selector", "baseline"] == 0.0 and energy.loc["selector", "run"] > 0
    on_chip = result.energy_gains("hppu", on_chip=True)
    assert on_chip.loc["total", "shrink"] == pytest.approx(
        comp["energy_ratio"] if "dram" not in energy.index else
        (energy.loc["total", "baseline"] - energy.loc["dram", "baseline"])
        / (energy.loc["total", "run"] - energy.loc["dram", "run"]))
    time = result.time_gains("hppu")
    assert time.loc["total", "shrink"] == pytest.approx(comp["speedup"])


def test_no_layer_phase_beats_its_roofline(lenet):
    """Over its span (first fetch to last write-back) a layer-phase can do no more MACs a
    cycle than the PE array has, nor move more DRAM bytes than DRAM's peak: every point of
    the report's roofline lies under both roofs."""
    from desim.elaborate import describe
    from desim.plots import roofline_points

    _, result, _ = lenet
    for run in ("dense", "hppu"):
        peak = describe(run, result.experiment.archs[run])
        bandwidth = peak["dram_gb_s"] * 1e3 / peak["clock_mhz"]   # bytes a cycle
        rows, intensity, rate = roofline_points(result.layers, run)
        assert len(rows) >= 6   # LeNet-5's conv and linear layer-phases with DRAM traffic
        assert (rate <= peak["macs_per_cycle"]).all()
        assert (rate <= bandwidth * intensity * (1 + 1e-9)).all()


def test_a_result_writes_its_waveforms_wherever_it_is_written(lenet, tmp_path):
    """`Result.write` writes the folder `desim run --out` writes, waveforms included: a run
    made without a folder keeps its waveform to write (it had been dropped, though
    config.json said vcd: true), and one written already is copied to the next folder."""
    exp, _, _ = lenet
    kept = desim.run(exp, ["observe.vcd=true"])
    first = kept.write(tmp_path / "first")
    again = kept.write(tmp_path / "again")
    for folder in (first, again):
        waves = {name: (folder / f"waves_{name}.vcd").read_text() for name in ("dense", "hppu")}
        assert all("$timescale" in text and "$enddefinitions" in text
                   for text in waves.values())
    assert (first / "waves_hppu.vcd").read_bytes() == (again / "waves_hppu.vcd").read_bytes()
    written = desim.run(exp, ["observe.vcd=true"], out=tmp_path / "out")
    copied = written.write(tmp_path / "copy")
    assert (copied / "waves_dense.vcd").read_bytes() == \
        (tmp_path / "out" / "waves_dense.vcd").read_bytes()
    assert not [p.name for p in copied.iterdir() if p.name.startswith(".")]


def test_a_result_written_onto_a_file_or_a_taken_name_is_bad_input(lenet, tmp_path):
    """`Result.write` checks its folder as `desim run --out` does: a file, a folder where a
    result file or a waveform goes, each a ConfigError before anything is written (they had
    been OS errors, with hidden halves left behind)."""
    exp, result, _ = lenet
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        result.write(tmp_path / "afile")
    (tmp_path / "taken" / "summary.json").mkdir(parents=True)
    with pytest.raises(ConfigError, match="summary.json: a folder where desim run writes"):
        result.write(tmp_path / "taken")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["summary.json"]
    (tmp_path / "waves" / "waves_hppu.vcd").mkdir(parents=True)
    with pytest.raises(ConfigError, match="waves_hppu.vcd: a folder where desim run writes"):
        desim.run(exp, ["observe.vcd=true"], out=tmp_path / "waves")


def test_a_result_whose_waveform_was_written_over_is_not_copied(lenet, tmp_path):
    """A result written to a folder, then that folder written by another run: writing the
    first result elsewhere would copy the other run's waveform beside its own summary. It
    is refused, naming the file, and leaves nothing behind: not the folder it made either
    (as `desim run` removes the empty folder of a run that fails)."""
    exp, _, _ = lenet
    first = desim.run(exp, ["observe.vcd=true"], out=tmp_path / "shared")
    desim.run(exp, ["observe.vcd=true", "workload.batch=1"], out=tmp_path / "shared")
    with pytest.raises(ConfigError, match="the waveform of run 'dense' is no longer there"):
        first.write(tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_a_run_leaves_torchs_threads_as_it_found_them_and_refuses_an_empty_folder(
        lenet, tmp_path):
    """The run counts on one thread (its numbers do not depend on the count): a notebook's
    later torch work had run on one thread too. An empty `out` had written the results
    into the current folder, beside the user's files (the command line refuses it)."""
    import torch

    exp, _, _ = lenet
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        desim.run(exp, ["workload.batch=1"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="an empty path; expected a folder to write results"):
        desim.run(exp, out="")


def test_a_sweep_file_run_from_python_says_its_sweep_is_not_run(lenet, tmp_path):
    """As `desim run` notes it: the file's own values run, its sweep: section does not."""
    exp, _, _ = lenet
    data = yaml.safe_load(exp.read_text())
    data["sweep"] = {"mode": "grid", "axes": {"workload.batch": [1, 2]}}
    swept = tmp_path / "swept.yaml"
    swept.write_text(yaml.safe_dump(data))
    with pytest.warns(UserWarning, match="its sweep: section is not run here"):
        desim.run(swept, ["workload.batch=1"])


def test_arguments_of_the_wrong_type_are_said_at_the_call(lenet):
    """`progress=3` failed deep in the run with a bare TypeError; `on_chip="no"` read as
    true."""
    exp, result, _ = lenet
    with pytest.raises(TypeError, match="progress: expected a function of one message, got 3"):
        desim.run(exp, progress=3)
    with pytest.raises(TypeError, match="on_chip: expected True or False, got 'no'"):
        result.energy_gains("hppu", on_chip="no")
