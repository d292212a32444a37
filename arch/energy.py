"""Energy tables: the price of each action, per technology node (Accelergy's idea).

Components count actions; this module prices them. Every figure names its source.

45 nm (M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014):
- arithmetic: 8-bit int add 0.03 pJ, mult 0.2; 32-bit int add 0.1, mult 3.1; fp16 add 0.4,
  mult 1.1; fp32 add 0.9, mult 3.7. A MAC is one multiply at the datapath's precision plus
  one add at the accumulator's (`pe_cluster.accumulator`; by default the same).
- SRAM, 64-bit read: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ; between and beyond these points
  the energy is interpolated on a log-log scale of the bank's capacity. A write is priced as
  a read (assumption: Horowitz gives reads only).
Not in Horowitz, stated assumptions:
- fp8 MAC: the multiplier scales with the square of the significand width (E4M3: 4 bits
  against fp16's 11, so 1.1 * (4/11)^2 = 0.145 pJ) and the adder halves from fp16 (0.2 pJ).
- ternary ("add-only") MAC: a weight in {-1, 0, +1} turns the MAC into one add or subtract
  of the activation, no multiply: at an 8-bit accumulator 0.03 pJ, at an int32 one (as
  ternary_pe_wise.yaml's) Horowitz's 32-bit add, 0.1 pJ.
- NoC: 0.4 pJ per bit per hop: a 1 mm link at 0.1 pJ/bit/mm (full-swing repeated wire;
  Park et al., DATE 2013, measure 40.4 fJ/bit/mm for a low-swing 45 nm mesh datapath) plus
  0.3 pJ/bit for the router's buffer, crossbar and arbitration (assumption). Checked against
  a fabricated 45 nm 4x4 mesh (Park et al., DAC 2012: 892 Gb/s delivered at 531.4 mW, 1.1 V,
  unicasts and broadcasts): 0.60 pJ per delivered bit, 0.40 at Horowitz's 0.9 V; a delivered
  bit took 1 (broadcast) to ~2.7 (unicast) hops there, so 0.15 to 0.40 pJ/bit/hop. This
  figure is at the top of that range, for a router not built to the mesh's limits as that
  chip was. (It had been 0.5, the top at 1.0 V, when 45 nm was taken to be at 1.0 V.)
  A hop is a link between two routers and the router it enters. A bit entering the mesh
  from an endpoint (the global buffer's port, a cluster sending results back) pays its first
  router alone, 3/4 of a hop (the port's wire lies within the router's tile: assumption);
  leaving the mesh into an endpoint it pays nothing more (its last router is paid). So a
  unicast over h hops costs h + 3/4 hops, and a multicast tree of h links between routers
  h + 3/4. (Until session 42 every port link was priced as a whole hop: h + 2 a unicast, and
  h + n + 1 a multicast tree to n clusters.)
- weight generator (Procrustes): one regenerated weight is a 32-bit xorshift step (three
  shifts, wiring, and three XORs priced as 32-bit adds: 0.3 pJ) and its scaling to the
  initial distribution, one fp16 multiply-add (1.5 pJ): 1.8 pJ (assumption).
- ReLU speculator (Trainer): one exponent-only product is an exponent add (priced as an
  8-bit int add, 0.03 pJ) and the signed power of two accumulated into a fixed-point sum
  (a 32-bit int add, 0.1 pJ): 0.13 pJ (assumption).
- selector: scanning one entry of a non-zero map (a bit test and a priority-encoder step)
  is priced as an 8-bit add, 0.03 pJ (assumption).
- index matching (PEs that pair two operands' non-zeros, SparTen-like): ANDing one pair's
  two bitmap bits, with their reads from the PE's registers, is priced as one bit of an
  8-bit add (0.03 / 8 pJ), and each matched pair's priority-encoder step and prefix-sum
  offsets as the selector's entry, 0.03 pJ (assumption: the same logic as the selector's).
- the cluster's local buffer: an SRAM of its configured capacity, priced as above.
- a partial sum added at the global buffer (a tile's reduction dealt to the clusters,
  `mapping.partition: reduction`): one add at the accumulator's precision, Horowitz's
  figure; the running sum's read and write are the buffer's.

A design may set its own price for any of these actions (arch YAML `energy:`, `DesignPrices`):
its figure, at its own node, replaces the table's.

Other nodes are derived from 45 nm by one rule, kept here: dynamic energy ~ C V^2 with C
proportional to the feature size, at the nominal supply of each node (45 nm: 0.9 V, the
supply of Horowitz's figures, his Fig. 1.1.9 "Rough energy costs for various operations in
45nm 0.9V"; 28 nm: 0.9 V). So E28 = E45 * (28/45) * (0.9/0.9)^2 = 0.622 E45. (45 nm had been
taken at 1.0 V, which priced every 28 nm action 19% low: 0.504 E45.) The NoC's wire scales
with the rest: a wire's energy per mm barely changes from node to node, but a link between
routers spans a cluster's tile, whose side shrinks with the feature size (assumption).
The same rule gives another operating point of a node: a design run at `supply_voltage_v`
(arch YAML) pays (V / nominal)^2 of every on-chip price, its own `energy:` figures included
(they are at the node's nominal supply). The clock is the design's to choose: desim does not
derive the highest clock a supply allows, nor how leakage changes with it, which a lower
supply trades dynamic energy against: the chip's leakage is the user's `static_power_mw`,
paid over the run's time whatever the supply.
DRAM energy does not scale with the logic node: it comes from the DRAM's own IDD currents.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Horowitz ISSCC 2014, 45 nm, pJ. A MAC is a multiply at the datapath's precision and an add
# at the accumulator's (by default the same).
MULTIPLY_PJ_45NM = {"fp32": 3.7, "fp16": 1.1, "fp8": 1.1 * (4 / 11) ** 2, "int8": 0.2,
                    "int32": 3.1, "ternary": 0.0}
ADD_PJ_45NM = {"fp32": 0.9, "fp16": 0.4, "fp8": 0.4 / 2, "int8": 0.03, "int32": 0.1,
               "ternary": 0.03}
MAC_PJ_45NM = {p: MULTIPLY_PJ_45NM[p] + ADD_PJ_45NM[p] for p in MULTIPLY_PJ_45NM}
SRAM_64BIT_READ_PJ_45NM = ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))
NOC_PJ_PER_BIT_HOP_45NM = 0.4  # a 1 mm wire 0.1, the router 0.3
NOC_ROUTER_SHARE_OF_HOP = 0.3 / 0.4  # what a bit entering from an endpoint's port pays
SELECTOR_PJ_PER_ENTRY_45NM = 0.03
WEIGHT_GENERATOR_PJ_PER_VALUE_45NM = 3 * 0.1 + 1.1 + 0.4
SPECULATOR_PJ_PER_OP_45NM = 0.03 + 0.1
INDEX_SCAN_PJ_PER_PAIR_45NM = 0.03 / 8
INDEX_MATCH_PJ_PER_PAIR_45NM = SELECTOR_PJ_PER_ENTRY_45NM

NODES = {"45nm": (45, 0.9), "28nm": (28, 0.9)}  # feature size (nm), nominal supply (V)
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "fp8": 1, "int8": 1, "int32": 4, "ternary": 1}
# Sign and exponent bits of the floating-point precisions (IEEE fp32 and fp16, fp8 as E4M3):
# what exponent-only ReLU speculation reads of an element (arch/speculator.py).
SIGN_EXPONENT_BITS = {"fp32": 9, "fp16": 6, "fp8": 5}
# Bits a stored weight takes, where it differs from the datapath's element: a ternary code
# {-1, 0, +1} in 2 bits (Yang, He, Fan, AAAI 2020); its activations stay 8-bit (ELEMENT_BYTES).
WEIGHT_BITS = {"ternary": 2}
# The precision of a datapath's activations, where it differs from its weights': a ternary
# array adds 8-bit activations (what its vector unit's batch norms multiply).
ACTIVATION_PRECISION = {"ternary": "int8"}


def vector_op_is_pe_mac(vector_precision: str | None, pe_precision: str) -> bool:
    """Whether a vector-unit op is priced as the PE array's own MAC: the unit has no
    precision of its own and the array multiplies its activations at its weights'."""
    return vector_precision is None and pe_precision not in ACTIVATION_PRECISION


