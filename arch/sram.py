"""SRAM: the global buffer, in banks.

A buffer of B banks, each W bytes wide, moves B*W bytes a cycle when an access stripes over
all banks (the mapper lays blocks out contiguously, so it does); an access of n bytes takes
`latency + ceil(n / (B*W))` cycles. Reads and writes have a port each (dual-ported), so a fill
from DRAM and a read towards the PEs proceed together; two accesses on one port serialize.
Bank conflicts (optional, per access): an access confined to `banks_touched` banks starting
at bank `bank` moves only `banks_touched * W` bytes a cycle, `latency + ceil(n /
(banks_touched * W))` cycles, and holds those banks while it runs, so two confined accesses
that share a bank serialize even on different ports (one port per bank array, as CACTI's
single-ported banks). An access that names no banks stripes over all of them and takes no
bank locks: the default, the dual-ported behaviour above, unchanged.
Actions: `read_bytes`, `write_bytes` (priced per byte by the capacity of one bank).
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from arch.config import BufferConfig
from desim.clock import Clock
from desim.module import Module


class GlobalBuffer(Module):
    concurrency = 2  # its read port and its write port, busy at once

    def __init__(self, name: str, parent: Module, cfg: BufferConfig, clock: Clock) -> None:
        super().__init__(name, parent)
        self.cfg, self.clock = cfg, clock
        self.capacity_bytes = cfg.capacity_kib * 1024
        self.bank_bytes = self.capacity_bytes // cfg.banks
        self.bytes_per_cycle = cfg.banks * cfg.bank_width_bytes
        self.port_queues = {kind: simpy.Resource(self.env, 1) for kind in ("read", "write")}
        self.bank_locks: list[simpy.Resource] = []  # made on the first confined access

    def access_ps(self, nbytes: int, banks_touched: int | None = None) -> int:
        """Time of an access of `nbytes` striped over `banks_touched` banks (None: all)."""
        if nbytes <= 0:
            return 0
        per_cycle = self.bytes_per_cycle if banks_touched is None else (
            max(1, min(banks_touched, self.cfg.banks)) * self.cfg.bank_width_bytes)
        return self.clock.cycles(self.cfg.latency_cycles + -(-nbytes // per_cycle))

    def banks_of(self, bank: int, banks_touched: int) -> list[int]:
        """The banks an access starting at `bank` and spanning `banks_touched` banks hits."""
        n = self.cfg.banks
        return sorted({(bank + i) % n for i in range(max(1, min(banks_touched, n)))})

    def access(self, nbytes: int, kind: str, bank: int | None = None,
               banks_touched: int | None = None) -> Generator:
        """Read or write `nbytes` through the `kind` port ("read" or "write"); confined to
        `banks_touched` banks from `bank` when either is given (bank conflicts serialize)."""
        if nbytes <= 0:
            return
        with self.port_queues[kind].request() as req:
            yield req
            if bank is None and banks_touched is None:
                yield from self.busy_for(self.access_ps(nbytes), kind, track=kind)
            else:
                touched = self.cfg.banks if banks_touched is None else banks_touched
                if not self.bank_locks:
                    self.bank_locks = [simpy.Resource(self.env, 1)
                                       for _ in range(self.cfg.banks)]
                held = [self.bank_locks[b].request()
                        for b in self.banks_of(bank or 0, touched)]
                try:
                    for lock in held:  # in bank order: no two accesses wait on each other
                        yield lock
                    yield from self.busy_for(self.access_ps(nbytes, touched), kind, track=kind)
                finally:
                    for lock, b in zip(held, self.banks_of(bank or 0, touched), strict=True):
                        self.bank_locks[b].release(lock)
        self.count(f"{kind}_bytes", nbytes)
