"""Format byte counts equal their closed forms on known patterns."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mappings.capture import capture
from mappings.counting import BP, FF, WG, SkipPolicy
from mappings.formats import BlockStats, map_stats, operand_bytes, rle_padding
from mappings.planner import tile_phase
from mappings.target import HardwareView


def stats_of(nz: torch.Tensor) -> BlockStats:
    """One block made of nz's rows (lines)."""
    lines, length = nz.shape
    return BlockStats(np.array([nz.numel()]), np.array([int(nz.sum())]), np.array([lines]),
                      np.array([int(nz.any(1).sum())]), length,
                      np.array([int(rle_padding(nz).sum())]))


def test_one_sparse_line_in_every_format():
    line = torch.zeros(1, 64, dtype=torch.bool)
    line[0, [0, 20, 63]] = True        # zero runs before them: 0, 19, 42
    b, eb = stats_of(line), 2
    assert rle_padding(line).tolist() == [0 + 19 // 16 + 42 // 16]  # 3 padding entries
    expected = {
        "dense": 64 * 2,
        "bitmap": 3 * 2 + 64 // 8,
        "line_bitmap": 1 * 64 * 2 + 1,         # the one line is kept whole, plus its bit
        "csr": 3 * (2 + 2) + (1 + 1) * 4,
        "csc": 3 * (2 + 2) + (64 + 1) * 4,
        "coo": 3 * (2 + 2 * 2),
        "rle": -(-(3 + 3) * (16 + 4) // 8),    # 6 entries of 20 bits
    }
    for fmt, size in expected.items():
        assert operand_bytes(fmt, b, eb)[0] == size, fmt


def test_identity_matrix_csr_and_rle():
    eye = torch.eye(8, dtype=torch.bool)
    b = stats_of(eye)
    assert operand_bytes("csr", b, 1)[0] == 8 * 3 + 9 * 4
    assert rle_padding(eye).sum() == 0      # no run reaches 16
    assert operand_bytes("rle", b, 1)[0] == -(-8 * 12 // 8)
    assert operand_bytes("line_bitmap", b, 1)[0] == 8 * 8 + 1


def test_long_zero_runs_need_one_padding_entry_per_sixteen_zeros():
    row = torch.zeros(1, 100, dtype=torch.bool)
    row[0, 99] = True
    assert rle_padding(row).tolist() == [99 // 16]
    assert rle_padding(torch.zeros(2, 50, dtype=torch.bool)).tolist() == [0, 0]  # trailing


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), max_size=5), min_size=1, max_size=4),
       st.integers(0, 20))
