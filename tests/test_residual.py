"""Residual connections: where a block's input forks into body and shortcut (`Fork`) and
where the two join (`Add`). The add's FF reads both operands and writes their sum; the
fork's BP reads both branches' gradients and writes their sum; their other phases are free."""

from dataclasses import replace

import pytest
import torch
from torch import nn
from views import arch_view

from mappings.capture import VectorCapture, capture
from mappings.counting import BP, FF
from mappings.formats import map_stats
from mappings.mapper import map_workload
from mappings.models.resnet import BasicBlock, resnet18
from mappings.pruning import PruningSpec
from mappings.target import HardwareView
from mappings.vector import (
    result_bytes,
    stored_gradients,
    stored_outputs,
    stored_second_gradients,
    vector_tiles,
    vector_traffic,
)
from mappings.workload import Workload, WorkloadSpec

HW = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=1 << 20, element_bytes=2,
                  vector_lanes=8)
UNFUSED = replace(HW, fused_residual=False)


def test_add_and_fork_traffic_in_closed_form():
    """n = 1000 fp16 elements a tensor. A pass of its own: the add's FF reads 2n, writes n, 1
    op an element; the fork's BP the same; with the operand written last kept on chip, each
    reads only the other one. Fused into the stream that writes that operand: each reads the
    other operand only and writes nothing itself (that stream writes the n-element sum). The
    other phase of each has no tile."""
    add = VectorCapture("add", "add", 1000, 1000, 0)
    fork = VectorCapture("fork", "fork", 1000, 1000, 0)
    for v, phase in ((add, FF), (fork, BP)):
        assert vector_traffic(v, phase, UNFUSED) == (4000, 2000, 1000)
        assert vector_traffic(v, phase, UNFUSED, input_resident=True) == (2000, 2000, 1000)
        assert vector_traffic(v, phase, HW) == (2000, 0, 1000)
        assert result_bytes(v, phase, HW) == result_bytes(v, phase, UNFUSED) == 2000
    for hw in (HW, UNFUSED):
        assert vector_traffic(add, BP, hw) == vector_traffic(fork, FF, hw) == (0, 0, 0)
        assert len(vector_tiles(add, -1, BP, hw)) == len(vector_tiles(fork, -1, FF, hw)) == 0
    table = vector_tiles(add, -1, FF, replace(UNFUSED, buffer_bytes=1000))
    assert len(table) == 6 and table["dram_read_bytes"].sum() == 4000  # 6 KB in 1 KB tiles


def _block_model(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, cin, 3, padding=1, bias=False), nn.BatchNorm2d(cin),
                         nn.ReLU(), BasicBlock(cin, cout, stride), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(cout, 10))


def _grads(model: nn.Module) -> dict[str, tuple]:
    """The fork's and the add's real gradients, seen by hooks of our own."""
    grads: dict[str, tuple] = {}
    block = model[3]
    for name, m in (("fork", block.fork), ("add", block.add)):
        m.register_full_backward_hook(
            lambda _m, gi, go, name=name: grads.update({name: (gi, go)}))
    return grads


def nnz(t: torch.Tensor) -> int:
    return int((t != 0).sum())


def test_capture_records_the_fork_and_the_add_with_their_real_operands():
    """Identity shortcut: vectors in forward order, the add's operands (the body's last batch
    norm, written last, then the shortcut: the stem ReLU's output), the fork's two branch
    gradients (the body's, written last in BP) and their sum, each as the real tensors'
    non-zeros."""
    torch.manual_seed(0)
    model = _block_model(8, 8, 1)
    grads = _grads(model)
    x = torch.randn(2, 3, 8, 8)
    vectors: list[VectorCapture] = []
    capture(model, x, torch.randint(0, 10, (2,)), vectors=vectors)
    n = 2 * 8 * 8 * 8
    assert [(v.kind, v.in_elems, v.out_elems, v.after) for v in vectors] == [
        ("batchnorm", n, n, 0), ("relu", n, n, 0), ("fork", n, n, 0),
        ("batchnorm", n, n, 1), ("relu", n, n, 1), ("batchnorm", n, n, 2),
        ("add", n, n, 2), ("relu", n, n, 2), ("avgpool", n, 2 * 8, 2)]
    fork, add = vectors[2], vectors[6]
    stem_out = model[2](model[1](model[0](x)))
    assert int(add.in_stats.nnz[0]) == n  # a batch norm's output: dense
    assert int(add.second_stats.nnz[0]) == nnz(stem_out) < n
    sum_grad, (body_grad, shortcut_grad) = grads["fork"][0][0], grads["fork"][1]
    assert int(fork.dy_stats.nnz[0]) == nnz(body_grad)
    assert int(fork.second_stats.nnz[0]) == nnz(shortcut_grad) == nnz(grads["add"][1][0])
    assert int(fork.dx_stats.nnz[0]) == nnz(sum_grad)
    assert torch.equal(sum_grad, body_grad + shortcut_grad)


