"""The vector unit: batch norm, activations and pooling, beside the global buffer.

It performs `lanes` element operations a cycle; a tile of n operations takes ceil(n / lanes)
cycles. Its operands come from the global buffer (the mapper counts those bytes), not over
the NoC. Actions: `ops` (priced as one multiply-add each at the datapath precision).
"""

from __future__ import annotations

from collections.abc import Generator

from arch.config import VectorUnitConfig
from desim.clock import Clock
from desim.module import Module


class VectorUnit(Module):
    def __init__(self, name: str, parent: Module, cfg: VectorUnitConfig, clock: Clock) -> None:
        super().__init__(name, parent)
        self.cfg, self.clock = cfg, clock

    def process(self, ops: int) -> Generator:
        yield from self.work_items(ops, self.cfg.lanes, self.clock, "ops", "ops")
