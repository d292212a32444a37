"""Index matching: PEs that pair two operands' non-zeros by ANDing their bitmaps
(`index_matching` in an arch file; fine_grained.yaml, pnpu.yaml, trainer.yaml).

fine_grained.yaml: 16 clusters of 16 PEs, 4 MACs a PE a cycle, 4 cycles of fill and drain,
500 MHz (2 ns a cycle), 28 nm (28/45 of Horowitz's 45 nm), 128 bits ANDed a PE a cycle.
A pair ANDed costs an eighth of an 8-bit add (0.03 / 8 pJ at 45 nm), a pair matched the
selector's entry (0.03 pJ).
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from desim.errors import ConfigError
from desim.events import empty_table
from desim.experiment import load_arch
from mappings.counting import BP, FF, WG, SkipPolicy
from mappings.pipeline import compute_cycles
from mappings.planner import tile_phase
from mappings.target import HardwareView
from tests.test_accelerator_stages import CYCLE_PS, SCALE_28NM, _run
from tests.test_counting import dense_capture
from tests.views import arch_view

ARCH = Path(__file__).resolve().parent.parent / "configs" / "arch"
SCAN_PJ = 0.03 / 8 * SCALE_28NM
MATCH_PJ = 0.03 * SCALE_28NM
LANES = 16 * 16 * 128   # pairs the whole array ANDs a cycle


def test_a_sparse_tile_lasts_as_long_as_its_pairs_take_to_scan():
    """50 cycles of pairs on every PE against 25 of MACs: the scan sets the time."""
    acc, energy, _ = _run("fine_grained.yaml", busiest_pe_macs=100, processed_macs=1_000,
                          scanned_pairs=50 * LANES, active_clusters=16)
    assert acc.env.now == (50 + 4) * CYCLE_PS
    assert energy["index_matching.scanned_pairs"] == pytest.approx(50 * LANES * SCAN_PJ)
    assert energy["index_matching.matched_pairs"] == pytest.approx(1_000 * MATCH_PJ)


def test_a_dense_enough_tile_lasts_as_long_as_its_busiest_pe():
    """10 cycles of pairs against 25 of MACs; on 4 active clusters the same pairs take 40."""
    acc, _, _ = _run("fine_grained.yaml", busiest_pe_macs=100, processed_macs=1_000,
                     scanned_pairs=10 * LANES, active_clusters=16)
    assert acc.env.now == (25 + 4) * CYCLE_PS
    acc, _, _ = _run("fine_grained.yaml", busiest_pe_macs=100, processed_macs=1_000,
                     scanned_pairs=10 * LANES, active_clusters=4)
    assert acc.env.now == (40 + 4) * CYCLE_PS


def test_a_design_without_index_matching_pairs_for_free():
    acc, energy, _ = _run("dense.yaml", busiest_pe_macs=100, processed_macs=1_000,
                          scanned_pairs=50 * LANES, active_clusters=16)
    assert acc.env.now == (25 + 4) * CYCLE_PS
    assert not any(key.startswith("index_matching") for key in energy)


def test_the_plan_estimate_counts_the_tiles_as_the_pes_do():
    acc, _, _ = _run("fine_grained.yaml")
    hw = arch_view("fine_grained.yaml")
    rng = np.random.default_rng(0)
    rows = [(int(rng.integers(0, 400)), int(rng.integers(0, 80 * LANES)),
             int(rng.integers(1, 17))) for _ in range(50)] + [(0, 0, 16)]
    table = empty_table(len(rows))
    for column, values in zip(("busiest_pe_macs", "scanned_pairs", "active_clusters"),
                              zip(*rows, strict=True), strict=True):
        table[column] = values
    assert list(compute_cycles(table, hw)) == [acc.pes.tile_cycles(*row) for row in rows]


def test_a_design_must_skip_two_operands_zeros_to_match_them(tmp_path):
    with pytest.raises(ConfigError, match="index_matching: pairs the non-zeros of two"):
        load_arch(ARCH / "dense.yaml", ["index_matching={bits_per_cycle: 128}"])
    with pytest.raises(ConfigError, match="index_matching.bits_per_cycle"):
        load_arch(ARCH / "fine_grained.yaml", ["index_matching.bits_per_cycle=0"])
    # two operands skipped, but never in the same phase: nothing to pair
    for skips in (["sparsity.skip_zero_activations=[FF]", "sparsity.skip_zero_gradients=[BP]"],
                  ["sparsity.skip_zero_weights=true", "sparsity.skip_zero_activations=[WG]"]):
        with pytest.raises(ConfigError, match="one operand at most in every phase"):
            load_arch(ARCH / "dense.yaml", ["index_matching={bits_per_cycle: 128}", *skips])
    paired = load_arch(ARCH / "dense.yaml", ["index_matching={bits_per_cycle: 128}",
                                             "sparsity.skip_zero_activations=[WG]",
                                             "sparsity.skip_zero_gradients=[WG]"])
    assert paired.sparsity.two_sided_phases == ("WG",)


def test_an_operand_skipped_in_all_its_phases_is_the_same_design_as_true():
    """[WG, FF] is `true`: compare and sweeps see one design, not two."""
    arch = load_arch(ARCH / "dense.yaml", ["sparsity.skip_zero_activations=[WG, FF]",
                                           "sparsity.skip_zero_gradients=[BP, WG]"])
    assert arch.sparsity.skip_zero_activations is True
    assert arch.sparsity.skip_zero_gradients is True
    assert arch.sparsity.activation_phases == ("FF", "WG")


HW = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=64 * 1024, element_bytes=2,
                  skip_zero_weights=True, skip_zero_activations=True,
                  skip_zero_gradients=True, skip_pruned_weight_gradients=True,
                  weight_format="bitmap", activation_format="bitmap", index_matching_bits=128)
N, C, K, H, R = 2, 3, 8, 10, 3
P = H - R + 1


@pytest.fixture(scope="module")
def half_pruned():
    """A conv layer with every other weight zero, its inputs and gradients dense."""
    layer = dense_capture(nn.Conv2d(C, K, R, bias=False))
    keep = (torch.arange(layer.w_nz.numel()) % 2 == 0).reshape(layer.w_nz.shape)
    return replace(layer, w_nz=layer.w_nz & keep)


@pytest.mark.parametrize("phase", [FF, BP])
def test_ff_and_bp_scan_every_nominal_pair(half_pruned, phase):
    """Every output is computed, so every in-bounds pair is ANDed; half of them match."""
    table, totals = tile_phase(half_pruned, 0, phase, HW, SkipPolicy(True, True, True, True),
                               pruned_grads_unused=True)
    nominal = N * K * C * R * R * P * P
    assert table["scanned_pairs"].sum() == totals["macs"] == nominal
    assert totals["processed_macs"] == int(half_pruned.w_nz.sum()) * N * P * P


def test_wg_scans_only_the_kept_weights_gradients(half_pruned):
    """WG computes the kept weights' gradients only: each ANDs its N x P x P pairs."""
    table, _ = tile_phase(half_pruned, 0, WG, HW, SkipPolicy(True, True, True, True),
                          pruned_grads_unused=True)
    kept = int(half_pruned.w_nz.sum())
    assert kept == K * C * R * R // 2
    assert table["scanned_pairs"].sum() == kept * N * P * P


def test_one_sided_skipping_scans_nothing(half_pruned):
    """Skipping the weights' zeros alone needs no pairing: the weight's position indexes
    the dense operand."""
    table, _ = tile_phase(half_pruned, 0, FF, HW, SkipPolicy(weights=True),
                          pruned_grads_unused=True)
    assert table["scanned_pairs"].sum() == 0


def test_the_plan_estimate_s_scan_rate_does_not_wrap_on_a_large_design():
    """2^16 clusters x 2^16 PEs x 2^4 bits a cycle is 2^36 pairs a cycle: past int32, in
    which the tile table keeps its active clusters (it wrapped to 0 there: a division by 0)."""
    from dataclasses import replace

    hw = replace(arch_view("fine_grained.yaml"), pes_per_cluster=2**16, index_matching_bits=16)
    table = empty_table(1)
    table["active_clusters"], table["scanned_pairs"] = 2**16, 10 * 2**36
    assert list(compute_cycles(table, hw)) == [10 + hw.pipeline_cycles]
