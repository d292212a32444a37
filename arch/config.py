"""The architecture YAML, validated: what an architect writes to describe a processor.

Each section is one component; the NoC section is `arch.noc.NocSpec`. A PE cluster sits at
every router of the NoC; the global buffer attaches to `global_buffer_router`, and DRAM feeds
the global buffer. See configs/arch/*.yaml for commented examples.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

from arch.energy import ELEMENT_BYTES, NODES, SIGN_EXPONENT_BITS
from arch.noc import NocEdge, NocSpec
from arch.systolic import SystolicConfig
from desim.configio import Strict

Precision = Literal["fp32", "fp16", "fp8", "int8", "int32", "ternary"]
VectorPrecision = Literal["fp32", "fp16", "fp8", "int8", "int32"]  # a ternary code is a weight's
FLOAT_PRECISIONS = tuple(SIGN_EXPONENT_BITS)  # with an exponent to speculate on
MIN_CLOCK_MHZ = 1  # a processor clocked slower is a clock written in GHz, not a design
MAX_CLOCK_MHZ = 1_000_000  # a period of a picosecond, the simulation's grain (desim/clock.py)
# A supply the C V^2 rule is meant for: from near-threshold operation (chips quote their
# peak efficiency down there, ~0.5 V) to an overdrive of half the nominal again
MIN_SUPPLY_V = 0.3
MAX_SUPPLY_OVER_NOMINAL = 1.5


class DramConfig(Strict):
    preset: Literal["DDR4-2400", "LPDDR4-3200", "HBM2"]
    # default: the preset's. At most 4096: each channel is a controller of its own, built
    # and simulated (a channel count of 2^24, a power of two as the mapping asks, hung the
    # run building them, then ran it out of memory)
    channels: int | None = Field(None, gt=0, le=4096)
    # Power-down when idle (arch/dram.py): "active" (rows open, IDD3P) or "precharge" (rows
    # closed first, IDD2P) instead of IDD3N, tXP to wake up. Off by default, as in gem5
    # (`enable_dram_powerdown`): it saves standby energy and costs time. The timer is the
    # controller's, in DRAM clock cycles of an empty queue.
    power_down: Literal["off", "active", "precharge"] = "off"
    power_down_idle_cycles: int = Field(0, ge=0)

    @field_validator("channels")
    @classmethod
    def _channels_pow2(cls, value: int | None) -> int | None:
        """The address mapping takes the channel from bits of the address (arch/dram.py)."""
        if value is not None and value & (value - 1):
            raise ValueError("must be a power of two (1, 2, 4, ...): the address mapping "
                             "picks a channel by address bits")
        return value

    @field_validator("power_down", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        """YAML reads a bare `off` (or `no`, `false`) as False: that means "off"."""
        if value is False:
            return "off"
        if value is True:
            raise ValueError("say which: active (rows kept open) or precharge (rows closed)")
        return value

    @model_validator(mode="after")
    def _idle_cycles_need_power_down(self) -> DramConfig:
        """A timer for a power-down that is off would be ignored without a word (0, the
        default, which a resolved configuration writes out, is no timer)."""
        if self.power_down_idle_cycles and self.power_down == "off":
            raise ValueError("power_down_idle_cycles: power_down is off, so no timer runs; "
                             "set power_down to active or precharge, or leave this out")
        return self


class BufferConfig(Strict):
    capacity_kib: PositiveInt
    banks: PositiveInt
    bank_width_bytes: PositiveInt
    latency_cycles: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _banks_fit(self) -> BufferConfig:
        """Each bank holds at least one row of its width: else a bank is a fraction of a byte
        (priced by that size) and the buffer moves more bytes a cycle than it holds."""
        row = self.banks * self.bank_width_bytes
        if row > self.capacity_kib * 1024:
            raise ValueError(f"banks: {self.banks} banks of {self.bank_width_bytes} bytes "
                             f"({row} bytes a row) do not fit in capacity_kib "
                             f"{self.capacity_kib} ({self.capacity_kib * 1024} bytes)")
        return self


class PeClusterConfig(Strict):
    pes: PositiveInt
    macs_per_pe_per_cycle: PositiveInt = 1
    precision: Precision = "fp16"
    # The adders' and partial sums' precision: what a MAC accumulates into, and the width of
    # the partial sums that leave the PEs between chunks of a split reduction. None: the
    # datapath's. Mixed-precision training accumulates FP16 (or FP8) products in FP32
    # (Micikevicius et al., "Mixed Precision Training", ICLR 2018).
    accumulator: Precision | None = None
    local_buffer_kib: PositiveInt = 16
    pipeline_cycles: int = Field(4, ge=0)  # fill and drain of a PE's datapath, per tile
    # The PEs as one rows x cols systolic array (SCALE-Sim's model, arch/systolic.py): a
    # layer-phase computes for SCALE-Sim's cycles of its GEMM view, fill and drain included,
    # instead of its busiest PE's. None: the busiest-PE model.
    systolic: SystolicConfig | None = None

    @property
    def accumulates_in(self) -> str:
        """The accumulator's precision, resolved: `accumulator`, or else the datapath's."""
        return self.accumulator or self.precision


class SelectorConfig(Strict):
    """HPPU's active data selector: scans non-zero maps, `entries_per_cycle` at a time.
    Level 1 scans the channel operand's map (active channels and lines); level 2 also the
    streamed operand's non-zero map (activations in FF, gradients in BP), which pairs the
    two operands' non-zeros (`ArchConfig._pairs_what_it_skips`)."""

    entries_per_cycle: PositiveInt
    levels: Literal[1, 2] = 2


