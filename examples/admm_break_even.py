"""The break-even pruning ratio of each layer (ADMM-NN), found by sweeping in the simulator.

Paper: A. Ren et al., "ADMM-NN: An Algorithm-Hardware Co-Design Framework of DNNs Using
Alternating Direction Method of Multipliers", ASPLOS 2019 (shared/seeds/002): irregular
sparsity costs the hardware (indices, imbalance), so a layer's pruning pays only beyond its
*break-even pruning ratio*, "the minimum pruning ratio of a specific layer that results in no
hardware performance degradation"; ADMM-NN then prunes conv layers (where compute is) past it.
Its abstract reports 85x pruning of LeNet-5 and 24x of AlexNet, not the break-even values.

What this script does: for LeNet-5 and VGG-16 (CIFAR variant, 32 x 32), batch 1, one
inference, it sweeps the magnitude sparsity s of the weights and compares, layer by layer, the
time and the energy of the layer on a fine-grained sparse processor with those on the dense
processor (configs/arch/dense.yaml, unpruned weights). The sparse processors have dense.yaml's
resources and skip zero weights (configs/arch/fine_grained.yaml with activation and gradient
skipping off, so that only the weights' sparsity counts, as in ADMM-NN): weights in CSR (a
16-bit index a value, a pointer a row) or in bitmap (a bit an element). A layer's break-even
sparsity is the least s at which it is faster (or uses less energy) than dense, linearly
interpolated between the sweep's points; as a pruning ratio, 1 / (1 - s).
For comparison it also gives the time break-even of fine_grained.yaml as it is (zero
activations skipped too): there ReLU's zeros alone put most layers ahead at s = 0.

All layers are pruned to s at once (one capture per s): with activation skipping off a
layer's time and energy depend on its own weights only, so this equals pruning it alone.
The plots (time and energy ratios against s, one line a layer) go to OUT/admm_<net>.png.

Run:  .venv/bin/python examples/admm_break_even.py [--out results] [--nets lenet5 vgg16]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arch.config import ArchConfig
from desim.errors import guarded
from desim.experiment import load_experiment
from desim.options import at_least, fraction
from desim.results import writable_folder
from desim.runner import simulate
from mappings.workload import capture_workload

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = {
    "lenet5": ROOT / "configs" / "experiments" / "admm_lenet5.yaml",
    "vgg16": ROOT / "configs" / "experiments" / "admm_vgg16.yaml",
}
DEFAULT_SPARSITIES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
PAPER_LENET5_PRUNING = 85.0  # abstract: 85x pruning of LeNet-5 without accuracy loss


def weight_only(arch: ArchConfig, fmt: str) -> ArchConfig:
    """`arch` skipping zero weights only, its weights in `fmt`, activations dense."""
    sparsity = arch.sparsity.model_copy(update={
        "skip_zero_weights": True, "skip_zero_activations": False,
        "skip_zero_gradients": False, "weight_format": fmt, "activation_format": "dense"})
    return arch.model_copy(update={"name": f"{arch.name}_{fmt}", "sparsity": sparsity})


def break_even(sparsities: list[float], ratios: list[float]) -> float:
    """Least sparsity with ratio (sparse / dense) < 1, linearly interpolated; nan if none.
    The first of `sparsities` is 0 (`main`), so a ratio under 1 there is a break-even at 0,
    not at some sparsity below the least sampled."""
    for i, (s, r) in enumerate(zip(sparsities, ratios, strict=True)):
        if r < 1:
            if i == 0:
                return s
            s0, r0 = sparsities[i - 1], ratios[i - 1]
            return s0 + (r0 - 1) / (r0 - r) * (s - s0)
    return math.nan


def sweep(net: str, sparsities: list[float], batch: int) -> dict[str, Any]:
    """Per-layer time and energy ratios (sparse / dense) at each sparsity, per processor."""
    experiment = load_experiment(EXPERIMENTS[net], [f"workload.batch={batch}"])
    spec = experiment.spec
    dense_run, sparse_run = spec.runs
    dense_workload = capture_workload(spec.workload, dense_run.pruning)
    dense = simulate(dense_run.name, experiment.archs[dense_run.name], dense_workload)
    # CSR of each layer's K x (C*R*S) matrix: a row per output channel (desim's csr row)
    as_is = experiment.archs[sparse_run.name]
    processors = {"csr": weight_only(as_is, "csr"),
                  "bitmap": weight_only(as_is, "bitmap"), "as_is": as_is}
    labels = {layer.name: f"{layer.name} {layer.kind} {'x'.join(map(str, layer.w_nz.shape))}"
              for layer in dense_workload.layers}

    def per_layer(layers: pd.DataFrame) -> pd.DataFrame:
        return layers[(layers["phase"] == "FF") & (layers["macs"] > 0)].set_index("layer")

    base = per_layer(dense.layers)
    records = []
    for s in sparsities:
        workload = capture_workload(spec.workload,
                                    sparse_run.pruning.model_copy(update={"sparsity": s}))
        for proc, arch in processors.items():
            ff = per_layer(simulate(proc, arch, workload).layers)
            for layer in base.index:
                records.append({"processor": proc, "sparsity": s, "layer": layer,
                                "time_ratio": ff.at[layer, "cycles"] / base.at[layer, "cycles"],
                                "energy_ratio": (ff.at[layer, "energy_j"]
                                                 / base.at[layer, "energy_j"])})
    table = pd.DataFrame(records)
    layers = list(base.index)
    even = {}
    for layer in layers:
        row = {}
        for proc in processors:
            t = table[(table["processor"] == proc) & (table["layer"] == layer)]
            row[f"time_{proc}"] = break_even(sparsities, list(t["time_ratio"]))
            row[f"energy_{proc}"] = break_even(sparsities, list(t["energy_ratio"]))
        even[layer] = row
    return {"net": net, "batch": batch, "sparsities": sparsities, "layers": layers,
            "table": table, "break_even": even, "labels": labels,
            "macs": {layer: int(base.at[layer, "macs"]) for layer in layers}}


def plot(result: dict[str, Any], out: Path) -> Path:
    """Time and energy ratios against sparsity, one line a layer, CSR and bitmap."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result["table"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True, sharey="row")
    colors = plt.cm.viridis(np.linspace(0, 1, max(len(result["layers"]), 2)))
    for col, proc in enumerate(("csr", "bitmap")):
        for row, metric in enumerate(("time_ratio", "energy_ratio")):
            ax = axes[row][col]
            for color, layer in zip(colors, result["layers"], strict=False):
                t = table[(table["processor"] == proc) & (table["layer"] == layer)]
                ax.plot(t["sparsity"], t[metric], color=color, marker=".",
                        label=result["labels"][layer])
                s = result["break_even"][layer][f"{metric.split('_')[0]}_{proc}"]
                if not math.isnan(s):
                    ax.plot([s], [1.0], "x", color=color)
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_title(f"{proc} weights: {metric.split('_')[0]}, sparse / dense")
            ax.grid(True, which="both", alpha=0.3)
            if row == 1:
                ax.set_xlabel("weight sparsity (magnitude pruning)")
    axes[0][1].legend(fontsize=6, ncol=2, loc="upper right")
    fig.suptitle(f"ADMM-NN break-even: {result['net']}, batch {result['batch']}, inference "
                 "(x: break-even)")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"admm_{result['net']}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(s: float) -> str:
    return "  > max" if math.isnan(s) else f"{s:4.2f} {1 / (1 - s):4.1f}x"


