"""Closed-form checks of capture, counting and tiling on small real layers."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from desim.errors import ConfigError
from mappings.capture import capture
from mappings.counting import BP, FF, WG, SkipPolicy, count_map, exact_sum, nominal_map
from mappings.planner import tile_phase
from mappings.target import HardwareView

N, C, K, H, R = 2, 3, 8, 10, 3
DENSE_HW = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=64 * 1024, element_bytes=2)
SPARSE_HW = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=64 * 1024, element_bytes=2,
                         skip_zero_weights=True, skip_zero_activations=True,
                         skip_zero_gradients=True, skip_pruned_weight_gradients=True,
                         channel_compaction=True, weight_format="bitmap",
                         activation_format="bitmap", selector_entries_per_cycle=256.0)
SKIP_ALL = SkipPolicy(True, True, True, True)


def dense_capture(conv: nn.Conv2d, n: int = N, h: int = H):
    """A conv layer with every X, W and dY non-zero (positive input, dense loss weights)."""
    torch.manual_seed(0)
    with torch.no_grad():
        conv.weight.copy_(torch.rand_like(conv.weight) + 0.1)
    x = torch.rand(n, conv.in_channels, h, h) + 0.1
    x.requires_grad_(True)
    out_shape = conv(x).shape
    weights = torch.rand(out_shape) + 0.1
    (layer,) = capture(conv, x, weights, loss_fn=lambda out, t: (out * t).sum())
    return layer


@pytest.mark.parametrize("phase", [FF, BP, WG])
def test_dense_layer_effectual_macs_equal_nkcrspq(phase):
    layer = dense_capture(nn.Conv2d(C, K, R, bias=False))
    p = H - R + 1
    table, totals = tile_phase(layer, 0, phase, DENSE_HW, SkipPolicy(), pruned_grads_unused=True)
    expected = N * K * C * R * R * p * p
    assert totals["macs"] == totals["effectual_macs"] == totals["processed_macs"] == expected
    assert table["effectual_macs"].sum() == expected == table["macs"].sum()


def test_padding_counts_only_in_bounds_pairs_the_same_in_every_phase():
    layer = dense_capture(nn.Conv2d(C, K, R, padding=1, bias=False))
    in_bounds = N * K * C * (3 * H - 2) ** 2  # per axis: sum over r of (H - |r - 1|)
    for phase in (FF, BP, WG):
        _, totals = tile_phase(layer, 0, phase, DENSE_HW, SkipPolicy(), pruned_grads_unused=True)
        assert totals["macs"] == totals["effectual_macs"] == in_bounds


@pytest.mark.parametrize("stride", [1, 2])
def test_strided_layer_phases_agree(stride):
    layer = dense_capture(nn.Conv2d(C, K, R, stride=stride, bias=False), h=11)
    p = (11 - R) // stride + 1
    for phase in (FF, BP, WG):
        table, totals = tile_phase(layer, 0, phase, SPARSE_HW, SKIP_ALL, pruned_grads_unused=True)
        assert totals["effectual_macs"] == N * K * C * R * R * p * p
        assert table["effectual_macs"].sum() == totals["effectual_macs"]


def test_pruning_whole_channels_removes_exactly_their_macs():
    conv = nn.Conv2d(C * 2, K, R, bias=False)
    layer = dense_capture(conv)
    full = N * K * 2 * C * R * R * (H - R + 1) ** 2
    layer.w_nz[:, :2] = False      # two of six input channels
    layer.w_nz[:3] = False         # three of eight output channels (filters)
    _, totals = tile_phase(layer, 0, FF, SPARSE_HW, SKIP_ALL, pruned_grads_unused=True)
    assert totals["effectual_macs"] == full * (4 / 6) * (5 / 8)
    assert totals["processed_macs"] == totals["effectual_macs"]
    for phase in (BP, WG):
        table, totals = tile_phase(layer, 0, phase, SPARSE_HW, SKIP_ALL, pruned_grads_unused=True)
        assert totals["effectual_macs"] == full * (4 / 6) * (5 / 8)
        assert table["effectual_macs"].sum() == totals["effectual_macs"]


@pytest.mark.parametrize("hw", [DENSE_HW, SPARSE_HW], ids=["dense", "sparse"])
def test_per_tile_counts_sum_to_the_layer_total_on_a_sparse_network(hw):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(24 * 6 * 6, 10))
    x, y = torch.randn(4, 3, 12, 12), torch.randint(0, 10, (4,))
    with torch.no_grad():
        model[2].weight[torch.rand_like(model[2].weight) < 0.6] = 0
    layers = capture(model, x, y)
    policy = SkipPolicy() if hw is DENSE_HW else SKIP_ALL
    for i, layer in enumerate(layers):
        for phase in (FF, BP, WG):
            table, totals = tile_phase(layer, i, phase, hw, policy, pruned_grads_unused=True)
            assert table["effectual_macs"].sum() == totals["effectual_macs"]
            assert table["processed_macs"].sum() == totals["processed_macs"]
            assert totals["effectual_macs"] <= totals["processed_macs"] <= totals["macs"]
            assert (table["busiest_pe_macs"] * hw.pes >= table["processed_macs"]).all()


def test_dense_tile_time_is_the_busiest_pe_in_closed_form(whole_phase_tiles):
    # K=8 over 4 clusters: 2 channels a cluster; 1 image of 8x8 outputs = 64 positions,
    # dealt to 4 PEs: 16 positions each, per channel: 2 * 16 * C*R*R MACs on every PE.
    layer = dense_capture(nn.Conv2d(C, K, R, bias=False), n=1)
    hw = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=64 * 1024, element_bytes=2)
    table, _ = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
    assert len(table) == 1
    assert table["busiest_pe_macs"][0] == 2 * 16 * C * R * R
    assert table["active_clusters"][0] == 4


def test_dense_traffic_in_closed_form(whole_phase_tiles):
    layer = dense_capture(nn.Conv2d(C, K, R, bias=False), n=1)
    table, _ = tile_phase(layer, 0, FF, DENSE_HW, SkipPolicy(), pruned_grads_unused=True)
    eb = 2
    weights, inputs, outputs = K * C * R * R * eb, C * H * H * eb, K * (H - R + 1) ** 2 * eb
    assert table["dram_read_bytes"].sum() == weights + inputs
    assert table["dram_write_bytes"].sum() == outputs


def test_channel_compaction_balances_what_pruning_leaves(whole_phase_tiles):
    layer = dense_capture(nn.Conv2d(C, K, R, bias=False), n=1)
    layer.w_nz[:4] = False  # first half of the filters: without compaction 2 clusters idle
    loose = HardwareView(**{**SPARSE_HW.__dict__, "channel_compaction": False})
    t_loose, _ = tile_phase(layer, 0, FF, loose, SKIP_ALL, pruned_grads_unused=True)
    t_tight, _ = tile_phase(layer, 0, FF, SPARSE_HW, SKIP_ALL, pruned_grads_unused=True)
    assert t_tight["processed_macs"].sum() == t_loose["processed_macs"].sum()
    assert t_tight["busiest_pe_macs"].sum() * 2 == t_loose["busiest_pe_macs"].sum()


@pytest.mark.parametrize("phase", [FF, WG])
def test_channel_compaction_leaves_pruned_input_channels_unread(phase, whole_phase_tiles):
    """A 6 -> 8 conv on 10 x 10 maps, batch 2, two of its six input channels pruned (W[:,
    c] all zero), on a dense-data design with channel compaction, one tile: FF's and WG's
    stream X is read from DRAM and multicast for the 4 active channels only, 2 x 4 x 10 x 10
    x 2 B = 1,600 B (it had been all 6: 2,400 B), and the processed MACs are theirs, 2 x 8 x
    4 x 9 x 8 x 8. The nominal MACs stay the whole layer's, 6 channels' (N K C R S P Q),
    in the totals and over the tiles. Without compaction, all 6 channels' X is read."""
    layer = dense_capture(nn.Conv2d(6, K, R, bias=False), n=2)
    layer.w_nz[:, [1, 4]] = False
    flags = dict(skip_zero_weights=True, skip_pruned_weight_gradients=True)
    tight = HardwareView(**{**DENSE_HW.__dict__, **flags, "channel_compaction": True})
    loose = HardwareView(**{**DENSE_HW.__dict__, **flags})
    policy = SkipPolicy(weights=True, pruned_weight_gradients=True)
    p = H - R + 1
    x_bytes = {ch: 2 * ch * H * H * 2 for ch in (4, 6)}
    for hw, channels in ((tight, 4), (loose, 6)):
        table, totals = tile_phase(layer, 0, phase, hw, policy, pruned_grads_unused=True)
        assert len(table) == 1
        stream = table["multicast_bytes"].sum()
        assert stream == x_bytes[channels]
        if phase == FF:
            weights = K * channels * R * R * 2
            assert table["dram_read_bytes"].sum() == x_bytes[channels] + weights
        processed = totals["processed_macs"]
        assert processed == table["processed_macs"].sum() == 2 * K * 4 * R * R * p * p
        assert totals["macs"] == table["macs"].sum() == 2 * K * 6 * R * R * p * p