def test_the_add_takes_the_operand_written_last_first():
    """A downsampling block (8 -> 16 channels, stride 2) has a 1x1 conv and batch norm on
    its shortcut, which runs after the body: the add's operand written last is the
    shortcut's batch norm output, and the fork's second gradient the shortcut conv's dX
    (non-zero only at the stride's positions)."""
    torch.manual_seed(1)
    model = _block_model(8, 16, 2)
    vectors: list[VectorCapture] = []
    capture(model, torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,)), vectors=vectors)
    kinds = [(v.kind, v.after) for v in vectors]
    assert kinds == [("batchnorm", 0), ("relu", 0), ("fork", 0), ("batchnorm", 1),
                     ("relu", 1), ("batchnorm", 2), ("batchnorm", 3), ("add", 3),
                     ("relu", 3), ("avgpool", 3)]
    fork, add = vectors[2], vectors[7]
    assert (add.in_elems, add.out_elems) == (2 * 16 * 4 * 4,) * 2
    assert (fork.in_elems, fork.out_elems) == (2 * 8 * 8 * 8,) * 2
    assert int(fork.second_stats.nnz[0]) <= 2 * 8 * 4 * 4 < int(fork.dy_stats.nnz[0])


def test_a_fork_of_the_data_is_not_recorded():
    """The input data needs no gradient, so nothing sums its branches' gradients; the forks
    after it (q, k and v's, the second residual's) are recorded."""
    from mappings.models.transformer import transformer_block
    torch.manual_seed(0)
    model = transformer_block(dim=16, heads=2, seq_len=4)
    vectors: list[VectorCapture] = []
    capture(model, torch.randn(2, 4, 16), torch.randint(0, 10, (2,)), vectors=vectors)
    assert [v.name for v in vectors if v.kind in ("add", "fork")] == [
        "fork_q", "fork_kv", "add1", "fork2", "add2"]
    # q, k and v's gradients summed in BP: two adds an element of the norm's 2 x 4 x 16
    forks = [v for v in vectors if v.name in ("fork_q", "fork_kv")]
    assert [v.in_elems for v in forks] == [128, 128]
    assert sum(vector_traffic(v, BP, HW)[2] for v in forks) == 2 * 128
    assert all(vector_traffic(v, FF, HW)[2] == 0 for v in forks)  # FF hands it on, free


def test_stored_tensors_around_an_add():
    """With a fused ReLU after the add, the add stores the ReLU's output; the batch norm
    before it writes its own, or with the add fused into its stream, the add's. In BP that
    batch norm reads the gradient the ReLU received, as written (the add passes it on
    unchanged), unless it was masked when written."""
    bn = VectorCapture("bn", "batchnorm", 8, 8, 2, out_stats=map_stats(torch.ones(8)),
                       dy_stats=map_stats(torch.arange(8) < 3), dy_from="add")
    add = VectorCapture("add", "add", 8, 8, 2, out_stats=map_stats(torch.ones(8)),
                        dy_stats=map_stats(torch.arange(8) < 3))
    relu = VectorCapture("relu", "relu", 8, 8, 2, out_stats=map_stats(torch.arange(8) < 5),
                         dy_stats=map_stats(torch.arange(8) < 7))
    vectors = [bn, add, relu]
    assert stored_outputs(vectors, UNFUSED)[:2] == [bn.out_stats, relu.out_stats]
    assert stored_outputs(vectors, HW)[:2] == [relu.out_stats, relu.out_stats]
    assert stored_gradients(vectors, HW)[0] is relu.dy_stats
    masked = replace(HW, skip_relu_masked_gradients=True)
    assert stored_gradients(vectors, masked)[0] is bn.dy_stats