class WeightGeneratorConfig(Strict):
    """Procrustes' weight regeneration: untracked weights (DropBack's initial values) are
    recomputed from their PRNG seed beside the global buffer instead of read from DRAM."""

    values_per_cycle: PositiveInt


class SpeculatorConfig(Strict):
    """Trainer's ReLU speculation (mappings/speculation.py): an exponent-only pass predicts
    which FF outputs the following ReLU zeroes; the PEs compute only the others. The pass
    sits between the NoC and the PEs as a pipeline stage, `ops_per_cycle` sign-and-exponent
    products a cycle over the whole array."""

    ops_per_cycle: PositiveInt
    # What a batch norm between a speculated layer and its ReLU reads in BP. `written`: the
    # outputs the layer wrote, those predicted non-zero (the others were never computed), as
    # in FF. Not exact training: exact BN's dX needs x-hat at every position, dX being
    # non-zero where the ReLU gave zero. `every`: every output, as exact training reads it
    # (a bracket: what the outputs never computed would cost to read back, not to compute).
    norm_backward_reads: Literal["written", "every"] = "written"


class IndexMatchingConfig(Strict):
    """The PEs' index matching, for a design that skips the zeros of both operands of a MAC
    without a selector to pair them: each PE ANDs the two operands' bitmaps over an output's
    reduction, `bits_per_cycle` pairs a cycle (SparTen, Gondimalla et al., MICRO 2019: 128),
    and a priority encoder with prefix sums takes each matched pair's values to the MAC.
    A tile's PEs take no less than their share of its pairs at that rate. None (no
    section): pairing is free and takes no time, which flatters such a design."""

    bits_per_cycle: PositiveInt


def _phases(flag: bool | list[str], every: tuple[str, ...]) -> tuple[str, ...]:
    return (every if flag else ()) if isinstance(flag, bool) else tuple(
        p for p in every if p in flag)


