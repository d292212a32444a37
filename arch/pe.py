"""PE clusters: where the MACs happen.

The array of C clusters of P PEs works on one tile at a time, all PEs in step: a tile lasts
as long as its busiest PE, `ceil(busiest_pe_macs / macs_per_pe_per_cycle)` cycles, plus the
datapath's fill and drain (`pipeline_cycles`). The mapper has already counted the busiest
PE's MACs exactly, so load imbalance from sparsity shows up here as time.
In systolic mode (`PeClusterConfig.systolic`) a tile instead takes the `compute_cycles` the
top gave it: its share of SCALE-Sim's cycles for the layer-phase (arch/systolic.py).
Actions: `macs` (performed), `local_buffer_write_bytes` (operands arriving),
`local_buffer_read_bytes` (operands read once into the PEs' registers; reuse inside the
register file is folded into the MAC energy).
"""

from __future__ import annotations

from collections.abc import Generator

from arch.config import PeClusterConfig
from desim.clock import Clock
from desim.module import Module


class PeArray(Module):
    def __init__(self, name: str, parent: Module, cfg: PeClusterConfig, clusters: int,
                 clock: Clock) -> None:
        super().__init__(name, parent)
        self.cfg, self.clusters, self.clock = cfg, clusters, clock

    def tile_cycles(self, busiest_pe_macs: int) -> int:
        if busiest_pe_macs <= 0:
            return 0
        return -(-busiest_pe_macs // self.cfg.macs_per_pe_per_cycle) + self.cfg.pipeline_cycles

    def compute(self, busiest_pe_macs: int, processed_macs: int, operand_bytes: int,
                systolic_cycles: int = 0) -> Generator:
        cycles = (systolic_cycles if self.cfg.systolic is not None
                  else self.tile_cycles(busiest_pe_macs))
        yield from self.busy_for(self.clock.cycles(cycles), "tile")
        self.count("macs", processed_macs)
        self.count("local_buffer_read_bytes", operand_bytes)

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.clusters * self.cfg.pes * self.cfg.macs_per_pe_per_cycle
