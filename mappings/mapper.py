"""The mapper: a captured workload on a hardware view, as an event table per layer-phase.

Phases run in training order: FF of every layer front to back, then for every layer back to
front its BP (skipped for the first layer, whose input needs no gradient) and its WG. Vector
layers (batch norm, activations, pooling) sit where they ran: FF after the conv/linear layer
they follow, BP before its BP. A layer-phase starts once the phases whose outputs it reads
are written back (`phase_waits`): a layer's WG overlaps its BP and what follows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mappings.capture import LayerCapture, PackedLayer
from mappings.counting import BP, FF, WG, SkipPolicy
from mappings.planner import tile_phase
from mappings.target import HardwareView
from mappings.vector import stored_gradients, stored_outputs, vector_tiles
from mappings.workload import Workload


@dataclass
class PhaseWork:
    name: str          # the layer's module name
    layer: int         # its id in the event table: conv/linear >= 0, vector layers < 0
    phase: int
    table: np.ndarray
    macs: int = 0
    effectual_macs: int = 0
    processed_macs: int = 0
    weight_dram_bytes: int = 0  # bytes of weights read from DRAM (FF and BP of weight layers)


def training_order(workload: Workload) -> list[tuple[int, int]]:
    """(layer id, phase) in the order they run; vector layer v has id -1 - v."""
    n = len(workload.layers)
    following: dict[int, list[int]] = {}
    for v, vector in enumerate(workload.vectors):
        following.setdefault(vector.after, []).append(-1 - v)
    order = [(v, FF) for v in following.get(-1, [])]
    for i in range(n):
        order += [(i, FF)] + [(v, FF) for v in following.get(i, [])]
    for i in reversed(range(n)):
        order += [(v, BP) for v in reversed(following.get(i, []))]
        if workload.layers[i].needs_input_grad:
            order.append((i, BP))
        order.append((i, WG))
    order += [(v, BP) for v in reversed(following.get(-1, []))]
    if workload.spec.inference:
        order = [(layer, phase) for layer, phase in order if phase == FF]
    return order


def map_workload(workload: Workload, hw: HardwareView) -> list[PhaseWork]:
    policy = SkipPolicy(weights=hw.skip_zero_weights, activations=hw.skip_zero_activations,
                        gradients=hw.skip_zero_gradients,
                        pruned_weight_gradients=hw.skip_pruned_weight_gradients)
    work = []
    unpacked: tuple[int, LayerCapture] | None = None  # BP and WG of a layer come together
    # CirCNN: the layers the run pruned block-circulant run by FFT on such hardware.
    circulant = workload.pruning.b if (hw.circulant_fft and workload.pruning.method
                                       == "block_circulant") else 0
    pruned = set(getattr(workload, "pruned_layers", ()))
    stored = stored_outputs(workload.vectors, hw)  # what each vector layer writes in FF
    stored_dy = stored_gradients(workload.vectors, hw)  # ... and reads as dY in BP
    for layer_id, phase in training_order(workload):
        if layer_id < 0:
            vector = workload.vectors[-1 - layer_id]
            table = vector_tiles(vector, layer_id, phase, hw, stored[-1 - layer_id],
                                 stored_dy[-1 - layer_id])
            if len(table):
                work.append(PhaseWork(vector.name, layer_id, phase, table))
            continue
        if unpacked is None or unpacked[0] != layer_id:
            layer = workload.layers[layer_id]
            unpacked = (layer_id, layer.unpack() if isinstance(layer, PackedLayer) else layer)
        table, totals = tile_phase(
            unpacked[1], layer_id, phase, hw, policy,
            pruned_grads_unused=workload.pruned_grads_unused,
            circulant_block=circulant if unpacked[1].name in pruned else 0)
        work.append(PhaseWork(unpacked[1].name, layer_id, phase, table, **totals))
    return work


def phase_waits(work: list[PhaseWork]) -> list[int]:
    """For each layer-phase, the latest earlier one that must be written back before its
    first tile is fetched (-1: none); phases finish in order, so that one's end means every
    earlier one's.

    Nothing in one training iteration reads a weight gradient, so no phase waits for a WG;
    and a layer's WG reads X and dY, not the dX its BP makes, so it does not wait for that
    BP either. Every other phase waits for all the phases before it: its input (FF's X,
    BP's dY) is the latest output written, and which earlier phase also fed it (a residual
    branch) is not tracked, so waiting for all of them is the safe rule."""
    waits = []
    for j, w in enumerate(work):
        k = j - 1
        while k >= 0 and (work[k].phase == WG or (w.phase == WG and work[k].phase == BP
                                                  and work[k].layer == w.layer)):
            k -= 1
        waits.append(k)
    return waits
