"""What a tile's work is dealt to the clusters by (`mapping.partition`). By rows: each cluster
takes a run of the tile's output rows for every channel of the tile, is sent its rows' input
window (unicast, halos overlapping) and the channel operand by multicast. By reduction: each
cluster takes a slice of the reduction for every output of the tile, is sent its slice of
both operands (unicast) and sends back partial sums, which the global buffer adds. Closed
forms on small dense layers, and the choices `auto` and a list make."""

from dataclasses import replace

import numpy as np
import pytest
from torch import nn

from mappings import planner
from mappings.counting import BP, FF, WG, SkipPolicy
from mappings.pipeline import compute_cycles
from mappings.planner import tile_phase
from mappings.tiling import TileShape, cluster_blocks
from tests.test_counting import DENSE_HW, dense_capture


def _runs(*args):
    return [a.tolist() for a in cluster_blocks(*args)]


def test_cluster_blocks_deal_each_block_s_rows_evenly():
    # 2 whole images of 8 rows to 4 clusters: 2 clusters an image, 4 rows each
    assert _runs(2, 8, 2, 8, 4) == [[0, 0, 1, 1], [1, 1, 2, 2], [0, 4, 0, 4], [4, 8, 4, 8],
                                    [0]]
    # 8 whole images to 4 clusters: 2 images each; a block of one image to 3 clusters of 3
    assert _runs(8, 5, 8, 5, 4) == [[0, 2, 4, 6], [2, 4, 6, 8], [0] * 4, [5] * 4, [0]]
    assert _runs(1, 10, 2, 10, 3) == [[0, 0, 0, 1, 1, 1], [1, 1, 1, 2, 2, 2],
                                      [0, 3, 6, 0, 3, 6], [3, 6, 10, 3, 6, 10], [0, 3]]
    # runs of 3 rows (the last of each image 1 row) to 16 clusters: a row each
    i0, i1, r0, r1, first = cluster_blocks(1, 3, 1, 7, 16)
    assert r0.tolist() == [0, 1, 2, 3, 4, 5, 6] and (r1 - r0).tolist() == [1] * 7
    assert first.tolist() == [0, 3, 6]


def _one_tile(monkeypatch, shape):
    """tile_phase with the tile search answering `shape`, one reduction plan."""
    plans = planner._reduction_plans
    monkeypatch.setattr(planner, "choose_tile", lambda *a, **k: [shape])
    monkeypatch.setattr(planner, "_reduction_plans", lambda *a, **k: plans(*a, **k)[:1])


@pytest.mark.parametrize("partition", ["channels", "rows"])
def test_one_tile_dealt_by_rows_or_channels(monkeypatch, partition):
    """A dense 3 -> 8 channel 3x3 conv on 2 images of 10 x 10 (8 x 8 outputs), one FF tile
    of every channel and both images, 4 clusters of 4 PEs, fp16. By rows: 4 runs of 4
    output rows, each needing 6 input rows (3 x 6 x 10 elements, 360 B): 1,440 B unicast;
    the weights (8 x 3 x 3 x 3, 432 B) multicast. By channels: X (1,200 B) multicast, the
    weights unicast. Either way DRAM reads X and W once, and the 27,648 MACs (2 x 8 x 64
    outputs of 27) fall 1,728 to each of the 16 PEs."""
    layer = dense_capture(nn.Conv2d(3, 8, 3, bias=False))
    _one_tile(monkeypatch, TileShape(8, 2, 8, False, partition))
    hw = replace(DENSE_HW, partitions=(partition,))
    table, totals = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
    assert totals["mapping"] == "8 ch x 2 images, weight stationary, whole reduction"
    by_rows = partition == "rows"
    assert table["multicast_bytes"].tolist() == [432 if by_rows else 1200]
    assert table["unicast_bytes"].tolist() == [1440 if by_rows else 432]
    assert table["glb_read_bytes"].tolist() == [1872 if by_rows else 1632]
    assert table["dram_read_bytes"].tolist() == [1200 + 432]
    assert table["active_clusters"].tolist() == [4]
    assert table["processed_macs"].tolist() == [27_648]
    assert table["busiest_pe_macs"].tolist() == [1_728]


