"""Vector layers: batch norm, activations and pooling as data passes and vector ops."""

from dataclasses import replace
from pathlib import Path

from torch import nn

from mappings.capture import VectorCapture, capture
from mappings.counting import BP, FF
from mappings.pipeline import estimated_cycles
from mappings.target import HardwareView
from mappings.vector import pass_tiles, vector_tiles, vector_traffic

HW = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=1000, element_bytes=2,
                  vector_lanes=8)


def test_plain_batchnorm_makes_two_passes_unless_it_fits():
    bn = VectorCapture("bn", "batchnorm", 1000, 1000, 0)
    assert vector_traffic(bn, FF, HW) == (2 * 2000, 2000, 4 * 1000)   # 2 KB > 1 KB buffer
    assert vector_traffic(bn, BP, HW) == (2 * 4000, 2000, 7 * 1000)   # X and dY, twice
    small = VectorCapture("bn", "batchnorm", 100, 100, 0)
    assert vector_traffic(small, FF, HW) == (200, 200, 400)           # fits: one DRAM pass
    # ... and two passes over the buffer either way (the second read the buffer alone:
    # it had been counted once, as the fused unit's one pass); the fused unit makes one
    fused = HardwareView(**{**HW.__dict__, "fused_batchnorm": True})
    for phase, once in ((FF, 200), (BP, 400)):
        for design, passes in ((HW, 2), (fused, 1)):
            table = vector_tiles(small, 0, phase, design)
            assert table["dram_read_bytes"].sum() == once
            assert table["glb_read_bytes"].sum() == passes * once, (phase, passes)
    for phase, once in ((FF, 2000), (BP, 4000)):  # too large: both passes from DRAM
        table = vector_tiles(bn, 0, phase, HW)
        assert table["dram_read_bytes"].sum() == table["glb_read_bytes"].sum() == 2 * once


def test_a_plain_batchnorm_read_once_stays_whole_in_the_buffer():
    """A plain batch norm's two passes over what DRAM sent once need it all in the buffer:
    100 elements in a 1,000-byte half take one tile, where the plan estimate splits the
    fused unit's one pass in 2. Split so, a tile let its half go, its result written,
    before the last tiles' inputs came in for the second pass (an audit: a run 10% too
    fast)."""
    small = VectorCapture("bn", "batchnorm", 100, 100, 0)
    fused = HardwareView(**{**HW.__dict__, "fused_batchnorm": True})
    assert len(vector_tiles(small, 0, FF, HW)) == 1
    assert len(vector_tiles(small, 0, FF, fused)) == 2


def test_decoupled_batchnorm_unit_makes_one_pass():
    fused = HardwareView(**{**HW.__dict__, "fused_batchnorm": True})
    bn = VectorCapture("bn", "batchnorm", 1000, 1000, 0)
    assert vector_traffic(bn, FF, fused) == (2000, 2000, 4000)
    assert vector_traffic(bn, BP, fused) == (4000, 2000, 7000)


def test_pooling_and_unfused_relu_traffic():
    pool = VectorCapture("pool", "pool", 400, 100, 0)
    assert vector_traffic(pool, FF, HW) == (800, 200, 400)
    assert vector_traffic(pool, BP, HW) == (200 + 50, 800, 400)       # dY + argmax bits
    relu = VectorCapture("relu", "relu", 64, 64, 0)
    unfused = HardwareView(**{**HW.__dict__, "fused_relu": False})
    assert len(vector_tiles(relu, -1, FF, HW)) == 0                   # fused: no tile
    assert vector_tiles(relu, -1, FF, unfused)["vector_ops"].sum() == 64