class SparsityConfig(Strict):
    """Which zeros the datapath skips, and how operands are stored."""

    skip_zero_weights: bool = False
    # Zero activations X (in FF and WG) and output gradients dY (in BP and WG): true, false,
    # or the phases a datapath skips them in (Procrustes: X in WG only, `[WG]`).
    skip_zero_activations: bool | list[Literal["FF", "WG"]] = False
    skip_zero_gradients: bool | list[Literal["BP", "WG"]] = False
    skip_pruned_weight_gradients: bool = False
    channel_compaction: bool = False
    # BP computes dX only where the layer's input X is non-zero: where X is zero the ReLU that
    # produced it zeroes that gradient anyway (Trainer's speculation, the part that is exact).
    # Valid when every layer's input comes from a ReLU, directly or through pooling.
    skip_relu_masked_gradients: bool = False
    weight_format: Literal["dense", "bitmap", "line_bitmap", "csr", "csc", "coo", "rle",
                           "values_only"] = "dense"
    activation_format: Literal["dense", "bitmap", "csr", "csc", "coo", "rle"] = "dense"
    # Bits a stored weight value takes in DRAM, the buffers and the NoC (2: ternary codes,
    # Yang et al., AAAI 2020). None: the datapath precision's element width. Gradients and
    # activations keep the element width.
    weight_bits: PositiveInt | None = Field(None, le=32)  # at most fp32's (a master copy)
    # The weights' "line" (line_bitmap's line, csr's row, csc's columns): None, a kernel
    # row (1 x S, HPPU's line), and for csr and csc a row of the weight matrix (an output
    # channel's C*R*S weights in FF); n, every run of n consecutive weights of such a row: the
    # group of PE-wise pruning when n = pe_cols (a short last run is stored whole); n at
    # least C*R*S, the whole row (csr then has a pointer per output channel).
    weight_group: PositiveInt | None = None
    # CirCNN (Ding et al., MICRO 2017): layers the run prunes block-circulant (method
    # block_circulant, block b) keep each b x b block's first row only (b-fold fewer weight
    # bytes) and multiply in the FFT domain: their MACs become the closed-form effective
    # MACs of `mappings.circulant`. No effect on other layers or other pruning methods.
    circulant_fft: bool = False

    @field_validator("skip_zero_activations", "skip_zero_gradients", mode="before")
    @classmethod
    def _true_false_or_phases(cls, value: object, info: ValidationInfo) -> object:
        """Said here, whole: pydantic would name the list's items alone."""
        phases = ("FF", "WG") if info.field_name == "skip_zero_activations" else ("BP", "WG")
        if isinstance(value, list) and sorted(value) == list(phases):
            return True  # every phase: the same design as `true` (compare, sweeps)
        if isinstance(value, bool) or (isinstance(value, list) and value and all(
                v in phases for v in value) and len(set(value)) == len(value)):
            return value
        raise ValueError(f"expected true, false, or a non-empty list of the phases to skip "
                         f"them in ({' and '.join(phases)}, distinct)")

    @property
    def activation_phases(self) -> tuple[str, ...]:
        """The phases zero activations are skipped in."""
        return _phases(self.skip_zero_activations, ("FF", "WG"))

    @property
    def gradient_phases(self) -> tuple[str, ...]:
        """The phases zero output gradients are skipped in."""
        return _phases(self.skip_zero_gradients, ("BP", "WG"))

    @property
    def two_sided_phases(self) -> tuple[str, ...]:
        """The phases whose MACs are skipped on the zeros of both their operands (FF: W and
        X, BP: W and dY, WG: X and dY): where index matching has pairs to find."""
        w, x, dy = self.skip_zero_weights, self.activation_phases, self.gradient_phases
        return tuple(phase for phase, on in (("FF", w and "FF" in x), ("BP", w and "BP" in dy),
                                             ("WG", "WG" in x and "WG" in dy)) if on)


class VectorUnitConfig(Strict):
    """Element-wise work of training: batch norm, activations, pooling, residual sums,
    softmax (mappings/vector.py)."""

    lanes: PositiveInt = 64          # vector operations a cycle
    # The datapath of its operations (a BN's multiply-add, a pooling compare, a residual
    # add), priced as a multiply and an add at this precision (arch/energy.py). None: the
    # PE array's MAC on its activations (a ternary array's: 8-bit, into its accumulator).
    precision: VectorPrecision | None = None
    fused_relu: bool = True          # activations applied on the producing layer's output
    fused_batchnorm: bool = False    # Trainer's decoupled BN unit: one data pass a phase
    # A residual add on the output stream of the layer that writes its operand last (and a
    # fork's gradient sum on that of the branch written last): one extra read, no own pass.
    fused_residual: bool = True
    # The optimizer's step (`workload.weight_update`) on the WG's output stream: each dW
    # tile is updated as it is made, so dW neither goes to DRAM nor waits in the buffer.
    fused_update: bool = False


# The prices of components a design may lack, and the section that adds each.
OPTIONAL_COMPONENT_PRICES = {"vector_op_pj": "vector_unit", "selector_pj_per_entry": "selector",
                             "weight_generator_pj_per_value": "weight_generator",
                             "speculator_pj_per_op": "speculator",
                             "index_scan_pj_per_pair": "index_matching",
                             "index_match_pj_per_pair": "index_matching"}


