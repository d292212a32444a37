"""Inter-layer reuse: a layer-phase's output stays in the global buffer for the next phase
that reads it (FF: the next layer's X; BP: the next layer's dY) when it fits, so that phase
reads only its other operand from DRAM; the output is still written, for BP and WG, unless
they read it on chip too (a gradient kept through its layer's WG)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from views import arch_view

from desim.experiment import load_arch
from mappings.capture import VectorCapture, capture
from mappings.counting import BP, FF, WG
from mappings.mapper import map_workload
from mappings.models.common import Add, Fork
from mappings.pruning import PruningSpec
from mappings.target import HardwareView
from mappings.tiling import TileShape, phase_shape, tile_bytes
from mappings.vector import vector_tiles, vector_traffic
from mappings.workload import Workload, WorkloadSpec, capture_workload

DENSE = Path(__file__).resolve().parent.parent / "configs" / "arch" / "dense.yaml"
SIZES = [(784, 300), (300, 100), (100, 10)]  # LeNet-300-100's layers (in, out)


@pytest.fixture(scope="module")
def lenet300():
    torch.manual_seed(0)
    return capture_workload(WorkloadSpec(model="lenet300", batch=4, data="random"),
                            PruningSpec(method="dense"))


def _view(reuse: bool) -> HardwareView:
    return arch_view("dense.yaml", f"mapping.inter_layer_reuse={reuse}")


def _reads(work, phase):
    """(DRAM bytes read, of which weights) of each phase `phase`, in order."""
    return [(int(w.table["dram_read_bytes"].sum()), int(w.table["weight_read_bytes"].sum()))
            for w in work if w.phase == phase]


def test_each_layer_reads_only_its_weights_when_its_input_stayed_on_chip(lenet300,
                                                                         whole_phase_tiles):
    """Dense fp16 LeNet-300-100, batch 4, on dense.yaml (512 KiB buffer): every activation
    and gradient fits. Without reuse, FF of layer l reads its weights and X (4 x in x 2 B);
    with it, FF of layers 2 and 3 read their weights only. BP runs fc3 (dY from the loss,
    read), WG fc3, then BP fc2, whose dY is fc3's dX, kept through fc3's WG and then read by
    fc2's WG from the buffer too: fc3's BP need not write it. The other writes are the same
    both ways."""
    plain, reuse = map_workload(lenet300, _view(False)), map_workload(lenet300, _view(True))
    weights = [i * o * 2 for i, o in SIZES]
    inputs = [4 * i * 2 for i, _ in SIZES]
    assert _reads(plain, FF) == [(w + x, w) for w, x in zip(weights, inputs, strict=True)]
    assert _reads(reuse, FF) == [(weights[0] + 4 * 784 * 2, weights[0]),
                                 (weights[1], weights[1]), (weights[2], weights[2])]
    # BP: fc3 then fc2 (fc1's input is the data: no BP); each reads W and dY (4 x out x 2 B)
    assert _reads(plain, BP) == [(weights[2] + 4 * 10 * 2, weights[2]),
                                 (weights[1] + 4 * 100 * 2, weights[1])]
    assert _reads(reuse, BP) == [(weights[2] + 4 * 10 * 2, weights[2]),
                                 (weights[1], weights[1])]
    assert [w.input_resident for w in reuse] == [False, True, True, False, False, True, True,
                                                  False]
    assert [w.phase for w in reuse] == [FF, FF, FF, BP, WG, BP, WG, WG]
    for i, (a, b) in enumerate(zip(plain, reuse, strict=True)):
        written = 0 if i == 3 else b.output_bytes
        assert a.output_bytes == b.output_bytes
        assert int(b.table["dram_write_bytes"].sum()) == written
        assert int((a.table["glb_write_bytes"] - a.table["dram_read_bytes"]).sum()) == int(
            (b.table["glb_write_bytes"] - b.table["dram_read_bytes"]).sum())  # refills only
    # WG: fc3, fc2, fc1; fc2's reads only X (4 x 300 x 2 B), its dY (4 x 100 x 2 B) kept
    plain_wg = _reads(plain, WG)
    assert plain_wg == [(4 * 100 * 2 + 4 * 10 * 2, 0), (4 * 300 * 2 + 4 * 100 * 2, 0),
                        (4 * 784 * 2 + 4 * 300 * 2, 0)]
    assert _reads(reuse, WG) == [plain_wg[0], (4 * 300 * 2, 0), plain_wg[2]]


def test_an_inference_writes_only_what_a_later_phase_reads(lenet300):
    """The same LeNet-300-100 as an inference (FF only): with reuse, fc1's and fc2's
    outputs go straight to the next layer and nothing else reads them, so they are never
    written; fc3 writes its logits (4 x 10 x 2 B). Without reuse every layer writes its
    output; the reads are those of the training run's FF."""
    workload = replace(lenet300, spec=lenet300.spec.model_copy(update={"inference": True}))
    plain, reuse = map_workload(workload, _view(False)), map_workload(workload, _view(True))
    outputs = [4 * o * 2 for _, o in SIZES]
    assert [int(w.table["dram_write_bytes"].sum()) for w in plain] == outputs
    assert [int(w.table["dram_write_bytes"].sum()) for w in reuse] == [0, 0, outputs[2]]
    assert [w.output_bytes for w in reuse] == outputs
    weights = [i * o * 2 for i, o in SIZES]
    assert _reads(reuse, FF) == [(weights[0] + 4 * 784 * 2, weights[0]),
                                 (weights[1], weights[1]), (weights[2], weights[2])]