@pytest.mark.parametrize(("cout", "stride"), [(8, 1), (16, 2)])
def test_both_branches_read_the_add_s_gradient_as_stored(cout, stride):
    """The add hands its gradient to both operands. The capture links each reader to the add:
    the body's last batch norm, and the shortcut's batch norm in a downsampling block or the
    fork's second gradient in an identity block. With a fused ReLU after the add, all of
    them read what the ReLU received (denser than what they got: the mask is applied as it
    is read); what each got is the masked gradient, the add's own."""
    torch.manual_seed(0)
    model = _block_model(8, cout, stride)
    vectors: list[VectorCapture] = []
    capture(model, torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,)), vectors=vectors)
    by = {v.name: v for v in vectors}
    add, relu = by["3.add"], by["3.relu"]
    readers = ["3.body.4"] + (["3.shortcut.1"] if stride > 1 else [])
    assert [v.name for v in vectors if v.dy_from == "3.add"] == readers
    assert by["3.fork"].second_from == (None if stride > 1 else "3.add")
    stored, second = stored_gradients(vectors, HW), stored_second_gradients(vectors, HW)
    for name in readers:
        assert by[name].dy_stats.nnz == add.dy_stats.nnz < relu.dy_stats.nnz
        assert stored[vectors.index(by[name])] is relu.dy_stats
    fork = vectors.index(by["3.fork"])
    assert second[fork] is (None if stride > 1 else relu.dy_stats)
    # On a design whose convs' BP skips ReLU-masked gradients, the same: the average pool
    # after the ReLU, not a conv, wrote its dY, unmasked.
    masked = replace(HW, skip_relu_masked_gradients=True)
    assert all(stored_gradients(vectors, masked)[vectors.index(by[n])] is relu.dy_stats
               for n in readers)


@pytest.fixture(scope="module")
def block_workload() -> Workload:
    """The identity block model, dense fp16, batch 2, 8 channels of 8 x 8."""
    torch.manual_seed(0)
    model = _block_model(8, 8, 1)
    vectors: list[VectorCapture] = []
    layers = capture(model, torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,)), packed=True,
                     vectors=vectors)
    return Workload(WorkloadSpec(model="resnet18", batch=2, data="random"),
                    PruningSpec(method="dense"), layers, True, vectors=vectors)


def _view(reuse: bool, fused: bool) -> HardwareView:
    return arch_view("dense.yaml", f"mapping.inter_layer_reuse={reuse}",
                     f"vector_unit.fused_residual={fused}")


def _dram(w) -> tuple[int, int]:
    return int(w.table["dram_read_bytes"].sum()), int(w.table["dram_write_bytes"].sum())


@pytest.mark.parametrize("reuse", [False, True])
def test_the_block_maps_its_add_in_ff_and_its_fork_in_bp(block_workload, reuse):
    """On dense.yaml (fp16, 512 KiB), residual passes of their own: the add's FF reads the
    body's output and the shortcut (n = 1,024 elements, 2 x 2 KiB) and writes the ReLU's
    output; the fork's BP reads both branches' gradients and writes their sum. With
    inter-layer reuse, the body's batch norm output and the body's first conv's dX stay on
    chip: each reads only the other operand."""
    work = map_workload(block_workload, _view(reuse, fused=False))
    by = {(w.name, w.phase): w for w in work}
    assert ("3.add", BP) not in by and ("3.fork", FF) not in by
    n_bytes = 2 * 8 * 8 * 8 * 2
    for key in (("3.add", FF), ("3.fork", BP)):
        w = by[key]
        assert _dram(w) == (n_bytes * (1 if reuse else 2), n_bytes)
        assert int(w.table["vector_ops"].sum()) == n_bytes // 2
        assert w.input_resident == reuse
    order = [(w.name, w.phase) for w in work]
    assert order.index(("3.body.0", BP)) < order.index(("3.fork", BP)) < order.index(("1", BP))


