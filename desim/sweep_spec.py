"""The `sweep:` section of an experiment file: which parameters to vary and how.

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

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from desim.configio import Strict
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
