"""What FF and BP write: in the activation format, from the captured non-zero maps.

A compressed-activation processor reads each layer's input in its format; the layer that
produced it writes it in that format too (FF: Y, after a fused ReLU; BP: dX), and vector
layers (batch norm, pooling) read and write activations likewise.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from mappings.capture import VectorCapture, capture
from mappings.counting import BP, FF, SkipPolicy
from mappings.formats import map_stats
from mappings.planner import tile_phase
from mappings.target import HardwareView
from mappings.vector import stored_gradients, stored_outputs, vector_traffic

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


def test_vector_layers_capture_their_gradients_and_read_and_write_them_in_format():
    """conv -> BN -> ReLU -> max pool -> conv: each vector layer's dY and dX are the real
    gradients' non-zeros; in bitmap, BN's BP reads X and the ReLU's incoming dY (the mask is
    applied as it reads) and writes its dX; the pool reads its dY and the argmax bits."""
    torch.manual_seed(5)
    conv1, bn, relu, pool = (nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.MaxPool2d(2))
    model = nn.Sequential(conv1, bn, relu, pool, nn.Conv2d(4, 2, 3, padding=1))
    x = torch.randn(2, 3, 8, 8)
    vectors: list[VectorCapture] = []
    grads = {}
    for name, m in (("bn", bn), ("relu", relu), ("pool", pool)):
        m.register_full_backward_hook(
            lambda _m, gi, go, name=name: grads.update({name: (gi[0], go[0])}))
    capture(model, x, torch.ones(2, 2, 4, 4), loss_fn=lambda out, t: (out * t).sum(),
            vectors=vectors)
    by_name = {v.name: v for v in vectors}
    assert set(by_name) == {"1", "2", "3"}
    for name, key in (("1", "bn"), ("2", "relu"), ("3", "pool")):
        dx, dy = grads[key]
        v = by_name[name]
        assert int(v.dy_stats.nnz[0]) == int((dy != 0).sum()) and v.dy_stats.elems[0] == dy.numel()
        assert int(v.dx_stats.nnz[0]) == int((dx != 0).sum())
    relu_dx, relu_dy = grads["relu"]
    assert int((relu_dx != 0).sum()) < int((relu_dy != 0).sum())  # the ReLU masks it
    hw = HardwareView(**HW, activation_format="bitmap", vector_lanes=8, fused_batchnorm=True)
    v_bn, v_relu, v_pool = vectors

    def bitmap(t):
        return 2 * int((t != 0).sum()) + t.numel() // 8

    stored = stored_gradients(vectors, hw)
    assert stored[0] is v_relu.dy_stats  # the ReLU's incoming gradient, unmasked
    read, write, _ = vector_traffic(v_bn, BP, hw, stored_dy=stored[0])
    bn_in = model[0](x)
    assert read == bitmap(bn_in) + bitmap(grads["relu"][1])
    assert write == bitmap(grads["bn"][0])
    # A design whose convs' BP skips ReLU-masked gradients: the max pool, not a conv, wrote
    # the ReLU's dY, unmasked, and that is what the batch norm reads.
    masked = HardwareView(**{**hw.__dict__, "skip_relu_masked_gradients": True})
    assert stored_gradients(vectors, masked)[0] is v_relu.dy_stats
    read, write, _ = vector_traffic(v_pool, BP, hw, stored_dy=stored[2])
    assert read == bitmap(grads["pool"][1]) + -(-v_pool.in_elems // 8)
    assert write == bitmap(grads["pool"][0])
    assert write < 2 * v_pool.in_elems  # max pooling's dX: one non-zero per window at most


def test_a_relus_gradient_is_read_masked_only_where_a_conv_wrote_it_masked():
    """conv -> BN -> ReLU -> conv: the second conv's BP writes the ReLU's dY. On a design
    whose convs' BP skips ReLU-masked gradients it writes dX only where its input X (the
    ReLU's output) is non-zero: the ReLU's dX, the batch norm's dY, which the batch norm
    reads; otherwise it writes it unmasked, the ReLU's dY, and the batch norm reads that
    (the mask applied as it reads)."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 2, 3, padding=1))
    vectors: list[VectorCapture] = []
    capture(model, torch.randn(2, 3, 8, 8), torch.ones(2, 2, 8, 8),
            loss_fn=lambda out, t: (out * t).sum(), vectors=vectors)
    v_bn, v_relu = vectors
    assert int(v_bn.dy_stats.nnz[0]) < int(v_relu.dy_stats.nnz[0])  # the ReLU masks it
    hw = HardwareView(**HW, activation_format="bitmap", vector_lanes=8, fused_batchnorm=True)
    masked = HardwareView(**{**hw.__dict__, "skip_relu_masked_gradients": True})
    assert stored_gradients(vectors, hw)[0] is v_relu.dy_stats
    assert stored_gradients(vectors, masked)[0] is v_bn.dy_stats


