"""results.parquet: its columns, and how the point files are gathered into it.

A sweep writes one file per point as it finishes (`desim.sweep`); this module reads them
back into one table, a row per point, run and phase, which both `desim.sweep` (at the end of
a sweep) and its plots (`desim.sweep_plots`, which only read the table) take from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desim.metrics import DERIVED_RUN, PHASE_FIGURES
from desim.results import atomic_path
from desim.sweep_spec import Point, SweepSpec, yaml_text

if TYPE_CHECKING:
    import pandas as pd

# Columns of results.parquet besides the axes (which come right after point_id): first
# summary.json's figures of each phase (`desim.metrics`), on every row.
METRIC_COLUMNS = list(PHASE_FIGURES)
# Set on "total" rows only; the efficiency figures are `desim.metrics`' (on-chip energy,
# TFLOPS/W and on-chip TFLOPS/W).
EFFICIENCY_COLUMNS = list(DERIVED_RUN)
TOTAL_COLUMNS = ["seconds", "speedup", "energy_ratio", *EFFICIENCY_COLUMNS, "pareto"]
FIXED_COLUMNS = ["point_id", "run", "arch", "phase", *METRIC_COLUMNS, *TOTAL_COLUMNS,
                 "status", "error", "elapsed_s"]
# Then, on "total" rows, each component's joules (`energy_j.dram`, `energy_j.noc`, ...),
# each part's busy share (`utilization.dram`, `utilization.mac_units`: summary.json's) and
# the share of the time in layer-phases it was the busiest part of
# (`time_by_busiest_part.dram`).
COMPONENT_PREFIX = "energy_j."
UTILIZATION_PREFIX = "utilization."
BOUND_PREFIX = "time_by_busiest_part."
PER_PART = (COMPONENT_PREFIX, UTILIZATION_PREFIX, BOUND_PREFIX)


def read_point(out: Path, pid: str, fingerprint: str | None = None) -> dict[str, Any] | None:
    """A point's record, or None if it has no (readable) file: then it is computed again.
    With `fingerprint` (the sweep's, as its sweep.json records it), None too for a file
    that records another or none: a point's id is its axis values alone, and a file copied
    from a sweep of other inputs (another --set: batch 2 in a batch-4 sweep's folder) was
    taken as done and its numbers reported. A file written by a desim before point files
    recorded the fingerprint is computed again likewise: nothing then says whose it is."""
    try:
        record = json.loads((out / "points" / f"{pid}.json").read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(record, dict) and "status" in record):
        return None
    if fingerprint is not None and record.get("fingerprint") != fingerprint:
        return None
    return record


def gather(out: Path, points: list[Point], spec: SweepSpec,
           fingerprint: str | None = None) -> pd.DataFrame:
    """One row per point, run and phase (FF, BP, WG, WU where the workload has one, total)
    from the point files, in plan order; a failed point is one row (run and phase empty,
    its error), a point without a file (or, given the sweep's `fingerprint`, without one
    of this sweep's: `read_point`) one row with status "pending". `pareto` marks the
    total rows on the front of the sweep's two objectives, over all points and runs; the
    total rows also hold the run's time, its ratios to the baseline, its on-chip energy and
    TFLOPS/W (`desim.metrics`), each energy component's joules (`energy_j.<component>`,
    after the fixed columns) and each part's busy share (`utilization.<part>`) and share of
    the time as the busiest part (`time_by_busiest_part.<part>`)."""
    import pandas as pd

    axes = list(spec.axes)
    rows = []
    for point in points:
        record = read_point(out, point.point_id, fingerprint)
        head = {"point_id": point.point_id, **point.values}
        if record is None or record["status"] != "ok":
            rows.append({**head, "status": "pending" if record is None else record["status"],
                         "error": None if record is None else record["error"],
                         "elapsed_s": None if record is None else record.get("elapsed_s")})
            continue
        for run_name, run in record["runs"].items():
            common = {**head, "run": run_name, "arch": run["arch"], "status": "ok",
                      "error": None, "elapsed_s": record.get("elapsed_s")}
            for phase, metrics in run["phases"].items():
                rows.append({**common, "phase": phase,
                             **{m: metrics[m] for m in METRIC_COLUMNS}})
            comparison = (record.get("comparison") or {}).get(run_name, {})
            rows.append({**common, "phase": "total", **{m: run[m] for m in METRIC_COLUMNS
                                                         if m in run},
                         "processed_macs": sum(p["processed_macs"]
                                               for p in run["phases"].values()),
                         "seconds": run["seconds"], "speedup": comparison.get("speedup"),
                         "energy_ratio": comparison.get("energy_ratio"),
                         **{m: DERIVED_RUN[m](run) for m in EFFICIENCY_COLUMNS},
                         **{COMPONENT_PREFIX + c: j for c, j in
                            run.get("energy_by_component_j", {}).items()},
                         **{UTILIZATION_PREFIX + part: share for part, share in
                            run.get("utilization", {}).items()},
                         **{BOUND_PREFIX + part: share for part, share in
                            run.get("time_by_busiest_part", {}).items()}})
    frame = pd.DataFrame(rows)
    for column in FIXED_COLUMNS:
        if column not in frame:
            frame[column] = None
    parts = sorted(c for c in frame.columns if c.startswith(PER_PART))
    frame = frame[["point_id", *axes, *[c for c in FIXED_COLUMNS if c != "point_id"],
                   *parts]]
    for column in METRIC_COLUMNS:  # counts, but the energy
        frame[column] = frame[column].astype("float64" if column == "energy_j" else "Int64")
    for column in ("seconds", "speedup", "energy_ratio", *EFFICIENCY_COLUMNS, "elapsed_s",
                   *parts):
        frame[column] = frame[column].astype("float64")
    for column in ("point_id", "run", "arch", "phase", "status", "error"):
        frame[column] = frame[column].astype("string")
    for axis in axes:
        frame[axis] = _axis_column(frame[axis])
    frame["pareto"] = pareto_mask(frame, spec.objectives).astype("boolean")
    return frame


def _axis_column(column: pd.Series) -> pd.Series:
    """One Parquet type per axis: numbers, booleans or strings as they are; anything mixed
    or nested (lists, mappings) as its YAML text, the way `--set` would write it."""
    values = [v for v in column if v is not None]
    if all(isinstance(v, bool) for v in values):
        return column.astype("boolean")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return column.astype("Int64")
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return column.astype("float64")
    if all(isinstance(v, str) for v in values):
        return column.astype("string")
    return column.map(yaml_text).astype("string")


def pareto_mask(frame: pd.DataFrame, objectives: Sequence[str]) -> pd.Series:
    """Total rows not dominated in both objectives (both minimized) by any other total row;
    of identical designs only the first is marked."""
    import pandas as pd

    mask = pd.Series(False, index=frame.index)
    totals = frame[(frame["phase"] == "total") & (frame["status"] == "ok")]
    y, x = objectives
    best = float("inf")
    for index, row in totals.sort_values([x, y], kind="stable").iterrows():
        if float(row[y]) < best:
            best = float(row[y])
            mask[index] = True
    return mask


def axis_columns(frame: pd.DataFrame) -> list[str]:
    """The sweep's axes among results.parquet's columns."""
    return [c for c in frame.columns
            if c not in FIXED_COLUMNS and not c.startswith(PER_PART)]


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
