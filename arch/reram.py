"""ReRAM crossbar arrays with per-slice ADC resolution (bit-slice sparsity).

A weight-stationary in-situ array after ISAAC (A. Shafiee et al., "ISAAC: A Convolutional
Neural Network Accelerator with In-Situ Analog Arithmetic in Crossbars", ISCA 2016): every
layer's weights are resident on their own crossbars of `rows x cols` cells of `cell_bits`
bits; inputs are driven one bit-plane per read through 1-bit DACs; each column's current is
digitized by an ADC shared by the crossbar's columns; shift-and-add units merge slices and
bit-planes. As in Zhang et al. (bit-slice L1, shared/seeds/002), each slice of a weight lives
on its own crossbar, so the ADCs of one slice position can have their own resolution.

Transaction level: one simulation event per crossbar activation batch (a crossbar reading all
the input bit-planes of all input vectors of a layer), never one per element or per read. All
crossbars of a layer work in parallel (each has its own ADCs); layers follow each other (a
layer needs every bit of its inputs). A crossbar whose slice needs 0 ADC bits (every column
always reads 0) is never activated.

Timing (assumptions, stated): a crossbar read takes `read_ns` (ISAAC: 100 ns); its columns
share `adcs_per_crossbar` SAR ADCs, a conversion of b bits takes b comparator cycles of
`sar_bit_ps`, derived from ISAAC's 8-bit ADC at 1.2 GS/s (1 / (8 x 1.2 GHz) = 104 ps a bit);
reads and conversions overlap (pipelined), so one activation lasts
`max(read, ceil(cols / adcs) * bits * sar_bit_ps)`.

Actions (counted, priced afterwards by `ReramEnergyTable`, Accelergy's way):
`adc_convert_<b>b` (conversions at b bits), `crossbar_reads`, `dac_drives` (rows driven per
read), `shift_adds` (one per conversion).

Configuration: `configs/arch/reram_bitslice.yaml` (`kind: reram_crossbar`), validated by
`ReramArch`, which builds the `ReramConfig` and `ReramEnergyTable` below and the picture's
graph (`reram_graph`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass, fields
from typing import Literal

import networkx as nx
import numpy as np
from pydantic import PositiveInt, ValidationInfo, field_validator

from arch.config import Price
from desim.clock import PS_PER_NS
from desim.configio import Strict
from desim.module import Module, Simulator

# ISAAC, Table 1 (32 nm), as encoded in Accelergy's hwcomponents library (isaac.py):
# - ADC: 8 per IMA, 8 bits, 1.2 GS/s, 16 mW for the 8: 16 mW / (8 x 1.2e9 /s) = 1.667 pJ a
#   conversion (the ADC is Kull et al., ISSCC 2013, 8-bit 1.2 GS/s SAR in 32 nm SOI).
# - DAC: 1-bit, 8 x 128 per IMA, 4 mW: 0.417 pJ a row driven per read (Accelergy's derivation).
# - shift-and-add: 0.2 mW per unit at the ADC rate: 0.021 pJ an operation.
# - crossbar: 8 arrays of 128 x 128 per IMA at 2.4 mW, a 100 ns read: 2.4 mW / 8 x 100 ns =
#   30 pJ an array read (ISAAC Table 1; this one figure not cross-checked against Accelergy;
#   written mW / arrays x ns so that it is 30.0 exactly, as the YAML file writes it).
ISAAC_ADC_8BIT_PJ = 16e-3 / (8 * 1.2e9) * 1e12
ISAAC_ADC_BITS = 8
ISAAC_DAC_PJ_PER_ROW = 0.41667
ISAAC_SHIFT_ADD_PJ = 0.021
ISAAC_CROSSBAR_READ_PJ = 2.4 / 8 * 100
ISAAC_READ_NS = 100
ISAAC_SAR_BIT_PS = round(1e12 / (ISAAC_ADC_BITS * 1.2e9))  # 104 ps


@dataclass(frozen=True)
class ReramConfig:
    """Crossbar geometry and data widths. Defaults: ISAAC's 128 x 128 arrays of 2-bit cells,
    8-bit weights (4 slices), 8-bit inputs fed bit-serially, one ADC per crossbar."""

    rows: int = 128
    cols: int = 128
    cell_bits: int = 2
    weight_bits: int = 8
    input_bits: int = 8
    adcs_per_crossbar: int = 1
    read_ns: int = ISAAC_READ_NS
    sar_bit_ps: int = ISAAC_SAR_BIT_PS

    def __post_init__(self) -> None:
        if self.weight_bits % self.cell_bits:
            raise ValueError(f"weight_bits {self.weight_bits} is not a multiple of cell_bits "
                             f"{self.cell_bits}")
        if min(self.rows, self.cols, self.cell_bits, self.input_bits,
               self.adcs_per_crossbar) < 1:
            raise ValueError("rows, cols, cell_bits, input_bits and adcs_per_crossbar must "
                             "be >= 1")

    @property
    def slices(self) -> int:
        return self.weight_bits // self.cell_bits

    @property
    def full_range_bits(self) -> int:
        """ADC bits that read any column exactly whatever the weights: the sum of `rows`
        cells at their largest value, ceil(log2(rows * (2^cell_bits - 1) + 1)) (9 for
        ISAAC's 128 rows of 2-bit cells; ISAAC saves one with its weight-flipping encoding,
        not modelled)."""
        return math.ceil(math.log2(self.rows * (2 ** self.cell_bits - 1) + 1))


@dataclass(frozen=True)
class ReramEnergyTable:
    """pJ per action (ISAAC's 32 nm figures above; not scaled to another node). ADC energy
    per conversion scales as 2^bits from ISAAC's 8-bit point: the Walden figure of merit
    (energy = FOM x 2^ENOB, R. H. Walden, IEEE JSAC 1999), the trend of low-resolution SAR
    ADCs in B. Murmann's ADC survey and the `pow_base(2)` resolution scaling Accelergy
    applies to this ADC. A 0-bit ADC (a column that always reads 0) costs nothing."""

    adc_8bit_pj: float = ISAAC_ADC_8BIT_PJ
    dac_pj_per_row: float = ISAAC_DAC_PJ_PER_ROW
    shift_add_pj: float = ISAAC_SHIFT_ADD_PJ
    crossbar_read_pj: float = ISAAC_CROSSBAR_READ_PJ

    def adc_pj(self, bits: int) -> float:
        return 0.0 if bits <= 0 else self.adc_8bit_pj * 2.0 ** (bits - ISAAC_ADC_BITS)

    def energy_pj(self, actions: Counter[str]) -> dict[str, float]:
        """Energy per component from action counts: adc, dac, crossbar, shift_add."""
        out = {"adc": 0.0, "dac": actions["dac_drives"] * self.dac_pj_per_row,
               "crossbar": actions["crossbar_reads"] * self.crossbar_read_pj,
               "shift_add": actions["shift_adds"] * self.shift_add_pj}
        for action, n in actions.items():
            if action.startswith("adc_convert_"):
                out["adc"] += n * self.adc_pj(int(action.removeprefix("adc_convert_")[:-1]))
        return out


class ReramEnergySpec(Strict):
    """The `energy:` section: `ReramEnergyTable`'s figures, pJ (defaults: ISAAC's). Each is
    a `Price`, as the training processors' own prices: finite, >= 0 and at most
    `MAX_PRICE_PJ` (a price of 10^300 would make the study's energies infinite)."""

    adc_8bit_pj: Price = ReramEnergyTable.adc_8bit_pj
    dac_pj_per_row: Price = ReramEnergyTable.dac_pj_per_row
    shift_add_pj: Price = ReramEnergyTable.shift_add_pj
    crossbar_read_pj: Price = ReramEnergyTable.crossbar_read_pj


class ReramArch(Strict):
    """`kind: reram_crossbar` architecture files: `ReramConfig`'s fields by the same names
    (defaults: its defaults) and an `energy:` section. `config()` and `energy_table()` build
    the dataclasses, whose checks stand; the impossible values are also caught here so that
    the error names the key."""

    kind: Literal["reram_crossbar"]
    name: str
    rows: PositiveInt = ReramConfig.rows
    cols: PositiveInt = ReramConfig.cols
    cell_bits: PositiveInt = ReramConfig.cell_bits
    weight_bits: PositiveInt = ReramConfig.weight_bits
    input_bits: PositiveInt = ReramConfig.input_bits
    adcs_per_crossbar: PositiveInt = ReramConfig.adcs_per_crossbar
    read_ns: PositiveInt = ReramConfig.read_ns
    sar_bit_ps: PositiveInt = ReramConfig.sar_bit_ps
    energy: ReramEnergySpec = ReramEnergySpec()

    @field_validator("weight_bits")
    @classmethod
    def _whole_slices(cls, v: int, info: ValidationInfo) -> int:
        cell = info.data.get("cell_bits")
        if cell and v % cell:
            raise ValueError(f"weight_bits {v} is not a multiple of cell_bits {cell}: a "
                             "weight must fill whole slices")
        return v

    @field_validator("adcs_per_crossbar")
    @classmethod
    def _adcs_have_columns(cls, v: int, info: ValidationInfo) -> int:
        cols = info.data.get("cols")
        if cols and v > cols:
            raise ValueError(f"{v} ADCs for {cols} columns: at most one ADC a column")
        return v

    def config(self) -> ReramConfig:
        return ReramConfig(**{f.name: getattr(self, f.name) for f in fields(ReramConfig)})

    def energy_table(self) -> ReramEnergyTable:
        return ReramEnergyTable(**self.energy.model_dump())

    def graph(self) -> nx.DiGraph:
        return reram_graph(self.config(), self.name)


def reram_graph(cfg: ReramConfig, name: str = "reram") -> nx.DiGraph:
    """The datapath as a graph for `desim topology`: input buffer -> 1-bit DACs -> one
    crossbar node per weight slice (each standing for its crossbars, both polarities and
    every row and column group) -> that slice's ADCs -> shift-and-add -> output buffer.
    Nodes carry `kind` (the picture's colour) and `pos` (left to right, MSB slice on top)."""
    g = nx.DiGraph(topology=f"{name}: {cfg.slices} slices of {cfg.cell_bits} bits on "
                            f"{cfg.rows}x{cfg.cols} crossbars")
    mid = (cfg.slices - 1) / 2
    g.add_node("input_buffer", kind="sram", pos=(0.0, mid), bits=cfg.input_bits)
    g.add_node("dacs", kind="dac", pos=(1.0, mid), rows=cfg.rows, bits=1)
    g.add_node("shift_add", kind="shift_add", pos=(4.0, mid))
    g.add_node("output_buffer", kind="sram", pos=(5.0, mid))
    g.add_edge("input_buffer", "dacs")
    for s in range(cfg.slices):
        role = " MSB" if s == cfg.slices - 1 else " LSB" if s == 0 else ""
        xbar, adc = f"xbar_s{s}{role}", f"adc_s{s}"
        g.add_node(xbar, kind="crossbar", pos=(2.0, float(s)), slice=s, rows=cfg.rows,
                   cols=cfg.cols, cell_bits=cfg.cell_bits)
        g.add_node(adc, kind="adc", pos=(3.0, float(s)), slice=s,
                   adcs_per_crossbar=cfg.adcs_per_crossbar)
        g.add_edge("dacs", xbar)
        g.add_edge(xbar, adc)
        g.add_edge(adc, "shift_add")
    g.add_edge("shift_add", "output_buffer")
    return g


@dataclass(frozen=True)
class CrossbarJob:
    """One crossbar's work for one layer: `activations` reads (input vectors x input bits),
    `rows_used` rows driven, `cols_used` columns converted at `adc_bits` each."""

    layer: int
    slice: int
    rows_used: int
    cols_used: int
    activations: int
    adc_bits: int


def crossbar_jobs(layer: int, in_features: int, out_features: int, vectors: int,
                  bits: Sequence[int] | np.ndarray, cfg: ReramConfig) -> list[CrossbarJob]:
    """The crossbars of one (K x C) layer and their work for `vectors` input vectors: for
    every slice, both polarities, every row group of `rows` inputs and column group of `cols`
    outputs, one crossbar. `bits` is the ADC resolution per slice (S values), or per crossbar
    (an array of shape (S, 2, row groups, column groups), for ADCs sized crossbar by crossbar).
    """
    groups = (-(-in_features // cfg.rows), -(-out_features // cfg.cols))
    b = np.asarray(bits, dtype=np.int64)
    if b.shape == (cfg.slices,):
        b = np.broadcast_to(b.reshape(-1, 1, 1, 1), (cfg.slices, 2, *groups))
    if b.shape != (cfg.slices, 2, *groups):
        raise ValueError(f"ADC bits of shape {b.shape}: expected ({cfg.slices},) or "
                         f"{(cfg.slices, 2, *groups)}")
    jobs = []
    for s, p, g, j in np.ndindex(b.shape):
        jobs.append(CrossbarJob(layer, s, min(cfg.rows, in_features - g * cfg.rows),
                                min(cfg.cols, out_features - j * cfg.cols),
                                vectors * cfg.input_bits, int(b[s, p, g, j])))
    return jobs


class Crossbar(Module):
    """The crossbars of the array, as one module counting all their actions; each job runs
    as its own process (the crossbars work in parallel)."""

    def __init__(self, name: str, parent: Module, cfg: ReramConfig) -> None:
        super().__init__(name, parent)
        self.cfg = cfg

    def activation_ps(self, cols_used: int, adc_bits: int) -> int:
        conversions = -(-cols_used // self.cfg.adcs_per_crossbar)
        return max(self.cfg.read_ns * PS_PER_NS, conversions * adc_bits * self.cfg.sar_bit_ps)

    def job_ps(self, job: CrossbarJob) -> int:
        if job.adc_bits <= 0 or job.activations <= 0:
            return 0
        return job.activations * self.activation_ps(job.cols_used, job.adc_bits)

    def run(self, job: CrossbarJob) -> Generator:
        """One crossbar activation batch: one event for all its reads."""
        if job.adc_bits <= 0:
            return
        start = int(self.env.now)
        yield self.env.timeout(self.job_ps(job))
        self.traced(f"L{job.layer}.s{job.slice}", start, int(self.env.now), track=f"s{job.slice}")
        self.count("crossbar_reads", job.activations)
        self.count("dac_drives", job.activations * job.rows_used)
        self.count(f"adc_convert_{job.adc_bits}b", job.activations * job.cols_used)
        self.count("shift_adds", job.activations * job.cols_used)


class CrossbarArray(Module):
    """The top: runs the layers in order, the crossbars of a layer in parallel."""

    def __init__(self, name: str, parent: Module | Simulator, cfg: ReramConfig) -> None:
        super().__init__(name, parent)
        self.cfg = cfg
        self.xbars = Crossbar("xbars", self, cfg)
        self.layer_ps: list[int] = []

    def run_layers(self, layers: Sequence[Sequence[CrossbarJob]]) -> Generator:
        for jobs in layers:
            start = int(self.env.now)
            procs = [self.env.process(self.xbars.run(j)) for j in jobs if j.adc_bits > 0]
            if procs:
                yield self.env.all_of(procs)
            self.layer_ps.append(int(self.env.now) - start)
            self.busy_ps += self.layer_ps[-1]


@dataclass
class ReramResult:
    latency_ps: int
    layer_ps: list[int]
    actions: Counter[str]
    energy_pj: dict[str, float]

    @property
    def total_pj(self) -> float:
        return sum(self.energy_pj.values())


def simulate(layers: Sequence[Sequence[CrossbarJob]], cfg: ReramConfig,
             table: ReramEnergyTable | None = None) -> ReramResult:
    """Simulate the jobs (grouped by layer) on a fresh simulator; price the actions."""
    sim = Simulator()
    top = CrossbarArray("reram", sim, cfg)
    top.add_process(top.run_layers, layers)
    sim.run()
    actions = top.xbars.actions
    return ReramResult(sim.now_ps, top.layer_ps, Counter(actions),
                       (table or ReramEnergyTable()).energy_pj(actions))