def test_average_pooling_reads_its_gradient_alone_and_max_pooling_its_argmax_too():
    """Max pooling's BP routes each dY to its window's argmax, so it reads one bit an input
    element besides dY; average pooling's spreads dY evenly over the window and reads dY
    alone (the argmax bits had been charged to every pooling)."""
    torch.manual_seed(6)
    x = torch.randn(2, 4, 8, 8)
    hw = HardwareView(**HW, vector_lanes=8)
    reads = {}
    for kind, pool in (("pool", nn.MaxPool2d(2)), ("avgpool", nn.AvgPool2d(2))):
        vectors: list[VectorCapture] = []
        model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), pool, nn.Conv2d(4, 2, 3, padding=1))
        capture(model, x, torch.ones(2, 2, 4, 4), loss_fn=lambda out, t: (out * t).sum(),
                vectors=vectors)
        v, = vectors
        assert v.kind == kind and (v.in_elems, v.out_elems) == (2 * 4 * 8 * 8, 2 * 4 * 4 * 4)
        reads[kind], _, ops = vector_traffic(v, BP, hw)
        assert ops == v.in_elems
    dy = 2 * 2 * 4 * 4 * 4   # dense dY at 2 bytes an element
    assert reads == {"pool": dy + 2 * 4 * 8 * 8 // 8, "avgpool": dy}


def test_a_layer_norm_makes_one_pass_each_way_whatever_its_size():
    """A layer norm's statistics are each token's (a row, on chip): FF reads X once and BP
    reads X and dY once, though the whole tensor is larger than the buffer, where a batch
    norm's (over the batch, per channel) makes a second pass. Ops as a batch norm's: 4 and
    7 an element."""
    torch.manual_seed(7)
    x = torch.randn(4, 64, 32)                       # 4 sequences of 64 tokens, 32 features
    hw = HardwareView(**{**HW, "buffer_bytes": 4096}, vector_lanes=8)
    vectors: list[VectorCapture] = []
    model = nn.Sequential(nn.Linear(32, 32), nn.LayerNorm(32), nn.Linear(32, 2))
    capture(model, x, torch.ones(4, 64, 2), loss_fn=lambda out, t: (out * t).sum(),
            vectors=vectors)
    norm, = vectors
    elems = 4 * 64 * 32
    assert norm.kind == "layernorm" and norm.in_elems == elems and 2 * elems > hw.buffer_bytes
    assert vector_traffic(norm, FF, hw) == (2 * elems, 2 * elems, 4 * elems)
    read, write, ops = vector_traffic(norm, BP, hw)
    assert (read, write, ops) == (2 * 2 * elems, 2 * elems, 7 * elems)
    as_batch_norm = replace(norm, kind="batchnorm")
    assert vector_traffic(as_batch_norm, FF, hw)[0] == 2 * 2 * elems   # two passes


def test_a_gelu_reads_its_input_in_bp_and_is_not_fused():
    """GELU'(x) takes x: BP reads X and dY (2 bytes an element each, dense) and writes dX,
    at 13 ops an element; FF reads X and writes Y at 8 (I-BERT's i-GELU). It is no ReLU: no
    sign bit, and the layer before writes its own output (it had been fused as a ReLU and
    its BP had read dY and a bit an element)."""
    torch.manual_seed(8)
    vectors: list[VectorCapture] = []
    model = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 10))
    capture(model, torch.randn(4, 16), torch.ones(4, 10), loss_fn=lambda out, t: (out * t).sum(),
            vectors=vectors)
    gelu, = vectors
    elems = 4 * 64
    hw = HardwareView(**HW, vector_lanes=8)
    assert gelu.kind == "gelu" and gelu.in_elems == gelu.out_elems == elems
    assert vector_traffic(gelu, FF, hw) == (2 * elems, 2 * elems, 8 * elems)
    assert vector_traffic(gelu, BP, hw) == (2 * 2 * elems, 2 * elems, 13 * elems)
    assert stored_outputs(vectors, hw)[0] is gelu.out_stats     # its own, written by it
    assert stored_gradients(vectors, hw)[0] is gelu.dy_stats