def test_a_tile_larger_than_the_buffer_is_a_config_error():
    layer = dense_capture(nn.Conv2d(C, K, R, bias=False))
    tiny = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=64, element_bytes=2)
    with pytest.raises(ConfigError, match="global buffer"):
        tile_phase(layer, 0, FF, tiny, SkipPolicy(), pruned_grads_unused=True)


def test_wg_splits_the_batch_when_one_chunk_does_not_fit():
    layer = dense_capture(nn.Conv2d(C, K, R, bias=False), n=4)
    small = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=2600, element_bytes=2)
    table, totals = tile_phase(layer, 0, WG, small, SkipPolicy(), pruned_grads_unused=True)
    assert totals["effectual_macs"] == 4 * K * C * R * R * (H - R + 1) ** 2
    assert table["effectual_macs"].sum() == totals["effectual_macs"]
    # dW leaves once, after the last chunk
    assert table["dram_write_bytes"].sum() == K * C * R * R * 2
    assert np.count_nonzero(table["dram_write_bytes"]) < len(table)


def test_wg_row_chunks_count_exactly_what_the_whole_layer_counts():
    # one image's operands do not fit: WG is split into runs of output rows, padded explicitly
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
    x, w = torch.randn(2, 3, 16, 16), torch.randn(2, 8, 16, 16)
    layers = capture(model, x, w, loss_fn=lambda out, t: (out * t).sum())
    layer = layers[1]
    big = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=1 << 20, element_bytes=2)
    small = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=1500, element_bytes=2)
    whole, t_whole = tile_phase(layer, 1, WG, big, SkipPolicy(), pruned_grads_unused=True)
    rows, t_rows = tile_phase(layer, 1, WG, small, SkipPolicy(), pruned_grads_unused=True)
    assert len(rows) > len(whole)
    assert t_rows.pop("tile_buffer_bytes") <= 1500 < t_whole.pop("tile_buffer_bytes")
    # the plans differ (layers.csv's `mapping`): 4 chunks of runs of rows against 2 of
    # one image each
    assert t_rows.pop("mapping").endswith("4 reduction chunks, innermost")
    assert t_whole.pop("mapping") == ("8 ch x 8 input channels, weight stationary, 2 "
                                      "reduction chunks, innermost")
    assert t_rows == t_whole
    assert t_whole["macs"] == 2 * 8 * 8 * (3 * 16 - 2) ** 2  # in-bounds pairs, padding 1
    assert rows["effectual_macs"].sum() == t_whole["effectual_macs"]
    assert rows["macs"].sum() == t_whole["macs"]
    assert rows["dram_write_bytes"].sum() == whole["dram_write_bytes"].sum() == 8 * 8 * 9 * 2


