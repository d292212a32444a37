"""Statistics of a run, named by hierarchy, gem5-style: `stats.txt` for people, `stats.json`
for programs.

Every module reports its action counters, how long it was busy and its utilization (busy
time over simulated time; it can reach `concurrency`, also reported, for a module that serves
several transactions at once, the global buffer's read and write ports).
A FIFO, and a module of modules that was never busy itself (the NoC, the accelerator), report
neither: they do no timed work, their parts do, and a utilization of 0 would say they idled.
A FIFO adds its time-weighted depth histogram and mean depth (by Little's law, mean depth over
throughput is the mean wait), a link its bytes and transfers, a pool (the global buffer's
halves) its capacity and, among its actions, how long its takers waited for it (`wait_ps`:
the time a full buffer stalled the fetcher or the collector).

Two runs of the same system give byte-identical files: keys are sorted, integers stay
integers, floats come from the same integer arithmetic, and nothing depends on the wall clock.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from desim.channels import UNTIMED, Fifo, Link, Pool
from desim.clock import PS_PER_S
from desim.module import Module, Simulator
from desim.results import write_atomic

DESCRIPTIONS = {
    "sim.time_ps": "simulated time (ps)",
    "sim.seconds": "simulated time (s)",
    "kind": "module class",
    "busy_ps": "time the module spent on transactions (ps)",
    "utilization": "busy_ps / simulated time",
    "concurrency": "transactions it serves at once (its utilization can reach this)",
    "capacity": "capacity (a FIFO's items, a pool's units)",
    "depth_mean": "time-weighted mean FIFO depth (items)",
    "depth_max": "deepest FIFO depth held for a non-zero time (items)",
    "depth_hist_ps": "time spent at this FIFO depth (ps)",
    "bytes": "bytes carried",
    "transfers": "transfers carried",
    "bytes_per_s": "bytes carried / simulated time (B/s)",
    "actions": "action count",
    "actions.wait_ps": "time its takers waited for capacity (ps)",
}


def collect_stats(sim: Simulator) -> dict[str, Any]:
    """{"sim": {...}, "modules": {path: {stat: value}}}, every level sorted by key."""
    now = sim.now_ps
    modules = {module.path: _module_stats(module, now) for module in sim.modules()}
    return {"sim": {"seconds": now / PS_PER_S, "time_ps": now},
            "modules": dict(sorted(modules.items()))}


def _module_stats(module: Module, now_ps: int) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "actions": {k: int(v) for k, v in sorted(module.actions.items())},
        "kind": type(module).__name__,
    }
    if module.busy_ps or not (isinstance(module, UNTIMED) or module.children):
        stats["busy_ps"] = int(module.busy_ps)
        stats["utilization"] = module.busy_ps / now_ps if now_ps else 0.0
        if module.concurrency > 1:
            stats["concurrency"] = module.concurrency
    if isinstance(module, Fifo):
        hist = module.depth_histogram_ps()
        total = sum(hist)
        stats["capacity"] = module.capacity
        stats["depth_hist_ps"] = hist
        stats["depth_mean"] = (sum(d * t for d, t in enumerate(hist)) / total) if total else 0.0
        stats["depth_max"] = max((d for d, t in enumerate(hist) if t), default=0)
    if isinstance(module, Pool):
        stats["capacity"] = module.container.capacity
    if isinstance(module, Link):
        stats["bytes"] = int(module.actions["bytes"])
        stats["transfers"] = int(module.actions["transfers"])
        stats["bytes_per_s"] = stats["bytes"] * PS_PER_S / now_ps if now_ps else 0.0
    return dict(sorted(stats.items()))


def busy_share(module: dict[str, Any]) -> float:
    """A timed module's share of the run spent busy, from its stats: its utilization, over
    the transactions it serves at once (of the global buffer's two ports, their mean)."""
    return module["utilization"] / module.get("concurrency", 1)


def busy_shares(stats: dict[str, Any], top: str) -> tuple[dict[str, float], dict[str, str]]:
    """Where a run's time went (summary.json's `utilization`): each part of the module `top`
    that does timed work, its share of the run spent busy (of a part that serves several
    transactions at once, the global buffer's two ports, the mean over them); a part made of
    parts (the NoC, of links), its busiest part's share, that part named in the second dict.
    FIFOs and pools are left out: they hold items or capacity, they do no timed work
    (`_module_stats`)."""
    modules = stats["modules"]
    return part_shares({path: busy_share(module) for path, module in modules.items()
                        if "utilization" in module}, top,
                       {path: module.get("bytes", 0) for path, module in modules.items()})


def part_shares(shares: dict[str, float], top: str, carried: dict[str, int] | None = None
                ) -> tuple[dict[str, float], dict[str, str]]:
    """Module shares (by path) grouped into the parts of `top` (`top.dram`, `top.noc`): a
    part's own share, or, for a part made of parts (the NoC, of links), its busiest part's,
    named in the second dict (none for a part that was never busy). Of parts equally busy,
    the one that carried the most bytes (`carried`) is named, then the first name: a
    transfer holds every link of its route as long, so a multicast ties the global buffer's
    port with every link of its tree, and the port, which carried every byte, is the one
    to name."""
    carried = carried or {}
    prefix = f"{top}."
    own: dict[str, float] = {}
    inner: defaultdict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for path, share in shares.items():
        if path.startswith(prefix):
            part, _, rest = path[len(prefix):].partition(".")
            if rest:
                inner[part].append((-share, -carried.get(path, 0), rest))
            else:
                own[part] = share
    grouped, busiest = dict(own), {}
    for part, candidates in inner.items():
        if part not in own:
            least, _, name = min(candidates)
            grouped[part] = -least
            if least < 0:  # a part never busy names none
                busiest[part] = name
    return dict(sorted(grouped.items())), dict(sorted(busiest.items()))


def busiest_part(busy_ps: dict[str, int], concurrency: dict[str, int], top: str,
                 span_ps: int, carried: dict[str, int] | None = None) -> tuple[str, str, float]:
    """The part of `top` busiest over a span of `span_ps` (a layer-phase's, from its
    `busy_ps` and bytes `carried` booked per module path), its busiest part if it is made of
    parts (the NoC's link, as `part_shares` names it), and its share of the span; ("", "",
    0.0) for an empty span or one where nothing was busy. A tie goes to the first name."""
    if span_ps <= 0:
        return "", "", 0.0
    shares, inner = part_shares({path: ps / (span_ps * concurrency.get(path, 1))
                                 for path, ps in busy_ps.items() if ps}, top, carried)
    if not shares:
        return "", "", 0.0
    part = min(shares, key=lambda name: (-shares[name], name))
    return part, inner.get(part, ""), shares[part]


def stats_lines(stats: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, value, description) rows, sorted by name: lists become `name::index` rows."""
    rows = [(f"sim.{k}", v, DESCRIPTIONS[f"sim.{k}"]) for k, v in stats["sim"].items()]
    for path, module_stats in stats["modules"].items():
        for key, value in module_stats.items():
            description = DESCRIPTIONS.get(key, key)
            if isinstance(value, dict):
                rows += [(f"{path}.{key}.{k}", v, DESCRIPTIONS.get(
                    f"{key}.{k}", f"{description} (bytes)" if k.endswith("bytes")
                    else description)) for k, v in value.items()]
            elif isinstance(value, list):
                rows += [(f"{path}.{key}::{i}", v, description) for i, v in enumerate(value)]
            else:
                rows.append((f"{path}.{key}", value, description))
    return sorted((name, _format(value), description) for name, value, description in rows)


def stats_text(stats: dict[str, Any]) -> str:
    rows = stats_lines(stats)
    name_width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    body = "\n".join(f"{name:<{name_width}}  {value:>{value_width}}  # {description}"
                     for name, value, description in rows)
    return ("---------- Begin Simulation Statistics ----------\n" + body +
            "\n---------- End Simulation Statistics   ----------\n")


def write_stats(stats: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write `stats.txt` and `stats.json` into `out_dir`, each atomically."""
    out = Path(out_dir)
    write_atomic(out / "stats.json", json.dumps(stats, indent=1, sort_keys=True) + "\n")
    write_atomic(out / "stats.txt", stats_text(stats))
    return [out / "stats.txt", out / "stats.json"]


def _format(value: Any) -> str:
    """A value as stats.json has it: a float's shortest exact text (six decimals had
    printed 7.163285e-05 s as 0.000072, and a share under 5e-7 as 0)."""
    return repr(value) if isinstance(value, float) else str(value)
