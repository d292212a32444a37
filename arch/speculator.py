"""Trainer's ReLU speculator: the exponent-only pass that runs before the PEs' full pass.

Each FF tile of a layer followed by a ReLU arrives with its operands; the speculator forms
every (non-zero) product from the operands' signs and exponents only and accumulates them,
predicting each output's sign (mappings/speculation.py). The PEs then compute only the outputs
predicted positive. The speculator is its own pipeline stage between the NoC and the PEs, so
it predicts the next tile while the PEs compute the current one; it performs `ops_per_cycle`
products a cycle over the whole array and reads each tile's operands from the local buffers
once, their sign and exponent fields only (`arch.energy.SIGN_EXPONENT_BITS` of each element;
ArchConfig allows a speculator on those precisions only).
With index matching (a design whose PEs pair two operands' non-zeros), the speculator
pairs them too, over every output of the tile: `scanned_pairs` and `matched_pairs` (its
ops), priced as the PEs'; the pairing is taken to keep pace with its products (assumption).
Actions: `ops`, `local_buffer_read_bytes`, `scanned_pairs`, `matched_pairs`.
"""

from __future__ import annotations

from collections.abc import Generator

from arch.config import SpeculatorConfig
from arch.energy import ELEMENT_BYTES, SIGN_EXPONENT_BITS
from desim.clock import Clock
from desim.module import Module


class Speculator(Module):
    def __init__(self, name: str, parent: Module, cfg: SpeculatorConfig, precision: str,
                 clock: Clock) -> None:
        super().__init__(name, parent)
        self.cfg, self.clock = cfg, clock
        self.field_bits = SIGN_EXPONENT_BITS[precision]
        self.element_bits = 8 * ELEMENT_BYTES[precision]

    def predict(self, ops: int, operand_bytes: int, scanned_pairs: int = 0) -> Generator:
        """Predict one tile's output signs from `ops` products of its `operand_bytes`, found
        among `scanned_pairs` by index matching (0: the design has none)."""
        if ops <= 0:
            return
        yield from self.work_items(ops, self.cfg.ops_per_cycle, self.clock, "predict", "ops")
        self.count("local_buffer_read_bytes",
                   -(-operand_bytes * self.field_bits // self.element_bits))
        if scanned_pairs:
            self.count("scanned_pairs", scanned_pairs)
            self.count("matched_pairs", ops)
