"""What the mapper needs to know of the hardware, as plain data.

The mapper does not import the architecture models (`arch/`); the runner reads the
architecture config and hands the mapper this view of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mappings.pipeline import Overlap


@dataclass(frozen=True)
class HardwareView:
    clusters: int                   # PE clusters that share one tile's work
    pes_per_cluster: int
    buffer_bytes: int               # global buffer space a tile may use (half, double buffered)
    element_bytes: int              # bytes per operand element at the datapath precision
    accumulator_bytes: int = 0      # bytes of a partial sum leaving the PEs; 0: element_bytes
    local_buffer_bytes: int = 0     # each cluster's own buffer (keeps blocks between tiles)
    macs_per_pe_per_cycle: int = 1  # for the tiler's time estimate
    dram_bytes_per_cycle: float = 1.0   # DRAM bandwidth less refresh, for the time estimate
    noc_port_bytes_per_cycle: float = 1.0  # the global buffer's link into the NoC, likewise
    # What every tile pays besides its bytes and MACs, in core cycles, for the estimate: a
    # DRAM access's latency (a closed row's activate and CAS), the NoC's longest route and
    # the PEs' fill and drain (`pipeline_cycles`).
    dram_latency_cycles: float = 0.0
    # What a DRAM transaction that turns the bus around between reads and writes costs
    # beyond one that does not (`DramSystem.direction_switch_ps`), in core cycles.
    dram_switch_cycles: float = 0.0
    noc_latency_cycles: float = 0.0
    pipeline_cycles: int = 0
    # The global buffer's rate over all its banks, per port (one reads while the other
    # writes), and an access's latency, for the estimate; 0: not counted.
    glb_bytes_per_cycle: float = 0.0
    glb_latency_cycles: float = 0.0
    # Systolic mode (`pe_cluster.systolic`): the array's cycles of a layer-phase's GEMM view
    # (M, N, K, groups: `mappings.scalesim.gemm_view`), SCALE-Sim's closed form
    # (`arch.systolic.layer_cycles` bound to the design's array), shared out over the
    # tiles by their MACs (`compute_cycles` of the event table); None: the PEs count MACs.
    systolic: Callable[[int, int, int, int], int] | None = None
    # ... and, while one layer-phase is planned (`planner.tile_phase`), its cycles a MAC:
    # every plan's tiles at that rate, as the replay will take them
    systolic_cycles_per_mac: float = 0.0
    skip_zero_weights: bool = False      # PEs skip MACs whose weight is zero
    skip_zero_activations: bool | tuple[str, ...] = False  # ... whose activation X is zero
    # (FF, WG; a tuple: in the phases it names, `counting.SkipPolicy`)
    skip_zero_gradients: bool | tuple[str, ...] = False  # ... whose output gradient dY is
    # zero (BP, WG; likewise)
    skip_pruned_weight_gradients: bool = False  # WG computes only kept weights' gradients
    channel_compaction: bool = False     # inactive output channels are removed before tiling
    skip_relu_masked_gradients: bool = False  # BP skips dX where X is zero (ReLU masks it)
    load_balance: bool | str = False     # a tile's work spread evenly over its active PEs
    # (True), or over its active clusters ("clusters"), each PE slot's work evened
    weight_format: str = "dense"         # any of mappings.formats.FORMATS
    activation_format: str = "dense"     # any of them but line_bitmap
    # a selector scans the operands' non-zero maps, this many entries a cycle; 0: none
    selector_entries_per_cycle: float = 0.0
    selector_levels: int = 2             # 1: the channel operand's map only
    dataflow: str = "auto"               # auto | weight_stationary | input_stationary
    # what a tile's work may be dealt to the clusters by, the mapper choosing among them:
    # channels, rows, reduction (`desim.events.DEALT`)
    partitions: tuple[str, ...] = ("channels",)
    vector_lanes: int = 0                # 0: no vector unit, vector layers not simulated
    fused_relu: bool = True              # activations applied on the producer's output
    fused_batchnorm: bool = False        # one pass per phase (Trainer's BN unit)
    fused_residual: bool = True          # residual adds / forks on the producer's stream
    fused_update: bool = False           # the weight update on the WG's output stream
    weight_bits: int = 0                 # bits of a stored weight value; 0: 8 * element_bytes
    weight_group: int = 0                # weights' line (line_bitmap, csr); 0: a kernel row,
    # for csr a row of the weight matrix (tiling._weight_line)
    circulant_fft: bool = False          # CirCNN: circulant layers stored and run by FFT
    # Procrustes: values a cycle of the weight generator that regenerates DropBack's untracked
    # weights on chip instead of reading them from DRAM; 0: none
    weight_generator: float = 0.0
    speculate_relu_outputs: bool = False  # Trainer: FF skips outputs predicted ReLU-zeroed
    # ... and a batch norm between such a layer and its ReLU reads every output in BP (exact
    # training), not only those the layer wrote (`speculator.norm_backward_reads`)
    speculated_norm_reads_every: bool = False
    # pairs a cycle each PE's index matching ANDs, where it pairs two operands' non-zeros;
    # 0: no index matching (pairing is free)
    index_matching_bits: int = 0
    # What the mapper minimises when it chooses a tile and how to split a reduction
    # (`mapping.objective`), and the prices (pJ, from the energy tables; 0: not known) its
    # energy estimate uses.
    objective: str = "edp"               # edp | delay | energy
    inter_layer_reuse: bool = False      # a phase's output may stay on chip for the next
    # Set per phase by the mapper: False when the phase's result is kept on chip for the
    # next phase and nothing else reads it (an inference), so it is not written to DRAM.
    output_to_dram: bool = True
    # ... and for a WG, the tiles it overlaps, by which its plans are ranked (None: alone)
    overlap: Overlap | None = None
    # ... and True for the iteration's first phase: no phase runs before it, under which
    # its first tile's weights could be read ahead
    first_phase: bool = False
    mac_pj: float = 0.0
    dram_pj_per_byte: float = 0.0        # streaming read
    dram_write_pj_per_byte: float | None = None  # streaming write (None: a read's)
    static_pj_per_cycle: float = 0.0     # DRAM idle background and refresh, every
                                         # channel; the chip's static power
    dram_awake_pj_per_byte: float = 0.0  # the DRAM standby above idle a byte moved costs
                                         # (its channels powered up; 0: no power-down)
    glb_pj_per_byte: float = 0.0
    local_pj_per_byte: float = 0.0
    noc_pj_per_byte: float = 0.0         # along the mean route between the buffer and a cluster
    noc_multicast_pj_per_byte: float = 0.0  # over the tree to every cluster
    index_scan_pj: float = 0.0           # a pair's bitmap bits ANDed by index matching
    index_match_pj: float = 0.0          # a matched pair encoded for the MAC
    psum_add_pj: float = 0.0             # a partial sum added at the global buffer
    vector_op_pj: float | None = None    # an operation of the vector unit (None: a MAC's)

    @property
    def psum_bytes(self) -> int:
        return self.accumulator_bytes or self.element_bytes

    @property
    def pes(self) -> int:
        return self.clusters * self.pes_per_cluster

    def ideal_compute_cycles(self, macs: float) -> float:
        """The fewest cycles `macs` take on the PEs, every PE busy (or, on a systolic
        array, at its layer-phase's rate): what no tiling beats."""
        if self.systolic_cycles_per_mac:
            return macs * self.systolic_cycles_per_mac
        return macs / (self.pes * self.macs_per_pe_per_cycle)

    def estimated_pj(self, *, macs: float = 0.0, dram: float = 0.0, dram_write: float = 0.0,
                     glb: float = 0.0, unicast: float = 0.0, multicast: float = 0.0,
                     local: float = 0.0, cycles: float = 0.0, scanned: float = 0.0,
                     matched: float = 0.0, adds: float = 0.0, vector_ops: float = 0.0
                     ) -> float:
        """Energy at the view's prices: MACs, bytes read from and written to DRAM (a write
        burst draws another current than a read: DDR4-2400's 13% less), bytes
        over unicast routes (gathers included) and over multicast trees, bytes into the
        clusters' local buffers (each written there and read once by the PEs, as
        arch/accelerator.py prices them; the reads had been left out), DRAM standby for
        `cycles` (idle, powered down where the design powers down, and powered up while
        it moves the DRAM bytes), the pairs index matching scans and matches, the partial
        sums added at the global buffer, and the vector unit's operations (they had been
        priced as MACs, wrong where a design prices them apart). The one pricing rule of
        the mapper's estimates (the tile's and the plan's)."""
        write_pj = (self.dram_pj_per_byte if self.dram_write_pj_per_byte is None
                    else self.dram_write_pj_per_byte)
        return (macs * self.mac_pj + dram * self.dram_pj_per_byte + dram_write * write_pj
                + (dram + dram_write) * self.dram_awake_pj_per_byte
                + glb * self.glb_pj_per_byte
                + unicast * self.noc_pj_per_byte + multicast * self.noc_multicast_pj_per_byte
                + 2 * local * self.local_pj_per_byte + cycles * self.static_pj_per_cycle
                + scanned * self.index_scan_pj + matched * self.index_match_pj
                + adds * self.psum_add_pj
                + vector_ops * (self.mac_pj if self.vector_op_pj is None else self.vector_op_pj))

    def objective_value(self, cycles: float, pj: float) -> float:
        """What `objective` minimises, from an estimate's time and energy."""
        return {"edp": cycles * pj, "delay": cycles, "energy": pj}[self.objective]
