"""Procrustes' weight generator: DropBack's untracked weights, regenerated on chip.

DropBack keeps only the k tracked weights; every other weight stays at its initial value,
which a pseudo-random generator seeded as at initialization produces again on demand. So a
tile's weight operand comes from DRAM for its tracked weights only; the generator, beside
the global buffer, writes the untracked (non-zero) ones into the buffer while DRAM streams.
It produces `values_per_cycle` values a cycle; the mapper counts each tile's values.
Actions: `values`.
"""

from __future__ import annotations

from collections.abc import Generator

from arch.config import WeightGeneratorConfig
from desim.clock import Clock
from desim.module import Module


class WeightGenerator(Module):
    def __init__(self, name: str, parent: Module, cfg: WeightGeneratorConfig,
                 clock: Clock) -> None:
        super().__init__(name, parent)
        self.cfg, self.clock = cfg, clock

    def generate(self, values: int) -> Generator:
        yield from self.work_items(values, self.cfg.values_per_cycle, self.clock, "generate",
                                   "values")
