"""Elaboration: each run's processor assembled and checked, without simulating.

Why: SystemC separates elaboration from simulation, and so does desim. Every run's
processor is built (its NoC connected, its clocks on the picosecond grid, its energy prices
resolved; `Simulator.elaborate()` binds every port), the workload's untrained model runs two
images (`mappings.workload.untrained`; a SCALE-Sim topology CSV is read instead), each
run's pruning is checked against the shapes of the layers it prunes (PermDNN's p must
divide them, ...), and every layer-phase's smallest tile is checked against each design's
buffer. `desim run` does this before its first capture, so that a design error in its last
run is said in seconds (DropBack's capture trains for minutes first); `desim check` stops
here and prints the description (`describe`), which the report's "Processors" table reads
back too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arch.accelerator import Accelerator
from arch.config import ArchConfig, SparsityConfig, priced_actions
from arch.noc import is_noc_link, link_name
from desim.channels import UNTIMED
from desim.errors import ConfigError
from desim.experiment import Experiment, RunSpec, claim_metrics
from desim.module import Simulator, probed

if TYPE_CHECKING:
    from mappings.workload import Untrained

DESCRIBED = {"arch": "arch", "technology": "node", "clock_mhz": "clock (MHz)",
             "precision": "precision", "macs_per_cycle": "MACs / cycle",
             "peak_tmacs": "peak TMAC/s", "global_buffer_kib": "global buffer (KiB)",
             "dram": "DRAM", "dram_gb_s": "DRAM peak (GB/s)",
             "macs_per_dram_byte": "MACs / DRAM byte (ridge)", "noc": "NoC",
             "noc_port_gb_s": "NoC port (GB/s)",
             "vector_lanes": "vector lanes", "skips": "skips zero",
             "sparse_units": "sparse units", "dataflow": "dataflow", "modules": "modules"}

# Architecture keys whose values the description shows as they are (the report's processors
# table adds a row only for the other keys that differ between runs).
DESCRIBED_KEYS = frozenset({
    "technology", "supply_voltage_v", "static_power_mw", "core_clock_mhz",
    "pe_cluster.precision",
    "global_buffer.capacity_kib",
    "dram.preset", "dram.channels", "dram.power_down", "noc.topology", "noc.shape",
    "vector_unit.lanes", "sparsity.skip_zero_weights", "sparsity.skip_zero_activations",
    "sparsity.skip_zero_gradients", "mapping.dataflow", "mapping.partition"})


def cell(value: Any) -> str:
    """A described value as a table shows it: 1,024; 0.512; 19.21; text as it is."""
    if isinstance(value, float):
        return f"{value:,.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def describe(name: str, arch: ArchConfig, acc: Accelerator | None = None) -> dict[str, Any]:
    """One run's processor, elaborated: what it is, in the units its datasheet would use.
    `acc`: the processor, if the caller has built it (else it is built here)."""
    acc = acc or Accelerator(Simulator(), arch, name=name)
    acc.sim.elaborate()  # every port bound, every channel driven and read
    pe = arch.pe_cluster
    macs = acc.pes.peak_macs_per_cycle
    noc = arch.noc
    return {
        "arch": arch.name,
        "technology": arch.technology + (f" at {arch.supply_voltage_v:g} V"
                                         if arch.supply_voltage_v is not None else "")
        + (f", {arch.static_power_mw:g} mW static" if arch.static_power_mw is not None else ""),
        "clock_mhz": arch.core_clock_mhz, "macs_per_cycle": macs,
        "peak_tmacs": macs * acc.clock.frequency_hz / 1e12, "precision": pe.precision,
        "global_buffer_kib": acc.glb.capacity_bytes // 1024,
        "dram": f"{arch.dram.preset} x{acc.dram.system.channels}"
                + ("" if arch.dram.power_down == "off" else f", {arch.dram.power_down} power-down"),
        "dram_gb_s": acc.dram.system.peak_bandwidth_bytes_per_s / 1e9,
        # the roofline's ridge: below this many MACs per DRAM byte a layer-phase cannot keep
        # the PEs busy, however the rest is built
        "macs_per_dram_byte": macs * acc.clock.frequency_hz
        / acc.dram.system.peak_bandwidth_bytes_per_s,
        "noc": f"{noc.topology} {'x'.join(map(str, noc.shape or ()))}".strip(),
        # the global buffer's (or its selector's) link into the NoC: every operand crosses it
        "noc_port_gb_s": acc.graph.edges[acc.port, arch.global_buffer_router][
            "bandwidth_bytes_per_cycle"] * acc.clock.frequency_hz / 1e9,
        "vector_lanes": arch.vector_unit.lanes if arch.vector_unit else "-",
        "skips": skips_text(arch.sparsity),
        "sparse_units": ", ".join(unit for unit, cfg in (
            ("selector", arch.selector), ("speculator", arch.speculator),
            ("weight generator", arch.weight_generator),
            ("index matching", arch.index_matching)) if cfg) or "-",
        "dataflow": dataflow_text(arch.mapping.dataflow, arch.mapping.partitions),
        "modules": sum(1 for _ in acc.sim.modules()),
    }


def skips_text(s: SparsityConfig) -> str:
    """The zeros a design skips, "W X dY"; an operand skipped in some of its phases only
    with them, "X (WG)"."""
    parts = ["W"] if s.skip_zero_weights else []
    for operand, phases, every in (("X", s.activation_phases, ("FF", "WG")),
                                   ("dY", s.gradient_phases, ("BP", "WG"))):
        if phases:
            parts.append(operand if phases == every else f"{operand} ({', '.join(phases)})")
    return " ".join(parts) or "-"


def dataflow_text(order: str, partitions: tuple[str, ...]) -> str:
    """A design's dataflow in words: its loop order (`mapping.dataflow`, "order chosen"
    for auto) and what its clusters may be dealt ("by channels or rows")."""
    dealt = (partitions[0] if len(partitions) == 1
             else f"{', '.join(partitions[:-1])} or {partitions[-1]}")
    return f"{'order chosen' if order == 'auto' else order.replace('_', ' ')}, by {dealt}"


def summary_names(acc: Accelerator) -> dict[str, list[str]]:
    """The names summary.json keys a run on the processor `acc` by, known once it is built,
    before any simulation: `energy_by_component_j`'s (the components `acc.energy_pj` prices,
    priced here for no actions), `utilization`'s (the processor's parts, less its FIFOs and
    pools, which do no timed work: `desim.stats`; and the MAC units'), `time_by_busiest_part`'s
    (the same parts) and `energy_prices_pj`'s (the prices of its components, as the runner
    writes them: `arch.config.priced_actions`). A run never has a name not listed; it
    could lack a part listed (one never busy whose own parts are all FIFOs), as no shipped
    design's does."""
    parts = [module.name for module in acc.children if not isinstance(module, UNTIMED)]
    return {"energy_by_component_j": sorted({key.split(".")[0]
                                             for key in acc.energy_pj({}, 0, 0)}),
            "utilization": sorted([*parts, "mac_units"]),
            "time_by_busiest_part": sorted(parts),
            "energy_prices_pj": sorted(priced_actions(acc.cfg, acc.prices.as_dict()))}


