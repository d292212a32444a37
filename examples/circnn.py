"""CirCNN's block-circulant weights: storage and compute reduction against block size b.

Paper: C. Ding et al., "CirCNN: Accelerating and Compressing Deep Neural Networks Using
Block-Circulant Weight Matrices", MICRO 2017 (shared/seeds/002): a weight matrix made of
b x b circulant blocks is stored by one row a block (storage O(n^2) -> O(n), b-fold) and
multiplied by FFTs (compute O(n^2) -> O(n log n)).

What this script does: ResNet-18 (CIFAR variant, 32 x 32) is projected onto block-circulant
weights (every conv but the first, `PruningSpec(method="block_circulant", b=b)`) for
b = 2..64, and one inference is simulated on configs/arch/circnn.yaml (the resources of
dense.yaml, circulant layers stored by first rows and run by FFT) and on dense.yaml. The FFT
work is expressed as effective MACs: each tile's MACs scaled by the closed form of
`mappings.circulant` (per K x C product: 4 K C / b real MACs of frequency-domain products
plus C/b FFTs and K/b inverse FFTs of (b/2) log2 b butterflies, 4 real MACs a butterfly or
complex MAC). For each b it prints, over the circulant layers:

- storage reduction, closed form (b) and simulated (dense weight bytes read / circulant
  weight bytes read, from the simulator's DRAM counts, both designs run again in
  weight-stationary order, where each weight is read once);
- compute reduction, closed form (sum of MACs / sum of MACs x ratio(b, K, C)), its large-layer
  limit b / 4, and simulated (processed MACs, dense / circulant);
- the whole inference's speedup and energy ratio against dense.

Run:  .venv/bin/python examples/circnn.py [--blocks 2 4 8 16 32 64] [--batch 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from desim.errors import ConfigError, guarded
from desim.experiment import load_experiment
from desim.options import at_least
from desim.runner import simulate
from mappings.circulant import fft_mac_ratio, storage_ratio
from mappings.pruning import PruningSpec
from mappings.workload import capture_workload

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "configs" / "experiments" / "circnn_resnet18.yaml"


def study(blocks: list[int], batch: int) -> dict[str, Any]:
    experiment = load_experiment(EXPERIMENT, [f"workload.batch={batch}"])
    spec = experiment.spec
    dense_run, circ_run = spec.runs
    # Storage is measured where each weight is read from DRAM once: in weight-stationary
    # order (the runs' own order may read the light circulant weights again and again, to
    # read the activations once).
    stationary = load_experiment(EXPERIMENT, [f"workload.batch={batch}", *(
        f"arch.{run.name}.mapping.dataflow=weight_stationary" for run in spec.runs)])

    def weights_read(run_name: str, workload: Any) -> Any:
        result = simulate(run_name, stationary.archs[run_name], workload)
        return result.layers[result.layers["phase"] == "FF"].set_index("layer")[
            "weight_dram_bytes"]

    dense_workload = capture_workload(spec.workload, dense_run.pruning)
    dense = simulate(dense_run.name, experiment.archs[dense_run.name], dense_workload)
    dense_ff = dense.layers[dense.layers["phase"] == "FF"].set_index("layer")
    dense_weights = weights_read(dense_run.name, dense_workload)
    rows = []
    for b in blocks:
        pruning = PruningSpec(method="block_circulant", b=b)
        try:
            workload = capture_workload(spec.workload, pruning)
        except ConfigError as err:  # named as this script's option, not the pruning's key
            raise ConfigError(f"--blocks {b}: {err.message}") from None
        result = simulate(circ_run.name, experiment.archs[circ_run.name], workload)
        ff = result.layers[result.layers["phase"] == "FF"].set_index("layer")
        names = list(workload.pruned_layers)
        shapes = {layer.name: layer.w_nz.shape for layer in workload.layers}
        macs = dense_ff.loc[names, "macs"]
        fft_macs = sum(int(macs[n]) * fft_mac_ratio(b, shapes[n][0], shapes[n][1])
                       for n in names)
        rows.append({
            "b": b,
            "storage_closed_form": storage_ratio(b),
            "storage_simulated": (dense_weights[names].sum()
                                  / weights_read(circ_run.name, workload)[names].sum()),
            "compute_closed_form": macs.sum() / fft_macs,
            "compute_limit": b / 4,
            "compute_simulated": (dense_ff.loc[names, "processed_macs"].sum()
                                  / ff.loc[names, "processed_macs"].sum()),
            "speedup": dense.total_ps / result.total_ps,
            "energy_ratio": dense.energy_j / result.energy_j,
        })
    return {"batch": batch, "rows": rows}


def report(out: dict[str, Any]) -> str:
    lines = [f"CirCNN block-circulant ResNet-18 (CIFAR, 32x32, batch {out['batch']}), one "
             "inference; reductions over the circulant layers, speedup and energy over all",
             f"{'b':>3} | {'storage: closed':>15} {'sim':>6} | {'compute: closed':>15} "
             f"{'b/4':>5} {'sim':>6} | {'speedup':>7} {'energy':>6}"]
    for r in out["rows"]:
        lines.append(
            f"{r['b']:3d} | {r['storage_closed_form']:14d}x {r['storage_simulated']:5.2f}x | "
            f"{r['compute_closed_form']:14.2f}x {r['compute_limit']:5.1f} "
            f"{r['compute_simulated']:5.2f}x | {r['speedup']:6.2f}x {r['energy_ratio']:5.2f}x")
    lines += [
        "paper: storage O(n^2) -> O(n) (b-fold) and compute O(n^2) -> O(n log n); its "
        "6-102x energy efficiency compares whole FPGA/ASIC designs with other chips and is "
        "not reproduced here.",
        "where and why they differ:",
        "- storage is b-fold by construction, in the closed form and in the simulator's DRAM "
        "count alike;",
        "- compute: with a complex MAC or butterfly at 4 real MACs and the FFTs shared by a "
        "layer's blocks, the FFT route costs 4/b + 2 log2(b) (1/K + 1/C) of the dense MACs "
        "(the compute columns are its inverse): it loses up to b = 4, b = 4 included (the "
        "products alone, 4/4, match the dense MACs and the transforms come on top), and "
        "gains from b = 8; the products (4/b) rule large layers (a b/4 gain), the "
        "transforms small ones, so ResNet-18's layers (K, C = 64..512) reach only ~3.8x at "
        "b = 64; real-input FFT symmetry (about 2x) and reusing input FFTs across the 3x3 "
        "kernel positions are left out (conservative);",
        "- simulated and closed-form compute agree up to per-tile rounding; the whole "
        "inference gains more than compute (the weights' DRAM bytes shrink b-fold, and "
        "tiles sized as the weights are stored hold b times more of them, so the deep "
        "layers read their inputs fewer times): by a third at b = 2, an eighth to a fifth "
        "from b = 8 on (the dense first conv "
        "and classifier and the activations' traffic do not shrink, and CirCNN "
        "cannot skip zero activations).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=at_least(1), nargs="+", default=[2, 4, 8, 16, 32, 64])
    parser.add_argument("--batch", type=at_least(1), default=2)
    args = parser.parse_args(argv)
    out = study(args.blocks, args.batch)
    print(report(out))
    return out


if __name__ == "__main__":
    guarded(main)  # bad input: one line, exit 2
