"""Probes (`observe.modules`): which modules the trace and the waveforms record, chosen in
the experiment file, as desmod's probes are, not by editing code.

LeNet-300 at batch 2 (seconds a run) on dense.yaml: its modules are `dram`, `glb`, `noc`
and its links `noc.<from>-><to>`, `pe_array`, `vector_unit`, the FIFOs between the stages
and the buffers' halves (pools).
"""

from __future__ import annotations

import json
import re

import pytest
from small_experiments import lenet300_experiment

from desim import runner
from desim.errors import ConfigError
from desim.experiment import load_experiment
from desim.module import Module, Simulator


def traced_modules(trace: dict) -> set[str]:
    """The modules a Chrome trace has slices of (each a thread named by its path)."""
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"]
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    return {threads[(e["pid"], e["tid"])].split("#")[0] for e in trace["traceEvents"]
            if e.get("ph") == "X"}


def test_probes_pick_what_is_recorded_and_change_no_figure(tmp_path):
    """With probes `dram` and `noc.*` the trace has slices of DRAM and of NoC links alone,
    every link that carried a byte among them, and the waveform declares their signals
    alone (no FIFO depth, no PE array); the statistics are the same bytes as a run that
    records everything, and DRAM's slices add up to its busy time there."""
    path = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}},
                               observe={"trace": True, "vcd": True})
    everything, probed = tmp_path / "all", tmp_path / "probed"
    runner.run_and_write(load_experiment(path), everything)
    runner.run_and_write(load_experiment(path, ["observe.modules=[dram, noc.*]"]), probed)
    assert (everything / "stats.json").read_bytes() == (probed / "stats.json").read_bytes()
    stats = json.loads((probed / "stats.json").read_text())["dense"]["modules"]
    links = {m for m, entry in stats.items()
             if m.startswith("dense.noc.") and entry.get("busy_ps", 0) > 0}
    assert len(links) > 2
    trace = json.loads((probed / "trace.json").read_text())
    assert traced_modules(trace) == {"dense.dram"} | links
    dram_ps = sum(e["dur"] for e in trace["traceEvents"] if e.get("ph") == "X"
                  and e["tid"] == next(m["tid"] for m in trace["traceEvents"]
                                       if m.get("ph") == "M" and m["args"].get("name")
                                       == "dense.dram")) * 1e6
    assert dram_ps == pytest.approx(stats["dense.dram"]["busy_ps"], rel=1e-9)
    assert len(traced_modules(json.loads((everything / "trace.json").read_text()))) > \
        len(links) + 3
    vcd = (probed / "waves_dense.vcd").read_text()
    scopes = re.findall(r"\$scope module (\S+) \$end", vcd)
    assert "dram" in scopes and "pe_array" not in scopes and "fetch_to_distribute" not in scopes
    assert len(re.findall(r"\$var ", vcd)) == 1 + len(links)


def test_a_probe_that_names_no_module_is_refused_before_simulating(tmp_path):
    """A typo (`drma`) had traced nothing without a word: refused at elaboration, naming
    the key and the run's modules."""
    from desim.elaborate import elaborate

    path = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}},
                               observe={"trace": True, "modules": ["dram", "drma"]})
    with pytest.raises(ConfigError) as refused:
        elaborate(load_experiment(path))
    assert refused.value.key == "observe.modules.1"
    assert refused.value.message.startswith(
        "'drma' names no module of run 'dense' (its modules: dram, glb, noc, pe_array, ")
    assert refused.value.message.endswith(
        "links); expected a glob pattern of a module's path below the run")


def test_a_module_made_while_running_is_probed_by_its_path():
    """The NoC makes a link on its first transfer: a module built after tracing is on takes
    the tracer only where a probe names it, as the ones built before."""
    sim = Simulator()
    top = Module("top", sim)
    Module("kept", top)
    tracer = sim.enable_tracing(modules=["kept*", "later.a"])
    made = [Module("later", top)]
    made += [Module("a", made[0]), Module("b", made[0])]
    assert [m.path for m in sim.modules() if m.tracer is tracer] == ["top.kept", "top.later.a"]


def test_probes_without_a_trace_or_waveform_are_noted(tmp_path):
    """Probes with neither the trace nor the waveforms on record nothing: said, not silent."""
    from typer.testing import CliRunner

    from desim.cli import app

    path = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}},
                               observe={"modules": ["dram"]})
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    said = ("".join(f"note: {path}: observe.modules names what the trace and the waveforms "
                    "record, and neither is on (--trace, --vcd)".split()))
    assert "".join(result.stderr.split()).startswith(said)  # (rich wraps a long path anywhere)
    traced = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"),
                                      "--trace"])
    assert traced.exit_code == 0 and "observe.modules" not in traced.stderr