def _check_part_claims(experiment: Experiment, run: str, acc: Accelerator) -> None:
    """A claim on a part or component of run `run` (`runs.hppu.utilization.dram`,
    `runs.hppu.energy_by_component_j.noc`) names one its processor has (`summary_names`):
    a typo was found missing by the report only, after the simulation."""
    names = summary_names(acc)
    names["energy_by_action_j"] = names["energy_by_component_j"]  # <component>.<action>
    for key, metric in claim_metrics(experiment.spec.claims):
        parts = metric.split(".")
        if parts[:2] != ["runs", run] or parts[2] not in names:
            continue
        if parts[3] not in names[parts[2]]:
            raise ConfigError(f"{metric!r}: the processor of run {run!r} has no "
                              f"{parts[3]!r} in {parts[2]}; it has: {', '.join(names[parts[2]])}",
                              file=str(experiment.path), key=key)


@dataclass
class Shared:
    """What elaborating several experiments (a sweep's points) shares: each workload's
    untrained iteration (by its spec's JSON; one that takes two images whatever the batch
    also by `untrained_key`, so that an axis of batch sizes runs it once), and each tile
    check's outcome (by design, iteration and circulant mapping; None: every tile fits),
    which most of a sweep's points repeat (an axis of pruning sparsity leaves both
    unchanged)."""

    iterations: dict[str, Untrained] = field(default_factory=dict)
    fits: dict[str, ConfigError | None] = field(default_factory=dict)