def test_packed_capture_keeps_one_bit_an_element_and_round_trips():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 9 * 9, 10))
    x, y = torch.randn(3, 3, 9, 9), torch.randint(0, 10, (3,))
    plain = capture(model, x, y)
    packed = capture(model, x, y, packed=True)
    for a, b in zip(plain, packed, strict=True):
        restored = b.unpack()
        for key in ("x_nz", "w_nz", "dy_nz"):
            assert torch.equal(getattr(a, key), getattr(restored, key)), key
            bitmap = getattr(b, key)
            assert bitmap.bits.nbytes == -(-bitmap.numel // 8)   # one bit an element
            assert bitmap.nnz == int(getattr(a, key).sum())
        assert (restored.stride, restored.padding, restored.kind) == (a.stride, a.padding, a.kind)


def test_attention_matmul_is_captured_and_counted_exactly():
    from mappings.models.common import MatMul

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.scores = MatMul()

        def forward(self, qk):
            return self.scores(qk[0], qk[1].transpose(-2, -1))

    torch.manual_seed(5)
    q = torch.relu(torch.randn(2, 3, 5, 4))                    # (batch, heads, seq, dim)
    k = torch.relu(torch.randn(2, 3, 5, 4))
    g = torch.randn(2, 3, 5, 5)
    qk = torch.stack([q, k]).requires_grad_()
    (layer,) = capture(Attn(), qk, g, loss_fn=lambda out, t: (out * t).sum())
    assert layer.kind == "matmul" and layer.groups == 6 and not layer.weight_is_parameter
    assert layer.macs == 6 * 5 * 5 * 4                        # groups x M x N x K
    qn, kn = (q != 0).float(), (k != 0).float()
    ff = int((qn @ kn.transpose(-2, -1)).sum())               # pairs of non-zeros
    dq = int(((g != 0).float() @ kn).sum())                      # BP: dQ = dS K
    dk = int(((g != 0).float().transpose(-2, -1) @ qn).sum())    # WG: dK = dS^T Q
    for phase, expected in ((FF, ff), (BP, dq), (WG, dk)):
        table, totals = tile_phase(layer, 0, phase, DENSE_HW, SkipPolicy(),
                                   pruned_grads_unused=True)
        assert totals["effectual_macs"] == expected
        assert totals["macs"] == 6 * 5 * 5 * 4
        assert table["effectual_macs"].sum() == expected
    # K is an activation: read in the activation format, whatever the weights' (it had been
    # read in csc, 836 B where its producer wrote 512, in a transformer's attention)
    from dataclasses import replace
    for phase in (FF, BP):
        reads = [tile_phase(layer, 0, phase, replace(DENSE_HW, weight_format=fmt),
                            SkipPolicy(), pruned_grads_unused=True)[0]["dram_read_bytes"].sum()
                 for fmt in ("dense", "csc", "csr", "coo")]
        assert reads == [reads[0]] * 4


def test_unsupported_layers_are_config_errors_naming_the_layer():
    x, y = torch.randn(1, 3, 8, 8), torch.randint(0, 4, (1,))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=(2, 1)), nn.Flatten(), nn.LazyLinear(4))
    model(x)
    with pytest.raises(ConfigError, match=r"layer 0: non-square stride \(2, 1\)"):
        capture(model, x, y)
    same = nn.Sequential(nn.Conv2d(3, 4, 3, padding="same"), nn.Flatten(), nn.LazyLinear(4))
    same(x)
    with pytest.raises(ConfigError, match="layer 0: padding 'same'"):
        capture(same, x, y)


