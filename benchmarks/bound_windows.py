"""How much a layer-phase's busiest part depends on counting its own tiles only.

desim labels each layer-phase by the part busiest over its span (first fetch to last
write-back), counting the busy time its own tiles booked (layers.csv's `busiest_part`), and
shares the run's time out by those labels (`time_by_busiest_part`). Phases overlap, so a
neighbour's traffic within that span is not counted. This check labels instead each
layer-phase's share of the timeline (from the previous phase's end to its own, the
`cycles` of layers.csv) by the part busiest in it, every layer-phase's work counted (each
module's busy time at every close, all jobs together), and prints both splits per run.

    python -m benchmarks.bound_windows configs/experiments/hppu_vs_dense.yaml [key=value ...]

(the optional arguments are `desim run --set` overrides). A busy period is counted when it
ends, so a long transfer across a window's edge falls wholly into the later window.
"""

from __future__ import annotations

import sys
from collections import Counter

from arch.accelerator import Accelerator
from desim.errors import guarded
from desim.experiment import load_experiment
from desim.hardware_view import hardware_view
from desim.module import Simulator
from desim.stats import busiest_part
from mappings.mapper import map_workload, phase_waits
from mappings.workload import capture_workload


class WindowedAccelerator(Accelerator):
    """An accelerator that also notes every module's busy time (all jobs) as each
    layer-phase closes."""

    def _record(self, j: int, layer: int, phase: int, start: int) -> None:
        super()._record(j, layer, phase, start)
        self.records[-1].busy_at_close = {m.path: m.busy_ps for m in self.sim.modules()}


def bound_splits(experiment_path: str, overrides: list[str]) -> dict[str, dict[str, Counter]]:
    """Per run, its time (ps) by busiest part: "own" as desim labels it, "window" by the
    part busiest in each layer-phase's share of the timeline, every job counted."""
    experiment = load_experiment(experiment_path, overrides)
    splits = {}
    for run in experiment.spec.runs:
        sim = Simulator()
        acc = WindowedAccelerator(sim, experiment.archs[run.name], name=run.name)
        work = map_workload(capture_workload(experiment.workloads[run.name], run.pruning),
                            hardware_view(acc))
        acc.replay([w.table for w in work], phase_waits(work))
        sim.run()
        concurrency = {m.path: m.concurrency for m in sim.modules()}
        own, window, before = Counter(), Counter(), Counter()
        for rec in acc.records:
            share_ps = rec.end_ps - rec.since_ps
            mine = {path: c["busy_ps"] for path, c in rec.actions.items()}
            own[busiest_part(mine, concurrency, acc.path, rec.end_ps - rec.start_ps)[0]] += \
                share_ps
            busy = {path: ps - before[path] for path, ps in rec.busy_at_close.items()}
            window[busiest_part(busy, concurrency, acc.path, share_ps)[0]] += share_ps
            before = Counter(rec.busy_at_close)
        splits[run.name] = {"own": own, "window": window}
    return splits


def main(argv: list[str]) -> None:
    for run, split in bound_splits(argv[0], argv[1:]).items():
        total = sum(split["own"].values())
        parts = sorted(set(split["own"]) | set(split["window"]), key=lambda p: -split["own"][p])
        for how in ("own", "window"):
            print(f"{run:>12} {how:>6}: " + ", ".join(
                f"{p or 'none'} {100 * split[how][p] / total:.1f}%" for p in parts))


if __name__ == "__main__":
    if not sys.argv[1:] or sys.argv[1] in ("-h", "--help"):  # (was an IndexError)
        print(__doc__)
        sys.exit(0 if sys.argv[1:] else 2)
    guarded(lambda: main(sys.argv[1:]))  # bad input: one line, exit 2
