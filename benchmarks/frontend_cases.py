"""Front-end speed and memory: capture and counting of ResNet-18 ImageNet, whole runs, and
one large linear layer.

Each case runs in a fresh Python process so that its peak memory (max RSS) is its own and the
end-to-end time includes what a user waits for. Targets (issue "Sparse-training front end"):
capture + counting of FF, BP and WG at 224x224, batch 1: under 1 s after import and under
1 GiB; a whole `desim run` of that iteration on the HPPU-like processor: under 5 s (batch 8:
under 10 s). The large linear layer (a quarter of ImageNet VGG-16's first classifier layer,
12544 x 2048, on trainer.yaml) has no target: the growth of its peak memory per weight (above
the process once desim, torch and the rest are imported, before the layer is built) guards
the mapper against keeping one map per block size of its WG again (session 26: VGG-16's full
layer went from an OOM kill to 8.6 GB at batch 1).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CAPTURE_AND_COUNT = """
import json, resource, time
import mappings  # first: its OpenMP setting must come before torch loads (mappings.threads)
import torch
from mappings.capture import capture
from mappings.counting import SkipPolicy, effectual_map, nominal_map, processed_map
from mappings.models import build_model
from mappings.pruning import PruningSpec, prune_model
from mappings.threads import counting_threads
torch.set_num_threads(1)  # as desim.runner: the model's float passes on one thread
torch.manual_seed(0)
model = build_model("resnet18")
prune_model(model, PruningSpec(method="hybrid", sparsity=0.7))
x, y = torch.randn({batch}, 3, 224, 224), torch.randint(0, 1000, ({batch},))
policy = SkipPolicy(True, True, True, True)
start = time.perf_counter()
layers = capture(model, x, y)
captured = time.perf_counter()
macs = 0
with counting_threads():  # as the mapper counts
    for layer in layers:
        for phase in (0, 1, 2):
            macs += int(nominal_map(layer, phase).sum())
            effectual_map(layer, phase, pruned_grads_unused=True)
            processed_map(layer, phase, policy, pruned_grads_unused=True)
done = time.perf_counter()
print(json.dumps({{"capture_s": captured - start, "count_s": done - captured,
                  "total_s": done - start, "macs": macs,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

RUN_YAML = """
name: bench_resnet18_imagenet
workload: {{model: resnet18, num_classes: 1000, batch: {batch}, input_shape: [3, 224, 224],
           data: random}}
runs:
  - {{name: hppu, arch: {arch}, pruning: {{method: hybrid, sparsity: 0.7}}}}
baseline: hppu
"""


LINEAR_MODEL = """
from torch import nn


def linear(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Linear({inputs}, {outputs}), nn.ReLU(),
                         nn.Linear({outputs}, num_classes))
"""

LINEAR_YAML = """
name: bench_large_linear
workload: {{model: "{model}:linear", num_classes: 10, batch: 1, input_shape: [{inputs}],
           data: random}}
runs:
  - {{name: trainer, arch: {arch}, pruning: {{method: dynamic, sparsity: 0.9}}}}
baseline: trainer
"""


# `desim run` in a process that first imports what the run will (the command line, the runner,
# torch, the mapper) and reads its max RSS then: the baseline the run's growth is taken from
LINEAR_PROBE = """
import resource, runpy, sys
import desim.cli, desim.experiment, desim.runner, mappings.capture, mappings.counting, torch
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sys.argv = ['desim', 'run', {config!r}, '--out', {out!r}]
code = 0
try:
    runpy.run_module('desim', run_name='__main__')
except SystemExit as done:
    code = done.code or 0
print(code, base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def large_linear(inputs: int = 12544, outputs: int = 2048) -> dict[str, float]:
    """Wall seconds of `desim run` of one large linear layer (and a small head) on
    trainer.yaml, the process's peak memory (MiB, max RSS) and what it had after imports,
    before the model was built (the baseline), and the growth from that baseline to the peak
    per million weights of the large layer."""
    arch = ROOT / "configs" / "arch" / "trainer.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        model, config = Path(tmp) / "model.py", Path(tmp) / "run.yaml"
        model.write_text(LINEAR_MODEL.format(inputs=inputs, outputs=outputs))
        config.write_text(LINEAR_YAML.format(model=model, inputs=inputs, arch=arch))
        probe = LINEAR_PROBE.format(config=str(config), out=str(Path(tmp) / "out"))
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                             text=True, check=True)
        seconds = time.perf_counter() - start
    code, base, peak = out.stdout.strip().splitlines()[-1].split()
    if code != "0":
        raise RuntimeError(f"desim run of the large linear layer exited {code}: {out.stderr}")
    base, peak = float(base), float(peak)
    return {"large_linear_s": round(seconds, 2), "large_linear_peak_mib": round(peak, 1),
            "large_linear_baseline_mib": round(base, 1),
            "large_linear_growth_mib_per_m_weights":
                round((peak - base) / (inputs * outputs / 1e6), 1)}


def capture_and_count(batch: int = 1) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CAPTURE_AND_COUNT.format(batch=batch)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def whole_run(batch: int) -> float:
    """Wall seconds of `desim run` (a new process: imports included) at this batch."""
    arch = ROOT / "configs" / "arch" / "hppu_like.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "run.yaml"
        config.write_text(RUN_YAML.format(batch=batch, arch=arch))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "desim", "run", str(config), "--out",
                        str(Path(tmp) / "out")], cwd=ROOT, capture_output=True, check=True)
        return time.perf_counter() - start


def frontend_bench(repeats: int = 2) -> dict[str, float]:
    """Best of `repeats` for each figure (noise only ever slows a run down)."""
    counts = [capture_and_count(1) for _ in range(repeats)]
    best = min(counts, key=lambda c: c["total_s"])
    return {
        "capture_count_s": round(best["total_s"], 3),
        "capture_s": round(best["capture_s"], 3),
        "count_s": round(best["count_s"], 3),
        "peak_rss_mib": round(max(c["peak_rss_mib"] for c in counts), 1),
        "macs_per_phase": best["macs"] // 3,
        "run_batch1_s": round(min(whole_run(1) for _ in range(repeats)), 2),
        "run_batch8_s": round(min(whole_run(8) for _ in range(repeats)), 2),
        **large_linear(),
    }


if __name__ == "__main__":
    print(json.dumps(frontend_bench(), indent=2))