def test_non_square_kernels_count_exactly():
    layer = dense_capture(nn.Conv2d(C, K, (3, 1), bias=False))
    expected = N * K * C * 3 * 1 * (H - 3 + 1) * H
    for phase in (FF, BP, WG):
        table, totals = tile_phase(layer, 0, phase, DENSE_HW, SkipPolicy(),
                                   pruned_grads_unused=True)
        assert totals["effectual_macs"] == expected == table["effectual_macs"].sum()


@pytest.mark.parametrize("stride,padding,dilation,groups",
                         [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), (2, 1, 1, 2), (1, 1, 1, 4)])
def test_nominal_map_broadcast_equals_counting_every_pair(stride, padding, dilation, groups):
    """nominal_map counts one channel of one image and broadcasts; it must equal the full
    count with every operand all ones, output by output, in every phase; its row totals
    (`rows`) the full count's, int64."""
    conv = nn.Conv2d(4, K, (3, 2), stride=stride, padding=padding, dilation=dilation,
                     groups=groups, bias=False)
    layer = dense_capture(conv, h=9)
    for phase in (FF, BP, WG):
        full = count_map(layer, phase, x_nz=False, w_nz=False, dy_nz=False)
        assert torch.equal(nominal_map(layer, phase), full)
        rows = nominal_map(layer, phase, rows=True)
        assert rows.dtype == torch.int64 and rows.is_contiguous()
        assert torch.equal(rows, full.sum(3, keepdim=True, dtype=torch.int64))
    p, q = layer.dy_nz.shape[2:]
    assert int(nominal_map(layer, FF).sum()) == sum(
        1 for pi in range(p) for qi in range(q) for r in range(3) for s in range(2)
        if 0 <= pi * stride - padding + r * dilation < 9
        and 0 <= qi * stride - padding + s * dilation < 9) * N * K * (4 // groups)


def test_loop_order_follows_the_operands_current_sparsity():
    """Trainer's sparsity-adaptive dataflow: the tiler estimates traffic from each operand's
    bytes in its format. Weights 1 in 16 kept, bitmap, fp16: (2/16 + 1/8) / 2 = 0.125 of
    their dense bytes; X dense. With an 8 KiB buffer neither operand fits whole, and with
    DRAM the bound (a fast NoC port) the larger one stays: dense, the weights (73,728 B
    against X's 18,432), rows inside; bitmap, X (the weights now take 9,216 B), rows
    outside."""
    from mappings.tiling import _compression, choose_tile, phase_shape

    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)
    torch.manual_seed(0)
    mask = torch.zeros(64 * 64 * 9)
    mask[::16] = 1
    with torch.no_grad():
        conv.weight.copy_((torch.rand_like(conv.weight) + 0.1) * mask.reshape(conv.weight.shape))
    x = (torch.rand(4, 64, 6, 6) + 0.1).requires_grad_(True)
    out = conv(x)
    (layer,) = capture(conv, x, torch.rand(out.shape) + 0.1, loss_fn=lambda o, t: (o * t).sum())
    orders = {}
    for fmt in ("dense", "bitmap"):
        hw = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=8 * 1024, element_bytes=2,
                          local_buffer_bytes=1024, weight_format=fmt, skip_zero_weights=True,
                          noc_port_bytes_per_cycle=1e6)
        ps, win = phase_shape(layer, FF, hw)
        assert _compression(ps, hw, True) == ((1.0, 1.0) if fmt == "dense" else (0.125, 1.0))
        orders[fmt] = choose_tile(ps, win, 64, 4, 6, 6, hw, "test", weights=True)[0].rows_outer
    assert orders == {"dense": False, "bitmap": True}


