"""The `sweep:` section of an experiment file: which parameters to vary and how, and the
points it plans (`plan_points`).

```yaml
sweep:
  mode: grid                      # every combination of the axes' values
  axes:
    runs.1.pruning.sparsity: [0.5, 0.7, 0.9]
    arch.hppu.pe_cluster.pes: [8, 16]     # arch.<run name>.<key.path>: that run's arch YAML
    arch.*.energy.noc_pj_per_bit_hop: [0.1, 0.25]   # arch.*.<key.path>: every run's
  objectives: [energy_j, cycles]  # the two metrics of the Pareto plot, both minimized
```
(`seconds` rather than `cycles` when the points or runs differ in clock.)
or `mode: random` with `budget: N` points drawn with `seed`; an axis is then a list (a value is
picked uniformly) or a range `{low, high, log}` (uniform, or log-uniform with `log: true`;
integers when both ends are integers).

It lives in its own small module, apart from `desim.sweep`, because `desim.experiment` imports
it to validate experiment files, while `desim.sweep` imports `desim.experiment` to run points:
keeping the schema here avoids an import cycle. A model-based search (Optuna) is not offered:
optuna is not a dependency, and a grid or a seeded random search keeps every point
reproducible and resumable by its overrides alone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, field_validator, model_validator

from desim.configio import Strict, YamlDumper
from desim.errors import ConfigError
from mappings.specs import Seed

# Metrics of a run (total or per phase) that a sweep records and can optimize or plot.
# `seconds`: the run's time; cycles are of each design's own clock, so a front of cycles
# over points or runs at other clocks favours the slower clock (fewer cycles a DRAM access);
# `on_chip_energy_j`: the energy without DRAM's (a chip's own figure; total rows only, as
# `seconds`)
Metric = Literal["cycles", "seconds", "energy_j", "on_chip_energy_j", "macs", "effectual_macs",
                 "processed_macs", "dram_bytes"]


class RangeAxis(Strict):
    """A continuous (or integer) axis of a random search."""

    low: int | float
    high: int | float
    log: bool = False  # log-uniform: as many draws between 1 and 10 as between 10 and 100

    @field_validator("low", "high", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        """Said here: pydantic would report the union's first member only, "Input should be
        a valid integer", though any number is allowed."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected a number, an integer or not")
        if isinstance(value, int) and not -2**63 <= value < 2**63:  # numpy draws int64
            raise ValueError("expected an integer within +-2^63")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> RangeAxis:
        if not self.low < self.high:
            raise ValueError(f"low must be less than high (got {self.low}, {self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        return self

    @property
    def integer(self) -> bool:
        """Both ends written as integers: draw integers (batch sizes, PE counts...)."""
        return isinstance(self.low, int) and isinstance(self.high, int)


def _list_or_range(value: Any) -> Any:
    """An axis that is neither a list nor a mapping is refused here, in words: pydantic
    would try each member of the union and say only "Input should be a valid list".
    (From Python, a tuple or a RangeAxis is as good.)"""
    if not isinstance(value, list | tuple | dict | RangeAxis):
        raise ValueError("expected a list of values, or with mode: random a range "
                         "{low, high} (log: true for log-uniform)")
    return value


# An axis's values: a list, or (mode: random) a range.
Axis = Annotated[list[Any] | RangeAxis, BeforeValidator(_list_or_range)]


# The most points a sweep may have: a grid is every combination of its axes' values, which
# three axes of 1,000 values made 10^9 points, enumerated for hours (desim check and desim
# sweep hung) before any was computed
MAX_SWEEP_POINTS = 100_000


class SweepSpec(Strict):
    mode: Literal["grid", "random"] = "grid"
    # key path (as `--set` accepts, or arch.<run>.<key.path>) -> values, or a range (random)
    axes: dict[str, Axis] = Field(min_length=1)
    budget: int | None = Field(None, gt=0, le=MAX_SWEEP_POINTS)  # random: distinct points
    seed: Seed = 0                     # random: the draws; same seed, same points
    objectives: list[Metric] = Field(default_factory=lambda: ["energy_j", "cycles"],
                                     min_length=2, max_length=2)  # plotted y against x

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        # An axis's error names it as its key (`sweep.axes.arch.*.pe_cluster.pes: ...`, as
        # pydantic's own errors of its values do), not inside the message under `sweep`
        for key, values in self.axes.items():
            if not key or "=" in key or key.split(".")[0] == "sweep":
                raise ValueError(f"axes: expected a key path such as workload.batch (not of "
                                 f"the sweep section), got {key!r}")
            if isinstance(values, list) and not values:
                raise ValueError(f"axes.{key}: expected one value or more, got an empty list")
            if isinstance(values, list):
                self.axes[key] = _once_each(values)
            if self.mode == "grid" and isinstance(values, RangeAxis):
                raise ValueError(f"axes.{key}: a grid needs a list of values, not a range "
                                 "(ranges are for mode: random)")
        grid = math.prod(len(v) for v in self.axes.values() if isinstance(v, list))
        if self.mode == "grid" and grid > MAX_SWEEP_POINTS:
            raise ValueError(f"axes: a grid of {grid:,} points (every combination of the "
                             f"axes' values); expected at most {MAX_SWEEP_POINTS:,}: fewer "
                             "values, or mode: random with a budget")
        if self.objectives[0] == self.objectives[1]:  # a Pareto front of one metric
            raise ValueError(f"objectives: expected two different metrics (the plot's y and "
                             f"x), got {self.objectives}")
        if self.mode == "random" and self.budget is None:
            raise ValueError("mode: random needs a budget (the number of points)")
        if self.mode == "grid" and self.budget is not None:
            raise ValueError("budget applies to mode: random only")
        return self


# --- points ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """One design point: a value per axis."""

    point_id: str
    values: dict[str, Any]  # axis key path -> value, in the sweep's axis order

    @property
    def overrides(self) -> list[str]:
        """The same point as `desim run --set` arguments."""
        return [f"{key}={yaml_text(value)}" for key, value in self.values.items()]

    def error_of(self, err: ConfigError, path: Path) -> ConfigError:
        """`err`, met with this point's values applied as --set items, saying the sweep's
        axis that set the value at fault rather than a --set the user never typed."""
        message = err.message
        for item in self.overrides:  # key=value, as the axis's key under sweep.axes
            message = message.replace(f"--set {item}", f"the sweep's axis sweep.axes.{item} "
                                      f"of {path}")
        return ConfigError(message, file=err.file, key=err.key)


def yaml_text(value: Any) -> str:
    """`value` as YAML text that `--set` parses back to the same value, a number as a number
    and a string as a string (`YamlDumper` quotes "1e3", which `--set` reads as 1000.0)."""
    text = yaml.dump(value, Dumper=YamlDumper, default_flow_style=True, width=1 << 30)
    return text.removesuffix("\n...\n").strip()


def _once_each(values: list[Any]) -> list[Any]:
    """An axis's values, each once, the first spelling kept: `0` and `0.0` are one value
    (one design: its point ids, hashes of their text, had differed, and it ran twice)."""
    kept: list[Any] = []
    for value in values:
        if not any(value == seen and isinstance(value, bool) == isinstance(seen, bool)
                   for seen in kept):
            kept.append(value)
    return kept


def point_id(values: dict[str, Any]) -> str:
    """A hash of the overrides alone (sorted keys): stable across runs, processes, machines."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_points(spec: SweepSpec) -> list[Point]:
    """Every point of a grid (axis order, last axis fastest), or `budget` distinct random
    points drawn with `seed`. Random points come from one generator in sequence, so a larger
    budget keeps the points of a smaller one (a sweep extended by budget resumes)."""
    keys = list(spec.axes)
    if spec.mode == "grid":
        combos: Iterator[tuple[Any, ...]] = itertools.product(*(spec.axes[k] for k in keys))
        return _distinct(dict(zip(keys, combo, strict=True)) for combo in combos)

    import numpy as np

    rng = np.random.default_rng(spec.seed)

    def draw(axis: list[Any] | RangeAxis) -> Any:
        if isinstance(axis, list):
            return axis[int(rng.integers(len(axis)))]
        if axis.log:
            value = float(np.exp(rng.uniform(np.log(axis.low), np.log(axis.high))))
            return min(max(round(value), axis.low), axis.high) if axis.integer else value
        if axis.integer:
            return int(rng.integers(axis.low, axis.high + 1))
        return float(rng.uniform(axis.low, axis.high))

    assert spec.budget is not None  # SweepSpec checks it
    # a small discrete space may hold fewer points than the budget: drawing stops once it
    # holds them all (else 100 draws a point asked for, minutes for a budget of 10^5)
    space = math.prod(len(axis) if isinstance(axis, list)
                      else axis.high - axis.low + 1 if axis.integer else math.inf
                      for axis in spec.axes.values())
    points: dict[str, Point] = {}
    for _ in range(spec.budget * 100):
        values = {key: draw(spec.axes[key]) for key in keys}
        points.setdefault(point_id(values), Point(point_id(values), values))
        if len(points) in (spec.budget, space):
            break
    return list(points.values())


def _distinct(all_values: Iterator[dict[str, Any]]) -> list[Point]:
    points: dict[str, Point] = {}
    for values in all_values:
        points.setdefault(point_id(values), Point(point_id(values), values))
    return list(points.values())
