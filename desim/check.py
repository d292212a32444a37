"""`desim check EXP.yaml`: an experiment validated and elaborated, not simulated.

Every YAML file is validated, each run's processor elaborated and every tile checked to
fit its buffer (`desim.elaborate`, on two images of the untrained model: a tile's size
depends on the layers' geometry only): a mistake shows in seconds, not after a capture
and a simulation of minutes, and the table reads as the figures an architect quotes for
each run's processor. An experiment with a `sweep:` section has each of its points
elaborated too, sharing what points repeat (`desim.elaborate.Shared`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desim.elaborate import Shared, elaborate
from desim.errors import ConfigError
from desim.experiment import experiment_path, load_experiment
from desim.resolved import rerun_notes


@dataclass
class Checked:
    """What `check` found: a row per run; for a sweep, its point count and invalid points."""

    runs: list[dict[str, Any]]
    sweep_points: int = 0
    invalid_points: list[tuple[dict[str, Any], ConfigError]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # a rerun's (`desim.resolved`)


def check(path: str | Path, overrides: list[str] | None = None, progress: bool = False
          ) -> Checked:
    """Validate and elaborate every run of the experiment at `path` (and every point of its
    sweep, if it has one). Bad input raises a ConfigError naming the file and key, as
    `desim run` would; a sweep's invalid points are listed, as `desim sweep` records them,
    and a sweep that `desim sweep` refuses outright (no valid point, traces asked of its
    points) raises the ConfigError it raises. `progress`: a bar on stderr while a sweep's
    points are elaborated (some 10 ms each: a sweep of 100,000 points takes a quarter of
    an hour)."""
    path = experiment_path(path)  # a results folder's: its config.json
    experiment = load_experiment(path, overrides)
    shared = Shared()  # each workload's model run once, for every point
    rows = elaborate(experiment, shared)
    notes = [f"{path}: {note}" for note in rerun_notes(experiment.recorded)]
    if experiment.spec.sweep is None:
        return Checked(rows, notes=notes)
    return Checked(rows, *_sweep_points(path, overrides or [], shared, progress), notes=notes)


def _sweep_points(path: str | Path, overrides: list[str], shared: Shared, progress: bool
                  ) -> tuple[int, list[tuple[dict[str, Any], ConfigError]]]:
    """How many points the experiment's sweep has, and those that are invalid (their values,
    why): each point elaborated as `check` elaborates an experiment (a global buffer too
    small for a tile, a pruning a layer cannot take), so what `desim sweep` would record as
    failed, or fail on after a capture, is said here. Points sharing a workload share its
    untrained iteration, and a design's tile check (`Shared`)."""
    from rich.console import Console
    from rich.progress import track

    from desim.sweep import check_sweepable, load_sweep_spec
    from desim.sweep_spec import plan_points

    points = plan_points(load_sweep_spec(Path(path), overrides))
    check_sweepable(Path(path), overrides, points)  # what `desim sweep` refuses outright
    invalid = []
    for point in track(points, description="elaborating the sweep's points", transient=True,
                       console=Console(stderr=True), disable=not progress or len(points) < 100):
        try:
            elaborate(load_experiment(path, [*overrides, *point.overrides]), shared)
        except ConfigError as err:
            invalid.append((point.values, point.error_of(err, Path(path))))
    return len(points), invalid
