"""PE-wise structured pruning + ternarization on ResNet-18, simulated beside the paper.

Paper: L. Yang, Z. He, D. Fan, "Harmonious Coexistence of Structured Weight Pruning and
Ternarization for Deep Neural Networks", AAAI 2020 (shared/seeds/002). Weights in
{-1, 0, +1} stored in 2 bits (16x less than fp32), add-only PEs, and groups of weights pruned
so that every PE of the array keeps the same number: ~21x compression of ResNet-18 (ImageNet)
with 1.74% / 0.94% top-1 / top-5 loss.

What this script does: ResNet-18 (the CIFAR variant at 32 x 32, to stay fast; the paper uses
ImageNet at 224 x 224) is PE-wise pruned with pe_rows x pe_cols = the 16 x 16 array of
configs/arch/ternary_pe_wise.yaml, its kept weights ternarized (TWN thresholds), and one
inference (the forward pass) is simulated on that array and on the 8-bit dense array with the
same resources (configs/arch/int8_dense.yaml). For each PE-wise sparsity it prints

- the compression of the pruned layers' weights against fp32: closed form (2 bits a kept
  weight plus one bit a group of 16, no per-weight index) and stored (the simulator's
  format code, mappings/formats.py, on the pruned weights in the arch's group-bitmap
  format); then the weight bytes the simulation reads from DRAM in the forward pass, and
  how many times the stored bytes that is (a plan may read a layer's weights twice);
- the speedup and the energy ratio of the whole inference against the 8-bit dense array.

The paper gives no speedup or energy figure in its abstract, and not its PE-wise sparsity:
16x from the 2-bit codes times 1 / (1 - s) from pruning is ~21x for s ~ 0.24, so the default
sweep shows s = 0, 0.25 and 0.5 rather than a value fitted to the paper.

Run:  .venv/bin/python examples/ternary_pe_wise.py [--batch 4] [--sparsity 0 0.25 0.5]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arch.config import ArchConfig
from arch.energy import ADD_PJ_45NM, MULTIPLY_PJ_45NM
from desim.errors import guarded
from desim.experiment import load_experiment
from desim.options import at_least, fraction
from desim.runner import RunResult, simulate
from mappings.formats import BlockStats, operand_bytes
from mappings.pruning import pruned_count
from mappings.workload import Workload, capture_workload

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "configs" / "experiments" / "ternary_pe_wise_resnet18.yaml"
PAPER_COMPRESSION = 21.0   # abstract: "~21x PE-wise structured compression rate"
FP32_BITS = 32


def closed_form_bits(shape: tuple[int, ...], sparsity: float, pe_rows: int, pe_cols: int,
                     weight_bits: int = 2) -> int:
    """Stored bits of one PE-wise pruned ternary layer: the kept groups of pe_cols weights at
    `weight_bits` each, plus one presence bit a group. A group is pe_cols consecutive weights
    of a (C*R*S) row; each PE row prunes round(sparsity * U) of its U groups exactly
    (`mappings.pruning.pe_wise_prune`)."""
    n = math.prod(shape)
    groups = n // pe_cols
    per_row = groups // pe_rows
    kept = groups - pe_rows * pruned_count(sparsity, per_row)
    return kept * pe_cols * weight_bits + groups


def stored_bytes(w_nz: torch.Tensor, arch: ArchConfig) -> int:
    """A layer's weights in the design's format, as `mappings.formats` counts them (the
    simulator's own code, checked here against `closed_form_bits`): units are output
    channels, lines groups of `weight_group` consecutive weights of a unit."""
    units = w_nz.reshape(w_nz.shape[0], -1)
    group = arch.sparsity.weight_group or w_nz.shape[-1]
    lines = units.reshape(units.shape[0], -1, group).any(-1)
    stats = BlockStats(np.array([units.numel()]), np.array([int(units.sum())]),
                       np.array([lines.numel()]), np.array([int(lines.sum())]), group,
                       np.zeros(1, np.int64))
    return int(operand_bytes(arch.sparsity.weight_format, stats, 1,
                             arch.sparsity.weight_bits)[0])


def _pruned_ff(result: RunResult, workload: Workload):
    layers = result.layers
    return layers[(layers["phase"] == "FF") & layers["layer"].isin(workload.pruned_layers)]


def study(batch: int, sparsities: list[float]) -> dict[str, Any]:
    """Simulate the 8-bit dense baseline once and the ternary array at each sparsity."""
    experiment = load_experiment(EXPERIMENT, [f"workload.batch={batch}"])
    spec = experiment.spec
    base_run, ternary_run = spec.runs
    base = simulate(base_run.name, experiment.archs[base_run.name],
                    capture_workload(spec.workload, base_run.pruning))
    arch = experiment.archs[ternary_run.name]
    rows = []
    for s in sparsities:
        pruning = ternary_run.pruning.model_copy(update={"sparsity": s})
        workload = capture_workload(spec.workload, pruning)
        result = simulate(ternary_run.name, arch, workload)
        pruned = [layer for layer in workload.layers if layer.name in workload.pruned_layers]
        n = sum(layer.w_nz.numel for layer in pruned)
        nnz = sum(layer.w_nz.nnz for layer in pruned)
        bits = sum(closed_form_bits(layer.w_nz.shape, s, pruning.pe_rows, pruning.pe_cols,
                                    arch.sparsity.weight_bits or 8) for layer in pruned)
        stored = sum(stored_bytes(layer.w_nz.unpack(), arch) for layer in pruned)
        read = int(_pruned_ff(result, workload)["weight_dram_bytes"].sum())
        ff = result.layers[result.layers["phase"] == "FF"]
        rows.append({
            "sparsity": s,
            "nonzero_fraction": nnz / n,  # after pruning and ternarization
            "compression_paper_formula": FP32_BITS / (2 * (1 - s)),
            "compression_closed_form": FP32_BITS * n / bits,
            "compression_stored": FP32_BITS * n / (8 * stored),
            # the pruned weights' DRAM reads over their stored bytes: above 1 where a plan
            # reads a layer's weights more than once (a split reduction, chunks inside)
            "weight_reads": read / stored,
            "speedup": base.total_ps / result.total_ps,
            "energy_ratio": base.energy_j / result.energy_j,
            "mac_energy_ratio": (base.energy_by_component_j["macs"]
                                 / result.energy_by_component_j["macs"]),
            "weight_dram_mb": ff["weight_dram_bytes"].sum() / 1e6,
            "other_dram_mb": (ff["dram_bytes"].sum() - ff["weight_dram_bytes"].sum()) / 1e6,
        })
    ff = base.layers[base.layers["phase"] == "FF"]
    return {"batch": batch, "baseline_cycles": base.cycles, "rows": rows,
            "baseline_weight_dram_mb": ff["weight_dram_bytes"].sum() / 1e6,
            "baseline_other_dram_mb": (ff["dram_bytes"].sum()
                                       - ff["weight_dram_bytes"].sum()) / 1e6}


def report(out: dict[str, Any]) -> str:
    lines = [
        f"PE-wise pruning + ternarization, ResNet-18 (CIFAR, 32x32, batch {out['batch']}), "
        "one inference",
        "compression of the pruned layers' weights vs fp32; speedup and energy vs the 8-bit "
        "dense array",
        f"{'sparsity':>8} {'nz':>5} {'16/(1-s)':>9} {'closed':>7} {'stored':>7} "
        f"{'speedup':>8} {'energy':>7} {'MAC en.':>8} {'DRAM MB: W':>10} {'reads':>6} "
        f"{'other':>6}",
    ]
    for r in out["rows"]:
        lines.append(
            f"{r['sparsity']:8.2f} {r['nonzero_fraction']:5.2f} "
            f"{r['compression_paper_formula']:8.1f}x {r['compression_closed_form']:6.1f}x "
            f"{r['compression_stored']:6.1f}x {r['speedup']:7.2f}x "
            f"{r['energy_ratio']:6.2f}x {r['mac_energy_ratio']:7.1f}x "
            f"{r['weight_dram_mb']:10.2f} {r['weight_reads']:6.2f} {r['other_dram_mb']:6.2f}")
    first = out["rows"][0]
    zeros = 1 - first["nonzero_fraction"] / (1 - first["sparsity"])
    reread = ("; reads exceed the stored bytes where the plan the mapper picks for a layer "
              "(on energy x delay) keeps its inputs stationary and reads its weights again "
              "for each block of images (docs/DESIGNS.md);")
    add = ADD_PJ_45NM["int32"]  # both arrays' accumulator (configs/arch)
    mac = MULTIPLY_PJ_45NM["int8"] + add
    lines += [
        f"8-bit dense array: {out['baseline_weight_dram_mb']:.2f} MB of weights and "
        f"{out['baseline_other_dram_mb']:.2f} MB of activations from DRAM.",
        f"paper: ~{PAPER_COMPRESSION:.0f}x compression (ResNet-18, ImageNet); its PE-wise "
        "sparsity is not in the abstract (16/21 implies ~0.24); no speedup or energy figure.",
        "where and why they differ:",
        "- compression: the paper's 16/(1-s) stores no index; the simulator stores one bit a "
        "group of 16 (which groups survive), so it lands slightly below"
        + (reread if any(r["weight_reads"] > 1.005 for r in out["rows"]) else ";"),
        "- speedup: beyond the pruned groups the add-only PEs skip the ternary zeros too "
        f"({zeros:.0%} of the kept weights fall under TWN's threshold), but those are "
        "irregular, so the busiest PE sets the time; the 8-bit array skips nothing;",
        f"- energy: a 32-bit add ({add:.2f} pJ at 45 nm) against an 8-bit multiply and that "
        f"add ({mac:.2f} pJ) cuts MAC energy {mac / add:.0f}x, more with the skipped zeros, "
        "but DRAM dominates both totals and the 2-bit "
        "codes shrink only its weight part: the activations (1 byte in both; the batch "
        "norms are folded into the convs at inference) stay;",
        "- the workload is the CIFAR variant at 32x32, not ImageNet at 224x224: there the "
        "activations are ~49x larger per image, so weights are a smaller share of the "
        "traffic and the energy gain would be smaller still at equal batch.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=at_least(1), default=4)
    parser.add_argument("--sparsity", type=fraction, nargs="+", default=[0.0, 0.25, 0.5])
    args = parser.parse_args(argv)
    out = study(args.batch, args.sparsity)
    print(report(out))
    return out


if __name__ == "__main__":
    guarded(main)  # bad input: one line, exit 2
