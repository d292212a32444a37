"""What FF and BP write: in the activation format, from the captured non-zero maps.

A compressed-activation processor reads each layer's input in its format; the layer that
produced it writes it in that format too (FF: Y, after a fused ReLU; BP: dX), and vector
layers (batch norm, pooling) read and write activations likewise.
"""

from __future__ import annotations

import torch
from torch import nn

from mappings.capture import VectorCapture, capture
from mappings.counting import BP, FF, SkipPolicy
from mappings.formats import map_stats
from mappings.target import HardwareView
from mappings.tiling import tile_phase
from mappings.vector import stored_outputs, vector_traffic

HW = dict(clusters=4, pes_per_cluster=4, buffer_bytes=64 * 1024, element_bytes=2)


def _conv_relu_conv():
    torch.manual_seed(4)
    first, second = nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
    model = nn.Sequential(first, nn.ReLU(), second)
    x = torch.relu(torch.randn(2, 4, 8, 8))
    layers = capture(model, x, torch.ones(2, 4, 8, 8), loss_fn=lambda out, t: (out * t).sum())
    return layers, torch.relu(first(x)), first(x)


def test_ff_writes_the_fused_relu_output_in_bitmap():
    """Bitmap: two bytes a non-zero plus a bit an element, summed over the tiles."""
    layers, relu_out, raw = _conv_relu_conv()
    bitmap = HardwareView(**HW, activation_format="bitmap")
    table, _ = tile_phase(layers[0], 0, FF, bitmap, SkipPolicy(), pruned_grads_unused=True)
    elems = relu_out.numel()
    assert table["dram_write_bytes"].sum() == 2 * int((relu_out != 0).sum()) + elems // 8
    unfused = HardwareView(**HW, activation_format="bitmap", fused_relu=False)
    table, _ = tile_phase(layers[0], 0, FF, unfused, SkipPolicy(), pruned_grads_unused=True)
    assert table["dram_write_bytes"].sum() == 2 * int((raw != 0).sum()) + elems // 8
    dense = HardwareView(**HW)
    table, _ = tile_phase(layers[0], 0, FF, dense, SkipPolicy(), pruned_grads_unused=True)
    assert table["dram_write_bytes"].sum() == 2 * elems


def test_bp_writes_dx_zero_where_relu_masks_it():
    layers, relu_out, _ = _conv_relu_conv()
    second = layers[1]
    masked = HardwareView(**HW, activation_format="bitmap", skip_relu_masked_gradients=True)
    table, _ = tile_phase(second, 1, BP, masked, SkipPolicy(), pruned_grads_unused=True)
    nnz = int((second.dx_nz & (relu_out != 0)).sum())
    assert nnz < int(second.dx_nz.sum())
    assert table["dram_write_bytes"].sum() == 2 * nnz + relu_out.numel() // 8


def test_a_fused_relu_makes_the_vector_layer_before_it_write_its_output():
    x = torch.randn(2, 3, 4, 4)
    bn_out, relu_out = x, torch.relu(x)
    bn = VectorCapture("bn", "batchnorm", 96, 96, 0, map_stats(x != 0), map_stats(bn_out != 0))
    relu = VectorCapture("relu", "relu", 96, 96, 0, map_stats(bn_out != 0),
                         map_stats(relu_out != 0))
    hw = HardwareView(**HW, activation_format="bitmap", fused_batchnorm=True, vector_lanes=8)
    stored = stored_outputs([bn, relu], hw)
    assert stored[0] is relu.out_stats and stored[1] is relu.out_stats
    read, write, _ = vector_traffic(bn, FF, hw, stored[0])
    assert read == 2 * 96 + 96 // 8                      # a dense input in bitmap
    assert write == 2 * int((relu_out != 0).sum()) + 96 // 8
    unfused = HardwareView(**{**hw.__dict__, "fused_relu": False})
    assert stored_outputs([bn, relu], unfused)[0] is bn.out_stats
