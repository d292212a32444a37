"""What a sweep's plots show, and how a `--plot` is checked before the sweep runs: the Pareto
plot of its two objectives (`DIR/pareto.png`), any metric of results.parquet against any axis
(`--plot metric:axis`, `DIR/<metric>_vs_<axis>.png`), and the refusals of a `--plot` that
names no metric, no axis of the sweep, or a component or part no run of its points has.

It lives apart from `desim.sweep`, which plans, runs and gathers the points, because it only
reads what that writes: results.parquet's table, whose columns are `desim.sweep_results`'
(`desim.sweep` imports this module only once a sweep runs, so `desim sweep --help` loads no
plotting). Each plot is a figure of its own (`desim.plots.new_axes`, no pyplot state),
written atomically (`desim.plots.save_figure`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desim.errors import ConfigError
from desim.plots import new_axes, save_figure
from desim.sweep_results import (
    BOUND_PREFIX,
    COMPONENT_PREFIX,
    EFFICIENCY_COLUMNS,
    METRIC_COLUMNS,
    PER_PART,
    UTILIZATION_PREFIX,
    axis_columns,
)

if TYPE_CHECKING:
    import pandas as pd

    from desim.sweep_spec import Point

LABELS = {"cycles": "cycles", "energy_j": "energy (J)", "macs": "MACs",
          "effectual_macs": "effectual MACs", "processed_macs": "processed MACs",
          "dram_bytes": "DRAM bytes", "seconds": "time (s)", "speedup": "speedup",
          "energy_ratio": "energy ratio (baseline / run)", "elapsed_s": "wall time (s)",
          "on_chip_energy_j": "on-chip energy (J)", "tflops_per_w": "TFLOPS/W",
          "on_chip_tflops_per_w": "on-chip TFLOPS/W"}
PLOTTABLE = [*METRIC_COLUMNS, "seconds", "speedup", "energy_ratio", *EFFICIENCY_COLUMNS,
             "elapsed_s"]


def plot_pareto(frame: pd.DataFrame, objectives: Sequence[str], out: Path) -> Path:
    """`objectives[0]` against `objectives[1]` (energy against cycles by default), a series
    per run, the Pareto front drawn as a step line through its ringed points."""
    y, x = objectives
    totals = frame[(frame["phase"] == "total") & (frame["status"] == "ok")]
    fig, ax = new_axes(7, 5)
    for run_name, rows in totals.groupby("run", sort=False):
        ax.scatter(rows[x].astype(float), rows[y].astype(float), s=24, alpha=0.8,
                   label=str(run_name))
    front = totals[totals["pareto"].fillna(False).astype(bool)].sort_values(x)
    if len(front):
        ax.step(front[x].astype(float), front[y].astype(float), where="post", color="black",
                linewidth=1, zorder=1)
        ax.scatter(front[x].astype(float), front[y].astype(float), s=90, facecolors="none",
                   edgecolors="black", linewidths=1.2, label=f"Pareto front ({len(front)})",
                   zorder=3)
    failed = frame.drop_duplicates("point_id")["status"].ne("ok").sum()
    ax.set_title(f"{LABELS.get(y, y)} against {LABELS.get(x, x)}: "
                 f"{totals['point_id'].nunique()} points"
                 + (f" ({failed} failed)" if failed else ""))
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    ax.grid(alpha=0.3)
    if len(totals):
        ax.legend(fontsize="small")
    save_figure(fig, out, dpi=120)
    return out


def plot_metric(frame: pd.DataFrame, metric: str, axis: str, out: str | Path,
                phase: str = "total") -> Path:
    """Any metric against any axis: a line per run and combination of the other axes (a
    scatter per run when there would be more than 12 lines) of `plotted_rows`."""
    axes = axis_columns(frame)
    check_plot(metric, axis, axes)
    if metric not in frame.columns:  # a component or part no run of the sweep has
        parts = [c for c in frame.columns if c.startswith(metric.partition(".")[0] + ".")]
        raise ConfigError(f"--plot: no {metric!r} in this sweep; it has: {', '.join(parts)}")
    rows = plotted_rows(frame, metric, phase)
    others = [a for a in axes if a != axis]
    rows = _unsplit_runs(rows, others, axis)
    keys = ["run", *others]
    groups = list(rows.groupby(keys, sort=False, dropna=False)) if len(rows) else []
    fig, ax = new_axes(7, 5)
    numeric = rows[axis].dtype.kind in "iuf" or str(rows[axis].dtype) in ("Int64", "Float64")
    if len(groups) > 12:
        for run_name, group in rows.groupby("run", sort=False):
            ax.scatter(_xs(group[axis], numeric), group[metric].astype(float), s=18,
                       alpha=0.7, label=str(run_name))
    else:
        for i, (key, group) in enumerate(groups):
            key = key if isinstance(key, tuple) else (key,)
            label = str(key[0]) + "".join(f", {o.split('.')[-1]}={v}"
                                          for o, v in zip(others, key[1:], strict=True)
                                          if not pd.isna(v))
            group = group.sort_values(axis) if numeric else group
            ax.plot(_xs(group[axis], numeric), group[metric].astype(float), marker="o",
                    label=label, linestyle="-" if i < 10 else "--")  # past the 10 colours
    ax.set_xlabel(axis)
    ax.set_ylabel(LABELS.get(metric, metric) + ("" if phase == "total" else f", {phase}"))
    ax.grid(alpha=0.3)
    if len(rows):
        ax.legend(fontsize="small")
    out = Path(out)
    save_figure(fig, out, dpi=120)
    return out


def _unsplit_runs(rows: pd.DataFrame, others: list[str], axis: str) -> pd.DataFrame:
    """`rows` with each other axis that names another run (`arch.<run>.`, `runs.<run>.`)
    blanked for the runs it does not set, and the rows that then repeat dropped: a run an
    axis leaves alone had one line per value of it, the same line each time, labelled as if
    the axis had moved it."""
    names = list(dict.fromkeys(rows["run"]))  # the experiment's order: a point's runs in turn
    rows = rows.copy()
    for other in others:
        parts = other.split(".")
        if len(parts) < 2 or parts[0] not in ("arch", "runs") or parts[1] == "*":
            continue
        own = (names[int(parts[1])] if parts[0] == "runs" and parts[1].isdigit()
               and int(parts[1]) < len(names) else parts[1])
        if own in names:
            rows[other] = rows[other].astype(object).where(rows["run"] == own, None)
    return rows.drop_duplicates(subset=["run", *others, axis])


def plotted_rows(frame: pd.DataFrame, metric: str, phase: str = "total") -> pd.DataFrame:
    """The rows `plot_metric` draws: the phase's, of the points computed. A ratio to the
    baseline (speedup, energy_ratio) leaves out the runs at 1 at every point: the baseline
    against itself, a flat line that took a colour and a legend entry."""
    rows = frame[(frame["phase"] == phase) & (frame["status"] == "ok")]
    if metric in ("speedup", "energy_ratio") and len(rows):
        itself = rows.groupby("run", sort=False)[metric].transform(lambda v: (v == 1.0).all())
        rows = rows[~itself.astype(bool)]
    return rows


def _xs(column: pd.Series, numeric: bool) -> list[Any]:
    return column.astype(float).tolist() if numeric else column.astype(str).tolist()


def metric_plot_path(out: Path, metric: str, axis: str) -> Path:
    """A `--plot metric:axis` image's file (the axis's key path made a file name)."""
    return out / f"{metric}_vs_{re.sub(r'[^A-Za-z0-9_.-]', '_', axis)}.png"


def plot_files(out: Path) -> list[Path]:
    """The `--plot` images in `out` (`metric_plot_path`'s names, of any metric and axis): an
    earlier sweep's, for a sweep with points to compute to remove with its table."""
    return [path for metric in [*PLOTTABLE, *(f"{prefix}*" for prefix in PER_PART)]
            for path in out.glob(f"{metric}_vs_*.png")]


def check_plot(metric: str, axis: str, axes: list[str]) -> None:
    """Refuse a `--plot` of no metric results.parquet has, or against no axis of the sweep
    (`axes`), before the sweep writes anything."""
    if metric not in PLOTTABLE and not metric.startswith(PER_PART):
        raise ConfigError(f"--plot: unknown metric {metric!r}; expected one of "
                          f"{', '.join(PLOTTABLE)}, {COMPONENT_PREFIX}<component>, "
                          f"{UTILIZATION_PREFIX}<part> or {BOUND_PREFIX}<part>")
    if axis not in axes:
        raise ConfigError(f"--plot: {axis!r} is not an axis of the sweep; axes: "
                          f"{', '.join(axes)}")


def parse_plot(text: str) -> tuple[str, str]:
    """`metric:axis` (the axis may itself hold colons only after the first one)."""
    metric, sep, axis = text.partition(":")
    if not sep or not metric or not axis:
        raise ConfigError(f"--plot expects metric:axis, got {text!r}")
    return metric, axis


# summary.json's key of the names each per-part column prefix takes (`desim.elaborate`)
PART_KEYS = {COMPONENT_PREFIX: "energy_by_component_j", UTILIZATION_PREFIX: "utilization",
             BOUND_PREFIX: "time_by_busiest_part"}


def check_plot_parts(path: Path, base: list[str], points: list[Point],
                     metrics: list[str]) -> None:
    """Refuse a `--plot` of a component or part no run of any point has (`energy_j.zzz`)
    before computing the sweep, not after it, when plotting: the names are known once each
    point's processors are built (`desim.elaborate.summary_names`), each distinct design
    once, without simulating. An invalid point, which fails with no columns, is skipped."""
    asked = [metric for metric in metrics if metric.startswith(PER_PART)]
    if not asked:
        return
    from arch.accelerator import Accelerator
    from desim.elaborate import summary_names
    from desim.experiment import load_experiment
    from desim.module import Simulator

    columns: set[str] = set()
    designs: set[str] = set()
    for point in points:
        try:
            archs = load_experiment(path, base + point.overrides).archs
            for name, arch in archs.items():
                design = arch.model_dump_json()
                if design not in designs:
                    designs.add(design)
                    names = summary_names(Accelerator(Simulator(), arch, name=name))
                    columns |= {prefix + part for prefix, key in PART_KEYS.items()
                                for part in names[key]}
        except ConfigError:
            continue
    for metric in asked:
        if metric not in columns:
            prefix = next(p for p in PER_PART if metric.startswith(p))
            have = sorted(c for c in columns if c.startswith(prefix))
            raise ConfigError(f"--plot: no {metric!r} in this sweep: no run of its points "
                              f"has it; they have: {', '.join(have)}")