def test_one_tile_dealt_by_reduction(monkeypatch):
    """A dense 4 -> 8 channel 3x3 conv on 2 images of 10 x 10 (8 x 8 outputs), one FF tile
    of every channel and both images, its 4 input channels dealt to 4 clusters of 4 PEs,
    fp16. Each cluster is sent its channel of X (2 x 100 elements, 400 B) and of W (8 x 9,
    144 B): 2,176 B unicast, nothing multicast; it computes a partial sum of each of the
    1,024 outputs, 9 MACs each, 256 outputs a PE: 2,304 MACs its busiest PE. The 4 x 1,024
    partial sums come back (8,192 B), and the buffer adds the 3 x 1,024 after each
    output's first; it writes the 1,024 final outputs to DRAM (2,048 B). The tile holds
    its operands and a running sum of each output, 2 B: 2,176 + 2,048 B (it had counted
    each slice's room for the outputs, 4 x 2,048 B)."""
    layer = dense_capture(nn.Conv2d(4, 8, 3, bias=False), n=2, h=10)
    monkeypatch.setattr(planner, "choose_tile",
                        lambda *a, **k: [TileShape(8, 2, 8, False, "reduction")])
    hw = replace(DENSE_HW, partitions=("reduction",))
    table, totals = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
    assert totals["mapping"] == ("8 ch x 2 images, weight stationary, reduction across 4 "
                                 "clusters")
    assert table["dealt"].tolist() == [2] and table["active_clusters"].tolist() == [4]
    assert table["multicast_bytes"].tolist() == [0]
    assert table["unicast_bytes"].tolist() == [2_176] == table["glb_read_bytes"].tolist()
    assert table["dram_read_bytes"].tolist() == [2_176]
    assert table["weight_read_bytes"].tolist() == [576]
    assert table["gather_bytes"].tolist() == [8_192]
    assert table["reduced_psums"].tolist() == [3_072]
    assert table["glb_write_bytes"].tolist() == [2_176 + 8_192]
    assert table["dram_write_bytes"].tolist() == [2_048] and totals["output_bytes"] == 2_048
    assert table["processed_macs"].tolist() == [36_864] == table["macs"].tolist()
    assert table["busiest_pe_macs"].tolist() == [2_304]
    assert table["held_bytes"].tolist() == [2_176 + 2_048]


@pytest.mark.parametrize("phase, slices", [(FF, 4), (BP, 2), (WG, 0)])
def test_a_reduction_fills_the_clusters_that_channels_leave_idle(phase, slices):
    """A 1x1 conv, 64 -> 2 channels, on one 4 x 4 image, 4 clusters of 4 PEs, memory that
    binds nothing (64 B a cycle), under the delay objective. FF by channels: 2 clusters
    busy, each PE 4 outputs of 64 MACs, 256 MACs; dealt by reduction, 16 input channels a
    cluster, each PE 4 outputs of both channels of 16 MACs: 128, so the list chooses it.
    BP reduces over the 2 output channels: 2 slices at most, and by channels the 64 input
    channels fill every cluster already: channels stay. WG reduces over the one image: no
    slices, channels alone are tried."""
    layer = dense_capture(nn.Conv2d(64, 2, 1, bias=False), n=1, h=4)
    fast = replace(DENSE_HW, objective="delay", dram_bytes_per_cycle=64.0,
                   noc_port_bytes_per_cycle=64.0)
    by_channels, _ = tile_phase(layer, 0, phase, fast, SkipPolicy(), pruned_grads_unused=True)
    chosen, totals = tile_phase(layer, 0, phase, replace(
        fast, partitions=("channels", "reduction")), SkipPolicy(), pruned_grads_unused=True)
    assert len(planner._across_slices(layer, phase, replace(fast, partitions=("reduction",)),
                                      ("images", 1) if phase == WG else None, 0)) == slices
    if phase == FF:
        assert by_channels["busiest_pe_macs"].sum() == 256
        assert chosen["busiest_pe_macs"].sum() == 128
        assert totals["mapping"].endswith("reduction across 4 clusters")
        assert chosen["reduced_psums"].sum() == 3 * 2 * 16
    else:
        assert (chosen["dealt"] == 0).all() and chosen["reduced_psums"].sum() == 0
        assert chosen.tolist() == by_channels.tolist()


