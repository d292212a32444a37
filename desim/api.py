"""desim from Python, for notebooks: `desim.run(EXP.yaml) -> Result`, tables as DataFrames.

Why: an architect exploring a design wants the numbers of `desim run` in pandas, to slice and
plot, without a results folder to read back. `run` is the command line's run (the same
experiment file, the same `--set` overrides, the same numbers bit for bit); `Result` holds
what the folder would: `summary` is summary.json, `layers` is layers.csv, and
`write(DIR)` writes the folder itself.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from desim.configio import shown
from desim.experiment import Experiment, load_experiment
from desim.runner import (
    RunResult,
    cached_capture,
    held_results_folder,
    layer_energy,
    summarize,
    write_results,
)
from desim.runner import run as run_experiment


@dataclass
class Result:
    """One experiment's runs, in memory."""

    experiment: Experiment
    runs: dict[str, RunResult]   # per run: its layers, energy by action, stats, prices

    @property
    def summary(self) -> dict[str, Any]:
        """What summary.json holds: per run totals, phases, units, energy; the comparison."""
        return summarize(self.experiment, self.runs)

    @property
    def layers(self) -> pd.DataFrame:
        """What layers.csv holds: one row per run, layer and phase."""
        return pd.concat([r.layers for r in self.runs.values()], ignore_index=True)

    @property
    def tiles(self) -> pd.DataFrame | None:
        """What tiles.csv holds (`observe.tiles`): every planned tile of every run; None when
        not observed."""
        tiles = [r.tiles for r in self.runs.values() if r.tiles is not None]
        return pd.concat(tiles, ignore_index=True) if tiles else None

    @property
    def layer_energy(self) -> pd.DataFrame:
        """What energy.csv holds: joules per run, layer, phase, component and action."""
        return layer_energy(self.runs)

    def comparison(self) -> pd.DataFrame:
        """One row per run: its time and energy, and both against the baseline (baseline /
        run: 2.0 is twice as fast, half the energy), and the vector layers it left out of
        them (a design without a vector unit)."""
        from desim.summary_text import vector_share

        summary = self.summary
        rows = {name: {"arch": run["arch"], "cycles": run["cycles"],
                       "seconds": run["seconds"], "energy_j": run["energy_j"],
                       **summary["comparison"][name], "vector_share": vector_share(run),
                       # those a design without a vector unit left out of both figures
                       "vector_layers_not_simulated": run["vector_layers_not_simulated"]}
                for name, run in summary["runs"].items()}
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("run")

    def energy(self) -> pd.DataFrame:
        """Joules per component (rows) and run (columns)."""
        return pd.DataFrame({name: r.energy_by_component_j for name, r in self.runs.items()}
                            ).fillna(0.0).sort_index()

    def utilization(self) -> pd.DataFrame:
        """Each part's share of the run spent busy (rows) per run (columns), as summary.json's
        `utilization`: where the time went (NaN where a design has no such part)."""
        summary = self.summary
        return pd.DataFrame({name: run["utilization"] for name, run in summary["runs"].items()}
                            ).sort_index()

    def time_by_busiest_part(self) -> pd.DataFrame:
        """Each part's share of the run's time (rows) per run (columns) in the layer-phases
        it was the busiest part of, as summary.json's `time_by_busiest_part`: what bound the
        run (layers.csv's `busiest_part` says it of each layer-phase)."""
        summary = self.summary
        return pd.DataFrame({name: run["time_by_busiest_part"]
                             for name, run in summary["runs"].items()}).sort_index()

    def energy_gains(self, run: str, on_chip: bool = False) -> pd.DataFrame:
        """Where `run`'s energy ratio over the baseline comes from, component by component
        (`desim.gains`): joules in each, how much each shrank, its share of the run and of
        the saving, the ratio were it free; `on_chip`: DRAM left out."""
        from desim.gains import energy_gains

        if not isinstance(on_chip, bool):  # "yes", "no": both read as true
            raise TypeError(f"on_chip: expected True or False, got {shown(on_chip)}")
        summary = self.summary
        return energy_gains(summary["runs"][summary["baseline"]], self._run(run),
                            on_chip)

    def time_gains(self, run: str) -> pd.DataFrame:
        """Where `run`'s speedup over the baseline comes from: seconds by the part that bound
        them (`time_by_busiest_part`), with `energy_gains`' columns."""
        from desim.gains import time_gains

        summary = self.summary
        return time_gains(summary["runs"][summary["baseline"]], self._run(run))

    def _run(self, run: str) -> dict[str, Any]:
        """summary.json's entry of `run`; a name that is no run is a KeyError listing them."""
        runs = self.summary["runs"]
        if run not in runs:
            raise KeyError(f"no run {run!r}; the runs are: {', '.join(runs)}")
        return runs[run]

    def write(self, out: str | Path) -> Path:
        """The results folder `desim run --out` writes (summary.json, layers.csv, ...,
        and the waveforms, when the experiment asks for them)."""
        with held_results_folder(out, self.experiment) as folder:  # one writer at a time
            write_results(folder, self.experiment, self.runs)
        return folder


def run(config: str | Path, overrides: Sequence[str] | str = (),
        out: str | Path | None = None, progress: Callable[[str], None] | None = None,
        cache: str | Path | None = None) -> Result:
    """Simulate the experiment file `config` as `desim run` does; `overrides` are its `--set`
    items (one may be given as a plain string). With `out`, the results folder is written
    too; with `cache`, captured workloads are kept there and reused (`desim run --cache`).
    Bad input raises `desim.errors.ConfigError` (the message names the file and the key)."""
    if not isinstance(config, str | os.PathLike):  # failed inside pathlib
        raise TypeError(f"config: expected the path of an experiment file or results folder "
                        f"(a str or Path), got {shown(config)}")
    for name, folder in (("out", out), ("cache", cache)):
        if folder is not None and not isinstance(folder, str | os.PathLike):
            raise TypeError(f"{name}: expected the path of a folder (a str or Path) or None, "
                            f"got {shown(folder)}")
    if isinstance(overrides, str):   # not its characters, one by one
        overrides = [overrides]
    if (not isinstance(overrides, list | tuple)
            or not all(isinstance(item, str) for item in overrides)):
        raise TypeError(f"overrides: expected 'key.path=value' strings, as --set takes them "
                        f"(a list of them, or one), got {shown(overrides)}")
    if progress is not None and not callable(progress):  # failed deep in the run
        raise TypeError(f"progress: expected a function of one message, got {shown(progress)}")
    experiment = load_experiment(config, list(overrides))
    if experiment.spec.sweep is not None:  # run as it is, as `desim run` says
        warnings.warn(f"{config}: its sweep: section is not run here; `desim sweep {config}` "
                      "runs its points", stacklevel=2)
    if out is None:
        return Result(experiment, run_experiment(experiment, progress, None,
                                                 capture=cached_capture(cache)))
    # held from before the simulation (its waveforms are written there) to the last file,
    # as `desim run` holds it: another desim writing there refuses this run at once
    with held_results_folder(out, experiment) as folder:
        result = Result(experiment, run_experiment(experiment, progress, folder,
                                                   capture=cached_capture(cache)))
        write_results(folder, experiment, result.runs)
    return result
