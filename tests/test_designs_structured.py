"""The structured designs of shared/seeds/002: PE-wise pruning + ternarization (Yang, He, Fan,
AAAI 2020), PermDNN (Deng et al., MICRO 2018), CirCNN (Ding et al., MICRO 2017) and ADMM-NN's
break-even pruning ratio (Ren et al., ASPLOS 2019).

Closed-form structure checks (a permuted-diagonal block has one non-zero per row and column;
a circulant block is its first row rolled; ternary weights take three values and take 2 bits
in the simulator's DRAM count; the values-only format stores no index; the FFT op count), the
switches they need (weight_bits, weight_group, circulant_fft, inference, PruningSpec.ternary),
and each example end to end with tiny sizes. The examples at full size are marked slow.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from desim.errors import ConfigError
from desim.experiment import load_arch, load_experiment
from mappings.capture import capture
from mappings.circulant import fft_mac_ratio, fft_ops, fft_real_macs, storage_ratio
from mappings.counting import FF, WG, SkipPolicy
from mappings.formats import BlockStats, operand_bytes
from mappings.mapper import map_workload
from mappings.planner import tile_phase
from mappings.pruning import PruningSpec, block_circulant, permuted_diagonal, prune_model
from mappings.pruning.spec import ternarize_kept
from mappings.target import HardwareView
from mappings.workload import WorkloadSpec, capture_workload

ROOT = Path(__file__).resolve().parents[1]
ARCH = ROOT / "configs" / "arch"
EXPERIMENTS = ROOT / "configs" / "experiments"
HW = dict(clusters=8, pes_per_cluster=1, buffer_bytes=64 * 1024, element_bytes=1)


def example(name: str) -> ModuleType:
    """Import examples/<name>.py (a script, not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" /
                                                  f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def linear_layer(k: int, c: int, n: int = 2, weight: torch.Tensor | None = None):
    """A captured nn.Linear(c, k) with positive inputs (X dense)."""
    fc = nn.Linear(c, k, bias=False)
    if weight is not None:
        with torch.no_grad():
            fc.weight.copy_(weight)
    x = torch.rand(n, c) + 0.1
    x.requires_grad_(True)
    (layer,) = capture(fc, x, torch.rand(n, k), loss_fn=lambda out, t: (out * t).sum())
    return layer


# -- closed-form structure ---------------------------------------------------------------------

@pytest.mark.parametrize("p", [2, 4, 8])
def test_permuted_diagonal_block_has_one_nonzero_per_row_and_column(p):
    mask = permuted_diagonal(torch.randn(3 * p, 5 * p), p, seed=7)
    blocks = mask.reshape(3, p, 5, p).transpose(1, 2)     # (3, 5, p, p)
    assert torch.equal(blocks.sum(-1), torch.ones(3, 5, p, dtype=torch.long))
    assert torch.equal(blocks.sum(-2), torch.ones(3, 5, p, dtype=torch.long))
    assert mask.sum() == mask.numel() // p                # sparsity exactly 1 - 1/p


@pytest.mark.parametrize("b", [2, 4, 8])
def test_circulant_block_is_determined_by_its_first_row(b):
    w = block_circulant(torch.randn(2 * b, 3 * b), b)
    for bi in range(2):
        for bj in range(3):
            block = w[bi * b:(bi + 1) * b, bj * b:(bj + 1) * b]
            first = block[0]
            for i in range(b):
                assert torch.allclose(block[i], torch.roll(first, i))
    assert storage_ratio(b) == b


def test_ternary_weights_take_three_values():
    torch.manual_seed(0)
    w = torch.randn(16, 32)
    mask = torch.rand(16, 32) > 0.25
    t = ternarize_kept(w, mask)
    values = torch.unique(t)
    assert len(values) == 3 and values[1] == 0 and values[0] == -values[2]
    assert not t[~mask].any()                             # pruned stay pruned


@pytest.mark.parametrize("k, c", [(5, 7), (8, 16), (3, 9)])
def test_ternary_weights_take_two_bits_in_the_dram_count(k, c, whole_phase_tiles):
    """One tile reads the weights and X once: ceil(2 n / 8) bytes of weights + N*C bytes."""
    layer = linear_layer(k, c, weight=torch.randint(-1, 2, (k, c)).float())
    hw = HardwareView(**HW, weight_bits=2)
    table, totals = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
    assert len(table) == 1
    assert totals["weight_dram_bytes"] == math.ceil(2 * k * c / 8)
    assert table["dram_read_bytes"].sum() == math.ceil(2 * k * c / 8) + 2 * c
    # the default (no weight_bits): a byte a weight at int8 precision
    _, plain = tile_phase(layer, 0, FF, HardwareView(**HW), SkipPolicy(), pruned_grads_unused=True)
    assert plain["weight_dram_bytes"] == k * c


def test_values_only_and_value_bits_closed_forms():
    b = BlockStats(np.array([64]), np.array([9]), np.array([16]), np.array([5]), 4,
                   np.array([0]))
    assert operand_bytes("values_only", b, 2)[0] == 9 * 2          # no index, no pointer
    assert operand_bytes("csc", b, 2)[0] == 9 * 4 + 5 * 4          # the same values indexed
    assert operand_bytes("dense", b, 1, value_bits=2)[0] == 16
    assert operand_bytes("values_only", b, 1, value_bits=2)[0] == math.ceil(18 / 8)
    assert operand_bytes("line_bitmap", b, 1, value_bits=2)[0] == 5 * 4 * 2 // 8 + 2
    for fmt in ("dense", "bitmap", "line_bitmap", "csr", "csc", "coo", "rle"):
        assert operand_bytes(fmt, b, 2, value_bits=16)[0] == operand_bytes(fmt, b, 2)[0]


def test_weight_group_lines_are_pe_wise_groups(whole_phase_tiles):
    """line_bitmap with weight_group g: the kept groups whole, one bit a group."""
    k, c, g = 4, 32, 8
    w = torch.randn(k, c)
    w[:, :g] = 0                                         # first group of every row pruned
    w[0, g:2 * g] = 0                                    # and one more in row 0
    layer = linear_layer(k, c, weight=w)
    hw = HardwareView(**HW, weight_format="line_bitmap", weight_group=g, weight_bits=2)
    _, totals = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
    kept_groups = k * (c // g) - k - 1
    assert totals["weight_dram_bytes"] == kept_groups * g * 2 // 8 + math.ceil(k * c / g / 8)


def test_fft_op_count():
    assert [fft_ops(b) for b in (2, 4, 8, 64)] == [1, 4, 12, 192]
    # 4 x 4 matrix of one 4 x 4 block: 4 complex products + 1 FFT + 1 inverse FFT
    assert fft_real_macs(4, 4, 4) == 4 * (4 + 2 * 4)
    assert fft_mac_ratio(64, 4096, 4096) == pytest.approx(4 / 64 + 12 * 2 / 4096)
    # the FFT route loses up to b = 4, at b = 4 too (the products alone are the dense MACs,
    # 4/4, the transforms come on top), and gains from b = 8 on ResNet-18's 64..512 channels
    assert all(fft_mac_ratio(b, 4096, 4096) > 1 for b in (2, 4))
    assert fft_mac_ratio(4, 4096, 4096) == pytest.approx(1 + 4 * 2 / 4096)
    assert all(fft_mac_ratio(8, k, c) < 1 for k in (64, 512) for c in (64, 512))
    with pytest.raises(ConfigError):
        fft_ops(6)
    with pytest.raises(ConfigError):
        fft_real_macs(8, 12, 16)


@pytest.mark.parametrize("phase", [FF, WG])
def test_circulant_tiles_scale_macs_and_store_one_row_a_block(phase):
    b, k, c = 4, 8, 16
    layer = linear_layer(k, c, n=4, weight=block_circulant(torch.randn(k, c) + 3, b))
    hw = HardwareView(**HW)
    dense, d = tile_phase(layer, 0, phase, hw, SkipPolicy(), pruned_grads_unused=True)
    circ, t = tile_phase(layer, 0, phase, HardwareView(**HW, circulant_fft=True), SkipPolicy(),
                         pruned_grads_unused=True, circulant_block=b)
    ratio = fft_mac_ratio(b, k, c)
    assert t["macs"] == d["macs"] and t["effectual_macs"] == d["effectual_macs"]
    assert t["processed_macs"] == circ["processed_macs"].sum()
    assert np.array_equal(circ["processed_macs"], np.ceil(dense["processed_macs"] * ratio))
    if phase == FF:
        assert t["weight_dram_bytes"] * b == d["weight_dram_bytes"] == k * c
    else:  # the weight gradients written back: one row a block
        assert circ["dram_write_bytes"].sum() * b == dense["dram_write_bytes"].sum()


def test_the_tile_search_prices_circulant_weights_as_stored():
    """A 256 x 256 linear layer of 16 x 16 circulant blocks, batch 64, on a 16 KiB tile
    budget: its weights take 8,192 bytes (one row a block), its input 32,768. The search
    sizes and prices the weights as stored: they are read once, in two blocks held while
    the input streams past each (8,192 + 2 x 32,768 bytes: 16 tiles that overlap better than
    8 holding all the weights). Sized at their captured 131,072 bytes, they were read again
    for each of 8 input blocks (65,536 + 32,768 bytes); priced so as well, they were read
    once and the input 16 times (532,480 bytes)."""
    torch.manual_seed(0)
    layer = linear_layer(256, 256, n=64, weight=block_circulant(torch.randn(256, 256) + 3, 16))
    hw = HardwareView(clusters=8, pes_per_cluster=1, buffer_bytes=16 * 1024, element_bytes=2,
                      dram_bytes_per_cycle=8, circulant_fft=True)
    table, totals = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True,
                               circulant_block=16)
    assert totals["weight_dram_bytes"] == 8_192
    assert int(table["dram_read_bytes"].sum()) == 8_192 + 2 * 32_768 and len(table) == 16


def test_compressed_weights_get_a_tile_only_their_stored_bytes_fit():
    """A 256 x 256 linear layer with 90% of its weights zero, stored in CSR (27,180 bytes;
    131,072 dense), batch 64, 512 PEs, on a 64 KiB tile budget: the search sizes a tile at
    its operands' bytes as stored, so the weights fit whole beside half the input and the
    plan reads each operand once (27,180 + 32,768 bytes, 2 tiles), as with a budget that
    holds everything. Sized at dense bytes, the weights were cut into blocks: 8 tiles in 2
    reduction chunks that read them twice (89,200 bytes)."""
    torch.manual_seed(0)
    weight = torch.randn(256, 256)
    weight[torch.rand(256, 256) < 0.9] = 0
    layer = linear_layer(256, 256, n=64, weight=weight)
    hw = HardwareView(clusters=8, pes_per_cluster=64, buffer_bytes=64 * 1024, element_bytes=2,
                      dram_bytes_per_cycle=1, weight_format="csr")
    table, totals = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
    assert totals["weight_dram_bytes"] == 27_180
    assert int(table["dram_read_bytes"].sum()) == 27_180 + 32_768 and len(table) == 2
    assert int(table["held_bytes"].max()) == 59_948 <= hw.buffer_bytes


def test_inference_maps_the_forward_pass_only_and_circulant_needs_the_pruning():
    spec = WorkloadSpec(model="lenet300", batch=1, data="random", inference=True)
    workload = capture_workload(spec, PruningSpec(method="block_circulant", b=4))
    assert workload.pruned_layers == ("0", "2")
    hw = HardwareView(**HW, circulant_fft=True)
    work = map_workload(workload, hw)
    assert {w.phase for w in work} == {FF}
    by_name = {w.name: w for w in work}
    ratio = fft_mac_ratio(4, 300, 784)                                # circulant: FFT work
    assert by_name["0"].processed_macs == pytest.approx(by_name["0"].macs * ratio, rel=1e-3)
    assert by_name["0"].weight_dram_bytes * 4 == 300 * 784
    assert by_name["4"].processed_macs == by_name["4"].macs          # unpruned classifier
    plain = map_workload(workload, HardwareView(**HW))                # no FFT hardware
    assert all(w.processed_macs == w.macs for w in plain)


def test_ternary_combines_with_pruned_grads_unuseds_only():
    with pytest.raises(ValidationError, match="ternary"):
        PruningSpec(method="dropback", sparsity=0.5, ternary=True)
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
    masks = prune_model(model, PruningSpec(method="pe_wise", sparsity=0.5, pe_rows=4,
                                           pe_cols=4, ternary=True))
    w = model[0].weight
    assert len(torch.unique(w)) == 3 and not w[~masks["0"]].any()
    assert masks["0"].float().mean() == 0.5


@pytest.mark.parametrize("name", ["ternary_pe_wise_resnet18", "permdnn_lenet300",
                                  "permdnn_transformer", "circnn_resnet18", "admm_lenet5",
                                  "admm_vgg16"])
def test_experiment_files_load(name):
    experiment = load_experiment(EXPERIMENTS / f"{name}.yaml")
    assert experiment.spec.workload.inference and experiment.spec.notes


def test_compared_processors_share_resources():
    pairs = [("int8_dense", "ternary_pe_wise"), ("eie_like", "permdnn"), ("dense", "circnn")]
    for a, b in pairs:
        x, y = load_arch(ARCH / f"{a}.yaml"), load_arch(ARCH / f"{b}.yaml")
        for key in ("technology", "core_clock_mhz", "dram", "global_buffer", "noc"):
            assert getattr(x, key) == getattr(y, key), (a, b, key)
        assert x.pe_cluster.pes == y.pe_cluster.pes
        assert x.pe_cluster.macs_per_pe_per_cycle == y.pe_cluster.macs_per_pe_per_cycle
    permdnn = load_arch(ARCH / "permdnn.yaml")
    assert math.prod(permdnn.noc.shape) * permdnn.pe_cluster.pes == 32   # PermDNN's 32 PEs


# -- the examples, end to end with tiny sizes ----------------------------------------------------

def _check_ternary(out: dict) -> None:
    """Each row's stored compression (the format code's) is its closed form, under the
    paper's formula; the simulation reads every stored weight byte at least once."""
    for row in out["rows"]:
        assert row["compression_stored"] == pytest.approx(row["compression_closed_form"],
                                                          rel=1e-3)
        assert row["compression_stored"] < row["compression_paper_formula"]
        assert row["weight_reads"] >= 1


def _check_permdnn(out: dict) -> None:
    """At equal sparsity, PermDNN stores fewer weight bytes than EIE (no indices) and its
    permuted diagonals balance the PEs at least as well."""
    for r in out["results"]:
        eie, perm = r["eie_like"], r["permdnn"]
        assert eie["sparsity"] == pytest.approx(perm["sparsity"])
        assert perm["weight_kb"] < eie["weight_kb"]
        assert perm["imbalance"] <= eie["imbalance"]


def _check_circnn(out: dict) -> None:
    """Storage shrinks b-fold exactly; the FFT compute ratio is its closed form, under its
    limit."""
    for r in out["rows"]:
        assert r["storage_simulated"] == r["storage_closed_form"] == r["b"]
        assert r["compute_simulated"] == pytest.approx(r["compute_closed_form"], rel=1e-3)
        assert r["compute_closed_form"] <= r["compute_limit"]


def _check_admm(out: dict) -> None:
    """A bitmap (a bit an element) breaks even at no higher sparsity than CSR, give or take
    three points of sparsity: on a compute-bound layer both take within about 1% of dense's
    time at s = 0, and the plan the mapper picks for energy x delay decides which is a hair
    faster (VGG-16's conv 10 at c4ea647: CSR 0.988 of dense's time for 1.24x its energy,
    bitmap 1.004, so CSR breaks even at 0 and bitmap at 0.004; its conv 7 at 074ea21, CSR
    at 0 and bitmap at 0.013; conv 10 again in session 49, when the tile search came to
    hand the planner a runner-up shape, CSR at 0 and bitmap at 0.020). Where weights
    stream (CSR's index doubles a value) bitmap breaks even some 40 points earlier."""
    for r in out["results"]:
        for layer in r["layers"]:
            even = r["break_even"][layer]
            assert even["time_bitmap"] <= even["time_csr"] + 0.03


def test_ternary_example(capsys):
    out = example("ternary_pe_wise").main(["--batch", "1", "--sparsity", "0.25"])
    _check_ternary(out)
    (row,) = out["rows"]
    assert 16 < row["compression_stored"]
    assert row["speedup"] > 1 and row["energy_ratio"] > 1 and row["mac_energy_ratio"] > 5
    assert "paper" in capsys.readouterr().out


def test_permdnn_example(capsys):
    out = example("permdnn").main(["--workloads", "lenet300"])
    _check_permdnn(out)
    (r,) = out["results"]
    assert r["permdnn"]["sparsity"] == pytest.approx(0.75)
    assert r["throughput_ratio"] > 1 and r["energy_ratio"] > 1
    assert all(math.isfinite(v) for v in (r["throughput_ratio"], r["energy_ratio"]))
    assert "3.3x-4.8x" in capsys.readouterr().out


def test_circnn_example(capsys):
    out = example("circnn").main(["--blocks", "4", "16", "--batch", "1"])
    _check_circnn(out)
    rows = out["rows"]
    assert rows[1]["compute_simulated"] > rows[0]["compute_simulated"]
    assert rows[1]["speedup"] > 1 and rows[1]["energy_ratio"] > 1
    assert "closed" in capsys.readouterr().out


def test_admm_example(tmp_path, capsys):
    out = example("admm_break_even").main(["--nets", "lenet5", "--sparsity", "0", "0.5",
                                           "0.95", "--out", str(tmp_path)])
    (r,) = out["results"]
    assert out["plots"] == [tmp_path / "admm_lenet5.png"] and out["plots"][0].stat().st_size
    _check_admm(out)
    for layer in r["layers"]:
        even = r["break_even"][layer]
        assert 0 <= even["time_bitmap"] <= 0.5           # a bit an element: cheap to index
        assert even["time_csr"] <= 0.95
    t = r["table"]
    assert (t[t["sparsity"] == 0.95]["time_ratio"] < 1).all()
    assert "break-even" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ternary_pe_wise", "permdnn", "circnn", "admm_break_even"])
def test_examples_at_full_size(name, tmp_path):
    argv = ["--out", str(tmp_path)] if name == "admm_break_even" else []
    out = example(name).main(argv)
    {"ternary_pe_wise": _check_ternary, "permdnn": _check_permdnn, "circnn": _check_circnn,
     "admm_break_even": _check_admm}[name](out)