def test_the_tile_follows_the_mapping_objective():
    """With DRAM priced high (100 pJ/B against 1 pJ/B for every on-chip byte), the energy
    objective takes the tile that reads less from DRAM though it sends more over the NoC
    and runs longer; the delay objective takes the faster one. Each is the better of the
    two by its own measure, on the full plans' estimates."""
    from dataclasses import replace

    from mappings.pipeline import estimated_cycles, estimated_pj
    from mappings.planner import tile_phase

    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)
    torch.manual_seed(0)
    x = (torch.rand(4, 64, 16, 16) + 0.1).requires_grad_(True)
    out = conv(x)
    (layer,) = capture(conv, x, torch.rand(out.shape) + 0.1, loss_fn=lambda o, t: (o * t).sum())
    base = HardwareView(clusters=16, pes_per_cluster=16, buffer_bytes=32 * 1024,
                        element_bytes=2, local_buffer_bytes=1024, dram_bytes_per_cycle=8,
                        noc_port_bytes_per_cycle=8, mac_pj=1.0, dram_pj_per_byte=100.0,
                        glb_pj_per_byte=1.0, noc_pj_per_byte=1.0, local_pj_per_byte=1.0)
    plans = {}
    for objective in ("delay", "energy"):
        hw = replace(base, objective=objective)
        table, _ = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=False)
        cycles = estimated_cycles(table, hw)
        plans[objective] = (int(table["dram_read_bytes"].sum()),
                            int((table["multicast_bytes"] + table["unicast_bytes"]).sum()),
                            cycles, estimated_pj(table, hw, cycles))
    (dram_d, sent_d, cycles_d, pj_d), (dram_e, sent_e, cycles_e, pj_e) = plans.values()
    assert dram_e < dram_d and sent_e > sent_d
    assert cycles_d < cycles_e and pj_e < pj_d


def test_weight_generator_reads_only_tracked_weights_from_dram(whole_phase_tiles):
    """DropBack proper: every weight non-zero, 1 in 4 tracked. With a weight generator the
    weights' DRAM bytes are the tracked ones in bitmap format (1024 fp16 values + a 4096-bit
    map = 2560 B) instead of all of them (8192 + 512 = 8704 B); the other 3072 non-zero
    weights are regenerated, and the PEs still receive all 8704 B."""
    from dataclasses import replace

    lin = nn.Linear(64, 64, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.rand_like(lin.weight) + 0.1)
    x = (torch.rand(2, 64) + 0.1).requires_grad_(True)
    (layer,) = capture(lin, x, torch.rand(2, 64) + 0.1, loss_fn=lambda o, t: (o * t).sum())
    tracked = torch.zeros(64 * 64, dtype=torch.bool)
    tracked[::4] = True
    layer = replace(layer, w_tracked=tracked.reshape(layer.w_nz.shape))
    base = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=64 * 1024, element_bytes=2,
                        skip_zero_weights=True, weight_format="bitmap")
    for hw, dram, regenerated in ((base, 8704, 0),
                                  (replace(base, weight_generator=32.0), 2560, 3072)):
        table, totals = tile_phase(layer, 0, FF, hw, SkipPolicy(weights=True),
                                   pruned_grads_unused=False)
        assert totals["weight_dram_bytes"] == dram
        assert table["regenerated_weights"].sum() == regenerated
        assert table["unicast_bytes"].sum() == 8704