def test_tiles_fit_the_buffer_and_sum_to_the_layer():
    bn = VectorCapture("bn", "batchnorm", 1000, 1000, 0)
    table = vector_tiles(bn, -3, BP, HW)
    assert len(table) == -(-(8000 + 2000) // 1000)
    assert (table["dram_read_bytes"] + table["dram_write_bytes"] <= 1000).all()
    assert table["dram_read_bytes"].sum() == 8000 and table["vector_ops"].sum() == 7000
    assert (table["layer"] == -3).all() and table["macs"].sum() == 0
    # shares that do not divide evenly: 2,998 read and 1,002 written in 4 tiles of 1,000
    # room: 750, 750, 749, 749 read and 250, 250, 251, 251 written, never 1,001 (an audit
    # found BN tiles of 2,049 bytes in a half-buffer of 2,048: both splits' first ones larger)
    table = pass_tiles(0, FF, HW, read=2998, operands=2998, ops=0, result=1002)
    assert table["held_bytes"].tolist() == [1000] * 4
    assert table["dram_write_bytes"].tolist() == [250, 250, 251, 251]


def test_a_result_made_beside_the_layers_own_counts_in_the_tiles_room():
    """A fork's BP also writes the sum's channels its writer never tiled (`extra_result`):
    here 500 bytes read, nothing of its own written, and 1,000 bytes of that sum, in tiles
    of 1,000 bytes of room: none over (added after the pass was cut for its own 500 bytes,
    into one tile, that tile had held 1,500)."""
    fork = VectorCapture("fork", "fork", 250, 250, 0)
    assert vector_traffic(fork, BP, HW)[:2] == (500, 0)
    table = vector_tiles(fork, -1, BP, HW, extra_result=1000)
    assert len(table) >= 2 and table["held_bytes"].max() <= 1000
    assert table["dram_read_bytes"].sum() == 500 and table["dram_write_bytes"].sum() == 1000


def test_capture_records_vector_layers_in_forward_order():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 3 * 3, 10))
    import torch
    vectors: list[VectorCapture] = []
    capture(model, torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,)), vectors=vectors)
    assert [(v.kind, v.in_elems, v.out_elems, v.after) for v in vectors] == [
        ("batchnorm", 2 * 4 * 36, 2 * 4 * 36, 0), ("relu", 288, 288, 0),
        ("pool", 288, 2 * 4 * 9, 0)]


def test_at_inference_a_batch_norm_after_a_conv_is_folded_into_it():
    """conv -> BN -> ReLU -> max pool -> BN -> linear, batch 2, fp16, a 1 MiB buffer: the
    first batch norm takes the conv's output (foldable: at inference a per-channel scale and
    shift, folded into the conv's weights), the second a pooled tensor (not foldable). An
    inference maps no tile for the first and one pass over X for the second; training maps
    both (each fits the buffer: one pass over X in FF)."""
    import torch

    from mappings.mapper import map_workload
    from mappings.pruning import PruningSpec
    from mappings.workload import Workload, WorkloadSpec

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
                          nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(4), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 10))
    vectors: list[VectorCapture] = []
    layers = capture(model, torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,)), packed=True,
                     vectors=vectors)
    assert [(v.name, v.foldable) for v in vectors if v.kind == "batchnorm"] == [
        ("1", True), ("4", False)]

    def reads(inference: bool) -> dict:
        spec = WorkloadSpec(model="resnet18", batch=2, data="random", inference=inference)
        work = map_workload(Workload(spec, PruningSpec(method="dense"), layers, True,
                                     vectors=vectors), replace(HW, buffer_bytes=1 << 20))
        return {(w.name, w.phase): int(w.table["dram_read_bytes"].sum()) for w in work}
    inference, training = reads(True), reads(False)
    assert ("1", FF) not in inference and inference[("4", FF)] == 2 * 4 * 4 * 4 * 2
    assert training[("1", FF)] == 2 * 4 * 8 * 8 * 2 and training[("4", FF)] == 2 * 4 * 4 * 4 * 2
    assert {("1", BP), ("4", BP)} <= set(training)


