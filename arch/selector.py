"""HPPU's 2-level active data selector.

Before a tile goes to the PEs, the selector scans its non-zero maps: level 1 the channel and
kernel-line map of the weights (which channels and lines are active), level 2 the activations'
non-zero map, and sends on only the active data. It scans `entries_per_cycle` entries a cycle;
the mapper counts the entries of each tile. Actions: `entries`.
"""

from __future__ import annotations

from collections.abc import Generator

from arch.config import SelectorConfig
from desim.clock import Clock
from desim.module import Module


class Selector(Module):
    def __init__(self, name: str, parent: Module, cfg: SelectorConfig, clock: Clock) -> None:
        super().__init__(name, parent)
        self.cfg, self.clock = cfg, clock

    def scan(self, entries: int) -> Generator:
        yield from self.work_items(entries, self.cfg.entries_per_cycle, self.clock, "scan",
                                   "entries")