@pytest.mark.parametrize("local_kib, resent", [(0, 1024), (0.25, 512), (1, 0)])
def test_clusters_keep_what_fits_of_an_unchanged_block(monkeypatch, local_kib, resent):
    """A linear layer's 8 x 64 fp16 weights (1,024 B) stay while 4 tiles of one image each go
    by (weights outside). Each of 4 clusters keeps up to half its local buffer of its share:
    with none, every tile receives the whole block again; with 256 B (128 B kept each, 512 B
    in all) the later tiles receive the 512 B that did not stay; with 1 KiB, nothing."""
    from mappings import planner
    from mappings.tiling import TileShape

    plans = planner._reduction_plans
    monkeypatch.setattr(planner, "choose_tile", lambda *a, **k: [TileShape(8, 1, 1, False)])
    monkeypatch.setattr(planner, "_reduction_plans", lambda *a, **k: plans(*a, **k)[:1])
    lin = nn.Linear(64, 8, bias=False)
    x = (torch.rand(4, 64) + 0.1).requires_grad_(True)
    (layer,) = capture(lin, x, torch.rand(4, 8) + 0.1, loss_fn=lambda o, t: (o * t).sum())
    hw = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=64 * 1024, element_bytes=2,
                      local_buffer_bytes=int(local_kib * 1024))
    table, _ = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=False)
    assert table["unicast_bytes"].tolist() == [1024, resent, resent, resent]
    assert table["multicast_bytes"].tolist() == [128] * 4   # each tile's own image


def test_a_one_level_selector_scans_the_channel_operands_map_only(whole_phase_tiles):
    """One FF tile of a dense conv (weights bitmap, K x C x R lines of S; X bitmap): level 1
    scans the weights' K*C*R kernel lines, level 2 also X's N*C*H*H elements."""
    from dataclasses import replace

    layer = dense_capture(nn.Conv2d(C, K, R, bias=False))
    entries = {levels: int(tile_phase(layer, 0, FF, replace(SPARSE_HW, selector_levels=levels),
                                      SKIP_ALL, pruned_grads_unused=True)[0]
                           ["selector_entries"].sum()) for levels in (1, 2)}
    assert entries == {1: K * C * R, 2: K * C * R + N * C * H * H}


def test_skipping_two_operands_zeros_needs_something_to_pair_them():
    """HPPU without its selector (or with level 1 only) would pair weights and activations
    for free: refused, as it was 2.4% faster and cheaper than with it."""
    from pathlib import Path

    from desim.experiment import load_arch

    arch = Path(__file__).resolve().parents[1] / "configs" / "arch" / "hppu.yaml"
    for sets, have in ((["selector=null"], "with no selector"),
                       (["selector.levels=1"], "with a selector of levels 1")):
        with pytest.raises(ConfigError, match=f"{have} .*and no index_matching"):
            load_arch(arch, sets)
    paired = load_arch(arch, ["selector.levels=1", "index_matching={bits_per_cycle: 128}"])
    assert paired.selector.levels == 1
    load_arch(arch, ["selector=null", "sparsity.skip_zero_activations=false",
                     "sparsity.skip_zero_gradients=false"])  # weights alone: nothing to pair


def test_exact_sum_is_the_int64_sum_on_either_of_its_routes():
    """A map's sums in int32 when none can reach 2**31 (a large map's, or one whose largest
    value is given), else in int64: the same sums."""
    torch.manual_seed(0)
    small = torch.randint(0, 100, (4, 1 << 19), dtype=torch.int32)   # the int32 route
    big = torch.full((2, 1 << 20), 2**24 - 1, dtype=torch.int32)     # sums past 2**31
    for counts in (small, big, small > 50, small[:1, :10]):
        assert torch.equal(exact_sum(counts, 1), counts.sum(1, dtype=torch.int64))
    for counts, largest in ((small[:1, :10], 99), (big, 2**24 - 1)):  # a bound given
        assert torch.equal(exact_sum(counts, 1, largest=largest),
                           counts.sum(1, dtype=torch.int64))


