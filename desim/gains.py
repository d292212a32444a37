"""Where a design's gain over the baseline comes from, part by part (Amdahl's view).

A speedup or an energy ratio is one number; an architect asks which parts made it and which
hold it back. Energy adds up over components, so each component's joules in the baseline and
in the run say how much it shrank, what share of the joules saved it gave, and what the
ratio would be if it cost nothing in the run: a component that shrinks little and takes a
large share of the run caps the ratio, however much the rest shrinks. Time is split by what
bound it: each layer-phase's time goes to the part busiest over its span (summary.json's
`time_by_busiest_part`), and the same columns then say whose layer-phases sped up.
"If free" is accounting on the two runs as simulated, not a third simulation: were a part
free, the mapper would choose other tiles and another part would bind
(`--set 'arch.*.energy.noc_pj_per_bit_hop=0'` simulates a free NoC).

Both read two runs' entries of summary.json; `desim report` prints them per run against the
baseline, `desim compare` per run against the same run before a change, and
`desim.api.Result.energy_gains` and `time_gains` give them as DataFrames.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from desim.metrics import OFF_CHIP

COLUMNS = ["baseline", "run", "shrink", "share_of_run", "share_of_saving", "ratio_if_free"]
TOTAL = "total"
UNATTRIBUTED = "unattributed"  # time of layer-phases no part was busiest over


def _ratio(a: float, b: float) -> float:
    """a / b, infinite for a positive a over nothing, NaN for nothing over nothing."""
    if b:
        return a / b
    return math.inf if a else math.nan


def gains(baseline: dict[str, float], run: dict[str, float]) -> pd.DataFrame:
    """Per part of an additive quantity (joules by component, seconds by binding part), rows in
    the baseline's order then the run's new parts, and a `total` row: its amount in each, how
    much it shrank (baseline / run), its share of the run's total, its share of the saving
    and the total's ratio were it free in the run. The share of the saving is the part's
    own saving (baseline - run) over the size of the total's: positive where the part
    shrank, negative where it grew, whichever way the total went; the parts add up to 1
    where the run saves and to -1 where it spends more (the total's row says which). Over
    a negative total saving a part that grew had read positive. A part that is nothing in
    both (a vector unit neither run used) has no row: it was shown as "new" where it is
    neither new nor gone."""
    parts = [part for part in dict.fromkeys([*baseline, *run])
             if baseline.get(part) or run.get(part)]
    base_total, run_total = sum(baseline.values()), sum(run.values())
    saved = base_total - run_total
    rows = {}
    for part in parts:
        b, r = baseline.get(part, 0.0), run.get(part, 0.0)
        rows[part] = [b, r, _ratio(b, r), _ratio(r, run_total),
                      (b - r) / abs(saved) if saved else math.nan,
                      _ratio(base_total, run_total - r)]
    rows[TOTAL] = [base_total, run_total, _ratio(base_total, run_total), 1.0,
                   math.copysign(1.0, saved) if saved else math.nan, math.nan]
    return pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS).rename_axis("part")


def energy_gains(baseline: dict[str, Any], run: dict[str, Any], on_chip: bool = False
                 ) -> pd.DataFrame:
    """`gains` of two summary.json runs' joules by component; `on_chip`: DRAM left out, as
    a chip's own energy figure is (the total's shrink is then the on-chip energy ratio)."""
    def joules(r: dict[str, Any]) -> dict[str, float]:
        return {c: float(j) for c, j in r["energy_by_component_j"].items()
                if not (on_chip and c == OFF_CHIP)}
    return gains(joules(baseline), joules(run))


def time_gains(baseline: dict[str, Any], run: dict[str, Any]) -> pd.DataFrame:
    """`gains` of two summary.json runs' seconds by the part that bound them (the total's
    shrink is the speedup, in time: designs may differ in clock). Parts that bound nothing
    in either run are left out (`gains`)."""
    def seconds(r: dict[str, Any]) -> dict[str, float]:
        bound = {p: share * r["seconds"] for p, share in r["time_by_busiest_part"].items()}
        rest = r["seconds"] - sum(bound.values())
        if rest > 1e-9 * r["seconds"]:  # the shares cover the layer-phases that have a
            bound[UNATTRIBUTED] = rest  # busiest part (rounding aside)
        return bound
    return gains(seconds(baseline), seconds(run))