def probe_targets(acc: Accelerator) -> list[str]:
    """What a probe (`observe.modules`) may name in a processor: its modules' paths below
    the run, and its NoC links', which the NoC makes on their first transfer."""
    graph = acc.graph
    links = [f"noc.{link_name(u, v)}" for u, v in graph.edges if is_noc_link(graph, u, v)]
    below = [module.path.partition(".")[2] for module in acc.sim.modules()]
    return [path for path in below if path] + links


def _check_probes(experiment: Experiment, run: str, acc: Accelerator) -> None:
    """Each probe names a module of every run: a typo had traced nothing, without a word."""
    probes = experiment.spec.observe.modules
    if not probes:
        return
    targets = probe_targets(acc)
    for j, probe in enumerate(probes):
        if not any(probed(f"{run}.{target}", [probe]) for target in targets):
            modules = [t for t in targets if not t.startswith("noc.")]
            links = len(targets) - len(modules)
            raise ConfigError(f"{probe!r} names no module of run {run!r} (its modules: "
                              f"{', '.join(modules)}, and noc.<from>-><to>, {links} links); "
                              "expected a glob pattern of a module's path below the run",
                              file=str(experiment.path), key=f"observe.modules.{j}")


def elaborate(experiment: Experiment, shared: Shared | None = None) -> list[dict[str, Any]]:
    """Every run's processor elaborated, every workload's model and every run's pruning
    checked and every tile of every run checked to fit its design's buffer; the rows for
    `check`'s table: `desim run` does this first too, so that a design error in its last run
    is said before the first one is captured and simulated (and trained: DropBack's capture
    trains for minutes). `shared`: what earlier calls found, for a sweep's points."""
    from mappings.workload import untrained, untrained_key

    rows = []
    shared = Shared() if shared is None else shared
    iterations = shared.iterations
    for i, run in enumerate(experiment.spec.runs):
        workload = experiment.workloads[run.name]
        key = workload.model_dump_json()
        if key not in iterations:
            shared_key = untrained_key(workload)
            found = iterations.get(shared_key)
            if found is None or not found.batch_free:  # (the same spec at batch 2 with MatMul)
                try:  # the model takes two images (a SCALE-Sim topology CSV is read)
                    found = untrained(workload)
                except ConfigError as err:
                    raise workload_error(err, experiment, i) from None
                if found.batch_free:
                    iterations[shared_key] = found
            iterations[key] = found
        iteration = iterations[key]
        _check_pruning(experiment, i, iteration)
        pruning = run.pruning.method + (f" {run.pruning.sparsity:g}"
                                        if run.pruning.sparsity else "")
        arch = experiment.archs[run.name]
        try:
            acc = Accelerator(Simulator(), arch, name=run.name)
            described = describe(run.name, arch, acc)
        except ConfigError as err:  # the design's own file is the one to fix
            raise experiment.in_design(i, err) from None
        _check_part_claims(experiment, run.name, acc)
        _check_probes(experiment, run.name, acc)
        circulant = run.pruning.method == "block_circulant"
        # by the iteration's layers: a batch-free one's serve every batch
        fit_key = (arch.model_dump_json() + str(id(iteration.layers)) + str(circulant)
                   + str(workload.inference))
        if fit_key not in shared.fits:
            try:
                _check_tiles_fit(acc, iteration.layers, workload.inference, circulant)
                shared.fits[fit_key] = None
            except ConfigError as err:
                shared.fits[fit_key] = err
        misfit = shared.fits[fit_key]
        if misfit is not None:
            raise design_error(misfit, experiment, i)
        rows.append({"run": run.name, **described, "pruning": pruning})
    return rows