def test_exact_sum_takes_the_int64_route_when_a_sum_can_reach_2_31():
    """Two terms bounded by 2**30 can sum to 2**31, one past int32: summed in int64."""
    counts = torch.tensor([[2**30, 2**30]], dtype=torch.int32)
    assert exact_sum(counts, 1, largest=2**30).tolist() == [2**31]


def _one_by_one_layer():
    """A 1x1 conv, N = 1, C = K = 2, on a 1 x 1 map: X = [1, 0] over C, W = [[1, 1], [0, 1]]
    (K x C), dY = [1, 0] over K (non-zero maps)."""
    from mappings.capture import LayerCapture

    return LayerCapture("l", "conv", torch.tensor([1, 0], dtype=torch.bool).reshape(1, 2, 1, 1),
                        torch.tensor([[1, 1], [0, 1]], dtype=torch.bool).reshape(2, 2, 1, 1),
                        torch.tensor([1, 0], dtype=torch.bool).reshape(1, 2, 1, 1))


@pytest.mark.parametrize("phase, policy, processed", [
    # FF, y[k] = sum_c x[c] w[k, c]: 4 pairs; W non-zero in 3, X in 2 (c = 0, for each k),
    # both in 1 (k = 0, c = 0)
    (FF, SkipPolicy(weights=True), 3),
    (FF, SkipPolicy(activations=True), 2),
    (FF, SkipPolicy(weights=True, activations=True), 1),
    # BP, dx[c] = sum_k w[k, c] dy[k]: dY non-zero in 2 (k = 0, each c), W in 3, both in 2
    (BP, SkipPolicy(gradients=True), 2),
    (BP, SkipPolicy(weights=True), 3),
    (BP, SkipPolicy(weights=True, gradients=True), 2),
    # WG, dw[k, c] = x[c] dy[k]: X non-zero in 2 (c = 0), dY in 2 (k = 0), both in 1; the
    # kept weights' gradients only: 3 (W's non-zeros)
    (WG, SkipPolicy(activations=True), 2),
    (WG, SkipPolicy(gradients=True), 2),
    (WG, SkipPolicy(activations=True, gradients=True), 1),
    (WG, SkipPolicy(pruned_weight_gradients=True), 3),
    # an operand skipped in the phases named only (Procrustes: X in WG, not in FF)
    (FF, SkipPolicy(weights=True, activations=("WG",)), 3),
    (WG, SkipPolicy(weights=True, activations=("WG",)), 2),
    (FF, SkipPolicy(activations=("FF",)), 2),
    (WG, SkipPolicy(activations=("FF",)), 4),
    (BP, SkipPolicy(gradients=("WG",)), 4),
    (WG, SkipPolicy(gradients=("WG",)), 2),
    (WG, SkipPolicy(gradients=("BP",)), 4),
])
def test_hardware_skips_only_the_zeros_its_policy_detects(phase, policy, processed):
    from mappings.counting import processed_map

    layer = _one_by_one_layer()
    assert int(nominal_map(layer, phase).sum()) == 4
    counts = processed_map(layer, phase, policy, pruned_grads_unused=True)
    assert int(counts.sum()) == processed
    if policy.pruned_weight_gradients:  # an algorithm that uses them: none may be skipped
        assert int(processed_map(layer, phase, policy, pruned_grads_unused=False).sum()) == 4



def test_a_depthwise_wg_reads_each_channels_input_once():
    """Depthwise 3x3 conv, 256 channels, 32 x 32, one image, on dense.yaml: WG's tiles take
    128 channels a block, the two blocks in turn within each of 4 runs of rows. Each block's
    channels need their own input rows: dY once (256 x 32 x 32 x 2 B = 524,288) and X once
    with its halos (256 x 38 rows x 32 x 2 B = 622,592), 1,146,880 B. A tile whose channels
    moved to the other groups while its rows stayed had been taken as holding their input
    already: 835,584 B, half of X never read."""
    from arch.accelerator import Accelerator
    from desim.experiment import load_arch
    from desim.hardware_view import hardware_view
    from desim.module import Simulator

    dense = Path(__file__).resolve().parents[1] / "configs" / "arch" / "dense.yaml"
    hw = hardware_view(Accelerator(Simulator(), load_arch(dense)))
    layer = dense_capture(nn.Conv2d(256, 256, 3, padding=1, groups=256, bias=False), n=1, h=32)
    table, _ = tile_phase(layer, 0, WG, hw, SkipPolicy(), pruned_grads_unused=True)
    assert table["dram_read_bytes"].sum() == 256 * 32 * 32 * 2 + 256 * 38 * 32 * 2


