"""A run's figures in words, as `desim run` prints them and `desim report` writes them: one
wording for both, so the terminal and the report never say a figure two ways.

The runs are summary.json's entries (`desim.runner.summarize`)."""

from __future__ import annotations

import math
from typing import Any


def fmt(v: float | None, digits: int = 4) -> str:
    """A figure to `digits` significant digits; a large one in full, to the unit, with
    thousands separators (4,242,123, not 4.242e+06, nor 4,242,000: its zeros read as exact
    digits, a claim's 12,989,544 / 2,797,167 as "12,990,000 / 2,797,000"), a tiny one in
    e-notation; one that rounds up to 10,000 in full too (9,999.5 had read "1e+04"), and a
    zero as 0 (-0.0 had read "-0")."""
    if v is None:
        return "-"
    if math.isinf(v) or math.isnan(v):
        return str(v)
    if v == 0:
        return "0"
    text = f"{v:.{digits}g}"
    if abs(v) >= 1e4 or "e+" in text:
        return f"{v:,.0f}"
    return text


def times(x: float) -> str:
    return f"{x:.2f}x" if math.isfinite(x) else "-"


def plural(n: int, noun: str) -> str:
    """`n` and the noun, plural but for one: "1 point", "6 points"."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def the_same(ratio: float) -> bool:
    """Whether a ratio rounds to 1.00x either way."""
    return bool(ratio) and times(ratio) == times(1.0) == times(1 / ratio)


def more_or_less(ratio: float, less: str, more: str, other: str = "") -> str:
    """A baseline-over-run ratio as words: 2.00x less, or 1.25x more for 0.8; "the same
    (1.00x)" where it rounds to 1 ("1.00x less" had said a gain of two equal runs); with
    `other`, against it: "2.00x less than dense's", "the same (1.00x) as dense's"."""
    if the_same(ratio):
        return f"the same ({times(1.0)})" + (f" as {other}" if other else "")
    said = (f"{times(ratio)} {less}" if not ratio or ratio >= 1
            else f"{times(1 / ratio)} {more}")
    return said + (f" than {other}" if other else "")


# A design's sparse units, and the work each one does: a unit a run never gave any of that
# work sits idle (0% busy), which `desim run` says in words rather than in the busy line only
SPARSE_UNIT_WORK = {
    "selector": "it selects the non-zero data of tiles whose weights or activations it skips",
    "speculator": "it predicts the outputs of FF tiles of layers followed by a ReLU",
    "weight_generator": "it regenerates the weights DropBack leaves untracked at their "
                        "initial values (init_decay 1); no other pruning, nor Procrustes' "
                        "decay, leaves any",
}


def run_notes(run: dict[str, Any]) -> list[str]:
    """What a reader of a run's figures must know that the figures do not say, one line
    each: the vector layers a design without a vector unit left out of its time and energy
    (`mappings.vector.vector_layers_not_simulated`), and the sparse units that did no work
    at all (`SPARSE_UNIT_WORK`: a weight generator on a run pruned otherwise than by
    DropBack had idled without a word). `desim run`, `desim report` and `desim compare`
    say the same."""
    notes = []
    if run.get("vector_layers_not_simulated"):
        notes.append(f"no vector unit (arch {run['arch']}): "
                     f"{run['vector_layers_not_simulated']} of the model's "
                     f"{run['workload']['vector_layers']} vector layers (batch norm, pooling, "
                     "residual adds, GELUs, and ReLUs after them) are not simulated, so its "
                     "time and energy leave them out (a ReLU right after a conv or linear "
                     "layer is simulated, on the PE array's output)")
    busy = run.get("utilization", {})
    notes += [f"its {unit.replace('_', ' ')} did no work ({work})"
              for unit, work in SPARSE_UNIT_WORK.items() if busy.get(unit) == 0]
    return notes


def vector_share(run: dict[str, Any]) -> float | None:
    """The share of a run's time (summary.json's run) its vector layers take: batch norm,
    pooling, adds, softmax, work that weight sparsity does not shrink (the vector unit's
    time less the weight update's, phase WU). None for results written before `units`
    existed, or a run of no time."""
    if "units" not in run or not run["cycles"]:
        return None
    update = run.get("phases", {}).get("WU", {}).get("cycles", 0)
    return (run["units"].get("vector_unit", {}).get("cycles", 0) - update) / run["cycles"]


def busy_text(run: dict[str, Any], parts: int | None = None) -> str:
    """A run's `utilization`, busiest part first: "dram 64%, noc 52% (busiest glb->r0_0),
    ..."; the names are summary.json's. `parts`: only that many, the busiest; "-" for a
    run written before summary.json had them."""
    shares = sorted(run.get("utilization", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    if not shares:
        return "-"
    busiest = run.get("busiest_parts", {})
    return ", ".join(f"{part} {100 * share:.0f}%"
                     + (f" (busiest {busiest[part]})" if part in busiest else "")
                     for part, share in shares[:parts])


def bound_text(run: dict[str, Any]) -> str:
    """A run's `time_by_busiest_part`, the largest first, parts under half a percent left
    out: "dram 51%, pe_array 28%, ..."; "-" for a run written before summary.json had it."""
    shares = sorted(run.get("time_by_busiest_part", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{part} {100 * share:.0f}%" for part, share in shares
                     if share >= 0.005) or "-"