def report(results: list[dict[str, Any]]) -> str:
    lines = ["ADMM-NN break-even per layer, inference: least weight sparsity (pruning ratio "
             "1/(1-s)) at which the sparse processor beats dense",
             f"{'net':<7} {'layer':<24} {'MMACs':>7} | {'time CSR':>10} {'time bitmap':>11} "
             f"| {'energy CSR':>10} {'en. bitmap':>10} | {'time as-is':>10}"]
    for r in results:
        for layer in r["layers"]:
            e = r["break_even"][layer]
            lines.append(f"{r['net']:<7} {r['labels'][layer]:<24} "
                         f"{r['macs'][layer] / 1e6:7.2f} | "
                         f"{_fmt(e['time_csr']):>10} {_fmt(e['time_bitmap']):>11} | "
                         f"{_fmt(e['energy_csr']):>10} {_fmt(e['energy_bitmap']):>10} | "
                         f"{_fmt(e['time_as_is']):>10}")
    lines += [
        f"paper: break-even ratios defined per layer (values not in the abstract); LeNet-5 "
        f"pruned {PAPER_LENET5_PRUNING:.0f}x (sparsity {1 - 1 / PAPER_LENET5_PRUNING:.3f}), "
        "past every break-even above.",
        "where and why they differ:",
        "- desim charges a sparse MAC like a dense one (no index decoding in the PE) and "
        "spreads no extra cycles for irregular access, so a compute-bound layer breaks even "
        "as soon as skipped MACs outweigh its load imbalance; hardware that pays for index "
        "decoding or irregular access on every sparse MAC, the overhead ADMM-NN's "
        "break-even ratio accounts for, breaks even later;",
        "- where a layer streams its weights (at batch 1 the FC layers and the deep convs, "
        "whose few output pixels reuse a weight little) time follows bytes: CSR's 16-bit "
        "index doubles a 16-bit value, so CSR breaks even only past ~50% sparsity, bitmap "
        "past ~6% (its bit an element); CSR rows here are output channels;",
        "- the weights are random-init magnitude-pruned (no ADMM training), which decides "
        "which weights are zero, not how many: per-layer times depend on the count and the "
        "spread over output channels.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--nets", nargs="+", choices=sorted(EXPERIMENTS),
                        default=["lenet5", "vgg16"])
    parser.add_argument("--sparsity", type=fraction, nargs="+", default=DEFAULT_SPARSITIES,
                        help="the weight sparsities to sweep; 0 is always added: a layer "
                             "that beats dense at the least sparsity given breaks even at "
                             "or below it, which only s = 0 pins down")
    parser.add_argument("--batch", type=at_least(1), default=1)
    args = parser.parse_args(argv)
    writable_folder(args.out)  # before the study, not after it
    sparsities = sorted({0.0, *args.sparsity})
    results = [sweep(net, sparsities, args.batch) for net in args.nets]
    plots = [plot(r, args.out) for r in results]
    print(report(results))
    print("plots: " + ", ".join(str(p) for p in plots))
    return {"results": results, "plots": plots}


if __name__ == "__main__":
    guarded(main)  # bad input: one line, exit 2