def test_a_design_without_a_vector_unit_leaves_out_all_but_the_relus_on_the_pe_output():
    """conv0 -> BN -> ReLU -> pool -> linear1 -> ReLU -> fork -> ... -> add -> ReLU: such a
    design fuses each ReLU into the layer before it, so the ReLU right after linear1 (on
    the PE array's output) is simulated, while the ReLUs after the batch norm and the add
    are left out with them. At inference the batch norm after conv0 is folded into its
    weights (its ReLU is then on conv0's output) and the fork's FF is free."""
    from mappings.vector import left_out_without_unit

    def v(kind: str, after: int, foldable: bool = False) -> VectorCapture:
        return VectorCapture(f"{kind}{after}", kind, 8, 8, after, foldable=foldable)
    vectors = [v("batchnorm", 0, foldable=True), v("relu", 0), v("pool", 0), v("relu", 1),
               v("fork", 1), v("add", 3), v("relu", 3)]
    assert left_out_without_unit(vectors, inference=False) == 6   # all but relu1
    assert left_out_without_unit(vectors, inference=True) == 3    # pool, add, its ReLU
    assert left_out_without_unit([v("relu", 0), v("relu", 1)], inference=False) == 0
    assert left_out_without_unit([v("relu", -1)], inference=False) == 1  # on the input


def _softmax_of_a_small_block():
    """A transformer block (d = 8, 2 heads, 4 tokens, batch 3) captured: its vector layers
    and the scaled softmax's capture."""
    import torch

    from mappings.models.transformer import TransformerEncoderBlock

    torch.manual_seed(0)
    block = TransformerEncoderBlock(dim=8, heads=2, mlp_ratio=2, seq_len=4)
    vectors: list[VectorCapture] = []
    layers = capture(block, torch.randn(3, 4, 8), torch.randn(3, 4, 8),
                     loss_fn=lambda o, t: (o * t).sum(), vectors=vectors)
    (softmax,) = [v for v in vectors if v.kind == "softmax"]
    assert layers[softmax.after].name == "scores"
    return vectors, softmax


def test_the_attention_softmax_is_a_vector_pass_each_way():
    """The block's scaled softmax: batch x heads x tokens x tokens = 96 elements, fp16, a
    dense activation format. FF reads X (192 B) and writes Y (192 B) in one pass, 10 ops an
    element (9 and the 1/sqrt(d) scale); BP reads dY and Y (384 B), writes dX (192 B), 4 ops
    an element (3 and the scale). (It had no tile: the unit had no exp.)"""
    _, softmax = _softmax_of_a_small_block()
    assert (softmax.in_elems, softmax.out_elems, softmax.scaled) == (96, 96, True)
    assert vector_traffic(softmax, FF, HW) == (96 * 2, 96 * 2, 10 * 96)
    assert vector_traffic(softmax, BP, HW) == (2 * 96 * 2, 96 * 2, 4 * 96)
    for phase, (read, written, ops) in ((FF, (192, 192, 960)), (BP, (384, 192, 384))):
        table = vector_tiles(softmax, -1, phase, HW)
        # 384 or 576 B: one tile fits the 1000 B buffer; HW counts no latencies, so the
        # estimate splits it further (`pass_tiles`), each tile within its half
        assert (table["held_bytes"] <= HW.buffer_bytes).all()
        assert (int(table["dram_read_bytes"].sum()), int(table["dram_write_bytes"].sum()),
                int(table["vector_ops"].sum())) == (read, written, ops)
    # dY in the buffer already (left by the phase before): only Y is read from DRAM
    assert vector_traffic(softmax, BP, HW, input_resident=True)[0] == 96 * 2


def test_a_softmax_backward_reads_its_output_not_its_input():
    """In a bitmap activation format bytes follow the non-zeros: give X a map of 5 non-zeros
    out of 96 and BP's read is still dY's and Y's bytes (12 + 96 * 2 each: presence bits and
    dense values), FF's X's (12 + 5 * 2)."""
    import torch

    from mappings.formats import map_stats

    _, softmax = _softmax_of_a_small_block()
    x = torch.zeros(3, 2, 4, 4, dtype=torch.bool)
    x.view(-1)[:5] = True
    sparse_x = replace(softmax, in_stats=map_stats(x))
    bitmap = replace(HW, activation_format="bitmap")
    y_bytes = 12 + 96 * 2   # softmax output: all non-zero
    dy_bytes = 12 + int(softmax.dy_stats.nnz.sum()) * 2
    assert vector_traffic(sparse_x, FF, bitmap)[:2] == (12 + 5 * 2, y_bytes)
    assert vector_traffic(sparse_x, BP, bitmap)[0] == dy_bytes + y_bytes
    assert vector_traffic(softmax, BP, bitmap)[0] == dy_bytes + y_bytes


