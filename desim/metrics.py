"""Figures derived from a run's entry in summary.json rather than stored in it: its on-chip energy
(DRAM left out, as a chip's own energy figure is) and its efficiency in dense-equivalent TFLOPS
per watt (2 FLOPs a nominal MAC, the papers' peak convention). One set of formulas for the
claims (`desim.experiment`), the report and sweeps; and, for the claims and sweeps too, the
names of the figures summary.json stores for each phase (`PHASE_FIGURES`).

Nominal MACs leave out the pairs with a padding operand (mappings.counting). The conventional
count, N*K*(C/g)*R*S*P*Q, includes them, and a padded conv's TFLOPS/W reads higher by it:
peak_efficiency's 3x3 probe on 14 x 14 maps, 1.1025x (462.4 M MACs a phase against 419.4 M)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The energy component a chip's own energy figure leaves out.
OFF_CHIP = "dram"
# What summary.json gives each phase of a run (runs.<run>.phases.<FF, BP, WG or WU>,
# `desim.runner`):
# what a claim may name there (`desim.experiment`), the figures of a sweep's table
# (`desim.sweep_results`).
PHASE_FIGURES = ("cycles", "energy_j", "macs", "effectual_macs", "processed_macs", "dram_bytes")


def on_chip_energy_j(run: dict[str, Any]) -> float:
    return float(run["energy_j"]) - float(run["energy_by_component_j"].get(OFF_CHIP, 0.0))


def tflops_per_w(run: dict[str, Any]) -> float:
    return 2 * run["macs"] / run["energy_j"] / 1e12


def on_chip_tflops_per_w(run: dict[str, Any]) -> float:
    return 2 * run["macs"] / on_chip_energy_j(run) / 1e12


def on_chip_energy_ratio(base: dict[str, Any], run: dict[str, Any]) -> float:
    """The baseline's on-chip energy over the run's (the `energy_ratio` of chips)."""
    return on_chip_energy_j(base) / on_chip_energy_j(run)


DERIVED_RUN: dict[str, Callable[[dict[str, Any]], float]] = {
    "on_chip_energy_j": on_chip_energy_j,
    "tflops_per_w": tflops_per_w,
    "on_chip_tflops_per_w": on_chip_tflops_per_w,
}
