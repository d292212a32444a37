"""`desim check EXP.yaml`: elaborate an experiment without simulating it.

Why: SystemC separates elaboration from simulation, and so does desim; this command stops
after elaboration. Every YAML file is validated, each run's processor is assembled (its NoC
connected, its clocks on the picosecond grid, its energy prices resolved) and the workload's
model takes one sample of its input shape. A mistake then shows in seconds, not after a
capture and a simulation of minutes, and the table reads as the figures an architect
quotes for each run's processor. What needs the captured tensors (a tile that fits no
buffer) is still found by `desim run`, before it simulates. An experiment with a `sweep:`
section has each of its points' configurations checked too. `desim run` elaborates this way
(`elaborate`) before its first capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arch.accelerator import Accelerator
from arch.config import ArchConfig
from desim.errors import ConfigError
from desim.experiment import Experiment, load_experiment
from desim.module import Simulator

# What `describe` tells of a processor, with the label each row of a table gets.
DESCRIBED = {"arch": "arch", "technology": "node", "clock_mhz": "clock (MHz)",
             "precision": "precision", "macs_per_cycle": "MACs / cycle",
             "peak_tmacs": "peak TMAC/s", "global_buffer_kib": "global buffer (KiB)",
             "dram": "DRAM", "dram_gb_s": "DRAM peak (GB/s)", "noc": "NoC",
             "vector_lanes": "vector lanes", "skips": "skips zero",
             "sparse_units": "sparse units", "modules": "modules"}


def cell(value: Any) -> str:
    """A described value as a table shows it: 1,024; 0.512; 19.21; text as it is."""
    if isinstance(value, float):
        return f"{value:,.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def describe(name: str, arch: ArchConfig) -> dict[str, Any]:
    """One run's processor, elaborated: what it is, in the units its datasheet would use."""
    sim = Simulator()
    acc = Accelerator(sim, arch, name=name)
    sim.elaborate()  # every port bound, every channel driven and read
    pe = arch.pe_cluster
    macs = len(acc.clusters) * pe.pes * pe.macs_per_pe_per_cycle
    noc = arch.noc
    return {
        "arch": arch.name, "technology": arch.technology,
        "clock_mhz": arch.core_clock_mhz, "macs_per_cycle": macs,
        "peak_tmacs": macs * acc.clock.frequency_hz / 1e12, "precision": pe.precision,
        "global_buffer_kib": acc.glb.capacity_bytes // 1024,
        "dram": f"{arch.dram.preset} x{acc.dram.system.channels}"
                + ("" if arch.dram.power_down == "off" else f", {arch.dram.power_down} power-down"),
        "dram_gb_s": acc.dram.system.peak_bandwidth_bytes_per_s / 1e9,
        "noc": f"{noc.topology} {'x'.join(map(str, noc.shape or ()))}".strip(),
        "vector_lanes": arch.vector_unit.lanes if arch.vector_unit else "-",
        "skips": " ".join(operand for operand, on in (
            ("W", arch.sparsity.skip_zero_weights), ("X", arch.sparsity.skip_zero_activations),
            ("dY", arch.sparsity.skip_zero_gradients)) if on) or "-",
        "sparse_units": ", ".join(unit for unit, cfg in (
            ("selector", arch.selector), ("speculator", arch.speculator),
            ("weight generator", arch.weight_generator)) if cfg) or "-",
        "modules": sum(1 for _ in sim.modules()),
    }


@dataclass
class Checked:
    """What `check` found: a row per run; for a sweep, its point count and invalid points."""

    runs: list[dict[str, Any]]
    sweep_points: int = 0
    invalid_points: list[tuple[dict[str, Any], ConfigError]] = field(default_factory=list)


def check(path: str | Path, overrides: list[str] | None = None) -> Checked:
    """Validate and elaborate every run of the experiment at `path` (and every point of its
    sweep, if it has one). Bad input raises a ConfigError naming the file and key, as
    `desim run` would; a sweep's invalid points are listed, as `desim sweep` records them."""
    experiment = load_experiment(path, overrides)
    rows = elaborate(experiment)
    if experiment.spec.sweep is None:
        return Checked(rows)
    return Checked(rows, *_sweep_points(path, overrides or []))


def elaborate(experiment: Experiment) -> list[dict[str, Any]]:
    """Every run's processor elaborated and every workload's model checked, the rows for
    `check`'s table: `desim run` does this first too, so that a design error in its last run
    is said before the first one is captured and simulated."""
    from mappings.workload import checked_model

    rows = []
    checked: set[str] = set()
    for run in experiment.spec.runs:
        workload = experiment.workloads[run.name]
        key = workload.model_dump_json()
        if workload.model is not None and key not in checked:
            try:
                checked_model(workload)
            except ConfigError as err:
                raise err.in_file(str(experiment.path)) from None
            checked.add(key)
        pruning = run.pruning.method + (f" {run.pruning.sparsity:g}"
                                        if run.pruning.sparsity else "")
        try:
            described = describe(run.name, experiment.archs[run.name])
        except ConfigError as err:  # the design's own file is the one to fix
            raise err.in_file(str((experiment.path.parent / run.arch).resolve())) from None
        rows.append({"run": run.name, **described, "pruning": pruning})
    return rows


def _sweep_points(path: str | Path, overrides: list[str]
                  ) -> tuple[int, list[tuple[dict[str, Any], ConfigError]]]:
    """How many points the experiment's sweep has, and those whose configuration is invalid
    (their values, why): what `desim sweep` would record as failed without computing."""
    from desim.sweep import load_sweep_spec, plan_points

    points = plan_points(load_sweep_spec(Path(path), overrides))
    invalid = []
    for point in points:
        try:
            load_experiment(path, [*overrides, *point.overrides])
        except ConfigError as err:
            invalid.append((point.values, err))
    return len(points), invalid