def test_a_reduction_whose_tile_does_not_fit_is_dealt_by_channels_in_chunks():
    """A 3x3 conv, 64 -> 64 channels, on one 4 x 4 image, on a design that deals only
    reductions. Its whole reduction's smallest tile (4 channels' weights, 4,608 B, the 2
    input rows of 64 channels the first output row needs, 1,024 B, and its 4 x 4 outputs,
    32 B: 5,664 B) takes more than a 3,000 B half of the buffer, so no slice can be dealt;
    8-channel chunks fit, dealt by channels one after the other. With a buffer that holds
    it, the reduction is dealt."""
    layer = dense_capture(nn.Conv2d(64, 64, 3, padding=1, bias=False), n=1, h=4)
    hw = replace(DENSE_HW, partitions=("reduction",))
    table, totals = tile_phase(layer, 0, FF, replace(hw, buffer_bytes=3_000), SkipPolicy(),
                               pruned_grads_unused=True)
    assert "reduction chunks" in totals["mapping"] and (table["dealt"] == 0).all()
    table, totals = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
    assert totals["mapping"].endswith("reduction across 4 clusters")
    assert (table["dealt"] == 2).all()


def test_a_run_s_outputs_go_to_its_pes_in_turn(monkeypatch):
    """One image of 8 x 8 outputs (a 1x1 conv, 1 -> 2 channels) by rows to 4 clusters of 4
    PEs: 2 rows (16 outputs) a cluster, 4 to each PE, for both channels: 8 MACs. With 3
    PEs a cluster the 16 outputs fall 6, 5, 5: the busiest does 12."""
    layer = dense_capture(nn.Conv2d(1, 2, 1, bias=False), n=1, h=8)
    _one_tile(monkeypatch, TileShape(2, 1, 8, False, "rows"))
    for pes, busiest in ((4, 8), (3, 12)):
        hw = replace(DENSE_HW, partitions=("rows",), pes_per_cluster=pes)
        table, _ = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
        assert table["busiest_pe_macs"].tolist() == [busiest]
        assert table["processed_macs"].tolist() == [128]
        balanced = tile_phase(layer, 0, FF, replace(hw, load_balance=True), SkipPolicy(),
                              pruned_grads_unused=True)[0]
        assert balanced["busiest_pe_macs"].tolist() == [-(-128 // (4 * pes))]


def _linear_at_batch_2():
    """A dense linear layer, 8 -> 256 features, at batch 2: 2 output positions."""
    import torch

    from mappings.capture import capture

    torch.manual_seed(0)
    lin = nn.Linear(8, 256, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.rand_like(lin.weight) + 0.1)
    x = (torch.rand(2, 8) + 0.1).requires_grad_(True)
    (layer,) = capture(lin, x, torch.rand(2, 256) + 0.1, loss_fn=lambda o, t: (o * t).sum())
    return layer


@pytest.mark.parametrize("partition, pes, busiest, balanced", [
    # by channels: 64 channels x 2 images a cluster, 1,024 MACs; 64 PEs form 32 groups
    # of 2, 2 channels a group, each PE 2 outputs of 8 MACs: 16 = 1,024 / 64 (it had been
    # 512, 2 PEs of 64 working). 16 PEs: 8 groups, 64; 5: 2 groups of 2 (a PE idle), 256;
    # balanced, the 512 MACs' 64 outputs of a group spread over the 5 PEs: 4,096 / 20
    ("channels", 64, 16, 16), ("channels", 16, 64, 64), ("channels", 5, 256, 205),
    # by rows: a run per image, 2 clusters busy, each with all 256 channels at one
    # position: 64 groups of one PE, 4 channels each, 32 MACs (it had been 2,048)
    ("rows", 64, 32, 32), ("rows", 16, 128, 128),
])
def test_a_linear_layer_s_few_positions_leave_no_pe_idle(monkeypatch, partition, pes,
                                                        busiest, balanced):
    """A linear layer at batch 2 has 2 output positions a channel: where a cluster's share
    of a tile has fewer positions than PEs, the PEs form groups of that many, and the
    cluster's channels go to the groups in turn, so its busiest PE does ceil(its outputs'
    MACs over its PEs) while the groups divide the channels evenly. One FF tile of the 256
    channels and both images, 4 clusters; the tile's compute cycles (busiest PE, one MAC a
    cycle) fall as 1 / PEs. Ideal balancing (`load_balance: true`) spreads the tile's work
    over every PE that can hold an output."""
    layer = _linear_at_batch_2()
    _one_tile(monkeypatch, TileShape(256, 2, 1, False, partition))
    hw = replace(DENSE_HW, partitions=(partition,), pes_per_cluster=pes)
    table, _ = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
    assert table["processed_macs"].tolist() == [2 * 256 * 8]
    assert table["busiest_pe_macs"].tolist() == [busiest]
    assert compute_cycles(table, hw).tolist() == [busiest]
    table, _ = tile_phase(layer, 0, FF, replace(hw, load_balance=True), SkipPolicy(),
                          pruned_grads_unused=True)
    assert table["busiest_pe_macs"].tolist() == [balanced]


@pytest.mark.parametrize("conv, n, h, multicast", [
    (nn.Conv2d(2, 2, 1, bias=False), 4, 32, "weights"),     # 8 KiB of X, 8 B of weights
    (nn.Conv2d(64, 64, 3, bias=False), 1, 3, "inputs"),     # 1 KiB of X, 72 KiB of weights
])
def test_auto_multicasts_the_smaller_operand(conv, n, h, multicast):
    """Under the energy objective, with a multicast byte 6.4x a unicast one (dense.yaml's
    mesh: 64.5 and 10.1 pJ), `auto` deals by rows where the weights are the smaller operand
    and by channels where the inputs are."""
    layer = dense_capture(conv, n=n, h=h)
    hw = replace(DENSE_HW, partitions=("channels", "rows"), objective="energy",
                 noc_pj_per_byte=10.08, noc_multicast_pj_per_byte=64.512)
    table, _ = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
    weights = int(np.prod(layer.w_nz.shape)) * 2
    sent = int(table["multicast_bytes"].sum())
    assert (sent == weights) == (multicast == "weights"), (sent, weights)


def test_layers_csv_says_what_each_layer_phase_dealt(tmp_path):
    """LeNet-300 dealt by channels and by rows: layers.csv's `partition` names it for every
    layer-phase of the PE array, as written and as `desim.run` holds it."""
    import pandas as pd

    import desim
    from desim.report import build_report
    from tests.small_experiments import lenet300_experiment

    path = lenet300_experiment(tmp_path / "e.yaml", {"dense": {"method": "dense"}})
    for partition in ("channels", "rows"):
        result = desim.run(path, [f"arch.*.mapping.partition={partition}"])
        layers = result.layers
        assert set(layers[layers["unit"] == "pe_array"]["partition"]) == {partition}
        result.write(tmp_path / partition)
        written = pd.read_csv(tmp_path / partition / "layers.csv")
        assert written["partition"].tolist() == layers["partition"].tolist()
        # the report's slowest layer-phases say so where they were dealt by rows
        md, _, _ = build_report([tmp_path / partition], tmp_path / f"{partition}.md")
        text = md.read_text()
        assert ("| pe_array, by rows |" in text) == (partition == "rows")
        assert "| pe_array |" in text or partition == "rows"


def test_a_run_dealt_by_reduction_prices_the_adds_at_the_buffer(tmp_path):
    """LeNet-300 at batch 2 on dense.yaml (28 nm, fp16 products summed in fp32), its
    reductions dealt to the clusters: the global buffer counts every partial sum its tiles
    say it adds (`reduced_psums`), and each layer-phase's `global_buffer.psum_adds` is
    those at an fp32 add, Horowitz's 0.9 pJ scaled to 28 nm (x 28/45): 0.56 pJ.
    layers.csv and the report say what was dealt. Dealt by channels the design lists no
    such price and no such energy."""
    import desim
    from desim.report import build_report
    from tests.small_experiments import lenet300_experiment

    path = lenet300_experiment(tmp_path / "e.yaml", {"dense": {"method": "dense"}},
                               observe={"tiles": True})
    result = desim.run(path, ["arch.*.mapping.partition=reduction"])
    run = result.runs["dense"]
    assert run.energy_prices_pj["psum_add_pj"] == pytest.approx(0.9 * 28 / 45)
    tiles = result.tiles
    adds = tiles.groupby(["layer", "phase"])["reduced_psums"].sum()
    assert run.stats["modules"]["dense.glb"]["actions"]["psum_adds"] == adds.sum() > 0
    energy = result.layer_energy
    priced = energy[energy["action"] == "psum_adds"].set_index(["layer", "phase"])["energy_j"]
    for (layer, phase), count in adds.items():
        assert priced[(layer, phase)] == pytest.approx(count * 0.9 * 28 / 45 * 1e-12)
    pe_array = result.layers[result.layers["unit"] == "pe_array"]
    assert set(pe_array["partition"]) == {"reduction"} == set(tiles["dealt"])
    result.write(tmp_path / "out")
    md, _, _ = build_report([tmp_path / "out"], tmp_path / "report.md")
    assert "| pe_array, by reduction |" in md.read_text()
    by_channels = desim.run(path).runs["dense"]
    assert "psum_add_pj" not in by_channels.energy_prices_pj
    assert "global_buffer.psum_adds" not in by_channels.energy_by_action_j


@pytest.mark.parametrize("arch", ["dense.yaml", "hppu.yaml"])
def test_the_partition_moves_bytes_not_work(arch):
    """LeNet-5 at batch 2, every layer-phase dealt by channels, by rows and by reduction
    where it can be: the same nominal, effectual and processed MACs (hppu.yaml compacts
    channels and scans with its selector), and busiest-PE MACs no lower than an even share
    of the PEs. By reduction every layer-phase but the first conv's FF (one input channel)
    is dealt so, its partial sums added at the buffer: a slice a cluster, fewer when the
    reduction is shorter (WG's two images)."""
    from mappings.mapper import map_workload
    from mappings.specs import PruningSpec, WorkloadSpec
    from mappings.workload import capture_workload
    from tests.views import arch_view

    workload = capture_workload(WorkloadSpec(model="lenet5", batch=2, seed=0),
                                PruningSpec(method="hybrid", sparsity=0.5)
                                if arch == "hppu.yaml" else PruningSpec(method="dense"))
    view = arch_view(arch)
    works = {p: map_workload(workload, replace(view, partitions=(p,)))
             for p in ("channels", "rows", "reduction")}
    compared = 0
    for by_channels, by_rows, by_reduction in zip(*works.values(), strict=True):
        if by_channels.layer < 0:
            continue
        for other in (by_rows, by_reduction):
            for column in ("macs", "effectual_macs", "processed_macs"):
                assert by_channels.table[column].sum() == other.table[column].sum(), column
            busiest = other.table["busiest_pe_macs"]
            assert (busiest * view.pes >= other.table["processed_macs"]).all()
        assert (by_rows.table["dealt"] == 1).all() and (by_channels.table["dealt"] == 0).all()
        first_ff = by_channels.layer == 0 and by_channels.phase == FF
        dealt = by_reduction.table
        assert (dealt["dealt"] == (0 if first_ff else 2)).all()
        clusters = min(view.clusters, 2 if by_channels.phase == WG else view.clusters)
        if not first_ff:
            assert (dealt["active_clusters"] <= clusters).all()
            outputs = dealt["gather_bytes"] // (dealt["active_clusters"] * view.psum_bytes)
            assert (dealt["reduced_psums"] == (dealt["active_clusters"] - 1) * outputs).all()
        compared += 1
    assert compared == 4 * 3 - 1   # 2 convs and 2 linear layers; the first conv has no BP


@pytest.mark.parametrize("partition, busiest", [
    ("channels", {False: 8, "clusters": 4, True: 4}),
    ("rows", {False: 4, "clusters": 4, True: 4}),
])
def test_a_balancer_of_the_clusters_evens_them_not_their_pes(monkeypatch, partition, busiest):
    """A 1x1 conv, 4 -> 2 channels, on one 2 x 2 image: 4 MACs an output where X is
    non-zero; channel 1's weights pruned, X zero at output (0, 1). 2 clusters of 2 PEs,
    zeros skipped, one tile. By channels channel 0 is cluster 0's: its PE 0 takes outputs
    0 and 2 (8 MACs), PE 1 output 3 (4), and cluster 1 idles. Evening the clusters (a
    weight sparsity balancer) halves each PE slot: 4; ideal balancing spreads the three
    outputs over the 4 PEs: 4, an output's sum not split (it had been, 12 MACs over 4 PEs:
    3). By rows each cluster takes a row of both channels: PE 0 of each does 4 MACs, PE 1
    of cluster 0 none: the clusters are even already, 4."""
    layer = dense_capture(nn.Conv2d(4, 2, 1, bias=False), n=1, h=2)
    layer.w_nz[1] = False
    layer.x_nz[0, :, 0, 1] = False
    _one_tile(monkeypatch, TileShape(2, 1, 2, False, partition))
    hw = replace(DENSE_HW, clusters=2, pes_per_cluster=2, partitions=(partition,),
                 skip_zero_weights=True, skip_zero_activations=True)
    for balance, expected in busiest.items():
        table, _ = tile_phase(layer, 0, FF, replace(hw, load_balance=balance),
                              SkipPolicy(weights=True, activations=True),
                              pruned_grads_unused=True)
        assert table["processed_macs"].tolist() == [12]
        assert table["busiest_pe_macs"].tolist() == [expected], balance


def test_the_mapping_in_words():
    """layers.csv's `mapping`: the tile, the operand that stays and the reduction's plan, as
    `planner.mapping_text` words them (WG's tile rows are input channels)."""
    size = (64, 8, 16, 16)   # (A, images, rows, L)
    assert planner.mapping_text(TileShape(32, 1, 4, True), 1, planner.WHOLE, FF, size) == \
        "32 ch x 4 rows, input stationary, whole reduction"
    assert planner.mapping_text(TileShape(16, 8, 16), 4, planner.KEPT, BP, size) == \
        "16 ch x 8 images, weight stationary, 4 reduction chunks, sums kept"
    assert planner.mapping_text(TileShape(64, 1, 1), 2, planner.SPILLED, WG, size) == \
        "64 ch x 1 input channel, weight stationary, 2 reduction chunks, sums spilled"
    assert planner.mapping_text(TileShape(64, 1, 16), 8, planner.INNER, FF, size) == \
        "64 ch x 1 image, weight stationary, 8 reduction chunks, innermost"
    # a WG tile of all dW's rows is of every input channel (it said "1 image", whatever
    # the batch: dW has no images)
    assert planner.mapping_text(TileShape(64, 1, 16), 2, planner.INNER, WG, size) == \
        "64 ch x 16 input channels, weight stationary, 2 reduction chunks, innermost"
    assert planner.mapping_text(TileShape(16, 8, 16, False, "reduction"), 16, planner.ACROSS,
                                BP, size) == \
        "16 ch x 8 images, weight stationary, reduction across 16 clusters"


@pytest.mark.parametrize("partition, chosen_from", [
    ("channels", ("channels",)), ("auto", ("channels", "rows")),
    (["reduction", "auto"], ("reduction", "channels", "rows")),
    (["rows", "reduction"], ("rows", "reduction"))])
def test_what_the_mapper_chooses_from(partition, chosen_from):
    """`mapping.partition`: one partition, `auto` (channels or rows, the operand multicast)
    or a list of them, in the order given; only a reduction dealt prices adds."""
    from arch.config import MappingConfig
    from desim.elaborate import dataflow_text

    mapping = MappingConfig(partition=partition)
    assert mapping.partitions == chosen_from
    assert mapping.reduces_across_clusters == ("reduction" in chosen_from)
    # as `desim check` and the report's processors table say it
    assert dataflow_text("auto", chosen_from).startswith("order chosen, by ")
    assert dataflow_text("weight_stationary", ("rows", "reduction")) == (
        "weight stationary, by rows or reduction")
    assert dataflow_text("auto", ("channels", "rows", "reduction")) == (
        "order chosen, by channels, rows or reduction")