def workload_error(err: ConfigError, experiment: Experiment, i: int) -> ConfigError:
    """An error of run `i`'s workload, naming the run's `workload_set` when it has one and
    the experiment's own workload takes no such error: `--set runs.0.workload_set=[model=
    lenet5]` on a workload of 3-channel images named `workload.input_shape` only, a key the
    user had not touched. The experiment's workload is tried only on this path; its own
    error comes first."""
    from mappings.workload import untrained

    err = err.in_file(str(experiment.path))
    run = experiment.spec.runs[i]
    if not run.workload_set or experiment.workloads[run.name] == experiment.spec.workload:
        return err
    try:
        untrained(experiment.spec.workload)
    except ConfigError as own:  # the file's workload is at fault too: its error first
        return own.in_file(str(experiment.path))
    return ConfigError(f"{err.key + ': ' if err.key else ''}{err.message} "
                       f"{workload_set_note(run)}", file=err.file, key=f"runs.{i}.workload_set")


def workload_set_note(run: RunSpec) -> str:
    """What an error of run `run`'s own workload adds: that it is the experiment's with the
    run's `workload_set`."""
    return (f"(the workload of run {run.name!r}: the experiment's with its workload_set "
            f"[{', '.join(run.workload_set)}])")


def _check_pruning(experiment: Experiment, i: int, iteration: Untrained) -> None:
    """Run `i`'s pruning can prune every layer it prunes (PermDNN's p divides each one's K
    and C*R*S, ...): else the error names the run's pruning parameter and the layer, before
    the capture would find it (after DropBack's minutes of training)."""
    from mappings.pruning import check_layers, prune_model
    from mappings.workload import checked_model

    if iteration.model is None:  # a SCALE-Sim topology: not pruned
        return
    run = experiment.spec.runs[i]
    pruning = run.pruning
    try:
        check_layers(iteration.model, pruning)
        # Whether ternarization leaves a layer no weight depends on the values: prune the
        # seeded initial weights, as the capture does (and training, before its first step)
        if pruning.method == "ternarize" or pruning.ternary:
            prune_model(checked_model(experiment.workloads[run.name])[0], pruning)
    except ConfigError as err:
        key = ".".join(part for part in (f"runs.{i}.pruning", err.key) if part)
        raise ConfigError(f"{err.message} (run {run.name!r}, pruning {run.pruning.method})",
                          file=str(experiment.path), key=key) from None


def _check_tiles_fit(acc: Accelerator, layers: list, inference: bool,
                     block_circulant: bool) -> None:
    """Every phase the mapper will map has a tile that fits the design's buffer, from the
    layers' geometry (`mappings.planner.geometry_misfit`); else its error."""
    from dataclasses import replace

    from desim.hardware_view import hardware_view
    from mappings.counting import BP, FF, WG
    from mappings.planner import geometry_misfit

    # sizes do not depend on the formats; dense ones skip counting runs of zeros
    hw = replace(hardware_view(acc), weight_format="dense", activation_format="dense")
    for packed in layers:
        layer = packed.unpack()
        phases = [FF] if inference else [FF, *([BP] if packed.needs_input_grad else []), WG]
        circulant = hw.circulant_fft and block_circulant and layer.weight_is_parameter
        for phase in phases:
            err = geometry_misfit(layer, phase, hw, circulant)
            if err is not None:
                raise err


def design_error(err: ConfigError, experiment: Experiment, i: int) -> ConfigError:
    """A mapper's error for run `i` (a tile its design's buffer cannot hold) as bad input
    of the experiment: it names the run and its design, and the buffer's size, with the
    `--set` or `arch_set` item that set it, if one did (the file holds another). Running
    out of memory while mapping names the run and the workload's batch."""
    from desim.experiment import arch_setter
    from mappings.tiling import BUFFER_KEY

    if err.file:
        return err
    run = experiment.spec.runs[i]
    if err.key == "workload.batch":  # the workload's size, not the design's (memory)
        return ConfigError(f"{err.message} (run {run.name!r})", file=str(experiment.path),
                           key=err.key)
    arch = experiment.archs[run.name]
    size = ""
    if err.key == BUFFER_KEY:
        setter = arch_setter(experiment, i, BUFFER_KEY)
        size = (f": {err.key} {arch.global_buffer.capacity_kib}"
                + (f", set by {setter}" if setter else ""))
    return ConfigError(f"{err.message} (run {run.name!r}, architecture {run.arch}{size})",
                       file=str(experiment.path), key=experiment.design_key(i))
