"""`desim bench`: how fast and how lean the kernel is, as ratios to plain SimPy.

Absolute rates depend on the machine; ratios measured side by side in one process do not (much).
So every case runs in this process, interleaved (repeat 1 of every case, then repeat 2, ...,
with the order rotated each time) and the best time of each is kept: a burst of noise from
another program then slows one repeat of every case alike, instead of all repeats of one case.

Reported (cases in `benchmarks/kernel_cases.py`):
- transactions per second of plain SimPy and of desim on the same pipeline, and their ratio
  (target: desim >= 0.5 of SimPy). The SimPy it is measured against schedules the same
  events as desim (each case's scheduled events are counted and shown; a ratio between cases
  that scheduled different events is flagged, not judged); idiomatic SimPy, its links
  `Resource`s (two events more a transaction), is shown beside it without a target;
- the cost of the tracing hooks when tracing is off: desim as shipped against a copy with the
  hooks cut out (target: <= 3 % slower), on links and FIFOs and again on timed components
  (`Module.busy_for`, hence `Module.traced`) and pools, each beside the noise of the run: the
  same case against itself (`desim_again`, `desim_timed_again`, A/A comparisons), so that a
  miss within the noise reads as such;
- tracing on against off (recording, and writing the trace and VCD files);
- bytes per pending transaction (tracemalloc peak, net of the same system with nothing
  pending): items queued in a Store/Fifo, and producers blocked on a full one.
"""

from __future__ import annotations

import gc
import importlib.util
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import simpy
import typer
from rich.console import Console
from rich.table import Table

from desim.console import console as make_console
from desim.options import path_given

TARGET_DESIM_VS_SIMPY = 0.5
TARGET_HOOK_OVERHEAD = 0.03
# The cases whose ratios the bench reports as like for like: each pair must have scheduled
# the same events (the idiomatic `simpy_resource` does not, and is shown without a target).
SAME_EVENTS = (("desim", "simpy"), ("desim", "desim_again"), ("desim", "desim_unhooked"),
               ("desim", "desim_traced"), ("desim_timed", "desim_timed_unhooked"),
               ("desim_timed", "desim_timed_again"))
FRONTEND_TARGETS = {"capture_count_s_max": 1.0, "peak_rss_mib_max": 1024.0,
                    "run_batch1_s_max": 5.0, "run_batch8_s_max": 10.0}


