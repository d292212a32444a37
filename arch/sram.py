"""SRAM: the global buffer, in banks.

A buffer of B banks, each W bytes wide, moves B*W bytes a cycle when an access stripes over
all banks (the mapper lays blocks out contiguously, so it does); an access of n bytes takes
`latency + ceil(n / (B*W))` cycles. Reads and writes have a port each (dual-ported), so a fill
from DRAM and a read towards the PEs proceed together; two accesses on one port serialize.
Actions: `read_bytes`, `write_bytes` (priced per byte by the capacity of one bank).
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from arch.config import BufferConfig
from desim.clock import Clock
from desim.module import Module


class GlobalBuffer(Module):
    def __init__(self, name: str, parent: Module, cfg: BufferConfig, clock: Clock) -> None:
        super().__init__(name, parent)
        self.cfg, self.clock = cfg, clock
        self.capacity_bytes = cfg.capacity_kib * 1024
        self.bank_bytes = self.capacity_bytes // cfg.banks
        self.bytes_per_cycle = cfg.banks * cfg.bank_width_bytes
        self.port_queues = {kind: simpy.Resource(self.env, 1) for kind in ("read", "write")}

    def access_ps(self, nbytes: int) -> int:
        if nbytes <= 0:
            return 0
        return self.clock.cycles(self.cfg.latency_cycles + -(-nbytes // self.bytes_per_cycle))

    def access(self, nbytes: int, kind: str) -> Generator:
        """Read or write `nbytes` through the `kind` port ("read" or "write")."""
        if nbytes <= 0:
            return
        with self.port_queues[kind].request() as req:
            yield req
            yield from self.busy_for(self.access_ps(nbytes), kind, track=kind)
        self.count(f"{kind}_bytes", nbytes)