@pytest.mark.parametrize("kept_gradients", [True, False])
def test_wg_writes_the_zero_gradients_of_the_channels_compaction_leaves_untiled(
        kept_gradients, whole_phase_tiles):
    """A 3 -> 8 conv, 3 x 3, batch 2, every weight kept, whose dY is zero in output channels
    0 to 2 (a dead channel behind it): with channel compaction WG tiles the 5 others only
    (their processed MACs, 2 x 5 x 3 x 9 x 8 x 8), but the update reads dW of every weight
    it keeps, so WG writes it whole: 8 x 3 x 9 fp16 values, 432 bytes (it had written the
    5 tiled channels' 270), whether dense dW or the kept weights' in a dense weight format
    (`kept_gradients`: WG skips pruned weights' gradients), to DRAM. The zeros are read
    out of one zeroed burst of the buffer: no buffer writes and no room in the tiles (made
    in the tiles, 466 KB of them had overflowed a 64 KiB buffer's halves on HPPU)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(C, K, R, bias=False)
    x = torch.rand(N, C, H, H) + 0.1
    x.requires_grad_(True)
    weights = torch.rand(conv(x).shape) + 0.1
    weights[:, :3] = 0.0   # dY of channels 0..2: exactly zero
    (layer,) = capture(conv, x, weights, loss_fn=lambda out, t: (out * t).sum())
    assert not layer.dy_nz[:, :3].any() and layer.dy_nz[:, 3:].all() and layer.w_nz.all()
    hw = HardwareView(**{**SPARSE_HW.__dict__, "weight_format": "dense"})
    table, totals = tile_phase(layer, 0, WG, hw, SKIP_ALL, pruned_grads_unused=kept_gradients)
    p = H - R + 1
    assert totals["processed_macs"] == table["processed_macs"].sum() == N * 5 * C * R * R * p * p
    assert totals["output_bytes"] == table["dram_write_bytes"].sum() == K * C * R * R * 2
    assert table["gather_bytes"].sum() == 5 * C * R * R * 2   # the PEs make the tiled ones'
    made_in_buffer = table["dram_read_bytes"] + table["gather_bytes"]
    assert table["glb_write_bytes"].tolist() == made_in_buffer.tolist()
    assert (table["held_bytes"] <= totals["tile_buffer_bytes"]).all()
    kept_on_chip = replace(hw, output_to_dram=False)
    table, totals = tile_phase(layer, 0, WG, kept_on_chip, SKIP_ALL,
                               pruned_grads_unused=kept_gradients)
    assert totals["output_bytes"] == K * C * R * R * 2 and table["dram_write_bytes"].sum() == 0


def test_a_wg_whose_every_dy_channel_is_zero_writes_its_zero_gradients(whole_phase_tiles):
    """The same conv with dY zero in every channel: channel compaction leaves WG nothing to
    tile, but the update still reads dW whole, so WG writes its 432 zero bytes from one
    tile that reads, sends and computes nothing (it had written none). The accelerator
    runs that tile: DRAM's write of 432 bytes."""
    from tests.test_phase_overlap import _replay

    torch.manual_seed(0)
    conv = nn.Conv2d(C, K, R, bias=False)
    x = (torch.rand(N, C, H, H) + 0.1).requires_grad_(True)
    (layer,) = capture(conv, x, torch.zeros(conv(x).shape),
                       loss_fn=lambda out, t: (out * t).sum())
    assert not layer.dy_nz.any()
    hw = HardwareView(**{**SPARSE_HW.__dict__, "weight_format": "dense"})
    table, totals = tile_phase(layer, 3, WG, hw, SKIP_ALL, pruned_grads_unused=True)
    assert len(table) == 1 and (table["layer"][0], table["phase"][0]) == (3, WG)
    assert totals["output_bytes"] == table["dram_write_bytes"].sum() == K * C * R * R * 2
    for column in ("dram_read_bytes", "processed_macs", "glb_write_bytes", "held_bytes",
                   "multicast_bytes", "unicast_bytes", "gather_bytes"):
        assert table[column].sum() == 0
    acc = _replay([table])
    assert acc.env.now > 0