def weight_bits(precision: str, configured: int | None = None) -> int:
    """Bits of one stored weight: `configured` (sparsity.weight_bits) when given, else
    WEIGHT_BITS' figure for `precision`, else its element width."""
    if configured:
        return configured
    return WEIGHT_BITS.get(precision, 8 * ELEMENT_BYTES[precision])


def node_scale(technology: str) -> float:
    """Dynamic-energy factor of `technology` relative to 45 nm (C V^2, C ~ feature size)."""
    size, vdd = NODES[technology]
    size45, vdd45 = NODES["45nm"]
    return (size / size45) * (vdd / vdd45) ** 2


def supply_scale(technology: str, supply_v: float | None) -> float:
    """Dynamic-energy factor of running `technology` at `supply_v` instead of its nominal
    supply (C V^2 at the same C); 1 at the nominal (None)."""
    return 1.0 if supply_v is None else (supply_v / NODES[technology][1]) ** 2


def sram_pj_per_64bit(capacity_bytes: int) -> float:
    """45 nm energy of one 64-bit access to an SRAM of `capacity_bytes`, log-log interpolated."""
    points = SRAM_64BIT_READ_PJ_45NM
    x = math.log(max(capacity_bytes, 1))
    for (c0, e0), (c1, e1) in zip(points, points[1:], strict=False):
        if capacity_bytes <= c1 or (c1, e1) == points[-1]:
            slope = (math.log(e1) - math.log(e0)) / (math.log(c1) - math.log(c0))
            return math.exp(math.log(e0) + slope * (x - math.log(c0)))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class EnergyTable:
    """pJ per action at one technology node."""

    technology: str

    @property
    def scale(self) -> float:
        return node_scale(self.technology)

    def mac_pj(self, precision: str, accumulator: str | None = None) -> float:
        """A multiply at `precision` and an add at `accumulator` (None: the same)."""
        return (MULTIPLY_PJ_45NM[precision] + ADD_PJ_45NM[accumulator or precision]) * self.scale

    def vector_op_pj(self, precision: str | None, pe_precision: str,
                     pe_accumulator: str | None = None) -> float:
        """One vector-unit op: a multiply and an add at `precision` (the vector unit's
        own), or, where it has none, the PE array's MAC on its activations (a ternary
        array's: an 8-bit multiply, an add at its accumulator). Assumption: an add, multiply
        or compare of the unit costs about a MAC."""
        if vector_op_is_pe_mac(precision, pe_precision):
            return self.mac_pj(pe_precision, pe_accumulator)
        if precision is not None:
            return self.mac_pj(precision)
        return self.mac_pj(ACTIVATION_PRECISION[pe_precision], pe_accumulator or pe_precision)

    def add_pj(self, precision: str) -> float:
        """One add at `precision`: a partial sum added into a running sum."""
        return ADD_PJ_45NM[precision] * self.scale

    def sram_pj_per_byte(self, capacity_bytes: int) -> float:
        return sram_pj_per_64bit(capacity_bytes) / 8 * self.scale

    def noc_pj_per_byte_hop(self) -> float:
        return NOC_PJ_PER_BIT_HOP_45NM * 8 * self.scale

    def selector_pj_per_entry(self) -> float:
        return SELECTOR_PJ_PER_ENTRY_45NM * self.scale

    def weight_generator_pj_per_value(self) -> float:
        return WEIGHT_GENERATOR_PJ_PER_VALUE_45NM * self.scale

    def speculator_pj_per_op(self) -> float:
        return SPECULATOR_PJ_PER_OP_45NM * self.scale

    def index_scan_pj_per_pair(self) -> float:
        return INDEX_SCAN_PJ_PER_PAIR_45NM * self.scale

    def index_match_pj_per_pair(self) -> float:
        return INDEX_MATCH_PJ_PER_PAIR_45NM * self.scale


