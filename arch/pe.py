"""PE clusters: where the MACs happen.

The array of C clusters of P PEs works on one tile at a time, all PEs in step: a tile lasts
as long as its busiest PE, `ceil(busiest_pe_macs / macs_per_pe_per_cycle)` cycles, plus the
datapath's fill and drain (`pipeline_cycles`). The mapper has already counted the busiest
PE's MACs exactly, so load imbalance from sparsity shows up here as time.
In systolic mode (`PeClusterConfig.systolic`) a tile instead takes the `compute_cycles` the
mapper gave it: its share of SCALE-Sim's cycles for the layer-phase (arch/systolic.py).
With index matching (`IndexMatchingConfig`: PEs that pair two operands' non-zeros by
ANDing their bitmaps), a tile also lasts no less than its pairs take to scan, spread over
its active PEs at `bits_per_cycle` each.
Actions: `macs` (performed), `local_buffer_write_bytes` (operands arriving),
`local_buffer_read_bytes` (operands read once into the PEs' registers; reuse inside the
register file is folded into the MAC energy), and with index matching `scanned_pairs`
(pairs whose bits are ANDed) and `matched_pairs` (pairs found with both non-zero).
"""

from __future__ import annotations

from collections.abc import Generator

from arch.config import IndexMatchingConfig, PeClusterConfig
from desim.clock import Clock
from desim.errors import ConfigError
from desim.module import Module


class PeArray(Module):
    def __init__(self, name: str, parent: Module, cfg: PeClusterConfig, clusters: int,
                 clock: Clock, matching: IndexMatchingConfig | None = None) -> None:
        super().__init__(name, parent)
        self.cfg, self.clusters, self.clock, self.matching = cfg, clusters, clock, matching
        array = cfg.systolic
        if array is not None and array.rows * array.cols != self.peak_macs_per_cycle:
            raise ConfigError(
                f"a {array.rows} x {array.cols} array is "
                f"{array.rows * array.cols:,} MAC units, but the PEs it stands for are "
                f"{clusters} cluster(s) x {cfg.pes} PEs x {cfg.macs_per_pe_per_cycle} MACs a "
                f"cycle = {self.peak_macs_per_cycle:,}: make the two equal",
                key="pe_cluster.systolic")

    def tile_cycles(self, busiest_pe_macs: int, scanned_pairs: int = 0,
                    active_clusters: int = 0) -> int:
        """A tile's cycles: its busiest PE's MACs, or its pairs' scan over the active PEs
        when that takes longer, plus the datapath's fill and drain."""
        cycles = -(-busiest_pe_macs // self.cfg.macs_per_pe_per_cycle)
        if scanned_pairs and self.matching is not None:
            lanes = max(1, active_clusters) * self.cfg.pes * self.matching.bits_per_cycle
            cycles = max(cycles, -(-scanned_pairs // lanes))
        return cycles + self.cfg.pipeline_cycles if cycles > 0 else 0

    def compute(self, busiest_pe_macs: int, processed_macs: int, operand_bytes: int,
                systolic_cycles: int = 0, scanned_pairs: int = 0,
                active_clusters: int = 0) -> Generator:
        cycles = (systolic_cycles if self.cfg.systolic is not None
                  else self.tile_cycles(busiest_pe_macs, scanned_pairs, active_clusters))
        yield from self.busy_for(self.clock.cycles(cycles), "tile")
        self.count("macs", processed_macs)
        self.count("local_buffer_read_bytes", operand_bytes)
        if scanned_pairs and self.matching is not None:
            self.count("scanned_pairs", scanned_pairs)
            self.count("matched_pairs", processed_macs)

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.clusters * self.cfg.pes * self.cfg.macs_per_pe_per_cycle
