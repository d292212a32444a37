"""The mapper: a captured workload on a hardware view, as an event table per layer-phase.

Phases run in training order: FF of every layer front to back, then for every layer back to
front its BP (skipped for the first layer, whose input needs no gradient) and its WG.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mappings.capture import LayerCapture, PackedLayer
from mappings.counting import BP, FF, WG, SkipPolicy
from mappings.target import HardwareView
from mappings.tiling import tile_phase
from mappings.workload import Workload


@dataclass
class PhaseWork:
    layer: int
    phase: int
    table: np.ndarray
    macs: int
    effectual_macs: int
    processed_macs: int


def training_order(workload: Workload) -> list[tuple[int, int]]:
    n = len(workload.layers)
    order = [(i, FF) for i in range(n)]
    for i in reversed(range(n)):
        if workload.layers[i].needs_input_grad:
            order.append((i, BP))
        order.append((i, WG))
    return order


def map_workload(workload: Workload, hw: HardwareView) -> list[PhaseWork]:
    policy = SkipPolicy(weights=hw.skip_zero_weights, activations=hw.skip_zero_activations,
                        gradients=hw.skip_zero_gradients,
                        pruned_weight_gradients=hw.skip_pruned_weight_gradients)
    work = []
    unpacked: tuple[int, LayerCapture] | None = None  # BP and WG of a layer come together
    for layer_index, phase in training_order(workload):
        if unpacked is None or unpacked[0] != layer_index:
            layer = workload.layers[layer_index]
            unpacked = (layer_index, layer.unpack() if isinstance(layer, PackedLayer) else layer)
        table, totals = tile_phase(unpacked[1], layer_index, phase, hw,
                                   policy, static_mask=workload.static_mask)
        work.append(PhaseWork(layer_index, phase, table, **totals))
    return work