def test_an_output_larger_than_the_buffer_is_not_kept():
    """Batch 128 with a 64 KiB buffer (32 KiB a tile): fc1's output (128 x 300 x 2 B =
    76,800 B) cannot stay, so fc2 reads its X from DRAM; fc2's (25,600 B) can, if the tiles
    around it still fit in what it leaves: a phase that reads a kept input has tiles that
    do."""
    workload = capture_workload(WorkloadSpec(model="lenet300", batch=128, data="random"),
                                PruningSpec(method="dense"))
    hw = replace(_view(True), buffer_bytes=32 * 1024)
    work = map_workload(workload, hw)
    ff = [w for w in work if w.phase == FF]
    assert ff[0].output_bytes == 76_800 > 2 * hw.buffer_bytes
    assert not ff[1].input_resident
    read, weights = _reads(work, FF)[1]
    assert read - weights >= 76_800   # all of X at least once (blocks may be read again)
    assert ff[1].output_bytes == 25_600
    assert any(w.input_resident for w in work)  # here BP fc2's dY (fc3's dX) stays
    for w in work:
        if w.input_resident:
            assert w.tile_buffer_bytes <= (2 * hw.buffer_bytes - 25_600) // 2


def test_a_resident_operand_takes_no_room_in_the_tile(lenet300):
    """A tile's buffer bytes: channel block + stream block + outputs, in elements x 2 B; a
    resident stream (FF's X) or channel operand (WG's dY) is already in the buffer."""
    layer = lenet300.layers[1].unpack()       # fc2: X (4, 300, 1, 1), W (100, 300, 1, 1)
    ps, win = phase_shape(layer, FF, _view(False))
    shape = TileShape(ka=32, images=4, rows=1)
    assert tile_bytes(shape, ps, win, (1, 1), 300, 2) == (32 * 300 + 4 * 300 + 32 * 4) * 2
    assert tile_bytes(shape, ps, win, (1, 1), 300, 2, stream_resident=True) == (
        (32 * 300 + 32 * 4) * 2)
    assert tile_bytes(shape, ps, win, (1, 1), 300, 2, channel_resident=True) == (
        (4 * 300 + 32 * 4) * 2)


# (layer, phase, tile budget, input kept, expected (DRAM read, DRAM written, vector ops)):
# a plain batch norm over 200,000 fp16 elements (400,000 B, more than a 262,144 B tile
# budget): FF reads X twice (statistics, then normalization), none of it when X was kept;
# BP reads X and dY twice, X alone twice when dY was kept, once when X alone fits. 2x2
# pooling of 40,000 elements to 10,000: FF reads X (80,000 B) unless it was kept; BP reads
# dY (20,000 B) and an argmax bit an input element (5,000 B), only the bits when dY was kept.
BN = VectorCapture("bn", "batchnorm", 200_000, 200_000, after=0)
POOL = VectorCapture("pool", "pool", 40_000, 10_000, after=0)
VECTOR_CASES = [
    (BN, FF, 262_144, False, (800_000, 400_000, 800_000)),
    (BN, FF, 262_144, True, (0, 400_000, 800_000)),
    (BN, BP, 262_144, False, (1_600_000, 400_000, 1_400_000)),
    (BN, BP, 262_144, True, (800_000, 400_000, 1_400_000)),
    (BN, BP, 400_000, True, (400_000, 400_000, 1_400_000)),
    (POOL, FF, 262_144, False, (80_000, 20_000, 40_000)),
    (POOL, FF, 262_144, True, (0, 20_000, 40_000)),
    (POOL, BP, 262_144, False, (25_000, 80_000, 40_000)),
    (POOL, BP, 262_144, True, (5_000, 80_000, 40_000)),
]