@pytest.mark.parametrize("reuse", [False, True])
def test_a_fused_residual_costs_one_read(block_workload, reuse):
    """Fused (dense.yaml's default): the add reads only the shortcut and the fork only the
    shortcut's gradient; the streams they are fused into (the body's last batch norm, its
    first conv's BP) write the sums. The iteration moves 2 x 2 n bytes less than with the
    passes of their own; with reuse, the sums stay on chip for the pooling's FF and the
    stem batch norm's BP."""
    fused, unfused = (map_workload(block_workload, _view(reuse, f)) for f in (True, False))
    by = {(w.name, w.phase): w for w in fused}
    n_bytes = 2 * 8 * 8 * 8 * 2
    for key in (("3.add", FF), ("3.fork", BP)):
        assert _dram(by[key]) == (n_bytes, 0)
        assert by[key].output_bytes == n_bytes
    assert _dram(by[("3.body.4", FF)])[1] == n_bytes   # the batch norm writes the sum
    assert by[("4", FF)].input_resident == by[("1", BP)].input_resident == reuse

    def total(work):
        return sum(sum(_dram(w)) for w in work)
    assert total(unfused) - total(fused) == (2 if reuse else 4) * n_bytes


def test_resnet18_has_a_fork_and_an_add_per_block():
    """Eight BasicBlocks: eight forks (each input needs a gradient: the stem's output is not
    the data) and eight adds, each followed by the block's ReLU; parameters unchanged."""
    torch.manual_seed(0)
    model = resnet18(10, cifar=True)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    vectors: list[VectorCapture] = []
    capture(model, torch.randn(1, 3, 32, 32), torch.randint(0, 10, (1,)), vectors=vectors)
    kinds = [v.kind for v in vectors]
    assert kinds.count("fork") == kinds.count("add") == 8
    assert all(vectors[i + 1].kind == "relu" for i, k in enumerate(kinds) if k == "add")


def test_an_inference_writes_the_forked_tensors_only(block_workload):
    """The block as an inference on dense.yaml, fused, with reuse (batch norms folded, ReLUs
    fused): the stem conv's output forks into body and shortcut, so it is written; the
    body's first conv's output goes to its second conv alone: not written; the second
    conv's stream makes the sum, which goes to the pool alone (no block follows to fork
    it): not written, nor by the add; the pool's output goes to the classifier alone, and
    the classifier writes its logits (2 x 10 fp16)."""
    spec = block_workload.spec.model_copy(update={"inference": True})
    work = map_workload(replace(block_workload, spec=spec), _view(reuse=True, fused=True))
    n_bytes = 2 * 8 * 8 * 8 * 2
    assert [(w.name, _dram(w)[1]) for w in work] == [
        ("0", n_bytes), ("3.body.0", 0), ("3.body.3", 0), ("3.add", 0),
        ("4", 0), ("6", 2 * 10 * 2)]


@pytest.mark.parametrize(("name", "kwargs", "blocks"), [
    ("resnet50", {"cifar": True}, 3 + 4 + 6 + 3),                  # every Bottleneck
    ("mobilenet_v2", {}, 1 + 2 + 3 + 2 + 2),  # the inverted residuals with stride 1, cin = cout
])
def test_every_residual_block_forks_and_adds(name, kwargs, blocks):
    """ResNet-50 and MobileNetV2 on 32 x 32 inputs: one fork and one add per residual
    block; every batch norm follows its conv directly, so each folds at inference."""
    from mappings.models import build_model
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, **kwargs)
    vectors: list[VectorCapture] = []
    capture(model, torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,)), vectors=vectors)
    kinds = [v.kind for v in vectors]
    assert kinds.count("fork") == kinds.count("add") == blocks
    norms = [v for v in vectors if v.kind == "batchnorm"]
    assert norms and all(v.foldable for v in norms)


def test_a_folded_batch_norm_s_layer_writes_the_norm_s_output():
    """conv -> BN -> ReLU -> conv -> BN -> linear in a bitmap activation format (fp16, one
    bit an element). In training each conv writes its own output (nearly all non-zero);
    at inference the norms are folded into the convs, which write what the norms wrote:
    the first conv the ReLU's output (fused), the second the norm's output."""
    from mappings.formats import operand_bytes

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                          nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False),
                          nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    vectors: list[VectorCapture] = []
    layers = capture(model, torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,)), packed=True,
                     vectors=vectors)
    relu, norm = vectors[1], vectors[2]
    assert [v.kind for v in vectors] == ["batchnorm", "relu", "batchnorm"]
    assert relu.out_stats.nnz[0] < relu.out_elems  # the ReLU zeroes some outputs
    workload = Workload(WorkloadSpec(model="resnet18", batch=2, data="random"),
                        PruningSpec(method="dense"), layers, True, vectors=vectors)
    hw = replace(_view(reuse=False, fused=True), activation_format="bitmap")

    def written(inference: bool) -> dict[str, int]:
        spec = workload.spec.model_copy(update={"inference": inference})
        return {w.name: _dram(w)[1] for w in map_workload(replace(workload, spec=spec), hw)
                if w.phase == FF and w.layer >= 0}

    def bitmap(nz: torch.Tensor) -> int:
        return int(operand_bytes("bitmap", map_stats(nz), 2)[0])

    logits = bitmap(layers[2].y_nz.unpack())  # 20 values and 20 bits: 43 bytes
    assert logits == 43
    assert written(False) == {"0": bitmap(layers[0].y_nz.unpack()),
                              "3": bitmap(layers[1].y_nz.unpack()), "6": logits}
    assert written(True) == {"0": int(operand_bytes("bitmap", relu.out_stats, 2)[0]),
                             "3": int(operand_bytes("bitmap", norm.out_stats, 2)[0]),
                             "6": logits}
    assert written(True)["0"] < written(False)["0"]