# The most a design may price one action at, pJ: a microjoule, some 10^6 times a MAC's
# price. A price of 10^308 made energies infinite, then their ratios NaN, in summary.json.
MAX_PRICE_PJ = 1e6
# The most static power a design may draw, mW: a kilowatt, a whole board's worth; more (a
# typo in W for mW) would only overflow the energies
MAX_STATIC_POWER_MW = 1e6
Price = Annotated[float, Field(ge=0, le=MAX_PRICE_PJ)]


class EnergyConfig(Strict):
    """The design's own prices, pJ per action at its technology node, in place of the energy
    table's (arch/energy.py) where given: an architect's own characterization of a block, or
    a what-if (a NoC at half the price, a free one). Accelergy's energy reference table for
    the components this design has. DRAM is priced from its IDD currents (`dram.preset`)."""

    mac_pj: Price | None = None                 # one MAC of the PE datapath
    vector_op_pj: Price | None = None           # one vector-unit op (table: a MAC
                                                # on the activations, or at
                                                # vector_unit.precision)
    global_buffer_pj_per_byte: Price | None = None  # read or written
    local_buffer_pj_per_byte: Price | None = None   # a cluster's, read or written
    noc_pj_per_bit_hop: Price | None = None     # one bit over a link between routers and
                                                # the router it enters (from a port into
                                                # the mesh: that router, 3/4 of it)
    selector_pj_per_entry: Price | None = None  # one non-zero-map entry scanned
    weight_generator_pj_per_value: Price | None = None  # one weight regenerated
    speculator_pj_per_op: Price | None = None   # one exponent-only product
    index_scan_pj_per_pair: Price | None = None  # one pair's bits ANDed
    index_match_pj_per_pair: Price | None = None  # one matched pair encoded
    # one partial sum added at the global buffer (mapping.partition: reduction; table: an
    # add at the accumulator's precision)
    psum_add_pj: Price | None = None

    def given(self) -> dict[str, float]:
        """The prices this design sets, by name."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


def priced_actions(cfg: ArchConfig, prices: dict[str, float]) -> dict[str, float]:
    """`prices` less those of components `cfg` does not have, and of the partial sums' adds
    at the global buffer unless its clusters may be dealt a reduction."""
    return {k: v for k, v in prices.items()
            if (k not in OPTIONAL_COMPONENT_PRICES
                or getattr(cfg, OPTIONAL_COMPONENT_PRICES[k]) is not None)
            and (k != "psum_add_pj" or cfg.mapping.reduces_across_clusters)}


# What a tile's work may be dealt to the clusters by (`MappingConfig.partition`).
Partition = Literal["channels", "rows", "reduction", "auto"]


class MappingConfig(Strict):
    """How layers are laid onto the hardware.

    Every tile keeps its partial sums until its outputs are final (output stationary within
    the tile), unless the mapper splits the layer's reduction into chunks run one after
    the other (mappings/planner.py), when the partial sums wait in the global buffer or
    DRAM between chunks, or deals it to the clusters (`partition: reduction`), when the
    global buffer adds theirs. Across tiles, `dataflow` picks which operand stays put while
    the other streams: `weight_stationary` holds the channel operand (W in FF/BP, dY in WG)
    across the inner loop, `input_stationary` holds the stream operand (X in FF and WG, dY in
    BP), and `auto` chooses per layer and phase whichever `objective` prefers, on the
    operands' current sparsity (Trainer's sparsity-adaptive dataflow does this per layer).
    """

    dataflow: Literal["auto", "weight_stationary", "input_stationary"] = "auto"
    # How a tile's work is dealt to the clusters (mappings/tiling.py): `channels`, its
    # output channels (the channel operand, FF's weights, sent to one cluster each, the
    # stream operand, FF's input rows, multicast to all); `rows`, its output rows (each
    # cluster its rows' inputs with their halo, the channel operand multicast to all);
    # `reduction`, its reduction (FF's input channels, BP's output channels, WG's images:
    # each cluster its slice of both operands, unicast, for every output of the tile; the
    # partial sums gathered and added at the global buffer, `psum_add_pj` each); `auto`,
    # channels or rows, whichever `objective` prefers per layer and phase (the operand
    # multicast: Trainer's adaptive dataflow); or a list of them to choose from likewise.
    partition: Partition | list[Partition] = "channels"
    # Spread each tile's work evenly over its active PEs (true: ideal balancing, the bound
    # that Procrustes' load balancing of unstructured sparse work approaches); or over its
    # active clusters only (`clusters`: each PE slot's work evened across the clusters, as
    # a balancer of the channels' weight sparsity would, dealt by channels; the PEs of a
    # cluster still take their own outputs, whose activations differ). Off: a PE does the
    # outputs dealt to it and the tile lasts as long as the busiest PE.
    load_balance: bool | Literal["clusters"] = False
    # What the mapper minimises when it picks a phase's tile shape and loop order, and the
    # way to split its reduction (whole, or chunks with partial sums kept on chip or spilled
    # to DRAM): energy x delay (`edp`, Timeloop's usual metric), `delay`, or `energy`.
    objective: Literal["edp", "delay", "energy"] = "edp"
    # Inter-layer reuse: a layer-phase's output stays in the global buffer for the phase that
    # reads it next (FF: the next layer's X; BP: the next layer's dY), when the mapper's
    # estimate says keeping it pays for the smaller tiles it leaves the phases around it
    # (mappings/mapper.py, `keep_output_on_chip`). It is still written to DRAM, since BP
    # and WG read it later, except in an inference when nothing else reads it. Off: every
    # phase reads its input from DRAM (a per-layer simulator's view, SCALE-Sim's among them).
    inter_layer_reuse: bool = False

    @field_validator("partition", mode="before")
    @classmethod
    def _a_partition_or_a_list_of_them(cls, value: object) -> object:
        """Said here, whole: pydantic would name the single values alone, not the list."""
        known = get_args(Partition)
        if isinstance(value, str) and value in known:
            return value
        if (isinstance(value, list) and value and all(v in known for v in value)
                and len(set(value)) == len(value)):
            return value
        raise ValueError(f"expected one of {', '.join(known)}, or a list of distinct ones to "
                         "choose from")

    @property
    def partitions(self) -> tuple[str, ...]:
        """The partitions the mapper chooses from (`auto`: channels and rows)."""
        choices = self.partition if isinstance(self.partition, list) else [self.partition]
        return tuple(dict.fromkeys(p for c in choices
                                   for p in (("channels", "rows") if c == "auto" else (c,))))

    @property
    def reduces_across_clusters(self) -> bool:
        """Whether a tile's reduction may be dealt to the clusters, its partial sums then
        added at the global buffer (priced `energy.psum_add_pj`)."""
        return "reduction" in self.partitions

    @field_validator("load_balance", mode="before")
    @classmethod
    def _balance_is_a_choice(cls, value: object) -> object:
        """Exactly true, false or clusters: 1 or "yes" read as a balancer would be a guess."""
        if isinstance(value, bool) or value == "clusters":
            return value
        raise ValueError("expected true (ideal: every PE), clusters (the clusters evened) "
                         "or false")


class ArchConfig(Strict):
    name: str  # the results' `arch` column and the report's: not empty (`_named`)
    technology: Literal["45nm", "28nm"] = "45nm"
    # a period of 1 ps or more; 1 MHz or more (`_clock_in_mhz`: a clock in GHz, caught)
    core_clock_mhz: float = Field(1000.0, gt=0, le=MAX_CLOCK_MHZ)
    # the logic's and SRAMs' supply (V); default: the node's nominal (arch/energy.py NODES).
    # Every on-chip price scales by (V / nominal)^2; the clock stays `core_clock_mhz`
    supply_voltage_v: float | None = Field(None, gt=0)
    # The chip's static power (mW, at its supply): its SRAMs' and logic's leakage, and what
    # else it draws whatever it does, for the whole run (energy component `static`). An
    # architect's own figure: no table here gives one (Horowitz's are dynamic energies, the
    # papers' abstracts give none). None: not modelled, as in every shipped design. The
    # mapper's estimate counts it too, so a plan that ends sooner saves it.
    static_power_mw: float | None = Field(None, ge=0, le=MAX_STATIC_POWER_MW)
    dram: DramConfig
    global_buffer: BufferConfig
    noc: NocSpec
    global_buffer_router: str
    pe_cluster: PeClusterConfig
    selector: SelectorConfig | None = None
    weight_generator: WeightGeneratorConfig | None = None  # None: every weight from DRAM
    speculator: SpeculatorConfig | None = None  # None: every FF output computed
    index_matching: IndexMatchingConfig | None = None  # None: pairing non-zeros is free
    sparsity: SparsityConfig = SparsityConfig()
    mapping: MappingConfig = MappingConfig()
    vector_unit: VectorUnitConfig | None = None  # None: vector layers are not simulated
    energy: EnergyConfig = EnergyConfig()  # the design's own prices; unset: the table's

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        """An empty name left the results' `arch` column blank."""
        if not value.strip():
            raise ValueError("expected a name for the design (the results' arch column), "
                             "not an empty one")
        return value

    @model_validator(mode="after")
    def _accumulator_like_the_datapath(self) -> ArchConfig:
        pe = self.pe_cluster
        if pe.accumulator is not None and ((pe.accumulator in FLOAT_PRECISIONS)
                                           != (pe.precision in FLOAT_PRECISIONS)):
            raise ValueError(f"pe_cluster.accumulator: {pe.accumulator!r} does not go with "
                             f"a {pe.precision!r} datapath (floating-point products need a "
                             f"floating-point accumulator, integer ones an integer one)")
        if pe.accumulator == "ternary":
            raise ValueError("pe_cluster.accumulator: a ternary code {-1, 0, +1} holds no sum; "
                             "expected an integer accumulator (int8, int32)")
        if pe.accumulator is not None and (ELEMENT_BYTES[pe.accumulator]
                                           < ELEMENT_BYTES[pe.precision]):
            raise ValueError(f"pe_cluster.accumulator: {pe.accumulator!r} is narrower than "
                             f"the {pe.precision!r} products it would add up; expected "
                             f"one at least as wide (or none: the datapath's)")
        return self

    @model_validator(mode="after")
    def _prices_of_present_components(self) -> ArchConfig:
        for key, component in OPTIONAL_COMPONENT_PRICES.items():
            if getattr(self.energy, key) is not None and getattr(self, component) is None:
                raise ValueError(f"energy.{key}: this design has no {component} section, so "
                                 f"nothing would be priced at it")
        if self.energy.psum_add_pj is not None and not self.mapping.reduces_across_clusters:
            raise ValueError("energy.psum_add_pj: this design's clusters are never dealt a "
                             "reduction (mapping.partition), so no partial sums are added "
                             "at its global buffer")
        return self

    @model_validator(mode="after")
    def _supply_in_range(self) -> ArchConfig:
        v, nominal = self.supply_voltage_v, NODES[self.technology][1]
        if v is not None and not MIN_SUPPLY_V <= v <= MAX_SUPPLY_OVER_NOMINAL * nominal:
            raise ValueError(f"supply_voltage_v: {v:g} V; expected {MIN_SUPPLY_V} to "
                             f"{MAX_SUPPLY_OVER_NOMINAL * nominal:g} V at {self.technology} "
                             f"(nominal {nominal:g} V)")
        return self

    @model_validator(mode="after")
    def _clock_in_mhz(self) -> ArchConfig:
        if self.core_clock_mhz < MIN_CLOCK_MHZ:  # 0.8 written for 0.8 GHz
            raise ValueError(f"core_clock_mhz: {self.core_clock_mhz:g} MHz; the clock is in "
                             f"MHz ({self.core_clock_mhz:g} GHz is "
                             f"{self.core_clock_mhz * 1000:g}); expected at least "
                             f"{MIN_CLOCK_MHZ} MHz")
        return self

    @model_validator(mode="after")
    def _links_move_bytes(self) -> ArchConfig:
        own = [(f"noc.edges.{i}.bandwidth_bytes_per_cycle", edge.bandwidth_bytes_per_cycle)
               for i, edge in enumerate(self.noc.edges or [])
               if isinstance(edge, NocEdge) and edge.bandwidth_bytes_per_cycle is not None]
        for key, width in [("noc.link_bandwidth_bytes_per_cycle",
                            self.noc.link_bandwidth_bytes_per_cycle), *own]:
            if width * self.core_clock_mhz * 1e6 < 1:
                raise ValueError(f"{key}: {width} bytes a cycle at {self.core_clock_mhz} MHz "
                                 "is less than a byte a second")
        return self

    @model_validator(mode="after")
    def _matching_needs_two_sided_skipping(self) -> ArchConfig:
        s = self.sparsity
        if self.index_matching is not None and not s.two_sided_phases:
            raise ValueError("index_matching: pairs the non-zeros of two operands, but this "
                             "design skips the zeros of one operand at most in every phase "
                             "(FF: W and X, BP: W and dY, WG: X and dY; sparsity."
                             "skip_zero_weights, skip_zero_activations, skip_zero_gradients)")
        return self

    @model_validator(mode="after")
    def _systolic_arrays_compute_every_mac(self) -> ArchConfig:
        """In systolic mode a layer-phase takes SCALE-Sim's cycles for its dense GEMM: a
        zero skipped would save energy and no time, a wrong answer, so it is refused; so is
        a partition other than by channels, which would move the NoC's bytes alone."""
        if self.pe_cluster.systolic is None:
            return self
        s = self.sparsity
        sparse = [f"sparsity.{key}" for key in (
            "skip_zero_weights", "skip_zero_activations", "skip_zero_gradients",
            "skip_pruned_weight_gradients", "skip_relu_masked_gradients",
            "channel_compaction") if getattr(s, key)]
        sparse += [key for key in ("selector", "speculator", "index_matching")
                   if getattr(self, key) is not None]
        sparse += ["mapping.load_balance"] if self.mapping.load_balance else []
        if self.mapping.partitions != ("channels",):
            raise ValueError(f"pe_cluster.systolic: the array computes each layer-phase as "
                             f"SCALE-Sim's one GEMM, whatever the clusters are dealt, so "
                             f"mapping.partition: {self.mapping.partition} would change the "
                             f"NoC's bytes and nothing else: drop it (channels)")
        if sparse:
            raise ValueError(f"pe_cluster.systolic: a systolic array computes every MAC of "
                             f"its GEMM (SCALE-Sim's model), but this design also sets "
                             f"{', '.join(sparse)}: drop the array or those settings")
        return self

    @model_validator(mode="after")
    def _pairs_what_it_skips(self) -> ArchConfig:
        """A datapath that skips the zeros of two operands stored as bitmaps must find the
        pairs of non-zeros: a 2-level selector does (priced: its scans), or the PEs' index
        matching (priced: its ANDs). Without either they would pair for free, and dropping
        HPPU's selector made it faster. (Formats that index one operand by the other, EIE's
        CSC or PermDNN's structure, pair by their indices.)"""
        s = self.sparsity
        weights = s.skip_zero_weights and s.weight_format in ("bitmap", "line_bitmap")
        streamed = s.activation_format == "bitmap"
        both = s.two_sided_phases
        pairs = [name for name, on in (
            ("weights with activations (FF)", weights and streamed and "FF" in both),
            ("weights with gradients (BP)", weights and streamed and "BP" in both),
            ("activations with gradients (WG)", streamed and "WG" in both)) if on]
        level_two = self.selector is not None and self.selector.levels == 2
        if pairs and not level_two and self.index_matching is None:
            have = ("a selector of levels 1 (channels and lines only)" if self.selector
                    else "no selector")
            raise ValueError(f"sparsity: skips the zeros of {', '.join(pairs)} stored as "
                             f"bitmaps, with {have} and no index_matching to pair their "
                             "non-zeros: add selector (levels: 2) or index_matching, or skip "
                             "fewer zeros")
        return self

    @model_validator(mode="after")
    def _weight_group_used(self) -> ArchConfig:
        """The weights' line is read by the formats that store lines (line_bitmap, csr,
        csc) and by a selector, which scans one entry a line; on any other design
        `weight_group` would change nothing, silently."""
        s = self.sparsity
        if (s.weight_group is not None and self.selector is None
                and s.weight_format not in ("line_bitmap", "csr", "csc")):
            raise ValueError(f"sparsity.weight_group: sets the weights' line, which only the "
                             f"formats line_bitmap, csr and csc and a selector read; this "
                             f"design stores its weights as {s.weight_format} and has no "
                             f"selector, so it would change nothing: drop it, or set "
                             f"sparsity.weight_format")
        return self

    @model_validator(mode="after")
    def _speculation_needs_floats(self) -> ArchConfig:
        if self.speculator is not None and self.pe_cluster.precision not in FLOAT_PRECISIONS:
            raise ValueError(f"speculator: exponent-only speculation needs a floating-point "
                             f"datapath, but pe_cluster.precision is "
                             f"{self.pe_cluster.precision!r} (one of "
                             f"{', '.join(FLOAT_PRECISIONS)})")
        return self
