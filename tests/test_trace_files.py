"""Waveform files in a results folder: each run's VCD waits under a hidden name while the
runs simulate and is renamed into place with the other results, so a run that fails or is
killed leaves no waveform of its own beside an earlier run's summary.

LeNet-300 at batch 2 (seconds a run) on dense.yaml, as is and without its vector unit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from small_experiments import lenet300_experiment

from desim import runner
from desim.experiment import load_experiment


def experiment_file(folder: Path) -> Path:
    return lenet300_experiment(folder / "experiment.yaml",
                               {"dense": {"method": "dense"}, "bare": {"method": "dense"}},
                               observe={"vcd": True})


def listing(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_waveforms_are_published_with_the_results(tmp_path, monkeypatch):
    """While the second run simulates, the first's waveform exists only under its hidden
    name; after the write both are in place, whole, and no hidden file is left (a stale one
    of a killed run, of this run's name or another's, is gone too)."""
    experiment = load_experiment(experiment_file(tmp_path), ["arch.bare.vector_unit=null"])
    out = tmp_path / "out"
    out.mkdir()
    (out / ".waves_dense.vcd.tmp").write_text("half a waveform of a killed run")
    (out / ".waves_gone.vcd.tmp").write_text("half a waveform of a killed run")
    seen: list[set[str]] = []
    simulate = runner.simulate

    def watched(*args: Any, **kwargs: Any) -> runner.RunResult:
        seen.append({p.name for p in out.iterdir()})
        return simulate(*args, **kwargs)

    monkeypatch.setattr(runner, "simulate", watched)
    runner.run_and_write(experiment, out)
    assert len(seen) == 2
    assert ".waves_dense.vcd.tmp" in seen[1] and "waves_dense.vcd" not in seen[1]
    files = {p.name for p in out.iterdir()}
    assert {"summary.json", "waves_dense.vcd", "waves_bare.vcd"} <= files
    assert not [name for name in files if name.startswith(".")]
    for name in ("dense", "bare"):
        text = (out / f"waves_{name}.vcd").read_text()
        assert text.startswith("$date") and "$enddefinitions $end" in text
        assert f"$scope module {name} $end" in text


def test_a_failed_run_leaves_the_earlier_results_as_they_were(tmp_path, monkeypatch):
    """The second run fails after the first has simulated (and written its waveform): the
    folder holds the earlier run's files, unchanged, and no waveform or hidden file of
    this one."""
    experiment = load_experiment(experiment_file(tmp_path), ["arch.bare.vector_unit=null"])
    out = tmp_path / "out"
    out.mkdir()
    for name in ("summary.json", "waves_dense.vcd"):
        (out / name).write_text("an earlier run's\n")
    before = listing(out)
    during: list[set[str]] = []
    simulate = runner.simulate

    def second_fails(name: str, *args: Any, **kwargs: Any) -> runner.RunResult:
        if name == "bare":
            during.append({p.name for p in out.iterdir()})
            raise KeyboardInterrupt  # as Ctrl-C would, mid-run
        return simulate(name, *args, **kwargs)

    monkeypatch.setattr(runner, "simulate", second_fails)
    with pytest.raises(KeyboardInterrupt):
        runner.run_and_write(experiment, out)
    assert listing(out) == before
    assert during == [{*before, ".waves_dense.vcd.tmp"}]  # the first run's, unpublished


def test_a_killed_write_leaves_no_hidden_halves_after_the_next_run(tmp_path):
    """A run killed while writing its results leaves the hidden halves of its files
    (`atomic_path`'s `.summary.json.XXXX.tmp`, and `..summary.json.tmp.XXXX.tmp` of the
    hidden name each is staged under, which were left); the next run into the folder
    removes them, and nothing else of the folder's."""
    out = tmp_path / "out"
    out.mkdir()
    halves = [out / f".{name}.k1ll3d.tmp" for name in runner.RESULT_FILES]
    # and those of its hidden files (`atomic_path` of `unpublished`)
    halves += [out / f"..{name}.tmp.k1ll3d.tmp" for name in runner.RESULT_FILES]
    halves.append(out / "..waves_dense.vcd.tmp.k1ll3d.tmp")
    others = [out / ".notes.md.x.tmp", out / "summary.json.bak"]
    for path in halves + others:
        path.write_text("half")
    runner.remove_stale_artifacts(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in others)


