"""The experiment runner: config -> workload + architecture -> events -> simulation -> results.

This is the only place (with the command line) that joins the kernel, the hardware models
(`arch`) and the front end (`mappings`).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from arch.accelerator import Accelerator
from arch.config import ArchConfig, priced_actions
from desim.clock import PS_PER_S, Clock, cycles_until
from desim.elaborate import design_error, elaborate, workload_set_note
from desim.errors import ConfigError, raise_if_interrupted
from desim.events import DEALT, PHASES, TILE_DTYPE
from desim.experiment import Experiment, ObserveSpec, RunSpec, load_experiment
from desim.hardware_view import hardware_view
from desim.module import Simulator
from desim.resolved import config_digest, resolved_config, resolved_sections, stats_digest
from desim.results import (
    held_by_this_process,
    report_files,
    writable_folder,
    write_atomic,
    write_csv,
    write_json,
)
from desim.stats import busiest_part, busy_shares, collect_stats, stats_text
from desim.trace import chrome_trace_text
from mappings.capture import CaptureNeeds
from mappings.mapper import PhaseWork, map_workload, phase_waits
from mappings.specs import PruningSpec
from mappings.vector import vector_layers_not_simulated
from mappings.workload import Workload, capture_workload

LAYER_COLUMNS = ["run", "arch", "layer", "phase", "macs", "effectual_macs", "processed_macs",
                 "cycles", "energy_j", "dram_bytes", "start_cycle", "end_cycle", "tiles",
                 "weight_dram_bytes", "input_on_chip", "unit", "partition", "mapping",
                 "busiest_part", "busiest_link", "busiest_share"]
# energy.csv: where each layer-phase's joules go, one row per component and action priced
ENERGY_COLUMNS = ["run", "arch", "layer", "phase", "component", "action", "energy_j"]
# tiles.csv (observe.tiles): every planned tile, when it ran and the event table's columns
# (but the layer's index and the phase's number, which the names before them give)
EVENT_COLUMNS = [c for c in TILE_DTYPE.names if c not in ("layer", "phase")]
TILE_COLUMNS = ["run", "arch", "layer", "phase", "tile", "start_cycle", "end_cycle",
                *EVENT_COLUMNS]


@dataclass
class RunResult:
    name: str
    arch: ArchConfig
    layers: pd.DataFrame           # one row per layer-phase
    energy_by_action_j: dict[str, float]    # "component.action" -> J
    total_ps: int
    period_ps: int | Fraction  # the core clock's (`desim.clock.Clock`)
    workload_stats: dict[str, float]
    events: int
    stats: dict[str, Any]           # per module, gem5-like (desim.stats)
    energy_prices_pj: dict[str, float]  # the price of each action (arch.energy.DesignPrices)
    layer_energy: pd.DataFrame      # per layer-phase, component and action (J): energy.csv
    trace: dict[str, Any] | None = None  # Chrome/Perfetto events, when traced
    vcd: Path | None = None  # the waveform file of this run, if any (see `unpublished`)
    # the model's vector layers this run left out, its design having no vector unit: all
    # but the ReLUs it applies on the PE array's output; with one, none
    # (`mappings.vector.vector_layers_not_simulated`)
    vector_layers_not_simulated: int = 0
    mac_units: int = 0  # the PE array's MAC units: clusters x PEs x MACs a PE a cycle
    tiles: pd.DataFrame | None = None  # tiles.csv's rows of this run, when observed
    # the waveform itself, when it was simulated with no folder to write it into (the API's
    # `desim.run` without `out`): `write_results` writes it
    vcd_text: str | None = None
    # the sha256 of the waveform written to `vcd`: a copy made later (`Result.write` into
    # another folder) checks that the file is still this run's
    vcd_sha256: str | None = None

    @property
    def cycles(self) -> int:
        return cycles_until(self.total_ps, self.period_ps)

    @property
    def energy_by_component_j(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, joules in self.energy_by_action_j.items():
            component = key.split(".")[0]
            out[component] = out.get(component, 0.0) + joules
        return out

    @property
    def energy_j(self) -> float:
        return sum(self.energy_by_action_j.values())

    def summary(self) -> dict[str, Any]:
        phases = {}
        for phase in PHASES:
            rows = self.layers[self.layers["phase"] == phase]
            if phase == "WU" and not len(rows):  # no weight update asked for
                continue
            phases[phase] = {
                "cycles": int(rows["cycles"].sum()),
                "energy_j": float(rows["energy_j"].sum()),
                "macs": int(rows["macs"].sum()),
                "effectual_macs": int(rows["effectual_macs"].sum()),
                "processed_macs": int(rows["processed_macs"].sum()),
                "dram_bytes": int(rows["dram_bytes"].sum()),
            }
        units = {unit: {"cycles": int(rows["cycles"].sum()),
                        "energy_j": float(rows["energy_j"].sum())}
                 for unit, rows in self.layers.groupby("unit", sort=True)}
        busy, busiest = busy_shares(self.stats, self.name)
        by_part = self.layers.groupby("busiest_part", sort=True)["cycles"].sum()
        processed = int(self.layers["processed_macs"].sum())
        slots = self.mac_units * self.cycles
        return {
            "arch": self.arch.name,
            "technology": self.arch.technology,
            "cycles": self.cycles,
            "seconds": self.total_ps / PS_PER_S,
            "energy_j": self.energy_j,
            "macs": int(self.layers["macs"].sum()),
            "effectual_macs": int(self.layers["effectual_macs"].sum()),
            "dram_bytes": int(self.layers["dram_bytes"].sum()),
            "simulation_events": self.events,
            "phases": phases,
            # the layer-phases of each compute unit: conv and linear layers on the PE
            # array, batch norm, activations, pooling, residual adds and softmax on the
            # vector unit
            "units": units,
            # each part's share of the run spent busy (a part of parts: its busiest part's,
            # named in busiest_parts), and the MAC units': processed MACs / (units x cycles)
            "utilization": {**busy, "mac_units": processed / slots if slots else 0.0},
            "busiest_parts": busiest,
            # each part's share of the run's cycles in layer-phases it was the busiest part
            # of (0: never)
            "time_by_busiest_part": {part: int(by_part.get(part, 0)) / self.cycles
                                     if self.cycles else 0.0
                                     for part in sorted({*busy, *by_part.index} - {""})},
            "energy_by_component_j": self.energy_by_component_j,
            "energy_by_action_j": self.energy_by_action_j,
            "energy_prices_pj": self.energy_prices_pj,
            "vector_layers_not_simulated": self.vector_layers_not_simulated,
            "workload": self._workload_stats(),
        }

    def _workload_stats(self) -> dict[str, Any]:
        """The captured workload's statistics, less the speculation's when this run's design
        has no speculator: they describe the capture (shared by the runs of one workload
        and pruning), not hardware this run has."""
        if self.arch.speculator is not None:
            return self.workload_stats
        return {k: v for k, v in self.workload_stats.items() if not k.startswith("speculat")}


def simulate(name: str, arch: ArchConfig, workload: Workload,
             observe: ObserveSpec = ObserveSpec(), out: Path | None = None) -> RunResult:
    """One training iteration of `workload` on `arch`; its module tree is rooted at `name`."""
    if not workload.needs.covers(capture_needs(arch)):
        raise ValueError(f"{name}: its workload was captured with {workload.needs}, and its "
                         f"design needs {capture_needs(arch)} (capture_workload)")
    sim = Simulator()
    acc = Accelerator(sim, arch, name=name)
    work = map_workload(workload, hardware_view(acc))
    acc.replay([w.table for w in work], phase_waits(work))
    tracer = (sim.enable_tracing(modules=observe.modules) if observe.trace or observe.vcd
              else None)
    sim.run()
    vcd, vcd_text, vcd_sha256 = None, None, None
    if tracer is not None and observe.vcd:
        vcd_text = tracer.vcd_text(sim.now_ps)
        if out is not None:  # published there by write_results, with the rest
            vcd = out / f"waves_{name}.vcd"
            unpublished(vcd).write_text(vcd_text)
            vcd_text, vcd_sha256 = None, hashlib.sha256(vcd_text.encode()).hexdigest()
    clock = acc.clock
    concurrency = {module.path: module.concurrency for module in sim.modules()}
    rows, energy_rows, by_component = [], [], Counter()
    for w, rec in zip(work, acc.records, strict=True):
        energy = acc.energy_pj(rec.actions, rec.since_ps, rec.end_ps)
        by_component.update(energy)
        energy_rows += [(name, arch.name, w.name, PHASES[w.phase], *key.split(".", 1), pj * 1e-12)
                        for key, pj in sorted(energy.items()) if pj]
        dram = rec.actions.get(f"{acc.path}.dram", Counter())
        busiest, link, share = busiest_part(
            {path: c["busy_ps"] for path, c in rec.actions.items()}, concurrency, acc.path,
            rec.end_ps - rec.start_ps, {path: c["bytes"] for path, c in rec.actions.items()})
        rows.append({
            "run": name, "arch": arch.name, "layer": w.name, "phase": PHASES[w.phase],
            "macs": w.macs, "effectual_macs": w.effectual_macs,
            "processed_macs": w.processed_macs,
            # its share of the run in whole cycles: rounded at the ends, so the shares add
            # up to the run's cycles
            "cycles": clock.cycles_until(rec.end_ps) - clock.cycles_until(rec.since_ps),
            "energy_j": sum(energy.values()) * 1e-12,
            "dram_bytes": dram["read_bytes"] + dram["write_bytes"],
            "start_cycle": rec.start_ps // clock.period_ps,
            "end_cycle": clock.cycles_until(rec.end_ps),
            "tiles": len(w.table),
            "weight_dram_bytes": w.weight_dram_bytes,  # the weights read (FF, BP)
            "input_on_chip": w.input_resident,  # left in the buffer by the phase before
            "unit": "vector_unit" if w.on_vector_unit else "pe_array",  # what computes it
            "partition": "" if w.on_vector_unit else dealt_to_clusters(w.table),
            "mapping": w.mapping,  # its plan in words: tile, stationary operand, reduction
            # the part busiest over its span, first fetch to last write-back (the NoC's: its
            # busiest link), and the share of the span it spent on this layer-phase's tiles:
            # what bound it, near 1
            "busiest_part": busiest, "busiest_link": link, "busiest_share": share,
        })
    return RunResult(name, arch, pd.DataFrame(rows, columns=LAYER_COLUMNS),
                     {k: v * 1e-12 for k, v in sorted(by_component.items())},
                     int(sim.env.now), clock.period_ps, workload.stats, _event_count(sim),
                     collect_stats(sim), priced_actions(arch, acc.prices.as_dict()),
                     pd.DataFrame(energy_rows, columns=ENERGY_COLUMNS),
                     tracer.chrome_trace() if observe.trace else None, vcd,
                     vector_layers_not_simulated(workload.vectors, workload.spec.inference,
                                                 bool(arch.vector_unit)),
                     acc.pes.peak_macs_per_cycle,
                     planned_tiles(name, arch.name, work, acc.tile_spans, clock)
                     if observe.tiles else None, vcd_text, vcd_sha256)


def planned_tiles(run: str, arch: str, work: list[PhaseWork], spans: list[list[list[int]]],
                  clock: Clock) -> pd.DataFrame:
    """tiles.csv's rows of one run: every tile of every layer-phase in the order the
    hardware runs them within it, as the mapper planned it (the event table's columns,
    `desim.events.TILE_DTYPE`, but the layer's index, the phase's number and what the
    clusters were dealt, named), and
    when it ran (`spans`, the accelerator's `tile_spans`): from the cycle the fetcher turns
    to it (it may then wait for a free half of the buffer) to the cycle its results are in
    DRAM, as layers.csv counts a layer-phase's span."""
    frames = [pd.DataFrame({"run": run, "arch": arch, "layer": w.name,
                            "phase": PHASES[w.phase], "tile": np.arange(len(w.table)),
                            "start_cycle": [start // clock.period_ps for start, _ in span],
                            "end_cycle": [clock.cycles_until(end) for _, end in span],
                            **{c: w.table[c] for c in EVENT_COLUMNS},
                            "dealt": np.array(DEALT)[w.table["dealt"]]})
              for w, span in zip(work, spans, strict=True) if len(w.table)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=TILE_COLUMNS)


def dealt_to_clusters(table: np.ndarray) -> str:
    """What a layer-phase's tiles dealt to the clusters (`mapping.partition`, the names of
    `desim.events.DEALT`): their output `channels` (the stream operand multicast), their
    `rows` (the channel operand multicast) or their `reduction` (both unicast), joined by
    "+" should its tiles differ; "" without a tile."""
    return "+".join(DEALT[d] for d in sorted(set(table["dealt"].tolist())))


def capture_needs(arch: ArchConfig) -> CaptureNeeds:
    """What a run on `arch` reads of its capture besides the maps: the ReLU predictions
    with a speculator, the vector tensors' run-length padding with run-length coded
    activations."""
    return CaptureNeeds(relu_predictions=arch.speculator is not None,
                        rle_padding=arch.sparsity.activation_format == "rle")


def capture_key(experiment: Experiment, run_spec: RunSpec) -> str:
    """What names a run's capture: runs with the same workload and pruning share one."""
    return (experiment.workloads[run_spec.name].model_dump_json()
            + run_spec.pruning.model_dump_json())


def shared_capture_needs(experiment: Experiment) -> dict[str, CaptureNeeds]:
    """For each capture (`capture_key`), what every design that reads it needs."""
    needs: dict[str, CaptureNeeds] = {}
    for r in experiment.spec.runs:
        key = capture_key(experiment, r)
        needs[key] = needs.get(key, CaptureNeeds.none()) | capture_needs(experiment.archs[r.name])
    return needs


def _event_count(sim: Simulator) -> int:
    """Events SimPy scheduled in the run (its event-id counter; reading it advances it by one,
    harmless after the run)."""
    return next(sim.env._eid)


def run(experiment: Experiment, progress: Callable[[str], None] | None = None,
        out: Path | None = None, capture: Callable[..., Workload] | None = None,
        elaborated: bool = False) -> dict[str, RunResult]:
    """Every run of an experiment; a (workload, pruning) pair is captured once, by `capture`
    (workload spec, pruning spec) -> Workload if given (a sweep's shared cache), else here.
    `elaborated`: the caller has elaborated the experiment already (a sweep, for each point
    before dispatching it), so it is not done again. `out`: the results folder, where the
    runs' waveforms wait, hidden, for `write_results` (removed if a run fails). The caller's
    thread count is given back at the end (a notebook's later torch work had kept one)."""
    # The model's float passes on one thread: their summation order, hence their bits, would
    # change with the thread count. Counting, which is exact, borrows more (mappings.threads).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    spec = experiment.spec
    captured: dict[str, Workload] = {}
    results = {}
    try:
        if not elaborated:
            elaborate(experiment)  # every design and model checked before the first capture
        needs = shared_capture_needs(experiment)  # what the designs reading each capture need
        for i, run_spec in enumerate(spec.runs):
            workload = experiment.workloads[run_spec.name]
            key = capture_key(experiment, run_spec)
            if key not in captured:
                if progress:
                    source = workload.model or workload.scalesim_topology
                    progress(f"capturing {source} with {run_spec.pruning.method} pruning")
                try:
                    captured[key] = capture(workload, run_spec.pruning) if capture else \
                        capture_workload(workload, run_spec.pruning, needs[key])
                except ConfigError as err:  # a pruning parameter's under its run's key
                    if err.key in PruningSpec.model_fields:
                        err = err.within(f"runs.{i}.pruning")
                    elif run_spec.workload_set:  # the workload is the file's with these
                        err = ConfigError(f"{err.message} {workload_set_note(run_spec)}",
                                          file=err.file, key=err.key)
                    raise err.in_file(str(experiment.path)) from None
            if progress:
                progress(f"simulating {run_spec.name} on "
                         f"{experiment.archs[run_spec.name].name}")
            arch = experiment.archs[run_spec.name]
            try:
                results[run_spec.name] = simulate(run_spec.name, arch, captured[key],
                                                  spec.observe, out)
            except ConfigError as err:  # the mapper's: name the run's design
                raise design_error(err, experiment, i) from None
            # A run's mapping leaves large tensors in reference cycles: freed now, before
            # the next run, the peak is one run's (quickstart: 2.37 against 2.81 GiB).
            gc.collect()
            raise_if_interrupted()  # a Ctrl-C caught on the way (`interrupts_kept`): stop
    except BaseException:  # its runs' waveforms go with it: no results to stand beside
        if out is not None:
            for run_spec in spec.runs:
                unpublished(out / f"waves_{run_spec.name}.vcd").unlink(missing_ok=True)
        raise
    finally:
        torch.set_num_threads(threads)
    return results


def summarize(experiment: Experiment, results: dict[str, RunResult],
              config: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json; `config`: config.json where the caller has it (`resolved_config`), so
    its sections are not resolved again (a model file hashed twice) for their digest."""
    base = results[experiment.spec.baseline]
    sections = resolved_sections(experiment) if config is None else config
    return {
        "experiment": experiment.spec.name,
        "baseline": experiment.spec.baseline,
        "runs": {name: r.summary() for name, r in results.items()},
        # speedup: baseline time / run time; energy_ratio: baseline energy / run energy
        "comparison": {name: {"speedup": base.total_ps / r.total_ps,
                              "energy_ratio": base.energy_j / r.energy_j}
                       for name, r in results.items()},
        # config.json's resolved sections, hashed: the folder's files are one run's
        "config_sha256": config_digest(sections),
        # and stats.json's runs, hashed likewise
        "stats_sha256": stats_digest({name: r.stats for name, r in results.items()}),
    }


def write_results(out: Path, experiment: Experiment, results: dict[str, RunResult]
                  ) -> dict[str, Any]:
    """summary.json, layers.csv, energy.csv, the resolved configuration (config.json) and
    the statistics (stats.json, stats.txt) in `out`, with the trace, tiles and waveforms
    asked for. Each is written whole under a hidden name first (`unpublished`), then all are
    put in place together: the earlier summary.json removed first, then what the earlier run
    wrote and this one does not, then this run's config.json, its other files, and its
    summary.json last.
    A run killed while writing (a large trace takes seconds) leaves the earlier results
    whole, or a folder without summary.json, which no reader takes for results; never this
    run's summary beside an earlier run's tables, trace or report."""
    config = resolved_config(experiment)
    summary = summarize(experiment, results, config)
    # what an earlier run and report left, read before any of this run's files is in place
    left = earlier_artifacts(out) if held_results(out) else []
    staged = [out / "summary.json"]  # each written at `unpublished(path)`, summary.json first

    def stage(name: str) -> Path:
        staged.append(out / name)
        return unpublished(out / name)

    try:
        for r in results.values():  # the waveforms: written while simulating, or kept
            waves = f"waves_{r.name}.vcd"
            if r.vcd_text is not None:
                write_atomic(stage(waves), r.vcd_text)
            elif r.vcd is None:
                continue
            elif unpublished(r.vcd).is_file() and r.vcd.resolve() == (out / waves).resolve():
                staged.append(out / waves)  # written here while simulating
            else:  # written into another folder (`Result.write` again): copied if still its
                source = unpublished(r.vcd) if unpublished(r.vcd).is_file() else r.vcd
                found = hashlib.sha256(source.read_bytes()).hexdigest() \
                    if source.is_file() else None
                if found != r.vcd_sha256:
                    raise ConfigError(f"the waveform of run {r.name!r} is no longer there: "
                                      "another run wrote that folder since; expected this "
                                      "run's own (simulate it again to write it)",
                                      file=str(r.vcd))
                shutil.copyfile(source, stage(waves))
        write_json(unpublished(staged[0]), summary)
        write_csv(stage("layers.csv"), pd.concat([r.layers for r in results.values()],
                                                 ignore_index=True))
        write_csv(stage("energy.csv"), layer_energy(results))
        write_json(stage("config.json"), config)
        write_json(stage("stats.json"), {name: r.stats for name, r in results.items()})
        write_atomic(stage("stats.txt"), "".join(f"# run {name}\n{stats_text(r.stats)}\n"
                                                 for name, r in results.items()))
        traces = {name: r.trace for name, r in results.items() if r.trace is not None}
        if traces:
            write_atomic(stage("trace.json"), chrome_trace_text(merge_traces(traces)))
        tiles = [r.tiles for r in results.values() if r.tiles is not None]
        if tiles:
            write_csv(stage("tiles.csv"), pd.concat(tiles, ignore_index=True))
        raise_if_interrupted()  # a Ctrl-C caught on the way (`interrupts_kept`): no results
    except BaseException:
        for path in staged:
            unpublished(path).unlink(missing_ok=True)
        raise
    (out / "summary.json").unlink(missing_ok=True)  # from here no results folder, until ...
    # The earlier run's files go before its config.json, which lists them, is replaced; this
    # run's config.json is put in place before the files it lists (the trace, tiles and
    # waveforms, last). Killed at any point, the folder's config.json lists every file of
    # desim's there that the next run must remove: a run killed after its waveforms were
    # in place, before its config.json, had left them for the next run to present as its own.
    kept = {path.resolve() for path in staged}
    for path in left:
        if path.resolve() not in kept and path.is_file():  # (a folder of that name: kept)
            path.unlink()
    for path in sorted(staged[1:], key=publishing_order):
        os.replace(unpublished(path), path)
    remove_stale_artifacts(out)
    os.replace(unpublished(staged[0]), staged[0])  # ... this run's summary is in place
    return summary


def publishing_order(path: Path) -> int:
    """config.json first, then the tables (`RESULT_FILES`' order), then the waveforms."""
    order = ["config.json", *RESULT_FILES]
    return order.index(path.name) if path.name in order else len(order)


def unpublished(path: Path) -> Path:
    """Where a result file (a run's waveform too) is written, hidden beside `path`, until
    `write_results` renames it into place with the others: a run that fails or is killed
    leaves nothing of its own beside an earlier run's summary."""
    return path.with_name(f".{path.name}.tmp")


# What `write_results` writes into a results folder (besides the waveforms).
RESULT_FILES = ("summary.json", "layers.csv", "energy.csv", "config.json", "stats.json",
                "stats.txt", "trace.json", "tiles.csv")


def held_results(out: Path) -> bool:
    """Whether `out` holds what an earlier `desim run` wrote: its summary.json, or the
    layers.csv it puts in place first (a write killed between the two). Not config.json,
    a name a user's own file may well have."""
    return (out / "summary.json").is_file() or (out / "layers.csv").is_file()


def remove_stale_artifacts(out: Path) -> None:
    """Remove the hidden halves of result files and waveforms that a killed run or write
    left in `out` (`unpublished`'s and `desim.results.atomic_path`'s names). (What an
    earlier run and `desim report` left, `earlier_artifacts`, `write_results` removes
    before it publishes.) Nothing else in the folder is touched."""
    # this run's are published by now; and the halves of a waveform's hidden file that
    # a kill left (`atomic_path` of `unpublished`: ..waves_<run>.vcd.tmp.XXXX.tmp)
    stale = [*out.glob(".waves_*.vcd.tmp"), *out.glob("..waves_*.vcd.tmp.*.tmp")]
    for name in RESULT_FILES:  # this run's are in place by now (its summary.json last)
        stale += out.glob(f".{name}.*.tmp")
        stale += out.glob(f".{unpublished(out / name).name}.*.tmp")  # (likewise)
        if name != "summary.json":
            stale.append(unpublished(out / name))
    for path in stale:
        if path.is_file():
            path.unlink()


def earlier_artifacts(out: Path) -> list[Path]:
    """What the earlier run in `out` wrote beside its tables, as its config.json records
    it (the trace, tiles and each run's waveform it observed; none where that file is gone
    or damaged), and the report `desim report` wrote there by default, where its Markdown
    or HTML says so, with its plots. Read before this run's config.json replaces that one."""
    found: list[Path] = []
    try:
        config = json.loads((out / "config.json").read_text())
        experiment = config["experiment"]
        observe, runs = experiment.get("observe") or {}, experiment["runs"]
        if observe.get("trace"):
            found.append(out / "trace.json")
        if observe.get("tiles"):
            found.append(out / "tiles.csv")
        if observe.get("vcd"):
            found += [out / f"waves_{run['name']}.vcd" for run in runs]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # (not a config.json of desim's: nothing of the run's is known)
    md, html, *plots = report_files()  # (of the default report's name)
    ours = [out / name for name, mark in ((md, "# desim report\n"), (html, "<title>desim report"))
            if (out / name).is_file() and mark in (out / name).read_text(errors="replace")[:4096]]
    if ours:
        found += ours + [p for pattern in plots for p in out.glob(pattern)]
    return found


def layer_energy(results: dict[str, RunResult]) -> pd.DataFrame:
    """energy.csv: every run's joules by layer, phase, component and action (the rows of a
    layer-phase add up to its `energy_j` in layers.csv, a component's rows to its total)."""
    return pd.concat([r.layer_energy for r in results.values()], ignore_index=True)


def merge_traces(traces: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One Perfetto trace of several runs: each run is a process (pid), its modules threads;
    the runs' `otherData` (the generator, `source_time_unit`) is kept."""
    events = []
    other: dict[str, Any] = {}
    for pid, (name, trace) in enumerate(traces.items()):
        for event in trace["traceEvents"]:
            event = {**event, "pid": pid}
            if event.get("name") == "process_name":
                event["args"] = {"name": name}
            events.append(event)
        other.update(trace.get("otherData", {}))
    merged: dict[str, Any] = {"traceEvents": events, "displayTimeUnit": "ns"}
    if other:
        merged["otherData"] = other
    return merged


def run_file(path: str | Path, out: str | Path, overrides: list[str] | None = None,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    return run_and_write(load_experiment(path, overrides), out, progress)


def results_folder(out: str | Path, experiment: Experiment | None = None) -> Path:
    """`out` as a results folder to write (`writable_folder`) in which no folder takes the
    name of a result file (nor of a waveform `experiment` asks for): the atomic rename onto
    it failed with a traceback, after the simulation."""
    folder = writable_folder(out)
    names = list(RESULT_FILES)
    if experiment is not None and experiment.spec.observe.vcd:
        names += [f"waves_{r.name}.vcd" for r in experiment.spec.runs]
    taken = [name for name in names if (folder / name).is_dir()]
    if taken:
        raise ConfigError(f"{', '.join(taken)}: a folder where desim run writes that file; "
                          "expected a results folder without it", file=str(folder))
    return folder


def run_and_write(experiment: Experiment, out: str | Path,
                  progress: Callable[[str], None] | None = None,
                  cache: str | Path | None = None) -> dict[str, Any]:
    """Simulate every run and write the results folder (`desim run`); returns summary.json.
    `cache`: a folder of captured workloads (`desim.workload_cache`), read and added to.
    The folder is held for the whole run (`held_results_folder`)."""
    with held_results_folder(out, experiment) as folder:
        return run_and_write_held(experiment, folder, progress, cache)


def run_and_write_held(experiment: Experiment, folder: Path,
                       progress: Callable[[str], None] | None = None,
                       cache: str | Path | None = None) -> dict[str, Any]:
    """`run_and_write` into a `folder` the caller holds (`held_results_folder`)."""
    results = run(experiment, progress, folder, capture=cached_capture(cache))
    return write_results(folder, experiment, results)


@contextmanager
def held_results_folder(out: str | Path, experiment: Experiment | None = None
                        ) -> Iterator[Path]:
    """`out` as a results folder (`results_folder`), held by this process
    (`desim.results.held_by_this_process`) until the block ends: taken before anything is
    simulated, so that a second run into the folder is refused at once (exit 2), not after
    its work, and the waveforms written while simulating are covered too. Two runs into one
    folder had each renamed and removed the other's files: one died with a traceback, and
    the folder held both runs' files and no summary.json. A block that fails removes the
    folder if this made it and nothing is in it (an empty folder was left as if something
    had run); a run refused here leaves the folder to the one that holds it."""
    made = not Path(out).exists()

    def remove_if_empty() -> None:
        if made and Path(out).is_dir() and not any(Path(out).iterdir()):
            Path(out).rmdir()

    try:
        folder = results_folder(out, experiment)
    except BaseException:
        remove_if_empty()
        raise
    with held_by_this_process(folder, "a run's results", then=None):
        try:
            yield folder
        except BaseException:
            remove_if_empty()  # (held: no other run is writing there)
            raise


def cached_capture(cache: str | Path | None) -> Callable[..., Workload] | None:
    """A capture that keeps each (workload, pruning) pair's capture in the folder `cache`
    and takes it from there the next time (`desim run --cache`): a hardware what-if on an
    experiment that trains (hppu_pruning_ratio: 80% of its time) skips the training. The
    capture is the whole one a sweep caches (every `CaptureNeeds`), whose numbers are the
    same. None: no cache, each run captures what its designs need."""
    if cache is None:
        return None
    from desim.workload_cache import load_or_capture

    # a file or a read-only place: said before the work
    folder = writable_folder(cache, "the workload cache (--cache)")
    return lambda workload, pruning: load_or_capture(workload, pruning, folder)
