"""Vector layers: batch norm, activations and pooling as data passes and vector ops."""

from dataclasses import replace

from torch import nn

from mappings.capture import VectorCapture, capture
from mappings.counting import BP, FF
from mappings.target import HardwareView
from mappings.vector import vector_tiles, vector_traffic

HW = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=1000, element_bytes=2,
                  vector_lanes=8)


def test_plain_batchnorm_makes_two_passes_unless_it_fits():
    bn = VectorCapture("bn", "batchnorm", 1000, 1000, 0)
    assert vector_traffic(bn, FF, HW) == (2 * 2000, 2000, 4 * 1000)   # 2 KB > 1 KB buffer
    assert vector_traffic(bn, BP, HW) == (2 * 4000, 2000, 7 * 1000)   # X and dY, twice
    small = VectorCapture("bn", "batchnorm", 100, 100, 0)
    assert vector_traffic(small, FF, HW) == (200, 200, 400)           # fits: one pass


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


def test_the_attention_softmax_is_captured_and_counted_as_not_simulated():
    """A transformer block (d = 8, 2 heads, 4 tokens, batch 3): its scaled softmax is a vector
    layer of batch x heads x tokens x tokens = 96 elements, after the scores product, with
    both phases' gradients. The vector unit has no exp, so the softmax has no tile and is
    the one vector layer a run with the unit leaves out; without the unit it is left out
    with the others. It was a functional call, invisible to the capture (norm1, add1,
    norm2 and add2 were the only vector rows, and vector_layers_not_simulated 0)."""
    import math

    import torch

    from mappings.models.transformer import TransformerEncoderBlock

    torch.manual_seed(0)
    block = TransformerEncoderBlock(dim=8, heads=2, mlp_ratio=2, seq_len=4)
    x = torch.randn(3, 4, 8)
    vectors: list[VectorCapture] = []
    layers = capture(block, x, torch.randn(3, 4, 8), loss_fn=lambda o, t: (o * t).sum(),
                     vectors=vectors)
    (softmax,) = [v for v in vectors if v.kind == "softmax"]
    assert (softmax.in_elems, softmax.out_elems) == (3 * 2 * 4 * 4, 96)
    assert layers[softmax.after].name == "scores"
    assert softmax.dy_stats is not None and softmax.dx_stats is not None
    assert len(vector_tiles(softmax, -1, FF, HW)) == len(vector_tiles(softmax, -1, BP, HW)) == 0
    from mappings.vector import left_out_without_unit, vector_layers_not_simulated
    assert vector_layers_not_simulated(vectors, False, vector_unit=True) == 1
    assert vector_layers_not_simulated(vectors, False, vector_unit=False) == \
        left_out_without_unit(vectors, False)
    # the same function as before: softmax(Q K^T / sqrt(d / heads)) V
    q, k = block._split(block.q(block.norm1(x))), block._split(block.k(block.norm1(x)))
    expected = (q @ k.transpose(-2, -1) / math.sqrt(4)).softmax(-1)
    assert torch.allclose(block.softmax(q @ k.transpose(-2, -1)), expected)