@pytest.mark.parametrize("at", ["energy.csv", "publishing"])
def test_a_write_killed_midway_leaves_earlier_results_whole_or_none(tmp_path, monkeypatch, at):
    """Killed while its files are written (a trace of 56 MB takes seconds), a run left its
    summary.json beside the earlier run's layers.csv, trace and report, which `desim
    report` then drew as its own. Killed before its files are put in place: the earlier
    results, untouched, and no hidden file of its own. Killed while they are put in place:
    no summary.json (no results folder to read), not a mixture."""
    experiment = load_experiment(experiment_file(tmp_path), ["arch.bare.vector_unit=null"])
    out = tmp_path / "out"
    runner.run_and_write(experiment, out)
    (out / "report.md").write_text("the earlier run's report\n")
    before = listing(out)
    real_write_csv, real_replace = runner.write_csv, runner.os.replace

    def write_csv(path: Path, frame: Any) -> None:
        if at == "energy.csv" and path.name == ".energy.csv.tmp":
            raise KeyboardInterrupt
        real_write_csv(path, frame)

    def replace(source: Any, target: Any) -> None:
        if at == "publishing" and Path(target).name == "energy.csv":
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(runner, "write_csv", write_csv)
    monkeypatch.setattr(runner.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        runner.run_and_write(experiment, out)
    if at == "energy.csv":
        assert listing(out) == before
    else:
        assert "summary.json" not in listing(out)


def test_a_users_files_of_desims_names_survive_runs_into_the_folder(tmp_path):
    """A trace.json, tiles.csv, waveform and report.md of the user's in the folder stay
    through two runs that write none of them (the second run had taken them for the
    first's and deleted them); what an earlier run wrote (its config.json says it traced)
    and the report `desim report` wrote there go, as they would pass for the new run's."""
    experiment = load_experiment(experiment_file(tmp_path), ["observe.vcd=false"])
    out = tmp_path / "out"
    out.mkdir()
    mine = {name: f"mine: {name}\n" for name in
            ("trace.json", "tiles.csv", "waves_dense.vcd", "report.md", "report.html")}
    for name, text in mine.items():
        (out / name).write_text(text)
    runner.run_and_write(experiment, out)
    runner.run_and_write(experiment, out)
    assert {name: (out / name).read_text() for name in mine} == mine
    for name in mine:
        (out / name).unlink()
    traced = load_experiment(experiment_file(tmp_path), ["observe.trace=true"])
    runner.run_and_write(traced, out)
    assert {"trace.json", "waves_dense.vcd", "waves_bare.vcd"} <= {p.name for p in
                                                                   out.iterdir()}
    (out / "report.md").write_text("# desim report\n\nof this folder\n")
    (out / "report_dense_energy.png").write_bytes(b"a plot")  # an older desim's name
    (out / "report_dense.dense.timeline.png").write_bytes(b"a plot")
    runner.run_and_write(experiment, out)
    left = {p.name for p in out.iterdir()}
    assert not left & {"trace.json", "waves_dense.vcd", "waves_bare.vcd", "report.md",
                       "report_dense_energy.png", "report_dense.dense.timeline.png"}, left


def test_a_failed_run_leaves_no_folder_it_made(tmp_path, monkeypatch):
    """A run that fails after its folder was made (a model whose forward raises, found at
    capture) removes that folder again, empty: it was left behind as if something had run.
    A folder that was there before stays, as it was."""
    from desim.errors import ConfigError

    experiment = load_experiment(experiment_file(tmp_path))

    def fails(*args: Any, **kwargs: Any) -> None:
        raise ConfigError("the model's forward failed")

    monkeypatch.setattr(runner, "simulate", fails)
    for out in (tmp_path / "new" / "out", tmp_path / "there"):
        if out.name == "there":
            out.mkdir()
        with pytest.raises(ConfigError, match="forward failed"):
            runner.run_and_write(experiment, out)
    assert not (tmp_path / "new" / "out").exists()
    assert (tmp_path / "there").is_dir() and not any((tmp_path / "there").iterdir())


def test_the_trace_is_written_one_event_a_line_with_its_other_data(tmp_path):
    """trace.json as the tracer's own files are (`chrome_trace_text`: a line per event, plus
    the opening and the closing one; was indented, twice the size) and with `otherData`
    (picoseconds the source unit; was dropped by the merge of the runs)."""
    experiment = load_experiment(lenet300_experiment(
        tmp_path / "experiment.yaml", {"dense": {"method": "dense"}, "bare": {"method": "dense"}},
        observe={"trace": True}), ["arch.bare.vector_unit=null"])
    out = tmp_path / "out"
    runner.run_and_write(experiment, out)
    text = (out / "trace.json").read_text()
    trace = json.loads(text)
    assert trace["otherData"] == {"generator": "desim", "source_time_unit": "ps"}
    assert len(text.splitlines()) == len(trace["traceEvents"]) + 2
    assert {e["pid"] for e in trace["traceEvents"]} == {0, 1}


HELD = "another desim is writing in this folder now: wait for it to end, or write elsewhere"


def test_a_run_into_a_folder_another_desim_writes_is_refused_before_it_simulates(
        tmp_path, monkeypatch):
    """Two `desim run`s into one folder had each renamed and removed the other's files: one
    died with a traceback, and the folder held both runs' files and no summary.json. A run
    holds its folder from before it simulates to its last file; another, by the command
    line (exit 2, one line) or the API (`desim.run(out=...)`, `Result.write`), is refused
    at once, before any work, and leaves the folder as it was."""
    import fcntl
    import subprocess
    import sys

    import desim
    from desim.errors import ConfigError
    from desim.results import held_by_this_process

    path = experiment_file(tmp_path)
    result = desim.run(path)  # simulated with no folder, to write one later
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("the other run's\n")
    before = listing(out)

    def simulated(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("simulated in a folder another desim holds")

    monkeypatch.setattr(runner, "simulate", simulated)
    with held_by_this_process(out, "a sweep"):  # (whatever another desim writes there)
        command = subprocess.run([sys.executable, "-m", "desim", "run", str(path), "--vcd",
                                  "--out", str(out)], capture_output=True, text=True,
                                 timeout=300)
        assert command.returncode == 2, command.stderr
        assert command.stderr == f"error: {out}: {HELD}\n"
        for write in (lambda: desim.run(path, out=out), lambda: result.write(out),
                      lambda: runner.run_and_write(result.experiment, out)):
            with pytest.raises(ConfigError) as refused:
                write()
            assert (refused.value.file, refused.value.message) == (str(out), HELD)
        assert listing(out) == before
    # The folder removed by the run holding it (it made it, and failed), between this
    # one's check of the folder and its lock, or while this one waited for the lock: said
    gone = tmp_path / "gone"
    removed = ConfigError("removed by another desim while a run's results were to be "
                          "written there; run the same command again", file=str(gone))
    with pytest.raises(ConfigError) as refused:
        with held_by_this_process(gone, "a run's results"):
            pass
    assert str(refused.value) == str(removed)
    gone.mkdir()
    real_flock = fcntl.flock

    def flock(handle: int, operation: int) -> None:
        gone.rmdir()
        real_flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    with pytest.raises(ConfigError) as refused:
        with held_by_this_process(gone, "a run's results"):
            pass
    assert str(refused.value) == str(removed)
    monkeypatch.undo()
    assert result.write(out) == out  # the holder gone: written
    assert json.loads((out / "summary.json").read_text()) == result.summary


@pytest.mark.parametrize(("earlier", "killed", "at"), [
    ("plain", "observed", "waves_bare.vcd"),  # the audit's case: waveforms put in place
    ("observed", "plain", "stats.json"),      # its config.json (no waveform) in place
    ("observed", "plain", "config.json")])
def test_a_run_leaves_no_waveform_trace_or_tiles_of_a_run_killed_while_publishing(
        tmp_path, monkeypatch, earlier, killed, at):
    """A run killed while it put its files in place had published its waveforms before its
    config.json, which lists them, and the next run, reading the earlier config.json, left
    them beside its own summary as its own. Now the earlier run's files go first, then this
    run's config.json, then its other files: killed anywhere, the folder's config.json lists
    every observed file of desim's there, and the next run removes those it does not write."""
    observed = ["observe.trace=true", "observe.tiles=true"]
    sets = {"plain": ["observe.vcd=false"], "observed": observed}
    path = experiment_file(tmp_path)
    out = tmp_path / "out"
    runner.run_and_write(load_experiment(path, sets[earlier]), out)
    real_replace = runner.os.replace

    def replace(source: Any, target: Any) -> None:
        if Path(target).name == at:  # (a kill would leave what this leaves)
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(runner.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        runner.run_and_write(load_experiment(path, [*sets[killed], "workload.batch=1"]), out)
    monkeypatch.undo()
    runner.run_and_write(load_experiment(path, sets["plain"]), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "energy.csv", "layers.csv", "stats.json", "stats.txt", "summary.json"]
