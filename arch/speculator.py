"""Trainer's ReLU speculator: the exponent-only pass that runs before the PEs' full pass.

Each FF tile of a layer followed by a ReLU arrives with its operands; the speculator forms
every (non-zero) product from the operands' signs and exponents only and accumulates them,
predicting each output's sign (mappings/speculation.py). The PEs then compute only the outputs
predicted positive. The speculator is its own pipeline stage between the NoC and the PEs, so
it predicts the next tile while the PEs compute the current one; it performs `ops_per_cycle`
products a cycle over the whole array and reads each tile's operands from the local buffers
once, their sign and exponent fields only (`SIGN_EXPONENT_BITS` of each element).
Actions: `ops`, `local_buffer_read_bytes`.
"""

from __future__ import annotations

from collections.abc import Generator

from arch.config import SpeculatorConfig
from desim.clock import Clock
from desim.module import Module

# (sign + exponent bits, element bits) of the floating-point formats (ArchConfig allows a
# speculator with these only): IEEE fp32 and fp16, fp8 as E4M3.
SIGN_EXPONENT_BITS = {"fp32": (9, 32), "fp16": (6, 16), "fp8": (5, 8)}


class Speculator(Module):
    def __init__(self, name: str, parent: Module, cfg: SpeculatorConfig, precision: str,
                 clock: Clock) -> None:
        super().__init__(name, parent)
        self.cfg, self.clock = cfg, clock
        self.field_bits, self.element_bits = SIGN_EXPONENT_BITS[precision]

    def predict(self, ops: int, operand_bytes: int) -> Generator:
        """Predict one tile's output signs from `ops` products of its `operand_bytes`."""
        if ops <= 0:
            return
        yield from self.busy_for(self.clock.cycles(-(-ops // self.cfg.ops_per_cycle)),
                                 "predict")
        self.count("ops", ops)
        self.count("local_buffer_read_bytes",
                   -(-operand_bytes * self.field_bits // self.element_bits))