@dataclass(frozen=True)
class DesignPrices:
    """One design's price of each action it counts (pJ): the table's figure at its node for
    its datapath and buffer sizes, or the design's own (arch YAML `energy:`) where it sets
    one. Both the simulation's energy and the mapper's estimate read these, so an override
    moves both; a run's summary lists them (`energy_prices_pj`)."""

    mac_pj: float
    vector_op_pj: float
    global_buffer_pj_per_byte: float
    local_buffer_pj_per_byte: float
    noc_pj_per_bit_hop: float
    selector_pj_per_entry: float
    weight_generator_pj_per_value: float
    speculator_pj_per_op: float
    index_scan_pj_per_pair: float
    index_match_pj_per_pair: float
    psum_add_pj: float

    @property
    def noc_pj_per_byte_hop(self) -> float:
        """A byte over a link between routers and through the router it enters."""
        return self.noc_pj_per_bit_hop * 8

    @property
    def noc_pj_per_byte_port(self) -> float:
        """A byte entering the NoC from an endpoint's port: its first router, the router's
        share of a hop (a design's own hop price carries to it)."""
        return self.noc_pj_per_byte_hop * NOC_ROUTER_SHARE_OF_HOP

    def noc_pj_per_byte(self, role: str) -> float:
        """A byte over a NoC link, by what it passes (`arch.noc.link_role`): a hop between
        routers, the first router from a port, nothing into an endpoint."""
        return {"hop": self.noc_pj_per_byte_hop, "port_in": self.noc_pj_per_byte_port,
                "port_out": 0.0}[role]

    @classmethod
    def of(cls, technology: str, precision: str, accumulator: str | None,
           global_buffer_bank_bytes: int, local_buffer_bytes: int,
           given: dict[str, float] | None = None,
           supply_v: float | None = None, vector_precision: str | None = None
           ) -> DesignPrices:
        """The table's prices for a design, with `given` (name -> pJ) in their place, both
        at the node's nominal supply, then scaled to `supply_v` (`supply_scale`)."""
        table = EnergyTable(technology)
        mac = table.mac_pj(precision, accumulator)
        prices = {
            "mac_pj": mac,
            "vector_op_pj": table.vector_op_pj(vector_precision, precision, accumulator),
            "global_buffer_pj_per_byte": table.sram_pj_per_byte(global_buffer_bank_bytes),
            "local_buffer_pj_per_byte": table.sram_pj_per_byte(local_buffer_bytes),
            "noc_pj_per_bit_hop": table.noc_pj_per_byte_hop() / 8,
            "selector_pj_per_entry": table.selector_pj_per_entry(),
            "weight_generator_pj_per_value": table.weight_generator_pj_per_value(),
            "speculator_pj_per_op": table.speculator_pj_per_op(),
            "index_scan_pj_per_pair": table.index_scan_pj_per_pair(),
            "index_match_pj_per_pair": table.index_match_pj_per_pair(),
            "psum_add_pj": table.add_pj(accumulator or precision),
        }
        given = given or {}
        if ("mac_pj" in given and "vector_op_pj" not in given
                and vector_op_is_pe_mac(vector_precision, precision)):
            prices["vector_op_pj"] = given["mac_pj"]
        scale = supply_scale(technology, supply_v)
        return cls(**{name: pj * scale for name, pj in (prices | given).items()})

    def as_dict(self) -> dict[str, float]:
        """Every price a run uses, the port's too (derived from the hop's, so not settable)."""
        return asdict(self) | {"noc_pj_per_bit_port": self.noc_pj_per_byte_port / 8}