@pytest.mark.parametrize("layer, phase, budget, kept, expected", VECTOR_CASES)
def test_vector_layers_read_a_kept_input_from_the_buffer(layer, phase, budget, kept, expected):
    hw = HardwareView(clusters=1, pes_per_cluster=1, buffer_bytes=budget, element_bytes=2,
                      vector_lanes=64)
    assert vector_traffic(layer, phase, hw, input_resident=kept) == expected


def test_reuse_on_a_training_run_saves_dram_reads_only_and_keeps_the_work(lenet300):
    """The whole iteration: the same MACs, fewer DRAM reads and one write less (fc3's dX,
    read by fc2's BP and WG from the buffer). fc3's WG, ranked again against fc2's BP
    mapped anew, takes the whole reduction where it had two chunks, its partial sums kept:
    it gathers 2,000 bytes instead of 6,000."""
    plain, reuse = map_workload(lenet300, _view(False)), map_workload(lenet300, _view(True))

    def total(work, column):
        return int(np.sum([w.table[column].sum() for w in work]))

    for column in ("macs", "processed_macs"):
        assert total(plain, column) == total(reuse, column)
    assert total(plain, "gather_bytes") - total(reuse, "gather_bytes") == 4_000
    assert total(plain, "dram_write_bytes") - total(reuse, "dram_write_bytes") == 4 * 100 * 2
    # fc1's Y, fc2's Y, fc3's dX: read once by fc2's BP and four times by its WG (its plan
    # without reuse, two reduction chunks innermost, reads 3,200 B of dY beside 2,400 of X)
    saved = 4 * 300 * 2 + 4 * 100 * 2 + (4 * 100 * 2) + 4 * (4 * 100 * 2)
    assert total(plain, "dram_read_bytes") - total(reuse, "dram_read_bytes") == saved
    assert WG in {w.phase for w in reuse}


def test_layers_csv_says_which_phases_read_their_input_from_the_buffer(lenet300):
    """The run's per-phase table marks the phases whose input stayed on chip: LeNet-300-100
    at batch 4 on dense.yaml, FF of fc2 and fc3 and BP and WG of fc2 (as above)."""
    from desim.runner import simulate

    rows = simulate("dense", load_arch(DENSE), lenet300).layers
    kept = rows[rows["input_on_chip"]]
    assert list(zip(kept["layer"], kept["phase"], strict=True)) == [("2", "FF"), ("4", "FF"),
                                                                     ("2", "BP"), ("2", "WG")]


class _Chain(nn.Module):
    """fc_in -> ReLU -> body -> fc_out; `residual`: the ReLU's output also skips the body and
    joins its output in an add, so body's dY is the shortcut's gradient too."""

    def __init__(self, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.fc_in, self.relu = nn.Linear(16, 32), nn.ReLU()
        self.fork, self.body, self.add = Fork(), nn.Linear(32, 32), Add()
        self.fc_out = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.fc_in(x))
        if not self.residual:
            return self.fc_out(self.body(h))
        into_body, into_shortcut = self.fork(h)
        return self.fc_out(self.add(self.body(into_body), into_shortcut))


@pytest.mark.parametrize("residual", [False, True])
def test_a_kept_gradient_is_written_only_when_another_branch_reads_it(residual):
    """Batch 4 on dense.yaml with reuse: fc_out's dX (4 x 32 x 2 B) stays on chip for body's
    BP and WG, so WG reads only its X (4 x 32 x 2 B). Without the shortcut nothing else
    reads it and fc_out's BP writes nothing; with it, the fork's BP reads it as the
    shortcut's gradient later, so it is written."""
    torch.manual_seed(0)
    vectors: list[VectorCapture] = []
    layers = capture(_Chain(residual), torch.randn(4, 16), torch.randint(0, 10, (4,)),
                     packed=True, vectors=vectors)
    workload = Workload(WorkloadSpec(model="lenet300", batch=4, data="random"),
                        PruningSpec(method="dense"), layers, True, vectors=vectors)
    by = {(w.name, w.phase): w for w in map_workload(workload, _view(True))}
    body_wg = by[("body", WG)]
    assert body_wg.input_resident and by[("body", BP)].input_resident
    assert _reads([body_wg], WG) == [(4 * 32 * 2, 0)]
    written = int(by[("fc_out", BP)].table["dram_write_bytes"].sum())
    assert written == (4 * 32 * 2 if residual else 0)


