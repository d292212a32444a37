"""A systolic array running a spiking network: time steps one by one, or STT + ITT.

Two schedules of the same hardware (a weight-stationary `rows x cols` systolic array, a global
buffer holding the weights, spikes and partial sums, and a neuron unit of `lanes` integrate-
and-fire lanes with its own small membrane buffer):

- **serial** (the conventional baseline): time step after time step, layer after layer; every
  step reloads every weight fold and streams one input spike vector through it.
- **ITT** (integration through time, with STT inputs): layer after layer; each weight fold is
  loaded once and the spike vectors of all T / w time windows stream through it back to back
  (STT leaves at most one spike per neuron and TW, so a TW is one binary vector); the neuron
  unit then thresholds the TWs in order.

Timing. One fold (a tile of rows_used inputs x cols_used outputs) streaming V vectors takes
SCALE-Sim's closed form for one fold, 2 S_R + S_C + V - 2 cycles (A. Samajdar et al.,
"A Systematic Methodology for Characterizing Scalability of DNN Accelerators using SCALE-Sim",
ISPASS 2020): S_R cycles to shift the weights in, then V vectors skewed over S_R rows and
S_C columns. We use the fold's used rows and columns. The neuron unit takes
ceil(neurons / lanes) cycles a step or TW. Array and neuron unit work in turn (a layer's
spikes of a step feed the next layer of that step), so their times add.

Transaction level: one event per fold (a tile) and one per neuron-unit batch; never per spike.

Actions (priced by `SnnEnergyTable`): `pe_adds` (a spike meeting a weight: one accumulate;
zero inputs are clock-gated and cost nothing, an assumption; a mean over the samples, so not
a whole number, and not rounded: the same for any array size), `weight_read_bytes`,
`spike_read_bytes` (global buffer), `psum_write_bytes`, `psum_read_bytes` (accumulator
buffer); `neuron_updates`
(integrate and compare), `membrane_read_bytes`, `membrane_write_bytes` (neuron buffer),
`spike_write_bytes` (global buffer).

Configuration: `configs/arch/snn_split_time.yaml` (`kind: snn_systolic`), validated by
`SnnArch`, which builds the `SnnArrayConfig` below and the picture's graph (`snn_graph`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass, fields
from typing import Literal

import networkx as nx
import numpy as np
from pydantic import Field, PositiveInt, ValidationInfo, field_validator

from arch.config import MAX_CLOCK_MHZ, MIN_CLOCK_MHZ
from arch.energy import EnergyTable, node_scale
from desim.clock import Clock
from desim.configio import Strict
from desim.errors import ConfigError
from desim.module import Module, Simulator

# Horowitz (ISSCC 2014), 45 nm: 32-bit integer add 0.1 pJ. Membrane potentials and partial
# sums are 32-bit integers (assumption); an accumulate is one add, a neuron update two (add
# the current, compare with the threshold).
ADD32_PJ_45NM = 0.1


@dataclass(frozen=True)
class SnnArrayConfig:
    """The array and its buffers. Defaults (assumptions: the abstract gives no size): a 32 x 32
    array at 500 MHz in 28 nm, 8-bit weights, 32-bit partial sums and membrane potentials, a
    512 KiB global buffer for weights and spikes (holds LeNet-300-100's weights) in 16 banks
    (as dense.yaml's; an access is priced at a bank's size, as the training designs'), a 32 KiB
    accumulator buffer for partial sums (as SCALE-Sim's separate output SRAM; it holds a
    300-neuron layer's sums for 27 TWs), a 32-lane neuron unit with an 8 KiB membrane
    buffer (2,048 neurons' potentials). What each buffer must hold for a schedule is
    `buffer_needs`; `schedule` refuses a design whose buffers cannot."""

    rows: int = 32
    cols: int = 32
    clock_mhz: int = 500
    technology: str = "28nm"
    weight_bytes: int = 1
    psum_bytes: int = 4
    membrane_bytes: int = 4
    lanes: int = 32
    buffer_kib: int = 512
    buffer_banks: int = 16
    psum_buffer_kib: int = 32
    membrane_buffer_kib: int = 8

    def __post_init__(self) -> None:
        if min(self.rows, self.cols, self.lanes, self.buffer_banks) < 1:
            raise ValueError("rows, cols, lanes and buffer_banks must be >= 1")
        if not MIN_CLOCK_MHZ <= self.clock_mhz <= MAX_CLOCK_MHZ:
            raise ValueError(f"clock_mhz {self.clock_mhz}: expected {MIN_CLOCK_MHZ} to "
                             f"{MAX_CLOCK_MHZ:,} MHz (a period of a picosecond or more)")


class SnnArch(Strict):
    """`kind: snn_systolic` architecture files: `SnnArrayConfig`'s fields by the same names
    (defaults: its defaults). The energy table (`SnnEnergyTable`) follows from `technology`
    and the buffers' sizes and banks. `config()` builds the dataclass."""

    kind: Literal["snn_systolic"]
    name: str
    rows: PositiveInt = SnnArrayConfig.rows
    cols: PositiveInt = SnnArrayConfig.cols
    # as a training processor's clock: 1 to 1,000,000 MHz, a period of a picosecond or more
    # (10,000,000 had passed here and failed in the study, naming no file or key)
    clock_mhz: int = Field(SnnArrayConfig.clock_mhz, ge=MIN_CLOCK_MHZ, le=MAX_CLOCK_MHZ)
    technology: Literal["45nm", "28nm"] = SnnArrayConfig.technology
    weight_bytes: PositiveInt = SnnArrayConfig.weight_bytes
    psum_bytes: PositiveInt = SnnArrayConfig.psum_bytes
    membrane_bytes: PositiveInt = SnnArrayConfig.membrane_bytes
    lanes: PositiveInt = SnnArrayConfig.lanes
    buffer_kib: PositiveInt = SnnArrayConfig.buffer_kib
    buffer_banks: PositiveInt = SnnArrayConfig.buffer_banks
    psum_buffer_kib: PositiveInt = SnnArrayConfig.psum_buffer_kib
    membrane_buffer_kib: PositiveInt = SnnArrayConfig.membrane_buffer_kib

    @field_validator("buffer_banks")
    @classmethod
    def _banks_hold_bytes(cls, v: int, info: ValidationInfo) -> int:
        kib = info.data.get("buffer_kib")
        if kib and v > kib * 1024:
            raise ValueError(f"{v} banks in buffer_kib {kib} ({kib * 1024} bytes): a bank "
                             "holds at least a byte")
        return v

    def config(self) -> SnnArrayConfig:
        return SnnArrayConfig(**{f.name: getattr(self, f.name) for f in fields(SnnArrayConfig)})

    def graph(self) -> nx.DiGraph:
        return snn_graph(self.config(), self.name)


def snn_graph(cfg: SnnArrayConfig, name: str = "snn") -> nx.DiGraph:
    """The datapath as a graph for `desim topology`: the global buffer feeds weights and
    spikes to the systolic array, whose partial sums go to (and, for later row folds, come
    back from) the accumulator buffer; the neuron unit integrates them with the membrane
    potentials of its buffer and writes its spikes back to the global buffer. Nodes carry
    `kind` (the picture's colour) and `pos`."""
    g = nx.DiGraph(topology=f"{name}: {cfg.rows}x{cfg.cols} array, {cfg.lanes} neuron lanes")
    g.add_node("global_buffer", kind="sram", pos=(0.0, 0.0), capacity_kib=cfg.buffer_kib,
               banks=cfg.buffer_banks)
    g.add_node("systolic_array", kind="systolic_array", pos=(1.0, 0.0), rows=cfg.rows,
               cols=cfg.cols)
    g.add_node("psum_buffer", kind="sram", pos=(2.0, 0.0), capacity_kib=cfg.psum_buffer_kib)
    g.add_node("neuron_unit", kind="neuron_unit", pos=(2.0, -1.0), lanes=cfg.lanes)
    g.add_node("membrane_buffer", kind="sram", pos=(3.0, -1.0),
               capacity_kib=cfg.membrane_buffer_kib)
    g.add_edges_from([("global_buffer", "systolic_array"), ("systolic_array", "psum_buffer"),
                      ("psum_buffer", "systolic_array"), ("psum_buffer", "neuron_unit"),
                      ("neuron_unit", "membrane_buffer"), ("membrane_buffer", "neuron_unit"),
                      ("neuron_unit", "global_buffer")])
    return g


def fold_cycles(rows_used: int, cols_used: int, vectors: int) -> int:
    """SCALE-Sim's cycles for one weight-stationary fold: 2 S_R + S_C + V - 2."""
    if vectors <= 0:
        return 0
    return 2 * rows_used + cols_used + vectors - 2


@dataclass(frozen=True)
class FoldJob:
    """One weight fold streaming `vectors` spike vectors; `spikes` is the number of input
    spikes among its rows over those vectors (mean over the evaluated samples)."""

    layer: int
    rows_used: int
    cols_used: int
    vectors: int
    spikes: float
    first_row_fold: bool


@dataclass(frozen=True)
class NeuronJob:
    layer: int
    neurons: int
    vectors: int      # steps (serial) or TWs (ITT), done one after the other


@dataclass(frozen=True)
class LayerShape:
    """A fully connected layer as the buffers see it: its inputs and outputs, and whether it
    spikes (False: the output layer integrates only, no neuron update)."""

    in_features: int
    out_features: int
    spiking: bool = True


@dataclass(frozen=True)
class LayerSpikes:
    """What the schedule needs of one layer: its shape and the mean input spikes of each row
    fold at each step or TW, shape (steps, ceil(in_features / rows))."""

    in_features: int
    out_features: int
    fold_spikes: np.ndarray
    spiking: bool = True   # False: the output layer integrates only (no neuron update)

    @property
    def shape(self) -> LayerShape:
        return LayerShape(self.in_features, self.out_features, self.spiking)


def buffer_needs(layers: Sequence[LayerShape], cfg: SnnArrayConfig, mode: str, steps: int
                 ) -> dict[str, tuple[int, str]]:
    """The bytes each buffer must hold at once to run `layers` on `steps` steps or TWs in
    `mode` (`schedule`), by its key, with what they are:

    - `buffer_kib`, the global buffer: the network's weights, every layer's (there is no
      DRAM: the serial schedule reads every layer's folds at every step, ITT each once, both
      from here), and the spikes of the layer in flight, a bit a neuron and vector: its
      input and the output the neuron unit writes back (a vector serially, the T / w TWs
      with ITT);
    - `psum_buffer_kib`: a layer's partial sums, all its outputs for every vector a fold
      streams (one serially, the TWs with ITT): the row folds are the outer loop, so each
      column fold's sums wait there for the next row fold, and the neuron unit reads them
      when the last is done;
    - `membrane_buffer_kib`: the membrane potentials the neuron unit keeps between its
      batches: serially every spiking layer's (a step visits them all before the next),
      with ITT the layer's in flight (its TWs in order, then the next layer)."""
    itt = mode == "itt"
    vectors = steps if itt else 1
    per = f"{vectors} TWs" if itt else "1 vector"
    weights = sum(lay.in_features * lay.out_features for lay in layers) * cfg.weight_bytes
    spikes, at = max((math.ceil(lay.in_features * vectors / 8)
                      + math.ceil(lay.out_features * vectors / 8), i)
                     for i, lay in enumerate(layers))
    sums, widest = max((lay.out_features * vectors * cfg.psum_bytes, i)
                       for i, lay in enumerate(layers))
    spiking = [(lay.out_features, i) for i, lay in enumerate(layers) if lay.spiking]
    if itt:  # the widest spiking layer's
        neurons, kept = max(spiking, default=(0, 0))
        membranes = f"layer {kept}'s membrane potentials"
    else:
        neurons, membranes = sum(n for n, _ in spiking), "every spiking layer's membrane potentials"
    return {
        "buffer_kib": (weights + spikes, f"the network's weights ({weights:,} bytes) and "
                       f"layer {at}'s spikes for {per} ({spikes:,} bytes)"),
        "psum_buffer_kib": (sums, f"layer {widest}'s partial sums: "
                            f"{layers[widest].out_features} outputs x {per} x "
                            f"{cfg.psum_bytes} bytes"),
        "membrane_buffer_kib": (neurons * cfg.membrane_bytes, f"{membranes}: {neurons} "
                                f"neurons x {cfg.membrane_bytes} bytes"),
    }


def check_buffers(layers: Sequence[LayerShape], cfg: SnnArrayConfig, mode: str, steps: int
                  ) -> None:
    """Refuse a design whose buffers cannot hold what `mode`'s schedule keeps in them
    (`buffer_needs`), naming the key: their sizes had only been priced, so a 1 KiB global
    buffer ran LeNet-300-100 (266,200 bytes of weights) and reported less energy."""
    mode_text = "ITT" if mode == "itt" else "the serial schedule"
    for key, (needed, what) in buffer_needs(layers, cfg, mode, steps).items():
        kib = getattr(cfg, key)
        if needed > kib * 1024:
            raise ConfigError(f"{kib} KiB ({kib * 1024:,} bytes) cannot hold {what} = "
                              f"{needed:,} bytes, under {mode_text}", key=key)


def schedule(layers: Sequence[LayerSpikes], cfg: SnnArrayConfig, mode: str
             ) -> list[FoldJob | NeuronJob]:
    """The jobs in order. `serial`: for each step, each layer, each fold one vector.
    `itt`: for each layer, each fold once with all the steps (TWs) as its vectors. A
    design whose buffers cannot hold what the schedule keeps is refused (`check_buffers`)."""
    if mode not in ("serial", "itt"):
        raise ValueError(f"mode must be 'serial' or 'itt', got {mode!r}")
    steps = {int(lay.fold_spikes.shape[0]) for lay in layers}
    if len(steps) != 1:
        raise ValueError(f"layers disagree on the number of steps: {sorted(steps)}")
    t = steps.pop()
    check_buffers([lay.shape for lay in layers], cfg, mode, t)

    def layer_jobs(i: int, lay: LayerSpikes, step_slice: slice) -> list[FoldJob | NeuronJob]:
        spikes = lay.fold_spikes[step_slice].sum(0)
        vectors = len(range(t)[step_slice])
        jobs: list[FoldJob | NeuronJob] = []
        for g, r0 in enumerate(range(0, lay.in_features, cfg.rows)):
            for c0 in range(0, lay.out_features, cfg.cols):
                jobs.append(FoldJob(i, min(cfg.rows, lay.in_features - r0),
                                    min(cfg.cols, lay.out_features - c0), vectors,
                                    float(spikes[g]), g == 0))
        jobs.append(NeuronJob(i, lay.out_features, vectors if lay.spiking else 0))
        return jobs

    out: list[FoldJob | NeuronJob] = []
    if mode == "serial":
        for step in range(t):
            for i, lay in enumerate(layers):
                out += layer_jobs(i, lay, slice(step, step + 1))
    else:
        for i, lay in enumerate(layers):
            out += layer_jobs(i, lay, slice(0, t))
    return out


class SystolicArray(Module):
    def __init__(self, name: str, parent: Module, cfg: SnnArrayConfig, clock: Clock) -> None:
        super().__init__(name, parent)
        self.cfg, self.clock = cfg, clock

    def fold(self, job: FoldJob) -> Generator:
        """The fold's work; returns the cycles it took."""
        cycles = fold_cycles(job.rows_used, job.cols_used, job.vectors)
        yield from self.busy_for(self.clock.cycles(cycles), f"L{job.layer}")
        self.count("folds")
        # the mean over the samples, not rounded: rounded a fold at a time (until 2026-12-07)
        # a 1 x 1 fold's half spikes went to the even integer (0.5 to 0, 1.5 to 2)
        self.count("pe_adds", job.spikes * job.cols_used)
        self.count("weight_read_bytes", job.rows_used * job.cols_used * self.cfg.weight_bytes)
        self.count("spike_read_bytes", math.ceil(job.rows_used * job.vectors / 8))
        psums = job.cols_used * job.vectors * self.cfg.psum_bytes
        self.count("psum_write_bytes", psums)
        if not job.first_row_fold:
            self.count("psum_read_bytes", psums)
        return cycles


class NeuronUnit(Module):
    def __init__(self, name: str, parent: Module, cfg: SnnArrayConfig, clock: Clock) -> None:
        super().__init__(name, parent)
        self.cfg, self.clock = cfg, clock

    def update(self, job: NeuronJob) -> Generator:
        """The batch's updates; returns the cycles they took."""
        if job.vectors <= 0:
            return 0
        cycles = -(-job.neurons // self.cfg.lanes) * job.vectors
        yield from self.busy_for(self.clock.cycles(cycles), f"L{job.layer}")
        updates = job.neurons * job.vectors
        self.count("neuron_updates", updates)
        self.count("membrane_read_bytes", updates * self.cfg.membrane_bytes)
        self.count("membrane_write_bytes", updates * self.cfg.membrane_bytes)
        self.count("spike_write_bytes", math.ceil(updates / 8))
        return cycles


class SnnAccelerator(Module):
    """The top: plays the jobs in order on the array and the neuron unit, and adds up the
    cycles they take (`cycles`)."""

    def __init__(self, name: str, parent: Module | Simulator, cfg: SnnArrayConfig) -> None:
        super().__init__(name, parent)
        self.cfg = cfg
        clock = Clock.from_mhz(cfg.clock_mhz, f"{name}.clk")
        self.clock = clock
        self.array = SystolicArray("array", self, cfg, clock)
        self.neurons = NeuronUnit("neurons", self, cfg, clock)
        self.cycles = 0

    def play(self, jobs: Sequence[FoldJob | NeuronJob]) -> Generator:
        for job in jobs:
            if isinstance(job, FoldJob):
                self.cycles += yield from self.array.fold(job)
            else:
                self.cycles += yield from self.neurons.update(job)


@dataclass(frozen=True)
class SnnEnergyTable:
    """pJ per action at `technology` (Horowitz's 45 nm figures scaled by `node_scale`); a
    global-buffer byte at the size of one of its `buffer_banks`, the access's bank."""

    technology: str = "28nm"
    buffer_kib: int = 512
    psum_buffer_kib: int = 32
    membrane_buffer_kib: int = 8
    buffer_banks: int = 16

    @classmethod
    def of(cls, cfg: SnnArrayConfig) -> SnnEnergyTable:
        """The table of a design: its node and its buffers' sizes and banks."""
        return cls(cfg.technology, cfg.buffer_kib, cfg.psum_buffer_kib,
                   cfg.membrane_buffer_kib, cfg.buffer_banks)

    def energy_pj(self, actions: Counter[str]) -> dict[str, float]:
        table = EnergyTable(self.technology)
        add = ADD32_PJ_45NM * node_scale(self.technology)
        glb = table.sram_pj_per_byte(self.buffer_kib * 1024 // self.buffer_banks)
        acc = table.sram_pj_per_byte(self.psum_buffer_kib * 1024)
        mem = table.sram_pj_per_byte(self.membrane_buffer_kib * 1024)
        return {
            "pe_adds": actions["pe_adds"] * add,
            "weights": actions["weight_read_bytes"] * glb,
            "spikes": (actions["spike_read_bytes"] + actions["spike_write_bytes"]) * glb,
            "psums": (actions["psum_write_bytes"] + actions["psum_read_bytes"]) * acc,
            "neurons": actions["neuron_updates"] * 2 * add
            + (actions["membrane_read_bytes"] + actions["membrane_write_bytes"]) * mem,
        }


@dataclass
class SnnResult:
    """`cycles`: the schedule's, counted job by job (the array and the neuron unit work in
    turn); `latency_ps`: the simulated time, which off the picosecond grid (1,200 MHz) rounds
    each wait up to the picosecond (`desim.clock`). Cycles had been that time over the period,
    the roundings counted as cycles: 849,283 for the baseline's 849,280."""

    latency_ps: int
    cycles: int
    actions: Counter[str]
    energy_pj: dict[str, float]

    @property
    def total_pj(self) -> float:
        return sum(self.energy_pj.values())


def simulate(jobs: Sequence[FoldJob | NeuronJob], cfg: SnnArrayConfig) -> SnnResult:
    """Play `jobs` on a fresh simulator; count and price the actions."""
    sim = Simulator()
    top = SnnAccelerator("snn", sim, cfg)
    top.add_process(top.play, jobs)
    sim.run()
    actions = top.array.actions + top.neurons.actions
    return SnnResult(sim.now_ps, top.cycles, Counter(actions),
                     SnnEnergyTable.of(cfg).energy_pj(actions))
