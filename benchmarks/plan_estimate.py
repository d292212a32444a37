"""How true the mapper's time estimate is: each layer-phase's plan, estimated and replayed.

The mapper ranks a phase's plans by `pipeline.estimated_cycles` (the tiles through the
two-deep pipeline, each stage at its rate). This maps every run of an experiment, replays
each layer-phase's chosen plan alone on its accelerator and prints replay / estimate: the
median, the 90th percentile, the whole run's and the worst phases. What the estimate leaves
out shows here (DRAM's row misses within a direction, the latency its queued transactions
hide, Trainer's speculation stage).

    python -m benchmarks.plan_estimate configs/experiments/quickstart.yaml [key=value ...]

(the optional arguments are `desim run --set` overrides).
"""

from __future__ import annotations

import sys

import pandas as pd
import torch

from arch.accelerator import Accelerator
from desim.errors import guarded
from desim.experiment import Experiment, load_experiment
from desim.hardware_view import hardware_view
from desim.module import Simulator
from desim.runner import capture_key, shared_capture_needs
from mappings.mapper import map_workload
from mappings.pipeline import estimated_cycles
from mappings.workload import capture_workload


def estimate_vs_replay(experiment: Experiment) -> pd.DataFrame:
    """One row per run and conv/linear layer-phase: its tiles, the plan's estimate and its
    replay alone on the run's accelerator (cycles). Each run's workload is captured as
    `desim run` captures it: the model's float passes on one thread, with what the designs
    sharing the capture need (`capture_needs`); else its maps, and so its plans, differ a
    little from the run's (LeNet's exact_seed2 in trainer_speculation_accuracy: 13,173
    cycles replayed phase by phase, where the run takes 13,125)."""
    torch.set_num_threads(1)  # as desim.runner.run
    needs = shared_capture_needs(experiment)
    rows = []
    for run in experiment.spec.runs:
        arch = experiment.archs[run.name]
        workload = capture_workload(experiment.workloads[run.name], run.pruning,
                                    needs[capture_key(experiment, run)])
        hw = hardware_view(Accelerator(Simulator(), arch, name=run.name))
        for work in map_workload(workload, hw):
            if work.layer < 0 or not len(work.table):   # vector layers: no tile plan
                continue
            sim = Simulator()
            acc = Accelerator(sim, arch, name=run.name)
            acc.replay([work.table])
            sim.run()
            rows.append({"run": run.name, "layer": work.name, "phase": work.phase,
                         "tiles": len(work.table),
                         "estimated": estimated_cycles(work.table, hw),
                         "replayed": acc.clock.to_cycles(sim.env.now)})
    table = pd.DataFrame(rows)
    table["ratio"] = table["replayed"] / table["estimated"]
    return table


def main(argv: list[str]) -> None:
    table = estimate_vs_replay(load_experiment(argv[0], argv[1:]))
    for run, rows in table.groupby("run", sort=False):
        whole = rows["replayed"].sum() / rows["estimated"].sum()
        print(f"{run}: {len(rows)} layer-phases, replay / estimate: median "
              f"{rows['ratio'].median():.3f}, 90th percentile {rows['ratio'].quantile(0.9):.3f}"
              f", whole run {whole:.3f}")
        for _, r in rows.nlargest(3, "ratio").iterrows():
            print(f"  {r['layer']} phase {r['phase']}: {r['tiles']} tiles, estimated "
                  f"{r['estimated']:,.0f}, replayed {r['replayed']:,.0f} ({r['ratio']:.3f})")


if __name__ == "__main__":
    if not sys.argv[1:] or sys.argv[1] in ("-h", "--help"):  # (was an IndexError)
        print(__doc__)
        sys.exit(0 if sys.argv[1:] else 2)
    guarded(lambda: main(sys.argv[1:]))  # bad input: one line, exit 2
