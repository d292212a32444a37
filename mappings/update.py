"""The optimizer's weight update (phase WU): after a layer's WG, the optimizer reads each
weight it updates, that weight's gradient and its own state, and writes the weight and its
state back. A pass over the weights on the vector unit, with no MACs.

A workload asks for it (`workload.weight_update`); it is off by default, as the papers'
claims count an iteration as FF, BP and WG. Stated assumptions:
- The weights updated are those the design stores and computes gradients of: DropBack's
  tracked weights where a weight generator regenerates the others (they are not stored);
  else the kept weights where WG computes the kept weights' gradients only (as WG does:
  `SkipPolicy.pruned_weight_gradients` and a pruning that does not read the others); else
  every weight.
- Operations a weight, as fused multiply-adds on the vector unit (`mappings.vector`): sgd 1
  (w - lr g); momentum 2 (v = mu v + g, then w - lr v); adam 9 (m: a multiply and a
  multiply-add; v: g squared, a multiply and a multiply-add; the step: a square root, an add
  of epsilon, a divide and a multiply-add; the bias corrections are per-step scalars).
- The state, one value a weight (momentum) or two (adam), is kept at the datapath precision
  beside the weights it follows, with no index of its own. The weights are read and written
  as DRAM holds them (`tiling.stored_weight_bytes`), dW as WG wrote it: from DRAM, or from
  the global buffer where inter-layer reuse kept it there (`mappings.mapper`,
  `update_reads_kept_gradient`), or off the WG's output stream on a design that fuses the
  two (`vector_unit.fused_update`: no dW reaches DRAM). The update is still a phase of its
  own after its WG, as a fused residual add is after its producer: its ops and its reads of
  W and the state are not overlapped with the WG's tiles.
- Dynamic pruning (`pruning.method: dynamic`, Trainer's; `training._Dynamic`) recomputes
  each iteration's mask from the magnitudes of all the weights, the pruned ones' too: they
  keep their values, kept aside dense, and come back when kept weights fall below them.
  The update of a layer it pruned (`ranked`) also reads, from DRAM, the values of the
  weights it does not update (the pruned ones), each at the weights' value bits
  (`weight_bits`, else the datapath's), with no index (a dense copy); they are not
  updated, so not written back. It ranks every weight for the next mask: one vector
  operation a weight (|w| compared with the layer's threshold, the kept weights' new
  values as the update makes them); finding the threshold (the k-th largest magnitude) is
  not counted, as if carried over from the iteration before. The papers do not say how
  the hardware keeps or ranks the pruned weights (assumption). The weights that enter or
  leave the kept set as the mask moves are not moved between the two stores.
"""

from __future__ import annotations

import numpy as np
import torch

from desim.events import empty_table
from mappings.capture import LayerCapture
from mappings.counting import WU
from mappings.target import HardwareView
from mappings.tiling import stored_weight_bytes
from mappings.vector import pass_tiles

# Per optimizer: the vector unit's operations a weight, and the state's values a weight.
OPTIMIZERS = {"sgd": (1, 0), "momentum": (2, 1), "adam": (9, 2)}


def updated_weights(layer: LayerCapture, hw: HardwareView, kept_gradients_only: bool
                    ) -> torch.Tensor:
    """The mask of the weights the optimizer updates (the module's first assumption)."""
    if hw.weight_generator and layer.w_tracked is not None:
        return layer.w_tracked & layer.w_nz
    if kept_gradients_only:
        return layer.w_nz
    return torch.ones_like(layer.w_nz)


def update_traffic(layer: LayerCapture, hw: HardwareView, optimizer: str, dw_bytes: int,
                   kept_gradients_only: bool, circulant_block: int = 0, ranked: bool = False
                   ) -> tuple[int, int, int]:
    """(DRAM bytes read, DRAM bytes written, vector ops) of a layer's weight update: the
    weights and their state read and written, the gradient `dw_bytes` read. A layer stored
    as b x b circulant blocks (`circulant_block` b) keeps one row of each: b-fold fewer.
    `ranked`: dynamic pruning's next mask is made here too (the module's last assumption):
    the weights not updated are read dense, and every weight is compared once."""
    ops, states = OPTIMIZERS[optimizer]
    updated = updated_weights(layer, hw, kept_gradients_only)
    kept = count = int(updated.sum())
    weights = stored_weight_bytes(layer, updated, hw)
    if circulant_block:
        count, weights = -(-count // circulant_block), -(-weights // circulant_block)
    state = count * states * hw.element_bytes
    aside, ranking = 0, 0
    if ranked:
        ranking = updated.numel()
        aside = -(-(ranking - kept) * (hw.weight_bits or 8 * hw.element_bytes) // 8)
    return weights + dw_bytes + state + aside, weights + state, count * ops + ranking


def update_tiles(layer: LayerCapture, layer_id: int, hw: HardwareView, optimizer: str,
                 dw_bytes: int, kept_gradients_only: bool, circulant_block: int = 0,
                 dw_resident: bool = False, ranked: bool = False) -> np.ndarray:
    """The update's tiles on the vector unit (none without one); `dw_resident`: WG left dW
    in the global buffer, so only the weights, the state (and with `ranked` the pruned
    weights' dense values, `update_traffic`) come from DRAM. Its writes go
    to DRAM: the mapper maps it with `hw.output_to_dram` on, as it maps every phase but one
    whose output a later phase keeps on chip, and nothing in the iteration reads what it
    writes."""
    if hw.vector_lanes == 0:
        return empty_table(0)
    read, write, ops = update_traffic(layer, hw, optimizer, dw_bytes, kept_gradients_only,
                                      circulant_block, ranked)
    return pass_tiles(layer_id, WU, hw, read - dw_bytes * dw_resident, read, ops, write)