def test_rle_padding_counts_each_zero_run_like_a_loop(gaps, trailing):
    """Lines built from their zero runs (each run then a non-zero, trailing zeros after,
    lines of any length, short ones included) against a plain loop over the runs."""
    lines = [sum(([False] * g + [True] for g in line), []) for line in gaps]
    length = max(len(line) for line in lines) + trailing
    if length == 0:
        return
    nz = torch.tensor([line + [False] * (length - len(line)) for line in lines])
    expected = [sum(g // 16 for g in line) for line in gaps]
    assert rle_padding(nz).tolist() == expected


def test_run_length_entries_round_up_to_whole_bytes_per_block():
    """int8 values with a 4-bit run each: 12 bits an entry. One non-zero is 12 bits, 2
    bytes; three are 36 bits, 5 bytes (not 1 and 4)."""
    for nonzeros, size in ((1, 2), (3, 5)):
        line = torch.zeros(1, 8, dtype=torch.bool)
        line[0, :nonzeros] = True
        assert operand_bytes("rle", stats_of(line), 1)[0] == size, nonzeros


def test_a_maps_lines_are_its_last_dimensions_runs():
    """A (2, 3, 5) map is 6 lines of 5; non-zeros at [0, 0, 1], [0, 0, 3] and [1, 2, 4]:
    30 elements, 3 non-zero, 2 lines with one. fp16: line_bitmap keeps the 2 lines whole
    (2 x 5 x 2 B) + 6 bits (1 B) = 21 B; csr 3 x (2 + 2) + (6 + 1) x 4 = 40 B. Without
    run-length counting its padding is unknown, and an rle size is refused."""
    nz = torch.zeros(2, 3, 5, dtype=torch.bool)
    nz[0, 0, [1, 3]] = True
    nz[1, 2, 4] = True
    b = map_stats(nz)
    assert (b.elems.tolist(), b.nnz.tolist(), b.lines.tolist(), b.nz_lines.tolist(),
            b.line_len, b.rle_padding.tolist()) == ([30], [3], [6], [2], 5, [0])
    assert operand_bytes("line_bitmap", b, 2)[0] == 21
    assert operand_bytes("csr", b, 2)[0] == 40
    with pytest.raises(ValueError, match="padding was not counted"):
        operand_bytes("rle", map_stats(nz, rle=False), 2)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown format"):
        operand_bytes("zip", stats_of(torch.ones(1, 4, dtype=torch.bool)), 2)


def test_weight_traffic_of_a_tile_in_each_format(whole_phase_tiles):
    conv = nn.Conv2d(2, 4, 3, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1, :] = 1.0       # every kernel keeps only its middle line
    x = torch.rand(1, 2, 5, 5) + 0.1
    (layer,) = capture(conv, x, torch.rand(1, 4, 3, 3), loss_fn=lambda o, t: (o * t).sum())
    inputs = 2 * 5 * 5 * 2                  # dense stream operand: X, read once
    kernels, lines, nnz = 4 * 2, 4 * 2 * 3, 4 * 2 * 3
    expected = {"dense": 4 * 2 * 9 * 2, "bitmap": nnz * 2 + -(-4 * 2 * 9 // 8),
                "line_bitmap": kernels * 3 * 2 + -(-lines // 8),
                "csr": nnz * 4 + (4 + 1) * 4, "coo": nnz * 6}  # csr: a pointer per filter
    for fmt, weights in expected.items():
        hw = HardwareView(clusters=4, pes_per_cluster=2, buffer_bytes=1 << 16, element_bytes=2,
                          weight_format=fmt)
        table, _ = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
        assert table["dram_read_bytes"].sum() == weights + inputs, fmt


# A linear layer (K = 6, C = 40), a third of its weights kept, for the csr and csc tests.
K_FC, C_FC = 6, 40


def sparse_fc_weight_bytes(fmt: str, phase: int) -> int:
    """The weight bytes a phase of that layer moves in `fmt`: read in FF and BP, its kept
    weights' gradients written in WG."""
    fc = nn.Linear(C_FC, K_FC, bias=False)
    kept = (torch.arange(K_FC * C_FC) % 3 == 0).reshape(K_FC, C_FC)
    with torch.no_grad():
        fc.weight.copy_((torch.rand(K_FC, C_FC) + 0.1) * kept)
    x = (torch.rand(2, C_FC) + 0.1).requires_grad_(True)
    (layer,) = capture(fc, x, torch.rand(2, K_FC), loss_fn=lambda o, t: (o * t).sum())
    hw = HardwareView(clusters=2, pes_per_cluster=2, buffer_bytes=1 << 16, element_bytes=2,
                      weight_format=fmt)
    table, totals = tile_phase(layer, 0, phase, hw, SkipPolicy(pruned_weight_gradients=True),
                               pruned_grads_unused=True)
    return table["dram_write_bytes"].sum() if phase == WG else totals["weight_dram_bytes"]


@pytest.mark.parametrize("phase", [FF, BP, WG])
def test_csr_weights_have_a_pointer_per_row_of_the_weight_matrix(phase, whole_phase_tiles):
    """CSR weights: each kept value with a 16-bit index and a 4-byte pointer per row (+1)
    of the weight matrix as the phase reads it: K rows of W in FF, C rows of W^T in BP; WG
    writes the kept weights' gradients, K rows. Not a pointer per weight (a 1 x S kernel
    row, S = 1): that made CSR 2.5x the dense bytes here."""
    rows = {FF: K_FC, BP: C_FC, WG: K_FC}[phase]
    assert sparse_fc_weight_bytes("csr", phase) == K_FC * C_FC // 3 * (2 + 2) + (rows + 1) * 4


@pytest.mark.parametrize("phase", [FF, BP, WG])
def test_csc_weights_have_a_pointer_per_column_of_the_weight_matrix(phase, whole_phase_tiles):
    """CSC, the same layer and block as the CSR test: a pointer per column (+1) of the
    block of rows, C columns of W in FF and WG, K of W^T in BP (EIE's column pointers). Not
    S + 1 = 2 pointers a block (a 1 x S kernel row's columns)."""
    columns = {FF: C_FC, BP: K_FC, WG: C_FC}[phase]
    assert (sparse_fc_weight_bytes("csc", phase)
            == K_FC * C_FC // 3 * (2 + 2) + (columns + 1) * 4)


def test_run_length_padding_is_counted_only_when_a_design_codes_activations_so():
    """The capture counts the vector tensors' run-length padding only for a design with
    run-length coded activations (`CaptureNeeds.rle_padding`): uncounted, it is None, which
    the rle format refuses, and a design that reads it refuses such a capture; any other
    design's run is the same either way."""
    from pathlib import Path

    from desim.experiment import load_arch
    from desim.runner import capture_needs, simulate
    from mappings.capture import CaptureNeeds
    from mappings.formats import map_stats
    from mappings.specs import PruningSpec
    from mappings.workload import WorkloadSpec, capture_workload

    nz = torch.zeros(2, 40, dtype=torch.bool)
    nz[:, 39] = True
    assert map_stats(nz).rle_padding.tolist() == [4] and map_stats(nz, rle=False).rle_padding \
        is None
    with pytest.raises(ValueError, match="padding was not counted"):
        operand_bytes("rle", map_stats(nz, rle=False), 2)

    arch = load_arch(Path(__file__).resolve().parents[1] / "configs" / "arch" / "dense.yaml")
    rle = arch.model_copy(update={"sparsity": arch.sparsity.model_copy(
        update={"activation_format": "rle"})})
    assert capture_needs(rle) == CaptureNeeds(relu_predictions=False, rle_padding=True)
    spec = WorkloadSpec(model="lenet5", batch=2, data="random")
    counted = capture_workload(spec, PruningSpec(method="dense"))
    uncounted = capture_workload(spec, PruningSpec(method="dense"), CaptureNeeds.none())
    assert all(v.out_stats.rle_padding is None for v in uncounted.vectors if v.out_stats)
    one, other = simulate("a", arch, counted), simulate("a", arch, uncounted)
    assert one.total_ps == other.total_ps and one.layers.equals(other.layers)
    assert simulate("r", rle, counted).total_ps > 0
    with pytest.raises(ValueError, match="design needs"):
        simulate("r", rle, uncounted)