def test_a_vector_pass_counts_kept_tensors_in_the_buffer():
    """Pooling's FF (40,000 fp16 elements in, 10,000 out). A result kept for the next phase
    only goes to DRAM no more, but its 20,000 B still enter the global buffer; an input kept
    by the phase before comes from DRAM no more, but the unit still reads its 80,000 B from
    the buffer."""
    hw = HardwareView(clusters=1, pes_per_cluster=1, buffer_bytes=262_144, element_bytes=2,
                      vector_lanes=64)
    for kept_in in (False, True):
        fetched = 0 if kept_in else 80_000
        for to_dram, written in ((True, 20_000), (False, 0)):
            table = vector_tiles(POOL, -1, FF, replace(hw, output_to_dram=to_dram),
                                 input_resident=kept_in)
            assert int(table["dram_read_bytes"].sum()) == fetched
            assert int(table["dram_write_bytes"].sum()) == written
            assert int(table["glb_write_bytes"].sum()) == fetched + 20_000
            assert int(table["glb_read_bytes"].sum()) == 80_000  # the write-back's read:
            # the accelerator's, of dram_write_bytes


def test_the_global_buffer_takes_a_vector_result_in_once_and_gives_it_out_once():
    """The same pooling replayed on dense.yaml: its 80,000 B come in from DRAM and go out to
    the vector unit; its 20,000 B of result go in, and out again only when written back.
    (The result was once booked as a second read instead of its write: 120,000 B read and
    80,000 B written.)"""
    from tests.test_phase_overlap import _replay

    hw = HardwareView(clusters=1, pes_per_cluster=1, buffer_bytes=262_144, element_bytes=2,
                      vector_lanes=64)
    for to_dram, drained in ((True, 20_000), (False, 0)):
        table = vector_tiles(POOL, 0, FF, replace(hw, output_to_dram=to_dram))
        glb = _replay([table]).glb.actions
        assert glb["write_bytes"] == 80_000 + 20_000
        assert glb["read_bytes"] == 80_000 + drained


def test_reuse_keeps_an_output_only_for_the_layer_that_reads_it():
    """A transformer block: q, k and v all read the first norm's output, and the scores
    MatMul reads q and k, not v, the layer just before it. Sizes match throughout (8 x 32
    everywhere), so they cannot tell who reads what; the capture's tensors do
    (`reads_previous`). Inter-layer reuse keeps q's input on chip (norm1's output), not
    k's, v's or the scores' (each reads its X from DRAM: 512 B beside W's 2,048), and in
    BP no gradient of v, k or q is taken from the layer before it, whose dX is another
    tensor. The scores' dX (q's gradient) is written for q's BP, which reads it later.
    Before, by sizes alone, k and v took q's and k's outputs as their inputs, and v, k and
    q their neighbours' gradients; the scores' dX was never written."""
    workload = capture_workload(WorkloadSpec(model="transformer_block", batch=1,
                                             input_shape=[8, 32], data="random",
                                             model_args={"dim": 32, "seq_len": 8}),
                                PruningSpec(method="dense"))
    assert {layer.name: layer.reads_previous for layer in workload.layers} == {
        "q": True, "k": False, "v": False, "scores": False, "mix": True,
        "out": False,     # (mixed's heads are merged by a copy: a new tensor)
        "mlp.0": True, "mlp.2": True, "head": False}
    work = {(w.name, w.phase): w for w in map_workload(workload, _view(True))}
    assert work["q", FF].input_resident
    assert int(work["q", FF].table["dram_read_bytes"].sum()) == 32 * 32 * 2
    for name in ("k", "v"):
        assert not work[name, FF].input_resident
        assert int(work[name, FF].table["dram_read_bytes"].sum()) == 32 * 32 * 2 + 8 * 32 * 2
    assert not work["scores", FF].input_resident
    assert not any(work[name, BP].input_resident for name in ("v", "k", "q"))
    assert work["scores", BP].output_written


def test_a_layer_after_dropout_reads_the_output_of_the_layer_before_it():
    """Dropout (unhooked, a routing module) hands its input on with zeros added: the layer
    after it still reads the previous layer's output, for inter-layer reuse."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 4))
    layers = capture(model, torch.randn(2, 8), torch.tensor([0, 1]), vectors=[])
    assert [layer.reads_previous for layer in layers] == [False, True]
