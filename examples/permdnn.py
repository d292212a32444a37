"""PermDNN vs an EIE-like engine on FC layers, simulated beside the paper.

Paper: C. Deng, S. Liao, Y. Xie, K. K. Parhi, X. Qian, B. Yuan, "PermDNN: Efficient
Compressed DNN Architecture with Permuted Diagonal Matrices", MICRO 2018 (shared/seeds/002):
FC weights made of p x p permuted-diagonal blocks (one non-zero per row and column of a
block, its position given by the block's offset: no index storage, every row equally full);
a 32-PE, 28 nm engine with 3.3x-4.8x the throughput of EIE (Han et al., ISCA 2016) and
2.8x-4.0x its energy efficiency.

What this script does: for each workload (configs/experiments/permdnn_*.yaml) it simulates
one inference on configs/arch/permdnn.yaml (permuted-diagonal weights, values only) and on
configs/arch/eie_like.yaml (magnitude pruning to the same sparsity 1 - 1/p, CSC with a 16-bit
index a value, rows dealt to the PEs as they come), with the same 32 PEs, clock, buffers and
DRAM, and prints over the pruned FC layers: the weight bytes read, the cycles, the load
imbalance (busiest PE x PEs / MACs, summed over tiles: 1.00 is perfect balance), the
throughput ratio and the energy ratio.

- LeNet-300-100 at batch 1: every weight is used once, so the layers stream their weights
  from DRAM and time follows bytes: PermDNN's index-free storage is the gain.
- Transformer block linears, 64 tokens: each weight is reused 64 times, compute-bound, so
  only the load balance separates the two.

Run:  .venv/bin/python examples/permdnn.py [--workloads lenet300 transformer] [--batch 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from arch.accelerator import Accelerator
from arch.config import ArchConfig
from desim.errors import guarded
from desim.experiment import load_experiment
from desim.hardware_view import hardware_view
from desim.module import Simulator
from desim.options import at_least
from desim.runner import simulate
from mappings.mapper import map_workload
from mappings.workload import Workload, capture_workload

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = {
    "lenet300": ROOT / "configs" / "experiments" / "permdnn_lenet300.yaml",
    "transformer": ROOT / "configs" / "experiments" / "permdnn_transformer.yaml",
}
PAPER_THROUGHPUT = (3.3, 4.8)  # x EIE, abstract
PAPER_ENERGY = (2.8, 4.0)      # x EIE energy efficiency, abstract


def imbalance(arch: ArchConfig, workload: Workload) -> float:
    """Sum over the pruned layers' FF tiles of busiest-PE MACs x PEs, over their MACs."""
    hw = hardware_view(Accelerator(Simulator(), arch))
    busiest = processed = 0
    for work in map_workload(workload, hw):
        if work.name in workload.pruned_layers:
            busiest += int(work.table["busiest_pe_macs"].sum())
            processed += int(work.table["processed_macs"].sum())
    return busiest * hw.pes / processed if processed else 1.0


def compare(name: str, batch: int) -> dict[str, Any]:
    """Simulate both engines on one workload; figures over its pruned FC layers."""
    experiment = load_experiment(EXPERIMENTS[name], [f"workload.batch={batch}"])
    spec = experiment.spec
    out: dict[str, Any] = {"workload": name, "batch": batch}
    for run in spec.runs:
        arch = experiment.archs[run.name]
        workload = capture_workload(spec.workload, run.pruning)
        result = simulate(run.name, arch, workload)
        layers = result.layers
        fc = layers[(layers["phase"] == "FF") & layers["layer"].isin(workload.pruned_layers)]
        weights = sum(layer.w_nz.numel for layer in workload.layers
                      if layer.name in workload.pruned_layers)
        nnz = sum(layer.w_nz.nnz for layer in workload.layers
                  if layer.name in workload.pruned_layers)
        out[run.name] = {
            "sparsity": 1 - nnz / weights,
            "weight_kb": fc["weight_dram_bytes"].sum() / 1e3,
            "cycles": int(fc["cycles"].sum()),
            "energy_j": float(fc["energy_j"].sum()),
            "processed_macs": int(fc["processed_macs"].sum()),
            "imbalance": imbalance(arch, workload),
        }
    eie, perm = out["eie_like"], out["permdnn"]
    out["throughput_ratio"] = eie["cycles"] / perm["cycles"]
    out["energy_ratio"] = eie["energy_j"] / perm["energy_j"]
    return out


def report(results: list[dict[str, Any]]) -> str:
    lines = ["PermDNN vs EIE-like, 32 PEs each, one inference; pruned FC layers only",
             f"{'workload':<12} {'engine':<9} {'sparsity':>8} {'weights kB':>10} "
             f"{'cycles':>9} {'imbalance':>9}"]
    for r in results:
        for engine in ("eie_like", "permdnn"):
            e = r[engine]
            lines.append(f"{r['workload']:<12} {engine:<9} {e['sparsity']:8.3f} "
                         f"{e['weight_kb']:10.1f} {e['cycles']:9,} {e['imbalance']:9.2f}")
        lines.append(f"{'':<12} PermDNN: {r['throughput_ratio']:.2f}x throughput, "
                     f"{r['energy_ratio']:.2f}x less energy")
    lines += [
        f"paper: {PAPER_THROUGHPUT[0]}x-{PAPER_THROUGHPUT[1]}x throughput and "
        f"{PAPER_ENERGY[0]}x-{PAPER_ENERGY[1]}x energy efficiency vs EIE "
        "(on its own FC benchmarks, not these two).",
        "where and why they differ:",
        "- the paper sets its 28 nm implementation against EIE's reported results (EIE: 64 "
        "PEs, 45 nm): PE datapaths, clocks and on-chip weight SRAM differ; here both engines "
        "have the same 32 one-MAC PEs, clock, buffers and DRAM, so only structure and "
        "storage remain;",
        "- EIE stores 4-bit codebook weights with 4-bit relative indices; here both keep "
        "16-bit values and the EIE-like engine a 16-bit index each (CSC), so PermDNN's "
        "storage is half, and where weights stream from DRAM (batch 1) time follows bytes;",
        "- both engines here read weights from DRAM (desim has no weights-resident mode), "
        "which the papers avoid; where weights are reused (64 tokens) the gain is load "
        "balance alone;",
        "- PermDNN's rows hold equally many weights, but with zero inputs skipped a row's "
        "work is the non-zero inputs its diagonals meet, hence its imbalance above 1.00 on "
        "LeNet's digit images (zero borders) and none on the transformer's dense inputs;",
        "- magnitude pruning of untrained (randomly initialised) weights spreads the "
        "non-zeros evenly over rows; trained sparse models are more skewed, and EIE's "
        "imbalance with them larger.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=sorted(EXPERIMENTS),
                        default=["lenet300", "transformer"])
    parser.add_argument("--batch", type=at_least(1), default=1)
    args = parser.parse_args(argv)
    results = [compare(name, args.batch) for name in args.workloads]
    print(report(results))
    return {"results": results}


if __name__ == "__main__":
    guarded(main)  # bad input: one line, exit 2