def test_a_plain_softmax_has_no_scale():
    """nn.Softmax (no 1/sqrt(d)): 9 ops an element in FF, 3 in BP."""
    import torch

    vectors: list[VectorCapture] = []
    model = nn.Sequential(nn.Linear(4, 6), nn.Softmax(-1), nn.Linear(6, 3))
    capture(model, torch.randn(2, 4), torch.randint(0, 3, (2,)), vectors=vectors)
    (softmax,) = vectors
    assert (softmax.kind, softmax.scaled, softmax.in_elems) == ("softmax", False, 12)
    assert vector_traffic(softmax, FF, HW) == (24, 24, 9 * 12)
    assert vector_traffic(softmax, BP, HW) == (48, 24, 3 * 12)


def test_a_transformer_run_simulates_its_softmax(tmp_path):
    """A training iteration of a small transformer block on the dense design: no vector
    layer left out (the softmax was, on a design with a vector unit), and the softmax's FF
    and BP are vector-unit rows that take time (BP's own share of the run can be 0 cycles:
    here it runs while the attention product's WG does, and ends before it); without a
    vector unit it is left out with the others."""
    import yaml

    import desim
    from mappings.vector import left_out_without_unit, vector_layers_not_simulated

    experiment = tmp_path / "transformer.yaml"
    dense = str(Path(__file__).resolve().parents[1] / "configs" / "arch" / "dense.yaml")
    experiment.write_text(yaml.safe_dump({
        "name": "transformer", "baseline": "dense",
        "workload": {"model": "transformer_block", "num_classes": 4, "batch": 2,
                     "model_args": {"dim": 16, "heads": 2, "mlp_ratio": 2, "seq_len": 8},
                     "data": "random", "seed": 0},
        "runs": [{"name": "dense", "arch": dense}]}))
    result = desim.run(experiment)
    assert result.summary["runs"]["dense"]["vector_layers_not_simulated"] == 0
    rows = result.layers[result.layers["layer"] == "softmax"]
    assert sorted(rows["phase"]) == ["BP", "FF"]
    assert (rows["unit"] == "vector_unit").all() and (rows["dram_bytes"] > 0).all()
    assert (rows["end_cycle"] > rows["start_cycle"]).all()
    assert int(rows.loc[rows["phase"] == "FF", "cycles"].iloc[0]) > 0
    vectors, _ = _softmax_of_a_small_block()
    assert vector_layers_not_simulated(vectors, False, vector_unit=False) == \
        left_out_without_unit(vectors, False) > 0


def test_a_pass_takes_the_tile_count_its_estimate_ranks_best():
    """A ReLU's FF, unfused, its result kept on chip: 2,048 fp16 elements, 4,096 bytes read
    (DRAM 1 B/cycle, 100 cycles' latency a transaction), 2,048 operations on one lane, a
    4,096-byte half-buffer. In n equal tiles DRAM is the busiest stage, each fetch 4,096/n +
    100 cycles, each compute 2,048/n: the pass takes n fetches and the last compute, 4,096 +
    100 n + 2,048/n cycles. The fewest that fit, one tile, take 6,244; two 5,320, four
    5,008, eight 5,152: four, where one had been taken. The bytes and operations are the
    layer's whatever the count."""
    relu = VectorCapture("relu", "relu", 2048, 2048, 0)
    hw = HardwareView(clusters=1, pes_per_cluster=1, buffer_bytes=4096, element_bytes=2,
                      vector_lanes=1, fused_relu=False, output_to_dram=False,
                      dram_latency_cycles=100.0, objective="delay")
    table = vector_tiles(relu, -1, FF, hw)
    assert len(table) == 4
    assert table["dram_read_bytes"].tolist() == [1024] * 4 == table["held_bytes"].tolist()
    assert table["vector_ops"].sum() == 2048 and table["dram_write_bytes"].sum() == 0
    assert estimated_cycles(table, hw) == 4096 + 100 * 4 + 2048 / 4