def load_cases(module: str = "kernel_cases") -> ModuleType:
    """`benchmarks/<module>.py` beside the `desim` package (the source checkout); the
    benchmarks are not part of the installed distribution."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{module}.py"
    if not path.exists():
        return importlib.import_module(f"benchmarks.{module}")  # an installed or on-path copy
    name = f"_desim_benchmarks_{module}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_bench(json_path: Path | None = None, *, items: int = 10_000, stages: int = 4,
              repeats: int = 5, memory_items: int = 10_000,
              frontend: bool = False) -> dict[str, Any]:
    """Run every case; return (and write to `json_path`, if given) the rates and ratios."""
    cases = load_cases()
    timed: dict[str, Any] = cases.TIMED_CASES
    names = list(timed)
    best = {name: float("inf") for name in names}
    work = {}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            started = time.perf_counter()
            work[name] = timed[name](items, stages)
            best[name] = min(best[name], time.perf_counter() - started)
    # transactions done, items delivered and the end time, each counted by the case itself
    done = {name: w.same_work() for name, w in work.items()}
    if len(set(done.values())) != 1:
        raise RuntimeError("cases disagree on the work done (transactions, items delivered, "
                           f"end ps): {done}")
    n = work[names[0]].transactions
    tps = {name: n / best[name] for name in names}
    events = {name: work[name].events for name in names}
    # a ratio compares like with like only where both cases scheduled the same events
    differ = [f"{a} scheduled {events[a]:,} events, {b} {events[b]:,}"
              for a, b in SAME_EVENTS if events[a] != events[b]]
    hooks_off = tps["desim"] / tps["desim_unhooked"]
    timed_hooks_off = tps["desim_timed"] / tps["desim_timed_unhooked"]
    memory = {name: round(fn(memory_items), 1) for name, fn in cases.MEMORY_CASES.items()}
    result = {
        "config": {"items": items, "stages": stages, "repeats": repeats,
                   "transactions": n, "memory_items": memory_items,
                   "python": platform.python_version(), "simpy": simpy.__version__},
        "best_seconds": best,
        "transactions_per_s": tps,
        "events_scheduled": events,
        "events_differ": differ,
        "ratios": {
            "desim_vs_simpy": tps["desim"] / tps["simpy"],
            "desim_vs_simpy_resource": tps["desim"] / tps["simpy_resource"],
            "hooks_off_vs_unhooked": hooks_off,
            "timed_hooks_off_vs_unhooked": timed_hooks_off,
            "traced_vs_off": tps["desim_traced"] / tps["desim"],
        },
        "hook_overhead_off": 1 / hooks_off - 1,   # extra time the idle hooks cost
        "timed_hook_overhead_off": 1 / timed_hooks_off - 1,
        "noise_a_a": abs(tps["desim"] / tps["desim_again"] - 1),  # same case, two timings
        "timed_noise_a_a": abs(tps["desim_timed"] / tps["desim_timed_again"] - 1),
        "memory_bytes_per_pending": memory,
        "targets": {"desim_vs_simpy_min": TARGET_DESIM_VS_SIMPY,
                    "hook_overhead_off_max": TARGET_HOOK_OVERHEAD},
    }
    if frontend:
        result["frontend"] = load_cases("frontend_cases").frontend_bench()
        result["targets"].update(FRONTEND_TARGETS)
    if json_path is not None:
        from desim.results import write_json

        write_json(Path(json_path), result)
    return result


def print_bench(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or make_console()
    cfg = result["config"]
    labels = getattr(load_cases(), "CASE_LABELS", {})
    events = result.get("events_scheduled", {})
    n = cfg["transactions"]
    table = Table(title=f"kernel pipeline: {cfg['items']:,} items x {cfg['stages']} stages "
                        f"= {n:,} transactions, best of {cfg['repeats']}")
    for col in ("case", "what", "events / transaction", "transactions/s", "best (s)",
                "vs simpy"):
        table.add_column(col, justify="left" if col in ("case", "what") else "right")
    simpy_tps = result["transactions_per_s"]["simpy"]
    for name, tps in result["transactions_per_s"].items():
        # a ratio to the floor only where the case scheduled the floor's events
        same = name not in events or events[name] == events.get("simpy")
        table.add_row(name, labels.get(name, ""),
                      f"{events[name] / n:.2f}" if name in events else "",
                      f"{tps:,.0f}", f"{result['best_seconds'][name]:.3f}",
                      f"{tps / simpy_tps:.2f}" if same else "-")
    console.print(table)
    ratios, targets = result["ratios"], result["targets"]
    differ = result.get("events_differ", [])
    for line in differ:
        console.print(f"[bold]events differ[/bold]: {line}; its ratio compares different work")
    unlike = "desim" in events and events["desim"] != events.get("simpy")
    ok = ratios["desim_vs_simpy"] >= targets["desim_vs_simpy_min"]
    console.print(f"desim / simpy (the same events): {ratios['desim_vs_simpy']:.2f} "
                  f"(target >= {targets['desim_vs_simpy_min']}) "
                  f"{'NOT COMPARABLE' if unlike else 'ok' if ok else 'BELOW TARGET'}")
    if "desim_vs_simpy_resource" in ratios:
        console.print(f"desim / simpy with a Resource per link (more events; no target): "
                      f"{ratios['desim_vs_simpy_resource']:.2f}")
    limit = targets["hook_overhead_off_max"]
    hooks = [("Fifo depth, link slices", result["hook_overhead_off"], result["noise_a_a"])]
    if "timed_hook_overhead_off" in result:
        hooks.append(("Pool, busy_for's Module.traced, Fifo", result["timed_hook_overhead_off"],
                      result["timed_noise_a_a"]))
    for what, overhead, noise in hooks:  # each beside the noise of its own pattern's A/A
        verdict = ("ok" if overhead <= limit else
                   "above target, within this run's noise" if overhead <= limit + noise else
                   "ABOVE TARGET")
        console.print(f"tracing hooks, off ({what}): {overhead * 100:+.1f} % time vs no hooks "
                      f"(target <= {limit * 100:.0f} %; the same case twice this run: "
                      f"{noise * 100:.1f} %) {verdict}")
    console.print(f"tracing on / off (with writing trace + VCD): {ratios['traced_vs_off']:.2f}")
    mem = Table(title=f"bytes per pending transaction ({cfg['memory_items']:,} at once, net of "
                      "the same system with none pending)")
    for col in ("kernel", "queued item", "blocked producer"):
        mem.add_column(col, justify="left" if col == "kernel" else "right")
    m = result["memory_bytes_per_pending"]
    for kernel in ("simpy", "desim"):
        mem.add_row(kernel, f"{m[f'{kernel}_queued']:,.1f}", f"{m[f'{kernel}_blocked']:,.1f}")
    console.print(mem)
    if "frontend" in result:
        f, t = result["frontend"], result["targets"]
        front = Table(title="front end: ResNet-18 ImageNet 224x224, 70% hybrid pruning "
                            f"({f['macs_per_phase'] / 1e9:.2f} GMACs a phase)")
        for col in ("figure", "measured", "target", ""):
            front.add_column(col, justify="left" if col in ("figure", "") else "right")

        def against(label: str, measured: float, shown: str, limit: float, limit_shown: str
                    ) -> None:  # the row, and whether it meets its target
            front.add_row(label, shown, f"< {limit_shown}",
                          "ok" if measured < limit else "OVER TARGET")
        against("capture + count FF/BP/WG, batch 1 (s)", f["capture_count_s"],
                f"{f['capture_count_s']:.3f}", t["capture_count_s_max"],
                f"{t['capture_count_s_max']}")
        against("peak memory of that process (MiB)", f["peak_rss_mib"],
                f"{f['peak_rss_mib']:.0f}", t["peak_rss_mib_max"],
                f"{t['peak_rss_mib_max']:.0f}")
        for batch in (1, 8):
            key = f"run_batch{batch}_s"
            against(f"desim run, batch {batch}, end to end (s)", f[key], f"{f[key]:.2f}",
                    t[f"{key}_max"], f"{t[f'{key}_max']}")
        if "large_linear_peak_mib" in f:  # one 12544 x 2048 linear layer on trainer.yaml
            front.add_row("large linear layer: desim run (s)", f"{f['large_linear_s']:.2f}",
                          "-", "")
            # the growth of the process's max RSS from after imports (desim, torch, the
            # mapper), before the layer is built, to the run's peak
            front.add_row("  its peak memory above the process after imports "
                          "(MiB per million weights)",
                          f"{f['large_linear_growth_mib_per_m_weights']:.0f}", "-", "")
        console.print(front)


def register(app: typer.Typer) -> None:
    """Add the `bench` command to the command line (called from `desim.cli`)."""

    @app.command("bench")
    def bench(
        json_out: Annotated[Path | None, typer.Option("--json", help="also write the results "
                                                      "as JSON to this file",
                                                      parser=path_given)] = None,
        # at least one of each, checked before any timing: fewer gives no rate to report;
        # at most what a machine holds (a stage is a module and a FIFO, ~1 KB) and times in
        # minutes, not what exhausts it
        items: Annotated[int, typer.Option(min=1, max=10_000_000,
                                           help="items through the pipeline")] = 10_000,
        stages: Annotated[int, typer.Option(min=1, max=1_000,
                                            help="pipeline stages")] = 4,
        repeats: Annotated[int, typer.Option(min=1, max=100,
                                             help="repeats per case (best kept)")] = 5,
        frontend: Annotated[bool, typer.Option(help="also time capture, counting and "
                                               "whole runs of ResNet-18 ImageNet")] = True,
    ) -> None:
        """Measure speed and memory as ratios taken side by side in one run.

        The kernel against plain SimPy doing the same events, tracing off and on, and the
        front end on ResNet-18 ImageNet."""
        from desim.errors import guarded
        from desim.results import writable_file

        if json_out is not None:  # said before minutes of timing, not as a traceback after
            guarded(lambda: writable_file(json_out))
        print_bench(run_bench(json_out, items=items, stages=stages, repeats=repeats,
                              frontend=frontend))
