"""Elaboration: each run's processor assembled and checked, without simulating.

Why: SystemC separates elaboration from simulation, and so does desim. Every run's
processor is built (its NoC connected, its clocks on the picosecond grid, its energy prices
resolved; `Simulator.elaborate()` binds every port) and the workload's model takes one
sample of its input shape (a SCALE-Sim topology CSV is read instead). `desim run` does this
before its first capture, so that a design error in its last run is said in seconds; `desim
check` stops here and prints the description (`describe`), which the report's "Processors"
table reads back too.
"""

from __future__ import annotations

from typing import Any

from arch.accelerator import Accelerator
from arch.config import ArchConfig
from desim.errors import ConfigError
from desim.experiment import Experiment
from desim.module import Simulator

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


def elaborate(experiment: Experiment) -> list[dict[str, Any]]:
    """Every run's processor elaborated and every workload's model checked, the rows for
    `check`'s table: `desim run` does this first too, so that a design error in its last run
    is said before the first one is captured and simulated."""
    from mappings.scalesim import read_topology_rows
    from mappings.workload import checked_model

    rows = []
    checked: set[str] = set()
    for run in experiment.spec.runs:
        workload = experiment.workloads[run.name]
        key = workload.model_dump_json()
        if key not in checked:
            try:  # the model takes a sample; a SCALE-Sim topology CSV is read
                if workload.model is not None:
                    checked_model(workload)
                else:
                    read_topology_rows(workload.scalesim_topology)
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