def _pruned_body_block(stride: int) -> tuple[Workload, VectorCapture]:
    """The block model with its body's first conv pruned to half its input channels (so its
    own dX is zero there, where the shortcut's gradient is not), and the block's fork."""
    torch.manual_seed(0)
    model = _block_model(8, 8 * stride, stride)
    with torch.no_grad():
        model[3].body[0].weight[:, :4] = 0
    vectors: list[VectorCapture] = []
    layers = capture(model, torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,)), packed=True,
                     vectors=vectors)
    workload = Workload(WorkloadSpec(model="resnet18", batch=2, data="random"),
                        PruningSpec(method="dense"), layers, True, vectors=vectors)
    (fork,) = [v for v in vectors if v.kind == "fork"]
    assert fork.sum_writer == layers[fork.after + 1].name == "3.body.0"
    return workload, fork


@pytest.mark.parametrize("stride", [1, 2])
def test_a_fused_fork_s_body_conv_writes_the_summed_gradient(stride):
    """In a bitmap activation format, the body's first conv writes in BP, with a fused
    fork, the sum of both branches' gradients, which is denser than its own dX; without the
    fusion it writes its own dX and the fork's pass writes the sum."""
    from mappings.formats import operand_bytes

    workload, fork = _pruned_body_block(stride)
    body = workload.layers[fork.after + 1]
    own = int(body.dx_nz.unpack().sum())
    assert own < int(fork.dx_stats.nnz[0])  # the shortcut's gradient fills the pruned channels

    def written(fused: bool) -> dict[str, int]:
        hw = replace(_view(reuse=False, fused=fused), activation_format="bitmap")
        return {w.name: _dram(w)[1] for w in map_workload(workload, hw) if w.phase == BP}

    bitmap = {"sum": int(operand_bytes("bitmap", fork.dx_stats, 2)[0]),
              "own": 2 * own + body.dx_nz.numel // 8}
    fused, unfused = written(True), written(False)
    assert (fused["3.body.0"], fused.get("3.fork", 0)) == (bitmap["sum"], 0)
    assert (unfused["3.body.0"], unfused["3.fork"]) == (bitmap["own"], bitmap["sum"])


@pytest.mark.parametrize("masked", [False, True])
def test_a_compacted_body_conv_leaves_the_rest_of_the_sum_to_the_fork(masked):
    """With channel compaction the body's first conv tiles in BP only the input channels its
    weights use: the pruned half, where the sum is the shortcut's gradient alone, the fused
    fork writes. Between them the whole sum is written once (bitmap bytes), zero where X is
    when BP skips ReLU-masked gradients."""
    from mappings.formats import operand_bytes

    workload, fork = _pruned_body_block(1)
    hw = replace(_view(reuse=False, fused=True), activation_format="bitmap",
                 skip_zero_weights=True, channel_compaction=True,
                 skip_relu_masked_gradients=masked)
    by = {(w.name, w.phase): w for w in map_workload(workload, hw)}
    body, fork_bp = _dram(by[("3.body.0", BP)])[1], _dram(by[("3.fork", BP)])[1]
    conv = workload.layers[fork.after + 1]
    written = conv.dx_sum_nz.unpack() & (conv.x_nz.unpack() if masked else True)
    total = int(operand_bytes("bitmap", map_stats(written), 2)[0])
    assert 0 < fork_bp < body and body + fork_bp == total
